// File: query_intake.h
//
// The one intake step of a query, whichever RPC brought it: validates a router.v1.Query once,
// resolves the mode that decides it (routing_mode.h), admits it (admission.h: the caller's
// check, made before the prediction so that a refusal costs little), predicts it with the
// current snapshot's predictor (on the handler's thread, so the batch thread only solves), and,
// while learning from outcomes is on (RuntimeState::learner), adjusts the predicted quality and
// its lower bound by what was learned (or samples them: exploration), keeping the estimator's own
// quality in PendingQuery::prior_quality (for a cold-start model, the query's baseline its column
// carries instead of the estimator's placeholder). Batch, inline and ext_proc queries all come through
// here, so every decision sees the same adjusted numbers; the budget cap and the slot limits are
// the solver's and the ledger's, whatever the numbers.
//
// Errors (INVALID_ARGUMENT, naming the field under `field`, e.g. `query.embedding[3]: not
// finite`): missing or oversized id; neither text nor embedding; text over the size limit; an
// embedding of the wrong dimension or with a non-finite value; negative token hints; a repeated
// or unknown allowed model; a routing mode outside the enum. Predictor errors keep their code,
// with the field prefixed. The admission's refusal is returned as it is.
//
// Thread-safety: pure functions over immutable snapshots.
//
// Cost: O(A x M) for A allowed models and M pool models, plus the prediction (predictor.h).

#ifndef ROUTER_SERVER_QUERY_INTAKE_H_
#define ROUTER_SERVER_QUERY_INTAKE_H_

#include <cstddef>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/support/callback_common.h"
#include "grpcpp/server_context.h"
#include "router/v1/router.pb.h"
#include "router_core/serving/pool_view.h"
#include "server/admission.h"
#include "server/routing_mode.h"
#include "server/runtime_state.h"

namespace router::server {

inline constexpr size_t kMaxQueryIdBytes = 256;

// A query taken in: predicted, the mode (kBatch or kInline) that decides it, and its place under
// the admission bounds (for its task to hold until it is answered).
struct Intake {
  core::PendingQuery query;
  RoutingMode mode = RoutingMode::kBatch;
  AdmissionTicket ticket;
};

// Admits a validated query that `mode` will decide, or says why not.
using AdmitFn =
    absl::FunctionRef<absl::StatusOr<AdmissionTicket>(const v1::Query& query, RoutingMode mode)>;

// Takes in `query`, which arrived at `now` from a caller with `deadline` (InfiniteFuture = none).
absl::StatusOr<Intake> TakeIn(const v1::Query& query, absl::string_view field,
                              const RuntimeState& state, absl::Time now, absl::Time deadline,
                              AdmitFn admit);

// The call's deadline; InfiniteFuture when the client set none.
absl::Time DeadlineOf(const grpc::CallbackServerContext* ctx);

// The trace id of the call's W3C `traceparent` metadata (trace_context.h); empty when it has none
// or an invalid one.
std::string TraceIdOf(const grpc::CallbackServerContext* ctx);

}  // namespace router::server

#endif  // ROUTER_SERVER_QUERY_INTAKE_H_
