// libFuzzer target of routerd's request validation: the bytes of a Route or RouteBatch request
// (the first byte picks which, and the caller's deadline) go through ParseRequest and each query
// through TakeIn, as route_call.cc and route_batch_call.cc do, against the runtime state routerd
// builds from deploy/routerd.yaml and its embedded estimator (ROUTER_DEFAULT_ESTIMATOR), admitted
// by an Admission with the config's bounds (each intake gives its place back before the next). Any
// bytes
// give an intake or INVALID_ARGUMENT naming the field under "query" or "queries[k]", never a crash,
// a hang or unbounded memory; an intake carries one prediction per estimator model, each finite.
// Seeds: query_intake_fuzz_corpus/. Run: build-fuzz/bin/query_intake_fuzz DIR (docs/fuzzing.md).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "router/v1/router.pb.h"
#include "router_core/estimate/artifact.h"
#include "server/admission.h"
#include "server/config.h"
#include "server/query_intake.h"
#include "server/raw_message.h"
#include "server/runtime_state.h"
#include "tests/router_core/testing/fuzz_check.h"

namespace router::server {
namespace {

namespace testing = router::core::testing;

template <typename T>
T OrDie(absl::StatusOr<T> value, const char* what) {
  if (!value.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, value.status().ToString().c_str());
    std::abort();
  }
  return *std::move(value);
}

const RuntimeState& State() {
  static const std::shared_ptr<const RuntimeState> state = [] {
    RouterConfig config =
        OrDie(LoadConfigFile(ROUTER_SOURCE_DIR "/deploy/routerd.yaml"), "deploy/routerd.yaml");
    core::Predictor predictor = OrDie(
        core::MakePredictor(OrDie(core::ReadArtifactFile(ROUTER_DEFAULT_ESTIMATOR), "artifact")),
        "predictor");
    return OrDie(BuildRuntimeState(std::move(config),
                                   std::make_shared<const core::Predictor>(std::move(predictor)),
                                   /*generation=*/1),
                 "runtime state");
  }();
  return *state;
}

void TakeInOne(const v1::Query& query, const std::string& field, absl::Time now,
               absl::Time deadline) {
  const RuntimeState& state = State();
  static Admission* const admission = new Admission();
  const Admission::Bounds bounds{.per_tenant = state.config.max_queued_per_tenant,
                                 .per_connection = state.config.max_queries_per_connection};
  const absl::StatusOr<Intake> intake =
      TakeIn(query, field, state, now, deadline, [&](const v1::Query& q, RoutingMode mode) {
        return admission->Admit(q.tenant(), mode == RoutingMode::kBatch, "fuzz-peer", bounds);
      });
  if (!intake.ok()) {
    testing::CheckRefusal("TakeIn", intake.status());
    testing::CheckInvariant(absl::StartsWith(intake.status().message(), field + "."),
                            "the error names the field under the query's path");
    return;
  }
  const core::Predictions& p = intake->query.predictions;
  const size_t n = state.predictor->models().size();
  testing::CheckInvariant(
      p.quality.size() == n && p.quality_lower.size() == n && p.cost_usd.size() == n,
      "one prediction per estimator model");
  for (size_t j = 0; j < n; ++j) {
    testing::CheckInvariant(std::isfinite(p.quality[j]) && std::isfinite(p.quality_lower[j]) &&
                                std::isfinite(p.cost_usd[j]),
                            "finite predictions");
  }
}

}  // namespace
}  // namespace router::server

// LLVMFuzzerInitialize: tests/server/testing/fuzz_silent_protobuf.cc.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace router::server;
  if (size < 1) return 0;
  grpc::Slice slice(data + 1, size - 1);
  const grpc::ByteBuffer raw(&slice, 1);
  const absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  // Bits 1-3: no deadline, or one 0, 1, 4, 16, 64, 256 or 1024 ms away.
  constexpr int kDeadlineMs[8] = {-1, 0, 1, 4, 16, 64, 256, 1024};
  const int ms = kDeadlineMs[(data[0] >> 1) & 7];
  const absl::Time deadline = ms < 0 ? absl::InfiniteFuture() : now + absl::Milliseconds(ms);
  if ((data[0] & 1) == 0) {
    router::v1::RouteRequest request;
    if (!ParseRequest(raw, request).ok()) return 0;  // raw_message_fuzz covers refusals
    TakeInOne(request.query(), "query", now, deadline);
  } else {
    router::v1::RouteBatchRequest request;
    if (!ParseRequest(raw, request).ok()) return 0;
    for (int k = 0; k < request.queries_size(); ++k) {
      TakeInOne(request.queries(k), absl::StrCat("queries[", k, "]"), now, deadline);
    }
  }
  return 0;
}
