// ledger_bench: what the ledger adds to one batch, in-process and in Redis: the Hold before the
// solve plus the Commit of the batch's assignments after it (one call each), for a batch of
// --batch queries over 2 self-hosted models (64 slots each) and 3 API models, paced. Then the
// Complete of one assignment. Prints p50 and p99 of each, local and Redis, from the same run.
//
//   redis-server --port 6390 --save '' --appendonly yes --dir /tmp &     # any Redis 7
//   ./build/bin/ledger_bench --redis 127.0.0.1:6390 [--batch 64] [--iterations 2000]
//
// Figures in bench/README.md, "Shared ledger".

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
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

}  // namespace

int main(int argc, char** argv) {
  std::string redis;
  int batch = 64, iterations = 2000;
  for (int k = 1; k + 1 < argc; k += 2) {
    const std::string arg = argv[k], value = argv[k + 1];
    if (arg == "--redis") {
      redis = value;
    } else if (arg == "--batch" && absl::SimpleAtoi(value, &batch) && batch > 0) {
    } else if (arg == "--iterations" && absl::SimpleAtoi(value, &iterations) && iterations > 0) {
    } else {
      std::cerr << "usage: ledger_bench --redis HOST:PORT [--batch 64] [--iterations 2000]\n";
      return 2;
    }
  }
  if (redis.empty()) {
    std::cerr << "usage: ledger_bench --redis HOST:PORT [--batch 64] [--iterations 2000]\n";
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
  return l.failures + s.failures == 0 ? 0 : 1;
}
