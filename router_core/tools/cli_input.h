// File: cli_input.h
//
// What the JSON-in, JSON-out tools (router_solve, router_plan) share: their whole main (one
// `--FLAG FILE` argument, reading the file, one line of JSON out, one-line errors), reading the
// input file and printing a status on one line.
//
// Thread-safety: ReadInputFile and RunJsonTool read stdin for "-" (RunJsonTool also writes
// stdout and stderr); DescribeStatus is pure.

#ifndef ROUTER_CORE_TOOLS_CLI_INPUT_H_
#define ROUTER_CORE_TOOLS_CLI_INPUT_H_

#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace router::core {

// The whole of `path` ("-" = stdin). NOT_FOUND when it cannot be opened, UNAVAILABLE on a read
// error, both naming the file and the system's reason.
absl::StatusOr<std::string> ReadInputFile(const std::string& path);

// The status as one line: the message alone for INVALID_ARGUMENT (it names the field), with its
// code otherwise.
std::string DescribeStatus(const absl::Status& status);

// The main of a JSON-in, JSON-out tool `name`: `--help`/`-h` prints `usage` (exit 0); otherwise
// exactly one `FLAG FILE` or `FLAG=FILE` (FILE non-empty, "-" = stdin) is required (else exit 2
// with "<name>: <what is wrong>" on stderr); the file's text goes to `answer`, whose string is
// printed as one line on stdout (exit 0). An unreadable file, an error from `answer` (as
// DescribeStatus) or a failed write is one line on stderr and exit 1.
int RunJsonTool(absl::string_view name, absl::string_view usage, absl::string_view flag, int argc,
                char** argv,
                absl::FunctionRef<absl::StatusOr<std::string>(const std::string& text)> answer);

}  // namespace router::core

#endif  // ROUTER_CORE_TOOLS_CLI_INPUT_H_
