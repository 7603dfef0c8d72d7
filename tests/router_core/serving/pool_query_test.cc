#include "router_core/serving/pool_query.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace router::core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<DeployedModel> Pool() {
  return {
      {"a", std::nullopt}, {"b", std::nullopt}, {"c", 4}, {"d", std::nullopt}, {"e", std::nullopt}};
}

TEST(FallbackModelsTest, BestFirstTiesInPoolOrderWithoutTheChosenOrDisallowedModels) {
  Query q;
  q.quality = {0.5, 0.9, 0.7, 0.7, 0.9};
  const std::vector<char> allowed = {1, 1, 1, 1, 1};
  // b and e tie at 0.9, c and d at 0.7: pool order decides.
  EXPECT_THAT(FallbackModels(q, allowed, /*chosen=*/0, 4, Pool()), ElementsAre("b", "e", "c", "d"));
  EXPECT_THAT(FallbackModels(q, allowed, /*chosen=*/1, 2, Pool()), ElementsAre("e", "c"));
  EXPECT_THAT(FallbackModels(q, {1, 1, 0, 1, 0}, /*chosen=*/1, 3, Pool()), ElementsAre("d", "a"));
  EXPECT_THAT(FallbackModels(q, allowed, /*chosen=*/0, 0, Pool()), IsEmpty());
  EXPECT_THAT(FallbackModels(q, allowed, /*chosen=*/0, 10, Pool()),
              ElementsAre("b", "e", "c", "d"));
}

}  // namespace
}  // namespace router::core
