// Who may call RouterAdmin and Router (server/call_auth.h), end to end: without credentials
// UNAUTHENTICATED, with a wrong token PERMISSION_DENIED, with the right one accepted; with nothing
// configured RouterAdmin is closed; admin.listen moves RouterAdmin off the API listener;
// api.token_file closes Router too while health stays open; under mTLS an allowed client
// certificate identity needs no token and another identity is refused; tokens reload (a bad new
// token file keeps the old token); no token reaches GetConfig or an error message.

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"
#include "health.grpc.pb.h"
#include "router/v1/router.grpc.pb.h"
#include "server/call_auth.h"
#include "server/routerd.h"
#include "tests/router_core/testing/status_matchers.h"
#include "tests/server/testing/metrics_scrape.h"
#include "tests/server/testing/test_pki.h"

namespace router::server {
namespace {

using ::testing::AllOf;
using ::testing::Not;
using testing::HttpGet;

constexpr char kAdminToken[] = "admin-token-0123456789abcdef";
constexpr char kApiToken[] = "api-token-0123456789abcdef";

class AdminAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("admin_auth_test");
    admin_token_file_ = Path("admin.token");
    WriteFileAtomically(admin_token_file_, absl::StrCat(kAdminToken, "\n"));
    api_token_file_ = Path("api.token");
    WriteFileAtomically(api_token_file_, kApiToken);
  }
  void TearDown() override {
    if (routerd_ != nullptr) routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
    routerd_.reset();
    testing::RemoveTree(dir_);
  }

  std::string Path(const std::string& name) const { return absl::StrCat(dir_, "/", name); }

  void Start(const std::string& extra) {
    const std::string yaml = absl::StrCat(
        "listen: 127.0.0.1:0\nmetrics_listen: 127.0.0.1:0\ncredentials_reload_s: 0\n"
        "shutdown: {grace_s: 5, drain_s: 0}\n",
        extra);
    absl::StatusOr<RouterConfig> config = ParseConfigYaml(yaml);
    ASSERT_THAT(config, IsOk()) << yaml;
    absl::StatusOr<std::unique_ptr<Routerd>> d = Routerd::Start(*std::move(config), "");
    ASSERT_THAT(d, IsOk());
    routerd_ = *std::move(d);
  }

  std::shared_ptr<grpc::Channel> Channel(
      int port, std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);
    return grpc::CreateCustomChannel(
        absl::StrCat("localhost:", port),
        credentials != nullptr ? credentials : grpc::InsecureChannelCredentials(), args);
  }

  // RouterAdmin.ListModels with `authorization` (none if empty).
  grpc::Status ListModels(const std::shared_ptr<grpc::Channel>& channel,
                          const std::string& authorization) {
    auto stub = v1::RouterAdmin::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    v1::ListModelsResponse response;
    return stub->ListModels(&ctx, v1::ListModelsRequest(), &response);
  }
  grpc::Status ListModels(const std::string& authorization) {
    return ListModels(Channel(routerd_->port()), authorization);
  }
  // Router.Route (inline, decided at once) with `authorization`.
  grpc::Status Route(const std::shared_ptr<grpc::Channel>& channel,
                     const std::string& authorization) {
    auto stub = v1::Router::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    v1::RouteRequest request;
    request.mutable_query()->set_id("q");
    request.mutable_query()->set_text("Which gas do plants absorb?");
    request.mutable_query()->set_mode(v1::ROUTING_MODE_INLINE);
    v1::RouteResponse response;
    return stub->Route(&ctx, request, &response);
  }
  grpc::Status Health(const std::shared_ptr<grpc::Channel>& channel) {
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    grpc::health::v1::HealthCheckResponse response;
    return stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &response);
  }

  std::string dir_;
  std::string admin_token_file_;
  std::string api_token_file_;
  std::unique_ptr<Routerd> routerd_;
};

TEST_F(AdminAuthTest, TokenFilesMustHoldOneLongPrintableTokenAndErrorsNeverShowIt) {
  absl::StatusOr<std::unique_ptr<TokenFile>> token =
      TokenFile::Load("admin.token_file", admin_token_file_);
  ASSERT_THAT(token, IsOk());
  EXPECT_TRUE((*token)->Matches(kAdminToken));
  EXPECT_FALSE((*token)->Matches(absl::StrCat(kAdminToken, "x")));
  EXPECT_FALSE((*token)->Matches(""));
  EXPECT_FALSE((*token)->Matches("admin-token-0123456789abcdeF"));

  const std::pair<const char*, const char*> bad[] = {
      {"", "holds no token"},
      {" \n\t\n", "holds no token"},
      {"short-secret", "shorter than 16 bytes"},
      {"two words-0123456789abcdef", "one word of printable ASCII"},
      {"line-one-0123456789\nline-two-0123456789", "one word of printable ASCII"},
  };
  for (const auto& [contents, error] : bad) {
    const std::string path = Path("bad.token");
    WriteFileAtomically(path, contents);
    const absl::Status s = TokenFile::Load("api.token_file", path).status();
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument,
                            AllOf(HasSubstr(absl::StrCat("api.token_file '", path, "'")),
                                  HasSubstr(error))))
        << contents;
    if (std::string(contents).size() > 3) {
      EXPECT_THAT(std::string(s.message()), Not(HasSubstr(contents)));
    }
  }
  EXPECT_THAT(TokenFile::Load("admin.token_file", Path("absent")).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("admin.token_file")));

  // Reloads: unchanged, replaced, refused (the old token stays), refused again.
  EXPECT_EQ((*token)->Reload().outcome, ReloadOutcome::kUnchanged);
  WriteFileAtomically(admin_token_file_, "second-token-0123456789abcdef");
  EXPECT_EQ((*token)->Reload().outcome, ReloadOutcome::kReplaced);
  EXPECT_TRUE((*token)->Matches("second-token-0123456789abcdef"));
  EXPECT_FALSE((*token)->Matches(kAdminToken));
  WriteFileAtomically(admin_token_file_, "short");
  const ReloadResult refused = (*token)->Reload();
  EXPECT_EQ(refused.outcome, ReloadOutcome::kRejected);
  EXPECT_THAT(refused.error, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shorter")));
  EXPECT_EQ((*token)->Reload().outcome, ReloadOutcome::kRejectedAgain);
  EXPECT_TRUE((*token)->Matches("second-token-0123456789abcdef"));
}

TEST_F(AdminAuthTest, AdminCallsNeedTheRightBearerToken) {
  Start(absl::StrCat("admin: {token_file: '", admin_token_file_, "'}\n"));
  grpc::Status s = ListModels("");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("RouterAdmin needs credentials"));
  s = ListModels("Bearer wrong-token-0123456789abcdef");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), Not(HasSubstr("wrong-token")));
  EXPECT_EQ(ListModels(absl::StrCat("Basic ", kAdminToken)).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(ListModels(absl::StrCat("Bearer ", kAdminToken)).ok());
  EXPECT_TRUE(ListModels(absl::StrCat("bearer ", kAdminToken)).ok());

  // A refused UpdateConfig changes nothing; an authorized one applies.
  auto admin = v1::RouterAdmin::NewStub(Channel(routerd_->port()));
  const uint64_t generation = routerd_->runtime().state()->generation;
  v1::UpdateConfigRequest update;
  update.set_yaml("budget: {avg_cost_cap_usd: 1}\n");
  v1::UpdateConfigResponse updated;
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(admin->UpdateConfig(&ctx, update, &updated).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(routerd_->runtime().state()->generation, generation);
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kAdminToken));
    ASSERT_TRUE(admin->UpdateConfig(&ctx, update, &updated).ok());
  }
  EXPECT_EQ(routerd_->runtime().state()->generation, generation + 1);
  // GetConfig names the token file, never the token.
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kAdminToken));
  v1::GetConfigResponse config;
  ASSERT_TRUE(admin->GetConfig(&ctx, v1::GetConfigRequest(), &config).ok());
  EXPECT_THAT(config.yaml(), HasSubstr(admin_token_file_));
  EXPECT_THAT(config.yaml(), Not(HasSubstr(kAdminToken)));
  // Router and health need no token here.
  EXPECT_TRUE(Route(Channel(routerd_->port()), "").ok());
  EXPECT_TRUE(Health(Channel(routerd_->port())).ok());
}

// The learned-statistics calls are RouterAdmin calls like the others: a reset without the token
// forgets nothing.
TEST_F(AdminAuthTest, LearnedStatisticsCallsNeedTheAdminToken) {
  Start(absl::StrCat("admin: {token_file: '", admin_token_file_, "'}\n",
                     "routing: {default_mode: inline}\nlearning: {enabled: true, exploration: 0}\n"));
  auto router = v1::Router::NewStub(Channel(routerd_->port()));
  {
    grpc::ClientContext ctx;
    v1::RouteRequest request;
    request.mutable_query()->set_id("q");
    request.mutable_query()->set_text("Which gas do plants absorb?");
    v1::RouteResponse routed;
    ASSERT_TRUE(router->Route(&ctx, request, &routed).ok());
    grpc::ClientContext complete_ctx;
    v1::CompleteRequest complete;
    complete.set_assignment_id(routed.assignment().assignment_id());
    complete.set_success(false);
    v1::CompleteResponse completed;
    ASSERT_TRUE(router->Complete(&complete_ctx, complete, &completed).ok());
  }
  ASSERT_EQ(routerd_->runtime().learning().Cells(std::nullopt, std::nullopt).size(), 1u);
  auto admin = v1::RouterAdmin::NewStub(Channel(routerd_->port()));
  for (const std::string& authorization :
       {std::string(), std::string("Bearer wrong-token-0123456789abcdef")}) {
    const grpc::StatusCode expected = authorization.empty() ? grpc::StatusCode::UNAUTHENTICATED
                                                            : grpc::StatusCode::PERMISSION_DENIED;
    grpc::ClientContext get_ctx;
    if (!authorization.empty()) get_ctx.AddMetadata("authorization", authorization);
    v1::GetLearnedStatsResponse stats;
    EXPECT_EQ(admin->GetLearnedStats(&get_ctx, v1::GetLearnedStatsRequest(), &stats).error_code(),
              expected);
    EXPECT_EQ(stats.cells_size(), 0);
    grpc::ClientContext reset_ctx;
    if (!authorization.empty()) reset_ctx.AddMetadata("authorization", authorization);
    v1::ResetLearnedStatsResponse reset;
    EXPECT_EQ(
        admin->ResetLearnedStats(&reset_ctx, v1::ResetLearnedStatsRequest(), &reset).error_code(),
        expected);
    EXPECT_EQ(routerd_->runtime().learning().Cells(std::nullopt, std::nullopt).size(), 1u);
  }
  grpc::ClientContext get_ctx;
  get_ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kAdminToken));
  v1::GetLearnedStatsResponse stats;
  ASSERT_TRUE(admin->GetLearnedStats(&get_ctx, v1::GetLearnedStatsRequest(), &stats).ok());
  EXPECT_EQ(stats.cells_size(), 1);
  grpc::ClientContext reset_ctx;
  reset_ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kAdminToken));
  v1::ResetLearnedStatsResponse reset;
  ASSERT_TRUE(admin->ResetLearnedStats(&reset_ctx, v1::ResetLearnedStatsRequest(), &reset).ok());
  EXPECT_EQ(reset.cells_removed(), 1);
  EXPECT_TRUE(routerd_->runtime().learning().Cells(std::nullopt, std::nullopt).empty());
  // Refusals are counted under their method, like every RouterAdmin call.
  const std::string metrics = HttpGet(routerd_->metrics_port(), "/metrics");
  EXPECT_EQ(MetricValue(metrics, "router_requests_total{code=\"UNAUTHENTICATED\","
                                 "method=\"ResetLearnedStats\"}"),
            1);
}

TEST_F(AdminAuthTest, WithNoAdminCredentialsConfiguredRouterAdminIsClosedUnlessOpenedExplicitly) {
  Start("");
  const grpc::Status s = ListModels(absl::StrCat("Bearer ", kAdminToken));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("configure admin.token_file or admin.allowed_identities"));
  routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
  Start("admin: {allow_unauthenticated: true}\n");
  EXPECT_TRUE(ListModels("").ok());
  // A flag that moves the listener off loopback (--listen) cannot expose the open RouterAdmin.
  absl::StatusOr<RouterConfig> config = ParseConfigYaml("admin: {allow_unauthenticated: true}");
  ASSERT_THAT(config, IsOk());
  config->listen = "0.0.0.0:0";
  EXPECT_THAT(Routerd::Start(*std::move(config), "").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("admin.allow_unauthenticated: RouterAdmin would be open")));
}

TEST_F(AdminAuthTest, WithAdminListenRouterAdminIsServedThereOnly) {
  Start(absl::StrCat("admin: {listen: '127.0.0.1:0', token_file: '", admin_token_file_, "'}\n"));
  ASSERT_GT(routerd_->admin_port(), 0);
  ASSERT_NE(routerd_->admin_port(), routerd_->port());
  const std::string bearer = absl::StrCat("Bearer ", kAdminToken);
  EXPECT_EQ(ListModels(Channel(routerd_->port()), bearer).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  const auto admin_channel = Channel(routerd_->admin_port());
  EXPECT_TRUE(ListModels(admin_channel, bearer).ok());
  EXPECT_EQ(ListModels(admin_channel, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Route(admin_channel, "").error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_TRUE(Route(Channel(routerd_->port()), "").ok());
  EXPECT_TRUE(Health(admin_channel).ok());
  EXPECT_TRUE(Health(Channel(routerd_->port())).ok());
}

TEST_F(AdminAuthTest, ApiTokenClosesTheRouterApiButNotHealth) {
  Start(absl::StrCat("admin: {token_file: '", admin_token_file_, "'}\napi: {token_file: '",
                     api_token_file_, "'}\n"));
  const auto channel = Channel(routerd_->port());
  grpc::Status s = Route(channel, "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("Router needs credentials"));
  EXPECT_EQ(Route(channel, "Bearer not-the-api-token-0123456").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // The admin token is not the API token.
  EXPECT_EQ(Route(channel, absl::StrCat("Bearer ", kAdminToken)).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Route(channel, absl::StrCat("Bearer ", kApiToken)).ok());
  EXPECT_TRUE(Health(channel).ok());

  // RouteStream and Complete are refused the same way.
  auto stub = v1::Router::NewStub(channel);
  {
    grpc::ClientContext ctx;
    auto stream = stub->RouteStream(&ctx);
    v1::RouteStreamResponse response;
    EXPECT_FALSE(stream->Read(&response));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    v1::CompleteRequest complete;
    complete.set_assignment_id("x");
    v1::CompleteResponse response;
    EXPECT_EQ(stub->Complete(&ctx, complete, &response).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kApiToken));
    auto stream = stub->RouteStream(&ctx);
    v1::RouteStreamRequest request;
    request.mutable_query()->set_id("s1");
    request.mutable_query()->set_text("Which gas do plants absorb?");
    request.mutable_query()->set_mode(v1::ROUTING_MODE_INLINE);
    ASSERT_TRUE(stream->Write(request));
    stream->WritesDone();
    v1::RouteStreamResponse response;
    ASSERT_TRUE(stream->Read(&response));
    ASSERT_EQ(response.items_size(), 1);
    EXPECT_TRUE(response.items(0).has_assignment());
    while (stream->Read(&response)) {
    }
    EXPECT_TRUE(stream->Finish().ok());
  }
}

// Envoy's ext_proc on the API listener is a way to routing decisions too: with api.token_file it
// takes the API token (Envoy's grpc_service initial_metadata) and refuses a stream without it.
TEST_F(AdminAuthTest, ApiTokenClosesEnvoysExtProcToo) {
  Start(absl::StrCat("admin: {token_file: '", admin_token_file_, "'}\napi: {token_file: '",
                     api_token_file_, "'}\n"));
  auto stub = envoy::service::ext_proc::v3::ExternalProcessor::NewStub(Channel(routerd_->port()));
  auto headers_only = [&](const std::string& authorization) {
    grpc::ClientContext ctx;
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    auto stream = stub->Process(&ctx);
    envoy::service::ext_proc::v3::ProcessingRequest request;
    auto* headers = request.mutable_request_headers();
    headers->set_end_of_stream(true);
    auto* path = headers->mutable_headers()->add_headers();
    path->set_key(":path");
    path->set_raw_value("/v1/models");
    stream->Write(request);
    stream->WritesDone();
    envoy::service::ext_proc::v3::ProcessingResponse response;
    const bool answered = stream->Read(&response);
    while (stream->Read(&response)) {
    }
    return std::make_pair(answered, stream->Finish());
  };
  auto [answered, status] = headers_only("");
  EXPECT_FALSE(answered);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  std::tie(answered, status) = headers_only("Bearer not-the-api-token-0123456");
  EXPECT_FALSE(answered);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  std::tie(answered, status) = headers_only(absl::StrCat("Bearer ", kApiToken));
  EXPECT_TRUE(answered);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(AdminAuthTest, TokensReloadAndABadNewTokenFileKeepsTheOldToken) {
  Start(absl::StrCat("admin: {token_file: '", admin_token_file_, "'}\n"));
  const std::string next = "rotated-token-0123456789abcdef";
  WriteFileAtomically(admin_token_file_, next);
  EXPECT_THAT(routerd_->ReloadCredentials(false), IsOk());
  EXPECT_EQ(ListModels(absl::StrCat("Bearer ", kAdminToken)).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(ListModels(absl::StrCat("Bearer ", next)).ok());

  WriteFileAtomically(admin_token_file_, "");
  EXPECT_THAT(routerd_->ReloadCredentials(false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("admin.token_file")));
  EXPECT_TRUE(ListModels(absl::StrCat("Bearer ", next)).ok());
  EXPECT_EQ(MetricValue(HttpGet(routerd_->metrics_port(), "/metrics"),
                        "router_credential_reload_failures_total{credential=\"admin_token\"}"),
            1);
}

TEST_F(AdminAuthTest, UnderMtlsAnAllowedCertificateIdentityNeedsNoTokenAndOthersAreRefused) {
  TestPki server_ca("server CA");
  TestPki client_ca("client CA");
  const IssuedCertificate server = server_ca.Issue("routerd");
  WriteFileAtomically(Path("server.pem"), server.cert_pem);
  WriteFileAtomically(Path("server.key"), server.key_pem);
  WriteFileAtomically(Path("client_ca.pem"), client_ca.ca_pem());
  Start(absl::StrCat("tls: {cert_file: '", Path("server.pem"), "', key_file: '",
                     Path("server.key"), "', client_ca_file: '", Path("client_ca.pem"),
                     "'}\nadmin: {token_file: '", admin_token_file_,
                     "', allowed_identities: [ops.example.com]}\n"));
  auto channel_for = [&](const IssuedCertificate& client) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = server_ca.ca_pem();
    o.pem_cert_chain = client.cert_pem;
    o.pem_private_key = client.key_pem;
    return Channel(routerd_->port(), grpc::SslCredentials(o));
  };
  // Allowed by a subject alternative name, or by the CN.
  const auto ops = channel_for(client_ca.Issue("operator", {"ops.example.com"}));
  EXPECT_TRUE(ListModels(ops, "").ok());
  const auto ops_cn = channel_for(client_ca.Issue("ops.example.com", {"localhost"}));
  EXPECT_TRUE(ListModels(ops_cn, "").ok());
  // Another identity: refused, naming it, unless it brings the token.
  const auto gateway = channel_for(client_ca.Issue("gateway", {"gateway.example.com"}));
  const grpc::Status s = ListModels(gateway, "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("'gateway' is not an allowed identity"));
  EXPECT_TRUE(ListModels(gateway, absl::StrCat("Bearer ", kAdminToken)).ok());
  EXPECT_EQ(ListModels(gateway, "Bearer wrong-0123456789abcdefgh").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Route(gateway, "").ok());
}

}  // namespace
}  // namespace router::server
