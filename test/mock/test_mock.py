#!/usr/bin/env python3
"""
test_mock.py - self-test of the mock provider server (python3 test/mock/test_mock.py).

Starts mock_provider.py as a subprocess on a free port (selftest.run_mock) and drives
it with a small client of its own (on selftest.MockClient): the documented signing
vectors, authentication and validation errors, rate limits, duplicates, every fault
kind, query-record status progression, the control API and a clean SIGTERM; then the
p99 section (test_mock_p99.py).
Prints one line per check; exits 0 when all pass, 1 otherwise.
"""

import hashlib
import hmac
import http.client
import json
import os
import re
import sys
import time
import uuid
from urllib.parse import urlencode

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import zoomex  # noqa: E402  (only for the signing-vector unit checks)
import test_mock_p99  # noqa: E402  (the p99 section)
from selftest import MockClient, check, outcome, run_mock, section  # noqa: E402

CREATE = "/zoomex/private/v1/asset/withdraw/inner-create"
QUERY = "/zoomex/private/v1/asset/withdraw/query-record"
KEYS = {f"tk{i:02d}": f"secret-{i:02d}-{uuid.uuid4().hex}" for i in range(16)}
KEYS["XXXXapikey"] = "YYYYsecret"
KEYS["qkey"] = "query-test-secret-" + uuid.uuid4().hex      # query-record listing tests only
KEYS["qrate"] = "query-rate-secret-" + uuid.uuid4().hex     # query-record rate-limit test only
SCHEDULE = [["Pending Review", 0.5], ["Pending Transfer", 0.5]]

SIGNATURES = set()      # every signature the client sent, to prove none is ever echoed


# -- the test's own client -----------------------------------------------------------

def client_sign(secret, params):
    """Zoomex v1 signature, written independently of zoomex.py."""
    def s(v):
        return ("true" if v else "false") if isinstance(v, bool) else str(v)
    text = "&".join(f"{k}={s(params[k])}" for k in sorted(params) if k != "sign")
    sig = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    SIGNATURES.add(sig)
    return sig


class Client(MockClient):
    """Tiny HTTP client; remembers when each api key last did an inner-create."""

    provider = "zoomex"

    def __init__(self, port):
        super().__init__(port)
        self.last_create = {}

    def free_key(self):
        """The key whose last inner-create is oldest, after waiting out its 1 s window."""
        key = min((k for k in KEYS if k.startswith("tk")), key=lambda k: self.last_create.get(k, 0))
        wait = self.last_create.get(key, 0) + 1.1 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return key

    def create_request(self, key, fields, ts=None, rw=5000, secret=None, mutate=None):
        """(body bytes, headers) for inner-create; mutate(body_dict, headers) may tamper."""
        p = dict(fields)
        p.update(api_key=key, timestamp=ts if ts is not None else int(time.time() * 1000),
                 recv_window=rw)
        p["sign"] = client_sign(secret or KEYS.get(key, "nosecret"), p)
        h = {"X-BAPI-API-KEY": key, "X-BAPI-SIGN": p["sign"], "X-BAPI-TIMESTAMP": str(p["timestamp"]),
             "X-BAPI-RECV-WINDOW": str(rw), "Content-Type": "application/json"}
        if mutate:
            mutate(p, h)
        return json.dumps(p).encode(), h

    def create(self, key, fields, conn=None, timeout=10, **kw):
        """POST inner-create; returns (status, parsed JSON or raw bytes)."""
        body, h = self.create_request(key, fields, **kw)
        try:
            status, _, data = self.raw("POST", CREATE, body, h, timeout=timeout, conn=conn)
        finally:
            self.last_create[key] = time.monotonic()
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data

    def query(self, key, params, secret=None, conn=None, mutate=None):
        p = dict(params)
        p.update(api_key=key, timestamp=int(time.time() * 1000), recv_window=5000)
        p["sign"] = client_sign(secret or KEYS[key], p)
        h = {"X-BAPI-API-KEY": key, "X-BAPI-SIGN": p["sign"], "X-BAPI-TIMESTAMP": str(p["timestamp"]),
             "X-BAPI-RECV-WINDOW": "5000"}
        if mutate:
            mutate(p, h)
        status, _, data = self.raw("GET", QUERY + "?" + urlencode(p), None, h, conn=conn)
        return status, json.loads(data)

    def executed(self, rid):
        return self.ledger()["executions"].get(rid, 0)


def new_rid():
    return uuid.uuid4().hex


def fields(rid=None, **over):
    f = {"requestId": rid or new_rid(), "coin": "USDT", "addressType": 3, "address": "123456",
         "amount": "1.5", "remark": "test"}
    f.update(over)
    return {k: v for k, v in f.items() if v is not None}


# -- the checks --------------------------------------------------------------------

def test_vectors():
    section("signing vectors from providers.md")
    worked = {"requestId": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "coin": "USDT", "addressType": 3,
              "address": "123456", "amount": "1", "remark": "test", "api_key": "XXXXapikey",
              "timestamp": 1672196571000, "recv_window": 5000}
    doc_string = ("address=123456&addressType=3&amount=1&api_key=XXXXapikey&coin=USDT&recv_window=5000"
                  "&remark=test&requestId=a1b2c3d4e5f60718293a4b5c6d7e8f90&timestamp=1672196571000")
    doc_sig = "6eedcd99be91f8aa24b1c9034c39f2c2cabc21b1816bf546cc5e192c69e7e323"
    check(zoomex.string_to_sign(worked) == doc_string, "mock: worked example string to sign")
    check(zoomex.sign("YYYYsecret", worked) == doc_sig, "mock: worked example -> 6eedcd99...e323")
    check(client_sign("YYYYsecret", worked) == doc_sig, "client: worked example -> 6eedcd99...e323")
    bybit = {"api_key": "B2Rou0PLPpGqcU0Vu2", "leverage": 100, "symbol": "BTCUSD", "timestamp": 1542434791000}
    bybit_sig = "670e3e4aa32b243f2dedf1dafcec2fd17a440e71b05681550416507de591d908"
    check(zoomex.string_to_sign(bybit) ==
          "api_key=B2Rou0PLPpGqcU0Vu2&leverage=100&symbol=BTCUSD&timestamp=1542434791000",
          "mock: Bybit vector string to sign")
    check(zoomex.sign("t7T0YlFnYXk0Fx3JswQsDrViLg1Gh3DUU5Mr", bybit) == bybit_sig,
          "mock: Bybit vector -> 670e3e4a...d908")
    check(client_sign("t7T0YlFnYXk0Fx3JswQsDrViLg1Gh3DUU5Mr", bybit) == bybit_sig,
          "client: Bybit vector -> 670e3e4a...d908")
    check(zoomex.string_to_sign({"addressType": 1, "address": "x", "Z": 1}) == "Z=1&address=x&addressType=1",
          "mock: byte order (uppercase first, prefix first)")
    return worked, doc_sig


def test_worked_example_on_wire(c, worked, doc_sig):
    section("documented vector over the wire")
    body = dict(worked, sign=doc_sig)
    h = {"X-BAPI-API-KEY": "XXXXapikey", "X-BAPI-SIGN": doc_sig, "X-BAPI-TIMESTAMP": "1672196571000",
         "X-BAPI-RECV-WINDOW": "5000", "Content-Type": "application/json"}
    st, _, data = c.raw("POST", CREATE, json.dumps(body), h)
    r = json.loads(data)
    check(st == 200 and r["retCode"] == 10002,
          "doc example with its signature passes the sign check, then fails the 2023 timestamp (10002)", r)
    bad = doc_sig[:-1] + ("0" if doc_sig[-1] != "0" else "1")
    st, _, data = c.raw("POST", CREATE, json.dumps(dict(body, sign=bad)), dict(h, **{"X-BAPI-SIGN": bad}))
    r = json.loads(data)
    check(r["retCode"] == 10004 and r["retMsg"] == "error sign!", "one wrong hex digit -> 10004 error sign!", r)
    check(c.executed(worked["requestId"]) == 0, "neither was executed")


def test_success_and_keepalive(c):
    section("success shape and keep-alive")
    key = c.free_key()
    rid = new_rid()
    body, h = c.create_request(key, fields(rid))
    st, hdrs, data = c.raw("POST", CREATE, body, h)
    c.last_create[key] = time.monotonic()
    r = json.loads(data)
    check(st == 200, "HTTP 200")
    check(list(r) == ["retCode", "retMsg", "result", "retExtInfo", "time"], "exact envelope keys", list(r))
    check(r["retCode"] == 0 and r["retMsg"] == "success" and r["retExtInfo"] is None,
          "retCode 0, retMsg success, retExtInfo null")
    check(r["result"] == {"withdraw_id": "10195"}, "first withdraw_id is the string \"10195\"", r["result"])
    check(isinstance(r["time"], int) and abs(r["time"] - time.time() * 1000) < 5000, "time is now in ms")
    check(hdrs.get("Content-Length") == str(len(data)), "Content-Length sent")
    led = c.ledger()
    w = led["withdrawals"][-1]
    check(led["executions"].get(rid) == 1 and w["requestId"] == rid and w["api_key"] == key
          and w["amount"] == "1.5" and w["addressType"] == 3 and w["remark"] == "test"
          and isinstance(w["executed_at"], float), "ledger records one execution with the request's fields", w)

    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    conn.connect()
    local = conn.sock.getsockname()
    key2 = c.free_key()
    outs = []
    for i in range(3):
        st, out = c.create(key2, fields(), conn=conn) if i == 1 else c.query(key2, {"withdrawType": 1}, conn=conn)
        outs.append(st)
    st, _, _ = c.raw("GET", "/_mock/health", conn=conn)
    same = conn.sock is not None and conn.sock.getsockname() == local
    conn.close()
    check(outs == [200, 200, 200] and st == 200 and same, "four requests reuse one connection (HTTP/1.1 keep-alive)")


def test_auth_errors(c):
    section("headers, api key, signature, timestamp")
    rid = new_rid()
    key = c.free_key()

    def drop(name):
        return lambda p, h: h.pop(name)

    cases = [
        ("missing X-BAPI-SIGN -> 10001", drop("X-BAPI-SIGN"), 10001, 200),
        ("missing X-BAPI-API-KEY -> 10001", drop("X-BAPI-API-KEY"), 10001, 200),
        ("missing X-BAPI-TIMESTAMP -> 10001", drop("X-BAPI-TIMESTAMP"), 10001, 200),
        ("missing X-BAPI-RECV-WINDOW -> 10001", drop("X-BAPI-RECV-WINDOW"), 10001, 200),
        ("missing Content-Type -> 10001", drop("Content-Type"), 10001, 200),
        ("X-BAPI-API-KEY differs from api_key -> 10001", lambda p, h: h.update({"X-BAPI-API-KEY": "qkey"}),
         10001, 200),
        ("X-BAPI-SIGN differs from body sign -> 10001", lambda p, h: h.update({"X-BAPI-SIGN": "0" * 64}),
         10001, 200),
        ("X-BAPI-TIMESTAMP differs from body -> 10001",
         lambda p, h: h.update({"X-BAPI-TIMESTAMP": str(p["timestamp"] + 1)}), 10001, 200),
        ("X-BAPI-RECV-WINDOW differs from body -> 10001", lambda p, h: h.update({"X-BAPI-RECV-WINDOW": "6000"}),
         10001, 200),
        ("timestamp as a string -> 10001", lambda p, h: p.update(timestamp=str(p["timestamp"])), 10001, 200),
        ("body sign missing -> 10001", lambda p, h: p.pop("sign"), 10001, 200),
        ("signature over other params -> 10004", lambda p, h: p.update(amount="2"), 10004, 200),
        ("non-ASCII signature -> 10004",
         lambda p, h: (p.update(sign="\u00e9" * 64), h.update({"X-BAPI-SIGN": "\u00e9" * 64})), 10004, 200),
        ("uppercase hex signature -> 10004",
         lambda p, h: (p.update(sign=p["sign"].upper()), h.update({"X-BAPI-SIGN": p["sign"]})), 10004, 200),
    ]
    for what, mutate, code, http_status in cases:
        st, r = c.create(key, fields(rid), mutate=mutate)
        check(st == http_status and r["retCode"] == code, what, (st, r))
    st, r = c.create("nosuchkey", fields(rid))
    check(st == 401 and r["retCode"] == 10003, "unknown api key -> HTTP 401, 10003", (st, r))
    st, r = c.create(key, fields(rid), secret="wrong-secret")
    check(r["retCode"] == 10004, "signed with the wrong secret -> 10004", r)
    now = int(time.time() * 1000)
    st, r = c.create(key, fields(rid), ts=now - 6000, rw=5000)
    check(r["retCode"] == 10002, "timestamp 6 s old with recv_window 5000 -> 10002", r)
    st, r = c.create(key, fields(rid), ts=now + 1500)
    check(r["retCode"] == 10002, "timestamp 1.5 s in the future -> 10002", r)
    st, r = c.create(key, fields(rid), ts=now - 6000, rw=60000)
    check(r["retCode"] == 0, "same old timestamp inside a 60 s recv_window -> accepted", r)
    check(c.executed(rid) == 1, "only the accepted request was executed")
    key = c.free_key()
    st, r = c.create(key, fields(), ts=int(time.time() * 1000) + 500)
    check(r["retCode"] == 0, "timestamp 0.5 s ahead (< +1000 ms) -> accepted", r)


def test_validation(c):
    section("business parameter validation (10001 naming the field)")
    cases = [
        ("requestId", fields(requestId="")),
        ("requestId", fields(requestId="a" * 65)),
        ("requestId", {k: v for k, v in fields().items() if k != "requestId"}),
        ("coin", fields(coin="")),
        ("addressType", fields(addressType=4)),
        ("addressType", fields(addressType="3")),
        ("areaCode", fields(addressType=2, address="5551234")),
        ("areaCode", fields(addressType=2, areaCode="1", address="5551234")),
        ("address", fields(address="")),
        ("amount", fields(amount="0")),
        ("amount", fields(amount="-1")),
        ("amount", fields(amount="1e3")),
        ("amount", fields(amount=5)),
        ("remark", fields(remark="x" * 51)),
    ]
    before = len(c.ledger()["withdrawals"])
    for field, f in cases:
        st, r = c.create("tk00", f)
        shown = {k: f.get(k) for k in (field,)} if field in f else f"no {field}"
        check(r["retCode"] == 10001 and field in r["retMsg"], f"{field} {shown!s:.40} -> 10001 naming {field}", r)
    check(len(c.ledger()["withdrawals"]) == before, "validation failures executed nothing")
    st0, r0 = c.create(c.free_key(), fields(requestId=str(uuid.uuid4())))
    check(r0.get("retCode") == 0, "requestId as a UUID with hyphens (the seed: Custom ID) -> accepted", r0)
    st, r = c.create(c.free_key(), fields(remark="x" * 50, requestId="A" * 64))
    check(r["retCode"] == 0, "64-char requestId and 50-char remark accepted", r)
    key = c.free_key()
    st, r = c.create(key, fields(addressType=2, areaCode=1, address="5551234", remark=None))
    check(r["retCode"] == 0, "phone with areaCode, no remark accepted", r)
    st, r = c.create(c.free_key(), fields(remark="caf\u00e9 \u2713 a&b=c"))
    check(r["retCode"] == 0, "non-ASCII remark with & and = (signed as raw UTF-8) accepted", r)


def test_rate_limit(c):
    section("rate limit: 1 inner-create per second per key")
    key = c.free_key()
    a, b, d = new_rid(), new_rid(), new_rid()
    t0 = time.monotonic()
    st, r1 = c.create(key, fields(a))
    st, r2 = c.create(key, fields(b))
    check(r1["retCode"] == 0 and r2["retCode"] == 10006 and r2["retMsg"] == "Too many visits!",
          "second request within 1 s -> 10006 Too many visits!", r2)
    st, r3 = c.create(c.free_key(), fields(d))
    check(r3["retCode"] == 0, "another key is not affected", r3)
    time.sleep(max(0, t0 + 0.5 - time.monotonic()))
    st, r4 = c.create(key, fields(b))
    check(r4["retCode"] == 10006, "again at +0.5 s -> 10006", r4)
    time.sleep(max(0, t0 + 1.15 - time.monotonic()))
    st, r5 = c.create(key, fields(b))
    check(r5["retCode"] == 0, "at +1.15 s -> accepted (refused requests do not restart the window)", r5)
    check(c.executed(b) == 1, "the refused requestId was executed once, by the accepted retry")
    time.sleep(max(0, t0 + 1.8 - time.monotonic()))
    st, r6 = c.create(key, fields(), mutate=lambda p, h: p.update(amount="9"))
    st, r7 = c.create(key, fields(coin=""))
    time.sleep(max(0, t0 + 2.35 - time.monotonic()))
    st, r8 = c.create(key, fields())
    check(r6["retCode"] == 10004 and r7["retCode"] == 10001 and r8["retCode"] == 0,
          "bad-signature and invalid requests do not count toward the window", (r6, r7, r8))


def test_duplicates(c):
    section("duplicate requestId")
    key = c.free_key()
    rid = new_rid()
    st, r1 = c.create(key, fields(rid))
    time.sleep(1.1)
    st, r2 = c.create(key, fields(rid))
    check(r1["retCode"] == 0 and r2["retCode"] == 10014 and r2["retMsg"] == "Invalid duplicate request",
          "duplicate_mode error: repeat -> 10014 Invalid duplicate request", r2)
    st, r3 = c.create(c.free_key(), fields(rid))
    check(r3["retCode"] == 10014, "same requestId from another key -> 10014", r3)
    c.ctl("POST", "/config", {"zoomex": {"duplicate_mode": "original"}})
    time.sleep(1.1)
    st, r4 = c.create(key, fields(rid))
    check(r4["retCode"] == 0 and r4["result"] == r1["result"],
          "duplicate_mode original: repeat -> retCode 0 with the original withdraw_id", r4)
    check(c.executed(rid) == 1, "executed exactly once")
    c.ctl("POST", "/config", {"zoomex": {"duplicate_mode": "execute"}})
    time.sleep(1.1)
    st, r5 = c.create(key, fields(rid))
    check(r5["retCode"] == 0 and r5["result"] != r1["result"] and c.executed(rid) == 2,
          "duplicate_mode execute (extra): repeat executes again, ledger shows 2", r5)
    c.ctl("POST", "/config", {"zoomex": {"duplicate_mode": "error"}})
    stats = c.ctl("GET", "/stats?provider=zoomex")[1]
    check(stats["duplicates_refused"] == 3, "stats.duplicates_refused == 3", stats)


def test_faults(c):
    section("fault injection")
    for kind, status in (("http_500", 500), ("http_502", 502), ("http_503", 503), ("http_403", 403)):
        c.fault(path="inner-create", kind=kind)
        rid = new_rid()
        kind_, res, _ = outcome(lambda: c.create(c.free_key(), fields(rid)))
        check(kind_ == "response" and res[0] == status and isinstance(res[1], bytes),
              f"{kind}: HTTP {status} with a non-JSON body", res)
        check(c.executed(rid) == 0, f"{kind}: not executed")

    for kind, executed in (("timeout_before", 0), ("timeout_after", 1)):
        c.fault(path="inner-create", kind=kind, delay_s=0.6)
        rid = new_rid()
        how, _, took = outcome(lambda: c.create(c.free_key(), fields(rid)))
        check(how == "closed" and took >= 0.55, f"{kind}: no answer, connection closed after delay_s",
              (how, round(took, 2)))
        check(c.executed(rid) == executed, f"{kind}: executed {executed} time(s)")
    c.fault(path="inner-create", kind="timeout_before", delay_s=5)
    how, _, took = outcome(lambda: c.create(c.free_key(), fields(), timeout=0.5))
    check(how == "timeout", "timeout_before with delay 5 s: client times out first", how)

    for kind, executed in (("reset", 0), ("reset_after", 1)):
        c.fault(path="inner-create", kind=kind)
        rid = new_rid()
        how, res, took = outcome(lambda: c.create(c.free_key(), fields(rid)))
        check(how == "reset", f"{kind}: connection reset (RST)", (how, res))
        check(c.executed(rid) == executed, f"{kind}: executed {executed} time(s)")
        if kind == "reset_after":
            st, r = c.create(c.free_key(), fields(rid))
            check(r["retCode"] == 10014, "reset_after then retry of the same requestId -> 10014", r)

    for kind, executed in (("garbage", 0), ("garbage_after", 1)):
        c.fault(path="inner-create", kind=kind)
        rid = new_rid()
        st, r = c.create(c.free_key(), fields(rid))
        check(st == 200 and isinstance(r, bytes), f"{kind}: HTTP 200, body is not JSON", r)
        check(c.executed(rid) == executed, f"{kind}: executed {executed} time(s)")

    c.fault(path="inner-create", kind="retcode", code=10016)
    rid = new_rid()
    st, r = c.create(c.free_key(), fields(rid))
    check(st == 200 and r["retCode"] == 10016 and r["retMsg"] == "injected"
          and list(r) == ["retCode", "retMsg", "result", "retExtInfo", "time"],
          "retcode 10016: injected in the retCode envelope", r)
    check(c.executed(rid) == 0, "retcode: not executed")
    st, r = c.create(c.free_key(), fields(rid))
    check(r["retCode"] == 0, "retcode: retry of the same requestId succeeds", r)

    c.fault(path="inner-create", kind="http_503", count=2)
    got = [c.create(c.free_key(), fields())[0] for _ in range(3)]
    check(got == [503, 503, 200], "count 2: two requests fail, the third passes", got)

    c.fault(path="inner-create", kind="down", duration_s=0.8)
    t0 = time.monotonic()
    got = []
    while time.monotonic() - t0 < 0.6:
        got.append(outcome(lambda: c.create("tk00", fields(coin="")))[0])
        time.sleep(0.1)
    time.sleep(max(0, t0 + 0.9 - time.monotonic()))
    after = outcome(lambda: c.create(c.free_key(), fields()))
    check(len(got) >= 3 and set(got) == {"reset"}, f"down 0.8 s: all {len(got)} requests reset", got)
    check(after[0] == "response" and after[1][1]["retCode"] == 0, "down: requests pass after duration_s")

    c.fault(path="inner-create", kind="http_502", duration_s=0.5)
    first = c.create("tk00", fields(coin=""))[0]
    time.sleep(0.6)
    second = c.create("tk00", fields(coin=""))[0]
    check(first == 502 and second == 200, "duration_s on http_502: applies, then expires", (first, second))

    c.fault(path="query-record", kind="retcode", code=10006)
    key = c.free_key()
    st, r1 = c.create(key, fields())
    st, r2 = c.query(key, {"withdrawType": 1})
    st, r3 = c.query(key, {"withdrawType": 1})
    check(r1["retCode"] == 0, "a query-record fault does not touch inner-create")
    check(r2.get("ret_code") == 10006 and r2.get("ret_msg") == "injected" and "retCode" not in r2,
          "retcode on query-record uses the legacy ret_code envelope", r2)
    check(r3["ret_code"] == 0, "next query passes")

    st, out = c.ctl("POST", "/faults", {"provider": "zoomex", "kind": "nonsense"})
    check(st == 400 and out["ok"] is False, "unknown fault kind -> HTTP 400", out)
    log = c.ctl("GET", "/requests?provider=zoomex")[1]
    kinds = {e["fault"] for e in log if e["fault"]}
    want = {"http_500", "http_502", "http_503", "http_403", "timeout_before", "timeout_after", "reset",
            "reset_after", "garbage", "garbage_after", "retcode", "down"}
    check(kinds == want, "request log names every injected fault", kinds ^ want)
    rst = [e for e in log if e["fault"] == "reset"]
    check(rst and rst[0]["sig_ok"] is True and rst[0]["requestId"],
          "a faulted request is still logged with its requestId and sig_ok", rst[:1])


def test_query_record(c):
    section("query-record")
    c.ctl("POST", "/config", {"zoomex": {"status_schedule": SCHEDULE}})
    others = {}
    for prefix, final in (("fail", "Fail"), ("reject", "Rejected"), ("cancel", "Cancelled"),
                          ("review", "Pending Review")):
        k = c.free_key()
        st, r = c.create(k, fields(address=prefix + "42"))
        others[prefix] = (k, r["result"]["withdraw_id"], final, time.monotonic())
    key = "qkey"
    st, r = c.create(key, fields(address="uid777", coin="USDC", amount="12.34"))
    wid = r["result"]["withdraw_id"]
    t0 = time.monotonic()

    def row_at(at, k=key, w=wid, base=None):
        """The single row for withdrawal w, fetched at base+at seconds (base: its creation)."""
        time.sleep(max(0, (base or t0) + at - time.monotonic()))
        st, r = c.query(k, {"withdrawType": 1, "withdrawId": w})
        return r

    r = row_at(0.2)
    check(list(r) == ["ret_code", "ret_msg", "ext_code", "result", "ext_info", "time_now"]
          and r["ret_code"] == 0 and r["ret_msg"] == "OK" and r["ext_code"] == "" and r["ext_info"] is None
          and re.fullmatch(r"\d+\.\d+", r["time_now"]), "legacy envelope, time_now \"s.fraction\"", r)
    rows = r["result"]["rows"]
    row = rows[0] if rows else {}
    check(len(rows) == 1 and row["status"] == "Pending Review", "at +0.2 s: Pending Review", rows)
    check(set(row) == {"withdraw_id", "tx_id", "withdraw_type", "coin", "chain", "amount", "withdraw_fee",
                       "status", "to_address", "user_id", "tag", "create_time", "update_time"}
          and row["withdraw_type"] == 1 and row["coin"] == "USDC" and row["amount"] == "12.34"
          and row["to_address"] == "uid777" and isinstance(row["create_time"], int)
          and isinstance(row["update_time"], int) and row["tx_id"] == "", "row fields as documented", row)
    u0 = row["update_time"]
    r = row_at(0.75)
    row = r["result"]["rows"][0]
    check(row["status"] == "Pending Transfer" and row["update_time"] > u0, "at +0.75 s: Pending Transfer", row)
    r = row_at(1.3)
    row = r["result"]["rows"][0]
    check(row["status"] == "Transferred successfully" and row["tx_id"] != "",
          "at +1.3 s: Transferred successfully, with a tx_id", row)
    st, r = c.query(key, {"withdrawType": 2, "txid": row["tx_id"]})
    check([x["withdraw_id"] for x in r["result"]["rows"]] == [wid], "txid filter finds it")
    for prefix, (k, w, final, created) in others.items():
        row = row_at(1.3, k, w, created)["result"]["rows"][0]
        check(row["status"] == final and row["tx_id"] == "", f"address {prefix}42 ends as {final}", row)

    st, r = c.query(key, {})
    check(r["ret_code"] == 0 and r["result"]["rows"] == [], "default withdrawType 0 (on-chain) lists nothing")
    st, r = c.query(key, {"withdrawType": 2, "coin": "USDC"})
    check([x["withdraw_id"] for x in r["result"]["rows"]] == [wid], "withdrawType 2 + coin filter")
    st, r = c.query(others["fail"][0], {"withdrawType": 2, "withdrawId": wid})
    check(r["result"]["rows"] == [], "another key cannot see the withdrawal")
    now = int(time.time())
    st, r = c.query(key, {"withdrawType": 1, "startTime": now + 10})
    st2, r2 = c.query(key, {"withdrawType": 1, "startTime": now - 60, "endTime": now + 10})
    check(r["result"]["rows"] == [] and len(r2["result"]["rows"]) >= 1, "startTime/endTime filter on create_time")

    time.sleep(max(0, c.last_create[key] + 1.1 - time.monotonic()))
    c.create(key, fields(address="uid778"))
    time.sleep(1.1)
    c.create(key, fields(address="uid779"))
    st, r = c.query(key, {"withdrawType": 1, "pageSize": 2})
    page1 = [x["withdraw_id"] for x in r["result"]["rows"]]
    st, r2 = c.query(key, {"withdrawType": 1, "pageSize": 2, "cursor": r["result"]["cursor"]})
    page2 = [x["withdraw_id"] for x in r2["result"]["rows"]]
    ids = page1 + page2
    check(len(page1) == 2 and r["result"]["cursor"] and r2["result"]["cursor"] == ""
          and ids == sorted(ids, key=int, reverse=True) and len(set(ids)) == 3 and ids[-1] == wid,
          "pageSize 2 + cursor pages newest first", (page1, page2))

    c.ctl("POST", "/config", {"zoomex": {"time_fields_as_strings": True}})
    st, r = c.query(key, {"withdrawType": 1, "pageSize": 1})
    row = r["result"]["rows"][0]
    c.ctl("POST", "/config", {"zoomex": {"time_fields_as_strings": False}})
    check(isinstance(row["create_time"], str) and row["create_time"].isdigit()
          and isinstance(row["update_time"], str), "time_fields_as_strings (extra): times as strings", row)
    st, r = c.query(key, {"withdrawType": 1, "pageSize": 51})
    check(r["ret_code"] == 10001 and "pageSize" in r["ret_msg"], "pageSize 51 -> 10001", r)
    st, r = c.query(key, {"withdrawType": 1, "coin": "A&B =+%"})
    check(r["ret_code"] == 0 and r["result"]["rows"] == [],
          "values with & = + % are signed decoded and accepted", r)
    st, r = c.query(key, {"withdrawType": 1}, mutate=lambda p, h: p.update(coin="USDT"))
    check(st == 200 and r["ret_code"] == 10004 and r["ret_msg"] == "error sign!", "bad query sign -> 10004", r)
    st, r = c.query(key, {"withdrawType": 1}, mutate=lambda p, h: h.pop("X-BAPI-SIGN"))
    check(r["ret_code"] == 10001, "query without X-BAPI-SIGN -> 10001", r)
    st, r = c.query("tk00", {}, secret="x", mutate=lambda p, h: (p.update(api_key="nokey"),
                                                                h.update({"X-BAPI-API-KEY": "nokey"})))
    check(st == 401 and r["ret_code"] == 10003, "query with unknown key -> HTTP 401, 10003", r)

    def stale(p, h):
        p["timestamp"] = int(time.time() * 1000) - 10000
        p["sign"] = client_sign(KEYS[key], p)
        h.update({"X-BAPI-TIMESTAMP": str(p["timestamp"]), "X-BAPI-SIGN": p["sign"]})
    st, r = c.query(key, {"withdrawType": 1}, mutate=stale)
    check(r["ret_code"] == 10002, "stale query timestamp -> 10002", r)

    k = "qrate"
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    codes = [c.query(k, {"withdrawType": 1}, conn=conn)[1]["ret_code"] for _ in range(301)]
    conn.close()
    check(codes[:300] == [0] * 300 and codes[300] == 10006,
          "query-record: 300 per minute per key pass, the 301st -> 10006", codes[295:])
    st, r = c.query("tk14", {"withdrawType": 1})
    check(r["ret_code"] == 0, "another key still queries")


def test_control(c):
    section("control API")
    st, out = c.ctl("GET", "/health")
    check(st == 200 and out == {"ok": True}, "GET /_mock/health")
    stats = c.ctl("GET", "/stats?provider=zoomex")[1]
    want = {"requests", "executed", "duplicates_refused", "rate_limit_violations", "bad_signatures",
            "bad_timestamps", "validation_errors", "faults_injected"}
    check(want <= set(stats) and all(stats[k] > 0 for k in want), "stats has every counter, all non-zero", stats)
    led = c.ledger()
    check(sum(led["executions"].values()) == len(led["withdrawals"]) == stats["executed"],
          "ledger executions == withdrawals == stats.executed", (len(led["withdrawals"]), stats["executed"]))
    log = c.ctl("GET", "/requests?provider=zoomex")[1]
    fields_ok = all({"t", "path", "method", "api_key", "requestId", "ret_code", "sig_ok", "fault"} <= set(e)
                    for e in log)
    check(len(log) == stats["requests"] and fields_ok, "request log: one entry per request, all fields")
    check(all(log[i]["t"] <= log[i + 1]["t"] + 0.05 for i in range(len(log) - 1)), "request log in arrival order")
    text = json.dumps(log) + json.dumps(led) + json.dumps(stats)
    check(not any(s in text for s in KEYS.values()) and not any(s in text for s in SIGNATURES),
          "no secret or signature in log, ledger or stats")
    st, out = c.ctl("GET", "/ledger?provider=nope")
    check(st == 404, "unknown provider in control query -> 404")
    st, out = c.ctl("POST", "/config", {"zoomex": {"duplicate_mode": "sometimes"}})
    check(st == 400, "invalid config -> 400", out)
    st, _, _ = c.raw("GET", "/nope/x")
    check(st == 404, "unknown provider path -> 404")

    c.ctl("POST", "/faults", {"provider": "zoomex", "kind": "http_500", "count": 5})
    st, out = c.ctl("POST", "/reset")
    check(st == 200 and out == {"ok": True}, "POST /_mock/reset")
    led = c.ledger()
    stats = c.ctl("GET", "/stats?provider=zoomex")[1]
    log = c.ctl("GET", "/requests?provider=zoomex")[1]
    check(led == {"executions": {}, "withdrawals": []} and log == [] and not any(stats.values()),
          "reset clears ledger, request log and counters", (led, stats))
    st, r = c.create(c.free_key(), fields())
    check(r["retCode"] == 0 and r["result"]["withdraw_id"] == "10195",
          "after reset: keys kept, no faults left, withdraw_id restarts at 10195", r)


def main():
    def tests(port):
        c = Client(port)
        worked, doc_sig = test_vectors()
        test_worked_example_on_wire(c, worked, doc_sig)
        test_success_and_keepalive(c)
        test_auth_errors(c)
        test_validation(c)
        test_rate_limit(c)
        test_duplicates(c)
        test_faults(c)
        test_query_record(c)
        test_control(c)
        test_mock_p99.run(port, check, section, SIGNATURES)

    def no_leaks(out):
        secrets = list(KEYS.values()) + test_mock_p99.SECRETS
        leaked = [s for s in secrets + list(SIGNATURES) if s in out] + (["sign="] if "sign=" in out else [])
        print(f"signatures sent: {len(SIGNATURES)}")
        if leaked:
            print("server output that leaks:", [line for line in out.splitlines() if any(s in line for s in leaked)][:5])
        check(len(SIGNATURES) > 100 and not any(s in out for s in secrets)
              and not any(s in out for s in SIGNATURES) and "sign=" not in out,
              "server output shows no secret and none of the signatures sent")

    return run_mock({"zoomex": {"keys": KEYS}, **test_mock_p99.CONFIG}, "mock_test_", tests,
                    output_checks=no_leaks, check_traceback=False)


if __name__ == "__main__":
    sys.exit(main())
