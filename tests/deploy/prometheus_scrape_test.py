#!/usr/bin/env python3
"""Debian's real Prometheus scrapes a live routerd and evaluates the shipped alert rules on it
(ctest deploy_prometheus_scrape).

In a temp dir: routerd on free ports, then `prometheus` on a free loopback port with a generated
config (scrape routerd every 1 s, evaluate deploy/prometheus/alerts.yml every 1 s, TSDB in the
temp dir). Through Prometheus' HTTP API the test checks that
  * the routerd target is up and Prometheus holds exactly the router_ series routerd exports;
  * the series move with traffic: after N more Route calls, Prometheus' sum of
    router_requests_total{method="Route"} reaches exactly the old sum + N, and
    router_decisions_total grows by at least the queries decided;
  * every alert rule is loaded and evaluates on the real series without error.
Every wait is a poll with a deadline; both servers are stopped on any exit.

usage: prometheus_scrape_test.py ROUTERD ROUTERCTL CONFIG ARTIFACT ALERTS_YML
Exits 77 (skipped) when the estimator artifact does not exist.
"""

import json
import os
import re
import shutil
import sys
import tempfile
import urllib.parse

import yaml

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from monitoring_support import (Processes, Routerd, exported_names, fail, free_port,  # noqa: E402
                                http_get, poll, send_traffic)

passed = 0


def ok(message):
    global passed
    passed += 1
    print(f"PASS: {message}", flush=True)


class Prometheus:
    def __init__(self, procs, tmp, metrics_port, alerts):
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [alerts],
            "scrape_configs": [{"job_name": "routerd",
                                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
        }
        config_path = os.path.join(tmp, "prometheus.yml")
        with open(config_path, "w") as f:
            yaml.safe_dump(config, f)
        # A port picked free can be taken before Prometheus binds it: it then exits; try another.
        for attempt in range(5):
            self.port = free_port()
            self.log_path = os.path.join(tmp, f"prometheus-{attempt}.log")
            self.proc = procs.start(
                ["prometheus", f"--config.file={config_path}",
                 f"--storage.tsdb.path={os.path.join(tmp, 'tsdb')}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"], self.log_path)
            if poll("prometheus ready or exited", 60, self._ready_or_exited):
                if self.proc.poll() is None:
                    return
            procs.stop(self.proc)
        fail(f"prometheus did not start:\n{self.log()}")

    def _ready_or_exited(self):
        if self.proc.poll() is not None:
            return True
        return http_get(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) is not None

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        body = json.loads(http_get(url))
        if body.get("status") != "success":
            fail(f"{url}: {body}")
        return body["data"]

    def scalar(self, query):
        """The single value of an instant query, or None while it has no result."""
        result = self.api("query", query=query)["result"]
        if len(result) > 1:
            fail(f"{query}: {len(result)} series, want one")
        return float(result[0]["value"][1]) if result else None


def route_calls(metrics_text):
    """Sum of router_requests_total{method="Route"} in a /metrics text."""
    return sum(float(m.group(1)) for m in re.finditer(
        r'^router_requests_total\{[^}]*method="Route"[^}]*\} (\S+)$', metrics_text, re.M))


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    routerd, ctl, config, artifact, alerts = sys.argv[1:]
    alerts = os.path.abspath(alerts)
    if not os.path.isfile(artifact):
        print(f"SKIP: estimator artifact {artifact} not found (router_train writes it)")
        return 77
    if shutil.which("prometheus") is None:
        fail("prometheus missing (deploy/install-deps.sh installs Debian's prometheus)")
    with open(alerts) as f:
        alert_names = {r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r}

    procs = Processes()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            r = Routerd(procs, routerd, config, artifact, tmp)
            send_traffic(ctl, r, tmp, "warmup")
            prom = Prometheus(procs, tmp, r.metrics_port, alerts)
            ok(f"prometheus ready on 127.0.0.1:{prom.port}, scraping routerd's 127.0.0.1:{r.metrics_port}")

            poll("routerd target up", 30, lambda: prom.scalar('up{job="routerd"}') == 1)
            ok("the routerd target is up")

            # Prometheus has scraped the traffic so far once it shows what /metrics shows now.
            before = route_calls(r.scrape())
            route_sum = 'sum(router_requests_total{job="routerd", method="Route"})'
            poll("Prometheus catching up with the warm-up traffic", 30,
                 lambda: prom.scalar(route_sum) == before)
            decided_before = prom.scalar('sum(router_decisions_total{job="routerd"})')

            exported = {n for n in exported_names(r.scrape()) if n.startswith("router_")}
            stored = {n for n in prom.api("label/__name__/values") if n.startswith("router_")}
            if stored != exported:
                fail(f"router_ series in Prometheus differ from /metrics: only in Prometheus "
                     f"{sorted(stored - exported)}, only in /metrics {sorted(exported - stored)}")
            ok(f"Prometheus holds the {len(stored)} router_ series names routerd exports")

            sent = send_traffic(ctl, r, tmp, "moved")

            def moved():
                value = prom.scalar(route_sum)
                if value is not None and value > before + sent:
                    fail(f"{route_sum} is {value}, above {before} + {sent} calls sent")
                return value == before + sent

            poll(f"{route_sum} reaching {before:g} + {sent}", 30, moved)
            ok(f"{route_sum} went from {before:g} to {before + sent:g} with the {sent} Route calls sent")
            # 4 Routes, 8 batched queries and 2 streams of 40 were decided (the invalid one is not).
            # The scrape that saw the Route calls may predate the streams' end: wait for the next.
            def decided():
                value = prom.scalar('sum(router_decisions_total{job="routerd"})')
                return value is not None and value - decided_before >= 4 + 8 + 2 * 40 and value

            decided_after = poll("router_decisions_total growing by the 92 decided", 30, decided)
            ok(f"sum(router_decisions_total) grew by {decided_after - decided_before:g} (>= 92 decided)")

            def rules_evaluated():
                groups = prom.api("rules", type="alert")["groups"]
                rules = [rule for g in groups for rule in g["rules"]]
                for rule in rules:
                    if rule["health"] == "err":
                        fail(f"alert {rule['name']} fails on real series: {rule.get('lastError')}")
                return rules and all(rule["health"] == "ok" for rule in rules) and rules

            rules = poll("every alert rule evaluated", 30, rules_evaluated)
            loaded = {rule["name"] for rule in rules}
            if loaded != alert_names:
                fail(f"Prometheus loaded alerts {sorted(loaded)}, alerts.yml has {sorted(alert_names)}")
            ok(f"all {len(loaded)} alert rules loaded and evaluate on routerd's series without error")
        finally:
            procs.stop_all()
    print(f"{passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
