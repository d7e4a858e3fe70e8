"""Test harness: a throwaway PostgreSQL cluster with withdraw preloaded, and the
mock provider process.  Used by the integration suite, the demo and the
benchmarks.  Must run as an ordinary user (PostgreSQL refuses root)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import psycopg2
import psycopg2.extensions

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MOCK = os.path.join(ROOT, "test", "mock", "mock_provider.py")


def pg_bindir():
    return subprocess.check_output(["pg_config", "--bindir"], text=True).strip()


def rsa_key_pair():
    """A fresh 2048-bit RSA key as (private PKCS#8 PEM, public SPKI PEM), for
    chainup accounts and the mock that plays the platform."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return pem, pub


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Polls predicate until it returns a truthy value; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Cluster:
    """A PostgreSQL 15 cluster in a temporary directory."""

    DEFAULT_SETTINGS = {
        "shared_preload_libraries": "'withdraw'",
        "withdraw.database_name": "'postgres'",
        "withdraw.allow_http": "on",
        # the mocks listen on 127.0.0.1, which production refuses (README, Security)
        "withdraw.allow_private_addresses": "on",
        "withdraw.naptime": "100",
        "withdraw.poll_interval": "200",
        "withdraw.retry_base_delay": "200",
        "withdraw.retry_max_delay": "1000",
        "withdraw.request_timeout": "5000",
        "log_min_messages": "log",
        "fsync": "off",
        # WITHDRAW_WORKERS=2 runs a suite against two workers sharing the work
        "withdraw.workers": os.environ.get("WITHDRAW_WORKERS", "1"),
    }

    def __init__(self, settings=None, keep=False):
        self.dir = tempfile.mkdtemp(prefix="withdraw-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.bindir = pg_bindir()
        self.keep = keep
        # the key that seals account credentials, outside the data directory
        self.key_file = os.path.join(self.dir, "secrets.key")
        with open(os.open(self.key_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        conf = dict(self.DEFAULT_SETTINGS)
        conf["withdraw.secrets_key_file"] = f"'{self.key_file}'"
        conf.update(settings or {})
        subprocess.run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-A", "trust",
                        "-U", "postgres", "--no-sync"], check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.dir}'\n")
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")

    def pg_ctl(self, *args, check=True, env=None):
        return subprocess.run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", self.log,
                               "-w", *args], check=check, stdout=subprocess.DEVNULL, env=env)

    def start(self, env=None):
        """Starts the server; env (a dict) is the postmaster's environment,
        by default this process's."""
        self.pg_ctl("start", env=env)
        return self

    def stop(self, mode="fast"):
        self.pg_ctl("stop", "-m", mode, check=False)

    def destroy(self):
        self.stop("immediate")
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self, autocommit=True):
        conn = psycopg2.connect(host=self.dir, port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = autocommit
        return conn

    def sql(self, query, params=None):
        """Runs one statement in its own connection; returns all rows (or [])."""
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def value(self, query, params=None):
        rows = self.sql(query, params)
        return rows[0][0] if rows else None

    # -- withdrawals, as the suites look at them

    def withdrawal(self, wid, cols=("state",)):
        """Withdrawal wid from withdraw.withdrawals as a dict of cols (a
        column may be "expression AS name")."""
        r = self.sql(f"SELECT {', '.join(cols)} FROM withdraw.withdrawals WHERE id = %s", (wid,))[0]
        return dict(zip((c.split()[-1] for c in cols), r))

    def wait_withdrawal(self, wid, states, cols=("state",), timeout=15):
        """Waits until withdrawal wid is in one of states; returns its row
        (cols, which must include state); a timeout names the last row seen."""
        states = (states,) if isinstance(states, str) else tuple(states)
        seen = {}

        def reached():
            seen["row"] = self.withdrawal(wid, cols)
            return seen["row"] if seen["row"]["state"] in states else None
        try:
            return wait_until(reached, timeout, 0.05, f"withdrawal {wid} to reach {states}")
        except AssertionError as e:
            raise AssertionError(f"{e} (last seen: {seen.get('row')})") from None

    def state_path(self, wid):
        """The states withdrawal wid went through, its creation first."""
        return [t for (t,) in self.sql("SELECT to_state FROM withdraw.events WHERE withdrawal_id = %s"
                                       " AND to_state IS NOT NULL ORDER BY at", (wid,))]

    def verdicts(self, wid):
        """(kind, verdict, detail) of each callback about withdrawal wid, in order."""
        return [tuple(r) for r in self.sql("SELECT kind, verdict, detail FROM withdraw.callbacks"
                                           " WHERE withdrawal_id = %s ORDER BY id", (wid,))]

    def worker_pid(self):
        """The pid of the first worker that runs (worker 0 when it does)."""
        return self.value("SELECT pid FROM withdraw.workers WHERE state = 'running' ORDER BY worker LIMIT 1")

    def postmaster_pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def wait_ready(self, timeout=30):
        def ok():
            try:
                return self.worker_pid()
            except psycopg2.Error:
                return None
        return wait_until(ok, timeout, 0.1, "the withdraw worker to run")

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()


class Mock:
    """The mock provider process (test/mock), on 127.0.0.1."""

    def __init__(self, config):
        self.dir = tempfile.mkdtemp(prefix="withdraw-mock-")
        cfg = os.path.join(self.dir, "config.json")
        with open(cfg, "w") as f:
            json.dump(config, f)
        port_file = os.path.join(self.dir, "port")
        self.proc = subprocess.Popen([sys.executable, MOCK, "--port", "0", "--port-file", port_file,
                                      "--config", cfg, "--quiet"],
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "mock.log"), "w"))
        wait_until(lambda: os.path.exists(port_file) and open(port_file).read().strip(), 10, 0.05,
                   "the mock to listen")
        self.port = int(open(port_file).read().strip())
        self.url = f"http://127.0.0.1:{self.port}"

    def base_url(self, provider):
        return f"{self.url}/{provider}"

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def reset(self):
        return self.call("POST", "/_mock/reset", {})

    def fault(self, **fault):
        return self.call("POST", "/_mock/faults", fault)

    def ledger(self, provider="zoomex"):
        return self.call("GET", f"/_mock/ledger?provider={provider}")

    def requests(self, provider="zoomex"):
        return self.call("GET", f"/_mock/requests?provider={provider}")

    def stats(self, provider="zoomex"):
        return self.call("GET", f"/_mock/stats?provider={provider}")

    def configure(self, config):
        return self.call("POST", "/_mock/config", config)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Suite:
    """A tiny runner: each test is a function; prints one line per test."""

    def __init__(self, name):
        self.name = name
        self.results = []

    def run(self, tests, only=None):
        for test in tests:
            if only and not any(o in test.__name__ for o in only):
                continue
            started = time.monotonic()
            try:
                note = test()
                self.results.append((test.__name__, True, note, time.monotonic() - started))
                print(f"ok    {test.__name__:<48} {time.monotonic() - started:6.1f}s  {note or ''}", flush=True)
            except Exception as e:  # noqa: BLE001 - report every failure the same way
                self.results.append((test.__name__, False, repr(e), time.monotonic() - started))
                print(f"FAIL  {test.__name__:<48} {time.monotonic() - started:6.1f}s  {e!r}", flush=True)
        failed = [r for r in self.results if not r[1]]
        print(f"{self.name}: {len(self.results) - len(failed)} passed, {len(failed)} failed")
        return not failed


def run_suite(name, namespace, mock_config, settings=None, setup=None, teardown=None, with_shim=False):
    """The main() of an integration suite: starts the mock and a cluster with
    the extension (and, with_shim, the callback shim as a role holding only
    withdraw_webhook), puts them in namespace as mock, cluster and shim,
    calls setup(), runs namespace's test_* functions (name filters from
    argv), prints the server log's tail on a failure, cleans up and exits."""
    from callback_shim import CallbackShim

    mock = Mock(mock_config)
    cluster = Cluster(settings).start()
    shim = None
    namespace.update(mock=mock, cluster=cluster)
    ok = False
    try:
        cluster.sql("CREATE EXTENSION withdraw")
        if with_shim:
            cluster.sql("CREATE ROLE webapp NOLOGIN IN ROLE withdraw_webhook")
        cluster.wait_ready()
        if with_shim:
            shim = namespace["shim"] = CallbackShim(cluster.connect, role="webapp").start()
        if setup:
            setup()
        tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
        ok = Suite(name).run(tests, sys.argv[1:])
    finally:
        if not ok or os.environ.get("KEEP"):
            print("---- server log (tail) ----")
            print("\n".join(cluster.log_text().splitlines()[-40:]))
        if shim:
            shim.stop()
        cluster.destroy()
        mock.stop()
        if teardown:
            teardown()
    sys.exit(0 if ok else 1)
