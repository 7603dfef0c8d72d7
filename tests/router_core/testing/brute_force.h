// File: brute_force.h
//
// Test-only exact reference: enumerates every assignment (including leaving a query unserved only
// where `allow_unserved`), so it is usable for M^N up to about a million; and the check of a
// gap-limited search against it.

#ifndef ROUTER_TESTS_ROUTER_CORE_TESTING_BRUTE_FORCE_H_
#define ROUTER_TESTS_ROUTER_CORE_TESTING_BRUTE_FORCE_H_

#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "gtest/gtest.h"
#include "router_core/solve/instance.h"

namespace router::core::testing {

// Robust objective of an assignment: sum of values minus the `gamma` largest deviations (the
// fractional part of gamma weighs the next one), as in Bertsimas-Sim.
double GammaObjective(const Instance& instance, const std::vector<int>& model_of_query,
                      double gamma);

struct BruteForceResult {
  std::vector<int> model_of_query;
  double objective = 0.0;
};

// Best feasible assignment serving every query, maximizing GammaObjective (gamma = 0: the nominal
// value). nullopt when no assignment serving every query is feasible.
std::optional<BruteForceResult> BruteForce(const Instance& instance, double gamma = 0.0);

// A search run with `relative_gap` (r.finished, r.objective, r.upper_bound) against the optimum:
// it finished, its bound is at or above the optimum and its objective within the gap of its
// bound. Failures name `seed`.
template <typename Result>
void ExpectFinishedWithinGap(const Result& r, double optimum, double relative_gap, uint64_t seed) {
  ASSERT_TRUE(r.finished) << "seed " << seed;
  EXPECT_GE(r.upper_bound, optimum - 1e-9) << "seed " << seed;
  EXPECT_GE(r.objective, r.upper_bound - relative_gap * std::abs(r.upper_bound) - 1e-9)
      << "seed " << seed;
}

}  // namespace router::core::testing

#endif  // ROUTER_TESTS_ROUTER_CORE_TESTING_BRUTE_FORCE_H_
