// File: status_matchers.h
//
// gMock matchers for absl::Status (Debian's Abseil 20220623 ships none): IsOk(),
// StatusIs(code, message_matcher), IsOkAndHolds(value_matcher) and InvalidNaming(text).
// Tests in namespaces router::core and router::server name them, and HasSubstr (StatusIs's usual
// message matcher), unqualified: the using-declarations at the end of this header stand for every
// test file's.

#ifndef ROUTER_TESTS_ROUTER_CORE_TESTING_STATUS_MATCHERS_H_
#define ROUTER_TESTS_ROUTER_CORE_TESTING_STATUS_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace router::core::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.ok();
}

MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()), result_listener);
}

// An OK StatusOr whose value matches `value_matcher`.
MATCHER_P(IsOkAndHolds, value_matcher, "") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status().ToString();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

// An INVALID_ARGUMENT status (or StatusOr) whose message contains `text` (a field path, say).
MATCHER_P(InvalidNaming, text, "") {
  return ::testing::ExplainMatchResult(
      StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr(text)), arg,
      result_listener);
}

}  // namespace router::core::testing

namespace router::core {

using ::router::core::testing::InvalidNaming;
using ::router::core::testing::IsOk;
using ::router::core::testing::IsOkAndHolds;
using ::router::core::testing::StatusIs;
using ::testing::HasSubstr;

}  // namespace router::core

namespace router::server {

using ::router::core::testing::InvalidNaming;
using ::router::core::testing::IsOk;
using ::router::core::testing::IsOkAndHolds;
using ::router::core::testing::StatusIs;
using ::testing::HasSubstr;

}  // namespace router::server

#endif  // ROUTER_TESTS_ROUTER_CORE_TESTING_STATUS_MATCHERS_H_
