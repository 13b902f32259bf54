"""Recording bounces: match a report to the delivery it is about, then one ``bounces`` row per
failed, delayed or complaining recipient, written by one helper.

Two ways in: a parsed report from the bounce mailbox (:func:`record_report`), and a 5xx reply
seen while sending (:func:`record_smtp_rejection`).  Rows are keyed by (report_key, email), so
the same report seen twice is recorded once.

A report's recipient matches a delivery we made when (first that applies) the report came back
to a signed VERP envelope sender naming that delivery, or quotes our Message-ID of that
delivery, and the address it names is that delivery's own (letter case aside); a 5xx seen while
sending is ours by construction.  The public ``X-Newsletter-Campaign`` stamp alone matches
nobody: anyone who received the campaign can copy it.  Nor does a Message-ID or a VERP token of
somebody else's delivery: a report quoting one recipient's message and naming another address
matches nobody.  Anything else is recorded as ``unmatched``: kept and listed
(:func:`list_unmatched`, ``bounces list --unmatched``), but counted toward the threshold only
with ``settings bounce --count-unmatched``, and never toward a campaign's rates or guards.
"""

from __future__ import annotations

import datetime as _dt

from .. import reasons
from ..settings import BounceSettings, load_bounce_settings
from ..store import Store, now_iso
from ..suppressions import apply_threshold
from ..tokens import verify_verp_token
from .classify import classify_failure
from .message import clean
from .report import COMPLAINT, DELAYED, HARD, POLICY, SOFT, BounceRecipient, BounceReport

__all__ = ["RECORDED_KINDS", "find_delivery", "list_bounces", "list_unmatched", "match_delivery",
           "recipient_reason", "record_report", "record_smtp_rejection"]

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


def _delivery_by_id(store: Store, delivery_id: int) -> tuple[int, str, str] | None:
    return store.conn.execute(
        "SELECT d.id, c.name, d.email FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id WHERE d.id = ?",
        (delivery_id,),
    ).fetchone()


class _Matcher:
    """What a report says about which delivery it is about, looked up once per report."""

    def __init__(self, store: Store, report: BounceReport):
        self.store = store
        self.by_verp: tuple[int, str, str] | None = None
        if report.verp_token:
            delivery_id = verify_verp_token(store.signing_key(), report.verp_token)
            self.by_verp = _delivery_by_id(store, delivery_id) if delivery_id is not None else None
        self.by_message_id = find_delivery(store, report.message_id)
        self.campaign = self.by_message_id[1] if self.by_message_id else report.campaign

    def match(self, address: str) -> tuple[int, str, str] | None:
        """(delivery id, campaign name, how it matched) of ``address``'s delivery, or None.

        Only the delivery the report proves it is about (its VERP token, our Message-ID), and
        only for the address of that delivery: the campaign stamp is public and proves nothing.
        """
        wanted = address.strip().lower()
        for found, how in ((self.by_verp, "verp"), (self.by_message_id, "message_id")):
            if found is not None and found[2].strip().lower() == wanted:
                return found[0], found[1], how
        return None


def match_delivery(store: Store, report: BounceReport, address: str) -> tuple[int, str, str] | None:
    """The delivery we made that ``report``'s recipient ``address`` is about, as
    (delivery id, campaign name, how it matched: verp | message_id); None when the
    report matches no delivery of ours (then it is recorded as unmatched).

    >>> from newsletter_kit.store import open_store
    >>> match_delivery(open_store(":memory:"), BounceReport(True, HARD), "a@example.org") is None
    True
    """
    return _Matcher(store, report).match(address)


def recipient_reason(rcpt: BounceRecipient) -> str:
    """The reason recorded for ``rcpt``: the parser's, else what its status, reply code and
    diagnostic say (older callers and ESP events may give none); a complaint is ``feedback``.

    >>> recipient_reason(BounceRecipient("a@example.org", HARD, "5.1.1", diagnostic="blocked using zen.spamhaus.org"))
    'blocked'
    """
    if rcpt.reason:
        return rcpt.reason
    if rcpt.kind == COMPLAINT:
        return "feedback"
    return reasons.classify(rcpt.status, rcpt.reply_code, rcpt.diagnostic)


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
    matched_by: str | None,
    original_message_id: str | None = None,
    mailbox_message_id: int | None = None,
) -> bool:
    """The one ``INSERT INTO bounces``; False when (report_key, address) was recorded before.
    ``matched_by`` None records the bounce as unmatched."""
    cursor = store.conn.execute(
        "INSERT OR IGNORE INTO bounces (email, kind, status, action, diagnostic, remote_mta, campaign,"
        " delivery_id, original_message_id, mailbox_message_id, report_key, source, bounced_at, recorded_at,"
        " matched_by, unmatched, reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (rcpt.address, str(rcpt.kind.value), rcpt.status, rcpt.action, rcpt.diagnostic, rcpt.remote_mta,
         campaign, delivery_id, original_message_id, mailbox_message_id, report_key, source,
         bounced_at, recorded_at, matched_by, int(matched_by is None), recipient_reason(rcpt)),
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

    Each recipient is matched to the delivery it is about (:func:`match_delivery`); the campaign
    comes from that delivery.  A recipient that matches none is recorded as unmatched, with the
    campaign the report claims (``X-Newsletter-Campaign``) kept for the review only: it counts
    for no threshold (unless ``--count-unmatched``), rate or guard.  A (report_key, address)
    already recorded is skipped.

    >>> record_report(store, parse_bounce(raw), report_key="<r1@mx>", source="file")  # doctest: +SKIP
    ['mario.rossi@example.it']
    """
    recipients = [r for r in report.recipients if r.kind in RECORDED_KINDS]
    if not recipients:
        return []
    matcher = _Matcher(store, report)
    bounced_at = _utc_iso(report.date) or _utc_iso(received_at) or now_iso()
    recorded_at = now_iso()
    added: list[str] = []
    for rcpt in recipients:
        found = matcher.match(rcpt.address)
        delivery_id, campaign, how = found if found else (None, matcher.campaign, None)
        if _insert_bounce(store, rcpt, campaign=campaign, delivery_id=delivery_id, report_key=report_key,
                          source=source, bounced_at=bounced_at, recorded_at=recorded_at, matched_by=how,
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
    rcpt = BounceRecipient(address, kind, stated, "failed", clean(reply or "", 1000) or None, reply_code=code)
    at = now_iso()
    with store.transaction():
        # A refusal seen while sending is ours by construction: it always matches.
        added = _insert_bounce(store, rcpt, campaign=campaign, delivery_id=delivery_id, report_key=key,
                               source="smtp", bounced_at=at, recorded_at=at, matched_by="smtp")
        settings = settings if settings is not None else load_bounce_settings(store)
        if not added or settings is None:
            return []
        return apply_threshold(store, settings, [address])


#: The keys of :func:`list_bounces` rows, in order.
_LIST_KEYS = ("id", "address", "kind", "reason", "status", "diagnostic", "campaign", "original_message_id",
              "source", "bounced_at", "recorded_at", "matched_by", "matched")
_LIST_COLUMNS = ("id", "email", "kind", "reason", "status", "diagnostic", "campaign", "original_message_id",
                 "source", "bounced_at", "recorded_at", "matched_by", "unmatched")


def list_bounces(store: Store, *, unmatched: bool = False, limit: int | None = None) -> list[dict[str, object]]:
    """Recorded bounces, newest first, as ``bounces list --json`` prints them; with ``unmatched``
    only those that match no delivery we made.

    Keys: id, address, kind, reason, status, diagnostic, campaign, original_message_id, source,
    bounced_at, recorded_at, matched_by (verp | message_id | smtp, None when unmatched; rows
    recorded before issue 16 may say campaign), matched (bool).

    >>> from newsletter_kit.store import open_store
    >>> list_bounces(open_store(":memory:"), unmatched=True)
    []
    """
    where = " WHERE unmatched = 1" if unmatched else ""
    sql = f"SELECT {', '.join(_LIST_COLUMNS)} FROM bounces{where} ORDER BY bounced_at DESC, id DESC"
    params: list[object] = []
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    rows = []
    for row in store.conn.execute(sql, params):
        item = dict(zip(_LIST_COLUMNS, row))
        item["address"] = item.pop("email")
        item["matched"] = not item.pop("unmatched")
        rows.append({k: item[k] for k in _LIST_KEYS})
    return rows


def list_unmatched(store: Store, limit: int | None = None) -> list[dict[str, object]]:
    """The recorded bounces that match no delivery we made (forged or unrelated reports), newest
    first: they count toward the threshold only with ``settings bounce --count-unmatched``.

    >>> from newsletter_kit.store import open_store
    >>> list_unmatched(open_store(":memory:"))
    []
    """
    return list_bounces(store, unmatched=True, limit=limit)
