// File: unary_route_call.h
//
// UnaryRouteCall: what the two unary Router calls (route_call.h, route_batch_call.h) share. One
// request message comes in and one response message goes out, finished by whichever thread
// delivers the last answer. The base finishes at once a call that has no request message (the
// client reset it, or half-closed without one; counted in OnDone, when gRPC knows which),
// finishes the others with their status, metric and retry hint, and in OnDone has the subclass
// release what a cancelled call's response had assigned, so that the slots are free at once
// instead of at the lease timeout.
//
// Thread-safety: as gRPC's callback API requires. `mu_` guards the response and orders what the
// thread that finishes the call wrote before OnDone, which gRPC may run on another thread: gRPC
// core orders the two with atomics of its own, not visible to ThreadSanitizer (Debian's gRPC is not
// built with it); a mutex is. It is never held across Finish, which may run OnDone before it
// returns. The reactor deletes itself in OnDone; `raw_response` is gRPC's, alive until then.

#ifndef ROUTER_SERVER_UNARY_ROUTE_CALL_H_
#define ROUTER_SERVER_UNARY_ROUTE_CALL_H_

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "server/metrics.h"
#include "server/query_answer.h"
#include "server/raw_message.h"
#include "server/router_runtime.h"
#include "server/status_util.h"

namespace router::server {

template <typename Request, typename Response>
class UnaryRouteCall : public grpc::ServerUnaryReactor, public AnswerSink {
 public:
  bool Cancelled() const override { return ctx_->IsCancelled(); }

  void OnDone() override {
    {
      absl::MutexLock lock(&mu_);
      if (request_absent_) {
        CountCallWithoutRequest(rt_->metrics(), method_, ctx_->IsCancelled(),
                                rt_->clock().Now() - start_);
      }
      if (ctx_->IsCancelled()) ReleaseUndelivered();
    }
    rt_->UnaryCallDone();
    delete this;
  }

 protected:
  // `method` names the call in metrics ("Route"); a string literal.
  UnaryRouteCall(const char* method, RouterRuntime* rt, grpc::CallbackServerContext* ctx,
                 grpc::ByteBuffer* raw_response)
      : method_(method),
        rt_(rt),
        ctx_(ctx),
        raw_response_(raw_response),
        start_(rt->clock().Now()) {
    rt_->UnaryCallOpened();  // paired with UnaryCallDone in OnDone
  }

  // True when the call has no request message: it is then finished, and must not be touched.
  bool FinishedWithoutRequest(const grpc::ByteBuffer& raw_request) {
    if (!ctx_->IsCancelled() && raw_request.Valid()) return false;
    {
      absl::MutexLock lock(&mu_);
      request_absent_ = true;
    }
    Finish(ToGrpcStatus(NoRequestMessage()));
    return true;
  }

  // The last touch of this reactor by its caller: gRPC may run OnDone before this returns. The
  // response is serialized only when `status` is OK.
  void FinishCall(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      AddRetryHint(*ctx_, status);
      rt_->metrics().OnRequest(method_, static_cast<grpc::StatusCode>(status.code()),
                               rt_->clock().Now() - start_);
      if (status.ok()) SerializeAnswer(response_, *raw_response_);
    }
    Finish(ToGrpcStatus(status));
  }

  // Releases the assignments in response_ (the call ended cancelled: they never reached the
  // client).
  virtual void ReleaseUndelivered() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;

  const char* const method_;
  RouterRuntime* const rt_;
  grpc::CallbackServerContext* const ctx_;
  grpc::ByteBuffer* const raw_response_;
  const absl::Time start_;
  Request request_;  // read by the handler thread alone, before any answer can arrive
  absl::Mutex mu_;
  Response response_ ABSL_GUARDED_BY(mu_);

 private:
  bool request_absent_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace router::server

#endif  // ROUTER_SERVER_UNARY_ROUTE_CALL_H_
