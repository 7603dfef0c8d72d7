#include "server/route_stream_call.h"

#include <atomic>
#include <deque>
#include <numeric>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "google/protobuf/arena.h"
#include "router/v1/router.pb.h"
#include "server/query_answer.h"
#include "server/query_intake.h"
#include "server/raw_message.h"

namespace router::server {
namespace {

// The calling thread's first arena block for building one answer: 4 KiB holds an assignment with
// its decision, fallbacks and binding constraints (an arena that needs more allocates it).
absl::Span<char> AnswerScratch() {
  alignas(8) static thread_local char block[4096];
  return absl::MakeSpan(block, sizeof(block));
}

// Calls f(assignment id, model) for each assignment in a staged RouteStreamResponse's wire bytes,
// read back only on the rare path that releases undelivered answers (staging keeps nothing else
// of an answer). A walk rather than a parse: it checks nothing, UTF-8 included, so it cannot
// refuse bytes written here.
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

class RouteStreamCall final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                              public AnswerSink {
 public:
  RouteStreamCall(RouterRuntime* rt, grpc::CallbackServerContext* ctx)
      : rt_(rt), ctx_(ctx), start_(rt->clock().Now()), trace_id_(TraceIdOf(ctx)) {
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
      Run(this, a);
      return;
    }
    ++messages_read_;
    {
      // Counted before its answer can be delivered, so that the backlog never undercounts.
      absl::MutexLock lock(&mu_);
      ++unanswered_;
    }
    if (absl::Status s = ParseRequest(raw_request_, request_); !s.ok()) {
      Refuse("", absl::InvalidArgumentError(
                     absl::StrCat("message ", messages_read_, " of the stream: ", s.message())));
    } else {
      Handle(request_.query());
    }
    // Flow control: with max_stream_backlog queries read and not yet answered on the wire, stop
    // reading until writes bring it down (OnWriteDone resumes).
    const int64_t limit = rt_->state()->config.max_stream_backlog;
    bool read = false;
    {
      absl::MutexLock lock(&mu_);
      backlog_limit_ = limit;
      read = unanswered_ < limit;
      reading_paused_ = !read;
    }
    if (read) StartRead(&raw_request_);
  }

  void OnWriteDone(bool ok) override {
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      if (!ok) broken_ = true;
      // A failed write and whatever was queued behind it never reach the client.
      if (broken_) {
        for (std::string& m : out_) undelivered_.push_back(std::move(m));
        unanswered_ -= std::accumulate(out_items_.begin(), out_items_.end(), int64_t{0});
        out_.clear();
        out_items_.clear();
      } else {
        unanswered_ -= out_items_.front();
        out_.pop_front();
        out_items_.pop_front();
      }
      writing_ = false;
      a = NextActionsLocked();
    }
    Run(this, a);
  }

  void OnCancel() override {
    cancelled_.store(true);
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      a = NextActionsLocked();  // a stream paused on its backlog reads no more
    }
    Run(this, a);
  }
  void OnDone() override {
    // gRPC runs OnDone after OnCancel returns, ordered by libgrpc++'s own atomics, which
    // ThreadSanitizer cannot see (Debian's gRPC is not built with it). Taking mu_, which OnCancel
    // takes, makes that ordering visible before the delete.
    { absl::MutexLock lock(&mu_); }
    delete this;
  }

  // A batch's answers are staged without starting a write, and released by Flush once the whole
  // batch is delivered, so that a stream with several queries in the batch sends them as one
  // message. Inline answers and refusals are written at once.
  bool Deliver(const QueryTask& task, const QueryAnswer& answer) override {
    // Built in an arena on this thread's scratch block and staged as wire bytes: the answer's
    // dozen strings and sub-messages cost no allocation and are freed at once.
    google::protobuf::Arena arena(AnswerScratch().data(), AnswerScratch().size());
    auto* item = google::protobuf::Arena::CreateMessage<v1::RouteBatchItem>(&arena);
    FillItem(task, answer, *item);
    if (answer.batch != nullptr) {
      absl::MutexLock lock(&mu_);
      StageLocked(*item);
      return true;  // the task stays outstanding until Flush
    }
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      --outstanding_;
      a = DeliverLocked(*item);
    }
    Run(this, a);  // may end in OnDone: nothing of this reactor is touched after it
    return false;
  }

  void Flush() override {
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      --outstanding_;
      a = NextActionsLocked();
    }
    Run(this, a);
  }

  bool Cancelled() const override { return cancelled_.load(); }

 private:
  // What to do once the lock is released: gRPC may run reactions (even OnDone, which deletes the
  // reactor) before StartWrite or Finish returns, so neither is called under mu_.
  struct Actions {
    // Messages (wire bytes) that will never be written (the stream broke): their assignments are
    // released.
    std::vector<std::string> undelivered;
    // Who releases them: read under mu_, since another thread may finish the stream (and OnDone
    // delete this reactor) as soon as mu_ is released.
    RouterRuntime* runtime = nullptr;
    const std::string* write = nullptr;
    bool resume_reading = false;
    std::optional<grpc::Status> finish;
  };
  // Static, and `call` is touched only for what this thread owns: unless this thread decided to
  // resume reading, write or finish, another may finish the stream (and OnDone delete it) as soon
  // as mu_ is released, and even a member call on a deleted reactor is undefined. StartWrite and
  // Finish may end in OnDone before they return, so they come last.
  static void Run(RouteStreamCall* call, const Actions& a) {
    for (const std::string& wire : a.undelivered) {
      ForEachStagedAssignment(wire,
                              [rt = a.runtime](absl::string_view id, absl::string_view model) {
                                rt->ReleaseUndelivered(id, model);
                              });
    }
    if (a.resume_reading) call->StartRead(&call->raw_request_);
    if (a.write != nullptr) {
      // Only the one write in flight uses raw_answer_ (a.write is set only when none is).
      WireToBuffer(*a.write, call->raw_answer_);
      call->StartWrite(&call->raw_answer_);
    }
    if (a.finish.has_value()) call->Finish(*a.finish);
  }

  // Answers a query refused before it became a task with its error item.
  void Refuse(const std::string& query_id, const absl::Status& status) {
    rt_->metrics().OnRejected(RejectReason(status));
    v1::RouteBatchItem item;
    SetErrorItem(query_id, status, item);
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      a = DeliverLocked(item);
    }
    Run(this, a);
  }

  void Handle(const v1::Query& query) {
    const std::shared_ptr<const RuntimeState> state = rt_->state();
    if (state->config.max_queries_per_connection > 0 && connection_.empty()) {
      connection_ = ctx_->peer();
    }
    absl::StatusOr<Intake> intake = TakeIn(
        query, "query", *state, rt_->clock().Now(), DeadlineOf(ctx_),
        [&](const v1::Query& q, RoutingMode mode) {
          return rt_->Admit(*state, q.tenant(), connection_, mode, /*check_queue=*/true);
        });
    if (!intake.ok()) {
      Refuse(query.id(), intake.status());
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      ++outstanding_;
    }
    auto task = std::make_unique<QueryTask>(this, 0, query.id(), std::move(intake->query),
                                            std::move(intake->ticket));
    task->set_trace_id(trace_id_);
    rt_->Dispatch(std::move(task), intake->mode, *state);
  }

  // Queues `item` as wire bytes of a RouteStreamResponse item: into the last queued message if
  // that one is not being written yet, else into a new one. So a stream whose write is in flight
  // sends everything that became ready meanwhile as one message. Once the stream broke, the item
  // is kept aside to be released.
  void StageLocked(const v1::RouteBatchItem& item) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (broken_) {
      AppendRepeatedEntry(v1::RouteStreamResponse::kItemsFieldNumber, item,
                          undelivered_.emplace_back());
      --unanswered_;
      return;
    }
    if (out_.size() <= (writing_ ? 1u : 0u)) {
      out_.emplace_back();
      out_items_.push_back(0);
    }
    AppendRepeatedEntry(v1::RouteStreamResponse::kItemsFieldNumber, item, out_.back());
    ++out_items_.back();
  }

  Actions DeliverLocked(const v1::RouteBatchItem& item) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    StageLocked(item);
    return NextActionsLocked();
  }

  // Starts the next write if none is in flight (at most one at a time); finishes the stream once
  // the client half-closed, every task was delivered and every answer was written.
  Actions NextActionsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Actions a;
    a.undelivered = std::move(undelivered_);
    undelivered_.clear();
    a.runtime = rt_;
    if (reading_paused_) {
      if (Cancelled() || broken_) {
        reads_done_ = true;  // nothing more will be read
        reading_paused_ = false;
      } else if (unanswered_ <= backlog_limit_ / 2) {
        reading_paused_ = false;
        a.resume_reading = true;
      }
    }
    if (!writing_ && !out_.empty()) {
      writing_ = true;
      a.write = &out_.front();  // stays valid: only OnWriteDone pops, after this write completes
      return a;
    }
    if (finished_ || !reads_done_ || outstanding_ > 0 || writing_) return a;
    finished_ = true;
    a.finish = Cancelled() ? grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the stream")
               : broken_   ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "the stream broke while writing")
                           : grpc::Status::OK;
    rt_->metrics().OnRequest("RouteStream", a.finish->error_code(), rt_->clock().Now() - start_);
    return a;
  }

  RouterRuntime* const rt_;
  grpc::CallbackServerContext* const ctx_;
  const absl::Time start_;
  const std::string trace_id_;  // of the stream's traceparent metadata, for each of its queries
  // Read by one read at a time (each OnReadDone starts the next read last).
  grpc::ByteBuffer raw_request_;
  v1::RouteStreamRequest request_;
  int64_t messages_read_ = 0;
  std::string connection_;  // the peer address, once limits.max_queries_per_connection needs it
  grpc::ByteBuffer raw_answer_;  // the message being written
  std::atomic<bool> cancelled_{false};
  absl::Mutex mu_;
  // Messages to write, as RouteStreamResponse wire bytes; the front one is being written when
  // writing_. out_items_: how many answers each holds.
  std::deque<std::string> out_ ABSL_GUARDED_BY(mu_);
  std::deque<int64_t> out_items_ ABSL_GUARDED_BY(mu_);
  // Queries read and not yet answered on the wire (or given up: the stream broke), and the
  // stream's backlog limit (limits.max_stream_backlog); reading is paused at the limit.
  int64_t unanswered_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t backlog_limit_ ABSL_GUARDED_BY(mu_) = 1;
  bool reading_paused_ ABSL_GUARDED_BY(mu_) = false;
  // Messages that will never be written, until the next Run releases their assignments.
  std::vector<std::string> undelivered_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // Tasks dispatched and not yet delivered (for a batch's answer: not yet flushed).
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* StartRouteStreamCall(
    RouterRuntime* runtime, grpc::CallbackServerContext* ctx) {
  runtime->NoteActivity();
  return new RouteStreamCall(runtime, ctx);
}

}  // namespace router::server
