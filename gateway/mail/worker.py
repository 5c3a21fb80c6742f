"""The mail worker: delivers the outbox (app.mail_outbox) over SMTP.

The database decides what to send and when to retry (private.mail_claim,
private.mail_sent, private.mail_failed); this module renders the message and
speaks SMTP. A message is leased, not held locked: one short transaction claims
it (locked_until = now() + 5 minutes, FOR UPDATE SKIP LOCKED) and commits,
it is sent with no transaction open (no xmin pinned, no connection held in a
transaction while a slow SMTP server answers), then a second short transaction
marks it sent or failed. Several workers never send one message twice while its
lease runs. Delivery is at least once: a worker that dies between the SMTP
server's acceptance and its mark leaves the message to be sent again once the
lease has run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.rows import dict_row

from .templates import TEMPLATES, Undeliverable, render_message, stop_link

__all__ = ["Mailer", "SmtpTarget", "Undeliverable", "envelope_recipient", "render", "stop_link"]

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


# One plain address: the same rule as private.is_single_email in SQL.
_ATOM = r"[A-Za-z0-9#$&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")


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
    """(subject, text, html) of an outbox message (see templates.render_message)."""
    message = render_message(template, data, app_url, stop_token)
    return message.subject, message.text, message.html


class Mailer:
    def __init__(self, conninfo: str, smtp_url: str, mail_from: str, app_url: str,
                 poll_seconds: float = 5.0, max_backoff: int = 300,
                 max_attempts: int = 8, reminder_before: int = 86400) -> None:
        self.conninfo = conninfo
        self.smtp = SmtpTarget.parse(smtp_url)
        self.mail_from = mail_from
        self.app_url = app_url
        self.poll_seconds = poll_seconds
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        self.reminder_before = reminder_before  # INVITE_REMINDER_BEFORE, seconds
        self._reminders_at = 0.0  # monotonic time of the last reminder pass
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
                        await self.queue_reminders(conn)
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

    async def queue_reminders(self, conn: psycopg.AsyncConnection, force: bool = False) -> int:
        """Queues the reminders that are due (private.queue_due_reminders), at most
        once per poll interval; any number of workers may do it at once."""
        now = time.monotonic()
        if not force and now - self._reminders_at < self.poll_seconds:
            return 0
        self._reminders_at = now
        async with conn.transaction():
            # set_config, not SET LOCAL ROLE: on a Citus coordinator a SET LOCAL is
            # carried to the workers (citus.propagate_set_commands = local), where
            # the function's reads of the invites' shards would then run as
            # service_role instead of as its owner (42501).
            await conn.execute("select set_config('role', 'service_role', true)")
            row = await (await conn.execute("select private.queue_due_reminders(%s)",
                                            (self.reminder_before,))).fetchone()
        queued = int(row[0]) if row else 0
        if queued:
            log.info("mailer: queued %d reminder(s)", queued)
        return queued

    async def send_one(self, conn: psycopg.AsyncConnection) -> bool:
        """Leases, sends and marks one due message; False when none is due. No
        transaction is open while the message is sent."""
        async with conn.transaction():
            await conn.execute("set local role service_role")
            cur = conn.cursor(row_factory=dict_row)
            message = await (await cur.execute("select * from private.mail_claim()")).fetchone()
            if message is None:
                return False
            stop_token = None
            if message["template"] in TEMPLATES and is_plain_address(message["to_email"]):
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
            async with conn.transaction():
                await conn.execute("set local role service_role")
                await conn.execute("select private.mail_failed(%s, %s, %s, %s, %s)",
                                   (message["id"], error, self.max_backoff, self.max_attempts,
                                    permanent))
        else:
            async with conn.transaction():
                await conn.execute("set local role service_role")
                await conn.execute("select private.mail_sent(%s)", (message["id"],))
            log.info("mailer: sent %s", message["id"])
        return True

    def deliver(self, message: dict[str, Any], stop_token: str | None = None) -> None:
        recipient = envelope_recipient(message["to_email"])
        rendered = render_message(message["template"], message["data"], self.app_url,
                                  stop_token)
        mail = EmailMessage()
        mail["From"] = self.mail_from
        mail["To"] = recipient
        mail["Subject"] = rendered.subject
        mail["Message-ID"] = f"<{message['id']}@joinery>"
        # RFC 8058: a mail client stops invitations with one POST to the stop link.
        mail["List-Unsubscribe"] = f"<{rendered.stop_url}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mail.set_content(rendered.text)
        mail.add_alternative(rendered.html, subtype="html")
        # After the content: setting the content clears every Content-* header.
        mail["Content-Language"] = rendered.lang
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
