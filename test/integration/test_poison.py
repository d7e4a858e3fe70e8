"""Poison suite (issue 14, findings 3 and 5, and creates_in_flight): bytes from the
network end as recorded outcomes, never as a worker exit; what keeps failing is
quarantined to review; an account whose credentials cannot be opened waits alone;
an account that gains create_interval_ms while creates are in flight keeps it.

A real server and worker, the mock providers over 127.0.0.1 (test/mock, whose fault
queue serves the poison answers), a plain TCP listener that never completes a TLS
handshake.  The worker's pid is checked to stay the same wherever a poison answer
could once have stopped it.

Run: python3 test/integration/test_poison.py [name-filter ...]  (as a non-root user)
"""

import json
import os
import signal
import socket
import threading
import time

import psycopg2

from harness import run_suite, wait_until, rsa_key_pair

cluster = None
mock = None

ZX_KEY, ZX_SECRET = "pk1", "poison-secret-1"
CCP_APP, CCP_SECRET = "ccp-poison", "ccp-poison-secret"
POLYGON_USDT = "8e5741cf-6e51-4892-9d04-3d40e1dd0128"
SENT = ("submitted", "processing", "succeeded")


def zoomex_account(name, options=None, base=None):
    opts = {"create_interval_ms": 0, "poll_interval_ms": 300, "request_timeout_ms": 2000}
    opts.update(options or {})
    cluster.sql("SELECT withdraw_account_create(%s, 'zoomex', %s, %s, %s)",
                (name, base or mock.base_url("zoomex"),
                 json.dumps({"api_key": ZX_KEY, "api_secret": ZX_SECRET}), json.dumps(opts)))


def zoomex(account, **fields):
    body = {"coin": "USDT", "addressType": 3, "address": "100200", "amount": "1.25"}
    body.update(fields)
    return cluster.value("SELECT withdraw_create(%s, %s)", (account, json.dumps(body)))


def ccpayment(moid):
    body = {"merchant_order_id": moid, "address": "0xabc0000000000000000000000000000000000001",
            "token_id": POLYGON_USDT, "value": "1.5"}
    return cluster.value("SELECT withdraw_create('ccp', %s)", (json.dumps(body),))


def row(wid, *cols):
    cols = cols or ("state",)
    return cluster.withdrawal(wid, cols)


def key_of(wid):
    return cluster.value("SELECT idempotency_key FROM withdraw.withdrawals WHERE id = %s", (wid,))


def executions(request_id):
    return mock.ledger()["executions"].get(request_id, 0)


def creates_of(request_id):
    return [r for r in mock.requests() if r.get("requestId") == request_id and "inner-create" in r["path"]]


def create_attempts(wid):
    return cluster.sql("SELECT outcome, error, left(response_body, 60), latency_ms FROM withdraw.attempts"
                       " WHERE withdrawal_id = %s AND kind = 'create' ORDER BY id", (wid,))


def first_create_attempt(wid):
    rows = create_attempts(wid)
    return rows[0] if rows else None


def reload(**settings):
    for k, v in settings.items():
        if v is None:
            cluster.sql(f"ALTER SYSTEM RESET {k}")
        else:
            cluster.sql(f"ALTER SYSTEM SET {k} = %s", (v,))
    cluster.sql("SELECT pg_reload_conf()")
    for k, v in settings.items():
        if v is not None:
            wait_until(lambda: cluster.value("SELECT setting FROM pg_settings WHERE name = %s", (k,)) == str(v),
                       5, 0.05, f"{k} reloaded")


class Traffic:
    """ccpayment withdrawals created every 0.2 s on another account while a test runs:
    each of them must succeed."""

    def __init__(self, tag):
        self.tag, self.ids, self.stop = tag, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            self.ids.append(ccpayment(f"{self.tag}-{n}"))
            self.stop.wait(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def all_succeeded(self):
        for wid in self.ids:
            cluster.wait_withdrawal(wid, "succeeded", timeout=20)
        return len(self.ids)


def worker_unchanged(pid):
    now = cluster.worker_pid()
    assert now == pid, f"the worker changed: pid {pid} -> {now}"
    assert "terminated by exit code" not in cluster.log_text(), "a withdraw worker exited"


# -- finding 3: poison answers --------------------------------------------------------

POISON_KINDS = ["deep_brackets", "deep_nesting", "huge", "bad_utf8", "nul_json", "nul_escape", "drip"]


def test_poison_answers_are_recorded_and_the_worker_lives():
    """Each poison answer to a create is that withdrawal's recorded outcome (unknown: the
    provider may have executed it), the create is resent with the same key and paid once,
    the worker's pid never changes and another account's withdrawals all succeed."""
    pid = cluster.worker_pid()
    for kind in POISON_KINDS:
        mock.fault(provider="zoomex", path="inner-create", kind=kind, count=1, delay_s=30)
    with Traffic("poison") as traffic:
        conn = cluster.connect(autocommit=False)
        cur = conn.cursor()
        wids = []
        for i in range(len(POISON_KINDS)):
            cur.execute("SELECT withdraw_create('zx', %s)",
                        (json.dumps({"coin": "USDT", "addressType": 3, "address": f"30{i}",
                                     "amount": "1.25"}),))
            wids.append(cur.fetchone()[0])
        conn.commit()
        conn.close()
        for wid in wids:
            cluster.wait_withdrawal(wid, "succeeded", timeout=30)
    # the mock hands the queued faults to creates in arrival order, and a
    # poisoned create may be resent before another withdrawal's first one:
    # pair each create the mock saw with the attempt recorded for it
    seen = {}
    for wid in wids:
        key = key_of(wid)
        faults = [r["fault"] for r in creates_of(key)]
        attempts = create_attempts(wid)
        assert len(attempts) == len(faults), (wid, faults, attempts)
        for fault, (outcome, error, body, _) in zip(faults, attempts):
            if fault in POISON_KINDS:
                assert outcome == "unknown", (fault, outcome, error, body)
                seen[fault] = error or body
        assert executions(key) == 1, (faults, executions(key))
    assert sorted(seen) == sorted(POISON_KINDS), seen
    assert "larger than" in seen["huge"], seen["huge"]
    assert "timed out" in seen["drip"].lower(), seen["drip"]
    n = traffic.all_succeeded()
    worker_unchanged(pid)
    return f"{len(seen)} poison answers recorded as unknown, each resent and paid once; {n} ccpayment withdrawals succeeded meanwhile; worker pid {pid} throughout"


def test_a_tls_handshake_that_never_completes_ends_at_the_connect_timeout():
    """A listener that accepts TCP and never answers the TLS ClientHello: the attempt
    ends at withdraw.connect_timeout as an undelivered send, recorded."""
    pid = cluster.worker_pid()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    reload(**{"withdraw.connect_timeout": 1000})
    try:
        zoomex_account("tls", {"max_attempts": 2, "request_timeout_ms": 20000},
                       base=f"https://127.0.0.1:{server.getsockname()[1]}")
        wid = zoomex("tls")
        wait_until(lambda: first_create_attempt(wid), 15, 0.1, "the first attempt")
        outcome, error, _, latency = first_create_attempt(wid)
        state = cluster.wait_withdrawal(wid, "failed", timeout=20)["state"]
    finally:
        reload(**{"withdraw.connect_timeout": None})
        stop.set()
        thread.join()
        for s in held:
            s.close()
        server.close()
    assert held, "the worker never connected"
    assert outcome == "not delivered" and "timeout" in error.lower(), (outcome, error)
    assert 900 <= latency < 5000, latency
    worker_unchanged(pid)
    return f"{error!r} after {latency:.0f} ms, {state} after 2 undelivered attempts"


chainup_key = rsa_key_pair


def test_an_answer_whose_reading_raises_is_quarantined():
    """Reading an answer raises an ERROR, every time: a chainup account whose stored
    credentials lost the platform's key (planted as plaintext credentials by the owner,
    as an upgrade from 0.1.0 leaves them), so opening each answer raises "has no
    credential".  Each is the create's recorded outcome (unknown: the provider executed
    it), resent with the same request_id, a strike each time; at
    withdraw.quarantine_after (3) it goes to review with the reason.  The worker lives
    on and another account's withdrawals succeed."""
    pid = cluster.worker_pid()
    pem, pub = chainup_key()
    mock.configure({"chainup": {"merchants": {"cq-app": {"public_key": pub, "confirm_url": None,
                                                         "notify_url": None}}}})
    wallet = mock.call("GET", "/_mock/chainup/keys")["wallet_public_key"]
    cluster.sql("SELECT withdraw_account_create('cq', 'chainup', %s, %s, %s)",
                (mock.base_url("chainup"),
                 json.dumps({"app_id": "cq-app", "merchant_private_key": pem, "platform_public_key": wallet}),
                 json.dumps({"poll_interval_ms": 300, "sync_interval_ms": 3600000})))
    cluster.sql("UPDATE withdraw.account_secret SET sealed = NULL, key_id = NULL, credentials = %s"
                " WHERE account_id = (SELECT id FROM withdraw.account WHERE name = 'cq')",
                (json.dumps({"app_id": "cq-app", "merchant_private_key": pem}),))
    with Traffic("quarantine") as traffic:
        wid = cluster.value("SELECT withdraw_create('cq', %s)",
                            (json.dumps({"from_uid": "3529218", "to_address": "0xabc", "amount": "1.25",
                                         "symbol": "usdt"}),))
        q = cluster.wait_withdrawal(wid, "review", ("state", "last_error", "next_poll_at", "attempts"),
                                    timeout=30)
    errors = [e for (e,) in cluster.sql("SELECT error FROM withdraw.attempts WHERE withdrawal_id = %s"
                                        " ORDER BY id", (wid,))]
    outcomes = [o for (o,) in cluster.sql("SELECT outcome FROM withdraw.attempts WHERE withdrawal_id = %s"
                                          " ORDER BY id", (wid,))]
    strikes = cluster.value("SELECT strikes FROM withdraw.withdrawal WHERE id = %s", (wid,))
    assert "quarantined" in q["last_error"] and "3 times" in q["last_error"], q["last_error"][:300]
    assert "has no credential" in q["last_error"], q["last_error"][:300]
    assert q["next_poll_at"] is None and strikes == 3 and q["attempts"] == 3, (q, strikes)
    assert outcomes == ["unknown", "unknown", "quarantined"], outcomes
    assert all(e.startswith("could not read the answer") for e in errors), errors
    n = traffic.all_succeeded()
    worker_unchanged(pid)
    time.sleep(1)
    assert cluster.value("SELECT count(*) FROM withdraw.attempts WHERE withdrawal_id = %s", (wid,)) == 3
    return f"review after 3 unreadable answers ({outcomes}); {n} others succeeded meanwhile; pid {pid}"


def nothing_in_flight():
    return cluster.value("SELECT count(*) = 0 FROM withdraw.withdrawal"
                         " WHERE state IN ('queued', 'sending', 'submitted', 'processing', 'unknown')")


def lock_attempts():
    """A session that keeps the worker from recording any outcome: its INSERT into
    withdraw.attempt waits, so the worker is caught while it handles an answer."""
    conn = cluster.connect(autocommit=False)
    conn.cursor().execute("LOCK TABLE withdraw.attempt IN SHARE ROW EXCLUSIVE MODE")
    return conn


def worker_waits_on_a_lock():
    """The pid of a withdraw worker waiting for a lock, if one is."""
    return cluster.value("SELECT pid FROM pg_stat_activity WHERE backend_type = 'withdraw worker'"
                         " AND wait_event_type = 'Lock' LIMIT 1")


def test_a_worker_stopped_while_reading_an_answer_is_quarantined():
    """The worker is killed -9 while it handles a withdrawal's answer (its recording held
    by a lock), three times: the first stop gives every withdrawal in flight a strike,
    the next answers are stamped before they are read, and at the third the recovery
    moves it to review instead of sending it again.  It was paid once.  A bystander,
    in flight at each of the three stops but never being read, keeps one strike, is
    not quarantined, and succeeds."""
    zoomex_account("zk")
    cluster.sql("SELECT withdraw_account_create('ccb', 'ccpayment', %s, %s, %s)",
                (mock.base_url("ccpayment"), json.dumps({"app_id": CCP_APP, "app_secret": CCP_SECRET}),
                 json.dumps({"api_version": 1, "poll_interval_ms": 300, "request_timeout_ms": 30000})))
    kills = []
    wait_until(nothing_in_flight, 30, 0.1, "the other withdrawals to settle")
    lock = lock_attempts()
    # each send, and each resend after a restart, is held 3 s at the provider: time to lock again
    mock.fault(provider="zoomex", path="inner-create", kind="slow", count=3, delay_s=3)
    # the bystander's sends are held 10 s: in flight at every stop, read after the last
    mock.fault(provider="ccpayment", path="v1/withdraw", kind="slow", count=4, delay_s=10)
    wid = zoomex("zk", address="500500")
    bystander = cluster.value("SELECT withdraw_create('ccb', %s)",
                              (json.dumps({"merchant_order_id": "bystander-1", "token_id": POLYGON_USDT,
                                           "address": "0xabc0000000000000000000000000000000000001",
                                           "value": "1.5"}),))
    key = key_of(wid)
    for i in range(3):
        pid = wait_until(worker_waits_on_a_lock, 20, 0.05, f"the worker to handle the answer ({i + 1})")
        strikes = cluster.value("SELECT strikes FROM withdraw.withdrawal WHERE id = %s", (wid,))
        kills.append(strikes)
        os.kill(pid, signal.SIGKILL)
        try:
            lock.close()
        except psycopg2.Error:
            pass
        time.sleep(0.5)
        cluster.wait_ready(60)
        if i < 2:
            lock = lock_attempts()
    r = cluster.wait_withdrawal(wid, "review", ("state", "last_error"), timeout=20)
    strikes = cluster.value("SELECT strikes FROM withdraw.withdrawal WHERE id = %s", (wid,))
    assert "quarantined" in r["last_error"] and "stopped 3 times" in r["last_error"], r
    assert kills == [0, 2, 3] and strikes == 3, (kills, strikes)
    assert executions(key) == 1, executions(key)
    b = cluster.sql("SELECT state, strikes FROM withdraw.withdrawal WHERE id = %s", (bystander,))[0]
    assert b in [("sending", 1), ("unknown", 1)], b
    cluster.wait_withdrawal(bystander, "succeeded", timeout=40)
    b = cluster.sql("SELECT state, strikes FROM withdraw.withdrawal WHERE id = %s", (bystander,))[0]
    assert b == ("succeeded", 0), b
    assert mock.ledger("ccpayment")["executions"].get(f"{CCP_APP}/bystander-1") == 1
    # the rest keep flowing
    other = zoomex("zx", address="500501")
    cluster.wait_withdrawal(other, SENT, timeout=20)
    time.sleep(1)
    assert row(wid, "state")["state"] == "review"
    return (f"strikes when killed: {kills}; review: {r['last_error'][:80]}…; paid once;"
            " the bystander kept 1 strike and succeeded")


# -- finding 5: an account whose credentials cannot be opened --------------------------

def key_file(name):
    path = os.path.join(cluster.dir, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    return path


def test_an_account_whose_credentials_cannot_be_opened_waits_alone():
    """An account sealed under a key that is no longer configured: its withdrawals wait
    (queued, nothing taken), the reason is in withdraw.accounts.not_sending and in
    withdraw.workers.last_error, and every other account's withdrawals succeed."""
    pid = cluster.worker_pid()
    other = key_file("other.key")
    reload(**{"withdraw.secrets_key_file": other})
    zoomex_account("lost")
    reload(**{"withdraw.secrets_key_file": cluster.key_file})
    lost = zoomex("lost", address="600600")
    with Traffic("isolated") as traffic:
        zx = zoomex("zx", address="600601")
        cluster.wait_withdrawal(zx, SENT, timeout=20)
        time.sleep(1)
    n = traffic.all_succeeded()
    why = cluster.value("SELECT not_sending FROM withdraw.accounts WHERE name = 'lost'")
    fine = cluster.value("SELECT count(*) FROM withdraw.accounts WHERE name <> 'lost' AND not_sending IS NOT NULL")
    last = wait_until(lambda: cluster.value("SELECT last_error FROM withdraw.workers"
                                            " WHERE last_error LIKE '%%account \"lost\"%%'"), 10, 0.1,
                      "the worker to report the account")
    r = row(lost, "state", "attempts")
    assert r == {"state": "queued", "attempts": 0}, r
    assert why and "no configured key file holds" in why, why
    assert fine == 0, fine
    assert "not sending" in last and "no configured key file holds" in last, last
    worker_unchanged(pid)
    # the key back (as the previous one, as during a rotation): it is sent
    reload(**{"withdraw.secrets_previous_key_file": other})
    cluster.wait_withdrawal(lost, SENT, timeout=20)
    reload(**{"withdraw.secrets_previous_key_file": None})
    return f"{n} others succeeded while 'lost' waited; withdraw.accounts: {why!r}; sent once its key was back"


# -- low: creates_in_flight when an account gains create_interval_ms -------------------

def test_an_interval_set_while_creates_are_in_flight_holds():
    """Four creates in flight without an interval; the account then gets
    create_interval_ms = 1000.  The next creates go one at a time, each 1 s after the
    previous answer (they drifted: creates_in_flight went to -4 and three went at once)."""
    zoomex_account("zi")
    mock.fault(provider="zoomex", path="inner-create", kind="slow", count=4, delay_s=1.5)
    conn = cluster.connect(autocommit=False)
    cur = conn.cursor()
    first = []
    for i in range(4):
        cur.execute("SELECT withdraw_create('zi', %s)",
                    (json.dumps({"coin": "USDT", "addressType": 3, "address": f"70{i}", "amount": "1"}),))
        first.append(cur.fetchone()[0])
    conn.commit()
    wait_until(lambda: all(creates_of(key_of(w)) for w in first), 10, 0.05, "four creates in flight")
    cluster.sql("SELECT withdraw_account_update('zi', options => %s)",
                (json.dumps({"create_interval_ms": 1000, "poll_interval_ms": 300, "request_timeout_ms": 5000}),))
    for w in first:
        cluster.wait_withdrawal(w, SENT, timeout=15)
    mock.fault(provider="zoomex", path="inner-create", kind="slow", count=3, delay_s=1.5)
    second = []
    for i in range(3):
        cur.execute("SELECT withdraw_create('zi', %s)",
                    (json.dumps({"coin": "USDT", "addressType": 3, "address": f"71{i}", "amount": "1"}),))
        second.append(cur.fetchone()[0])
    conn.commit()
    conn.close()
    for w in second:
        cluster.wait_withdrawal(w, SENT, timeout=20)
    arrivals = sorted(creates_of(key_of(w))[0]["t"] for w in second)
    gaps = [round(b - a, 2) for a, b in zip(arrivals, arrivals[1:])]
    # each goes 1 s after the previous answer, which the mock gave 1.5 s after its arrival
    assert min(gaps) >= 2.4, gaps
    return f"gaps between the creates after the interval was set: {gaps} s"


def setup():
    zoomex_account("zx")
    cluster.sql("SELECT withdraw_account_create('ccp', 'ccpayment', %s, %s, %s)",
                (mock.base_url("ccpayment"), json.dumps({"app_id": CCP_APP, "app_secret": CCP_SECRET}),
                 json.dumps({"api_version": 1, "poll_interval_ms": 300})))


def main():
    run_suite("poison", globals(),
              {"zoomex": {"keys": {ZX_KEY: ZX_SECRET}, "create_interval_s": 0,
                          "status_schedule": [["Pending Transfer", 0.2]]},
               "ccpayment": {"apps": {CCP_APP: {"secret": CCP_SECRET, "webhook_url": None}},
                             "settle_after_s": 0.3}},
              {"withdraw.poll_interval": "300"},
              setup=setup)


if __name__ == "__main__":
    main()
