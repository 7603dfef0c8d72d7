// File: http_get.h
//
// A plain HTTP/1.0 GET on a loopback port, for the server tests that read routerd's /metrics.
//
// Thread-safety: a free function; each call uses its own socket. Errors: "" when nothing listens.
// Cost: one connection, reads until the server closes it.

#ifndef ROUTER_TESTS_SERVER_HTTP_GET_H_
#define ROUTER_TESTS_SERVER_HTTP_GET_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"

namespace router::server::testing {

// The whole response (status line, headers and body) to GET `path` on 127.0.0.1:`port`.
inline std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: localhost\r\n\r\n");
  (void)!write(fd, request.data(), request.size());
  std::string body;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) body.append(buf, static_cast<size_t>(n));
  close(fd);
  return body;
}

}  // namespace router::server::testing

#endif  // ROUTER_TESTS_SERVER_HTTP_GET_H_
