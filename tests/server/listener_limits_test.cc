// The per-connection HTTP/2 limits of routerd's API listener, end to end (docs/configuration.md,
// `grpc.max_concurrent_streams`, `grpc.min_ping_interval_ms`, `grpc.max_ping_strikes`):
//   - the listener advertises `max_concurrent_streams` (SETTINGS_MAX_CONCURRENT_STREAMS); a gRPC
//     client's calls beyond it wait on that connection until a call ends, while another
//     connection is served; a client that ignores the setting loses the connection;
//   - a client that pings (without data) sooner than `min_ping_interval_ms` after its last ping
//     collects strikes; past `max_ping_strikes` it is sent GOAWAY ENHANCE_YOUR_CALM with
//     "too_many_pings" and its connection is closed; pings spaced out are answered;
//   - a unary call whose client resets it before sending its request is counted as cancelled,
//     never as an invalid request.
// The raw HTTP/2 client below (RawHttp2) speaks just enough of RFC 9113 for that: the preface,
// SETTINGS, PING, HEADERS with literal HPACK fields, DATA, RST_STREAM, and reading frames.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "health.grpc.pb.h"
#include "tests/server/http_get.h"
#include "tests/server/routerd_fixture.h"
#include "tests/server/testing/metrics_scrape.h"

namespace router::server {
namespace {

using ::testing::HasSubstr;

// HTTP/2 frame types, flags, settings and error codes used here (RFC 9113).
constexpr uint8_t kData = 0x0, kHeaders = 0x1, kRstStream = 0x3, kSettings = 0x4, kPing = 0x6,
                  kGoaway = 0x7;
constexpr uint8_t kAck = 0x1, kEndStream = 0x1, kEndHeaders = 0x4;
constexpr uint16_t kSettingsMaxConcurrentStreams = 0x3;
constexpr uint32_t kEnhanceYourCalm = 0xb;
const std::string kCancelCode("\0\0\0\x8", 4);  // RST_STREAM's payload: error code CANCEL

struct Frame {
  uint8_t type = 0;
  uint8_t flags = 0;
  uint32_t stream = 0;
  std::string payload;
};

uint32_t BigEndian(absl::string_view bytes) {
  uint32_t v = 0;
  for (const char c : bytes) v = (v << 8) | static_cast<uint8_t>(c);
  return v;
}

// A plaintext HTTP/2 client connection on one socket. Every read waits at most 20 s (a bound for a
// broken server, not a measurement).
class RawHttp2 {
 public:
  ~RawHttp2() {
    if (fd_ >= 0) close(fd_);
  }

  // Connects to 127.0.0.1:port, sends the preface and an empty SETTINGS frame, and acknowledges
  // the server's SETTINGS, which it keeps (settings()).
  void Open(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd_, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_TRUE(Write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    ASSERT_TRUE(Send(kSettings, 0, 0, ""));
    std::optional<Frame> f = ReadUntil([](const Frame& f) { return f.type == kSettings; });
    ASSERT_TRUE(f.has_value()) << "no SETTINGS from the server";
    ASSERT_EQ(f->flags & kAck, 0);
    for (size_t k = 0; k + 6 <= f->payload.size(); k += 6) {
      settings_.emplace_back(static_cast<uint16_t>(BigEndian(f->payload.substr(k, 2))),
                             BigEndian(f->payload.substr(k + 2, 4)));
    }
    ASSERT_TRUE(Send(kSettings, kAck, 0, ""));
  }

  bool Send(uint8_t type, uint8_t flags, uint32_t stream, const std::string& payload) {
    std::string frame;
    const uint32_t n = static_cast<uint32_t>(payload.size());
    frame += static_cast<char>(n >> 16);
    frame += static_cast<char>(n >> 8);
    frame += static_cast<char>(n);
    frame += static_cast<char>(type);
    frame += static_cast<char>(flags);
    for (int shift = 24; shift >= 0; shift -= 8) frame += static_cast<char>(stream >> shift);
    return Write(frame + payload);
  }

  bool Ping(uint64_t opaque) {
    std::string payload;
    for (int shift = 56; shift >= 0; shift -= 8) payload += static_cast<char>(opaque >> shift);
    return Send(kPing, 0, 0, payload);
  }

  // Opens stream `id` with a gRPC request's headers for `path` (no END_STREAM: the request stays
  // open). Each field is an HPACK literal without indexing, new name, no Huffman coding.
  bool OpenStream(uint32_t id, const std::string& path) {
    std::string block;
    for (const auto& [name, value] :
         std::vector<std::pair<std::string, std::string>>{{":method", "POST"},
                                                          {":scheme", "http"},
                                                          {":path", path},
                                                          {":authority", "localhost"},
                                                          {"content-type", "application/grpc"},
                                                          {"te", "trailers"}}) {
      block += '\0';
      block += static_cast<char>(name.size());
      block += name;
      block += static_cast<char>(value.size());
      block += value;
    }
    return Send(kHeaders, kEndHeaders, id, block);
  }

  // The next frame; nullopt when the server closed the connection (eof() is then true) or nothing
  // came within 20 s.
  std::optional<Frame> Read() {
    while (buffer_.size() < 9 || buffer_.size() < 9 + BigEndian(buffer_.substr(0, 3))) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20000) <= 0) return std::nullopt;
      char chunk[16384];
      const ssize_t n = read(fd_, chunk, sizeof(chunk));
      if (n <= 0) {
        eof_ = true;
        return std::nullopt;
      }
      buffer_.append(chunk, static_cast<size_t>(n));
    }
    Frame f;
    const uint32_t length = BigEndian(buffer_.substr(0, 3));
    f.type = static_cast<uint8_t>(buffer_[3]);
    f.flags = static_cast<uint8_t>(buffer_[4]);
    f.stream = BigEndian(buffer_.substr(5, 4)) & 0x7fffffffu;
    f.payload = buffer_.substr(9, length);
    buffer_.erase(0, 9 + length);
    return f;
  }

  // Reads frames until one satisfies `want` (returned) or the connection ends (nullopt); the
  // frames passed over are kept in seen().
  template <typename Want>
  std::optional<Frame> ReadUntil(Want want) {
    while (std::optional<Frame> f = Read()) {
      if (want(*f)) return f;
      seen_.push_back(*std::move(f));
    }
    return std::nullopt;
  }

  // Reads until the server closes the connection (true) or 20 s pass without a frame (false).
  bool ReadToEnd() {
    while (Read().has_value()) {
    }
    return eof_;
  }

  std::optional<uint32_t> Setting(uint16_t id) const {
    std::optional<uint32_t> value;
    for (const auto& [k, v] : settings_) {
      if (k == id) value = v;
    }
    return value;
  }
  const std::vector<Frame>& seen() const { return seen_; }
  bool eof() const { return eof_; }

 private:
  bool Write(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      // MSG_NOSIGNAL: a server that closed the connection makes this fail, not kill the test.
      const ssize_t n = send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
  bool eof_ = false;
  std::vector<std::pair<uint16_t, uint32_t>> settings_;
  std::vector<Frame> seen_;
};

class ListenerLimitsTest : public testing::RouterdFixture {
 protected:
  void Start(int max_streams, int min_ping_interval_ms, int max_ping_strikes) {
    StartRouterd(
        absl::StrCat("listen: 127.0.0.1:0\nmetrics_listen: ''\nshutdown: {grace_s: 5, drain_s: 0}\n"
                     "grpc: {max_concurrent_streams: ",
                     max_streams, ", min_ping_interval_ms: ", min_ping_interval_ms,
                     ", max_ping_strikes: ", max_ping_strikes, "}\n"));
  }

  // A channel with a connection of its own.
  std::shared_ptr<grpc::Channel> NewConnection() {
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", routerd_->port()),
                                     grpc::InsecureChannelCredentials(), args);
  }
};

using HealthStub = grpc::health::v1::Health::Stub;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// A Health.Watch call held open until cancelled; Started() once its first answer arrived.
class HeldWatch : public grpc::ClientReadReactor<HealthCheckResponse> {
 public:
  explicit HeldWatch(HealthStub& stub) {
    stub.async()->Watch(&ctx_, &request_, this);
    StartRead(&response_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (ok) {
      started_.Notify();
      StartRead(&response_);
    }
  }
  void OnDone(const grpc::Status& status) override {
    status_ = status;
    done_.Notify();
  }
  bool Started() { return started_.WaitForNotificationWithTimeout(absl::Seconds(30)); }
  void Cancel() { ctx_.TryCancel(); }
  bool Done() { return done_.WaitForNotificationWithTimeout(absl::Seconds(30)); }

 private:
  grpc::ClientContext ctx_;
  HealthCheckRequest request_;
  HealthCheckResponse response_;
  absl::Notification started_;
  absl::Notification done_;
  grpc::Status status_;
};

TEST_F(ListenerLimitsTest, ExtraCallsOnAConnectionWaitForAFreeStream) {
  Start(/*max_streams=*/2, /*min_ping_interval_ms=*/10000, /*max_ping_strikes=*/2);
  ASSERT_FALSE(HasFatalFailure());
  auto stub = grpc::health::v1::Health::NewStub(NewConnection());
  {
    // The connection is up and the client has the server's SETTINGS before the limit matters.
    grpc::ClientContext ctx;
    HealthCheckRequest request;
    HealthCheckResponse response;
    ASSERT_TRUE(stub->Check(&ctx, request, &response).ok());
  }
  HeldWatch first(*stub), second(*stub);
  ASSERT_TRUE(first.Started());
  ASSERT_TRUE(second.Started());

  // A third call on the same connection is not started while both streams are taken...
  grpc::ClientContext ctx;
  HealthCheckRequest request;
  HealthCheckResponse response;
  grpc::Status status;
  absl::Notification third_done;
  stub->async()->Check(&ctx, &request, &response, [&](grpc::Status s) {
    status = std::move(s);
    third_done.Notify();
  });
  // ...while another connection is served at once,
  {
    auto other = grpc::health::v1::Health::NewStub(NewConnection());
    grpc::ClientContext other_ctx;
    HealthCheckResponse other_response;
    ASSERT_TRUE(other->Check(&other_ctx, request, &other_response).ok());
  }
  EXPECT_FALSE(third_done.HasBeenNotified());
  EXPECT_FALSE(third_done.WaitForNotificationWithTimeout(absl::Seconds(1)));
  // ...and once one of them ends, it is.
  first.Cancel();
  ASSERT_TRUE(first.Done());
  ASSERT_TRUE(third_done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  second.Cancel();
  ASSERT_TRUE(second.Done());
}

// A client that opens more streams than advertised is in breach of HTTP/2 (RFC 9113 section
// 5.1.2): gRPC takes it as a connection error, ends the calls open on that connection with
// UNAVAILABLE and closes it. Up to the limit, streams stay open.
TEST_F(ListenerLimitsTest, AClientIgnoringTheStreamLimitLosesItsConnection) {
  Start(/*max_streams=*/2, /*min_ping_interval_ms=*/10000, /*max_ping_strikes=*/2);
  ASSERT_FALSE(HasFatalFailure());
  RawHttp2 h2;
  h2.Open(routerd_->port());
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(h2.Setting(kSettingsMaxConcurrentStreams), std::optional<uint32_t>(2));
  // Both sides apply the settings once acknowledged.
  ASSERT_TRUE(h2.ReadUntil([](const Frame& f) { return f.type == kSettings && f.flags & kAck; }));
  const std::string path = "/router.v1.Router/RouteStream";
  ASSERT_TRUE(h2.OpenStream(1, path));
  ASSERT_TRUE(h2.OpenStream(3, path));
  // Two streams are within the limit: nothing ends them (a ping's answer shows the server has
  // read them).
  ASSERT_TRUE(h2.Ping(1));
  ASSERT_TRUE(h2.ReadUntil([](const Frame& f) { return f.type == kPing && f.flags & kAck; }));
  for (const Frame& f : h2.seen()) {
    EXPECT_FALSE(f.type == kHeaders || f.type == kRstStream || f.type == kGoaway)
        << "frame type " << int{f.type} << " on stream " << f.stream;
  }
  ASSERT_TRUE(h2.OpenStream(5, path));
  std::vector<Frame> after;
  while (std::optional<Frame> f = h2.Read()) after.push_back(*std::move(f));
  EXPECT_TRUE(h2.eof()) << "the connection stays open";
  // The extra stream gets nothing; the open ones get at most their end (UNAVAILABLE trailers, a
  // reset), never an answer.
  for (const Frame& f : after) {
    EXPECT_NE(f.stream, 5u) << "the extra stream got frame type " << int{f.type};
    if (f.type == kHeaders) {
      EXPECT_TRUE(f.flags & kEndStream) << "stream " << f.stream;
    }
  }
}

TEST_F(ListenerLimitsTest, AClientPingingTooOftenIsSentGoawayAndDisconnected) {
  Start(/*max_streams=*/100, /*min_ping_interval_ms=*/60000, /*max_ping_strikes=*/2);
  ASSERT_FALSE(HasFatalFailure());
  RawHttp2 h2;
  h2.Open(routerd_->port());
  ASSERT_FALSE(HasFatalFailure());
  // The first ping is allowed, the next three within the minute are strikes 1-3: past 2 strikes
  // the server says goodbye (a ping written after it closed the connection fails).
  ASSERT_TRUE(h2.Ping(1));
  for (uint64_t k = 2; k <= 4 && h2.Ping(k); ++k) {
  }
  std::optional<Frame> goaway = h2.ReadUntil([](const Frame& f) { return f.type == kGoaway; });
  ASSERT_TRUE(goaway.has_value()) << "no GOAWAY; eof " << h2.eof();
  ASSERT_GE(goaway->payload.size(), 8u);
  EXPECT_EQ(BigEndian(goaway->payload.substr(4, 4)), kEnhanceYourCalm);
  EXPECT_THAT(goaway->payload.substr(8), HasSubstr("too_many_pings"));
  EXPECT_TRUE(h2.ReadToEnd()) << "the connection stays open after GOAWAY";
}

TEST_F(ListenerLimitsTest, PingsSpacedByTheMinimumIntervalAreAnswered) {
  Start(/*max_streams=*/100, /*min_ping_interval_ms=*/100, /*max_ping_strikes=*/1);
  ASSERT_FALSE(HasFatalFailure());
  RawHttp2 h2;
  h2.Open(routerd_->port());
  ASSERT_FALSE(HasFatalFailure());
  // Five times the interval apart, every ping is acknowledged and none is a strike (a loaded
  // machine may still make one gap look short to the server: one strike is allowed)...
  for (uint64_t k = 1; k <= 4; ++k) {
    if (k > 1) absl::SleepFor(absl::Milliseconds(500));
    ASSERT_TRUE(h2.Ping(k));
    std::optional<Frame> ack =
        h2.ReadUntil([](const Frame& f) { return f.type == kPing || f.type == kGoaway; });
    ASSERT_TRUE(ack.has_value()) << "ping " << k << ": no answer; eof " << h2.eof();
    ASSERT_EQ(ack->type, kPing) << "ping " << k << " was answered with GOAWAY";
    EXPECT_TRUE(ack->flags & kAck);
    EXPECT_EQ(BigEndian(ack->payload.substr(4, 4)), k);
  }
  // ...and the same connection pinging back to back is closed (a ping written after the server
  // closed it fails: the connection is gone already).
  for (uint64_t k = 5; k <= 8 && h2.Ping(k); ++k) {
  }
  std::optional<Frame> goaway = h2.ReadUntil([](const Frame& f) { return f.type == kGoaway; });
  ASSERT_TRUE(goaway.has_value());
  EXPECT_THAT(goaway->payload.substr(8), HasSubstr("too_many_pings"));
}

// gRPC 1.51 can run a unary method's handler with no request message when the client reset the
// call before sending one, before it has seen the reset itself. Such calls are counted as
// cancelled, never as invalid requests; a call half-closed without a message is the invalid one.
TEST_F(ListenerLimitsTest, AUnaryCallResetBeforeItsRequestIsCountedCancelled) {
  StartRouterd("listen: 127.0.0.1:0\nmetrics_listen: 127.0.0.1:0\n"
               "shutdown: {grace_s: 5, drain_s: 0}\n");
  ASSERT_FALSE(HasFatalFailure());
  RawHttp2 h2;
  h2.Open(routerd_->port());
  ASSERT_FALSE(HasFatalFailure());
  uint32_t id = 1;
  std::vector<uint32_t> half_closed;
  for (const std::string method : {"Route", "RouteBatch"}) {
    const std::string path = absl::StrCat("/router.v1.Router/", method);
    for (int k = 0; k < 20; ++k, id += 2) {
      ASSERT_TRUE(h2.OpenStream(id, path));
      ASSERT_TRUE(h2.Send(kRstStream, 0, id, kCancelCode));
    }
    ASSERT_TRUE(h2.OpenStream(id, path));
    ASSERT_TRUE(h2.Send(kData, kEndStream, id, ""));
    half_closed.push_back(id);
    id += 2;
  }
  // The half-closed calls are answered (their trailers end their streams) after the resets
  // before them were read; then every call the server started has ended.
  for (const uint32_t stream : half_closed) {
    ASSERT_TRUE(h2.ReadUntil([&](const Frame& f) {
      return f.stream == stream && f.type == kHeaders && (f.flags & kEndStream) != 0;
    })) << "no answer on stream " << stream;
  }
  for (int polls = 0; polls < 100000 && routerd_->runtime().open_unary_calls() > 0; ++polls) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(routerd_->runtime().open_unary_calls(), 0);
  const std::string metrics = testing::HttpGet(routerd_->metrics_port(), "/metrics");
  for (const std::string method : {"Route", "RouteBatch"}) {
    EXPECT_EQ(testing::MetricValue(metrics, absl::StrCat(R"(router_requests_total{)",
                                                         R"(code="INVALID_ARGUMENT",method=")",
                                                         method, R"("})")),
              1)
        << method << ": only the half-closed call is invalid\n" << metrics;
  }
}

}  // namespace
}  // namespace router::server
