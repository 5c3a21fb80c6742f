"""TypeScript types for supabase-js, from the live catalogue of schema `api`.

    python -m gateway types > database.types.ts

prints a `Database` type in the shape `supabase gen types typescript` writes, so
that `createClient<Database>(url, key).rpc(name, args)` checks the function's
name, its argument names and types, and types `data`. The gateway serves `api`
as `public` (supabase-js asks for `public` by default), so the type does too.
The project exposes functions only: Tables, Views, Enums and CompositeTypes are
empty, written as the generator writes an empty map.

Types map as the generator maps them: json/jsonb -> Json, text/uuid/dates ->
string, integers and floats -> number, boolean, arrays -> T[], a set-returning
function -> its row type [], `returns table (...)` -> an object per row, void ->
undefined; arguments with defaults are optional. An argument whose docblock
gives an enum (`@arg locale enum=en,ca`, the rules the OpenAPI document reads:
gateway/http/openapi.py) is typed as the union of its values: "en" | "ca"; a
json/jsonb function whose docblock names its answer (@returns) returns that
shape instead of Json (enums as unions, nullable fields `| null`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import psycopg

from ..http.openapi import AnnotationError, Annotations, annotations

SERVED_AS = "public"
POSTGREST_VERSION = "12"

# The functions the gateway serves (gateway/db.py CATALOG_QUERY): schema api,
# plain functions, no OUT parameters (`returns table` columns are allowed).
FUNCTIONS_QUERY = """
select p.proname, p.proretset, p.prorettype::oid, p.pronargs, p.pronargdefaults,
       coalesce(p.proargnames, '{}'),
       coalesce(p.proargmodes::text[], '{}'),
       coalesce(p.proallargtypes::oid[], p.proargtypes::oid[]),
       coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '')
from pg_catalog.pg_proc p
where p.pronamespace = 'api'::pg_catalog.regnamespace and p.prokind = 'f'
  and (p.proargmodes is null or 'o' <> all (p.proargmodes))
order by p.proname, p.pronargs, p.oid
"""

TYPES_QUERY = """
select t.oid::oid, t.typname::text, t.typtype::text, t.typcategory::text, t.typelem::oid,
       t.typbasetype::oid, t.typrelid::oid,
       array(select e.enumlabel::text from pg_catalog.pg_enum e
             where e.enumtypid = t.oid order by e.enumsortorder),
       array(select pg_catalog.jsonb_build_array(a.attname, a.atttypid::oid)
             from pg_catalog.pg_attribute a
             where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped
             order by a.attnum)
from pg_catalog.pg_type t
"""

NUMBER = {"int2", "int4", "int8", "float4", "float8", "numeric", "oid"}
STRING = {"bytea", "bpchar", "varchar", "date", "text", "citext", "time", "timetz",
          "timestamp", "timestamptz", "uuid", "vector", "name", "interval", "inet",
          "cidr", "macaddr", "char"}
IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
WIDTH = 80  # the generator's output goes through prettier (print width 80)


@dataclass(frozen=True)
class PgType:
    name: str
    kind: str  # typtype: b base, c composite, d domain, e enum, p pseudo, r range
    category: str
    element: int
    base: int
    labels: tuple[str, ...]
    attributes: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Signature:
    name: str
    args: tuple[tuple[str, str, bool], ...]  # name, TypeScript type, optional
    returns: str


def key(name: str) -> str:
    """An object key as prettier leaves it: bare when it is an identifier."""
    return name if IDENTIFIER.match(name) else json.dumps(name)


class TypeMap:
    """PostgreSQL type oids to TypeScript, as the generator maps them."""

    def __init__(self, types: dict[int, PgType]) -> None:
        self.types = types

    def ts(self, oid: int) -> str:
        t = self.types.get(oid)
        if t is None:
            return "unknown"
        if t.category == "A" and t.element:
            inner = self.ts(t.element)
            return f"({inner})[]" if " " in inner else f"{inner}[]"
        if t.kind == "d":
            return self.ts(t.base)
        if t.kind == "e":
            return " | ".join(json.dumps(label) for label in t.labels) or "never"
        if t.kind == "c":
            fields = "; ".join(f"{key(n)}: {self.ts(a)} | null" for n, a in t.attributes)
            return f"{{ {fields} }}"
        if t.name == "bool":
            return "boolean"
        if t.name in NUMBER:
            return "number"
        if t.name in STRING:
            return "string"
        if t.name in ("json", "jsonb"):
            return "Json"
        if t.name == "void":
            return "undefined"
        if t.name == "record":
            return "Record<string, unknown>"
        return "unknown"


def schema_ts(schema: dict[str, Any]) -> str:
    """A docblock's @returns shape (a JSON Schema) as a TypeScript type."""
    kind = schema.get("type")
    nullable = isinstance(kind, list) and "null" in kind
    base = kind[0] if isinstance(kind, list) else kind
    if "enum" in schema:
        out = " | ".join(json.dumps(v) for v in schema["enum"] if v is not None)
    elif base == "object" and "properties" in schema:
        out = "{ " + "; ".join(f"{key(n)}: {schema_ts(s)}"
                               for n, s in schema["properties"].items()) + " }"
    elif base == "object":
        out = "{ [key: string]: Json | undefined }"
    elif base == "array":
        inner = schema_ts(schema.get("items", {}))
        out = f"({inner})[]" if " | " in inner else f"{inner}[]"
    else:
        out = {"string": "string", "integer": "number", "number": "number",
               "boolean": "boolean"}.get(base or "", "Json")
    return f"{out} | null" if nullable else out


def _enum(rules: dict[str, object]) -> str | None:
    """The union of an argument's documented values, or None."""
    values = rules.get("enum")
    return " | ".join(json.dumps(v) for v in values) if isinstance(values, list) else None


def load(conn: psycopg.Connection) -> list[Signature]:
    types = {
        oid: PgType(name, kind, category, element, base, tuple(labels),
                    tuple((a[0], int(a[1])) for a in attributes))
        for oid, name, kind, category, element, base, _relid, labels, attributes
        in conn.execute(TYPES_QUERY).fetchall()
    }
    tsmap = TypeMap(types)
    signatures: list[Signature] = []
    for (name, retset, rettype, nargs, ndefaults, argnames, argmodes,
         argtypes, comment) in conn.execute(FUNCTIONS_QUERY).fetchall():
        try:
            notes = annotations(comment)
        except AnnotationError:
            notes = Annotations()  # as the OpenAPI document: the function keeps its plain types
        rules = notes.args
        modes = argmodes or ["i"] * len(argtypes)
        names = list(argnames) + [""] * (len(argtypes) - len(argnames))
        inputs = [(n, t) for n, m, t in zip(names, modes, argtypes, strict=True)
                  if m in ("i", "b", "v")]
        if any(not n for n, _ in inputs):
            continue  # the gateway (as PostgREST) calls by name only
        first_default = nargs - ndefaults
        args = tuple((n, _enum(rules.get(n, {})) or tsmap.ts(t), i >= first_default)
                     for i, (n, t) in enumerate(inputs))
        columns = [(n, t) for n, m, t in zip(names, modes, argtypes, strict=True) if m == "t"]
        if columns:
            returns = "{ " + "; ".join(f"{key(n)}: {tsmap.ts(t)}" for n, t in columns) + " }"
        elif notes.returns is not None and tsmap.ts(rettype) == "Json":
            returns = schema_ts(notes.returns)
        else:
            returns = tsmap.ts(rettype)
        if retset:
            returns = f"({returns})[]" if " | " in returns else f"{returns}[]"
        signatures.append(Signature(name, args, returns))
    return signatures


def _args(sig: Signature, indent: str) -> str:
    if not sig.args:
        return "never"
    fields = [f"{key(n)}{'?' if optional else ''}: {t}" for n, t, optional in sig.args]
    inline = "{ " + "; ".join(fields) + " }"
    if len(indent) + len("Args: ") + len(inline) <= WIDTH:
        return inline
    inner = indent + "  "
    return "{\n" + "".join(f"{inner}{f}\n" for f in fields) + indent + "}"


def _functions(signatures: list[Signature]) -> str:
    if not signatures:
        return "      [_ in never]: never\n"
    by_name: dict[str, list[Signature]] = {}
    for sig in signatures:
        by_name.setdefault(sig.name, []).append(sig)
    out = []
    for name in sorted(by_name):
        sigs = by_name[name]
        indent = " " * 8
        args = " | ".join(_args(sig, indent) for sig in sigs)
        # Overloads share one Returns, as the generator writes them.
        out.append(f"      {key(name)}: {{\n{indent}Args: {args}\n"
                   f"{indent}Returns: {sigs[0].returns}\n      }}\n")
    return "".join(out)


EMPTY = "{\n      [_ in never]: never\n    }"

HELPERS = '''
type DatabaseWithoutInternals = Omit<Database, "__InternalSupabase">

type DefaultSchema = DatabaseWithoutInternals[Extract<
  keyof DatabaseWithoutInternals,
  "public"
>]

export type Tables<
  Name extends keyof (DefaultSchema["Tables"] & DefaultSchema["Views"]),
> = (DefaultSchema["Tables"] & DefaultSchema["Views"])[Name] extends {
  Row: infer Row
}
  ? Row
  : never

export type TablesInsert<Name extends keyof DefaultSchema["Tables"]> =
  DefaultSchema["Tables"][Name] extends { Insert: infer Insert } ? Insert : never

export type TablesUpdate<Name extends keyof DefaultSchema["Tables"]> =
  DefaultSchema["Tables"][Name] extends { Update: infer Update } ? Update : never

export type Enums<Name extends keyof DefaultSchema["Enums"]> =
  DefaultSchema["Enums"][Name]

export type CompositeTypes<Name extends keyof DefaultSchema["CompositeTypes"]> =
  DefaultSchema["CompositeTypes"][Name]

export const Constants = {
  public: {
    Enums: {},
  },
} as const
'''


def render(signatures: list[Signature]) -> str:
    return (
        "export type Json =\n"
        "  | string\n  | number\n  | boolean\n  | null\n"
        "  | { [key: string]: Json | undefined }\n  | Json[]\n\n"
        "export type Database = {\n"
        "  // Lets createClient<Database> pick the PostgREST features this server has.\n"
        "  __InternalSupabase: {\n"
        f"    PostgrestVersion: {json.dumps(POSTGREST_VERSION)}\n"
        "  }\n"
        f"  {SERVED_AS}: {{\n"
        f"    Tables: {EMPTY}\n"
        f"    Views: {EMPTY}\n"
        "    Functions: {\n"
        f"{_functions(signatures)}"
        "    }\n"
        f"    Enums: {EMPTY}\n"
        f"    CompositeTypes: {EMPTY}\n"
        "  }\n"
        "}\n"
        f"{HELPERS}"
    )


def generate(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return render(load(conn))
