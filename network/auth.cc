#include "network/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <fstream>
#include <iostream>
#include <string_view>

#include "core/error.h"

namespace psgd::net {
namespace {

void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

void put_field(std::vector<std::uint8_t>& out, std::span<const std::uint8_t> bytes) {
  put_u32(out, static_cast<std::uint32_t>(bytes.size()));
  out.insert(out.end(), bytes.begin(), bytes.end());
}

// Views `s` in place; never given a temporary std::string.
std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace

AuthKey derive_key(const std::string& passphrase) {
  if (passphrase.empty()) throw ConfigError("the passphrase is empty");
  AuthKey key{};
  const auto salt = as_bytes(kAuthSalt);
  if (PKCS5_PBKDF2_HMAC(passphrase.data(), static_cast<int>(passphrase.size()), salt.data(),
                        static_cast<int>(salt.size()), kAuthIterations, EVP_sha256(),
                        static_cast<int>(key.size()), key.data()) != 1) {
    throw Error("PBKDF2 key derivation failed (OpenSSL)");
  }
  return key;
}

std::optional<AuthKey> load_key(const std::string& file) {
  std::string passphrase;
  if (file == "-") {  // standard input: what launchers pipe over ssh (no file, no argument)
    std::getline(std::cin, passphrase);
    if (!passphrase.empty() && passphrase.back() == '\r') passphrase.pop_back();
    if (passphrase.empty()) {
      throw ConfigError(
          "--passphrase_file -: standard input holds no passphrase on its first line");
    }
  } else if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw ConfigError(fmt::format("cannot read --passphrase_file {}", file));
    std::getline(in, passphrase);
    if (!passphrase.empty() && passphrase.back() == '\r') passphrase.pop_back();
    if (passphrase.empty()) {
      throw ConfigError(fmt::format("--passphrase_file {} holds an empty passphrase", file));
    }
  } else if (const char* env = std::getenv(kPassphraseEnv); env != nullptr) {
    if (*env == '\0') {
      // Most likely a variable that was meant to be filled in: running without authentication
      // because of it would be a silent downgrade.
      throw ConfigError(fmt::format(
          "${} is set but empty: set it to the passphrase, or unset it to run without one",
          kPassphraseEnv));
    }
    passphrase = env;
  } else {
    return std::nullopt;
  }
  const AuthKey key = derive_key(passphrase);
  OPENSSL_cleanse(passphrase.data(), passphrase.size());
  return key;
}

std::vector<std::uint8_t> make_nonce() {
  std::vector<std::uint8_t> nonce(kAuthNonceBytes);
  if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1) {
    throw Error("OpenSSL RAND_bytes failed to produce a nonce");
  }
  return nonce;
}

std::vector<std::uint8_t> auth_proof(const AuthKey& key, AuthRole prover, std::uint32_t protocol,
                                     std::span<const std::uint8_t> worker_nonce,
                                     std::span<const std::uint8_t> server_nonce,
                                     const std::string& identity) {
  std::vector<std::uint8_t> text;
  put_field(text, as_bytes("psgd-auth"));
  put_u32(text, protocol);
  put_field(text, as_bytes(prover == AuthRole::kServer ? "server" : "worker"));
  put_field(text, worker_nonce);
  put_field(text, server_nonce);
  put_field(text, as_bytes(identity));
  std::vector<std::uint8_t> mac(EVP_MAX_MD_SIZE);
  unsigned int n = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), text.data(), text.size(),
           mac.data(), &n) == nullptr) {
    throw Error("HMAC-SHA256 failed (OpenSSL)");
  }
  mac.resize(n);
  return mac;
}

bool check_proof(const AuthKey& key, AuthRole prover, std::uint32_t protocol,
                 std::span<const std::uint8_t> worker_nonce,
                 std::span<const std::uint8_t> server_nonce, const std::string& identity,
                 std::span<const std::uint8_t> proof) {
  if (worker_nonce.size() != kAuthNonceBytes || server_nonce.size() != kAuthNonceBytes ||
      proof.size() != kAuthProofBytes) {
    return false;
  }
  const auto expected = auth_proof(key, prover, protocol, worker_nonce, server_nonce, identity);
  return CRYPTO_memcmp(expected.data(), proof.data(), kAuthProofBytes) == 0;
}

std::vector<std::uint8_t> peer_proof(std::span<const std::uint8_t> peer_key, std::uint32_t protocol,
                                     std::int32_t from, std::int32_t to, std::int32_t node_count,
                                     std::span<const std::uint8_t> nonce) {
  std::vector<std::uint8_t> text;
  put_field(text, as_bytes("psgd-peer"));
  put_u32(text, protocol);
  put_u32(text, static_cast<std::uint32_t>(from));
  put_u32(text, static_cast<std::uint32_t>(to));
  put_u32(text, static_cast<std::uint32_t>(node_count));
  put_field(text, nonce);
  std::vector<std::uint8_t> mac(EVP_MAX_MD_SIZE);
  unsigned int n = 0;
  if (HMAC(EVP_sha256(), peer_key.data(), static_cast<int>(peer_key.size()), text.data(),
           text.size(), mac.data(), &n) == nullptr) {
    throw Error("HMAC-SHA256 failed (OpenSSL)");
  }
  mac.resize(n);
  return mac;
}

bool check_peer_proof(std::span<const std::uint8_t> peer_key, std::uint32_t protocol,
                      std::int32_t from, std::int32_t to, std::int32_t node_count,
                      std::span<const std::uint8_t> nonce, std::span<const std::uint8_t> proof) {
  if (peer_key.size() != kAuthNonceBytes || nonce.size() != kAuthNonceBytes ||
      proof.size() != kAuthProofBytes) {
    return false;
  }
  const auto expected = peer_proof(peer_key, protocol, from, to, node_count, nonce);
  return CRYPTO_memcmp(expected.data(), proof.data(), kAuthProofBytes) == 0;
}

}  // namespace psgd::net
