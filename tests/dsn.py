"""Postfix-style bounce messages made in code, for tests and the ingest benchmark.

``postfix_dsn(recipient, ...)`` returns the bytes of a ``multipart/report`` DSN shaped like
the ones Postfix writes (text part, ``message/delivery-status``, the original's headers),
quoting an original with our ``Message-ID`` and ``X-Newsletter-Campaign``.  ``pad_to``
grows the quoted body so a message reaches a given size (the benchmark uses ~4 KB).

Example::

    raw = postfix_dsn("gone@example.org", status="5.1.1", original_message_id="<a1@news>",
                      campaign="nov")
"""
from __future__ import annotations

import datetime as dt
import email.utils
import uuid
from typing import Any

STATUS_TEXT = {
    "5.1.1": "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
    "5.2.2": "552 5.2.2 <{rcpt}> Quota exceeded (mailbox for user is full)",
    "4.2.2": "452 4.2.2 <{rcpt}> Quota exceeded (mailbox for user is full)",
    "5.7.1": "554 5.7.1 <{rcpt}>: Message rejected as spam",
    "4.4.1": "connect to mx.example.com[192.0.2.1]:25: Connection timed out",
}


def our_message_id(recipient: str, campaign: str | None = "nov") -> str:
    """The Message-ID :func:`sent_to` gives the delivery of ``campaign`` to ``recipient``, which
    :func:`postfix_dsn` quotes by default: the campaign stamp alone matches nobody (issue 16), a
    report must quote our Message-ID of that very delivery (or its VERP token)."""
    return f"<nk.{campaign or '-'}.{recipient.lower().replace('@', '=')}@news.example.org>"


def postfix_dsn(
    recipient: str,
    *,
    status: str = "5.1.1",
    original_message_id: str | None = None,
    campaign: str | None = "nov",
    sender: str = "bounces@example.org",
    report_message_id: str | None = None,
    date: str | None = None,
    pad_to: int = 0,
    delayed: bool = False,
    diagnostic: str | None = None,
) -> bytes:
    """A DSN about ``recipient`` (failed, or ``delayed``), as Postfix would send it; ``diagnostic``
    replaces the usual text of ``status`` (e.g. a block of our IP under ``550 5.1.1``)."""
    report_id = report_message_id or f"<{uuid.uuid4().hex}@mx.nk-test.example.com>"
    original_id = original_message_id or our_message_id(recipient, campaign)
    boundary = f"{uuid.uuid4().hex[:12]}.nk/mx.nk-test.example.com"
    date = date or email.utils.formatdate(localtime=False)
    diagnostic = diagnostic or STATUS_TEXT.get(status, f"550 {status} failed").format(rcpt=recipient)
    action = "delayed" if delayed else "failed"
    subject = "Delayed Mail (still being retried)" if delayed else "Undelivered Mail Returned to Sender"
    campaign_line = f"X-Newsletter-Campaign: {campaign}\r\n" if campaign else ""
    filler = ""
    head = (
        f"Return-Path: <>\r\n"
        f"Delivered-To: {sender}\r\n"
        f"Date: {date}\r\n"
        f"From: MAILER-DAEMON@mx.nk-test.example.com (Mail Delivery System)\r\n"
        f"Subject: {subject}\r\n"
        f"To: {sender}\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"\r\n'
        f"Message-Id: {report_id}\r\n\r\n"
        f"This is a MIME-encapsulated message.\r\n\r\n"
        f"--{boundary}\r\n"
        f"Content-Description: Notification\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"This is the mail system at host mx.nk-test.example.com.\r\n\r\n"
        f"I'm sorry to have to inform you that your message could not\r\n"
        f"be delivered to one or more recipients. It's attached below.\r\n\r\n"
        f"                   The mail system\r\n\r\n"
        f"<{recipient}>: {diagnostic}\r\n\r\n"
        f"--{boundary}\r\n"
        f"Content-Description: Delivery report\r\n"
        f"Content-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.nk-test.example.com\r\n"
        f"X-Postfix-Queue-ID: 4F2A81C0A3B\r\n"
        f"X-Postfix-Sender: rfc822; {sender}\r\n"
        f"Arrival-Date: {date}\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822;{recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Remote-MTA: dns; mx.example.com\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        f"--{boundary}\r\n"
        f"Content-Description: Undelivered Message\r\n"
        f"Content-Type: message/rfc822\r\n\r\n"
        f"Return-Path: <{sender}>\r\n"
        f"From: News <news@example.org>\r\n"
        f"To: {recipient}\r\n"
        f"Subject: Our November news\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: {original_id}\r\n"
        f"{campaign_line}"
        f"List-Unsubscribe: <mailto:{sender}?subject=unsubscribe>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello, here is the news.\r\n"
    )
    tail = f"\r\n--{boundary}--\r\n"
    missing = pad_to - len(head) - len(tail)
    if missing > 0:
        line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
        filler = (line * (missing // len(line) + 1))[:missing]
    return (head + filler + tail).encode("ascii")


def sent_to(store: Any, *emails: str, campaign: str = "nov") -> None:
    """Ledger rows of a send of ``campaign`` (90 days ago) to ``emails``, with the Message-IDs
    that ``postfix_dsn`` quotes by default: what makes its DSN a report about our delivery.  Reports that
    match no delivery we made do not count toward the threshold (issue 9)."""
    long_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=90)).replace(microsecond=0).isoformat()
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    with store.transaction():
        store.conn.execute(
            "INSERT OR IGNORE INTO campaigns (name, list_name, subject, html, status, created_at, updated_at)"
            " VALUES (?, 'all', 's', '<p>h</p>', 'done', ?, ?)", (campaign, now, now))
        cid = store.conn.execute("SELECT id FROM campaigns WHERE name = ?", (campaign,)).fetchone()[0]
        store.conn.executemany(
            "INSERT OR IGNORE INTO deliveries (campaign_id, email, state, message_id, created_at, updated_at, sent_at)"
            " VALUES (?, ?, 'sent', ?, ?, ?, ?)", [(cid, e, our_message_id(e, campaign), now, now, long_ago)
                                                   for e in emails])
