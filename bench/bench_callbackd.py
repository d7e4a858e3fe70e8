"""Benchmark of withdraw-callbackd (issue 18): authenticated callbacks per
second and their p50/p99 latency, beside the same load against a trivial
nginx endpoint in the same run.

The load: wrk POSTs signed ccpayment v1 webhooks (Appid, Timestamp, Sign =
SHA-256 over the raw body) about withdrawals that exist and are `submitted`,
cycling over them: the first of each is applied (submitted -> succeeded), the
repeats are `unchanged`.  Every one is authenticated, locks its withdrawal,
updates it and leaves a row in withdraw.callback with its source and status;
the daemon answers 200.  The baseline is nginx answering the same requests
from a `return` location (no database): the HTTP ceiling of this machine.

Run: python3 bench/bench_callbackd.py [--quick]  (bench/run callbackd)
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import (CREATE_PATH, Nginx, Table, _die_with_parent, bench_cluster, install_signal_handlers,
                      log, wait_until)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "integration"))
from callbackd_proc import Callbackd  # noqa: E402

APP, SECRET = "bench-ccp", "bench-ccp-secret"

WRK_LUA = """
local reqs = {}
local n = 0
local path = "%s"
local file = "%s"
init = function(args)
  local lines = {}
  for line in io.lines(file) do lines[#lines + 1] = line end
  for i = 1, #lines, 3 do
    local body, ts, sign = lines[i], lines[i + 1], lines[i + 2]
    reqs[#reqs + 1] = wrk.format("POST", path, {["Content-Type"] = "application/json; charset=utf-8",
      ["Appid"] = "%s", ["Timestamp"] = ts, ["Sign"] = sign}, body)
  end
  n = math.random(#reqs)
end
request = function()
  n = n %% #reqs + 1
  return reqs[n]
end
"""


def signed_requests(count):
    """count webhooks of withdrawals bench-0 .. bench-(count-1): (body, timestamp, sign)."""
    ts = str(int(time.time()))
    out = []
    for i in range(count):
        body = json.dumps({"pay_status": "success", "order_type": "API Withdrawal", "order_id": f"o{i}",
                           "record_id": f"r{i}", "withdraw_amount": "1.5", "txid": f"0x{i:064x}",
                           "merchant_order_id": f"bench-{i}"}, separators=(",", ":"))
        sign = hashlib.sha256((APP + SECRET + ts + body).encode()).hexdigest()
        out.append((body, ts, sign))
    return out


def run_wrk(url, path, requests_file, connections, seconds, threads=2):
    """(requests/s, p50 ms, p99 ms, non-2xx) of wrk replaying the signed webhooks."""
    d = tempfile.mkdtemp(prefix="withdraw-wrk-")
    try:
        script = os.path.join(d, "cb.lua")
        with open(script, "w") as f:
            f.write(WRK_LUA % (path, requests_file, APP))
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                              "-s", script, url], capture_output=True, text=True, timeout=seconds + 30,
                             preexec_fn=_die_with_parent).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

        def ms(p):
            m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
            v, unit = float(m.group(1)), m.group(2)
            return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
        bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        return rps, ms(50), ms(99), int(bad.group(1)) if bad else 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    install_signal_handlers()
    quick = "--quick" in sys.argv
    count = 2000 if quick else 10000
    seconds = 5 if quick else 15
    conns = 16
    cluster = bench_cluster()
    nginx = None
    daemon = None
    work = tempfile.mkdtemp(prefix="withdraw-bench-cb-")
    try:
        cluster.sql("CREATE ROLE callbackd LOGIN IN ROLE withdraw_webhook")
        cluster.sql("SELECT withdraw_account_create('ccp', 'ccpayment', 'http://127.0.0.1:9/ccpayment', %s, %s)",
                    (json.dumps({"app_id": APP, "app_secret": SECRET}),
                     json.dumps({"webhook_window_s": 3600, "poll_interval_ms": 86400000})))
        # withdrawals that the provider has: created and moved to submitted in
        # one transaction, so that no worker sends them
        log(f"creating {count} submitted withdrawals")
        conn = cluster.connect(autocommit=False)
        cur = conn.cursor()
        cur.execute("SELECT count(withdraw_create('ccp', json_build_object('merchant_order_id', 'bench-' || g,"
                    " 'address', '0xabc0000000000000000000000000000000000001', 'token_id', 't', 'value', '1.5')::jsonb))"
                    " FROM generate_series(0, %s) g", (count - 1,))
        cur.execute("UPDATE withdraw.withdrawal SET state = 'sending' WHERE state = 'queued'")
        cur.execute("UPDATE withdraw.withdrawal SET state = 'submitted' WHERE state = 'sending'")
        conn.commit()
        conn.close()
        cluster.sql("VACUUM ANALYZE withdraw.withdrawal")
        reqs = os.path.join(work, "requests.txt")
        os.chmod(work, 0o755)
        with open(reqs, "w") as f:
            for body, ts, sign in signed_requests(count):
                f.write(f"{body}\n{ts}\n{sign}\n")

        daemon = Callbackd(cluster, ["ccp"], access_log="on").start()
        # one by hand first: the answer must be the provider's
        body, ts, sign = signed_requests(1)[0]
        status, reply = daemon.post("ccp", "notify", body, {"Appid": APP, "Timestamp": ts, "Sign": sign,
                                                            "Content-Type": "application/json"})
        assert (status, reply) == (200, "success"), (status, reply)
        nginx = Nginx()

        results = {}
        for c in (4, conns):
            log(f"wrk -c {c} for {seconds}s against the daemon, then nginx")
            results[c] = (run_wrk(f"http://127.0.0.1:{daemon.port}", "/ccp/notify", reqs, c, seconds),
                          run_wrk(nginx.url, CREATE_PATH, reqs, c, seconds))
        applied = cluster.value("SELECT count(*) FROM withdraw.withdrawal WHERE state = 'succeeded'")
        rows = cluster.value("SELECT count(*) FROM withdraw.callback WHERE http_status = 200 AND source IS NOT NULL")
        d1_rps, d1_50, d1_99, _ = run_wrk(f"http://127.0.0.1:{daemon.port}", "/ccp/notify", reqs, 1, max(3, seconds // 3), 1)

        t = Table(f"withdraw-callbackd: authenticated ccpayment webhooks, wrk, {seconds} s per row"
                  f" ({'quick' if quick else 'full'}); baseline: nginx return, same requests")
        bad = 0
        for c, ((d_rps, d50, d99, d_bad), (n_rps, n50, n99, n_bad)) in results.items():
            t.add(f"{c} connections: callbacks/s (each verified, applied or unchanged, recorded)", d_rps, n_rps, "/s",
                  ">= 2,000 /s", d_rps >= 2000)
            t.add(f"{c} connections: p50 latency", d50, n50, "ms", None, None, "{:.2f}")
            t.add(f"{c} connections: p99 latency", d99, n99, "ms", "< 20 ms", d99 < 20, "{:.2f}")
            bad += d_bad + n_bad
        t.add("1 connection: callbacks/s", d1_rps, None, "/s")
        t.add("1 connection: p50 / p99", f"{d1_50:.2f} / {d1_99:.2f} ms", None)
        t.note(f"non-2xx answers: {bad}; withdrawals applied {applied} of {count};"
               f" callback rows with source and status 200: {rows}. The daemon's threads = 4 database"
               f" connections; wrk, the daemon, nginx and PostgreSQL share the 2 cores.")
        t.print()
        if bad:
            raise SystemExit(f"{bad} requests answered with a non-2xx status")
    finally:
        if daemon:
            daemon.stop()
        if nginx:
            nginx.stop()
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
