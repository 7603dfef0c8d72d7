#include "bench/eval/learning.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/random/bit_gen_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "bench/eval/simulate.h"
#include "router_core/serving/batch_engine.h"
#include "router_core/serving/local_ledger.h"
#include "router_core/serving/pool_view.h"

namespace router::core::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

absl::Status CheckPredictions(const HeldOutPredictions* p, const HeldOutPredictions& reference,
                              absl::string_view name) {
  if (p == nullptr) return absl::OkStatus();
  const size_t cells = static_cast<size_t>(reference.num_prompts) * reference.models.size();
  if (p->models != reference.models || p->num_prompts != reference.num_prompts ||
      p->quality.size() != cells || p->quality_lower.size() != cells ||
      p->predicted_cost.size() != cells) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": not the same prompts and models as `before`"));
  }
  return absl::OkStatus();
}

absl::Status CheckSetup(const StreamSetup& setup, const StreamArm& arm) {
  if (arm.before == nullptr) return absl::InvalidArgumentError("arm.before: missing");
  const HeldOutPredictions& p = *arm.before;
  if (absl::Status s = CheckPredictions(arm.before, p, "arm.before"); !s.ok()) return s;
  if (absl::Status s = CheckPredictions(arm.after, p, "arm.after"); !s.ok()) return s;
  const size_t m = p.models.size();
  const size_t cells = static_cast<size_t>(p.num_prompts) * m;
  if (setup.truth_before == nullptr || setup.truth_before->size() != cells) {
    return absl::InvalidArgumentError("truth_before: missing or not n x m");
  }
  if (setup.truth_after != nullptr && setup.truth_after->size() != cells) {
    return absl::InvalidArgumentError("truth_after: not n x m");
  }
  if (setup.clusters.size() != static_cast<size_t>(p.num_prompts)) {
    return absl::InvalidArgumentError(absl::StrCat("clusters: ", setup.clusters.size(),
                                                   " entries for ", p.num_prompts, " prompts"));
  }
  if (setup.batch_size < 1) return absl::InvalidArgumentError("batch_size: must be >= 1");
  if (!(std::isfinite(setup.cap_per_prompt) && setup.cap_per_prompt >= 0)) {
    return absl::InvalidArgumentError("cap_per_prompt: must be finite and >= 0");
  }
  if (!setup.slots.empty() && setup.slots.size() != m) {
    return absl::InvalidArgumentError(
        absl::StrCat("slots: ", setup.slots.size(), " entries for ", m, " models"));
  }
  if (setup.stream.empty()) return absl::InvalidArgumentError("stream: empty");
  for (const int64_t row : setup.stream) {
    if (row < 0 || row >= p.num_prompts) {
      return absl::InvalidArgumentError(absl::StrCat("stream: row ", row, " out of range"));
    }
  }
  for (const int j : arm.cold_models) {
    if (j < 0 || static_cast<size_t>(j) >= m) {
      return absl::InvalidArgumentError(absl::StrCat("cold_models: ", j, " out of range"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<StreamRun> ReplayStream(const StreamSetup& setup, const StreamArm& arm) {
  if (absl::Status s = CheckSetup(setup, arm); !s.ok()) return s;
  const HeldOutPredictions& before = *arm.before;
  const size_t m = before.models.size();
  const bool has_realized = HasRealizedCost(before);
  absl::flat_hash_map<std::string, int> index_of;
  std::vector<DeployedModel> pool;
  std::vector<LedgerModel> ledger_models;
  for (size_t j = 0; j < m; ++j) {
    const std::optional<int64_t> slots = setup.slots.empty() ? std::nullopt : setup.slots[j];
    index_of[before.models[j]] = static_cast<int>(j);
    pool.push_back({before.models[j], slots});
    ledger_models.push_back({before.models[j], slots});
  }
  const ReplayClock clock;
  absl::StatusOr<std::unique_ptr<LocalLedger>> ledger =
      LocalLedger::Create(LedgerOptions(), std::move(ledger_models), &clock);
  if (!ledger.ok()) return ledger.status();
  std::unique_ptr<OutcomeLearner> learner;
  std::vector<uint8_t> cold(m, 0);
  for (const int j : arm.cold_models) cold[static_cast<size_t>(j)] = 1;
  std::vector<std::string> allowed;  // a static arm's pool without its cold models
  if (arm.learner.has_value()) {
    absl::StatusOr<std::unique_ptr<OutcomeLearner>> created = OutcomeLearner::Create(*arm.learner);
    if (!created.ok()) return created.status();
    learner = *std::move(created);
    for (const int j : arm.cold_models) learner->MarkColdStart(before.models[j], true);
  } else if (!arm.cold_models.empty()) {
    for (size_t j = 0; j < m; ++j) {
      if (!cold[j]) allowed.push_back(before.models[j]);
    }
  }
  BatchPolicy policy;
  policy.policy = PolicyKind::kBatch;
  policy.avg_cost_cap_usd = setup.cap_per_prompt;
  policy.solve = setup.solve;
  const auto predicted_models = std::make_shared<const std::vector<std::string>>(before.models);
  std::mt19937_64 rng(arm.seed);

  const int64_t length = static_cast<int64_t>(setup.stream.size());
  StreamRun run;
  run.chosen.assign(static_cast<size_t>(length), -1);
  run.score.assign(static_cast<size_t>(length), 0.0);
  run.explored.assign(static_cast<size_t>(length), 0);
  if (!has_realized) run.realized_spend = kNaN;
  for (int64_t start = 0; start < length; start += setup.batch_size) {
    const int64_t end = std::min(length, start + setup.batch_size);
    std::vector<PendingQuery> queries;
    std::vector<std::vector<double>> priors;  // the estimator's qualities at decision time
    for (int64_t t = start; t < end; ++t) {
      const size_t row = static_cast<size_t>(setup.stream[static_cast<size_t>(t)]);
      const HeldOutPredictions& p =
          arm.after != nullptr && t >= setup.switch_at ? *arm.after : before;
      PendingQuery q;
      q.predicted_models = predicted_models;
      q.allowed = allowed;
      Predictions& predicted = q.predictions;
      const auto at = static_cast<std::ptrdiff_t>(row * m);
      const auto to = at + static_cast<std::ptrdiff_t>(m);
      predicted.quality.assign(p.quality.begin() + at, p.quality.begin() + to);
      predicted.quality_lower.assign(p.quality_lower.begin() + at, p.quality_lower.begin() + to);
      predicted.cost_usd.assign(p.predicted_cost.begin() + at, p.predicted_cost.begin() + to);
      predicted.cluster = setup.clusters[row];
      if (learner != nullptr && !arm.cold_models.empty()) {
        // A cold-start model's column carries the query's baseline (outcome_learner.h).
        const double baseline = learner->ColdStartBaseline(before.models, predicted.quality);
        for (const int j : arm.cold_models) {
          predicted.quality[static_cast<size_t>(j)] = baseline;
          predicted.quality_lower[static_cast<size_t>(j)] = baseline;
        }
      }
      priors.push_back(predicted.quality);
      if (learner != nullptr) {
        run.explored[static_cast<size_t>(t)] =
            learner->Adjust(before.models, predicted.cluster, absl::MakeSpan(predicted.quality),
                            absl::MakeSpan(predicted.quality_lower), absl::BitGenRef(rng));
      }
      queries.push_back(std::move(q));
    }
    const BatchOutcome outcome = RouteBatch(queries, pool, policy, **ledger, clock,
                                            absl::StrCat("stream-", start));
    if (outcome.queries.size() != queries.size()) {
      return absl::InternalError(absl::StrCat("batch at ", start, ": ", outcome.queries.size(),
                                              " outcomes for ", queries.size(), " queries"));
    }
    ++run.batches;
    for (const std::string& binding : outcome.binding_constraints) {
      if (binding == "budget") ++run.budget_binding;
    }
    if (std::any_of(outcome.binding_constraints.begin(), outcome.binding_constraints.end(),
                    [](const std::string& b) { return absl::StartsWith(b, "slots:"); })) {
      ++run.slots_binding;
    }
    std::vector<int64_t> taken(m, 0);
    double spend = 0.0;
    for (size_t k = 0; k < queries.size(); ++k) {
      const QueryOutcome& o = outcome.queries[k];
      const int64_t t = start + static_cast<int64_t>(k);
      if (!o.status.ok()) {
        if (!absl::IsResourceExhausted(o.status)) return o.status;
        continue;
      }
      const auto it = index_of.find(o.model);
      if (it == index_of.end()) {
        return absl::InternalError(absl::StrCat("the engine chose unknown model '", o.model, "'"));
      }
      const int j = it->second;
      const size_t row = static_cast<size_t>(setup.stream[static_cast<size_t>(t)]);
      const size_t at = row * m + static_cast<size_t>(j);
      const std::vector<double>& truth =
          setup.truth_after != nullptr && t >= setup.switch_at ? *setup.truth_after
                                                               : *setup.truth_before;
      ++taken[static_cast<size_t>(j)];
      spend += queries[k].predictions.cost_usd[static_cast<size_t>(j)];
      run.chosen[static_cast<size_t>(t)] = j;
      run.score[static_cast<size_t>(t)] = truth[at];
      if (has_realized) run.realized_spend += before.realized_cost[at];
      if (learner != nullptr) {
        if (absl::Status s = learner->Record(o.model, queries[k].predictions.cluster,
                                             std::clamp(priors[k][static_cast<size_t>(j)], 0.0,
                                                        1.0),
                                             truth[at]);
            !s.ok()) {
          return s;
        }
      }
      if (absl::Status s = (*ledger)->Complete(o.assignment_id, std::nullopt).status(); !s.ok()) {
        return s;
      }
    }
    // The limits, re-counted independently of the engine and the ledger.
    const double cap = setup.cap_per_prompt * static_cast<double>(end - start);
    if (spend > cap + 1e-9 * std::max(1.0, cap)) {
      return absl::InternalError(absl::StrCat("batch at ", start, ": predicted spend ", spend,
                                              " exceeds its cap ", cap));
    }
    for (size_t j = 0; j < m; ++j) {
      if (!setup.slots.empty() && setup.slots[j].has_value() && taken[j] > *setup.slots[j]) {
        return absl::InternalError(absl::StrCat("batch at ", start, ": model ", before.models[j],
                                                " took ", taken[j], " queries, slots ",
                                                *setup.slots[j]));
      }
    }
    run.predicted_spend += spend;
  }
  if (learner != nullptr) {
    run.cells = learner->Cells();
    run.dropped_outcomes = learner->dropped_outcomes();
  }
  return run;
}

absl::StatusOr<std::vector<int64_t>> MakeStream(const std::vector<int64_t>& rows, int64_t length,
                                                uint64_t seed) {
  if (rows.empty()) return absl::InvalidArgumentError("rows: empty");
  if (length < 1) return absl::InvalidArgumentError("length: must be >= 1");
  std::mt19937_64 rng(seed);
  std::vector<int64_t> stream;
  stream.reserve(static_cast<size_t>(length));
  std::vector<int64_t> epoch = rows;
  while (static_cast<int64_t>(stream.size()) < length) {
    std::shuffle(epoch.begin(), epoch.end(), rng);
    const size_t take =
        std::min(epoch.size(), static_cast<size_t>(length) - stream.size());
    stream.insert(stream.end(), epoch.begin(), epoch.begin() + static_cast<std::ptrdiff_t>(take));
  }
  return stream;
}

std::vector<double> Degrade(const std::vector<double>& truth, size_t m, int model,
                            const std::vector<uint8_t>& rows, double flip, uint64_t seed) {
  std::vector<double> out = truth;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (size_t i = 0; i < rows.size(); ++i) {
    const double u = unit(rng);  // drawn for every row, so a row's draw does not depend on others
    if (!rows[i]) continue;
    double& y = out[i * m + static_cast<size_t>(model)];
    if (y > 0.0 && u < flip) y = 0.0;
  }
  return out;
}

double MeanScore(const StreamRun& run, int64_t from, int64_t to) {
  from = std::max<int64_t>(0, from);
  to = std::min<int64_t>(static_cast<int64_t>(run.score.size()), to);
  if (to <= from) return kNaN;
  double sum = 0.0;
  for (int64_t t = from; t < to; ++t) sum += run.score[static_cast<size_t>(t)];
  return sum / static_cast<double>(to - from);
}

}  // namespace router::core::eval
