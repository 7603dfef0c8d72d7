// Two routerd replicas in process on one Redis ledger (redis_server.h): what one replica assigns
// holds a slot that the other's ListModels shows and that the other's Complete frees, once.

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "router/v1/router.grpc.pb.h"
#include "server/routerd.h"
#include "tests/router_core/testing/status_matchers.h"
#include "tests/server/ledger_redis/redis_server.h"

namespace router::server {
namespace {

using core::testing::IsOk;
using ::router::testing::RedisServer;

constexpr char kLocal[] = "mistralai/mixtral-8x7b-chat";

struct Replica {
  std::unique_ptr<Routerd> routerd;
  std::unique_ptr<v1::Router::Stub> router;
  std::unique_ptr<v1::RouterAdmin::Stub> admin;
};

class FleetRouterdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RedisServer>> s = RedisServer::Start();
    ASSERT_THAT(s, IsOk());
    redis_ = *std::move(s);
    for (int k = 0; k < 2; ++k) {
      absl::StatusOr<RouterConfig> config = ParseConfigYaml(absl::StrCat(R"(
listen: 127.0.0.1:0
metrics_listen: ""
batching: {max_batch_size: 1, max_batch_delay_ms: 1}
budget: {lease_timeout_s: 600}
ledger: {backend: redis, redis: {address: ")", redis_->address(), R"(", domain: fleet,
                                 connect_timeout_ms: 5000, call_timeout_ms: 5000}}
models:
  - {name: ")", kLocal, R"(", instances: 1, slots_per_instance: 3}
)"));
      ASSERT_THAT(config, IsOk());
      absl::StatusOr<std::unique_ptr<Routerd>> d = Routerd::Start(*std::move(config), "");
      ASSERT_THAT(d, IsOk());
      Replica r;
      r.routerd = *std::move(d);
      auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", r.routerd->port()),
                                         grpc::InsecureChannelCredentials());
      r.router = v1::Router::NewStub(channel);
      r.admin = v1::RouterAdmin::NewStub(channel);
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
  grpc::Status Complete(int k, const std::string& assignment_id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::CompleteRequest request;
    request.set_assignment_id(assignment_id);
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

}  // namespace
}  // namespace router::server
