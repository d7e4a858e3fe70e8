#!/usr/bin/env python3
"""
test_mock_fiat_gateway.py - self-test of the fiat_gateway mock
(/usr/bin/python3 test/mock/test_mock_fiat_gateway.py).

Starts mock_provider.py on a free port and a notification receiver (selftest.Receiver),
then drives the mock over HTTP with a client that signs with its own code
(fiat_gateway.py is imported only for the signing-vector unit checks): the computed
formRule vectors and the WeChat / 9dg / pavodisplay family vectors from providers.md,
formRule, applyfor with every documented status code (10001-10007), the two-decimal
rule, empty-value dropping, numbers signed as their JSON text, response signatures
(and the faults that break them), notifications signed the same way and retried until
the receiver answers success, the control API and the request log.
Prints one line per check; exits 0 when all pass, 1 otherwise.
"""

import hashlib
import json
import os
import re
import sys
import time
import uuid

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fiat_gateway  # noqa: E402  (only for the signing-vector unit checks)
from selftest import MockClient, Receiver, check, run_mock, section  # noqa: E402

APPLY = "/fiat_gateway/applyfor"
RULE = "/fiat_gateway/channel/formRule"
MERCHANTS = {
    "m-amp": {"secret": "amp-" + uuid.uuid4().hex, "sign_mode": "amp_key", "balance": "100000.00",
              "single_min": "1.00", "single_limit": "5000.00"},
    "m-cat": {"secret": "cat-" + uuid.uuid4().hex, "sign_mode": "concat", "balance": "100000.00"},
    "m-bal": {"secret": "bal-" + uuid.uuid4().hex, "balance": "50.00"},
    "m-day": {"secret": "day-" + uuid.uuid4().hex, "daily_limit": "100.00"},
    "test1": {"secret": "SECRETKEY"},
}
RETRY = [0.3, 0.5, 0.8]
SETTLE_S = 0.5
RULE_EXAMPLE = {"uid": "test1", "currency": "VND", "pay_code": "1004", "timestamp": 1758210270,
                "userip": "127.0.0.1"}
FAMILY = [
    ("WeChat Pay v2", {"appid": "wxd930ea5d5a258f4f", "body": "test", "device_info": "1000", "mch_id": "10000100",
                       "nonce_str": "ibuaiVcKdpRxkhJA"}, "192006250b4c09247ec02edce69f6a2d",
     "9A0A8659F005D6984697E2CA0A9CF3B7"),
    ("9dg", {"amount": "100", "coinName": "INR", "mchId": "IPq15ZFXBFLIqRuY", "mchTransNo": "123456789",
             "notifyUrl": "https://test.com", "paymentNotifyUrl": "https://test.com"}, "IPq15ZFXBFLIqRuY",
     "F694ED4D44A60DB500045184BD13AF84"),
    ("pavodisplay", {"appid": "d114c07a-24ed-41b2-9cc3-58ae5bb9ace1_2303065600000005", "clientid": "2C05476AA26C",
                     "nlast": "0", "ts": "1679539549647", "version": "V3.34"}, "2303065600000006",
     "5344FA09D02DB7912093D01A356A1C5A"),
]
NOTE_KEYS = ["uid", "orderid", "transactionid", "amount", "status", "timestamp", "sign"]


# -- the test's own signer -----------------------------------------------------------------

def t_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def t_sign(params, secret, mode="amp_key"):
    """MD5 uppercase over sorted non-empty k=v pairs (sign excluded) + &key=SECRET / SECRET."""
    pairs = sorted((k, t_text(v)) for k, v in params.items() if k != "sign" and v is not None and v != "")
    s = "&".join(f"{k}={v}" for k, v in pairs)
    s += ("&key=" + secret) if mode == "amp_key" else secret
    return hashlib.md5(s.encode()).hexdigest().upper()


def reply_sign_ok(reply, uid):
    """The reply's sign over its top-level scalars plus result's scalars, per the mock's docstring."""
    m = MERCHANTS[uid]
    p = {k: v for k, v in reply.items() if k not in ("sign", "result") and not isinstance(v, (dict, list))}
    if isinstance(reply.get("result"), dict):
        p.update({k: v for k, v in reply["result"].items() if not isinstance(v, (dict, list))})
    return reply.get("sign") == t_sign(p, m["secret"], m.get("sign_mode", "amp_key"))


# -- notification receiver (selftest.Receiver) ------------------------------------------------------

def note(g):
    try:
        return json.loads(g["body"])
    except ValueError:
        return {}


# -- client -------------------------------------------------------------------------------

class Client(MockClient):
    provider = "fiat_gateway"

    def post(self, path, params=None, body=None, ctype="application/json"):
        if body is None:
            body = json.dumps(params)
        st, _, data = self.raw("POST", path, body.encode(), {"Content-Type": ctype})
        try:
            return st, json.loads(data)
        except ValueError:
            return st, data

    def signed(self, path, params, uid=None, secret=None, mode=None):
        p = dict(params)
        uid = uid or p.get("uid")
        m = MERCHANTS.get(uid, {"secret": "x"})
        p["sign"] = t_sign(p, secret or m["secret"], mode or m.get("sign_mode", "amp_key"))
        return self.post(path, p)


HOOKS = None


def now():
    return int(time.time())


def order(uid="m-amp", pay_code="1004", path="/notes", **over):
    p = {"uid": uid, "currency": "KRW", "orderid": "F" + uuid.uuid4().hex[:16], "notify_url": HOOKS.url(path),
         "amount": "100.00", "userip": "10.0.0.8", "timestamp": str(now()), "pay_code": pay_code}
    if pay_code == "1004":
        p.update(bank_id=1001, bank_account="Hong Gildong", bank_no="1234567890")
    elif pay_code == "812":
        p.update(currency="INR", user_name="Asha Rao", bank_no="000123456789", bank_ifsc="HDFC0001234")
    elif pay_code == "1102":
        p.update(currency="PHP", wallet_type="GCASH", bank_no="09171234567", user_name="Juan Cruz")
    p.update(over)
    return {k: v for k, v in p.items() if v is not ...}


def rule_req(uid="m-amp", **over):
    p = {"uid": uid, "currency": "KRW", "pay_code": "1004", "timestamp": now(), "userip": "127.0.0.1"}
    p.update(over)
    return {k: v for k, v in p.items() if v is not ...}


# -- checks -----------------------------------------------------------------------------------

def test_vectors():
    section("fiat_gateway: computed and family vectors from providers.md section 4")
    check(t_sign(RULE_EXAMPLE, "SECRETKEY") == "695D8ECF1DDDF0F3EAAE95164DD0F230",
          "client: formRule example, &key= -> 695D8ECF1DDDF0F3EAAE95164DD0F230")
    check(t_sign(RULE_EXAMPLE, "SECRETKEY", "concat") == "FED3976DA3CFD6E2E7A71D98A821BFA5",
          "client: formRule example, concat -> FED3976DA3CFD6E2E7A71D98A821BFA5")
    check(fiat_gateway.sign("SECRETKEY", RULE_EXAMPLE) == "695D8ECF1DDDF0F3EAAE95164DD0F230"
          and fiat_gateway.sign("SECRETKEY", RULE_EXAMPLE, "concat") == "FED3976DA3CFD6E2E7A71D98A821BFA5",
          "mock: formRule example, both modes")
    for name, params, key, want in FAMILY:
        check(t_sign(params, key) == want, f"client: {name} -> {want}")
        check(fiat_gateway.sign(key, params) == want, f"mock: {name} -> {want}")
    check(t_sign(dict(RULE_EXAMPLE, sign="X", custom="", bank_sub=None), "SECRETKEY")
          == "695D8ECF1DDDF0F3EAAE95164DD0F230", "sign, empty and null values are left out")


def test_form_rule(c):
    section("fiat_gateway: /channel/formRule")
    p = dict(RULE_EXAMPLE, sign="695D8ECF1DDDF0F3EAAE95164DD0F230")
    st, r = c.post(RULE, p)
    check(st == 200 and r.get("status") == 10001 and "timestamp expired" in r.get("msg", "")
          and reply_sign_ok(r, "test1"), "the doc example (2025 timestamp) -> 10001 timestamp expired, signed", r)
    check(c.log()[-1]["sig_ok"] is True and c.log()[-1]["api_key"] == "test1",
          "log: its signature verified (sig_ok)")
    st, r = c.signed(RULE, rule_req(uid="test1", currency="VND", timestamp=now()))
    check(st == 200 and list(r) == ["status", "result"] and r["status"] == 10000
          and list(r["result"]) == ["data"],
          "current timestamp -> {status 10000, result {data}}, unsigned like the seed's example", r)
    d = r["result"]["data"]
    check(list(d) == ["pay_code", "name", "description", "form_fields"] and d["pay_code"] == "1004"
          and d["name"] == "Korea Withdrawal", "data: pay_code, name, description, form_fields", d)
    fkeys = ["name", "label", "type", "required", "max_length", "placeholder", "options", "validation_rules"]
    check(all(list(f) == fkeys for f in d["form_fields"]), "every form field has the seed's keys, in order")
    bank = next(f for f in d["form_fields"] if f["name"] == "bank_id")
    check(bank["type"] == "select" and bank["options"][0] == {"bankID": 1001, "name": "KB Kookmin Bank"}
          and len(bank["options"]) >= 2 and bank["validation_rules"] == ["required", "integer"],
          "bank_id: select with integer bankID options", bank)
    acct = next(f for f in d["form_fields"] if f["name"] == "bank_account")
    check(acct["required"] and acct["max_length"] == 50 and acct["options"] is None
          and acct["validation_rules"] == ["required", "string", "max:50"], "bank_account as in the seed", acct)
    c.config({"sign_rule_answers": True})
    st, r = c.signed(RULE, rule_req(uid="test1", currency="VND", timestamp=now()))
    c.config({"sign_rule_answers": False})
    check(reply_sign_ok(r, "test1") and r["sign"] == t_sign({"status": 10000}, "SECRETKEY"),
          "sign_rule_answers: reply sign = MD5(status=10000&key=SECRET) (nested data not signed)", r)
    st, r = c.post(RULE, dict(RULE_EXAMPLE, timestamp=now(), sign=t_sign(dict(RULE_EXAMPLE, timestamp=now()),
                                                                          "SECRETKEY", "concat")))
    check(r["status"] == 10002 and reply_sign_ok(r, "test1"), "concat-signed request to an amp_key merchant -> 10002", r)
    st, r = c.signed(RULE, rule_req(uid="m-cat"))
    check(r["status"] == 10000 and "sign" not in r, "concat merchant: concat request accepted (answer unsigned)", r)
    st, r = c.signed(RULE, rule_req(pay_code="812", currency="INR"))
    names = [f["name"] for f in r["result"]["data"]["form_fields"]]
    check(r["status"] == 10000 and {"bank_ifsc", "user_name", "bank_no"} <= set(names), "812 India rule", names)
    st, r = c.signed(RULE, rule_req(pay_code="1102", currency="PHP"))
    wt = next(f for f in r["result"]["data"]["form_fields"] if f["name"] == "wallet_type")
    check(wt["type"] == "select" and all(isinstance(o["value"], str) for o in wt["options"]),
          "1102: a select of string options", wt)
    for what, p, msg in (("unknown pay_code", rule_req(pay_code="999"), "pay_code not supported"),
                         ("currency not of the pay_code", rule_req(currency="INR"), "currency"),
                         ("no userip", rule_req(userip=...), "userip is required"),
                         ("no timestamp", rule_req(timestamp=...), "timestamp is required"),
                         ("empty currency", rule_req(currency=""), "currency is required")):
        st, r = c.signed(RULE, p)
        check(r["status"] == 10001 and msg in r.get("msg", "") and reply_sign_ok(r, "m-amp"),
              f"formRule {what} -> 10001 ({msg}), signed", r)


def test_apply(c, hooks):
    section("fiat_gateway: /applyfor success")
    o = order()
    st, r = c.signed(APPLY, o)
    check(st == 200 and list(r) == ["status", "result", "sign"] and r["status"] == 10000
          and list(r["result"]) == ["transactionid"] and re.fullmatch(r"[0-9]+", r["result"]["transactionid"]),
          "-> {status 10000, result {transactionid (digit string)}, sign}", r)
    txn = r["result"]["transactionid"]
    check(r["sign"] == t_sign({"status": 10000, "transactionid": txn}, MERCHANTS["m-amp"]["secret"]),
          "reply sign = MD5(status=10000&transactionid=N&key=SECRET)")
    e = c.log()[-1]
    check(e["executed"] and e["sig_ok"] and e["ret_code"] == 10000 and e["requestId"] == o["orderid"]
          and e["api_key"] == "m-amp", "log: executed, sig_ok, ret_code, uid, orderid", e)
    o2 = order(timestamp=now(), bank_id=1002, custom="", bank_sub=None)
    st, r = c.signed(APPLY, o2)
    check(r["status"] == 10000 and int(r["result"]["transactionid"]) > int(txn),
          "timestamp as a JSON integer, empty custom and null bank_sub left unsigned", r)
    st, r = c.signed(APPLY, order(bank_id="1002"))
    check(r["status"] == 10001 and "bank_id" in r.get("msg", ""), "bank_id as a string (the seed: int) -> 10001", r)
    st, r = c.signed(APPLY, order(amount="100"))
    st2, r2 = c.signed(APPLY, order(amount="100.5"))
    check(r["status"] == 10000 and r2["status"] == 10000,
          "amount 100 and 100.5 (the seed: accepts two decimal places) -> accepted", (r, r2))
    c.config({"result_as_string": True})
    st, r = c.signed(APPLY, order())
    c.config({"result_as_string": False})
    check(r["status"] == 10000 and isinstance(r["result"], str)
          and reply_sign_ok(dict(r, result=json.loads(r["result"])), "m-amp"),
          "result_as_string: result is the JSON text, signed over its members", r)
    o3 = order()
    p = dict(o3)
    p["custom"] = ""
    s_with_empty = hashlib.md5(("&".join(f"{k}={p[k]}" for k in sorted(p)) + "&key=" +
                                MERCHANTS["m-amp"]["secret"]).encode()).hexdigest().upper()
    st, r = c.post(APPLY, dict(p, sign=s_with_empty))
    check(r["status"] == 10002, "a sign that includes the empty custom= -> 10002", r)
    o4 = order(amount=...)
    sig = t_sign(dict(o4, amount="100.50"), MERCHANTS["m-amp"]["secret"])
    st, r = c.post(APPLY, body=json.dumps(o4)[:-1] + f', "amount": 100.50, "sign": "{sig}"}}')
    check(r["status"] == 10000, "amount as a JSON number 100.50: signed as its text \"100.50\", accepted", r)
    st, r = c.signed(APPLY, order(uid="m-cat"))
    check(r["status"] == 10000 and reply_sign_ok(r, "m-cat"), "concat merchant: accepted, reply signed concat", r)
    st, r = c.signed(APPLY, order(pay_code="812"))
    check(r["status"] == 10000, "812 India order", r)
    st, r = c.signed(APPLY, order(pay_code="1102"))
    check(r["status"] == 10000, "1102 order with the dynamic field wallet_type (signed like any other)", r)

    section("fiat_gateway: /applyfor errors")
    st, r = c.signed(APPLY, o)
    check(r["status"] == 10003 and reply_sign_ok(r, "m-amp"), "same orderid again -> 10003, signed", r)
    led = c.ctl("GET", "/ledger?provider=fiat_gateway")[1]
    check(led["executions"].get(f"m-amp/{o['orderid']}") == 1, "executed exactly once", led["executions"])
    st, r = c.signed(APPLY, dict(o, uid="m-cat"))
    check(r["status"] == 10000, "the same orderid for another merchant -> accepted", r)
    bad = dict(o, orderid="X" + o["orderid"])
    bad["sign"] = t_sign(bad, MERCHANTS["m-amp"]["secret"])
    cases = [
        ("one wrong hex digit in sign", dict(bad, sign=bad["sign"][:-1] + ("0" if bad["sign"][-1] != "0" else "1")),
         10002, None),
        ("lowercase sign", dict(bad, sign=bad["sign"].lower()), 10002, None),
        ("sign over other params", dict(bad, amount="200.00"), 10002, None),
        ("concat-mode sign to an amp_key merchant", dict(bad, sign=t_sign(bad, MERCHANTS["m-amp"]["secret"],
                                                                            "concat")), 10002, None),
    ]
    for what, p, want, msg in cases:
        st, r = c.post(APPLY, p)
        check(r["status"] == want and reply_sign_ok(r, "m-amp"), f"{what} -> {want}", r)
    signed_cases = [
        ("timestamp 301 s old", order(timestamp=str(now() - 301)), 10001, "timestamp expired"),
        ("timestamp 301 s ahead", order(timestamp=str(now() + 301)), 10001, "timestamp expired"),
        ("timestamp in ms", order(timestamp=str(now() * 1000)), 10001, "timestamp"),
        ("amount 100.001", order(amount="100.001"), 10004, None),
        ("amount 0.00", order(amount="0.00"), 10004, None),
        ("amount 1,000.00", order(amount="1,000.00"), 10004, None),
        ("amount -5.00", order(amount="-5.00"), 10004, None),
        ("bank_id 9999", order(bank_id=9999), 10005, None),
        ("bank_id abc", order(bank_id="abc"), 10001, None),
        ("no bank_id (required by 1004)", order(bank_id=...), 10001, "bank_id is required"),
        ("no bank_no", order(bank_no=...), 10001, "bank_no is required"),
        ("bank_no with letters", order(bank_no="12AB"), 10001, "bank_no"),
        ("bank_no 31 digits", order(bank_no="1" * 31), 10001, "bank_no"),
        ("bank_account 51 characters", order(bank_account="a" * 51), 10001, "bank_account"),
        ("812 bad IFSC", order(pay_code="812", bank_ifsc="HDFC1001234"), 10001, "bank_ifsc"),
        ("812 IFSC of 10", order(pay_code="812", bank_ifsc="HDFC000123"), 10001, "bank_ifsc"),
        ("812 no user_name", order(pay_code="812", user_name=...), 10001, "user_name is required"),
        ("1102 wallet PAYPAL", order(pay_code="1102", wallet_type="PAYPAL"), 10001, "wallet_type"),
        ("1102 mobile of 10 digits", order(pay_code="1102", bank_no="0917123456"), 10001, "bank_no"),
        ("unknown pay_code", order(pay_code="7777"), 10001, "pay_code not supported"),
        ("KRW on the India rule", order(pay_code="812", currency="KRW"), 10001, "currency"),
        ("notify_url not http", order(notify_url="ftp://x/y"), 10001, "notify_url"),
        ("orderid of 65", order(orderid="o" * 65), 10001, "orderid"),
        ("amount above single_limit 5000.00", order(amount="5000.01"), 10007, None),
        ("amount below single_min 1.00", order(amount="0.99"), 10007, None),
    ]
    for field in ("currency", "orderid", "notify_url", "amount", "userip", "pay_code"):
        signed_cases.append((f"no {field}", order(**{field: ...}), 10001, f"{field} is required"))
    signed_cases.append(("empty userip", order(userip=""), 10001, "userip is required"))
    for what, p, want, msg in signed_cases:
        st, r = c.signed(APPLY, p)
        check(st == 200 and r["status"] == want and (msg is None or msg in r.get("msg", ""))
              and r.get("result") is None and reply_sign_ok(r, "m-amp"),
              f"{what} -> {want}" + (f" ({msg})" if msg else "") + ", signed", r)
    st, r = c.signed(APPLY, order(amount="5000.00"))
    check(r["status"] == 10000, "amount = single_limit -> accepted", r)

    for what, body, ctype in (("not JSON", "uid=m-amp", "application/json"),
                              ("a JSON array", "[1]", "application/json"),
                              ("unknown uid", json.dumps(dict(order(), uid="ghost")), "application/json"),
                              ("no uid", json.dumps(order(uid=...)), "application/json"),
                              ("repeated key", '{"uid":"m-amp","uid":"m-cat"}', "application/json")):
        st, r = c.post(APPLY, body=body, ctype=ctype)
        check(st == 200 and r["status"] == 10001 and "sign" not in r, f"{what} -> 10001, unsigned", r)
    st, r = c.signed(APPLY, order(custom={"a": 1}))
    check(r["status"] == 10001 and reply_sign_ok(r, "m-amp"), "a nested value -> 10001", r)
    st, r = c.post(APPLY, body=json.dumps(order()), ctype="text/plain")
    check(r["status"] == 10001, "Content-Type text/plain -> 10001", r)
    st, r = c.post("/fiat_gateway/query", {})
    check(st == 404 and r["status"] == 10001, "unknown path -> 404", (st, r))

    section("fiat_gateway: balance and daily limit")
    st, r = c.signed(APPLY, order(uid="m-bal", amount="30.00"))
    check(r["status"] == 10000, "balance 50.00: 30.00 -> ok", r)
    st, r = c.signed(APPLY, order(uid="m-bal", amount="30.00"))
    check(r["status"] == 10006 and reply_sign_ok(r, "m-bal"), "another 30.00 -> 10006", r)
    st, r = c.signed(APPLY, order(uid="m-bal", amount="20.00", bank_account="FAIL account"))
    check(r["status"] == 10000, "20.00 (holder FAIL..., will fail) -> ok, balance used up", r)
    led = c.ctl("GET", "/ledger?provider=fiat_gateway")[1]
    check(led["balances"].get("m-bal") == "0.00", "ledger balance 0.00", led["balances"])
    time.sleep(SETTLE_S + 0.3)
    st, r = c.signed(APPLY, order(uid="m-bal", amount="20.00"))
    check(r["status"] == 10000, "the failed 20.00 came back: 20.00 -> ok", r)
    for amt, want in (("60.00", 10000), ("40.00", 10000), ("0.01", 10007)):
        st, r = c.signed(APPLY, order(uid="m-day", amount=amt))
        check(r["status"] == want, f"daily_limit 100.00: {amt} -> {want}", r)


def verify_note(g, uid):
    n = note(g)
    m = MERCHANTS[uid]
    return n.get("sign") == t_sign(n, m["secret"], m.get("sign_mode", "amp_key"))


def test_notifications(c, hooks):
    section("fiat_gateway: notifications")
    o = order(path="/n1")
    st, r = c.signed(APPLY, o)
    txn = r["result"]["transactionid"]
    got = hooks.wait("/n1")
    check(len(got) == 1, "one notification to notify_url after settle_after_s", len(got))
    if got:
        g = got[0]
        n = note(g)
        check(g["headers"].get("Content-Type") == "application/json", "Content-Type application/json")
        check(list(n) == NOTE_KEYS and all(isinstance(v, str) for v in n.values()),
              "fields uid, orderid, transactionid, amount, status, timestamp, sign - all strings", n)
        check(n["uid"] == "m-amp" and n["orderid"] == o["orderid"] and n["transactionid"] == txn
              and n["amount"] == "100.00" and n["status"] == "success" and abs(int(n["timestamp"]) - now()) < 10,
              "values match the order, status success", n)
        check(verify_note(g, "m-amp"), "sign verifies with the test's signer (same MD5 rule)")
    w = c.ctl("GET", f"/fiat_gateway/notifications?orderid={o['orderid']}")[1]
    check(len(w) == 1 and w[0]["acked"] and w[0]["kind"] == "settle", "listed, acked", w)

    o = order(uid="m-cat", path="/n2", user_name="fail user")
    c.signed(APPLY, o)
    got = hooks.wait("/n2")
    check(got and note(got[0])["status"] == "failed" and verify_note(got[0], "m-cat"),
          "user_name FAIL...: status failed; concat merchant's notification signed concat", got and note(got[0]))

    hooks.script["/flaky"] = [(500, "success"), (200, "ok"), (200, "success!"), (200, "  Success\n")]
    o = order(path="/flaky")
    c.signed(APPLY, o)
    got = hooks.wait("/flaky", 4, timeout=10)
    time.sleep(0.3)
    got = hooks.on("/flaky")
    check(len(got) == 4, "500 'success', 'ok', 'success!' are not acks; '  Success\\n' is: 4 attempts", len(got))
    check(len({g["body"] for g in got}) == 1, "every attempt carries the same bytes")
    gaps = [round(b["t"] - a["t"], 2) for a, b in zip(got, got[1:])]
    check(all(gp >= d - 0.05 for gp, d in zip(gaps, RETRY)), f"retried after notify_retry_delays_s {RETRY}", gaps)
    w = c.ctl("GET", f"/fiat_gateway/notifications?orderid={o['orderid']}")[1]
    check(w[0]["acked"] and [a["ok"] for a in w[0]["attempts"]] == [False, False, False, True],
          "the attempts and the ack are listed", w)
    o = order(path="/never")
    c.signed(APPLY, o)
    time.sleep(SETTLE_S + sum(RETRY) + 0.8)
    w = c.ctl("GET", f"/fiat_gateway/notifications?orderid={o['orderid']}")[1]
    check(len(hooks.on("/never")) == 1 + len(RETRY) and w[0]["done"] and not w[0]["acked"],
          f"a receiver that never acks: 1 + {len(RETRY)} attempts, then given up", len(hooks.on("/never")))

    c.config({"notify_processing": True})
    o = order(path="/n3")
    c.signed(APPLY, o)
    got = hooks.wait("/n3", 2)
    check([note(g)["status"] for g in got] == ["processing", "success"] and all(verify_note(g, "m-amp") for g in got),
          "notify_processing: a processing notification, then success", [note(g).get("status") for g in got])
    c.config({"notify_processing": False})

    section("fiat_gateway: response faults")
    c.config({"bad_response_sign": True})
    st, r = c.signed(APPLY, order())
    check(r["status"] == 10000 and "sign" in r and not reply_sign_ok(r, "m-amp"),
          "bad_response_sign: executed, the reply's sign does not verify", r)
    c.config({"bad_response_sign": False, "unsigned_response": True})
    st, r = c.signed(APPLY, order())
    check(r["status"] == 10000 and "sign" not in r, "unsigned_response: no sign", r)
    c.config({"unsigned_response": False})
    c.ctl("POST", "/faults", {"provider": "fiat_gateway", "kind": "retcode", "code": 10006})
    st, r = c.signed(APPLY, order())
    check(r["status"] == 10006 and r["msg"] == "injected" and reply_sign_ok(r, "m-amp"),
          "retcode fault: a signed error in the gateway's envelope", r)


def test_control(c, hooks):
    section("fiat_gateway: control API")
    c.config({"settle_after_s": None})
    o = order(path="/c1")
    c.signed(APPLY, o)
    time.sleep(SETTLE_S + 0.2)
    check(hooks.on("/c1") == [], "settle_after_s null: no notification by itself")
    st, out = c.ctl("POST", "/fiat_gateway/settle", {"orderid": o["orderid"], "status": "failed"})
    got = hooks.wait("/c1")
    check(st == 200 and out["order"]["status"] == "failed" and got and note(got[0])["status"] == "failed",
          "settle failed -> failed notification", out)
    st, out = c.ctl("POST", "/fiat_gateway/settle", {"orderid": o["orderid"], "status": "success"})
    check(st == 409, "settling again -> 409", out)
    st, out = c.ctl("POST", "/fiat_gateway/settle", {"orderid": o["orderid"], "status": "success", "force": True})
    got = hooks.wait("/c1", 2)
    check(st == 200 and len(got) == 2 and note(got[1])["status"] == "success", "force -> success notification")
    st, out = c.ctl("POST", "/fiat_gateway/resend", {"orderid": o["orderid"]})
    got = hooks.wait("/c1", 3)
    check(st == 200 and len(got) == 3 and got[2]["body"] == got[1]["body"], "resend -> the same bytes again")
    st, out = c.ctl("POST", "/fiat_gateway/settle", {"orderid": "nope", "status": "success"})
    check(st == 404, "unknown orderid -> 404", out)
    c.config({"settle_after_s": SETTLE_S})
    raw = '{"orderid":"forged","status":"success","sign":"00"}'
    st, out = c.ctl("POST", "/fiat_gateway/notify", {"url": hooks.url("/f1"), "body": raw})
    got = hooks.wait("/f1")
    check(st == 200 and got and got[0]["body"] == raw.encode(), "forged raw body posted as is")
    fields = {"uid": "m-amp", "orderid": o["orderid"], "transactionid": "1", "amount": "100.00",
              "status": "success", "timestamp": str(now())}
    st, out = c.ctl("POST", "/fiat_gateway/notify", {"uid": "m-amp", "fields": fields, "sign_ok": False})
    got = hooks.wait("/c1", 4)
    check(st == 200 and len(got) == 4 and not verify_note(got[3], "m-amp") and note(got[3])["sign"],
          "forged fields with sign_ok false -> to the order's notify_url, sign does not verify")
    st, out = c.ctl("POST", "/fiat_gateway/notify", {"uid": "m-amp", "fields": fields, "url": hooks.url("/f2")})
    got = hooks.wait("/f2")
    check(got and verify_note(got[0], "m-amp"), "forged fields, sign_ok default -> verifies")
    st, out = c.ctl("POST", "/fiat_gateway/notify", {"fields": fields, "uid": "ghost"})
    check(st == 400, "unknown uid -> 400", out)
    orders = c.ctl("GET", "/fiat_gateway/orders?uid=m-cat")[1]
    check(orders and all(x["uid"] == "m-cat" for x in orders), "GET /_mock/fiat_gateway/orders?uid=", len(orders))
    st, out = c.ctl("POST", "/config", {"fiat_gateway": {"form_rules": {"555": {"name": "x", "form_fields": [
        {"name": "f", "validation_rules": ["regex:(("]}]}}}})
    check(st == 400, "a form rule with a bad regex -> 400", out)
    st, out = c.ctl("POST", "/config", {"fiat_gateway": {"form_rules": {"555": {
        "name": "Test", "description": "", "form_fields": [
            {"name": "bank_code", "label": "Bank", "type": "select", "required": True, "max_length": 10,
             "placeholder": "", "options": [{"value": "AAA", "name": "A"}], "validation_rules": ["required"]}]}}}})
    st2, r = c.signed(APPLY, order(pay_code="555", bank_code="AAA"))
    st3, r3 = c.signed(APPLY, order(pay_code="555", bank_code="BBB"))
    check(st == 200 and r["status"] == 10000 and r3["status"] == 10001, "config form_rules adds a pay_code", (r, r3))

    section("fiat_gateway: log and reset")
    text = json.dumps(c.log())
    check(not any(m["secret"] in text for u, m in MERCHANTS.items() if u != "test1"), "no secret in the request log")
    c.ctl("POST", "/reset")
    led = c.ctl("GET", "/ledger?provider=fiat_gateway")[1]
    check(led["withdrawals"] == [] and c.ctl("GET", "/fiat_gateway/notifications")[1] == [],
          "reset clears orders and notifications")
    st, r = c.signed(APPLY, dict(o, timestamp=str(now())))
    check(r["status"] == 10000, "after reset the orderid is new again", r)


def main():
    global HOOKS
    hooks = HOOKS = Receiver()

    def tests(port):
        c = Client(port)
        test_vectors()
        test_form_rule(c)
        test_apply(c, hooks)
        test_notifications(c, hooks)
        test_control(c, hooks)

    return run_mock({"fiat_gateway": {"merchants": MERCHANTS, "settle_after_s": SETTLE_S,
                                      "notify_retry_delays_s": RETRY, "notify_timeout_s": 2}},
                    "mock_fiat_", tests, f", notification receiver on {hooks.port}", hooks.server.shutdown,
                    lambda out: check(not any(m["secret"] in out for m in MERCHANTS.values()),
                                      "no secret in the server output"))


if __name__ == "__main__":
    sys.exit(main())
