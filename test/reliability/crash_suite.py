#!/usr/bin/env python3
"""Crash suite: many withdrawals, committed in batches while the worker and the
postmaster are killed with SIGKILL at random moments; afterwards every
committed withdrawal must be settled and paid exactly once, and nothing rolled
back may ever have reached the provider.

What it does
  * N withdrawals (default 10,000 over 50 accounts; --quick 1,000 over 10)
    over zoomex accounts, each with its own api_key, no create interval
    (account option create_interval_ms 0, mock create_interval_s 0), a short
    poll interval (250 ms) and the provider's default polls_per_second (5);
    the mock keeps each transfer pending about a second (Pending Review, then
    Pending Transfer), so many polls of an account are due at once, and an
    account has far more than one page (50) of transfers for a reconcile to
    search.  Each withdrawal has its own address, so a reconcile has exactly
    one match to find.
  * A producer commits them in batches of --batch; --rollback of the batches
    are rolled back instead (after a short pause, so the worker has had the
    chance to look).  A batch whose COMMIT fails because the server died is
    ambiguous; the database decides afterwards whether it committed.
  * Meanwhile the chaos loop kills, with SIGKILL, either the withdraw worker
    (its pid from withdraw.workers; the postmaster then restarts every
    backend) or the postmaster (its pid from postmaster.pid; the suite waits
    for each of its children to exit, then starts it again with
    harness.Cluster.start(), i.e. pg_ctl start).  Each kill follows one of
    these strategies, aimed at the windows where a crash can hurt:
      random        a random moment of the steady flow
      after-commit  0-20 ms after a batch commit: claimed or about to be, not sent
      mid-commit    as the producer sends COMMIT: the client cannot know the outcome
      held-exec     the mock executes the next creates and holds their answer
                    (fault timeout_after): killed with the provider's word pending
      held-before   the mock holds the next creates unexecuted (timeout_before)
      in-recovery   right after the previous restart, while the new worker recovers
    The mock also injects, now and then, ordinary faults (5xx, resets, garbage,
    retCode 10016/10006/10002, answers lost after execution) on creates and
    status queries.
  * Then it waits for the drain (giving up after --drain-timeout, or after
    --stall-timeout without any change) and checks: every committed withdrawal is
    terminal (succeeded), the mock ledger executed each committed requestId
    exactly once, the provider id we recorded is the one the mock gave, no
    rolled-back requestId ever reached the mock, nothing is left in
    queued/sending/unknown/submitted/processing, nothing in review, and the
    server log shows no crash other than ours.
  * Each withdrawal found in 'sending' by a restarted worker is classified by
    the window its kill hit (from the mock's request log): before send (no
    request reached the mock), during send (the mock held the answer), after
    the response (answered before the kill, outcome not yet committed).

Run as an ordinary user (PostgreSQL refuses root), e.g.
    runuser -u postgres -- /usr/bin/python3 test/reliability/crash_suite.py --quick
Exit status 0 when every check holds, 1 otherwise.
"""

import argparse
import json
import os
import random
import re
import signal
import sys
import threading
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))

import psycopg2  # noqa: E402

from checks import (OPEN, is_disconnect, log, log_verdicts, print_figures,  # noqa: E402
                    settle_batches, verdicts, weighted)
from harness import Cluster, Mock, wait_until  # noqa: E402
from replication import children_of, proc_alive, proc_gone, procs_in  # noqa: E402

RECOVERY_NOTE = "the worker stopped while this request was in flight"
CREATE_SQL = "SELECT withdraw_create(t.a, t.r) FROM unnest(%s::text[], %s::jsonb[]) AS t(a, r)"
STRATEGIES = (("random", 30), ("after-commit", 20), ("mid-commit", 10), ("held-exec", 20),
              ("held-before", 10), ("in-recovery", 10))
# ordinary faults sprinkled over the run: (fault, weight)
NOISE = (
    ({"path": "inner-create", "kind": "http_503"}, 3),
    ({"path": "inner-create", "kind": "reset"}, 2),
    ({"path": "inner-create", "kind": "reset_after"}, 2),
    ({"path": "inner-create", "kind": "garbage_after"}, 2),
    ({"path": "inner-create", "kind": "garbage"}, 1),
    ({"path": "inner-create", "kind": "timeout_after", "delay_s": 5}, 2),
    ({"path": "inner-create", "kind": "retcode", "code": 10016}, 2),
    ({"path": "inner-create", "kind": "retcode", "code": 10006}, 1),
    ({"path": "inner-create", "kind": "retcode", "code": 10002}, 1),
    ({"path": "query-record", "kind": "http_502"}, 2),
    ({"path": "query-record", "kind": "garbage"}, 1),
    ({"path": "query-record", "kind": "retcode", "code": 10006}, 1),
)


class CrashRun:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.commit_cond = threading.Condition(self.lock)
        self.commits = 0
        self.precommits = 0
        self.last_commit_t = None
        self.producing = True
        self.batches = []           # dicts: keys, intent, result
        self.kills = []             # dicts: t, target, strategy, pid, recovered_s
        self.noise = Counter()
        self.cluster = None
        self.mock = None
        self.accounts = []
        self.last_ready = time.time()
        self.failure = None

    # -- setup

    def setup(self):
        a = self.args
        keys = {f"rk{i}": f"secret-{i}-{'s' * 12}" for i in range(a.accounts)}
        # a transfer stays pending about a second (polled several times), as at a real provider
        zoomex = {"keys": keys, "create_interval_s": 0,
                  "status_schedule": [["Pending Review", 0.3], ["Pending Transfer", 0.7]]}
        if a.polls_per_second is not None:
            # the mock's query limit (300/min per key by default) follows the account's
            zoomex["query_limit_per_min"] = 1000000 if a.polls_per_second == 0 else max(300, 60 * a.polls_per_second)
        self.mock = Mock({"zoomex": zoomex})
        self.cluster = Cluster(dict(kv.split("=", 1) for kv in a.set), keep=a.keep).start()
        self.cluster.sql("CREATE EXTENSION withdraw")
        self.cluster.wait_ready()
        options = {"create_interval_ms": 0, "poll_interval_ms": a.poll_ms, "request_timeout_ms": 3000}
        if a.polls_per_second is not None:
            options["polls_per_second"] = a.polls_per_second
        for i in range(a.accounts):
            name = f"acct{i}"
            self.cluster.sql("SELECT withdraw_account_create(%s, 'zoomex', %s, %s, %s)",
                             (name, self.mock.base_url("zoomex"),
                              json.dumps({"api_key": f"rk{i}", "api_secret": keys[f"rk{i}"]}),
                              json.dumps(options)))
            self.accounts.append(name)
        log(f"cluster {self.cluster.dir} (port {self.cluster.port}), mock {self.mock.url}, "
            f"{a.accounts} accounts, seed {a.seed}")

    def connect(self, timeout=120):
        """A new autocommit=False connection, waiting for the server to come back."""
        def attempt():
            try:
                return self.cluster.connect(autocommit=False)
            except psycopg2.OperationalError:
                return None
        return wait_until(attempt, timeout, 0.1, "the server to accept connections")

    def sql_retry(self, query, params=None, timeout=120):
        """cluster.sql, retried while the server is down or restarting."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.cluster.sql(query, params)
            except psycopg2.Error as e:
                if not is_disconnect(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- producer

    def produce(self):
        a = self.args
        rng = random.Random(a.seed + 1)
        conn = None
        seq = 0
        batch_no = 0
        committed = 0           # withdrawals committed (a COMMIT cut by a kill: as the database says)
        offered = 0
        started = time.monotonic()
        # a.rollback of the batches, spread evenly: one in each block of `every`
        every = max(1, round(1 / a.rollback)) if a.rollback > 0 else 0
        pick = rng.randrange(every) if every else -1
        try:
            while committed < a.n:
                if every and batch_no % every == 0 and batch_no:
                    pick = rng.randrange(every)
                rollback = every > 0 and batch_no % every == pick
                size = a.batch if rollback else min(a.batch, a.n - committed)
                keys, accts, reqs = [], [], []
                for i in range(size):
                    key = f"b{batch_no:05d}n{i:03d}"
                    keys.append(key)
                    accts.append(rng.choice(self.accounts))
                    reqs.append(json.dumps({"requestId": key, "coin": "USDT", "addressType": 3,
                                            "address": str(10_000_000 + seq),
                                            "amount": f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}"}))
                    seq += 1
                batch_no += 1
                result = None
                try:
                    if conn is None or conn.closed:
                        conn = self.connect()
                    cur = conn.cursor()
                    cur.execute(CREATE_SQL, (accts, reqs))
                    if rollback:
                        time.sleep(rng.uniform(0, 0.15))
                        result = "rolled back"
                        conn.rollback()
                    else:
                        result = "ambiguous"
                        with self.lock:
                            self.precommits += 1
                            self.commit_cond.notify_all()
                        conn.commit()
                        result = "committed"
                except psycopg2.Error as e:
                    if not is_disconnect(e):
                        raise
                    # the server died under us: before COMMIT it is aborted,
                    # during COMMIT only the database can tell
                    result = result or "aborted"
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                    conn = None
                if result == "ambiguous":
                    # as an application would: once the server is back, look
                    # (check() looks again at the end, for every batch)
                    present = self.sql_retry("SELECT count(*) FROM withdraw.withdrawal"
                                             " WHERE idempotency_key = ANY(%s)", (keys,))[0][0]
                    log(f"COMMIT of batch {batch_no - 1} cut by a kill: {present} of {size} rows committed")
                    if present == 0:
                        committed -= size       # offered again under new keys
                with self.lock:
                    self.batches.append({"keys": keys, "intent": "rollback" if rollback else "commit",
                                         "result": result})
                    if result == "committed":
                        self.last_commit_t = time.time()
                        self.commits += 1
                        self.commit_cond.notify_all()
                if result in ("committed", "ambiguous"):
                    committed += size
                offered += size
                if a.noise > 0 and rng.random() < a.noise:
                    fault = dict(weighted(rng, NOISE))
                    self.noise[f"{fault['kind']}{fault.get('code', '')}@{fault['path']}"] += 1
                    try:
                        self.mock.fault(provider="zoomex", count=1, **fault)
                    except OSError:
                        pass
                # pacing: a.rate withdrawals offered per second
                ahead = offered / a.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        except Exception as e:  # noqa: BLE001
            self.failure = f"producer: {e!r}"
            raise
        finally:
            if conn is not None:
                conn.close()
            self.producing = False

    # -- kills

    def worker_pid(self):
        try:
            return self.cluster.worker_pid()
        except psycopg2.Error as e:
            if not is_disconnect(e):
                raise
            return None

    def at_next_commit(self):
        """Returns just as the producer is about to send COMMIT (or after 5 s)."""
        with self.commit_cond:
            seen = self.precommits
            self.commit_cond.wait_for(lambda: self.precommits > seen or not self.producing, 5)

    def kill_worker(self, strategy):
        pid = wait_until(self.worker_pid, 120, 0.05, "the withdraw worker")
        if strategy == "mid-commit":
            self.at_next_commit()
        os.kill(pid, signal.SIGKILL)
        t = time.time()
        wait_until(lambda: self.worker_pid() not in (None, pid), 120, 0.05, "a new worker after the kill")
        self.kills.append({"t": t, "target": "worker", "strategy": strategy, "pid": pid,
                           "recovered_s": time.time() - t})

    def kill_postmaster(self, strategy):
        pm = self.cluster.postmaster_pid()
        kids = children_of(pm)
        if strategy == "mid-commit":
            self.at_next_commit()
            kids = children_of(pm)
        os.kill(pm, signal.SIGKILL)
        t = time.time()
        wait_until(lambda: proc_gone(pm) and not any(proc_alive(k) for k in kids + procs_in(self.cluster.data)),
                   120, 0.05, f"the postmaster {pm} and its children {kids} to exit")
        for attempt in range(5):
            try:
                self.cluster.start()
                break
            except Exception:  # noqa: BLE001 - pg_ctl start failed: say why, try again
                log(f"pg_ctl start failed (attempt {attempt + 1}); log tail:\n"
                    + "\n".join(self.cluster.log_text().splitlines()[-5:]))
                time.sleep(1)
        else:
            raise RuntimeError("the cluster did not start again after the postmaster kill")
        self.cluster.wait_ready(120)
        self.kills.append({"t": t, "target": "postmaster", "strategy": strategy, "pid": pm,
                           "children": len(kids), "recovered_s": time.time() - t})

    def faults_pending(self, kind):
        try:
            return sum(f["count"] or 0 for f in self.mock.call("GET", "/_mock/faults")["faults"]
                       if f["kind"] == kind)
        except OSError:
            return 0

    def one_kill(self, target, strategy):
        a = self.args
        rng = self.rng
        if strategy == "in-recovery":
            time.sleep(rng.uniform(0, 0.3))
        else:
            time.sleep(rng.uniform(a.min_gap, a.max_gap))
        if strategy == "after-commit":
            with self.commit_cond:
                seen = self.commits
                self.commit_cond.wait_for(lambda: self.commits > seen or not self.producing, 5)
            time.sleep(rng.uniform(0, 0.02))
        elif strategy in ("held-exec", "held-before"):
            kind = "timeout_after" if strategy == "held-exec" else "timeout_before"
            self.mock.fault(provider="zoomex", path="inner-create", kind=kind,
                            count=rng.randint(1, 6), delay_s=8)
            try:
                wait_until(lambda: self.faults_pending(kind) == 0, 3, 0.02, "held requests")
            except AssertionError:
                pass        # no traffic right now: kill anyway
            time.sleep(rng.uniform(0, 0.2))
        if target == "worker":
            self.kill_worker(strategy)
        else:
            self.kill_postmaster(strategy)
        k = self.kills[-1]
        log(f"kill {len(self.kills):2d}: {target:<10} {strategy:<12} pid {k['pid']}, "
            f"back in {k['recovered_s']:.1f}s")
        self.last_ready = time.time()

    def chaos(self):
        rng = self.rng
        a = self.args
        strategy = "random"
        while self.producing and self.failure is None:
            target = "postmaster" if rng.random() < a.postmaster_share else "worker"
            self.one_kill(target, strategy)
            strategy = weighted(rng, STRATEGIES)
        targets = [k["target"] for k in self.kills]
        tail = []
        if "postmaster" not in targets:
            tail.append(("postmaster", "held-exec"))
        if "worker" not in targets:
            tail.append(("worker", "held-exec"))
        while len(tail) < a.tail_kills:
            tail.append(("worker" if rng.random() >= a.postmaster_share else "postmaster",
                         rng.choice(("random", "held-exec", "in-recovery"))))
        for target, strategy in tail:
            self.one_kill(target, strategy)

    # -- drain

    def drain(self):
        """Waits until nothing is open; gives up after --drain-timeout, or
        after --stall-timeout without any change of the state counts."""
        a = self.args
        started = time.monotonic()
        next_report = started + 10
        last, changed_at = None, started
        while True:
            counts = dict(self.sql_retry("SELECT state, count(*) FROM withdraw.withdrawal GROUP BY 1"))
            open_ = sum(counts.get(s, 0) for s in OPEN)
            now = time.monotonic()
            if open_ == 0:
                return now - started, counts, "drained"
            if counts != last:
                last, changed_at = counts, now
            if now - started > a.drain_timeout:
                return now - started, counts, f"NOT drained: gave up after {a.drain_timeout:.0f}s"
            if now - changed_at > a.stall_timeout:
                return now - started, counts, f"NOT drained: no progress for {a.stall_timeout:.0f}s"
            if now >= next_report:
                log(f"draining: {dict(sorted(counts.items()))}")
                next_report += 10
            time.sleep(0.25)

    # -- checks

    def classify_windows(self, requests):
        """For each withdrawal a restarted worker found in 'sending', which
        window its kill hit; from the events and the mock's request log."""
        rows = self.cluster.sql(
            "SELECT w.idempotency_key, extract(epoch FROM e.at)::float8,"
            "       (SELECT extract(epoch FROM max(c.at))::float8 FROM withdraw.event c"
            "         WHERE c.withdrawal_id = e.withdrawal_id AND c.to_state = 'sending' AND c.at < e.at)"
            " FROM withdraw.event e JOIN withdraw.withdrawal w ON w.id = e.withdrawal_id"
            " WHERE e.from_state = 'sending' AND e.to_state = 'unknown' AND e.detail = %s", (RECOVERY_NOTE,))
        creates = {}
        for r in requests:
            if "inner-create" in r["path"] and r.get("requestId"):
                creates.setdefault(r["requestId"], []).append(r)
        kill_times = sorted(k["t"] for k in self.kills)
        windows = Counter()
        for key, recovered_at, claimed_at in rows:
            before = [t for t in kill_times if t <= recovered_at]
            kill_t = before[-1] if before else recovered_at
            sent = [r for r in creates.get(key, [])
                    if (claimed_at is None or r["t"] >= claimed_at - 0.05) and r["t"] <= kill_t]
            if not sent:
                windows["before send"] += 1
            elif sent[-1].get("fault") in ("timeout_after", "timeout_before") or sent[-1].get("http_status") is None:
                windows["during send"] += 1
            else:
                windows["after response"] += 1
        return windows

    def check(self, drain_s, drained):
        c = self.cluster
        rows = {r[0]: r for r in self.sql_retry(
            "SELECT idempotency_key, state, provider_id, last_error, id FROM withdraw.withdrawal")}
        committed, not_committed, ambiguous, partial = settle_batches(self.batches, rows)
        ledger = self.mock.ledger()
        execs = ledger["executions"]
        given_id = {}
        for w in ledger["withdrawals"]:
            given_id.setdefault(w["requestId"], w["withdraw_id"])
        requests = self.mock.requests()
        requested = {r["requestId"] for r in requests if r.get("requestId")}

        v = verdicts(committed, not_committed, rows, execs, requested, given_id, partial)
        text = c.log_text()
        v.update(log_verdicts(text))
        unrecorded = len(re.findall(r"could not record the outcome", text))
        found = [int(n) for n in re.findall(r"found (\d+) withdrawals in flight", text)]
        stats = self.mock.stats()
        v["bad signatures"] = ["x"] * stats.get("bad_signatures", 0)
        windows = self.classify_windows(requests)

        states = Counter(r[1] for r in rows.values())
        batches_committed = sum(1 for b in self.batches if b["result"] == "committed"
                                or (b["result"] == "ambiguous" and b["keys"][0] in committed))
        rolled = [b for b in self.batches if b["result"] == "rolled back"]
        aborted = [b for b in self.batches if b["result"] == "aborted"]
        wk = [k for k in self.kills if k["target"] == "worker"]
        pk = [k for k in self.kills if k["target"] == "postmaster"]
        figures = [
            ("withdrawals committed", len(committed)),
            ("batches (committed / total)", f"{batches_committed} / {len(self.batches)}"),
            ("rolled back (batches / withdrawals)", f"{len(rolled)} / {sum(len(b['keys']) for b in rolled)}"),
            ("aborted by a kill before COMMIT (batches)", len(aborted)),
            ("COMMIT cut by a kill (committed / not)",
             f"{ambiguous['committed']} / {ambiguous['not committed']}"),
            ("accounts", self.args.accounts),
            ("worker kills", len(wk)),
            ("postmaster kills", len(pk)),
            ("kill strategies", ", ".join(f"{s} {n}" for s, n in
                                          sorted(Counter(k["strategy"] for k in self.kills).items()))),
            ("rows found in 'sending' after restarts", f"{sum(found)} over {len(found)} restarts"),
            ("  window: before send", windows["before send"]),
            ("  window: during send (answer pending)", windows["during send"]),
            ("  window: after response, before commit", windows["after response"]),
            ("outcomes not recorded (WARNING)", unrecorded),
            ("noise faults injected", sum(self.noise.values())),
            ("mock executions / requests", f"{sum(execs.values())} / {len(requests)}"),
            ("final states", ", ".join(f"{s} {n}" for s, n in sorted(states.items()))),
            ("lost", len(v["lost"])),
            ("doubled", len(v["doubled"])),
            ("sent-after-rollback", len(v["sent after rollback"])),
            ("stuck (queued/sending/unknown/submitted/processing)", len(v["stuck"])),
            ("review", len(v["review"])),
            ("not succeeded (failed/rejected/...)", len(v["not succeeded"])),
            ("wrong provider id", len(v["wrong provider id"])),
            ("time to drain (after the last kill's recovery)",
             f"{drain_s:.1f}s" + ("" if drained == "drained" else f" ({drained})")),
            ("  last kill -> drained / last commit -> drained",
             f"{self.drained_t - self.kills[-1]['t']:.1f}s / {self.drained_t - (self.last_commit_t or self.drained_t):.1f}s"),
        ]
        return figures, v, rows

    def explain(self, v, rows):
        """Evidence for each violation: a few withdrawals with events and attempts."""
        for name, keys in v.items():
            if not keys:
                continue
            print(f"\n--- {name}: {len(keys)}  e.g. {keys[:8]}")
            if name in ("server crashes not ours", "PANIC/TRAP", "bad signatures"):
                for k in keys[:5]:
                    print("   ", k)
                continue
            if name == "stuck":
                ids = [rows[k][4] for k in keys if k in rows]
                overdue = self.cluster.sql(
                    "SELECT a.name, count(*), min(w.next_poll_at)::time,"
                    "       (SELECT max(t.started_at)::time FROM withdraw.attempt t JOIN withdraw.withdrawal w2"
                    "         ON w2.id = t.withdrawal_id WHERE w2.account_id = a.id AND t.kind = 'status')"
                    " FROM withdraw.withdrawal w JOIN withdraw.account a ON a.id = w.account_id"
                    " WHERE w.id = ANY(%s) AND w.next_poll_at < now() - interval '10 seconds'"
                    " GROUP BY a.id, a.name ORDER BY 2 DESC LIMIT 5", (ids,))
                n_overdue = sum(r[1] for r in overdue)
                print(f"    {n_overdue} of them have a status poll overdue by more than 10 s"
                      f" (now {self.cluster.value('SELECT now()::time')}); by account (name, overdue,"
                      f" oldest next_poll_at, last status poll of the account):")
                for r in overdue:
                    print(f"      {r}")
                execs = self.mock.ledger()["executions"]
                unk = [k for k in keys if k in rows and rows[k][1] == "unknown"]
                print(f"    {sum(1 for k in unk if execs.get(k, 0) == 1)} of the {len(unk)} unknown ones"
                      " were executed once at the provider (reconcile did not find them)")
            reasons = Counter((rows[k][1], (rows[k][3] or "")[:150]) for k in keys if k in rows)
            for (state, err), n in reasons.most_common(6):
                print(f"    {n:5d} x {state}: {err}")
            for k in keys[:2]:
                if k not in rows:
                    continue
                wid = rows[k][4]
                print(f"  withdrawal {wid} ({k}) events:")
                for ev in self.cluster.sql("SELECT at::time, from_state, to_state, provider_status, left(detail, 110)"
                                           " FROM withdraw.events WHERE withdrawal_id = %s ORDER BY at", (wid,)):
                    print("     ", ev)
                print("  attempts:")
                for at in self.cluster.sql("SELECT started_at::time, kind, http_status, outcome, left(response_body, 70),"
                                           " left(error, 50) FROM withdraw.attempts WHERE withdrawal_id = %s"
                                           " ORDER BY id LIMIT 12", (wid,)):
                    print("     ", at)
                print("  at the mock:", [(time.strftime('%H:%M:%S', time.localtime(r["t"])) + f".{int(r['t'] * 1000) % 1000:03d}",
                                          r["path"].rsplit("/", 1)[-1], r.get("fault"), r.get("ret_code"),
                                          r.get("executed")) for r in self.mock.requests()
                                         if r.get("requestId") == k])

    def run(self):
        a = self.args
        t0 = time.monotonic()
        self.setup()
        producer = threading.Thread(target=self.produce, name="producer", daemon=True)
        producer.start()
        try:
            self.chaos()
        finally:
            self.producing = False
        producer.join()
        if self.failure:
            raise RuntimeError(self.failure)
        produced_s = time.monotonic() - t0
        log(f"production and kills over after {produced_s:.0f}s; draining")
        drain_s, counts, drained = self.drain()
        self.drained_t = time.time()
        figures, v, rows = self.check(drain_s, drained)
        figures.append(("total runtime", f"{time.monotonic() - t0:.0f}s"))
        ok = not any(v.values())
        print_figures(f"crash suite ({'quick' if a.quick else 'full'}, seed {a.seed})", figures)
        if not ok:
            self.explain(v, rows)
            print("\n---- server log (tail) ----")
            print("\n".join(self.cluster.log_text().splitlines()[-25:]))
        print(f"\ncrash suite: {'PASSED' if ok else 'FAILED: ' + ', '.join(k for k, x in v.items() if x)}")
        return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI size: 1,000 withdrawals")
    ap.add_argument("-n", type=int, help="committed withdrawals (default 10,000; --quick 1,000)")
    ap.add_argument("--accounts", type=int, help="zoomex accounts (default 50; --quick 10)")
    ap.add_argument("--batch", type=int, help="withdrawals per transaction (default 50; --quick 25)")
    ap.add_argument("--rollback", type=float, default=0.1, help="share of batches rolled back (one in each block of 1/share)")
    ap.add_argument("--rate", type=float, help="withdrawals offered per second (default 150; --quick 80)")
    ap.add_argument("--poll-ms", type=int, default=250, help="account option poll_interval_ms")
    ap.add_argument("--polls-per-second", type=int,
                    help="account option polls_per_second (default: the provider's, zoomex 5; 0 = no limit);"
                         " the mock's query limit follows")
    ap.add_argument("--postmaster-share", type=float, default=0.25, help="share of kills aimed at the postmaster")
    ap.add_argument("--min-gap", type=float, default=0.5, help="min seconds between kills")
    ap.add_argument("--max-gap", type=float, default=3.0, help="max seconds between kills")
    ap.add_argument("--tail-kills", type=int, default=2, help="kills after the last batch, during the drain")
    ap.add_argument("--noise", type=float, default=0.15, help="chance per batch of one ordinary fault")
    ap.add_argument("--drain-timeout", type=float, help="seconds to wait for the drain (default 300; --quick 120)")
    ap.add_argument("--stall-timeout", type=float, default=60,
                    help="stop waiting for the drain after this many seconds without progress")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the cluster directory")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a server setting (e.g. withdraw.synchronous_outcomes=off); repeatable")
    args = ap.parse_args()
    if args.n is None:
        args.n = 1000 if args.quick else 10000
    if args.batch is None:
        args.batch = 25 if args.quick else 50
    if args.accounts is None:
        args.accounts = 10 if args.quick else 50
    if args.rate is None:
        args.rate = 80.0 if args.quick else 150.0
    if args.drain_timeout is None:
        args.drain_timeout = 120.0 if args.quick else 300.0
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 30)
    run = CrashRun(args)
    ok = False
    try:
        ok = run.run()
    finally:
        if run.cluster is not None:
            run.cluster.destroy()
            if args.keep:
                print(f"cluster kept at {run.cluster.dir} (stopped)")
        if run.mock is not None:
            run.mock.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
