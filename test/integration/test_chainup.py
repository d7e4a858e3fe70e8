"""Integration suite for the chainup provider: a real server and worker, the mock
ChainUp (test/mock/chainup.py) with its own wallet key pair, and the callback
shim (callback_shim.py) playing the application's web handler, which passes the
platform's second-confirmation requests to withdraw_confirm and its
notifications to withdraw_callback over SQL, as a role that holds only
withdraw_webhook.

Run: python3 test/integration/test_chainup.py [name-filter ...]  (as a non-root user)
"""

import json
import time
import urllib.request

from cryptography.hazmat.primitives import serialization

from harness import run_suite, wait_until, rsa_key_pair

cluster = None
mock = None
shim = None
WALLET_PUB = None

APP_ID = "cu-app-main"          # confirm and notify URLs set
QUIET_APP_ID = "cu-app-quiet"   # neither: only the worker's polls and syncs


new_key = rsa_key_pair


MERCHANT_PEM, MERCHANT_PUB = new_key()
QUIET_PEM, QUIET_PUB = new_key()
FOREIGN_PEM, FOREIGN_PUB = new_key()


def seal_foreign(plaintext):
    """An envelope sealed with a key that is not the wallet's: raw RSA type-1, 234-byte chunks."""
    key = serialization.load_pem_private_key(FOREIGN_PEM.encode(), None)
    n, d = key.private_numbers().public_numbers.n, key.private_numbers().d
    k = (n.bit_length() + 7) // 8
    data = plaintext.encode()
    out = b""
    for i in range(0, max(len(data), 1), 234):
        chunk = data[i:i + 234]
        block = b"\x00\x01" + b"\xff" * (k - 3 - len(chunk)) + b"\x00" + chunk
        out += pow(int.from_bytes(block, "big"), d, n).to_bytes(k, "big")
    import base64
    return base64.urlsafe_b64encode(out).decode().rstrip("=")


def wallet_envelope(obj):
    """An authentic envelope of the platform (the mock seals with its wallet key)."""
    return mock.call("POST", "/_mock/chainup/envelope", {"json": obj})["data"]


def account(name, app_id, private_pem, poll_interval_ms):
    cluster.sql("SELECT withdraw_account_create(%s, 'chainup', %s, %s, %s)",
                (name, mock.base_url("chainup"),
                 json.dumps({"app_id": app_id, "merchant_private_key": private_pem,
                             "platform_public_key": WALLET_PUB}),
                 json.dumps({"poll_interval_ms": poll_interval_ms, "sync_interval_ms": 3600000})))


def create(acct, **fields):
    body = {"from_uid": "3529218", "to_address": "0xabc", "amount": "1.25", "symbol": "usdt"}
    body.update(fields)
    return cluster.value("SELECT withdraw_create(%s, %s)", (acct, json.dumps(body)))


COLS = ("state", "provider_status", "provider_id", "txid", "confirmations", "real_fee",
        "real_fee_asset", "last_error", "idempotency_key")


def row(wid):
    return cluster.withdrawal(wid, COLS)


def wait_state(wid, states, timeout=20):
    return cluster.wait_withdrawal(wid, states, COLS, timeout)


def callbacks(wid=None, kind=None):
    rows = cluster.sql("SELECT kind, verdict, detail FROM withdraw.callbacks"
                       " WHERE (%s::bigint IS NULL OR withdrawal_id = %s) AND (%s::text IS NULL OR kind = %s)"
                       " ORDER BY id", (wid, wid, kind, kind))
    return rows


def post(kind, acct, form):
    req = urllib.request.Request(shim.url(kind, acct), data=form.encode(), method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read().decode()


def executions(request_id):
    return mock.ledger("chainup").get("executions", {}).get(request_id, 0)


def test_create_confirm_notify_succeeded():
    wid = create("cu1", request_id="e2e-1")
    r = wait_state(wid, ["succeeded"])
    assert executions("e2e-1") == 1
    kinds = [(k, v) for k, v, _ in callbacks(wid)]
    # the confirmation came while the create was in flight (state 'sending')
    assert kinds[0] == ("confirm", "confirmed"), kinds
    assert ("withdrawal", "applied") in kinds, kinds
    assert r["txid"] and r["confirmations"] == 12 and str(r["real_fee"]) == "0.00042", r
    assert r["provider_status"] == "status 5", r
    events = [e[0] for e in cluster.sql("SELECT to_state FROM withdraw.events WHERE withdrawal_id = %s"
                                        " ORDER BY at", (wid,))]
    assert events[0] == "queued" and events[-1] == "succeeded", events
    return f"events {' > '.join(events)}; callbacks {kinds}"


def test_forged_confirmations_are_refused():
    """While the real create is in flight (the platform is asking its real
    question), forged questions arrive too; then a replay after the answer."""
    now = str(int(time.time() * 1000))
    base = {"time": now, "charset": "utf-8", "version": "v2", "request_id": "e2e-forge",
            "from_uid": "3529218", "to_address": "hold-0xdef", "amount": "1.25", "symbol": "usdt",
            "check_sum": "abc123"}
    forged = {
        "amount differs": wallet_envelope(dict(base, amount="999")),
        "address differs": wallet_envelope(dict(base, to_address="0xevil")),
        "unknown request id": wallet_envelope(dict(base, request_id="not-ours")),
        "foreign key": seal_foreign(json.dumps(base)),
        "stale time": wallet_envelope(dict(base, time=str(int(now) - 3600_000))),
    }
    replies = {}

    def forge_first(acct, body, headers):
        state = cluster.value("SELECT state FROM withdraw.withdrawals WHERE idempotency_key = 'e2e-forge'")
        if state is not None and not replies:
            replies["state during the real question"] = state
            for what, data in forged.items():
                replies[what] = cluster.value("SELECT withdraw_confirm('cu1', %s)", (f"app_id={APP_ID}&data={data}",))
        return None

    shim.override["confirm"] = forge_first
    try:
        wid = create("cu1", request_id="e2e-forge", to_address="hold-0xdef")
        wait_state(wid, ["submitted", "processing"])
    finally:
        shim.override.pop("confirm", None)
    assert replies.pop("state during the real question") == "sending", replies
    for what, reply in replies.items():
        assert reply == "FAILURE", (what, reply)
    assert len(replies) == len(forged), replies
    # authentic and matching, but the create was already answered: a replay
    status, body = post("confirm", "cu1", f"app_id={APP_ID}&data={wallet_envelope(base)}")
    assert (status, body) == (200, "FAILURE"), (status, body)
    verdicts = [(v, d) for k, v, d in callbacks(wid, "confirm")]
    confirmed = [d for v, d in verdicts if v == "confirmed"]
    refused = [d for v, d in verdicts if v == "refused"]
    assert len(confirmed) == 1, verdicts
    assert len(refused) == 3 and "amount differs" in refused[0] and "to_address differs" in refused[1] \
        and "not waiting" in refused[2], refused
    events = cluster.sql("SELECT detail FROM withdraw.events WHERE withdrawal_id = %s"
                         " AND detail LIKE 'confirm callback refused%%'", (wid,))
    assert len(events) == 3, events
    unlinked = cluster.sql("SELECT verdict, detail FROM withdraw.callbacks WHERE kind IN ('confirm', 'unknown')"
                           " AND withdrawal_id IS NULL ORDER BY id DESC LIMIT 3")
    assert [u[0] for u in unlinked] == ["refused", "rejected", "refused"], unlinked
    assert row(wid)["state"] in ("submitted", "processing") and executions("e2e-forge") == 1
    return "amount, address, unknown id, foreign key, stale time, replay: all FAILURE, all recorded"


def test_a_refused_confirmation_fails_the_withdrawal():
    shim.override["confirm"] = lambda acct, body, headers: (200, '{"data":"not an envelope"}')
    try:
        wid = create("cu1", request_id="e2e-noconfirm")
        r = wait_state(wid, ["rejected"])
    finally:
        shim.override.pop("confirm", None)
    assert "120206" in r["last_error"] and "withdraw_confirm" in r["last_error"], r
    assert executions("e2e-noconfirm") == 0
    return r["last_error"]


def test_forged_and_stale_notifications_change_nothing():
    wid = create("cu1", request_id="e2e-note", to_address="hold-0x1")
    # the mock holds it at status 0: once a poll has seen that it stays
    # processing (taken at submitted, a poll could move it under the checks)
    wait_state(wid, ["processing"])
    before = row(wid)
    note = {"charset": "utf-8", "version": "v2", "side": "withdraw", "notify_time": str(int(time.time() * 1000)),
            "request_id": "e2e-note", "id": before["provider_id"], "uid": "3529218", "symbol": "usdt",
            "amount": "1.25", "address_to": "hold-0x1", "txid": "0xforged", "confirmations": "99",
            "status": "5"}
    # sealed with a foreign key: FAILURE, nothing stored but a rejected row
    status, body = post("callback", "cu1", f"app_id={APP_ID}&data={seal_foreign(json.dumps(note))}")
    assert (status, body) == (200, "FAILURE"), (status, body)
    # authentic, but the amount is not ours: refused
    status, body = post("callback", "cu1", f"app_id={APP_ID}&data={wallet_envelope(dict(note, amount='5000'))}")
    assert body == "SUCCESS"
    # authentic, but it names another provider id
    status, body = post("callback", "cu1", f"app_id={APP_ID}&data={wallet_envelope(dict(note, id='1'))}")
    after = row(wid)
    assert after["state"] == before["state"] and after["txid"] is None, after
    verdicts = [v for k, v, _ in callbacks(wid, "withdrawal")]
    assert verdicts.count("refused") == 2, verdicts
    # now the real success, then a late "paying" and a repeat: terminal stays
    post("callback", "cu1", f"app_id={APP_ID}&data={wallet_envelope(note)}")
    assert row(wid)["state"] == "succeeded"
    post("callback", "cu1", f"app_id={APP_ID}&data={wallet_envelope(dict(note, status='1', txid=''))}")
    post("callback", "cu1", f"app_id={APP_ID}&data={wallet_envelope(note)}")
    final = row(wid)
    assert final["state"] == "succeeded" and final["txid"] == "0xforged" and final["confirmations"] == 99, final
    verdicts = [v for k, v, _ in callbacks(wid, "withdrawal")]
    assert verdicts[-3:] == ["applied", "unchanged", "unchanged"], verdicts
    return f"verdicts {verdicts}"


def test_duplicate_request_id_is_reconciled_not_resent_as_new():
    # the fault matches any path containing /billing/withdraw, withdrawList
    # included: first let no poll of this account be due
    if executions("e2e-forge"):
        mock.call("POST", "/_mock/chainup/status", {"request_id": "e2e-forge", "status": 5, "app_id": APP_ID})
    wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.withdrawals WHERE account = 'cu1'"
                                     " AND next_poll_at IS NOT NULL") == 0, 20, 0.1, "cu1's polls to end")
    mock.fault(provider="chainup", path="/billing/withdraw", kind="timeout_after", delay_s=6)
    # the web handler is down meanwhile: no notification may settle it first
    shim.override["callback"] = lambda acct, body, headers: (503, "down")
    try:
        wid = create("cu1", request_id="e2e-dup")
        wait_state(wid, ["succeeded"], timeout=40)
    finally:
        shim.override.pop("callback", None)
    attempts = cluster.sql("SELECT outcome FROM withdraw.attempts WHERE withdrawal_id = %s AND kind = 'create'"
                           " ORDER BY id", (wid,))
    assert executions("e2e-dup") == 1, mock.ledger("chainup")["executions"]
    outcomes = [a[0] for a in attempts]
    assert outcomes[0] == "unknown" and "reconcile" in outcomes, outcomes
    return f"creates {outcomes}, executed once"


def test_status_polls_are_batched():
    n = 120
    for i in range(n):
        create("cu2", request_id=f"batch-{i}", to_address=f"hold-{i}")
    wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.withdrawals WHERE account = 'cu2'"
                                     " AND state = 'processing'") == n, 60, 0.2, "all to be processing")
    for i in range(n):
        mock.call("POST", "/_mock/chainup/status", {"request_id": f"batch-{i}", "status": 5,
                                                     "app_id": QUIET_APP_ID})
    wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.withdrawals WHERE account = 'cu2'"
                                     " AND state = 'succeeded'") == n, 60, 0.2, "all to succeed")
    lists = [r for r in mock.requests("chainup") if "withdrawList" in r.get("path", "")
             and "sync" not in r.get("path", "")]
    polls = cluster.value("SELECT count(*) FROM withdraw.attempts WHERE account = 'cu2' AND kind = 'status'")
    # the audit copy of each call holds its plaintext: count the ids of the largest
    largest = cluster.value("SELECT max(array_length(string_to_array(substring(request_body from '\"ids\":\"([^\"]*)'),"
                            " ','), 1)) FROM withdraw.attempts WHERE account = 'cu2' AND kind = 'status'")
    assert largest >= 50, largest
    # every poll that rode on a batch has its own attempt row, with the batch's time
    stale = cluster.value("SELECT count(*) FROM withdraw.attempts WHERE account = 'cu2'"
                          " AND started_at < now() - interval '1 hour'")
    assert stale == 0, f"{stale} attempts dated long ago"
    assert len(lists) < polls / 10, (len(lists), polls)
    return f"{polls} polls answered by {len(lists)} withdrawList calls, at most {largest} ids each"


def test_sync_walks_the_list_by_id_and_links_our_withdrawals():
    first = cluster.value("SELECT withdraw_sync('cu2')")
    have = cluster.value("SELECT count(*) FROM withdraw.remote_withdrawals WHERE account = 'cu2'")
    linked = cluster.value("SELECT count(*) FROM withdraw.remote_withdrawals WHERE account = 'cu2'"
                           " AND withdrawal_id IS NOT NULL")
    records = [r for r in mock.call("GET", f"/_mock/chainup/records?app_id={QUIET_APP_ID}")]
    assert have == len(records) and linked == have, (have, linked, len(records))
    done = cluster.sql("SELECT confirmations, real_fee::text, real_fee_asset, txid FROM withdraw.remote_withdrawals"
                       " WHERE account = 'cu2' AND state = 'succeeded' LIMIT 1")[0]
    assert done[0] == 12 and done[1] == "0.00042" and done[3], done
    create("cu2", request_id="after-sync", to_address="hold-x")
    wait_until(lambda: executions("after-sync") == 1, 10, 0.05, "the new withdrawal at the mock")
    second = cluster.value("SELECT withdraw_sync('cu2')")
    syncs = [r for r in mock.requests("chainup") if "syncWithdrawList" in r.get("path", "")]
    assert second == 1, second
    assert len(syncs) >= 3, len(syncs)   # a full page of 100, a last short page, then one more
    return f"first sync stored {first} records over {len(syncs) - 1} pages, the next only the new one"


def test_deposit_notifications_are_recorded_apart():
    mock.call("POST", "/_mock/chainup/deposit", {"app_id": APP_ID, "amount": "3.5", "symbol": "eth"})
    rows = wait_until(lambda: cluster.sql("SELECT verdict, content->>'amount', withdrawal_id FROM withdraw.callbacks"
                                          " WHERE kind = 'deposit'"), 10, 0.05, "the deposit")
    assert rows == [("recorded", "3.5", None)], rows
    return "kept in withdraw.callbacks, no withdrawal touched"


def test_seed_wire_format():
    """Seed 001: every request's data has time (a long), charset and version "v2"
    (required); withdrawList and syncWithdrawList are GETs with app_id and data in
    the query string; max_id is a String.  The mock refuses anything else."""
    mark = len(mock.requests("chainup"))
    wid = create("cu2", request_id="seed-wire-1")
    wait_state(wid, ["succeeded"], 30)
    sent = [w["request"] for w in mock.ledger("chainup")["withdrawals"] if w["request_id"] == "seed-wire-1"][0]
    assert sent["version"] == "v2" and sent["charset"].lower() == "utf-8", sent
    assert isinstance(sent["time"], int) and abs(sent["time"] - time.time() * 1000) < 600_000, sent
    cluster.sql("SELECT withdraw_sync('cu2')")
    reqs = mock.requests("chainup")[mark:]
    methods = {(r["path"].rsplit("/", 1)[-1], r["method"], r["ret_code"]) for r in reqs}
    assert ("withdraw", "POST", 0) in methods and ("withdrawList", "GET", 0) in methods \
        and ("syncWithdrawList", "GET", 0) in methods, methods
    assert not [r for r in reqs if r["http_status"] != 200], reqs
    return f"requests {sorted(methods)}"


def test_confirmation_time_in_seconds_is_accepted():
    """The second confirmation's time is a "Current timestamp" of unstated unit: ten
    digits of seconds are read as seconds, not as 1970 in milliseconds."""
    mock.configure({"chainup": {"confirm_time_unit": "s"}})
    try:
        wid = create("cu1", request_id="seed-confirm-s")
        r = wait_state(wid, ["succeeded", "failed", "rejected"], 30)
    finally:
        mock.configure({"chainup": {"confirm_time_unit": "ms"}})
    verdicts = [(k, v) for k, v, _ in callbacks(wid)]
    assert r["state"] == "succeeded" and verdicts[0] == ("confirm", "confirmed"), (r, verdicts)
    return f"confirmed with a 10-digit time; {verdicts[0]}"


def test_seed_answer_examples_pass_through_the_parser():
    """The seed's decrypted answer examples, sealed by the platform's key and served
    as they are: the withdraw answer {"code":"0","data":{"id":48680,"status":0}} and
    the withdrawList example (request_id "123", id 48393, status 0)."""
    seed_withdraw = {"code": "0", "data": {"id": 48680, "status": 0}, "msg": "success"}
    seed_list = {"code": "0", "msg": "success", "data": [{
        "withdraw_fee": "0.4", "symbol": "LTC", "amount": "10", "real_fee": "0", "fee": "0",
        "address_to": "LhFrA5ZJL15UdRV1uEfFxfdqWJUbBhXpRk1", "created_at": 1551429063000, "txid": "",
        "confirmations": 0, "address_from": "", "uid": 10739, "withdraw_fee_symbol": "ETH",
        "fee_symbol": "LTC", "saas_status": 0, "updated_at": 1551429063000, "company_status": 0,
        "id": 48393, "request_id": "123", "status": 0}]}
    # the list fault first: faults match by substring, and "/billing/withdraw" is in
    # every withdrawList path, so other withdrawals' polls must meet the list fault
    mock.fault(provider="chainup", path="withdrawList", kind="raw", duration_s=20,
               body=json.dumps({"data": wallet_envelope(seed_list)}))
    mock.fault(provider="chainup", path="/billing/withdraw", kind="raw",
               body=json.dumps({"data": wallet_envelope(seed_withdraw)}))
    try:
        wid = create("cu2", request_id="123", from_uid="10739", symbol="LTC", amount="10",
                     to_address="LhFrA5ZJL15UdRV1uEfFxfdqWJUbBhXpRk1")
        try:
            # the list record's fee_symbol LTC (the create answer has no fees) shows it was read
            wait_until(lambda: row(wid)["provider_status"] == "status 0" and row(wid)["real_fee_asset"] == "LTC",
                       20, 0.1, "the seed's list record applied")
        except AssertionError:
            raise AssertionError((row(wid), cluster.sql(
                "SELECT kind, outcome, left(error, 200) FROM withdraw.attempts WHERE withdrawal_id = %s"
                " ORDER BY id DESC LIMIT 3", (wid,))))
    finally:
        mock.call("DELETE", "/_mock/faults")
    r = row(wid)
    assert r["state"] == "processing" and r["provider_id"] in ("48680", "48393") and r["confirmations"] == 0, r
    return f"answer id 48680 accepted, list record 48393 status 0 -> {r['state']} (provider_id {r['provider_id']})"


def setup():
    global WALLET_PUB
    WALLET_PUB = mock.call("GET", "/_mock/chainup/keys")["wallet_public_key"]
    mock.configure({"chainup": {"merchants": {
        APP_ID: {"public_key": MERCHANT_PUB, "confirm_url": shim.url("confirm", "cu1"),
                 "notify_url": shim.url("callback", "cu1")},
        QUIET_APP_ID: {"public_key": QUIET_PUB, "confirm_url": None, "notify_url": None}}}})
    account("cu1", APP_ID, MERCHANT_PEM, 300)
    # the mock seals each list answer in Python: poll the big batches gently
    account("cu2", QUIET_APP_ID, QUIET_PEM, 1500)


def main():
    run_suite("chainup", globals(),
              {"chainup": {"paying_after_s": 0.5, "success_after_s": 0.5, "retry_delays_s": [0.3, 0.6, 1]}},
              {"withdraw.retry_max_delay": "2000", "withdraw.request_timeout": "3000"},
              setup=setup, with_shim=True)

if __name__ == "__main__":
    main()
