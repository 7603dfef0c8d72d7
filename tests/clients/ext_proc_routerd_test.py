"""The operators' ext_proc harness (clients/python/ext_proc_harness.py) against a real routerd
(ctest ext_proc_harness_routerd).

Starts routerd on the shipped configuration (deploy/routerd.yaml, free loopback ports, a temp dir),
plays Envoy with the harness for each kind of exchange the example Envoy configuration produces,
checks what the harness reports, and then checks routerd's /metrics: every stream ended with the
expected outcome and the ledger holds nothing (no self-hosted slot in use).

The shipped estimator has per-call costs and no token prices, so routed requests are completed at
their predicted cost (outcome completed_predicted); tests/server/ext_proc_test.cc covers prices.

usage: ext_proc_routerd_test.py ROUTERD CONFIG ARTIFACT
Exits 77 (skipped) when the estimator artifact does not exist.
"""

import contextlib
import io
import json
import os
import re
import sys
import tempfile

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy"))
from monitoring_support import Processes, Routerd, fail  # noqa: E402

import ext_proc_harness  # noqa: E402

POOL = {"gpt-4-1106-preview", "gpt-3.5-turbo-1106", "claude-v1", "claude-v2", "claude-instant-v1",
        "zero-one-ai/Yi-34B-Chat", "meta/code-llama-instruct-34b-chat", "mistralai/mistral-7b-chat",
        "WizardLM/WizardLM-13B-V1.2", "mistralai/mixtral-8x7b-chat", "meta/llama-2-70b-chat"}


def harness(address, *argv):
    """ext_proc_harness.main in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = ext_proc_harness.main(["--address", address, *argv])
    return code, out.getvalue(), err.getvalue()


def field(out, label):
    """The value the summary prints after `label: `."""
    m = re.search(rf"^{re.escape(label)}: (.*)$", out, re.M)
    return m.group(1) if m else None


def routed_model(out):
    """The model routerd chose: the rewritten body's, which must match the model header."""
    headers = json.loads(field(out, "upstream request headers"))
    body_model = field(out, "body model")
    if headers.get("x-gateway-model-name") != body_model:
        fail(f"the model header {headers.get('x-gateway-model-name')!r} is not the body's "
             f"{body_model!r}:\n{out}")
    return body_model


def metric(text, series):
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    routerd, config, artifact = sys.argv[1:]
    if not os.path.isfile(artifact):
        print(f"SKIP: estimator artifact {artifact} not found (router_train writes it)")
        return 77
    procs = Processes()
    passed = 0
    with tempfile.TemporaryDirectory() as tmp:
        try:
            r = Routerd(procs, routerd, config, artifact, tmp)
            address = r.address

            # 1. Buffered alias, JSON response with usage (the shipped defaults of Envoy's side).
            code, out, err = harness(address, "--prompt", "Which gas do plants absorb?",
                                     "--user", "tenant-a")
            if code != 0:
                fail(f"buffered alias: exit {code}\n{out}\n{err}")
            model = routed_model(out)
            if model not in POOL or field(out, "route cache cleared") != "True":
                fail(f"buffered alias: routed to {model!r}, route cache cleared "
                     f"{field(out, 'route cache cleared')}:\n{out}")
            print(f"PASS: buffered alias routed to {model}, header and body agree")
            passed += 1

            # 2. Streamed request body in 7 chunks (boundaries inside the JSON), streamed response.
            code, out, err = harness(address, "--prompt", "caf\u00e9: write a haiku \U0001F600",
                                     "--stream", "--request-body-mode", "streamed", "--chunks", "7",
                                     "--response-chunks", "5")
            if code != 0:
                fail(f"streamed request: exit {code}\n{out}\n{err}")
            model = routed_model(out)
            body = json.loads(field(out, "upstream request body"))
            if (model not in POOL or body["messages"][0]["content"] != "caf\u00e9: write a haiku \U0001F600"
                    or body["stream_options"] != {"include_usage": True}):
                fail(f"streamed request: the forwarded body is wrong:\n{out}")
            print(f"PASS: streamed request in 7 chunks routed to {model}; include_usage asked for")
            passed += 1

            # 3. A named model passes through with the header set to it.
            code, out, err = harness(address, "--model", "gpt-4-1106-preview", "--header",
                                     "x-gateway-model-name=client-choice")
            if code != 0 or routed_model(out) != "gpt-4-1106-preview":
                fail(f"named model: exit {code}\n{out}\n{err}")
            print("PASS: a named model passes through, the client's model header overwritten")
            passed += 1

            # 4. A body that is not JSON: 400 with an OpenAI-style error.
            bad = os.path.join(tmp, "bad.json")
            with open(bad, "w") as f:
                f.write('{"model": "auto", "messages": [')
            code, out, err = harness(address, "--body", bad)
            if code != 0 or "immediate response: HTTP 400" not in out or '"invalid_json"' not in out:
                fail(f"bad body: exit {code}\n{out}\n{err}")
            print("PASS: a body that is not JSON gets an immediate 400 with code invalid_json")
            passed += 1

            # 5. A path routerd does not route: every later phase switched off.
            code, out, err = harness(address, "--path", "/v1/embeddings")
            if code != 0 or "response_header_mode: SKIP" not in (field(out, "mode override") or ""):
                fail(f"other path: exit {code}\n{out}\n{err}")
            print("PASS: /v1/embeddings passes through with every later phase off")
            passed += 1

            # 6. The upstream fails (HTTP 500): the assignment is released.
            code, out, err = harness(address, "--response-status", "500", "--no-usage")
            if code != 0:
                fail(f"upstream error: exit {code}\n{out}\n{err}")
            print("PASS: an upstream 500 runs through")
            passed += 1

            # What routerd recorded: one outcome per stream, nothing left in the ledger.
            text = r.scrape()
            expected = {"completed_predicted": 2, "not_routed": 2, "refused": 1, "released": 1}
            for outcome, count in expected.items():
                got = metric(text, f'router_ext_proc_streams_total{{outcome="{outcome}"}}')
                if got != count:
                    fail(f"router_ext_proc_streams_total{{outcome={outcome}}} is {got}, "
                         f"expected {count}:\n{text}")
            assignments = sum(float(v) for v in
                              re.findall(r"^router_assignments_total\{[^}]*\} (\S+)$", text, re.M))
            if assignments != 3:
                fail(f"{assignments} assignments made, expected 3")
            if metric(text, "router_ext_proc_open_streams") != 0:
                fail("ext_proc streams still open")
            for util in re.findall(r"^router_model_capacity_utilization_ratio\{[^}]*\} (\S+)$",
                                   text, re.M):
                if float(util) != 0:
                    fail(f"a self-hosted slot is still in use:\n{text}")
            if metric(text, 'router_ext_proc_immediate_responses_total{code="400"}') != 1:
                fail("the 400 was not counted")
            print("PASS: 3 assignments, 2 completed and 1 released; no stream open, no slot held")
            passed += 1
        finally:
            procs.stop_all()
    print(f"{passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
