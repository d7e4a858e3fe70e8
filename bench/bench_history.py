"""Issue 8, figure 4: does history slow the worker down?

withdraw.withdrawal is filled, as superuser, with terminal rows (state
'succeeded', unique provider_id, finished) — 0, 10k, 100k, 1M (the last
unless --quick) — and at each size:

  * the worker's claim queries (copied from src/store.c, prepared like the
    worker's kept plans, generic plan forced as after the plan cache's
    first five executions) are run under EXPLAIN (ANALYZE, BUFFERS):
      - nothing due: the steady state between bursts;
      - with a backlog of N queued withdrawals, created in the same
        transaction (so the worker cannot take them; rolled back after),
        i.e. N rows sharing one next_attempt_at;
    and the plan must stay index-driven (no Seq Scan on withdrawal);
  * N withdrawals are then created in transactions of 1,000 and dispatched
    to the nginx sink exactly as in bench_sink.py (withdraw.max_in_flight
    64): withdrawals/s, and the mean time of the worker's own claim query
    during the run, from pg_stat_statements (track = all, loaded for this
    benchmark only).

Baseline: the same figures at history 0, in the same run.  Target (ours,
the issue names none): throughput >= 0.8x the empty table's, and the claim
index-driven at every size.

Usage: python3 bench/bench_history.py [--quick] [--n 20000] [--sizes 10000,100000,1000000]
"""

import argparse
import os
import time

from bench_sink import create_backlog, worker_plans
from benchlib import (CREATE_SERIES_SQL, HUGE_MS, Nginx, Table, bench_cluster, create_account, durability_note,
                      install_signal_handlers, log, set_guc, wait_drained)

# the worker's claim queries, read from the extension (withdraw._claim_query)
KINDS = ("create", "status")

HISTORY_SQL = """
INSERT INTO withdraw.withdrawal (account_id, idempotency_key, request, asset, amount, destination, state,
    provider_status, provider_id, attempts, created_by, created_at, updated_at, first_sent_at, submitted_at,
    finished_at, next_attempt_at, next_poll_at, finished_state)
SELECT a.id, 'hist' || g,
       jsonb_build_object('requestId', 'hist' || g, 'coin', 'USDT', 'addressType', 3, 'address', '100200',
                          'amount', '1.25', 'remark', 'history'),
       'USDT', 1.25, '100200', 'succeeded', 'Transferred successfully', 'prov-hist-' || g, 1, 'postgres',
       t, t, t, t, t + interval '5 minutes', t, NULL, 'succeeded'
FROM withdraw.account a, generate_series(%s, %s) g,
     LATERAL (SELECT now() - interval '30 days' + g * interval '1 second') AS x(t)
WHERE a.name = 'sink'
"""


def explain(cur, kind):
    """(execution ms, plan text, index-driven?) of the generic plan of a candidate query."""
    cur.execute(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE cand_{kind}('{{}}', 64)")
    lines = [r[0] for r in cur.fetchall()]
    ms = float([x for x in lines if x.startswith("Execution Time")][0].split()[2])
    seq = any("Seq Scan on withdrawal" in x for x in lines)
    return ms, lines, not seq


def prepare(cur):
    """The worker's claim queries as prepared statements (they outlive a rollback)."""
    for kind in KINDS:
        cur.execute("SELECT withdraw._claim_query(%s)", (kind,))
        cur.execute(f"PREPARE cand_{kind}(int[], int) AS {cur.fetchone()[0]}")


def step(cluster, size, n, prefix):
    figures = {}
    conn = cluster.connect(autocommit=False)
    cur = conn.cursor()
    prepare(cur)
    cur.execute("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; SET jit = off")  # as the worker plans it
    for kind in KINDS:
        figures[f"idle_{kind}"] = explain(cur, kind)
    conn.rollback()
    cur.execute("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; SET jit = off")  # as the worker plans it
    for lo in range(1, n + 1, 5000):
        cur.execute(CREATE_SERIES_SQL, ("sink", prefix, lo, min(n, lo + 4999)))
    for kind in KINDS:
        figures[f"backlog_{kind}"] = explain(cur, kind)
    conn.rollback()
    conn.close()
    cluster.sql("SELECT pg_stat_statements_reset()")
    log_from = len(cluster.log_text())
    t0 = create_backlog(cluster, n, prefix)
    t1 = wait_drained(cluster, 900)
    figures["plans"] = worker_plans(cluster, log_from)
    figures["rate"] = n / (t1 - t0)
    rows = cluster.sql("SELECT calls, mean_exec_time FROM pg_stat_statements"
                       " WHERE query LIKE 'SELECT w.id, w.account_id%%' AND query LIKE '%%ORDER BY w.next_attempt_at%%'"
                       " ORDER BY calls DESC LIMIT 1")
    figures["claim_calls"], figures["claim_mean_ms"] = rows[0] if rows else (0, float("nan"))
    submitted = cluster.value("SELECT count(*) FROM withdraw.withdrawal WHERE idempotency_key LIKE %s",
                              (prefix + "%",))
    states = dict(cluster.sql("SELECT state, count(*) FROM withdraw.withdrawal WHERE idempotency_key LIKE %s"
                              " GROUP BY 1", (prefix + "%",)))
    if states.get("submitted") != n:
        raise AssertionError(f"history {size}: not all submitted: {states} of {submitted}")
    # the run's rows go away, so that the next size differs only by its history
    cluster.sql("DELETE FROM withdraw.withdrawal WHERE idempotency_key LIKE %s", (prefix + "%",))
    cluster.sql("VACUUM ANALYZE withdraw.withdrawal")
    return figures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="history 10k and 100k, backlog 5,000")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    args = ap.parse_args()
    if args.quick:
        args.n, args.sizes = 5000, "10000,100000"
    sizes = [0] + [int(x) for x in args.sizes.split(",")]
    install_signal_handlers()

    nginx = cluster = None
    try:
        nginx = Nginx()
        cluster = bench_cluster({"shared_preload_libraries": "'withdraw,pg_stat_statements,auto_explain'",
                                 "pg_stat_statements.track": "all",
                                 "auto_explain.log_min_duration": "'1ms'",
                                 "auto_explain.log_nested_statements": "on"})
        cluster.sql("CREATE EXTENSION pg_stat_statements")
        create_account(cluster, "sink", nginx.base_url(), create_interval_ms=0, poll_interval_ms=HUGE_MS,
                       max_in_flight=10000)
        set_guc(cluster, "withdraw.max_in_flight", 64)
        log("warm-up")
        step(cluster, 0, 2000, "warm")

        results = {}
        have = 0
        for size in sizes:
            if size > have:
                t = time.perf_counter()
                for lo in range(have + 1, size + 1, 200000):
                    cluster.sql(HISTORY_SQL, (lo, min(size, lo + 199999)))
                cluster.sql("VACUUM ANALYZE withdraw.withdrawal")
                log(f"history {size:,} rows inserted in {time.perf_counter() - t:.1f} s")
                have = size
            results[size] = step(cluster, size, args.n, f"h{size}x")
            r = results[size]
            log(f"history {size:,}: {r['rate']:.0f}/s, claim mean {r['claim_mean_ms']:.3f} ms over "
                f"{r['claim_calls']} calls; EXPLAIN idle {r['idle_create'][0]:.3f} ms, "
                f"backlog {r['backlog_create'][0]:.3f} ms")
        size_mb = cluster.value("SELECT pg_total_relation_size('withdraw.withdrawal') / 1048576")

        base = results[0]
        t = Table(f"history: terminal rows already in withdraw.withdrawal (backlog {args.n:,} per size, "
                  f"max_in_flight 64, nginx sink); baseline = empty history, same run")
        for size in sizes[1:]:
            r = results[size]
            t.add(f"withdrawals/s, history {size:,}", r["rate"], base["rate"], target=">= 0.80x (ours)",
                  met=r["rate"] >= 0.8 * base["rate"])
            t.add(f"worker's claim query, mean during the run (ms), history {size:,}", r["claim_mean_ms"],
                  base["claim_mean_ms"], fmt="{:.3f}")
            for kind in ("create", "status"):
                for cond in ("idle", "backlog"):
                    ms, _, index_driven = r[f"{cond}_{kind}"]
                    t.add(f"EXPLAIN ANALYZE {kind} claim, {'nothing due' if cond == 'idle' else 'backlog queued'}"
                          f" (ms), history {size:,}", ms, base[f"{cond}_{kind}"][0], fmt="{:.3f}",
                          target="index scan", met=index_driven)
        t.note("The worker's own create-claim plans slower than 1 ms during each run (auto_explain), by shape: " +
               "; ".join(f"history {size:,}: " + (", ".join(f"{k} x{v}" for k, v in results[size]["plans"].items())
                                                  or "none over 1 ms") for size in sizes) + ".")
        t.note(f"EXPLAIN rows: generic plans (plan_cache_mode = force_generic_plan), $3 = 64. History rows: withdrawals only "
               f"(no attempts or events), VACUUM ANALYZE after loading; withdraw.withdrawal at the end: "
               f"{size_mb:,} MB with indexes. {os.cpu_count()} cores, {durability_note()}.")
        t.print()
        big = max(sizes)
        for cond in ("idle", "backlog"):
            print(f"Plan of the create claim, history {big:,}, {'nothing due' if cond == 'idle' else 'backlog'}:")
            print("    " + "\n    ".join(results[big][f"{cond}_create"][1]))
            print()
    finally:
        if cluster:
            cluster.destroy()
        if nginx:
            nginx.stop()


if __name__ == "__main__":
    main()
