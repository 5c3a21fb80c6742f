"""A token in the address bar (`#access_token=…`, as a Supabase Auth redirect
gives it) and the session already in the browser, in a real Chromium: a link
carrying someone else's token replaces the session only after the person says
so, with both accounts named; a sign-in the page itself started (its nonce comes
back as `state`) needs no question."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from browser import screenshot, serious_violations, signed_in
from conftest import start_gateway, stop_gateway
from gateway.jwt_auth import mint
from gateway.settings import DEV_JWT_SECRET

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from browser import Person
    from conftest import GatewayProcess, User

# Where supabase-js keeps a session (any sb-<ref>-auth-token key), and where the
# pages write one (sb-<first label of the host>-auth-token: 127.0.0.1 gives sb-127).
SUPABASE_KEY = "sb-abcdefghijklmnop-auth-token"
PAGE_KEY = "sb-127-auth-token"


@pytest.fixture(scope="module")
def dev_site(database_url: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[GatewayProcess]:
    """A gateway with the development secret and so the development sign-in (its
    SIGN_IN_URL), as `make run` starts it."""
    proc = start_gateway(database_url, tmp_path_factory.mktemp("session") / "gateway.log",
                         JWT_SECRET=DEV_JWT_SECRET, JOINERY_ENV="development")
    yield proc
    stop_gateway(proc)


def dev_user(user: User) -> User:
    """The same person with a token the development gateway accepts."""
    return dataclasses.replace(user, token=mint(DEV_JWT_SECRET, user.id, email=user.email))


def keep_session(page: Page, user: User) -> None:
    """Signed in as supabase-js keeps a session: a JSON object in localStorage."""
    page.evaluate("([key, session]) => localStorage.setItem(key, JSON.stringify(session))", [
        SUPABASE_KEY, {"access_token": user.token, "token_type": "bearer", "expires_in": 3600,
                       "refresh_token": "r", "user": {"id": user.id, "email": user.email}}])


def follow(visitor: Person, url: str) -> Page:
    """Open a link as a new document (from the same page, a link that differs only
    in its fragment would not load the page again)."""
    visitor.open("about:blank")
    return visitor.open(url)


def stored_tokens(page: Page) -> dict[str, Any]:
    raw = page.evaluate("""() => Object.fromEntries(Object.keys(localStorage)
        .filter((k) => /^sb-.+-auth-token$/.test(k))
        .map((k) => [k, localStorage.getItem(k)]))""")
    return {key: json.loads(value)["access_token"] for key, value in raw.items()}


def test_a_link_asks_before_replacing_another_session(dev_site: GatewayProcess, make_user,
                                                      person) -> None:
    me = dev_user(make_user("Mia Held"))
    other = dev_user(make_user("Otto Link"))
    visitor = person()
    page = visitor.open(f"{dev_site.url}/")
    keep_session(page, me)

    # Someone else's token in a link: asked, naming both accounts.
    page = follow(visitor, signed_in(f"{dev_site.url}/", other))
    prompt = page.get_by_role("alertdialog", name="Switch accounts?")
    prompt.wait_for()
    assert page.url == f"{dev_site.url}/"  # the token left the address bar at once
    assert [line for line in prompt.inner_text().split("\n") if line] == [
        "Switch accounts?",
        f"You are signed in as {me.email}. The link you opened would sign you in as "
        f"{other.email} instead.",
        f"Switch only if you asked to sign in as {other.email}: anyone can send a link that "
        "signs you in to their account, and what you then do would be theirs.",
        f"Stay signed in as {me.email} Switch to {other.email}",
    ]
    # Nothing changed while the question is open.
    assert stored_tokens(page) == {SUPABASE_KEY: me.token}
    assert page.evaluate("document.activeElement.id") == "switch-heading"
    assert serious_violations(page) == []
    screenshot(page, "session-switch", full_page=False)

    # Staying: the session is the one held before; the link's token is dropped.
    page.get_by_role("button", name=f"Stay signed in as {me.email}").click()
    page.get_by_text(f"Signed in as {me.email}").wait_for()
    assert page.get_by_role("alertdialog").count() == 0
    assert stored_tokens(page) == {SUPABASE_KEY: me.token}

    # Switching: the link's account becomes the session.
    page = follow(visitor, signed_in(f"{dev_site.url}/", other))
    page.get_by_role("button", name=f"Switch to {other.email}").click()
    page.get_by_text(f"Signed in as {other.email}").wait_for()
    assert stored_tokens(page) == {SUPABASE_KEY: me.token, PAGE_KEY: other.token}

    # The same account with a new token, or no session at all: no question.
    fresh = dataclasses.replace(other, token=mint(DEV_JWT_SECRET, other.id, email=other.email,
                                                  expires_in=7200))
    page = follow(visitor, signed_in(f"{dev_site.url}/", fresh))
    page.get_by_text(f"Signed in as {other.email}").wait_for()
    assert page.get_by_role("alertdialog").count() == 0
    assert stored_tokens(page)[PAGE_KEY] == fresh.token
    newcomer = person()
    page = follow(newcomer, signed_in(f"{dev_site.url}/", other))
    page.get_by_text(f"Signed in as {other.email}").wait_for()
    assert page.get_by_role("alertdialog").count() == 0
    assert visitor.problems == [] and newcomer.problems == []


def test_a_sign_in_the_page_started_needs_no_question(dev_site: GatewayProcess, make_user,
                                                      person) -> None:
    held = dev_user(make_user("Hal Elsewhere"))
    chosen = dev_user(make_user("Cleo Chosen"))
    visitor = person()
    page = visitor.open(f"{dev_site.url}/")
    link = page.locator("#session a#sign-in")
    href = link.get_attribute("href")
    assert href is not None
    assert re.fullmatch(r"/dev/sign-in\?redirect_to=%2F&state=[0-9a-f]{32}", href), href
    state = href.rsplit("=", 1)[1]
    link.click()
    page.get_by_role("button", name="Sign in as Cleo Chosen").first.wait_for()
    # Meanwhile another tab signed in as someone else.
    keep_session(page, held)
    page.get_by_role("button", name="Sign in as Cleo Chosen").first.click()
    # Back with the token and the page's own nonce: switched without a question.
    page.get_by_text(f"Signed in as {chosen.email}").wait_for()
    assert page.url == f"{dev_site.url}/"
    assert page.get_by_role("alertdialog").count() == 0
    assert stored_tokens(page)[SUPABASE_KEY] == held.token
    assert page.evaluate("localStorage.getItem('joinery-sign-in-state')") is None  # used once

    # The nonce is good once: the same state again (or a made-up one) is asked about.
    for given in (state, "0" * 32):
        page = visitor.open(f"{dev_site.url}/")
        page.evaluate(f"localStorage.removeItem('{PAGE_KEY}')")
        page = follow(visitor, signed_in(f"{dev_site.url}/", chosen) + f"&state={given}")
        page.get_by_role("alertdialog", name="Switch accounts?").wait_for()
        page.get_by_role("button", name=f"Stay signed in as {held.email}").click()
        page.get_by_text(f"Signed in as {held.email}").wait_for()
    assert visitor.problems == []
