#!/usr/bin/env python3
"""A live routerd's /metrics passes `promtool check metrics` (ctest deploy_metrics_promtool).

Starts routerd on the shipped configuration (free ports, a temp dir), sends every kind of call
with routerctl, then lints the scraped text with promtool: any finding (naming, units, help, type)
fails. Also checks that router_ledger_degraded is exported as a gauge at 0 and that every family
routerd exports is in the metric table of deploy/README.md.

usage: metrics_promtool_test.py ROUTERD ROUTERCTL CONFIG ARTIFACT README
Exits 77 (skipped) when the estimator artifact does not exist.
"""

import os
import re
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from monitoring_support import Processes, Routerd, fail, send_traffic  # noqa: E402


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    routerd, ctl, config, artifact, readme = sys.argv[1:]
    if not os.path.isfile(artifact):
        print(f"SKIP: estimator artifact {artifact} not found (router_train writes it)")
        return 77
    if subprocess.run(["sh", "-c", "command -v promtool"], capture_output=True).returncode != 0:
        fail("promtool missing (deploy/install-deps.sh installs Debian's prometheus)")
    procs = Processes()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            r = Routerd(procs, routerd, config, artifact, tmp)
            send_traffic(ctl, r, tmp, "lint")
            text = r.scrape()
        finally:
            procs.stop_all()

    families = re.findall(r"^# TYPE (router_\S+) (\S+)$", text, re.M)
    if len(families) < 20:
        fail(f"only {len(families)} router_ families exported:\n{text}")
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
    findings = (lint.stdout + lint.stderr).strip()
    if lint.returncode != 0 or findings:
        fail(f"promtool check metrics (exit {lint.returncode}):\n{findings}")
    print(f"PASS: promtool check metrics: no finding on {len(families)} router_ families "
          f"({len(text.splitlines())} lines)")

    if ("router_ledger_degraded", "gauge") not in families or \
            not re.search(r"^router_ledger_degraded 0$", text, re.M):
        fail("router_ledger_degraded is not exported as a gauge at 0")
    print("PASS: router_ledger_degraded exported as a gauge, 0 for the in-process ledger")

    with open(readme) as f:
        documented = set(re.findall(r"^\| `(router_[a-z_]+)` \|", f.read(), re.M))
    undocumented = sorted(name for name, _ in families if name not in documented)
    if undocumented:
        fail(f"exported but not in {readme}'s metric table: {', '.join(undocumented)}")
    print(f"PASS: every exported family is in the metric table of {os.path.basename(readme)}")
    print("3 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
