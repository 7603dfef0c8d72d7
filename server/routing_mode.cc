#include "server/routing_mode.h"

#include "absl/strings/str_cat.h"

namespace router::server {

const char* RoutingModeName(RoutingMode mode) {
  switch (mode) {
    case RoutingMode::kBatch:
      return "batch";
    case RoutingMode::kInline:
      return "inline";
    case RoutingMode::kAuto:
      return "auto";
  }
  return "batch";
}

absl::StatusOr<RoutingMode> ParseRoutingMode(absl::string_view name) {
  if (name == "batch") return RoutingMode::kBatch;
  if (name == "inline") return RoutingMode::kInline;
  if (name == "auto") return RoutingMode::kAuto;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown routing mode '", name, "' (batch, inline or auto)"));
}

RoutingMode ResolveRoutingMode(std::optional<RoutingMode> query_mode, absl::string_view tenant,
                               const RoutingConfig& routing, absl::Duration time_left,
                               absl::Duration batch_latency) {
  RoutingMode mode = routing.default_mode;
  if (query_mode.has_value()) {
    mode = *query_mode;
  } else if (auto it = routing.tenant_modes.find(tenant); it != routing.tenant_modes.end()) {
    mode = it->second;
  }
  if (mode != RoutingMode::kAuto) return mode;
  return time_left < batch_latency ? RoutingMode::kInline : RoutingMode::kBatch;
}

}  // namespace router::server
