// load_bench: closed-loop load over loopback against routerd and a bare gRPC echo service, both
// measured in the same run, so the table says what routing costs beyond gRPC itself. Method and
// results: bench/README.md, "Load benchmark".
//
//   load_bench [--routerd ADDR | --config FILE [--estimator FILE]] [--prompts FILE]
//              [--clients 64,256] [--batch_sizes 64,256] [--delays_ms 1,5] [--stream_window 8]
//              [--channels 2] [--warmup_s 1] [--duration_s 4] [--lease_timeout_s 2] [--pairs 3]
//              [--services Echo,EchoStream,RouteInline,Route,RouteStream] [--think_ms 0]
//              [--redis HOST:PORT [--redis_recent_snapshot_ms MS] [--redis_refresh_snapshot_ms MS]
//                                 [--ledger_repeats 1]]
//              [--second_ledger local [--ledger_repeats 1]]
//
// Without --routerd, routerd runs in this process (router::server::Routerd::Start on the --config
// file, listening on 127.0.0.1:0): the same code as the binary, with the same process settings
// (server/process_settings.h), without the signal handling of main.cc. The echo service always runs
// in this process. Batch settings are applied through RouterAdmin.UpdateConfig, and routerd gets
// its original configuration back at the end. The in-process routerd runs without TLS or tokens,
// with RouterAdmin open to the benchmark; an external one (--routerd) must serve plaintext and
// let this process call RouterAdmin (admin.allow_unauthenticated, on a test machine).
//
// Closed loop: each of C clients keeps a fixed number of queries in flight and sends the next one
// when an answer arrives. Unary (Route, Route in inline mode, Echo): one call in flight per client.
// Stream (RouteStream, EchoStream): one stream per client with --stream_window queries in flight on
// it. Every query carries a real prompt from routerbench_subset. Latency runs from the moment a
// client wants to send a query to its answer. Only answers that arrive in the measured window
// (after the warm-up) count. With --think_ms T > 0, a unary client waits T ms after each answer
// before its next call (a closed loop with think time): the offered load is then at most C / T per
// second, so the rows can compare latencies below saturation instead of at it.
//
// Route in inline mode (Query.mode = ROUTING_MODE_INLINE: decided on arrival, no batch wait) runs
// once per client count, right after the echo rows, since batch settings do not apply to it.
//
// Output: a Markdown table on stdout (one row per run, printed as it finishes; "CPU us/query" is
// this process's CPU time in the measured window over the answers in it: clients, gRPC on both
// sides and, in-process, routerd; with --routerd only the clients). Then, when EchoStream,
// RouteStream and max_batch_size 256 are all measured, paired runs per client count and delay at
// batch 256 in a second table: on a shared VM the machine's speed drifts between rows run seconds
// apart, so --pairs RouteStream runs are each measured between two EchoStream runs (E R E ... R E).
// Last, for each client count and delay at batch 256, RouteStream / EchoStream throughput from the
// main table, and the median and range over the paired runs against the echo run before each and
// against the mean of the echo runs before and after it; and for each client count the p50/p99 of
// Route (inline) next to Echo's from the same run. With --redis, last, each Route and Route (inline)
// row against the Redis ledger next to the same row against the in-process one; with
// --ledger_repeats N, each of those rows is measured N times against each ledger in turn (in
// process, Redis, Redis, in process, in process, ...: a drift steady over a pair of runs weighs on
// both ledgers alike), and the comparison pools each ledger's answers over its N runs, since a
// single run's p99 moves by milliseconds from one run to the next on a shared machine; it also
// gives the median and range of the N runs' own p99 differences. --second_ledger local (instead of
// --redis) runs the same comparison against a second in-process routerd that keeps the in-process
// ledger too (an A/A run): what the comparison reads when nothing differs, the noise floor of the
// Redis comparison on the machine at hand.
// --services picks the rows (default: all five).
//
// Exit status: 0 after printing the table; 2 for a bad flag; 1 if a service cannot start or a run
// fails (a failed RPC or an error answer is only counted in the `errors` column; a stream that ends
// with an error status is fatal).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <deque>
#include <functional>
#include <map>
#include <thread>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench_routerd.h"
#include "bench_stats.h"
#include "echo.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "router/v1/router.grpc.pb.h"
#include "server/config.h"
#include "server/process_settings.h"
#include "server/routerd.h"

namespace {

namespace v1 = router::v1;
namespace echo = routerbench::v1;

// ---------------------------------------------------------------------------------------------
// The echo service: answers each request with `response_bytes` bytes and its id, doing nothing
// else. The stream reactor keeps reading while it writes (answers queue behind the one write in
// flight), as RouteStream does, so the two streams differ only in the work routerd does.

class EchoStreamReactor final : public grpc::ServerBidiReactor<echo::EchoRequest, echo::EchoResponse> {
 public:
  EchoStreamReactor() { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {  // half-close or cancellation: finish once every queued answer is written
      bool finish = false;
      {
        absl::MutexLock lock(&mu_);
        reads_done_ = true;
        finish = !writing_;
      }
      if (finish) Finish(grpc::Status::OK);
      return;
    }
    const echo::EchoResponse* to_write = nullptr;
    {
      absl::MutexLock lock(&mu_);
      echo::EchoResponse& answer = pending_.emplace_back();
      answer.set_id(request_.id());
      answer.mutable_payload()->assign(static_cast<size_t>(request_.response_bytes()), 'x');
      if (!writing_) {
        writing_ = true;
        to_write = &pending_.front();
      }
    }
    // Started outside the lock: a write that completes at once may run OnWriteDone on this thread.
    if (to_write != nullptr) StartWrite(to_write);
    StartRead(&request_);
  }

  void OnWriteDone(bool /*ok: a failed write means the client is gone; its reads fail too*/) override {
    const echo::EchoResponse* next = nullptr;
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      pending_.pop_front();
      if (!pending_.empty()) {
        next = &pending_.front();
      } else {
        writing_ = false;
        finish = reads_done_;
      }
    }
    if (next != nullptr) StartWrite(next);
    if (finish) Finish(grpc::Status::OK);
  }

  void OnDone() override { delete this; }

 private:
  echo::EchoRequest request_;  // only touched by the read chain (one read in flight)
  absl::Mutex mu_;
  // Answers not yet written; the front is the one being written. A deque keeps the front's
  // address stable while answers are appended behind it.
  std::deque<echo::EchoResponse> pending_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
};

class EchoService final : public echo::Echo::CallbackService {
 public:
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx, const echo::EchoRequest* request,
                                 echo::EchoResponse* response) override {
    response->set_id(request->id());
    response->mutable_payload()->assign(static_cast<size_t>(request->response_bytes()), 'x');
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerBidiReactor<echo::EchoRequest, echo::EchoResponse>* EchoStream(
      grpc::CallbackServerContext* /*ctx*/) override {
    return new EchoStreamReactor();
  }
};

// ---------------------------------------------------------------------------------------------
// Measurement

// The measured window of one run; answers outside it are not counted.
struct Window {
  absl::Time start;
  absl::Time end;
};

// What one client saw in the window. Written only by that client's answer path, which gRPC runs
// one reaction at a time (one call in flight, or one read in flight).
struct ClientStats {
  std::vector<double> latency_us;
  int64_t errors = 0;

  void Record(const Window& w, absl::Time sent, absl::Time answered, bool ok) {
    if (answered < w.start || answered >= w.end) return;
    if (ok) {
      latency_us.push_back(absl::ToDoubleMicroseconds(answered - sent));
    } else {
      ++errors;
    }
  }
};

struct RunResult {
  std::string service;  // Route, RouteStream, Echo, EchoStream
  int clients = 0;
  int64_t batch_size = 0;  // 0 for echo
  double delay_ms = 0;
  double qps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  int64_t answers = 0;
  int64_t errors = 0;
  // Process CPU time in the window per answer: client + gRPC + (in-process) routerd.
  double cpu_us_per_query = 0;
  std::vector<double> latency_us;  // every answer's latency in the window, for pooling runs
};

// CPU time of this whole process (every thread: clients, gRPC, and routerd when in-process).
double ProcessCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// The process CPU seconds spent inside the measured window: called right after the clients start,
// it sleeps until the window opens and until it closes.
double CpuSecondsOverWindow(const Window& w) {
  absl::SleepFor(w.start - absl::Now());
  const double start = ProcessCpuSeconds();
  absl::SleepFor(w.end - absl::Now());
  return ProcessCpuSeconds() - start;
}

RunResult Summarize(std::vector<ClientStats>& stats, const Window& w, double cpu_seconds) {
  RunResult r;
  std::vector<double> all;
  for (ClientStats& s : stats) {
    all.insert(all.end(), s.latency_us.begin(), s.latency_us.end());
    r.errors += s.errors;
  }
  r.answers = static_cast<int64_t>(all.size());
  r.qps = static_cast<double>(all.size()) / absl::ToDoubleSeconds(w.end - w.start);
  if (!all.empty()) {
    r.p50_ms = ::router::bench::Percentile(all, 0.50) / 1000.0;
    r.p99_ms = ::router::bench::Percentile(all, 0.99) / 1000.0;
    r.cpu_us_per_query = cpu_seconds * 1e6 / static_cast<double>(all.size());
  }
  r.latency_us = std::move(all);
  return r;
}

// The queries every run sends, cycling through the prompts.
struct Workload {
  std::vector<v1::Query> queries;        // text only; each send sets its own id
  std::vector<std::string> echo_payloads;  // the same queries serialized, for the echo service
  int32_t response_bytes = 0;            // mean serialized RouteResponse size, measured at start

  const v1::Query& query(uint64_t seq) const { return queries[seq % queries.size()]; }
  const std::string& payload(uint64_t seq) const { return echo_payloads[seq % queries.size()]; }
};

absl::StatusOr<Workload> LoadPrompts(const std::string& path) {
  absl::StatusOr<std::vector<std::string>> texts = router::bench::LoadPromptTexts(path);
  if (!texts.ok()) return texts.status();
  Workload w;
  for (std::string& text : *texts) {
    v1::Query& q = w.queries.emplace_back();
    q.set_text(std::move(text));
    w.echo_payloads.push_back(q.SerializeAsString());
  }
  return w;
}

// Ids are "<client>-<seq>": unique per run, so RouteStream answers can be matched.
std::string QueryId(int client, uint64_t seq) { return absl::StrCat(client, "-", seq); }

// ---------------------------------------------------------------------------------------------
// Runs each callback at (or soon after) its time on a thread of its own: the pause of --think_ms
// between a unary client's answer and its next call, without holding one of gRPC's threads.
// Thread-safe; the destructor waits for the callback in progress and drops the ones not yet due.

class Pacer {
 public:
  Pacer() : thread_([this] { Loop(); }) {}
  ~Pacer() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }

  void At(absl::Time when, std::function<void()> callback) {
    absl::MutexLock lock(&mu_);
    due_.emplace(when, std::move(callback));
    ++added_;
  }

 private:
  void Loop() {
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      if (!due_.empty() && due_.begin()->first <= absl::Now()) {
        std::function<void()> callback = std::move(due_.begin()->second);
        due_.erase(due_.begin());
        mu_.Unlock();
        callback();
        mu_.Lock();
        continue;
      }
      // Until the earliest callback is due, or At() or the destructor changes what is due.
      seen_ = added_;
      const absl::Time next = due_.empty() ? absl::InfiniteFuture() : due_.begin()->first;
      mu_.AwaitWithDeadline(absl::Condition(
                                +[](Pacer* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
                                  return p->stop_ || p->added_ != p->seen_;
                                },
                                this),
                            next);
    }
  }

  absl::Mutex mu_;
  std::multimap<absl::Time, std::function<void()>> due_ ABSL_GUARDED_BY(mu_);
  uint64_t added_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t seen_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------
// Closed-loop unary client: one call in flight; the answer's callback records it and starts the
// next call until the window ends. Done() is counted down after the last answer.

template <typename Stub, typename Request, typename Response>
class UnaryClient {
 public:
  using Send = std::function<void(Stub*, grpc::ClientContext*, const Request*, Response*,
                                  std::function<void(grpc::Status)>)>;
  using Fill = std::function<void(int client, uint64_t seq, Request*)>;
  using Judge = std::function<bool(const grpc::Status&, const Response&)>;

  // With a `pacer`, each next call waits `think` after the answer before it.
  UnaryClient(int id, Stub* stub, Send send, Fill fill, Judge judge, const Window* window,
              absl::BlockingCounter* done, Pacer* pacer, absl::Duration think)
      : id_(id), stub_(stub), send_(std::move(send)), fill_(std::move(fill)), judge_(std::move(judge)),
        window_(window), done_(done), pacer_(pacer), think_(think) {}

  void Start() { Next(); }
  ClientStats& stats() { return stats_; }

 private:
  struct Call {
    grpc::ClientContext ctx;
    Request request;
    Response response;
    absl::Time sent;
  };

  void Next() {
    auto* call = new Call();
    fill_(id_, seq_++, &call->request);
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    call->sent = absl::Now();
    send_(stub_, &call->ctx, &call->request, &call->response, [this, call](grpc::Status status) {
      const absl::Time now = absl::Now();
      stats_.Record(*window_, call->sent, now, judge_(status, call->response));
      delete call;
      if (now < window_->end && pacer_ != nullptr) {
        pacer_->At(now + think_, [this] { Next(); });
      } else if (now < window_->end) {
        Next();
      } else {
        done_->DecrementCount();
      }
    });
  }

  const int id_;
  Stub* const stub_;
  const Send send_;
  const Fill fill_;
  const Judge judge_;
  const Window* const window_;
  absl::BlockingCounter* const done_;
  Pacer* const pacer_;
  const absl::Duration think_;
  uint64_t seq_ = 0;  // touched by one call chain at a time
  ClientStats stats_;
};

// ---------------------------------------------------------------------------------------------
// Closed-loop stream client: one stream with `window` queries in flight. Each answer is matched to
// its send time by id, recorded, and replaced by a new query until the window ends; then the client
// half-closes once every query has its answer and the last write is done.

template <typename Request, typename Response>
class StreamClient final : public grpc::ClientBidiReactor<Request, Response> {
 public:
  using Fill = std::function<void(int client, uint64_t seq, Request*)>;
  // Appends to `out` each answer in the message (a RouteStream message may carry several): its
  // query id and whether it is a success. `out` is the client's, cleared before each call, so
  // neither service pays an allocation per answer for it.
  using Judge =
      std::function<void(const Response&, std::vector<std::pair<std::string, bool>>* out)>;

  StreamClient(int id, int window, Fill fill, Judge judge, const Window* measured,
               absl::BlockingCounter* done)
      : id_(id), window_(window), fill_(std::move(fill)), judge_(std::move(judge)),
        measured_(measured), done_(done) {}

  // `start_call` binds this reactor to a new stream (stub->async()->XStream(ctx, this)).
  void Start(const std::function<void(grpc::ClientContext*, StreamClient*)>& start_call) {
    start_call(&ctx_, this);
    const Request* first = nullptr;
    {
      absl::MutexLock lock(&mu_);
      for (int k = 0; k < window_; ++k) EnqueueLocked();
      writing_ = true;
      first = &pending_.front();
    }
    this->StartWrite(first);
    this->StartRead(&answer_);
    this->StartCall();
  }

  ClientStats& stats() { return stats_; }
  const grpc::Status& status() const { return status_; }

  void OnWriteDone(bool ok) override {
    const Request* next = nullptr;
    bool half_close = false;
    {
      absl::MutexLock lock(&mu_);
      pending_.pop_front();
      if (!ok) pending_.clear();  // the stream is broken; OnDone reports its status
      if (!pending_.empty()) {
        next = &pending_.front();
      } else {
        writing_ = false;
        half_close = ShouldHalfCloseLocked();
      }
    }
    if (next != nullptr) this->StartWrite(next);
    if (half_close) this->StartWritesDone();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the server ended the stream; OnDone follows
    const absl::Time now = absl::Now();
    answers_.clear();
    judge_(answer_, &answers_);
    const Request* to_write = nullptr;
    bool half_close = false;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, success] : answers_) {
        auto it = in_flight_.find(id);
        if (it != in_flight_.end()) {
          stats_.Record(*measured_, it->second, now, success);
          in_flight_.erase(it);
        }
      }
      if (now < measured_->end) {
        for (size_t k = 0; k < answers_.size(); ++k) EnqueueLocked();  // keep `window` in flight
        if (!writing_) {
          writing_ = true;
          to_write = &pending_.front();
        }
      } else {
        half_close = ShouldHalfCloseLocked();
      }
    }
    if (to_write != nullptr) this->StartWrite(to_write);
    if (half_close) this->StartWritesDone();
    this->StartRead(&answer_);
  }

  void OnDone(const grpc::Status& status) override {
    status_ = status;
    done_->DecrementCount();
  }

 private:
  void EnqueueLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Request& r = pending_.emplace_back();
    const uint64_t seq = seq_++;
    fill_(id_, seq, &r);
    in_flight_[QueryId(id_, seq)] = absl::Now();
  }
  bool ShouldHalfCloseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (half_closed_ || writing_ || !in_flight_.empty() || absl::Now() < measured_->end) return false;
    half_closed_ = true;
    return true;
  }

  const int id_;
  const int window_;
  const Fill fill_;
  const Judge judge_;
  const Window* const measured_;
  absl::BlockingCounter* const done_;
  grpc::ClientContext ctx_;
  Response answer_;     // only touched by the read chain
  std::vector<std::pair<std::string, bool>> answers_;  // answer_'s answers; read chain only
  ClientStats stats_;   // written under mu_, read after the run
  grpc::Status status_;
  absl::Mutex mu_;
  // Queries not yet written; the front is being written (a deque keeps its address stable).
  std::deque<Request> pending_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::Time> in_flight_ ABSL_GUARDED_BY(mu_);
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool half_closed_ ABSL_GUARDED_BY(mu_) = false;
};

// ---------------------------------------------------------------------------------------------
// Runs

struct Options {
  std::string routerd;  // external address; empty = in-process
  // Redis "HOST:PORT": also start a second in-process routerd on the same config with the Redis
  // ledger (ledger.backend: redis, domain load_bench), and run every Route and Route (inline) row
  // against both in the same run.
  std::string redis;
  // ledger.redis.recent_snapshot_ms of that routerd; nullopt = the config's.
  std::optional<double> redis_recent_snapshot_ms;
  // ledger.redis.refresh_snapshot_ms of that routerd; nullopt = the config's.
  std::optional<double> redis_refresh_snapshot_ms;
  // The second routerd keeps the in-process ledger instead (--second_ledger local, without
  // --redis): an A/A run of the ledger comparison.
  bool second_local = false;
  // Runs per ledger of each row compared with --redis, in turn (L R R L L R ...).
  int ledger_repeats = 1;
  std::string config = router::bench::kDefaultConfig;
  std::string estimator;
  std::string prompts = router::bench::kDefaultPrompts;
  std::vector<int> clients = {64, 256};
  std::vector<int64_t> batch_sizes = {64, 256};
  std::vector<double> delays_ms = {1, 5};
  int stream_window = 8;
  int channels = 2;
  double warmup_s = 1;
  double duration_s = 4;
  double lease_timeout_s = 2;
  // RouteStream runs per client count and delay at max_batch_size 256 after the main table, each
  // between two EchoStream runs: the headline ratio is their median, since on a shared VM the
  // speed of the machine drifts between rows measured seconds apart. 0 = no pairs.
  int pairs = 3;
  // A unary client's pause between an answer and its next call, in ms (0: none, a closed loop at
  // saturation).
  double think_ms = 0;
  // Which rows to run: Echo, EchoStream, RouteInline, Route, RouteStream.
  std::vector<std::string> services = {"Echo", "EchoStream", "RouteInline", "Route", "RouteStream"};

  bool Runs(absl::string_view service) const {
    return std::find(services.begin(), services.end(), service) != services.end();
  }
};

Window NextWindow(const Options& o) {
  const absl::Time start = absl::Now() + absl::Seconds(o.warmup_s);
  return {start, start + absl::Seconds(o.duration_s)};
}

// One channel per connection: a local subchannel pool keeps channels to the same address from
// sharing one TCP connection.
std::vector<std::shared_ptr<grpc::Channel>> MakeChannels(const std::string& address, int n) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int k = 0; k < n; ++k) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(16 << 20);
    channels.push_back(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }
  return channels;
}

template <typename Stub, typename Request, typename Response>
RunResult RunUnary(const Options& o, int clients,
                   const std::vector<std::unique_ptr<Stub>>& stubs,
                   typename UnaryClient<Stub, Request, Response>::Send send,
                   typename UnaryClient<Stub, Request, Response>::Fill fill,
                   typename UnaryClient<Stub, Request, Response>::Judge judge) {
  const Window window = NextWindow(o);
  absl::BlockingCounter done(clients);
  std::optional<Pacer> pacer;
  if (o.think_ms > 0) pacer.emplace();
  std::vector<std::unique_ptr<UnaryClient<Stub, Request, Response>>> all;
  for (int c = 0; c < clients; ++c) {
    all.push_back(std::make_unique<UnaryClient<Stub, Request, Response>>(
        c, stubs[c % stubs.size()].get(), send, fill, judge, &window, &done,
        pacer.has_value() ? &*pacer : nullptr, absl::Milliseconds(o.think_ms)));
  }
  for (auto& client : all) client->Start();
  const double cpu_seconds = CpuSecondsOverWindow(window);
  done.Wait();
  std::vector<ClientStats> stats;
  for (auto& client : all) stats.push_back(std::move(client->stats()));
  return Summarize(stats, window, cpu_seconds);
}

template <typename Request, typename Response>
absl::StatusOr<RunResult> RunStream(
    const Options& o, int clients,
    std::function<void(int client, grpc::ClientContext*, StreamClient<Request, Response>*)> start_call,
    typename StreamClient<Request, Response>::Fill fill,
    typename StreamClient<Request, Response>::Judge judge) {
  const Window window = NextWindow(o);
  absl::BlockingCounter done(clients);
  std::vector<std::unique_ptr<StreamClient<Request, Response>>> all;
  for (int c = 0; c < clients; ++c) {
    all.push_back(std::make_unique<StreamClient<Request, Response>>(c, o.stream_window, fill, judge,
                                                                    &window, &done));
  }
  for (int c = 0; c < clients; ++c) {
    all[c]->Start([&](grpc::ClientContext* ctx, StreamClient<Request, Response>* r) {
      start_call(c, ctx, r);
    });
  }
  const double cpu_seconds = CpuSecondsOverWindow(window);
  done.Wait();
  std::vector<ClientStats> stats;
  for (auto& client : all) {
    if (!client->status().ok()) {
      return absl::InternalError(
          absl::StrCat("a stream ended with code ", static_cast<int>(client->status().error_code()),
                       ": ", client->status().error_message()));
    }
    stats.push_back(std::move(client->stats()));
  }
  return Summarize(stats, window, cpu_seconds);
}

absl::StatusOr<std::string> GetConfigYaml(v1::RouterAdmin::Stub& admin) {
  grpc::ClientContext ctx;
  v1::GetConfigResponse response;
  const grpc::Status s = admin.GetConfig(&ctx, v1::GetConfigRequest(), &response);
  if (!s.ok()) return absl::UnavailableError(absl::StrCat("GetConfig: ", s.error_message()));
  return response.yaml();
}

absl::Status SetConfigYaml(v1::RouterAdmin::Stub& admin, const std::string& yaml) {
  grpc::ClientContext ctx;
  v1::UpdateConfigRequest request;
  request.set_yaml(yaml);
  v1::UpdateConfigResponse response;
  const grpc::Status s = admin.UpdateConfig(&ctx, request, &response);
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("UpdateConfig: ", s.error_message()));
  return absl::OkStatus();
}

// Sets routerd's batching and lease timeout through RouterAdmin, keeping everything else.
absl::Status ApplyBatching(v1::RouterAdmin::Stub& admin, int64_t batch_size, double delay_ms,
                           double lease_timeout_s) {
  absl::StatusOr<std::string> yaml = GetConfigYaml(admin);
  if (!yaml.ok()) return yaml.status();
  absl::StatusOr<router::server::RouterConfig> config = router::server::ParseConfigYaml(*yaml);
  if (!config.ok()) return config.status();
  config->batching.max_batch_size = batch_size;
  config->batching.max_batch_delay = absl::Microseconds(std::llround(delay_ms * 1000));
  config->ledger.lease_timeout = absl::Milliseconds(std::llround(lease_timeout_s * 1000));
  return SetConfigYaml(admin, router::server::ConfigToYaml(*config));
}

}  // namespace

namespace {

int Usage(const std::string& problem) {
  std::cerr << "load_bench: " << problem << "\n"
            << "usage: load_bench [--routerd ADDR | --config FILE [--estimator FILE]] [--prompts FILE]\n"
               "                  [--clients 64,256] [--batch_sizes 64,256] [--delays_ms 1,5]\n"
               "                  [--stream_window 8] [--channels 2] [--warmup_s 1] [--duration_s 4]\n"
               "                  [--lease_timeout_s 2] [--pairs 3]\n"
               "                  [--services Echo,EchoStream,RouteInline,Route,RouteStream]\n"
               "                  [--redis HOST:PORT [--redis_recent_snapshot_ms MS]\n"
               "                  [--redis_refresh_snapshot_ms MS] [--ledger_repeats 1]]\n"
               "                  [--second_ledger local [--ledger_repeats 1]]\n"
               "                  [--think_ms 0]\n";
  return 2;
}

void PrintTableHeader() {
  std::printf(
      "| service | clients | max_batch_size | max_batch_delay ms | queries/s | p50 ms | p99 ms | "
      "CPU us/query | errors |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
}

void PrintRow(const RunResult& r) {
  std::printf("| %s | %d | %s | %s | %.0f | %.2f | %.2f | %.1f | %lld |\n", r.service.c_str(),
              r.clients, r.batch_size > 0 ? absl::StrCat(r.batch_size).c_str() : "-",
              r.batch_size > 0 ? absl::StrCat(r.delay_ms).c_str() : "-", r.qps, r.p50_ms, r.p99_ms,
              r.cpu_us_per_query, static_cast<long long>(r.errors));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  router::server::ApplyProcessSettings();
  Options o;
  const auto apply = [&o](const std::string& arg, const std::string& value) -> std::optional<bool> {
    bool ok = true;
    if (arg == "--routerd") {
      o.routerd = value;
    } else if (arg == "--redis") {
      o.redis = value;
    } else if (arg == "--redis_recent_snapshot_ms") {
      double ms = 0;
      ok = router::bench::ParseNumber(value, &ms) && ms >= 0;
      o.redis_recent_snapshot_ms = ms;
    } else if (arg == "--redis_refresh_snapshot_ms") {
      double ms = 0;
      ok = router::bench::ParseNumber(value, &ms) && ms >= 0;
      o.redis_refresh_snapshot_ms = ms;
    } else if (arg == "--second_ledger") {
      ok = value == "local";
      o.second_local = true;
    } else if (arg == "--ledger_repeats") {
      ok = router::bench::ParseNumber(value, &o.ledger_repeats) && o.ledger_repeats > 0;
    } else if (arg == "--config") {
      o.config = value;
    } else if (arg == "--estimator") {
      o.estimator = value;
    } else if (arg == "--prompts") {
      o.prompts = value;
    } else if (arg == "--clients") {
      ok = router::bench::ParseList(value, &o.clients);
    } else if (arg == "--batch_sizes") {
      ok = router::bench::ParseList(value, &o.batch_sizes);
    } else if (arg == "--delays_ms") {
      ok = router::bench::ParseList(value, &o.delays_ms);
    } else if (arg == "--stream_window") {
      ok = router::bench::ParseNumber(value, &o.stream_window) && o.stream_window > 0;
    } else if (arg == "--channels") {
      ok = router::bench::ParseNumber(value, &o.channels) && o.channels > 0;
    } else if (arg == "--warmup_s") {
      ok = router::bench::ParseNumber(value, &o.warmup_s) && o.warmup_s >= 0;
    } else if (arg == "--duration_s") {
      ok = router::bench::ParseNumber(value, &o.duration_s) && o.duration_s > 0;
    } else if (arg == "--pairs") {
      ok = router::bench::ParseNumber(value, &o.pairs) && o.pairs >= 0;
    } else if (arg == "--lease_timeout_s") {
      ok = router::bench::ParseNumber(value, &o.lease_timeout_s) && o.lease_timeout_s > 0;
    } else if (arg == "--think_ms") {
      ok = router::bench::ParseNumber(value, &o.think_ms) && o.think_ms >= 0;
    } else if (arg == "--services") {
      o.services = absl::StrSplit(value, ',', absl::SkipEmpty());
      for (const std::string& service : o.services) {
        ok = ok && (service == "Echo" || service == "EchoStream" || service == "RouteInline" ||
                    service == "Route" || service == "RouteStream");
      }
      ok = ok && !o.services.empty();
    } else {
      return std::nullopt;
    }
    return ok;
  };
  if (std::optional<int> exit_code = router::bench::ParseFlagPairs(argc, argv, Usage, apply)) {
    return *exit_code;
  }
  if (o.second_local && !o.redis.empty()) {
    return Usage("--second_ledger local compares two in-process ledgers: no --redis");
  }
  const bool compare_ledgers = o.second_local || !o.redis.empty();
  if (o.ledger_repeats > 1 && !compare_ledgers) {
    return Usage("--ledger_repeats needs --redis or --second_ledger local");
  }

  absl::StatusOr<Workload> workload = LoadPrompts(o.prompts);
  if (!workload.ok()) {
    std::cerr << "load_bench: " << workload.status().message() << "\n";
    return 1;
  }

  // routerd: in-process unless an address is given. Metrics stay on (an ephemeral port), since a
  // deployed routerd records them on every query too. start_routerd starts one on --config, with
  // the Redis ledger at `redis` unless it is empty.
  auto start_routerd =
      [&o](const std::string& redis) -> absl::StatusOr<std::unique_ptr<router::server::Routerd>> {
    absl::StatusOr<router::server::RouterConfig> config = router::server::LoadConfigFile(o.config);
    if (!config.ok()) return config.status();
    // Loopback and plaintext, RouterAdmin open to this process for the batch settings.
    router::bench::ForInProcessBenchmark(*config, "127.0.0.1:0");
    if (!o.estimator.empty()) config->estimator = o.estimator;
    if (!redis.empty()) {
      config->ledger_backend.redis = true;
      config->ledger_backend.redis_options.address = redis;
      config->ledger_backend.redis_options.domain = "load_bench";
      if (o.redis_recent_snapshot_ms.has_value()) {
        config->ledger_backend.redis_options.recent_snapshot_for =
            absl::Microseconds(std::llround(*o.redis_recent_snapshot_ms * 1000.0));
      }
      if (o.redis_refresh_snapshot_ms.has_value()) {
        config->ledger_backend.redis_options.refresh_snapshot_for =
            absl::Microseconds(std::llround(*o.redis_refresh_snapshot_ms * 1000.0));
      }
    }
    return router::server::Routerd::Start(*std::move(config), "");
  };
  std::unique_ptr<router::server::Routerd> routerd;
  std::string routerd_address = o.routerd;
  if (routerd_address.empty()) {
    absl::StatusOr<std::unique_ptr<router::server::Routerd>> started = start_routerd("");
    if (!started.ok()) {
      std::cerr << "load_bench: routerd: " << started.status().message() << "\n";
      return 1;
    }
    routerd = *std::move(started);
    routerd_address = absl::StrCat("127.0.0.1:", routerd->port());
  }

  // The same routerd with the Redis ledger (or, for an A/A run, the in-process one), for the
  // ledger comparison rows; `second_ledger` names its ledger in the rows and the summary.
  const char* const second_ledger =
      o.second_local ? "second routerd, local ledger" : "redis ledger";
  std::unique_ptr<router::server::Routerd> second_routerd;
  std::vector<std::unique_ptr<v1::Router::Stub>> second_stubs;
  std::unique_ptr<v1::RouterAdmin::Stub> second_admin;
  if (compare_ledgers) {
    if (routerd == nullptr) {
      std::cerr << "load_bench: the ledger comparison needs the in-process routerd "
                   "(no --routerd)\n";
      return 1;
    }
    absl::StatusOr<std::unique_ptr<router::server::Routerd>> started = start_routerd(o.redis);
    if (!started.ok()) {
      std::cerr << "load_bench: routerd (" << second_ledger
                << "): " << started.status().message() << "\n";
      return 1;
    }
    second_routerd = *std::move(started);
    const std::string second_address = absl::StrCat("127.0.0.1:", second_routerd->port());
    for (const auto& c : MakeChannels(second_address, o.channels)) {
      second_stubs.push_back(v1::Router::NewStub(c));
      if (second_admin == nullptr) second_admin = v1::RouterAdmin::NewStub(c);
    }
  }
  struct LedgerPair {
    std::string row;
    // --ledger_repeats runs each against the first routerd (in-process ledger) and the second
    // (Redis ledger, or in-process for an A/A run), in the order measured.
    std::vector<RunResult> first, second;
  };
  std::vector<LedgerPair> ledger_pairs;

  EchoService echo_service;
  grpc::ServerBuilder builder;
  int echo_port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &echo_port);
  builder.RegisterService(&echo_service);
  std::unique_ptr<grpc::Server> echo_server = builder.BuildAndStart();
  if (echo_server == nullptr) {
    std::cerr << "load_bench: the echo server cannot listen on 127.0.0.1\n";
    return 1;
  }

  const auto router_channels = MakeChannels(routerd_address, o.channels);
  const auto echo_channels = MakeChannels(absl::StrCat("127.0.0.1:", echo_port), o.channels);
  std::vector<std::unique_ptr<v1::Router::Stub>> router_stubs;
  for (const auto& c : router_channels) router_stubs.push_back(v1::Router::NewStub(c));
  std::vector<std::unique_ptr<echo::Echo::Stub>> echo_stubs;
  for (const auto& c : echo_channels) echo_stubs.push_back(echo::Echo::NewStub(c));
  auto admin = v1::RouterAdmin::NewStub(router_channels[0]);

  absl::StatusOr<std::string> original_yaml = GetConfigYaml(*admin);
  if (!original_yaml.ok()) {
    std::cerr << "load_bench: routerd at " << routerd_address << ": "
              << original_yaml.status().message() << "\n";
    return 1;
  }

  // The echo answers are as large as real RouteResponses: measure them on a few real queries.
  {
    int64_t bytes = 0;
    const int samples = 16;
    for (int k = 0; k < samples; ++k) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      v1::RouteRequest request;
      *request.mutable_query() = workload->query(static_cast<uint64_t>(k));
      request.mutable_query()->set_id(QueryId(0, static_cast<uint64_t>(k)));
      v1::RouteResponse response;
      const grpc::Status s = router_stubs[0]->Route(&ctx, request, &response);
      if (!s.ok()) {
        std::cerr << "load_bench: the first Route calls fail: " << s.error_message() << "\n";
        return 1;
      }
      bytes += static_cast<int64_t>(response.ByteSizeLong());
    }
    workload->response_bytes = static_cast<int32_t>(bytes / samples);
  }

  const Workload& w = *workload;
  auto fill_route = [&w](int client, uint64_t seq, v1::RouteRequest* r) {
    *r->mutable_query() = w.query(seq);
    r->mutable_query()->set_id(QueryId(client, seq));
  };
  auto fill_route_inline = [&w](int client, uint64_t seq, v1::RouteRequest* r) {
    *r->mutable_query() = w.query(seq);
    r->mutable_query()->set_id(QueryId(client, seq));
    r->mutable_query()->set_mode(v1::ROUTING_MODE_INLINE);
  };
  auto fill_route_stream = [&w](int client, uint64_t seq, v1::RouteStreamRequest* r) {
    *r->mutable_query() = w.query(seq);
    r->mutable_query()->set_id(QueryId(client, seq));
  };
  auto fill_echo = [&w](int client, uint64_t seq, echo::EchoRequest* r) {
    r->set_id(QueryId(client, seq));
    r->set_payload(w.payload(seq));
    r->set_response_bytes(w.response_bytes);
  };
  auto send_route = [](v1::Router::Stub* stub, grpc::ClientContext* ctx, const v1::RouteRequest* req,
                       v1::RouteResponse* resp, std::function<void(grpc::Status)> done) {
    stub->async()->Route(ctx, req, resp, std::move(done));
  };
  auto send_echo = [](echo::Echo::Stub* stub, grpc::ClientContext* ctx, const echo::EchoRequest* req,
                      echo::EchoResponse* resp, std::function<void(grpc::Status)> done) {
    stub->async()->Echo(ctx, req, resp, std::move(done));
  };
  auto judge_route = [](const grpc::Status& s, const v1::RouteResponse&) { return s.ok(); };
  // The Route (or inline Route) row against the second routerd, right after the same row against
  // the first (`first`, whose batch settings are applied), with the same batch settings; then
  // --ledger_repeats - 1 more runs against each, in turn.
  auto second_rows = [&](bool inline_mode, int clients, int64_t batch_size, double delay_ms,
                         RunResult first, std::string label) -> absl::Status {
    if (absl::Status s = ApplyBatching(*second_admin, batch_size, delay_ms, o.lease_timeout_s);
        !s.ok()) {
      return s;
    }
    LedgerPair& pair = ledger_pairs.emplace_back(LedgerPair{std::move(label), {}, {}});
    pair.first.push_back(std::move(first));
    const auto run = [&](bool second) {
      const auto& stubs = second ? second_stubs : router_stubs;
      RunResult r = inline_mode
                        ? RunUnary<v1::Router::Stub, v1::RouteRequest, v1::RouteResponse>(
                              o, clients, stubs, send_route, fill_route_inline, judge_route)
                        : RunUnary<v1::Router::Stub, v1::RouteRequest, v1::RouteResponse>(
                              o, clients, stubs, send_route, fill_route, judge_route);
      r.service = second ? absl::StrCat(inline_mode ? "Route (inline, " : "Route (", second_ledger,
                                        ")")
                         : (inline_mode ? "Route (inline)" : "Route");
      r.clients = clients;
      if (!inline_mode) {
        r.batch_size = batch_size;
        r.delay_ms = delay_ms;
      }
      PrintRow(r);
      (second ? pair.second : pair.first).push_back(std::move(r));
    };
    run(/*second=*/true);
    for (int k = 1; k < o.ledger_repeats; ++k) {
      run(/*second=*/k % 2 == 1);
      run(/*second=*/k % 2 == 0);
    }
    return absl::OkStatus();
  };
  auto judge_echo = [](const grpc::Status& s, const echo::EchoResponse&) { return s.ok(); };
  auto judge_route_stream = [](const v1::RouteStreamResponse& r,
                               std::vector<std::pair<std::string, bool>>* out) {
    for (const v1::RouteBatchItem& item : r.items()) {
      out->emplace_back(
          item.has_assignment() ? item.assignment().query_id() : item.error().query_id(),
          item.has_assignment());
    }
  };
  auto judge_echo_stream = [](const echo::EchoResponse& r,
                              std::vector<std::pair<std::string, bool>>* out) {
    out->emplace_back(r.id(), true);
  };

  auto run_echo_stream = [&](int clients) -> absl::StatusOr<RunResult> {
    absl::StatusOr<RunResult> r = RunStream<echo::EchoRequest, echo::EchoResponse>(
        o, clients,
        [&](int c, grpc::ClientContext* ctx, StreamClient<echo::EchoRequest, echo::EchoResponse>* r) {
          echo_stubs[c % echo_stubs.size()]->async()->EchoStream(ctx, r);
        },
        fill_echo, judge_echo_stream);
    if (r.ok()) {
      r->service = "EchoStream";
      r->clients = clients;
    }
    return r;
  };
  // RouteStream under the batch settings last applied (ApplyBatching), which it reports.
  auto run_route_stream = [&](int clients, int64_t batch_size,
                              double delay_ms) -> absl::StatusOr<RunResult> {
    absl::StatusOr<RunResult> r = RunStream<v1::RouteStreamRequest, v1::RouteStreamResponse>(
        o, clients,
        [&](int c, grpc::ClientContext* ctx,
            StreamClient<v1::RouteStreamRequest, v1::RouteStreamResponse>* r) {
          router_stubs[c % router_stubs.size()]->async()->RouteStream(ctx, r);
        },
        fill_route_stream, judge_route_stream);
    if (r.ok()) {
      r->service = "RouteStream";
      r->clients = clients;
      r->batch_size = batch_size;
      r->delay_ms = delay_ms;
    }
    return r;
  };

  std::cerr << "load_bench: routerd " << (routerd ? "in-process" : "external") << " at "
            << routerd_address << "; " << w.queries.size() << " prompts; RouteResponse "
            << w.response_bytes << " bytes; " << o.channels << " channels; stream window "
            << o.stream_window << "; warm-up " << o.warmup_s << " s + " << o.duration_s
            << " s measured per row\n";
  PrintTableHeader();

  // For each client count, the echo rows first, then every routerd setting, so the rows compared
  // are measured close together in time.
  struct Ratio {
    int clients;
    double delay_ms;
    double value;
  };
  std::vector<Ratio> ratios;
  // Route (inline) next to Echo, per client count.
  struct InlineVsEcho {
    int clients;
    RunResult echo;
    RunResult route_inline;
  };
  std::vector<InlineVsEcho> inline_vs_echo;
  for (int clients : o.clients) {
    RunResult echo_unary;
    if (o.Runs("Echo")) {
      echo_unary = RunUnary<echo::Echo::Stub, echo::EchoRequest, echo::EchoResponse>(
          o, clients, echo_stubs, send_echo, fill_echo, judge_echo);
      echo_unary.service = "Echo";
      echo_unary.clients = clients;
      PrintRow(echo_unary);
    }
    RunResult echo_stream_result;
    if (o.Runs("EchoStream")) {
      absl::StatusOr<RunResult> echo_stream = run_echo_stream(clients);
      if (!echo_stream.ok()) {
        std::cerr << "load_bench: EchoStream: " << echo_stream.status().message() << "\n";
        return 1;
      }
      PrintRow(*echo_stream);
      echo_stream_result = *echo_stream;
    }

    if (o.Runs("RouteInline")) {
      // Batch settings do not apply to inline decisions; the first setting only sets the lease
      // timeout the Route rows run with, so the ledger holds as many open assignments.
      if (absl::Status s =
              ApplyBatching(*admin, o.batch_sizes.front(), o.delays_ms.front(), o.lease_timeout_s);
          !s.ok()) {
        std::cerr << "load_bench: " << s.message() << "\n";
        return 1;
      }
      RunResult route_inline = RunUnary<v1::Router::Stub, v1::RouteRequest, v1::RouteResponse>(
          o, clients, router_stubs, send_route, fill_route_inline, judge_route);
      route_inline.service = "Route (inline)";
      route_inline.clients = clients;
      PrintRow(route_inline);
      if (second_admin != nullptr) {
        if (absl::Status s = second_rows(true, clients, o.batch_sizes.front(), o.delays_ms.front(),
                                        route_inline, absl::StrCat("Route (inline), ", clients,
                                                                   " clients"));
            !s.ok()) {
          std::cerr << "load_bench: " << s.message() << "\n";
          return 1;
        }
      }
      if (o.Runs("Echo")) inline_vs_echo.push_back({clients, echo_unary, route_inline});
    }

    if (!o.Runs("Route") && !o.Runs("RouteStream")) continue;
    for (int64_t batch_size : o.batch_sizes) {
      for (double delay_ms : o.delays_ms) {
        if (absl::Status s = ApplyBatching(*admin, batch_size, delay_ms, o.lease_timeout_s); !s.ok()) {
          std::cerr << "load_bench: " << s.message() << "\n";
          return 1;
        }
        if (o.Runs("Route")) {
          RunResult route = RunUnary<v1::Router::Stub, v1::RouteRequest, v1::RouteResponse>(
              o, clients, router_stubs, send_route, fill_route, judge_route);
          route.service = "Route";
          route.clients = clients;
          route.batch_size = batch_size;
          route.delay_ms = delay_ms;
          PrintRow(route);
          if (second_admin != nullptr) {
            if (absl::Status s = second_rows(false, clients, batch_size, delay_ms, route,
                                           absl::StrCat("Route, ", clients, " clients, batch ",
                                                        batch_size, ", delay ", delay_ms, " ms"));
                !s.ok()) {
              std::cerr << "load_bench: " << s.message() << "\n";
              return 1;
            }
          }
        }
        if (!o.Runs("RouteStream")) continue;
        absl::StatusOr<RunResult> stream = run_route_stream(clients, batch_size, delay_ms);
        if (!stream.ok()) {
          std::cerr << "load_bench: RouteStream: " << stream.status().message() << "\n";
          return 1;
        }
        PrintRow(*stream);
        if (batch_size == 256 && echo_stream_result.qps > 0) {
          ratios.push_back({clients, delay_ms, stream->qps / echo_stream_result.qps});
        }
      }
    }
  }
  // Paired runs, `pairs` RouteStream runs per client count and delay, each between two EchoStream
  // runs (E R E R ... R E): a RouteStream run's ratio is against the echo run before it, and
  // against the mean of the echo runs on both sides, which cancels a drift that is steady over the
  // three runs.
  struct PairedRatios {
    int clients;
    double delay_ms;
    std::vector<double> to_previous;
    std::vector<double> to_both;
  };
  std::vector<PairedRatios> paired;
  const bool pair_runs = o.pairs > 0 && o.Runs("EchoStream") && o.Runs("RouteStream") &&
                         std::find(o.batch_sizes.begin(), o.batch_sizes.end(), 256) !=
                             o.batch_sizes.end();
  if (pair_runs) {
    std::printf(
        "\nPaired runs at max_batch_size 256 (EchoStream, then RouteStream and EchoStream "
        "in turn):\n\n");
    PrintTableHeader();
    for (int clients : o.clients) {
      for (double delay_ms : o.delays_ms) {
        if (absl::Status s = ApplyBatching(*admin, 256, delay_ms, o.lease_timeout_s); !s.ok()) {
          std::cerr << "load_bench: " << s.message() << "\n";
          return 1;
        }
        PairedRatios& p = paired.emplace_back(PairedRatios{clients, delay_ms, {}, {}});
        absl::StatusOr<RunResult> previous_echo = run_echo_stream(clients);
        if (!previous_echo.ok()) {
          std::cerr << "load_bench: paired runs: " << previous_echo.status().message() << "\n";
          return 1;
        }
        PrintRow(*previous_echo);
        for (int k = 0; k < o.pairs; ++k) {
          absl::StatusOr<RunResult> route_run = run_route_stream(clients, 256, delay_ms);
          absl::StatusOr<RunResult> next_echo =
              route_run.ok() ? run_echo_stream(clients) : route_run;
          if (!next_echo.ok()) {
            std::cerr << "load_bench: paired runs: " << next_echo.status().message() << "\n";
            return 1;
          }
          PrintRow(*route_run);
          PrintRow(*next_echo);
          if (previous_echo->qps > 0 && next_echo->qps > 0) {
            p.to_previous.push_back(route_run->qps / previous_echo->qps);
            p.to_both.push_back(route_run->qps / (0.5 * (previous_echo->qps + next_echo->qps)));
          }
          previous_echo = std::move(next_echo);
        }
      }
    }
    std::printf("\n");
  }
  // "median (min-max)" of `values`, sorted in place; the upper middle for an even count.
  const auto summary = [](std::vector<double>& values) {
    std::sort(values.begin(), values.end());
    return absl::StrFormat("%.2f (%.2f to %.2f)", values[values.size() / 2], values.front(),
                           values.back());
  };
  for (const Ratio& r : ratios) {
    std::printf("RouteStream / EchoStream throughput, %d clients, max_batch_size 256, delay %g ms: "
                "%.2f in the main table",
                r.clients, r.delay_ms, r.value);
    for (PairedRatios& p : paired) {
      if (p.clients != r.clients || p.delay_ms != r.delay_ms || p.to_both.empty()) continue;
      std::printf(
          "; %zu paired runs, median (range) against the echo before %s, against the "
          "mean of the echoes before and after %s",
          p.to_both.size(), summary(p.to_previous).c_str(), summary(p.to_both).c_str());
    }
    std::printf(" (target >= 0.5)\n");
  }
  for (const InlineVsEcho& r : inline_vs_echo) {
    std::printf("Route (inline) vs Echo, %d clients: p50 %.2f vs %.2f ms, p99 %.2f vs %.2f ms; "
                "p99 difference %.2f ms (target <= 1 ms)\n",
                r.clients, r.route_inline.p50_ms, r.echo.p50_ms, r.route_inline.p99_ms,
                r.echo.p99_ms, r.route_inline.p99_ms - r.echo.p99_ms);
  }

  // p50 and p99 of every answer of `runs` pooled, and their errors summed; zeros for no answer.
  struct Pooled {
    double p50_ms = 0, p99_ms = 0;
    int64_t errors = 0;
  };
  const auto pool = [](const std::vector<RunResult>& runs) {
    Pooled p;
    std::vector<double> all;
    for (const RunResult& r : runs) {
      all.insert(all.end(), r.latency_us.begin(), r.latency_us.end());
      p.errors += r.errors;
    }
    if (!all.empty()) {
      p.p50_ms = ::router::bench::Percentile(all, 0.50) / 1000.0;
      p.p99_ms = ::router::bench::Percentile(all, 0.99) / 1000.0;
    }
    return p;
  };
  for (const LedgerPair& p : ledger_pairs) {
    const Pooled second = pool(p.second);
    const Pooled first = pool(p.first);
    std::string per_run;
    if (p.first.size() > 1) {
      std::vector<double> differences;
      for (size_t k = 0; k < p.first.size(); ++k) {
        differences.push_back(p.second[k].p99_ms - p.first[k].p99_ms);
      }
      per_run = absl::StrCat("; the ", differences.size(),
                             " runs' own p99 differences, median (range): ", summary(differences),
                             " ms");
    }
    std::printf("%s: %s vs local ledger%s: p50 %.2f vs %.2f ms, p99 %.2f vs %.2f ms; p99 "
                "difference %.2f ms (target <= 2 ms)%s; errors %lld vs %lld\n",
                p.row.c_str(), second_ledger,
                p.first.size() > 1
                    ? absl::StrCat(" (", p.first.size(), " runs each, answers pooled)").c_str()
                    : "",
                second.p50_ms, first.p50_ms, second.p99_ms, first.p99_ms,
                second.p99_ms - first.p99_ms, per_run.c_str(),
                static_cast<long long>(second.errors), static_cast<long long>(first.errors));
  }
  if (second_routerd != nullptr) second_routerd->Shutdown(absl::ZeroDuration(), absl::Seconds(1));

  if (absl::Status s = SetConfigYaml(*admin, *original_yaml); !s.ok()) {
    std::cerr << "load_bench: restoring routerd's configuration: " << s.message() << "\n";
    return 1;
  }
  echo_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (routerd != nullptr) routerd->Shutdown(absl::ZeroDuration(), absl::Seconds(1));
  return 0;
}
