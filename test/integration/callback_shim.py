"""Callback shim: a tiny web server that plays the application's web handler in
the integration tests, passing what a provider posts to the extension's SQL
functions and their answer back.

Routes (POST only; the account is the last path segment, percent-decoded):
  /confirm/<account>   SELECT withdraw_confirm(account, body)
                       (chainup's second confirmation: the raw form body)
  /callback/<account>  SELECT withdraw_callback(account, body, headers::jsonb)
                       (notifications; headers = {name: value} with the names as
                       received, repeated names joined with ", ")
The body is passed as text: UTF-8, or latin-1 when it is not valid UTF-8 (every
byte kept).  The reply is HTTP 200 with the text the function returned (an empty
body for NULL), Content-Type application/json when it starts with '{', else
text/plain.  When the SQL call fails the reply is HTTP 500 "ERROR <sqlstate>:
<message>".  Every request opens its own connection (autocommit; SET ROLE role if
given), so concurrent callbacks run in separate backends, as an application's would.

Every call is recorded in .calls (a list of dicts: kind, account, body, headers,
status, reply, sqlstate), guarded by .lock.  .override[kind] may hold a function
(account, body, headers) -> None (go on) or (status, body) (answer that instead,
without calling SQL): a test can make the handler slow, wrong or down.

    shim = CallbackShim(cluster_dsn, role="withdraw_app").start()
    notify_url = shim.url("callback", "cu1")
    ...
    shim.wait_calls("confirm", count=1)
    shim.stop()
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import psycopg2
from psycopg2 import sql

ROUTES = {
    "confirm": "SELECT withdraw_confirm(%s, %s)",
    "callback": "SELECT withdraw_callback(%s, %s, %s::jsonb)",
}


def decode_body(raw):
    """The body as text: UTF-8 when valid, else latin-1 (one char per byte)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class CallbackShim:
    def __init__(self, dsn, role=None):
        """dsn: a libpq connection string, or a function returning a new connection."""
        self.dsn = dsn
        self.role = role
        self.lock = threading.Lock()
        self.calls = []
        self.override = {}
        self.server = None
        self.thread = None
        self.port = None

    # -- lifecycle

    def start(self):
        shim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                shim._serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="callback-shim", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def url(self, kind, account):
        return f"http://127.0.0.1:{self.port}/{kind}/{account}"

    # -- inspection

    def calls_of(self, kind=None, account=None):
        with self.lock:
            return [c for c in self.calls
                    if kind in (None, c["kind"]) and account in (None, c["account"])]

    def wait_calls(self, kind=None, account=None, count=1, timeout=10.0):
        """The calls of kind/account once there are at least count; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            calls = self.calls_of(kind, account)
            if len(calls) >= count:
                return calls
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {count} {kind or 'any'} "
                                     f"call(s) (got {len(calls)})")
            time.sleep(0.05)

    # -- serving

    def _connect(self):
        conn = self.dsn() if callable(self.dsn) else psycopg2.connect(self.dsn)
        conn.autocommit = True
        if self.role:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self.role)))
        return conn

    def _call_sql(self, kind, account, body, headers):
        """(status, reply text or None, sqlstate or None)."""
        args = [account, body] + ([json.dumps(headers)] if kind == "callback" else [])
        conn = None
        try:
            conn = self._connect()
            with conn.cursor() as cur:
                cur.execute(ROUTES[kind], args)
                return 200, cur.fetchone()[0], None
        except psycopg2.Error as e:
            state = e.pgcode or "08000"
            msg = (e.diag.message_primary if e.diag and e.diag.message_primary else str(e)).strip()
            return 500, f"ERROR {state}: {msg}", state
        finally:
            if conn is not None:
                conn.close()

    def _serve(self, h):
        parts = h.path.split("?", 1)[0].strip("/").split("/")
        kind = parts[0] if parts else ""
        account = unquote(parts[1]) if len(parts) == 2 else None
        try:
            length = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = decode_body(h.rfile.read(length)) if length > 0 else ""
        headers = {}
        for name, value in h.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value

        sqlstate = None
        if kind not in ROUTES or not account:
            status, reply = 404, f"no route POST {h.path}"
        else:
            hook = self.override.get(kind)
            answer = hook(account, body, headers) if hook else None
            if answer is not None:
                status, reply = answer
            else:
                status, reply, sqlstate = self._call_sql(kind, account, body, headers)
        with self.lock:
            self.calls.append({"kind": kind, "account": account, "body": body, "headers": headers,
                               "status": status, "reply": reply, "sqlstate": sqlstate})

        data = (reply or "").encode("utf-8") if isinstance(reply, (str, type(None))) else reply
        ctype = "application/json" if data[:1] == b"{" else "text/plain; charset=utf-8"
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:         # the provider gave up waiting
            h.close_connection = True
