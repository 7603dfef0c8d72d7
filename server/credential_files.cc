#include "server/credential_files.h"

#include <fstream>

#include "absl/strings/str_cat.h"

namespace router::server {

absl::StatusOr<std::string> ReadCredentialFile(absl::string_view key, const std::string& path,
                                               size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(key, " '", path, "': cannot be read"));
  // One byte over the limit is read, so that a file without end is refused, not read forever.
  std::string text(max_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, " '", path, "': larger than ", max_bytes, " bytes"));
  }
  return text;
}

}  // namespace router::server
