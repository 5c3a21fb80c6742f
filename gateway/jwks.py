"""Keys published at a URL (JWT_JWKS_URL), as Supabase Auth publishes its signing
keys at /auth/v1/.well-known/jwks.json, kept current while they rotate.

- Fetched at start, then again when the document's `Cache-Control: max-age`
  runs out, that age held between JWKS_MIN_REFRESH and JWKS_MAX_AGE.
- A token naming a key id not in the set fetches again at once, at most once
  per JWKS_MIN_REFRESH in this process, however many such tokens arrive (the
  requests meanwhile wait for the one fetch in flight or are refused).
- A failed fetch (unreachable, not JSON, no usable key) keeps the last good
  keys, is logged, counted in /metrics, and tried again after JWKS_MIN_REFRESH.

Fetches run in a thread with a short timeout, so the event loop never waits on
the network; verification itself reads `current` and stays synchronous."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from .jwt_auth import KeySet

log = logging.getLogger("joinery.jwks")

FETCH_TIMEOUT = 5.0  # seconds for one fetch (connect and read)
MAX_DOCUMENT_BYTES = 1024 * 1024
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.I)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.I)


class FetchError(Exception):
    """Why a fetch gave no keys (safe to log: never holds key material)."""


def check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"JWT_JWKS_URL must be an http(s) URL, not {url!r}")


def max_age(cache_control: str | None) -> float | None:
    """Seconds a response may be kept by its Cache-Control (0 for no-cache or
    no-store), or None when it does not say."""
    if not cache_control:
        return None
    if _NO_CACHE.search(cache_control):
        return 0.0
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None


def fetch(url: str, timeout: float = FETCH_TIMEOUT) -> tuple[KeySet, float | None]:
    """The usable keys at `url` and the document's max-age; FetchError when there
    are none (the server unreachable or failing, not a JWKS, no signing key)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   "User-Agent": "joinery-gateway"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_DOCUMENT_BYTES + 1)
            cache_control = response.headers.get("Cache-Control")
    except urllib.error.HTTPError as exc:
        raise FetchError(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"unreachable ({reason})") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise FetchError("document larger than 1 MiB")
    try:
        keys = KeySet.parse(json.loads(body))
    except ValueError as exc:
        message = str(exc) if "keys" in str(exc) else "not JSON"
        raise FetchError(f"not a JWKS: {message}") from None
    if not keys.keys:
        raise FetchError("no usable signing key in the document")
    return keys, max_age(cache_control)


class RemoteKeys:
    """The keys at one URL, for one process (see the module's docstring)."""

    def __init__(self, url: str, min_refresh: float, max_age: float,
                 timeout: float = FETCH_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        check_url(url)
        self.url = url
        self.min_refresh = min_refresh
        self.max_age = max_age
        self.timeout = timeout
        self.clock = clock
        self._keys = KeySet([])
        self._generation = 0
        self.fetches = 0          # attempts, good or not
        self.failures = 0         # attempts that gave no keys
        self.failing = False      # the last attempt failed
        self.last_error: str | None = None
        self.last_attempt: float | None = None
        self.next_refresh = 0.0   # when the background task fetches again
        self._inflight: asyncio.Future[bool] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> KeySet:
        return self._keys

    @property
    def generation(self) -> int:
        return self._generation

    def _lifetime(self, age: float | None) -> float:
        return min(max(self.max_age if age is None else age, self.min_refresh), self.max_age)

    def _install(self, keys: KeySet, age: float | None) -> None:
        if keys.fingerprint != self._keys.fingerprint:
            if self._keys.keys:
                log.info("JWKS %s: keys now %s", self.url, ", ".join(keys.kids) or "(no kid)")
            self._keys = keys
            self._generation += 1
        self.failing = False
        self.last_error = None
        self.next_refresh = self.clock() + self._lifetime(age)

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.failing = True
        self.last_error = error
        self.next_refresh = self.clock() + self.min_refresh
        kept = f"keeping {len(self._keys.keys)} key(s) fetched before" if self._keys.keys \
            else "no keys yet: tokens signed with its keys are refused"
        log.warning("JWKS %s: fetch failed: %s; %s", self.url, error, kept)

    def refresh_now(self) -> bool:
        """One fetch, here and now (start-up and check-config): True when it gave keys."""
        self.fetches += 1
        self.last_attempt = self.clock()
        try:
            keys, age = fetch(self.url, self.timeout)
        except FetchError as exc:
            self._failed(str(exc))
            return False
        except Exception as exc:  # whatever else went wrong, the last keys stay
            self._failed(f"unexpected {type(exc).__name__}")
            return False
        self._install(keys, age)
        return True

    def _start(self) -> asyncio.Future[bool]:
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(asyncio.to_thread(self.refresh_now))
            self._inflight.add_done_callback(self._done)
        return self._inflight

    async def refresh(self) -> bool:
        """One fetch in a thread; callers arriving meanwhile share it."""
        return await asyncio.shield(self._start())

    def _may_fetch(self) -> bool:
        return self.last_attempt is None or self.clock() - self.last_attempt >= self.min_refresh

    def unknown_kid(self) -> None:
        """Called by the verifier (synchronous, e.g. a WebSocket join) on an unknown key
        id: starts a fetch in the background when one is allowed, so a retry finds
        the new keys; the HTTP path also waits for it (refresh_for_unknown_kid)."""
        if self._inflight is not None or not self._may_fetch():
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a tool): nothing to fetch with
            return
        self._start()

    def _done(self, future: asyncio.Future[bool]) -> None:
        self._inflight = None
        if not future.cancelled() and future.exception() is not None:
            log.error("JWKS %s: refresh crashed: %r", self.url, future.exception())

    async def refresh_for_unknown_kid(self) -> bool:
        """A token named a key id the set lacks: fetch again unless this process did
        less than JWKS_MIN_REFRESH ago (then False at once). True when new keys came."""
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        if not self._may_fetch():
            return False
        before = self._generation
        return await self.refresh() and self._generation != before

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self.next_refresh - self.clock()))
            if self.clock() >= self.next_refresh:
                await self.refresh()

    def start(self) -> None:
        """The background refresher of this process (call inside its event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
