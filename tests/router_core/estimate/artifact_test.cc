#include "router_core/estimate/artifact.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/estimate/crc32c.h"
#include "router_core/estimate/knn_estimator.h"
#include "router_core/estimate/uniroute_estimator.h"
#include "tests/router_core/estimate/real_data.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::router::core::testing::Real;
using ::testing::AllOf;
using namespace std::string_literals;

const nlohmann::json kProvenance = {{"dataset", "routerbench_subset"}, {"seed", 7}};

// Everything from scratch: the featurizer, the estimator and the cost model.
std::string TrainAndSerialize() {
  std::vector<std::string> texts;
  for (const int64_t p : Real().train_rows) texts.push_back(Real().dataset.prompts[p].text);
  FeaturizerOptions fo;
  fo.dim = 64;
  fo.idf_bits = 10;
  absl::StatusOr<Featurizer> f = Featurizer::Fit(fo, texts);
  EXPECT_THAT(f, IsOk());
  const TrainingSet train = testing::MakeTrainingSet(Real().dataset, Real().train_rows, *f);
  absl::StatusOr<std::unique_ptr<KnnEstimator>> knn = KnnEstimator::Fit(train, KnnOptions());
  EXPECT_THAT(knn, IsOk());
  absl::StatusOr<CostModel> cost =
      CostModel::Fit(Real().dataset, Real().split.train, CostModelOptions());
  EXPECT_THAT(cost, IsOk());
  absl::StatusOr<std::string> bytes = SerializeArtifact(*f, **knn, *cost, kProvenance);
  EXPECT_THAT(bytes, IsOk());
  return bytes.value_or("");
}

const std::string& Bytes() {
  static const std::string* bytes = new std::string(TrainAndSerialize());
  return *bytes;
}

std::vector<Predictions> PredictSome(const Predictor& p) {
  std::vector<Predictions> all;
  for (size_t k = 0; k < 40; ++k) {
    PredictRequest r;
    r.text = Real().dataset.prompts[Real().test_rows[k]].text;
    absl::StatusOr<Predictions> out = p.Predict(r);
    EXPECT_THAT(out, IsOk());
    all.push_back(*std::move(out));
  }
  return all;
}

TEST(ArtifactTest, SameTrainingGivesTheSameBytes) {
  EXPECT_EQ(TrainAndSerialize(), Bytes());
  EXPECT_EQ(Bytes().substr(0, 3), "\xd9\xd9\xf7");
}

TEST(ArtifactTest, FileRoundTripGivesIdenticalPredictions) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("artifact_test_" + std::to_string(::getpid())))
          .string();
  ASSERT_THAT(WriteArtifactFile(path, Bytes()), IsOk());
  absl::StatusOr<Artifact> a = ReadArtifactFile(path);
  std::filesystem::remove(path);
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->provenance, kProvenance);
  EXPECT_EQ(a->estimator->kind(), "knn");
  absl::StatusOr<Artifact> b = ParseArtifact(Bytes());
  ASSERT_THAT(b, IsOk());
  // Serializing what was loaded reproduces the file.
  absl::StatusOr<std::string> again =
      SerializeArtifact(a->featurizer, *a->estimator, a->cost_model, a->provenance);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(*again, Bytes());

  absl::StatusOr<Predictor> pa = MakePredictor(*std::move(a));
  absl::StatusOr<Predictor> pb = MakePredictor(*std::move(b));
  ASSERT_THAT(pa, IsOk());
  ASSERT_THAT(pb, IsOk());
  const std::vector<Predictions> x = PredictSome(*pa);
  const std::vector<Predictions> y = PredictSome(*pb);
  ASSERT_EQ(x.size(), y.size());
  for (size_t k = 0; k < x.size(); ++k) {
    EXPECT_EQ(x[k].quality, y[k].quality);
    EXPECT_EQ(x[k].quality_lower, y[k].quality_lower);
    EXPECT_EQ(x[k].cost_usd, y[k].cost_usd);
  }
}

TEST(ArtifactTest, LoadsAUniRouteEstimatorByKind) {
  const TrainingSet& train = Real().train;
  UniRouteOptions o;
  o.num_clusters = 5;
  absl::StatusOr<std::unique_ptr<UniRouteEstimator>> uniroute =
      FitUniRoute(train.features, train, o);
  ASSERT_THAT(uniroute, IsOk());
  absl::StatusOr<CostModel> cost =
      CostModel::Fit(Real().dataset, Real().split.train, CostModelOptions());
  ASSERT_THAT(cost, IsOk());
  absl::StatusOr<std::string> bytes =
      SerializeArtifact(Real().featurizer, **uniroute, *cost, kProvenance);
  ASSERT_THAT(bytes, IsOk());
  absl::StatusOr<Artifact> a = ParseArtifact(*bytes);
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->estimator->kind(), "uniroute");
}

// The shipped artifact loads and writes back to its own bytes: the state formats are unchanged.
TEST(ArtifactTest, TheDeployedArtifactLoadsAndReserializesToTheSameBytes) {
  const std::string path =
      std::string(ROUTER_SOURCE_DIR) + "/deploy/models/routerbench_uniroute.cbor";
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in.good()) << path;
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  absl::StatusOr<Artifact> artifact = ParseArtifact(bytes);
  ASSERT_THAT(artifact, IsOk());
  EXPECT_EQ(artifact->estimator->kind(), "uniroute");
  absl::StatusOr<std::string> again = SerializeArtifact(artifact->featurizer, *artifact->estimator,
                                                        artifact->cost_model, artifact->provenance);
  ASSERT_THAT(again, IsOk());
  EXPECT_TRUE(*again == bytes) << "re-serialized " << again->size() << " bytes, file has "
                               << bytes.size();
}

TEST(ArtifactTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadArtifactFile("/nonexistent/dir/x.cbor"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/dir/x.cbor")));
}

TEST(ArtifactTest, TruncatedOrCorruptFilesAreErrorsNamingTheProblem) {
  const std::string& good = Bytes();
  for (const size_t size :
       {size_t{0}, size_t{2}, size_t{3}, size_t{10}, good.size() / 2, good.size() - 1}) {
    EXPECT_THAT(ParseArtifact(good.substr(0, size)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("artifact")))
        << "truncated to " << size;
  }
  EXPECT_THAT(ParseArtifact(good.substr(0, good.size() / 2)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("checksum mismatch")));
  EXPECT_THAT(
      ParseArtifact("{\"format\": \"router-estimator\"}"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a router estimator artifact")));
  // Flipping bytes anywhere never crashes: every result is OK or a clear error.
  for (size_t pos = 3; pos < good.size(); pos += good.size() / 97) {
    std::string bad = good;
    bad[pos] = static_cast<char>(bad[pos] ^ 0x5a);
    const absl::StatusOr<Artifact> a = ParseArtifact(bad);
    if (!a.ok()) {
      EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << a.status();
    }
  }
}

// Decoding recurses once per level: 100,000 nested arrays (one byte each) overflowed the stack.
// Deep definite and indefinite arrays and maps are refused before decoding, naming the byte; a
// document just under the limit still decodes (and is then refused for its content).
TEST(ArtifactTest, DeeplyNestedDocumentsAreRefusedWithoutCrashing) {
  const std::string tag("\xd9\xd9\xf7");
  // Each level: an array of one item, an indefinite array, a map of one pair (key 0) or an
  // indefinite map (key 0), whose item or value is the next level. The 65th level opens at byte
  // 3 + 64 x (bytes per level).
  const struct {
    std::string level;
    const char* byte;
  } cases[] = {{"\x81"s, "(byte 67)"}, {"\x9f"s, "(byte 67)"}, {"\xa1\x00"s, "(byte 131)"},
               {"\xbf\x00"s, "(byte 131)"}};
  for (const auto& c : cases) {
    std::string deep = tag;
    for (int k = 0; k < 100000; ++k) deep += c.level;
    EXPECT_THAT(ParseArtifact(deep),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("artifact: nested more than 64 levels deep"),
                               HasSubstr(c.byte))))
        << c.byte;
  }
  std::string shallow = tag + std::string(kMaxArtifactDepth, '\x81') + '\x00';
  EXPECT_THAT(ParseArtifact(shallow), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("not a router estimator artifact")));
  // Containers that close count as such: 1000 siblings at depth 2 are not deep.
  std::string wide = tag + "\x99\x03\xe8";  // an array of 1000 items
  for (int k = 0; k < 1000; ++k) wide += "\x81\x00"s;
  EXPECT_THAT(ParseArtifact(wide), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("not a router estimator artifact")));
}

// Re-encodes the artifact with `edit` applied to its document, with a matching checksum where the
// edited document keeps its checksum field.
template <typename Edit>
std::string Edited(Edit edit, const std::string& bytes = Bytes()) {
  nlohmann::json doc = nlohmann::json::from_cbor(bytes.begin() + 3, bytes.end());
  edit(doc);
  std::string out("\xd9\xd9\xf7");
  nlohmann::json::to_cbor(doc, out);
  (void)StampArtifactChecksum(&out);
  return out;
}

std::string ReadSourceFile(const std::string& relative) {
  const std::string path = std::string(ROUTER_SOURCE_DIR) + "/" + relative;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The checksum covers every byte, so no change of one byte to any other value loads, and each is
// refused as damage: a checksum mismatch, or a checksum field that is not where it belongs (a
// change in the first 14 bytes).
TEST(ArtifactTest, EverySingleByteMutationOfASmallArtifactIsRefused) {
  std::string bytes = ReadSourceFile(
      "tests/router_core/estimate/artifact_fuzz_corpus/classifier_embeddings.cbor");
  ASSERT_THAT(ParseArtifact(bytes), IsOk());
  int refused = 0;
  for (size_t pos = 0; pos < bytes.size(); ++pos) {
    const char original = bytes[pos];
    for (int delta = 1; delta < 256; ++delta) {
      bytes[pos] = static_cast<char>(static_cast<uint8_t>(original) ^ delta);
      const absl::StatusOr<Artifact> a = ParseArtifact(bytes);
      if (a.ok()) {
        ADD_FAILURE() << "byte " << pos << " xor " << delta << " loads";
      } else if (a.status().code() == absl::StatusCode::kInvalidArgument) {
        ++refused;
      } else {
        ADD_FAILURE() << "byte " << pos << " xor " << delta << ": " << a.status();
      }
    }
    bytes[pos] = original;
  }
  EXPECT_EQ(refused, static_cast<int>(bytes.size()) * 255);
  // Past the tag and the checksum field's place, the checksum is what refuses them.
  bytes[100] = static_cast<char>(bytes[100] ^ 1);
  EXPECT_THAT(ParseArtifact(bytes), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("artifact: checksum mismatch (stored 0x")));
}

// The checksum is the map's first key, bytes 14-17 (artifact.h), over the file with those zeroed.
TEST(ArtifactTest, TheChecksumIsTheFirstKeyOverTheWholeFile) {
  const std::string& bytes = Bytes();
  EXPECT_EQ(bytes.substr(4, 10), "\x68" "checksum" "\x44");
  std::string zeroed = bytes;
  zeroed.replace(14, 4, std::string(4, '\0'));
  const uint32_t crc = Crc32c(zeroed);
  const std::string stored = bytes.substr(14, 4);
  EXPECT_EQ(stored, std::string({static_cast<char>(crc >> 24), static_cast<char>(crc >> 16),
                                 static_cast<char>(crc >> 8), static_cast<char>(crc)}));
}

// Version 1 had no checksum: refused, naming the upgrade, which keeps the content and gives the
// bytes the current writer writes.
TEST(ArtifactTest, AVersionOneArtifactIsRefusedAndUpgradedToTheSameContent) {
  const std::string v1 = Edited([](nlohmann::json& d) {
    d.erase("checksum");
    d["version"] = 1;
  });
  EXPECT_THAT(ParseArtifact(v1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("version 1 artifact has no checksum"),
                             HasSubstr("router_train --upgrade OLD --out NEW"))));
  absl::StatusOr<std::string> upgraded = UpgradeArtifact(v1);
  ASSERT_THAT(upgraded, IsOk());
  EXPECT_TRUE(*upgraded == Bytes());
  EXPECT_THAT(UpgradeArtifact(Bytes()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("only a version 1 artifact is upgraded; this one is version 2")));
  // A damaged version-1 artifact is not made loadable by the upgrade.
  const std::string bad_v1 = Edited(
      [](nlohmann::json& d) {
        d["models"][0] = "someone";
      },
      v1);
  EXPECT_THAT(UpgradeArtifact(bad_v1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("models")));
  // A file whose checksum field was damaged, not a version-1 one, is named as damaged.
  std::string moved = Bytes();
  moved[5] = 'C';
  EXPECT_THAT(ParseArtifact(moved),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no checksum where it belongs")));
  EXPECT_THAT(StampArtifactChecksum(&moved),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no checksum field")));
}

TEST(ArtifactTest, WrongVersionFormatKindOrStateAreNamed) {
  EXPECT_THAT(ParseArtifact(Edited([](nlohmann::json& d) { d["version"] = 3; })),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unsupported artifact version 3 (this build reads 2)")));
  EXPECT_THAT(
      ParseArtifact(Edited([](nlohmann::json& d) { d["format"] = "other"; })),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a router estimator artifact")));
  EXPECT_THAT(
      ParseArtifact(Edited([](nlohmann::json& d) { d["estimator"]["kind"] = "forest"; })),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown estimator kind 'forest'")));
  EXPECT_THAT(ParseArtifact(Edited([](nlohmann::json& d) { d["estimator"]["kind"] = "uniroute"; })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("estimator state")));
  EXPECT_THAT(ParseArtifact(Edited([](nlohmann::json& d) { d["estimator"]["state"]["dim"] = 3; })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("knn.")));
  EXPECT_THAT(ParseArtifact(Edited([](nlohmann::json& d) { d["featurizer"]["dim"] = 32; })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("featurizer")));
  EXPECT_THAT(ParseArtifact(Edited([](nlohmann::json& d) { d["models"][0] = "someone"; })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("models")));
  // A model name reaches every answer as a protobuf string, which must be UTF-8 (utf8_test covers
  // the forms refused): Latin-1 is refused, naming the entry.
  EXPECT_THAT(ParseArtifact(Edited([](nlohmann::json& d) { d["models"][1] = "caf\xe9"; })),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("artifact.models[1]: not valid UTF-8")));
  EXPECT_THAT(ParseArtifact(Edited([](nlohmann::json& d) { d.erase("cost_model"); })),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("artifact.cost_model: required field missing")));
  EXPECT_THAT(ParseArtifact(Edited([](nlohmann::json& d) { d["provenance"] = 3; })),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("provenance")));
}

}  // namespace
}  // namespace router::core
