#include "tests/server/ledger_redis/shared_redis_server.h"

#include <memory>
#include <utility>

#include "absl/status/statusor.h"

namespace router::testing {
namespace {

RedisServer* g_server = nullptr;

class SharedRedisEnvironment : public ::testing::Environment {
 public:
  explicit SharedRedisEnvironment(RedisServerOptions options) : options_(std::move(options)) {}
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RedisServer>> s = RedisServer::Start(options_);
    ASSERT_TRUE(s.ok()) << s.status();
    g_server = s->release();
  }
  void TearDown() override {
    delete g_server;
    g_server = nullptr;
  }

 private:
  const RedisServerOptions options_;
};

}  // namespace

::testing::Environment* AddSharedRedisServer(const RedisServerOptions& options) {
  return ::testing::AddGlobalTestEnvironment(new SharedRedisEnvironment(options));
}

RedisServer& SharedRedisServer() { return *g_server; }

}  // namespace router::testing
