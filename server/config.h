// File: config.h
//
// routerd's configuration: one YAML document (docs/configuration.md), every field optional with the
// documented default below. Loaded from --config at start, replaced at runtime through
// RouterAdmin.UpdateConfig or SIGHUP (re-read the file), validated as a whole before anything is
// applied, and applied atomically between batches.
//
// Startup-only fields (listen, metrics_listen, estimator, reflection, gateway.listen,
// credentials_reload_s, the tls, admin, api, grpc and ledger sections, and every learning key but
// learning.enabled and learning.snapshot_interval_s) cannot change at runtime;
// an update that changes one is refused with FAILED_PRECONDITION naming it. The files the tls,
// admin and api sections name are re-read without a restart (routerd.h): their paths are
// startup-only, their contents are not.
//
// Thread-safety: plain values.
//
// Errors: INVALID_ARGUMENT naming the field path (`batching.max_batch_size: must be >= 1`), or the
// YAML line and column of a syntax error; NOT_FOUND for a missing file.

#ifndef ROUTER_SERVER_CONFIG_H_
#define ROUTER_SERVER_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "router_core/learn/outcome_learner.h"
#include "router_core/solve/problem.h"
#include "router_core/serving/batch_engine.h"
#include "router_core/serving/batch_queue.h"
#include "router_core/serving/inline_router.h"
#include "router_core/serving/ledger.h"
#include "server/gateway/gateway_options.h"
#include "server/ledger_redis/redis_ledger.h"
#include "server/log.h"
#include "server/routing_mode.h"

namespace router::server {

struct ModelDeploymentConfig {
  std::string name;
  // Self-hosted: instances x slots_per_instance slots. Both 0 = API model (unlimited).
  int64_t instances = 0;
  int64_t slots_per_instance = 0;

  bool self_hosted() const { return instances > 0 || slots_per_instance > 0; }
};

// routerd's gRPC servers send and receive messages up to 64 MiB unless the grpc section says
// otherwise; a BUFFERED request body is one message, and goes back rewritten in one, so
// gateway.request.max_body_bytes is at most this (room left for the rest of it), and at most the
// smaller of grpc.max_receive_message_bytes and grpc.max_send_message_bytes less that room.
inline constexpr int64_t kMaxGrpcMessageBytes = int64_t{64} << 20;
inline constexpr int64_t kGatewayMessageOverheadBytes = int64_t{64} << 10;
inline constexpr int64_t kMaxGatewayBodyBytes = kMaxGrpcMessageBytes - kGatewayMessageOverheadBytes;

// The Envoy external processor (ext_proc_call.h, docs/envoy_ext_proc.md): served on `listen`
// always, and also on its own listener when `gateway.listen` is set.
struct GatewayConfig {
  // Startup-only. An extra address serving only envoy.service.ext_proc.v3.ExternalProcessor and
  // health (as the Inference Extension's endpoint picker serves ext_proc on 9002). Empty = none.
  std::string listen;
  // Body limits, routing aliases ({"auto"}) and the model header (x-gateway-model-name).
  gateway::GatewayOptions options;
  // Route every request, whatever its `model` names (not only the routing aliases).
  bool route_all = false;
  // The request header whose value is the tenant (Query.tenant). Empty = the body's `user`.
  std::string tenant_header;
  // Requests carrying this header (any value) pass through unrouted. Empty = none.
  std::string skip_header;
  // The models a gateway request may be routed to (Query.allowed_models); each in the pool.
  // Empty = the whole pool.
  std::vector<std::string> models;
  // A routed request's decision deadline (Query deadline), > 0, at most 60 s. Keep it below
  // Envoy's message_timeout.
  absl::Duration decision_timeout = absl::Milliseconds(500);
  // The `retry-after` of 429 and 503 answers, >= 0, at most one day.
  absl::Duration retry_after = absl::Seconds(1);
  // Set stream_options.include_usage in streamed requests so that their last event has usage.
  bool ensure_stream_usage = true;
  // Remove `accept-encoding` from routed requests, so the response can be read for usage.
  bool remove_accept_encoding = true;
};

// TLS on the gRPC listeners (key `tls`). Off while cert_file is empty.
struct TlsConfig {
  std::string cert_file;       // PEM certificate chain, the server's first
  std::string key_file;        // PEM private key of that certificate; required with cert_file
  std::string client_ca_file;  // PEM CA bundle; set = every client must present a certificate
                               // it signed (mTLS)

  bool enabled() const { return !cert_file.empty(); }
};

// Who may call RouterAdmin, and where it is served (key `admin`). With none of token_file,
// allowed_identities and allow_unauthenticated, every RouterAdmin call is refused.
struct AdminConfig {
  std::string listen;      // empty = RouterAdmin on `listen`; else only on this address
  std::string token_file;  // the bearer token (`authorization: Bearer <token>` metadata)
  // Client-certificate identities (subject CN or a subject alternative name, exact) allowed
  // without a token; needs tls.client_ca_file.
  std::vector<std::string> allowed_identities;
  // Open to anyone who reaches it: refused unless RouterAdmin is served on a loopback address
  // (admin.listen, else listen), so it never faces a network (tests, development).
  bool allow_unauthenticated = false;
};

// The gRPC server's own limits (key `grpc`), applied to every listener.
struct GrpcServerConfig {
  int64_t max_concurrent_streams = 1000;             // per connection (HTTP/2 setting)
  // A RouteBatch of 4096 long texts fits, and an ext_proc body of gateway.request.max_body_bytes.
  int64_t max_receive_message_bytes = kMaxGrpcMessageBytes;
  int64_t max_send_message_bytes = kMaxGrpcMessageBytes;  // ext_proc sends a body back rewritten
  absl::Duration min_ping_interval = absl::Seconds(10);  // a client pinging more often is a strike
  int64_t max_ping_strikes = 2;                      // strikes before GOAWAY too_many_pings
  absl::Duration max_connection_idle = absl::ZeroDuration();  // zero = no limit
  absl::Duration max_connection_age = absl::ZeroDuration();   // zero = no limit
};

// Where the spend and slot ledger lives (the `ledger:` section; docs/configuration.md, "Fleet"):
// in this process (`backend: local`, one routerd), or in Redis, shared by every replica of a
// fleet with the same `redis.domain` (`backend: redis`, redis_ledger.h). Startup-only.
struct LedgerBackendConfig {
  bool redis = false;                 // backend: local (false) | redis (true)
  RedisLedgerOptions redis_options;   // its `password` stays empty: read from password_file
  std::string password_file;          // first line = the Redis password; empty = no AUTH
  // The health of router.v1.Router and of the ext_proc service is NOT_SERVING while the shared
  // ledger is degraded (Redis unreachable). Liveness (the whole server, "") never depends on Redis.
  bool health_requires_ledger = false;
};

// Learning from outcomes (the `learning:` section; docs/configuration.md, "Learning from
// outcomes"): Complete's success and score correct the estimator's predicted quality per model and
// cluster (outcome_learning.h).
struct LearningConfig {
  // Runtime-changeable. Off by default: turning it on changes decisions, so an upgrade never does
  // it behind the operator's back. Off, no prediction is adjusted and no outcome is learned from
  // (they are counted as dropped); what was learned is kept and shown, and used again once on.
  bool enabled = false;
  // Runtime-changeable. How often the statistics are written to snapshot_file (also at shutdown).
  absl::Duration snapshot_interval = absl::Seconds(60);
  // Startup-only: the learner's options, with the core's documented defaults.
  core::OutcomeLearnerOptions options;
  // Startup-only. Where the statistics are kept across restarts (written atomically, restored at
  // start); empty = nowhere (a restart forgets them).
  std::string snapshot_file;
  // Startup-only. With ledger.backend: redis, the replicas learn together: outcomes go through
  // the fleet's learning log in Redis, and every replica applies everyone's (outcome_learning.h).
  // On by default with the redis backend; `shared: true` with the local backend is an error.
  bool shared = true;
  // Startup-only, shared learning only. How often the log is written and read, in [10 ms, 60 s].
  absl::Duration shared_poll_interval = absl::Milliseconds(200);
  // Startup-only, shared learning only. Outcomes waiting to be written to the log, in
  // [1, 10,000,000]; beyond it an outcome is dropped (counted, reason queue_full).
  int64_t shared_queue_max = 100000;
  // Startup-only, shared learning only. Approximate bound on the log's entries (one entry per
  // replica per poll with outcomes, up to 512 outcomes each), in [100, 100,000,000].
  int64_t shared_stream_max_entries = 100000;
};

struct RouterConfig {
  // Startup-only.
  std::string listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9464";  // empty = no /metrics endpoint
  std::string estimator;                          // empty = the build's embedded default artifact
  bool reflection = true;
  TlsConfig tls;
  AdminConfig admin;
  std::string api_token_file;  // key api.token_file: empty = Router calls need no token
  GrpcServerConfig grpc;
  // How often the tls, admin and api files are checked for new contents (key
  // credentials_reload_s); zero = only on SIGHUP.
  absl::Duration credentials_reload = absl::Seconds(10);
  LedgerBackendConfig ledger_backend;  // local by default

  // Runtime-changeable.
  core::BatchQueueOptions batching;  // batch_queue.h's defaults
  core::BatchPolicy policy;          // batch_engine.h's and solve_options.h's defaults
  core::LedgerOptions ledger;        // no pacing, 5 min leases
  // Which mode decides a query (routing_mode.h): batch by default, per tenant, or per query.
  RoutingConfig routing;
  // Inline decisions: windows of 100 arrivals (no time limit), forecast of the last 100 arrivals,
  // 3 slot-price rounds. Window cap = policy.avg_cost_cap_usd x window size.
  core::InlineOptions inline_options;
  int64_t max_text_bytes = 1 << 20;
  int64_t max_batch_request_queries = 4096;
  // Queries one RouteStream may have read and not yet answered on the wire (decided or not). At
  // this many the stream stops reading until its client reads answers: gRPC's flow control then
  // holds the client back, and nothing is lost or buffered without bound.
  int64_t max_stream_backlog = 1024;
  // Batch-mode queries of one tenant (Query.tenant) admitted and not yet answered; more are
  // refused with UNAVAILABLE and a retry hint. Zero = no bound (batching.max_queued still holds).
  int64_t max_queued_per_tenant = 0;
  // Queries of one connection (any mode) admitted and not yet answered; zero = no bound.
  int64_t max_queries_per_connection = 0;
  // routerd's log lines: text or JSON lines (log.h).
  LogFormat log_format = LogFormat::kText;
  // One log line per decided query (routed or refused by its decision), with its query id, its
  // caller's W3C trace id, the model and the decision's facts. Off by default: at full load it is
  // a line per query.
  bool log_decisions = false;
  // On SIGTERM: health turns NOT_SERVING, then routerd keeps routing for `shutdown_drain` so load
  // balancers move traffic away, then refuses new work and answers what is queued within
  // `shutdown_grace`.
  absl::Duration shutdown_drain = absl::Seconds(1);
  absl::Duration shutdown_grace = absl::Seconds(10);
  // Empty = every model the estimator knows, as API models.
  std::vector<ModelDeploymentConfig> models;
  // The Envoy external processor (`gateway:`); all but gateway.listen runtime-changeable.
  GatewayConfig gateway;
  // Learning from outcomes: enabled and snapshot_interval_s runtime-changeable, the rest
  // startup-only.
  LearningConfig learning;
};

// Largest config text accepted (a file, or RouterAdmin.UpdateConfig's yaml), bytes.
inline constexpr size_t kMaxConfigBytes = 1 << 20;
// Most slots one self-hosted model may have (instances x slots_per_instance).
inline constexpr int64_t kMaxModelSlots = 1'000'000'000;

// OK, or INVALID_ARGUMENT naming `path` (e.g. `models[2]`): counts >= 0, both > 0 or both 0, and
// at most kMaxModelSlots slots.
absl::Status ValidateDeployment(const ModelDeploymentConfig& m, absl::string_view path);

// Parses and validates a whole document. Unknown keys are errors (a typo must not silently keep a
// default).
absl::StatusOr<RouterConfig> ParseConfigYaml(absl::string_view yaml);
// With `current`, parses like ParseConfigUpdateYaml (a reload). A file over kMaxConfigBytes or
// with nothing but whitespace is refused (INVALID_ARGUMENT), however it ends.
absl::StatusOr<RouterConfig> LoadConfigFile(const std::string& path,
                                            const RouterConfig* current = nullptr);
// For a runtime update: like ParseConfigYaml, except that absent startup-only keys keep the values
// of `current` (an update need not repeat them; changing one is still refused by
// CheckRuntimeChange). Absent runtime keys take their defaults: an update replaces the runtime
// configuration as a whole.
absl::StatusOr<RouterConfig> ParseConfigUpdateYaml(absl::string_view yaml,
                                                   const RouterConfig& current);
// Round-trips through ParseConfigYaml.
std::string ConfigToYaml(const RouterConfig& config);

// `address` ("host:port" or "[v6 host]:port", as in `listen`) with its port replaced by `port`, a
// decimal in 0..65535 (0 = any free port): what routerd's --port and --metrics_port do to the
// configured addresses. INVALID_ARGUMENT naming `flag` for a bad port or an address without one
// (e.g. a unix: socket).
absl::StatusOr<std::string> ReplacePort(absl::string_view address, absl::string_view port,
                                        absl::string_view flag);

// The limits `after` no longer has that `before` had, each named with its old value: the budget
// cap, pacing, a self-hosted model's slot limit. For the log of a configuration change.
std::vector<std::string> RemovedLimits(const RouterConfig& before, const RouterConfig& after);

// The rules across the tls, admin and api sections (part of parsing; again at start, after flags
// changed the addresses): INVALID_ARGUMENT naming the key.
absl::Status CheckSecurityKeys(const RouterConfig& c);

// Whether `address` (as in `listen`) is reachable from this machine only: 127.x.x.x, [::1],
// localhost, or a unix: socket.
bool IsLoopbackAddress(absl::string_view address);

// OK if `next` differs from `current` only in runtime-changeable fields.
absl::Status CheckRuntimeChange(const RouterConfig& current, const RouterConfig& next);

// The path of the first startup-only key (e.g. `tls.cert_file`) whose value differs between `a`
// and `b`; nullopt when they agree on all of them.
std::optional<std::string> ChangedStartupKey(const RouterConfig& a, const RouterConfig& b);
// Copies every startup-only field of `from` into `to`.
void CopyStartupKeys(const RouterConfig& from, RouterConfig& to);

}  // namespace router::server

#endif  // ROUTER_SERVER_CONFIG_H_
