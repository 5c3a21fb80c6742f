"""`make test-citus` runs this before the first migrate: the cluster gets the schema
as it was before migration 0010 (tables only, on the coordinator, as an older
Joinery left them) and a few rows in it, so that `make migrate` then has to bring
an older schema forward on a cluster and distribute tables that hold data.
tests/test_citus.py::test_older_schema_came_forward checks the rows afterwards.

    python tests/citus_old_schema.py   (DATABASE_URL: the coordinator)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.tools.migrate import MIGRATIONS_DIR, yoyo_url

OLD_HEAD = "0005_rate_limit_prune"
USER = "00000000-0000-4000-8000-000000000101"
EVENT = "00000000-0000-4000-8000-000000000102"
LIKE_GROUP = "00000000-0000-4000-8000-000000000103"
CHAT = "00000000-0000-4000-8000-000000000104"
INVITE = "00000000-0000-4000-8000-000000000105"

ROWS = f"""
insert into auth.users (id, email) values ('{USER}', 'old@example.com');
insert into app.profiles (id, display_name) values ('{USER}', 'Old')
    on conflict (id) do nothing;
insert into app.events (id, creator_id, title, capacity) values ('{EVENT}', '{USER}', 'Old', 4);
insert into app.event_authors (event_id, user_id) values ('{EVENT}', '{USER}');
insert into app.like_groups (id, event_id, creator_id, status)
    values ('{LIKE_GROUP}', '{EVENT}', '{USER}', 'approved');
insert into app.like_group_approvals (group_id, author_id, approved)
    values ('{LIKE_GROUP}', '{USER}', true);
insert into app.chats (id, type, like_group_id) values ('{CHAT}', 'approved_group', '{LIKE_GROUP}');
insert into app.chat_participants (chat_id, user_id) values ('{CHAT}', '{USER}');
insert into app.pair_invites (id, event_id, inviter_id, short_code, expires_at)
    values ('{INVITE}', '{EVENT}', '{USER}', 'QDCDE234', now() + interval '1 day');
insert into app.pair_invite_tokens (token_hash, invite_id, issued_to)
    values (sha256('old-token'), '{INVITE}', '{USER}');
"""


def main() -> None:
    from yoyo import get_backend, read_migrations

    url = os.environ["DATABASE_URL"]
    backend = get_backend(yoyo_url(url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    old = [m for m in migrations if m.id <= OLD_HEAD]
    with backend.lock():
        backend.apply_migrations_only(backend.to_apply(migrations.__class__(old)))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ROWS)
    print(f"older schema ({OLD_HEAD}) with rows in place")


if __name__ == "__main__":
    main()
