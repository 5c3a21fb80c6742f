"""Helpers of the Citus tests (run by `make test-citus`; skipped elsewhere)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def is_coordinator(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("select 1 from pg_extension where extname = 'citus'").fetchone() is None:
            return False
        row = conn.execute("select citus_is_coordinator()").fetchone()
        return bool(row and row[0])


def require_citus(url: str) -> None:
    if not is_coordinator(url):
        pytest.skip("not a Citus coordinator (make test-citus runs these)")


def worker_urls() -> list[str]:
    return os.environ.get("CITUS_WORKER_URLS", "").split()


def as_role(url: str, user: str, password: str | None = None) -> str:
    params: dict[str, Any] = conninfo_to_dict(url)
    params["user"] = user
    if password is not None:
        params["password"] = password
    else:
        params.pop("password", None)
    return make_conninfo(**params)


@contextmanager
def reading_as(url: str, user_id: str) -> Iterator[psycopg.Connection]:
    """A transaction as `authenticated` for user_id, the claims set with SET LOCAL
    (the way that reaches the workers of a cluster)."""
    with psycopg.connect(url) as conn:
        conn.execute("set local role authenticated")
        claims = json.dumps({"sub": user_id, "role": "authenticated"})
        conn.execute(psycopg.sql.SQL("set local request.jwt.claims = {}").format(
            psycopg.sql.Literal(claims)))
        yield conn
        conn.rollback()
