// File: ledger_testing.h
//
// What the tests of every Ledger (router_core/serving/ledger.h) build their cases from: the pool
// they share (one self-hosted model with 2 slots, one API model), paced options, a commit without
// a hold that answers the leases' ids, and a hold request.
//
// Thread-safety: free functions with no state of their own; CommitIds calls the ledger, which
// may be shared. Errors: CommitIds passes on the ledger's status. Cost: O(reservations).

#ifndef ROUTER_TESTS_ROUTER_CORE_TESTING_LEDGER_TESTING_H_
#define ROUTER_TESTS_ROUTER_CORE_TESTING_LEDGER_TESTING_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "router_core/serving/ledger.h"

namespace router::core::testing {

// "local" with 2 slots, "api" unlimited.
inline std::vector<LedgerModel> LedgerTestPool() { return {{"local", 2}, {"api", std::nullopt}}; }

// Options that pace spend: a bucket of `burst_usd` refilled at `rate_usd_per_second`.
inline LedgerOptions Paced(double rate_usd_per_second, double burst_usd) {
  LedgerOptions o;
  o.spend_rate_usd_per_second = rate_usd_per_second;
  o.spend_burst_usd = burst_usd;
  return o;
}

// Commits `reservations` without a hold; the leases' ids.
inline absl::StatusOr<std::vector<std::string>> CommitIds(
    Ledger& ledger, const std::vector<Reservation>& reservations) {
  absl::StatusOr<std::vector<Lease>> leases = ledger.Commit(nullptr, reservations);
  if (!leases.ok()) return leases.status();
  std::vector<std::string> ids;
  for (const Lease& l : *leases) ids.push_back(l.assignment_id);
  return ids;
}

// A hold of `spend_usd` and `slots` for `hold_for` (long enough by default that a test running on
// a real clock, under sanitizers, commits well inside it).
inline HoldRequest Want(double spend_usd, std::vector<HoldRequest::Slots> slots,
                        absl::Duration hold_for = absl::Seconds(5)) {
  HoldRequest r;
  r.spend_usd = spend_usd;
  r.slots = std::move(slots);
  r.hold_for = hold_for;
  return r;
}

}  // namespace router::core::testing

#endif  // ROUTER_TESTS_ROUTER_CORE_TESTING_LEDGER_TESTING_H_
