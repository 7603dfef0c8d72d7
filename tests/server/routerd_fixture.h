// File: routerd_fixture.h
//
// RouterdFixture: a gtest fixture that runs one routerd in process on loopback ports chosen by the
// kernel (the config's listen addresses use port 0), with a channel to its API listener, and shuts
// it down (no drain, 5 s grace) after the test. Server tests derive from it and add their stubs.
//
// Thread-safety: as gtest fixtures: the test's thread owns it; routerd_ itself is thread-safe.
// Errors: StartRouterd fails the test (a fatal failure) when the config does not parse or routerd
// does not start; callers check HasFatalFailure() before using routerd_.
// Cost: one routerd start (loads the estimator artifact the config names, or the embedded default).

#ifndef ROUTER_TESTS_SERVER_ROUTERD_FIXTURE_H_
#define ROUTER_TESTS_SERVER_ROUTERD_FIXTURE_H_

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "server/routerd.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::server::testing {

class RouterdFixture : public ::testing::Test {
 protected:
  void TearDown() override {
    if (routerd_ != nullptr) routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
  }

  // Starts routerd on the YAML config `yaml` and opens channel_ to its API port.
  void StartRouterd(const std::string& yaml) {
    absl::StatusOr<RouterConfig> config = ParseConfigYaml(yaml);
    ASSERT_THAT(config, core::testing::IsOk());
    absl::StatusOr<std::unique_ptr<Routerd>> d = Routerd::Start(*std::move(config), "");
    ASSERT_THAT(d, core::testing::IsOk());
    routerd_ = *std::move(d);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", routerd_->port()),
                                   grpc::InsecureChannelCredentials());
  }

  std::unique_ptr<Routerd> routerd_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace router::server::testing

#endif  // ROUTER_TESTS_SERVER_ROUTERD_FIXTURE_H_
