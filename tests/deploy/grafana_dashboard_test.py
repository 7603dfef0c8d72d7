#!/usr/bin/env python3
"""deploy/grafana/routerd.json follows Grafana's conventions, and every PromQL expression of the
dashboard and of deploy/prometheus/alerts.yml names only series a live routerd exports
(ctest deploy_grafana_dashboard).

  * JSON; `id: null`; a fixed `uid`; an explicit `schemaVersion`; a datasource template variable
    of type prometheus, and every panel and query on `${datasource}` (no datasource ids); panels
    under rows; unique panel ids; every panel has queries with an expression;
  * the concerns the dashboard is for are there: traffic and errors by method, decisions by mode,
    latency quantiles, solver status and gap, spend against budget, slots per model, queue depth,
    ledger, learning from outcomes;
  * every expression (panel queries, template variable queries, alert rules) parses (promtool
    check rules on them as recording rules, Grafana's variables replaced) and names only series
    of routerd's /metrics after traffic (histograms as _bucket, _sum, _count). The one exception
    is Prometheus' own `up` (RouterDown and the "routerd up" panel).

usage: grafana_dashboard_test.py ROUTERD ROUTERCTL CONFIG ARTIFACT DASHBOARD_JSON ALERTS_YML
Exits 77 (skipped) when the estimator artifact does not exist.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from monitoring_support import (Processes, Routerd, exported_names, fail,  # noqa: E402
                                grafana_to_promql, promql_metric_names, send_traffic)

PROMETHEUS_OWN = {"up"}
DS_REFS = ({"type": "prometheus", "uid": "${datasource}"}, {"type": "prometheus", "uid": "$datasource"},
           "${datasource}", "$datasource")
# Metrics whose presence on the dashboard stands for each concern it must show.
CONCERNS = {
    "traffic by method": "router_requests_total",
    "refusals by reason": "router_rejected_total",
    "decisions by mode": "router_decisions_total",
    "request latency quantiles": "router_request_duration_seconds_bucket",
    "solver status": "router_solves_total",
    "solver gap": "router_solve_gap_ratio_bucket",
    "solve time": "router_solve_duration_seconds_bucket",
    "spend": "router_predicted_spend_usd_total",
    "budget": "router_budget_remaining_usd",
    "slots per model": "router_model_capacity_utilization_ratio",
    "queue depth": "router_queue_depth",
    "ledger": "router_ledger_degraded",
    "outcomes reported": "router_outcomes_total",
    "learned quality": "router_learning_quality",
    "exploration share": "router_learning_explored_decisions_total",
    "outcomes not learned from": "router_learning_outcomes_dropped_total",
}

passed = 0


def ok(message):
    global passed
    passed += 1
    print(f"PASS: {message}", flush=True)


def check_conventions(d):
    """Returns [(where, expr)] of every PromQL expression of the dashboard."""
    if d.get("id", "missing") is not None:
        fail(f"id is {d.get('id', 'missing')!r}, not null (Grafana assigns it on import)")
    if not isinstance(d.get("uid"), str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", d["uid"]):
        fail(f"uid {d.get('uid')!r} is not a fixed id of at most 40 characters")
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        fail(f"schemaVersion {d.get('schemaVersion')!r}: an explicit version >= 36 is needed")
    if not d.get("title"):
        fail("no title")
    variables = d.get("templating", {}).get("list", [])
    ds_vars = [v for v in variables if v.get("type") == "datasource"]
    if len(ds_vars) != 1 or ds_vars[0].get("name") != "datasource" or ds_vars[0].get("query") != "prometheus":
        fail(f"want one datasource variable `datasource` of type prometheus, have {ds_vars}")
    exprs = []
    for v in variables:
        if v.get("type") == "query":
            if v.get("datasource") not in DS_REFS:
                fail(f"variable {v['name']}: datasource {v.get('datasource')!r}, not ${{datasource}}")
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.+),\s*([a-zA-Z_]\w*)\)", q)
            if not m:
                fail(f"variable {v['name']}: query {q!r} is not label_values(selector, label)")
            exprs.append((f"variable {v['name']}", m.group(1)))

    panels = d.get("panels", [])
    if not panels or panels[0].get("type") != "row":
        fail("the first panel is not a row: panels must sit under rows per concern")
    rows = [p for p in panels if p.get("type") == "row"]
    if len(rows) < 4:
        fail(f"{len(rows)} rows; want one per concern (traffic, decisions, solver, spend, capacity)")
    ids = set()
    flat = []
    for p in panels:
        flat.append(p)
        flat.extend(p.get("panels", []))
    for p in flat:
        where = f"panel {p.get('id')} ({p.get('title')})"
        if not isinstance(p.get("id"), int) or p["id"] in ids:
            fail(f"{where}: id missing or not unique")
        ids.add(p["id"])
        if not p.get("title") or "gridPos" not in p:
            fail(f"{where}: no title or gridPos")
        if p.get("type") == "row":
            continue
        if p.get("datasource") not in DS_REFS:
            fail(f"{where}: datasource {p.get('datasource')!r}, not the ${{datasource}} variable")
        targets = p.get("targets", [])
        if not targets:
            fail(f"{where}: no query")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            fail(f"{where}: refIds {refs} missing or repeated")
        for t in targets:
            if t.get("datasource", DS_REFS[0]) not in DS_REFS:
                fail(f"{where}: query {t['refId']} datasource {t['datasource']!r}")
            if not t.get("expr", "").strip():
                fail(f"{where}: query {t['refId']} has no expression")
            exprs.append((f"{where} query {t['refId']}", t["expr"]))
    text = json.dumps(d)
    for hard in re.findall(r'"datasource":\s*"(?!\$)[^"]*"', text):
        fail(f"a hard-coded datasource: {hard}")
    ok(f"conventions: id null, uid {d['uid']}, schemaVersion {d['schemaVersion']}, "
       f"${{datasource}} everywhere, {len(rows)} rows, {len(flat) - len(rows)} panels")
    return exprs


def check_syntax(exprs, tmp):
    """promtool parses every expression (as the expr of a recording rule)."""
    rules = {"groups": [{"name": "syntax", "rules": [
        {"record": f"syntax:expr{k}", "expr": grafana_to_promql(e)} for k, (_, e) in enumerate(exprs)]}]}
    path = os.path.join(tmp, "syntax.yml")
    with open(path, "w") as f:
        yaml.safe_dump(rules, f)
    r = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        fail(f"promtool check rules on the expressions:\n{r.stdout}{r.stderr}\n"
             + "\n".join(f"  expr{k}: {w}: {e}" for k, (w, e) in enumerate(exprs)))


def main():
    if len(sys.argv) != 7:
        print(__doc__, file=sys.stderr)
        return 2
    routerd, ctl, config, artifact, dashboard_path, alerts_path = sys.argv[1:]
    if not os.path.isfile(artifact):
        print(f"SKIP: estimator artifact {artifact} not found (router_train writes it)")
        return 77
    with open(dashboard_path) as f:
        try:
            dashboard = json.load(f)
        except json.JSONDecodeError as e:
            fail(f"{dashboard_path}: not JSON: {e}")
    exprs = check_conventions(dashboard)
    dashboard_names = set()
    for _, e in exprs:
        dashboard_names |= promql_metric_names(e)
    missing = [f"{c} ({m})" for c, m in CONCERNS.items() if m not in dashboard_names]
    if missing:
        fail(f"the dashboard does not show: {', '.join(missing)}")
    ok(f"the dashboard shows {', '.join(CONCERNS)}")

    with open(alerts_path) as f:
        alerts = yaml.safe_load(f)
    all_exprs = exprs + [(f"alert {r['alert']}", r["expr"])
                         for g in alerts["groups"] for r in g["rules"] if "alert" in r]
    procs = Processes()
    with tempfile.TemporaryDirectory() as tmp:
        check_syntax(all_exprs, tmp)
        ok(f"promtool parses all {len(all_exprs)} expressions (dashboard and alerts)")
        try:
            r = Routerd(procs, routerd, config, artifact, tmp)
            send_traffic(ctl, r, tmp, "names")
            exported = exported_names(r.scrape())
        finally:
            procs.stop_all()

    bad = []
    for where, e in all_exprs:
        names = promql_metric_names(e)
        if not names:
            bad.append(f"{where}: selects no metric: {e}")
        for n in sorted(names - exported - PROMETHEUS_OWN):
            bad.append(f"{where}: {n} is not a series routerd exports")
    if bad:
        fail("\n  ".join(["PromQL names series routerd does not export:"] + bad))
    ok(f"the {len(all_exprs)} expressions name only the {len(exported)} series routerd exports "
       f"(and Prometheus' up)")
    print(f"{passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
