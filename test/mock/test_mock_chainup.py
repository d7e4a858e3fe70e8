#!/usr/bin/env python3
"""
test_mock_chainup.py - self-test of the chainup mock (/usr/bin/python3 test/mock/test_mock_chainup.py).

Starts mock_provider.py on a free port (selftest.run_mock) with make_config(), plus
a small merchant server of its own (second-confirmation and notification endpoints),
and checks:
  - the published vectors (seed 001 / providers.md 1.3) with the test's own envelope
    code (raw RSA on python ints, no CRT, written apart from chainup.py) and with the
    mock's: GCJBk77n... is the demo $pri_key applied to the registerEmail request,
    k4w5AijeFWF3... and UoJC0VeVSvdO... (3 blocks) open with the demo $pub_key;
  - strict opening (bad padding, wrong key, bad length refused; 245-byte chunks, +/
    and '=' tolerated) and key formats (PEM, bare base64 DER, PKCS#1);
  - over HTTP: create -> second confirmation -> accepted; every way a confirmation
    can fail -> 120206 (refused in the ledger, request_id still free); the lock is
    released during the confirmation (the merchant calls the mock meanwhile, a
    duplicate in flight gets 110088); duplicates -> 110088; the plain 100015/100005/
    100004 errors; field validation; withdrawList (101 ids -> 100004, GET, isolation,
    exact fields); syncWithdrawList paging by max_id over 105 records; status
    progression with notifications (strings, retried until SUCCESS, abandoned);
    address-prefix outcomes; forced statuses; deposits; the envelope and keys control
    endpoints; faults; the request log; reset; a clean SIGTERM.
run(port, check, section, merchant) is the section a combined runner could call.
Prints one line per check; exits 0 when all pass, 1 otherwise.
"""

import base64
import json
import os
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlencode

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import chainup  # noqa: E402  (only for the unit checks of its envelope functions)
from selftest import MockClient, check, run_mock, section, start_server, wait_for  # noqa: E402

PREFIX = "/chainup/api/v2/billing"
WITHDRAW, LIST, SYNC = PREFIX + "/withdraw", PREFIX + "/withdrawList", PREFIX + "/syncWithdrawList"
FIRST_ID = 48680

# -- published demo keys and vectors (providers.md "ChainUp demo keys", seed 001) ----------

DEMO_PRI = ("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQD6YNILWOJZjS6FQQ9ZL9CEKcWZTTldrDLsxP"
            "2dQME7hSUTDQ5AosBUZk18Uq212SC2+L0UA9G6WPoCNzHCB8TP25jC+EwIkHMN4EEPRs+bEHUgX3Bq3oR2SCHj"
            "EiqleTFW2kO/oS6Vg9bhTST5MFaEnA0fc2Bh3+4iRus+5mVc6ux0lG55f1qmvUNM4hhP7qVpzc3X0xFA0Slu8d"
            "yel1dbOUQlJbUkrt5NzXXqmRoP5UVHUCXPZzH1kbxdbGA58TonXceh6DHQRa6pIBNaQ6BfnqhMvGVvuIqKPrdW"
            "q8yigvTw2zqBfwCwY3/3FZoI5ICQ8oS3GRHYP/rXzncqkKTzAgMBAAECggEAdag77EMnkueKXeo12TZj6Udr6N"
            "9mPsOl5qenelcsttiZlHtFIFCays6MSQjdQqA3BGSdDaPB0azwR0xCoKhf70GFZtGhgUDIIFQqnpArDPZN5BmV"
            "TVMlsiOxcPBfhAUQj3zf61RF/NLIjnVfE46IiaZ/cDEasMO3NvpWn+dK6L86zklgwHfC5IXTFnFRVA3bWkAQ3g"
            "swhLzjs50HNoNV96fsnbt1n7NSWhyz9B8hGMV+qYz1NGmb+VsaAune+oIv28krcaqf+Doah37rCmzEgVeZZ1/f"
            "lPFOXpaq1eGJDgbLu6FbbgqfabCBlhmuzuwNbDl/2T/U9U6JoQWGR7t++QKBgQD8XSzBqpWwz8ebfsPipvnhIu"
            "gbHgBnwLaRc3/xieuNuiDMsYPY1isBWSeYqjwV5uTad9s9dRxb6OOMH+KChkUxkYhEvoujUulGSuO4MxJlWl99"
            "WWEsbLzefubBD0zyHo5daHbPPXO8UPMu/SfiYxT2D5wsW2/swUqHWS3AmDS9RQKBgQD9/FJC/++DLyhU60Q9vr"
            "VY50zQTyPLtPnuIxbsPXB1Exo1wKe+LC02k9Cub9f5EFViTEniWRasB7ecnDxJT/ISU+hJjMUKFuaHueb7dO6w"
            "iIqyfpJeQM/4fKalBQI+nCEh3aceNKP44mk/lv2x22+P47EAKh7yqBdEVUv5GlHw1wKBgQCbAqReJOijXU0vLt"
            "MlYgj0h9tn5Kq9D/tUJky9UUkVmfFRqevhgdOSlW+j71TO4y9JHfvVqRyNO+ShCmi4Yb8Yrlq0VxIwdNoCqjdr"
            "yjsPdE5ZEVCF2Bi+1dXpWfuacLhjman4q7duQY7OGwOno9KZPYdhG50JIMUlk9pthVBHvQKBgCXUC+iAuAqg3m"
            "/vboWHvvjT0mQANYOkm8j1HvfmmrZFNxUkcZdoev9y+pTQgalN3nm6hRKaVD8hEx7XQj9lEdfa+XDi74H2MTWr"
            "4ZQ4MUjHvWiiY2h4XMFUx3kyisgKdwDVQ4vDKVzrU+OtuHFiDnau4fD1VRCtKnH6Bku+uM+XAoGAB7V/OFlk7g"
            "aX7gne7p+DypXICn1oGE46aFLsDciOyePNovYg6bfdiUB9evwFSijiHq7eldZIQSRIdUalL1qfv2zDwFmEGpSd"
            "/RZYOOv21c3eISjln6W7ZGtumtLHx2nGpC072i5vNee0aAPEdvO0h3y4gvzad5L4KwIwyHifKic=")
DEMO_PUB = ("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAua4XMw/W9BxyZhirTlNau5Y/tdAHkPsbZo58Cdz1By"
            "eRX8RwOibpREDZLTwhMTZGroqWEAZ+efQhx0gez++03Sw6IsPWPDpzpM90ezn2gBqPog7jxQA+M0E32gMHWB5y"
            "gplPwQkGz/qGYeJ5qhp2OZ8O+jFqOJNi7ob1hE2QsPT118HIhUzTL77urD61BovI+jg9Rx6PGAqlFLLmfXToqD"
            "ulLkYVKhhQlL7ii6iuzIXgl46mbmvH2RXJRq083sa9b9J1z/WzXxNaHNpq5USl3ifTTyD/IiOKnblA7f4KJmr9"
            "rcMFbAP1mNxz95at6hPBvqGypPqqixxPBrdkOIPUVwIDAQAB")
VEC_REQUEST_PLAIN = ('{"charset":"utf-8","sign":"","time":"1586415718222",'
                     '"app_id":"baaceb1e506e1b5d7d1f0a3b1622583b","version":"2.0",'
                     '"email":"hicointest111.@qq.com"}')
VEC_REQUEST = ("GCJBk77n7epyOexdGZ20qvukd321TpJ62lIAtlCinW6TzHx8SIbm6evXGulO87UgLTzIWCtgupgeLJKDdZmC7m"
               "suPNBGK--Ec27WZXjuhI0gNWXcOVk5RW_VRVcyfJ1Ml-DMW8XVxZRgA2U1bt9BztiyfryzMGj8_jl1IXd5sOQf"
               "PYXulCdm70WyTJpjsDkuMSov6QUmOn-C_-HUoZ7s715EMeZ60D09uUsF0i6mKLhFZTEQZPGPeJITYSJNddAw7n"
               "vqvX2KzNc6YUeCQhEmU1Dfxp65W4e3SVOgpd_2Q-dLN1MpOlkUKwbmbpb-gEh_s68yl7ox6WSgKfCK4i_uvA")
VEC_RESPONSE = ("k4w5AijeFWF3AtYbgP1RYfej7ifW4R663pOt5bhQp8RIxFUVb6zKOy4snKukA_5T9DVwhjdhsHjSRpmxD5LwL2"
                "OtplwSUACRPnW39ANypjO5YeMJTpiY9_7jofZWYzAMB4gdkrAI3DAbvkjCFUKQIXfAGMl25sp05mdBZgfY1oEt"
                "veSyislYOwaLM3SfN_2bFvrKy7E2V0AkZhrYImKiCzmDZvE-i93cePVQ4ODiuusHgk1vH5QgvPv62Sh-xxQPb4"
                "TsWj2G_RBoo9dFlg4zbWOdb9z6SVzR86ouxKOX_RhE4vWsReVD4ukdsW8eO7SVCI74qc61hIS12X6u-Hv40g")
VEC_RESPONSE_PLAIN = '{"code":"0","data":{"withdraw_type":1,"id":48680,"status":0},"msg":"成功"}'
VEC_NOTIFY = ("UoJC0VeVSvdOCYbkUIQxnJ2k-MINFmdfhHo1bpgK1kqcCKEZ1MtBFmvMnrZsmpQKVyNbFyBmLHzOk_T5FTxKA0"
              "VROneKR4wyK0G6HPQM6pDeSz2BPwwaw-2uiBSiPeQEwOabWl0MLyoJyj1g4VLcBgazCYeD5YPJXFOzjAEgkhfb"
              "MEcoS1to_ooISnIMeQvhj8g3I3m5k519eJ9KWOv5R3_EGMaI-yLlCB5CIVd4byjnBxDJxsRMR7yuEhIjfvsy49"
              "MgglSTrddCFu3ZHNwGlv_DzTJIMhJHRV7z4x8YQV2atP-BBgY9eozPa0JIkjBctdqigvzJs5nsbl76wL5Gv5-i"
              "cGv4qtOF0w11t0oPi051Y7fiuPJ20BK6GAPEu_HroTvcWh-3vh2_U03Donv306HMvC-vXrQH18TGVqjtOlVhQW"
              "_wg4PF9fjMgNCsk3k57vzVfuRruurLv6-FD6HRvoUe4WfgSAi-jMRpuwXC8mL44r-dLDfo4wUdrjEk8tkjSZea"
              "8O066bJeVVUU3rD7qqL32Uf-3Bkcy26jsHLf-QK8oYi2xjddd2PSoHnpSIbRdDYrYLdO_zUFZudg4FBHFzQ6sS"
              "LesS_jA63xJZS1xk6EjejaSpID3r-7YXDQtM3y5O1TG3URmF5sVbWL5iekubN2jEjkQ2QdV4hz0sBdmlx8GrPU"
              "WSnbtLMV7zcxAhyodzIeWeeZCKeu1AF903YJvKZls8eKMEvd__PYSnnRtXVxNUvFFo-GL3sOtDAAhjKdLLSWCV"
              "GqDQsKSrORffejbDeHVGsmtFxPC5kvKHLbJvAW6QDzpG8hqmZLrtjxvTmcVMt1_hn9-VSi-qFW8xPorYmF5Hw1"
              "G5nZca7NK5k2Qs6xieNgw34Sps-tj38WxhXacRwlEp1Yt3Jj3BlMlxCD9VWxWO17Yvj3MmJTNgf-d22PvPV_mZ"
              "rJaqjm6BSfuz9DVYVjsIuZF_eOgMaVTm31FFuFZvPF9G_lhC4CQ0Zb5KfpYx0NMJjGfBPtxZ3MsF8H")
VEC_NOTIFY_PLAIN = ('{"withdraw_fee":"0.0000001","charset":"utf-8","symbol":"ETH","side":"deposit",'
                    '"notify_time":"1586418894616","amount":"222,0000022111","real_fee":"0",'
                    '"sign":"","address_to":"0x754b0c610e011d0d40c810ef857b4dd989a67332",'
                    '"txid":"1234","created_at":"2020-02-28 12:21:11","confirmations":"1",'
                    '"version":"2.0","uid":"3529218","withdraw_fee_symbol":"ETH","fee_symbol":"ETH",'
                    '"updated_at":"2020-02-28 12:21:11","time":"1586421264161","id":"1",'
                    '"app_id":"baaceb1e506e1b5d7d1f0a3b1622583b","status":"1"}')

RECORD_FIELDS = ["request_id", "id", "uid", "symbol", "amount", "withdraw_fee_symbol", "withdraw_fee",
                 "fee_symbol", "real_fee", "created_at", "updated_at", "address_from", "address_to",
                 "txid", "confirmations", "saas_status", "company_status", "status"]
NOTIFY_FIELDS = ["charset", "version", "side", "notify_time", "request_id", "id", "uid", "symbol",
                 "amount", "withdraw_fee_symbol", "withdraw_fee", "fee_symbol", "real_fee", "address_to",
                 "created_at", "updated_at", "txid", "confirmations", "status"]
CONFIRM_FIELDS = {"time", "charset", "version", "request_id", "from_uid", "to_address", "amount",
                  "symbol", "check_sum"}


# -- the test's own envelope code (independent of chainup.py) -------------------------------

def t_numbers(text):
    """(n, e, d or None) of a PEM or bare base64 DER key, private or public."""
    text = text.strip()
    data = text.encode() if text.startswith("-----") else base64.b64decode(text)
    load_priv = serialization.load_pem_private_key if text.startswith("-----") else serialization.load_der_private_key
    load_pub = serialization.load_pem_public_key if text.startswith("-----") else serialization.load_der_public_key
    try:
        k = load_priv(data, None).private_numbers()
        return k.public_numbers.n, k.public_numbers.e, k.d
    except (ValueError, TypeError):
        k = load_pub(data).public_numbers()
        return k.n, k.e, None


def t_seal(key, plaintext, chunk=234):
    """Envelope: 234-byte chunks, 00 01 FF.. 00 || chunk, m^d mod n, base64url without '='."""
    n, _, d = key
    k = (n.bit_length() + 7) // 8
    raw = plaintext.encode() if isinstance(plaintext, str) else plaintext
    out = b""
    for i in range(0, len(raw), chunk):
        part = raw[i:i + chunk]
        em = bytes([0, 1]) + bytes([255]) * (k - len(part) - 3) + bytes([0]) + part
        out += pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")
    return base64.urlsafe_b64encode(out).decode().replace("=", "")


def t_open(key, data):
    """(plaintext str, [chunk lengths]) of an envelope; raises ValueError if it does not open."""
    n, e, _ = key
    k = (n.bit_length() + 7) // 8
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    if len(raw) == 0 or len(raw) % k:
        raise ValueError("length")
    text, sizes = b"", []
    for i in range(0, len(raw), k):
        em = pow(int.from_bytes(raw[i:i + k], "big"), e, n).to_bytes(k, "big")
        if em[0:2] != b"\x00\x01":
            raise ValueError("padding")
        j = 2
        while em[j] == 0xFF:
            j += 1
        if em[j] != 0 or j < 10:
            raise ValueError("padding")
        text += em[j + 1:]
        sizes.append(k - j - 1)
    return text.decode("utf-8"), sizes


def t_json(key, data):
    return json.loads(t_open(key, data)[0])


def new_key():
    """(private PEM, public PEM, public bare base64 DER, own key tuple, public tuple)."""
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()).decode()
    pub = k.public_key()
    pub_pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    pub_b64 = base64.b64encode(pub.public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    return {"pem": pem, "pub_pem": pub_pem, "pub_b64": pub_b64, "own": t_numbers(pem),
            "pub": t_numbers(pub_pem), "obj": k}


def now_ms():
    return int(time.time() * 1000)


# -- the merchant: second-confirmation and notification endpoints -------------------------

class Merchant:
    """A tiny merchant web server.  /confirm/<mode> answers the second confirmation in
    the given way; /notify/<name> records notifications and answers SUCCESS except as
    told by fail_first (request_id or deposit id -> number of FAILURE replies first)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.confirms = []          # (mode, app_id, payload or None, content type)
        self.notes = []             # (name, app_id, payload or None, content type, reply)
        self.fail_first = {}
        self.keys = {}              # mode -> own key tuple used to answer
        self.wallet = None          # own key tuple of the mock's wallet public key
        self.mock_port = None
        merchant = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                form = dict(parse_qsl(body.decode()))
                ctype = self.headers.get("Content-Type", "")
                try:
                    payload = t_json(merchant.wallet, form.get("data", ""))
                except (ValueError, KeyError):
                    payload = None
                kind, _, name = self.path.strip("/").partition("/")
                if kind == "confirm":
                    with merchant.lock:
                        merchant.confirms.append((name, form.get("app_id"), payload, ctype))
                    status, reply = merchant.confirm_reply(name, payload)
                else:
                    reply = "SUCCESS"
                    with merchant.lock:
                        tag = (payload or {}).get("request_id") or (payload or {}).get("id")
                        left = merchant.fail_first.get(tag, 0)
                        if left:
                            merchant.fail_first[tag] = left - 1
                            reply = "FAILURE"
                        merchant.notes.append((name, form.get("app_id"), payload, ctype, reply))
                    status = 200
                data = reply.encode() if isinstance(reply, str) else reply
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json" if data[:1] == b"{" else "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:     # the mock gave up waiting (mode slow)
                    self.close_connection = True

        self.server = start_server(H)
        self.port = self.server.server_address[1]

    def url(self, kind, name):
        return f"http://127.0.0.1:{self.port}/{kind}/{name}"

    def confirm_reply(self, mode, payload):
        """(HTTP status, body) for one second-confirmation request."""
        if payload is None:
            return 400, "cannot open"
        key = self.keys.get(mode)
        echo = json.dumps({"check_sum": payload["check_sum"], "time": str(now_ms())})
        if mode in ("ok", "b64"):
            return 200, json.dumps({"data": t_seal(key, echo)})
        if mode == "callback":      # call the mock while it waits for this answer
            c = Client(self.mock_port)
            st, _, _ = c.raw("GET", "/_mock/health", timeout=3)
            st2, r = c.call("m-sync", LIST, {"ids": "x", "time": now_ms(), "charset": "utf-8", "version": "v2"}, timeout=3)
            ok = st == 200 and st2 == 200 and r.get("code") == "0"
            return 200, json.dumps({"data": t_seal(key, echo if ok else '{"check_sum":"mock blocked"}')})
        if mode == "echo_all":      # like the SDKs' verifyResponse: the whole args back
            return 200, json.dumps({"data": t_seal(key, json.dumps(payload))})
        if mode == "wrong_checksum":
            return 200, json.dumps({"data": t_seal(key, json.dumps({"check_sum": payload["check_sum"] + "0"}))})
        if mode == "no_checksum":
            return 200, json.dumps({"data": t_seal(key, json.dumps({"time": str(now_ms())}))})
        if mode == "wrong_key":
            return 200, json.dumps({"data": t_seal(self.keys["other"], echo)})
        if mode == "forged":        # sealed with the WALLET key (via the mock's /envelope)
            st, r = Client(self.mock_port).ctl("POST", "/chainup/envelope", {"plaintext": echo})
            return 200, json.dumps({"data": r["data"]})
        if mode == "plain":
            return 200, echo
        if mode == "plain_data":
            return 200, json.dumps({"data": echo})
        if mode == "http_500":
            return 500, json.dumps({"data": t_seal(key, echo)})
        if mode == "not_json":
            return 200, "SUCCESS"
        if mode == "slow":
            time.sleep(2.5)
            return 200, json.dumps({"data": t_seal(key, echo)})
        return 404, "no such mode"

    def confirms_for(self, rid):
        with self.lock:
            return [c for c in self.confirms if c[2] and c[2].get("request_id") == rid]

    def notes_for(self, rid):
        with self.lock:
            return [n for n in self.notes if n[2] and n[2].get("request_id") == rid]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# -- the test's HTTP client ---------------------------------------------------------------

class Client(MockClient):
    provider = "chainup"
    keys = {}           # app_id -> own key tuple
    wallet = None       # own key tuple of the wallet public key

    def reply(self, status, data):
        """(HTTP status, plaintext object): a sealed reply opened with the wallet key,
        a plain JSON reply as is (marked "_plain": True)."""
        try:
            body = json.loads(data)
        except ValueError:
            return status, {"_raw": data}
        if isinstance(body, dict) and set(body) == {"data"} and isinstance(body["data"], str):
            return status, t_json(Client.wallet, body["data"])
        return status, dict(body, _plain=True)

    def form(self, app_id, obj, key=None, data=None):
        if data is None:
            text = obj if isinstance(obj, str) else json.dumps(obj)
            data = t_seal(key or Client.keys[app_id], text)
        return urlencode({"app_id": app_id, "data": data})

    def call(self, app_id, path, obj, key=None, data=None, method=None, timeout=10):
        body = self.form(app_id, obj, key, data)
        if method is None:          # seed 001: withdraw is a POST, both lists are GETs
            method = "POST" if path == WITHDRAW else "GET"
        if method == "GET":
            st, _, out = self.raw("GET", f"{path}?{body}", timeout=timeout)
        else:
            st, _, out = self.raw("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"},
                                  timeout=timeout)
        return self.reply(st, out)

    def withdraw(self, app_id, rid=None, timeout=10, **over):
        p = {"time": now_ms(), "charset": "utf-8", "version": "v2", "request_id": rid or new_rid(),
             "from_uid": "10739", "to_address": "0x" + "ab" * 20, "amount": "1.25", "symbol": "ETH"}
        p.update(over)
        p = {k: v for k, v in p.items() if v is not None}
        return p.get("request_id"), self.call(app_id, WITHDRAW, p, timeout=timeout)

    def list(self, app_id, ids, method=None):
        return self.call(app_id, LIST, {"ids": ",".join(ids), "time": now_ms(), "charset": "utf-8",
                                        "version": "v2"}, method=method)

    def sync(self, app_id, max_id, method=None):
        return self.call(app_id, SYNC, {"max_id": max_id, "time": now_ms(), "charset": "utf-8",
                                        "version": "v2"}, method=method)

    def notifications(self, **q):
        return self.ctl("GET", "/chainup/notifications?" + urlencode(q))[1]


def new_rid():
    return "r-" + uuid.uuid4().hex[:20]


# -- keys and config ------------------------------------------------------------------------

KEY_A, KEY_B, KEY_OTHER = new_key(), new_key(), new_key()
CONFIRM_MODES = ["ok", "callback", "echo_all", "wrong_checksum", "no_checksum", "wrong_key", "forged",
                 "plain", "plain_data", "http_500", "not_json", "slow"]


def make_config(m):
    merchants = {f"m-{mode}": {"public_key": KEY_A["pub_pem"], "confirm_url": m.url("confirm", mode),
                               "notify_url": None} for mode in CONFIRM_MODES}
    merchants["m-ok"]["notify_url"] = m.url("notify", "ok")
    merchants["m-b64"] = {"public_key": KEY_B["pub_b64"], "confirm_url": m.url("confirm", "b64"),
                          "notify_url": m.url("notify", "b64")}
    merchants["m-sync"] = {"public_key": KEY_B["pub_b64"], "confirm_url": None, "notify_url": None}
    merchants["m-noconfirm"] = {"public_key": KEY_A["pub_pem"], "confirm_url": None,
                                "notify_url": m.url("notify", "noconfirm")}
    for app_id in merchants:
        Client.keys[app_id] = KEY_B["own"] if app_id in ("m-b64", "m-sync") else KEY_A["own"]
    for mode in CONFIRM_MODES:
        m.keys[mode] = KEY_A["own"]
    m.keys["b64"] = KEY_B["own"]
    m.keys["other"] = KEY_OTHER["own"]
    return {"chainup": {"merchants": merchants, "paying_after_s": 0.3, "success_after_s": 0.3,
                        "confirm_timeout_s": 1.0, "notify_timeout_s": 2.0,
                        "retry_delays_s": [0.2, 0.2, 0.2]}}


# -- the checks -----------------------------------------------------------------------------

def test_vectors():
    section("chainup: published vectors (seed 001) with the test's own envelope code")
    pri, pub = t_numbers(DEMO_PRI), t_numbers(DEMO_PUB)
    check(hex(pri[0]).startswith("0xfa60d20b58e2598d2e"), "demo $pri_key modulus starts 0xfa60d20b58e2598d2e")
    check(t_seal(pri, VEC_REQUEST_PLAIN) == VEC_REQUEST,
          "own: registerEmail request + $pri_key -> GCJBk77n...i_uvA (342 chars, byte-exact)")
    text, sizes = t_open((pri[0], pri[1], None), VEC_REQUEST)
    check(text == VEC_REQUEST_PLAIN and sizes == [len(VEC_REQUEST_PLAIN.encode())],
          "own: GCJBk77n... opens with the public half of $pri_key")
    text, sizes = t_open(pub, VEC_RESPONSE)
    check(text == VEC_RESPONSE_PLAIN and json.loads(text)["data"]["id"] == 48680,
          "own: k4w5AijeFWF3... + $pub_key -> {code 0, withdraw_type 1, id 48680, status 0, msg 成功}", text)
    text, sizes = t_open(pub, VEC_NOTIFY)
    check(len(VEC_NOTIFY) == 1024 and sizes == [234, 234, 21] and text == VEC_NOTIFY_PLAIN,
          "own: UoJC0VeVSvdO... (1024 chars, 3 blocks 234/234/21) + $pub_key -> the deposit notification",
          sizes)
    note = json.loads(text)
    check(note["side"] == "deposit" and note["status"] == "1" and note["id"] == "1"
          and note["created_at"] == "2020-02-28 12:21:11",
          "the doc's notification: strings for status, id; created_at a date-time string")

    section("chainup: the mock's envelope functions")
    mpri, mpub = chainup.load_private_key(DEMO_PRI), chainup.load_public_key(DEMO_PUB)
    check(chainup.seal(mpri, VEC_REQUEST_PLAIN) == VEC_REQUEST, "mock seal: GCJBk77n... byte-exact")
    check(chainup.open_envelope(mpub, VEC_RESPONSE).decode() == VEC_RESPONSE_PLAIN, "mock open: k4w5AijeFWF3...")
    check(chainup.open_envelope(mpub, VEC_NOTIFY).decode() == VEC_NOTIFY_PLAIN, "mock open: UoJC0VeVSvdO...")
    mine = t_seal(KEY_A["own"], VEC_NOTIFY_PLAIN)
    check(chainup.open_envelope(chainup.load_public_key(KEY_A["pub_b64"]), mine).decode() == VEC_NOTIFY_PLAIN
          and chainup.seal(chainup.load_private_key(KEY_A["pem"]), VEC_NOTIFY_PLAIN) == mine,
          "fresh key: own seal == mock seal, mock opens it (PEM private, bare base64 public)")
    go = t_seal(KEY_A["own"], VEC_NOTIFY_PLAIN, chunk=245)
    check(chainup.open_envelope(chainup.load_public_key(KEY_A["pub_pem"]), go).decode() == VEC_NOTIFY_PLAIN,
          "245-byte chunks (Go SDK) open too")
    std = base64.b64encode(base64.urlsafe_b64decode(mine + "=" * (-len(mine) % 4))).decode()
    check(chainup.open_envelope(chainup.load_public_key(KEY_A["pub_pem"]), std).decode() == VEC_NOTIFY_PLAIN,
          "standard base64 (+/ and '=') is tolerated")
    pk1 = KEY_A["obj"].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption()).decode()
    check(chainup.seal(chainup.load_private_key(pk1), "x") == t_seal(KEY_A["own"], "x"),
          "PKCS#1 PEM private keys load")
    pub_a = chainup.load_public_key(KEY_A["pub_pem"])

    def refused(data):
        try:
            chainup.open_envelope(pub_a, data)
            return False
        except chainup.EnvelopeError:
            return True

    raw = bytearray(base64.urlsafe_b64decode(mine + "=" * (-len(mine) % 4)))
    raw[300] ^= 1
    n, e, d = KEY_A["own"]

    def block(em):
        return base64.urlsafe_b64encode(pow(int.from_bytes(em, "big"), d, n).to_bytes(256, "big")).decode().rstrip("=")

    type2 = b"\x00\x02" + b"\x11" * 200 + b"\x00" + b"x" * 53
    short = b"\x00\x01" + b"\xff" * 7 + b"\x00" + b"y" * 246
    nozero = b"\x00\x01" + b"\xff" * 254
    check(refused(base64.urlsafe_b64encode(bytes(raw)).decode()), "a flipped bit in block 2 -> refused")
    check(refused(t_seal(KEY_OTHER["own"], "{}")), "sealed with another key -> refused")
    check(refused(mine[:-4]) and refused("") and refused("!!!!" + mine[4:]), "bad length or alphabet -> refused")
    check(refused(block(type2)) and refused(block(short)) and refused(block(nozero)),
          "type-2 padding, fewer than 8 FF bytes, no 00 separator -> refused")
    check(chainup.open_envelope(pub_a, block(b"\x00\x01" + b"\xff" * 8 + b"\x00" + b"z" * 245)) == b"z" * 245,
          "exactly 8 FF bytes (the minimum) opens")


def test_keys_and_envelope(c):
    section("chainup: control endpoints /keys and /envelope")
    st, k = c.ctl("GET", "/chainup/keys")
    check(st == 200 and k["wallet_public_key"].startswith("-----BEGIN PUBLIC KEY-----")
          and t_numbers(k["wallet_public_key"])[:2] == t_numbers(k["wallet_public_key_b64"])[:2],
          "GET /keys: the wallet public key as PEM and as bare base64 DER")
    Client.wallet = t_numbers(k["wallet_public_key"])
    st, r = c.ctl("POST", "/chainup/envelope", {"plaintext": '{"forged":"yes","中":1}'})
    check(st == 200 and t_open(Client.wallet, r["data"])[0] == '{"forged":"yes","中":1}',
          "POST /envelope: arbitrary plaintext sealed with the wallet key")
    st, r = c.ctl("POST", "/chainup/envelope", {"json": {"a": [1, 2]}})
    check(st == 200 and t_json(Client.wallet, r["data"]) == {"a": [1, 2]}, "POST /envelope {json}")
    st, r = c.ctl("POST", "/chainup/envelope", {})
    check(st == 400, "POST /envelope without plaintext -> 400", r)
    return k


def test_create_confirm(c, m):
    section("chainup: withdraw -> second confirmation -> accepted")
    rid, (st, r) = c.withdraw("m-ok", from_uid="10739", amount="0.5", symbol="USDT", to_address="TXa1b2c3")
    check(st == 200 and r == {"code": "0", "msg": "成功", "data": {"withdraw_type": 0, "id": FIRST_ID, "status": 0}},
          f"reply opens with the wallet key: code \"0\", id {FIRST_ID}, status 0", r)
    calls = m.confirms_for(rid)
    check(len(calls) == 1 and calls[0][0] == "ok" and calls[0][1] == "m-ok", "exactly one confirmation, app_id m-ok",
          calls)
    mode, app_id, p, ctype = calls[0]
    check(set(p) == CONFIRM_FIELDS and p["request_id"] == rid and p["from_uid"] == "10739"
          and p["to_address"] == "TXa1b2c3" and p["amount"] == "0.5" and p["symbol"] == "USDT"
          and p["charset"] == "utf-8" and p["version"] == "v2",
          "confirmation data (wallet-sealed): time, charset, version, request_id, from_uid, to_address, "
          "amount, symbol, check_sum", p)
    check(re.fullmatch(r"[0-9a-f]{32}", p["check_sum"]) and abs(p["time"] - now_ms()) < 5000
          and ctype.startswith("application/x-www-form-urlencoded"),
          "check_sum random hex, time in ms, form-encoded", (p["check_sum"], ctype))
    n = c.notifications(kind="confirm", request_id=rid)
    check(len(n) == 1 and n[0]["delivered"] and n[0]["attempts"][0]["http_status"] == 200
          and n[0]["reason"] is None and "data" in json.loads(n[0]["attempts"][0]["reply"]),
          "GET /notifications: the confirmation with the merchant's reply", n)
    rid2, (st, r) = c.withdraw("m-ok", from_uid=10739, amount=2)
    rid3, (st3, r3) = c.withdraw("m-echo_all")
    check(r.get("code") == "0" and r["data"]["id"] == FIRST_ID + 1 and r3.get("code") == "0",
          "from_uid as an integer, amount as a JSON number; a reply echoing all args: accepted",
          (r, r3))
    rid4, (st, r) = c.withdraw("m-b64")
    check(r.get("code") == "0", "merchant configured with a bare base64 DER public key", r)
    rid5, (st, r) = c.withdraw("m-callback")
    check(r.get("code") == "0", "the confirm handler called the mock (health, withdrawList) before answering: "
                                "the core lock is free during the confirmation", r)
    rid6, (st, r) = c.withdraw("m-noconfirm")
    check(r.get("code") == "0" and not m.confirms_for(rid6), "a merchant without confirm_url: no confirmation", r)
    return rid


def test_confirm_failures(c, m):
    section("chainup: second confirmation failures -> 120206")
    for mode, what in [("wrong_checksum", "a wrong check_sum"), ("no_checksum", "no check_sum"),
                       ("wrong_key", "a reply sealed with another key"),
                       ("forged", "a reply sealed with the wallet key (forged)"),
                       ("plain", "a plain JSON echo"), ("plain_data", "{\"data\": plain JSON}"),
                       ("http_500", "HTTP 500 (with a good body)"), ("not_json", "SUCCESS instead of JSON")]:
        rid, (st, r) = c.withdraw(f"m-{mode}")
        check(st == 200 and r == {"code": "120206", "msg": "withdrawal second confirmation failed", "data": None}
              and len(m.confirms_for(rid)) == 1, f"{what} -> 120206", r)
    led = c.ledger()
    refused = {x["request_id"]: x for x in led["refused"]}
    check(rid in refused and refused[rid]["code"] == 120206 and refused[rid]["reason"]
          and rid not in led["executions"], "the refusal is in the ledger (with a reason), nothing executed",
          refused.get(rid))
    st, r = c.list("m-not_json", [rid])
    check(r.get("code") == "0" and r["data"] == [], "withdrawList does not know a refused request")
    rid2, (st, r) = c.withdraw("m-not_json", rid=rid)
    check(r.get("code") == "120206" and len(m.confirms_for(rid)) == 2,
          "the same request_id again: confirmed again (a refusal does not reserve it)", r)

    out = {}

    def slow():
        out["t0"] = time.monotonic()
        out["rid"], out["r"] = c.withdraw("m-slow", rid="slow-" + uuid.uuid4().hex[:8])
        out["t1"] = time.monotonic()

    th = threading.Thread(target=slow)
    th.start()
    wait_for(lambda: "rid" in out or any(x[0] == "slow" for x in m.confirms), 3)
    t = time.monotonic()
    st, _, _ = c.raw("GET", "/_mock/health")
    st2, r = c.list("m-ok", ["nope"])
    fast = time.monotonic() - t
    rid = next(x[2]["request_id"] for x in m.confirms if x[0] == "slow")
    st3, dup = c.call("m-slow", WITHDRAW, {"time": now_ms(), "charset": "utf-8", "version": "v2", "request_id": rid, "from_uid": "1",
                                           "to_address": "a", "amount": "1", "symbol": "ETH"})
    th.join()
    check(st == 200 and st2 == 200 and r.get("code") == "0" and fast < 0.5,
          f"while a confirmation waits, the mock serves others ({fast * 1000:.0f} ms)")
    check(dup.get("code") == "110088", "the same request_id while its confirmation is in flight -> 110088", dup)
    check(out["r"][1].get("code") == "120206" and 0.9 < out["t1"] - out["t0"] < 2.4,
          f"a merchant slower than confirm_timeout_s (1 s) -> 120206 after {out['t1'] - out['t0']:.1f} s", out["r"])
    n = c.notifications(kind="confirm", request_id=rid)
    check(len(n) == 1 and n[0]["delivered"] is False and "timed out" in (n[0]["reason"] or ""),
          "the notification log shows the timeout", n)


def test_duplicates_and_errors(c, m, rid):
    section("chainup: duplicates and errors")
    n0 = len(m.confirms)
    _, (st, r) = c.withdraw("m-ok", rid=rid)
    check(st == 200 and r == {"code": "110088", "msg": "please do not repeat the request", "data": None}
          and len(m.confirms) == n0, "duplicate request_id -> 110088, no second confirmation", r)
    check(c.ledger()["executions"].get(rid) == 1, "executed once")
    _, (st, r) = c.withdraw("m-noconfirm", rid=rid)
    check(r.get("code") == "0", "the same request_id under another app_id is a different request", r)

    body = {"time": now_ms(), "request_id": new_rid(), "from_uid": "1", "to_address": "a", "amount": "1",
            "symbol": "ETH"}
    st, r = c.call("nobody", WITHDRAW, body, key=KEY_A["own"])
    check(st == 200 and r == {"code": "100015", "msg": "invalid merchant id", "data": None, "_plain": True},
          "unknown app_id -> PLAIN {\"code\":\"100015\",...,\"data\":null}", r)
    st, r = c.call("m-ok", WITHDRAW, body, key=KEY_OTHER["own"])
    check(r.get("_plain") and r.get("code") == "100005", "data sealed with another key -> plain 100005", r)
    st, r = c.call("m-ok", WITHDRAW, None, data="bm90IGFuIGVudmVsb3Bl")
    check(r.get("_plain") and r.get("code") == "100005", "data not an envelope -> plain 100005", r)
    st, r = c.call("m-ok", WITHDRAW, None, data="!@#$")
    check(r.get("_plain") and r.get("code") == "100005", "data not base64 -> plain 100005", r)
    st, _, data = c.raw("POST", WITHDRAW, "app_id=m-ok", {"Content-Type": "application/x-www-form-urlencoded"})
    st2, _, data2 = c.raw("POST", WITHDRAW, c.form("m-ok", body), {"Content-Type": "application/json"})
    check(c.reply(st, data)[1].get("code") == "100004" and c.reply(st2, data2)[1].get("code") == "100004"
          and c.reply(st, data)[1].get("_plain"),
          "no data, or a body that is not form-encoded -> plain 100004")
    st, _, _ = c.raw("GET", WITHDRAW + "?" + c.form("m-ok", body))
    check(st == 405, "GET withdraw -> 405", st)
    st, r = c.call("m-ok", WITHDRAW, "[1,2]")
    st2, r2 = c.call("m-ok", WITHDRAW, "not json")
    check(r.get("code") == "100004" and "_plain" not in r and r2.get("code") == "100004",
          "data that opens but is not a JSON object -> sealed 100004", (r, r2))
    bad = [("request_id", "x" * 65, "request_id of 65 characters"), ("request_id", "", "empty request_id"),
           ("request_id", 123, "numeric request_id"), ("request_id", None, "no request_id"),
           ("from_uid", None, "no from_uid"), ("from_uid", "", "empty from_uid"),
           ("to_address", None, "no to_address"), ("to_address", "", "empty to_address"),
           ("symbol", None, "no symbol"), ("amount", "0", "amount 0"), ("amount", "-1", "amount -1"),
           ("amount", "1e3", "amount 1e3"), ("amount", "abc", "amount abc"), ("amount", "", "empty amount"),
           ("amount", True, "amount true"), ("time", None, "no time"), ("time", "soon", "time 'soon'"),
           ("time", now_ms() - 700000, "time 700 s old"), ("time", now_ms() + 700000, "time 700 s ahead"),
           ("time", str(now_ms() - 700000), "time 700 s old as a string"), ("charset", 8, "charset not a string"),
           ("time", str(now_ms()), "time as a string (the seed: long)"), ("charset", None, "no charset"),
           ("charset", "GBK", "charset GBK"), ("version", None, "no version"), ("version", "2.0", "version 2.0")]
    n0 = len(m.confirms)
    for field, value, what in bad:
        _, (st, r) = c.withdraw("m-ok", **{field: value})
        check(r.get("code") == "100004" and "_plain" not in r, f"{what} -> sealed 100004", r)
    check(len(m.confirms) == n0, "no confirmation for an invalid request")
    _, (st, r) = c.withdraw("m-ok", rid="y" * 64, time=now_ms() - 500000)
    check(r.get("code") == "0", "request_id of 64 characters, time 500 s old -> accepted", r)
    _, (st, r) = c.withdraw("m-ok", charset="UTF-8")
    check(r.get("code") == "0", "charset UTF-8 (the seed's spelling) as well as utf-8 -> accepted", r)


def test_lists(c):
    section("chainup: withdrawList and syncWithdrawList")
    rids = [c.withdraw("m-sync")[0] for _ in range(3)]
    st, r = c.list("m-sync", [rids[2], "unknown", rids[0], rids[2]])
    check(r.get("code") == "0" and [x["request_id"] for x in r["data"]] == [rids[2], rids[0]],
          "known ids in the order asked, unknown absent, a repeated id once", r)
    rec = r["data"][0]
    check(list(rec) == RECORD_FIELDS, "records have exactly the documented fields, in order", list(rec))
    types = {k: type(v).__name__ for k, v in rec.items()}
    check(all(isinstance(rec[k], int) for k in ("id", "uid", "created_at", "updated_at", "confirmations",
                                               "saas_status", "company_status", "status"))
          and all(isinstance(rec[k], str) for k in ("request_id", "symbol", "amount", "withdraw_fee_symbol",
                                                    "withdraw_fee", "fee_symbol", "real_fee", "address_from",
                                                    "address_to", "txid")),
          "types as documented: id, uid, times, confirmations, statuses integers; the rest strings", types)
    st, r = c.list("m-sync", [rids[1]], method="GET")
    check(r.get("code") == "0" and [x["request_id"] for x in r["data"]] == [rids[1]], "withdrawList by GET", r)
    st, r = c.list("m-sync", [rids[1]], method="POST")
    check(st == 405, "withdrawList by POST -> 405 (the seed: Request method: GET)", (st, r))
    st, r = c.list("m-ok", rids)
    check(r.get("code") == "0" and r["data"] == [], "another merchant's request_ids are not visible", r)
    st, r = c.list("m-sync", [f"id{i}" for i in range(101)])
    check(r.get("code") == "100004", "101 ids -> 100004", r)
    st, r = c.list("m-sync", [f"id{i}" for i in range(99)] + [rids[0]])
    check(r.get("code") == "0" and len(r["data"]) == 1, "100 ids -> fine", r)
    st, r = c.list("m-sync", [])
    st2, r2 = c.call("m-sync", LIST, {"time": now_ms()})
    check(r.get("code") == "100004" and r2.get("code") == "100004", "no ids -> 100004", (r, r2))

    more = [c.withdraw("m-sync")[0] for _ in range(102)]
    mine = rids + more
    st, p1 = c.sync("m-sync", "0")
    ids1 = [x["id"] for x in p1["data"]]
    check(p1.get("code") == "0" and len(ids1) == 100 and ids1 == sorted(ids1)
          and [x["request_id"] for x in p1["data"]] == mine[:100],
          "syncWithdrawList max_id 0 -> the first 100 of this merchant's 105, ascending by id", len(ids1))
    st, p2 = c.sync("m-sync", str(ids1[-1]))
    ids2 = [x["id"] for x in p2["data"]]
    check(p2.get("code") == "0" and [x["request_id"] for x in p2["data"]] == mine[100:]
          and min(ids2) > ids1[-1], "max_id = last id (as a string) -> the remaining 5", ids2)
    st, p3 = c.sync("m-sync", str(ids2[-1]))
    check(p3.get("code") == "0" and p3["data"] == [], "max_id = the very last id -> []")
    st, p4 = c.sync("m-sync", str(ids1[49]))
    check([x["id"] for x in p4["data"]] == ids1[50:] + ids2, "max_id in the middle -> the rest")
    st, r = c.sync("m-sync", "abc")
    st2, r2 = c.call("m-sync", SYNC, {"time": now_ms(), "charset": "utf-8", "version": "v2"})
    st3, r3 = c.sync("m-sync", 0)
    check(r.get("code") == "100004" and r2.get("code") == "100004" and r3.get("code") == "100004",
          "max_id not digits, missing, or a JSON number (the seed: String) -> 100004", (r, r2, r3))
    st, r = c.sync("m-sync", "0", method="GET")
    check(r.get("code") == "0" and len(r["data"]) == 100, "syncWithdrawList by GET")
    st, r = c.sync("m-sync", "0", method="POST")
    check(st == 405, "syncWithdrawList by POST -> 405 (the seed: Request method: GET)", (st, r))


def test_progression(c, m):
    section("chainup: status progression and notifications")
    rid, (st, r) = c.withdraw("m-ok", to_address="0xdest", amount="3.5", symbol="ETH", from_uid="777")
    rec = wait_for(lambda: [x for x in c.list("m-ok", [rid])[1]["data"] if x["status"] == 5], 5)
    rec = rec[0] if rec else c.list("m-ok", [rid])[1]["data"][0]
    check(rec["status"] == 5 and re.fullmatch(r"0x[0-9a-f]{64}", rec["txid"]) and rec["confirmations"] == 12
          and rec["real_fee"] == "0.00042" and rec["fee_symbol"] == "ETH" and rec["withdraw_fee_symbol"] == "ETH"
          and rec["withdraw_fee"] == "0" and rec["address_from"].startswith("0x")
          and rec["saas_status"] == rec["company_status"] == 1 and rec["uid"] == 777
          and rec["updated_at"] > rec["created_at"],
          "0 -> 1 -> 5 in ~0.6 s: txid, confirmations, real_fee, fees, address_from, audit statuses set", rec)
    notes = wait_for(lambda: len(m.notes_for(rid)) >= 3 and m.notes_for(rid), 3) or []
    check([n[2]["status"] for n in notes] == ["0", "1", "5"] and all(n[0] == "ok" and n[1] == "m-ok" for n in notes),
          "notifications for status 0 (creation), 1 and 5 at notify_url, app_id m-ok", [n[2] for n in notes])
    p = notes[-1][2] if notes else {}
    check(list(p) == NOTIFY_FIELDS and all(isinstance(v, str) for v in p.values()),
          "notification fields exactly as documented, every value a string", p)
    check(p.get("side") == "withdraw" and p.get("id") == str(rec["id"]) and p.get("txid") == rec["txid"]
          and p.get("confirmations") == "12" and p.get("uid") == "777" and p.get("amount") == "3.5"
          and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", p.get("created_at", ""))
          and re.fullmatch(r"\d{13}", p.get("notify_time", "")),
          "side withdraw, id/status/confirmations as strings, dates like the doc's example", p)
    check(notes and all(n[3].startswith("application/x-www-form-urlencoded") for n in notes), "form-encoded")
    # the delivery log records a reply once it is read: the receiver may have
    # the third notification a moment before the log says it was delivered
    def delivered_log():
        log = c.notifications(kind="withdraw", request_id=rid)
        return log if len(log) == 3 and all(n["delivered"] for n in log) else None
    log = wait_for(delivered_log, 3) or c.notifications(kind="withdraw", request_id=rid)
    check(len(log) == 3 and all(n["delivered"] and n["attempts"][-1]["reply"] == "SUCCESS" for n in log)
          and all(t_json(Client.wallet, dict(parse_qsl(n["form"]))["data"]) == n["payload"] for n in log),
          "GET /notifications: each delivered with SUCCESS; form is the exact body (replayable)", log[:1])

    rid = "retry-" + uuid.uuid4().hex[:8]
    with m.lock:
        m.fail_first[rid] = 2
    c.ctl("POST", "/config", {"chainup": {"merchants": {"m-noconfirm": {
        "public_key": KEY_A["pub_pem"], "confirm_url": None, "notify_url": m.url("notify", "noconfirm")}}}})
    c.withdraw("m-noconfirm", rid=rid, to_address="hold-1")
    ok = wait_for(lambda: [n for n in c.notifications(request_id=rid) if n["delivered"]], 4)
    n = c.notifications(request_id=rid)
    check(ok and len(n) == 1 and [a["reply"] for a in n[0]["attempts"]] == ["FAILURE", "FAILURE", "SUCCESS"],
          "FAILURE twice -> retried after retry_delays_s until SUCCESS (3 attempts)", n)
    check(len(m.notes_for(rid)) == 3, "the merchant received the same notification 3 times")
    rid = "never-" + uuid.uuid4().hex[:8]
    with m.lock:
        m.fail_first[rid] = 100
    c.withdraw("m-noconfirm", rid=rid, to_address="hold-2")
    gone = wait_for(lambda: [n for n in c.notifications(request_id=rid) if "gave up" in (n["reason"] or "")], 4)
    check(gone and len(gone[0]["attempts"]) == 4 and not gone[0]["delivered"],
          "never SUCCESS -> given up after 1 + 3 retries", c.notifications(request_id=rid))

    section("chainup: outcomes by address prefix, forced statuses, deposits")
    want = {"fail-x": [0, 1, 4], "reject-x": [0, 2], "cancel-x": [0, 6], "kyt-x": [0, 7], "manual-x": [0, 8],
            "hold-x": [0]}
    rids = {addr: c.withdraw("m-noconfirm", to_address=addr)[0] for addr in want}

    def outcomes():
        got = {}
        for addr in want:
            seen = sorted({int(n[2]["status"]) for n in m.notes_for(rids[addr])})
            got[addr] = (seen, c.list("m-noconfirm", [rids[addr]])[1]["data"][0]["status"])
        return got

    done = wait_for(lambda: all(got == (sorted(want[a]), want[a][-1]) for a, got in outcomes().items()), 6)
    time.sleep(0.7)         # and nothing further happens
    got = outcomes()
    check(done and all(got[a] == (sorted(want[a]), want[a][-1]) for a in want),
          "fail -> 0,1,4; reject -> 0,2; cancel -> 0,6; kyt -> 0,7; manual -> 0,8; hold -> stays 0 "
          "(statuses notified, status listed)", got)
    rec = c.list("m-noconfirm", [rids["reject-x"]])[1]["data"][0]
    check(rec["saas_status"] == 2 and rec["txid"] == "", "audit rejected: saas_status 2, no txid", rec)
    st, r = c.ctl("POST", "/chainup/status", {"request_id": rids["hold-x"], "status": 6})
    check(st == 200 and r["record"]["status"] == 6, "POST /status forces 6", r)
    seen = wait_for(lambda: [n for n in m.notes_for(rids["hold-x"]) if n[2]["status"] == "6"], 3)
    check(seen, "the forced change is notified")
    rid_p, _ = c.withdraw("m-noconfirm", to_address="0xpinned")
    st, r = c.ctl("POST", "/chainup/status", {"request_id": rid_p, "status": 8, "app_id": "m-noconfirm"})
    time.sleep(0.9)
    rec = c.list("m-noconfirm", [rid_p])[1]["data"][0]
    check(rec["status"] == 8, "a forced status is pinned (the plan stops)", rec)
    st, r = c.ctl("POST", "/chainup/status", {"request_id": "nope", "status": 5})
    st2, r2 = c.ctl("POST", "/chainup/status", {"request_id": rid_p, "status": 9})
    check(st == 404 and st2 == 400, "unknown request_id -> 404, status 9 -> 400", (r, r2))

    st, r = c.ctl("POST", "/chainup/deposit", {"app_id": "m-ok", "amount": "7.25", "symbol": "USDT"})
    dep = wait_for(lambda: [n for n in m.notes if n[2] and n[2].get("side") == "deposit"], 3)
    check(st == 200 and dep and dep[0][2]["amount"] == "7.25" and dep[0][2]["symbol"] == "USDT"
          and dep[0][2]["id"] == "1" and dep[0][1] == "m-ok",
          "POST /deposit: a wallet-sealed deposit notification (side deposit) at notify_url", dep)
    st, r = c.ctl("POST", "/chainup/deposit", {"app_id": "m-sync"})
    check(st == 400, "deposit for a merchant without notify_url -> 400", r)


def test_faults_log_reset(c, m, keys):
    section("chainup: faults, request log, reset")
    c.ctl("POST", "/faults", {"provider": "chainup", "path": "withdrawList", "kind": "retcode", "code": 100001})
    st, r = c.list("m-sync", ["a"])
    check(r == {"code": "100001", "msg": "injected", "data": None}, "retcode fault -> a sealed error reply", r)
    c.ctl("POST", "/faults", {"provider": "chainup", "path": "/withdraw", "kind": "http_502"})
    st, _, data = c.raw("POST", WITHDRAW, c.form("m-noconfirm", {"time": now_ms()}),
                        {"Content-Type": "application/x-www-form-urlencoded"})
    check(st == 502, "http_502 fault", st)
    rid = new_rid()
    c.ctl("POST", "/faults", {"provider": "chainup", "path": "/withdraw", "kind": "garbage_after"})
    st, _, data = c.raw("POST", WITHDRAW, c.form("m-noconfirm", {"time": now_ms(), "charset": "utf-8", "version": "v2", "request_id": rid,
                                                                  "from_uid": "1", "to_address": "a",
                                                                  "amount": "1", "symbol": "ETH"}),
                        {"Content-Type": "application/x-www-form-urlencoded"})
    check(c.ledger()["executions"].get(rid) == 1, "garbage_after: executed, then a garbage reply")
    log = c.ctl("GET", "/requests?provider=chainup")[1]
    check(all({"api_key", "requestId", "ret_code", "sig_ok", "executed"} <= set(e) for e in log if e["fault"] is None),
          "request log entries carry api_key, requestId, ret_code, sig_ok, executed")
    e = [x for x in log if x["requestId"] == rid]
    check(e and e[0]["api_key"] == "m-noconfirm" and e[0]["sig_ok"] is True and e[0]["fault"] == "garbage_after",
          "the faulted request is logged with app_id, request_id, sig_ok", e)
    bad = [x for x in log if x["ret_code"] == 100005]
    check(bad and all(x["sig_ok"] is False for x in bad), "100005 requests are logged sig_ok false")
    text = json.dumps(log)
    check("data=" not in text and KEY_A["pub_b64"][40:80] not in text, "no envelope or key in the request log")
    stats = c.ctl("GET", "/stats?provider=chainup")[1]
    want = ("executed", "duplicates_refused", "confirm_failures", "bad_signatures", "unknown_merchants",
            "validation_errors", "status_changes", "notifications_delivered", "notification_attempts_failed",
            "notifications_abandoned")
    check(all(stats.get(k, 0) > 0 for k in want), "stats: every counter non-zero", stats)

    c.ctl("POST", "/reset")
    st, k2 = c.ctl("GET", "/chainup/keys")
    check(k2["wallet_public_key"] == keys["wallet_public_key"], "reset keeps the wallet key")
    _, (st, r) = c.withdraw("m-sync")
    check(r.get("code") == "0" and r["data"]["id"] == FIRST_ID, f"after reset: ids restart at {FIRST_ID}", r)
    led = c.ledger()
    check(len(led["withdrawals"]) == 1 and led["refused"] == [] and c.notifications() == [],
          "reset clears records, refusals and the notification log")
    w = led["withdrawals"][0]
    check(w["app_id"] == "m-sync" and w["request"]["symbol"] == "ETH" and w["request"]["amount"] == "1.25",
          "ledger withdrawals carry app_id and the decrypted request", w)
    st, r = c.ctl("POST", "/config", {"chainup": {"merchants": {"bad": {"public_key": "nonsense"}}}})
    st2, r2 = c.ctl("POST", "/config", {"chainup": {"final_status": 11}})
    check(st == 400 and st2 == 400, "invalid chainup config -> 400", (r, r2))


def run(port, check_fn, section_fn, merchant):
    """Every chainup check against the server on port (started with make_config(merchant))."""
    global check, section
    check, section = check_fn, section_fn
    c = Client(port)
    merchant.mock_port = port
    keys = test_keys_and_envelope(c)
    merchant.wallet = Client.wallet
    rid = test_create_confirm(c, merchant)
    test_confirm_failures(c, merchant)
    test_duplicates_and_errors(c, merchant, rid)
    test_lists(c)
    test_progression(c, merchant)
    test_faults_log_reset(c, merchant, keys)


def main():
    test_vectors()
    m = Merchant()
    print()
    return run_mock(make_config(m), "mock_chainup_", lambda port: run(port, check, section, m),
                    f", merchant on 127.0.0.1:{m.port}", m.stop,
                    lambda out: check("data=" not in out and KEY_A["pub_b64"][40:80] not in out,
                                      "server output shows no envelope or key"))


if __name__ == "__main__":
    sys.exit(main())
