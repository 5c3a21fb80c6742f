"""A real Chromium (Debian's package) driven by Playwright, for the page tests:
people as browser contexts (each with its own storage), screenshots under
test-output/pages/, and axe-core checks."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-output" / "pages"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 900}


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


class Person:
    """One person's browser: a context of its own, the CSP violations and page
    errors it saw."""

    def __init__(self, browser: Browser, locale: str = "en-GB",
                 viewport: dict[str, int] | None = None) -> None:
        self.context: BrowserContext = browser.new_context(
            locale=locale, viewport=viewport or DESKTOP)  # type: ignore[arg-type]
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"error: {exc}"))
        self.page.on("console", self._console)

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.problems.append(f"console: {msg.text}")

    def open(self, url: str) -> Page:
        self.page.goto(url)
        return self.page

    def close(self) -> None:
        self.context.close()


def screenshot(page: Page, name: str, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core violations of impact serious or critical, with their nodes."""
    results = Axe().run(page)
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [n["target"] for n in v["nodes"]]}
        for v in results.response["violations"] if v["impact"] in ("serious", "critical")
    ]
