"""What the reliability suites check, shared by crash_suite.py and
failover_suite.py: the verdicts (lost, doubled at the provider, sent after
rollback, stuck, ...) drawn from the batches the producer offered, the rows
the database holds and the mock providers' ledgers and request logs, plus the
small helpers both use.  The processes helpers are in
test/integration/replication.py."""

import re
import time
from collections import Counter

import psycopg2

TERMINAL = ("succeeded", "failed", "rejected", "cancelled", "expired")
OPEN = ("queued", "sending", "unknown", "submitted", "processing")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def is_disconnect(e):
    """A psycopg2 error that means the server went away (not a bad statement)."""
    if isinstance(e, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return True
    code = getattr(e, "pgcode", None)
    return isinstance(e, psycopg2.Error) and (code is None or code[:2] in ("08", "57"))


def weighted(rng, pairs):
    total = sum(w for _, w in pairs)
    x = rng.uniform(0, total)
    for item, w in pairs:
        x -= w
        if x <= 0:
            return item
    return pairs[-1][0]


def settle_batches(batches, rows):
    """Which keys were committed, from the producer's batches (dicts with keys
    and result: committed, rolled back, aborted, ambiguous) and the rows the
    database holds (by idempotency key): a COMMIT cut by a kill counts as
    the database says.  Returns (committed, not_committed, ambiguous counts,
    partial batches)."""
    committed, not_committed = set(), set()
    ambiguous = Counter()
    partial = []
    for b in batches:
        present = [k for k in b["keys"] if k in rows]
        if b["result"] == "committed":
            committed.update(b["keys"])
        elif b["result"] == "ambiguous":
            if present and len(present) != len(b["keys"]):
                partial.append(b["keys"][0])
            ambiguous["committed" if present else "not committed"] += 1
            (committed if present else not_committed).update(b["keys"])
        else:
            not_committed.update(b["keys"])
    return committed, not_committed, ambiguous, partial


def verdicts(committed, not_committed, rows, execs, requested, given_id, partial=()):
    """Every way a run can have gone wrong, each a sorted list of keys (empty:
    it held).  rows: key -> (key, state, provider_id, last_error, id);
    execs: key -> times executed at the provider; requested: keys that
    reached a provider; given_id: key -> the provider's id for it."""
    v = {}
    v["lost"] = sorted(k for k in committed if execs.get(k, 0) == 0)
    v["doubled"] = sorted(k for k in committed if execs.get(k, 0) > 1)
    v["sent after rollback"] = sorted(k for k in not_committed if k in requested)
    v["stored after rollback"] = sorted(k for k in not_committed if k in rows)
    v["committed but missing"] = sorted(k for k in committed if k not in rows)
    v["unknown rows"] = sorted(k for k in rows if k not in committed and k not in not_committed)
    v["stuck"] = sorted(k for k in committed if k in rows and rows[k][1] in OPEN)
    v["review"] = sorted(k for k in committed if k in rows and rows[k][1] == "review")
    v["not succeeded"] = sorted(k for k in committed if k in rows and rows[k][1] in TERMINAL
                                and rows[k][1] != "succeeded")
    v["wrong provider id"] = sorted(k for k in committed if k in rows and rows[k][2] is not None
                                    and rows[k][2] != given_id.get(k))
    v["phantom executions"] = sorted(k for k in execs if k not in committed)
    v["partial batches"] = list(partial)
    return v


def log_verdicts(text):
    """From a server log: crashes other than the suite's SIGKILLs, PANICs and
    assertion failures."""
    return {
        "server crashes not ours": sorted(set(
            m.group(0) for m in re.finditer(r"terminated by signal (?!9\b)\d+[^\n]*", text))),
        "PANIC/TRAP": [ln for ln in text.splitlines() if "PANIC" in ln or "TRAP:" in ln][:5],
    }


def print_figures(title, figures):
    width = max(len(k) for k, _ in figures)
    print(f"\n{title}")
    print(f"{'figure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 30}")
    for k, val in figures:
        print(f"{k:<{width}}  {val}")
