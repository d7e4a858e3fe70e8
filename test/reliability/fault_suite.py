#!/usr/bin/env python3
"""Fault suite: one withdrawal per injected fault, followed until it settles;
its final state, the provider's executions (mock ledger), the create requests
the mock received and the outcomes of the create attempts are compared with
what the README's classification says.

Each case gets a fresh zoomex account (its own api_key, so no case shares a
rate limit with another) with the provider's default create interval (1 s,
the mock enforcing 1 request/s), poll_interval_ms 250 (one case polls faster
than polls_per_second allows) and request_timeout_ms 1000; the fault is queued
on the mock for the next inner-create (count 1) before the withdrawal is
created.  A case settles when the withdrawal is terminal or in review and
stays so for 1.5 s (so that a retry that should not happen would be seen).
Besides state, executions, create requests and create outcomes, every case
checks the README's rate-limit promise: the provider never sees two creates
of an account closer than its create_interval_ms.  The cases run in order on
one server; the first (no fault) opens the keep-alive connection that the
following ones reuse, as in production.

Expected outcomes (README "How it stays exactly-once" and the zoomex
classification): 0 -> submitted; 10006/10018 and HTTP 403 -> retried after
the provider's wait; 10002 -> retried; 10014 -> reconcile (review at once when
nothing of ours can have arrived before: the key is another's); 10016, 5xx,
garbage, timeouts and resets -> unknown, resent with the same requestId
(a provider that executed it answers 10014, then reconcile finds it);
10001/10003/10004/10005/10007/10009/10010/110004/110007/110012 -> rejected,
never retried.  A maybe-delivered withdrawal is never failed or rejected
without the provider's word: after max_attempts it goes to review.

Server settings: the harness defaults, except withdraw.retry_max_delay = 10 s
(instead of the harness's 1 s) so that max_attempts (20) spans more than the
minute of the provider-down case, as the production default (5 min) does.

Run as an ordinary user, e.g.
    runuser -u postgres -- /usr/bin/python3 test/reliability/fault_suite.py [--quick] [name-filter ...]
--quick shortens the provider-down case from 60 s to 15 s.  Exit status 1 on
any mismatch.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))

from harness import Cluster, Mock  # noqa: E402

TERMINAL = ("succeeded", "failed", "rejected", "cancelled", "expired")
SETTLED = TERMINAL + ("review",)
N_KEYS = 64
KEYS = {f"fk{i}": f"fault-secret-{i}-{'z' * 10}" for i in range(N_KEYS)}

RESENT_THEN_FOUND = ["unknown", "reconcile"]      # executed, answer lost: 10014 then reconcile
RESENT_THEN_OK = ["unknown", "submitted"]         # not executed: the resend is the first execution
MOCK_DEFAULTS = {"duplicate_mode": "error", "create_interval_s": 1.0, "query_limit_per_min": 300}


def case(name, fault, state, executions, creates, outcomes=None, options=None, timeout=30.0, mock_config=None,
         note="", followers=0, warm=False):
    """fault: one fault or a list queued in order; outcomes: the create
    attempts' outcomes, or a list of acceptable lists; followers: that many
    more withdrawals of the same account, created once the first has been
    executed at the provider; warm: first let another withdrawal go through,
    so that libcurl holds an idle keep-alive connection to the provider (the
    one a reset kills: libcurl would resend on a fresh one by itself)."""
    return {"name": name, "fault": fault, "state": state, "executions": executions, "creates": creates,
            "outcomes": outcomes, "options": options or {}, "timeout": timeout, "mock_config": mock_config,
            "note": note, "followers": followers, "warm": warm}


def rejected(code):
    return case(f"retCode {code}", {"kind": "retcode", "code": code}, "rejected", 0, 1, ["rejected"])


def cases(down_s):
    out = [
        case("no fault (baseline)", None, "succeeded", 1, 1, ["submitted"],
             note="also opens the keep-alive connection the next cases reuse"),
        case("http 500", {"kind": "http_500"}, "succeeded", 1, 2, RESENT_THEN_OK),
        case("http 502", {"kind": "http_502"}, "succeeded", 1, 2, RESENT_THEN_OK),
        case("http 503", {"kind": "http_503"}, "succeeded", 1, 2, RESENT_THEN_OK),
        case("http 403", {"kind": "http_403"}, "succeeded", 1, 2, ["not delivered", "submitted"],
             options={"ip_ban_wait_ms": 2000}, note="ip_ban_wait_ms 2000"),
        case("timeout after execution", {"kind": "timeout_after", "delay_s": 3}, "succeeded", 1, 2,
             RESENT_THEN_FOUND),
        case("timeout before execution", {"kind": "timeout_before", "delay_s": 3}, "succeeded", 1, 2,
             RESENT_THEN_OK),
        # libcurl would resend a request by itself when a reused connection dies
        # under it; the extension refuses that rewind, so every send is its own
        case("reset before execution", {"kind": "reset"}, "succeeded", 1, 2, RESENT_THEN_OK, warm=True),
        case("reset after execution", {"kind": "reset_after"}, "succeeded", 1, 2, RESENT_THEN_FOUND, warm=True),
        case("garbage body", {"kind": "garbage"}, "succeeded", 1, 2, RESENT_THEN_OK),
        case("garbage after execution", {"kind": "garbage_after"}, "succeeded", 1, 2, RESENT_THEN_FOUND),
        rejected(10001),
        case("retCode 10002", {"kind": "retcode", "code": 10002}, "succeeded", 1, 2,
             ["not delivered", "submitted"]),
        rejected(10003),
        rejected(10004),
        rejected(10005),
        case("retCode 10006", {"kind": "retcode", "code": 10006}, "succeeded", 1, 2,
             ["not delivered", "submitted"]),
        rejected(10007),
        rejected(10009),
        rejected(10010),
        case("retCode 10014 on first send", {"kind": "retcode", "code": 10014}, "review", 0, 1, ["duplicate"],
             note="nothing of ours can have arrived: the key is another's, review at once"),
        case("retCode 10016", {"kind": "retcode", "code": 10016}, "succeeded", 1, 2, RESENT_THEN_OK),
        case("retCode 10018", {"kind": "retcode", "code": 10018}, "succeeded", 1, 2,
             ["not delivered", "submitted"]),
        rejected(110004),
        rejected(110007),
        rejected(110012),
        # beyond the list: the give-up rules and the provider's other duplicate behaviour
        case("reset after execution, max_attempts 1", {"kind": "reset_after"}, "succeeded", 1, (1, None), None,
             options={"max_attempts": 1}, warm=True,
             note="executed: never failed; given up to review, then found by reconcile"),
        case("timeout after exec, then 110004", [{"kind": "timeout_after", "delay_s": 3},
                                                 {"kind": "retcode", "code": 110004}], "succeeded", 1, 2,
             ["unknown", "rejected"],
             note="the resend is refused for good: maybe delivered, so review, then found by reconcile"),
        case("503 until max_attempts (3)", {"kind": "http_503", "count": 3}, "review", 0, 3,
             ["unknown"] * 3, options={"max_attempts": 3}, note="maybe delivered: review, never failed"),
        case("10002 until max_attempts (3)", {"kind": "retcode", "code": 10002, "count": 3}, "failed", 0, 3,
             ["not delivered"] * 3, options={"max_attempts": 3}, note="surely not delivered: failed"),
        case("timeout after exec, dup=original", {"kind": "timeout_after", "delay_s": 3}, "succeeded", 1, 2,
             ["unknown", "submitted"], mock_config={"duplicate_mode": "original"},
             note="repeat answered retCode 0 + original id"),
        case("timeout after exec, busy account", {"kind": "timeout_after", "delay_s": 3}, "succeeded", 1, 2,
             RESENT_THEN_FOUND, followers=60,
             options={"create_interval_ms": 0, "polls_per_second": 0, "reconcile_timeout_ms": 10000},
             mock_config={"create_interval_s": 0, "query_limit_per_min": 100000},
             note="60 more transfers of the account follow before the reconcile"),
        case("status query 502 x3", {"kind": "http_502", "count": 3, "path": "query-record"}, "succeeded", 1, 1,
             ["submitted"], note="polls retried"),
        case("timeout, then 10014, poll_interval_ms 100",
             [{"kind": "timeout_before", "delay_s": 3}, {"kind": "retcode", "code": 10014}], "review", 0, 2,
             ["unknown", "reconcile"], options={"reconcile_timeout_ms": 5000, "poll_interval_ms": 100}, timeout=30,
             note="never executed; searched by polls faster than polls_per_second (5/s) allows, then review"),
        case(f"provider down {down_s}s", {"kind": "down", "duration_s": down_s, "path": ""}, "succeeded", 1,
             (2, None), None, timeout=down_s + 60, warm=True, note="every request reset"),
    ]
    return out


class FaultRun:
    def __init__(self, args):
        self.args = args
        self.cluster = None
        self.mock = None
        self.next_key = 0
        self.warm_account = None
        self.warm_n = 0

    def setup(self):
        self.mock = Mock({"zoomex": {"keys": KEYS, "status_schedule": [["Pending Transfer", 0.2]]}})
        self.cluster = Cluster(settings={"withdraw.retry_max_delay": "10000"}, keep=self.args.keep).start()
        self.cluster.sql("CREATE EXTENSION withdraw")
        self.cluster.wait_ready()

    def new_account(self, options):
        n = self.next_key
        self.next_key += 1
        name = f"f{n}"
        opts = {"poll_interval_ms": 250, "request_timeout_ms": 1000}
        opts.update(options)
        self.cluster.sql("SELECT withdraw_account_create(%s, 'zoomex', %s, %s, %s)",
                         (name, self.mock.base_url("zoomex"),
                          json.dumps({"api_key": f"fk{n}", "api_secret": KEYS[f"fk{n}"]}), json.dumps(opts)))
        return name, n

    def row(self, wid):
        r = self.cluster.sql("SELECT state, provider_status, provider_id, attempts, last_error"
                             " FROM withdraw.withdrawal WHERE id = %s", (wid,))[0]
        return dict(zip(("state", "provider_status", "provider_id", "attempts", "last_error"), r))

    def warm_up(self):
        """One withdrawal without fault on an account of its own, followed to
        the end: libcurl then holds an idle connection to the mock."""
        if self.warm_account is None:
            self.warm_account, _ = self.new_account({"create_interval_ms": 0})
        self.warm_n += 1
        wid = self.cluster.value("SELECT withdraw_create(%s, %s)",
                                 (self.warm_account, json.dumps({"requestId": f"warm{self.warm_n}x{int(time.time())}",
                                                                 "coin": "USDT", "addressType": 3,
                                                                 "address": f"77{self.warm_n:04d}", "amount": "1.00"})))
        deadline = time.monotonic() + 10
        while self.row(wid)["state"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.05)

    def run_case(self, c):
        if c["warm"]:
            self.warm_up()
        account, n = self.new_account(c["options"])
        rid = f"fault{n}x{int(time.time())}"
        if c["mock_config"]:
            self.mock.configure({"zoomex": c["mock_config"]})
        faults = c["fault"] if isinstance(c["fault"], list) else [c["fault"]] if c["fault"] else []
        for spec in faults:     # queued in order: the first matching request takes the first
            fault = {"provider": "zoomex", "path": "inner-create", "count": 1}
            fault.update(spec)
            if fault.get("path") == "":
                del fault["path"]
            if fault["kind"] == "down":
                del fault["count"]
            self.mock.fault(**fault)
        started = time.monotonic()
        wid = self.cluster.value("SELECT withdraw_create(%s, %s)",
                                 (account, json.dumps({"requestId": rid, "coin": "USDT", "addressType": 3,
                                                       "address": str(900000 + n), "amount": "3.50"})))
        settled_at = None
        try:
            if c["followers"]:
                deadline = time.monotonic() + 10
                while self.mock.ledger()["executions"].get(rid, 0) == 0 and time.monotonic() < deadline:
                    time.sleep(0.02)
                self.cluster.sql("SELECT withdraw_create(%s, r) FROM unnest(%s::jsonb[]) AS r",
                                 (account, [json.dumps({"requestId": f"{rid}f{i}", "coin": "USDT", "addressType": 3,
                                                        "address": f"{900000 + n}{i:03d}", "amount": "3.50"})
                                            for i in range(c["followers"])]))
            while True:
                r = self.row(wid)
                if r["state"] in SETTLED:
                    if settled_at is None:
                        settled_at = time.monotonic()
                    elif time.monotonic() - settled_at >= 1.5:
                        break
                else:
                    settled_at = None
                if time.monotonic() - started > c["timeout"]:
                    break
                time.sleep(0.05)
        finally:
            if c["mock_config"]:
                self.mock.configure({"zoomex": {k: MOCK_DEFAULTS[k] for k in c["mock_config"]}})
        took = (settled_at or time.monotonic()) - started
        r = self.row(wid)
        execs = self.mock.ledger()["executions"].get(rid, 0)
        creates = [x for x in self.mock.requests() if x.get("requestId") == rid and "inner-create" in x["path"]]
        outcomes = [o for (o,) in self.cluster.sql("SELECT outcome FROM withdraw.attempt WHERE withdrawal_id = %s"
                                                   " AND kind = 'create' ORDER BY id", (wid,))]
        polls = self.cluster.value("SELECT count(*) FROM withdraw.attempt WHERE withdrawal_id = %s AND kind = 'status'",
                                   (wid,))
        events = [t for (t,) in self.cluster.sql("SELECT to_state FROM withdraw.events WHERE withdrawal_id = %s"
                                                 " ORDER BY at", (wid,))]
        lo, hi = c["creates"] if isinstance(c["creates"], tuple) else (c["creates"], c["creates"])
        problems = []
        if r["state"] != c["state"]:
            problems.append(f"state {r['state']} (expected {c['state']})")
        if execs != c["executions"]:
            problems.append(f"{execs} executions (expected {c['executions']})")
        if len(creates) < lo or (hi is not None and len(creates) > hi):
            problems.append(f"{len(creates)} create requests (expected {c['creates']})")
        expected = c["outcomes"]
        if expected is not None:
            choices = expected if expected and isinstance(expected[0], list) else [expected]
            if outcomes not in choices:
                problems.append(f"create outcomes {outcomes} (expected {' or '.join(map(str, choices))})")
        # README: "the provider never sees two [creates] closer than the interval, whatever the network does"
        interval = c["options"].get("create_interval_ms", 1000) / 1000.0
        gaps = [b["t"] - a["t"] for a, b in zip(creates, creates[1:])]
        min_gap = min(gaps) if gaps else None
        if interval > 0 and min_gap is not None and min_gap < interval:
            problems.append(f"the provider saw two creates {min_gap * 1000:.0f} ms apart"
                            f" (create_interval_ms {interval * 1000:.0f})")
        if isinstance(c["fault"], dict) and c["fault"]["kind"] == "down" and (not outcomes or outcomes[-1] != "submitted"):
            problems.append(f"last create outcome {outcomes[-1:] or None} (expected submitted)")
        attempts = self.cluster.sql("SELECT to_char(started_at, 'HH24:MI:SS.MS'), kind, http_status, outcome,"
                                    " left(coalesce(error, response_body), 90) FROM withdraw.attempt"
                                    " WHERE withdrawal_id = %s ORDER BY id LIMIT 8", (wid,))
        at_mock = [(time.strftime("%H:%M:%S", time.localtime(x["t"])) + f".{int(x['t'] * 1000) % 1000:03d}",
                    x.get("fault"), x.get("ret_code"), "executed" if x.get("executed") else "-",
                    f"port {x.get('client_port')}") for x in creates]
        return {"case": c, "wid": wid, "row": r, "executions": execs, "creates": len(creates), "outcomes": outcomes,
                "min_gap": min_gap,
                "attempts": attempts, "at_mock": at_mock,
                "polls": polls, "events": events, "took": took, "problems": problems}

    def run(self):
        t0 = time.monotonic()
        self.setup()
        down_s = 15 if self.args.quick else 60
        results = []
        for c in cases(down_s):
            if self.args.only and not any(o in c["name"] for o in self.args.only):
                continue
            res = self.run_case(c)
            results.append(res)
            mark = "ok" if not res["problems"] else "MISMATCH"
            print(f"  {c['name']:<34} {res['row']['state']:<10} {res['took']:5.1f}s  {mark}", flush=True)
        self.report(results, time.monotonic() - t0)
        return all(not r["problems"] for r in results)

    def report(self, results, total):
        def exp_creates(c):
            lo_hi = c["creates"]
            if not isinstance(lo_hi, tuple):
                return str(lo_hi)
            return f">={lo_hi[0]}" if lo_hi[1] is None else f"{lo_hi[0]}-{lo_hi[1]}"
        rows = [("fault", "expected", "actual", "exec exp/act", "creates exp/act", "min gap", "create outcomes",
                 "time", "ok?")]
        for r in results:
            c = r["case"]
            rows.append((c["name"], c["state"], r["row"]["state"], f"{c['executions']}/{r['executions']}",
                         f"{exp_creates(c)}/{r['creates']}",
                         "-" if r["min_gap"] is None else f"{r['min_gap']:.3f}s",
                         ",".join(r["outcomes"]) or "-", f"{r['took']:.1f}s", "ok" if not r["problems"] else "NO"))
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        print(f"\nfault suite ({'quick' if self.args.quick else 'full'})")
        for i, row in enumerate(rows):
            print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
            if i == 0:
                print("  ".join("-" * w for w in widths))
        bad = [r for r in results if r["problems"]]
        for r in results:
            c = r["case"]
            if r["problems"] or c["note"] or self.args.verbose:
                print(f"\n{c['name']}{' (' + c['note'] + ')' if c['note'] else ''}: withdrawal {r['wid']}, "
                      f"{r['polls']} status polls; path {' > '.join(r['events'])}")
                print(f"    last_error: {r['row']['last_error']}")
                for p in r["problems"]:
                    print(f"    MISMATCH: {p}")
                if r["problems"] or self.args.verbose:
                    print("    attempts (started, kind, http, outcome, error/body):")
                    for a in r["attempts"]:
                        print(f"      {a}")
                    print("    creates at the mock (arrival, fault, retCode, executed, client port):")
                    for m in r["at_mock"]:
                        print(f"      {m}")
        print(f"\nfault suite: {len(results) - len(bad)} of {len(results)} as expected; {total:.0f}s"
              + (f"; MISMATCH: {', '.join(r['case']['name'] for r in bad)}" if bad else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="provider down for 15 s instead of 60 s")
    ap.add_argument("--keep", action="store_true", help="keep the cluster directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case's path")
    ap.add_argument("only", nargs="*", help="run only the cases whose name contains one of these")
    args = ap.parse_args()
    run = FaultRun(args)
    ok = False
    try:
        ok = run.run()
    finally:
        if run.cluster is not None:
            if not ok:
                print("---- server log (tail) ----")
                print("\n".join(run.cluster.log_text().splitlines()[-15:]))
            run.cluster.destroy()
        if run.mock is not None:
            run.mock.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
