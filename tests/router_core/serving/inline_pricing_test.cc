#include "router_core/serving/inline_pricing.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace router::core {
namespace {

using ::testing::ElementsAre;

constexpr double kInf = std::numeric_limits<double>::infinity();

// Brute force: index into q.models of the best score a - lambda c - mu (ties: cheaper, then
// lower index), or -1.
int BruteChoice(const PricedQuery& q, double lambda, const std::vector<double>& mu) {
  int best = -1;
  double best_score = -kInf;
  for (size_t k = 0; k < q.models.size(); ++k) {
    if (std::isinf(mu[q.models[k]])) continue;
    const double score = q.quality[k] - lambda * q.cost[k] - mu[q.models[k]];
    if (best < 0 || score > best_score || (score == best_score && q.cost[k] < q.cost[best])) {
      best = static_cast<int>(k);
      best_score = score;
    }
  }
  return best;
}

double BruteSpend(const std::vector<WeightedQuery>& qs, double lambda, const std::vector<double>& mu) {
  double spend = 0;
  for (const WeightedQuery& wq : qs) {
    const int k = BruteChoice(*wq.query, lambda, mu);
    if (k >= 0) spend += wq.weight * wq.query->cost[k];
  }
  return spend;
}

std::vector<PricedQuery> RandomQueries(std::mt19937_64& rng, int n, int m) {
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<PricedQuery> out;
  for (int i = 0; i < n; ++i) {
    std::vector<double> quality(m), cost(m);
    std::vector<uint8_t> allowed(m, 1);
    for (int j = 0; j < m; ++j) {
      quality[j] = std::min(1.0, 0.3 + 0.6 * j / m + 0.2 * u(rng));
      cost[j] = j == 0 ? 0.0 : 0.001 * std::pow(1.6, j) * (0.5 + u(rng));
      if (u(rng) < 0.15) allowed[j] = 0;
    }
    allowed[m - 1] = 1;
    out.push_back(MakePricedQuery(quality, cost, allowed));
  }
  return out;
}

TEST(InlinePricingTest, HullHoldsExactlyTheModelsSomeLambdaPrefers) {
  const PricedQuery q = MakePricedQuery({0.5, 0.4, 0.7, 0.72, 0.9, 0.9}, {0.0, 0.001, 0.002, 0.01, 0.02, 0.03},
                                        {1, 1, 1, 1, 1, 1});
  // 0.4 @ 0.001 is dominated; 0.72 @ 0.01 lies below the chord (0.002, 0.7)-(0.02, 0.9); 0.9 @
  // 0.03 is dominated by 0.9 @ 0.02.
  EXPECT_THAT(q.hull, ElementsAre(0, 2, 4));
  EXPECT_EQ(q.cheapest_cost, 0.0);
  std::mt19937_64 rng(1);
  for (const PricedQuery& r : RandomQueries(rng, 200, 12)) {
    std::vector<char> on_hull(r.models.size(), 0);
    for (int k : r.hull) on_hull[k] = 1;
    for (double lambda = 0; lambda < 1e4; lambda = lambda * 1.3 + 0.01) {
      const int k = BruteChoice(r, lambda, std::vector<double>(12, 0.0));
      ASSERT_GE(k, 0);
      EXPECT_TRUE(on_hull[k]) << "lambda " << lambda;
    }
  }
}

TEST(InlinePricingTest, LambdaIsTheSmallestPriceWhoseSpendFits) {
  std::mt19937_64 rng(2);
  for (int trial = 0; trial < 50; ++trial) {
    const std::vector<PricedQuery> qs = RandomQueries(rng, 60, 10);
    std::vector<WeightedQuery> weighted;
    for (size_t i = 0; i < qs.size(); ++i) weighted.push_back({&qs[i], i == 0 ? 1.0 : 1.7});
    const std::vector<double> free(10, kInf), no_mu(10, 0.0);
    const double dearest = BruteSpend(weighted, 0.0, no_mu);
    const double budget = dearest * (0.05 + 0.9 * trial / 50.0);
    const Prices p = SolvePrices(weighted, free, budget, PricingOptions());
    ASSERT_GT(p.lambda, 0.0);
    EXPECT_LE(BruteSpend(weighted, p.lambda, no_mu), budget) << trial;
    EXPECT_GT(BruteSpend(weighted, p.lambda * (1 - 1e-6), no_mu), budget) << trial;
  }
}

TEST(InlinePricingTest, NoBudgetOrASlackOneGivesZeroPrice) {
  std::mt19937_64 rng(3);
  const std::vector<PricedQuery> qs = RandomQueries(rng, 20, 6);
  std::vector<WeightedQuery> weighted;
  for (const PricedQuery& q : qs) weighted.push_back({&q, 1.0});
  const std::vector<double> free(6, kInf);
  EXPECT_EQ(SolvePrices(weighted, free, kInf, PricingOptions()).lambda, 0.0);
  EXPECT_EQ(SolvePrices(weighted, free, 1e9, PricingOptions()).lambda, 0.0);
}

TEST(InlinePricingTest, SlotPricesFitTheDemandIntoFreeSlots) {
  std::mt19937_64 rng(4);
  for (int trial = 0; trial < 30; ++trial) {
    const std::vector<PricedQuery> qs = RandomQueries(rng, 80, 8);
    std::vector<WeightedQuery> weighted;
    for (const PricedQuery& q : qs) weighted.push_back({&q, 1.0});
    // Model 0 (free) and model 7 (best) have few slots; model 5 none.
    std::vector<double> free(8, kInf);
    free[0] = 10;
    free[7] = 5;
    free[5] = 0;
    PricingOptions o;
    o.slot_price_rounds = 10;
    const Prices p = SolvePrices(weighted, free, kInf, o);
    EXPECT_TRUE(std::isinf(p.mu[5]));
    std::vector<double> demand(8, 0.0);
    for (const WeightedQuery& wq : weighted) {
      const int k = BruteChoice(*wq.query, p.lambda, p.mu);
      ASSERT_GE(k, 0);
      demand[wq.query->models[k]] += wq.weight;
    }
    EXPECT_EQ(demand[5], 0.0);
    EXPECT_LE(demand[0], 10.0) << trial;
    EXPECT_LE(demand[7], 5.0) << trial;
    EXPECT_GT(p.mu[7], 0.0);
  }
}

// Pricing queries without the full models (as the inline router's forecast does) gives exactly
// the prices of pricing them whole with those models at zero free slots, binding slots and budget
// included.
TEST(InlinePricingTest, QueriesWithoutTheFullModelsPriceTheSame) {
  std::mt19937_64 rng(6);
  std::uniform_real_distribution<double> u(0, 1);
  for (int trial = 0; trial < 40; ++trial) {
    const std::vector<PricedQuery> qs = RandomQueries(rng, 60, 8);
    std::vector<double> free(8, kInf);
    std::vector<char> full(8, 0);
    for (int j = 0; j < 8; ++j) {
      const double r = u(rng);
      if (r < 0.25)
        free[j] = 0.0, full[j] = 1;
      else if (r < 0.5)
        free[j] = std::floor(20 * u(rng)) + 1;
    }
    std::vector<PricedQuery> reduced(qs.size());
    std::vector<WeightedQuery> whole, without;
    for (size_t i = 0; i < qs.size(); ++i) {
      WithoutModels(qs[i], full, reduced[i]);
      for (const int j : reduced[i].models) EXPECT_FALSE(full[j]);
      const double w = 0.5 + u(rng);
      whole.push_back({&qs[i], w});
      without.push_back({&reduced[i], w});
    }
    const double budget = trial % 4 == 0 ? kInf : 0.2 + 2.0 * u(rng);
    PricingOptions o;
    o.slot_price_rounds = 5;
    const Prices a = SolvePrices(whole, free, budget, o);
    const Prices b = SolvePrices(without, free, budget, o);
    EXPECT_EQ(a.lambda, b.lambda) << trial;
    EXPECT_EQ(a.mu, b.mu) << trial;
  }
}

TEST(InlinePricingTest, WithoutSlotRoundsSlotsAreNotPricedButFullModelsAreOut) {
  std::mt19937_64 rng(5);
  const std::vector<PricedQuery> qs = RandomQueries(rng, 30, 5);
  std::vector<WeightedQuery> weighted;
  for (const PricedQuery& q : qs) weighted.push_back({&q, 1.0});
  PricingOptions o;
  o.slot_price_rounds = 0;
  const Prices p = SolvePrices(weighted, {kInf, 0.0, kInf, 2.0, kInf}, kInf, o);
  EXPECT_THAT(p.mu, ElementsAre(0.0, kInf, 0.0, 0.0, 0.0));
}

}  // namespace
}  // namespace router::core
