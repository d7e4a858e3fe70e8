"""Integration suite for withdraw-callbackd (callbackd/): the mock providers
deliver their second confirmations, notifications and webhooks over HTTP to
the daemon, which passes them to withdraw_receive as a role that holds only
withdraw_webhook.  No user code stands between the providers and the database.

  - a ChainUp withdrawal goes from withdraw_create to succeeded with the second
    confirmation answered by the daemon; ccpayment webhooks and fiat_gateway
    notifications settle theirs; a notification that arrives while its create
    is in flight is answered 503 and delivered again by the provider's retries;
  - forged, replayed and stale callbacks get a 4xx and change nothing; each
    callback's source address and HTTP status are in withdraw.callbacks;
  - hostile HTTP (slow headers, a 10 MB body, broken chunked encoding, 10,000
    headers, pipelined garbage) leaves the daemon serving and the workers sending;
  - allowed source networks, X-Forwarded-For only from a trusted proxy, the
    per-address connection limit; the database unreachable or the role a
    superuser: 503, and a database restart outlived; a graceful stop finishes the request in flight; a body
    that drips is cut at request_timeout; HTTPS with certificate and key files;
  - kill -9 of the daemon while notifications flow loses none: the provider's
    retries deliver them once it is back.

Run: python3 test/integration/test_callbackd.py [name-filter ...]  (as a non-root user,
with the extension and the daemon installed: make install)
"""

import base64
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

from cryptography.hazmat.primitives import serialization

from harness import free_port, rsa_key_pair, run_suite, wait_until
from callbackd_proc import Callbackd, wait_exit

cluster = None
mock = None
daemon = None
extra_daemons = []
WALLET_PUB = None

APP_ID = "cbd-chainup"
CCP_APP, CCP_SECRET = "cbd-ccp", "cbd-ccp-secret-5f1e"
FIAT_UID, FIAT_SECRET = "cbd-fiat", "CBDFIATSECRET77"
# given in the daemon's connection string: it must never reach its log
CONNINFO_SECRET = "cbd-conninfo-password-9a7c"

MERCHANT_PEM, MERCHANT_PUB = rsa_key_pair()
FOREIGN_PEM, _ = rsa_key_pair()


# -- helpers

def seal_foreign(plaintext):
    """A chainup envelope sealed with a key that is not the platform's."""
    key = serialization.load_pem_private_key(FOREIGN_PEM.encode(), None)
    n, d = key.private_numbers().public_numbers.n, key.private_numbers().d
    k = (n.bit_length() + 7) // 8
    data, out = plaintext.encode(), b""
    for i in range(0, max(len(data), 1), 234):
        chunk = data[i:i + 234]
        block = b"\x00\x01" + b"\xff" * (k - 3 - len(chunk)) + b"\x00" + chunk
        out += pow(int.from_bytes(block, "big"), d, n).to_bytes(k, "big")
    return base64.urlsafe_b64encode(out).decode().rstrip("=")


def wallet_envelope(obj):
    return mock.call("POST", "/_mock/chainup/envelope", {"json": obj})["data"]


def create_cu(request_id, **fields):
    body = {"request_id": request_id, "from_uid": "3529218", "to_address": "0xabc", "amount": "1.25",
            "symbol": "usdt"}
    body.update(fields)
    return cluster.value("SELECT withdraw_create('cu1', %s)", (json.dumps(body),))


def create_ccp(moid):
    body = {"merchant_order_id": moid, "address": "0xabc0000000000000000000000000000000000001",
            "token_id": "8e5741cf-6e51-4892-9d04-3d40e1dd0128", "value": "1.5"}
    return cluster.value("SELECT withdraw_create('ccp', %s)", (json.dumps(body),))


def create_fiat(orderid):
    body = {"orderid": orderid, "currency": "KRW", "amount": "100.00", "userip": "1.2.3.4", "pay_code": "1004",
            "bank_id": 1001, "bank_account": "Kim", "bank_no": "123456"}
    return cluster.value("SELECT withdraw_create('fiat', %s)", (json.dumps(body),))


def callbacks(wid):
    return [tuple(r) for r in cluster.sql("SELECT kind, verdict, host(source), http_status FROM withdraw.callbacks"
                                          " WHERE withdrawal_id = %s ORDER BY id", (wid,))]


def chainup_notes(request_id, kind=None):
    notes = mock.call("GET", f"/_mock/chainup/notifications?request_id={request_id}")
    return [n for n in notes if kind in (None, n["kind"])]


def unlinked_rows():
    return cluster.value("SELECT count(*) FROM withdraw.callback WHERE withdrawal_id IS NULL")


def connect():
    return socket.create_connection(("127.0.0.1", daemon.port), timeout=5)


def exchange(data, timeout=5):
    """Sends raw bytes on a new connection; returns what came back until the
    daemon closed it (or timeout)."""
    s = connect()
    s.settimeout(timeout)
    out = b""
    try:
        s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    return out


def status_of(reply):
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None


def other_daemon(accounts=("ccp",), **settings):
    d = Callbackd(cluster, list(accounts), **settings).start()
    extra_daemons.append(d)
    return d


# -- tests

def test_health():
    assert daemon.health() == 200
    return "GET /health: 200"


def test_chainup_withdrawal_settles_through_the_daemon():
    wid = create_cu("cbd-e2e")
    cluster.wait_withdrawal(wid, ["succeeded"], timeout=20)
    rows = callbacks(wid)
    # the platform asked while the create was in flight; the daemon answered
    assert rows[0] == ("confirm", "confirmed", "127.0.0.1", 200), rows
    assert ("withdrawal", "applied", "127.0.0.1", 200) in rows, rows
    assert all(r[3] == 200 for r in rows if r[1] in ("applied", "unchanged", "confirmed")), rows
    confirm = chainup_notes("cbd-e2e", "confirm")[0]
    assert confirm["delivered"] and confirm["attempts"][0]["http_status"] == 200, confirm
    notes = chainup_notes("cbd-e2e", "withdraw")
    assert notes and all(n["delivered"] for n in notes), notes
    assert mock.ledger("chainup")["executions"]["cbd-e2e"] == 1
    return f"callbacks {[(k, v, s) for k, v, _, s in rows]}"


def test_a_notification_during_the_create_is_answered_503_and_sent_again():
    # the platform executes, then holds its answer past the worker's timeout:
    # its notification of the new record finds the row still 'sending'
    mock.fault(provider="chainup", path="/billing/withdraw", kind="timeout_after", delay_s=4)
    wid = create_cu("cbd-deferred", to_address="hold-0xd1")
    rows = wait_until(lambda: [r for r in callbacks(wid) if r[1] in ("applied", "unchanged")] and callbacks(wid),
                      25, 0.1, "the notification to be applied after its retries")
    assert ("withdrawal", "deferred", "127.0.0.1", 503) in rows, rows
    first = [n for n in chainup_notes("cbd-deferred", "withdraw")][0]
    statuses = [a["http_status"] for a in first["attempts"]]
    assert statuses[0] == 503 and statuses[-1] == 200 and first["delivered"], statuses
    assert mock.ledger("chainup")["executions"]["cbd-deferred"] == 1
    return f"first notification answered {statuses}"


def test_ccpayment_webhook_through_the_daemon():
    # status queries fail meanwhile: only the webhook can settle it
    mock.fault(provider="ccpayment", path="/bill/info", kind="http_503", duration_s=15)
    wid = create_ccp("cbd-ccp-1")
    cluster.wait_withdrawal(wid, ["succeeded"], timeout=20)
    rows = callbacks(wid)
    assert ("withdrawal", "applied", "127.0.0.1", 200) in rows, rows
    hooks = mock.call("GET", "/_mock/ccpayment/webhooks?order=cbd-ccp-1")
    assert hooks and hooks[0]["acked"] and hooks[0]["attempts"][-1]["http_status"] == 200, hooks
    mock.call("DELETE", "/_mock/faults")
    return f"callbacks {rows}"


def test_fiat_notification_through_the_daemon():
    wid = create_fiat("cbd-fiat-1")
    cluster.wait_withdrawal(wid, ["succeeded"], timeout=20)
    rows = callbacks(wid)
    assert ("withdrawal", "applied", "127.0.0.1", 200) in rows, rows
    notes = mock.call("GET", "/_mock/fiat_gateway/notifications?orderid=cbd-fiat-1")
    assert notes and notes[-1]["acked"], notes
    return f"callbacks {rows}"


def test_forged_replayed_and_stale_callbacks_are_refused():
    wid = cluster.value("SELECT id FROM withdraw.withdrawals WHERE idempotency_key = 'cbd-e2e'")
    before = cluster.withdrawal(wid, ("state", "txid", "provider_id"))
    note = {"charset": "utf-8", "version": "v2", "side": "withdraw", "notify_time": str(int(time.time() * 1000)),
            "request_id": "cbd-e2e", "id": before["provider_id"], "uid": "3529218", "symbol": "usdt",
            "amount": "1.25", "address_to": "0xabc", "txid": "0xforged", "confirmations": "1", "status": "4"}
    seen = {}
    # forged: sealed with a foreign key
    seen["forged chainup"] = daemon.post("cu1", "notify", f"app_id={APP_ID}&data={seal_foreign(json.dumps(note))}")
    # stale: authentic, four hours old (the window is 3 h)
    stale = dict(note, notify_time=str(int(time.time() * 1000) - 4 * 3600 * 1000))
    seen["stale chainup"] = daemon.post("cu1", "notify", f"app_id={APP_ID}&data={wallet_envelope(stale)}")
    # replayed: the platform's own second confirmation, sent again after the answer
    form = chainup_notes("cbd-e2e", "confirm")[0]["form"]
    seen["replayed confirmation"] = daemon.post("cu1", "confirm", form,
                                                {"Content-Type": "application/x-www-form-urlencoded"})
    assert seen["forged chainup"] == (403, "FAILURE"), seen
    assert seen["stale chainup"][0] == 409, seen
    assert seen["replayed confirmation"] == (409, "FAILURE"), seen
    # ccpayment: a wrong signature, and a right one with a timestamp an hour old
    url = daemon.url("ccp", "notify")
    body = json.dumps({"pay_status": "failed", "merchant_order_id": "cbd-ccp-1", "withdraw_amount": "1.5"})
    f1 = mock.call("POST", "/_mock/ccpayment/webhook", {"app_id": CCP_APP, "body": body, "url": url, "sign_ok": False})
    f2 = mock.call("POST", "/_mock/ccpayment/webhook", {"app_id": CCP_APP, "body": body, "url": url,
                                                         "timestamp": int(time.time()) - 3600})
    # fiat_gateway: a wrong sign
    f3 = mock.call("POST", "/_mock/fiat_gateway/notify", {"uid": FIAT_UID, "sign_ok": False, "url": daemon.url("fiat", "notify"),
                                                           "fields": {"uid": FIAT_UID, "orderid": "cbd-fiat-1", "amount": "100.00",
                                                                      "status": "failed", "transactionid": "1",
                                                                      "timestamp": str(int(time.time()))}})

    def attempted(path, ident):
        items = [x for x in mock.call("GET", path) if x["id"] == ident]
        return items and items[0]["attempts"] and items[0]["attempts"][0]["http_status"] and items[0]["attempts"][0]
    a1 = wait_until(lambda: attempted("/_mock/ccpayment/webhooks", f1["webhook_id"]), 10, 0.05, "forged webhook")
    a2 = wait_until(lambda: attempted("/_mock/ccpayment/webhooks", f2["webhook_id"]), 10, 0.05, "stale webhook")
    a3 = wait_until(lambda: attempted("/_mock/fiat_gateway/notifications", f3["notification_id"]), 10, 0.05,
                    "forged notification")
    assert (a1["http_status"], a2["http_status"], a3["http_status"]) == (403, 403, 403), (a1, a2, a3)
    # nothing changed, and each refusal is recorded with its source and status
    assert cluster.withdrawal(wid, ("state", "txid", "provider_id")) == before
    for key, state in (("cbd-ccp-1", "succeeded"), ("cbd-fiat-1", "succeeded")):
        assert cluster.value("SELECT state FROM withdraw.withdrawals WHERE idempotency_key = %s", (key,)) == state
    refused = cluster.sql("SELECT verdict, http_status, host(source) FROM withdraw.callbacks"
                          " WHERE http_status BETWEEN 400 AND 499 ORDER BY id")
    assert [r[1] for r in refused] == [403, 409, 409, 403, 403, 403], refused
    assert all(r[2] == "127.0.0.1" for r in refused), refused
    return f"{[s for s, _ in seen.values()]} + ccpayment/fiat {a1['http_status']}, {a2['http_status']}, {a3['http_status']}"


def test_hostile_http_leaves_it_serving_and_the_workers_sending():
    pid = daemon.pid()
    unlinked = unlinked_rows()
    # slow headers: 100 connections that never finish theirs
    slow = []
    for _ in range(100):
        s = connect()
        s.sendall(b"POST /ccp/notify HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        slow.append(s)
    # while they hang: a withdrawal is sent, confirmed through the daemon and settled
    wid = create_cu("cbd-hostile")
    started = time.monotonic()
    assert daemon.health() == 200 and time.monotonic() - started < 2
    found = {}
    # a 10 MB body announced: 413 before a byte of it is read
    found["10 MB announced"] = status_of(exchange(b"POST /ccp/notify HTTP/1.1\r\nHost: a\r\n"
                                                  b"Content-Length: 10485760\r\n\r\n"))
    # a 10 MB body sent chunked: the connection is cut past the limit
    s = connect()
    sent = 0
    try:
        s.sendall(b"POST /ccp/notify HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        while sent < 10 * 1024 * 1024:
            s.sendall(chunk)
            sent += 0x10000
        s.sendall(b"0\r\n\r\n")
        s.settimeout(5)
        found["10 MB chunked"] = status_of(s.recv(4096)) or "closed"
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        found["10 MB chunked"] = "closed"
    finally:
        s.close()
    # broken chunked encoding
    found["broken chunked"] = status_of(exchange(b"POST /ccp/notify HTTP/1.1\r\nHost: a\r\n"
                                                 b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")) or "closed"
    # 10,000 headers, and 100 small ones (under the byte limit, over the count)
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(10000))
    found["10,000 headers"] = status_of(exchange(b"POST /ccp/notify HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n")) or "closed"
    # (whole lines: a line cut in the middle is malformed HTTP, 400 from newer libmicrohttpd)
    hundred = b"".join(b"X-H%d: v\r\n" % i for i in range(100))
    found["100 headers"] = status_of(exchange(b"POST /ccp/notify HTTP/1.1\r\nHost: a\r\n" + hundred +
                                              b"Content-Length: 0\r\n\r\n"))
    # a good request with garbage pipelined behind it
    reply = exchange(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n\x00\x01\x02GARBAGE \xff\xfe HTTP/9.9\r\n\r\n")
    found["pipelined garbage"] = [int(p.split(b" ", 1)[0]) for p in reply.split(b"HTTP/1.1 ")[1:]]

    assert found["10 MB announced"] == 413, found
    assert found["10 MB chunked"] == "closed" or found["10 MB chunked"] == 413, found
    assert found["broken chunked"] in (400, "closed"), found
    assert found["10,000 headers"] in (431, 413, 400, "closed"), found
    assert found["100 headers"] == 431, found
    assert found["pipelined garbage"][0] == 200 and all(s == 400 for s in found["pipelined garbage"][1:]), found
    # none of it reached the database
    assert unlinked_rows() == unlinked, (unlinked_rows(), unlinked)
    # the workers went on: confirmed through the daemon while all this went on
    cluster.wait_withdrawal(wid, ["processing", "succeeded"], timeout=20)
    assert callbacks(wid)[0] == ("confirm", "confirmed", "127.0.0.1", 200), callbacks(wid)
    # the slow ones are closed after the inactivity timeout (3 s here)
    time.sleep(4)
    closed = 0
    for s in slow:
        s.settimeout(2)
        try:
            closed += s.recv(100) == b""
        except (ConnectionResetError, socket.timeout):
            closed += 1
        s.close()
    assert closed == 100, closed
    assert daemon.pid() == pid and daemon.health() == 200
    oversize = [a for a in daemon.access_lines("/ccp/notify") if a["status"] == "413"]
    assert oversize, "no 413 in the access log"
    return f"{found}; 100 slow connections closed; same pid"


def test_allowed_sources_and_forwarded_for_from_a_trusted_proxy():
    behind = other_daemon(allow="192.0.2.0/24", trusted_proxies="127.0.0.1")
    body = json.dumps({"pay_status": "success", "merchant_order_id": "nobody"})
    # the proxy itself is not allowed
    r1 = behind.post("ccp", "notify", body)
    # a client in the allowed network, as the proxy says: reaches the database (not authentic there)
    r2 = behind.post("ccp", "notify", body, {"X-Forwarded-For": "192.0.2.9"})
    # an address the client wrote itself, left of the one the proxy appended: not believed
    r3 = behind.post("ccp", "notify", body, {"X-Forwarded-For": "192.0.2.9, 198.51.100.1"})
    assert r1 == (403, "source not allowed\n") and r3 == (403, "source not allowed\n"), (r1, r3)
    assert r2 == (403, "not authentic"), r2
    src = cluster.value("SELECT host(source) FROM withdraw.callbacks ORDER BY id DESC LIMIT 1")
    assert src == "192.0.2.9", src
    # without a trusted proxy, X-Forwarded-For is ignored and the peer refused at once
    direct = other_daemon(allow="192.0.2.0/24")
    try:
        r4 = direct.post("ccp", "notify", body, {"X-Forwarded-For": "192.0.2.9"})
    except (ConnectionError, urllib.error.URLError, OSError) as e:
        r4 = type(e).__name__
    assert not isinstance(r4, tuple), r4
    # at most 3 connections per address
    limited = other_daemon(max_connections_per_ip=3)
    held = [socket.create_connection(("127.0.0.1", limited.port)) for _ in range(3)]
    try:
        r5 = limited.health()
    except (ConnectionError, urllib.error.URLError, OSError) as e:
        r5 = type(e).__name__
    for s in held:
        s.close()
    time.sleep(0.2)
    r6 = limited.health()
    assert r5 != 200 and r6 == 200, (r5, r6)
    return f"proxy {r1[0]}, forwarded {r2[0]} (db), spoofed {r3[0]}, direct {r4}, 4th connection {r5}"


def test_database_unreachable_or_role_too_strong_is_503():
    down = other_daemon(database=f"host=127.0.0.1 port={free_port()} dbname=postgres user=callbackd")
    r1 = down.post("ccp", "notify", "{}")
    h1 = down.health()
    su = other_daemon(database=f"host={cluster.dir} port={cluster.port} dbname=postgres user=postgres")
    r2 = su.post("ccp", "notify", "{}")
    assert r1[0] == 503 and h1 == 503 and r2[0] == 503, (r1, h1, r2)
    assert "db_role_refused" in su.log_text()
    return f"unreachable {r1}, superuser {r2}"


def test_graceful_stop_finishes_the_request_in_flight():
    d = other_daemon()
    body = json.dumps({"pay_status": "success", "merchant_order_id": "nobody"}).encode()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"POST /ccp/notify HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10])
    time.sleep(0.3)
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # no new connection is accepted meanwhile
    try:
        socket.create_connection(("127.0.0.1", d.port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    s.sendall(body[10:])
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
    s.close()
    code = wait_exit(d.proc, 10)
    assert status_of(reply) == 403 and refused and code == 0, (reply[:40], refused, code)
    return "the request in flight answered (by the database), new connections refused, exit 0"


def test_a_dripping_body_is_cut_at_request_timeout():
    d = other_daemon(timeout=3, request_timeout=2)
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"POST /ccp/notify HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
    started = time.monotonic()
    cut = None
    try:
        for _ in range(40):         # a byte every 0.25 s: never silent for 3 s
            s.sendall(b"x")
            time.sleep(0.25)
    except (BrokenPipeError, ConnectionResetError):
        cut = time.monotonic() - started
    finally:
        s.close()
    assert cut is not None and cut < 6, cut
    assert wait_until(lambda: [a for a in d.access_lines("/ccp/notify") if a["status"] == "408"], 5, 0.1, "a 408 line")
    assert d.health() == 200
    return f"cut after {cut:.1f} s (request_timeout 2 s)"


def test_tls_with_certificate_and_key_files():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import datetime
    import ssl
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    d0 = os.path.join(cluster.dir, "tls")
    os.makedirs(d0, exist_ok=True)
    cert_file, key_file = os.path.join(d0, "cert.pem"), os.path.join(d0, "key.pem")
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    d = other_daemon(tls_cert=cert_file, tls_key=key_file)
    ctx = ssl.create_default_context(cafile=cert_file)
    body = json.dumps({"pay_status": "success", "merchant_order_id": "nobody"}).encode()
    req = urllib.request.Request(f"https://127.0.0.1:{d.port}/ccp/notify", data=body, method="POST")
    try:
        urllib.request.urlopen(req, timeout=10, context=ctx)
        over_tls = None
    except urllib.error.HTTPError as e:
        over_tls = (e.code, e.read().decode())
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{d.port}/health", timeout=5)
        plain = "answered"
    except (urllib.error.URLError, ConnectionError, OSError) as e:
        plain = type(e).__name__
    assert over_tls == (403, "not authentic") and plain != "answered", (over_tls, plain)
    assert "BEGIN" not in d.log_text()
    return f"HTTPS: {over_tls[0]} from the database; plain HTTP: {plain}"


def test_kill_9_while_notifications_flow_loses_none():
    """fiat_gateway has no status query: its notifications are the only way a
    withdrawal settles.  A third of them reach a dead daemon."""
    global daemon
    mock.configure({"fiat_gateway": {"settle_after_s": None}})
    n = 30
    keys = [f"cbd-k9-{i}" for i in range(n)]
    ids = [create_fiat(k) for k in keys]
    wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.withdrawals WHERE idempotency_key LIKE 'cbd-k9-%%'"
                                     " AND state = 'submitted'") == n, 30, 0.1, "all to be submitted")
    stop = threading.Event()
    load = {"ok": 0, "failed": 0}

    def hammer():          # forged webhooks and health checks meanwhile: load
        while not stop.is_set():
            try:
                daemon.post("ccp", "notify", "{}", timeout=2)
                load["ok"] += 1
            except OSError:
                load["failed"] += 1
    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    for k in keys[:10]:
        mock.call("POST", "/_mock/fiat_gateway/settle", {"orderid": k, "status": "success"})
    time.sleep(0.1)
    daemon.kill9()
    for k in keys[10:20]:
        mock.call("POST", "/_mock/fiat_gateway/settle", {"orderid": k, "status": "success"})
    time.sleep(1.5)
    daemon.start()
    for k in keys[20:]:
        mock.call("POST", "/_mock/fiat_gateway/settle", {"orderid": k, "status": "success"})
    try:
        wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.withdrawals WHERE idempotency_key LIKE"
                                         " 'cbd-k9-%%' AND state = 'succeeded'") == n, 40, 0.2, "all to succeed")
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        mock.configure({"fiat_gateway": {"settle_after_s": 0.5}})
    notes = [x for x in mock.call("GET", "/_mock/fiat_gateway/notifications") if x["orderid"] in keys]
    failed_first = [x for x in notes if x["attempts"][0]["error"]]
    assert len(failed_first) >= 10, [x["attempts"][0] for x in notes]
    assert all(x["acked"] for x in notes), [x for x in notes if not x["acked"]]
    applied = cluster.value("SELECT count(*) FROM withdraw.callbacks WHERE withdrawal_id = ANY(%s) AND verdict = 'applied'",
                            (ids,))
    assert applied == n, applied
    return (f"{len(failed_first)} of {n} first deliveries hit the dead daemon; all {n} applied after its restart; "
            f"load {load['ok']} requests, {load['failed']} refused")


def test_access_log_names_requests_never_secrets():
    text = daemon.log_text() + "".join(d.log_text() for d in extra_daemons)
    lines = daemon.access_lines()
    assert len(lines) > 50, len(lines)
    assert {"peer", "client", "method", "route", "status", "verdict", "in", "out", "ms", "end"} <= set(lines[0]), lines[0]
    for needle in (CONNINFO_SECRET, CCP_SECRET, FIAT_SECRET, "cbd-k9-", "merchant_order_id", "pay_status",
                   "app_id=", "X-H1", "GARBAGE", MERCHANT_PEM.splitlines()[1]):
        assert needle not in text, f"{needle!r} is in the daemon's log"
    return f"{len(text.splitlines())} lines, none with a body, header value or secret"


def test_database_restart_503_then_reconnects():
    """The daemon outlives a database restart: 503 while it is down (the
    providers retry), its connections re-opened with backoff once it is back."""
    body = json.dumps({"pay_status": "success", "merchant_order_id": "nobody"})
    assert daemon.post("ccp", "notify", body)[0] == 403
    cluster.stop("fast")
    down = [daemon.post("ccp", "notify", body)[0] for _ in range(8)]
    cluster.start()
    cluster.wait_ready()
    back = wait_until(lambda: (lambda r: r if r[0] == 403 else None)(daemon.post("ccp", "notify", body)),
                      15, 0.1, "the daemon to reach the database again")
    assert set(down) == {503}, down
    assert "event=db_connection_lost" in daemon.log_text() or "event=db_connect_failed" in daemon.log_text()
    return f"down: {down[:3]}...; back: {back}"


def setup():
    global daemon, WALLET_PUB
    cluster.sql("CREATE ROLE callbackd LOGIN IN ROLE withdraw_webhook")
    port = free_port()
    daemon = Callbackd(cluster, ["cu1", "ccp", "fiat"], port=port,
                       database=(f"host={cluster.dir} port={cluster.port} dbname=postgres user=callbackd"
                                 f" password={CONNINFO_SECRET}"))
    WALLET_PUB = mock.call("GET", "/_mock/chainup/keys")["wallet_public_key"]
    mock.configure({
        "chainup": {"merchants": {APP_ID: {"public_key": MERCHANT_PUB, "confirm_url": daemon.url("cu1", "confirm"),
                                           "notify_url": daemon.url("cu1", "notify")}}},
        "ccpayment": {"apps": {CCP_APP: {"secret": CCP_SECRET, "webhook_url": daemon.url("ccp", "notify")}}},
        "fiat_gateway": {"merchants": {FIAT_UID: {"secret": FIAT_SECRET, "sign_mode": "amp_key",
                                                  "balance": "1000000.00"}}}})
    cluster.sql("SELECT withdraw_account_create('cu1', 'chainup', %s, %s, %s)",
                (mock.base_url("chainup"),
                 json.dumps({"app_id": APP_ID, "merchant_private_key": MERCHANT_PEM, "platform_public_key": WALLET_PUB}),
                 json.dumps({"poll_interval_ms": 300, "sync_interval_ms": 3600000})))
    cluster.sql("SELECT withdraw_account_create('ccp', 'ccpayment', %s, %s, %s)",
                (mock.base_url("ccpayment"), json.dumps({"app_id": CCP_APP, "app_secret": CCP_SECRET}),
                 json.dumps({"poll_interval_ms": 300})))
    cluster.sql("SELECT withdraw_account_create('fiat', 'fiat_gateway', %s, %s, %s)",
                (mock.base_url("fiat_gateway"), json.dumps({"uid": FIAT_UID, "secret_key": FIAT_SECRET}),
                 json.dumps({"notify_url": daemon.url("fiat", "notify"), "pay_codes": {"1004": "KRW"}})))
    wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.form_rules WHERE account = 'fiat'"
                                     " AND fetched_at IS NOT NULL"), 10, 0.05, "fiat's form rules")
    daemon.start()


def teardown():
    for d in extra_daemons + ([daemon] if daemon else []):
        d.stop()


def main():
    run_suite("callbackd", globals(),
              {"chainup": {"paying_after_s": 0.5, "success_after_s": 0.5, "retry_delays_s": [0.3, 0.6, 1, 2, 4]},
               "ccpayment": {"settle_after_s": 0.5, "webhook_retry_delays_s": [0.3, 0.6, 1, 2, 4]},
               "fiat_gateway": {"settle_after_s": 0.5, "notify_retry_delays_s": [0.5, 1, 1, 2, 4, 8]}},
              {"withdraw.retry_max_delay": "2000", "withdraw.request_timeout": "3000"},
              setup=setup, teardown=teardown)


if __name__ == "__main__":
    main()
