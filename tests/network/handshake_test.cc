// The authentication handshake as two state machines driven against each other, message by
// message, with no socket (network/handshake.h).
#include "network/handshake.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>

namespace psgd::net {
namespace {

Hello hello_of(const std::string& host, int pid) {
  return Hello{.host = host, .pid = pid, .cores = 2};
}

struct Outcome {
  bool server_done = false;
  bool client_done = false;
  std::string server_refusal;
  std::string client_refusal;
  std::optional<Hello> hello;
};

// Passes every message each side sends to the other until one is done or refuses.
Outcome run(ServerHandshake& server, ClientHandshake& client) {
  Outcome o;
  std::vector<Message> to_server{client.start()};
  for (int round = 0; round < 10 && !to_server.empty(); ++round) {
    std::vector<Message> to_client;
    for (const Message& m : to_server) {
      EXPECT_TRUE(server.expects(type_of(m))) << type_name(type_of(m));
      HandshakeStep s = server.on_message(m);
      if (!s.refusal.empty()) {
        o.server_refusal = s.refusal;
        return o;
      }
      if (s.done) {
        o.server_done = true;
        o.hello = s.hello;
      }
      to_client.insert(to_client.end(), s.send.begin(), s.send.end());
    }
    to_server.clear();
    for (const Message& m : to_client) {
      EXPECT_TRUE(client.expects(type_of(m))) << type_name(type_of(m));
      HandshakeStep s = client.on_message(m);
      to_server.insert(to_server.end(), s.send.begin(), s.send.end());
      if (!s.refusal.empty()) {
        o.client_refusal = s.refusal;
        // What the client sends as it refuses still reaches the server (it learns why).
        for (const Message& last : to_server) {
          HandshakeStep t = server.on_message(last);
          if (!t.refusal.empty()) o.server_refusal = t.refusal;
        }
        return o;
      }
      o.client_done = o.client_done || s.done;
    }
  }
  return o;
}

TEST(Handshake, WithoutPassphrasesBothSidesFinishAndTheServerGetsTheHello) {
  ServerHandshake server(std::nullopt);
  ClientHandshake client(std::nullopt, "hostA:42", hello_of("hostA", 42));
  const Outcome o = run(server, client);
  EXPECT_TRUE(o.client_done);
  EXPECT_TRUE(o.server_done);
  ASSERT_TRUE(o.hello);
  EXPECT_EQ(o.hello->host, "hostA");
  EXPECT_FALSE(client.authenticated());
  EXPECT_EQ(server.identity(), "hostA:42");
}

TEST(Handshake, TheSamePassphraseAuthenticatesBothWays) {
  const AuthKey key = derive_key("correct horse");
  ServerHandshake server(key);
  ClientHandshake client(key, "hostA:42", hello_of("hostA", 42));
  const Outcome o = run(server, client);
  EXPECT_TRUE(o.server_done);
  EXPECT_TRUE(client.authenticated());
}

TEST(Handshake, AWrongPassphraseIsRefusedOnBothSides) {
  ServerHandshake server(derive_key("correct horse"));
  ClientHandshake client(derive_key("battery staple"), "hostA:42", hello_of("hostA", 42));
  const Outcome o = run(server, client);
  EXPECT_FALSE(o.server_done);
  EXPECT_NE(o.client_refusal.find("could not prove the passphrase"), std::string::npos);
  EXPECT_NE(o.server_refusal.find("wrong passphrase"), std::string::npos);
}

TEST(Handshake, AMissingPassphraseIsNamedOnEitherSide) {
  {
    ServerHandshake server(derive_key("p"));
    ClientHandshake client(std::nullopt, "h:1", hello_of("h", 1));
    EXPECT_NE(run(server, client).server_refusal.find("requires a passphrase"), std::string::npos);
  }
  {
    ServerHandshake server(std::nullopt);
    ClientHandshake client(derive_key("p"), "h:1", hello_of("h", 1));
    EXPECT_NE(run(server, client).client_refusal.find("the server has none"), std::string::npos);
  }
}

TEST(Handshake, AHelloUnderAnotherIdentityIsRefused) {
  ServerHandshake server(std::nullopt);
  ClientHandshake client(std::nullopt, "hostA:42", hello_of("hostB", 42));
  EXPECT_NE(run(server, client).server_refusal.find("after authenticating as hostA:42"),
            std::string::npos);
}

TEST(Handshake, MessagesOutOfTurnAreRefusedAndNotExpected) {
  ServerHandshake server(std::nullopt);
  EXPECT_TRUE(server.expects(MessageType::kAuthHello));
  EXPECT_FALSE(server.expects(MessageType::kHello));
  EXPECT_FALSE(server.expects(MessageType::kGradient));
  EXPECT_NE(server.on_message(Hello{}).refusal.find("Hello during the handshake"),
            std::string::npos);
  ClientHandshake client(std::nullopt, "h:1", hello_of("h", 1));
  client.start();
  EXPECT_TRUE(client.expects(MessageType::kAuthChallenge));
  EXPECT_TRUE(client.expects(MessageType::kError));
  EXPECT_FALSE(client.expects(MessageType::kJob));
  EXPECT_NE(client.on_message(AuthOk{}).refusal.find("out of turn"), std::string::npos);
  EXPECT_NE(client.on_message(ErrorMessage{"full"}).refusal.find("refused this worker: full"),
            std::string::npos);
}

TEST(Handshake, AnotherProtocolVersionIsRefusedWithBothVersions) {
  ServerHandshake server(std::nullopt);
  AuthHello old{.protocol = kProtocolVersion - 1, .nonce = make_nonce(), .identity = "h:1"};
  const std::string why = server.on_message(old).refusal;
  EXPECT_NE(why.find(fmt::format("v{}", kProtocolVersion)), std::string::npos) << why;
  EXPECT_NE(why.find(fmt::format("v{}", kProtocolVersion - 1)), std::string::npos) << why;
}

// Job identity (issue 21): the server names its job and itself; a worker that joined job J before
// (its server died, it redials) rejoins a server of job J (a resumed one has another server id)
// and refuses any other before proving anything to it, also with a passphrase both share.
TEST(Handshake, AWorkerThatJoinedAJobRejoinsOnlyThatJob) {
  const ServerIdentity job_a{.job_id = random_id(), .server_id = random_id(8)};
  const ServerIdentity job_a_resumed{.job_id = job_a.job_id, .server_id = random_id(8)};
  const ServerIdentity job_b{.job_id = random_id(), .server_id = random_id(8)};
  EXPECT_EQ(job_a.job_id.size(), 32u);
  EXPECT_EQ(job_a.server_id.size(), 16u);
  EXPECT_NE(job_a.job_id, job_b.job_id);
  const AuthKey key = derive_key("shared by both jobs");
  {  // a new worker joins whatever job answers, and learns which
    ServerHandshake server(key, job_a);
    ClientHandshake client(key, "h:1", hello_of("h", 1));
    EXPECT_TRUE(run(server, client).server_done);
    EXPECT_EQ(client.server().job_id, job_a.job_id);
    EXPECT_EQ(client.server().server_id, job_a.server_id);
  }
  {  // its job, resumed by another server process
    ServerHandshake server(key, job_a_resumed);
    ClientHandshake client(key, "h:1", hello_of("h", 1), job_a.job_id);
    EXPECT_TRUE(run(server, client).server_done);
    EXPECT_EQ(client.server().server_id, job_a_resumed.server_id);
  }
  {  // another job on the same port
    ServerHandshake server(key, job_b);
    ClientHandshake client(key, "h:1", hello_of("h", 1), job_a.job_id);
    const Outcome o = run(server, client);
    EXPECT_FALSE(o.server_done);
    EXPECT_FALSE(o.client_done);
    EXPECT_NE(o.client_refusal.find("now runs another job (job " + job_b.job_id +
                                    "), not the one this worker joined (job " + job_a.job_id),
              std::string::npos)
        << o.client_refusal;
    EXPECT_EQ(o.server_refusal, "");  // it was sent no proof at all
  }
}

// Liveness (network/liveness.h): each side learns the other's --dead_after in the handshake, the
// worker from the AuthChallenge and the server from the Hello, with or without a passphrase.
TEST(Handshake, EachSideLearnsTheOthersDeadAfter) {
  for (const bool with_key : {false, true}) {
    SCOPED_TRACE(with_key ? "with a passphrase" : "without");
    const std::optional<AuthKey> key =
        with_key ? std::optional<AuthKey>(derive_key("p")) : std::nullopt;
    ServerHandshake server(key,
                           {.job_id = random_id(), .server_id = random_id(8), .dead_after = 1.5});
    Hello hello = hello_of("h", 1);
    hello.dead_after = 40;
    ClientHandshake client(key, "h:1", hello);
    const Outcome o = run(server, client);
    ASSERT_TRUE(o.server_done) << o.server_refusal << o.client_refusal;
    EXPECT_EQ(client.server().dead_after, 1.5);
    ASSERT_TRUE(o.hello);
    EXPECT_EQ(o.hello->dead_after, 40);
  }
}

// A --dead_after that is not positive seconds cannot be honoured (a heartbeat interval from it
// would be zero or undefined): refused on either side, naming it.
TEST(Handshake, ADeadAfterThatIsNotPositiveSecondsIsRefused) {
  for (const double bad : {0.0, -1.0, std::nan(""), HUGE_VAL}) {
    SCOPED_TRACE(bad);
    {
      ServerHandshake server(std::nullopt, {.dead_after = bad});
      ClientHandshake client(std::nullopt, "h:1", hello_of("h", 1));
      const Outcome o = run(server, client);
      EXPECT_FALSE(o.client_done);
      EXPECT_NE(o.client_refusal.find("the server announced --dead_after"), std::string::npos)
          << o.client_refusal;
    }
    {
      ServerHandshake server(std::nullopt);
      Hello hello = hello_of("h", 1);
      hello.dead_after = bad;
      ClientHandshake client(std::nullopt, "h:1", hello);
      const Outcome o = run(server, client);
      EXPECT_FALSE(o.server_done);
      EXPECT_NE(o.server_refusal.find("Hello with --dead_after"), std::string::npos)
          << o.server_refusal;
    }
  }
}

}  // namespace
}  // namespace psgd::net
