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
    const LearningConfig& config, std::string estimator_sha256, Metrics* metrics) {
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
  std::unique_ptr<OutcomeLearning> learning(
      new OutcomeLearning(*std::move(learner), std::move(path), std::move(estimator_sha256),
                          config.snapshot_interval, metrics));
  learning->RestoreOrReject();
  learning->learner_dropped_seen_.store(learning->learner_->dropped_outcomes());
  learning->PublishGauges();
  return learning;
}

OutcomeLearning::OutcomeLearning(std::unique_ptr<core::OutcomeLearner> learner,
                                 std::string snapshot_file, std::string estimator_sha256,
                                 absl::Duration interval, Metrics* metrics)
    : learner_(std::move(learner)),
      snapshot_file_(std::move(snapshot_file)),
      estimator_sha256_(std::move(estimator_sha256)),
      metrics_(metrics),
      interval_ms_(absl::ToInt64Milliseconds(interval)) {}

OutcomeLearning::~OutcomeLearning() { Stop(); }

void OutcomeLearning::RestoreOrReject() {
  if (snapshot_file_.empty()) return;
  if (::access(snapshot_file_.c_str(), F_OK) != 0 && errno == ENOENT) return;  // a first start
  std::ifstream in(snapshot_file_, std::ios::binary);
  absl::Status why;
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
      if (!why.ok()) why = absl::InvalidArgumentError(absl::StrCat("learner.", why.message()));
    }
  }
  if (why.ok()) {
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

int64_t OutcomeLearning::Reset(std::optional<std::string> model, std::optional<int> cluster) {
  const int64_t removed = learner_->Reset(std::move(model), cluster);
  version_.fetch_add(1);
  PublishGauges();
  return removed;
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
                        {"written_at", absl::FormatTime(absl::Now(), absl::UTCTimeZone())},
                        {"learner", learner_->Snapshot()}};
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
}

void OutcomeLearning::Stop() {
  {
    absl::MutexLock lock(&run_mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
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
