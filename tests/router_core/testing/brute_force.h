// File: brute_force.h
//
// Test-only exact reference: enumerates every assignment (including leaving a query unserved only
// where `allow_unserved`), so it is usable for M^N up to about a million.

#ifndef ROUTER_TESTS_ROUTER_CORE_TESTING_BRUTE_FORCE_H_
#define ROUTER_TESTS_ROUTER_CORE_TESTING_BRUTE_FORCE_H_

#include <optional>
#include <vector>

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

}  // namespace router::core::testing

#endif  // ROUTER_TESTS_ROUTER_CORE_TESTING_BRUTE_FORCE_H_
