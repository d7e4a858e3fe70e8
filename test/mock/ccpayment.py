"""
ccpayment.py - mock of CCPayment's withdrawal API (v1 and v2), plugged into mock_provider.py.

Each behaviour is traced to seed 003, or marked an assumption, in ASSUMPTIONS.md (C1-C7).
Implements, from the published docs (shared/providers.md section 3, seed 003, the v1
"Withdrawal Order Information" and "Withdraw Webhook Notification" pages, the v2 SDK
definitions of the merchant-withdraw module and its error table).  An account's
base_url is http://127.0.0.1:PORT/ccpayment and the client appends the real host's
path (https://admin.ccpayment.com + /ccpayment/v1/withdraw), so this module serves:
  POST /ccpayment/v1/withdraw            {merchant_order_id, address, token_id, value,
                                          memo?} -> {"code":10000,"msg":"Success",
                                          "data":{"order_id","network_fee"}}
  POST /ccpayment/v1/bill/info           {"merchant_order_ids":[...]} (1-100) -> data is a
                                          list, one {"order_detail":{...},"trade_list":
                                          [...]} per known id (unknown ids are left out)
  POST /ccpayment/v2/applyAppWithdrawToNetwork  {orderId, coinId, chain, address, memo?,
                                          amount, merchantPayNetworkFee?,
                                          networkFeeInquiryID?, notifyUrl?}
  POST /ccpayment/v2/applyAppWithdrawToCwallet  {orderId, coinId, cwalletUser, amount}
                                          both -> {"code":10000,"msg":"success",
                                          "data":{"recordId"}}
  POST /ccpayment/v2/getAppWithdrawRecord  {orderId} or {recordId} -> {"code":10000,
                                          "msg":"success","data":{"record":{...}}}
Every route is POST with Content-Type application/json (charset allowed) and the
headers Appid, Timestamp (10-digit Unix seconds, |now - ts| <= timestamp_window_s),
Sign over the raw body bytes exactly as received:
  v1  Sign = lowercase hex SHA-256(appId + appSecret + timestamp + body)
  v2  Sign = lowercase hex HMAC-SHA256(key=appSecret, msg=appId + timestamp + body)
(an empty body is signed as the empty string; the hex must be lowercase).

Errors are HTTP 200 with {"code": N, "msg": "...", "data": {}}, checked in this order
(the numbers are v2's; a v1 route answers every one of them as the single v1 error the
seed prints, {"code": 224066, "msg": "Service error, please try again", "data":
{"reason", "mock_code"}}, unless config v1_error_code is null):
  11001 header missing/invalid (Appid, Timestamp, Sign, Content-Type; Timestamp not
        digits), 12001 unknown Appid, 12002 IP not in ip_whitelist (the client is
        always 127.0.0.1), 11005 bad Sign, 11006 Timestamp outside the window (also a
        13-digit ms timestamp), 11004 rate limit, 11000 bad body / argument,
        11010 more than 100 merchant_order_ids, 11003 record not found,
        11007 RepeatedSubmit (v2 only: the same orderId again within repeat_window_s of
        its first submission), 11011 OrderDuplicate (a merchant order id this app
        already used, v1 or v2 - one namespace per app; never executes again),
        14019 amount minus network fee <= 0, 14000 insufficient balance.
The signature is checked before the timestamp, so a documented vector with an old
timestamp is logged sig_ok=true and still refused (11006).  An unknown route is HTTP
404 {"code":11003,...}.

Records.  Each executed withdrawal gets an order_id (33 digits, like the doc's) and a
distinct record_id (33 digits); v1 returns order_id, v2 returns recordId (= record_id).
A destination is Cwallet when it is the v2 Cwallet route or a v1 address that is all
digits or contains "@": network fee "0" and txid "internal transfer"; otherwise the fee
is network_fee and the txid "0x" + 64 hex.  net_receivable = amount - fee (= amount when
merchantPayNetworkFee).  Status over time:
  v1 bill/info   "Pending" for processing_after_s, then "Processing", then "Successful"
                 or "Failed" once settled
  v2 record      "Processing" until settled, then "Success" or "Failed"
A record settles settle_after_s after creation (null: only by /_mock/ccpayment/settle)
to settle_outcome, except a destination (address / cwalletUser) starting with "fail"
(any case), which fails.  A failed record refunds the balance; txid stays "".

Webhooks.  When a record settles and it has a webhook URL (v2: the order's notifyUrl if
given, else the app's webhook_url; v1: the app's webhook_url), a daemon thread POSTs
Content-Type "application/json; charset=utf-8" with headers Appid, Timestamp (now, per
attempt), Sign computed by the SAME rule as the order's API version (v1 SHA-256 rule for
v1 orders, v2 HMAC rule for v2 orders) with the app's webhook_secret if configured, else
its secret, over the exact body bytes sent.  The body is json.dumps() with Python's
default separators (", " and ": "): verify the raw bytes, never a re-serialisation.  Its
fields, in this order: pay_status ("success"|"failed"), order_type ("API Withdrawal"),
order_id, record_id, withdraw_amount, net_receivable, network_fee, network_fee_crypto,
network_coin_id, network_fee_value, chain, contract, crypto, to_address, memo, txid
("" when failed), merchant_order_id, merchant_pays_fee (bool); v2 orders add "orderId"
(the merchant order id, = merchant_order_id) and "recordId" (= record_id).  The same
body bytes are re-sent until a reply is HTTP 200 with a body containing "success" (any
case): one attempt at settlement, then one retry after each of webhook_retry_delays_s.

Config ("ccpayment" section):
  apps                {app_id: {"secret": s, "webhook_url": url|null, "balance": "dec"
                      (optional; unlimited when absent), "webhook_secret": s (optional)}}
  timestamp_window_s  120
  processing_after_s  0.3    v1 "Pending" -> "Processing"
  settle_after_s      1.0    null: settle only through the control API
  settle_outcome      "success" | "failed"
  network_fee         "0.0001"
  tokens              {token_id: {"crypto","chain","contract"}} for v1 (unknown ids get
                      crypto/chain "UNKNOWN" unless strict_tokens, then 13000)
  coins               {coinId: symbol} for v2 (unknown -> "COIN<id>")
  strict_tokens       false
  rate_limit_per_s    null (off) or requests per second per app (11004)
  ip_whitelist        null (off) or a list of IPs (12002 unless "127.0.0.1" is in it)
  repeat_window_s     5
  webhook_retry_delays_s  [1, 2, 4, 8, 16, 32]   (six retries, as the docs say)
  webhook_timeout_s   5
  v1_error_code       224066 (null: v1 routes answer with the v2 numbers, the old way)

Control (served by the core under /_mock/ccpayment/):
  POST /settle {"order_id": id, "pay_status": "success"|"failed"[, "app_id", "force"]}
               id = order_id, record_id or merchant order id; settles now and sends the
               webhook; an already settled record -> 409 unless force (then it flips
               and sends a new webhook) -> {"ok", "record", "webhook_id"}
  POST /resend {"order_id": id[, "app_id"]}   send a settled record's webhook again
  POST /webhook {"app_id", "body": raw string, "sign_ok": bool (default true),
               "version": 1|2 (default 1), "url" (default the app's webhook_url),
               "timestamp" (default now), "retry": bool (default false)}
               post an arbitrary (or wrongly signed) webhook -> {"ok", "webhook_id"}
  GET  /webhooks[?order=merchant_order_id]  every webhook queued or sent: id, kind
               (settle|resend|forged), app_id, version, url, merchant_order_id, body,
               acked, done, attempts [{t, timestamp, sign, http_status, reply, error, ok}]
  GET  /records[?app_id=]      every record (internal view, both status vocabularies)
Log fields: api_key (the Appid), requestId (merchant order id), ret_code, sig_ok, executed.
"""

import hashlib
import hmac
import json
import re
import time
from collections import Counter, deque
from decimal import Decimal, InvalidOperation

from delivery import Courier, ScheduledProvider

NAME = "ccpayment"

DEFAULT_CONFIG = {
    "apps": {},
    "timestamp_window_s": 120,
    "processing_after_s": 0.3,
    "settle_after_s": 1.0,
    "settle_outcome": "success",
    "network_fee": "0.0001",
    "tokens": {
        "8e5741cf-6e51-4892-9d04-3d40e1dd0128": {
            "crypto": "USDT", "chain": "POLYGON", "contract": "0xc2132d05d31c914a87c6611c10748aeb04b58e8f"},
        "0912e09a-d8e2-41d7-a0bc-a25530892988": {
            "crypto": "USDT", "chain": "TRX", "contract": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"},
        "f36ad1cf-222a-4933-9ad0-86df8069f916": {
            "crypto": "ETH", "chain": "ETH", "contract": "ETH"},
    },
    "coins": {"1280": "USDT", "1282": "USDC", "1329": "ETH", "1891": "TRX"},
    "strict_tokens": False,
    "rate_limit_per_s": None,
    "ip_whitelist": None,
    "repeat_window_s": 5,
    "webhook_retry_delays_s": [1, 2, 4, 8, 16, 32],
    "webhook_timeout_s": 5,
    "v1_error_code": 224066,
}

STATS = ("executed", "duplicates_refused", "repeated_submits", "bad_signatures", "bad_timestamps",
         "validation_errors", "request_errors", "rate_limit_violations", "insufficient_balance",
         "not_found", "settled", "webhooks_sent", "webhook_attempts", "webhooks_acked",
         "webhooks_failed")

P1 = "/ccpayment/v1/"
P2 = "/ccpayment/v2/"
V1_WITHDRAW = P1 + "withdraw"
V1_BILL_INFO = P1 + "bill/info"
V2_NETWORK = P2 + "applyAppWithdrawToNetwork"
V2_CWALLET = P2 + "applyAppWithdrawToCwallet"
V2_RECORD = P2 + "getAppWithdrawRecord"
ROUTES = (V1_WITHDRAW, V1_BILL_INFO, V2_NETWORK, V2_CWALLET, V2_RECORD)
CLIENT_IP = "127.0.0.1"
WEBHOOK_CTYPE = "application/json; charset=utf-8"
ORDER_BASE = 1612332555323101184        # 19-digit serials after the 14-digit UTC time
RECORD_BASE = 1681607895159656448
AMOUNT_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
DIGITS_RE = re.compile(r"[0-9]+")
URL_RE = re.compile(r"https?://[^\s/?#]+[^\s]*")
MSGS = {11000: "Invalid parameters", 11001: "Header invalid", 11003: "Data not found",
        11004: "Reduce request frequency", 11005: "Signature verification failed",
        11006: "Request expired", 11007: "Repeated submit", 11010: "Too many orders requested; the maximum is 100",
        11011: "Duplicate merchant order ID", 12001: "Merchant not found",
        12002: "IP address is not in the whitelist", 13000: "Invalid token",
        14000: "Insufficient balance",
        14019: "Withdrawal amount minus network fee is below the minimum allowed amount"}


# -- signing (independent of src/) ------------------------------------------------------

def _b(x):
    return x.encode("utf-8") if isinstance(x, str) else bytes(x)


def sign_v1(app_id, secret, timestamp, body):
    """lowercase hex SHA-256(appId + appSecret + timestamp + body)."""
    return hashlib.sha256(_b(app_id) + _b(secret) + _b(timestamp) + _b(body)).hexdigest()


def sign_v2(app_id, secret, timestamp, body):
    """lowercase hex HMAC-SHA256(key=appSecret, msg=appId + timestamp + body)."""
    return hmac.new(_b(secret), _b(app_id) + _b(timestamp) + _b(body), hashlib.sha256).hexdigest()


SIGNERS = {1: sign_v1, 2: sign_v2}


# -- config -------------------------------------------------------------------------------

def _dec(v):
    try:
        d = Decimal(v)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return d if d.is_finite() else None


def check_config(cfg):
    """Raise ValueError if the ccpayment config cannot be used."""
    apps = cfg.get("apps")
    if not isinstance(apps, dict):
        raise ValueError("ccpayment.apps must be an object")
    for app_id, a in apps.items():
        if not isinstance(a, dict) or not isinstance(a.get("secret"), str) or not a["secret"]:
            raise ValueError(f"ccpayment.apps.{app_id} needs a non-empty secret")
        url = a.get("webhook_url")
        if url is not None and (not isinstance(url, str) or not URL_RE.fullmatch(url)):
            raise ValueError(f"ccpayment.apps.{app_id}.webhook_url must be an http(s) URL or null")
        if "balance" in a and a["balance"] is not None and (
                isinstance(a["balance"], bool) or _dec(str(a["balance"])) is None):
            raise ValueError(f"ccpayment.apps.{app_id}.balance must be a decimal")
        ws = a.get("webhook_secret")
        if ws is not None and (not isinstance(ws, str) or not ws):
            raise ValueError(f"ccpayment.apps.{app_id}.webhook_secret must be a non-empty string")

    def num(name, allow_null=False):
        v = cfg.get(name)
        if v is None and allow_null:
            return
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"ccpayment.{name} must be a number >= 0" + (" or null" if allow_null else ""))

    num("timestamp_window_s")
    num("processing_after_s")
    num("settle_after_s", True)
    num("repeat_window_s")
    num("webhook_timeout_s")
    if cfg.get("settle_outcome") not in ("success", "failed"):
        raise ValueError("ccpayment.settle_outcome must be success or failed")
    fee = cfg.get("network_fee")
    if not isinstance(fee, str) or not AMOUNT_RE.fullmatch(fee):
        raise ValueError("ccpayment.network_fee must be a decimal string")
    toks = cfg.get("tokens")
    if not isinstance(toks, dict) or not all(
            isinstance(t, dict) and all(isinstance(t.get(k), str) for k in ("crypto", "chain", "contract"))
            for t in toks.values()):
        raise ValueError("ccpayment.tokens must map token_id to {crypto, chain, contract}")
    coins = cfg.get("coins")
    if not isinstance(coins, dict) or not all(isinstance(k, str) and k.isdigit() and isinstance(v, str)
                                              for k, v in coins.items()):
        raise ValueError("ccpayment.coins must map coinId strings to symbols")
    if not isinstance(cfg.get("strict_tokens"), bool):
        raise ValueError("ccpayment.strict_tokens must be a boolean")
    rl = cfg.get("rate_limit_per_s")
    if rl is not None and (not isinstance(rl, int) or isinstance(rl, bool) or rl < 1):
        raise ValueError("ccpayment.rate_limit_per_s must be an integer >= 1 or null")
    wl = cfg.get("ip_whitelist")
    if wl is not None and (not isinstance(wl, list) or not all(isinstance(x, str) for x in wl)):
        raise ValueError("ccpayment.ip_whitelist must be a list of IP strings or null")
    d = cfg.get("webhook_retry_delays_s")
    if not isinstance(d, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0
                                          for x in d):
        raise ValueError("ccpayment.webhook_retry_delays_s must be a list of numbers >= 0")


# -- helpers --------------------------------------------------------------------------------

class Refusal(Exception):
    """A request answered with an error code; stat names the counter to bump."""

    def __init__(self, code, detail=None, stat="request_errors", http_status=200):
        msg = MSGS.get(code, "Failed")
        super().__init__(msg)
        self.code = code
        self.msg = f"{msg}: {detail}" if detail else msg
        self.stat = stat
        self.http_status = http_status


def fmt_dec(d):
    s = format(d, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def body_obj(raw):
    """The JSON object in raw (empty body = {}), else Refusal 11000."""
    if not raw.strip():
        return {}
    try:
        obj = json.loads(raw)
    except ValueError:
        raise Refusal(11000, "body is not valid JSON", "validation_errors")
    if not isinstance(obj, dict):
        raise Refusal(11000, "body must be a JSON object", "validation_errors")
    return obj


def positive_amount(v, name):
    if not isinstance(v, str) or not AMOUNT_RE.fullmatch(v) or Decimal(v) <= 0:
        raise Refusal(11000, f"{name} must be a positive decimal string", "validation_errors")
    return Decimal(v)


def envelope(code, msg, data):
    return {"code": code, "msg": msg, "data": data}


# -- the provider -----------------------------------------------------------------------------

class Provider(ScheduledProvider):
    """CCPayment state.  handle/peek/control/ledger/reset run under the core lock and
    take self.lock; the scheduler and webhook threads take only self.lock."""

    DEFAULTS = DEFAULT_CONFIG

    def __init__(self, config, stats):
        super().__init__(config, stats, "ccpayment-scheduler")
        self.courier = Courier(self, "ccpayment-webhook",
                               ("webhooks_sent", "webhook_attempts", "webhooks_acked", "webhooks_failed"),
                               "webhook_timeout_s", "webhook_retry_delays_s",
                               lambda reply: "success" in reply.lower(), self._webhook_headers)
        self.reset()

    def reset(self):
        with self.lock:
            self.new_generation()
            self.records = []           # oldest first
            self.by_moid = {}           # (app_id, merchant order id) -> record
            self.by_oid = {}            # order_id -> record
            self.by_rid = {}            # record_id -> record
            self.executions = Counter()  # "app_id/merchant order id" -> times executed
            self.spent = Counter()      # app_id -> Decimal amount held
            self.windows = {}           # app_id -> deque of monotonic request times
            self.deliveries = []
            self.serial = 0

    # -- plumbing shared with the core

    def error_reply(self, req, code, msg):
        return 200, envelope(code, msg, {})

    @staticmethod
    def _version(path):
        return 1 if path.startswith(P1) else 2 if path.startswith(P2) else None

    def peek(self, req):
        """Log fields for a request the core will not pass to handle()."""
        info = {"api_key": None, "requestId": None, "sig_ok": False}
        app_id = req.headers.get("Appid")
        info["api_key"] = app_id or None
        try:
            obj = json.loads(req.body) if req.body.strip() else {}
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            moid = obj.get("merchant_order_id", obj.get("orderId"))
            info["requestId"] = moid if isinstance(moid, str) else None
        app = self.cfg["apps"].get(app_id) if app_id else None
        ver = self._version(req.path)
        ts, given = req.headers.get("Timestamp"), req.headers.get("Sign")
        if app is not None and ver is not None and ts is not None and given is not None:
            want = SIGNERS[ver](app_id, app["secret"], ts, req.body)
            info["sig_ok"] = hmac.compare_digest(want.encode(), given.encode("utf-8", "replace"))
        return info

    def handle(self, req):
        with self.lock:
            info = {"api_key": None, "requestId": None, "ret_code": None, "sig_ok": False,
                    "executed": False}
            if req.method != "POST" or req.path not in ROUTES:
                self.stats["request_errors"] += 1
                info["ret_code"] = 11003
                return 404, envelope(11003, f"Data not found: no route {req.method} {req.path}", {}), info
            info.update(self.peek(req))
            try:
                app_id = self._authenticate(req)
                obj = body_obj(req.body)
                p = req.path
                if p == V1_WITHDRAW:
                    data = self._v1_withdraw(req, app_id, obj, info)
                elif p == V1_BILL_INFO:
                    data = self._v1_bill_info(app_id, obj)
                elif p in (V2_NETWORK, V2_CWALLET):
                    data = self._v2_apply(req, app_id, obj, info, p == V2_CWALLET)
                else:
                    data = self._v2_record(app_id, obj)
                body = {"code": 10000, "msg": "Success" if p.startswith(P1) else "success", "data": data}
                status = 200
            except Refusal as r:
                if r.stat:
                    self.stats[r.stat] += 1
                status, body = r.http_status, envelope(r.code, r.msg, {})
                if req.path.startswith(P1) and self.cfg.get("v1_error_code") is not None:
                    # seed 003 prints one v1 error, 224066 "Service error, please try
                    # again"; v1 has no table of its own (C3): every v1 refusal is that
                    # answer, the mock's reason (and v2 number) kept in data
                    body = envelope(self.cfg["v1_error_code"], "Service error, please try again",
                                    {"reason": r.msg, "mock_code": r.code})
            info["ret_code"] = body["code"]
            return status, body, info

    # -- checks

    def _authenticate(self, req):
        """Headers, app, whitelist, signature, timestamp, rate limit; returns the app id."""
        h = req.headers
        for name in ("Appid", "Timestamp", "Sign"):
            if not h.get(name):
                raise Refusal(11001, f"missing header {name}")
        ctype = h.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise Refusal(11001, "Content-Type must be application/json")
        ts = h["Timestamp"].strip()
        if not DIGITS_RE.fullmatch(ts) or len(ts) > 19:
            raise Refusal(11001, "Timestamp must be Unix seconds")
        app_id = h["Appid"]
        app = self.cfg["apps"].get(app_id)
        if app is None:
            raise Refusal(12001)
        wl = self.cfg.get("ip_whitelist")
        if wl is not None and CLIENT_IP not in wl:
            raise Refusal(12002)
        want = SIGNERS[self._version(req.path)](app_id, app["secret"], h["Timestamp"], req.body)
        if not hmac.compare_digest(want.encode(), h["Sign"].encode("utf-8", "replace")):
            raise Refusal(11005, None, "bad_signatures")
        if abs(int(ts) - time.time()) > self.cfg["timestamp_window_s"]:
            raise Refusal(11006, None, "bad_timestamps")
        rl = self.cfg.get("rate_limit_per_s")
        if rl is not None:
            w = self.windows.setdefault(app_id, deque())
            while w and req.mono - w[0] >= 1.0:
                w.popleft()
            if len(w) >= rl:
                raise Refusal(11004, None, "rate_limit_violations")
            w.append(req.mono)
        return app_id

    def _dedupe(self, app_id, moid, req, version):
        """Refuse a merchant order id this app already used (11007 / 11011)."""
        orig = self.by_moid.get((app_id, moid))
        if orig is None:
            return
        self.stats["duplicates_refused"] += 1
        if version == 2 and req.mono - orig["_first_mono"] < self.cfg["repeat_window_s"]:
            self.stats["repeated_submits"] += 1
            raise Refusal(11007, None, None)
        raise Refusal(11011, None, None)

    def _charge(self, app_id, amount):
        app = self.cfg["apps"][app_id]
        bal = app.get("balance")
        if bal is not None and self.spent[app_id] + amount > Decimal(str(bal)):
            raise Refusal(14000, None, "insufficient_balance")
        self.spent[app_id] += amount

    # -- endpoints

    def _v1_withdraw(self, req, app_id, p, info):
        def bad(field, why):
            raise Refusal(11000, f"{field} {why}", "validation_errors")

        moid = p.get("merchant_order_id")
        if not isinstance(moid, str) or not moid or len(moid) > 64:
            bad("merchant_order_id", "must be a string of 1-64 characters")
        addr = p.get("address")
        if not isinstance(addr, str) or not addr:
            bad("address", "is required")
        tok = p.get("token_id")
        if not isinstance(tok, str) or not tok:
            bad("token_id", "is required")
        positive_amount(p.get("value"), "value")
        memo = p.get("memo", "")
        # seed 003: "memo Integer" -- a JSON integer (C2: a string is refused)
        if "memo" in p and (isinstance(memo, bool) or not isinstance(memo, int) or memo < 0):
            bad("memo", "must be an Integer")
        meta = self.cfg["tokens"].get(tok)
        if meta is None:
            if self.cfg["strict_tokens"]:
                raise Refusal(13000, tok, "validation_errors")
            meta = {"crypto": "UNKNOWN", "chain": "UNKNOWN", "contract": ""}
        self._dedupe(app_id, moid, req, 1)
        cwallet = DIGITS_RE.fullmatch(addr) is not None or "@" in addr
        r = self._execute(req, app_id, 1, moid, "cwallet" if cwallet else "network", p["value"], addr,
                          str(memo), False, meta["crypto"], meta["chain"], meta["contract"], tok, None,
                          tok, None)
        info["executed"] = True
        return {"order_id": r["order_id"], "network_fee": r["fee"]}

    def _v2_apply(self, req, app_id, p, info, cwallet):
        def bad(field, why):
            raise Refusal(11000, f"{field} {why}", "validation_errors")

        moid = p.get("orderId")
        if not isinstance(moid, str) or not 3 <= len(moid) <= 64:
            bad("orderId", "must be a string of 3-64 characters")
        coin = p.get("coinId")
        if isinstance(coin, str) and DIGITS_RE.fullmatch(coin):
            coin = int(coin)
        if not isinstance(coin, int) or isinstance(coin, bool) or not 1 <= coin < 2 ** 64:
            bad("coinId", "must be an integer >= 1")
        positive_amount(p.get("amount"), "amount")
        notify = None
        if cwallet:
            dest = p.get("cwalletUser")
            if not isinstance(dest, str) or not dest:
                bad("cwalletUser", "is required")
            chain, memo, mpays = "", "", False
        else:
            chain = p.get("chain")
            if not isinstance(chain, str) or not chain:
                bad("chain", "is required")
            dest = p.get("address")
            if not isinstance(dest, str) or not dest:
                bad("address", "is required")
            memo = p.get("memo", "")
            if not isinstance(memo, str):
                bad("memo", "must be a string")
            mpays = p.get("merchantPayNetworkFee", False)
            if not isinstance(mpays, bool):
                bad("merchantPayNetworkFee", "must be a boolean")
            inq = p.get("networkFeeInquiryID", "")
            if not isinstance(inq, str):
                bad("networkFeeInquiryID", "must be a string")
            notify = p.get("notifyUrl", "")
            if not isinstance(notify, str) or len(notify) > 150 or (notify and not URL_RE.fullmatch(notify)):
                bad("notifyUrl", "must be an http(s) URL of at most 150 characters")
            notify = notify or None
        symbol = self.cfg["coins"].get(str(coin))
        if symbol is None:
            if self.cfg["strict_tokens"]:
                raise Refusal(13000, str(coin), "validation_errors")
            symbol = f"COIN{coin}"
        self._dedupe(app_id, moid, req, 2)
        r = self._execute(req, app_id, 2, moid, "cwallet" if cwallet else "network", p["amount"], dest, memo,
                          mpays, symbol, chain, "", str(coin), coin, str(coin), notify)
        info["executed"] = True
        return {"recordId": r["record_id"]}

    def _execute(self, req, app_id, version, moid, kind, amount_text, dest, memo, mpays, crypto, chain,
                 contract, network_coin_id, coin_id, token_id, notify):
        """Charge and store a new record (amount_text: the amount exactly as sent) and
        schedule its settlement."""
        amount = Decimal(amount_text)
        fee = Decimal(0) if kind == "cwallet" else Decimal(self.cfg["network_fee"])
        net = amount if mpays else amount - fee
        if net <= 0:
            raise Refusal(14019, None, "validation_errors")
        self._charge(app_id, amount)
        self.serial += 1
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(req.t))
        r = {"app_id": app_id, "version": version, "kind": kind, "merchant_order_id": moid,
             "order_id": f"{stamp}{ORDER_BASE + self.serial:019d}",
             "record_id": f"{stamp}{RECORD_BASE + self.serial:019d}",
             "amount": amount_text, "fee": fmt_dec(fee) if fee else "0",
             "net_receivable": fmt_dec(net), "merchant_pays_fee": mpays, "to_address": dest, "memo": memo,
             "crypto": crypto, "chain": chain, "contract": contract, "network_coin_id": network_coin_id,
             "coin_id": coin_id, "token_id": token_id, "notify_url": notify, "created": int(req.t),
             "created_at": req.t, "_mono": req.mono, "_first_mono": req.mono, "settled": None,
             "settled_at": None, "txid": "", "reason": ""}
        self.records.append(r)
        self.by_moid[(app_id, moid)] = r
        self.by_oid[r["order_id"]] = r
        self.by_rid[r["record_id"]] = r
        self.executions[f"{app_id}/{moid}"] += 1
        self.stats["executed"] += 1
        delay = self.cfg.get("settle_after_s")
        if delay is not None:
            outcome = "failed" if dest.lower().startswith("fail") else self.cfg["settle_outcome"]
            self.sched.add(delay, self._auto_settle, r, outcome, self.gen)
        return r

    def _v1_bill_info(self, app_id, p):
        ids = p.get("merchant_order_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise Refusal(11000, "merchant_order_ids must be a non-empty list of strings", "validation_errors")
        if len(ids) > 100:
            raise Refusal(11010, None, "validation_errors")
        out, seen = [], set()
        mono = time.monotonic()
        for i in ids:
            r = self.by_moid.get((app_id, i))
            if r is None or i in seen:
                continue
            seen.add(i)
            out.append(self._v1_view(r, mono))
        return out

    def _v1_status(self, r, mono):
        if r["settled"] is not None:
            return "Successful" if r["settled"] == "success" else "Failed"
        return "Pending" if mono - r["_mono"] < self.cfg["processing_after_s"] else "Processing"

    def _v1_view(self, r, mono):
        status = self._v1_status(r, mono)
        detail = {"merchant_order_id": r["merchant_order_id"], "chain": r["chain"],
                  "contract": r["contract"], "crypto": r["crypto"], "order_amount": r["amount"],
                  "token_rate": "1", "status": status, "created": r["created"], "order_id": r["order_id"]}
        trades = []
        if status != "Pending":
            trades.append({"amount": r["amount"], "chain": r["chain"], "contract": r["contract"],
                           "crypto": r["crypto"], "service_fee": "0", "network_fee": r["fee"],
                           "network_coin_id": r["network_coin_id"], "network_fee_crypto": r["crypto"],
                           "network_fee_value": r["fee"], "txid": r["txid"],
                           "pay_time": int(r["settled_at"] or r["created_at"]), "token_rate": "1",
                           "status": status})
        return {"order_detail": detail, "trade_list": trades}

    def _v2_record(self, app_id, p):
        oid, rid = p.get("orderId", ""), p.get("recordId", "")
        if not isinstance(oid, str) or not isinstance(rid, str) or not (oid or rid):
            raise Refusal(11000, "orderId or recordId is required", "validation_errors")
        r = self.by_rid.get(rid) if rid else self.by_moid.get((app_id, oid))
        if r is None or r["app_id"] != app_id or (oid and rid and r["merchant_order_id"] != oid):
            raise Refusal(11003, None, "not_found")
        return {"record": self._v2_view(r)}

    def _v2_view(self, r):
        status = "Processing" if r["settled"] is None else "Success" if r["settled"] == "success" else "Failed"
        return {"recordId": r["record_id"], "withdrawType": "Cwallet" if r["kind"] == "cwallet" else "Network",
                "appId": r["app_id"], "coinId": r["coin_id"] if r["coin_id"] is not None else 0,
                "coinSymbol": r["crypto"], "chain": r["chain"],
                "fromAddress": "" if r["kind"] == "cwallet" else "0x" + "c" * 40,
                "toAddress": "" if r["kind"] == "cwallet" else r["to_address"],
                "cwalletUser": r["to_address"] if r["kind"] == "cwallet" else "",
                "orderId": r["merchant_order_id"], "txId": r["txid"], "toMemo": r["memo"], "status": status,
                "amount": r["amount"],
                "fee": {"coinId": r["coin_id"] if r["coin_id"] is not None else 0,
                        "coinSymbol": r["crypto"], "amount": r["fee"]},
                "reason": r["reason"], "coinUSDPrice": "1"}

    # -- settlement and webhooks (scheduler thread or control, self.lock held)

    def _auto_settle(self, r, outcome, gen):
        if gen == self.gen and r["settled"] is None:
            self._settle(r, outcome)

    def _settle(self, r, outcome):
        """Settle r now and queue its webhook; returns the delivery id or None."""
        if outcome == "failed" and r["settled"] != "failed":
            self.spent[r["app_id"]] -= Decimal(r["amount"])
        elif outcome == "success" and r["settled"] == "failed":
            self.spent[r["app_id"]] += Decimal(r["amount"])
        r["settled"] = outcome
        r["settled_at"] = time.time()
        if outcome == "success":
            r["txid"] = "internal transfer" if r["kind"] == "cwallet" else \
                "0x" + hashlib.sha256(f"ccpayment-tx/{r['record_id']}".encode()).hexdigest()
            r["reason"] = ""
        else:
            r["txid"] = ""
            r["reason"] = "withdrawal failed"
        self.stats["settled"] += 1
        return self._queue_webhook(r, "settle")

    def _payload(self, r):
        outcome = r["settled"]
        p = {"pay_status": outcome, "order_type": "API Withdrawal", "order_id": r["order_id"],
             "record_id": r["record_id"], "withdraw_amount": r["amount"], "net_receivable": r["net_receivable"],
             "network_fee": r["fee"], "network_fee_crypto": r["crypto"], "network_coin_id": r["network_coin_id"],
             "network_fee_value": r["fee"], "chain": r["chain"], "contract": r["contract"],
             "crypto": r["crypto"], "to_address": r["to_address"], "memo": r["memo"], "txid": r["txid"],
             "merchant_order_id": r["merchant_order_id"], "merchant_pays_fee": r["merchant_pays_fee"]}
        if r["version"] == 2:
            p["orderId"] = r["merchant_order_id"]
            p["recordId"] = r["record_id"]
        return p

    def _queue_webhook(self, r, kind):
        app = self._c("apps").get(r["app_id"])
        if app is None:
            return None
        url = r["notify_url"] or app.get("webhook_url")
        if not url:
            return None
        body = json.dumps(self._payload(r)).encode("utf-8")
        return self._new_delivery(kind, r["app_id"], r["version"], url, body, r["merchant_order_id"],
                                  True, True, None)

    def _new_delivery(self, kind, app_id, version, url, body, moid, retry, sign_ok, timestamp):
        d = {"id": len(self.deliveries) + 1, "kind": kind, "app_id": app_id, "version": version, "url": url,
             "merchant_order_id": moid, "body": body.decode("utf-8", "replace"), "_body": body,
             "_retry": retry, "_sign_ok": sign_ok, "_timestamp": timestamp, "acked": False, "done": False,
             "attempts": [], "created_at": time.time()}
        self.deliveries.append(d)
        return self.courier.send(d)

    def _webhook_headers(self, d):
        """(headers, logged fields) of one attempt of d, signed now; None drops d (app gone)."""
        app = self._c("apps").get(d["app_id"])
        if app is None:
            return None
        secret = app.get("webhook_secret") or app["secret"]
        if not d["_sign_ok"]:
            secret = "wrong-" + secret
        ts = str(d["_timestamp"] if d["_timestamp"] is not None else int(time.time()))
        sig = SIGNERS[d["version"]](d["app_id"], secret, ts, d["_body"])
        headers = {"Content-Type": WEBHOOK_CTYPE, "Appid": d["app_id"], "Timestamp": ts, "Sign": sig}
        return headers, {"timestamp": ts, "sign": sig}

    # -- control (/_mock/ccpayment/...)

    def _find(self, obj):
        ident = obj.get("order_id")
        if not isinstance(ident, str) or not ident:
            raise ValueError("order_id must be a non-empty string")
        app_id = obj.get("app_id")
        r = self.by_oid.get(ident) or self.by_rid.get(ident)
        if r is None:
            hits = [x for (a, m), x in self.by_moid.items() if m == ident and (app_id is None or a == app_id)]
            if len(hits) > 1:
                raise ValueError("merchant order id used by several apps: give app_id")
            r = hits[0] if hits else None
        return r

    def _view(self, r):
        out = {k: v for k, v in r.items() if not k.startswith("_")}
        mono = time.monotonic()
        out["v1_status"] = self._v1_status(r, mono)
        out["v2_status"] = self._v2_view(r)["status"]
        return out

    def control(self, method, path, params, obj):
        """Provider control endpoints; returns (status, JSON body); ValueError -> 400."""
        with self.lock:
            if not isinstance(obj, dict):
                raise ValueError("body must be a JSON object")
            if method == "POST" and path == "/settle":
                outcome = obj.get("pay_status")
                if outcome not in ("success", "failed"):
                    raise ValueError("pay_status must be success or failed")
                r = self._find(obj)
                if r is None:
                    return 404, {"ok": False, "error": "no such order"}
                if r["settled"] is not None and not obj.get("force"):
                    return 409, {"ok": False, "error": f"already settled ({r['settled']})",
                                 "record": self._view(r)}
                wid = self._settle(r, outcome)
                return 200, {"ok": True, "record": self._view(r), "webhook_id": wid}
            if method == "POST" and path == "/resend":
                r = self._find(obj)
                if r is None:
                    return 404, {"ok": False, "error": "no such order"}
                if r["settled"] is None:
                    return 409, {"ok": False, "error": "not settled yet"}
                return 200, {"ok": True, "webhook_id": self._queue_webhook(r, "resend")}
            if method == "POST" and path == "/webhook":
                app_id = obj.get("app_id")
                app = self.cfg["apps"].get(app_id) if isinstance(app_id, str) else None
                if app is None:
                    raise ValueError("app_id must name a configured app")
                body = obj.get("body")
                if not isinstance(body, str):
                    raise ValueError("body must be a string (the raw webhook body)")
                version = obj.get("version", 1)
                if version not in (1, 2):
                    raise ValueError("version must be 1 or 2")
                url = obj.get("url") or app.get("webhook_url")
                if not isinstance(url, str) or not URL_RE.fullmatch(url):
                    raise ValueError("url (or the app's webhook_url) must be an http(s) URL")
                ts = obj.get("timestamp")
                if ts is not None and (not isinstance(ts, (int, str)) or isinstance(ts, bool)):
                    raise ValueError("timestamp must be an integer or a string")
                sign_ok = obj.get("sign_ok", True)
                if not isinstance(sign_ok, bool):
                    raise ValueError("sign_ok must be a boolean")
                wid = self._new_delivery("forged", app_id, version, url, body.encode("utf-8"), None,
                                         bool(obj.get("retry", False)), sign_ok, ts)
                return 200, {"ok": True, "webhook_id": wid}
            if method == "GET" and path == "/webhooks":
                order = params.get("order")
                return 200, [{k: v for k, v in d.items() if not k.startswith("_")} for d in self.deliveries
                             if order is None or d["merchant_order_id"] == order]
            if method == "GET" and path == "/records":
                app_id = params.get("app_id")
                return 200, [self._view(r) for r in self.records if app_id is None or r["app_id"] == app_id]
            return 404, {"ok": False, "error": f"no control endpoint {method} /_mock/{NAME}{path}"}

    def ledger(self):
        with self.lock:
            public = ("app_id", "version", "kind", "merchant_order_id", "order_id", "record_id", "amount",
                      "fee", "to_address", "memo", "crypto", "chain", "settled", "txid", "created_at")
            bal = {}
            for app_id, a in self.cfg["apps"].items():
                if a.get("balance") is not None:
                    bal[app_id] = fmt_dec(Decimal(str(a["balance"])) - self.spent[app_id]) or "0"
            return {"executions": dict(self.executions),
                    "withdrawals": [{k: r[k] for k in public} for r in self.records],
                    "balances": bal}
