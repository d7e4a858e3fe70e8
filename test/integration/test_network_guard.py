"""Network guard suite (issue 14, finding 2 and the Low items about http.c):
where the workers' requests may go, checked when each request is sent.

What is checked, each against the real worker and the zoomex mock (or a
listener of the test's own) on 127.0.0.1:

- loopback and other non-public addresses are refused after DNS resolution
  (a name, "localhost", as well as the literal 127.0.0.1) unless
  withdraw.allow_private_addresses is on; the refusal is an attempt row
  with the reason, nothing reaches the mock, and the withdrawal, surely
  never delivered, is retried and ends 'failed' at max_attempts;
- a connection opened while private addresses were allowed is not reused
  once they are not;
- withdraw.allow_http = off stops existing http:// accounts at send time;
- withdraw.allowed_hosts is checked at send time too;
- withdraw_sync, which fetches from a backend (blocking), is held to the
  same rules;
- proxy variables in the postmaster's environment (http_proxy, ALL_PROXY,
  ...) are ignored: the request reaches the mock directly, the would-be
  proxy gets nothing; withdraw.proxy does route through a proxy;
- more than 1024 exchanges at once (withdraw.max_in_flight allows 10,000):
  1,302 requests held open together at a listener, all then answered.

Run: python3 test/integration/test_network_guard.py [name-filter ...]  (as a non-root user)
"""

import json
import os
import resource
import selectors
import socket
import threading
import time

from harness import Cluster, run_suite, wait_until

cluster = None
mock = None
KEYS = {f"ng{i}": f"guard-secret-{i}-{'z' * 8}" for i in range(1, 11)}
_next = iter(range(1, 11))


def reload(**settings):
    """ALTER SYSTEM each setting (None resets it), reload, and wait until a
    new session sees the values (the worker reloads at the same signal)."""
    for k, v in settings.items():
        if v is None:
            cluster.sql(f"ALTER SYSTEM RESET {k}")
        else:
            cluster.sql(f"ALTER SYSTEM SET {k} = %s", (v,))
    cluster.sql("SELECT pg_reload_conf()")
    for k, v in settings.items():
        wait_until(lambda: cluster.value("SELECT current_setting(%s)", (k,)) ==
                   (v if v is not None else cluster.value("SELECT boot_val FROM pg_settings WHERE name = %s", (k,))),
                   10, 0.05, f"{k} to be reloaded")
    time.sleep(0.3)   # the worker handles the same SIGHUP at its next wake-up


def new_account(base=None, options=None):
    """A zoomex account with its own key; returns (name, key)."""
    n = next(_next)
    name, key = f"ng{n}", f"ng{n}"
    opts = {"create_interval_ms": 0, "polls_per_second": 0, "max_attempts": 2}
    opts.update(options or {})
    cluster.sql("SELECT withdraw_account_create(%s, 'zoomex', %s, %s, %s)",
                (name, base or mock.base_url("zoomex"), json.dumps({"api_key": key, "api_secret": KEYS[key]}),
                 json.dumps(opts)))
    return name, key


def create(account, request_id):
    body = {"coin": "USDT", "addressType": 3, "address": "700100", "amount": "3.50", "requestId": request_id}
    return cluster.value("SELECT withdraw_create(%s, %s)", (account, json.dumps(body)))


def requests_with(key):
    return [r for r in mock.requests() if r.get("api_key") == key]


def attempt_errors(wid):
    return [e for (e,) in cluster.sql("SELECT error FROM withdraw.attempts WHERE withdrawal_id = %s ORDER BY id",
                                      (wid,))]


def assert_refused(wid, key, reason):
    """wid ends 'failed' after max_attempts (2) refusals naming reason, and the
    mock saw nothing of its account."""
    row = cluster.wait_withdrawal(wid, ["failed", "succeeded", "submitted", "processing", "unknown", "review"],
                                  ("state", "last_error", "attempts"), timeout=20)
    errors = attempt_errors(wid)
    assert row["state"] == "failed", (row, errors)
    assert len(errors) == 2 and all(e.startswith("refused before sending: ") and reason in e for e in errors), errors
    assert requests_with(key) == [], requests_with(key)
    return errors[0]


# ---------------------------------------------------------------------------

def test_loopback_is_refused_after_resolution_unless_allowed():
    reload(**{"withdraw.allow_private_addresses": "off"})
    try:
        by_name, key1 = new_account(mock.base_url("zoomex").replace("127.0.0.1", "localhost"))
        by_ip, key2 = new_account()
        # a listener that counts bare TCP connections: not even one is opened
        listener = Listener()
        to_listener, key3 = new_account(f"http://127.0.0.1:{listener.port}")
        w1, w2 = create(by_name, "loopname1"), create(by_ip, "loopip1")
        w3 = create(to_listener, "looplisten1")
        e1 = assert_refused(w1, key1, "is not public: loopback (withdraw.allow_private_addresses is off)")
        e2 = assert_refused(w2, key2, "address 127.0.0.1 is not public: loopback")
        assert_refused(w3, key3, "address 127.0.0.1 is not public: loopback")
        assert listener.connections == 0, listener.connections
        listener.close()
        # the withdrawal's history says why, and that nothing was sent
        path = cluster.state_path(w2)
        assert path[0] == "queued" and path[-1] == "failed" and "submitted" not in path, path
    finally:
        reload(**{"withdraw.allow_private_addresses": "on"})
    # the same account, allowed again, is paid
    ok = create(by_ip, "loopip2")
    cluster.wait_withdrawal(ok, ["submitted", "processing", "succeeded"])
    assert len(requests_with(key2)) >= 1
    return f"by name: {e1!r}; by IP: {e2!r}"


def test_a_cached_connection_is_not_reused_once_private_addresses_are_refused():
    account, key = new_account()
    first = create(account, "cached1")
    cluster.wait_withdrawal(first, ["submitted", "processing", "succeeded"])
    before = len(requests_with(key))
    reload(**{"withdraw.allow_private_addresses": "off"})
    try:
        second = create(account, "cached2")
        error = assert_refused_after(second, key, before)
    finally:
        reload(**{"withdraw.allow_private_addresses": "on"})
    return error


def assert_refused_after(wid, key, seen_before):
    """wid ends 'failed', refused at the address, and the mock saw no more
    requests of its account than seen_before."""
    row = cluster.wait_withdrawal(wid, ["failed", "succeeded", "submitted", "processing", "unknown", "review"],
                                  ("state", "last_error"), timeout=20)
    errors = attempt_errors(wid)
    assert row["state"] == "failed", (row, errors)
    assert len(errors) == 2 and all("address 127.0.0.1 is not public" in e for e in errors), errors
    assert len(requests_with(key)) == seen_before, requests_with(key)[seen_before:]
    return errors[0]


def test_allow_http_off_stops_existing_http_accounts():
    account, key = new_account()     # created while withdraw.allow_http is on
    reload(**{"withdraw.allow_http": "off"})
    try:
        wid = create(account, "plainhttp1")
        error = assert_refused(wid, key, "http:// is not allowed (withdraw.allow_http is off)")
    finally:
        reload(**{"withdraw.allow_http": "on"})
    return error


def test_allowed_hosts_is_checked_when_a_request_is_sent():
    account, key = new_account()     # created while the list is empty
    reload(**{"withdraw.allowed_hosts": "api.zoomex.example, *.example.net"})
    try:
        wid = create(account, "hostlist1")
        error = assert_refused(wid, key, 'host "127.0.0.1" is not in withdraw.allowed_hosts')
        # listed, the same account is served
        reload(**{"withdraw.allowed_hosts": "api.zoomex.example, 127.0.0.1"})
        ok = create(account, "hostlist2")
        cluster.wait_withdrawal(ok, ["submitted", "processing", "succeeded"])
    finally:
        reload(**{"withdraw.allowed_hosts": None})
    return error


def test_withdraw_sync_in_a_backend_is_guarded_too():
    import psycopg2
    cluster.sql("SELECT withdraw_account_create('ngp99', 'p99', %s, %s, %s)",
                (mock.base_url("p99"), json.dumps({"api_key": "ngp99key", "api_secret": "p99-" + "q" * 12}),
                 json.dumps({"sync_interval_ms": 3600000})))
    errors, leaked = [], []
    for setting, value in (("withdraw.allow_private_addresses", "off"), ("withdraw.allowed_hosts", "api.p99.example")):
        reload(**{setting: value})
        t0 = time.time()
        try:
            cluster.sql("SELECT withdraw_sync('ngp99')")
            raise AssertionError(f"withdraw_sync was not refused with {setting} = {value}")
        except psycopg2.Error as e:
            errors.append((e.pgcode, e.diag.message_detail))
        finally:
            t1 = time.time()
            reload(**{setting: "on" if setting.endswith("addresses") else None})
        # nothing of this account reached the mock meanwhile (the worker's
        # scheduled sync, retried with backoff, is refused as well)
        leaked += [r for r in mock.requests("p99") if r.get("api_key") == "ngp99key" and t0 <= r["t"] <= t1]
    assert [c for c, _ in errors] == ["08006", "08006"], errors
    assert errors[0][1].startswith("refused before sending: address 127.0.0.1 is not public: loopback"), errors
    assert errors[1][1] == 'refused before sending: host "127.0.0.1" is not in withdraw.allowed_hosts', errors
    assert leaked == [], leaked
    return "; ".join(d for _, d in errors)


class Listener:
    """A TCP listener on 127.0.0.1 that counts connections and keeps the
    first bytes of each; it answers each request with a 502."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.first_lines = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.settimeout(2)
            try:
                data = conn.recv(4096)
                self.first_lines.append(data.split(b"\r\n", 1)[0].decode(errors="replace"))
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            conn.close()

    def close(self):
        self.sock.close()


def test_proxy_variables_of_the_environment_are_ignored():
    listener = Listener()
    proxy = f"http://127.0.0.1:{listener.port}"
    env = dict(os.environ)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        env[var] = proxy
    for var in ("NO_PROXY", "no_proxy"):
        env.pop(var, None)
    other = Cluster().start(env=env)
    try:
        other.sql("CREATE EXTENSION withdraw")
        other.wait_ready()
        key = "ng-proxy"
        KEYS[key] = "guard-proxy-secret-" + "p" * 8
        mock.configure({"zoomex": {"keys": {key: KEYS[key]}}})
        other.sql("SELECT withdraw_account_create('direct', 'zoomex', %s, %s, %s)",
                  (mock.base_url("zoomex"), json.dumps({"api_key": key, "api_secret": KEYS[key]}),
                   json.dumps({"create_interval_ms": 0, "max_attempts": 2})))
        body = {"coin": "USDT", "addressType": 3, "address": "700200", "amount": "1.00", "requestId": "noproxy1"}
        wid = other.value("SELECT withdraw_create('direct', %s)", (json.dumps(body),))
        row = other.wait_withdrawal(wid, ["submitted", "processing", "succeeded", "failed", "unknown", "review"],
                                    ("state", "last_error"))
        assert row["state"] in ("submitted", "processing", "succeeded"), row
        assert listener.connections == 0, listener.first_lines
        assert any("inner-create" in r["path"] for r in requests_with(key)), requests_with(key)
        # withdraw.proxy, set by a superuser, is the only way to a proxy
        other.sql("ALTER SYSTEM SET withdraw.proxy = %s", (proxy,))
        other.sql("SELECT pg_reload_conf()")
        wait_until(lambda: other.value("SHOW withdraw.proxy") == proxy, 10, 0.05, "the reload")
        time.sleep(0.3)
        body["requestId"] = "viaproxy1"
        other.value("SELECT withdraw_create('direct', %s)", (json.dumps(body),))
        line = wait_until(lambda: next((l for l in listener.first_lines if "inner-create" in l), None),
                          15, 0.05, "the create at the configured proxy")
        assert line.startswith(f"POST {mock.base_url('zoomex')}/"), line
    finally:
        other.destroy()
        listener.close()
    return f"environment proxy: 0 connections, request at the mock; withdraw.proxy: {line!r}"


class HoldingListener:
    """Listens on many ports of 127.0.0.1 (libcurl opens at most 64
    connections per host and port); holds every request it receives until
    `target` are open at once or `hold_s` passed, then answers each, and
    every later one at once, with a zoomex success.  Records the peak."""

    def __init__(self, ports, target, hold_s):
        self.sel = selectors.DefaultSelector()
        self.listeners = []
        for _ in range(ports):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            s.listen(4096)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ, "listen")
            self.listeners.append(s)
        self.ports = [s.getsockname()[1] for s in self.listeners]
        self.target, self.hold_s = target, hold_s
        self.waiting = []           # connections with a whole request, unanswered
        self.open_requests = 0
        self.peak = 0
        self.answered = 0
        self.released = False
        self.first_at = None
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def answer(self, conn):
        self.answered += 1
        body = json.dumps({"retCode": 0, "retMsg": "success", "result": {"withdraw_id": f"held{self.answered}"},
                           "retExtInfo": None, "time": int(time.time() * 1000)}).encode()
        try:
            conn.setblocking(True)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        except OSError:
            pass
        conn.close()

    def serve(self):
        buffers = {}
        while not self.stop:
            for key, _ in self.sel.select(0.05):
                if key.data == "listen":
                    try:
                        conn, _ = key.fileobj.accept()
                    except OSError:
                        continue
                    conn.setblocking(False)
                    buffers[conn] = b""
                    self.sel.register(conn, selectors.EVENT_READ, "conn")
                    continue
                conn = key.fileobj
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(conn)
                    buffers.pop(conn, None)
                    conn.close()
                    continue
                buffers[conn] += data
                head, sep, rest = buffers[conn].partition(b"\r\n\r\n")
                if not sep:
                    continue
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if len(rest) < length:
                    continue
                self.sel.unregister(conn)
                buffers.pop(conn)
                if self.released:
                    self.answer(conn)
                    continue
                self.waiting.append(conn)
                self.first_at = self.first_at or time.monotonic()
                self.peak = max(self.peak, len(self.waiting))
            if not self.released and self.waiting and (
                    len(self.waiting) >= self.target or time.monotonic() - self.first_at > self.hold_s):
                self.released = True
                for conn in self.waiting:
                    self.answer(conn)
                self.waiting = []

    def close(self):
        self.stop = True
        self.thread.join(5)
        for s in self.listeners:
            s.close()


def test_more_than_1024_exchanges_in_flight_at_once():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    ports, per_account = 21, 62          # 1,302 exchanges, at most 62 per host and port
    total = ports * per_account
    listener = HoldingListener(ports, total, hold_s=60)
    reload(**{"withdraw.max_in_flight": str(total)})
    try:
        conn = cluster.connect(autocommit=False)
        cur = conn.cursor()
        ids = []
        for p, port in enumerate(listener.ports):
            name = f"held{p}"
            cur.execute("SELECT withdraw_account_create(%s, 'zoomex', %s, %s, %s)",
                        (name, f"http://127.0.0.1:{port}", json.dumps({"api_key": f"h{p}", "api_secret": "s" * 16}),
                         json.dumps({"create_interval_ms": 0, "polls_per_second": 0, "max_in_flight": 64,
                                     "request_timeout_ms": 120000, "poll_interval_ms": 3600000})))
            for i in range(per_account):
                body = {"coin": "USDT", "addressType": 3, "address": "700300", "amount": f"{i + 1}.00",
                        "requestId": f"held{p}x{i}"}
                cur.execute("SELECT withdraw_create(%s, %s)", (name, json.dumps(body)))
                ids.append(cur.fetchone()[0])
        conn.commit()
        conn.close()

        def all_submitted():
            return cluster.value("SELECT count(*) FROM withdraw.withdrawal WHERE id = ANY (%s) AND state = 'submitted'",
                                 (ids,)) == total
        wait_until(all_submitted, 120, 0.5, f"{total} withdrawals to be submitted")
        unsent = cluster.value("SELECT count(*) FROM withdraw.attempt WHERE withdrawal_id = ANY (%s) AND error IS NOT NULL",
                               (ids,))
        assert listener.peak == total and unsent == 0, (listener.peak, unsent)
        assert cluster.worker_pid() is not None
    finally:
        listener.close()
        reload(**{"withdraw.max_in_flight": None})
    return f"{listener.peak} requests held open at once, all {total} then submitted, no failed attempt"


def main():
    run_suite("network guard", globals(),
              {"zoomex": {"keys": KEYS, "create_interval_s": 0, "status_schedule": [["Pending Transfer", 0.2]]}})


if __name__ == "__main__":
    main()
