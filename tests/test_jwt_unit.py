"""Pure unit tests for gateway.jwt_auth (no database)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.jwt_auth import ALLOWED_ROLES, InvalidToken, JwtConfig, Verifier, mint

SECRET = "s" * 20 + "-unit-test-secret-0123456789"
OTHER_SECRET = "o" * 20 + "-another-secret-abcdefghij"


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "u1", "role": "authenticated", "iat": now, "exp": now + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs(claims: dict[str, Any], secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def _verifier(audience: str | None = None, jwks: dict[str, Any] | None = None) -> Verifier:
    return Verifier(JwtConfig(secret=SECRET, jwks=jwks, audience=audience))


def _rejects(verifier: Verifier, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    message = str(info.value)
    if token:
        assert token not in message
    return message


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stray_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_jwk = json.loads(ECAlgorithm.to_jwk(ec_key.public_key()))
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ec_jwk.update(kid="ec-1", alg="ES256", use="sig")
    rsa_jwk.update(kid="rsa-1", alg="RS256", use="sig")
    return {
        "ec": ec_key,
        "rsa": rsa_key,
        "stray_rsa": stray_rsa,
        "jwks": {"keys": [ec_jwk, rsa_jwk]},
    }


def test_allowed_roles() -> None:
    assert frozenset({"anon", "authenticated", "service_role"}) == ALLOWED_ROLES


def test_valid_hs256() -> None:
    claims = _claims()
    assert _verifier().verify(_hs(claims)) == claims


def test_mint_roundtrip() -> None:
    token = mint(SECRET, "user-1", email="a@example.com", extra={"aud": "authenticated"})
    claims = _verifier(audience="authenticated").verify(token)
    assert claims["sub"] == "user-1"
    assert claims["role"] == "authenticated"
    assert claims["email"] == "a@example.com"
    assert claims["exp"] - claims["iat"] == 3600
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_wrong_secret() -> None:
    assert _rejects(_verifier(), _hs(_claims(), OTHER_SECRET)) == "invalid signature"


def test_alg_none_rejected() -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    assert _rejects(_verifier(), token) == "token algorithm is not allowed"


def test_hs512_rejected() -> None:
    token = _hs(_claims(), SECRET * 2, alg="HS512")
    assert _rejects(_verifier(), token) == "token algorithm is not allowed"


def test_expired_beyond_leeway_rejected() -> None:
    now = int(time.time())
    token = _hs(_claims(iat=now - 600, exp=now - 31 - 5))
    assert _rejects(_verifier(), token) == "token has expired"


def test_expired_within_leeway_accepted() -> None:
    now = int(time.time())
    claims = _claims(iat=now - 600, exp=now - 20)
    assert _verifier().verify(_hs(claims)) == claims


def test_nbf_in_future_rejected() -> None:
    token = _hs(_claims(nbf=int(time.time()) + 120))
    assert _rejects(_verifier(), token) == "token is not yet valid"


def test_nbf_within_leeway_accepted() -> None:
    claims = _claims(nbf=int(time.time()) + 10)
    assert _verifier().verify(_hs(claims)) == claims


def test_iat_in_future_rejected() -> None:
    token = _hs(_claims(iat=int(time.time()) + 120))
    assert _rejects(_verifier(), token) == "token issued in the future"


def test_iat_within_leeway_accepted() -> None:
    claims = _claims(iat=int(time.time()) + 10)
    assert _verifier().verify(_hs(claims)) == claims


def test_iat_not_a_number_rejected() -> None:
    assert _rejects(_verifier(), _hs(_claims(iat="yesterday"))) == "invalid iat claim"


def test_aud_mismatch_rejected() -> None:
    token = _hs(_claims(aud="someone-else"))
    assert _rejects(_verifier("authenticated"), token) == "token audience is not accepted"


def test_aud_missing_rejected_when_configured() -> None:
    assert _rejects(_verifier("authenticated"), _hs(_claims())) == "token is missing the aud claim"


def test_aud_match_accepted() -> None:
    claims = _claims(aud=["other", "authenticated"])
    assert _verifier("authenticated").verify(_hs(claims)) == claims


def test_aud_ignored_when_not_configured() -> None:
    claims = _claims(aud="anything")
    assert _verifier().verify(_hs(claims)) == claims


def test_missing_role_rejected() -> None:
    assert _rejects(_verifier(), _hs(_claims(role=None))) == "role (missing) is not allowed"


def test_role_postgres_rejected() -> None:
    message = _rejects(_verifier(), _hs(_claims(role="postgres")))
    assert message == 'role "postgres" is not allowed'


def test_long_role_truncated() -> None:
    message = _rejects(_verifier(), _hs(_claims(role="x" * 500)))
    assert message == 'role "' + "x" * 40 + '..." is not allowed'


def test_es256_and_rs256_from_jwks(keys: dict[str, Any]) -> None:
    verifier = _verifier(jwks=keys["jwks"])
    claims = _claims()
    es = jwt.encode(claims, keys["ec"], algorithm="ES256", headers={"kid": "ec-1"})
    rs = jwt.encode(claims, keys["rsa"], algorithm="RS256", headers={"kid": "rsa-1"})
    rs_no_kid = jwt.encode(claims, keys["rsa"], algorithm="RS256")
    assert verifier.verify(es) == claims
    assert verifier.verify(rs) == claims
    assert verifier.verify(rs_no_kid) == claims


def test_kid_with_wrong_alg_rejected(keys: dict[str, Any]) -> None:
    token = jwt.encode(_claims(), keys["rsa"], algorithm="RS256", headers={"kid": "ec-1"})
    message = _rejects(_verifier(jwks=keys["jwks"]), token)
    assert message == "key id does not match the token algorithm"


def test_unknown_kid_rejected(keys: dict[str, Any]) -> None:
    token = jwt.encode(_claims(), keys["rsa"], algorithm="RS256", headers={"kid": "nope"})
    assert _rejects(_verifier(jwks=keys["jwks"]), token) == "unknown key id"


def test_hs256_kid_without_jwks_uses_secret() -> None:
    claims = _claims()
    token = jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "any"})
    assert _verifier().verify(token) == claims


def test_rs256_foreign_key_rejected(keys: dict[str, Any]) -> None:
    verifier = _verifier(jwks=keys["jwks"])
    with_kid = jwt.encode(_claims(), keys["stray_rsa"], algorithm="RS256", headers={"kid": "rsa-1"})
    no_kid = jwt.encode(_claims(), keys["stray_rsa"], algorithm="RS256")
    assert _rejects(verifier, with_kid) == "invalid signature"
    assert _rejects(verifier, no_kid) == "invalid signature"


def test_hs256_without_secret_rejected(keys: dict[str, Any]) -> None:
    verifier = Verifier(JwtConfig(secret=None, jwks=keys["jwks"], audience=None))
    assert _rejects(verifier, _hs(_claims())) == "no key configured for HS256"


def test_short_secret_value_error() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        JwtConfig.from_values("x" * 31, None, None)
    assert JwtConfig.from_values("x" * 32, "", "").secret == "x" * 32


def test_from_values_empty_strings_unset() -> None:
    assert JwtConfig.from_values("", "", "") == JwtConfig(None, None, None)


def test_from_values_reads_jwks_file(tmp_path: Path, keys: dict[str, Any]) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(keys["jwks"]), encoding="utf-8")
    config = JwtConfig.from_values(None, str(path), "authenticated")
    assert config.jwks == keys["jwks"]
    assert config.audience == "authenticated"
    claims = _claims(aud="authenticated")
    token = jwt.encode(claims, keys["ec"], algorithm="ES256", headers={"kid": "ec-1"})
    assert Verifier(config).verify(token) == claims


def test_from_values_inline_jwks(keys: dict[str, Any]) -> None:
    config = JwtConfig.from_values(None, json.dumps(keys["jwks"]), None)
    assert config.jwks == keys["jwks"]


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "", "...", "eyJhbGciOiJIUzI1NiJ9.!!!.x", "a" * 5000],
)
def test_malformed_rejected(token: str) -> None:
    assert _rejects(_verifier(), token) == "malformed token"


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"role"', b"not json"])
def test_claims_not_object_rejected(payload: bytes) -> None:
    token = jwt.api_jws.PyJWS().encode(payload, SECRET, algorithm="HS256")
    assert _rejects(_verifier(), token) == "malformed token"


def test_message_never_contains_token() -> None:
    verifier = _verifier("authenticated")
    now = int(time.time())
    tokens = [
        _hs(_claims(), OTHER_SECRET),
        _hs(_claims(aud="x")),
        _hs(_claims(aud="authenticated", exp=now - 3600)),
        _hs(_claims(aud="authenticated", role="postgres")),
        "not-a-jwt-token-at-all",
    ]
    for token in tokens:
        message = _rejects(verifier, token)
        assert token not in message
        for part in token.split("."):
            if len(part) > 8:
                assert part not in message


def test_cached_verifier_serves_repeats_and_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.jwt_auth import CachedVerifier

    calls: list[str] = []
    inner = _verifier()
    original = inner.verify

    def counting(token: str) -> dict[str, Any]:
        calls.append(token)
        return original(token)

    monkeypatch.setattr(inner, "verify", counting)
    cached = CachedVerifier(inner, size=2)
    now = int(time.time())
    token = _hs(_claims(exp=now + 100))
    assert cached.verify(token)["sub"] == "u1"
    assert cached.verify(token)["sub"] == "u1"
    assert len(calls) == 1
    # Past exp + leeway the cache no longer answers: the token is checked again
    # (the inner verifier, on its own clock, is what refuses an expired token).
    monkeypatch.setattr(time, "time", lambda: now + 100 + 31)
    cached.verify(token)
    assert len(calls) == 2


def test_cached_verifier_does_not_cache_failures_and_stays_bounded() -> None:
    from gateway.jwt_auth import CachedVerifier

    cached = CachedVerifier(_verifier(), size=2)
    bad = _hs(_claims(), secret=OTHER_SECRET)
    for _ in range(2):
        with pytest.raises(InvalidToken, match="invalid signature"):
            cached.verify(bad)
    tokens = [_hs(_claims(sub=f"u{i}")) for i in range(3)]
    for token in tokens:
        cached.verify(token)
    assert len(cached._cache) == 2
    assert tokens[0] not in cached._cache


def test_token_without_exp_rejected() -> None:
    assert _rejects(_verifier(), _hs(_claims(exp=None))) == "token has no exp claim"


def test_token_without_exp_accepted_when_not_required() -> None:
    claims = _claims(exp=None)
    verifier = Verifier(JwtConfig(secret=SECRET, jwks=None, audience=None, require_exp=False))
    assert verifier.verify(_hs(claims)) == claims
