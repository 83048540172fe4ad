// libFuzzer: both sides of the authentication handshake (network/handshake.h) fed a sequence of
// messages from a hostile peer. Each message is a type selector and a length-prefixed body,
// decoded as the Connection decodes it; the driver's filter is applied as a Connection applies it
// (a message the side does not expect() is refused before its body is read, and ends the
// handshake). Every side is tried with and without a passphrase, the client also as a worker that
// has joined a job before. Whatever arrives, a side never crashes, is never refused and done at
// once, and a client with a passphrase is done only with a server that proved it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <vector>

#include "core/error.h"
#include "fuzz/input_reader.h"
#include "fuzz/message_types.h"
#include "network/auth.h"
#include "network/handshake.h"
#include "network/messages.h"

namespace {

std::vector<psgd::Message> messages_of(psgd::fuzz::InputReader in) {
  constexpr const auto& kTypes = psgd::fuzz::kMessageTypes;
  std::vector<psgd::Message> out;
  while (!in.done() && out.size() < 16) {
    const auto type = kTypes[in.byte() % kTypes.size()];
    const auto body = in.piece();
    if (psgd::is_link(type)) continue;  // link messages never reach a handshake
    try {
      out.push_back(psgd::decode_body(type, body));
    } catch (const psgd::ProtocolError&) {
      // A body that does not decode closes the connection before the handshake sees it.
    }
  }
  return out;
}

// Feeds `messages` to `side` as a driver would.
template <class Side>
void drive(Side& side, const std::vector<psgd::Message>& messages) {
  for (const auto& m : messages) {
    if (!side.expects(psgd::type_of(m))) return;  // refused by the Connection's filter
    psgd::net::HandshakeStep step;
    try {
      step = side.on_message(m);
    } catch (const psgd::ProtocolError&) {
      return;
    }
    if (!step.refusal.empty()) {
      if (step.done) std::abort();  // refused and done at once
      return;
    }
    if (step.done) return;  // the link is the driver's now; what follows is not the handshake's
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  psgd::net::AuthKey key;  // a fixed key (deriving one costs 100,000 PBKDF2 rounds)
  key.fill(7);
  if (size == 0) return 0;
  const std::uint8_t variant = data[0];
  const auto messages = messages_of(psgd::fuzz::InputReader(data + 1, size - 1));
  const std::optional<psgd::net::AuthKey> k =
      (variant & 1) ? std::optional<psgd::net::AuthKey>(key) : std::nullopt;
  if (variant & 2) {
    psgd::net::ServerHandshake server(k, {.job_id = "job", .server_id = "server"});
    drive(server, messages);
  } else {
    psgd::net::ClientHandshake client(k, "host:1", psgd::Hello{.host = "host", .pid = 1},
                                      (variant & 4) ? "job" : "");
    (void)client.start();
    drive(client, messages);
    if (client.done() && k && !client.authenticated()) std::abort();
  }
  return 0;
}
