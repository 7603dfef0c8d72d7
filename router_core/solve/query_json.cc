#include "router_core/solve/query_json.h"

#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace router::core {

absl::StatusOr<Query> ReadQueryJson(const JsonReader& value, QualityLower lower) {
  if (absl::Status s = lower == QualityLower::kAccepted
                           ? value.CheckKeys({"id", "quality", "quality_lower", "cost", "allowed"})
                           : value.CheckKeys({"id", "quality", "cost", "allowed"});
      !s.ok()) {
    return s;
  }
  Query query;
  absl::StatusOr<std::string> id = value.Get(&JsonReader::String, "id");
  if (!id.ok()) return id.status();
  query.id = *std::move(id);
  for (auto [key, target] :
       {std::pair{"quality", &query.quality}, std::pair{"cost", &query.cost}}) {
    absl::StatusOr<std::vector<double>> v =
        value.Get(&JsonReader::NumberArray, key, NumberArraySpec{});
    if (!v.ok()) return v.status();
    *target = *std::move(v);
  }
  if (lower == QualityLower::kAccepted) {
    if (absl::Status s = value.ReadOptional("quality_lower", &query.quality_lower,
                                            &JsonReader::NumberArray, NumberArraySpec{});
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = value.ReadOptional("allowed", &query.allowed, &JsonReader::StringArray);
      !s.ok()) {
    return s;
  }
  return query;
}

absl::Status ReadSolveLimits(const JsonReader& object, absl::Duration* time_limit,
                             double* relative_gap) {
  if (std::optional<JsonReader> limit = object.OptionalMember("time_limit_ms")) {
    absl::StatusOr<double> ms = limit->Number();
    if (!ms.ok()) return ms.status();
    if (!std::isfinite(*ms)) return limit->Error("must be a finite number");
    if (*ms <= 0) return limit->Error("must be > 0");
    const absl::Duration d = absl::Milliseconds(*ms);
    // Below absl's resolution (a quarter nanosecond) the limit rounds to zero.
    if (d <= absl::ZeroDuration()) return limit->Error("must be > 0");
    *time_limit = d;
  }
  return object.ReadOptional("relative_gap", relative_gap, &JsonReader::Number);
}

}  // namespace router::core
