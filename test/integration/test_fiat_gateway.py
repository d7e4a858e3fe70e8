"""Integration suite for the fiat_gateway provider: a real server and worker, the
mock gateway (test/mock/fiat_gateway.py) and the callback shim (callback_shim.py)
playing the application's web handler, which passes each notification's raw
body to withdraw_callback over SQL, as a role that holds only withdraw_webhook.

The gateway has no status query: a withdrawal it accepted is settled by its
notification alone.  Its answers are signed like its notifications; an answer
whose sign does not verify is not believed.  Form rules per pay_code are
fetched by the worker (account option pay_codes) or by withdraw_form_rules,
and withdraw_create checks requests against them.  fiat2 is a second account
of the same merchant with per-account limits.

Run: python3 test/integration/test_fiat_gateway.py [name-filter ...]  (as a non-root user)
"""

import json
import threading
import time

import psycopg2

from harness import run_suite, wait_until

cluster = None
mock = None
shim = None

UID, SECRET = "fiat-merchant-1", "FIATSECRETKEY"
OTHER_UID, OTHER_SECRET = "fiat-merchant-2", "OTHERSECRET"
SETTLE_AFTER_S = 0.5
LIMITS = {"KRW": {"single": "500.00", "daily": "800.00"}}


def options(acct, **extra):
    o = {"notify_url": shim.url("callback", acct), "pay_codes": {"1004": "KRW"}, "sign_mode": "amp_key"}
    o.update(extra)
    return o


def account(name, **extra):
    cluster.sql("SELECT withdraw_account_create(%s, 'fiat_gateway', %s, %s, %s)",
                (name, mock.base_url("fiat_gateway"), json.dumps({"uid": UID, "secret_key": SECRET}),
                 json.dumps(options(name, **extra))))


def request(orderid, **fields):
    body = {"orderid": orderid, "currency": "KRW", "amount": "100.00", "userip": "1.2.3.4", "pay_code": "1004",
            "bank_id": 1001, "bank_account": "Kim", "bank_no": "123456"}
    body.update(fields)
    return body


def create(orderid, acct="fiat1", **fields):
    return cluster.value("SELECT withdraw_create(%s, %s)", (acct, json.dumps(request(orderid, **fields))))


def sql_error(query, params=None):
    """(sqlstate, message) of a statement that must fail."""
    try:
        cluster.sql(query, params)
    except psycopg2.Error as e:
        return e.pgcode, e.diag.message_primary
    raise AssertionError(f"{query} did not fail")


COLS = ("state", "provider_status", "provider_id", "last_error", "idempotency_key", "amount", "details")


def row(wid):
    return cluster.withdrawal(wid, COLS)


def wait_state(wid, states, timeout=15):
    return cluster.wait_withdrawal(wid, states, COLS, timeout)


def events(wid):
    return cluster.state_path(wid)


def verdicts(wid):
    """(verdict, detail): every callback of this provider is about a withdrawal."""
    return [(v, d) for _, v, d in cluster.verdicts(wid)]


def attempts(wid):
    return [r[0] for r in cluster.sql("SELECT outcome FROM withdraw.attempts WHERE withdrawal_id = %s"
                                      " AND kind = 'create' ORDER BY id", (wid,))]


def executions(orderid):
    return mock.ledger("fiat_gateway")["executions"].get(f"{UID}/{orderid}", 0)


def order(orderid):
    o = [x for x in mock.call("GET", f"/_mock/fiat_gateway/orders?uid={UID}") if x["orderid"] == orderid]
    assert len(o) == 1, o
    return o[0]


def notifications(orderid=None):
    return mock.call("GET", "/_mock/fiat_gateway/notifications" + (f"?orderid={orderid}" if orderid else ""))


def wait_notified(nid, attempts_at_least=1):
    def done():
        n = [x for x in notifications() if x["id"] == nid][0]
        return n["done"] and len(n["attempts"]) >= attempts_at_least and n
    return wait_until(done, 10, 0.05, f"notification {nid} to be delivered")


def settle(orderid, status="success", **kw):
    return mock.call("POST", "/_mock/fiat_gateway/settle", dict({"orderid": orderid, "status": status, "uid": UID}, **kw))


def notify(fields, **kw):
    return mock.call("POST", "/_mock/fiat_gateway/notify", dict({"uid": UID, "fields": fields}, **kw))


def configure(**cfg):
    mock.configure({"fiat_gateway": cfg})


def note_fields(orderid, **over):
    o = order(orderid)
    f = {"uid": UID, "orderid": orderid, "transactionid": o["transactionid"], "amount": o["amount"],
         "status": "success", "timestamp": str(int(time.time()))}
    f.update(over)
    return f


def wait_rules(acct):
    wait_until(lambda: cluster.value("SELECT rules IS NOT NULL FROM withdraw.form_rules WHERE account = %s"
                                     " AND pay_code = '1004'", (acct,)), 10, 0.05, f"{acct}'s rules")


# -- tests

def test_form_rules_are_fetched_by_the_worker():
    r = wait_until(lambda: cluster.sql("SELECT pay_code, currency, fields, fetched_at IS NOT NULL, last_error,"
                                       " rules->>'name' FROM withdraw.form_rules WHERE account = 'fiat1'"
                                       " AND rules IS NOT NULL"), 10, 0.05, "the worker to fetch 1004")
    assert r == [("1004", "KRW", 3, True, None, "Korea Withdrawal")], r
    fetched = [q for q in mock.requests("fiat_gateway") if q["path"] == "/channel/formRule"]
    assert fetched and all(q["sig_ok"] and q["ret_code"] == 10000 for q in fetched), fetched
    names = cluster.value("SELECT string_agg(f->>'name', ',') FROM withdraw.form_rules,"
                          " jsonb_array_elements(rules->'form_fields') f WHERE account = 'fiat1'")
    return f"pay_code 1004 KRW: {r[0][2]} fields ({names}), {len(fetched)} formRule call(s)"


def test_withdraw_form_rules_fetches_one_now():
    state, msg = sql_error("SELECT withdraw_create('fiat1', %s)",
                           (json.dumps(request("F-812-0", currency="INR", pay_code="812")),))
    assert state == "55000" and "no form rules" in msg, (state, msg)
    rules = cluster.value("SELECT withdraw_form_rules('fiat1', '812', 'INR')")
    assert rules["pay_code"] == "812" and len(rules["form_fields"]) == 4, rules
    r = cluster.sql("SELECT currency, fields, fetched_at IS NOT NULL, next_fetch_at > now() FROM withdraw.form_rules"
                    " WHERE account = 'fiat1' AND pay_code = '812'")
    assert r == [("INR", 4, True, True)], r
    # now checked against them: a bad IFSC is refused, a good one stored and paid
    india = {"orderid": "F-812-1", "currency": "INR", "amount": "250.00", "userip": "1.2.3.4", "pay_code": "812",
             "user_name": "Asha", "bank_no": "987654321", "bank_ifsc": "sbin0001234"}
    state, msg = sql_error("SELECT withdraw_create('fiat1', %s)", (json.dumps(india),))
    assert state == "22023" and "bank_ifsc" in msg, (state, msg)
    india["bank_ifsc"] = "SBIN0001234"
    wid = cluster.value("SELECT withdraw_create('fiat1', %s)", (json.dumps(india),))
    r = wait_state(wid, ["succeeded"])
    assert executions("F-812-1") == 1
    return f"55000 before, 4 fields after; bad IFSC 22023; INR withdrawal {r['state']}"


def test_create_submitted_then_notification_succeeds():
    configure(settle_after_s=None)
    try:
        wid = create("F-ok-1")
        r = wait_state(wid, ["submitted"])
        o = order("F-ok-1")
        assert r["provider_id"] == o["transactionid"] and r["provider_status"] == "status 10000", r
        n = settle("F-ok-1")
        d = wait_notified(n["notification_id"])
        assert d["acked"] and d["attempts"][0]["reply"] == "success", d
        r = wait_state(wid, ["succeeded"])
    finally:
        configure(settle_after_s=SETTLE_AFTER_S)
    assert r["provider_status"] == "notify success" and r["details"].get("transactionid") == o["transactionid"], r
    assert executions("F-ok-1") == 1
    assert [v for v, _ in verdicts(wid)] == ["applied"], verdicts(wid)
    ev = events(wid)
    assert ev == ["queued", "sending", "submitted", "succeeded"], ev
    return f"{' > '.join(ev)}; transactionid {r['provider_id']}"


def test_fail_prefixed_account_fails():
    wid = create("F-fail-1", bank_account="FAIL holder")
    r = wait_state(wid, ["failed"])
    assert r["provider_status"] == "notify failed", r
    assert order("F-fail-1")["status"] == "failed" and executions("F-fail-1") == 1
    return f"{' > '.join(events(wid))}"


def test_forged_and_mismatched_notifications_change_nothing():
    configure(settle_after_s=None, merchants={OTHER_UID: {"secret": OTHER_SECRET}})
    try:
        wid = create("F-forge-1")
        before = wait_state(wid, ["submitted"])
        n = len(shim.calls_of("callback"))
        now = int(time.time())
        forged = {
            "wrong sign": notify(note_fields("F-forge-1"), sign_ok=False),
            "unsigned": notify(dict(note_fields("F-forge-1"), sign="")),
            "stale timestamp": notify(note_fields("F-forge-1", timestamp=str(now - 3 * 86400))),
            "another merchant": notify(note_fields("F-forge-1", uid=OTHER_UID), uid=OTHER_UID,
                                       url=shim.url("callback", "fiat1")),
            "our uid, other secret": notify(note_fields("F-forge-1"), uid=OTHER_UID,
                                            url=shim.url("callback", "fiat1")),
        }
        for what, d in forged.items():
            a = wait_notified(d["notification_id"])["attempts"][0]
            assert a["http_status"] == 500 and a["reply"].startswith("ERROR 28000"), (what, a)
        calls = shim.calls_of("callback")[n:]
        assert len(calls) == len(forged) and {c["sqlstate"] for c in calls} == {"28000"}, calls
        assert row(wid) == before and verdicts(wid) == [], (row(wid), verdicts(wid))
        # authentic, but the amount is not ours / another transaction: refused, recorded
        for f in (note_fields("F-forge-1", amount="100.01"), note_fields("F-forge-1", transactionid="1")):
            a = wait_notified(notify(f)["notification_id"])["attempts"][0]
            assert a["http_status"] == 200 and a["reply"] == "success", a
        assert row(wid) == before, row(wid)
        v = sorted(verdicts(wid), key=lambda x: x[1])
        assert [x[0] for x in v] == ["refused", "refused"], v
        assert "100.01 differs" in v[1][1] and "provider id 1," in v[0][1], v
        # the real one, then repeats and late / contradicting ones
        wait_notified(settle("F-forge-1")["notification_id"])
        done = wait_state(wid, ["succeeded"])
        wait_notified(mock.call("POST", "/_mock/fiat_gateway/resend", {"orderid": "F-forge-1", "uid": UID})
                      ["notification_id"])
        wait_notified(notify(note_fields("F-forge-1", status="processing"))["notification_id"])
        wait_notified(settle("F-forge-1", "failed", force=True)["notification_id"])
    finally:
        configure(settle_after_s=SETTLE_AFTER_S, merchants={OTHER_UID: None})
    final = row(wid)
    assert final == done, (done, final)
    v = [x[0] for x in verdicts(wid)]
    assert v == ["refused", "refused", "applied", "unchanged", "unchanged", "unchanged"], verdicts(wid)
    assert executions("F-forge-1") == 1
    return f"{len(forged)} forged -> 500/28000, 2 refused, then {v[2:]}; stays {final['state']}"


def _answer_sign_case(orderid, flag):
    configure(settle_after_s=None, **{flag: True})
    fixed = False
    try:
        wid = create(orderid)
        wait_until(lambda: attempts(wid).count("unknown") >= 2, 15, 0.05, "two unbelieved answers")
        r = row(wid)
        assert r["state"] in ("unknown", "sending"), (r, cluster.sql(
            "SELECT outcome, http_status, response_body, error FROM withdraw.attempts"
            " WHERE withdrawal_id = %s ORDER BY id", (wid,)))
        assert "not believed" in r["last_error"] or r["state"] == "sending", r
        configure(**{flag: False})
        fixed = True
        r = wait_state(wid, ["submitted"])
    finally:
        if not fixed:
            configure(**{flag: False})
    outs = attempts(wid)
    codes = [q["ret_code"] for q in mock.requests("fiat_gateway") if q["requestId"] == orderid]
    assert outs[-1] == "duplicate" and set(outs[:-1]) == {"unknown"}, outs
    assert codes[0] == 10000 and set(codes[1:]) == {10003}, codes
    assert r["provider_status"] == "status 10003" and "notification will settle it" in r["last_error"], r
    assert executions(orderid) == 1
    # the notification settles it (and brings the transactionid the lost answer had)
    wait_notified(settle(orderid)["notification_id"])
    configure(settle_after_s=SETTLE_AFTER_S)
    r = wait_state(wid, ["succeeded"])
    assert r["provider_id"] == order(orderid)["transactionid"], r
    assert [v for v, _ in verdicts(wid)] == ["applied"], verdicts(wid)
    return f"creates {outs[0]} x{outs.count('unknown')}, then {outs[-1]} (codes {codes[0]}, {codes[-1]}); executed once"


def test_wrongly_signed_answer_is_not_believed():
    try:
        return _answer_sign_case("F-badsign-1", "bad_response_sign")
    finally:
        configure(settle_after_s=SETTLE_AFTER_S)


def test_unsigned_answer_is_not_believed():
    try:
        return _answer_sign_case("F-unsigned-1", "unsigned_response")
    finally:
        configure(settle_after_s=SETTLE_AFTER_S)


def test_insufficient_balance_is_rejected_with_the_message():
    wid = create("F-poor-1", amount="2000000.00")
    r = wait_state(wid, ["rejected"])
    assert r["provider_status"] == "status 10006", r
    assert "10006" in r["last_error"] and "Insufficient balance" in r["last_error"], r
    assert executions("F-poor-1") == 0 and attempts(wid) == ["rejected"]
    return r["last_error"]


def test_limits_refuse_over_limit_creates_and_store_nothing():
    count = lambda: cluster.value("SELECT count(*) FROM withdraw.withdrawals WHERE account = 'fiat2'")  # noqa: E731
    state, msg = sql_error("SELECT withdraw_create('fiat2', %s)", (json.dumps(request("L-1", amount="500.01")),))
    assert state == "23514" and "single-withdrawal limit 500.00" in msg, (state, msg)
    assert count() == 0
    a = create("L-2", "fiat2", amount="500.00", bank_account="FAIL first")     # fails: does not count
    wait_state(a, ["failed"])
    b = create("L-3", "fiat2", amount="500.00")
    c = create("L-4", "fiat2", amount="300.00")
    state, msg = sql_error("SELECT withdraw_create('fiat2', %s)", (json.dumps(request("L-5", amount="0.01")),))
    assert state == "23514" and "800.01" in msg and "daily limit 800.00" in msg, (state, msg)
    assert count() == 3 and executions("L-1") == 0 and executions("L-5") == 0
    for w in (b, c):
        wait_state(w, ["succeeded"])
    return f"500.01 single 23514; 500 (failed) + 500 + 300 stored; 0.01 more daily 23514; {count()} rows"


def test_limits_repeated_create_returns_the_same_id():
    """withdraw_create repeated with the same key and fields returns the existing id
    (the idempotency contract), even when the account's daily limit is reached."""
    q = "SELECT id FROM withdraw.withdrawals WHERE account = 'fiat2' AND idempotency_key = 'L-4'"
    if cluster.value(q) is None:               # run alone: fill the day up first
        test_limits_refuse_over_limit_creates_and_store_nothing()
    before = cluster.value(q)
    try:
        again = create("L-4", "fiat2", amount="300.00")
    except psycopg2.Error as e:
        raise AssertionError(f"the repeat of L-4 raised {e.pgcode}: {e.diag.message_primary}")
    assert again == before, (again, before)
    return f"same id {again}"


def test_limits_hold_under_concurrent_creates():
    """Two transactions, each under the daily limit alone, over it together: the
    advisory lock must make the second see the first."""
    cluster.sql("SELECT withdraw_account_create('fiat3', 'fiat_gateway', %s, %s, %s)",
                (mock.base_url("fiat_gateway"), json.dumps({"uid": UID, "secret_key": SECRET}),
                 json.dumps(options("fiat3", limits=LIMITS))))
    wait_rules("fiat3")
    t1 = cluster.connect(autocommit=False)
    result = {}
    try:
        c1 = t1.cursor()
        c1.execute("SELECT withdraw_create('fiat3', %s)", (json.dumps(request("C-1", amount="500.00")),))

        def second():
            try:
                result["id"] = cluster.value("SELECT withdraw_create('fiat3', %s)",
                                             (json.dumps(request("C-2", amount="500.00")),))
            except psycopg2.Error as e:
                result["error"] = (e.pgcode, e.diag.message_primary)
        th = threading.Thread(target=second)
        th.start()
        wait_until(lambda: cluster.value("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                         " AND query LIKE '%%withdraw_create(%%'"), 5, 0.02,
                   "the second create to wait for the lock")
        t1.commit()
        th.join(10)
    finally:
        t1.close()
    total = cluster.value("SELECT sum(amount) FROM withdraw.withdrawals WHERE account = 'fiat3'")
    assert result.get("error", (None,))[0] == "23514", (result, f"total stored {total}")
    assert total == 500, total
    return f"second create refused {result['error'][0]}; total {total}"


def test_gateway_receives_exactly_the_fields_asked():
    tricky = 'a&amount=1&b="c" \'d\' =e\\f'
    req = request("F-exact-1", custom=tricky, bank_account="O'Brien & \"Sons\"=1", bank_no="00123")
    wid = cluster.value("SELECT withdraw_create('fiat1', %s)", (json.dumps(req),))
    wait_state(wid, ["submitted", "succeeded"])
    got = order("F-exact-1")["params"]
    sent = [q for q in mock.requests("fiat_gateway") if q["requestId"] == "F-exact-1"]
    assert len(sent) == 1 and sent[0]["sig_ok"] and sent[0]["ret_code"] == 10000, sent
    asked = {k: str(v) for k, v in req.items()}
    extra = {k: got.pop(k) for k in ("uid", "timestamp", "notify_url")}
    assert got == asked, (got, asked)
    assert extra["uid"] == UID and extra["notify_url"] == shim.url("callback", "fiat1"), extra
    assert executions("F-exact-1") == 1 and order("F-exact-1")["amount"] == "100.00"
    audit = cluster.value("SELECT request_body FROM withdraw.attempts WHERE withdrawal_id = %s", (wid,))
    assert '"sign":"[redacted]"' in audit and SECRET not in audit, audit
    assert json.loads(audit)["custom"] == tricky, audit
    wait_state(wid, ["succeeded"])
    return f"{len(asked)} fields as asked (custom {tricky!r}) + uid, timestamp, notify_url; signed ok"


def test_notification_during_the_create_is_not_lost():
    """The gateway settles while our create is still in flight and its answer is
    lost (held past the request timeout): the notification comes while the row
    is 'sending', the resend gets 10003 and the withdrawal must still end up
    settled (the gateway has no status query; it retries a notification only
    when the reply is not success)."""
    mock.fault(provider="fiat_gateway", path="/applyfor", kind="timeout_after", delay_s=4)
    wid = create("F-lost-1")
    n = wait_until(lambda: notifications("F-lost-1") and notifications("F-lost-1")[0]["done"]
                   and notifications("F-lost-1")[0], 10, 0.05, "the notification")
    state_at_notify = verdicts(wid)
    r = wait_state(wid, ["submitted", "succeeded"], timeout=20)
    outs = attempts(wid)
    assert outs[0] == "unknown" and outs[-1] == "duplicate", outs
    assert executions("F-lost-1") == 1
    try:
        r = wait_state(wid, ["succeeded"], timeout=6)
    except AssertionError:
        raise AssertionError(f"stuck {row(wid)['state']} after creates {outs}; the notification got "
                             f"{[(a['http_status'], a['reply']) for a in n['attempts']]} with verdicts "
                             f"{state_at_notify} and was not sent again")
    return f"creates {outs}; {r['state']}"


def test_a_duplicate_on_the_first_attempt_is_not_taken_for_ours():
    """10003 answers a first attempt when the orderid was used before by someone
    else (another account or database of the same merchant, a reused key):
    nothing of ours can have reached the gateway, so the order it has is not
    ours and must not leave our withdrawal waiting as submitted for a
    notification that will never name it."""
    cluster.sql("SELECT withdraw_account_create('fiat1b', 'fiat_gateway', %s, %s, %s)",
                (mock.base_url("fiat_gateway"), json.dumps({"uid": UID, "secret_key": SECRET}),
                 json.dumps(options("fiat1b"))))
    wait_rules("fiat1b")
    if executions("F-ok-1") == 0:
        create("F-ok-1")
        wait_until(lambda: executions("F-ok-1") == 1, 10, 0.05, "the first order")
    wid = create("F-ok-1", "fiat1b", amount="123.00", bank_no="555")
    r = wait_state(wid, ["submitted", "review", "rejected", "failed"])
    outs = attempts(wid)
    assert executions("F-ok-1") == 1
    assert r["state"] != "submitted", (
        f"fiat1b's withdrawal of 123.00 is submitted after its first and only create was answered 10003 "
        f"(attempts {outs}, last_error {r['last_error']!r}): it waits for a notification of an order "
        f"that is not its own")
    return f"{r['state']}: {r['last_error']}"


def test_a_failed_rules_fetch_keeps_the_cached_rules():
    before = cluster.sql("SELECT rules, fetched_at FROM withdraw.form_rules WHERE account = 'fiat1'"
                         " AND pay_code = '1004'")[0]
    mock.fault(provider="fiat_gateway", path="/channel/formRule", kind="retcode", code=10001, count=1)
    conn = cluster.connect()
    cur = conn.cursor()
    cur.execute("SELECT withdraw_form_rules('fiat1', '1004', 'KRW')")
    got = cur.fetchone()[0]
    warning = "".join(conn.notices)
    conn.close()
    state, msg = "WARNING", warning.strip().splitlines()[0] if warning else ""
    assert got is None and "could not fetch the form rules" in warning, (got, warning)
    after = cluster.sql("SELECT rules, fetched_at, last_error FROM withdraw.form_rules WHERE account = 'fiat1'"
                        " AND pay_code = '1004'")[0]
    assert after[:2] == before and after[2] and "10001" in after[2], (before, after)
    wid = create("F-after-rules-1")          # still usable
    wait_state(wid, ["submitted", "succeeded"])
    return f"{state} {msg!r}; cached rules kept (last_error recorded: {after[2]!r})"


def test_the_worker_refreshes_rules_and_keeps_them_when_a_refresh_fails():
    cluster.sql("SELECT withdraw_account_create('fiat4', 'fiat_gateway', %s, %s, %s)",
                (mock.base_url("fiat_gateway"), json.dumps({"uid": UID, "secret_key": SECRET}),
                 json.dumps(options("fiat4", rules_ttl_ms=1000))))
    q = ("SELECT rules, fetched_at, last_error FROM withdraw.form_rules WHERE account = 'fiat4' AND pay_code = '1004'")
    first = wait_until(lambda: (cluster.sql(q) or [[None]])[0][0] and cluster.sql(q)[0], 10, 0.05, "fiat4's rules")
    mock.fault(provider="fiat_gateway", path="/channel/formRule", kind="retcode", code=10001, duration_s=2.5)
    failed = wait_until(lambda: cluster.sql(q)[0][2] and cluster.sql(q)[0], 10, 0.05, "a failed refresh")
    assert failed[0] == first[0] and failed[1] >= first[1], (first, failed)
    assert "10001" in failed[2], failed
    wid = create("F-rules-kept-1", "fiat4")      # the kept rules still check requests
    healed = wait_until(lambda: cluster.sql(q)[0][2] is None and cluster.sql(q)[0][1] > failed[1]
                        and cluster.sql(q)[0], 10, 0.05, "a good refresh")
    wait_state(wid, ["submitted", "succeeded"])
    assert healed[0] == first[0], healed
    return (f"refresh failed ({failed[2][:60]}...), rules kept; healed "
            f"{(healed[1] - failed[1]).total_seconds():.1f} s later")


def _sign(params):
    """The seed's rule (the mock's own copy is not imported): sorted non-empty k=v, &key=secret, MD5."""
    import hashlib
    text = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v not in (None, ""))
    return hashlib.md5((text + "&key=" + SECRET).encode()).hexdigest().upper()


def test_seed_examples_pass_through_the_parser():
    """Seed 004's literal answers: the formRule example (no sign) is cached; the /applyfor
    success example {"status":10000,"result":{"transactionid":"123"}} (signed with our
    secret, the seed's "xxx" being a placeholder) is accepted, and so is its result as a
    JSON string ("Returns JSON string when status code is Success")."""
    seed_rules = {"status": 10000, "result": {"data": {
        "pay_code": "1004", "name": "Korea Withdrawal", "description": "Withdrawal through Korea payment",
        "form_fields": [
            {"name": "bank_id", "label": "Bank ID", "type": "select", "required": True, "max_length": 100,
             "placeholder": "Please select Bank ID", "options": [{"bankID": 1001, "name": "KB Kookmin Bank"}],
             "validation_rules": ["required", "integer"]},
            {"name": "bank_account", "label": "Account Holder Name", "type": "input", "required": True,
             "max_length": 50, "placeholder": "Please enter account holder name", "options": None,
             "validation_rules": ["required", "string", "max:50"]}]}}}
    account("fiat7")
    wait_rules("fiat7")
    mock.fault(provider="fiat_gateway", path="/channel/formRule", kind="raw", body=json.dumps(seed_rules))
    rules = cluster.value("SELECT withdraw_form_rules('fiat7', '1004', 'KRW')")
    assert [f["name"] for f in rules["form_fields"]] == ["bank_id", "bank_account"], rules
    ok = {"status": 10000, "result": {"transactionid": "123"}}
    ok["sign"] = _sign({"status": 10000, "transactionid": "123"})
    configure(settle_after_s=None)
    try:
        mock.fault(provider="fiat_gateway", path="/applyfor", kind="raw", body=json.dumps(ok))
        r = wait_state(create("F-seed-1", "fiat7"), ["submitted"])
        assert r["provider_id"] == "123", r
        as_text = {"status": 10000, "result": json.dumps({"transactionid": "124"}), "sign": _sign(
            {"status": 10000, "transactionid": "124"})}
        mock.fault(provider="fiat_gateway", path="/applyfor", kind="raw", body=json.dumps(as_text))
        r2 = wait_state(create("F-seed-2", "fiat7"), ["submitted"])
        assert r2["provider_id"] == "124", r2
    finally:
        configure(settle_after_s=SETTLE_AFTER_S)
    return "formRule example cached unsigned; success example -> 123; result as JSON text -> 124"


def test_signed_rules_required_by_option():
    """rules_require_sign: an unsigned formRule answer is not cached; a signed one is."""
    account("fiat5", rules_require_sign=True)
    q = "SELECT rules IS NOT NULL, last_error FROM withdraw.form_rules WHERE account = 'fiat5' AND pay_code = '1004'"
    failed = wait_until(lambda: cluster.sql(q)[0][1] and cluster.sql(q)[0], 10, 0.05, "an unsigned answer refused")
    assert failed[0] is False and "not signed" in failed[1], failed
    configure(sign_rule_answers=True)
    try:
        cluster.value("SELECT withdraw_form_rules('fiat5', '1004', 'KRW')")
    finally:
        configure(sign_rule_answers=False)
    assert cluster.sql(q)[0] == (True, None), cluster.sql(q)
    return f"unsigned: {failed[1][:50]}...; signed: cached"


def test_notification_variants_are_read():
    """The seed shows no notification: numbers as JSON numbers, extra fields, status in capitals."""
    configure(notify_numbers=True, notify_extra={"currency": "KRW", "msg": ""})
    try:
        wid = create("F-var-1")
        r = wait_state(wid, ["succeeded"])
    finally:
        configure(notify_numbers=False, notify_extra={})
    configure(settle_after_s=None)
    try:
        wid2 = create("F-var-2")
        wait_state(wid2, ["submitted"])
        notify(note_fields("F-var-2", status="SUCCESS"))
        r2 = wait_state(wid2, ["succeeded"])
    finally:
        configure(settle_after_s=SETTLE_AFTER_S)
    return f"numbers and extra fields: {r['state']}; SUCCESS: {r2['state']}"


def test_silent_gateway_sends_the_withdrawal_to_review():
    """No status query: without a notification within notify_deadline_s the withdrawal
    goes to review, with the reason (here 2 s)."""
    account("fiat6", notify_deadline_s=2)
    wait_rules("fiat6")
    configure(settle_after_s=None)
    try:
        wid = create("F-silent-1", "fiat6")
        wait_state(wid, ["submitted"])
        t = time.time()
        r = wait_state(wid, ["review"], 15)
    finally:
        configure(settle_after_s=SETTLE_AFTER_S)
    assert "no final notification" in r["last_error"] and "notify_deadline_s" in r["last_error"], r
    assert time.time() - t < 10, time.time() - t
    for bad in (0, 7 * 24 * 3600 + 1, "1h"):
        state, _ = sql_error("SELECT withdraw_account_update('fiat6', options => %s)",
                             (json.dumps(options("fiat6", notify_deadline_s=bad)),))
        assert state == "22023", (bad, state)
    return f"{' > '.join(events(wid))}: {r['last_error'][:70]}..."


def setup():
    configure(merchants={UID: {"secret": SECRET, "sign_mode": "amp_key", "balance": "1000000.00"}})
    account("fiat1")
    account("fiat2", limits=LIMITS)
    for acct in ("fiat1", "fiat2"):       # the worker fetches the pay_codes' rules
        wait_rules(acct)


def main():
    run_suite("fiat_gateway", globals(),
              {"fiat_gateway": {"settle_after_s": SETTLE_AFTER_S, "notify_retry_delays_s": [0.3, 0.6, 1]}},
              {"withdraw.retry_max_delay": "2000", "withdraw.request_timeout": "2000"},
              setup=setup, with_shim=True)

if __name__ == "__main__":
    main()
