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
#include "server/unary_route_call.h"

namespace router::server {
namespace {

class RouteBatchCall final : public UnaryRouteCall<v1::RouteBatchRequest, v1::RouteBatchResponse> {
 public:
  RouteBatchCall(RouterRuntime* rt, grpc::CallbackServerContext* ctx,
                 grpc::ByteBuffer* raw_response)
      : UnaryRouteCall("RouteBatch", rt, ctx, raw_response) {}

  void Start(const grpc::ByteBuffer& raw_request) {
    if (FinishedWithoutRequest(raw_request)) return;
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

  void ReleaseUndelivered() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const v1::RouteBatchItem& item : response_.items()) {
      if (item.has_assignment()) {
        rt_->ReleaseUndelivered(item.assignment().assignment_id(), item.assignment().model());
      }
    }
  }

  // The items still to come, and whether the call was finished (the last item, or FailAll).
  int remaining_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* StartRouteBatchCall(RouterRuntime* runtime,
                                              grpc::CallbackServerContext* ctx,
                                              const grpc::ByteBuffer* request,
                                              grpc::ByteBuffer* response) {
  auto* call = new RouteBatchCall(runtime, ctx, response);
  call->Start(*request);
  return call;
}

}  // namespace router::server
