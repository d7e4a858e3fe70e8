"""Integration suite: the payout desk (issue 17) with a real cluster, the real
worker and the zoomex mock over 127.0.0.1.

What is checked: a withdrawal above its account's approval threshold is not
sent until two distinct approvers approve it, then goes to succeeded, paid
once; a create to a destination not on an enforced allowlist is refused and
nothing is sent; a withdrawal in review (the provider's "Pending Review") is
resolved by an operator; two operators acting on one withdrawal at once:
exactly one wins, the other's error names the new state; a paused account
sends nothing while its polls go on, and sends again once resumed; a feed
consumer that stores its cursor in its own transaction reads every event
exactly once across a server restart; prometheus-postgres-exporter, given
sql/withdraw_prometheus.yaml, scrapes the cluster and reports the health
view's values.

Run: python3 test/integration/test_desk.py [name-filter ...]  (as a non-root user)
"""

import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request

import psycopg2

from harness import ROOT, free_port, run_suite, wait_until

KEYS = {"deskkey": "desk-secret-" + "d" * 12}
EXPORTER = "/usr/bin/prometheus-postgres-exporter"

cluster = None
mock = None


def login(user, autocommit=True):
    conn = psycopg2.connect(host=cluster.dir, port=cluster.port, user=user, dbname="postgres")
    conn.autocommit = autocommit
    return conn


def run_as(user, query, params=None):
    conn = login(user)
    try:
        cur = conn.cursor()
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def new_account(name, options):
    opts = {"create_interval_ms": 0, "polls_per_second": 0, "poll_interval_ms": 100}
    opts.update(options)
    cluster.sql("SELECT withdraw_account_create(%s, 'zoomex', %s, %s, %s)",
                (name, mock.base_url("zoomex"), json.dumps({"api_key": "deskkey", "api_secret": KEYS["deskkey"]}),
                 json.dumps(opts)))


def body(rid, amount="10", address="100100", address_type=3):
    return json.dumps({"requestId": rid, "coin": "USDT", "addressType": address_type, "address": address,
                       "amount": amount})


def creates(rid):
    return [r for r in mock.requests() if "inner-create" in r["path"] and rid in json.dumps(r)]


def executions(rid):
    return mock.ledger()["executions"].get(rid, 0)


def state(wid):
    return cluster.value("SELECT state FROM withdraw.withdrawal WHERE id = %s", (wid,))


def setup():
    for role, member in (("app", "withdraw_user"), ("ap1", "withdraw_approver"), ("ap2", "withdraw_approver"),
                         ("op1", "withdraw_operator"), ("op2", "withdraw_operator"), ("admin", "withdraw_admin"),
                         ("monitor", "withdraw_auditor")):
        cluster.sql(f"CREATE ROLE {role} LOGIN IN ROLE {member}")


def test_above_threshold_waits_for_two_approvers_then_succeeds():
    new_account("appr", {"approval": {"USDT": {"above": "100", "quorum": 2}}})
    wid = run_as("app", "SELECT withdraw_create('appr', %s)", (body("appr1", "250"),))[0][0]
    assert state(wid) == "awaiting_approval"
    # ten naptimes: nothing is sent while it waits
    time.sleep(1.0)
    assert creates("appr1") == [] and state(wid) == "awaiting_approval"
    assert run_as("ap1", "SELECT withdraw_approve(%s, 'beneficiary checked')", (wid,))[0][0] == "awaiting_approval"
    try:
        run_as("ap1", "SELECT withdraw_approve(%s, 'twice')", (wid,))
        raise AssertionError("a second approval by the same role was accepted")
    except psycopg2.Error as e:
        assert e.pgcode == "23505", e.pgcode
    time.sleep(0.5)
    assert creates("appr1") == [], "sent after one approval of two"
    assert run_as("ap2", "SELECT withdraw_approve(%s, 'second pair of eyes')", (wid,))[0][0] == "queued"
    wait_until(lambda: state(wid) == "succeeded", 20, 0.1, "the approved withdrawal to succeed")
    assert executions("appr1") == 1
    who = cluster.sql("SELECT actor, action FROM withdraw.event WHERE withdrawal_id = %s AND action = 'approve'"
                      " ORDER BY id", (wid,))
    assert who == [("ap1", "approve"), ("ap2", "approve")], who
    # one at the threshold itself needs none
    small = run_as("app", "SELECT withdraw_create('appr', %s)", (body("appr2", "100"),))[0][0]
    wait_until(lambda: state(small) == "succeeded", 20, 0.1, "the small withdrawal to succeed")
    return "sent only after the second approver; paid once; 100 (the threshold) needed none"


def test_a_destination_not_on_the_allowlist_is_refused():
    new_account("allow", {"allowlist": {"enforce": True, "cooling_off_ms": 0}})
    run_as("admin", "SELECT withdraw_allowlist_add('allow', '100300', 'treasury', reason => 'test')")
    try:
        run_as("app", "SELECT withdraw_create('allow', %s)", (body("allow1", "5", "100999"),))
        raise AssertionError("a destination off the allowlist was accepted")
    except psycopg2.Error as e:
        assert e.pgcode == "23514" and "not allowed" in e.pgerror, (e.pgcode, e.pgerror)
    assert cluster.value("SELECT count(*) FROM withdraw.withdrawal WHERE idempotency_key = 'allow1'") == 0
    ok = run_as("app", "SELECT withdraw_create('allow', %s)", (body("allow2", "5", "100300"),))[0][0]
    wait_until(lambda: state(ok) == "succeeded", 20, 0.1, "the allowed withdrawal to succeed")
    time.sleep(0.3)
    assert creates("allow1") == [] and executions("allow2") == 1
    return "refused with 23514, nothing stored or sent; the listed destination paid"


def test_review_is_resolved_by_an_operator():
    new_account("rev", {})
    # the mock keeps an address starting with "review" in Pending Review forever
    wid = run_as("app", "SELECT withdraw_create('rev', %s)",
                 (body("rev1", "7", "review@example.com", address_type=1),))[0][0]
    wait_until(lambda: state(wid) == "review", 20, 0.1, "the withdrawal to reach review")
    assert run_as("op1", "SELECT withdraw_resolve(%s, 'succeeded', 'provider ops confirmed by phone', %s)",
                  (wid, json.dumps({"ticket": "OPS-9"})))[0][0] == "succeeded"
    ev = cluster.sql("SELECT from_state, to_state, actor, action, reason, evidence FROM withdraw.event"
                     " WHERE withdrawal_id = %s AND action IS NOT NULL", (wid,))
    assert ev == [("review", "succeeded", "op1", "resolve", "provider ops confirmed by phone", {"ticket": "OPS-9"})], ev
    polls = cluster.value("SELECT count(*) FROM withdraw.attempt WHERE withdrawal_id = %s", (wid,))
    time.sleep(0.6)
    assert state(wid) == "succeeded"
    assert cluster.value("SELECT count(*) FROM withdraw.attempt WHERE withdrawal_id = %s", (wid,)) <= polls + 1
    return "review -> succeeded by op1 with reason and evidence; its polls stopped"


def race(user_a, sql_a, user_b, sql_b, params):
    """A runs its statement in an open transaction; B runs its own (blocking
    on the row lock); A commits; returns B's result or error."""
    a = login(user_a, autocommit=False)
    a.cursor().execute(sql_a, params)
    result = {}

    def run_b():
        try:
            result["rows"] = run_as(user_b, sql_b, params)
        except psycopg2.Error as e:
            result["error"] = e

    t = threading.Thread(target=run_b)
    t.start()
    wait_until(lambda: cluster.value("SELECT count(*) FROM pg_stat_activity WHERE usename = %s"
                                     " AND wait_event_type = 'Lock'", (user_b,)) == 1, 10, 0.02,
               f"{user_b} to wait for the row")
    a.commit()
    a.close()
    t.join(10)
    return result


def test_two_operators_at_once_exactly_one_wins():
    new_account("race", {"approval": {"USDT": {"above": "50"}}})
    cluster.sql("SELECT withdraw_account_pause('race', 'race test: nothing is sent')")
    held = run_as("app", "SELECT withdraw_create('race', %s)", (body("race1", "5"),))[0][0]
    r = race("op1", "SELECT withdraw_hold(%s, 'op1 holds')", "op2", "SELECT withdraw_hold(%s, 'op2 holds')", (held,))
    assert "error" in r and r["error"].pgcode == "55000" and "is in state held" in r["error"].pgerror, r
    big = run_as("app", "SELECT withdraw_create('race', %s)", (body("race2", "500"),))[0][0]
    r = race("ap1", "SELECT withdraw_approve(%s, 'ok')", "ap2", "SELECT withdraw_reject(%s, 'no')", (big,))
    assert "error" in r and "is in state queued" in r["error"].pgerror, r
    third = run_as("app", "SELECT withdraw_create('race', %s)", (body("race3", "500"),))[0][0]
    r = race("app", "SELECT withdraw_cancel(%s)", "ap1", "SELECT withdraw_approve(%s, 'ok')", (third,))
    assert "error" in r and "is in state cancelled" in r["error"].pgerror, r
    assert state(held) == "held" and state(big) == "queued" and state(third) == "cancelled"
    hold_events = cluster.value("SELECT count(*) FROM withdraw.event WHERE withdrawal_id = %s AND action = 'hold'", (held,))
    assert hold_events == 1, hold_events
    return "hold/hold, approve/reject, cancel/approve: the second got 55000 naming held / queued / cancelled"


def test_a_paused_account_sends_nothing_and_keeps_polling():
    new_account("pz", {})
    mock.configure({"zoomex": {"status_schedule": [["Pending Transfer", 3.0]]}})
    try:
        first = run_as("app", "SELECT withdraw_create('pz', %s)", (body("pz1", "3"),))[0][0]
        wait_until(lambda: state(first) in ("submitted", "processing"), 20, 0.1, "the first to be submitted")
        run_as("op1", "SELECT withdraw_account_pause('pz', 'provider incident')")
        second = run_as("app", "SELECT withdraw_create('pz', %s)", (body("pz2", "3"),))[0][0]
        polls = cluster.value("SELECT count(*) FROM withdraw.attempt WHERE withdrawal_id = %s AND kind = 'status'", (first,))
        time.sleep(1.2)
        assert creates("pz2") == [] and state(second) == "queued", state(second)
        later = cluster.value("SELECT count(*) FROM withdraw.attempt WHERE withdrawal_id = %s AND kind = 'status'", (first,))
        assert later >= polls + 2, (polls, later)
        health = run_as("monitor", "SELECT paused, not_sending FROM withdraw.health WHERE account = 'pz'")[0]
        assert health == (True, "paused by op1: provider incident"), health
        run_as("op1", "SELECT withdraw_account_resume('pz', 'incident over')")
        wait_until(lambda: executions("pz2") == 1, 10, 0.05, "the second to be sent after resume")
    finally:
        mock.configure({"zoomex": {"status_schedule": [["Pending Transfer", 0.1]]}})
    return f"nothing sent while paused; {later - polls} polls meanwhile; sent after resume"


def consume(conn, name, page=20):
    """One consumer transaction: read a page after the stored cursor, record
    each event (a repeat violates the primary key), store the new cursor."""
    cur = conn.cursor()
    cur.execute("SELECT position FROM consumer_cursor WHERE name = %s FOR UPDATE", (name,))
    position = cur.fetchone()[0]
    cur.execute("SELECT feed_id, event_id FROM withdraw_feed(%s, %s)", (position, page))
    rows = cur.fetchall()
    for feed_id, event_id in rows:
        cur.execute("INSERT INTO consumed (event_id, feed_id) VALUES (%s, %s)", (event_id, feed_id))
    if rows:
        cur.execute("UPDATE consumer_cursor SET position = %s WHERE name = %s", (rows[-1][0], name))
    conn.commit()
    return len(rows)


def test_feed_consumer_reads_every_event_once_across_a_restart():
    cluster.sql("CREATE TABLE consumer_cursor (name text PRIMARY KEY, position bigint NOT NULL)")
    cluster.sql("CREATE TABLE consumed (event_id bigint PRIMARY KEY, feed_id bigint NOT NULL UNIQUE,"
                " n bigserial)")
    cluster.sql("INSERT INTO consumer_cursor VALUES ('app', 0)")
    new_account("feed", {})
    stop = threading.Event()
    errors = []
    read = [0]

    def consumer():
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = cluster.connect(autocommit=False)
                if consume(conn, "app") == 0:
                    time.sleep(0.05)
                else:
                    read[0] += 1
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                conn = None          # the server restarts: connect again
                time.sleep(0.2)
            except psycopg2.Error as e:
                errors.append(e)
                return

    t = threading.Thread(target=consumer)
    t.start()
    ids = []
    try:
        for i in range(15):
            ids.append(cluster.value("SELECT withdraw_create('feed', %s)", (body(f"feed{i}", f"1.{i:02d}", f"1005{i:02d}"),)))
        wait_until(lambda: read[0] > 0, 10, 0.05, "the consumer to read")
        cluster.stop("fast")
        cluster.start()
        cluster.wait_ready()
        for i in range(15, 30):
            ids.append(cluster.value("SELECT withdraw_create('feed', %s)", (body(f"feed{i}", f"1.{i:02d}", f"1005{i:02d}"),)))
        try:
            wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.withdrawal WHERE id = ANY (%s)"
                                             " AND state = 'succeeded'", (ids,)) == 30, 40, 0.1, "all 30 to succeed")
        except AssertionError:
            raise AssertionError(cluster.sql("SELECT state, last_error, count(*) FROM withdraw.withdrawal"
                                             " WHERE id = ANY (%s) GROUP BY 1, 2", (ids,)))
        wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.event WHERE feed_id IS NULL") == 0
                   and cluster.value("SELECT count(*) FROM withdraw.event e WHERE NOT EXISTS"
                                     " (SELECT FROM consumed c WHERE c.event_id = e.id)") == 0,
                   20, 0.1, "the consumer to catch up")
    finally:
        stop.set()
        t.join(10)
    assert not errors, errors
    total = cluster.value("SELECT count(*) FROM withdraw.event")
    consumed = cluster.value("SELECT count(*) FROM consumed")
    assert consumed == total, (consumed, total)
    # in the order read, feed positions strictly increase
    order = [r[0] for r in cluster.sql("SELECT feed_id FROM consumed ORDER BY n")]
    assert all(a < b for a, b in zip(order, order[1:])), order[:20]
    per = cluster.value("SELECT count(*) FROM withdraw.event WHERE withdrawal_id = ANY (%s)", (ids,))
    assert per >= 30 * 3, per
    return f"{consumed} events read once each ({per} of the 30 withdrawals), across a restart"


def test_feed_an_event_committed_late_is_not_missed():
    """Event ids are given at insert and transactions commit in another
    order: an event with a lower id can become visible after a higher one.
    The feed positions events as they become visible, so a reader past the
    higher one still gets the lower one (reading by id would skip it)."""
    new_account("late", {})
    cluster.sql("SELECT withdraw_account_pause('late', 'feed test: nothing is sent')")
    x = run_as("app", "SELECT withdraw_create('late', %s)", (body("late1", "1"),))[0][0]
    y = run_as("app", "SELECT withdraw_create('late', %s)", (body("late2", "1"),))[0][0]
    head = cluster.value("SELECT coalesce(max(feed_id), 0) FROM withdraw_feed(0, 10000)")
    a = login("op1", autocommit=False)
    a.cursor().execute("SELECT withdraw_hold(%s, 'first, committed last')", (x,))
    run_as("op2", "SELECT withdraw_hold(%s, 'second, committed first')", (y,))
    first = cluster.sql("SELECT feed_id, event_id, withdrawal_id FROM withdraw_feed(%s, 100)", (head,))
    assert [r[2] for r in first] == [y], first
    cursor = first[-1][0]
    a.commit()
    a.close()
    x_event = cluster.value("SELECT id FROM withdraw.event WHERE withdrawal_id = %s AND action = 'hold'", (x,))
    assert x_event < first[-1][1], (x_event, first)       # by id, a reader past y's event would skip x's
    second = cluster.sql("SELECT feed_id, event_id, withdrawal_id FROM withdraw_feed(%s, 100)", (cursor,))
    assert [(r[1], r[2]) for r in second] == [(x_event, x)], second
    return f"event {x_event} (committed last) read after event {first[-1][1]}, at feed position {second[0][0]}"


def test_events_of_open_withdrawals_are_never_pruned():
    new_account("prune", {})
    cluster.sql("SELECT withdraw_account_pause('prune', 'prune test: nothing is sent')")
    keep = run_as("app", "SELECT withdraw_create('prune', %s)", (body("prune1", "1"),))[0][0]
    gone = run_as("app", "SELECT withdraw_create('prune', %s)", (body("prune2", "1"),))[0][0]
    run_as("op1", "SELECT withdraw_hold(%s, 'kept open')", (keep,))
    run_as("op1", "SELECT withdraw_hold(%s, 'to be cancelled')", (gone,))
    run_as("op1", "SELECT withdraw_cancel(%s)", (gone,))
    cluster.sql("UPDATE withdraw.event SET at = now() - interval '2 hours' WHERE withdrawal_id IN (%s, %s)", (keep, gone))
    cluster.sql("ALTER SYSTEM SET withdraw.retention = 3600")
    cluster.sql("SELECT pg_reload_conf()")
    try:
        wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.event WHERE withdrawal_id = %s", (gone,)) == 0,
                   20, 0.1, "the finished withdrawal's old events to be pruned")
        kept = cluster.value("SELECT count(*) FROM withdraw.event WHERE withdrawal_id = %s", (keep,))
        assert kept == 1, kept
    finally:
        cluster.sql("ALTER SYSTEM RESET withdraw.retention")
        cluster.sql("SELECT pg_reload_conf()")
    return "the held withdrawal's 2-hour-old event kept; the cancelled one's pruned"


def scrape(port):
    """The exporter's /metrics, or None while it is not answering yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return r.read().decode()
    except OSError:
        return None


def metric(text, name, **labels):
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_exporter_scrapes_the_health_metrics():
    assert os.access(EXPORTER, os.X_OK), f"{EXPORTER} is missing (test/setup.sh installs prometheus-postgres-exporter)"
    new_account("mon", {"stuck_after_ms": 1000})
    run_as("op1", "SELECT withdraw_account_pause('mon', 'monitoring test')")
    for i in range(3):
        run_as("app", "SELECT withdraw_create('mon', %s)", (body(f"mon{i}", "2"),))
    cluster.sql("UPDATE withdraw.withdrawal SET created_at = now() - interval '10 seconds'"
                " WHERE idempotency_key = 'mon0'")
    port = free_port()
    env = dict(os.environ, DATA_SOURCE_NAME=f"host={cluster.dir} port={cluster.port} user=monitor dbname=postgres sslmode=disable")
    proc = subprocess.Popen([EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
                             f"--extend.query-path={os.path.join(ROOT, 'sql', 'withdraw_prometheus.yaml')}",
                             "--disable-default-metrics", "--disable-settings-metrics"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        text = wait_until(lambda: (lambda t: t if t and "withdraw_health_open" in t else None)(scrape(port)),
                          20, 0.2, "the exporter's withdraw metrics")
    finally:
        proc.terminate()
        err = proc.communicate(timeout=10)[1].decode(errors="replace")
    expect = {"open": 3, "stuck": 1, "paused": 1, "sending": 0, "review": 0, "awaiting_approval": 0, "held": 0}
    got = {k: metric(text, f"withdraw_health_{k}", account="mon") for k in expect}
    assert got == {k: float(v) for k, v in expect.items()}, (got, err[-2000:])
    queued = metric(text, "withdraw_state_withdrawals", account="mon", state="queued")
    assert queued == 3.0, queued
    oldest = metric(text, "withdraw_health_oldest_open_age_s", account="mon")
    assert 9.0 <= oldest < 120.0, oldest
    appr = metric(text, "withdraw_health_open", account="appr")
    sql_appr = cluster.value("SELECT open FROM withdraw.health WHERE account = 'appr'")
    assert appr is None or appr == float(sql_appr), (appr, sql_appr)
    run_as("op1", "SELECT withdraw_account_resume('mon', 'done')")
    return f"scraped: {got}; queued {queued}; oldest {oldest:.1f}s"


def main():
    run_suite("integration: payout desk", globals(),
              {"zoomex": {"keys": KEYS, "create_interval_s": 0, "status_schedule": [["Pending Transfer", 0.1]]}},
              setup=setup)


if __name__ == "__main__":
    main()
