// File: credential_files.h
//
// What routerd's credential files (tls.*, admin.token_file, api.token_file) have in common: they
// are read whole, small, at start and again on every reload (SIGHUP, and every
// `credentials_reload_s`), and a reload whose new contents are refused leaves the old ones in use.
// ReloadResult says which of that happened, so the caller logs and counts a refused file once per
// new contents rather than once per check.
//
// Thread-safety: pure functions and plain values.
//
// Errors: ReadCredentialFile: NOT_FOUND when the file cannot be opened, INVALID_ARGUMENT when it is
// larger than allowed; both name the config key and the path, never the contents.

#ifndef ROUTER_SERVER_CREDENTIAL_FILES_H_
#define ROUTER_SERVER_CREDENTIAL_FILES_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace router::server {

enum class ReloadOutcome {
  kUnchanged,      // the files hold what is in use
  kReplaced,       // new contents passed the checks and are in use from now on
  kRejected,       // new contents failed the checks; the old ones stay in use
  kRejectedAgain,  // the same refused contents as at the previous check; the old ones stay
};

struct ReloadResult {
  ReloadOutcome outcome = ReloadOutcome::kUnchanged;
  absl::Status error;  // why the contents were refused (kRejected, kRejectedAgain); else OK
};

// The whole of the file at `path` (config key `key`), at most `max_bytes` bytes.
absl::StatusOr<std::string> ReadCredentialFile(absl::string_view key, const std::string& path,
                                               size_t max_bytes);

}  // namespace router::server

#endif  // ROUTER_SERVER_CREDENTIAL_FILES_H_
