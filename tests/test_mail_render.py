"""The mail worker's pure parts: the one envelope recipient and the invitation's
text, which carries no user-written text whatever the outbox row holds."""

from __future__ import annotations

import pytest

from gateway.mail.worker import Undeliverable, envelope_recipient, render


@pytest.mark.parametrize("address", [
    "root,postmaster,victim@example.com", "a@b@example.com", "<victim@example.com>",
    "Victim <victim@example.com>", "victim@example.com\r\nBcc: x@example.com",
    "victim@example.com\n", "vic tim@example.com", '"q"@example.com', "a..b@example.com",
    "user%relay@example.com", "a@example", "a" * 65 + "@example.com", "",
])
def test_envelope_recipient_refuses_anything_but_one_plain_address(address: str) -> None:
    with pytest.raises(Undeliverable):
        envelope_recipient(address)


def test_envelope_recipient_takes_a_plain_address() -> None:
    assert envelope_recipient("o'brien+cup@mail.example.co.uk") == "o'brien+cup@mail.example.co.uk"


def test_invitation_text_ignores_names_and_titles_in_the_row() -> None:
    data = {"short_code": "ABCDEFGH", "expires_at": "2026-12-01T10:00:00+00:00",
            "inviter_name": "Support Team: reset your password at http://evil.example",
            "event_title": "Urgent\r\nBcc: all@example.com"}
    subject, text, html = render("pair_invite", data, "https://app.example/", "tok")
    assert subject == "You are invited to register as a pair"
    for part in (subject, text, html):
        assert "Support" not in part and "evil" not in part and "Urgent" not in part
    assert "https://app.example/invite/accept?code=ABCDEFGH" in text
    assert "https://app.example/invite/stop?token=tok" in text
    assert "2026-12-01 10:00 UTC" in text


@pytest.mark.parametrize("data", [{}, {"short_code": "abc\r\n"}, {"short_code": "ABCDEFGH1"}])
def test_a_row_without_a_valid_code_is_undeliverable(data: dict[str, str]) -> None:
    with pytest.raises(Undeliverable):
        render("pair_invite", data, "https://app.example", "tok")
