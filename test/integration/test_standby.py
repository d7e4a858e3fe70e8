"""Integration suite (issue 20): the workers send only from a primary.

A primary (node_a) and a streaming standby (node_b), a real worker and the
zoomex mock over 127.0.0.1, in this order:

  * on the hot standby no worker runs and withdraw.workers says why;
  * a withdrawal replicated to the standby is not sent from there;
  * the primary is killed (every process, SIGKILL), the standby promoted with
    pg_ctl promote: its workers start by themselves and send it, once;
  * the old primary, rebuilt with pg_rewind and restarted as a standby of the
    new one, runs no worker and sends nothing, while the new primary sends;
  * a primary cut off from its synchronous standby sends nothing, even when
    its worker's commit wait is cancelled (pg_cancel_backend) or when the
    database sets synchronous_commit = local for the worker (src/standby.c);
    it sends once the standby is back.

Run: python3 test/integration/test_standby.py  (as a non-root user)
"""

import json
import os
import signal
import sys
import time

from harness import Mock, Suite, wait_until
from replication import Node

SECRET = "secret-standby-" + "s" * 12
mock = None
a = None            # node_a: the first primary
b = None            # node_b: its standby, then the primary


def create(node, key, conn_setup=None):
    """A committed withdrawal on node with idempotency key key; returns its id."""
    body = {"requestId": key, "coin": "USDT", "addressType": 3, "address": "700" + key[-3:].zfill(3),
            "amount": "3.50"}
    conn = node.connect(autocommit=False)
    try:
        cur = conn.cursor()
        if conn_setup:
            cur.execute(conn_setup)
        cur.execute("SELECT withdraw_create('acct', %s)", (json.dumps(body),))
        wid = cur.fetchone()[0]
        conn.commit()
        return wid
    finally:
        conn.close()


def local_sql(node, query):
    """A statement whose commit does not wait for a synchronous standby."""
    conn = node.connect()
    try:
        conn.cursor().execute("SET synchronous_commit = local; " + query)
    finally:
        conn.close()


def requests_for(key):
    return [r for r in mock.requests() if r.get("requestId") == key]


def executions(key):
    return mock.ledger()["executions"].get(key, 0)


def state_of(node, key):
    return node.value("SELECT state FROM withdraw.withdrawals WHERE idempotency_key = %s", (key,))


def workers(node):
    return node.sql("SELECT worker, state, pid, last_error FROM withdraw.workers ORDER BY worker")


def hold(seconds, check, what="the condition stopped holding"):
    """check() must stay true for seconds (the workers' tick is 100 ms here)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.1)


# -- the cases, in order --------------------------------------------------------

def test_standby_runs_no_worker_and_says_so():
    rows = workers(b)
    assert rows, "withdraw.workers is empty on the standby"
    for worker, state, pid, last_error in rows:
        assert state == "standby" and pid is None, rows
        assert last_error.startswith("not sending: this server is a standby"), rows
    assert b.worker_pids() == [], "a withdraw worker runs on the standby"
    assert {s for _, s, _, _ in workers(a)} == {"running"}, workers(a)
    return f"{len(rows)} row(s): standby, no pid"


def test_standby_sends_nothing():
    pid = a.worker_pid()
    os.kill(pid, signal.SIGSTOP)        # the primary's worker may not send it either
    create(a, "sb001")
    a.wait_replayed(b)
    assert state_of(b, "sb001") == "queued"
    hold(2, lambda: not requests_for("sb001") and b.worker_pids() == [])
    assert state_of(b, "sb001") == "queued"
    return "queued on the standby for 2 s, nothing at the provider"


def test_promotion_starts_sending():
    a.kill_all()                        # the stopped worker too
    b.promote()
    assert not b.in_recovery()
    b.wait_ready(30)
    b.wait_withdrawal(b.value("SELECT id FROM withdraw.withdrawals WHERE idempotency_key = 'sb001'"),
                      "succeeded", timeout=30)
    assert executions("sb001") == 1, mock.ledger()["executions"]
    rows = workers(b)
    assert {s for _, s, _, _ in rows} == {"running"}, rows
    assert not any((e or "").startswith("not sending: this server is a standby") for _, _, _, e in rows), rows
    return "the workers started at promotion, sb001 succeeded, executed once"


def test_demoted_node_restarted_as_standby_sends_nothing():
    how = a.rebuild(b)
    a.start()
    b.wait_streaming(a)
    assert a.in_recovery()
    assert a.worker_pids() == [] and {s for _, s, _, _ in workers(a)} == {"standby"}, workers(a)
    pid = b.worker_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        create(b, "sb002")
        b.wait_replayed(a)
        assert state_of(a, "sb002") == "queued"
        # the old primary holds a queued withdrawal and its own stale view of the
        # world, and still sends nothing
        hold(2, lambda: not requests_for("sb002") and a.worker_pids() == [])
    finally:
        os.kill(pid, signal.SIGCONT)
    b.wait_withdrawal(b.value("SELECT id FROM withdraw.withdrawals WHERE idempotency_key = 'sb002'"),
                      "succeeded", timeout=30)
    assert executions("sb002") == 1 and len([r for r in requests_for("sb002") if "inner-create" in r["path"]]) == 1
    assert executions("sb001") == 1
    return f"rebuilt by {how}; sb002 sent once, by the new primary"


def test_primary_cut_off_from_its_synchronous_standby_sends_nothing():
    b.sql("ALTER SYSTEM SET synchronous_standby_names = 'node_a'")
    b.sql("SELECT pg_reload_conf()")
    wait_until(lambda: b.value("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'node_a'")
               == "sync", 20, 0.1, "node_a to be the synchronous standby")
    a.stop()                            # node_b is now cut off from its synchronous standby
    notes = []
    try:
        # the application's commit does not wait (its own choice); the worker's claim does
        create(b, "sb003", "SET synchronous_commit = local")
        wid = b.value("SELECT id FROM withdraw.withdrawals WHERE idempotency_key = 'sb003'")
        pid = b.worker_pid()
        wait_until(lambda: b.value("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)) == "SyncRep",
                   20, 0.05, "the worker's claim to wait for the synchronous standby")
        # a cancel ends the commit's wait: the claim is committed here only
        b.sql("SELECT pg_cancel_backend(%s)", (pid,))
        hold(3, lambda: not requests_for("sb003"), "sb003 reached the provider after the cancel")
        assert (b.value("SELECT last_error FROM withdraw.workers WHERE pid = %s", (pid,)) or "") \
            .startswith("not sending: waiting for a synchronous standby"), workers(b)
        assert b.withdrawal(wid)["state"] == "sending"
        notes.append("cancelled wait: nothing sent in 3 s")

        # a database setting lowers the worker's synchronous_commit: its commits
        # no longer wait at all
        local_sql(b, "ALTER DATABASE postgres SET synchronous_commit = local")
        b.sql("SELECT pg_terminate_backend(%s)", (pid,))
        new = wait_until(lambda: b.value("SELECT pid FROM withdraw.workers WHERE state = 'running'"
                                         " AND pid <> %s", (pid,)), 30, 0.1, "a new worker")
        wait_until(lambda: requests_for("sb003") or
                   (b.value("SELECT last_error FROM withdraw.workers WHERE pid = %s", (new,)) or "")
                   .startswith("not sending: waiting for a synchronous standby"), 20, 0.05,
                   "the new worker to wait for the synchronous standby")
        assert not requests_for("sb003"), "sb003 reached the provider from a worker whose commits do not wait"
        # it recovered sb003 (a commit that did not wait) and claimed it again
        assert "unknown" in b.state_path(wid) and b.withdrawal(wid)["state"] in ("unknown", "sending")
        hold(3, lambda: not requests_for("sb003"), "sb003 reached the provider from a worker whose commits do not wait")
        notes.append("synchronous_commit = local: nothing sent in 3 s")
    finally:
        local_sql(b, "ALTER DATABASE postgres RESET synchronous_commit")
        a.start()
    b.wait_withdrawal(wid, "succeeded", timeout=30)
    assert executions("sb003") == 1, mock.ledger()["executions"]
    b.sql("ALTER SYSTEM RESET synchronous_standby_names")
    b.sql("SELECT pg_reload_conf()")
    notes.append("sent once the standby was back")
    return "; ".join(notes)


def main():
    global mock, a, b
    mock = Mock({"zoomex": {"keys": {"sbkey": SECRET}, "create_interval_s": 0}})
    a = Node("node_a").start()
    ok = False
    try:
        a.sql("CREATE EXTENSION withdraw")
        a.sql("SELECT withdraw_account_create('acct', 'zoomex', %s, %s, '{\"create_interval_ms\": 0}')",
              (mock.base_url("zoomex"), json.dumps({"api_key": "sbkey", "api_secret": SECRET})))
        a.wait_ready()
        b = Node("node_b", base=a).start()
        a.wait_streaming(b)
        tests = [test_standby_runs_no_worker_and_says_so, test_standby_sends_nothing,
                 test_promotion_starts_sending, test_demoted_node_restarted_as_standby_sends_nothing,
                 test_primary_cut_off_from_its_synchronous_standby_sends_nothing]
        ok = Suite("standby").run(tests, sys.argv[1:])
    finally:
        if not ok or os.environ.get("KEEP"):
            for node in (a, b):
                if node is not None:
                    print(f"---- {node.name} server log (tail) ----")
                    print("\n".join(node.log_text().splitlines()[-30:]))
        for node in (b, a):
            if node is not None:
                node.destroy()
        mock.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
