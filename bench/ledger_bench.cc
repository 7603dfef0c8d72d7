// ledger_bench: what the ledger adds to one batch, in-process and in Redis: the Hold before the
// solve plus the Commit of the batch's assignments after it (one call each), for a batch of
// --batch queries over 2 self-hosted models (64 slots each) and 3 API models, paced. Then the
// Complete of one assignment. Prints p50 and p99 of each, local and Redis, from the same run.
// Then Completes from --complete_threads threads at once (the Completes of a gateway's many
// connections), each completing its share of --batch x --iterations / 4 API leases one after
// another: Completes per second, and p50 and p99 of one Complete, local and Redis.
//
//   redis-server --port 6390 --save '' --appendonly yes --dir /tmp &     # any Redis 7
//   ./build/bin/ledger_bench --redis 127.0.0.1:6390 [--batch 64] [--iterations 2000]
//       [--complete_threads 16]
//
// Figures in bench/README.md, "Shared ledger".

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "router_core/serving/local_ledger.h"
#include "server/ledger_redis/redis_ledger.h"

namespace {

using router::core::HoldRequest;
using router::core::Ledger;
using router::core::LedgerHold;
using router::core::LedgerModel;
using router::core::LedgerOptions;
using router::core::Lease;
using router::core::Reservation;

struct Quantiles {
  double p50_us = 0, p99_us = 0;
};

Quantiles Of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return {};
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

struct Result {
  Quantiles batch, complete;
  int failures = 0;
};

Result Run(Ledger& ledger, int batch, int iterations) {
  const char* models[] = {"self-a", "self-b", "api-a", "api-b", "api-c"};
  std::vector<double> batch_us, complete_us;
  Result r;
  for (int it = 0; it < iterations; ++it) {
    HoldRequest want;
    want.spend_usd = 0.0025 * batch;
    want.slots = {{"self-a", batch}, {"self-b", batch}};
    want.hold_for = absl::Seconds(1);
    std::vector<Reservation> reservations;
    for (int k = 0; k < batch; ++k) reservations.push_back({models[k % 5], 0.001});
    const absl::Time start = absl::Now();
    absl::StatusOr<LedgerHold> hold = ledger.Hold(want);
    absl::StatusOr<std::vector<Lease>> leases =
        hold.ok() ? ledger.Commit(&*hold, reservations) : hold.status();
    batch_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!leases.ok()) {
      ++r.failures;
      continue;
    }
    for (size_t k = 0; k < leases->size(); ++k) {
      const absl::Time c = absl::Now();
      if (!ledger.Complete((*leases)[k].assignment_id, std::nullopt).ok()) ++r.failures;
      if (k == 0) complete_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - c));
    }
  }
  r.batch = Of(batch_us);
  r.complete = Of(complete_us);
  return r;
}

struct Throughput {
  double per_second = 0;
  Quantiles complete;
  int failures = 0;
};

// Commits `leases` API leases in batches of `batch`, then completes them from `threads` threads.
Throughput RunCompletes(Ledger& ledger, int batch, int leases, int threads) {
  const char* models[] = {"api-a", "api-b", "api-c"};
  std::vector<std::string> ids;
  Throughput t;
  while (static_cast<int>(ids.size()) < leases) {
    std::vector<Reservation> reservations;
    for (int k = 0; k < batch; ++k) reservations.push_back({models[k % 3], 0.0001});
    absl::StatusOr<std::vector<Lease>> committed = ledger.Commit(nullptr, reservations);
    if (!committed.ok()) {
      ++t.failures;
      return t;
    }
    for (const Lease& l : *committed) ids.push_back(l.assignment_id);
  }
  std::vector<std::vector<double>> us(threads);
  std::vector<int> failures(threads, 0);
  std::vector<std::thread> workers;
  const absl::Time start = absl::Now();
  for (int w = 0; w < threads; ++w) {
    workers.emplace_back([&, w] {
      for (size_t k = w; k < ids.size(); k += threads) {
        const absl::Time c = absl::Now();
        if (!ledger.Complete(ids[k], std::nullopt).ok()) ++failures[w];
        us[w].push_back(absl::ToDoubleMicroseconds(absl::Now() - c));
      }
    });
  }
  for (std::thread& w : workers) w.join();
  t.per_second = static_cast<double>(ids.size()) / absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> all;
  for (int w = 0; w < threads; ++w) {
    all.insert(all.end(), us[w].begin(), us[w].end());
    t.failures += failures[w];
  }
  t.complete = Of(std::move(all));
  return t;
}

}  // namespace

constexpr char kUsage[] =
    "usage: ledger_bench --redis HOST:PORT [--batch 64] [--iterations 2000] "
    "[--complete_threads 16 (1-256)]\n";

int main(int argc, char** argv) {
  std::string redis;
  int batch = 64, iterations = 2000, complete_threads = 16;
  for (int k = 1; k + 1 < argc; k += 2) {
    const std::string arg = argv[k], value = argv[k + 1];
    if (arg == "--redis") {
      redis = value;
    } else if (arg == "--batch" && absl::SimpleAtoi(value, &batch) && batch > 0) {
    } else if (arg == "--iterations" && absl::SimpleAtoi(value, &iterations) && iterations > 0) {
    } else if (arg == "--complete_threads" && absl::SimpleAtoi(value, &complete_threads) &&
               complete_threads > 0 && complete_threads <= 256) {
    } else {
      std::cerr << kUsage;
      return 2;
    }
  }
  if (redis.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  const std::vector<LedgerModel> pool = {{"self-a", 64}, {"self-b", 64}, {"api-a", std::nullopt},
                                         {"api-b", std::nullopt}, {"api-c", std::nullopt}};
  LedgerOptions o;
  o.spend_rate_usd_per_second = 1000;
  o.spend_burst_usd = 1000;
  auto local = router::core::LocalLedger::Create(o, pool);
  router::server::RedisLedgerOptions r;
  r.address = redis;
  r.domain = absl::StrCat("ledger_bench_", absl::ToUnixMicros(absl::Now()));
  auto shared = router::server::RedisLedger::Create(r, o, pool);
  if (!local.ok() || !shared.ok()) {
    std::cerr << "ledger_bench: cannot create the ledgers\n";
    return 1;
  }
  Run(**shared, batch, 50);  // warm-up: connections, functions
  const Result l = Run(**local, batch, iterations);
  const Result s = Run(**shared, batch, iterations);
  std::printf("batch of %d, %d iterations: Hold+Commit p50 %.1f us (local) vs %.1f us (redis), "
              "p99 %.1f vs %.1f us; median added by Redis %.3f ms (target <= 1 ms)\n",
              batch, iterations, l.batch.p50_us, s.batch.p50_us, l.batch.p99_us, s.batch.p99_us,
              (s.batch.p50_us - l.batch.p50_us) / 1000.0);
  std::printf("Complete: p50 %.1f us (local) vs %.1f us (redis), p99 %.1f vs %.1f us; failures %d "
              "(local) %d (redis)\n",
              l.complete.p50_us, s.complete.p50_us, l.complete.p99_us, s.complete.p99_us,
              l.failures, s.failures);
  const int leases = std::max(1, batch * iterations / 4);
  const Throughput lc = RunCompletes(**local, batch, leases, complete_threads);
  const Throughput sc = RunCompletes(**shared, batch, leases, complete_threads);
  std::printf("%d Completes from %d threads: %.0f/s (local) vs %.0f/s (redis); one Complete p50 "
              "%.1f us vs %.1f us, p99 %.1f vs %.1f us; failures %d (local) %d (redis)\n",
              leases, complete_threads, lc.per_second, sc.per_second, lc.complete.p50_us,
              sc.complete.p50_us, lc.complete.p99_us, sc.complete.p99_us, lc.failures,
              sc.failures);
  return l.failures + s.failures + lc.failures + sc.failures == 0 ? 0 : 1;
}
