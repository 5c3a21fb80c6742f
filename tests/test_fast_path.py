"""The fast path (gateway/http/fast.py) answers the calls as Starlette does.

A request carrying an Origin header (or a header given twice) goes through the
Starlette application instead: the same requests sent both ways must get the same
status, body and headers (CORS headers aside)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from conftest import User

ORIGIN = {"Origin": "https://app.example"}
# Headers that differ by nature between two answers, or only exist on the CORS side.
_VARYING = {"date", "x-request-id", "access-control-allow-origin",
            "access-control-expose-headers", "vary", "access-control-allow-credentials"}


def _both(client: httpx.Client, method: str, url: str, **kwargs: object
          ) -> tuple[httpx.Response, httpx.Response]:
    headers = dict(kwargs.pop("headers", {}) or {})  # type: ignore[call-overload]
    fast = client.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]
    slow = client.request(method, url, headers={**headers, **ORIGIN},
                          **kwargs)  # type: ignore[arg-type]
    assert "access-control-allow-origin" not in fast.headers
    assert slow.headers["access-control-allow-origin"] == "*"
    return fast, slow


def _same(fast: httpx.Response, slow: httpx.Response) -> None:
    assert fast.status_code == slow.status_code
    assert fast.content == slow.content
    keep = {k: v for k, v in fast.headers.items() if k not in _VARYING}
    assert keep == {k: v for k, v in slow.headers.items() if k not in _VARYING}
    assert fast.headers["x-request-id"]


@pytest.mark.parametrize("case", ["read", "void", "unknown", "bad_token", "bad_json",
                                  "not_object", "media", "get_volatile", "get_query",
                                  "too_large", "profile", "get_me"])
def test_rpc_answers_alike_on_both_paths(client: httpx.Client, make_user, case: str) -> None:
    user: User = make_user("Fast Path")
    auth = user.headers
    calls = {
        "read": ("POST", "/rest/v1/rpc/my_groups", {"headers": auth}),
        "void": ("POST", "/rest/v1/rpc/remove_friend", {"headers": auth,
                                                         "json": {"user_id": str(uuid.uuid4())}}),
        "unknown": ("POST", "/rest/v1/rpc/no_such_function", {"headers": auth, "json": {}}),
        "bad_token": ("POST", "/rest/v1/rpc/my_groups",
                      {"headers": {"Authorization": "Bearer not.a.token"}}),
        "bad_json": ("POST", "/rest/v1/rpc/create_group",
                     {"headers": {**auth, "Content-Type": "application/json"},
                      "content": b"{nope"}),
        "not_object": ("POST", "/rest/v1/rpc/create_group", {"headers": auth, "json": [1]}),
        "media": ("POST", "/rest/v1/rpc/create_group",
                  {"headers": {**auth, "Content-Type": "application/xml"}, "content": b"<a/>"}),
        "get_volatile": ("GET", "/rest/v1/rpc/create_group?name=x", {"headers": auth}),
        "get_query": ("GET", f"/rest/v1/rpc/get_like_group?group_id={uuid.uuid4()}",
                      {"headers": auth}),
        "get_me": ("GET", "/rest/v1/rpc/me", {"headers": auth}),
        "too_large": ("POST", "/rest/v1/rpc/create_group",
                      {"headers": auth, "json": {"name": "x" * (2 * 1024 * 1024)}}),
        "profile": ("POST", "/rest/v1/rpc/my_groups",
                    {"headers": {**auth, "Accept-Profile": "private"}}),
    }
    method, url, kwargs = calls[case]
    fast, slow = _both(client, method, url, **kwargs)
    _same(fast, slow)


def test_a_write_answers_alike_on_both_paths(client: httpx.Client, make_user) -> None:
    """Two groups created, one each way: the same shape of answer (ids differ)."""
    user: User = make_user()
    fast, slow = _both(client, "POST", "/rest/v1/rpc/create_group",
                       headers=user.headers, json={"name": "Twice"})
    assert fast.status_code == slow.status_code == 200
    assert fast.json().keys() == slow.json().keys()
    assert fast.json()["name"] == slow.json()["name"] == "Twice"
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert fast.headers["content-length"] == str(len(fast.content))


def test_seed_routes_answer_alike_on_both_paths(client: httpx.Client, make_user) -> None:
    owner: User = make_user()
    group = client.post("/rest/v1/rpc/create_group", json={"name": "Seeded"},
                        headers=owner.headers).json()
    fast, slow = _both(client, "GET", "/groups", headers=owner.headers)
    _same(fast, slow)
    fast, slow = _both(client, "POST", f"/api/groups/{group['id']}/invite",
                       headers=owner.headers, json={"max_uses": 3})
    assert fast.status_code == slow.status_code == 201
    assert fast.json().keys() == slow.json().keys() == {"success", "invite"}
    # A method the seed route does not take: Starlette's 405 either way.
    fast, slow = _both(client, "DELETE", "/api/groups/join", headers=owner.headers)
    assert fast.status_code == slow.status_code == 405


def test_a_header_given_twice_goes_through_starlette(client: httpx.Client, make_user) -> None:
    """Starlette reads the first of repeated headers: so does the gateway then."""
    first, second = make_user(), make_user()
    answer = client.post("/rest/v1/rpc/me", headers=[
        ("Authorization", f"Bearer {first.token}"), ("Authorization", f"Bearer {second.token}")])
    assert answer.status_code == 200
    assert answer.json()["id"] == first.id
