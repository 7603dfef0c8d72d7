#include "server/tls_credentials.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <cstdlib>
#include <ctime>
#include <iostream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpc/grpc.h"

namespace router::server {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Keys must not be encrypted: refuse instead of prompting on a terminal for a passphrase.
int NoPassphrase(char*, int, int, void*) { return -1; }

// OpenSSL's reason for the last failure on this thread (never key material); clears the queue.
std::string OpenSslReason() {
  const unsigned long e = ERR_peek_last_error();
  char buffer[256] = "unknown OpenSSL error";
  if (e != 0) ERR_error_string_n(e, buffer, sizeof(buffer));
  ERR_clear_error();
  return buffer;
}

absl::Status Bad(absl::string_view key, const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(key, " '", path, "': ", what));
}

BioPtr MemoryBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Every certificate of a PEM text, in order; INVALID_ARGUMENT for none or for a broken block.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(absl::string_view key,
                                                       const std::string& path,
                                                       const std::string& text) {
  ERR_clear_error();
  BioPtr bio = MemoryBio(text);
  std::vector<X509Ptr> certificates;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr)) {
    certificates.emplace_back(x);
  }
  // The loop ends at the end of the text (no further BEGIN line) or at a block that fails.
  const unsigned long e = ERR_peek_last_error();
  if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
    return Bad(key, path, absl::StrCat("a certificate does not parse: ", OpenSslReason()));
  }
  ERR_clear_error();
  if (certificates.empty()) {
    return Bad(key, path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
  }
  return certificates;
}

absl::Time ToTime(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTM(tm, absl::UTCTimeZone());
}

std::string Sha256(absl::string_view a, absl::string_view b = "", absl::string_view c = "") {
  std::string all = absl::StrCat(a.size(), ":", a, b.size(), ":", b, c.size(), ":", c);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(all.data()), all.size(), digest);
  OPENSSL_cleanse(all.data(), all.size());
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

// gRPC server credentials that bind listening ports with a C-core credentials object: the SSL
// credentials with a certificate config fetcher, which gRPC's C++ API does not build.
class FetcherServerCredentials final : public grpc::ServerCredentials {
 public:
  explicit FetcherServerCredentials(grpc_server_credentials* credentials)
      : credentials_(credentials) {}
  ~FetcherServerCredentials() override { grpc_server_credentials_release(credentials_); }

  // Calls are authorized by their handlers (call_auth.h); nothing sets a processor here.
  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {
    std::cerr << "routerd: TLS credentials take no AuthMetadataProcessor" << std::endl;
    std::abort();
  }

 private:
  // gRPC's Server calls this to bind each listening port, as with its own secure credentials.
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), credentials_);
  }

  grpc_server_credentials* const credentials_;
};

}  // namespace

absl::StatusOr<TlsFileTexts> ReadTlsFiles(const TlsConfig& tls) {
  TlsFileTexts texts;
  absl::StatusOr<std::string> cert = ReadCredentialFile("tls.cert_file", tls.cert_file,
                                                        kMaxTlsFileBytes);
  if (!cert.ok()) return cert.status();
  texts.cert_chain = *std::move(cert);
  absl::StatusOr<std::string> key = ReadCredentialFile("tls.key_file", tls.key_file,
                                                       kMaxTlsFileBytes);
  if (!key.ok()) return key.status();
  texts.private_key = *std::move(key);
  if (!tls.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadCredentialFile("tls.client_ca_file", tls.client_ca_file,
                                                        kMaxTlsFileBytes);
    if (!ca.ok()) return ca.status();
    texts.client_ca = *std::move(ca);
  }
  return texts;
}

absl::StatusOr<CertificateSet> CheckCertificateSet(const TlsConfig& tls, TlsFileTexts texts,
                                                   absl::Time now) {
  absl::StatusOr<std::vector<X509Ptr>> chain =
      ParseCertificates("tls.cert_file", tls.cert_file, texts.cert_chain);
  if (!chain.ok()) return chain.status();
  X509* leaf = chain->front().get();

  ERR_clear_error();
  BioPtr key_bio = MemoryBio(texts.private_key);
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return Bad("tls.key_file", tls.key_file,
               absl::StrCat("holds no readable PEM private key (an encrypted key is refused: "
                            "routerd asks for no passphrase): ",
                            OpenSslReason()));
  }
  if (X509_check_private_key(leaf, key.get()) != 1) {
    ERR_clear_error();
    return Bad("tls.key_file", tls.key_file,
               absl::StrCat("does not match the first certificate of tls.cert_file '",
                            tls.cert_file, "'"));
  }

  CertificateSet set;
  set.not_after = ToTime(X509_get0_notAfter(leaf));
  const absl::Time not_before = ToTime(X509_get0_notBefore(leaf));
  if (now < not_before) {
    return Bad("tls.cert_file", tls.cert_file,
               absl::StrCat("the certificate is not valid before ",
                            absl::FormatTime(not_before, absl::UTCTimeZone())));
  }
  if (now >= set.not_after) {
    return Bad("tls.cert_file", tls.cert_file,
               absl::StrCat("the certificate expired at ",
                            absl::FormatTime(set.not_after, absl::UTCTimeZone())));
  }
  char subject[512];
  X509_NAME_oneline(X509_get_subject_name(leaf), subject, sizeof(subject));
  set.subject = subject;

  if (!tls.client_ca_file.empty()) {
    absl::StatusOr<std::vector<X509Ptr>> ca =
        ParseCertificates("tls.client_ca_file", tls.client_ca_file, texts.client_ca);
    if (!ca.ok()) return ca.status();
  }
  set.cert_chain = std::move(texts.cert_chain);
  set.private_key = std::move(texts.private_key);
  set.client_ca = std::move(texts.client_ca);
  return set;
}

absl::StatusOr<std::unique_ptr<TlsCertificates>> TlsCertificates::Create(const TlsConfig& tls) {
  if (!tls.enabled()) return absl::InvalidArgumentError("tls.cert_file: required for TLS");
  absl::StatusOr<TlsFileTexts> texts = ReadTlsFiles(tls);
  if (!texts.ok()) return texts.status();
  absl::StatusOr<CertificateSet> set = CheckCertificateSet(tls, *std::move(texts), absl::Now());
  if (!set.ok()) return set.status();
  std::unique_ptr<TlsCertificates> certificates(new TlsCertificates(tls));
  absl::MutexLock lock(&certificates->mu_);
  certificates->current_ = std::make_shared<const CertificateSet>(*std::move(set));
  return certificates;
}

std::shared_ptr<grpc::ServerCredentials> TlsCertificates::NewServerCredentials() {
  Listener* listener;
  {
    absl::MutexLock lock(&mu_);
    listener = &listeners_.emplace_back();
    listener->owner = this;
  }
  grpc_ssl_server_credentials_options* options =
      grpc_ssl_server_credentials_create_options_using_config_fetcher(
          tls_.client_ca_file.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                      : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY,
          &TlsCertificates::Fetch, listener);
  // Takes ownership of `options`.
  return std::make_shared<FetcherServerCredentials>(
      grpc_ssl_server_credentials_create_with_options(options));
}

grpc_ssl_certificate_config_reload_status TlsCertificates::Fetch(
    void* user_data, grpc_ssl_server_certificate_config** config) {
  Listener* listener = static_cast<Listener*>(user_data);
  TlsCertificates* self = listener->owner;
  std::shared_ptr<const CertificateSet> set;
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&self->mu_);
    if (listener->served_generation.load() == self->generation_) {
      return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    }
    set = self->current_;
    generation = self->generation_;
  }
  grpc_ssl_pem_key_cert_pair pair{set->private_key.c_str(), set->cert_chain.c_str()};
  // gRPC requires roots in a fetched config (it asserts on null) even when it asks clients for no
  // certificate; without a client CA the listener never does, so the server's own chain, which
  // parses, stands in and verifies nothing.
  const std::string& roots = set->client_ca.empty() ? set->cert_chain : set->client_ca;
  // Copies the texts; gRPC owns the config from here.
  *config = grpc_ssl_server_certificate_config_create(roots.c_str(), &pair, 1);
  listener->served_generation.store(generation);
  return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
}

ReloadResult TlsCertificates::Reload() {
  absl::StatusOr<TlsFileTexts> texts = ReadTlsFiles(tls_);
  absl::StatusOr<CertificateSet> set = absl::UnknownError("not checked");
  std::string digest;
  if (!texts.ok()) {
    set = texts.status();
    digest = Sha256(texts.status().ToString());
  } else {
    {
      absl::MutexLock lock(&mu_);
      if (texts->cert_chain == current_->cert_chain && texts->private_key == current_->private_key &&
          texts->client_ca == current_->client_ca) {
        return {ReloadOutcome::kUnchanged, absl::OkStatus()};
      }
    }
    digest = Sha256(texts->cert_chain, texts->private_key, texts->client_ca);
    set = CheckCertificateSet(tls_, *std::move(texts), absl::Now());
  }
  absl::MutexLock lock(&mu_);
  if (!set.ok()) {
    const bool again = rejected_digest_ == digest;
    rejected_digest_ = digest;
    return {again ? ReloadOutcome::kRejectedAgain : ReloadOutcome::kRejected, set.status()};
  }
  rejected_digest_.reset();
  current_ = std::make_shared<const CertificateSet>(*std::move(set));
  ++generation_;
  return {ReloadOutcome::kReplaced, absl::OkStatus()};
}

absl::Time TlsCertificates::not_after() const {
  absl::MutexLock lock(&mu_);
  return current_->not_after;
}

std::string TlsCertificates::subject() const {
  absl::MutexLock lock(&mu_);
  return current_->subject;
}

}  // namespace router::server
