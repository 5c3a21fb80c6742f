"""The seeds' own routes, declared as data: which function each calls, where its
arguments come from, and how the answer is shaped."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Shape = Callable[[Any], Any]


@dataclass(frozen=True)
class SeedRoute:
    method: str
    path: str
    function: str
    # argument name -> path parameter name
    from_path: Mapping[str, str] = field(default_factory=dict)
    # argument name -> body field name (a field absent from the body is passed as null)
    from_body: Mapping[str, str] = field(default_factory=dict)
    # argument name -> query parameter name (one absent is not passed: the default)
    from_query: Mapping[str, str] = field(default_factory=dict)
    status: int = 200
    shape: Shape = lambda value: value

    @property
    def takes_body(self) -> bool:
        return bool(self.from_body)

    def arguments(self, path: Mapping[str, str], body: Mapping[str, Any],
                  query: Mapping[str, str] | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {arg: path[param] for arg, param in self.from_path.items()}
        args.update({arg: body.get(key) for arg, key in self.from_body.items()})
        if query:
            args.update({arg: query[key] for arg, key in self.from_query.items()
                         if key in query})
        return args


def success(key: str | None = None) -> Shape:
    """{"success": true, key: value}, or the value's own keys merged in when key is None."""
    if key is None:
        return lambda value: {"success": True, **value}
    return lambda value: {"success": True, key: value}


def _camel_key(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word.capitalize() for word in rest)


def camel(value: Any) -> Any:
    """snake_case keys to camelCase, recursively, as the like-groups seed answers."""
    if isinstance(value, dict):
        return {_camel_key(k): camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


_GROUP = {"group_id": "id"}
# A list's page (docs/http.md, "Pages"): the same names as the function's arguments.
_PAGE = {"max_rows": "max_rows", "after": "after"}

SEED_ROUTES: list[SeedRoute] = [
    # Group invite codes (seed 000).
    SeedRoute("POST", "/api/groups/{id}/invite", "create_group_invite",
              from_path={"group_id": "id"},
              from_body={"expires_in": "expires_in", "max_uses": "max_uses"},
              status=201, shape=success("invite")),
    SeedRoute("POST", "/api/groups/join", "join_group",
              from_body={"code": "code"}, shape=success()),
    # Like groups (seed 003), in camelCase.
    SeedRoute("GET", "/groups", "my_like_groups", from_query=_PAGE, shape=camel),
    SeedRoute("GET", "/groups/{id}", "get_like_group", from_path=_GROUP, shape=camel),
    SeedRoute("POST", "/groups/{id}/members", "add_like_group_member", from_path=_GROUP,
              from_body={"user_id": "userId"}, shape=camel),
    SeedRoute("DELETE", "/groups/{id}/members/{userId}", "remove_like_group_member",
              from_path={"group_id": "id", "user_id": "userId"}, shape=camel),
    SeedRoute("GET", "/groups/{id}/approvals", "list_like_group_approvals", from_path=_GROUP,
              shape=camel),
    SeedRoute("POST", "/groups/{id}/approve", "approve_like_group", from_path=_GROUP,
              shape=camel),
    SeedRoute("POST", "/groups/{id}/reject", "reject_like_group", from_path=_GROUP, shape=camel),
    SeedRoute("POST", "/events/{id}/like", "like_event", from_path={"event_id": "id"},
              from_body={"member_ids": "memberIds"}, status=201, shape=camel),
    # Pair registration (seed 004). The token comes in the path or in the body.
    SeedRoute("POST", "/api/events/{id}/invite", "create_pair_invite",
              from_path={"event_id": "id"}, from_body={"invitee_email": "email"},
              status=201, shape=success()),
    SeedRoute("POST", "/api/invites/join", "join_pair_invite",
              from_body={"code": "code"}, shape=success()),
    SeedRoute("POST", "/api/invites/{token}/accept", "accept_pair_invite",
              from_path={"token": "token"}, shape=success()),
    SeedRoute("POST", "/api/invites/accept", "accept_pair_invite",
              from_body={"token": "token"}, shape=success()),
    SeedRoute("POST", "/api/invites/{token}/decline", "decline_pair_invite",
              from_path={"token": "token"}, shape=success()),
    SeedRoute("POST", "/api/invites/decline", "decline_pair_invite",
              from_body={"token": "token"}, shape=success()),
]
