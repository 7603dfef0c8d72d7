#include "router_core/json/json_reader.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using Json = nlohmann::json;
using ::testing::ElementsAre;
using ::testing::StartsWith;

Json Parse(absl::string_view text) {
  absl::StatusOr<Json> json = ParseJsonText(text);
  EXPECT_TRUE(json.ok()) << json.status();
  return json.ok() ? *json : Json();
}

TEST(ParseJsonTextTest, ParsesAndReportsTheParserMessageWithItsByte) {
  EXPECT_THAT(ParseJsonText(R"({"a": [1, 2]})"), IsOkAndHolds(Json{{"a", {1, 2}}}));
  absl::StatusOr<Json> bad = ParseJsonText(R"({"a": x})");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()),
              StartsWith("invalid JSON: parse error at line 1, column 7"));
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("(byte 7)"));
  EXPECT_THAT(std::string(bad.status().message()), ::testing::Not(HasSubstr("[json.exception")));
  // Overflow is the parser's out_of_range, not a parse_error; it is still a status.
  EXPECT_THAT(ParseJsonText("1e999"),
              InvalidNaming("invalid JSON: number overflow parsing '1e999'"));
  EXPECT_THAT(ParseJsonText(""), InvalidNaming("invalid JSON: "));
}

TEST(JsonReaderTest, PathsOfNestedValuesNameEveryStep) {
  const Json json = Parse(R"({"queries": [{"cost": [1]}, {"cost": [2, "x"]}]})");
  const JsonReader root(json);
  EXPECT_EQ(root.name(), "top level");
  absl::StatusOr<JsonReader> queries = root.Member("queries");
  ASSERT_TRUE(queries.ok());
  ASSERT_EQ(queries->size(), 2u);
  const JsonReader second = queries->Element(1);
  EXPECT_EQ(second.path(), "queries[1]");
  EXPECT_THAT(second.Get(&JsonReader::NumberArray, "cost", NumberArraySpec{}),
              InvalidNaming("queries[1].cost[1]: expected a number, got string"));
  EXPECT_THAT(queries->Element(0).Get(&JsonReader::NumberArray, "cost", NumberArraySpec{}),
              IsOkAndHolds(ElementsAre(1.0)));
}

TEST(JsonReaderTest, ARootPathPrefixesChildren) {
  const Json json = Parse(R"({"kind": 3})");
  const JsonReader root(json, "uniroute");
  EXPECT_THAT(root.Get(&JsonReader::String, "kind"),
              InvalidNaming("uniroute.kind: expected a string, got number"));
  EXPECT_THAT(root.Member("version"), InvalidNaming("uniroute.version: required field missing"));
  const Json array = Json::array();
  EXPECT_THAT(JsonReader(array, "uniroute").CheckObject(),
              InvalidNaming("uniroute: expected an object, got array"));
  EXPECT_THAT(JsonReader(array).CheckObject(),
              InvalidNaming("top level: expected an object, got array"));
}

TEST(JsonReaderTest, UnknownKeysAreNamedWithTheAllowedList) {
  const Json json = Parse(R"({"params": {"lambda": 1, "lamda": 2}})");
  absl::StatusOr<JsonReader> params = JsonReader(json).Member("params");
  ASSERT_TRUE(params.ok());
  EXPECT_THAT(params->CheckKeys({"lambda", "tau"}),
              InvalidNaming("params.lamda: unknown field (expected one of: lambda, tau)"));
  EXPECT_TRUE(params->CheckKeys({"lambda", "lamda"}).ok());
  EXPECT_THAT(JsonReader(json).CheckKeys({"models"}), InvalidNaming("params: unknown field"));
}

TEST(JsonReaderTest, OptionalMembersAndNulls) {
  const Json json = Parse(R"({"a": null, "b": 2})");
  const JsonReader root(json);
  EXPECT_FALSE(root.OptionalMember("c").has_value());
  ASSERT_TRUE(root.OptionalMember("a").has_value());
  EXPECT_THAT(root.OptionalMember("a")->Number(), InvalidNaming("a: expected a number, got null"));
  EXPECT_FALSE(root.OptionalMember("a", /*null_is_absent=*/true).has_value());
  const JsonReader lenient(json, "", JsonReader::Nulls::kNullIsAbsent);
  EXPECT_FALSE(lenient.OptionalMember("a").has_value());

  double target = 7;
  EXPECT_TRUE(lenient.ReadOptional("a", &target, &JsonReader::Number).ok());
  EXPECT_EQ(target, 7);
  EXPECT_TRUE(root.ReadOptional("c", &target, &JsonReader::Number).ok());
  EXPECT_EQ(target, 7);
  EXPECT_TRUE(root.ReadOptional("b", &target, &JsonReader::Number).ok());
  EXPECT_EQ(target, 2);
  EXPECT_THAT(root.ReadOptional("a", &target, &JsonReader::Number),
              InvalidNaming("a: expected a number, got null"));
}

TEST(JsonReaderTest, ScalarsCheckTheirType) {
  const Json json = Parse(R"({"n": 1.5, "s": "x", "b": true, "arr": []})");
  const JsonReader root(json);
  EXPECT_THAT(root.Get(&JsonReader::Number, "n"), IsOkAndHolds(1.5));
  EXPECT_THAT(root.Get(&JsonReader::Number, "s"),
              InvalidNaming("s: expected a number, got string"));
  EXPECT_THAT(root.Get(&JsonReader::String, "s"), IsOkAndHolds(std::string("x")));
  EXPECT_THAT(root.Get(&JsonReader::String, "b"),
              InvalidNaming("b: expected a string, got boolean"));
  EXPECT_THAT(root.Get(&JsonReader::Bool, "b"), IsOkAndHolds(true));
  EXPECT_THAT(root.Get(&JsonReader::Bool, "n"), InvalidNaming("n: expected a boolean, got number"));
  EXPECT_THAT(root.Get(&JsonReader::Member, "arr", "x"),
              InvalidNaming("arr: expected an object, got array"));
  EXPECT_THAT(root.Get(&JsonReader::CheckArray, "n", "an array of queries"),
              InvalidNaming("n: expected an array of queries, got number"));
}

TEST(JsonReaderTest, FiniteNumbersRefuseNanAndInfinity) {
  const Json json = {{"nan", std::nan("")}, {"inf", std::numeric_limits<double>::infinity()}};
  const JsonReader root(json, "state");
  EXPECT_THAT(root.Get(&JsonReader::FiniteNumber, "nan"), InvalidNaming("state.nan: not finite"));
  EXPECT_THAT(root.Get(&JsonReader::FiniteNumber, "inf"), InvalidNaming("state.inf: not finite"));
  EXPECT_TRUE(root.Get(&JsonReader::Number, "inf").ok());
}

TEST(JsonReaderTest, IntegersWithRangesAndIntegralFloats) {
  const Json json = Parse(
      R"({"i": 3, "neg": -1, "f": 3.0, "frac": 1.5, "huge": 18446744073709551615, "s": "3",
          "big": 3e300})");
  const JsonReader root(json);
  EXPECT_THAT(root.Get(&JsonReader::Integer, "i", IntegerSpec{}), IsOkAndHolds(3));
  EXPECT_THAT(root.Get(&JsonReader::Integer, "f", IntegerSpec{}), IsOkAndHolds(3));
  EXPECT_THAT(root.Get(&JsonReader::Integer, "f", IntegerSpec{.integral_floats = false}),
              InvalidNaming("f: expected an integer, got 3"));
  EXPECT_THAT(root.Get(&JsonReader::Integer, "frac", IntegerSpec{}),
              InvalidNaming("frac: expected an integer, got 1.5"));
  EXPECT_THAT(root.Get(&JsonReader::Integer, "big", IntegerSpec{}),
              InvalidNaming("big: expected an integer, got 3e+300"));
  EXPECT_THAT(root.Get(&JsonReader::Integer, "s", IntegerSpec{}),
              InvalidNaming("s: expected an integer, got string"));
  EXPECT_THAT(root.Get(&JsonReader::Integer, "huge", IntegerSpec{}),
              InvalidNaming("huge: too large"));
  EXPECT_THAT(root.Get(&JsonReader::Integer, "neg", IntegerSpec{}), IsOkAndHolds(-1));
  EXPECT_THAT(root.Get(&JsonReader::Integer, "neg", IntegerSpec{.min = 0}),
              InvalidNaming("neg: expected a non-negative integer, got -1"));
  EXPECT_THAT(root.Get(&JsonReader::Integer, "s", IntegerSpec{.min = 0}),
              InvalidNaming("s: expected a non-negative integer, got string"));
  EXPECT_THAT(root.Get(&JsonReader::Integer, "i", IntegerSpec{.min = 4, .max = 8}),
              InvalidNaming("i: must be in [4, 8], got 3"));
  EXPECT_THAT(root.Get(&JsonReader::Integer, "i", IntegerSpec{.min = 1, .max = 2}),
              InvalidNaming("i: must be in [1, 2], got 3"));
}

TEST(JsonReaderTest, UnsignedCoversTheWholeRange) {
  const Json json =
      Parse(R"({"max": 18446744073709551615, "neg": -2, "f": 8.0, "frac": 0.5, "s": "1"})");
  const JsonReader root(json);
  EXPECT_THAT(root.Get(&JsonReader::Unsigned, "max", true),
              IsOkAndHolds(std::numeric_limits<uint64_t>::max()));
  EXPECT_THAT(root.Get(&JsonReader::Unsigned, "neg", true),
              InvalidNaming("neg: expected a non-negative integer, got -2"));
  EXPECT_THAT(root.Get(&JsonReader::Unsigned, "f", true), IsOkAndHolds(8u));
  EXPECT_THAT(root.Get(&JsonReader::Unsigned, "f", false),
              InvalidNaming("f: expected a non-negative integer, got 8"));
  EXPECT_THAT(root.Get(&JsonReader::Unsigned, "frac", true),
              InvalidNaming("frac: expected a non-negative integer, got 0.5"));
  EXPECT_THAT(root.Get(&JsonReader::Unsigned, "s", true),
              InvalidNaming("s: expected a non-negative integer, got string"));
}

TEST(JsonReaderTest, EnumsListTheirChoices) {
  const Json json = Parse(R"({"pin": "maybe", "metric": "cosine"})");
  const JsonReader root(json);
  EXPECT_THAT(root.Member("pin")->Enum({"on", "off"}),
              InvalidNaming(R"(pin: expected "on" or "off", got "maybe")"));
  EXPECT_THAT(root.Member("pin")->Enum({"a", "b", "c"}),
              InvalidNaming(R"(pin: expected "a", "b" or "c", got "maybe")"));
  EXPECT_THAT(root.Member("metric")->Enum({"cosine", "euclidean"}),
              IsOkAndHolds(std::string("cosine")));
  EXPECT_THAT(root.Member("metric")->Enum({"euclidean"}),
              InvalidNaming(R"(metric: expected "euclidean", got "cosine")"));
}

TEST(JsonReaderTest, ArraysCheckSizeAndElements) {
  const Json json = Parse(R"({"v": [1, 2], "names": ["a", 3], "o": {}})");
  const JsonReader root(json, "s");
  EXPECT_THAT(root.Get(&JsonReader::NumberArray, "v", NumberArraySpec{.size = 2}),
              IsOkAndHolds(ElementsAre(1.0, 2.0)));
  EXPECT_THAT(root.Get(&JsonReader::NumberArray, "v", NumberArraySpec{.size = 3}),
              InvalidNaming("s.v: expected 3 numbers, got 2"));
  EXPECT_THAT(root.Get(&JsonReader::NumberArray, "o", NumberArraySpec{}),
              InvalidNaming("s.o: expected an array of numbers, got object"));
  EXPECT_THAT(root.Get(&JsonReader::StringArray, "names"),
              InvalidNaming("s.names[1]: expected a string, got number"));
  EXPECT_THAT(root.Get(&JsonReader::StringArray, "o"),
              InvalidNaming("s.o: expected an array of strings, got object"));
  const Json with_nan = {{"v", {1.0, std::nan("")}}};
  EXPECT_THAT(
      JsonReader(with_nan).Get(&JsonReader::NumberArray, "v", NumberArraySpec{.finite = true}),
      InvalidNaming("v[1]: not finite"));
  EXPECT_TRUE(JsonReader(with_nan).Get(&JsonReader::NumberArray, "v", NumberArraySpec{}).ok());
}

TEST(JsonReaderTest, ArraysOfParsedElementsStopAtTheFirstError) {
  const Json json = Parse(R"({"xs": [1, 2, 3], "bad": [1, "two", null], "o": {}})");
  const JsonReader root(json);
  auto number = [](const JsonReader& e) { return e.Number(); };
  EXPECT_THAT(root.ArrayOf("xs", number), IsOkAndHolds(ElementsAre(1.0, 2.0, 3.0)));
  EXPECT_THAT(root.ArrayOf("bad", number), InvalidNaming("bad[1]: expected a number, got string"));
  EXPECT_THAT(root.ArrayOf("o", number, "an array of batches"),
              InvalidNaming("o: expected an array of batches, got object"));
  EXPECT_THAT(root.ArrayOf("missing", number), InvalidNaming("missing: required field missing"));
  const Json nested = Parse(R"([[1], [2, {}]])");
  EXPECT_THAT(
      JsonReader(nested, "b").Elements([&](const JsonReader& row) { return row.Elements(number); }),
      InvalidNaming("b[1][1]: expected a number, got object"));
}

TEST(JsonReaderTest, NonArraysHaveNoElementsAndNonObjectsNoOptionalMembers) {
  const Json json = Parse(R"("text")");
  const JsonReader root(json);
  EXPECT_EQ(root.size(), 0u);
  EXPECT_FALSE(root.OptionalMember("a").has_value());
  EXPECT_THAT(root.Member("a"), InvalidNaming("top level: expected an object, got string"));
}

}  // namespace
}  // namespace router::core
