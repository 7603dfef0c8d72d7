#include "router_core/secure_random.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace router::core {

uint64_t SecureRandom64() {
  static thread_local uint64_t buffer[64];
  static thread_local int left = 0;
  if (left == 0) {
    char* bytes = reinterpret_cast<char*>(buffer);
    size_t filled = 0;
    while (filled < sizeof(buffer)) {
      const ssize_t n = getrandom(bytes + filled, sizeof(buffer) - filled, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        std::fprintf(stderr, "fatal: getrandom failed: %s\n", std::strerror(errno));
        std::abort();
      }
      filled += static_cast<size_t>(n);
    }
    left = 64;
  }
  return buffer[--left];
}

}  // namespace router::core
