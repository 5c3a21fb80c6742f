"""Lock order, stepped deterministically: each call runs on its own connection as
its user, and the test decides who waits for whom by holding a lock itself and
watching pg_stat_activity until a call is waiting on a lock. No timing: every
connection carries a lock_timeout, so a call that blocks where it must not
fails with 55P03 instead of passing slowly, and a deadlock is PostgreSQL's own
40P01."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

if TYPE_CHECKING:
    from conftest import User

# Long enough never to fire in a healthy run, short enough to end a broken one.
LOCK_TIMEOUT = "15s"


class Session:
    """One connection acting as one user, one transaction per call."""

    def __init__(self, database_url: str, user: User | None) -> None:
        self.conn = psycopg.connect(database_url, autocommit=True)
        self.user = user
        self.pid = self.conn.info.backend_pid
        # As the user's token: answer_pair_invite reads the address from its email claim.
        self.claims = {"sub": user.id, "role": "authenticated", "email": user.email} \
            if user is not None else {}

    def call(self, query: str, params: tuple[Any, ...] = (),
             lock_timeout: str = LOCK_TIMEOUT) -> tuple[Any, str | None]:
        """query as the user in its own transaction: (first column, response.status)."""
        with self.conn.transaction():
            self.conn.execute(f"set local lock_timeout = '{lock_timeout}'")
            if self.user is not None:
                self.conn.execute("set local role authenticated")
                self.conn.execute(
                    "select set_config('request.jwt.claims', %s, true)",
                    (json.dumps(self.claims),))
            row = self.conn.execute(query, params).fetchone()  # type: ignore[arg-type]
            status = self.conn.execute(
                "select current_setting('response.status', true)").fetchone()
        return (row[0] if row else None), (status[0] if status else None)

    @contextmanager
    def open_call(self, query: str, params: tuple[Any, ...] = ()) -> Iterator[Any]:
        """query as the user, its transaction left open (holding its locks) until
        the block ends; then it commits."""
        with self.conn.transaction():
            if self.user is not None:
                self.conn.execute("set local role authenticated")
                self.conn.execute(
                    "select set_config('request.jwt.claims', %s, true)",
                    (json.dumps(self.claims),))
            row = self.conn.execute(query, params).fetchone()  # type: ignore[arg-type]
            yield row[0] if row else None

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def session(database_url: str) -> Iterator[Callable[[User | None], Session]]:
    opened: list[Session] = []

    def factory(user: User | None = None) -> Session:
        opened.append(Session(database_url, user))
        return opened[-1]

    yield factory
    for s in opened:
        s.close()


@contextmanager
def holding(database_url: str, statement: str, params: tuple[Any, ...]) -> Iterator[None]:
    """A transaction of the test's own holding the lock `statement` takes until the
    block ends (then it commits)."""
    with psycopg.connect(database_url) as conn:
        conn.execute(statement, params)  # type: ignore[arg-type]
        yield
        conn.commit()


def wait_until_blocked(admin: psycopg.Connection, pid: int, work: Future[Any]) -> None:
    """Returns once backend `pid` waits on a lock, or once `work` is done (a call
    that did not have to wait). Bounded: the calls' lock_timeout ends anything stuck."""
    for _ in range(3000):
        if work.done():
            return
        row = admin.execute(
            "select wait_event_type from pg_stat_activity where pid = %s", (pid,)).fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.01)
    raise AssertionError("the call neither finished nor waited on a lock")


def new_event(admin: psycopg.Connection, creator: User, capacity: int | None = 10) -> str:
    row = admin.execute(
        "insert into app.events (title, creator_id, registration_deadline, capacity) "
        "values ('Lock cup', %s, %s, %s) returning id",
        (creator.id, datetime.now(UTC) + timedelta(days=2), capacity)).fetchone()
    assert row is not None
    admin.execute("insert into app.event_authors (event_id, user_id) values (%s, %s)",
                  (row[0], creator.id))
    return str(row[0])


def open_invite(inviter: Session, invitee: Session, event_id: str) -> tuple[str, str]:
    """(invite id, token issued to the invitee) of a new invite by `inviter`."""
    invite, status = inviter.call("select api.create_pair_invite(%s)", (event_id,))
    assert status is None, invite
    token, status = invitee.call("select api.join_pair_invite(%s)", (invite["short_code"],))
    assert status is None, token
    return invite["id"], token["token"]


@pytest.mark.parametrize("answer", ["token", "in_app"])
def test_accept_and_recreate_by_the_inviter_do_not_deadlock(
        database_url: str, admin: psycopg.Connection, make_user: Callable[[], User],
        session: Callable[[User | None], Session], answer: str) -> None:
    """The inviter re-creates their invite while the partner accepts it, both held
    at the event row by a registration in flight. The accept used to lock the
    invite then the event, the creation the event then the invite: 40P01. The
    same with the accept made in the app (answer_pair_invite, by the address)."""
    owner, inviter_user, invitee_user = make_user(), make_user(), make_user()
    event_id = new_event(admin, owner)
    inviter, invitee = session(inviter_user), session(invitee_user)
    if answer == "token":
        invite_id, token = open_invite(inviter, invitee, event_id)
        accept_query, accept_params = "select api.accept_pair_invite(%s)", (token,)
    else:
        invite, status = inviter.call("select api.create_pair_invite(%s, %s)",
                                      (event_id, invitee_user.email))
        assert status is None, invite
        invite_id = invite["id"]
        accept_query = "select api.answer_pair_invite(%s, true)"
        accept_params = (invite_id,)

    with ThreadPoolExecutor(max_workers=2) as pool:
        # A registration of the event in flight: its seat update holds the event row.
        with holding(database_url, "update app.events set seats_taken = seats_taken "
                     "where id = %s", (event_id,)):
            create = pool.submit(inviter.call, "select api.create_pair_invite(%s)", (event_id,))
            wait_until_blocked(admin, inviter.pid, create)
            accept = pool.submit(invitee.call, accept_query, accept_params)
            wait_until_blocked(admin, invitee.pid, accept)
        created, created_status = create.result()
        accepted, accepted_status = accept.result()

    # One of them went first; neither failed. Whichever order: the invite is either
    # accepted (and the re-creation then revoked nothing) or revoked (and the accept 410).
    assert created_status is None or created_status == "409", created
    state = admin.execute("select status from app.pair_invites where id = %s",
                          (invite_id,)).fetchone()
    assert state is not None
    if state[0] == "revoked":
        assert (accepted_status, accepted["details"]) == ("410", "revoked"), accepted
        assert created_status is None
    else:
        assert state[0] == "accepted" and accepted_status is None, accepted
    regs = admin.execute("select count(*) from app.registrations where event_id = %s",
                         (event_id,)).fetchone()
    assert regs == ((2,) if state[0] == "accepted" else (0,))


def befriend(admin: psycopg.Connection, a: User, b: User) -> None:
    admin.execute("insert into app.friendships (user_low, user_high, requester_id, status) "
                  "values (least(%s::uuid, %s::uuid), greatest(%s::uuid, %s::uuid), %s, "
                  "'accepted')", (a.id, b.id, a.id, b.id, a.id))


# An open transaction of one of these calls must not make the other wait at all:
# the other runs with a lock_timeout short enough to turn a wait into 55P03.
NO_WAIT = "500ms"


def test_an_open_invite_creation_blocks_no_like_nor_registration(
        admin: psycopg.Connection, make_user: Callable[[], User],
        session: Callable[[User | None], Session]) -> None:
    owner, inviter_user, liker_user, registrant_user = (make_user() for _ in range(4))
    event_id = new_event(admin, owner)
    inviter, liker = session(inviter_user), session(liker_user)
    registrant = session(registrant_user)
    with inviter.open_call("select api.create_pair_invite(%s)", (event_id,)) as invite:
        assert "short_code" in invite
        liked, status = liker.call("select api.like_event(%s)", (event_id,), lock_timeout=NO_WAIT)
        assert status is None and liked["status"] == "pending"
        registered, status = registrant.call("select api.register_for_event(%s)", (event_id,),
                                             lock_timeout=NO_WAIT)
        assert status is None and registered["status"] == "confirmed"


def test_an_open_accept_blocks_no_like_nor_invite_creation(
        admin: psycopg.Connection, make_user: Callable[[], User],
        session: Callable[[User | None], Session]) -> None:
    owner, inviter_user, invitee_user, liker_user, other_user = (make_user() for _ in range(5))
    event_id = new_event(admin, owner)
    inviter, invitee = session(inviter_user), session(invitee_user)
    liker, other = session(liker_user), session(other_user)
    _, token = open_invite(inviter, invitee, event_id)
    with invitee.open_call("select api.accept_pair_invite(%s)", (token,)) as accepted:
        assert len(accepted["registrations"]) == 2
        liked, status = liker.call("select api.like_event(%s)", (event_id,), lock_timeout=NO_WAIT)
        assert status is None and liked["status"] == "pending"
        created, status = other.call("select api.create_pair_invite(%s)", (event_id,),
                                     lock_timeout=NO_WAIT)
        assert status is None and "short_code" in created


def test_an_open_author_change_blocks_no_registration_nor_invite_but_likes_wait(
        database_url: str, admin: psycopg.Connection, make_user: Callable[[], User],
        session: Callable[[User | None], Session]) -> None:
    """add_event_author re-evaluates every pending group while it holds the event's
    authors lock: registrations and invites go on; a like waits (an author is never
    added beside a pending membership), and finishes once the change commits."""
    owner_user, author_user, registrant_user, inviter_user, liker_user = (
        make_user() for _ in range(5))
    event_id = new_event(admin, owner_user)
    owner, registrant = session(owner_user), session(registrant_user)
    inviter, liker = session(inviter_user), session(liker_user)
    with owner.open_call("select api.add_event_author(%s, %s)", (event_id, author_user.id)):
        registered, status = registrant.call("select api.register_for_event(%s)", (event_id,),
                                             lock_timeout=NO_WAIT)
        assert status is None and registered["status"] == "confirmed"
        created, status = inviter.call("select api.create_pair_invite(%s)", (event_id,),
                                       lock_timeout=NO_WAIT)
        assert status is None and "short_code" in created
        with pytest.raises(psycopg.errors.LockNotAvailable):
            liker.call("select api.like_event(%s)", (event_id,), lock_timeout=NO_WAIT)
    liked, status = liker.call("select api.like_event(%s)", (event_id,))
    assert status is None and liked["status"] == "pending"


def test_a_stranger_is_refused_without_waiting_for_a_hot_row(
        database_url: str, admin: psycopg.Connection, make_user: Callable[[], User],
        session: Callable[[User | None], Session]) -> None:
    """Privileges are checked before locks: while someone else holds the row a call
    would lock, a caller without the right is refused at once (403/404) instead of
    queueing for the row (55P03 here) and, once holding it, making others wait."""
    owner_user, creator_user, friend_user, stranger_user = (make_user() for _ in range(4))
    event_id = new_event(admin, owner_user)
    befriend(admin, creator_user, friend_user)
    creator, stranger = session(creator_user), session(stranger_user)
    like_group, _ = creator.call("select api.like_event(%s, %s)", (event_id, [friend_user.id]))
    group, _ = creator.call("select api.create_group('Hot')")
    cases = [
        ("select from app.events where id = %s for no key update", (event_id,),
         "select api.add_event_author(%s, %s)", (event_id, stranger_user.id)),
        ("select from app.like_groups where event_id = %s and id = %s for update",
         (event_id, like_group["id"]),
         "select api.remove_like_group_member(%s, %s)", (like_group["id"], friend_user.id)),
        ("select from app.like_groups where event_id = %s and id = %s for update",
         (event_id, like_group["id"]),
         "select api.approve_like_group(%s)", (like_group["id"],)),
        ("select from app.groups where id = %s for no key update", (group["id"],),
         "select api.leave_group(%s)", (group["id"],)),
    ]
    for hold, hold_params, query, params in cases:
        with holding(database_url, hold, hold_params):
            with pytest.raises(psycopg.errors.Error) as refusal:
                stranger.call(query, params, lock_timeout=NO_WAIT)
            assert refusal.value.sqlstate in ("42501", "PT404"), (query, refusal.value)


def test_a_stranger_is_refused_at_an_invite_without_waiting_for_it(
        database_url: str, admin: psycopg.Connection, make_user: Callable[[], User],
        session: Callable[[User | None], Session]) -> None:
    """resend_pair_invite and answer_pair_invite check the caller before locking
    the invite: while the invite's row is held, someone else is refused at once."""
    owner_user, inviter_user, invitee_user, stranger_user = (make_user() for _ in range(4))
    event_id = new_event(admin, owner_user)
    inviter, stranger = session(inviter_user), session(stranger_user)
    invite, status = inviter.call("select api.create_pair_invite(%s, %s)",
                                  (event_id, invitee_user.email))
    assert status is None, invite
    hold = "select from app.pair_invites where event_id = %s and id = %s for update"
    with holding(database_url, hold, (event_id, invite["id"])):
        for query in ("select api.resend_pair_invite(%s)",
                      "select api.answer_pair_invite(%s, true)",
                      "select api.answer_pair_invite(%s, false)"):
            refused, status = stranger.call(query, (invite["id"],), lock_timeout=NO_WAIT)
            assert status == "403", (query, refused)


def test_join_and_the_last_members_leave_do_not_deadlock(
        database_url: str, admin: psycopg.Connection, make_user: Callable[[], User],
        session: Callable[[User | None], Session]) -> None:
    """The last member leaves (deleting the group and, by cascade, its invites) while
    someone joins with a code. The leave used to lock the group then the invites, the
    join the invite then the group (its membership's foreign key): 40P01."""
    owner_user, joiner_user = make_user(), make_user()
    owner, joiner = session(owner_user), session(joiner_user)
    group, _ = owner.call("select api.create_group('Last one out')")
    invite, _ = owner.call("select api.create_group_invite(%s)", (group["id"],))

    with ThreadPoolExecutor(max_workers=2) as pool:
        # Someone reading the owner's membership (FOR KEY SHARE) holds up the
        # leave's delete of it, after the leave has locked the group.
        with holding(database_url, "select from app.group_members where group_id = %s "
                     "and user_id = %s for key share", (group["id"], owner_user.id)):
            leave = pool.submit(owner.call, "select api.leave_group(%s)", (group["id"],))
            wait_until_blocked(admin, owner.pid, leave)
            join = pool.submit(joiner.call, "select api.join_group(%s)", (invite["code"],))
            wait_until_blocked(admin, joiner.pid, join)
        left = leave.result()
        joined, joined_status = join.result()

    assert left == ("", None)  # void
    # The group is gone, and the join found no invite.
    assert (joined_status, joined["details"]) == ("404", "not_found"), joined
    assert admin.execute("select count(*) from app.groups where id = %s",
                         (group["id"],)).fetchone() == (0,)


def test_a_join_locks_the_invite_only_when_it_counts_uses(
        database_url: str, admin: psycopg.Connection, make_user: Callable[[], User],
        session: Callable[[User | None], Session]) -> None:
    """join_group locks the invite's row (FOR UPDATE) only for a code with max_uses,
    whose limit it checks. While another transaction holds FOR KEY SHARE on the
    invite (as an insert of a membership naming it does), a join through an
    unlimited code goes through at once (its use_count UPDATE takes FOR NO KEY
    UPDATE, which KEY SHARE allows); one through a limited code waits (55P03
    within NO_WAIT). use_count is raised in both once nothing holds them."""
    owner_user, first_user, second_user = make_user(), make_user(), make_user()
    owner, first, second = session(owner_user), session(first_user), session(second_user)
    group, _ = owner.call("select api.create_group('Open door')")
    unlimited, _ = owner.call("select api.create_group_invite(%s)", (group["id"],))
    limited, _ = owner.call("select api.create_group_invite(%s, null, 5)", (group["id"],))
    assert unlimited["max_uses"] is None and limited["max_uses"] == 5
    hold = ("select from app.group_invites where group_id = %s and id = any(%s::uuid[]) "
            "for key share")
    with holding(database_url, hold, (group["id"], [unlimited["id"], limited["id"]])):
        joined, status = first.call("select api.join_group(%s)", (unlimited["code"],),
                                    lock_timeout=NO_WAIT)
        assert status is None and joined["membership"]["user_id"] == first_user.id
        with pytest.raises(psycopg.errors.LockNotAvailable):
            second.call("select api.join_group(%s)", (limited["code"],), lock_timeout=NO_WAIT)
    joined, status = second.call("select api.join_group(%s)", (limited["code"],))
    assert status is None and joined["membership"]["user_id"] == second_user.id
    counts = admin.execute("select id::text, use_count from app.group_invites "
                           "where group_id = %s order by use_count, id", (group["id"],)).fetchall()
    assert sorted(counts) == sorted([(unlimited["id"], 1), (limited["id"], 1)])
