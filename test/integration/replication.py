"""A primary and its streaming standbys, for the failover tests (issue 20):
test/integration/test_standby.py and test/reliability/failover_suite.py.

A Node is a harness.Cluster that knows its replication role: the first is made
by initdb, the others by pg_basebackup from it; any of them can be killed
with SIGKILL (every process of the instance at once, as when the machine is
lost), promoted (pg_ctl promote) and rebuilt as the standby of another
(pg_rewind, or a fresh base backup if that fails).  Each node's port and
socket directory are given on the postmaster's command line, so that the
configuration files that pg_basebackup and pg_rewind copy from another node
never carry them; primary_conninfo is written by follow() alone.

Also here: the process helpers shared with test/reliability/crash_suite.py.
Must run as an ordinary user (PostgreSQL refuses root)."""

import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import Cluster, free_port, pg_bindir, wait_until

# on every node: what streaming replication, pg_rewind and a prompt failover need
REPLICATION_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "10",
    "wal_log_hints": "on",              # pg_rewind without data checksums
    "hot_standby": "on",
    "wal_keep_size": "'1GB'",           # no slots: keep what a rebuilt standby needs
    "wal_sender_timeout": "'10s'",
    "wal_receiver_timeout": "'10s'",
    "wal_retrieve_retry_interval": "'200ms'",
}


# -- processes ---------------------------------------------------------------

def proc_gone(pid):
    """True once pid no longer exists (a zombie still holds the postmaster's
    lock file: PostgreSQL checks it with kill(pid, 0))."""
    return not os.path.exists(f"/proc/{pid}")


def proc_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return True


def children_of(ppid):
    kids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                for line in f:
                    if line.startswith("PPid:"):
                        if int(line.split()[1]) == ppid:
                            kids.append(int(name))
                        break
        except (FileNotFoundError, ProcessLookupError):
            pass
    return kids


def procs_in(directory):
    """Processes whose working directory is this one: every process of a
    PostgreSQL server has its data directory as working directory."""
    target = os.path.realpath(directory)
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/cwd") == target:
                    pids.append(int(name))
            except OSError:
                pass
    return pids


# -- a slow link --------------------------------------------------------------

class DelayProxy:
    """A TCP relay on 127.0.0.1 that delivers every byte delay_s after it
    arrived, in both directions: the replication link of a standby that
    lags (another site, a busy standby).  stop() cuts the link: what is
    still in flight is lost, as when the primary's machine is lost."""

    def __init__(self, target_port, delay_s):
        self.target_port = target_port
        self.delay_s = delay_s
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            self.conns += [client, server]
            for src, dst in ((client, server), (server, client)):
                q = queue.Queue()
                threading.Thread(target=self._read, args=(src, q), daemon=True).start()
                threading.Thread(target=self._write, args=(dst, q), daemon=True).start()

    def _read(self, src, q):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            q.put((time.monotonic() + self.delay_s, data))
            if not data:
                return

    def _write(self, dst, q):
        while True:
            due, data = q.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if self.stopped:
                return          # in flight when the link was cut: lost
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    def stop(self):
        self.stopped = True
        for c in [self.sock] + self.conns:
            try:
                c.close()
            except OSError:
                pass


# -- nodes -------------------------------------------------------------------

class Node(Cluster):
    """One server of a replicated pair.  Node(name, settings) makes a primary
    with initdb; Node(name, base=primary) a standby of it by pg_basebackup
    (sharing the primary's secrets key file, as every node of a real pair
    must hold the same key), streaming through via (a DelayProxy) if given."""

    def __init__(self, name, settings=None, base=None, keep=False, via=None):
        self.name = name
        if base is None:
            conf = dict(REPLICATION_SETTINGS)
            conf.update(settings or {})
            super().__init__(conf, keep)
        else:
            self.dir = tempfile.mkdtemp(prefix=f"withdraw-{name}-")
            self.data = os.path.join(self.dir, "data")
            self.log = os.path.join(self.dir, "server.log")
            self.port = free_port()
            self.bindir = pg_bindir()
            self.keep = keep
            self.key_file = base.key_file
            self.base_backup(base, via)

    def tool(self, name, *args, check=True):
        return subprocess.run([os.path.join(self.bindir, name), *args], check=check,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def start(self, env=None):
        self.pg_ctl("start", "-o", f"-p {self.port} -k {self.dir} -c cluster_name={self.name}", env=env)
        return self

    def conninfo(self, application_name=None):
        info = f"host={self.dir} port={self.port} user=postgres"
        return info + (f" application_name={application_name}" if application_name else "")

    def follow(self, primary, via=None):
        """Configures this (stopped) node as a streaming standby of primary,
        through via (a DelayProxy to it) if given."""
        info = primary.conninfo(self.name)
        if via is not None:
            info = f"host=127.0.0.1 port={via.port} user=postgres application_name={self.name}"
        with open(os.path.join(self.data, "postgresql.auto.conf"), "w") as f:
            f.write("# written by test/integration/replication.py\n"
                    f"primary_conninfo = '{info}'\n"
                    "recovery_target_timeline = 'latest'\n")
        open(os.path.join(self.data, "standby.signal"), "w").close()

    def base_backup(self, primary, via=None):
        shutil.rmtree(self.data, ignore_errors=True)
        self.tool("pg_basebackup", "-D", self.data, "-d", primary.conninfo(), "-X", "stream",
                  "-c", "fast", "--no-sync")
        self.follow(primary, via)

    def rebuild(self, primary, via=None):
        """Makes this node, stopped or killed, a standby of primary: pg_rewind
        (which finishes this node's crash recovery first), or a fresh base
        backup when pg_rewind cannot.  Returns "pg_rewind" or "pg_basebackup"."""
        # a primary promoted moments ago names its new timeline in its control
        # file only at its next checkpoint, which is what pg_rewind reads
        primary.sql("CHECKPOINT")
        r = self.tool("pg_rewind", "--target-pgdata", self.data,
                      "--source-server", primary.conninfo() + " dbname=postgres", "--no-sync", check=False)
        if r.returncode == 0:
            self.follow(primary, via)
            return "pg_rewind"
        self.rewind_error = r.stdout[-600:]
        self.base_backup(primary, via)
        return "pg_basebackup"

    def promote(self):
        self.pg_ctl("promote")

    def in_recovery(self):
        return self.value("SELECT pg_is_in_recovery()")

    def kill_all(self, moment=None):
        """SIGKILL to the postmaster and every process of this instance at
        once (the machine is lost), then waits until none is left.  moment,
        if given, is called once the processes are known, and the kill
        follows as soon as it returns.  Returns the time of the kill."""
        pids = set(procs_in(self.data))
        try:
            pm = self.postmaster_pid()
            pids.add(pm)
        except (FileNotFoundError, ValueError):
            pm = None
        if moment is not None:
            moment()
        t = time.time()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # a process started since the list was made (a new backend)
        for pid in set(procs_in(self.data)) - pids:
            pids.add(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # the postmaster must be gone, not a zombie: its pid in postmaster.pid
        # would still look alive to the next server started on this directory
        wait_until(lambda: not any(proc_alive(p) for p in pids | set(procs_in(self.data)))
                   and (pm is None or proc_gone(pm)),
                   60, 0.02, f"every process of {self.name} to exit")
        return t

    def wait_streaming(self, standby, timeout=60):
        """Waits until standby (a Node) streams from this primary."""
        wait_until(lambda: self.value("SELECT count(*) FROM pg_stat_replication WHERE application_name = %s"
                                      " AND state = 'streaming'", (standby.name,)),
                   timeout, 0.1, f"{standby.name} to stream from {self.name}")

    def wait_replayed(self, standby, timeout=60):
        """Waits until standby has replayed everything this primary has written so far."""
        lsn = self.value("SELECT pg_current_wal_lsn()")
        wait_until(lambda: standby.value("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)),
                   timeout, 0.05, f"{standby.name} to replay up to {lsn}")

    def worker_pids(self):
        """pids of the withdraw workers running on this node, from pg_stat_activity."""
        return [p for (p,) in self.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'withdraw worker'")]
