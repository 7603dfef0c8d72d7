// libFuzzer target of the gateway adapters' request-body reader (openai_request.h), what routerd's
// Envoy ext_proc service reads from every HTTP request it is sent: the body arrives in up to four
// chunks (RequestBodyAccumulator::Append) and is parsed at its end (Finish). The first byte picks
// the endpoint (bit 0), whether the rewrite asks for stream usage (bit 1) and where the body is
// cut (bits 2-7); the rest is the body. Any body gives an OpenAiRequest or a refusal
// (INVALID_ARGUMENT, with a message), never a crash, a hang or unbounded memory. A request to
// route must have a non-empty prompt, and its body rewritten for another model must parse again
// to the same request with that model.
// Seeds: openai_request_fuzz_corpus/. Run: build-fuzz/bin/openai_request_fuzz DIR.

#include <cstddef>
#include <cstdint>

#include "server/gateway/gateway_options.h"
#include "server/gateway/openai_request.h"
#include "tests/router_core/testing/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace router::server::gateway;
  namespace testing = router::core::testing;
  if (size < 1) return 0;
  const OpenAiEndpoint endpoint =
      (data[0] & 1) != 0 ? OpenAiEndpoint::kCompletions : OpenAiEndpoint::kChatCompletions;
  const absl::string_view body = testing::FuzzText(data + 1, size - 1);
  absl::StatusOr<RequestBodyAccumulator> accumulator =
      RequestBodyAccumulator::Create(RequestBodyOptions(), endpoint);
  testing::CheckInvariant(accumulator.ok(), "the default options are valid");
  // Cuts at 1/64 steps of the body: up to four chunks, some of them empty.
  const size_t cut = (data[0] >> 2) * body.size() / 64;
  for (const absl::string_view chunk :
       {body.substr(0, cut / 2), body.substr(cut / 2, cut - cut / 2), body.substr(cut, 0),
        body.substr(cut)}) {
    testing::CheckInvariant(accumulator->Append(chunk).ok(), "a short body is accepted");
  }
  const absl::StatusOr<OpenAiRequest> request = accumulator->Finish();
  if (!request.ok()) {
    testing::CheckRefusal("RequestBodyAccumulator::Finish", request.status());
    return 0;
  }
  testing::CheckInvariant(!request->prompt.empty(), "a parsed request has a prompt");
  if (!request->route) return 0;
  RequestRewrite rewrite;
  rewrite.model = "claude-v1";
  rewrite.ensure_stream_usage = (data[0] & 2) != 0;
  const absl::StatusOr<RewrittenBody> rewritten = accumulator->Rewrite(rewrite);
  testing::CheckInvariant(rewritten.ok(), "a parsed body can be rewritten");
  const absl::StatusOr<OpenAiRequest> again =
      ParseOpenAiRequest(endpoint, rewritten->body, RequestBodyOptions());
  testing::CheckInvariant(again.ok(), "a rewritten body parses");
  testing::CheckInvariant(again->model == "claude-v1" && !again->route &&
                              again->prompt == request->prompt && again->user == request->user &&
                              again->max_output_tokens == request->max_output_tokens &&
                              again->stream == request->stream,
                          "the rewrite changes the model and nothing the router reads");
  return 0;
}
