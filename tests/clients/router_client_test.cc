// RouterClient against fake Router and RouterAdmin services on an in-process channel: status
// conversion, what each call sends, and the RouteStream helper's matching and ending.

#include "clients/cpp/router_client.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"
#include "tests/server/testing/test_pki.h"

namespace router::client {
namespace {

using ::router::core::testing::IsOk;
using ::router::core::testing::IsOkAndHolds;
using ::router::core::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;

// Answers Route with the query id as the model and the query's mode as the decision mode, or
// INVALID_ARGUMENT for an empty text, or UNAVAILABLE with a 250 ms retry hint for the text "busy". RouteStream (which also echoes the mode)
// reads every query and answers them in reverse order (an empty text gets an error item), unless
// a query's text is "abort": then it answers that one and ends the stream with
// RESOURCE_EXHAUSTED without reading further. With answer_as_read set, it answers each query as
// soon as it has read it instead.
class FakeRouter final : public v1::Router::Service {
 public:
  grpc::Status Route(grpc::ServerContext* ctx, const v1::RouteRequest* request,
                     v1::RouteResponse* response) override {
    if (request->query().text().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "query.text: required");
    }
    if (request->query().text() == "busy") {
      ctx->AddTrailingMetadata("grpc-retry-pushback-ms", "250");
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "queue full; retry in 250 ms");
    }
    response->mutable_assignment()->set_query_id(request->query().id());
    response->mutable_assignment()->set_model("m-" + request->query().id());
    // Echoes the mode received, so tests see what the client sent.
    response->mutable_assignment()->set_decision_mode(request->query().mode());
    return grpc::Status::OK;
  }

  grpc::Status RouteStream(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::RouteStreamResponse, v1::RouteStreamRequest>* stream) override {
    std::vector<v1::Query> queries;
    v1::RouteStreamRequest request;
    while (stream->Read(&request)) {
      if (request.query().text() == "abort") {
        v1::RouteStreamResponse r;
        r.add_items()->mutable_assignment()->set_query_id(request.query().id());
        stream->Write(r);
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "budget");
      }
      if (answer_as_read) {
        v1::RouteStreamResponse r;
        r.add_items()->mutable_assignment()->set_query_id(request.query().id());
        stream->Write(r);
        continue;
      }
      queries.push_back(request.query());
    }
    // In reverse, packed three answers to a message (the last one holds what is left), as routerd
    // packs the answers that wait behind a write.
    v1::RouteStreamResponse r;
    for (auto q = queries.rbegin(); q != queries.rend(); ++q) {
      v1::RouteBatchItem* item = r.add_items();
      if (q->text().empty()) {
        item->mutable_error()->set_query_id(q->id());
        item->mutable_error()->set_code(3);
      } else {
        item->mutable_assignment()->set_query_id(q->id());
        item->mutable_assignment()->set_decision_mode(q->mode());
      }
      if (r.items_size() == 3) {
        stream->Write(r);
        r.Clear();
      }
    }
    if (r.items_size() > 0) stream->Write(r);
    return grpc::Status::OK;
  }

  std::atomic<bool> answer_as_read{false};

  // Records the actual cost when given, -1 otherwise.
  // Records the actual cost when given, -1 otherwise; the score in the lease flag's stead: active
  // when a score of at least 0.5 (else the success) was sent.
  grpc::Status Complete(grpc::ServerContext*, const v1::CompleteRequest* request,
                        v1::CompleteResponse* response) override {
    response->set_recorded_cost_usd(request->has_actual_cost_usd() ? request->actual_cost_usd() : -1);
    response->set_lease_was_active(request->has_score() ? request->score() >= 0.5
                                                        : request->has_success() && request->success());
    return grpc::Status::OK;
  }
};

// UpdateConfig answers the expected generation (or 100 without one), plus 1 unless dry_run.
class FakeAdmin final : public v1::RouterAdmin::Service {
 public:
  grpc::Status UpdateConfig(grpc::ServerContext*, const v1::UpdateConfigRequest* request,
                            v1::UpdateConfigResponse* response) override {
    const uint64_t base = request->has_expected_generation() ? request->expected_generation() : 100;
    response->set_config_generation(request->dry_run() ? base : base + 1);
    return grpc::Status::OK;
  }
  // One cell naming the filters it was asked for ("*" / -1 for none).
  grpc::Status GetLearnedStats(grpc::ServerContext*, const v1::GetLearnedStatsRequest* request,
                               v1::GetLearnedStatsResponse* response) override {
    v1::LearnedCell* cell = response->add_cells();
    cell->set_model(request->has_model() ? request->model() : "*");
    cell->set_cluster(request->has_cluster() ? request->cluster() : -1);
    return grpc::Status::OK;
  }
  // Removes 1 cell per filter given, 10 for a reset of everything.
  grpc::Status ResetLearnedStats(grpc::ServerContext*, const v1::ResetLearnedStatsRequest* request,
                                 v1::ResetLearnedStatsResponse* response) override {
    const int64_t given = (request->has_model() ? 1 : 0) + (request->has_cluster() ? 1 : 0);
    response->set_cells_removed(given == 0 ? 10 : given);
    return grpc::Status::OK;
  }
};

class RouterClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.RegisterService(&router_);
    builder.RegisterService(&admin_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    client_ = RouterClient::FromChannel(server_->InProcessChannel(grpc::ChannelArguments()), {});
  }
  void TearDown() override { server_->Shutdown(); }

  static v1::Query Query(const std::string& id, const std::string& text) {
    v1::Query q;
    q.set_id(id);
    q.set_text(text);
    return q;
  }

  FakeRouter router_;
  FakeAdmin admin_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<RouterClient> client_;
};

TEST(FromGrpcStatusTest, KeepsCodeAndMessage) {
  for (int code = 0; code <= 16; ++code) {
    const absl::Status s =
        FromGrpcStatus(grpc::Status(static_cast<grpc::StatusCode>(code), code == 0 ? "" : "why"));
    EXPECT_EQ(static_cast<int>(s.code()), code);
    EXPECT_EQ(s.message(), code == 0 ? "" : "why");
  }
}

TEST(ConnectTest, RefusesBadOptions) {
  RouterClientOptions frequent_pings;
  frequent_pings.keepalive_time = absl::Seconds(5);
  EXPECT_THAT(RouterClient::Connect("127.0.0.1:1", frequent_pings),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("keepalive_time")));
  EXPECT_THAT(RouterClient::Connect("", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("address")));
  RouterClientOptions no_timeout;
  no_timeout.default_timeout = absl::ZeroDuration();
  EXPECT_THAT(RouterClient::Connect("127.0.0.1:1", no_timeout),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("default_timeout")));
}

TEST(ConnectTest, RefusesBadSecurityOptions) {
  RouterClientOptions half;
  half.tls.cert_file = "client.pem";
  EXPECT_THAT(RouterClient::Connect("127.0.0.1:1", half),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls.cert_file and tls.key_file")));
  RouterClientOptions both;
  both.credentials = grpc::InsecureChannelCredentials();
  both.tls.enabled = true;
  EXPECT_THAT(RouterClient::Connect("127.0.0.1:1", both),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("credentials and tls")));
  RouterClientOptions spaced;
  spaced.bearer_token = "two words";
  EXPECT_THAT(RouterClient::Connect("127.0.0.1:1", spaced),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bearer_token")));
  RouterClientOptions missing;
  missing.tls.ca_file = "/nonexistent/ca.pem";
  EXPECT_THAT(RouterClient::Connect("127.0.0.1:1", missing),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("tls.ca_file '/nonexistent/ca.pem'")));
}

// Records what each Route call brought: its authorization metadata and its client certificate's
// common name.
class RecordingRouter final : public v1::Router::Service {
 public:
  grpc::Status Route(grpc::ServerContext* ctx, const v1::RouteRequest* request,
                     v1::RouteResponse* response) override {
    absl::MutexLock lock(&mu_);
    auto it = ctx->client_metadata().find("authorization");
    authorization_ =
        it == ctx->client_metadata().end() ? "" : std::string(it->second.data(), it->second.size());
    client_cn_.clear();
    for (const grpc::string_ref& v : ctx->auth_context()->FindPropertyValues("x509_common_name")) {
      client_cn_.assign(v.data(), v.size());
    }
    response->mutable_assignment()->set_query_id(request->query().id());
    return grpc::Status::OK;
  }
  std::pair<std::string, std::string> Last() {
    absl::MutexLock lock(&mu_);
    return {authorization_, client_cn_};
  }

 private:
  absl::Mutex mu_;
  std::string authorization_ ABSL_GUARDED_BY(mu_);
  std::string client_cn_ ABSL_GUARDED_BY(mu_);
};

TEST(SecureConnectTest, TlsWithAClientCertificateAndABearerTokenReachTheServer) {
  server::testing::TestPki pki("test CA");
  const server::testing::IssuedCertificate server_cert = pki.Issue("routerd");
  const server::testing::IssuedCertificate client_cert = pki.Issue("gateway-7");
  const std::string dir = server::testing::MakeTempDir("router_client_test");
  const std::string ca = dir + "/ca.pem", cert = dir + "/client.pem", key = dir + "/client.key",
                    token_file = dir + "/token";
  server::testing::WriteFileAtomically(ca, pki.ca_pem());
  server::testing::WriteFileAtomically(cert, client_cert.cert_pem);
  server::testing::WriteFileAtomically(key, client_cert.key_pem);
  server::testing::WriteFileAtomically(token_file, "  the-token-0123456789abcdef\n");

  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = pki.ca_pem();
  ssl.pem_key_cert_pairs.push_back({server_cert.key_pem, server_cert.cert_pem});
  RecordingRouter router;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl), &port);
  builder.RegisterService(&router);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  absl::StatusOr<std::string> token = ReadTokenFile(token_file);
  ASSERT_THAT(token, IsOk());
  EXPECT_EQ(*token, "the-token-0123456789abcdef");
  RouterClientOptions options;
  options.connect_timeout = absl::Seconds(10);
  options.tls.ca_file = ca;
  options.tls.cert_file = cert;
  options.tls.key_file = key;
  options.tls.server_name = "localhost";  // the certificate names localhost and 127.0.0.1
  options.bearer_token = *token;
  absl::StatusOr<std::unique_ptr<RouterClient>> client =
      RouterClient::Connect(absl::StrCat("127.0.0.1:", port), options);
  ASSERT_THAT(client, IsOk());
  v1::Query query;
  query.set_id("q1");
  query.set_text("hi");
  ASSERT_THAT((*client)->Route(query), IsOk());
  EXPECT_EQ(router.Last().first, "Bearer the-token-0123456789abcdef");
  EXPECT_EQ(router.Last().second, "gateway-7");

  // Without the client certificate the handshake fails; plaintext does not connect either.
  RouterClientOptions no_cert = options;
  no_cert.tls.cert_file.clear();
  no_cert.tls.key_file.clear();
  no_cert.connect_timeout = absl::Milliseconds(500);
  EXPECT_THAT(RouterClient::Connect(absl::StrCat("127.0.0.1:", port), no_cert),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("could not connect")));
  RouterClientOptions plaintext;
  plaintext.connect_timeout = absl::Milliseconds(500);
  EXPECT_THAT(RouterClient::Connect(absl::StrCat("127.0.0.1:", port), plaintext),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("could not connect")));
  server->Shutdown();
  server::testing::RemoveTree(dir);
  EXPECT_THAT(ReadTokenFile(token_file), StatusIs(absl::StatusCode::kNotFound, HasSubstr("token file")));
}

TEST(ConnectTest, NothingListeningIsUnavailable) {
  // Nothing listens on port 1 of loopback (tcpmux is not run), so connecting is refused.
  RouterClientOptions options;
  options.connect_timeout = absl::Milliseconds(200);
  EXPECT_THAT(RouterClient::Connect("127.0.0.1:1", options),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("127.0.0.1:1")));
}

TEST_F(RouterClientTest, RouteReturnsTheAssignmentOrTheServerStatus) {
  absl::StatusOr<v1::Assignment> a = client_->Route(Query("q1", "hi"));
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->query_id(), "q1");
  EXPECT_EQ(a->model(), "m-q1");
  EXPECT_THAT(client_->Route(Query("q2", "")),
              StatusIs(absl::StatusCode::kInvalidArgument, "query.text: required"));
  EXPECT_EQ(RetryAfter(client_->Route(Query("q2", "")).status()), std::nullopt);
  const absl::Status busy = client_->Route(Query("q3", "busy")).status();
  EXPECT_THAT(busy, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("retry in 250 ms")));
  EXPECT_EQ(RetryAfter(busy), absl::Milliseconds(250));
}

TEST(ConnectTest, RefusesAnUnknownMode) {
  RouterClientOptions options;
  options.mode = static_cast<v1::RoutingMode>(42);
  EXPECT_THAT(RouterClient::Connect("127.0.0.1:1", options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mode: unknown routing mode 42")));
}

TEST_F(RouterClientTest, TheModeOptionFillsQueriesWithoutAMode) {
  // Without the option the query's own mode (here none) is sent unchanged.
  absl::StatusOr<v1::Assignment> a = client_->Route(Query("q0", "hi"));
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->decision_mode(), v1::ROUTING_MODE_UNSPECIFIED);

  RouterClientOptions options;
  options.mode = v1::ROUTING_MODE_INLINE;
  std::unique_ptr<RouterClient> inline_client =
      RouterClient::FromChannel(server_->InProcessChannel(grpc::ChannelArguments()), options);
  a = inline_client->Route(Query("q1", "hi"));
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->decision_mode(), v1::ROUTING_MODE_INLINE);
  v1::Query own = Query("q2", "hi");
  own.set_mode(v1::ROUTING_MODE_AUTO);  // a query's own mode wins
  a = inline_client->Route(own);
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->decision_mode(), v1::ROUTING_MODE_AUTO);

  std::vector<v1::Query> queries = {Query("s0", "text"), own};
  std::map<std::string, v1::RoutingMode> modes;
  EXPECT_THAT(inline_client->RouteStream(queries,
                                         [&](const StreamAnswer& answer) {
                                           const v1::Assignment& x = answer.item.assignment();
                                           modes[x.query_id()] = x.decision_mode();
                                         }),
              IsOk());
  EXPECT_EQ(modes, (std::map<std::string, v1::RoutingMode>{{"s0", v1::ROUTING_MODE_INLINE},
                                                           {"q2", v1::ROUTING_MODE_AUTO}}));
}

TEST_F(RouterClientTest, RouteStreamMatchesOutOfOrderAnswersToTheirQueries) {
  std::vector<v1::Query> queries;
  for (int k = 0; k < 50; ++k) {
    queries.push_back(Query(absl::StrCat("s", k), k == 7 ? "" : "text"));
  }
  std::vector<int> seen(queries.size(), 0);
  std::vector<std::string> order;
  int errors = 0;
  const absl::Status s = client_->RouteStream(queries, [&](const StreamAnswer& answer) {
    ASSERT_GE(answer.index, 0);
    ASSERT_LT(answer.index, static_cast<int64_t>(queries.size()));
    ++seen[answer.index];
    const v1::RouteBatchItem& r = answer.item;
    const std::string& id = r.has_assignment() ? r.assignment().query_id() : r.error().query_id();
    EXPECT_EQ(id, queries[answer.index].id());
    EXPECT_GE(answer.latency, absl::ZeroDuration());
    order.push_back(id);
    if (r.has_error()) ++errors;
  });
  EXPECT_THAT(s, IsOk());
  EXPECT_EQ(seen, std::vector<int>(queries.size(), 1));  // each answer exactly once
  EXPECT_EQ(errors, 1);
  ASSERT_FALSE(order.empty());
  EXPECT_EQ(order.front(), "s49");  // the fake answers in reverse
}

TEST_F(RouterClientTest, RouteStreamKeepsAtMostMaxInFlightUnanswered) {
  // A window of one only finishes if each query is sent after the previous answer came back; the
  // answers then arrive in query order.
  router_.answer_as_read = true;
  std::vector<v1::Query> queries;
  for (int k = 0; k < 20; ++k) queries.push_back(Query(absl::StrCat("w", k), "text"));
  std::vector<int64_t> indexes;
  RouteStreamOptions options;
  options.max_in_flight = 1;
  EXPECT_THAT(client_->RouteStream(
                  queries, [&](const StreamAnswer& a) { indexes.push_back(a.index); }, options),
              IsOk());
  std::vector<int64_t> expected(queries.size());
  for (size_t k = 0; k < expected.size(); ++k) expected[k] = static_cast<int64_t>(k);
  EXPECT_EQ(indexes, expected);
  options.max_in_flight = 0;
  EXPECT_THAT(client_->RouteStream(queries, [](const StreamAnswer&) {}, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_in_flight")));
}

TEST_F(RouterClientTest, RouteStreamWithNoQueriesEndsOk) {
  int answers = 0;
  EXPECT_THAT(client_->RouteStream({}, [&](const StreamAnswer&) { ++answers; }), IsOk());
  EXPECT_EQ(answers, 0);
}

TEST_F(RouterClientTest, RouteStreamEndedByTheServerReturnsItsStatus) {
  // Many queries after the one that ends the stream: the writer must stop, not hang.
  std::vector<v1::Query> queries = {Query("a", "abort")};
  for (int k = 0; k < 2000; ++k) queries.push_back(Query(absl::StrCat("t", k), "text"));
  int answers = 0;
  const absl::Status s = client_->RouteStream(queries, [&](const StreamAnswer& answer) {
    EXPECT_EQ(answer.index, 0);
    ++answers;
  });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted, "budget"));
  EXPECT_EQ(answers, 1);
}

TEST_F(RouterClientTest, CompleteSendsOnlyWhatIsGiven) {
  absl::StatusOr<v1::CompleteResponse> r = client_->Complete("a1");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->recorded_cost_usd(), -1);
  EXPECT_FALSE(r->lease_was_active());
  r = client_->Complete("a1", 0.5, true);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->recorded_cost_usd(), 0.5);
  EXPECT_TRUE(r->lease_was_active());
}

TEST_F(RouterClientTest, CompleteSendsTheScoreAndTheLearnedStatsCallsTheirFilters) {
  absl::StatusOr<v1::CompleteResponse> r = client_->Complete(
      "a1", CompleteOutcome{.actual_cost_usd = std::nullopt, .success = false, .score = 0.75});
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->lease_was_active());  // the score was sent
  r = client_->Complete(
      "a1", CompleteOutcome{.actual_cost_usd = std::nullopt, .success = true, .score = 0.25});
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->lease_was_active());
  absl::StatusOr<v1::GetLearnedStatsResponse> stats = client_->GetLearnedStats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->cells(0).model(), "*");
  EXPECT_EQ(stats->cells(0).cluster(), -1);
  stats = client_->GetLearnedStats({.model = "m", .cluster = 3});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->cells(0).model(), "m");
  EXPECT_EQ(stats->cells(0).cluster(), 3);
  EXPECT_THAT(client_->ResetLearnedStats({}), IsOkAndHolds(10));
  EXPECT_THAT(client_->ResetLearnedStats({.model = "m", .cluster = std::nullopt}), IsOkAndHolds(1));
  EXPECT_THAT(client_->ResetLearnedStats({.model = "m", .cluster = 0}), IsOkAndHolds(2));
}

TEST_F(RouterClientTest, HealthReportsServingAndUnknownServices) {
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> serving = client_->Health("");
  ASSERT_THAT(serving, IsOk());
  EXPECT_EQ(*serving, grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_THAT(client_->Health("no.such.Service"), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(RouterClientTest, UpdateConfigSendsDryRunAndExpectedGeneration) {
  auto generation = [&](const UpdateConfigOptions& update) {
    absl::StatusOr<uint64_t> g = client_->UpdateConfig("x: 1", update);
    EXPECT_THAT(g, IsOk());
    return g.value_or(0);
  };
  EXPECT_EQ(generation({}), 101u);
  EXPECT_EQ(generation({.dry_run = true, .expected_generation = std::nullopt}), 100u);
  EXPECT_EQ(generation({.dry_run = false, .expected_generation = 7}), 8u);
}

TEST_F(RouterClientTest, UnimplementedAdminCallsKeepTheirCode) {
  EXPECT_THAT(client_->ListModels(), StatusIs(absl::StatusCode::kUnimplemented, _));
}

}  // namespace
}  // namespace router::client
