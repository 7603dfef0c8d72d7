// File: routing_mode.h
//
// Which mode decides a query: batch (wait for a batch, decide it jointly) or inline (decide on
// arrival at the batch problem's prices, router_core/serving/inline_router.h). The mode comes from
// the query itself, else its tenant's mode, else the configured default (config key `routing`);
// AUTO picks inline exactly when the caller's deadline leaves no room to wait for a batch.
//
// Thread-safety: plain values and pure functions.
//
// Errors: ParseRoutingMode: INVALID_ARGUMENT for a name other than batch, inline or auto.

#ifndef ROUTER_SERVER_ROUTING_MODE_H_
#define ROUTER_SERVER_ROUTING_MODE_H_

#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace router::server {

enum class RoutingMode {
  kBatch,
  kInline,
  kAuto,  // resolved per query; never the mode that decided one
};

// "batch", "inline", "auto".
const char* RoutingModeName(RoutingMode mode);
absl::StatusOr<RoutingMode> ParseRoutingMode(absl::string_view name);

// The config's `routing` section.
struct RoutingConfig {
  // Mode of a query that names none and whose tenant has none.
  RoutingMode default_mode = RoutingMode::kBatch;
  // Per tenant (Query.tenant), exact names; ordered so the config prints deterministically.
  std::map<std::string, RoutingMode, std::less<>> tenant_modes;
};

// The mode that decides a query, kBatch or kInline:
//   mode = query_mode if given, else tenant_modes[tenant] if present, else default_mode;
//   AUTO -> kInline if time_left < batch_latency, else kBatch.
// `time_left` is the time until the caller's deadline (absl::InfiniteDuration() without one; may
// be negative once it passed). `batch_latency` is what waiting for a batch may take:
// batching.max_batch_delay + policy.time_limit (BatchLatency below).
RoutingMode ResolveRoutingMode(std::optional<RoutingMode> query_mode, absl::string_view tenant,
                               const RoutingConfig& routing, absl::Duration time_left,
                               absl::Duration batch_latency);

// The longest a query may wait for its batch and that batch's solve.
inline absl::Duration BatchLatency(absl::Duration max_batch_delay, absl::Duration time_limit) {
  return max_batch_delay + time_limit;
}

}  // namespace router::server

#endif  // ROUTER_SERVER_ROUTING_MODE_H_
