#!/usr/bin/env python3
"""deploy/prometheus/ passes promtool and follows the alert conventions (ctest deploy_prometheus_rules):

  * `promtool check config prometheus.yml` (which also loads the rule files it names),
    `promtool check rules alerts.yml`, `promtool test rules alerts_test.yml`;
  * every alert of alerts.yml has, in alerts_test.yml, a case where it fires and one where it does
    not, and no case names an alert that does not exist;
  * every alert has a `for:` duration, a `severity` of critical or warning, a summary, a
    description, and a `dashboard` link to a panel of the Grafana dashboard (uid and panel id
    exist) that shows at least one metric the alert's expression uses;
  * every division in an alert's expression divides by clamp_min(...).

usage: prometheus_rules_test.py PROMETHEUS_DIR DASHBOARD_JSON
"""

import json
import os
import re
import subprocess
import sys

import yaml

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from monitoring_support import fail, promql_metric_names  # noqa: E402

passed = 0


def ok(message):
    global passed
    passed += 1
    print(f"PASS: {message}", flush=True)


def promtool(*args, cwd):
    r = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail(f"promtool {' '.join(args)} (exit {r.returncode}):\n{r.stdout}{r.stderr}")
    return r.stdout + r.stderr


def dashboard_panels(dashboard):
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])  # a collapsed row keeps its panels inside


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    prom_dir, dashboard_path = sys.argv[1], sys.argv[2]
    if subprocess.run(["sh", "-c", "command -v promtool"], capture_output=True).returncode != 0:
        fail("promtool missing (deploy/install-deps.sh installs Debian's prometheus)")

    promtool("check", "config", "prometheus.yml", cwd=prom_dir)
    ok("promtool check config prometheus.yml (its rule files load)")
    out = promtool("check", "rules", "alerts.yml", cwd=prom_dir)
    ok(f"promtool check rules alerts.yml: {out.strip().splitlines()[-1].strip()}")
    promtool("test", "rules", "alerts_test.yml", cwd=prom_dir)
    ok("promtool test rules alerts_test.yml")

    with open(os.path.join(prom_dir, "prometheus.yml")) as f:
        config = yaml.safe_load(f)
    if "alerts.yml" not in config.get("rule_files", []):
        fail("prometheus.yml does not load alerts.yml")
    with open(os.path.join(prom_dir, "alerts.yml")) as f:
        rules = yaml.safe_load(f)
    alerts = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                if rule["alert"] in alerts:
                    fail(f"alert {rule['alert']} defined twice")
                alerts[rule["alert"]] = rule
    if not alerts:
        fail("alerts.yml has no alert")

    with open(os.path.join(prom_dir, "alerts_test.yml")) as f:
        tests = yaml.safe_load(f)
    if tests.get("rule_files") != ["alerts.yml"]:
        fail(f"alerts_test.yml tests {tests.get('rule_files')}, not alerts.yml")
    firing, quiet = set(), set()
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            name = case["alertname"]
            if name not in alerts:
                fail(f"alerts_test.yml: a case for {name}, which alerts.yml does not define")
            (firing if case.get("exp_alerts") else quiet).add(name)
    missing = [f"{a} ({'firing' if a not in firing else 'not firing'})"
               for a in sorted(alerts) if a not in firing or a not in quiet]
    if missing:
        fail(f"alerts_test.yml lacks a case for: {', '.join(missing)}")
    ok(f"alerts_test.yml: each of the {len(alerts)} alerts fires in one case and not in another")

    with open(dashboard_path) as f:
        dashboard = json.load(f)
    panels = {p["id"]: p for p in dashboard_panels(dashboard)}
    link = re.compile(r"^/d/(?P<uid>[A-Za-z0-9_-]+)/[a-z0-9-]+\?viewPanel=(?P<id>\d+)$")
    for name, rule in alerts.items():
        where = f"alert {name}"
        if not re.fullmatch(r"\d+[smhd]", str(rule.get("for", ""))):
            fail(f"{where}: no `for:` duration")
        severity = rule.get("labels", {}).get("severity")
        if severity not in ("critical", "warning"):
            fail(f"{where}: severity {severity!r}, not critical or warning")
        notes = rule.get("annotations", {})
        for key in ("summary", "description", "dashboard"):
            if not str(notes.get(key, "")).strip():
                fail(f"{where}: no {key} annotation")
        m = link.match(notes["dashboard"])
        if not m:
            fail(f"{where}: dashboard {notes['dashboard']!r} is not /d/<uid>/<slug>?viewPanel=<id>")
        if m.group("uid") != dashboard["uid"]:
            fail(f"{where}: dashboard uid {m.group('uid')}, the dashboard's is {dashboard['uid']}")
        panel = panels.get(int(m.group("id")))
        if panel is None or panel.get("type") == "row":
            fail(f"{where}: panel {m.group('id')} is not a panel of {dashboard_path}")
        shown = set()
        for t in panel.get("targets", []):
            shown |= promql_metric_names(t["expr"])
        used = promql_metric_names(rule["expr"])
        if not used & shown:
            fail(f"{where}: panel {panel['id']} ({panel['title']}) shows {sorted(shown)}, "
                 f"none of the alert's {sorted(used)}")
        for k in [k for k, c in enumerate(rule["expr"]) if c == "/"]:
            if not re.match(r"\s*clamp_min\(", rule["expr"][k + 1:]):
                fail(f"{where}: a division whose denominator is not clamp_min(...): "
                     f"{rule['expr'][k:k + 60]!r}")
    ok("every alert: for, severity, summary, description, clamp_min denominators, and a "
       "dashboard link to a panel showing its metrics")
    print(f"{passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
