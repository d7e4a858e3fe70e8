"""Issue 8, item 4: chainup creates/s beside `openssl speed rsa2048` sign/s on
one core, measured in the same run.

Every chainup create is sealed by the worker: one RSA-2048 private-key
operation (EVP_PKEY_sign, PKCS#1 type 1) per 234-byte chunk of the request
plaintext (src/envelope.c), so one worker core can do at most
sign/s / envelopes-per-create creates/s.  Target: creates/s x envelopes per
create >= 0.80 x openssl's sign/s.  openssl speed runs alone on the machine
before the cluster starts and again after the rounds; the baseline is the
higher of the two.  Envelopes per create are counted from the run's
attempts: ceil(bytes / 234) of the plaintext in the audit copy
("app_id=...&data=[sealed] <plaintext>") of each create.

The sink.  The mock ChainUp seals its answers in pure Python (ms each) and
would be the bottleneck, so nginx answers instead (benchlib.Nginx, its
configuration extended here and reloaded, 1 worker process).  An answer is
{"data": <envelope>} that must open with the account's platform_public_key to
{"code":"0","msg":"ok","data":{"id":ID,"status":0,"withdraw_type":0}}, and
ID must differ for every create (a provider id seen twice goes to review).
nginx cannot seal, so the envelopes are sealed here beforehand, by raw RSA on
Python ints (type-1 padding, c = m^d mod n) with a wallet key generated here,
and nginx pieces two sealed blocks together:

  ID = 1 CCCCC RRRRRR, C = $connection (nginx's serial number of the
  connection), R = $connection_requests (the request's number on it): the
  pair is unique for the life of nginx.  Block 1 opens to
  '{"code":"0","msg":"ok",  ...  "data":{"id":1CCCCC' (spaces pad it to a
  full chunk of 234 bytes: the extension refuses a short first block when
  more follow) and is chosen by a map on $connection; block 2 opens to
  'RRRRRR,"status":0,"withdraw_type":0}}' and is chosen by a map on
  $connection_requests.  keepalive_requests R_MAX bounds
  R (nginx closes a connection after R_MAX requests, the worker opens
  another), C_MAX bounds the connections; C_MAX + R_MAX blocks are sealed.
  The envelope is the concatenation of the two blocks' base64url texts, which
  is the base64url of the two blocks only when a block is a multiple of 3
  bytes: the wallet key has 2064 bits (258-byte blocks) for that reason.  So
  the worker opens each answer with two public-key operations (of ~20 us
  each) instead of the one a real one-block answer takes.

The answers are opened here (Python, the public key) before the run, and the
connection count is checked after it.  The cluster is benchlib's
(fsync on, synchronous_commit on, max_in_flight 64; one more round with fsync
off, switched by reload); the account has max_in_flight 64 and no
creation interval, status polls and syncs 24 h away.  Each round: the tables
are emptied, N withdrawals are created in transactions of --batch committed
back to back, and the time from the first COMMIT until all are submitted
gives creates/s (the later batches' creation runs inside the measured time,
on the same cores).  The figure is the median of the rounds.

Usage: python3 bench/bench_chainup.py [--quick] [--n 20000] [--batch 5000]
       [--rounds 3] [--openssl-seconds 5]
"""

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import re
import signal
import subprocess
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from benchlib import (BENCH_WORKERS, DURABLE, HUGE_MS, Nginx, Table, bench_cluster, durability_note,
                      install_signal_handlers, log, median, set_fsync, wait_drained, wait_until, workers_cpu_seconds)

CREATE_PATH = "/chainup/api/v2/billing/withdraw"
CHUNK = 234            # plaintext bytes per envelope block (src/envelope.c)
WALLET_BITS = 2064     # 258-byte blocks: base64url of each block stands alone
C_MAX, R_MAX = 500, 500
# block 1 must open to a full chunk when a block follows (src/envelope.c refuses
# a short first block): JSON whitespace pads it to CHUNK bytes
HEAD = '{"code":"0","msg":"ok",%s"data":{"id":1%%05d'
HEAD = HEAD % (" " * (CHUNK - len(HEAD % "" % 0)))
TAIL = '%06d,"status":0,"withdraw_type":0}}'
REQUEST_SQL = ("SELECT count(withdraw_create('cu', json_build_object('from_uid', '1', 'to_address', '0xabc',"
               " 'amount', '1.5', 'symbol', 'usdt')::jsonb)) FROM generate_series(1, %s)")
TRUNCATE = "TRUNCATE withdraw.withdrawal, withdraw.attempt, withdraw.event RESTART IDENTITY CASCADE"


def openssl_sign_per_s(seconds):
    """`openssl speed -mr rsa2048` (one process, one core): private-key operations/s."""
    out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "-mr", "rsa2048"],
                         capture_output=True, text=True, timeout=4 * seconds + 60).stdout
    m = re.search(r"^\+F2:\d+:2048:([\d.]+):([\d.]+)", out, re.M)
    if not m:
        raise RuntimeError("cannot read openssl speed output:\n" + out)
    return float(m.group(1))


# ---------------------------------------------------------------------------
# the wallet's envelopes, by raw RSA on Python ints

def seal_block(numbers, text):
    """One envelope block: type-1 padding of text, then m^d mod n (by CRT); base64url."""
    p, q, dp, dq, qi, k = numbers
    b = text.encode()
    m = int.from_bytes(b"\x00\x01" + b"\xff" * (k - 3 - len(b)) + b"\x00" + b, "big")
    m1, m2 = pow(m, dp, p), pow(m, dq, q)
    c = m2 + (qi * (m1 - m2) % p) * q
    return base64.urlsafe_b64encode(c.to_bytes(k, "big")).decode()


def open_envelope(public, data):
    """The plaintext of an envelope, checked as the extension checks it."""
    n, e, k = public
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    assert raw and len(raw) % k == 0, "not whole blocks"
    plain = b""
    for i in range(0, len(raw), k):
        m = pow(int.from_bytes(raw[i:i + k], "big"), e, n).to_bytes(k, "big")
        sep = m.index(b"\x00", 2)
        assert m[:2] == b"\x00\x01" and set(m[2:sep]) == {0xff} and sep >= 10, "not type-1 padding"
        assert i == 0 or len(plain) in (CHUNK, k - 11), "block 1 is not a full chunk although more blocks follow"
        plain += m[sep + 1:]
    return plain.decode()


def _pool_init():
    """Pool workers leave signals to the parent (benchlib's handlers would print on terminate)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def wallet_blocks(key):
    """{connection: block} and {request number: block}, sealed on every core."""
    pn = key.private_numbers()
    numbers = (pn.p, pn.q, pn.dmp1, pn.dmq1, pn.iqmp, WALLET_BITS // 8)
    texts = [HEAD % c for c in range(1, C_MAX + 1)] + [TAIL % r for r in range(1, R_MAX + 1)]
    with multiprocessing.Pool(initializer=_pool_init) as pool:
        blocks = pool.starmap(seal_block, [(numbers, t) for t in texts], chunksize=25)
    assert all(len(b) == WALLET_BITS // 6 and "=" not in b for b in blocks)
    return dict(zip(range(1, C_MAX + 1), blocks[:C_MAX])), dict(zip(range(1, R_MAX + 1), blocks[C_MAX:]))


# ---------------------------------------------------------------------------
# the sink

def configure_sink(nginx, heads, tails):
    """Adds the chainup create location to benchlib's nginx and reloads it."""
    with open(nginx.conf) as f:
        conf = f.read()
    maps = ("map $connection $cu_head {\n        default \"\";\n" +
            "".join(f"        {c} \"{b}\";\n" for c, b in heads.items()) + "    }\n" +
            "    map $connection_requests $cu_tail {\n        default \"\";\n" +
            "".join(f"        {r} \"{b}\";\n" for r, b in tails.items()) + "    }\n")
    location = (f"        location = {CREATE_PATH} {{\n"
                "            return 200 '{\"data\":\"$cu_head$cu_tail\"}';\n        }\n")
    edits = [("keepalive_requests 100000000;", f"keepalive_requests {R_MAX};\n    {maps}"),
             ("        location / {", location + "        location / {")]
    for old, new in edits:
        assert conf.count(old) == 1, f"benchlib's nginx configuration changed: {old!r}"
        conf = conf.replace(old, new)
    with open(nginx.conf, "w") as f:
        f.write(conf)
    old_workers = set(nginx.pids()[1:])
    nginx.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: not old_workers & set(nginx.pids()[1:]), 10, 0.05, "nginx to reload")
    assert post(nginx)[0] == 200, "nginx did not take the chainup location"


def post(nginx, n=1):
    """n creates on one keep-alive connection: (last HTTP status, [answer bodies])."""
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=5)
    bodies = []
    try:
        for _ in range(n):
            conn.request("POST", CREATE_PATH, body="app_id=bench&data=x",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            r = conn.getresponse()
            bodies.append(r.read().decode())
        return r.status, bodies
    finally:
        conn.close()


def sink_ids(nginx, public, n):
    """The ids of n answers on a new connection, opened and checked."""
    ids = []
    for body in post(nginx, n)[1]:
        answer = json.loads(open_envelope(public, json.loads(body)["data"]))
        assert answer["code"] == "0" and answer["data"]["status"] == 0, answer
        ids.append(answer["data"]["id"])
    return ids


# ---------------------------------------------------------------------------
# the runs

def run(cluster, n, batch):
    """Empties the tables, creates n withdrawals in transactions of batch, waits until
    all are submitted.  Returns creates/s, the worker's CPU (cores) and the envelopes
    per create (min, mean, max)."""
    cluster.sql(TRUNCATE)
    cpu0 = workers_cpu_seconds(cluster)
    conn = cluster.connect()
    t0 = None
    try:
        for lo in range(0, n, batch):
            conn.cursor().execute(REQUEST_SQL, (min(batch, n - lo),))
            t0 = t0 or time.perf_counter()
    finally:
        conn.close()
    elapsed = wait_drained(cluster, 600) - t0
    cpu = workers_cpu_seconds(cluster) - cpu0
    states = dict(cluster.sql("SELECT state, count(*) FROM withdraw.withdrawal GROUP BY 1"))
    if states.get("submitted", 0) != n:
        raise AssertionError(f"not all submitted: {states}; " + repr(cluster.sql(
            "SELECT state, left(last_error, 160), count(*) FROM withdraw.withdrawal"
            " WHERE state <> 'submitted' GROUP BY 1, 2")))
    blocks = cluster.sql("SELECT min(b), avg(b), max(b), count(*) FROM (SELECT ceil(octet_length("
                         "  split_part(request_body, '&data=[sealed] ', 2)) / %s::numeric) AS b"
                         " FROM withdraw.attempt WHERE kind = 'create') s", (CHUNK,))[0]
    assert blocks[3] == n, f"{blocks[3]} create attempts for {n} withdrawals"
    return {"rate": n / elapsed, "elapsed": elapsed, "cpu": cpu / elapsed,
            "blocks": (int(blocks[0]), float(blocks[1]), int(blocks[2]))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5,000 withdrawals, 1 round, 3 s of openssl speed")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--openssl-seconds", type=int, default=5)
    args = ap.parse_args()
    if args.quick:
        args.n, args.rounds, args.openssl_seconds = 5000, 1, 3
    install_signal_handlers()

    log(f"openssl speed -seconds {args.openssl_seconds} rsa2048")
    sign_before = openssl_sign_per_s(args.openssl_seconds)
    log(f"{sign_before:,.0f} sign/s; sealing {C_MAX + R_MAX} answer blocks")
    merchant = rsa.generate_private_key(65537, 2048)
    wallet = rsa.generate_private_key(65537, WALLET_BITS)
    pub = wallet.public_key()
    public = (pub.public_numbers().n, pub.public_numbers().e, WALLET_BITS // 8)
    heads, tails = wallet_blocks(wallet)

    nginx = cluster = None
    try:
        nginx = Nginx(workers=1)
        configure_sink(nginx, heads, tails)
        ids = sink_ids(nginx, public, 3) + sink_ids(nginx, public, 2)
        assert len(set(ids)) == 5, ids
        credentials = {"app_id": "bench",
                       "merchant_private_key": merchant.private_bytes(
                           serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode(),
                       "platform_public_key": pub.public_bytes(
                           serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()}

        def chainup_cluster(workers):
            cluster = bench_cluster(workers=workers)
            try:
                options = {"max_in_flight": 64, "create_interval_ms": 0, "poll_interval_ms": HUGE_MS,
                           "sync_interval_ms": HUGE_MS}
                cluster.sql("SELECT withdraw_account_create('cu', 'chainup', %s, %s, %s)",
                            (nginx.url + "/chainup", json.dumps(credentials), json.dumps(options)))
                time.sleep(0.3)
                log(f"warm-up, withdraw.workers {workers}")
                run(cluster, min(2000, args.n), args.batch)
            except BaseException:
                cluster.destroy()   # not yet the caller's to destroy: a failed warm-up left it running
                raise
            return cluster

        # one worker first (one round: what the second worker brings), then the figure
        cluster = chainup_cluster(1)
        single = run(cluster, args.n, args.batch)
        log(f"withdraw.workers 1: {single['rate']:,.0f} creates/s, worker {single['cpu']:.2f} cores")
        cluster.destroy()
        cluster = chainup_cluster(BENCH_WORKERS)
        results = []
        for i in range(args.rounds):
            results.append(run(cluster, args.n, args.batch))
            r = results[-1]
            log(f"round {i + 1}: {r['rate']:,.0f} creates/s in {r['elapsed']:.2f} s, workers {r['cpu']:.2f} cores")
        # one round with fsync off (issue 21), beside the production rounds
        nofsync = None
        if DURABLE:
            set_fsync(cluster, False)
            nofsync = run(cluster, args.n, args.batch)
            set_fsync(cluster, True)
            log(f"fsync off: {nofsync['rate']:,.0f} creates/s, workers {nofsync['cpu']:.2f} cores")
        log(f"openssl speed -seconds {args.openssl_seconds} rsa2048, again")
        sign_after = openssl_sign_per_s(args.openssl_seconds)
        sign = max(sign_before, sign_after)
        connections = int(str(sink_ids(nginx, public, 1)[0])[1:6])
        assert connections < C_MAX, f"nginx used {connections} connections, C_MAX is {C_MAX}"

        rate = median([r["rate"] for r in results])
        cpu = median([r["cpu"] for r in results])
        bmin, bmean, bmax = results[0]["blocks"]
        envelopes = median([r["blocks"][1] for r in results])
        ratio = rate * envelopes / sign
        t = Table("chainup creates vs openssl speed rsa2048 (sign/s of one core, same run)")
        t.add("RSA-2048 signs/s the creates needed (creates/s x envelopes per create)"
              " vs openssl sign/s", rate * envelopes, sign, target=">= 0.80", met=ratio >= 0.80)
        t.add("chainup creates/s end to end (to submitted) vs the ceiling sign/s / envelopes", rate,
              sign / envelopes)
        t.add("envelopes (RSA private-key operations) per create", envelopes, None, fmt="{:.2f}")
        t.add(f"openssl speed -seconds {args.openssl_seconds} rsa2048: sign/s, 1 core, before / after the runs",
              f"{sign_before:,.0f} / {sign_after:,.0f}", None)
        if nofsync:
            t.add("RSA-2048 signs/s the creates needed, fsync = off (one round) vs openssl sign/s",
                  nofsync["rate"] * envelopes, sign)
        t.add(f"creates/s, withdraw.workers {BENCH_WORKERS} vs 1 (one round of {args.n:,})", rate, single["rate"],
              fmt="{:,.0f}")
        t.add("RSA-2048 signs/s the creates needed with withdraw.workers 1 vs openssl sign/s",
              single["rate"] * envelopes, sign)
        t.add(f"workers' CPU during the runs (cores, withdraw.workers {BENCH_WORKERS})", cpu, None, fmt="{:.2f}")
        t.add("workers' CPU per create vs one openssl sign (ms)", 1000 * cpu / rate, 1000 / sign, fmt="{:.3f}")
        t.note(f"{args.rounds} round(s) of {args.n:,} withdrawals in transactions of {args.batch:,}, committed "
               "back to back; median creates/s (rounds: " +
               ", ".join(f"{r['rate']:,.0f}" for r in results) + "). Envelopes per create over the first "
               f"round's attempts: min {bmin}, mean {bmean:.2f}, max {bmax} (ceil(plaintext bytes / {CHUNK})).")
        t.note(f"Sink: nginx, 1 worker, pre-sealed 2-block answers ({WALLET_BITS}-bit wallet key; ids unique by "
               f"$connection and $connection_requests; {connections} connections used, keepalive_requests "
               f"{R_MAX}). withdraw.max_in_flight 64, account max_in_flight 64, withdraw.workers {BENCH_WORKERS}. "
               f"{os.cpu_count()} cores shared by the workers, PostgreSQL and nginx; openssl speed ran alone, before the cluster started and "
               "after the rounds (the cluster idle); the baseline is the higher of the two. "
               f"{durability_note()}, except the fsync = off round (same cluster, switched by reload).")
        t.print()
    finally:
        if cluster:
            cluster.destroy()
        if nginx:
            nginx.stop()


if __name__ == "__main__":
    main()
