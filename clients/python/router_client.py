"""A small Python client for routerd (proto/router/v1/router.proto), for gateways.

Routes queries one at a time, as a caller-formed batch or over one RouteStream, reports
completions, and lists the model pool. A query may ask to be decided in batch mode (wait for a
batch), inline (at once, at the batch problem's prices) or auto (inline when its deadline leaves no
room for a batch); unset, routerd uses the tenant's mode or its default. Each Assignment says which
mode decided it (`decision_mode`) and, for inline, its prices (`inline_decision`).

Requirements: Debian's python3-grpcio and python3-protobuf (run with /usr/bin/python3), and the
stubs the build generates into <build>/python (the CMake target clients_python_router_stubs), so:

    PYTHONPATH=<build>/python:clients/python /usr/bin/python3 clients/python/example.py

Thread-safety: a RouterClient may be shared by threads (a gRPC channel is thread-safe); make one
per process and close it (or use it as a context manager) when done.

Errors: a failed call raises RouterError carrying the server's status code and message unchanged
(router.proto: INVALID_ARGUMENT names the field, UNAVAILABLE is retryable, RESOURCE_EXHAUSTED
means budget or slots, UNAUTHENTICATED / PERMISSION_DENIED mean missing or refused credentials),
and for an overloaded routerd the retry hint it sent (RouterError.retry_after_ms). Per-query
errors inside route_batch and route_stream answers are items, not exceptions.

Security: TLS (with a CA bundle to verify routerd, and a client certificate for routerd's mTLS)
and a bearer token (sent as `authorization: Bearer <token>` on every call) are options of
RouterClient; see its docstring.
"""

import grpc

try:
    from router.v1 import router_pb2, router_pb2_grpc
except ImportError as e:  # the stubs are generated at build time, not checked in
    raise ImportError(
        "router.v1 stubs not found: put <build>/python on PYTHONPATH "
        "(built by the CMake target clients_python_router_stubs)") from e

# routerd refuses keepalive pings more frequent than every 10 s (GOAWAY "too_many_pings").
MIN_KEEPALIVE_TIME_MS = 10000

# Query.mode by name; None or "" = unset (routerd's tenant or default mode).
MODES = {
    "batch": router_pb2.ROUTING_MODE_BATCH,
    "inline": router_pb2.ROUTING_MODE_INLINE,
    "auto": router_pb2.ROUTING_MODE_AUTO,
}


def mode_name(mode):
    """"batch", "inline" or "auto" for a router_pb2.RoutingMode value ("unspecified" for none)."""
    for name, value in MODES.items():
        if value == mode:
            return name
    return "unspecified"


class RouterError(Exception):
    """A failed call: `code` is a grpc.StatusCode, `message` the server's status message, and
    `retry_after_ms` routerd's retry hint (its `grpc-retry-pushback-ms` trailer when overloaded;
    None without one)."""

    def __init__(self, code, message, retry_after_ms=None):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms

    @property
    def retryable(self):
        return self.code == grpc.StatusCode.UNAVAILABLE


def _error(rpc_error):
    """The one mapping from a grpc.RpcError to a RouterError."""
    retry_after_ms = None
    trailers = getattr(rpc_error, "trailing_metadata", lambda: None)() or ()
    for key, value in trailers:
        if key == "grpc-retry-pushback-ms" and str(value).isdigit():
            retry_after_ms = int(value)
    return RouterError(rpc_error.code(), rpc_error.details() or "", retry_after_ms)


def read_token_file(path):
    """The token a token file holds (surrounding whitespace dropped), as routerd reads it.
    ValueError for a file without one (the message never contains the file's contents)."""
    with open(path, "rb") as f:
        token = f.read().strip().decode("ascii", errors="replace")
    if not token:
        raise ValueError(f"token file {path!r}: holds no token")
    return token


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def make_query(query_id, text="", *, allowed_models=(), embedding=(), input_tokens=0,
               output_tokens=0, task="", tenant="", mode=None):
    """A router.v1.Query; `query_id` is required and echoed in the answer.

    text: the prompt, str (sent as UTF-8) or bytes (sent as they are: any bytes are a prompt).
    mode: "batch", "inline", "auto" (or a router_pb2.RoutingMode value); None = unset, so
    routerd uses the tenant's mode or its configured default. ValueError for another name.
    """
    if isinstance(mode, str) and mode:
        if mode not in MODES:
            raise ValueError(f"mode: {mode!r} is not a routing mode (batch, inline or auto)")
        mode = MODES[mode]
    if isinstance(text, str):
        text = text.encode("utf-8")
    return router_pb2.Query(id=query_id, text=text, allowed_models=list(allowed_models),
                            embedding=list(embedding), input_tokens=input_tokens,
                            output_tokens=output_tokens, task=task, tenant=tenant,
                            mode=mode or router_pb2.ROUTING_MODE_UNSPECIFIED)


class RouterClient:
    """A connection to one routerd.

    address: a gRPC target such as "127.0.0.1:50051".
    timeout: seconds, the deadline of each unary call made without its own (default 10). routerd
        also closes a batch early to meet it.
    keepalive_time_ms: keepalive ping interval, at least MIN_KEEPALIVE_TIME_MS (default 30000).
    tls: True for TLS (implied by ca_file, cert_file and server_name); False = plaintext.
    ca_file: PEM roots that verify routerd's certificate (None = the system's).
    cert_file, key_file: this client's certificate and key, for routerd's mTLS (both or neither).
    server_name: the name routerd's certificate must carry when the address's host is not it.
    token, token_file: the bearer token (or a file holding it) sent on every call as
        `authorization: Bearer <token>` (admin.token_file for RouterAdmin calls, api.token_file for
        Router calls). Over plaintext it crosses the network in clear.
    """

    def __init__(self, address, *, timeout=10.0, keepalive_time_ms=30000, tls=False,
                 ca_file=None, cert_file=None, key_file=None, server_name=None, token=None,
                 token_file=None):
        if keepalive_time_ms < MIN_KEEPALIVE_TIME_MS:
            raise ValueError(f"keepalive_time_ms: must be >= {MIN_KEEPALIVE_TIME_MS}")
        if timeout <= 0:
            raise ValueError("timeout: must be > 0")
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file: give both or neither")
        if token is not None and token_file is not None:
            raise ValueError("token and token_file: give one of them")
        if token_file is not None:
            token = read_token_file(token_file)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        options = [
            ("grpc.keepalive_time_ms", keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", 10000),
        ]
        if tls or ca_file or cert_file or server_name:
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(ca_file) if ca_file else None,
                private_key=_read(key_file) if key_file else None,
                certificate_chain=_read(cert_file) if cert_file else None)
            self._channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._router = router_pb2_grpc.RouterStub(self._channel)
        self._admin = router_pb2_grpc.RouterAdminStub(self._channel)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request, timeout):
        try:
            return method(request, timeout=self._timeout if timeout is None else timeout,
                          metadata=self._metadata)
        except grpc.RpcError as e:
            raise _error(e) from None

    def route(self, query, timeout=None):
        """Routes one query (batched by routerd with other traffic, or decided inline at once,
        per query.mode); returns its Assignment."""
        return self._call(self._router.Route, router_pb2.RouteRequest(query=query),
                          timeout).assignment

    def route_batch(self, queries, timeout=None):
        """Routes the queries together; returns one RouteBatchItem per query, in order, each
        holding `assignment` or `error` (check item.WhichOneof("result"))."""
        request = router_pb2.RouteBatchRequest(queries=list(queries))
        return list(self._call(self._router.RouteBatch, request, timeout).items)

    def route_stream(self, queries, timeout=None):
        """Sends the queries (any iterable, consumed lazily by gRPC's sending thread) on one
        RouteStream and yields each answer (a RouteBatchItem: `assignment` or `error`) as it
        arrives, out of order (match by query_id); a response message may carry several answers.
        `timeout` bounds the whole stream; None = no deadline."""
        requests = (router_pb2.RouteStreamRequest(query=q) for q in queries)
        try:
            for response in self._router.RouteStream(requests, timeout=timeout,
                                                     metadata=self._metadata):
                yield from response.items
        except grpc.RpcError as e:
            raise _error(e) from None

    def complete(self, assignment_id, actual_cost_usd=None, success=None, timeout=None, *,
                 score=None):
        """Reports that the routed request finished; returns the CompleteResponse. `success`
        (a bool) and `score` (in [0, 1]; learned instead of `success` when both are given) are
        the optional outcome; a score outside [0, 1] raises INVALID_ARGUMENT naming `score`."""
        request = router_pb2.CompleteRequest(assignment_id=assignment_id)
        if actual_cost_usd is not None:
            request.actual_cost_usd = actual_cost_usd
        if success is not None:
            request.success = success
        if score is not None:
            request.score = score
        return self._call(self._router.Complete, request, timeout)

    def learned_stats(self, model=None, cluster=None, timeout=None):
        """What routerd learned from outcomes: a GetLearnedStatsResponse (`enabled`, `cells`
        per model and cluster, `dropped_outcomes`), only of `model` and/or `cluster` if given."""
        request = _learned_filter(router_pb2.GetLearnedStatsRequest(), model, cluster)
        return self._call(self._admin.GetLearnedStats, request, timeout)

    def reset_learned_stats(self, model=None, cluster=None, timeout=None):
        """Forgets what was learned of `model`, of `cluster`, of both together, or everything
        (neither); returns the number of cells removed."""
        request = _learned_filter(router_pb2.ResetLearnedStatsRequest(), model, cluster)
        return self._call(self._admin.ResetLearnedStats, request, timeout).cells_removed

    def list_models(self, timeout=None):
        """The model pool: a list of ModelStatus."""
        return list(self._call(self._admin.ListModels, router_pb2.ListModelsRequest(),
                               timeout).models)


def _learned_filter(request, model, cluster):
    """Sets the optional model and cluster filters of a learned-statistics request."""
    if model is not None:
        request.model = model
    if cluster is not None:
        request.cluster = cluster
    return request
