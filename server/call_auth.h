// File: call_auth.h
//
// Who may make a call: the bearer-token and client-certificate checks RouterAdmin runs at the top
// of every handler (config key `admin`), and Router too when `api.token_file` is set.
// grpc.health.v1 and reflection run no check.
//
// A call is let through when, in this order,
//   1. nothing is required (Router without api.token_file; RouterAdmin with
//      admin.allow_unauthenticated);
//   2. its verified client certificate names an allowed identity (admin.allowed_identities: the
//      certificate's subject CN or one of its subject alternative names, exact match); or
//   3. an `authorization` metadata value is `Bearer <token>` with the configured token.
// Otherwise it is refused: PERMISSION_DENIED when it presented a credential that is not accepted
// (a wrong token; a certificate none of whose identities is allowed), UNAUTHENTICATED when it
// presented none, or an `authorization` value that is not `Bearer <token>`.
//
// Why a check at the top of each handler rather than gRPC's AuthMetadataProcessor: the processor
// only runs on TLS listeners (a loopback admin listener may be plaintext), applies to a whole
// server (health must stay open, and Router and RouterAdmin differ), and, blocking, runs on a
// thread of its own per call. This check is a hash and a compare on the handler's thread and sees
// plaintext and TLS calls alike.
//
// Tokens: a token file holds one token (surrounding whitespace and the final newline are
// ignored): at least kMinTokenBytes printable ASCII characters, no spaces. Only its SHA-256 digest
// is kept in memory; a presented token is hashed and the digests compared with CRYPTO_memcmp, so
// the time a check takes does not depend on how much of the token is right. No token, and no
// part of a token file, ever reaches a log, a status message or GetConfig.
//
// Thread-safety: Check may be called concurrently with itself and with Reload.
//
// Errors: Create and Reload: NOT_FOUND for an unreadable file, INVALID_ARGUMENT for a file that
// holds no acceptable token, both naming the config key and the path. Check: as above, with a
// message saying what the service needs.
//
// Cost: Check is O(metadata entries + certificate identities x allowed identities) plus one
// SHA-256 of the presented token.

#ifndef ROUTER_SERVER_CALL_AUTH_H_
#define ROUTER_SERVER_CALL_AUTH_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"
#include "server/credential_files.h"

namespace router::server {

inline constexpr size_t kMinTokenBytes = 16;
inline constexpr size_t kMaxTokenFileBytes = 4096;

// The identities a client certificate proves: its subject CN and subject alternative names, as
// gRPC reports them for a verified peer (empty for a plaintext call or a TLS call without one).
std::vector<std::string> PeerIdentities(const grpc::ServerContextBase& ctx);

// A bearer token read from a file; see the file comment for the rules.
class TokenFile {
 public:
  // `key` is the config key (admin.token_file), for errors.
  static absl::StatusOr<std::unique_ptr<TokenFile>> Load(std::string key, std::string path);

  // Whether `presented` is the token, in time independent of their contents.
  bool Matches(absl::string_view presented) const;
  // Re-reads the file; a refused file leaves the current token in use.
  ReloadResult Reload();

  const std::string& key() const { return key_; }
  const std::string& path() const { return path_; }

 private:
  TokenFile(std::string key, std::string path) : key_(std::move(key)), path_(std::move(path)) {}
  // The SHA-256 of the token the file holds, or why it holds none acceptable; `file_digest` is
  // set to a digest of the file's bytes (or of the read error).
  absl::StatusOr<std::string> Read(std::string& file_digest) const;

  const std::string key_;
  const std::string path_;
  mutable absl::Mutex mu_;
  std::string digest_ ABSL_GUARDED_BY(mu_);
  // A digest of the file's bytes when they were last refused (or of the read error).
  std::optional<std::string> rejected_digest_ ABSL_GUARDED_BY(mu_);
};

class CallAuthorizer {
 public:
  struct Options {
    // The service named in refusals ("RouterAdmin", "Router").
    std::string service;
    // Every call is let through.
    bool open = false;
    // Not owned; null = no token accepted.
    const TokenFile* token = nullptr;
    // Identities a verified client certificate may prove.
    std::vector<std::string> allowed_identities;
    // Says where the credentials are configured, for the refusal message (e.g. "admin.token_file
    // or admin.allowed_identities").
    std::string configured_by;
  };

  explicit CallAuthorizer(Options options) : options_(std::move(options)) {}

  // OK, PERMISSION_DENIED or UNAUTHENTICATED for the call `ctx`.
  absl::Status Check(const grpc::ServerContextBase& ctx) const;

 private:
  const Options options_;
};

}  // namespace router::server

#endif  // ROUTER_SERVER_CALL_AUTH_H_
