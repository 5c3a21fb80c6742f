"""The database side of a request: the pool, the catalogue of `api` functions, and
one transaction per call with the caller's role and claims set locally."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg import AsyncClientCursor, sql
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .breaker import Breaker
from .errors import ApiError, from_database, try_again, unavailable

CATALOG_QUERY = """
select p.proname,
       p.provolatile,
       p.proretset,
       p.prorettype = 'pg_catalog.void'::pg_catalog.regtype,
       coalesce(p.proargnames[1:p.pronargs], '{}'),
       array(select pg_catalog.format_type(t, null) from unnest(p.proargtypes) t),
       p.pronargdefaults,
       coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '')
from pg_catalog.pg_proc p
where p.pronamespace = 'api'::regnamespace and p.prokind = 'f'
  and (p.proargmodes is null or 'o' <> all (p.proargmodes))
order by p.proname, p.pronargs
"""

# What the OpenAPI document says beyond a signature: which functions count attempts
# against a rate limit (their body calls private.rate_limited, or a private helper
# that does, at any depth: 429), and which a signed-in user may not call
# (service_role only).
TRAITS_QUERY = r"""
with recursive limiters(name) as (
    select 'rate_limited'::name
    union
    select p.proname
    from pg_catalog.pg_proc p, limiters l
    where p.pronamespace = 'private'::regnamespace
      and p.prosrc ~ ('private\.' || l.name || '\(')
)
select p.proname,
       exists (select from limiters l where p.prosrc ~ ('private\.' || l.name || '\(')),
       not pg_catalog.has_function_privilege('authenticated', p.oid, 'execute')
from pg_catalog.pg_proc p
where p.pronamespace = 'api'::regnamespace and p.prokind = 'f'
"""

# Domains, as the catalogue's argument types name them: the base type and the CHECK
# constraints (the OpenAPI document reads lengths, ranges, patterns and enums from them).
DOMAINS_QUERY = """
select pg_catalog.format_type(t.oid, null), pg_catalog.format_type(t.typbasetype, t.typtypmod),
       array(select pg_catalog.pg_get_constraintdef(c.oid) from pg_catalog.pg_constraint c
             where c.contypid = t.oid and c.contype = 'c' order by c.conname)
from pg_catalog.pg_type t
where t.typtype = 'd'
  and t.typnamespace not in ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
"""

# An unknown function name reloads the catalogue at most this often (seconds).
RELOAD_EVERY = 1.0


@dataclass(frozen=True)
class Function:
    """One function of schema `api`, as the gateway needs to call it."""

    name: str
    volatile: bool
    returns_set: bool
    returns_void: bool
    arg_names: tuple[str, ...]
    arg_types: tuple[str, ...]
    required: frozenset[str]
    comment: str
    # The whole transaction as one simple-query script, and its read-only twin.
    script: str = field(compare=False)
    read_only_script: str = field(compare=False)
    # The call alone, for the prepared mode (DB_PREPARED_STATEMENTS): server-side
    # parameters, sent after PREPARED_SETUP in one pipeline.
    query: str = field(compare=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", frozenset(self.arg_names))

    def accepts(self, given: set[str]) -> bool:
        return given <= self._names and self.required <= given  # type: ignore[attr-defined]


def _build_query(name: str, names: tuple[str, ...], types: tuple[str, ...],
                 retset: bool, void: bool) -> sql.Composed:
    """SELECT running api.name(arg => _a.arg, ...) with the arguments taken from one
    JSON object (the only parameter) by json_to_record, so PostgreSQL converts every
    type; the response settings are read after the call, in the same statement."""
    call = sql.SQL("{}({})").format(
        sql.Identifier("api", name),
        sql.SQL(", ").join(
            sql.SQL("{0} => _a.{0}").format(sql.Identifier(n)) for n in names))
    sources: list[sql.Composable] = []
    if names:
        sources.append(sql.SQL("json_to_record(%s::json) as _a({})").format(
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t))
                for n, t in zip(names, types, strict=True))))
    if retset:
        body = sql.SQL("coalesce(json_agg(_r), '[]')::text")
        sources.append(sql.SQL("lateral {} _r").format(call))
    elif void:
        body = sql.SQL("null::text")
        sources.append(sql.SQL("lateral (select {}) _r").format(call))
    else:
        body = sql.SQL("to_json({})::text").format(call)
    source = sql.SQL("select {} as body").format(body)
    if sources:
        source = sql.SQL("{} from {}").format(source, sql.SQL(", ").join(sources))
    return sql.SQL(
        "with _c as materialized ({}) select _c.body, current_setting('response.status', true), "
        "current_setting('response.headers', true) from _c"
    ).format(source)


def _scripts(query: sql.Composed) -> tuple[str, str]:
    """begin; SETUP; the call; commit -- sent as one simple query (one packet, one
    round trip, no prepared statement: PgBouncer in any pool mode is fine).
    Values are bound client-side by psycopg, with the server's quoting rules."""
    body = sql.SQL("{}; {}; commit").format(SETUP, query).as_string(None)
    return "begin; " + body, "begin read only; " + body


class Catalog:
    """The functions of schema `api`, loaded at start and reloaded when a name is
    not found (at most once a second, or at once after a schema change was
    announced), so new migrations need no restart."""

    def __init__(self) -> None:
        self.functions: dict[str, list[Function]] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self.reloads = 0  # loads done, the first included (shown in /metrics)
        self.stale = False  # a schema change was announced since the last load
        self.limited: frozenset[str] = frozenset()  # rate-limited functions (TRAITS_QUERY)
        self.service_only: frozenset[str] = frozenset()  # not callable by authenticated
        self.domains: dict[str, tuple[str, tuple[str, ...]]] = {}  # name -> base, checks

    async def load(self, pool: AsyncConnectionPool) -> None:
        async with pool.connection() as conn:
            rows = await (await conn.execute(CATALOG_QUERY)).fetchall()
            traits = await (await conn.execute(TRAITS_QUERY)).fetchall()
            domains = await (await conn.execute(DOMAINS_QUERY)).fetchall()
        functions: dict[str, list[Function]] = {}
        for name, volatility, retset, void, names, types, ndefaults, comment in rows:
            names_t, types_t = tuple(names), tuple(types)
            required = frozenset(names_t[: len(names_t) - ndefaults])
            query = _build_query(name, names_t, types_t, retset, void)
            functions.setdefault(name, []).append(Function(
                name, volatility == "v", retset, void, names_t, types_t, required, comment,
                *_scripts(query), query=query.as_string(None)))
        self.functions = functions
        self.limited = frozenset(name for name, limited, _ in traits if limited)
        self.service_only = frozenset(name for name, _, service in traits if service)
        self.domains = {name: (base, tuple(checks)) for name, base, checks in domains}
        self._loaded_at = time.monotonic()
        self.stale = False
        self.reloads += 1

    def invalidate(self) -> None:
        """A schema change was announced: the next miss (or /openapi.json) reloads at
        once."""
        self._loaded_at = 0.0
        self.stale = True

    async def find(self, pool: AsyncConnectionPool, name: str, given: set[str]) -> Function:
        for fn in self.functions.get(name, ()):  # the common case: known, no reload
            if fn.accepts(given):
                return fn
        for attempt in range(2):
            for fn in self.functions.get(name, ()):
                if fn.accepts(given):
                    return fn
            if attempt == 0 and time.monotonic() - self._loaded_at > RELOAD_EVERY:
                async with self._lock:
                    # Checked again under the lock: callers that queued behind a
                    # reload find it done and do not reload again (at most one reload
                    # per RELOAD_EVERY however many unknown names arrive at once).
                    if time.monotonic() - self._loaded_at > RELOAD_EVERY:
                        try:
                            await self.load(pool)
                        except PoolTimeout:
                            _report(pool, failed=False)
                            raise unavailable() from None
                        except psycopg.OperationalError:
                            _report(pool, failed=True)
                            raise unavailable() from None
        # PostgREST's wording, so clients matching on it keep working.
        signature = f"({', '.join(sorted(given))})" if given else " without parameters"
        raise ApiError(
            404, "PGRST202",
            f"Could not find the function api.{name}{signature} in the schema cache",
            hint="Check the function's name and its argument names.",
        )


def _report(pool: AsyncConnectionPool, failed: bool) -> None:
    breaker = getattr(pool, "breaker", None)
    if breaker is not None:
        breaker.failed() if failed else breaker.suspect()


_INTEGERS = frozenset({"smallint", "integer", "bigint"})


def _whole_numbers(fn: Function, args: dict[str, Any]) -> dict[str, Any]:
    """JSON's 2.0 is the number 2 (an integer to JSON Schema and so to the OpenAPI
    document), but json_to_record refuses "2.0" for an integer argument: a whole
    float given for one is passed as the integer it is (2.5 stays, and is refused)."""
    types = dict(zip(fn.arg_names, fn.arg_types, strict=True))
    return {k: int(v) if type(v) is float and v.is_integer() and types.get(k) in _INTEGERS
            else v for k, v in args.items()}


@dataclass
class Identity:
    role: str
    claims: dict[str, Any]


@dataclass
class Result:
    status: int
    body: str | None
    headers: dict[str, str]


# Everything a request sets is local to its transaction, the statement and lock
# timeouts and the time zone included, so nothing survives into the next request on a connection
# (and nothing is lost when PgBouncer hands the next transaction another server).
SETUP = sql.SQL(
    "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true), "
    "set_config('request.method', %s, true), set_config('request.path', %s, true), "
    "set_config('request.headers', %s, true), set_config('request.client_addr', %s, true), "
    "set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true), "
    "set_config('timezone', 'UTC', true)"
)
# How many of a call's values are SETUP's (the call's JSON arguments follow).
SETUP_VALUES = 8
# The prepared mode's first statement: SETUP with server-side parameters, and its
# read-only twin (a GET of a function that is not volatile; the same as
# `begin read only`, set before the call's first snapshot).
PREPARED_SETUP = SETUP.as_string(None)
PREPARED_SETUP_READ_ONLY = PREPARED_SETUP + ", set_config('transaction_read_only', 'on', true)"
ROLLBACK = sql.SQL("rollback")
DEALLOCATE_ALL = sql.SQL("deallocate all")
# psycopg prepares a statement when asked to, or once it has run this many times
# on a connection; the prepared mode asks, and nothing else is prepared.
NEVER_BY_COUNT = 2**62
# Beyond the pool's wait and the statement timeout, this long for an answer.
NETWORK_GRACE = 0.5
# A deadlock (40P01) or a serialization failure (40001) means PostgreSQL rolled
# the whole transaction back, and the function call is the whole transaction:
# nothing of it was kept, so it is run again from the start, on the same
# connection, up to TRIES times in all; then 503 with Retry-After, never 500.
# Counted attempts (rate-limit counts, audit rows) are written by the call itself,
# so the try that commits writes them once; a call that gives up after TRIES
# leaves none (it answered 503: it was not attempted as far as the caller sees).
# The call's deadline (db.call, the fast path's timer) bounds the tries too.
RETRY_SQLSTATES = frozenset({"40P01", "40001"})
TRIES = 3


async def call(pool: Pool, fn: Function, args: dict[str, Any], who: Identity,
               method: str, path: str, headers: dict[str, str],
               statement_timeout_ms: int, client_addr: str = "", *,
               lock_timeout_ms: int) -> Result:
    """One transaction: role and claims set locally, one function call, commit.

    The answer is bounded: a call that has not answered within the pool's wait
    plus the statement timeout plus half a second gets 503 at once (the server is gone
    or unreachable; PgBouncer would otherwise hold the query until a server comes
    back), and its work is cancelled in the background."""
    work = asyncio.ensure_future(transaction(pool, fn, args, who, method, path, headers,
                                             statement_timeout_ms, client_addr,
                                             lock_timeout_ms=lock_timeout_ms))
    try:
        return await asyncio.wait_for(asyncio.shield(work), deadline(pool, statement_timeout_ms))
    except TimeoutError:
        pool.breaker.failed()  # no answer at all: unreachable (e.g. behind PgBouncer)
        work.cancel()  # psycopg cancels the query; the pool drops the connection
        _abandoned.add(work)
        work.add_done_callback(_abandoned.discard)
        raise unavailable() from None


_abandoned: set[asyncio.Future[Result]] = set()


def deadline(pool: Pool, statement_timeout_ms: int) -> float:
    """Seconds after which a call without an answer gets 503."""
    return pool.timeout + statement_timeout_ms / 1000 + NETWORK_GRACE


async def transaction(pool: Pool, fn: Function, args: dict[str, Any],
                      who: Identity, method: str, path: str, headers: dict[str, str],
                      statement_timeout_ms: int, client_addr: str = "", *,
                      lock_timeout_ms: int) -> Result:
    """The transaction goes out as one simple-query script (script_call), or as two
    prepared statements in one pipeline (prepared_call, DB_PREPARED_STATEMENTS). A
    GET of a function that is not volatile runs read-only, as PostgREST does.
    Unbounded: call() bounds it (the fast path bounds it itself). When the task
    running it is cancelled its connection is closed (the pool replaces it)."""
    values: tuple[Any, ...] = (
        who.role, orjson.dumps(who.claims).decode(), method, path,
        orjson.dumps(headers).decode(), client_addr, str(statement_timeout_ms),
        str(lock_timeout_ms))
    if fn.arg_names:
        if any(type(v) is float for v in args.values()):
            args = _whole_numbers(fn, args)
        try:
            values += (orjson.dumps(args).decode(),)
        except orjson.JSONEncodeError:
            # orjson reads JSON nested up to 1024 levels but writes at most 254; such
            # a body is refused here, before a connection is taken (a try costs
            # nothing on the way that does not raise).
            raise ApiError(400, "PGRST102", "Request body is nested too deeply.",
                           "JSON values may be nested at most 254 levels deep.") from None
    read_only = method in ("GET", "HEAD") and not fn.volatile
    row: tuple[Any, ...] | None = None
    try:
        async with pool.connection() as conn:
            for attempt in range(1, TRIES + 1):
                try:
                    if pool.prepared:
                        row = await prepared_call(conn, fn, values, read_only)
                    else:
                        row = await script_call(conn, fn, values, read_only)
                    break
                except asyncio.CancelledError:
                    await conn.close()  # abandoned past its deadline: the pool replaces it
                    raise
                except psycopg.errors.Error as exc:
                    if conn.broken:
                        raise psycopg.OperationalError(str(exc)) from None
                    if conn.info.transaction_status != TransactionStatus.IDLE:
                        await conn.execute(ROLLBACK)
                    if exc.sqlstate in RETRY_SQLSTATES:
                        if attempt < TRIES:
                            continue
                        raise try_again(exc) from None
                    raise from_database(exc, who.role) from None
    except PoolTimeout:
        pool.breaker.suspect()
        raise unavailable() from None
    except psycopg.OperationalError:
        pool.breaker.failed()
        raise unavailable() from None
    assert row is not None
    body, status_text, headers_text = row
    status = int(status_text) if status_text else (204 if body is None else 200)
    return Result(status, body, parse_response_headers(headers_text))


async def script_call(conn: psycopg.AsyncConnection[Any], fn: Function,
                      values: tuple[Any, ...], read_only: bool) -> tuple[Any, ...] | None:
    """The transaction as one simple-query script (the default): begin; setup; the
    call; commit, in one packet. Its third result is the call's."""
    cursor = AsyncClientCursor(conn)
    await cursor.execute(fn.read_only_script if read_only else fn.script,  # type: ignore[arg-type]
                         values)
    cursor.nextset()  # begin -> setup
    cursor.nextset()  # setup -> the call
    return await cursor.fetchone()


async def prepared_call(conn: psycopg.AsyncConnection[Any], fn: Function,
                        values: tuple[Any, ...], read_only: bool) -> tuple[Any, ...] | None:
    """The prepared mode: the setup and the call as two prepared statements (each
    parsed and planned once per connection) in one pipeline ending with one Sync:
    one round trip, one implicit transaction that commits at the Sync, or rolls
    back entirely when either statement fails. The call is parsed after the setup
    has run, so under the caller's role.

    When a statement prepared in this very call then fails to run, psycopg forgets
    its name but the server keeps it, and the next call prepares it again under a
    new name: every such failure would leave one more statement on the
    connection. So after any failure the connection's statements are all
    deallocated (psycopg clears its own record on seeing DEALLOCATE ALL); the
    next calls prepare theirs again."""
    setup, call = conn.cursor(), conn.cursor()
    try:
        async with conn.pipeline():
            await setup.execute(PREPARED_SETUP_READ_ONLY if read_only else PREPARED_SETUP,
                                values[:SETUP_VALUES], prepare=True)
            await call.execute(fn.query, values[SETUP_VALUES:], prepare=True)  # type: ignore[arg-type]
    except psycopg.errors.Error:
        if not conn.broken:
            await conn.execute(DEALLOCATE_ALL)
        raise
    return await call.fetchone()


def parse_response_headers(text: str | None) -> dict[str, str]:
    """response.headers as PostgREST reads it: a JSON array of one-key objects (or
    one object)."""
    if not text:
        return {}
    value = orjson.loads(text)
    items = value if isinstance(value, list) else [value]
    out: dict[str, str] = {}
    for item in items:
        if isinstance(item, dict):
            out.update({str(k): str(v) for k, v in item.items()})
    return out


class Pool(AsyncConnectionPool):
    """The pool, tied to a circuit breaker (gateway/breaker.py): every failed
    connection attempt opens it, and an opening breaker fails the requests queued
    for a connection at once instead of leaving them to POOL_TIMEOUT.

    psycopg_pool has no public hook for either: `_connect` and `_waiting` are its
    internals (psycopg_pool 3.3); tests/test_outage.py fails if they change."""

    breaker: Breaker
    prepared: bool = False  # DB_PREPARED_STATEMENTS (see make_pool)

    async def _connect(self, timeout: float | None = None) -> Any:
        try:
            return await super()._connect(timeout)
        except psycopg.OperationalError:
            self.breaker.failed()
            raise

    async def fail_waiting(self) -> None:
        async with self._lock:
            waiting = list(self._waiting)
            self._waiting.clear()
        for client in waiting:
            await client.fail(PoolTimeout("the database is unreachable"))


def make_pool(conninfo: str, min_size: int, max_size: int, timeout: float,
              breaker: Breaker, prepared: bool = False) -> Pool:
    """Autocommit connections as `authenticator`, holding no session state, and no
    prepared statements unless `prepared` (DB_PREPARED_STATEMENTS=on, as PostgREST's
    db-prepared-statements): then each connection keeps the setup and each called
    function's statement prepared, which a pooler in transaction mode cannot carry
    from one transaction to the next (PgBouncer before 1.21). The pool does not
    keep retrying after a failed connection (reconnect_timeout 0: one more try at
    once): the breaker's probe finds out when the database is back and then has the
    pool check and refill itself; until then requests get 503 at once."""
    async def configure(conn: psycopg.AsyncConnection) -> None:
        await conn.set_autocommit(True)

    pool = Pool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        configure=configure,
        open=False,
        reconnect_timeout=0,
        kwargs={
            "connect_timeout": 3,
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
            "application_name": "joinery-gateway",
            # Prepared only where asked for (prepared_call's execute(prepare=True)):
            # psycopg's count of executions never reaches this threshold.
            "prepare_threshold": NEVER_BY_COUNT if prepared else None,
        },
    )
    pool.breaker = breaker
    pool.prepared = prepared
    breaker.pool = pool
    return pool
