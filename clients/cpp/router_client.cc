#include "clients/cpp/router_client.h"

#include <algorithm>
#include <cstdint>
#include <deque>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace router::client {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

namespace {

// Where a status carries routerd's retry hint (milliseconds, decimal).
constexpr char kRetryAfterPayload[] = "type.router.v1/retry-after-ms";

// A failed call's status, with the retry hint of its trailers.
absl::Status CallStatus(const grpc::Status& status, const grpc::ClientContext& ctx) {
  absl::Status s = FromGrpcStatus(status);
  const auto& trailers = ctx.GetServerTrailingMetadata();
  if (auto it = trailers.find("grpc-retry-pushback-ms"); it != trailers.end()) {
    int64_t ms = 0;
    if (absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms) && ms >= 0) {
      s.SetPayload(kRetryAfterPayload, absl::Cord(absl::StrCat(ms)));
    }
  }
  return s;
}

// Clamps a duration to the int range gRPC channel arguments take, in milliseconds.
int ToMillisArg(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
}

bool TlsWanted(const RouterClientOptions::Tls& tls) {
  return tls.enabled || !tls.ca_file.empty() || !tls.cert_file.empty() || !tls.server_name.empty();
}

absl::Status ValidateOptions(const RouterClientOptions& o) {
  if (o.default_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default_timeout: must be > 0");
  }
  if (o.connect_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("connect_timeout: must be >= 0");
  }
  if (o.keepalive_time < kMinKeepaliveTime) {
    return absl::InvalidArgumentError(
        absl::StrCat("keepalive_time: must be >= ", absl::FormatDuration(kMinKeepaliveTime),
                     " (routerd answers more frequent pings with GOAWAY too_many_pings)"));
  }
  if (o.keepalive_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("keepalive_timeout: must be > 0");
  }
  if (o.max_receive_message_bytes <= 0) {
    return absl::InvalidArgumentError("max_receive_message_bytes: must be > 0");
  }
  if (!v1::RoutingMode_IsValid(o.mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("mode: unknown routing mode ", static_cast<int>(o.mode)));
  }
  if (o.tls.cert_file.empty() != o.tls.key_file.empty()) {
    return absl::InvalidArgumentError("tls.cert_file and tls.key_file: give both or neither");
  }
  if (o.credentials != nullptr && TlsWanted(o.tls)) {
    return absl::InvalidArgumentError("credentials and tls: give one of them");
  }
  for (char c : o.bearer_token) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "bearer_token: must be printable ASCII without spaces (a metadata value)");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(absl::string_view field, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(field, " '", path, "': cannot be read"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The channel credentials `o` asks for: its own, TLS, or plaintext.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(
    const RouterClientOptions& o) {
  if (o.credentials != nullptr) return o.credentials;
  if (!TlsWanted(o.tls)) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  if (!o.tls.ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadFile("tls.ca_file", o.tls.ca_file);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  if (!o.tls.cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadFile("tls.cert_file", o.tls.cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadFile("tls.key_file", o.tls.key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

// Copies `query` into `out`, with `mode` when the query names none.
void SetQuery(const v1::Query& query, v1::RoutingMode mode, v1::Query* out) {
  *out = query;
  if (out->mode() == v1::ROUTING_MODE_UNSPECIFIED) out->set_mode(mode);
}

// The queries of one RouteStream that are sent and not yet answered: the writer thread adds, the
// reading thread takes. By query_id, with a deque per id to keep duplicate ids in send order.
class InFlight {
 public:
  // At most `limit` (>= 1) queries may be unanswered.
  explicit InFlight(int64_t limit) : limit_(limit) {}

  // Waits until there is room for one more query; false if the stream ended meanwhile.
  bool AwaitRoom() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &InFlight::RoomOrEnded));
    return !ended_;
  }
  void Sent(const std::string& id, int64_t index, absl::Time at) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ++count_;
    by_id_[id].emplace_back(index, at);
  }
  // The index and send time of the oldest unanswered query with this id, if any. Every answer
  // frees room (each query has exactly one), matched or not, so a stray id cannot stall sending.
  std::optional<std::pair<int64_t, absl::Time>> Answered(const std::string& id)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    --count_;
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return std::nullopt;
    std::pair<int64_t, absl::Time> oldest = it->second.front();
    it->second.pop_front();
    if (it->second.empty()) by_id_.erase(it);
    return oldest;
  }
  // The server ended the stream: wakes a writer waiting for room.
  void End() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ended_ = true;
  }

 private:
  bool RoomOrEnded() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ended_ || count_ < limit_; }

  const int64_t limit_;
  absl::Mutex mu_;
  int64_t count_ ABSL_GUARDED_BY(mu_) = 0;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, std::deque<std::pair<int64_t, absl::Time>>> by_id_
      ABSL_GUARDED_BY(mu_);
};

const std::string& AnswerQueryId(const v1::RouteBatchItem& r) {
  return r.has_assignment() ? r.assignment().query_id() : r.error().query_id();
}

}  // namespace

absl::StatusOr<std::unique_ptr<RouterClient>> RouterClient::Connect(
    const std::string& address, const RouterClientOptions& options) {
  if (address.empty()) return absl::InvalidArgumentError("address: required");
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, ToMillisArg(options.keepalive_time));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ToMillisArg(options.keepalive_timeout));
  args.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  if (!options.tls.server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls.server_name);
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials = MakeCredentials(options);
  if (!credentials.ok()) return credentials.status();
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(address, *credentials, args);
  if (options.connect_timeout > absl::ZeroDuration() &&
      !channel->WaitForConnected(absl::ToChronoTime(absl::Now() + options.connect_timeout))) {
    return absl::UnavailableError(absl::StrCat("could not connect to ", address, " within ",
                                               absl::FormatDuration(options.connect_timeout)));
  }
  return FromChannel(std::move(channel), options);
}

std::unique_ptr<RouterClient> RouterClient::FromChannel(std::shared_ptr<grpc::Channel> channel,
                                                        const RouterClientOptions& options) {
  return std::unique_ptr<RouterClient>(new RouterClient(std::move(channel), options));
}

RouterClient::RouterClient(std::shared_ptr<grpc::Channel> channel,
                           const RouterClientOptions& options)
    : options_(options),
      channel_(std::move(channel)),
      router_(v1::Router::NewStub(channel_)),
      admin_(v1::RouterAdmin::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

void RouterClient::SetDeadline(grpc::ClientContext& ctx,
                               std::optional<absl::Duration> timeout) const {
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout.value_or(options_.default_timeout)));
  SetToken(ctx);
}

void RouterClient::SetToken(grpc::ClientContext& ctx) const {
  if (!options_.bearer_token.empty()) {
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", options_.bearer_token));
  }
}

std::optional<absl::Duration> RetryAfter(const absl::Status& status) {
  const auto payload = status.GetPayload(kRetryAfterPayload);  // an absl::optional here
  int64_t ms = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &ms)) return std::nullopt;
  return absl::Milliseconds(ms);
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile("token file", path);
  if (!text.ok()) return text.status();
  const absl::string_view token = absl::StripAsciiWhitespace(*text);
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("token file '", path, "': holds no token"));
  }
  return std::string(token);
}

absl::StatusOr<v1::Assignment> RouterClient::Route(const v1::Query& query,
                                                   std::optional<absl::Duration> timeout) const {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  v1::RouteRequest request;
  SetQuery(query, options_.mode, request.mutable_query());
  v1::RouteResponse response;
  if (grpc::Status s = router_->Route(&ctx, request, &response); !s.ok()) {
    return CallStatus(s, ctx);
  }
  return std::move(*response.mutable_assignment());
}

absl::StatusOr<v1::RouteBatchResponse> RouterClient::RouteBatch(
    absl::Span<const v1::Query> queries, std::optional<absl::Duration> timeout) const {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  v1::RouteBatchRequest request;
  request.mutable_queries()->Reserve(static_cast<int>(queries.size()));
  for (const v1::Query& q : queries) *request.add_queries() = q;
  v1::RouteBatchResponse response;
  if (grpc::Status s = router_->RouteBatch(&ctx, request, &response); !s.ok()) {
    return CallStatus(s, ctx);
  }
  return response;
}

absl::Status RouterClient::RouteStream(absl::Span<const v1::Query> queries,
                                       const std::function<void(const StreamAnswer&)>& on_answer,
                                       const RouteStreamOptions& options) const {
  if (options.max_in_flight < 1) return absl::InvalidArgumentError("max_in_flight: must be >= 1");
  grpc::ClientContext ctx;
  if (options.timeout != absl::InfiniteDuration()) {
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  }
  SetToken(ctx);
  std::unique_ptr<grpc::ClientReaderWriter<v1::RouteStreamRequest, v1::RouteStreamResponse>>
      stream = router_->RouteStream(&ctx);
  InFlight in_flight(options.max_in_flight);
  // The sync API allows one Write and one Read in flight at once, from different threads; writing
  // on a helper thread keeps the server's answers flowing while later queries are still being sent.
  std::thread writer([&] {
    v1::RouteStreamRequest request;
    for (size_t k = 0; k < queries.size(); ++k) {
      if (!in_flight.AwaitRoom()) return;
      SetQuery(queries[k], options_.mode, request.mutable_query());
      // Recorded before the write: the answer may arrive before Write returns.
      in_flight.Sent(queries[k].id(), static_cast<int64_t>(k), absl::Now());
      if (!stream->Write(request)) return;  // the stream is over; Finish reports why
    }
    stream->WritesDone();
  });
  v1::RouteStreamResponse response;
  while (stream->Read(&response)) {
    const absl::Time now = absl::Now();
    for (const v1::RouteBatchItem& item : response.items()) {
      const std::optional<std::pair<int64_t, absl::Time>> sent =
          in_flight.Answered(AnswerQueryId(item));
      on_answer(
          StreamAnswer{.item = item,
                       .index = sent.has_value() ? sent->first : -1,
                       .latency = sent.has_value() ? now - sent->second : absl::ZeroDuration()});
    }
  }
  // Read returned false: the server has ended the call, so a writer waiting for room is woken, a
  // pending Write fails promptly, and the writer returns; Finish needs both directions done.
  in_flight.End();
  writer.join();
  return FromGrpcStatus(stream->Finish());
}

absl::StatusOr<v1::CompleteResponse> RouterClient::Complete(
    const std::string& assignment_id, std::optional<double> actual_cost_usd,
    std::optional<bool> success, std::optional<absl::Duration> timeout) const {
  CompleteOutcome outcome;
  outcome.actual_cost_usd = actual_cost_usd;
  outcome.success = success;
  return Complete(assignment_id, outcome, timeout);
}

absl::StatusOr<v1::CompleteResponse> RouterClient::Complete(
    const std::string& assignment_id, const CompleteOutcome& outcome,
    std::optional<absl::Duration> timeout) const {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  v1::CompleteRequest request;
  request.set_assignment_id(assignment_id);
  if (outcome.actual_cost_usd.has_value()) request.set_actual_cost_usd(*outcome.actual_cost_usd);
  if (outcome.success.has_value()) request.set_success(*outcome.success);
  if (outcome.score.has_value()) request.set_score(*outcome.score);
  v1::CompleteResponse response;
  if (grpc::Status s = router_->Complete(&ctx, request, &response); !s.ok()) {
    return FromGrpcStatus(s);
  }
  return response;
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> RouterClient::Health(
    const std::string& service, std::optional<absl::Duration> timeout) const {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  if (grpc::Status s = health_->Check(&ctx, request, &response); !s.ok()) {
    return FromGrpcStatus(s);
  }
  return response.status();
}

absl::StatusOr<v1::ListModelsResponse> RouterClient::ListModels(
    std::optional<absl::Duration> timeout) const {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  v1::ListModelsResponse response;
  if (grpc::Status s = admin_->ListModels(&ctx, v1::ListModelsRequest(), &response); !s.ok()) {
    return FromGrpcStatus(s);
  }
  return response;
}

absl::StatusOr<v1::UpsertModelResponse> RouterClient::UpsertModel(
    const v1::UpsertModelRequest& request, std::optional<absl::Duration> timeout) const {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  v1::UpsertModelResponse response;
  if (grpc::Status s = admin_->UpsertModel(&ctx, request, &response); !s.ok()) {
    return FromGrpcStatus(s);
  }
  return response;
}

absl::StatusOr<uint64_t> RouterClient::RemoveModel(const std::string& name,
                                                   std::optional<absl::Duration> timeout) const {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  v1::RemoveModelRequest request;
  request.set_name(name);
  v1::RemoveModelResponse response;
  if (grpc::Status s = admin_->RemoveModel(&ctx, request, &response); !s.ok()) {
    return FromGrpcStatus(s);
  }
  return response.config_generation();
}

absl::StatusOr<v1::GetConfigResponse> RouterClient::GetConfig(
    std::optional<absl::Duration> timeout) const {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  v1::GetConfigResponse response;
  if (grpc::Status s = admin_->GetConfig(&ctx, v1::GetConfigRequest(), &response); !s.ok()) {
    return FromGrpcStatus(s);
  }
  return response;
}

absl::StatusOr<uint64_t> RouterClient::UpdateConfig(const std::string& yaml,
                                                    const UpdateConfigOptions& update,
                                                    std::optional<absl::Duration> timeout) const {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  v1::UpdateConfigRequest request;
  request.set_yaml(yaml);
  request.set_dry_run(update.dry_run);
  if (update.expected_generation.has_value()) {
    request.set_expected_generation(*update.expected_generation);
  }
  v1::UpdateConfigResponse response;
  if (grpc::Status s = admin_->UpdateConfig(&ctx, request, &response); !s.ok()) {
    return FromGrpcStatus(s);
  }
  return response.config_generation();
}

namespace {

template <typename Request>
void SetFilter(const LearnedStatsFilter& filter, Request& request) {
  if (filter.model.has_value()) request.set_model(*filter.model);
  if (filter.cluster.has_value()) request.set_cluster(*filter.cluster);
}

}  // namespace

absl::StatusOr<v1::GetLearnedStatsResponse> RouterClient::GetLearnedStats(
    const LearnedStatsFilter& filter, std::optional<absl::Duration> timeout) const {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  v1::GetLearnedStatsRequest request;
  SetFilter(filter, request);
  v1::GetLearnedStatsResponse response;
  if (grpc::Status s = admin_->GetLearnedStats(&ctx, request, &response); !s.ok()) {
    return FromGrpcStatus(s);
  }
  return response;
}

absl::StatusOr<int64_t> RouterClient::ResetLearnedStats(
    const LearnedStatsFilter& filter, std::optional<absl::Duration> timeout) const {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  v1::ResetLearnedStatsRequest request;
  SetFilter(filter, request);
  v1::ResetLearnedStatsResponse response;
  if (grpc::Status s = admin_->ResetLearnedStats(&ctx, request, &response); !s.ok()) {
    return FromGrpcStatus(s);
  }
  return response.cells_removed();
}

}  // namespace router::client
