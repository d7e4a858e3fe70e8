"""First figures for withdraw (issue 2): commit -> mock-received latency and
end-to-end withdrawals/s against the mock provider, each beside a baseline
measured in the same run on the same machine:

  * latency baseline: a plain HTTP POST from this process to the same mock
    (the network + mock floor the worker cannot beat);
  * throughput baseline: the mock's own capacity, driven by 8 keep-alive
    client threads with no database involved.

Usage: python3 bench/bench_dispatch.py [--latency-n 1000] [--throughput-n 2000]
(as an ordinary user; bench/run does the setup)."""

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "integration"))
from harness import Cluster, Mock, wait_until  # noqa: E402
from benchlib import durability_note, durability_settings  # noqa: E402


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def baseline_latency(mock, n):
    conn = http.client.HTTPConnection("127.0.0.1", mock.port)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", "/_mock/health")
        conn.getresponse().read()
        out.append((time.perf_counter() - t) * 1000)
    conn.close()
    return out


def baseline_throughput(mock, n, threads=8):
    per = n // threads

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", mock.port)
        for _ in range(per):
            conn.request("GET", "/_mock/health")
            conn.getresponse().read()
        conn.close()

    ts = [threading.Thread(target=run) for _ in range(threads)]
    t = time.perf_counter()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    return per * threads / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-n", type=int, default=1000)
    ap.add_argument("--throughput-n", type=int, default=2000)
    args = ap.parse_args()

    mock = Mock({"zoomex": {"keys": {"bench": "bench-secret"}, "create_interval_s": 0,
                            "status_schedule": [["Pending Transfer", 3600]]}})
    cluster = Cluster({"withdraw.naptime": "1000", "withdraw.poll_interval": "3600000",
                       "withdraw.max_in_flight": "64", "log_min_messages": "warning",
                       **durability_settings()}).start()
    try:
        cluster.sql("CREATE EXTENSION withdraw")
        cluster.wait_ready()
        cluster.sql("SELECT withdraw_account_create('bench', 'zoomex', %s, %s, %s)",
                    (mock.base_url("zoomex"), json.dumps({"api_key": "bench", "api_secret": "bench-secret"}),
                     json.dumps({"create_interval_ms": 0, "poll_interval_ms": 3600000})))
        time.sleep(1.2)   # past the worker's start-up interval

        # latency: one withdrawal per transaction, commit -> arrival at the mock
        conn = cluster.connect(autocommit=False)
        cur = conn.cursor()
        committed = {}
        for i in range(args.latency_n):
            key = f"lat{i}"
            cur.execute("SELECT withdraw_create('bench', %s)", (json.dumps(
                {"requestId": key, "coin": "USDT", "addressType": 3, "address": "1", "amount": "1"}),))
            conn.commit()
            committed[key] = time.time()
            # wait for it, so each measurement sees an idle worker
            deadline = time.time() + 5
            while mock.ledger()["executions"].get(key) is None and time.time() < deadline:
                time.sleep(0.0005)
        arrivals = {r["requestId"]: r["t"] for r in mock.requests() if "inner-create" in r["path"]}
        lat = [(arrivals[k] - t) * 1000 for k, t in committed.items() if k in arrivals]
        base = baseline_latency(mock, args.latency_n)

        # throughput: N withdrawals committed at once, until all are submitted
        cur.execute("SELECT withdraw_create('bench', json_build_object('requestId', 'tp' || g, 'coin', 'USDT',"
                    " 'addressType', 3, 'address', '1', 'amount', '1')::jsonb) FROM generate_series(1, %s) g",
                    (args.throughput_n,))
        conn.commit()
        t0 = time.perf_counter()
        try:
            wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.withdrawal WHERE state = 'submitted'"
                                             " AND idempotency_key LIKE 'tp%%'") == args.throughput_n,
                       120, 0.01, "all submitted")
        except AssertionError:
            print(cluster.sql("SELECT state, left(last_error, 100), count(*) FROM withdraw.withdrawal GROUP BY 1, 2"))
            raise
        elapsed = time.perf_counter() - t0
        rate = args.throughput_n / elapsed
        conn.close()
        base_rate = baseline_throughput(mock, args.throughput_n)

        print()
        print(f"{'figure':<46} {'withdraw':>10} {'baseline':>10} {'ratio':>7}")
        print(f"{'commit -> mock received, p50 (ms)':<46} {statistics.median(lat):>10.2f} "
              f"{statistics.median(base):>10.2f} {statistics.median(lat) / statistics.median(base):>7.1f}")
        print(f"{'commit -> mock received, p99 (ms)':<46} {pct(lat, 99):>10.2f} {pct(base, 99):>10.2f} "
              f"{pct(lat, 99) / pct(base, 99):>7.1f}")
        print(f"{'end-to-end withdrawals/s (to submitted)':<46} {rate:>10.0f} {base_rate:>10.0f} "
              f"{rate / base_rate:>7.2f}")
        print(f"\nlatency over {len(lat)} single-withdrawal transactions; throughput over {args.throughput_n}"
              f" withdrawals in one commit, max_in_flight 64; baselines: plain keep-alive HTTP to the same mock"
              f" (1 client for latency, 8 threads for throughput). {os.cpu_count()} cores, {durability_note()}.")
    finally:
        cluster.destroy()
        mock.stop()


if __name__ == "__main__":
    main()
