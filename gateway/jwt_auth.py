"""JWT verification (PostgREST/Supabase-compatible) and development token minting."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
import orjson
from jwt import PyJWK

__all__ = ["ALLOWED_ROLES", "CachedVerifier", "InvalidToken", "JwtConfig", "KeySet",
           "UnknownKeyId", "Verifier", "mint"]

ALLOWED_ROLES = frozenset({"anon", "authenticated", "service_role"})
ALLOWED_ALGS = frozenset({"HS256", "ES256", "RS256"})
_KTY_FOR_ALG = {"HS256": "oct", "ES256": "EC", "RS256": "RSA"}
_MIN_SECRET_LEN = 32


class InvalidToken(Exception):
    """message is safe to show the client (never contains the token)."""


class UnknownKeyId(InvalidToken):
    """The token names a key id no configured key has: keys published at a URL
    may have rotated since they were fetched (gateway/jwks.py fetches again)."""

    def __init__(self) -> None:
        super().__init__("unknown key id")


@dataclass(frozen=True)
class JwtConfig:
    secret: str | None
    jwks: dict[str, Any] | None
    audience: str | None
    leeway: int = 30
    require_exp: bool = True

    def __post_init__(self) -> None:
        if self.secret is not None and len(self.secret) < _MIN_SECRET_LEN:
            raise ValueError(f"JWT secret must be at least {_MIN_SECRET_LEN} characters")
        if self.jwks is not None and not isinstance(self.jwks.get("keys"), list):
            raise ValueError('JWKS must be a JSON object with a "keys" list')
        if self.leeway < 0:
            raise ValueError("JWT leeway must not be negative")

    @classmethod
    def from_values(
        cls, secret: str | None, jwks_text: str | None, audience: str | None,
        require_exp: bool = True,
    ) -> JwtConfig:
        """jwks_text is JSON text of a JWKS, or a path to a file holding it (if it does not
        start with '{'). Empty strings mean unset."""
        jwks: dict[str, Any] | None = None
        text = (jwks_text or "").strip()
        if text:
            if not text.startswith("{"):
                try:
                    text = Path(text).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ValueError(f"cannot read JWKS file: {exc.strerror}") from None
            try:
                parsed = json.loads(text)
            except ValueError:
                raise ValueError("JWKS is not valid JSON") from None
            if not isinstance(parsed, dict):
                raise ValueError("JWKS must be a JSON object")
            # A single JWK is accepted as a one-key set.
            jwks = parsed if "keys" in parsed else {"keys": [parsed]}
        return cls(secret=secret or None, jwks=jwks, audience=audience or None,
                   require_exp=require_exp)


@dataclass(frozen=True)
class _Key:
    kid: str | None
    kty: str
    alg: str
    crv: str | None
    key: Any  # prepared key object usable by jwt.decode

    def fits(self, alg: str) -> bool:
        if self.kty != _KTY_FOR_ALG[alg] or self.alg != alg:
            return False
        return alg != "ES256" or self.crv in (None, "P-256")


def _build_keys(jwks: dict[str, Any] | None, strict: bool = True) -> list[_Key]:
    """The signing keys of a JWKS. strict: a key that cannot be used is an error (a
    set the operator wrote); else it is skipped (a set fetched from an issuer, which
    may publish keys of kinds this gateway does not use)."""
    keys: list[_Key] = []
    for index, data in enumerate((jwks or {}).get("keys", [])):
        if not isinstance(data, dict):
            if not strict:
                continue
            raise ValueError(f"JWKS key #{index} is not an object")
        if data.get("use") == "enc" or data.get("kty") not in _KTY_FOR_ALG.values():
            continue  # not a signing key we could ever use
        if not strict and data.get("kty") == "oct":
            continue  # a shared secret published for anyone to read signs nothing here
        try:
            key = PyJWK(data)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            if not strict:
                continue
            # The library's message may embed key material: do not propagate it.
            raise ValueError(f"JWKS key #{index} is invalid or unsupported") from None
        if not strict and key.algorithm_name not in ALLOWED_ALGS:
            continue
        kid, crv = data.get("kid"), data.get("crv")
        keys.append(
            _Key(
                kid=kid if isinstance(kid, str) else None,
                kty=data["kty"],
                alg=key.algorithm_name,
                crv=crv if isinstance(crv, str) else None,
                key=key.key,
            )
        )
    return keys


# exp, nbf and iat: numbers of seconds, within what a JavaScript number or a
# PostgreSQL float8 holds exactly (anything beyond is not a time but an attack on
# the code that reads it).
_TIME_CLAIMS = ("exp", "nbf", "iat")
_TIME_LIMIT = 2**53


def _is_time(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and -_TIME_LIMIT <= value <= _TIME_LIMIT


def _role_text(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value[:40] + ("..." if len(value) > 40 else ""))
    return f"of type {type(value).__name__}"


class KeySet:
    """Keys by key id and by algorithm, as the verifier looks them up."""

    def __init__(self, keys: list[_Key], fingerprint: str = "") -> None:
        self.keys = keys
        self.fingerprint = fingerprint  # tells one fetched document's keys from another's
        self.by_kid: dict[str, list[_Key]] = {}
        for key in keys:
            if key.kid is not None:
                self.by_kid.setdefault(key.kid, []).append(key)
        self.by_alg: dict[str, list[Any]] = {
            alg: [k.key for k in keys if k.fits(alg)] for alg in ALLOWED_ALGS}

    @classmethod
    def parse(cls, jwks: object) -> KeySet:
        """The usable signing keys of a fetched document (others skipped); ValueError
        when it is not a JWKS."""
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise ValueError('not a JSON object with a "keys" list')
        return cls(_build_keys(jwks, strict=False),
                   json.dumps(jwks["keys"], sort_keys=True, default=str))

    @property
    def kids(self) -> list[str]:
        return sorted(self.by_kid)


class KeySource(Protocol):
    """Keys that change while the process runs (gateway/jwks.py, JWT_JWKS_URL)."""

    @property
    def current(self) -> KeySet: ...

    @property
    def generation(self) -> int: ...

    def unknown_kid(self) -> None: ...


class Verifier:
    def __init__(self, config: JwtConfig, remote: KeySource | None = None) -> None:
        self._config = config
        self._secret: bytes | None = config.secret.encode() if config.secret else None
        self._remote = remote
        self._has_jwks = config.jwks is not None or remote is not None
        static = KeySet(_build_keys(config.jwks))
        self._by_kid = static.by_kid
        self._by_alg = static.by_alg
        if self._secret is not None:
            self._by_alg["HS256"].insert(0, self._secret)
        aud = config.audience is not None
        # iat is checked in verify() (PyJWT's check varies between versions).
        self._jwt = jwt.PyJWT(
            options={"verify_aud": aud, "verify_iat": False, "require": ["aud"] if aud else []}
        )

    @property
    def generation(self) -> int:
        """Changes whenever the remote keys do (cached verdicts are then forgotten)."""
        return self._remote.generation if self._remote is not None else 0

    def _candidates(self, header: dict[str, Any], alg: str) -> list[Any]:
        kid = header.get("kid")
        remote = self._remote.current if self._remote is not None else None
        if kid is None:
            if remote is None:
                return self._by_alg[alg]
            return self._by_alg[alg] + remote.by_alg[alg]
        if alg == "HS256" and not self._has_jwks:
            return [self._secret] if self._secret is not None else []
        matches = self._by_kid.get(kid) if isinstance(kid, str) else None
        if not matches and remote is not None and isinstance(kid, str):
            matches = remote.by_kid.get(kid)
        if not matches:
            if self._remote is not None:
                self._remote.unknown_kid()  # they may have rotated: fetch again if allowed
            raise UnknownKeyId()
        fitting = [k.key for k in matches if k.fits(alg)]
        if not fitting:
            raise InvalidToken("key id does not match the token algorithm")
        return fitting

    def verify(self, token: str) -> dict[str, Any]:
        """Return the verified claims or raise InvalidToken."""
        if not isinstance(token, str) or not token:
            raise InvalidToken("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
            raise InvalidToken("token algorithm is not allowed")
        candidates = self._candidates(header, alg)
        if not candidates:
            raise InvalidToken(f"no key configured for {alg}")
        claims = self._decode(token, alg, candidates)
        if self._config.require_exp and "exp" not in claims:
            raise InvalidToken("token has no exp claim")
        for name in _TIME_CLAIMS:
            value = claims.get(name)
            if value is not None and not _is_time(value):
                raise InvalidToken(f"invalid {name} claim")
        iat = claims.get("iat")
        if iat is not None and iat > time.time() + self._config.leeway:
            raise InvalidToken("token issued in the future")
        role = claims.get("role")
        if role is None:
            raise InvalidToken("role (missing) is not allowed")
        if not isinstance(role, str) or role not in ALLOWED_ROLES:
            raise InvalidToken(f"role {_role_text(role)} is not allowed")
        # The claims travel to SQL as JSON written by orjson, which refuses integers
        # beyond 64 bits and nesting deeper than 254 levels: such a token is refused
        # here (once per token, the cache remembers successes) instead of failing
        # every request that carries it.
        try:
            orjson.dumps(claims)
        except orjson.JSONEncodeError:
            raise InvalidToken("token claims are nested too deeply or hold too large a number") \
                from None
        return claims

    def _decode(self, token: str, alg: str, candidates: list[Any]) -> dict[str, Any]:
        for key in candidates:
            try:
                return self._jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=self._config.audience,
                    leeway=self._config.leeway,
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise InvalidToken("token has expired") from None
            except jwt.ImmatureSignatureError:
                raise InvalidToken("token is not yet valid") from None
            except jwt.MissingRequiredClaimError:
                raise InvalidToken("token is missing the aud claim") from None
            except jwt.InvalidAudienceError:
                raise InvalidToken("token audience is not accepted") from None
            except jwt.DecodeError:  # e.g. payload is not a JSON object
                raise InvalidToken("malformed token") from None
            except jwt.PyJWTError:
                raise InvalidToken("invalid token") from None
        raise InvalidToken("invalid signature")


class CachedVerifier:
    """Remembers verified tokens until they expire (and at most `max_age` seconds),
    so a client's repeated requests pay for one signature check. Bounded: the
    oldest entry goes when it is full. Only successes are kept."""

    def __init__(self, verifier: Verifier, size: int = 10_000, max_age: float = 300.0) -> None:
        self._verifier = verifier
        self._size = size
        self._max_age = max_age
        self._leeway = verifier._config.leeway
        self._cache: dict[str, tuple[dict[str, Any], float]] = {}
        self._generation = verifier.generation

    def verify(self, token: str) -> dict[str, Any]:
        now = time.time()
        if self._verifier.generation != self._generation:  # keys rotated: judge again
            self._cache.clear()
            self._generation = self._verifier.generation
        hit = self._cache.get(token)
        if hit is not None:
            if now < hit[1]:
                return hit[0]
            del self._cache[token]
        claims = self._verifier.verify(token)
        until = now + self._max_age
        exp = claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            until = min(until, exp + self._leeway)
        if len(self._cache) >= self._size:
            del self._cache[next(iter(self._cache))]
        self._cache[token] = (claims, until)
        return claims


def mint(
    secret: str,
    sub: str | None,
    role: str = "authenticated",
    *,
    expires_in: int = 3600,
    email: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """HS256 development token with iat, exp, sub (if given), role, aud 'authenticated' only
    if extra says so; used by `python -m gateway token` and tests."""
    now = int(time.time())
    claims: dict[str, Any] = {"role": role, "iat": now, "exp": now + expires_in}
    if sub is not None:
        claims["sub"] = sub
    if email is not None:
        claims["email"] = email
    claims.update(extra or {})
    return jwt.encode(claims, secret, algorithm="HS256")
