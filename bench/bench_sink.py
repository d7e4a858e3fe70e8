"""Issue 8, figure 2: dispatch throughput against an nginx sink, beside the
raw HTTP ceiling of the same nginx measured with wrk in the same run.

nginx (started here, own configuration in a temporary directory, 127.0.0.1,
keep-alive, keepalive_requests 1e8) answers the zoomex create path with a
canned success whose withdraw_id is nginx's unique $request_id.  The account
has create_interval_ms 0, status polls 24 h away, and an account in-flight
cap of 10000 so that withdraw.max_in_flight (set with ALTER SYSTEM +
pg_reload_conf) is what limits; one extra row keeps the account's default cap
(16) under withdraw.max_in_flight 64.

For each setting: the tables are emptied, N withdrawals are created in
transactions of 1,000 committed back to back, and the time from the first
COMMIT until none is queued or sending (all submitted, checked afterwards)
gives withdrawals/s (the creation of the later batches runs inside the
measured time, on the same 2 cores).  Extra rows at the largest setting:
all N in ONE transaction (so they share one next_attempt_at, as in
bench_dispatch.py); a backlog of N/10; the account's default cap of 16.
Baseline: wrk POSTing a create-sized body with the same headers over as
many keep-alive connections as the setting allows requests in flight.

pg_stat_statements (track = all) and auto_explain (statements over 1 ms) are
loaded, to report per row the worker's claim query and its costliest
statement.

Production settings (fsync on, synchronous_commit on; BENCH_FSYNC=off for
fsync off everywhere), plus two rows at the largest setting switched by
reload in the same cluster: fsync off, and withdraw.synchronous_outcomes off
(the commits that record answers do not wait for the flush; the claims'
commits still do).

Target: >= 10,000 withdrawals/s.

Usage: python3 bench/bench_sink.py [--quick] [--n 20000] [--in-flight 1,2,4,8,64]
       [--perf SECONDS]   (perf record of the worker during one extra run at the
                           largest setting; prints the hottest symbols)
"""

import argparse
import os
import re
import subprocess
import tempfile
import shutil
import time

from benchlib import (BENCH_WORKERS, CREATE_SERIES_SQL, DURABLE, HUGE_MS, Nginx, Table, bench_cluster, cpu_seconds,
                      create_account, durability_note, workers_cpu_seconds, workers_sent,
                      install_signal_handlers, log, set_fsync, set_guc, wait_drained, wrk)

TRUNCATE = "TRUNCATE withdraw.withdrawal, withdraw.attempt, withdraw.event RESTART IDENTITY CASCADE"


def create_backlog(cluster, n, prefix, batch=1000, one_transaction=False):
    """Creates n withdrawals, batch per statement: each batch its own transaction, committed
    back to back (the clock starts at the first COMMIT, so the creation of the later batches
    is inside the measured time), or all of them in one transaction.
    Returns the time when the first withdrawals became visible to the worker."""
    conn = cluster.connect(autocommit=not one_transaction)
    cur = conn.cursor()
    t0 = None
    try:
        for lo in range(1, n + 1, batch):
            cur.execute(CREATE_SERIES_SQL, ("sink", prefix, lo, min(n, lo + batch - 1)))
            if t0 is None and not one_transaction:
                t0 = time.perf_counter()
        if one_transaction:
            conn.commit()
            t0 = time.perf_counter()
    finally:
        conn.close()
    return t0


def dispatch_run(cluster, nginx, n, prefix, timeout, one_transaction=False):
    """Empties the tables, creates n withdrawals, waits until all are sent.
    Returns a dict of figures."""
    cluster.sql(TRUNCATE)
    cluster.sql("VACUUM ANALYZE withdraw.withdrawal")
    npids = nginx.pids()[1:]
    ncpu0 = sum(cpu_seconds(p) for p in npids)
    cpu0 = workers_cpu_seconds(cluster)
    sent0 = workers_sent(cluster)
    cluster.sql("SELECT pg_stat_statements_reset()")
    log_from = len(cluster.log_text())
    t0 = create_backlog(cluster, n, prefix, one_transaction=one_transaction)
    t1 = wait_drained(cluster, timeout)
    elapsed = t1 - t0
    cpu = workers_cpu_seconds(cluster) - cpu0
    ncpu = sum(cpu_seconds(p) for p in npids) - ncpu0
    states = dict(cluster.sql("SELECT state, count(*) FROM withdraw.withdrawal GROUP BY 1"))
    sent = workers_sent(cluster) - sent0
    if states.get("submitted", 0) != n:
        raise AssertionError(f"not all submitted: {states}; " + repr(cluster.sql(
            "SELECT state, left(last_error, 160), count(*) FROM withdraw.withdrawal"
            " WHERE state <> 'submitted' GROUP BY 1, 2")))
    claim = cluster.sql("SELECT calls, total_exec_time FROM pg_stat_statements"
                        " WHERE query LIKE 'SELECT w.id, w.account_id%%' AND query LIKE '%%ORDER BY w.next_attempt_at%%'")
    calls, claim_ms = claim[0] if claim else (0, 0.0)
    top = cluster.sql("SELECT calls, total_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 60)"
                      " FROM pg_stat_statements WHERE toplevel AND query NOT LIKE '%%generate_series%%'"
                      "   AND query NOT LIKE 'SELECT EXISTS%%' AND query NOT LIKE 'TRUNCATE%%'"
                      "   AND query NOT LIKE 'VACUUM%%' ORDER BY total_exec_time DESC LIMIT 1")
    return {"rate": n / elapsed, "elapsed": elapsed, "worker_cpu": cpu / elapsed, "nginx_cpu": ncpu / elapsed,
            "requests": sent, "claims": calls, "claim_share": claim_ms / 1000 / elapsed,
            "claim_mean": claim_ms / calls if calls else float("nan"), "plans": worker_plans(cluster, log_from),
            "top": (top[0][0], top[0][1] / top[0][0], top[0][1] / 1000 / elapsed, top[0][2]) if top else None}


def worker_plans(cluster, log_from):
    """Shapes of the worker's create-claim plans slower than 1 ms (auto_explain) since
    log_from: {shape: count}, shape = the scan on withdrawal and the sort above it."""
    shapes = {}
    for chunk in cluster.log_text()[log_from:].split("duration: ")[1:]:
        if "Query Text: SELECT w.id" not in chunk[:400] or "ORDER BY w.next_attempt_at" not in chunk[:1200]:
            continue
        plan = chunk.split("CONTEXT:")[0]
        scan = re.search(r"(Seq Scan|Bitmap Heap Scan|Index Scan using \w+|Index Only Scan using \w+)"
                         r" on withdrawal", plan)
        sort = re.search(r"(Incremental Sort|Sort)  \(", plan)
        shape = (scan.group(1) if scan else "?") + (" + " + sort.group(1) if sort else "")
        shapes[shape] = shapes.get(shape, 0) + 1
    return shapes


def describe(r):
    plans = ", ".join(f"{k} x{v}" for k, v in r["plans"].items()) or "none over 1 ms"
    return (f"{r['elapsed']:.2f} s, worker {r['worker_cpu']:.2f} cores, nginx {r['nginx_cpu']:.2f}; "
            f"{r['claims']} claims, mean {r['claim_mean']:.2f} ms, {100 * r['claim_share']:.0f}% of the time; "
            f"claim plans: {plans}" +
            (f"; costliest statement: {r['top'][3]}... x{r['top'][0]}, mean {r['top'][1]:.2f} ms, "
             f"{100 * r['top'][2]:.0f}% of the time" if r["top"] else ""))


def perf_profile(cluster, nginx, n, seconds):
    """perf record -g of the worker during one dispatch; the top of perf report."""
    d = tempfile.mkdtemp(prefix="withdraw-perf-")
    try:
        cluster.sql(TRUNCATE)
        wpids = ",".join(str(p) for (p,) in cluster.sql("SELECT pid FROM withdraw.workers"))
        conn = cluster.connect(autocommit=False)
        for lo in range(1, n + 1, 1000):
            conn.cursor().execute(CREATE_SERIES_SQL, ("sink", "perf", lo, min(n, lo + 999)))
        data = os.path.join(d, "perf.data")
        rec = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-o", data, "-p", wpids, "--",
                                "sleep", str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.3)
        conn.commit()
        conn.close()
        rec.wait(seconds + 30)
        rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol",
                              "--stdio", "-g", "none", "--percent-limit", "0.7"],
                             capture_output=True, text=True, timeout=120)
        lines = [x for x in rep.stdout.splitlines() if x.strip() and not x.startswith("#")]
        dsos = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso", "--stdio",
                               "-g", "none"], capture_output=True, text=True, timeout=120)
        dlines = [x for x in dsos.stdout.splitlines() if x.strip() and not x.startswith("#")][:12]
        return lines[:40], dlines, rec.stderr.read().decode()[-300:] if rec.returncode else ""
    finally:
        shutil.rmtree(d, ignore_errors=True)


def sink_cluster(nginx, workers=BENCH_WORKERS):
    """A cluster with the sink account (no create interval, polls a day away,
    cap 10000), warmed up with 2,000 withdrawals."""
    cluster = bench_cluster({"shared_preload_libraries": "'withdraw,pg_stat_statements,auto_explain'",
                             "pg_stat_statements.track": "all",
                             "auto_explain.log_min_duration": "'1ms'",
                             "auto_explain.log_nested_statements": "on"}, workers=workers)
    cluster.sql("CREATE EXTENSION pg_stat_statements")
    create_account(cluster, "sink", nginx.base_url(), create_interval_ms=0, poll_interval_ms=HUGE_MS,
                   max_in_flight=10000)
    time.sleep(0.3)
    log(f"warm-up, withdraw.workers {workers}")
    dispatch_run(cluster, nginx, 2000, "warm", 120)
    return cluster


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5,000 withdrawals, settings 1, 8, 64, 2 s of wrk")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--in-flight", default="1,2,4,8,16,64")
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--perf", type=int, default=0, metavar="SECONDS")
    args = ap.parse_args()
    if args.quick:
        args.n, args.in_flight, args.wrk_seconds = 5000, "1,8,64", 2
    settings = [int(x) for x in args.in_flight.split(",")]
    install_signal_handlers()

    nginx = cluster = None
    try:
        nginx = Nginx()
        body_logged = nginx.selftest()
        cluster = sink_cluster(nginx)

        results = {}
        for k in settings:
            set_guc(cluster, "withdraw.max_in_flight", k)
            results[k] = dispatch_run(cluster, nginx, args.n, f"k{k}x", 600)
            results[k]["wrk"] = wrk(nginx.url + "/zoomex/private/v1/asset/withdraw/inner-create", k,
                                    args.wrk_seconds)
            r = results[k]
            log(f"max_in_flight {k}: {r['rate']:.0f}/s in {r['elapsed']:.2f}s, worker {r['worker_cpu']:.2f} "
                f"cores, nginx {r['nginx_cpu']:.2f} cores; wrk -c{k} {r['wrk']:.0f} req/s")

        # all N in one transaction: every row has the same next_attempt_at
        cap = max(settings)
        set_guc(cluster, "withdraw.max_in_flight", cap)

        # the largest setting again with fsync off (issue 21): beside the production figure
        nofsync = None
        if DURABLE:
            set_fsync(cluster, False)
            nofsync = dispatch_run(cluster, nginx, args.n, "nofsync", 600)
            set_fsync(cluster, True)
            nofsync["wrk"] = results[cap]["wrk"]
            log(f"max_in_flight {cap}, fsync off: {nofsync['rate']:.0f}/s, worker {nofsync['worker_cpu']:.2f} cores")

        # the largest setting with the outcomes' commits not waiting for the
        # flush (withdraw.synchronous_outcomes off; the claims' still wait)
        asyncout = None
        if DURABLE:
            set_guc(cluster, "withdraw.synchronous_outcomes", "off")
            asyncout = dispatch_run(cluster, nginx, args.n, "asyncout", 600)
            set_guc(cluster, "withdraw.synchronous_outcomes", "on")
            asyncout["wrk"] = results[cap]["wrk"]
            log(f"max_in_flight {cap}, synchronous_outcomes off: {asyncout['rate']:.0f}/s, "
                f"worker {asyncout['worker_cpu']:.2f} cores")

        one = dispatch_run(cluster, nginx, args.n, "one", 900, one_transaction=True)
        one["wrk"] = results[cap]["wrk"]
        log(f"max_in_flight {cap}, one transaction: {one['rate']:.0f}/s, worker {one['worker_cpu']:.2f} cores")

        # a tenth of the backlog: the claim's cost grows with the backlog
        small = dispatch_run(cluster, nginx, args.n // 10, "small", 900)
        small["wrk"] = results[cap]["wrk"]
        log(f"max_in_flight {cap}, backlog {args.n // 10}: {small['rate']:.0f}/s")

        # the account's default in-flight cap (16) under withdraw.max_in_flight 64
        cluster.sql("SELECT withdraw_account_update('sink', options => %s)",
                    (f'{{"create_interval_ms": 0, "poll_interval_ms": {HUGE_MS}}}',))
        time.sleep(0.3)
        capped = dispatch_run(cluster, nginx, args.n, "cap", 600)
        capped["wrk"] = wrk(nginx.url + "/zoomex/private/v1/asset/withdraw/inner-create", 16, args.wrk_seconds)
        log(f"max_in_flight {cap}, account cap 16: {capped['rate']:.0f}/s, worker {capped['worker_cpu']:.2f} cores")

        # the same as the largest setting with one worker: what the second one brings
        cluster.destroy()
        cluster = sink_cluster(nginx, workers=1)
        set_guc(cluster, "withdraw.max_in_flight", cap)
        single = dispatch_run(cluster, nginx, args.n, "single", 600)
        single["wrk"] = results[cap]["wrk"]
        log(f"max_in_flight {cap}, withdraw.workers 1: {single['rate']:.0f}/s, worker {single['worker_cpu']:.2f} cores")
        cluster.destroy()
        cluster = sink_cluster(nginx) if args.perf else None

        profile = None
        if args.perf:
            cluster.sql("SELECT withdraw_account_update('sink', options => %s)",
                        (f'{{"create_interval_ms": 0, "poll_interval_ms": {HUGE_MS}, "max_in_flight": 10000}}',))
            profile = perf_profile(cluster, nginx, args.n, args.perf)

        t = Table(f"dispatch throughput to an nginx sink ({args.n:,} withdrawals per row) vs wrk on the same nginx")
        for k in settings:
            r = results[k]
            t.add(f"withdrawals/s, withdraw.max_in_flight {k} (baseline: wrk -c{k})", r["rate"], r["wrk"],
                  target=">= 10,000 /s", met=r["rate"] >= 10000)
        if nofsync:
            t.add(f"withdrawals/s, max_in_flight {cap}, fsync = off (wrk -c{cap})", nofsync["rate"], nofsync["wrk"],
                  target=">= 10,000 /s", met=nofsync["rate"] >= 10000)
        if asyncout:
            t.add(f"withdrawals/s, max_in_flight {cap}, withdraw.synchronous_outcomes = off (wrk -c{cap})",
                  asyncout["rate"], asyncout["wrk"], target=">= 10,000 /s", met=asyncout["rate"] >= 10000)
        t.add(f"withdrawals/s, max_in_flight {cap}, all {args.n:,} in ONE transaction (wrk -c{cap})", one["rate"],
              one["wrk"], target=">= 10,000 /s", met=one["rate"] >= 10000)
        t.add(f"withdrawals/s, max_in_flight {cap}, backlog {args.n // 10:,} instead of {args.n:,} (wrk -c{cap})",
              small["rate"], small["wrk"], target=">= 10,000 /s", met=small["rate"] >= 10000)
        t.add(f"withdrawals/s, max_in_flight {cap}, account cap 16 (default) (wrk -c16)", capped["rate"],
              capped["wrk"], target=">= 10,000 /s", met=capped["rate"] >= 10000)
        t.add(f"withdrawals/s, max_in_flight {cap}, withdraw.workers 1 (wrk -c{cap})", single["rate"],
              single["wrk"], target=">= 10,000 /s", met=single["rate"] >= 10000)
        t.add(f"withdraw.workers {BENCH_WORKERS} vs 1 at max_in_flight {cap} (withdrawals/s)", results[cap]["rate"],
              single["rate"])
        best = max(settings, key=lambda k: results[k]["rate"])
        t.note("Per row: time from the first COMMIT to all sent, CPU, the worker's create claims "
               "(pg_stat_statements: count, mean, share of the elapsed time), the shapes of those over 1 ms "
               "(auto_explain), and the costliest top-level statement:\n" +
               "\n".join(f"  max_in_flight {k}: {describe(results[k])}" for k in settings) +
               (f"\n  fsync off: {describe(nofsync)}" if nofsync else "") +
               (f"\n  synchronous_outcomes off: {describe(asyncout)}" if asyncout else "") +
               f"\n  one transaction: {describe(one)}\n  backlog {args.n // 10:,}: {describe(small)}"
               f"\n  account cap 16: {describe(capped)}\n  withdraw.workers 1: {describe(single)}")
        t.note(f"Best: {results[best]['rate']:,.0f} withdrawals/s at max_in_flight {best}. wrk: 1 thread, POST "
               f"of a create-sized body with the X-BAPI headers, {args.wrk_seconds} s. nginx: 1 worker process. "
               f"withdraw.workers {BENCH_WORKERS} except where a row says otherwise (CPU: all workers). "
               f"{os.cpu_count()} cores shared by the workers, nginx, PostgreSQL and wrk. "
               f"$request_body in a plain `return` location: {'populated' if body_logged else 'empty'}. "
               f"{durability_note()} except the fsync = off and synchronous_outcomes = off rows (same cluster, "
               f"switched by reload).")
        t.print()
        if profile:
            syms, dsos, err = profile
            print(f"perf record -g -p <worker> during one run of {args.n:,} at max_in_flight {cap} "
                  f"(self time, >= 0.7%):")
            print("\n".join(syms))
            print("\nby DSO:")
            print("\n".join(dsos))
            if err:
                print(err)
    finally:
        if cluster:
            cluster.destroy()
        if nginx:
            nginx.stop()


if __name__ == "__main__":
    main()
