// File: router_client.h
//
// A small C++ client for routerd (proto/router/v1/router.proto): route queries one at a time, as a
// caller-formed batch or over one RouteStream, report completions, check health and call the
// RouterAdmin service. Every call returns absl::Status / absl::StatusOr; the gRPC status of a
// failed call is carried over unchanged (code and message) by FromGrpcStatus.
//
// Example:
//   absl::StatusOr<std::unique_ptr<router::client::RouterClient>> client =
//       router::client::RouterClient::Connect("127.0.0.1:50051", {});
//   if (!client.ok()) return client.status();
//   router::v1::Query query;
//   query.set_id("q1");
//   query.set_text("What is 2 + 2?");
//   query.set_mode(router::v1::ROUTING_MODE_INLINE);  // optional: decided at once, no batch wait
//   absl::StatusOr<router::v1::Assignment> a = (*client)->Route(query);
//   if (!a.ok()) return a.status();  // e.g. INVALID_ARGUMENT "query.text: required ..."
//   ... call a->model() ...
//   (*client)->Complete(a->assignment_id(), /*actual_cost_usd=*/0.0012);
//
// Thread-safety: a RouterClient is thread-safe; share one per process (it holds one channel, and
// gRPC multiplexes concurrent calls on it). RouteStream blocks its calling thread until the stream
// ends and uses one helper thread of its own for sending.
//
// Ownership: Connect returns a uniquely owned client; it owns its channel and stubs. Results are
// returned by value; RouteStream's callback sees each answer only for the duration of the call.
//
// Errors: each call's error is the server's gRPC status (see the conventions in router.proto:
// INVALID_ARGUMENT names the field, UNAVAILABLE is retryable, RESOURCE_EXHAUSTED means budget or
// slots), DEADLINE_EXCEEDED when the call's timeout passed, or UNAVAILABLE when routerd cannot be
// reached; UNAUTHENTICATED or PERMISSION_DENIED when routerd refuses the call's credentials.
// Connect itself returns INVALID_ARGUMENT for bad options, NOT_FOUND for a TLS or token file it
// cannot read, and UNAVAILABLE when the channel did not become ready within connect_timeout (also
// when the TLS handshake fails: an untrusted server certificate, or a client certificate routerd
// refuses).

#ifndef ROUTER_CLIENTS_CPP_ROUTER_CLIENT_H_
#define ROUTER_CLIENTS_CPP_ROUTER_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "health.grpc.pb.h"  // grpc.health.v1, generated flat by proto/CMakeLists.txt
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/status.h"
#include "router/v1/router.grpc.pb.h"

namespace router::client {

// The one mapping from a gRPC status to an absl::Status (the code numbering is identical).
absl::Status FromGrpcStatus(const grpc::Status& status);

// The retry hint of a failed Route or RouteBatch: how long routerd asked the caller to wait
// before retrying when it refused the call for overload (UNAVAILABLE with its
// `grpc-retry-pushback-ms` trailer); nullopt without one (also for a refusal while routerd shuts
// down: retry on another replica).
std::optional<absl::Duration> RetryAfter(const absl::Status& status);

// routerd refuses keepalive pings more frequent than this
// (GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS on the server, server/routerd.cc) and
// answers them with GOAWAY "too_many_pings", so the client never pings more often.
inline constexpr absl::Duration kMinKeepaliveTime = absl::Seconds(10);

struct RouterClientOptions {
  // Deadline of each unary call made without an explicit timeout. routerd also uses the deadline
  // to close a batch early, so it bounds how long a Route may wait for its batch.
  absl::Duration default_timeout = absl::Seconds(10);
  // How long Connect waits for the channel to become ready. Zero: do not wait (connect lazily on
  // the first call, whose own deadline then covers connecting).
  absl::Duration connect_timeout = absl::Seconds(5);
  // Interval between keepalive pings on an active connection; at least kMinKeepaliveTime.
  absl::Duration keepalive_time = absl::Seconds(30);
  // How long to wait for a ping's answer before the connection is considered dead.
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // Largest answer accepted (a RouteBatch answer of 4096 items is about 2 MiB). Same as routerd's
  // send limit.
  int max_receive_message_bytes = 4 << 20;
  // Channel credentials, for a setup the fields below cannot express; null = built from `tls`
  // (plaintext when it is off). Setting both this and `tls` is INVALID_ARGUMENT.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // TLS to routerd (its `tls` config section). Off: plaintext.
  struct Tls {
    bool enabled = false;        // also implied by any file below
    std::string ca_file;         // PEM roots to verify routerd's certificate; empty = the system's
    std::string cert_file;       // this client's certificate chain, for mTLS (tls.client_ca_file)
    std::string key_file;        // its private key; required with cert_file
    // The name checked against routerd's certificate when it differs from the address's host
    // (e.g. connecting to an IP whose certificate names a DNS name); empty = the host.
    std::string server_name;
  } tls;
  // Sent as `authorization: Bearer <token>` metadata on every call (admin.token_file for
  // RouterAdmin, api.token_file for Router). Empty = none. Never logged. Over plaintext it crosses
  // the network in clear: use it with TLS beyond loopback.
  std::string bearer_token;
  // Routing mode sent with every query of Route and RouteStream whose own Query.mode is
  // ROUTING_MODE_UNSPECIFIED (a query's own mode wins). UNSPECIFIED (the default) sends none:
  // routerd then uses the tenant's mode or its configured default. RouteBatch is always decided as
  // a batch. Which mode decided a query is in Assignment.decision_mode; inline answers carry their
  // prices in Assignment.inline_decision.
  v1::RoutingMode mode = v1::ROUTING_MODE_UNSPECIFIED;
};

// The token a token file holds (surrounding whitespace and the final newline dropped), as routerd
// reads admin.token_file and api.token_file. NOT_FOUND for an unreadable file, INVALID_ARGUMENT
// for one without a token (neither message contains the file's contents).
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// One answer of a RouteStream, as handed to the callback (a response message may carry several;
// each is handed over on its own).
struct StreamAnswer {
  // An assignment, or a per-query error item (the stream goes on after it).
  const v1::RouteBatchItem& item;
  // Position of the answered query in the span given to RouteStream; -1 if the answer's query_id
  // matches no query still awaiting its answer.
  int64_t index;
  // From the moment the query was handed to gRPC to the moment its answer arrived.
  absl::Duration latency;
};

struct RouteStreamOptions {
  // Bounds the whole stream; routerd uses it as every query's deadline. Infinite: no deadline.
  absl::Duration timeout = absl::InfiniteDuration();
  // Most queries sent and not yet answered. Sending everything at once would park a large file in
  // routerd's queue (UNAVAILABLE items once it is full, batching.max_queued, default 10000) and
  // make every latency include that wait; 1024 keeps 16 batches of 64 queued. At least 1.
  int64_t max_in_flight = 1024;
};

struct UpdateConfigOptions {
  // Validate only; apply nothing.
  bool dry_run = false;
  // Apply only if the server's configuration generation still equals this (optimistic lock).
  std::optional<uint64_t> expected_generation;
};

// What a Complete reports about the finished request (router.proto, CompleteRequest).
struct CompleteOutcome {
  // Actual cost in USD (>= 0); absent: the predicted cost is recorded.
  std::optional<double> actual_cost_usd;
  // true = the answer was good.
  std::optional<bool> success;
  // The answer's score in [0, 1] (a rating, an evaluator's grade); learned instead of `success`
  // when both are given.
  std::optional<double> score;
};

// Filters of the learned statistics (GetLearnedStats, ResetLearnedStats): absent = all.
struct LearnedStatsFilter {
  std::optional<std::string> model;
  std::optional<int32_t> cluster;
};

class RouterClient {
 public:
  // Opens a channel to `address` (host:port, or any gRPC target such as unix:PATH) and, unless
  // options.connect_timeout is zero, waits until it is connected.
  static absl::StatusOr<std::unique_ptr<RouterClient>> Connect(const std::string& address,
                                                               const RouterClientOptions& options);
  // Uses an existing channel (for example a server's in-process channel in tests). Of `options`
  // only default_timeout (> 0), mode and bearer_token apply; the channel was built with its own
  // arguments.
  static std::unique_ptr<RouterClient> FromChannel(std::shared_ptr<grpc::Channel> channel,
                                                   const RouterClientOptions& options);

  RouterClient(const RouterClient&) = delete;
  RouterClient& operator=(const RouterClient&) = delete;

  // Router.Route: one query, batched by routerd with other traffic or decided inline on arrival
  // (Query.mode, else options.mode, else routerd's tenant or default mode). `timeout` defaults to
  // options.default_timeout; with ROUTING_MODE_AUTO it also decides the mode (inline when it
  // leaves routerd no room to wait for a batch).
  absl::StatusOr<v1::Assignment> Route(const v1::Query& query,
                                       std::optional<absl::Duration> timeout = std::nullopt) const;

  // Router.RouteBatch: the queries solved together; one item per query, in order, each an
  // assignment or that query's error. The call fails as a whole only for an empty or oversized
  // batch or a transport error.
  absl::StatusOr<v1::RouteBatchResponse> RouteBatch(
      absl::Span<const v1::Query> queries,
      std::optional<absl::Duration> timeout = std::nullopt) const;

  // Router.RouteStream over the sync ClientReaderWriter: a helper thread writes the queries and
  // half-closes, keeping at most options.max_in_flight of them unanswered, while the calling
  // thread reads and calls `on_answer` once per answer, in arrival order (answers may come out of
  // query order; match them by query_id or StreamAnswer::index). `on_answer` runs on the calling
  // thread, one call at a time, and should return quickly (it holds up reading). Returns when
  // routerd ends the stream: OK once every query was answered (each answer is an assignment or an
  // error item), otherwise the stream's status. Query ids should be unique within the stream so
  // answers can be matched to queries.
  absl::Status RouteStream(absl::Span<const v1::Query> queries,
                           const std::function<void(const StreamAnswer&)>& on_answer,
                           const RouteStreamOptions& options = {}) const;

  // Router.Complete: the routed request finished; frees its slot and reconciles its cost with
  // `actual_cost_usd` (absent: the predicted cost is recorded). `success` is the optional outcome.
  absl::StatusOr<v1::CompleteResponse> Complete(
      const std::string& assignment_id, std::optional<double> actual_cost_usd = std::nullopt,
      std::optional<bool> success = std::nullopt,
      std::optional<absl::Duration> timeout = std::nullopt) const;
  // The same with the whole outcome, its score included. INVALID_ARGUMENT naming `score` when the
  // score is outside [0, 1] or NaN.
  absl::StatusOr<v1::CompleteResponse> Complete(
      const std::string& assignment_id, const CompleteOutcome& outcome,
      std::optional<absl::Duration> timeout = std::nullopt) const;

  // grpc.health.v1.Health.Check for `service` ("" = the whole server, or "router.v1.Router").
  // NOT_FOUND for a service the server does not know.
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(
      const std::string& service = "",
      std::optional<absl::Duration> timeout = std::nullopt) const;

  // RouterAdmin calls; see router.proto for their semantics.
  absl::StatusOr<v1::ListModelsResponse> ListModels(
      std::optional<absl::Duration> timeout = std::nullopt) const;
  absl::StatusOr<v1::UpsertModelResponse> UpsertModel(
      const v1::UpsertModelRequest& request,
      std::optional<absl::Duration> timeout = std::nullopt) const;
  // Returns the new configuration generation.
  absl::StatusOr<uint64_t> RemoveModel(const std::string& name,
                                       std::optional<absl::Duration> timeout = std::nullopt) const;
  absl::StatusOr<v1::GetConfigResponse> GetConfig(
      std::optional<absl::Duration> timeout = std::nullopt) const;
  // Replaces the runtime configuration with `yaml` (the whole document); returns the new
  // generation (the current one on a dry run).
  absl::StatusOr<uint64_t> UpdateConfig(const std::string& yaml, const UpdateConfigOptions& update,
                                        std::optional<absl::Duration> timeout = std::nullopt) const;
  // What routerd learned from outcomes, per model and cluster (filtered), and its reset; the
  // reset returns the number of cells removed.
  absl::StatusOr<v1::GetLearnedStatsResponse> GetLearnedStats(
      const LearnedStatsFilter& filter = {},
      std::optional<absl::Duration> timeout = std::nullopt) const;
  absl::StatusOr<int64_t> ResetLearnedStats(
      const LearnedStatsFilter& filter,
      std::optional<absl::Duration> timeout = std::nullopt) const;

 private:
  RouterClient(std::shared_ptr<grpc::Channel> channel, const RouterClientOptions& options);

  // Sets the call's deadline (`timeout` if given, else options_.default_timeout) and its
  // credentials metadata.
  void SetDeadline(grpc::ClientContext& ctx, std::optional<absl::Duration> timeout) const;
  void SetToken(grpc::ClientContext& ctx) const;

  const RouterClientOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::Router::Stub> router_;
  const std::unique_ptr<v1::RouterAdmin::Stub> admin_;
  const std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

}  // namespace router::client

#endif  // ROUTER_CLIENTS_CPP_ROUTER_CLIENT_H_
