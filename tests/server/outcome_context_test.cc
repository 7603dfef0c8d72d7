#include "server/outcome_context.h"

#include "gtest/gtest.h"

namespace router::server {
namespace {

TEST(OutcomeContextTest, RoundTripsThroughTheAssignmentId) {
  const std::string id = PublicAssignmentId("18c3f0a2b4c-17.9f3b0c2d4e5f6a7b",
                                            {"meta/llama~3:70b", 12, 0.8123456});
  EXPECT_EQ(id, "18c3f0a2b4c-17.9f3b0c2d4e5f6a7b~12~812346~meta/llama~3:70b");
  const ParsedAssignmentId parsed = ParseAssignmentId(id);
  EXPECT_EQ(parsed.ledger_id, "18c3f0a2b4c-17.9f3b0c2d4e5f6a7b");
  ASSERT_TRUE(parsed.context.has_value());
  // The model is the rest of the id, whatever it holds.
  EXPECT_EQ(parsed.context->model, "meta/llama~3:70b");
  EXPECT_EQ(parsed.context->cluster, 12);
  EXPECT_DOUBLE_EQ(parsed.context->prior_quality, 0.812346);
  // Priors are clamped to [0, 1] on the way out.
  EXPECT_EQ(ParseAssignmentId(PublicAssignmentId("a", {"m", 0, 1.7})).context->prior_quality, 1.0);
  EXPECT_EQ(ParseAssignmentId(PublicAssignmentId("a", {"m", 0, -2})).context->prior_quality, 0.0);
}

TEST(OutcomeContextTest, AnIdWithoutAWellFormedContextKeepsItsLedgerPartOnly) {
  for (const char* id :
       {"b1-2.00ff", "b1-2.00ff~", "b1-2.00ff~3", "b1-2.00ff~3~5", "b1-2.00ff~3~5~",
        "b1-2.00ff~x~5~m", "b1-2.00ff~-1~5~m", "b1-2.00ff~3~1000001~m", "b1-2.00ff~3~0.5~m",
        "b1-2.00ff~~5~m", "b1-2.00ff~3~ 5~m", "b1-2.00ff~9999999999~5~m"}) {
    const ParsedAssignmentId parsed = ParseAssignmentId(id);
    EXPECT_EQ(parsed.ledger_id, "b1-2.00ff") << id;
    EXPECT_FALSE(parsed.context.has_value()) << id;
  }
  EXPECT_EQ(ParseAssignmentId("").ledger_id, "");
  EXPECT_TRUE(ParseAssignmentId("b~0~1000000~m").context.has_value());
}

}  // namespace
}  // namespace router::server
