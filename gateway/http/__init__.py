"""The HTTP surface: the call handlers and fast path, routes, metrics, OpenAPI."""
