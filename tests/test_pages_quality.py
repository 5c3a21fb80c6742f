"""What every page promises, whatever its flow: the headers (CSP without
inline script, no referrer, nosniff, no-store), no action on GET, axe-core
without serious or critical violations (and a screenshot of each page, at
desktop and phone width, under test-output/pages/), the API explorer served
from this gateway alone, the catalogue in both languages, and the development
sign-in, which exists only with the development secret."""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import jwt
import pytest

from browser import (  # noqa: F401  (fixtures)
    PHONE,
    browser_fixture,
    code_invite,
    make_event,
    screenshot,
    serious_violations,
    signed_in,
)
from conftest import GatewayProcess, start_gateway, stop_gateway
from gateway.pages.headers import CSP
from gateway.settings import DEV_JWT_SECRET

if TYPE_CHECKING:
    from playwright.sync_api import Page

PAGES_DIR = Path(__file__).resolve().parent.parent / "gateway" / "pages"
CODE_PAGES = ["/invite/accept?code=ABCD2345", "/join?code=" + str(uuid.UUID(int=1)),
              "/invite/stop?token=abc"]
ALL_PAGES = ["/", "/docs", f"/events/{uuid.UUID(int=2)}", f"/events/{uuid.UUID(int=2)}/groups",
             *CODE_PAGES]


@pytest.fixture(scope="module")
def dev_site(database_url: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[GatewayProcess]:
    """A gateway with the development secret, as `make run` starts it."""
    proc = start_gateway(database_url, tmp_path_factory.mktemp("dev") / "gateway.log",
                         JWT_SECRET=DEV_JWT_SECRET)
    yield proc
    stop_gateway(proc)


class Scripts(HTMLParser):
    """Every <script> (attributes and text) and every on* attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self.scripts.append({**dict(attrs), "text": ""})
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1]["text"] = (self.scripts[-1]["text"] or "") + data


@pytest.mark.parametrize("path", ALL_PAGES)
def test_page_headers_and_no_inline_script(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CSP
    assert "default-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
    assert "script-src 'self';" in CSP and "unsafe" not in CSP
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    parser = Scripts()
    parser.feed(response.text)
    assert parser.handlers == []
    assert parser.scripts, "every page has its script"
    for script in parser.scripts:
        assert script["src"] and script["src"].startswith("/"), script
        assert script["text"] == ""


# /invite/stop takes RFC 8058's one-click POST (tests/test_invitations.py).
@pytest.mark.parametrize("path", ["/invite/accept", "/join", f"/events/{uuid.UUID(int=2)}/groups",
                                  "/"])
def test_pages_take_no_post(client: httpx.Client, path: str) -> None:
    assert client.post(path, data={"code": "ABCD2345"}).status_code == 405


def test_assets(client: httpx.Client) -> None:
    for path, media in (("/pages/static/common.js", "text/javascript"),
                        ("/pages/static/pages.css", "text/css"),
                        ("/pages/text/ca.json", "application/json"),
                        ("/docs/assets/swagger-ui-bundle.js", "text/javascript"),
                        ("/docs/assets/swagger-ui.css", "text/css")):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].split(";")[0] == media, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == CSP
    for path in ("/docs/assets/swagger-editor-bundle.js", "/docs/assets/index.html",
                 "/pages/static/../handlers.py", "/pages/static/%2e%2e/handlers.py",
                 "/pages/text/../i18n.py"):
        assert client.get(path).status_code == 404, path
    assert client.get("/events/not-an-id").status_code == 404


def test_catalogue_has_every_text_in_both_languages() -> None:
    en = json.loads((PAGES_DIR / "text" / "en.json").read_text())
    ca = json.loads((PAGES_DIR / "text" / "ca.json").read_text())
    assert set(en) == set(ca)
    assert all(v.strip() for v in [*en.values(), *ca.values()])
    used: set[str] = set()
    for template in (PAGES_DIR / "templates").glob("*.html"):
        used |= set(re.findall(r"\bt\.(\w+)", template.read_text()))
    for script in (PAGES_DIR / "static").glob("*.js"):
        used |= set(re.findall(r"\bt\(\"(\w+)\"", script.read_text()))
    assert used - set(en) == set()
    # Placeholders agree between the languages.
    for key in en:
        assert set(re.findall(r"\{\w+\}", en[key])) == set(re.findall(r"\{\w+\}", ca[key])), key


def test_language_from_accept_language(client: httpx.Client) -> None:
    ca = client.get("/", headers={"Accept-Language": "ca-ES,ca;q=0.9,en;q=0.8"})
    assert '<html lang="ca">' in ca.text and "Tens un codi" in ca.text
    en = client.get("/", headers={"Accept-Language": "fr-FR, en;q=0.5, ca;q=0.4"})
    assert '<html lang="en">' in en.text
    forced = client.get("/?lang=ca", headers={"Accept-Language": "en"})
    assert '<html lang="ca">' in forced.text


def _check(page: Page, name: str, problems: list[str], full_page: bool = True) -> None:
    screenshot(page, name, full_page=full_page)
    found = serious_violations(page)
    assert found == [], (name, [(v["id"], v["nodes"][:3], len(v["nodes"])) for v in found])
    assert problems == [], name


def test_every_page_passes_axe_and_is_pictured(client: httpx.Client, gateway: GatewayProcess,
                                               make_user, person) -> None:
    inviter, invitee = make_user("Aina Ferrer"), make_user("Pau Vidal")
    group = client.post("/rest/v1/rpc/create_group", headers=inviter.headers,
                        json={"name": "Padel dels dijous"}).json()
    group_code = client.post("/rest/v1/rpc/create_group_invite", headers=inviter.headers,
                             json={"group_id": group["id"]}).json()["code"]
    base = gateway.url

    for width, viewport in (("", None), ("-phone", PHONE)):
        # The dialog below makes a new code, which revokes this one: one event per round.
        event_id = make_event(client, inviter, title="Open de primavera")
        invite = code_invite(client, inviter, event_id)
        visitor = person(viewport=viewport)
        page = visitor.open(f"{base}/")
        page.locator("#session").wait_for(state="attached")
        _check(page, f"index{width}", visitor.problems)

        page = visitor.open(f"{base}/docs")
        page.locator(".swagger-ui .opblock").first.wait_for(timeout=20_000)
        assert page.locator(".swagger-ui .opblock").count() > 20
        _check(page, f"docs{width}", visitor.problems, full_page=False)

        page = visitor.open(f"{base}/invite/accept?code={invite['short_code']}")
        page.get_by_text("Sign in to see this and answer it.").wait_for()
        _check(page, f"accept-signed-out{width}", visitor.problems)

        page = visitor.open(f"{base}/invite/stop?token=sometoken")
        page.get_by_role("button", name="Stop invitations to this address").wait_for()
        _check(page, f"stop{width}", visitor.problems)

        guest = person(viewport=viewport)
        page = guest.open(signed_in(f"{base}/invite/accept?code={invite['short_code']}", invitee))
        page.get_by_role("button", name="Accept").wait_for()
        _check(page, f"accept-preview{width}", guest.problems)

        page = guest.open(signed_in(f"{base}/join?code={group_code}", invitee))
        page.get_by_role("button", name="Join the group").wait_for()
        _check(page, f"join-preview{width}", guest.problems)

        host = person(viewport=viewport)
        page = host.open(signed_in(f"{base}/events/{event_id}", inviter))
        page.locator("#sent li[data-status]").first.wait_for()
        _check(page, f"event{width}", host.problems)
        page.get_by_role("button", name="Register with a partner").click()
        page.get_by_role("button", name="Make a code to share").click()
        page.locator("#share-code").filter(has_text=re.compile(r"\w{8}")).wait_for()
        page.get_by_role("button", name="Copy").click()
        page.get_by_text("Copied.").wait_for()
        _check(page, f"event-dialog{width}", host.problems)

        page = host.open(f"{base}/events/not-an-event")
        page.get_by_role("heading", name="Page not found").wait_for()
        # The only problem the console reports is the page's own 404 status.
        assert host.problems == ["console: Failed to load resource: the server responded "
                                 "with a status of 404 (Not Found)"]
        _check(page, f"not-found{width}", [])


def test_dev_sign_in_is_absent_without_the_development_secret(
        client: httpx.Client, admin, gateway: GatewayProcess) -> None:
    before = admin.execute("select count(*) from auth.users").fetchone()
    assert client.get("/dev/sign-in").status_code == 404
    response = client.post("/dev/sign-in", data={"email": "intruder@example.com",
                                                 "redirect_to": "/"})
    assert response.status_code == 404
    assert "location" not in response.headers and "access_token" not in response.text
    assert admin.execute("select count(*) from auth.users").fetchone() == before
    index = client.get("/").text
    assert "/dev/sign-in" not in index and 'id="dev-heading"' not in index


def test_dev_sign_in_refuses_with_another_secret_even_if_asked(
        database_url: str, tmp_path: Path) -> None:
    """A JWKS-only gateway (no shared secret) has no development sign-in either."""
    jwks = json.dumps({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256",
                                 "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0"}]})
    proc = start_gateway(database_url, tmp_path / "gateway.log", JWT_SECRET="", JWT_JWKS=jwks)
    try:
        with httpx.Client(base_url=proc.url) as http:
            assert http.get("/dev/sign-in").status_code == 404
            assert http.post("/dev/sign-in", data={"email": "a@example.com"}).status_code == 404
    finally:
        stop_gateway(proc)


def test_dev_sign_in_with_the_development_secret(dev_site: GatewayProcess, admin,
                                                 person) -> None:
    email = f"dev-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=dev_site.url) as http:
        # Anywhere but this site becomes "/"; a cross-site form is refused.
        response = http.post("/dev/sign-in", data={
            "email": email, "display_name": "Dana Dev", "redirect_to": "https://evil.example/x"})
        assert response.status_code == 303
        location = response.headers["location"]
        assert location.startswith("/#access_token=")
        token = urllib.parse.parse_qs(location.split("#", 1)[1])["access_token"][0]
        claims = jwt.decode(token, DEV_JWT_SECRET, algorithms=["HS256"])
        row = admin.execute("select id::text from auth.users where email = %s", (email,)).fetchone()
        assert row is not None and claims["sub"] == row[0] and claims["email"] == email
        assert claims["role"] == "authenticated"
        assert http.post("/dev/sign-in", data={"email": email},
                         headers={"Origin": "https://evil.example"}).status_code == 403

    # In the browser: pick the user just made, come back signed in, make an event.
    visitor = person()
    page = visitor.open(f"{dev_site.url}/")
    page.get_by_role("link", name="Development sign-in").click()
    page.get_by_role("button", name="Sign in as Dana Dev").first.wait_for()
    _check(page, "dev-sign-in", visitor.problems)
    page.get_by_role("button", name="Sign in as Dana Dev").first.click()
    page.get_by_text(f"Signed in as {email}").wait_for()
    assert page.url == f"{dev_site.url}/"  # the token left the address bar
    page.get_by_label("Title").fill("Dev cup")
    _check(page, "index-dev", visitor.problems)
    page.get_by_role("button", name="Create the event").click()
    page.get_by_role("heading", name="Dev cup").wait_for()
    assert re.fullmatch(rf"{dev_site.url}/events/[0-9a-f-]{{36}}", page.url)
    assert visitor.problems == []


def test_api_explorer_tries_a_call(gateway: GatewayProcess, person) -> None:
    visitor = person()
    page = visitor.open(f"{gateway.url}/docs")
    page.locator(".opblock-summary", has_text="/healthz").first.click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    status = page.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    assert '"database": true' in page.locator(".live-responses-table tbody").inner_text()
    assert visitor.problems == []


def test_dev_sign_in_returns_only_to_this_site() -> None:
    from gateway.pages.devsignin import safe_redirect

    assert safe_redirect("/invite/accept?code=AB12") == "/invite/accept?code=AB12"
    assert safe_redirect("/events/1#access_token=old") == "/events/1"
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example",
                   "javascript:alert(1)", "evil.example", "", "http:/x"):
        assert safe_redirect(target) == "/", target
