// File: fuzz_check.h
//
// What every libFuzzer target (tests/**/*_fuzz.cc) asserts of a refused input, beyond "no crash":
// the refusal is an absl::Status of the documented code with a message (which names the field).
// A violation prints the status and aborts, which libFuzzer reports as a finding with the input.
//
// Thread-safety: pure functions. Cost: O(1).

#ifndef ROUTER_TESTS_ROUTER_CORE_TESTING_FUZZ_CHECK_H_
#define ROUTER_TESTS_ROUTER_CORE_TESTING_FUZZ_CHECK_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace router::core::testing {

// The fuzzer's bytes as text.
inline absl::string_view FuzzText(const uint8_t* data, size_t size) {
  return absl::string_view(reinterpret_cast<const char*>(data), size);
}

// Aborts unless `status` is an error of code `code` with a non-empty message. `what` names the
// function that returned it, for the report.
inline void CheckRefusal(absl::string_view what, const absl::Status& status,
                         absl::StatusCode code = absl::StatusCode::kInvalidArgument) {
  if (status.code() == code && !status.message().empty()) return;
  std::fprintf(stderr, "%s: expected %s with a message, got %s\n", std::string(what).c_str(),
               absl::StatusCodeToString(code).c_str(), status.ToString().c_str());
  std::abort();
}

// Aborts with `what` when `holds` is false: an invariant of an accepted input.
inline void CheckInvariant(bool holds, absl::string_view what) {
  if (holds) return;
  std::fprintf(stderr, "invariant violated: %s\n", std::string(what).c_str());
  std::abort();
}

}  // namespace router::core::testing

#endif  // ROUTER_TESTS_ROUTER_CORE_TESTING_FUZZ_CHECK_H_
