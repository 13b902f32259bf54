"""Recording bounces: match a report to the delivery it is about, then one ``bounces`` row per
failed, delayed or complaining recipient, written by one helper.

Two ways in: a parsed report from the bounce mailbox (:func:`record_report`), and a 5xx reply
seen while sending (:func:`record_smtp_rejection`).  Rows are keyed by (report_key, email), so
the same report seen twice is recorded once.
"""

from __future__ import annotations

import datetime as _dt

from ..settings import BounceSettings, load_bounce_settings
from ..store import Store, now_iso
from ..suppressions import apply_threshold
from .classify import classify_failure
from .message import clean
from .report import COMPLAINT, DELAYED, HARD, POLICY, SOFT, BounceRecipient, BounceReport

__all__ = ["RECORDED_KINDS", "find_delivery", "record_report", "record_smtp_rejection"]

#: Recipients of these kinds get a bounces row; a success notice ("relayed") does not.
RECORDED_KINDS = frozenset({HARD, SOFT, POLICY, DELAYED, COMPLAINT})


def _utc_iso(value: str | None) -> str | None:
    """An ISO date (any offset, or naive = UTC) as UTC ISO with seconds, the store's format."""
    if not value:
        return None
    try:
        when = _dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc).replace(microsecond=0).isoformat()


def find_delivery(store: Store, message_id: str | None) -> tuple[int, str, str] | None:
    """The ledger row of our message ``message_id``: (delivery id, campaign name, email).

    >>> from newsletter_kit.store import open_store
    >>> find_delivery(open_store(":memory:"), "<nk.1@example.org>") is None
    True
    """
    if not message_id:
        return None
    bare = message_id.strip().strip("<>")
    return store.conn.execute(
        "SELECT d.id, c.name, d.email FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id"
        " WHERE d.message_id IN (?, ?) LIMIT 1",
        (f"<{bare}>", bare),
    ).fetchone()


def _insert_bounce(
    store: Store,
    rcpt: BounceRecipient,
    *,
    campaign: str | None,
    delivery_id: int | None,
    report_key: str,
    source: str,
    bounced_at: str,
    recorded_at: str,
    original_message_id: str | None = None,
    mailbox_message_id: int | None = None,
) -> bool:
    """The one ``INSERT INTO bounces``; False when (report_key, address) was recorded before."""
    cursor = store.conn.execute(
        "INSERT OR IGNORE INTO bounces (email, kind, status, action, diagnostic, remote_mta, campaign,"
        " delivery_id, original_message_id, mailbox_message_id, report_key, source, bounced_at, recorded_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (rcpt.address, str(rcpt.kind.value), rcpt.status, rcpt.action, rcpt.diagnostic, rcpt.remote_mta,
         campaign, delivery_id, original_message_id, mailbox_message_id, report_key, source,
         bounced_at, recorded_at),
    )
    return bool(cursor.rowcount)


def record_report(
    store: Store,
    report: BounceReport,
    *,
    report_key: str,
    source: str,
    mailbox_message_id: int | None = None,
    received_at: str | None = None,
) -> list[str]:
    """Insert one ``bounces`` row per failed, delayed or complaining recipient of ``report``;
    returns the addresses newly recorded.

    The campaign and delivery come from the ledger (by our original's Message-ID), else from
    the report's ``X-Newsletter-Campaign``.  A (report_key, address) already recorded is skipped.

    >>> record_report(store, parse_bounce(raw), report_key="<r1@mx>", source="file")  # doctest: +SKIP
    ['mario.rossi@example.it']
    """
    recipients = [r for r in report.recipients if r.kind in RECORDED_KINDS]
    if not recipients:
        return []
    delivery = find_delivery(store, report.message_id)
    campaign = delivery[1] if delivery else report.campaign
    bounced_at = _utc_iso(report.date) or _utc_iso(received_at) or now_iso()
    recorded_at = now_iso()
    single = len(recipients) == 1
    added: list[str] = []
    for rcpt in recipients:
        delivery_id = delivery[0] if delivery and (single or delivery[2] == rcpt.address) else None
        if _insert_bounce(store, rcpt, campaign=campaign, delivery_id=delivery_id, report_key=report_key,
                          source=source, bounced_at=bounced_at, recorded_at=recorded_at,
                          original_message_id=report.message_id, mailbox_message_id=mailbox_message_id):
            added.append(rcpt.address)
    return added


def record_smtp_rejection(
    store: Store,
    *,
    email: str,
    campaign: str | None,
    delivery_id: int | None,
    code: int,
    status: str | None,
    reply: str | None,
    settings: BounceSettings | None = None,
) -> list[str]:
    """Record a 5xx rejection seen while sending as a bounce; returns newly suppressed addresses.

    Kind: policy for 5.7.x, soft for a full mailbox (5.2.2), else hard.  A 4xx reply is a
    deferral the send path retries: nothing is recorded.  With no bounce settings saved
    there is no threshold, so the rejection is recorded and nobody is suppressed.

    >>> record_smtp_rejection(store, email="x@example.org", campaign="nov", delivery_id=7,
    ...                       code=550, status="5.1.1", reply="550 5.1.1 User unknown")  # doctest: +SKIP
    ['x@example.org']
    """
    if code < 500:
        return []
    address = email.strip().lower()
    # The status the reply states right after its code (transport.SmtpReply), never a number
    # found elsewhere in its text ("see section 4.5.3").
    stated = status
    kind = classify_failure(stated if stated and stated.startswith("5") else None, reply or "")
    key = f"smtp:{delivery_id}" if delivery_id is not None else f"smtp:{campaign or ''}:{address}"
    rcpt = BounceRecipient(address, kind, stated, "failed", clean(reply or "", 1000) or None)
    at = now_iso()
    with store.transaction():
        added = _insert_bounce(store, rcpt, campaign=campaign, delivery_id=delivery_id, report_key=key,
                               source="smtp", bounced_at=at, recorded_at=at)
        settings = settings if settings is not None else load_bounce_settings(store)
        if not added or settings is None:
            return []
        return apply_threshold(store, settings, [address])
