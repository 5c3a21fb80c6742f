"""python -m gateway serve | dev | check-config | token | migrate | mailer | prune
| types | verify | status"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import uuid

from .settings import DEV_DATABASE_URL, Settings


def serve(settings: Settings, workers: int, command: str = "serve") -> int:
    from .serve import serve as run
    from .startup import start_problem

    problem = start_problem(settings)
    if problem is not None:  # one line, no traceback, nothing served
        print(f"python -m gateway {command}: refusing to start: {problem}", file=sys.stderr)
        return 2
    return run(settings.host, settings.port, workers)


def dev_user(database_url: str) -> str:
    """The development account (dev@example.com), created when missing, as the
    development sign-in creates accounts (on Supabase's auth.users too)."""
    import psycopg
    from psycopg.types.json import Jsonb

    from .pages.devsignin import SIGN_UP_SQL

    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(SIGN_UP_SQL, {"email": "dev@example.com",
                                         "meta": Jsonb({"display_name": "Dev"})}).fetchone()
    assert row is not None
    return str(row[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the HTTP gateway")
    p_serve.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "0") or 0),
                         help="worker processes (default: WORKERS, else one per core)")
    sub.add_parser("dev", help="print a development token and curl line, then serve "
                              "(JOINERY_ENV=development)")
    sub.add_parser("check-config", help="check settings, keys, database, grants and "
                                        "migrations without serving")
    p_token = sub.add_parser("token", help="mint a development token (HS256, JWT_SECRET)")
    p_token.add_argument("--sub", required=True, type=uuid.UUID)
    p_token.add_argument("--role", default="authenticated",
                         choices=["anon", "authenticated", "service_role"])
    p_token.add_argument("--email")
    p_token.add_argument("--expires-in", type=int, default=3600)
    sub.add_parser("mailer", help="deliver the mail outbox over SMTP (SMTP_URL)")
    sub.add_parser("webhooks", help="deliver the webhook outbox (Standard Webhooks)")
    p_migrate = sub.add_parser("migrate", help="bring DATABASE_URL to the current schema")
    p_migrate.add_argument("--force-code", action="store_true",
                           help="rebuild sql/ even when unchanged")
    p_prune = sub.add_parser("prune", aliases=["audit-prune"],
                             help="add coming audit partitions, drop those past the retention, "
                                  "delete sent mail, read notifications and old tokens")
    p_prune.add_argument("--older-than-days", type=int, default=None,
                         help="retention in days (default: AUDIT_RETENTION_DAYS)")
    p_prune.add_argument("--months-ahead", type=int, default=3)
    sub.add_parser("types", help="print a TypeScript Database type of the api functions "
                                 "for supabase-js (createClient<Database>)")
    p_verify = sub.add_parser("verify", help="check the data's invariants, read-only "
                              "(exit 0: all hold, 1: some broken, 2: could not check)")
    p_verify.add_argument("--json", action="store_true", help="machine-readable output")
    p_status = sub.add_parser("status", help="one screen for an operator: migration, "
                              "mail queue, audit of the last hour, most refused users")
    p_status.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if args.command == "check-config":
        from .tools.check import check

        problems = check(os.environ.get("DATABASE_URL") or None)
        for line in problems:
            print(f"check-config: {line}", file=sys.stderr)
        if not problems:
            print("check-config: ok")
        return 1 if problems else 0
    try:
        settings = Settings.from_env()
    except ValueError as exc:  # a setting that cannot be read: say which, no traceback
        print(f"python -m gateway: {exc}", file=sys.stderr)
        return 2
    database_url = os.environ.get("DATABASE_URL") or DEV_DATABASE_URL

    if args.command == "migrate":
        from .tools.migrate import RebuildRefused, migrate

        try:
            print(migrate(database_url, force_code=args.force_code))
        except RebuildRefused as exc:  # gave up or refused, having changed nothing
            print(f"python -m gateway migrate: {exc}", file=sys.stderr)
            return 1
    elif args.command in ("prune", "audit-prune"):
        from .tools.audit import prune

        days = (settings.audit_retention_days if args.older_than_days is None
                else args.older_than_days)
        if days < 1:  # 0 would drop every month's entries, the current one's included
            parser.error(f"--older-than-days must be at least 1, not {days}")
        lines = prune(database_url, days, args.months_ahead)
        print("\n".join(lines) if lines else f"nothing to do (retention {days} days)")
    elif args.command == "types":
        import psycopg

        from .tools.types import generate

        try:
            sys.stdout.write(generate(database_url))
        except psycopg.OperationalError as exc:
            print(f"types: cannot read the catalogue: {exc}".rstrip(), file=sys.stderr)
            return 1
    elif args.command == "verify":
        import psycopg

        from .tools.verify import check, report, report_json

        try:
            invariants, seconds = check(database_url, settings.verify_statement_timeout_ms,
                                        settings.mail_max_attempts)
        except psycopg.Error as exc:
            print(f"verify: could not check: {exc.diag.message_primary or exc}",
                  file=sys.stderr)
            return 2
        sys.stdout.write((report_json if args.json else report)(invariants, seconds))
        return 1 if any(inv.broken for inv in invariants) else 0
    elif args.command == "status":
        import psycopg

        from .tools.status import collect
        from .tools.status import report as status_report
        from .tools.status import report_json as status_json

        try:
            status = collect(database_url)
        except psycopg.Error as exc:
            print(f"status: cannot read the database: {exc.diag.message_primary or exc}",
                  file=sys.stderr)
            return 2
        sys.stdout.write((status_json if args.json else status_report)(status))
    elif args.command == "mailer":
        import asyncio

        from .context import make_mailer

        if not settings.smtp_url:
            parser.error("SMTP_URL is not set")
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(make_mailer(settings).run_forever())
    elif args.command == "webhooks":
        from .webhooks.run import main as webhooks

        return webhooks(settings.listen_database_url)
    elif args.command == "token":
        from .jwt_auth import mint

        if not settings.jwt_secret:
            parser.error("JWT_SECRET is not set")
        print(mint(settings.jwt_secret, str(args.sub), args.role, email=args.email,
                   expires_in=args.expires_in))
    elif args.command == "dev":
        from .jwt_auth import mint
        from .startup import start_problem

        if not settings.development or not settings.jwt_secret:
            print("python -m gateway dev: development only: set JOINERY_ENV=development "
                  "(make run does)", file=sys.stderr)
            return 2
        if (problem := start_problem(settings)) is not None:  # before any user is made
            print(f"python -m gateway dev: refusing to start: {problem}", file=sys.stderr)
            return 2
        user = dev_user(database_url)
        token = mint(settings.jwt_secret, user, email="dev@example.com", expires_in=86400)
        base = f"http://{settings.host}:{settings.port}"
        print(f"Gateway on {base} (Ctrl-C stops it)\n")
        print(f"Start in a browser: {base}/  (pages; the development sign-in is "
              f"{base}/dev/sign-in, the API explorer {base}/docs)\n")
        print(f"Development user dev@example.com ({user}); token valid for 24 hours:\n{token}\n")
        print("Try:")
        print(f"curl -s -X POST {base}/rest/v1/rpc/create_group \\\n"
              f"  -H 'Authorization: Bearer {token}' \\\n"
              "  -H 'Content-Type: application/json' -d '{\"name\": \"My group\"}'\n", flush=True)
        return serve(settings, 1, "dev")
    else:
        return serve(settings, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
