"""The hot calls and how each request picks its caller and argument.

A call is either sequential (each request does new work: request i uses fresh
rows numbered by i, from a pool that wraps when exhausted) or random (reads of
existing rows). The same rule is written twice: as pgbench expressions for the
direct runs, and in Python for the wrk request files of the HTTP runs."""

from __future__ import annotations

import random
from dataclasses import dataclass

from . import layout as L
from .layout import Layout


@dataclass(frozen=True)
class Call:
    name: str
    arg: str | None        # the function's one argument, if any
    arg_type: str
    sequential: bool
    pool: int              # distinct request indices of a sequential call
    # pgbench: \set lines giving :u (the caller's user number) from :i (sequential) or
    # at random, and the SQL expression of the argument.
    pgbench_sets: tuple[str, ...]
    arg_sql: str
    # SQL counting the fresh work done so far (sequential calls).
    progress_sql: str | None = None

    def request(self, s: Layout, i: int, rng: random.Random) -> tuple[int, dict[str, str]]:
        """(caller's user number, arguments) of request index i (sequential) or a
        random request."""
        return REQUESTS[self.name](s, i, rng)


def _join(s: Layout, i: int, rng: random.Random) -> tuple[int, dict[str, str]]:
    return L.FRESH_BASE + i % L.FRESH_USERS, {"code": L.join_code(i % L.JOIN_CODES)}


def _accept(s: Layout, i: int, rng: random.Random) -> tuple[int, dict[str, str]]:
    a = i % L.ACCEPT_INVITES
    return L.FRESH_BASE + a, {"token": L.accept_token(a)}


def _approve(s: Layout, i: int, rng: random.Random) -> tuple[int, dict[str, str]]:
    p = i % L.PENDING_GROUPS
    k = (i // L.PENDING_GROUPS) % L.APPROVALS_PER_PENDING + 1
    author = L.PENDING_AUTHOR_BASE + (p % L.PENDING_EVENTS) * L.PENDING_AUTHORS + k
    return author, {"group_id": L.bench_id("lg", L.PENDING_GROUP_BASE + p)}


def _get_like_group(s: Layout, i: int, rng: random.Random) -> tuple[int, dict[str, str]]:
    h = rng.randrange(s.like_groups)
    return (h * 2 + rng.randrange(2)) % s.users + 1, {"group_id": L.bench_id("lg", h)}


def _my_like_groups(s: Layout, i: int, rng: random.Random) -> tuple[int, dict[str, str]]:
    return rng.randrange(s.users) + 1, {}


REQUESTS = {
    "join_group": _join,
    "accept_pair_invite": _accept,
    "approve_like_group": _approve,
    "get_like_group": _get_like_group,
    "my_like_groups": _my_like_groups,
}


def calls(s: Layout) -> list[Call]:
    P, EP = L.PENDING_GROUPS, L.PENDING_EVENTS
    return [
        Call("join_group", "code", "text", True, L.FRESH_USERS,
             (f"\\set u {L.FRESH_BASE} + :i % {L.FRESH_USERS}",
              f"\\set v (:i % {L.JOIN_CODES}) * 10"),
             "md5('bench-code-' || :v)::uuid",
             "select count(*) from app.audit_log where action = 'group.join' "
             "and outcome = 'joined'"),
        Call("get_like_group", "group_id", "uuid", False, 0,
             (f"\\set h random(0, {s.like_groups - 1})",
              "\\set m random(0, 1)",
              f"\\set u (:h * 2 + :m) % {s.users} + 1"),
             "md5('bench-lg-' || :h)::uuid"),
        Call("approve_like_group", "group_id", "uuid", True, P * L.APPROVALS_PER_PENDING,
             (f"\\set p :i % {P}",
              f"\\set k (:i / {P}) % {L.APPROVALS_PER_PENDING} + 1",
              f"\\set u {L.PENDING_AUTHOR_BASE} + (:p % {EP}) * {L.PENDING_AUTHORS} + :k",
              f"\\set g {L.PENDING_GROUP_BASE} + :p"),
             "md5('bench-lg-' || :g)::uuid",
             "select count(*) from app.like_group_approvals v join app.like_groups g "
             "on g.id = v.group_id where g.status = 'pending'"),
        Call("accept_pair_invite", "token", "text", True, L.ACCEPT_INVITES,
             (f"\\set a :i % {L.ACCEPT_INVITES}",
              f"\\set u {L.FRESH_BASE} + :a"),
             "'bench-token-' || :a",
             "select count(*) from app.pair_invites where status = 'accepted'"),
        Call("my_like_groups", None, "", False, 0,
             (f"\\set u random(1, {s.users})",), ""),
    ]
