#!/usr/bin/python3
"""A bounded soak of a real routerd: mixed load, cancellations, reloads and config updates.

For --duration seconds, --clients threads send Route (batch and inline), RouteStream (mixed
modes) and RouteBatch calls, cancel about 10% of them, and Complete most assignments (some with an
actual cost, the rest left to expire); the config file is re-read with SIGHUP every
--sighup-every seconds and replaced with RouterAdmin.UpdateConfig every --update-every seconds.
It checks, and reports as JSON on stdout:
  - every call answered exactly once: each unary call resolves within its deadline; each stream
    and RouteBatch that was not cancelled answers every query it sent, once, by id;
  - errors by code (only retryable or expected codes are allowed: see ALLOWED); a Complete sent
    after its lease expired may be NOT_FOUND (routerd remembers a bounded number of expired
    leases) and is reported apart, with the oldest assignment a Complete was sent for;
  - routerd's RSS every --rss-every seconds, and whether its growth flattened (the second half of
    the run grows by less than --rss-slack of the RSS at half time);
  - slots in use once every lease has expired (must be 0 for every self-hosted model);
  - a SIGTERM then ends routerd with exit code 0 within drain + grace (+ a slack).
Exits 0 when every check passes, 1 otherwise (the report says which failed).

usage: soak_test.py --routerd BIN --stubs DIR [--duration S] [--clients N] ...
Requirements: Debian's python3-grpcio and python3-protobuf (/usr/bin/python3), and the stubs the
build generates into <build>/python.
"""

import argparse
import collections
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

# An answer, a cancellation the client asked for, or a retryable refusal; DEADLINE_EXCEEDED would
# mean a call was not answered within its generous deadline.
ALLOWED = {"OK", "CANCELLED", "UNAVAILABLE", "RESOURCE_EXHAUSTED"}
LOCAL = "mistralai/mixtral-8x7b-chat"
LOCAL_SLOTS = 8
TEXTS = [
    b"Which gas do plants absorb from the air? A) oxygen B) carbon dioxide",
    b"Write a python function that returns the n-th Fibonacci number.",
    b"The trophy didn't fit into the suitcase because it was too big. What was too big?",
    b"Prove that the square root of two is irrational.",
    b"Summarize the causes of the first world war in three sentences.",
]


def config_yaml(lease_s, fallbacks):
    # RouterAdmin (UpdateConfig, ListModels) open to this test only: routerd allows that on loopback.
    return f"""listen: 127.0.0.1:0
metrics_listen: ""
admin: {{allow_unauthenticated: true}}
batching: {{max_batch_size: 32, max_batch_delay_ms: 2}}
policy: {{max_fallbacks: {fallbacks}}}
budget: {{avg_cost_cap_usd: 0.003, spend_usd_per_minute: 60, spend_burst_usd: 5, lease_timeout_s: {lease_s}}}
routing: {{default_mode: batch, tenant_modes: {{fast-lane: inline}}}}
shutdown: {{drain_s: 1, grace_s: 5}}
models:
  - {{name: "{LOCAL}", instances: 2, slots_per_instance: 4}}
  - {{name: "meta/llama-2-70b-chat", instances: 1, slots_per_instance: 2}}
  - {{name: "gpt-4-1106-preview"}}
  - {{name: "gpt-3.5-turbo-1106"}}
  - {{name: "claude-instant-v1"}}
"""


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.codes = collections.Counter()
        self.calls = collections.Counter()
        self.violations = []
        self.assignments = collections.deque()  # (id, predicted cost, monotonic time assigned)
        self.late_not_found = 0  # Completes refused after the lease expired and was forgotten
        self.max_complete_age_s = 0.0
        self.messages = collections.Counter()  # UNAVAILABLE messages, for the report

    def code(self, method, code_name, message=""):
        with self.lock:
            self.codes[code_name] += 1
            self.calls[method] += 1
            if code_name == "UNAVAILABLE" and message:
                self.messages[message[:120]] += 1

    def violation(self, what):
        with self.lock:
            if len(self.violations) < 20:
                self.violations.append(what)

    def assigned(self, a):
        with self.lock:
            self.assignments.append((a.assignment_id, a.predicted_cost_usd, time.monotonic()))

    def take_assignment(self):
        with self.lock:
            return self.assignments.popleft() if self.assignments else None

    def completed(self, code_name, age_s, lease_s):
        # routerd remembers an expired lease for a bounded number of later expiries, so a Complete
        # sent after its lease expired may be NOT_FOUND; one sent within the lease may not.
        with self.lock:
            self.max_complete_age_s = max(self.max_complete_age_s, age_s)
            if code_name == "NOT_FOUND" and age_s > lease_s:
                self.late_not_found += 1
                self.calls["Complete"] += 1
                return
        self.code("Complete", code_name)


def query(pb, rng, k, mode=None):
    q = pb.Query(id=f"q{k}", text=rng.choice(TEXTS) + b" #%d" % k)
    if rng.random() < 0.3:
        q.allowed_models.extend([LOCAL, "claude-instant-v1"])
    if mode == "inline":
        q.mode = pb.ROUTING_MODE_INLINE
    elif mode == "tenant":
        q.tenant = "fast-lane"
    return q


def worker(stub, pb, grpc, tally, stop, seed):
    rng = random.Random(seed)
    k = 0
    while not stop.is_set():
        k += 1
        op = rng.random()
        cancel = rng.random() < 0.1
        try:
            if op < 0.55:  # unary Route, batch or inline
                mode = rng.choice([None, "inline", "tenant"])
                req = pb.RouteRequest(query=query(pb, rng, k, mode))
                fut = stub.Route.future(req, timeout=30)
                if cancel:
                    fut.cancel()
                try:
                    resp = fut.result()
                    tally.code("Route", "OK")
                    tally.assigned(resp.assignment)
                except grpc.FutureCancelledError:
                    tally.code("Route", "CANCELLED")
                except grpc.RpcError as e:
                    tally.code("Route", e.code().name, e.details())
            elif op < 0.8:  # RouteStream, mixed modes
                n = rng.randint(3, 20)
                sent = [f"s{seed}-{k}-{i}" for i in range(n)]

                def requests():
                    for i, qid in enumerate(sent):
                        q = query(pb, rng, k, rng.choice([None, "inline"]))
                        q.id = qid
                        yield pb.RouteStreamRequest(query=q)

                it = stub.RouteStream(requests(), timeout=30)
                answered = collections.Counter()
                try:
                    for resp in it:
                        for item in resp.items:
                            if item.HasField("assignment"):
                                answered[item.assignment.query_id] += 1
                                tally.assigned(item.assignment)
                            else:
                                answered[item.error.query_id] += 1
                        if cancel and sum(answered.values()) >= n // 2:
                            it.cancel()
                    tally.code("RouteStream", "OK")
                    if answered != collections.Counter(sent):
                        tally.violation(f"stream {seed}-{k}: answers {dict(answered)} for {n} sent")
                except grpc.RpcError as e:
                    tally.code("RouteStream", e.code().name, e.details())
                    if any(c > 1 for c in answered.values()):
                        tally.violation(f"stream {seed}-{k}: a query answered twice")
            else:  # RouteBatch
                n = rng.randint(5, 30)
                req = pb.RouteBatchRequest(queries=[query(pb, rng, k * 100 + i) for i in range(n)])
                fut = stub.RouteBatch.future(req, timeout=30)
                if cancel:
                    fut.cancel()
                try:
                    resp = fut.result()
                    tally.code("RouteBatch", "OK")
                    if len(resp.items) != n:
                        tally.violation(f"RouteBatch {seed}-{k}: {len(resp.items)} items for {n}")
                    for item in resp.items:
                        if item.HasField("assignment"):
                            tally.assigned(item.assignment)
                except grpc.FutureCancelledError:
                    tally.code("RouteBatch", "CANCELLED")
                except grpc.RpcError as e:
                    tally.code("RouteBatch", e.code().name, e.details())
        except Exception as e:  # a bug in this script must not pass silently
            tally.violation(f"worker error: {e!r}")


def completer(stub, pb, grpc, tally, stop, seed, lease_s):
    rng = random.Random(seed)
    while True:
        taken = tally.take_assignment()
        if taken is None:
            if stop.is_set():
                return
            time.sleep(0.01)
            continue
        assignment_id, predicted, assigned_at = taken
        if rng.random() < 0.15:
            continue  # left to expire at its lease timeout
        req = pb.CompleteRequest(assignment_id=assignment_id, success=True)
        if rng.random() < 0.5:
            req.actual_cost_usd = predicted * rng.uniform(0.5, 1.5)
        sent_age = time.monotonic() - assigned_at
        try:
            stub.Complete(req, timeout=5)
            tally.completed("OK", sent_age, lease_s)
        except grpc.RpcError as e:
            tally.completed(e.code().name, sent_age, lease_s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routerd", required=True)
    ap.add_argument("--stubs", required=True, help="<build>/python")
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--sighup-every", type=float, default=15)
    ap.add_argument("--update-every", type=float, default=30)
    ap.add_argument("--rss-every", type=float, default=30)
    ap.add_argument("--rss-slack", type=float, default=0.10)
    ap.add_argument("--lease-timeout-s", type=float, default=5)
    ap.add_argument("--completers", type=int, default=4,
                    help="threads sending Complete (a gateway completes within seconds)")
    args = ap.parse_args()
    sys.path.insert(0, args.stubs)
    import grpc
    from router.v1 import router_pb2 as pb, router_pb2_grpc as pbg

    report = {"duration_s": args.duration, "clients": args.clients}
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "routerd.yaml")
        with open(path, "w") as f:
            f.write(config_yaml(args.lease_timeout_s, 2))
        proc = subprocess.Popen([args.routerd, "--config", path], stderr=subprocess.PIPE,
                                text=True)
        port = None
        for line in proc.stderr:
            m = re.search(r"serving on port (\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            print(json.dumps({"error": "routerd did not start"}))
            return 1
        stderr_lines = []
        threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True).start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = pbg.RouterStub(channel)
        admin = pbg.RouterAdminStub(channel)
        tally = Tally()
        stop = threading.Event()
        threads = [threading.Thread(target=worker, args=(stub, pb, grpc, tally, stop, s))
                   for s in range(args.clients)]
        done_completing = threading.Event()
        completers = [threading.Thread(target=completer, args=(stub, pb, grpc, tally, done_completing,
                                                               99 + c, args.lease_timeout_s))
                      for c in range(args.completers)]
        for t in threads + completers:
            t.start()
        start = time.monotonic()
        next_hup, next_update, next_rss = args.sighup_every, args.update_every, 0.0
        rss, reloads, updates = [], 0, 0
        while (elapsed := time.monotonic() - start) < args.duration:
            if elapsed >= next_rss:
                rss.append([round(elapsed), rss_kb(proc.pid)])
                next_rss += args.rss_every
            if elapsed >= next_hup:
                proc.send_signal(signal.SIGHUP)
                reloads += 1
                next_hup += args.sighup_every
            if elapsed >= next_update:
                updates += 1
                try:
                    admin.UpdateConfig(pb.UpdateConfigRequest(
                        yaml=config_yaml(args.lease_timeout_s, 1 + updates % 3)), timeout=10)
                except grpc.RpcError as e:
                    failures.append(f"UpdateConfig: {e.code().name} {e.details()}")
                next_update += args.update_every
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join()
        done_completing.set()
        for t in completers:
            t.join()
        rss.append([round(time.monotonic() - start), rss_kb(proc.pid)])
        report.update(calls=dict(tally.calls), codes=dict(tally.codes),
                      unavailable=dict(tally.messages.most_common(5)), reloads=reloads,
                      config_updates=updates, rss_kb=rss,
                      completes_late_not_found=tally.late_not_found,
                      max_complete_age_s=round(tally.max_complete_age_s, 2))
        # Every lease left open expires at its timeout; then nothing is held.
        time.sleep(args.lease_timeout_s + 1)
        models = admin.ListModels(pb.ListModelsRequest(), timeout=10).models
        in_use = {m.deployment.name: m.slots_in_use for m in models if m.slots_total > 0}
        report["slots_in_use_after_expiry"] = in_use
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            code = proc.wait(timeout=1 + 5 + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        report["sigterm_exit"] = {"code": code, "seconds": round(time.monotonic() - t0, 2)}
        report["reload_errors"] = [l.strip() for l in stderr_lines
                                   if "reload" in l and "applied" not in l][:5]

    failures += tally.violations
    bad = {c: n for c, n in tally.codes.items() if c not in ALLOWED}
    if bad:
        failures.append(f"unexpected codes: {bad}")
    if any(in_use.values()):
        failures.append(f"slots still in use after every lease expired: {in_use}")
    if report["sigterm_exit"]["code"] != 0:
        failures.append(f"SIGTERM: {report['sigterm_exit']}")
    if report["reload_errors"]:
        failures.append(f"reloads refused: {report['reload_errors']}")
    if len(rss) >= 4:
        half = rss[len(rss) // 2][1]
        growth = (rss[-1][1] - half) / max(half, 1)
        report["rss_growth_second_half"] = round(growth, 4)
        if growth > args.rss_slack:
            failures.append(f"RSS grew {growth:.1%} in the second half")
    report["failures"] = failures
    print(json.dumps(report, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
