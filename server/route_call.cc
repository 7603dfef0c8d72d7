#include "server/route_call.h"

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "router/v1/router.pb.h"
#include "server/query_answer.h"
#include "server/query_intake.h"
#include "server/raw_message.h"
#include "server/status_util.h"

namespace router::server {
namespace {

class RouteCall final : public grpc::ServerUnaryReactor, public AnswerSink {
 public:
  RouteCall(RouterRuntime* rt, grpc::CallbackServerContext* ctx, grpc::ByteBuffer* raw_response)
      : rt_(rt), ctx_(ctx), raw_response_(raw_response), start_(rt->clock().Now()) {}

  void Start(const grpc::ByteBuffer& raw_request) {
    // No request message (no buffer at all): the client reset the call before sending one, or
    // half-closed without one. Counted in OnDone, when gRPC knows which.
    if (ctx_->IsCancelled() || !raw_request.Valid()) {
      {
        absl::MutexLock lock(&mu_);
        request_absent_ = true;
      }
      Finish(ToGrpcStatus(NoRequestMessage()));
      return;
    }
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
  bool Cancelled() const override { return ctx_->IsCancelled(); }

  void OnDone() override {
    {
      absl::MutexLock lock(&mu_);
      if (request_absent_) {
        CountCallWithoutRequest(rt_->metrics(), "Route", ctx_->IsCancelled(),
                                rt_->clock().Now() - start_);
      }
      if (ctx_->IsCancelled() && response_.has_assignment()) {
        rt_->ReleaseUndelivered(response_.assignment().assignment_id(),
                                response_.assignment().model());
      }
    }
    rt_->UnaryCallDone();
    delete this;
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
  // The last touch of this reactor by its caller: gRPC may run OnDone before this returns.
  // Everything before Finish is done under mu_ (mu_ says why).
  void FinishCall(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      rt_->metrics().OnRequest("Route", static_cast<grpc::StatusCode>(status.code()),
                               rt_->clock().Now() - start_);
      if (status.ok()) SerializeAnswer(response_, *raw_response_);
      AddRetryHint(*ctx_, status);
    }
    Finish(ToGrpcStatus(status));
  }

  RouterRuntime* const rt_;
  grpc::CallbackServerContext* const ctx_;
  grpc::ByteBuffer* const raw_response_;  // gRPC's, alive until OnDone
  const absl::Time start_;
  v1::RouteRequest request_;
  // Orders what the thread that finishes the call wrote before OnDone, which gRPC may run on
  // another thread. gRPC core orders the two with atomics of its own; they are not visible to
  // ThreadSanitizer (Debian's gRPC is not built with it), a mutex is. Never held across Finish,
  // which may run OnDone before it returns.
  absl::Mutex mu_;
  bool request_absent_ ABSL_GUARDED_BY(mu_) = false;
  v1::RouteResponse response_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerUnaryReactor* StartRouteCall(RouterRuntime* runtime, grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) {
  runtime->UnaryCallOpened();
  auto* call = new RouteCall(runtime, ctx, response);
  call->Start(*request);
  return call;
}

}  // namespace router::server
