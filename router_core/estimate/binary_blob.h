// File: binary_blob.h
//
// Packing of numeric arrays into nlohmann::json binary values (little-endian, 4 bytes per value),
// so estimator state stays compact in the CBOR artifact (a float array as JSON numbers costs 5-9
// bytes per value in CBOR and more as text) and round-trips bit for bit.
//
// Thread-safety: pure functions.
//
// Errors: the readers return INVALID_ARGUMENT naming `field` when the value is not a binary blob,
// its length is not a multiple of 4, it holds `expected` values when another count is required, or
// (floats) a value is not finite.

#ifndef ROUTER_CORE_ESTIMATE_BINARY_BLOB_H_
#define ROUTER_CORE_ESTIMATE_BINARY_BLOB_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"

namespace router::core {

nlohmann::json FloatsToBlob(absl::Span<const float> values);
nlohmann::json Uint32sToBlob(absl::Span<const uint32_t> values);

// `expected`: the required number of values, or nullopt for any.
absl::StatusOr<std::vector<float>> BlobToFloats(const nlohmann::json& value,
                                                absl::string_view field,
                                                std::optional<size_t> expected = std::nullopt);
absl::StatusOr<std::vector<uint32_t>> BlobToUint32s(const nlohmann::json& value,
                                                    absl::string_view field,
                                                    std::optional<size_t> expected = std::nullopt);

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_BINARY_BLOB_H_
