// File: bench_routerd.h
//
// What the benchmarks that run routerd in their own process (load_bench, overload_bench) do to
// its configuration: listen on a free loopback port, plaintext, without tokens, with RouterAdmin
// open to the benchmark (on loopback, where routerd allows that) for its settings. Header-only,
// bench-only.

#ifndef ROUTER_BENCH_BENCH_ROUTERD_H_
#define ROUTER_BENCH_BENCH_ROUTERD_H_

#include <string>

#include "server/config.h"

namespace router::bench {

// `metrics_listen`: "" = no /metrics endpoint.
inline void ForInProcessBenchmark(server::RouterConfig& config, const std::string& metrics_listen) {
  config.listen = "127.0.0.1:0";
  config.metrics_listen = metrics_listen;
  config.tls = {};
  config.api_token_file.clear();
  config.admin = {};
  config.admin.allow_unauthenticated = true;
}

}  // namespace router::bench

#endif  // ROUTER_BENCH_BENCH_ROUTERD_H_
