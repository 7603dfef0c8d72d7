// End-to-end tests of routerd in process, over loopback TCP: every call answered exactly once
// under concurrency and cancellations, budget and slot invariants per batch, precise errors for bad
// input while the server keeps serving, runtime config changes, drain on shutdown, /metrics.

#include "server/routerd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "health.grpc.pb.h"
#include "router/v1/router.grpc.pb.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::server {
namespace {

using ::testing::HasSubstr;
using core::testing::IsOk;

constexpr char kLocal[] = "mistralai/mixtral-8x7b-chat";
constexpr int kLocalSlots = 6;
constexpr double kCap = 0.002;

std::string TestConfigYaml(int64_t max_batch_size = 16) {
  return absl::StrCat(R"(
listen: 127.0.0.1:0
metrics_listen: 127.0.0.1:0
batching: {max_batch_size: )", max_batch_size, R"(, max_batch_delay_ms: 2, max_queued: 100000}
budget: {avg_cost_cap_usd: )", kCap, R"(, lease_timeout_s: 600}
limits: {max_text_bytes: 4096}
shutdown: {grace_s: 5, drain_s: 0}
models:
  - {name: "gpt-4-1106-preview"}
  - {name: "gpt-3.5-turbo-1106"}
  - {name: "claude-instant-v1"}
  - {name: ")", kLocal, R"(", instances: 2, slots_per_instance: 3}
)");
}

class RouterdTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(TestConfigYaml()); }
  void TearDown() override {
    if (routerd_ != nullptr) routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
  }

  void Start(const std::string& yaml) {
    absl::StatusOr<RouterConfig> config = ParseConfigYaml(yaml);
    ASSERT_THAT(config, IsOk());
    absl::StatusOr<std::unique_ptr<Routerd>> d = Routerd::Start(*std::move(config), "");
    ASSERT_THAT(d, IsOk());
    routerd_ = *std::move(d);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", routerd_->port()),
                                   grpc::InsecureChannelCredentials());
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

  grpc::Status RouteOne(const v1::Query& q, v1::RouteResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::RouteRequest req;
    *req.mutable_query() = q;
    return stub_->Route(&ctx, req, out);
  }

  std::unique_ptr<Routerd> routerd_;
  std::shared_ptr<grpc::Channel> channel_;
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
  EXPECT_EQ(routerd_->runtime().ledger().InUse(kLocal), local);
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
    if (resp.has_error()) {
      ++errors;
      EXPECT_EQ(resp.error().query_id(), "s17");
      EXPECT_EQ(resp.error().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
      EXPECT_THAT(resp.error().message(), HasSubstr("query.text: required"));
      ++seen[resp.error().query_id()];
    } else {
      ++seen[resp.assignment().query_id()];
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(errors, 1);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kQueries));
  for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << id;
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
  EXPECT_EQ(routerd_->runtime().ledger().InUse(kLocal), kLocalSlots - 1);

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

std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: localhost\r\n\r\n");
  (void)!write(fd, request.data(), request.size());
  std::string body;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) body.append(buf, static_cast<size_t>(n));
  close(fd);
  return body;
}

double MetricValue(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
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
  grpc::ClientContext update_ctx;
  v1::UpdateConfigRequest update;
  update.set_yaml("batching: {max_batch_size: 512, max_batch_delay_ms: 10000, solve_margin_ms: 50}");
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
// scheduler stopped accepting), none hangs.
TEST_F(RouterdTest, ShutdownUnderLoadLosesNothing) {
  routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
  routerd_.reset();
  Start(TestConfigYaml(/*max_batch_size=*/512));
  constexpr int kCalls = 2000;
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
      EXPECT_EQ(c->status.error_code(), grpc::StatusCode::UNAVAILABLE) << c->status.error_message() << " k=" << (&c - &calls[0]);
    }
  }
  EXPECT_GT(ok, 0);
}

}  // namespace
}  // namespace router::server
