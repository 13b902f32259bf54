"""Issue 15's formats, each as a small hand-written variant (not a corpus file): the class of
notice, read right whatever its names and numbers."""

from __future__ import annotations

import json

from newsletter_kit.bounces import COMPLAINT, DELAYED, HARD, OTHER, POLICY, SOFT, parse_bounce


def _facts(raw: bytes) -> list[tuple[str, str | None, str | None, str]]:
    return [(r.address, r.status, r.reason, r.kind.value) for r in parse_bounce(raw).recipients]


def test_several_recipients_each_with_its_own_reply() -> None:
    raw = (b"From: mailer-daemon@mx.example.net\nTo: news@example.com\nSubject: Undelivered Mail\n\n"
           b"A message that you sent could not be delivered to one or more of its recipients.\n\n"
           b"ann@example.org Invalid Address, ERROR_CODE :550, ERROR_CODE :5.1.1 <ann@example.org>... User Unknown\n"
           b"bob@example.org Invalid Address, ERROR_CODE :552, ERROR_CODE :5.2.2 <bob@example.org>... Mailbox Full\n"
           b"cid@example.org Invalid Address, ERROR_CODE :554, ERROR_CODE :5.7.1 Client host blocked using bl.example\n\n"
           b"Message-ID:<1234.5678@mx.example.com>\nFrom: News <news@example.com>\nTo: <ann@example.org>, <bob@example.org>\n")
    assert _facts(raw) == [
        ("ann@example.org", "5.1.1", "user_unknown", "hard"),
        ("bob@example.org", "5.2.2", "mailbox_full", "soft"),
        ("cid@example.org", "5.7.1", "blocked", "policy"),
    ]


def test_a_message_id_or_our_sender_is_never_a_recipient() -> None:
    raw = (b"From: postmaster@mx.example.net\nTo: news@example.com\nSubject: failure notice\n\n"
           b"<gone@example.org>:\n550 5.1.1 user unknown\n\n"
           b"--- Below this line is a copy of the message.\n\n"
           b"Message-ID: <abc.def@example.com>\nFrom: News <news@example.com>\nTo: gone@example.org\n")
    assert [r.address for r in parse_bounce(raw).recipients] == ["gone@example.org"]


def test_ses_json_bounce_and_complaint() -> None:
    bounce = {"notificationType": "Bounce", "bounce": {"bounceType": "Permanent", "bouncedRecipients": [
        {"emailAddress": "gone@example.org", "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 unknown user"},
        {"emailAddress": "spam@example.org", "action": "failed", "status": "5.7.1", "diagnosticCode": "smtp; 554 5.7.1 rejected as spam"},
    ]}}
    raw = b"From: no-reply@sns.example.com\nSubject: AWS Notification Message\n\n" + json.dumps(bounce).encode() + b"\n\n--\nfooter\n"
    assert _facts(raw) == [("gone@example.org", "5.1.1", "user_unknown", "hard"),
                           ("spam@example.org", "5.7.1", "spam_detected", "policy")]
    complaint = {"notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": "a@example.org"}],
                                                                "complaintFeedbackType": "abuse"}}
    report = parse_bounce(b"Subject: AWS Notification Message\n\n" + json.dumps(complaint).encode())
    assert report.kind is COMPLAINT and report.addresses == ["a@example.org"]
    delivery = parse_bounce(b"Subject: AWS Notification Message\n\n" + json.dumps({"notificationType": "Delivery"}).encode())
    assert delivery.kind is OTHER and not delivery.is_bounce


def test_refusal_of_mail_from_is_about_our_sender() -> None:
    raw = (b"From: Mail Delivery System <Mailer-Daemon@mx.example.net>\nTo: news@example.com\n"
           b"Subject: Mail delivery failed: returning message to sender\n\n"
           b"A message that you sent could not be delivered to one or more of its\n"
           b"recipients. This is a permanent error. The following address(es) failed:\n\n"
           b"  someone@example.org\n    SMTP error from remote mail server after MAIL FROM:<news@example.com> SIZE=1000:\n"
           b"    550 5.1.1 news@example.com does not exist here\n")
    assert _facts(raw) == [("someone@example.org", "5.1.1", "sender_rejected", "policy")]


def test_line_leading_formats() -> None:
    for line, reason, kind in [
        (b"x@example.org: 550 5.7.26 Multiple authentication checks failed", "auth_failure", POLICY),
        (b"x@example.org [User unknown]", "user_unknown", HARD),
        (b"      x@example.org on 4/29/01 11:34:45 PM\n            Recipient Not Found", "user_unknown", HARD),
        (b"x@example.org: Network error on destination MXs", "network_error", SOFT),
    ]:
        raw = (b"From: MAILER-DAEMON@mx.example.net\nTo: news@example.com\nSubject: Delivery status notification: failed\n\n"
               b"An error has occurred while attempting to deliver a message for\nthe following list of recipients:\n\n" + line + b"\n")
        report = parse_bounce(raw)
        assert [(r.address, r.reason, r.kind) for r in report.recipients] == [("x@example.org", reason, kind)], line


def test_dragonfly_style_and_a_delay_warning_stays_delayed() -> None:
    raw = (b"X-Original-To: <x@example.org>\nFrom: MAILER-DAEMON <>\nTo: news@example.com\nSubject: Mail delivery failed\n\n"
           b"There was an error delivering your mail to <x@example.org>.\n\n"
           b"mx.example.org [192.0.2.1] did not like our RCPT TO:\n550 5.1.1 <x@example.org>: Recipient address rejected: User unknown\n\n"
           b"Original message follows.\n\nFrom: <news@example.com>\nTo: <x@example.org>\n")
    assert _facts(raw) == [("x@example.org", "5.1.1", "user_unknown", "hard")]
    warning = (b"From: MAILER-DAEMON@mx.example.net\nTo: news@example.com\nSubject: Delivery status notification: delayed\n\n"
               b"A message is delayed for more than 10 minutes for the following\nlist of recipients:\n\n"
               b"x@example.org: Network error on destination MXs\n\nPlease note that this is only a temporary failure report.\n")
    assert [r.kind for r in parse_bounce(warning).recipients] == [DELAYED]
