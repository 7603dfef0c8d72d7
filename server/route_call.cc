#include "server/route_call.h"

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "router/v1/router.pb.h"
#include "server/query_answer.h"
#include "server/query_intake.h"
#include "server/raw_message.h"
#include "server/unary_route_call.h"

namespace router::server {
namespace {

class RouteCall final : public UnaryRouteCall<v1::RouteRequest, v1::RouteResponse> {
 public:
  RouteCall(RouterRuntime* rt, grpc::CallbackServerContext* ctx, grpc::ByteBuffer* raw_response)
      : UnaryRouteCall("Route", rt, ctx, raw_response) {}

  void Start(const grpc::ByteBuffer& raw_request) {
    if (FinishedWithoutRequest(raw_request)) return;
    if (absl::Status s = ParseRequest(raw_request, request_); !s.ok()) {
      Refuse(s);
      return;
    }
    const std::shared_ptr<const RuntimeState> state = rt_->state();
    const std::string connection =
        state->config.max_queries_per_connection > 0 ? ctx_->peer() : std::string();
    absl::StatusOr<Intake> intake = TakeIn(
        request_.query(), "query", *state, start_, DeadlineOf(ctx_),
        [&](const v1::Query& q, RoutingMode mode) {
          return rt_->Admit(*state, q.tenant(), connection, mode, /*check_queue=*/true);
        });
    if (!intake.ok()) {
      Refuse(intake.status());
      return;
    }
    auto task =
        std::make_unique<QueryTask>(this, 0, request_.query().id(), std::move(intake->query),
                                    std::move(intake->ticket));
    task->set_trace_id(TraceIdOf(ctx_));
    // The last touch of this call: the answer may finish it before Dispatch returns.
    rt_->Dispatch(std::move(task), intake->mode, *state);
  }

  bool Deliver(const QueryTask& task, const QueryAnswer& answer) override {
    if (answer.status.ok()) {
      absl::MutexLock lock(&mu_);
      FillAssignment(task, answer, response_.mutable_assignment());
    }
    FinishCall(answer.status);
    return false;
  }

 private:
  // Answers a query refused before it became a task; a call whose client has gone is cancelled,
  // whatever else was wrong with it.
  void Refuse(const absl::Status& status) {
    const absl::Status refusal =
        ctx_->IsCancelled() ? absl::CancelledError("the client cancelled the call") : status;
    rt_->metrics().OnRejected(RejectReason(refusal));
    FinishCall(refusal);
  }

  void ReleaseUndelivered() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (response_.has_assignment()) {
      rt_->ReleaseUndelivered(response_.assignment().assignment_id(),
                              response_.assignment().model());
    }
  }
};

}  // namespace

grpc::ServerUnaryReactor* StartRouteCall(RouterRuntime* runtime, grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) {
  auto* call = new RouteCall(runtime, ctx, response);
  call->Start(*request);
  return call;
}

}  // namespace router::server
