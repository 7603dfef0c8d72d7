#!/usr/bin/env python3
"""The Kubernetes manifests of a fleet (deploy/kustomization.yaml, deploy/k8s/) render and hold
together (ctest deploy_k8s_manifests), offline: no API server.

* `kubectl kustomize DEPLOY_DIR` renders (kubectl: Debian's kubernetes-client, or any on PATH);
* Debian's yamllint passes on the sources (line length 110, as the repository's YAML);
* every rendered object validates against the Kubernetes API's JSON schemas (k8s_validate.js, the
  npm package kubernetes-models: types, required fields, enums, formats), and a copy with a wrong
  type is refused, so the validator is known to check;
* the rendered objects: a Deployment of 3 routerd with a gRPC readiness probe on router.v1.Router and
  a gRPC liveness probe on the whole server (never on Redis), a PodDisruptionBudget whose selector
  matches the pods, a Redis StatefulSet that mounts the redis.conf ConfigMap; the redis.conf data is
  deploy/redis.conf (no eviction, append-only file, a password include), and the routerd ConfigMap
  selects the Redis ledger at the StatefulSet's stable name.

usage: k8s_manifests_test.py DEPLOY_DIR
Exits 77 (skipped) when kubectl, yamllint, node or kubernetes-models is missing, saying which.
"""

import copy
import json
import os
import shutil
import subprocess
import sys

import yaml


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def main():
    deploy = sys.argv[1]
    for tool in ("kubectl", "yamllint", "node", "npm"):
        if shutil.which(tool) is None:
            print(f"SKIP: {tool} not installed (deploy/install-deps.sh)")
            return 77
    r = subprocess.run(["kubectl", "kustomize", deploy], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail(f"kubectl kustomize {deploy}: {r.stderr}")
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    print(f"PASS: kubectl kustomize renders {len(docs)} objects")
    sources = [os.path.join(deploy, "kustomization.yaml")] + sorted(
        os.path.join(deploy, "k8s", f) for f in os.listdir(os.path.join(deploy, "k8s")))
    lint = subprocess.run(["yamllint", "-d", "{extends: default, rules: {line-length: {max: 110}, "
                           "document-start: disable, comments: {min-spaces-from-content: 1}}}"]
                          + sources, capture_output=True, text=True, timeout=60)
    if lint.returncode != 0:
        fail(f"yamllint:\n{lint.stdout}{lint.stderr}")
    print(f"PASS: yamllint on {len(sources)} files")

    npm_root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=60)
    env = dict(os.environ, NODE_PATH=npm_root.stdout.strip())
    validator = os.path.join(os.path.dirname(os.path.abspath(__file__)), "k8s_validate.js")

    def validate(objects):
        return subprocess.run(["node", validator], input=json.dumps(objects), env=env,
                              capture_output=True, text=True, timeout=120)

    v = validate(docs)
    if v.returncode == 77:
        print(f"SKIP: {v.stdout.strip()}")
        return 77
    if v.returncode != 0:
        fail(f"the rendered objects do not validate:\n{v.stdout}{v.stderr}")
    print(f"PASS: {len(docs)} objects validate against the Kubernetes API schemas")
    broken = copy.deepcopy(docs)
    for d in broken:
        if d["kind"] == "Deployment":
            d["spec"]["replicas"] = "3"
    v = validate(broken)
    if v.returncode != 1 or "spec/replicas must be integer" not in v.stdout:
        fail(f"the validator accepts a Deployment whose replicas is a string:\n{v.stdout}{v.stderr}")
    print("PASS: the validator refuses a Deployment whose replicas is a string")

    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    dep = by_kind["Deployment"][0]
    if dep["spec"]["replicas"] != 3:
        fail("the routerd Deployment does not run 3 replicas")
    pod = dep["spec"]["template"]
    c = pod["spec"]["containers"][0]
    if c["readinessProbe"].get("grpc", {}).get("service") != "router.v1.Router":
        fail("readiness is not a gRPC probe of router.v1.Router")
    if "grpc" not in c["livenessProbe"] or c["livenessProbe"]["grpc"].get("service", ""):
        fail("liveness is not a gRPC probe of the whole server")
    pdb = by_kind["PodDisruptionBudget"][0]
    labels = pod["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in pdb["spec"]["selector"]["matchLabels"].items()):
        fail("the PodDisruptionBudget does not select the routerd pods")
    sts = by_kind["StatefulSet"][0]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    maps = {m["metadata"]["name"]: m for m in by_kind["ConfigMap"]}
    redis_map = volumes["config"]["configMap"]["name"]
    conf = maps[redis_map]["data"]["redis.conf"]
    with open(os.path.join(deploy, "redis.conf")) as f:
        if conf != f.read():
            fail("the redis.conf ConfigMap is not deploy/redis.conf")
    for line in ("maxmemory-policy noeviction", "appendonly yes",
                 "include /etc/redis/routerd-ledger-auth.conf"):
        if line not in conf.splitlines():
            fail(f"redis.conf lacks '{line}'")
    config_map = next(v["configMap"]["name"] for v in pod["spec"]["volumes"] if "configMap" in v)
    cfg = yaml.safe_load(maps[config_map]["data"]["routerd.yaml"])
    svc = sts["spec"]["serviceName"]
    if cfg["ledger"]["backend"] != "redis" or \
            not cfg["ledger"]["redis"]["address"].startswith(f"{sts['metadata']['name']}-0.{svc}."):
        fail(f"routerd's ledger does not point at the Redis StatefulSet: {cfg['ledger']}")
    print("PASS: Deployment of 3 with gRPC probes, PodDisruptionBudget, Redis StatefulSet with "
          "deploy/redis.conf, routerd on the Redis ledger")
    return 0


if __name__ == "__main__":
    sys.exit(main())
