#include "router_core/solve/query_json.h"

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

}  // namespace router::core
