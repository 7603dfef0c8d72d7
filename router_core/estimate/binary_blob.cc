#include "router_core/estimate/binary_blob.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace router::core {
namespace {

nlohmann::json PackWords(absl::Span<const uint32_t> words) {
  std::vector<uint8_t> bytes(words.size() * 4);
  for (size_t k = 0; k < words.size(); ++k) {
    for (int b = 0; b < 4; ++b) bytes[4 * k + b] = static_cast<uint8_t>(words[k] >> (8 * b));
  }
  return nlohmann::json::binary(std::move(bytes));
}

absl::StatusOr<std::vector<uint32_t>> UnpackWords(const nlohmann::json& value,
                                                  absl::string_view field,
                                                  std::optional<size_t> expected) {
  if (!value.is_binary()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected a binary blob, got ", value.type_name()));
  }
  const std::vector<uint8_t>& bytes = value.get_binary();
  if (bytes.size() % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": blob of ", bytes.size(), " bytes is not a whole number of values"));
  }
  const size_t count = bytes.size() / 4;
  if (expected.has_value() && count != *expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected ", *expected, " values, got ", count));
  }
  std::vector<uint32_t> words(count);
  for (size_t k = 0; k < count; ++k) {
    uint32_t w = 0;
    for (int b = 0; b < 4; ++b) w |= static_cast<uint32_t>(bytes[4 * k + b]) << (8 * b);
    words[k] = w;
  }
  return words;
}

}  // namespace

nlohmann::json FloatsToBlob(absl::Span<const float> values) {
  std::vector<uint32_t> words(values.size());
  for (size_t k = 0; k < values.size(); ++k) words[k] = std::bit_cast<uint32_t>(values[k]);
  return PackWords(words);
}

nlohmann::json Uint32sToBlob(absl::Span<const uint32_t> values) { return PackWords(values); }

absl::StatusOr<std::vector<float>> BlobToFloats(const nlohmann::json& value,
                                                absl::string_view field,
                                                std::optional<size_t> expected) {
  absl::StatusOr<std::vector<uint32_t>> words = UnpackWords(value, field, expected);
  if (!words.ok()) return words.status();
  std::vector<float> out(words->size());
  for (size_t k = 0; k < out.size(); ++k) {
    out[k] = std::bit_cast<float>((*words)[k]);
    if (!std::isfinite(out[k])) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", k, "]: not finite"));
    }
  }
  return out;
}

absl::StatusOr<std::vector<uint32_t>> BlobToUint32s(const nlohmann::json& value,
                                                    absl::string_view field,
                                                    std::optional<size_t> expected) {
  return UnpackWords(value, field, expected);
}

}  // namespace router::core
