"""The demo: a throwaway cluster with withdraw and the mock zoomex provider; one
withdrawal created inside BEGIN ... COMMIT and followed to its end.  Then a
chainup withdrawal whose second confirmation and notifications the mock
platform delivers over HTTP to withdraw-callbackd: no web code of ours."""

import json
import os
import sys
import time

from integration.harness import Cluster, Mock, rsa_key_pair

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
from callbackd_proc import Callbackd  # noqa: E402


def show(cluster, title, query, params=None):
    conn = cluster.connect()
    cur = conn.cursor()
    cur.execute(query, params)
    names = [d[0] for d in cur.description]
    rows = [["" if v is None else str(v) for v in r] for r in cur.fetchall()]
    conn.close()
    widths = [max(len(n), *(len(r[i]) for r in rows)) if rows else len(n) for i, n in enumerate(names)]
    print(f"\n{title}")
    print(" | ".join(n.ljust(w) for n, w in zip(names, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(v.ljust(w) for v, w in zip(r, widths)))


def follow(cluster, wid):
    last = None
    deadline = time.time() + 20
    while time.time() < deadline:
        state = cluster.value("SELECT state FROM withdraw.withdrawals WHERE id = %s", (wid,))
        if state != last:
            show(cluster, f"withdraw.withdrawals (state is now {state})",
                 "SELECT id, account, state, provider_status, provider_id, amount, asset, destination, attempts"
                 " FROM withdraw.withdrawals WHERE id = %s", (wid,))
            last = state
        if state in ("succeeded", "failed", "rejected", "cancelled", "expired"):
            break
        time.sleep(0.05)


def chainup_through_the_daemon(cluster, mock):
    """ChainUp asks its second confirmation during the create and notifies
    every change: the daemon answers both, as a role with withdraw_webhook only."""
    cluster.sql("CREATE ROLE callbackd LOGIN IN ROLE withdraw_webhook")
    daemon = Callbackd(cluster, ["chainup"])
    pem, pub = rsa_key_pair()
    wallet = mock.call("GET", "/_mock/chainup/keys")["wallet_public_key"]
    mock.configure({"chainup": {"merchants": {"demo-app": {
        "public_key": pub, "confirm_url": daemon.url("chainup", "confirm"),
        "notify_url": daemon.url("chainup", "notify")}}}})
    cluster.sql("SELECT withdraw_account_create('chainup', 'chainup', %s, %s, '{\"poll_interval_ms\": 3600000}')",
                (mock.base_url("chainup"), json.dumps({"app_id": "demo-app", "merchant_private_key": pem,
                                                      "platform_public_key": wallet})))
    daemon.start()
    print(f"\nwithdraw-callbackd --listen=127.0.0.1:{daemon.port} --accounts=chainup"
          " --database='... user=callbackd'   (CREATE ROLE callbackd LOGIN IN ROLE withdraw_webhook)")
    print("the platform calls http://127.0.0.1:%d/chainup/confirm and /chainup/notify;"
          " status polls are an hour apart: the notifications settle it" % daemon.port)
    try:
        wid = cluster.value("SELECT withdraw_create('chainup', %s)", (json.dumps(
            {"from_uid": "3529218", "to_address": "0xdemo", "amount": "25.00", "symbol": "usdt"}),))
        follow(cluster, wid)
        show(cluster, "withdraw.callbacks (answered by the daemon)",
             "SELECT received_at::time(3) AS at, kind, verdict, source, http_status, detail"
             " FROM withdraw.callbacks WHERE withdrawal_id = %s ORDER BY id", (wid,))
        print("\nthe daemon's access log:")
        for line in daemon.log_text().splitlines():
            if " access " in line and "/health" not in line:
                print("  " + line)
    finally:
        daemon.stop()


def main():
    mock = Mock({"zoomex": {"keys": {"demo-key": "demo-secret"},
                            "status_schedule": [["Pending Review", 1.0], ["Pending Transfer", 1.0]]}})
    cluster = Cluster({"withdraw.poll_interval": "300"}).start()
    try:
        print(f"cluster on port {cluster.port} ({cluster.dir}), mock provider on {mock.url}")
        sql = f"""CREATE EXTENSION withdraw;
SELECT withdraw_account_create('zoomex', 'zoomex', '{mock.base_url("zoomex")}',
       '{{"api_key": "demo-key", "api_secret": "demo-secret"}}');
BEGIN;
SELECT withdraw_create('zoomex', '{{"coin": "USDT", "addressType": 3, "address": "123456",
                                    "amount": "25.00", "remark": "demo payout"}}');
COMMIT;"""
        print("\n" + sql)
        conn = cluster.connect()
        cur = conn.cursor()
        cur.execute("CREATE EXTENSION withdraw")
        cur.execute("SELECT withdraw_account_create('zoomex', 'zoomex', %s, %s)",
                    (mock.base_url("zoomex"), json.dumps({"api_key": "demo-key", "api_secret": "demo-secret"})))
        conn.autocommit = False
        cur.execute("SELECT withdraw_create('zoomex', %s)", (json.dumps(
            {"coin": "USDT", "addressType": 3, "address": "123456", "amount": "25.00", "remark": "demo payout"}),))
        wid = cur.fetchone()[0]
        conn.commit()
        conn.close()
        follow(cluster, wid)
        show(cluster, "withdraw.events", "SELECT at::time(3) AS at, from_state, to_state, provider_status"
             " FROM withdraw.events WHERE withdrawal_id = %s ORDER BY at", (wid,))
        show(cluster, "withdraw.attempts (secrets redacted)",
             "SELECT kind, http_status, round(latency_ms::numeric, 1) AS latency_ms, outcome,"
             " left(request_body, 90) AS request_body FROM withdraw.attempts WHERE withdrawal_id = %s ORDER BY id",
             (wid,))
        show(cluster, "withdraw.stats", "SELECT account, withdrawals, succeeded, success_rate_pct,"
             " round(submit_latency_p50_ms::numeric, 1) AS submit_p50_ms FROM withdraw.stats")
        chainup_through_the_daemon(cluster, mock)
    finally:
        cluster.destroy()
        mock.stop()


if __name__ == "__main__":
    main()
