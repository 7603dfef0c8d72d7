#include "router_core/solve/heuristic_policies.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/solve/admission.h"
#include "router_core/solve/instance.h"
#include "router_core/solve/solution.h"
#include "tests/router_core/testing/random_instance.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using testing::RandomInstanceOptions;
using testing::RandomProblem;

constexpr double kInf = std::numeric_limits<double>::infinity();

// A dense instance by hand. value/cost are per query, per model; `allowed` empty = everything.
Instance MakeInstance(const std::vector<std::vector<double>>& value,
                      const std::vector<std::vector<double>>& cost, std::vector<int64_t> slots,
                      double budget, const std::vector<std::vector<int>>& allowed = {}) {
  Instance inst;
  inst.num_queries = static_cast<int>(value.size());
  inst.num_models = static_cast<int>(slots.size());
  inst.slots = std::move(slots);
  inst.budget = budget;
  for (int i = 0; i < inst.num_queries; ++i) {
    for (int j = 0; j < inst.num_models; ++j) {
      inst.value.push_back(value[i][j]);
      inst.cost.push_back(cost[i][j]);
      inst.deviation.push_back(0.0);
      inst.allowed.push_back(allowed.empty() ? 1 : static_cast<uint8_t>(allowed[i][j]));
    }
  }
  return inst;
}

// The same row of values and costs for every query.
Instance Uniform(int n, const std::vector<double>& value, const std::vector<double>& cost,
                 std::vector<int64_t> slots, double budget) {
  return MakeInstance(std::vector<std::vector<double>>(n, value),
                      std::vector<std::vector<double>>(n, cost), std::move(slots), budget);
}

int CountModel(const Solution& s, int model) {
  return static_cast<int>(std::count(s.model_of_query.begin(), s.model_of_query.end(), model));
}

// Everything a heuristic answer must satisfy, whatever the instance.
void ExpectWellFormed(const Instance& inst, const Admission& adm, const Solution& s,
                      const std::string& method, const std::string& context) {
  SCOPED_TRACE(context + " method " + method);
  ASSERT_EQ(static_cast<int>(s.model_of_query.size()), inst.num_queries);
  EXPECT_THAT(CheckFeasible(inst, s.model_of_query), IsOk());
  EXPECT_EQ(s.status, SolveStatus::kHeuristic);
  EXPECT_EQ(s.upper_bound, kInf);
  EXPECT_EQ(s.method, method);
  EXPECT_DOUBLE_EQ(s.objective, AssignmentValue(inst, s.model_of_query));
  EXPECT_DOUBLE_EQ(s.total_cost, AssignmentCost(inst, s.model_of_query));
  ASSERT_EQ(static_cast<int>(s.unserved_reason.size()), inst.num_queries);
  for (int i = 0; i < inst.num_queries; ++i) {
    const bool served = adm.fallback[i] != kUnserved;
    EXPECT_EQ(s.model_of_query[i] != kUnserved, served) << "query " << i;
    if (!served) {
      EXPECT_EQ(s.unserved_reason[i], adm.reason[i]) << "query " << i;
    }
  }
}

RandomInstanceOptions RandomOptions(std::mt19937_64& rng, uint64_t seed) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  RandomInstanceOptions o;
  o.seed = seed;
  o.num_queries = 1 + static_cast<int>(rng() % 40);
  o.num_models = 1 + static_cast<int>(rng() % 6);
  o.num_limited = static_cast<int>(rng() % (o.num_models + 1));
  o.slot_fraction = 0.6 * unit(rng);
  o.budget_fraction = rng() % 5 == 0 ? -1.0 : 0.05 + 0.45 * unit(rng);
  const double disallow[] = {0.0, 0.2, 0.5};
  o.disallow_probability = disallow[rng() % 3];
  o.adversarial = rng() % 2 == 0;
  o.with_lower = rng() % 2 == 0;
  return o;
}

TEST(HeuristicPoliciesTest, EveryPolicyIsFeasibleOnRandomInstances) {
  std::mt19937_64 rng(20240601);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  int with_unserved = 0;
  int guard_changed_something = 0;
  for (uint64_t seed = 1; seed <= 3000; ++seed) {
    const RandomInstanceOptions o = RandomOptions(rng, seed);
    const Instance inst = BuildInstance(RandomProblem(o), ValueSource::kQuality);
    const Admission adm = AdmitQueries(inst);
    const std::string context = "seed " + std::to_string(seed);
    // Precondition of the guard (admission's contract).
    ASSERT_THAT(CheckFeasible(inst, adm.fallback), IsOk()) << context;
    if (adm.served.size() < static_cast<size_t>(inst.num_queries)) ++with_unserved;

    // lambda spread over the range where value and cost trade off (costs are ~1e-5..1e-1 USD).
    const double lambda = rng() % 4 == 0 ? 0.0 : std::pow(10.0, -1.0 + 6.0 * unit(rng));
    const double tau = unit(rng);
    const uint64_t ndch_seed = rng();

    const Solution per_query = SolvePerQuery(inst, adm, lambda);
    ExpectWellFormed(inst, adm, per_query, "per_query", context);
    ExpectWellFormed(inst, adm, SolveThreshold(inst, adm, tau), "threshold", context);
    ExpectWellFormed(inst, adm, SolveNdch(inst, adm, ndch_seed), "ndch", context);
    ExpectWellFormed(inst, adm, SolveNdchP(inst, adm), "ndch_p", context);
    if (HasFatalFailure() || HasNonfatalFailure()) return;

    // How often did the guard have to overrule lambda = 0 (each query's best value)?
    if (lambda == 0.0) {
      for (int i = 0; i < inst.num_queries; ++i) {
        const int j = per_query.model_of_query[i];
        if (j == kUnserved) continue;
        for (int k = 0; k < inst.num_models; ++k) {
          if (inst.is_allowed(i, k) && inst.value[inst.index(i, k)] > inst.value[inst.index(i, j)]) {
            ++guard_changed_something;
            k = inst.num_models;
            i = inst.num_queries;
          }
        }
      }
    }
  }
  // The random instances do exercise the interesting paths.
  EXPECT_GT(with_unserved, 10);
  EXPECT_GT(guard_changed_something, 10);
}

TEST(HeuristicPoliciesTest, PerQueryIsThePlainArgmaxWhenNothingBinds) {
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    const RandomInstanceOptions o = {.num_queries = 20,
                                     .num_models = 2 + static_cast<int>(seed % 5),
                                     .num_limited = 0,
                                     .budget_fraction = -1,
                                     .disallow_probability = seed % 2 == 0 ? 0.4 : 0.0,
                                     .seed = seed};
    const Instance inst = BuildInstance(RandomProblem(o), ValueSource::kQuality);
    const Admission adm = AdmitQueries(inst);
    const double lambda = 1000.0 * static_cast<double>(seed % 7);
    const double tau = 0.1 * static_cast<double>(seed % 10);
    const Solution pq = SolvePerQuery(inst, adm, lambda);
    const Solution th = SolveThreshold(inst, adm, tau);
    for (int i = 0; i < inst.num_queries; ++i) {
      int best = -1, cheapest_above = -1, best_value = -1;
      for (int j = 0; j < inst.num_models; ++j) {
        if (!inst.is_allowed(i, j)) continue;
        const double v = inst.value[inst.index(i, j)], c = inst.cost[inst.index(i, j)];
        if (best < 0 || v - lambda * c > inst.value[inst.index(i, best)] -
                                              lambda * inst.cost[inst.index(i, best)]) {
          best = j;
        }
        if (best_value < 0 || v > inst.value[inst.index(i, best_value)]) best_value = j;
        if (v >= tau && (cheapest_above < 0 || c < inst.cost[inst.index(i, cheapest_above)])) {
          cheapest_above = j;
        }
      }
      // Compare by score, not index, so exact ties cannot make the test flaky.
      const int got = pq.model_of_query[i];
      EXPECT_DOUBLE_EQ(inst.value[inst.index(i, got)] - lambda * inst.cost[inst.index(i, got)],
                       inst.value[inst.index(i, best)] - lambda * inst.cost[inst.index(i, best)])
          << "seed " << seed << " query " << i;
      const int got_th = th.model_of_query[i];
      if (cheapest_above >= 0) {
        EXPECT_EQ(inst.cost[inst.index(i, got_th)], inst.cost[inst.index(i, cheapest_above)])
            << "seed " << seed << " query " << i;
        EXPECT_GE(inst.value[inst.index(i, got_th)], tau) << "seed " << seed << " query " << i;
      } else {
        EXPECT_EQ(inst.value[inst.index(i, got_th)], inst.value[inst.index(i, best_value)])
            << "seed " << seed << " query " << i;
      }
    }
  }
}

// Models: 0 cheap (cost 1, value 0.5), 1 mid (cost 2, value 0.7), 2 best (cost 5, value 0.9).
Instance ThreeTiers(double budget) {
  return Uniform(3, {0.5, 0.7, 0.9}, {1.0, 2.0, 5.0}, {kUnlimited, kUnlimited, kUnlimited}, budget);
}

// ThreeTiers(100.0), a budget that never binds, and its admission.
class HeuristicPoliciesOnThreeTiersTest : public ::testing::Test {
 protected:
  const Instance inst = ThreeTiers(100.0);
  const Admission adm = AdmitQueries(inst);
};

TEST_F(HeuristicPoliciesOnThreeTiersTest, PerQueryLambdaZeroPicksTheBestModelWhenTheBudgetAllows) {
  EXPECT_THAT(SolvePerQuery(inst, adm, 0.0).model_of_query, ElementsAre(2, 2, 2));
  // A moderate lambda: 0.7 - 0.1*2 = 0.5 > 0.9 - 0.1*5 = 0.4 > 0.5 - 0.1 = 0.4 (tie: lower cost).
  EXPECT_THAT(SolvePerQuery(inst, adm, 0.1).model_of_query, ElementsAre(1, 1, 1));
  EXPECT_THAT(SolvePerQuery(inst, adm, 1e9).model_of_query, ElementsAre(0, 0, 0));
}

TEST(HeuristicPoliciesTest, PerQueryTiesGoToTheCheaperModel) {
  const Instance inst =
      Uniform(2, {0.8, 0.8, 0.8}, {3.0, 1.0, 1.0}, {kUnlimited, kUnlimited, kUnlimited}, kInf);
  const Admission adm = AdmitQueries(inst);
  // Equal value and lambda = 0: the cheaper model, then the lower index.
  EXPECT_THAT(SolvePerQuery(inst, adm, 0.0).model_of_query, ElementsAre(1, 1));
}

TEST(HeuristicPoliciesTest, PerQueryLambdaZeroIsHeldBackByATightBudget) {
  // Budget 8 for three queries: the best model (5) fits once; the rest must stay affordable.
  const Instance inst = ThreeTiers(8.0);
  const Solution s = SolvePerQuery(inst, AdmitQueries(inst), 0.0);
  EXPECT_THAT(CheckFeasible(inst, s.model_of_query), IsOk());
  // Query 0: 5 + 1 + 1 = 7 <= 8 takes the best; query 1: 5 + 5 + 1 > 8, 5 + 2 + 1 = 8 takes mid;
  // query 2: 7 + 5 > 8, 7 + 2 > 8, takes cheap.
  EXPECT_THAT(s.model_of_query, ElementsAre(2, 1, 0));
  EXPECT_DOUBLE_EQ(s.total_cost, 8.0);
}

TEST_F(HeuristicPoliciesOnThreeTiersTest, ThresholdPicksTheCheapestModelAboveTau) {
  EXPECT_THAT(SolveThreshold(inst, adm, 0.6).model_of_query, ElementsAre(1, 1, 1));
  EXPECT_THAT(SolveThreshold(inst, adm, 0.7).model_of_query, ElementsAre(1, 1, 1));
  EXPECT_THAT(SolveThreshold(inst, adm, 0.8).model_of_query, ElementsAre(2, 2, 2));
  EXPECT_THAT(SolveThreshold(inst, adm, 0.0).model_of_query, ElementsAre(0, 0, 0));
}

TEST_F(HeuristicPoliciesOnThreeTiersTest, ThresholdFallsBackToTheBestValueWhenNoneReachesTau) {
  EXPECT_THAT(SolveThreshold(inst, adm, 0.95).model_of_query, ElementsAre(2, 2, 2));
  // Per query: query 1 has a model above tau, query 0 does not.
  const Instance mixed = MakeInstance({{0.5, 0.6, 0.4}, {0.5, 0.96, 0.97}}, {{1, 2, 5}, {1, 2, 5}},
                                      {kUnlimited, kUnlimited, kUnlimited}, kInf);
  EXPECT_THAT(SolveThreshold(mixed, AdmitQueries(mixed), 0.95).model_of_query, ElementsAre(1, 1));
}

TEST(HeuristicPoliciesTest, ThresholdCostTiesGoToTheHigherValue) {
  const Instance inst =
      Uniform(1, {0.75, 0.9, 0.99}, {2.0, 2.0, 5.0}, {kUnlimited, kUnlimited, kUnlimited}, kInf);
  EXPECT_THAT(SolveThreshold(inst, AdmitQueries(inst), 0.7).model_of_query, ElementsAre(1));
}

TEST(HeuristicPoliciesTest, GuardRefusesAnEarlyExpensiveChoiceThatWouldStrandLaterQueries) {
  // Model 0 cheap (cost 1), model 1 dear. Budget 11. Query 0's dear model costs 10.5: taking it
  // leaves 0.5 for query 1, which cannot pay even its cheap model (1). A guard-free greedy would
  // take it and break the budget; the guard refuses it, and query 1 gets the dear model instead.
  const Instance inst =
      MakeInstance({{0.5, 0.9}, {0.5, 0.9}}, {{1.0, 10.5}, {1.0, 10.0}}, {kUnlimited, kUnlimited},
                   11.0);
  const Admission adm = AdmitQueries(inst);
  ASSERT_THAT(adm.fallback, ElementsAre(0, 0));
  for (const Solution& s : {SolvePerQuery(inst, adm, 0.0), SolveThreshold(inst, adm, 0.8)}) {
    EXPECT_THAT(s.model_of_query, ElementsAre(0, 1)) << s.method;
    EXPECT_DOUBLE_EQ(s.total_cost, 11.0);
    EXPECT_THAT(CheckFeasible(inst, s.model_of_query), IsOk());
  }
}

TEST(HeuristicPoliciesTest, GuardKeepsASlotForALaterQueryThatNeedsIt) {
  // Model 0 is self-hosted with one slot and the best; query 1 may only use it.
  const Instance inst = MakeInstance({{0.9, 0.5}, {0.9, 0.5}}, {{0.0, 1.0}, {0.0, 1.0}}, {1, kUnlimited},
                                     kInf, {{1, 1}, {1, 0}});
  const Admission adm = AdmitQueries(inst);
  ASSERT_THAT(adm.fallback, ElementsAre(1, 0));
  EXPECT_THAT(SolvePerQuery(inst, adm, 0.0).model_of_query, ElementsAre(1, 0));
  EXPECT_THAT(SolveThreshold(inst, adm, 0.8).model_of_query, ElementsAre(1, 0));
  EXPECT_THAT(SolveNdch(inst, adm, 7).model_of_query, ElementsAre(1, 0));
  EXPECT_THAT(SolveNdchP(inst, adm).model_of_query, ElementsAre(1, 0));
}

TEST(HeuristicPoliciesTest, GuardUsesAHandMadeFallbackAsGiven) {
  // The guard relies only on the fallback being feasible, not on it being the cheapest.
  const Instance inst =
      MakeInstance({{0.5, 0.9, 0.6}, {0.5, 0.9, 0.6}, {0.5, 0.9, 0.6}},
                   {{1, 4, 2}, {1, 4, 2}, {1, 4, 2}}, {kUnlimited, kUnlimited, kUnlimited}, 7.0);
  Admission adm;
  adm.fallback = {2, 2, kUnserved};
  adm.reason = {UnservedReason::kNoSlot, UnservedReason::kNoSlot, UnservedReason::kNoBudget};
  adm.served = {0, 1};
  adm.fallback_cost = 4.0;
  const Solution s = SolvePerQuery(inst, adm, 0.0);
  // Query 0: 4 + 2 (query 1's fallback) <= 7 takes model 1; query 1: 4 + 4 > 7, then model 2
  // (0.6, its fallback) comes before model 0 (0.5) by value.
  EXPECT_THAT(s.model_of_query, ElementsAre(1, 2, kUnserved));
  EXPECT_EQ(s.unserved_reason[2], UnservedReason::kNoBudget);
  EXPECT_THAT(CheckFeasible(inst, s.model_of_query), IsOk());
}

TEST(HeuristicPoliciesTest, UnservedQueriesStayUnservedWithTheAdmissionReason) {
  // One slot-only model with one slot and two queries that may only use it; an API model too
  // expensive for the budget.
  const Instance inst = MakeInstance({{0.9, 0.5}, {0.9, 0.5}, {0.2, 0.8}}, {{0, 5}, {0, 5}, {0, 5}},
                                     {1, kUnlimited}, 4.0, {{1, 0}, {1, 0}, {0, 1}});
  const Admission adm = AdmitQueries(inst);
  for (const Solution& s : {SolvePerQuery(inst, adm, 0.0), SolveThreshold(inst, adm, 0.5),
                            SolveNdch(inst, adm, 3), SolveNdchP(inst, adm)}) {
    ExpectWellFormed(inst, adm, s, s.method, "hand-made");
    EXPECT_EQ(std::count(s.model_of_query.begin(), s.model_of_query.end(), kUnserved), 2);
    EXPECT_EQ(s.model_of_query[2], kUnserved);
    EXPECT_EQ(s.unserved_reason[2], UnservedReason::kNoBudget);
  }
}

// Ten queries. Model 0 "A": cost 1, value 0.5. Model 1 "B": cost 3, mean value 0.8 (per query
// 0.8 + delta_i, the deltas sum to 0). Model 2: cost 2, value 0.55, below the chord A-B (0.65).
// Model 3: cost 4, value 0.7, dominated by B. The hull is {A, B}.
Instance HullInstance(double budget, const std::vector<double>& delta) {
  std::vector<std::vector<double>> value, cost;
  for (double d : delta) {
    value.push_back({0.5, 0.8 + d, 0.55, 0.7});
    cost.push_back({1.0, 3.0, 2.0, 4.0});
  }
  return MakeInstance(value, cost, {kUnlimited, kUnlimited, kUnlimited, kUnlimited}, budget);
}

const std::vector<double> kDelta = {-0.1, 0.05, 0.1, -0.05, 0.0, 0.15, -0.15, 0.02, -0.02, 0.0};

TEST(HeuristicPoliciesTest, NdchMixesTheTwoHullModelsInTheBudgetRatio) {
  // Budget 16: b = 1.6, f = (1.6 - 1) / (3 - 1) = 0.3: three queries to B, seven to A.
  const Instance inst = HullInstance(16.0, kDelta);
  const Admission adm = AdmitQueries(inst);
  std::set<std::vector<int>> distinct;
  std::vector<int> times_high(10, 0);
  for (uint64_t seed = 0; seed < 200; ++seed) {
    const Solution s = SolveNdch(inst, adm, seed);
    ExpectWellFormed(inst, adm, s, "ndch", "seed " + std::to_string(seed));
    ASSERT_EQ(CountModel(s, 1), 3) << "seed " << seed;
    ASSERT_EQ(CountModel(s, 0), 7) << "seed " << seed;
    EXPECT_DOUBLE_EQ(s.total_cost, 16.0);
    distinct.insert(s.model_of_query);
    for (int i = 0; i < 10; ++i) times_high[i] += s.model_of_query[i] == 1;
  }
  // A random split: many different subsets, and every query gets B sometimes (expected 60 / 200).
  EXPECT_GT(distinct.size(), 50u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_GT(times_high[i], 30) << "query " << i;
    EXPECT_LT(times_high[i], 90) << "query " << i;
  }
}

TEST(HeuristicPoliciesTest, NdchIsDeterministicForAFixedSeed) {
  const Instance inst = HullInstance(16.0, kDelta);
  const Admission adm = AdmitQueries(inst);
  for (uint64_t seed : {0ull, 1ull, 42ull, 0xdeadbeefull}) {
    EXPECT_EQ(SolveNdch(inst, adm, seed).model_of_query, SolveNdch(inst, adm, seed).model_of_query);
  }
  std::mt19937_64 rng(5);
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    const Instance r = BuildInstance(RandomProblem(RandomOptions(rng, seed)), ValueSource::kQuality);
    const Admission a = AdmitQueries(r);
    const uint64_t s = rng();
    EXPECT_EQ(SolveNdch(r, a, s).model_of_query, SolveNdch(r, a, s).model_of_query);
    EXPECT_EQ(SolveNdchP(r, a).model_of_query, SolveNdchP(r, a).model_of_query);
    EXPECT_EQ(SolvePerQuery(r, a, 3.0).model_of_query, SolvePerQuery(r, a, 3.0).model_of_query);
    EXPECT_EQ(SolveThreshold(r, a, 0.5).model_of_query, SolveThreshold(r, a, 0.5).model_of_query);
  }
}

TEST(HeuristicPoliciesTest, NdchUsesASingleVertexOutsideTheHullRange) {
  const std::vector<int> all_a(10, 0), all_b(10, 1);
  {
    const Instance inst = HullInstance(kInf, kDelta);  // no budget: the highest-value vertex
    EXPECT_EQ(SolveNdch(inst, AdmitQueries(inst), 1).model_of_query, all_b);
    EXPECT_EQ(SolveNdchP(inst, AdmitQueries(inst)).model_of_query, all_b);
  }
  {
    const Instance inst = HullInstance(30.0, kDelta);  // b = 3: the dearest vertex
    EXPECT_EQ(SolveNdch(inst, AdmitQueries(inst), 1).model_of_query, all_b);
    EXPECT_EQ(SolveNdchP(inst, AdmitQueries(inst)).model_of_query, all_b);
  }
  {
    const Instance inst = HullInstance(10.0, kDelta);  // b = 1: the cheapest vertex
    EXPECT_EQ(SolveNdch(inst, AdmitQueries(inst), 1).model_of_query, all_a);
    EXPECT_EQ(SolveNdchP(inst, AdmitQueries(inst)).model_of_query, all_a);
  }
}

TEST(HeuristicPoliciesTest, NdchFindsTheSegmentAroundTheBudgetOnALongerHull) {
  // Hull A (1, 0.5), B (3, 0.8), E (6, 0.9); b = 4.5 lies between B and E: f = 0.5.
  std::vector<std::vector<double>> value(10, {0.5, 0.8, 0.9}), cost(10, {1.0, 3.0, 6.0});
  const Instance inst =
      MakeInstance(value, cost, {kUnlimited, kUnlimited, kUnlimited}, 45.0);
  const Admission adm = AdmitQueries(inst);
  const Solution s = SolveNdch(inst, adm, 11);
  EXPECT_EQ(CountModel(s, 2), 5);
  EXPECT_EQ(CountModel(s, 1), 5);
  EXPECT_DOUBLE_EQ(s.total_cost, 45.0);
  const Solution p = SolveNdchP(inst, adm);
  // All gains equal: ties by index, the first five queries get E.
  EXPECT_THAT(p.model_of_query, ElementsAre(2, 2, 2, 2, 2, 1, 1, 1, 1, 1));
}

TEST(HeuristicPoliciesTest, NdchPSendsTheBiggestGainQueriesToTheDearerModel) {
  const Instance inst = HullInstance(16.0, kDelta);
  const Solution s = SolveNdchP(inst, AdmitQueries(inst));
  ExpectWellFormed(inst, AdmitQueries(inst), s, "ndch_p", "hull");
  // Gains B - A: query 5 (0.45), query 2 (0.4), query 1 (0.35) are the three largest.
  EXPECT_THAT(s.model_of_query, ElementsAreArray({0, 1, 1, 0, 0, 1, 0, 0, 0, 0}));
  // NDCH(P) beats any random split on this instance (same cost, best gains).
  for (uint64_t seed = 0; seed < 50; ++seed) {
    EXPECT_GE(s.objective + 1e-12, SolveNdch(inst, AdmitQueries(inst), seed).objective);
  }
}

TEST(HeuristicPoliciesTest, NdchQueryThatMayNotUseItsHullModelPrefersTheBestValueItMayUse) {
  // No budget: everyone's hull model is B (model 1). Query 0 may not use B: it prefers model 3
  // (0.7) over model 2 (0.55) over A (0.5). Query 1 may use A and model 2 only: model 2.
  Instance inst = HullInstance(kInf, kDelta);
  inst.allowed[inst.index(0, 1)] = 0;
  inst.allowed[inst.index(1, 1)] = 0;
  inst.allowed[inst.index(1, 3)] = 0;
  const Admission adm = AdmitQueries(inst);
  for (const Solution& s : {SolveNdch(inst, adm, 2), SolveNdchP(inst, adm)}) {
    EXPECT_EQ(s.model_of_query[0], 3) << s.method;
    EXPECT_EQ(s.model_of_query[1], 2) << s.method;
    for (int i = 2; i < 10; ++i) EXPECT_EQ(s.model_of_query[i], 1) << s.method;
  }
}

TEST(HeuristicPoliciesTest, NdchSecondPreferencesAreByAscendingCost) {
  // No budget, so everyone's hull model is B (model 1), but B has two slots: the first two queries
  // get it, the others the cheapest other model, A.
  Instance inst = HullInstance(kInf, kDelta);
  inst.slots[1] = 2;
  const Admission adm = AdmitQueries(inst);
  const Solution s = SolveNdch(inst, adm, 9);
  ExpectWellFormed(inst, adm, s, "ndch", "two slots");
  EXPECT_THAT(s.model_of_query, ElementsAreArray({1, 1, 0, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(HeuristicPoliciesTest, EmptyAndFullyUnservedBatches) {
  Instance empty = Uniform(0, {0.5}, {1.0}, {kUnlimited}, 1.0);
  const Admission adm = AdmitQueries(empty);
  EXPECT_TRUE(SolvePerQuery(empty, adm, 0.0).model_of_query.empty());
  EXPECT_TRUE(SolveNdch(empty, adm, 0).model_of_query.empty());
  EXPECT_TRUE(SolveNdchP(empty, adm).model_of_query.empty());
  EXPECT_TRUE(SolveThreshold(empty, adm, 0.5).model_of_query.empty());

  const Instance broke = Uniform(3, {0.5, 0.9}, {1.0, 2.0}, {kUnlimited, kUnlimited}, 0.5);
  const Admission none = AdmitQueries(broke);
  for (const Solution& s : {SolvePerQuery(broke, none, 0.0), SolveThreshold(broke, none, 0.5),
                            SolveNdch(broke, none, 0), SolveNdchP(broke, none)}) {
    ExpectWellFormed(broke, none, s, s.method, "nothing affordable");
    EXPECT_THAT(s.model_of_query, ElementsAre(kUnserved, kUnserved, kUnserved));
    EXPECT_EQ(s.objective, 0.0);
  }
}

}  // namespace
}  // namespace router::core
