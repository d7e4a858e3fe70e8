"""Integration suite for the second security round on the chainup provider
(issue 14, finding 6) and a few hardening items that need a running worker:

- ChainUp signs its envelopes block by block (RSA type 1 per 234-byte chunk),
  so blocks of two authentic envelopes can be spliced.  Two real
  notifications, sealed with the platform's wallet key by the mock, are
  spliced: a splice that names another withdrawal is refused, one that only
  brings another withdrawal's status cannot fail ours (a failure by
  notification waits for a status poll), and nothing changes.
- Notifications outside the account's notify_window_ms are refused.
- An answer that is not sealed is not believed, even when it says success;
  a status answer listing a request id not asked for is refused whole.
- zoomex: an empty or "-" retCode is not success.
- withdraw.callback is pruned by withdraw.retention.
- withdraw_sync streams pages: its memory at page 60 is that of page 10.

Run: python3 test/integration/test_chainup_security.py [name-filter ...]  (as a non-root user)
"""

import base64
import json
import re
import threading
import time
import urllib.request


from harness import run_suite, wait_until, rsa_key_pair

cluster = None
mock = None
shim = None
WALLET_PUB = None

APP_ID = "cus-app"
UID = "3529218000000000001"
ZOOMEX_KEY, ZOOMEX_SECRET = "zkey-sec", "zsecret-sec-0123456789"
P99_KEY, P99_SECRET = "pkey-sec", "psecret-sec-0123456789"


new_key = rsa_key_pair


MERCHANT_PEM, MERCHANT_PUB = new_key()

COLS = ("state", "provider_status", "provider_id", "txid", "last_error", "idempotency_key")


def row(wid):
    return cluster.withdrawal(wid, COLS)


def now_ms():
    return int(time.time() * 1000)


def create(request_id, to_address, amount="1.25"):
    return cluster.value("SELECT withdraw_create('cus', %s)", (json.dumps(
        {"request_id": request_id, "from_uid": UID, "to_address": to_address, "amount": amount,
         "symbol": "usdt"}),))


def notification(rid, provider_id, status, address, notify_ms=None, **over):
    """A withdrawal notification with the documented fields, in the mock's order."""
    n = {"charset": "utf-8", "version": "v2", "side": "withdraw",
         "notify_time": str(notify_ms if notify_ms is not None else now_ms()),
         "request_id": rid, "id": str(provider_id), "uid": UID, "symbol": "usdt", "amount": "1.25",
         "withdraw_fee_symbol": "usdt", "withdraw_fee": "0", "fee_symbol": "eth", "real_fee": "0",
         "address_to": address, "created_at": "2026-12-06 12:00:00", "updated_at": "2026-12-06 12:00:01",
         "txid": "", "confirmations": "0", "status": status}
    n.update(over)
    return json.dumps(n, separators=(",", ":"))


def seal(plaintext):
    """A real envelope of the platform: the mock seals with its wallet key."""
    return mock.call("POST", "/_mock/chainup/envelope", {"plaintext": plaintext})["data"]


def blocks(envelope):
    raw = base64.urlsafe_b64decode(envelope + "=" * (-len(envelope) % 4))
    assert len(raw) % 256 == 0, len(raw)
    return [raw[i:i + 256] for i in range(0, len(raw), 256)]


def envelope(*parts):
    return base64.urlsafe_b64encode(b"".join(parts)).decode().rstrip("=")


def post_callback(data):
    form = f"app_id={APP_ID}&data={data}"
    req = urllib.request.Request(shim.url("callback", "cus"), data=form.encode(), method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def last_verdict(wid):
    return cluster.sql("SELECT verdict, detail FROM withdraw.callbacks WHERE withdrawal_id = %s"
                       " ORDER BY id DESC LIMIT 1", (wid,))[0]


def status_polls(wid, since_id=0):
    return cluster.value("SELECT count(*) FROM withdraw.attempt WHERE withdrawal_id = %s AND kind = 'status'"
                         " AND id > %s", (wid, since_id))


def last_attempt_id():
    return cluster.value("SELECT coalesce(max(id), 0) FROM withdraw.attempt")


def held(rid, address):
    """A withdrawal the mock holds at status 0 (risk review): ours is 'processing'."""
    wid = create(rid, address)
    cluster.wait_withdrawal(wid, ["processing"], COLS, 20)
    return wid, row(wid)["provider_id"]


def test_a_splice_naming_another_withdrawal_is_refused():
    """A's first block (our withdrawal, status 1) + B's second and later blocks
    (another withdrawal of the account, status 4 = failed).  With 64-character
    request ids the 234-byte boundary falls after amount, so the tail brings
    B's address_to: the spliced document names two withdrawals."""
    ra, rb = "sa" + "a" * 62, "sb" + "b" * 62
    wa, pa = held(ra, "hold-dest-aaaa")
    wb, pb = held(rb, "hold-dest-bbbb")
    a = notification(ra, pa, "1", "hold-dest-aaaa")
    b = notification(rb, pb, "4", "hold-dest-bbbb")
    # ids of equal lengths: the two texts have the same shape, so the splice is valid JSON
    assert a.index('"amount"') < 234 < a.index('"address_to"'), a[:240]
    ea, eb = seal(a), seal(b)
    assert post_callback(ea) == "SUCCESS" and post_callback(eb) == "SUCCESS"   # each authentic
    before_a, before_b = row(wa), row(wb)
    spliced = envelope(blocks(ea)[0], *blocks(eb)[1:])
    mixed = json.loads(a[:234] + b[234:])
    assert mixed["request_id"] == ra and mixed["status"] == "4" and mixed["address_to"] == "hold-dest-bbbb"
    reply = post_callback(spliced)
    verdict, detail = last_verdict(wa)
    assert verdict == "refused" and "address_to differs" in detail, (verdict, detail)
    assert reply == "SUCCESS", reply      # acknowledged, so the platform does not repeat it
    assert row(wa) == before_a and row(wb) == before_b, (row(wa), row(wb))
    return f"refused: {detail}"


def test_a_splice_bringing_a_failure_waits_for_the_poll():
    """Two withdrawals to the same address: the tail of B's 'failed' names
    nothing of B's but its status.  The failure is not applied on the
    notification's word: a withdrawList poll is made at once, and the
    platform's sealed answer (still status 0) decides; nothing changes."""
    ra, rb = "sc" + "c" * 62, "sd" + "d" * 62
    wa, pa = held(ra, "hold-same-dest")
    wb, pb = held(rb, "hold-same-dest")
    a = notification(ra, pa, "1", "hold-same-dest")
    b = notification(rb, pb, "4", "hold-same-dest", txid="")
    mixed = json.loads(a[:234] + b[234:])
    assert mixed["request_id"] == ra and mixed["id"] == str(pa) and mixed["status"] == "4", mixed
    ea, eb = seal(a), seal(b)
    before = row(wa)
    mark = last_attempt_id()
    reply = post_callback(envelope(blocks(ea)[0], *blocks(eb)[1:]))
    verdict, detail = last_verdict(wa)
    assert reply == "SUCCESS" and verdict == "confirming", (reply, verdict, detail)
    wait_until(lambda: status_polls(wa, mark) >= 1, 10, 0.05, "the status poll the notification asked for")
    time.sleep(0.5)
    assert row(wa)["state"] == "processing" and row(wa)["provider_id"] == before["provider_id"], row(wa)
    assert row(wb)["state"] == "processing", row(wb)
    return f"'{detail}'; the poll answered status 0: still processing"


def test_a_failure_by_notification_is_applied_once_the_poll_confirms_it():
    rid = "se-failed"
    wid, pid = held(rid, "hold-fail")
    # an authentic notification of failure while the platform still says 0: not applied
    mark = last_attempt_id()
    post_callback(seal(notification(rid, pid, "4", "hold-fail")))
    assert last_verdict(wid)[0] == "confirming", last_verdict(wid)
    wait_until(lambda: status_polls(wid, mark) >= 1, 10, 0.05, "the confirming poll")
    assert row(wid)["state"] == "processing"
    # now the platform really fails it (and notifies): the poll confirms, the row fails
    mock.call("POST", "/_mock/chainup/status", {"request_id": rid, "status": 4, "app_id": APP_ID})
    r = cluster.wait_withdrawal(wid, ["failed"], COLS, 20)
    verdicts = [v for v, in cluster.sql("SELECT verdict FROM withdraw.callbacks WHERE withdrawal_id = %s"
                                        " AND kind = 'withdrawal' ORDER BY id", (wid,))]
    assert "applied" not in verdicts[verdicts.index("confirming"):], verdicts
    assert r["provider_status"] == "status 4", r
    return f"verdicts {verdicts}; failed by the poll's answer"


def test_notifications_outside_the_window_are_refused():
    rid = "sf-stale"
    wid, pid = held(rid, "hold-stale")
    for what, ms in (("4 h old", now_ms() - 4 * 3600_000), ("4 h ahead", now_ms() + 4 * 3600_000)):
        post_callback(seal(notification(rid, pid, "5", "hold-stale", notify_ms=ms, txid="0xstale")))
        verdict, detail = last_verdict(wid)
        assert verdict == "refused" and "stale or replayed" in detail, (what, verdict, detail)
    post_callback(seal(notification(rid, pid, "5", "hold-stale", notify_ms="", txid="0xstale")))
    assert last_verdict(wid)[0] == "refused", last_verdict(wid)
    assert row(wid)["state"] == "processing" and row(wid)["txid"] is None, row(wid)
    # within the account's window (default 3 h) it applies
    post_callback(seal(notification(rid, pid, "5", "hold-stale", notify_ms=now_ms() - 3600_000, txid="0xok")))
    assert last_verdict(wid)[0] == "applied" and row(wid)["state"] == "succeeded", (last_verdict(wid), row(wid))
    return "4 h old, 4 h ahead, no time: refused; 1 h old: applied"


def test_a_notification_must_name_our_withdrawal():
    rid = "sg-names"
    wid, pid = held(rid, "hold-names")
    cases = {"uid": {"uid": "42"}, "symbol": {"symbol": "btc"}, "address_to": {"address_to": "hold-other"}}
    for field, over in cases.items():
        post_callback(seal(notification(rid, pid, "5", "hold-names", **over)))
        verdict, detail = last_verdict(wid)
        assert verdict == "refused" and f"{field} differs" in detail, (field, verdict, detail)
    post_callback(seal(json.dumps({k: v for k, v in json.loads(notification(rid, pid, "5", "hold-names")).items()
                                   if k != "id"})))
    assert last_verdict(wid) == ("refused", "the notification has no id"), last_verdict(wid)
    # the same names, spelt by the platform in capitals, are ours
    post_callback(seal(notification(rid, pid, "5", "HOLD-NAMES", symbol="USDT")))
    assert last_verdict(wid)[0] == "applied" and row(wid)["state"] == "succeeded", last_verdict(wid)
    return "uid, symbol, address_to, missing id: refused"


def test_unsealed_answers_are_not_believed():
    rid = "sh-plain"
    wid, _ = held(rid, "hold-plain")
    # the platform says success; its notification cannot reach us (web handler down)
    shim.override["callback"] = lambda acct, body, headers: (503, "down")
    mock.configure({"chainup": {"plain_answers": True}})
    try:
        mock.call("POST", "/_mock/chainup/status", {"request_id": rid, "status": 5, "app_id": APP_ID})
        mark = last_attempt_id()
        cluster.sql("SELECT withdraw_refresh(%s)", (wid,))
        wait_until(lambda: status_polls(wid, mark) >= 1, 10, 0.05, "a poll answered unsealed")
        r = row(wid)
        assert r["state"] == "processing" and "does not open" in (r["last_error"] or ""), r
    finally:
        mock.configure({"chainup": {"plain_answers": False}})
        shim.override.pop("callback", None)
    cluster.sql("SELECT withdraw_refresh(%s)", (wid,))
    cluster.wait_withdrawal(wid, ["succeeded"], COLS, 20)
    return "unsealed {code: 0, status 5}: not believed; sealed: succeeded"


def test_a_status_answer_must_answer_the_question():
    """withdrawList lists a record that was not asked for: the whole answer is
    refused (it does not answer this question), nothing is taken from it."""
    wa, _ = held("si-asked", "hold-asked")
    wb, _ = held("si-other", "hold-other")
    mock.call("POST", "/_mock/chainup/status", {"request_id": "si-asked", "status": 5, "app_id": APP_ID})
    cluster.wait_withdrawal(wa, ["succeeded"], COLS, 20)
    # si-other's poll is answered with si-asked's record (status 5) alongside
    mock.configure({"chainup": {"list_extra_ids": ["si-asked"]}})
    try:
        mark = last_attempt_id()
        cluster.sql("SELECT withdraw_refresh(%s)", (wb,))
        wait_until(lambda: status_polls(wb, mark) >= 1, 10, 0.05, "the poll")
        r = row(wb)
    finally:
        mock.configure({"chainup": {"list_extra_ids": []}})
    assert r["state"] == "processing" and "not asked for" in (r["last_error"] or ""), r
    return r["last_error"]


def test_zoomex_malformed_retcode_is_not_success():
    seen = {}
    for code in ("", "-", "1-2"):
        mock.configure({"zoomex": {"create_retcode": code}})
        try:
            wid = cluster.value("SELECT withdraw_create('zx', %s)", (json.dumps(
                {"coin": "USDT", "addressType": 3, "address": "100200", "amount": "1.25"}),))
            r = cluster.wait_withdrawal(wid, ["unknown", "submitted", "processing", "succeeded"],
                                        ("state", "last_error"), 15)
        finally:
            mock.configure({"zoomex": {"create_retcode": None}})
        assert r["state"] == "unknown" and "without a return code" in r["last_error"], (code, r)
        seen[code or "(empty)"] = r["state"]
    return f"{seen}"


def test_callbacks_are_pruned_with_the_history():
    for i in range(30):
        post_callback(f"not-an-envelope-{i}")
    junk = cluster.value("SELECT count(*) FROM withdraw.callback WHERE verdict = 'rejected'")
    assert junk >= 30, junk
    assert cluster.value("SELECT count(*) FROM withdraw.callback WHERE verdict = 'rejected'"
                         " AND (content IS NOT NULL OR length(detail) > 210)") == 0
    cluster.sql("ALTER SYSTEM SET withdraw.retention = '2s'")
    cluster.sql("ALTER SYSTEM SET withdraw.retention_batch = 10")
    cluster.sql("SELECT pg_reload_conf()")
    try:
        wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.callback"
                                         " WHERE received_at < now() - interval '3 s'") == 0,
                   30, 0.2, "old callbacks to be pruned")
    finally:
        cluster.sql("ALTER SYSTEM RESET withdraw.retention")
        cluster.sql("ALTER SYSTEM RESET withdraw.retention_batch")
        cluster.sql("SELECT pg_reload_conf()")
    return f"{junk} rejected bodies (no content, short detail) pruned 10 at a time"


MEMCTX_RE = re.compile(r"logging memory contexts of PID (\d+)")
TOTAL_RE = re.compile(r"Grand total: (\d+) bytes")


def memory_dumps(pid):
    """The Grand total of each memory context dump of pid in the server log, and
    whether the dump saw withdraw_sync at work (its SPI connection open)."""
    out, inside, in_sync = [], False, False
    for line in cluster.log_text().splitlines():
        m = MEMCTX_RE.search(line)
        if m:
            inside, in_sync = int(m.group(1)) == pid, False
        elif inside and "SPI Proc" in line:
            in_sync = True
        elif inside and TOTAL_RE.search(line):
            out.append((int(TOTAL_RE.search(line).group(1)), in_sync))
            inside = False
    return out


def test_sync_memory_is_that_of_one_page():
    """withdraw_sync of 40,000 p99 records (200 pages of 200): the backend's
    memory, dumped with pg_log_backend_memory_contexts while the sync runs,
    is the same at page 60 as at page 10."""
    conn = cluster.connect()
    pid = conn.cursor()
    pid.execute("SELECT pg_backend_pid()")
    pid = pid.fetchone()[0]
    result = {}

    def run():
        with conn.cursor() as c:
            c.execute("SELECT withdraw_sync('p99sec')")
            result["changed"] = c.fetchone()[0]

    def pages():
        return sum(1 for r in mock.requests("p99") if "/spot/withdrawals" in r.get("path", ""))

    t = threading.Thread(target=run)
    t.start()
    try:
        for at in (10, 60):
            wait_until(lambda: pages() >= at or "changed" in result, 120, 0.02, f"page {at}")
            cluster.sql("SELECT pg_log_backend_memory_contexts(%s)", (pid,))
            wait_until(lambda: len(memory_dumps(pid)) >= (1 if at == 10 else 2), 60, 0.05, "the dump")
    finally:
        t.join(180)
        conn.close()
    dumps = memory_dumps(pid)
    assert all(in_sync for _, in_sync in dumps), f"a dump was taken after the sync ended: {dumps}"
    (first, _), (second, _) = dumps[:2]
    assert result.get("changed", 0) > 20000, result
    big = [line.split("LOG:")[-1].strip() for line in cluster.log_text().splitlines()
           if re.search(r"level: \d+; .*: (\d{7,}) total", line)]
    assert second < 16 * 1024 * 1024 and second - first < 4 * 1024 * 1024, (first, second, big)
    return f"{result['changed']} records; backend memory {first / 1e6:.1f} MB at page 10, {second / 1e6:.1f} MB at page 60"


def setup():
    global WALLET_PUB
    WALLET_PUB = mock.call("GET", "/_mock/chainup/keys")["wallet_public_key"]
    mock.configure({"chainup": {"merchants": {
        APP_ID: {"public_key": MERCHANT_PUB, "confirm_url": shim.url("confirm", "cus"),
                 "notify_url": shim.url("callback", "cus")}}}})
    cluster.sql("SELECT withdraw_account_create('cus', 'chainup', %s, %s, %s)",
                (mock.base_url("chainup"),
                 json.dumps({"app_id": APP_ID, "merchant_private_key": MERCHANT_PEM,
                             "platform_public_key": WALLET_PUB}),
                 json.dumps({"poll_interval_ms": 60000, "sync_interval_ms": 3600000})))
    cluster.sql("SELECT withdraw_account_create('zx', 'zoomex', %s, %s)",
                (mock.base_url("zoomex"), json.dumps({"api_key": ZOOMEX_KEY, "api_secret": ZOOMEX_SECRET})))
    # the worker's own first sync would be due at once: not before the test's
    cluster.sql("SELECT withdraw_account_create('p99sec', 'p99', %s, %s, %s);"
                " UPDATE withdraw.sync_state SET next_sync_at = now() + interval '1 day'"
                " WHERE account_id = (SELECT id FROM withdraw.account WHERE name = 'p99sec')",
                (mock.base_url("p99"), json.dumps({"api_key": P99_KEY, "api_secret": P99_SECRET}),
                 json.dumps({"sync_interval_ms": 86400000})))


def main():
    run_suite("chainup_security", globals(),
              {"chainup": {"paying_after_s": 0.3, "success_after_s": 0.3, "retry_delays_s": [0.3, 0.6]},
               "zoomex": {"keys": {ZOOMEX_KEY: ZOOMEX_SECRET}},
               "p99": {"keys": {P99_KEY: P99_SECRET}, "seed_rows": 40000, "seed": 3, "history_days": 30}},
              {"withdraw.retry_max_delay": "2000", "withdraw.request_timeout": "3000"},
              setup=setup, with_shim=True)


if __name__ == "__main__":
    main()
