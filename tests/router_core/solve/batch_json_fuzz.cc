// libFuzzer target of ParseBatchProblemJson, the batch reader of router_solve and of the
// captured-batch replay: any bytes give a valid BatchProblem or INVALID_ARGUMENT, never a crash,
// a hang or unbounded memory. An accepted batch must pass ValidateBatchProblem and render.
// Seeds: batch_json_fuzz_corpus/. Run: build-fuzz/bin/batch_json_fuzz DIR (docs/fuzzing.md).

#include <cstddef>
#include <cstdint>

#include "router_core/solve/batch_json.h"
#include "router_core/solve/problem.h"
#include "tests/router_core/testing/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace router::core;
  const absl::StatusOr<BatchProblem> problem = ParseBatchProblemJson(testing::FuzzText(data, size));
  if (!problem.ok()) {
    testing::CheckRefusal("ParseBatchProblemJson", problem.status());
    return 0;
  }
  testing::CheckInvariant(ValidateBatchProblem(*problem).ok(), "an accepted batch validates");
  return 0;
}
