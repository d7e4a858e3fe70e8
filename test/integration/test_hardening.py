"""Integration suite: the workers and the extension's functions cannot be
hijacked by a database owner (issue 14, finding 1).

A non-superuser, mallory, owns the workers' database.  She plants functions
and operators that the extension's SQL would resolve if it took names from
the path she controls: now(), *(integer, interval) (an exact match beats
pg_catalog's *(float8, interval) wherever it sits on the path),
+(timestamptz, interval) and -(timestamptz, interval), in a schema of hers
and in public, and sets the database's search_path to her schema first.
Each planted object writes a row to a marker table when it runs.  Then a
full cycle runs through the real workers and mock providers: zoomex creates
and status polls, a ccpayment webhook through withdraw_callback (the
callback shim, as a role holding only withdraw_webhook), the pruning of
old history; the marker stays empty.

A spy trigger (the test's, as superuser) on withdraw.attempt records the
role the workers' SQL runs as and whether it can SET ROLE back to a
superuser: withdraw_worker, and no.

Run: python3 test/integration/test_hardening.py [name-filter ...]  (as a non-root user)
"""

import json

import psycopg2

from harness import run_suite, wait_until

cluster = None
mock = None
shim = None

ZOOMEX_KEY, ZOOMEX_SECRET = "key-h1", "secret-h1-xxxxxxxx"
APP, APP_SECRET = "ccp-app-h", "ccp-secret-h"

PLANTS = """
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE FUNCTION {s}.now() RETURNS timestamptz LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO public.pwned VALUES (current_user, session_user,
        (SELECT backend_type FROM pg_stat_activity WHERE pid = pg_backend_pid()), '{s}.now()');
    RETURN pg_catalog.now();
END $$;
CREATE FUNCTION {s}.mul(integer, interval) RETURNS interval LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO public.pwned VALUES (current_user, session_user,
        (SELECT backend_type FROM pg_stat_activity WHERE pid = pg_backend_pid()), '{s}.*(integer, interval)');
    RETURN $2 * $1::float8;
END $$;
CREATE OPERATOR {s}.* (LEFTARG = integer, RIGHTARG = interval, FUNCTION = {s}.mul);
CREATE FUNCTION {s}.plus(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO public.pwned VALUES (current_user, session_user,
        (SELECT backend_type FROM pg_stat_activity WHERE pid = pg_backend_pid()), '{s}.+(timestamptz, interval)');
    RETURN $1 OPERATOR(pg_catalog.+) $2;
END $$;
CREATE OPERATOR {s}.+ (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = {s}.plus);
CREATE FUNCTION {s}.minus(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql
    SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO public.pwned VALUES (current_user, session_user,
        (SELECT backend_type FROM pg_stat_activity WHERE pid = pg_backend_pid()), '{s}.-(timestamptz, interval)');
    RETURN $1 OPERATOR(pg_catalog.-) $2;
END $$;
CREATE OPERATOR {s}.- (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = {s}.minus);
"""


def as_role(user, statements):
    conn = psycopg2.connect(host=cluster.dir, port=cluster.port, user=user, dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statements)
    finally:
        conn.close()


def pwned():
    return cluster.sql("SELECT who, session_who, backend, what FROM public.pwned")


def test_planted_objects_resolve_where_the_path_says():
    """The plants work: a session that takes the database's search_path runs
    them (so an empty marker below means something)."""
    conn = psycopg2.connect(host=cluster.dir, port=cluster.port, user="mallory", dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT now() - 2 * interval '1 second' < now()")
            assert cur.fetchone()[0] is True
    finally:
        conn.close()
    hits = pwned()
    assert {h[3] for h in hits} >= {"evil.now()", "evil.*(integer, interval)", "evil.-(timestamptz, interval)"}, hits
    assert all(h[0] == "mallory" for h in hits), hits
    cluster.sql("TRUNCATE public.pwned")
    return f"{len(hits)} planted calls from mallory's own session"


def test_a_full_cycle_runs_none_of_the_planted_objects():
    app = psycopg2.connect(host=cluster.dir, port=cluster.port, user="app", dbname="postgres")
    app.autocommit = True
    try:
        with app.cursor() as cur:
            cur.execute("SHOW search_path")
            path = cur.fetchone()[0]
            assert path.startswith("evil"), path
            cur.execute("SELECT withdraw_create('zx', %s)", (json.dumps(
                {"coin": "USDT", "addressType": 3, "address": "100200", "amount": "1.25"}),))
            zid = cur.fetchone()[0]
            cur.execute("SELECT withdraw_create('ccp', %s)", (json.dumps(
                {"orderId": "hard-1", "coinId": 1280, "chain": "POLYGON",
                 "address": "0xabc0000000000000000000000000000000000002", "amount": "2.5"}),))
            cid = cur.fetchone()[0]
    finally:
        app.close()
    zrow = cluster.wait_withdrawal(zid, ["succeeded"], timeout=20)
    polls = cluster.value("SELECT count(*) FROM withdraw.attempts WHERE withdrawal_id = %s AND kind = 'status'", (zid,))
    assert polls >= 1, polls
    cluster.wait_withdrawal(cid, ["succeeded"], timeout=20)
    shim.wait_calls("callback", "ccp", count=1, timeout=15)
    verdicts = [v[:2] for v in cluster.verdicts(cid)]
    assert ("withdrawal", "applied") in verdicts or ("withdrawal", "recorded") in verdicts, verdicts

    # pruning: everything older than a second goes
    cluster.sql("ALTER SYSTEM SET withdraw.retention = '1s'")
    cluster.sql("SELECT pg_reload_conf()")
    try:
        wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.attempt WHERE withdrawal_id IN (%s, %s)",
                                         (zid, cid)) == 0, 20, 0.2, "the history to be pruned")
    finally:
        cluster.sql("ALTER SYSTEM RESET withdraw.retention")
        cluster.sql("SELECT pg_reload_conf()")
    hits = pwned()
    assert hits == [], hits
    return f"zoomex {zrow['state']} after {polls} polls, ccpayment webhook {verdicts}, history pruned; marker empty"


def test_the_workers_sql_runs_as_withdraw_worker_and_cannot_set_role():
    # only the workers insert attempts in this suite
    seen = cluster.sql("SELECT DISTINCT who, set_role FROM public.seen")
    assert seen, "the spy saw no insert by a worker"
    assert seen == [("withdraw_worker", "refused")], seen
    return f"worker inserts seen as {seen[0][0]}; SET ROLE postgres {seen[0][1]}"


def test_the_worker_role_holds_no_power():
    r = cluster.sql("SELECT rolsuper, rolcanlogin, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication,"
                    " (SELECT count(*) FROM pg_auth_members WHERE member = r.oid)"
                    " FROM pg_roles r WHERE rolname = 'withdraw_worker'")
    assert r == [(False, False, False, False, False, False, 0)], r
    return "NOLOGIN, no attribute, member of no role"


def setup():
    mock.configure({"ccpayment": {"apps": {APP: {"secret": APP_SECRET,
                                                 "webhook_url": shim.url("callback", "ccp")}}}})
    cluster.sql("SELECT withdraw_account_create('zx', 'zoomex', %s, %s, '{}')",
                (mock.base_url("zoomex"), json.dumps({"api_key": ZOOMEX_KEY, "api_secret": ZOOMEX_SECRET})))
    cluster.sql("SELECT withdraw_account_create('ccp', 'ccpayment', %s, %s, %s)",
                (mock.base_url("ccpayment"), json.dumps({"app_id": APP, "app_secret": APP_SECRET}),
                 json.dumps({"api_version": 2, "poll_interval_ms": 300})))
    cluster.sql("""
        CREATE ROLE mallory LOGIN;
        CREATE ROLE app LOGIN IN ROLE withdraw_user;
        ALTER DATABASE postgres OWNER TO mallory;
        CREATE TABLE public.pwned (who name, session_who name, backend text, what text);
        GRANT INSERT ON public.pwned TO PUBLIC;
        -- the spy: who runs the workers' inserts, and can it become a superuser again
        CREATE TABLE public.seen (who name, set_role text);
        GRANT INSERT ON public.seen TO PUBLIC;
        CREATE FUNCTION public.spy() RETURNS trigger LANGUAGE plpgsql
            SET search_path = pg_catalog AS $$
        DECLARE outcome text := 'allowed';
        BEGIN
            BEGIN
                EXECUTE 'SET LOCAL ROLE postgres';
            EXCEPTION WHEN OTHERS THEN
                outcome := 'refused';
            END;
            INSERT INTO public.seen VALUES (current_user, outcome);
            RETURN NULL;
        END $$;
        CREATE TRIGGER zz_spy AFTER INSERT ON withdraw.attempt FOR EACH STATEMENT EXECUTE FUNCTION public.spy();
    """)
    as_role("mallory", PLANTS.format(s="evil")
            + PLANTS.replace("CREATE SCHEMA evil;", "").replace("GRANT USAGE ON SCHEMA evil TO PUBLIC;", "")
            .format(s="public")
            + "ALTER DATABASE postgres SET search_path = evil, pg_catalog, public;")
    # the workers take the database's settings when they connect: connect again
    cluster.stop()
    cluster.start()
    cluster.wait_ready()


def main():
    run_suite("hardening", globals(),
              {"zoomex": {"keys": {ZOOMEX_KEY: ZOOMEX_SECRET},
                          "status_schedule": [["Pending Review", 0.2], ["Pending Transfer", 0.2]]},
               "ccpayment": {"settle_after_s": 0.5, "webhook_retry_delays_s": [0.3, 0.6, 1]}},
              {"withdraw.poll_interval": "200"},
              setup=setup, with_shim=True)


if __name__ == "__main__":
    main()
