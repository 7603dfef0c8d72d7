// File: crc32c.h
//
// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF;
// RFC 3720's iSCSI checksum), the estimator artifact's checksum (artifact.h). It detects every
// error burst of up to 32 bits, so every change of one byte; it is not a signature: whoever can
// write the file can recompute it.
//
// Thread-safety: pure functions. Cost: O(bytes), one table look-up per byte.

#ifndef ROUTER_CORE_ESTIMATE_CRC32C_H_
#define ROUTER_CORE_ESTIMATE_CRC32C_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace router::core {

// The CRC-32C of `bytes` (Crc32c("123456789") == 0xE3069283).
uint32_t Crc32c(absl::string_view bytes);

// The CRC-32C of the concatenation of the bytes before `crc` was computed and `bytes`:
// Crc32cExtend(Crc32c(a), b) == Crc32c(a + b), and Crc32c(a) == Crc32cExtend(0, a).
uint32_t Crc32cExtend(uint32_t crc, absl::string_view bytes);

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_CRC32C_H_
