#include "server/gateway/openai_request.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "server/gateway/error_response.h"
#include "server/gateway/json_scan.h"

namespace router::server::gateway {
namespace {

using Json = nlohmann::json;

constexpr absl::string_view kChatPath = "/v1/chat/completions";
constexpr absl::string_view kCompletionsPath = "/v1/completions";

absl::Status Invalid(absl::string_view param, absl::string_view message) {
  return BodyError(BodyErrorKind::kInvalid, param, message);
}

absl::Status WrongType(absl::string_view param, absl::string_view expected, const Json& value) {
  return Invalid(param, absl::StrCat("expected ", expected, ", got ", value.type_name()));
}

// "syntax error while parsing value - invalid literal" out of nlohmann's what(), which also
// quotes the bytes it read last (left out: they are the client's data).
std::string ParseErrorReason(const Json::parse_error& e) {
  const std::string what = e.what();
  size_t start = what.find("column ");
  start = start == std::string::npos ? std::string::npos : what.find(": ", start);
  if (start == std::string::npos) return "syntax error";
  start += 2;
  const size_t end = what.find("; last read", start);
  return what.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

// A member of `object`, or nullptr when absent or null.
const Json* Optional(const Json& object, absl::string_view key) {
  auto it = object.find(std::string(key));
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::optional<int64_t>> OptionalCount(const Json& object, absl::string_view key) {
  const Json* value = Optional(object, key);
  if (value == nullptr) return std::optional<int64_t>();
  if (value->is_number_unsigned()) {
    const uint64_t v = value->get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid(key, absl::StrCat("too large (", v, ")"));
    }
    return std::optional<int64_t>(static_cast<int64_t>(v));
  }
  if (value->is_number_integer()) {  // signed, so negative here
    return Invalid(key, absl::StrCat("must be >= 0, got ", value->get<int64_t>()));
  }
  return WrongType(key, "a non-negative integer", *value);
}

absl::StatusOr<bool> OptionalBool(const Json& object, absl::string_view key,
                                  absl::string_view param) {
  const Json* value = Optional(object, key);
  if (value == nullptr) return false;
  if (!value->is_boolean()) return WrongType(param, "a boolean", *value);
  return value->get<bool>();
}

absl::StatusOr<std::string> ChatPrompt(const Json& root) {
  auto it = root.find("messages");
  if (it == root.end() || it->is_null()) return Invalid("messages", "required");
  if (!it->is_array()) return WrongType("messages", "an array of messages", *it);
  if (it->empty()) return BodyError(BodyErrorKind::kNoPrompt, "messages", "empty");
  std::vector<absl::string_view> texts;
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& message = (*it)[i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!message.is_object()) return WrongType(at, "an object", message);
    const Json* content = Optional(message, "content");
    if (content == nullptr) continue;
    if (content->is_string()) {
      texts.push_back(content->get_ref<const std::string&>());
      continue;
    }
    if (!content->is_array()) {
      return WrongType(absl::StrCat(at, ".content"), "a string or an array of parts", *content);
    }
    for (size_t j = 0; j < content->size(); ++j) {
      const Json& part = (*content)[j];
      const std::string part_at = absl::StrCat(at, ".content[", j, "]");
      if (!part.is_object()) return WrongType(part_at, "an object", part);
      auto type = part.find("type");
      if (type == part.end() || type->is_null()) {
        return Invalid(absl::StrCat(part_at, ".type"), "required");
      }
      if (!type->is_string()) return WrongType(absl::StrCat(part_at, ".type"), "a string", *type);
      if (type->get_ref<const std::string&>() != "text") continue;  // images, audio, files...
      auto text = part.find("text");
      if (text == part.end() || !text->is_string()) {
        return text == part.end()
                   ? Invalid(absl::StrCat(part_at, ".text"), "required for a part of type text")
                   : WrongType(absl::StrCat(part_at, ".text"), "a string", *text);
      }
      texts.push_back(text->get_ref<const std::string&>());
    }
  }
  texts.erase(std::remove(texts.begin(), texts.end(), absl::string_view()), texts.end());
  if (texts.empty()) {
    return BodyError(BodyErrorKind::kNoPrompt, "messages",
                     "no text content (only non-text parts or empty strings)");
  }
  return absl::StrJoin(texts, "\n");
}

absl::StatusOr<std::string> CompletionsPrompt(const Json& root) {
  const Json* prompt = Optional(root, "prompt");
  if (prompt == nullptr) return BodyError(BodyErrorKind::kNoPrompt, "prompt", "required");
  if (prompt->is_string()) {
    if (prompt->get_ref<const std::string&>().empty()) {
      return BodyError(BodyErrorKind::kNoPrompt, "prompt", "empty");
    }
    return prompt->get<std::string>();
  }
  if (!prompt->is_array()) {
    return WrongType("prompt", "a string or an array of strings", *prompt);
  }
  if (prompt->empty()) return BodyError(BodyErrorKind::kNoPrompt, "prompt", "empty");
  const Json& first = prompt->front();
  if (first.is_number_integer() || first.is_array()) {  // token ids, or arrays of them
    for (size_t i = 1; i < prompt->size(); ++i) {
      const Json& item = (*prompt)[i];
      if (first.is_array() ? !item.is_array() : !item.is_number_integer()) {
        return WrongType(absl::StrCat("prompt[", i, "]"),
                         first.is_array() ? "an array of token ids" : "a token id", item);
      }
    }
    return BodyError(BodyErrorKind::kNoPrompt, "prompt",
                     "token ids carry no text to route (send the prompt as text)");
  }
  std::vector<absl::string_view> texts;
  for (size_t i = 0; i < prompt->size(); ++i) {
    const Json& item = (*prompt)[i];
    if (!item.is_string()) return WrongType(absl::StrCat("prompt[", i, "]"), "a string", item);
    if (!item.get_ref<const std::string&>().empty()) {
      texts.push_back(item.get_ref<const std::string&>());
    }
  }
  if (texts.empty()) return BodyError(BodyErrorKind::kNoPrompt, "prompt", "only empty strings");
  return absl::StrJoin(texts, "\n");
}

}  // namespace

const char* EndpointPath(OpenAiEndpoint endpoint) {
  return endpoint == OpenAiEndpoint::kChatCompletions ? kChatPath.data() : kCompletionsPath.data();
}

absl::StatusOr<OpenAiEndpoint> EndpointFromPath(absl::string_view path) {
  const absl::string_view bare = path.substr(0, path.find_first_of("?#"));
  if (bare == kChatPath) return OpenAiEndpoint::kChatCompletions;
  if (bare == kCompletionsPath) return OpenAiEndpoint::kCompletions;
  return absl::NotFoundError(absl::StrCat(":path: \"", bare, "\" is not a routed endpoint (",
                                          kChatPath, " or ", kCompletionsPath, ")"));
}

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, absl::string_view body,
                                                 const RequestBodyOptions& options) {
  if (body.empty()) return BodyError(BodyErrorKind::kNotJson, "", "empty (expected a JSON object)");
  Json root;
  try {
    root = Json::parse(body.begin(), body.end());
  } catch (const Json::parse_error& e) {
    return BodyError(BodyErrorKind::kNotJson, "",
                     absl::StrCat("not JSON: ", ParseErrorReason(e), " (at byte ", e.byte, ")"));
  } catch (const Json::out_of_range&) {
    // nlohmann's parser throws out_of_range, not parse_error, for a number beyond a double.
    return BodyError(BodyErrorKind::kNotJson, "", "not JSON: a number too large for a double");
  }
  if (!root.is_object()) return WrongType("", "a JSON object", root);

  // nlohmann keeps one value per key; the raw members show whether a key came twice.
  absl::StatusOr<JsonObjectSpans> spans = ScanJsonObject(body, 0);
  if (!spans.ok()) return spans.status();
  if (spans->members.size() != root.size()) {
    absl::flat_hash_set<absl::string_view> seen;
    for (const JsonMember& m : spans->members) {
      if (!seen.insert(m.key).second) {
        return Invalid(m.key, "given more than once at the top level");
      }
    }
  }

  OpenAiRequest request;
  request.endpoint = endpoint;
  auto model = root.find("model");
  if (model == root.end() || model->is_null()) return Invalid("model", "required");
  if (!model->is_string()) return WrongType("model", "a string", *model);
  request.model = model->get<std::string>();
  request.route = std::find(options.routing_aliases.begin(), options.routing_aliases.end(),
                            request.model) != options.routing_aliases.end();

  absl::StatusOr<std::string> prompt =
      endpoint == OpenAiEndpoint::kChatCompletions ? ChatPrompt(root) : CompletionsPrompt(root);
  if (!prompt.ok()) return prompt.status();
  request.prompt = *std::move(prompt);

  if (const Json* user = Optional(root, "user"); user != nullptr) {
    if (!user->is_string()) return WrongType("user", "a string", *user);
    request.user = user->get<std::string>();
  }
  absl::StatusOr<std::optional<int64_t>> max_completion =
      OptionalCount(root, "max_completion_tokens");
  if (!max_completion.ok()) return max_completion.status();
  absl::StatusOr<std::optional<int64_t>> max_tokens = OptionalCount(root, "max_tokens");
  if (!max_tokens.ok()) return max_tokens.status();
  request.max_output_tokens = max_completion->has_value() ? *max_completion : *max_tokens;

  absl::StatusOr<bool> stream = OptionalBool(root, "stream", "stream");
  if (!stream.ok()) return stream.status();
  request.stream = *stream;
  if (const Json* stream_options = Optional(root, "stream_options"); stream_options != nullptr) {
    if (!stream_options->is_object()) {
      return WrongType("stream_options", "an object", *stream_options);
    }
    absl::StatusOr<bool> include_usage =
        OptionalBool(*stream_options, "include_usage", "stream_options.include_usage");
    if (!include_usage.ok()) return include_usage.status();
    request.stream_include_usage = *include_usage;
  }
  return request;
}

absl::StatusOr<RewrittenBody> RewriteOpenAiBody(absl::string_view body, const OpenAiRequest& parsed,
                                                const RequestRewrite& rewrite) {
  struct Edit {
    size_t begin;
    size_t end;
    std::string text;
  };
  std::vector<Edit> edits;
  absl::StatusOr<JsonObjectSpans> root = ScanJsonObject(body, 0);
  if (!root.ok()) return root.status();
  auto member = [&](absl::string_view key) -> const JsonMember* {
    for (const JsonMember& m : root->members) {
      if (m.key == key) return &m;
    }
    return nullptr;
  };

  if (rewrite.model.has_value()) {
    const JsonMember* model = member("model");
    if (model == nullptr) {
      return absl::FailedPreconditionError("rewrite: the body has no top-level model");
    }
    std::string value;
    try {
      value = Json(*rewrite.model).dump();
    } catch (const Json::type_error&) {
      return absl::InvalidArgumentError("rewrite.model: not valid UTF-8");
    }
    edits.push_back({model->value_begin, model->value_end, std::move(value)});
  }

  if (rewrite.ensure_stream_usage && parsed.stream && !parsed.stream_include_usage) {
    const JsonMember* options = member("stream_options");
    if (options == nullptr) {
      // After the last member's value (there is one: `model`), before any whitespace and '}'.
      if (root->members.empty()) {
        return absl::FailedPreconditionError("rewrite: the body has no members");
      }
      const size_t at = root->members.back().value_end;
      edits.push_back({at, at, R"(,"stream_options":{"include_usage":true})"});
    } else if (body[options->value_begin] != '{') {  // null
      edits.push_back({options->value_begin, options->value_end, R"({"include_usage":true})"});
    } else {
      absl::StatusOr<JsonObjectSpans> inner = ScanJsonObject(body, options->value_begin);
      if (!inner.ok()) return inner.status();
      auto include = std::find_if(inner->members.begin(), inner->members.end(),
                                  [](const JsonMember& m) { return m.key == "include_usage"; });
      if (include != inner->members.end()) {  // false or null
        edits.push_back({include->value_begin, include->value_end, "true"});
      } else {
        const size_t at = inner->open + 1;
        edits.push_back(
            {at, at,
             inner->members.empty() ? R"("include_usage":true)" : R"("include_usage":true,)"});
      }
    }
  }

  std::sort(edits.begin(), edits.end(),
            [](const Edit& a, const Edit& b) { return a.begin < b.begin; });
  RewrittenBody out;
  size_t extra = 0;
  for (const Edit& e : edits) extra += e.text.size();
  out.body.reserve(body.size() + extra);
  size_t at = 0;
  for (const Edit& e : edits) {
    out.body.append(body.data() + at, e.begin - at);
    out.body.append(e.text);
    at = e.end;
  }
  out.body.append(body.data() + at, body.size() - at);
  out.content_length = absl::StrCat(out.body.size());
  return out;
}

absl::StatusOr<RequestBodyAccumulator> RequestBodyAccumulator::Create(
    const RequestBodyOptions& options, OpenAiEndpoint endpoint) {
  if (absl::Status s = ValidateRequestBodyOptions(options); !s.ok()) return s;
  return RequestBodyAccumulator(options, endpoint);
}

absl::Status RequestBodyAccumulator::Append(absl::string_view chunk) {
  if (finished_) return absl::FailedPreconditionError("request body: already finished");
  if (!error_.ok()) return error_;
  received_ += static_cast<int64_t>(chunk.size());
  if (received_ > options_.max_body_bytes) {
    error_ = BodyError(
        BodyErrorKind::kTooLarge, "",
        absl::StrCat("longer than ", options_.max_body_bytes, " bytes (request.max_body_bytes; ",
                     received_, " bytes received so far)"));
    std::string().swap(body_);
    return error_;
  }
  body_.append(chunk.data(), chunk.size());
  return absl::OkStatus();
}

absl::StatusOr<OpenAiRequest> RequestBodyAccumulator::Finish() {
  if (finished_) return absl::FailedPreconditionError("request body: already finished");
  finished_ = true;
  if (!error_.ok()) return error_;
  absl::StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(endpoint_, body_, options_);
  if (parsed.ok()) parsed_ = *parsed;
  return parsed;
}

absl::StatusOr<RewrittenBody> RequestBodyAccumulator::Rewrite(const RequestRewrite& rewrite) const {
  if (!parsed_.has_value()) {
    return absl::FailedPreconditionError("request body: Rewrite needs a successful Finish first");
  }
  return RewriteOpenAiBody(body_, *parsed_, rewrite);
}

}  // namespace router::server::gateway
