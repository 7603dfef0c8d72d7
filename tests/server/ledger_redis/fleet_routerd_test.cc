// Two routerd replicas in process on one Redis ledger (redis_server.h): what one replica assigns
// holds a slot that the other's ListModels shows and that the other's Complete frees, once; and
// while Redis does not answer, a replica with ledger.health_requires_ledger reports its Router and
// ext_proc services NOT_SERVING (the whole server stays SERVING), one without it stays SERVING.
// Shared learning: outcomes Completed at one replica are learned by the other, both hold the same
// cells, a reset at one resets both; while the learning log refuses (Redis' ACL denies streams,
// the ledger still works) Completes answer OK, the bounded queue drops and counts, and what it
// held reaches the other replica once the log is back.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "health.grpc.pb.h"
#include "router/v1/router.grpc.pb.h"
#include "server/routerd.h"
#include "tests/router_core/testing/status_matchers.h"
#include "tests/server/ledger_redis/redis_server.h"

namespace router::server {
namespace {

using ::router::testing::RedisServer;

constexpr char kLocal[] = "mistralai/mixtral-8x7b-chat";
constexpr char kRouterService[] = "router.v1.Router";
constexpr char kExtProcService[] = "envoy.service.ext_proc.v3.ExternalProcessor";

struct Replica {
  std::unique_ptr<Routerd> routerd;
  std::unique_ptr<v1::Router::Stub> router;
  std::unique_ptr<v1::RouterAdmin::Stub> admin;
  std::unique_ptr<grpc::health::v1::Health::Stub> health;
};

class FleetRouterdTest : public ::testing::Test {
 protected:
  // More sections of replica `k`'s configuration.
  virtual std::string ExtraYaml(int k) const {
    (void)k;
    return "";
  }
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RedisServer>> s = RedisServer::Start();
    ASSERT_THAT(s, IsOk());
    redis_ = *std::move(s);
    // Replica 0 reports NOT_SERVING while the ledger is degraded; replica 1 does not.
    for (int k = 0; k < 2; ++k) {
      absl::StatusOr<RouterConfig> config = ParseConfigYaml(absl::StrCat(R"(
listen: 127.0.0.1:0
metrics_listen: ""
batching: {max_batch_size: 1, max_batch_delay_ms: 1}
budget: {lease_timeout_s: 600}
admin: {allow_unauthenticated: true}
ledger: {backend: redis, health_requires_ledger: )", k == 0 ? "true" : "false", R"(,
         redis: {address: ")", redis_->address(), R"(", domain: fleet,
                 connect_timeout_ms: 5000, call_timeout_ms: 5000, retry_after_ms: 200}}
models:
  - {name: ")", kLocal, R"(", instances: 1, slots_per_instance: 3}
)", ExtraYaml(k)));
      ASSERT_THAT(config, IsOk());
      absl::StatusOr<std::unique_ptr<Routerd>> d = Routerd::Start(*std::move(config), "");
      ASSERT_THAT(d, IsOk());
      Replica r;
      r.routerd = *std::move(d);
      auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", r.routerd->port()),
                                         grpc::InsecureChannelCredentials());
      r.router = v1::Router::NewStub(channel);
      r.admin = v1::RouterAdmin::NewStub(channel);
      r.health = grpc::health::v1::Health::NewStub(channel);
      replicas_.push_back(std::move(r));
    }
  }
  void TearDown() override {
    for (Replica& r : replicas_) r.routerd->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
  }

  // The assignment id of a Route at replica `k`, or "" (with a test failure).
  std::string Route(int k, const std::string& id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::RouteRequest request;
    request.mutable_query()->set_id(id);
    request.mutable_query()->set_text("Write a python function that returns the n-th prime.");
    v1::RouteResponse response;
    const grpc::Status s = replicas_[k].router->Route(&ctx, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(response.assignment().model(), kLocal);
    return response.assignment().assignment_id();
  }
  grpc::Status Complete(int k, const std::string& assignment_id,
                        std::optional<bool> success = std::nullopt) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::CompleteRequest request;
    request.set_assignment_id(assignment_id);
    if (success.has_value()) request.set_success(*success);
    v1::CompleteResponse response;
    return replicas_[k].router->Complete(&ctx, request, &response);
  }
  // The slots in use of kLocal in replica `k`'s ListModels, or -1.
  int64_t SlotsInUse(int k) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListModelsResponse response;
    const grpc::Status s = replicas_[k].admin->ListModels(&ctx, v1::ListModelsRequest(), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    for (const v1::ModelStatus& m : response.models()) {
      if (m.deployment().name() == kLocal) {
        EXPECT_EQ(m.slots_total(), 3);
        return m.slots_in_use();
      }
    }
    ADD_FAILURE() << kLocal << " is not listed";
    return -1;
  }

  // Replica `k`'s health of `service` ("" = the whole server).
  grpc::health::v1::HealthCheckResponse::ServingStatus Health(int k, const std::string& service) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status s = replicas_[k].health->Check(&ctx, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.status();
  }
  // Waits (at most 60 s) until replica `k`'s Router service reports `want`; whether it did.
  bool AwaitRouterHealth(int k, grpc::health::v1::HealthCheckResponse::ServingStatus want) {
    for (int tries = 0; tries < 600; ++tries) {
      if (Health(k, kRouterService) == want) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }

  std::unique_ptr<RedisServer> redis_;
  std::vector<Replica> replicas_;
};

TEST_F(FleetRouterdTest, ListModelsShowsTheFleetsSlotsAndAnyReplicaCompletes) {
  const std::string a = Route(0, "q1");
  const std::string b = Route(0, "q2");
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(SlotsInUse(0), 2);
  EXPECT_EQ(SlotsInUse(1), 2);
  const std::string c = Route(1, "q3");
  ASSERT_FALSE(c.empty());
  EXPECT_EQ(SlotsInUse(0), 3);

  ASSERT_TRUE(Complete(1, a).ok());
  EXPECT_EQ(SlotsInUse(0), 2);
  EXPECT_EQ(Complete(0, a).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(SlotsInUse(1), 2);
  ASSERT_TRUE(Complete(0, c).ok());
  ASSERT_TRUE(Complete(1, b).ok());
  EXPECT_EQ(SlotsInUse(0), 0);
  EXPECT_EQ(SlotsInUse(1), 0);
}

TEST_F(FleetRouterdTest, ReadinessFollowsTheLedgerOnlyWhereConfigured) {
  using Status = grpc::health::v1::HealthCheckResponse;
  ASSERT_TRUE(AwaitRouterHealth(0, Status::SERVING));
  EXPECT_EQ(Health(0, kExtProcService), Status::SERVING);
  redis_->Stall();
  // The ledger turns degraded at the next call that times out (the replica's ticker calls it
  // every second).
  const bool not_serving = AwaitRouterHealth(0, Status::NOT_SERVING);
  const Status::ServingStatus ext_proc = Health(0, kExtProcService);
  const Status::ServingStatus whole = Health(0, "");
  const Status::ServingStatus other = Health(1, kRouterService);
  redis_->Resume();
  EXPECT_TRUE(not_serving);
  EXPECT_EQ(ext_proc, Status::NOT_SERVING);
  EXPECT_EQ(whole, Status::SERVING);  // liveness never depends on Redis
  EXPECT_EQ(other, Status::SERVING);  // health_requires_ledger: false
  EXPECT_TRUE(AwaitRouterHealth(0, Status::SERVING));
  EXPECT_EQ(Health(0, kExtProcService), Status::SERVING);
}

// Both replicas learn, sharing the fleet's learning log, polled every 20 ms.
class FleetLearningTest : public FleetRouterdTest {
 protected:
  std::string ExtraYaml(int k) const override {
    return absl::StrCat("learning: {enabled: true, exploration: 0, shared_poll_interval_ms: 20",
                        k == 0 ? queue_max_0_ : "", "}\n");
  }
  // Replica 0's queue bound, as a key of its learning section.
  std::string queue_max_0_;
  v1::GetLearnedStatsResponse Stats(int k) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::GetLearnedStatsResponse response;
    const grpc::Status s =
        replicas_[k].admin->GetLearnedStats(&ctx, v1::GetLearnedStatsRequest(), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }
  // Outcomes in replica `k`'s cells.
  int64_t Outcomes(int k) {
    int64_t n = 0;
    const v1::GetLearnedStatsResponse stats = Stats(k);
    for (const v1::LearnedCell& c : stats.cells()) n += c.outcomes();
    return n;
  }
  // Replica `k`'s cells, every field, exactly.
  std::vector<std::string> Cells(int k) {
    std::vector<std::string> out;
    const v1::GetLearnedStatsResponse stats = Stats(k);
    for (const v1::LearnedCell& c : stats.cells()) {
      out.push_back(absl::StrFormat("%s/%d w=%.17g o=%.17g p=%.17g s=%.17g n=%d", c.model(),
                                    c.cluster(), c.weight(), c.observed_mean(), c.prior_mean(),
                                    c.learned_shift(), c.outcomes()));
    }
    return out;
  }
  // Waits (at most 60 s) until `done` holds; whether it did.
  template <typename F>
  bool Await(F done) {
    for (int tries = 0; tries < 600; ++tries) {
      if (done()) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }
  // Routes a query at replica `at` and completes it at replica `by` with `success`.
  void RouteAndComplete(int at, int by, const std::string& id, bool success) {
    const std::string assignment = Route(at, id);
    ASSERT_FALSE(assignment.empty());
    const grpc::Status s = Complete(by, assignment, success);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
};

TEST_F(FleetLearningTest, OutcomesAtOneReplicaAreLearnedByBothAndAResetResetsBoth) {
  for (int k = 0; k < 6; ++k) RouteAndComplete(0, 0, absl::StrCat("a", k), k % 3 == 0);
  EXPECT_TRUE(Await([&] { return Outcomes(1) == 6; }))
      << Outcomes(1);
  EXPECT_TRUE(Await([&] { return Outcomes(0) == 6; })) << Outcomes(0);
  for (int k = 0; k < 4; ++k) RouteAndComplete(0, 1, absl::StrCat("b", k), k % 2 == 0);
  ASSERT_TRUE(Await([&] { return Outcomes(0) == 10 && Outcomes(1) == 10; }));
  const std::vector<std::string> cells = Cells(0);
  ASSERT_FALSE(cells.empty());
  EXPECT_EQ(Cells(1), cells);  // the same sequence, the same state, to the last bit

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ResetLearnedStatsResponse reset;
  const grpc::Status s =
      replicas_[1].admin->ResetLearnedStats(&ctx, v1::ResetLearnedStatsRequest(), &reset);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(reset.cells_removed(), static_cast<int64_t>(cells.size()));
  EXPECT_EQ(Outcomes(1), 0);  // applied before the answer
  EXPECT_TRUE(Await([&] { return Stats(0).cells().empty(); }));
}

// Replica 0 queues at most 2 outcomes.
class FleetLearningQueueTest : public FleetLearningTest {
 protected:
  FleetLearningQueueTest() { queue_max_0_ = ", shared_queue_max: 2"; }
};

TEST_F(FleetLearningQueueTest, WhileTheLogRefusesCompletesAnswerAndTheBoundedQueueDropsAndCounts) {
  // The ledger's Functions still run; the learning log's stream commands are refused.
  ASSERT_TRUE(redis_->Cli("ACL SETUSER default -@stream").ok());
  for (int k = 0; k < 5; ++k) RouteAndComplete(0, 0, absl::StrCat("q", k), false);
  const int64_t dropped = Stats(0).dropped_outcomes();
  const int64_t seen_meanwhile = Outcomes(1);
  ASSERT_TRUE(redis_->Cli("ACL SETUSER default +@all").ok());
  EXPECT_EQ(dropped, 3);  // shared_queue_max 2
  EXPECT_EQ(seen_meanwhile, 0);
  // The two queued outcomes reach the fleet once the log answers again.
  EXPECT_TRUE(Await([&] { return Outcomes(1) == 2 && Outcomes(0) == 2; }))
      << Outcomes(0) << " " << Outcomes(1);
  EXPECT_EQ(Stats(1).dropped_outcomes(), 0);
}

}  // namespace
}  // namespace router::server
