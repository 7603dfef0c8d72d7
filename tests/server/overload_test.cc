// Admission bounds and overload (server/admission.h, router_runtime.h): a tenant's bound refuses
// only that tenant; a connection's bound refuses only that connection; a full queue offered five
// times its capacity admits exactly its capacity and answers every other call at once with
// UNAVAILABLE and a retry hint (the `grpc-retry-pushback-ms` trailer and "retry in N ms" in the
// message; inside RouteBatch and RouteStream answers, in the item's message). Every call is
// answered exactly once. Batches are held open (a 60 s batch delay, 120 s deadlines) so that the
// counts do not depend on timing; shutting routerd down decides what was admitted. Also the other
// listener limits a test can see without timing: the `grpc` message sizes, and `reflection`.

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "router/v1/router.grpc.pb.h"
#include "server/admission.h"
#include "server/routerd.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::server {
namespace {


TEST(AdmissionTest, BoundsCountTicketsUntilTheyAreDestroyed) {
  Admission admission;
  const Admission::Bounds bounds{.per_tenant = 2, .per_connection = 3};
  std::vector<AdmissionTicket> held;
  for (int k = 0; k < 2; ++k) {
    absl::StatusOr<AdmissionTicket> t = admission.Admit("a", /*queued=*/true, "c1", bounds);
    ASSERT_THAT(t, IsOk());
    held.push_back(*std::move(t));
  }
  EXPECT_THAT(admission.Admit("a", true, "c2", bounds).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("tenant 'a' has 2 queries waiting for a batch "
                                 "(limits.max_queued_per_tenant)")));
  // Inline queries do not count against the tenant's queue bound, only the connection's.
  absl::StatusOr<AdmissionTicket> inline_query = admission.Admit("a", false, "c1", bounds);
  ASSERT_THAT(inline_query, IsOk());
  EXPECT_THAT(admission.Admit("b", true, "c1", bounds).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("this connection has 3 queries in flight "
                                 "(limits.max_queries_per_connection)")));
  EXPECT_THAT(admission.Admit("b", true, "c2", bounds), IsOk());  // destroyed at once
  EXPECT_EQ(admission.TenantCount("a"), 2);
  EXPECT_EQ(admission.TenantCount("b"), 0);
  EXPECT_EQ(admission.ConnectionCount("c1"), 3);
  // A moved ticket releases once; destroying tickets gives their places back.
  AdmissionTicket moved = std::move(held.back());
  held.pop_back();
  EXPECT_EQ(admission.TenantCount("a"), 2);
  moved = AdmissionTicket();
  EXPECT_EQ(admission.TenantCount("a"), 1);
  EXPECT_THAT(admission.Admit("a", true, "c2", bounds), IsOk());
  held.clear();
  *inline_query = AdmissionTicket();
  EXPECT_EQ(admission.TenantCount("a"), 0);
  EXPECT_EQ(admission.ConnectionCount("c1"), 0);
  // No bounds: nothing is counted.
  EXPECT_THAT(admission.Admit("a", true, "c1", {}), IsOk());
}

struct Call {
  grpc::ClientContext ctx;
  v1::RouteRequest request;
  v1::RouteResponse response;
  grpc::Status status;
  std::atomic<int> callbacks{0};
};

class OverloadTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (routerd_ != nullptr) routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(10));
  }

  // Batches close only when full (`max_batch_size`) or after a minute.
  // `more`: further top-level YAML.
  void Start(int64_t max_batch_size, int64_t max_queued, const std::string& limits,
             const std::string& more = "") {
    const std::string yaml = absl::StrCat(
        "listen: 127.0.0.1:0\nmetrics_listen: ''\nshutdown: {grace_s: 10, drain_s: 0}\n"
        "batching: {max_batch_size: ",
        max_batch_size, ", max_batch_delay_ms: 60000, max_queued: ", max_queued,
        "}\nlimits: {", limits, "}\n", more, "\n");
    absl::StatusOr<RouterConfig> config = ParseConfigYaml(yaml);
    ASSERT_THAT(config, IsOk()) << yaml;
    absl::StatusOr<std::unique_ptr<Routerd>> d = Routerd::Start(*std::move(config), "");
    ASSERT_THAT(d, IsOk());
    routerd_ = *std::move(d);
  }

  std::shared_ptr<grpc::Channel> NewConnection() {
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", routerd_->port()),
                                     grpc::InsecureChannelCredentials(), args);
  }

  // Sends `n` batch-mode Route calls of `tenant` on `stub`, each with a 120 s deadline.
  void Send(v1::Router::Stub& stub, const std::string& tenant, int n) {
    for (int k = 0; k < n; ++k) {
      auto call = std::make_unique<Call>();
      v1::Query* q = call->request.mutable_query();
      q->set_id(absl::StrCat(tenant, "-", calls_.size()));
      q->set_text("Write a python function that returns the n-th Fibonacci number.");
      q->set_tenant(tenant);
      call->ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
      Call* raw = call.get();
      calls_.push_back(std::move(call));
      tenants_.push_back(tenant);
      stub.async()->Route(&raw->ctx, &raw->request, &raw->response, [this, raw](grpc::Status s) {
        absl::MutexLock lock(&mu_);
        raw->status = std::move(s);
        raw->callbacks.fetch_add(1);
        ++answered_;
        if (raw->status.error_code() == grpc::StatusCode::UNAVAILABLE) ++unavailable_;
      });
    }
  }
  // Waits (at most 60 s) until `n` calls were answered UNAVAILABLE in all.
  bool AwaitUnavailable(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return unavailable_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(60));
  }
  // Waits (at most 60 s) until `n` queries wait for a batch.
  bool AwaitQueued(int64_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (routerd_->runtime().NumQueued() < n) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return true;
  }
  // Shuts routerd down (deciding what was admitted) and waits for every answer.
  void Drain() {
    routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(10));
    absl::MutexLock lock(&mu_);
    auto all = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return answered_ == static_cast<int>(calls_.size());
    };
    ASSERT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(60)));
  }
  // Codes by tenant: {tenant: {code: count}}; checks every refusal carries a retry hint.
  std::map<std::string, std::map<grpc::StatusCode, int>> Outcomes() {
    std::map<std::string, std::map<grpc::StatusCode, int>> out;
    for (size_t k = 0; k < calls_.size(); ++k) {
      Call& c = *calls_[k];
      EXPECT_EQ(c.callbacks.load(), 1);
      ++out[tenants_[k]][c.status.error_code()];
      if (c.status.error_code() != grpc::StatusCode::UNAVAILABLE) continue;
      EXPECT_THAT(c.status.error_message(), HasSubstr("; retry in "));
      const auto& trailers = c.ctx.GetServerTrailingMetadata();
      auto it = trailers.find("grpc-retry-pushback-ms");
      int64_t ms = -1;
      EXPECT_NE(it, trailers.end()) << c.status.error_message();
      if (it != trailers.end()) {
        EXPECT_TRUE(absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms));
      }
      EXPECT_GT(ms, 0);
      EXPECT_LE(ms, 10000);
    }
    return out;
  }

  std::unique_ptr<Routerd> routerd_;
  std::vector<std::unique_ptr<Call>> calls_;
  std::vector<std::string> tenants_;
  absl::Mutex mu_;
  int answered_ ABSL_GUARDED_BY(mu_) = 0;
  int unavailable_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(OverloadTest, ATenantAtItsBoundIsRefusedWhileOtherTenantsAreAdmitted) {
  Start(/*max_batch_size=*/1000, /*max_queued=*/1000, "max_queued_per_tenant: 5");
  auto stub = v1::Router::NewStub(NewConnection());
  Send(*stub, "greedy", 8);
  // Three refusals mean five were admitted: places come back only when answers go out, and
  // none goes out before the batch closes.
  ASSERT_TRUE(AwaitUnavailable(3));
  Send(*stub, "modest", 5);
  ASSERT_TRUE(AwaitQueued(10));
  Drain();
  const auto outcomes = Outcomes();
  EXPECT_EQ(outcomes.at("greedy").at(grpc::StatusCode::OK), 5);
  EXPECT_EQ(outcomes.at("greedy").at(grpc::StatusCode::UNAVAILABLE), 3);
  EXPECT_EQ(outcomes.at("modest").at(grpc::StatusCode::OK), 5);
  EXPECT_EQ(outcomes.at("modest").size(), 1u);
}

TEST_F(OverloadTest, AConnectionAtItsBoundIsRefusedWhileOtherConnectionsAreAdmitted) {
  Start(/*max_batch_size=*/1000, /*max_queued=*/1000, "max_queries_per_connection: 4");
  auto busy = v1::Router::NewStub(NewConnection());
  Send(*busy, "busy", 6);
  ASSERT_TRUE(AwaitUnavailable(2));
  auto quiet = v1::Router::NewStub(NewConnection());
  Send(*quiet, "quiet", 4);
  ASSERT_TRUE(AwaitQueued(8));
  Drain();
  const auto outcomes = Outcomes();
  EXPECT_EQ(outcomes.at("busy").at(grpc::StatusCode::OK), 4);
  EXPECT_EQ(outcomes.at("busy").at(grpc::StatusCode::UNAVAILABLE), 2);
  EXPECT_EQ(outcomes.at("quiet").at(grpc::StatusCode::OK), 4);
  EXPECT_EQ(outcomes.at("quiet").size(), 1u);
}

TEST_F(OverloadTest, FiveTimesATenantsBoundIsAdmittedUpToTheBoundAndTheRestRefusedAtOnce) {
  constexpr int kBound = 40;
  Start(/*max_batch_size=*/1000, /*max_queued=*/1000,
        absl::StrCat("max_queued_per_tenant: ", kBound));
  std::vector<std::unique_ptr<v1::Router::Stub>> stubs;
  for (int c = 0; c < 4; ++c) stubs.push_back(v1::Router::NewStub(NewConnection()));
  for (int k = 0; k < 5 * kBound; ++k) Send(*stubs[k % stubs.size()], "t", 1);
  // The refusals are answered while the admitted calls still wait for their batch.
  ASSERT_TRUE(AwaitUnavailable(4 * kBound));
  ASSERT_TRUE(AwaitQueued(kBound));
  Drain();
  const auto outcomes = Outcomes();
  EXPECT_EQ(outcomes.at("t").at(grpc::StatusCode::OK), kBound);
  EXPECT_EQ(outcomes.at("t").at(grpc::StatusCode::UNAVAILABLE), 4 * kBound);
  EXPECT_EQ(outcomes.at("t").size(), 2u);
}

// Real overload: small batches, decided as they fill, and a queue of 16 offered 25 times that at
// once. How many are refused depends on the machine; what does not: every call is answered once,
// OK or UNAVAILABLE with a retry hint, and at least a queue's worth is admitted.
TEST_F(OverloadTest, UnderOverloadEveryCallIsAnsweredOnceAndEveryRefusalCarriesAHint) {
  constexpr int kQueue = 16;
  const std::string yaml = absl::StrCat(
      "listen: 127.0.0.1:0\nmetrics_listen: ''\nshutdown: {grace_s: 10, drain_s: 0}\n"
      "batching: {max_batch_size: 8, max_batch_delay_ms: 1, max_queued: ", kQueue, "}\n");
  absl::StatusOr<RouterConfig> config = ParseConfigYaml(yaml);
  ASSERT_THAT(config, IsOk());
  absl::StatusOr<std::unique_ptr<Routerd>> d = Routerd::Start(*std::move(config), "");
  ASSERT_THAT(d, IsOk());
  routerd_ = *std::move(d);
  std::vector<std::unique_ptr<v1::Router::Stub>> stubs;
  for (int c = 0; c < 8; ++c) stubs.push_back(v1::Router::NewStub(NewConnection()));
  for (int k = 0; k < 25 * kQueue; ++k) Send(*stubs[k % stubs.size()], "t", 1);
  {
    absl::MutexLock lock(&mu_);
    auto all = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return answered_ == static_cast<int>(calls_.size());
    };
    ASSERT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(60)));
  }
  const auto outcomes = Outcomes();
  int ok = 0, unavailable = 0;
  for (const auto& [code, n] : outcomes.at("t")) {
    EXPECT_TRUE(code == grpc::StatusCode::OK || code == grpc::StatusCode::UNAVAILABLE) << code;
    (code == grpc::StatusCode::OK ? ok : unavailable) += n;
  }
  EXPECT_EQ(ok + unavailable, 25 * kQueue);
  EXPECT_GE(ok, kQueue);
}

TEST_F(OverloadTest, RefusedQueriesInsideABatchOrAStreamCarryTheHintInTheirMessage) {
  Start(/*max_batch_size=*/1000, /*max_queued=*/1000, "max_queued_per_tenant: 5");
  auto stub = v1::Router::NewStub(NewConnection());
  auto query = [](const std::string& id, const std::string& tenant) {
    v1::Query q;
    q.set_id(id);
    q.set_text("Prove that the square root of two is irrational.");
    q.set_tenant(tenant);
    return q;
  };
  // A RouteBatch's queries are admitted one by one as it is taken in: the sixth to eighth of one
  // tenant are refused in their items; the first five are decided together.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    v1::RouteBatchRequest batch;
    for (int k = 0; k < 8; ++k) *batch.add_queries() = query(absl::StrCat("b", k), "x");
    v1::RouteBatchResponse response;
    const grpc::Status s = stub->RouteBatch(&ctx, batch, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(response.items_size(), 8);
    for (int k = 0; k < 8; ++k) {
      const v1::RouteBatchItem& item = response.items(k);
      if (k < 5) {
        EXPECT_TRUE(item.has_assignment()) << item.error().message();
      } else {
        EXPECT_EQ(item.error().code(), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
        EXPECT_THAT(item.error().message(), HasSubstr("limits.max_queued_per_tenant"));
        EXPECT_THAT(item.error().message(), HasSubstr("; retry in "));
      }
    }
  }
  // A stream (another tenant: the batch's places come back only after its answer was sent): five
  // queries wait for their batch, three are refused at once as error items.
  grpc::ClientContext ctx;
  auto stream = stub->RouteStream(&ctx);
  for (int k = 0; k < 8; ++k) {
    v1::RouteStreamRequest request;
    *request.mutable_query() = query(absl::StrCat("s", k), "y");
    ASSERT_TRUE(stream->Write(request));
  }
  int refused = 0;
  v1::RouteStreamResponse response;
  while (refused < 3 && stream->Read(&response)) {
    for (const v1::RouteBatchItem& item : response.items()) {
      ASSERT_TRUE(item.has_error());
      EXPECT_THAT(item.error().message(), HasSubstr("; retry in "));
      ++refused;
    }
  }
  EXPECT_EQ(refused, 3);
  ASSERT_TRUE(AwaitQueued(5));
  stream->WritesDone();
  routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(10));
  int assigned = 0;
  while (stream->Read(&response)) {
    for (const v1::RouteBatchItem& item : response.items()) assigned += item.has_assignment();
  }
  EXPECT_EQ(assigned, 5);
  EXPECT_TRUE(stream->Finish().ok());
}


// The `grpc` section's message sizes reach the server: a request over max_receive_message_bytes
// and an answer over max_send_message_bytes fail with RESOURCE_EXHAUSTED, and routerd keeps
// serving calls that fit.
TEST_F(OverloadTest, MessagesOverTheSizeLimitsFailAndCallsThatFitAreServed) {
  // The gateway's body limit must fit both sizes (config.h), hence its 64 KiB here.
  Start(/*max_batch_size=*/1, /*max_queued=*/100000, "",
        "grpc: {max_receive_message_bytes: 1048576, max_send_message_bytes: 131072}\n"
        "gateway: {request: {max_body_bytes: 65536}}");
  auto stub = v1::Router::NewStub(NewConnection());
  auto route = [&stub](const std::string& text, v1::RouteResponse* response) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    v1::RouteRequest request;
    request.mutable_query()->set_id("q");
    request.mutable_query()->set_text(text);
    return stub->Route(&ctx, request, response);
  };
  v1::RouteResponse one;
  EXPECT_EQ(route(std::string(1100000, 'a'), &one).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(route("Name a prime.", &one).ok());
  // Enough queries that their answers pass 128 KiB while the request stays under 1 MiB.
  const size_t per_answer = one.ByteSizeLong();
  ASSERT_GT(per_answer, 40u);
  const int n = static_cast<int>(2 * 131072 / per_answer);
  ASSERT_LE(n, 4096);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  v1::RouteBatchRequest batch;
  for (int k = 0; k < n; ++k) {
    v1::Query* q = batch.add_queries();
    q->set_id(absl::StrCat(k));
    q->set_text("Name a prime.");
  }
  ASSERT_LT(batch.ByteSizeLong(), 1048576u);
  v1::RouteBatchResponse response;
  EXPECT_EQ(stub->RouteBatch(&ctx, batch, &response).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(route("What is the capital of Spain?", &one).ok());
}

// A ServerReflectionRequest asking for the service list (field 7, list_services, empty), sent
// as a unary call on the reflection service's streaming method: OK with an answer when
// reflection is on, UNIMPLEMENTED when it is off.
grpc::Status ListServices(const std::shared_ptr<grpc::Channel>& channel, std::string* answer) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  const std::string request("\x3a\x00", 2);
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1), out;
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", {}, &in,
                 &out, [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  std::vector<grpc::Slice> slices;
  if (status.ok() && out.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      answer->append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return status;
}

// Both orders in one process: reflection is per server, not process-wide.
TEST_F(OverloadTest, ReflectionIsServedUnlessTurnedOff) {
  std::string answer;
  for (const bool on : {false, true, false}) {
    Start(/*max_batch_size=*/1, /*max_queued=*/1000, "", on ? "" : "reflection: false");
    answer.clear();
    const grpc::Status s = ListServices(NewConnection(), &answer);
    if (on) {
      EXPECT_TRUE(s.ok()) << s.error_message();
      EXPECT_THAT(answer, HasSubstr("router.v1.Router"));
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED) << s.error_message();
    }
    routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(10));
    routerd_.reset();
  }
}

}  // namespace
}  // namespace router::server
