// routerctl: a command-line client for routerd (clients/README.md has examples).
//
//   routerctl [--address HOST:PORT] [--timeout_ms MS] COMMAND [flags]
//     route --text T [--id ID] [--allowed m1,m2] [--mode batch|inline|auto]
//                                                   one query; prints the assignment as JSON, with
//                                                   the mode that decided it (decision_mode) and,
//                                                   for inline, its prices (inline_decision)
//     batch --file F [--text-field text] [--id-field prompt_id]
//                                                   one RouteBatch; prints one JSON line per item
//     stream --file F [--text-field text] [--id-field prompt_id] [--max_in_flight 1024]
//            [--mode batch|inline|auto]            every record through one RouteStream, at most
//                                                   max_in_flight unanswered; progress on stderr,
//                                                   a JSON summary on stdout (answers per decision
//                                                   mode, inline prices)
//     complete --id ASSIGNMENT_ID [--cost USD] [--success true|false] [--score S]
//                                                   S in [0, 1]: the answer's score, learned
//                                                   from instead of --success when both are given
//     health [--service S]                          prints the serving status
//     models                                        lists the model pool
//     config get                                    prints the runtime configuration (YAML)
//     config set --file YAML [--dry-run] [--expected-generation N]
//                                                   replaces it (validates only with --dry-run;
//                                                   only if still at generation N)
//     model upsert --name N [--instances I --slots S] [--input_usd_per_mtok USD]
//                  [--output_usd_per_mtok USD] [--mean_cost_usd USD]
//                                                   the costs (finite, >= 0) of a model the
//                                                   estimator does not know yet (a new API model
//                                                   needs input_usd_per_mtok or mean_cost_usd)
//     model remove --name N
//     learned show [--model M] [--cluster C]        what routerd learned from outcomes, per model
//                                                   and cluster (GetLearnedStats), as JSON
//     learned reset (--model M | --cluster C | --all)
//                                                   forgets it: of a model, a cluster, a model in
//                                                   a cluster (both), or everything (--all)
//
// Connection flags (every command): --tls (TLS with the system's roots), --ca_file PEM (TLS,
// verifying routerd with these roots), --cert_file PEM --key_file PEM (a client certificate, for
// routerd's mTLS), --server_name NAME (the name routerd's certificate must carry, when the
// address's host is not it), --token_file FILE (sent as `authorization: Bearer <token>`: the admin
// token for RouterAdmin commands, api.token_file's for Router ones; a file, so the token shows in
// no process list).
//
// --address defaults to 127.0.0.1:50051. --timeout_ms bounds each call (default 10000); for
// `stream` it bounds the whole stream and is unset (no deadline) by default. --mode sets
// Query.mode (unset: routerd's tenant or default mode; auto: inline when the deadline leaves no
// room for a batch).
//
// Exit codes: 0 success; 1 the call failed (the status code and message go to stderr); 2 bad
// usage; 3 `health` answered with a status other than SERVING. Per-query errors inside a batch or
// a stream are part of the output, not a failure of the command.

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/cpp/router_client.h"
#include "clients/cpp/routerctl_support.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace router::client {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitCallFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNotServing = 3;

constexpr char kUsage[] =
    "usage: routerctl [--address HOST:PORT] [--timeout_ms MS] [--tls] [--ca_file PEM]\n"
    "                 [--cert_file PEM --key_file PEM] [--server_name NAME] [--token_file FILE]\n"
    "                 COMMAND [flags]\n"
    "  route --text T [--id ID] [--allowed m1,m2] [--mode batch|inline|auto]\n"
    "  batch --file F [--text-field text] [--id-field prompt_id]\n"
    "  stream --file F [--text-field text] [--id-field prompt_id] [--max_in_flight N]\n"
    "         [--mode batch|inline|auto]\n"
    "  complete --id ASSIGNMENT_ID [--cost USD] [--success true|false] [--score S]\n"
    "  health [--service S]\n"
    "  models\n"
    "  config get\n"
    "  config set --file YAML [--dry-run] [--expected-generation N]\n"
    "  model upsert --name N [--instances I --slots S] [--input_usd_per_mtok USD]\n"
    "               [--output_usd_per_mtok USD] [--mean_cost_usd USD]\n"
    "  model remove --name N\n"
    "  learned show [--model M] [--cluster C]\n"
    "  learned reset (--model M | --cluster C | --all)\n";

// Prints the problem and the usage; the exit code for bad usage.
int Usage(absl::string_view problem) {
  std::cerr << "routerctl: " << problem << "\n" << kUsage;
  return kExitUsage;
}

int CallFailed(const absl::Status& status) {
  std::cerr << "routerctl: " << status.ToString() << "\n";
  return kExitCallFailed;
}

// Proto messages print in the canonical proto3 JSON mapping, with the .proto field names so the
// output reads like router.proto.
std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  // Printing a well-formed message cannot fail; an empty string would show if it did.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

// What every command needs: the parsed flags and a way to reach routerd.
struct Context {
  ctl::CommandLine line;
  std::string address;
  std::optional<absl::Duration> timeout;

  absl::StatusOr<std::unique_ptr<RouterClient>> Connect(
      v1::RoutingMode mode = v1::ROUTING_MODE_UNSPECIFIED) const {
    RouterClientOptions options;
    if (timeout.has_value()) {
      options.default_timeout = *timeout;
      options.connect_timeout = *timeout;
    }
    options.mode = mode;
    options.tls.enabled = line.Get("tls").has_value();
    options.tls.ca_file = line.Get("ca_file").value_or("");
    options.tls.cert_file = line.Get("cert_file").value_or("");
    options.tls.key_file = line.Get("key_file").value_or("");
    options.tls.server_name = line.Get("server_name").value_or("");
    if (std::optional<std::string> token_file = line.Get("token_file")) {
      absl::StatusOr<std::string> token = ReadTokenFile(*token_file);
      if (!token.ok()) return token.status();
      options.bearer_token = *std::move(token);
    }
    return RouterClient::Connect(address, options);
  }
};

// Flags every command accepts.
const absl::flat_hash_set<std::string>& GlobalFlags() {
  static const auto* flags = new absl::flat_hash_set<std::string>{
      "address", "timeout_ms", "tls", "ca_file", "cert_file", "key_file", "server_name",
      "token_file"};
  return *flags;
}

absl::Status CheckCommandFlags(const ctl::CommandLine& line,
                               std::initializer_list<std::string> command_flags) {
  absl::flat_hash_set<std::string> allowed = GlobalFlags();
  allowed.insert(command_flags.begin(), command_flags.end());
  return ctl::CheckFlags(line, allowed);
}

// The value of a required flag, or a usage error naming it.
absl::StatusOr<std::string> Required(const ctl::CommandLine& line, const std::string& name) {
  std::optional<std::string> value = line.Get(name);
  if (!value.has_value()) return absl::InvalidArgumentError(absl::StrCat("--", name, ": required"));
  return *value;
}

// --mode, or UNSPECIFIED when absent.
absl::StatusOr<v1::RoutingMode> ModeOf(const ctl::CommandLine& line) {
  std::optional<std::string> value = line.Get("mode");
  if (!value.has_value()) return v1::ROUTING_MODE_UNSPECIFIED;
  return ctl::ParseModeFlag(*value);
}

ctl::JsonlFields FieldsOf(const ctl::CommandLine& line) {
  ctl::JsonlFields fields;
  if (auto f = line.Get("text-field")) fields.text_field = *f;
  if (auto f = line.Get("id-field")) fields.id_field = *f;
  return fields;
}

int RouteCommand(const Context& c) {
  if (absl::Status s = CheckCommandFlags(c.line, {"text", "id", "allowed", "mode"}); !s.ok()) {
    return Usage(s.message());
  }
  absl::StatusOr<std::string> text = Required(c.line, "text");
  if (!text.ok()) return Usage(text.status().message());
  absl::StatusOr<v1::RoutingMode> mode = ModeOf(c.line);
  if (!mode.ok()) return Usage(mode.status().message());
  v1::Query query;
  query.set_text(*text);
  // An id is required by the API; a one-off query gets a unique one.
  query.set_id(c.line.Get("id").value_or(absl::StrCat("routerctl-", absl::ToUnixNanos(absl::Now()))));
  if (auto allowed = c.line.Get("allowed")) {
    for (absl::string_view m : absl::StrSplit(*allowed, ',', absl::SkipEmpty())) {
      query.add_allowed_models(std::string(m));
    }
  }
  query.set_mode(*mode);
  absl::StatusOr<std::unique_ptr<RouterClient>> client = c.Connect();
  if (!client.ok()) return CallFailed(client.status());
  absl::StatusOr<v1::Assignment> assignment = (*client)->Route(query);
  if (!assignment.ok()) return CallFailed(assignment.status());
  std::cout << ToJson(*assignment) << "\n";
  return kExitOk;
}

int BatchCommand(const Context& c) {
  if (absl::Status s = CheckCommandFlags(c.line, {"file", "text-field", "id-field"}); !s.ok()) {
    return Usage(s.message());
  }
  absl::StatusOr<std::string> file = Required(c.line, "file");
  if (!file.ok()) return Usage(file.status().message());
  absl::StatusOr<std::vector<v1::Query>> queries = ctl::ReadQueriesJsonl(*file, FieldsOf(c.line));
  if (!queries.ok()) return Usage(queries.status().message());
  absl::StatusOr<std::unique_ptr<RouterClient>> client = c.Connect();
  if (!client.ok()) return CallFailed(client.status());
  absl::StatusOr<v1::RouteBatchResponse> response = (*client)->RouteBatch(*queries);
  if (!response.ok()) return CallFailed(response.status());
  for (const v1::RouteBatchItem& item : response->items()) std::cout << ToJson(item) << "\n";
  return kExitOk;
}

int StreamCommand(const Context& c) {
  if (absl::Status s =
          CheckCommandFlags(c.line, {"file", "text-field", "id-field", "max_in_flight", "mode"});
      !s.ok()) {
    return Usage(s.message());
  }
  absl::StatusOr<std::string> file = Required(c.line, "file");
  if (!file.ok()) return Usage(file.status().message());
  absl::StatusOr<v1::RoutingMode> mode = ModeOf(c.line);
  if (!mode.ok()) return Usage(mode.status().message());
  absl::StatusOr<std::vector<v1::Query>> queries = ctl::ReadQueriesJsonl(*file, FieldsOf(c.line));
  if (!queries.ok()) return Usage(queries.status().message());
  absl::StatusOr<std::unique_ptr<RouterClient>> client = c.Connect(*mode);
  if (!client.ok()) return CallFailed(client.status());

  RouteStreamOptions stream_options;
  if (c.timeout.has_value()) stream_options.timeout = *c.timeout;
  if (auto v = c.line.Get("max_in_flight")) {
    if (!absl::SimpleAtoi(*v, &stream_options.max_in_flight) || stream_options.max_in_flight < 1) {
      return Usage(absl::StrCat("--max_in_flight: not a positive integer: ", *v));
    }
  }
  const int64_t total = static_cast<int64_t>(queries->size());
  ctl::StreamSummary summary;
  // On a terminal the bar is redrawn in place at most every 100 ms (redrawing per answer would
  // cost more than routing); elsewhere only the final bar is printed, so logs stay readable.
  const bool tty = isatty(STDERR_FILENO) != 0;
  absl::Time last_draw = absl::InfinitePast();
  auto draw = [&](bool final_draw) {
    const absl::Time now = absl::Now();
    if (!final_draw && now - last_draw < absl::Milliseconds(100)) return;
    last_draw = now;
    std::cerr << (tty ? "\r" : "") << ctl::ProgressBar(summary.answered(), total, 40)
              << (tty && !final_draw ? "" : "\n") << std::flush;
  };
  const absl::Status status = (*client)->RouteStream(
      *queries,
      [&](const StreamAnswer& answer) {
        summary.Add(answer.item, answer.latency);
        if (tty) draw(false);
      },
      stream_options);
  draw(true);
  std::cout << summary.ToJson(total, status).dump() << "\n";
  if (!status.ok()) return CallFailed(status);
  return kExitOk;
}

int CompleteCommand(const Context& c) {
  if (absl::Status s = CheckCommandFlags(c.line, {"id", "cost", "success", "score"}); !s.ok()) {
    return Usage(s.message());
  }
  absl::StatusOr<std::string> id = Required(c.line, "id");
  if (!id.ok()) return Usage(id.status().message());
  CompleteOutcome outcome;
  for (const char* flag : {"cost", "score"}) {
    if (auto v = c.line.Get(flag)) {
      double parsed = 0;
      if (!absl::SimpleAtod(*v, &parsed)) {
        return Usage(absl::StrCat("--", flag, ": not a number: ", *v));
      }
      (std::string(flag) == "cost" ? outcome.actual_cost_usd : outcome.score) = parsed;
    }
  }
  if (auto v = c.line.Get("success")) {
    bool parsed = false;
    if (!absl::SimpleAtob(*v, &parsed)) return Usage(absl::StrCat("--success: not a boolean: ", *v));
    outcome.success = parsed;
  }
  absl::StatusOr<std::unique_ptr<RouterClient>> client = c.Connect();
  if (!client.ok()) return CallFailed(client.status());
  absl::StatusOr<v1::CompleteResponse> response = (*client)->Complete(*id, outcome);
  if (!response.ok()) return CallFailed(response.status());
  std::cout << ToJson(*response) << "\n";
  return kExitOk;
}

int HealthCommand(const Context& c) {
  if (absl::Status s = CheckCommandFlags(c.line, {"service"}); !s.ok()) return Usage(s.message());
  const std::string service = c.line.Get("service").value_or("");
  absl::StatusOr<std::unique_ptr<RouterClient>> client = c.Connect();
  if (!client.ok()) return CallFailed(client.status());
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> status =
      (*client)->Health(service);
  if (!status.ok()) return CallFailed(status.status());
  const std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*status);
  std::cout << nlohmann::json{{"service", service}, {"status", name}}.dump() << "\n";
  return *status == grpc::health::v1::HealthCheckResponse::SERVING ? kExitOk : kExitNotServing;
}

int ModelsCommand(const Context& c) {
  if (absl::Status s = CheckCommandFlags(c.line, {}); !s.ok()) return Usage(s.message());
  absl::StatusOr<std::unique_ptr<RouterClient>> client = c.Connect();
  if (!client.ok()) return CallFailed(client.status());
  absl::StatusOr<v1::ListModelsResponse> response = (*client)->ListModels();
  if (!response.ok()) return CallFailed(response.status());
  std::cout << ToJson(*response) << "\n";
  return kExitOk;
}

int ConfigGetCommand(const Context& c) {
  if (absl::Status s = CheckCommandFlags(c.line, {}); !s.ok()) return Usage(s.message());
  absl::StatusOr<std::unique_ptr<RouterClient>> client = c.Connect();
  if (!client.ok()) return CallFailed(client.status());
  absl::StatusOr<v1::GetConfigResponse> response = (*client)->GetConfig();
  if (!response.ok()) return CallFailed(response.status());
  // The generation as a YAML comment keeps the output a valid document for `config set`.
  std::cout << "# config_generation: " << response->config_generation() << "\n" << response->yaml();
  if (!response->yaml().empty() && response->yaml().back() != '\n') std::cout << "\n";
  return kExitOk;
}

int ConfigSetCommand(const Context& c) {
  if (absl::Status s = CheckCommandFlags(c.line, {"file", "dry-run", "expected-generation"});
      !s.ok()) {
    return Usage(s.message());
  }
  absl::StatusOr<std::string> file = Required(c.line, "file");
  if (!file.ok()) return Usage(file.status().message());
  std::FILE* f = std::fopen(file->c_str(), "rb");
  if (f == nullptr) return Usage(absl::StrCat(*file, ": cannot open"));
  std::string yaml;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), f)) > 0;) yaml.append(buffer, n);
  std::fclose(f);
  UpdateConfigOptions update{.dry_run = c.line.Get("dry-run").has_value(),
                             .expected_generation = std::nullopt};
  if (auto v = c.line.Get("expected-generation")) {
    uint64_t parsed = 0;
    if (!absl::SimpleAtoi(*v, &parsed)) {
      return Usage(absl::StrCat("--expected-generation: not a generation: ", *v));
    }
    update.expected_generation = parsed;
  }
  absl::StatusOr<std::unique_ptr<RouterClient>> client = c.Connect();
  if (!client.ok()) return CallFailed(client.status());
  absl::StatusOr<uint64_t> generation = (*client)->UpdateConfig(yaml, update);
  if (!generation.ok()) return CallFailed(generation.status());
  std::cout << nlohmann::json{{"config_generation", *generation}, {"dry_run", update.dry_run}}.dump()
            << "\n";
  return kExitOk;
}

int ModelUpsertCommand(const Context& c) {
  if (absl::Status s = CheckCommandFlags(c.line, {"name", "instances", "slots",
                                                  "input_usd_per_mtok", "output_usd_per_mtok",
                                                  "mean_cost_usd"});
      !s.ok()) {
    return Usage(s.message());
  }
  absl::StatusOr<std::string> name = Required(c.line, "name");
  if (!name.ok()) return Usage(name.status().message());
  v1::UpsertModelRequest request;
  v1::ModelDeployment* deployment = request.mutable_deployment();
  deployment->set_name(*name);
  for (const char* flag : {"instances", "slots"}) {
    std::optional<std::string> v = c.line.Get(flag);
    if (!v.has_value()) continue;
    int32_t parsed = 0;
    if (!absl::SimpleAtoi(*v, &parsed)) {
      return Usage(absl::StrCat("--", flag, ": not an integer: ", *v));
    }
    if (std::string(flag) == "instances") {
      deployment->set_instances(parsed);
    } else {
      deployment->set_slots_per_instance(parsed);
    }
  }
  // UpsertModelRequest's cost fields, by the same names.
  for (const char* flag : {"input_usd_per_mtok", "output_usd_per_mtok", "mean_cost_usd"}) {
    std::optional<std::string> v = c.line.Get(flag);
    if (!v.has_value()) continue;
    double parsed = 0;
    if (!absl::SimpleAtod(*v, &parsed) || !std::isfinite(parsed) || parsed < 0) {
      return Usage(absl::StrCat("--", flag, ": not a finite number >= 0: ", *v));
    }
    const std::string name(flag);
    if (name == "input_usd_per_mtok") {
      request.set_input_usd_per_mtok(parsed);
    } else if (name == "output_usd_per_mtok") {
      request.set_output_usd_per_mtok(parsed);
    } else {
      request.set_mean_cost_usd(parsed);
    }
  }
  absl::StatusOr<std::unique_ptr<RouterClient>> client = c.Connect();
  if (!client.ok()) return CallFailed(client.status());
  absl::StatusOr<v1::UpsertModelResponse> response = (*client)->UpsertModel(request);
  if (!response.ok()) return CallFailed(response.status());
  std::cout << ToJson(*response) << "\n";
  return kExitOk;
}

int ModelRemoveCommand(const Context& c) {
  if (absl::Status s = CheckCommandFlags(c.line, {"name"}); !s.ok()) return Usage(s.message());
  absl::StatusOr<std::string> name = Required(c.line, "name");
  if (!name.ok()) return Usage(name.status().message());
  absl::StatusOr<std::unique_ptr<RouterClient>> client = c.Connect();
  if (!client.ok()) return CallFailed(client.status());
  absl::StatusOr<uint64_t> generation = (*client)->RemoveModel(*name);
  if (!generation.ok()) return CallFailed(generation.status());
  std::cout << nlohmann::json{{"config_generation", *generation}}.dump() << "\n";
  return kExitOk;
}

// --model and --cluster of the learned commands.
absl::StatusOr<LearnedStatsFilter> FilterOf(const ctl::CommandLine& line) {
  LearnedStatsFilter filter;
  filter.model = line.Get("model");
  if (auto v = line.Get("cluster")) {
    int32_t parsed = 0;
    if (!absl::SimpleAtoi(*v, &parsed) || parsed < 0) {
      return absl::InvalidArgumentError(absl::StrCat("--cluster: not a cluster number >= 0: ", *v));
    }
    filter.cluster = parsed;
  }
  return filter;
}

int LearnedShowCommand(const Context& c) {
  if (absl::Status s = CheckCommandFlags(c.line, {"model", "cluster"}); !s.ok()) {
    return Usage(s.message());
  }
  absl::StatusOr<LearnedStatsFilter> filter = FilterOf(c.line);
  if (!filter.ok()) return Usage(filter.status().message());
  absl::StatusOr<std::unique_ptr<RouterClient>> client = c.Connect();
  if (!client.ok()) return CallFailed(client.status());
  absl::StatusOr<v1::GetLearnedStatsResponse> response = (*client)->GetLearnedStats(*filter);
  if (!response.ok()) return CallFailed(response.status());
  std::cout << ToJson(*response) << "\n";
  return kExitOk;
}

int LearnedResetCommand(const Context& c) {
  if (absl::Status s = CheckCommandFlags(c.line, {"model", "cluster", "all"}); !s.ok()) {
    return Usage(s.message());
  }
  absl::StatusOr<LearnedStatsFilter> filter = FilterOf(c.line);
  if (!filter.ok()) return Usage(filter.status().message());
  const bool all = c.line.Get("all").has_value();
  const bool filtered = filter->model.has_value() || filter->cluster.has_value();
  // Forgetting everything is never the default of a mistyped command.
  if (all == filtered) {
    return Usage("learned reset: give --model and/or --cluster, or --all (not both)");
  }
  absl::StatusOr<std::unique_ptr<RouterClient>> client = c.Connect();
  if (!client.ok()) return CallFailed(client.status());
  absl::StatusOr<int64_t> removed = (*client)->ResetLearnedStats(*filter);
  if (!removed.ok()) return CallFailed(removed.status());
  std::cout << nlohmann::json{{"cells_removed", *removed}}.dump() << "\n";
  return kExitOk;
}

int Run(const std::vector<std::string>& args) {
  absl::StatusOr<ctl::CommandLine> line =
      ctl::ParseCommandLine(args, {"all", "dry-run", "help", "tls"});
  if (!line.ok()) return Usage(line.status().message());
  if (line->Get("help").has_value()) {
    std::cout << kUsage;
    return kExitOk;
  }
  Context c{.line = *std::move(line), .address = "127.0.0.1:50051", .timeout = std::nullopt};
  if (auto a = c.line.Get("address")) c.address = *a;
  if (auto t = c.line.Get("timeout_ms")) {
    int64_t ms = 0;
    if (!absl::SimpleAtoi(*t, &ms) || ms <= 0) {
      return Usage(absl::StrCat("--timeout_ms: not a positive integer: ", *t));
    }
    c.timeout = absl::Milliseconds(ms);
  }
  const std::vector<std::string>& w = c.line.words;
  const std::string command = absl::StrJoin(w, " ");
  if (command == "route") return RouteCommand(c);
  if (command == "batch") return BatchCommand(c);
  if (command == "stream") return StreamCommand(c);
  if (command == "complete") return CompleteCommand(c);
  if (command == "health") return HealthCommand(c);
  if (command == "models") return ModelsCommand(c);
  if (command == "config get") return ConfigGetCommand(c);
  if (command == "config set") return ConfigSetCommand(c);
  if (command == "model upsert") return ModelUpsertCommand(c);
  if (command == "model remove") return ModelRemoveCommand(c);
  if (command == "learned show") return LearnedShowCommand(c);
  if (command == "learned reset") return LearnedResetCommand(c);
  return Usage(w.empty() ? std::string("no command given")
                         : absl::StrCat("unknown command '", command, "'"));
}

}  // namespace
}  // namespace router::client

int main(int argc, char** argv) {
  return router::client::Run(std::vector<std::string>(argv + 1, argv + argc));
}
