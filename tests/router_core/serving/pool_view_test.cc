#include "router_core/serving/pool_view.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<DeployedModel> Pool() {
  return {
      {"a", std::nullopt}, {"b", std::nullopt}, {"c", 4}, {"d", std::nullopt}, {"e", std::nullopt}};
}

// Predictions made for `models` (in that order): quality q, lower q / 2, cost q / 100.
PendingQuery Predicted(std::vector<std::string> models, std::vector<double> quality) {
  PendingQuery p;
  p.predicted_models = std::make_shared<const std::vector<std::string>>(std::move(models));
  for (double q : quality) {
    p.predictions.quality.push_back(q);
    p.predictions.quality_lower.push_back(q / 2);
    p.predictions.cost_usd.push_back(q / 100);
  }
  return p;
}

TEST(PoolViewTest, ReadsPredictionsInPoolOrderWhateverTheirOrder) {
  const std::vector<DeployedModel> pool = Pool();
  PoolView view(pool);
  // Predicted in another order, and without "d" (it joined the pool after the query arrived).
  const PendingQuery p = Predicted({"e", "c", "b", "a"}, {0.9, 0.7, 0.6, 0.5});
  std::vector<uint8_t> allowed(5);
  absl::StatusOr<PoolQuery> q = view.Resolve(p, absl::MakeSpan(allowed));
  ASSERT_THAT(q, IsOk());
  EXPECT_THAT(allowed, ElementsAre(1, 1, 1, 0, 1));
  EXPECT_FALSE(q->predicted(3));
  EXPECT_EQ(q->quality(0), 0.5);
  EXPECT_EQ(q->quality(2), 0.7);
  EXPECT_EQ(q->quality_lower(4), 0.45);
  EXPECT_EQ(q->cost(1), 0.006);
}

TEST(PoolViewTest, AllowedNamesNarrowThePoolAndBadOnesAreNamed) {
  const std::vector<DeployedModel> pool = Pool();
  PoolView view(pool);
  PendingQuery p = Predicted({"a", "b", "c", "d", "e"}, {0.1, 0.2, 0.3, 0.4, 0.5});
  p.allowed = {"d", "b"};
  std::vector<uint8_t> allowed(5);
  ASSERT_THAT(view.Resolve(p, absl::MakeSpan(allowed)), IsOk());
  EXPECT_THAT(allowed, ElementsAre(0, 1, 0, 1, 0));

  p.allowed = {"b", "zz"};
  EXPECT_THAT(view.Resolve(p, absl::MakeSpan(allowed)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "query.allowed_models[1]: unknown model 'zz'"));
  // Allowed, but not predicted: nothing is left to choose from.
  PendingQuery old = Predicted({"a", "b"}, {0.1, 0.2});
  old.allowed = {"d"};
  EXPECT_THAT(view.Resolve(old, absl::MakeSpan(allowed)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "query.allowed_models: no model of the current pool is allowed and "
                       "predicted"));
}

TEST(PoolViewTest, AppendRowWritesTheRowThePolicyOptimizesOrNothing) {
  const std::vector<DeployedModel> pool = Pool();
  PoolView view(pool);
  Instance inst = view.EmptyInstance({kUnlimited, kUnlimited, 3, kUnlimited, kUnlimited}, 1.5, 2);
  const PendingQuery p = Predicted({"a", "b", "c", "d", "e"}, {0.1, 0.2, 0.3, 0.4, 0.5});
  ASSERT_THAT(view.AppendRow(p, ValueSource::kQuality, inst), IsOk());
  PendingQuery bad = p;
  bad.allowed = {"nope"};
  EXPECT_THAT(view.AppendRow(bad, ValueSource::kQuality, inst).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("allowed_models[0]")));
  ASSERT_THAT(view.AppendRow(p, ValueSource::kQualityLower, inst), IsOk());
  EXPECT_EQ(inst.num_queries, 2);
  EXPECT_EQ(inst.num_models, 5);
  EXPECT_EQ(inst.budget, 1.5);
  EXPECT_THAT(inst.slots, ElementsAre(kUnlimited, kUnlimited, 3, kUnlimited, kUnlimited));
  EXPECT_THAT(inst.value, ElementsAre(0.1, 0.2, 0.3, 0.4, 0.5, 0.05, 0.1, 0.15, 0.2, 0.25));
  EXPECT_THAT(inst.deviation, ElementsAre(0.05, 0.1, 0.15, 0.2, 0.25, 0, 0, 0, 0, 0));
  EXPECT_THAT(inst.cost,
              ElementsAre(0.001, 0.002, 0.003, 0.004, 0.005, 0.001, 0.002, 0.003, 0.004, 0.005));
  EXPECT_THAT(inst.allowed, ElementsAre(1, 1, 1, 1, 1, 1, 1, 1, 1, 1));
}

TEST(FreeSlotsTest, TheLedgerBoundsSelfHostedModelsAndApiModelsAreUnlimited) {
  LedgerSnapshot snapshot;
  snapshot.models = {"c", "x"};
  snapshot.free_slots = {2, std::nullopt};
  EXPECT_THAT(FreeSlots(Pool(), snapshot),
              ElementsAre(kUnlimited, kUnlimited, 2, kUnlimited, kUnlimited));
  snapshot.free_slots = {9, std::nullopt};  // never above what is deployed
  EXPECT_THAT(FreeSlots(Pool(), snapshot),
              ElementsAre(kUnlimited, kUnlimited, 4, kUnlimited, kUnlimited));
  snapshot.models = {"x"};  // a self-hosted model the ledger does not know gets nothing
  snapshot.free_slots = {std::nullopt};
  EXPECT_THAT(FreeSlots(Pool(), snapshot),
              ElementsAre(kUnlimited, kUnlimited, 0, kUnlimited, kUnlimited));
}

TEST(FallbackModelsTest, BestFirstTiesInPoolOrderWithoutTheChosenOrDisallowedModels) {
  const std::vector<DeployedModel> pool = Pool();
  PoolView view(pool);
  const PendingQuery p = Predicted({"a", "b", "c", "d", "e"}, {0.5, 0.9, 0.7, 0.7, 0.9});
  std::vector<uint8_t> allowed(5);
  absl::StatusOr<PoolQuery> q = view.Resolve(p, absl::MakeSpan(allowed));
  ASSERT_THAT(q, IsOk());
  // b and e tie at 0.9, c and d at 0.7: pool order decides.
  EXPECT_THAT(FallbackModels(*q, allowed, /*chosen=*/0, 4, pool), ElementsAre("b", "e", "c", "d"));
  EXPECT_THAT(FallbackModels(*q, allowed, /*chosen=*/1, 2, pool), ElementsAre("e", "c"));
  const std::vector<uint8_t> some = {1, 1, 0, 1, 0};
  EXPECT_THAT(FallbackModels(*q, some, /*chosen=*/1, 3, pool), ElementsAre("d", "a"));
  EXPECT_THAT(FallbackModels(*q, allowed, /*chosen=*/0, 0, pool), IsEmpty());
  EXPECT_THAT(FallbackModels(*q, allowed, /*chosen=*/0, 10, pool),
              ElementsAre("b", "e", "c", "d"));
}

}  // namespace
}  // namespace router::core
