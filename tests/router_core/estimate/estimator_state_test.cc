#include "router_core/estimate/estimator_state.h"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core::estimate_internal {
namespace {

using Json = nlohmann::json;
using ::testing::ElementsAre;

constexpr StateLayout kVersioned = {.kind = "demo", .version = 2};
constexpr StateLayout kLegacy = {.kind = "old",
                                 .dim_key = "dim",
                                 .max_dim = 8,
                                 .models_key = "outputs",
                                 .models_required = true};

Json Models() { return Json::array({{{"name", "a"}, {"w", 1}}, {{"name", "b"}, {"w", 2}}}); }

TEST(StateEnvelopeTest, WritesTheSharedMembersUnderTheLayoutsKeys) {
  EXPECT_EQ(StateEnvelope(kVersioned, 4, {{"k", 1}}, Models()), (Json{{"kind", "demo"},
                                                                      {"version", 2},
                                                                      {"feature_dim", 4},
                                                                      {"options", {{"k", 1}}},
                                                                      {"models", Models()}}));
  EXPECT_EQ(
      StateEnvelope(kLegacy, 4, Json::object(), Models()),
      (Json{{"kind", "old"}, {"dim", 4}, {"options", Json::object()}, {"outputs", Models()}}));
}

TEST(StateReaderTest, ReadsWhatTheEnvelopeWrote) {
  const Json state = StateEnvelope(kVersioned, 4, {{"k", 1}}, Models());
  absl::StatusOr<StateReader> reader = StateReader::Open(state, kVersioned);
  ASSERT_THAT(reader, IsOk());
  EXPECT_EQ(reader->dim(), 4);
  int k = 0;
  ASSERT_THAT(ReadIntOptions(reader->options(), {{"k", &k}}), IsOk());
  EXPECT_EQ(k, 1);
  std::vector<std::string> names;
  std::vector<std::string> paths;
  ASSERT_THAT(reader->ForEachModel([&](const JsonReader& model, std::string name) {
    names.push_back(name);
    paths.push_back(model.path());
    return absl::OkStatus();
  }),
              IsOk());
  EXPECT_THAT(names, ElementsAre("a", "b"));
  EXPECT_THAT(paths, ElementsAre("demo.models[0]", "demo.models[1]"));
}

TEST(StateReaderTest, EnvelopeErrorsNameTheField) {
  const Json good = StateEnvelope(kVersioned, 4, {{"k", 1}}, Models());
  struct Case {
    const char* expected;
    void (*mutate)(Json&);
  };
  const Case cases[] = {
      {"demo: expected an object, got array", [](Json& j) { j = Json::array(); }},
      {"demo.kind: expected \"demo\", got \"other\"", [](Json& j) { j["kind"] = "other"; }},
      {"demo.version: unsupported version 3 (this build reads 2)",
       [](Json& j) { j["version"] = 3; }},
      {"demo.version: required field missing", [](Json& j) { j.erase("version"); }},
      {"demo.feature_dim: must be in [1, 2147483647], got 0",
       [](Json& j) { j["feature_dim"] = 0; }},
      {"demo.feature_dim: expected an integer, got 4.5", [](Json& j) { j["feature_dim"] = 4.5; }},
      {"demo.options: expected an object, got number", [](Json& j) { j["options"] = 1; }},
      {"demo.models: expected an array, got object", [](Json& j) { j["models"] = Json::object(); }},
  };
  for (const Case& c : cases) {
    Json j = good;
    c.mutate(j);
    EXPECT_THAT(StateReader::Open(j, kVersioned), InvalidNaming(c.expected)) << c.expected;
  }
  Json j = good;
  j["models"][1]["name"] = "a";
  absl::StatusOr<StateReader> reader = StateReader::Open(j, kVersioned);
  ASSERT_THAT(reader, IsOk());
  auto ok = [](const JsonReader&, std::string) { return absl::OkStatus(); };
  EXPECT_THAT(reader->ForEachModel(ok), InvalidNaming("demo.models[1].name: duplicate model 'a'"));
  j["models"][1]["name"] = "";
  reader = StateReader::Open(j, kVersioned);
  EXPECT_THAT(reader->ForEachModel(ok), InvalidNaming("demo.models[1].name: empty model name"));
  j["models"][1] = 7;
  reader = StateReader::Open(j, kVersioned);
  EXPECT_THAT(reader->ForEachModel(ok),
              InvalidNaming("demo.models[1]: expected an object, got number"));
}

TEST(StateReaderTest, TheLegacyLayoutHasNoVersionItsOwnKeysAndLimits) {
  Json state = StateEnvelope(kLegacy, 8, Json::object(), Models());
  EXPECT_THAT(StateReader::Open(state, kLegacy), IsOk());
  state["dim"] = 9;
  EXPECT_THAT(StateReader::Open(state, kLegacy),
              InvalidNaming("old.dim: must be in [1, 8], got 9"));
  state["dim"] = 8;
  state["outputs"] = Json::array();
  EXPECT_THAT(StateReader::Open(state, kLegacy), InvalidNaming("old.outputs: empty"));
}

TEST(OptionReadersTest, CheckTypesAndRanges) {
  const Json options = {{"i", 3000000000LL}, {"f", 1.5}, {"seed", -1}, {"s", "x"}};
  const JsonReader reader(options, "demo.options");
  int i = 0;
  double f = 0;
  uint64_t seed = 0;
  EXPECT_THAT(ReadIntOptions(reader, {{"i", &i}}), InvalidNaming("demo.options.i: must be in ["));
  EXPECT_THAT(ReadIntOptions(reader, {{"f", &i}}),
              InvalidNaming("demo.options.f: expected an integer, got 1.5"));
  EXPECT_THAT(ReadNumberOptions(reader, {{"s", &f}}),
              InvalidNaming("demo.options.s: expected a number, got string"));
  EXPECT_THAT(ReadNumberOptions(reader, {{"missing", &f}}),
              InvalidNaming("demo.options.missing: required field missing"));
  EXPECT_THAT(ReadSeedOption(reader, "seed", &seed),
              InvalidNaming("demo.options.seed: expected a non-negative integer, got -1"));
  EXPECT_THAT(OptionsError(reader, absl::InvalidArgumentError("k: expected 1..9, got 0")),
              InvalidNaming("demo.options.k: expected 1..9, got 0"));
  EXPECT_THAT(OptionsError(reader, absl::OkStatus()), IsOk());
}

TEST(CheckSuccessCountsTest, NamesTheFirstBadEntry) {
  const std::vector<double> count = {2, 3, 1};
  EXPECT_THAT(CheckSuccessCounts("m.success", count, std::vector<double>{1, 3, 0}), IsOk());
  EXPECT_THAT(CheckSuccessCounts("m.success", count, std::vector<double>{1, 4, 2}),
              InvalidNaming("m.success[1]: need 0 <= success <= count, got success 4, count 3"));
  EXPECT_THAT(CheckSuccessCounts("m.success", std::vector<double>{-1}, std::vector<double>{-1}),
              InvalidNaming("m.success[0]"));
}

TEST(CatchMalformedTest, TurnsAnEscapedJsonExceptionIntoInvalidArgument) {
  const Json number = 3;
  EXPECT_THAT(CatchMalformed("demo",
                             [&]() -> absl::StatusOr<std::unique_ptr<QualityEstimator>> {
                               (void)number.at("missing");  // throws type_error
                               return absl::InternalError("unreachable");
                             }),
              InvalidNaming("demo: malformed state: "));
}

}  // namespace
}  // namespace router::core::estimate_internal
