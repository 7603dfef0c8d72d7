// File: tls_credentials.h
//
// TLS for routerd's gRPC listeners, with certificates replaced without a restart (config key
// `tls`, docs/configuration.md "Transport security").
//
// Checking: routerd reads the operator's files itself and checks them with OpenSSL before any is
// served: the certificate chain parses (the server's certificate first), the private key parses
// (unencrypted) and belongs to that certificate, the certificate is valid now (notBefore <= now <
// notAfter), and the client CA bundle, if any, parses. A set that fails is never served: at start
// routerd does not start; on a reload the old set stays in use and Reload says why, naming the
// key and the file.
//
// Serving: each listener gets its own gRPC SSL server credentials built on gRPC's certificate
// config fetcher (grpc_ssl_server_credentials_create_options_using_config_fetcher). gRPC asks the
// fetcher at each new connection's handshake whether the certificates changed; it answers with the
// latest checked set, once per listener, and "unchanged" otherwise. So a new set is served from
// the first connection after the reload that accepted it; connections already open keep the
// certificate of their handshake. Should gRPC itself reject a set that passed these checks, it
// logs why and keeps the previous one.
//
// Client certificates: with tls.client_ca_file set, every client must present a certificate the
// bundle verifies (REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY), or its handshake fails
// before any call. Whether clients must do so is fixed at start (the listener's mode); the bundle's
// contents reload like the rest.
//
// Thread-safety: Reload and the accessors may be called from any thread, concurrently with gRPC
// calling the fetcher on its own threads.
//
// Ownership: the credentials NewServerCredentials returns point into this object, which must
// outlive every server built with them.
//
// Errors: INVALID_ARGUMENT naming the key and the file (`tls.key_file '/etc/k.pem': does not match
// the certificate of tls.cert_file`), NOT_FOUND for a file that cannot be read. Messages never
// contain key material.
//
// Cost: Create and Reload read and parse the three files, O(their size, a few KiB); the fetcher is
// O(1), plus a copy of the PEM texts when it hands over a new set.

#ifndef ROUTER_SERVER_TLS_CREDENTIALS_H_
#define ROUTER_SERVER_TLS_CREDENTIALS_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpc/grpc_security.h"
#include "grpcpp/security/server_credentials.h"
#include "server/config.h"
#include "server/credential_files.h"

namespace router::server {

// Largest certificate, key or CA file routerd reads.
inline constexpr size_t kMaxTlsFileBytes = 1 << 20;

// A checked set of PEM texts, ready to serve.
struct CertificateSet {
  std::string cert_chain;
  std::string private_key;
  std::string client_ca;  // empty without tls.client_ca_file
  absl::Time not_after;   // of the server's certificate
  std::string subject;    // of the server's certificate, one line (for logs)
};

// The three files' texts as read (client_ca empty without tls.client_ca_file).
struct TlsFileTexts {
  std::string cert_chain;
  std::string private_key;
  std::string client_ca;

  bool operator==(const TlsFileTexts&) const = default;
};

absl::StatusOr<TlsFileTexts> ReadTlsFiles(const TlsConfig& tls);
// Checks `texts` (read from the files `tls` names, which the errors name) against the time `now`.
absl::StatusOr<CertificateSet> CheckCertificateSet(const TlsConfig& tls, TlsFileTexts texts,
                                                   absl::Time now);

class TlsCertificates {
 public:
  // Loads and checks the files; `tls.enabled()` must hold.
  static absl::StatusOr<std::unique_ptr<TlsCertificates>> Create(const TlsConfig& tls);

  TlsCertificates(const TlsCertificates&) = delete;
  TlsCertificates& operator=(const TlsCertificates&) = delete;

  // Credentials for one listener (each listener needs its own: the fetcher tracks per listener
  // which set it handed over).
  std::shared_ptr<grpc::ServerCredentials> NewServerCredentials();

  // Re-reads the files: unchanged, replaced (served from the next handshake on), or rejected with
  // the reason (the current set stays).
  ReloadResult Reload();

  // The certificate served to new connections.
  absl::Time not_after() const;
  std::string subject() const;

 private:
  // One listener's view: which generation of the set its gRPC credentials last fetched.
  struct Listener {
    TlsCertificates* owner = nullptr;
    std::atomic<uint64_t> served_generation{0};
  };

  explicit TlsCertificates(TlsConfig tls) : tls_(std::move(tls)) {}
  // gRPC's fetcher callback (`user_data` is a Listener).
  static grpc_ssl_certificate_config_reload_status Fetch(
      void* user_data, grpc_ssl_server_certificate_config** config);

  const TlsConfig tls_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const CertificateSet> current_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 1;
  // A SHA-256 digest of the texts last refused (or of the read error), to tell a new refusal from
  // a repeated one.
  std::optional<std::string> rejected_digest_ ABSL_GUARDED_BY(mu_);
  // Stable addresses: gRPC holds pointers to them.
  std::deque<Listener> listeners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace router::server

#endif  // ROUTER_SERVER_TLS_CREDENTIALS_H_
