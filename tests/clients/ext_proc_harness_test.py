"""Tests of clients/python/ext_proc_harness.py (run by ctest as ext_proc_harness).

Its command line, and its side of the ext_proc protocol against small fake processors defined
here: the one that rewrites the model the way routerd does, one that answers with an immediate
response, one that closes the stream cleanly, one that breaks the protocol, and no processor at
all. ext_proc_routerd_test.py runs the harness against routerd itself.

    PYTHONPATH=<build>/python:clients/python /usr/bin/python3 tests/clients/ext_proc_harness_test.py
"""

import concurrent.futures
import contextlib
import io
import json
import os
import subprocess
import sys
import unittest

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from envoy.type.v3 import http_status_pb2

import ext_proc_harness

HARNESS = ext_proc_harness.__file__


def set_header(key, value):
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, raw_value=value.encode()),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)


class RewritingProcessor(ep_grpc.ExternalProcessorServicer):
    """Routes "auto" to gpt-4o-mini: collects the request body, answers earlier chunks with
    clear_body and the last with the rewritten body, the model header and clear_route_cache;
    records the bodies it saw."""

    def __init__(self):
        self.seen = []

    def Process(self, requests, context):
        request_body, response_body = b"", b""
        for request in requests:
            kind = request.WhichOneof("request")
            self.seen.append(kind)
            if kind == "request_headers":
                yield ep.ProcessingResponse(request_headers=ep.HeadersResponse())
            elif kind == "request_body":
                request_body += request.request_body.body
                if not request.request_body.end_of_stream:
                    yield ep.ProcessingResponse(request_body=ep.BodyResponse(
                        response=ep.CommonResponse(
                            body_mutation=ep.BodyMutation(clear_body=True))))
                    continue
                self.request_body = request_body
                body = json.loads(request_body)
                body["model"] = "gpt-4o-mini"
                new_body = json.dumps(body).encode()
                yield ep.ProcessingResponse(request_body=ep.BodyResponse(
                    response=ep.CommonResponse(
                        header_mutation=ep.HeaderMutation(set_headers=[
                            set_header("x-gateway-model-name", "gpt-4o-mini"),
                            set_header("content-length", str(len(new_body)))]),
                        body_mutation=ep.BodyMutation(body=new_body),
                        clear_route_cache=True)))
            elif kind == "response_headers":
                yield ep.ProcessingResponse(response_headers=ep.HeadersResponse())
            elif kind == "response_body":
                response_body += request.response_body.body
                if request.response_body.end_of_stream:
                    self.response_body = response_body
                yield ep.ProcessingResponse(response_body=ep.BodyResponse())


class NoResponseProcessor(RewritingProcessor):
    """Like RewritingProcessor, but asks (mode_override, which replaces the whole mode) for the
    request body and nothing of the response."""

    def Process(self, requests, context):
        mode = processing_mode_pb2.ProcessingMode
        for response in super().Process(requests, context):
            if response.HasField("request_headers"):
                response.mode_override.CopyFrom(mode(
                    request_body_mode=mode.BUFFERED, response_header_mode=mode.SKIP,
                    response_body_mode=mode.NONE))
            yield response


class RefusingProcessor(ep_grpc.ExternalProcessorServicer):
    """Answers the request headers with a 429 immediate response."""

    def Process(self, requests, context):
        for _ in requests:
            yield ep.ProcessingResponse(immediate_response=ep.ImmediateResponse(
                status=http_status_pb2.HttpStatus(code=http_status_pb2.TooManyRequests),
                headers=ep.HeaderMutation(set_headers=[set_header("retry-after", "3")]),
                body=b'{"error":{"message":"budget exhausted"}}', details="over_budget"))
            return


class ClosingProcessor(ep_grpc.ExternalProcessorServicer):
    """Closes the stream cleanly on the first message: Envoy then continues without it."""

    def Process(self, requests, context):
        next(requests)
        return iter(())


class WrongKindProcessor(ep_grpc.ExternalProcessorServicer):
    """Answers request headers with a response_body message."""

    def Process(self, requests, context):
        for _ in requests:
            yield ep.ProcessingResponse(response_body=ep.BodyResponse())


@contextlib.contextmanager
def serving(servicer):
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
    ep_grpc.add_ExternalProcessorServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def run_harness(*argv):
    """main(argv) in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = ext_proc_harness.main(list(argv))
        except SystemExit as e:  # argparse
            code = e.code
    return code, out.getvalue(), err.getvalue()


class CommandLineTest(unittest.TestCase):
    def test_help_runs_as_a_program(self):
        result = subprocess.run([sys.executable, HARNESS, "--help"], capture_output=True,
                                text=True, env=os.environ, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        for flag in ("--address", "--request-body-mode", "--chunks", "--response-format",
                     "--no-usage", "--allow-mode-override", "Exit codes"):
            self.assertIn(flag, result.stdout)

    def test_bad_arguments_exit_2(self):
        for argv in (["--chunks", "0"], ["--usage", "12"], ["--usage", "-1,3"],
                     ["--header", "novalue"], ["--request-body-mode", "duplex"],
                     ["--body", "x", "--prompt", "y"], ["--timeout", "0"]):
            code, _, err = run_harness(*argv)
            self.assertEqual(code, 2, argv)
            self.assertTrue(err, argv)

    def test_no_processor_exits_1(self):
        # A port nothing listens on: bind one and close it.
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        code, _, err = run_harness("--address", f"127.0.0.1:{port}", "--timeout", "2")
        self.assertEqual(code, 1)
        self.assertIn("the stream failed", err)


class ProtocolTest(unittest.TestCase):
    def test_rewrite_streamed_request_and_sse_response(self):
        processor = RewritingProcessor()
        with serving(processor) as address:
            code, out, err = run_harness(
                "--address", address, "--prompt", "caf\u00e9 \U0001F600 question", "--stream",
                "--request-body-mode", "streamed", "--chunks", "5", "--response-chunks", "4",
                "--user", "tenant-a")
        self.assertEqual(code, 0, err)
        self.assertEqual(processor.seen, ["request_headers"] + ["request_body"] * 5 +
                         ["response_headers"] + ["response_body"] * 4)
        sent = json.loads(processor.request_body)  # split at byte offsets, joined intact
        self.assertEqual(sent["messages"][0]["content"], "caf\u00e9 \U0001F600 question")
        self.assertEqual(sent["model"], "auto")
        self.assertIn("body model: gpt-4o-mini", out)
        self.assertIn('"x-gateway-model-name": "gpt-4o-mini"', out)
        self.assertIn("route cache cleared: True", out)
        stream = processor.response_body.decode()
        self.assertTrue(stream.endswith("data: [DONE]\n\n"))
        self.assertIn('"usage": {"prompt_tokens": 12, "completion_tokens": 7', stream)
        self.assertIn('"model": "gpt-4o-mini"', stream)  # the fake upstream answers as the model

    def test_buffered_request_and_json_response_without_usage(self):
        processor = RewritingProcessor()
        with serving(processor) as address:
            code, out, err = run_harness("--address", address, "--no-usage", "--json",
                                         "--response-body-mode", "buffered")
        self.assertEqual(code, 0, err)
        self.assertEqual(processor.seen, ["request_headers", "request_body", "response_headers",
                                          "response_body"])
        body = json.loads(processor.response_body)
        self.assertNotIn("usage", body)
        messages = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        self.assertEqual([m["direction"] for m in messages], [">>", "<<"] * 4)
        self.assertTrue(messages[0]["message"]["request_headers"]["headers"]["headers"])

    def test_mode_override_is_honoured_unless_disallowed(self):
        processor = NoResponseProcessor()
        with serving(processor) as address:
            code, out, err = run_harness("--address", address)
        self.assertEqual(code, 0, err)
        self.assertEqual(processor.seen, ["request_headers", "request_body"])
        self.assertIn("mode override: response_header_mode: SKIP request_body_mode: BUFFERED", out)
        processor = NoResponseProcessor()
        with serving(processor) as address:
            code, out, err = run_harness("--address", address, "--no-allow-mode-override")
        self.assertEqual(code, 0, err)
        self.assertEqual(processor.seen, ["request_headers", "request_body", "response_headers",
                                          "response_body", "response_body", "response_body"])

    def test_immediate_response(self):
        with serving(RefusingProcessor()) as address:
            code, out, err = run_harness("--address", address)
        self.assertEqual(code, 0, err)
        self.assertIn("immediate response: HTTP 429, details 'over_budget'", out)
        self.assertIn("header retry-after: 3", out)

    def test_clean_close_means_continue_without_the_processor(self):
        with serving(ClosingProcessor()) as address:
            code, out, err = run_harness("--address", address)
        self.assertEqual(code, 0, err)
        self.assertIn("closed the stream cleanly", out)

    def test_wrong_answer_kind_exits_3(self):
        with serving(WrongKindProcessor()) as address:
            code, _, err = run_harness("--address", address)
        self.assertEqual(code, 3)
        self.assertIn("a request_headers message was answered with response_body", err)


if __name__ == "__main__":
    unittest.main()
