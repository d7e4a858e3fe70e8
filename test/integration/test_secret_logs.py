"""Credentials never reach the server log through an error (issue 14, finding 4).

The server runs with log_min_error_statement = error (every ERROR is logged
with its statement) and log_statement = none.  More than fifty account calls
that fail, of every kind — bad options, bad credentials, a duplicate name, an
unknown provider, a bad base_url, oversize values, NULLs, malformed jsonb
literals, errors after the call returned, a lock timeout inside the call,
prepared statements (whose EXECUTE text names no credential function),
PL/pgSQL functions holding the call (error contexts quote their statements),
bind parameters of the extended protocol — each carry a secret of their own.
Afterwards the server log is searched for every secret: zero hits.  A canary
statement that names no credential function proves the log does record
statements with their errors.

Run: python3 test/integration/test_secret_logs.py [name filter]
"""

import ctypes
import ctypes.util
import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_suite  # noqa: E402

import psycopg2  # noqa: E402

SETTINGS = {"log_min_error_statement": "error", "log_statement": "'none'",
            "log_min_messages": "warning", "log_error_verbosity": "verbose"}

# every secret handed to the server; each must be absent from the log
SECRETS = []


def secret():
    value = f"Sx{len(SECRETS):03d}{secrets.token_hex(8)}"
    SECRETS.append(value)
    return value


def zx(sec=None):
    """zoomex credentials holding a fresh secret."""
    return '{"api_key": "k", "api_secret": "%s"}' % (sec or secret())


def cases():
    """(name, statement) pairs; every statement fails and carries a secret."""
    c = []

    def add(name, sql):
        c.append((name, sql))

    create = "SELECT withdraw_account_create(%s, %s, %s, %s, %s)"

    def q(v):
        return "NULL" if v is None else "'" + v.replace("'", "''") + "'"

    def acct(name, provider, url, cred, opts="{}"):
        return create % (q(name), q(provider), q(url), q(cred), q(opts))

    url = "http://127.0.0.1:9/x"
    # bad options, checked after the credentials were parsed
    for opts in ['{"nonsense": 1}', '{"max_in_flight": "many"}', '{"max_in_flight": -4}',
                 '{"poll_interval_ms": 1e30}', '{"limits": 5}', '{"limits": {"USDT": 3}}',
                 '{"limits": {"USDT": {"weekly": "5"}}}', '{"limits": {"USDT": {"single": "-1"}}}',
                 '{"limits": {"USDT": {"daily": 7}}}', '{"recv_window": "x"}', '[1, 2]',
                 '{"deadline_ms": true}', '{"create_interval_ms": -1}',
                 # issue 17: the desk's options
                 '{"approval": {"USDT": {"above": "1", "expires_ms": 1e30}}}', '{"stuck_after_ms": 1e30}',
                 '{"allowlist": {"enforce": 1}}', '{"approval": {"USDT": {"above": 5}}}']:
        add(f"zoomex options {opts}", acct("zx_new", "zoomex", url, zx(), opts))
    for opts in ['{"sign_mode": "plain"}', '{"notify_url": "ftp://x"}', '{"pay_codes": [1]}',
                 '{"pay_codes": {"1004": 5}}', '{"rules_ttl_ms": 1}', '{"notify_window_s": 0}']:
        add(f"fiat options {opts}", acct("fiat_new", "fiat_gateway", url,
                                         '{"uid": "u", "secret_key": "%s"}' % secret(), opts))
    add("ccpayment options", acct("cc_new", "ccpayment", url,
                                  '{"app_id": "a", "app_secret": "%s"}' % secret(), '{"api_version": 9}'))
    # bad credentials
    add("zoomex credentials lack a key", acct("zx_new", "zoomex", url, '{"api_key": "%s"}' % secret()))
    add("zoomex credentials unknown key", acct("zx_new", "zoomex", url,
                                               '{"api_key": "k", "api_secret": "s", "%s": "v"}' % secret()))
    add("zoomex credential empty", acct("zx_new", "zoomex", url, '{"api_key": "", "api_secret": "%s"}' % secret()))
    add("zoomex credential a number", acct("zx_new", "zoomex", url,
                                           '{"api_key": 5, "api_secret": "%s"}' % secret()))
    add("credentials an array", acct("zx_new", "zoomex", url, '["%s"]' % secret()))
    add("credentials a string", acct("zx_new", "zoomex", url, '"%s"' % secret()))
    add("p99 both jwt and key", acct("p_new", "p99", url,
                                     '{"jwt": "%s", "api_key": "k", "api_secret": "s"}' % secret()))
    add("p99 key without secret", acct("p_new", "p99", url, '{"api_key": "%s"}' % secret()))
    add("ccpayment lacks app_id", acct("cc_new", "ccpayment", url, '{"app_secret": "%s"}' % secret()))
    add("chainup bad private key", acct("cu_new", "chainup", url,
                                        '{"app_id": "a", "merchant_private_key": "-----BEGIN PRIVATE KEY-----\\n%s\\n'
                                        '-----END PRIVATE KEY-----", "platform_public_key": "x"}' % secret()))
    add("chainup base64 garbage key", acct("cu_new", "chainup", url,
                                           '{"app_id": "a", "merchant_private_key": "%s", '
                                           '"platform_public_key": "x"}' % secret()))
    add("fiat lacks uid", acct("fiat_new", "fiat_gateway", url, '{"secret_key": "%s"}' % secret()))
    # the account, the provider, the URL
    add("duplicate name", acct("dup", "zoomex", url, zx()))
    add("unknown provider", acct("zx_new", "zoomax", url, zx()))
    add("provider NULL", acct("zx_new", None, url, zx()))
    add("name NULL", acct(None, "zoomex", url, zx()))
    add("bad name", acct("Bad Name!", "zoomex", url, zx()))
    add("name too long", acct("a" * 80, "zoomex", url, zx()))
    add("base_url ftp", acct("zx_new", "zoomex", "ftp://h", zx()))
    add("base_url with a query", acct("zx_new", "zoomex", "https://h/?a=1", zx()))
    add("base_url with a space", acct("zx_new", "zoomex", "https://h x", zx()))
    add("base_url without a host", acct("zx_new", "zoomex", "https://", zx()))
    add("base_url oversize", acct("zx_new", "zoomex", "https://h/" + "p" * 3000, zx()))
    add("oversize secret and bad option", acct("zx_new", "zoomex", url,
                                               '{"api_key": "k", "api_secret": "%s%s"}' % (secret(), "z" * 200000),
                                               '{"bogus": 1}'))
    # malformed jsonb literals: parsed before the function runs, and jsonb's
    # error detail and context quote the text
    add("jsonb trailing comma", acct("zx_new", "zoomex", url, '{"api_key": "k", "api_secret": "%s",}' % secret()))
    add("jsonb unquoted token", acct("zx_new", "zoomex", url, '{"api_key": "k", "api_secret": %s}' % secret()))
    add("jsonb unterminated", acct("zx_new", "zoomex", url, '{"api_key": "k", "api_secret": "%s' % secret()))
    add("jsonb bad escape", acct("zx_new", "zoomex", url, '{"api_key": "k", "api_secret": "%s\\q"}' % secret()))
    add("jsonb in options after credentials", acct("zx_new", "zoomex", url, zx(), '{"x": %s' % secret()))
    add("cast of a text literal", "SELECT withdraw_account_create('zx_new', 'zoomex', '%s', "
        "'{\"api_key\": %s}'::text::jsonb)" % (url, secret()))
    add("named arguments, quoted name", 'SELECT "withdraw_account_create"(name => \'zx_new\', provider => '
        "'zoomex', base_url => '%s', credentials => '%s', options => '{\"x\": 1}')" % (url, zx()))
    add("schema-qualified, upper case", "SELECT PUBLIC.WITHDRAW_ACCOUNT_CREATE('dup', 'zoomex', '%s', '%s')"
        % (url, zx()))
    # updates
    upd = "SELECT withdraw_account_update(%s, base_url => %s, credentials => %s, options => %s)"
    add("update of a missing account", upd % ("'nosuch'", "NULL", q(zx()), "NULL"))
    add("update bad credentials", upd % ("'dup'", "NULL", q('{"api_key": "%s"}' % secret()), "NULL"))
    add("update bad options after credentials", upd % ("'dup'", "NULL", q(zx()), q('{"nope": 1}')))
    add("update bad base_url with credentials", upd % ("'dup'", "'gopher://x'", q(zx()), "NULL"))
    add("update fiat bad sign_mode", upd % ("'fiat'", "NULL", q('{"uid": "u", "secret_key": "%s"}' % secret()),
                                            q('{"sign_mode": "md5"}')))
    add("update fiat bad limits", upd % ("'fiat'", "NULL", q('{"uid": "u", "secret_key": "%s"}' % secret()),
                                         q('{"limits": {"KRW": {"single": "ten"}}}')))
    add("update malformed jsonb", upd % ("'dup'", "NULL", "'{\"api_key\": %s'" % secret(), "NULL"))
    # errors raised after the function returned, in the same statement or query string
    add("division by zero after the call", "SELECT withdraw_account_update('dup', credentials => '%s'), 1/0" % zx())
    add("second statement of the query fails", "SELECT withdraw_account_update('dup', credentials => '%s'); "
        "SELECT 1/0" % zx())
    add("a function taking a secret, malformed jsonb",
        "SELECT withdraw._zoomex_signature('%s', '{bad')" % secret())
    add("fiat signature function, malformed params",
        "SELECT withdraw._fiat_gateway_signature('{bad', '%s', 'amp_key')" % secret())
    add("direct write of account_secret refused",
        "INSERT INTO withdraw.account_secret (account_id, credentials) VALUES (-1, '{\"k\": \"%s\"}')" % secret())
    return c


def test_malformed_account_calls_leave_no_secret_in_the_log():
    conn = cluster.connect()
    cur = conn.cursor()
    statements = cases()
    failed = 0
    for name, sql in statements:
        try:
            cur.execute(sql)
        except psycopg2.Error:
            failed += 1
            continue
        raise AssertionError(f"case {name!r} did not fail")
    # a prepared statement: EXECUTE's text names no credential function, the
    # function's own errors must hide it
    cur.execute("PREPARE mk(text, text, jsonb, jsonb) AS SELECT withdraw_account_create($1, $2, "
                "'http://127.0.0.1:9/x', $3, $4)")
    fiat = '{"uid": "u", "secret_key": "%s"}'
    for n, args in enumerate([("dup", "zoomex", zx(), "{}"),
                              ("zx_new", "zoomex", '{"api_key": "%s"}' % secret(), "{}"),
                              ("Bad!", "zoomex", zx(), "{}"),
                              ("zx_new", "zoomex", zx(), '{"limits": {"USDT": {"single": "-1"}}}'),
                              ("zx_new", "zoomex", zx(), '{"limits": {"USDT": {"hourly": "1"}}}'),
                              ("fiat_new", "fiat_gateway", fiat % secret(), '{"sign_mode": "md5"}'),
                              ("fiat_new", "fiat_gateway", fiat % secret(), '{"pay_codes": 4}')]):
        try:
            cur.execute("EXECUTE mk(%s, %s, %s, %s)", args)
        except psycopg2.Error:
            failed += 1
        else:
            raise AssertionError(f"EXECUTE case {n} did not fail")
    # malformed jsonb in EXECUTE's arguments: parsed before the function
    # runs, quoted in jsonb's error context; EXECUTE's text does not name it
    for sql in ["EXECUTE mk('zx_new', 'zoomex', '{\"api_key\": %s}', '{}')" % secret(),
                "  execute   \"mk\" ('zx_new', 'zoomex', '{\"api_key\": \"k\", \"api_secret\": \"%s\",}', '{}')"
                % secret(),
                "SELECT 1; EXECUTE mk('zx_new', 'zoomex', '%s', '{\"x\": %s')" % (zx(), secret())]:
        try:
            cur.execute(sql)
        except psycopg2.Error:
            failed += 1
        else:
            raise AssertionError(f"EXECUTE case {sql[:30]!r} did not fail")
    # an error the account code never raises itself: a lock timeout inside
    # the function (another session is changing the account)
    holder = cluster.connect(autocommit=False)
    holder.cursor().execute("SELECT withdraw_account_update('dup', options => '{}')")
    cur.execute("SET lock_timeout = '200ms'")
    cur.execute("PREPARE up(jsonb) AS SELECT withdraw_account_update('dup', credentials => $1)")
    for text in [zx(), None]:
        try:
            if text is None:    # the same, the call in the statement's text
                cur.execute("SELECT withdraw_account_update('dup', credentials => %s)", (zx(),))
            else:
                cur.execute("EXECUTE up(%s)", (text,))
        except psycopg2.errors.LockNotAvailable:
            failed += 1
        else:
            raise AssertionError("the update did not wait for the lock")
    holder.rollback()
    holder.close()
    cur.execute("RESET lock_timeout")
    # a function whose body holds the call, secret and all: the failing
    # statement's text names neither, the error context quotes the body's
    # statement
    for n, body in enumerate([
            "PERFORM withdraw_account_create('dup', 'zoomex', 'http://127.0.0.1:9/x', '%s')" % zx(),
            "PERFORM withdraw_account_create('zx_new', 'zoomex', 'http://127.0.0.1:9/x', "
            "'{\"api_key\": %s}')" % secret(),
            "EXECUTE 'SELECT withdraw_account_update(''dup'', credentials => ''%s'')'; "
            "PERFORM 1/0" % zx()]):
        cur.execute("CREATE FUNCTION pg_temp.setup_%d() RETURNS void LANGUAGE plpgsql AS $f$BEGIN %s; END$f$"
                    % (n, body))
        try:
            cur.execute(f"SELECT pg_temp.setup_{n}()")
        except psycopg2.Error:
            failed += 1
        else:
            raise AssertionError(f"function case {n} did not fail")
    conn.close()
    failed += bind_parameter_calls()
    log = cluster.log_text()
    leaked = [s for s in SECRETS if s in log]
    errors = log.count("ERROR:")
    assert not leaked, f"{len(leaked)} of {len(SECRETS)} secrets in the log, e.g. " + \
        next(line for line in log.splitlines() if leaked[0] in line)[:300]
    assert errors >= failed, (errors, failed)
    # the log does record statements with their errors: a canary statement
    # that names no credential function is in it
    canary = "canary" + secrets.token_hex(6)
    try:
        cluster.sql(f"SELECT '{canary}'::integer")
    except psycopg2.Error:
        pass
    assert f"STATEMENT:  SELECT '{canary}'::integer" in cluster.log_text(), "statements are not logged"
    return f"{failed} failing calls, {len(SECRETS)} secrets, {errors} errors logged, 0 secrets in the log"


def bind_parameter_calls():
    """Credentials as bind parameters of the extended protocol (libpq's
    PQexecParams, which psycopg2 does not use): never part of the statement
    text; here even with log_parameter_max_length_on_error = -1, which puts
    parameter values into error contexts."""
    pq = ctypes.CDLL(ctypes.util.find_library("pq") or "libpq.so.5")
    pq.PQconnectdb.restype = ctypes.c_void_p
    pq.PQconnectdb.argtypes = [ctypes.c_char_p]
    pq.PQexec.restype = ctypes.c_void_p
    pq.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    pq.PQexecParams.restype = ctypes.c_void_p
    pq.PQexecParams.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p,
                                ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    pq.PQresultStatus.argtypes = [ctypes.c_void_p]
    pq.PQclear.argtypes = [ctypes.c_void_p]
    pq.PQfinish.argtypes = [ctypes.c_void_p]
    pq.PQstatus.argtypes = [ctypes.c_void_p]
    conn = pq.PQconnectdb(f"host={cluster.dir} port={cluster.port} user=postgres dbname=postgres".encode())
    assert pq.PQstatus(conn) == 0, "libpq connection failed"
    failed = 0
    try:
        for max_len in ("0", "-1"):
            pq.PQclear(pq.PQexec(conn, f"SET log_parameter_max_length_on_error = {max_len}".encode()))
            for name, cred in [("dup", zx()), ("zx_new", '{"api_key": "k", "api_secret": %s}' % secret()),
                               ("zx_new", '{"api_key": "%s"}' % secret())]:
                values = (ctypes.c_char_p * 4)(name.encode(), b"zoomex", b"http://127.0.0.1:9/x", cred.encode())
                res = pq.PQexecParams(conn, b"SELECT withdraw_account_create($1, $2, $3, $4::jsonb)", 4, None,
                                      values, None, None, 0)
                status = pq.PQresultStatus(res)
                pq.PQclear(res)
                assert status == 7, f"bind case {name} did not fail (status {status})"  # PGRES_FATAL_ERROR
                failed += 1
    finally:
        pq.PQfinish(conn)
    return failed


def setup():
    cluster.sql("SELECT withdraw_account_create('dup', 'zoomex', 'http://127.0.0.1:9/x', "
                "'{\"api_key\": \"k\", \"api_secret\": \"setup\"}')")
    cluster.sql("SELECT withdraw_account_create('fiat', 'fiat_gateway', 'http://127.0.0.1:9/x', "
                "'{\"uid\": \"u\", \"secret_key\": \"setup\"}')")


if __name__ == "__main__":
    run_suite("secret_logs", globals(), {}, SETTINGS, setup=setup)
