#include "server/ledger_redis/redis_ledger.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "router_core/secure_random.h"
#include "server/ledger_redis/ledger_lua.h"

namespace router::server {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kFixedKeys = 10;
// A lease's entry in a commit's record, as ledger.lua writes it (ENTRY, MAX_MICROS): the model's
// index in 4 digits, micro-USD in 16, the tag's 16 characters, and the slot-limit mark.
constexpr size_t kEntryChars = 37;
constexpr int kMaxCommitModels = 9999;
constexpr double kMaxLeaseCostUsd = 1e9;

// The decimal digits at the front of `s`, consumed; nullopt unless canonical (no sign, no leading
// zero), so that one number has one spelling.
std::optional<uint64_t> ConsumeNumber(absl::string_view& s) {
  size_t n = 0;
  while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
  if (n == 0 || (n > 1 && s[0] == '0')) return std::nullopt;
  uint64_t value = 0;
  if (!absl::SimpleAtoi(s.substr(0, n), &value)) return std::nullopt;
  s.remove_prefix(n);
  return value;
}

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string Hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

int64_t MicrosUp(double usd) {
  if (std::isinf(usd)) return -1;
  return static_cast<int64_t>(std::ceil(usd * 1e6 - 1e-3));
}

int64_t MicrosDown(double usd) {
  if (std::isinf(usd)) return -1;
  return static_cast<int64_t>(std::floor(usd * 1e6 + 1e-3));
}

absl::Status ValidateRedisLedgerOptions(const RedisLedgerOptions& o) {
  std::string host;
  int port = 0;
  if (!SplitRedisAddress(o.address, host, port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis.address: expected HOST:PORT with a port in 1..65535, got '", o.address,
                     "'"));
  }
  if (o.domain.empty() || o.domain.size() > 64 ||
      !std::all_of(o.domain.begin(), o.domain.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
               c == '-';
      })) {
    return absl::InvalidArgumentError(
        "redis.domain: 1-64 characters of letters, digits, '_', '.' and '-'");
  }
  if (o.connect_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("redis.connect_timeout_ms: must be > 0");
  }
  if (o.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("redis.call_timeout_ms: must be > 0");
  }
  if (o.retry_after <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("redis.retry_after_ms: must be > 0");
  }
  if (o.max_connections < 1 || o.max_connections > 256) {
    return absl::InvalidArgumentError("redis.max_connections: must be in [1, 256]");
  }
  if (o.recent_snapshot_for < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("redis.recent_snapshot_ms: must be >= 0");
  }
  if (o.refresh_snapshot_for < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("redis.refresh_snapshot_ms: must be >= 0");
  }
  const RedisLedgerOptions::Escrow& e = o.escrow;
  if (!std::isfinite(e.spend_usd) || e.spend_usd < 0) {
    return absl::InvalidArgumentError("redis.escrow.spend_usd: must be finite and >= 0");
  }
  if (e.slots < 0 || e.slots > 1'000'000) {
    return absl::InvalidArgumentError("redis.escrow.slots: must be in [0, 1000000]");
  }
  if (e.skew_margin <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("redis.escrow.skew_margin_ms: must be > 0");
  }
  if (e.validity <= e.skew_margin) {
    return absl::InvalidArgumentError(
        "redis.escrow.validity_ms: must be > redis.escrow.skew_margin_ms");
  }
  if (e.renew_every <= absl::ZeroDuration() || e.renew_every >= e.validity - e.skew_margin) {
    return absl::InvalidArgumentError(
        "redis.escrow.renew_every_ms: must be > 0 and < redis.escrow.validity_ms - "
        "redis.escrow.skew_margin_ms");
  }
  return absl::OkStatus();
}

namespace {
using Steady = std::chrono::steady_clock;

absl::Duration FromSteady(Steady::duration d) {
  return absl::FromChrono(std::chrono::duration_cast<std::chrono::microseconds>(d));
}
Steady::duration ToSteady(absl::Duration d) {
  return std::chrono::microseconds(absl::ToInt64Microseconds(d));
}
}  // namespace

// What this replica drew from Redis and decides on alone while Redis cannot be reached.
struct RedisLedger::Escrow {
  struct LocalLease {
    std::string model;
    int64_t micros = 0;
    std::string tag;
    Steady::time_point ends;
  };
  struct LocalHold {
    int64_t spend = -1;  // micro-USD; -1 = unlimited
    absl::flat_hash_map<std::string, int64_t> slots;
    Steady::time_point ends;
  };

  std::string incarnation;
  uint64_t number = 0;
  Steady::time_point drawn;  // when the call that drew it was sent
  Steady::time_point ends;   // drawn + validity - skew_margin
  int64_t spend = -1;        // micro-USD granted in all; -1 = unlimited (no pacing)
  int64_t spent = 0;         // micro-USD: predicted costs, corrected by Completes
  int64_t reported = 0;      // `spent` as Redis last acknowledged it
  absl::flat_hash_map<std::string, int64_t> slots;  // held per self-hosted model
  std::map<uint64_t, LocalLease> leases;          // its leases not completed, by number
  absl::flat_hash_map<uint64_t, LocalHold> holds;  // its open holds

  // Forgets holds and leases that have ended (a lease's predicted cost stays in `spent`).
  void Prune(Steady::time_point now) {
    absl::erase_if(holds, [&](const auto& h) { return h.second.ends <= now; });
    for (auto it = leases.begin(); it != leases.end();) {
      it = it->second.ends <= now ? leases.erase(it) : std::next(it);
    }
  }
  // Spend left (-1 = unlimited).
  int64_t SpendLeft(Steady::time_point now) const {
    if (spend < 0) return -1;
    int64_t left = spend - spent;
    for (const auto& [n, h] : holds) {
      if (h.ends > now && h.spend > 0) left -= h.spend;
    }
    return std::max<int64_t>(0, left);
  }
  int64_t SlotsLeft(const std::string& model, Steady::time_point now) const {
    auto it = slots.find(model);
    int64_t left = it == slots.end() ? 0 : it->second;
    for (const auto& [n, l] : leases) {
      if (l.ends > now && l.model == model) --left;
    }
    for (const auto& [n, h] : holds) {
      auto s = h.slots.find(model);
      if (h.ends > now && s != h.slots.end()) left -= s->second;
    }
    return std::max<int64_t>(0, left);
  }
};

// The inline windows this replica numbers alone while it decides inline queries within its escrow
// (StepInline while Redis cannot be reached): above kEscrowWindowBase, which Redis' own numbers
// (one per window of the whole fleet) never reach, from a random point, so that two replicas'
// windows have different numbers.
struct RedisLedger::EscrowWindows {
  static constexpr uint64_t kEscrowWindowBase = uint64_t{1} << 62;

  const uint64_t first = kEscrowWindowBase + ((core::SecureRandom64() >> 24) << 20) + 1;
  uint64_t current = 0;  // 0 = none opened yet
  Steady::time_point opened;
  int64_t arrivals = 0;  // the current window's size
  std::optional<Steady::duration> duration;  // nullopt = none
  int64_t seen = 0;
  std::map<uint64_t, int64_t> spent;  // micro-USD, of the last kInlineWindowsKept windows

  static bool Numbered(uint64_t window) { return window > kEscrowWindowBase; }
  // Counts one arrival, opening the next window first when the current one is full or past its
  // duration (or none is open).
  core::InlineArrival Arrive(const core::InlineWindowSpec& spec, Steady::time_point now) {
    if (current == 0 || seen >= arrivals || (duration.has_value() && now - opened >= *duration)) {
      current = current == 0 ? first : current + 1;
      opened = now;
      arrivals = spec.arrivals;
      duration = spec.duration == absl::InfiniteDuration()
                     ? std::nullopt
                     : std::optional<Steady::duration>(ToSteady(spec.duration));
      seen = 0;
      spent[current] = 0;
      while (spent.size() > core::kInlineWindowsKept) spent.erase(spent.begin());
    }
    core::InlineArrival a;
    a.window = current;
    a.position = seen++;
    a.window_arrivals = arrivals;
    if (duration.has_value()) {
      a.time_left = FromSteady(std::max(Steady::duration::zero(), opened + *duration - now));
    }
    return a;
  }
};

RedisLedger::RedisLedger(const RedisLedgerOptions& redis, RedisLedgerObserver* observer)
    : redis_(redis),
      observer_(observer),
      keys_([&] {
        const std::string tag = absl::StrCat("{rt:", redis.domain, "}:");
        std::vector<std::string> keys;
        for (const char* name : {"meta", "bucket", "holds", "hexp", "commits", "cexp", "gexp",
                                 "held", "used", "win"}) {
          keys.push_back(tag + name);
        }
        return keys;
      }()),
      pool_(std::make_unique<RedisConnectionPool>([&] {
        RedisConnectionOptions o;
        SplitRedisAddress(redis.address, o.host, o.port);
        o.password = redis.password;
        o.connect_timeout = redis.connect_timeout;
        o.call_timeout = redis.call_timeout;
        o.max_connections = redis.max_connections;
        return o;
      }())),
      escrow_on_(redis.escrow.spend_usd > 0 || redis.escrow.slots > 0),
      escrow_windows_(std::make_unique<EscrowWindows>()) {}

RedisLedger::~RedisLedger() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  recent_wanted_cv_.SignalAll();
  if (refresher_.joinable()) refresher_.join();
}

absl::StatusOr<std::unique_ptr<RedisLedger>> RedisLedger::Create(
    const RedisLedgerOptions& redis, const core::LedgerOptions& options,
    std::vector<core::LedgerModel> models, RedisLedgerObserver* observer) {
  if (absl::Status s = ValidateRedisLedgerOptions(redis); !s.ok()) return s;
  if (absl::Status s = core::ValidateLedgerOptions(options); !s.ok()) return s;
  std::unique_ptr<RedisLedger> ledger(new RedisLedger(redis, observer));
  if (absl::Status s = ledger->SetOptions(options); !s.ok()) return s;
  if (absl::Status s = ledger->SetModels(std::move(models)); !s.ok()) return s;
  // Unreachable Redis is not fatal: the ledger starts degraded and loads at the next call.
  if (ledger->LoadFunctions().ok()) ledger->Init("").IgnoreError();
  if (redis.recent_snapshot_for > absl::ZeroDuration() &&
      redis.refresh_snapshot_for > absl::ZeroDuration()) {
    RedisLedger* l = ledger.get();
    ledger->refresher_ = std::thread([l] { l->KeepSnapshotFresh(); });
  }
  return ledger;
}

absl::Status RedisLedger::SetModels(std::vector<core::LedgerModel> models) {
  if (absl::Status s = core::ValidateLedgerModels(models); !s.ok()) return s;
  std::vector<std::string> args;
  args.push_back(absl::StrCat(models.size()));
  for (const core::LedgerModel& m : models) {
    args.push_back(m.name);
    args.push_back(m.slots.has_value() ? absl::StrCat(*m.slots) : "-1");
  }
  absl::MutexLock lock(&mu_);
  models_ = std::move(models);
  model_args_ = std::move(args);
  recent_.reset();
  return absl::OkStatus();
}

absl::Status RedisLedger::SetOptions(const core::LedgerOptions& options) {
  if (absl::Status s = core::ValidateLedgerOptions(options); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  options_ = options;
  recent_.reset();
  return absl::OkStatus();
}

std::vector<std::string> RedisLedger::ModelNamesLocked() const {
  std::vector<std::string> names;
  names.reserve(models_.size());
  for (const core::LedgerModel& m : models_) names.push_back(m.name);
  return names;
}

core::LedgerSnapshot RedisLedger::ReadSnapshot(const Reply& reply, size_t at,
                                               std::vector<std::string> models) {
  core::LedgerSnapshot snap;
  const int64_t allowance = reply.Int(at + 1);
  snap.spend_allowance_usd = allowance < 0 ? kInf : static_cast<double>(allowance) / 1e6;
  for (size_t k = 0; k < models.size(); ++k) {
    const int64_t free = reply.Int(at + 2 + k);
    snap.free_slots.push_back(free < 0 ? std::nullopt : std::optional<int64_t>(free));
  }
  snap.models = std::move(models);
  const int64_t seq = reply.Int(0);
  absl::MutexLock lock(&mu_);
  if (seq >= recent_seq_) {
    recent_ = snap;
    recent_seq_ = seq;
    recent_at_ = Steady::now();
  }
  return snap;
}

std::optional<core::LedgerSnapshot> RedisLedger::RecentSnapshot() {
  absl::MutexLock lock(&mu_);
  const Steady::time_point now = Steady::now();
  recent_wanted_ = now;
  if (refresher_idle_) recent_wanted_cv_.Signal();
  if (!recent_.has_value() || degraded_ ||
      now - recent_at_ > ToSteady(redis_.recent_snapshot_for)) {
    return std::nullopt;
  }
  return recent_;
}

bool RedisLedger::degraded() const {
  absl::MutexLock lock(&mu_);
  return degraded_;
}

void RedisLedger::SetGuarded(bool guarded) {
  bool became = false;
  {
    absl::MutexLock lock(&mu_);
    became = guarded && !guarded_;
    guarded_ = guarded;
  }
  // A loss or a rollback: Redis may no longer hold the escrow this replica knows.
  if (became) VoidEscrow();
}

bool RedisLedger::guarded() const {
  absl::MutexLock lock(&mu_);
  return guarded_;
}

std::string RedisLedger::Prefix() const {
  absl::MutexLock lock(&mu_);
  return incarnation_.substr(0, 12);
}

absl::Status RedisLedger::Unavailable(const std::string& why) const {
  return absl::UnavailableError(absl::StrCat(
      "ledger unavailable (redis ", redis_.address, ": ", why, "); retry after ",
      absl::ToInt64Milliseconds(redis_.retry_after), " ms"));
}

void RedisLedger::Fail(absl::string_view op, absl::Duration elapsed, absl::string_view kind,
                       const std::string& why) {
  bool became = false;
  {
    absl::MutexLock lock(&mu_);
    became = !degraded_;
    degraded_ = true;
    open_until_ = absl::Now() + redis_.retry_after;
    last_error_ = why;
  }
  if (observer_ != nullptr) {
    observer_->OnLedgerCall(op, elapsed, kind);
    if (became) observer_->OnLedgerDegraded(true);
  }
}

void RedisLedger::Succeed(absl::string_view op, absl::Duration elapsed) {
  bool recovered = false;
  {
    absl::MutexLock lock(&mu_);
    recovered = degraded_;
    degraded_ = false;
    open_until_ = absl::InfinitePast();
  }
  if (observer_ != nullptr) {
    observer_->OnLedgerCall(op, elapsed, "");
    if (recovered) observer_->OnLedgerDegraded(false);
  }
}

absl::StatusOr<std::unique_ptr<RedisLedger::Reply>> RedisLedger::Send(
    absl::string_view op, const std::vector<std::string>& argv) {
  const absl::Time start = absl::Now();
  RedisTransportFailure failure;
  absl::StatusOr<std::unique_ptr<Reply>> r = pool_->Command(argv, failure);
  if (r.ok()) return r;
  if (failure.stale) {
    // A pooled connection broken while idle (Redis restarted): not yet a reason to refuse every
    // call; the next call opens a fresh one.
    if (observer_ != nullptr) observer_->OnLedgerCall(op, absl::Now() - start, "connection");
    return Unavailable(failure.why);
  }
  Fail(op, absl::Now() - start, failure.timeout ? "timeout" : "connection", failure.why);
  return Unavailable(failure.timeout && !failure.connecting
                         ? absl::StrCat("timed out after ",
                                        absl::ToInt64Milliseconds(redis_.call_timeout), " ms")
                         : failure.why);
}

absl::Status RedisLedger::LoadFunctions() {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<Reply>> r =
      Send("load", {"FUNCTION", "LOAD", "REPLACE", std::string(kLedgerLua)});
  if (!r.ok()) return r.status();
  if ((*r)->IsError()) {
    const std::string why = (*r)->Text();
    Fail("load", absl::Now() - start, "server", why);
    return Unavailable(why);
  }
  return absl::OkStatus();
}

absl::Status RedisLedger::Init(const std::string& known) {
  const absl::Time start = absl::Now();
  int64_t lease_us = 0, burst = 0;
  {
    absl::MutexLock lock(&mu_);
    lease_us = absl::ToInt64Microseconds(options_.lease_timeout);
    burst = MicrosDown(options_.spend_burst_usd);
  }
  std::vector<std::string> argv = {"FCALL", "rl3_init", absl::StrCat(kFixedKeys)};
  argv.insert(argv.end(), keys_.begin(), keys_.end());
  argv.push_back(absl::StrCat(Hex16(core::SecureRandom64()), Hex16(core::SecureRandom64())));
  argv.push_back(known);
  argv.push_back(absl::StrCat(lease_us));
  argv.push_back(absl::StrCat(burst));
  absl::StatusOr<std::unique_ptr<Reply>> r = Send("init", argv);
  if (!r.ok()) return r.status();
  if ((*r)->IsError()) {
    const std::string why = (*r)->Text();
    if (absl::StrContains(why, "Function not found")) {
      if (absl::Status s = LoadFunctions(); !s.ok()) return s;
      return Init(known);
    }
    Fail("init", absl::Now() - start, "server", why);
    return Unavailable(why);
  }
  {
    absl::MutexLock lock(&mu_);
    const std::string inc = (*r)->Str(0);
    if (inc != incarnation_) {
      incarnation_ = inc;
      seen_ = 0;
      recent_.reset();
      recent_seq_ = 0;
    }
    seen_ = std::max(seen_, (*r)->Int(1));
  }
  Succeed("init", absl::Now() - start);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RedisLedger::Reply>> RedisLedger::Attempt(
    absl::string_view op, const char* function, const std::vector<std::string>& args,
    bool& retry) {
  retry = false;
  std::vector<std::string> argv = {"FCALL", function, absl::StrCat(kFixedKeys)};
  argv.insert(argv.end(), keys_.begin(), keys_.end());
  std::string known, circuit_error;
  bool circuit_open = false;
  {
    absl::MutexLock lock(&mu_);
    circuit_open = absl::Now() < open_until_;
    circuit_error = last_error_;
    known = incarnation_;
  }
  if (circuit_open) {
    if (observer_ != nullptr) observer_->OnLedgerCall(op, absl::ZeroDuration(), "circuit_open");
    return Unavailable(circuit_error);
  }
  if (known.empty()) {
    if (absl::Status s = Init(""); !s.ok()) return s;
  }
  {
    absl::MutexLock lock(&mu_);
    known = incarnation_;
    argv.push_back(incarnation_);
    argv.push_back(absl::StrCat(seen_));
    argv.push_back(absl::StrCat(absl::ToInt64Microseconds(options_.lease_timeout)));
    char rate[64];
    std::snprintf(rate, sizeof(rate), "%.6f", options_.spend_rate_usd_per_second * 1e6);
    argv.push_back(rate);
    argv.push_back(absl::StrCat(MicrosDown(options_.spend_burst_usd)));
    argv.push_back(absl::StrCat(options_.max_expired_remembered));
  }
  argv.insert(argv.end(), args.begin(), args.end());
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<Reply>> r = Send(op, argv);
  if (!r.ok()) return r.status();
  const absl::Duration elapsed = absl::Now() - start;
  if ((*r)->IsError()) {
    std::string text = (*r)->Text();
    absl::string_view msg = text;
    absl::ConsumePrefix(&msg, "ERR ");
    if (absl::StrContains(msg, "Function not found")) {
      if (absl::Status s = LoadFunctions(); !s.ok()) return s;
      retry = true;
      return Unavailable("the ledger's functions were missing; reloaded");
    }
    auto rest = [&](absl::string_view kind) {
      absl::string_view m = msg;
      absl::ConsumePrefix(&m, kind);
      absl::ConsumePrefix(&m, " ");
      return std::string(m);
    };
    if (absl::StartsWith(msg, "LOST")) {
      if (observer_ != nullptr) observer_->OnLedgerCall(op, elapsed, "lost_state");
      VoidEscrow();
      if (absl::Status s = Init(known); !s.ok()) return s;
      retry = true;
      return Unavailable(rest("LOST"));
    }
    // The ledger's own refusals: the call went through, Redis is healthy.
    if (absl::StartsWith(msg, "FENCED")) {
      Succeed(op, elapsed);
      if (observer_ != nullptr) observer_->OnLedgerCall(op, absl::ZeroDuration(), "fenced");
      return absl::FailedPreconditionError(rest("FENCED"));
    }
    if (absl::StartsWith(msg, "NOFIT")) {
      Succeed(op, elapsed);
      return absl::FailedPreconditionError(rest("NOFIT"));
    }
    if (absl::StartsWith(msg, "INVALID")) {
      Succeed(op, elapsed);
      return absl::InvalidArgumentError(rest("INVALID"));
    }
    if (absl::StartsWith(msg, "NOTFOUND")) {
      Succeed(op, elapsed);
      return absl::NotFoundError(rest("NOTFOUND"));
    }
    // Redis' own errors (OOM, BUSY, LOADING, NOAUTH, READONLY, ...).
    Fail(op, elapsed, "server", text);
    return Unavailable(text);
  }
  if ((*r)->size() == 0) {
    Fail(op, elapsed, "server", "unexpected reply");
    return Unavailable("unexpected reply");
  }
  {
    absl::MutexLock lock(&mu_);
    if (known == incarnation_) seen_ = std::max(seen_, (*r)->Int(0));
  }
  Succeed(op, elapsed);
  return r;
}

absl::StatusOr<std::unique_ptr<RedisLedger::Reply>> RedisLedger::Call(
    absl::string_view op, const char* function, const std::vector<std::string>& args) {
  if (op != "escrow") MaybeRenewEscrow();
  absl::StatusOr<std::unique_ptr<Reply>> r;
  for (int attempt = 0; attempt < 3; ++attempt) {
    bool retry = false;
    r = Attempt(op, function, args, retry);
    if (r.ok() || !retry) return r;
  }
  return r;
}

void RedisLedger::KeepSnapshotFresh() {
  const Steady::duration renew_after = ToSteady(redis_.recent_snapshot_for) / 2;
  const Steady::duration refresh_for = ToSteady(redis_.refresh_snapshot_for);
  // When this thread last read one: a read that failed, or whose reply was not kept as the newest,
  // is not tried again before another half period either.
  Steady::time_point last_read;
  mu_.Lock();
  while (!stopping_) {
    const Steady::time_point now = Steady::now();
    if (now - recent_wanted_ > refresh_for) {
      // Idle: wait for a batch to ask again.
      refresher_idle_ = true;
      recent_wanted_cv_.Wait(&mu_);
      refresher_idle_ = false;
      continue;
    }
    const Steady::time_point renewed = recent_.has_value() ? std::max(recent_at_, last_read)
                                                           : last_read;
    const Steady::time_point due = renewed + renew_after;
    if (now < due) {
      recent_wanted_cv_.WaitWithTimeout(&mu_, absl::FromChrono(due - now));
      continue;
    }
    last_read = now;
    mu_.Unlock();
    Snapshot().IgnoreError();  // kept as the recent snapshot; a failure is the observer's
    mu_.Lock();
  }
  mu_.Unlock();
}

absl::StatusOr<core::LedgerSnapshot> RedisLedger::Snapshot() {
  std::vector<std::string> args;
  std::vector<std::string> names;
  {
    absl::MutexLock lock(&mu_);
    args = model_args_;
    names = ModelNamesLocked();
  }
  absl::StatusOr<std::unique_ptr<Reply>> r = Call("snapshot", "rl3_snapshot", args);
  if (!r.ok()) return r.status();
  SetGuarded((*r)->Int(1) != 0);
  return ReadSnapshot(**r, 1, std::move(names));
}

absl::StatusOr<core::LedgerHold> RedisLedger::Hold(const core::HoldRequest& request) {
  if (!(request.spend_usd >= 0)) return absl::InvalidArgumentError("spend_usd: must be >= 0");
  if (request.hold_for <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("hold_for: must be > 0");
  }
  std::vector<std::string> args = {absl::StrCat(absl::ToInt64Microseconds(request.hold_for)),
                                   absl::StrCat(MicrosUp(request.spend_usd))};
  {
    absl::MutexLock lock(&mu_);
    args.insert(args.end(), model_args_.begin(), model_args_.end());
  }
  args.push_back(absl::StrCat(request.slots.size()));
  for (size_t k = 0; k < request.slots.size(); ++k) {
    if (request.slots[k].count < 0) {
      return absl::InvalidArgumentError(absl::StrCat("slots[", k, "].count: must be >= 0"));
    }
    args.push_back(request.slots[k].model);
    args.push_back(absl::StrCat(request.slots[k].count));
  }
  absl::StatusOr<std::unique_ptr<Reply>> r = Call("hold", "rl3_hold", args);
  if (absl::IsUnavailable(r.status()) && escrow_on_) return EscrowHold(request, r.status());
  if (!r.ok()) return r.status();
  core::LedgerHold hold;
  hold.id = absl::StrCat(Prefix(), "-h", (*r)->Int(1));
  hold.expires = absl::FromUnixMicros((*r)->Int(2));
  // Granted all that was asked (rounded up to the micro-USD): the ask itself, so that a decision
  // does not see a rounding shortfall as the paced allowance binding.
  const int64_t spend = (*r)->Int(3);
  const bool all = spend < 0 || (std::isfinite(request.spend_usd) &&
                                 spend >= MicrosUp(request.spend_usd));
  hold.spend_usd = all ? request.spend_usd : static_cast<double>(spend) / 1e6;
  for (size_t k = 0; k < request.slots.size(); ++k) hold.slots.push_back((*r)->Int(4 + k));
  return hold;
}

namespace {

// The number of a hold id "<prefix>-h<number>" issued under `prefix`.
std::optional<uint64_t> ParseHoldNumber(absl::string_view id, const std::string& prefix) {
  if (prefix.empty() || !absl::ConsumePrefix(&id, prefix) || !absl::ConsumePrefix(&id, "-h")) {
    return std::nullopt;
  }
  const std::optional<uint64_t> n = ConsumeNumber(id);
  if (!n.has_value() || !id.empty()) return std::nullopt;
  return n;
}

// Reservations as rl3_commit_packed takes them (ledger.lua, commit_with): the models header, in
// the order first reserved, then one fixed-width entry per reservation (the model's index in the
// header, micro-USD, a new random tag, appended to `tags`, and whether the model is `limited`).
absl::StatusOr<std::string> PackReservations(absl::Span<const core::Reservation> reservations,
                                             const absl::flat_hash_set<std::string>& limited,
                                             std::vector<std::string>& tags) {
  absl::flat_hash_map<absl::string_view, int> index;
  std::string head;
  std::string body;
  body.reserve(reservations.size() * kEntryChars);
  for (size_t k = 0; k < reservations.size(); ++k) {
    const core::Reservation& res = reservations[k];
    if (!(res.predicted_cost_usd >= 0 && res.predicted_cost_usd <= kMaxLeaseCostUsd)) {
      return absl::InvalidArgumentError(
          absl::StrCat("reservations[", k, "].predicted_cost_usd: must be in [0, 1e9]"));
    }
    auto [it, added] = index.try_emplace(res.model, static_cast<int>(index.size()) + 1);
    if (added) {
      if (it->second > kMaxCommitModels) {
        return absl::InvalidArgumentError(
            absl::StrCat("reservations: more than ", kMaxCommitModels, " models in one commit"));
      }
      absl::StrAppend(&head, res.model.size(), "|", res.model);
    }
    tags.push_back(Hex16(core::SecureRandom64()));
    absl::StrAppendFormat(&body, "%04d%016d", it->second, MicrosUp(res.predicted_cost_usd));
    absl::StrAppend(&body, tags.back(), limited.contains(res.model) ? "1" : "0");
  }
  return absl::StrCat(index.size(), "|", head, body);
}

}  // namespace

void RedisLedger::Release(const core::LedgerHold& hold) {
  if (escrow_on_) {
    absl::string_view id = hold.id;
    if (absl::ConsumePrefix(&id, Prefix()) && absl::ConsumePrefix(&id, "-x")) {
      uint64_t n = 0;
      if (absl::SimpleAtoi(id, &n)) {
        absl::MutexLock lock(&escrow_mu_);
        if (escrow_ != nullptr) escrow_->holds.erase(n);
      }
      return;
    }
  }
  const std::optional<uint64_t> number = ParseHoldNumber(hold.id, Prefix());
  if (!number.has_value()) return;
  Call("release", "rl3_release", {absl::StrCat(*number)}).IgnoreError();
}

absl::StatusOr<std::vector<core::Lease>> RedisLedger::Commit(
    const core::LedgerHold* hold, absl::Span<const core::Reservation> reservations) {
  std::string hold_number;
  const std::string prefix = Prefix();
  if (escrow_on_ && hold != nullptr && absl::StartsWith(hold->id, absl::StrCat(prefix, "-x"))) {
    return EscrowCommit(hold, reservations, absl::UnavailableError("the ledger is degraded"));
  }
  if (hold != nullptr) {
    const std::optional<uint64_t> number = ParseHoldNumber(hold->id, prefix);
    if (!number.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat("hold '", hold->id, "' expired or was used before this commit (fenced)"));
    }
    hold_number = absl::StrCat(*number);
  }
  std::vector<std::string> args = {hold_number, "0", "-1"};
  absl::Duration lease_timeout;
  std::vector<std::string> names;
  absl::flat_hash_set<std::string> limited;  // models with a slot limit
  {
    absl::MutexLock lock(&mu_);
    args.insert(args.end(), model_args_.begin(), model_args_.end());
    lease_timeout = options_.lease_timeout;
    names = ModelNamesLocked();
    for (const core::LedgerModel& m : models_) {
      if (m.slots.has_value()) limited.insert(m.name);
    }
  }
  args.push_back(absl::StrCat(reservations.size()));
  std::vector<std::string> tags;
  tags.reserve(reservations.size());
  absl::StatusOr<std::string> packed = PackReservations(reservations, limited, tags);
  if (!packed.ok()) return packed.status();
  args.push_back(*std::move(packed));
  absl::StatusOr<std::unique_ptr<Reply>> r = Call("commit", "rl3_commit_packed", args);
  // A Redis hold's grant stays held in Redis until it expires: the escrow decides on its own.
  if (absl::IsUnavailable(r.status()) && escrow_on_) {
    return EscrowCommit(nullptr, reservations, r.status());
  }
  if (!r.ok()) return r.status();
  // The prefix of the incarnation that answered (a re-created state may have changed it).
  const std::string issued = Prefix();
  std::vector<core::Lease> leases;
  leases.reserve(reservations.size());
  for (size_t k = 0; k < reservations.size(); ++k) {
    leases.push_back(
        core::Lease{absl::StrCat(issued, "-", (*r)->Int(2 + k), ".", tags[k]), lease_timeout});
  }
  // What may be used after the commit (a Function library older than this one sends none).
  if ((*r)->size() >= 2 + reservations.size() + 2 + names.size()) {
    ReadSnapshot(**r, 2 + reservations.size(), std::move(names));
  }
  return leases;
}

struct RedisLedger::PendingComplete {
  uint64_t number = 0;
  std::string tag;
  int64_t actual_micros = -1;  // -1: as predicted
  // Set by the thread that sent the call, before `done` (under complete_mu_).
  absl::StatusOr<core::CompletionRecord> result = absl::InternalError("not sent");
  bool done = false;
};

absl::StatusOr<core::CompletionRecord> RedisLedger::Complete(
    absl::string_view assignment_id, std::optional<double> actual_cost_usd) {
  {
    absl::MutexLock lock(&mu_);
    const absl::Status bad = core::ValidateActualCost(actual_cost_usd, options_);
    if (!bad.ok()) return bad;
  }
  const absl::Status unknown = absl::NotFoundError(
      absl::StrCat("assignment_id: '", assignment_id, "' is unknown or already completed"));
  absl::string_view id = assignment_id;
  const std::string prefix = Prefix();
  if (prefix.empty() || !absl::ConsumePrefix(&id, prefix) || !absl::ConsumePrefix(&id, "-")) {
    return unknown;
  }
  if (escrow_on_ && absl::ConsumePrefix(&id, "e")) {
    const std::optional<uint64_t> n = ConsumeNumber(id);
    if (!n.has_value() || !absl::ConsumePrefix(&id, ".")) return unknown;
    absl::MutexLock lock(&escrow_mu_);
    if (escrow_ != nullptr) escrow_->Prune(Steady::now());
    if (escrow_ == nullptr || !escrow_->leases.contains(*n) || escrow_->leases[*n].tag != id) {
      return absl::NotFoundError(absl::StrCat(
          "assignment_id: '", assignment_id,
          "' is unknown, already completed, or its escrow lease ended (its predicted cost "
          "stands)"));
    }
    auto it = escrow_->leases.find(*n);
    core::CompletionRecord record;
    const int64_t predicted = it->second.micros;
    const int64_t recorded = actual_cost_usd.has_value() ? MicrosUp(*actual_cost_usd) : predicted;
    record.predicted_cost_usd = static_cast<double>(predicted) / 1e6;
    record.recorded_cost_usd = static_cast<double>(recorded) / 1e6;
    record.lease_was_active = true;
    escrow_->spent += recorded - predicted;
    escrow_->leases.erase(it);  // its slot is free again; its spend is in `spent`
    return record;
  }
  const std::optional<uint64_t> number = ConsumeNumber(id);
  if (!number.has_value() || !absl::ConsumePrefix(&id, ".") || id.size() != 16 || !IsLowerHex(id)) {
    return unknown;
  }
  PendingComplete c;
  c.number = *number;
  c.tag = std::string(id);
  c.actual_micros = actual_cost_usd.has_value() ? MicrosUp(*actual_cost_usd) : -1;
  CompleteInGroup(c);
  if (!c.result.ok() && absl::IsNotFound(c.result.status())) return unknown;
  return std::move(c.result);
}

void RedisLedger::CompleteInGroup(PendingComplete& c) {
  // Must match MAX_COMPLETES in ledger.lua.
  constexpr size_t kMaxGroup = 64;
  complete_mu_.Lock();
  completes_.push_back(&c);
  while (!c.done) {
    if (completing_) {
      complete_done_.Wait(&complete_mu_);
      continue;
    }
    // No call in flight: this thread sends the oldest waiting ones (its own among them, unless
    // more than kMaxGroup came before it: then it sends again after).
    completing_ = true;
    const size_t n = std::min(completes_.size(), kMaxGroup);
    const std::vector<PendingComplete*> group(completes_.begin(), completes_.begin() + n);
    completes_.erase(completes_.begin(), completes_.begin() + n);
    complete_mu_.Unlock();
    SendCompletes(group);
    complete_mu_.Lock();
    for (PendingComplete* p : group) p->done = true;
    completing_ = false;
    complete_done_.SignalAll();
  }
  complete_mu_.Unlock();
}

void RedisLedger::SendCompletes(absl::Span<PendingComplete* const> group) {
  // A group of one goes as one Complete (rl3_complete: NOTFOUND is its error reply); both answer
  // {seq, then predicted, recorded, active per lease}.
  const bool one = group.size() == 1;
  std::vector<std::string> args;
  if (!one) args.push_back(absl::StrCat(group.size()));
  for (const PendingComplete* p : group) {
    args.push_back(absl::StrCat(p->number));
    args.push_back(p->tag);
    args.push_back(absl::StrCat(p->actual_micros));
  }
  const char* function = one ? "rl3_complete" : "rl3_complete_many";
  absl::StatusOr<std::unique_ptr<Reply>> r = Call("complete", function, args);
  if (r.ok() && (*r)->size() != 1 + 3 * group.size()) {
    r = Unavailable(absl::StrCat(function, " answered ", (*r)->size(), " elements for ",
                                 group.size(), " Completes"));
  }
  for (size_t i = 0; i < group.size(); ++i) {
    if (!r.ok()) {
      group[i]->result = r.status();
      continue;
    }
    const int64_t predicted = (*r)->Int(1 + 3 * i);
    if (predicted < 0) {
      group[i]->result = absl::NotFoundError("lease");
      continue;
    }
    core::CompletionRecord record;
    record.predicted_cost_usd = static_cast<double>(predicted) / 1e6;
    record.recorded_cost_usd = static_cast<double>((*r)->Int(2 + 3 * i)) / 1e6;
    record.lease_was_active = (*r)->Int(3 + 3 * i) != 0;
    group[i]->result = record;
  }
}

absl::StatusOr<core::InlineStep> RedisLedger::StepInline(
    absl::Span<const core::InlineCommitRequest> commits, const core::InlineWindowSpec& spec,
    int64_t arrivals) {
  if (arrivals < 0 || arrivals > core::kMaxInlineStep) {
    return absl::InvalidArgumentError(
        absl::StrCat("arrivals: must be in [0, ", core::kMaxInlineStep, "], got ", arrivals));
  }
  if (static_cast<int64_t>(commits.size()) > core::kMaxInlineStep) {
    return absl::InvalidArgumentError(
        absl::StrCat("commits: at most ", core::kMaxInlineStep, ", got ", commits.size()));
  }
  if (arrivals > 0) {
    if (absl::Status s = core::ValidateInlineWindowSpec(spec); !s.ok()) return s;
  }
  std::vector<std::string> args = {
      absl::StrCat(spec.arrivals),
      spec.duration == absl::InfiniteDuration()
          ? "-1"
          : absl::StrCat(absl::ToInt64Microseconds(spec.duration)),
      absl::StrCat(arrivals)};
  core::InlineStep out;
  absl::Duration lease_timeout;
  std::vector<std::string> names;
  {
    absl::MutexLock lock(&mu_);
    args.insert(args.end(), model_args_.begin(), model_args_.end());
    names = ModelNamesLocked();
    lease_timeout = options_.lease_timeout;
  }
  // Commits decided before the call (bad input, or a window the escrow numbered: the escrow's
  // alone) keep their place in the answer.
  std::vector<std::optional<absl::StatusOr<core::InlineCommit>>> decided(commits.size());
  std::vector<std::string> tags(commits.size());
  size_t sent = 0;
  const size_t count_at = args.size();
  args.push_back("");
  for (size_t k = 0; k < commits.size(); ++k) {
    const core::InlineCommitRequest& c = commits[k];
    const double cost = c.reservation.predicted_cost_usd;
    if (!(c.cap_usd >= 0)) {
      decided[k] = absl::InvalidArgumentError("cap_usd: must be >= 0");
    } else if (!std::isfinite(cost) || cost < 0) {
      decided[k] = absl::InvalidArgumentError(
          "reservations[0].predicted_cost_usd: must be finite and >= 0");
    } else if (c.window == 0) {
      decided[k] = absl::FailedPreconditionError("inline window w0 is closed");
    } else if (EscrowWindows::Numbered(c.window)) {
      decided[k] = EscrowInlineCommit(c);
    }
    if (decided[k].has_value()) continue;
    tags[k] = Hex16(core::SecureRandom64());
    args.push_back(absl::StrCat(c.window));
    args.push_back(absl::StrCat(MicrosDown(c.cap_usd)));
    args.push_back(std::string(c.reservation.model));
    args.push_back(absl::StrCat(MicrosUp(cost)));
    args.push_back(tags[k]);
    ++sent;
  }
  args[count_at] = absl::StrCat(sent);
  absl::StatusOr<std::unique_ptr<Reply>> r = Call("inline_step", "rl3_step", args);
  if (absl::IsUnavailable(r.status()) && escrow_on_) {
    return EscrowStepInline(commits, spec, arrivals, std::move(decided), r.status());
  }
  if (!r.ok()) return r.status();
  const Reply& reply = **r;
  SetGuarded(reply.Int(1) != 0);
  size_t at = 3 + names.size();
  out.snapshot = ReadSnapshot(reply, 1, std::move(names));
  if (reply.Int(at++) != static_cast<int64_t>(sent)) {
    return Unavailable("unexpected reply to an inline step");
  }
  // The prefix of the incarnation that answered (a re-created state may have changed it).
  const std::string issued = Prefix();
  out.commits.reserve(commits.size());
  for (size_t k = 0; k < commits.size(); ++k) {
    if (decided[k].has_value()) {
      out.commits.push_back(*std::move(decided[k]));
      continue;
    }
    const std::string kind = reply.Str(at);
    if (kind == "OK") {
      out.commits.push_back(core::InlineCommit{
          core::Lease{absl::StrCat(issued, "-", reply.Int(at + 1), ".", tags[k]), lease_timeout},
          static_cast<double>(reply.Int(at + 2)) / 1e6});
    } else {
      const std::string why = reply.Str(at + 1);
      out.commits.push_back(kind == "NOTFOUND"  ? absl::NotFoundError(why)
                            : kind == "INVALID" ? absl::InvalidArgumentError(why)
                                                : absl::FailedPreconditionError(why));
    }
    at += 3;
  }
  out.arrivals.reserve(static_cast<size_t>(arrivals));
  for (int64_t k = 0; k < arrivals; ++k, at += 4) {
    core::InlineArrival& a = out.arrivals.emplace_back();
    a.window = static_cast<uint64_t>(reply.Int(at));
    a.position = reply.Int(at + 1);
    a.window_arrivals = reply.Int(at + 2);
    const int64_t left = reply.Int(at + 3);
    a.time_left = left < 0 ? absl::InfiniteDuration() : absl::Microseconds(left);
  }
  const int64_t windows = reply.Int(at++);
  if (windows < 0 || at + 2 * static_cast<size_t>(windows) != reply.size()) {
    return Unavailable("unexpected reply to an inline step");
  }
  for (int64_t k = 0; k < windows; ++k, at += 2) {
    out.window_spent.emplace_back(static_cast<uint64_t>(reply.Int(at)),
                                  static_cast<double>(reply.Int(at + 1)) / 1e6);
  }
  for (core::InlineArrival& a : out.arrivals) {
    for (const auto& [window, spent] : out.window_spent) {
      if (window == a.window) a.spent_usd = spent;
    }
  }
  return out;
}

absl::StatusOr<int64_t> RedisLedger::InUse(absl::string_view model) {
  absl::StatusOr<std::unique_ptr<Reply>> r = Call("in_use", "rl3_in_use", {std::string(model)});
  if (!r.ok()) return r.status();
  return (*r)->Int(1);
}

absl::StatusOr<core::LedgerTotals> RedisLedger::Totals() {
  absl::StatusOr<std::unique_ptr<Reply>> r = Call("totals", "rl3_totals", {});
  if (!r.ok()) return r.status();
  const Reply& reply = **r;
  core::LedgerTotals t;
  t.reserved_usd = static_cast<double>(reply.Int(1)) / 1e6;
  t.recorded_usd = static_cast<double>(reply.Int(2)) / 1e6;
  t.bucket_level_usd = reply.Int(3) != 0 ? static_cast<double>(reply.Int(4)) / 1e6 : kInf;
  t.open_assignments = reply.Int(5);
  t.open_holds = reply.Int(6);
  t.expired_assignments = reply.Int(7);
  SetGuarded(reply.Int(8) != 0);
  return t;
}

std::optional<core::LedgerSnapshot> RedisLedger::EscrowLeft() const {
  std::vector<core::LedgerModel> models;
  {
    absl::MutexLock lock(&mu_);
    models = models_;
  }
  absl::MutexLock lock(&escrow_mu_);
  const Steady::time_point now = Steady::now();
  if (escrow_ == nullptr || now >= escrow_->ends) return std::nullopt;
  return EscrowSnapshotLocked(models, now);
}

core::LedgerSnapshot RedisLedger::EscrowSnapshotLocked(const std::vector<core::LedgerModel>& models,
                                                       Steady::time_point now) const {
  core::LedgerSnapshot out;
  const int64_t spend = escrow_->SpendLeft(now);
  out.spend_allowance_usd = spend < 0 ? kInf : static_cast<double>(spend) / 1e6;
  for (const core::LedgerModel& m : models) {
    out.models.push_back(m.name);
    out.free_slots.push_back(m.slots.has_value()
                                 ? std::optional<int64_t>(escrow_->SlotsLeft(m.name, now))
                                 : std::nullopt);
  }
  return out;
}

void RedisLedger::VoidEscrow() {
  absl::MutexLock lock(&escrow_mu_);
  escrow_.reset();
}

void RedisLedger::MaybeRenewEscrow() {
  if (!escrow_on_) return;
  std::vector<std::string> args;
  std::vector<std::string> limited;
  std::string incarnation;
  {
    absl::MutexLock lock(&mu_);
    // Only on a healthy ledger: a call that times out may still be run by Redis later (harmless:
    // reports are cumulative, and what it tops up is only held longer), but would cost every call
    // of a degraded ledger a timeout.
    if (degraded_ || absl::Now() < open_until_) return;
    incarnation = incarnation_;
    for (const core::LedgerModel& m : models_) {
      if (m.slots.has_value()) limited.push_back(m.name);
    }
    args = model_args_;
  }
  int64_t spent = 0;
  {
    absl::MutexLock lock(&escrow_mu_);
    if (renewing_ || absl::Now() < next_escrow_try_) return;
    const bool due = escrow_ == nullptr || escrow_->spent != escrow_->reported ||
                     Steady::now() >= escrow_->drawn + ToSteady(redis_.escrow.renew_every);
    if (!due) return;
    renewing_ = true;
    std::vector<std::string> head = {"", "", "0"};
    if (escrow_ != nullptr) {
      spent = std::max<int64_t>(0, escrow_->spent);
      head = {absl::StrCat(escrow_->number), escrow_->incarnation, absl::StrCat(spent)};
    }
    args.insert(args.begin(), head.begin(), head.end());
  }
  args.push_back(absl::StrCat(absl::ToInt64Microseconds(redis_.escrow.validity)));
  args.push_back(absl::StrCat(MicrosDown(redis_.escrow.spend_usd)));
  const int64_t slots = redis_.escrow.slots;
  args.push_back(absl::StrCat(slots > 0 ? limited.size() : 0));
  if (slots > 0) {
    for (const std::string& m : limited) {
      args.push_back(m);
      args.push_back(absl::StrCat(slots));
    }
  }
  const Steady::time_point sent = Steady::now();
  absl::StatusOr<std::unique_ptr<Reply>> r = Call("escrow", "rl3_escrow", args);
  std::string answered;  // the incarnation that answered (a LOST state was re-created meanwhile)
  {
    absl::MutexLock lock(&mu_);
    answered = incarnation_;
  }
  absl::MutexLock lock(&escrow_mu_);
  renewing_ = false;
  if (!r.ok()) {
    // Redis may still run it: the escrow stays as this replica knows it, which is never more than
    // Redis holds for it.
    next_escrow_try_ = absl::Now() + redis_.retry_after;
    return;
  }
  const Reply& reply = **r;
  const uint64_t number = static_cast<uint64_t>(reply.Int(1));
  if (escrow_ == nullptr || escrow_->number != number || escrow_->incarnation != answered) {
    // A new escrow: the one before expired (its leases have ended), or its state was lost.
    escrow_ = std::make_unique<Escrow>();
    escrow_->number = number;
    escrow_->incarnation = answered;
  } else {
    // Spent since the report that was just sent: still to report.
    escrow_->reported = spent;
  }
  Escrow& e = *escrow_;
  e.drawn = sent;
  e.ends = sent + ToSteady(redis_.escrow.validity - redis_.escrow.skew_margin);
  e.spend = reply.Int(3) < 0 ? -1 : reply.Int(4);
  if (slots > 0) {
    for (size_t k = 0; k < limited.size(); ++k) e.slots[limited[k]] = reply.Int(5 + k);
  }
}

absl::StatusOr<core::LedgerHold> RedisLedger::EscrowHold(const core::HoldRequest& request,
                                                        const absl::Status& unavailable) {
  const std::string prefix = Prefix();
  absl::flat_hash_map<std::string, bool> limited;  // known models: whether they have slots
  {
    absl::MutexLock lock(&mu_);
    for (const core::LedgerModel& m : models_) limited[m.name] = m.slots.has_value();
  }
  absl::MutexLock lock(&escrow_mu_);
  const Steady::time_point now = Steady::now();
  if (escrow_ == nullptr || now >= escrow_->ends) return unavailable;
  Escrow& e = *escrow_;
  e.Prune(now);
  Escrow::LocalHold h;
  h.ends = std::min(e.ends, now + ToSteady(request.hold_for));
  core::LedgerHold hold;
  const int64_t left = e.SpendLeft(now);
  const int64_t want = MicrosUp(request.spend_usd);
  if (left < 0) {
    h.spend = -1;
    hold.spend_usd = request.spend_usd;
  } else {
    h.spend = (want < 0 || want > left) ? left : want;
    hold.spend_usd = (want >= 0 && h.spend >= want) ? request.spend_usd
                                                      : static_cast<double>(h.spend) / 1e6;
  }
  for (const core::HoldRequest::Slots& w : request.slots) {
    int64_t granted = 0;
    if (e.slots.contains(w.model)) {
      granted = std::min(w.count, e.SlotsLeft(w.model, now) - h.slots[w.model]);
      granted = std::max<int64_t>(0, granted);
      h.slots[w.model] += granted;
    } else {
      // A model without a slot limit needs none; any other gets none from the escrow.
      auto known = limited.find(w.model);
      granted = known != limited.end() && !known->second ? w.count : 0;
    }
    hold.slots.push_back(granted);
  }
  const uint64_t n = ++escrow_ids_;
  hold.id = absl::StrCat(prefix, "-x", n);
  hold.expires = absl::Now() + FromSteady(h.ends - now);
  e.holds.emplace(n, std::move(h));
  return hold;
}

absl::StatusOr<std::vector<core::Lease>> RedisLedger::EscrowCommit(
    const core::LedgerHold* hold, absl::Span<const core::Reservation> reservations,
    const absl::Status& unavailable) {
  const std::string prefix = Prefix();
  absl::flat_hash_map<std::string, bool> limited;  // known models: whether they have slots
  absl::Duration lease_timeout;
  {
    absl::MutexLock lock(&mu_);
    for (const core::LedgerModel& m : models_) limited[m.name] = m.slots.has_value();
    lease_timeout = options_.lease_timeout;
  }
  absl::MutexLock lock(&escrow_mu_);
  const Steady::time_point now = Steady::now();
  std::optional<Escrow::LocalHold> h;
  if (hold != nullptr) {
    absl::string_view id = hold->id;
    uint64_t n = 0;
    const bool ours = absl::ConsumePrefix(&id, prefix) && absl::ConsumePrefix(&id, "-x") &&
                      absl::SimpleAtoi(id, &n);
    if (escrow_ != nullptr && ours) {
      auto it = escrow_->holds.find(n);
      if (it != escrow_->holds.end()) {
        if (it->second.ends > now) h = std::move(it->second);
        escrow_->holds.erase(it);  // given back whatever happens below
      }
    }
    if (!h.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat("hold '", hold->id, "' expired or was used before this commit (fenced)"));
    }
  }
  if (escrow_ == nullptr || now >= escrow_->ends) return unavailable;
  Escrow& e = *escrow_;
  e.Prune(now);
  absl::flat_hash_map<std::string, int64_t> count;
  int64_t total = 0;
  std::vector<int64_t> micros;
  for (size_t k = 0; k < reservations.size(); ++k) {
    const core::Reservation& res = reservations[k];
    if (!std::isfinite(res.predicted_cost_usd) || res.predicted_cost_usd < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("reservations[", k, "].predicted_cost_usd: must be finite and >= 0"));
    }
    const std::string model(res.model);
    auto known = limited.find(model);
    if (known == limited.end()) {
      return absl::NotFoundError(absl::StrCat("unknown model '", model, "'"));
    }
    if (known->second) ++count[model];
    micros.push_back(MicrosUp(res.predicted_cost_usd));
    total += micros.back();
  }
  const int64_t n_res = static_cast<int64_t>(reservations.size());
  for (const auto& [model, c] : count) {
    if (h.has_value()) {
      auto g = h->slots.find(model);
      const int64_t granted = g == h->slots.end() ? 0 : g->second;
      if (c > granted) {
        return absl::InvalidArgumentError(absl::StrCat("model '", model, "': ", c,
                                                       " slots committed, the hold granted ",
                                                       granted));
      }
    } else if (c > e.SlotsLeft(model, now)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "model '", model, "': ", c, " slots wanted, ", e.SlotsLeft(model, now),
          " left in this replica's escrow (the shared ledger cannot be reached)"));
    }
  }
  if (h.has_value()) {
    if (h->spend >= 0 && total > h->spend + n_res) {
      return absl::InvalidArgumentError(absl::StrCat("spend: ", total,
                                                     " micro-USD committed, the hold granted ",
                                                     h->spend));
    }
  } else {
    const int64_t left = e.SpendLeft(now);
    if (left >= 0 && total > left + n_res) {
      return absl::FailedPreconditionError(absl::StrCat(
          "spend: ", total, " micro-USD wanted, ", left,
          " left in this replica's escrow (the shared ledger cannot be reached)"));
    }
  }
  std::vector<core::Lease> leases;
  leases.reserve(reservations.size());
  for (size_t k = 0; k < reservations.size(); ++k) {
    leases.push_back(
        IssueEscrowLeaseLocked(reservations[k].model, micros[k], prefix, lease_timeout, now));
  }
  return leases;
}

core::Lease RedisLedger::IssueEscrowLeaseLocked(absl::string_view model, int64_t micros,
                                                const std::string& prefix,
                                                absl::Duration lease_timeout,
                                                Steady::time_point now) {
  Escrow& e = *escrow_;
  const Steady::time_point ends = std::min(e.ends, now + ToSteady(lease_timeout));
  const uint64_t n = ++escrow_ids_;
  Escrow::LocalLease l{std::string(model), micros, Hex16(core::SecureRandom64()), ends};
  core::Lease lease{absl::StrCat(prefix, "-e", n, ".", l.tag), FromSteady(ends - now)};
  e.leases.emplace(n, std::move(l));
  e.spent += micros;
  return lease;
}

absl::StatusOr<core::InlineCommit> RedisLedger::EscrowInlineCommit(
    const core::InlineCommitRequest& c) {
  const std::string prefix = Prefix();
  std::optional<bool> limited;  // whether the model has slots; nullopt = unknown
  absl::Duration lease_timeout;
  {
    absl::MutexLock lock(&mu_);
    for (const core::LedgerModel& m : models_) {
      if (m.name == c.reservation.model) limited = m.slots.has_value();
    }
    lease_timeout = options_.lease_timeout;
  }
  const std::string model(c.reservation.model);
  const int64_t micros = MicrosUp(c.reservation.predicted_cost_usd);
  const int64_t cap = MicrosDown(c.cap_usd);  // -1 = none
  absl::MutexLock lock(&escrow_mu_);
  const Steady::time_point now = Steady::now();
  auto window = escrow_windows_->spent.find(c.window);
  if (window == escrow_windows_->spent.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("inline window w", c.window, " is closed (the current one is w",
                     escrow_windows_->current, ")"));
  }
  if (escrow_ == nullptr || now >= escrow_->ends) {
    return absl::FailedPreconditionError(absl::StrCat(
        "inline window w", c.window,
        " was opened by this replica's escrow, which has ended (the shared ledger could not be "
        "reached)"));
  }
  if (cap >= 0 && window->second + micros > cap + 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "inline window w", c.window, ": ", micros, " micro-USD wanted, ",
        std::max<int64_t>(0, cap - window->second), " micro-USD left of its cap"));
  }
  if (!limited.has_value()) return absl::NotFoundError(absl::StrCat("unknown model '", model, "'"));
  escrow_->Prune(now);
  if (*limited && escrow_->SlotsLeft(model, now) < 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", model,
        "': 1 slots wanted, 0 left in this replica's escrow (the shared ledger cannot be "
        "reached)"));
  }
  const int64_t left = escrow_->SpendLeft(now);
  if (left >= 0 && micros > left + 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "spend: ", micros, " micro-USD wanted, ", left,
        " left in this replica's escrow (the shared ledger cannot be reached)"));
  }
  window->second += micros;
  return core::InlineCommit{IssueEscrowLeaseLocked(model, micros, prefix, lease_timeout, now),
                            static_cast<double>(window->second) / 1e6};
}

absl::StatusOr<core::InlineStep> RedisLedger::EscrowStepInline(
    absl::Span<const core::InlineCommitRequest> commits, const core::InlineWindowSpec& spec,
    int64_t arrivals,
    std::vector<std::optional<absl::StatusOr<core::InlineCommit>>> decided,
    const absl::Status& unavailable) {
  std::vector<core::LedgerModel> models;
  {
    absl::MutexLock lock(&mu_);
    models = models_;
  }
  absl::MutexLock lock(&escrow_mu_);
  const Steady::time_point now = Steady::now();
  if (escrow_ == nullptr || now >= escrow_->ends) return unavailable;
  escrow_->Prune(now);
  core::InlineStep out;
  std::set<uint64_t> named;  // windows the step's commits and arrivals name
  for (size_t k = 0; k < commits.size(); ++k) {
    named.insert(commits[k].window);
    // A commit to one of the fleet's windows (numbered by Redis): whether the failed call applied
    // it is unknown, and the escrow cannot charge that window.
    out.commits.push_back(decided[k].has_value()
                              ? *std::move(decided[k])
                              : absl::StatusOr<core::InlineCommit>(absl::FailedPreconditionError(
                                    absl::StrCat("inline window w", commits[k].window,
                                                 " cannot be charged: ", unavailable.message()))));
  }
  for (int64_t k = 0; k < arrivals; ++k) {
    out.arrivals.push_back(escrow_windows_->Arrive(spec, now));
    named.insert(out.arrivals.back().window);
  }
  for (uint64_t w : named) {
    auto it = escrow_windows_->spent.find(w);
    if (it != escrow_windows_->spent.end()) {
      out.window_spent.emplace_back(w, static_cast<double>(it->second) / 1e6);
    }
  }
  for (core::InlineArrival& a : out.arrivals) {
    a.spent_usd = static_cast<double>(escrow_windows_->spent[a.window]) / 1e6;
  }
  out.snapshot = EscrowSnapshotLocked(models, now);
  return out;
}

}  // namespace router::server
