"""The HTTP surface: the Starlette app, its routes, errors, metrics and OpenAPI."""
