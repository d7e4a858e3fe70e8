"""
zoomex.py - mock of Zoomex's v1 private withdraw API, plugged into mock_provider.py.

Implements, from the published docs (shared/providers.md section 0, seed 000; each
behaviour is traced to the seed, or marked an assumption, in ASSUMPTIONS.md, Z0-Z7):
  POST /private/v1/asset/withdraw/inner-create   JSON body, retCode/retMsg envelope
  GET  /private/v1/asset/withdraw/query-record   query string, legacy ret_code envelope
Both are signed the v1 way: every parameter except sign, keys in byte order, joined
as key=value with '&' (values not URL-encoded), lowercase hex HMAC-SHA256 keyed with
the api_secret; the same hex goes in the body/query "sign" and in X-BAPI-SIGN.

Checks, in order: headers and their agreement with the params (10001), api key
(10003, HTTP 401), signature (10004), timestamp window (10002), business parameters
(10001), rate limit (10006), duplicate requestId (10014); then the withdrawal is
executed (appended to the ledger).  The signature is checked before the timestamp so
that a documented vector with an old timestamp can still prove the signature correct.

Config ("zoomex" section):
  keys              {api_key: api_secret}
  status_schedule   [[status, seconds], ...] shown by query-record after execution,
                    then the final status chosen by the address prefix
                    (fail -> Fail, reject -> Rejected, cancel -> Cancelled,
                    review -> Pending Review forever, else Transferred successfully)
  duplicate_mode    "error" (10014), "original" (retCode 0, original withdraw_id) or
                    "execute" (no idempotency: executes again; to catch double sends)
  create_interval_s min seconds between counted inner-create requests per key (1.0)
  query_limit_per_min  query-record requests per key per 60 s (300)
  time_fields_as_strings  query-record create_time/update_time as strings (the doc's
                    table types them "string"; default false: integers)
  create_retcode    null, or any JSON value: inner-create answers {"retCode": value,
                    "retMsg": "OK", "result": {"withdraw_id": "990001"}} after authentication and validation,
                    executing nothing (a malformed code such as "" or "-" must not read
                    as success)
"""

import hashlib
import hmac
import json
import re
import time
from collections import Counter, deque
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

NAME = "zoomex"

DEFAULT_CONFIG = {
    "keys": {},
    "status_schedule": [["Pending Review", 0.3], ["Pending Transfer", 0.3]],
    "duplicate_mode": "error",
    "create_interval_s": 1.0,
    "query_limit_per_min": 300,
    "time_fields_as_strings": False,
    "create_retcode": None,
}

STATS = ("executed", "duplicates_refused", "rate_limit_violations", "bad_signatures",
         "bad_timestamps", "validation_errors", "request_errors")

CREATE_PATH = "/private/v1/asset/withdraw/inner-create"
QUERY_PATH = "/private/v1/asset/withdraw/query-record"
FIRST_WITHDRAW_ID = 10195
AUTH_HEADERS = ("X-BAPI-API-KEY", "X-BAPI-SIGN", "X-BAPI-TIMESTAMP", "X-BAPI-RECV-WINDOW")
FINAL_BY_PREFIX = (("fail", "Fail"), ("reject", "Rejected"), ("cancel", "Cancelled"))
SUCCESS = "Transferred successfully"


def check_config(cfg):
    """Raise ValueError if the zoomex config cannot be used."""
    keys = cfg.get("keys")
    if not isinstance(keys, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in keys.items()):
        raise ValueError("zoomex.keys must map api_key strings to api_secret strings")
    sched = cfg.get("status_schedule")
    if not isinstance(sched, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
            and isinstance(p[1], (int, float)) and p[1] >= 0 for p in sched):
        raise ValueError("zoomex.status_schedule must be [[status, seconds], ...]")
    if cfg.get("duplicate_mode") not in ("error", "original", "execute"):
        raise ValueError("zoomex.duplicate_mode must be error, original or execute")
    if not isinstance(cfg.get("create_interval_s"), (int, float)) or cfg["create_interval_s"] < 0:
        raise ValueError("zoomex.create_interval_s must be a number >= 0")
    if not isinstance(cfg.get("query_limit_per_min"), int) or cfg["query_limit_per_min"] < 1:
        raise ValueError("zoomex.query_limit_per_min must be an integer >= 1")


def plain(value):
    """A parameter value in the plain string form used in the string to sign."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def string_to_sign(params):
    """Every param but sign, keys in byte order, key=value joined with '&', not URL-encoded."""
    keys = sorted((k for k in params if k != "sign"), key=lambda k: k.encode("utf-8"))
    return "&".join(f"{k}={plain(params[k])}" for k in keys)


def sign(secret, params):
    return hmac.new(secret.encode("utf-8"), string_to_sign(params).encode("utf-8"),
                    hashlib.sha256).hexdigest()


def sign_matches(secret, params):
    """True if params["sign"] is exactly the lowercase hex signature of params."""
    given = params.get("sign")
    return isinstance(given, str) and hmac.compare_digest(sign(secret, params).encode(),
                                                          given.encode("utf-8"))


class Refusal(Exception):
    """A request the provider answers with an error code; stat names the counter to bump."""

    def __init__(self, code, msg, stat, http_status=200):
        super().__init__(msg)
        self.code, self.msg, self.stat, self.http_status = code, msg, stat, http_status


def now_ms():
    return int(time.time() * 1000)


def v3_body(code, msg, result):
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": None, "time": now_ms()}


def legacy_body(code, msg, result):
    return {"ret_code": code, "ret_msg": msg, "ext_code": "", "result": result,
            "ext_info": None, "time_now": f"{time.time():.6f}"}


class Provider:
    """Zoomex state: ledger, rate-limit windows.  Every method runs under the core lock."""

    def __init__(self, config, stats):
        self.cfg = config
        self.stats = stats
        self.reset()

    def reset(self):
        self.next_id = FIRST_WITHDRAW_ID
        self.withdrawals = []           # internal records, oldest first
        self.by_request = {}            # requestId -> first record
        self.executions = Counter()     # requestId -> times executed
        self.last_create = {}           # api_key -> monotonic time of last counted create
        self.queries = {}               # api_key -> deque of monotonic times

    # -- plumbing shared with the core

    def _envelope(self, req):
        return legacy_body if req.path == QUERY_PATH else v3_body

    def error_reply(self, req, code, msg):
        result = None if req.path == QUERY_PATH else {}
        return 200, self._envelope(req)(code, msg, result)

    def _params(self, req):
        """The signed parameters of req: the JSON body object, or the decoded query."""
        if req.path == QUERY_PATH:
            pairs = parse_qsl(req.query, keep_blank_values=True)
            params = dict(pairs)
            if len(params) != len(pairs):
                raise Refusal(10001, "Param error: duplicated query parameter", "request_errors")
            return params
        ctype = req.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise Refusal(10001, "Param error: Content-Type must be application/json", "request_errors")
        try:
            params = json.loads(req.body)
        except ValueError:
            raise Refusal(10001, "Param error: request body is not valid JSON", "request_errors")
        if not isinstance(params, dict):
            raise Refusal(10001, "Param error: request body must be a JSON object", "request_errors")
        for k, v in params.items():
            if isinstance(v, (dict, list)) or v is None:
                raise Refusal(10001, f"Param error: {k} must be a string or number", "request_errors")
        return params

    def peek(self, req):
        """Log fields for a request the core will not pass to handle()."""
        info = {"api_key": None, "requestId": None, "sig_ok": False}
        try:
            params = self._params(req)
        except Refusal:
            return info
        key = params.get("api_key")
        info["api_key"] = key if isinstance(key, str) else None
        rid = params.get("requestId")
        info["requestId"] = rid if isinstance(rid, str) else None
        secret = self.cfg["keys"].get(key) if isinstance(key, str) else None
        if secret is not None:
            info["sig_ok"] = sign_matches(secret, params)
        return info

    def handle(self, req):
        info = {"api_key": None, "requestId": None, "ret_code": None, "sig_ok": False,
                "executed": False}
        route = (req.method, req.path)
        if route not in (("POST", CREATE_PATH), ("GET", QUERY_PATH)):
            self.stats["request_errors"] += 1
            info["ret_code"] = 10001
            return 404, v3_body(10001, f"Not found: {req.method} {req.path}", {}), info
        envelope = self._envelope(req)
        try:
            params = self._params(req)
            info.update(self.peek(req))
            key = self._authenticate(req, params)
            if route[1] == CREATE_PATH:
                status, body = self._create(req, params, key, info)
            else:
                status, body = self._query(req, params, key)
        except Refusal as r:
            if r.stat:
                self.stats[r.stat] += 1
            status, body = r.http_status, envelope(r.code, r.msg, None if envelope is legacy_body else {})
        info["ret_code"] = body.get("retCode", body.get("ret_code"))
        return status, body, info

    # -- checks

    def _authenticate(self, req, params):
        """Headers, api key, signature, timestamp window; returns the api_key."""
        h = req.headers
        for name in AUTH_HEADERS:
            if not h.get(name):
                raise Refusal(10001, f"Param error: missing header {name}", "request_errors")
        for name in ("api_key", "timestamp", "recv_window", "sign"):
            if name not in params:
                raise Refusal(10001, f"Param error: missing parameter {name}", "request_errors")
        key = params["api_key"]
        if not isinstance(key, str) or h["X-BAPI-API-KEY"] != key:
            raise Refusal(10001, "Param error: X-BAPI-API-KEY does not match api_key", "request_errors")
        nums = {}
        for name, header in (("timestamp", "X-BAPI-TIMESTAMP"), ("recv_window", "X-BAPI-RECV-WINDOW")):
            v = params[name]
            if req.path == QUERY_PATH:
                ok = re.fullmatch(r"[0-9]{1,19}", v) is not None
            else:
                ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
            if not ok:
                raise Refusal(10001, f"Param error: {name} must be an integer", "request_errors")
            if h[header] != str(v):
                raise Refusal(10001, f"Param error: {header} does not match {name}", "request_errors")
            nums[name] = int(v)
        if not isinstance(params["sign"], str) or h["X-BAPI-SIGN"] != params["sign"]:
            raise Refusal(10001, "Param error: X-BAPI-SIGN does not match sign", "request_errors")
        secret = self.cfg["keys"].get(key)
        if secret is None:
            raise Refusal(10003, "API key is invalid.", "request_errors", http_status=401)
        if not sign_matches(secret, params):
            raise Refusal(10004, "error sign!", "bad_signatures")
        server = now_ms()
        if not (server - nums["recv_window"] <= nums["timestamp"] < server + 1000):
            raise Refusal(10002, "invalid request, please check your timestamp and recv_window param",
                          "bad_timestamps")
        return key

    def _validate_create(self, p):
        def bad(field, why):
            raise Refusal(10001, f"Param error: {field} {why}", "validation_errors")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        rid = p.get("requestId")
        # seed 000: "Custom ID, globally unique" -- any string; 64 is an assumption (Z1)
        if not isinstance(rid, str) or not 1 <= len(rid) <= 64:
            bad("requestId", "must be a string of 1-64 characters")
        if not isinstance(p.get("coin"), str) or not p["coin"]:
            bad("coin", "is required")
        if not is_int(p.get("addressType")) or p["addressType"] not in (1, 2, 3):
            bad("addressType", "must be 1 (email), 2 (phone) or 3 (UID)")
        if "areaCode" in p and not is_int(p["areaCode"]):
            bad("areaCode", "must be an integer")
        if p["addressType"] == 2 and "areaCode" not in p:
            bad("areaCode", "is required when addressType is 2")
        if not isinstance(p.get("address"), str) or not p["address"]:
            bad("address", "is required")
        amount = p.get("amount")
        if not isinstance(amount, str) or not re.fullmatch(r"[0-9]+(\.[0-9]+)?", amount):
            bad("amount", "must be a positive decimal string")
        try:
            positive = Decimal(amount) > 0
        except InvalidOperation:
            positive = False
        if not positive:
            bad("amount", "must be a positive decimal string")
        if "remark" in p and (not isinstance(p["remark"], str) or len(p["remark"]) > 50):
            bad("remark", "must be a string of at most 50 characters")

    # -- endpoints

    def _create(self, req, p, key, info):
        """inner-create after authentication: validate, rate-limit, dedupe, execute."""
        self._validate_create(p)
        if self.cfg.get("create_retcode") is not None:
            return 200, {"retCode": self.cfg["create_retcode"], "retMsg": "OK", "result": {"withdraw_id": "990001"},
                         "retExtInfo": None, "time": now_ms()}
        last = self.last_create.get(key)
        if last is not None and abs(req.mono - last) < self.cfg["create_interval_s"]:
            raise Refusal(10006, "Too many visits!", "rate_limit_violations")
        self.last_create[key] = req.mono
        rid = p["requestId"]
        orig = self.by_request.get(rid)
        mode = self.cfg["duplicate_mode"]
        if orig is not None and mode != "execute":
            self.stats["duplicates_refused"] += 1
            if mode == "original" and orig["api_key"] == key:
                return 200, v3_body(0, "success", {"withdraw_id": orig["withdraw_id"]})
            raise Refusal(10014, "Invalid duplicate request", None)
        w = {"requestId": rid, "withdraw_id": str(self.next_id), "api_key": key,
             "coin": p["coin"], "amount": p["amount"], "address": p["address"],
             "addressType": p["addressType"], "areaCode": p.get("areaCode"),
             "remark": p.get("remark"), "executed_at": time.time(), "_mono": time.monotonic()}
        self.next_id += 1
        self.withdrawals.append(w)
        self.by_request.setdefault(rid, w)
        self.executions[rid] += 1
        self.stats["executed"] += 1
        info["executed"] = True
        return 200, v3_body(0, "success", {"withdraw_id": w["withdraw_id"]})

    def _status(self, w, mono):
        """(status, seconds after execution when it took effect) at monotonic time mono."""
        addr = w["address"].lower()
        if addr.startswith("review"):
            return "Pending Review", 0.0
        elapsed, start = mono - w["_mono"], 0.0
        for status, seconds in self.cfg["status_schedule"]:
            if elapsed < start + seconds:
                return status, start
            start += seconds
        for prefix, status in FINAL_BY_PREFIX:
            if addr.startswith(prefix):
                return status, start
        return SUCCESS, start

    def _row(self, w, mono):
        status, since = self._status(w, mono)
        tx_id = hashlib.sha256(f"zoomex-inner-{w['withdraw_id']}".encode()).hexdigest() \
            if status == SUCCESS else ""
        create_time = int(w["executed_at"])
        update_time = int((w["executed_at"] + since) * 1000)
        if self.cfg.get("time_fields_as_strings"):
            create_time, update_time = str(create_time), str(update_time)
        return {"withdraw_id": w["withdraw_id"], "tx_id": tx_id, "withdraw_type": 1,
                "coin": w["coin"], "chain": "", "amount": w["amount"], "withdraw_fee": "0",
                "status": status, "to_address": w["address"],
                "user_id": str(100000 + int(hashlib.sha256(w["api_key"].encode()).hexdigest()[:6], 16)),
                "tag": "", "create_time": create_time, "update_time": update_time}

    def _query(self, req, p, key):
        """query-record after authentication: rate-limit, validate filters, list newest first."""
        window = self.queries.setdefault(key, deque())
        while window and req.mono - window[0] >= 60.0:
            window.popleft()
        if len(window) >= self.cfg["query_limit_per_min"]:
            raise Refusal(10006, "Too many visits!", "rate_limit_violations")
        window.append(req.mono)

        def num(name, default, lo=0, hi=None):
            v = p.get(name, "")
            if v == "":
                return default
            if not re.fullmatch(r"[0-9]{1,19}", v) or int(v) < lo or (hi is not None and int(v) > hi):
                raise Refusal(10001, f"Param error: {name} is invalid", "validation_errors")
            return int(v)

        wtype = num("withdrawType", 0, 0, 2)
        page = num("pageSize", 20, 1, 50)
        start = num("startTime", None)
        end = num("endTime", None)
        cursor = num("cursor", None)
        mono = time.monotonic()
        rows = []
        if wtype in (1, 2):
            for w in reversed(self.withdrawals):
                if w["api_key"] != key or (cursor is not None and int(w["withdraw_id"]) >= cursor):
                    continue
                row = self._row(w, mono)
                created = int(w["executed_at"])
                if (p.get("withdrawId") not in (None, "", w["withdraw_id"])
                        or p.get("txid") not in (None, "", row["tx_id"])
                        or p.get("coin") not in (None, "", w["coin"])
                        or (start is not None and created < start)
                        or (end is not None and created > end)):
                    continue
                rows.append(row)
        more = len(rows) > page
        rows = rows[:page]
        return 200, legacy_body(0, "OK", {"rows": rows,
                                         "cursor": rows[-1]["withdraw_id"] if more else ""})

    def ledger(self):
        public = ("requestId", "withdraw_id", "api_key", "coin", "amount", "address",
                  "addressType", "areaCode", "remark", "executed_at")
        return {"executions": dict(self.executions),
                "withdrawals": [{k: w[k] for k in public} for w in self.withdrawals]}
