"""The mail worker: delivers the outbox (app.mail_outbox) over SMTP.

The database decides what to send and when to retry (private.mail_claim,
private.mail_sent, private.mail_failed); this module renders the message and
speaks SMTP. One message per transaction: the row stays locked (FOR UPDATE SKIP
LOCKED) while it is sent, so several workers never send one message twice.
Delivery is at least once: a worker that dies between the SMTP server's
acceptance and its commit leaves the message to be sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import psycopg
from psycopg.rows import dict_row

log = logging.getLogger("joinery.mailer")
CHANNEL = "joinery_mail"


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    tls: str  # "none", "starttls" or "ssl"
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        """smtp://[user:pass@]host[:port], smtp+starttls://..., smtps://..."""
        parts = urlsplit(url)
        tls = {"smtp": "none", "smtp+starttls": "starttls", "smtps": "ssl"}.get(parts.scheme)
        if tls is None or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://host:port, smtp+starttls:// or smtps://")
        default_port = {"none": 25, "starttls": 587, "ssl": 465}[tls]
        return cls(parts.hostname, parts.port or default_port, tls,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)


def stop_link(app_url: str, token: str) -> str:
    """The link in every invitation message that stops invitations to its address."""
    return f"{app_url.rstrip('/')}/invite/stop?{urlencode({'token': token})}"


# One plain address: the same rule as private.is_single_email in SQL.
_ATOM = r"[A-Za-z0-9#$&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")
_SHORT_CODE = re.compile(r"[2-9A-HJKMNP-Z]{8}")


class Undeliverable(ValueError):
    """A message that can never be built or sent: marked failed at once."""


def is_plain_address(address: object) -> bool:
    """Exactly one plain address (the rule of private.is_single_email)."""
    return (isinstance(address, str) and len(address) <= 254
            and _ADDRESS.fullmatch(address) is not None and len(address.split("@")[0]) <= 64)


def envelope_recipient(address: str) -> str:
    """The one envelope recipient of a message, or Undeliverable: never a list,
    never anything a mail server could read as several addresses."""
    if not is_plain_address(address):
        raise Undeliverable("the recipient is not exactly one plain address")
    return address


def render(template: str, data: dict[str, Any], app_url: str,
           stop_token: str | None = None) -> tuple[str, str, str]:
    """(subject, text, html) of an outbox message. Invitations carry a stop link
    (`stop_token`, made as the message is sent). No user-written text goes in:
    names and titles are free text anyone can choose, and this mail goes to
    addresses that asked for nothing; who invites, and to what, shows on the
    page behind the link, to the signed-in recipient."""
    if template != "pair_invite":
        raise Undeliverable(f"unknown mail template {template!r}")
    if not stop_token:
        raise ValueError("an invitation needs a stop token")
    code = str(data.get("short_code", ""))
    if not _SHORT_CODE.fullmatch(code):
        raise Undeliverable("the message has no valid short code")
    link = f"{app_url.rstrip('/')}/invite/accept?{urlencode({'code': code})}"
    stop = stop_link(app_url, stop_token)
    try:
        expires = datetime.fromisoformat(str(data["expires_at"])).astimezone(UTC)
        when = f"The invitation expires at {expires:%Y-%m-%d %H:%M} UTC. "
    except (KeyError, ValueError):
        when = ""
    subject = "You are invited to register as a pair"
    text = (
        "Someone invites you to register together with them for an event.\n\n"
        f"Your code: {code}\n\nSee who invites you, then accept or decline: {link}\n\n"
        f"{when}If you did not expect it, ignore this message.\n\n"
        f"To get no more invitations at this address: {stop}\n"
    )
    e = html.escape
    body = (
        "<p>Someone invites you to register together with them for an event.</p>"
        f"<p>Your code: <strong style=\"font-family:monospace\">{e(code)}</strong></p>"
        f"<p><a href=\"{e(link)}\">See who invites you, then accept or decline</a></p>"
        f"<p>{e(when)}If you did not expect it, ignore this message.</p>"
        f"<p><a href=\"{e(stop)}\">Get no more invitations at this address</a></p>"
    )
    return subject, text, body


class Mailer:
    def __init__(self, conninfo: str, smtp_url: str, mail_from: str, app_url: str,
                 poll_seconds: float = 5.0, max_backoff: int = 300,
                 max_attempts: int = 8) -> None:
        self.conninfo = conninfo
        self.smtp = SmtpTarget.parse(smtp_url)
        self.mail_from = mail_from
        self.app_url = app_url
        self.poll_seconds = poll_seconds
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run_forever(), name="mailer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, connect_timeout=3,
                    application_name="joinery-mailer",
                ) as conn:
                    await conn.execute(f"listen {CHANNEL}")
                    delay = 0.5
                    while True:
                        while await self.send_one(conn):
                            pass
                        # Woken by a new message, or polling for retries that fall due.
                        async for _ in conn.notifies(timeout=self.poll_seconds, stop_after=1):
                            pass
            except asyncio.CancelledError:
                raise
            except psycopg.Error as exc:
                log.warning("mailer: database unavailable (%s); retrying", type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def send_one(self, conn: psycopg.AsyncConnection) -> bool:
        """Claims, sends and marks one due message; False when none is due."""
        async with conn.transaction():
            await conn.execute("set local role service_role")
            cur = conn.cursor(row_factory=dict_row)
            message = await (await cur.execute("select * from private.mail_claim()")).fetchone()
            if message is None:
                return False
            stop_token = None
            if message["template"] == "pair_invite" and is_plain_address(message["to_email"]):
                row = await (await conn.execute("select private.mail_stop_token(%s)",
                                                (message["to_email"],))).fetchone()
                stop_token = row[0] if row else None
            try:
                await asyncio.to_thread(self.deliver, message, stop_token)
            except (OSError, smtplib.SMTPException, ValueError, KeyError) as exc:
                # A message that cannot be built never will be: failed at once. Others
                # are retried until max_attempts.
                permanent = isinstance(exc, ValueError | KeyError)
                log.warning("mailer: delivery of %s failed: %s%s", message["id"],
                            type(exc).__name__, " (permanent)" if permanent else "")
                error = f"{type(exc).__name__}: {exc}"
                await conn.execute("select private.mail_failed(%s, %s, %s, %s, %s)",
                                   (message["id"], error, self.max_backoff, self.max_attempts,
                                    permanent))
            else:
                await conn.execute("select private.mail_sent(%s)", (message["id"],))
                log.info("mailer: sent %s", message["id"])
        return True

    def deliver(self, message: dict[str, Any], stop_token: str | None = None) -> None:
        recipient = envelope_recipient(message["to_email"])
        subject, text, body = render(message["template"], message["data"], self.app_url,
                                     stop_token)
        mail = EmailMessage()
        mail["From"] = self.mail_from
        mail["To"] = recipient
        mail["Subject"] = subject
        mail["Message-ID"] = f"<{message['id']}@joinery>"
        mail.set_content(text)
        mail.add_alternative(body, subtype="html")
        target = self.smtp
        smtp_class = smtplib.SMTP_SSL if target.tls == "ssl" else smtplib.SMTP
        with smtp_class(target.host, target.port, timeout=10) as client:
            if target.tls == "starttls":
                client.starttls(context=ssl.create_default_context())
            if target.username:
                client.login(target.username, target.password or "")
            # The envelope is given explicitly: one recipient, never read from headers.
            client.send_message(mail, from_addr=parseaddr(self.mail_from)[1],
                                to_addrs=[recipient])
