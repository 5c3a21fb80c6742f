"""The OpenAPI 3.1 document: every RPC function from the catalogue (arguments,
types, volatility, docblock) and every route declared in the route table."""

from __future__ import annotations

import re
from typing import Any

from ..db import Catalog, Function
from .routes import SEED_ROUTES, SeedRoute

INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_SCALARS: dict[str, dict[str, Any]] = {
    "uuid": {"type": "string", "format": "uuid"},
    "text": {"type": "string"},
    "integer": INT32,
    "bigint": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "timestamp with time zone": {"type": "string", "format": "date-time"},
    "json": {},
    "jsonb": {},
}
ERROR = {"$ref": "#/components/schemas/Error"}


def type_schema(pg_type: str) -> dict[str, Any]:
    if pg_type.endswith("[]"):
        return {"type": "array", "items": type_schema(pg_type[:-2])}
    return dict(_SCALARS.get(pg_type, {"type": "string"}))


def _errors(*extra: int) -> dict[str, Any]:
    """Client errors share PostgREST's body; 503 when the database is down."""
    codes = {"4XX": "Refused: bad input, not signed in, not allowed, not found, conflict, "
                    "gone, too large, wrong media type or rate limited (with Retry-After)",
             "503": "The database is unavailable"}
    out = {code: {"description": text, "content": {"application/json": {"schema": ERROR}}}
           for code, text in codes.items()}
    for code in extra:
        out[str(code)] = {"description": "", "content": {"application/json": {"schema": ERROR}}}
    return out


def _success(fn: Function, status: int = 200) -> dict[str, Any]:
    if fn.returns_void:
        return {"204": {"description": "Done"}}
    return {str(status): {"description": "The function's result",
                          "content": {"application/json": {"schema": {}}}}}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": bool(required), "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "required": required,
        "additionalProperties": False}}}}


def rpc_operations(fn: Function) -> dict[str, Any]:
    args = dict(zip(fn.arg_names, fn.arg_types, strict=True))
    required = [n for n in fn.arg_names if n in fn.required]
    summary, _, description = fn.comment.partition("\n")
    common = {"summary": summary or fn.name, "description": description.strip(),
              "tags": ["rpc"], "responses": {**_success(fn), **_errors()}}
    ops: dict[str, Any] = {"post": {
        **common, "operationId": f"rpc_{fn.name}",
        "requestBody": _body({n: type_schema(t) for n, t in args.items()}, required)}}
    if not fn.volatile:
        ops["get"] = {**common, "operationId": f"rpc_{fn.name}_get", "parameters": [
            {"name": n, "in": "query", "required": n in fn.required, "schema": type_schema(t)}
            for n, t in args.items()]}
    return ops


def seed_operation(route: SeedRoute, fn: Function) -> dict[str, Any]:
    types = dict(zip(fn.arg_names, fn.arg_types, strict=True))
    params = [{"name": param, "in": "path", "required": True, "schema": type_schema(types[arg])}
              for arg, param in route.from_path.items()]
    slug = re.sub(r"\W+", "_", route.path).strip("_")
    op: dict[str, Any] = {
        "summary": fn.comment.partition("\n")[0] or fn.name, "tags": ["seed routes"],
        "operationId": f"{route.method.lower()}_{slug}",
        "parameters": params,
        "responses": {**_success(fn, route.status), **_errors()},
    }
    if route.takes_body:
        properties = {key: type_schema(types[arg]) for arg, key in route.from_body.items()}
        required = [key for arg, key in route.from_body.items() if arg in fn.required]
        op["requestBody"] = _body(properties, required)
    return op


def document(catalog: Catalog, version: str = "1") -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "Whether the database answers", "operationId": "healthz",
                             "security": [], "responses": {
                                 "200": {"description": "Healthy", "content": {
                                     "application/json": {"schema": {"type": "object"}}}},
                                 "503": {"description": "The database is unavailable",
                                         "content": {"application/json": {
                                             "schema": {"type": "object"}}}}}}},
        "/realtime/v1/sse": {"get": {
            "summary": "Server-Sent Events for topics user:{id} and group:{like_group_id}",
            "operationId": "realtime_sse",
            "parameters": [
                {"name": "topic", "in": "query", "required": True,
                 "schema": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                            "maxItems": 20}, "style": "form", "explode": True},
                {"name": "access_token", "in": "query", "required": False,
                 "schema": {"type": "string"}}],
            "responses": {"200": {"description": "An event stream",
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          **_errors()}}},
    }
    for name in sorted(catalog.functions):
        # Overloads are told apart by their arguments; the document shows the first.
        paths[f"/rest/v1/rpc/{name}"] = rpc_operations(catalog.functions[name][0])
    for route in SEED_ROUTES:
        fns = catalog.functions.get(route.function)
        if fns:
            paths.setdefault(route.path, {})[route.method.lower()] = seed_operation(route, fns[0])
    return {
        "openapi": "3.1.0",
        "info": {"title": "Joinery", "version": version,
                 "description": "Joining things by invitation and approval. RPC routes follow "
                                "PostgREST; seed routes keep their original shapes."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apikey": {"type": "apiKey", "in": "header", "name": "apikey"},
            },
            "schemas": {"Error": {
                "type": "object", "required": ["code", "message", "details", "hint"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                               "details": {"type": ["string", "null"]},
                               "hint": {"type": ["string", "null"]}}}},
        },
        "security": [{"bearer": []}, {"apikey": []}, {}],
    }
