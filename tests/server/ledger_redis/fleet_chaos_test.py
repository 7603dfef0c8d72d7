#!/usr/bin/env python3
"""Chaos tests of a routerd fleet sharing one Redis ledger (ctest fleet_chaos, fleet_chaos_long).

On loopback: 1 redis-server (append-only file, temp dir, free port) and 3 routerd replicas with
`ledger.backend: redis` on one budget domain, two self-hosted models with 4 and 2 slots, spend
pacing and inline windows with a cap. Drivers send mixed Route (batch), Route (inline), RouteStream
and RouteBatch calls to random replicas; each Complete goes to a different replica than its Route,
after a short random delay; 10% of Completes are lost, 5% sent twice, 5% sent after the lease
timeout. Each scenario runs its disruption under that load, then stops the load:

  baseline     no disruption
  kill9        a replica killed with SIGKILL under load (and started again)
  sigstop      a replica stopped (SIGSTOP) past its batch holds, then continued
  redis_aof    Redis killed with SIGKILL and restarted from its append-only file
  redis_empty  Redis killed and restarted empty (its state lost)
  redis_stall  Redis stopped (SIGSTOP) for 3 s, then continued
  escrow_stall as redis_stall, with replicas that have an escrow (ledger.redis.escrow): they go on
               deciding batches and inline queries within it while Redis is stopped (checked: some
               queries are answered then; the inline ones are counted), and settle it when Redis
               answers again
  skew         one replica runs 90 s ahead (faketime -f +90s) for the whole scenario; it takes the
               inline Routes sent its way and Completes (under libfaketime its batch waits, which
               are absolute kernel futex timeouts, would last 90 s longer)

Checks, per scenario:
  * slots: assignments open at once per self-hosted model never exceed its slots. An assignment is
    open from its answer until its caller sends its Complete (the caller is done with the model
    then), or until its Route's send time + the lease timeout when the Complete is lost or later
    (the lease has expired by then);
  * Redis: every 10 ms a read-only script snapshots, by the Redis clock, the unexpired leases plus
    the held slots of each model: never above its slots;
  * spend: for every interval [a, b] of a 50 ms grid, the predicted cost of assignments answered in
    it is at most burst + rate x (b - a + the largest call latency) (pacing is a token bucket);
  * windows: the inline spend of each window (one ledger state, one window id) is within its cap;
  * exactly once: every query sent got exactly one answer: an assignment, or an error whose code is
    retryable (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED);
  * no slot stays held past the lease timeout: once the load stops, every live replica's ListModels
    shows 0 slots in use within lease timeout + 1 s.

usage: fleet_chaos_test.py ROUTERD ARTIFACT PYTHON_STUBS_DIR [--skew_routerd ROUTERD_GLIBC_MALLOC]
                           [--seconds S] [--scenarios a,b]
The skewed replica runs --skew_routerd (routerd_glibc_malloc: libfaketime cannot preload into a
routerd linked with jemalloc; in a sanitizer build, routerd itself, with gcc's shared ASan runtime
preloaded ahead of libfaketime, or clang's told not to read the clock in its allocator). Every replica must exit 0 when stopped and log no sanitizer report.
Exits 77 (skipped) when redis-server, faketime or the artifact is missing. Bounded: each scenario
runs S seconds of load (default 6) plus at most lease timeout + 5 s of draining.
"""

import argparse
import bisect
import collections
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "deploy"))
from monitoring_support import Processes, fail, free_port, poll  # noqa: E402

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

LEASE_S = 3.0
SLOTS = {"mistralai/mixtral-8x7b-chat": 4, "meta/llama-2-70b-chat": 2}
RATE_USD_PER_MIN = 0.6   # 0.01 USD/s
BURST_USD = 0.05
CAP_USD = 0.0025
WINDOW = 20
RETRYABLE = {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}
API_MODELS = ["gpt-3.5-turbo-1106", "claude-instant-v1", "mistralai/mistral-7b-chat"]
CONFIG = """
listen: "127.0.0.1:@PORT@"
metrics_listen: "127.0.0.1:@METRICS_PORT@"
estimator: "{artifact}"
batching: {{max_batch_size: 16, max_batch_delay_ms: 5, max_queued: 2000}}
policy: {{name: batch, time_limit_ms: 20}}
budget: {{avg_cost_cap_usd: {cap}, spend_usd_per_minute: {rate}, spend_burst_usd: {burst},
         lease_timeout_s: {lease}}}
inline: {{window_arrivals: {window}}}
ledger:
  backend: redis
  redis: {{address: "127.0.0.1:{redis_port}", domain: chaos, call_timeout_ms: 100,
          connect_timeout_ms: 100, retry_after_ms: 300}}
shutdown: {{drain_s: 0, grace_s: 2}}
admin: {{allow_unauthenticated: true}}
models:
  - {{name: mistralai/mixtral-8x7b-chat, instances: 1, slots_per_instance: 4}}
  - {{name: meta/llama-2-70b-chat, instances: 1, slots_per_instance: 2}}
  - {{name: gpt-3.5-turbo-1106}}
  - {{name: claude-instant-v1}}
  - {{name: mistralai/mistral-7b-chat}}
"""
ESCROW = ("escrow: {spend_usd: 0.01, slots: 1, validity_ms: 10000, renew_every_ms: 2000, "
          "skew_margin_ms: 1000}")
# Read-only: by the Redis clock, per model the unexpired leases plus held slots.
SNAPSHOT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i, m in ipairs(ARGV) do
  local leases = redis.call('ZCOUNT', KEYS[1] .. 'm:' .. m, '(' .. now, '+inf')
  local held = tonumber(redis.call('HGET', KEYS[1] .. 'held', m) or '0')
  out[i] = leases + held
end
return out
"""


class Redis:
    def __init__(self, procs, tmp):
        self.procs, self.dir, self.port = procs, os.path.join(tmp, "redis"), free_port()
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, "redis.conf"), "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nsave \"\"\n"
                    "appendonly yes\nappendfsync always\nmaxmemory-policy noeviction\n")
        self.proc = None
        self.start()

    def start(self):
        self.proc = self.procs.start(["redis-server", os.path.join(self.dir, "redis.conf")],
                                     os.path.join(self.dir, "redis.log"))
        poll("redis PING", 10, self.ping)

    def ping(self):
        import redis
        try:
            return self.client().ping()
        except redis.exceptions.RedisError:
            return False

    def client(self):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def wipe(self):
        shutil.rmtree(os.path.join(self.dir, "appendonlydir"), ignore_errors=True)


# A sanitizer's report in a replica's log (ASan, LSan, UBSan): the replica is broken even if the
# load's checks pass (a replica that aborts only shows as retryable errors to the drivers).
SANITIZER_REPORT = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error: ")


def sanitizer_runtime(routerd):
    """The shared ASan runtime `routerd` links (gcc's -fsanitize=address), or None (no ASan, or
    clang's, linked into the program). libfaketime must be preloaded after a shared runtime: ASan
    refuses to start unless its runtime comes first."""
    try:
        out = subprocess.run(["ldd", routerd], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    m = re.search(r"libasan\.so[.\d]* => (\S+)", out)
    return m.group(1) if m else None


class Replica:
    runs = 0  # numbers each replica process's log, so that a restart keeps the earlier log

    def __init__(self, procs, routerd, tmp, index, config_text, faketime=None):
        self.procs, self.index, self.routerd, self.tmp = procs, index, routerd, tmp
        self.port, self.metrics_port = free_port(), free_port()
        self.config = os.path.join(tmp, f"routerd{index}.yaml")
        with open(self.config, "w") as f:
            f.write(config_text.replace("@PORT@", str(self.port))
                    .replace("@METRICS_PORT@", str(self.metrics_port)))
        self.faketime = faketime
        self.history = []  # every process of this replica: its log, and whether the test killed it
        self.proc = None
        self.channel = None
        self.start()

    def start(self):
        import grpc
        argv = [self.routerd, "--config", self.config]
        if self.faketime:
            # libfaketime preloaded through env, which execs routerd in place: the faketime
            # wrapper would fork routerd as its own child, which outlives the test when the
            # wrapper is stopped (the parent-death signal is not inherited across fork).
            preload = " ".join(filter(None, [sanitizer_runtime(self.routerd), LIBFAKETIME]))
            # clang's ASan (linked in) reads the clock while its allocator holds a lock, and
            # libfaketime's first clock call allocates: without periodic release to the OS the
            # allocator reads no clock (otherwise the replica hangs at start).
            asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                          "allocator_release_to_os_interval_ms=-1"]))
            argv = ["env", f"LD_PRELOAD={preload}", f"FAKETIME={self.faketime}",
                    f"ASAN_OPTIONS={asan}"] + argv
        Replica.runs += 1
        self.log = os.path.join(self.tmp, f"routerd{self.index}.{Replica.runs}.log")
        self.proc = self.procs.start(argv, self.log)
        self.history.append({"log": self.log, "proc": self.proc, "killed": False})
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        # Sanitizer builds load the estimator several times slower: a generous bound.
        grpc.channel_ready_future(self.channel).result(timeout=120)

    def alive(self):
        return self.proc.poll() is None

    def problems(self):
        """After the replica was stopped: each of its processes exited 0 on SIGTERM (unless the
        test killed it) and logged no sanitizer report."""
        out = []
        for run in self.history:
            with open(run["log"], encoding="utf-8", errors="replace") as f:
                log = f.read()
            m = SANITIZER_REPORT.search(log)
            if m:
                out.append(f"replica {self.index}: sanitizer report in {run['log']}:\n"
                           f"{log[max(0, m.start() - 200):m.start() + 3000]}")
            rc = run["proc"].returncode
            if not m and not run["killed"] and rc != 0:
                out.append(f"replica {self.index}: exited with {rc} when stopped; log "
                           f"{run['log']} ends:\n{log[-2000:]}")
        return out


class Record:
    """Everything sent and answered in one scenario (appended from driver threads)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.answers = collections.Counter()  # query id -> answers
        self.errors = collections.Counter()   # code name -> count
        self.bad = []                          # non-retryable errors
        self.assignments = []                  # dicts
        self.completes = collections.Counter()

    def answer(self, qid, code, message=""):
        with self.lock:
            self.answers[qid] += 1
            if code != "OK":
                self.errors[code] += 1
                if code not in RETRYABLE:
                    self.bad.append(f"{qid}: {code} {message}")


class Driver:
    def __init__(self, pb, pb_grpc, replicas, record, seed):
        self.pb, self.pb_grpc, self.replicas, self.rec = pb, pb_grpc, replicas, record
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.completer = CompleteSender(pb, pb_grpc, replicas, record, seed + 1)

    def query(self, qid, mode):
        allowed = list(SLOTS)
        if self.rng.random() < 0.4:
            allowed += API_MODELS
        return self.pb.Query(id=qid, text=f"Question {qid}: explain item {self.rng.randint(1, 999)}"
                             .encode(), allowed_models=allowed, mode=mode)

    def run(self, name):
        import grpc
        k = 0
        while not self.stop.is_set():
            k += 1
            kind = self.rng.choice(["route", "inline", "stream", "batch"])
            # A replica under faketime takes inline Routes (and Completes) only: libfaketime shifts
            # what the process reads, not the kernel's absolute futex timeouts its batch scheduler
            # waits on, so its batch waits would last the 90 s of the skew.
            live = [r for r in self.replicas if r.alive() and (kind == "inline" or not r.faketime)]
            replica = self.rng.choice(live or self.replicas)
            stub = self.pb_grpc.RouterStub(replica.channel)
            qids = [f"{name}-{k}-{j}" for j in range(1 if kind in ("route", "inline") else 4)]
            mode = self.pb.ROUTING_MODE_INLINE if kind == "inline" else self.pb.ROUTING_MODE_BATCH
            queries = [self.query(q, mode) for q in qids]
            with self.rec.lock:
                self.rec.sent += len(qids)
            t_sent = time.monotonic()
            try:
                if kind in ("route", "inline"):
                    resp = stub.Route(self.pb.RouteRequest(query=queries[0]), timeout=5)
                    self.got(replica, resp.assignment, t_sent)
                elif kind == "batch":
                    resp = stub.RouteBatch(self.pb.RouteBatchRequest(queries=queries), timeout=5)
                    for q, item in zip(qids, resp.items):
                        self.item(replica, q, item, t_sent)
                else:
                    seen = set()
                    for msg in stub.RouteStream(iter([self.pb.RouteStreamRequest(query=q)
                                                      for q in queries]), timeout=5):
                        for item in msg.items:
                            q = item.assignment.query_id if item.HasField("assignment") \
                                else item.error.query_id
                            seen.add(q)
                            self.item(replica, q, item, t_sent)
                    for q in qids:
                        if q not in seen:
                            self.rec.answer(q, "NO_ANSWER")
            except grpc.RpcError as e:
                # The call's status answers every query of it that had no answer yet.
                answered = set()
                with self.rec.lock:
                    answered = {q for q in qids if self.rec.answers[q] > 0}
                for q in qids:
                    if q not in answered:
                        self.rec.answer(q, e.code().name, e.details())
            time.sleep(self.rng.uniform(0.0, 0.01))

    def item(self, replica, qid, item, t_sent):
        if item.HasField("assignment"):
            self.got(replica, item.assignment, t_sent)
        else:
            import grpc
            code = grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == item.error.code))
            self.rec.answer(qid, code.name, item.error.message)

    def got(self, replica, a, t_sent):
        now = time.monotonic()
        self.rec.answer(a.query_id, "OK")
        entry = {"model": a.model, "cost": a.predicted_cost_usd, "id": a.assignment_id,
                 "t_sent": t_sent, "t_answer": now, "replica": replica.index, "end": None,
                 "inline": a.decision_mode == self.pb.ROUTING_MODE_INLINE,
                 "window": a.inline_decision.window_id, "cap": a.inline_decision.window_cap_usd}
        with self.rec.lock:
            self.rec.assignments.append(entry)
        self.completer.schedule(entry, replica)


class CompleteSender:
    """Sends each Complete to another replica than its Route's: 10% lost, 5% twice, 5% late."""

    def __init__(self, pb, pb_grpc, replicas, record, seed):
        self.pb, self.pb_grpc, self.replicas, self.rec = pb, pb_grpc, replicas, record
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.timers = []

    def schedule(self, entry, replica):
        with self.lock:
            p = self.rng.random()
            if p < 0.10:
                return  # lost: the lease expires
            delay = LEASE_S + 0.5 if p < 0.15 else self.rng.uniform(0.05, 0.6)
            times = 2 if 0.15 <= p < 0.20 else 1
        for n in range(times):
            t = threading.Timer(delay + 0.05 * n, self.send, (entry, replica.index))
            t.daemon = True
            t.start()
            with self.lock:
                self.timers.append(t)

    def send(self, entry, route_replica):
        import grpc
        others = [r for r in self.replicas if r.index != route_replica and r.alive()]
        if not others:
            return
        r = self.rng.choice(others)
        with self.rec.lock:
            # The caller is done with the model when it sends the Complete (whether or not the
            # Complete arrives: a lost one lets the lease expire instead).
            if entry["end"] is None:
                entry["end"] = time.monotonic()
        try:
            self.pb_grpc.RouterStub(r.channel).Complete(
                self.pb.CompleteRequest(assignment_id=entry["id"]), timeout=2)
            with self.rec.lock:
                self.rec.completes["ok"] += 1
        except grpc.RpcError as e:
            with self.rec.lock:
                self.rec.completes[e.code().name] += 1

    def wait(self):
        with self.lock:
            timers = list(self.timers)
        for t in timers:
            t.join(timeout=LEASE_S + 3)


class RedisChecker(threading.Thread):
    def __init__(self, redis):
        super().__init__(daemon=True)
        self.redis, self.stop, self.snapshots, self.violations = redis, threading.Event(), 0, []

    def run(self):
        script = None
        while not self.stop.is_set():
            try:
                c = self.redis.client()
                script = c.register_script(SNAPSHOT_LUA)
                while not self.stop.is_set():
                    counts = script(keys=["{rt:chaos}:"], args=list(SLOTS))
                    self.snapshots += 1
                    for (model, slots), n in zip(SLOTS.items(), counts):
                        if n > slots:
                            self.violations.append(f"{model}: {n} of {slots} slots")
                    time.sleep(0.01)
            except Exception:  # Redis down in a scenario: wait for it
                time.sleep(0.05)


def check(name, rec, latency_max, lease_s):
    problems = []
    # Exactly once.
    dup = [q for q, n in rec.answers.items() if n != 1]
    if len(rec.answers) != rec.sent or dup:
        problems.append(f"{rec.sent} queries sent, {len(rec.answers)} answered, "
                        f"{len(dup)} answered more than once")
    if rec.bad:
        problems.append(f"non-retryable errors: {rec.bad[:5]}")
    # Slots: open intervals per model.
    peak = {}
    for model, slots in SLOTS.items():
        events = []
        for a in rec.assignments:
            if a["model"] != model:
                continue
            expiry = a["t_sent"] + lease_s
            end = min(a["end"], expiry) if a["end"] is not None else expiry
            if end > a["t_answer"]:
                events.append((a["t_answer"], 1))
                events.append((end, -1))
        events.sort(key=lambda e: (e[0], e[1]))
        open_now = best = 0
        for _, d in events:
            open_now += d
            best = max(best, open_now)
        peak[model] = best
        if best > slots:
            problems.append(f"{model}: {best} assignments open at once, {slots} slots")
    # Spend: token bucket over a 50 ms grid of intervals.
    rate = RATE_USD_PER_MIN / 60.0
    paid = sorted((a["t_answer"], a["cost"]) for a in rec.assignments)
    times = [t for t, _ in paid]
    prefix = [0.0]
    for _, c in paid:
        prefix.append(prefix[-1] + c)
    worst = -float("inf")
    if paid:
        grid = [times[0] + 0.05 * k for k in range(int((times[-1] - times[0]) / 0.05) + 2)]
        for i, a in enumerate(grid):
            lo = bisect.bisect_left(times, a)
            for b in grid[i + 1:]:
                spent = prefix[bisect.bisect_right(times, b)] - prefix[lo]
                allowed = BURST_USD + rate * (b - a + latency_max)
                worst = max(worst, spent - allowed)
        if worst > 1e-6 * len(paid):
            problems.append(f"spend exceeded the pacing budget by {worst:.6f} USD in some interval")
    # Inline windows: per ledger state (the id's incarnation prefix) and window id.
    windows = collections.defaultdict(float)
    caps = {}
    for a in rec.assignments:
        if a["inline"]:
            key = (a["id"].split("-")[0], a["window"])
            windows[key] += a["cost"]
            caps[key] = a["cap"]
    over = [(k, s, caps[k]) for k, s in windows.items() if caps[k] >= 0 and s > caps[k] + 1e-9]
    if over:
        problems.append(f"inline windows over their cap: {over[:3]}")
    return problems, peak, worst, len(windows)


def run_scenario(name, args, procs, tmp, redis, replicas, pb, pb_grpc):
    import grpc
    rec = Record()
    checker = RedisChecker(redis)
    checker.start()
    drivers = [Driver(pb, pb_grpc, replicas, rec, seed=hash((name, k)) & 0xffff) for k in range(4)]
    threads = [threading.Thread(target=d.run, args=(f"{name}{k}",), daemon=True)
               for k, d in enumerate(drivers)]
    start = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(args.seconds / 3)
    victim = replicas[1]
    notes = []
    if name == "kill9":
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        victim.history[-1]["killed"] = True
        time.sleep(args.seconds / 3)
        victim.start()
        notes.append("replica 1 killed (SIGKILL) and started again")
    elif name == "sigstop":
        victim.proc.send_signal(signal.SIGSTOP)
        time.sleep(2.5)  # past its batch holds (time limit + 1 s)
        victim.proc.send_signal(signal.SIGCONT)
        notes.append("replica 1 stopped 2.5 s")
    elif name == "redis_aof":
        redis.kill()
        time.sleep(0.3)
        redis.start()
        notes.append("redis killed and restarted from its append-only file")
    elif name == "redis_empty":
        redis.kill()
        redis.wipe()
        redis.start()
        notes.append("redis killed and restarted empty")
    elif name in ("redis_stall", "escrow_stall"):
        stall = [time.monotonic()]
        redis.proc.send_signal(signal.SIGSTOP)
        time.sleep(3.0)
        stall.append(time.monotonic())
        redis.proc.send_signal(signal.SIGCONT)
        notes.append("redis stopped 3 s")
    elif name == "skew":
        notes.append("replica 2 runs 90 s ahead (faketime)")
    while time.monotonic() - start < args.seconds:
        time.sleep(0.1)
    for d in drivers:
        d.stop.set()
    for t in threads:
        t.join(timeout=10)
    # No slot held past the lease timeout: from the end of the load, every live replica shows 0 in
    # use within the lease timeout (+ 1 s of polling and Redis' bounded expiry per call).
    drained_at = time.monotonic()

    def idle():
        for r in replicas:
            if not r.alive():
                continue
            try:
                models = pb_grpc.RouterAdminStub(r.channel).ListModels(pb.ListModelsRequest(),
                                                                        timeout=2).models
            except grpc.RpcError as e:
                # A ledger call that timed out (a loaded machine, a sanitizer build) leaves the
                # ledger degraded for retry_after: ask again.
                if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    return False
                raise
            if any(m.slots_in_use != 0 for m in models if m.deployment.name in SLOTS):
                return False
        return True

    try:
        poll(f"{name}: slots free again", LEASE_S + 5, idle, interval_s=0.2)
    except SystemExit:
        raise
    idle_after = time.monotonic() - drained_at
    for d in drivers:
        d.completer.wait()
    latency_max = max([a["t_answer"] - a["t_sent"] for a in rec.assignments] or [0.0])
    checker.stop.set()
    checker.join(timeout=5)
    problems, peak, worst, nwin = check(name, rec, latency_max, LEASE_S)
    if checker.violations:
        problems.append(f"Redis snapshots over the slots: {checker.violations[:3]}")
    if name == "escrow_stall":
        # Leases of an escrow ("<incarnation>-e<n>.<tag>") answered while Redis was stopped.
        during = [a for a in rec.assignments if re.match(r"^[0-9a-f]+-e\d+\.", a["id"])
                  and stall[0] < a["t_answer"] < stall[1]]
        inline = sum(1 for a in during if a["inline"])
        notes.append(f"{len(during)} assignments decided on escrows while Redis was stopped "
                     f"({inline} inline)")
        if not during:
            problems.append("no query was answered from an escrow while Redis was stopped")
    if idle_after > LEASE_S + 1.0:
        problems.append(f"slots still held {idle_after:.1f} s after the load stopped")
    routed = len(rec.assignments)
    print(f"{name}: {'; '.join(notes) or 'no disruption'}; {rec.sent} queries, {routed} routed, "
          f"errors {dict(rec.errors)}; completes {dict(rec.completes)}; peak open "
          f"{peak} of {SLOTS}; spend {sum(a['cost'] for a in rec.assignments):.4f} USD, "
          f"tightest interval {-worst:.4f} USD under the pacing bound; {nwin} inline windows; "
          f"{checker.snapshots} Redis snapshots; slots free {idle_after:.1f} s after the load; "
          f"max latency {latency_max * 1000:.0f} ms", flush=True)
    for p in problems:
        print(f"  FAIL {name}: {p}", flush=True)
    return not problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("routerd")
    ap.add_argument("artifact")
    ap.add_argument("stubs")
    ap.add_argument("--skew_routerd", default=None)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--scenarios", default="baseline,kill9,sigstop,redis_aof,redis_empty,"
                                           "redis_stall,escrow_stall,skew")
    args = ap.parse_args()
    for tool in ("redis-server", "faketime"):
        if shutil.which(tool) is None:
            print(f"SKIP: {tool} not installed (deploy/install-deps.sh)")
            return 77
    if not os.path.isfile(args.artifact):
        print(f"SKIP: estimator artifact {args.artifact} not found")
        return 77
    sys.path.insert(0, args.stubs)
    from router.v1 import router_pb2 as pb, router_pb2_grpc as pb_grpc  # noqa: E402
    procs = Processes()
    ok = True
    begin = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            redis = Redis(procs, tmp)
            text = CONFIG.format(artifact=args.artifact, cap=CAP_USD, rate=RATE_USD_PER_MIN,
                                 burst=BURST_USD, lease=LEASE_S, window=WINDOW,
                                 redis_port=redis.port)
            for name in args.scenarios.split(","):
                skewed = name == "skew"
                config = text.replace("retry_after_ms: 300}", "retry_after_ms: 300,\n          " +
                                      ESCROW + "}") if name == "escrow_stall" else text
                replicas = [Replica(procs, (args.skew_routerd or args.routerd) if skewed and k == 2
                                    else args.routerd, tmp, k, config,
                                    faketime="+90s" if skewed and k == 2 else None)
                            for k in range(3)]
                ok = run_scenario(name, args, procs, tmp, redis, replicas, pb, pb_grpc) and ok
                for r in replicas:
                    procs.stop(r.proc)
                for r in replicas:
                    for p in r.problems():
                        print(f"  FAIL {name}: {p}", flush=True)
                        ok = False
        finally:
            procs.stop_all()
    print(f"fleet chaos: {'PASS' if ok else 'FAIL'} in {time.monotonic() - begin:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
