#include "router_core/learn/outcome_log.h"

#include <optional>

namespace router::core {

absl::Status ApplyOutcomeLogRecord(const OutcomeLogRecord& record, OutcomeLearner& learner,
                                   int64_t* removed) {
  if (record.kind == OutcomeLogRecord::Kind::kOutcome) {
    return learner.Record(record.model, record.cluster, record.prior_quality, record.score);
  }
  const int64_t n = learner.Reset(
      record.model.empty() ? std::nullopt : std::optional<std::string>(record.model),
      record.cluster < 0 ? std::nullopt : std::optional<int>(record.cluster));
  if (removed != nullptr) *removed = n;
  return absl::OkStatus();
}

}  // namespace router::core
