#include "router_core/tools/cli_flags.h"

#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace router::core {
namespace {

using ::testing::ElementsAre;
using ::testing::FieldsAre;
using ::testing::HasSubstr;

constexpr absl::string_view kSwitches[] = {"--evaluate"};

absl::StatusOr<std::vector<CliFlag>> Split(std::vector<const char*> args) {
  args.insert(args.begin(), "tool");
  return SplitFlags(static_cast<int>(args.size()), args.data(), kSwitches);
}

TEST(CliFlagsTest, ValuesAfterAnEqualsSignOrAsTheNextArgumentAndBareSwitches) {
  absl::StatusOr<std::vector<CliFlag>> flags =
      Split({"--dataset", "d/", "--evaluate", "--seed=3", "--out=a=b", "--note", ""});
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_THAT(*flags, ElementsAre(FieldsAre("--dataset", "d/"), FieldsAre("--evaluate", ""),
                                  FieldsAre("--seed", "3"), FieldsAre("--out", "a=b"),
                                  FieldsAre("--note", "")));
}

TEST(CliFlagsTest, ErrorsNameTheArgument) {
  EXPECT_THAT(Split({"dataset"}).status().message(), HasSubstr("unexpected argument 'dataset'"));
  EXPECT_THAT(Split({"--seed", "1", "--out"}).status().message(), HasSubstr("--out needs a value"));
  EXPECT_THAT(Split({"--evaluate=yes"}).status().message(), HasSubstr("--evaluate takes no value"));
  EXPECT_EQ(Split({"-x"}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CliFlagsTest, NoArgumentsGiveNoFlags) {
  absl::StatusOr<std::vector<CliFlag>> flags = Split({});
  ASSERT_TRUE(flags.ok());
  EXPECT_TRUE(flags->empty());
}

TEST(CliFlagsTest, HelpIsRequestedByEitherSpellingAnywhere) {
  const std::vector<const char*> plain = {"tool", "--dataset", "d/"};
  const std::vector<const char*> late = {"tool", "--dataset", "d/", "-h"};
  const std::vector<const char*> as_value = {"tool", "--out", "--help"};
  const std::vector<const char*> similar = {"tool", "--helpful", "-hh"};
  EXPECT_FALSE(HelpRequested(static_cast<int>(plain.size()), plain.data()));
  EXPECT_TRUE(HelpRequested(static_cast<int>(late.size()), late.data()));
  EXPECT_TRUE(HelpRequested(static_cast<int>(as_value.size()), as_value.data()));
  EXPECT_FALSE(HelpRequested(static_cast<int>(similar.size()), similar.data()));
}

}  // namespace
}  // namespace router::core
