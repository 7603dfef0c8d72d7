#include "server/query_answer.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/log.h"
#include "server/outcome_context.h"

namespace router::server {
namespace {

// The id the client gets: the ledger's, with what its outcome is learned against.
std::string AssignmentIdOf(const core::QueryOutcome& outcome) {
  return PublicAssignmentId(outcome.assignment_id,
                            {outcome.model, outcome.cluster, outcome.prior_quality});
}

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t nanos = absl::ToInt64Nanoseconds(d);
  out->set_seconds(nanos / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
}

v1::SolverStatus ToProto(core::SolveStatus s) {
  switch (s) {
    case core::SolveStatus::kOptimal:
      return v1::SOLVER_STATUS_OPTIMAL;
    case core::SolveStatus::kFeasible:
      return v1::SOLVER_STATUS_FEASIBLE;
    case core::SolveStatus::kHeuristic:
      return v1::SOLVER_STATUS_HEURISTIC;
  }
  return v1::SOLVER_STATUS_UNSPECIFIED;
}

void FillBatchDecision(const core::BatchOutcome& batch, absl::Time arrival, v1::Assignment* out) {
  v1::Decision* d = out->mutable_decision();
  d->set_batch_id(batch.batch_id);
  d->set_batch_size(static_cast<int32_t>(batch.size));
  d->set_policy(std::string(core::PolicyKindName(batch.policy)));
  d->set_solver_status(ToProto(batch.status));
  d->set_relative_gap(batch.relative_gap);
  d->set_method(batch.method);
  SetDuration(std::max(absl::ZeroDuration(), batch.started - arrival), d->mutable_waited());
  SetDuration(batch.solve_time, d->mutable_solve_time());
  for (const std::string& b : batch.binding_constraints) d->add_binding_constraints(b);
  out->set_decision_mode(v1::ROUTING_MODE_BATCH);
}

void FillInlineDecision(const core::InlineDecision& decision, v1::Assignment* out) {
  out->set_decision_mode(v1::ROUTING_MODE_INLINE);
  v1::InlineDecision* d = out->mutable_inline_decision();
  d->set_lambda_per_usd(decision.lambda);
  d->set_slot_price(decision.slot_price);
  d->set_window_id(decision.window_id);
  d->set_position_in_window(decision.position_in_window);
  d->set_expected_after(decision.expected_after);
  d->set_window_cap_usd(decision.window_cap_usd);
  d->set_window_spent_usd(decision.window_spent_usd);
  d->set_guarded(decision.guarded);
  SetDuration(decision.decision_time, d->mutable_decision_time());
}

}  // namespace

void FillAssignment(const QueryTask& task, const QueryAnswer& answer, v1::Assignment* out) {
  const core::QueryOutcome& outcome =
      answer.batch != nullptr ? answer.batch->queries[answer.index] : answer.decision->outcome;
  out->set_query_id(task.query_id());
  if (!task.trace_id().empty()) out->set_trace_id(task.trace_id());
  out->set_model(outcome.model);
  out->set_predicted_quality(outcome.quality);
  out->set_predicted_quality_lower(outcome.quality_lower);
  out->set_predicted_cost_usd(outcome.cost_usd);
  out->set_assignment_id(AssignmentIdOf(outcome));
  SetDuration(outcome.lease_timeout, out->mutable_lease_timeout());
  for (const std::string& f : outcome.fallbacks) out->add_fallback_models(f);
  if (answer.batch != nullptr) {
    FillBatchDecision(*answer.batch, task.arrival(), out);
  } else {
    FillInlineDecision(*answer.decision, out);
  }
}

void SetErrorItem(const std::string& query_id, const absl::Status& status,
                  v1::RouteBatchItem& item) {
  item.clear_assignment();
  v1::QueryError* e = item.mutable_error();
  e->set_query_id(query_id);
  e->set_code(static_cast<int32_t>(status.code()));
  e->set_message(std::string(status.message()));
}

void FillItem(const QueryTask& task, const QueryAnswer& answer, v1::RouteBatchItem& item) {
  if (answer.status.ok()) {
    FillAssignment(task, answer, item.mutable_assignment());
  } else {
    SetErrorItem(task.query_id(), answer.status, item);
  }
}

void LogDecision(const QueryTask& task, const QueryAnswer& answer) {
  const core::QueryOutcome& outcome =
      answer.batch != nullptr ? answer.batch->queries[answer.index] : answer.decision->outcome;
  const std::string mode = answer.batch != nullptr ? "batch" : "inline";
  const std::string decided_by =
      answer.batch != nullptr ? answer.batch->batch_id : answer.decision->window_id;
  if (answer.status.ok()) {
    Log("info", "decision",
        absl::StrCat("query ", task.query_id(), " -> ", outcome.model, " (", mode, " ", decided_by,
                     ", ", outcome.cost_usd, " USD", task.trace_id().empty() ? "" : ", trace ",
                     task.trace_id(), ")"),
        {{"query_id", task.query_id()},
         {"trace_id", task.trace_id()},
         {"mode", mode},
         {"decided_by", decided_by},
         {"model", outcome.model},
         {"cost_usd", outcome.cost_usd},
         {"quality", outcome.quality},
         {"assignment_id", AssignmentIdOf(outcome)},
         {"code", std::string("OK")}});
  } else {
    Log("info", "decision",
        absl::StrCat("query ", task.query_id(), " refused (", mode, " ", decided_by, "): ",
                     answer.status.message()),
        {{"query_id", task.query_id()},
         {"trace_id", task.trace_id()},
         {"mode", mode},
         {"decided_by", decided_by},
         {"code", absl::StatusCodeToString(answer.status.code())},
         {"message", std::string(answer.status.message())}});
  }
}

}  // namespace router::server
