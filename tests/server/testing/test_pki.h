// File: test_pki.h
//
// Throwaway certificates for tests, made at test time with OpenSSL (never committed): a CA, and
// certificates it signs for servers and clients, with chosen names and validity. Keys are EC
// P-256. Tests that need files write them into their own temporary directory (TempDir).
//
// Thread-safety: a TestPki is not thread-safe; use one per test.
// Errors: failures of OpenSSL abort the test binary (a broken test fixture, not a test result).

#ifndef ROUTER_TESTS_SERVER_TESTING_TEST_PKI_H_
#define ROUTER_TESTS_SERVER_TESTING_TEST_PKI_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace router::server::testing {

struct IssuedCertificate {
  std::string cert_pem;  // the certificate alone
  std::string key_pem;   // its unencrypted private key (PKCS#8)
};

class TestPki {
 public:
  // A self-signed CA with subject CN=`ca_name`.
  explicit TestPki(const std::string& ca_name);
  ~TestPki();
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  const std::string& ca_pem() const { return ca_pem_; }

  // A certificate this CA signs for subject CN=`common_name`, with subject alternative names
  // DNS:`dns` (each) and IP:127.0.0.1, valid from now + `not_before` to now + `not_after`.
  IssuedCertificate Issue(const std::string& common_name,
                          const std::vector<std::string>& dns = {"localhost"},
                          absl::Duration not_before = absl::Hours(-1),
                          absl::Duration not_after = absl::Hours(24));

 private:
  struct Ca;
  std::unique_ptr<Ca> ca_;
  std::string ca_pem_;
  long serial_ = 1;
};

// A fresh directory under the test's temporary directory, removed by RemoveTree.
std::string MakeTempDir(const std::string& prefix);
void RemoveTree(const std::string& dir);
// Replaces `path` with `contents` atomically (a temporary file renamed over it), so a reader sees
// the old or the new file, never half of one.
void WriteFileAtomically(const std::string& path, const std::string& contents);

}  // namespace router::server::testing

// Server tests name these unqualified.
namespace router::server {

using ::router::server::testing::IssuedCertificate;
using ::router::server::testing::TestPki;
using ::router::server::testing::WriteFileAtomically;

}  // namespace router::server

#endif  // ROUTER_TESTS_SERVER_TESTING_TEST_PKI_H_
