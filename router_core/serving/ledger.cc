#include "router_core/serving/ledger.h"

#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace router::core {

absl::Status ValidateLedgerOptions(const LedgerOptions& o) {
  if (!std::isfinite(o.spend_rate_usd_per_second) || o.spend_rate_usd_per_second < 0) {
    return absl::InvalidArgumentError("spend_rate_usd_per_second: must be a finite number >= 0");
  }
  if (!std::isfinite(o.spend_burst_usd) || o.spend_burst_usd < 0) {
    return absl::InvalidArgumentError("spend_burst_usd: must be a finite number >= 0");
  }
  if (o.spend_rate_usd_per_second > 0 && o.spend_burst_usd <= 0) {
    return absl::InvalidArgumentError("spend_burst_usd: must be > 0 when pacing");
  }
  if (o.lease_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("lease_timeout: must be > 0");
  }
  if (o.max_expired_remembered < 0) {
    return absl::InvalidArgumentError("max_expired_remembered: must be >= 0");
  }
  if (!std::isfinite(o.max_actual_cost_usd) || o.max_actual_cost_usd <= 0) {
    return absl::InvalidArgumentError("max_actual_cost_usd: must be a finite number > 0");
  }
  return absl::OkStatus();
}

absl::Status ValidateActualCost(std::optional<double> actual_cost_usd,
                                const LedgerOptions& options) {
  if (!actual_cost_usd.has_value()) return absl::OkStatus();
  if (!std::isfinite(*actual_cost_usd) || *actual_cost_usd < 0) {
    return absl::InvalidArgumentError("actual_cost_usd: must be a finite number >= 0");
  }
  if (*actual_cost_usd > options.max_actual_cost_usd) {
    return absl::InvalidArgumentError(
        absl::StrCat("actual_cost_usd: ", *actual_cost_usd, " USD is above the limit of ",
                     options.max_actual_cost_usd, " USD per call (budget.max_actual_cost_usd)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLedgerModels(const std::vector<LedgerModel>& models) {
  absl::flat_hash_set<absl::string_view> names;
  for (size_t j = 0; j < models.size(); ++j) {
    if (models[j].name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("models[", j, "].name: empty"));
    }
    if (!names.insert(models[j].name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("models[", j, "].name: duplicate model '", models[j].name, "'"));
    }
    if (models[j].slots.has_value() && *models[j].slots < 0) {
      return absl::InvalidArgumentError(absl::StrCat("models[", j, "].slots: negative"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateInlineWindowSpec(const InlineWindowSpec& spec) {
  if (spec.arrivals < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("inline.window_arrivals: must be >= 1, got ", spec.arrivals));
  }
  if (spec.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("inline.window_duration: must be > 0, got ",
                                                   absl::FormatDuration(spec.duration)));
  }
  return absl::OkStatus();
}

absl::StatusOr<InlineArrival> Ledger::ArriveInline(const InlineWindowSpec& spec) {
  absl::StatusOr<InlineStep> step = StepInline({}, spec, 1);
  if (!step.ok()) return step.status();
  InlineArrival out = std::move(step->arrivals.at(0));
  out.snapshot = std::move(step->snapshot);
  return out;
}

absl::StatusOr<InlineCommit> Ledger::CommitInline(uint64_t window, double cap_usd,
                                                  const Reservation& reservation) {
  const InlineCommitRequest request{window, cap_usd, reservation};
  absl::StatusOr<InlineStep> step = StepInline(absl::MakeConstSpan(&request, 1), {}, 0);
  if (!step.ok()) return step.status();
  return std::move(step->commits.at(0));
}

}  // namespace router::core
