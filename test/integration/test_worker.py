"""Integration suite: a real PostgreSQL server with the withdraw worker, and the
mock provider as its own process, talking HTTP over 127.0.0.1.

Run: python3 test/integration/test_worker.py [name-filter ...]  (as a non-root user)
"""

import json
import uuid
import os
import random
import signal
import socket
import threading
import time

from harness import run_suite, wait_until

KEYS = {f"key{i}": f"secret-{i}-{'x' * 8}" for i in range(1, 41)}
TERMINAL = ("succeeded", "failed", "rejected", "cancelled", "expired")

cluster = None
mock = None
_next_key = iter(range(1, 41))


def new_account(options=None, secret=None):
    """A fresh zoomex account with its own API key, so tests do not share limits."""
    n = next(_next_key)
    name = f"zx{n}"
    creds = {"api_key": f"key{n}", "api_secret": secret or KEYS[f"key{n}"]}
    cluster.sql("SELECT withdraw_account_create(%s, 'zoomex', %s, %s, %s)",
                (name, mock.base_url("zoomex"), json.dumps(creds), json.dumps(options or {})))
    return name, f"key{n}"


def request(**fields):
    body = {"coin": "USDT", "addressType": 3, "address": "100200", "amount": "1.25"}
    body.update(fields)
    return body


def create(account, body):
    return cluster.value("SELECT withdraw_create(%s, %s)", (account, json.dumps(body)))


COLS = ("state", "provider_status", "provider_id", "attempts", "last_error", "idempotency_key AS key")


def row(wid):
    return cluster.withdrawal(wid, COLS)


def wait_state(wid, states, timeout=15):
    return cluster.wait_withdrawal(wid, states, COLS, timeout)


def creates_for(request_id):
    return [r for r in mock.requests() if r.get("requestId") == request_id and "inner-create" in r["path"]]


def executions(request_id):
    return mock.ledger()["executions"].get(request_id, 0)


def events(wid):
    return [(f, t) for f, t in cluster.sql(
        "SELECT from_state, to_state FROM withdraw.events WHERE withdrawal_id = %s ORDER BY at", (wid,))]


# ---------------------------------------------------------------------------

def test_rolled_back_transaction_sends_nothing():
    account, _ = new_account()
    conn = cluster.connect(autocommit=False)
    cur = conn.cursor()
    cur.execute("SELECT withdraw_create(%s, %s)", (account, json.dumps(request(requestId="rolledback1"))))
    wid = cur.fetchone()[0]
    time.sleep(0.5)   # the worker cannot see it, however often it looks
    conn.rollback()
    conn.close()
    time.sleep(1.0)
    assert creates_for("rolledback1") == [], "a rolled-back withdrawal reached the provider"
    assert cluster.value("SELECT count(*) FROM withdraw.withdrawal WHERE id = %s", (wid,)) == 0
    return "0 requests at the provider"


def test_committed_withdrawal_is_sent_promptly_and_followed_to_success():
    account, key = new_account({"poll_interval_ms": 50})
    # a new worker waits one create interval (1 s) before an account's first create
    time.sleep(cluster.value("SELECT greatest(0, 1.2 - extract(epoch FROM now() - started_at))::float8"
                             " FROM withdraw.workers"))
    conn = cluster.connect(autocommit=False)
    cur = conn.cursor()
    cur.execute("SELECT withdraw_create(%s, %s)", (account, json.dumps(request(requestId="prompt1", remark="hi"))))
    wid = cur.fetchone()[0]
    committed = time.time()
    conn.commit()
    conn.close()
    sent = wait_until(lambda: creates_for("prompt1"), 5, 0.005, "the request at the mock")
    delay_ms = (sent[0]["t"] - committed) * 1000
    assert delay_ms < 500, f"sent {delay_ms:.0f} ms after commit"
    r = wait_state(wid, "succeeded")
    assert r["provider_id"] and r["provider_status"] == "Transferred successfully"
    ev = events(wid)
    assert ev[:4] == [(None, "queued"), ("queued", "sending"), ("sending", "submitted"), ("submitted", "review")], ev
    assert ev[-1][1] == "succeeded", ev
    assert executions("prompt1") == 1
    assert mock.stats()["bad_signatures"] == 0
    w = mock.ledger()["withdrawals"]
    mine = [x for x in w if x["requestId"] == "prompt1"][0]
    assert (mine["api_key"], mine["amount"], mine["address"], mine["remark"]) == (key, "1.25", "100200", "hi")
    kinds = cluster.sql("SELECT kind, http_status FROM withdraw.attempts WHERE withdrawal_id = %s ORDER BY id", (wid,))
    assert kinds[0] == ("create", 200) and all(k == ("status", 200) for k in kinds[1:]), kinds
    return f"commit -> mock {delay_ms:.1f} ms; events {' > '.join(t for _, t in ev)}"


def test_the_take_is_a_hot_update():
    """Marking a withdrawal 'sending' changes no indexed column (no index of
    withdraw.withdrawal names state) and finds room on its page (fillfactor
    50): each take is a HOT update, with no index entry.  The other updates
    of this suite's rows (polls, outcomes) change next_poll_at or
    provider_id, which are indexed, so HOT updates come from takes."""
    account, _ = new_account({"create_interval_ms": 0, "poll_interval_ms": 3600000})
    mock.configure({"zoomex": {"create_interval_s": 0}})
    hot = "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'withdraw.withdrawal'::regclass"
    before = cluster.value(hot)
    n = 20
    try:
        with cluster.connect(autocommit=False) as conn:
            cur = conn.cursor()
            cur.execute("SELECT array_agg(withdraw_create(%s, json_build_object('requestId', 'hot' || g,"
                        " 'coin', 'USDT', 'addressType', 3, 'address', '100200', 'amount', '1')::jsonb))"
                        " FROM generate_series(1, %s) g", (account, n))
            ids = cur.fetchone()[0]
            conn.commit()
        wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.withdrawal WHERE id = ANY (%s)"
                                         " AND state = 'submitted'", (ids,)) == n, 20, 0.05, "all submitted")
    finally:
        mock.configure({"zoomex": {"create_interval_s": 1.0}})
    # the workers flush their statistics at most once a second
    delta = wait_until(lambda: (lambda d: d if d >= n * 0.9 else None)(cluster.value(hot) - before),
                       10, 0.2, f"at least {int(n * 0.9)} HOT updates of withdraw.withdrawal")
    return f"{delta} HOT updates for {n} takes"


def test_an_unknown_withdrawal_with_a_poll_scheduled_is_polled_not_sent_again():
    """The due-work indexes split the open withdrawals by whether a poll is
    scheduled: one with a poll scheduled is settled by the poll (a
    reconciliation, for an unknown one) and never sent again, even when it
    is not yet flagged for reconciliation (as a status answer mapped to
    unknown leaves it)."""
    account, _ = new_account({"create_interval_ms": 0, "poll_interval_ms": 3600000})
    with cluster.connect(autocommit=False) as conn:
        cur = conn.cursor()
        cur.execute("SELECT withdraw_create(%s, %s)", (account, json.dumps(request(requestId="polledunknown"))))
        wid = cur.fetchone()[0]
        # as the state machine allows, before the workers can see it
        cur.execute("UPDATE withdraw.withdrawal SET state = 'sending' WHERE id = %s", (wid,))
        cur.execute("UPDATE withdraw.withdrawal SET state = 'unknown', maybe_delivered = true,"
                    " needs_reconcile = false, next_poll_at = now(), next_attempt_at = now() WHERE id = %s", (wid,))
        conn.commit()
    wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.attempts WHERE withdrawal_id = %s"
                                     " AND kind = 'status'", (wid,)), 10, 0.05, "a status poll")
    time.sleep(0.5)
    assert creates_for("polledunknown") == [], "an unknown withdrawal with a poll scheduled was sent again"
    assert cluster.value("SELECT count(*) FROM withdraw.attempts WHERE withdrawal_id = %s AND kind = 'create'",
                         (wid,)) == 0
    return "polled, not sent"


def test_seed_examples_pass_through_the_parser():
    """Seed 000: its request example's fields (requestId = uuid4().hex, amount "1",
    remark) are sent as is; its response example {"retCode":0,"retMsg":"success",
    "result":{"withdraw_id":"10195"},"retExtInfo":null,"time":1672196571239} is read as
    submitted with id 10195; a requestId with hyphens (a UUID) is taken and executed."""
    account, key = new_account({"poll_interval_ms": 60000})
    rid = uuid.uuid4().hex
    mock.fault(provider="zoomex", path="inner-create", kind="raw", body=json.dumps(
        {"retCode": 0, "retMsg": "success", "result": {"withdraw_id": "10195"}, "retExtInfo": None,
         "time": 1672196571239}))
    wid = create(account, {"requestId": rid, "coin": "USDT", "addressType": 3, "address": "100200",
                           "amount": "1", "remark": "your remark"})
    r = wait_state(wid, ["submitted", "review", "processing"])
    assert r["provider_id"] == "10195", r
    hyphens = str(uuid.uuid4())
    wid2 = create(account, request(requestId=hyphens))
    # (the mock numbers its own withdrawals from 10195 too: a clash sends wid2 to review)
    wait_until(lambda: executions(hyphens) == 1, 10, 0.05, "the UUID request executed")
    assert row(wid2)["key"] == hyphens, row(wid2)
    return f"withdraw_id {r['provider_id']}; UUID with hyphens executed once"


def test_every_change_of_state_is_announced_on_withdraw_status():
    account, _ = new_account({"poll_interval_ms": 50})
    listener = cluster.connect()
    listener.cursor().execute("LISTEN withdraw_status")
    wid = create(account, request(requestId="announced1"))
    wait_state(wid, "succeeded")
    ev = events(wid)[1:]    # the creation is an event, not an announced change

    def heard():
        listener.poll()
        return len([n for n in listener.notifies if json.loads(n.payload)["id"] == wid]) >= len(ev)
    wait_until(heard, 5, 0.05, "the notifications")
    notes = [json.loads(n.payload) for n in listener.notifies]
    listener.close()
    mine = [(n["previous_state"], n["state"]) for n in notes if n["id"] == wid]
    assert mine == ev, (mine, ev)
    last = [n for n in notes if n["id"] == wid][-1]
    assert last["provider_status"] == row(wid)["provider_status"], last
    return " > ".join(t for _, t in mine)


def test_connections_are_reused():
    account, key = new_account({"poll_interval_ms": 50})
    ids = [create(account, request(requestId=f"reuse{i}")) for i in range(3)]
    for wid in ids:
        wait_state(wid, "succeeded")
    mine = [r for r in mock.requests() if r["api_key"] == key]
    ports = {r["client_port"] for r in mine}
    assert len(mine) >= 6 and len(ports) <= 2, (len(mine), ports)
    return f"{len(mine)} requests over {len(ports)} connection(s)"


def test_signature_with_wrong_secret_is_rejected_without_retry():
    account, _ = new_account(secret="not-the-secret")
    wid = create(account, request(requestId="badsig1"))
    r = wait_state(wid, "rejected")
    assert "10004" in r["last_error"] and "api_secret" in r["last_error"], r
    time.sleep(0.5)
    assert len(creates_for("badsig1")) == 1 and executions("badsig1") == 0
    return r["last_error"]


def test_rate_limit_of_one_request_per_second_is_never_exceeded():
    account, key = new_account()
    ids = [create(account, request(requestId=f"rate{i}", amount=f"{i + 1}.5")) for i in range(4)]
    for wid in ids:
        wait_state(wid, ("submitted", "review", "processing", "succeeded"), 15)
    times = sorted(r["t"] for r in mock.requests() if r["api_key"] == key and "inner-create" in r["path"])
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == 4 and min(gaps) >= 1.0, gaps
    assert all(r.get("ret_code") != 10006 for r in mock.requests() if r["api_key"] == key)
    return f"gaps {', '.join(f'{g:.3f}' for g in gaps)} s"


def test_5xx_is_retried_with_the_same_request_id():
    account, _ = new_account()
    mock.fault(provider="zoomex", path="inner-create", kind="http_503", count=2)
    wid = create(account, request(requestId="retry5xx"))
    wait_state(wid, "succeeded", 20)
    reqs = creates_for("retry5xx")
    assert len(reqs) == 3 and executions("retry5xx") == 1, (reqs, executions("retry5xx"))
    att = cluster.sql("SELECT http_status, outcome FROM withdraw.attempts WHERE withdrawal_id = %s AND kind = 'create'"
                      " ORDER BY id", (wid,))
    assert att == [(503, "unknown"), (503, "unknown"), (200, "submitted")], att
    return f"3 sends, 1 execution, attempts {att}"


def test_timeout_after_execution_is_reconciled_not_paid_twice():
    account, _ = new_account({"request_timeout_ms": 700})
    mock.fault(provider="zoomex", path="inner-create", kind="timeout_after", count=1, delay_s=3)
    wid = create(account, request(requestId="tmoafter", address="300400"))
    wait_state(wid, "succeeded", 20)
    assert executions("tmoafter") == 1
    codes = [x.get("ret_code") for x in creates_for("tmoafter")]
    assert codes == [0, 10014], codes
    ev = [t for _, t in events(wid)]
    assert ev[:5] == ["queued", "sending", "unknown", "sending", "unknown"] and ev[-1] == "succeeded", ev
    return f"create codes {codes}; path {' > '.join(ev)}"


def test_timeout_before_execution_is_resent_with_the_same_key():
    account, _ = new_account({"request_timeout_ms": 700})
    mock.fault(provider="zoomex", path="inner-create", kind="timeout_before", count=1, delay_s=3)
    wid = create(account, request(requestId="tmobefore"))
    wait_state(wid, "succeeded", 20)
    assert executions("tmobefore") == 1 and len(creates_for("tmobefore")) == 2
    return "2 sends, 1 execution"


def test_reset_and_garbage_are_retried_safely():
    account, _ = new_account()
    mock.fault(provider="zoomex", path="inner-create", kind="reset_after", count=1)
    a = create(account, request(requestId="resetafter", address="500600"))
    wait_state(a, "succeeded", 20)
    mock.fault(provider="zoomex", path="inner-create", kind="garbage", count=1)
    b = create(account, request(requestId="garbage1", address="500601"))
    wait_state(b, "succeeded", 20)
    assert executions("resetafter") == 1 and executions("garbage1") == 1
    return "each executed once"


def test_a_connection_dying_after_the_request_is_never_taken_for_not_delivered():
    """The provider executes the request, then the reused connection dies.
    libcurl would send it again by itself (and get "Too many visits", an answer
    for the second copy only); the extension refuses that rewind, so the
    attempt is "unknown" and the withdrawal is never given up as failed (here
    max_attempts is 1: it goes to review and is then found by reconcile)."""
    account, _ = new_account({"max_attempts": 1, "poll_interval_ms": 100})
    first = create(account, request(requestId="resendwarm"))
    wait_state(first, "succeeded")          # a connection to reuse
    mock.fault(provider="zoomex", path="inner-create", kind="reset_after", count=1)
    wid = create(account, request(requestId="resendhidden", address="880088"))
    r = wait_state(wid, ("succeeded", "review", "failed"), 20)
    sends = creates_for("resendhidden")
    errors = [e for (e,) in cluster.sql("SELECT error FROM withdraw.attempts WHERE withdrawal_id = %s"
                                        " AND kind = 'create'", (wid,))]
    assert r["state"] != "failed", (r, sends)
    assert executions("resendhidden") == 1 and len(sends) == 1, sends
    return f"{len(sends)} sends at the mock, 1 execution, final {r['state']}; attempt says: {errors[0]}"


def test_a_withdrawal_in_review_keeps_its_reason_while_it_is_polled():
    """Given up to review after 503s that may have reached the provider, the
    row keeps polling for it; the polls that find nothing must not replace
    the reason a person reads (they used to: F2)."""
    account, _ = new_account({"max_attempts": 2, "poll_interval_ms": 100})
    mock.fault(provider="zoomex", path="inner-create", kind="http_503", count=2)
    wid = create(account, request(requestId="reviewreason"))
    r = wait_state(wid, "review", 20)
    reason = r["last_error"]
    at = cluster.value("SELECT max(at) FROM withdraw.events WHERE withdrawal_id = %s", (wid,))
    wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.attempts WHERE withdrawal_id = %s"
                                     " AND kind = 'status' AND started_at > %s", (wid, at)) >= 2,
               15, 0.1, "two polls after the review")
    r = row(wid)
    assert r["state"] == "review" and executions("reviewreason") == 0, r
    assert "gave up after 2 attempts" in reason and r["last_error"] == reason, (reason, r["last_error"])
    return f"still in review after its polls: {reason[:80]}..."


def test_rate_limit_answer_is_retried_later():
    account, _ = new_account()
    mock.fault(provider="zoomex", path="inner-create", kind="retcode", code=10006, count=1)
    wid = create(account, request(requestId="ratecode"))
    wait_state(wid, "succeeded", 20)
    assert executions("ratecode") == 1
    assert cluster.sql("SELECT outcome FROM withdraw.attempts WHERE withdrawal_id = %s AND kind = 'create' ORDER BY id",
                       (wid,)) == [("not delivered",), ("submitted",)]


def test_terminal_error_is_not_retried():
    account, _ = new_account()
    mock.fault(provider="zoomex", path="inner-create", kind="retcode", code=110004, count=1)
    wid = create(account, request(requestId="nobalance"))
    r = wait_state(wid, "rejected")
    time.sleep(0.5)
    assert len(creates_for("nobalance")) == 1 and "insufficient balance" in r["last_error"], r
    return r["last_error"]


def test_provider_outcomes_map_to_states():
    account, _ = new_account({"poll_interval_ms": 50})
    fail = create(account, request(requestId="endfail", address="fail-1"))
    reject = create(account, request(requestId="endreject", address="reject-1"))
    wait_state(fail, "failed")
    wait_state(reject, "rejected")
    assert row(fail)["provider_status"] == "Fail" and row(reject)["provider_status"] == "Rejected"


def test_sighup_reloads_settings():
    account, _ = new_account()
    pid = cluster.worker_pid()
    cluster.sql("ALTER SYSTEM SET withdraw.request_timeout = '400ms'")
    cluster.sql("SELECT pg_reload_conf()")
    time.sleep(0.5)
    mock.fault(provider="zoomex", path="inner-create", kind="timeout_before", count=1, delay_s=3)
    wid = create(account, request(requestId="sighup1"))
    wait_state(wid, "succeeded", 20)
    latency = cluster.value("SELECT latency_ms FROM withdraw.attempts WHERE withdrawal_id = %s ORDER BY id LIMIT 1", (wid,))
    cluster.sql("ALTER SYSTEM RESET withdraw.request_timeout")
    cluster.sql("SELECT pg_reload_conf()")
    assert cluster.worker_pid() == pid, "the worker restarted instead of reloading"
    assert 300 <= latency < 1500, latency
    return f"first attempt timed out after {latency:.0f} ms (was 5000 ms before the reload)"


def test_sigterm_stops_the_worker_cleanly_and_it_comes_back():
    pid = cluster.worker_pid()
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: cluster.worker_pid() not in (None, pid), 15, 0.2, "a new worker")
    assert "terminating background worker \"withdraw worker\"" in cluster.log_text()
    account, _ = new_account()
    wid = create(account, request(requestId="aftersigterm"))
    wait_state(wid, "succeeded", 20)


def test_kill9_of_the_worker_mid_flight_loses_nothing_and_pays_once():
    account, _ = new_account({"request_timeout_ms": 20000})
    mock.fault(provider="zoomex", path="inner-create", kind="timeout_after", count=1, delay_s=30)
    wid = create(account, request(requestId="kill9a", address="700800"))
    wait_until(lambda: executions("kill9a") == 1, 10, 0.05, "the mock to execute")
    assert row(wid)["state"] == "sending"
    os.kill(cluster.worker_pid(), signal.SIGKILL)
    time.sleep(1)
    cluster.wait_ready(60)
    wait_state(wid, "succeeded", 30)
    assert executions("kill9a") == 1
    ev = [t for _, t in events(wid)]
    assert ev[:5] == ["queued", "sending", "unknown", "sending", "unknown"] and ev[-1] == "succeeded", ev
    assert [x.get("ret_code") for x in creates_for("kill9a")] == [0, 10014]
    return " > ".join(ev)


def test_a_claim_is_on_disk_before_its_request_leaves_when_outcomes_do_not_wait():
    """withdraw.synchronous_outcomes off: answers are recorded by commits
    that do not wait for the flush, and a claim's commit still waits,
    whatever commits came before it in the worker.  The WAL writer is slowed
    (wal_writer_delay 10 s), so WAL reaches the disk only by a commit's own
    flush: one withdrawal is sent and recorded first, then one whose answer
    the mock holds after executing it, then kill -9 of the worker.  The
    second comes back as sending (its claim on disk) and is reconciled,
    never as queued (sent again with nothing recorded, then review)."""
    try:
        cluster.sql("ALTER SYSTEM SET withdraw.synchronous_outcomes = off")
        cluster.sql("ALTER SYSTEM SET wal_writer_delay = '10s'")
        cluster.sql("SELECT pg_reload_conf()")
        time.sleep(0.5)
        account, _ = new_account({"request_timeout_ms": 20000, "create_interval_ms": 0})
        mock.configure({"zoomex": {"create_interval_s": 0}})
        first = create(account, request(requestId="durable0", address="700900"))
        wait_state(first, "submitted")
        mock.fault(provider="zoomex", path="inner-create", kind="timeout_after", count=1, delay_s=30)
        wid = create(account, request(requestId="durable1", address="700901"))
        wait_until(lambda: executions("durable1") == 1, 10, 0.01, "the mock to execute")
        os.kill(cluster.worker_pid(), signal.SIGKILL)
        time.sleep(1)
        cluster.wait_ready(60)
        wait_state(wid, ("succeeded", "review"), 30)
    finally:
        mock.configure({"zoomex": {"create_interval_s": 1.0}})
        cluster.sql("ALTER SYSTEM RESET withdraw.synchronous_outcomes")
        cluster.sql("ALTER SYSTEM RESET wal_writer_delay")
        cluster.sql("SELECT pg_reload_conf()")
    ev = [t for _, t in events(wid)]
    assert ev[:4] == ["queued", "sending", "unknown", "sending"] and ev[-1] == "succeeded", \
        f"the claim was not on disk when its request left: {ev}"
    assert executions("durable1") == 1
    return " > ".join(ev)


def test_kill9_storm_over_a_batch():
    """40 withdrawals over 8 accounts (each at the provider's 1 request/s), with
    the worker killed -9 three times at random moments while they are sent."""
    accounts = [new_account({"poll_interval_ms": 100})[0] for _ in range(8)]
    keys = [f"storm{i}" for i in range(40)]
    conn = cluster.connect(autocommit=False)
    cur = conn.cursor()
    for i, k in enumerate(keys):
        cur.execute("SELECT withdraw_create(%s, %s)",
                    (accounts[i % 8], json.dumps(request(requestId=k, address=f"9{i:05d}"))))
    conn.commit()
    conn.close()
    kills = 0
    for _ in range(3):
        time.sleep(random.uniform(0.2, 1.5))
        os.kill(cluster.wait_ready(60), signal.SIGKILL)
        kills += 1
        time.sleep(0.3)
    cluster.wait_ready(60)
    started = time.monotonic()
    done = "SELECT count(*) FROM withdraw.withdrawals WHERE account = ANY(%s) AND state IN %s"
    try:
        wait_until(lambda: cluster.value(done, (accounts, TERMINAL)) == 40, 90, 0.2, "every withdrawal to finish")
    except AssertionError:
        raise AssertionError(cluster.sql("SELECT state, left(last_error, 120), count(*) FROM withdraw.withdrawals"
                                         " WHERE account = ANY(%s) GROUP BY 1, 2", (accounts,)))
    drain = time.monotonic() - started
    if os.environ.get("KEEP") or drain > 20:
        for r in cluster.sql("SELECT w.idempotency_key, t.kind, t.started_at::time, t.http_status, t.outcome,"
                             " left(t.response_body, 60), left(t.error, 40) FROM withdraw.attempts t"
                             " JOIN withdraw.withdrawals w ON w.id = t.withdrawal_id"
                             " WHERE w.account = ANY(%s) ORDER BY w.id, t.id", (accounts,)):
            print(r)
    ledger = mock.ledger()["executions"]
    doubled = [k for k in keys if ledger.get(k, 0) > 1]
    lost = [k for k in keys if ledger.get(k, 0) == 0]
    states = cluster.sql("SELECT state, count(*) FROM withdraw.withdrawals WHERE account = ANY(%s) GROUP BY 1",
                         (accounts,))
    assert not doubled and not lost, (doubled, lost)
    assert states == [("succeeded", 40)], states
    assert drain < 30, f"took {drain:.1f}s to drain after the last kill: something waited"
    return f"40 withdrawals, {kills} kills, lost 0, doubled 0, drained {drain:.1f}s after the last kill"


def test_zz_a_provider_id_seen_twice_goes_to_review():
    """The provider names an id it already gave another withdrawal of the
    account (here: the mock restarts its id counter).  The batch that records
    it fails on the unique index and is recorded one by one instead: the other
    withdrawals of the batch are recorded, the suspicious one goes to review."""
    account, _ = new_account({"create_interval_ms": 0, "poll_interval_ms": 3600000})
    mock.configure({"zoomex": {"create_interval_s": 0}})
    mock.reset()       # withdraw ids start at 10195
    try:
        first = [create(account, request(requestId=f"dupid{i}", address=f"77{i}")) for i in range(3)]
        for wid in first:
            wait_state(wid, "submitted")
        mock.reset()   # withdraw ids start again at 10195
        conn = cluster.connect(autocommit=False)
        cur = conn.cursor()
        second = []
        for i in range(3, 8):
            cur.execute("SELECT withdraw_create(%s, %s)", (account, json.dumps(request(requestId=f"dupid{i}",
                                                                                  address=f"77{i}"))))
            second.append(cur.fetchone()[0])
        conn.commit()
        conn.close()
        states = [wait_state(w, ("submitted", "review"))["state"] for w in second]
    finally:
        mock.configure({"zoomex": {"create_interval_s": 1.0}})
    mine = {r[0] for r in cluster.sql("SELECT provider_id FROM withdraw.withdrawals WHERE account = %s"
                                      " AND provider_id IS NOT NULL", (account,))}
    reviews = cluster.sql("SELECT last_error FROM withdraw.withdrawals WHERE account = %s AND state = 'review'",
                          (account,))
    assert states.count("review") == 3 and states.count("submitted") == 2, states
    assert all("already linked" in r[0] for r in reviews) and len(mine) == 5, (reviews, mine)
    return f"second batch: {states}"


class Blackhole:
    """A TCP server that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(100)
        self.port = self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        for c in self.held:
            c.close()
        self.sock.close()


def test_a_stuck_account_does_not_stall_the_others():
    """Account A's provider never answers; B's withdrawal still goes at once."""
    hole = Blackhole()
    try:
        n = next(_next_key)
        cluster.sql("SELECT withdraw_account_create(%s, 'zoomex', %s, %s, %s)",
                    (f"stuck{n}", f"http://127.0.0.1:{hole.port}/zoomex",
                     json.dumps({"api_key": f"key{n}", "api_secret": KEYS[f"key{n}"]}),
                     json.dumps({"create_interval_ms": 0, "max_in_flight": 2, "request_timeout_ms": 8000})))
        conn = cluster.connect(autocommit=False)
        cur = conn.cursor()
        for i in range(10):
            cur.execute("SELECT withdraw_create(%s, %s)", (f"stuck{n}", json.dumps(request(requestId=f"stuck{i}"))))
        conn.commit()
        conn.close()
        wait_until(lambda: len(hole.held) >= 2, 5, 0.05, "the stuck account's requests")
        time.sleep(0.3)
        in_flight = cluster.value("SELECT count(*) FROM withdraw.withdrawals WHERE account = %s AND state = 'sending'",
                                  (f"stuck{n}",))
        account, _ = new_account()
        started = time.monotonic()
        wid = create(account, request(requestId="notstalled"))
        wait_until(lambda: executions("notstalled") == 1, 5, 0.02, "the other account's withdrawal")
        took = time.monotonic() - started
        assert in_flight == 2 and len(hole.held) == 2, (in_flight, len(hole.held))
        assert took < 2, took
        wait_state(wid, "succeeded")
        return f"stuck account holds {in_flight} of its cap 2; the other account sent in {took * 1000:.0f} ms"
    finally:
        hole.close()


def test_a_state_machine_naming_an_unknown_state_stops_sending_and_says_why():
    """The states C knows (src/state.c) are checked against withdraw.state_transition
    when a worker starts: a state the library does not know stops sending, named."""
    account, _ = new_account()
    cluster.sql("INSERT INTO withdraw.state_transition VALUES ('queued', 'parked')")
    try:
        pids = {p for (p,) in cluster.sql("SELECT pid FROM withdraw.workers WHERE pid IS NOT NULL")}
        for pid in pids:
            os.kill(pid, signal.SIGTERM)

        def all_restarted_and_stopped():
            rows = cluster.sql("SELECT pid, last_error FROM withdraw.workers WHERE state = 'running'")
            fresh = [e for p, e in rows if p not in pids and e and "parked" in e]
            return fresh[0] if len(fresh) == len(pids) else None
        why = wait_until(all_restarted_and_stopped, 20, 0.2, "every worker to say why it does not send")
        wid = create(account, request(requestId="unknownstate1"))
        time.sleep(1)
        assert row(wid)["state"] == "queued" and creates_for("unknownstate1") == [], row(wid)
    finally:
        cluster.sql("DELETE FROM withdraw.state_transition WHERE to_state = 'parked'")
    wait_state(wid, "succeeded", 20)
    return why


def test_a_withdrawal_not_sent_before_its_deadline_fails_unsent():
    account, key = new_account({"create_interval_ms": 3000})
    first = create(account, request(requestId="deadline1"))
    wait_until(lambda: executions("deadline1") == 1, 10, 0.02, "the first withdrawal")
    # the next create may leave 3 s after the first was answered: too late
    cluster.sql("SELECT withdraw_account_update(%s, options => %s)",
                (account, json.dumps({"create_interval_ms": 3000, "deadline_ms": 1000})))
    late = create(account, request(requestId="deadline2"))
    r = wait_state(late, "failed", 10)
    assert "deadline" in r["last_error"] and creates_for("deadline2") == [], r
    wait_state(first, "succeeded")
    return r["last_error"]


def test_old_history_is_pruned_in_batches():
    account, _ = new_account({"poll_interval_ms": 50})
    wid = create(account, request(requestId="prune1"))
    wait_state(wid, "succeeded")
    before = cluster.value("SELECT count(*) FROM withdraw.attempt WHERE withdrawal_id = %s", (wid,))
    cluster.sql("ALTER SYSTEM SET withdraw.retention = '2s'")
    cluster.sql("ALTER SYSTEM SET withdraw.retention_batch = 50")
    cluster.sql("SELECT pg_reload_conf()")
    try:
        wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.attempt WHERE withdrawal_id = %s",
                                         (wid,)) == 0, 15, 0.1, "old attempts to be pruned")
        wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.event WHERE withdrawal_id = %s",
                                         (wid,)) == 0, 15, 0.1, "old events to be pruned")
        assert row(wid)["state"] == "succeeded"
    finally:
        cluster.sql("ALTER SYSTEM RESET withdraw.retention")
        cluster.sql("ALTER SYSTEM RESET withdraw.retention_batch")
        cluster.sql("SELECT pg_reload_conf()")
    return f"{before} attempts and the events pruned 50 at a time; the withdrawal row stays"


def test_the_worker_comes_back_after_the_database_restarts():
    account, _ = new_account()
    cluster.stop("immediate")
    cluster.start()
    cluster.wait_ready(60)
    wid = create(account, request(requestId="afterrestart"))
    wait_state(wid, "succeeded", 20)


def main():
    run_suite("integration", globals(),
              {"zoomex": {"keys": KEYS, "status_schedule": [["Pending Review", 0.2], ["Pending Transfer", 0.2]]}})


if __name__ == "__main__":
    main()
