"""The race: RACE_USERS users join one max_uses = RACE_MAX_USES code at the same
moment (threads released by a barrier), against our gateway and the baseline."""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections import Counter

import orjson
import psycopg

from . import layout as L
from .http import Tokens


def _join_all(base_url: str, path: str, code: str, users: list[int],
              tokens: Tokens) -> Counter[int]:
    target = urllib.parse.urlsplit(base_url)
    body = orjson.dumps({"code": code})
    barrier = threading.Barrier(len(users))
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def one(user: int) -> None:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        try:
            conn.connect()
            headers = {"Authorization": f"Bearer {tokens(user)}",
                       "Content-Type": "application/json"}
            barrier.wait()
            conn.request("POST", path, body, headers)
            status = conn.getresponse().status
        finally:
            conn.close()
        with lock:
            statuses[status] += 1

    threads = [threading.Thread(target=one, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def run(database_url: str, gateway_url: str, baseline_url: str,
        tokens: Tokens) -> dict[str, object]:
    """RACE_ROUNDS rounds against each; a fresh code and fresh users per round."""
    ours: list[int] = []
    theirs: list[int] = []
    use_counts: list[int] = []
    for r in range(L.RACE_ROUNDS):
        users = [L.RACE_BASE + r * L.RACE_USERS + k for k in range(L.RACE_USERS)]
        got = _join_all(gateway_url, "/rest/v1/rpc/join_group",
                        L.invite_code(L.RACE_INVITE_BASE + r), users, tokens)
        ours.append(got[200])
        users = [L.BASELINE_RACE_BASE + r * L.RACE_USERS + k for k in range(L.RACE_USERS)]
        got = _join_all(baseline_url, "/join",
                        L.invite_code(L.RACE_INVITE_BASE + 1_000_000 + r), users, tokens)
        theirs.append(got[200])
    with psycopg.connect(database_url, autocommit=True) as conn:
        for r in range(L.RACE_ROUNDS):
            row = conn.execute(
                "select use_count from baseline.group_invites where id = md5(%s)::uuid",
                (f"bench-inv-{L.RACE_INVITE_BASE + 1_000_000 + r}",)).fetchone()
            use_counts.append(int(row[0]) if row else -1)
        ours_counts = [
            int(conn.execute("select use_count from app.group_invites where id = md5(%s)::uuid",
                             (f"bench-inv-{L.RACE_INVITE_BASE + r}",)).fetchone()[0])  # type: ignore[index]
            for r in range(L.RACE_ROUNDS)]
    return {
        "users": L.RACE_USERS, "max_uses": L.RACE_MAX_USES, "rounds": L.RACE_ROUNDS,
        "ours_joined": ours, "ours_use_count": ours_counts,
        "baseline_joined": theirs, "baseline_use_count": use_counts,
        "baseline_over_consumed": [n - L.RACE_MAX_USES for n in theirs],
    }
