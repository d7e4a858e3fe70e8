"""Integration suite for the p99 provider: a real server and worker, and the
mock p99 (test/mock/p99.py) over 127.0.0.1, with hundreds of seeded records
whose statuses change over time.

Run: python3 test/integration/test_p99.py [name-filter ...]  (as a non-root user)
"""

import json
import time

import psycopg2

from harness import run_suite, wait_until

cluster = None
mock = None

CONFIG = {"p99": {
    "keys": {"pkey-alice": "psecret-alice-0123456789", "pkey-bob": "psecret-bob-0123456789"},
    "key_users": {"pkey-alice": "alice", "pkey-bob": "bob"},
    "jwts": {"jwt-token-carol": "carol"},
    "seed_rows": 450, "seed": 7, "history_days": 10,
    "confirm_after_s": 6.0, "expire_after_s": 6.0,
}}


def account(name, credentials, options=None):
    cluster.sql("SELECT withdraw_account_create(%s, 'p99', %s, %s, %s)",
                (name, mock.base_url("p99"), json.dumps(credentials), json.dumps(options or {})))


def truth(user):
    return {r["id"]: r for r in mock.call("GET", f"/_mock/p99/records?user={user}")}


def stored(name):
    rows = cluster.sql("SELECT provider_id, status, state, amount::text, txid FROM withdraw.remote_withdrawals"
                       " WHERE account = %s", (name,))
    return {r[0]: {"status": r[1], "state": r[2], "amount": r[3], "txid": r[4]} for r in rows}


def same_as_provider(name, user):
    want, have = truth(user), stored(name)
    if set(want) != set(have):
        return False
    return all(have[i]["status"] == r["status"] and have[i]["txid"] == r["tx_hash"] for i, r in want.items())


def test_full_sync_over_many_pages():
    account("p99a", {"api_key": "pkey-alice", "api_secret": "psecret-alice-0123456789"},
            {"sync_interval_ms": 3600000})
    started = time.monotonic()
    n = cluster.value("SELECT withdraw_sync('p99a')")
    took = time.monotonic() - started
    want = truth("alice")
    # the worker's first scheduled sync may have raced this one: together
    # they stored every record, each once
    assert len(want) >= 450 and 0 <= n <= len(want), (n, len(want))
    assert same_as_provider("p99a", "alice")
    pages = [r for r in mock.requests("p99") if r.get("api_key") == "pkey-alice"]
    assert len(pages) >= 3, len(pages)
    signed = cluster.value("SELECT count(*) FROM withdraw.remote_withdrawals WHERE account = 'p99a'"
                           " AND status = 'signed' AND state = 'processing'")
    return f"{n} records in {len(pages)} pages, {took * 1000:.0f} ms; {signed} still signed"


def test_resync_picks_up_status_changes_as_events():
    signed = cluster.value("SELECT count(*) FROM withdraw.remote_withdrawals WHERE account = 'p99a'"
                           " AND status = 'signed'")
    assert signed > 0, "the seed should leave some records signed"
    time.sleep(6.5)   # the mock confirms or expires them after 6 s
    listener = cluster.connect()
    listener.cursor().execute("LISTEN withdraw_status")
    changed = cluster.value("SELECT withdraw_sync('p99a')")
    wait_until(lambda: listener.poll() or len(listener.notifies) >= signed, 5, 0.05, "the notifications")
    notes = [json.loads(n.payload) for n in listener.notifies]
    listener.close()
    assert len(notes) == signed and all("remote_id" in n and n["previous_state"] == "processing"
                                        for n in notes), notes[:3]
    assert same_as_provider("p99a", "alice")
    ev = cluster.sql("SELECT e.from_state, e.to_state, count(*) FROM withdraw.events e"
                     " JOIN withdraw.remote_withdrawals r ON r.id = e.remote_withdrawal_id"
                     " WHERE r.account = 'p99a' GROUP BY 1, 2 ORDER BY 2")
    moved = sum(c for _, _, c in ev)
    assert changed == signed and moved == signed, (changed, signed, ev)
    assert {t for _, t, _ in ev} <= {"succeeded", "expired"}, ev
    again = cluster.value("SELECT withdraw_sync('p99a')")
    assert again == 0, again
    return f"{signed} signed records changed: {ev}, each announced; a third sync changes nothing"


def test_incremental_sync_fetches_only_the_recent_window():
    before = len([r for r in mock.requests("p99") if r.get("api_key") == "pkey-alice"])
    cluster.value("SELECT withdraw_sync('p99a')")
    after = len([r for r in mock.requests("p99") if r.get("api_key") == "pkey-alice"])
    assert after - before == 1, after - before
    return "one page when nothing is open"


def test_scheduled_sync_keeps_the_mirror_current():
    account("p99b", {"api_key": "pkey-bob", "api_secret": "psecret-bob-0123456789"}, {"sync_interval_ms": 500})
    wait_until(lambda: same_as_provider("p99b", "bob"), 30, 0.2, "the worker's first sync")
    mock.call("POST", "/_mock/p99/add", {"user": "bob", "count": 5})
    wait_until(lambda: same_as_provider("p99b", "bob"), 10, 0.1, "the new records")
    last = cluster.value("SELECT last_sync_at FROM withdraw.syncs WHERE account = 'p99b'")
    assert last is not None
    return f"{len(truth('bob'))} records mirrored by the schedule, new ones within the interval"


def test_jwt_authentication_and_filters():
    account("p99c", {"jwt": "jwt-token-carol"}, {"sync_interval_ms": 3600000})
    # the worker's first scheduled sync may run at the same time: either way
    # the mirror ends up equal to the provider's list
    cluster.value("SELECT withdraw_sync('p99c')")
    assert same_as_provider("p99c", "carol")
    t0 = time.time()
    cluster.value("SELECT withdraw_sync('p99c', '{\"status\": \"confirmed\", \"token\": \"DF\"}')")
    sent = [r for r in mock.requests("p99") if r.get("user") == "carol" and r["t"] >= t0]
    assert sent and all(r.get("auth") == "jwt" for r in sent), sent
    return f"{len(truth('carol'))} records with a bearer token; filtered sync sent {len(sent)} request(s)"


def test_bad_credentials_back_off_and_say_why():
    account("p99bad", {"api_key": "pkey-alice", "api_secret": "wrong-secret"}, {"sync_interval_ms": 200})
    try:
        cluster.sql("SELECT withdraw_sync('p99bad')")
        raise AssertionError("withdraw_sync succeeded with a wrong secret")
    except psycopg2.Error as e:
        assert e.pgcode == "28000" and "401" in e.diag.message_detail, (e.pgcode, e.diag.message_detail)
    t0 = time.time()
    wait_until(lambda: cluster.value("SELECT failures FROM withdraw.syncs WHERE account = 'p99bad'") >= 4,
               30, 0.1, "four failed scheduled syncs")
    tries = [r for r in mock.requests("p99") if r.get("api_key") == "pkey-alice" and r["t"] > t0
             and r.get("status") == 401]
    failures, delay_ms, err = cluster.sql(
        "SELECT failures, extract(epoch FROM next_sync_at - last_error_at) * 1000, last_error"
        " FROM withdraw.syncs WHERE account = 'p99bad'")[0]
    workers = cluster.value("SELECT last_error FROM withdraw.workers")
    # the n-th failure waits retry_base_delay * 2^(n-1), with jitter down to
    # half, capped by retry_max_delay (200 ms and 5 s in this cluster)
    nominal = min(5000, 200 * 2 ** (failures - 1))
    assert float(delay_ms) >= nominal / 2 - 50, (failures, delay_ms)
    assert len(tries) <= failures + 1, (len(tries), failures)
    assert "401" in err and "401" in workers, (err, workers)
    return (f"{failures} failures, {len(tries)} requests; next try {float(delay_ms):.0f} ms after the last;"
            f" last_error: {err[:40]}…")


def test_single_lookup():
    some = next(iter(truth("alice")))
    row = cluster.sql("SELECT provider_id, status FROM withdraw_refresh('p99a', %s)", (some,))
    assert row == [(some, truth("alice")[some]["status"])], row
    try:
        cluster.sql("SELECT * FROM withdraw_refresh('p99a', '00000000-0000-4000-8000-000000000000')")
        raise AssertionError("an unknown id was found")
    except psycopg2.Error as e:
        assert e.pgcode == "P0002", e.pgcode
    return "found, and 404 is P0002"


def test_seed_example_passes_through_the_parser():
    """Seed 002's 200 OK example, served as printed, read by withdraw_sync with the
    seed's own filter (status=confirmed); a status outside the three documented values
    is refused before any request."""
    seed = [{"id": "9f2a1c4e-5b67-4d8a-bf93-2e1f4a6c8d10", "token": "DF", "amount": "100", "fee": "0",
             "chain_id": 97, "nonce": 42, "status": "confirmed", "deadline": 1778402000,
             "tx_hash": "0xabc123...", "block_number": 106400000, "requested_at": 1778315530,
             "confirmed_at": 1778316040}]
    account("p99seed", {"api_key": "pkey-bob", "api_secret": "psecret-bob-0123456789"},
            {"sync_interval_ms": 3600000})
    # the new account's first scheduled sync runs at once: let it end before counting
    wait_until(lambda: cluster.value("SELECT last_sync_at IS NOT NULL FROM withdraw.syncs"
                                     " WHERE account = 'p99seed'"), 15, 0.1, "the first scheduled sync")
    mark = len(mock.requests("p99"))
    try:
        cluster.sql("SELECT withdraw_sync('p99seed', '{\"status\": \"pending\"}')")
        raise AssertionError("an undocumented status filter was sent")
    except psycopg2.Error as e:
        assert e.pgcode == "22023" and len(mock.requests("p99")) == mark, (e.pgcode, e)
    mock.fault(provider="p99", path="/spot/withdrawals", kind="raw", body=json.dumps(seed))
    cluster.sql("SELECT withdraw_sync('p99seed', '{\"status\": \"confirmed\"}')")
    rows = cluster.sql("SELECT provider_id, status, state, amount::text, txid, asset FROM withdraw.remote_withdrawals"
                       " WHERE account = 'p99seed' AND provider_id = %s", (seed[0]["id"],))
    assert rows == [("9f2a1c4e-5b67-4d8a-bf93-2e1f4a6c8d10", "confirmed", "succeeded", "100", "0xabc123...", "DF")], rows
    q = mock.requests("p99")[-1]
    assert q["path"].endswith("/spot/withdrawals"), q
    return "the example record stored: confirmed -> succeeded, tx 0xabc123...; status 'pending' refused unsent"


def main():
    run_suite("p99", globals(), CONFIG, {"withdraw.retry_max_delay": "5000"})

if __name__ == "__main__":
    main()
