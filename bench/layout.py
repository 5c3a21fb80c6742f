"""The shape of the benchmark data: which numbered users, groups, events and invites
exist at a size, so that the loader (SQL) and the load generators (pgbench scripts,
wrk request files) name the same rows by number.

Every id is derived from a number: md5('bench-<kind>-' || n)::uuid in SQL,
`bench_id(kind, n)` in Python. Users come in ranges:

  base users        1 .. U                 members of groups and like groups, registrants,
                                           pair inviters
  historic authors  10_000_001 + 2e + k    two authors of each historic like-group event
  pending authors   11_000_001 + 20e + k   twenty authors of each pending-group event
  pending members   12_000_001 + 10l + m   members of the pending like groups
  organizer         13_000_001             creator of registration and accept events
  fresh users       20_000_001 + i         each joins one code and accepts one invite
  race users        30_000_001 + ...       the max_uses = 5 races (ours, then baseline's)

At a size of N rows (U = N / 4 base users, so that each base user is in 4 groups,
4 like groups and 4 registrations whatever N is):

  groups            N / 10 groups of 10 members; 10 invites each (one open code, the
                    others expired, used up, revoked or partly used): N members, N invites
  like groups       N / 2 historic ones, approved, 2 members, 2 approvals, a chat each
                    (N approvals); PENDING_GROUPS pending ones of 10 members in events of
                    20 authors, so that 9 more approvals leave them pending
  registrations     N, about 100 per event
  pair invites      ACCEPT_INVITES open invites over ACCEPT_EVENTS events, each with a
                    token whose text the load generators know
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

# Fixed pools, the same at every size, so that each hot call does the same work.
JOIN_CODES = 1_000          # open codes (no max_uses, no expiry), one per group 0..999
FRESH_USERS = 250_000       # a fresh user per join and per accept while they last
PENDING_EVENTS = 50         # events whose like groups stay pending
PENDING_AUTHORS = 20        # authors per pending event: threshold min(20, 10) = 10
PENDING_GROUPS = 10_000     # 10 members each; approvals by authors 1..9 keep them pending
APPROVALS_PER_PENDING = 9   # below the threshold of 10
ACCEPT_EVENTS = 1_000       # accepts lock their event row: spread them
ACCEPT_INVITES = FRESH_USERS  # invite a is accepted by fresh user a
RACE_ROUNDS = 5
RACE_USERS = 40
RACE_MAX_USES = 5

HISTORIC_AUTHOR_BASE = 10_000_001
PENDING_AUTHOR_BASE = 11_000_001
PENDING_MEMBER_BASE = 12_000_001
ORGANIZER = 13_000_001
FRESH_BASE = 20_000_001
RACE_BASE = 30_000_001          # ours: RACE_BASE + round * RACE_USERS + k
BASELINE_RACE_BASE = 30_100_001  # the baseline's

PENDING_EVENT_BASE = 1_000_000  # event numbers
REG_EVENT_BASE = 2_000_000
ACCEPT_EVENT_BASE = 3_000_000
PENDING_GROUP_BASE = 5_000_000  # like-group numbers of the pending groups
RACE_GROUP_BASE = 9_000_000     # group numbers: ours + round, baseline's + 100_000 + round
RACE_INVITE_BASE = 90_000_000   # invite numbers: ours + round, baseline's + 1_000_000 + round

SHORT_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


@dataclass(frozen=True)
class Layout:
    """Row counts at one size: `rows` rows in each big table (group_members,
    group_invites, registrations, like_group_approvals)."""

    label: str
    rows: int

    @property
    def users(self) -> int:
        """Base users: each is in 4 groups, 4 like groups and 4 registrations."""
        return self.rows // 4

    @property
    def groups(self) -> int:
        """Groups of 10 members, each with 10 invites."""
        return self.rows // 10

    @property
    def like_events(self) -> int:
        return max(self.rows // 100, 10)

    @property
    def like_groups(self) -> int:
        """Historic (approved) like groups of 2 members with 2 approvals."""
        return self.rows // 2

    @property
    def reg_events(self) -> int:
        """Events holding the loaded registrations, about 100 each."""
        return max(self.rows // 100, 10)

    @property
    def user_count(self) -> int:
        return (self.users + 2 * self.like_events + PENDING_AUTHORS * PENDING_EVENTS
                + pending_members() + 1 + FRESH_USERS + 2 * RACE_ROUNDS * RACE_USERS)


def pending_members() -> int:
    return PENDING_GROUPS // PENDING_EVENTS * 10


SIZES = (Layout("10k", 10_000), Layout("1M", 1_000_000))


def bench_id(kind: str, n: int) -> str:
    """The same id as md5('bench-<kind>-' || n)::uuid in SQL."""
    return str(uuid.UUID(hashlib.md5(f"bench-{kind}-{n}".encode()).hexdigest()))


def user_id(n: int) -> str:
    return bench_id("user", n)


def join_code(c: int) -> str:
    """The open code of group c (its invite number c * 10)."""
    return bench_id("code", c * 10)


def invite_code(v: int) -> str:
    return bench_id("code", v)


def accept_token(a: int) -> str:
    return f"bench-token-{a}"


def base_user(layout: Layout, k: int) -> int:
    return k % layout.users + 1
