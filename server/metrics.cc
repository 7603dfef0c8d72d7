#include "server/metrics.h"

namespace router::server {

// Recording nothing is the default of every event.
void Metrics::OnRequest(absl::string_view, grpc::StatusCode, absl::Duration) {}
void Metrics::OnRejected(absl::string_view) {}
void Metrics::OnCompletion(double, double) {}
void Metrics::OnUndelivered(absl::string_view) {}
void Metrics::OnConfigGeneration(uint64_t) {}
void Metrics::OnSlots(absl::string_view, int64_t, int64_t) {}
void Metrics::OnBudgetRemaining(double) {}
void Metrics::OnInlineDecision(const core::InlineDecision&) {}
void Metrics::OnBatch(const core::BatchOutcome&, absl::Duration) {}
void Metrics::OnQueueDepth(int64_t) {}
void Metrics::OnExtProcStreamStarted() {}
void Metrics::OnExtProcStreamEnded(absl::string_view) {}
void Metrics::OnExtProcImmediateResponse(int) {}
void Metrics::OnCredentialReloadFailure(absl::string_view) {}
void Metrics::OnServedCertificateExpiry(absl::Time) {}
void Metrics::OnLedgerCall(absl::string_view, absl::Duration, absl::string_view) {}
void Metrics::OnLedgerDegraded(bool) {}
void Metrics::OnLedgerTotals(const core::LedgerTotals&, const core::LedgerOptions&) {}
void Metrics::OnOutcome(absl::string_view, absl::string_view) {}
void Metrics::OnOutcomeDropped(absl::string_view, int64_t) {}
void Metrics::OnLearnedQuality(const std::vector<std::pair<std::string, double>>&) {}
void Metrics::OnLearningEnabled(bool) {}
void Metrics::OnLearningSnapshotError() {}
void Metrics::OnLearningSnapshotRejected() {}
void Metrics::OnLearningSharedDegraded(bool) {}
void Metrics::OnLearningSharedGap() {}
void Metrics::OnLearningSharedQueue(int64_t) {}

const char* RejectReason(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument: return "invalid";
    case absl::StatusCode::kUnavailable: return "unavailable";
    case absl::StatusCode::kCancelled: return "cancelled";
    case absl::StatusCode::kDeadlineExceeded: return "deadline";
    case absl::StatusCode::kResourceExhausted: return "budget_or_slots";
    default: return "error";
  }
}

void CountCallWithoutRequest(Metrics& metrics, absl::string_view method, bool cancelled,
                             absl::Duration latency) {
  const absl::Status status = cancelled ? absl::CancelledError("") : absl::InvalidArgumentError("");
  metrics.OnRejected(RejectReason(status));
  metrics.OnRequest(method, static_cast<grpc::StatusCode>(status.code()), latency);
}

Metrics& NoMetrics() {
  static Metrics* const none = new Metrics();
  return *none;
}

}  // namespace router::server
