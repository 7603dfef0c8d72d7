#include "tests/server/testing/test_pki.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"

namespace router::server::testing {
namespace {

[[noreturn]] void Fail(const char* what) {
  std::cerr << "test_pki: " << what << " failed" << std::endl;
  std::abort();
}

EVP_PKEY* NewKey() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (key == nullptr) Fail("EC key generation");
  return key;
}

std::string ToPem(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (PEM_write_bio_X509(bio, cert) != 1) Fail("PEM_write_bio_X509");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  return pem;
}

std::string ToPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    Fail("PEM_write_bio_PrivateKey");
  }
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  return pem;
}

void AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr || X509_add_ext(cert, ext, -1) != 1) Fail("X509_add_ext");
  X509_EXTENSION_free(ext);
}

X509* NewCert(long serial, const std::string& cn, EVP_PKEY* key, absl::Duration not_before,
              absl::Duration not_after) {
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert), absl::ToInt64Seconds(not_before));
  X509_gmtime_adj(X509_getm_notAfter(cert), absl::ToInt64Seconds(not_after));
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return cert;
}

}  // namespace

struct TestPki::Ca {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  ~Ca() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

TestPki::TestPki(const std::string& ca_name) : ca_(std::make_unique<Ca>()) {
  ca_->key = NewKey();
  ca_->cert = NewCert(serial_++, ca_name, ca_->key, absl::Hours(-1), absl::Hours(48));
  X509_set_issuer_name(ca_->cert, X509_get_subject_name(ca_->cert));
  AddExtension(ca_->cert, ca_->cert, NID_basic_constraints, "critical,CA:TRUE");
  AddExtension(ca_->cert, ca_->cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  AddExtension(ca_->cert, ca_->cert, NID_subject_key_identifier, "hash");
  if (X509_sign(ca_->cert, ca_->key, EVP_sha256()) == 0) Fail("X509_sign (CA)");
  ca_pem_ = ToPem(ca_->cert);
}

TestPki::~TestPki() = default;

IssuedCertificate TestPki::Issue(const std::string& common_name,
                                 const std::vector<std::string>& dns, absl::Duration not_before,
                                 absl::Duration not_after) {
  EVP_PKEY* key = NewKey();
  X509* cert = NewCert(serial_++, common_name, key, not_before, not_after);
  X509_set_issuer_name(cert, X509_get_subject_name(ca_->cert));
  std::string san = "IP:127.0.0.1";
  for (const std::string& d : dns) absl::StrAppend(&san, ",DNS:", d);
  AddExtension(cert, ca_->cert, NID_subject_alt_name, san);
  AddExtension(cert, ca_->cert, NID_basic_constraints, "critical,CA:FALSE");
  AddExtension(cert, ca_->cert, NID_ext_key_usage, "serverAuth,clientAuth");
  AddExtension(cert, ca_->cert, NID_authority_key_identifier, "keyid:always");
  if (X509_sign(cert, ca_->key, EVP_sha256()) == 0) Fail("X509_sign");
  IssuedCertificate issued{ToPem(cert), ToPem(key)};
  X509_free(cert);
  EVP_PKEY_free(key);
  return issued;
}

std::string MakeTempDir(const std::string& prefix) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern =
      absl::StrCat(base != nullptr ? base : std::filesystem::temp_directory_path().string(), "/",
                   prefix, "XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) Fail("mkdtemp");
  return pattern;
}

void RemoveTree(const std::string& dir) {
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

void WriteFileAtomically(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << contents;
    if (!out) Fail("writing a test file");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace router::server::testing
