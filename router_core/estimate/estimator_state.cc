#include "router_core/estimate/estimator_state.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace router::core::estimate_internal {

using Json = nlohmann::json;

Json StateEnvelope(const StateLayout& layout, int dim, Json options, Json models) {
  Json state = {{"kind", std::string(layout.kind)}};
  if (layout.version.has_value()) state["version"] = *layout.version;
  state[std::string(layout.dim_key)] = dim;
  state["options"] = std::move(options);
  state[std::string(layout.models_key)] = std::move(models);
  return state;
}

absl::StatusOr<StateReader> StateReader::Open(const Json& state, const StateLayout& layout) {
  JsonReader root(state, std::string(layout.kind));
  if (absl::Status s = root.CheckObject(); !s.ok()) return s;
  absl::StatusOr<JsonReader> kind = root.Member("kind");
  if (!kind.ok()) return kind.status();
  if (absl::StatusOr<std::string> name = kind->Enum({layout.kind}); !name.ok()) {
    return name.status();
  }
  if (layout.version.has_value()) {
    absl::StatusOr<JsonReader> version = root.Member("version");
    if (!version.ok()) return version.status();
    absl::StatusOr<int64_t> v = version->Integer({.integral_floats = false});
    if (!v.ok()) return v.status();
    if (*v != *layout.version) {
      return version->Error(
          absl::StrCat("unsupported version ", *v, " (this build reads ", *layout.version, ")"));
    }
  }
  absl::StatusOr<int64_t> dim =
      root.Get(&JsonReader::Integer, layout.dim_key,
               IntegerSpec{.min = 1, .max = layout.max_dim, .integral_floats = false});
  if (!dim.ok()) return dim.status();
  absl::StatusOr<JsonReader> options = root.Member("options");
  if (!options.ok()) return options.status();
  if (absl::Status s = options->CheckObject(); !s.ok()) return s;
  absl::StatusOr<JsonReader> models = root.Member(layout.models_key);
  if (!models.ok()) return models.status();
  if (absl::Status s = models->CheckArray(); !s.ok()) return s;
  if (layout.models_required && models->size() == 0) return models->Error("empty");
  return StateReader(std::move(root), static_cast<int>(*dim), *std::move(options),
                     *std::move(models));
}

absl::Status StateReader::ForEachModel(
    absl::FunctionRef<absl::Status(const JsonReader& model, std::string name)> read) const {
  std::vector<std::string> seen;
  for (size_t j = 0; j < models_.size(); ++j) {
    const JsonReader model = models_.Element(j);
    absl::StatusOr<JsonReader> name_json = model.Member("name");
    if (!name_json.ok()) return name_json.status();
    absl::StatusOr<std::string> name = name_json->String();
    if (!name.ok()) return name.status();
    if (name->empty()) return name_json->Error("empty model name");
    if (std::find(seen.begin(), seen.end(), *name) != seen.end()) {
      return name_json->Error(absl::StrCat("duplicate model '", *name, "'"));
    }
    seen.push_back(*name);
    if (absl::Status s = read(model, *std::move(name)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ReadIntOptions(const JsonReader& options, OptionFields<int> fields) {
  for (const auto& [key, target] : fields) {
    absl::StatusOr<int64_t> v =
        options.Get(&JsonReader::Integer, key,
                    IntegerSpec{.min = INT32_MIN, .max = INT32_MAX, .integral_floats = false});
    if (!v.ok()) return v.status();
    *target = static_cast<int>(*v);
  }
  return absl::OkStatus();
}

absl::Status ReadNumberOptions(const JsonReader& options, OptionFields<double> fields) {
  for (const auto& [key, target] : fields) {
    absl::StatusOr<double> v = options.Get(&JsonReader::FiniteNumber, key);
    if (!v.ok()) return v.status();
    *target = *v;
  }
  return absl::OkStatus();
}

absl::Status ReadSeedOption(const JsonReader& options, absl::string_view key, uint64_t* target) {
  absl::StatusOr<uint64_t> v = options.Get(&JsonReader::Unsigned, key, /*integral_floats=*/false);
  if (!v.ok()) return v.status();
  *target = *v;
  return absl::OkStatus();
}

absl::Status ReadOptions(const JsonReader& options, OptionFields<int> ints,
                         OptionFields<double> numbers, uint64_t* seed) {
  if (absl::Status s = ReadIntOptions(options, ints); !s.ok()) return s;
  if (absl::Status s = ReadNumberOptions(options, numbers); !s.ok()) return s;
  return ReadSeedOption(options, "seed", seed);
}

absl::Status OptionsError(const JsonReader& options, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::InvalidArgumentError(absl::StrCat(options.name(), ".", status.message()));
}

absl::Status CheckSuccessCounts(absl::string_view success_field, absl::Span<const double> count,
                                absl::Span<const double> success) {
  for (size_t k = 0; k < count.size() && k < success.size(); ++k) {
    if (!(count[k] >= 0.0 && success[k] >= 0.0 && success[k] <= count[k])) {
      return absl::InvalidArgumentError(absl::StrCat(success_field, "[", k,
                                                     "]: need 0 <= success <= count, got success ",
                                                     success[k], ", count ", count[k]));
    }
  }
  return absl::OkStatus();
}

absl::Status MalformedState(absl::string_view kind, const std::exception& e) {
  return absl::InvalidArgumentError(absl::StrCat(kind, ": malformed state: ", e.what()));
}

}  // namespace router::core::estimate_internal
