"""Plain `yoyo apply` runs this after applying migrations: it rebuilds the code
in sql/ (functions, triggers, grants, policies) when its text has changed.
`make migrate` does the same through gateway.tools.migrate, even with no migration due."""

from yoyo import step


def rebuild_code(conn):
    import psycopg

    from gateway.tools.migrate import apply_code

    # yoyo hands over its own DB-API connection; run the rebuild on a fresh one to
    # keep its transaction handling out of yoyo's.
    dsn = conn.info.dsn
    password = conn.info.password
    with psycopg.connect(dsn, password=password, autocommit=True) as own:
        apply_code(own)


steps = [step(rebuild_code)]
