#pragma once
// Authentication messages: the first frames on a worker's link to the server, before anything
// else is read (network/auth.h has the proofs and the handshake's state machines).
//   worker -> server AuthHello, server -> worker AuthChallenge, worker -> server AuthProof,
//   server -> worker AuthOk (or ErrorMessage saying why not, then close)
#include <cstdint>
#include <string>
#include <vector>

#ifndef PSGD_MESSAGE_TYPES
#error "include network/messages.h, of which this header is a part"
#endif

namespace psgd {

// worker -> server, first frame on a connection: the worker's nonce and who it says it is.
struct AuthHello {
  std::uint32_t protocol = kProtocolVersion;
  std::vector<std::uint8_t> nonce;  // kAuthNonceBytes random bytes
  std::string identity;             // "host:pid"; Hello must say the same
  bool has_key = false;             // the worker was given a passphrase
};

// server -> worker: the server's nonce and, with a passphrase, its proof (network/auth.h), who it
// is (the job it runs and this server process) and how long it waits for a silent worker. A worker
// that has joined a job and lost its server rejoins only a server running the same job (a resumed
// server keeps the job's id).
struct AuthChallenge {
  std::vector<std::uint8_t> nonce;
  std::vector<std::uint8_t> proof;  // empty when the server has no passphrase
  bool required = false;            // the server has a passphrase
  std::string job_id;               // random, drawn when the run started, kept by --resume
  std::string server_id;            // random, drawn when this server process started
  // The server's --dead_after: it gives up a worker silent this long, so the worker's heartbeats
  // come at least three times within it (network/liveness.h).
  double dead_after = 10;
};

// worker -> server: the worker's proof; Hello follows at once.
struct AuthProof {
  std::vector<std::uint8_t> proof;  // empty when neither side has a passphrase
};

// server -> worker: the proof checked out; the worker may say Hello. (The worker waits for it,
// so a refused worker has nothing unread on the server's side and reads the refusal intact.)
struct AuthOk {};

}  // namespace psgd
