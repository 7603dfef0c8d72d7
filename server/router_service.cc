#include "server/router_service.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "server/outcome_context.h"
#include "server/raw_message.h"
#include "server/refused_call.h"
#include "server/route_batch_call.h"
#include "server/route_call.h"
#include "server/route_stream_call.h"
#include "server/status_util.h"

namespace router::server {

absl::Status RouterService::Authorize(grpc::CallbackServerContext* ctx, absl::string_view method) {
  if (authorizer_ == nullptr) return absl::OkStatus();
  absl::Status status = authorizer_->Check(*ctx);
  if (!status.ok()) {
    runtime_->metrics().OnRequest(method, static_cast<grpc::StatusCode>(status.code()),
                                  absl::ZeroDuration());
  }
  return status;
}

grpc::ServerUnaryReactor* RouterService::Route(grpc::CallbackServerContext* ctx,
                                               const grpc::ByteBuffer* request,
                                               grpc::ByteBuffer* response) {
  if (absl::Status s = Authorize(ctx, "Route"); !s.ok()) return RefusedUnary(ctx, s);
  return StartRouteCall(runtime_, ctx, request, response);
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* RouterService::RouteStream(
    grpc::CallbackServerContext* ctx) {
  if (absl::Status s = Authorize(ctx, "RouteStream"); !s.ok()) return RefusedStream(s);
  return StartRouteStreamCall(runtime_, ctx);
}

grpc::ServerUnaryReactor* RouterService::RouteBatch(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* request,
                                                    grpc::ByteBuffer* response) {
  if (absl::Status s = Authorize(ctx, "RouteBatch"); !s.ok()) return RefusedUnary(ctx, s);
  return StartRouteBatchCall(runtime_, ctx, request, response);
}

grpc::ServerUnaryReactor* RouterService::Complete(grpc::CallbackServerContext* ctx,
                                                  const grpc::ByteBuffer* raw_request,
                                                  grpc::ByteBuffer* raw_response) {
  if (absl::Status s = Authorize(ctx, "Complete"); !s.ok()) return RefusedUnary(ctx, s);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  runtime_->NoteActivity();
  const absl::Time start = runtime_->clock().Now();
  v1::CompleteRequest request;
  v1::CompleteResponse response;
  absl::Status status = ParseRequest(*raw_request, request);
  if (status.ok() && request.assignment_id().empty()) {
    status = absl::InvalidArgumentError("assignment_id: required");
  }
  // Checked before anything changes: a refused Complete leaves the lease as it was.
  if (status.ok() && request.has_score() && !(request.score() >= 0 && request.score() <= 1)) {
    status = absl::InvalidArgumentError(
        absl::StrCat("score: must be in [0, 1], got ", request.score()));
  }
  if (status.ok()) {
    std::optional<double> actual;
    if (request.has_actual_cost_usd()) actual = request.actual_cost_usd();
    const ParsedAssignmentId id = ParseAssignmentId(request.assignment_id());
    absl::StatusOr<core::CompletionRecord> record =
        runtime_->ledger().Complete(id.ledger_id, actual);
    if (record.ok()) {
      response.set_recorded_cost_usd(record->recorded_cost_usd);
      response.set_lease_was_active(record->lease_was_active);
      runtime_->metrics().OnCompletion(record->predicted_cost_usd, record->recorded_cost_usd);
      runtime_->AfterLedgerChange();
      // Only an outcome whose Complete the ledger accepted is learned from: each assignment's once.
      std::optional<double> score;
      if (request.has_score()) {
        score = request.score();
      } else if (request.has_success()) {
        score = request.success() ? 1.0 : 0.0;
      }
      if (score.has_value()) {
        runtime_->RecordOutcome(id.context, request.has_score() ? "score" : "success", *score);
      }
      SerializeAnswer(response, *raw_response);
    }
    status = record.status();
  }
  runtime_->metrics().OnRequest("Complete", static_cast<grpc::StatusCode>(status.code()),
                                runtime_->clock().Now() - start);
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace router::server
