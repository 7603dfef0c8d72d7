#include "server/call_auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace router::server {
namespace {

std::string Sha256Of(absl::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

bool IsTokenChar(char c) { return c >= 0x21 && c <= 0x7e; }

constexpr absl::string_view kBearer = "bearer ";

}  // namespace

std::vector<std::string> PeerIdentities(const grpc::ServerContextBase& ctx) {
  const std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  std::vector<std::string> ids;
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return ids;
  for (const char* property : {"x509_common_name", "x509_subject_alternative_name"}) {
    for (const grpc::string_ref& v : auth->FindPropertyValues(property)) {
      ids.emplace_back(v.data(), v.size());
    }
  }
  return ids;
}

absl::StatusOr<std::unique_ptr<TokenFile>> TokenFile::Load(std::string key, std::string path) {
  std::unique_ptr<TokenFile> token(new TokenFile(std::move(key), std::move(path)));
  std::string file_digest;
  absl::StatusOr<std::string> digest = token->Read(file_digest);
  if (!digest.ok()) return digest.status();
  absl::MutexLock lock(&token->mu_);
  token->digest_ = *std::move(digest);
  return token;
}

absl::StatusOr<std::string> TokenFile::Read(std::string& file_digest) const {
  absl::StatusOr<std::string> text = ReadCredentialFile(key_, path_, kMaxTokenFileBytes);
  if (!text.ok()) {
    file_digest = Sha256Of(text.status().ToString());
    return text.status();
  }
  file_digest = Sha256Of(*text);
  const absl::string_view token = absl::StripAsciiWhitespace(*text);
  absl::Status problem;
  if (token.empty()) {
    problem = absl::InvalidArgumentError(absl::StrCat(key_, " '", path_, "': holds no token"));
  } else if (!std::all_of(token.begin(), token.end(), IsTokenChar)) {
    problem = absl::InvalidArgumentError(absl::StrCat(
        key_, " '", path_,
        "': the token must be one word of printable ASCII (no spaces or line breaks inside)"));
  } else if (token.size() < kMinTokenBytes) {
    problem = absl::InvalidArgumentError(
        absl::StrCat(key_, " '", path_, "': the token is shorter than ", kMinTokenBytes,
                     " bytes (make one with `openssl rand -hex 32`)"));
  }
  std::string digest = problem.ok() ? Sha256Of(token) : std::string();
  OPENSSL_cleanse(text->data(), text->size());
  if (!problem.ok()) return problem;
  return digest;
}

bool TokenFile::Matches(absl::string_view presented) const {
  const std::string digest = Sha256Of(presented);
  absl::MutexLock lock(&mu_);
  return CRYPTO_memcmp(digest.data(), digest_.data(), SHA256_DIGEST_LENGTH) == 0;
}

ReloadResult TokenFile::Reload() {
  std::string file_digest;
  absl::StatusOr<std::string> digest = Read(file_digest);
  absl::MutexLock lock(&mu_);
  if (!digest.ok()) {
    const bool again = rejected_digest_ == file_digest;
    rejected_digest_ = file_digest;
    return {again ? ReloadOutcome::kRejectedAgain : ReloadOutcome::kRejected, digest.status()};
  }
  rejected_digest_.reset();
  if (*digest == digest_) return {ReloadOutcome::kUnchanged, absl::OkStatus()};
  digest_ = *std::move(digest);
  return {ReloadOutcome::kReplaced, absl::OkStatus()};
}

absl::Status CallAuthorizer::Check(const grpc::ServerContextBase& ctx) const {
  const Options& o = options_;
  if (o.open) return absl::OkStatus();
  if (o.token == nullptr && o.allowed_identities.empty()) {
    return absl::UnauthenticatedError(absl::StrCat(
        o.service, " accepts no credentials, so every call is refused: configure ",
        o.configured_by));
  }
  std::vector<std::string> ids;
  if (!o.allowed_identities.empty()) {
    ids = PeerIdentities(ctx);
    for (const std::string& id : ids) {
      if (std::find(o.allowed_identities.begin(), o.allowed_identities.end(), id) !=
          o.allowed_identities.end()) {
        return absl::OkStatus();
      }
    }
  }
  bool wrong_token = false;
  bool malformed = false;
  if (o.token != nullptr) {
    const auto [begin, end] = ctx.client_metadata().equal_range("authorization");
    for (auto it = begin; it != end; ++it) {
      const absl::string_view value(it->second.data(), it->second.size());
      if (value.size() <= kBearer.size() ||
          !absl::EqualsIgnoreCase(value.substr(0, kBearer.size()), kBearer)) {
        malformed = true;
        continue;
      }
      if (o.token->Matches(absl::StripAsciiWhitespace(value.substr(kBearer.size())))) {
        return absl::OkStatus();
      }
      wrong_token = true;
    }
  }
  if (wrong_token) {
    return absl::PermissionDeniedError(absl::StrCat(o.service, ": the bearer token is not accepted"));
  }
  if (!ids.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        o.service, ": the client certificate's identity '", ids.front(),
        "' is not an allowed identity"));
  }
  if (malformed) {
    return absl::UnauthenticatedError(
        absl::StrCat(o.service, ": the authorization metadata must be 'Bearer <token>'"));
  }
  return absl::UnauthenticatedError(absl::StrCat(
      o.service, " needs credentials: `authorization: Bearer <token>` metadata",
      o.allowed_identities.empty() ? "" : " or an allowed client certificate", " (",
      o.configured_by, ")"));
}

}  // namespace router::server
