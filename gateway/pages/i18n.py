"""The text catalogue: one JSON file per language in text/, picked from the
`lang` query parameter, else the browser's Accept-Language, else English."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from starlette.requests import Request

TEXT_DIR = Path(__file__).parent / "text"
LANGUAGES = ("en", "ca")
DEFAULT = "en"


@cache
def catalogue(lang: str) -> dict[str, str]:
    data = json.loads((TEXT_DIR / f"{lang}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def accepted(header: str) -> list[str]:
    """Primary language tags of an Accept-Language header, best first."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, i, tag.split("-")[0].lower()))
    return [tag for _, _, tag in sorted(ranked)]


def choose(request: Request) -> str:
    asked = request.query_params.get("lang", "")
    if asked in LANGUAGES:
        return asked
    for tag in accepted(request.headers.get("accept-language", "")):
        if tag in LANGUAGES:
            return tag
    return DEFAULT
