"""Issue 8, figure 1: the cost of withdraw_create beside a plain INSERT.

pgbench runs, in the same cluster and the same run, alternately:

  withdraw  SELECT withdraw_create('sink', <zoomex request>)      one per transaction
  baseline  INSERT INTO bench_plain.withdrawal (...) VALUES (...) RETURNING id

with the same clients, threads and duration.  bench_plain.withdrawal is
CREATE TABLE (LIKE withdraw.withdrawal INCLUDING ALL): the same columns,
defaults, identity primary key, CHECKs, UNIQUE (account_id, idempotency_key)
and the partial indexes, plus the same foreign key to a copy of the account
table.  Each call carries a unique requestId built from pgbench's
:client_id and a random 50-bit number, and the same request JSON on both
sides (the baseline stores it as jsonb too).

Two phases, each with its own baseline runs:

  A  as deployed.  The worker must not send during the run: the account has
     create_interval_ms = 24 h (the maximum), so the worker, woken by every
     commit, only runs its claim and finds the account rate-limited.  Its
     CPU time is reported: it is part of what withdraw_create costs the
     server (the claim's time comes from pg_stat_statements).
  B  the function alone: the worker is made to serve another database
     (withdraw.database_name = template1, restart), so a wake costs nothing.

Production settings (fsync on, synchronous_commit on: each call's COMMIT
waits for its WAL flush, on both sides); phase A is run again with fsync
off in the same cluster, beside it (issue 21).

Target: cost per call (mean latency) <= 1.3x the plain INSERT.

Usage: python3 bench/bench_create.py [--quick] [--seconds 10] [--rounds 2] [--clients 1,4]
"""

import argparse
import os
import re
import shutil
import subprocess
import tempfile

from benchlib import (DURABLE, HUGE_MS, Table, bench_cluster, create_account, durability_note,
                      install_signal_handlers, set_fsync, workers_cpu_seconds, workers_sent, log, median)

REQUEST_EXPR = ("('{\"requestId\":\"c' || :client_id || 'r' || :k || '\",\"coin\":\"USDT\",\"addressType\":3,"
                "\"address\":\"100200\",\"amount\":\"1.25\",\"remark\":\"bench\"}')::jsonb")

SCRIPTS = {
    "withdraw": "\\set k random(1, 1125899906842624)\n"
                f"SELECT withdraw_create('sink', {REQUEST_EXPR});\n",
    "baseline": "\\set k random(1, 1125899906842624)\n"
                "INSERT INTO bench_plain.withdrawal (account_id, idempotency_key, request, asset, amount,"
                " destination, created_by)"
                f" VALUES (1, 'c' || :client_id || 'r' || :k, {REQUEST_EXPR}, 'USDT', '1.25', '100200',"
                " current_user) RETURNING id;\n",
}

PLAIN_DDL = """
CREATE SCHEMA bench_plain;
CREATE TABLE bench_plain.account (LIKE withdraw.account INCLUDING ALL);
INSERT INTO bench_plain.account (name, provider, base_url)
    SELECT name, provider, base_url FROM withdraw.account WHERE name = 'sink';
CREATE TABLE bench_plain.withdrawal (LIKE withdraw.withdrawal INCLUDING ALL);
ALTER TABLE bench_plain.withdrawal ADD FOREIGN KEY (account_id) REFERENCES bench_plain.account;
"""


def pgbench(cluster, script_path, clients, threads, seconds):
    """Returns (tps, mean latency ms, transactions, failed)."""
    cmd = [os.path.join(cluster.bindir, "pgbench"), "-n", "-M", "prepared", "-h", cluster.dir,
           "-p", str(cluster.port), "-U", "postgres", "-c", str(clients), "-j", str(threads),
           "-T", str(seconds), "-f", script_path, "postgres"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError("pgbench failed:\n" + out.stdout + out.stderr)
    tps = float(re.search(r"tps = ([\d.]+)", out.stdout).group(1))
    lat = float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1))
    done = int(re.search(r"number of transactions actually processed: (\d+)", out.stdout).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    return tps, lat, done, int(failed.group(1)) if failed else 0


def run_phase(cluster, paths, clients_list, rounds, seconds):
    """Alternating withdraw/baseline pgbench runs; {(clients, side): [(tps, lat, n, failed)]},
    {(clients, side): [worker cores]}."""
    log("warm-up")
    for name in ("withdraw", "baseline"):
        pgbench(cluster, paths[name], 2, 2, 2)
    results, worker_cpu = {}, {}
    for clients in clients_list:
        threads = min(clients, os.cpu_count() or 1)
        for r in range(rounds):
            # alternate the order so a noisy neighbour hits both sides alike
            order = ("withdraw", "baseline") if r % 2 == 0 else ("baseline", "withdraw")
            for name in order:
                cpu0 = workers_cpu_seconds(cluster)
                res = pgbench(cluster, paths[name], clients, threads, seconds)
                worker_cpu.setdefault((clients, name), []).append((workers_cpu_seconds(cluster) - cpu0) / seconds)
                results.setdefault((clients, name), []).append(res)
                log(f"{clients} clients, {name}: {res[0]:.0f} tps, {res[1]:.3f} ms, failed {res[3]}")
    return results, worker_cpu


def add_rows(t, label, results, worker_cpu, clients_list):
    for clients in clients_list:
        w = results[(clients, "withdraw")]
        b = results[(clients, "baseline")]
        wl, bl = median([x[1] for x in w]), median([x[1] for x in b])
        t.add(f"{label}: cost per call (mean latency), {clients} client(s) (ms)", wl, bl, fmt="{:.3f}",
              target="<= 1.30x", met=wl / bl <= 1.3)
        t.add(f"{label}: calls/s, {clients} client(s)", median([x[0] for x in w]), median([x[0] for x in b]))
        t.add(f"{label}: worker CPU, {clients} client(s) (cores)", median(worker_cpu[(clients, "withdraw")]),
              median(worker_cpu[(clients, "baseline")]), fmt="{:.2f}", ratio=None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5 s runs, one round, 4 clients only")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="alternating withdraw/baseline rounds")
    ap.add_argument("--clients", default="1,4", help="client counts, comma-separated")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.clients = 5, 1, "4"
    clients_list = [int(c) for c in args.clients.split(",")]
    install_signal_handlers()

    tmp = tempfile.mkdtemp(prefix="withdraw-bench-create-")
    cluster = None
    try:
        cluster = bench_cluster({"shared_preload_libraries": "'withdraw,pg_stat_statements'"})
        cluster.sql("CREATE EXTENSION pg_stat_statements")
        # the worker only looks: 24 h between creates of this account
        create_account(cluster, "sink", "http://127.0.0.1:9/zoomex", create_interval_ms=HUGE_MS,
                       poll_interval_ms=HUGE_MS)
        for stmt in PLAIN_DDL.split(";\n"):
            if stmt.strip():
                cluster.sql(stmt)
        paths = {}
        for name, text in SCRIPTS.items():
            paths[name] = os.path.join(tmp, name + ".sql")
            with open(paths[name], "w") as f:
                f.write(text)

        # A: as deployed, the worker serving this database
        cluster.sql("SELECT pg_stat_statements_reset()")
        res_a, cpu_a = run_phase(cluster, paths, clients_list, args.rounds, args.seconds)
        sent = workers_sent(cluster)
        states = dict(cluster.sql("SELECT state, count(*) FROM withdraw.withdrawal GROUP BY 1"))
        claim = cluster.sql("SELECT calls, mean_exec_time, max_exec_time FROM pg_stat_statements"
                            " WHERE query LIKE 'SELECT w.id, w.account_id%%'"
                            "   AND query LIKE '%%ORDER BY w.next_attempt_at%%'")
        rows_a = (cluster.value("SELECT count(*) FROM withdraw.withdrawal"),
                  cluster.value("SELECT count(*) FROM bench_plain.withdrawal"))

        # A again with fsync off (issue 21): beside the production figures
        res_a0 = cpu_a0 = None
        if DURABLE:
            set_fsync(cluster, False)
            res_a0, cpu_a0 = run_phase(cluster, paths, clients_list, args.rounds, args.seconds)
            set_fsync(cluster, True)

        # B: withdraw_create alone — the worker serves another database
        cluster.sql("ALTER SYSTEM SET withdraw.database_name = 'template1'")
        cluster.stop()
        cluster.start()
        cluster.wait_ready()
        res_b, cpu_b = run_phase(cluster, paths, clients_list, args.rounds, args.seconds)
        failed = sum(x[3] for d in (res_a, res_b, res_a0 or {}) for v in d.values() for x in v)

        t = Table("withdraw_create vs plain INSERT (pgbench, same cluster, same run)")
        add_rows(t, "A", res_a, cpu_a, clients_list)
        add_rows(t, "B", res_b, cpu_b, clients_list)
        if res_a0:
            add_rows(t, "A, fsync = off", res_a0, cpu_a0, clients_list)
        t.note("A: as deployed: the worker serves this database and is woken by every commit, but the account's "
               "create_interval_ms = 24 h keeps it from sending (it only runs its claim and finds the account "
               f"rate-limited): requests sent {sent}; states {states}. "
               + (f"Its create claim ran {claim[0][0]:,} times, mean {claim[0][1]:.2f} ms, max {claim[0][2]:.1f} ms "
                  f"(pg_stat_statements)." if claim else ""))
        t.note("B: the same withdraw_create, with the worker serving another database "
               "(withdraw.database_name = template1, restart): what the function itself costs.")
        t.note("With 1 client each call is a round trip between pgbench and its backend on 2 vCPUs: a busy "
               "worker (A) keeps the vCPUs from idling, which makes those round trips faster, so A's 1-client "
               "ratio is not a cost comparison; B's is.")
        t.note(f"pgbench -M prepared, {args.seconds} s per run, {args.rounds} alternating round(s) per client "
               f"count (medians), {os.cpu_count()} cores, {durability_note()} (the 'A, fsync = off' rows: the same "
               f"cluster with fsync off, switched by reload). Rows after A: withdraw "
               f"{rows_a[0]:,}, baseline {rows_a[1]:,}; failed transactions: {failed}. pg_stat_statements is "
               f"loaded for both sides. Worker CPU: cores used by the worker process during each side's runs.")
        t.print()
    finally:
        if cluster:
            cluster.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
