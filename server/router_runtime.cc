#include "server/router_runtime.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/ledger_redis/redis_outcome_log.h"
#include "server/log.h"
#include "server/outcome_context.h"
#include "server/query_answer.h"
#include "server/status_util.h"

namespace router::server {

namespace {

constexpr char kShuttingDown[] = "routerd is shutting down; retry on another replica";

// The Redis options of `backend`, with the password read from its password_file.
absl::StatusOr<RedisLedgerOptions> RedisOptions(const LedgerBackendConfig& backend) {
  RedisLedgerOptions redis = backend.redis_options;
  if (backend.password_file.empty()) return redis;
  // A relative path names a systemd credential (LoadCredential) when routerd runs with one.
  std::string path = backend.password_file;
  if (const char* creds = std::getenv("CREDENTIALS_DIRECTORY");
      creds != nullptr && !path.empty() && path[0] != '/') {
    path = absl::StrCat(creds, "/", path);
  }
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ledger.redis.password_file: cannot read a line from '", path, "'"));
  }
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  if (line.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ledger.redis.password_file: '", path, "' is empty"));
  }
  redis.password = std::move(line);
  return redis;
}

}  // namespace

RouterRuntime::RouterRuntime(Metrics* metrics, const core::Clock* clock)
    : metrics_(metrics),
      clock_(clock),
      batch_prefix_(absl::StrCat("b", absl::Hex(absl::ToUnixMicros(clock->Now())), "-")) {}

absl::StatusOr<std::unique_ptr<RouterRuntime>> RouterRuntime::Create(
    RouterConfig config, std::shared_ptr<const core::Predictor> predictor, Metrics* metrics,
    const core::Clock* clock, std::string estimator_sha256) {
  // Shared learning: the fleet's learning log, next to its ledger (outcome_learning.h).
  std::unique_ptr<core::OutcomeLog> log;
  if (config.ledger_backend.redis && config.learning.shared) {
    absl::StatusOr<RedisLedgerOptions> redis = RedisOptions(config.ledger_backend);
    if (!redis.ok()) return redis.status();
    absl::StatusOr<std::unique_ptr<RedisOutcomeLog>> shared =
        RedisOutcomeLog::Create(*redis, config.learning.shared_stream_max_entries);
    if (!shared.ok()) return shared.status();
    log = *std::move(shared);
  }
  absl::StatusOr<std::unique_ptr<OutcomeLearning>> learning = OutcomeLearning::Create(
      config.learning, std::move(estimator_sha256), metrics, std::move(log));
  if (!learning.ok()) return learning.status();
  absl::StatusOr<std::shared_ptr<const RuntimeState>> state = BuildRuntimeState(
      std::move(config), std::move(predictor), /*generation=*/1, &(*learning)->learner());
  if (!state.ok()) return state.status();
  std::unique_ptr<RouterRuntime> runtime(new RouterRuntime(metrics, clock));
  runtime->learning_ = *std::move(learning);
  RouterRuntime* rt = runtime.get();
  absl::StatusOr<std::unique_ptr<core::Ledger>> ledger = runtime->MakeLedger(**state);
  if (!ledger.ok()) return ledger.status();
  runtime->ledger_ = *std::move(ledger);
  absl::StatusOr<std::unique_ptr<core::InlineRouter>> inline_router =
      core::InlineRouter::Create((*state)->config.inline_options, runtime->ledger_.get(), clock);
  if (!inline_router.ok()) return inline_router.status();
  runtime->inline_router_ = *std::move(inline_router);
  {
    absl::MutexLock lock(&runtime->state_mu_);
    runtime->state_ = *state;
  }
  Scheduler::Options options;
  options.queue = (*state)->config.batching;
  options.process = [rt](std::vector<TaskPtr> batch) { rt->ProcessBatch(std::move(batch)); };
  options.reject = [rt](TaskPtr task, const absl::Status& s) { rt->Refuse(std::move(task), s); };
  options.on_queue_depth = [rt](int64_t depth) { rt->metrics_->OnQueueDepth(depth); };
  options.stopping_message = kShuttingDown;
  options.clock = clock;
  absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = Scheduler::Create(std::move(options));
  if (!scheduler.ok()) return scheduler.status();
  runtime->scheduler_ = *std::move(scheduler);
  SetLogFormat((*state)->config.log_format);
  metrics->OnConfigGeneration(1);
  metrics->OnLearningEnabled((*state)->config.learning.enabled);
  runtime->PublishLedgerGauges();
  runtime->learning_->Start();
  return runtime;
}

absl::StatusOr<std::unique_ptr<core::Ledger>> RouterRuntime::MakeLedger(const RuntimeState& state) {
  const LedgerBackendConfig& backend = state.config.ledger_backend;
  if (!backend.redis) {
    absl::StatusOr<std::unique_ptr<core::LocalLedger>> local =
        core::LocalLedger::Create(state.config.ledger, state.LedgerModels(), clock_);
    if (!local.ok()) return local.status();
    return std::unique_ptr<core::Ledger>(*std::move(local));
  }
  absl::StatusOr<RedisLedgerOptions> redis = RedisOptions(backend);
  if (!redis.ok()) return redis.status();
  shared_ledger_ = true;
  absl::StatusOr<std::unique_ptr<RedisLedger>> shared =
      RedisLedger::Create(*redis, state.config.ledger, state.LedgerModels(), &ledger_reports_);
  if (!shared.ok()) return shared.status();
  return std::unique_ptr<core::Ledger>(*std::move(shared));
}

std::shared_ptr<const RuntimeState> RouterRuntime::state() const {
  absl::MutexLock lock(&state_mu_);
  return state_;
}

absl::StatusOr<uint64_t> RouterRuntime::ApplyLocked(
    RouterConfig config, std::shared_ptr<const core::Predictor> predictor, bool dry_run) {
  const std::shared_ptr<const RuntimeState> current = state();
  if (absl::Status s = CheckRuntimeChange(current->config, config); !s.ok()) return s;
  absl::StatusOr<std::shared_ptr<const RuntimeState>> next =
      BuildRuntimeState(std::move(config), std::move(predictor), current->generation + 1,
                        &learning_->learner());
  if (!next.ok()) return next.status();
  if (absl::Status s = core::ValidateBatchQueueOptions((*next)->config.batching); !s.ok()) return s;
  // Its messages name the field (inline.<option>).
  if (absl::Status s = core::ValidateInlineOptions((*next)->config.inline_options); !s.ok()) return s;
  if (dry_run) return current->generation;
  // Every piece below was validated; these calls only fail on inputs checked above.
  if (absl::Status s = ledger_->SetModels((*next)->LedgerModels()); !s.ok()) return s;
  if (absl::Status s = ledger_->SetOptions((*next)->config.ledger); !s.ok()) return s;
  if (absl::Status s = scheduler_->SetQueueOptions((*next)->config.batching); !s.ok()) return s;
  if (absl::Status s = inline_router_->SetOptions((*next)->config.inline_options); !s.ok()) return s;
  {
    absl::MutexLock lock(&state_mu_);
    state_ = *next;
  }
  SetLogFormat((*next)->config.log_format);
  learning_->SetSnapshotInterval((*next)->config.learning.snapshot_interval);
  metrics_->OnLearningEnabled((*next)->config.learning.enabled);
  metrics_->OnConfigGeneration((*next)->generation);
  PublishLedgerGauges();
  return (*next)->generation;
}

absl::StatusOr<uint64_t> RouterRuntime::UpdateConfig(const RouterConfig& next,
                                                     std::optional<uint64_t> expected_generation,
                                                     bool dry_run) {
  absl::MutexLock lock(&admin_mu_);
  const std::shared_ptr<const RuntimeState> current = state();
  if (expected_generation.has_value() && *expected_generation != current->generation) {
    return absl::FailedPreconditionError(
        absl::StrCat("expected_generation: ", *expected_generation, " is stale (current ",
                     current->generation, "); re-read the config and retry"));
  }
  return ApplyLocked(next, current->predictor, dry_run);
}

absl::StatusOr<uint64_t> RouterRuntime::UpsertModel(const ModelDeploymentConfig& deployment,
                                                    const std::optional<NewModel>& new_model) {
  absl::MutexLock lock(&admin_mu_);
  const std::shared_ptr<const RuntimeState> current = state();
  if (deployment.name.empty()) return absl::InvalidArgumentError("deployment.name: required");
  if (absl::Status s = ValidateDeployment(deployment, "deployment"); !s.ok()) return s;
  std::shared_ptr<const core::Predictor> predictor = current->predictor;
  const std::vector<std::string>& known = predictor->models();
  const bool is_known = std::find(known.begin(), known.end(), deployment.name) != known.end();
  const NewModel nm = new_model.value_or(NewModel{});
  // A model without validation results joins as a cold start while learning is on.
  const bool cold_start = !is_known && nm.scores.empty() && current->config.learning.enabled;
  if (!is_known) {
    if (nm.scores.empty() && !cold_start) {
      return absl::InvalidArgumentError(absl::StrCat(
          "validation: model '", deployment.name,
          "' is unknown to the estimator; send its validation results to add it (or turn "
          "learning.enabled on: it then joins as a cold start)"));
    }
    if (!deployment.self_hosted() && !nm.mean_cost_usd.has_value() &&
        !nm.input_usd_per_mtok.has_value()) {
      return absl::InvalidArgumentError(
          "mean_cost_usd: a new API model needs a cost (mean_cost_usd or input_usd_per_mtok)");
    }
    core::ModelValidation validation;
    validation.features.dim = predictor->feature_dim();
    if (cold_start) {
      // The estimator needs one result to hold the model: a single prompt (a unit vector) at the
      // cold-start prior. The learner predicts a cold-start model from that prior, not from it.
      validation.features.values.assign(static_cast<size_t>(predictor->feature_dim()), 0.0f);
      validation.features.values[0] = 1.0f;
      validation.scores.push_back(current->config.learning.options.cold_start_quality);
    }
    for (size_t k = 0; k < nm.scores.size(); ++k) {
      const std::string field = absl::StrCat("validation[", k, "]");
      if (!(nm.scores[k] >= 0 && nm.scores[k] <= 1)) {
        return absl::InvalidArgumentError(absl::StrCat(field, ".score: must be in [0, 1]"));
      }
      std::vector<float> row;
      if (k < nm.embeddings.size() && !nm.embeddings[k].empty()) {
        row = nm.embeddings[k];
        if (static_cast<int>(row.size()) != predictor->feature_dim()) {
          return absl::InvalidArgumentError(absl::StrCat(field, ".embedding: expected ",
                                                         predictor->feature_dim(), " values"));
        }
        if (std::any_of(row.begin(), row.end(), [](float v) { return !std::isfinite(v); })) {
          return absl::InvalidArgumentError(absl::StrCat(field, ".embedding: not finite"));
        }
      } else if (k < nm.texts.size() && !nm.texts[k].empty()) {
        if (!predictor->featurizer().has_value()) {
          return absl::InvalidArgumentError(absl::StrCat(
              field, ".text: this estimator works on caller embeddings; send embedding"));
        }
        row = predictor->featurizer()->Featurize(nm.texts[k]);
      } else {
        return absl::InvalidArgumentError(absl::StrCat(field, ": text or embedding required"));
      }
      validation.features.values.insert(validation.features.values.end(), row.begin(), row.end());
      validation.scores.push_back(nm.scores[k]);
    }
    std::unique_ptr<core::QualityEstimator> estimator = predictor->estimator().Clone();
    if (absl::Status s = estimator->AddModel(deployment.name, validation); !s.ok()) return s;
    core::CostModel cost_model = predictor->cost_model();
    core::ModelCost cost;
    cost.name = deployment.name;
    cost.input_usd_per_mtok = nm.input_usd_per_mtok;
    cost.output_usd_per_mtok = nm.output_usd_per_mtok;
    cost.mean_usd = nm.mean_cost_usd;
    if (absl::Status s = cost_model.AddModel(std::move(cost)); !s.ok()) return s;
    absl::StatusOr<core::Predictor> next = core::Predictor::Create(
        predictor->featurizer(), std::shared_ptr<const core::QualityEstimator>(std::move(estimator)),
        std::move(cost_model));
    if (!next.ok()) return next.status();
    predictor = std::make_shared<const core::Predictor>(*std::move(next));
  }
  RouterConfig config = current->config;
  if (config.models.empty()) {
    // "Every model" becomes an explicit list before one of them changes.
    for (const core::DeployedModel& d : current->pool) config.models.push_back({d.name, 0, 0});
  }
  auto it = std::find_if(config.models.begin(), config.models.end(),
                         [&](const ModelDeploymentConfig& m) { return m.name == deployment.name; });
  if (it == config.models.end()) {
    config.models.push_back(deployment);
  } else {
    *it = deployment;
  }
  // Marked before the snapshot that adds it is built, which reads the marks (its cold columns); a
  // model added from validation results is not (or no longer, after a restart) a cold start.
  const bool was_cold = learning_->learner().IsColdStart(deployment.name);
  if (!is_known) learning_->SetColdStart(deployment.name, cold_start);
  absl::StatusOr<uint64_t> generation =
      ApplyLocked(std::move(config), std::move(predictor), /*dry_run=*/false);
  if (!generation.ok() && !is_known) learning_->SetColdStart(deployment.name, was_cold);
  return generation;
}

absl::StatusOr<uint64_t> RouterRuntime::RemoveModel(const std::string& name) {
  absl::MutexLock lock(&admin_mu_);
  const std::shared_ptr<const RuntimeState> current = state();
  RouterConfig config = current->config;
  if (config.models.empty()) {
    for (const core::DeployedModel& d : current->pool) config.models.push_back({d.name, 0, 0});
  }
  auto it = std::find_if(config.models.begin(), config.models.end(),
                         [&](const ModelDeploymentConfig& m) { return m.name == name; });
  if (it == config.models.end()) {
    return absl::NotFoundError(absl::StrCat("name: model '", name, "' is not in the pool"));
  }
  config.models.erase(it);
  if (config.models.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("name: '", name, "' is the last model of the pool; add another first"));
  }
  return ApplyLocked(std::move(config), current->predictor, /*dry_run=*/false);
}

absl::StatusOr<AdmissionTicket> RouterRuntime::Admit(const RuntimeState& state,
                                                     absl::string_view tenant,
                                                     absl::string_view connection,
                                                     RoutingMode mode, bool check_queue) {
  if (!accepting_inline_.load()) return absl::UnavailableError(kShuttingDown);
  const bool queued = mode == RoutingMode::kBatch;
  if (queued && check_queue) {
    const int64_t depth = scheduler_->NumQueued();
    if (depth >= state.config.batching.max_queued) {
      return WithRetryHint(
          absl::UnavailableError(absl::StrCat("queue full (", depth,
                                              " queries waiting; batching.max_queued)")),
          RetryAfter(state, depth));
    }
  }
  const Admission::Bounds bounds{.per_tenant = state.config.max_queued_per_tenant,
                                 .per_connection = state.config.max_queries_per_connection};
  absl::StatusOr<AdmissionTicket> ticket = admission_.Admit(tenant, queued, connection, bounds);
  if (!ticket.ok()) {
    const int64_t ahead = std::max(queued ? admission_.TenantCount(tenant) : 0,
                                   admission_.ConnectionCount(connection));
    return WithRetryHint(ticket.status(), RetryAfter(state, ahead));
  }
  return ticket;
}

absl::Duration RouterRuntime::RetryAfter(const RuntimeState& state, int64_t queued) {
  const core::BatchQueueOptions& b = state.config.batching;
  const absl::Duration per_batch = b.max_batch_delay + state.config.policy.solve.time_limit;
  return std::min(per_batch * (queued / b.max_batch_size + 1), absl::Seconds(10));
}

void RouterRuntime::Dispatch(TaskPtr task, RoutingMode mode, const RuntimeState& state) {
  if (mode == RoutingMode::kInline) {
    DecideInline(std::move(task));
    return;
  }
  // Schedule takes the task only on success; a refused one is answered here.
  if (absl::Status s = scheduler_->Schedule(task); !s.ok()) {
    Refuse(std::move(task), accepting_inline_.load()
                                ? WithRetryHint(s, RetryAfter(state, state.config.batching.max_queued))
                                : s);
  }
}

absl::Status RouterRuntime::DispatchBatch(std::vector<TaskPtr>& tasks) {
  absl::Status s = scheduler_->ScheduleBatch(tasks);
  if (s.ok() || !accepting_inline_.load()) return s;
  const std::shared_ptr<const RuntimeState> current = state();
  return WithRetryHint(s, RetryAfter(*current, current->config.batching.max_queued));
}

void RouterRuntime::Refuse(TaskPtr task, const absl::Status& status) {
  metrics_->OnRejected(RejectReason(status));
  AnswerSink& sink = task->sink();
  if (sink.Deliver(*task, QueryAnswer::Refused(status))) sink.Flush();
}

void RouterRuntime::DecideInline(TaskPtr task) {
  if (task->sink().Cancelled()) {
    Refuse(std::move(task), absl::CancelledError("the client cancelled the call"));
    return;
  }
  if (clock_->Now() >= task->deadline()) {
    Refuse(std::move(task),
           absl::DeadlineExceededError("the deadline passed before the query was decided"));
    return;
  }
  if (!accepting_inline_.load()) {
    Refuse(std::move(task), absl::UnavailableError(kShuttingDown));
    return;
  }
  // Decided on the inline router's thread, which calls the ledger once per step for all the
  // queries waiting (inline_router.h): this thread (gRPC's) does not wait for the ledger.
  std::shared_ptr<const RuntimeState> current = state();
  const core::PendingQuery& query = task->query();
  const RuntimeState& s = *current;
  inline_router_->Decide(
      query, s.pool, s.config.policy,
      [this, task = std::move(task), current = std::move(current)](core::InlineDecision decision) {
        metrics_->OnInlineDecision(decision);
        AfterLedgerChange();
        const QueryAnswer answer = QueryAnswer::Inline(decision);
        if (current->config.log_decisions) LogDecision(*task, answer);
        AnswerSink& sink = task->sink();
        if (sink.Deliver(*task, answer)) sink.Flush();
      });
}

void RouterRuntime::ProcessBatch(std::vector<TaskPtr> tasks) {
  const absl::Time now = clock_->Now();
  std::vector<TaskPtr> live;
  std::vector<core::PendingQuery> queries;
  live.reserve(tasks.size());
  queries.reserve(tasks.size());
  absl::Time oldest = now;
  for (TaskPtr& t : tasks) {
    if (t->sink().Cancelled()) {
      Refuse(std::move(t), absl::CancelledError("the client cancelled the call"));
    } else if (now >= t->deadline()) {
      Refuse(std::move(t),
             absl::DeadlineExceededError("the deadline passed before the query's batch closed"));
    } else {
      oldest = std::min(oldest, t->arrival());
      queries.push_back(std::move(t->query()));
      live.push_back(std::move(t));
    }
  }
  if (live.empty()) return;
  // The batch is decided entirely under the snapshot current now.
  const std::shared_ptr<const RuntimeState> current = state();
  const core::BatchOutcome outcome =
      core::RouteBatch(queries, current->pool, current->config.policy, *ledger_, *clock_,
                       absl::StrCat(batch_prefix_, next_batch_.fetch_add(1)));
  metrics_->OnBatch(outcome, now - oldest);
  AfterLedgerChange();
  // Sinks that hold their answers (a stream) send them once the whole batch is delivered.
  std::vector<AnswerSink*> to_flush;
  for (size_t k = 0; k < live.size(); ++k) {
    const QueryAnswer answer = QueryAnswer::Batched(outcome, k);
    if (current->config.log_decisions) LogDecision(*live[k], answer);
    AnswerSink* sink = &live[k]->sink();
    if (sink->Deliver(*live[k], answer)) to_flush.push_back(sink);
  }
  for (AnswerSink* sink : to_flush) sink->Flush();
}

void RouterRuntime::StopAccepting() {
  accepting_inline_.store(false);
  scheduler_->StopAccepting();
}

void RouterRuntime::StopBatches(absl::Time deadline) { scheduler_->Stop(deadline); }

void RouterRuntime::ReleaseUndelivered(absl::string_view assignment_id, absl::string_view model) {
  // NOT_FOUND only for an id already completed: its client did get it after all (Complete).
  if (!ledger_->Complete(ParseAssignmentId(assignment_id).ledger_id, 0.0).ok()) return;
  metrics_->OnUndelivered(model);
  AfterLedgerChange();
}

void RouterRuntime::RecordOutcome(const std::optional<OutcomeContext>& context,
                                  absl::string_view kind, double score) {
  learning_->Record(*state(), context, kind, score);
}

void RouterRuntime::FinishLearning() {
  learning_->Stop();
  if (absl::Status s = learning_->WriteSnapshot(); !s.ok()) {
    Log("error", "learning_snapshot_failed",
        absl::StrCat("error: the last learning snapshot was not written: ", s.message()),
        {{"reason", std::string(s.message())}});
  }
}

void RouterRuntime::PublishLedgerGauges() {
  const std::shared_ptr<const RuntimeState> current = state();
  for (const core::DeployedModel& d : current->pool) {
    if (!d.slots.has_value()) continue;
    if (absl::StatusOr<int64_t> in_use = ledger_->InUse(d.name); in_use.ok()) {
      metrics_->OnSlots(d.name, *in_use, *d.slots);
    }
  }
  if (absl::StatusOr<core::LedgerSnapshot> snapshot = ledger_->Snapshot(); snapshot.ok()) {
    metrics_->OnBudgetRemaining(snapshot->spend_allowance_usd);
  }
  if (absl::StatusOr<core::LedgerTotals> totals = ledger_->Totals(); totals.ok()) {
    metrics_->OnLedgerTotals(*totals, current->config.ledger);
  }
}

}  // namespace router::server
