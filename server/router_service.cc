#include "server/router_service.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "google/protobuf/arena.h"
#include "server/query_intake.h"
#include "server/raw_message.h"
#include "server/status_util.h"

namespace router::server {
namespace {

absl::Time DeadlineOf(const grpc::CallbackServerContext* ctx) {
  const auto tp = ctx->deadline();
  if (tp == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(tp);
}

const char* RejectReason(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument: return "invalid";
    case absl::StatusCode::kUnavailable: return "unavailable";
    case absl::StatusCode::kCancelled: return "cancelled";
    case absl::StatusCode::kDeadlineExceeded: return "deadline";
    case absl::StatusCode::kResourceExhausted: return "budget_or_slots";
    default: return "error";
  }
}

// The answer of one routed query, as an Assignment (outcome OK) or a status.
absl::Status AnswerOf(const core::BatchOutcome& batch, size_t index, const std::string& query_id,
                      absl::Time arrival, v1::Assignment* out) {
  const core::QueryOutcome& outcome = batch.queries[index];
  if (!outcome.status.ok()) return outcome.status;
  out->set_query_id(query_id);
  FillAssignment(batch, outcome, arrival, batch.started, out);
  return absl::OkStatus();
}

// The calling thread's first arena block for building one answer: 4 KiB holds an assignment with
// its decision, fallbacks and binding constraints (an arena that needs more allocates it).
absl::Span<char> AnswerScratch() {
  alignas(8) static thread_local char block[4096];
  return absl::MakeSpan(block, sizeof(block));
}

// Makes `r` the error item of `query_id` (RouteStream and RouteBatch answer a refused query so).
void SetErrorItem(const std::string& query_id, const absl::Status& s, v1::RouteBatchItem& r) {
  r.clear_assignment();
  v1::QueryError* e = r.mutable_error();
  e->set_query_id(query_id);
  e->set_code(static_cast<int32_t>(s.code()));
  e->set_message(std::string(s.message()));
}

// Decides one query inline, on the calling handler thread. OK: `out` holds the assignment.
// Otherwise the status to answer with; `*refused` is true when nothing was decided (the client
// cancelled, the deadline passed, routerd is shutting down), false when the decision itself
// refused the query (already counted by the inline metrics).
absl::Status DecideInline(RouterRuntime& rt, core::PendingQuery pending, const RuntimeState& state,
                          absl::Time deadline, bool cancelled, v1::Assignment* out,
                          bool* refused) {
  *refused = true;
  if (cancelled) return absl::CancelledError("the client cancelled the call");
  if (rt.clock().Now() >= deadline) {
    return absl::DeadlineExceededError("the deadline passed before the query was decided");
  }
  const std::string query_id = pending.query_id;
  absl::StatusOr<core::InlineDecision> decision = rt.RouteInline(std::move(pending), state);
  if (!decision.ok()) return decision.status();
  *refused = false;
  if (!decision->outcome.status.ok()) return decision->outcome.status;
  FillInlineAssignment(query_id, *decision, out);
  return absl::OkStatus();
}

// Calls f(assignment) for each assignment of a routing answer: a RouteResponse, or a
// RouteBatchResponse or RouteStreamResponse (their items).
template <typename F>
void ForEachAssignment(const v1::RouteResponse& response, F f) {
  if (response.has_assignment()) f(response.assignment());
}
template <typename Response, typename F>
void ForEachAssignment(const Response& response, F f) {
  for (const v1::RouteBatchItem& item : response.items()) {
    if (item.has_assignment()) f(item.assignment());
  }
}

// Calls f(assignment id, model) for each assignment in a staged RouteStreamResponse's wire bytes
// (StreamReactor), read back only on the rare path that releases undelivered answers (staging
// keeps nothing else of an answer). A walk rather than a parse: it checks nothing, UTF-8 included,
// so it cannot refuse bytes written here.
template <typename F>
void ForEachStagedAssignment(absl::string_view wire, F f) {
  ForEachLengthDelimited(wire, [&](int field, absl::string_view item) {
    if (field != v1::RouteStreamResponse::kItemsFieldNumber) return;
    ForEachLengthDelimited(item, [&](int item_field, absl::string_view assignment) {
      if (item_field != v1::RouteBatchItem::kAssignmentFieldNumber) return;
      absl::string_view id;
      absl::string_view model;
      ForEachLengthDelimited(assignment, [&](int assignment_field, absl::string_view value) {
        if (assignment_field == v1::Assignment::kAssignmentIdFieldNumber) id = value;
        if (assignment_field == v1::Assignment::kModelFieldNumber) model = value;
      });
      f(id, model);
    });
  });
}

// The reactor of Route and RouteBatch. It owns the call's parsed request and its answer, and
// serializes the answer into gRPC's buffer when the call finishes OK. Once the call is over, it
// releases the answer's assignments if the answer never reached the client: gRPC then reports the
// call cancelled (the client cancelled, or its deadline passed, while the answer was being sent).
// Otherwise their slots and reserved cost would stay held until the lease timeout. (A client that
// cancels after the answer left the server holds them until then anyway: the server cannot tell.)
template <typename Request, typename Response>
class UnaryCallReactor final : public grpc::ServerUnaryReactor {
 public:
  UnaryCallReactor(RouterRuntime* rt, grpc::CallbackServerContext* ctx,
                   grpc::ByteBuffer* raw_answer)
      : rt_(rt), ctx_(ctx), raw_answer_(raw_answer) {}

  Request& request() { return request_; }
  Response* response() { return &response_; }

  // The last touch of this reactor by its caller: gRPC may run OnDone before this returns.
  void FinishCall(const grpc::Status& status) {
    if (status.ok()) SerializeAnswer(response_, *raw_answer_);
    Finish(status);
  }

  void OnDone() override {
    if (ctx_->IsCancelled()) {
      ForEachAssignment(response_, [this](const v1::Assignment& a) {
        rt_->ReleaseUndelivered(a.assignment_id(), a.model());
      });
    }
    delete this;
  }

 private:
  RouterRuntime* const rt_;
  grpc::CallbackServerContext* const ctx_;
  grpc::ByteBuffer* const raw_answer_;  // gRPC's, alive until OnDone
  Request request_;
  Response response_;
};

using RouteReactor = UnaryCallReactor<v1::RouteRequest, v1::RouteResponse>;
using RouteBatchReactor = UnaryCallReactor<v1::RouteBatchRequest, v1::RouteBatchResponse>;

// ---- Route ----

class UnaryTask final : public RouteTask {
 public:
  UnaryTask(RouterRuntime* rt, grpc::CallbackServerContext* ctx, RouteReactor* reactor,
            absl::Time start)
      : rt_(rt), ctx_(ctx), reactor_(reactor), response_(reactor->response()), start_(start) {}

  void Answer(const core::BatchOutcome& batch, size_t index) override {
    const absl::Status s =
        AnswerOf(batch, index, query_id_, arrival_, response_->mutable_assignment());
    Finish(s);
  }
  void Fail(const absl::Status& status) override {
    if (rt_->metrics() != nullptr) rt_->metrics()->OnRejected(RejectReason(status));
    Finish(status);
  }
  bool Cancelled() const override { return ctx_->IsCancelled(); }

  // Decides the query inline now and answers (instead of being submitted to the scheduler).
  void DecideNow(core::PendingQuery pending, const RuntimeState& state, absl::Time deadline) {
    bool refused = false;
    const absl::Status s = DecideInline(*rt_, std::move(pending), state, deadline, Cancelled(),
                                        response_->mutable_assignment(), &refused);
    if (refused) {
      Fail(s);
    } else {
      Finish(s);
    }
  }

  void Prepare(core::PendingQuery pending, absl::Time deadline) {
    query_id_ = pending.query_id;
    query = std::move(pending);
    this->deadline = deadline;
  }
  void set_arrival(absl::Time t) { arrival_ = t; }

 private:
  void Finish(const absl::Status& s) {
    if (rt_->metrics() != nullptr) {
      rt_->metrics()->OnRequest("Route", static_cast<grpc::StatusCode>(s.code()),
                                rt_->clock().Now() - start_);
    }
    reactor_->FinishCall(ToGrpcStatus(s));  // the last touch of ctx_/reactor_/response_
  }

  RouterRuntime* const rt_;
  grpc::CallbackServerContext* const ctx_;
  RouteReactor* const reactor_;
  v1::RouteResponse* const response_;
  const absl::Time start_;
  std::string query_id_;
  absl::Time arrival_;
};

// ---- RouteStream ----

class StreamReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  StreamReactor(RouterRuntime* rt, grpc::CallbackServerContext* ctx)
      : rt_(rt), ctx_(ctx), start_(rt->clock().Now()) {
    StartRead(&raw_request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Actions a;
      {
        absl::MutexLock lock(&mu_);
        reads_done_ = true;
        a = NextActionsLocked();
      }
      Run(a);
      return;
    }
    ++messages_read_;
    if (absl::Status s = ParseRequest(raw_request_, request_); !s.ok()) {
      Refuse("", absl::InvalidArgumentError(
                     absl::StrCat("message ", messages_read_, " of the stream: ", s.message())));
    } else {
      Handle(request_.query());
    }
    StartRead(&raw_request_);
  }

  void OnWriteDone(bool ok) override {
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      if (!ok) broken_ = true;
      // A failed write and whatever was queued behind it never reach the client.
      if (broken_) {
        for (std::string& m : out_) undelivered_.push_back(std::move(m));
        out_.clear();
      } else {
        out_.pop_front();
      }
      writing_ = false;
      a = NextActionsLocked();
    }
    Run(a);
  }

  void OnCancel() override { cancelled_.store(true); }
  void OnDone() override { delete this; }

  bool cancelled() const { return cancelled_.load(); }

  // A task's error item, delivered at once. Called from the batch thread.
  void TaskFailed(const v1::RouteBatchItem& item) {
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      --outstanding_;
      a = DeliverLocked(item);
    }
    Run(a);
  }

  // A task's answer, queued without starting a write: the batch thread stages every answer of a
  // batch before any write starts, so that a stream with several queries in the batch sends them
  // as one message. The task stays outstanding (the stream cannot finish) until TaskFlushed.
  void TaskAnswered(const v1::RouteBatchItem& answer) {
    absl::MutexLock lock(&mu_);
    StageLocked(answer);
  }

  // Called once per answered task after the whole batch was staged: starts the write if none is
  // in flight (a later call for the same stream then finds it writing).
  void TaskFlushed() {
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      --outstanding_;
      a = NextActionsLocked();
    }
    Run(a);
  }

 private:
  class Task final : public RouteTask {
   public:
    Task(StreamReactor* reactor, std::string query_id, absl::Time arrival)
        : reactor_(reactor), query_id_(std::move(query_id)), arrival_(arrival) {}
    void Answer(const core::BatchOutcome& batch, size_t index) override {
      // Built in an arena on this thread's scratch block and staged as wire bytes: the answer's
      // dozen strings and sub-messages cost no allocation and are freed at once.
      google::protobuf::Arena arena(AnswerScratch().data(), AnswerScratch().size());
      auto* r = google::protobuf::Arena::CreateMessage<v1::RouteBatchItem>(&arena);
      const absl::Status s = AnswerOf(batch, index, query_id_, arrival_, r->mutable_assignment());
      if (!s.ok()) SetErrorItem(query_id_, s, *r);
      reactor_->TaskAnswered(*r);
    }
    void Flush() override { reactor_->TaskFlushed(); }
    void Fail(const absl::Status& status) override {
      if (reactor_->rt_->metrics() != nullptr) {
        reactor_->rt_->metrics()->OnRejected(RejectReason(status));
      }
      v1::RouteBatchItem r;
      SetErrorItem(query_id_, status, r);
      reactor_->TaskFailed(r);
    }
    bool Cancelled() const override { return reactor_->cancelled(); }

   private:
    StreamReactor* const reactor_;
    const std::string query_id_;
    const absl::Time arrival_;
  };

  // What to do once the lock is released: gRPC may run reactions (even OnDone, which deletes the
  // reactor) before StartWrite or Finish returns, so neither is called under mu_.
  struct Actions {
    // Messages (wire bytes) that will never be written (the stream broke): their assignments are
    // released.
    std::vector<std::string> undelivered;
    const std::string* write = nullptr;
    std::optional<grpc::Status> finish;
  };
  void Run(const Actions& a) {
    // Before StartWrite and Finish, which may end in OnDone (and delete this) before they return.
    for (const std::string& wire : a.undelivered) {
      ForEachStagedAssignment(wire, [this](absl::string_view id, absl::string_view model) {
        rt_->ReleaseUndelivered(id, model);
      });
    }
    if (a.write != nullptr) {
      // Only the one write in flight uses raw_answer_ (a.write is set only when none is).
      WireToBuffer(*a.write, raw_answer_);
      StartWrite(&raw_answer_);
    }
    if (a.finish.has_value()) Finish(*a.finish);
  }

  // Answers a query refused on arrival with its error item.
  void Refuse(const std::string& query_id, const absl::Status& status) {
    if (rt_->metrics() != nullptr) rt_->metrics()->OnRejected("invalid");
    v1::RouteBatchItem r;
    SetErrorItem(query_id, status, r);
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      a = DeliverLocked(r);
    }
    Run(a);
  }

  void Handle(const v1::Query& query) {
    const std::shared_ptr<const RuntimeState> state = rt_->state();
    absl::StatusOr<core::PendingQuery> pending = PrepareQuery(query, "query", *state);
    if (!pending.ok()) {
      Refuse(query.id(), pending.status());
      return;
    }
    const absl::Time now = rt_->clock().Now();
    const absl::Time deadline = DeadlineOf(ctx_);
    if (DecidingMode(query, *state, deadline - now) == RoutingMode::kInline) {
      // Decided and answered at once; it never counts as outstanding.
      v1::RouteBatchItem r;
      bool refused = false;
      const absl::Status s = DecideInline(*rt_, *std::move(pending), *state, deadline, cancelled(),
                                          r.mutable_assignment(), &refused);
      if (!s.ok()) {
        if (refused && rt_->metrics() != nullptr) rt_->metrics()->OnRejected(RejectReason(s));
        SetErrorItem(query.id(), s, r);
      }
      Actions a;
      {
        absl::MutexLock lock(&mu_);
        a = DeliverLocked(r);
      }
      Run(a);
      return;
    }
    auto task = std::make_unique<Task>(this, pending->query_id, now);
    task->query = *std::move(pending);
    task->deadline = deadline;
    {
      absl::MutexLock lock(&mu_);
      ++outstanding_;
    }
    TaskPtr owned = std::move(task);
    if (absl::Status s = rt_->scheduler().Submit(owned); !s.ok()) owned->Fail(s);
  }

  // Queues `answer` as wire bytes of a RouteStreamResponse item: into the last queued message if
  // that one is not being written yet, else into a new one. So a stream whose write is in flight
  // sends everything that became ready meanwhile as one message. Once the stream broke, the answer
  // is kept aside to be released.
  void StageLocked(const v1::RouteBatchItem& answer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (broken_) {
      AppendRepeatedEntry(v1::RouteStreamResponse::kItemsFieldNumber, answer,
                          undelivered_.emplace_back());
      return;
    }
    if (out_.size() <= (writing_ ? 1u : 0u)) out_.emplace_back();
    AppendRepeatedEntry(v1::RouteStreamResponse::kItemsFieldNumber, answer, out_.back());
  }

  Actions DeliverLocked(const v1::RouteBatchItem& answer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    StageLocked(answer);
    return NextActionsLocked();
  }

  // Starts the next write if none is in flight (at most one at a time); finishes the stream once
  // the client half-closed, every task answered and every answer was written.
  Actions NextActionsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Actions a;
    a.undelivered = std::move(undelivered_);
    undelivered_.clear();
    if (!writing_ && !out_.empty()) {
      writing_ = true;
      a.write = &out_.front();  // stays valid: only OnWriteDone pops, after this write completes
      return a;
    }
    if (finished_ || !reads_done_ || outstanding_ > 0 || writing_) return a;
    finished_ = true;
    a.finish = cancelled() ? grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the stream")
               : broken_   ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "the stream broke while writing")
                           : grpc::Status::OK;
    if (rt_->metrics() != nullptr) {
      rt_->metrics()->OnRequest("RouteStream", a.finish->error_code(), rt_->clock().Now() - start_);
    }
    return a;
  }

  RouterRuntime* const rt_;
  grpc::CallbackServerContext* const ctx_;
  const absl::Time start_;
  // Read by one read at a time (each OnReadDone starts the next read last).
  grpc::ByteBuffer raw_request_;
  v1::RouteStreamRequest request_;
  int64_t messages_read_ = 0;
  grpc::ByteBuffer raw_answer_;  // the message being written
  std::atomic<bool> cancelled_{false};
  absl::Mutex mu_;
  // Messages to write, as RouteStreamResponse wire bytes; the front one is being written when
  // writing_.
  std::deque<std::string> out_ ABSL_GUARDED_BY(mu_);
  // Messages that will never be written, until the next Run releases their assignments.
  std::vector<std::string> undelivered_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
};

// ---- RouteBatch ----

// Collects the answers of one caller-formed batch; finishes the RPC when the last one is in.
class BatchCall {
 public:
  BatchCall(RouterRuntime* rt, grpc::CallbackServerContext* ctx, RouteBatchReactor* reactor,
            int items, absl::Time start)
      : rt_(rt),
        ctx_(ctx),
        reactor_(reactor),
        response_(reactor->response()),
        start_(start),
        remaining_(items) {
    for (int k = 0; k < items; ++k) response_->add_items();
  }

  class Task final : public RouteTask {
   public:
    Task(std::shared_ptr<BatchCall> call, int item, std::string query_id, absl::Time arrival)
        : call_(std::move(call)), item_(item), query_id_(std::move(query_id)), arrival_(arrival) {}
    void Answer(const core::BatchOutcome& batch, size_t index) override {
      v1::RouteBatchItem result;
      const absl::Status s =
          AnswerOf(batch, index, query_id_, arrival_, result.mutable_assignment());
      if (!s.ok()) SetErrorItem(query_id_, s, result);
      call_->Done(item_, std::move(result));
    }
    void Fail(const absl::Status& status) override {
      v1::RouteBatchItem result;
      SetErrorItem(query_id_, status, result);
      call_->Done(item_, std::move(result));
    }
    bool Cancelled() const override { return call_->ctx_->IsCancelled(); }

   private:
    std::shared_ptr<BatchCall> call_;
    const int item_;
    const std::string query_id_;
    const absl::Time arrival_;
  };

  void Done(int item, v1::RouteBatchItem result) {
    bool last = false;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      *response_->mutable_items(item) = std::move(result);
      last = --remaining_ == 0;
      if (last) finished_ = true;
    }
    if (last) FinishRpc(grpc::Status::OK);
  }

  // Ends the RPC with an error instead of the items (the batch was refused as a whole).
  void FailAll(const absl::Status& s) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    FinishRpc(ToGrpcStatus(s));
  }

 private:
  void FinishRpc(const grpc::Status& status) {
    if (rt_->metrics() != nullptr) {
      rt_->metrics()->OnRequest("RouteBatch", status.error_code(), rt_->clock().Now() - start_);
    }
    reactor_->FinishCall(status);
  }

  RouterRuntime* const rt_;
  grpc::CallbackServerContext* const ctx_;
  RouteBatchReactor* const reactor_;
  v1::RouteBatchResponse* const response_;
  const absl::Time start_;
  absl::Mutex mu_;
  int remaining_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* RouterService::Route(grpc::CallbackServerContext* ctx,
                                               const grpc::ByteBuffer* raw_request,
                                               grpc::ByteBuffer* raw_response) {
  auto* reactor = new RouteReactor(runtime_, ctx, raw_response);
  runtime_->NoteArrival();
  const absl::Time start = runtime_->clock().Now();
  auto task = std::make_unique<UnaryTask>(runtime_, ctx, reactor, start);
  if (absl::Status s = ParseRequest(*raw_request, reactor->request()); !s.ok()) {
    task->Fail(s);
    return reactor;
  }
  const v1::RouteRequest* request = &reactor->request();
  const std::shared_ptr<const RuntimeState> state = runtime_->state();
  absl::StatusOr<core::PendingQuery> pending = PrepareQuery(request->query(), "query", *state);
  if (!pending.ok()) {
    task->Fail(pending.status());
    return reactor;
  }
  const absl::Time deadline = DeadlineOf(ctx);
  if (DecidingMode(request->query(), *state, deadline - start) == RoutingMode::kInline) {
    task->DecideNow(*std::move(pending), *state, deadline);
    return reactor;
  }
  task->set_arrival(start);
  task->Prepare(*std::move(pending), deadline);
  TaskPtr owned = std::move(task);
  if (absl::Status s = runtime_->scheduler().Submit(owned); !s.ok()) owned->Fail(s);
  return reactor;
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* RouterService::RouteStream(
    grpc::CallbackServerContext* ctx) {
  runtime_->NoteArrival();
  return new StreamReactor(runtime_, ctx);
}

grpc::ServerUnaryReactor* RouterService::RouteBatch(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* raw_request,
                                                    grpc::ByteBuffer* raw_response) {
  auto* reactor = new RouteBatchReactor(runtime_, ctx, raw_response);
  runtime_->NoteArrival();
  const absl::Time start = runtime_->clock().Now();
  const std::shared_ptr<const RuntimeState> state = runtime_->state();
  const absl::Status parsed = ParseRequest(*raw_request, reactor->request());
  const v1::RouteBatchRequest* request = &reactor->request();  // empty if it did not parse
  const int n = request->queries_size();
  auto call = std::make_shared<BatchCall>(runtime_, ctx, reactor, n, start);
  if (!parsed.ok()) {
    if (runtime_->metrics() != nullptr) runtime_->metrics()->OnRejected("invalid");
    call->FailAll(parsed);
    return reactor;
  }
  if (n == 0 || n > state->config.max_batch_request_queries) {
    call->FailAll(absl::InvalidArgumentError(
        absl::StrCat("queries: ", n, " queries; a batch holds 1 to ",
                     state->config.max_batch_request_queries, " (limits.max_batch_request_queries)")));
    return reactor;
  }
  absl::flat_hash_set<absl::string_view> ids;
  std::vector<TaskPtr> tasks;
  std::vector<std::pair<int, absl::Status>> invalid;
  const absl::Time deadline = DeadlineOf(ctx);
  for (int k = 0; k < n; ++k) {
    const v1::Query& q = request->queries(k);
    const std::string field = absl::StrCat("queries[", k, "]");
    absl::StatusOr<core::PendingQuery> pending =
        !q.id().empty() && !ids.insert(q.id()).second
            ? absl::StatusOr<core::PendingQuery>(absl::InvalidArgumentError(
                  absl::StrCat(field, ".id: duplicate query id '", q.id(), "'")))
            : PrepareQuery(q, field, *state);
    if (!pending.ok()) {
      invalid.emplace_back(k, pending.status());
      continue;
    }
    auto task = std::make_unique<BatchCall::Task>(call, k, q.id(), start);
    task->query = *std::move(pending);
    task->deadline = deadline;
    tasks.push_back(std::move(task));
  }
  // Invalid items are answered first; the RPC finishes when the last valid one is decided.
  for (auto& [k, status] : invalid) {
    if (runtime_->metrics() != nullptr) runtime_->metrics()->OnRejected("invalid");
    v1::RouteBatchItem item;
    SetErrorItem(request->queries(k).id(), status, item);
    call->Done(k, std::move(item));
  }
  if (tasks.empty()) return reactor;
  if (absl::Status s = runtime_->scheduler().SubmitBatch(tasks); !s.ok()) {
    call->FailAll(s);
    for (TaskPtr& t : tasks) t.reset();  // the RPC is answered; the tasks are dropped unanswered
  }
  return reactor;
}

grpc::ServerUnaryReactor* RouterService::Complete(grpc::CallbackServerContext* ctx,
                                                  const grpc::ByteBuffer* raw_request,
                                                  grpc::ByteBuffer* raw_response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  runtime_->NoteArrival();
  const absl::Time start = runtime_->clock().Now();
  v1::CompleteRequest request;
  v1::CompleteResponse response;
  absl::Status status = ParseRequest(*raw_request, request);
  if (status.ok() && request.assignment_id().empty()) {
    status = absl::InvalidArgumentError("assignment_id: required");
  }
  if (status.ok()) {
    std::optional<double> actual;
    if (request.has_actual_cost_usd()) actual = request.actual_cost_usd();
    absl::StatusOr<core::CompletionRecord> record =
        runtime_->ledger().Complete(request.assignment_id(), actual);
    if (record.ok()) {
      response.set_recorded_cost_usd(record->recorded_cost_usd);
      response.set_lease_was_active(record->lease_was_active);
      if (runtime_->metrics() != nullptr) {
        runtime_->metrics()->OnCompletion(record->predicted_cost_usd, record->recorded_cost_usd);
      }
      runtime_->PublishLedgerGauges();
      SerializeAnswer(response, *raw_response);
    }
    status = record.status();
  }
  if (runtime_->metrics() != nullptr) {
    runtime_->metrics()->OnRequest("Complete", static_cast<grpc::StatusCode>(status.code()),
                                   runtime_->clock().Now() - start);
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace router::server
