#include "router_core/estimate/dataset.h"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {


const std::string kRouterbench = std::string(ROUTER_DATA_DIR) + "/routerbench_subset/derived";

const Dataset& Routerbench() {
  static const Dataset* data = [] {
    absl::StatusOr<Dataset> d = ReadDataset(kRouterbench);
    // No skip: the tests must run on the real data.
    if (!d.ok()) {
      ADD_FAILURE() << "cannot read " << kRouterbench << ": " << d.status();
      std::abort();
    }
    return new Dataset(*std::move(d));
  }();
  return *data;
}

TEST(DatasetTest, ReadsRouterbenchSubset) {
  const Dataset& d = Routerbench();
  EXPECT_EQ(d.name, "routerbench_subset");
  EXPECT_EQ(d.prompts.size(), 3178u);
  ASSERT_EQ(d.models.size(), 11u);
  EXPECT_EQ(d.models[0].name, "WizardLM/WizardLM-13B-V1.2");
  int64_t labelled = 0, costed = 0;
  for (size_t k = 0; k < d.correct.size(); ++k) {
    labelled += std::isnan(d.correct[k]) ? 0 : 1;
    costed += std::isnan(d.cost_usd[k]) ? 0 : 1;
  }
  EXPECT_EQ(labelled, 34804);  // 3178 x 11 minus the 154 blank upstream cells
  EXPECT_EQ(costed, 34804);
  EXPECT_EQ(d.prompts[0].id, "arc_challenge_train:0");
  EXPECT_EQ(d.prompts[0].task, "arc-challenge");
  EXPECT_EQ(d.prompts[0].upstream_split, "train");
  // models.csv: gpt-4 mean_score 0.8799 over 3164 labels.
  int gpt4 = -1;
  for (size_t j = 0; j < d.models.size(); ++j) {
    if (d.models[j].name == "gpt-4-1106-preview") gpt4 = static_cast<int>(j);
  }
  ASSERT_GE(gpt4, 0);
  double sum = 0;
  int n = 0;
  for (size_t p = 0; p < d.prompts.size(); ++p) {
    const double y = d.correct[d.at(static_cast<int64_t>(p), gpt4)];
    if (!std::isnan(y)) sum += y, ++n;
  }
  EXPECT_EQ(n, 3164);
  EXPECT_NEAR(sum / n, 0.8799, 1e-4);
}

TEST(DatasetTest, ReadsPricesOfNim9AndKeepsOnlyLabelledModels) {
  absl::StatusOr<Dataset> d = ReadDataset(std::string(ROUTER_DATA_DIR) + "/llmrouter_nim9/derived");
  ASSERT_THAT(d, IsOk());
  ASSERT_EQ(d->models.size(), 9u);  // models.csv lists 14; 9 have labels
  EXPECT_EQ(d->models[2].name, "gemma-2-9b-it");
  EXPECT_EQ(d->models[2].input_usd_per_mtok, 0.1);
  EXPECT_EQ(d->models[2].output_usd_per_mtok, 0.1);
  EXPECT_EQ(d->models[2].params_b, 9.0);
  EXPECT_TRUE(std::isnan(d->cost_usd[0]));
}

TEST(DatasetTest, SplitIsDeterministicDisjointAndKeepsDuplicateTextsTogether) {
  const Dataset& d = Routerbench();
  SplitOptions options;
  options.seed = 42;
  absl::StatusOr<DatasetSplit> a = SplitDataset(d, options);
  absl::StatusOr<DatasetSplit> b = SplitDataset(d, options);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->train, b->train);
  EXPECT_EQ(a->calibration, b->calibration);
  EXPECT_EQ(a->test, b->test);

  options.seed = 43;
  absl::StatusOr<DatasetSplit> c = SplitDataset(d, options);
  ASSERT_THAT(c, IsOk());
  EXPECT_NE(a->train, c->train);

  const size_t n = d.prompts.size();
  EXPECT_EQ(a->train.size() + a->calibration.size() + a->test.size(), n);
  EXPECT_NEAR(static_cast<double>(a->train.size()) / n, 0.6, 0.01);
  EXPECT_NEAR(static_cast<double>(a->test.size()) / n, 0.2, 0.01);

  absl::flat_hash_map<std::string, int> part_of_text;
  std::set<int64_t> seen;
  int part = 0;
  for (const auto* rows : {&a->train, &a->calibration, &a->test}) {
    for (const int64_t p : *rows) {
      EXPECT_TRUE(seen.insert(p).second) << "prompt " << p << " in two parts";
      const auto [it, inserted] = part_of_text.emplace(d.prompts[p].text, part);
      EXPECT_EQ(it->second, part) << "text of prompt " << d.prompts[p].id << " in two parts";
    }
    ++part;
  }
  // The data do hold duplicate texts (SOURCE.md: 2 MBPP texts in train and test upstream).
  EXPECT_LT(part_of_text.size(), n);
}

TEST(DatasetTest, SplitRejectsBadFractions) {
  SplitOptions options;
  options.test = 0.3;
  EXPECT_THAT(SplitDataset(Routerbench(), options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be 1")));
  options.test = -0.1;
  options.train = 0.9;
  EXPECT_THAT(SplitDataset(Routerbench(), options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("test")));
}

class MalformedDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("dataset_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    Write("prompts.jsonl",
          "{\"prompt_id\":\"a\",\"task\":\"t\",\"split\":\"train\",\"text\":\"hello\"}\n"
          "{\"prompt_id\":\"b\",\"task\":\"t\",\"text\":\"x, \\\"y\\\"\"}\n");
    Write("models.csv",
          "model,input_price_usd_per_1M_tokens,output_price_usd_per_1M_tokens\n"
          "m1,0.2,0.4\n\"m,2\",,\n");
    Write("labels.csv",
          "prompt_id,model,score,correct,cost_usd\n"
          "a,m1,1,1,0.5\n"
          "b,\"m,2\",0,0,\n");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  std::string dir() const { return dir_.string(); }

  std::filesystem::path dir_;
};

TEST_F(MalformedDatasetTest, WellFormedSmallDatasetWithQuotedFields) {
  absl::StatusOr<Dataset> d = ReadDataset(dir());
  ASSERT_THAT(d, IsOk());
  ASSERT_EQ(d->models.size(), 2u);
  EXPECT_EQ(d->models[1].name, "m,2");
  EXPECT_FALSE(d->models[1].input_usd_per_mtok.has_value());
  EXPECT_EQ(d->prompts[1].text, "x, \"y\"");
  EXPECT_EQ(d->correct[d.value().at(0, 0)], 1.0);
  EXPECT_TRUE(std::isnan(d->correct[d.value().at(0, 1)]));
  EXPECT_TRUE(std::isnan(d->cost_usd[d.value().at(1, 1)]));
}

TEST_F(MalformedDatasetTest, MissingDirectoryAndFiles) {
  EXPECT_THAT(ReadDataset(dir() + "/nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  std::filesystem::remove(dir_ / "labels.csv");
  EXPECT_THAT(ReadDataset(dir()), StatusIs(absl::StatusCode::kNotFound, HasSubstr("labels.csv")));
}

TEST_F(MalformedDatasetTest, BadJsonLineNamesFileAndLine) {
  Write("prompts.jsonl", "{\"prompt_id\":\"a\",\"task\":\"t\",\"text\":\"x\"}\n{not json\n");
  EXPECT_THAT(ReadDataset(dir()), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("prompts.jsonl:2: invalid JSON")));
}

TEST_F(MalformedDatasetTest, MissingKeyAndDuplicateId) {
  Write("prompts.jsonl", "{\"prompt_id\":\"a\",\"task\":\"t\"}\n");
  EXPECT_THAT(ReadDataset(dir()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("prompts.jsonl:1: missing string field 'text'")));
  Write("prompts.jsonl",
        "{\"prompt_id\":\"a\",\"task\":\"t\",\"text\":\"x\"}\n"
        "{\"prompt_id\":\"a\",\"task\":\"t\",\"text\":\"y\"}\n");
  EXPECT_THAT(ReadDataset(dir()), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("prompts.jsonl:2: duplicate prompt_id 'a'")));
}

TEST_F(MalformedDatasetTest, BadLabelsNameFileAndLine) {
  Write("labels.csv", "prompt_id,model,score,correct,cost_usd\na,m1,1,1,0.5\na,m1,abc,1,\n");
  EXPECT_THAT(ReadDataset(dir()), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("labels.csv:3: second label")));
  Write("labels.csv", "prompt_id,model,score,correct,cost_usd\nb,m1,abc,1,\n");
  EXPECT_THAT(ReadDataset(dir()), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("labels.csv:2: score: not a finite number")));
  Write("labels.csv", "prompt_id,model,score,correct,cost_usd\nzzz,m1,1,1,\n");
  EXPECT_THAT(ReadDataset(dir()), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("labels.csv:2: prompt_id 'zzz'")));
  Write("labels.csv", "prompt_id,model,score,correct,cost_usd\na,m9,1,1,\n");
  EXPECT_THAT(ReadDataset(dir()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("labels.csv:2: model 'm9'")));
  Write("labels.csv", "prompt_id,model,score,correct,cost_usd\na,m1,1,1\n");
  EXPECT_THAT(ReadDataset(dir()), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("labels.csv:2: expected 5 fields, got 4")));
  Write("labels.csv", "prompt_id,model,score,correct,cost_usd\n\"a,m1,1,1,\n");
  EXPECT_THAT(ReadDataset(dir()), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("labels.csv:2: unterminated quoted field")));
  Write("labels.csv", "prompt_id,model,score,correct\na,m1,1,1\n");
  EXPECT_THAT(ReadDataset(dir()), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("labels.csv:1: no 'cost_usd' column")));
  Write("labels.csv", "prompt_id,model,score,correct,cost_usd\na,m1,1,2,\n");
  EXPECT_THAT(ReadDataset(dir()), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("labels.csv:2: correct: outside [0, 1]")));
}

}  // namespace
}  // namespace router::core
