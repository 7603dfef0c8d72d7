#include "router_core/learn/outcome_learner.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/estimate/beta_distribution.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

OutcomeLearnerOptions NoExploration() {
  OutcomeLearnerOptions o;
  o.exploration = 0.0;
  return o;
}

std::unique_ptr<OutcomeLearner> Make(const OutcomeLearnerOptions& options) {
  absl::StatusOr<std::unique_ptr<OutcomeLearner>> learner = OutcomeLearner::Create(options);
  EXPECT_THAT(learner, IsOk());
  return *std::move(learner);
}

// One query's predictions for `models`, adjusted.
struct Adjusted {
  std::vector<double> quality, lower;
  bool explored = false;
};
Adjusted AdjustOne(const OutcomeLearner& learner, const std::vector<std::string>& models,
                   int cluster, std::vector<double> quality, std::vector<double> lower,
                   std::mt19937_64& rng) {
  Adjusted a{std::move(quality), std::move(lower), false};
  a.explored = learner.Adjust(models, cluster, absl::MakeSpan(a.quality), absl::MakeSpan(a.lower),
                              rng);
  return a;
}

double Decay(double half_life) { return std::exp2(-1.0 / half_life); }

TEST(OutcomeLearnerOptionsTest, EveryOutOfRangeOptionIsNamed) {
  EXPECT_THAT(ValidateOutcomeLearnerOptions(OutcomeLearnerOptions()), IsOk());
  auto with = [](auto set) {
    OutcomeLearnerOptions o;
    set(o);
    return OutcomeLearner::Create(o).status();
  };
  EXPECT_THAT(with([](auto& o) { o.half_life_outcomes = 0; }), InvalidNaming("half_life_outcomes"));
  EXPECT_THAT(with([](auto& o) { o.half_life_outcomes = INFINITY; }),
              InvalidNaming("half_life_outcomes"));
  EXPECT_THAT(with([](auto& o) { o.prior_strength = -1; }), InvalidNaming("prior_strength"));
  EXPECT_THAT(with([](auto& o) { o.cold_start_quality = 1.5; }),
              InvalidNaming("cold_start_quality"));
  EXPECT_THAT(with([](auto& o) { o.cold_start_quality = NAN; }),
              InvalidNaming("cold_start_quality"));
  EXPECT_THAT(with([](auto& o) { o.cold_start_strength = 0; }),
              InvalidNaming("cold_start_strength"));
  EXPECT_THAT(with([](auto& o) { o.lower_quantile = 0; }), InvalidNaming("lower_quantile"));
  EXPECT_THAT(with([](auto& o) { o.lower_quantile = 0.6; }), InvalidNaming("lower_quantile"));
  EXPECT_THAT(with([](auto& o) { o.exploration = -0.1; }), InvalidNaming("exploration"));
  EXPECT_THAT(with([](auto& o) { o.max_cells = 0; }), InvalidNaming("max_cells"));
}

TEST(OutcomeLearnerTest, RecordRefusesBadInputNamingIt) {
  auto learner = Make(NoExploration());
  EXPECT_THAT(learner->Record("a", 0, 0.5, 1.5), InvalidNaming("score"));
  EXPECT_THAT(learner->Record("a", 0, 0.5, NAN), InvalidNaming("score"));
  EXPECT_THAT(learner->Record("a", 0, -0.1, 1), InvalidNaming("prior_quality"));
  EXPECT_THAT(learner->Record("a", 0, INFINITY, 1), InvalidNaming("prior_quality"));
  EXPECT_THAT(learner->Record("a", -1, 0.5, 1), InvalidNaming("cluster"));
  EXPECT_THAT(learner->Record("", 0, 0.5, 1), InvalidNaming("model"));
  EXPECT_EQ(learner->num_cells(), 0);
  // Unknown models and clusters are fine: their cells are created.
  EXPECT_THAT(learner->Record("never-heard-of", 12345, 0.5, 1), IsOk());
  EXPECT_EQ(learner->num_cells(), 1);
}

TEST(OutcomeLearnerTest, WithoutOutcomesTheEstimatorsPredictionsAreUntouched) {
  auto learner = Make(NoExploration());
  std::mt19937_64 rng(1);
  const Adjusted a = AdjustOne(*learner, {"a", "b"}, 3, {0.7, 0.2}, {0.6, 0.1}, rng);
  EXPECT_EQ(a.quality, (std::vector<double>{0.7, 0.2}));
  EXPECT_EQ(a.lower, (std::vector<double>{0.6, 0.1}));
  EXPECT_FALSE(a.explored);
}

TEST(OutcomeLearnerTest, ShiftMovesTheCellTowardWhatWasObserved) {
  OutcomeLearnerOptions o = NoExploration();
  o.prior_strength = 10;
  o.half_life_outcomes = 100;
  auto learner = Make(o);
  // Model "a" in cluster 3 was predicted 0.8 and failed 40 times.
  for (int i = 0; i < 40; ++i) ASSERT_THAT(learner->Record("a", 3, 0.8, 0.0), IsOk());
  const double d = Decay(100);
  const double w = (1 - std::pow(d, 40)) / (1 - d);
  const double shift = -0.8 * w / (10 + w);
  std::mt19937_64 rng(1);
  // A query of cluster 3 whose prior says 0.7 for "a": 0.7 + shift; "b" is untouched.
  const Adjusted a = AdjustOne(*learner, {"a", "b"}, 3, {0.7, 0.6}, {0.65, 0.5}, rng);
  EXPECT_NEAR(a.quality[0], 0.7 + shift, 1e-12);
  EXPECT_LT(a.quality[0], 0.2);
  EXPECT_EQ(a.quality[1], 0.6);
  EXPECT_EQ(a.lower[1], 0.5);
  // Its bound is the posterior's 10th percentile: Beta(q n, (1 - q) n), n = m + W.
  const double n = 10 + w;
  absl::StatusOr<double> exact = BetaQuantile(0.1, a.quality[0] * n, (1 - a.quality[0]) * n);
  ASSERT_THAT(exact, IsOk());
  EXPECT_NEAR(a.lower[0], *exact, 2e-3);
  // Another cluster keeps the prior.
  const Adjusted other = AdjustOne(*learner, {"a"}, 4, {0.7}, {0.65}, rng);
  EXPECT_EQ(other.quality[0], 0.7);
  // Successes push it back up, past the prior when they outnumber the failures.
  for (int i = 0; i < 200; ++i) ASSERT_THAT(learner->Record("a", 3, 0.5, 1.0), IsOk());
  const Adjusted up = AdjustOne(*learner, {"a"}, 3, {0.7}, {0.65}, rng);
  EXPECT_GT(up.quality[0], 0.7);
  const std::vector<OutcomeCell> cells = learner->Cells();
  ASSERT_EQ(cells.size(), 1u);
  EXPECT_EQ(cells[0].model, "a");
  EXPECT_EQ(cells[0].cluster, 3);
  EXPECT_EQ(cells[0].outcomes, 240);
  EXPECT_NEAR(up.quality[0], std::min(1.0, 0.7 + cells[0].learned_shift), 1e-12);
  EXPECT_GT(cells[0].observed_mean, cells[0].prior_mean);
}

TEST(OutcomeLearnerTest, OldEvidenceHalvesAfterHalfLifeNewerOutcomes) {
  OutcomeLearnerOptions o = NoExploration();
  o.half_life_outcomes = 20;
  o.prior_strength = 5;
  auto learner = Make(o);
  // One surprising success (residual +1), then 20 outcomes exactly as predicted (residual 0).
  ASSERT_THAT(learner->Record("a", 0, 0.0, 1.0), IsOk());
  for (int i = 0; i < 20; ++i) ASSERT_THAT(learner->Record("a", 0, 0.5, 0.5), IsOk());
  std::vector<OutcomeCell> cells = learner->Cells();
  ASSERT_EQ(cells.size(), 1u);
  const double d = Decay(20);
  const double w = (1 - std::pow(d, 21)) / (1 - d);
  EXPECT_NEAR(cells[0].weight, w, 1e-9);
  // The residual left is the first outcome's, halved: 0.5.
  EXPECT_NEAR(cells[0].learned_shift * (5 + w), 0.5, 1e-9);
  // Weight saturates near half_life / ln 2 however many outcomes arrive.
  for (int i = 0; i < 2000; ++i) ASSERT_THAT(learner->Record("a", 0, 0.5, 0.5), IsOk());
  cells = learner->Cells();
  EXPECT_NEAR(cells[0].weight, 1 / (1 - d), 1e-6);
  EXPECT_NEAR(cells[0].learned_shift, 0.0, 1e-9);
}

TEST(OutcomeLearnerTest, BoundTightensWithEvidence) {
  auto learner = Make(NoExploration());
  std::mt19937_64 rng(1);
  std::vector<double> gaps;
  for (int round = 0; round < 4; ++round) {
    const Adjusted a = AdjustOne(*learner, {"a"}, 0, {0.6}, {0.0}, rng);
    if (round > 0) gaps.push_back(a.quality[0] - a.lower[0]);
    for (int i = 0; i < 30; ++i) {
      ASSERT_THAT(learner->Record("a", 0, 0.6, i % 5 < 3 ? 1.0 : 0.0), IsOk());
    }
  }
  ASSERT_EQ(gaps.size(), 3u);
  EXPECT_GT(gaps[0], gaps[1]);
  EXPECT_GT(gaps[1], gaps[2]);
  EXPECT_GT(gaps[2], 0.0);
}

TEST(OutcomeLearnerTest, ColdStartModelStartsFromTheStatedPriorAndLearns) {
  OutcomeLearnerOptions o = NoExploration();
  o.cold_start_quality = 0.4;
  o.cold_start_strength = 2;
  auto learner = Make(o);
  learner->MarkColdStart("new", true);
  EXPECT_TRUE(learner->IsColdStart("new"));
  std::mt19937_64 rng(1);
  // Whatever the caller put in its column, the cold-start prior is used.
  Adjusted a = AdjustOne(*learner, {"old", "new"}, 5, {0.7, 0.99}, {0.6, 0.99}, rng);
  EXPECT_EQ(a.quality[0], 0.7);
  EXPECT_NEAR(a.quality[1], 0.4, 1e-12);
  absl::StatusOr<double> exact = BetaQuantile(0.1, 0.8, 1.2);
  ASSERT_THAT(exact, IsOk());
  EXPECT_NEAR(a.lower[1], *exact, 2e-3);
  // Its outcomes count against the baseline its column carried (0.99 here, then as now).
  for (int i = 0; i < 30; ++i) ASSERT_THAT(learner->Record("new", 5, 0.99, 1.0), IsOk());
  a = AdjustOne(*learner, {"old", "new"}, 5, {0.7, 0.99}, {0.6, 0.0}, rng);
  EXPECT_GT(a.quality[1], 0.9);
  EXPECT_GT(a.lower[1], 0.8);
  // Clearing the mark drops its cells: they were measured against the cold prior.
  EXPECT_EQ(learner->num_cells(), 1);
  learner->MarkColdStart("new", true);  // no change, cells kept
  EXPECT_EQ(learner->num_cells(), 1);
  learner->MarkColdStart("new", false);
  EXPECT_FALSE(learner->IsColdStart("new"));
  EXPECT_EQ(learner->num_cells(), 0);
}

TEST(OutcomeLearnerTest, ColdStartCellsShareTheModelsPooledRecord) {
  OutcomeLearnerOptions o = NoExploration();
  o.cold_start_quality = 0.5;
  o.cold_start_strength = 2;
  auto learner = Make(o);
  learner->MarkColdStart("new", true);
  // Twenty successes in cluster 1: the model's pooled record says it is good.
  for (int i = 0; i < 20; ++i) ASSERT_THAT(learner->Record("new", 1, 0.5, 1.0), IsOk());
  const double w = learner->Cells()[0].weight;
  const double pooled = (w + 2 * 0.5) / (w + 2);
  std::mt19937_64 rng(1);
  // Cluster 7 has no outcome of its own: its prior is the pooled rate (at the same baseline).
  Adjusted a = AdjustOne(*learner, {"new"}, 7, {0.5}, {0.0}, rng);
  EXPECT_NEAR(a.quality[0], pooled, 1e-12);
  EXPECT_GT(a.quality[0], 0.9);
  // Cluster 1's own record is added to it.
  a = AdjustOne(*learner, {"new"}, 1, {0.5}, {0.0}, rng);
  EXPECT_NEAR(a.quality[0], (2 * pooled + w) / (2 + w), 1e-12);
  EXPECT_NEAR(learner->Cells()[0].learned_shift, a.quality[0] - 0.5, 1e-12);
  // Two failures in cluster 3 pull that cell down, not the others much.
  for (int i = 0; i < 2; ++i) ASSERT_THAT(learner->Record("new", 3, 0.5, 0.0), IsOk());
  const double c3 = AdjustOne(*learner, {"new"}, 3, {0.5}, {0.0}, rng).quality[0];
  const double c7 = AdjustOne(*learner, {"new"}, 7, {0.5}, {0.0}, rng).quality[0];
  EXPECT_LT(c3, c7);
  EXPECT_GT(c7, 0.85);
  // A reset cell leaves the pooled record of the others.
  EXPECT_EQ(learner->Reset("new", 1), 1);
  EXPECT_LT(AdjustOne(*learner, {"new"}, 7, {0.5}, {0.0}, rng).quality[0], 0.5);
}

TEST(OutcomeLearnerTest, ColdStartModelIsJudgedAgainstTheDifficultyOfItsQueries) {
  OutcomeLearnerOptions o = NoExploration();
  o.cold_start_strength = 1;
  auto learner = Make(o);
  learner->MarkColdStart("new", true);
  // The baseline skips cold-start models.
  const std::vector<std::string> pool = {"a", "new", "b"};
  EXPECT_DOUBLE_EQ(learner->ColdStartBaseline(pool, std::vector<double>{0.2, 0.9, 0.4}), 0.3);
  // Tried only on hard queries (the pool's baseline 0.2), it succeeds 40% of the time: 0.2 better
  // than the pool there.
  for (int i = 0; i < 200; ++i) {
    ASSERT_THAT(learner->Record("new", 0, 0.2, i % 5 < 2 ? 1.0 : 0.0), IsOk());
  }
  std::mt19937_64 rng(1);
  const double hard = AdjustOne(*learner, {"new"}, 0, {0.2}, {0.0}, rng).quality[0];
  const double easy = AdjustOne(*learner, {"new"}, 0, {0.6}, {0.0}, rng).quality[0];
  EXPECT_NEAR(hard, 0.4, 0.01);
  EXPECT_NEAR(easy, 0.8, 0.01);
}

TEST(OutcomeLearnerTest, BoundsHoldForEveryAdjustedAndExploredPrediction) {
  OutcomeLearnerOptions o;
  o.exploration = 0.3;
  o.prior_strength = 0.5;
  o.half_life_outcomes = 3;
  auto learner = Make(o);
  learner->MarkColdStart("m3", true);
  const std::vector<std::string> models = {"m0", "m1", "m2", "m3"};
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  int explored = 0;
  for (int step = 0; step < 5000; ++step) {
    const int cluster = static_cast<int>(rng() % 3);
    const int model = static_cast<int>(rng() % models.size());
    // Extreme residuals: priors and scores at 0 and 1 included.
    const double prior = step % 7 == 0 ? 1.0 : unit(rng);
    const double score = step % 3 == 0 ? unit(rng) : static_cast<double>(rng() % 2);
    ASSERT_THAT(learner->Record(models[model], cluster, prior, score), IsOk());
    std::vector<double> q(models.size()), lower(models.size());
    for (size_t j = 0; j < models.size(); ++j) {
      q[j] = step % 11 == 0 ? 0.0 : unit(rng);
      lower[j] = q[j] * unit(rng);
    }
    const Adjusted a = AdjustOne(*learner, models, cluster, q, lower, rng);
    explored += a.explored;
    for (size_t j = 0; j < models.size(); ++j) {
      ASSERT_TRUE(std::isfinite(a.quality[j]) && std::isfinite(a.lower[j]));
      ASSERT_GE(a.lower[j], 0.0);
      ASSERT_LE(a.lower[j], a.quality[j]);
      ASSERT_LE(a.quality[j], 1.0);
    }
  }
  EXPECT_GT(explored, 0);
}

TEST(OutcomeLearnerTest, ExplorationShareFollowsTheOption) {
  for (const double share : {0.0, 0.05, 0.2}) {
    OutcomeLearnerOptions o;
    o.exploration = share;
    auto learner = Make(o);
    ASSERT_THAT(learner->Record("a", 0, 0.5, 1.0), IsOk());
    std::mt19937_64 rng(7);
    const int kQueries = 20000;
    int explored = 0;
    for (int i = 0; i < kQueries; ++i) {
      explored += AdjustOne(*learner, {"a", "b"}, 0, {0.5, 0.5}, {0.4, 0.4}, rng).explored;
    }
    // Binomial(20000, p): 4 standard deviations are at most 0.012 for p = 0.2.
    EXPECT_NEAR(static_cast<double>(explored) / kQueries, share, 0.012) << share;
  }
  // Exploration 0 draws nothing from the generator.
  auto learner = Make(NoExploration());
  std::mt19937_64 rng(3), untouched(3);
  AdjustOne(*learner, {"a"}, 0, {0.5}, {0.4}, rng);
  EXPECT_EQ(rng(), untouched());
}

TEST(OutcomeLearnerTest, ExploredQualitiesArePosteriorSamples) {
  OutcomeLearnerOptions o;
  o.exploration = 1.0;
  o.prior_strength = 4;
  auto learner = Make(o);
  for (int i = 0; i < 20; ++i) ASSERT_THAT(learner->Record("a", 0, 0.5, i % 4 == 0), IsOk());
  // Posterior mean and pseudo-count of "a" at prior 0.5, from the cell.
  const OutcomeCell cell = learner->Cells()[0];
  const double mean = 0.5 + cell.learned_shift;
  const double n = 4 + cell.weight;
  std::mt19937_64 rng(11);
  double sum = 0, sum2 = 0, sum_b = 0;
  const int kDraws = 20000;
  for (int i = 0; i < kDraws; ++i) {
    const Adjusted a = AdjustOne(*learner, {"a", "b"}, 0, {0.5, 0.8}, {0.4, 0.7}, rng);
    ASSERT_TRUE(a.explored);
    sum += a.quality[0];
    sum2 += a.quality[0] * a.quality[0];
    sum_b += a.quality[1];
  }
  const double m1 = sum / kDraws;
  const double var = sum2 / kDraws - m1 * m1;
  EXPECT_NEAR(m1, mean, 0.005);
  EXPECT_NEAR(var, mean * (1 - mean) / (n + 1), 0.1 * mean * (1 - mean) / (n + 1));
  // A model without outcomes is sampled around its prior, with the prior's strength.
  EXPECT_NEAR(sum_b / kDraws, 0.8, 0.005);
}

TEST(OutcomeLearnerTest, ResetRemovesTheNamedCells) {
  auto learner = Make(NoExploration());
  for (const std::string model : {"a", "b"}) {
    for (int c = 0; c < 3; ++c) ASSERT_THAT(learner->Record(model, c, 0.5, 1.0), IsOk());
  }
  EXPECT_EQ(learner->num_cells(), 6);
  EXPECT_EQ(learner->Reset("a", 1), 1);
  EXPECT_EQ(learner->Reset("a", 1), 0);
  EXPECT_EQ(learner->Reset(std::nullopt, 2), 2);
  EXPECT_EQ(learner->Reset("zzz", std::nullopt), 0);
  EXPECT_EQ(learner->num_cells(), 3);
  const std::vector<OutcomeCell> cells = learner->Cells();
  ASSERT_EQ(cells.size(), 3u);
  EXPECT_EQ(cells[0].model, "a");
  EXPECT_EQ(cells[0].cluster, 0);
  EXPECT_EQ(cells[1].model, "b");
  EXPECT_EQ(cells[1].cluster, 0);
  EXPECT_EQ(cells[2].cluster, 1);
  EXPECT_EQ(learner->Reset("b", std::nullopt), 2);
  EXPECT_EQ(learner->Reset(std::nullopt, std::nullopt), 1);
  EXPECT_EQ(learner->num_cells(), 0);
  // A reset cell starts again from the prior.
  std::mt19937_64 rng(1);
  EXPECT_EQ(AdjustOne(*learner, {"a"}, 0, {0.3}, {0.2}, rng).quality[0], 0.3);
}

TEST(OutcomeLearnerTest, MaxCellsCountsAndDropsOutcomesOfNewCells) {
  OutcomeLearnerOptions o = NoExploration();
  o.max_cells = 2;
  auto learner = Make(o);
  ASSERT_THAT(learner->Record("a", 0, 0.5, 1.0), IsOk());
  ASSERT_THAT(learner->Record("a", 1, 0.5, 1.0), IsOk());
  ASSERT_THAT(learner->Record("b", 0, 0.5, 1.0), IsOk());  // a third cell: dropped
  ASSERT_THAT(learner->Record("a", 2, 0.5, 1.0), IsOk());  // and a fourth
  ASSERT_THAT(learner->Record("a", 0, 0.5, 0.0), IsOk());  // existing cells still learn
  EXPECT_EQ(learner->dropped_outcomes(), 2);
  EXPECT_EQ(learner->num_cells(), 2);
  const std::vector<OutcomeCell> cells = learner->Cells();
  EXPECT_EQ(cells[0].outcomes, 2);
  // Room freed by a reset is used again.
  EXPECT_EQ(learner->Reset("a", 1), 1);
  ASSERT_THAT(learner->Record("b", 0, 0.5, 1.0), IsOk());
  EXPECT_EQ(learner->dropped_outcomes(), 2);
  EXPECT_EQ(learner->num_cells(), 2);
}

// What a learner answers and its restored copy answers are the same to the last bit: the cells'
// sums and, for a cold-start model, the running totals over its cells that Record keeps up one
// outcome at a time (summed afresh they differ in the last bits).
TEST(OutcomeLearnerTest, SnapshotRestoresTheSameState) {
  auto learner = Make(NoExploration());
  learner->MarkColdStart("new", true);
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  constexpr int kClusters = 16;
  for (int i = 0; i < 3000; ++i) {
    const std::string model = i % 3 == 0 ? "new" : (i % 3 == 1 ? "a" : "b");
    ASSERT_THAT(learner->Record(model, static_cast<int>(rng() % kClusters), unit(rng), unit(rng)),
                IsOk());
  }
  const nlohmann::json snapshot = learner->Snapshot();
  EXPECT_EQ(snapshot["format"], "router.outcome_learner");
  EXPECT_EQ(snapshot["version"], 2);
  EXPECT_EQ(snapshot["options"]["half_life_outcomes"], learner->options().half_life_outcomes);

  // Through text, as a snapshot file would go.
  const nlohmann::json reread = nlohmann::json::parse(snapshot.dump());
  auto restored = Make(NoExploration());
  ASSERT_THAT(restored->Restore(reread), IsOk());
  EXPECT_EQ(restored->Snapshot(), snapshot);
  EXPECT_TRUE(restored->IsColdStart("new"));
  const std::vector<OutcomeCell> a = learner->Cells(), b = restored->Cells();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].model, b[i].model);
    EXPECT_EQ(a[i].cluster, b[i].cluster);
    EXPECT_EQ(a[i].weight, b[i].weight);
    EXPECT_EQ(a[i].learned_shift, b[i].learned_shift) << a[i].model << " " << a[i].cluster;
    EXPECT_EQ(a[i].outcomes, b[i].outcomes);
  }
  for (int c = 0; c <= kClusters; ++c) {  // kClusters: a cell without outcomes
    for (double baseline : {0.13, 0.5, 0.71}) {
      std::mt19937_64 r1(9), r2(9);
      const std::vector<double> quality = {0.5, 0.6, baseline}, lower = {0.4, 0.5, 0.6};
      const Adjusted x = AdjustOne(*learner, {"a", "b", "new"}, c, quality, lower, r1);
      const Adjusted y = AdjustOne(*restored, {"a", "b", "new"}, c, quality, lower, r2);
      EXPECT_EQ(x.quality, y.quality) << c << " " << baseline;
      EXPECT_EQ(x.lower, y.lower) << c << " " << baseline;
    }
  }
}

// Snapshots written before they carried the models' totals (version 1) are still read; the totals
// are summed afresh from the cells.
TEST(OutcomeLearnerTest, AVersionOneSnapshotIsRestored) {
  auto learner = Make(NoExploration());
  learner->MarkColdStart("new", true);
  ASSERT_THAT(learner->Record("new", 0, 0.4, 1.0), IsOk());
  ASSERT_THAT(learner->Record("new", 1, 0.6, 0.0), IsOk());
  ASSERT_THAT(learner->Record("a", 1, 0.6, 1.0), IsOk());
  nlohmann::json v1 = learner->Snapshot();
  v1["version"] = 1;
  v1.erase("models");
  auto restored = Make(NoExploration());
  ASSERT_THAT(restored->Restore(v1), IsOk());
  EXPECT_EQ(restored->Snapshot(), learner->Snapshot());
  for (int c = 0; c < 3; ++c) {
    std::mt19937_64 r1(9), r2(9);
    const Adjusted x = AdjustOne(*learner, {"a", "new"}, c, {0.5, 0.55}, {0.4, 0.5}, r1);
    const Adjusted y = AdjustOne(*restored, {"a", "new"}, c, {0.5, 0.55}, {0.4, 0.5}, r2);
    EXPECT_EQ(x.quality, y.quality) << c;
  }
}

TEST(OutcomeLearnerTest, RestoreRefusesBadSnapshotsNamingTheFieldAndChangesNothing) {
  auto source = Make(NoExploration());
  ASSERT_THAT(source->Record("a", 0, 0.5, 1.0), IsOk());
  ASSERT_THAT(source->Record("b", 2, 0.5, 0.0), IsOk());
  const nlohmann::json good = source->Snapshot();

  auto learner = Make(NoExploration());
  ASSERT_THAT(learner->Record("kept", 7, 0.2, 1.0), IsOk());
  const nlohmann::json before = learner->Snapshot();
  auto refused = [&](auto mutate, const std::string& field) {
    nlohmann::json bad = good;
    mutate(bad);
    EXPECT_THAT(learner->Restore(bad), InvalidNaming(field)) << bad.dump();
    EXPECT_EQ(learner->Snapshot(), before);
  };
  refused([](auto& j) { j = nlohmann::json::array(); }, "top level");
  refused([](auto& j) { j["format"] = "other"; }, "format");
  refused([](auto& j) { j["version"] = 3; }, "version");
  refused([](auto& j) { j.erase("version"); }, "version");
  refused([](auto& j) { j["extra"] = 1; }, "extra");
  refused([](auto& j) { j["options"] = 3; }, "options");
  refused([](auto& j) { j["cold_start_models"] = {"x", "x"}; }, "cold_start_models[1]");
  refused([](auto& j) { j["dropped_outcomes"] = -1; }, "dropped_outcomes");
  refused([](auto& j) { j["cells"] = 5; }, "cells");
  refused([](auto& j) { j["cells"][1]["weight"] = -1.0; }, "cells[1].weight");
  refused([](auto& j) { j["cells"][1]["score_sum"] = 5.0; }, "cells[1].score_sum");
  refused([](auto& j) { j["cells"][0]["prior_sum"] = -0.5; }, "cells[0].prior_sum");
  refused([](auto& j) { j["cells"][0]["cluster"] = -3; }, "cells[0].cluster");
  refused([](auto& j) { j["cells"][0]["cluster"] = 1.5; }, "cells[0].cluster");
  refused([](auto& j) { j["cells"][0]["model"] = ""; }, "cells[0].model");
  refused([](auto& j) { j["cells"][0].erase("outcomes"); }, "cells[0].outcomes");
  refused([](auto& j) { j["cells"][0]["typo"] = 1; }, "cells[0].typo");
  refused([](auto& j) { j["cells"][1] = j["cells"][0]; }, "cells[1]");
  refused([](auto& j) { j.erase("models"); }, "models");
  refused([](auto& j) { j["version"] = 1; }, "models");  // a version 1 snapshot has none
  refused([](auto& j) { j["models"] = 5; }, "models");
  refused([](auto& j) { j["models"].erase(1); }, "models");  // no totals for 'b'
  refused([](auto& j) { j["models"][1]["model"] = "a"; }, "models[1].model");
  refused([](auto& j) { j["models"][0]["model"] = "zzz"; }, "models[0].model");
  refused([](auto& j) { j["models"][0]["weight_total"] = 1.5; }, "models[0].weight_total");
  refused([](auto& j) { j["models"][1]["score_total"] = "0"; }, "models[1].score_total");
  refused([](auto& j) { j["models"][1].erase("prior_total"); }, "models[1].prior_total");
  refused([](auto& j) { j["models"][0]["typo"] = 1; }, "models[0].typo");

  OutcomeLearnerOptions tiny = NoExploration();
  tiny.max_cells = 1;
  auto small = Make(tiny);
  EXPECT_THAT(small->Restore(good), InvalidNaming("max_cells"));
  EXPECT_EQ(small->num_cells(), 0);
}

TEST(OutcomeLearnerTest, ConcurrentRecordsAndAdjustsAreSafe) {
  OutcomeLearnerOptions o;
  o.exploration = 0.1;
  auto learner = Make(o);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t));
      for (int i = 0; i < 2000; ++i) {
        if (t % 2 == 0) {
          ASSERT_THAT(learner->Record(i % 2 ? "a" : "b", i % 5, 0.5, (i + t) % 3 == 0), IsOk());
        } else {
          AdjustOne(*learner, {"a", "b"}, i % 5, {0.5, 0.5}, {0.4, 0.4}, rng);
          if (i % 500 == 0) learner->Snapshot();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  int64_t total = 0;
  for (const OutcomeCell& c : learner->Cells()) total += c.outcomes;
  EXPECT_EQ(total, 4000);
}

}  // namespace
}  // namespace router::core
