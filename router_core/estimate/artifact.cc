#include "router_core/estimate/artifact.h"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_format.h"
#include "router_core/estimate/calibrated_classifier.h"
#include "router_core/estimate/crc32c.h"
#include "router_core/estimate/knn_estimator.h"
#include "router_core/estimate/uniroute_estimator.h"
#include "router_core/json/json_reader.h"
#include "router_core/utf8.h"

namespace router::core {
namespace {

using Json = nlohmann::json;

// CBOR tag 55799, "self-described CBOR" (RFC 8949 section 3.4.6).
constexpr char kSelfDescribe[] = "\xd9\xd9\xf7";
// After the tag and the map's header (one byte: a map of fewer than 24 pairs), the first key,
// "checksum" (a text string of 8 bytes), and the head of its value, a byte string of 4 bytes.
constexpr char kChecksumKeyAndHead[] = "\x68" "checksum" "\x44";
constexpr size_t kChecksumKeyAt = 4;
constexpr size_t kChecksumAt = kChecksumKeyAt + sizeof(kChecksumKeyAndHead) - 1;  // 14
constexpr size_t kChecksumSize = 4;

using EstimatorLoader = absl::StatusOr<std::unique_ptr<QualityEstimator>> (*)(const Json&);
struct KindLoader {
  const char* kind;
  EstimatorLoader load;
};
// One line per estimator kind.
constexpr KindLoader kLoaders[] = {
    {"knn", &LoadKnnEstimator},
    {"uniroute", &LoadUniRouteEstimator},
    {"classifier", &LoadCalibratedClassifier},
};

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("artifact: ", what));
}

bool HasSelfDescribeTag(absl::string_view bytes) {
  return bytes.size() >= 3 && bytes.substr(0, 3) == absl::string_view(kSelfDescribe, 3);
}

// Whether the checksum field is where version 2 puts it (artifact.h).
bool HasChecksumField(absl::string_view bytes) {
  if (!HasSelfDescribeTag(bytes) || bytes.size() < kChecksumAt + kChecksumSize) return false;
  const uint8_t map_header = static_cast<uint8_t>(bytes[3]);
  return map_header >= 0xa0 && map_header <= 0xb7 &&
         bytes.substr(kChecksumKeyAt, kChecksumAt - kChecksumKeyAt) ==
             absl::string_view(kChecksumKeyAndHead, sizeof(kChecksumKeyAndHead) - 1);
}

// The CRC-32C of `bytes` with the checksum's 4 bytes read as zero (needs HasChecksumField).
uint32_t ComputedChecksum(absl::string_view bytes) {
  const uint32_t head = Crc32c(bytes.substr(0, kChecksumAt));
  const uint32_t zeroed = Crc32cExtend(head, absl::string_view("\0\0\0\0", kChecksumSize));
  return Crc32cExtend(zeroed, bytes.substr(kChecksumAt + kChecksumSize));
}

uint32_t StoredChecksum(absl::string_view bytes) {
  uint32_t stored = 0;
  for (size_t k = 0; k < kChecksumSize; ++k) {
    stored = (stored << 8) | static_cast<uint8_t>(bytes[kChecksumAt + k]);
  }
  return stored;
}

// INVALID_ARGUMENT if the CBOR item at byte `pos` of `cbor` nests arrays, maps or indefinite-length
// strings more than kMaxArtifactDepth deep: nlohmann's CBOR reader (and the copies and
// comparisons of the document) recurse once per level, so a deep item would overflow the stack.
// A walk with an explicit stack of open containers, O(bytes) time and O(kMaxArtifactDepth)
// memory. Malformed or truncated bytes end the walk with OK: the reader reports them precisely.
absl::Status CheckCborDepth(absl::string_view cbor, size_t pos) {
  struct Open {
    uint64_t remaining;  // items still to come; unused when indefinite
    bool indefinite;     // ends with the break byte 0xff
  };
  std::vector<Open> open;
  while (pos < cbor.size()) {
    const uint8_t initial = static_cast<uint8_t>(cbor[pos++]);
    const int major = initial >> 5;
    const int info = initial & 31;
    bool item_done = true;
    if (initial == 0xff) {
      if (open.empty() || !open.back().indefinite) return absl::OkStatus();
      open.pop_back();
    } else {
      uint64_t argument = static_cast<uint64_t>(info);
      const bool indefinite = info == 31;
      if (info >= 24 && info <= 27) {
        const size_t width = size_t{1} << (info - 24);
        if (cbor.size() - pos < width) return absl::OkStatus();
        argument = 0;
        for (size_t k = 0; k < width; ++k) {
          argument = (argument << 8) | static_cast<uint8_t>(cbor[pos++]);
        }
      } else if (info >= 28 && info <= 30) {
        return absl::OkStatus();
      }
      if (indefinite && (major == 2 || major == 3 || major == 4 || major == 5)) {
        open.push_back({0, true});
        item_done = false;
      } else if (major == 2 || major == 3) {
        if (argument > cbor.size() - pos) return absl::OkStatus();
        pos += static_cast<size_t>(argument);
      } else if ((major == 4 || major == 5) && argument > 0) {
        if (argument > cbor.size()) return absl::OkStatus();  // cannot hold that many items
        open.push_back({major == 5 ? 2 * argument : argument, false});
        item_done = false;
      } else if (major == 6) {
        item_done = false;  // a tag prefixes the next item
      }
      if (open.size() > static_cast<size_t>(kMaxArtifactDepth)) {
        return Invalid(absl::StrCat("nested more than ", kMaxArtifactDepth,
                                    " levels deep (byte ", pos - 1, ")"));
      }
    }
    // A finished item counts toward its container; a finished container toward its own.
    while (item_done && !open.empty() && !open.back().indefinite) {
      if (--open.back().remaining > 0) break;
      open.pop_back();
    }
    if (item_done && open.empty()) return absl::OkStatus();
  }
  return absl::OkStatus();
}

// The CBOR document after the tag, refused when nested too deep or malformed.
absl::StatusOr<Json> DecodeDocument(absl::string_view bytes) {
  if (absl::Status depth = CheckCborDepth(bytes, /*pos=*/3); !depth.ok()) return depth;
  try {
    return Json::from_cbor(bytes.begin() + 3, bytes.end(), /*strict=*/true,
                           /*allow_exceptions=*/true, Json::cbor_tag_handler_t::error);
  } catch (const std::exception& e) {
    return Invalid(absl::StrCat("truncated or corrupt CBOR: ", e.what()));
  }
}

absl::Status CheckFormat(const Json& doc) {
  if (!doc.is_object()) return Invalid("not a router estimator artifact (not a map)");
  const auto format = doc.find("format");
  if (format == doc.end() || *format != kArtifactFormat) {
    return Invalid(
        absl::StrCat("not a router estimator artifact (format is not \"", kArtifactFormat, "\")"));
  }
  return absl::OkStatus();
}

// Why bytes with the tag but without the checksum field are refused: a version-1 artifact, or a
// damaged or foreign file.
absl::Status WithoutChecksum(absl::string_view bytes) {
  absl::StatusOr<Json> doc = DecodeDocument(bytes);
  if (!doc.ok()) return doc.status();
  if (absl::Status format = CheckFormat(*doc); !format.ok()) return format;
  const auto version = doc->find("version");
  if (version != doc->end() && *version == 1) {
    return Invalid(absl::StrCat(
        "version 1 artifact has no checksum; this build reads version ", kArtifactVersion,
        " (`router_train --upgrade OLD --out NEW` rewrites it with the same content)"));
  }
  return Invalid(
      "no checksum where it belongs (the map's first key, \"checksum\", a 4-byte string): the "
      "file is damaged");
}

absl::StatusOr<Artifact> FromDocument(const Json& doc) {
  if (absl::Status format = CheckFormat(doc); !format.ok()) return format;
  const JsonReader root(doc, "artifact");
  absl::StatusOr<int64_t> version =
      root.Get(&JsonReader::Integer, "version", IntegerSpec{.integral_floats = false});
  if (!version.ok()) return version.status();
  if (*version != kArtifactVersion) {
    return Invalid(absl::StrCat("unsupported artifact version ", *version, " (this build reads ",
                                kArtifactVersion, ")"));
  }
  for (const char* key : {"models", "featurizer", "estimator", "cost_model", "provenance"}) {
    if (absl::StatusOr<JsonReader> member = root.Member(key); !member.ok()) {
      return member.status();
    }
  }
  absl::StatusOr<std::vector<std::string>> names =
      root.ArrayOf("models", [](const JsonReader& name) -> absl::StatusOr<std::string> {
        absl::StatusOr<std::string> text = name.String();
        if (text.ok() && !IsValidUtf8(*text)) return name.Error("not valid UTF-8");
        return text;
      });
  if (!names.ok()) return names.status();
  const Json& estimator = doc["estimator"];
  if (!estimator.is_object() || !estimator.contains("kind") || !estimator["kind"].is_string() ||
      !estimator.contains("state")) {
    return Invalid("estimator: expected {\"kind\": string, \"state\": ...}");
  }
  const std::string kind = estimator["kind"].get<std::string>();
  EstimatorLoader load = nullptr;
  std::vector<std::string> known;
  for (const KindLoader& entry : kLoaders) {
    known.push_back(entry.kind);
    if (kind == entry.kind) load = entry.load;
  }
  if (load == nullptr) {
    return Invalid(absl::StrCat("unknown estimator kind '", kind, "' (this build reads ",
                                absl::StrJoin(known, ", "), ")"));
  }
  absl::StatusOr<std::unique_ptr<QualityEstimator>> loaded = load(estimator["state"]);
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("artifact: estimator state: ", loaded.status().message()));
  }
  if ((*loaded)->kind() != kind) {
    return Invalid(
        absl::StrCat("estimator: kind '", kind, "' loaded as '", (*loaded)->kind(), "'"));
  }
  if ((*loaded)->models() != *names) {
    return Invalid("models: differ from the estimator's pool");
  }

  std::optional<Featurizer> featurizer;
  if (!doc["featurizer"].is_null()) {
    absl::StatusOr<Featurizer> f = Featurizer::FromJson(doc["featurizer"]);
    if (!f.ok()) return Invalid(f.status().message());
    if (f->dim() != (*loaded)->feature_dim()) {
      return Invalid(absl::StrCat("featurizer.dim ", f->dim(), " differs from the estimator's ",
                                  (*loaded)->feature_dim()));
    }
    featurizer = *std::move(f);
  }
  absl::StatusOr<CostModel> cost = CostModel::FromJson(doc["cost_model"]);
  if (!cost.ok()) return Invalid(cost.status().message());
  for (const std::string& name : *names) {
    if (!cost->IndexOf(name).ok()) {
      return Invalid(absl::StrCat("cost_model: no entry for pool model '", name, "'"));
    }
  }
  if (!doc["provenance"].is_object()) return Invalid("provenance: expected an object");
  return Artifact{std::move(featurizer), *std::move(loaded), *std::move(cost), doc["provenance"]};
}

}  // namespace

absl::StatusOr<std::string> SerializeArtifact(const std::optional<Featurizer>& featurizer,
                                              const QualityEstimator& estimator,
                                              const CostModel& cost_model, const Json& provenance) {
  if (!provenance.is_object()) return Invalid("provenance: expected an object");
  if (featurizer.has_value() && featurizer->dim() != estimator.feature_dim()) {
    return Invalid(absl::StrCat("featurizer.dim ", featurizer->dim(),
                                " differs from the estimator's ", estimator.feature_dim()));
  }
  for (const std::string& name : estimator.models()) {
    if (!cost_model.IndexOf(name).ok()) {
      return Invalid(absl::StrCat("cost_model: no entry for pool model '", name, "'"));
    }
  }
  const Json doc = {{"checksum", Json::binary(std::vector<uint8_t>(kChecksumSize, 0))},
                    {"format", kArtifactFormat},
                    {"version", kArtifactVersion},
                    {"models", estimator.models()},
                    {"featurizer", featurizer.has_value() ? featurizer->ToJson() : Json(nullptr)},
                    {"estimator", {{"kind", estimator.kind()}, {"state", estimator.Save()}}},
                    {"cost_model", cost_model.ToJson()},
                    {"provenance", provenance}};
  std::string bytes(kSelfDescribe);
  try {
    Json::to_cbor(doc, bytes);
  } catch (const std::exception& e) {
    // Only invalid UTF-8 in a string can make the encoder throw.
    return Invalid(absl::StrCat("cannot encode: ", e.what()));
  }
  if (absl::Status stamped = StampArtifactChecksum(&bytes); !stamped.ok()) {
    return absl::InternalError(absl::StrCat("artifact: ", stamped.message()));
  }
  return bytes;
}

absl::StatusOr<Artifact> ParseArtifact(absl::string_view bytes) {
  if (!HasSelfDescribeTag(bytes)) {
    return Invalid("not a router estimator artifact (no CBOR self-describe tag)");
  }
  if (!HasChecksumField(bytes)) return WithoutChecksum(bytes);
  if (const uint32_t stored = StoredChecksum(bytes), computed = ComputedChecksum(bytes);
      stored != computed) {
    return Invalid(absl::StrFormat(
        "checksum mismatch (stored 0x%08x, computed 0x%08x over %d bytes): the file is damaged "
        "or was edited",
        stored, computed, bytes.size()));
  }
  absl::StatusOr<Json> doc = DecodeDocument(bytes);
  if (!doc.ok()) return doc.status();
  // The loaders report through absl::Status; this guard only keeps a bug in one of them (an
  // unchecked json access) from escaping as an exception.
  try {
    return FromDocument(*doc);
  } catch (const std::exception& e) {
    return Invalid(absl::StrCat("malformed content: ", e.what()));
  }
}

absl::Status StampArtifactChecksum(std::string* bytes) {
  if (!HasChecksumField(*bytes)) {
    return Invalid("no checksum field to stamp (the map's first key, \"checksum\", a 4-byte string)");
  }
  const uint32_t crc = ComputedChecksum(*bytes);
  for (size_t k = 0; k < kChecksumSize; ++k) {
    (*bytes)[kChecksumAt + k] = static_cast<char>((crc >> (8 * (kChecksumSize - 1 - k))) & 0xff);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> UpgradeArtifact(absl::string_view bytes) {
  if (!HasSelfDescribeTag(bytes)) {
    return Invalid("not a router estimator artifact (no CBOR self-describe tag)");
  }
  absl::StatusOr<Json> doc = DecodeDocument(bytes);
  if (!doc.ok()) return doc.status();
  if (absl::Status format = CheckFormat(*doc); !format.ok()) return format;
  const auto version = doc->find("version");
  if (version == doc->end() || *version != 1 || doc->contains("checksum")) {
    return Invalid(absl::StrCat("only a version 1 artifact is upgraded; this one is version ",
                                version == doc->end() ? "(none)" : version->dump()));
  }
  (*doc)["version"] = kArtifactVersion;
  (*doc)["checksum"] = Json::binary(std::vector<uint8_t>(kChecksumSize, 0));
  std::string upgraded(kSelfDescribe);
  try {
    Json::to_cbor(*doc, upgraded);
  } catch (const std::exception& e) {
    return Invalid(absl::StrCat("cannot encode: ", e.what()));
  }
  if (absl::Status stamped = StampArtifactChecksum(&upgraded); !stamped.ok()) return stamped;
  if (absl::StatusOr<Artifact> loaded = ParseArtifact(upgraded); !loaded.ok()) {
    return loaded.status();
  }
  return upgraded;
}

absl::Status WriteArtifactFile(const std::string& path, absl::string_view bytes) {
  const std::string temp = path + ".tmp";
  errno = 0;
  std::FILE* file = std::fopen(temp.c_str(), "wb");
  if (file == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create ", temp, ": ", std::strerror(errno)));
  }
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
  const bool closed = std::fclose(file) == 0;
  if (!written || !closed) {
    std::remove(temp.c_str());
    return absl::InternalError(absl::StrCat("cannot write ", temp));
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(temp.c_str());
    return absl::InternalError(
        absl::StrCat("cannot rename ", temp, " to ", path, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Artifact> ReadArtifactFile(const std::string& path) {
  errno = 0;
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    const int err = errno;
    return absl::NotFoundError(absl::StrCat("cannot open artifact ", path, ": ",
                                            err != 0 ? std::strerror(err) : "open failed"));
  }
  std::string bytes;
  char buffer[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) bytes.append(buffer, n);
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) return absl::NotFoundError(absl::StrCat("cannot read artifact ", path));
  absl::StatusOr<Artifact> artifact = ParseArtifact(bytes);
  if (!artifact.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", artifact.status().message()));
  }
  return artifact;
}

absl::StatusOr<Predictor> MakePredictor(Artifact artifact) {
  return Predictor::Create(std::move(artifact.featurizer),
                           std::shared_ptr<const QualityEstimator>(std::move(artifact.estimator)),
                           std::move(artifact.cost_model));
}

}  // namespace router::core
