// End-to-end tests of routerd in process, over loopback TCP: every call answered exactly once
// under concurrency and cancellations, budget and slot invariants per batch and per inline window,
// inline and batch decisions sharing one ledger, routing-mode resolution, precise errors for bad
// input while the server keeps serving, runtime config changes, drain on shutdown, /metrics.

#include "server/routerd.h"

#include <atomic>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "health.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "router/v1/router.grpc.pb.h"
#include "tests/router_core/testing/status_matchers.h"
#include "tests/server/http_get.h"
#include "tests/server/routerd_fixture.h"
#include "tests/server/testing/metrics_scrape.h"

namespace router::server {
namespace {

using core::testing::IsOk;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

constexpr char kLocal[] = "mistralai/mixtral-8x7b-chat";
constexpr int kLocalSlots = 6;
constexpr double kCap = 0.002;

// `extra` is appended (routing, inline sections); `cap` <= 0 leaves the budget uncapped.
std::string TestConfigYaml(int64_t max_batch_size = 16, const std::string& extra = "",
                           double cap = kCap, double max_batch_delay_ms = 2) {
  return absl::StrCat(R"(
listen: 127.0.0.1:0
metrics_listen: 127.0.0.1:0
batching: {max_batch_size: )", max_batch_size, ", max_batch_delay_ms: ", max_batch_delay_ms,
                      R"(, max_queued: 100000}
budget: {)", cap > 0 ? absl::StrCat("avg_cost_cap_usd: ", cap, ", ") : "", R"(lease_timeout_s: 600}
limits: {max_text_bytes: 4096}
shutdown: {grace_s: 5, drain_s: 0}
admin: {allow_unauthenticated: true}
models:
  - {name: "gpt-4-1106-preview"}
  - {name: "gpt-3.5-turbo-1106"}
  - {name: "claude-instant-v1"}
  - {name: ")", kLocal, R"(", instances: 2, slots_per_instance: 3}
)", extra, "\n");
}

class RouterdTest : public testing::RouterdFixture {
 protected:
  void SetUp() override { Start(TestConfigYaml()); }

  void Start(const std::string& yaml) {
    StartRouterd(yaml);
    if (HasFatalFailure()) return;
    stub_ = v1::Router::NewStub(channel_);
    admin_ = v1::RouterAdmin::NewStub(channel_);
  }

  static v1::Query MakeQuery(const std::string& id, int variant) {
    static const char* kTexts[] = {
        "Which gas do plants absorb from the air?\nA) oxygen\nB) carbon dioxide\nC) helium",
        "Write a python function that returns the n-th Fibonacci number.",
        "The trophy didn't fit into the suitcase because it was too big. What was too big?",
        "Prove that the square root of two is irrational."};
    v1::Query q;
    q.set_id(id);
    q.set_text(kTexts[variant % 4]);
    return q;
  }

  static v1::Query InlineQuery(const std::string& id, int variant) {
    v1::Query q = MakeQuery(id, variant);
    q.set_mode(v1::ROUTING_MODE_INLINE);
    return q;
  }

  grpc::Status RouteOne(const v1::Query& q, v1::RouteResponse* out,
                        std::chrono::seconds deadline = std::chrono::seconds(10)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    v1::RouteRequest req;
    *req.mutable_query() = q;
    return stub_->Route(&ctx, req, out);
  }

  // Replaces the runtime configuration (the whole document, as RouterAdmin.UpdateConfig does).
  grpc::Status UpdateConfig(const std::string& yaml) {
    grpc::ClientContext ctx;
    v1::UpdateConfigRequest update;
    update.set_yaml(yaml);
    v1::UpdateConfigResponse response;
    return admin_->UpdateConfig(&ctx, update, &response);
  }

  grpc::Status Complete(const std::string& assignment_id, v1::CompleteResponse* out) {
    grpc::ClientContext ctx;
    v1::CompleteRequest complete;
    complete.set_assignment_id(assignment_id);
    return stub_->Complete(&ctx, complete, out);
  }

  std::unique_ptr<v1::Router::Stub> stub_;
  std::unique_ptr<v1::RouterAdmin::Stub> admin_;
};

// One async unary call, answered exactly once (the callback counts its invocations).
struct AsyncCall {
  grpc::ClientContext ctx;
  v1::RouteRequest request;
  v1::RouteResponse response;
  grpc::Status status;
  std::atomic<int> callbacks{0};
};

using testing::HttpGet;
using testing::MetricValue;

TEST_F(RouterdTest, EveryCallIsAnsweredExactlyOnceUnderLoadAndCancellation) {
  constexpr int kCalls = 3000;
  std::vector<std::unique_ptr<AsyncCall>> calls;
  std::atomic<int> done{0};
  absl::Notification all_done;
  std::mt19937 rng(3);
  for (int k = 0; k < kCalls; ++k) {
    auto call = std::make_unique<AsyncCall>();
    *call->request.mutable_query() = MakeQuery(absl::StrCat("q", k), k);
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    AsyncCall* raw = call.get();
    stub_->async()->Route(&raw->ctx, &raw->request, &raw->response, [raw, &done, &all_done](grpc::Status s) {
      raw->status = std::move(s);
      raw->callbacks.fetch_add(1);
      if (done.fetch_add(1) + 1 == kCalls) all_done.Notify();
    });
    if (rng() % 10 == 0) raw->ctx.TryCancel();
    calls.push_back(std::move(call));
  }
  ASSERT_TRUE(all_done.WaitForNotificationWithTimeout(absl::Seconds(120)));
  int ok = 0, cancelled = 0;
  std::map<std::string, std::vector<const v1::Assignment*>> by_batch;
  for (const auto& c : calls) {
    EXPECT_EQ(c->callbacks.load(), 1);
    if (c->status.ok()) {
      ++ok;
      EXPECT_EQ(c->response.assignment().query_id(), c->request.query().id());
      by_batch[c->response.assignment().decision().batch_id()].push_back(&c->response.assignment());
    } else {
      EXPECT_EQ(c->status.error_code(), grpc::StatusCode::CANCELLED) << c->status.error_message();
      ++cancelled;
    }
  }
  EXPECT_EQ(ok + cancelled, kCalls);
  EXPECT_GT(ok, kCalls / 2);
  // Every batch within its cap (average cap x batch size); no more local assignments than slots
  // (leases outlive the test, and nothing was completed).
  int local = 0;
  for (const auto& [id, members] : by_batch) {
    double spent = 0;
    for (const v1::Assignment* a : members) {
      spent += a->predicted_cost_usd();
      local += a->model() == kLocal;
      EXPECT_LE(members.size(), static_cast<size_t>(a->decision().batch_size()));
    }
    EXPECT_LE(spent, kCap * members.front()->decision().batch_size() + 1e-9) << id;
  }
  EXPECT_LE(local, kLocalSlots);
  // The ledger holds exactly the local assignments the server made, less those it released because
  // their answer never reached the client (router_undelivered_assignments_total). Those releases
  // happen in the calls' OnDone, which may follow the client's own CANCELLED, so this waits for
  // the two to agree (bounded; not a timing assertion). A cancellation that reaches the server
  // only after its answer left is not seen there: that slot stays held until its lease expires,
  // so the ledger may hold more than the clients received.
  auto series = [](const std::string& metrics, const char* name) {
    // A series is absent until its first increment.
    return std::max(0.0, MetricValue(metrics, absl::StrCat(name, "{model=\"", kLocal, "\"}")));
  };
  int64_t held = 0;
  double expected = -1;
  for (int polls = 0; polls < 10000 && held != expected; ++polls) {
    const std::string metrics = HttpGet(routerd_->metrics_port(), "/metrics");
    held = routerd_->runtime().ledger().InUse(kLocal).value();
    expected = series(metrics, "router_assignments_total") -
               series(metrics, "router_undelivered_assignments_total");
  }
  EXPECT_EQ(held, expected);
  EXPECT_GE(held, local);
  EXPECT_LE(held - local, cancelled);
  EXPECT_LE(held, kLocalSlots);
  // Every query was valid: a call its client cancelled is counted as cancelled, never as an
  // invalid request (an empty request buffer is what a call cancelled early leaves behind).
  const std::string metrics = HttpGet(routerd_->metrics_port(), "/metrics");
  EXPECT_EQ(MetricValue(metrics, "router_requests_total{method=\"Route\",code=\"INVALID_ARGUMENT\"}"), -1)
      << "no series: no Route was answered INVALID_ARGUMENT";
}

// A client that stops reading its answers: the stream stops taking queries once
// limits.max_stream_backlog are read and unanswered (gRPC's flow control then holds the client's
// writes back), so no answer message grows past the backlog and every query is answered.
TEST_F(RouterdTest, AStreamWhoseClientStopsReadingIsFlowControlledAndLosesNothing) {
  constexpr int kBacklog = 32;
  ASSERT_TRUE(UpdateConfig(absl::StrCat("limits: {max_stream_backlog: ", kBacklog,
                                        ", max_text_bytes: 4096}\n"
                                        "routing: {default_mode: inline}"))
                  .ok());
  constexpr int kQueries = 3000;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto stream = stub_->RouteStream(&ctx);
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int k = 0; k < kQueries; ++k) {
      v1::RouteStreamRequest req;
      *req.mutable_query() = MakeQuery(absl::StrCat("s", k), k);
      if (!stream->Write(req)) break;
      written.fetch_add(1);
    }
    stream->WritesDone();
  });
  // Read nothing until the server must have stopped reading (it reads at most kBacklog queries
  // ahead of the answers read, and transport buffers hold a few hundred more).
  while (written.load() < 4 * kBacklog) {
  }
  int answered = 0;
  size_t largest = 0;
  v1::RouteStreamResponse resp;
  while (stream->Read(&resp)) {
    largest = std::max<size_t>(largest, resp.items_size());
    answered += resp.items_size();
  }
  writer.join();
  const grpc::Status s = stream->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(written.load(), kQueries);
  EXPECT_EQ(answered, kQueries);
  EXPECT_LE(largest, static_cast<size_t>(kBacklog));
}

TEST_F(RouterdTest, StreamAnswersEveryQueryAndKeepsGoingAfterABadOne) {
  grpc::ClientContext ctx;
  auto stream = stub_->RouteStream(&ctx);
  constexpr int kQueries = 200;
  for (int k = 0; k < kQueries; ++k) {
    v1::RouteStreamRequest r;
    *r.mutable_query() = MakeQuery(absl::StrCat("s", k), k);
    if (k == 17) r.mutable_query()->clear_text();  // bad: no text, no embedding
    ASSERT_TRUE(stream->Write(r));
  }
  stream->WritesDone();
  std::map<std::string, int> seen;
  v1::RouteStreamResponse resp;
  int errors = 0;
  while (stream->Read(&resp)) {
    EXPECT_GT(resp.items_size(), 0);  // a message carries at least one answer
    for (const v1::RouteBatchItem& item : resp.items()) {
      if (item.has_error()) {
        ++errors;
        EXPECT_EQ(item.error().query_id(), "s17");
        EXPECT_EQ(item.error().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
        EXPECT_THAT(item.error().message(), HasSubstr("query.text: required"));
        ++seen[item.error().query_id()];
      } else {
        ++seen[item.assignment().query_id()];
      }
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(errors, 1);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kQueries));
  for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << id;
}

// The batch thread stages every answer of a batch before it starts any write, so a stream's
// queries that share a batch come back as one message, whatever the write timing.
TEST_F(RouterdTest, AStreamGetsItsAnswersFromOneBatchInOneMessage) {
  constexpr int kQueries = 8;
  ASSERT_TRUE(UpdateConfig(TestConfigYaml(kQueries, "", kCap, /*max_batch_delay_ms=*/60000)).ok());
  for (int round = 0; round < 5; ++round) {
    grpc::ClientContext ctx;
    auto stream = stub_->RouteStream(&ctx);
    for (int k = 0; k < kQueries; ++k) {
      v1::RouteStreamRequest r;
      *r.mutable_query() = MakeQuery(absl::StrCat("r", round, "q", k), k);
      ASSERT_TRUE(stream->Write(r));
    }
    // The client half-closes only after its answers: a half-close also starts the stream's
    // pending write, which could send part of a batch's answers while the rest are being staged.
    std::vector<int> message_sizes;
    int answered = 0;
    v1::RouteStreamResponse resp;
    while (answered < kQueries && stream->Read(&resp)) {
      message_sizes.push_back(resp.items_size());
      for (const v1::RouteBatchItem& item : resp.items()) {
        ++answered;
        ASSERT_TRUE(item.has_assignment()) << item.error().message();
        EXPECT_EQ(item.assignment().decision().batch_size(), kQueries);
      }
    }
    stream->WritesDone();
    EXPECT_FALSE(stream->Read(&resp));
    EXPECT_TRUE(stream->Finish().ok());
    EXPECT_THAT(message_sizes, ElementsAre(kQueries)) << "round " << round;
  }
}
TEST_F(RouterdTest, RouteBatchAnswersInOrderWithPerItemErrors) {
  v1::RouteBatchRequest req;
  for (int k = 0; k < 10; ++k) *req.add_queries() = MakeQuery(absl::StrCat("b", k), k);
  req.mutable_queries(3)->add_allowed_models("gpt-9");
  req.mutable_queries(5)->set_id("b4");  // duplicate
  grpc::ClientContext ctx;
  v1::RouteBatchResponse resp;
  ASSERT_TRUE(stub_->RouteBatch(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.items_size(), 10);
  EXPECT_THAT(resp.items(3).error().message(), HasSubstr("queries[3].allowed_models[0]: unknown model 'gpt-9'"));
  EXPECT_THAT(resp.items(5).error().message(), HasSubstr("queries[5].id: duplicate query id 'b4'"));
  double spent = 0;
  for (int k = 0; k < 10; ++k) {
    if (k == 3 || k == 5) continue;
    ASSERT_TRUE(resp.items(k).has_assignment()) << resp.items(k).error().message();
    EXPECT_EQ(resp.items(k).assignment().query_id(), req.queries(k).id());
    EXPECT_EQ(resp.items(k).assignment().decision().batch_size(), 8);
    EXPECT_EQ(resp.items(k).assignment().lease_timeout().seconds(), 600);  // budget.lease_timeout_s
    spent += resp.items(k).assignment().predicted_cost_usd();
  }
  EXPECT_LE(spent, 8 * kCap + 1e-9);
}

TEST_F(RouterdTest, BadInputGetsPreciseErrorsAndTheServerKeepsServing) {
  v1::RouteResponse out;
  v1::Query q = MakeQuery("", 0);
  grpc::Status s = RouteOne(q, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("query.id: required"));

  q = MakeQuery("nan", 0);
  q.clear_text();
  q.add_embedding(std::numeric_limits<float>::quiet_NaN());
  s = RouteOne(q, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("query.embedding"));

  q = MakeQuery("unknown", 0);
  q.add_allowed_models("gpt-9");
  s = RouteOne(q, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("query.allowed_models[0]: unknown model 'gpt-9'"));

  q = MakeQuery("huge", 0);
  q.set_text(std::string(5000, 'x'));
  s = RouteOne(q, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("query.text: 5000 bytes is over the limit of 4096"));

  grpc::ClientContext ctx;
  v1::UpdateConfigRequest update;
  update.set_yaml("batching: {max_batch_size: 0}");
  v1::UpdateConfigResponse update_resp;
  s = admin_->UpdateConfig(&ctx, update, &update_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("batching.max_batch_size"));

  grpc::ClientContext ctx2;
  update.set_yaml("policy: {name: batch, gammma: 2}");
  s = admin_->UpdateConfig(&ctx2, update, &update_resp);
  EXPECT_THAT(s.error_message(), HasSubstr("policy.gammma: unknown key"));

  grpc::ClientContext ctx3;
  v1::CompleteRequest complete;
  complete.set_assignment_id("nope");
  v1::CompleteResponse complete_resp;
  s = stub_->Complete(&ctx3, complete, &complete_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);

  EXPECT_TRUE(RouteOne(MakeQuery("fine", 1), &out).ok());  // still serving
}

TEST_F(RouterdTest, ConfigUpdatesApplyAtomicallyAndCompleteFreesSlots) {
  // Only the self-hosted model: its 6 slots bound how many queries can be served.
  grpc::ClientContext ctx;
  v1::GetConfigResponse current;
  ASSERT_TRUE(admin_->GetConfig(&ctx, v1::GetConfigRequest(), &current).ok());
  v1::UpdateConfigRequest update;
  update.set_yaml(absl::StrCat(current.yaml(), "\n"));
  update.set_expected_generation(current.config_generation() + 7);  // stale
  v1::UpdateConfigResponse update_resp;
  grpc::ClientContext ctx2;
  EXPECT_EQ(admin_->UpdateConfig(&ctx2, update, &update_resp).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  v1::RouteBatchRequest req;
  for (int k = 0; k < 8; ++k) {
    *req.add_queries() = MakeQuery(absl::StrCat("l", k), k);
    req.mutable_queries(k)->add_allowed_models(kLocal);
  }
  grpc::ClientContext ctx3;
  v1::RouteBatchResponse resp;
  ASSERT_TRUE(stub_->RouteBatch(&ctx3, req, &resp).ok());
  std::vector<std::string> ids;
  int refused = 0;
  for (const auto& item : resp.items()) {
    if (item.has_assignment()) {
      ids.push_back(item.assignment().assignment_id());
    } else {
      EXPECT_EQ(item.error().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
      EXPECT_THAT(item.error().message(), HasSubstr("out of free slots"));
      ++refused;
    }
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kLocalSlots));
  EXPECT_EQ(refused, 2);
  grpc::ClientContext ctx4;
  v1::CompleteRequest complete;
  complete.set_assignment_id(ids[0]);
  complete.set_actual_cost_usd(0.0);
  v1::CompleteResponse complete_resp;
  ASSERT_TRUE(stub_->Complete(&ctx4, complete, &complete_resp).ok());
  EXPECT_TRUE(complete_resp.lease_was_active());
  EXPECT_EQ(routerd_->runtime().ledger().InUse(kLocal).value(), kLocalSlots - 1);

  // Grow the model at runtime: two more instances, 6 more slots.
  grpc::ClientContext ctx5;
  v1::UpsertModelRequest upsert;
  upsert.mutable_deployment()->set_name(kLocal);
  upsert.mutable_deployment()->set_instances(4);
  upsert.mutable_deployment()->set_slots_per_instance(3);
  v1::UpsertModelResponse upsert_resp;
  ASSERT_TRUE(admin_->UpsertModel(&ctx5, upsert, &upsert_resp).ok());
  EXPECT_EQ(upsert_resp.model().slots_total(), 12);
  EXPECT_EQ(upsert_resp.model().slots_in_use(), kLocalSlots - 1);
  grpc::ClientContext ctx6;
  ASSERT_TRUE(stub_->RouteBatch(&ctx6, req, &resp).ok());
  int served = 0;
  for (const auto& item : resp.items()) served += item.has_assignment();
  EXPECT_EQ(served, 7);  // 12 - 5 in use
}

TEST_F(RouterdTest, RemovedModelIsNeverReturned) {
  grpc::ClientContext ctx;
  v1::RemoveModelRequest remove;
  remove.set_name("gpt-4-1106-preview");
  v1::RemoveModelResponse remove_resp;
  ASSERT_TRUE(admin_->RemoveModel(&ctx, remove, &remove_resp).ok());
  for (int k = 0; k < 40; ++k) {
    v1::RouteResponse out;
    ASSERT_TRUE(RouteOne(MakeQuery(absl::StrCat("r", k), k), &out).ok());
    EXPECT_NE(out.assignment().model(), "gpt-4-1106-preview");
    for (const std::string& f : out.assignment().fallback_models()) EXPECT_NE(f, "gpt-4-1106-preview");
  }
  grpc::ClientContext ctx2;
  EXPECT_EQ(admin_->RemoveModel(&ctx2, remove, &remove_resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(RouterdTest, MetricsParseAsPrometheusTextAndMoveWithTraffic) {
  const std::string before = HttpGet(routerd_->metrics_port(), "/metrics");
  ASSERT_THAT(before, HasSubstr("200 OK"));
  v1::RouteResponse out;
  for (int k = 0; k < 5; ++k) ASSERT_TRUE(RouteOne(MakeQuery(absl::StrCat("m", k), k), &out).ok());
  const std::string after = HttpGet(routerd_->metrics_port(), "/metrics");
  const double routed_before =
      std::max(0.0, MetricValue(before, R"(router_requests_total{code="OK",method="Route"})"));
  EXPECT_EQ(MetricValue(after, R"(router_requests_total{code="OK",method="Route"})"), routed_before + 5);
  EXPECT_GE(MetricValue(after, "router_batch_size_count"), 1);
  // Every sample line is `name{labels} value` or `name value` with a numeric value.
  const std::string body = after.substr(after.find("\r\n\r\n") + 4);
  size_t pos = 0;
  int samples = 0;
  while (pos < body.size()) {
    const size_t end = body.find('\n', pos);
    const std::string line = body.substr(pos, end - pos);
    pos = end == std::string::npos ? body.size() : end + 1;
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    ASSERT_NE(space, std::string::npos) << line;
    EXPECT_TRUE(line.rfind("router_", 0) == 0 || line.rfind("exposer_", 0) == 0) << line;
    const std::string value = line.substr(space + 1);
    EXPECT_TRUE(value == "+Inf" || value == "-Inf" || value == "NaN" ||
                std::isfinite(std::stod(value)))
        << line;
    ++samples;
  }
  EXPECT_GT(samples, 20);
}

TEST_F(RouterdTest, HealthReportsTheRouterServiceServing) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("router.v1.Router");
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

// A batch that would wait 10 s for company closes early for a member whose deadline is near.
TEST_F(RouterdTest, ABatchClosesEarlyForAMembersDeadline) {
  // The batch closes solve_margin before the deadline; 500 ms leaves the answer time to arrive on a
  // loaded machine (50 ms once failed while another build ran beside the tests).
  grpc::ClientContext update_ctx;
  v1::UpdateConfigRequest update;
  update.set_yaml("batching: {max_batch_size: 512, max_batch_delay_ms: 10000, solve_margin_ms: 500}");
  v1::UpdateConfigResponse update_resp;
  ASSERT_TRUE(admin_->UpdateConfig(&update_ctx, update, &update_resp).ok());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::RouteRequest req;
  *req.mutable_query() = MakeQuery("urgent", 0);
  v1::RouteResponse resp;
  const grpc::Status s = stub_->Route(&ctx, req, &resp);
  // Answered before its 2 s deadline, alone: the batch did not wait out its 10 s delay.
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.assignment().decision().batch_size(), 1);
}

// Query ids are the callers' own: independent callers that chose the same id and land in one
// batch are each answered, with their own id, and so are the others in that batch.
TEST_F(RouterdTest, CallersSharingAQueryIdInOneBatchAreAllAnswered) {
  for (const int unique : {0, 30}) {
    const int n = unique + (unique == 0 ? 8 : 2);
    // Batches close on size only: all n calls are decided together.
    ASSERT_TRUE(UpdateConfig(absl::StrCat("batching: {max_batch_size: ", n,
                                          ", max_batch_delay_ms: 60000}\n"
                                          "budget: {avg_cost_cap_usd: 0.002}"))
                    .ok());
    std::vector<std::unique_ptr<AsyncCall>> calls;
    std::atomic<int> done{0};
    absl::Notification all_done;
    for (int k = 0; k < n; ++k) {
      auto call = std::make_unique<AsyncCall>();
      *call->request.mutable_query() = MakeQuery(k < unique ? absl::StrCat("u", k) : "1", k);
      call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      AsyncCall* raw = call.get();
      stub_->async()->Route(&raw->ctx, &raw->request, &raw->response,
                            [raw, n, &done, &all_done](grpc::Status s) {
                              raw->status = std::move(s);
                              raw->callbacks.fetch_add(1);
                              if (done.fetch_add(1) + 1 == n) all_done.Notify();
                            });
      calls.push_back(std::move(call));
    }
    ASSERT_TRUE(all_done.WaitForNotificationWithTimeout(absl::Seconds(60)));
    std::set<std::string> batches;
    for (const auto& c : calls) {
      EXPECT_EQ(c->callbacks.load(), 1);
      ASSERT_TRUE(c->status.ok()) << c->status.error_message();
      EXPECT_EQ(c->response.assignment().query_id(), c->request.query().id());
      EXPECT_EQ(c->response.assignment().decision().batch_size(), n);
      batches.insert(c->response.assignment().decision().batch_id());
    }
    EXPECT_EQ(batches.size(), 1u) << "the calls were meant to share one batch";
  }
}

TEST_F(RouterdTest, PlanInstancesAnswersWithThePlannersJson) {
  grpc::ClientContext ctx;
  v1::PlanInstancesRequest req;
  req.set_scenario_json(R"({"gpu_budget":4,"avg_cost_cap":0.01,"time_limit_ms":2000,
    "models":[{"name":"local","gpus_per_instance":2,"slots_per_instance":1},{"name":"api"}],
    "batches":[[{"id":"q0","quality":[0.9,0.5],"cost":[0.0,0.01]},
                {"id":"q1","quality":[0.8,0.6],"cost":[0.0,0.01]}]]})");
  v1::PlanInstancesResponse resp;
  ASSERT_TRUE(admin_->PlanInstances(&ctx, req, &resp).ok());
  EXPECT_THAT(resp.plan_json(), HasSubstr(R"("instances":{"local":2})"));
  grpc::ClientContext ctx2;
  req.set_scenario_json(R"({"gpu_budget":4})");
  const grpc::Status s = admin_->PlanInstances(&ctx2, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("models: required field missing"));
}

// Shutdown under load: every call still gets exactly one answer (routed, or UNAVAILABLE once the
// scheduler stopped accepting), none hangs. The stream limit is above the number of calls, so every
// call reaches routerd as soon as it is made: calls a client holds back at the limit are the next
// test's subject. With a thousand held back, when they are sent depends on how fast the client
// takes in a thousand answers, which on a loaded machine under a sanitizer can exceed the quiet
// period, and no server can observe it.
TEST_F(RouterdTest, ShutdownUnderLoadLosesNothing) {
  routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
  routerd_.reset();
  constexpr int kCalls = 2000;
  Start(TestConfigYaml(/*max_batch_size=*/512,
                       absl::StrCat("grpc: {max_concurrent_streams: ", 2 * kCalls, "}")));
  ASSERT_FALSE(HasFatalFailure());
  std::vector<std::unique_ptr<AsyncCall>> calls;
  std::atomic<int> done{0};
  absl::Notification all_done;
  std::thread stopper;
  for (int k = 0; k < kCalls; ++k) {
    auto call = std::make_unique<AsyncCall>();
    *call->request.mutable_query() = MakeQuery(absl::StrCat("d", k), k);
    AsyncCall* raw = call.get();
    stub_->async()->Route(&raw->ctx, &raw->request, &raw->response, [raw, &done, &all_done](grpc::Status s) {
      raw->status = std::move(s);
      raw->callbacks.fetch_add(1);
      if (done.fetch_add(1) + 1 == kCalls) all_done.Notify();
    });
    calls.push_back(std::move(call));
    if (k == kCalls / 2) {
      // The drain keeps routing while the rest of the burst arrives, as load balancers would see it.
      // A generous grace: on a loaded machine (CI runs tests in parallel) dispatching the backlog
      // takes a while; Shutdown returns as soon as every call is answered.
      stopper = std::thread([this] { routerd_->Shutdown(absl::Seconds(1), absl::Seconds(60)); });
    }
  }
  const bool answered = all_done.WaitForNotificationWithTimeout(absl::Seconds(120));
  stopper.join();
  ASSERT_TRUE(answered);
  int ok = 0;
  for (const auto& c : calls) {
    EXPECT_EQ(c->callbacks.load(), 1);
    if (c->status.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(c->status.error_code(), grpc::StatusCode::UNAVAILABLE)
          << c->status.error_message() << " (call " << (&c - &calls[0]) << ")";
    }
  }
  EXPECT_GT(ok, 0);
}

// Calls a client holds back at the stream limit (grpc.max_concurrent_streams) while routerd's own
// queued queries fill every stream: no call arrives for as long as those queries wait (here the
// whole drain, the batch waiting for company), and each answer sent frees a stream for one held
// back, which then arrives. Those calls get routerd's UNAVAILABLE, not CANCELLED from a gRPC server
// already shut down: the quiet period waits for the answers to be sent and counts from the last.
TEST_F(RouterdTest, ShutdownAnswersCallsHeldBackAtTheStreamLimit) {
  routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
  routerd_.reset();
  constexpr int kStreams = 4;
  constexpr int kCalls = 3 * kStreams;
  Start(TestConfigYaml(/*max_batch_size=*/100,
                       absl::StrCat("grpc: {max_concurrent_streams: ", kStreams, "}"), kCap,
                       /*max_batch_delay_ms=*/60000));
  ASSERT_FALSE(HasFatalFailure());
  std::vector<std::unique_ptr<AsyncCall>> calls;
  std::atomic<int> done{0};
  absl::Notification all_done;
  for (int k = 0; k < kCalls; ++k) {
    auto call = std::make_unique<AsyncCall>();
    *call->request.mutable_query() = MakeQuery(absl::StrCat("s", k), k);
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    AsyncCall* raw = call.get();
    stub_->async()->Route(&raw->ctx, &raw->request, &raw->response,
                          [raw, &done, &all_done](grpc::Status s) {
                            raw->status = std::move(s);
                            raw->callbacks.fetch_add(1);
                            if (done.fetch_add(1) + 1 == kCalls) all_done.Notify();
                          });
    calls.push_back(std::move(call));
  }
  // The first kStreams calls wait for a batch (60 s delay); the others wait in the client.
  const absl::Time wait_until = absl::Now() + absl::Seconds(60);
  while (routerd_->runtime().NumQueued() < kStreams && absl::Now() < wait_until) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(routerd_->runtime().NumQueued(), kStreams);
  // A drain longer than the quiet period: by its end, no call has arrived for longer than that.
  routerd_->Shutdown(2 * Routerd::kShutdownQuietPeriod, absl::Seconds(60));
  ASSERT_TRUE(all_done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  int ok = 0;
  for (const auto& c : calls) {
    EXPECT_EQ(c->callbacks.load(), 1);
    if (c->status.ok()) {
      ++ok;
      continue;
    }
    EXPECT_EQ(c->status.error_code(), grpc::StatusCode::UNAVAILABLE) << c->status.error_message();
    EXPECT_THAT(c->status.error_message(), HasSubstr("shutting down; retry on another replica"));
  }
  EXPECT_EQ(ok, kStreams);  // the queued batch is decided when the drain ends
}

// ---- Inline routing ----------------------------------------------------------------

// Starts `n` async Route calls built by `make`; cancels each with probability `cancel_one_in`
// (0 = never) right after starting it; returns once every callback ran.
std::vector<std::unique_ptr<AsyncCall>> RouteAsync(v1::Router::Stub& stub, int n,
                                                   const std::function<v1::Query(int)>& make,
                                                   int cancel_one_in, uint32_t seed) {
  std::vector<std::unique_ptr<AsyncCall>> calls;
  std::atomic<int> done{0};
  absl::Notification all_done;
  std::mt19937 rng(seed);
  for (int k = 0; k < n; ++k) {
    auto call = std::make_unique<AsyncCall>();
    *call->request.mutable_query() = make(k);
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    AsyncCall* raw = call.get();
    stub.async()->Route(&raw->ctx, &raw->request, &raw->response, [raw, n, &done, &all_done](grpc::Status s) {
      raw->status = std::move(s);
      raw->callbacks.fetch_add(1);
      if (done.fetch_add(1) + 1 == n) all_done.Notify();
    });
    if (cancel_one_in > 0 && rng() % cancel_one_in == 0) raw->ctx.TryCancel();
    calls.push_back(std::move(call));
  }
  // Bounded so a lost answer fails the test instead of hanging it (not a timing assertion).
  EXPECT_TRUE(all_done.WaitForNotificationWithTimeout(absl::Seconds(240)));
  return calls;
}

// Thousands of concurrent inline Route calls, a tenth of them cancelled: each gets exactly one
// answer; every routed one was decided inline within its window's cap; slots hold.
TEST_F(RouterdTest, InlineRouteAnswersEveryCallExactlyOnceUnderLoadAndCancellation) {
  constexpr int kCalls = 3000;
  constexpr int64_t kWindow = 100;  // the default inline.window_arrivals
  const std::vector<std::unique_ptr<AsyncCall>> calls = RouteAsync(
      *stub_, kCalls, [](int k) { return InlineQuery(absl::StrCat("i", k), k); }, 10, 7);
  int ok = 0, cancelled = 0, refused = 0, local = 0;
  std::map<std::string, std::vector<const v1::Assignment*>> by_window;
  for (const auto& c : calls) {
    ASSERT_EQ(c->callbacks.load(), 1);
    if (c->status.ok()) {
      ++ok;
      const v1::Assignment& a = c->response.assignment();
      EXPECT_EQ(a.query_id(), c->request.query().id());
      EXPECT_EQ(a.decision_mode(), v1::ROUTING_MODE_INLINE);
      EXPECT_FALSE(a.has_decision());  // batch facts only for batch decisions
      ASSERT_TRUE(a.has_inline_decision());
      const v1::InlineDecision& d = a.inline_decision();
      EXPECT_DOUBLE_EQ(d.window_cap_usd(), kCap * kWindow);
      EXPECT_LE(d.window_spent_usd(), d.window_cap_usd() + 1e-9);
      EXPECT_GE(d.position_in_window(), 0);
      EXPECT_LT(d.position_in_window(), kWindow);
      EXPECT_GE(d.lambda_per_usd(), 0);
      EXPECT_FALSE(a.assignment_id().empty());
      EXPECT_EQ(a.lease_timeout().seconds(), 600);  // budget.lease_timeout_s
      local += a.model() == kLocal;
      by_window[d.window_id()].push_back(&a);
    } else if (c->status.error_code() == grpc::StatusCode::CANCELLED) {
      ++cancelled;
    } else {
      // The window's guard may refuse a query it cannot pay for; nothing else may fail.
      EXPECT_EQ(c->status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << c->status.error_message();
      ++refused;
    }
  }
  EXPECT_EQ(ok + cancelled + refused, kCalls);
  EXPECT_GT(ok, kCalls / 2);
  EXPECT_GE(by_window.size(), static_cast<size_t>(ok / kWindow));
  for (const auto& [id, members] : by_window) {
    double seen = 0, reported = 0;
    std::set<int64_t> positions;
    for (const v1::Assignment* a : members) {
      seen += a->predicted_cost_usd();
      reported = std::max(reported, a->inline_decision().window_spent_usd());
      EXPECT_TRUE(positions.insert(a->inline_decision().position_in_window()).second)
          << id << " decided two queries at one position";
    }
    // What the clients saw is part of what the window spent (a cancelled call may have been
    // decided too), and neither exceeds the cap.
    EXPECT_LE(seen, kCap * kWindow + 1e-9) << id;
    EXPECT_GE(reported + 1e-12, seen) << id;
  }
  // A call cancelled after its decision holds its slot without the client seeing it, so the ledger
  // may hold more than the clients saw, never more than the slots.
  const int64_t in_use = routerd_->runtime().ledger().InUse(kLocal).value();
  EXPECT_LE(local, in_use);
  EXPECT_LE(in_use, kLocalSlots);
  EXPECT_GE(routerd_->runtime().ledger().Totals()->open_assignments, ok);
}

// An adversarial order: in every window of 10, five cheap queries come first and five that may
// only use the most expensive model come last, with a cap of three of those per window. No window
// ever spends more than its cap; the queries it cannot pay for are refused, not overspent; a model
// never gets more assignments than it has slots.
TEST_F(RouterdTest, InlineWindowsNeverExceedTheirCapAndSlotsHold) {
  constexpr char kExpensive[] = "gpt-4-1106-preview";
  constexpr char kCheap[] = "claude-instant-v1";
  // Learn the expensive model's predicted cost for the query text used below (batch mode, no cap).
  routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
  routerd_.reset();
  Start(TestConfigYaml(16, "", /*cap=*/0));
  v1::Query probe = MakeQuery("probe", 3);
  probe.add_allowed_models(kExpensive);
  v1::RouteResponse out;
  ASSERT_TRUE(RouteOne(probe, &out).ok());
  const double expensive_cost = out.assignment().predicted_cost_usd();
  ASSERT_GT(expensive_cost, 0);
  constexpr int64_t kWindow = 10;
  // Window cap = 3 expensive queries (as the YAML prints it: StrCat keeps 6 digits).
  const double avg_cap = std::stod(absl::StrCat(0.3 * expensive_cost));
  const double window_cap = avg_cap * kWindow;
  ASSERT_TRUE(UpdateConfig(TestConfigYaml(16, "inline: {window_arrivals: 10}", avg_cap)).ok());

  std::map<std::string, double> spent;
  int refused = 0;
  constexpr int kBudgetQueries = 40;
  for (int k = 0; k < kBudgetQueries; ++k) {
    v1::Query q = InlineQuery(absl::StrCat("w", k), 3);
    q.add_allowed_models(k % kWindow < 5 ? kCheap : kExpensive);
    const grpc::Status s = RouteOne(q, &out);
    if (!s.ok()) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
      EXPECT_THAT(s.error_message(), HasSubstr("inline window"));
      EXPECT_GE(k % kWindow, 5) << "a cheap query was refused";
      ++refused;
      continue;
    }
    const v1::InlineDecision& d = out.assignment().inline_decision();
    EXPECT_EQ(d.position_in_window(), k % kWindow);
    EXPECT_NEAR(d.window_cap_usd(), window_cap, 1e-12);
    spent[d.window_id()] += out.assignment().predicted_cost_usd();
    EXPECT_NEAR(d.window_spent_usd(), spent[d.window_id()], 1e-12);
    EXPECT_LE(spent[d.window_id()], window_cap + 1e-12) << d.window_id();
  }
  EXPECT_EQ(spent.size(), static_cast<size_t>(kBudgetQueries / kWindow));
  // Five expensive arrivals per window against a cap of three: at least two refused per window.
  EXPECT_GE(refused, 2 * kBudgetQueries / kWindow);

  // Slots: ten queries that may only use the self-hosted model, which has six.
  int local = 0;
  for (int k = 0; k < 10; ++k) {
    v1::Query q = InlineQuery(absl::StrCat("l", k), k);
    q.add_allowed_models(kLocal);
    const grpc::Status s = RouteOne(q, &out);
    if (s.ok()) {
      EXPECT_EQ(out.assignment().model(), kLocal);
      ++local;
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      EXPECT_THAT(s.error_message(), HasSubstr("out of free slots"));
    }
  }
  EXPECT_EQ(local, kLocalSlots);
  EXPECT_EQ(routerd_->runtime().ledger().InUse(kLocal).value(), kLocalSlots);
}

// Inline and batch decisions on one server draw on one ledger: slots taken by either are seen by
// both, the ledger holds exactly the open assignments, and Complete releases exactly one slot per
// assignment, whichever mode decided it.
TEST_F(RouterdTest, InlineAndBatchShareTheLedgerWithoutDoubleCounting) {
  core::Ledger& ledger = routerd_->runtime().ledger();
  std::vector<std::string> ids;
  double reserved = 0;
  auto local_query = [](const std::string& id, v1::RoutingMode mode) {
    v1::Query q = MakeQuery(id, static_cast<int>(id.size()));
    q.add_allowed_models(kLocal);
    q.set_mode(mode);
    return q;
  };
  v1::RouteResponse out;
  for (int k = 0; k < 2; ++k) {
    ASSERT_TRUE(RouteOne(local_query(absl::StrCat("in", k), v1::ROUTING_MODE_INLINE), &out).ok());
    EXPECT_EQ(out.assignment().decision_mode(), v1::ROUTING_MODE_INLINE);
    ids.push_back(out.assignment().assignment_id());
    reserved += out.assignment().predicted_cost_usd();
    ASSERT_TRUE(RouteOne(local_query(absl::StrCat("ba", k), v1::ROUTING_MODE_BATCH), &out).ok());
    EXPECT_EQ(out.assignment().decision_mode(), v1::ROUTING_MODE_BATCH);
    EXPECT_FALSE(out.assignment().decision().batch_id().empty());
    ids.push_back(out.assignment().assignment_id());
    reserved += out.assignment().predicted_cost_usd();
  }
  EXPECT_EQ(ledger.InUse(kLocal).value(), 4);
  // A caller-formed batch of four sees the two slots left.
  v1::RouteBatchRequest batch;
  for (int k = 0; k < 4; ++k) *batch.add_queries() = local_query(absl::StrCat("rb", k), v1::ROUTING_MODE_INLINE);
  grpc::ClientContext ctx;
  v1::RouteBatchResponse batch_out;
  ASSERT_TRUE(stub_->RouteBatch(&ctx, batch, &batch_out).ok());
  int batch_served = 0;
  for (const v1::RouteBatchItem& item : batch_out.items()) {
    if (item.has_assignment()) {
      EXPECT_EQ(item.assignment().decision_mode(), v1::ROUTING_MODE_BATCH);  // RouteBatch is batch
      ids.push_back(item.assignment().assignment_id());
      reserved += item.assignment().predicted_cost_usd();
      ++batch_served;
    } else {
      EXPECT_EQ(item.error().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
    }
  }
  EXPECT_EQ(batch_served, 2);
  // And the inline router sees that none is left.
  grpc::Status s = RouteOne(local_query("in-full", v1::ROUTING_MODE_INLINE), &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("out of free slots"));

  ASSERT_EQ(ids.size(), static_cast<size_t>(kLocalSlots));
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size());
  EXPECT_EQ(ledger.InUse(kLocal).value(), kLocalSlots);
  core::LedgerTotals totals = *ledger.Totals();
  EXPECT_EQ(totals.open_assignments, kLocalSlots);
  EXPECT_NEAR(totals.reserved_usd, reserved, 1e-12);
  for (size_t k = 0; k < ids.size(); ++k) {
    v1::CompleteResponse done;
    ASSERT_TRUE(Complete(ids[k], &done).ok()) << ids[k];
    EXPECT_TRUE(done.lease_was_active());
    EXPECT_EQ(ledger.InUse(kLocal).value(), kLocalSlots - static_cast<int64_t>(k) - 1);
    EXPECT_EQ(ledger.Totals()->open_assignments, kLocalSlots - static_cast<int64_t>(k) - 1);
    EXPECT_EQ(Complete(ids[k], &done).error_code(), grpc::StatusCode::NOT_FOUND);  // once only
    EXPECT_EQ(ledger.InUse(kLocal).value(), kLocalSlots - static_cast<int64_t>(k) - 1);
  }
  EXPECT_NEAR(ledger.Totals()->reserved_usd, 0, 1e-12);
  // The released slots serve inline queries again.
  EXPECT_TRUE(RouteOne(local_query("in-again", v1::ROUTING_MODE_INLINE), &out).ok());
  EXPECT_EQ(ledger.InUse(kLocal).value(), 1);
}

// The same under concurrency: inline and batch calls interleaved on one server. The ledger holds
// exactly the assignments the clients got, and completing them all empties it.
TEST_F(RouterdTest, ConcurrentInlineAndBatchCallsKeepTheLedgerExact) {
  constexpr int kCalls = 600;
  const std::vector<std::unique_ptr<AsyncCall>> calls = RouteAsync(
      *stub_, kCalls,
      [](int k) {
        v1::Query q = MakeQuery(absl::StrCat("m", k), k);
        q.add_allowed_models(kLocal);
        q.add_allowed_models("claude-instant-v1");
        q.set_mode(k % 2 == 0 ? v1::ROUTING_MODE_INLINE : v1::ROUTING_MODE_BATCH);
        return q;
      },
      /*cancel_one_in=*/0, 11);
  int ok = 0, local = 0, inline_ok = 0;
  double reserved = 0;
  std::vector<std::string> ids;
  for (const auto& c : calls) {
    ASSERT_EQ(c->callbacks.load(), 1);
    // A batch decides within its ledger hold, which inline decisions cannot take: no batch loses
    // a slot to an inline decision nor the reverse, so nothing is refused as UNAVAILABLE.
    if (!c->status.ok()) {
      EXPECT_EQ(c->status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << c->status.error_message();
      continue;
    }
    const v1::Assignment& a = c->response.assignment();
    EXPECT_EQ(a.decision_mode(), c->request.query().mode());
    ++ok;
    inline_ok += a.decision_mode() == v1::ROUTING_MODE_INLINE;
    local += a.model() == kLocal;
    reserved += a.predicted_cost_usd();
    ids.push_back(a.assignment_id());
  }
  EXPECT_GT(inline_ok, 0);
  EXPECT_GT(ok - inline_ok, 0);
  core::Ledger& ledger = routerd_->runtime().ledger();
  EXPECT_EQ(ledger.InUse(kLocal).value(), local);
  EXPECT_LE(local, kLocalSlots);
  EXPECT_EQ(ledger.Totals()->open_assignments, ok);
  EXPECT_NEAR(ledger.Totals()->reserved_usd, reserved, 1e-9);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size());
  for (const std::string& id : ids) {
    v1::CompleteResponse done;
    EXPECT_TRUE(Complete(id, &done).ok()) << id;
  }
  EXPECT_EQ(ledger.InUse(kLocal).value(), 0);
  EXPECT_EQ(ledger.Totals()->open_assignments, 0);
}

// A stream mixing modes: inline queries are answered while an earlier batch-mode query still
// waits for its batch (60 s delay, so only a full batch of 4 closes it); every query is answered
// exactly once and the stream ends OK.
TEST_F(RouterdTest, RouteStreamAnswersInlineQueriesAtOnceBesideBatchedOnes) {
  ASSERT_TRUE(UpdateConfig(TestConfigYaml(4, "", kCap, /*max_batch_delay_ms=*/60000)).ok());
  grpc::ClientContext ctx;
  auto stream = stub_->RouteStream(&ctx);
  std::map<std::string, int> seen;
  auto write = [&](const v1::Query& q) {
    v1::RouteStreamRequest r;
    *r.mutable_query() = q;
    return stream->Write(r);
  };
  ASSERT_TRUE(write(MakeQuery("b0", 0)));  // the default mode: batch
  for (int k = 0; k < 10; ++k) ASSERT_TRUE(write(InlineQuery(absl::StrCat("i", k), k)));
  v1::Query bad = InlineQuery("bad", 0);
  bad.clear_text();
  ASSERT_TRUE(write(bad));
  v1::RouteStreamResponse resp;
  // b0 cannot be answered before its batch fills, so these eleven are the inline ones.
  int inline_answers = 0;
  while (inline_answers < 11) {
    ASSERT_TRUE(stream->Read(&resp));
    for (const v1::RouteBatchItem& item : resp.items()) {
      ++inline_answers;
      if (item.has_error()) {
        EXPECT_EQ(item.error().query_id(), "bad");
        EXPECT_EQ(item.error().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
        ++seen[item.error().query_id()];
        continue;
      }
      EXPECT_EQ(item.assignment().decision_mode(), v1::ROUTING_MODE_INLINE)
          << item.assignment().query_id();
      EXPECT_TRUE(item.assignment().has_inline_decision());
      EXPECT_EQ(item.assignment().query_id().rfind("i", 0), 0u);
      ++seen[item.assignment().query_id()];
    }
  }
  EXPECT_EQ(inline_answers, 11);
  for (int k = 1; k < 4; ++k) ASSERT_TRUE(write(MakeQuery(absl::StrCat("b", k), k)));
  stream->WritesDone();
  int batched = 0;
  while (stream->Read(&resp)) {
    for (const v1::RouteBatchItem& item : resp.items()) {
      ASSERT_TRUE(item.has_assignment()) << item.error().message();
      EXPECT_EQ(item.assignment().decision_mode(), v1::ROUTING_MODE_BATCH);
      EXPECT_EQ(item.assignment().decision().batch_size(), 4);
      ++seen[item.assignment().query_id()];
      ++batched;
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(batched, 4);
  EXPECT_EQ(seen.size(), 15u);
  for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << id;
}

// Query mode > tenant mode > default; AUTO goes inline when the deadline leaves no room for a
// batch (60 s delay + 20 ms solve here; batches of one close at once) and batch otherwise; a
// runtime update changes the default; RouteBatch stays batch.
TEST_F(RouterdTest, ModeResolutionFollowsQueryTenantDefaultAndDeadline) {
  ASSERT_TRUE(UpdateConfig(TestConfigYaml(1, "routing: {default_mode: batch, tenant_modes: {fast: inline, urgent: auto}}",
                                          kCap, /*max_batch_delay_ms=*/60000))
                  .ok());
  struct Case {
    const char* tenant;
    v1::RoutingMode mode;
    int deadline_s;
    v1::RoutingMode decided;
  } cases[] = {
      {"", v1::ROUTING_MODE_UNSPECIFIED, 10, v1::ROUTING_MODE_BATCH},         // default
      {"other", v1::ROUTING_MODE_UNSPECIFIED, 10, v1::ROUTING_MODE_BATCH},    // unknown tenant
      {"fast", v1::ROUTING_MODE_UNSPECIFIED, 10, v1::ROUTING_MODE_INLINE},    // tenant
      {"fast", v1::ROUTING_MODE_BATCH, 10, v1::ROUTING_MODE_BATCH},           // query over tenant
      {"other", v1::ROUTING_MODE_INLINE, 10, v1::ROUTING_MODE_INLINE},        // query over default
      {"urgent", v1::ROUTING_MODE_UNSPECIFIED, 10, v1::ROUTING_MODE_INLINE},  // tenant AUTO, no room
      {"urgent", v1::ROUTING_MODE_UNSPECIFIED, 120, v1::ROUTING_MODE_BATCH},  // tenant AUTO, room
      {"", v1::ROUTING_MODE_AUTO, 10, v1::ROUTING_MODE_INLINE},               // query AUTO, no room
      {"fast", v1::ROUTING_MODE_AUTO, 120, v1::ROUTING_MODE_BATCH},           // query AUTO, room
  };
  int k = 0;
  for (const Case& c : cases) {
    ++k;
    v1::Query q = MakeQuery(absl::StrCat("t", k), k);
    q.set_tenant(c.tenant);
    q.set_mode(c.mode);
    v1::RouteResponse out;
    const grpc::Status s = RouteOne(q, &out, std::chrono::seconds(c.deadline_s));
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(out.assignment().decision_mode(), c.decided)
        << "tenant '" << c.tenant << "' mode " << c.mode << " deadline " << c.deadline_s << " s";
    EXPECT_EQ(out.assignment().has_inline_decision(), c.decided == v1::ROUTING_MODE_INLINE);
    EXPECT_EQ(out.assignment().has_decision(), c.decided == v1::ROUTING_MODE_BATCH);
  }
  v1::Query bad = MakeQuery("bad-mode", 0);
  bad.set_mode(static_cast<v1::RoutingMode>(42));
  v1::RouteResponse out;
  const grpc::Status s = RouteOne(bad, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("query.mode: unknown routing mode 42"));

  ASSERT_TRUE(UpdateConfig(TestConfigYaml(16, "routing: {default_mode: inline}")).ok());
  ASSERT_TRUE(RouteOne(MakeQuery("after-update", 1), &out).ok());
  EXPECT_EQ(out.assignment().decision_mode(), v1::ROUTING_MODE_INLINE);
  v1::RouteBatchRequest batch;
  *batch.add_queries() = MakeQuery("rb0", 0);
  *batch.add_queries() = InlineQuery("rb1", 1);
  grpc::ClientContext ctx;
  v1::RouteBatchResponse batch_out;
  ASSERT_TRUE(stub_->RouteBatch(&ctx, batch, &batch_out).ok());
  for (const v1::RouteBatchItem& item : batch_out.items()) {
    ASSERT_TRUE(item.has_assignment()) << item.error().message();
    EXPECT_EQ(item.assignment().decision_mode(), v1::ROUTING_MODE_BATCH);
    EXPECT_EQ(item.assignment().decision().batch_size(), 2);
  }
}

// Inline options are runtime keys: an update applies to the next window; an invalid one is
// refused naming the field and changes nothing.
// A gateway's W3C traceparent reaches the answer (its trace id) and, with logging.decisions, the
// decision's log line, so a decision can be found from the gateway's trace.
TEST_F(RouterdTest, TheCallersTraceIdReachesTheAnswerAndTheDecisionLog) {
  ASSERT_TRUE(UpdateConfig(absl::StrCat(TestConfigYaml(4), "logging: {format: json, decisions: true}"))
                  .ok());
  constexpr char kTraceparent[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  ::testing::internal::CaptureStderr();
  std::vector<std::string> trace_ids;
  for (const v1::RoutingMode mode : {v1::ROUTING_MODE_BATCH, v1::ROUTING_MODE_INLINE}) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("traceparent", kTraceparent);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::RouteRequest req;
    *req.mutable_query() = MakeQuery(absl::StrCat("traced-", mode), 0);
    req.mutable_query()->set_mode(mode);
    v1::RouteResponse resp;
    const grpc::Status s = stub_->Route(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    trace_ids.push_back(resp.assignment().trace_id());
  }
  v1::RouteResponse untraced;
  ASSERT_TRUE(RouteOne(MakeQuery("untraced", 1), &untraced).ok());
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(trace_ids, ElementsAre("4bf92f3577b34da6a3ce929d0e0e4736",
                                     "4bf92f3577b34da6a3ce929d0e0e4736"));
  EXPECT_EQ(untraced.assignment().trace_id(), "");
  std::map<std::string, std::string> mode_of_traced;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (!absl::StartsWith(line, "{")) continue;
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.value("event", "") != "decision") continue;
    if (j.value("trace_id", "") == "4bf92f3577b34da6a3ce929d0e0e4736") {
      mode_of_traced[j.value("query_id", "")] = j.value("mode", "");
      EXPECT_EQ(j.value("code", ""), "OK");
      EXPECT_FALSE(j.value("model", "").empty());
    }
  }
  EXPECT_THAT(mode_of_traced,
              ElementsAre(Pair(absl::StrCat("traced-", v1::ROUTING_MODE_BATCH), "batch"),
                          Pair(absl::StrCat("traced-", v1::ROUTING_MODE_INLINE), "inline")));
}

// A reload (SIGHUP) re-reads the file: one emptied mid-save, or one that changes a startup-only
// key, is refused and changes nothing; a good one applies.
TEST_F(RouterdTest, AReloadOfAnEmptiedFileOrOfAStartupOnlyChangeIsRefused) {
  routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
  const std::string path = absl::StrCat(::testing::TempDir(), "/reload_", getpid(), ".yaml");
  const auto write = [&](const std::string& text) {
    std::ofstream out(path, std::ios::trunc);
    out << text;
  };
  const std::string yaml = TestConfigYaml();
  write(yaml);
  absl::StatusOr<RouterConfig> config = LoadConfigFile(path);
  ASSERT_THAT(config, IsOk());
  absl::StatusOr<std::unique_ptr<Routerd>> d = Routerd::Start(*std::move(config), path);
  ASSERT_THAT(d, IsOk());
  routerd_ = *std::move(d);
  const uint64_t generation = routerd_->runtime().state()->generation;

  write("");
  EXPECT_THAT(routerd_->Reload(), core::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                                          HasSubstr("the file is empty")));
  write(absl::StrCat(yaml, "reflection: false\n"));
  EXPECT_THAT(routerd_->Reload(),
              core::testing::StatusIs(absl::StatusCode::kFailedPrecondition,
                                      HasSubstr("reflection: a startup-only key changed")));
  EXPECT_EQ(routerd_->runtime().state()->generation, generation);
  EXPECT_EQ(routerd_->runtime().state()->config.policy.avg_cost_cap_usd, kCap);
  ASSERT_EQ(routerd_->runtime().state()->pool.back().slots, kLocalSlots);

  write(absl::StrCat(yaml, "policy: {max_fallbacks: 1}\n"));
  ASSERT_THAT(routerd_->Reload(), IsOk());
  EXPECT_EQ(routerd_->runtime().state()->generation, generation + 1);
  EXPECT_EQ(routerd_->runtime().state()->config.policy.max_fallbacks, 1);
  std::remove(path.c_str());
}

TEST_F(RouterdTest, InlineOptionsReloadAtRuntimeAndInvalidOnesAreRefused) {
  grpc::Status s = UpdateConfig(TestConfigYaml(16, "inline: {window_arrivals: 0}"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("inline.window_arrivals: must be >= 1"));
  s = UpdateConfig(TestConfigYaml(16, "inline: {forecast_horizon: 0}"));
  EXPECT_THAT(s.error_message(), HasSubstr("inline.forecast_horizon"));
  ASSERT_TRUE(UpdateConfig(TestConfigYaml(16, "inline: {window_arrivals: 5, slot_price_rounds: 1}")).ok());
  std::set<std::string> windows;
  for (int k = 0; k < 12; ++k) {
    v1::RouteResponse out;
    ASSERT_TRUE(RouteOne(InlineQuery(absl::StrCat("r", k), k), &out).ok());
    const v1::InlineDecision& d = out.assignment().inline_decision();
    EXPECT_EQ(d.position_in_window(), k % 5);
    EXPECT_EQ(d.expected_after(), 5 - k % 5 - 1);
    EXPECT_DOUBLE_EQ(d.window_cap_usd(), kCap * 5);
    windows.insert(d.window_id());
  }
  EXPECT_EQ(windows.size(), 3u);
}

// Once shutdown begins, new inline work is refused with UNAVAILABLE exactly like batch work, on
// Route and on a stream (as an error item; the stream still ends OK).
TEST_F(RouterdTest, ShutdownRefusesNewInlineWorkWithUnavailable) {
  routerd_->runtime().StopAccepting();
  v1::RouteResponse out;
  grpc::Status s = RouteOne(InlineQuery("late-inline", 0), &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("shutting down"));
  s = RouteOne(MakeQuery("late-batch", 0), &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  grpc::ClientContext ctx;
  auto stream = stub_->RouteStream(&ctx);
  v1::RouteStreamRequest r;
  *r.mutable_query() = InlineQuery("late-stream", 1);
  ASSERT_TRUE(stream->Write(r));
  stream->WritesDone();
  v1::RouteStreamResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_EQ(resp.items_size(), 1);
  EXPECT_EQ(resp.items(0).error().query_id(), "late-stream");
  EXPECT_EQ(resp.items(0).error().code(), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  EXPECT_FALSE(stream->Read(&resp));
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(routerd_->runtime().ledger().Totals()->open_assignments, 0);
}

TEST_F(RouterdTest, InlineMetricsMoveWithInlineTraffic) {
  const std::string before = HttpGet(routerd_->metrics_port(), "/metrics");
  const double inline_before = std::max(0.0, MetricValue(before, R"(router_decisions_total{mode="inline"})"));
  const double batch_before = std::max(0.0, MetricValue(before, R"(router_decisions_total{mode="batch"})"));
  const double timed_before =
      std::max(0.0, MetricValue(before, "router_inline_decision_duration_seconds_count"));
  v1::RouteResponse out;
  for (int k = 0; k < 5; ++k) ASSERT_TRUE(RouteOne(InlineQuery(absl::StrCat("mi", k), k), &out).ok());
  ASSERT_TRUE(RouteOne(MakeQuery("mb", 0), &out).ok());
  const std::string after = HttpGet(routerd_->metrics_port(), "/metrics");
  EXPECT_EQ(MetricValue(after, R"(router_decisions_total{mode="inline"})"), inline_before + 5);
  EXPECT_EQ(MetricValue(after, R"(router_decisions_total{mode="batch"})"), batch_before + 1);
  EXPECT_EQ(MetricValue(after, "router_inline_decision_duration_seconds_count"), timed_before + 5);
  EXPECT_GE(MetricValue(after, "router_inline_lambda"), 0);
  EXPECT_GE(MetricValue(after, "router_inline_guard_activations_total"), 0);
}

// A prompt is bytes: one that is not UTF-8 (cut mid-character, or binary) is routed like any other.
TEST_F(RouterdTest, PromptsThatAreNotUtf8AreRoutedOnEveryMethod) {
  const std::string text = "caf\xe9 \xff\xfe au lait?";
  v1::Query q = MakeQuery("u0", 0);
  q.set_text(text);
  v1::RouteResponse out;
  const grpc::Status unary = RouteOne(q, &out);
  ASSERT_TRUE(unary.ok()) << unary.error_message();
  EXPECT_EQ(out.assignment().query_id(), "u0");

  v1::RouteBatchRequest batch;
  *batch.add_queries() = MakeQuery("u1", 1);
  batch.mutable_queries(0)->set_text(text);
  grpc::ClientContext batch_ctx;
  v1::RouteBatchResponse batch_out;
  ASSERT_TRUE(stub_->RouteBatch(&batch_ctx, batch, &batch_out).ok());
  ASSERT_EQ(batch_out.items_size(), 1);
  EXPECT_TRUE(batch_out.items(0).has_assignment()) << batch_out.items(0).error().message();

  grpc::ClientContext stream_ctx;
  auto stream = stub_->RouteStream(&stream_ctx);
  v1::RouteStreamRequest r;
  *r.mutable_query() = MakeQuery("u2", 2);
  r.mutable_query()->set_text(text);
  ASSERT_TRUE(stream->Write(r));
  stream->WritesDone();
  std::vector<std::string> answered;
  v1::RouteStreamResponse resp;
  while (stream->Read(&resp)) {
    for (const v1::RouteBatchItem& item : resp.items()) {
      EXPECT_TRUE(item.has_assignment()) << item.error().message();
      answered.push_back(item.assignment().query_id());
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_THAT(answered, ElementsAre("u2"));
}

// Protobuf refuses to parse a string field that is not UTF-8. routerd parses requests itself, so
// such a request gets INVALID_ARGUMENT naming the field (gRPC's own parsing answered UNIMPLEMENTED,
// and ended a stream OK with its later queries unanswered), and a stream goes on.
TEST_F(RouterdTest, AStringFieldThatIsNotUtf8GetsInvalidArgumentNamingIt) {
  const std::string bad("id\xff", 3);
  v1::RouteResponse out;
  grpc::Status s = RouteOne(MakeQuery(bad, 0), &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("query.id: not valid UTF-8"));

  v1::RouteBatchRequest batch;
  *batch.add_queries() = MakeQuery("b0", 0);
  *batch.add_queries() = MakeQuery("b1", 1);
  batch.mutable_queries(1)->add_allowed_models(bad);
  grpc::ClientContext batch_ctx;
  v1::RouteBatchResponse batch_out;
  s = stub_->RouteBatch(&batch_ctx, batch, &batch_out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("queries[1].allowed_models[0]: not valid UTF-8"));

  v1::CompleteResponse complete_out;
  s = Complete(bad, &complete_out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("assignment_id: not valid UTF-8"));

  grpc::ClientContext stream_ctx;
  auto stream = stub_->RouteStream(&stream_ctx);
  v1::RouteStreamRequest r;
  *r.mutable_query() = MakeQuery("s0", 0);
  ASSERT_TRUE(stream->Write(r));
  *r.mutable_query() = MakeQuery("s1", 1);
  r.mutable_query()->set_tenant(bad);
  ASSERT_TRUE(stream->Write(r));
  *r.mutable_query() = MakeQuery("s2", 2);
  ASSERT_TRUE(stream->Write(r));
  stream->WritesDone();
  std::map<std::string, std::string> answers;  // query id -> "" or the error message
  v1::RouteStreamResponse resp;
  while (stream->Read(&resp)) {
    for (const v1::RouteBatchItem& item : resp.items()) {
      if (item.has_error()) {
        EXPECT_EQ(item.error().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
        answers[item.error().query_id()] = item.error().message();
      } else {
        answers[item.assignment().query_id()] = "";
      }
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_THAT(answers, ElementsAre(Pair("",
                                        "message 2 of the stream: query.tenant: not valid UTF-8 "
                                        "(a protobuf string must be; Query.text takes any bytes)"),
                                   Pair("s0", ""), Pair("s2", "")));

  s = UpdateConfig("# caf\xe9\nbatching: {max_batch_size: 8}\n");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("yaml: not valid UTF-8"));

  // Bytes that are no message at all.
  grpc::GenericStub generic(channel_);
  grpc::ClientContext raw_ctx;
  grpc::Slice garbage(std::string("\x0a\xff\xff\xff\xff\x0f"));
  grpc::ByteBuffer raw_request(&garbage, 1);
  grpc::ByteBuffer raw_response;
  absl::Notification done;
  generic.UnaryCall(&raw_ctx, "/router.v1.Router/Route", grpc::StubOptions(), &raw_request,
                    &raw_response, [&](grpc::Status status) {
                      s = std::move(status);
                      done.Notify();
                    });
  done.WaitForNotification();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("request: not a valid router.v1.RouteRequest message"));
  EXPECT_TRUE(RouteOne(MakeQuery("after", 0), &out).ok());  // and the server keeps serving
}

}  // namespace
}  // namespace router::server
