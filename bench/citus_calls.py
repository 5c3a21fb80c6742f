"""Shards touched and round trips per hot call on a Citus coordinator (issue 20).

    scripts/citus-cluster run bash -c '.venv/bin/python -m gateway migrate &&
        .venv/bin/python -m bench.citus_calls'

Runs each hot call once, the gateway's way (one transaction: role and claims
with set_config, the call), with citus.log_remote_commands on, and counts:

- round trips: the commands the coordinator sends to workers for the call
  (each `issuing` line is one command on one connection; commands to several
  workers in parallel are each counted), the BEGIN and COMMIT (or PREPARE /
  COMMIT PREPARED) of the distributed transaction included;
- shard groups: the distinct shards those commands name, co-located shards
  (same colocation group and hash range, which always live together) once;
- multi-shard statements: statements that Citus planned as more than one task
  (citus.multi_task_query_log_level = 'notice' and its notices counted).

Prints a Markdown table. Leaves its rows (a few users, groups, events) behind.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import psycopg

SHARD = re.compile(r"\b[a-z_]+_(\d{6,})\b")


class Recorder:
    def __init__(self, url: str) -> None:
        self.url = url
        self.rows: list[tuple[str, int, int, int]] = []

    def user(self) -> str:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("insert into auth.users (email) values (%s) returning id",
                               (f"calls-{time.time_ns()}@example.com",)).fetchone()
        assert row is not None
        return str(row[0])

    def __call__(self, user: str, function: str, record: bool = True, **args: Any) -> Any:
        claims = json.dumps({"sub": user, "role": "authenticated"})
        names = ", ".join(f"{name} => %({name})s" for name in args)
        seen: list[str] = []
        with psycopg.connect(self.url) as conn:
            conn.add_notice_handler(lambda d: seen.append(d.message_primary or ""))
            conn.execute("set local client_min_messages = notice")
            conn.execute("set local citus.multi_task_query_log_level = 'notice'")
            conn.execute("set local citus.log_remote_commands = on")
            conn.execute("select set_config('role', 'authenticated', true), "
                         "set_config('request.jwt.claims', %s, true)", (claims,))
            seen.clear()
            row = conn.execute(f"select api.{function}({names})", args).fetchone()
            conn.commit()
        assert row is not None
        if record:
            issued = [m for m in seen if m.startswith("issuing")]
            shards = {int(s) for m in issued for s in SHARD.findall(m)}
            multi = sum(1 for m in seen if m.startswith("multi-task query"))
            self.rows.append((function, len(self.groups(shards)), len(issued), multi))
        return row[0]

    def groups(self, shards: set[int]) -> set[tuple[int, str]]:
        """Shard groups: co-located shards (same colocation, same hash range)
        count once, as they live together."""
        if not shards:
            return set()
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "select p.colocationid, coalesce(s.shardminvalue, '') from pg_dist_shard s "
                "join pg_dist_partition p using (logicalrelid) where s.shardid = any(%s)",
                (list(shards),)).fetchall()
        return {(int(c), str(m)) for c, m in rows}


def main() -> None:
    print(table(measure(os.environ["DATABASE_URL"])))


def table(rows: list[tuple[str, int, int, int]]) -> str:
    lines = ["| call | shard groups | commands to workers | multi-shard statements |",
             "|---|---:|---:|---:|"]
    lines += [f"| {function} | {shards} | {trips} | {multi} |"
              for function, shards, trips, multi in rows]
    return "\n".join(lines)


def measure(url: str) -> list[tuple[str, int, int, int]]:
    call = Recorder(url)
    owner, joiner, host, partner, other, friend = (call.user() for _ in range(6))
    group = call(owner, "create_group", False, name="Measured club")
    invite = call(owner, "create_group_invite", group_id=group["id"], max_uses=5)
    call(joiner, "join_group", code=invite["code"])
    event = call(host, "create_event", False, title="Measured race", capacity=10)
    sent = call(owner, "create_pair_invite", event_id=event["id"])
    answer = call(partner, "join_pair_invite", code=sent["short_code"])
    call(partner, "accept_pair_invite", token=answer["token"])
    sent = call(other, "create_pair_invite", event_id=event["id"])
    answer = call(friend, "join_pair_invite", code=sent["short_code"])
    call(friend, "decline_pair_invite", token=answer["token"])
    call(other, "register_for_event", event_id=event["id"])
    for a, b in ((owner, joiner), (owner, friend), (other, friend)):
        call(a, "request_friend", False, user_id=b)
        call(b, "accept_friend", False, user_id=a)
    party = call(host, "create_event", False, title="Measured party")
    liked = call(owner, "like_event", event_id=party["id"], member_ids=[joiner])
    call(joiner, "get_like_group", group_id=liked["id"])
    call(owner, "add_like_group_member", group_id=liked["id"], user_id=friend)
    call(owner, "remove_like_group_member", group_id=liked["id"], user_id=friend)
    call(host, "approve_like_group", group_id=liked["id"])
    other_like = call(other, "like_event", event_id=party["id"], member_ids=[friend])
    call(host, "reject_like_group", group_id=other_like["id"])
    for listing in ("my_groups", "my_like_groups", "my_pair_invites", "my_chats",
                    "my_notifications"):
        call(owner, listing)
    return call.rows


if __name__ == "__main__":
    main()
