// The challenge-response primitives of network/auth.h.
#include "network/auth.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "network/messages.h"

namespace psgd::net {
namespace {

struct Exchange {
  std::vector<std::uint8_t> worker_nonce = make_nonce();
  std::vector<std::uint8_t> server_nonce = make_nonce();
  std::string identity = "node7:1234";
};

TEST(Auth, KeyIsDerivedDeterministicallyAndDependsOnThePassphrase) {
  EXPECT_EQ(derive_key("secret"), derive_key("secret"));
  EXPECT_NE(derive_key("secret"), derive_key("Secret"));
  EXPECT_THROW(derive_key(""), ConfigError);
}

TEST(Auth, NoncesAreFreshAndOfTheRightSize) {
  const auto a = make_nonce(), b = make_nonce();
  EXPECT_EQ(a.size(), kAuthNonceBytes);
  EXPECT_NE(a, b);
}

TEST(Auth, ProofChecksOnlyWithTheSameKeyRoleNoncesAndIdentity) {
  const AuthKey key = derive_key("correct horse"), other = derive_key("wrong horse");
  const Exchange x;
  const auto proof = auth_proof(key, AuthRole::kWorker, kProtocolVersion, x.worker_nonce,
                                x.server_nonce, x.identity);
  EXPECT_EQ(proof.size(), kAuthProofBytes);
  EXPECT_TRUE(check_proof(key, AuthRole::kWorker, kProtocolVersion, x.worker_nonce, x.server_nonce,
                          x.identity, proof));
  EXPECT_FALSE(check_proof(other, AuthRole::kWorker, kProtocolVersion, x.worker_nonce,
                           x.server_nonce, x.identity, proof))
      << "wrong passphrase";
  EXPECT_FALSE(check_proof(key, AuthRole::kServer, kProtocolVersion, x.worker_nonce, x.server_nonce,
                           x.identity, proof))
      << "a worker's proof reflected as the server's";
  const Exchange replay;  // a recorded proof against a new server nonce
  EXPECT_FALSE(check_proof(key, AuthRole::kWorker, kProtocolVersion, x.worker_nonce,
                           replay.server_nonce, x.identity, proof));
  EXPECT_FALSE(check_proof(key, AuthRole::kWorker, kProtocolVersion, x.worker_nonce, x.server_nonce,
                           "node8:1234", proof));
  EXPECT_FALSE(check_proof(key, AuthRole::kWorker, kProtocolVersion - 1, x.worker_nonce,
                           x.server_nonce, x.identity, proof));
  auto truncated = proof;
  truncated.pop_back();
  EXPECT_FALSE(check_proof(key, AuthRole::kWorker, kProtocolVersion, x.worker_nonce, x.server_nonce,
                           x.identity, truncated));
  EXPECT_FALSE(check_proof(key, AuthRole::kWorker, kProtocolVersion, x.worker_nonce, x.server_nonce,
                           x.identity, {}));
}

TEST(Auth, PassphraseComesFromTheFileThenTheEnvironment) {
  const std::string file = ::testing::TempDir() + "/psgd_passphrase";
  std::ofstream(file) << "from file\nsecond line ignored\n";
  ::unsetenv(kPassphraseEnv);
  EXPECT_FALSE(load_key("").has_value());
  EXPECT_EQ(load_key(file), derive_key("from file"));
  ::setenv(kPassphraseEnv, "from env", 1);
  EXPECT_EQ(load_key(""), derive_key("from env"));
  EXPECT_EQ(load_key(file), derive_key("from file")) << "the file wins";
  ::unsetenv(kPassphraseEnv);
  std::ofstream(file) << "\n";
  EXPECT_THROW(load_key(file), ConfigError);
  EXPECT_THROW(load_key(file + ".missing"), ConfigError);
}

// An empty $PSGD_PASSPHRASE is refused with one line, not taken for "no passphrase" (issue 21); a
// file given as well still wins.
TEST(Auth, AnEmptyPassphraseInTheEnvironmentIsRefused) {
  ::setenv(kPassphraseEnv, "", 1);
  try {
    load_key("");
    FAIL() << "an empty $PSGD_PASSPHRASE was accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "$PSGD_PASSPHRASE is set but empty: set it to the passphrase, or unset it to run "
              "without one");
  }
  const std::string file = ::testing::TempDir() + "/psgd_passphrase_2";
  std::ofstream(file) << "from file\n";
  EXPECT_EQ(load_key(file), derive_key("from file"));
  ::unsetenv(kPassphraseEnv);
}

// "--passphrase_file -" reads the first line of standard input (what the ssh launcher pipes), so
// the secret is on no command line and in no file on the worker host.
TEST(Auth, DashReadsThePassphraseFromStandardInput) {
  std::istringstream input("from stdin\r\nnot this\n");
  std::streambuf* saved = std::cin.rdbuf(input.rdbuf());
  ::setenv(kPassphraseEnv, "from env", 1);
  const auto key = load_key("-");
  std::istringstream empty("\n");
  std::cin.rdbuf(empty.rdbuf());
  EXPECT_THROW(load_key("-"), ConfigError);
  std::cin.rdbuf(saved);
  ::unsetenv(kPassphraseEnv);
  EXPECT_EQ(key, derive_key("from stdin"));
}

}  // namespace
}  // namespace psgd::net
