// libFuzzer target of ReadDataset, the reader of a routing dataset's derived/ folder (router_train,
// router_eval): the input is the three files prompts.jsonl, models.csv and labels.csv in that
// order, separated by the line "#FILE" (a missing part is an empty file). They are written to a
// temporary folder (under $TMPDIR, removed at exit) and read back with ReadDataset, then split with
// the default SplitOptions. Any files give a Dataset or INVALID_ARGUMENT, never a crash, a hang or
// unbounded memory. A dataset read must have matrices of prompts x models and split into parts
// that hold every prompt once.
// Seeds: dataset_fuzz_corpus/. Run: build-fuzz/bin/dataset_fuzz DIR.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "router_core/estimate/dataset.h"
#include "tests/router_core/testing/fuzz_check.h"

namespace router::core {
namespace {

constexpr absl::string_view kSeparator = "\n#FILE\n";

// The temporary folder, made once per process and removed at exit.
const std::string& Folder() {
  static const std::string* folder = [] {
    std::filesystem::path base = std::filesystem::temp_directory_path();
    std::string pattern = (base / "dataset_fuzz_XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    std::atexit([] { std::filesystem::remove_all(Folder()); });
    return new std::string(pattern);
  }();
  return *folder;
}

void Write(const std::string& path, absl::string_view bytes) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), file) != bytes.size()) {
    std::perror(path.c_str());
    std::abort();
  }
  std::fclose(file);
}

}  // namespace
}  // namespace router::core

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace router::core;
  absl::string_view rest = testing::FuzzText(data, size);
  const char* names[3] = {"prompts.jsonl", "models.csv", "labels.csv"};
  for (int k = 0; k < 3; ++k) {
    const size_t at = k < 2 ? rest.find(kSeparator) : absl::string_view::npos;
    Write(Folder() + "/" + names[k], rest.substr(0, at));
    rest = at == absl::string_view::npos ? absl::string_view() : rest.substr(at + kSeparator.size());
  }
  const absl::StatusOr<Dataset> dataset = ReadDataset(Folder());
  if (!dataset.ok()) {
    testing::CheckRefusal("ReadDataset", dataset.status());
    return 0;
  }
  const size_t cells = dataset->prompts.size() * dataset->models.size();
  testing::CheckInvariant(dataset->score.size() == cells && dataset->correct.size() == cells &&
                              dataset->cost_usd.size() == cells,
                          "prompts x models matrices");
  const absl::StatusOr<DatasetSplit> split = SplitDataset(*dataset, SplitOptions());
  testing::CheckInvariant(split.ok(), "the default split succeeds");
  testing::CheckInvariant(split->train.size() + split->calibration.size() + split->test.size() ==
                              dataset->prompts.size(),
                          "every prompt in one part");
  return 0;
}
