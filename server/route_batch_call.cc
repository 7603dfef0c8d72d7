#include "server/route_batch_call.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "router/v1/router.pb.h"
#include "server/query_answer.h"
#include "server/query_intake.h"
#include "server/raw_message.h"
#include "server/status_util.h"

namespace router::server {
namespace {

class RouteBatchCall final : public grpc::ServerUnaryReactor, public AnswerSink {
 public:
  RouteBatchCall(RouterRuntime* rt, grpc::CallbackServerContext* ctx,
                 grpc::ByteBuffer* raw_response)
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
      rt_->metrics().OnRejected(RejectReason(s));
      FailAll(s);
      return;
    }
    const std::shared_ptr<const RuntimeState> state = rt_->state();
    const int n = request_.queries_size();
    if (n == 0 || n > state->config.max_batch_request_queries) {
      FailAll(absl::InvalidArgumentError(absl::StrCat(
          "queries: ", n, " queries; a batch holds 1 to ",
          state->config.max_batch_request_queries, " (limits.max_batch_request_queries)")));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      remaining_ = n;
      for (int k = 0; k < n; ++k) response_.add_items();
    }
    absl::flat_hash_set<absl::string_view> ids;
    std::vector<RouterRuntime::TaskPtr> tasks;
    std::vector<std::pair<int, absl::Status>> refused;
    const absl::Time deadline = DeadlineOf(ctx_);
    const std::string trace_id = TraceIdOf(ctx_);
    const std::string connection =
        state->config.max_queries_per_connection > 0 ? ctx_->peer() : std::string();
    for (int k = 0; k < n; ++k) {
      const v1::Query& q = request_.queries(k);
      const std::string field = absl::StrCat("queries[", k, "]");
      if (!q.id().empty() && !ids.insert(q.id()).second) {
        refused.emplace_back(k, absl::InvalidArgumentError(
                                    absl::StrCat(field, ".id: duplicate query id '", q.id(), "'")));
        continue;
      }
      absl::StatusOr<Intake> intake = TakeIn(
          q, field, *state, start_, deadline, [&](const v1::Query& query, RoutingMode mode) {
            // The queue bounds the batch as a whole when it is queued (DispatchBatch).
            return rt_->Admit(*state, query.tenant(), connection, mode, /*check_queue=*/false);
          });
      if (!intake.ok()) {
        refused.emplace_back(k, intake.status());
        continue;
      }
      tasks.push_back(std::make_unique<QueryTask>(this, static_cast<size_t>(k), q.id(),
                                                  std::move(intake->query),
                                                  std::move(intake->ticket)));
      tasks.back()->set_trace_id(trace_id);
    }
    // Refused items are answered first; the call finishes when the last task is delivered.
    for (auto& [k, status] : refused) {
      rt_->metrics().OnRejected(RejectReason(status));
      v1::RouteBatchItem item;
      SetErrorItem(request_.queries(k).id(), status, item);
      Done(k, std::move(item));
    }
    if (tasks.empty()) return;
    // On refusal the tasks stay undelivered and are dropped here: the call fails as a whole.
    if (absl::Status s = rt_->DispatchBatch(tasks); !s.ok()) FailAll(s);
  }

  bool Deliver(const QueryTask& task, const QueryAnswer& answer) override {
    v1::RouteBatchItem item;
    FillItem(task, answer, item);
    Done(static_cast<int>(task.item()), std::move(item));
    return false;
  }
  bool Cancelled() const override { return ctx_->IsCancelled(); }

  void OnDone() override {
    {
      absl::MutexLock lock(&mu_);
      if (request_absent_) {
        CountCallWithoutRequest(rt_->metrics(), "RouteBatch", ctx_->IsCancelled(),
                                rt_->clock().Now() - start_);
      }
      if (ctx_->IsCancelled()) {
        for (const v1::RouteBatchItem& item : response_.items()) {
          if (item.has_assignment()) {
            rt_->ReleaseUndelivered(item.assignment().assignment_id(), item.assignment().model());
          }
        }
      }
    }
    rt_->UnaryCallDone();
    delete this;
  }

 private:
  // Puts item `k` in place; the last one finishes the call.
  void Done(int k, v1::RouteBatchItem item) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      *response_.mutable_items(k) = std::move(item);
      if (--remaining_ > 0) return;
      finished_ = true;
    }
    FinishCall(absl::OkStatus());
  }

  // Ends the call with an error instead of the items (the batch was refused as a whole).
  void FailAll(const absl::Status& s) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    FinishCall(s);
  }

  // The last touch of this reactor by its caller: gRPC may run OnDone before this returns.
  // Everything before Finish is done under mu_ (mu_ says why).
  void FinishCall(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      AddRetryHint(*ctx_, status);
      rt_->metrics().OnRequest("RouteBatch", static_cast<grpc::StatusCode>(status.code()),
                               rt_->clock().Now() - start_);
      if (status.ok()) SerializeAnswer(response_, *raw_response_);
    }
    Finish(ToGrpcStatus(status));
  }

  RouterRuntime* const rt_;
  grpc::CallbackServerContext* const ctx_;
  grpc::ByteBuffer* const raw_response_;  // gRPC's, alive until OnDone
  const absl::Time start_;
  v1::RouteBatchRequest request_;
  // Guards the items as they arrive from several threads, and orders what the thread that
  // finishes the call wrote before OnDone, which gRPC may run on another thread: gRPC core orders
  // the two with atomics of its own, not visible to ThreadSanitizer (Debian's gRPC is not built
  // with it); a mutex is. Never held across Finish, which may run OnDone before it returns.
  absl::Mutex mu_;
  bool request_absent_ ABSL_GUARDED_BY(mu_) = false;
  v1::RouteBatchResponse response_ ABSL_GUARDED_BY(mu_);
  int remaining_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* StartRouteBatchCall(RouterRuntime* runtime,
                                              grpc::CallbackServerContext* ctx,
                                              const grpc::ByteBuffer* request,
                                              grpc::ByteBuffer* response) {
  runtime->UnaryCallOpened();
  auto* call = new RouteBatchCall(runtime, ctx, response);
  call->Start(*request);
  return call;
}

}  // namespace router::server
