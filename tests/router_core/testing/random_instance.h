// File: random_instance.h
//
// Test-only generators of batch instances shaped like real routing data: models of different
// strength and price, self-hosted (slot-limited, free) and API (unlimited, priced) models, queries of
// varying difficulty and length, optional allowed-model restrictions, and budgets that bind.

#ifndef ROUTER_TESTS_ROUTER_CORE_TESTING_RANDOM_INSTANCE_H_
#define ROUTER_TESTS_ROUTER_CORE_TESTING_RANDOM_INSTANCE_H_

#include <cstdint>

#include "router_core/solve/instance.h"
#include "router_core/solve/problem.h"

namespace router::core::testing {

struct RandomInstanceOptions {
  int num_queries = 8;
  int num_models = 3;
  // How many of the models are self-hosted: slot-limited and free.
  int num_limited = 1;
  // Slots of each limited model, as a fraction of num_queries (rounded down, may be 0).
  double slot_fraction = 0.25;
  // Budget as a fraction of the cost of sending every query to its dearest API model; < 0 = none.
  double budget_fraction = 0.3;
  // Probability that a query disallows a model (at least one model stays allowed).
  double disallow_probability = 0.0;
  // Sort queries so that the hardest, longest (most expensive) come first.
  bool adversarial = false;
  // Give every query a lower bound below its quality.
  bool with_lower = true;
  uint64_t seed = 1;
};

BatchProblem RandomProblem(const RandomInstanceOptions& options);

// Small instances across the shapes the generator offers, for comparisons with BruteForce: 1-7
// queries, 1-3 models, slots, budgets, disallowed models and adversarial order varying with `seed`.
RandomInstanceOptions SmallOptions(uint64_t seed);

// An instance of 32 queries and 8 models (2 self-hosted, binding budget) whose exact optimum the
// small-batch search needs about 20,000 nodes to prove: for tests of what stops a search.
RandomInstanceOptions LongSearchOptions();

}  // namespace router::core::testing

#endif  // ROUTER_TESTS_ROUTER_CORE_TESTING_RANDOM_INSTANCE_H_
