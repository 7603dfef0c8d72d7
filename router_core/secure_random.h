// File: secure_random.h
//
// Unpredictable 64-bit values from the kernel's CSPRNG (getrandom(2)), for tokens a client must
// not be able to guess (assignment ids). Each thread reads 512 bytes at a time and hands them out
// 8 at a time, so a value costs one system call per 64 values.
//
// Thread-safety: safe to call from any thread (the buffer is per thread).
//
// Errors: none; if the kernel cannot provide random bytes the process aborts, since no token
// could then be trusted.

#ifndef ROUTER_CORE_SECURE_RANDOM_H_
#define ROUTER_CORE_SECURE_RANDOM_H_

#include <cstdint>

namespace router::core {

uint64_t SecureRandom64();

}  // namespace router::core

#endif  // ROUTER_CORE_SECURE_RANDOM_H_
