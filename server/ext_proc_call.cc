#include "server/refused_call.h"
#include "server/ext_proc_call.h"

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/struct.pb.h"
#include "router/v1/router.pb.h"
#include "server/gateway/error_response.h"
#include "server/gateway/openai_request.h"
#include "server/gateway/usage_reader.h"
#include "server/query_intake.h"
#include "server/raw_message.h"
#include "server/trace_context.h"

namespace router::server {
namespace {

namespace ep = envoy::service::ext_proc::v3;
using envoy::config::core::v3::HeaderValueOption;
using Mode = envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;

// How a stream ended, for router_ext_proc_streams_total{outcome}. A stream that made an
// assignment ends in one of the first four.
enum class Outcome {
  kCompletedActual,     // completed at the cost of the response's usage
  kCompletedPredicted,  // completed at the predicted cost (no usage, or no token prices)
  kReleased,            // released: the stream ended before a usable response
  kUnknownAssignment,   // the ledger no longer held the assignment when it was settled
  kLedgerError,         // the ledger could not settle it (a shared ledger out of reach)
  kNotRouted,           // passed through: path, method, skip header or a named model
  kRefused,             // answered with an immediate response
  kProtocolError,       // ended with INVALID_ARGUMENT before any assignment
  kAbandoned,           // the peer went away before routerd answered the request
};

const char* OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kCompletedActual:
      return "completed_actual";
    case Outcome::kCompletedPredicted:
      return "completed_predicted";
    case Outcome::kReleased:
      return "released";
    case Outcome::kUnknownAssignment:
      return "unknown_assignment";
    case Outcome::kLedgerError:
      return "ledger_error";
    case Outcome::kNotRouted:
      return "not_routed";
    case Outcome::kRefused:
      return "refused";
    case Outcome::kProtocolError:
      return "protocol_error";
    case Outcome::kAbandoned:
      return "abandoned";
  }
  return "abandoned";
}

// Where the stream is: the message expected next.
enum class Phase {
  kRequestHeaders,
  kRequestBody,
  kDeciding,         // the query is with the runtime; nothing may arrive but the end of the stream
  kResponseHeaders,  // the request was answered (routed or not)
  kResponseBody,     // reading usage
  kResponseDone,     // nothing more to read; later messages are answered unchanged
  kClosed,           // an immediate response or a pass-through answer ends the stream
};

const char* KindName(ep::ProcessingRequest::RequestCase c) {
  switch (c) {
    case ep::ProcessingRequest::kRequestHeaders:
      return "request_headers";
    case ep::ProcessingRequest::kResponseHeaders:
      return "response_headers";
    case ep::ProcessingRequest::kRequestBody:
      return "request_body";
    case ep::ProcessingRequest::kResponseBody:
      return "response_body";
    case ep::ProcessingRequest::kRequestTrailers:
      return "request_trailers";
    case ep::ProcessingRequest::kResponseTrailers:
      return "response_trailers";
    case ep::ProcessingRequest::REQUEST_NOT_SET:
      return "an empty message";
  }
  return "an unknown kind";
}

// A header's value as Envoy sends it (raw_value; `value` from older Envoy).
std::string HeaderValueOf(const envoy::config::core::v3::HeaderValue& h) {
  return h.raw_value().empty() ? h.value() : h.raw_value();
}

std::optional<std::string> FindHeader(const ep::HttpHeaders& headers, absl::string_view name) {
  for (const envoy::config::core::v3::HeaderValue& h : headers.headers().headers()) {
    if (absl::EqualsIgnoreCase(h.key(), name)) return HeaderValueOf(h);
  }
  return std::nullopt;
}

void SetHeader(ep::HeaderMutation* m, absl::string_view name, absl::string_view value) {
  HeaderValueOption* o = m->add_set_headers();
  o->mutable_header()->set_key(std::string(name));
  o->mutable_header()->set_raw_value(std::string(value));
  o->set_append_action(HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD);
}

// Every later phase off: the request goes on without routerd.
void SetNothingMore(ep::ProcessingResponse& r) {
  Mode* m = r.mutable_mode_override();
  m->set_request_header_mode(Mode::SKIP);
  m->set_request_body_mode(Mode::NONE);
  m->set_request_trailer_mode(Mode::SKIP);
  m->set_response_header_mode(Mode::SKIP);
  m->set_response_body_mode(Mode::NONE);
  m->set_response_trailer_mode(Mode::SKIP);
}

// A header value Envoy accepts: visible ASCII, space, tab, and bytes >= 0x80.
bool IsHeaderValue(absl::string_view v) {
  for (unsigned char c : v) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

std::string Details(absl::string_view what) {
  return absl::StrCat("routerd_", absl::AsciiStrToLower(what));
}

// The local reply for `status` (gateway/error_response.h), with retry-after when retryable.
ep::ProcessingResponse Immediate(const absl::Status& status, absl::Duration retry_after,
                                 int* http_status) {
  const gateway::HttpErrorResponse e = gateway::ErrorResponseFor(status);
  ep::ProcessingResponse r;
  ep::ImmediateResponse* ir = r.mutable_immediate_response();
  ir->mutable_status()->set_code(static_cast<envoy::type::v3::StatusCode>(e.http_status));
  SetHeader(ir->mutable_headers(), "content-type", "application/json");
  if (e.retryable) {
    if (absl::StatusOr<std::string> v = gateway::RetryAfterValue(retry_after); v.ok()) {
      SetHeader(ir->mutable_headers(), "retry-after", *v);
    }
  }
  ir->set_body(e.body);
  const std::optional<gateway::BodyErrorKind> kind = gateway::BodyErrorKindOf(status);
  ir->set_details(Details(kind.has_value() ? gateway::BodyErrorKindName(*kind)
                                           : absl::StatusCodeToString(status.code())));
  *http_status = e.http_status;
  return r;
}

// The 500 for an Envoy configuration routerd cannot route with; says why.
ep::ProcessingResponse Misconfigured(const std::string& message, int* http_status) {
  ep::ProcessingResponse r;
  ep::ImmediateResponse* ir = r.mutable_immediate_response();
  ir->mutable_status()->set_code(envoy::type::v3::InternalServerError);
  SetHeader(ir->mutable_headers(), "content-type", "application/json");
  ir->set_body(
      gateway::OpenAiErrorBody(message, "server_error", "gateway_misconfigured", std::nullopt));
  ir->set_details(Details("gateway_misconfigured"));
  *http_status = 500;
  return r;
}

const char* BodyModeName(Mode::BodySendMode m) {
  return Mode::BodySendMode_IsValid(m) ? Mode::BodySendMode_Name(m).c_str() : "unknown";
}

std::atomic<uint64_t> next_stream_id{0};

class ExtProcCall final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                          public AnswerSink {
 public:
  // `peer`: the connection's peer address (limits.max_queries_per_connection).
  ExtProcCall(RouterRuntime* rt, std::string peer)
      : rt_(rt), peer_(std::move(peer)), start_(rt->clock().Now()), state_(rt->state()) {
    rt_->metrics().OnExtProcStreamStarted();
    StartRead(&raw_in_);
  }

  void OnReadDone(bool ok) override {
    Actions a;
    if (!ok) {
      {
        absl::MutexLock lock(&mu_);
        reads_done_ = true;
        gone_.store(true);
        NextActionsLocked(a);
      }
      Run(this, a);
      return;
    }
    absl::Status parsed = ParseRequest(raw_in_, request_);
    {
      absl::MutexLock lock(&mu_);
      // Until the next read is started (or not), the stream is not finished: a decision delivered
      // inside Dispatch below must not end it before this reaction is done with it.
      handling_ = true;
      ++messages_read_;
      if (!finished_ && phase_ != Phase::kClosed && !fail_.has_value()) {
        if (!parsed.ok()) {
          FailLocked(absl::StrCat("message ", messages_read_, ": ", parsed.message()));
        } else {
          HandleLocked(a);
        }
      }
      NextActionsLocked(a);
    }
    // May dispatch the query, whose decision may be delivered before Dispatch returns.
    Run(this, a);
    Actions next;
    {
      absl::MutexLock lock(&mu_);
      handling_ = false;
      // Keep one read in flight while the stream goes on, so its end is seen at once.
      if (!finished_ && phase_ != Phase::kClosed && !fail_.has_value() && !broken_) {
        next.read = true;
      }
      NextActionsLocked(next);
    }
    Run(this, next);
  }

  void OnWriteDone(bool ok) override {
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (ok) {
        if (out_.front().routed) answer_written_ = true;
        out_.pop_front();
      } else {
        broken_ = true;
        gone_.store(true);
        out_.clear();  // never written
      }
      NextActionsLocked(a);
    }
    Run(this, a);
  }

  void OnCancel() override {
    // Under mu_, which OnDone takes first: gRPC runs OnDone after OnCancel returns, ordered by
    // libgrpc++'s own atomics, which ThreadSanitizer cannot see (Debian's gRPC is not built with
    // it).
    absl::MutexLock lock(&mu_);
    gone_.store(true);
  }

  void OnDone() override {
    Outcome outcome;
    grpc::StatusCode code;
    {
      absl::MutexLock lock(&mu_);
      outcome = outcome_;
      code = finish_code_;
    }
    rt_->metrics().OnExtProcStreamEnded(OutcomeName(outcome));
    rt_->metrics().OnRequest("Process", code, rt_->clock().Now() - start_);
    delete this;
  }

  // The decision of this stream's query (exactly one per dispatched query).
  bool Deliver(const QueryTask&, const QueryAnswer& answer) override {
    Actions a;
    {
      absl::MutexLock lock(&mu_);
      task_outstanding_ = false;
      // Envoy can no longer take the answer: cancelled, half-closed, failed or broken.
      const bool dead = gone_.load() || reads_done_ || fail_.has_value() || broken_;
      if (answer.status.ok()) {
        const core::QueryOutcome& q = answer.batch != nullptr ? answer.batch->queries[answer.index]
                                                              : answer.decision->outcome;
        assignment_ = Assignment{q.assignment_id, q.model, q.cost_usd};
        if (dead) {
          SettleLocked(/*release=*/true, std::nullopt, /*undelivered=*/true);
        } else {
          AnswerRoutedLocked();
        }
      } else if (!dead) {
        RefuseLocked(answer.status);
      }
      NextActionsLocked(a);
    }
    Run(this, a);  // may end in OnDone: nothing of this reactor is touched after it
    return false;
  }

  bool Cancelled() const override { return gone_.load(); }

 private:
  struct Assignment {
    std::string id;
    std::string model;
    double predicted_cost_usd = 0.0;
  };

  // One answer to write, serialized; `routed` for the answer that carries the assignment.
  struct Outgoing {
    grpc::ByteBuffer buffer;
    bool routed = false;
  };

  // What to do once mu_ is released: gRPC may run reactions (even OnDone) before StartWrite or
  // Finish returns, and an inline decision is delivered inside Dispatch, so none of these is
  // called under mu_.
  struct Actions {
    std::unique_ptr<QueryTask> task;
    RoutingMode mode = RoutingMode::kBatch;
    bool read = false;
    const grpc::ByteBuffer* write = nullptr;
    std::optional<grpc::Status> finish;
  };

  // Static, and `call` is touched only for what this thread owns: the dispatch and the read
  // happen inside a reaction (the reactor is alive); the write and the finish are owned by this
  // thread (writing_ or finished_ was set for them) and may end in OnDone, so they come last.
  // Otherwise another thread may finish the stream (and OnDone delete it) as soon as mu_ is
  // released, and even a member call on a deleted reactor is undefined.
  static void Run(ExtProcCall* call, Actions& a) {
    if (a.task != nullptr) call->rt_->Dispatch(std::move(a.task), a.mode, *call->state_);
    if (a.read) call->StartRead(&call->raw_in_);
    if (a.write != nullptr) call->StartWrite(a.write);
    if (a.finish.has_value()) call->Finish(*a.finish);
  }

  // Starts the next write when none is in flight; finishes the stream when it is over and nothing
  // is outstanding; settles an assignment still open at the end.
  void NextActionsLocked(Actions& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (!writing_ && !out_.empty() && !broken_) {
      writing_ = true;
      a.write =
          &out_.front().buffer;  // stays valid: only OnWriteDone pops, after this write completes
      return;
    }
    if (writing_ || task_outstanding_ || handling_ || a.task != nullptr) return;
    const bool over = reads_done_ || phase_ == Phase::kClosed || fail_.has_value() || broken_;
    if (!over) return;
    finished_ = true;
    if (assignment_.has_value() && !settled_) {
      // The stream ended before the response did: the usage already read, if any, else nothing.
      std::optional<double> cost;
      const bool usable = UsageCostLocked(cost);
      SettleLocked(/*release=*/!usable, cost, /*undelivered=*/!answer_written_);
    }
    if (fail_.has_value()) {
      a.finish = *fail_;
    } else if (gone_.load() && !reads_done_) {
      a.finish = grpc::Status(grpc::StatusCode::CANCELLED, "Envoy cancelled the stream");
    } else if (broken_) {
      a.finish = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the stream broke while writing");
    } else {
      a.finish = grpc::Status::OK;
    }
    finish_code_ = a.finish->error_code();
  }

  // A protocol violation: the stream ends with INVALID_ARGUMENT (once nothing is outstanding).
  void FailLocked(const std::string& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    fail_ = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
    gone_.store(true);
    if (!assignment_.has_value() && outcome_ != Outcome::kRefused &&
        outcome_ != Outcome::kNotRouted) {
      outcome_ = Outcome::kProtocolError;
    }
    // Answers not yet being written are dropped: Envoy fails the request on the error.
    while (out_.size() > (writing_ ? 1u : 0u)) out_.pop_back();
  }

  // A message of a kind not expected now: the stream fails naming it.
  void ViolationLocked(absl::string_view why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    FailLocked(absl::StrCat("message ", messages_read_, " (", KindName(request_.request_case()),
                            "): ", why));
  }

  void Queue(const ep::ProcessingResponse& r, bool routed = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Outgoing& o = out_.emplace_back();
    SerializeAnswer(r, o.buffer);
    o.routed = routed;
  }

  // An immediate response ends the request; the stream is closed after it.
  void QueueImmediateLocked(ep::ProcessingResponse& r, int http_status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    rt_->metrics().OnExtProcImmediateResponse(http_status);
    Queue(r);
    phase_ = Phase::kClosed;
    outcome_ = Outcome::kRefused;
  }

  void RefuseLocked(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int http = 0;
    ep::ProcessingResponse r = Immediate(status, gateway().retry_after, &http);
    QueueImmediateLocked(r, http);
  }

  const GatewayConfig& gateway() const { return state_->config.gateway; }

  void HandleLocked(Actions& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const ep::ProcessingRequest& req = request_;
    const auto kind = req.request_case();
    if (messages_read_ == 1 && req.observability_mode()) {
      return ViolationLocked("observability_mode is not supported: routerd must answer to route");
    }
    switch (kind) {
      case ep::ProcessingRequest::kRequestHeaders:
        if (phase_ != Phase::kRequestHeaders) {
          return ViolationLocked("request headers were already sent");
        }
        return OnRequestHeadersLocked(req);
      case ep::ProcessingRequest::kRequestBody:
        if (phase_ != Phase::kRequestBody) {
          return ViolationLocked(phase_ == Phase::kRequestHeaders
                                     ? "the request headers come first"
                                     : "the request body already ended");
        }
        return OnRequestBodyLocked(req.request_body(), a);
      case ep::ProcessingRequest::kRequestTrailers: {
        if (phase_ == Phase::kRequestHeaders || phase_ == Phase::kDeciding) {
          return ViolationLocked("unexpected before the request is answered");
        }
        if (phase_ == Phase::kRequestBody) {
          // The body's answers are sent; the rewritten body cannot follow in a trailers answer.
          return RefuseLocked(gateway::BodyError(
              gateway::BodyErrorKind::kInvalid, "",
              "a request with trailers cannot be routed (its body must end the request)"));
        }
        ep::ProcessingResponse r;
        r.mutable_request_trailers();
        return Queue(r);
      }
      case ep::ProcessingRequest::kResponseHeaders:
        if (phase_ == Phase::kRequestHeaders || phase_ == Phase::kDeciding) {
          return ViolationLocked("the request was not answered yet");
        }
        if (phase_ != Phase::kRequestBody && phase_ != Phase::kResponseHeaders) {
          return ViolationLocked("response headers were already sent");
        }
        return OnResponseHeadersLocked(req.response_headers());
      case ep::ProcessingRequest::kResponseBody:
        if (phase_ == Phase::kRequestHeaders || phase_ == Phase::kRequestBody ||
            phase_ == Phase::kDeciding) {
          return ViolationLocked("the request was not answered yet");
        }
        return OnResponseBodyLocked(req.response_body());
      case ep::ProcessingRequest::kResponseTrailers: {
        if (phase_ == Phase::kRequestHeaders || phase_ == Phase::kRequestBody ||
            phase_ == Phase::kDeciding) {
          return ViolationLocked("the request was not answered yet");
        }
        if (phase_ == Phase::kResponseBody) EndResponseLocked();  // the body ended before them
        ep::ProcessingResponse r;
        r.mutable_response_trailers();
        return Queue(r);
      }
      case ep::ProcessingRequest::REQUEST_NOT_SET:
        return ViolationLocked("no request_headers, request_body, response_headers, ... set");
    }
  }

  void OnRequestHeadersLocked(const ep::ProcessingRequest& req) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const ep::HttpHeaders& h = req.request_headers();
    const GatewayConfig& g = gateway();
    const std::optional<std::string> method = FindHeader(h, ":method");
    const std::optional<std::string> path = FindHeader(h, ":path");
    absl::StatusOr<gateway::OpenAiEndpoint> endpoint = path.has_value()
                                                           ? gateway::EndpointFromPath(*path)
                                                           : absl::NotFoundError("no :path header");
    const bool skip = !g.skip_header.empty() && FindHeader(h, g.skip_header).has_value();
    ep::ProcessingResponse r;
    ep::CommonResponse* common = r.mutable_request_headers()->mutable_response();
    // A client must never pick a route by sending the model header itself.
    common->mutable_header_mutation()->add_remove_headers(g.options.model_header);
    common->set_clear_route_cache(true);
    if (method != "POST" || !endpoint.ok() || skip) {
      SetNothingMore(r);
      Queue(r);
      phase_ = Phase::kClosed;
      outcome_ = Outcome::kNotRouted;
      return;
    }
    int http = 0;
    if (req.has_protocol_config()) {
      const ep::ProtocolConfiguration& pc = req.protocol_config();
      if (pc.request_body_mode() != Mode::BUFFERED && pc.request_body_mode() != Mode::STREAMED) {
        ep::ProcessingResponse m =
            Misconfigured(absl::StrCat("the gateway sends request bodies to routerd in mode ",
                                       BodyModeName(pc.request_body_mode()),
                                       "; routing needs request_body_mode BUFFERED (or STREAMED)"),
                          &http);
        return QueueImmediateLocked(m, http);
      }
      response_body_off_ = pc.response_body_mode() == Mode::NONE;
    }
    if (h.end_of_stream()) {
      ep::ProcessingResponse m =
          Immediate(gateway::BodyError(gateway::BodyErrorKind::kNotJson, "",
                                       absl::StrCat("a request to ", *path, " needs a JSON body")),
                    g.retry_after, &http);
      return QueueImmediateLocked(m, http);
    }
    if (const std::optional<std::string> length = FindHeader(h, "content-length")) {
      int64_t bytes = 0;
      if (absl::SimpleAtoi(*length, &bytes) && bytes > g.options.request.max_body_bytes) {
        ep::ProcessingResponse m = Immediate(
            gateway::BodyError(gateway::BodyErrorKind::kTooLarge, "",
                               absl::StrCat("the body has ", bytes, " bytes, more than the ",
                                            g.options.request.max_body_bytes, " accepted")),
            g.retry_after, &http);
        return QueueImmediateLocked(m, http);
      }
    }
    absl::StatusOr<gateway::RequestBodyAccumulator> acc =
        gateway::RequestBodyAccumulator::Create(g.options.request, *endpoint);
    if (!acc.ok()) {  // the config was validated; kept for safety
      return RefuseLocked(absl::InternalError(acc.status().message()));
    }
    accumulator_.emplace(*std::move(acc));
    if (!g.tenant_header.empty()) tenant_ = FindHeader(h, g.tenant_header);
    request_id_ = FindHeader(h, "x-request-id").value_or("");
    trace_id_ = TraceIdOf(FindHeader(h, "traceparent").value_or(""));
    if (g.remove_accept_encoding) {
      common->mutable_header_mutation()->add_remove_headers("accept-encoding");
    }
    Queue(r);
    phase_ = Phase::kRequestBody;
  }

  void OnRequestBodyLocked(const ep::HttpBody& body, Actions& a)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const GatewayConfig& g = gateway();
    if (absl::Status s = accumulator_->Append(body.body()); !s.ok()) return RefuseLocked(s);
    if (!body.end_of_stream()) {
      // STREAMED mode: nothing goes upstream until the whole body is read.
      ep::ProcessingResponse r;
      r.mutable_request_body()->mutable_response()->mutable_body_mutation()->set_clear_body(true);
      ++chunks_held_;
      return Queue(r);
    }
    absl::StatusOr<gateway::OpenAiRequest> parsed = accumulator_->Finish();
    if (!parsed.ok()) return RefuseLocked(parsed.status());
    if (!parsed->route && !g.route_all) {
      if (!IsHeaderValue(parsed->model)) {
        return RefuseLocked(gateway::BodyError(gateway::BodyErrorKind::kInvalid, "model",
                                               "holds a control character"));
      }
      ep::ProcessingResponse r;
      ep::CommonResponse* common = r.mutable_request_body()->mutable_response();
      SetHeader(common->mutable_header_mutation(), g.options.model_header, parsed->model);
      common->set_clear_route_cache(true);
      if (chunks_held_ > 0) common->mutable_body_mutation()->set_body(accumulator_->body());
      Queue(r);
      accumulator_.reset();
      phase_ = Phase::kResponseHeaders;
      outcome_ = Outcome::kNotRouted;
      return;
    }
    request_stream_ = parsed->stream;
    v1::Query query;
    query.set_id(!request_id_.empty() && request_id_.size() <= kMaxQueryIdBytes
                     ? request_id_
                     : absl::StrCat("ext_proc-", next_stream_id.fetch_add(1)));
    query.set_text(std::move(parsed->prompt));
    if (tenant_.has_value()) {
      query.set_tenant(*tenant_);
    } else if (parsed->user.has_value()) {
      query.set_tenant(*parsed->user);
    }
    if (parsed->max_output_tokens.has_value()) query.set_output_tokens(*parsed->max_output_tokens);
    for (const std::string& m : g.models) query.add_allowed_models(m);
    const absl::Time now = rt_->clock().Now();
    // Admitted under the same tenant and connection bounds as Router calls (admission.h).
    const std::string connection =
        state_->config.max_queries_per_connection > 0 ? peer_ : std::string();
    absl::StatusOr<Intake> intake = TakeIn(
        query, "query", *state_, now, now + g.decision_timeout,
        [&](const v1::Query& q, RoutingMode mode) {
          return rt_->Admit(*state_, q.tenant(), connection, mode, /*check_queue=*/true);
        });
    if (!intake.ok()) return RefuseLocked(intake.status());
    task_outstanding_ = true;
    phase_ = Phase::kDeciding;
    a.task = std::make_unique<QueryTask>(this, 0, query.id(), std::move(intake->query),
                                         std::move(intake->ticket));
    a.task->set_trace_id(trace_id_);
    a.mode = intake->mode;
  }

  // The routed answer to the request body: the rewritten body, the model header, the route cache
  // cleared, the assignment in dynamic metadata.
  void AnswerRoutedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const GatewayConfig& g = gateway();
    gateway::RequestRewrite rewrite;
    rewrite.model = assignment_->model;
    rewrite.ensure_stream_usage = g.ensure_stream_usage;
    absl::StatusOr<gateway::RewrittenBody> body = accumulator_->Rewrite(rewrite);
    if (!body.ok()) {
      SettleLocked(/*release=*/true, std::nullopt, /*undelivered=*/true);
      return RefuseLocked(absl::InternalError(body.status().message()));
    }
    ep::ProcessingResponse r;
    ep::CommonResponse* common = r.mutable_request_body()->mutable_response();
    SetHeader(common->mutable_header_mutation(), g.options.model_header, assignment_->model);
    SetHeader(common->mutable_header_mutation(), "content-length", body->content_length);
    common->mutable_body_mutation()->set_body(std::move(body->body));
    common->set_clear_route_cache(true);
    google::protobuf::Struct& router =
        *(*r.mutable_dynamic_metadata()->mutable_fields())["router"].mutable_struct_value();
    auto& fields = *router.mutable_fields();
    fields["assignment_id"].set_string_value(assignment_->id);
    fields["model"].set_string_value(assignment_->model);
    fields["predicted_cost_usd"].set_number_value(assignment_->predicted_cost_usd);
    if (!trace_id_.empty()) fields["trace_id"].set_string_value(trace_id_);
    Queue(r, /*routed=*/true);
    accumulator_.reset();  // the body is not needed any more
    phase_ = Phase::kResponseHeaders;
  }

  void OnResponseHeadersLocked(const ep::HttpHeaders& h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ep::ProcessingResponse r;
    ep::CommonResponse* common = r.mutable_response_headers()->mutable_response();
    if (!assignment_.has_value()) {
      // Nothing to account for (not routed, or the request body never ended).
      SetNothingMore(r);
      if (phase_ == Phase::kRequestBody) outcome_ = Outcome::kNotRouted;
      phase_ = Phase::kResponseDone;
      return Queue(r);
    }
    SetHeader(common->mutable_header_mutation(), gateway().options.model_header,
              assignment_->model);
    const std::string status = FindHeader(h, ":status").value_or("");
    const bool success = status.size() == 3 && status[0] == '2';
    absl::StatusOr<gateway::ResponseFormat> format =
        gateway::ResponseFormatFromContentType(FindHeader(h, "content-type").value_or(""));
    if (!success) {
      // The provider refused or failed (or Envoy answered locally): no usable response.
      SettleLocked(/*release=*/true, std::nullopt, /*undelivered=*/false);
      SetNothingMore(r);
      phase_ = Phase::kResponseDone;
    } else if (h.end_of_stream() || response_body_off_ || !format.ok()) {
      // A response whose usage cannot be read: the predicted cost stays.
      SettleLocked(/*release=*/false, std::nullopt, /*undelivered=*/false);
      SetNothingMore(r);
      phase_ = Phase::kResponseDone;
    } else {
      StartUsageLocked(*format);
    }
    Queue(r);
  }

  void StartUsageLocked(gateway::ResponseFormat format) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::StatusOr<gateway::UsageReader> reader =
        gateway::UsageReader::Create(gateway().options.usage, format);
    if (reader.ok()) usage_reader_.emplace(*std::move(reader));
    phase_ = Phase::kResponseBody;
  }

  void OnResponseBodyLocked(const ep::HttpBody& body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (phase_ == Phase::kResponseHeaders && assignment_.has_value()) {
      // Response headers are not sent to routerd (response_header_mode SKIP): the format follows
      // the request's stream flag.
      StartUsageLocked(request_stream_ ? gateway::ResponseFormat::kServerSentEvents
                                       : gateway::ResponseFormat::kJson);
    }
    if (phase_ == Phase::kResponseBody && usage_reader_.has_value()) {
      (void)usage_reader_->Append(body.body());  // fails only after Finish, which ends the phase
      if (body.end_of_stream()) EndResponseLocked();
    }
    ep::ProcessingResponse r;
    r.mutable_response_body();
    Queue(r);
  }

  // The response body ended: complete at the usage's cost, or at the predicted cost.
  void EndResponseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::optional<double> cost;
    UsageCostLocked(cost);
    SettleLocked(/*release=*/false, cost, /*undelivered=*/false);
    phase_ = Phase::kResponseDone;
  }

  // Reads the usage (ending the reader) and prices it at the chosen model's token prices. True
  // when the response had usage; `cost` is set when the model also has both token prices.
  bool UsageCostLocked(std::optional<double>& cost) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!usage_reader_.has_value()) return false;
    absl::StatusOr<gateway::Usage> usage = usage_reader_->Finish();
    usage_reader_.reset();
    if (!usage.ok()) return false;
    const core::CostModel& costs = state_->predictor->cost_model();
    absl::StatusOr<int> index = costs.IndexOf(assignment_->model);
    if (!index.ok()) return true;
    const core::ModelCost& m = costs.models()[*index];
    if (!m.input_usd_per_mtok.has_value() || !m.output_usd_per_mtok.has_value()) return true;
    absl::StatusOr<double> usd =
        gateway::ActualCostUsd(*usage, {*m.input_usd_per_mtok, *m.output_usd_per_mtok});
    if (usd.ok()) cost = *usd;
    return true;
  }

  // Completes (at `cost`, or the predicted cost when nullopt) or releases (actual cost 0) the
  // assignment, once: later calls do nothing.
  void SettleLocked(bool release, std::optional<double> cost, bool undelivered)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!assignment_.has_value() || settled_) return;
    settled_ = true;
    absl::StatusOr<core::CompletionRecord> record =
        rt_->ledger().Complete(assignment_->id, release ? std::optional<double>(0.0) : cost);
    if (!release && cost.has_value() && absl::IsInvalidArgument(record.status())) {
      // A cost above budget.max_actual_cost_usd: the ledger changed nothing; the prediction stays.
      cost.reset();
      record = rt_->ledger().Complete(assignment_->id, std::nullopt);
    }
    if (!record.ok()) {
      // The lease then ends at its timeout, its predicted cost charged (ledger.h).
      outcome_ = absl::IsNotFound(record.status()) ? Outcome::kUnknownAssignment
                                                   : Outcome::kLedgerError;
      return;
    }
    if (release) {
      outcome_ = Outcome::kReleased;
      if (undelivered) rt_->metrics().OnUndelivered(assignment_->model);
    } else {
      outcome_ = cost.has_value() ? Outcome::kCompletedActual : Outcome::kCompletedPredicted;
      rt_->metrics().OnCompletion(record->predicted_cost_usd, record->recorded_cost_usd);
    }
    rt_->PublishLedgerGauges();
  }

  RouterRuntime* const rt_;
  const std::string peer_;
  const absl::Time start_;
  // The snapshot the stream is handled under (gateway options, pool, predictor, prices).
  const std::shared_ptr<const RuntimeState> state_;
  // The message being read: only the read reaction touches these (one read at a time).
  grpc::ByteBuffer raw_in_;
  ep::ProcessingRequest request_;
  // True once the peer cancelled, half-closed, broke the protocol or a write failed.
  std::atomic<bool> gone_{false};

  absl::Mutex mu_;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kRequestHeaders;
  Outcome outcome_ ABSL_GUARDED_BY(mu_) = Outcome::kAbandoned;
  int64_t messages_read_ ABSL_GUARDED_BY(mu_) = 0;
  // Answers to write, serialized; the front one is being written when writing_.
  std::deque<Outgoing> out_ ABSL_GUARDED_BY(mu_);
  bool handling_ ABSL_GUARDED_BY(mu_) = false;  // in OnReadDone, until its next read is started
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool task_outstanding_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> fail_ ABSL_GUARDED_BY(mu_);
  grpc::StatusCode finish_code_ ABSL_GUARDED_BY(mu_) = grpc::StatusCode::OK;
  // The request.
  std::optional<gateway::RequestBodyAccumulator> accumulator_ ABSL_GUARDED_BY(mu_);
  int64_t chunks_held_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<std::string> tenant_ ABSL_GUARDED_BY(mu_);
  std::string request_id_ ABSL_GUARDED_BY(mu_);
  std::string trace_id_ ABSL_GUARDED_BY(mu_);  // of the request's traceparent header; "" if none
  bool request_stream_ ABSL_GUARDED_BY(mu_) = false;
  bool response_body_off_ ABSL_GUARDED_BY(mu_) = false;
  // The assignment and its settlement (exactly once).
  std::optional<Assignment> assignment_ ABSL_GUARDED_BY(mu_);
  bool settled_ ABSL_GUARDED_BY(mu_) = false;
  bool answer_written_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<gateway::UsageReader> usage_reader_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* ExtProcService::Process(
    grpc::CallbackServerContext* ctx) {
  if (authorizer_ != nullptr) {
    if (absl::Status s = authorizer_->Check(*ctx); !s.ok()) {
      runtime_->metrics().OnRequest("Process", static_cast<grpc::StatusCode>(s.code()),
                                    absl::ZeroDuration());
      return RefusedStream(s);
    }
  }
  runtime_->NoteActivity();
  return new ExtProcCall(runtime_, ctx->peer());
}

}  // namespace router::server
