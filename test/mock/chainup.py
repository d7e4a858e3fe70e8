"""
chainup.py - mock of ChainUp Custody WaaS V2 "billing" withdrawals, plugged into
mock_provider.py (an account's base_url is http://127.0.0.1:PORT/chainup).

Implements, from the published docs (shared/providers.md section 1, seed 001; each
behaviour is traced to the seed, or marked an assumption, in ASSUMPTIONS.md, A1-A13):
  POST /api/v2/billing/withdraw          data: request_id (1-64 chars), from_uid,
                                         to_address, amount, symbol
  GET  /api/v2/billing/withdrawList      data: ids = comma-separated request_ids
                                         (at most 100); the known ones' records
  GET  /api/v2/billing/syncWithdrawList  data: max_id (a string of digits); the next
                                         records with id > max_id, ascending, at most 100
and every data also time (a JSON integer, ms), charset ("UTF-8", any case) and version
("v2"), all required.  Another method is 405.  Requests carry app_id and data as an
application/x-www-form-urlencoded body (POST) or in the query string (GET).  Every answer is HTTP 200 JSON {"data": <envelope>} whose
plaintext is {"code": "<string>", "msg": ..., "data": ...}; code "0" is success.

The data envelope: UTF-8 JSON cut into 234-byte chunks; each chunk gets PKCS#1 v1.5
block type 1 padding (00 01 FF..FF 00 || chunk, deterministic) and the raw RSA
private-key operation; the blocks are concatenated and base64url-encoded without '='.
Opening: base64url-decode (missing '=' and the +/ alphabet tolerated), split into
modulus-size blocks, raw public-key operation, strict type-1 unpadding (at least 8
FF bytes; any other block is refused), concatenate.  Any chunk size up to k-11 opens
(the Go SDK uses 245).  The RSA arithmetic is done here on python ints from the key
numbers; python3-cryptography only parses and generates keys.  Keys are PEM or bare
base64 DER (PKCS#8 / PKCS#1 private, SubjectPublicKeyInfo / PKCS#1 public).
Requests are sealed with the merchant's private key and opened with the merchant's
public key from config; replies, second confirmations and notifications are sealed
with the mock's wallet private key (generated at first use, 2048-bit, kept across
/_mock/reset, unless config wallet_private_key is set).

withdraw checks, in order: app_id and data present (100004) and app_id known
(100015), data opens with the merchant's key (100005), the plaintext is a JSON object
(100004), fields valid (100004: request_id a 1-64 character string; from_uid a
non-empty string or integer; to_address and symbol non-empty strings; amount a
positive decimal string or JSON number; time in ms as a JSON integer, within
+-time_window_ms of now; charset UTF-8 and version v2 required), request_id not seen
for this app_id (110088 "please do not repeat the request", nothing executed).  Then,
if the merchant has a confirm_url, the second confirmation: POST app_id=..&data=<wallet
envelope of {time, charset, version, request_id, from_uid, to_address, amount,
symbol, check_sum}> (form-encoded); the reply must be HTTP 200 JSON {"data": <envelope
sealed with the merchant's private key>} whose plaintext object has the same
check_sum.  Anything else (transport error, confirm_timeout_s, non-200, not JSON,
wrong key, wrong or missing check_sum) refuses the withdrawal with 120206 "withdrawal
second confirmation failed"; the refusal is in the ledger and the request_id stays
free.  The confirmation is made with the core lock released (see mock_provider.py),
so the merchant's confirm handler can call the mock meanwhile; a second request with
the same request_id during it gets 110088.  On success the record is created (ids
count up from first_id, 48680) and the reply is code "0", data {"withdraw_type": 0
(1 when to_address starts with "internal"), "id": id, "status": 0}.
Errors before the merchant is known or the envelope opens (100004 missing app_id or
data, 100015, 100005) are a PLAIN JSON body {"code": "...", "msg": "...", "data":
null} (the docs leave the shape open; the extension parses a reply that does not
decrypt as plain JSON).  withdrawList: ids empty or more than 100 -> 100004; unknown
ids are absent; a repeated id is listed once, in the order given.  syncWithdrawList:
max_id a string of digits (100004 otherwise, a JSON number too).

Records (only the app_id's own are visible) have exactly the documented fields, in
this order: request_id, id, uid, symbol, amount, withdraw_fee_symbol, withdraw_fee,
fee_symbol, real_fee, created_at, updated_at (ms), address_from, address_to, txid,
confirmations, saas_status, company_status, status (id, uid when numeric,
confirmations, *_status and times are integers; the rest strings).  Status plan
from creation: 0 (risk review) -> 1 (paying) after paying_after_s -> final_status
(default 5) success_after_s later; to_address prefixes change the plan: "fail" ->
0, 1, 4; "reject" -> 0, 2; "cancel" -> 0, 6; "kyt" -> 0, 7 and stays; "manual" -> 0, 8
and stays; "hold" -> stays 0.  Entering 1 sets address_from; entering 5 sets txid,
confirmations and real_fee (withdraw_fee, withdraw_fee_symbol and fee_symbol are set
from creation).  saas_status/company_status: 2 for status 2, 1 once paying (1, 3, 4,
5), else 0.  A background ticker applies the plan on time; every read applies it
too.  POST /_mock/chainup/status pins a record at a forced status.

Notifications: at creation and at every status change, if the merchant has a
notify_url, a background thread POSTs app_id=..&data=<wallet envelope of {charset
"utf-8", version "v2", side "withdraw", notify_time, request_id, id, uid, symbol,
amount, withdraw_fee_symbol, withdraw_fee, fee_symbol, real_fee, address_to,
created_at, updated_at, txid, confirmations, status}>.  Every value is a string, as
in the doc's example ("id":"1", "status":"1"); created_at/updated_at are
"YYYY-MM-DD HH:MM:SS" in UTC+8 like the example (config notify_dates "datetime"), or
ms digit strings (notify_dates "ms").  Delivered when the reply is HTTP 200 with the
body "SUCCESS" (surrounding whitespace ignored); otherwise retried after each of
retry_delays_s, then given up.  Deliveries run in parallel threads, so two
notifications of one record may arrive out of order when the first is retried.
/_mock/reset abandons pending retries.

Config ("chainup" section):
  merchants         {app_id: {"public_key": PEM or base64 DER, "confirm_url": url or
                    null, "notify_url": url or null}}
  wallet_private_key  PEM or base64 DER, or null: a generated key
  time_window_ms    600000     paying_after_s   1.0     success_after_s  1.0
  final_status      5          confirmations    12      first_id         48680
  withdraw_fee      "0"        real_fee        "0.00042"
  confirm_timeout_s 10.0       notify_timeout_s 5.0     retry_delays_s   [0.5, 1, 2]
  sync_page_size    100        notify_dates     "datetime" ("ms")
  plain_answers     false: true answers every request with the plaintext object
                    itself, unsealed (an answer the merchant must not believe)
  list_extra_ids    []: request_ids withdrawList lists besides those asked for (an
                    answer that does not answer the question)
  confirm_time_unit "ms": the second confirmation's time in milliseconds; "s": in
                    seconds (the seed says "Current timestamp", unit unstated: A6)

Control (served by the core under /_mock/chainup/):
  GET  /keys            {"wallet_public_key": PEM, "wallet_public_key_b64": base64 DER}
  POST /envelope {"plaintext": str} or {"json": value}   {"data": wallet envelope}
  POST /status {"request_id", "status": 0-8[, "app_id"]}  force and pin a status
                        (notifies if it changed) -> {"ok", "record"}
  POST /deposit {"app_id", field: value, ...}   post a deposit notification (side
                        "deposit", fields as in the doc's example, overridden by the
                        body's) to the merchant's notify_url -> {"ok", "seq"}
  GET  /records[?app_id=]          records as they are now (with app_id)
  GET  /notifications[?kind=&request_id=&app_id=]   every confirmation ("confirm") and
                        notification ("withdraw", "deposit") posted: seq, kind, app_id,
                        url, request_id, payload, form (the exact body sent), attempts
                        [{t, http_status, reply, error}], delivered, reason
Ledger: executions {request_id: times executed}, withdrawals (records with app_id and
the decrypted request), refused (second confirmations that failed).
Log fields: api_key (= app_id), requestId, ret_code (int), sig_ok (data opened with
the merchant's key), executed, endpoint.  No envelope or key is logged.
"""

import base64
import binascii
import hashlib
import json
import re
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, urlencode, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from delivery import post

NAME = "chainup"

DEFAULT_CONFIG = {
    "merchants": {},
    "wallet_private_key": None,
    "time_window_ms": 600000,
    "paying_after_s": 1.0,
    "success_after_s": 1.0,
    "final_status": 5,
    "confirmations": 12,
    "first_id": 48680,
    "withdraw_fee": "0",
    "real_fee": "0.00042",
    "confirm_timeout_s": 10.0,
    "notify_timeout_s": 5.0,
    "retry_delays_s": [0.5, 1.0, 2.0],
    "sync_page_size": 100,
    "notify_dates": "datetime",
    "plain_answers": False,
    "list_extra_ids": [],
    "confirm_time_unit": "ms",
}

STATS = ("executed", "duplicates_refused", "confirm_failures", "bad_signatures",
         "unknown_merchants", "validation_errors", "status_changes", "notifications_delivered",
         "notification_attempts_failed", "notifications_abandoned")

API = "/api/v2/billing"
WITHDRAW, LIST, SYNC = API + "/withdraw", API + "/withdrawList", API + "/syncWithdrawList"
ENDPOINTS = {WITHDRAW: "withdraw", LIST: "withdrawList", SYNC: "syncWithdrawList"}
# seed 001: "Request method: POST" for withdraw, "Request method: GET" for both lists
METHODS = {WITHDRAW: "POST", LIST: "GET", SYNC: "GET"}
CHUNK = 234                       # plaintext bytes per block, as the Java/PHP reference code
MAX_IDS = 100
STATUSES = range(0, 9)
PAYING = {1, 3, 4, 5}             # statuses reached only after the reviews approved it
HOLD_AT = {"kyt": 7, "manual": 8}
FINAL_BY_PREFIX = (("fail", [1, 4]), ("reject", [2]), ("cancel", [6]), ("kyt", [7]),
                   ("manual", [8]), ("hold", []))
RECORD_FIELDS = ("request_id", "id", "uid", "symbol", "amount", "withdraw_fee_symbol",
                 "withdraw_fee", "fee_symbol", "real_fee", "created_at", "updated_at",
                 "address_from", "address_to", "txid", "confirmations", "saas_status",
                 "company_status", "status")
NOTIFY_FIELDS = ("request_id", "id", "uid", "symbol", "amount", "withdraw_fee_symbol",
                 "withdraw_fee", "fee_symbol", "real_fee", "address_to", "created_at",
                 "updated_at", "txid", "confirmations", "status")
AMOUNT_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
DIGITS_RE = re.compile(r"[0-9]{1,19}")
B64_RE = re.compile(r"[A-Za-z0-9_+/-]*={0,2}")
CHINA = timezone(timedelta(hours=8))
TICK_S = 0.05
REPLY_KEEP = 2000                 # bytes of a merchant's reply kept in the notification log


# -- RSA envelopes ------------------------------------------------------------------------

class EnvelopeError(ValueError):
    """data that does not open with the key (bad base64, length, value or padding)."""


class RsaKey:
    """The numbers of an RSA key; the private operation uses the CRT parameters."""

    def __init__(self, public_numbers, private_numbers=None):
        self.n, self.e = public_numbers.n, public_numbers.e
        self.k = (self.n.bit_length() + 7) // 8
        self.priv = private_numbers

    def public_op(self, c):
        return pow(c, self.e, self.n)

    def private_op(self, m):
        p = self.priv
        m1, m2 = pow(m, p.dmp1, p.p), pow(m, p.dmq1, p.q)
        return m2 + p.q * ((p.iqmp * (m1 - m2)) % p.p)


def _der(text):
    """(is_pem, bytes) of a PEM string or a bare base64 DER string."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        return True, text.encode()
    try:
        return False, base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("key is neither PEM nor base64 DER")


def load_private_key(text):
    """An RsaKey with private numbers from PEM or bare base64 DER (PKCS#8 or PKCS#1)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("private key must be a non-empty string")
    pem, data = _der(text)
    try:
        key = (serialization.load_pem_private_key if pem else serialization.load_der_private_key)(data, None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"unreadable private key: {e}")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("private key is not RSA")
    pn = key.private_numbers()
    return RsaKey(pn.public_numbers, pn)


def load_public_key(text):
    """An RsaKey from PEM or bare base64 DER (SubjectPublicKeyInfo or PKCS#1)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("public key must be a non-empty string")
    pem, data = _der(text)
    try:
        key = (serialization.load_pem_public_key if pem else serialization.load_der_public_key)(data)
    except (ValueError, TypeError) as e:
        raise ValueError(f"unreadable public key: {e}")
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("public key is not RSA")
    return RsaKey(key.public_numbers())


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text):
    """Decode base64url or base64, with or without '=' padding; EnvelopeError otherwise."""
    if not isinstance(text, str) or not B64_RE.fullmatch(text) or len(text.rstrip("=")) % 4 == 1:
        raise EnvelopeError("data is not base64url")
    t = text.rstrip("=").replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))


def seal(key, plaintext):
    """The envelope of plaintext (str or bytes) under key's private operation."""
    if isinstance(plaintext, str):
        plaintext = plaintext.encode("utf-8")
    out = []
    for i in range(0, max(len(plaintext), 1), CHUNK):
        chunk = plaintext[i:i + CHUNK]
        block = b"\x00\x01" + b"\xff" * (key.k - 3 - len(chunk)) + b"\x00" + chunk
        out.append(key.private_op(int.from_bytes(block, "big")).to_bytes(key.k, "big"))
    return b64url(b"".join(out))


def open_envelope(key, data):
    """The plaintext bytes of an envelope made with the private half of key (public
    operation, strict type-1 unpadding); EnvelopeError if it does not open."""
    raw = b64url_decode(data)
    if not raw or len(raw) % key.k:
        raise EnvelopeError(f"data is not a whole number of {key.k}-byte blocks")
    out = []
    for i in range(0, len(raw), key.k):
        c = int.from_bytes(raw[i:i + key.k], "big")
        if c >= key.n:
            raise EnvelopeError("block out of range")
        m = key.public_op(c).to_bytes(key.k, "big")
        sep = m.find(b"\x00", 2)
        if m[:2] != b"\x00\x01" or sep < 10 or m[2:sep].strip(b"\xff"):
            raise EnvelopeError("bad padding")
        out.append(m[sep + 1:])
    return b"".join(out)


def open_json(key, data):
    """(object, None) for an envelope holding a JSON object, (None, reason) otherwise;
    EnvelopeError when it does not open at all."""
    plain = open_envelope(key, data)
    try:
        obj = json.loads(plain.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, ValueError):
        return None, "data is not UTF-8 JSON"
    if not isinstance(obj, dict):
        return None, "data is not a JSON object"
    return obj, None


# -- helpers ------------------------------------------------------------------------------

def now_ms():
    return int(time.time() * 1000)


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


def http_post_form(url, fields, timeout):
    """POST fields form-encoded to an http:// url: (http_status, body bytes, error)."""
    u = urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        return None, b"", "not an http:// URL"
    status, body, error = post(url, urlencode(fields).encode(),
                               {"Content-Type": "application/x-www-form-urlencoded"}, timeout)
    return status, b"" if body is None else body, error


def check_config(cfg):
    """Raise ValueError if the chainup config cannot be used (keys are parsed)."""
    merchants = cfg.get("merchants")
    if not isinstance(merchants, dict):
        raise ValueError("chainup.merchants must be an object {app_id: {...}}")
    for app_id, m in merchants.items():
        if not app_id or not isinstance(m, dict):
            raise ValueError(f"chainup.merchants.{app_id} must be an object")
        load_public_key(m.get("public_key"))
        for name in ("confirm_url", "notify_url"):
            url = m.get(name)
            if url is not None and (not isinstance(url, str) or not url.startswith("http://")):
                raise ValueError(f"chainup.merchants.{app_id}.{name} must be an http:// URL or null")
    if cfg.get("wallet_private_key") is not None:
        load_private_key(cfg["wallet_private_key"])

    def number(name, lo=0):
        v = cfg.get(name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < lo:
            raise ValueError(f"chainup.{name} must be a number >= {lo}")

    for name in ("time_window_ms", "paying_after_s", "success_after_s", "confirm_timeout_s",
                 "notify_timeout_s"):
        number(name)
    for name, lo in (("confirmations", 0), ("first_id", 1), ("sync_page_size", 1)):
        v = cfg.get(name)
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"chainup.{name} must be an integer >= {lo}")
    if cfg.get("final_status") not in STATUSES or isinstance(cfg.get("final_status"), bool):
        raise ValueError("chainup.final_status must be an integer from 0 to 8")
    for name in ("withdraw_fee", "real_fee"):
        if not isinstance(cfg.get(name), str) or not AMOUNT_RE.fullmatch(cfg[name]):
            raise ValueError(f"chainup.{name} must be a decimal string")
    delays = cfg.get("retry_delays_s")
    if not isinstance(delays, list) or not all(isinstance(d, (int, float)) and not isinstance(d, bool)
                                               and d >= 0 for d in delays):
        raise ValueError("chainup.retry_delays_s must be a list of numbers >= 0")
    if cfg.get("notify_dates") not in ("datetime", "ms"):
        raise ValueError("chainup.notify_dates must be datetime or ms")
    if cfg.get("confirm_time_unit") not in ("ms", "s"):
        raise ValueError("chainup.confirm_time_unit must be ms or s")


class Refusal(Exception):
    """An error answer: plain (not sealed) when the merchant or envelope is not known good."""

    def __init__(self, code, msg, stat, plain=False):
        super().__init__(msg)
        self.code, self.msg, self.stat, self.plain = code, msg, stat, plain


class ConfirmCall:
    """The second confirmation of one withdraw request.  The core runs outside_lock()
    with its lock released, then finish() with it held again."""

    def __init__(self, provider, merchant_key, app_id, url, payload, info, request):
        self.provider, self.key, self.app_id, self.url = provider, merchant_key, app_id, url
        self.payload, self.info, self.request = payload, info, request
        self.timeout = provider.cfg["confirm_timeout_s"]
        self.form = {"app_id": app_id, "data": seal(provider.wallet(), dumps(payload))}

    def outside_lock(self):
        t = time.time()
        status, body, error = http_post_form(self.url, self.form, self.timeout)
        reason = error
        if reason is None and status != 200:
            reason = f"HTTP {status}"
        if reason is None:
            try:
                reply = json.loads(body)
                data = reply["data"]
                obj, why = open_json(self.key, data)
                if obj is None:
                    reason = why
                elif obj.get("check_sum") != self.payload["check_sum"]:
                    reason = "check_sum not echoed"
            except EnvelopeError as e:
                reason = f"reply data does not open with the merchant key: {e}"
            except (ValueError, TypeError, KeyError):
                reason = "reply is not JSON {\"data\": ...}"
        attempt = {"t": t, "http_status": status,
                   "reply": body[:REPLY_KEEP].decode("utf-8", "replace"), "error": error}
        return attempt, reason

    def finish(self, outcome):
        return self.provider._confirmed(self, *outcome)


# -- the provider -------------------------------------------------------------------------

class Provider:
    """ChainUp state.  The core calls in with its lock held; the ticker and delivery
    threads do not have it, so all state is also guarded by self.mu (core lock first,
    then mu; no I/O while holding mu)."""

    def __init__(self, config, stats):
        self.cfg = config
        self.stats = stats
        self.mu = threading.RLock()
        self._wallet_generated = None
        self._keys = {}                 # key text -> RsaKey
        self.ticker = None
        self.gen = 0
        self.reset()

    def reset(self):
        with self.mu:
            self.gen += 1               # pending notification retries of the old state stop
            self.next_id = self.cfg["first_id"]
            self.records = []           # ascending id
            self.by_rid = {}            # (app_id, request_id) -> record
            self.pending = set()        # (app_id, request_id) awaiting second confirmation
            self.executions = {}        # request_id -> times executed
            self.refused = []
            self.notes = []             # confirmations and notifications posted
            self.next_deposit = 1

    # -- keys

    def _key(self, text, private=False):
        k = self._keys.get((text, private))
        if k is None:
            k = (load_private_key if private else load_public_key)(text)
            self._keys[(text, private)] = k
        return k

    def wallet(self):
        """The wallet key pair (private numbers included)."""
        with self.mu:
            text = self.cfg.get("wallet_private_key")
            if text is not None:
                return self._key(text, private=True)
            if self._wallet_generated is None:
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                pn = key.private_numbers()
                self._wallet_generated = (RsaKey(pn.public_numbers, pn), key.public_key())
            return self._wallet_generated[0]

    def wallet_public_pem(self):
        text = self.cfg.get("wallet_private_key")
        if text is None:
            self.wallet()
            pub = self._wallet_generated[1]
        else:
            k = self._key(text, private=True)
            pub = rsa.RSAPublicNumbers(k.e, k.n).public_key()
        return pub.public_bytes(serialization.Encoding.PEM,
                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sealed(self, code, msg, data=None):
        if self.cfg.get("plain_answers"):
            return {"code": str(code), "msg": msg, "data": data}
        return {"data": seal(self.wallet(), dumps({"code": str(code), "msg": msg, "data": data}))}

    # -- plumbing shared with the core

    def error_reply(self, req, code, msg):
        return 200, self.sealed(code, msg)

    def _params(self, req):
        """app_id and data: the query string of a GET, the form body of a POST (A4)."""
        params = {}
        if req.method == "GET":
            text = req.query
        else:
            ctype = req.headers.get("Content-Type", "").split(";")[0].strip().lower()
            text = req.body.decode("utf-8", "replace") if ctype == "application/x-www-form-urlencoded" else ""
        for k, v in parse_qsl(text, keep_blank_values=True):
            params.setdefault(k, v)
        return params

    def _open_request(self, req):
        """(app_id, merchant, key, payload) of a request; Refusal otherwise."""
        p = self._params(req)
        app_id, data = p.get("app_id", ""), p.get("data", "")
        if not app_id or not data:
            raise Refusal(100004, "app_id and data are required", "validation_errors", plain=True)
        merchant = self.cfg["merchants"].get(app_id)
        if merchant is None:
            raise Refusal(100015, "invalid merchant id", "unknown_merchants", plain=True)
        key = self._key(merchant["public_key"])
        try:
            payload, why = open_json(key, data)
        except EnvelopeError:
            raise Refusal(100005, "signature verification failed", "bad_signatures", plain=True)
        if payload is None:
            raise Refusal(100004, f"invalid params: {why}", "validation_errors")
        return app_id, merchant, key, payload

    def peek(self, req):
        """Log fields for a request the core will not pass to handle()."""
        info = {"api_key": None, "requestId": None, "sig_ok": False,
                "endpoint": ENDPOINTS.get(req.path)}
        p = self._params(req)
        info["api_key"] = p.get("app_id") or None
        with self.mu:
            try:
                _, _, _, payload = self._open_request(req)
            except Refusal as r:
                info["sig_ok"] = r.code == 100004 and not r.plain
                return info
        info["sig_ok"] = True
        rid = payload.get("request_id")
        info["requestId"] = rid if isinstance(rid, str) else None
        return info

    def handle(self, req):
        info = {"api_key": None, "requestId": None, "ret_code": None, "sig_ok": False,
                "executed": False, "endpoint": ENDPOINTS.get(req.path)}
        if info["endpoint"] is None:
            info["ret_code"] = 404
            return 404, {"code": "404", "msg": f"not found: {req.path}", "data": None}, info
        if req.method != METHODS[req.path]:
            info["ret_code"] = 405
            return 405, {"code": "405", "msg": f"method {req.method} not allowed", "data": None}, info
        info["api_key"] = self._params(req).get("app_id") or None
        with self.mu:
            try:
                app_id, merchant, key, payload = self._open_request(req)
                info["sig_ok"] = True
                self._check_time(payload)
                if req.path == WITHDRAW:
                    result = self._withdraw(app_id, merchant, key, payload, info)
                    if isinstance(result, ConfirmCall):
                        return result
                    body = result
                elif req.path == LIST:
                    body = self._list(app_id, payload)
                else:
                    body = self._sync(app_id, payload)
            except Refusal as r:
                if r.stat:
                    self.stats[r.stat] += 1
                info["sig_ok"] = info["sig_ok"] or (r.code == 100004 and not r.plain)
                info["ret_code"] = r.code
                if r.plain:
                    return 200, {"code": str(r.code), "msg": r.msg, "data": None}, info
                return 200, self.sealed(r.code, r.msg), info
        info["ret_code"] = 0
        return 200, body, info

    # -- checks

    def _check_time(self, p):
        """time, charset and version: "required" in every request of seed 001."""
        t = p.get("time")
        # seed: "time long required" -- a JSON integer (A2: a string is refused)
        if not isinstance(t, int) or isinstance(t, bool):
            raise Refusal(100004, "invalid params: time must be a long (milliseconds)", "validation_errors")
        if abs(now_ms() - t) > self.cfg["time_window_ms"]:
            raise Refusal(100004, "invalid params: time is outside the allowed window", "validation_errors")
        # seed: "charset String required ... transfer parameter UTF-8" (A3: any case)
        if not isinstance(p.get("charset"), str) or p["charset"].lower() != "utf-8":
            raise Refusal(100004, "invalid params: charset must be UTF-8", "validation_errors")
        # seed: "version String required ... transfer parameter v2"
        if p.get("version") != "v2":
            raise Refusal(100004, "invalid params: version must be v2", "validation_errors")

    def _validate_withdraw(self, p):
        def bad(field, why):
            raise Refusal(100004, f"invalid params: {field} {why}", "validation_errors")

        rid = p.get("request_id")
        if not isinstance(rid, str) or not 1 <= len(rid) <= 64:
            bad("request_id", "must be a string of 1 to 64 characters")
        uid = p.get("from_uid")
        if not ((isinstance(uid, str) and uid) or (isinstance(uid, int) and not isinstance(uid, bool)
                                                    and uid >= 0)):
            bad("from_uid", "is required")
        for name in ("to_address", "symbol"):
            if not isinstance(p.get(name), str) or not p[name].strip():
                bad(name, "is required")
        amount = p.get("amount")
        if isinstance(amount, (int, Decimal)) and not isinstance(amount, bool):
            amount = str(amount)
        if not isinstance(amount, str) or not AMOUNT_RE.fullmatch(amount):
            bad("amount", "must be a positive decimal")
        try:
            if Decimal(amount) <= 0:
                bad("amount", "must be a positive decimal")
        except InvalidOperation:
            bad("amount", "must be a positive decimal")
        return amount

    # -- endpoints

    def _withdraw(self, app_id, merchant, key, p, info):
        """Validate and dedupe; then a ConfirmCall, or the record created at once."""
        amount = self._validate_withdraw(p)
        rid = p["request_id"]
        info["requestId"] = rid
        if (app_id, rid) in self.by_rid or (app_id, rid) in self.pending:
            raise Refusal(110088, "please do not repeat the request", "duplicates_refused")
        p = dict(p, amount=amount)
        url = merchant.get("confirm_url")
        if not url:
            return self._create(app_id, p, info)
        self.pending.add((app_id, rid))
        t = now_ms() if self.cfg["confirm_time_unit"] == "ms" else now_ms() // 1000
        payload = {"time": t, "charset": "utf-8", "version": "v2", "request_id": rid,
                   "from_uid": p["from_uid"], "to_address": p["to_address"], "amount": amount,
                   "symbol": p["symbol"], "check_sum": secrets.token_hex(16)}
        return ConfirmCall(self, key, app_id, url, payload, info, p)

    def _confirmed(self, call, attempt, reason):
        """Back under the locks after the second confirmation: create or refuse."""
        with self.mu:
            rid = call.request["request_id"]
            self.pending.discard((call.app_id, rid))
            self.notes.append({"seq": len(self.notes) + 1, "kind": "confirm", "app_id": call.app_id,
                               "url": call.url, "request_id": rid, "payload": call.payload,
                               "form": urlencode(call.form), "attempts": [attempt],
                               "delivered": reason is None, "reason": reason})
            info = call.info
            if reason is None:
                body = self._create(call.app_id, call.request, info)
                info["ret_code"] = 0
                return 200, body, info
            self.stats["confirm_failures"] += 1
            self.refused.append({"app_id": call.app_id, "request_id": rid, "code": 120206,
                                 "reason": reason, "t": time.time(), "request": call.request})
            info["ret_code"] = 120206
            return 200, self.sealed(120206, "withdrawal second confirmation failed"), info

    def _create(self, app_id, p, info):
        now = time.time()
        mono = time.monotonic()
        addr = p["to_address"]
        uid = p["from_uid"]
        if isinstance(uid, str) and DIGITS_RE.fullmatch(uid):
            uid = int(uid)
        steps = [1, self.cfg["final_status"]]
        for prefix, plan in FINAL_BY_PREFIX:
            if addr.lower().startswith(prefix):
                steps = plan
                break
        gaps = [self.cfg["paying_after_s"], self.cfg["success_after_s"]]
        plan, at = [], mono
        for i, s in enumerate(steps):
            at += gaps[min(i, 1)]
            plan.append((at, s))
        r = {"app_id": app_id, "request_id": p["request_id"], "id": self.next_id, "uid": uid,
             "symbol": p["symbol"], "amount": p["amount"], "withdraw_fee_symbol": p["symbol"],
             "withdraw_fee": self.cfg["withdraw_fee"], "fee_symbol": p["symbol"], "real_fee": "0",
             "created_at": int(now * 1000), "updated_at": int(now * 1000), "address_from": "",
             "address_to": addr, "txid": "", "confirmations": 0, "saas_status": 0,
             "company_status": 0, "status": 0, "plan": plan, "pinned": False,
             "withdraw_type": 1 if addr.lower().startswith("internal") else 0,
             "request": {k: v for k, v in p.items()}, "executed_at": now}
        self.next_id += 1
        self.records.append(r)
        self.by_rid[(app_id, r["request_id"])] = r
        self.executions[r["request_id"]] = self.executions.get(r["request_id"], 0) + 1
        self.stats["executed"] += 1
        info["executed"] = True
        self._notify_withdraw(r)
        self._start_ticker()
        return self.sealed(0, "成功", {"withdraw_type": r["withdraw_type"], "id": r["id"], "status": 0})

    def _list(self, app_id, p):
        ids = p.get("ids")
        if not isinstance(ids, str):
            raise Refusal(100004, "invalid params: ids is required", "validation_errors")
        wanted = [i.strip() for i in ids.split(",") if i.strip()]
        if not wanted or len(wanted) > MAX_IDS:
            raise Refusal(100004, f"invalid params: ids must name 1 to {MAX_IDS} request_ids",
                          "validation_errors")
        self._advance()
        out, seen = [], set()
        for rid in wanted + [i for i in self.cfg.get("list_extra_ids") or [] if i not in wanted]:
            r = self.by_rid.get((app_id, rid))
            if r is not None and rid not in seen:
                seen.add(rid)
                out.append(self._view(r))
        return self.sealed(0, "成功", out)

    def _sync(self, app_id, p):
        # seed: "max_id String required" -- digits in a JSON string (A2: a number is refused)
        max_id = p.get("max_id")
        if not isinstance(max_id, str) or not DIGITS_RE.fullmatch(max_id):
            raise Refusal(100004, "invalid params: max_id must be a string of digits", "validation_errors")
        max_id = int(max_id)
        self._advance()
        page = self.cfg["sync_page_size"]
        out = [self._view(r) for r in self.records if r["app_id"] == app_id and r["id"] > max_id][:page]
        return self.sealed(0, "成功", out)

    # -- records and their progression

    @staticmethod
    def _view(r):
        return {k: r[k] for k in RECORD_FIELDS}

    def _set_status(self, r, status):
        if status == r["status"]:
            return
        r["status"] = status
        r["updated_at"] = now_ms()
        r["saas_status"] = r["company_status"] = 2 if status == 2 else (1 if status in PAYING else 0)
        if status in PAYING and not r["address_from"]:
            r["address_from"] = "0x" + hashlib.sha256(f"chainup-hot/{r['symbol']}".encode()).hexdigest()[:40]
        if status == 5:
            r["txid"] = "0x" + hashlib.sha256(f"chainup-tx/{r['id']}".encode()).hexdigest()
            r["confirmations"] = self.cfg["confirmations"]
            r["real_fee"] = self.cfg["real_fee"]
        self.stats["status_changes"] += 1
        self._notify_withdraw(r)

    def _advance(self):
        """Apply every plan step that is due."""
        mono = time.monotonic()
        with self.mu:
            for r in self.records:
                while r["plan"] and not r["pinned"] and r["plan"][0][0] <= mono:
                    self._set_status(r, r["plan"].pop(0)[1])

    def _start_ticker(self):
        if self.ticker is None:
            self.ticker = threading.Thread(target=self._tick, name="chainup-ticker", daemon=True)
            self.ticker.start()

    def _tick(self):
        while True:
            time.sleep(TICK_S)
            self._advance()

    def force_status(self, app_id, rid, status):
        with self.mu:
            self._advance()
            rs = [r for r in self.records if r["request_id"] == rid and app_id in (None, r["app_id"])]
            if not rs:
                return None
            r = rs[-1]
            r["pinned"] = True
            self._set_status(r, status)
            return r

    # -- notifications

    def _date(self, ms):
        if self.cfg["notify_dates"] == "ms":
            return str(ms)
        return datetime.fromtimestamp(ms / 1000, CHINA).strftime("%Y-%m-%d %H:%M:%S")

    def _notify_withdraw(self, r):
        url = self.cfg["merchants"].get(r["app_id"], {}).get("notify_url")
        if not url:
            return
        payload = {"charset": "utf-8", "version": "v2", "side": "withdraw", "notify_time": str(now_ms())}
        for k in NOTIFY_FIELDS:
            v = r[k]
            payload[k] = self._date(v) if k in ("created_at", "updated_at") else str(v)
        self._post_notification(r["app_id"], url, "withdraw", r["request_id"], payload)

    def _post_notification(self, app_id, url, kind, rid, payload):
        """Log a notification and start its delivery thread; returns its seq."""
        note = {"seq": len(self.notes) + 1, "kind": kind, "app_id": app_id, "url": url,
                "request_id": rid, "payload": payload,
                "form": urlencode({"app_id": app_id, "data": seal(self.wallet(), dumps(payload))}),
                "attempts": [], "delivered": False, "reason": None}
        self.notes.append(note)
        delays = [0] + list(self.cfg["retry_delays_s"])
        threading.Thread(target=self._deliver, args=(note, delays, self.cfg["notify_timeout_s"], self.gen),
                         name=f"chainup-notify-{note['seq']}", daemon=True).start()
        return note["seq"]

    def _deliver(self, note, delays, timeout, gen):
        form = dict(parse_qsl(note["form"]))
        for delay in delays:
            time.sleep(delay)
            if gen != self.gen:
                with self.mu:
                    note["reason"] = "abandoned by /_mock/reset"
                return
            t = time.time()
            status, body, error = http_post_form(note["url"], form, timeout)
            ok = status == 200 and body.strip() == b"SUCCESS"
            with self.mu:
                note["attempts"].append({"t": t, "http_status": status,
                                         "reply": body[:REPLY_KEEP].decode("utf-8", "replace"),
                                         "error": error})
                if ok:
                    note["delivered"] = True
                    self.stats["notifications_delivered"] += 1
                    return
                self.stats["notification_attempts_failed"] += 1
                note["reason"] = error or f"reply was not SUCCESS (HTTP {status})"
        with self.mu:
            self.stats["notifications_abandoned"] += 1
            note["reason"] = f"gave up after {len(delays)} attempts: {note['reason']}"

    def deposit(self, app_id, fields):
        merchant = self.cfg["merchants"].get(app_id)
        if merchant is None:
            raise ValueError(f"unknown app_id {app_id!r}")
        if not merchant.get("notify_url"):
            raise ValueError(f"merchant {app_id!r} has no notify_url")
        now = now_ms()
        did = self.next_deposit
        self.next_deposit += 1
        payload = {"charset": "utf-8", "version": "v2", "side": "deposit", "notify_time": str(now),
                   "id": str(did), "uid": "3529218", "symbol": "ETH", "amount": "1.5",
                   "withdraw_fee_symbol": "ETH", "withdraw_fee": "0", "fee_symbol": "ETH",
                   "real_fee": "0", "address_to": "0x754b0c610e011d0d40c810ef857b4dd989a67332",
                   "txid": "0x" + hashlib.sha256(f"chainup-deposit/{did}/{now}".encode()).hexdigest(),
                   "confirmations": "1", "created_at": self._date(now), "updated_at": self._date(now),
                   "status": "1"}
        payload.update(fields)
        return self._post_notification(app_id, merchant["notify_url"], "deposit", None, payload)

    # -- control (/_mock/chainup/...)

    def control(self, method, path, params, obj):
        """Provider control endpoints; returns (status, JSON body); ValueError -> 400."""
        with self.mu:
            return self._control(method, path, params, obj)

    def _control(self, method, path, params, obj):
        if method == "GET" and path == "/keys":
            pem = self.wallet_public_pem()
            b64 = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
            return 200, {"wallet_public_key": pem, "wallet_public_key_b64": b64}
        if method == "POST" and path == "/envelope":
            if not isinstance(obj, dict) or ("plaintext" in obj) == ("json" in obj):
                raise ValueError('body must be {"plaintext": "..."} or {"json": ...}')
            text = obj["plaintext"] if "plaintext" in obj else dumps(obj["json"])
            if not isinstance(text, str):
                raise ValueError("plaintext must be a string")
            return 200, {"data": seal(self.wallet(), text)}
        if method == "POST" and path == "/status":
            if not isinstance(obj, dict):
                raise ValueError("body must be a JSON object")
            rid, status, app_id = obj.get("request_id"), obj.get("status"), obj.get("app_id")
            if not isinstance(rid, str) or not rid:
                raise ValueError("request_id must be a non-empty string")
            if not isinstance(status, int) or isinstance(status, bool) or status not in STATUSES:
                raise ValueError("status must be an integer from 0 to 8")
            r = self.force_status(app_id, rid, status)
            if r is None:
                return 404, {"ok": False, "error": f"no record with request_id {rid!r}"}
            return 200, {"ok": True, "record": self._view(r)}
        if method == "POST" and path == "/deposit":
            if not isinstance(obj, dict) or not isinstance(obj.get("app_id"), str):
                raise ValueError("body must be a JSON object with app_id")
            fields = {k: v for k, v in obj.items() if k != "app_id"}
            return 200, {"ok": True, "seq": self.deposit(obj["app_id"], fields)}
        if method == "GET" and path == "/records":
            self._advance()
            app_id = params.get("app_id")
            return 200, [dict(self._view(r), app_id=r["app_id"]) for r in self.records
                         if app_id in (None, r["app_id"])]
        if method == "GET" and path == "/notifications":
            out = [n for n in self.notes
                   if all(params.get(k) in (None, n[k]) for k in ("kind", "request_id", "app_id"))]
            return 200, json.loads(dumps(out))
        return 404, {"ok": False, "error": f"no control endpoint {method} /_mock/{NAME}{path}"}

    def ledger(self):
        with self.mu:
            self._advance()
            return json.loads(dumps({
                "executions": dict(self.executions),
                "withdrawals": [dict(self._view(r), app_id=r["app_id"], request=r["request"],
                                     executed_at=r["executed_at"]) for r in self.records],
                "refused": list(self.refused)}))
