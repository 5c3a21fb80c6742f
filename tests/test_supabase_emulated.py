"""On a database shaped like a fresh Supabase project (`make test-supabase`, built by
the Supabase emulation from Supabase's own SQL), migrated as Supabase's `postgres`,
which is not a superuser there, with the gateway connecting as Supabase's
`authenticator`. Elsewhere these tests are skipped.

What Supabase adds that our own cluster lacks is checked here: Supabase Realtime's
`realtime.send` and `realtime.messages` (an approval made over HTTP lands there,
and under RLS, with `realtime.topic` set as the Realtime server sets it, only the
members read their topic), Supabase Auth's `auth.users` (the development sign-in
makes a user there), supautils' reserved roles (a gateway role of one's own, as
docs/deploy.md advises) and `public` exposed by Supabase's REST API (nothing of ours
there)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conftest import GatewayProcess, User, start_gateway, stop_gateway
from gateway.settings import DEV_JWT_SECRET, authenticator_url


@pytest.fixture(scope="module", autouse=True)
def _supabase_only(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select to_regclass('auth.schema_migrations') is not null "
            "and to_regprocedure('realtime.send(jsonb,text,text,boolean)') is not null"
        ).fetchone()
    if not (row and row[0]):
        pytest.skip("needs a Supabase database: make test-supabase")


def test_migrated_as_supabase_postgres_with_nothing_in_public(admin: psycopg.Connection) -> None:
    who = admin.execute("select current_user, rolsuper from pg_roles "
                        "where rolname = current_user").fetchone()
    assert who == ("postgres", False)
    owners = admin.execute(
        "select nspname, nspowner::regrole::text from pg_namespace "
        "where nspname in ('app', 'api', 'private', 'joinery_migrations') order by 1").fetchall()
    assert owners == [("api", "postgres"), ("app", "postgres"),
                      ("joinery_migrations", "postgres"), ("private", "postgres")]
    # Supabase's REST API exposes public: none of our tables (yoyo's included) is there
    # (pgTAP's, which the tests install, are an extension's).
    assert admin.execute(
        "select c.relname::text from pg_class c where c.relnamespace = 'public'::regnamespace "
        "and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S') "
        "and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass "
        "and d.objid = c.oid and d.deptype = 'e')").fetchall() == []
    assert admin.execute(
        "select c.relname::text from pg_class c "
        "where c.relnamespace = 'joinery_migrations'::regnamespace and c.relkind = 'r' "
        "order by 1").fetchall() == [("_yoyo_log",), ("_yoyo_migration",), ("_yoyo_version",),
                                     ("yoyo_lock",)]
    assert admin.execute(
        "select r.rolname::text from pg_roles r "
        "where r.rolname in ('anon', 'authenticated', 'service_role', 'authenticator') "
        "and has_schema_privilege(r.oid, 'joinery_migrations', 'USAGE')").fetchall() == []


def test_the_gateway_connects_as_supabase_authenticator(client: httpx.Client,
                                                        admin: psycopg.Connection,
                                                        make_user) -> None:
    user = make_user("Ada")
    response = client.post("/rest/v1/rpc/me", json={}, headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json()["display_name"] == "Ada"
    roles = admin.execute(
        "select distinct usename::text from pg_stat_activity "
        "where application_name = 'joinery-gateway'").fetchall()
    assert roles == [("authenticator",)]
    # Supabase's settings for that role hold on the gateway's connections.
    with psycopg.connect(authenticator_url(admin.info.dsn)) as conn:
        assert conn.execute("show statement_timeout").fetchone() == ("8s",)


def call(client: httpx.Client, user: User, path: str, body: dict, status: int = 200) -> dict:
    response = client.post(path, json=body, headers=user.headers)
    assert response.status_code == status, response.text
    return response.json()


def readable(url: str, user: str, topic: str, topics: list[str]) -> list[tuple[str, str]]:
    """What `user` reads of realtime.messages (among `topics`) while the Realtime server
    authorises `topic`: in one transaction it sets the role, the caller's claims and
    realtime.topic with set_config(..., true), then selects."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "select set_config('role', 'authenticated', true), "
            "set_config('request.jwt.claims', %s, true), "
            "set_config('request.jwt.claim.sub', %s, true), "
            "set_config('realtime.topic', %s, true)",
            (json.dumps({"sub": user, "role": "authenticated"}), user, topic))
        return [(r[0], r[1]) for r in conn.execute(
            "select topic, event from realtime.messages where topic = any(%s) "
            "order by topic", (topics,)).fetchall()]


def test_an_approval_goes_through_realtime_send_and_only_members_read_it(
        client: httpx.Client, admin: psycopg.Connection, database_url: str, make_user) -> None:
    author, creator, friend, stranger = (make_user() for _ in range(4))
    event = call(client, author, "/rest/v1/rpc/create_event", {"title": "Supabase night"})
    call(client, creator, "/rest/v1/rpc/request_friend", {"user_id": friend.id})
    call(client, friend, "/rest/v1/rpc/accept_friend", {"user_id": creator.id})
    group = call(client, creator, f"/events/{event['id']}/like", {"memberIds": [friend.id]},
                 201)["id"]
    topics = [f"group:{group}", f"user:{creator.id}", f"user:{friend.id}"]
    assert admin.execute("select count(*) from realtime.messages where topic = any(%s)",
                         (topics,)).fetchone() == (0,)

    decided = call(client, author, f"/groups/{group}/approve", {})
    assert decided["status"] == "approved"

    rows = admin.execute(
        "select topic, event, private, extension, payload from realtime.messages "
        "where topic = any(%s) order by topic", (topics,)).fetchall()
    assert [row[:4] for row in rows] == [
        (topic, "group_approved", True, "broadcast") for topic in sorted(topics)]
    for topic, _, _, _, payload in rows:
        assert payload["type"] == "group_approved" and payload["group_id"] == group
        assert payload["chat_id"] == decided["chatId"] and payload["topic"] == topic
        uuid.UUID(payload["id"])  # the id realtime.send adds

    url = authenticator_url(database_url)
    group_topic, own = f"group:{group}", f"user:{friend.id}"
    assert readable(url, friend.id, group_topic, topics) == [(group_topic, "group_approved")]
    assert readable(url, creator.id, group_topic, topics) == [(group_topic, "group_approved")]
    assert readable(url, author.id, group_topic, topics) == [(group_topic, "group_approved")]
    assert readable(url, stranger.id, group_topic, topics) == []
    assert readable(url, friend.id, own, topics) == [(own, "group_approved")]
    assert readable(url, creator.id, own, topics) == []
    assert readable(url, stranger.id, own, topics) == []


def test_an_unconfirmed_address_does_not_answer_an_emailed_invite(
        client: httpx.Client, admin: psycopg.Connection, make_user) -> None:
    """Anyone may sign up to Supabase with any address: until it is confirmed
    (auth.users.email_confirmed_at), an invite emailed to it is not theirs."""
    inviter, bea = make_user(), make_user()
    admin.execute("update auth.users set email_confirmed_at = null where id = %s", (bea.id,))
    event = call(client, inviter, "/rest/v1/rpc/create_event",
                 {"title": "Pairs", "capacity": 4})
    invite = client.post(f"/api/events/{event['id']}/invite", json={"email": bea.email},
                         headers=inviter.headers)
    assert invite.status_code == 201, invite.text
    joined = client.post("/api/invites/join", json={"code": invite.json()["short_code"]},
                         headers=bea.headers)
    assert joined.status_code == 200, joined.text
    token = joined.json()["token"]
    refused = client.post(f"/api/invites/{token}/accept", headers=bea.headers)
    assert (refused.status_code, refused.json()) == (403, {
        "code": "42501", "message": "This invitation was sent to another email address.",
        "details": "other_addressee", "hint": None})
    admin.execute("update auth.users set email_confirmed_at = now() where id = %s", (bea.id,))
    accepted = client.post(f"/api/invites/{token}/accept", headers=bea.headers)
    assert accepted.status_code == 200, accepted.text


@pytest.fixture
def dev_gateway(database_url: str, tmp_path: Path) -> Iterator[GatewayProcess]:
    proc = start_gateway(database_url, tmp_path / "dev.log", JWT_SECRET=DEV_JWT_SECRET,
                         JOINERY_ENV="development")
    yield proc
    stop_gateway(proc)


def test_dev_sign_in_makes_a_supabase_auth_user(dev_gateway: GatewayProcess,
                                                admin: psycopg.Connection) -> None:
    email = f"dev-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=dev_gateway.url) as http:
        for _ in range(2):  # the second time, the same user
            response = http.post("/dev/sign-in", data={"email": email, "display_name": "Dana"})
            assert response.status_code == 303, response.text
            assert response.headers["location"].startswith("/#access_token=")
    rows = admin.execute(
        "select u.id::text, p.display_name from auth.users u "
        "join app.profiles p on p.id = u.id where u.email = %s", (email,)).fetchall()
    assert len(rows) == 1 and rows[0][1] == "Dana"


@pytest.fixture
def own_gateway_role(admin: psycopg.Connection) -> Iterator[str]:
    role = f"joinery_gateway_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("create role {} login noinherit").format(sql.Identifier(role)))
    yield role
    admin.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_a_gateway_role_of_ones_own(own_gateway_role: str, admin: psycopg.Connection,
                                    database_url: str, tmp_path: Path, make_user) -> None:
    """The advice of docs/deploy.md for Supabase: `grant authenticator to ...` is refused
    (authenticator is reserved), granting the three API roles works, and a gateway
    logging in as that role serves."""
    role = sql.Identifier(own_gateway_role)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        admin.execute(sql.SQL("grant authenticator to {}").format(role))
    admin.execute(sql.SQL("grant anon, authenticated, service_role to {}").format(role))
    params = conninfo_to_dict(database_url)
    params["user"] = own_gateway_role
    proc = start_gateway(database_url, tmp_path / "own.log",
                         GATEWAY_DATABASE_URL=make_conninfo(**params))
    try:
        user = make_user("Grace")
        with httpx.Client(base_url=proc.url) as http:
            response = http.post("/rest/v1/rpc/create_group", json={"name": "Own role"},
                                 headers=user.headers)
            assert response.status_code == 200, response.text
            assert response.json()["creator_id"] == user.id
            assert http.get("/rest/v1/rpc/me").status_code == 401  # anon: sign in first
    finally:
        stop_gateway(proc)
