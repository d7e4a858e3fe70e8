"""
test_mock_p99.py - the p99 section of the mock self-test, run by test_mock.py.

test_mock.py starts the server with CONFIG merged into its --config file and calls
run(port, check, section, signatures) after its own zoomex checks.  The client here
signs with its own code (nothing from p99.py except the unit check of the vector):
the documented vector, API-key and JWT authentication, the 401-empty-body failures,
limit clamping, order, filters, paging by "end" over shared seconds, single lookups,
status progression, /_mock/p99/add and /records, the read-only API key, faults, the
request log and determinism of the seeded data.
Its Client builds on selftest.MockClient.
"""

import hashlib
import hmac
import http.client
import json
import re
import time
import uuid
from urllib.parse import quote

import p99  # only for the signing-vector unit check
from selftest import MockClient, outcome

PREFIX = "/p99"
LIST = PREFIX + "/spot/withdrawals"
CREATE = PREFIX + "/spot/withdraw/request"
KEYS = {"test_key": "test_secret",
        "pk-alice": "p99-alice-" + uuid.uuid4().hex,
        "pk-bob": "p99-bob-" + uuid.uuid4().hex}
JWTS = {"jwt-alice-" + uuid.uuid4().hex: "alice",
        "jwt-carol-" + uuid.uuid4().hex: "carol"}
JWT_ALICE = next(t for t, u in JWTS.items() if u == "alice")
JWT_CAROL = next(t for t, u in JWTS.items() if u == "carol")
CONFIRM_S, EXPIRE_S = 1.0, 2.0
CONFIG = {"p99": {"keys": KEYS, "jwts": JWTS,
                  "key_users": {"pk-alice": "alice", "pk-bob": "bob"},
                  "seed_rows": 450, "seed": 7, "tokens": ["DF", "USDT"], "history_days": 10,
                  "confirm_after_s": CONFIRM_S, "expire_after_s": EXPIRE_S}}
# what must never show up in the mock's log, stats, ledger or output
SECRETS = [s for k, s in KEYS.items() if k != "test_key"] + list(JWTS)

VECTOR_QUERY = "status=confirmed&limit=20&timestamp=1778315530000"
VECTOR_SIG = "8ea6731c57d7d424e0f81bc6e99a553e116de68c7a133c04af699cf96ad5ef9b"
ROW_KEYS = ["id", "token", "amount", "fee", "chain_id", "nonce", "status", "deadline", "tx_hash",
            "block_number", "requested_at", "confirmed_at"]

check = section = None
SIGS = set()


# -- the test's own client ------------------------------------------------------------

def hmac_hex(secret, payload):
    """Binance-style signature, written independently of p99.py."""
    if isinstance(payload, str):
        payload = payload.encode()
    sig = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    SIGS.add(sig)
    return sig


def now_ms():
    return int(time.time() * 1000)


def qs(params):
    return "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params)


class Client(MockClient):
    provider = "p99"

    def signed_query(self, key, params, ts=None, secret=None, payload=None):
        """The query string for params (in order) with timestamp appended and the
        signature last; payload overrides what is signed."""
        params = list(params)
        if not any(k == "timestamp" for k, _ in params):
            params.append(("timestamp", now_ms() if ts is None else ts))
        q = qs(params)
        sig = hmac_hex(secret or KEYS[key], q if payload is None else payload)
        return f"{q}&signature={sig}"

    def key_get(self, key, path, params=(), conn=None, **kw):
        status, h, data = self.raw("GET", f"{path}?{self.signed_query(key, params, **kw)}",
                                   headers={"X-MBX-APIKEY": key}, conn=conn)
        return status, h, data

    def jwt_get(self, token, path, params=(), conn=None):
        q = qs(params)
        return self.raw("GET", path + ("?" + q if q else ""),
                        headers={"Authorization": f"Bearer {token}"}, conn=conn)

    def records(self, user):
        return self.ctl("GET", f"/p99/records?user={user}")[1]


def js(data):
    try:
        return json.loads(data)
    except ValueError:
        return data


def newest_first(rows):
    return sorted(rows, key=lambda r: (r["requested_at"], r["id"]), reverse=True)


def expect(truth, status=None, token=None, start=None, end=None, limit=50):
    """What the list endpoint should answer, computed from the ground truth."""
    rows = [r for r in truth if (status is None or r["status"] == status)
            and (token is None or r["token"] == token)
            and (start is None or r["requested_at"] >= start)
            and (end is None or r["requested_at"] <= end)]
    return [r["id"] for r in newest_first(rows)[:limit]]


def ids(data):
    return [r["id"] for r in json.loads(data)]


# -- the checks --------------------------------------------------------------------------

def test_vector():
    section("p99: signing vector from providers.md")
    check(hmac_hex("test_secret", VECTOR_QUERY) == VECTOR_SIG, "client: worked example -> 8ea6731c...ef9b")
    check(p99.sign("test_secret", VECTOR_QUERY) == VECTOR_SIG, "mock: worked example -> 8ea6731c...ef9b")
    re_sig = hmac_hex("test_secret", "limit=20&status=confirmed&timestamp=1778315530000")
    check(re_sig != VECTOR_SIG and re_sig.startswith("520dbc46") and re_sig.endswith("fdab"),
          "reordered params -> 520dbc46...fdab (order matters)", re_sig)


def test_progression(c):
    section("p99: seeded data and status progression")
    t0 = time.time()
    first = c.records("alice")             # first use: alice's epoch is now
    check(len(first) == 450, "450 seeded records for alice", len(first))
    check(all(list(r) == ROW_KEYS for r in first), "records have exactly the documented fields")
    by = {r["id"]: r for r in first}
    open_ids = {i for i, r in by.items() if r["status"] == "signed"}
    check(len(open_ids) == round(450 * 0.15), "15% (68) are still signed", len(open_ids))
    check(all(by[i]["tx_hash"] is None and by[i]["block_number"] is None and by[i]["confirmed_at"] is None
              for i in open_ids), "signed: tx_hash, block_number, confirmed_at null")
    counts = {s: sum(r["status"] == s for r in first) for s in ("confirmed", "expired")}
    check(counts["confirmed"] > counts["expired"] > 0, "the rest mostly confirmed, some expired", counts)
    ok = all(re.fullmatch(r"0x[0-9a-f]{64}", r["tx_hash"]) and isinstance(r["block_number"], int)
             and isinstance(r["confirmed_at"], int) and r["confirmed_at"] >= r["requested_at"]
             for r in first if r["status"] == "confirmed")
    check(ok, "confirmed: tx_hash 0x+64 hex, block_number, confirmed_at >= requested_at")
    now = int(time.time())
    span = [now - r["requested_at"] for r in first]
    check(min(span) >= 0 and max(span) <= 10 * 86400 and max(span) > 8 * 86400,
          "requested_at spread over the last 10 days", (min(span), max(span)))
    per_second = {}
    for r in first:
        per_second[r["requested_at"]] = per_second.get(r["requested_at"], 0) + 1
    shared = sum(1 for n in per_second.values() if n > 1)
    check(shared >= 10 and max(per_second.values()) <= 6, f"{shared} seconds hold 2-6 records each",
          max(per_second.values()))
    check(all(r["status"] != "expired" or r["deadline"] <= now for r in first),
          "every expired record is past its deadline")
    st, _, data = c.jwt_get(JWT_ALICE, LIST, [("status", "signed"), ("limit", 200)])
    check(st == 200 and set(ids(data)) == open_ids, "the list agrees: status=signed lists those 68", st)

    time.sleep(max(0, t0 + CONFIRM_S + 0.3 - time.time()))
    mid = {r["id"]: r for r in c.records("alice")}
    confirmed = {i for i in open_ids if mid[i]["status"] == "confirmed"}
    still = {i for i in open_ids if mid[i]["status"] == "signed"}
    check(confirmed | still == open_ids and 0 < len(still) < len(open_ids) / 2,
          f"after confirm_after_s: {len(confirmed)} confirmed, {len(still)} (about a third) still signed",
          {i: mid[i]["status"] for i in open_ids if i not in confirmed | still})
    ok = all(re.fullmatch(r"0x[0-9a-f]{64}", mid[i]["tx_hash"]) and isinstance(mid[i]["block_number"], int)
             and mid[i]["confirmed_at"] >= int(t0) for i in confirmed)
    check(ok, "newly confirmed: tx_hash, block_number, confirmed_at set")
    check(all(mid[i]["status"] == by[i]["status"] for i in by if i not in open_ids),
          "closed records do not change")

    time.sleep(max(0, t0 + EXPIRE_S + 0.3 - time.time()))
    end = {r["id"]: r for r in c.records("alice")}
    check(all(end[i]["status"] == "expired" and end[i]["tx_hash"] is None and end[i]["confirmed_at"] is None
              and end[i]["deadline"] <= time.time() for i in still),
          "after expire_after_s: the rest expired, no tx_hash, deadline passed")
    check(all(end[i]["status"] == "confirmed" for i in confirmed), "confirmed stay confirmed")
    check(not any(r["status"] == "signed" for r in end.values()), "nothing left signed")
    return list(end.values())


def test_vector_on_wire(c):
    section("p99: API-key signature over the wire")
    s0 = c.stats()
    q = qs([("status", "confirmed"), ("limit", 20), ("timestamp", now_ms())])
    st, h, data = c.raw("GET", f"{LIST}?{q}&signature={hmac_hex('test_secret', q)}",
                        headers={"X-MBX-APIKEY": "test_key"})
    rows = js(data)
    check(st == 200 and isinstance(rows, list) and 0 < len(rows) <= 20
          and all(r["status"] == "confirmed" for r in rows),
          "the vector's query with a current timestamp, signed by the client -> 200, a bare array", st)
    check(h.get("Content-Type") == "application/json" and h.get("Content-Length") == str(len(data)),
          "JSON with Content-Length")
    q2 = qs([("limit", 20), ("status", "confirmed"), ("timestamp", now_ms())])
    st, _, data = c.raw("GET", f"{LIST}?{q2}&signature={hmac_hex('test_secret', q2)}",
                        headers={"X-MBX-APIKEY": "test_key"})
    check(st == 200, "reordered params signed in the order sent -> 200", st)
    ts = now_ms()
    in_order = qs([("status", "confirmed"), ("limit", 20), ("timestamp", ts)])
    swapped = qs([("limit", 20), ("status", "confirmed"), ("timestamp", ts)])
    st, _, data = c.raw("GET", f"{LIST}?{swapped}&signature={hmac_hex('test_secret', in_order)}",
                        headers={"X-MBX-APIKEY": "test_key"})
    check(st == 401 and data == b"", "reordered query with the in-order signature -> 401 (no sorting)", st)
    st, h, data = c.raw("GET", f"{LIST}?{VECTOR_QUERY}&signature={VECTOR_SIG}",
                        headers={"X-MBX-APIKEY": "test_key"})
    check(st == 401 and data == b"" and h.get("Content-Length") == "0",
          "the doc vector itself (2026-05 timestamp) -> 401, empty body", (st, data))
    entry = c.log()[-1]
    check(entry["sig_ok"] is True and entry["status"] == 401 and entry["api_key"] == "test_key"
          and entry["user"] == "test_key" and entry["auth"] == "api_key",
          "log: its signature verified (sig_ok), the timestamp refused; key without key_users is its own user",
          entry)
    s1 = c.stats()
    check(s1["bad_timestamps"] == s0["bad_timestamps"] + 1 and s1["bad_signatures"] == s0["bad_signatures"] + 1
          and s1["auth_failures"] == s0["auth_failures"] + 2, "counted: 1 bad timestamp, 1 bad signature",
          (s0, s1))


def test_auth(c):
    section("p99: authentication failures are 401 with an empty body")
    s0 = c.stats()
    k, sec = "pk-alice", KEYS["pk-alice"]
    base = [("limit", 5)]
    st, _, data = c.key_get(k, LIST, base)
    check(st == 200 and len(js(data)) == 5, "pk-alice signed request -> 200", st)
    good = c.signed_query(k, base)
    sig = good.rsplit("=", 1)[1]
    flip = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    cases = [
        ("one wrong hex digit", good[:-len(sig)] + flip, {"X-MBX-APIKEY": k}, True),
        ("uppercase hex signature", good[:-len(sig)] + sig.upper(), {"X-MBX-APIKEY": k}, True),
        ("signed with the wrong secret", c.signed_query(k, base, secret="wrong"), {"X-MBX-APIKEY": k}, True),
        ("signed over other params", c.signed_query(k, base, payload="limit=6"), {"X-MBX-APIKEY": k}, True),
        ("unknown api key", c.signed_query(k, base), {"X-MBX-APIKEY": "nokey"}, False),
        ("no credentials at all", good, {}, False),
        ("signature not the last parameter", good + "&status=signed", {"X-MBX-APIKEY": k}, False),
        ("no signature", qs(base + [("timestamp", now_ms())]), {"X-MBX-APIKEY": k}, False),
        ("no timestamp", f"limit=5&signature={hmac_hex(sec, 'limit=5')}", {"X-MBX-APIKEY": k}, False),
        ("timestamp 6 s old", c.signed_query(k, base, ts=now_ms() - 6000), {"X-MBX-APIKEY": k}, False),
        ("timestamp 1.5 s ahead", c.signed_query(k, base, ts=now_ms() + 1500), {"X-MBX-APIKEY": k}, False),
        ("recvWindow 70000 (> 60000)", c.signed_query(k, base + [("recvWindow", 70000)], ts=now_ms() - 10000),
         {"X-MBX-APIKEY": k}, False),
        ("bad JWT", "limit=5", {"Authorization": "Bearer not-a-token"}, False),
        ("JWT of a key name", "limit=5", {"Authorization": "Bearer pk-alice"}, False),
        ("Basic scheme", "limit=5", {"Authorization": f"Basic {JWT_ALICE}"}, False),
        ("empty bearer", "limit=5", {"Authorization": "Bearer "}, False),
    ]
    bad_sigs = 0
    for what, q, h, badsig in cases:
        st, hdr, data = c.raw("GET", f"{LIST}?{q}", headers=h)
        check(st == 401 and data == b"" and hdr.get("Content-Length") == "0", f"{what} -> 401, empty body",
              (st, data[:80]))
        bad_sigs += badsig
    s1 = c.stats()
    check(s1["auth_failures"] - s0["auth_failures"] == len(cases)
          and s1["bad_signatures"] - s0["bad_signatures"] == bad_sigs,
          f"auth_failures +{len(cases)}, bad_signatures +{bad_sigs}", (s0, s1))
    st, _, _ = c.key_get(k, LIST, base, ts=now_ms() + 500)
    check(st == 200, "timestamp 0.5 s ahead (<= +1000 ms) -> 200", st)
    st, _, _ = c.key_get(k, LIST, base + [("recvWindow", 60000)], ts=now_ms() - 10000)
    check(st == 200, "timestamp 10 s old with recvWindow 60000 -> 200", st)

    # URL-decoded fallback: the client signs "token=A B", sends token=A%20B
    ts = now_ms()
    sent = f"token=A%20B%26C&timestamp={ts}"
    st, _, data = c.raw("GET", f"{LIST}?{sent}&signature={hmac_hex(sec, f'token=A B&C&timestamp={ts}')}",
                        headers={"X-MBX-APIKEY": k})
    check(st == 200 and js(data) == [], "signature over the URL-decoded form is accepted (fallback)", st)
    st, _, data = c.raw("GET", f"{LIST}?{sent}&signature={hmac_hex(sec, sent)}", headers={"X-MBX-APIKEY": k})
    check(st == 200 and js(data) == [], "signature over the raw encoded form is accepted", st)

    st, _, by_jwt = c.jwt_get(JWT_ALICE, LIST, [("limit", 200)])
    st2, _, by_key = c.key_get(k, LIST, [("limit", 200)])
    check(st == st2 == 200 and ids(by_jwt) == ids(by_key), "alice's JWT and alice's API key see the same list")
    st, _, data = c.jwt_get(JWT_CAROL, LIST, [("limit", 200)])
    check(st == 200 and not set(ids(data)) & set(ids(by_jwt)), "carol sees only her own records")

    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    conn.connect()
    local = conn.sock.getsockname()
    got = [c.key_get(k, LIST, base, conn=conn)[0],
           c.raw("GET", f"{LIST}?limit=1", headers={"Authorization": "Bearer nope"}, conn=conn)[0],
           c.jwt_get(JWT_ALICE, LIST, base, conn=conn)[0],
           c.raw("GET", "/_mock/health", conn=conn)[0]]
    same = conn.sock is not None and conn.sock.getsockname() == local
    conn.close()
    check(got == [200, 401, 200, 200] and same, "keep-alive: 200, 401, 200, health on one connection", got)


def test_list(c, truth):
    section("p99: list, limit, order, filters")
    tok = JWT_ALICE
    s0 = c.stats()
    st, _, data = c.jwt_get(tok, LIST)
    rows = js(data)
    check(st == 200 and [r["id"] for r in rows] == expect(truth), "no params: 50 newest rows (default limit)",
          (st, len(rows)))
    check(all(list(r) == ROW_KEYS and r["fee"] == "0" and r["chain_id"] == 97 and isinstance(r["nonce"], int)
              and isinstance(r["deadline"], int) and isinstance(r["requested_at"], int)
              and re.fullmatch(r"[0-9]+(\.[0-9]+)?", r["amount"]) and str(uuid.UUID(r["id"])) == r["id"]
              for r in rows), "row fields and types as documented")
    st, _, data = c.jwt_get(tok, LIST, [("limit", 500)])
    got = ids(data)
    s1 = c.stats()
    check(st == 200 and got == expect(truth, limit=200) and len(got) == 200,
          "limit=500 -> 200 rows (clamped)", (st, len(got)))
    check(s1["clamped_limits"] == s0["clamped_limits"] + 1, "clamped_limits counted", s1["clamped_limits"])
    st, _, data = c.jwt_get(tok, LIST, [("limit", 200)])
    rows = js(data)
    keys = [(r["requested_at"], r["id"]) for r in rows]
    check(keys == sorted(keys, reverse=True) and len(set(r["requested_at"] for r in rows)) < len(rows),
          "newest first: requested_at desc, then id desc (ties present)")
    for what, params in (("limit=0", [("limit", 0)]), ("limit=-3", [("limit", -3)]),
                         ("limit=abc", [("limit", "abc")])):
        st, _, data = c.jwt_get(tok, LIST, params)
        check(st == 400 and js(data) == {"error": "invalid limit"}, f"{what} -> 400 invalid limit", (st, data))
    st, _, data = c.jwt_get(tok, LIST, [("status", "pending")])
    check(st == 400 and js(data) == {"error": "invalid status"}, "status=pending -> 400 invalid status", data)
    st, _, data = c.jwt_get(tok, LIST, [("end", "yesterday")])
    check(st == 400 and js(data) == {"error": "invalid end"}, "end=yesterday -> 400 invalid end", data)
    st, _, data = c.key_get("pk-alice", LIST, [("status", "bogus")])
    check(st == 400 and js(data) == {"error": "invalid status"}, "API key, status=bogus -> 400", data)

    for status in ("confirmed", "expired", "signed"):
        st, _, data = c.jwt_get(tok, LIST, [("status", status), ("limit", 200)])
        check(st == 200 and ids(data) == expect(truth, status=status, limit=200), f"status={status} filter",
              (st, len(ids(data)) if st == 200 else data))
    for token in ("DF", "USDT", "NOPE"):
        st, _, data = c.jwt_get(tok, LIST, [("token", token), ("limit", 200)])
        check(st == 200 and ids(data) == expect(truth, token=token, limit=200), f"token={token} filter")
    st, _, data = c.jwt_get(tok, LIST, [("status", "expired"), ("token", "DF"), ("limit", 200)])
    check(ids(data) == expect(truth, status="expired", token="DF", limit=200), "status + token together")
    seconds = {}
    for r in truth:
        seconds.setdefault(r["requested_at"], []).append(r["id"])
    burst = max(seconds, key=lambda t: (len(seconds[t]), t))
    st, _, data = c.jwt_get(tok, LIST, [("start", burst), ("end", burst)])
    check(sorted(ids(data)) == sorted(seconds[burst]) and len(seconds[burst]) > 1,
          f"start=end={burst}: exactly the {len(seconds[burst])} records of that second (inclusive)")
    times = sorted(seconds)
    lo, hi = times[len(times) // 3], times[2 * len(times) // 3]
    st, _, data = c.jwt_get(tok, LIST, [("start", lo), ("end", hi), ("limit", 200)])
    check(ids(data) == expect(truth, start=lo, end=hi, limit=200), "start/end window (inclusive both ends)")
    st, _, data = c.jwt_get(tok, LIST, [("start", hi), ("end", lo)])
    check(st == 200 and js(data) == [], "start > end -> empty array")


def page_all(c, limit, user_get):
    """Page newest first with end = oldest requested_at of the previous full page,
    de-duplicating by id.  Returns (ids in order, pages, refetched, split seconds)."""
    seen, order, end, pages, refetched, split = set(), [], None, 0, 0, 0
    while pages < 1000:
        st, _, data = user_get([("limit", limit)] + ([("end", end)] if end is not None else []))
        rows = js(data)
        pages += 1
        if st != 200:
            return None, pages, st, 0
        fresh = [r for r in rows if r["id"] not in seen]
        refetched += len(rows) - len(fresh)
        if end is not None and any(r["requested_at"] == end for r in fresh):
            split += 1        # a second straddled the previous page boundary
        for r in fresh:
            seen.add(r["id"])
            order.append(r["id"])
        if len(rows) < limit:
            break
        end = min(r["requested_at"] for r in rows)
    return order, pages, refetched, split


def test_paging(c, truth):
    section("p99: paging by end over shared seconds")
    want = [r["id"] for r in newest_first(truth)]
    for limit in (10, 200):
        got, pages, refetched, split = page_all(
            c, limit, lambda p: c.key_get("pk-alice", LIST, p))
        check(got == want, f"limit {limit}: {pages} pages return all {len(want)} records exactly once, "
                           f"newest first ({refetched} refetched, de-duplicated)", (pages, refetched))
        if limit == 10:
            check(split > 0, f"limit 10: {split} page boundaries fell inside a shared second", split)
    # the same walk with end = oldest - 1 loses records: the data really exercise the boundary
    got, end, pages = [], None, 0
    while pages < 1000:
        st, _, data = c.jwt_get(JWT_ALICE, LIST, [("limit", 10)] + ([("end", end)] if end is not None else []))
        rows = js(data)
        pages += 1
        got += [r["id"] for r in rows]
        if len(rows) < 10:
            break
        end = min(r["requested_at"] for r in rows) - 1
    check(len(set(got)) < len(want), f"control: paging with end = oldest - 1 would miss "
                                     f"{len(want) - len(set(got))} records")


def test_single(c, truth):
    section("p99: single lookup")
    r = truth[17]
    st, _, data = c.jwt_get(JWT_ALICE, f"{LIST}/{r['id']}")
    check(st == 200 and js(data) == r, "GET /spot/withdrawals/<id> -> 200, the record", (st, data))
    st, _, data = c.key_get("pk-alice", f"{LIST}/{r['id']}")
    check(st == 200 and js(data) == r, "same lookup with the API key", st)
    for bad in ("not-a-uuid", "1234", r["id"] + "0", r["id"].replace("-", "")):
        st, _, data = c.jwt_get(JWT_ALICE, f"{LIST}/{bad}")
        check(st == 400 and js(data) == {"error": "invalid id"}, f"id {bad[:14]}... -> 400 invalid id", (st, data))
    st, _, data = c.jwt_get(JWT_ALICE, f"{LIST}/00000000-0000-4000-8000-000000000000")
    check(st == 404 and js(data) == {"error": "WITHDRAWAL_NOT_FOUND"}, "unknown id -> 404 WITHDRAWAL_NOT_FOUND",
          (st, data))
    carol = c.records("carol")[0]["id"]
    st, _, data = c.jwt_get(JWT_ALICE, f"{LIST}/{carol}")
    check(st == 404 and js(data) == {"error": "WITHDRAWAL_NOT_FOUND"}, "another user's id -> 404", (st, data))
    st, _, data = c.raw("GET", f"{LIST}/{r['id']}")
    check(st == 401 and data == b"", "lookup without credentials -> 401 empty body")


def test_create_refused(c):
    section("p99: API keys are read-only")
    body = json.dumps({"token": "DF", "amount": "1"})
    ts = now_ms()
    sig = hmac_hex(KEYS["pk-alice"], f"timestamp={ts}" + body)
    st, _, data = c.raw("POST", f"{CREATE}?timestamp={ts}&signature={sig}", body,
                        {"X-MBX-APIKEY": "pk-alice", "Content-Type": "application/json"})
    check(st == 403 and js(data) == {"error": "API Key permission denied"},
          "API-key POST /spot/withdraw/request -> 403 API Key permission denied", (st, data))
    st, _, data = c.raw("POST", f"{CREATE}?timestamp={ts}&signature={'0' * 64}", body,
                        {"X-MBX-APIKEY": "pk-alice", "Content-Type": "application/json"})
    check(st == 401 and data == b"", "with a bad signature -> 401 first", st)
    st, _, data = c.raw("POST", CREATE, body, {"Authorization": f"Bearer {JWT_ALICE}",
                                               "Content-Type": "application/json"})
    check(st == 501, "JWT POST -> 501 (not mocked)", (st, data))
    st, _, data = c.jwt_get(JWT_ALICE, PREFIX + "/spot/nothing")
    check(st == 404 and "error" in js(data), "unknown path -> 404 {error}", (st, data))


def test_add(c):
    section("p99: /_mock/p99/add and /records")
    before = c.records("bob")
    t_add = time.time()
    st, out = c.ctl("POST", "/p99/add", {"user": "bob", "count": 3})
    check(st == 200 and out["ok"] is True and len(out["ids"]) == 3, "POST /_mock/p99/add count 3", out)
    new = set(out["ids"])
    after = {r["id"]: r for r in c.records("bob")}
    check(len(after) == len(before) + 3 and new <= set(after), "records?user=bob has 3 more")
    added = [after[i] for i in new]
    check(all(r["status"] == "signed" and r["tx_hash"] is None and abs(r["requested_at"] - t_add) <= 1
              and r["nonce"] > 450 for r in added), "they are signed, requested now, next nonces", added[:1])
    st, _, data = c.key_get("pk-bob", LIST, [("limit", 3)])
    check(st == 200 and set(ids(data)) == new, "they head bob's list (newest first)")
    since = min(r["requested_at"] for r in added)
    st, _, data = c.key_get("pk-bob", LIST, [("start", since), ("limit", 200)])
    check(set(ids(data)) == new, "incremental: start = their second lists only them", ids(data))
    time.sleep(max(0, t_add + EXPIRE_S + 0.3 - time.time()))
    st, _, data = c.key_get("pk-bob", LIST, [("start", since)])
    check(st == 200 and {r["status"] for r in js(data)} <= {"confirmed", "expired"} and len(js(data)) == 3,
          "added records confirm or expire like the seeded ones", js(data))
    st, out = c.ctl("POST", "/p99/add", {"user": "nobody", "count": 1})
    check(st == 404 and out["ok"] is False, "add for an unknown user -> 404", out)
    st, out = c.ctl("POST", "/p99/add", {"user": "bob", "count": 0})
    check(st == 400, "add count 0 -> 400", out)
    st, out = c.ctl("POST", "/p99/add", {"count": 1})
    check(st == 400, "add without user -> 400", out)
    st, out = c.ctl("GET", "/p99/records")
    check(st == 400, "records without user -> 400", out)
    st, out = c.ctl("GET", "/p99/records?user=nobody")
    check(st == 404, "records for an unknown user -> 404", out)
    st, out = c.ctl("GET", "/p99/nothing")
    check(st == 404, "unknown p99 control endpoint -> 404", out)
    st, out = c.ctl("GET", "/ledger?provider=p99")
    check(st == 200 and out["users"]["bob"]["added"] == 3 and out["withdrawals"] == [],
          "ledger shows per-user counts, no executions", out.get("users", {}).get("bob"))


def test_faults(c):
    section("p99: faults")
    def get(timeout=10):
        return lambda: c.raw("GET", f"{LIST}?limit=1", headers={"Authorization": f"Bearer {JWT_CAROL}"},
                             timeout=timeout)

    c.fault(path="withdrawals", kind="http_500", count=2)
    got = [get()()[0] for _ in range(3)]
    check(got == [500, 500, 200], "http_500 count 2: two 500s, then 200", got)
    c.fault(kind="http_502")
    st, h, data = get()()
    check(st == 502 and h.get("Content-Type") == "text/html", "http_502: an HTML 502", st)
    c.fault(kind="garbage")
    st, _, data = get()()
    check(st == 200 and isinstance(js(data), bytes), "garbage: 200 with a non-JSON body", data[:40])
    c.fault(kind="retcode", code=503)
    st, _, data = get()()
    check(st == 503 and js(data) == {"error": "injected"}, "retcode 503: {\"error\":\"injected\"}", (st, data))
    c.fault(kind="reset")
    how, _, _ = outcome(get())
    check(how == "reset", "reset: connection reset", how)
    c.fault(kind="timeout_before", delay_s=2)
    t0 = time.monotonic()
    how, _, _ = outcome(get(timeout=0.5))
    check(how == "timeout" and time.monotonic() - t0 < 1.5, "timeout_before: no answer within the timeout", how)
    c.fault(kind="down", duration_s=0.6)
    t0, got = time.monotonic(), []
    while time.monotonic() - t0 < 0.45:
        got.append(outcome(get())[0])
        time.sleep(0.1)
    time.sleep(max(0, t0 + 0.7 - time.monotonic()))
    after = outcome(get())
    check(len(got) >= 3 and set(got) == {"reset"} and after[0] == "response" and after[1][0] == 200,
          f"down 0.6 s: {len(got)} resets, then 200", (got, after[0]))
    c.ctl("POST", "/faults", {"provider": "zoomex", "kind": "http_500"})
    st = get()()[0]
    check(st == 200, "a zoomex fault does not touch p99", st)
    pending = c.ctl("GET", "/faults")[1]["faults"]
    check(len(pending) == 1 and pending[0]["provider"] == "zoomex", "the zoomex fault is still pending", pending)
    log = c.log()
    kinds = {e["fault"] for e in log if e["fault"]}
    want = {"http_500", "http_502", "garbage", "retcode", "reset", "timeout_before", "down"}
    check(kinds == want, "request log names every injected fault", kinds ^ want)
    rst = [e for e in log if e["fault"] == "reset"]
    check(rst and rst[0]["user"] == "carol" and rst[0]["auth"] == "jwt" and rst[0]["sig_ok"] is True,
          "a faulted request is still logged with auth, user and sig_ok", rst[:1])


def test_log_and_determinism(c):
    section("p99: request log, stats, determinism")
    log, stats = c.log(), c.stats()
    ledger = c.ctl("GET", "/ledger?provider=p99")[1]
    check(len(log) == stats["requests"] and all({"t", "path", "method", "auth", "api_key", "user", "sig_ok",
                                                 "fault", "http_status"} <= set(e) for e in log),
          "request log: one entry per request with auth, api_key, user, sig_ok")
    check(all(e["status"] == e["http_status"] for e in log if e["fault"] is None),
          "log status == HTTP status sent")
    want = ("requests", "auth_failures", "bad_signatures", "bad_timestamps", "clamped_limits",
            "validation_errors", "not_found", "permission_denied", "records_added", "faults_injected")
    check(all(stats.get(k, 0) > 0 for k in want), "stats: every counter non-zero", stats)
    text = json.dumps(log) + json.dumps(stats) + json.dumps(ledger)
    leaks = [s[:12] for s in SECRETS if s in text] + [s[:8] for s in SIGS if s in text]
    check(not leaks and "test_secret" not in text, "no secret, JWT or signature in log, stats or ledger", leaks)

    carol = sorted((r["id"], r["token"], r["amount"], r["nonce"]) for r in c.records("carol"))
    c.ctl("POST", "/reset")
    again = sorted((r["id"], r["token"], r["amount"], r["nonce"]) for r in c.records("carol"))
    check(carol == again and len(carol) == 450, "after /_mock/reset: the same seeded records (from seed 7)")
    check(c.log() == [] and c.ctl("GET", "/faults")[1]["faults"] == [],
          "reset clears the p99 request log and the pending faults")
    c.ctl("POST", "/config", {"p99": {"seed": 8, "seed_rows": 30}})
    other = c.records("carol")
    check(len(other) == 30 and not {r["id"] for r in other} & {x[0] for x in carol},
          "seed 8, seed_rows 30: 30 different records")
    c.ctl("POST", "/config", {"p99": {"seed": 7, "seed_rows": 450}})
    back = sorted((r["id"], r["token"], r["amount"], r["nonce"]) for r in c.records("carol"))
    check(back == carol, "seed 7 again: the original records")
    st, out = c.ctl("POST", "/config", {"p99": {"tokens": []}})
    check(st == 400, "invalid p99 config -> 400", out)


def run(port, check_fn, section_fn, signatures):
    """Run every p99 check against the server on port; signatures collects every
    signature sent (for test_mock.py's final leak check)."""
    global check, section
    check, section = check_fn, section_fn
    c = Client(port)
    try:
        test_vector()
        truth = test_progression(c)
        test_vector_on_wire(c)
        test_auth(c)
        test_list(c, truth)
        test_paging(c, truth)
        test_single(c, truth)
        test_create_refused(c)
        test_add(c)
        test_faults(c)
        test_log_and_determinism(c)
    finally:
        signatures.update(SIGS)
