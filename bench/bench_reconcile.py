"""Issue 8, item 5: reconciliation at scale - N open withdrawals (100,000 by
default) brought to their final state through batched status calls against
the mock provider, beside what the mock alone answers in the same run.

The provider is ccpayment v1, whose bill/info answers for up to 100 merchant
order ids in one call (the mock, test/mock/ccpayment.py, a separate Python
process on 127.0.0.1).  Setup, not measured: the account gets status polls
24 h away, N withdrawals are created and sent through the worker (the mock
executes each; its records settle at once), and the figure of that phase is
printed for information.  Then every row is made due at once (one UPDATE of
next_poll_at) and the clock runs until all N are succeeded: that is the
reconciliation.  Calls are the mock's request counter over that time.

Baseline: the same mock answering bill/info calls of 100 ids from this
script, one after the other over one keep-alive connection, signed here by
the documented v1 rule (its own code, not the extension's); its rate times
the calls withdraw made is the time the mock alone needs for them.

Target: <= 60 s for 100,000, and report the calls made.

Usage: python3 bench/bench_reconcile.py [--quick] [--n 100000]
"""

import argparse
import hashlib
import http.client
import json
import os
import sys
import time

from benchlib import HUGE_MS, Table, bench_cluster, install_signal_handlers, log

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "integration"))
from harness import Mock, wait_until  # noqa: E402

APP, SECRET = "bench-app", "bench-secret"
TOKEN = "8e5741cf-6e51-4892-9d04-3d40e1dd0128"
CREATE_SQL = ("SELECT count(withdraw_create('recon', json_build_object('merchant_order_id', 'r' || g,"
              " 'address', '0xabc0000000000000000000000000000000000001', 'token_id', %s,"
              " 'value', '1.5')::jsonb)) FROM generate_series(%s, %s) g")


def count(cluster, state):
    return cluster.value("SELECT count(*) FROM withdraw.withdrawal WHERE state = %s", (state,))


def create_and_send(cluster, n, batch=5000):
    t0 = time.perf_counter()
    for lo in range(1, n + 1, batch):
        cluster.sql(CREATE_SQL, (TOKEN, lo, min(n, lo + batch - 1)))
    wait_until(lambda: count(cluster, "submitted") == n, 3600, 0.5,
               f"{n} withdrawals to be submitted")
    return n / (time.perf_counter() - t0)


def reconcile(cluster, mock, n):
    calls0 = mock.stats("ccpayment")["requests"]
    cluster.sql("UPDATE withdraw.withdrawal SET next_poll_at = now() WHERE state = 'submitted'")
    t0 = time.perf_counter()
    wait_until(lambda: count(cluster, "succeeded") == n, 3600, 0.1, f"{n} withdrawals to succeed")
    seconds = time.perf_counter() - t0
    calls = mock.stats("ccpayment")["requests"] - calls0
    largest = cluster.value("SELECT max(jsonb_array_length((request_body::jsonb)->'merchant_order_ids'))"
                            " FROM withdraw.attempts WHERE kind = 'status'")
    polls = cluster.value("SELECT count(*) FROM withdraw.attempts WHERE kind = 'status'")
    return seconds, calls, largest, polls


def mock_alone(mock, n_calls, ids_per_call, n):
    """bill/info calls of ids_per_call existing orders, back to back; returns calls/s."""
    conn = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=30)
    try:
        t0 = time.perf_counter()
        for i in range(n_calls):
            lo = (i * ids_per_call) % max(1, n - ids_per_call) + 1
            body = json.dumps({"merchant_order_ids": [f"r{g}" for g in range(lo, lo + ids_per_call)]})
            ts = str(int(time.time()))
            sign = hashlib.sha256((APP + SECRET + ts + body).encode()).hexdigest()
            conn.request("POST", "/ccpayment/ccpayment/v1/bill/info", body,
                         {"Appid": APP, "Timestamp": ts, "Sign": sign, "Content-Type": "application/json"})
            answer = json.loads(conn.getresponse().read())
            assert answer.get("code") == 10000 and len(answer["data"]) == ids_per_call, answer
        return n_calls / (time.perf_counter() - t0)
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None)
    args = ap.parse_args()
    n = args.n or (10000 if args.quick else 100000)
    install_signal_handlers()

    mock = Mock({"ccpayment": {"apps": {APP: {"secret": SECRET, "webhook_url": None}},
                               "settle_after_s": 0, "processing_after_s": 0, "rate_limit_per_s": None}})
    cluster = bench_cluster({"withdraw.naptime": "200"})
    try:
        cluster.sql("SELECT withdraw_account_create('recon', 'ccpayment', %s, %s, %s)",
                    (mock.base_url("ccpayment"), json.dumps({"app_id": APP, "app_secret": SECRET}),
                     json.dumps({"api_version": 1, "poll_interval_ms": HUGE_MS, "max_in_flight": 64,
                                 "polls_per_second": 0, "create_interval_ms": 0})))
        log(f"creating and sending {n:,} withdrawals (setup)")
        create_rate = create_and_send(cluster, n)
        log(f"reconciling {n:,} open withdrawals")
        seconds, calls, largest, polls = reconcile(cluster, mock, n)
        baseline_rate = mock_alone(mock, min(calls, 200), 100, n)
        baseline_s = calls / baseline_rate

        table = Table(f"Reconciliation at scale: {n:,} open ccpayment v1 withdrawals, batched bill/info polls")
        table.add("time to reconcile all (s)", seconds, baseline_s, target="<= 60 s (100k)",
                  met=seconds <= 60 * n / 100000, fmt="{:,.1f}")
        table.add("withdrawals reconciled per s", n / seconds, baseline_rate * 100, ratio="auto")
        table.add("bill/info calls made", calls, n / 100, ratio="auto")
        table.note(f"baseline: the mock alone answering {min(calls, 200)} bill/info calls of 100 ids back to "
                   f"back ({baseline_rate:,.1f} calls/s) times the calls withdraw made; calls baseline = "
                   f"N / 100, the fewest possible")
        table.note(f"{polls:,} poll attempts recorded, at most {largest} ids in one call; setup sent the "
                   f"{n:,} creates at {create_rate:,.0f}/s")
        table.print()
    finally:
        cluster.destroy()
        mock.stop()


if __name__ == "__main__":
    main()
