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
