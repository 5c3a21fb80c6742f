"""python -m bench.approvals: approval throughput of like groups of 10 members,
and the NOTIFYs the approvals send (issue 19, item 8).

Makes a database of its own (migrated), loads with set-based SQL as superuser
`--rounds` x `--groups` pending like groups of `--members` people (the creator
and friends), spread over `--events` events of one author each, so one approval
(min(authors, members) = 1) approves a group: a chat with every member and the
author, a notification per member, the realtime messages. Then, in each round,
`--clients` connections as `authenticator` approve that round's groups, each
approval the transaction the gateway sends (gateway.db's script: begin; the
set_config select of role, claims, ...; the call; commit), while one more
connection LISTENs on the realtime channel and counts what arrives.

Reported per round and as the median: approvals per second (wall time of the
round; it moves with whatever else runs on the machine), the CPU time the
approving server backends spent per approval and that of the listening backends
(one per gateway process: `--listeners`), read from /proc/PID/stat as bench.cpu
does (the server must run on this machine), NOTIFYs received per approval,
realtime messages per approval (a NOTIFY carries one message, or a JSON array of
several) and NOTIFY payload bytes.
Needs DATABASE_URL (a superuser URL of a cluster it may fill):
`scripts/devdb run .venv/bin/python -m bench.approvals`.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import threading
import time
from typing import Any

import orjson
import psycopg

from gateway.db import CATALOG_QUERY, _build_query, _scripts
from gateway.settings import authenticator_url

from . import load
from .cpu import cpu_seconds
from .direct import HEADERS_JSON

CHANNEL = "joinery_realtime"
USER = "md5('bench-approval-user-' || ({}))::uuid".format
EVENT = "md5('bench-approval-event-' || ({}))::uuid".format
GROUP = "md5('bench-approval-group-' || ({}))::uuid".format


# --realtime: Supabase Realtime's messages table and realtime.send, as its
# migrations define them (tests/test_supabase_realtime.py has the same), one
# partition around now.
REALTIME = """
create schema realtime;
create table realtime.messages (
    topic text not null, extension text not null, payload jsonb, event text,
    private boolean default false,
    updated_at timestamp without time zone not null default now(),
    inserted_at timestamp without time zone not null default now(),
    id uuid not null default gen_random_uuid(),
    primary key (id, inserted_at)
) partition by range (inserted_at);
create table realtime.messages_now partition of realtime.messages
    for values from (now()::timestamp - interval '1 day') to (now()::timestamp + interval '1 day');
create function realtime.topic() returns text language sql stable as $$
    select nullif(current_setting('realtime.topic', true), '')::text;
$$;
create function realtime.send(payload jsonb, event text, topic text,
                              private boolean default true) returns void
language plpgsql as $$
declare
    generated_id uuid;
    final_payload jsonb;
begin
    begin
        generated_id := gen_random_uuid();
        if payload ? 'id' then
            final_payload := payload;
        else
            final_payload := jsonb_set(payload, '{id}', to_jsonb(generated_id));
        end if;
        execute format('set local realtime.topic to %L', topic);
        insert into realtime.messages (id, payload, event, topic, private, extension)
        values (generated_id, final_payload, event, topic, private, 'broadcast');
    exception when others then
        raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
    end;
end;
$$;
"""


def setup(url: str, groups: int, members: int, events: int) -> None:
    """Users 0..events-1 are the authors (and creators) of events 0..events-1;
    group g is on event g % events, its members users events + g * members + m,
    m = 0 the creator, all friends of the creator."""
    people = events + groups * members
    g_member = f"{events} + g * {members} + m"
    g_creator = f"{events} + g * {members}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set session_replication_role = replica")  # no triggers: set-based
        for statement in (
            f"""insert into auth.users (id, email)
                select {USER('n')}, 'a' || n || '@bench.test'
                from generate_series(0, {people - 1}) n""",
            f"""insert into app.profiles (id, display_name)
                select {USER('n')}, 'a' || n from generate_series(0, {people - 1}) n""",
            f"""insert into app.events (id, creator_id, title, status)
                select {EVENT('e')}, {USER('e')}, 'Approvals ' || e, 'open'
                from generate_series(0, {events - 1}) e""",
            f"""insert into app.event_authors (event_id, user_id)
                select {EVENT('e')}, {USER('e')} from generate_series(0, {events - 1}) e""",
            f"""insert into app.friendships (user_low, user_high, status, requester_id)
                select least(a, b), greatest(a, b), 'accepted', a
                from generate_series(0, {groups - 1}) g, generate_series(1, {members - 1}) m,
                     lateral (select {USER(g_creator)} as a, {USER(g_member)} as b) x""",
            f"""insert into app.like_groups (id, event_id, creator_id)
                select {GROUP('g')}, {EVENT(f'g % {events}')}, {USER(g_creator)}
                from generate_series(0, {groups - 1}) g""",
            f"""insert into app.like_group_routes (id, event_id)
                select {GROUP('g')}, {EVENT(f'g % {events}')}
                from generate_series(0, {groups - 1}) g""",
            f"""insert into app.like_group_members (group_id, event_id, user_id)
                select {GROUP('g')}, {EVENT(f'g % {events}')}, {USER(g_member)}
                from generate_series(0, {groups - 1}) g, generate_series(0, {members - 1}) m""",
        ):
            conn.execute(statement)  # type: ignore[arg-type]  # built here from numbers
        conn.execute("set session_replication_role = origin")
        conn.execute("vacuum analyze")


def approve_script(url: str) -> str:
    with psycopg.connect(url) as conn:
        for name, _vol, retset, void, names, types, _nd, _c in conn.execute(CATALOG_QUERY):
            if name == "approve_like_group":
                script, _ = _scripts(_build_query(name, tuple(names), tuple(types), retset, void))
                return script
    raise SystemExit("api.approve_like_group not found")


class Listener(threading.Thread):
    """LISTENs on the realtime channel and counts NOTIFYs, messages and bytes."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(f"listen {CHANNEL}")
        self.pid: int = self.conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        self.notifies = self.messages = self.bytes = 0
        self.last = time.monotonic()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for note in self.conn.notifies(timeout=0.2, stop_after=None):
                data = orjson.loads(note.payload)
                self.notifies += 1
                self.messages += len(data) if isinstance(data, list) else 1
                self.bytes += len(note.payload.encode())
                self.last = time.monotonic()

    def counts(self) -> tuple[int, int, int]:
        return self.notifies, self.messages, self.bytes

    def quiet(self, seconds: float = 0.5) -> None:
        while time.monotonic() - self.last < seconds:
            time.sleep(0.1)


def approve_round(auth_url: str, script: str, first: int, groups: int, events: int,
                  clients: int) -> tuple[float, int, float]:
    """Approves groups first..first+groups-1 from `clients` connections; returns
    (seconds, approvals answered 'approved', CPU seconds of their server backends)."""
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for g in range(first, first + groups):
        todo.put(g)
    with psycopg.connect(auth_url) as conn:
        ids = dict(conn.execute(
            f"select g, {GROUP('g')} from generate_series(%s::int, %s::int) g",
            (first, first + groups - 1)).fetchall())
        authors = dict(conn.execute(
            f"select e, {USER('e')} from generate_series(0, %s::int) e", (events - 1,)).fetchall())
    approved = [0] * clients
    cpu = [0.0] * clients
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def work(k: int) -> None:
        try:
            with psycopg.connect(auth_url, autocommit=True) as conn:
                cursor = psycopg.ClientCursor(conn)
                pid = conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
                start.wait()
                cpu[k] = -cpu_seconds(pid)
                while True:
                    try:
                        g = todo.get_nowait()
                    except queue.Empty:
                        cpu[k] += cpu_seconds(pid)
                        return
                    claims = {"role": "authenticated", "sub": str(authors[g % events]),
                              "iat": 1700000000, "exp": 4000000000}
                    values: tuple[Any, ...] = (
                        "authenticated", orjson.dumps(claims).decode(), "POST",
                        "/rest/v1/rpc/approve_like_group", HEADERS_JSON, "127.0.0.1", "8000",
                        "2000", orjson.dumps({"group_id": str(ids[g])}).decode())
                    cursor.execute(script, values)  # type: ignore[arg-type]
                    while cursor.nextset():
                        row = cursor.fetchone() if cursor.description else None
                        if row and row[0] and '"approved"' in row[0]:
                            approved[k] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return seconds, sum(approved), sum(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.approvals")
    parser.add_argument("--groups", type=int, default=500, help="groups approved per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--realtime", action="store_true",
                        help="with Supabase Realtime's realtime.send (installed after the "
                             "first migrate, then migrate again)")
    parser.add_argument("--listeners", type=int, default=1,
                        help="LISTEN connections (one per gateway process)")
    args = parser.parse_args(argv)
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    load.tune_server(server_url)
    url = load.create_database(server_url, "bench_approvals")
    if args.realtime:
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute(REALTIME)  # type: ignore[arg-type]  # the constant above
        print(load.migrate(url))
    total = args.groups * args.rounds
    setup(url, total, args.members, args.events)
    script = approve_script(url)
    auth_url = authenticator_url(url)
    listeners = [Listener(url) for _ in range(args.listeners)]
    for one in listeners:
        one.start()
    listener = listeners[0]
    print(f"{args.members} members, {args.clients} clients, {args.listeners} listener(s), "
          f"{args.groups} approvals per round{', realtime.send' if args.realtime else ''}")
    print(f"{'round':>5} {'approvals/s':>12} {'approved':>9} {'cpu us/appr':>12} "
          f"{'listen us/appr':>15} {'notifies/appr':>14} {'messages/appr':>14} "
          f"{'bytes/notify':>13}")
    rates: list[float] = []
    per: list[float] = []
    cpus: list[float] = []
    listens: list[float] = []
    for r in range(args.rounds):
        n0, m0, b0 = listener.counts()
        l0 = sum(cpu_seconds(one.pid) for one in listeners)
        seconds, approved, cpu = approve_round(auth_url, script, r * args.groups, args.groups,
                                               args.events, args.clients)
        for one in listeners:
            one.quiet()
        n1, m1, b1 = listener.counts()
        listen = sum(cpu_seconds(one.pid) for one in listeners) - l0
        cpus.append(cpu / args.groups * 1e6)
        listens.append(listen / args.groups * 1e6)
        notifies, messages, size = n1 - n0, m1 - m0, b1 - b0
        rates.append(args.groups / seconds)
        per.append(notifies / args.groups)
        print(f"{r + 1:5d} {args.groups / seconds:12.1f} {approved:9d} {cpus[-1]:12.0f} "
              f"{listens[-1]:15.0f} {notifies / args.groups:14.2f} {messages / args.groups:14.2f} "
              f"{size / max(notifies, 1):13.0f}", flush=True)
    for one in listeners:
        one.stop.set()
        one.join()
    if args.realtime:
        with psycopg.connect(url) as conn:
            row = conn.execute("select count(*) from realtime.messages").fetchone()
        print(f"realtime.messages: {row[0] if row else 0} rows "
              f"({(row[0] if row else 0) / total:.2f} per approval)")
    print(f"median: {statistics.median(rates):.1f} approvals/s, "
          f"{statistics.median(cpus):.0f} us server CPU per approval, "
          f"{statistics.median(listens):.0f} us listening backends' CPU per approval, "
          f"{statistics.median(per):.2f} NOTIFYs per approval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
