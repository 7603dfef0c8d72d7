// File: query_answer.h
//
// The proto edge of an answer: a routed QueryAnswer (query_task.h) as a router.v1.Assignment,
// whichever mode decided it, and a refused one as a QueryError item.
//
// Thread-safety: pure functions.

#ifndef ROUTER_SERVER_QUERY_ANSWER_H_
#define ROUTER_SERVER_QUERY_ANSWER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "router/v1/router.pb.h"
#include "server/query_task.h"

namespace router::server {

// Fills `out` for the routed answer (answer.status OK) of `task`: the model and its predictions,
// the assignment, the decision that made it, and the call's trace id.
void FillAssignment(const QueryTask& task, const QueryAnswer& answer, v1::Assignment* out);

// The one log line of a decided query (logging.decisions): its id, trace id, mode, and the model
// and decision, or the code and message of its refusal.
void LogDecision(const QueryTask& task, const QueryAnswer& answer);

// Makes `item` the error item of `query_id` (RouteStream and RouteBatch answer a refused query so).
void SetErrorItem(const std::string& query_id, const absl::Status& status,
                  v1::RouteBatchItem& item);

// Makes `item` the answer of `task`: its assignment, or its error item.
void FillItem(const QueryTask& task, const QueryAnswer& answer, v1::RouteBatchItem& item);

}  // namespace router::server

#endif  // ROUTER_SERVER_QUERY_ANSWER_H_
