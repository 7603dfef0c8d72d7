"""Plays Envoy's side of the ext_proc protocol against a processor such as routerd.

Opens one envoy.service.ext_proc.v3.ExternalProcessor/Process stream, as Envoy's ext_proc HTTP
filter does for one HTTP request, and sends:
  1. the request headers (with protocol_config: the body modes), then
  2. the request body: one message (--request-body-mode buffered, Envoy's BUFFERED) or --chunks
     messages split at even byte offsets (streamed, Envoy's STREAMED), then
  3. a fake upstream response: headers, then a JSON body or a server-sent-event stream (with
     `usage`, unless --no-usage) in --response-chunks messages.
It prints every message both ways (protobuf text format, or JSON lines with --json), applies the
processor's header and body mutations as Envoy would, and ends with a summary: the model header,
the body's `model` after rewriting, whether the route cache was cleared, any immediate response.

What it cannot show: Envoy's own enforcement of header mutation rules, its route re-selection
after clear_route_cache, buffer limits and timeouts (message_timeout, failure_mode_allow): those
need Envoy itself (deploy/envoy/README.md).

Requirements: Debian's python3-grpcio and python3-protobuf (run with /usr/bin/python3) and the
stubs the build generates into <build>/python (CMake target clients_python_envoy_stubs):

    PYTHONPATH=<build>/python /usr/bin/python3 clients/python/ext_proc_harness.py \\
        --address 127.0.0.1:50051 --prompt "Which gas do plants absorb?" --model auto

Exit codes: 0 the exchange completed (an immediate response or the processor closing the stream
cleanly, which tells Envoy to continue without it, also complete it); 1 the stream failed (the
gRPC status is printed); 2 bad usage; 3 the processor broke the protocol (an answer of the wrong
kind, a missing answer, or an extra one).
"""

import argparse
import json
import queue
import sys

import grpc
from google.protobuf import json_format, text_format

try:
    from envoy.config.core.v3 import base_pb2
    from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
    from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
    from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
except ImportError as e:  # the stubs are generated at build time, not checked in
    raise ImportError(
        "envoy ext_proc stubs not found: put <build>/python on PYTHONPATH "
        "(built by the CMake target clients_python_envoy_stubs)") from e

Mode = processing_mode_pb2.ProcessingMode
BODY_MODES = {"none": Mode.NONE, "streamed": Mode.STREAMED, "buffered": Mode.BUFFERED}
HeaderOption = base_pb2.HeaderValueOption


class ProtocolError(Exception):
    """The processor answered out of turn."""


def split_evenly(data, n):
    """`data` in `n` pieces at even byte offsets (some may be empty); n >= 1."""
    return [data[len(data) * k // n:len(data) * (k + 1) // n] for k in range(n)]


def header_map(headers):
    """A HeaderMap with each value in raw_value, as Envoy sends them; keys lower-cased."""
    return base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=k.lower(), raw_value=v.encode("utf-8")) for k, v in headers])


def apply_header_mutation(headers, mutation):
    """Applies a HeaderMutation to `headers` (a list of (name, value)) as Envoy would, without
    Envoy's mutation rules (which headers it refuses to change)."""
    for option in mutation.set_headers:
        name = option.header.key.lower()
        value = (option.header.raw_value.decode("utf-8", "replace") if option.header.raw_value
                 else option.header.value)
        exists = any(k == name for k, _ in headers)
        action = option.append_action
        if value == "" and not option.keep_empty_value:
            continue
        if action == HeaderOption.ADD_IF_ABSENT and exists:
            continue
        if action == HeaderOption.OVERWRITE_IF_EXISTS and not exists:
            continue
        if action in (HeaderOption.OVERWRITE_IF_EXISTS, HeaderOption.OVERWRITE_IF_EXISTS_OR_ADD):
            headers[:] = [(k, v) for k, v in headers if k != name]
        headers.append((name, value))
    removed = {name.lower() for name in mutation.remove_headers}
    headers[:] = [(k, v) for k, v in headers if k not in removed]


def fake_response_body(response_format, model, usage, chunks_of_text=3):
    """A provider's answer: a chat.completion JSON body, or an SSE stream of chat.completion.chunk
    events (content events with "usage": null when usage is reported, then the usage event, then
    [DONE]). `usage` is (prompt_tokens, completion_tokens) or None."""
    words = ["Plants absorb", " carbon dioxide", " from the air."][:chunks_of_text]
    usage_obj = None
    if usage is not None:
        usage_obj = {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                     "total_tokens": usage[0] + usage[1]}
    if response_format == "json":
        body = {"id": "chatcmpl-harness", "object": "chat.completion", "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "".join(words)}}]}
        if usage_obj is not None:
            body["usage"] = usage_obj
        return json.dumps(body).encode("utf-8")
    events = []
    for k, word in enumerate(words):
        chunk = {"id": "chatcmpl-harness", "object": "chat.completion.chunk", "model": model,
                 "choices": [{"index": 0, "delta": ({"role": "assistant"} if k == 0 else {}) |
                              {"content": word}, "finish_reason": None}]}
        if usage_obj is not None:
            chunk["usage"] = None
        events.append(chunk)
    if usage_obj is not None:
        events.append({"id": "chatcmpl-harness", "object": "chat.completion.chunk", "model": model,
                       "choices": [], "usage": usage_obj})
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return text.encode("utf-8")


class Exchange:
    """One Process stream: send() queues a ProcessingRequest, answer() waits for the next
    ProcessingResponse (None once the processor has closed the stream cleanly)."""

    def __init__(self, stub, timeout, printer):
        self._outbox = queue.Queue()
        self._responses = stub.Process(iter(self._outbox.get, None), timeout=timeout)
        self._print = printer
        self.closed_by_processor = False

    def send(self, request):
        self._print(">>", request)
        self._outbox.put(request)

    def answer(self, request_kind):
        """The answer to a request of `request_kind` ("request_headers", ...)."""
        try:
            response = next(self._responses)
        except StopIteration:
            self.closed_by_processor = True
            return None
        self._print("<<", response)
        kind = response.WhichOneof("response")
        if kind not in (request_kind, "immediate_response"):
            raise ProtocolError(f"a {request_kind} message was answered with {kind}")
        return response

    def finish(self):
        """Half-closes the stream; the processor must then end it without another message."""
        self._outbox.put(None)
        if self.closed_by_processor:
            return
        for response in self._responses:
            self._print("<<", response)
            raise ProtocolError(
                f"an answer ({response.WhichOneof('response')}) nobody asked for")


def make_printer(as_json):
    def printer(direction, message):
        if as_json:
            print(json.dumps({"direction": direction,
                              "message": json_format.MessageToDict(
                                  message, preserving_proto_field_name=True)}))
        else:
            print(direction, text_format.MessageToString(message, as_one_line=True,
                                                         as_utf8=True))
        sys.stdout.flush()
    return printer


def common_of(response):
    """The CommonResponse inside a headers or body answer (None for other kinds)."""
    kind = response.WhichOneof("response")
    inner = getattr(response, kind)
    return inner.response if hasattr(inner, "response") else None


def send_body(exchange, kind, body, mode, chunks, summary):
    """Sends `body` as Envoy would in `mode` (BUFFERED: one message; STREAMED: `chunks`
    messages) and returns the body after the processor's mutations, or None if the processor
    ended the exchange (immediate response or clean close)."""
    pieces = [body] if mode == Mode.BUFFERED else split_evenly(body, chunks)
    for k, piece in enumerate(pieces):
        exchange.send(ep.ProcessingRequest(
            **{kind: ep.HttpBody(body=piece, end_of_stream=k == len(pieces) - 1)}))
    out = []
    for piece in pieces:
        response = exchange.answer(kind)
        if response is None or response.HasField("immediate_response"):
            summary["ended"] = response
            return None
        common = common_of(response)
        if common.clear_route_cache:
            summary["clear_route_cache"] = True
        apply_header_mutation(summary[f"{kind.split('_')[0]}_headers"], common.header_mutation)
        mutation = common.body_mutation.WhichOneof("mutation")
        if mutation == "body":
            out.append(common.body_mutation.body)
        elif mutation == "clear_body":
            out.append(b"")
        else:
            out.append(piece)
    return b"".join(out)


def run(args, stub, printer):
    """Plays one request and its response; returns the summary dict."""
    body, request_format = request_body(args)
    request_mode = BODY_MODES[args.request_body_mode]
    response_mode = BODY_MODES[args.response_body_mode]
    request_headers = [(":method", "POST"), (":path", args.path), (":scheme", "http"),
                       (":authority", args.authority), ("content-type", "application/json"),
                       ("content-length", str(len(body)))] + args.header
    summary = {"request_headers": list(request_headers), "clear_route_cache": False,
               "ended": None, "mode_override": None}
    exchange = Exchange(stub, args.timeout, printer)
    try:
        exchange.send(ep.ProcessingRequest(
            request_headers=ep.HttpHeaders(headers=header_map(request_headers),
                                           end_of_stream=False),
            protocol_config=ep.ProtocolConfiguration(request_body_mode=request_mode,
                                                     response_body_mode=response_mode)))
        response = exchange.answer("request_headers")
        if response is None or response.HasField("immediate_response"):
            summary["ended"] = response
            return summary
        common = common_of(response)
        apply_header_mutation(summary["request_headers"], common.header_mutation)
        summary["clear_route_cache"] |= common.clear_route_cache
        send_response_headers = True
        if response.HasField("mode_override"):
            summary["mode_override"] = response.mode_override
            if args.allow_mode_override:  # Envoy takes the override as a whole mode
                override = response.mode_override
                request_mode = override.request_body_mode
                response_mode = override.response_body_mode
                send_response_headers = override.response_header_mode != Mode.SKIP
        if common.status == ep.CommonResponse.CONTINUE_AND_REPLACE:
            upstream_body = common.body_mutation.body  # no body is sent then
        elif request_mode == Mode.NONE:
            upstream_body = body
        else:
            upstream_body = send_body(exchange, "request_body", body, request_mode,
                                      args.chunks, summary)
            if upstream_body is None:
                return summary
        summary["upstream_body"] = upstream_body
        model = model_of(upstream_body) or dict(summary["request_headers"]).get(
            args.model_header, "unknown")

        # The upstream's answer.
        response_format = args.response_format or ("sse" if request_format.get("stream")
                                                   else "json")
        if args.response_body:
            with open(args.response_body, "rb") as f:
                response_body = f.read()
        else:
            response_body = fake_response_body(response_format, model, args.usage)
        content_type = "text/event-stream" if response_format == "sse" else "application/json"
        summary["response_headers"] = [(":status", str(args.response_status)),
                                       ("content-type", content_type)]
        if response_format == "json":
            summary["response_headers"].append(("content-length", str(len(response_body))))
        if send_response_headers:
            exchange.send(ep.ProcessingRequest(response_headers=ep.HttpHeaders(
                headers=header_map(summary["response_headers"]), end_of_stream=False)))
            response = exchange.answer("response_headers")
            if response is None or response.HasField("immediate_response"):
                summary["ended"] = response
                return summary
            apply_header_mutation(summary["response_headers"],
                                  common_of(response).header_mutation)
        if response_mode != Mode.NONE:
            downstream = send_body(exchange, "response_body", response_body, response_mode,
                                   args.response_chunks, summary)
            if downstream is None:
                return summary
            summary["downstream_body_bytes"] = len(downstream)
        return summary
    finally:
        exchange.finish()
        summary["closed_by_processor"] = exchange.closed_by_processor


def model_of(body):
    try:
        value = json.loads(body)
    except (ValueError, TypeError):
        return None
    return value.get("model") if isinstance(value, dict) else None


def request_body(args):
    """The request body (bytes) and its parsed JSON (or {} if it is not JSON)."""
    if args.body:
        with open(args.body, "rb") as f:
            data = f.read()
    else:
        request = {"model": args.model}
        if args.path.split("?")[0].endswith("/chat/completions"):
            request["messages"] = [{"role": "user", "content": args.prompt}]
        else:
            request["prompt"] = args.prompt
        if args.stream:
            request["stream"] = True
        if args.user:
            request["user"] = args.user
        data = json.dumps(request).encode("utf-8")
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = {}
    return data, parsed if isinstance(parsed, dict) else {}


def print_summary(summary):
    print("== summary")
    ended = summary.get("ended")
    if ended is not None:
        r = ended.immediate_response
        print(f"immediate response: HTTP {r.status.code}, details {r.details!r}, "
              f"body {r.body.decode('utf-8', 'replace')}")
        for option in r.headers.set_headers:
            value = option.header.raw_value.decode("utf-8", "replace") or option.header.value
            print(f"  header {option.header.key}: {value}")
    if summary.get("closed_by_processor"):
        print("the processor closed the stream cleanly: Envoy continues without it")
    headers = dict(summary["request_headers"])
    print("upstream request headers:", json.dumps(headers, ensure_ascii=False))
    if "upstream_body" in summary:
        print("upstream request body:",
              summary["upstream_body"].decode("utf-8", "replace"))
        print("body model:", model_of(summary["upstream_body"]))
    print("route cache cleared:", summary["clear_route_cache"])
    if summary.get("mode_override") is not None:
        print("mode override:", text_format.MessageToString(summary["mode_override"],
                                                           as_one_line=True))
    if "response_headers" in summary:
        print("downstream response headers:",
              json.dumps(dict(summary["response_headers"]), ensure_ascii=False))


def parse_usage(text):
    try:
        prompt, completion = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected PROMPT_TOKENS,COMPLETION_TOKENS (e.g. 12,7), got {text!r}") from None
    if prompt < 0 or completion < 0:
        raise argparse.ArgumentTypeError(f"token counts must be >= 0, got {text!r}")
    return prompt, completion


def parse_header(text):
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.lower(), value


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Exit codes: 0 completed, 1 the stream failed, 2 bad usage, "
               "3 the processor broke the protocol.")
    parser.add_argument("--address", default="127.0.0.1:50051",
                        help="the processor's gRPC address (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="deadline of the whole stream, seconds (default %(default)s)")
    req = parser.add_argument_group("request")
    req.add_argument("--path", default="/v1/chat/completions",
                     help=":path (default %(default)s)")
    req.add_argument("--authority", default="gateway.local", help=":authority")
    source = req.add_mutually_exclusive_group()
    source.add_argument("--body", metavar="FILE", help="send this file as the request body")
    source.add_argument("--prompt", default="Which gas do plants absorb?",
                        help="build an OpenAI request with this prompt (default %(default)r)")
    req.add_argument("--model", default="auto", help="`model` of the built request (default "
                     "%(default)s, the routing alias)")
    req.add_argument("--stream", action="store_true", help="set stream: true in the built request")
    req.add_argument("--user", help="`user` (the tenant) of the built request")
    req.add_argument("--header", action="append", type=parse_header, default=[],
                     metavar="NAME=VALUE", help="an extra request header (repeatable)")
    req.add_argument("--request-body-mode", choices=["buffered", "streamed"], default="buffered",
                     help="Envoy's request_body_mode (default %(default)s)")
    req.add_argument("--chunks", type=positive_int, default=1,
                     help="messages the request body is split into in streamed mode")
    resp = parser.add_argument_group("fake upstream response")
    resp.add_argument("--response-format", choices=["json", "sse"],
                      help="default: sse if the request streams, else json")
    resp.add_argument("--response-body", metavar="FILE",
                      help="send this file as the response body instead of a generated one")
    usage = resp.add_mutually_exclusive_group()
    usage.add_argument("--usage", type=parse_usage, default=(12, 7),
                       metavar="PROMPT,COMPLETION", help="usage of the generated response "
                       "(default 12,7)")
    usage.add_argument("--no-usage", dest="usage", action="store_const", const=None,
                       help="generate a response without usage")
    resp.add_argument("--response-status", type=int, default=200, help=":status")
    resp.add_argument("--response-body-mode", choices=["none", "buffered", "streamed"],
                      default="streamed", help="Envoy's response_body_mode (default %(default)s)")
    resp.add_argument("--response-chunks", type=positive_int, default=3,
                      help="messages the response body is split into in streamed mode")
    parser.add_argument("--allow-mode-override", action=argparse.BooleanOptionalAction,
                        default=True, help="honour the processor's mode_override, as Envoy "
                        "does with allow_mode_override: true (default on)")
    parser.add_argument("--model-header", default="x-gateway-model-name",
                        help="the header the processor sets to the chosen model")
    parser.add_argument("--json", action="store_true",
                        help="print messages as JSON lines instead of protobuf text")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.timeout <= 0:
        print("ext_proc_harness: --timeout: must be > 0", file=sys.stderr)
        return 2
    try:
        with grpc.insecure_channel(args.address) as channel:
            summary = run(args, ep_grpc.ExternalProcessorStub(channel), make_printer(args.json))
    except OSError as e:
        print(f"ext_proc_harness: {e}", file=sys.stderr)
        return 2
    except grpc.RpcError as e:
        print(f"ext_proc_harness: the stream failed: {e.code().name}: {e.details()}",
              file=sys.stderr)
        return 1
    except ProtocolError as e:
        print(f"ext_proc_harness: protocol error: {e}", file=sys.stderr)
        return 3
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
