"""Pages at the end of the links: `/`, `/docs`, `/invite/accept`, `/join`,
`/events/{id}`, `/events/{id}/groups` (the authors' approval queue),
`/invite/stop` (GET shows it; POST is RFC 8058's one-click stop) and, in
development only, `/dev/sign-in`; their static files, catalogue and the API
explorer's assets. `routes()` is what the app mounts."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from . import devsignin, handlers, unsubscribe
from .headers import AssetHeaders

HERE = Path(__file__).parent
# Swagger UI 5 (OpenAPI 3.1) as installed by the swagger-ui-py package; only its
# static files are used, the package itself is never imported.
_SWAGGER = importlib.util.find_spec("swagger_ui")
SWAGGER_DIR = Path(_SWAGGER.origin or "").parent / "static" if _SWAGGER else HERE / "missing"


class SwaggerAssets(StaticFiles):
    """Only the Swagger UI files the explorer loads, from the installed package."""

    FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory)

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if path not in self.FILES:
            return "", None
        return super().lookup_path(path)


def routes() -> list[BaseRoute]:
    return [
        Route("/", handlers.index, methods=["GET"]),
        Route("/docs", handlers.docs, methods=["GET"]),
        Route("/invite/accept", handlers.accept, methods=["GET"]),
        Route("/join", handlers.join, methods=["GET"]),
        Route("/events/{event_id}", handlers.event, methods=["GET"]),
        Route("/invite/stop", handlers.stop, methods=["GET"]),
        Route("/invite/stop", unsubscribe.one_click, methods=["POST"]),
        Route("/events/{event_id}/groups", handlers.groups, methods=["GET"]),
        Route("/dev/sign-in", devsignin.form, methods=["GET"]),
        Route("/dev/sign-in", devsignin.sign_in, methods=["POST"]),
        Mount("/pages/static", AssetHeaders(StaticFiles(directory=HERE / "static"))),
        Mount("/pages/text", AssetHeaders(StaticFiles(directory=HERE / "text"))),
        Mount("/docs/assets", AssetHeaders(SwaggerAssets(SWAGGER_DIR))),
    ]
