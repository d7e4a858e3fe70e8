"""
fiat_gateway.py - mock of the intqp fiat payout gateway, plugged into mock_provider.py.

Implements, from the published docs (shared/providers.md section 4 and "Product
decisions", seed 004; each behaviour is traced to the seed, or marked an assumption,
in ASSUMPTIONS.md, F1-F14); an account's base_url is http://127.0.0.1:PORT/fiat_gateway:
  POST /channel/formRule   {uid, currency, pay_code, timestamp, userip, sign}
                           -> {"status":10000,"result":{"data":{"pay_code","name",
                              "description","form_fields":[...]}}}  unsigned, as the
                              seed's example (sign_rule_answers: signed)
  POST /applyfor           {uid, currency, orderid, notify_url, amount, userip, timestamp,
                            pay_code, sign, bank_id?, custom?, user_name?, bank_account?,
                            bank_no?, bank_name?, bank_province?, bank_city?, bank_sub?,
                            bank_ifsc?, <dynamic fields of the pay_code>}
                           -> {"status":10000,"result":{"transactionid":"800000001"},"sign":"..."}
Bodies are JSON objects (Content-Type application/json) of scalars; a nested value, a
repeated key or a non-JSON body is refused (10001).

Signature (requests, responses and notifications alike): take every top-level parameter
except "sign"; drop empty values (null or ""); sort the keys by ASCII/byte order
(case-sensitive); join "k=v" with "&" using the raw values (no URL encoding; a JSON
number is its literal text as written, e.g. 1758210270 or 1.50; true/false); then append
"&key=" + SECRET (merchant sign_mode "amp_key", the default) or SECRET directly
("concat"); MD5 of the UTF-8 bytes, uppercase hex.  The request sign must match exactly
(uppercase).

Response signing (one rule for every reply of both endpoints, success or error): the
signed parameters are the reply's top-level scalar members other than "sign" (status,
and msg on errors) plus the scalar members of "result" when it is an object (e.g.
transactionid); nested objects/arrays are not signed, so a signed formRule reply signs
only "status=10000" (formRule success replies are unsigned unless sign_rule_answers).  Same empty-value, sorting and sign_mode rules, the merchant's secret:
  success  {"status":10000,"result":{"transactionid":"800000001"},"sign":S}
           S = MD5("status=10000&transactionid=800000001&key=SECRET")
  error    {"status":10002,"msg":"Signature verification failed","result":null,"sign":S}
           S = MD5("msg=Signature verification failed&status=10002&key=SECRET")
An error for a body that is not a JSON object, a missing uid or an unknown uid cannot be
tied to a merchant and has no "sign".  All replies are HTTP 200 (an unknown path is 404
{"status":10001,"msg":...}).

Checks, in order (codes from the docs):
  10001 body not a JSON object / nested value / repeated key; uid missing or unknown
        (unsigned); sign missing
  10002 sign does not verify
  10001 timestamp missing, not 10 digits, or |now - timestamp| > timestamp_window_s
        ("timestamp expired"); then a missing required parameter, named in msg
        ("<field> is required"): applyfor currency, orderid, notify_url, amount, userip,
        pay_code (formRule: currency, pay_code, userip); notify_url not http(s);
        orderid longer than 64
  10004 amount with more decimals than the pay_code's rule allows ("decimals", default 2:
        "100", "100.5", "100.00" pass; a JSON string, or a JSON number's literal text)
        or not > 0
  10001 bank_id present but not a JSON integer (the seed: int)
  10001 pay_code unknown ("pay_code not supported") or currency not among the rule's
        currencies
  10005 bank_id present but not among the options of the rule's bank_id field
  10001 a dynamic field of the rule (form_fields) missing while required, or breaking
        max_length / its options / validation_rules, named in msg
  10003 duplicate orderid for this uid (nothing executed)
  10007 amount below single_min, above single_limit, or today's (UTC) total above
        daily_limit
  10006 amount above the remaining balance
validation_rules the mock enforces: required, string (a JSON string), integer (a JSON
integer or digit string), digits (only 0-9), max:N / min:N / size:N (length of the
text), in:a,b,... and regex:PATTERN (Python full match).  A select field's value must be
one of its options: "bankID" for bank_id (compared as integers), "value" otherwise.

Built-in form rules (config "form_rules", keyed by pay_code; a config entry replaces or,
with null, removes one; "currencies" is the mock's own list, not shown in replies):
  1004 Korea Withdrawal   KRW, VND  bank_id select (1001, 1002, 1003) required integer;
                          bank_account input required max 50; bank_no input required
                          digits max 30
  812  India Withdrawal   INR       user_name required max 64; bank_no required digits
                          max 30; bank_ifsc required size 11 regex ^[A-Z]{4}0[A-Z0-9]{6}$;
                          bank_name optional max 100
  1102 Philippines E-Wallet  PHP    wallet_type select of strings (GCASH, MAYA) required;
                          bank_no (mobile) required digits size 11; user_name required max 64

Notifications.  settle_after_s after an order is accepted (null: only through
/_mock/fiat_gateway/settle) it settles to settle_outcome, except when user_name or
bank_account starts with "FAIL" (any case): failed (the amount returns to the balance).
A daemon thread then POSTs Content-Type application/json to the order's notify_url:
  {"uid","orderid","transactionid","amount","status","timestamp","sign"}
all values strings: amount exactly as the order sent it, status "success" or "failed",
timestamp 10-digit seconds when the notification was built, sign by the MD5 rule above
over the other six (non-empty) fields.  With notify_processing a "processing"
notification is queued as soon as the order is accepted (it may arrive before the
/applyfor reply).  The same bytes are re-sent until a reply is HTTP 200 whose body,
stripped, is "success" (any case): one attempt, then one retry after each of
notify_retry_delays_s.

Config ("fiat_gateway" section):
  merchants            {uid: {"secret": s, "sign_mode": "amp_key"|"concat",
                        "balance": "1000000.00", "single_min"?, "single_limit"?,
                        "daily_limit"?}}  (limits: decimal strings)
  timestamp_window_s   300
  form_rules           {pay_code: {"name","description","currencies"?,"form_fields"}}
  settle_after_s       1.0 (null: manual only)
  settle_outcome       "success" | "failed"
  notify_processing    false
  notify_retry_delays_s [1, 2, 4, 8, 16, 32]
  notify_timeout_s     5
  bad_response_sign    false   replies carry a wrong sign (fault injection)
  unsigned_response    false   replies carry no sign
  sign_rule_answers    false   formRule success replies carry a sign too
  result_as_string     false   a success's result is the JSON text of the object
  notify_numbers       false   notifications send transactionid, amount, timestamp as
                               JSON numbers
  notify_extra         {}      fields added to every notification (signed too)

Control (served by the core under /_mock/fiat_gateway/):
  POST /settle {"orderid", "status": "success"|"failed"[, "uid", "force"]}  settle now and
               notify; already settled -> 409 unless force -> {"ok","order","notification_id"}
  POST /resend {"orderid"[, "uid"]}   send a settled order's final notification again
  POST /notify {"url", "body": raw string[, "content_type", "retry"]}  post anything, or
               {"uid", "fields": {...}[, "url", "sign_ok": bool, "retry"]}: the mock adds
               "sign" (wrong when sign_ok is false) unless fields has one; url defaults
               to the notify_url of fields.orderid -> {"ok", "notification_id"}
  GET  /notifications[?orderid=]   every notification: id, kind (settle|processing|
               resend|forged), uid, orderid, url, body, acked, done, attempts [{t,
               http_status, reply, error, ok}]
  GET  /orders[?uid=]              every accepted order
Log fields: api_key (the uid), requestId (orderid), ret_code, sig_ok, executed.
"""

import hashlib
import json
import re
import time
from collections import Counter
from decimal import Decimal

from delivery import Courier, ScheduledProvider

NAME = "fiat_gateway"

KOREA_BANKS = [{"bankID": 1001, "name": "KB Kookmin Bank"}, {"bankID": 1002, "name": "Shinhan Bank"},
               {"bankID": 1003, "name": "Woori Bank"}]


def _field(name, label, ftype, required, max_length, placeholder, options, rules):
    return {"name": name, "label": label, "type": ftype, "required": required, "max_length": max_length,
            "placeholder": placeholder, "options": options, "validation_rules": rules}


DEFAULT_RULES = {
    "1004": {"name": "Korea Withdrawal", "description": "Withdrawal through Korea payment",
             "currencies": ["KRW", "VND"], "form_fields": [
                 _field("bank_id", "Bank ID", "select", True, 100, "Please select Bank ID", KOREA_BANKS,
                        ["required", "integer"]),
                 _field("bank_account", "Account Holder Name", "input", True, 50,
                        "Please enter account holder name", None, ["required", "string", "max:50"]),
                 _field("bank_no", "Bank Account Number", "input", True, 30, "Please enter bank account number",
                        None, ["required", "string", "digits", "max:30"])]},
    "812": {"name": "India Withdrawal", "description": "Withdrawal through India IMPS",
            "currencies": ["INR"], "form_fields": [
                _field("user_name", "Beneficiary Name", "input", True, 64, "Please enter beneficiary name", None,
                       ["required", "string", "max:64"]),
                _field("bank_no", "Bank Account Number", "input", True, 30, "Please enter bank account number",
                       None, ["required", "string", "digits", "max:30"]),
                _field("bank_ifsc", "IFSC", "input", True, 11, "Please enter IFSC code", None,
                       ["required", "string", "size:11", "regex:^[A-Z]{4}0[A-Z0-9]{6}$"]),
                _field("bank_name", "Bank Name", "input", False, 100, "Please enter bank name", None,
                       ["string", "max:100"])]},
    "1102": {"name": "Philippines E-Wallet", "description": "Withdrawal to a Philippine e-wallet",
             "currencies": ["PHP"], "form_fields": [
                 _field("wallet_type", "Wallet", "select", True, 20, "Please select wallet",
                        [{"value": "GCASH", "name": "GCash"}, {"value": "MAYA", "name": "Maya"}],
                        ["required", "string", "in:GCASH,MAYA"]),
                 _field("bank_no", "Mobile Number", "input", True, 11, "Please enter mobile number", None,
                        ["required", "string", "digits", "size:11"]),
                 _field("user_name", "Account Name", "input", True, 64, "Please enter account name", None,
                        ["required", "string", "max:64"])]},
}

DEFAULT_CONFIG = {
    "merchants": {},
    "timestamp_window_s": 300,
    "form_rules": DEFAULT_RULES,
    "settle_after_s": 1.0,
    "settle_outcome": "success",
    "notify_processing": False,
    "notify_retry_delays_s": [1, 2, 4, 8, 16, 32],
    "notify_timeout_s": 5,
    "bad_response_sign": False,
    "unsigned_response": False,
    "sign_rule_answers": False,
    "result_as_string": False,
    "notify_numbers": False,
    "notify_extra": {},
}

STATS = ("executed", "duplicates_refused", "bad_signatures", "bad_timestamps", "validation_errors",
         "request_errors", "amount_errors", "bank_errors", "limit_errors", "insufficient_balance",
         "form_rules_served", "settled", "notifications_sent", "notify_attempts", "notifications_acked",
         "notifications_failed")

APPLY_PATH = "/applyfor"
RULE_PATH = "/channel/formRule"
FIRST_TXN = 800000000
AMOUNT_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
DEC_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
TS_RE = re.compile(r"[0-9]{10}")
URL_RE = re.compile(r"https?://[^\s/?#]+[^\s]*")
APPLY_REQUIRED = ("currency", "orderid", "notify_url", "amount", "userip", "pay_code")
RULE_REQUIRED = ("currency", "pay_code", "userip")
MSGS = {10000: "success", 10001: "Parameter error", 10002: "Signature verification failed",
        10003: "Duplicate order number", 10004: "Amount format error", 10005: "Bank ID does not exist",
        10006: "Insufficient balance", 10007: "Withdrawal limit exceeded"}


# -- signing (independent of src/) ------------------------------------------------------

class Num(str):
    """A JSON number, kept as its literal text."""


def plain(v):
    """The text of a scalar in the string to sign; None for null."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    return str(v)


def string_a(params):
    """k=v&... over every non-empty parameter but sign, keys in byte order."""
    items = [(k, plain(v)) for k, v in params.items() if k != "sign"]
    items = [(k, v) for k, v in items if v is not None and v != ""]
    items.sort(key=lambda kv: kv[0].encode("utf-8"))
    return "&".join(f"{k}={v}" for k, v in items)


def sign(secret, params, mode="amp_key"):
    """Uppercase hex MD5 of stringA + "&key=" + secret (amp_key) or stringA + secret (concat)."""
    text = string_a(params) + ("&key=" + secret if mode == "amp_key" else secret)
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def response_params(reply):
    """The parameters a reply's sign covers: top-level scalars but sign, plus result's scalars."""
    out = {k: v for k, v in reply.items() if k not in ("sign", "result") and not isinstance(v, (dict, list))}
    res = reply.get("result")
    if isinstance(res, dict):
        out.update({k: v for k, v in res.items() if not isinstance(v, (dict, list))})
    return out


# -- config ---------------------------------------------------------------------------------

def _is_dec(v):
    return isinstance(v, str) and DEC_RE.fullmatch(v) is not None


def check_rule(code, rule):
    if not isinstance(rule, dict) or not isinstance(rule.get("name"), str) \
            or not isinstance(rule.get("description", ""), str) or not isinstance(rule.get("form_fields"), list):
        raise ValueError(f"fiat_gateway.form_rules.{code} needs name, description and form_fields")
    cur = rule.get("currencies")
    if cur is not None and (not isinstance(cur, list) or not all(isinstance(c, str) for c in cur)):
        raise ValueError(f"fiat_gateway.form_rules.{code}.currencies must be a list of strings")
    for f in rule["form_fields"]:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"]:
            raise ValueError(f"fiat_gateway.form_rules.{code}: every form field needs a name")
        if not isinstance(f.get("required", False), bool):
            raise ValueError(f"fiat_gateway.form_rules.{code}.{f['name']}.required must be a boolean")
        ml = f.get("max_length")
        if ml is not None and (not isinstance(ml, int) or isinstance(ml, bool) or ml < 1):
            raise ValueError(f"fiat_gateway.form_rules.{code}.{f['name']}.max_length must be an integer >= 1")
        opts = f.get("options")
        if opts is not None and (not isinstance(opts, list) or not all(isinstance(o, dict) for o in opts)):
            raise ValueError(f"fiat_gateway.form_rules.{code}.{f['name']}.options must be a list of objects")
        vr = f.get("validation_rules", [])
        if not isinstance(vr, list) or not all(isinstance(r, str) for r in vr):
            raise ValueError(f"fiat_gateway.form_rules.{code}.{f['name']}.validation_rules must be strings")
        for r in vr:
            if r.startswith("regex:"):
                try:
                    re.compile(r[6:])
                except re.error as e:
                    raise ValueError(f"fiat_gateway.form_rules.{code}.{f['name']}: bad regex: {e}")


def check_config(cfg):
    """Raise ValueError if the fiat_gateway config cannot be used."""
    m = cfg.get("merchants")
    if not isinstance(m, dict):
        raise ValueError("fiat_gateway.merchants must be an object")
    for uid, mc in m.items():
        if not isinstance(mc, dict) or not isinstance(mc.get("secret"), str) or not mc["secret"]:
            raise ValueError(f"fiat_gateway.merchants.{uid} needs a non-empty secret")
        if mc.get("sign_mode", "amp_key") not in ("amp_key", "concat"):
            raise ValueError(f"fiat_gateway.merchants.{uid}.sign_mode must be amp_key or concat")
        for k in ("balance", "single_min", "single_limit", "daily_limit"):
            if mc.get(k) is not None and not _is_dec(mc[k]):
                raise ValueError(f"fiat_gateway.merchants.{uid}.{k} must be a decimal string")
    rules = cfg.get("form_rules")
    if not isinstance(rules, dict):
        raise ValueError("fiat_gateway.form_rules must be an object")
    for code, rule in rules.items():
        check_rule(code, rule)
    for k, allow_null in (("timestamp_window_s", False), ("settle_after_s", True), ("notify_timeout_s", False)):
        v = cfg.get(k)
        if not (v is None and allow_null) and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
            raise ValueError(f"fiat_gateway.{k} must be a number >= 0")
    if cfg.get("settle_outcome") not in ("success", "failed"):
        raise ValueError("fiat_gateway.settle_outcome must be success or failed")
    if not isinstance(cfg.get("notify_extra"), dict):
        raise ValueError("fiat_gateway.notify_extra must be an object")
    for k in ("notify_processing", "bad_response_sign", "unsigned_response", "sign_rule_answers",
              "result_as_string", "notify_numbers"):
        if not isinstance(cfg.get(k), bool):
            raise ValueError(f"fiat_gateway.{k} must be a boolean")
    d = cfg.get("notify_retry_delays_s")
    if not isinstance(d, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0
                                          for x in d):
        raise ValueError("fiat_gateway.notify_retry_delays_s must be a list of numbers >= 0")


# -- helpers ------------------------------------------------------------------------------------

class Refusal(Exception):
    """A request answered with an error status; merchant is the signing merchant or None."""

    def __init__(self, code, detail=None, stat="validation_errors"):
        msg = MSGS[code] + (f": {detail}" if detail else "")
        super().__init__(msg)
        self.code, self.msg, self.stat = code, msg, stat


def _pairs(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"repeated key {k}")
        out[k] = v
    return out


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def parse_body(raw):
    """The JSON object in raw with numbers kept as Num, or Refusal 10001."""
    try:
        obj = json.loads(raw, parse_int=Num, parse_float=Num, parse_constant=_reject_constant,
                         object_pairs_hook=_pairs)
    except ValueError as e:
        raise Refusal(10001, f"body is not a JSON object ({e})", "request_errors")
    if not isinstance(obj, dict):
        raise Refusal(10001, "body is not a JSON object", "request_errors")
    return obj


def present(v):
    return v is not None and plain(v) != ""


# -- the provider -----------------------------------------------------------------------------

class Provider(ScheduledProvider):
    """Gateway state.  handle/peek/control/ledger/reset run under the core lock and take
    self.lock; the scheduler and notification threads take only self.lock."""

    DEFAULTS = DEFAULT_CONFIG

    def __init__(self, config, stats):
        super().__init__(config, stats, "fiat-scheduler")
        self.courier = Courier(self, "fiat-notify", ("notifications_sent", "notify_attempts",
                                                     "notifications_acked", "notifications_failed"),
                               "notify_timeout_s", "notify_retry_delays_s",
                               lambda reply: reply.strip().lower() == "success",
                               lambda d: ({"Content-Type": d["_ctype"]}, {}))
        self.reset()

    def reset(self):
        with self.lock:
            self.new_generation()
            self.orders = []            # oldest first
            self.by_key = {}            # (uid, orderid) -> order
            self.executions = Counter()  # "uid/orderid" -> times executed
            self.spent = Counter()      # uid -> Decimal held by accepted, not failed orders
            self.notes = []
            self.next_txn = FIRST_TXN

    # -- plumbing shared with the core

    def _reply(self, merchant, status, result=None, msg=None, signed=True):
        """A reply body signed with the merchant's rule (or unsigned when merchant is None,
        or signed is false: the formRule answer, as the seed's example, unless
        sign_rule_answers).  With result_as_string a success's result is the JSON text of
        the object ("Returns JSON string when status code is Success"); it is signed over
        the object's members all the same (F5)."""
        body = {"status": status}
        if msg is not None:
            body["msg"] = msg
        body["result"] = result
        covered = response_params(body)
        if self.cfg["result_as_string"] and status == 10000 and isinstance(result, dict):
            body["result"] = json.dumps(result, separators=(",", ":"))
        if merchant is not None and signed and not self.cfg["unsigned_response"]:
            s = sign(merchant["secret"], covered, merchant.get("sign_mode", "amp_key"))
            if self.cfg["bad_response_sign"]:
                s = ("0" if s[0] != "0" else "1") + s[1:]
            body["sign"] = s
        return body

    def _merchant_of(self, req):
        try:
            obj = json.loads(req.body)
        except ValueError:
            return None
        uid = obj.get("uid") if isinstance(obj, dict) else None
        return self.cfg["merchants"].get(uid) if isinstance(uid, str) else None

    def error_reply(self, req, code, msg):
        return 200, self._reply(self._merchant_of(req), code, None, msg)

    def peek(self, req):
        """Log fields for a request the core will not pass to handle()."""
        info = {"api_key": None, "requestId": None, "sig_ok": False}
        try:
            p = parse_body(req.body)
        except Refusal:
            return info
        uid, oid = p.get("uid"), p.get("orderid")
        info["api_key"] = uid if isinstance(uid, str) else None
        info["requestId"] = oid if isinstance(oid, str) else None
        m = self.cfg["merchants"].get(uid) if isinstance(uid, str) else None
        given = p.get("sign")
        if m is not None and isinstance(given, str) and \
                not any(isinstance(v, (dict, list)) for v in p.values()):
            info["sig_ok"] = sign(m["secret"], p, m.get("sign_mode", "amp_key")) == given
        return info

    def handle(self, req):
        with self.lock:
            info = {"api_key": None, "requestId": None, "ret_code": None, "sig_ok": False,
                    "executed": False}
            if req.method != "POST" or req.path not in (APPLY_PATH, RULE_PATH):
                self.stats["request_errors"] += 1
                info["ret_code"] = 10001
                return 404, {"status": 10001, "msg": f"not found: {req.method} {req.path}", "result": None}, info
            info.update(self.peek(req))
            merchant = None
            try:
                ctype = req.headers.get("Content-Type", "")
                if ctype.split(";")[0].strip().lower() != "application/json":
                    raise Refusal(10001, "Content-Type must be application/json", "request_errors")
                p = parse_body(req.body)
                uid = p.get("uid")
                if not isinstance(uid, str) or not uid:
                    raise Refusal(10001, "uid is required", "request_errors")
                merchant = self.cfg["merchants"].get(uid)
                if merchant is None:
                    raise Refusal(10001, "merchant does not exist", "request_errors")
                for k, v in p.items():
                    if isinstance(v, (dict, list)):
                        raise Refusal(10001, f"{k} must be a string or number", "request_errors")
                if not isinstance(p.get("sign"), str) or not p["sign"]:
                    raise Refusal(10001, "sign is required", "request_errors")
                if sign(merchant["secret"], p, merchant.get("sign_mode", "amp_key")) != p["sign"]:
                    raise Refusal(10002, None, "bad_signatures")
                self._check_timestamp(p)
                if req.path == RULE_PATH:
                    body = self._form_rule(merchant, p)
                else:
                    body = self._apply(req, uid, merchant, p, info)
            except Refusal as r:
                if r.stat:
                    self.stats[r.stat] += 1
                body = self._reply(merchant, r.code, None, r.msg)
            info["ret_code"] = body["status"]
            return 200, body, info

    # -- checks

    def _check_timestamp(self, p):
        ts = p.get("timestamp")
        if not present(ts):
            raise Refusal(10001, "timestamp is required")
        text = plain(ts)
        if isinstance(ts, bool) or not TS_RE.fullmatch(text):
            raise Refusal(10001, "timestamp must be 10-digit Unix seconds", "bad_timestamps")
        if abs(int(text) - time.time()) > self.cfg["timestamp_window_s"]:
            raise Refusal(10001, "timestamp expired", "bad_timestamps")

    def _rule(self, p):
        code = plain(p["pay_code"])
        rule = self.cfg["form_rules"].get(code)
        if rule is None:
            raise Refusal(10001, "pay_code not supported")
        cur = rule.get("currencies")
        if cur is not None and plain(p["currency"]) not in cur:
            raise Refusal(10001, f"currency {plain(p['currency'])} not supported by pay_code {code}")
        return code, rule

    @staticmethod
    def _require(p, names):
        for k in names:
            if not present(p.get(k)):
                raise Refusal(10001, f"{k} is required")

    def _check_field(self, f, p):
        """Enforce one form field of the rule on the request params."""
        name = f["name"]
        v = p.get(name)
        if not present(v):
            if f.get("required") or "required" in f.get("validation_rules", []):
                raise Refusal(10001, f"{name} is required")
            return
        text = plain(v)
        opts = f.get("options")
        if opts:
            if name == "bank_id":
                ok = DEC_RE.fullmatch(text) is not None and "." not in text and \
                    any(str(o.get("bankID")) == str(int(text)) for o in opts)
                if not ok:
                    raise Refusal(10005, f"bank_id {text}", "bank_errors")
            elif not any(plain(o.get("value")) == text for o in opts):
                raise Refusal(10001, f"{name} must be one of its options")
        ml = f.get("max_length")
        if ml is not None and len(text) > ml:
            raise Refusal(10001, f"{name} is longer than {ml}")
        for rule in f.get("validation_rules", []):
            kind, _, arg = rule.partition(":")
            bad = False
            if kind == "string":
                bad = not isinstance(v, str) or isinstance(v, Num)
            elif kind == "integer":
                bad = isinstance(v, bool) or not re.fullmatch(r"-?[0-9]+", text)
            elif kind == "digits":
                bad = not re.fullmatch(r"[0-9]+", text)
            elif kind == "max":
                bad = len(text) > int(arg)
            elif kind == "min":
                bad = len(text) < int(arg)
            elif kind == "size":
                bad = len(text) != int(arg)
            elif kind == "in":
                bad = text not in arg.split(",")
            elif kind == "regex":
                bad = re.fullmatch(arg, text) is None
            if bad:
                raise Refusal(10001, f"{name} fails {rule}")

    # -- endpoints

    def _form_rule(self, merchant, p):
        self._require(p, RULE_REQUIRED)
        code, rule = self._rule(p)
        self.stats["form_rules_served"] += 1
        data = {"pay_code": code, "name": rule["name"], "description": rule.get("description", ""),
                "form_fields": rule["form_fields"]}
        return self._reply(merchant, 10000, {"data": data}, signed=self.cfg["sign_rule_answers"])

    def _apply(self, req, uid, merchant, p, info):
        self._require(p, APPLY_REQUIRED)
        oid = plain(p["orderid"])
        if len(oid) > 64:
            raise Refusal(10001, "orderid is longer than 64")
        if not isinstance(p["notify_url"], str) or not URL_RE.fullmatch(p["notify_url"]):
            raise Refusal(10001, "notify_url must be an http(s) URL")
        # seed: "amount string ... accepts two decimal places"; "Pay attention to decimal
        # places based on different channels": at most the rule's "decimals" (F7: 2)
        amount_text = plain(p["amount"])
        code, rule = self._rule(p)
        places = rule.get("decimals", 2)
        frac = amount_text.partition(".")[2]
        if isinstance(p["amount"], bool) or not AMOUNT_RE.fullmatch(amount_text) or len(frac) > places \
                or Decimal(amount_text) <= 0:
            raise Refusal(10004, f"amount must be a positive number with at most {places} decimals",
                          "amount_errors")
        amount = Decimal(amount_text)
        # seed: "bank_id No int" -- a JSON integer (F8: a string is refused)
        if "bank_id" in p and p["bank_id"] is not None and not (isinstance(p["bank_id"], Num)
                                                               and re.fullmatch(r"[0-9]+", p["bank_id"])):
            raise Refusal(10001, "bank_id must be an int")
        fields = rule["form_fields"]
        for f in sorted(fields, key=lambda f: f["name"] != "bank_id"):    # bank_id (10005) first
            self._check_field(f, p)
        if (uid, oid) in self.by_key:
            self.stats["duplicates_refused"] += 1
            raise Refusal(10003, f"orderid {oid}", None)
        lo, hi, daily = merchant.get("single_min"), merchant.get("single_limit"), merchant.get("daily_limit")
        if (lo is not None and amount < Decimal(lo)) or (hi is not None and amount > Decimal(hi)):
            raise Refusal(10007, "single withdrawal limit", "limit_errors")
        if daily is not None:
            today = time.strftime("%Y-%m-%d", time.gmtime(req.t))
            used = sum((Decimal(o["amount"]) for o in self.orders
                        if o["uid"] == uid and o["day"] == today and o["status"] != "failed"), Decimal(0))
            if used + amount > Decimal(daily):
                raise Refusal(10007, "daily withdrawal limit", "limit_errors")
        bal = merchant.get("balance")
        if bal is not None and self.spent[uid] + amount > Decimal(bal):
            raise Refusal(10006, None, "insufficient_balance")
        self.spent[uid] += amount
        txn = str(self.next_txn + 1)
        self.next_txn += 1
        extra = {k: plain(v) for k, v in p.items() if k not in ("sign",) and present(v)}
        o = {"uid": uid, "orderid": oid, "transactionid": txn, "amount": amount_text,
             "currency": plain(p["currency"]), "pay_code": code, "notify_url": p["notify_url"],
             "status": "processing", "params": extra, "created_at": req.t,
             "day": time.strftime("%Y-%m-%d", time.gmtime(req.t)), "settled_at": None}
        self.orders.append(o)
        self.by_key[(uid, oid)] = o
        self.executions[f"{uid}/{oid}"] += 1
        self.stats["executed"] += 1
        info["executed"] = True
        if self.cfg["notify_processing"]:
            self._queue_note(o, "processing", "processing")
        delay = self.cfg.get("settle_after_s")
        if delay is not None:
            who = (extra.get("user_name", "") + "|" + extra.get("bank_account", "")).lower()
            outcome = "failed" if who.startswith("fail") or "|fail" in who else self.cfg["settle_outcome"]
            self.sched.add(delay, self._auto_settle, o, outcome, self.gen)
        return self._reply(merchant, 10000, {"transactionid": txn})

    # -- settlement and notifications (scheduler thread or control, self.lock held)

    def _auto_settle(self, o, outcome, gen):
        if gen == self.gen and o["status"] == "processing":
            self._settle(o, outcome)

    def _settle(self, o, outcome):
        if outcome == "failed" and o["status"] != "failed":
            self.spent[o["uid"]] -= Decimal(o["amount"])
        elif outcome == "success" and o["status"] == "failed":
            self.spent[o["uid"]] += Decimal(o["amount"])
        o["status"] = outcome
        o["settled_at"] = time.time()
        self.stats["settled"] += 1
        return self._queue_note(o, outcome, "settle")

    def _note_body(self, o, status):
        m = self._c("merchants").get(o["uid"])
        # F12: the seed shows no notification; these fields are the /applyfor ones
        fields = {"uid": o["uid"], "orderid": o["orderid"], "transactionid": o["transactionid"],
                  "amount": o["amount"], "status": status, "timestamp": str(int(time.time()))}
        if self.cfg["notify_numbers"]:      # F12: numbers as JSON numbers
            for k in ("transactionid", "amount", "timestamp"):
                fields[k] = Num(fields[k])
        fields.update(self.cfg["notify_extra"])
        if m is not None:
            fields["sign"] = sign(m["secret"], fields, m.get("sign_mode", "amp_key"))
        return ("{" + ",".join(f"{json.dumps(k)}:{v if isinstance(v, Num) else json.dumps(v)}"
                               for k, v in fields.items()) + "}").encode("utf-8")

    def _queue_note(self, o, status, kind):
        body = self._note_body(o, status)
        o.setdefault("_bodies", {})[status] = body
        return self._new_note(kind, o["uid"], o["orderid"], o["notify_url"], body, "application/json", True)

    def _new_note(self, kind, uid, oid, url, body, ctype, retry):
        d = {"id": len(self.notes) + 1, "kind": kind, "uid": uid, "orderid": oid, "url": url,
             "body": body.decode("utf-8", "replace"), "_body": body, "_ctype": ctype, "_retry": retry,
             "acked": False, "done": False, "attempts": [], "created_at": time.time()}
        self.notes.append(d)
        return self.courier.send(d)

    # -- control (/_mock/fiat_gateway/...)

    def _find(self, obj):
        oid = obj.get("orderid")
        if not isinstance(oid, str) or not oid:
            raise ValueError("orderid must be a non-empty string")
        uid = obj.get("uid")
        hits = [o for (u, i), o in self.by_key.items() if i == oid and (uid is None or u == uid)]
        if len(hits) > 1:
            raise ValueError("orderid used by several merchants: give uid")
        return hits[0] if hits else None

    @staticmethod
    def _view(o):
        return {k: v for k, v in o.items() if not k.startswith("_")}

    def control(self, method, path, params, obj):
        """Provider control endpoints; returns (status, JSON body); ValueError -> 400."""
        with self.lock:
            if not isinstance(obj, dict):
                raise ValueError("body must be a JSON object")
            if method == "POST" and path == "/settle":
                status = obj.get("status")
                if status not in ("success", "failed"):
                    raise ValueError("status must be success or failed")
                o = self._find(obj)
                if o is None:
                    return 404, {"ok": False, "error": "no such order"}
                if o["status"] != "processing" and not obj.get("force"):
                    return 409, {"ok": False, "error": f"already settled ({o['status']})", "order": self._view(o)}
                nid = self._settle(o, status)
                return 200, {"ok": True, "order": self._view(o), "notification_id": nid}
            if method == "POST" and path == "/resend":
                o = self._find(obj)
                if o is None:
                    return 404, {"ok": False, "error": "no such order"}
                if o["status"] == "processing":
                    return 409, {"ok": False, "error": "not settled yet"}
                body = o["_bodies"][o["status"]]
                return 200, {"ok": True, "notification_id": self._new_note(
                    "resend", o["uid"], o["orderid"], o["notify_url"], body, "application/json", True)}
            if method == "POST" and path == "/notify":
                retry = bool(obj.get("retry", False))
                url = obj.get("url")
                if "body" in obj:
                    body = obj["body"]
                    if not isinstance(body, str):
                        raise ValueError("body must be a string (the raw notification body)")
                    ctype = obj.get("content_type", "application/json")
                    if not isinstance(url, str) or not URL_RE.fullmatch(url):
                        raise ValueError("url must be an http(s) URL")
                    return 200, {"ok": True, "notification_id": self._new_note(
                        "forged", None, None, url, body.encode("utf-8"), ctype, retry)}
                fields = obj.get("fields")
                if not isinstance(fields, dict):
                    raise ValueError("give body (raw string) or fields (object)")
                uid = obj.get("uid", fields.get("uid"))
                m = self.cfg["merchants"].get(uid) if isinstance(uid, str) else None
                if m is None:
                    raise ValueError("uid must name a configured merchant")
                fields = dict(fields)
                if "sign" not in fields:
                    secret = m["secret"] if obj.get("sign_ok", True) else "wrong-" + m["secret"]
                    fields["sign"] = sign(secret, fields, m.get("sign_mode", "amp_key"))
                oid = fields.get("orderid")
                if url is None and isinstance(oid, str):
                    o = self.by_key.get((uid, oid))
                    url = o["notify_url"] if o else None
                if not isinstance(url, str) or not URL_RE.fullmatch(url):
                    raise ValueError("url must be an http(s) URL (or fields.orderid a known order)")
                body = json.dumps(fields).encode("utf-8")
                return 200, {"ok": True, "notification_id": self._new_note(
                    "forged", uid, oid if isinstance(oid, str) else None, url, body, "application/json", retry)}
            if method == "GET" and path == "/notifications":
                oid = params.get("orderid")
                return 200, [{k: v for k, v in d.items() if not k.startswith("_")} for d in self.notes
                             if oid is None or d["orderid"] == oid]
            if method == "GET" and path == "/orders":
                uid = params.get("uid")
                return 200, [self._view(o) for o in self.orders if uid is None or o["uid"] == uid]
            return 404, {"ok": False, "error": f"no control endpoint {method} /_mock/{NAME}{path}"}

    def ledger(self):
        with self.lock:
            public = ("uid", "orderid", "transactionid", "amount", "currency", "pay_code", "status",
                      "notify_url", "created_at", "settled_at")
            bal = {}
            for uid, m in self.cfg["merchants"].items():
                if m.get("balance") is not None:
                    left = Decimal(m["balance"]) - self.spent[uid]
                    bal[uid] = f"{left:.2f}"
            return {"executions": dict(self.executions),
                    "withdrawals": [{k: o[k] for k in public} for o in self.orders],
                    "balances": bal}
