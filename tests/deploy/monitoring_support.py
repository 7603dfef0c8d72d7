"""Shared parts of the monitoring tests (tests/deploy/*_test.py): a routerd started on free ports,
traffic sent with routerctl, its /metrics text, and the metric names PromQL expressions use.

Every process started here gets SIGKILL from the kernel if the test process dies (PR_SET_PDEATHSIG),
and Processes.stop_all() ends them on any normal exit, so no routerd or prometheus outlives a test.
Waits are polls bounded by a deadline: a broken server fails the test instead of hanging it.
"""

import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import yaml

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _die_with_parent():
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def free_port():
    """A loopback TCP port free now (it can be taken before the caller binds it: retry then)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8")


def poll(what, deadline_s, probe, interval_s=0.1):
    """Calls probe() until it returns a truthy value (returned) or deadline_s pass (fails)."""
    end = time.monotonic() + deadline_s
    last_error = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except (OSError, ValueError, KeyError) as e:
            last_error = e
        if time.monotonic() > end:
            fail(f"{what}: not reached within {deadline_s} s (last error: {last_error})")
        time.sleep(interval_s)


class Processes:
    """Child processes of one test; stop_all() terminates them (SIGTERM, then SIGKILL)."""

    def __init__(self):
        self._procs = []
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))

    def start(self, argv, log_path):
        log = open(log_path, "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             preexec_fn=_die_with_parent)
        log.close()
        self._procs.append(p)
        return p

    def stop(self, p, grace_s=15.0):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for p in reversed(self._procs):
            self.stop(p)


class Routerd:
    """routerd on the shipped configuration, gRPC and /metrics on ports the kernel picks."""

    _READY = re.compile(
        r"serving on port (\d+), metrics on port (\d+)(?:, RouterAdmin on port (\d+))?")

    def __init__(self, procs, routerd, config, artifact, tmp):
        self.log_path = os.path.join(tmp, "routerd.log")
        self.proc = procs.start([routerd, "--config", config, "--estimator", artifact,
                                 "--port", "0", "--metrics_port", "0", "--admin_port", "0"],
                                self.log_path)

        def ready():
            if self.proc.poll() is not None:
                fail(f"routerd exited with {self.proc.returncode}:\n{self.log()}")
            m = self._READY.search(self.log())
            return m and (int(m.group(1)), int(m.group(2)), int(m.group(3) or m.group(1)))

        # ASan builds load the artifact several times slower: a generous bound.
        self.port, self.metrics_port, self.admin_port = poll("routerd serving", 120, ready)

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    @property
    def admin_address(self):
        """RouterAdmin's: admin.listen's port, else the API's."""
        return f"127.0.0.1:{self.admin_port}"

    def scrape(self):
        return http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")


def routerctl(ctl, address, *args, ok_codes=(0,)):
    """Runs routerctl; returns its stdout. Fails the test on an exit code not in ok_codes."""
    r = subprocess.run([ctl, "--address", address, "--timeout_ms", "30000", *args],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    if r.returncode not in ok_codes:
        fail(f"routerctl {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def send_traffic(ctl, routerd, tmp, tag):
    """Sends every kind of call the dashboard and the alerts look at to `routerd` (a Routerd):
    Route in batch and inline mode, an invalid Route (refused: invalid), RouteBatch, RouteStream in
    both modes, Complete with and without an actual cost, and an outcome learned from
    (learn_from_an_outcome). Returns the number of Route calls made."""
    address = routerd.address
    routes = 0
    assignment_ids = []
    for k, mode in enumerate(["batch", "inline", "batch", "inline"]):
        out = routerctl(ctl, address, "route", "--text", f"Question {k} of {tag}: explain recursion.",
                        "--id", f"{tag}-r{k}", "--mode", mode)
        assignment_ids.append(json.loads(out)["assignment_id"])
        routes += 1
    routerctl(ctl, address, "route", "--text", "", "--id", f"{tag}-bad", ok_codes=(1,))
    routes += 1
    batch = os.path.join(tmp, f"{tag}-batch.jsonl")
    with open(batch, "w") as f:
        for k in range(8):
            f.write(json.dumps({"prompt_id": f"{tag}-b{k}", "text": f"Batch question {k}: name a prime."}) + "\n")
    routerctl(ctl, address, "batch", "--file", batch)
    stream = os.path.join(tmp, f"{tag}-stream.jsonl")
    with open(stream, "w") as f:
        for k in range(40):
            f.write(json.dumps({"prompt_id": f"{tag}-s{k}", "text": f"Stream question {k}: sum {k} and {k}."}) + "\n")
    routerctl(ctl, address, "stream", "--file", stream)
    routerctl(ctl, address, "stream", "--file", stream, "--mode", "inline")
    routerctl(ctl, address, "complete", "--id", assignment_ids[0], "--cost", "0.002", "--success", "true")
    routerctl(ctl, address, "complete", "--id", assignment_ids[1])
    learn_from_an_outcome(ctl, routerd, tmp, tag)
    return routes + 1


def learn_from_an_outcome(ctl, routerd, tmp, tag):
    """Turns learning from outcomes on at runtime (the shipped configuration has it off, as
    routerd's default), routes a query and completes it with a score, and waits (bounded) until
    the learned quality is exported: it is refreshed every second."""
    admin = routerd.admin_address
    config = yaml.safe_load(routerctl(ctl, admin, "config", "get"))
    config["learning"]["enabled"] = True
    path = os.path.join(tmp, f"{tag}-learning.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    routerctl(ctl, admin, "config", "set", "--file", path)
    out = routerctl(ctl, routerd.address, "route", "--text", f"A question of {tag} to learn from.",
                    "--id", f"{tag}-learn", "--mode", "inline")
    routerctl(ctl, routerd.address, "complete", "--id", json.loads(out)["assignment_id"],
              "--score", "0.5")
    cells = json.loads(routerctl(ctl, admin, "learned", "show")).get("cells", [])
    if not cells:
        fail("learned show: no learned cell after a scored outcome")
    poll("router_learning_quality exported", 30,
         lambda: re.search(r"^router_learning_quality\{", routerd.scrape(), re.M))


def exported_names(metrics_text):
    """Series names of a Prometheus text exposition: each family's name, and for a histogram its
    _bucket, _sum and _count series (a summary: _sum and _count)."""
    types = {}
    for line in metrics_text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)$", line)
        if m:
            types[m.group(1)] = m.group(2)
    names = set()
    for name, kind in types.items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "summary":
            names |= {name, f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    # Every sample line must belong to a declared family (no untyped strays).
    for line in metrics_text.splitlines():
        if line and not line.startswith("#"):
            sample = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            if sample not in names:
                fail(f"/metrics: sample {sample} has no # TYPE line")
    return names


_KEYWORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left",
             "group_right", "offset", "inf", "nan"}
_TOKEN = re.compile(r"(?P<num>(?<![\w.])(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?))"
                    r"|(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<call>\s*\()?")


def promql_metric_names(expr):
    """The metric names a PromQL expression selects (function and aggregation names, label names
    and values, durations and keywords removed). Syntax is promtool's business, not this one's."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)                  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)                 # range and subquery durations
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", s)
    names = set()
    for m in _TOKEN.finditer(s):
        ident = m.group("ident")
        if ident is None or m.group("call") or ident.lower() in _KEYWORDS:
            continue
        names.add(ident)
    return names


# Grafana's variables, replaced by values of the same PromQL type for a syntax check.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
                     "$job": ".*", "$instance": ".*"}


def grafana_to_promql(expr):
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    if "$" in expr:
        fail(f"an unknown Grafana variable in: {expr}")
    return expr
