#include "network/handshake.h"

#include <fmt/format.h>

#include "network/liveness.h"

namespace psgd::net {
namespace {

HandshakeStep refuse(std::string why) {
  HandshakeStep s;
  s.refusal = std::move(why);
  return s;
}

}  // namespace

std::string random_id(std::size_t bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (std::uint8_t b : make_nonce()) {
    if (id.size() >= 2 * bytes) break;
    id += kHex[b >> 4];
    id += kHex[b & 15];
  }
  return id;
}

bool ServerHandshake::expects(MessageType type) const {
  switch (stage_) {
    case Stage::kAuthHello:
      return type == MessageType::kAuthHello;
    case Stage::kAuthProof:
      return type == MessageType::kAuthProof;
    case Stage::kHello:
      return type == MessageType::kHello;
    case Stage::kDone:
      return false;
  }
  return false;
}

HandshakeStep ServerHandshake::on_message(const Message& message) {
  if (const auto* a = std::get_if<AuthHello>(&message); a && stage_ == Stage::kAuthHello) {
    if (a->protocol != kProtocolVersion) {
      return refuse(
          fmt::format("this server speaks psgd protocol v{}, the client v{}; run the same psgd "
                      "version everywhere",
                      kProtocolVersion, a->protocol));
    }
    if (a->nonce.size() != kAuthNonceBytes) {
      return refuse(fmt::format("AuthHello nonce of {} bytes", a->nonce.size()));
    }
    identity_ = a->identity;
    if (key_ && !a->has_key) {
      return refuse(
          fmt::format("this server requires a passphrase: start the client with "
                      "--passphrase_file FILE or ${}",
                      kPassphraseEnv));
    }
    worker_nonce_ = a->nonce;
    server_nonce_ = make_nonce();
    AuthChallenge challenge{.nonce = server_nonce_,
                            .required = key_.has_value(),
                            .job_id = id_.job_id,
                            .server_id = id_.server_id,
                            .dead_after = id_.dead_after};
    if (key_) {
      challenge.proof = auth_proof(*key_, AuthRole::kServer, kProtocolVersion, worker_nonce_,
                                   server_nonce_, identity_);
    }
    stage_ = Stage::kAuthProof;
    HandshakeStep s;
    s.send.push_back(std::move(challenge));
    return s;
  }
  if (const auto* p = std::get_if<AuthProof>(&message); p && stage_ == Stage::kAuthProof) {
    const bool ok = key_ ? check_proof(*key_, AuthRole::kWorker, kProtocolVersion, worker_nonce_,
                                       server_nonce_, identity_, p->proof)
                         : p->proof.empty();
    if (!ok) {
      return refuse(key_ && p->proof.empty()
                        ? "authentication failed: wrong passphrase (the worker found this "
                          "server's proof wrong)"
                        : "authentication failed: wrong passphrase (the worker could not prove "
                          "this server's passphrase)");
    }
    stage_ = Stage::kHello;
    HandshakeStep s;
    s.send.push_back(AuthOk{});
    return s;
  }
  if (const auto* hello = std::get_if<Hello>(&message); hello && stage_ == Stage::kHello) {
    if (fmt::format("{}:{}", hello->host, hello->pid) != identity_) {
      return refuse(fmt::format("Hello from {}:{} after authenticating as {}", hello->host,
                                hello->pid, identity_));
    }
    if (hello->protocol != kProtocolVersion) {
      return refuse(
          fmt::format("this server speaks psgd protocol v{}, the client v{}; run the same psgd "
                      "version everywhere",
                      kProtocolVersion, hello->protocol));
    }
    if (!valid_dead_after(hello->dead_after)) {
      return refuse(
          fmt::format("Hello with --dead_after {}: not positive seconds", hello->dead_after));
    }
    stage_ = Stage::kDone;
    HandshakeStep s;
    s.done = true;
    s.hello = *hello;
    return s;
  }
  return refuse(fmt::format("{} during the handshake", type_name(type_of(message))));
}

ClientHandshake::ClientHandshake(std::optional<AuthKey> key, std::string identity, Hello hello,
                                 std::string job_id)
    : key_(std::move(key)),
      identity_(std::move(identity)),
      job_id_(std::move(job_id)),
      hello_(std::move(hello)) {}

Message ClientHandshake::start() {
  nonce_ = make_nonce();
  stage_ = Stage::kChallenge;
  return AuthHello{.protocol = kProtocolVersion,
                   .nonce = nonce_,
                   .identity = identity_,
                   .has_key = key_.has_value()};
}

bool ClientHandshake::expects(MessageType type) const {
  if (type == MessageType::kError) return stage_ != Stage::kDone;
  switch (stage_) {
    case Stage::kChallenge:
      return type == MessageType::kAuthChallenge;
    case Stage::kAuthOk:
      return type == MessageType::kAuthOk;
    case Stage::kStart:
    case Stage::kDone:
      return false;
  }
  return false;
}

HandshakeStep ClientHandshake::on_message(const Message& message) {
  if (const auto* err = std::get_if<ErrorMessage>(&message)) {
    return refuse(fmt::format("the server refused this worker: {}", err->text));
  }
  if (const auto* c = std::get_if<AuthChallenge>(&message); c && stage_ == Stage::kChallenge) {
    server_ = {.job_id = c->job_id, .server_id = c->server_id, .dead_after = c->dead_after};
    if (!job_id_.empty() && c->job_id != job_id_) {
      return refuse(fmt::format(
          "the server now runs another job (job {}), not the one this worker joined (job "
          "{}); not joining it (start a new client for that job)",
          c->job_id.empty() ? "without an id" : c->job_id, job_id_));
    }
    if (!valid_dead_after(c->dead_after)) {
      return refuse(
          fmt::format("the server announced --dead_after {}: not positive seconds", c->dead_after));
    }
    if (key_ && !c->required) {
      return refuse(
          "this client has a passphrase but the server has none; refusing to join a server "
          "that cannot prove it knows the passphrase");
    }
    if (!key_ && c->required) {
      return refuse(fmt::format(
          "the server requires a passphrase: give --passphrase_file FILE or ${}", kPassphraseEnv));
    }
    if (key_ && !check_proof(*key_, AuthRole::kServer, kProtocolVersion, nonce_, c->nonce,
                             identity_, c->proof)) {
      // Tell the server (an empty proof) so that it can say so too; prove nothing to a server
      // that has not proved itself.
      HandshakeStep s = refuse(
          "authentication failed: the server could not prove the passphrase (wrong passphrase "
          "on one side, or not the psgd server you meant)");
      s.send.push_back(AuthProof{});
      return s;
    }
    AuthProof proof;
    if (key_) {
      proof.proof =
          auth_proof(*key_, AuthRole::kWorker, kProtocolVersion, nonce_, c->nonce, identity_);
    }
    stage_ = Stage::kAuthOk;
    HandshakeStep s;
    s.send.push_back(std::move(proof));
    return s;
  }
  if (std::holds_alternative<AuthOk>(message) && stage_ == Stage::kAuthOk) {
    stage_ = Stage::kDone;
    HandshakeStep s;
    s.send.push_back(hello_);
    s.done = true;
    return s;
  }
  return refuse(fmt::format("the server sent {} out of turn during the handshake",
                            type_name(type_of(message))));
}

}  // namespace psgd::net
