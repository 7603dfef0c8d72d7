"""Checks deploy/envoy/envoy.yaml against what routerd's ext_proc service expects
(docs/envoy_ext_proc.md) and against deploy/routerd.yaml (its `gateway:` section). Envoy itself is in neither Debian nor
npm, so this reads the file; it does not run Envoy (deploy/envoy/README.md says what else was
checked).

    /usr/bin/python3 tests/deploy/envoy_config_test.py deploy/envoy/envoy.yaml deploy/routerd.yaml
"""

import json
import re
import sys
import unittest

import yaml

MODEL_HEADER = "x-gateway-model-name"     # server/gateway GatewayOptions::model_header default
MAX_BODY_BYTES = 4 << 20                  # server/gateway RequestBodyOptions::max_body_bytes default
DECISION_TIMEOUT_MS = 500                 # server/config.h GatewayConfig::decision_timeout default
EXPECTED_MODE = {"request_header_mode": "SEND", "request_body_mode": "BUFFERED",
                 "request_trailer_mode": "SKIP", "response_header_mode": "SEND",
                 "response_body_mode": "STREAMED", "response_trailer_mode": "SKIP"}


def seconds(duration):
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", duration)
    if not match:
        raise ValueError(f"not a duration: {duration!r}")
    return float(match.group(1))


class EnvoyConfigTest(unittest.TestCase):
    envoy_path = routerd_path = None

    @classmethod
    def setUpClass(cls):
        with open(cls.envoy_path) as f:
            cls.config = yaml.safe_load(f)
        with open(cls.routerd_path) as f:
            cls.routerd = yaml.safe_load(f)
        listeners = cls.config["static_resources"]["listeners"]
        [cls.listener] = listeners
        [chain] = cls.listener["filter_chains"]
        [hcm] = chain["filters"]
        cls.hcm = hcm["typed_config"]
        cls.filters = cls.hcm["http_filters"]
        cls.clusters = {c["name"]: c for c in cls.config["static_resources"]["clusters"]}
        cls.gateway = cls.routerd.get("gateway") or {}

    def ext_proc(self):
        [f] = [f for f in self.filters if f["name"] == "envoy.filters.http.ext_proc"]
        return f["typed_config"]

    def test_ext_proc_runs_before_the_router(self):
        names = [f["name"] for f in self.filters]
        self.assertEqual(names[-1], "envoy.filters.http.router")
        self.assertLess(names.index("envoy.filters.http.ext_proc"), len(names) - 1)
        self.assertTrue(self.ext_proc()["@type"].endswith("ext_proc.v3.ExternalProcessor"))

    def test_processing_mode_is_the_one_the_service_expects(self):
        ext = self.ext_proc()
        self.assertEqual(ext["processing_mode"], EXPECTED_MODE)
        self.assertIs(ext["failure_mode_allow"], False)
        self.assertIs(ext["allow_mode_override"], True)
        self.assertIs(ext["mutation_rules"]["disallow_is_error"], True)

    def test_message_timeout_leaves_room_for_a_batch(self):
        # The body's answer waits for a decision: at most one batch window + solve + margin when
        # nothing is queued; ten times that leaves room for queueing behind other batches.
        ext = self.ext_proc()
        batch = self.routerd["batching"]["max_batch_delay_ms"] + self.routerd["policy"][
            "time_limit_ms"] + self.routerd["batching"]["solve_margin_ms"]
        timeout = seconds(ext["message_timeout"])
        self.assertGreater(timeout, 10 * batch / 1000.0)
        # routerd answers (504 at worst) before Envoy gives up on the message.
        self.assertGreater(timeout * 1000,
                           self.gateway.get("decision_timeout_ms", DECISION_TIMEOUT_MS))
        self.assertGreaterEqual(seconds(ext["max_message_timeout"]), timeout)

    def test_routerd_cluster_speaks_http2(self):
        cluster = self.clusters[self.ext_proc()["grpc_service"]["envoy_grpc"]["cluster_name"]]
        options = cluster["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        self.assertIn("http2_protocol_options", options["explicit_http_config"])
        [endpoint] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        self.assertEqual(f"{address['address']}:{address['port_value']}",
                         self.routerd["listen"])

    def test_routes_match_routerd_models_on_the_model_header(self):
        [host] = self.hcm["route_config"]["virtual_hosts"]
        *model_routes, fallback = host["routes"]
        routerd_models = {m["name"] for m in self.routerd["models"]}
        self.assertTrue(model_routes)
        seen = set()
        for route in model_routes:
            [header] = route["match"]["headers"]
            self.assertEqual(header["name"], self.gateway.get("model_header", MODEL_HEADER))
            model = header["string_match"]["exact"]
            self.assertIn(model, routerd_models, "a route for a model routerd does not know")
            self.assertNotIn(model, seen, "two routes for one model")
            seen.add(model)
            self.assertIn(route["route"]["cluster"], self.clusters)
        # routerd chooses among exactly the models routed here (gateway.models).
        self.assertEqual(set(self.gateway.get("models") or []), seen)
        # The fallback refuses, with an OpenAI-style body.
        self.assertEqual(fallback["match"], {"prefix": "/"})
        self.assertEqual(fallback["direct_response"]["status"], 404)
        body = json.loads(fallback["direct_response"]["body"]["inline_string"])
        self.assertEqual(body["error"]["code"], "model_not_found")

    def test_buffer_limit_is_within_routerd_body_limit(self):
        limit = (self.gateway.get("request") or {}).get("max_body_bytes", MAX_BODY_BYTES)
        self.assertLessEqual(self.listener["per_connection_buffer_limit_bytes"], limit)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} ENVOY_YAML ROUTERD_YAML")
    EnvoyConfigTest.envoy_path, EnvoyConfigTest.routerd_path = sys.argv[1:3]
    unittest.main(argv=sys.argv[:1])
