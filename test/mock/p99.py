"""
p99.py - mock of p99.world (ZTDX) spot withdrawals, plugged into mock_provider.py.

Implements, from the published docs (shared/providers.md section 2, seed 002; each
behaviour is traced to the seed, or marked an assumption, in ASSUMPTIONS.md, P1-P8):
  GET  /spot/withdrawals        newest first (requested_at desc, then id desc), a bare
                                JSON array; filters status, token, start, end (Unix
                                seconds, inclusive, on requested_at); limit default 50,
                                clamped to 200, < 1 -> 400
  GET  /spot/withdrawals/<id>   one record; 400 {"error":"invalid id"} for a malformed
                                id, 404 {"error":"WITHDRAWAL_NOT_FOUND"} for an unknown
                                id or another user's
  POST /spot/withdraw/request   JWT only: an API key gets 403 {"error":"API Key
                                permission denied"}; a JWT gets 501 (not mocked)
Errors are {"error": "<STRING>"} with the HTTP status; every authentication failure
is HTTP 401 with an empty body.

Authentication, either:
  Authorization: Bearer <jwt>   the jwt must be one of config "jwts" (no JWT crypto:
                                each configured string is a valid token for its user)
  X-MBX-APIKEY: <key>           HMAC: payload = the raw query string exactly as received
                                up to "&signature=" (no sorting) + the raw body;
                                signature = lowercase hex HMAC-SHA256(secret, payload),
                                the last parameter; if the raw payload does not verify,
                                its URL-decoded form is tried.  timestamp (ms) must lie in
                                [now - recvWindow, now + 1000], recvWindow optional,
                                default 5000, at most 60000.  The signature is checked
                                before the timestamp, so a documented vector with an old
                                timestamp is logged sig_ok=true and still refused.

Data: every user gets seed_rows records, deterministic from (seed, user): ids, tokens,
amounts, nonces, statuses and requested_at offsets (spread over the last history_days
days, bursts of 2-6 records sharing one second).  A user's records are generated the
first time they are needed after start, /_mock/reset or a change of seed, seed_rows,
tokens or history_days; that moment is the user's epoch.  About 15% are "signed"
(requested in the last 12 hours); each becomes "confirmed" (tx_hash, block_number,
confirmed_at) confirm_after_s after the epoch, except about a third which become
"expired" after expire_after_s (their deadline is that moment).  Statuses are computed
from the clock on every read.  Records added with /_mock/p99/add are "signed",
requested now, and change the same way counting from when they were added.

Config ("p99" section):
  keys              {api_key: api_secret}
  key_users         {api_key: user}; a key not listed is a user named after the key
  jwts              {token: user}
  seed_rows, seed, tokens, history_days, confirm_after_s, expire_after_s  (see above)

Control (served by the core under /_mock/p99/):
  POST /_mock/p99/add {"user": u, "count": n[, "token": t, "amount": "1.5"]}
                    n new signed records for u, requested now -> {"ok", "ids"}
  GET  /_mock/p99/records?user=u   u's records as they are now (any order)
Log fields: auth ("jwt", "api_key" or null), api_key, user, status (HTTP), sig_ok
(the credential verified), error.  No JWT, secret or signature is ever logged.
"""

import hashlib
import hmac
import random
import re
import time
import uuid
from decimal import Decimal
from urllib.parse import parse_qsl, unquote_to_bytes

NAME = "p99"

DEFAULT_CONFIG = {
    "keys": {},
    "key_users": {},
    "jwts": {},
    "seed_rows": 450,
    "seed": 7,
    "tokens": ["DF", "USDT"],
    "history_days": 10,
    "confirm_after_s": 3.0,
    "expire_after_s": 6.0,
}

STATS = ("auth_failures", "bad_signatures", "bad_timestamps", "clamped_limits",
         "validation_errors", "not_found", "permission_denied", "records_added")

LIST_PATH = "/spot/withdrawals"
CREATE_PATH = "/spot/withdraw/request"
STATUSES = ("signed", "confirmed", "expired")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
CHAIN_ID = 97
DEADLINE_TTL = 86400                 # 24 h signature validity
SIGNED_SHARE = 0.15                  # of seeded records still open at the epoch
RECENT_S = 43200                     # open records were requested in the last 12 h
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
DIGITS_RE = re.compile(r"[0-9]{1,19}")
SIGNED_INT_RE = re.compile(r"-?[0-9]{1,19}")
EMPTY = b""


def check_config(cfg):
    """Raise ValueError if the p99 config cannot be used."""
    for name in ("keys", "key_users", "jwts"):
        d = cfg.get(name)
        if not isinstance(d, dict) or not all(isinstance(k, str) and k and isinstance(v, str) and v
                                              for k, v in d.items()):
            raise ValueError(f"p99.{name} must map non-empty strings to non-empty strings")

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if not is_int(cfg.get("seed_rows")) or not 0 <= cfg["seed_rows"] <= 100000:
        raise ValueError("p99.seed_rows must be an integer from 0 to 100000")
    if not is_int(cfg.get("seed")):
        raise ValueError("p99.seed must be an integer")
    tokens = cfg.get("tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
        raise ValueError("p99.tokens must be a non-empty list of token symbols")
    for name in ("history_days", "confirm_after_s", "expire_after_s"):
        v = cfg.get(name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"p99.{name} must be a number >= 0")
    if cfg["history_days"] <= 0:
        raise ValueError("p99.history_days must be > 0")


def sign(secret, payload):
    """Lowercase hex HMAC-SHA256 of payload (str or bytes) keyed with secret."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()


def split_signature(query):
    """(payload, signature) when signature is the last parameter and appears once in the
    raw query string, else None."""
    if query.startswith("signature="):
        payload, sig = "", query[len("signature="):]
    else:
        payload, mark, sig = query.rpartition("&signature=")
        if not mark:
            return None
    if "&" in sig or any(k == "signature" for k, _ in parse_qsl(payload, keep_blank_values=True)):
        return None
    return payload, sig


def first_params(query):
    """Decoded query parameters, the first value of each name."""
    out = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        out.setdefault(k, v)
    return out


def fmt_amount(d):
    """A Decimal as a plain decimal string without exponent or trailing zeros."""
    s = format(d, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


class Auth:
    """The outcome of authenticating one request (no side effects)."""

    def __init__(self, kind=None, api_key=None, user=None, ok=False, reason="missing credentials"):
        self.kind, self.api_key, self.user, self.ok, self.reason = kind, api_key, user, ok, reason

    def log(self):
        return {"auth": self.kind, "api_key": self.api_key, "user": self.user, "sig_ok": self.ok}


class Provider:
    """p99 state: per-user records.  Every method runs under the core lock."""

    def __init__(self, config, stats):
        self.cfg = config
        self.stats = stats
        self.reset()

    def reset(self):
        self.users = {}         # user -> {"epoch", "rng", "records" (newest first), "next_nonce"}
        self.gen_key = None

    # -- data

    def _gen_params(self):
        c = self.cfg
        return (c["seed"], c["seed_rows"], tuple(c["tokens"]), c["history_days"])

    def _known_users(self):
        c = self.cfg
        return set(c["jwts"].values()) | {c["key_users"].get(k, k) for k in c["keys"]} | set(self.users)

    def _user(self, user):
        """The user's state, generating the seeded history on first use."""
        if self.gen_key != self._gen_params():
            self.users.clear()
            self.gen_key = self._gen_params()
        u = self.users.get(user)
        if u is None:
            u = self._generate(user)
            self.users[user] = u
        return u

    def _generate(self, user):
        c = self.cfg
        rng = random.Random(f"p99/{c['seed']}/{user}")
        epoch = time.time()
        base = int(epoch)
        span = max(2, int(c["history_days"] * 86400))
        recent = max(2, min(span, RECENT_S))
        n = c["seed_rows"]
        n_open = round(n * SIGNED_SHARE)
        records = []

        def bursts(count, window, open_):
            made = 0
            while made < count:
                size = 1 if rng.random() < 0.7 else rng.randint(2, 6)
                size = min(size, count - made)
                at = base - rng.randrange(1, window)
                for _ in range(size):
                    records.append(self._new_record(rng, at, open_, epoch))
                made += size

        bursts(n - n_open, span, False)
        bursts(n_open, recent, True)
        for i, r in enumerate(sorted(records, key=lambda r: (r["requested_at"], r["id"]))):
            r["nonce"] = i + 1
        records.sort(key=lambda r: (r["requested_at"], r["id"]), reverse=True)
        return {"epoch": epoch, "rng": rng, "records": records, "next_nonce": len(records) + 1,
                "by_id": {r["id"]: r for r in records}, "added": 0}

    def _new_record(self, rng, at, open_, since, token=None, amount=None):
        """A stored record.  Open records keep status "signed" and a fate reached after
        confirm_after_s or expire_after_s counted from `since`."""
        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        token = token or rng.choice(self.cfg["tokens"])
        if amount is None:
            kind = rng.random()
            if kind < 0.4:
                amount = Decimal(rng.randint(1, 5000))
            elif kind < 0.8:
                amount = Decimal(rng.randint(1, 500000)) / 100
            else:
                amount = Decimal(rng.randint(1, 10 ** 9)) / 10 ** 8
            amount = fmt_amount(amount)
        r = {"id": rid, "token": token, "amount": amount, "nonce": 0, "requested_at": at,
             "fate": None, "since": since}
        if open_:
            r["status"] = "signed"
            r["fate"] = "expired" if rng.random() < 1 / 3 else "confirmed"
            r["confirmed_at"] = None
        else:
            # expired only once the 24 h deadline has passed
            late = since - at >= DEADLINE_TTL
            r["status"] = "expired" if rng.random() < 0.2 and late else "confirmed"
            r["confirmed_at"] = min(at + rng.randint(20, 900), int(since)) \
                if r["status"] == "confirmed" else None
        return r

    def _view(self, r, now):
        """The public record at time now."""
        status, confirmed_at = r["status"], r["confirmed_at"]
        deadline = r["requested_at"] + DEADLINE_TTL
        if r["fate"] == "expired":
            deadline = int(r["since"] + self.cfg["expire_after_s"])
        if r["fate"] is not None:
            after = self.cfg["confirm_after_s"] if r["fate"] == "confirmed" else self.cfg["expire_after_s"]
            if now >= r["since"] + after:
                status = r["fate"]
                if status == "confirmed":
                    confirmed_at = max(r["requested_at"], int(r["since"] + after))
        done = status == "confirmed"
        return {"id": r["id"], "token": r["token"], "amount": r["amount"], "fee": "0",
                "chain_id": CHAIN_ID, "nonce": r["nonce"], "status": status, "deadline": deadline,
                "tx_hash": "0x" + hashlib.sha256(f"p99-tx/{r['id']}".encode()).hexdigest() if done else None,
                "block_number": 40000000 + (confirmed_at - 1700000000) // 3 if done else None,
                "requested_at": r["requested_at"],
                "confirmed_at": confirmed_at if done else None}

    # -- plumbing shared with the core

    def error_reply(self, req, code, msg):
        return (code if 400 <= code <= 599 else 500), {"error": msg}

    def _authenticate(self, req):
        h = req.headers
        authz = h.get("Authorization")
        if authz is not None:
            scheme, _, token = authz.strip().partition(" ")
            token = token.strip()
            user = self.cfg["jwts"].get(token) if scheme.lower() == "bearer" and token else None
            if user is None:
                return Auth("jwt", reason="invalid jwt")
            return Auth("jwt", user=user, ok=True, reason=None)
        key = h.get("X-MBX-APIKEY")
        if not key:
            return Auth()
        secret = self.cfg["keys"].get(key)
        if secret is None:
            return Auth("api_key", api_key=key, reason="unknown api key")
        a = Auth("api_key", api_key=key, user=self.cfg["key_users"].get(key, key))
        split = split_signature(req.query)
        if split is None:
            a.reason = "signature missing or not the last parameter"
            return a
        payload, given = split
        raw = payload.encode("latin-1", "replace") + req.body
        decoded = unquote_to_bytes(payload.encode("latin-1", "replace").replace(b"+", b" ")) + req.body
        given = given.encode("latin-1", "replace")
        if not any(hmac.compare_digest(sign(secret, p).encode(), given) for p in (raw, decoded)):
            a.reason = "bad signature"
            return a
        a.ok = True
        params = first_params(payload)
        ts, rw = params.get("timestamp", ""), params.get("recvWindow", "5000")
        if not DIGITS_RE.fullmatch(ts) or not DIGITS_RE.fullmatch(rw) or not 0 < int(rw) <= 60000:
            a.reason = "bad timestamp"
            return a
        server = int(time.time() * 1000)
        if not server - int(rw) <= int(ts) <= server + 1000:
            a.reason = "bad timestamp"
            return a
        a.reason = None
        return a

    def peek(self, req):
        """Log fields for a request the core will not pass to handle()."""
        return self._authenticate(req).log()

    def handle(self, req):
        a = self._authenticate(req)
        info = a.log()
        info.update(requestId=None, ret_code=None, executed=False, error=None)
        if a.reason is not None:
            self.stats["auth_failures"] += 1
            if a.reason == "bad signature":
                self.stats["bad_signatures"] += 1
            elif a.reason == "bad timestamp":
                self.stats["bad_timestamps"] += 1
            info.update(status=401, error=a.reason)
            return 401, EMPTY, info
        status, body = self._route(req, a)
        info["status"] = status
        if isinstance(body, dict):
            info["error"] = body.get("error")
        return status, body, info

    def _route(self, req, a):
        path = req.path
        if req.method == "GET" and path == LIST_PATH:
            return self._list(req, a.user)
        if req.method == "GET" and path.startswith(LIST_PATH + "/"):
            return self._one(path[len(LIST_PATH) + 1:], a.user)
        if req.method == "POST" and path == CREATE_PATH:
            if a.kind == "api_key":
                self.stats["permission_denied"] += 1
                return 403, {"error": "API Key permission denied"}
            return 501, {"error": "NOT_IMPLEMENTED"}
        self.stats["not_found"] += 1
        return 404, {"error": "NOT_FOUND"}

    # -- endpoints

    def _bad(self, what):
        self.stats["validation_errors"] += 1
        return 400, {"error": f"invalid {what}"}

    def _list(self, req, user):
        p = first_params(req.query)
        status = p.get("status", "")
        if status and status not in STATUSES:
            return self._bad("status")
        token = p.get("token", "")
        bounds = {}
        for name in ("start", "end"):
            v = p.get(name, "")
            if v and not SIGNED_INT_RE.fullmatch(v):
                return self._bad(name)
            bounds[name] = int(v) if v else None
        limit = p.get("limit", "")
        if limit and not SIGNED_INT_RE.fullmatch(limit):
            return self._bad("limit")
        limit = int(limit) if limit else DEFAULT_LIMIT
        if limit < 1:
            return self._bad("limit")
        if limit > MAX_LIMIT:
            self.stats["clamped_limits"] += 1
            limit = MAX_LIMIT
        now = time.time()
        out = []
        for r in self._user(user)["records"]:       # newest first
            at = r["requested_at"]
            if ((bounds["start"] is not None and at < bounds["start"])
                    or (bounds["end"] is not None and at > bounds["end"])
                    or (token and r["token"] != token)):
                continue
            v = self._view(r, now)
            if status and v["status"] != status:
                continue
            out.append(v)
            if len(out) == limit:
                break
        return 200, out

    def _one(self, wid, user):
        if not UUID_RE.fullmatch(wid):
            return self._bad("id")
        r = self._user(user)["by_id"].get(wid.lower())
        if r is None:
            self.stats["not_found"] += 1
            return 404, {"error": "WITHDRAWAL_NOT_FOUND"}
        return 200, self._view(r, time.time())

    # -- control (/_mock/p99/...)

    def control(self, method, path, params, obj):
        """Provider control endpoints; returns (status, JSON body); ValueError -> 400."""
        if method == "POST" and path == "/add":
            if not isinstance(obj, dict):
                raise ValueError("body must be a JSON object")
            user, count = obj.get("user"), obj.get("count", 1)
            if not isinstance(user, str) or not user:
                raise ValueError("user must be a non-empty string")
            if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10000:
                raise ValueError("count must be an integer from 1 to 10000")
            token, amount = obj.get("token"), obj.get("amount")
            if token is not None and (not isinstance(token, str) or not token):
                raise ValueError("token must be a non-empty string")
            if amount is not None and (not isinstance(amount, str)
                                       or not re.fullmatch(r"[0-9]+(\.[0-9]+)?", amount)):
                raise ValueError("amount must be a decimal string")
            if user not in self._known_users():
                return 404, {"ok": False, "error": f"unknown user {user!r}"}
            return 200, {"ok": True, "ids": self.add(user, count, token, amount)}
        if method == "GET" and path == "/records":
            user = params.get("user")
            if not user:
                raise ValueError("query parameter user is required")
            if user not in self._known_users():
                return 404, {"ok": False, "error": f"unknown user {user!r}"}
            now = time.time()
            return 200, [self._view(r, now) for r in self._user(user)["records"]]
        return 404, {"ok": False, "error": f"no control endpoint {method} /_mock/{NAME}{path}"}

    def add(self, user, count, token=None, amount=None):
        """count new signed records for user, requested now; returns their ids."""
        u = self._user(user)
        now = time.time()
        new = []
        for _ in range(count):
            r = self._new_record(u["rng"], int(now), True, now, token, amount)
            while r["id"] in u["by_id"]:
                r["id"] = str(uuid.UUID(int=u["rng"].getrandbits(128), version=4))
            r["nonce"] = u["next_nonce"]
            u["next_nonce"] += 1
            u["by_id"][r["id"]] = r
            new.append(r)
        u["records"].extend(new)
        u["records"].sort(key=lambda r: (r["requested_at"], r["id"]), reverse=True)
        u["added"] += count
        self.stats["records_added"] += count
        return [r["id"] for r in new]

    def ledger(self):
        """Per-user counts (p99 never executes a withdrawal)."""
        now = time.time()
        out = {}
        for user, u in sorted(self.users.items()):
            statuses = {}
            for r in u["records"]:
                s = self._view(r, now)["status"]
                statuses[s] = statuses.get(s, 0) + 1
            out[user] = {"records": len(u["records"]), "added": u["added"], "statuses": statuses,
                         "epoch": u["epoch"]}
        return {"executions": {}, "withdrawals": [], "users": out}
