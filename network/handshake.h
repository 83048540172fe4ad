#pragma once
// The authentication handshake of a worker's connection to the server (network/auth.h), both
// sides, as socket-free state machines (STYLE.md §10): a driver feeds each received message to
// on_message() and does what the returned Step says. Unit tests drive the two against each other
// message by message (tests/network/handshake_test.cc).
//
//   worker                                   server
//   start()           -> AuthHello
//                                            AuthHello  -> AuthChallenge (its nonce, its proof,
//                                                          the job's id and its own)
//   AuthChallenge     -> AuthProof (or refuse: the server could not prove the passphrase, a
//                                   worker that has joined a job meets a server running another,
//                                   or the server's dead_after is not positive seconds)
//                                            AuthProof  -> AuthOk (or refuse: wrong passphrase)
//   AuthOk            -> Hello, done
//                                            Hello      -> done (the Hello must name the identity
//                                                          the worker authenticated as, and a
//                                                          positive dead_after)
//
// Until a side is done, only the next expected message type may arrive (expects(): a driver's
// Connection type filter, so anything else is refused before its body is read); an ErrorMessage
// from the other side is always read, as the reason it refuses.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "network/auth.h"
#include "network/messages.h"

namespace psgd::net {

// What a driver does after a message.
struct HandshakeStep {
  std::vector<Message> send;   // in order
  bool done = false;           // the handshake is complete (the server: `hello` holds its Hello)
  std::string refusal;         // not empty: refuse (send it as ErrorMessage, if useful) and close
  std::optional<Hello> hello;  // the server: the worker's Hello, once done
};

// Who a server is, as its AuthChallenge says: the job it runs (random, drawn when the run started
// and kept by --resume) and this server process (random per process); and its --dead_after, how
// long it waits for a silent worker (the worker's heartbeats fit three times into it,
// network/liveness.h).
struct ServerIdentity {
  std::string job_id;
  std::string server_id;
  double dead_after = 10;
};

// A random identifier of `bytes` bytes, as hex (job and server ids).
std::string random_id(std::size_t bytes = 16);

class ServerHandshake {
 public:
  explicit ServerHandshake(std::optional<AuthKey> key, ServerIdentity id = {})
      : key_(std::move(key)), id_(std::move(id)) {}

  HandshakeStep on_message(const Message& message);
  bool expects(MessageType type) const;
  // "host:pid" as the worker said in its AuthHello (empty before).
  const std::string& identity() const { return identity_; }

 private:
  enum class Stage { kAuthHello, kAuthProof, kHello, kDone } stage_ = Stage::kAuthHello;
  std::optional<AuthKey> key_;
  ServerIdentity id_;
  std::vector<std::uint8_t> worker_nonce_, server_nonce_;
  std::string identity_;
};

class ClientHandshake {
 public:
  // `identity`: "host:pid", said in the AuthHello and again in the Hello. `job_id`: the job this
  // worker has joined before (it lost its server and redials); empty: any job. A server whose
  // AuthChallenge names another job is refused before anything is proved to it.
  ClientHandshake(std::optional<AuthKey> key, std::string identity, Hello hello,
                  std::string job_id = {});

  // The first message: the AuthHello.
  Message start();
  HandshakeStep on_message(const Message& message);
  bool expects(MessageType type) const;
  bool done() const { return stage_ == Stage::kDone; }
  // The server proved the passphrase (both sides have one).
  bool authenticated() const { return key_.has_value() && stage_ == Stage::kDone; }
  // Who the server said it is, and its dead_after (empty before its AuthChallenge).
  const ServerIdentity& server() const { return server_; }

 private:
  enum class Stage { kStart, kChallenge, kAuthOk, kDone } stage_ = Stage::kStart;
  std::optional<AuthKey> key_;
  std::string identity_;
  std::string job_id_;
  ServerIdentity server_;
  Hello hello_;
  std::vector<std::uint8_t> nonce_;
};

}  // namespace psgd::net
