#!/usr/bin/env python3
"""
seeds.py - writes the starting corpus of the in-server fuzz targets (fuzz_server.c):
one directory per target (zoomex, p99, chainup, ccpayment, fiat_gateway, form_rules).

    python3 test/fuzz/seeds.py DIRECTORY

Each input is a selector byte (a provider's target: which parser, 0 create,
1 status, 2 batched status, 3 list page, 4 lookup, 5 callback), a flag byte,
then the body; the bodies are the
shapes providers.md and the mocks document, so the fuzzer starts past the
outer layers.  Flags: 0x01 sign/seal as the provider would, 0x02 the job has a
provider id, 0x04 the other account variant (ccpayment v2, fiat "concat"),
bits 3-4 the batch size - 1, bits 5-7 the HTTP status (0 = 200).
"""
import json
import os
import sys

ZOOMEX, P99, CHAINUP, CCPAYMENT, FIAT = range(5)
CREATE, STATUS, BATCH, SYNC, LOOKUP, CALLBACK = range(6)
AUTH, KNOWN, ALT = 0x01, 0x02, 0x04


def dumps(doc):
    return json.dumps(doc, separators=(",", ":"))


zoomex_row = {"coin": "USDT", "chain": "", "amount": "1.50", "txID": "0xab", "status": "Transferred successfully",
              "toAddress": "fz-address", "tag": "", "withdrawFee": "0", "createTime": 1700000000000,
              "updateTime": 1700000000000, "withdrawId": "1000", "withdrawType": 1, "requestId": "fz-1"}
p99_row = {"id": 1000, "token": "USDT", "amount": "1.5", "fee": "0.1", "status": "confirmed", "tx_hash": "0xab",
           "block_number": 123, "chain_id": 1, "nonce": 5, "requested_at": 1700000000, "confirmed_at": 1700000100,
           "deadline": 1700003600}
chainup_row = {"id": 1000, "request_id": "fz-1", "uid": 7, "symbol": "usdt", "amount": "1.50",
               "withdraw_fee_symbol": "usdt", "withdraw_fee": "0.1", "fee_symbol": "eth", "real_fee": "0.01",
               "address_to": "fz-address", "txid": "0xab", "confirmations": 3, "status": 2,
               "created_at": 1700000000000, "updated_at": 1700000000000}

responses = [
    (ZOOMEX, CREATE, 0, {"retCode": 0, "retMsg": "OK", "result": {"id": "178"}, "retExtInfo": {}, "time": 1}),
    (ZOOMEX, CREATE, 0, {"retCode": 10014, "retMsg": "duplicate requestId", "result": {}, "time": 1}),
    (ZOOMEX, STATUS, KNOWN, {"ret_code": 0, "ret_msg": "OK", "ext_code": "", "result": {"rows": [zoomex_row],
                                                                                        "cursor": "c2"},
                             "ext_info": None, "time_now": "1700000000.1"}),
    (P99, SYNC, 0, [p99_row, dict(p99_row, id=999, status="signed")]),
    (P99, LOOKUP, 0, p99_row),
    (P99, LOOKUP, 0xA0, {"error": "WITHDRAWAL_NOT_FOUND"}),
    (CHAINUP, CREATE, AUTH, {"code": "0", "msg": "success", "data": {"id": 1000}}),
    (CHAINUP, CREATE, 0, {"code": "100005", "msg": "sign error", "data": None}),
    (CHAINUP, BATCH, AUTH | KNOWN | 0x08, {"code": "0", "msg": "", "data": [chainup_row,
                                                                       dict(chainup_row, id=1001, request_id="fz-2")]}),
    (CHAINUP, STATUS, AUTH, {"code": "0", "msg": "", "data": [chainup_row]}),
    (CHAINUP, SYNC, AUTH, {"code": "0", "msg": "", "data": [chainup_row]}),
    (CCPAYMENT, CREATE, 0, {"code": 10000, "msg": "Success", "data": {"order_id": "2023", "network_fee": "0.1"}}),
    (CCPAYMENT, CREATE, ALT, {"code": 10000, "msg": "success", "data": {"recordId": "1000"}}),
    (CCPAYMENT, CREATE, 0, {"code": 11011, "msg": "OrderDuplicate", "data": {}}),
    (CCPAYMENT, STATUS, KNOWN, {"code": 10000, "msg": "Success", "data": [
        {"order_detail": {"merchant_order_id": "fz-1", "order_id": "1000", "status": "Success", "value": "1.50",
                          "address": "fz-address", "txid": "0xab", "network_fee": "0.1"}, "trade_list": []}]}),
    (CCPAYMENT, STATUS, ALT | KNOWN, {"code": 10000, "msg": "success", "data": {"record": {
        "recordId": "1000", "orderId": "fz-1", "status": "Success", "amount": "1.50", "toAddress": "fz-address",
        "txId": "0xab", "fee": {"amount": "0.1"}}}}),
    (FIAT, CREATE, AUTH, {"status": 10000, "result": {"transactionid": "800000001"}}),
    (FIAT, CREATE, AUTH, {"status": 10003, "msg": "duplicate order", "result": None}),
]

callbacks = [
    (CHAINUP, AUTH, {"side": "withdraw", "request_id": "fz-1", "id": "1000", "amount": "1.50", "status": "2",
               "txid": "0xab", "confirmations": "3", "notify_time": "1700000000000"}),
    (CHAINUP, AUTH, {"time": "1700000000000", "charset": "utf-8", "version": "v2", "request_id": "fz-1",
               "from_uid": "7", "to_address": "fz-address", "amount": "1.50", "symbol": "usdt", "check_sum": "abc"}),
    (CHAINUP, AUTH, {"side": "deposit", "id": "7", "amount": "3", "symbol": "usdt"}),
    (CCPAYMENT, AUTH, {"pay_status": "success", "order_id": "1000", "merchant_order_id": "fz-1", "withdraw_amount": "1.50",
               "txid": "0xab", "network_fee": "0.1"}),
    (CCPAYMENT, AUTH | ALT, {"pay_status": "failed", "recordId": "1000", "orderId": "fz-1", "withdraw_amount": "1.50"}),
    (FIAT, AUTH, {"uid": "fz-uid", "orderid": "fz-1", "amount": "1.50", "status": "success", "transactionid": "9"}),
    (FIAT, AUTH | ALT, {"uid": "fz-uid", "orderid": "fz-1", "amount": "1.50", "status": "failed"}),
]

form_fields = [
    {"name": "bank_no", "type": "text", "required": "true", "max_length": "20",
     "validation_rules": ["required", "digits", "min:6", "regex:[0-9]+"]},
    {"name": "bank_id", "type": "select", "required": "true", "options": [{"bankID": "B1"}, {"bankID": "B2"}]},
    {"name": "ifsc", "type": "text", "validation_rules": ["size:11", "in:A,B", "string", "max:11"]},
]
rules_answer = {"status": 10000, "result": {"data": {"pay_code": "fz-pay", "name": "bank",
                                                     "form_fields": form_fields}}}
fiat_request = {"orderid": "fz-1", "currency": "INR", "amount": "100.00", "userip": "127.0.0.1",
                "pay_code": "fz-pay", "bank_no": "12345678", "bank_id": "B1", "ifsc": "A", "user_name": "x"}


# Depth bombs (well-formed and not) and long bodies, for every parser; deep
# enough that pg_parse_json's recursion runs past max_stack_depth (2 MB)
# unless something refuses them first.  chainup's authentic inputs are
# sealed with one RSA operation per 245 bytes, and only up to 16 KB
# (fuzz_server.c): theirs stay under that.
DEPTH = 100000
LONG = 64 * 1024
HUGE = 1000 * 1000  # near the 1 MiB the worker reads (http.c)


def bombs(provider):
    """(parser, flags, body) of the hostile shapes each parser must survive."""
    out = []
    parsers = {ZOOMEX: (CREATE, STATUS), P99: (SYNC, LOOKUP), CHAINUP: (CREATE, STATUS, BATCH, SYNC, CALLBACK),
               CCPAYMENT: (CREATE, STATUS, BATCH, CALLBACK), FIAT: (CREATE, CALLBACK)}[provider]
    depth, long = (5000, 12 * 1024) if provider == CHAINUP else (DEPTH, LONG)
    for parser in parsers:
        out.append((parser, AUTH, b"[" * depth))
        out.append((parser, AUTH, b'{"code":0,"data":' + b'{"a":[' * (depth // 6) + b"]}" * (depth // 6) + b"}"))
        out.append((parser, AUTH | KNOWN, b'{"code":"0","msg":"' + b"x" * long + b'","data":[]}'))
    # unsealed, to every provider's first parser: the outer layer, the whole size, the whole depth
    out.append((parsers[0], KNOWN, b'{"code":"0","msg":"' + b"x" * HUGE + b'","data":[]}'))
    out.append((parsers[0], 0, b"[" * DEPTH))
    return out


def write(directory, name, selector, flags, body):
    with open(os.path.join(directory, name), "wb") as f:
        f.write(bytes([selector, flags]) + body)


def main():
    top = sys.argv[1]
    names = {ZOOMEX: "zoomex", P99: "p99", CHAINUP: "chainup", CCPAYMENT: "ccpayment", FIAT: "fiat_gateway"}
    for target in list(names.values()) + ["form_rules"]:
        os.makedirs(os.path.join(top, target), exist_ok=True)
    for i, (provider, parser, flags, doc) in enumerate(responses):
        write(os.path.join(top, names[provider]), f"answer{i}", parser, flags, dumps(doc).encode())
    for i, (provider, flags, doc) in enumerate(callbacks):
        write(os.path.join(top, names[provider]), f"callback{i}", CALLBACK, flags, dumps(doc).encode())
    for provider, name in names.items():
        for i, (parser, flags, body) in enumerate(bombs(provider)):
            write(os.path.join(top, name), f"bomb{i}", parser, flags, body)
    for i, flags in enumerate((AUTH, AUTH | ALT)):
        write(os.path.join(top, "form_rules"), f"seed{i}", 0, flags,
              dumps(rules_answer).encode() + b"\0" + dumps(fiat_request).encode())
    write(os.path.join(top, "form_rules"), "bomb0", 0, AUTH, b"[" * DEPTH)
    write(os.path.join(top, "form_rules"), "bomb1", 0, AUTH,
          dumps(rules_answer).encode() + b"\0" + b'{"a":' * (DEPTH // 5) + b"1" + b"}" * (DEPTH // 5))


if __name__ == "__main__":
    main()
