"""Security suite (issue 7): secrets at rest, the key file, no leaks into the
server log / tables / dumps, TLS verification.  A real server (with
log_statement = all and log_min_messages = debug1), the real worker and the mock
providers over 127.0.0.1.

Credentials are given to withdraw_account_create through pg_read_file of a
file the server reads, as the README advises: PostgreSQL itself logs a
statement's text before any extension runs, so a secret written into the
SQL text would be in the log at log_statement = all whatever the extension
does.  Everything the extension writes is then searched for every secret.

Run: python3 test/integration/test_security.py [name-filter ...]  (as a non-root user)
"""

import datetime
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from harness import pg_bindir, run_suite, wait_until

cluster = None
mock = None
WORK = tempfile.mkdtemp(prefix="withdraw-security-")

ZOOMEX_SECRET = "zx-S3CRET-" + os.urandom(8).hex()
CCP_SECRET = "ccp-S3CRET-" + os.urandom(8).hex()
FIAT_SECRET = "fiat-S3CRET-" + os.urandom(8).hex()
_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CHAINUP_PEM = _key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
CHAINUP_PUB = _key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()
# a line from the middle of the private key: any copy of the key contains it
CHAINUP_KEY_LINE = CHAINUP_PEM.splitlines()[10]
SECRETS = [ZOOMEX_SECRET, CCP_SECRET, FIAT_SECRET, CHAINUP_KEY_LINE]


def credentials_file(name, creds):
    """The credentials in a file the server can read; the SQL names the file only."""
    path = os.path.join(WORK, f"{name}.json")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(creds, f)
    return path


def account(name, provider, creds, options=None, base=None):
    path = credentials_file(name, creds)
    cluster.sql("SELECT withdraw_account_create(%s, %s, %s, pg_read_file(%s)::jsonb, %s)",
                (name, provider, base or mock.base_url(provider), path, json.dumps(options or {})))


def create(acct, body):
    return cluster.value("SELECT withdraw_create(%s, %s)", (acct, json.dumps(body)))


def state(wid):
    return cluster.value("SELECT state FROM withdraw.withdrawals WHERE id = %s", (wid,))


def wait_state(wid, states, timeout=20):
    return cluster.wait_withdrawal(wid, states, timeout=timeout)["state"]


def zoomex_request(**kw):
    body = {"coin": "USDT", "addressType": 3, "address": "100200", "amount": "1.25"}
    body.update(kw)
    return body


def reload(**settings):
    for k, v in settings.items():
        if v is None:
            cluster.sql(f"ALTER SYSTEM RESET {k}")
        else:
            cluster.sql(f"ALTER SYSTEM SET {k} = %s", (v,))
    cluster.sql("SELECT pg_reload_conf()")


def key_file(name, mode=0o600, content=None):
    path = os.path.join(WORK, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as f:
        f.write(content if content is not None else os.urandom(32).hex() + "\n")
    os.chmod(path, mode)
    return path


def search_bytes(root, needles):
    """Paths under root whose bytes contain any needle."""
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                data = open(path, "rb").read()
            except OSError:
                continue
            for n in needles:
                if n.encode() in data:
                    hits.append((path, n[:12]))
    return hits


def test_credentials_are_sealed_in_the_table():
    rows = cluster.sql("SELECT credentials IS NULL, length(sealed), key_id, credential_keys"
                       " FROM withdraw.account_secret ORDER BY account_id")
    assert rows and all(r[0] and r[1] > 40 and len(r[2]) == 16 for r in rows), rows
    # a sealed value is bound to its account: copied onto another, it does not open
    ids = [r[0] for r in cluster.sql("SELECT account_id FROM withdraw.account_secret ORDER BY account_id")]
    try:
        cluster.sql("SELECT withdraw._credentials(%s, (SELECT sealed FROM withdraw.account_secret"
                    " WHERE account_id = %s), key_id) FROM withdraw.account_secret WHERE account_id = %s",
                    (ids[1], ids[0], ids[1]))
        raise AssertionError("a sealed value opened for another account")
    except psycopg2.Error as e:
        assert e.pgcode == "XX001" and "do not authenticate" in e.pgerror, e.pgerror
    # no role but the owner reads the table or opens it
    cluster.sql("CREATE ROLE curious LOGIN IN ROLE withdraw_admin, withdraw_user")
    for q in ("SELECT * FROM withdraw.account_secret", "SELECT withdraw._credentials(1, '\\x00', 'x')"):
        try:
            cluster.sql(f"SET ROLE curious; {q}")
            raise AssertionError(f"withdraw_admin + withdraw_user could run {q}")
        except psycopg2.Error as e:
            assert e.pgcode == "42501", e.pgcode
    return f"{len(rows)} accounts sealed, each bound to its id; curious roles denied"


def test_traffic_then_no_secret_in_log_tables_dump_or_data_directory():
    wid = create("zx", zoomex_request())
    wait_state(wid, ["succeeded"])
    # a refused signature, failing statements, a failing account update
    account("zx_bad", "zoomex", {"api_key": "key1", "api_secret": ZOOMEX_SECRET + "-wrong"})
    bad = create("zx_bad", zoomex_request())
    wait_state(bad, ["rejected"])
    path = credentials_file("broken", {"api_key": "k", "api_secret": ZOOMEX_SECRET, "extra": "x"})
    try:
        cluster.sql("SELECT withdraw_account_update('zx', credentials => pg_read_file(%s)::jsonb)", (path,))
        raise AssertionError("an unknown credential key was accepted")
    except psycopg2.Error as e:
        assert ZOOMEX_SECRET not in str(e)
    wid2 = create("ccp", {"address": "9454818", "token_id": "t1", "value": "0.05"})
    wait_state(wid2, ["succeeded"])
    cluster.sql("CHECKPOINT")

    dump = subprocess.run([os.path.join(pg_bindir(), "pg_dump"), "-h", cluster.dir, "-p", str(cluster.port),
                           "-U", "postgres", "postgres"], capture_output=True, check=True).stdout
    in_dump = [s[:12] for s in SECRETS if s.encode() in dump]
    log = cluster.log_text()
    in_log = [s[:12] for s in SECRETS if s in log]
    tables = cluster.sql("SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'withdraw'::regnamespace"
                         " AND c.relkind IN ('r', 'v')")
    in_tables = []
    for (t,) in tables:
        text = json.dumps(cluster.sql(f"SELECT * FROM withdraw.{t}"), default=str)
        in_tables += [(t, s[:12]) for s in SECRETS if s in text]
    in_files = search_bytes(cluster.data, SECRETS)
    assert "statement: SELECT withdraw_account_create" in log, "log_statement = all is not in effect"
    # the dump is a real backup: the extension's tables are registered for pg_dump
    for table in (b"withdraw.withdrawal", b"withdraw.attempt", b"withdraw.account_secret", b"withdraw.event"):
        assert b"COPY " + table in dump, table
    assert (in_dump, in_log, in_tables, in_files) == ([], [], [], []), (in_dump, in_log, in_tables, in_files)
    # the dump's sealed values are no use without the key: a restore cannot open them
    return (f"{len(SECRETS)} secrets: 0 hits in pg_dump ({len(dump)} bytes, with the data), the server log "
            f"({len(log.splitlines())} lines at log_statement=all, debug1), {len(tables)} tables/views "
            f"and every file of the data directory incl. WAL")


def test_without_the_key_file_the_worker_refuses_and_says_why():
    moved = cluster.key_file + ".away"
    os.rename(cluster.key_file, moved)
    try:
        wid = create("zx", zoomex_request())
        why = wait_until(lambda: cluster.value("SELECT last_error FROM withdraw.workers"
                                               " WHERE last_error LIKE 'not sending:%%'"), 10, 0.1,
                         "the worker to report it is not sending")
        assert state(wid) == "queued", state(wid)
        assert "withdraw.secrets_key_file" in why, why
        try:
            account("zx_nokey", "zoomex", {"api_key": "k", "api_secret": ZOOMEX_SECRET})
            raise AssertionError("an account was created without the key")
        except psycopg2.Error as e:
            assert e.pgcode == "58P01" or e.pgcode == "F0000", e.pgcode
    finally:
        os.rename(moved, cluster.key_file)
    wait_state(wid, ["succeeded"])
    return f"queued while the key was gone ({why}); sent once it was back"


def test_key_files_are_checked():
    cases = {
        "group-readable": key_file("loose.key", 0o644),
        "not hex": key_file("text.key", 0o600, "not a key\n"),
        "short": key_file("short.key", 0o600, "abcd\n"),
        "inside the data directory": None,
        "a symbolic link": os.path.join(WORK, "link.key"),
    }
    # a link to a good key: a path that can be re-aimed is refused
    if not os.path.lexists(cases["a symbolic link"]):
        os.symlink(key_file("target.key"), cases["a symbolic link"])
    inside = os.path.join(cluster.data, "secrets.key")
    with open(os.open(inside, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(os.urandom(32).hex())
    cases["inside the data directory"] = inside
    messages = {}
    try:
        for what, path in cases.items():
            reload(**{"withdraw.secrets_key_file": path})
            wait_until(lambda: cluster.value("SHOW withdraw.secrets_key_file") == path, 5, 0.05, "the reload")
            try:
                cluster.sql("SELECT withdraw_account_create('kf', 'zoomex', 'http://127.0.0.1:9/z',"
                            " '{\"api_key\": \"k\", \"api_secret\": \"s\"}')")
                raise AssertionError(f"a key file {what} was accepted")
            except psycopg2.Error as e:
                messages[what] = e.pgerror.splitlines()[0]
    finally:
        reload(**{"withdraw.secrets_key_file": None})
        wait_until(lambda: cluster.value("SHOW withdraw.secrets_key_file") == cluster.key_file, 5, 0.05,
                   "the reload")
    assert "readable by its owner only" in messages["group-readable"], messages
    assert "64 hexadecimal digits" in messages["not hex"] and "64 hexadecimal" in messages["short"], messages
    assert "outside the data directory" in messages["inside the data directory"], messages
    assert "must not be a symbolic link" in messages["a symbolic link"], messages
    os.unlink(inside)
    return "; ".join(f"{k}: refused" for k in messages)


def test_the_key_is_kept_out_of_core_dumps():
    """The worker holds the key in memory while its file is unchanged: in
    pages a core dump leaves out (VmFlags "dd" in /proc/PID/smaps)."""
    wid = create("zx", zoomex_request())
    wait_state(wid, ["succeeded"])
    pid = cluster.worker_pid()
    # the kernel's own vvar pages are "dd" too: look for writable private memory
    dontdump, head = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                head = line.split()
            elif line.startswith("VmFlags:") and "dd" in line.split()[1:] and head[1] == "rw-p":
                dontdump.append(head[0])
    assert dontdump, f"no writable mapping of worker {pid} is left out of core dumps"
    return f"worker {pid}: {len(dontdump)} mapping(s) marked dd (do not dump)"


def test_rotation_reseals_every_account_with_one_call():
    old = cluster.key_file
    old_id = cluster.value("SELECT DISTINCT key_id FROM withdraw.account_secret")
    new = key_file("new.key")
    reload(**{"withdraw.secrets_key_file": new, "withdraw.secrets_previous_key_file": old})
    wait_until(lambda: cluster.value("SHOW withdraw.secrets_key_file") == new, 5, 0.05, "the reload")
    # during the rotation the worker still opens the old key's accounts
    wid = create("zx", zoomex_request())
    wait_state(wid, ["succeeded"])
    n = cluster.value("SELECT withdraw_rotate_secrets()")
    accounts = cluster.value("SELECT count(*) FROM withdraw.account_secret")
    ids = [r[0] for r in cluster.sql("SELECT DISTINCT key_id FROM withdraw.account_secret")]
    assert n == accounts and len(ids) == 1 and ids[0] != old_id, (n, accounts, ids, old_id)
    reload(**{"withdraw.secrets_previous_key_file": None})
    wait_until(lambda: cluster.value("SHOW withdraw.secrets_previous_key_file") == "", 5, 0.05, "the reload")
    wid = create("zx", zoomex_request())
    wait_state(wid, ["succeeded"])
    cluster.key_file = new
    return f"{n} accounts re-sealed from key {old_id} to {ids[0]}; sending never stopped"


# -- wire hygiene and hostile input -----------------------------------------------------

def test_values_are_encoded_for_their_place():
    """A value full of the signing scheme's separators and JSON's quotes arrives
    exactly as given: it can neither add a parameter nor change what is signed
    (the mock verifies the signature over the parameters it parsed)."""
    nasty = 'a&api_key=evil&sign=0"}\\ é€ =&'
    wid = create("zx", zoomex_request(remark=nasty[:50], address='100&coin=BTC"'))
    wait_state(wid, ["succeeded"])
    key = cluster.value("SELECT idempotency_key FROM withdraw.withdrawals WHERE id = %s", (wid,))
    got = [w for w in mock.ledger("zoomex")["withdrawals"] if w["requestId"] == key]
    assert len(got) == 1, got
    got = got[0]
    assert (got["remark"], got["address"], got["coin"], got["api_key"]) == \
        (nasty[:50], '100&coin=BTC"', "USDT", "key1"), got
    return f"remark {nasty[:50]!r} and address '100&coin=BTC\"' received as sent, signature verified"


def hostile_requests():
    """(account, request jsonb text, what) of requests that must all be refused."""
    long = "x" * 10000
    zoomex_ok = {"coin": "USDT", "addressType": 3, "address": "100200", "amount": "1.25"}
    chainup_ok = {"from_uid": "1", "to_address": "0xabc", "amount": "1.5", "symbol": "usdt"}
    ccp_ok = {"address": "9454818", "token_id": "t1", "value": "0.05"}
    cases = []
    bad_amounts = ["0", "-1", "1e5", "NaN", "Infinity", "-Infinity", " 1", "1 ", "1.", ".5", "0x10", "１",
                   "1,5", "1_000", "", "+1", "1..2", "٣", "1e-2", "9" * 70, "0.0", "00", "-0"]
    bad_values = [None, True, False, 1, 1.5, [], {}, ["x"], {"a": 1}, "", long, "a\nb", "a\u0000b",
                  "\t", "\u001f", "x\u007f"]
    for acct, ok, amount_field in (("zx", zoomex_ok, "amount"), ("cu", chainup_ok, "amount"),
                                   ("ccp", ccp_ok, "value")):
        for a in bad_amounts:
            cases.append((acct, dict(ok, **{amount_field: a}), f"{amount_field}={a[:10]!r}"))
        cases.append((acct, dict(ok, **{amount_field: 1.25}), "amount as a number"))
        for field in ok:
            if field == amount_field:
                continue
            for v in bad_values:
                if acct == "cu" and field == "from_uid" and isinstance(v, (int, float)) and v is not True \
                        and v is not False and v == int(v) and v > 0:
                    continue        # chainup takes a positive integer uid
                if acct == "zx" and field == "addressType" and v == 1:
                    continue
                cases.append((acct, dict(ok, **{field: v}), f"{field}={str(v)[:10]!r}"))
            missing = dict(ok)
            del missing[field]
            cases.append((acct, missing, f"no {field}"))
        cases.append((acct, dict(ok, unknown_field="x"), "unknown field"))
        cases.append((acct, dict(ok, **{"a" * 300: 1}), "huge key"))
    # documents that are not objects, deeply nested, huge
    for doc in ([], "x", 1, None, [zoomex_ok], {"a": {"b": {"c": {}}}}):
        cases.append(("zx", doc, f"document {str(doc)[:12]}"))
    deep = {}
    cur = deep
    for _ in range(200):
        cur["x"] = {}
        cur = cur["x"]
    cases.append(("zx", deep, "200 levels deep"))
    cases.append(("zx", dict(zoomex_ok, remark="r" * 1_000_000), "1 MB remark"))
    cases.append(("zx", dict(zoomex_ok, requestId="a'; DROP TABLE withdraw.withdrawal; --"), "SQL in requestId"))
    cases.append(("zx", dict(zoomex_ok, requestId="../../etc/passwd"), "path in requestId"))
    cases.append(("zx", dict(zoomex_ok, addressType=4), "addressType 4"))
    cases.append(("zx", dict(zoomex_ok, addressType=2), "phone without areaCode"))
    cases.append(("nonexistent", zoomex_ok, "unknown account"))
    cases.append(("fiat", {"currency": "KRW", "amount": "1.00", "userip": "1", "pay_code": "none"},
                  "pay_code without rules"))
    return cases


def test_hostile_requests_are_refused_and_leave_nothing():
    before = cluster.value("SELECT count(*) FROM withdraw.withdrawal")
    codes = {}
    conn = cluster.connect()
    cur = conn.cursor()
    accepted = []
    cases = hostile_requests()
    for acct, doc, what in cases:
        try:
            cur.execute("SELECT withdraw_create(%s, %s::jsonb)", (acct, json.dumps(doc)))
            accepted.append((acct, what))
        except psycopg2.Error as e:
            codes[e.pgcode] = codes.get(e.pgcode, 0) + 1
            assert e.pgcode[:2] in ("22", "42", "55"), (acct, what, e.pgcode, e.pgerror)
    # bytes that are not UTF-8 never even become jsonb
    for raw in (b'{"coin": "\xff\xfe"}', b'{"coin": "\xc3"}'):
        try:
            cur.execute(b"SELECT withdraw_create('zx', E'" + raw.replace(b"\\", b"\\\\") + b"'::jsonb)")
            accepted.append(("zx", repr(raw)))
        except psycopg2.Error as e:
            codes[e.pgcode] = codes.get(e.pgcode, 0) + 1
    conn.close()
    after = cluster.value("SELECT count(*) FROM withdraw.withdrawal")
    assert accepted == [] and after == before, (accepted, before, after)
    return f"{len(cases) + 2} hostile requests refused, nothing stored; SQLSTATEs {dict(sorted(codes.items()))}"


def mutations(seed_docs, n, rnd):
    """n hostile bodies: random bytes, mutated and truncated documents, odd JSON."""
    odd = ['{"a":' * 500 + '1' + '}' * 500, '[' * 10000, '{"amount": 1e999999}', '{"amount": "1e999999"}',
           '{"status": null, "id": {"x": [1, 2]}}', '"just a string"', '123', 'null', '{}', '[]',
           '{"pay_status": "success", "withdraw_amount": ["1"]}', '{"side": "withdraw", "status": "9"}',
           '{"side": "withdraw", "status": "5", "request_id": ' + '"' + 'x' * 100000 + '"}',
           r'{"\u0000": 1}', r'{"a": "\ud800"}', '\ufeff{}']
    out = list(odd)
    while len(out) < n:
        base = rnd.choice(seed_docs)
        kind = rnd.randrange(4)
        if kind == 0:
            out.append(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))).decode("latin-1"))
        elif kind == 1:
            cut = rnd.randrange(len(base) + 1)
            out.append(base[:cut])
        elif kind == 2:
            b = list(base)
            for _ in range(rnd.randrange(1, 8)):
                b[rnd.randrange(len(b))] = chr(rnd.choice([0x22, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x5c, 0x30,
                                                           0x2d, 0x65, rnd.randrange(0x20, 0x7f)]))
            out.append("".join(b))
        else:
            doc = json.loads(base)
            key = rnd.choice(list(doc))
            doc[key] = rnd.choice([None, True, 1.5e300, -1, "", "x" * 5000, [], {"k": "v"}, "9" * 40])
            out.append(json.dumps(doc))
    return out[:n]


def test_hostile_callback_bodies_never_break_the_parsers():
    """Bodies that reach each provider's callback parser (authentic where the
    provider authenticates first: ccpayment signed with the account's secret,
    chainup sealed with the key the account trusts) are answered or refused
    with a clear error; no backend dies, no internal error, nothing changes."""
    import random
    rnd = random.Random(7)
    ccp_seed = json.dumps({"pay_status": "success", "order_id": "1", "merchant_order_id": "nobody",
                           "withdraw_amount": "1", "txid": "0x1", "network_fee": "0.1"})
    fiat_seed = json.dumps({"uid": "u1", "orderid": "nobody", "amount": "1.00", "status": "success",
                            "transactionid": "9", "sign": "0" * 32})
    cu_seed = json.dumps({"side": "withdraw", "request_id": "nobody", "id": "1", "amount": "1", "status": "5",
                          "txid": "0x", "confirmations": "3", "notify_time": "1"})
    before = cluster.sql("SELECT id, state, details::text FROM withdraw.withdrawal ORDER BY id")
    conn = cluster.connect()
    cur = conn.cursor()
    seen = {}
    now = str(int(__import__("time").time()))

    def authentic(acct, body):
        """The SQL call that hands body to acct's parser, authenticated as that provider wants."""
        if acct == "ccp":
            cur.execute("SELECT withdraw._ccpayment_signature(1, 'app1', %s, %s, %s)", (CCP_SECRET, now, body))
            headers = {"Appid": "app1", "Timestamp": now, "Sign": cur.fetchone()[0]}
            return "SELECT withdraw_callback('ccp', %s, %s::jsonb)", (body, json.dumps(headers))
        if acct == "cu":
            return ("SELECT withdraw_callback('cu', 'app_id=a1&data=' || withdraw._envelope_seal(%s, %s))",
                    (body, CHAINUP_PEM))
        # fiat: a JSON object gets the sign its fields call for, so the parser goes past it
        try:
            cur.execute("SAVEPOINT s")
            cur.execute("SELECT jsonb_set(%s::jsonb, '{sign}', to_jsonb(withdraw._fiat_gateway_signature("
                        "%s::jsonb, %s, 'amp_key')))::text", (body, body, FIAT_SECRET))
            body = cur.fetchone()[0]
            cur.execute("RELEASE s")
        except psycopg2.Error:
            cur.execute("ROLLBACK TO s")
        return "SELECT withdraw_callback('fiat', %s)", (body,)

    cur.execute("BEGIN")
    calls = 0
    for acct, seed in (("ccp", ccp_seed), ("fiat", fiat_seed), ("cu", cu_seed)):
        for body in mutations([seed], 300, rnd):
            if "\x00" in body:
                continue
            calls += 1
            cur.execute("SAVEPOINT c")
            try:
                cur.execute(*authentic(acct, body))
                seen["reply"] = seen.get("reply", 0) + 1
                cur.execute("RELEASE c")
            except psycopg2.Error as e:
                assert e.pgcode and not e.pgcode.startswith("XX"), (acct, body[:80], e.pgcode, e.pgerror)
                seen[e.pgcode] = seen.get(e.pgcode, 0) + 1
                cur.execute("ROLLBACK TO c")
    cur.execute("COMMIT")
    conn.close()
    after = cluster.sql("SELECT id, state, details::text FROM withdraw.withdrawal ORDER BY id")
    assert before == after, "a hostile callback changed a withdrawal"
    assert cluster.value("SELECT 1") == 1
    return f"{calls} hostile callback bodies: {dict(sorted(seen.items()))}; no backend lost, nothing changed"


# -- TLS ---------------------------------------------------------------------------------

def self_signed(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "withdraw test provider")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
    open(cert_path, "wb").write(cert.public_bytes(serialization.Encoding.PEM))
    open(key_path, "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    return cert_path, key_path


class TlsProvider:
    """A zoomex stand-in over HTTPS that accepts every create (the signature is the mock's job)."""

    def __init__(self, cert, key):
        self.creates = 0

        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.creates += 1
                body = json.dumps({"retCode": 0, "retMsg": "OK",
                                   "result": {"withdraw_id": f"tls-{outer.creates}"}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_tls_peer_is_verified_and_a_configured_ca_is_trusted():
    cert, key = self_signed(WORK)
    provider = TlsProvider(cert, key)
    account("tls", "zoomex", {"api_key": "k", "api_secret": "tls-secret"},
            {"max_attempts": 2, "create_interval_ms": 0}, base=f"https://127.0.0.1:{provider.port}")
    refused = create("tls", zoomex_request())
    wait_until(lambda: cluster.value("SELECT count(*) FROM withdraw.attempts WHERE withdrawal_id = %s", (refused,)),
               15, 0.1, "the first attempt")
    error = cluster.value("SELECT error FROM withdraw.attempts WHERE withdrawal_id = %s ORDER BY id LIMIT 1",
                          (refused,))
    assert provider.creates == 0 and error and "certificate" in error.lower(), (provider.creates, error)
    reload(**{"withdraw.ca_file": cert})
    wait_until(lambda: cluster.value("SHOW withdraw.ca_file") == cert, 5, 0.05, "the reload")
    trusted = create("tls", zoomex_request())
    wait_state(trusted, ["submitted", "processing", "succeeded"])
    reload(**{"withdraw.ca_file": None})
    return f"without the CA: {error!r}, nothing reached the server; with withdraw.ca_file: submitted"


def setup():
    account("zx", "zoomex", {"api_key": "key1", "api_secret": ZOOMEX_SECRET}, {"create_interval_ms": 0})
    account("ccp", "ccpayment", {"app_id": "app1", "app_secret": CCP_SECRET}, {"poll_interval_ms": 300})
    account("fiat", "fiat_gateway", {"uid": "u1", "secret_key": FIAT_SECRET},
            {"notify_url": "https://shop.example/notify"})
    account("cu", "chainup", {"app_id": "a1", "merchant_private_key": CHAINUP_PEM,
                              "platform_public_key": CHAINUP_PUB})


def main():
    os.chmod(WORK, 0o700)
    run_suite("security", globals(),
              {"zoomex": {"keys": {"key1": ZOOMEX_SECRET}, "create_interval_s": 0,
                          "status_schedule": [["Pending Transfer", 0.2]]},
               "ccpayment": {"apps": {"app1": {"secret": CCP_SECRET, "webhook_url": None}},
                             "settle_after_s": 0.3}},
              {"log_statement": "'all'", "log_min_messages": "debug1", "withdraw.poll_interval": "300"},
              setup=setup, teardown=lambda: shutil.rmtree(WORK, ignore_errors=True))

if __name__ == "__main__":
    main()
