// File: outcome_context.h
//
// What an assignment carries to its Complete so that its outcome can be learned from
// (outcome_learning.h): the model it went to, the query's cluster in the estimator, and the quality
// the trained estimator predicted for that model before learning adjusted it. It travels in the
// assignment id the client receives, after the ledger's own id:
//
//     <ledger id>~<cluster>~<prior quality in millionths>~<model>
//
// e.g. `18c3f0a2b4c-17.9f3b0c2d4e5f6a7b~3~812345~gpt-4-1106-preview`. So a Complete can be
// learned from at any replica of a fleet (the id is all it needs; nothing is kept per assignment
// besides the ledger's lease), after the lease expired, and after a restart. The ledger's part is
// what the ledger checks (its random tag keeps ids unguessable); `~` never occurs in it.
//
// The context is readable and not signed: a caller that may call Complete can already report any
// outcome for its assignments, and altering the context only moves that one outcome to another
// model or cluster. Each assignment's outcome is learned at most once, because only a Complete the
// ledger accepts is learned from (a second Complete of an id is NOT_FOUND).
//
// Thread-safety: pure functions. Errors: none; an id without a well-formed context parses with
// `context` nullopt (its outcome cannot be learned from, and is counted as dropped).

#ifndef ROUTER_SERVER_OUTCOME_CONTEXT_H_
#define ROUTER_SERVER_OUTCOME_CONTEXT_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace router::server {

struct OutcomeContext {
  std::string model;
  int cluster = 0;             // >= 0
  double prior_quality = 0.0;  // in [0, 1]; carried to the nearest millionth
};

// The id a client gets for the ledger's `ledger_id` and `context` (the format above).
std::string PublicAssignmentId(absl::string_view ledger_id, const OutcomeContext& context);

struct ParsedAssignmentId {
  // Everything before the first `~` (the whole id when it has none): what the ledger completes.
  absl::string_view ledger_id;
  // nullopt when the id has no context, or one that is not well formed (a cluster or prior that
  // is not a decimal in range, or an empty model).
  std::optional<OutcomeContext> context;
};

// Splits a public assignment id; `id` must outlive the result's ledger_id.
ParsedAssignmentId ParseAssignmentId(absl::string_view id);

}  // namespace router::server

#endif  // ROUTER_SERVER_OUTCOME_CONTEXT_H_
