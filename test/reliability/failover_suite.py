#!/usr/bin/env python3
"""Failover suite (issue 20): withdrawals created under load on a primary with a
streaming standby; the primary is killed with SIGKILL at random moments, the
standby promoted, the old primary rebuilt as the new standby, and the next
round runs against the new pair.  The same checks as the crash suite
(test/reliability/checks.py): nothing lost, nothing doubled at the provider,
nothing sent after a rollback, nothing stuck.

What it does, for each replication mode (--mode sync, async or both)
  * sync:  synchronous_standby_names = 'ANY 1 (node_a, node_b)',
           synchronous_commit = on: a commit returns once the standby has
           flushed it.  Expected: no acknowledged commit vanishes, no send
           whose record vanished, 0 lost, 0 doubled.
  * async: synchronous_standby_names empty.  Measured: acknowledged commits
           that vanish at a failover (the window), sends whose record
           vanished (the provider executed a request the new primary does
           not know it sent), and what the idempotency keys and the
           reconcile path recover.
  * The standby streams through a TCP relay that delays every byte --lag-ms
    (default 20 ms) each way, as a standby at another site, or a busy one,
    lags (--lag-ms 0: a direct link on this host, about 1 ms).
  * Two nodes (test/integration/replication.py), one mock process serving
    zoomex and ccpayment (v1) accounts; a producer commits batches over all
    accounts (a tenth rolled back), as an application would: when a COMMIT
    is cut by the kill, or when a commit it saw acknowledged has vanished
    after the failover, it submits the same withdrawals again with the SAME
    idempotency keys (withdraw_create is idempotent by key) -- the recovery
    the README asks of applications.
  * Each round: production for a random while, then SIGKILL to every process
    of the primary at once (the machine is lost) at a random moment, or as
    the producer sends COMMIT, or while the mock holds creates it has
    executed; pg_ctl promote of the standby, whose workers start by
    themselves; the old primary rebuilt by pg_rewind (or pg_basebackup) and
    started as the new standby, where no worker may run (fencing: checked
    every round in withdraw.workers and pg_stat_activity).
  * At the end: drain, then the verdicts, and per mode the figures: commits
    vanished, sends whose record vanished, their ages at the kill (the
    window), what was recovered and how.

Run as an ordinary user (PostgreSQL refuses root):
    python3 test/reliability/failover_suite.py --quick     # CI: 2 failovers per mode
    python3 test/reliability/failover_suite.py             # full: 10 failovers per mode
Exit status 0 when every check holds, 1 otherwise.
"""

import argparse
import json
import os
import random
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
from harness import Mock, wait_until  # noqa: E402
from replication import DelayProxy, Node  # noqa: E402

CREATE_SQL = "SELECT withdraw_create(t.a, t.r) FROM unnest(%s::text[], %s::jsonb[]) AS t(a, r)"
POLYGON_USDT = "8e5741cf-6e51-4892-9d04-3d40e1dd0128"
STRATEGIES = (("random", 40), ("mid-commit", 30), ("held-exec", 30))
CREATE_PATHS = {"zoomex": "inner-create", "ccpayment": "v1/withdraw"}


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def ms(x):
    return "-" if x is None else f"{x * 1000:.0f} ms"


class FailoverRun:
    def __init__(self, args, mode):
        self.args = args
        self.mode = mode
        self.rng = random.Random(args.seed + (0 if mode == "sync" else 7))
        self.lock = threading.Lock()
        self.commit_cond = threading.Condition(self.lock)
        self.precommits = 0
        self.batches = []           # keys, accts, reqs, intent, result, t, round
        self.rounds = []            # per failover: figures
        self.primary = None
        self.standby = None
        self.ready = threading.Event()   # the producer may use self.primary
        self.producing = True
        self.round = 0
        self.failure = None
        self.mock = None
        self.proxy = None           # the standby's replication link, when it lags
        self.nodes = []
        self.accounts = []          # (name, provider)

    # -- setup

    def setup(self):
        a = self.args
        zkeys = {f"fz{i}": f"secret-fz{i}-{'z' * 10}" for i in range(a.zoomex)}
        apps = {f"fc{i}": {"secret": f"secret-fc{i}-{'c' * 10}", "webhook_url": None} for i in range(a.ccpayment)}
        self.mock = Mock({
            "zoomex": {"keys": zkeys, "create_interval_s": 0, "query_limit_per_min": 100000,
                       "status_schedule": [["Pending Review", 0.3], ["Pending Transfer", 0.7]]},
            "ccpayment": {"apps": apps, "settle_after_s": 1.0, "processing_after_s": 0.3},
        })
        sync = "'ANY 1 (node_a, node_b)'" if self.mode == "sync" else "''"
        settings = {"synchronous_standby_names": sync, "synchronous_commit": "on"}
        if a.workers:
            settings["withdraw.workers"] = str(a.workers)
        first = Node("node_a", settings, keep=a.keep).start()
        self.nodes.append(first)
        # until node_b streams, a synchronous commit would wait for it
        first.sql("SET synchronous_commit = local; CREATE EXTENSION withdraw")
        first.wait_ready()
        zopt = {"create_interval_ms": 0, "poll_interval_ms": 250, "request_timeout_ms": 3000, "polls_per_second": 0}
        copt = {"api_version": 1, "poll_interval_ms": 300, "request_timeout_ms": 3000}
        for i in range(a.zoomex):
            name = f"z{i}"
            first.sql("SET synchronous_commit = local; SELECT withdraw_account_create(%s, 'zoomex', %s, %s, %s)",
                      (name, self.mock.base_url("zoomex"),
                       json.dumps({"api_key": f"fz{i}", "api_secret": zkeys[f"fz{i}"]}), json.dumps(zopt)))
            self.accounts.append((name, "zoomex"))
        for i in range(a.ccpayment):
            name = f"c{i}"
            first.sql("SET synchronous_commit = local; SELECT withdraw_account_create(%s, 'ccpayment', %s, %s, %s)",
                      (name, self.mock.base_url("ccpayment"),
                       json.dumps({"app_id": f"fc{i}", "app_secret": apps[f"fc{i}"]["secret"]}), json.dumps(copt)))
            self.accounts.append((name, "ccpayment"))
        self.proxy = DelayProxy(first.port, a.lag_ms / 1000) if a.lag_ms else None
        second = Node("node_b", base=first, keep=a.keep, via=self.proxy).start()
        self.nodes.append(second)
        first.wait_streaming(second)
        if self.mode == "sync":
            wait_until(lambda: first.value("SELECT sync_state FROM pg_stat_replication"
                                           " WHERE application_name = 'node_b'") in ("sync", "quorum"),
                       30, 0.1, "node_b to be a synchronous standby")
        self.primary, self.standby = first, second
        self.ready.set()
        log(f"{self.mode}: primary node_a (port {first.port}), standby node_b (port {second.port}), "
            f"{a.zoomex} zoomex + {a.ccpayment} ccpayment accounts, mock {self.mock.url}")

    # -- the application

    def request(self, provider, key, seq, rng):
        amount = f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}"
        if provider == "zoomex":
            return {"requestId": key, "coin": "USDT", "addressType": 3,
                    "address": str(20_000_000 + seq), "amount": amount}
        return {"merchant_order_id": key, "address": f"0x{seq:040x}", "token_id": POLYGON_USDT,
                "value": amount}

    def connect(self):
        """A connection to the current primary, waiting through a failover."""
        while True:
            self.ready.wait()
            node = self.primary
            try:
                conn = node.connect(autocommit=False)
                return node, conn
            except psycopg2.OperationalError:
                time.sleep(0.05)

    def submit(self, conn, accts, reqs, rollback=False, rng=None):
        """One batch in one transaction; returns committed, rolled back,
        aborted (the server went away before COMMIT) or ambiguous (during it)."""
        result = None
        try:
            cur = conn.cursor()
            cur.execute(CREATE_SQL, (accts, reqs))
            if rollback:
                time.sleep(rng.uniform(0, 0.1))
                conn.rollback()
                return "rolled back"
            result = "ambiguous"
            with self.lock:
                self.precommits += 1
                self.commit_cond.notify_all()
            self.t_commit_sent = time.time()
            conn.commit()
            return "committed"
        except psycopg2.Error as e:
            if not is_disconnect(e):
                raise
            return result or "aborted"

    def produce(self):
        a = self.args
        rng = random.Random(a.seed + (11 if self.mode == "sync" else 13))
        conn = None
        seq = 0
        batch_no = 0
        offered = 0
        started = time.monotonic()
        every = max(1, round(1 / a.rollback)) if a.rollback > 0 else 0
        try:
            while self.producing:
                rollback = every > 0 and rng.randrange(every) == 0
                keys, accts, reqs = [], [], []
                for i in range(a.batch):
                    key = f"{self.mode[0]}{batch_no:05d}n{i:02d}"
                    name, provider = rng.choice(self.accounts)
                    keys.append(key)
                    accts.append(name)
                    reqs.append(json.dumps(self.request(provider, key, seq, rng)))
                    seq += 1
                batch_no += 1
                if conn is None or conn.closed:
                    node, conn = self.connect()
                self.t_commit_sent = None
                t0 = time.time()
                result = self.submit(conn, accts, reqs, rollback, rng)
                if result in ("aborted", "ambiguous"):
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                    conn = None
                with self.lock:
                    self.batches.append({"keys": keys, "accts": accts, "reqs": reqs,
                                         "intent": "rollback" if rollback else "commit",
                                         "result": result, "t": time.time(), "round": self.round,
                                         # COMMIT sent at (a commit begun before a kill was
                                         # answered before it, if at all)
                                         "t0": self.t_commit_sent or t0})
                offered += len(keys)
                ahead = offered / a.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        except Exception as e:  # noqa: BLE001
            self.failure = f"producer: {e!r}"
            raise
        finally:
            if conn is not None:
                conn.close()

    def resubmit(self, batch):
        """The application submits a batch again with the same keys, until it
        commits; the original batch is superseded by the new one."""
        for _ in range(20):
            node, conn = self.connect()
            try:
                result = self.submit(conn, batch["accts"], batch["reqs"])
            finally:
                conn.close()
            if result == "committed":
                with self.lock:
                    batch["superseded"] = True
                    now = time.time()
                    self.batches.append(dict(batch, result="committed", t=now, t0=now, round=self.round,
                                             resubmitted=True, superseded=False, checked=False))
                return
            time.sleep(0.2)
        raise RuntimeError(f"could not resubmit batch {batch['keys'][0]}")

    # -- the failover

    def at_next_commit(self):
        with self.commit_cond:
            seen = self.precommits
            self.commit_cond.wait_for(lambda: self.precommits > seen, 5)

    def keys_on(self, node):
        return {k: s for k, s in node.sql("SELECT idempotency_key, state FROM withdraw.withdrawal")}

    def failover(self):
        a = self.args
        rng = self.rng
        old, new = self.primary, self.standby
        time.sleep(rng.uniform(a.min_gap, a.max_gap))
        strategy = weighted(rng, STRATEGIES)
        if strategy == "held-exec":
            for provider, path in CREATE_PATHS.items():
                self.mock.fault(provider=provider, path=path, kind="timeout_after",
                                count=rng.randint(1, 4), delay_s=8)
            time.sleep(rng.uniform(0.2, 0.6))
        lag, streaming = old.sql("SELECT extract(epoch FROM max(greatest(write_lag, flush_lag, replay_lag)))::float8,"
                                 " count(*) FILTER (WHERE state = 'streaming') FROM pg_stat_replication")[0]
        if streaming == 0:
            self.failure = f"round {self.round + 1}: the standby does not stream before the kill"
        self.ready.clear()

        def moment():
            if strategy == "mid-commit":
                self.at_next_commit()
            if self.proxy is not None:
                self.proxy.stop()       # the WAL in flight to the standby is lost with the machine
        t_kill = old.kill_all(moment)
        self.round += 1
        t_promote = time.time()      # no request from the new primary before this
        new.promote()
        new.wait_ready(60)
        t_promoted = time.time()
        present = self.keys_on(new)
        self.primary, self.standby = new, old
        self.ready.set()

        # the old primary becomes the new standby, and sends nothing there
        t0 = time.time()
        if self.proxy is not None:
            self.proxy = DelayProxy(new.port, self.args.lag_ms / 1000)
        how = old.rebuild(new, self.proxy)
        old.start()
        new.wait_streaming(old)
        t_rebuilt = time.time()
        fenced = (old.in_recovery() and old.worker_pids() == []
                  and {s for (s,) in old.sql("SELECT state FROM withdraw.workers")} == {"standby"})
        if not fenced:
            self.failure = f"round {self.round}: the rebuilt node runs a worker or does not say standby"

        # what the application saw acknowledged, or could not tell, before the kill
        with self.lock:
            before = [b for b in self.batches if b["t0"] <= t_kill and not b.get("checked")
                      and b["result"] in ("committed", "ambiguous")]
            for b in before:
                b["checked"] = True
        vanished = [b for b in before if b["result"] == "committed" and not any(k in present for k in b["keys"])]
        cut = [b for b in before if b["result"] == "ambiguous"]
        cut_absent = [b for b in cut if not any(k in present for k in b["keys"])]
        for b in vanished + cut_absent:
            self.resubmit(b)
        r = {"round": self.round, "strategy": strategy, "t_kill": t_kill, "t_promote": t_promote, "lag_s": lag,
             "promote_s": t_promoted - t_kill, "rebuild": how, "rebuild_s": t_rebuilt - t0,
             "vanished_batches": len(vanished), "vanished": [k for b in vanished for k in b["keys"]],
             # the client sent COMMIT this long before the kill (and saw it return)
             "vanished_age_s": [t_kill - b["t0"] for b in vanished],
             "cut": len(cut), "cut_absent": len(cut_absent),
             "cut_absent_keys": [k for b in cut_absent for k in b["keys"]]}
        self.rounds.append(r)
        log(f"{self.mode} failover {self.round}: {strategy}, lag before {ms(lag)}, promoted in "
            f"{r['promote_s']:.1f}s, old primary rebuilt by {how} in {r['rebuild_s']:.1f}s; acknowledged "
            f"commits vanished: {len(r['vanished'])} ({len(vanished)} batches); COMMITs cut: {len(cut)} "
            f"({len(cut_absent)} absent, resubmitted)")

    # -- after the run

    def drain(self):
        a = self.args
        started = time.monotonic()
        last, changed_at = None, started
        while True:
            counts = dict(self.primary.sql("SELECT state, count(*) FROM withdraw.withdrawal GROUP BY 1"))
            # a row in review that the workers still poll (given up after its
            # attempts, maybe delivered: ccpayment v1 answers a resent order
            # with its one documented error) settles by itself: not drained yet
            polled = self.primary.sql("SELECT count(*) FROM withdraw.withdrawal"
                                      " WHERE state = 'review' AND next_poll_at IS NOT NULL")[0][0]
            open_ = sum(counts.get(s, 0) for s in OPEN) + polled
            now = time.monotonic()
            if open_ == 0:
                return now - started, "drained"
            if counts != last:
                last, changed_at = counts, now
            if now - started > a.drain_timeout or now - changed_at > 60:
                return now - started, f"NOT drained: {counts}"
            time.sleep(0.25)

    def provider_view(self):
        """Executions, requests and provider ids over both providers, by key."""
        execs, given, requested, creates = Counter(), {}, set(), {}
        zl = self.mock.ledger("zoomex")
        execs.update(zl["executions"])
        for w in zl["withdrawals"]:
            given.setdefault(w["requestId"], w["withdraw_id"])
        cl = self.mock.ledger("ccpayment")
        for k, n in cl["executions"].items():
            execs[k.split("/", 1)[1]] += n
        for w in cl["withdrawals"]:
            given.setdefault(w["merchant_order_id"], w["order_id"])
        duplicates = 0
        for provider, path in CREATE_PATHS.items():
            for q in self.mock.requests(provider):
                if q.get("requestId"):
                    requested.add(q["requestId"])
                    if path in q["path"]:
                        creates.setdefault(q["requestId"], []).append(q["t"])
            duplicates += self.mock.stats(provider).get("duplicates_refused", 0)
        return execs, given, requested, creates, duplicates

    def check(self, drain_s, drained):
        node = self.primary
        rows = {r[0]: r for r in node.sql(
            "SELECT idempotency_key, state, provider_id, last_error, id FROM withdraw.withdrawal")}
        live = [b for b in self.batches if not b.get("superseded")]
        committed, not_committed, ambiguous, partial = settle_batches(live, rows)
        execs, given, requested, creates, duplicates = self.provider_view()
        v = verdicts(committed, not_committed, rows, execs, requested, given, partial)
        for n in self.nodes:
            for k, x in log_verdicts(n.log_text()).items():
                v[f"{k} ({n.name})"] = x
        v["rebuilt node not fenced"] = [self.failure] if self.failure and "rebuilt" in self.failure else []

        # sends whose record vanished: the provider received a create from the
        # old primary of a round, and the surviving history has no claim of it
        # before that round's kill
        claimed_before = {}
        for key, at in node.sql("SELECT w.idempotency_key, min(extract(epoch FROM e.at))::float8"
                                " FROM withdraw.event e JOIN withdraw.withdrawal w ON w.id = e.withdrawal_id"
                                " WHERE e.to_state = 'sending' GROUP BY 1"):
            claimed_before[key] = at
        # requests that arrive between a round's kill and its promotion are
        # the old primary's, in flight when it died
        kills = [r["t_promote"] for r in self.rounds]
        orphan, unrecorded = Counter(), Counter()
        orphan_keys, unrecorded_keys = [], []
        resent = 0
        for i, r in enumerate(self.rounds):
            lo = kills[i - 1] if i else 0
            sent = {k for k, ts in creates.items() if any(lo < t <= r["t_promote"] for t in ts)}
            # in flight across the failover: the new primary sent it again, same key
            resent += sum(1 for k in sent if any(t > r["t_promote"] for t in creates[k]))
            vanished_rows = set(r["vanished"]) | set(r["cut_absent_keys"])
            for k in sent:
                if k in vanished_rows:
                    orphan[r["round"]] += 1
                    orphan_keys.append(k)
                elif claimed_before.get(k, float("inf")) > r["t_kill"]:
                    unrecorded[r["round"]] += 1
                    unrecorded_keys.append(k)
        all_recover = (set(orphan_keys) | set(unrecorded_keys)
                       | {k for r in self.rounds for k in r["vanished"] + r["cut_absent_keys"]})
        recovered = {k for k in all_recover if execs.get(k, 0) == 1 and k in rows and rows[k][1] == "succeeded"}
        # a send whose claim vanished is sent again as a first send; the
        # provider's duplicate answer then reads as a key of another request
        # (policy.c): review, paid once, for a person to confirm
        held = {k for k in all_recover if execs.get(k, 0) == 1 and k in rows and rows[k][1] == "review"
                and "already has this idempotency key" in (rows[k][3] or "")}
        if self.mode == "async":
            v["review"] = sorted(set(v["review"]) - held)
        v["not recovered"] = sorted(all_recover - recovered - held)
        if self.mode == "sync":
            v["sync: acknowledged commit vanished"] = sorted(k for r in self.rounds for k in r["vanished"])
            v["sync: send whose record vanished"] = sorted(set(orphan_keys) | set(unrecorded_keys))

        vanished_n = [len(r["vanished"]) for r in self.rounds]
        ages = [x for r in self.rounds for x in r["vanished_age_s"]]
        lags = [r["lag_s"] for r in self.rounds if r["lag_s"] is not None]
        states = Counter(r[1] for r in rows.values())
        figures = [
            ("mode", f"{self.mode} (synchronous_standby_names "
                     f"{'ANY 1 (node_a, node_b)' if self.mode == 'sync' else 'empty'})"),
            ("failovers (kill -9 of the primary, promote, rebuild)", len(self.rounds)),
            ("kill strategies", ", ".join(f"{s} {n}" for s, n in sorted(Counter(r["strategy"] for r in self.rounds).items()))),
            ("old primary rebuilt by", ", ".join(f"{s} {n}" for s, n in sorted(Counter(r["rebuild"] for r in self.rounds).items()))),
            ("kill -> new primary's workers running (p50 / max)",
             f"{pct([r['promote_s'] for r in self.rounds], 50):.1f} / {max(r['promote_s'] for r in self.rounds):.1f} s"),
            ("replication link delay each way", f"{self.args.lag_ms} ms"),
            ("replication lag sampled before the kill (max)", ms(max(lags) if lags else None)),
            ("withdrawals committed (final) / accounts", f"{len(committed)} / {len(self.accounts)}"),
            ("batches rolled back / COMMITs cut by a kill", f"{sum(1 for b in live if b['result'] == 'rolled back')} / "
                                                            f"{sum(r['cut'] for r in self.rounds)}"),
            ("acknowledged commits vanished (withdrawals; per failover)",
             f"{sum(vanished_n)}; {', '.join(map(str, vanished_n))}"),
            ("  COMMIT sent before the kill (p50 / max)", f"{ms(pct(ages, 50))} / {ms(max(ages) if ages else None)}"),
            ("sends whose record vanished: row gone (orphan at the provider)", sum(orphan.values())),
            ("sends whose record vanished: row kept, claim gone (sent again)", sum(unrecorded.values())),
            ("sent before a kill and again after it (same key)", resent),
            ("resubmitted by the application with the same keys (batches)",
             sum(1 for b in self.batches if b.get("resubmitted"))),
            ("provider duplicate answers (zoomex 10014, ccpayment 11011)", duplicates),
            ("to recover: vanished rows + sends whose record vanished", len(all_recover)),
            ("  recovered: executed once and succeeded", len(recovered)),
            ("  held in review (duplicate key on a first send), executed once", len(held)),
            ("mock executions / create requests", f"{sum(execs.values())} / {sum(len(t) for t in creates.values())}"),
            ("final states", ", ".join(f"{s} {n}" for s, n in sorted(states.items()))),
            ("lost", len(v["lost"])),
            ("doubled", len(v["doubled"])),
            ("sent-after-rollback", len(v["sent after rollback"])),
            ("stuck", len(v["stuck"])),
            ("review (other than held)", len(v["review"])),
            ("drain after the last failover", f"{drain_s:.1f}s ({drained})"),
        ]
        return figures, v, rows

    def run(self):
        t0 = time.monotonic()
        self.setup()
        producer = threading.Thread(target=self.produce, name="producer", daemon=True)
        producer.start()
        try:
            for _ in range(self.args.rounds):
                if self.failure:
                    break
                self.failover()
            time.sleep(self.args.min_gap)
        finally:
            self.producing = False
            self.ready.set()
        producer.join(60)
        if self.failure and "producer" in self.failure:
            raise RuntimeError(self.failure)
        drain_s, drained = self.drain()
        figures, v, rows = self.check(drain_s, drained)
        figures.append(("runtime", f"{time.monotonic() - t0:.0f}s"))
        ok = not any(v.values())
        print_figures(f"failover suite, {self.mode} ({'quick' if self.args.quick else 'full'}, "
                      f"seed {self.args.seed})", figures)
        if not ok:
            for name, keys in v.items():
                if keys:
                    print(f"--- {name}: {len(keys)}  e.g. {keys[:8]}")
                    for k in keys[:3]:
                        if k in rows:
                            print("     ", rows[k][:4], self.primary.state_path(rows[k][4]))
            for n in self.nodes:
                print(f"---- {n.name} server log (tail) ----")
                print("\n".join(n.log_text().splitlines()[-20:]))
        print(f"failover suite, {self.mode}: "
              f"{'PASSED' if ok else 'FAILED: ' + ', '.join(k for k, x in v.items() if x)}")
        return ok

    def destroy(self):
        if self.proxy is not None:
            self.proxy.stop()
        for n in reversed(self.nodes):
            n.destroy()
        if self.mock is not None:
            self.mock.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI size: 2 failovers per mode")
    ap.add_argument("--mode", choices=("sync", "async", "both"), default="both")
    ap.add_argument("--rounds", type=int, help="failovers per mode (default 10; --quick 2)")
    ap.add_argument("--zoomex", type=int, default=4, help="zoomex accounts")
    ap.add_argument("--ccpayment", type=int, default=2, help="ccpayment (v1) accounts")
    ap.add_argument("--batch", type=int, default=10, help="withdrawals per transaction")
    ap.add_argument("--rollback", type=float, default=0.1, help="share of batches rolled back")
    ap.add_argument("--rate", type=float, help="withdrawals offered per second (default 120; --quick 80)")
    ap.add_argument("--min-gap", type=float, help="min seconds of production before a kill (default 3)")
    ap.add_argument("--max-gap", type=float, help="max seconds of production before a kill (default 8; --quick 5)")
    ap.add_argument("--lag-ms", type=int, default=20,
                    help="delay of the replication link each way (a TCP relay; 0 = direct)")
    ap.add_argument("--workers", type=int, help="withdraw.workers (default: harness's)")
    ap.add_argument("--drain-timeout", type=float, default=300)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if args.rounds is None:
        args.rounds = 2 if args.quick else 10
    if args.rate is None:
        args.rate = 80.0 if args.quick else 120.0
    if args.min_gap is None:
        args.min_gap = 3.0
    if args.max_gap is None:
        args.max_gap = 5.0 if args.quick else 8.0
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 30)
    modes = ("sync", "async") if args.mode == "both" else (args.mode,)
    ok = True
    for mode in modes:
        run = FailoverRun(args, mode)
        try:
            ok = run.run() and ok
        except Exception as e:  # noqa: BLE001 - report, clean up, go on with the next mode
            ok = False
            print(f"failover suite, {mode}: FAILED: {e!r}", flush=True)
            for n in run.nodes:
                print(f"---- {n.name} server log (tail) ----")
                print("\n".join(n.log_text().splitlines()[-20:]))
        finally:
            run.destroy()
    print(f"failover suite: {'PASSED' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
