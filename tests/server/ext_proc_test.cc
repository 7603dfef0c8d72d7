// End-to-end tests of routerd's Envoy external processor (server/ext_proc_call.h), in process over
// loopback TCP, with a client built from our ext_proc protos playing Envoy's side of each stream:
// buffered and streamed request bodies (chunk boundaries anywhere in the JSON), named models passed
// through, aliases routed, bad bodies, budget and slot refusals, draining, the traceparent header's
// trace id in the decision log, usage from JSON and server-sent event responses priced at the
// model's token prices, aborts and half-closes in every phase, and 2,000 concurrent streams with
// random aborts after which every assignment was completed or released exactly once and the ledger
// holds nothing.

#include <atomic>
#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/routerd.h"
#include "tests/router_core/testing/status_matchers.h"
#include "tests/server/http_get.h"
#include "tests/server/routerd_fixture.h"

namespace router::server {
namespace {

namespace ep = envoy::service::ext_proc::v3;
using Mode = envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;

constexpr char kPriced[] = "priced-model";
constexpr double kInputPrice = 3.0;    // USD per million prompt tokens
constexpr double kOutputPrice = 15.0;  // USD per million completion tokens
constexpr char kLocal[] = "mistralai/mixtral-8x7b-chat";

std::string ConfigYaml(const std::string& extra = "") {
  return absl::StrCat(R"(
listen: 127.0.0.1:0
metrics_listen: 127.0.0.1:0
batching: {max_batch_size: 64, max_batch_delay_ms: 2, max_queued: 100000}
budget: {lease_timeout_s: 600}
shutdown: {grace_s: 5, drain_s: 0}
models:
  - {name: "gpt-4-1106-preview"}
  - {name: "gpt-3.5-turbo-1106"}
  - {name: "claude-instant-v1"}
  - {name: ")",
                      kLocal, R"(", instances: 2, slots_per_instance: 3}
gateway: {listen: "127.0.0.1:0", tenant_header: x-tenant, skip_header: x-skip-router}
)",
                      extra, "\n");
}

// --- Envoy's messages ------------------------------------------------------------------------

void AddHeader(ep::HttpHeaders* h, const std::string& key, const std::string& value) {
  auto* v = h->mutable_headers()->add_headers();
  v->set_key(key);
  v->set_raw_value(value);
}

ep::ProcessingRequest RequestHeaders(
    const std::string& path, size_t body_bytes, Mode::BodySendMode body_mode = Mode::BUFFERED,
    const std::vector<std::pair<std::string, std::string>>& extra = {},
    const std::string& method = "POST", bool end_of_stream = false) {
  ep::ProcessingRequest r;
  ep::HttpHeaders* h = r.mutable_request_headers();
  AddHeader(h, ":method", method);
  AddHeader(h, ":path", path);
  AddHeader(h, ":authority", "gateway.local");
  AddHeader(h, "content-type", "application/json");
  AddHeader(h, "content-length", std::to_string(body_bytes));
  AddHeader(h, "x-gateway-model-name", "client-picked");  // must never survive
  for (const auto& [k, v] : extra) AddHeader(h, k, v);
  h->set_end_of_stream(end_of_stream);
  r.mutable_protocol_config()->set_request_body_mode(body_mode);
  r.mutable_protocol_config()->set_response_body_mode(Mode::STREAMED);
  return r;
}

ep::ProcessingRequest RequestBody(const std::string& bytes, bool end_of_stream) {
  ep::ProcessingRequest r;
  r.mutable_request_body()->set_body(bytes);
  r.mutable_request_body()->set_end_of_stream(end_of_stream);
  return r;
}

ep::ProcessingRequest ResponseHeaders(int status, const std::string& content_type,
                                      bool end_of_stream = false) {
  ep::ProcessingRequest r;
  ep::HttpHeaders* h = r.mutable_response_headers();
  AddHeader(h, ":status", std::to_string(status));
  AddHeader(h, "content-type", content_type);
  h->set_end_of_stream(end_of_stream);
  return r;
}

ep::ProcessingRequest ResponseBody(const std::string& bytes, bool end_of_stream) {
  ep::ProcessingRequest r;
  r.mutable_response_body()->set_body(bytes);
  r.mutable_response_body()->set_end_of_stream(end_of_stream);
  return r;
}

std::string ChatBody(const std::string& model, const std::string& prompt, bool stream = false,
                     const std::string& extra = "") {
  nlohmann::json body = {{"model", model},
                         {"messages", {{{"role", "user"}, {"content", prompt}}}},
                         {"max_tokens", 64}};
  if (stream) body["stream"] = true;
  std::string text = body.dump();
  if (!extra.empty()) text.insert(text.size() - 1, "," + extra);
  return text;
}

std::string JsonResponse(const std::string& model, std::optional<std::pair<int, int>> usage) {
  nlohmann::json body = {
      {"id", "chatcmpl-1"},
      {"object", "chat.completion"},
      {"model", model},
      {"choices",
       {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", "Carbon dioxide."}}}}}}};
  if (usage) {
    body["usage"] = {{"prompt_tokens", usage->first},
                     {"completion_tokens", usage->second},
                     {"total_tokens", usage->first + usage->second}};
  }
  return body.dump();
}

// A streamed completion: content events with "usage":null, then the usage event, then [DONE].
std::string SseResponse(const std::string& model, std::optional<std::pair<int, int>> usage) {
  std::string out;
  for (const char* word : {"Carbon", " dioxide", "."}) {
    nlohmann::json e = {{"object", "chat.completion.chunk"},
                        {"model", model},
                        {"choices", {{{"index", 0}, {"delta", {{"content", word}}}}}}};
    if (usage) e["usage"] = nullptr;
    out += "data: " + e.dump() + "\n\n";
  }
  if (usage) {
    nlohmann::json e = {
        {"object", "chat.completion.chunk"},
        {"model", model},
        {"choices", nlohmann::json::array()},
        {"usage", {{"prompt_tokens", usage->first}, {"completion_tokens", usage->second}}}};
    out += "data: " + e.dump() + "\n\n";
  }
  return out + "data: [DONE]\n\n";
}

double PricedCost(int prompt_tokens, int completion_tokens) {
  return (prompt_tokens * kInputPrice + completion_tokens * kOutputPrice) / 1e6;
}

// The value of `name` set by a header mutation, if any.
std::optional<std::string> SetHeaderValue(const ep::HeaderMutation& m, const std::string& name) {
  for (const auto& o : m.set_headers()) {
    if (o.header().key() == name) return o.header().raw_value();
  }
  return std::nullopt;
}

bool Removes(const ep::HeaderMutation& m, const std::string& name) {
  for (const std::string& r : m.remove_headers()) {
    if (r == name) return true;
  }
  return false;
}

std::string MetadataString(const ep::ProcessingResponse& r, const std::string& key) {
  const auto& fields = r.dynamic_metadata().fields();
  auto router = fields.find("router");
  if (router == fields.end()) return "";
  const auto& inner = router->second.struct_value().fields();
  auto it = inner.find(key);
  return it == inner.end() ? "" : it->second.string_value();
}

double MetadataNumber(const ep::ProcessingResponse& r, const std::string& key) {
  const auto& inner = r.dynamic_metadata().fields().at("router").struct_value().fields();
  return inner.at(key).number_value();
}

// --- Envoy's side of one stream, synchronously ----------------------------------------------

class EnvoyStream {
 public:
  explicit EnvoyStream(ep::ExternalProcessor::Stub* stub) {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    rw_ = stub->Process(&ctx_);
  }
  // Sends `r` and returns its answer (nullopt if the stream ended instead).
  std::optional<ep::ProcessingResponse> Exchange(const ep::ProcessingRequest& r) {
    if (!rw_->Write(r)) return std::nullopt;
    return Read();
  }
  bool Write(const ep::ProcessingRequest& r) { return rw_->Write(r); }
  std::optional<ep::ProcessingResponse> Read() {
    ep::ProcessingResponse out;
    if (!rw_->Read(&out)) return std::nullopt;
    return out;
  }
  // Half-closes; the processor must then end the stream without another message.
  grpc::Status Close() {
    rw_->WritesDone();
    ep::ProcessingResponse extra;
    EXPECT_FALSE(rw_->Read(&extra)) << extra.DebugString();
    return rw_->Finish();
  }
  // The stream as the processor ended it (it closed it without being half-closed).
  grpc::Status Ended() {
    ep::ProcessingResponse extra;
    EXPECT_FALSE(rw_->Read(&extra)) << extra.DebugString();
    return rw_->Finish();
  }
  void Cancel() { ctx_.TryCancel(); }
  grpc::Status FinishCancelled() {
    ep::ProcessingResponse ignored;
    while (rw_->Read(&ignored)) {
    }
    return rw_->Finish();
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<ep::ProcessingRequest, ep::ProcessingResponse>> rw_;
};

using testing::HttpGet;

class ExtProcTest : public testing::RouterdFixture {
 protected:
  void SetUp() override { Start(ConfigYaml()); }

  void Start(const std::string& yaml) {
    StartRouterd(yaml);
    if (HasFatalFailure()) return;
    stub_ = ep::ExternalProcessor::NewStub(channel_);
    AddPricedModel();
  }

  // An API model with token prices, added at runtime with validation results (as
  // RouterAdmin.UpsertModel does): the shipped estimator's models have per-call costs only.
  void AddPricedModel() {
    NewModel nm;
    const char* texts[] = {"Which gas do plants absorb?",
                           "Write a haiku about rain.",
                           "Prove that there are infinitely many primes.",
                           "Translate 'good morning' into French.",
                           "What is 17 times 23?",
                           "Summarize the plot of Hamlet in two sentences."};
    for (int k = 0; k < 24; ++k) {
      nm.texts.push_back(absl::StrCat(texts[k % 6], " (", k, ")"));
      nm.scores.push_back(k % 4 == 0 ? 0.0 : 1.0);
    }
    nm.input_usd_per_mtok = kInputPrice;
    nm.output_usd_per_mtok = kOutputPrice;
    ModelDeploymentConfig deployment;
    deployment.name = kPriced;
    ASSERT_THAT(routerd_->runtime().UpsertModel(deployment, nm), IsOk());
  }

  // Routes gateway requests only to `models`, and applies `change` to the rest of the config.
  void SetGateway(std::vector<std::string> models,
                  const std::function<void(RouterConfig&)>& change = nullptr) {
    RouterConfig c = routerd_->runtime().state()->config;
    c.gateway.models = std::move(models);
    if (change) change(c);
    ASSERT_THAT(routerd_->runtime().UpdateConfig(c, std::nullopt, false), IsOk());
  }

  core::LedgerTotals Totals() {
    absl::StatusOr<core::LedgerTotals> totals = routerd_->runtime().ledger().Totals();
    EXPECT_THAT(totals, IsOk());
    return totals.ok() ? *totals : core::LedgerTotals{};
  }

  std::string Scrape() { return HttpGet(routerd_->metrics_port(), "/metrics"); }
  // The value of one series ("name{labels}" as exported), 0 when absent.
  double Metric(const std::string& series) {
    const std::string text = Scrape();
    const size_t at = text.find("\n" + series + " ");
    if (at == std::string::npos) return 0;
    return std::stod(text.substr(at + series.size() + 2));
  }
  double Outcome(const std::string& outcome) {
    return Metric(absl::StrCat("router_ext_proc_streams_total{outcome=\"", outcome, "\"}"));
  }
  // The sum of a labelled family's series.
  double Sum(const std::string& family) {
    double sum = 0;
    for (absl::string_view line : absl::StrSplit(Scrape(), '\n')) {
      if (absl::StartsWith(line, family + "{")) {
        sum += std::stod(std::string(line.substr(line.rfind(' ') + 1)));
      }
    }
    return sum;
  }
  // Waits (bounded) until every ext_proc stream has ended on the server side.
  bool AllStreamsEnded(absl::Duration limit = absl::Seconds(30)) {
    const absl::Time until = absl::Now() + limit;
    while (absl::Now() < until) {
      if (Metric("router_ext_proc_open_streams") == 0) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  // Plays the request phase of a routed or passed-through request with a buffered body; returns
  // the answer to the body.
  std::optional<ep::ProcessingResponse> SendRequest(
      EnvoyStream& s, const std::string& body,
      const std::vector<std::pair<std::string, std::string>>& extra = {}) {
    std::optional<ep::ProcessingResponse> h =
        s.Exchange(RequestHeaders("/v1/chat/completions", body.size(), Mode::BUFFERED, extra));
    EXPECT_TRUE(h.has_value());
    if (!h.has_value() || !h->has_request_headers()) return h;
    return s.Exchange(RequestBody(body, true));
  }

  std::unique_ptr<ep::ExternalProcessor::Stub> stub_;
};

// --- Request phase ----------------------------------------------------------------------------

TEST_F(ExtProcTest, AnAliasIsRoutedAndTheResponseUsageCompletesItAtTheModelsPrices) {
  SetGateway({kPriced});
  const double recorded_before = Totals().recorded_usd;
  EnvoyStream s(stub_.get());
  const std::string body = ChatBody("auto", "Which gas do plants absorb from the air?", false,
                                    R"("seed":12345678901234567890)");
  std::optional<ep::ProcessingResponse> h =
      s.Exchange(RequestHeaders("/v1/chat/completions", body.size(), Mode::BUFFERED,
                                {{"accept-encoding", "gzip"}, {"x-tenant", "team-a"}}));
  ASSERT_TRUE(h.has_value());
  ASSERT_TRUE(h->has_request_headers()) << h->DebugString();
  EXPECT_TRUE(Removes(h->request_headers().response().header_mutation(), "x-gateway-model-name"));
  EXPECT_TRUE(Removes(h->request_headers().response().header_mutation(), "accept-encoding"));

  std::optional<ep::ProcessingResponse> b = s.Exchange(RequestBody(body, true));
  ASSERT_TRUE(b.has_value());
  ASSERT_TRUE(b->has_request_body()) << b->DebugString();
  const ep::CommonResponse& common = b->request_body().response();
  EXPECT_TRUE(common.clear_route_cache());
  EXPECT_EQ(SetHeaderValue(common.header_mutation(), "x-gateway-model-name"), kPriced);
  const std::string rewritten = common.body_mutation().body();
  EXPECT_EQ(SetHeaderValue(common.header_mutation(), "content-length"),
            std::to_string(rewritten.size()));
  nlohmann::json parsed = nlohmann::json::parse(rewritten);
  EXPECT_EQ(parsed["model"], kPriced);
  EXPECT_EQ(parsed["messages"][0]["content"], "Which gas do plants absorb from the air?");
  // Every other byte is the client's: the 64-bit seed is not rounded through a double.
  EXPECT_THAT(rewritten, HasSubstr(R"("seed":12345678901234567890)"));
  const std::string assignment = MetadataString(*b, "assignment_id");
  EXPECT_FALSE(assignment.empty());
  EXPECT_EQ(MetadataString(*b, "model"), kPriced);
  EXPECT_GT(MetadataNumber(*b, "predicted_cost_usd"), 0);
  EXPECT_EQ(Totals().open_assignments, 1);

  std::optional<ep::ProcessingResponse> rh = s.Exchange(ResponseHeaders(200, "application/json"));
  ASSERT_TRUE(rh.has_value());
  ASSERT_TRUE(rh->has_response_headers()) << rh->DebugString();
  EXPECT_EQ(
      SetHeaderValue(rh->response_headers().response().header_mutation(), "x-gateway-model-name"),
      kPriced);
  EXPECT_FALSE(rh->has_mode_override());
  const std::string response = JsonResponse(kPriced, std::pair{1000, 500});
  const size_t cut = response.find("\"usage\"") + 4;  // a chunk boundary inside the usage key
  std::optional<ep::ProcessingResponse> c1 =
      s.Exchange(ResponseBody(response.substr(0, cut), false));
  ASSERT_TRUE(c1.has_value() && c1->has_response_body());
  EXPECT_FALSE(c1->response_body().response().has_body_mutation());  // unchanged
  EXPECT_EQ(Totals().open_assignments, 1);
  std::optional<ep::ProcessingResponse> c2 = s.Exchange(ResponseBody(response.substr(cut), true));
  ASSERT_TRUE(c2.has_value() && c2->has_response_body());
  EXPECT_EQ(Totals().open_assignments, 0);
  EXPECT_NEAR(Totals().recorded_usd - recorded_before, PricedCost(1000, 500), 1e-12);
  EXPECT_TRUE(s.Close().ok());
  ASSERT_TRUE(AllStreamsEnded());
  EXPECT_EQ(Outcome("completed_actual"), 1);
  EXPECT_EQ(Metric("router_requests_total{code=\"OK\",method=\"Process\"}"), 1);
}

TEST_F(ExtProcTest, StreamedBodiesAreRoutedWhateverTheChunkBoundaries) {
  SetGateway({kPriced, "gpt-3.5-turbo-1106"});
  const std::string body =
      ChatBody("auto", "Caf\xc3\xa9 au lait: \\\"quoted\\\" \xe2\x82\xac and more", false,
               R"("temperature":0.25)");
  // Every split into two chunks (inside keys, strings, escapes and UTF-8 characters), and some
  // three-chunk splits.
  std::vector<std::vector<size_t>> splits;
  for (size_t cut = 0; cut <= body.size(); ++cut) splits.push_back({cut});
  std::mt19937 rng(5);
  for (int k = 0; k < 20; ++k) {
    size_t a = rng() % (body.size() + 1), b = rng() % (body.size() + 1);
    splits.push_back({std::min(a, b), std::max(a, b)});
  }
  for (const std::vector<size_t>& cuts : splits) {
    SCOPED_TRACE(
        absl::StrCat("cuts at ", cuts[0], cuts.size() > 1 ? absl::StrCat(", ", cuts[1]) : ""));
    EnvoyStream s(stub_.get());
    std::optional<ep::ProcessingResponse> h =
        s.Exchange(RequestHeaders("/v1/chat/completions", body.size(), Mode::STREAMED));
    ASSERT_TRUE(h.has_value() && h->has_request_headers());
    std::vector<std::string> chunks;
    size_t from = 0;
    for (size_t cut : cuts) {
      chunks.push_back(body.substr(from, cut - from));
      from = cut;
    }
    chunks.push_back(body.substr(from));
    // Envoy sends the chunks without waiting for their answers.
    for (size_t k = 0; k < chunks.size(); ++k) {
      ASSERT_TRUE(s.Write(RequestBody(chunks[k], k + 1 == chunks.size())));
    }
    std::string forwarded;
    std::string model;
    for (size_t k = 0; k < chunks.size(); ++k) {
      std::optional<ep::ProcessingResponse> a = s.Read();
      ASSERT_TRUE(a.has_value() && a->has_request_body()) << (a ? a->DebugString() : "ended");
      const ep::BodyMutation& m = a->request_body().response().body_mutation();
      if (k + 1 < chunks.size()) {
        EXPECT_TRUE(m.clear_body());  // held back: nothing goes upstream before the decision
      } else {
        forwarded = m.body();
        model = MetadataString(*a, "model");
      }
    }
    nlohmann::json parsed = nlohmann::json::parse(forwarded);
    EXPECT_EQ(parsed["model"], model);
    EXPECT_TRUE(model == kPriced || model == "gpt-3.5-turbo-1106") << model;
    EXPECT_EQ(parsed["messages"][0]["content"],
              nlohmann::json::parse(body)["messages"][0]["content"]);
    EXPECT_EQ(parsed["temperature"], 0.25);
    // A response without usage: completed at the predicted cost.
    ASSERT_TRUE(s.Exchange(ResponseHeaders(200, "application/json")).has_value());
    ASSERT_TRUE(s.Exchange(ResponseBody(JsonResponse(model, std::nullopt), true)).has_value());
    EXPECT_TRUE(s.Close().ok());
  }
  EXPECT_EQ(Totals().open_assignments, 0);
  ASSERT_TRUE(AllStreamsEnded());
  EXPECT_EQ(Outcome("completed_predicted"), static_cast<double>(splits.size()));
}

TEST_F(ExtProcTest, ANamedModelPassesThroughWithoutAnAssignment) {
  const std::string body = ChatBody("gpt-4-1106-preview", "Hello");
  const std::vector<std::string> chunks = {body.substr(0, 9), body.substr(9)};  // inside "model"
  EnvoyStream s(stub_.get());
  ASSERT_TRUE(s.Exchange(RequestHeaders("/v1/chat/completions", body.size(), Mode::STREAMED)));
  std::optional<ep::ProcessingResponse> first = s.Exchange(RequestBody(chunks[0], false));
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->request_body().response().body_mutation().clear_body());
  std::optional<ep::ProcessingResponse> last = s.Exchange(RequestBody(chunks[1], true));
  ASSERT_TRUE(last.has_value() && last->has_request_body()) << last->DebugString();
  const ep::CommonResponse& common = last->request_body().response();
  EXPECT_EQ(SetHeaderValue(common.header_mutation(), "x-gateway-model-name"), "gpt-4-1106-preview");
  EXPECT_TRUE(common.clear_route_cache());
  EXPECT_EQ(common.body_mutation().body(), body);  // the held-back chunk, restored unchanged
  EXPECT_FALSE(last->has_dynamic_metadata());
  EXPECT_EQ(Totals().open_assignments, 0);
  std::optional<ep::ProcessingResponse> rh = s.Exchange(ResponseHeaders(200, "application/json"));
  ASSERT_TRUE(rh.has_value());
  // Nothing to account for: the response body is not wanted.
  EXPECT_EQ(rh->mode_override().response_body_mode(), Mode::NONE);
  EXPECT_TRUE(s.Close().ok());
  ASSERT_TRUE(AllStreamsEnded());
  EXPECT_EQ(Outcome("not_routed"), 1);
  EXPECT_EQ(Sum("router_assignments_total"), 0);
}

TEST_F(ExtProcTest, RouteAllRoutesNamedModelsToo) {
  SetGateway({kPriced}, [](RouterConfig& c) { c.gateway.route_all = true; });
  EnvoyStream s(stub_.get());
  std::optional<ep::ProcessingResponse> b = SendRequest(s, ChatBody("gpt-4-1106-preview", "Hi"));
  ASSERT_TRUE(b.has_value() && b->has_request_body()) << b->DebugString();
  EXPECT_EQ(MetadataString(*b, "model"), kPriced);
  s.Cancel();
  s.FinishCancelled();
  ASSERT_TRUE(AllStreamsEnded());
  EXPECT_EQ(Totals().open_assignments, 0);
}

TEST_F(ExtProcTest, PathsMethodsAndTheSkipHeaderPassThroughAndTheStreamCloses) {
  struct Case {
    std::string path, method;
    std::vector<std::pair<std::string, std::string>> extra;
  };
  for (const Case& c : {Case{"/v1/embeddings", "POST", {}}, Case{"/v1/models", "GET", {}},
                        Case{"/v1/chat/completions", "POST", {{"x-skip-router", "1"}}}}) {
    SCOPED_TRACE(c.path + " " + c.method);
    EnvoyStream s(stub_.get());
    std::optional<ep::ProcessingResponse> h =
        s.Exchange(RequestHeaders(c.path, 10, Mode::BUFFERED, c.extra, c.method));
    ASSERT_TRUE(h.has_value() && h->has_request_headers());
    EXPECT_TRUE(Removes(h->request_headers().response().header_mutation(), "x-gateway-model-name"));
    EXPECT_TRUE(h->request_headers().response().clear_route_cache());
    EXPECT_EQ(h->mode_override().request_body_mode(), Mode::NONE);
    EXPECT_EQ(h->mode_override().response_header_mode(), Mode::SKIP);
    EXPECT_EQ(h->mode_override().response_body_mode(), Mode::NONE);
    EXPECT_TRUE(s.Ended().ok());  // closed by routerd: Envoy continues without it
  }
  ASSERT_TRUE(AllStreamsEnded());
  EXPECT_EQ(Outcome("not_routed"), 3);
}

// Expects an immediate response with `status`, a JSON error body whose code is `code`, and
// returns it.
ep::ImmediateResponse ExpectImmediate(const std::optional<ep::ProcessingResponse>& r, int status,
                                      const std::string& code) {
  EXPECT_TRUE(r.has_value());
  if (!r.has_value()) return {};
  EXPECT_TRUE(r->has_immediate_response()) << r->DebugString();
  const ep::ImmediateResponse& ir = r->immediate_response();
  EXPECT_EQ(static_cast<int>(ir.status().code()), status);
  EXPECT_EQ(SetHeaderValue(ir.headers(), "content-type"), "application/json");
  nlohmann::json body = nlohmann::json::parse(ir.body(), nullptr, false);
  EXPECT_FALSE(body.is_discarded()) << ir.body();
  if (!body.is_discarded()) {
    EXPECT_EQ(body["error"]["code"], code) << ir.body();
  }
  return ir;
}

TEST_F(ExtProcTest, BadBodiesGetA400WithAJsonErrorAtOnce) {
  struct Case {
    std::string body, code;
  };
  for (
      const Case& c :
      {Case{"{\"model\": \"auto\", \"messages\": [", "invalid_json"},
       Case{"not json at all", "invalid_json"},
       Case{
           R"({"model":"auto","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]})",
           "no_prompt"},
       Case{R"({"model":"auto","messages":"hello"})", "invalid_request"},
       Case{R"({"messages":[{"role":"user","content":"hi"}]})", "invalid_request"}}) {
    SCOPED_TRACE(c.body);
    EnvoyStream s(stub_.get());
    ExpectImmediate(SendRequest(s, c.body), 400, c.code);
    EXPECT_TRUE(s.Ended().ok());
  }
  // No body at all, and a declared length over the limit: refused at the headers.
  {
    EnvoyStream s(stub_.get());
    ExpectImmediate(s.Exchange(RequestHeaders("/v1/completions", 0, Mode::BUFFERED, {}, "POST",
                                              /*end_of_stream=*/true)),
                    400, "invalid_json");
  }
  {
    EnvoyStream s(stub_.get());
    ExpectImmediate(s.Exchange(RequestHeaders("/v1/chat/completions", 5 << 20)), 413,
                    "request_too_large");
  }
  ASSERT_TRUE(AllStreamsEnded());
  EXPECT_EQ(Outcome("refused"), 7);
  EXPECT_EQ(Metric("router_ext_proc_immediate_responses_total{code=\"400\"}"), 6);
  EXPECT_EQ(Metric("router_ext_proc_immediate_responses_total{code=\"413\"}"), 1);
  EXPECT_EQ(Totals().open_assignments, 0);
}

TEST_F(ExtProcTest, ARequestBodyModeRouterdCannotRouteWithIsA500NamingIt) {
  EnvoyStream s(stub_.get());
  ep::ImmediateResponse ir =
      ExpectImmediate(s.Exchange(RequestHeaders("/v1/chat/completions", 10, Mode::NONE)), 500,
                      "gateway_misconfigured");
  EXPECT_THAT(ir.body(), HasSubstr("BUFFERED"));
}

TEST_F(ExtProcTest, ABudgetRefusalIsA429WithRetryAfter) {
  SetGateway({"gpt-4-1106-preview"}, [](RouterConfig& c) {
    c.policy.avg_cost_cap_usd = 1e-9;
    c.gateway.retry_after = absl::Seconds(3);
  });
  EnvoyStream s(stub_.get());
  ep::ImmediateResponse ir = ExpectImmediate(
      SendRequest(s, ChatBody("auto", "Explain quantum tunnelling.")), 429, "resource_exhausted");
  EXPECT_EQ(SetHeaderValue(ir.headers(), "retry-after"), "3");
  EXPECT_TRUE(s.Ended().ok());
  EXPECT_EQ(Totals().open_assignments, 0);
}

TEST_F(ExtProcTest, FullSlotsAreA429WithRetryAfterUntilAStreamReleasesOne) {
  SetGateway({kLocal});  // 2 instances x 3 slots
  constexpr int kSlots = 6;
  std::vector<std::unique_ptr<EnvoyStream>> holders;
  for (int k = 0; k < kSlots; ++k) {
    holders.push_back(std::make_unique<EnvoyStream>(stub_.get()));
    std::optional<ep::ProcessingResponse> b =
        SendRequest(*holders.back(), ChatBody("auto", absl::StrCat("Question ", k)));
    ASSERT_TRUE(b.has_value() && b->has_request_body()) << (b ? b->DebugString() : "ended");
    EXPECT_EQ(MetadataString(*b, "model"), kLocal);
  }
  EXPECT_EQ(Totals().open_assignments, kSlots);
  {
    EnvoyStream s(stub_.get());
    ep::ImmediateResponse ir = ExpectImmediate(SendRequest(s, ChatBody("auto", "One too many")),
                                               429, "resource_exhausted");
    EXPECT_EQ(SetHeaderValue(ir.headers(), "retry-after"), "1");
    EXPECT_THAT(ir.body(), HasSubstr("slots"));
    EXPECT_TRUE(s.Ended().ok());
  }
  // The client of one holder goes away: its slot is free again at once.
  holders.front()->Cancel();
  holders.front()->FinishCancelled();
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (Totals().open_assignments != kSlots - 1 && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  {
    EnvoyStream s(stub_.get());
    std::optional<ep::ProcessingResponse> b = SendRequest(s, ChatBody("auto", "Now there is room"));
    ASSERT_TRUE(b.has_value() && b->has_request_body()) << (b ? b->DebugString() : "ended");
    EXPECT_EQ(MetadataString(*b, "model"), kLocal);
    s.Cancel();
    s.FinishCancelled();
  }
  for (size_t k = 1; k < holders.size(); ++k) {
    holders[k]->Cancel();
    holders[k]->FinishCancelled();
  }
  ASSERT_TRUE(AllStreamsEnded());
  EXPECT_EQ(Totals().open_assignments, 0);
  EXPECT_EQ(Outcome("released"), kSlots + 1);
  EXPECT_EQ(Metric("router_ext_proc_immediate_responses_total{code=\"429\"}"), 1);
}

TEST_F(ExtProcTest, DrainingIsA503WithRetryAfter) {
  routerd_->runtime().StopAccepting();
  EnvoyStream s(stub_.get());
  ep::ImmediateResponse ir =
      ExpectImmediate(SendRequest(s, ChatBody("auto", "Hello")), 503, "unavailable");
  EXPECT_EQ(SetHeaderValue(ir.headers(), "retry-after"), "1");
  EXPECT_THAT(ir.body(), HasSubstr("shutting down"));
  EXPECT_TRUE(s.Ended().ok());
}

TEST_F(ExtProcTest, ThePromptRefusedByIntakeIsA400) {
  SetGateway({}, [](RouterConfig& c) { c.max_text_bytes = 16; });
  EnvoyStream s(stub_.get());
  ep::ImmediateResponse ir =
      ExpectImmediate(SendRequest(s, ChatBody("auto", "a prompt longer than sixteen bytes")), 400,
                      "invalid_argument");
  EXPECT_THAT(ir.body(), HasSubstr("limits.max_text_bytes"));
}

TEST_F(ExtProcTest, TheOwnListenerServesExtProcToo) {
  ASSERT_GT(routerd_->ext_proc_port(), 0);
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", routerd_->ext_proc_port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = ep::ExternalProcessor::NewStub(channel);
  SetGateway({kPriced});
  EnvoyStream s(stub.get());
  std::optional<ep::ProcessingResponse> b = SendRequest(s, ChatBody("auto", "Hello there"));
  ASSERT_TRUE(b.has_value() && b->has_request_body()) << b->DebugString();
  EXPECT_EQ(MetadataString(*b, "model"), kPriced);
  ASSERT_TRUE(s.Exchange(ResponseHeaders(200, "text/event-stream")).has_value());
  ASSERT_TRUE(s.Exchange(ResponseBody(SseResponse(kPriced, std::pair{10, 20}), true)).has_value());
  EXPECT_TRUE(s.Close().ok());
  EXPECT_EQ(Totals().open_assignments, 0);
}

TEST_F(ExtProcTest, TheTraceparentHeadersTraceIdReachesTheDecisionLogAndTheMetadata) {
  SetGateway({kPriced}, [](RouterConfig& c) {
    c.log_decisions = true;
    c.log_format = LogFormat::kJson;
  });
  constexpr char kTraceId[] = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string traceparent = absl::StrCat("00-", kTraceId, "-00f067aa0ba902b7-01");
  struct Case {
    std::string query_id, traceparent, trace_id;
  };
  const std::vector<Case> cases = {
      {"traced", traceparent, kTraceId},
      {"badly-traced", absl::StrCat("00-", kTraceId, "-0000000000000000-01"), ""},  // zero parent
      {"untraced", "", ""}};
  ::testing::internal::CaptureStderr();
  std::map<std::string, std::string> metadata_trace_id;
  for (const Case& c : cases) {
    std::vector<std::pair<std::string, std::string>> headers = {{"x-request-id", c.query_id}};
    if (!c.traceparent.empty()) headers.emplace_back("traceparent", c.traceparent);
    EnvoyStream s(stub_.get());
    std::optional<ep::ProcessingResponse> b =
        SendRequest(s, ChatBody("auto", "Which gas do plants absorb?"), headers);
    ASSERT_TRUE(b.has_value() && b->has_request_body()) << (b ? b->DebugString() : "ended");
    EXPECT_EQ(MetadataString(*b, "model"), kPriced);
    metadata_trace_id[c.query_id] = MetadataString(*b, "trace_id");
    const auto& router = b->dynamic_metadata().fields().at("router").struct_value().fields();
    EXPECT_EQ(router.contains("trace_id"), !c.trace_id.empty()) << c.query_id;
    s.Cancel();
    s.FinishCancelled();
  }
  ASSERT_TRUE(AllStreamsEnded());
  const std::string log = ::testing::internal::GetCapturedStderr();
  std::map<std::string, std::string> logged_trace_id;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (!absl::StartsWith(line, "{")) continue;
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.value("event", "") != "decision") continue;
    EXPECT_EQ(j.value("code", ""), "OK") << line;
    logged_trace_id[j.value("query_id", "")] = j.value("trace_id", "");
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.query_id);
    ASSERT_TRUE(logged_trace_id.contains(c.query_id)) << log;
    EXPECT_EQ(logged_trace_id[c.query_id], c.trace_id);
    EXPECT_EQ(metadata_trace_id[c.query_id], c.trace_id);
  }
  EXPECT_EQ(Totals().open_assignments, 0);
}

// --- Response phase -------------------------------------------------------------------------

TEST_F(ExtProcTest, StreamedResponsesCompleteFromTheLastEventsUsage) {
  SetGateway({kPriced});
  const double recorded_before = Totals().recorded_usd;
  EnvoyStream s(stub_.get());
  std::optional<ep::ProcessingResponse> b = SendRequest(s, ChatBody("auto", "Tell a story", true));
  ASSERT_TRUE(b.has_value() && b->has_request_body()) << b->DebugString();
  // The request asked for no usage: routerd asks for it so that the last event carries it.
  nlohmann::json forwarded =
      nlohmann::json::parse(b->request_body().response().body_mutation().body());
  EXPECT_EQ(forwarded["stream_options"]["include_usage"], true);
  ASSERT_TRUE(s.Exchange(ResponseHeaders(200, "text/event-stream; charset=utf-8")).has_value());
  const std::string sse = SseResponse(kPriced, std::pair{321, 123});
  // Seven-byte chunks: boundaries inside "data:", inside JSON and between CR/LF.
  for (size_t at = 0; at < sse.size(); at += 7) {
    const bool last = at + 7 >= sse.size();
    std::optional<ep::ProcessingResponse> a = s.Exchange(ResponseBody(sse.substr(at, 7), last));
    ASSERT_TRUE(a.has_value() && a->has_response_body());
    EXPECT_FALSE(a->response_body().response().has_body_mutation());
    if (!last) {
      EXPECT_EQ(Totals().open_assignments, 1);
    }
  }
  EXPECT_EQ(Totals().open_assignments, 0);
  EXPECT_NEAR(Totals().recorded_usd - recorded_before, PricedCost(321, 123), 1e-12);
  EXPECT_TRUE(s.Close().ok());
}

TEST_F(ExtProcTest, AModelWithoutTokenPricesIsCompletedAtItsPredictedCost) {
  SetGateway({"gpt-3.5-turbo-1106"});
  const double recorded_before = Totals().recorded_usd;
  EnvoyStream s(stub_.get());
  std::optional<ep::ProcessingResponse> b = SendRequest(s, ChatBody("auto", "Hello"));
  ASSERT_TRUE(b.has_value() && b->has_request_body());
  const double predicted = MetadataNumber(*b, "predicted_cost_usd");
  ASSERT_TRUE(s.Exchange(ResponseHeaders(200, "application/json")).has_value());
  ASSERT_TRUE(
      s.Exchange(ResponseBody(JsonResponse("gpt-3.5-turbo-1106", std::pair{100, 100}), true)));
  EXPECT_EQ(Totals().open_assignments, 0);
  EXPECT_NEAR(Totals().recorded_usd - recorded_before, predicted, 1e-12);
  EXPECT_TRUE(s.Close().ok());
  ASSERT_TRUE(AllStreamsEnded());
  EXPECT_EQ(Outcome("completed_predicted"), 1);
}

TEST_F(ExtProcTest, AnUpstreamErrorReleasesTheAssignmentAtItsHeaders) {
  SetGateway({kPriced});
  const double recorded_before = Totals().recorded_usd;
  EnvoyStream s(stub_.get());
  ASSERT_TRUE(SendRequest(s, ChatBody("auto", "Hello")).has_value());
  EXPECT_EQ(Totals().open_assignments, 1);
  std::optional<ep::ProcessingResponse> rh = s.Exchange(ResponseHeaders(503, "application/json"));
  ASSERT_TRUE(rh.has_value() && rh->has_response_headers());
  EXPECT_EQ(rh->mode_override().response_body_mode(), Mode::NONE);
  EXPECT_EQ(Totals().open_assignments, 0);  // at once, not at the end of the stream
  EXPECT_NEAR(Totals().recorded_usd - recorded_before, 0, 1e-12);
  EXPECT_TRUE(s.Close().ok());
  ASSERT_TRUE(AllStreamsEnded());
  EXPECT_EQ(Outcome("released"), 1);
}

// --- Aborts ---------------------------------------------------------------------------------

// Where a stream stops, and how.
enum class Stop { kCancel, kHalfClose };

TEST_F(ExtProcTest, AnAbortInEveryPhaseReleasesTheAssignmentExactlyOnce) {
  SetGateway({kPriced});
  const std::string body = ChatBody("auto", "Which gas do plants absorb?");
  const std::string response = JsonResponse(kPriced, std::pair{50, 60});
  // The messages of a whole exchange (`buffered`), and of one cut inside a STREAMED request body
  // (between two chunks: no query was made yet); an abort comes after the answer to message `k`.
  const std::vector<ep::ProcessingRequest> buffered = {
      RequestHeaders("/v1/chat/completions", body.size()), RequestBody(body, true),
      ResponseHeaders(200, "application/json"), ResponseBody(response.substr(0, 40), false)};
  const std::vector<ep::ProcessingRequest> streamed = {
      RequestHeaders("/v1/chat/completions", body.size(), Mode::STREAMED),
      RequestBody(body.substr(0, body.size() / 2), false)};
  double released = 0, abandoned = 0;
  for (const std::vector<ep::ProcessingRequest>* script : {&buffered, &streamed}) {
    for (Stop stop : {Stop::kCancel, Stop::kHalfClose}) {
      for (size_t k = 0; k < script->size(); ++k) {
        SCOPED_TRACE(absl::StrCat(script == &buffered ? "buffered, " : "streamed, ",
                                  stop == Stop::kCancel ? "cancel" : "half-close", " after ", k));
        EnvoyStream s(stub_.get());
        for (size_t m = 0; m <= k; ++m) ASSERT_TRUE(s.Exchange((*script)[m]).has_value());
        (script == &buffered && k >= 1 ? released : abandoned) += 1;
        if (stop == Stop::kCancel) {
          s.Cancel();
          EXPECT_EQ(s.FinishCancelled().error_code(), grpc::StatusCode::CANCELLED);
        } else {
          EXPECT_TRUE(s.Close().ok());
        }
        ASSERT_TRUE(AllStreamsEnded());
        EXPECT_EQ(Totals().open_assignments, 0);
      }
    }
  }
  // Between sending the body and its answer: the decision is delivered to a stream that is gone.
  for (Stop stop : {Stop::kCancel, Stop::kHalfClose}) {
    EnvoyStream s(stub_.get());
    ASSERT_TRUE(s.Exchange(buffered[0]).has_value());
    ASSERT_TRUE(s.Write(buffered[1]));
    if (stop == Stop::kCancel) {
      s.Cancel();
      s.FinishCancelled();
    } else {
      s.Close().ok();  // an answer may or may not have been written first
    }
  }
  ASSERT_TRUE(AllStreamsEnded());
  EXPECT_EQ(Totals().open_assignments, 0);
  // Every assignment was released (the two last streams may or may not have got one).
  EXPECT_EQ(Outcome("released"), Sum("router_assignments_total"));
  EXPECT_GE(Outcome("released"), released);
  EXPECT_GE(Outcome("abandoned"), abandoned);
  EXPECT_EQ(Outcome("completed_actual") + Outcome("completed_predicted"), 0);
  EXPECT_EQ(Outcome("unknown_assignment"), 0);
}

TEST_F(ExtProcTest, AnAbortAfterTheUsageEventCompletesWithTheUsage) {
  SetGateway({kPriced});
  const double recorded_before = Totals().recorded_usd;
  EnvoyStream s(stub_.get());
  ASSERT_TRUE(SendRequest(s, ChatBody("auto", "Hi", true)).has_value());
  ASSERT_TRUE(s.Exchange(ResponseHeaders(200, "text/event-stream")).has_value());
  const std::string sse = SseResponse(kPriced, std::pair{7, 9});
  const size_t done = sse.find("data: [DONE]");
  ASSERT_TRUE(s.Exchange(ResponseBody(sse.substr(0, done), false)).has_value());
  EXPECT_EQ(Totals().open_assignments, 1);
  s.Cancel();  // before [DONE] and the end of the body
  s.FinishCancelled();
  ASSERT_TRUE(AllStreamsEnded());
  EXPECT_EQ(Totals().open_assignments, 0);
  EXPECT_NEAR(Totals().recorded_usd - recorded_before, PricedCost(7, 9), 1e-12);
  EXPECT_EQ(Outcome("completed_actual"), 1);
}

TEST_F(ExtProcTest, ProtocolViolationsEndTheStreamWithInvalidArgumentAndReleaseTheAssignment) {
  SetGateway({kPriced});
  {  // A body before the headers.
    EnvoyStream s(stub_.get());
    ASSERT_TRUE(s.Write(RequestBody("{}", true)));
    grpc::Status st = s.FinishCancelled();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(st.error_message(), HasSubstr("request_body"));
  }
  {  // Response headers before the request was answered... after an assignment was made.
    EnvoyStream s(stub_.get());
    ASSERT_TRUE(SendRequest(s, ChatBody("auto", "Hello")).has_value());
    ASSERT_TRUE(s.Exchange(ResponseHeaders(200, "application/json")).has_value());
    ASSERT_TRUE(s.Write(ResponseHeaders(200, "application/json")));  // a second time
    grpc::Status st = s.FinishCancelled();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(st.error_message(), HasSubstr("already"));
  }
  {  // observability mode.
    EnvoyStream s(stub_.get());
    ep::ProcessingRequest r = RequestHeaders("/v1/chat/completions", 10);
    r.set_observability_mode(true);
    ASSERT_TRUE(s.Write(r));
    EXPECT_EQ(s.FinishCancelled().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  ASSERT_TRUE(AllStreamsEnded());
  EXPECT_EQ(Totals().open_assignments, 0);
  EXPECT_EQ(Outcome("protocol_error"), 2);
  EXPECT_EQ(Outcome("released"), 1);
}

// --- Load ---------------------------------------------------------------------------------

// One stream played from a script of messages, lock-step (each answer awaited), with an optional
// stop: after `stop_event` events (sending message i is event 2i, receiving its answer 2i+1) the
// stream is cancelled or half-closed.
class ScriptedStream final
    : public grpc::ClientBidiReactor<ep::ProcessingRequest, ep::ProcessingResponse> {
 public:
  ScriptedStream(ep::ExternalProcessor::Stub* stub, std::vector<ep::ProcessingRequest> script,
                 int stop_event, Stop stop, std::function<void()> on_done)
      : script_(std::move(script)),
        stop_event_(stop_event),
        stop_(stop),
        on_done_(std::move(on_done)) {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    stub->async()->Process(&ctx_, this);
    // The first operations go before StartCall: once the call is started a quick refusal can end
    // it, and gRPC frees its stream, before a StartWrite made after StartCall.
    Next();
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Drain();
    ++events_;
    if (StopNow()) return;
    StartRead(&answer_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended (a drain read, or routerd closed it)
    if (draining_) return StartRead(&answer_);
    ++events_;
    answers_.push_back(answer_);
    if (answer_.has_immediate_response() || StopNow()) return;
    if (answer_.has_request_headers() && answer_.has_mode_override() &&
        answer_.mode_override().request_body_mode() == Mode::NONE) {
      return Drain();  // passed through: routerd closes the stream
    }
    Next();
  }
  void OnDone(const grpc::Status& s) override {
    status_ = s;
    on_done_();
  }

  const std::vector<ep::ProcessingResponse>& answers() const { return answers_; }
  const grpc::Status& status() const { return status_; }
  // Every message was sent and answered, and the stream was half-closed.
  bool played_out() const { return played_out_; }

 private:
  void Next() {
    const size_t i = static_cast<size_t>(events_ / 2);
    if (StopNow()) return;
    if (i == script_.size()) {
      played_out_ = true;
      StartWritesDone();
      return Drain();
    }
    StartWrite(&script_[i]);
  }
  bool StopNow() {
    if (events_ != stop_event_) return false;
    if (stop_ == Stop::kCancel) {
      ctx_.TryCancel();
    } else {
      StartWritesDone();
    }
    Drain();
    return true;
  }
  void Drain() {
    if (draining_) return;
    draining_ = true;
    StartRead(&answer_);
  }

  grpc::ClientContext ctx_;
  std::vector<ep::ProcessingRequest> script_;
  const int stop_event_;
  const Stop stop_;
  std::function<void()> on_done_;
  int events_ = 0;
  bool draining_ = false;
  bool played_out_ = false;
  ep::ProcessingResponse answer_;
  std::vector<ep::ProcessingResponse> answers_;
  grpc::Status status_;
};

TEST_F(ExtProcTest, TwoThousandConcurrentStreamsWithRandomAbortsSettleEveryAssignmentOnce) {
  constexpr int kStreams = 2000;
  // The priced model, and the self-hosted one whose 6 slots fill up under this load.
  SetGateway({kPriced, kLocal});
  const double recorded_before = Totals().recorded_usd;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<ep::ExternalProcessor::Stub>> stubs;
  for (int k = 0; k < 4; ++k) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", k);  // four connections, not one shared
    channels.push_back(grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", routerd_->port()),
                                                 grpc::InsecureChannelCredentials(), args));
    stubs.push_back(ep::ExternalProcessor::NewStub(channels.back()));
  }
  struct Plan {
    std::pair<int, int> usage{0, 0};
    bool usage_sent = false;
  };
  std::vector<Plan> plans(kStreams);
  std::vector<std::unique_ptr<ScriptedStream>> streams;
  std::atomic<int> done{0};
  absl::Notification all_done;
  std::mt19937 rng(11);
  int cancelled_before_sending = 0;  // such a stream may never reach routerd
  for (int k = 0; k < kStreams; ++k) {
    const int kind = static_cast<int>(rng() % 10);  // 0: bad body, 1: named model, else alias
    const bool stream_response = rng() % 2 == 0;
    const std::string model = kind == 1 ? "gpt-4-1106-preview" : "auto";
    const std::string body =
        kind == 0 ? "{\"model\":\"auto\",\"messages\":["
                  : ChatBody(model, absl::StrCat("Question ", k, ": which gas do plants absorb?"),
                             stream_response);
    std::vector<ep::ProcessingRequest> script;
    const bool chunked = rng() % 3 == 0;
    script.push_back(RequestHeaders("/v1/chat/completions", body.size(),
                                    chunked ? Mode::STREAMED : Mode::BUFFERED));
    if (chunked) {
      const size_t cut = rng() % (body.size() + 1);
      script.push_back(RequestBody(body.substr(0, cut), false));
      script.push_back(RequestBody(body.substr(cut), true));
    } else {
      script.push_back(RequestBody(body, true));
    }
    const bool with_usage = rng() % 5 != 0;
    plans[k].usage = {static_cast<int>(rng() % 2000), static_cast<int>(rng() % 1000)};
    plans[k].usage_sent = with_usage;
    const std::optional<std::pair<int, int>> usage =
        with_usage ? std::optional(plans[k].usage) : std::nullopt;
    const int status = rng() % 20 == 0 ? 500 : 200;
    script.push_back(
        ResponseHeaders(status, stream_response ? "text/event-stream" : "application/json"));
    // The model the response names does not matter to routerd.
    const std::string response =
        stream_response ? SseResponse("m", usage) : JsonResponse("m", usage);
    // Cut before the usage event: a stop after the first half never sees the usage.
    const size_t half = std::min(response.size() / 2, response.find("\"usage\":{"));
    script.push_back(ResponseBody(response.substr(0, half), false));
    script.push_back(ResponseBody(response.substr(half), true));
    // A third play out; the rest stop at a random event before the end of the response body (a
    // stop before the last message's answer: the response never ends).
    const int events = static_cast<int>(script.size()) * 2;
    const int stop_event = rng() % 3 == 0 ? -1 : static_cast<int>(rng() % (events - 1));
    const Stop stop = rng() % 2 == 0 ? Stop::kCancel : Stop::kHalfClose;
    if (stop_event == 0 && stop == Stop::kCancel) ++cancelled_before_sending;
    streams.push_back(std::make_unique<ScriptedStream>(stubs[k % stubs.size()].get(),
                                                       std::move(script), stop_event, stop, [&] {
                                                         if (done.fetch_add(1) + 1 == kStreams)
                                                           all_done.Notify();
                                                       }));
  }
  ASSERT_TRUE(all_done.WaitForNotificationWithTimeout(absl::Seconds(240)));
  ASSERT_TRUE(AllStreamsEnded());

  // What the clients saw: assignments, and the cost each fully played stream must have recorded.
  std::set<std::string> ids;
  double expected_recorded = 0;
  int played_out_routed = 0;
  for (int k = 0; k < kStreams; ++k) {
    const ScriptedStream& s = *streams[k];
    std::string id, model;
    double predicted = 0;
    bool upstream_error = false;
    for (const ep::ProcessingResponse& a : s.answers()) {
      if (a.has_request_body() && a.has_dynamic_metadata()) {
        id = MetadataString(a, "assignment_id");
        model = MetadataString(a, "model");
        predicted = MetadataNumber(a, "predicted_cost_usd");
      }
      if (a.has_response_headers() && a.has_mode_override()) {
        upstream_error = true;
      }
    }
    if (id.empty()) continue;
    EXPECT_TRUE(ids.insert(id).second) << "assignment " << id << " handed out twice";
    if (s.played_out() && !upstream_error) {
      ++played_out_routed;
      EXPECT_TRUE(s.status().ok()) << s.status().error_message();
      expected_recorded += model == kPriced && plans[k].usage_sent
                               ? PricedCost(plans[k].usage.first, plans[k].usage.second)
                               : predicted;
    }
  }
  const double assignments = Sum("router_assignments_total");
  const double completed = Outcome("completed_actual") + Outcome("completed_predicted");
  const double released = Outcome("released");
  EXPECT_EQ(Totals().open_assignments, 0);
  EXPECT_EQ(Metric(absl::StrCat("router_model_capacity_utilization_ratio{model=\"", kLocal, "\"}")),
            0);
  EXPECT_EQ(completed + released, assignments);  // every assignment settled, none twice
  EXPECT_EQ(Outcome("unknown_assignment"), 0);
  EXPECT_EQ(completed, played_out_routed);
  EXPECT_GE(assignments, static_cast<double>(ids.size()));
  EXPECT_GT(released, 100);
  EXPECT_GT(Outcome("completed_actual"), 100);
  EXPECT_GT(Outcome("completed_predicted"), 10);
  EXPECT_NEAR(Totals().recorded_usd - recorded_before, expected_recorded, 1e-9);
  EXPECT_LE(Sum("router_ext_proc_streams_total"), kStreams);
  EXPECT_GE(Sum("router_ext_proc_streams_total"), kStreams - cancelled_before_sending);
  EXPECT_GT(Outcome("refused"), 50);
  EXPECT_GT(Outcome("not_routed"), 50);
  std::cout << "streams: " << kStreams << ", assignments " << assignments << " (completed "
            << completed << ", released " << released << "), refused " << Outcome("refused")
            << ", not routed " << Outcome("not_routed") << ", abandoned " << Outcome("abandoned")
            << "\n";
}

}  // namespace
}  // namespace router::server
