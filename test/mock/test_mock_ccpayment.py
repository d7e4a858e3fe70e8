#!/usr/bin/env python3
"""
test_mock_ccpayment.py - self-test of the ccpayment mock (/usr/bin/python3 test/mock/test_mock_ccpayment.py).

Starts mock_provider.py on a free port and a webhook receiver (selftest.py, the
scaffolding the self-tests share), then drives the mock over HTTP with a client that
signs with its own code (ccpayment.py is imported only for the signing-vector unit
checks): the computed v1/v2 vectors from providers.md, v1 withdraw and bill/info, v2
network/Cwallet withdraw and record query, header/signature/timestamp/argument errors,
duplicates (11011) and repeated submits (11007), balance, rate limit and IP whitelist,
status progression, webhooks signed by the order's version rule and retried until the
receiver answers success, the control API (settle, resend, forged webhooks), faults and
the request log.
Prints one line per check; exits 0 when all pass, 1 otherwise.
"""

import hashlib
import hmac
import json
import os
import re
import sys
import time
import uuid

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ccpayment  # noqa: E402  (only for the signing-vector unit checks)
from selftest import MockClient, Receiver, check, run_mock, section  # noqa: E402

BASE = "/ccpayment"
V1_WITHDRAW = BASE + "/ccpayment/v1/withdraw"
V1_BILL = BASE + "/ccpayment/v1/bill/info"
V2_NET = BASE + "/ccpayment/v2/applyAppWithdrawToNetwork"
V2_CW = BASE + "/ccpayment/v2/applyAppWithdrawToCwallet"
V2_REC = BASE + "/ccpayment/v2/getAppWithdrawRecord"
DOC_APP, DOC_SECRET, DOC_TS = "202302010636261620672405236006912", "test_app_secret", "1677152490"
V1_BODY = ('{"merchant_order_id":"W0001","address":"9454818",'
           '"token_id":"8e5741cf-6e51-4892-9d04-3d40e1dd0128","value":"0.05"}')
V2_BODY = '{"orderId":"W0001","coinId":1280,"chain":"POLYGON","address":"0xabc","amount":"0.05"}'
VECTORS = {"v1": "2602b042a3113f363a228d144784c398cca9527538fdfc9aac03612d688c5784",
           "v2": "572ebc90897e864a5cfd016bb0df8e544083c160f83e37a0bce3ea8eff8ff6f8",
           "v2_empty": "4cab384ac198baedf252077724e8f96b2d4acd991adb34437768e7a50d7bd785",
           "v2_obj": "8fec4ab44f1a0790777430c5c0552e7c5a3c063167aa11c77326ff16cd25e55f"}
SECRETS = {name: f"{name}-secret-{uuid.uuid4().hex}" for name in
           ("app1", "app2", "quiet", "bal", "flaky", "never", "other")}
SECRETS[DOC_APP] = DOC_SECRET
TOKEN = "8e5741cf-6e51-4892-9d04-3d40e1dd0128"
WEBHOOK_FIELDS = ["pay_status", "order_type", "order_id", "record_id", "withdraw_amount", "net_receivable",
                  "network_fee", "network_fee_crypto", "network_coin_id", "network_fee_value", "chain",
                  "contract", "crypto", "to_address", "memo", "txid", "merchant_order_id", "merchant_pays_fee"]
RETRY = [0.3, 0.5, 0.8]
SETTLE_S = 0.6


# -- the test's own signer -----------------------------------------------------------------

def t_sign_v1(app_id, secret, ts, body):
    """v1: lowercase hex SHA-256 over appId + appSecret + timestamp + body."""
    b = body.encode() if isinstance(body, str) else body
    return hashlib.sha256(f"{app_id}{secret}{ts}".encode() + b).hexdigest()


def t_sign_v2(app_id, secret, ts, body):
    """v2: lowercase hex HMAC-SHA256 keyed with the secret over appId + timestamp + body."""
    b = body.encode() if isinstance(body, str) else body
    return hmac.new(secret.encode(), f"{app_id}{ts}".encode() + b, hashlib.sha256).hexdigest()


# -- client (the webhook receiver is selftest.Receiver) ------------------------------------------

class Client(MockClient):
    provider = "ccpayment"

    def call(self, path, obj=None, app="app1", ts=None, version=None, body=None, secret=None, headers=None,
             drop=(), sig=None):
        """POST a signed request; returns (http status, parsed JSON)."""
        if body is None:
            body = json.dumps(obj) if obj is not None else ""
        version = version or (1 if "/v1/" in path else 2)
        ts = str(int(time.time())) if ts is None else str(ts)
        signer = t_sign_v1 if version == 1 else t_sign_v2
        s = sig if sig is not None else signer(app, secret or SECRETS.get(app, "none"), ts, body)
        h = {"Appid": app, "Timestamp": ts, "Sign": s, "Content-Type": "application/json"}
        h.update(headers or {})
        for d in drop:
            h.pop(d, None)
        st, _, data = self.raw("POST", path, body.encode(), h)
        try:
            return st, json.loads(data)
        except ValueError:
            return st, data


def oid():
    return "W" + uuid.uuid4().hex[:20]


def v1_order(moid=None, **over):
    o = {"merchant_order_id": moid or oid(), "address": "0x" + "ab" * 20, "token_id": TOKEN, "value": "0.05"}
    o.update(over)
    return o


def v2_order(moid=None, **over):
    o = {"orderId": moid or oid(), "coinId": 1280, "chain": "POLYGON", "address": "0x" + "cd" * 20,
         "amount": "0.05"}
    o.update(over)
    return o


def code(resp):
    return resp[1].get("code") if isinstance(resp[1], dict) else None


# -- checks -----------------------------------------------------------------------------------

def test_vectors():
    section("ccpayment: computed vectors from providers.md section 3")
    for who, s1, s2 in (("client", t_sign_v1, t_sign_v2), ("mock", ccpayment.sign_v1, ccpayment.sign_v2)):
        check(s1(DOC_APP, DOC_SECRET, DOC_TS, V1_BODY) == VECTORS["v1"], f"{who}: v1 example -> 2602b042...5784")
        check(s2(DOC_APP, DOC_SECRET, DOC_TS, V2_BODY) == VECTORS["v2"], f"{who}: v2 example -> 572ebc90...f6f8")
        check(s2(DOC_APP, DOC_SECRET, DOC_TS, "") == VECTORS["v2_empty"], f"{who}: v2 no body -> 4cab384a...d785")
        check(s2(DOC_APP, DOC_SECRET, DOC_TS, "{}") == VECTORS["v2_obj"], f"{who}: v2 body {{}} -> 8fec4ab4...e55f")


def test_doc_vector_on_wire(c):
    section("ccpayment: the vectors on the wire (2023 timestamp)")
    st, r = c.call(V1_WITHDRAW, body=V1_BODY, app=DOC_APP, ts=DOC_TS, sig=VECTORS["v1"])
    check(st == 200 and r["code"] == 11006, "v1 vector with its 2023 timestamp -> 11006 ReqExpired", r)
    e = c.log()[-1]
    check(e["sig_ok"] is True and e["api_key"] == DOC_APP and e["requestId"] == "W0001" and not e["executed"],
          "log: signature verified (sig_ok), Appid and merchant_order_id logged, nothing executed", e)
    st, r = c.call(V2_NET, body=V2_BODY, app=DOC_APP, ts=DOC_TS, sig=VECTORS["v2"])
    check(r["code"] == 11006 and c.log()[-1]["sig_ok"] is True, "v2 vector -> sig_ok, 11006", r)
    st, r = c.call(V2_NET, body=V2_BODY, app=DOC_APP, ts=DOC_TS, sig=VECTORS["v1"])
    check(r["code"] == 11005, "v2 route with a v1-rule signature -> 11005 (sign checked before timestamp)", r)


def test_v1(c, hooks):
    section("ccpayment: v1 withdraw")
    o = v1_order(address="9454818")
    st, r = c.call(V1_WITHDRAW, o)
    check(st == 200 and r["code"] == 10000 and r["msg"] == "Success" and set(r["data"]) == {"order_id", "network_fee"},
          "Cwallet ID address -> code 10000, msg Success, data {order_id, network_fee}", r)
    check(re.fullmatch(r"[0-9]{33}", r["data"]["order_id"] or "") is not None and r["data"]["network_fee"] == "0",
          "order_id is 33 digits, Cwallet network_fee \"0\"", r["data"])
    cw_oid = r["data"]["order_id"]
    o2 = v1_order(memo=12345)
    st, r2 = c.call(V1_WITHDRAW, o2)
    check(r2["code"] == 10000 and r2["data"]["network_fee"] == "0.0001" and r2["data"]["order_id"] != cw_oid,
          "chain address with memo -> network_fee 0.0001, a new order_id", r2)
    st, r3 = c.call(V1_WITHDRAW, v1_order(memo=77))
    check(r3["code"] == 10000, "memo as an integer (the seed's type) is accepted", r3)
    e = c.log()[-1]
    check(e["executed"] is True and e["sig_ok"] is True and e["ret_code"] == 10000 and e["api_key"] == "app1",
          "log: executed, sig_ok, ret_code 10000", e)
    st, r4 = c.call(V1_WITHDRAW, v1_order(memo="12345"))
    check(r4["code"] == 11000, "memo as a string (the seed: Integer) -> refused", r4)

    section("ccpayment: v1 duplicates and errors")
    st, r = c.call(V1_WITHDRAW, o)
    check(r["code"] == 11011, "same merchant_order_id again -> 11011 OrderDuplicate", r)
    led = c.ctl("GET", "/ledger?provider=ccpayment")[1]
    check(led["executions"].get(f"app1/{o['merchant_order_id']}") == 1, "executed exactly once", led["executions"])
    st, r = c.call(V1_WITHDRAW, o, app="app2")
    check(r["code"] == 10000, "the same merchant_order_id under another app -> executed (per-app namespace)", r)
    good = v1_order()
    body = json.dumps(good)
    ts = str(int(time.time()))
    sig = t_sign_v1("app1", SECRETS["app1"], ts, body)
    flip = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    cases = [
        ("one wrong hex digit", dict(body=body, ts=ts, sig=flip), 11005),
        ("uppercase hex signature", dict(body=body, ts=ts, sig=sig.upper()), 11005),
        ("wrong secret", dict(body=body, secret="nope"), 11005),
        ("v2 HMAC rule on a v1 route", dict(body=body, version=2), 11005),
        ("signed body differs from the one sent (re-serialised)",
         dict(body=json.dumps(good, indent=1), sig=t_sign_v1("app1", SECRETS["app1"], ts, body), ts=ts), 11005),
        ("timestamp 130 s old", dict(body=body, ts=int(time.time()) - 130), 11006),
        ("timestamp 130 s ahead", dict(body=body, ts=int(time.time()) + 130), 11006),
        ("timestamp in milliseconds", dict(body=body, ts=int(time.time() * 1000)), 11006),
        ("non-numeric timestamp", dict(body=body, ts="now"), 11001),
        ("no Sign header", dict(body=body, drop=("Sign",)), 11001),
        ("no Appid header", dict(body=body, drop=("Appid",)), 11001),
        ("Content-Type text/plain", dict(body=body, headers={"Content-Type": "text/plain"}), 11001),
        ("unknown Appid", dict(body=body, app="nobody"), 12001),
        ("body not JSON", dict(body="merchant_order_id=1"), 11000),
        ("value 0", dict(obj=v1_order(value="0")), 11000),
        ("value -1", dict(obj=v1_order(value="-1")), 11000),
        ("value as a JSON number", dict(obj=v1_order(value=0.05)), 11000),
        ("no address", dict(obj={k: v for k, v in v1_order().items() if k != "address"}), 11000),
        ("no token_id", dict(obj={k: v for k, v in v1_order().items() if k != "token_id"}), 11000),
        ("memo an object", dict(obj=v1_order(memo={"a": 1})), 11000),
        ("value 0.0001 = the network fee (nothing left to receive)", dict(obj=v1_order(value="0.0001")), 14019),
    ]
    for what, kw, want in cases:
        st, r = c.call(V1_WITHDRAW, **kw)
        check(st == 200 and code((st, r)) == want and r.get("data") == {}, f"{what} -> {want}", r)
    st, r = c.call(V1_WITHDRAW, body=body, ts=ts, sig=sig)
    check(r["code"] == 10000, "the untampered request still executes", r)
    st, r = c.call(BASE + "/v1/withdraw", good)
    check(st == 404 and r["code"] == 11003, "path without the /ccpayment prefix -> 404 11003", (st, r))
    st, _, data = c.raw("GET", V1_WITHDRAW)
    check(st == 404, "GET on a POST route -> 404", st)


def test_bill_info(c, hooks):
    section("ccpayment: v1 bill/info and status progression")
    o = v1_order()
    t0 = time.monotonic()
    st, r = c.call(V1_WITHDRAW, o)
    order_id = r["data"]["order_id"]
    st, r = c.call(V1_BILL, {"merchant_order_ids": [o["merchant_order_id"], "unknown-id"]})
    check(r["code"] == 10000 and isinstance(r["data"], list) and len(r["data"]) == 1,
          "bill/info -> a list, the unknown id left out", r)
    first = r["data"][0]
    d = first["order_detail"]
    check(set(d) == {"merchant_order_id", "chain", "contract", "crypto", "order_amount", "token_rate", "status",
                     "created", "order_id"} and d["order_id"] == order_id and d["order_amount"] == "0.05"
          and d["crypto"] == "USDT" and d["chain"] == "POLYGON",
          "order_detail has the documented fields (order_id, crypto/chain from token_id)", d)
    check(d["status"] == "Pending" and first["trade_list"] == [], "just created: Pending, empty trade_list", first)
    time.sleep(max(0, t0 + 0.4 - time.monotonic()))
    r = c.call(V1_BILL, {"merchant_order_ids": [o["merchant_order_id"]]})[1]
    tr = r["data"][0]["trade_list"]
    check(r["data"][0]["order_detail"]["status"] == "Processing" and len(tr) == 1 and tr[0]["txid"] == ""
          and tr[0]["network_fee"] == "0.0001", "after processing_after_s: Processing, one trade, no txid yet", r)
    hooks.wait("/v1", pred=lambda g: json.loads(g["body"])["merchant_order_id"] == o["merchant_order_id"])
    r = c.call(V1_BILL, {"merchant_order_ids": [o["merchant_order_id"]]})[1]
    tr = r["data"][0]["trade_list"][0]
    check(r["data"][0]["order_detail"]["status"] == "Successful" and re.fullmatch(r"0x[0-9a-f]{64}", tr["txid"])
          and tr["status"] == "Successful", "after settle_after_s: Successful with a 0x txid", r)
    r = c.call(V1_BILL, {"merchant_order_ids": [o["merchant_order_id"]]}, app="app2")[1]
    check(r["code"] == 10000 and r["data"] == [], "another app does not see it", r)
    for what, obj, want in (("101 ids", {"merchant_order_ids": [f"x{i}" for i in range(101)]}, 11010),
                            ("empty list", {"merchant_order_ids": []}, 11000),
                            ("not a list", {"merchant_order_ids": "abc"}, 11000),
                            ("no body", None, 11000)):
        r = c.call(V1_BILL, obj)[1]
        check(r["code"] == want, f"bill/info with {what} -> {want}", r)
    r = c.call(V1_BILL, {"merchant_order_ids": [f"x{i}" for i in range(100)]})[1]
    check(r["code"] == 10000 and r["data"] == [], "100 ids is allowed", r)


def test_v2(c, hooks):
    section("ccpayment: v2 withdraw and record")
    o = v2_order(memo="", merchantPayNetworkFee=False)
    st, r = c.call(V2_NET, o, app="app2")
    check(st == 200 and r["code"] == 10000 and r["msg"] == "success" and list(r["data"]) == ["recordId"]
          and re.fullmatch(r"[0-9]{33}", r["data"]["recordId"]), "applyAppWithdrawToNetwork -> {recordId}", r)
    rid = r["data"]["recordId"]
    t_created = time.monotonic()
    r = c.call(V2_REC, {"orderId": o["orderId"]}, app="app2")[1]
    rec = r["data"]["record"]
    want_keys = {"recordId", "withdrawType", "appId", "coinId", "coinSymbol", "chain", "fromAddress", "toAddress",
                 "cwalletUser", "orderId", "txId", "toMemo", "status", "amount", "fee", "reason", "coinUSDPrice"}
    check(r["code"] == 10000 and set(rec) == want_keys and rec["recordId"] == rid and rec["status"] == "Processing"
          and rec["coinId"] == 1280 and rec["coinSymbol"] == "USDT" and rec["withdrawType"] == "Network"
          and rec["fee"] == {"coinId": 1280, "coinSymbol": "USDT", "amount": "0.0001"} and rec["txId"] == "",
          "getAppWithdrawRecord by orderId: the SDK's record fields, Processing, fee object", rec)
    r2 = c.call(V2_REC, {"recordId": rid}, app="app2")[1]
    check(r2["data"]["record"] == rec, "by recordId: the same record")
    st, r = c.call(V2_NET, o, app="app2")
    check(r["code"] == 11007, "the same orderId again within repeat_window_s -> 11007 RepeatedSubmit", r)
    hooks.wait("/v2", pred=lambda g: json.loads(g["body"]).get("orderId") == o["orderId"])
    rec = c.call(V2_REC, {"recordId": rid}, app="app2")[1]["data"]["record"]
    check(rec["status"] == "Success" and re.fullmatch(r"0x[0-9a-f]{64}", rec["txId"]), "settled: Success, txId", rec)
    time.sleep(max(0, t_created + 1.6 - time.monotonic()))
    st, r = c.call(V2_NET, o, app="app2")
    check(r["code"] == 11011, "after repeat_window_s (1.5 s) -> 11011 OrderDuplicate", r)
    led = c.ctl("GET", "/ledger?provider=ccpayment")[1]
    check(led["executions"].get(f"app2/{o['orderId']}") == 1, "executed exactly once")

    cw = {"orderId": oid(), "coinId": "1280", "cwalletUser": "9454818", "amount": "1.5"}
    r = c.call(V2_CW, cw, app="app2")[1]
    check(r["code"] == 10000 and "recordId" in r["data"], "applyAppWithdrawToCwallet (coinId as a digit string)", r)
    rec = c.call(V2_REC, {"orderId": cw["orderId"]}, app="app2")[1]["data"]["record"]
    check(rec["withdrawType"] == "Cwallet" and rec["cwalletUser"] == "9454818" and rec["fee"]["amount"] == "0"
          and rec["toAddress"] == "", "Cwallet record: no fee, cwalletUser set", rec)

    for what, path, obj, want in (
            ("orderId of 2 characters", V2_NET, v2_order("ab"), 11000),
            ("orderId of 65 characters", V2_NET, v2_order("a" * 65), 11000),
            ("coinId 0", V2_NET, v2_order(coinId=0), 11000),
            ("coinId true", V2_NET, v2_order(coinId=True), 11000),
            ("no chain", V2_NET, {k: v for k, v in v2_order().items() if k != "chain"}, 11000),
            ("amount as a number", V2_NET, v2_order(amount=1), 11000),
            ("merchantPayNetworkFee \"yes\"", V2_NET, v2_order(merchantPayNetworkFee="yes"), 11000),
            ("notifyUrl not a URL", V2_NET, v2_order(notifyUrl="ftp:x"), 11000),
            ("notifyUrl of 151 characters", V2_NET, v2_order(notifyUrl="http://a/" + "x" * 142), 11000),
            ("Cwallet without cwalletUser", V2_CW, {"orderId": oid(), "coinId": 1280, "amount": "1"}, 11000),
            ("record query with neither id", V2_REC, {}, 11000),
            ("record query of an unknown orderId", V2_REC, {"orderId": "nope"}, 11003),
            ("record query of another app's recordId", V2_REC, {"recordId": rid}, 11003)):
        r = c.call(path, obj)[1]
        check(r["code"] == want, f"{what} -> {want}", r)
    st, r = c.call(V2_REC, body="")
    check(r["code"] == 11000 and c.log()[-1]["sig_ok"] is True,
          "empty body signed as appId+timestamp verifies (then 11000: no id)", r)
    st, r = c.call(V2_NET, v2_order(), version=1)
    check(r["code"] == 11005, "v1 SHA-256 rule on a v2 route -> 11005", r)
    mp = v2_order(amount="0.0001", merchantPayNetworkFee=True)
    r = c.call(V2_NET, mp)[1]
    check(r["code"] == 10000, "amount = fee with merchantPayNetworkFee -> accepted", r)
    r = c.call(V2_NET, v2_order(amount="0.0001"))[1]
    check(r["code"] == 14019, "amount = fee without it -> 14019", r)


def verify_hook(g, app, version):
    h = g["headers"]
    signer = t_sign_v1 if version == 1 else t_sign_v2
    return (h.get("Appid") == app and re.fullmatch(r"[0-9]{10}", h.get("Timestamp", "")) is not None
            and abs(int(h["Timestamp"]) - time.time()) < 30
            and h.get("Sign") == signer(app, SECRETS[app], h["Timestamp"], g["body"]))


def test_webhooks(c, hooks):
    section("ccpayment: webhooks")
    o = v1_order(address="9454818", memo=101)
    c.call(V1_WITHDRAW, o)
    got = hooks.wait("/v1", pred=lambda g: json.loads(g["body"])["merchant_order_id"] == o["merchant_order_id"])
    check(len(got) == 1, "v1 order settles -> one webhook to the app's webhook_url", len(got))
    if got:
        g = got[0]
        p = json.loads(g["body"])
        check(g["headers"].get("Content-Type") == "application/json; charset=utf-8",
              "Content-Type application/json; charset=utf-8", g["headers"].get("Content-Type"))
        check(verify_hook(g, "app1", 1), "headers Appid, Timestamp (now), Sign = SHA-256 v1 rule over the raw body")
        check(not verify_hook(g, "app1", 2), "the v2 rule does not verify it")
        check(list(p) == WEBHOOK_FIELDS, "payload: exactly the documented v1 fields, in order", list(p))
        check(p["pay_status"] == "success" and p["order_type"] == "API Withdrawal" and p["txid"] == "internal transfer"
              and p["withdraw_amount"] == "0.05" and p["net_receivable"] == "0.05" and p["network_fee"] == "0"
              and p["to_address"] == "9454818" and p["memo"] == "101" and p["merchant_pays_fee"] is False
              and re.fullmatch(r"[0-9]{33}", p["order_id"]) and p["record_id"] != p["order_id"],
              "values: success, API Withdrawal, internal transfer, amounts, memo", p)
        check(b'", "' in g["body"] and g["body"] == json.dumps(p).encode(),
              "body uses \", \" separators (a compact re-serialisation would not verify)")
        check(int(g["headers"].get("Content-Length", -1)) == len(g["body"]), "Content-Length matches")

    o2 = v2_order(notifyUrl=hooks.url("/v2notify"))
    c.call(V2_NET, o2, app="app2")
    got = hooks.wait("/v2notify")
    check(len(got) == 1, "v2 order with notifyUrl -> webhook there (not the app's URL)", len(got))
    if got:
        g = got[0]
        p = json.loads(g["body"])
        check(verify_hook(g, "app2", 2) and not verify_hook(g, "app2", 1),
              "v2 order: Sign = HMAC-SHA256 v2 rule over the raw body (v1 rule does not verify)")
        check(list(p) == WEBHOOK_FIELDS + ["orderId", "recordId"] and p["orderId"] == o2["orderId"]
              and p["merchant_order_id"] == o2["orderId"] and p["recordId"] == p["record_id"]
              and p["net_receivable"] == "0.0499" and re.fullmatch(r"0x[0-9a-f]{64}", p["txid"]),
              "v2 payload: v1 fields + orderId, recordId; net_receivable = amount - fee", p)

    o3 = v1_order(address="fail-0xdead")
    c.call(V1_WITHDRAW, o3)
    got = hooks.wait("/v1", pred=lambda g: json.loads(g["body"])["merchant_order_id"] == o3["merchant_order_id"])
    p = json.loads(got[0]["body"]) if got else {}
    check(p.get("pay_status") == "failed" and p.get("txid") == "", "address starting with fail -> pay_status failed, "
                                                                      "no txid", p)
    r = c.call(V1_BILL, {"merchant_order_ids": [o3["merchant_order_id"]]})[1]
    check(r["data"][0]["order_detail"]["status"] == "Failed", "bill/info says Failed", r)

    section("ccpayment: webhook retries")
    hooks.script["/flaky"] = [(500, "success"), (200, "fail"), (200, "OK, SUCCESS received")]
    o4 = v1_order()
    c.call(V1_WITHDRAW, o4, app="flaky")
    got = hooks.wait("/flaky", 3, timeout=10)
    time.sleep(0.3)
    got = hooks.on("/flaky")
    check(len(got) == 3, "500 (even with success body), then 200 'fail', then 200 '...SUCCESS...': 3 attempts",
          len(got))
    check(len({g["body"] for g in got}) == 1, "every attempt carries the same body bytes")
    check(all(verify_hook(g, "flaky", 1) for g in got), "each attempt is signed (fresh Timestamp/Sign)")
    gaps = [round(b["t"] - a["t"], 2) for a, b in zip(got, got[1:])]
    check(len(gaps) == 2 and gaps[0] >= RETRY[0] - 0.05 and gaps[1] >= RETRY[1] - 0.05,
          f"retried after webhook_retry_delays_s {RETRY[:2]}", gaps)
    w = c.ctl("GET", f"/ccpayment/webhooks?order={o4['merchant_order_id']}")[1]
    check(len(w) == 1 and w[0]["acked"] and w[0]["done"] and [a["http_status"] for a in w[0]["attempts"]]
          == [500, 200, 200] and [a["ok"] for a in w[0]["attempts"]] == [False, False, True],
          "GET /_mock/ccpayment/webhooks shows the attempts and the ack", w)
    o5 = v1_order()
    c.call(V1_WITHDRAW, o5, app="never")
    time.sleep(SETTLE_S + sum(RETRY) + 0.8)
    got = hooks.on("/never")
    w = c.ctl("GET", f"/ccpayment/webhooks?order={o5['merchant_order_id']}")[1]
    check(len(got) == 1 + len(RETRY) and w[0]["done"] and not w[0]["acked"],
          f"a receiver that never says success: 1 + {len(RETRY)} attempts, then given up", (len(got), w[0]))
    o6 = v1_order()
    c.call(V1_WITHDRAW, o6, app="quiet")
    time.sleep(SETTLE_S + 0.3)
    w = c.ctl("GET", f"/ccpayment/webhooks?order={o6['merchant_order_id']}")[1]
    st_ = c.call(V1_BILL, {"merchant_order_ids": [o6["merchant_order_id"]]}, app="quiet")[1]
    check(w == [] and st_["data"][0]["order_detail"]["status"] == "Successful",
          "app without webhook_url: settles, no webhook", w)


def test_control(c, hooks):
    section("ccpayment: control API")
    c.config({"settle_after_s": None})
    o = v1_order()
    r = c.call(V1_WITHDRAW, o)[1]
    time.sleep(SETTLE_S + 0.2)
    r = c.call(V1_BILL, {"merchant_order_ids": [o["merchant_order_id"]]})[1]
    check(r["data"][0]["order_detail"]["status"] == "Processing", "settle_after_s null: stays Processing", r)
    st, out = c.ctl("POST", "/ccpayment/settle", {"order_id": o["merchant_order_id"], "pay_status": "failed"})
    check(st == 200 and out["ok"] and out["record"]["v1_status"] == "Failed" and out["webhook_id"],
          "settle by merchant order id -> Failed, webhook queued", out)
    got = hooks.wait("/v1", pred=lambda g: json.loads(g["body"])["merchant_order_id"] == o["merchant_order_id"])
    check(len(got) == 1 and json.loads(got[0]["body"])["pay_status"] == "failed", "failed webhook delivered")
    st, out = c.ctl("POST", "/ccpayment/settle", {"order_id": o["merchant_order_id"], "pay_status": "success"})
    check(st == 409, "settling again -> 409", out)
    st, out = c.ctl("POST", "/ccpayment/settle", {"order_id": out["record"]["order_id"], "pay_status": "success",
                                                   "force": True})
    check(st == 200 and out["record"]["v2_status"] == "Success", "force, by order_id -> flips to success", out)
    got = hooks.wait("/v1", 2, pred=lambda g: json.loads(g["body"])["merchant_order_id"] == o["merchant_order_id"])
    check(len(got) == 2 and json.loads(got[1]["body"])["pay_status"] == "success", "a second webhook (success)")
    st, out = c.ctl("POST", "/ccpayment/resend", {"order_id": o["merchant_order_id"]})
    got = hooks.wait("/v1", 3, pred=lambda g: json.loads(g["body"])["merchant_order_id"] == o["merchant_order_id"])
    check(st == 200 and len(got) == 3 and got[2]["body"] == got[1]["body"], "resend -> the same body again", out)
    st, out = c.ctl("POST", "/ccpayment/settle", {"order_id": "nope", "pay_status": "success"})
    check(st == 404, "settle of an unknown order -> 404", out)
    st, out = c.ctl("POST", "/ccpayment/settle", {"order_id": o["merchant_order_id"], "pay_status": "done"})
    check(st == 400, "bad pay_status -> 400", out)
    c.config({"settle_after_s": SETTLE_S})

    raw = '{"pay_status":"success","merchant_order_id":"forged-1"}'
    for sign_ok, version, path in ((True, 1, "/forged1"), (False, 1, "/forged2"), (True, 2, "/forged3")):
        st, out = c.ctl("POST", "/ccpayment/webhook", {"app_id": "app1", "body": raw, "sign_ok": sign_ok,
                                                        "version": version, "url": hooks.url(path)})
        got = hooks.wait(path)
        check(st == 200 and len(got) == 1 and got[0]["body"] == raw.encode()
              and verify_hook(got[0], "app1", version) is sign_ok,
              f"forged webhook v{version} sign_ok={sign_ok}: exact body, signature {'verifies' if sign_ok else 'fails'}")
    st, out = c.ctl("POST", "/ccpayment/webhook", {"app_id": "app1", "body": raw, "timestamp": 1677152490,
                                                    "url": hooks.url("/forged4")})
    got = hooks.wait("/forged4")
    check(got and got[0]["headers"]["Timestamp"] == "1677152490" and
          got[0]["headers"]["Sign"] == t_sign_v1("app1", SECRETS["app1"], "1677152490", raw),
          "forged webhook with a stale timestamp, correctly signed")
    st, out = c.ctl("POST", "/ccpayment/webhook", {"app_id": "nobody", "body": raw})
    check(st == 400, "forged webhook for an unknown app -> 400", out)
    w = c.ctl("GET", "/ccpayment/webhooks")[1]
    check(sum(d["kind"] == "forged" for d in w) == 4 and all(not d["acked"] or d["attempts"] for d in w),
          "forged webhooks are listed (kind forged)")
    recs = c.ctl("GET", "/ccpayment/records?app_id=app1")[1]
    check(recs and all(r["app_id"] == "app1" for r in recs), "GET /_mock/ccpayment/records?app_id=", len(recs))


def test_limits(c):
    section("ccpayment: balance, rate limit, IP whitelist")
    r = c.call(V1_WITHDRAW, v1_order(value="0.6"), app="bal")[1]
    check(r["code"] == 10000, "balance 1.0: 0.6 -> ok", r)
    r = c.call(V1_WITHDRAW, v1_order(value="0.6"), app="bal")[1]
    check(r["code"] == 14000, "another 0.6 -> 14000 insufficient balance", r)
    r = c.call(V2_NET, v2_order(amount="0.4", address="fail-0x01"), app="bal")[1]
    check(r["code"] == 10000, "0.4 (v2, to a failing address) -> ok, balance used up", r)
    led = c.ctl("GET", "/ledger?provider=ccpayment")[1]
    check(led["balances"].get("bal") == "0", "ledger balances: bal 0", led["balances"])
    r = c.call(V1_WITHDRAW, v1_order(value="0.3"), app="bal")[1]
    check(r["code"] == 14000, "0.3 -> 14000", r)

    c.config({"rate_limit_per_s": 3})
    time.sleep(1.05)
    codes = [c.call(V1_BILL, {"merchant_order_ids": ["x"]}, app="other")[1]["code"] for _ in range(5)]
    check(codes[:3] == [10000] * 3 and codes[3:] == [11004, 11004], "rate_limit_per_s 3: 3 ok then 11004", codes)
    check(c.call(V1_BILL, {"merchant_order_ids": ["x"]}, app="app1")[1]["code"] == 10000, "per app: app1 unaffected")
    time.sleep(1.05)
    check(c.call(V1_BILL, {"merchant_order_ids": ["x"]}, app="other")[1]["code"] == 10000, "a second later: ok again")
    c.config({"rate_limit_per_s": None, "ip_whitelist": ["10.1.2.3"]})
    r = c.call(V1_BILL, {"merchant_order_ids": ["x"]})[1]
    check(r["code"] == 12002, "ip_whitelist without 127.0.0.1 -> 12002", r)
    c.config({"ip_whitelist": ["10.1.2.3", "127.0.0.1"]})
    check(c.call(V1_BILL, {"merchant_order_ids": ["x"]})[1]["code"] == 10000, "with 127.0.0.1 -> ok")
    c.config({"ip_whitelist": None})
    # the failed 0.4 order gives its amount back once it settles
    time.sleep(SETTLE_S + 0.3)
    r = c.call(V1_WITHDRAW, v1_order(value="0.3"), app="bal")[1]
    led = c.ctl("GET", "/ledger?provider=ccpayment")[1]
    check(r["code"] == 10000 and led["balances"].get("bal") == "0.1",
          "the failed withdrawal gave 0.4 back: 0.3 -> ok, 0.1 left", (r, led["balances"]))
    st, out = c.ctl("POST", "/config", {"ccpayment": {"settle_outcome": "maybe"}})
    check(st == 400, "invalid config -> 400", out)


def test_faults_and_log(c):
    section("ccpayment: faults, log, reset")
    c.ctl("POST", "/faults", {"provider": "ccpayment", "kind": "retcode", "code": 11002})
    st, r = c.call(V1_WITHDRAW, v1_order())
    check(st == 200 and r == {"code": 11002, "msg": "injected", "data": {}}, "retcode fault: in the envelope", r)
    o = v1_order()
    c.ctl("POST", "/faults", {"provider": "ccpayment", "kind": "timeout_after", "delay_s": 0.5})
    try:
        c.raw("POST", V1_WITHDRAW, json.dumps(o).encode(), timeout=0.3,
              headers={"Appid": "app1", "Timestamp": str(int(time.time())), "Content-Type": "application/json",
                       "Sign": t_sign_v1("app1", SECRETS["app1"], str(int(time.time())), json.dumps(o))})
        timed_out = False
    except OSError:
        timed_out = True
    r = c.call(V1_WITHDRAW, o)[1]
    check(timed_out and r["code"] == 11011, "timeout_after executes: the retry is a duplicate (11011)", r)
    log = c.log()
    text = json.dumps(log)
    check(all({"api_key", "requestId", "ret_code", "sig_ok", "executed"} <= set(e) for e in log),
          "request log entries carry api_key, requestId, ret_code, sig_ok, executed")
    check(not any(s in text for s in SECRETS.values() if s != DOC_SECRET), "no app secret in the request log")
    c.ctl("POST", "/reset")
    led = c.ctl("GET", "/ledger?provider=ccpayment")[1]
    w = c.ctl("GET", "/ccpayment/webhooks")[1]
    check(led["withdrawals"] == [] and led["executions"] == {} and w == [], "reset clears records and webhooks")
    r = c.call(V1_WITHDRAW, o)[1]
    check(r["code"] == 10000, "after reset the merchant order id is new again", r)


def test_v1_seed_errors(c):
    section("ccpayment: v1 errors as the seed prints them (the mock's default)")
    c.config({"v1_error_code": 224066})
    o = v1_order()
    st, r = c.call(V1_WITHDRAW, o)
    st, r2 = c.call(V1_WITHDRAW, o)
    st, r3 = c.call(V2_NET, v2_order(o["merchant_order_id"]))
    c.config({"v1_error_code": None})
    check(r["code"] == 10000 and r2 == {"code": 224066, "msg": "Service error, please try again",
                                        "data": {"reason": r2["data"].get("reason"), "mock_code": 11011}},
          "a v1 duplicate -> 224066 Service error, please try again (the seed's only v1 error)", r2)
    check(r3["code"] in (11007, 11011), "v2 routes keep the v2 numbers", r3)


def main():
    hooks = Receiver()
    apps = {"app1": {"webhook_url": hooks.url("/v1")}, "app2": {"webhook_url": hooks.url("/v2")},
            "quiet": {"webhook_url": None}, "bal": {"webhook_url": None, "balance": "1.0"},
            "flaky": {"webhook_url": hooks.url("/flaky")}, "never": {"webhook_url": hooks.url("/never")},
            "other": {"webhook_url": None}, DOC_APP: {"webhook_url": None}}
    for k, a in apps.items():
        a["secret"] = SECRETS[k]

    def tests(port):
        c = Client(port)
        test_vectors()
        test_doc_vector_on_wire(c)
        test_v1(c, hooks)
        test_bill_info(c, hooks)
        test_v2(c, hooks)
        test_webhooks(c, hooks)
        test_control(c, hooks)
        test_limits(c)
        test_faults_and_log(c)
        test_v1_seed_errors(c)

    return run_mock({"ccpayment": {"apps": apps, "settle_after_s": SETTLE_S, "processing_after_s": 0.3,
                                   "repeat_window_s": 1.5, "webhook_retry_delays_s": RETRY,
                                   "webhook_timeout_s": 2, "v1_error_code": None}},
                    "mock_ccp_", tests, f", webhook receiver on {hooks.port}", hooks.server.shutdown,
                    lambda out: check(not any(s in out for s in SECRETS.values()), "no secret in the server output"))


if __name__ == "__main__":
    sys.exit(main())
