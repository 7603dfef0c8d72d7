// TLS on routerd's listeners (server/tls_credentials.h), with certificates made at test time: the
// checks a certificate set must pass (each failure names the file and why, and never shows key
// material); plaintext clients refused when TLS is on; clients without a certificate, or with one
// from another CA, refused under mTLS; a reload serving the new certificate to new connections, a
// bad new set refused with the old one kept (and counted once per new contents), and the file
// watcher picking up a new certificate with no signal.

#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "health.grpc.pb.h"
#include "router/v1/router.grpc.pb.h"
#include "server/routerd.h"
#include "server/tls_credentials.h"
#include "tests/router_core/testing/status_matchers.h"
#include "tests/server/testing/metrics_scrape.h"
#include "tests/server/testing/test_pki.h"

namespace router::server {
namespace {

using ::testing::AllOf;
using ::testing::Not;
using testing::HttpGet;

constexpr char kFailures[] = "router_credential_reload_failures_total{credential=\"tls\"}";

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("tls_test");
    tls_.cert_file = Path("server.pem");
    tls_.key_file = Path("server.key");
    WriteServer(pki_.Issue("server-1"));
    WriteFileAtomically(Path("ca.pem"), pki_.ca_pem());
  }
  void TearDown() override {
    if (routerd_ != nullptr) routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
    routerd_.reset();
    testing::RemoveTree(dir_);
  }

  std::string Path(const std::string& name) const { return absl::StrCat(dir_, "/", name); }
  void WriteServer(const IssuedCertificate& c) {
    WriteFileAtomically(tls_.cert_file, c.cert_pem);
    WriteFileAtomically(tls_.key_file, c.key_pem);
  }

  // Starts routerd on loopback with `tls_` (and `extra` YAML), credentials re-read only on
  // request unless `reload_s` > 0.
  void Start(double reload_s = 0, const std::string& extra = "") {
    const std::string yaml = absl::StrCat(R"(
listen: 127.0.0.1:0
metrics_listen: 127.0.0.1:0
shutdown: {grace_s: 5, drain_s: 0}
admin: {allow_unauthenticated: true}
credentials_reload_s: )", reload_s, "\ntls: {cert_file: '", tls_.cert_file, "', key_file: '",
                                          tls_.key_file, "'",
                                          tls_.client_ca_file.empty()
                                              ? ""
                                              : absl::StrCat(", client_ca_file: '",
                                                             tls_.client_ca_file, "'"),
                                          "}\n", extra);
    absl::StatusOr<RouterConfig> config = ParseConfigYaml(yaml);
    ASSERT_THAT(config, IsOk()) << yaml;
    absl::StatusOr<std::unique_ptr<Routerd>> d = Routerd::Start(*std::move(config), "");
    ASSERT_THAT(d, IsOk());
    routerd_ = *std::move(d);
  }

  // A channel of its own (a new connection, so a new handshake) to routerd.
  std::shared_ptr<grpc::Channel> Channel(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);
    return grpc::CreateCustomChannel(absl::StrCat("localhost:", routerd_->port()), credentials,
                                     args);
  }
  std::shared_ptr<grpc::ChannelCredentials> Tls(const IssuedCertificate* client = nullptr,
                                                const std::string& ca = "") {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ca.empty() ? pki_.ca_pem() : ca;
    if (client != nullptr) {
      o.pem_cert_chain = client->cert_pem;
      o.pem_private_key = client->key_pem;
    }
    return grpc::SslCredentials(o);
  }

  // A health check over a new connection; `server_cn` gets the CN of the certificate routerd
  // served on it.
  grpc::Status Check(std::shared_ptr<grpc::ChannelCredentials> credentials,
                     std::string* server_cn = nullptr) {
    auto stub = grpc::health::v1::Health::NewStub(Channel(std::move(credentials)));
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status s = stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &response);
    if (server_cn != nullptr && s.ok()) {
      server_cn->clear();
      for (const grpc::string_ref& v : ctx.auth_context()->FindPropertyValues("x509_common_name")) {
        server_cn->assign(v.data(), v.size());
      }
    }
    return s;
  }
  // Polls new connections until routerd serves the certificate of `cn` (bounded: 30 s).
  bool Serves(const std::string& cn) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    std::string served;
    while (absl::Now() < deadline) {
      if (Check(Tls(), &served).ok() && served == cn) return true;
    }
    return false;
  }
  double Failures() {
    return MetricValue(HttpGet(routerd_->metrics_port(), "/metrics"), kFailures);
  }

  TestPki pki_{"routerd test CA"};
  std::string dir_;
  TlsConfig tls_;
  std::unique_ptr<Routerd> routerd_;
};

TEST_F(TlsTest, ACertificateSetMustParseMatchAndBeValidNow) {
  const absl::Time now = absl::Now();
  IssuedCertificate good = pki_.Issue("good");
  IssuedCertificate other = pki_.Issue("other");
  auto check = [&](const std::string& cert, const std::string& key, const std::string& ca = "") {
    TlsConfig tls = tls_;
    if (!ca.empty()) tls.client_ca_file = Path("ca.pem");
    return CheckCertificateSet(tls, {cert, key, ca}, now);
  };
  absl::StatusOr<CertificateSet> set = check(good.cert_pem, good.key_pem, pki_.ca_pem());
  ASSERT_THAT(set, IsOk());
  EXPECT_THAT(set->subject, HasSubstr("CN=good"));
  EXPECT_GT(set->not_after, now);

  const std::string cert_file = absl::StrCat("tls.cert_file '", tls_.cert_file, "'");
  const std::string key_file = absl::StrCat("tls.key_file '", tls_.key_file, "'");
  const auto no_key_material = Not(HasSubstr("PRIVATE KEY"));
  EXPECT_THAT(check(good.cert_pem, other.key_pem),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(key_file), HasSubstr("does not match the first certificate"),
                             no_key_material)));
  EXPECT_THAT(check("not a certificate", good.key_pem),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(cert_file), HasSubstr("holds no PEM certificate"))));
  std::string broken = good.cert_pem;
  broken.replace(broken.size() / 2, 8, "********");
  EXPECT_THAT(check(broken, good.key_pem),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(cert_file), HasSubstr("does not parse"))));
  EXPECT_THAT(check(good.cert_pem, good.cert_pem),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(key_file), HasSubstr("no readable PEM private key"))));
  IssuedCertificate expired = pki_.Issue("expired", {"localhost"}, absl::Hours(-48),
                                         absl::Hours(-1));
  EXPECT_THAT(check(expired.cert_pem, expired.key_pem),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(cert_file), HasSubstr("the certificate expired at"))));
  IssuedCertificate future = pki_.Issue("future", {"localhost"}, absl::Hours(2), absl::Hours(4));
  EXPECT_THAT(check(future.cert_pem, future.key_pem),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not valid before")));
  EXPECT_THAT(check(good.cert_pem, good.key_pem, "garbage"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("tls.client_ca_file '", Path("ca.pem"), "'"))));

  TlsConfig missing = tls_;
  missing.key_file = Path("absent.key");
  EXPECT_THAT(ReadTlsFiles(missing),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr(absl::StrCat("tls.key_file '", missing.key_file, "'"))));
  // A bad set stops routerd from starting, with the same message.
  WriteFileAtomically(tls_.key_file, other.key_pem);
  absl::StatusOr<RouterConfig> config = ParseConfigYaml(absl::StrCat(
      "listen: 127.0.0.1:0\nmetrics_listen: ''\ntls: {cert_file: '", tls_.cert_file,
      "', key_file: '", tls_.key_file, "'}\n"));
  ASSERT_THAT(config, IsOk());
  EXPECT_THAT(Routerd::Start(*std::move(config), "").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not match")));
}

TEST_F(TlsTest, PlaintextIsRefusedWhenTlsIsOn) {
  Start();
  EXPECT_EQ(Check(grpc::InsecureChannelCredentials()).error_code(), grpc::StatusCode::UNAVAILABLE);
  std::string served;
  ASSERT_TRUE(Check(Tls(), &served).ok());
  EXPECT_EQ(served, "server-1");
  // A client that does not trust routerd's CA refuses it.
  TestPki stranger("another CA");
  EXPECT_EQ(Check(Tls(nullptr, stranger.ca_pem())).error_code(), grpc::StatusCode::UNAVAILABLE);
  // The Router API works over TLS.
  auto stub = v1::Router::NewStub(Channel(Tls()));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::RouteRequest request;
  request.mutable_query()->set_id("q1");
  request.mutable_query()->set_text("Which gas do plants absorb?");
  request.mutable_query()->set_mode(v1::ROUTING_MODE_INLINE);
  v1::RouteResponse response;
  const grpc::Status s = stub->Route(&ctx, request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(response.assignment().model().empty());
  // The served certificate's expiry is exported.
  const double expiry = MetricValue(HttpGet(routerd_->metrics_port(), "/metrics"),
                                    "router_tls_certificate_expiry_timestamp_seconds");
  EXPECT_NEAR(expiry, absl::ToDoubleSeconds(absl::Now() + absl::Hours(24) - absl::UnixEpoch()),
              3600);
}

TEST_F(TlsTest, UnderMtlsAClientWithoutACertificateFromTheClientCaIsRefused) {
  TestPki clients("client CA");
  WriteFileAtomically(Path("client_ca.pem"), clients.ca_pem());
  tls_.client_ca_file = Path("client_ca.pem");
  Start();
  EXPECT_EQ(Check(Tls()).error_code(), grpc::StatusCode::UNAVAILABLE);
  const IssuedCertificate stranger = pki_.Issue("signed by the server CA");
  EXPECT_EQ(Check(Tls(&stranger)).error_code(), grpc::StatusCode::UNAVAILABLE);
  const IssuedCertificate gateway = clients.Issue("gateway");
  EXPECT_TRUE(Check(Tls(&gateway)).ok());
  EXPECT_EQ(Check(grpc::InsecureChannelCredentials()).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, AReloadServesTheNewCertificateAndKeepsTheOldOneWhenTheNewIsBad) {
  Start();
  ASSERT_TRUE(Serves("server-1"));
  EXPECT_EQ(Failures(), 0);
  EXPECT_THAT(routerd_->ReloadCredentials(false), IsOk());  // unchanged

  const IssuedCertificate second = pki_.Issue("server-2");
  WriteServer(second);
  EXPECT_THAT(routerd_->ReloadCredentials(false), IsOk());
  EXPECT_TRUE(Serves("server-2"));

  // A key that belongs to another certificate: refused, server-2 stays, counted once.
  WriteFileAtomically(tls_.key_file, pki_.Issue("server-3").key_pem);
  EXPECT_THAT(routerd_->ReloadCredentials(false),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("tls.key_file"), HasSubstr("does not match"))));
  std::string served;
  ASSERT_TRUE(Check(Tls(), &served).ok());
  EXPECT_EQ(served, "server-2");
  EXPECT_EQ(Failures(), 1);
  // The same refused contents again: still refused, not counted again.
  EXPECT_THAT(routerd_->ReloadCredentials(false), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls.key_file")));
  EXPECT_EQ(Failures(), 1);
  // Other bad contents: garbage, an expired certificate, a missing file; each counted.
  WriteFileAtomically(tls_.cert_file, "garbage");
  EXPECT_THAT(routerd_->ReloadCredentials(false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls.cert_file")));
  WriteServer(pki_.Issue("expired", {"localhost"}, absl::Hours(-48), absl::Hours(-1)));
  EXPECT_THAT(routerd_->ReloadCredentials(false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expired")));
  std::remove(tls_.key_file.c_str());
  EXPECT_THAT(routerd_->ReloadCredentials(false), StatusIs(absl::StatusCode::kNotFound, HasSubstr("tls.key_file")));
  EXPECT_EQ(Failures(), 4);
  ASSERT_TRUE(Check(Tls(), &served).ok());
  EXPECT_EQ(served, "server-2");

  // A good set again is served.
  WriteServer(pki_.Issue("server-4"));
  EXPECT_THAT(routerd_->ReloadCredentials(false), IsOk());
  EXPECT_TRUE(Serves("server-4"));
}

TEST_F(TlsTest, TheFileWatcherServesANewCertificateWithoutASignal) {
  Start(/*reload_s=*/0.05);
  ASSERT_TRUE(Serves("server-1"));
  WriteServer(pki_.Issue("server-5"));
  EXPECT_TRUE(Serves("server-5"));
}

}  // namespace
}  // namespace router::server
