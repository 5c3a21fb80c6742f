"""Small findings of the security review (issue 18, item 5): no slash redirect that
reflects the Host header, format characters (Unicode Cf) refused in names and
titles, and a clear error for an audit retention of zero days."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
import uuid

import httpx
import psycopg
import pytest

from conftest import ROOT

# Unicode category Cf as Python knows it, but the joiners (ZWJ, ZWNJ), which are
# allowed between two characters that are neither ASCII nor space.
JOINERS = {0x200C, 0x200D}
FORMAT_CHARACTERS = [chr(c) for c in range(sys.maxunicode + 1)
                     if unicodedata.category(chr(c)) == "Cf" and c not in JOINERS]


def test_a_trailing_slash_is_not_redirected_to_the_host_header(client: httpx.Client) -> None:
    answer = client.get("/join/?code=abc", headers={"Host": "attacker.example"})
    assert answer.status_code == 404
    assert "location" not in answer.headers
    assert "attacker.example" not in answer.text
    assert client.get("/join?code=abc").status_code == 200  # the page itself is there


@pytest.mark.parametrize(("function", "argument", "message"), [
    ("update_profile", "display_name",
     "display_name must not contain line breaks or other control characters."),
    ("create_group", "name", "name must not contain line breaks or other control characters."),
    ("create_event", "title", "title must not contain line breaks or other control characters."),
])
def test_format_characters_are_refused_in_names_and_titles(
        client: httpx.Client, make_user, function: str, argument: str, message: str) -> None:
    user = make_user()
    for value in ("Eve\u200bil", "Ann\u202egnp.exe", "a\u2066b\u2069", "\ufeffBOM", "Tag\U000e0041",
                  "soft\u00adhyphen", "Al\u200dice", "Bob\u200c", "\u200dCarol"):
        answer = client.post(f"/rest/v1/rpc/{function}", json={argument: value},
                             headers=user.headers)
        assert answer.status_code == 400, (value, answer.text)
        assert answer.json() == {"code": "22023", "message": message, "details": None,
                                 "hint": None}
    # Joiners inside emoji sequences and words that need them are text.
    for value in ("\U0001f469\u200d\U0001f4bb Dev", "\u0645\u06cc\u200c\u0634\u0648\u062f"):
        answer = client.post(f"/rest/v1/rpc/{function}", json={argument: value},
                             headers=user.headers)
        assert answer.status_code == 200, (value, answer.text)


def test_every_format_character_is_named_once(admin: psycopg.Connection) -> None:
    missed = admin.execute(
        "select array_agg(to_hex(ascii(c))) from unnest(%s::text[]) c "
        "where not app.has_control_chars('a' || c || 'b')", (FORMAT_CHARACTERS,)).fetchone()
    assert missed == (None,)
    plain = admin.execute(
        "select array_agg(c) from unnest(%s::text[]) c where app.has_control_chars(c)",
        (["Zoë", "العربية", "日本語", "\U0001f3f3\ufe0f\u200d\U0001f308", "x y-z"],)).fetchone()
    assert plain == (None,)
    # The tables' check constraints hold the same pattern: even a superuser's
    # rows are checked.
    user_id = admin.execute("select id from auth.users limit 1").fetchone()[0]
    for statement, value in (
            ("insert into app.groups (name, creator_id) values (%s, %s)", "zero\u200bwidth"),
            ("insert into app.events (title, creator_id) values (%s, %s)", "tag\U000e0041"),
            ("update app.profiles set display_name = %s where id = %s", "mark\u061c")):
        with pytest.raises(psycopg.errors.CheckViolation):
            admin.execute(statement, (value, user_id))
    # A new account's name is cleaned instead (an account is never refused).
    email = f"cf-{uuid.uuid4().hex[:12]}@example.com"
    admin.execute("insert into auth.users (email, raw_user_meta_data) values (%s, %s)",
                  (email, psycopg.types.json.Jsonb({"display_name": "Mallory\u202e evil"})))
    profile = admin.execute("select p.display_name from app.profiles p join auth.users u "
                            "on u.id = p.id where u.email = %s", (email,)).fetchone()
    assert profile == ("Mallory evil",)


def run_prune(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items()
                   if key != "AUDIT_RETENTION_DAYS"}
    environment.update(DATABASE_URL=database_url, **env)
    return subprocess.run([sys.executable, "-m", "gateway", "audit-prune", *args], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=60)


def test_a_retention_of_zero_days_is_refused_clearly(database_url: str) -> None:
    done = run_prune(database_url, AUDIT_RETENTION_DAYS="0")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == ("python -m gateway: AUDIT_RETENTION_DAYS must be a whole number of "
                           "days, at least 1, not '0'\n")
    for days in ("0", "-3"):
        done = run_prune(database_url, "--older-than-days", days)
        assert done.returncode == 2
        assert done.stdout == ""
        assert done.stderr.splitlines()[-1] == (
            f"python -m gateway: error: --older-than-days must be at least 1, "
            f"not {days}")
        assert "Traceback" not in done.stderr
