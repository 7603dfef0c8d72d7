#include "clients/cpp/routerctl_support.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace router::client::ctl {

std::optional<std::string> CommandLine::Get(const std::string& name) const {
  auto it = flags.find(name);
  if (it == flags.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<CommandLine> ParseCommandLine(
    const std::vector<std::string>& args, const absl::flat_hash_set<std::string>& boolean_flags) {
  CommandLine line;
  for (size_t k = 0; k < args.size(); ++k) {
    const std::string& arg = args[k];
    if (!absl::StartsWith(arg, "--")) {
      line.words.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat("'", arg, "': not a flag"));
    if (boolean_flags.contains(name)) {
      if (value.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, ": takes no value"));
      }
      value = "true";
    } else if (!value.has_value()) {
      if (k + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, ": needs a value"));
      }
      value = args[++k];
    }
    if (!line.flags.emplace(name, *std::move(value)).second) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, ": given twice"));
    }
  }
  return line;
}

absl::Status CheckFlags(const CommandLine& line, const absl::flat_hash_set<std::string>& allowed) {
  for (const auto& [name, value] : line.flags) {
    if (!allowed.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, ": unknown flag here"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::RoutingMode> ParseModeFlag(absl::string_view value) {
  if (value == "batch") return v1::ROUTING_MODE_BATCH;
  if (value == "inline") return v1::ROUTING_MODE_INLINE;
  if (value == "auto") return v1::ROUTING_MODE_AUTO;
  return absl::InvalidArgumentError(
      absl::StrCat("--mode: '", value, "' is not a routing mode (batch, inline or auto)"));
}

std::string ModeName(v1::RoutingMode mode) {
  switch (mode) {
    case v1::ROUTING_MODE_BATCH:
      return "batch";
    case v1::ROUTING_MODE_INLINE:
      return "inline";
    case v1::ROUTING_MODE_AUTO:
      return "auto";
    default:
      return "unspecified";
  }
}

absl::StatusOr<v1::Query> QueryFromJsonLine(absl::string_view line, int64_t line_number,
                                            const JsonlFields& fields) {
  const nlohmann::json record = nlohmann::json::parse(line.begin(), line.end(), nullptr,
                                                      /*allow_exceptions=*/false);
  if (record.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
  if (!record.is_object()) return absl::InvalidArgumentError("not a JSON object");
  v1::Query query;
  auto text = record.find(fields.text_field);
  if (text == record.end()) {
    return absl::InvalidArgumentError(absl::StrCat("no field '", fields.text_field, "'"));
  }
  if (!text->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("'", fields.text_field, "': not a string"));
  }
  query.set_text(text->get<std::string>());
  auto id = record.find(fields.id_field);
  if (id == record.end()) {
    query.set_id(absl::StrCat("line-", line_number));
  } else if (id->is_string()) {
    query.set_id(id->get<std::string>());
  } else if (id->is_number_integer()) {
    query.set_id(id->dump());
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("'", fields.id_field, "': not a string or an integer"));
  }
  return query;
}

absl::StatusOr<std::vector<v1::Query>> ReadQueriesJsonl(const std::string& path,
                                                        const JsonlFields& fields) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<v1::Query> queries;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (std::all_of(line.begin(), line.end(), [](unsigned char c) { return std::isspace(c); })) {
      continue;
    }
    absl::StatusOr<v1::Query> query = QueryFromJsonLine(line, number, fields);
    if (!query.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", number, ": ", query.status().message()));
    }
    queries.push_back(*std::move(query));
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return queries;
}

double NearestRankQuantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  const size_t index = std::clamp<size_t>(rank, 1, values.size()) - 1;
  std::nth_element(values.begin(), values.begin() + static_cast<ptrdiff_t>(index), values.end());
  return values[index];
}

void StreamSummary::Add(const v1::RouteBatchItem& answer, absl::Duration latency) {
  ++answered_;
  latency_ms_.push_back(absl::ToDoubleMilliseconds(latency));
  if (answer.has_assignment()) {
    ++assigned_;
    const v1::Assignment& a = answer.assignment();
    ++models_[a.model()];
    ++modes_[ModeName(a.decision_mode())];
    predicted_spend_usd_ += a.predicted_cost_usd();
    if (a.decision_mode() == v1::ROUTING_MODE_INLINE) {
      inline_lambda_.push_back(a.inline_decision().lambda_per_usd());
      inline_slot_price_max_ = std::max(inline_slot_price_max_, a.inline_decision().slot_price());
      if (a.inline_decision().guarded()) ++inline_guarded_;
    }
  } else {
    ++errors_[absl::StatusCodeToString(static_cast<absl::StatusCode>(answer.error().code()))];
  }
}

nlohmann::json StreamSummary::ToJson(int64_t count, const absl::Status& stream_status) const {
  nlohmann::json out;
  out["count"] = count;
  out["answered"] = answered_;
  out["assigned"] = assigned_;
  out["errors"] = nlohmann::json::object();
  for (const auto& [code, n] : errors_) out["errors"][code] = n;
  out["models"] = nlohmann::json::object();
  for (const auto& [model, n] : models_) out["models"][model] = n;
  out["modes"] = nlohmann::json::object();
  for (const auto& [mode, n] : modes_) out["modes"][mode] = n;
  out["inline"] = {
      {"decisions", static_cast<int64_t>(inline_lambda_.size())},
      {"guarded", inline_guarded_},
      {"lambda_p50", NearestRankQuantile(inline_lambda_, 0.50)},
      {"lambda_max", inline_lambda_.empty()
                         ? 0.0
                         : *std::max_element(inline_lambda_.begin(), inline_lambda_.end())},
      {"slot_price_max", inline_slot_price_max_}};
  out["predicted_spend_usd"] = predicted_spend_usd_;
  out["latency_ms"] = {{"p50", NearestRankQuantile(latency_ms_, 0.50)},
                       {"p99", NearestRankQuantile(latency_ms_, 0.99)}};
  out["stream_status"] = stream_status.ok() ? std::string("OK") : stream_status.ToString();
  return out;
}

std::string ProgressBar(int64_t done, int64_t total, int width) {
  const double fraction =
      total > 0 ? std::clamp(static_cast<double>(done) / static_cast<double>(total), 0.0, 1.0) : 0;
  const int filled = static_cast<int>(fraction * width);
  return absl::StrFormat("[%s%s] %d/%d %3d%%", std::string(filled, '#'),
                         std::string(width - filled, '-'), done, total,
                         static_cast<int>(fraction * 100));
}

}  // namespace router::client::ctl
