#include "router_core/estimate/crc32c.h"

#include <array>

namespace router::core {
namespace {

constexpr std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) != 0 ? 0x82F63B78u : 0u);
    table[byte] = crc;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kTable = MakeTable();

}  // namespace

uint32_t Crc32cExtend(uint32_t crc, absl::string_view bytes) {
  uint32_t state = ~crc;
  for (const char c : bytes) {
    state = (state >> 8) ^ kTable[(state ^ static_cast<uint8_t>(c)) & 0xffu];
  }
  return ~state;
}

uint32_t Crc32c(absl::string_view bytes) { return Crc32cExtend(0, bytes); }

}  // namespace router::core
