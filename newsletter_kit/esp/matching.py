"""Which delivery of ours an ESP event is about, most certain first, then recording it through
the same helper as a mailbox report (:func:`newsletter_kit.bounces.record.record_report`).

1. our delivery id echoed by the provider (a signed token: tag, unique arg, variable, metadata);
2. the provider's message id, captured from the relay's final ``250`` reply into the ledger;
3. our Message-ID in the headers the event quotes;
4. for sources giving only an address and a time (SendGrid's suppression lists): the latest
   delivery to that address sent within the window before the event.

The delivery must be to the very address the event names; otherwise, or when nothing matches,
the event is recorded unmatched and counts for nobody.  Each event is kept once by the
provider's event id (``esp_events``), so a second import or sync records nothing new.
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..bounces.record import record_report
from ..bounces.report import BOUNCE_KINDS, COMPLAINT, BounceRecipient, BounceReport
from ..store import Store, now_iso
from ..tokens import verify_verp_token, verp_token
from .events import EspEvent

__all__ = ["DEFAULT_WINDOW_DAYS", "EventsReport", "match_event", "record_events"]

#: How long after a delivery an address-only event (a suppression row) is taken to be about it.
DEFAULT_WINDOW_DAYS = 7


@dataclass
class EventsReport:
    """What one import or sync did: ``read`` events, of which ``recorded`` became bounces rows
    (``matched`` to a delivery, ``unmatched`` to none), ``duplicates`` were seen before,
    ``ignored`` were no failure, ``refused`` failed their signature (listed in ``refusals``)."""

    read: int = 0
    recorded: int = 0
    matched: int = 0
    unmatched: int = 0
    duplicates: int = 0
    ignored: int = 0
    refused: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    refusals: list[dict[str, str]] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """As ``bounces import-events --json`` and ``bounces sync --json`` print it.

        >>> sorted(EventsReport().to_dict())[:4]
        ['bounces', 'duplicates', 'errors', 'ignored']
        """
        return {"read": self.read, "recorded": self.recorded, "matched": self.matched,
                "unmatched": self.unmatched, "duplicates": self.duplicates, "ignored": self.ignored,
                "refused": self.refused, "bounces": dict(sorted(self.kinds.items())),
                "refusals": self.refusals, "suppressed": self.suppressed, "errors": self.errors,
                "skipped": self.skipped}

    def summary(self) -> str:
        """One line for people."""
        return (f"read {self.read} event(s): recorded {self.recorded} ({self.matched} matched, "
                f"{self.unmatched} unmatched), {self.duplicates} already seen, {self.ignored} not failures, "
                f"{self.refused} refused")

    def merge(self, other: EventsReport) -> None:
        """Add ``other``'s counts to this report."""
        for name in ("read", "recorded", "matched", "unmatched", "duplicates", "ignored", "refused"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.kinds.update(other.kinds)
        self.refusals += other.refusals
        self.suppressed += other.suppressed
        self.errors += other.errors
        self.skipped += other.skipped


def _by_id(store: Store, delivery_id: int) -> tuple[int, str] | None:
    row = store.conn.execute("SELECT id, email FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    return (int(row[0]), row[1]) if row else None


def _by_provider_id(store: Store, provider_id: str) -> tuple[int, str] | None:
    row = store.conn.execute("SELECT id, email FROM deliveries WHERE provider_message_id = ? LIMIT 1",
                             (provider_id.strip().strip("<>"),)).fetchone()
    return (int(row[0]), row[1]) if row else None


def _by_message_id(store: Store, message_id: str) -> tuple[int, str] | None:
    bare = message_id.strip().strip("<>")
    row = store.conn.execute("SELECT id, email FROM deliveries WHERE message_id IN (?, ?) LIMIT 1",
                             (f"<{bare}>", bare)).fetchone()
    return (int(row[0]), row[1]) if row else None


def _by_address(store: Store, address: str, at: str | None, window_days: int) -> tuple[int, str] | None:
    when = _dt.datetime.fromisoformat(at) if at else _dt.datetime.now(_dt.timezone.utc)
    since = (when - _dt.timedelta(days=window_days)).isoformat()
    row = store.conn.execute(
        "SELECT id, email FROM deliveries WHERE email = ? AND state IN ('sent', 'unknown') AND sent_at IS NOT NULL"
        " AND julianday(sent_at) BETWEEN julianday(?) AND julianday(?) ORDER BY sent_at DESC LIMIT 1",
        (address, since, when.isoformat())).fetchone()
    return (int(row[0]), row[1]) if row else None


def match_event(store: Store, event: EspEvent, *, window_days: int = DEFAULT_WINDOW_DAYS,
                key: bytes | None = None) -> tuple[int, str] | None:
    """(delivery id, how: esp_id | provider_id | message_id | address) of the delivery the event
    is about, or None.  Only a delivery to the address the event names matches.

    >>> from newsletter_kit.store import open_store
    >>> from newsletter_kit.esp.events import complaint
    >>> match_event(open_store(":memory:"), complaint("ses", "f1", "a@example.org")) is None
    True
    """
    if not event.address:
        return None
    tries: list[tuple[str, Any]] = []
    if event.echo:
        delivery_id = verify_verp_token(key if key is not None else store.signing_key(), event.echo)
        if delivery_id is not None:
            tries.append(("esp_id", lambda: _by_id(store, delivery_id)))
    if event.provider_message_id:
        tries.append(("provider_id", lambda: _by_provider_id(store, event.provider_message_id or "")))
    if event.message_id:
        tries.append(("message_id", lambda: _by_message_id(store, event.message_id or "")))
    if event.address_only:
        tries.append(("address", lambda: _by_address(store, event.address or "", event.at, window_days)))
    for how, find in tries:
        found = find()
        if found is not None and found[1] == event.address:
            return found[0], how
    return None


def _seen(store: Store, events: list[EspEvent]) -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    pairs = [(e.provider, e.event_id) for e in events]
    for start in range(0, len(pairs), 400):
        chunk = pairs[start:start + 400]
        where = " OR ".join("(provider = ? AND event_id = ?)" for _ in chunk)
        params = [v for pair in chunk for v in pair]
        seen.update((p, i) for p, i in store.conn.execute(f"SELECT provider, event_id FROM esp_events WHERE {where}",
                                                          params))
    return seen


def _record_one(store: Store, event: EspEvent, key: bytes, window_days: int) -> tuple[str, str | None]:
    """Record one new event; returns (outcome, matched_by)."""
    found = match_event(store, event, window_days=window_days, key=key)
    rcpt = BounceRecipient(event.address or "", event.kind, event.status, "failed", event.diagnostic,
                           reason=event.reason, reply_code=event.reply_code)
    # A matched event goes through the shared helper as a report naming that very delivery
    # (its signed token), so every rule of recording applies to it as to a mailbox report.
    report = BounceReport(event.kind in BOUNCE_KINDS, event.kind, [rcpt], reason=event.reason, date=event.at,
                          verp_token=verp_token(key, found[0]) if found else None)
    report_key = f"{event.provider}:{event.event_id}"
    added = record_report(store, report, report_key=report_key, source=event.provider)
    if found and added:
        store.conn.execute("UPDATE bounces SET matched_by = ? WHERE report_key = ? AND email = ?",
                           (found[1], report_key, event.address))
    return ("recorded" if found else "unmatched"), (found[1] if found else None)


def record_events(store: Store, events: list[EspEvent], *, origin: str = "", window_days: int = DEFAULT_WINDOW_DAYS,
                  apply: bool = True) -> EventsReport:
    """Record ``events`` in one transaction: each new one (by provider and event id) once,
    matched or unmatched; refused and non-failure events are listed, not recorded.  Applies the
    bounce threshold to the addresses touched when bounce settings exist.

    >>> from newsletter_kit.store import open_store
    >>> from newsletter_kit.esp.events import complaint
    >>> record_events(open_store(":memory:"), [complaint("ses", "f1", "a@example.org")]).unmatched
    1
    """
    report = EventsReport(read=len(events))
    key = store.signing_key()
    seen_at = now_iso()
    touched: set[str] = set()
    rows: list[tuple[Any, ...]] = []
    with store.transaction():
        seen = _seen(store, events)
        for event in events:
            ident = (event.provider, event.event_id)
            if ident in seen:
                report.duplicates += 1
                continue
            matched_by: str | None = None
            if event.refused is not None:
                # Listed, not kept: the same file imported again once the key is right is read anew.
                report.refused += 1
                report.refusals.append({"provider": event.provider, "event_id": event.event_id,
                                        "origin": origin, "why": event.refused})
                continue
            seen.add(ident)
            if not event.recordable:
                outcome, report.ignored = "ignored", report.ignored + 1
            else:
                outcome, matched_by = _record_one(store, event, key, window_days)
                report.recorded += 1
                report.kinds[str(event.kind.value)] += 1
                if matched_by:
                    report.matched += 1
                    if event.kind in BOUNCE_KINDS or event.kind == COMPLAINT:
                        touched.add(event.address or "")
                else:
                    report.unmatched += 1
            rows.append((event.provider, event.event_id, str(event.kind.value), event.address, outcome, matched_by,
                         event.note, origin, event.at, seen_at))
        store.conn.executemany(
            "INSERT OR IGNORE INTO esp_events (provider, event_id, kind, email, outcome, matched_by, detail,"
            " origin, at, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        if apply and touched:
            from ..settings import load_bounce_settings
            from ..suppressions import apply_threshold

            settings = load_bounce_settings(store)
            if settings is not None:
                report.suppressed = apply_threshold(store, settings, sorted(touched))
    return report
