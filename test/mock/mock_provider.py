#!/usr/bin/env python3
"""
mock_provider.py - mock payment-provider HTTP server for the withdraw test suites.

One process serves every mock provider on 127.0.0.1.  The first path segment names
the provider: /zoomex/private/v1/asset/withdraw/inner-create is handled by the
zoomex module with path /private/v1/asset/withdraw/inner-create, so an account's
base_url is http://127.0.0.1:PORT/zoomex.  The /_mock/ prefix is the control API
used by the tests (health, reset, config, faults, ledger, requests, stats).

Each provider is one module in this directory (an independent implementation of the
provider's published protocol; nothing is shared with the extension's src/) and is
plugged in with one line in REGISTRY.  delivery.py is not a provider: it holds the
outbound POST, timer and callback-retry helpers some provider modules share (no
protocol; signing stays in each provider's module).  A provider module exposes:

    NAME            provider name (first path segment)
    DEFAULT_CONFIG  dict of default settings
    STATS           names of its counters (the core adds requests, faults_injected)
    check_config(cfg)             raise ValueError if cfg is unusable
    Provider(config, stats)       config: its live config dict; stats: a Counter
      .handle(req) -> (status, body, info)   serve one Request (core lock held); body is
                                  a dict (sent as JSON) or bytes/str (text/plain); info
                                  holds log fields: api_key, requestId, ret_code,
                                  sig_ok, executed.  A provider that must make an
                                  outbound call first (chainup's second confirmation)
                                  returns instead an object with .outside_lock(), run
                                  with the core lock released, and .finish(outcome),
                                  run with it held again, returning what handle would.
      .peek(req) -> dict          log fields (api_key, requestId, sig_ok), no side effects
      .error_reply(req, code, msg) -> (status, body)   an error in req's endpoint envelope
      .reset()                    forget ledger and rate-limit state
      .ledger() -> dict           what /_mock/ledger shows
      .control(method, path, params, obj) -> (status, body)   optional: serves the
                                  control requests /_mock/NAME/... (core lock held;
                                  path is what follows NAME; ValueError -> 400)

The core owns the single lock, the request log, the counters and the fault queue;
faults are applied around the provider, so provider modules never see them.

Control API (JSON in and out, no auth):
    GET  /_mock/health                     {"ok": true}
    POST /_mock/reset                      clear ledgers, request logs, faults, counters
    POST /_mock/config   {"zoomex": {...}} merge into the config (dict values key by key,
                                           a null value removes that key)
    POST /_mock/faults   {"provider", "path", "kind", "count", "code", "delay_s",
                          "duration_s"}    queue a fault for the next `count` (default 1)
                                           requests whose provider-relative path contains
                                           `path`, or for every one during duration_s;
                                           no provider = any provider, no path = any path
    GET  /_mock/faults                     faults still pending
    DELETE /_mock/faults                   drop every pending fault
    GET  /_mock/ledger?provider=P          executed withdrawals
    GET  /_mock/requests?provider=P        every request, in arrival order (no secrets)
    GET  /_mock/stats?provider=P           counters
    *    /_mock/P/...                      provider P's own control endpoints, if any
Fault kinds: http_500 http_502 http_503 http_403 garbage retcode (answer without
executing), timeout_before (hold delay_s, default 30, then close), reset (RST),
down (RST for duration_s), and timeout_after reset_after garbage_after (execute first).
Poison answers (answer without executing; HTTP 200, application/json):
    deep_brackets   30 KB of '['
    deep_nesting    an object nested 200 levels deep
    huge            a 20 MB JSON document
    bad_utf8        JSON whose strings hold bytes that are not UTF-8
    nul_json        JSON with raw NUL bytes in a string
    nul_escape      JSON with an escaped backslash-u0000 in a string
    drip            headers, then the body one byte a second (for delay_s at most)
    raw             the string "body" of the fault as the answer, with HTTP "status"
                    (default 200)
and slow: hold delay_s, then serve the request normally (it executes).

Usage: mock_provider.py --port PORT [--port-file FILE] [--config FILE.json] [--quiet]
--port 0 picks a free port; the port is written to --port-file once the socket is
bound.  SIGTERM or SIGINT stops the server with exit status 0.
"""

import argparse
import copy
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections import Counter
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ccpayment  # noqa: E402
import chainup  # noqa: E402
import fiat_gateway  # noqa: E402
import p99  # noqa: E402
import zoomex  # noqa: E402

REGISTRY = {
    zoomex.NAME: zoomex,
    p99.NAME: p99,
    chainup.NAME: chainup,
    ccpayment.NAME: ccpayment,
    fiat_gateway.NAME: fiat_gateway,
}

MAX_BODY = 1 << 20
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

# Fault kinds.  "before" kinds answer without executing, "after" kinds execute first.
# poison answers, made when served (the huge one is 20 MB)
POISON = {
    "deep_brackets": lambda: b"[" * 30000,
    "deep_nesting": lambda: b'{"a":' * 200 + b"1" + b"}" * 200,
    "huge": lambda: b'{"retCode":0,"pad":"' + b"x" * (20 << 20) + b'"}',
    "bad_utf8": lambda: b'{"retCode":0,"retMsg":"\xff\xfe\xc3\x28","result":{}}',
    "nul_json": lambda: b'{"retCode":0,"retMsg":"a\x00b","result":{"id":"\x00"}}',
    "nul_escape": lambda: b'{"retCode":0,"retMsg":"a\\u0000b","result":{}}',
}
FAULTS_BEFORE = {"http_500", "http_502", "http_503", "http_403", "timeout_before",
                 "reset", "garbage", "retcode", "down", "drip", "raw"} | set(POISON)
FAULTS_AFTER = {"timeout_after", "reset_after", "garbage_after", "slow"}
FAULT_KINDS = FAULTS_BEFORE | FAULTS_AFTER

GARBAGE_BODY = b'{"retCode":0,"retMsg":"succ\x00<html>502 upstream garbage'


class Request:
    """One provider request: path is relative to the provider, query is the raw string."""

    def __init__(self, method, path, query, headers, body, t, mono):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.t = t          # epoch seconds at arrival
        self.mono = mono    # time.monotonic() at arrival


class Reply:
    """An HTTP response: a dict body is sent as JSON, bytes or str as text/plain."""

    def __init__(self, status, body, content_type=None):
        self.status = status
        if isinstance(body, (dict, list)):
            self.body = json.dumps(body, separators=(",", ":")).encode()
            self.content_type = content_type or "application/json"
        else:
            self.body = body.encode() if isinstance(body, str) else body
            self.content_type = content_type or "text/plain"


def merge_config(dst, src):
    """Merge src into dst one level deep: dict values are updated key by key
    (a null removes that key), anything else is replaced."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            for kk, vv in v.items():
                if vv is None:
                    dst[k].pop(kk, None)
                else:
                    dst[k][kk] = vv
        else:
            dst[k] = v


class Core:
    """All mutable state of the server, guarded by one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.config = {n: copy.deepcopy(m.DEFAULT_CONFIG) for n, m in REGISTRY.items()}
        self.stats = {n: Counter() for n in REGISTRY}
        self.providers = {n: m.Provider(self.config[n], self.stats[n]) for n, m in REGISTRY.items()}
        self.log = {n: [] for n in REGISTRY}
        self.faults = []
        self.stopping = threading.Event()

    def update_config(self, obj):
        """Validate and merge {"provider": {...}, ...}; raises ValueError."""
        if not isinstance(obj, dict):
            raise ValueError("config must be a JSON object")
        with self.lock:
            staged = {}
            for name, part in obj.items():
                if name not in REGISTRY:
                    raise ValueError(f"unknown provider {name!r}")
                if not isinstance(part, dict):
                    raise ValueError(f"config for {name} must be an object")
                cfg = copy.deepcopy(self.config[name])
                merge_config(cfg, part)
                REGISTRY[name].check_config(cfg)
                staged[name] = cfg
            for name, cfg in staged.items():
                self.config[name].clear()
                self.config[name].update(cfg)

    def reset(self):
        with self.lock:
            for name in REGISTRY:
                self.providers[name].reset()
                self.stats[name].clear()
                self.log[name].clear()
            self.faults.clear()

    def stats_of(self, name):
        keys = ("requests", "faults_injected") + tuple(REGISTRY[name].STATS)
        with self.lock:
            return {k: self.stats[name][k] for k in keys}

    def add_fault(self, spec):
        """Queue a fault from the /_mock/faults body; raises ValueError."""
        if not isinstance(spec, dict):
            raise ValueError("fault must be a JSON object")
        kind = spec.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {sorted(FAULT_KINDS)}")
        provider = spec.get("provider")
        if provider is not None and provider not in REGISTRY:
            raise ValueError(f"unknown provider {provider!r}")
        count = spec.get("count", 1)
        duration = spec.get("duration_s")
        delay = spec.get("delay_s", 30)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError("count must be an integer >= 1")
        if duration is not None and (not isinstance(duration, (int, float)) or duration <= 0):
            raise ValueError("duration_s must be a positive number")
        if kind == "down" and duration is None:
            raise ValueError("kind down needs duration_s")
        if not isinstance(delay, (int, float)) or delay < 0:
            raise ValueError("delay_s must be a number >= 0")
        code = spec.get("code", 10016)
        if not isinstance(code, int) or isinstance(code, bool):
            raise ValueError("code must be an integer")
        body = spec.get("body", "")
        status = spec.get("status", 200)
        if not isinstance(body, str):
            raise ValueError("body must be a string")
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status")
        fault = {"provider": provider, "path": str(spec.get("path", "")), "kind": kind,
                 "body": body, "status": status,
                 "count": None if duration is not None else count, "code": code,
                 "delay_s": float(delay), "duration_s": duration,
                 "until": None if duration is None else time.monotonic() + duration}
        with self.lock:
            self.faults.append(fault)

    def list_faults(self):
        now = time.monotonic()
        with self.lock:
            return [{k: v for k, v in f.items() if k != "until"} |
                    {"remaining_s": None if f["until"] is None else round(f["until"] - now, 3)}
                    for f in self.faults if f["until"] is None or f["until"] > now]

    def take_fault(self, name, path):
        """The first queued fault matching this request (consuming one count), or None.
        Called with the lock held."""
        now = time.monotonic()
        self.faults = [f for f in self.faults if f["until"] is None or f["until"] > now]
        for f in self.faults:
            if f["provider"] not in (None, name) or f["path"] not in path:
                continue
            if f["count"] is not None:
                f["count"] -= 1
                if f["count"] == 0:
                    self.faults.remove(f)
            return f
        return None

    def serve(self, name, req):
        """Run one provider request through the fault layer and the provider.
        Returns an action for the handler: ("reply", Reply), ("hold", seconds),
        ("rst", None)."""
        provider = self.providers[name]
        with self.lock:
            fault = self.take_fault(name, req.path)
            kind = fault["kind"] if fault else None
            entry = {"t": req.t, "path": req.path, "method": req.method, "api_key": None,
                     "requestId": None, "ret_code": None, "sig_ok": False, "fault": kind,
                     "http_status": None, "executed": False,
                     "client_port": getattr(req, "client_port", None)}
            self.log[name].append(entry)
            self.stats[name]["requests"] += 1
            if fault:
                self.stats[name]["faults_injected"] += 1
            if kind in FAULTS_BEFORE:
                entry.update(provider.peek(req))
                reply = None
                if kind == "retcode":
                    reply = Reply(*provider.error_reply(req, fault["code"], "injected"))
                    entry["ret_code"] = fault["code"]
            else:
                if kind == "slow":
                    self.lock.release()             # others are served meanwhile
                    try:
                        self.stopping.wait(fault["delay_s"])
                    finally:
                        self.lock.acquire()
                try:
                    result = provider.handle(req)
                    while hasattr(result, "outside_lock"):
                        self.lock.release()         # outbound call: others may be served
                        try:
                            outcome = result.outside_lock()
                        finally:
                            self.lock.acquire()
                        result = result.finish(outcome)
                    status, body, info = result
                except Exception:       # a mock bug must not look like an injected reset
                    traceback.print_exc()
                    status, body, info = 500, {"error": "mock provider crashed"}, {}
                reply = Reply(status, body)
                entry.update(info)
            action = fault_action(fault, reply)
            if action[0] == "reply":
                entry["http_status"] = action[1].status
            return action


def fault_action(fault, reply):
    """What the handler does for a request given its fault (or None) and the reply the
    provider produced (None when the fault kept the provider out):
    ("reply", Reply), ("hold", seconds) or ("rst", None)."""
    kind = fault["kind"] if fault else None
    if kind is None or kind in ("retcode", "slow"):
        return ("reply", reply)
    if kind in POISON:
        return ("reply", Reply(200, POISON[kind](), "application/json"))
    if kind == "raw":
        return ("reply", Reply(fault["status"], fault["body"], "application/json"))
    if kind == "drip":
        return ("drip", fault["delay_s"])
    if kind.startswith("http_"):
        return ("reply", html_reply(int(kind[5:])))
    if kind in ("garbage", "garbage_after"):
        return ("reply", Reply(200, GARBAGE_BODY, "application/json"))
    if kind in ("timeout_before", "timeout_after"):
        return ("hold", fault["delay_s"])
    return ("rst", None)     # reset, reset_after, down


def html_reply(status):
    phrase = HTTPStatus(status).phrase
    body = (f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n"
            f"<body>\r\n<center><h1>{status} {phrase}</h1></center>\r\n</body>\r\n</html>\r\n")
    return Reply(status, body, "text/html")


CORE = Core()
QUIET = False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # answer in one segment: without this, headers and body leave as two
    # writes and a keep-alive client waits for a delayed ACK (~40 ms)
    disable_nagle_algorithm = True
    server_version = "mock-provider/1"
    sys_version = ""

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    # -- logging: never show query strings (they carry sign=) or headers
    def log_request(self, code="-", size="-"):
        if not QUIET:
            path = self.path.split("?", 1)[0] if isinstance(self.path, str) else "?"
            sys.stderr.write(f"mock_provider: {self.command} {path} -> {code}\n")

    def log_message(self, fmt, *args):
        if not QUIET:
            msg = re.sub(r"\?\S*", "?...", fmt % args)
            sys.stderr.write(f"mock_provider: {msg}\n")

    def read_body(self):
        """Read the request body (Content-Length or chunked); None after an error reply."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.send_json(400, {"error": "bad chunked encoding"}, close=True)
                    return None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    self.send_json(413, {"error": "body too large"}, close=True)
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.strip().isdigit():
            self.send_json(400, {"error": "bad Content-Length"}, close=True)
            return None
        if int(length) > MAX_BODY:
            self.send_json(413, {"error": "body too large"}, close=True)
            return None
        return self.rfile.read(int(length))

    def send_bytes(self, status, body, content_type, close=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, obj, close=False):
        self.send_bytes(status, json.dumps(obj, separators=(",", ":")).encode(),
                        "application/json", close)

    def dispatch(self):
        t, mono = time.time(), time.monotonic()
        body = self.read_body()
        if body is None:
            return
        url = urlsplit(self.path)
        _, _, rest = url.path.partition("/")
        first, slash, tail = rest.partition("/")
        if first == "_mock":
            return self.control("/" + tail, url.query, body)
        if first not in REGISTRY:
            return self.send_json(404, {"error": f"unknown provider {first!r}"})
        req = Request(self.command, slash + tail, url.query, self.headers, body, t, mono)
        req.client_port = self.client_address[1]
        action, arg = CORE.serve(first, req)
        if action == "reply":
            try:
                self.send_bytes(arg.status, arg.body, arg.content_type)
            except OSError:         # the client gave up on a huge answer
                self.close_connection = True
        elif action == "drip":
            self.drip(arg)
        elif action == "hold":
            CORE.stopping.wait(arg)
            self.close_connection = True
        else:
            self.rst = True
            self.close_connection = True

    def drip(self, seconds):
        """Headers, then a JSON body one byte a second, for seconds at most."""
        body = b'{"retCode":0,"retMsg":"' + b"." * 4096 + b'"}'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            for i in range(min(len(body), int(seconds))):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                if CORE.stopping.wait(1.0):
                    break
        except OSError:
            pass
        self.close_connection = True

    def finish(self):
        """Close with RST (SO_LINGER 0) when a reset fault asked for it."""
        if getattr(self, "rst", False):
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.rfile.close()
                self.connection.close()
            except OSError:
                pass
            return
        super().finish()

    def control(self, path, query, body):
        """The /_mock/ control API (JSON in and out, no auth)."""
        params = dict(parse_qsl(query))
        try:
            obj = json.loads(body) if body.strip() else {}
        except ValueError:
            return self.send_json(400, {"ok": False, "error": "body is not JSON"})
        method = self.command
        name = params.get("provider")
        if path in ("/ledger", "/requests", "/stats") and name not in REGISTRY:
            return self.send_json(400 if name is None else 404,
                                  {"ok": False, "error": "query parameter provider names no provider"})
        try:
            if method == "GET" and path == "/health":
                return self.send_json(200, {"ok": True})
            if method == "POST" and path == "/reset":
                CORE.reset()
                return self.send_json(200, {"ok": True})
            if method == "POST" and path == "/config":
                CORE.update_config(obj)
                return self.send_json(200, {"ok": True})
            if method == "POST" and path == "/faults":
                CORE.add_fault(obj)
                return self.send_json(200, {"ok": True})
            if method == "DELETE" and path == "/faults":
                with CORE.lock:
                    CORE.faults.clear()
                return self.send_json(200, {"ok": True})
            if method == "GET" and path == "/faults":
                return self.send_json(200, {"faults": CORE.list_faults()})
            if method == "GET" and path == "/ledger":
                with CORE.lock:
                    out = CORE.providers[name].ledger()
                    data = json.dumps(out, separators=(",", ":")).encode()
                return self.send_bytes(200, data, "application/json")
            if method == "GET" and path == "/requests":
                with CORE.lock:
                    data = json.dumps(CORE.log[name], separators=(",", ":")).encode()
                return self.send_bytes(200, data, "application/json")
            if method == "GET" and path == "/stats":
                return self.send_json(200, CORE.stats_of(name))
            head, _, sub = path[1:].partition("/")
            hook = getattr(CORE.providers.get(head), "control", None)
            if hook is not None:
                with CORE.lock:
                    status, out = hook(method, "/" + sub, params, obj)
                    data = json.dumps(out, separators=(",", ":")).encode()
                return self.send_bytes(status, data, "application/json")
        except ValueError as e:
            return self.send_json(400, {"ok": False, "error": str(e)})
        return self.send_json(404, {"ok": False, "error": f"no control endpoint {method} /_mock{path}"})


def main():
    global QUIET
    ap = argparse.ArgumentParser(description="mock payment-provider server for withdraw tests")
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = pick a free one)")
    ap.add_argument("--port-file", help="write the bound port number to this file")
    ap.add_argument("--config", help="JSON file: {\"zoomex\": {...}, ...}")
    ap.add_argument("--quiet", action="store_true", help="no access log on stderr")
    args = ap.parse_args()
    QUIET = args.quiet
    # Block SIGTERM/SIGINT in every thread; the main thread takes them with sigwait().
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    if args.config:
        try:
            with open(args.config) as f:
                CORE.update_config(json.load(f))
        except (OSError, ValueError) as e:
            sys.stderr.write(f"mock_provider: bad --config {args.config}: {e}\n")
            return 2

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    if not QUIET:
        sys.stderr.write(f"mock_provider: listening on http://127.0.0.1:{port} "
                         f"(providers: {', '.join(REGISTRY)})\n")
    signal.sigwait(STOP_SIGNALS)
    CORE.stopping.set()         # releases connections held by timeout faults
    server.shutdown()
    server.server_close()
    if not QUIET:
        sys.stderr.write("mock_provider: stopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
