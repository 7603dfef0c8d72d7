// File: query_task.h
//
// One query on its way through routerd, whichever RPC brought it: a QueryTask carries the query
// (core::PendingQuery, predicted at intake) to the mode that decides it, and its answer back to
// the call it came from through that call's AnswerSink. Route, RouteStream and RouteBatch differ
// only in their sinks (route_call.h, route_stream_call.h, route_batch_call.h); the runtime decides
// every task the same way (router_runtime.h).
//
// Exactly once: every task is delivered to its sink exactly once, with its routed answer or with
// why it got none; a sink answers its RPC from what it was delivered.
//
// Thread-safety: a task is used by one thread at a time (it moves from the handler to the
// scheduler thread); sinks are called from the handler or the scheduler thread and synchronize
// themselves.

#ifndef ROUTER_SERVER_QUERY_TASK_H_
#define ROUTER_SERVER_QUERY_TASK_H_

#include <cstddef>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "router_core/serving/batch_engine.h"
#include "router_core/serving/inline_router.h"
#include "router_core/serving/pool_view.h"
#include "server/admission.h"

namespace router::server {

// A query's answer: routed by a batch (`batch`, its outcome `index`) or inline (`decision`), or
// refused (`status` not OK, and no outcome, or an outcome whose own status says why).
struct QueryAnswer {
  absl::Status status;
  const core::BatchOutcome* batch = nullptr;
  size_t index = 0;
  const core::InlineDecision* decision = nullptr;

  static QueryAnswer Refused(absl::Status status) { return {std::move(status)}; }
  static QueryAnswer Batched(const core::BatchOutcome& batch, size_t index) {
    return {batch.queries[index].status, &batch, index, nullptr};
  }
  static QueryAnswer Inline(const core::InlineDecision& decision) {
    return {decision.outcome.status, nullptr, 0, &decision};
  }
};

class QueryTask;

// Where the answers of one call's queries go.
class AnswerSink {
 public:
  virtual ~AnswerSink() = default;
  // Takes `task`'s answer. Returns true when the sink holds it until Flush() (a stream sends the
  // answers a batch gives it as one message): the caller then calls Flush() once, after every
  // other answer of the batch was delivered. A sink that returns false may be gone by then (its
  // call finished).
  virtual bool Deliver(const QueryTask& task, const QueryAnswer& answer) = 0;
  virtual void Flush() {}
  // True once the call's client has gone; its queries are then not decided.
  virtual bool Cancelled() const = 0;
};

class QueryTask {
 public:
  // `sink` (not owned) outlives the task until the task's answer is delivered; `item` is the
  // query's place in its call (RouteBatch: its index in the request; otherwise 0); `ticket` is
  // held until the task is destroyed.
  QueryTask(AnswerSink* sink, size_t item, std::string query_id, core::PendingQuery query,
            AdmissionTicket ticket = {})
      : sink_(sink),
        item_(item),
        query_id_(std::move(query_id)),
        arrival_(query.arrival),
        deadline_(query.deadline),
        query_(std::move(query)),
        ticket_(std::move(ticket)) {}

  AnswerSink& sink() const { return *sink_; }
  // The W3C trace id of the call that brought the query; empty when it carried none.
  const std::string& trace_id() const { return trace_id_; }
  void set_trace_id(std::string trace_id) { trace_id_ = std::move(trace_id); }
  size_t item() const { return item_; }
  const std::string& query_id() const { return query_id_; }
  absl::Time arrival() const { return arrival_; }
  absl::Time deadline() const { return deadline_; }
  // The query to decide; a decision may move from it.
  core::PendingQuery& query() { return query_; }

 private:
  AnswerSink* const sink_;
  const size_t item_;
  const std::string query_id_;
  const absl::Time arrival_;
  const absl::Time deadline_;
  core::PendingQuery query_;
  std::string trace_id_;
  AdmissionTicket ticket_;
};

}  // namespace router::server

#endif  // ROUTER_SERVER_QUERY_TASK_H_
