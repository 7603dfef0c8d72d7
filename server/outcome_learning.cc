#include "server/outcome_learning.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "openssl/evp.h"
#include "server/log.h"
#include "server/runtime_state.h"

namespace router::server {
namespace {

constexpr char kFormat[] = "routerd.learning";
constexpr int kVersion = 1;
// The background thread's tick: the gauges' refresh period, and the snapshot interval's grain.
constexpr absl::Duration kTick = absl::Seconds(1);

std::string ErrnoText(int error) { return std::strerror(error); }

// Writes `text` to `path` atomically: `path`.tmp, fsync, rename, fsync of the directory.
absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = absl::StrCat(path, ".tmp");
  const auto fail = [&](absl::string_view what, int error) {
    return absl::UnavailableError(absl::StrCat("learning.snapshot_file: ", what, " '", tmp,
                                               "': ", ErrnoText(error)));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail("cannot create", errno);
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return fail("cannot write", error);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int error = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return fail("cannot fsync", error);
  }
  if (::close(fd) != 0) {
    const int error = errno;
    ::unlink(tmp.c_str());
    return fail("cannot close", error);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("learning.snapshot_file: cannot rename '", tmp,
                                               "' to '", path, "': ", ErrnoText(error)));
  }
  // The rename is durable once the directory is.
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)::fsync(dir_fd);
    ::close(dir_fd);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> FileSha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("'", path, "' cannot be read"));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    return absl::InternalError("SHA-256 unavailable");
  }
  char buffer[1 << 16];
  while (in.read(buffer, sizeof(buffer)) || in.gcount() > 0) {
    EVP_DigestUpdate(ctx, buffer, static_cast<size_t>(in.gcount()));
  }
  const bool read_ok = in.eof();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_DigestFinal_ex(ctx, digest, &size);
  EVP_MD_CTX_free(ctx);
  if (!read_ok) return absl::UnavailableError(absl::StrCat("'", path, "': read error"));
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), size));
}

absl::StatusOr<std::unique_ptr<OutcomeLearning>> OutcomeLearning::Create(
    const LearningConfig& config, std::string estimator_sha256, Metrics* metrics,
    std::unique_ptr<core::OutcomeLog> log) {
  absl::StatusOr<std::unique_ptr<core::OutcomeLearner>> learner =
      core::OutcomeLearner::Create(config.options);
  if (!learner.ok()) {
    return absl::Status(learner.status().code(),
                        absl::StrCat("learning.", learner.status().message()));
  }
  std::string path = config.snapshot_file;
  // A relative path is in systemd's StateDirectory when routerd runs with one, so instances of a
  // templated unit sharing one config file each get their own file.
  if (const char* state_dir = std::getenv("STATE_DIRECTORY");
      state_dir != nullptr && *state_dir != '\0' && !path.empty() && path[0] != '/') {
    // STATE_DIRECTORY may list several directories separated by ':'; the first is the unit's.
    const std::string first(absl::string_view(state_dir).substr(
        0, absl::string_view(state_dir).find(':')));
    path = absl::StrCat(first, "/", path);
  }
  if (log != nullptr) {
    if (config.shared_poll_interval <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("learning.shared_poll_interval_ms: must be > 0");
    }
    if (config.shared_queue_max < 1) {
      return absl::InvalidArgumentError("learning.shared_queue_max: must be >= 1");
    }
  }
  std::unique_ptr<OutcomeLearning> learning(new OutcomeLearning(
      *std::move(learner), std::move(path), std::move(estimator_sha256), config.snapshot_interval,
      metrics, std::move(log), config));
  learning->RestoreOrReject();
  learning->learner_dropped_seen_.store(learning->learner_->dropped_outcomes());
  learning->PublishGauges();
  return learning;
}

OutcomeLearning::OutcomeLearning(std::unique_ptr<core::OutcomeLearner> learner,
                                 std::string snapshot_file, std::string estimator_sha256,
                                 absl::Duration interval, Metrics* metrics,
                                 std::unique_ptr<core::OutcomeLog> log,
                                 const LearningConfig& config)
    : learner_(std::move(learner)),
      snapshot_file_(std::move(snapshot_file)),
      estimator_sha256_(std::move(estimator_sha256)),
      metrics_(metrics),
      interval_ms_(absl::ToInt64Milliseconds(interval)),
      log_(std::move(log)),
      poll_interval_(config.shared_poll_interval),
      queue_max_(config.shared_queue_max) {}

OutcomeLearning::~OutcomeLearning() { Stop(); }

void OutcomeLearning::RestoreOrReject() {
  if (snapshot_file_.empty()) return;
  if (::access(snapshot_file_.c_str(), F_OK) != 0 && errno == ENOENT) return;  // a first start
  std::ifstream in(snapshot_file_, std::ios::binary);
  absl::Status why;
  nlohmann::json shared_log;  // the snapshot's `shared_log`, if any
  if (!in) {
    why = absl::UnavailableError("cannot be read");
  } else {
    std::stringstream text;
    text << in.rdbuf();
    const nlohmann::json doc =
        nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) {
      why = absl::InvalidArgumentError("not a JSON object (truncated or corrupt)");
    } else if (doc.value("format", "") != kFormat || !doc.contains("version") ||
               !doc["version"].is_number_integer() || doc["version"].get<int>() != kVersion) {
      why = absl::InvalidArgumentError(absl::StrCat("not a routerd learning snapshot of format '",
                                                    kFormat, "' version ", kVersion));
    } else if (!estimator_sha256_.empty() &&
               doc.value("estimator_sha256", "") != estimator_sha256_) {
      why = absl::FailedPreconditionError(absl::StrCat(
          "it was learned with another estimator artifact (sha256 ",
          doc.value("estimator_sha256", std::string("unknown")), "; this one is ",
          estimator_sha256_, "): its clusters and predictions are not this estimator's"));
    } else if (!doc.contains("learner")) {
      why = absl::InvalidArgumentError("learner: missing");
    } else {
      why = learner_->Restore(doc["learner"]);
      if (doc.contains("shared_log")) shared_log = doc["shared_log"];
      if (!why.ok()) why = absl::InvalidArgumentError(absl::StrCat("learner.", why.message()));
    }
  }
  if (why.ok()) {
    if (log_ != nullptr) {
      // The position applied, when the snapshot was written with this same log.
      std::string position;
      if (shared_log.is_object() && shared_log.value("name", "") == log_->Name() &&
          shared_log.contains("position") && shared_log["position"].is_string()) {
        position = shared_log["position"].get<std::string>();
      }
      absl::MutexLock lock(&apply_mu_);
      position_ = position;
    }
    const int64_t cells = static_cast<int64_t>(learner_->Cells().size());
    Log("info", "learning_snapshot_restored",
        absl::StrCat("learning: restored ", cells, " learned cells from ", snapshot_file_),
        {{"path", snapshot_file_}, {"cells", cells}});
    return;
  }
  const std::string aside = absl::StrCat(snapshot_file_, ".rejected");
  const bool moved = std::rename(snapshot_file_.c_str(), aside.c_str()) == 0;
  const std::string where =
      moved ? absl::StrCat("moved to ", aside)
            : absl::StrCat("could not be moved to ", aside, " (", ErrnoText(errno),
                           "); it will be overwritten by the next snapshot");
  Log("error", "learning_snapshot_rejected",
      absl::StrCat("error: learning.snapshot_file '", snapshot_file_, "' not restored: ",
                   why.message(), "; learning starts empty; the file was ", where),
      {{"path", snapshot_file_},
       {"reason", std::string(why.message())},
       {"moved_to", moved ? aside : ""}});
  metrics_->OnLearningSnapshotRejected();
}

void OutcomeLearning::Drop(absl::string_view reason) {
  dropped_by_routerd_.fetch_add(1);
  metrics_->OnOutcomeDropped(reason, 1);
}

void OutcomeLearning::CountLearnerDrops() {
  const int64_t now = learner_->dropped_outcomes();
  const int64_t before = learner_dropped_seen_.exchange(now);
  if (now > before) metrics_->OnOutcomeDropped("memory_full", now - before);
}

void OutcomeLearning::Record(const RuntimeState& state,
                             const std::optional<OutcomeContext>& context, absl::string_view kind,
                             double score) {
  if (!context.has_value()) return Drop("no_context");
  metrics_->OnOutcome(context->model, kind);
  if (!state.config.learning.enabled) return Drop("learning_off");
  if (std::none_of(state.pool.begin(), state.pool.end(),
                   [&](const core::DeployedModel& d) { return d.name == context->model; })) {
    return Drop("unknown_model");
  }
  if (context->cluster >= state.predictor->estimator().num_clusters()) {
    return Drop("unknown_cluster");
  }
  if (log_ != nullptr) {
    // Shared: learned when the log brings it back, in the fleet's order.
    core::OutcomeLogRecord record;
    record.model = context->model;
    record.cluster = context->cluster;
    record.prior_quality = context->prior_quality;
    record.score = score;
    {
      absl::MutexLock lock(&queue_mu_);
      if (static_cast<int64_t>(queue_.size()) + in_flight_ < queue_max_) {
        queue_.push_back(std::move(record));
        return;
      }
    }
    return Drop("queue_full");
  }
  // The context was checked when parsed (cluster >= 0, prior in [0, 1]) and the score by the
  // caller, so the learner accepts it.
  if (!learner_->Record(context->model, context->cluster, context->prior_quality, score).ok()) {
    return Drop("invalid");
  }
  version_.fetch_add(1);
  CountLearnerDrops();
}

std::vector<core::OutcomeCell> OutcomeLearning::Cells(const std::optional<std::string>& model,
                                                      std::optional<int> cluster) const {
  std::vector<core::OutcomeCell> cells = learner_->Cells();
  std::erase_if(cells, [&](const core::OutcomeCell& c) {
    return (model.has_value() && c.model != *model) ||
           (cluster.has_value() && c.cluster != *cluster);
  });
  return cells;
}

void OutcomeLearning::SetColdStart(const std::string& model, bool cold) {
  if (learner_->IsColdStart(model) == cold) return;
  learner_->MarkColdStart(model, cold);
  version_.fetch_add(1);
}

absl::StatusOr<int64_t> OutcomeLearning::Reset(std::optional<std::string> model,
                                               std::optional<int> cluster) {
  if (log_ == nullptr) {
    const int64_t removed = learner_->Reset(std::move(model), cluster);
    version_.fetch_add(1);
    PublishGauges();
    return removed;
  }
  core::OutcomeLogRecord reset;
  reset.kind = core::OutcomeLogRecord::Kind::kReset;
  reset.model = model.value_or("");
  reset.cluster = cluster.value_or(-1);
  int64_t removed = 0;
  {
    absl::MutexLock round(&sync_mu_);
    // What was queued before the reset goes to the log before it (and is reset with the rest).
    absl::Status s = FlushLocked();
    if (s.ok()) s = log_->Append({reset});
    if (!s.ok()) {
      SharedFailed(s);
      return absl::UnavailableError(absl::StrCat(
          "the reset was not confirmed by the fleet's learning log (", s.message(),
          "); if it reached the log every replica applies it, else nothing was reset: check "
          "GetLearnedStats and retry"));
    }
    s = ApplyLocked(&removed);
    if (!s.ok()) {
      // Written: every replica applies it, this one at its next round.
      SharedFailed(s);
      return absl::UnavailableError(absl::StrCat(
          "the reset was written to the fleet's log but not yet applied here: ", s.message()));
    }
    SharedSucceeded();
  }
  PublishGauges();
  return removed;
}

int64_t OutcomeLearning::queued() const {
  absl::MutexLock lock(&queue_mu_);
  return static_cast<int64_t>(queue_.size()) + in_flight_;
}

std::string OutcomeLearning::position() const {
  absl::MutexLock lock(&apply_mu_);
  return position_;
}

absl::Status OutcomeLearning::SyncOnce() {
  if (log_ == nullptr) return absl::OkStatus();
  absl::MutexLock round(&sync_mu_);
  return SyncLocked(nullptr);
}

absl::Status OutcomeLearning::SyncLocked(int64_t* removed) {
  absl::Status s = FlushLocked();
  if (s.ok()) s = ApplyLocked(removed);
  if (s.ok()) {
    SharedSucceeded();
  } else {
    SharedFailed(s);
  }
  CountLearnerDrops();
  return s;
}

absl::Status OutcomeLearning::FlushLocked() {
  constexpr size_t kBatch = 2048;  // records per Append
  {
    // O(1) under the lock Record takes: the queue is swapped out, then moved behind what is
    // still in flight from a failed round (older, so written first).
    std::deque<core::OutcomeLogRecord> taken;
    {
      absl::MutexLock lock(&queue_mu_);
      taken.swap(queue_);
      in_flight_ += static_cast<int64_t>(taken.size());
    }
    for (core::OutcomeLogRecord& r : taken) pending_.push_back(std::move(r));
  }
  size_t sent = 0;
  absl::Status status;
  while (sent < pending_.size()) {
    const size_t n = std::min(pending_.size() - sent, kBatch);
    status = log_->Append(absl::MakeConstSpan(pending_).subspan(sent, n));
    if (!status.ok()) break;
    sent += n;
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(sent));
  {
    absl::MutexLock lock(&queue_mu_);
    in_flight_ -= static_cast<int64_t>(sent);
  }
  metrics_->OnLearningSharedQueue(queued());
  return status;
}

absl::Status OutcomeLearning::ApplyLocked(int64_t* removed) {
  constexpr int kEntriesPerRead = 256;
  for (;;) {
    const std::string after = position();
    absl::StatusOr<core::OutcomeLogRead> read = log_->Read(after, kEntriesPerRead);
    if (!read.ok()) return read.status();
    if (read->gap) {
      metrics_->OnLearningSharedGap();
      Log("warning", "learning_shared_gap",
          absl::StrCat("learning: entries of the shared learning log ", log_->Name(),
                       " were lost before this replica applied them (trimmed past "
                       "learning.shared_stream_max_entries, or Redis lost its data); going on "
                       "from the oldest entry kept"),
          {{"log", log_->Name()}, {"position", after}});
    }
    if (read->invalid_entries > 0) {
      Log("warning", "learning_shared_invalid",
          absl::StrCat("learning: skipped ", read->invalid_entries,
                       " entries of the shared learning log that are not of this version's "
                       "format"),
          {{"log", log_->Name()}, {"entries", read->invalid_entries}});
    }
    int64_t invalid = 0;
    {
      absl::MutexLock lock(&apply_mu_);
      for (const core::OutcomeLogRecord& r : read->records) {
        int64_t n = 0;
        if (!core::ApplyOutcomeLogRecord(r, *learner_, &n).ok()) ++invalid;
        if (removed != nullptr) *removed += n;
      }
      position_ = read->position;
    }
    if (invalid > 0) metrics_->OnOutcomeDropped("invalid", invalid);
    if (!read->records.empty()) version_.fetch_add(1);
    if (read->entries < kEntriesPerRead) return absl::OkStatus();
  }
}

void OutcomeLearning::SharedFailed(const absl::Status& why) {
  if (!shared_degraded_) {
    shared_degraded_ = true;
    metrics_->OnLearningSharedDegraded(true);
  }
  const std::string text = absl::StrCat(
      "error: learning: ", why.message(), "; ", queued(),
      " outcomes wait in the queue (at most learning.shared_queue_max), learning is paused and "
      "decisions use what was learned");
  if (std::optional<std::string> line = unavailable_lines_.Admit(text); line.has_value()) {
    Log("error", "learning_shared_unavailable", *line,
        {{"log", log_->Name()}, {"reason", std::string(why.message())}});
  }
}

void OutcomeLearning::SharedSucceeded() {
  if (!shared_degraded_) return;
  shared_degraded_ = false;
  metrics_->OnLearningSharedDegraded(false);
  Log("info", "learning_shared_recovered",
      absl::StrCat("learning: the shared learning log ", log_->Name(), " is reachable again"),
      {{"log", log_->Name()}});
}

int64_t OutcomeLearning::dropped_outcomes() const {
  return dropped_by_routerd_.load() + learner_->dropped_outcomes();
}

void OutcomeLearning::SetSnapshotInterval(absl::Duration interval) {
  interval_ms_.store(absl::ToInt64Milliseconds(interval));
}

absl::Status OutcomeLearning::WriteSnapshot() {
  if (snapshot_file_.empty()) return absl::OkStatus();
  absl::MutexLock lock(&write_mu_);
  const uint64_t version = version_.load();
  nlohmann::json doc = {{"format", kFormat},
                        {"version", kVersion},
                        {"estimator_sha256", estimator_sha256_},
                        {"written_at", absl::FormatTime(absl::Now(), absl::UTCTimeZone())}};
  {
    // The statistics and the log position they include, together.
    absl::MutexLock lock(&apply_mu_);
    doc["learner"] = learner_->Snapshot();
    if (log_ != nullptr) doc["shared_log"] = {{"name", log_->Name()}, {"position", position_}};
  }
  absl::Status s = WriteFileAtomically(snapshot_file_, doc.dump());
  if (s.ok()) {
    written_version_ = version;
  } else {
    metrics_->OnLearningSnapshotError();
  }
  return s;
}

void OutcomeLearning::PublishGauges() {
  // Per model: sum of weight x (prior mean + shift), and of weight.
  std::map<std::string, std::pair<double, double>> sums;
  for (const core::OutcomeCell& c : learner_->Cells()) {
    auto& [weighted, weight] = sums[c.model];
    weighted += c.weight * std::clamp(c.prior_mean + c.learned_shift, 0.0, 1.0);
    weight += c.weight;
  }
  std::vector<std::pair<std::string, double>> quality;
  for (const auto& [model, s] : sums) {
    if (s.second > 0) quality.emplace_back(model, s.first / s.second);
  }
  metrics_->OnLearnedQuality(quality);
}

void OutcomeLearning::Start() {
  absl::MutexLock lock(&run_mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { Run(); });
  if (log_ != nullptr) sync_thread_ = std::thread([this] { SyncLoop(); });
}

void OutcomeLearning::Stop() {
  {
    absl::MutexLock lock(&run_mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (sync_thread_.joinable()) {
    sync_thread_.join();
    // One last round, so that what was queued reaches the fleet (its failure is logged).
    SyncOnce().IgnoreError();
  }
}

void OutcomeLearning::SyncLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&run_mu_);
      if (run_mu_.AwaitWithTimeout(absl::Condition(&stop_), poll_interval_)) return;
    }
    SyncOnce().IgnoreError();  // a failure is counted and logged by the round
  }
}

void OutcomeLearning::Run() {
  absl::Time last_write = absl::Now();
  for (;;) {
    {
      absl::MutexLock lock(&run_mu_);
      if (run_mu_.AwaitWithTimeout(absl::Condition(&stop_), kTick)) return;
    }
    CountLearnerDrops();
    PublishGauges();
    const absl::Time now = absl::Now();
    if (now - last_write < absl::Milliseconds(interval_ms_.load())) continue;
    last_write = now;
    bool changed;
    {
      absl::MutexLock lock(&write_mu_);
      changed = written_version_ != version_.load();
    }
    if (!changed) continue;
    if (absl::Status s = WriteSnapshot(); !s.ok()) {
      Log("error", "learning_snapshot_failed",
          absl::StrCat("error: ", s.message(), "; retried in ",
                       absl::FormatDuration(absl::Milliseconds(interval_ms_.load()))),
          {{"path", snapshot_file_}, {"reason", std::string(s.message())}});
    }
  }
}

}  // namespace router::server
