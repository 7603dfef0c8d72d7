// File: routerctl_support.h
//
// The parts of routerctl that do not talk to routerd, kept apart so they can be tested alone:
// command-line parsing (including --mode), reading queries from JSONL files, the stream summary and
// the progress bar.
//
// Thread-safety: pure functions; a StreamSummary is not thread-safe (routerctl feeds it from the
// one thread that reads the stream).
//
// Errors: INVALID_ARGUMENT naming the flag, or the file and line of a bad JSONL record; NOT_FOUND
// for a file that cannot be opened.

#ifndef ROUTER_CLIENTS_CPP_ROUTERCTL_SUPPORT_H_
#define ROUTER_CLIENTS_CPP_ROUTERCTL_SUPPORT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "router/v1/router.pb.h"

namespace router::client::ctl {

// A command line split into its words (the subcommand, e.g. {"config", "set"}) and its flags.
struct CommandLine {
  std::vector<std::string> words;
  // By name without the dashes ("file" for --file). Boolean flags map to "true".
  std::map<std::string, std::string> flags;

  // The flag's value, or nullopt if it was not given.
  std::optional<std::string> Get(const std::string& name) const;
};

// Parses `args` (argv without the program name). Flags are `--name value` or `--name=value` and
// may appear anywhere; the names in `boolean_flags` take no value. A lone `--` is refused.
// INVALID_ARGUMENT for a flag without its value or a flag given twice.
absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args,
                                             const absl::flat_hash_set<std::string>& boolean_flags);

// INVALID_ARGUMENT naming the first flag of `line` that is not in `allowed`.
absl::Status CheckFlags(const CommandLine& line, const absl::flat_hash_set<std::string>& allowed);

// The value of --mode: "batch", "inline" or "auto". INVALID_ARGUMENT naming --mode otherwise.
absl::StatusOr<v1::RoutingMode> ParseModeFlag(absl::string_view value);
// "batch", "inline", "auto"; "unspecified" for ROUTING_MODE_UNSPECIFIED (and unknown values).
std::string ModeName(v1::RoutingMode mode);

// Which JSON fields of a JSONL record hold the prompt and its id.
struct JsonlFields {
  // The prompt text (a string; required).
  std::string text_field = "text";
  // The query id (a string or an integer). A record without it gets the id "line-<N>" (1-based).
  std::string id_field = "prompt_id";
};

// One JSONL record as a Query. `line_number` (1-based) is used for the default id.
// INVALID_ARGUMENT if the line is not a JSON object or a field has the wrong type.
absl::StatusOr<v1::Query> QueryFromJsonLine(absl::string_view line, int64_t line_number,
                                            const JsonlFields& fields);

// Every record of a JSONL file, skipping blank lines; errors are prefixed with `path:line: `.
absl::StatusOr<std::vector<v1::Query>> ReadQueriesJsonl(const std::string& path,
                                                        const JsonlFields& fields);

// The q-quantile (0 < q <= 1) of `values` by the nearest-rank method; 0 for no values.
double NearestRankQuantile(std::vector<double> values, double q);

// Aggregates the answers of one RouteStream for routerctl's summary.
class StreamSummary {
 public:
  void Add(const v1::RouteBatchItem& answer, absl::Duration latency);

  int64_t answered() const { return answered_; }

  // {"count", "answered", "assigned", "errors": {code name: n}, "models": {model: n},
  //  "modes": {decision mode: n}, "inline": {"decisions", "guarded", "lambda_p50", "lambda_max",
  //  "slot_price_max"}, "predicted_spend_usd", "latency_ms": {"p50", "p99"}, "stream_status"}.
  // `count` is the number of queries sent; latencies cover every answer (assignments and error
  // items); "modes" counts assignments by the mode that decided them; "inline" summarizes the
  // prices of the inline ones (zeros without any).
  nlohmann::json ToJson(int64_t count, const absl::Status& stream_status) const;

 private:
  int64_t answered_ = 0;
  int64_t assigned_ = 0;
  std::map<std::string, int64_t> errors_;
  std::map<std::string, int64_t> models_;
  std::map<std::string, int64_t> modes_;
  int64_t inline_guarded_ = 0;
  std::vector<double> inline_lambda_;
  double inline_slot_price_max_ = 0;
  double predicted_spend_usd_ = 0;
  std::vector<double> latency_ms_;
};

// A one-line progress bar, e.g. "[##########----------]  50/100  50%". `width` is the bar's
// length in characters; `total` 0 shows an empty bar.
std::string ProgressBar(int64_t done, int64_t total, int width);

}  // namespace router::client::ctl

#endif  // ROUTER_CLIENTS_CPP_ROUTERCTL_SUPPORT_H_
