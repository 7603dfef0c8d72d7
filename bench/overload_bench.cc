// overload_bench: what routerd does with more Route traffic than it can decide. Method and
// results: bench/README.md, "Overload".
//
//   overload_bench [--config FILE] [--prompts FILE] [--factors 1,5] [--capacity_clients 64]
//                  [--duration_s 5] [--channels 8] [--deadline_ms 10000]
//                  [--max_batch_size 64] [--max_batch_delay_ms 2] [--max_queued 1024]
//                  [--time_limit_ms T] [--relative_gap G] [--small_batch_max_queries N]
//                  [--avg_cost_cap_usd C] [--routerd ADDR] [--capacity C]
//
// routerd runs in this process on the --config file (listening on 127.0.0.1:0, plaintext, no
// metrics endpoint, with the batching flags above and the policy and budget flags given), as
// load_bench runs it; or, with --routerd, it is a routerd started apart (plaintext; its own
// config, so the config, batching and policy flags are refused with --routerd), which can then
// be given priority over this process (`nice -n -10 routerd ...`, bench/README.md "Overload").
// The policy flags make the decisions the bottleneck (a binding budget and a tight gap make CBC
// use its whole time limit per batch), the overload the queue bounds are for; without them, on a
// small machine, gRPC's own per-call work saturates the CPU first.
//
// 1. Capacity: a closed loop of --capacity_clients clients, each with one batch-mode Route in
//    flight, for --duration_s: the answers per second it gets (OK or refused by a decision) are
//    the capacity C. --capacity C skips this and takes C (calls per second) as given.
// 2. For each factor f: an open loop offering f x C Route calls per second, evenly spaced, for
//    --duration_s, over --channels connections, each call with a --deadline_ms deadline. A call's
//    latency runs from the moment it was due (not when the sender got to it), so a late sender
//    shows as latency. Calls are admitted (answered OK, or RESOURCE_EXHAUSTED by their batch's
//    budget) or refused (UNAVAILABLE: queue full); the table gives each group's share and
//    latency percentiles (admitted calls' p99 also from when the sender started the call, which
//    leaves out its own lateness), how many refusals carried the retry hint
//    (grpc-retry-pushback-ms), how late the sender started its calls (send lag p99), and how many
//    it started at or after their deadline (they end DEADLINE_EXCEEDED in the client, unsent).
//
// Output: a Markdown table on stdout, one row per factor. Exit status: 0 after printing it; 2 for
// a bad flag; 1 if routerd cannot start.

#include <algorithm>
#include <cmath>
#include <atomic>
#include <cstdint>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench_routerd.h"
#include "bench_stats.h"
#include "grpcpp/create_channel.h"
#include "router/v1/router.grpc.pb.h"
#include "server/process_settings.h"
#include "server/routerd.h"

namespace {

namespace v1 = router::v1;

struct Options {
  std::string config = router::bench::kDefaultConfig;
  std::string prompts = router::bench::kDefaultPrompts;
  std::vector<double> factors = {1, 5};
  int capacity_clients = 64;
  double duration_s = 5;
  int channels = 8;
  int64_t deadline_ms = 10000;
  int64_t max_batch_size = 64;
  double max_batch_delay_ms = 2;
  int64_t max_queued = 1024;
  std::optional<double> time_limit_ms, relative_gap, avg_cost_cap_usd;
  std::optional<int> small_batch_max_queries;
  std::string target;               // --routerd; "": routerd in this process
  std::optional<double> capacity;   // calls/s; none: measured
  bool routerd_flags = false;       // a flag that configures the in-process routerd was given
};

int Usage(const std::string& problem) {
  std::cerr << "overload_bench: " << problem << "\n"
            << "usage: overload_bench [--config FILE] [--prompts FILE] [--factors 1,5]\n"
               "       [--capacity_clients 64] [--duration_s 5] [--channels 8] "
               "[--deadline_ms 10000]\n"
               "       [--max_batch_size 64] [--max_batch_delay_ms 2] [--max_queued 1024]\n"
               "       [--time_limit_ms T] [--relative_gap G] [--small_batch_max_queries N]\n"
               "       [--avg_cost_cap_usd C] [--routerd ADDR] [--capacity C]\n";
  return 2;
}

// One Route call and what became of it.
struct Call {
  grpc::ClientContext ctx;
  v1::RouteRequest request;
  v1::RouteResponse response;
  absl::Time due;
  absl::Duration send_lag;  // from `due` to the sender's start of the call
  absl::Duration latency;
  grpc::StatusCode code = grpc::StatusCode::OK;
  bool hinted = false;
};

class Calls {
 public:
  explicit Calls(const std::vector<std::string>& texts) : texts_(texts) {}

  // Starts a batch-mode Route due at `due` on `stub`; `done` runs after it is recorded.
  void Start(v1::Router::Stub& stub, absl::Time due, absl::Duration deadline,
             std::function<void()> done = nullptr) {
    auto call = std::make_unique<Call>();
    Call* c = call.get();
    const uint64_t seq = next_.fetch_add(1);
    c->request.mutable_query()->set_id(absl::StrCat("o", seq));
    c->request.mutable_query()->set_text(texts_[seq % texts_.size()]);
    c->request.mutable_query()->set_mode(v1::ROUTING_MODE_BATCH);
    c->due = due;
    c->send_lag = absl::Now() - due;
    c->ctx.set_deadline(absl::ToChronoTime(due + deadline));
    {
      absl::MutexLock lock(&mu_);
      ++outstanding_;
      calls_.push_back(std::move(call));
    }
    stub.async()->Route(&c->ctx, &c->request, &c->response,
                        [this, c, done = std::move(done)](grpc::Status s) {
                          c->latency = absl::Now() - c->due;
                          c->code = s.error_code();
                          c->hinted = c->ctx.GetServerTrailingMetadata().count(
                                          "grpc-retry-pushback-ms") > 0;
                          {
                            absl::MutexLock lock(&mu_);
                            --outstanding_;
                          }
                          if (done) done();
                        });
  }

  // Waits until every started call is answered.
  void AwaitAll() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int64_t* n) { return *n == 0; }, &outstanding_));
  }

  // Calls started at or after `from` (all answered).
  std::vector<const Call*> Since(absl::Time from) {
    absl::MutexLock lock(&mu_);
    std::vector<const Call*> out;
    for (const auto& c : calls_) {
      if (c->due >= from) out.push_back(c.get());
    }
    return out;
  }

 private:
  const std::vector<std::string>& texts_;
  std::atomic<uint64_t> next_{0};
  absl::Mutex mu_;
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::unique_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
};

bool Admitted(grpc::StatusCode code) {
  return code == grpc::StatusCode::OK || code == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

// Closed loop: the rate of admitted answers per second.
double MeasureCapacity(const std::vector<std::unique_ptr<v1::Router::Stub>>& stubs,
                       const std::vector<std::string>& texts, const Options& o) {
  Calls calls(texts);
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(o.duration_s);
  const absl::Duration deadline = absl::Milliseconds(o.deadline_ms);
  std::function<void(int)> loop = [&](int client) {
    if (absl::Now() >= end) return;
    calls.Start(*stubs[client % stubs.size()], absl::Now(), deadline, [&, client] { loop(client); });
  };
  for (int k = 0; k < o.capacity_clients; ++k) loop(k);
  calls.AwaitAll();
  int64_t admitted = 0;
  for (const Call* c : calls.Since(start)) admitted += Admitted(c->code);
  return static_cast<double>(admitted) / o.duration_s;
}

void OpenLoop(double factor, double capacity,
              const std::vector<std::unique_ptr<v1::Router::Stub>>& stubs,
              const std::vector<std::string>& texts, const Options& o) {
  Calls calls(texts);
  const double rate = factor * capacity;
  const int64_t n = static_cast<int64_t>(rate * o.duration_s);
  const absl::Time start = absl::Now() + absl::Milliseconds(50);
  const absl::Duration deadline = absl::Milliseconds(o.deadline_ms);
  for (int64_t k = 0; k < n; ++k) {
    const absl::Time due = start + absl::Seconds(static_cast<double>(k) / rate);
    const absl::Duration wait = due - absl::Now();
    if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
    calls.Start(*stubs[k % stubs.size()], due, deadline);
  }
  calls.AwaitAll();
  std::vector<double> admitted_ms, admitted_sent_ms, refused_ms, lag_ms;
  int64_t sent_expired = 0;  // sent at or after their deadline: never reached routerd
  std::map<grpc::StatusCode, int64_t> other;
  int64_t hinted = 0;
  for (const Call* c : calls.Since(start)) {
    lag_ms.push_back(Ms(c->send_lag));
    sent_expired += c->send_lag >= deadline;
    if (Admitted(c->code)) {
      admitted_ms.push_back(Ms(c->latency));
      admitted_sent_ms.push_back(Ms(c->latency - c->send_lag));
    } else if (c->code == grpc::StatusCode::UNAVAILABLE) {
      refused_ms.push_back(Ms(c->latency));
      hinted += c->hinted;
    } else {
      ++other[c->code];
    }
  }
  const double total = static_cast<double>(n);
  auto pct = [](const std::vector<double>& v, double q) {
    return v.empty() ? 0.0 : router::bench::Percentile(v, q);
  };
  std::string others;
  for (const auto& [code, count] : other) absl::StrAppend(&others, code, ":", count, " ");
  std::cout << absl::StrFormat(
                   "| %.0f | %.0f | %d | %.1f%% | %.1f | %.1f | %.1f | %.1f%% | %.2f | %.2f | "
                   "%d/%d | %s | %.1f | %d |",
                   factor, rate, n, 100.0 * admitted_ms.size() / total, pct(admitted_ms, 0.5),
                   pct(admitted_ms, 0.99), pct(admitted_sent_ms, 0.99),
                   100.0 * refused_ms.size() / total, pct(refused_ms, 0.5),
                   pct(refused_ms, 0.99), hinted, refused_ms.size(),
                   others.empty() ? "-" : others, pct(lag_ms, 0.99), sent_expired)
            << std::endl;
}

// routerd in this process on o.config with the batching and policy flags.
absl::StatusOr<std::unique_ptr<router::server::Routerd>> StartInProcess(const Options& o) {
  absl::StatusOr<router::server::RouterConfig> config = router::server::LoadConfigFile(o.config);
  if (!config.ok()) return config.status();
  router::bench::ForInProcessBenchmark(*config, /*metrics_listen=*/"");
  config->batching.max_batch_size = o.max_batch_size;
  config->batching.max_batch_delay = absl::Microseconds(std::llround(o.max_batch_delay_ms * 1000));
  config->batching.max_queued = o.max_queued;
  if (o.time_limit_ms) config->policy.solve.time_limit = absl::Milliseconds(*o.time_limit_ms);
  if (o.relative_gap) config->policy.solve.relative_gap = *o.relative_gap;
  if (o.small_batch_max_queries) {
    config->policy.solve.small_batch_max_queries = *o.small_batch_max_queries;
  }
  if (o.avg_cost_cap_usd) config->policy.avg_cost_cap_usd = *o.avg_cost_cap_usd;
  absl::StatusOr<std::unique_ptr<router::server::Routerd>> routerd =
      router::server::Routerd::Start(*std::move(config), "");
  if (!routerd.ok()) {
    return absl::Status(routerd.status().code(),
                        absl::StrCat("routerd: ", routerd.status().message()));
  }
  return routerd;
}

}  // namespace

int main(int argc, char** argv) {
  router::server::ApplyProcessSettings();
  Options o;
  const auto apply = [&o](const std::string& arg, const std::string& value) -> std::optional<bool> {
    bool ok = true;
    const auto positive = [&value](auto* out) {
      return router::bench::ParseNumber(value, out) && *out > 0;
    };
    o.routerd_flags |= arg == "--config" || arg == "--max_batch_size" ||
                       arg == "--max_batch_delay_ms" || arg == "--max_queued" ||
                       arg == "--time_limit_ms" || arg == "--relative_gap" ||
                       arg == "--avg_cost_cap_usd" || arg == "--small_batch_max_queries";
    if (arg == "--capacity") {
      ok = positive(&o.capacity.emplace());
    } else if (arg == "--routerd") {
      o.target = value;
      ok = !value.empty();
    } else if (arg == "--config") {
      o.config = value;
    } else if (arg == "--prompts") {
      o.prompts = value;
    } else if (arg == "--factors") {
      ok = router::bench::ParseList(value, &o.factors);
    } else if (arg == "--capacity_clients") {
      ok = positive(&o.capacity_clients);
    } else if (arg == "--duration_s") {
      ok = positive(&o.duration_s);
    } else if (arg == "--channels") {
      ok = positive(&o.channels);
    } else if (arg == "--deadline_ms") {
      ok = positive(&o.deadline_ms);
    } else if (arg == "--max_batch_size") {
      ok = positive(&o.max_batch_size);
    } else if (arg == "--max_batch_delay_ms") {
      ok = positive(&o.max_batch_delay_ms);
    } else if (arg == "--max_queued") {
      ok = positive(&o.max_queued);
    } else if (arg == "--time_limit_ms") {
      ok = positive(&o.time_limit_ms.emplace());
    } else if (arg == "--relative_gap") {
      ok = positive(&o.relative_gap.emplace());
    } else if (arg == "--avg_cost_cap_usd") {
      ok = positive(&o.avg_cost_cap_usd.emplace());
    } else if (arg == "--small_batch_max_queries") {
      ok = router::bench::ParseNumber(value, &o.small_batch_max_queries.emplace()) &&
           *o.small_batch_max_queries >= 0;
    } else {
      return std::nullopt;
    }
    return ok;
  };
  if (std::optional<int> exit_code = router::bench::ParseFlagPairs(argc, argv, Usage, apply)) {
    return *exit_code;
  }
  absl::StatusOr<std::vector<std::string>> texts = router::bench::LoadPromptTexts(o.prompts);
  if (!texts.ok()) {
    std::cerr << "overload_bench: " << texts.status().message() << "\n";
    return 1;
  }
  if (!o.target.empty() && o.routerd_flags) {
    return Usage("--routerd: the routerd's own config sets batching and policy; drop those flags");
  }
  std::unique_ptr<router::server::Routerd> in_process;
  std::string address = o.target;
  if (address.empty()) {
    absl::StatusOr<std::unique_ptr<router::server::Routerd>> routerd = StartInProcess(o);
    if (!routerd.ok()) {
      std::cerr << "overload_bench: " << routerd.status().message() << "\n";
      return 1;
    }
    in_process = *std::move(routerd);
    address = absl::StrCat("127.0.0.1:", in_process->port());
  }
  std::vector<std::unique_ptr<v1::Router::Stub>> stubs;
  for (int c = 0; c < o.channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);  // a connection per channel
    stubs.push_back(v1::Router::NewStub(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args)));
  }
  const double capacity = o.capacity ? *o.capacity : MeasureCapacity(stubs, *texts, o);
  std::cout << (o.capacity ? absl::StrFormat("capacity: %.0f Route calls/s (given); ", capacity)
                           : absl::StrFormat("capacity: %.0f admitted Route calls/s (closed loop, "
                                             "%d clients, %.0f s); ",
                                             capacity, o.capacity_clients, o.duration_s))
            << (o.target.empty()
                    ? absl::StrFormat("max_batch_size %d, max_batch_delay_ms %.1f, max_queued %d",
                                      o.max_batch_size, o.max_batch_delay_ms, o.max_queued)
                    : absl::StrCat("routerd at ", o.target))
            << "\n\n"
            << "| factor | offered/s | calls | admitted | admitted p50 ms | p99 ms | "
               "p99 from send ms | refused | refused p50 ms | p99 ms | with hint | other | "
               "send lag p99 ms | sent past deadline |\n"
            << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" << std::endl;
  for (double factor : o.factors) OpenLoop(factor, capacity, stubs, *texts, o);
  if (in_process != nullptr) in_process->Shutdown(absl::ZeroDuration(), absl::Seconds(10));
  return 0;
}
