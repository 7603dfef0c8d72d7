// File: cli_flags.h
//
// What the training and evaluation tools (router_train, router_eval) share: the frame of their
// main (--help, flag errors) and splitting argv into flags. A flag is "--name=value",
// "--name value", or a bare "--name" for the names the caller declares as switches (they take no
// value). Each tool then matches the names it knows and parses the values itself, so the errors
// name its own flags.
//
// Thread-safety: pure, except PrintUsageIfAsked (stdout), ToolMessage and ToolError (stderr), and
// RunFlagTool (both).
//
// Errors: INVALID_ARGUMENT "unexpected argument 'x'" for an argument that does not start with
// "--", "--name needs a value" for a valued flag at the end of argv, and "--name takes no value"
// for "--name=value" where --name is a switch.

#ifndef ROUTER_CORE_TOOLS_CLI_FLAGS_H_
#define ROUTER_CORE_TOOLS_CLI_FLAGS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace router::core {

struct CliFlag {
  std::string name;   // with its leading "--"
  std::string value;  // empty for a switch
};

// "<tool>: <message>" as one line on stderr; ToolError also returns `exit_code` (for
// `return ToolError(...)` in a main).
void ToolMessage(absl::string_view tool, absl::string_view message);
int ToolError(absl::string_view tool, int exit_code, absl::string_view message);

// Whether any of argv[1..argc-1] is "--help" or "-h" (which wins over every other argument).
bool HelpRequested(int argc, const char* const* argv);
// When HelpRequested, prints `usage` on stdout and returns true (the tool then exits 0).
bool PrintUsageIfAsked(int argc, const char* const* argv, absl::string_view usage);

// The main of a flag-parsing tool: with --help, prints `usage` and returns 0; otherwise
// `parse(argc, argv)`, whose error becomes "<tool>: <message> (see --help)" on stderr and exit
// code 2; then `run(flags)`, whose exit code it returns.
template <typename Flags>
int RunFlagTool(absl::string_view tool, absl::string_view usage, int argc, char** argv,
                absl::StatusOr<Flags> (*parse)(int argc, char** argv),
                int (*run)(const Flags& flags)) {
  constexpr int kExitUsage = 2;
  if (PrintUsageIfAsked(argc, argv, usage)) return 0;
  absl::StatusOr<Flags> flags = parse(argc, argv);
  if (!flags.ok()) {
    return ToolError(tool, kExitUsage, absl::StrCat(flags.status().message(), " (see --help)"));
  }
  return run(*flags);
}

// argv[1..argc-1] as flags, in order.
absl::StatusOr<std::vector<CliFlag>> SplitFlags(int argc, const char* const* argv,
                                                absl::Span<const absl::string_view> switches);

}  // namespace router::core

#endif  // ROUTER_CORE_TOOLS_CLI_FLAGS_H_
