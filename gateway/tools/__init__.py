"""Tools that never serve a request: the migrator and the SQL linter."""
