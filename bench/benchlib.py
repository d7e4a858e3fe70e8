"""Shared pieces of the issue-8 benchmarks: the nginx sink, wrk, the result
table, cleanup on signals, and small helpers around the integration harness
(test/integration/harness.py: Cluster, Mock and wait_until are imported from
there, not copied).

Everything runs as an ordinary user (bench/run switches to postgres) and
listens on 127.0.0.1 only."""

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "integration"))
from harness import Cluster, Mock, free_port, wait_until  # noqa: E402,F401

CREATE_PATH = "/zoomex/private/v1/asset/withdraw/inner-create"
# the answer the sink gives every create; $request_id is nginx's unique id
# per request (the extension refuses a provider id linked to another withdrawal)
CREATE_ANSWER = ('{"retCode":0,"retMsg":"success","result":{"withdraw_id":"$request_id"},'
                 '"retExtInfo":null,"time":1}')
# never more than 24 h: the extension's maximum for these options
HUGE_MS = 24 * 3600 * 1000
CREDENTIALS = {"api_key": "bench", "api_secret": "bench-secret"}


def request_json(key, **extra):
    """A valid zoomex request with this requestId, like an application's."""
    body = {"requestId": key, "coin": "USDT", "addressType": 3, "address": "100200",
            "amount": "1.25", "remark": "bench"}
    body.update(extra)
    return json.dumps(body)


# SQL that creates withdrawals with requestIds prefix||g for g in [lo, hi]
CREATE_SERIES_SQL = ("SELECT count(withdraw_create(%s, json_build_object('requestId', %s || g, 'coin', 'USDT',"
                     " 'addressType', 3, 'address', '100200', 'amount', '1.25', 'remark', 'bench')::jsonb))"
                     " FROM generate_series(%s, %s) g")


# ---------------------------------------------------------------------------
# cleanup: a SIGTERM or SIGHUP must run the finally blocks like Ctrl-C does

def _raise_exit(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")


def install_signal_handlers():
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise_exit)


def _die_with_parent():
    """preexec_fn: the child gets SIGTERM if this benchmark dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


# ---------------------------------------------------------------------------
# the nginx sink

def nginx_binary():
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        raise RuntimeError("nginx is not installed (apt-get install nginx-light); bench/run installs it as root")
    return found


class Nginx:
    """nginx on 127.0.0.1 with its own configuration in a temporary directory,
    in the foreground (daemon off) as a child of this process.

    Locations:
      POST CREATE_PATH  the canned success answer (keep-alive, no access log)
      /bodytest         a plain `return` that logs $request_body, to check
                        whether nginx fills it there (it does not: the body
                        is discarded unread; see selftest)
    """

    def __init__(self, workers=1):
        self.dir = tempfile.mkdtemp(prefix="withdraw-nginx-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.error_log = os.path.join(self.dir, "error.log")
        d = self.dir
        conf = f"""
daemon off;
master_process on;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    default_type application/json;
    log_format body escape=json '$msec $request_body';
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        location = {CREATE_PATH} {{
            return 200 '{CREATE_ANSWER}';
        }}
        location = /bodytest {{
            access_log {d}/bodytest.log body;
            client_body_in_single_buffer on;
            return 200 '{{}}';
        }}
        location / {{
            return 404 '{{"retCode":404,"retMsg":"not served by the bench sink"}}';
        }}
    }}
}}
"""
        self.conf = os.path.join(d, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen([nginx_binary(), "-p", d, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "stderr"), "w"),
                                     preexec_fn=_die_with_parent)
        try:
            wait_until(self._up, 10, 0.05, "nginx to listen")
        except Exception:
            self.stop()
            raise

    def _up(self):
        if self.proc.poll() is not None:
            err = open(os.path.join(self.dir, "stderr")).read()
            if os.path.exists(self.error_log):
                err += open(self.error_log).read()
            raise RuntimeError("nginx exited: " + err)
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.2):
                return True
        except OSError:
            return False

    def base_url(self):
        return f"{self.url}/zoomex"

    def selftest(self):
        """Checks the canned answer (unique ids) and reports whether a plain
        `return` location populates $request_body."""
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.port)
        ids = set()
        for _ in range(3):
            conn.request("POST", CREATE_PATH, body=request_json("selftest"),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            body = json.loads(r.read())
            assert r.status == 200 and body["retCode"] == 0, body
            ids.add(body["result"]["withdraw_id"])
        assert len(ids) == 3, "withdraw_id must be unique per request"
        conn.request("POST", "/bodytest", body='{"requestId":"probe"}')
        conn.getresponse().read()
        conn.close()
        time.sleep(0.05)
        with open(os.path.join(self.dir, "bodytest.log")) as f:
            line = f.read().strip().splitlines()[-1]
        return "probe" in line

    def pids(self):
        """The master's and the workers' pids."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [self.proc.pid] + [int(x) for x in out.split()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)   # fast shutdown of master and workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# wrk: the raw HTTP ceiling of the same sink

WRK_LUA = """
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-BAPI-API-KEY"] = "bench"
wrk.headers["X-BAPI-SIGN"] = "%s"
wrk.headers["X-BAPI-TIMESTAMP"] = "1790000000000"
wrk.headers["X-BAPI-RECV-WINDOW"] = "5000"
"""


def wrk(url, connections, seconds, threads=1):
    """Requests/s of wrk POSTing a create-sized body with the extension's headers,
    keep-alive, over `connections` connections."""
    body = json.loads(request_json("wrk0123456789abcdef0123456789abcdef"))
    body.update(api_key="bench", timestamp=1790000000000, recv_window=5000, sign="0" * 64)
    d = tempfile.mkdtemp(prefix="withdraw-wrk-")
    try:
        script = os.path.join(d, "post.lua")
        with open(script, "w") as f:
            f.write(WRK_LUA % (json.dumps(json.dumps(body, separators=(",", ":"))), "0" * 64))
        threads = max(1, min(threads, connections))
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
                              "-s", script, url], capture_output=True, text=True, timeout=seconds + 30,
                             preexec_fn=_die_with_parent)
        m = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
        if not m or "Non-2xx" in out.stdout:
            raise RuntimeError("wrk failed: " + out.stdout + out.stderr)
        return float(m.group(1))
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------
# the cluster

# withdraw.workers of the benchmarks: one per core of this 2-core machine
# (bench_sink.py and bench_chainup.py also measure one, in the same run)
BENCH_WORKERS = 2

# Durability (issue 21): the benchmarks run at production settings, fsync on
# and synchronous_commit on, as payout databases do; BENCH_FSYNC=off gives the
# harness's fsync off, the setting of every figure before 0.5.0.  Where it is
# cheap, a benchmark also measures its headline row with fsync off in the same
# run (set_fsync), beside the production figure.
DURABLE = os.environ.get("BENCH_FSYNC", "on").lower() not in ("off", "0", "false")


def durability_settings():
    return {"fsync": "on" if DURABLE else "off", "synchronous_commit": "on"}


def durability_note():
    return ("fsync on, synchronous_commit on (production settings)" if DURABLE else
            "fsync off (BENCH_FSYNC=off), synchronous_commit on")


def set_fsync(cluster, on):
    """fsync is a SIGHUP setting: ALTER SYSTEM + reload, in the running cluster."""
    set_guc(cluster, "fsync", "on" if on else "off")


def bench_cluster(extra=None, workers=BENCH_WORKERS):
    """A started cluster with withdraw created and its workers running.  The
    harness's settings (the workers serving database postgres) plus
    durability_settings(), quiet logs and no status polls."""
    settings = {"withdraw.naptime": "1000", "withdraw.poll_interval": str(HUGE_MS),
                "withdraw.max_in_flight": "64", "log_min_messages": "warning",
                "withdraw.request_timeout": "10000", "max_connections": "50",
                "shared_buffers": "'256MB'", "withdraw.workers": str(workers)}
    settings.update(durability_settings())
    settings.update(extra or {})
    cluster = Cluster(settings).start()
    try:
        cluster.sql("CREATE EXTENSION withdraw")
        wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.workers WHERE state = 'running'")
                   == workers, 30, 0.1, f"{workers} workers to run")
    except Exception:
        cluster.destroy()
        raise
    return cluster


def create_account(cluster, name, base_url, **options):
    cluster.sql("SELECT withdraw_account_create(%s, 'zoomex', %s, %s, %s)",
                (name, base_url, json.dumps(CREDENTIALS), json.dumps(options)))


def set_guc(cluster, name, value):
    """ALTER SYSTEM + reload, then waits until a new session sees it (the
    worker reloads on the same SIGHUP)."""
    cluster.sql(f"ALTER SYSTEM SET {name} = %s", (str(value),))
    cluster.sql("SELECT pg_reload_conf()")
    wait_until(lambda: cluster.value(f"SHOW {name}") == str(value), 10, 0.05, f"{name} = {value}")
    time.sleep(0.2)


def worker_pid(cluster):
    return cluster.worker_pid()


def proc_status(pid):
    """VmRSS, RssAnon, RssFile, RssShmem in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def cpu_seconds(pid):
    """user+system CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workers_cpu_seconds(cluster):
    """user+system CPU seconds of all the withdraw workers together."""
    return sum(cpu_seconds(p) for (p,) in cluster.sql("SELECT pid FROM withdraw.workers WHERE pid IS NOT NULL"))


def workers_sent(cluster):
    """Requests sent by all the workers together."""
    return cluster.value("SELECT sum(requests_sent)::bigint FROM withdraw.workers")


def wait_drained(cluster, timeout, interval=0.02):
    """Waits until nothing is queued, unknown or sending (partial indexes: cheap)."""
    conn = cluster.connect()
    cur = conn.cursor()
    deadline = time.monotonic() + timeout
    try:
        while True:
            cur.execute("SELECT EXISTS (SELECT 1 FROM withdraw.withdrawal WHERE state IN ('queued', 'unknown'))"
                        " OR EXISTS (SELECT 1 FROM withdraw.withdrawal WHERE state = 'sending')")
            if not cur.fetchone()[0]:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise AssertionError(f"not drained after {timeout}s: " + repr(cluster.sql(
                    "SELECT state, left(last_error, 120), count(*) FROM withdraw.withdrawal GROUP BY 1, 2")))
            time.sleep(interval)
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# figures and the table

def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def median(values):
    return statistics.median(values)


class Table:
    """figure | withdraw | baseline | ratio | target | met?"""

    def __init__(self, title):
        self.title = title
        self.rows = []
        self.notes = []

    def add(self, figure, withdraw, baseline, unit="", target=None, met=None, fmt="{:,.0f}", ratio="auto"):
        """target: a text such as '>= 10,000 /s'; met: True/False/None (no target)."""
        def show(v):
            if v is None:
                return "-"
            if isinstance(v, str):
                return v
            return fmt.format(v) + (f" {unit}" if unit else "")
        if ratio == "auto":
            ratio = (withdraw / baseline if isinstance(withdraw, (int, float)) and
                     isinstance(baseline, (int, float)) and baseline else None)
        self.rows.append((figure, show(withdraw), show(baseline),
                          "-" if ratio is None else f"{ratio:.2f}",
                          target or "-", "-" if met is None else ("met" if met else "MISSED")))

    def note(self, text):
        self.notes.append(text)

    def print(self):
        heads = ("figure", "withdraw", "baseline", "ratio", "target", "met?")
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
                  for i, h in enumerate(heads)]
        line = "| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths)) + " |"
        print()
        print(f"## {self.title}")
        print()
        print(line)
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in self.rows:
            print("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w)
                                    in enumerate(zip(r, widths))) + " |")
        for n in self.notes:
            print(f"\n{n}")
        print(flush=True)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
