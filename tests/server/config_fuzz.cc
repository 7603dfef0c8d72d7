// libFuzzer target of routerd's configuration reader: ParseConfigYaml (--config at start, and
// --check_config) and ParseConfigUpdateYaml (RouterAdmin.UpdateConfig and SIGHUP reloads, here on
// top of the defaults). Any text gives a RouterConfig or INVALID_ARGUMENT, never a crash, a hang or
// unbounded memory. An accepted config must round-trip through ConfigToYaml, and a config compared
// with itself is a valid runtime change.
// Seeds: config_fuzz_corpus/. Run: build-fuzz/bin/config_fuzz DIR (docs/fuzzing.md).

#include <cstddef>
#include <cstdint>

#include "server/config.h"
#include "tests/router_core/testing/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace router::server;
  namespace testing = router::core::testing;
  const absl::string_view yaml = testing::FuzzText(data, size);
  const absl::StatusOr<RouterConfig> config = ParseConfigYaml(yaml);
  if (!config.ok()) {
    testing::CheckRefusal("ParseConfigYaml", config.status());
  } else {
    const absl::StatusOr<RouterConfig> again = ParseConfigYaml(ConfigToYaml(*config));
    testing::CheckInvariant(again.ok(), "ConfigToYaml round-trips through ParseConfigYaml");
    testing::CheckInvariant(CheckRuntimeChange(*config, *config).ok(), "no change is a valid change");
    (void)RemovedLimits(RouterConfig(), *config);
  }
  const absl::StatusOr<RouterConfig> update = ParseConfigUpdateYaml(yaml, RouterConfig());
  if (!update.ok()) testing::CheckRefusal("ParseConfigUpdateYaml", update.status());
  return 0;
}
