#include "bench/eval/simulate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <memory>
#include <random>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "router_core/solve/solve_batch.h"
#include "router_core/clock.h"
#include "router_core/serving/local_ledger.h"
#include "router_core/serving/pool_view.h"

namespace router::core::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Bisection steps on log(lambda): the bracket spans at most 1e20, so 60 halvings leave a relative
// step of about 1e-16 per lambda, finer than any change of the piecewise-constant spend.
constexpr int kBisectionSteps = 60;

// Mean predicted cost over every (prompt, model): the scale lambda is searched on.
double CostScale(const HeldOutPredictions& p) {
  double sum = 0.0;
  for (const double c : p.predicted_cost) sum += c;
  const double mean = sum / static_cast<double>(std::max<size_t>(1, p.predicted_cost.size()));
  return mean > 0 ? mean : 1.0;
}

// Smallest lambda >= 0 with ok(lambda), for ok monotone (false, then true) in lambda.
absl::StatusOr<double> SmallestLambda(const HeldOutPredictions& p,
                                      const std::function<absl::StatusOr<bool>(double)>& ok) {
  absl::StatusOr<bool> at_zero = ok(0.0);
  if (!at_zero.ok()) return at_zero.status();
  if (*at_zero) return 0.0;
  const double scale = 1.0 / CostScale(p);
  double good = kNaN, bad = kNaN;
  for (int e = -8; e <= 12; ++e) {
    const double lambda = scale * std::pow(10.0, e);
    absl::StatusOr<bool> v = ok(lambda);
    if (!v.ok()) return v.status();
    if (*v) {
      good = lambda;
      break;
    }
    bad = lambda;
  }
  if (std::isnan(good)) {
    return absl::FailedPreconditionError(
        "even the cheapest per-query choice does not meet the target");
  }
  if (std::isnan(bad)) return good;  // ok already at the smallest lambda probed
  for (int step = 0; step < kBisectionSteps; ++step) {
    const double mid = std::sqrt(good * bad);
    absl::StatusOr<bool> v = ok(mid);
    if (!v.ok()) return v.status();
    (*v ? good : bad) = mid;
  }
  return good;
}

absl::StatusOr<RunResult> PerQuery(const HeldOutPredictions& p, const Batches& batches,
                                   double lambda, const SimOptions& options) {
  PolicyRun run;
  run.policy = PolicyKind::kPerQuery;
  run.params.lambda = lambda;
  return RunPolicy(p, batches, run, options);
}

// INVALID_ARGUMENT for a bad budget or slot list, no batch, an empty batch or a prompt row out of
// range (the rules RunPolicy and RunInline share).
absl::Status ValidateRun(const HeldOutPredictions& p, const Batches& batches,
                         const std::optional<double>& budget_per_prompt,
                         const std::vector<std::optional<int64_t>>& slots) {
  if (budget_per_prompt.has_value() &&
      !(std::isfinite(*budget_per_prompt) && *budget_per_prompt >= 0)) {
    return absl::InvalidArgumentError("budget_per_prompt: must be finite and >= 0");
  }
  if (!slots.empty() && slots.size() != p.models.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("slots: ", slots.size(), " entries for ", p.models.size(), " models"));
  }
  if (batches.empty()) return absl::InvalidArgumentError("batches: no prompt");
  for (size_t b = 0; b < batches.size(); ++b) {
    if (batches[b].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("batches[", b, "]: empty"));
    }
    for (const int64_t i : batches[b]) {
      if (i < 0 || i >= p.num_prompts) {
        return absl::InvalidArgumentError(absl::StrCat("batches: prompt row ", i, " out of range"));
      }
    }
  }
  return absl::OkStatus();
}

// Scores the chosen models of a replay against the observed outcomes, batch by batch.
class Tally {
 public:
  Tally(const HeldOutPredictions& p, const std::vector<std::optional<int64_t>>& slots)
      : p_(p), slots_(slots), has_cost_(HasRealizedCost(p)), taken_(p.models.size(), 0) {}

  void Serve(int64_t prompt, int model) {
    const size_t at = static_cast<size_t>(prompt) * p_.models.size() + static_cast<size_t>(model);
    ++taken_[static_cast<size_t>(model)];
    correct_ += p_.correct[at];
    if (has_cost_) realized_ += p_.realized_cost[at];
    spend_ += p_.predicted_cost[at];
  }
  void Unserved() { ++r_.unserved; }
  // Closes a batch of `size` prompts (served and unserved ones) that took `solve_ms`.
  void EndBatch(int size, double solve_ms) {
    for (size_t j = 0; j < slots_.size(); ++j) {
      if (slots_[j].has_value() && taken_[j] > *slots_[j]) {
        ++r_.batches_over_slots;
        break;
      }
    }
    std::fill(taken_.begin(), taken_.end(), 0);
    predicted_ += spend_;
    r_.prompts += size;
    r_.batch_spend.push_back(spend_);
    r_.batch_size.push_back(size);
    r_.solve_ms.push_back(solve_ms);
    spend_ = 0.0;
  }
  RunResult Finish() {
    const double n = static_cast<double>(r_.prompts);
    r_.accuracy = correct_ / n;
    r_.realized_cost = has_cost_ ? realized_ / n : kNaN;
    r_.predicted_cost = predicted_ / n;
    return std::move(r_);
  }

 private:
  const HeldOutPredictions& p_;
  const std::vector<std::optional<int64_t>>& slots_;
  const bool has_cost_;
  std::vector<int64_t> taken_;  // per model, in the current batch
  double spend_ = 0.0;          // predicted, current batch
  double correct_ = 0.0, realized_ = 0.0, predicted_ = 0.0;
  RunResult r_;
};

}  // namespace

absl::Status ValidateSimOptions(const SimOptions& options) {
  return ValidateSolveOptions(options.solve);
}

const char* OrderingName(Ordering ordering) {
  return ordering == Ordering::kRandom ? "random" : "adversarial";
}

Query PredictionQuery(const HeldOutPredictions& p, int64_t row) {
  const size_t m = p.models.size();
  const size_t at = static_cast<size_t>(row) * m;
  Query q;
  q.id = absl::StrCat(row);
  q.quality.assign(p.quality.begin() + at, p.quality.begin() + at + m);
  q.quality_lower.assign(p.quality_lower.begin() + at, p.quality_lower.begin() + at + m);
  q.cost.assign(p.predicted_cost.begin() + at, p.predicted_cost.begin() + at + m);
  return q;
}

absl::StatusOr<Batches> MakeBatches(const HeldOutPredictions& p, Ordering ordering, int batch_size,
                                    uint64_t seed) {
  if (batch_size < 1) return absl::InvalidArgumentError("batch_size: must be >= 1");
  std::vector<int64_t> order = UsablePrompts(p);
  if (order.empty()) return absl::FailedPreconditionError("no prompt has every model's label");
  const size_t m = p.models.size();
  if (ordering == Ordering::kRandom) {
    std::mt19937_64 rng(seed);
    std::shuffle(order.begin(), order.end(), rng);
  } else {
    std::vector<double> key(static_cast<size_t>(p.num_prompts), 0.0);
    for (const int64_t i : order) {
      double q = 0.0, c = 0.0;
      for (size_t j = 0; j < m; ++j) {
        q += p.quality[static_cast<size_t>(i) * m + j] / static_cast<double>(m);
        c += p.predicted_cost[static_cast<size_t>(i) * m + j] / static_cast<double>(m);
      }
      key[static_cast<size_t>(i)] = (1.0 - q) * c;
    }
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return key[static_cast<size_t>(a)] > key[static_cast<size_t>(b)];
    });
  }
  Batches batches;
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(order.size(), start + static_cast<size_t>(batch_size));
    batches.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(start),
                         order.begin() + static_cast<std::ptrdiff_t>(end));
  }
  return batches;
}

absl::StatusOr<Reference> BestSingleModel(const HeldOutPredictions& p) {
  const std::vector<int64_t> usable = UsablePrompts(p);
  if (usable.empty()) return absl::FailedPreconditionError("no prompt has every model's label");
  const size_t m = p.models.size();
  const bool has_cost = HasRealizedCost(p);
  const double n = static_cast<double>(usable.size());
  std::vector<double> accuracy(m, 0.0), realized(m, 0.0), predicted(m, 0.0);
  for (const int64_t i : usable) {
    for (size_t j = 0; j < m; ++j) {
      const size_t at = static_cast<size_t>(i) * m + j;
      accuracy[j] += p.correct[at] / n;
      predicted[j] += p.predicted_cost[at] / n;
      if (has_cost) realized[j] += p.realized_cost[at] / n;
    }
  }
  Reference r;
  r.model = static_cast<int>(std::max_element(accuracy.begin(), accuracy.end()) - accuracy.begin());
  r.accuracy = accuracy[static_cast<size_t>(r.model)];
  r.predicted_cost = predicted[static_cast<size_t>(r.model)];
  r.realized_cost = has_cost ? realized[static_cast<size_t>(r.model)] : kNaN;
  return r;
}

absl::StatusOr<RunResult> RunPolicy(const HeldOutPredictions& p, const Batches& batches,
                                    const PolicyRun& run, const SimOptions& options) {
  if (absl::Status s = ValidateSimOptions(options); !s.ok()) return s;
  if (absl::Status s = ValidateRun(p, batches, run.budget_per_prompt, run.slots); !s.ok()) return s;
  const size_t m = p.models.size();
  Tally tally(p, run.slots);
  for (const std::vector<int64_t>& batch : batches) {
    BatchProblem problem;
    for (size_t j = 0; j < m; ++j) {
      problem.models.push_back({p.models[j], run.slots.empty() ? std::nullopt : run.slots[j]});
    }
    for (const int64_t i : batch) problem.queries.push_back(PredictionQuery(p, i));
    if (run.budget_per_prompt.has_value()) {
      problem.budget = *run.budget_per_prompt * static_cast<double>(batch.size());
    }
    problem.policy = run.policy;
    problem.params = run.params;
    // Gamma counts queries, so a short last batch cannot have more than it holds.
    problem.params.gamma = std::min(run.params.gamma, static_cast<double>(batch.size()));
    problem.solve = options.solve;
    const ReplayClock replay_clock;
    const absl::Time solve_start = absl::Now();
    absl::StatusOr<Solution> solution = SolveBatch(problem, replay_clock);
    const absl::Duration solve_time = absl::Now() - solve_start;
    if (!solution.ok()) return solution.status();
    for (size_t k = 0; k < batch.size(); ++k) {
      const int j = solution->model_of_query[k];
      if (j == kUnserved) {
        tally.Unserved();
      } else {
        tally.Serve(batch[k], j);
      }
    }
    tally.EndBatch(static_cast<int>(batch.size()),
                   absl::ToDoubleMilliseconds(solve_time));
  }
  return tally.Finish();
}

absl::StatusOr<InlineReplay> RunInline(const HeldOutPredictions& p, const Batches& batches,
                                       const InlineRun& run) {
  if (absl::Status s = ValidateRun(p, batches, run.budget_per_prompt, run.slots); !s.ok()) return s;
  const size_t m = p.models.size();
  std::vector<DeployedModel> pool;
  std::vector<LedgerModel> ledger_models;
  for (size_t j = 0; j < m; ++j) {
    const std::optional<int64_t> slots = run.slots.empty() ? std::nullopt : run.slots[j];
    pool.push_back({p.models[j], slots});
    ledger_models.push_back({p.models[j], slots});
  }
  const Clock& clock = Clock::Real();
  absl::StatusOr<std::unique_ptr<Ledger>> ledger =
      LocalLedger::Create(LedgerOptions(), std::move(ledger_models), &clock);
  if (!ledger.ok()) return ledger.status();
  InlineOptions options = run.options;
  options.window_arrivals = static_cast<int64_t>(batches.front().size());
  options.window_duration = absl::InfiniteDuration();
  absl::StatusOr<std::unique_ptr<InlineRouter>> router =
      InlineRouter::Create(options, ledger->get(), &clock);
  if (!router.ok()) return router.status();
  BatchPolicy policy;
  policy.avg_cost_cap_usd = run.budget_per_prompt;
  const auto predicted_models = std::make_shared<const std::vector<std::string>>(p.models);

  InlineReplay out;
  Tally tally(p, run.slots);
  for (size_t b = 0; b < batches.size(); ++b) {
    const std::vector<int64_t>& batch = batches[b];
    const auto size = static_cast<int64_t>(batch.size());
    if (size != options.window_arrivals) {
      // The previous window is full, so the next one opens with this batch's size and cap.
      options.window_arrivals = size;
      if (absl::Status s = (*router)->SetOptions(options); !s.ok()) return s;
    }
    std::vector<std::string> assignments;
    double window_us = 0.0;
    for (size_t k = 0; k < batch.size(); ++k) {
      const int64_t i = batch[k];
      const size_t row = static_cast<size_t>(i) * m;
      PendingQuery query;
      query.predicted_models = predicted_models;
      Predictions& predicted = query.predictions;
      predicted.quality.assign(p.quality.begin() + row, p.quality.begin() + row + m);
      predicted.quality_lower.assign(p.quality_lower.begin() + row, p.quality_lower.begin() + row + m);
      predicted.cost_usd.assign(p.predicted_cost.begin() + row, p.predicted_cost.begin() + row + m);
      query.arrival = clock.Now();
      const auto start = std::chrono::steady_clock::now();
      InlineDecision d = (*router)->Route(query, pool, policy);
      const double us =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
              .count();
      out.decision_us.push_back(us);
      window_us += us;
      if (d.guarded) ++out.guarded;
      const double cap = run.budget_per_prompt.has_value()
                             ? *run.budget_per_prompt * static_cast<double>(size)
                             : -1.0;
      if (d.position_in_window != static_cast<int64_t>(k) ||
          std::abs(d.window_cap_usd - cap) > 1e-9 * std::max(1.0, std::abs(cap))) {
        return absl::FailedPreconditionError(
            absl::StrCat("inline window ", d.window_id, " (arrival ", d.position_in_window,
                         ", cap ", d.window_cap_usd, ") does not coincide with batch ", b,
                         " (arrival ", k, ", cap ", cap, ")"));
      }
      if (!d.outcome.status.ok()) {
        if (!absl::IsResourceExhausted(d.outcome.status)) return d.outcome.status;
        tally.Unserved();
        continue;
      }
      const auto it = std::find(p.models.begin(), p.models.end(), d.outcome.model);
      if (it == p.models.end()) {
        return absl::InternalError(
            absl::StrCat("inline router chose unknown model '", d.outcome.model, "'"));
      }
      tally.Serve(i, static_cast<int>(it - p.models.begin()));
      assignments.push_back(std::move(d.outcome.assignment_id));
    }
    // The window is decided: its queries are served, so their slots come back (see simulate.h).
    for (const std::string& id : assignments) {
      if (absl::Status s = (*ledger)->Complete(id, std::nullopt).status(); !s.ok()) return s;
    }
    tally.EndBatch(static_cast<int>(size), window_us / 1000.0);
  }
  out.result = tally.Finish();
  return out;
}

int BatchesOverCap(const RunResult& result, double cap_per_prompt) {
  int over = 0;
  for (size_t b = 0; b < result.batch_spend.size(); ++b) {
    const double cap = cap_per_prompt * result.batch_size[b];
    if (result.batch_spend[b] > cap + 1e-9 * std::max(1.0, cap)) ++over;
  }
  return over;
}

absl::StatusOr<LambdaTuning> TuneLambdaToSpend(const HeldOutPredictions& p, const Batches& batches,
                                               double target_total_spend,
                                               const SimOptions& options) {
  if (!(std::isfinite(target_total_spend) && target_total_spend >= 0)) {
    return absl::InvalidArgumentError("target_total_spend: must be finite and >= 0");
  }
  auto spend = [&](double lambda) -> absl::StatusOr<double> {
    absl::StatusOr<RunResult> r = PerQuery(p, batches, lambda, options);
    if (!r.ok()) return r.status();
    return r->predicted_cost * static_cast<double>(r->prompts);
  };
  absl::StatusOr<double> lambda = SmallestLambda(p, [&](double l) -> absl::StatusOr<bool> {
    absl::StatusOr<double> s = spend(l);
    if (!s.ok()) return s.status();
    return *s <= target_total_spend * (1 + 1e-12);
  });
  if (!lambda.ok()) return lambda.status();
  absl::StatusOr<double> total = spend(*lambda);
  if (!total.ok()) return total.status();
  return LambdaTuning{*lambda, *total};
}

absl::StatusOr<LambdaTuning> TuneLambdaUnderCap(const HeldOutPredictions& p, const Batches& batches,
                                                double cap_per_prompt, const SimOptions& options) {
  if (!(std::isfinite(cap_per_prompt) && cap_per_prompt >= 0)) {
    return absl::InvalidArgumentError("cap_per_prompt: must be finite and >= 0");
  }
  absl::StatusOr<double> lambda = SmallestLambda(p, [&](double l) -> absl::StatusOr<bool> {
    absl::StatusOr<RunResult> r = PerQuery(p, batches, l, options);
    if (!r.ok()) return r.status();
    return BatchesOverCap(*r, cap_per_prompt) == 0;
  });
  if (!lambda.ok()) return lambda.status();
  absl::StatusOr<RunResult> r = PerQuery(p, batches, *lambda, options);
  if (!r.ok()) return r.status();
  return LambdaTuning{*lambda, r->predicted_cost * static_cast<double>(r->prompts)};
}

}  // namespace router::core::eval
