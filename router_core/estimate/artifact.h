// File: artifact.h
//
// The estimator file router_train writes and the service loads: one self-describing, versioned,
// checksummed document holding everything needed to predict without the training data.
//
//   bytes = CBOR self-describe tag (d9 d9 f7, so `file` and CBOR tools recognise it) followed by
//   one CBOR map (RFC 8949) with the keys
//     "checksum"    4-byte byte string: the CRC-32C (crc32c.h), big-endian, of the whole file
//                   with these 4 bytes read as zero. Keys are written in sorted order, so it is the
//                   first key and the file starts d9 d9 f7 | map header | 68 "checksum" | 44 and
//                   the checksum is bytes 14-17. Readers verify it before decoding anything.
//     "format"      "router-estimator"
//     "version"     2 (kArtifactVersion; readers refuse any other)
//     "models"      the pool, in prediction order (must equal the estimator's)
//     "featurizer"  Featurizer::ToJson(), or null for an estimator trained on caller embeddings
//     "estimator"   {"kind": "knn" | "uniroute" | "classifier", "state": QualityEstimator::Save()}
//     "cost_model"  CostModel::ToJson(): per-model prices and observed costs
//     "provenance"  free-form object from the writer: dataset, split seed and fractions, part
//                   sizes, held-out metrics, command line, creation time (router_train fills it)
// Float arrays inside the states are binary blobs (binary_blob.h); the whole file is deterministic
// for deterministic inputs (CBOR maps are written in key order).
//
// Versions: 1 had no checksum (and no "checksum" key); readers refuse it, naming the upgrade:
// UpgradeArtifact (`router_train --upgrade OLD --out NEW`) rewrites it as version 2 with the same
// content. The checksum finds damage (every change of one byte, every burst of up to 32 bits); it
// is not a signature: whoever can write the file can recompute it.
//
// Thread-safety: pure functions.
//
// Errors: SerializeArtifact: INVALID_ARGUMENT for a provenance that is not an object or a
// featurizer whose dimension differs from the estimator's. ParseArtifact / ReadArtifactFile:
// NOT_FOUND for a missing file; INVALID_ARGUMENT for anything malformed, with the problem named
// ("not a router estimator artifact", "checksum mismatch (stored 0x..., computed 0x...)",
// "version 1 artifact has no checksum", "truncated or corrupt CBOR: ...", "nested more than 64
// levels deep (byte N)", "unsupported artifact version 3 (this build reads 2)", "unknown
// estimator kind 'x'", or the field the estimator, featurizer or cost-model loader rejects).
// Parser exceptions are caught; none escapes. Cost: O(bytes) to check and decode, plus the
// loaders'.

#ifndef ROUTER_CORE_ESTIMATE_ARTIFACT_H_
#define ROUTER_CORE_ESTIMATE_ARTIFACT_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "router_core/estimate/cost_model.h"
#include "router_core/estimate/featurizer.h"
#include "router_core/estimate/predictor.h"
#include "router_core/estimate/quality_estimator.h"

namespace router::core {

inline constexpr char kArtifactFormat[] = "router-estimator";
inline constexpr int kArtifactVersion = 2;
// Deepest nesting of arrays and maps an artifact may have (the writer's is under 10): the reader
// refuses deeper ones before decoding, since decoding recurses once per level.
inline constexpr int kMaxArtifactDepth = 64;

struct Artifact {
  std::optional<Featurizer> featurizer;
  std::unique_ptr<QualityEstimator> estimator;
  CostModel cost_model;
  nlohmann::json provenance;  // an object
};

absl::StatusOr<std::string> SerializeArtifact(const std::optional<Featurizer>& featurizer,
                                              const QualityEstimator& estimator,
                                              const CostModel& cost_model,
                                              const nlohmann::json& provenance);
absl::StatusOr<Artifact> ParseArtifact(absl::string_view bytes);

// Sets the checksum of `bytes`, an artifact whose "checksum" field is where version 2 puts it (an
// artifact SerializeArtifact wrote and a tool or test then edited), to the CRC-32C of the rest.
// INVALID_ARGUMENT when the field is not there; nothing else is checked. O(bytes).
absl::Status StampArtifactChecksum(std::string* bytes);

// A version-1 artifact (no checksum) rewritten as version 2 with the same content, checked by
// ParseArtifact. INVALID_ARGUMENT for anything but a loadable version-1 artifact.
absl::StatusOr<std::string> UpgradeArtifact(absl::string_view bytes);

// Writes `bytes` to `path` through a temporary file and a rename, so a crash never leaves a
// half-written artifact behind. INTERNAL (naming the path) on an I/O error.
absl::Status WriteArtifactFile(const std::string& path, absl::string_view bytes);
absl::StatusOr<Artifact> ReadArtifactFile(const std::string& path);

// The artifact's predictor (the estimator moves into shared ownership).
absl::StatusOr<Predictor> MakePredictor(Artifact artifact);

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_ARTIFACT_H_
