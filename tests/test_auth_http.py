"""Tokens over HTTP: what the gateway accepts, what it refuses with 401, and that
nothing of one request's identity reaches the next on the same connection."""

from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest

from conftest import JWT_SECRET
from gateway.jwt_auth import mint

if TYPE_CHECKING:
    from conftest import User

PATH = "/rest/v1/rpc/my_groups"
WRONG_SECRET = "not-the-gateway-secret-0123456789-abcdefghij"


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_for(user: User, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user.id, "role": "authenticated", "email": user.email,
                              "iat": now, "exp": now + 600}
    claims.update(overrides)
    return claims


def assert_invalid_token(response: httpx.Response, code: str = "PGRST301") -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    body = response.json()
    assert set(body) == {"code", "message", "details", "hint"}
    assert body["code"] == code


def test_valid_token(client: httpx.Client, make_user) -> None:
    user = make_user()
    response = client.post(PATH, headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json() == []


def test_expired_beyond_skew(client: httpx.Client, make_user) -> None:
    user = make_user()
    now = int(time.time())
    token = jwt.encode(claims_for(user, iat=now - 600, exp=now - 31), JWT_SECRET, "HS256")
    response = client.post(PATH, headers={"Authorization": f"Bearer {token}"})
    assert_invalid_token(response, "PGRST303")
    assert response.json()["message"] == "token has expired"


def test_expired_within_skew_is_accepted(client: httpx.Client, make_user) -> None:
    user = make_user()
    now = int(time.time())
    token = jwt.encode(claims_for(user, iat=now - 600, exp=now - 10), JWT_SECRET, "HS256")
    response = client.post(PATH, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


def test_wrong_secret(client: httpx.Client, make_user) -> None:
    token = jwt.encode(claims_for(make_user()), WRONG_SECRET, "HS256")
    assert_invalid_token(client.post(PATH, headers={"Authorization": f"Bearer {token}"}))


def test_alg_none(client: httpx.Client, make_user) -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims_for(make_user()))}."
    assert_invalid_token(client.post(PATH, headers={"Authorization": f"Bearer {token}"}))


@pytest.mark.parametrize("role", ["postgres", "authenticator", "", None])
def test_role_outside_the_three(client: httpx.Client, make_user, role: str | None) -> None:
    claims = claims_for(make_user(), role=role)
    if role is None:
        del claims["role"]
    token = jwt.encode(claims, JWT_SECRET, "HS256")
    assert_invalid_token(client.post(PATH, headers={"Authorization": f"Bearer {token}"}))


def test_service_role(client: httpx.Client, make_user) -> None:
    user = make_user()
    group = client.post("/rest/v1/rpc/create_group", json={"name": "Ops"}, headers=user.headers)
    assert group.status_code == 200, group.text
    token = mint(JWT_SECRET, user.id, role="service_role")
    response = client.post(PATH, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert [g["id"] for g in response.json()] == [group.json()["id"]]


@pytest.mark.parametrize("header", ["Bearer abc", "Bearer a.b.c", "Bearer",
                                    "Basic xyz", "Token abc"])
def test_malformed_authorization(client: httpx.Client, header: str) -> None:
    assert_invalid_token(client.post(PATH, headers={"Authorization": header}))


def test_invalid_bearer_is_not_rescued_by_apikey(client: httpx.Client, make_user) -> None:
    user = make_user()
    response = client.post(PATH, headers={"Authorization": "Bearer abc", "apikey": user.token})
    assert_invalid_token(response)


def test_anon_is_refused_with_401(client: httpx.Client) -> None:
    response = client.post(PATH)
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "hint"}
    assert body["code"] == "42501"


def test_anon_token_is_refused_with_401(client: httpx.Client) -> None:
    token = mint(JWT_SECRET, None, role="anon")
    response = client.post(PATH, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "42501"


def test_apikey_alone_acts_as_its_user(client: httpx.Client, make_user) -> None:
    user = make_user()
    response = client.post("/rest/v1/rpc/me", headers={"apikey": user.token})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user.id
    groups = client.post(PATH, headers={"apikey": user.token})
    assert groups.status_code == 200, groups.text
    assert groups.json() == []


def test_apikey_with_bad_jwt_is_401(client: httpx.Client, make_user) -> None:
    token = jwt.encode(claims_for(make_user()), WRONG_SECRET, "HS256")
    assert_invalid_token(client.post(PATH, headers={"apikey": token}))


def test_nothing_leaks_between_requests_on_one_connection(gateway, make_user) -> None:
    user = make_user()
    # One connection: the gateway's pool is also reused, so a leaked role or claim
    # would show as anon being served user A's profile.
    with httpx.Client(base_url=gateway.url, timeout=30,
                      limits=httpx.Limits(max_connections=1)) as http:
        for _ in range(5):
            as_user = http.post("/rest/v1/rpc/me", headers=user.headers)
            assert as_user.status_code == 200, as_user.text
            assert as_user.json()["id"] == user.id
            as_anon = http.post("/rest/v1/rpc/me")
            assert as_anon.status_code == 401, as_anon.text
            assert as_anon.json()["code"] == "42501"


def _none_alg(claims: dict[str, Any]) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


# The documented answers (docs/security.md, "Tokens"): status, body code and message, exactly.
MATRIX = [
    ("malformed", lambda c: "abc", "PGRST301", "malformed token"),
    ("alg none", _none_alg, "PGRST301", "token algorithm is not allowed"),
    ("HS512", lambda c: jwt.encode(c, JWT_SECRET, algorithm="HS512"), "PGRST301",
     "token algorithm is not allowed"),
    ("wrong secret", lambda c: jwt.encode(c, WRONG_SECRET, algorithm="HS256"), "PGRST301",
     "invalid signature"),
    ("expired beyond the skew",
     lambda c: jwt.encode({**c, "exp": int(time.time()) - 31}, JWT_SECRET, algorithm="HS256"),
     "PGRST303", "token has expired"),
    ("not yet valid",
     lambda c: jwt.encode({**c, "nbf": int(time.time()) + 120}, JWT_SECRET, algorithm="HS256"),
     "PGRST301", "token is not yet valid"),
    ("issued in the future",
     lambda c: jwt.encode({**c, "iat": int(time.time()) + 120}, JWT_SECRET, algorithm="HS256"),
     "PGRST301", "token issued in the future"),
    ("role not allowed",
     lambda c: jwt.encode({**c, "role": "postgres"}, JWT_SECRET, algorithm="HS256"),
     "PGRST301", 'role "postgres" is not allowed'),
    ("service_role signed by another key",
     lambda c: jwt.encode({**c, "role": "service_role"}, WRONG_SECRET, algorithm="HS256"),
     "PGRST301", "invalid signature"),
]


@pytest.mark.filterwarnings("ignore:The HMAC key is")  # the HS512 case's own key
@pytest.mark.parametrize(("case", "build", "code", "message"), MATRIX,
                         ids=[m[0] for m in MATRIX])
def test_token_matrix(client: httpx.Client, make_user, case: str, build, code: str,
                      message: str) -> None:
    token = build(claims_for(make_user()))
    response = client.post(PATH, headers={"Authorization": f"Bearer {token}"})
    assert_invalid_token(response, code)
    assert response.json() == {"code": code, "message": message, "details": None,
                               "hint": None}
