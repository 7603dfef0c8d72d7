#include "router_core/serving/ledger.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace router::core {
namespace {

absl::Status ValidateOptions(const LedgerOptions& o) {
  if (!std::isfinite(o.spend_rate_usd_per_second) || o.spend_rate_usd_per_second < 0) {
    return absl::InvalidArgumentError("spend_rate_usd_per_second: must be a finite number >= 0");
  }
  if (o.spend_rate_usd_per_second > 0 && (!std::isfinite(o.spend_burst_usd) || o.spend_burst_usd <= 0)) {
    return absl::InvalidArgumentError("spend_burst_usd: must be a finite number > 0 when pacing");
  }
  if (o.lease_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("lease_timeout: must be > 0");
  }
  if (o.max_expired_remembered < 0) {
    return absl::InvalidArgumentError("max_expired_remembered: must be >= 0");
  }
  return absl::OkStatus();
}

absl::Status ValidateModels(const std::vector<LedgerModel>& models) {
  absl::flat_hash_set<absl::string_view> names;
  for (size_t j = 0; j < models.size(); ++j) {
    if (models[j].name.empty()) return absl::InvalidArgumentError(absl::StrCat("models[", j, "].name: empty"));
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

}  // namespace

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::Create(const LedgerOptions& options,
                                                       std::vector<LedgerModel> models,
                                                       const Clock* clock) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  if (absl::Status s = ValidateModels(models); !s.ok()) return s;
  // Ids must not collide with those of an earlier process whose gateways may still call Complete.
  const absl::Time now = clock->Now();
  std::unique_ptr<Ledger> ledger(
      new Ledger(options, clock, absl::StrCat(absl::Hex(absl::ToUnixMicros(now)), "-")));
  absl::MutexLock lock(&ledger->mu_);
  ledger->models_ = std::move(models);
  ledger->bucket_level_ = options.spend_burst_usd;
  ledger->last_refill_ = now;
  return ledger;
}

absl::Status Ledger::SetModels(std::vector<LedgerModel> models) {
  if (absl::Status s = ValidateModels(models); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  models_ = std::move(models);
  return absl::OkStatus();
}

absl::Status Ledger::SetOptions(const LedgerOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  RefillLocked(clock_->Now());
  const bool was_paced = Paced();
  options_ = options;
  if (!was_paced) bucket_level_ = options.spend_burst_usd;
  bucket_level_ = std::min(bucket_level_, options.spend_burst_usd);
  return absl::OkStatus();
}

void Ledger::RefillLocked(absl::Time now) {
  if (Paced() && now > last_refill_) {
    bucket_level_ = std::min(options_.spend_burst_usd,
                             bucket_level_ + options_.spend_rate_usd_per_second *
                                                 absl::ToDoubleSeconds(now - last_refill_));
  }
  last_refill_ = std::max(last_refill_, now);
}

void Ledger::ExpireLocked(absl::Time now) {
  while (!expiry_order_.empty() && expiry_order_.begin()->first <= now) {
    const std::string id = expiry_order_.begin()->second;
    expiry_order_.erase(expiry_order_.begin());
    auto it = open_.find(id);
    if (it == open_.end()) continue;
    --in_use_[it->second.model];
    reserved_usd_ -= it->second.predicted_cost_usd;
    recorded_usd_ += it->second.predicted_cost_usd;
    if (options_.max_expired_remembered > 0) {
      expired_[id] = it->second.predicted_cost_usd;
      expired_order_.push_back(id);
      while (static_cast<int64_t>(expired_order_.size()) > options_.max_expired_remembered) {
        expired_.erase(expired_order_.front());
        expired_order_.pop_front();
      }
    }
    open_.erase(it);
  }
}

LedgerSnapshot Ledger::Snapshot() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  RefillLocked(now);
  ExpireLocked(now);
  LedgerSnapshot snap;
  for (const LedgerModel& m : models_) {
    snap.models.push_back(m.name);
    if (!m.slots.has_value()) {
      snap.free_slots.push_back(std::nullopt);
    } else {
      auto it = in_use_.find(m.name);
      const int64_t used = it == in_use_.end() ? 0 : it->second;
      snap.free_slots.push_back(std::max<int64_t>(0, *m.slots - used));
    }
  }
  if (Paced()) snap.spend_allowance_usd = std::max(0.0, bucket_level_);
  return snap;
}

absl::StatusOr<std::vector<std::string>> Ledger::Commit(
    absl::Span<const Reservation> reservations) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  RefillLocked(now);
  ExpireLocked(now);
  absl::flat_hash_map<absl::string_view, int64_t> wanted;
  double total = 0.0;
  for (size_t k = 0; k < reservations.size(); ++k) {
    const Reservation& r = reservations[k];
    if (!std::isfinite(r.predicted_cost_usd) || r.predicted_cost_usd < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("reservations[", k, "].predicted_cost_usd: must be finite and >= 0"));
    }
    ++wanted[r.model];
    total += r.predicted_cost_usd;
  }
  for (const auto& entry : wanted) {
    // Named copies: clang 14 cannot capture structured bindings in the lambda below.
    const absl::string_view name = entry.first;
    const int64_t count = entry.second;
    auto m = std::find_if(models_.begin(), models_.end(),
                          [&](const LedgerModel& lm) { return lm.name == name; });
    if (m == models_.end()) return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
    if (!m->slots.has_value()) continue;
    auto it = in_use_.find(name);
    const int64_t used = it == in_use_.end() ? 0 : it->second;
    if (used + count > *m->slots) {
      return absl::FailedPreconditionError(absl::StrCat(
          "model '", name, "': ", count, " slots wanted, ", std::max<int64_t>(0, *m->slots - used),
          " free"));
    }
  }
  // The 1e-12 absorbs summation-order rounding between the solver's budget check and this one.
  if (Paced() && total > std::max(0.0, bucket_level_) + 1e-12) {
    return absl::FailedPreconditionError(absl::StrCat(
        "spend: ", total, " USD wanted, ", std::max(0.0, bucket_level_), " USD available"));
  }
  std::vector<std::string> ids;
  ids.reserve(reservations.size());
  const absl::Time expires = now + options_.lease_timeout;
  for (const Reservation& r : reservations) {
    std::string id = absl::StrCat(id_prefix_, next_id_++);
    ++in_use_[r.model];
    reserved_usd_ += r.predicted_cost_usd;
    if (Paced()) bucket_level_ -= r.predicted_cost_usd;
    expiry_order_.emplace(expires, id);
    open_.emplace(id, Open{r.model, r.predicted_cost_usd, expires});
    ids.push_back(std::move(id));
  }
  return ids;
}

absl::StatusOr<CompletionRecord> Ledger::Complete(absl::string_view assignment_id,
                                                  std::optional<double> actual_cost_usd) {
  if (actual_cost_usd.has_value() && (!std::isfinite(*actual_cost_usd) || *actual_cost_usd < 0)) {
    return absl::InvalidArgumentError("actual_cost_usd: must be a finite number >= 0");
  }
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  RefillLocked(now);
  ExpireLocked(now);
  CompletionRecord record;
  double predicted = 0.0;
  if (auto it = open_.find(assignment_id); it != open_.end()) {
    predicted = it->second.predicted_cost_usd;
    --in_use_[it->second.model];
    reserved_usd_ -= predicted;
    expiry_order_.erase({it->second.expires, it->first});
    open_.erase(it);
    record.lease_was_active = true;
    recorded_usd_ += actual_cost_usd.value_or(predicted);
  } else if (auto e = expired_.find(assignment_id); e != expired_.end()) {
    predicted = e->second;
    expired_.erase(e);  // its entry in expired_order_ is skipped when it reaches the front
    // Expiry already recorded the predicted cost; replace it with the actual one.
    recorded_usd_ += actual_cost_usd.value_or(predicted) - predicted;
  } else {
    return absl::NotFoundError(
        absl::StrCat("assignment_id: '", assignment_id, "' is unknown or already completed"));
  }
  record.predicted_cost_usd = predicted;
  record.recorded_cost_usd = actual_cost_usd.value_or(predicted);
  if (Paced()) {
    bucket_level_ = std::min(options_.spend_burst_usd,
                             bucket_level_ + predicted - record.recorded_cost_usd);
  }
  return record;
}

int64_t Ledger::InUse(absl::string_view model) {
  absl::MutexLock lock(&mu_);
  ExpireLocked(clock_->Now());
  auto it = in_use_.find(model);
  return it == in_use_.end() ? 0 : it->second;
}

LedgerTotals Ledger::Totals() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  RefillLocked(now);
  ExpireLocked(now);
  LedgerTotals t;
  t.reserved_usd = reserved_usd_;
  t.recorded_usd = recorded_usd_;
  if (Paced()) t.bucket_level_usd = bucket_level_;
  t.open_assignments = static_cast<int64_t>(open_.size());
  return t;
}

}  // namespace router::core
