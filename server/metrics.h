// File: metrics.h
//
// What routerd reports about its work, as one interface with a method per event. The server calls
// it unconditionally: a routerd built without a metrics endpoint, and every test that does not
// look at metrics, get NoMetrics(), whose methods do nothing. prometheus_metrics.h is the
// implementation routerd exports on /metrics.
//
// Thread-safety: implementations must accept concurrent calls.

#ifndef ROUTER_SERVER_METRICS_H_
#define ROUTER_SERVER_METRICS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"
#include "router_core/serving/batch_engine.h"
#include "router_core/serving/inline_router.h"
#include "router_core/serving/ledger.h"

namespace router::server {

class Metrics {
 public:
  virtual ~Metrics() = default;

  // One finished RPC (method: Route, RouteStream, RouteBatch, Complete, or an admin method).
  virtual void OnRequest(absl::string_view method, grpc::StatusCode code,
                         absl::Duration elapsed);
  // A query answered without a model before any decision: invalid, unavailable (queue full or
  // shutting down), cancelled, deadline, error.
  virtual void OnRejected(absl::string_view reason);
  // A Complete: the assignment's predicted cost and the cost recorded for it.
  virtual void OnCompletion(double predicted_usd, double recorded_usd);
  // An assignment released because its answer never reached the client.
  virtual void OnUndelivered(absl::string_view model);
  virtual void OnConfigGeneration(uint64_t generation);
  virtual void OnSlots(absl::string_view model, int64_t in_use, int64_t total);
  virtual void OnBudgetRemaining(double usd);
  // One inline decision (routed or refused by the inline router).
  virtual void OnInlineDecision(const core::InlineDecision& decision);
  // One decided batch; `oldest_wait` is how long its oldest query waited for it.
  virtual void OnBatch(const core::BatchOutcome& outcome, absl::Duration oldest_wait);
  // Queries waiting for a batch.
  virtual void OnQueueDepth(int64_t depth);
  // Envoy ext_proc streams (ext_proc_call.h): one opened; one ended, with its outcome (a bounded
  // set of names, ext_proc_call.h); a local reply (immediate response) sent, with its HTTP status.
  virtual void OnExtProcStreamStarted();
  virtual void OnExtProcStreamEnded(absl::string_view outcome);
  virtual void OnExtProcImmediateResponse(int http_status);
  // New contents of a credential file were refused (`credential`: tls, admin_token, api_token);
  // the old ones stay in use.
  virtual void OnCredentialReloadFailure(absl::string_view credential);
  // The notAfter of the TLS certificate served to new connections.
  virtual void OnServedCertificateExpiry(absl::Time not_after);
  // One call to a shared ledger: its operation, duration, and "" or the kind of its failure
  // (redis_ledger.h: timeout, connection, circuit_open, fenced, lost_state, server).
  virtual void OnLedgerCall(absl::string_view op, absl::Duration elapsed, absl::string_view error);
  // The shared ledger became degraded (unreachable or in doubt) or healthy again.
  virtual void OnLedgerDegraded(bool degraded);
  // The ledger's totals (fleet-wide with a shared ledger) and the pacing limits in force.
  virtual void OnLedgerTotals(const core::LedgerTotals& totals, const core::LedgerOptions& limits);

  // Learning from outcomes (outcome_learning.h). A Complete's outcome for `model`, of `kind`
  // "success" or "score", learned from or not.
  virtual void OnOutcome(absl::string_view model, absl::string_view kind);
  // `count` outcomes not learned from, by reason (outcome_learning.h).
  virtual void OnOutcomeDropped(absl::string_view reason, int64_t count);
  // The learned quality of every model that has learned cells (the others have none).
  virtual void OnLearnedQuality(const std::vector<std::pair<std::string, double>>& per_model);
  // Whether decisions use what was learned (learning.enabled).
  virtual void OnLearningEnabled(bool enabled);
  // A write of the snapshot file failed.
  virtual void OnLearningSnapshotError();
  // The snapshot file found at start could not be restored (moved aside).
  virtual void OnLearningSnapshotRejected();
  // Shared learning (a fleet): the learning log in Redis could not be written or read (true),
  // or could again (false).
  virtual void OnLearningSharedDegraded(bool degraded);
  // Shared learning: entries of the log were lost (trimmed, Redis emptied) before this replica
  // applied them.
  virtual void OnLearningSharedGap();
  // Shared learning: outcomes waiting to be written to the log.
  virtual void OnLearningSharedQueue(int64_t depth);
};

// The metrics that record nothing; a process-wide singleton, never destroyed.
Metrics& NoMetrics();

// The `reason` OnRejected reports for a query refused with `status` before any decision.
const char* RejectReason(const absl::Status& status);

// Counts, from its OnDone, a unary call whose request message never arrived (gRPC 1.51 can run a
// unary handler with no message when the client reset the call before sending one, before gRPC
// has seen the reset): CANCELLED when the client reset it (`cancelled`, known by OnDone), else
// INVALID_ARGUMENT (it half-closed without a message), with the matching OnRejected reason.
void CountCallWithoutRequest(Metrics& metrics, absl::string_view method, bool cancelled,
                             absl::Duration latency);

}  // namespace router::server

#endif  // ROUTER_SERVER_METRICS_H_
