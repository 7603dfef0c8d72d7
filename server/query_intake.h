// File: query_intake.h
//
// The proto edge of a query: validates a router.v1.Query, predicts it with the current snapshot's
// predictor (on the handler's thread, so the batch thread only solves), resolves the mode that
// decides it, and turns a decided outcome (batch or inline) back into a router.v1.Assignment.
//
// Errors (INVALID_ARGUMENT, naming the field under `field`, e.g. `query.embedding[3]: not
// finite`): missing or oversized id; neither text nor embedding; text over the size limit; an
// embedding of the wrong dimension or with a non-finite value; negative token hints; a repeated
// or unknown allowed model; a routing mode outside the enum. Predictor errors keep their code,
// with the field prefixed.
//
// Thread-safety: pure functions over immutable snapshots.

#ifndef ROUTER_SERVER_QUERY_INTAKE_H_
#define ROUTER_SERVER_QUERY_INTAKE_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "router/v1/router.pb.h"
#include <optional>

#include "router_core/serving/batch_engine.h"
#include "router_core/serving/inline_router.h"
#include "server/routing_mode.h"
#include "server/runtime_state.h"

namespace router::server {

inline constexpr size_t kMaxQueryIdBytes = 256;

absl::StatusOr<core::PendingQuery> PrepareQuery(const v1::Query& query, absl::string_view field,
                                                const RuntimeState& state);

// The mode `query` asks for; nullopt for ROUTING_MODE_UNSPECIFIED.
absl::StatusOr<std::optional<RoutingMode>> RequestedMode(const v1::Query& query,
                                                         absl::string_view field);

// The mode (kBatch or kInline) that decides `query` under `state`'s routing config, for a caller
// with `time_left` until its deadline (routing_mode.h). `query` passed PrepareQuery.
RoutingMode DecidingMode(const v1::Query& query, const RuntimeState& state,
                         absl::Duration time_left);

// Fills `out` for a query routed in a batch (outcome.status OK). `arrival` is when the query was
// submitted.
void FillAssignment(const core::BatchOutcome& batch, const core::QueryOutcome& outcome,
                    absl::Time arrival, absl::Time batch_closed, v1::Assignment* out);

// Fills `out` for a query routed inline (decision.outcome.status OK).
void FillInlineAssignment(const std::string& query_id, const core::InlineDecision& decision,
                          v1::Assignment* out);

}  // namespace router::server

#endif  // ROUTER_SERVER_QUERY_INTAKE_H_
