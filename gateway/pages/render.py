"""Server-side rendering: Jinja2 templates (autoescaped) fed by the catalogue."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..settings import Settings
from . import headers, i18n

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
)


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.gateway.settings
    return settings


def sign_in_url(settings: Settings) -> str:
    """Where "Sign in" goes: SIGN_IN_URL, else the development sign-in when it
    exists, else nothing (the page says to sign in through the app)."""
    if settings.sign_in_url:
        return settings.sign_in_url
    return "/dev/sign-in" if settings.dev_sign_in else ""


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    settings = settings_of(request)
    lang = i18n.choose(request)
    other = "ca" if lang == "en" else "en"
    # The language switch keeps the page's own parameters (a code, a token).
    query = {**dict(request.query_params), "lang": other}
    html = env.get_template(template).render(
        lang=lang, t=i18n.catalogue(lang), dev=settings.dev_sign_in,
        sign_in_url=sign_in_url(settings), other_lang=other,
        lang_href="?" + urllib.parse.urlencode(query),
        **context)
    return HTMLResponse(html, status, headers=headers.PAGE)
