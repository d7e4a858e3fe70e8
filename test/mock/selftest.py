"""
selftest.py - scaffolding shared by the mock self-tests (test_mock.py, test_mock_p99.py,
test_mock_chainup.py, test_mock_ccpayment.py, test_mock_fiat_gateway.py).

Knows no provider protocol (each test keeps its own signing or envelope code):
  check(cond, what, detail)  one "ok   - ..." / "FAIL - ..." line, counted
  section(title)             a "# title" heading
  summary()                  "N checks passed, M failed" (and each failure); the exit status
  run_mock(config, ...)      mock_provider.py as a subprocess on a free port with config,
                             tests(port) against it, then SIGTERM and the shutdown checks
  MockClient                 HTTP to the mock on 127.0.0.1: raw(), and the control API
                             ctl() with config(), fault(), log(), ledger(), stats() of
                             its provider
  start_server(handler)      a local ThreadingHTTPServer (webhook receivers, merchants)
  Receiver                   a local server that records every POST and answers from a
                             per-path script, then (200, "success")
  wait_for(pred, timeout)    poll pred until it is truthy
  outcome(fn)                run a request; how the connection ended
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))

failures = []
passes = 0


def check(cond, what, detail=None):
    global passes
    if cond:
        passes += 1
        print(f"ok   - {what}")
    else:
        failures.append(what)
        print(f"FAIL - {what}" + (f"  [{detail}]" if detail is not None else ""))


def section(title):
    print(f"\n# {title}")


def summary():
    """Print the totals and every failed check; returns the exit status (1 if any failed)."""
    print(f"\n{passes} checks passed, {len(failures)} failed")
    for f in failures:
        print(f"  failed: {f}")
    return 1 if failures else 0


# -- the mock server under test ------------------------------------------------------------

def run_mock(config, tmp_prefix, tests, banner="", cleanup=None, output_checks=None, check_traceback=True):
    """Start mock_provider.py on a free port with config (written to a --config file),
    print its pid and port (then banner) and call tests(port); a crash there is a failed
    check.  Then section "shutdown": SIGTERM, cleanup(), the exit-status check, a check
    that the server output holds no traceback (unless check_traceback is false) and
    output_checks(output).  Returns summary(), or 1 at once if the server did not start."""
    tmp = tempfile.mkdtemp(prefix=tmp_prefix)
    port_file, cfg, err_path = (os.path.join(tmp, n) for n in ("port", "config.json", "stderr"))
    with open(cfg, "w") as f:
        json.dump(config, f)
    err = open(err_path, "w")
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "mock_provider.py"), "--port", "0",
                             "--port-file", port_file, "--config", cfg], stdout=err, stderr=err)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if proc.poll() is not None or time.monotonic() > deadline:
                print("mock server did not start")
                print(open(err_path).read())
                return 1
            time.sleep(0.05)
        port = int(open(port_file).read())
        print(f"mock server pid {proc.pid} on 127.0.0.1:{port}{banner}")
        tests(port)
    except Exception as e:     # a crash is a failure, not a traceback with the server left running
        traceback.print_exc()
        check(False, f"test run crashed: {e!r}")
    finally:
        section("shutdown")
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
        err.close()
        if cleanup:
            cleanup()
        check(rc == 0, "SIGTERM: server exits with status 0 within 5 s", rc)
        out = open(err_path).read()
        if check_traceback:
            check("Traceback" not in out, "no traceback in the server output", out[-2000:])
        if output_checks:
            output_checks(out)
    return summary()


class MockClient:
    """HTTP to the mock server on 127.0.0.1:port; provider names the one the control
    shortcuts (config, fault, log, ledger, stats) are about."""

    provider = None

    def __init__(self, port):
        self.port = port

    def raw(self, method, path, body=None, headers=None, timeout=10, conn=None):
        """(status, headers dict, body bytes); raises on connection errors.  A given
        conn (keep-alive tests) is used and left open."""
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            if conn is None:
                c.close()

    def ctl(self, method, path, obj=None):
        """A control request /_mock<path>: (status, parsed JSON)."""
        body = json.dumps(obj) if obj is not None else None
        status, _, data = self.raw(method, "/_mock" + path, body,
                                   {"Content-Type": "application/json"} if body else {})
        return status, json.loads(data)

    def config(self, part):
        st, out = self.ctl("POST", "/config", {self.provider: part})
        assert st == 200, out

    def fault(self, **spec):
        """Queue a fault (POST /_mock/faults), for this provider unless spec names one."""
        spec.setdefault("provider", self.provider)
        st, out = self.ctl("POST", "/faults", spec)
        assert st == 200, out

    def log(self):
        return self.ctl("GET", f"/requests?provider={self.provider}")[1]

    def ledger(self):
        return self.ctl("GET", f"/ledger?provider={self.provider}")[1]

    def stats(self):
        return self.ctl("GET", f"/stats?provider={self.provider}")[1]


def outcome(fn):
    """Run a request: (kind, result, seconds), kind "response", or how the connection
    ended instead ("closed", "reset", "timeout") with result None."""
    t0 = time.monotonic()
    try:
        res = fn()
        kind = "response"
    except http.client.RemoteDisconnected:
        res, kind = None, "closed"
    except ConnectionResetError:
        res, kind = None, "reset"
    except socket.timeout:
        res, kind = None, "timeout"
    return kind, res, time.monotonic() - t0


def wait_for(pred, timeout=8.0):
    """pred()'s first truthy value within timeout s (polled every 50 ms), else its last."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


# -- local servers the mock calls ------------------------------------------------------------

def start_server(handler):
    """A ThreadingHTTPServer for handler on 127.0.0.1 and a free port, serving on a
    daemon thread (stop it with .shutdown())."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Receiver:
    """Records every POST ({path, headers, body, t}); replies from a per-path script of
    (status, text) pairs, then (200, "success"); a path scripted None ("/never") always
    gets (200, "fail")."""

    def __init__(self):
        self.lock = threading.Lock()
        self.got = []
        self.script = {"/never": None}
        hooks = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hooks.lock:
                    hooks.got.append({"path": self.path, "headers": dict(self.headers.items()), "body": body,
                                      "t": time.monotonic()})
                    script = hooks.script.get(self.path, [])
                    status, text = (200, "fail") if script is None else (script.pop(0) if script
                                                                          else (200, "success"))
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = start_server(H)
        self.port = self.server.server_address[1]

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path, pred=None):
        """The POSTs received on path so far (those pred accepts)."""
        with self.lock:
            return [g for g in self.got if g["path"] == path and (pred is None or pred(g))]

    def wait(self, path, n=1, timeout=8.0, pred=None):
        """The POSTs on path (those pred accepts) once there are n, or all after timeout s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            hits = self.on(path, pred)
            if len(hits) >= n:
                return hits
            time.sleep(0.05)
        return self.on(path, pred)
