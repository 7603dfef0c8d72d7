// Tests of the learning replay (bench/eval/learning.h) on a synthetic pool whose truth is known:
// bandit feedback (only chosen models are learned), the limits of every batch, a drift the online
// router follows and the static one does not, a cold-start model, and the stream helpers.

#include "bench/eval/learning.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace router::core::eval {
namespace {

constexpr int kModels = 3;  // cheap, mid, dear
constexpr int kClusters = 2;

// n prompts in 2 clusters; the estimator predicts cheap 0.5, mid 0.7, dear 0.9 everywhere, and the
// truth is drawn at those rates.
struct Pool {
  HeldOutPredictions p;
  std::vector<int> clusters;
};

Pool MakePool(int n, uint64_t seed) {
  Pool pool;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  pool.p.num_prompts = n;
  pool.p.models = {"cheap", "mid", "dear"};
  const double quality[kModels] = {0.5, 0.7, 0.9};
  const double cost[kModels] = {1e-4, 4e-4, 2e-3};
  for (int i = 0; i < n; ++i) {
    pool.clusters.push_back(i % kClusters);
    for (int j = 0; j < kModels; ++j) {
      pool.p.quality.push_back(quality[j]);
      pool.p.quality_lower.push_back(quality[j] - 0.1);
      pool.p.predicted_cost.push_back(cost[j]);
      pool.p.realized_cost.push_back(cost[j]);
      pool.p.correct.push_back(u(rng) < quality[j] ? 1.0 : 0.0);
    }
  }
  return pool;
}

std::vector<int64_t> AllRows(int64_t n) {
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[static_cast<size_t>(i)] = i;
  return rows;
}

StreamSetup MakeSetup(const Pool& pool, int64_t length) {
  StreamSetup setup;
  absl::StatusOr<std::vector<int64_t>> stream = MakeStream(AllRows(pool.p.num_prompts), length, 9);
  EXPECT_TRUE(stream.ok()) << stream.status();
  setup.stream = *stream;
  setup.clusters = pool.clusters;
  setup.truth_before = &pool.p.correct;
  setup.switch_at = length;
  setup.batch_size = 50;
  // Half the dear model's cost per query: the budget binds; 30 of 50 slots per model bind too.
  setup.cap_per_prompt = 1e-3;
  setup.slots.assign(kModels, 30);
  return setup;
}

OutcomeLearnerOptions Learner() {
  OutcomeLearnerOptions o;
  o.half_life_outcomes = 30;
  o.prior_strength = 5;
  o.exploration = 0.05;
  return o;
}

// Share of stream positions [from, to) in `cluster` that went to `model`.
double Share(const StreamRun& r, const StreamSetup& setup, int model, int cluster, int64_t from,
             int64_t to) {
  int64_t in = 0, to_model = 0;
  for (int64_t t = from; t < to; ++t) {
    if (setup.clusters[static_cast<size_t>(setup.stream[static_cast<size_t>(t)])] != cluster) {
      continue;
    }
    ++in;
    to_model += r.chosen[static_cast<size_t>(t)] == model;
  }
  return in == 0 ? 0.0 : static_cast<double>(to_model) / static_cast<double>(in);
}

TEST(LearningReplayTest, OnlyChosenModelsAreLearnedAndEveryBatchKeepsItsLimits) {
  const Pool pool = MakePool(300, 1);
  const StreamSetup setup = MakeSetup(pool, 1000);
  StreamArm arm;
  arm.before = &pool.p;
  arm.learner = Learner();
  arm.seed = 4;
  absl::StatusOr<StreamRun> run = ReplayStream(setup, arm);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->batches, 20);
  EXPECT_GT(run->budget_binding + run->slots_binding, 0);  // the limits were in play
  // Bandit feedback: the learner's outcomes are exactly the served queries, by model.
  std::vector<int64_t> served(kModels, 0);
  for (size_t b = 0; b < 20; ++b) {
    std::vector<int64_t> taken(kModels, 0);
    double spend = 0;
    for (size_t t = b * 50; t < (b + 1) * 50; ++t) {
      const int j = run->chosen[t];
      if (j < 0) continue;
      ++taken[static_cast<size_t>(j)];
      ++served[static_cast<size_t>(j)];
      spend += pool.p.predicted_cost[static_cast<size_t>(j)];
    }
    EXPECT_LE(spend, 50 * setup.cap_per_prompt * (1 + 1e-9)) << b;
    for (int j = 0; j < kModels; ++j) EXPECT_LE(taken[static_cast<size_t>(j)], 30) << b;
  }
  std::vector<int64_t> learned(kModels, 0);
  for (const OutcomeCell& c : run->cells) {
    const int j = static_cast<int>(
        std::find(pool.p.models.begin(), pool.p.models.end(), c.model) - pool.p.models.begin());
    ASSERT_LT(j, kModels) << c.model;
    learned[static_cast<size_t>(j)] += c.outcomes;
  }
  EXPECT_EQ(learned, served);
  double explored = 0;
  for (const uint8_t e : run->explored) explored += e;
  EXPECT_NEAR(explored / 1000.0, 0.05, 0.03);
}

TEST(LearningReplayTest, OnlineRouterFollowsADriftTheStaticOneIgnores) {
  const Pool pool = MakePool(400, 2);
  StreamSetup setup = MakeSetup(pool, 2000);
  // From the middle on, the dear model fails every query of cluster 0.
  std::vector<uint8_t> cluster0(pool.clusters.size());
  for (size_t i = 0; i < cluster0.size(); ++i) cluster0[i] = pool.clusters[i] == 0;
  const std::vector<double> drifted = Degrade(pool.p.correct, kModels, 2, cluster0, 1.0, 3);
  setup.truth_after = &drifted;
  setup.switch_at = 1000;
  StreamArm static_arm;
  static_arm.before = &pool.p;
  StreamArm online = static_arm;
  online.learner = Learner();
  online.seed = 5;
  absl::StatusOr<StreamRun> s = ReplayStream(setup, static_arm);
  absl::StatusOr<StreamRun> o = ReplayStream(setup, online);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(o.ok()) << o.status();
  // The static router keeps sending cluster 0 to the dear model; the online one moves away.
  const double static_share = Share(*s, setup, 2, 0, 1500, 2000);
  const double online_share = Share(*o, setup, 2, 0, 1500, 2000);
  EXPECT_GT(static_share, 0.2);
  EXPECT_LT(online_share, 0.5 * static_share);
  // Cluster 1 is untouched: the dear model keeps its traffic there.
  EXPECT_GT(Share(*o, setup, 2, 1, 1500, 2000), 0.5 * Share(*s, setup, 2, 1, 1500, 2000));
  EXPECT_GT(MeanScore(*o, 1500, 2000), MeanScore(*s, 1500, 2000));
  // The static router's decisions do not depend on what is observed: without the drift it
  // decides exactly the same, and scores the same before the switch.
  StreamSetup no_drift = setup;
  no_drift.truth_after = nullptr;
  absl::StatusOr<StreamRun> same = ReplayStream(no_drift, static_arm);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->chosen, s->chosen);
  EXPECT_EQ(MeanScore(*same, 0, 1000), MeanScore(*s, 0, 1000));
  EXPECT_GT(MeanScore(*same, 1000, 2000), MeanScore(*s, 1000, 2000));
}

TEST(LearningReplayTest, ColdStartModelIsLeftOutStaticallyAndEarnsTrafficOnline) {
  Pool pool = MakePool(400, 3);
  // The "mid" model is in truth perfect, at mid cost: the best choice once known.
  for (int64_t i = 0; i < pool.p.num_prompts; ++i) pool.p.correct[static_cast<size_t>(i) * 3 + 1] = 1;
  const StreamSetup setup = MakeSetup(pool, 1500);
  StreamArm without;
  without.before = &pool.p;
  without.cold_models = {1};
  StreamArm online = without;
  online.learner = Learner();
  online.seed = 6;
  absl::StatusOr<StreamRun> w = ReplayStream(setup, without);
  absl::StatusOr<StreamRun> o = ReplayStream(setup, online);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(std::count(w->chosen.begin(), w->chosen.end(), 1), 0);
  int64_t late = 0;
  for (int64_t t = 1000; t < 1500; ++t) late += o->chosen[static_cast<size_t>(t)] == 1;
  EXPECT_GT(late, 250);
  EXPECT_GT(MeanScore(*o, 1000, 1500), MeanScore(*w, 1000, 1500));
}

TEST(LearningReplayTest, StreamHelpersAndBadArguments) {
  absl::StatusOr<std::vector<int64_t>> stream = MakeStream({3, 5, 7}, 8, 1);
  ASSERT_TRUE(stream.ok());
  ASSERT_EQ(stream->size(), 8u);
  // Each epoch is a permutation of the rows.
  EXPECT_EQ(std::set<int64_t>(stream->begin(), stream->begin() + 3), (std::set<int64_t>{3, 5, 7}));
  EXPECT_EQ(std::set<int64_t>(stream->begin() + 3, stream->begin() + 6),
            (std::set<int64_t>{3, 5, 7}));
  EXPECT_FALSE(MakeStream({}, 3, 1).ok());

  const std::vector<double> truth = {1, 1, 0, 1, 1, 1};  // 3 rows x 2 models
  const std::vector<double> all = Degrade(truth, 2, 1, {1, 1, 1}, 1.0, 1);
  EXPECT_EQ(all, (std::vector<double>{1, 0, 0, 0, 1, 0}));
  EXPECT_EQ(Degrade(truth, 2, 1, {0, 0, 0}, 1.0, 1), truth);
  EXPECT_EQ(Degrade(truth, 2, 0, {1, 1, 1}, 0.0, 1), truth);

  const Pool pool = MakePool(10, 4);
  StreamSetup setup = MakeSetup(pool, 20);
  StreamArm arm;
  EXPECT_EQ(ReplayStream(setup, arm).status().code(), absl::StatusCode::kInvalidArgument);
  arm.before = &pool.p;
  setup.clusters.pop_back();
  EXPECT_THAT(ReplayStream(setup, arm).status().message(), testing::HasSubstr("clusters"));
  setup = MakeSetup(pool, 20);
  setup.slots.pop_back();
  EXPECT_THAT(ReplayStream(setup, arm).status().message(), testing::HasSubstr("slots"));
  setup = MakeSetup(pool, 20);
  arm.cold_models = {5};
  EXPECT_THAT(ReplayStream(setup, arm).status().message(), testing::HasSubstr("cold_models"));
}

}  // namespace
}  // namespace router::core::eval
