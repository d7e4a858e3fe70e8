"""Issue 8, figure 5: the worker's memory under sustained load.

The worker sends to the nginx sink (withdraw.max_in_flight 64, account cap
10000, create_interval_ms 0, no polls) while a feeder connection keeps a
backlog of queued withdrawals (batches of 1,000 per transaction, refilled
below 10,000 queued).  Every second the worker's /proc/<pid>/status is
sampled (pid from withdraw.workers): VmRSS, and its parts RssAnon (private
memory: where a leak shows) and RssShmem (shared buffers the worker has
touched: grows towards shared_buffers whatever the worker does).  The
worker's memory contexts are also dumped (pg_log_backend_memory_contexts)
after the warm-up and at the end: the grand total in use, and the chunks
allocated directly in TopMemoryContext (which nothing in the worker should
add to per withdrawal), are compared.

Baseline: the same worker's figures when idle, before the load, same run.
Target: VmRSS flat within +-10% after the warm-up (every sample within 10%
of the median); the same is reported for RssAnon.

Usage: python3 bench/bench_memory.py [--quick] [--seconds 180] [--warmup 30]
"""

import argparse
import os
import re
import threading
import time

from benchlib import (CREATE_SERIES_SQL, HUGE_MS, Nginx, Table, bench_cluster, create_account,
                      install_signal_handlers, log, median, proc_status, set_guc)


class Feeder(threading.Thread):
    """Keeps the queue between `low` and `low + batch` withdrawals."""

    def __init__(self, cluster, low=10000, batch=1000):
        super().__init__(daemon=True)
        self.cluster, self.low, self.batch = cluster, low, batch
        self.created = 0
        self.stop = threading.Event()
        self.error = None

    def run(self):
        try:
            conn = self.cluster.connect()
            cur = conn.cursor()
            while not self.stop.is_set():
                cur.execute("SELECT count(*) FROM withdraw.withdrawal WHERE state = 'queued'")
                if cur.fetchone()[0] < self.low:
                    lo = self.created + 1
                    cur.execute(CREATE_SERIES_SQL, ("sink", "m", lo, lo + self.batch - 1))
                    self.created += self.batch
                else:
                    time.sleep(0.05)
            conn.close()
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.error = e


def memory_contexts(cluster, pid, after):
    """Asks the worker to log its memory contexts; returns ((bytes in use in all contexts,
    bytes in use in TopMemoryContext's own chunks), new log offset)."""
    cluster.sql("SELECT pg_log_backend_memory_contexts(%s)", (pid,))
    total = re.compile(rf"\[{pid}\].*Grand total: (\d+) bytes in \d+ blocks; (\d+) free")
    top = re.compile(rf"\[{pid}\].*level: 0; TopMemoryContext: \d+ total in \d+ blocks; \d+ free "
                     rf"\(\d+ chunks\); (\d+) used")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = cluster.log_text()
        m, t = total.search(text, after), top.search(text, after)
        if m and t:
            return (int(m.group(1)) - int(m.group(2)), int(t.group(1))), len(text)
        time.sleep(0.2)
    return None, after


def slope(xs, ys):
    """Least-squares slope of ys over xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def flat(values, tolerance=0.10):
    mid = median(values)
    return all(abs(v - mid) <= tolerance * mid for v in values)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="30 s of load, 10 s warm-up")
    ap.add_argument("--seconds", type=int, default=180)
    ap.add_argument("--warmup", type=int, default=30)
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.warmup = 30, 10
    install_signal_handlers()

    nginx = cluster = feeder = None
    warm_ctx_sent = 0
    try:
        nginx = Nginx()
        # one worker: the figure is one process's memory, and it sees every withdrawal
        cluster = bench_cluster({"shared_buffers": "'128MB'"}, workers=1)
        create_account(cluster, "sink", nginx.base_url(), create_interval_ms=0, poll_interval_ms=HUGE_MS,
                       max_in_flight=10000)
        set_guc(cluster, "withdraw.max_in_flight", 64)
        pid = cluster.worker_pid()
        time.sleep(1)
        idle = proc_status(pid)
        idle_ctx, log_pos = memory_contexts(cluster, pid, 0)

        feeder = Feeder(cluster)
        mon = cluster.connect()
        cur = mon.cursor()
        cur.execute("SELECT requests_sent FROM withdraw.workers")
        sent0 = cur.fetchone()[0]
        samples = []          # (t, sent, status)
        start = time.monotonic()
        feeder.start()
        warm_ctx = None
        next_t = start + 1
        while time.monotonic() - start < args.seconds:
            time.sleep(max(0, next_t - time.monotonic()))
            next_t += 1
            if feeder.error:
                raise feeder.error
            if cluster.worker_pid() != pid:
                raise AssertionError("the worker restarted during the run")
            cur.execute("SELECT requests_sent FROM withdraw.workers")
            t = time.monotonic() - start
            samples.append((t, cur.fetchone()[0] - sent0, proc_status(pid)))
            if warm_ctx is None and t >= args.warmup:
                warm_ctx, log_pos = memory_contexts(cluster, pid, log_pos)
                warm_ctx_sent = samples[-1][1]
            if len(samples) % 15 == 0:
                s = samples[-1]
                log(f"{t:5.0f} s: {s[1]:,} sent, VmRSS {s[2]['VmRSS'] / 1024:.1f} MB, RssAnon "
                    f"{s[2]['RssAnon'] / 1024:.1f} MB, RssShmem {s[2]['RssShmem'] / 1024:.1f} MB")
        feeder.stop.set()
        feeder.join(30)
        end_sent = cluster.value("SELECT requests_sent FROM withdraw.workers") - sent0
        end_ctx, log_pos = memory_contexts(cluster, pid, log_pos)
        total = samples[-1][1]
        mon.close()

        after = [s for s in samples if s[0] >= args.warmup]
        warm_sent = after[0][1]
        rate = (after[-1][1] - after[0][1]) / (after[-1][0] - after[0][0])
        vm = [s[2]["VmRSS"] / 1024 for s in after]
        anon = [s[2]["RssAnon"] / 1024 for s in after]
        shm = [s[2]["RssShmem"] / 1024 for s in after]

        t = Table(f"worker memory over {args.seconds} s of load ({total:,} withdrawals sent; samples every 1 s "
                  f"after a {args.warmup} s warm-up); baseline = the same worker idle before the load")
        t.add("withdrawals sent during the run", total, None)
        t.add("withdrawals/s after the warm-up", rate, None)
        t.add("VmRSS, min after warm-up (MB)", min(vm), idle["VmRSS"] / 1024, fmt="{:.1f}")
        t.add("VmRSS, max after warm-up (MB)", max(vm), idle["VmRSS"] / 1024, fmt="{:.1f}",
              target="flat +-10%", met=flat(vm))
        t.add("RssAnon (private), min after warm-up (MB)", min(anon), idle["RssAnon"] / 1024, fmt="{:.1f}")
        t.add("RssAnon (private), max after warm-up (MB)", max(anon), idle["RssAnon"] / 1024, fmt="{:.1f}",
              target="flat +-10%", met=flat(anon))
        t.add("RssShmem (shared buffers touched), max (MB)", max(shm), idle["RssShmem"] / 1024, fmt="{:.1f}")
        growth = slope([s[1] for s in after], [s[2]["RssAnon"] for s in after]) * 1024 * 1000  # B/1000
        t.add("RssAnon growth after warm-up (bytes per 1,000 withdrawals)", growth, None, fmt="{:,.0f}")
        if warm_ctx and end_ctx and idle_ctx:
            t.add("memory contexts, all, in use: end vs after warm-up (kB)", end_ctx[0] / 1024, warm_ctx[0] / 1024,
                  fmt="{:,.0f}", target="flat +-10%", met=abs(end_ctx[0] - warm_ctx[0]) <= 0.1 * warm_ctx[0])
            t.add("TopMemoryContext's own chunks in use: end vs after warm-up (kB)", end_ctx[1] / 1024,
                  warm_ctx[1] / 1024, fmt="{:,.0f}", target="flat +-10%",
                  met=abs(end_ctx[1] - warm_ctx[1]) <= 0.1 * warm_ctx[1])
            per = (end_ctx[1] - warm_ctx[1]) / max(1, end_sent - warm_ctx_sent)
            t.note(f"TopMemoryContext grew by {per:.1f} bytes per withdrawal sent between the two dumps "
                   f"({(end_ctx[1] - warm_ctx[1]) / 1024:,.0f} kB over {end_sent - warm_ctx_sent:,} withdrawals); "
                   f"memory contexts of the idle worker: {idle_ctx[0] / 1024:,.0f} kB in use, "
                   f"TopMemoryContext {idle_ctx[1] / 1024:,.0f} kB. 'All' includes the jobs in flight at the "
                   f"moment of the dump, so it varies by up to ~1 MB with no leak.")
        t.note(f"Idle worker before the load: VmRSS {idle['VmRSS'] / 1024:.1f} MB, RssAnon "
               f"{idle['RssAnon'] / 1024:.1f} MB. {warm_sent:,} withdrawals were sent during the "
               f"warm-up. VmRSS = RssAnon + RssFile + RssShmem; RssShmem grows as the worker touches more of "
               f"shared_buffers (128MB here), which is not a leak. Feeder created {feeder.created:,}. "
               f"{os.cpu_count()} cores.")
        t.print()
    finally:
        if feeder:
            feeder.stop.set()
        if cluster:
            cluster.destroy()
        if nginx:
            nginx.stop()


if __name__ == "__main__":
    main()
