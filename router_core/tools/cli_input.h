// File: cli_input.h
//
// What the JSON-in, JSON-out tools (router_solve, router_plan) share: reading the input file and
// printing a status on one line.
//
// Thread-safety: ReadInputFile reads stdin for "-"; otherwise both are pure.

#ifndef ROUTER_CORE_TOOLS_CLI_INPUT_H_
#define ROUTER_CORE_TOOLS_CLI_INPUT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace router::core {

// The whole of `path` ("-" = stdin). NOT_FOUND when it cannot be opened, UNAVAILABLE on a read
// error, both naming the file and the system's reason.
absl::StatusOr<std::string> ReadInputFile(const std::string& path);

// The status as one line: the message alone for INVALID_ARGUMENT (it names the field), with its
// code otherwise.
std::string DescribeStatus(const absl::Status& status);

}  // namespace router::core

#endif  // ROUTER_CORE_TOOLS_CLI_INPUT_H_
