"""The OpenAPI 3.1 document: every RPC function from the catalogue (arguments,
types, volatility, docblock) and every route declared in the route table.

Rules the types cannot carry are written in the function's docblock (its COMMENT),
one per line, beside the code that enforces them:

    @arg code pattern=^[0-9a-fA-F]{8}-...$      keywords for one argument's schema:
    @arg name minLength=1 maxLength=100          minLength maxLength minimum maximum
    @arg locale enum=en,ca                       minItems maxItems (integers), pattern
                                                 format (strings), enum (a,b,c),
                                                 uniqueItems (true); no spaces in values
    @body minProperties=1                        the same, for the arguments' object
    @returns {id:uuid, name, creator_id:uuid, created_at:date-time}
                                                 the answer's shape: {field[:shape], ...},
                                                 [shape], or a type (uuid string integer
                                                 number boolean date-time, a|b|c an enum);
                                                 `?` after a shape: it may be null; a field
                                                 without a shape is any JSON
    @link create_group_invite group_id=id        the answer feeds another call: its
                                                 argument = a field of this answer
                                                 (a.b for a nested field)

Annotation lines are left out of the operation's description. What the catalogue
knows is read from it: types (uuid, date-time, integer ranges, varchar lengths),
domains' CHECK constraints (lengths, ranges, patterns, enums: see domain_rules),
which functions count attempts against a rate limit (429) and which only the
service_role may call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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
SERVICE_ROLE_TAG = "service_role"

_INTEGER_KEYS = {"minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems",
                 "minProperties", "maxProperties"}
_STRING_KEYS = {"pattern", "format"}
_RESPONSE_TYPES: dict[str, dict[str, Any]] = {
    "uuid": {"type": "string", "format": "uuid"},
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "date-time": {"type": "string", "format": "date-time"},
    "object": {"type": "object"},
}
_ANNOTATION = re.compile(r"^@(?P<tag>arg|body|returns|link)\s+(?P<text>.*?)\s*$")


class AnnotationError(ValueError):
    """A docblock annotation that cannot be read (the migration's docblock is wrong)."""


@dataclass
class Annotations:
    """What a function's docblock says beyond its prose."""

    description: str = ""
    args: dict[str, dict[str, Any]] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    returns: dict[str, Any] | None = None
    links: dict[str, dict[str, str]] = field(default_factory=dict)  # target -> arg -> field


def _keywords(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if not sep or not value:
            raise AnnotationError(f"expected key=value, not {token!r}")
        if key in _INTEGER_KEYS:
            out[key] = int(value)
        elif key in _STRING_KEYS:
            out[key] = value
        elif key == "enum":
            out[key] = value.split(",")
        elif key == "uniqueItems" and value == "true":
            out[key] = True
        else:
            raise AnnotationError(f"unknown schema keyword {token!r}")
    return out


class _ShapeReader:
    """@returns shapes: {a, b:uuid, c:{d}, e:[{f}]?, g:x|y}."""

    TOKEN = re.compile(r"\s*([{}\[\],:?]|[A-Za-z_][\w|-]*)")

    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            match = self.TOKEN.match(text, pos)
            if match is None:
                raise AnnotationError(f"cannot read the shape at {text[pos:]!r}")
            self.tokens.append(match[1])
            pos = match.end()
        self.pos = 0

    def _next(self) -> str:
        if self.pos >= len(self.tokens):
            raise AnnotationError("the shape ends too early")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def read(self) -> dict[str, Any]:
        shape = self.shape()
        if self._peek() is not None:
            raise AnnotationError(f"unexpected {self._peek()!r} after the shape")
        return shape

    def shape(self) -> dict[str, Any]:
        token = self._next()
        if token == "{":
            properties: dict[str, Any] = {}
            while True:
                name = self._next()
                if not re.match(r"^\w+$", name):
                    raise AnnotationError(f"expected a field name, not {name!r}")
                if self._peek() == ":":
                    self._next()
                    properties[name] = self.shape()
                else:
                    properties[name] = {}
                end = self._next()
                if end == "}":
                    break
                if end != ",":
                    raise AnnotationError(f"expected , or }} not {end!r}")
            schema: dict[str, Any] = {"type": "object", "properties": properties,
                                      "required": list(properties)}
        elif token == "[":
            schema = {"type": "array", "items": self.shape()}
            if self._next() != "]":
                raise AnnotationError("expected ]")
        elif "|" in token:
            schema = {"type": "string", "enum": token.split("|")}
        elif token in _RESPONSE_TYPES:
            schema = dict(_RESPONSE_TYPES[token])
        else:
            raise AnnotationError(f"unknown type {token!r}")
        if self._peek() == "?":
            self._next()
            schema = _nullable(schema)
        return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    out["type"] = [out["type"], "null"]
    return out


def annotations(comment: str) -> Annotations:
    """Reads a docblock (a function's COMMENT): its prose and its @ lines."""
    found = Annotations()
    prose: list[str] = []
    for line in comment.splitlines():
        match = _ANNOTATION.match(line.strip())
        if match is None:
            prose.append(line)
            continue
        tag, text = match["tag"], match["text"]
        try:
            if tag == "arg":
                name, _, rest = text.partition(" ")
                found.args.setdefault(name, {}).update(_keywords(rest))
            elif tag == "body":
                found.body.update(_keywords(text))
            elif tag == "returns":
                found.returns = _ShapeReader(text).read()
            else:
                target, *pairs = text.split()
                found.links[target] = dict(p.split("=", 1) for p in pairs)
        except (AnnotationError, ValueError) as exc:
            raise AnnotationError(f"@{tag} {text}: {exc}") from None
    found.description = "\n".join(prose).strip()
    return found


Domains = dict[str, tuple[str, tuple[str, ...]]]  # Catalog.domains: name -> base, checks
_VARCHAR = re.compile(r"^character varying\((\d+)\)$")
_LENGTH = re.compile(r"char_length\(VALUE\) (>=|>|<=|<|=) (\d+)\)")
_RANGE = re.compile(r"\(VALUE (>=|>|<=|<) \(?(-?\d+(?:\.\d+)?)\)?")
_REGEX = re.compile(r"\(VALUE ~ '((?:[^']|'')*)'::text\)")
_ANY = re.compile(r"\(VALUE = ANY \(ARRAY\[(.*)\]\)\)")
_LITERAL = re.compile(r"'((?:[^']|'')*)'::")


def domain_rules(checks: tuple[str, ...], integer: bool) -> dict[str, Any]:
    """Schema keywords from a domain's CHECK constraints, as pg_get_constraintdef
    writes them: char_length(VALUE) bounds, VALUE bounds, VALUE ~ 'regex' and
    VALUE = ANY (ARRAY[...]) joined by AND. A constraint with OR or NOT is skipped
    (its meaning is not one schema keyword)."""
    out: dict[str, Any] = {}
    for check in checks:
        if re.search(r"\b(OR|NOT)\b", check):
            continue
        for op, value in _LENGTH.findall(check):
            n = int(value)
            if op in (">=", ">", "="):
                out["minLength"] = n + (op == ">")
            if op in ("<=", "<", "="):
                out["maxLength"] = n - (op == "<")
        for op, value in _RANGE.findall(check):
            number: int | float = int(value) if integer else float(value)
            if op == ">" and integer:
                out["minimum"] = number + 1
            elif op == "<" and integer:
                out["maximum"] = number - 1
            else:
                out[{">=": "minimum", ">": "exclusiveMinimum", "<=": "maximum",
                     "<": "exclusiveMaximum"}[op]] = number
        for regex in _REGEX.findall(check):
            out["pattern"] = regex.replace("''", "'")
        for values in _ANY.findall(check):
            out["enum"] = [v.replace("''", "'") for v in _LITERAL.findall(values)]
    return out


def notes_of(fn: Function) -> Annotations:
    """A function's annotations; a docblock that cannot be read costs that function
    its rules, not the whole document (tests/test_openapi.py reads every docblock)."""
    try:
        return annotations(fn.comment)
    except AnnotationError:
        return Annotations(description=fn.comment)


def type_schema(pg_type: str, domains: Domains | None = None) -> dict[str, Any]:
    if pg_type.endswith("[]"):
        return {"type": "array", "items": type_schema(pg_type[:-2], domains)}
    if domains and pg_type in domains:
        base, checks = domains[pg_type]
        schema = type_schema(base, domains)
        schema.update(domain_rules(checks, schema.get("type") == "integer"))
        return schema
    varchar = _VARCHAR.match(pg_type)
    if varchar:
        return {"type": "string", "maxLength": int(varchar[1])}
    return dict(_SCALARS.get(pg_type, {"type": "string"}))


def arg_schema(pg_type: str, rules: dict[str, Any],
               domains: Domains | None = None) -> dict[str, Any]:
    """The type's schema (a domain's checks included) with the docblock's rules."""
    schema = type_schema(pg_type, domains)
    if "format" in rules and schema.get("format") not in (None, rules["format"]):
        raise AnnotationError(f"format {rules['format']} contradicts the type {pg_type}")
    schema.update(rules)
    return schema

_REFUSALS = {
    400: "Bad input: an argument breaks a rule above, or the body is not JSON",
    401: "Not signed in, or the token is invalid or expired",
    403: "Not allowed for this caller",
    404: "Not found (or not visible to this caller)",
    406: "The requested schema (Accept-Profile) is not served",
    409: "Conflict with the current state (already done, full, limit reached)",
    410: "Gone: expired, used up, revoked or past its deadline",
    413: "The request body is too large",
    415: "The body is not JSON",
}


def _error(text: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": text, "content": {"application/json": {"schema": ERROR}}}
    if headers:
        out["headers"] = headers
    return out


def _errors(limited: bool = False) -> dict[str, Any]:
    """Refusals share PostgREST's body; 429 where the function counts attempts; 503
    when the database is down."""
    out = {str(code): _error(text) for code, text in _REFUSALS.items()}
    if limited:
        out["429"] = _error("Too many attempts: this call counts against a per-user rate "
                            "limit (failed attempts included)", {"Retry-After": {
                                "description": "Seconds to wait", "schema": {"type": "string"}}})
    out["503"] = _error("The database is unavailable")
    return dict(sorted(out.items()))


def _success(fn: Function, status: int = 200, schema: dict[str, Any] | None = None,
             links: dict[str, Any] | None = None) -> dict[str, Any]:
    if fn.returns_void:
        return {"204": {"description": "Done"}}
    answer: dict[str, Any] = {"description": "The function's result", "content": {
        "application/json": {"schema": schema if schema is not None else {}}}}
    if links:
        answer["links"] = links
    return {str(status): answer}


def _body(properties: dict[str, Any], required: list[str],
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"required": bool(required), "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "required": required,
        "additionalProperties": False, **(extra or {})}}}}


def _links(notes: Annotations, targets: dict[str, Function]) -> dict[str, Any]:
    """OpenAPI links from @link lines, to functions that exist and take those arguments."""
    out: dict[str, Any] = {}
    for target, pairs in notes.links.items():
        fn = targets.get(target)
        if fn is None or not set(pairs) <= set(fn.arg_names):
            continue
        out[target] = {"operationId": f"rpc_{target}", "requestBody": {
            arg: "$response.body#/" + path.replace(".", "/") for arg, path in pairs.items()}}
    return out


def rpc_operations(fn: Function, catalog: Catalog | None = None) -> dict[str, Any]:
    notes = notes_of(fn)
    args = dict(zip(fn.arg_names, fn.arg_types, strict=True))
    domains = catalog.domains if catalog is not None else {}
    schemas = {n: arg_schema(t, notes.args.get(n, {}), domains) for n, t in args.items()}
    required = [n for n in fn.arg_names if n in fn.required]
    summary, _, description = notes.description.partition("\n")
    limited = catalog is not None and fn.name in catalog.limited
    service_only = catalog is not None and fn.name in catalog.service_only
    description = description.strip()
    common: dict[str, Any] = {"summary": summary or fn.name, "description": description,
                              "tags": ["rpc"], "responses": {}}
    if service_only:
        common["description"] = ("Only the service_role may call this (a signed-in user "
                                 "gets 403).\n\n" + description).strip()
        common["tags"] = ["rpc", SERVICE_ROLE_TAG]
        common["security"] = [{"service_role": []}]
    targets = {name: fns[0] for name, fns in (catalog.functions if catalog else {}).items()}
    ops: dict[str, Any] = {"post": {
        **common, "operationId": f"rpc_{fn.name}",
        "responses": {**_success(fn, schema=notes.returns, links=_links(notes, targets)),
                      **_errors(limited)},
        "requestBody": _body(schemas, required, notes.body)}}
    if not fn.volatile:
        ops["get"] = {**common, "operationId": f"rpc_{fn.name}_get",
                      "responses": {**_success(fn, schema=notes.returns), **_errors(limited)},
                      "parameters": [
                          {"name": n, "in": "query", "required": n in fn.required, "schema": s}
                          for n, s in schemas.items()]}
    return ops


def seed_operation(route: SeedRoute, fn: Function,
                   catalog: Catalog | None = None) -> dict[str, Any]:
    """A seed route: the function's argument rules under the route's names; the answer
    is reshaped by the route (success flags, camelCase), so its schema stays open."""
    notes = notes_of(fn)
    types = dict(zip(fn.arg_names, fn.arg_types, strict=True))
    domains = catalog.domains if catalog is not None else {}
    params = [{"name": param, "in": "path", "required": True,
               "schema": arg_schema(types[arg], notes.args.get(arg, {}), domains)}
              for arg, param in route.from_path.items()]
    params += [{"name": param, "in": "query", "required": False,
                "schema": arg_schema(types[arg], notes.args.get(arg, {}), domains)}
               for arg, param in route.from_query.items()]
    slug = re.sub(r"\W+", "_", route.path).strip("_")
    limited = catalog is not None and fn.name in catalog.limited
    op: dict[str, Any] = {
        "summary": notes.description.partition("\n")[0] or fn.name, "tags": ["seed routes"],
        "operationId": f"{route.method.lower()}_{slug}",
        "parameters": params,
        "responses": {**_success(fn, route.status), **_errors(limited)},
    }
    if route.takes_body:
        properties = {key: arg_schema(types[arg], notes.args.get(arg, {}), domains)
                      for arg, key in route.from_body.items()}
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
        paths[f"/rest/v1/rpc/{name}"] = rpc_operations(catalog.functions[name][0], catalog)
    for route in SEED_ROUTES:
        fns = catalog.functions.get(route.function)
        if fns:
            paths.setdefault(route.path, {})[route.method.lower()] = seed_operation(
                route, fns[0], catalog)
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
                "service_role": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                 "description": "A token whose role claim is service_role "
                                                "(operations tagged service_role)"},
            },
            "schemas": {"Error": {
                "type": "object", "required": ["code", "message", "details", "hint"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                               "details": {"type": ["string", "null"]},
                               "hint": {"type": ["string", "null"]}}}},
        },
        "security": [{"bearer": []}, {"apikey": []}, {}],
    }
