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

// Fills `out` for a routed answer (answer.status OK) of the query `query_id` that arrived at
// `arrival`: the model and its predictions, the assignment, and the decision that made it.
void FillAssignment(const QueryAnswer& answer, const std::string& query_id, absl::Time arrival,
                    v1::Assignment* out);

// Makes `item` the error item of `query_id` (RouteStream and RouteBatch answer a refused query so).
void SetErrorItem(const std::string& query_id, const absl::Status& status,
                  v1::RouteBatchItem& item);

// Makes `item` the answer of `task`: its assignment, or its error item.
void FillItem(const QueryTask& task, const QueryAnswer& answer, v1::RouteBatchItem& item);

}  // namespace router::server

#endif  // ROUTER_SERVER_QUERY_ANSWER_H_
