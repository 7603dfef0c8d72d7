#include "router_core/serving/ledger.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

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

int Ledger::InternLocked(absl::string_view name) {
  const auto [it, added] = name_index_.try_emplace(name, static_cast<int>(names_.size()));
  if (added) {
    names_.emplace_back(name);
    in_use_.push_back(0);
  }
  return it->second;
}

int64_t Ledger::InUseLocked(absl::string_view name) const {
  const auto it = name_index_.find(name);
  return it == name_index_.end() ? 0 : in_use_[it->second];
}

std::optional<uint64_t> Ledger::SequenceOf(absl::string_view assignment_id) const {
  // Only the canonical decimal this ledger writes, so that one lease has exactly one id:
  // SimpleAtoi alone would also take "+7", " 7" and "07".
  if (!absl::ConsumePrefix(&assignment_id, id_prefix_) || assignment_id.empty() ||
      (assignment_id.size() > 1 && assignment_id[0] == '0') ||
      !std::all_of(assignment_id.begin(), assignment_id.end(),
                   [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  uint64_t sequence = 0;
  if (!absl::SimpleAtoi(assignment_id, &sequence)) return std::nullopt;  // overflow
  return sequence;
}

void Ledger::ExpireLocked(absl::Time now) {
  while (!expiry_queue_.empty() && expiry_queue_.front().first <= now) {
    const uint64_t sequence = expiry_queue_.front().second;
    expiry_queue_.pop_front();
    auto it = open_.find(sequence);
    if (it == open_.end()) continue;  // completed before it expired
    --in_use_[it->second.model];
    reserved_usd_ -= it->second.predicted_cost_usd;
    recorded_usd_ += it->second.predicted_cost_usd;
    if (options_.max_expired_remembered > 0) {
      expired_[sequence] = it->second.predicted_cost_usd;
      expired_order_.push_back(sequence);
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
      snap.free_slots.push_back(std::max<int64_t>(0, *m.slots - InUseLocked(m.name)));
    }
  }
  if (Paced()) snap.spend_allowance_usd = std::max(0.0, bucket_level_);
  return snap;
}

absl::StatusOr<std::vector<std::string>> Ledger::Commit(absl::Span<const Reservation> reservations,
                                                        absl::Duration* lease_timeout) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  RefillLocked(now);
  ExpireLocked(now);
  // Distinct models wanted, in first-seen order, and which of them each reservation is.
  struct Wanted {
    absl::string_view name;
    int64_t count = 0;
    int model = -1;  // index into names_, once the commit is known to fit
  };
  std::vector<Wanted> wanted;
  absl::flat_hash_map<absl::string_view, size_t> wanted_index;
  std::vector<size_t> wanted_of(reservations.size());
  double total = 0.0;
  for (size_t k = 0; k < reservations.size(); ++k) {
    const Reservation& r = reservations[k];
    if (!std::isfinite(r.predicted_cost_usd) || r.predicted_cost_usd < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("reservations[", k, "].predicted_cost_usd: must be finite and >= 0"));
    }
    const auto [it, added] = wanted_index.try_emplace(r.model, wanted.size());
    if (added) wanted.push_back({r.model});
    ++wanted[it->second].count;
    wanted_of[k] = it->second;
    total += r.predicted_cost_usd;
  }
  for (const Wanted& w : wanted) {
    auto m = std::find_if(models_.begin(), models_.end(),
                          [&](const LedgerModel& lm) { return lm.name == w.name; });
    if (m == models_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown model '", w.name, "'"));
    }
    if (!m->slots.has_value()) continue;
    const int64_t used = InUseLocked(w.name);
    if (used + w.count > *m->slots) {
      return absl::FailedPreconditionError(
          absl::StrCat("model '", w.name, "': ", w.count, " slots wanted, ",
                       std::max<int64_t>(0, *m->slots - used), " free"));
    }
  }
  // The 1e-12 absorbs summation-order rounding between the solver's budget check and this one.
  if (Paced() && total > std::max(0.0, bucket_level_) + 1e-12) {
    return absl::FailedPreconditionError(absl::StrCat(
        "spend: ", total, " USD wanted, ", std::max(0.0, bucket_level_), " USD available"));
  }
  for (Wanted& w : wanted) w.model = InternLocked(w.name);
  std::vector<std::string> ids;
  ids.reserve(reservations.size());
  const absl::Time expires = now + options_.lease_timeout;
  for (size_t k = 0; k < reservations.size(); ++k) {
    const Reservation& r = reservations[k];
    const int model = wanted[wanted_of[k]].model;
    const uint64_t sequence = next_id_++;
    ++in_use_[model];
    reserved_usd_ += r.predicted_cost_usd;
    if (Paced()) bucket_level_ -= r.predicted_cost_usd;
    const std::pair<absl::Time, uint64_t> entry(expires, sequence);
    if (expiry_queue_.empty() || expiry_queue_.back() < entry) {
      expiry_queue_.push_back(entry);
    } else {
      expiry_queue_.insert(std::upper_bound(expiry_queue_.begin(), expiry_queue_.end(), entry),
                           entry);
    }
    open_.emplace(sequence, Open{model, r.predicted_cost_usd, expires});
    ids.push_back(absl::StrCat(id_prefix_, sequence));
  }
  if (lease_timeout != nullptr) *lease_timeout = options_.lease_timeout;
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
  const std::optional<uint64_t> sequence = SequenceOf(assignment_id);
  auto it = sequence.has_value() ? open_.find(*sequence) : open_.end();
  auto e = sequence.has_value() && it == open_.end() ? expired_.find(*sequence) : expired_.end();
  if (it != open_.end()) {
    predicted = it->second.predicted_cost_usd;
    --in_use_[it->second.model];
    reserved_usd_ -= predicted;
    open_.erase(it);  // its expiry entry is skipped when it reaches the front, or dropped below
    if (expiry_queue_.size() > 2 * open_.size() + 64) {
      expiry_queue_.clear();
      for (const auto& [open_sequence, open] : open_) {
        expiry_queue_.emplace_back(open.expires, open_sequence);
      }
      std::sort(expiry_queue_.begin(), expiry_queue_.end());
    }
    record.lease_was_active = true;
    recorded_usd_ += actual_cost_usd.value_or(predicted);
  } else if (e != expired_.end()) {
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
  return InUseLocked(model);
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
