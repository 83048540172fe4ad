#pragma once
// Mutual authentication of a worker and the server with a shared passphrase.
//
// The passphrase never leaves the process and is never printed. Both sides derive a 32-byte key
// from it with PBKDF2-HMAC-SHA256 (salt kAuthSalt, kAuthIterations iterations: fixed so that
// every psgd process derives the same key; the salt only separates psgd keys from other uses of
// the same passphrase). The handshake, the first three frames on every connection:
//
//   worker -> server  AuthHello     {protocol, nonce_w (32 random bytes), identity "host:pid"}
//   server -> worker  AuthChallenge {nonce_s (32 random bytes), proof_s}
//   worker -> server  AuthProof     {proof_w}
//   server -> worker  AuthOk        {}   (or ErrorMessage saying why not, then close)
//
// proof_r = HMAC-SHA256(key, "psgd-auth" | protocol | r | nonce_w | nonce_s | identity), r being
// the prover's role ("server" or "worker"), every variable-length field length-prefixed. The
// role keeps a proof from being reflected back as the other side's; the two fresh nonces keep a
// recorded handshake from being replayed; the identity binds the proof to the Hello that follows.
// Proofs are compared in constant time (CRYPTO_memcmp). Each side checks the other's proof
// before it reads anything else from it: the server accepts only these frames, with a tiny size
// limit, until the worker has proved itself.
//
// Without a passphrase on either side the same frames carry empty proofs. A worker with a
// passphrase refuses a server without one (it could not tell it from an impostor); a server with
// one refuses a worker without one.
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace psgd::net {

inline constexpr std::size_t kAuthNonceBytes = 32;
inline constexpr std::size_t kAuthProofBytes = 32;  // HMAC-SHA256
inline constexpr char kAuthSalt[] = "psgd-auth-v1 PBKDF2 salt";
inline constexpr int kAuthIterations = 100000;
// Largest body an unauthenticated peer may send (AuthHello: a nonce and a short identity).
inline constexpr std::uint64_t kAuthFrameLimit = 512;
// Environment variable read when no --passphrase_file is given.
inline constexpr char kPassphraseEnv[] = "PSGD_PASSPHRASE";

using AuthKey = std::array<std::uint8_t, 32>;

enum class AuthRole { kServer, kWorker };

// Derives the key (PBKDF2-HMAC-SHA256). Throws ConfigError for an empty passphrase.
AuthKey derive_key(const std::string& passphrase);

// Reads the passphrase from `file` (its first line, without the line end; "-": the first line of
// standard input) or, when `file` is empty, from $PSGD_PASSPHRASE. Returns nothing when neither is
// given. Throws ConfigError for an unreadable or empty file, and for $PSGD_PASSPHRASE set to the
// empty string (never silently no passphrase). The text is wiped from memory once the key is
// derived.
std::optional<AuthKey> load_key(const std::string& file);

// kAuthNonceBytes bytes from OpenSSL's RAND_bytes; throws Error if the generator fails.
std::vector<std::uint8_t> make_nonce();

std::vector<std::uint8_t> auth_proof(const AuthKey& key, AuthRole prover, std::uint32_t protocol,
                                     std::span<const std::uint8_t> worker_nonce,
                                     std::span<const std::uint8_t> server_nonce,
                                     const std::string& identity);

// Constant-time check of a received proof against the expected one.
bool check_proof(const AuthKey& key, AuthRole prover, std::uint32_t protocol,
                 std::span<const std::uint8_t> worker_nonce,
                 std::span<const std::uint8_t> server_nonce, const std::string& identity,
                 std::span<const std::uint8_t> proof);

// Peer links (network/tcp/peer_mesh.h) between the workers of one job: the server draws a random
// key per job and hands it to its workers with the PeerTable, over their authenticated links.
// The caller's PeerHello carries
//   proof = HMAC-SHA256(peer_key, "psgd-peer" | protocol | from | to | node_count | nonce)
// with a fresh 32-byte nonce; the callee checks it in constant time and accepts each nonce once.
// A process that is not a worker of the job cannot link up, nor reuse a proof for another rank,
// job or mesh. (Like the server links, peer links are authenticated, not encrypted.)
std::vector<std::uint8_t> peer_proof(std::span<const std::uint8_t> peer_key, std::uint32_t protocol,
                                     std::int32_t from, std::int32_t to, std::int32_t node_count,
                                     std::span<const std::uint8_t> nonce);
bool check_peer_proof(std::span<const std::uint8_t> peer_key, std::uint32_t protocol,
                      std::int32_t from, std::int32_t to, std::int32_t node_count,
                      std::span<const std::uint8_t> nonce, std::span<const std::uint8_t> proof);

}  // namespace psgd::net
