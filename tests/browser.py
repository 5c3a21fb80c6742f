"""A real Chromium (Debian's package) driven by Playwright, for the page tests:
people as browser contexts (each with its own storage), screenshots under
test-output/pages/, and axe-core checks."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

if TYPE_CHECKING:
    from conftest import User

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-output" / "pages"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 900}


@pytest.fixture(scope="module", name="browser")
def browser_fixture() -> Iterator[Browser]:
    """One Chromium per test module, closed after it: Playwright's sync API keeps an
    event loop of its own while it runs, which other modules' asyncio must not meet."""
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


@pytest.fixture(name="person")
def person_fixture(browser: Browser) -> Iterator[Callable[..., Person]]:
    people: list[Person] = []

    def factory(**kwargs: Any) -> Person:
        people.append(Person(browser, **kwargs))
        return people[-1]

    yield factory
    for p in people:
        p.close()


def signed_in(url: str, user: User) -> str:
    """The URL as a Supabase Auth redirect would give it: the token in the fragment."""
    return f"{url}#access_token={user.token}&token_type=bearer&expires_in=3600"


def make_event(api: httpx.Client, user: User, title: str = "Autumn padel",
               capacity: int = 20) -> str:
    deadline = (datetime.now(UTC) + timedelta(days=5)).isoformat()
    response = api.post("/rest/v1/rpc/create_event", headers=user.headers, json={
        "title": title, "registration_deadline": deadline, "capacity": capacity})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def code_invite(api: httpx.Client, user: User, event_id: str,
                email: str | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {"event_id": event_id}
    if email:
        args["invitee_email"] = email
    response = api.post("/rest/v1/rpc/create_pair_invite", headers=user.headers, json=args)
    assert response.status_code == 200, response.text
    return response.json()
