#include "router_core/json/json_reader.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace router::core {
namespace {

using Json = nlohmann::json;

// Largest integer a double holds exactly; integral floats beyond it are refused as integers.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

// Records the parser's message (with its byte position) when the text is not JSON. Only run once
// the non-throwing DOM parse has already failed.
class ParseErrorRecorder : public nlohmann::json_sax<Json> {
 public:
  bool null() override { return true; }
  bool boolean(bool /*val*/) override { return true; }
  bool number_integer(number_integer_t /*val*/) override { return true; }
  bool number_unsigned(number_unsigned_t /*val*/) override { return true; }
  bool number_float(number_float_t /*val*/, const string_t& /*s*/) override { return true; }
  bool string(string_t& /*val*/) override { return true; }
  bool binary(binary_t& /*val*/) override { return true; }
  bool start_object(std::size_t /*elements*/) override { return true; }
  bool key(string_t& /*val*/) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t /*elements*/) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& ex) override {
    std::string what = ex.what();
    // Drop the "[json.exception.parse_error.101] " tag; keep the human part.
    if (absl::StartsWith(what, "[json.exception.")) {
      const size_t end = what.find("] ");
      if (end != std::string::npos) what.erase(0, end + 2);
    }
    message_ = absl::StrCat(what, " (byte ", position, ")");
    return false;
  }

  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

}  // namespace

absl::StatusOr<Json> ParseJsonText(absl::string_view text) {
  Json root = Json::parse(text.begin(), text.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (!root.is_discarded()) return root;
  ParseErrorRecorder recorder;
  Json::sax_parse(text.begin(), text.end(), &recorder);
  const std::string& message = recorder.message();
  return absl::InvalidArgumentError(
      absl::StrCat("invalid JSON: ", message.empty() ? "parse error" : message));
}

absl::Status JsonReader::Error(absl::string_view what) const {
  return absl::InvalidArgumentError(absl::StrCat(name(), ": ", what));
}

absl::Status JsonReader::WrongType(absl::string_view expected) const {
  return Error(absl::StrCat("expected ", expected, ", got ", value_->type_name()));
}

std::string JsonReader::ChildPath(absl::string_view key) const {
  return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
}

std::string JsonReader::ElementPath(size_t i) const { return absl::StrCat(path_, "[", i, "]"); }

absl::Status JsonReader::CheckObject() const {
  return value_->is_object() ? absl::OkStatus() : WrongType("an object");
}

absl::Status JsonReader::CheckKeys(std::initializer_list<absl::string_view> allowed) const {
  if (absl::Status s = CheckObject(); !s.ok()) return s;
  for (const auto& [key, value] : value_->items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          ChildPath(key), ": unknown field (expected one of: ", absl::StrJoin(allowed, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status JsonReader::CheckArray(absl::string_view expected) const {
  return value_->is_array() ? absl::OkStatus() : WrongType(expected);
}

absl::StatusOr<JsonReader> JsonReader::Member(absl::string_view key) const {
  if (absl::Status s = CheckObject(); !s.ok()) return s;
  const auto it = value_->find(std::string(key));
  if (it == value_->end()) {
    return absl::InvalidArgumentError(absl::StrCat(ChildPath(key), ": required field missing"));
  }
  return JsonReader(*it, ChildPath(key), nulls_);
}

std::optional<JsonReader> JsonReader::OptionalMember(absl::string_view key) const {
  return OptionalMember(key, nulls_ == Nulls::kNullIsAbsent);
}

std::optional<JsonReader> JsonReader::OptionalMember(absl::string_view key,
                                                     bool null_is_absent) const {
  if (!value_->is_object()) return std::nullopt;
  const auto it = value_->find(std::string(key));
  if (it == value_->end() || (null_is_absent && it->is_null())) return std::nullopt;
  return JsonReader(*it, ChildPath(key), nulls_);
}

JsonReader JsonReader::Element(size_t i) const {
  return JsonReader((*value_)[i], ElementPath(i), nulls_);
}

absl::StatusOr<double> JsonReader::Number() const {
  if (!value_->is_number()) return WrongType("a number");
  return value_->get<double>();
}

absl::StatusOr<double> JsonReader::FiniteNumber() const {
  absl::StatusOr<double> v = Number();
  if (v.ok() && !std::isfinite(*v)) return Error("not finite");
  return v;
}

absl::StatusOr<std::string> JsonReader::String() const {
  if (!value_->is_string()) return WrongType("a string");
  return value_->get<std::string>();
}

absl::StatusOr<bool> JsonReader::Bool() const {
  if (!value_->is_boolean()) return WrongType("a boolean");
  return value_->get<bool>();
}

absl::StatusOr<int64_t> JsonReader::Integer(const IntegerSpec& spec) const {
  const absl::string_view expected = spec.min == 0 ? "a non-negative integer" : "an integer";
  int64_t v = 0;
  if (value_->is_number_unsigned()) {
    const uint64_t u = value_->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return Error("too large");
    v = static_cast<int64_t>(u);
  } else if (value_->is_number_integer()) {
    v = value_->get<int64_t>();
  } else if (value_->is_number_float()) {
    const double d = value_->get<double>();
    if (!spec.integral_floats || !std::isfinite(d) || std::abs(d) > kMaxExactInteger ||
        d != std::floor(d) || (spec.min == 0 && d < 0)) {
      return Error(absl::StrCat("expected ", expected, ", got ", d));
    }
    v = static_cast<int64_t>(d);
  } else {
    return WrongType(expected);
  }
  if (spec.min == 0 && v < 0) return Error(absl::StrCat("expected ", expected, ", got ", v));
  if (v < spec.min || v > spec.max) {
    return Error(absl::StrCat("must be in [", spec.min, ", ", spec.max, "], got ", v));
  }
  return v;
}

absl::StatusOr<uint64_t> JsonReader::Unsigned(bool integral_floats) const {
  if (value_->is_number_unsigned()) return value_->get<uint64_t>();
  if (value_->is_number_integer()) {  // signed and not unsigned: negative
    return Error(absl::StrCat("expected a non-negative integer, got ", value_->get<int64_t>()));
  }
  if (value_->is_number_float()) {
    const double d = value_->get<double>();
    if (integral_floats && std::isfinite(d) && d >= 0 && d <= kMaxExactInteger &&
        d == std::floor(d)) {
      return static_cast<uint64_t>(d);
    }
    return Error(absl::StrCat("expected a non-negative integer, got ", d));
  }
  return WrongType("a non-negative integer");
}

absl::StatusOr<std::string> JsonReader::Enum(
    std::initializer_list<absl::string_view> choices) const {
  absl::StatusOr<std::string> v = String();
  if (!v.ok()) return v;
  if (std::find(choices.begin(), choices.end(), *v) != choices.end()) return v;
  std::vector<std::string> quoted;
  for (absl::string_view c : choices) quoted.push_back(absl::StrCat("\"", c, "\""));
  std::string list;
  for (size_t k = 0; k < quoted.size(); ++k) {
    if (k > 0) list += k + 1 == quoted.size() ? " or " : ", ";
    list += quoted[k];
  }
  return Error(absl::StrCat("expected ", list, ", got \"", *v, "\""));
}

absl::StatusOr<std::vector<double>> JsonReader::NumberArray(const NumberArraySpec& spec) const {
  if (!value_->is_array()) return WrongType("an array of numbers");
  if (spec.size.has_value() && value_->size() != *spec.size) {
    return Error(absl::StrCat("expected ", *spec.size, " numbers, got ", value_->size()));
  }
  std::vector<double> out;
  out.reserve(value_->size());
  for (size_t k = 0; k < value_->size(); ++k) {
    const JsonReader element = Element(k);
    absl::StatusOr<double> v = spec.finite ? element.FiniteNumber() : element.Number();
    if (!v.ok()) return v.status();
    out.push_back(*v);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> JsonReader::StringArray() const {
  if (!value_->is_array()) return WrongType("an array of strings");
  std::vector<std::string> out;
  out.reserve(value_->size());
  for (size_t k = 0; k < value_->size(); ++k) {
    absl::StatusOr<std::string> v = Element(k).String();
    if (!v.ok()) return v.status();
    out.push_back(*std::move(v));
  }
  return out;
}

}  // namespace router::core
