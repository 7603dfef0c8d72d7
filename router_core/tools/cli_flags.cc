#include "router_core/tools/cli_flags.h"

#include <algorithm>
#include <iostream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace router::core {

absl::StatusOr<std::vector<CliFlag>> SplitFlags(int argc, const char* const* argv,
                                                absl::Span<const absl::string_view> switches) {
  std::vector<CliFlag> flags;
  for (int k = 1; k < argc; ++k) {
    CliFlag flag{argv[k], ""};
    if (std::find(switches.begin(), switches.end(), flag.name) != switches.end()) {
      flags.push_back(std::move(flag));
      continue;
    }
    if (!absl::StartsWith(flag.name, "--")) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", flag.name, "'"));
    }
    if (const size_t eq = flag.name.find('='); eq != std::string::npos) {
      flag.value = flag.name.substr(eq + 1);
      flag.name.resize(eq);
      if (std::find(switches.begin(), switches.end(), flag.name) != switches.end()) {
        return absl::InvalidArgumentError(absl::StrCat(flag.name, " takes no value"));
      }
    } else {
      if (k + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat(flag.name, " needs a value"));
      }
      flag.value = argv[++k];
    }
    flags.push_back(std::move(flag));
  }
  return flags;
}

void ToolMessage(absl::string_view tool, absl::string_view message) {
  std::cerr << tool << ": " << message << std::endl;
}

int ToolError(absl::string_view tool, int exit_code, absl::string_view message) {
  ToolMessage(tool, message);
  return exit_code;
}

bool HelpRequested(int argc, const char* const* argv) {
  for (int k = 1; k < argc; ++k) {
    const absl::string_view arg = argv[k];
    if (arg == "--help" || arg == "-h") return true;
  }
  return false;
}

bool PrintUsageIfAsked(int argc, const char* const* argv, absl::string_view usage) {
  if (!HelpRequested(argc, argv)) return false;
  std::cout << usage;
  return true;
}

}  // namespace router::core
