"""What the pages rely on, over HTTP without a browser: preview_pair_invite
counted atomically under concurrency (one person's twenty simultaneous
previews: exactly ten answered, ten refused), and codes in page addresses kept
out of the gateway's log."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from browser import code_invite, make_event
from conftest import GatewayProcess
from smtp_sink import wait_until


def test_concurrent_previews_are_counted_once_each(gateway: GatewayProcess, client: httpx.Client,
                                                   make_user, admin) -> None:
    inviter, viewer = make_user("Count Host"), make_user()
    invite = code_invite(client, inviter, make_event(client, inviter))

    def preview(_: int) -> int:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            return http.post("/rest/v1/rpc/preview_pair_invite", headers=viewer.headers,
                             json={"code": invite["short_code"]}).status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = sorted(pool.map(preview, range(20)))
    assert statuses == [200] * 10 + [429] * 10
    shown = admin.execute(
        "select count(*) from app.audit_log where actor_id = %s "
        "and action = 'pair_invite.preview' and outcome = 'shown'", (viewer.id,)).fetchone()
    assert shown == (10,)
    hits = admin.execute("select hits from app.rate_limit_counters where user_id = %s "
                         "and bucket = 'join_code'", (viewer.id,)).fetchone()
    assert hits == (10,)
    assert admin.execute("select count(*) from app.pair_invite_tokens where invite_id = %s",
                         (invite["id"],)).fetchone() == (0,)


def test_codes_in_page_addresses_stay_out_of_the_log(gateway: GatewayProcess,
                                                     client: httpx.Client) -> None:
    secrets = ["QWERTY23", "5f0c4b1e-2d3a-4c5b-8e6f-7a8b9c0d1e2f", "stop-token-abcdef123456"]
    for path in (f"/invite/accept?code={secrets[0]}", f"/join?code={secrets[1]}",
                 f"/invite/stop?token={secrets[2]}"):
        assert client.get(path).status_code == 200
    # The access-log line is written once the answer has gone out: wait for it.
    def logged() -> str:
        text = gateway.log()
        routes = ("/invite/accept", "/join", "/invite/stop")
        return text if all(f'"route":"{route}"' in text for route in routes) else ""

    log = wait_until(logged, timeout=10, what="the pages' access-log lines")
    for secret in secrets:
        assert secret.lower() not in log.lower()
