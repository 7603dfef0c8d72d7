#include "router_core/tools/cli_input.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

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

}  // namespace router::core
