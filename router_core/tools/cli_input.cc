#include "router_core/tools/cli_input.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace router::core {

// Reads the whole of `path` ("-" = stdin) with C stdio, which reports errors (a directory, EIO)
// through errno instead of the exceptions std::filebuf may throw.
absl::StatusOr<std::string> ReadInputFile(const std::string& path) {
  const bool is_stdin = path == "-";
  const std::string name = is_stdin ? std::string("stdin") : absl::StrCat("'", path, "'");
  errno = 0;
  std::FILE* file = is_stdin ? stdin : std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    const int err = errno;
    return absl::NotFoundError(
        absl::StrCat("cannot open ", name, ": ", err != 0 ? std::strerror(err) : "open failed"));
  }
  std::string text;
  char buffer[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
  const bool failed = std::ferror(file) != 0;
  const int err = errno;
  if (!is_stdin) std::fclose(file);
  if (failed) {
    return absl::UnavailableError(
        absl::StrCat("cannot read ", name, ": ", err != 0 ? std::strerror(err) : "read failed"));
  }
  return text;
}

// The status as one line: the message alone for INVALID_ARGUMENT (it names the field), with its
// code otherwise.
std::string DescribeStatus(const absl::Status& status) {
  std::string text = status.code() == absl::StatusCode::kInvalidArgument
                         ? std::string(status.message())
                         : status.ToString();
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

int RunJsonTool(absl::string_view name, absl::string_view usage, absl::string_view flag, int argc,
                char** argv,
                absl::FunctionRef<absl::StatusOr<std::string>(const std::string& text)> answer) {
  constexpr int kExitFailure = 1;
  constexpr int kExitUsage = 2;
  auto fail = [name](int code, absl::string_view message) {
    std::cerr << name << ": " << message << std::endl;
    return code;
  };
  const std::string with_equals = absl::StrCat(flag, "=");
  std::optional<std::string> path;
  for (int k = 1; k < argc; ++k) {
    const absl::string_view arg = argv[k];
    if (arg == "--help" || arg == "-h") {
      std::cout << usage;
      return 0;
    }
    std::optional<std::string> value;
    if (arg == flag) {
      if (k + 1 >= argc) return fail(kExitUsage, absl::StrCat(flag, " needs a FILE (see --help)"));
      value = argv[++k];
    } else if (absl::StartsWith(arg, with_equals)) {
      value = std::string(absl::StripPrefix(arg, with_equals));
    } else {
      return fail(kExitUsage, absl::StrCat("unknown argument '", arg, "' (see --help)"));
    }
    if (value->empty()) return fail(kExitUsage, absl::StrCat(flag, " needs a non-empty FILE"));
    if (path.has_value()) return fail(kExitUsage, absl::StrCat(flag, " given more than once"));
    path = std::move(value);
  }
  if (!path.has_value()) {
    return fail(kExitUsage, absl::StrCat("missing ", flag, " FILE (see --help)"));
  }

  absl::StatusOr<std::string> text = ReadInputFile(*path);
  if (!text.ok()) return fail(kExitFailure, text.status().message());
  absl::StatusOr<std::string> out = answer(*text);
  if (!out.ok()) return fail(kExitFailure, DescribeStatus(out.status()));
  std::cout << *out << '\n';
  std::cout.flush();
  if (!std::cout) return fail(kExitFailure, "cannot write the answer to stdout");
  return 0;
}

}  // namespace router::core
