"""The reason table's documentation lists every reason with its side (the README and the module
docstring are what analysts read), and the kinds follow from the reasons as issue 15 says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from newsletter_kit import reasons
from newsletter_kit.bounces import HARD, POLICY, SOFT
from newsletter_kit.bounces.meaning import kind_of

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("name", list(reasons.REASONS))
def test_every_reason_is_documented_with_its_side(name: str) -> None:
    side = reasons.REASONS[name].side
    assert re.search(rf"^{name}\s+{side}\b", reasons.__doc__ or "", re.MULTILINE), name
    assert re.search(rf"^\| `{name}` \| {side} \|", README.read_text(), re.MULTILINE), name


@pytest.mark.parametrize("name", list(reasons.REASONS))
def test_sender_side_reasons_have_a_remedy_and_are_never_hard_or_soft(name: str) -> None:
    reason = reasons.REASONS[name]
    if reason.side == reasons.SENDER:
        assert reason.remedy and kind_of(name) is POLICY
    elif reason.side == reasons.RECIPIENT:
        assert kind_of(name, 550) is (HARD if reason.hard else SOFT)


def test_words_decide_over_codes() -> None:
    assert reasons.classify("5.1.1", 550, "550 5.1.1 blocked using zen.spamhaus.org") == "blocked"
    assert reasons.classify("5.1.8", 553, "553 5.1.8 <news@example.org>: Sender address rejected: Domain not found") == "sender_rejected"
    assert reasons.classify("5.2.2", 552, "") == "mailbox_full"
    assert reasons.classify("4.7.1", 450, "450 4.7.1 Client host rejected: cannot find your hostname") == "no_ptr"
    assert reasons.classify(None, 550, "550 5.7.26 Multiple authentication checks failed") == "auth_failure"
    assert reasons.classify(None, None, "") == "undefined"


def test_a_person_writing_failure_words_is_not_a_bounce() -> None:
    from newsletter_kit.bounces import parse_bounce

    raw = (b"From: Anna <anna@example.org>\nTo: news@example.com\nSubject: my order\n\n"
           b"Hello, the parcel could not be delivered to:\n\nmario@example.net\n\nCan you check? Anna\n")
    report = parse_bounce(raw)
    assert not report.is_bounce and report.recipients == []
    # The same words from a machine (null envelope sender) are a notice.
    notice = parse_bounce(b"Return-Path: <>\nFrom: no-reply@mail.example.net\nSubject: Mail\n\n"
                          b"Could not be delivered to: <mario@example.net>\nAs their mailbox is full.\n")
    assert [(r.address, r.reason, r.kind.value) for r in notice.recipients] == [("mario@example.net", "mailbox_full", "soft")]


# Replies as big providers and common MTAs word them (written from their documented formats).
WORDED = {
    "550 5.2.1 The email account that you tried to reach is disabled": "suspended",
    "554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain": "host_unknown",
    "551 User not local; please try <a@example.org>": "has_moved",
    "Your message to x couldn't be delivered. x wasn't found at example.com.": "user_unknown",
    "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service "
    "provider since part of their network is on our block list (S3150)": "blocked",
    "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to user complaints": "bad_reputation",
    "550 5.7.350 Remote server returned message detected as spam": "spam_detected",
    "552 5.2.2 The email account that you tried to reach is over quota": "mailbox_full",
    "550 5.1.1 The email account that you tried to reach does not exist": "user_unknown",
    "554 5.7.5 Permanent error evaluating DMARC policy": "auth_failure",
    "550 Requested action not taken: mailbox unavailable": "user_unknown",
    "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup": "user_unknown",
    "530 5.7.0 Must issue a STARTTLS command first": "tls_required",
    "530 5.7.1 Authentication required": "security_error",
    "553 5.7.1 <a@example.org>: Sender address rejected: not owned by user": "sender_rejected",
    "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]": "no_ptr",
    "554 5.7.1 <a@example.org>: Relay access denied": "relaying_denied",
    "552 5.3.4 Message size exceeds fixed maximum message size": "message_too_big",
    "550 5.1.2 Host unknown (Name server: example.com: host not found)": "host_unknown",
    "452 4.2.2 Mailbox unavailable, over quota": "mailbox_full",
    "554 5.4.14 Hop count exceeded - possible mail loop": "network_error",
}


@pytest.mark.parametrize("text, reason", list(WORDED.items()))
def test_provider_wording(text: str, reason: str) -> None:
    assert reasons.classify(None, None, text) == reason
