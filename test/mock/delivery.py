"""
delivery.py - outbound calls of the mock providers: the HTTP POST they make to a
merchant's URL, a timer thread, and callback delivery with a retry schedule.

Not a provider (mock_provider.py does not register it); the provider modules import it:
  post(url, body, headers, timeout, limit)  one POST; (http_status, reply bytes, error),
                 any transport failure being (None, None, error).  Used by chainup.py
                 (second confirmations, notifications), ccpayment.py, fiat_gateway.py.
  Scheduler      runs fn(*args) at monotonic times on one daemon thread, holding the
                 provider's own lock.
  ScheduledProvider  base of a Provider whose work runs later (settlement, callbacks):
                 its own lock, a Scheduler, a generation that reset drops queued work
                 with, config values with defaults.  Used by ccpayment.py and
                 fiat_gateway.py, like Scheduler and Courier.
  Courier        delivers a callback (ccpayment webhooks, fiat_gateway notifications):
                 the same body bytes POSTed to one URL, one attempt at once, then one
                 retry after each delay of the provider's retry schedule, until a reply
                 is HTTP 200 and the provider's accept(reply text) holds.
What is signed, what is sent and what counts as an acknowledgement stay with each
provider module (this module knows no protocol).
"""

import heapq
import http.client
import threading
import time
import traceback
from urllib.parse import urlsplit

REPLY_READ = 65536          # bytes of a reply a Courier attempt reads
REPLY_KEEP = 1000           # characters of it kept in the attempt


def post(url, body, headers, timeout, limit=None):
    """POST body (bytes) to an http(s) url with Content-Length and Connection: close;
    returns (http_status, reply bytes (at most limit of them), None), or (None, None,
    error text) when the transport fails in any way."""
    u = urlsplit(url)
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    c = cls(u.hostname, u.port, timeout=timeout)
    try:
        h = dict(headers)
        h["Content-Length"] = str(len(body))
        h["Connection"] = "close"
        c.request("POST", path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read(limit), None
    except Exception as e:         # any transport failure is a failed attempt
        return None, None, f"{type(e).__name__}: {e}"
    finally:
        c.close()


class Scheduler:
    """Runs fn(*args) at monotonic times on one daemon thread (named name), holding lock
    (the provider's own lock, never the core's).  Tasks must not block."""

    def __init__(self, lock, name):
        self.cond = threading.Condition(lock)
        self.name = name
        self.heap = []
        self.seq = 0
        self.thread = None

    def add(self, delay, fn, *args):
        """Call with the lock held."""
        self.seq += 1
        heapq.heappush(self.heap, (time.monotonic() + max(0.0, delay), self.seq, fn, args))
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self.thread.start()
        self.cond.notify()

    def clear(self):
        self.heap.clear()

    def _run(self):
        with self.cond:
            while True:
                if not self.heap:
                    self.cond.wait()
                    continue
                wait = self.heap[0][0] - time.monotonic()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                _, _, fn, args = heapq.heappop(self.heap)
                try:
                    fn(*args)
                except Exception:
                    traceback.print_exc()


class ScheduledProvider:
    """Base of a Provider that works off the request path: self.lock (an RLock: the core
    calls in holding its own lock and takes this one; the scheduler and delivery threads
    take only this one), self.sched (a Scheduler on it, thread name scheduler_name) and
    self.gen, which new_generation() bumps (a reset): queued work of an older generation
    must do nothing.  DEFAULTS is the module's DEFAULT_CONFIG."""

    DEFAULTS = {}

    def __init__(self, config, stats, scheduler_name):
        self.cfg = config
        self.stats = stats
        self.lock = threading.RLock()
        self.sched = Scheduler(self.lock, scheduler_name)
        self.gen = 0

    def new_generation(self):
        """Drop the queued work (call with self.lock held)."""
        self.gen += 1
        self.sched.clear()

    def _c(self, key):
        """A config value read off the request path: the core swaps the config dict's
        contents under its own lock only, so fall back to the default meanwhile."""
        v = self.cfg.get(key)
        return self.DEFAULTS[key] if v is None and self.DEFAULTS[key] is not None else v


class Courier:
    """Delivers one provider's callbacks.

    A delivery is a dict the provider builds and keeps: id, url, _body (bytes), _retry,
    acked, done, attempts (a list).  send(d) queues its first attempt.  Each attempt
    runs on a daemon thread (named thread_name) and POSTs _body to url with the
    headers of that attempt; it is acknowledged when the reply is HTTP 200 and
    accept(reply text) holds (d acked and done).  Otherwise, while _retry, the next
    attempt follows after the next delay of the retry schedule (one attempt at once,
    then one retry per delay); after the last, d is done, not acked.  Each attempt is
    appended to d["attempts"] as {t, <prepared fields>, http_status, reply (at most
    REPLY_KEEP characters), error, ok}.

    owner is the ScheduledProvider: owner.lock (taken by the attempt threads; every
    other call here is made with it held), owner.sched, owner.gen (attempts of an older
    generation are dropped), owner.stats and owner._c(key), which reads timeout_key
    (seconds per attempt) and delays_key (the retry schedule) when they are needed.  counters names the stats bumped: (sent,
    attempts, acked, failed).  prepare(d) -> (headers, fields logged with the attempt),
    or None to give d up unsent, is called at each attempt, so a signature can cover
    that attempt's timestamp."""

    def __init__(self, owner, thread_name, counters, timeout_key, delays_key, accept, prepare):
        self.owner, self.thread_name = owner, thread_name
        self.sent, self.attempts, self.acked, self.failed = counters
        self.timeout_key, self.delays_key = timeout_key, delays_key
        self.accept, self.prepare = accept, prepare

    def send(self, d):
        """Count d as sent and queue its first attempt; returns d["id"]."""
        o = self.owner
        o.stats[self.sent] += 1
        o.sched.add(0, self._start_attempt, d, o.gen)
        return d["id"]

    def _start_attempt(self, d, gen):
        o = self.owner
        if gen != o.gen or d["done"]:
            return
        prepared = self.prepare(d)
        if prepared is None:
            d["done"] = True
            return
        headers, fields = prepared
        attempt = {"t": time.time(), **fields, "http_status": None, "reply": None, "error": None, "ok": False}
        d["attempts"].append(attempt)
        o.stats[self.attempts] += 1
        threading.Thread(target=self._attempt, args=(d, attempt, headers, o._c(self.timeout_key), gen),
                         name=self.thread_name, daemon=True).start()

    def _attempt(self, d, attempt, headers, timeout, gen):
        status, data, err = post(d["url"], d["_body"], headers, timeout, REPLY_READ)
        reply = None if data is None else data.decode("utf-8", "replace")
        o = self.owner
        with o.lock:
            if gen != o.gen:
                return
            attempt.update(http_status=status, reply=None if reply is None else reply[:REPLY_KEEP], error=err)
            attempt["ok"] = status == 200 and self.accept(reply or "")
            if attempt["ok"]:
                d["acked"] = d["done"] = True
                o.stats[self.acked] += 1
                return
            delays = o._c(self.delays_key)
            n = len(d["attempts"])
            if d["_retry"] and n - 1 < len(delays):
                o.sched.add(delays[n - 1], self._start_attempt, d, gen)
            else:
                d["done"] = True
                o.stats[self.failed] += 1
