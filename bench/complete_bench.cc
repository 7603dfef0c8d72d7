// complete_bench: what learning from outcomes costs the server side of Complete (bench/README.md,
// "Learning from outcomes"), with routerd in this process (router::server::Routerd::Start) on
// loopback, for four setups: a local ledger with learning off and on, and a fleet ledger on a
// redis-server started by the bench (a free loopback port in a temporary directory, the tests'
// helper) with learning on, shared (the default: the outcome is queued for the fleet's learning
// log) and not shared (learned directly, as a lone replica would).
//
//   complete_bench [--completes N]     (default 3000; at most 50,000)
//
// Per setup: N inline Routes (API models, no budget cap) give N assignment ids; then
//   - "Complete RPC": each id's Complete, one at a time over loopback (success alternating),
//     timed from the call to its answer: gRPC on both sides, the ledger's Complete (a Redis round
//     trip in the fleet setups) and the outcome's recording;
//   - "RecordOutcome": RouterRuntime::RecordOutcome alone, called 50,000 times in this thread on
//     the ids' contexts: the learning step that Complete runs after the ledger accepted the id
//     (the learner's Record, or, when shared, the push into the bounded queue).
// Each call is timed on its own (steady_clock); p50 / p99 / mean in microseconds on stdout as a
// Markdown table. Exit status: 0, 2 for a bad flag, 1 when a setup cannot start.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_stats.h"
#include "grpcpp/create_channel.h"
#include "router/v1/router.grpc.pb.h"
#include "server/config.h"
#include "server/outcome_context.h"
#include "server/routerd.h"
#include "tests/server/ledger_redis/redis_server.h"

namespace router::server {
namespace {

using ::router::bench::Mean;
using ::router::bench::Percentile;
using Clock = std::chrono::steady_clock;

constexpr int kRecordCalls = 50000;

struct Setup {
  const char* name;
  bool redis;
  bool learning;
  bool shared;
};

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

void Row(const char* setup, const char* call, const std::vector<double>& us) {
  std::printf("| %s | %s | %zu | %.1f | %.1f | %.1f |\n", setup, call, us.size(),
              Percentile(us, 0.5), Percentile(us, 0.99), Mean(us));
  std::fflush(stdout);
}

int RunSetup(const Setup& setup, int completes) {
  std::unique_ptr<testing::RedisServer> redis;
  std::string ledger = "ledger: {backend: local}";
  if (setup.redis) {
    absl::StatusOr<std::unique_ptr<testing::RedisServer>> r =
        testing::RedisServer::Start({.append_only = false, .password = ""});
    if (!r.ok()) {
      std::fprintf(stderr, "complete_bench: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    redis = *std::move(r);
    ledger = absl::StrCat("ledger: {backend: redis, redis: {address: \"", redis->address(),
                          "\", domain: bench}}");
  }
  const std::string yaml = absl::StrCat(R"(
listen: 127.0.0.1:0
metrics_listen: ""
admin: {allow_unauthenticated: true}
routing: {default_mode: inline}
budget: {lease_timeout_s: 3600}
models:
  - {name: "gpt-4-1106-preview"}
  - {name: "gpt-3.5-turbo-1106"}
  - {name: "claude-instant-v1"}
learning: {enabled: )",
                                        setup.learning ? "true" : "false",
                                        setup.redis ? (setup.shared ? ", shared: true" : ", shared: false")
                                                    : "",
                                        "}\n", ledger, "\n");
  absl::StatusOr<RouterConfig> config = ParseConfigYaml(yaml);
  if (!config.ok()) {
    std::fprintf(stderr, "complete_bench: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<Routerd>> routerd = Routerd::Start(*std::move(config), "");
  if (!routerd.ok()) {
    std::fprintf(stderr, "complete_bench: %s\n", std::string(routerd.status().message()).c_str());
    return 1;
  }
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*routerd)->port()),
                                     grpc::InsecureChannelCredentials());
  std::unique_ptr<v1::Router::Stub> stub = v1::Router::NewStub(channel);
  const char* texts[] = {"Which gas do plants absorb from the air?",
                         "Write a python function that returns the n-th prime.",
                         "Summarize the causes of the French revolution in three sentences.",
                         "What is 17 times 23?"};
  std::vector<std::string> ids;
  for (int k = 0; k < completes; ++k) {
    grpc::ClientContext ctx;
    v1::RouteRequest request;
    request.mutable_query()->set_id(absl::StrCat("q", k));
    request.mutable_query()->set_text(texts[k % 4]);
    v1::RouteResponse response;
    const grpc::Status s = stub->Route(&ctx, request, &response);
    if (!s.ok()) {
      std::fprintf(stderr, "complete_bench: Route: %s\n", s.error_message().c_str());
      return 1;
    }
    ids.push_back(response.assignment().assignment_id());
  }
  std::vector<double> rpc;
  for (int k = 0; k < completes; ++k) {
    grpc::ClientContext ctx;
    v1::CompleteRequest request;
    request.set_assignment_id(ids[k]);
    request.set_success(k % 2 == 0);
    v1::CompleteResponse response;
    const Clock::time_point start = Clock::now();
    const grpc::Status s = stub->Complete(&ctx, request, &response);
    rpc.push_back(Us(Clock::now() - start));
    if (!s.ok()) {
      std::fprintf(stderr, "complete_bench: Complete: %s\n", s.error_message().c_str());
      return 1;
    }
  }
  Row(setup.name, "Complete RPC", rpc);
  std::vector<std::optional<OutcomeContext>> contexts;
  for (const std::string& id : ids) contexts.push_back(ParseAssignmentId(id).context);
  std::vector<double> record;
  record.reserve(kRecordCalls);
  RouterRuntime& runtime = (*routerd)->runtime();
  for (int k = 0; k < kRecordCalls; ++k) {
    const std::optional<OutcomeContext>& context = contexts[k % contexts.size()];
    const Clock::time_point start = Clock::now();
    runtime.RecordOutcome(context, "success", k % 2 == 0 ? 1.0 : 0.0);
    record.push_back(Us(Clock::now() - start));
  }
  Row(setup.name, "RecordOutcome", record);
  (*routerd)->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
  return 0;
}

}  // namespace
}  // namespace router::server

int main(int argc, char** argv) {
  int completes = 3000;
  for (int k = 1; k < argc; ++k) {
    const std::string arg = argv[k];
    if (arg == "--completes" && k + 1 < argc && absl::SimpleAtoi(argv[k + 1], &completes) &&
        completes >= 1 && completes <= 50000) {
      ++k;
      continue;
    }
    std::fprintf(stderr, "usage: complete_bench [--completes N (1..50000)]\n");
    return 2;
  }
  std::printf("| setup | call | calls | p50 us | p99 us | mean us |\n|---|---|---:|---:|---:|---:|\n");
  const router::server::Setup setups[] = {
      {"local, learning off", false, false, false},
      {"local, learning on", false, true, false},
      {"fleet (redis), learning on, shared", true, true, true},
      {"fleet (redis), learning on, not shared", true, true, false},
  };
  for (const router::server::Setup& s : setups) {
    if (int rc = router::server::RunSetup(s, completes); rc != 0) return rc;
  }
  return 0;
}
