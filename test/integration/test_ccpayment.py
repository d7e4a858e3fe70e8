"""Integration suite for the ccpayment provider: a real server and worker, the mock
CCPayment (test/mock/ccpayment.py) with two apps, and the callback shim
(callback_shim.py) playing the application's web handler, which passes each
webhook's raw body and headers to withdraw_callback over SQL, as a role that
holds only withdraw_webhook.

Accounts: ccp1 speaks API v1 (/ccpayment/v1/withdraw, bill/info, SHA-256 Sign),
ccp2 API v2 (applyAppWithdrawToNetwork / ...ToCwallet, getAppWithdrawRecord,
HMAC-SHA256 Sign).  Both poll every 300 ms; where a test must show that the
webhook alone settles a withdrawal, the mock's status route answers 503 for
the while (a fault), so no poll can.

Run: python3 test/integration/test_ccpayment.py [name-filter ...]  (as a non-root user)
"""

import json
import time

from harness import run_suite, wait_until

cluster = None
mock = None
shim = None

APP1, SECRET1 = "ccp-app-v1", "ccp-secret-v1"
APP2, SECRET2 = "ccp-app-v2", "ccp-secret-v2"
POLYGON_USDT = "8e5741cf-6e51-4892-9d04-3d40e1dd0128"
V1_STATUS, V2_STATUS = "/bill/info", "getAppWithdrawRecord"
SETTLE_AFTER_S = 0.5


def account(name, app_id, secret, version):
    cluster.sql("SELECT withdraw_account_create(%s, 'ccpayment', %s, %s, %s)",
                (name, mock.base_url("ccpayment"), json.dumps({"app_id": app_id, "app_secret": secret}),
                 json.dumps({"api_version": version, "poll_interval_ms": 300})))


def create_v1(moid, **fields):
    body = {"merchant_order_id": moid, "address": "0xabc0000000000000000000000000000000000001",
            "token_id": POLYGON_USDT, "value": "1.5"}
    body.update(fields)
    return cluster.value("SELECT withdraw_create('ccp1', %s)", (json.dumps(body),))


def create_v2(order_id, **fields):
    body = {"orderId": order_id, "coinId": 1280, "chain": "POLYGON",
            "address": "0xabc0000000000000000000000000000000000002", "amount": "2.5"}
    body.update(fields)
    return cluster.value("SELECT withdraw_create('ccp2', %s)", (json.dumps(body),))


COLS = ("state", "provider_status", "provider_id", "txid", "fee", "fee_asset", "last_error",
        "idempotency_key", "details")


def row(wid):
    return cluster.withdrawal(wid, COLS)


def wait_state(wid, states, timeout=15):
    return cluster.wait_withdrawal(wid, states, COLS, timeout)


def events(wid):
    return cluster.state_path(wid)


def verdicts(wid):
    return cluster.verdicts(wid)


def attempts(wid, kind="create"):
    return [r[0] for r in cluster.sql("SELECT outcome FROM withdraw.attempts WHERE withdrawal_id = %s"
                                      " AND kind = %s ORDER BY id", (wid, kind))]


def executions(app, moid):
    return mock.ledger("ccpayment")["executions"].get(f"{app}/{moid}", 0)


def record(moid, app):
    recs = [r for r in mock.call("GET", f"/_mock/ccpayment/records?app_id={app}")
            if r["merchant_order_id"] == moid]
    assert len(recs) == 1, recs
    return recs[0]


def deliveries(moid=None):
    path = "/_mock/ccpayment/webhooks" + (f"?order={moid}" if moid else "")
    return mock.call("GET", path)


def wait_delivered(delivery_id, count=1):
    """The mock's webhook delivery once it has made `count` attempts and is done."""
    def done():
        d = [x for x in deliveries() if x["id"] == delivery_id][0]
        return d["done"] and len(d["attempts"]) >= count and d
    return wait_until(done, 10, 0.05, f"webhook {delivery_id} to be delivered")


def shim_calls_since(n):
    return shim.calls_of("callback")[n:]


def block_status(path, seconds):
    """Every status query on `path` answers HTTP 503 for `seconds`: only webhooks can settle."""
    mock.fault(provider="ccpayment", path=path, kind="http_503", duration_s=seconds)


def set_settle(value):
    mock.configure({"ccpayment": {"settle_after_s": value}})


def forge(app, body, url, **kw):
    return mock.call("POST", "/_mock/ccpayment/webhook", dict({"app_id": app, "body": body, "url": url}, **kw))


# -- tests

def test_v1_create_submitted_then_webhook_succeeds():
    block_status(V1_STATUS, 3)
    moid = "v1-ok-1"
    wid = create_v1(moid)
    r = wait_state(wid, ["submitted", "succeeded"])
    rec = record(moid, APP1)
    assert r["provider_id"] == rec["order_id"], (r, rec)
    assert str(r["fee"]) == "0.0001", r          # network_fee of the create answer
    r = wait_state(wid, ["succeeded"])
    rec = record(moid, APP1)
    assert r["txid"] == rec["txid"] and r["txid"].startswith("0x"), (r, rec["txid"])
    assert r["provider_status"] == "pay_status success", r
    assert executions(APP1, moid) == 1
    v = verdicts(wid)
    assert [x[:2] for x in v] == [("withdrawal", "applied")], v
    ev = events(wid)
    assert ev == ["queued", "sending", "submitted", "succeeded"], ev
    hooks = deliveries(moid)
    assert len(hooks) == 1 and hooks[0]["acked"] and len(hooks[0]["attempts"]) == 1, hooks
    return f"{' > '.join(ev)}; order_id {r['provider_id'][:10]}..., fee {r['fee']}, settled by the webhook"


def test_v2_network_create_submitted_then_webhook_succeeds():
    block_status(V2_STATUS, 3)
    oid = "v2-net-1"
    wid = create_v2(oid)
    r = wait_state(wid, ["submitted", "succeeded"])
    rec = record(oid, APP2)
    assert r["provider_id"] == rec["record_id"] and rec["record_id"] != rec["order_id"], (r, rec)
    sent = [q for q in mock.requests("ccpayment") if q["requestId"] == oid]
    assert [q["path"] for q in sent] == ["/ccpayment/v2/applyAppWithdrawToNetwork"], sent
    assert sent[0]["sig_ok"] and sent[0]["ret_code"] == 10000, sent
    r = wait_state(wid, ["succeeded"])
    rec = record(oid, APP2)
    assert r["txid"] == rec["txid"], (r, rec)
    assert str(r["fee"]) == "0.0001", r          # network_fee of the webhook (v2 answers carry none)
    assert executions(APP2, oid) == 1
    v = verdicts(wid)
    assert [x[:2] for x in v] == [("withdrawal", "applied")], v
    return f"{' > '.join(events(wid))}; recordId {r['provider_id'][:10]}..., fee {r['fee']}, HMAC webhook"


def test_v2_cwallet_route():
    oid = "v2-cw-1"
    body = {"orderId": oid, "coinId": 1280, "cwalletUser": "9454818", "amount": "3"}
    wid = cluster.value("SELECT withdraw_create('ccp2', %s)", (json.dumps(body),))
    r = wait_state(wid, ["succeeded"])
    rec = record(oid, APP2)
    sent = [q["path"] for q in mock.requests("ccpayment") if q["requestId"] == oid and "apply" in q["path"]]
    assert sent == ["/ccpayment/v2/applyAppWithdrawToCwallet"], sent
    assert r["provider_id"] == rec["record_id"], (r, rec)
    assert r["txid"] == "internal transfer" and r["fee"] is not None and float(r["fee"]) == 0, r
    assert executions(APP2, oid) == 1
    return f"{' > '.join(events(wid))}; txid {r['txid']!r}, fee {r['fee']}"



def test_polls_settle_without_webhooks():
    """The status query alone (v1 bill/info, v2 getAppWithdrawRecord) settles,
    when the webhook handler is down."""
    shim.override["callback"] = lambda acct, body, headers: (503, "down")
    try:
        w1 = create_v1("v1-poll-1")
        w2 = create_v2("v2-poll-1")
        r1 = wait_state(w1, ["succeeded"])
        r2 = wait_state(w2, ["succeeded"])
    finally:
        shim.override.pop("callback", None)
    rec1, rec2 = record("v1-poll-1", APP1), record("v2-poll-1", APP2)
    assert r1["txid"] == rec1["txid"] and r1["provider_status"] == "Successful", r1
    assert r2["txid"] == rec2["txid"] and r2["provider_status"] == "Success", r2
    assert str(r2["fee"]) == "0.0001" and r2["fee_asset"] == "USDT", r2
    assert r1["provider_id"] == rec1["order_id"] and r2["provider_id"] == rec2["record_id"], (r1, r2)
    s1, s2 = attempts(w1, "status"), attempts(w2, "status")
    assert s1[-1] == "status" and s2[-1] == "status", (s1, s2)
    return f"v1 {len(s1)} polls ({r1['provider_status']}), v2 {len(s2)} polls ({r2['provider_status']})"


def test_v1_status_polls_are_batched():
    """v1 polls of one account ride on one bill/info call of up to 100 ids;
    each withdrawal takes the order whose merchant_order_id is its own."""
    n = 60
    shim.override["callback"] = lambda acct, body, headers: (503, "down")
    try:
        before = len([r for r in mock.requests("ccpayment") if V1_STATUS in r.get("path", "")])
        wids = {create_v1(f"v1-batch-{i}", value=f"1.{i:02d}"): f"v1-batch-{i}" for i in range(n)}
        wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.withdrawal WHERE id = ANY(%s)"
                                         " AND state = 'succeeded'", (list(wids),)) == n, 60, 0.2, "all to succeed")
    finally:
        shim.override.pop("callback", None)
    calls = len([r for r in mock.requests("ccpayment") if V1_STATUS in r.get("path", "")]) - before
    polls = cluster.value("SELECT count(*) FROM withdraw.attempts WHERE withdrawal_id = ANY(%s)"
                          " AND kind = 'status'", (list(wids),))
    largest = cluster.value("SELECT max(jsonb_array_length((request_body::jsonb)->'merchant_order_ids'))"
                            " FROM withdraw.attempts WHERE withdrawal_id = ANY(%s) AND kind = 'status'",
                            (list(wids),))
    for wid, moid in wids.items():
        r, rec = row(wid), record(moid, APP1)
        assert r["provider_id"] == rec["order_id"] and r["txid"] == rec["txid"], (moid, r, rec)
    assert largest >= 10 and calls < polls / 5, (calls, polls, largest)
    return f"{polls} polls answered by {calls} bill/info calls, at most {largest} ids each"


def test_failed_settlement_fails_the_withdrawal():
    block_status(V1_STATUS, 3)
    block_status(V2_STATUS, 3)
    w1 = create_v1("v1-fail-1", address="fail-0xdead")
    w2 = create_v2("v2-fail-1", address="FAIL-0xdead")
    r1 = wait_state(w1, ["failed"])
    r2 = wait_state(w2, ["failed"])
    assert r1["provider_status"] == "pay_status failed" and r1["txid"] is None, r1
    assert r2["provider_status"] == "pay_status failed" and r2["txid"] is None, r2
    assert [x[:2] for x in verdicts(w1)] == [("withdrawal", "applied")], verdicts(w1)
    assert executions(APP1, "v1-fail-1") == 1 and executions(APP2, "v2-fail-1") == 1
    return f"v1 {' > '.join(events(w1))}; v2 {' > '.join(events(w2))}"


def _webhook_body(rec, **over):
    """A body like the mock's own, for a record (v1 fields; v2 adds orderId/recordId)."""
    p = {"pay_status": "success", "order_type": "API Withdrawal", "order_id": rec["order_id"],
         "record_id": rec["record_id"], "withdraw_amount": rec["amount"], "net_receivable": "1.4999",
         "network_fee": rec["fee"], "network_fee_crypto": rec["crypto"], "network_coin_id": POLYGON_USDT,
         "network_fee_value": rec["fee"], "chain": rec["chain"], "contract": "", "crypto": rec["crypto"],
         "to_address": rec["to_address"], "memo": "", "txid": "0x" + "f" * 64,
         "merchant_order_id": rec["merchant_order_id"], "merchant_pays_fee": False}
    if rec["version"] == 2:
        p["orderId"] = rec["merchant_order_id"]
        p["recordId"] = rec["record_id"]
    p.update(over)
    return json.dumps(p)


def test_forged_webhooks_are_refused_and_change_nothing():
    set_settle(None)
    try:
        moid = "v1-forge-1"
        wid = create_v1(moid)
        # polled until the provider says Processing (v1 "Pending" first): a steady row
        wait_until(lambda: row(wid)["provider_status"] == "Processing", 10, 0.05, "the row to be Processing")
        wid_state = row(wid)
        rec = record(moid, APP1)
        url1 = shim.url("callback", "ccp1")
        body = _webhook_body(rec)
        n = len(shim.calls_of("callback"))
        cases = {
            "wrong sign": forge(APP1, body, url1, sign_ok=False),
            "stale timestamp": forge(APP1, body, url1, timestamp=int(time.time()) - 3600),
            "future timestamp": forge(APP1, body, url1, timestamp=int(time.time()) + 3600),
            "wrong Appid": forge(APP2, body, url1),
            "v2 rule on a v1 account": forge(APP1, body, url1, version=2),
        }
        for what, d in cases.items():
            dv = wait_delivered(d["webhook_id"])
            a = dv["attempts"][0]
            assert a["http_status"] == 500 and a["reply"].startswith("ERROR 28000"), (what, a)
        calls = shim_calls_since(n)
        assert len(calls) == len(cases) and all(c["sqlstate"] == "28000" for c in calls), calls
        after = row(wid)
        assert after == wid_state and after["state"] in ("submitted", "processing"), (wid_state, after)
        assert verdicts(wid) == [], verdicts(wid)
        assert cluster.value("SELECT count(*) FROM withdraw.callbacks WHERE account = 'ccp1'"
                             " AND idempotency_key = %s", (moid,)) == 0
        # authentic, but not what we asked: refused, recorded, nothing applied
        d1 = forge(APP1, _webhook_body(rec, withdraw_amount="999"), url1)
        d2 = forge(APP1, _webhook_body(rec, order_id="1"), url1)
        for d in (d1, d2):
            a = wait_delivered(d["webhook_id"])["attempts"][0]
            assert a["http_status"] == 200 and a["reply"] == "success", a
        after = row(wid)
        assert after == wid_state, (wid_state, after)
        v = sorted(verdicts(wid), key=lambda x: x[2])
        assert [x[1] for x in v] == ["refused", "refused"], v
        assert "amount 999 differs" in v[1][2] and "provider id 1," in v[0][2], v
        # the real settlement now goes through
        mock.call("POST", "/_mock/ccpayment/settle", {"order_id": moid, "pay_status": "success", "app_id": APP1})
        r = wait_state(wid, ["succeeded"])
        assert r["txid"] == record(moid, APP1)["txid"], r
    finally:
        set_settle(SETTLE_AFTER_S)
    return (f"{len(cases)} forged -> HTTP 500/28000, nothing recorded; amount and order_id mismatches "
            f"refused; then applied ({r['state']})")


def test_repeated_and_out_of_order_webhooks_are_harmless():
    set_settle(None)
    try:
        block_status(V2_STATUS, 6)
        oid = "v2-repeat-1"
        wid = create_v2(oid)
        wait_state(wid, ["submitted"])
        s = mock.call("POST", "/_mock/ccpayment/settle", {"order_id": oid, "pay_status": "success", "app_id": APP2})
        wait_delivered(s["webhook_id"])
        first = wait_state(wid, ["succeeded"])
        # the same webhook again (a resend), then a flip to failed (a late, contradicting one)
        wait_delivered(mock.call("POST", "/_mock/ccpayment/resend", {"order_id": oid, "app_id": APP2})["webhook_id"])
        f = mock.call("POST", "/_mock/ccpayment/settle",
                      {"order_id": oid, "pay_status": "failed", "app_id": APP2, "force": True})
        wait_delivered(f["webhook_id"])
        wait_delivered(mock.call("POST", "/_mock/ccpayment/resend", {"order_id": oid, "app_id": APP2})["webhook_id"])
    finally:
        set_settle(SETTLE_AFTER_S)
    final = row(wid)
    v = verdicts(wid)
    assert final["state"] == "succeeded" and final["txid"] == first["txid"], (first, final)
    assert final["provider_status"] == "pay_status success", final
    assert [x[1] for x in v] == ["applied", "unchanged", "unchanged", "unchanged"], v
    assert "already succeeded" in v[1][2] and "not allowed" in v[2][2], v
    assert events(wid)[-1] == "succeeded" and events(wid).count("succeeded") == 1, events(wid)
    assert final["details"] == first["details"], (first["details"], final["details"])
    return f"verdicts {[x[1] for x in v]}; stays succeeded, txid kept"


def _reconcile(create, app, moid, path, dup_codes):
    mock.fault(provider="ccpayment", path=path, kind="timeout_after", delay_s=4)
    wid = create(moid)
    r = wait_state(wid, ["succeeded"], timeout=30)
    outs = attempts(wid)
    assert executions(app, moid) == 1, mock.ledger("ccpayment")["executions"]
    assert outs[0] == "unknown" and outs[-1] == "reconcile" and "submitted" not in outs, outs
    creates = [q for q in mock.requests("ccpayment") if q["requestId"] == moid and "apply" in q["path"]
               or q["requestId"] == moid and q["path"].endswith("/v1/withdraw")]
    codes = [q["ret_code"] for q in creates]
    assert codes[0] == 10000 and codes[-1] in dup_codes and all(c in dup_codes for c in codes[1:]), codes
    rec = record(moid, app)
    assert r["provider_id"] == (rec["order_id"] if app == APP1 else rec["record_id"]), (r, rec)
    assert r["txid"] == rec["txid"], (r, rec)
    return wid, outs, codes


def test_v1_lost_answer_is_settled_by_polls_not_by_a_second_execution():
    """v1 documents one error, 224066 "Service error, please try again": the mock answers
    the resent order so, which is an unknown outcome (never a v2 number's meaning); the
    same merchant_order_id is resent until the attempts run out, then polls of bill/info
    settle it.  Executed once."""
    mock.fault(provider="ccpayment", path="/withdraw", kind="timeout_after", delay_s=4)
    moid = "v1-dup-1"
    wid = create_v1(moid)
    r = wait_state(wid, ["succeeded"], timeout=60)
    outs = attempts(wid)
    assert executions(APP1, moid) == 1, mock.ledger("ccpayment")["executions"]
    assert set(outs) == {"unknown"} and "submitted" not in outs, outs
    codes = [q["ret_code"] for q in mock.requests("ccpayment")
             if q["requestId"] == moid and q["path"].endswith("/v1/withdraw")]
    assert codes[0] == 10000 and set(codes[1:]) == {224066}, codes
    rec = record(moid, APP1)
    assert r["provider_id"] == rec["order_id"] and r["txid"] == rec["txid"], (r, rec)
    return f"creates {outs} (codes {codes}), executed once, {' > '.join(events(wid))}"


def test_v1_code_is_not_read_as_the_v2_code_of_the_same_number():
    """14000 is "insufficient balance" (final) in v2's table; v1 has no such code: on a v1
    route it is an unknown outcome, resent with the same order id, executed once."""
    mock.fault(provider="ccpayment", path="/v1/withdraw", kind="retcode", code=14000, count=1)
    moid = "v1-14000-1"
    wid = create_v1(moid)
    r = wait_state(wid, ["succeeded"], timeout=30)
    outs = attempts(wid)
    assert outs[0] == "unknown" and "rejected" not in outs and executions(APP1, moid) == 1, outs
    return f"creates {outs}, {r['state']}"


def test_v1_seed_answers_pass_through_the_parser():
    """Seed 003's v1 answers as printed: {"code":10000,"msg":"Success","data":{"order_id":
    "202301090616511612332555323101184","network_fee":"0"}} and {"code":224066,"msg":
    "Service error, please try again","data":{}} (an unknown outcome, resent)."""
    mock.fault(provider="ccpayment", path="/v1/withdraw", kind="raw",
               body=json.dumps({"code": 224066, "msg": "Service error, please try again", "data": {}}))
    mock.fault(provider="ccpayment", path="/v1/withdraw", kind="raw",
               body=json.dumps({"code": 10000, "msg": "Success", "data": {
                   "order_id": "202301090616511612332555323101184", "network_fee": "0"}}))
    set_settle(None)
    try:
        wid = create_v1("v1-seed-1")
        r = wait_state(wid, ["submitted", "processing"])
    finally:
        set_settle(SETTLE_AFTER_S)
    outs = attempts(wid)
    assert outs == ["unknown", "submitted"], outs
    assert r["provider_id"] == "202301090616511612332555323101184", r
    return f"creates {outs}; order_id {r['provider_id']}"


def test_v2_lost_answer_is_reconciled_by_the_same_order_id():
    wid, outs, codes = _reconcile(create_v2, APP2, "v2-dup-1", "applyAppWithdrawToNetwork", (11007, 11011))
    return f"creates {outs} (codes {codes}), executed once, {' > '.join(events(wid))}"


def test_rate_limit_is_retried():
    mock.fault(provider="ccpayment", path="applyAppWithdrawToNetwork", kind="retcode", code=11004, count=2)
    moid = "v2-rate-0"
    wid = create_v2(moid)
    wait_state(wid, ["submitted", "processing", "succeeded"])
    outs = attempts(wid)
    assert outs == ["not delivered", "not delivered", "submitted"], outs
    times = [t for (t,) in cluster.sql("SELECT extract(epoch FROM started_at)::float8 FROM withdraw.attempts"
                                       " WHERE withdrawal_id = %s AND kind = 'create' ORDER BY id", (wid,))]
    gaps = [round(b - a, 2) for a, b in zip(times, times[1:])]
    assert all(g >= 0.95 for g in gaps), gaps
    assert executions(APP2, moid) == 1
    errs = cluster.value("SELECT string_agg(response_body, ' | ') FROM withdraw.attempts"
                         " WHERE withdrawal_id = %s AND outcome = 'not delivered'", (wid,))
    assert "11004" in errs, errs
    r = wait_state(wid, ["succeeded"])
    return f"11004 twice, resent after {gaps} s, executed once, {r['state']}"


def test_v2_rate_limit_is_retried():
    mock.fault(provider="ccpayment", path="applyAppWithdrawToNetwork", kind="retcode", code=11004, count=1)
    oid = "v2-rate-1"
    wid = create_v2(oid)
    r = wait_state(wid, ["succeeded"])
    outs = attempts(wid)
    assert outs == ["not delivered", "submitted"], outs
    assert executions(APP2, oid) == 1
    return f"creates {outs}, {r['state']}"


def test_terminal_code_is_rejected_with_its_explanation():
    mock.fault(provider="ccpayment", path="applyAppWithdrawToNetwork", kind="retcode", code=14000, count=1)
    oid = "v2-poor-1"
    wid = create_v2(oid)
    r = wait_state(wid, ["rejected"])
    assert attempts(wid) == ["rejected"] and executions(APP2, oid) == 0, attempts(wid)
    assert r["provider_status"] == "code 14000" and "insufficient balance" in r["last_error"], r
    return r["last_error"]


def test_an_order_id_used_by_another_withdrawal_is_not_adopted():
    """11011 (v2's table; v1 documents no such code) means the app already has this
    order id.  When it was used for a different withdrawal (another account or database
    on the same app, a reused key), it must not settle ours: (a) on a first send nothing
    of ours can have arrived, so the withdrawal goes to review at once; (b) after a send
    whose fate is unknown, the status query finds a record of another amount and
    address, which is not adopted either."""
    account("ccp2b", APP2, SECRET2, 2)
    moid = "v2-used-1"
    create_v2(moid)
    wait_until(lambda: executions(APP2, moid) == 1, 10, 0.05, "the first order")
    body = {"orderId": moid, "coinId": 1280, "chain": "POLYGON",
            "address": "0xfeed000000000000000000000000000000000009", "amount": "99"}
    first = cluster.value("SELECT withdraw_create('ccp2b', %s)", (json.dumps(body),))
    r1 = wait_state(first, ["review"])
    assert attempts(first) == ["duplicate"] and attempts(first, "status") == [], (attempts(first),
                                                                                 attempts(first, "status"))
    assert r1["provider_id"] is None and r1["txid"] is None, r1

    mock.fault(provider="ccpayment", path="applyAppWithdrawToNetwork", kind="timeout_before", delay_s=4)
    body2 = dict(body, address="0xfeed00000000000000000000000000000000000a")
    cluster.sql("SELECT withdraw_account_create('ccp2c', 'ccpayment', %s, %s, %s)",
                (mock.base_url("ccpayment"), json.dumps({"app_id": APP2, "app_secret": SECRET2}),
                 json.dumps({"api_version": 2, "poll_interval_ms": 300})))
    second = cluster.value("SELECT withdraw_create('ccp2c', %s)", (json.dumps(body2),))
    r2 = wait_state(second, ["review"], timeout=30)
    assert attempts(second) == ["unknown", "reconcile"] and attempts(second, "status"), (
        attempts(second), attempts(second, "status"))
    assert "belongs to another request" in r2["last_error"] and r2["provider_id"] is None, r2
    assert executions(APP2, moid) == 1
    return f"first send: review at once; after a lost send: {r2['last_error'][:70]}..."


def setup():
    mock.configure({"ccpayment": {"apps": {
        APP1: {"secret": SECRET1, "webhook_url": shim.url("callback", "ccp1")},
        APP2: {"secret": SECRET2, "webhook_url": shim.url("callback", "ccp2")}}}})
    account("ccp1", APP1, SECRET1, 1)
    account("ccp2", APP2, SECRET2, 2)


def main():
    run_suite("ccpayment", globals(),
              {"ccpayment": {"settle_after_s": SETTLE_AFTER_S, "webhook_retry_delays_s": [0.3, 0.6, 1]}},
              {"withdraw.retry_max_delay": "2000", "withdraw.request_timeout": "2000"},
              setup=setup, with_shim=True)

if __name__ == "__main__":
    main()
