"""Gateways started with other settings: asymmetric keys from a JWKS with a
required audience, and a database that is not there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from conftest import ROOT, GatewayProcess, User, free_port, start_gateway, stop_gateway

KID = "test-es256"


@pytest.fixture(scope="module")
def es256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def jwks_gateway(
    database_url: str, es256_key: ec.EllipticCurvePrivateKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    public = json.loads(ECAlgorithm.to_jwk(es256_key.public_key()))
    public.update({"kid": KID, "alg": "ES256", "use": "sig"})
    folder = tmp_path_factory.mktemp("jwks")
    jwks_file = folder / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [public]}))
    proc = start_gateway(database_url, folder / "gateway.log",
                         JWT_JWKS=str(jwks_file), JWT_AUD="joinery-test", JWT_SECRET="")
    yield proc
    stop_gateway(proc)


def es256_token(key: ec.EllipticCurvePrivateKey, user: User, **claims: object) -> str:
    now = int(time.time())
    payload = {"sub": user.id, "role": "authenticated", "iat": now, "exp": now + 300,
               "aud": "joinery-test", **claims}
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": KID})


def test_es256_token_from_jwks_is_accepted(jwks_gateway: GatewayProcess, make_user,
                                           es256_key: ec.EllipticCurvePrivateKey) -> None:
    user = make_user("Key Holder")
    token = es256_token(es256_key, user)
    answer = httpx.post(f"{jwks_gateway.url}/rest/v1/rpc/me",
                        headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.json()["id"] == user.id
    assert answer.json()["display_name"] == "Key Holder"


@pytest.mark.parametrize(
    ("claims", "headers", "message"),
    [
        ({"aud": "someone-else"}, None, "token audience is not accepted"),
        ({}, {"kid": "not-a-key"}, "unknown key id"),
    ],
)
def test_jwks_gateway_rejects(jwks_gateway: GatewayProcess, make_user,
                              es256_key: ec.EllipticCurvePrivateKey, claims: dict,
                              headers: dict | None, message: str) -> None:
    user = make_user()
    now = int(time.time())
    payload = {"sub": user.id, "role": "authenticated", "iat": now, "exp": now + 300,
               "aud": "joinery-test", **claims}
    token = jwt.encode(payload, es256_key, algorithm="ES256", headers=headers or {"kid": KID})
    answer = httpx.post(f"{jwks_gateway.url}/rest/v1/rpc/me",
                        headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.json() == {"code": "PGRST301", "message": message, "details": None,
                             "hint": None}
    assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def test_hs256_user_token_is_refused_when_only_a_jwks_is_configured(
        jwks_gateway: GatewayProcess, make_user) -> None:
    user = make_user()  # its token is HS256 with the test secret, which this gateway lacks
    answer = httpx.post(f"{jwks_gateway.url}/rest/v1/rpc/me", headers=user.headers)
    assert answer.status_code == 401


def test_database_down_gives_503_not_a_hang(tmp_path: Path) -> None:
    dead_port = free_port()  # nothing listens there
    port = free_port()
    env = {**os.environ, "GATEWAY_DATABASE_URL":
           f"postgresql://authenticator@127.0.0.1:{dead_port}/joinery",
           "JWT_SECRET": "x" * 40, "PORT": str(port), "POOL_TIMEOUT": "2"}
    log = (tmp_path / "gateway.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                health = httpx.get(f"{url}/healthz", timeout=10)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("gateway did not listen")
        assert health.status_code == 503
        assert health.json() == {"status": "unavailable", "database": False}
        # The client's timeout is the "no hang" bound: the pool gives up after 2 s.
        answer = httpx.post(f"{url}/rest/v1/rpc/my_groups", timeout=15)
        assert answer.status_code == 503
        assert answer.json()["code"] == "PGRST001"
        assert answer.headers["retry-after"] == "2"
    finally:
        process.terminate()
        process.wait(timeout=10)
