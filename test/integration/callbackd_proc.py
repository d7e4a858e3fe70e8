"""withdraw-callbackd as a test or benchmark runs it: the installed binary
(pg_config --bindir, where `make install` puts it) started on 127.0.0.1 with
settings given as flags, its stderr (messages and access log) kept in a file.

    d = Callbackd(cluster, accounts=["cu1"], role="callbackd").start()
    d.url("cu1", "notify")   -> http://127.0.0.1:PORT/cu1/notify
    d.kill9(); d.start()     -> the same port again
    d.stop()                 -> SIGTERM, waits for the exit
"""

import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from harness import free_port, pg_bindir, wait_until


def binary():
    path = os.path.join(pg_bindir(), "withdraw-callbackd")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is missing: make install builds and installs it")
    return path


class Callbackd:
    def __init__(self, cluster, accounts, role="callbackd", port=None, database=None, **settings):
        self.cluster = cluster
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="withdraw-callbackd-")
        self.log = os.path.join(self.dir, "callbackd.log")
        self.database = database or f"host={cluster.dir} port={cluster.port} dbname=postgres user={role}"
        self.settings = {"listen": f"127.0.0.1:{self.port}", "accounts": ",".join(accounts),
                         "timeout": "3", "shutdown_timeout": "5"}
        self.settings.update({k: str(v) for k, v in settings.items()})
        self.proc = None

    def args(self):
        return [binary(), f"--database={self.database}"] + [f"--{k}={v}" for k, v in self.settings.items()]

    def start(self, wait=True):
        if wait:
            started = self.log_text().count("event=started") if os.path.exists(self.log) else 0
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        if wait:
            wait_until(lambda: self.proc.poll() is not None or self.log_text().count("event=started") > started,
                       10, 0.05, "callbackd to listen")
            if self.proc.poll() is not None:
                raise AssertionError(f"callbackd exited with {self.proc.returncode}: {self.log_text()[-500:]}")
        return self

    def health(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def url(self, account, kind):
        return f"http://127.0.0.1:{self.port}/{account}/{kind}"

    def post(self, account, kind, body, headers=None, timeout=10):
        """(status, reply text) of one POST."""
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.url(account, kind), data=data, method="POST", headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode if self.proc else None

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def access_lines(self, route=None):
        """The access log lines as dicts of their key=value fields."""
        out = []
        for line in self.log_text().splitlines():
            if " access " not in line:
                continue
            fields = dict(kv.split("=", 1) for kv in line.split(" access ", 1)[1].split() if "=" in kv)
            if route is None or fields.get("route") == route:
                out.append(fields)
        return out


def wait_exit(proc, timeout):
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc.poll()
