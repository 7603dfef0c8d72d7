// File: estimator_state.h
//
// The envelope every estimator's saved state shares, so each estimator reads and writes only its
// own fields. A state is one JSON object (stored as CBOR in the artifact):
//   {"kind": "<kind>", ["version": N,] "<dim key>": D, "options": {...},
//    "<models key>": [{"name": "...", ...own fields}, ...], ...own fields}
// StateLayout says, per kind, which of these it has and under which keys (kNN predates the
// version and writes its dimension as "dim"; the classifier lists its models as "outputs").
//
// Writing: StateEnvelope builds the shared part; the estimator adds its own members. The object
// is an nlohmann::json (keys sorted), so the CBOR bytes depend only on the members and values.
//
// Reading: StateReader::Open checks the envelope: an object, the kind, the version, the dimension
// in [1, max_dim], an options object and an array of models; ForEachModel hands each model object
// with its checked name (non-empty, unique) to the estimator. Every error is INVALID_ARGUMENT
// naming the field from the kind down (`uniroute.models[2].name: duplicate model 'm'`).
// The option readers below read the usual option types with the same paths; CatchMalformed turns
// any nlohmann exception that a reader did not foresee into INVALID_ARGUMENT.
//
// Thread-safety: pure functions; a StateReader is read-only and points into the state (which must
// outlive it). Cost: O(size of the state).

#ifndef ROUTER_CORE_ESTIMATE_ESTIMATOR_STATE_H_
#define ROUTER_CORE_ESTIMATE_ESTIMATOR_STATE_H_

#include <cstdint>
#include <exception>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"
#include "router_core/estimate/quality_estimator.h"
#include "router_core/json/json_reader.h"

namespace router::core::estimate_internal {

struct StateLayout {
  // The "kind" value, also the root of every field path in messages.
  absl::string_view kind;
  // Written as "version" and required to be equal on reading; nullopt: the kind has none.
  std::optional<int> version = std::nullopt;
  // Key of the feature dimension and its largest accepted value.
  absl::string_view dim_key = "feature_dim";
  int64_t max_dim = INT32_MAX;
  // Key of the per-model array; whether an empty array is refused ("<kind>.models: empty").
  absl::string_view models_key = "models";
  bool models_required = false;
};

// {"kind", ["version"], dim_key: dim, "options": options, models_key: models}.
nlohmann::json StateEnvelope(const StateLayout& layout, int dim, nlohmann::json options,
                             nlohmann::json models);

class StateReader {
 public:
  static absl::StatusOr<StateReader> Open(const nlohmann::json& state, const StateLayout& layout);

  // The whole state, its path the kind ("uniroute"); for the estimator's own members.
  const JsonReader& root() const { return root_; }
  int dim() const { return dim_; }
  // The "options" object.
  const JsonReader& options() const { return options_; }
  // Calls `read` on each model object in order, with its name; stops at the first error.
  absl::Status ForEachModel(
      absl::FunctionRef<absl::Status(const JsonReader& model, std::string name)> read) const;

 private:
  StateReader(JsonReader root, int dim, JsonReader options, JsonReader models)
      : root_(std::move(root)),
        dim_(dim),
        options_(std::move(options)),
        models_(std::move(models)) {}

  JsonReader root_;
  int dim_;
  JsonReader options_;
  JsonReader models_;
};

// Option readers: each member `key` of `options` (required) into its target, in order, stopping at
// the first error. Ints are JSON integers that fit an int (range checks are the options
// validator's); numbers must be finite; seeds are integers in [0, 2^64).
template <typename T>
using OptionFields = std::initializer_list<std::pair<absl::string_view, T*>>;
absl::Status ReadIntOptions(const JsonReader& options, OptionFields<int> fields);
absl::Status ReadNumberOptions(const JsonReader& options, OptionFields<double> fields);
absl::Status ReadSeedOption(const JsonReader& options, absl::string_view key, uint64_t* target);
// All three at once: the ints, the numbers, then "seed" into `*seed`.
absl::Status ReadOptions(const JsonReader& options, OptionFields<int> ints,
                         OptionFields<double> numbers, uint64_t* seed);
// The options validator's error (which names the option: "k: ...") under the options' path
// ("knn.options.k: ..."); OK stays OK.
absl::Status OptionsError(const JsonReader& options, const absl::Status& status);

// Per-bucket (or per-cluster) statistics: 0 <= success[k] <= count[k] for every k (same sizes),
// else INVALID_ARGUMENT naming `success_field`[k].
absl::Status CheckSuccessCounts(absl::string_view success_field, absl::Span<const double> count,
                                absl::Span<const double> success);

// Runs `load` (returning absl::StatusOr<std::unique_ptr<E>>, E a QualityEstimator) and returns
// its estimator as a QualityEstimator; an nlohmann exception escaping it becomes INVALID_ARGUMENT
// "<kind>: malformed state: <what>" (the readers check before every access; this is a backstop
// so that none can escape into the service).
absl::Status MalformedState(absl::string_view kind, const std::exception& e);
template <typename Load>
absl::StatusOr<std::unique_ptr<QualityEstimator>> CatchMalformed(absl::string_view kind,
                                                                 Load load) {
  try {
    auto estimator = load();
    if (!estimator.ok()) return estimator.status();
    return std::unique_ptr<QualityEstimator>(*std::move(estimator));
  } catch (const nlohmann::json::exception& e) {
    return MalformedState(kind, e);
  }
}

}  // namespace router::core::estimate_internal

#endif  // ROUTER_CORE_ESTIMATE_ESTIMATOR_STATE_H_
