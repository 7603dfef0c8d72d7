// File: json_reader.h
//
// Typed, path-carrying reading of a parsed nlohmann::json document. A JsonReader is one value of
// the document together with its field path (`queries[2].cost[1]`); its getters check the JSON
// type (and ranges where asked) and return INVALID_ARGUMENT naming that path, e.g.
//   queries[2].cost[1]: expected a number, got string
//   models[0].slots: expected a non-negative integer, got -1
//   params.lamda: unknown field (expected one of: lambda, tau, gamma, seed)
//   gpu_budget: required field missing
// The root's path is empty by default (its children are then `key` and `[i]`, and messages about
// the root itself name it `top level`); a reader of estimator state starts at `uniroute`, say.
//
// ParseJsonText turns text into a document with the parser's message and byte offset on failure.
//
// Ownership: a JsonReader points into the document it was made from, which must outlive it and
// every reader derived from it. It is a small value (a pointer and a string) and cheap to copy.
//
// Thread-safety: immutable after construction; any number of threads may read one document.
//
// Errors: INVALID_ARGUMENT for every type, range, missing-field or unknown-field violation, as
// described per method. No method throws.
//
// Cost: member look-ups are O(log keys) (nlohmann's std::map); each child builds its path string,
// O(path length); arrays are O(elements).

#ifndef ROUTER_CORE_JSON_JSON_READER_H_
#define ROUTER_CORE_JSON_JSON_READER_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace router::core {

// Parses JSON text. On failure: INVALID_ARGUMENT "invalid JSON: <parser message> (byte N)", the
// parser's own text without its "[json.exception...]" tag (it names line and column).
absl::StatusOr<nlohmann::json> ParseJsonText(absl::string_view text);

// Integers: what Integer() accepts.
struct IntegerSpec {
  // Inclusive range. A value outside it is refused; with min == 0 a negative value is
  // "expected a non-negative integer, got -1".
  int64_t min = std::numeric_limits<int64_t>::min();
  int64_t max = std::numeric_limits<int64_t>::max();
  // Also accept a float with an integral value up to 2^53 in magnitude (3.0, 1e3): JSON written
  // by hand or by JavaScript. Off for machine-written state, where a float is a corruption.
  bool integral_floats = true;
};

// Arrays of numbers: what NumberArray() accepts.
struct NumberArraySpec {
  // Exactly this many elements when set: "expected 3 numbers, got 2".
  std::optional<size_t> size = std::nullopt;
  // Refuse NaN and infinities (possible in CBOR, not in JSON text): "[k]: not finite".
  bool finite = false;
};

class JsonReader {
 public:
  // Null members: by default a member that is present but null is read as null (and refused by
  // every getter: "expected a number, got null"); with kNullIsAbsent, OptionalMember and
  // ReadOptional treat it as absent. Children inherit the choice.
  enum class Nulls { kNullIsValue, kNullIsAbsent };

  explicit JsonReader(const nlohmann::json& value, std::string path = "",
                      Nulls nulls = Nulls::kNullIsValue)
      : value_(&value), path_(std::move(path)), nulls_(nulls) {}

  const nlohmann::json& json() const { return *value_; }
  // The field path, "" at the root.
  const std::string& path() const { return path_; }
  // The path as messages name it ("top level" for the empty path).
  absl::string_view name() const {
    return path_.empty() ? absl::string_view("top level") : absl::string_view(path_);
  }
  bool is_null() const { return value_->is_null(); }

  // INVALID_ARGUMENT "<name>: <what>".
  absl::Status Error(absl::string_view what) const;
  // INVALID_ARGUMENT "<name>: expected <expected>, got <JSON type name>".
  absl::Status WrongType(absl::string_view expected) const;

  // OK when the value is an object, else WrongType("an object").
  absl::Status CheckObject() const;
  // CheckObject, then every key must be in `allowed`:
  // "<path.key>: unknown field (expected one of: a, b, c)".
  absl::Status CheckKeys(std::initializer_list<absl::string_view> allowed) const;
  // OK when the value is an array, else WrongType(`expected`).
  absl::Status CheckArray(absl::string_view expected = "an array") const;

  // Member `key` of an object: required (absent: "<path.key>: required field missing"; not an
  // object: WrongType("an object")), or optional (nullopt when absent, when null under
  // kNullIsAbsent or `null_is_absent`, or when this is not an object).
  absl::StatusOr<JsonReader> Member(absl::string_view key) const;
  std::optional<JsonReader> OptionalMember(absl::string_view key) const;
  std::optional<JsonReader> OptionalMember(absl::string_view key, bool null_is_absent) const;

  // Elements of an array (0 for anything else) and element i < size().
  size_t size() const { return value_->is_array() ? value_->size() : 0; }
  JsonReader Element(size_t i) const;

  // Scalars. Number: any JSON number; FiniteNumber also refuses NaN and infinities ("not finite").
  absl::StatusOr<double> Number() const;
  absl::StatusOr<double> FiniteNumber() const;
  absl::StatusOr<std::string> String() const;
  absl::StatusOr<bool> Bool() const;
  // An integer in [spec.min, spec.max]: "expected an integer, got string", "... got 1.5",
  // "must be in [1, 1048576], got 0", "too large" (beyond int64).
  absl::StatusOr<int64_t> Integer(const IntegerSpec& spec = {}) const;
  // An integer in [0, 2^64) (seeds): "expected a non-negative integer, got -1".
  absl::StatusOr<uint64_t> Unsigned(bool integral_floats = true) const;
  // One of `choices` (a string): "expected \"on\" or \"off\", got \"x\"".
  absl::StatusOr<std::string> Enum(std::initializer_list<absl::string_view> choices) const;

  // Arrays: "expected an array of numbers, got object", then each element as Number() (or
  // FiniteNumber()) with its path `name[k]`.
  absl::StatusOr<std::vector<double>> NumberArray(const NumberArraySpec& spec = {}) const;
  absl::StatusOr<std::vector<std::string>> StringArray() const;

  // A required member read with `get` (one of the getters above), in one call:
  //   absl::StatusOr<double> v = reader.Get(&JsonReader::Number, "budget");
  template <typename Getter, typename... Args>
  auto Get(Getter get, absl::string_view key, Args&&... args) const
      -> decltype((std::declval<const JsonReader&>().*get)(std::forward<Args>(args)...)) {
    absl::StatusOr<JsonReader> member = Member(key);
    if (!member.ok()) return member.status();
    return ((*member).*get)(std::forward<Args>(args)...);
  }

  // This array (else WrongType(`expected`)) with each element read by
  // `parse(const JsonReader&) -> absl::StatusOr<T>`, stopping at the first error; ArrayOf does
  // the same for the required member `key`.
  template <typename Parse>
  auto Elements(Parse parse, absl::string_view expected = "an array") const
      -> absl::StatusOr<std::vector<typename decltype(parse(*this))::value_type>> {
    if (absl::Status s = CheckArray(expected); !s.ok()) return s;
    std::vector<typename decltype(parse(*this))::value_type> out;
    out.reserve(size());
    for (size_t i = 0; i < size(); ++i) {
      auto element = parse(Element(i));
      if (!element.ok()) return element.status();
      out.push_back(*std::move(element));
    }
    return out;
  }
  template <typename Parse>
  auto ArrayOf(absl::string_view key, Parse parse, absl::string_view expected = "an array") const
      -> decltype(Elements(parse, expected)) {
    absl::StatusOr<JsonReader> array = Member(key);
    if (!array.ok()) return array.status();
    return array->Elements(parse, expected);
  }

  // An optional member (as OptionalMember(key)) read with `get` into `*target` when present;
  // `*target` is left as it was when absent.
  template <typename T, typename Getter, typename... Args>
  absl::Status ReadOptional(absl::string_view key, T* target, Getter get, Args&&... args) const {
    std::optional<JsonReader> member = OptionalMember(key);
    if (!member.has_value()) return absl::OkStatus();
    auto v = ((*member).*get)(std::forward<Args>(args)...);
    if (!v.ok()) return v.status();
    *target = static_cast<T>(*std::move(v));
    return absl::OkStatus();
  }

  // The path of member `key` / element `i` of this value (what their readers report).
  std::string ChildPath(absl::string_view key) const;
  std::string ElementPath(size_t i) const;

 private:
  const nlohmann::json* value_;
  std::string path_;
  Nulls nulls_;
};

}  // namespace router::core

#endif  // ROUTER_CORE_JSON_JSON_READER_H_
