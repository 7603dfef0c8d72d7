// File: bench_routerd.h
//
// What the benchmarks that run routerd in their own process (load_bench, overload_bench) share:
//   - ForInProcessBenchmark: routerd's configuration for them: a free loopback port, plaintext,
//     no tokens, RouterAdmin open to the benchmark (on loopback, where routerd allows that);
//   - kDefaultConfig, kDefaultPrompts: their default routerd configuration and prompts file, in
//     the source tree (ROUTER_SOURCE_DIR, which bench/CMakeLists.txt defines for them);
//   - LoadPromptTexts: the prompt texts of a JSON-lines file (routerbench's prompts.jsonl);
//   - ParseFlagPairs, ParseNumber, ParseList: their "--flag value" loop, and their flags' numbers
//     and comma-separated lists.
// Header-only, bench-only. Thread-safety: pure functions (LoadPromptTexts reads a file;
// ParseFlagPairs calls back).
// Errors: LoadPromptTexts: NOT_FOUND for a file it cannot read, INVALID_ARGUMENT naming the line
// without a string "text", or a file without prompts. Cost: linear in the file or the list.

#ifndef ROUTER_BENCH_BENCH_ROUTERD_H_
#define ROUTER_BENCH_BENCH_ROUTERD_H_

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "server/config.h"

namespace router::bench {

inline constexpr char kDefaultConfig[] = ROUTER_SOURCE_DIR "/deploy/routerd.yaml";
inline constexpr char kDefaultPrompts[] =
    ROUTER_SOURCE_DIR "/../shared/data/routerbench_subset/derived/prompts.jsonl";

// `metrics_listen`: "" = no /metrics endpoint.
inline void ForInProcessBenchmark(server::RouterConfig& config, const std::string& metrics_listen) {
  config.listen = "127.0.0.1:0";
  config.metrics_listen = metrics_listen;
  config.tls = {};
  config.api_token_file.clear();
  config.admin = {};
  config.admin.allow_unauthenticated = true;
}

// The "text" of every non-empty line, in order.
inline absl::StatusOr<std::vector<std::string>> LoadPromptTexts(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("prompts file '", path, "' cannot be read"));
  std::vector<std::string> texts;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.empty()) continue;
    nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!row.is_object() || !row.contains("text") || !row["text"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": no string \"text\""));
    }
    texts.push_back(row["text"].get<std::string>());
  }
  if (texts.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no prompts"));
  return texts;
}

// A floating-point `T` takes any number, an integral one only an integer.
template <typename T>
bool ParseNumber(absl::string_view text, T* out) {
  if constexpr (std::is_floating_point_v<T>) {
    double d = 0;
    if (!absl::SimpleAtod(text, &d)) return false;
    *out = static_cast<T>(d);
  } else {
    int64_t v = 0;
    if (!absl::SimpleAtoi(text, &v)) return false;
    *out = static_cast<T>(v);
  }
  return true;
}

// "a,b,c": every element a positive number; false for an empty list or a bad element.
template <typename T>
bool ParseList(absl::string_view text, std::vector<T>* out) {
  out->clear();
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    T v{};
    if (!ParseNumber(part, &v) || v <= 0) return false;
    out->push_back(v);
  }
  return !out->empty();
}

// argv as "--flag value" pairs, in order. "--help" or "-h": usage("help") and exit code 0. A flag
// without a value: usage("<flag> needs a value"). Otherwise apply(flag, value): true when taken,
// false for a bad value (usage("<flag>: bad value '<value>'")), nullopt for a flag it does not know
// (usage("unknown flag '<flag>'")). Returns the code for main to return, or nullopt once every
// flag was taken.
inline std::optional<int> ParseFlagPairs(
    int argc, char** argv, absl::FunctionRef<int(const std::string& problem)> usage,
    absl::FunctionRef<std::optional<bool>(const std::string& flag, const std::string& value)>
        apply) {
  for (int k = 1; k < argc; ++k) {
    const std::string arg = argv[k];
    if (arg == "--help" || arg == "-h") {
      usage("help");
      return 0;
    }
    if (k + 1 >= argc) return usage(absl::StrCat(arg, " needs a value"));
    const std::string value = argv[++k];
    const std::optional<bool> ok = apply(arg, value);
    if (!ok.has_value()) return usage(absl::StrCat("unknown flag '", arg, "'"));
    if (!*ok) return usage(absl::StrCat(arg, ": bad value '", value, "'"));
  }
  return std::nullopt;
}

}  // namespace router::bench

#endif  // ROUTER_BENCH_BENCH_ROUTERD_H_
