#include "server/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>
#include <type_traits>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "router_core/utf8.h"
#include "yaml-cpp/yaml.h"

namespace router::server {
namespace {

absl::Status Invalid(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// Reads one YAML mapping, remembering which keys were consumed so that unknown keys are reported.
class MapReader {
 public:
  MapReader(const YAML::Node& node, std::string path) : node_(node), path_(std::move(path)) {}

  absl::Status CheckIsMap() const {
    if (node_.IsNull() || !node_.IsDefined()) return absl::OkStatus();
    if (!node_.IsMap()) return Invalid(path_.empty() ? "config" : path_, "must be a mapping");
    return absl::OkStatus();
  }
  std::string Path(absl::string_view key) const {
    return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
  }
  // The child node, or an undefined node if absent.
  YAML::Node Get(absl::string_view key) {
    seen_.emplace(key);
    if (!node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    return node_[std::string(key)];
  }
  absl::Status CheckNoUnknownKeys() const {
    if (!node_.IsMap()) return absl::OkStatus();
    for (const auto& kv : node_) {
      const std::string key = kv.first.as<std::string>();
      if (!seen_.contains(key)) return Invalid(Path(key), "unknown key");
    }
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Read(absl::string_view key, T& out) {
    YAML::Node n = Get(key);
    if (!n.IsDefined() || n.IsNull()) return absl::OkStatus();
    if (!n.IsScalar()) return Invalid(Path(key), "must be a scalar");
    try {
      out = n.as<T>();
    } catch (const YAML::Exception&) {
      return Invalid(Path(key), absl::StrCat("cannot read '", n.Scalar(), "' as ", TypeName<T>()));
    }
    return absl::OkStatus();
  }
  absl::Status ReadMs(absl::string_view key, absl::Duration& out) {
    double ms = absl::ToDoubleMilliseconds(out);
    if (absl::Status s = Read(key, ms); !s.ok()) return s;
    if (!std::isfinite(ms)) return Invalid(Path(key), "must be finite");
    out = absl::Microseconds(std::llround(ms * 1000.0));
    return absl::OkStatus();
  }
  // A duration in seconds, finite and >= 0.
  absl::Status ReadSeconds(absl::string_view key, absl::Duration& out) {
    double s = absl::ToDoubleSeconds(out);
    if (absl::Status st = Read(key, s); !st.ok()) return st;
    if (!std::isfinite(s) || s < 0) return Invalid(Path(key), "must be a finite number >= 0");
    out = absl::Milliseconds(std::llround(s * 1000.0));
    return absl::OkStatus();
  }

 private:
  template <typename T>
  static const char* TypeName() {
    if constexpr (std::is_same_v<T, bool>) return "a boolean";
    if constexpr (std::is_integral_v<T>) return "an integer";
    if constexpr (std::is_floating_point_v<T>) return "a number";
    return "a string";
  }

  YAML::Node node_;
  std::string path_;
  std::set<std::string, std::less<>> seen_;
};

// The defaults: what ParseConfigYaml starts from. A lasting instance: a temporary makes gcc 12 -O3
// warn (maybe-uninitialized) about the destruction of its map.
const RouterConfig& Defaults() {
  static const RouterConfig* const defaults = new RouterConfig();
  return *defaults;
}

#define ROUTER_RETURN_IF_ERROR(expr)        \
  do {                                      \
    if (absl::Status _s = (expr); !_s.ok()) \
      return _s;                            \
  } while (0)

absl::Status ReadBatching(const YAML::Node& node, core::BatchQueueOptions& b) {
  MapReader r(node, "batching");
  ROUTER_RETURN_IF_ERROR(r.CheckIsMap());
  ROUTER_RETURN_IF_ERROR(r.Read("max_batch_size", b.max_batch_size));
  ROUTER_RETURN_IF_ERROR(r.ReadMs("max_batch_delay_ms", b.max_batch_delay));
  ROUTER_RETURN_IF_ERROR(r.Read("max_queued", b.max_queued));
  ROUTER_RETURN_IF_ERROR(r.ReadMs("solve_margin_ms", b.solve_margin));
  ROUTER_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  if (absl::Status s = core::ValidateBatchQueueOptions(b); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("batching.", s.message()));
  }
  return absl::OkStatus();
}

absl::Status ReadPolicy(const YAML::Node& node, core::BatchPolicy& p) {
  MapReader r(node, "policy");
  ROUTER_RETURN_IF_ERROR(r.CheckIsMap());
  std::string name(core::PolicyKindName(p.policy));
  ROUTER_RETURN_IF_ERROR(r.Read("name", name));
  absl::StatusOr<core::PolicyKind> kind = core::ParsePolicyKind(name);
  if (!kind.ok()) return Invalid("policy.name", kind.status().message());
  p.policy = *kind;
  ROUTER_RETURN_IF_ERROR(r.Read("lambda", p.params.lambda));
  ROUTER_RETURN_IF_ERROR(r.Read("tau", p.params.tau));
  ROUTER_RETURN_IF_ERROR(r.Read("gamma", p.params.gamma));
  ROUTER_RETURN_IF_ERROR(r.ReadMs("time_limit_ms", p.solve.time_limit));
  ROUTER_RETURN_IF_ERROR(r.Read("relative_gap", p.solve.relative_gap));
  ROUTER_RETURN_IF_ERROR(r.Read("small_batch_max_queries", p.solve.small_batch_max_queries));
  ROUTER_RETURN_IF_ERROR(r.Read("max_fallbacks", p.max_fallbacks));
  ROUTER_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  if (!std::isfinite(p.params.lambda) || p.params.lambda < 0) return Invalid("policy.lambda", "must be >= 0");
  if (!(p.params.tau >= 0 && p.params.tau <= 1)) return Invalid("policy.tau", "must be in [0, 1]");
  if (!std::isfinite(p.params.gamma) || p.params.gamma < 0) return Invalid("policy.gamma", "must be >= 0");
  if (absl::Status s = core::ValidateSolveOptions(p.solve); !s.ok()) {
    // The options name their fields; the config's key for the time limit is in milliseconds.
    const absl::string_view message = s.message();
    return absl::InvalidArgumentError(
        absl::StartsWith(message, "time_limit:")
            ? absl::StrCat("policy.time_limit_ms", message.substr(message.find(':')))
            : absl::StrCat("policy.", message));
  }
  if (p.max_fallbacks < 0) return Invalid("policy.max_fallbacks", "must be >= 0");
  return absl::OkStatus();
}

absl::Status ReadBudget(const YAML::Node& node, RouterConfig& c) {
  MapReader r(node, "budget");
  ROUTER_RETURN_IF_ERROR(r.CheckIsMap());
  double cap = c.policy.avg_cost_cap_usd.value_or(-1.0);
  ROUTER_RETURN_IF_ERROR(r.Read("avg_cost_cap_usd", cap));
  if (r.Get("avg_cost_cap_usd").IsDefined() && !r.Get("avg_cost_cap_usd").IsNull()) {
    if (!std::isfinite(cap) || cap < 0) return Invalid("budget.avg_cost_cap_usd", "must be a finite number >= 0");
    c.policy.avg_cost_cap_usd = cap;
  }
  double per_minute = c.ledger.spend_rate_usd_per_second * 60.0;
  ROUTER_RETURN_IF_ERROR(r.Read("spend_usd_per_minute", per_minute));
  if (!std::isfinite(per_minute) || per_minute < 0) return Invalid("budget.spend_usd_per_minute", "must be a finite number >= 0");
  c.ledger.spend_rate_usd_per_second = per_minute / 60.0;
  ROUTER_RETURN_IF_ERROR(r.Read("spend_burst_usd", c.ledger.spend_burst_usd));
  ROUTER_RETURN_IF_ERROR(r.Read("max_actual_cost_usd", c.ledger.max_actual_cost_usd));
  double lease_s = absl::ToDoubleSeconds(c.ledger.lease_timeout);
  ROUTER_RETURN_IF_ERROR(r.Read("lease_timeout_s", lease_s));
  if (!std::isfinite(lease_s) || lease_s <= 0) return Invalid("budget.lease_timeout_s", "must be > 0");
  c.ledger.lease_timeout = absl::Milliseconds(std::llround(lease_s * 1000.0));
  ROUTER_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  if (!std::isfinite(c.ledger.spend_burst_usd) || c.ledger.spend_burst_usd < 0) {
    return Invalid("budget.spend_burst_usd", "must be a finite number >= 0");
  }
  if (c.ledger.spend_rate_usd_per_second > 0 && c.ledger.spend_burst_usd <= 0) {
    return Invalid("budget.spend_burst_usd", "must be > 0 when spend_usd_per_minute is set");
  }
  if (!std::isfinite(c.ledger.max_actual_cost_usd) || c.ledger.max_actual_cost_usd <= 0) {
    return Invalid("budget.max_actual_cost_usd", "must be a finite number > 0");
  }
  return absl::OkStatus();
}

absl::Status ReadTls(const YAML::Node& node, TlsConfig& t) {
  MapReader r(node, "tls");
  ROUTER_RETURN_IF_ERROR(r.CheckIsMap());
  ROUTER_RETURN_IF_ERROR(r.Read("cert_file", t.cert_file));
  ROUTER_RETURN_IF_ERROR(r.Read("key_file", t.key_file));
  ROUTER_RETURN_IF_ERROR(r.Read("client_ca_file", t.client_ca_file));
  ROUTER_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  if (t.cert_file.empty() != t.key_file.empty()) {
    return Invalid(t.cert_file.empty() ? "tls.cert_file" : "tls.key_file",
                   "tls.cert_file and tls.key_file go together (both set = TLS, neither = none)");
  }
  if (!t.client_ca_file.empty() && t.cert_file.empty()) {
    return Invalid("tls.client_ca_file", "needs tls.cert_file and tls.key_file (client "
                                         "certificates are only asked for over TLS)");
  }
  return absl::OkStatus();
}

absl::Status ReadAdmin(const YAML::Node& node, AdminConfig& a) {
  MapReader r(node, "admin");
  ROUTER_RETURN_IF_ERROR(r.CheckIsMap());
  ROUTER_RETURN_IF_ERROR(r.Read("listen", a.listen));
  ROUTER_RETURN_IF_ERROR(r.Read("token_file", a.token_file));
  ROUTER_RETURN_IF_ERROR(r.Read("allow_unauthenticated", a.allow_unauthenticated));
  const YAML::Node ids = r.Get("allowed_identities");
  if (ids.IsDefined() && !ids.IsNull()) {
    if (!ids.IsSequence()) return Invalid("admin.allowed_identities", "must be a list of identities");
    a.allowed_identities.clear();
    for (size_t k = 0; k < ids.size(); ++k) {
      const std::string path = absl::StrCat("admin.allowed_identities[", k, "]");
      if (!ids[k].IsScalar() || ids[k].Scalar().empty()) {
        return Invalid(path, "must be a non-empty string (a certificate's CN or SAN)");
      }
      if (std::find(a.allowed_identities.begin(), a.allowed_identities.end(), ids[k].Scalar()) !=
          a.allowed_identities.end()) {
        return Invalid(path, absl::StrCat("'", ids[k].Scalar(), "' listed twice"));
      }
      a.allowed_identities.push_back(ids[k].Scalar());
    }
  }
  return r.CheckNoUnknownKeys();
}

absl::Status ReadGrpc(const YAML::Node& node, GrpcServerConfig& g) {
  MapReader r(node, "grpc");
  ROUTER_RETURN_IF_ERROR(r.CheckIsMap());
  ROUTER_RETURN_IF_ERROR(r.Read("max_concurrent_streams", g.max_concurrent_streams));
  ROUTER_RETURN_IF_ERROR(r.Read("max_receive_message_bytes", g.max_receive_message_bytes));
  ROUTER_RETURN_IF_ERROR(r.Read("max_send_message_bytes", g.max_send_message_bytes));
  ROUTER_RETURN_IF_ERROR(r.ReadMs("min_ping_interval_ms", g.min_ping_interval));
  ROUTER_RETURN_IF_ERROR(r.Read("max_ping_strikes", g.max_ping_strikes));
  ROUTER_RETURN_IF_ERROR(r.ReadSeconds("max_connection_idle_s", g.max_connection_idle));
  ROUTER_RETURN_IF_ERROR(r.ReadSeconds("max_connection_age_s", g.max_connection_age));
  ROUTER_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  // gRPC takes these as C ints (milliseconds for the durations).
  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
  for (const auto& [key, value, low] :
       {std::tuple{"grpc.max_concurrent_streams", g.max_concurrent_streams, int64_t{1}},
        std::tuple{"grpc.max_receive_message_bytes", g.max_receive_message_bytes, int64_t{1}},
        std::tuple{"grpc.max_send_message_bytes", g.max_send_message_bytes, int64_t{1}},
        std::tuple{"grpc.min_ping_interval_ms", absl::ToInt64Milliseconds(g.min_ping_interval),
                   int64_t{0}},
        std::tuple{"grpc.max_ping_strikes", g.max_ping_strikes, int64_t{0}},
        std::tuple{"grpc.max_connection_idle_s", absl::ToInt64Milliseconds(g.max_connection_idle),
                   int64_t{0}},
        std::tuple{"grpc.max_connection_age_s", absl::ToInt64Milliseconds(g.max_connection_age),
                   int64_t{0}}}) {
    if (value < low || value > kMaxInt) {
      const bool duration = !absl::EndsWith(key, "streams") && !absl::EndsWith(key, "bytes") &&
                            !absl::EndsWith(key, "strikes");
      return Invalid(key, absl::StrCat("must be in [", low, ", ", kMaxInt, "]",
                                       duration ? " milliseconds" : ""));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckSecurityKeys(const RouterConfig& c) {
  if (!c.admin.allowed_identities.empty() && c.tls.client_ca_file.empty()) {
    return Invalid("admin.allowed_identities",
                   "needs tls.client_ca_file (identities come from verified client certificates)");
  }
  if (c.admin.allow_unauthenticated &&
      (!c.admin.token_file.empty() || !c.admin.allowed_identities.empty())) {
    return Invalid("admin.allow_unauthenticated",
                   "cannot be true with admin.token_file or admin.allowed_identities");
  }
  const std::string& admin_address = c.admin.listen.empty() ? c.listen : c.admin.listen;
  if (c.admin.allow_unauthenticated && !IsLoopbackAddress(admin_address)) {
    return Invalid("admin.allow_unauthenticated",
                   absl::StrCat("RouterAdmin would be open to anyone who reaches '", admin_address,
                                "'; allowed only on a loopback address (set admin.listen to one, "
                                "or use admin.token_file)"));
  }
  // Port 0 twice is two different free ports.
  if (!c.admin.listen.empty() && c.admin.listen == c.listen && !absl::EndsWith(c.listen, ":0")) {
    return Invalid("admin.listen", "must differ from listen (empty = RouterAdmin on listen)");
  }
  return absl::OkStatus();
}

namespace {

absl::Status ReadModels(const YAML::Node& node, std::vector<ModelDeploymentConfig>& models) {
  if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
  if (!node.IsSequence()) return Invalid("models", "must be a list");
  std::set<std::string> names;
  for (size_t k = 0; k < node.size(); ++k) {
    const std::string path = absl::StrCat("models[", k, "]");
    MapReader r(node[k], path);
    if (!node[k].IsMap()) return Invalid(path, "must be a mapping");
    ModelDeploymentConfig m;
    ROUTER_RETURN_IF_ERROR(r.Read("name", m.name));
    ROUTER_RETURN_IF_ERROR(r.Read("instances", m.instances));
    ROUTER_RETURN_IF_ERROR(r.Read("slots_per_instance", m.slots_per_instance));
    ROUTER_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
    if (m.name.empty()) return Invalid(absl::StrCat(path, ".name"), "required");
    if (!names.insert(m.name).second) return Invalid(absl::StrCat(path, ".name"), absl::StrCat("duplicate model '", m.name, "'"));
    ROUTER_RETURN_IF_ERROR(ValidateDeployment(m, path));
    models.push_back(std::move(m));
  }
  return absl::OkStatus();
}

absl::Status ReadRouting(const YAML::Node& node, RoutingConfig& routing) {
  MapReader r(node, "routing");
  ROUTER_RETURN_IF_ERROR(r.CheckIsMap());
  std::string default_mode = RoutingModeName(routing.default_mode);
  ROUTER_RETURN_IF_ERROR(r.Read("default_mode", default_mode));
  absl::StatusOr<RoutingMode> mode = ParseRoutingMode(default_mode);
  if (!mode.ok()) return Invalid("routing.default_mode", mode.status().message());
  routing.default_mode = *mode;
  const YAML::Node tenants = r.Get("tenant_modes");
  if (tenants.IsDefined() && !tenants.IsNull()) {
    if (!tenants.IsMap()) return Invalid("routing.tenant_modes", "must be a mapping of tenant to mode");
    // One pass over the entries: looking each tenant up by name again would cost O(n) per
    // tenant (yaml-cpp maps are lists), O(n^2) for the section.
    for (const auto& kv : tenants) {
      const std::string tenant = kv.first.as<std::string>();
      if (tenant.empty()) return Invalid("routing.tenant_modes", "a tenant name must not be empty");
      const std::string path = absl::StrCat("routing.tenant_modes.", tenant);
      if (!kv.second.IsScalar()) return Invalid(path, "must be a scalar");
      absl::StatusOr<RoutingMode> tenant_mode = ParseRoutingMode(kv.second.Scalar());
      if (!tenant_mode.ok()) return Invalid(path, tenant_mode.status().message());
      if (!routing.tenant_modes.emplace(tenant, *tenant_mode).second) {
        return Invalid(path, "listed twice");
      }
    }
  }
  ROUTER_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  return absl::OkStatus();
}

absl::Status ReadInline(const YAML::Node& node, core::InlineOptions& o) {
  MapReader r(node, "inline");
  ROUTER_RETURN_IF_ERROR(r.CheckIsMap());
  ROUTER_RETURN_IF_ERROR(r.Read("window_arrivals", o.window_arrivals));
  // Absent or null: windows close by count only.
  const YAML::Node duration = r.Get("window_duration_ms");
  if (duration.IsDefined() && !duration.IsNull()) {
    absl::Duration d = absl::ZeroDuration();
    ROUTER_RETURN_IF_ERROR(r.ReadMs("window_duration_ms", d));
    if (d <= absl::ZeroDuration()) {
      return Invalid("inline.window_duration_ms", "must be > 0 (absent = windows close by count only)");
    }
    o.window_duration = d;
  }
  ROUTER_RETURN_IF_ERROR(r.Read("forecast_horizon", o.forecast_horizon));
  ROUTER_RETURN_IF_ERROR(r.Read("slot_price_rounds", o.slot_price_rounds));
  ROUTER_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  if (o.window_arrivals < 1) return Invalid("inline.window_arrivals", "must be >= 1");
  if (o.forecast_horizon < 1 || o.forecast_horizon > 10000) {
    return Invalid("inline.forecast_horizon", "must be in [1, 10000]");
  }
  if (o.slot_price_rounds < 0 || o.slot_price_rounds > 20) {
    return Invalid("inline.slot_price_rounds", "must be in [0, 20]");
  }
  // The router's own check, for any rule added there later.
  if (absl::Status s = core::ValidateInlineOptions(o); !s.ok()) {
    return s;  // its messages already name the field (inline.<option>)
  }
  return absl::OkStatus();
}

// A list of non-empty strings without duplicates at `path`; absent or null keeps `out`.
absl::Status ReadStringList(const YAML::Node& node, const std::string& path,
                            std::vector<std::string>& out) {
  if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
  if (!node.IsSequence()) return Invalid(path, "must be a list of strings");
  std::vector<std::string> values;
  for (size_t k = 0; k < node.size(); ++k) {
    const std::string item = absl::StrCat(path, "[", k, "]");
    if (!node[k].IsScalar()) return Invalid(item, "must be a string");
    std::string value = node[k].as<std::string>();
    if (value.empty()) return Invalid(item, "must not be empty");
    if (std::find(values.begin(), values.end(), value) != values.end()) {
      return Invalid(item, absl::StrCat("'", value, "' listed twice"));
    }
    values.push_back(std::move(value));
  }
  out = std::move(values);
  return absl::OkStatus();
}

// A header routerd reads: empty (none) or a lower-case HTTP field name.
absl::Status CheckHeaderToRead(const std::string& name, absl::string_view path) {
  if (name.empty()) return absl::OkStatus();
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
    if (!ok) {
      return Invalid(path, absl::StrCat("'", name, "' is not a lower-case HTTP header name "
                                        "(letters a-z, digits and !#$%&'*+-.^_`|~)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadGateway(const YAML::Node& node, GatewayConfig& g) {
  MapReader r(node, "gateway");
  ROUTER_RETURN_IF_ERROR(r.CheckIsMap());
  ROUTER_RETURN_IF_ERROR(r.Read("listen", g.listen));
  ROUTER_RETURN_IF_ERROR(r.Read("model_header", g.options.model_header));
  ROUTER_RETURN_IF_ERROR(r.Read("route_all", g.route_all));
  ROUTER_RETURN_IF_ERROR(r.Read("tenant_header", g.tenant_header));
  ROUTER_RETURN_IF_ERROR(r.Read("skip_header", g.skip_header));
  ROUTER_RETURN_IF_ERROR(ReadStringList(r.Get("models"), "gateway.models", g.models));
  ROUTER_RETURN_IF_ERROR(r.ReadMs("decision_timeout_ms", g.decision_timeout));
  double retry_after_s = absl::ToDoubleSeconds(g.retry_after);
  ROUTER_RETURN_IF_ERROR(r.Read("retry_after_s", retry_after_s));
  ROUTER_RETURN_IF_ERROR(r.Read("ensure_stream_usage", g.ensure_stream_usage));
  ROUTER_RETURN_IF_ERROR(r.Read("remove_accept_encoding", g.remove_accept_encoding));
  MapReader request(r.Get("request"), "gateway.request");
  ROUTER_RETURN_IF_ERROR(request.CheckIsMap());
  ROUTER_RETURN_IF_ERROR(request.Read("max_body_bytes", g.options.request.max_body_bytes));
  ROUTER_RETURN_IF_ERROR(ReadStringList(request.Get("routing_aliases"),
                                        "gateway.request.routing_aliases",
                                        g.options.request.routing_aliases));
  ROUTER_RETURN_IF_ERROR(request.CheckNoUnknownKeys());
  MapReader usage(r.Get("usage"), "gateway.usage");
  ROUTER_RETURN_IF_ERROR(usage.CheckIsMap());
  ROUTER_RETURN_IF_ERROR(usage.Read("max_json_body_bytes", g.options.usage.max_json_body_bytes));
  ROUTER_RETURN_IF_ERROR(usage.Read("max_sse_event_bytes", g.options.usage.max_sse_event_bytes));
  ROUTER_RETURN_IF_ERROR(usage.CheckNoUnknownKeys());
  ROUTER_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  // The options name their fields as the keys under gateway: do (request.max_body_bytes, ...).
  if (absl::Status s = gateway::ValidateGatewayOptions(g.options); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("gateway.", s.message()));
  }
  if (g.options.request.max_body_bytes > kMaxGatewayBodyBytes) {
    return Invalid("gateway.request.max_body_bytes",
                   absl::StrCat("must be at most ", kMaxGatewayBodyBytes,
                                " (a body is one gRPC message; routerd takes messages up to 64 MiB)"));
  }
  ROUTER_RETURN_IF_ERROR(CheckHeaderToRead(g.tenant_header, "gateway.tenant_header"));
  ROUTER_RETURN_IF_ERROR(CheckHeaderToRead(g.skip_header, "gateway.skip_header"));
  if (g.decision_timeout <= absl::ZeroDuration() || g.decision_timeout > absl::Seconds(60)) {
    return Invalid("gateway.decision_timeout_ms", "must be in (0, 60000]");
  }
  if (!std::isfinite(retry_after_s) || retry_after_s < 0 || retry_after_s > 86400) {
    return Invalid("gateway.retry_after_s", "must be in [0, 86400]");
  }
  g.retry_after = absl::Milliseconds(std::llround(retry_after_s * 1000.0));
  return absl::OkStatus();
}

absl::Status ReadLedger(const YAML::Node& node, LedgerBackendConfig& l) {
  MapReader r(node, "ledger");
  ROUTER_RETURN_IF_ERROR(r.CheckIsMap());
  std::string backend = l.redis ? "redis" : "local";
  ROUTER_RETURN_IF_ERROR(r.Read("backend", backend));
  if (backend != "local" && backend != "redis") {
    return Invalid("ledger.backend", absl::StrCat("expected local or redis, got '", backend, "'"));
  }
  l.redis = backend == "redis";
  ROUTER_RETURN_IF_ERROR(r.Read("health_requires_ledger", l.health_requires_ledger));
  const YAML::Node redis = r.Get("redis");
  if (redis.IsDefined() && !redis.IsNull()) {
    if (!l.redis) return Invalid("ledger.redis", "only with backend: redis");
    MapReader rr(redis, "ledger.redis");
    ROUTER_RETURN_IF_ERROR(rr.CheckIsMap());
    RedisLedgerOptions& o = l.redis_options;
    ROUTER_RETURN_IF_ERROR(rr.Read("address", o.address));
    ROUTER_RETURN_IF_ERROR(rr.Read("domain", o.domain));
    ROUTER_RETURN_IF_ERROR(rr.Read("password_file", l.password_file));
    ROUTER_RETURN_IF_ERROR(rr.ReadMs("connect_timeout_ms", o.connect_timeout));
    ROUTER_RETURN_IF_ERROR(rr.ReadMs("call_timeout_ms", o.call_timeout));
    ROUTER_RETURN_IF_ERROR(rr.ReadMs("retry_after_ms", o.retry_after));
    ROUTER_RETURN_IF_ERROR(rr.Read("max_connections", o.max_connections));
    ROUTER_RETURN_IF_ERROR(rr.ReadMs("recent_snapshot_ms", o.recent_snapshot_for));
    ROUTER_RETURN_IF_ERROR(rr.ReadMs("refresh_snapshot_ms", o.refresh_snapshot_for));
    const YAML::Node escrow = rr.Get("escrow");
    if (escrow.IsDefined() && !escrow.IsNull()) {
      MapReader er(escrow, "ledger.redis.escrow");
      ROUTER_RETURN_IF_ERROR(er.CheckIsMap());
      RedisLedgerOptions::Escrow& e = o.escrow;
      ROUTER_RETURN_IF_ERROR(er.Read("spend_usd", e.spend_usd));
      ROUTER_RETURN_IF_ERROR(er.Read("slots", e.slots));
      ROUTER_RETURN_IF_ERROR(er.ReadMs("validity_ms", e.validity));
      ROUTER_RETURN_IF_ERROR(er.ReadMs("renew_every_ms", e.renew_every));
      ROUTER_RETURN_IF_ERROR(er.ReadMs("skew_margin_ms", e.skew_margin));
      ROUTER_RETURN_IF_ERROR(er.CheckNoUnknownKeys());
    }
    ROUTER_RETURN_IF_ERROR(rr.CheckNoUnknownKeys());
  }
  if (l.health_requires_ledger && !l.redis) {
    return Invalid("ledger.health_requires_ledger", "only with backend: redis");
  }
  ROUTER_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  if (absl::Status s = ValidateRedisLedgerOptions(l.redis_options); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("ledger.", s.message()));
  }
  return absl::OkStatus();
}

absl::Status ReadLearning(const YAML::Node& node, bool redis_backend, LearningConfig& l) {
  MapReader r(node, "learning");
  ROUTER_RETURN_IF_ERROR(r.CheckIsMap());
  ROUTER_RETURN_IF_ERROR(r.Read("enabled", l.enabled));
  ROUTER_RETURN_IF_ERROR(r.Read("snapshot_file", l.snapshot_file));
  double interval_s = absl::ToDoubleSeconds(l.snapshot_interval);
  ROUTER_RETURN_IF_ERROR(r.Read("snapshot_interval_s", interval_s));
  if (!(interval_s >= 1 && interval_s <= 86400)) {
    return Invalid("learning.snapshot_interval_s", "must be in [1, 86400]");
  }
  l.snapshot_interval = absl::Milliseconds(std::llround(interval_s * 1000.0));
  core::OutcomeLearnerOptions& o = l.options;
  ROUTER_RETURN_IF_ERROR(r.Read("half_life_outcomes", o.half_life_outcomes));
  ROUTER_RETURN_IF_ERROR(r.Read("prior_strength", o.prior_strength));
  ROUTER_RETURN_IF_ERROR(r.Read("cold_start_quality", o.cold_start_quality));
  ROUTER_RETURN_IF_ERROR(r.Read("cold_start_strength", o.cold_start_strength));
  ROUTER_RETURN_IF_ERROR(r.Read("lower_quantile", o.lower_quantile));
  ROUTER_RETURN_IF_ERROR(r.Read("exploration", o.exploration));
  ROUTER_RETURN_IF_ERROR(r.Read("max_cells", o.max_cells));
  ROUTER_RETURN_IF_ERROR(r.Read("shared", l.shared));
  if (l.shared && r.Get("shared").IsDefined() && !r.Get("shared").IsNull() && !redis_backend) {
    return Invalid("learning.shared", "true only with ledger.backend: redis");
  }
  if (!redis_backend) l.shared = false;
  ROUTER_RETURN_IF_ERROR(r.ReadMs("shared_poll_interval_ms", l.shared_poll_interval));
  if (l.shared_poll_interval < absl::Milliseconds(10) ||
      l.shared_poll_interval > absl::Seconds(60)) {
    return Invalid("learning.shared_poll_interval_ms", "must be in [10, 60000]");
  }
  ROUTER_RETURN_IF_ERROR(r.Read("shared_queue_max", l.shared_queue_max));
  if (l.shared_queue_max < 1 || l.shared_queue_max > 10000000) {
    return Invalid("learning.shared_queue_max", "must be in [1, 10000000]");
  }
  ROUTER_RETURN_IF_ERROR(r.Read("shared_stream_max_entries", l.shared_stream_max_entries));
  if (l.shared_stream_max_entries < 100 || l.shared_stream_max_entries > 100000000) {
    return Invalid("learning.shared_stream_max_entries", "must be in [100, 100000000]");
  }
  ROUTER_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  // The learner's own checks name the option as its key under learning:.
  if (absl::Status s = core::ValidateOutcomeLearnerOptions(o); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("learning.", s.message()));
  }
  return absl::OkStatus();
}

void Emit(YAML::Emitter& out, absl::string_view key, absl::Duration d) {
  out << YAML::Key << std::string(key) << YAML::Value << absl::ToDoubleMilliseconds(d);
}

}  // namespace

absl::StatusOr<RouterConfig> ParseConfigYaml(absl::string_view yaml) {
  return ParseConfigUpdateYaml(yaml, Defaults());
}

absl::Status ValidateDeployment(const ModelDeploymentConfig& m, absl::string_view path) {
  if (m.instances < 0) return Invalid(absl::StrCat(path, ".instances"), "must be >= 0");
  if (m.slots_per_instance < 0) {
    return Invalid(absl::StrCat(path, ".slots_per_instance"), "must be >= 0");
  }
  if (m.self_hosted() && (m.instances == 0 || m.slots_per_instance == 0)) {
    return Invalid(path, "instances and slots_per_instance must both be > 0 for a self-hosted "
                         "model (both absent or 0 = API model)");
  }
  int64_t slots = 0;
  if (__builtin_mul_overflow(m.instances, m.slots_per_instance, &slots) || slots > kMaxModelSlots) {
    return Invalid(path, absl::StrCat("instances x slots_per_instance is above ", kMaxModelSlots,
                                      " slots"));
  }
  return absl::OkStatus();
}

absl::StatusOr<RouterConfig> ParseConfigUpdateYaml(absl::string_view yaml,
                                                   const RouterConfig& current) {
  if (yaml.size() > kMaxConfigBytes) {
    return Invalid("config", absl::StrCat(yaml.size(), " bytes is over the limit of ",
                                          kMaxConfigBytes, " bytes"));
  }
  // Every string of the config can leave as a protobuf string (model names in answers, the whole
  // text in RouterAdmin.GetConfig), which clients refuse to parse unless it is UTF-8; YAML requires
  // UTF-8 too, but yaml-cpp passes other bytes through.
  if (const std::optional<size_t> bad = core::InvalidUtf8Offset(yaml)) {
    const absl::string_view before = yaml.substr(0, *bad);
    const size_t line_start = before.rfind('\n');
    const size_t column = line_start == absl::string_view::npos ? *bad : *bad - line_start - 1;
    return absl::InvalidArgumentError(absl::StrCat(
        "config: not valid UTF-8 at line ", std::count(before.begin(), before.end(), '\n') + 1,
        ", column ", column + 1, " (byte ", *bad, ")"));
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: YAML syntax error at line ", e.mark.line + 1,
                                                   ", column ", e.mark.column + 1, ": ", e.msg));
  }
  RouterConfig c;
  CopyStartupKeys(current, c);
  try {
    MapReader r(root, "");
    ROUTER_RETURN_IF_ERROR(r.CheckIsMap());
    ROUTER_RETURN_IF_ERROR(r.Read("listen", c.listen));
    ROUTER_RETURN_IF_ERROR(r.Read("metrics_listen", c.metrics_listen));
    ROUTER_RETURN_IF_ERROR(r.Read("estimator", c.estimator));
    ROUTER_RETURN_IF_ERROR(r.Read("reflection", c.reflection));
    ROUTER_RETURN_IF_ERROR(r.ReadSeconds("credentials_reload_s", c.credentials_reload));
    ROUTER_RETURN_IF_ERROR(ReadTls(r.Get("tls"), c.tls));
    ROUTER_RETURN_IF_ERROR(ReadAdmin(r.Get("admin"), c.admin));
    MapReader api(r.Get("api"), "api");
    ROUTER_RETURN_IF_ERROR(api.CheckIsMap());
    ROUTER_RETURN_IF_ERROR(api.Read("token_file", c.api_token_file));
    ROUTER_RETURN_IF_ERROR(api.CheckNoUnknownKeys());
    ROUTER_RETURN_IF_ERROR(ReadGrpc(r.Get("grpc"), c.grpc));
    if (const YAML::Node ledger = r.Get("ledger"); ledger.IsDefined() || &current == &Defaults()) {
      c.ledger_backend = LedgerBackendConfig{};
      ROUTER_RETURN_IF_ERROR(ReadLedger(ledger, c.ledger_backend));
    }
    ROUTER_RETURN_IF_ERROR(ReadBatching(r.Get("batching"), c.batching));
    ROUTER_RETURN_IF_ERROR(ReadPolicy(r.Get("policy"), c.policy));
    ROUTER_RETURN_IF_ERROR(ReadBudget(r.Get("budget"), c));
    ROUTER_RETURN_IF_ERROR(ReadRouting(r.Get("routing"), c.routing));
    ROUTER_RETURN_IF_ERROR(ReadInline(r.Get("inline"), c.inline_options));
    MapReader logging(r.Get("logging"), "logging");
    ROUTER_RETURN_IF_ERROR(logging.CheckIsMap());
    std::string log_format = LogFormatName(c.log_format);
    ROUTER_RETURN_IF_ERROR(logging.Read("format", log_format));
    absl::StatusOr<LogFormat> format = ParseLogFormat(log_format);
    if (!format.ok()) return Invalid("logging.format", format.status().message());
    c.log_format = *format;
    ROUTER_RETURN_IF_ERROR(logging.Read("decisions", c.log_decisions));
    ROUTER_RETURN_IF_ERROR(logging.CheckNoUnknownKeys());
    MapReader limits(r.Get("limits"), "limits");
    ROUTER_RETURN_IF_ERROR(limits.CheckIsMap());
    ROUTER_RETURN_IF_ERROR(limits.Read("max_text_bytes", c.max_text_bytes));
    ROUTER_RETURN_IF_ERROR(limits.Read("max_batch_request_queries", c.max_batch_request_queries));
    ROUTER_RETURN_IF_ERROR(limits.Read("max_stream_backlog", c.max_stream_backlog));
    ROUTER_RETURN_IF_ERROR(limits.Read("max_queued_per_tenant", c.max_queued_per_tenant));
    ROUTER_RETURN_IF_ERROR(limits.Read("max_queries_per_connection", c.max_queries_per_connection));
    ROUTER_RETURN_IF_ERROR(limits.CheckNoUnknownKeys());
    double grace_s = absl::ToDoubleSeconds(c.shutdown_grace);
    double drain_s = absl::ToDoubleSeconds(c.shutdown_drain);
    MapReader shutdown(r.Get("shutdown"), "shutdown");
    ROUTER_RETURN_IF_ERROR(shutdown.CheckIsMap());
    ROUTER_RETURN_IF_ERROR(shutdown.Read("grace_s", grace_s));
    ROUTER_RETURN_IF_ERROR(shutdown.Read("drain_s", drain_s));
    ROUTER_RETURN_IF_ERROR(shutdown.CheckNoUnknownKeys());
    if (!std::isfinite(grace_s) || grace_s < 0) return Invalid("shutdown.grace_s", "must be >= 0");
    c.shutdown_grace = absl::Milliseconds(std::llround(grace_s * 1000.0));
    if (!std::isfinite(drain_s) || drain_s < 0) return Invalid("shutdown.drain_s", "must be >= 0");
    c.shutdown_drain = absl::Milliseconds(std::llround(drain_s * 1000.0));
    ROUTER_RETURN_IF_ERROR(ReadModels(r.Get("models"), c.models));
    ROUTER_RETURN_IF_ERROR(ReadGateway(r.Get("gateway"), c.gateway));
    ROUTER_RETURN_IF_ERROR(ReadLearning(r.Get("learning"), c.ledger_backend.redis, c.learning));
    ROUTER_RETURN_IF_ERROR(r.CheckNoUnknownKeys());
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", e.what()));
  }
  if (c.listen.empty()) return Invalid("listen", "required");
  if (c.max_text_bytes < 1) return Invalid("limits.max_text_bytes", "must be >= 1");
  if (c.max_batch_request_queries < 1) return Invalid("limits.max_batch_request_queries", "must be >= 1");
  if (c.max_stream_backlog < 1) return Invalid("limits.max_stream_backlog", "must be >= 1");
  if (c.max_queued_per_tenant < 0) {
    return Invalid("limits.max_queued_per_tenant", "must be >= 0 (0 = no bound)");
  }
  if (c.max_queries_per_connection < 0) {
    return Invalid("limits.max_queries_per_connection", "must be >= 0 (0 = no bound)");
  }
  ROUTER_RETURN_IF_ERROR(CheckSecurityKeys(c));
  const int64_t message_bytes =
      std::min(c.grpc.max_receive_message_bytes, c.grpc.max_send_message_bytes);
  if (c.gateway.options.request.max_body_bytes > message_bytes - kGatewayMessageOverheadBytes) {
    return Invalid("gateway.request.max_body_bytes",
                   absl::StrCat("must be at most ", message_bytes - kGatewayMessageOverheadBytes,
                                " (a body is one gRPC message each way: the smaller of "
                                "grpc.max_receive_message_bytes and grpc.max_send_message_bytes, "
                                "less ", kGatewayMessageOverheadBytes, ")"));
  }
  return c;
}

absl::StatusOr<RouterConfig> LoadConfigFile(const std::string& path, const RouterConfig* current) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("config file '", path, "' cannot be read"));
  // At most one byte over the limit is read, so that a file without end (/dev/zero) is refused
  // instead of read forever.
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": config: over the limit of ",
                                                   kMaxConfigBytes, " bytes"));
  }
  // An empty file is what an editor leaves mid-save; read as "every default" it would remove the
  // budget cap and every slot limit.
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": config: the file is empty; nothing applied"));
  }
  absl::StatusOr<RouterConfig> c = current == nullptr ? ParseConfigYaml(text)
                                                      : ParseConfigUpdateYaml(text, *current);
  if (!c.ok()) return absl::Status(c.status().code(), absl::StrCat(path, ": ", c.status().message()));
  return c;
}

std::vector<std::string> RemovedLimits(const RouterConfig& before, const RouterConfig& after) {
  std::vector<std::string> removed;
  if (before.policy.avg_cost_cap_usd.has_value() && !after.policy.avg_cost_cap_usd.has_value()) {
    removed.push_back(absl::StrCat("budget.avg_cost_cap_usd (was ",
                                   *before.policy.avg_cost_cap_usd, " USD per query)"));
  }
  if (before.ledger.spend_rate_usd_per_second > 0 && after.ledger.spend_rate_usd_per_second <= 0) {
    removed.push_back(absl::StrCat("budget.spend_usd_per_minute (was ",
                                   before.ledger.spend_rate_usd_per_second * 60.0, ")"));
  }
  for (const ModelDeploymentConfig& m : before.models) {
    if (!m.self_hosted()) continue;
    auto it = std::find_if(after.models.begin(), after.models.end(),
                           [&](const ModelDeploymentConfig& n) { return n.name == m.name; });
    const int64_t slots = m.instances * m.slots_per_instance;
    if (it == after.models.end()) {
      if (!after.models.empty()) continue;  // the model left the pool: it routes nothing
      removed.push_back(absl::StrCat("the slot limit of ", m.name, " (was ", slots,
                                     "; with no models listed, every model is an API model)"));
    } else if (!it->self_hosted()) {
      removed.push_back(absl::StrCat("the slot limit of ", m.name, " (was ", slots, ")"));
    }
  }
  return removed;
}

std::string ConfigToYaml(const RouterConfig& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "listen" << YAML::Value << c.listen;
  out << YAML::Key << "metrics_listen" << YAML::Value << c.metrics_listen;
  out << YAML::Key << "estimator" << YAML::Value << c.estimator;
  out << YAML::Key << "reflection" << YAML::Value << c.reflection;
  out << YAML::Key << "credentials_reload_s" << YAML::Value
      << absl::ToDoubleSeconds(c.credentials_reload);
  out << YAML::Key << "tls" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "cert_file" << YAML::Value << c.tls.cert_file;
  out << YAML::Key << "key_file" << YAML::Value << c.tls.key_file;
  out << YAML::Key << "client_ca_file" << YAML::Value << c.tls.client_ca_file;
  out << YAML::EndMap;
  out << YAML::Key << "admin" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "listen" << YAML::Value << c.admin.listen;
  out << YAML::Key << "token_file" << YAML::Value << c.admin.token_file;
  out << YAML::Key << "allowed_identities" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const std::string& id : c.admin.allowed_identities) out << id;
  out << YAML::EndSeq;
  out << YAML::Key << "allow_unauthenticated" << YAML::Value << c.admin.allow_unauthenticated;
  out << YAML::EndMap;
  out << YAML::Key << "api" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "token_file" << YAML::Value << c.api_token_file;
  out << YAML::EndMap;
  out << YAML::Key << "grpc" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "max_concurrent_streams" << YAML::Value << c.grpc.max_concurrent_streams;
  out << YAML::Key << "max_receive_message_bytes" << YAML::Value
      << c.grpc.max_receive_message_bytes;
  out << YAML::Key << "max_send_message_bytes" << YAML::Value << c.grpc.max_send_message_bytes;
  Emit(out, "min_ping_interval_ms", c.grpc.min_ping_interval);
  out << YAML::Key << "max_ping_strikes" << YAML::Value << c.grpc.max_ping_strikes;
  out << YAML::Key << "max_connection_idle_s" << YAML::Value
      << absl::ToDoubleSeconds(c.grpc.max_connection_idle);
  out << YAML::Key << "max_connection_age_s" << YAML::Value
      << absl::ToDoubleSeconds(c.grpc.max_connection_age);
  out << YAML::EndMap;
  out << YAML::Key << "ledger" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "backend" << YAML::Value << (c.ledger_backend.redis ? "redis" : "local");
  if (c.ledger_backend.redis) {
    const RedisLedgerOptions& o = c.ledger_backend.redis_options;
    out << YAML::Key << "health_requires_ledger" << YAML::Value
        << c.ledger_backend.health_requires_ledger;
    out << YAML::Key << "redis" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "address" << YAML::Value << o.address;
    out << YAML::Key << "domain" << YAML::Value << o.domain;
    out << YAML::Key << "password_file" << YAML::Value << c.ledger_backend.password_file;
    Emit(out, "connect_timeout_ms", o.connect_timeout);
    Emit(out, "call_timeout_ms", o.call_timeout);
    Emit(out, "retry_after_ms", o.retry_after);
    out << YAML::Key << "max_connections" << YAML::Value << o.max_connections;
    Emit(out, "recent_snapshot_ms", o.recent_snapshot_for);
    Emit(out, "refresh_snapshot_ms", o.refresh_snapshot_for);
    out << YAML::Key << "escrow" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "spend_usd" << YAML::Value << o.escrow.spend_usd;
    out << YAML::Key << "slots" << YAML::Value << o.escrow.slots;
    Emit(out, "validity_ms", o.escrow.validity);
    Emit(out, "renew_every_ms", o.escrow.renew_every);
    Emit(out, "skew_margin_ms", o.escrow.skew_margin);
    out << YAML::EndMap;
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  out << YAML::Key << "batching" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "max_batch_size" << YAML::Value << c.batching.max_batch_size;
  Emit(out, "max_batch_delay_ms", c.batching.max_batch_delay);
  out << YAML::Key << "max_queued" << YAML::Value << c.batching.max_queued;
  Emit(out, "solve_margin_ms", c.batching.solve_margin);
  out << YAML::EndMap;
  out << YAML::Key << "policy" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << std::string(core::PolicyKindName(c.policy.policy));
  out << YAML::Key << "lambda" << YAML::Value << c.policy.params.lambda;
  out << YAML::Key << "tau" << YAML::Value << c.policy.params.tau;
  out << YAML::Key << "gamma" << YAML::Value << c.policy.params.gamma;
  Emit(out, "time_limit_ms", c.policy.solve.time_limit);
  out << YAML::Key << "relative_gap" << YAML::Value << c.policy.solve.relative_gap;
  out << YAML::Key << "small_batch_max_queries" << YAML::Value
      << c.policy.solve.small_batch_max_queries;
  out << YAML::Key << "max_fallbacks" << YAML::Value << c.policy.max_fallbacks;
  out << YAML::EndMap;
  out << YAML::Key << "budget" << YAML::Value << YAML::BeginMap;
  if (c.policy.avg_cost_cap_usd.has_value()) {
    out << YAML::Key << "avg_cost_cap_usd" << YAML::Value << *c.policy.avg_cost_cap_usd;
  }
  out << YAML::Key << "spend_usd_per_minute" << YAML::Value << c.ledger.spend_rate_usd_per_second * 60.0;
  out << YAML::Key << "spend_burst_usd" << YAML::Value << c.ledger.spend_burst_usd;
  out << YAML::Key << "max_actual_cost_usd" << YAML::Value << c.ledger.max_actual_cost_usd;
  out << YAML::Key << "lease_timeout_s" << YAML::Value << absl::ToDoubleSeconds(c.ledger.lease_timeout);
  out << YAML::EndMap;
  out << YAML::Key << "routing" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "default_mode" << YAML::Value << RoutingModeName(c.routing.default_mode);
  out << YAML::Key << "tenant_modes" << YAML::Value << YAML::BeginMap;
  for (const auto& [tenant, mode] : c.routing.tenant_modes) {
    out << YAML::Key << tenant << YAML::Value << RoutingModeName(mode);
  }
  out << YAML::EndMap;
  out << YAML::EndMap;
  out << YAML::Key << "inline" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "window_arrivals" << YAML::Value << c.inline_options.window_arrivals;
  if (c.inline_options.window_duration != absl::InfiniteDuration()) {
    Emit(out, "window_duration_ms", c.inline_options.window_duration);
  }
  out << YAML::Key << "forecast_horizon" << YAML::Value << c.inline_options.forecast_horizon;
  out << YAML::Key << "slot_price_rounds" << YAML::Value << c.inline_options.slot_price_rounds;
  out << YAML::EndMap;
  out << YAML::Key << "limits" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "max_text_bytes" << YAML::Value << c.max_text_bytes;
  out << YAML::Key << "max_batch_request_queries" << YAML::Value << c.max_batch_request_queries;
  out << YAML::Key << "max_stream_backlog" << YAML::Value << c.max_stream_backlog;
  out << YAML::Key << "max_queued_per_tenant" << YAML::Value << c.max_queued_per_tenant;
  out << YAML::Key << "max_queries_per_connection" << YAML::Value << c.max_queries_per_connection;
  out << YAML::EndMap;
  out << YAML::Key << "logging" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "format" << YAML::Value << LogFormatName(c.log_format);
  out << YAML::Key << "decisions" << YAML::Value << c.log_decisions;
  out << YAML::EndMap;
  out << YAML::Key << "shutdown" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "grace_s" << YAML::Value << absl::ToDoubleSeconds(c.shutdown_grace);
  out << YAML::Key << "drain_s" << YAML::Value << absl::ToDoubleSeconds(c.shutdown_drain);
  out << YAML::EndMap;
  out << YAML::Key << "models" << YAML::Value << YAML::BeginSeq;
  for (const ModelDeploymentConfig& m : c.models) {
    out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << m.name;
    if (m.self_hosted()) {
      out << YAML::Key << "instances" << YAML::Value << m.instances;
      out << YAML::Key << "slots_per_instance" << YAML::Value << m.slots_per_instance;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  const GatewayConfig& g = c.gateway;
  out << YAML::Key << "gateway" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "listen" << YAML::Value << g.listen;
  out << YAML::Key << "model_header" << YAML::Value << g.options.model_header;
  out << YAML::Key << "route_all" << YAML::Value << g.route_all;
  out << YAML::Key << "tenant_header" << YAML::Value << g.tenant_header;
  out << YAML::Key << "skip_header" << YAML::Value << g.skip_header;
  out << YAML::Key << "models" << YAML::Value << YAML::Flow << g.models;
  Emit(out, "decision_timeout_ms", g.decision_timeout);
  out << YAML::Key << "retry_after_s" << YAML::Value << absl::ToDoubleSeconds(g.retry_after);
  out << YAML::Key << "ensure_stream_usage" << YAML::Value << g.ensure_stream_usage;
  out << YAML::Key << "remove_accept_encoding" << YAML::Value << g.remove_accept_encoding;
  out << YAML::Key << "request" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "max_body_bytes" << YAML::Value << g.options.request.max_body_bytes;
  out << YAML::Key << "routing_aliases" << YAML::Value << YAML::Flow
      << g.options.request.routing_aliases;
  out << YAML::EndMap;
  out << YAML::Key << "usage" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "max_json_body_bytes" << YAML::Value << g.options.usage.max_json_body_bytes;
  out << YAML::Key << "max_sse_event_bytes" << YAML::Value << g.options.usage.max_sse_event_bytes;
  out << YAML::EndMap;
  out << YAML::EndMap;
  const LearningConfig& l = c.learning;
  out << YAML::Key << "learning" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "enabled" << YAML::Value << l.enabled;
  out << YAML::Key << "snapshot_file" << YAML::Value << l.snapshot_file;
  out << YAML::Key << "snapshot_interval_s" << YAML::Value
      << absl::ToDoubleSeconds(l.snapshot_interval);
  out << YAML::Key << "half_life_outcomes" << YAML::Value << l.options.half_life_outcomes;
  out << YAML::Key << "prior_strength" << YAML::Value << l.options.prior_strength;
  out << YAML::Key << "cold_start_quality" << YAML::Value << l.options.cold_start_quality;
  out << YAML::Key << "cold_start_strength" << YAML::Value << l.options.cold_start_strength;
  out << YAML::Key << "lower_quantile" << YAML::Value << l.options.lower_quantile;
  out << YAML::Key << "exploration" << YAML::Value << l.options.exploration;
  out << YAML::Key << "max_cells" << YAML::Value << l.options.max_cells;
  out << YAML::Key << "shared" << YAML::Value << l.shared;
  out << YAML::Key << "shared_poll_interval_ms" << YAML::Value
      << absl::ToDoubleMilliseconds(l.shared_poll_interval);
  out << YAML::Key << "shared_queue_max" << YAML::Value << l.shared_queue_max;
  out << YAML::Key << "shared_stream_max_entries" << YAML::Value << l.shared_stream_max_entries;
  out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

absl::StatusOr<std::string> ReplacePort(absl::string_view address, absl::string_view port,
                                        absl::string_view flag) {
  // Digits only: SimpleAtoi alone would also take "+80" and " 80".
  int value = 0;
  if (port.find_first_not_of("0123456789") != absl::string_view::npos ||
      !absl::SimpleAtoi(port, &value) || value > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected a port number 0..65535, got '", port, "'"));
  }
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0 || absl::StartsWith(address, "unix:") ||
      address.find(']', colon) != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": the configured address '", address,
                                                   "' has no port to replace"));
  }
  return absl::StrCat(address.substr(0, colon + 1), value);
}

bool IsLoopbackAddress(absl::string_view address) {
  return absl::StartsWith(address, "127.") || absl::StartsWith(address, "[::1]:") ||
         absl::StartsWith(address, "localhost:") || absl::StartsWith(address, "unix:");
}

absl::Status CheckRuntimeChange(const RouterConfig& current, const RouterConfig& next) {
  if (std::optional<std::string> key = ChangedStartupKey(current, next)) {
    return absl::FailedPreconditionError(
        absl::StrCat(*key, ": cannot change at runtime (edit the file and restart routerd)"));
  }
  return absl::OkStatus();
}

std::optional<std::string> ChangedStartupKey(const RouterConfig& a, const RouterConfig& b) {
  const GrpcServerConfig& ga = a.grpc;
  const GrpcServerConfig& gb = b.grpc;
  const LedgerBackendConfig& la = a.ledger_backend;
  const LedgerBackendConfig& lb = b.ledger_backend;
  const RedisLedgerOptions& ra = la.redis_options;
  const RedisLedgerOptions& rb = lb.redis_options;
  const core::OutcomeLearnerOptions& oa = a.learning.options;
  const core::OutcomeLearnerOptions& ob = b.learning.options;
  for (const auto& [key, changed] : {
           std::pair{"listen", a.listen != b.listen},
           std::pair{"metrics_listen", a.metrics_listen != b.metrics_listen},
           std::pair{"estimator", a.estimator != b.estimator},
           std::pair{"reflection", a.reflection != b.reflection},
           std::pair{"gateway.listen", a.gateway.listen != b.gateway.listen},
           std::pair{"credentials_reload_s", a.credentials_reload != b.credentials_reload},
           std::pair{"tls.cert_file", a.tls.cert_file != b.tls.cert_file},
           std::pair{"tls.key_file", a.tls.key_file != b.tls.key_file},
           std::pair{"tls.client_ca_file", a.tls.client_ca_file != b.tls.client_ca_file},
           std::pair{"admin.listen", a.admin.listen != b.admin.listen},
           std::pair{"admin.token_file", a.admin.token_file != b.admin.token_file},
           std::pair{"admin.allowed_identities",
                     a.admin.allowed_identities != b.admin.allowed_identities},
           std::pair{"admin.allow_unauthenticated",
                     a.admin.allow_unauthenticated != b.admin.allow_unauthenticated},
           std::pair{"api.token_file", a.api_token_file != b.api_token_file},
           std::pair{"grpc.max_concurrent_streams",
                     ga.max_concurrent_streams != gb.max_concurrent_streams},
           std::pair{"grpc.max_receive_message_bytes",
                     ga.max_receive_message_bytes != gb.max_receive_message_bytes},
           std::pair{"grpc.max_send_message_bytes",
                     ga.max_send_message_bytes != gb.max_send_message_bytes},
           std::pair{"grpc.min_ping_interval_ms", ga.min_ping_interval != gb.min_ping_interval},
           std::pair{"grpc.max_ping_strikes", ga.max_ping_strikes != gb.max_ping_strikes},
           std::pair{"grpc.max_connection_idle_s",
                     ga.max_connection_idle != gb.max_connection_idle},
           std::pair{"grpc.max_connection_age_s", ga.max_connection_age != gb.max_connection_age},
           std::pair{"ledger.backend", la.redis != lb.redis},
           std::pair{"ledger.health_requires_ledger",
                     la.health_requires_ledger != lb.health_requires_ledger},
           std::pair{"ledger.redis.address", ra.address != rb.address},
           std::pair{"ledger.redis.domain", ra.domain != rb.domain},
           std::pair{"ledger.redis.password_file", la.password_file != lb.password_file},
           std::pair{"ledger.redis.connect_timeout_ms", ra.connect_timeout != rb.connect_timeout},
           std::pair{"ledger.redis.call_timeout_ms", ra.call_timeout != rb.call_timeout},
           std::pair{"ledger.redis.retry_after_ms", ra.retry_after != rb.retry_after},
           std::pair{"ledger.redis.max_connections", ra.max_connections != rb.max_connections},
           std::pair{"ledger.redis.recent_snapshot_ms",
                     ra.recent_snapshot_for != rb.recent_snapshot_for},
           std::pair{"ledger.redis.refresh_snapshot_ms",
                     ra.refresh_snapshot_for != rb.refresh_snapshot_for},
           std::pair{"ledger.redis.escrow.spend_usd", ra.escrow.spend_usd != rb.escrow.spend_usd},
           std::pair{"ledger.redis.escrow.slots", ra.escrow.slots != rb.escrow.slots},
           std::pair{"ledger.redis.escrow.validity_ms", ra.escrow.validity != rb.escrow.validity},
           std::pair{"ledger.redis.escrow.renew_every_ms",
                     ra.escrow.renew_every != rb.escrow.renew_every},
           std::pair{"ledger.redis.escrow.skew_margin_ms",
                     ra.escrow.skew_margin != rb.escrow.skew_margin},
           std::pair{"learning.snapshot_file", a.learning.snapshot_file != b.learning.snapshot_file},
           std::pair{"learning.half_life_outcomes",
                     oa.half_life_outcomes != ob.half_life_outcomes},
           std::pair{"learning.prior_strength", oa.prior_strength != ob.prior_strength},
           std::pair{"learning.cold_start_quality",
                     oa.cold_start_quality != ob.cold_start_quality},
           std::pair{"learning.cold_start_strength",
                     oa.cold_start_strength != ob.cold_start_strength},
           std::pair{"learning.lower_quantile", oa.lower_quantile != ob.lower_quantile},
           std::pair{"learning.exploration", oa.exploration != ob.exploration},
           std::pair{"learning.max_cells", oa.max_cells != ob.max_cells},
           std::pair{"learning.shared", a.learning.shared != b.learning.shared},
           std::pair{"learning.shared_poll_interval_ms",
                     a.learning.shared_poll_interval != b.learning.shared_poll_interval},
           std::pair{"learning.shared_queue_max",
                     a.learning.shared_queue_max != b.learning.shared_queue_max},
           std::pair{"learning.shared_stream_max_entries",
                     a.learning.shared_stream_max_entries != b.learning.shared_stream_max_entries},
       }) {
    if (changed) return std::string(key);
  }
  return std::nullopt;
}

void CopyStartupKeys(const RouterConfig& from, RouterConfig& to) {
  to.listen = from.listen;
  to.metrics_listen = from.metrics_listen;
  to.estimator = from.estimator;
  to.reflection = from.reflection;
  to.gateway.listen = from.gateway.listen;
  to.credentials_reload = from.credentials_reload;
  to.tls = from.tls;
  to.admin = from.admin;
  to.api_token_file = from.api_token_file;
  to.grpc = from.grpc;
  to.ledger_backend = from.ledger_backend;
  to.learning.options = from.learning.options;
  to.learning.snapshot_file = from.learning.snapshot_file;
  to.learning.shared = from.learning.shared;
  to.learning.shared_poll_interval = from.learning.shared_poll_interval;
  to.learning.shared_queue_max = from.learning.shared_queue_max;
  to.learning.shared_stream_max_entries = from.learning.shared_stream_max_entries;
}

}  // namespace router::server
