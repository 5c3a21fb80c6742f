"""Invitation mail in English and Catalan, plain text and HTML.

The database picks the language when it queues a message (`data.locale`: the
invitee's profile language when the address belongs to an account, else the
inviter's language at invite time, else English; see private.mail_locale) and
this module writes the message in it. No user-written text goes in: names and
titles are free text anyone can choose, and this mail goes to addresses that
asked for nothing; who invites, and to what, shows on the page behind the
link, to the signed-in recipient."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

LANGUAGES = ("en", "ca")
TEMPLATES = ("pair_invite", "pair_invite_reminder")
_SHORT_CODE = re.compile(r"[2-9A-HJKMNP-Z]{8}")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "pair_invite.subject": "You are invited to register as a pair",
        "pair_invite.lead": "Someone invites you to register together with them for an event.",
        "pair_invite_reminder.subject": "Reminder: your invitation to register as a pair",
        "pair_invite_reminder.lead": (
            "A reminder: someone invited you to register together with them for an event, "
            "and the invitation expires soon."),
        "code": "Your code: {code}",
        "link": "See who invites you, then accept or decline",
        "expires": "The invitation expires at {when} UTC.",
        "ignore": "If you did not expect it, ignore this message.",
        "stop": "To get no more invitations at this address: {stop}",
        "stop_link": "Get no more invitations at this address",
    },
    "ca": {
        "pair_invite.subject": "Et conviden a inscriure't en parella",
        "pair_invite.lead": "Algú et convida a inscriure't amb ell o ella a un esdeveniment.",
        "pair_invite_reminder.subject": "Recordatori: et conviden a inscriure't en parella",
        "pair_invite_reminder.lead": (
            "Un recordatori: algú et va convidar a inscriure't amb ell o ella a un "
            "esdeveniment, i la invitació caduca aviat."),
        "code": "El teu codi: {code}",
        "link": "Mira qui et convida i accepta o rebutja la invitació",
        "expires": "La invitació caduca el {when} UTC.",
        "ignore": "Si no l'esperaves, no en facis cas.",
        "stop": "Per no rebre més invitacions en aquesta adreça: {stop}",
        "stop_link": "No rebre més invitacions en aquesta adreça",
    },
}


class Undeliverable(ValueError):
    """A message that can never be built or sent: marked failed at once."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    lang: str  # the Content-Language of the message
    stop_url: str  # the List-Unsubscribe target (RFC 8058 one-click POST)


def stop_link(app_url: str, token: str) -> str:
    """The link in every invitation message that stops invitations to its address."""
    return f"{app_url.rstrip('/')}/invite/stop?{urlencode({'token': token})}"


def language(data: dict[str, Any]) -> str:
    lang = data.get("locale")
    return lang if isinstance(lang, str) and lang in LANGUAGES else "en"


def render_message(template: str, data: dict[str, Any], app_url: str,
                   stop_token: str | None) -> Rendered:
    """The message of an outbox row, in the language the row names."""
    if template not in TEMPLATES:
        raise Undeliverable(f"unknown mail template {template!r}")
    if not stop_token:
        raise ValueError("an invitation needs a stop token")
    code = str(data.get("short_code", ""))
    if not _SHORT_CODE.fullmatch(code):
        raise Undeliverable("the message has no valid short code")
    lang = language(data)
    t = TEXT[lang]
    # The page behind the link speaks the message's language too.
    query = {"code": code, **({"lang": lang} if lang != "en" else {})}
    link = f"{app_url.rstrip('/')}/invite/accept?{urlencode(query)}"
    stop = stop_link(app_url, stop_token)
    try:
        expires = datetime.fromisoformat(str(data["expires_at"])).astimezone(UTC)
        when = t["expires"].format(when=f"{expires:%Y-%m-%d %H:%M}") + " "
    except (KeyError, ValueError):
        when = ""
    lead = t[f"{template}.lead"]
    text = (
        f"{lead}\n\n"
        f"{t['code'].format(code=code)}\n\n{t['link']}: {link}\n\n"
        f"{when}{t['ignore']}\n\n"
        f"{t['stop'].format(stop=stop)}\n"
    )
    e = html.escape
    body = (
        f"<p>{e(lead)}</p>"
        f"<p>{e(t['code']).replace('{code}', _code_html(code))}</p>"
        f"<p><a href=\"{e(link)}\">{e(t['link'])}</a></p>"
        f"<p>{e(when)}{e(t['ignore'])}</p>"
        f"<p><a href=\"{e(stop)}\">{e(t['stop_link'])}</a></p>"
    )
    return Rendered(t[f"{template}.subject"], text, body, lang, stop)


def _code_html(code: str) -> str:
    return f"<strong style=\"font-family:monospace\">{html.escape(code)}</strong>"
