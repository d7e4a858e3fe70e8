"""Issue 8, figure 3: latency from COMMIT to the first byte at the sink, p50
and p99 over single-withdrawal transactions.

First byte: the Python mock of test/mock (as bench_dispatch.py), which stamps
time.time() when a request's headers have been read (microseconds).  nginx
cannot give this: a plain `return` location leaves $request_body empty
(nginx discards the body unread; Nginx.selftest checks it every run), and
with a proxy hop that makes nginx read and log the body, $msec and
$request_time have 1 ms resolution while the figure is well under 1 ms.

Against nginx (and the mock) the script also measures COMMIT -> the
worker's 'submitted' notification (LISTEN withdraw_status), i.e. the whole
round trip: claim, send, answer, outcome recorded and committed.

Each transaction is BEGIN; SELECT withdraw_create(...); COMMIT, timed from
the moment COMMIT is sent (so the commit's own work counts); the next one
starts only when the worker has recorded the answer, so every measurement
meets an idle worker.  Arrivals are matched by requestId.

Baselines, same run, same sink, same clock: plain keep-alive POSTs of a body
of the same size from this process: send -> arrival for the first byte,
send -> answer read for the round trip.

Production settings (fsync on, synchronous_commit on: the COMMIT waits for
its WAL flush); the mock's first-byte rows are measured again with fsync off
in the same cluster (issue 21).

Targets: p50 <= 5 ms, p99 <= 50 ms (first byte).

Usage: python3 bench/bench_latency.py [--quick] [--n 1000]
"""

import argparse
import http.client
import json
import os
import select
import time

from benchlib import (CREATE_PATH, DURABLE, HUGE_MS, Mock, Nginx, Table, bench_cluster, create_account,
                      durability_note, install_signal_handlers, log, median, pct, request_json, set_fsync)


def measure_withdraw(cluster, account, prefix, n):
    """n single-withdrawal transactions; returns {requestId: (COMMIT sent, COMMIT returned,
    'submitted' notification received)}."""
    listener = cluster.connect()
    listener.cursor().execute("LISTEN withdraw_status")
    conn = cluster.connect(autocommit=False)
    cur = conn.cursor()
    out = {}
    for i in range(n):
        key = f"{prefix}{i}"
        cur.execute("SELECT withdraw_create(%s, %s)", (account, request_json(key)))
        wid = cur.fetchone()[0]
        t0 = time.time()
        conn.commit()
        t1 = time.time()
        # wait until the worker has recorded the answer: it is idle again
        deadline = time.monotonic() + 10
        t2 = None
        while t2 is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"withdrawal {wid} ({key}) not submitted within 10 s")
            if select.select([listener], [], [], 1.0)[0]:
                listener.poll()
                while listener.notifies:
                    note = json.loads(listener.notifies.pop(0).payload)
                    if note.get("id") == wid and note.get("state") != "sending":
                        if note.get("state") != "submitted":
                            raise AssertionError(f"withdrawal {wid} went to {note}")
                        t2 = time.time()
        out[key] = (t0, t1, t2)
    conn.close()
    listener.close()
    return out


def baseline_posts(port, path, prefix, n):
    """{requestId: (send time, answer read)} of n sequential keep-alive POSTs of a
    create-sized body (unsigned: the mock logs it, then refuses it)."""
    body = json.loads(request_json("x"))
    body.update(api_key="nobody", timestamp=int(time.time() * 1000), recv_window=5000, sign="0" * 64)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    sent = {}
    for i in range(n):
        body["requestId"] = f"{prefix}{i}"
        data = json.dumps(body, separators=(",", ":"))
        t = time.time()
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        conn.getresponse().read()
        sent[body["requestId"]] = (t, time.time())
    conn.close()
    return sent


def first_byte_ms(sent, arrivals):
    out = [(arrivals[k] - t[0]) * 1000 for k, t in sent.items() if k in arrivals]
    if len(out) != len(sent):
        raise AssertionError(f"{len(sent) - len(out)} of {len(sent)} requests not found at the sink")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="200 transactions per sink")
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    if args.quick:
        args.n = 200
    install_signal_handlers()

    nginx = mock = cluster = None
    try:
        nginx = Nginx()
        plain_return_logs_body = nginx.selftest()
        mock = Mock({"zoomex": {"keys": {"bench": "bench-secret"}, "create_interval_s": 0,
                                "status_schedule": [["Pending Transfer", 3600]]}})
        cluster = bench_cluster()
        create_account(cluster, "ngx", nginx.base_url(), create_interval_ms=0, poll_interval_ms=HUGE_MS)
        create_account(cluster, "mck", mock.base_url("zoomex"), create_interval_ms=0, poll_interval_ms=HUGE_MS)
        time.sleep(0.3)

        log("warm-up")
        measure_withdraw(cluster, "ngx", "wn", 50)
        measure_withdraw(cluster, "mck", "wm", 50)

        log(f"mock: {args.n} transactions")
        w_mk = measure_withdraw(cluster, "mck", "lm", args.n)
        b_mk = baseline_posts(mock.port, CREATE_PATH, "bm", args.n)
        arrivals = {r["requestId"]: r["t"] for r in mock.requests() if r.get("requestId")}
        fb_mk = first_byte_ms(w_mk, arrivals)
        fb_base = first_byte_ms(b_mk, arrivals)
        log(f"nginx: {args.n} transactions")
        w_ng = measure_withdraw(cluster, "ngx", "ln", args.n)
        b_ng = baseline_posts(nginx.port, CREATE_PATH, "bn", args.n)

        # the mock's rows again with fsync off (issue 21), beside the production figures
        fb_off = w_off = None
        if DURABLE:
            log(f"mock, fsync off: {args.n} transactions")
            set_fsync(cluster, False)
            w_off = measure_withdraw(cluster, "mck", "om", args.n)
            set_fsync(cluster, True)
            arrivals = {r["requestId"]: r["t"] for r in mock.requests() if r.get("requestId")}
            fb_off = first_byte_ms(w_off, arrivals)

        rt = {name: [(t[2] - t[0]) * 1000 for t in w.values()] for name, w in (("nginx", w_ng), ("mock", w_mk))}
        rt_base = {name: [(t[1] - t[0]) * 1000 for t in b.values()] for name, b in (("nginx", b_ng),
                                                                                     ("mock", b_mk))}
        commit_rt = [(t[1] - t[0]) * 1000 for w in (w_ng, w_mk) for t in w.values()]

        t = Table(f"latency from COMMIT ({args.n:,} single-withdrawal transactions per sink)")
        t.add("COMMIT -> first byte at the mock, p50 (ms)", median(fb_mk), median(fb_base), fmt="{:.2f}",
              target="<= 5 ms", met=median(fb_mk) <= 5)
        t.add("COMMIT -> first byte at the mock, p99 (ms)", pct(fb_mk, 99), pct(fb_base, 99), fmt="{:.2f}",
              target="<= 50 ms", met=pct(fb_mk, 99) <= 50)
        t.add("COMMIT -> first byte at the mock, max (ms)", max(fb_mk), max(fb_base), fmt="{:.2f}")
        if fb_off:
            t.add("COMMIT -> first byte at the mock, fsync = off, p50 (ms)", median(fb_off), median(fb_base),
                  fmt="{:.2f}")
            t.add("COMMIT -> first byte at the mock, fsync = off, p99 (ms)", pct(fb_off, 99), pct(fb_base, 99),
                  fmt="{:.2f}")
        for name in ("nginx", "mock"):
            t.add(f"COMMIT -> 'submitted' recorded, {name}, p50 (ms)", median(rt[name]), median(rt_base[name]),
                  fmt="{:.2f}")
            t.add(f"COMMIT -> 'submitted' recorded, {name}, p99 (ms)", pct(rt[name], 99), pct(rt_base[name], 99),
                  fmt="{:.2f}")
        t.note("withdraw: from the moment COMMIT is sent. Baselines: a plain keep-alive POST of the same size "
               "from this process, from the moment it is sent (first byte: to its arrival at the mock; "
               "'submitted' rows: to its answer read back, the HTTP round trip alone). "
               f"The COMMIT round trip itself: p50 {median(commit_rt):.3f} ms, p99 {pct(commit_rt, 99):.3f} ms" +
               (f"; with fsync off: p50 {median([(t[1] - t[0]) * 1000 for t in w_off.values()]):.3f} ms, p99 "
                f"{pct([(t[1] - t[0]) * 1000 for t in w_off.values()], 99):.3f} ms." if w_off else ".") +
               f" {durability_note()}, except the fsync = off rows (same cluster, switched by reload).")
        t.note(f"$request_body under a plain nginx `return`: {'populated' if plain_return_logs_body else 'empty'}; "
               f"hence first byte is measured at the mock only. {os.cpu_count()} cores.")
        t.print()
    finally:
        if cluster:
            cluster.destroy()
        if mock:
            mock.stop()
        if nginx:
            nginx.stop()


if __name__ == "__main__":
    main()
