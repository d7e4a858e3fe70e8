"""Integration suite: two withdraw workers (withdraw.workers = 2) sharing the
work of one server, against the zoomex mock over HTTP.

What is checked: the rows of an account without limits are shared by the
workers (each claims up to its half of the account's max_in_flight; SKIP
LOCKED keeps their claims apart), each sent once; a rate-limited account, or one
allowed fewer exchanges in flight than there are workers, is served by one
worker alone (its id modulo 2), so its limits stay exact; and a worker that
stops and starts again while the other runs recovers its own rows in
'sending', never the other's, which are still in flight.

(test_worker.py, the main suite, also runs with WITHDRAW_WORKERS=2 in
test/run_all.sh.)

Run: python3 test/integration/test_workers.py [name-filter ...]  (as a non-root user)
"""

import json
import os
import re
import signal
import time

from harness import run_suite, wait_until

KEYS = {f"key{i}": f"secret-{i}-{'y' * 8}" for i in range(1, 21)}

cluster = None
mock = None
_next_key = iter(range(1, 21))


def new_account(options):
    """A fresh zoomex account with its own API key; returns (name, id, key)."""
    n = next(_next_key)
    name = f"w{n}"
    creds = {"api_key": f"key{n}", "api_secret": KEYS[f"key{n}"]}
    cluster.sql("SELECT withdraw_account_create(%s, 'zoomex', %s, %s, %s)",
                (name, mock.base_url("zoomex"), json.dumps(creds), json.dumps(options)))
    return name, cluster.value("SELECT id FROM withdraw.account WHERE name = %s", (name,)), f"key{n}"


def create_many(account, prefix, n):
    """n withdrawals committed in one transaction; returns their ids."""
    conn = cluster.connect(autocommit=False)
    cur = conn.cursor()
    ids = []
    for i in range(n):
        body = {"coin": "USDT", "addressType": 3, "address": f"5{i:04d}", "amount": f"{i + 1}.25",
                "requestId": f"{prefix}{i}"}
        cur.execute("SELECT withdraw_create(%s, %s)", (account, json.dumps(body)))
        ids.append(cur.fetchone()[0])
    conn.commit()
    conn.close()
    return ids


def claimers(ids):
    """{withdrawal id: claimed_by}."""
    return dict(cluster.sql("SELECT id, claimed_by FROM withdraw.withdrawal WHERE id = ANY (%s)", (ids,)))


def wait_all(ids, states, timeout=30):
    def done():
        n = cluster.value("SELECT count(*) FROM withdraw.withdrawal WHERE id = ANY (%s) AND state = ANY (%s)",
                          (ids, list(states)))
        return n == len(ids)
    wait_until(done, timeout, 0.1, f"{len(ids)} withdrawals in {states}")


def creates_by_key(key):
    return [r for r in mock.requests() if r["api_key"] == key and "inner-create" in r["path"]]


def assert_each_executed_once(prefix, n):
    executions = mock.ledger()["executions"]
    counts = [executions.get(f"{prefix}{i}", 0) for i in range(n)]
    assert counts == [1] * n, counts


# ---------------------------------------------------------------------------

def test_both_workers_run_numbered_in_the_view():
    wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.workers WHERE state = 'running'") == 2,
               30, 0.1, "both workers to run")
    rows = cluster.sql("SELECT worker, state, pid FROM withdraw.workers ORDER BY worker")
    assert [(w, s) for w, s, _ in rows] == [(0, "running"), (1, "running")], rows
    pids = {p for _, _, p in rows}
    backends = {p for (p,) in cluster.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'withdraw worker'")}
    assert len(pids) == 2 and pids == backends, (pids, backends)
    return f"pids {sorted(pids)}"


def test_an_account_without_limits_is_shared_and_each_sent_once():
    account, _, key = new_account({"create_interval_ms": 0, "polls_per_second": 0, "poll_interval_ms": 100,
                                   "max_in_flight": 16})
    sent_before = dict(cluster.sql("SELECT worker, requests_sent FROM withdraw.workers"))
    ids = create_many(account, "split", 60)
    wait_all(ids, ["succeeded"])
    by = claimers(ids)
    assert set(by.values()) == {0, 1}, by
    assert_each_executed_once("split", 60)
    assert len(creates_by_key(key)) == 60
    sent = {w: n - sent_before[w] for w, n in cluster.sql("SELECT worker, requests_sent FROM withdraw.workers")}
    assert sent[0] > 0 and sent[1] > 0, sent
    rows = [sum(1 for w in by.values() if w == k) for k in (0, 1)]
    return f"withdrawals last claimed by worker 0 / 1: {rows[0]} / {rows[1]}; requests {sent[0]} / {sent[1]}"


def test_a_rate_limited_account_is_served_by_one_worker_at_its_interval():
    account, account_id, key = new_account({"create_interval_ms": 300, "poll_interval_ms": 100})
    ids = create_many(account, "paced", 5)
    wait_all(ids, ["succeeded"])
    by = claimers(ids)
    assert set(by.values()) == {account_id % 2}, (account_id, by)
    times = sorted(r["t"] for r in creates_by_key(key))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == 5 and min(gaps) >= 0.3, gaps
    assert_each_executed_once("paced", 5)
    return f"account {account_id}: worker {account_id % 2}; gaps {', '.join(f'{g:.3f}' for g in gaps)} s"


def test_an_account_whose_limit_is_lifted_is_shared_again():
    """The other worker blocks a rate-limited account as not its own and is
    never offered its rows again: it must learn of the change by reading
    the accounts (once per withdraw.naptime, 100 ms here)."""
    account, account_id, _ = new_account({"create_interval_ms": 300, "poll_interval_ms": 100,
                                          "max_in_flight": 16})
    paced = create_many(account, "liftedbefore", 2)
    wait_all(paced, ["succeeded"])
    assert set(claimers(paced).values()) == {account_id % 2}
    cluster.sql("SELECT withdraw_account_update(%s, options => %s)",
                (account, json.dumps({"create_interval_ms": 0, "polls_per_second": 0,
                                      "poll_interval_ms": 100, "max_in_flight": 16})))
    time.sleep(0.5)   # past both workers' next reading of the accounts
    ids = create_many(account, "lifted", 60)
    wait_all(ids, ["succeeded"])
    by = claimers(ids)
    assert set(by.values()) == {0, 1}, by
    assert_each_executed_once("lifted", 60)
    return f"after the update, claimed by worker 0 / 1: {sum(1 for w in by.values() if w == 0)} / " \
           f"{sum(1 for w in by.values() if w == 1)}"


def test_an_account_allowed_one_exchange_is_served_by_one_worker():
    account, account_id, key = new_account({"create_interval_ms": 0, "polls_per_second": 0,
                                            "poll_interval_ms": 100, "max_in_flight": 1})
    ids = create_many(account, "single", 12)
    wait_all(ids, ["succeeded"])
    by = claimers(ids)
    assert set(by.values()) == {account_id % 2}, (account_id, by)
    # one exchange at a time: every create came on the one connection
    ports = {r["client_port"] for r in creates_by_key(key)}
    assert len(ports) == 1, ports
    assert_each_executed_once("single", 12)
    return f"account {account_id}: worker {account_id % 2}, 1 connection"


def test_a_restarted_worker_recovers_its_own_rows_only():
    """Every create of the account is held 12 s by the mock (then the
    connection closes, unexecuted).  Worker 1 is stopped with SIGTERM while
    both workers have rows in 'sending'; it starts again 5 s later
    (bgw_restart_time) and recovers its rows, while worker 0's are still in
    flight and must stay 'sending'.  In the end all are paid once."""
    account, _, _ = new_account({"create_interval_ms": 0, "polls_per_second": 0, "poll_interval_ms": 100,
                                 "max_in_flight": 16, "request_timeout_ms": 20000})
    n = 16    # the account's cap: 8 in flight per worker, so each holds 8 of them
    mock.fault(provider="zoomex", path="inner-create", kind="timeout_before", count=n, delay_s=12)
    log_from = len(cluster.log_text())
    ids = create_many(account, "restart", n)
    wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.withdrawal WHERE id = ANY (%s)"
                                     " AND state = 'sending'", (ids,)) == n, 10, 0.05, "all in flight")
    by = claimers(ids)
    worker1_rows = sorted(w for w, c in by.items() if c == 1)
    worker0_rows = sorted(w for w, c in by.items() if c == 0)
    assert worker1_rows and worker0_rows, by
    pid1 = cluster.value("SELECT pid FROM withdraw.workers WHERE worker = 1")
    os.kill(pid1, signal.SIGTERM)
    found = wait_until(lambda: re.search(r"withdraw worker 1 found (\d+) withdrawals in flight",
                                         cluster.log_text()[log_from:]), 20, 0.1, "worker 1 to recover")
    assert int(found.group(1)) == len(worker1_rows), (found.group(0), worker1_rows)
    assert "withdraw worker 0 found" not in cluster.log_text()[log_from:]
    # worker 0's exchanges are still held by the mock: untouched, one attempt each
    zero = cluster.sql("SELECT state, attempts FROM withdraw.withdrawal WHERE id = ANY (%s)", (worker0_rows,))
    assert all(r == ("sending", 1) for r in zero), zero
    # worker 1's went through 'unknown' with the recovery's reason
    reasons = cluster.sql("SELECT count(*) FROM withdraw.events WHERE withdrawal_id = ANY (%s)"
                          " AND from_state = 'sending' AND to_state = 'unknown'", (worker1_rows,))
    assert reasons[0][0] >= len(worker1_rows), reasons
    wait_all(ids, ["succeeded"], 60)
    assert_each_executed_once("restart", n)
    return (f"worker 1 recovered its {len(worker1_rows)} rows; worker 0's {len(worker0_rows)} stayed in flight;"
            " all paid once")


def test_zz_the_workers_carry_on_after_drop_and_create_extension():
    """Their kept plans and cached state name the old tables: after DROP and
    CREATE EXTENSION they must serve the new ones (runs last: it drops all)."""
    cluster.sql("DROP EXTENSION withdraw CASCADE")
    cluster.sql("CREATE EXTENSION withdraw")
    account, account_id, key = new_account({"create_interval_ms": 0, "polls_per_second": 0,
                                            "poll_interval_ms": 100, "max_in_flight": 16})
    ids = create_many(account, "recreated", 10)
    wait_all(ids, ["succeeded"])
    assert_each_executed_once("recreated", 10)
    attempts = cluster.value("SELECT count(*) FROM withdraw.attempts WHERE withdrawal_id = ANY (%s)", (ids,))
    events = cluster.value("SELECT count(*) FROM withdraw.events WHERE withdrawal_id = ANY (%s)", (ids,))
    assert attempts >= 20 and events >= 40, (attempts, events)
    by = claimers(ids)
    return f"10 paid once after the re-creation; {attempts} attempts, {events} events; claimed by {sorted(set(by.values()))}"


def main():
    run_suite("integration: two workers", globals(),
              {"zoomex": {"keys": KEYS, "create_interval_s": 0,
                          "status_schedule": [["Pending Transfer", 0.1]]}},
              settings={"withdraw.workers": "2"})


if __name__ == "__main__":
    main()
