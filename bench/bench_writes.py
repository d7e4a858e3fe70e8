"""Issue 21, part 1: what one withdrawal sent writes, counted so that the
figures do not depend on the machine's speed, beside the same counts for the
smallest honest design measured in the same run.

withdraw (database postgres): N zoomex withdrawals created in ONE transaction
(withdraw_create over generate_series, as bench_sink.py's one-transaction
row) and dispatched to the nginx sink (benchlib.Nginx: a canned success with
a unique withdraw_id), withdraw.workers 2, withdraw.max_in_flight 64, polls a
day away.  Counted from just before the create until all are submitted and
the statistics have settled:

  WAL bytes         pg_current_wal_insert_lsn() delta (all of the cluster's
                    WAL in the window), pg_stat_wal's wal_bytes / wal_fpi /
                    wal_records / wal_sync beside it;
  where it goes     pg_waldump over the same LSN range: every record
                    attributed to the relation of its first block reference
                    (relfilenode -> pg_class of its database), with its
                    record bytes and full-page-image bytes apart (tot - rec
                    of pg_waldump's "len (rec/tot)"), and
                    pg_waldump --stats=record for the record types;
  row versions      pg_stat_all_tables n_tup_ins / n_tup_upd / n_tup_hot_upd
                    / n_tup_del deltas;
  index insertions  counted in the WAL, per index: one b-tree leaf insertion
                    is exactly one Btree INSERT_LEAF or INSERT_POST record, or
                    a level-0 SPLIT_L / SPLIT_R record (a leaf split logs the
                    incoming tuple with the split).  INSERT_UPPER / level > 0
                    splits are downlinks, DEDUP merges existing tuples: not
                    counted.  (pg_stat_all_indexes counts reads only; the
                    index's size moves by pages, not tuples.)  Cross-check:
                    each table's primary key gets one per inserted row and
                    one per non-HOT update.  GIN (an experiment's) is not
                    counted: its pending-list records carry many keys each.
  statements        pg_stat_statements (track = all: the workers' SPI
                    statements and the triggers' nested ones) calls,
                    top-level and nested, and each statement's wal_bytes;
  commits           COMMIT records in the WAL (transactions that wrote, i.e.
                    the commits a synchronous commit must flush), and
                    pg_stat_database.xact_commit (every transaction,
                    read-only ones too; the benchmark's own are subtracted).

Two windows each: "between checkpoints" (no checkpoint inside: the steady
state) and "after a CHECKPOINT" (every page touched for the first time since
then is logged whole: what a window of N costs just after a checkpoint, the
full-page-image worst case).  A VACUUM of the tables after the first window
is measured too (deferred cost of the dead versions: autovacuum is off so it
cannot fall into a window).

The baseline (database bench_baseline, same cluster, same settings, measured
right after withdraw's window): the smallest honest design, see BASELINE_DDL:
the withdrawal row inserted once; the claim inserts one history row (the
attempt: withdrawal id, attempt number, start time, the request body sent),
committed before anything is sent (that committed row is the "sending"
mark: exactly once is its primary key); the outcome updates the row once
(state, provider id, response, next poll).  Driven by a procedure doing what
the worker does per batch (claim + commit, outcome + commit; the batch size
is withdraw's mean one in the same run, from its commit count), with no
HTTP; request and response bodies of the same length as withdraw's attempts.
Its WAL bytes and b-tree insertions are counted the same way.

Production settings: fsync on, synchronous_commit on, full_page_writes on,
wal_level replica (BENCH_FSYNC=off changes nothing here but the rate: the
counts do not depend on it).  No data checksums (initdb default): with them,
hint bits add full-page images too.

Scratch experiments (SQL only, nothing in the extension changes): --withdraw-sql
runs statements as superuser in withdraw's database after CREATE EXTENSION and
before the warm-up (e.g. "ALTER TABLE withdraw.withdrawal SET (fillfactor =
50)"), --baseline-sql the same for the baseline's; what the windows then count
is the change's effect.  "@FILE" reads the SQL from a file
(bench/issue21_prototype.sql: the changes SQL alone can try).

Usage: python3 bench/bench_writes.py [--quick] [--n 10000] [--withdraw-sql SQL|@FILE]
       [--baseline-sql SQL|@FILE] [--set NAME=VALUE ...]
"""

import argparse
import collections
import os
import re
import subprocess
import time

import psycopg2

from benchlib import (CREATE_SERIES_SQL, HUGE_MS, Nginx, Table, bench_cluster, create_account,
                      durability_note, install_signal_handlers, log)

MARK = "/* bench_writes */"

BASELINE_DDL = """
CREATE TABLE withdrawal (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id integer NOT NULL,
    idempotency_key text NOT NULL,
    request jsonb NOT NULL,
    asset text,
    amount numeric NOT NULL CHECK (amount > 0),
    destination text,
    state text NOT NULL DEFAULT 'queued',
    provider_id text,
    response text,
    created_by name NOT NULL DEFAULT current_user,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    next_poll_at timestamptz,
    UNIQUE (account_id, idempotency_key)
);
-- due work, due polls, one provider id per withdrawal: what any design needs to find
CREATE INDEX withdrawal_due_send ON withdrawal (account_id, id) WHERE state = 'queued';
CREATE INDEX withdrawal_due_poll ON withdrawal (account_id, next_poll_at) WHERE state IN ('submitted', 'processing');
CREATE UNIQUE INDEX withdrawal_provider_id ON withdrawal (account_id, provider_id) WHERE provider_id IS NOT NULL;
-- the history row: committed before the request leaves (the 'sending' mark)
CREATE TABLE attempt (
    withdrawal_id bigint NOT NULL,
    n integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    request_body text,
    PRIMARY KEY (withdrawal_id, n)
);
CREATE PROCEDURE dispatch(batch integer, request_len integer, response_len integer)
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    LOOP
        -- claim: one history row per withdrawal, committed before sending
        WITH c AS (
            INSERT INTO attempt (withdrawal_id, n, request_body)
            SELECT w.id, 1, repeat('r', request_len) FROM withdrawal w
            WHERE w.account_id = 1 AND w.state = 'queued'
              AND NOT EXISTS (SELECT 1 FROM attempt a WHERE a.withdrawal_id = w.id)
            ORDER BY w.id LIMIT batch
            RETURNING withdrawal_id)
        SELECT array_agg(withdrawal_id) INTO ids FROM c;
        EXIT WHEN ids IS NULL;
        COMMIT;
        -- (the requests go out here)
        -- outcome: the row updated once
        UPDATE withdrawal w SET state = 'submitted', provider_id = 'p' || w.id,
               response = repeat('a', response_len), updated_at = now(),
               next_poll_at = now() + interval '1 day'
        WHERE w.id = ANY (ids);
        COMMIT;
    END LOOP;
END $$;
"""

BASELINE_CREATE = ("INSERT INTO withdrawal (account_id, idempotency_key, request, asset, amount, destination)"
                   " SELECT 1, %s || g, r, r->>'coin', (r->>'amount')::numeric, r->>'address'"
                   " FROM generate_series(%s, %s) g, LATERAL (SELECT json_build_object('requestId', %s || g,"
                   " 'coin', 'USDT', 'addressType', 3, 'address', '100200', 'amount', '1.25',"
                   " 'remark', 'bench')::jsonb) AS x(r)")

TABLE_STATS = (f"SELECT {MARK} relid::regclass::text, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del"
               " FROM pg_stat_all_tables WHERE schemaname = %s")
GLOBAL_STATS = (f"SELECT {MARK} pg_current_wal_insert_lsn()::text, wal_records, wal_fpi, wal_bytes::bigint,"
                " wal_sync, wal_write, (SELECT xact_commit FROM pg_stat_database WHERE datname = %s),"
                " (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter)"
                " FROM pg_stat_wal")

WALDUMP_LINE = re.compile(r"^rmgr: (\S+)\s+len \(rec/tot\):\s*(\d+)/\s*(\d+), tx:\s*\d+, lsn: (\S+), "
                          r"prev \S+, desc: (.*)$")
BLKREF = re.compile(r"blkref #(\d+): rel (\d+)/(\d+)/(\d+)(?: fork (\w+))? blk (\d+)( FPW)?")


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


class Workload:
    """One database's side: how to connect, its schema in pg_stat_all_tables,
    and the benchmark's own transactions there (to subtract from xact_commit)."""

    def __init__(self, cluster, dbname, schema):
        self.cluster, self.dbname, self.schema = cluster, dbname, schema
        self.own = 0

    def connect(self, autocommit=True):
        conn = psycopg2.connect(host=self.cluster.dir, port=self.cluster.port, user="postgres", dbname=self.dbname)
        conn.autocommit = autocommit
        return conn

    def query(self, sql, params=None):
        """One statement of the benchmark's own, in a connection closed at once
        (its statistics are flushed when the backend exits)."""
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            self.own += 1
            return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def table_stats(self):
        return {r[0]: r[1:] for r in self.query(TABLE_STATS, (self.schema,))}


def global_stats(mon, dbname):
    cur = mon.cursor()
    cur.execute(GLOBAL_STATS, (dbname,))
    lsn, rec, fpi, wbytes, sync, write, commits, ckpt = cur.fetchone()
    return {"lsn": lsn_int(lsn), "lsn_text": lsn, "wal_records": rec, "wal_fpi": fpi, "wal_bytes": wbytes,
            "wal_sync": sync, "wal_write": write, "xact_commit": commits, "checkpoints": ckpt}


def settle(w, mon, timeout=30):
    """Waits until the workers' and backends' pending statistics have been
    flushed: the tables' counters and pg_stat_wal unchanged over a second."""
    prev = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.1)
        t = w.table_stats()
        g = global_stats(mon, w.dbname)
        cur = (sorted(t.items()), g["wal_records"])
        if cur == prev:
            return t, g
        prev = cur
    raise AssertionError("statistics did not settle")


def statements(mon, dbname):
    """{query: (toplevel, calls, rows, wal_bytes, wal_fpi)} of the workload's database."""
    cur = mon.cursor()
    cur.execute(f"SELECT {MARK} s.toplevel, regexp_replace(s.query, '\\s+', ' ', 'g'), s.calls, s.rows,"
                " s.wal_bytes::bigint, s.wal_fpi FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                " WHERE d.datname = %s AND s.query NOT LIKE '%%bench_writes%%'", (dbname,))
    return cur.fetchall()


def waldump(cluster, start, end):
    """Parses pg_waldump's records in [start, end): a list of
    (rmgr, type, rec_len, fpi_len, [(db, relfilenode, fork, blk, fpw)], desc, lsn)."""
    exe = os.path.join(cluster.bindir, "pg_waldump")
    out = subprocess.run([exe, "-p", os.path.join(cluster.data, "pg_wal"), "-s", start, "-e", end],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0 and "could not find a valid record" not in out.stderr and \
            "error in WAL record" not in out.stderr:
        raise RuntimeError("pg_waldump failed: " + out.stderr[-500:])
    recs = []
    for line in out.stdout.splitlines():
        m = WALDUMP_LINE.match(line)
        if not m:
            continue
        rmgr, rec, tot, lsn, desc = m.groups()
        rtype = re.split(r"[ ,;:]", desc, 1)[0]
        refs = [(int(b[2]), int(b[3]), b[4] or "main", int(b[5]), bool(b[6])) for b in BLKREF.findall(desc)]
        recs.append((rmgr, rtype, int(rec), int(tot) - int(rec), refs, desc, lsn_int(lsn)))
    stats = subprocess.run([exe, "-p", os.path.join(cluster.data, "pg_wal"), "-s", start, "-e", end,
                            "--stats=record"], capture_output=True, text=True, timeout=600).stdout
    return recs, stats


def relation_names(workloads):
    """{(database oid, relfilenode): name} of every relation of these databases."""
    names = {}
    for w in workloads:
        for dboid, filenode, name in w.query(
                f"SELECT {MARK} (SELECT oid FROM pg_database WHERE datname = current_database()),"
                " pg_relation_filenode(c.oid), c.oid::regclass::text FROM pg_class c"
                " WHERE pg_relation_filenode(c.oid) IS NOT NULL"):
            names[(dboid, filenode)] = f"{name}" if w.dbname == "postgres" else f"{w.dbname}:{name}"
    return names


def is_leaf_insertion(rmgr, rtype, desc):
    if rmgr != "Btree":
        return False
    if rtype in ("INSERT_LEAF", "INSERT_POST"):
        return True
    return rtype in ("SPLIT_L", "SPLIT_R") and re.search(r"level 0\b", desc) is not None


def attribute(recs, names, mid):
    """Per relation: records, record bytes, FPI bytes, record types, leaf
    insertions (all, and those before LSN mid: the creation), distinct pages;
    and the records with no block (commits...)."""
    rel = collections.defaultdict(lambda: {"records": 0, "rec": 0, "fpi": 0, "types": collections.Counter(),
                                           "type_bytes": collections.Counter(),
                                           "insertions": 0, "create_insertions": 0, "pages": set()})
    commits = 0
    for rmgr, rtype, rec, fpi, refs, desc, lsn in recs:
        if rmgr == "Transaction" and rtype.startswith("COMMIT"):
            commits += 1
        if refs:
            db, node, fork = refs[0][0], refs[0][1], refs[0][2]
            key = names.get((db, node), f"db {db} filenode {node}") + ("" if fork == "main" else f" ({fork})")
        else:
            key = f"(no relation: {rmgr})"
        r = rel[key]
        r["records"] += 1
        r["rec"] += rec
        r["fpi"] += fpi
        r["types"][f"{rmgr}/{rtype}"] += 1
        r["type_bytes"][f"{rmgr}/{rtype}"] += rec
        if is_leaf_insertion(rmgr, rtype, desc):
            r["insertions"] += 1
            if lsn < mid:
                r["create_insertions"] += 1
        for db, node, fork, blk, _fpw in refs:
            r["pages"].add((db, node, fork, blk))
    return rel, commits


def run_window(name, w, mon, n, run, cluster, names_of, checkpoint=False):
    """Measures one window: run() creates and dispatches n withdrawals (and
    returns the LSN between creation and dispatch).  Returns the figures."""
    if checkpoint:
        mon.cursor().execute("CHECKPOINT")
    # what earlier work left pending must be flushed before the window opens
    t0, g0 = settle(w, mon)
    mon.cursor().execute("SELECT pg_stat_statements_reset()")
    own0 = w.own
    start = time.perf_counter()
    mid = run()
    elapsed = time.perf_counter() - start
    t1, g1 = settle(w, mon)
    own = w.own - own0
    st = statements(mon, w.dbname)
    recs, stats = waldump(cluster, g0["lsn_text"], g1["lsn_text"])
    rel, commits = attribute(recs, names_of(), lsn_int(mid))
    tables = {}
    for k, v in t1.items():
        base = t0.get(k, (0, 0, 0, 0))
        tables[k] = tuple(a - b for a, b in zip(v, base))
    r = {"name": name, "n": n, "elapsed": elapsed, "rate": n / elapsed,
         "wal": g1["lsn"] - g0["lsn"], "create_wal": lsn_int(mid) - g0["lsn"] if mid else None,
         "stat": {k: g1[k] - g0[k] for k in ("wal_records", "wal_fpi", "wal_bytes", "wal_sync", "wal_write",
                                             "checkpoints")},
         "xacts": g1["xact_commit"] - g0["xact_commit"] - own, "tables": tables, "statements": st,
         "rel": rel, "commits": commits, "records": len(recs), "rec_bytes": sum(x[2] for x in recs),
         "fpi_bytes": sum(x[3] for x in recs), "fpi_count": sum(1 for x in recs for ref in x[4] if ref[4]),
         "waldump_stats": stats}
    r["insertions"] = sum(v["insertions"] for v in rel.values())
    r["create_insertions"] = sum(v["create_insertions"] for v in rel.values())
    log(f"{name}: {n} in {elapsed:.2f} s ({r['rate']:.0f}/s), {r['wal'] / n:.0f} WAL bytes per withdrawal, "
        f"{r['insertions'] / n:.2f} index insertions, checkpoints in the window {r['stat']['checkpoints']}")
    return r


def drain(w, n_expected, timeout=600):
    """Waits until n_expected rows are submitted and none queued or sending,
    polling in one connection of the benchmark's own (counted)."""
    conn = w.connect()
    cur = conn.cursor()
    deadline = time.monotonic() + timeout
    try:
        while True:
            cur.execute(f"SELECT {MARK} EXISTS (SELECT 1 FROM withdraw.withdrawal WHERE state IN ('queued',"
                        " 'unknown')) OR EXISTS (SELECT 1 FROM withdraw.withdrawal WHERE state = 'sending')")
            w.own += 1
            if not cur.fetchone()[0]:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not drained after {timeout}s")
            time.sleep(0.05)
    finally:
        conn.close()


def withdraw_run(w, mon, prefix, n):
    def run():
        conn = w.connect(autocommit=False)
        try:
            cur = conn.cursor()
            cur.execute(CREATE_SERIES_SQL, ("sink", prefix, 1, n))
            mid = global_stats(mon, w.dbname)["lsn_text"]
            conn.commit()
        finally:
            conn.close()
        drain(w, n)
        states = dict(w.query(f"SELECT {MARK} state, count(*) FROM withdraw.withdrawal"
                              " WHERE idempotency_key LIKE %s GROUP BY 1", (prefix + "%",)))
        if states != {"submitted": n}:
            raise AssertionError(f"not all submitted: {states}")
        return mid
    return run


def baseline_run(w, mon, prefix, n, lens, batch):
    def run():
        conn = w.connect(autocommit=False)
        try:
            cur = conn.cursor()
            cur.execute(BASELINE_CREATE, (prefix, 1, n, prefix))
            mid = global_stats(mon, w.dbname)["lsn_text"]
            conn.commit()
            conn.autocommit = True
            cur.execute("CALL dispatch(%s, %s, %s)", (batch, lens[0], lens[1]))
        finally:
            conn.close()
        left = w.query(f"SELECT {MARK} count(*) FROM withdrawal WHERE state <> 'submitted'")[0][0]
        if left:
            raise AssertionError(f"baseline: {left} not submitted")
        return mid
    return run


def row_anatomy(w, table):
    """(mean row bytes, [(column, mean bytes)] largest first) of a table's rows
    now (pg_column_size of the row and of each column)."""
    schema, _, name = table.rpartition(".")
    cols = [c for (c,) in w.query(f"SELECT {MARK} attname FROM pg_attribute WHERE attrelid = %s::regclass"
                                  " AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (table,))]
    exprs = ", ".join(f"avg(pg_column_size(t.{c}))" for c in cols)
    row = w.query(f"SELECT {MARK} avg(pg_column_size(t.*)), {exprs} FROM {table} t")[0]
    return float(row[0] or 0), sorted(((c, float(v or 0)) for c, v in zip(cols, row[1:])), key=lambda x: -x[1])


def vacuum_wal(w, mon, tables):
    g0 = global_stats(mon, w.dbname)
    w.query("VACUUM " + ", ".join(tables))
    return global_stats(mon, w.dbname)["lsn"] - g0["lsn"]


def per(v, n, digits=0):
    return round(v / n, digits) if digits else v / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5,000 withdrawals per window")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--withdraw-sql", default="", help="scratch experiment: SQL run in withdraw's database first")
    ap.add_argument("--baseline-sql", default="", help="scratch experiment: SQL run in the baseline's database")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a server setting for both sides (e.g. wal_compression=lz4)")
    args = ap.parse_args()
    for k in ("withdraw_sql", "baseline_sql"):
        v = getattr(args, k)
        if v.startswith("@"):
            with open(v[1:]) as f:
                setattr(args, k, f.read())
    if args.quick:
        args.n = 5000
    n = args.n
    install_signal_handlers()

    nginx = cluster = mon = None
    try:
        nginx = Nginx()
        settings = {"shared_preload_libraries": "'withdraw,pg_stat_statements'",
                    "pg_stat_statements.track": "all", "autovacuum": "off",
                    "checkpoint_timeout": "'1h'", "max_wal_size": "'8GB'"}
        settings.update(dict(x.split("=", 1) for x in args.set))
        cluster = bench_cluster(settings)
        for db in ("bench_baseline", "bench_monitor"):
            cluster.sql(f"CREATE DATABASE {db}")
        wd = Workload(cluster, "postgres", "withdraw")
        bl = Workload(cluster, "bench_baseline", "public")
        mon = psycopg2.connect(host=cluster.dir, port=cluster.port, user="postgres", dbname="bench_monitor")
        mon.autocommit = True
        mon.cursor().execute("CREATE EXTENSION pg_stat_statements")
        bl.query(BASELINE_DDL)
        if args.withdraw_sql:
            log(f"experiment, withdraw: {args.withdraw_sql[:300]}")
            wd.query(args.withdraw_sql)
        if args.baseline_sql:
            log(f"experiment, baseline: {args.baseline_sql}")
            bl.query(args.baseline_sql)
        create_account(cluster, "sink", nginx.base_url(), create_interval_ms=0, poll_interval_ms=HUGE_MS,
                       max_in_flight=10000)
        time.sleep(0.3)

        log("warm-up: 2,000 each")
        withdraw_run(wd, mon, "warm", 2000)()
        lens = wd.query(f"SELECT {MARK} round(avg(length(request_body))), round(avg(length(response_body)))"
                        " FROM withdraw.attempt")[0]
        # (an experiment may keep no attempt rows: then the sizes seen without it)
        lens = (int(lens[0] or 193), int(lens[1] or 119))
        baseline_run(bl, mon, "warm", 2000, lens, 64)()
        wd.query("VACUUM withdraw.withdrawal, withdraw.attempt, withdraw.event")
        bl.query("VACUUM withdrawal, attempt")

        def names():
            return relation_names([wd, bl])

        res = {}
        res[("withdraw", False)] = run_window("withdraw, between checkpoints", wd, mon, n,
                                              withdraw_run(wd, mon, "a", n), cluster, names)
        vac_w = vacuum_wal(wd, mon, ["withdraw.withdrawal", "withdraw.attempt", "withdraw.event"])
        # the baseline sends in batches of withdraw's measured size (a claim and an outcome
        # transaction per batch, besides the creating one), so that batching is not what differs
        batch = max(1, min(64, round(n / max(1, (res[("withdraw", False)]["commits"] - 1) / 2))))
        res[("baseline", False)] = run_window("baseline, between checkpoints", bl, mon, n,
                                              baseline_run(bl, mon, "a", n, lens, batch), cluster, names)
        vac_b = vacuum_wal(bl, mon, ["withdrawal", "attempt"])
        res[("withdraw", True)] = run_window("withdraw, after a CHECKPOINT", wd, mon, n,
                                             withdraw_run(wd, mon, "b", n), cluster, names, checkpoint=True)
        res[("baseline", True)] = run_window("baseline, after a CHECKPOINT", bl, mon, n,
                                             baseline_run(bl, mon, "b", n, lens, batch), cluster, names,
                                             checkpoint=True)

        anatomy = [(t, row_anatomy(wd, t)) for t in ("withdraw.withdrawal", "withdraw.attempt", "withdraw.event")]
        anatomy += [(f"bench_baseline:{t}", row_anatomy(bl, t)) for t in ("withdrawal", "attempt")]
        report(res, n, vac_w, vac_b, lens, batch, args)
        print("## row anatomy: mean bytes of a row (pg_column_size of the row) and of its largest columns\n")
        print("| table | row | largest columns |")
        print("|---|---:|---|")
        for t, (rowb, cols) in anatomy:
            print(f"| {t} | {rowb:.0f} | " + ", ".join(f"{c} {v:.0f}" for c, v in cols[:9]) + " |")
        print(flush=True)
    finally:
        if mon:
            mon.close()
        if cluster:
            cluster.destroy()
        if nginx:
            nginx.stop()


def row_versions(r):
    ins = sum(v[0] for v in r["tables"].values())
    upd = sum(v[1] for v in r["tables"].values())
    hot = sum(v[2] for v in r["tables"].values())
    dele = sum(v[3] for v in r["tables"].values())
    return ins, upd, hot, dele


def report(res, n, vac_w, vac_b, lens, batch, args):
    w, b = res[("withdraw", False)], res[("baseline", False)]
    wc, bc = res[("withdraw", True)], res[("baseline", True)]
    t = Table(f"writes per withdrawal sent ({n:,} per window; baseline: the smallest honest design, same run)")
    t.add("WAL bytes per withdrawal sent, between checkpoints (LSN delta / N)", w["wal"] / n, b["wal"] / n,
          target="<= 1,250", met=w["wal"] / n <= 1250)
    t.add("  of which creation (the creating transaction, before COMMIT)", w["create_wal"] / n,
          b["create_wal"] / n)
    t.add("  of which dispatch (from the creating COMMIT to all submitted)", (w["wal"] - w["create_wal"]) / n,
          (b["wal"] - b["create_wal"]) / n)
    t.add("  of which full-page images (pg_waldump)", w["fpi_bytes"] / n, b["fpi_bytes"] / n, ratio=None)
    t.add("WAL bytes per withdrawal, window starting with a CHECKPOINT", wc["wal"] / n, bc["wal"] / n)
    t.add("  of which full-page images", wc["fpi_bytes"] / n, bc["fpi_bytes"] / n)
    t.add("  full-page images per 1,000 withdrawals", 1000 * wc["fpi_count"] / n, 1000 * bc["fpi_count"] / n)
    t.add("pg_stat_wal wal_bytes per withdrawal (cross-check, between checkpoints)", w["stat"]["wal_bytes"] / n,
          b["stat"]["wal_bytes"] / n)
    t.add("WAL records per withdrawal", w["records"] / n, b["records"] / n, fmt="{:.2f}")
    t.add("VACUUM afterwards: WAL bytes per withdrawal (deferred)", vac_w / n, vac_b / n)
    wi, wu, wh, wd_ = row_versions(w)
    bi, bu, bh, bd = row_versions(b)
    t.add("row versions written per withdrawal (inserted + updated + deleted)", (wi + wu + wd_) / n,
          (bi + bu + bd) / n, fmt="{:.2f}")
    t.add("  inserted", wi / n, bi / n, fmt="{:.2f}")
    t.add("  updated (of which HOT)", f"{wu / n:.2f} ({wh / n:.2f})", f"{bu / n:.2f} ({bh / n:.2f})", ratio=None)
    t.add("index insertions per withdrawal (b-tree leaf insertions in the WAL)", w["insertions"] / n,
          b["insertions"] / n, fmt="{:.2f}")
    t.add("  of which dispatch", (w["insertions"] - w["create_insertions"]) / n,
          (b["insertions"] - b["create_insertions"]) / n, fmt="{:.2f}")
    t.add("statements per withdrawal (pg_stat_statements calls, all levels)",
          sum(s[2] for s in w["statements"]) / n, sum(s[2] for s in b["statements"]) / n, fmt="{:.3f}")
    t.add("  top-level", sum(s[2] for s in w["statements"] if s[0]) / n,
          sum(s[2] for s in b["statements"] if s[0]) / n, fmt="{:.3f}")
    t.add("commits that wrote WAL per withdrawal (COMMIT records)", w["commits"] / n, b["commits"] / n,
          fmt="{:.3f}")
    t.add("transactions committed per withdrawal (xact_commit, the benchmark's own subtracted)", w["xacts"] / n,
          b["xacts"] / n, fmt="{:.3f}")
    t.add("WAL flushes (pg_stat_wal wal_sync) per withdrawal, machine- and timing-dependent",
          w["stat"]["wal_sync"] / n, b["stat"]["wal_sync"] / n, fmt="{:.3f}")
    t.add("withdrawals/s in the window (noisy: shared machine; baseline sends nothing)", w["rate"], b["rate"])
    t.note(f"Between checkpoints: checkpoints inside the windows: withdraw {w['stat']['checkpoints']}, baseline "
           f"{b['stat']['checkpoints']}. Baseline bodies as withdraw's attempts: request {lens[0]} bytes, "
           f"response {lens[1]} bytes; baseline batch {batch} (withdraw's mean: N / (write commits - 1) x 2). "
           f"{durability_note()}; autovacuum off (the VACUUM row is its share). "
           "Creation: all N in one transaction; its WAL and index insertions are those before the LSN read "
           "just before its COMMIT." +
           (f" EXPERIMENT, withdraw: {' '.join(args.withdraw_sql.split())[:200]}..." if args.withdraw_sql else "") +
           (f" EXPERIMENT, baseline: {args.baseline_sql}." if args.baseline_sql else "") +
           (f" Settings: {', '.join(args.set)}." if args.set else ""))
    t.print()

    for label, r, rc in (("withdraw", w, wc), ("baseline", b, bc)):
        print(f"## where {label}'s WAL goes, per withdrawal (between checkpoints; FPI column: the window after a"
              " CHECKPOINT)\n")
        print("| relation | WAL bytes | records | FPI bytes | FPI bytes after CHECKPOINT | pages touched /1k "
              "| index insertions | ins / upd / hot / del | main records (per withdrawal x mean record bytes) |")
        print("|---|---:|---:|---:|---:|---:|---:|---|---|")
        keys = sorted(set(r["rel"]) | set(rc["rel"]), key=lambda k: -(r["rel"][k]["rec"] + r["rel"][k]["fpi"])
                      if k in r["rel"] else 0)
        for k in keys:
            v = r["rel"].get(k)
            vc = rc["rel"].get(k)
            if v is None or (v["rec"] + v["fpi"]) / n < 0.5 and (vc is None or vc["fpi"] / n < 0.5):
                continue
            tab = r["tables"].get(k.split(":")[-1])
            rows = "/".join(f"{x / n:.2f}" for x in tab) if tab else ""
            types = ", ".join(f"{t.split('/')[1]} {c / n:.2f} x {v['type_bytes'][t] / c:.0f} B"
                              for t, c in v["types"].most_common(4))
            print(f"| {k} | {(v['rec'] + v['fpi']) / n:,.0f} | {v['records'] / n:.2f} | {v['fpi'] / n:,.0f} | "
                  f"{(vc['fpi'] / n if vc else 0):,.0f} | {1000 * len(v['pages']) / n:.1f} | "
                  f"{v['insertions'] / n:.2f} | {rows} | {types} |")
        print()
        print(f"## {label}'s statements (pg_stat_statements, between checkpoints), by WAL bytes\n")
        print("| level | calls / withdrawal | rows / call | WAL bytes / withdrawal | statement |")
        print("|---|---:|---:|---:|---|")
        for top, q, calls, rows, wb, _fpi in sorted(r["statements"], key=lambda s: -s[4])[:14]:
            if calls == 0:
                continue
            print(f"| {'top' if top else 'nested'} | {calls / n:.3f} | {rows / calls:.1f} | {wb / n:,.0f} "
                  f"| {q[:110]} |")
        print()
        print(f"## pg_waldump --stats=record over {label}'s window (between checkpoints), lines over 1%\n")
        print("```")
        for line in r["waldump_stats"].splitlines():
            cols = re.findall(r"\(\s*([\d.]+)\)", line)
            if line.startswith("Type") or line.startswith("----") or line.startswith("Total") or \
                    (cols and float(cols[-1]) >= 1.0):
                print(line)
        print("```\n", flush=True)



if __name__ == "__main__":
    main()
