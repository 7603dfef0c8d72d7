#include "router_core/serving/local_ledger.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "router_core/secure_random.h"
#include "router_core/solve/solution.h"

namespace router::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Absorbs the rounding of summing the same costs in another order (the solver's budget check and
// this one).
constexpr double kSpendSlack = 1e-12;

// The decimal digits at the front of `s`, consumed; nullopt unless they are canonical (no sign, no
// leading zero), so that one number has one spelling.
std::optional<uint64_t> ConsumeNumber(absl::string_view& s) {
  size_t n = 0;
  while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
  if (n == 0 || (n > 1 && s[0] == '0')) return std::nullopt;
  uint64_t value = 0;
  if (!absl::SimpleAtoi(s.substr(0, n), &value)) return std::nullopt;  // overflow
  s.remove_prefix(n);
  return value;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalLedger>> LocalLedger::Create(const LedgerOptions& options,
                                                                 std::vector<LedgerModel> models,
                                                                 const Clock* clock) {
  if (absl::Status s = ValidateLedgerOptions(options); !s.ok()) return s;
  if (absl::Status s = ValidateLedgerModels(models); !s.ok()) return s;
  if (clock == nullptr) return absl::InvalidArgumentError("clock: required");
  const absl::Time now = clock->Now();
  std::unique_ptr<LocalLedger> ledger(
      new LocalLedger(options, clock, absl::StrCat(absl::Hex(absl::ToUnixMicros(now)), "-")));
  absl::MutexLock lock(&ledger->mu_);
  ledger->models_ = std::move(models);
  ledger->bucket_level_ = options.spend_burst_usd;
  ledger->last_refill_ = now;
  return ledger;
}

absl::Status LocalLedger::SetModels(std::vector<LedgerModel> models) {
  if (absl::Status s = ValidateLedgerModels(models); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  models_ = std::move(models);
  return absl::OkStatus();
}

absl::Status LocalLedger::SetOptions(const LedgerOptions& options) {
  if (absl::Status s = ValidateLedgerOptions(options); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  RefillLocked(clock_->Now());
  const bool was_paced = Paced();
  options_ = options;
  if (!was_paced) bucket_level_ = options.spend_burst_usd;
  bucket_level_ = std::min(bucket_level_, options.spend_burst_usd);
  return absl::OkStatus();
}

void LocalLedger::AdvanceLocked(absl::Time now) {
  RefillLocked(now);
  ExpireLocked(now);
}

void LocalLedger::RefillLocked(absl::Time now) {
  if (Paced() && now > last_refill_) {
    bucket_level_ = std::min(options_.spend_burst_usd,
                             bucket_level_ + options_.spend_rate_usd_per_second *
                                                 absl::ToDoubleSeconds(now - last_refill_));
  }
  last_refill_ = std::max(last_refill_, now);
}

double LocalLedger::AllowanceLocked() const {
  return Paced() ? std::max(0.0, bucket_level_ - held_spend_usd_) : kInf;
}

int LocalLedger::InternLocked(absl::string_view name) {
  const auto [it, added] = name_index_.try_emplace(name, static_cast<int>(names_.size()));
  if (added) {
    names_.emplace_back(name);
    in_use_.push_back(0);
    held_.push_back(0);
  }
  return it->second;
}

const LedgerModel* LocalLedger::FindModelLocked(absl::string_view name) const {
  auto it = std::find_if(models_.begin(), models_.end(),
                         [&](const LedgerModel& m) { return m.name == name; });
  return it == models_.end() ? nullptr : &*it;
}

std::optional<int64_t> LocalLedger::FreeLocked(const LedgerModel& model) const {
  if (!model.slots.has_value()) return std::nullopt;
  const auto it = name_index_.find(model.name);
  const int64_t taken = it == name_index_.end() ? 0 : in_use_[it->second] + held_[it->second];
  return std::max<int64_t>(0, *model.slots - taken);
}

void LocalLedger::DropHoldLocked(absl::flat_hash_map<uint64_t, Held>::iterator it) {
  for (const auto& [model, count] : it->second.slots) held_[model] -= count;
  held_spend_usd_ -= it->second.spend_usd;
  holds_.erase(it);
  if (holds_.empty()) held_spend_usd_ = 0.0;  // no rounding residue once nothing is held
}

std::optional<std::pair<uint64_t, uint64_t>> LocalLedger::ParseAssignmentId(
    absl::string_view id) const {
  if (!absl::ConsumePrefix(&id, id_prefix_)) return std::nullopt;
  const std::optional<uint64_t> sequence = ConsumeNumber(id);
  if (!sequence.has_value() || !absl::ConsumePrefix(&id, ".") || id.size() != 16) {
    return std::nullopt;
  }
  uint64_t tag = 0;
  for (char c : id) {
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return std::nullopt;
    tag = tag << 4 | static_cast<uint64_t>(digit);
  }
  return std::make_pair(*sequence, tag);
}

std::optional<uint64_t> LocalLedger::ParseHoldId(absl::string_view id) const {
  if (!absl::ConsumePrefix(&id, id_prefix_) || !absl::ConsumePrefix(&id, "h")) return std::nullopt;
  const std::optional<uint64_t> number = ConsumeNumber(id);
  if (!number.has_value() || !id.empty()) return std::nullopt;
  return number;
}

void LocalLedger::ExpireLocked(absl::Time now) {
  while (!expiry_queue_.empty() && expiry_queue_.front().first <= now) {
    const uint64_t sequence = expiry_queue_.front().second;
    expiry_queue_.pop_front();
    auto it = open_.find(sequence);
    if (it == open_.end()) continue;  // completed before it expired
    --in_use_[it->second.model];
    reserved_usd_ -= it->second.predicted_cost_usd;
    recorded_usd_ += it->second.predicted_cost_usd;
    ++expired_count_;
    if (options_.max_expired_remembered > 0) {
      expired_[sequence] = Expired{it->second.predicted_cost_usd, it->second.tag};
      expired_order_.push_back(sequence);
      while (static_cast<int64_t>(expired_order_.size()) > options_.max_expired_remembered) {
        expired_.erase(expired_order_.front());
        expired_order_.pop_front();
      }
    }
    open_.erase(it);
  }
  for (auto it = holds_.begin(); it != holds_.end();) {
    auto next = std::next(it);
    if (it->second.expires <= now) DropHoldLocked(it);
    it = next;
  }
}

absl::StatusOr<LedgerSnapshot> LocalLedger::Snapshot() {
  absl::MutexLock lock(&mu_);
  AdvanceLocked(clock_->Now());
  return SnapshotLocked();
}

LedgerSnapshot LocalLedger::SnapshotLocked() const {
  LedgerSnapshot snap;
  snap.models.reserve(models_.size());
  snap.free_slots.reserve(models_.size());
  for (const LedgerModel& m : models_) {
    snap.models.push_back(m.name);
    snap.free_slots.push_back(FreeLocked(m));
  }
  snap.spend_allowance_usd = AllowanceLocked();
  return snap;
}

absl::StatusOr<LedgerHold> LocalLedger::Hold(const HoldRequest& request) {
  if (!(request.spend_usd >= 0)) {
    return absl::InvalidArgumentError("spend_usd: must be >= 0");
  }
  if (request.hold_for <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("hold_for: must be > 0");
  }
  for (size_t k = 0; k < request.slots.size(); ++k) {
    if (request.slots[k].count < 0) {
      return absl::InvalidArgumentError(absl::StrCat("slots[", k, "].count: must be >= 0"));
    }
  }
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  const uint64_t number = next_hold_++;
  Held held;
  held.expires = now + request.hold_for;
  LedgerHold out;
  out.id = absl::StrCat(id_prefix_, "h", number);
  out.expires = held.expires;
  out.slots.reserve(request.slots.size());
  for (const HoldRequest::Slots& want : request.slots) {
    const LedgerModel* model = FindModelLocked(want.model);
    if (model == nullptr) {
      out.slots.push_back(0);  // the ledger is the authority: an unknown model gets nothing
      continue;
    }
    const std::optional<int64_t> free = FreeLocked(*model);
    if (!free.has_value()) {
      out.slots.push_back(want.count);  // unlimited: nothing to hold
      continue;
    }
    const int64_t granted = std::min(want.count, *free);
    out.slots.push_back(granted);
    if (granted == 0) continue;
    const int index = InternLocked(want.model);
    held_[index] += granted;
    held.slots.emplace_back(index, granted);
  }
  if (Paced()) {
    held.spend_usd = std::min(request.spend_usd, AllowanceLocked());
    held_spend_usd_ += held.spend_usd;
    out.spend_usd = held.spend_usd;
  } else {
    out.spend_usd = request.spend_usd;
  }
  holds_.emplace(number, std::move(held));
  return out;
}

void LocalLedger::Release(const LedgerHold& hold) {
  const std::optional<uint64_t> number = ParseHoldId(hold.id);
  if (!number.has_value()) return;
  absl::MutexLock lock(&mu_);
  if (auto it = holds_.find(*number); it != holds_.end()) DropHoldLocked(it);
}

absl::StatusOr<std::vector<Lease>> LocalLedger::Commit(
    const LedgerHold* hold, absl::Span<const Reservation> reservations) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  // The hold is given back whatever happens below: committed, refused or fenced.
  std::optional<Held> held;
  if (hold != nullptr) {
    const std::optional<uint64_t> number = ParseHoldId(hold->id);
    auto it = number.has_value() ? holds_.find(*number) : holds_.end();
    if (it == holds_.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("hold '", hold->id, "' expired or was used before this commit (fenced)"));
    }
    held = it->second;
    DropHoldLocked(it);
  }
  return CommitLocked(now, held, reservations);
}

absl::StatusOr<std::vector<Lease>> LocalLedger::CommitLocked(
    absl::Time now, const std::optional<Held>& held, absl::Span<const Reservation> reservations) {
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
    const LedgerModel* model = FindModelLocked(w.name);
    if (model == nullptr) return absl::NotFoundError(absl::StrCat("unknown model '", w.name, "'"));
    // What this commit may take: its hold's slots (already given back above, so now free), or
    // what is free.
    const std::optional<int64_t> free = FreeLocked(*model);
    if (!free.has_value()) continue;
    if (held.has_value()) {
      int64_t granted = 0;
      const auto index = name_index_.find(w.name);
      for (const auto& [m, count] : held->slots) {
        if (index != name_index_.end() && m == index->second) granted = count;
      }
      if (w.count > granted) {
        return absl::InvalidArgumentError(absl::StrCat(
            "model '", w.name, "': ", w.count, " slots committed, the hold granted ", granted));
      }
    }
    if (w.count > *free) {
      return absl::FailedPreconditionError(absl::StrCat("model '", w.name, "': ", w.count,
                                                        " slots wanted, ", *free, " free"));
    }
  }
  if (Paced()) {
    // Spend a hold granted is the decision's, even if completions charged more than predicted
    // meanwhile and took the bucket below what holds hold.
    if (held.has_value() && total > held->spend_usd + kSpendSlack) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spend: ", total, " USD committed, the hold granted ", held->spend_usd, " USD"));
    }
    const double allowance = AllowanceLocked();
    if (!held.has_value() && total > allowance + kSpendSlack) {
      return absl::FailedPreconditionError(
          absl::StrCat("spend: ", total, " USD wanted, ", allowance, " USD available"));
    }
  }
  for (Wanted& w : wanted) w.model = InternLocked(w.name);
  std::vector<Lease> leases;
  leases.reserve(reservations.size());
  const absl::Time expires = now + options_.lease_timeout;
  for (size_t k = 0; k < reservations.size(); ++k) {
    const Reservation& r = reservations[k];
    const int model = wanted[wanted_of[k]].model;
    const uint64_t sequence = next_id_++;
    const uint64_t tag = SecureRandom64();
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
    open_.emplace(sequence, Open{model, r.predicted_cost_usd, expires, tag});
    leases.push_back(Lease{absl::StrCat(id_prefix_, sequence, ".", absl::Hex(tag, absl::kZeroPad16)),
                           options_.lease_timeout});
  }
  return leases;
}

absl::StatusOr<CompletionRecord> LocalLedger::Complete(absl::string_view assignment_id,
                                                       std::optional<double> actual_cost_usd) {
  {
    absl::MutexLock lock(&mu_);
    const absl::Status bad = ValidateActualCost(actual_cost_usd, options_);
    if (!bad.ok()) return bad;
  }
  const absl::Status unknown = absl::NotFoundError(
      absl::StrCat("assignment_id: '", assignment_id, "' is unknown or already completed"));
  const std::optional<std::pair<uint64_t, uint64_t>> id = ParseAssignmentId(assignment_id);
  if (!id.has_value()) return unknown;
  const auto [sequence, tag] = *id;
  absl::MutexLock lock(&mu_);
  AdvanceLocked(clock_->Now());
  CompletionRecord record;
  double predicted = 0.0;
  auto it = open_.find(sequence);
  auto e = it == open_.end() ? expired_.find(sequence) : expired_.end();
  if (it != open_.end() && it->second.tag == tag) {
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
  } else if (e != expired_.end() && e->second.tag == tag) {
    predicted = e->second.predicted_cost_usd;
    expired_.erase(e);  // its entry in expired_order_ is skipped when it reaches the front
    // Expiry already recorded the predicted cost; replace it with the actual one.
    recorded_usd_ += actual_cost_usd.value_or(predicted) - predicted;
  } else {
    return unknown;
  }
  record.predicted_cost_usd = predicted;
  record.recorded_cost_usd = actual_cost_usd.value_or(predicted);
  if (Paced()) {
    bucket_level_ = std::min(options_.spend_burst_usd,
                             bucket_level_ + predicted - record.recorded_cost_usd);
  }
  return record;
}

absl::StatusOr<InlineStep> LocalLedger::StepInline(absl::Span<const InlineCommitRequest> commits,
                                                   const InlineWindowSpec& spec,
                                                   int64_t arrivals) {
  if (arrivals < 0 || arrivals > kMaxInlineStep) {
    return absl::InvalidArgumentError(
        absl::StrCat("arrivals: must be in [0, ", kMaxInlineStep, "], got ", arrivals));
  }
  if (static_cast<int64_t>(commits.size()) > kMaxInlineStep) {
    return absl::InvalidArgumentError(
        absl::StrCat("commits: at most ", kMaxInlineStep, ", got ", commits.size()));
  }
  if (arrivals > 0) {
    if (absl::Status s = ValidateInlineWindowSpec(spec); !s.ok()) return s;
  }
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  InlineStep out;
  out.commits.reserve(commits.size());
  for (const InlineCommitRequest& c : commits) out.commits.push_back(CommitInlineLocked(now, c));
  out.arrivals.reserve(static_cast<size_t>(arrivals));
  for (int64_t k = 0; k < arrivals; ++k) {
    if (window_.number == 0 || window_.seen >= window_.arrivals ||
        now - window_.opened >= window_.duration) {
      window_ = Window{window_.number + 1, now, spec.arrivals, spec.duration, 0};
      window_spend_.emplace_back(window_.number, 0.0);
      while (window_spend_.size() > kInlineWindowsKept) window_spend_.pop_front();
    }
    InlineArrival& a = out.arrivals.emplace_back();
    a.window = window_.number;
    a.position = window_.seen++;
    a.window_arrivals = window_.arrivals;
    a.time_left = window_.duration == absl::InfiniteDuration()
                      ? absl::InfiniteDuration()
                      : std::max(absl::ZeroDuration(), window_.opened + window_.duration - now);
    a.spent_usd = window_spend_.back().second;
  }
  out.snapshot = SnapshotLocked();
  const auto named = [&](uint64_t window) {
    return std::any_of(commits.begin(), commits.end(),
                       [&](const InlineCommitRequest& c) { return c.window == window; }) ||
           std::any_of(out.arrivals.begin(), out.arrivals.end(),
                       [&](const InlineArrival& a) { return a.window == window; });
  };
  for (const auto& [window, spent] : window_spend_) {
    if (named(window)) out.window_spent.emplace_back(window, spent);
  }
  return out;
}

absl::StatusOr<InlineCommit> LocalLedger::CommitInlineLocked(absl::Time now,
                                                             const InlineCommitRequest& request) {
  const double cap = request.cap_usd;
  if (!(cap >= 0)) return absl::InvalidArgumentError("cap_usd: must be >= 0");
  auto w = std::find_if(window_spend_.begin(), window_spend_.end(),
                        [&](const auto& e) { return e.first == request.window; });
  if (w == window_spend_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("inline window w", request.window, " is closed (the current one is w",
                     window_.number, ")"));
  }
  const double cost = request.reservation.predicted_cost_usd;
  const double spent = w->second + cost;
  if (std::isfinite(cap) && spent > cap + kBudgetTolerance * std::max(1.0, cap)) {
    return absl::FailedPreconditionError(absl::StrCat("inline window w", request.window, ": ",
                                                      cost, " USD wanted, ",
                                                      std::max(0.0, cap - w->second),
                                                      " USD left of its cap"));
  }
  absl::StatusOr<std::vector<Lease>> leases =
      CommitLocked(now, std::nullopt, absl::MakeConstSpan(&request.reservation, 1));
  if (!leases.ok()) return leases.status();
  w->second = spent;
  return InlineCommit{std::move((*leases)[0]), spent};
}

absl::StatusOr<int64_t> LocalLedger::InUse(absl::string_view model) {
  absl::MutexLock lock(&mu_);
  ExpireLocked(clock_->Now());
  const auto it = name_index_.find(model);
  return it == name_index_.end() ? 0 : in_use_[it->second];
}

absl::StatusOr<LedgerTotals> LocalLedger::Totals() {
  absl::MutexLock lock(&mu_);
  AdvanceLocked(clock_->Now());
  LedgerTotals t;
  t.reserved_usd = reserved_usd_;
  t.recorded_usd = recorded_usd_;
  if (Paced()) t.bucket_level_usd = bucket_level_;
  t.open_assignments = static_cast<int64_t>(open_.size());
  t.open_holds = static_cast<int64_t>(holds_.size());
  t.expired_assignments = expired_count_;
  return t;
}

}  // namespace router::core
