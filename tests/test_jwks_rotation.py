"""JWT_JWKS_URL: keys published by a local JWKS server (plain HTTP, 127.0.0.1, a
thread of this process) that rotates ES256 and RS256 keys during the run.

Unit tests drive gateway.jwks.RemoteKeys with a clock of their own (no test
waits for time to pass); the HTTP tests run real gateways against the server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from conftest import GatewayProcess, User, free_port, start_gateway, stop_gateway
from gateway.jwks import RemoteKeys, max_age
from gateway.jwt_auth import CachedVerifier, InvalidToken, JwtConfig, UnknownKeyId, Verifier


class Key:
    """A private key and its public JWK under a key id."""

    def __init__(self, kid: str, alg: str) -> None:
        self.kid, self.alg = kid, alg
        if alg == "ES256":
            self.private: Any = ec.generate_private_key(ec.SECP256R1())
            self.jwk = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.jwk = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        self.jwk.update(kid=kid, alg=alg, use="sig")

    def token(self, sub: str = "u1", kid: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"sub": sub, "role": "authenticated", "iat": now, "exp": now + 600, **claims}
        return jwt.encode(payload, self.private, algorithm=self.alg,
                          headers={"kid": kid or self.kid})


class JwksServer:
    """Serves {"keys": [...]} at /jwks.json with a Cache-Control max-age; counts
    the fetches; can answer 500 or garbage instead."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.max_age: int | None = 300
        self.mode = "ok"  # ok | error | garbage | empty
        self.fetches = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server.lock:
                    server.fetches += 1
                    mode, keys, age = server.mode, list(server.keys), server.max_age
                if mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    return
                body = {"ok": json.dumps({"keys": [k.jwk for k in keys]}).encode(),
                        "garbage": b"<html>not json</html>",
                        "empty": b'{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA"}]}',
                        # A shared secret published at a URL is no key at all.
                        "secret": b'{"keys": [{"kty": "oct", "kid": "s", "alg": "HS256", '
                                  b'"k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0"}]}',
                        }[mode]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if age is not None:
                    self.send_header("Cache-Control", f"public, max-age={age}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, *keys: Key) -> None:
        with self.lock:
            self.keys = list(keys)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def es1() -> Key:
    return Key("es-1", "ES256")


@pytest.fixture(scope="module")
def rs2() -> Key:
    return Key("rs-2", "RS256")


@pytest.fixture
def server() -> Iterator[JwksServer]:
    jwks = JwksServer()
    yield jwks
    jwks.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def remote(server: JwksServer, clock: Clock, min_refresh: float = 30,
           max_age_bound: float = 3600) -> tuple[RemoteKeys, CachedVerifier]:
    keys = RemoteKeys(server.url, min_refresh, max_age_bound, timeout=5, clock=clock)
    verifier = CachedVerifier(Verifier(JwtConfig(None, None, None), keys))
    return keys, verifier


async def verify(keys: RemoteKeys, verifier: CachedVerifier, token: str) -> dict[str, Any]:
    """As the gateway does: an unknown kid fetches again (when allowed) and retries."""
    try:
        return verifier.verify(token)
    except UnknownKeyId:
        if not await keys.refresh_for_unknown_kid():
            raise
        return verifier.verify(token)


def test_max_age_is_read_from_cache_control() -> None:
    assert max_age("public, max-age=600") == 600
    assert max_age("max-age=0, must-revalidate") == 0
    assert max_age("no-store") == 0
    assert max_age("s-maxage=5") is None
    assert max_age(None) is None


def test_cache_lifetime_is_bounded(server: JwksServer, es1: Key) -> None:
    clock = Clock()
    server.publish(es1)
    for age, lifetime in ((5, 30), (600, 600), (86400, 3600), (None, 3600)):
        server.max_age = age
        keys, _ = remote(server, clock)
        assert keys.refresh_now() is True
        assert keys.next_refresh - clock.now == lifetime


def test_newly_published_key_is_accepted_within_one_refresh(
        server: JwksServer, es1: Key, rs2: Key) -> None:
    clock = Clock()
    server.publish(es1)
    keys, verifier = remote(server, clock)
    assert keys.refresh_now()
    assert server.fetches == 1

    async def run() -> None:
        assert (await verify(keys, verifier, es1.token()))["sub"] == "u1"
        server.publish(es1, rs2)  # the issuer adds an RS256 key
        # Within JWKS_MIN_REFRESH of the last fetch an unknown kid fetches nothing.
        with pytest.raises(UnknownKeyId):
            await verify(keys, verifier, rs2.token())
        assert server.fetches == 1
        clock.now += 30
        assert (await verify(keys, verifier, rs2.token(sub="u2")))["sub"] == "u2"
        assert server.fetches == 2
        assert (await verify(keys, verifier, es1.token(sub="u3")))["sub"] == "u3"

    asyncio.run(run())


def test_a_synchronous_check_starts_the_fetch_a_retry_finds(
        server: JwksServer, es1: Key, rs2: Key) -> None:
    """As a WebSocket join verifies: refused at once, the keys fetched behind it."""
    clock = Clock()
    server.publish(es1)
    keys, verifier = remote(server, clock)
    assert keys.refresh_now()
    server.publish(es1, rs2)
    clock.now += 30

    async def run() -> None:
        with pytest.raises(UnknownKeyId):
            verifier.verify(rs2.token())
        with pytest.raises(UnknownKeyId):  # a second one joins the fetch in flight
            verifier.verify(rs2.token(sub="u2"))
        assert keys._inflight is not None
        assert await keys._inflight is True
        assert verifier.verify(rs2.token(sub="u3"))["sub"] == "u3"
        assert server.fetches == 2

    asyncio.run(run())


def test_removed_key_stops_working_when_the_cache_expires(
        server: JwksServer, es1: Key, rs2: Key) -> None:
    clock = Clock()
    server.publish(es1, rs2)
    server.max_age = 120
    keys, verifier = remote(server, clock)
    assert keys.refresh_now()
    old = es1.token()
    assert verifier.verify(old)["sub"] == "u1"
    server.publish(rs2)  # es-1 retired by the issuer

    async def run() -> None:
        clock.now += 119  # still within max-age: the cached set still holds es-1
        assert verifier.verify(old)["sub"] == "u1"
        assert verifier.verify(es1.token(sub="u4"))["sub"] == "u4"
        assert server.fetches == 1
        clock.now += 1  # max-age reached: the background refresher fetches again
        keys.start()
        try:
            for _ in range(500):  # wait for it (not a timed assertion)
                if server.fetches == 2 and keys.generation == 2:
                    break
                await asyncio.sleep(0.01)
            assert server.fetches == 2
            assert keys.current.kids == ["rs-2"]
        finally:
            await keys.stop()
        # The token verified before (and remembered) is refused too.
        with pytest.raises(UnknownKeyId):
            verifier.verify(old)
        with pytest.raises(UnknownKeyId):
            await verify(keys, verifier, es1.token(sub="u5"))
        assert server.fetches == 2
        assert verifier.verify(rs2.token())["sub"] == "u1"

    asyncio.run(run())


def test_a_flood_of_unknown_kids_fetches_once_per_interval(server: JwksServer, es1: Key) -> None:
    clock = Clock()
    server.publish(es1)
    keys, verifier = remote(server, clock, min_refresh=30)
    assert keys.refresh_now()

    async def flood() -> list[str]:
        async def one() -> str:
            try:
                await verify(keys, verifier, es1.token(kid=uuid.uuid4().hex))
            except InvalidToken as exc:
                return str(exc)
            return "accepted"

        return await asyncio.gather(*(one() for _ in range(1000)))

    async def run() -> None:
        for interval in range(1, 4):
            clock.now += 30
            assert await flood() == ["unknown key id"] * 1000
            assert server.fetches == 1 + interval  # one per interval, not one per kid
            clock.now += 29
            assert await flood() == ["unknown key id"] * 1000
            assert server.fetches == 1 + interval

    asyncio.run(run())


@pytest.mark.parametrize("mode", ["error", "garbage", "empty", "secret", "down"])
def test_last_good_keys_survive_a_failing_issuer(server: JwksServer, es1: Key,
                                                 mode: str) -> None:
    clock = Clock()
    server.publish(es1)
    keys, verifier = remote(server, clock)
    assert keys.refresh_now()
    if mode == "down":
        server.close()
        server.close = lambda: None  # type: ignore[method-assign]
    else:
        server.mode = mode
    clock.now += 3600
    assert keys.refresh_now() is False
    assert (keys.fetches, keys.failures, keys.failing) == (2, 1, True)
    assert keys.current.kids == ["es-1"]
    assert verifier.verify(es1.token(sub="after"))["sub"] == "after"
    expected = {"error": "HTTP 500", "garbage": "not a JWKS: not JSON",
                "empty": "no usable signing key in the document",
                "secret": "no usable signing key in the document"}
    if mode in expected:
        assert keys.last_error == expected[mode]
    else:
        assert keys.last_error is not None and keys.last_error.startswith("unreachable")
    # Tried again after JWKS_MIN_REFRESH, not at the document's max-age.
    assert keys.next_refresh == clock.now + 30
    if mode != "down":
        server.mode = "ok"
        assert keys.refresh_now() is True
        assert keys.failing is False


# ---- over HTTP, through real gateways ----------------------------------------

def _me(gateway: GatewayProcess, token: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}/rest/v1/rpc/me",
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _metric(gateway: GatewayProcess, name: str) -> float:
    for line in httpx.get(f"{gateway.url}/metrics", timeout=30).text.splitlines():
        if line.startswith(f"joinery_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def test_gateway_fetches_at_most_once_per_interval_under_a_flood(
        database_url: str, tmp_path: Path, make_user, es1: Key) -> None:
    server = JwksServer()
    server.publish(es1)
    gateway = start_gateway(database_url, tmp_path / "gateway.log", JWT_SECRET="",
                            JWT_JWKS_URL=server.url, JWKS_MIN_REFRESH="3600",
                            JOINERY_ENV="")
    try:
        assert server.fetches == 1  # fetched at start
        user: User = make_user("Flooded")
        answer = _me(gateway, es1.token(sub=user.id))
        assert answer.status_code == 200
        assert answer.json()["display_name"] == "Flooded"
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            for _ in range(1000):
                token = es1.token(sub=user.id, kid=uuid.uuid4().hex)
                refused = client.post("/rest/v1/rpc/me",
                                      headers={"Authorization": f"Bearer {token}"})
                assert refused.status_code == 401
                assert refused.json() == {"code": "PGRST301", "message": "unknown key id",
                                          "details": None, "hint": None}
        # The start's fetch is this interval's one (JWKS_MIN_REFRESH is an hour).
        assert server.fetches == 1
        assert _metric(gateway, "jwks_fetches_total") == 1
        assert _metric(gateway, "jwks_fetch_failures_total") == 0
        start = [line for line in gateway.log().splitlines()
                 if line.startswith("joinery gateway pid")]
        assert len(start) == 1
        assert f"keys: JWT_JWKS_URL {server.url} (kids es-1; refresh 3600-3600 s)" in start[0]
    finally:
        stop_gateway(gateway)
        server.close()


def _until(predicate: Any) -> Any:
    """Polls until predicate() is truthy (at most 15 s); returns its last value."""
    for _ in range(300):
        if value := predicate():
            return value
        time.sleep(0.05)
    return predicate()


def test_gateway_follows_rotation_and_outlives_an_outage(
        database_url: str, tmp_path: Path, make_user, es1: Key, rs2: Key) -> None:
    server = JwksServer()
    server.publish(es1)
    server.max_age = 1  # kept 1 s (JWKS_MIN_REFRESH 1): removals show within it
    gateway = start_gateway(database_url, tmp_path / "gateway.log", JWT_SECRET="",
                            JWT_JWKS_URL=server.url, JWKS_MIN_REFRESH="1",
                            JOINERY_ENV="")
    try:
        user = make_user()
        assert _me(gateway, es1.token(sub=user.id)).status_code == 200
        # A new RS256 key is published: accepted once one refresh has seen it.
        server.publish(es1, rs2)
        answer = _until(lambda: (r := _me(gateway, rs2.token(sub=user.id))).status_code == 200
                        and r)
        assert answer and answer.json()["id"] == user.id
        # es-1 is removed: refused once the cached set has expired.
        old = es1.token(sub=user.id)
        server.publish(rs2)
        refused = _until(lambda: (r := _me(gateway, old)).status_code == 401 and r)
        assert refused and refused.json()["message"] == "unknown key id"
        # The issuer answers garbage from now on: rs-2 keeps working.
        server.mode = "garbage"
        assert _until(lambda: _metric(gateway, "jwks_fetch_failing") == 1)
        assert _metric(gateway, "jwks_fetch_failures_total") >= 1
        assert _metric(gateway, "jwks_keys") == 1
        fresh = _me(gateway, rs2.token(sub=user.id, email="new@example.com"))
        assert fresh.status_code == 200
        assert fresh.json()["id"] == user.id
        assert (f"JWKS {server.url}: fetch failed: not a JWKS: not JSON; keeping 1 key(s) "
                "fetched before") in gateway.log()
    finally:
        stop_gateway(gateway)
        server.close()


def test_gateway_without_a_reachable_jwks_starts_and_refuses_its_tokens(
        database_url: str, tmp_path: Path, es1: Key) -> None:
    dead = f"http://127.0.0.1:{free_port()}/jwks.json"
    gateway = start_gateway(database_url, tmp_path / "gateway.log", JWT_SECRET="",
                            JWT_JWKS_URL=dead, JOINERY_ENV="")
    try:
        answer = _me(gateway, es1.token())
        assert answer.status_code == 401
        assert answer.json()["message"] == "unknown key id"
        assert _metric(gateway, "jwks_fetch_failing") == 1
        assert f"JWKS {dead}: fetch failed: unreachable" in gateway.log()
    finally:
        stop_gateway(gateway)
