// File: ledger_conformance.h
//
// The behaviour every Ledger (router_core/serving/ledger.h) must have, written once as a
// value-parameterized GoogleTest suite (ledger_conformance.cc, the library
// router_core_ledger_conformance) and run against each implementation. A backend's test binary
// links the library, instantiates the suite with its backend,
//     INSTANTIATE_TEST_SUITE_P(Local, LedgerConformanceTest,
//                              ::testing::Values(LedgerBackend{"in_process", &MakeLocalFleet}),
//                              BackendName);
// and keeps beside it only the tests of what is its own (its options, its clock's precision, what
// a server adds).
//
// A fleet is one test's ledgers on one state: kReplicas replicas of a shared ledger, or the one
// in-process ledger standing for every replica. Time passes the fleet's way (an in-process ledger
// on a fake clock advances it; a shared one on its server's clock sleeps), so the suite only waits
// for what must have happened by then (a lease, a hold or a window past its end) and never asserts
// that something has not happened yet by the clock.
//
// Thread-safety: a fleet belongs to one test; its ledgers are thread-safe (ledger.h). Errors: a
// fleet that cannot start fails the test. Cost: as the ledgers'; waits are at most about a second.

#ifndef ROUTER_TESTS_ROUTER_CORE_TESTING_LEDGER_CONFORMANCE_H_
#define ROUTER_TESTS_ROUTER_CORE_TESTING_LEDGER_CONFORMANCE_H_

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "router_core/serving/ledger.h"
#include "tests/router_core/testing/ledger_testing.h"

namespace router::core::testing {

class LedgerFleet {
 public:
  static constexpr int kReplicas = 3;
  virtual ~LedgerFleet() = default;
  // Creates the fleet's state with `options` and `models`; called once, first.
  virtual absl::Status Start(const LedgerOptions& options, std::vector<LedgerModel> models) = 0;
  // Replica k in [0, kReplicas).
  virtual Ledger& replica(int k) = 0;
  // Lets at least `d` pass on the ledgers' clock.
  virtual void Wait(absl::Duration d) = 0;
};

// A backend under test: its name (letters, digits and '_': it ends the tests' names) and how to
// make one test's fleet.
struct LedgerBackend {
  const char* name;
  std::unique_ptr<LedgerFleet> (*make)();
};
inline void PrintTo(const LedgerBackend& backend, std::ostream* os) { *os << backend.name; }
// The tests' names end with the backend's name (not a pointer, which changes from run to run).
inline std::string BackendName(const ::testing::TestParamInfo<LedgerBackend>& info) {
  return info.param.name;
}

class LedgerConformanceTest : public ::testing::TestWithParam<LedgerBackend> {
 protected:
  // Starts this test's fleet; its replica 0. A fleet that cannot start ends the test binary with
  // the reason (nothing else can be tested without it).
  Ledger& Start(const LedgerOptions& options = LedgerOptions{},
                std::vector<LedgerModel> models = LedgerTestPool());
  Ledger& Replica(int k) { return fleet_->replica(k); }
  void Wait(absl::Duration d) { fleet_->Wait(d); }

 private:
  std::unique_ptr<LedgerFleet> fleet_;
};

}  // namespace router::core::testing

#endif  // ROUTER_TESTS_ROUTER_CORE_TESTING_LEDGER_CONFORMANCE_H_
