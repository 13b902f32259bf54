"""The delivery ledger: the SQL of table ``deliveries``, one row per (campaign, recipient).

The ledger is the truth about who was sent what. A row is marked ``inflight`` (with its
Message-ID) in a committed transaction *before* its SMTP transaction and gets its outcome
*after* it, so a crash or a kill never sends anyone the same campaign twice: a row found
``inflight`` when a run starts, left by a run that died, is marked ``unknown``, reported, and
never resent.

Rows move through these states:

- ``pending``: to send (also a message the server answered 421 to, or a dropped connection);
- ``inflight``: handed to the server right now;
- ``sent``: the server accepted it (2xx); it counts against the day's quota;
- ``deferred``: a 4xx at RCPT/DATA; retried by a later run after ``next_attempt_at``;
- ``failed``: a 5xx (also recorded as a bounce, so the threshold counts it), or gave up;
- ``excluded``: unsubscribed or suppressed before it was sent (``reason`` says which);
- ``unknown``: a run died while it was in flight: perhaps sent, never resent.

This module knows rows and states only; *when* to claim, send and stop is the send run's
business (:mod:`newsletter_kit.campaigns`).

Example::

    >>> from newsletter_kit.store import open_store
    >>> store = open_store(":memory:")
    >>> Ledger(store, campaign_id=1).due_count()
    0
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import clock, quota
from .store import Store, now_iso

if TYPE_CHECKING:
    from .settings import SmtpSettings
    from .transport import SendOutcome

#: A deferred recipient is tried again after these delays (by attempt), then given up.
DEFERRAL_BACKOFF = (dt.timedelta(minutes=15), dt.timedelta(hours=1), dt.timedelta(hours=4),
                    dt.timedelta(hours=12))
#: States a run may (re)send: pending, and deferred once its time has come.
RETRYABLE = ("pending", "deferred")

_CLAIM_COLUMNS = "id, email, contact_id, message_id, attempts FROM deliveries"
#: Where :meth:`Ledger.write_outcomes` puts each row: one list per written state.
_WRITTEN = ("sent", "deferred", "failed", "pending")


@dataclass
class Row:
    """A claimed ledger row: what a send needs to know about it."""

    id: int
    email: str
    contact_id: int | None
    message_id: str
    attempts: int


@dataclass
class Claim:
    """Rows marked in flight together, with the quota reserved for them (``granted``).

    No rows with ``granted == 0``: today's quota is used; ``granted == -1``: nothing was due
    (or nothing was asked for).
    """

    rows: list[Row]
    day: str
    granted: int

    @classmethod
    def nothing(cls) -> Claim:
        """The empty claim: nothing due, no quota held."""
        return cls([], "", -1)


@dataclass
class Written:
    """What :meth:`Ledger.write_outcomes` wrote: rows per state, and the 5xx rejections."""

    counts: dict[str, int] = field(default_factory=dict)
    rejections: list[tuple[Row, SendOutcome]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        """Rows the server accepted (what the quota counts)."""
        return self.counts.get("sent", 0)

    @property
    def attempted(self) -> int:
        """Rows handed to the server or answered (not those put back untouched)."""
        return sum(self.counts.get(k, 0) for k in ("sent", "deferred", "failed", "pending", "unknown"))


class Ledger:
    """The ledger rows of one campaign.

    Methods that write and are named as steps of a run (:meth:`claim`,
    :meth:`write_outcomes`, :meth:`add_recipients`) run inside the caller's
    :meth:`Store.transaction`, so a run can commit several steps at once; the others commit
    their own.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> from newsletter_kit.campaigns import create_campaign
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org"}])
        >>> ledger = Ledger(store, create_campaign(store, "spring", "all", "Hi", "<p>x</p>").id)
        >>> with store.transaction():
        ...     ledger.add_recipients([(None, "ann@example.org")], [], [])
        >>> ledger.states(), ledger.due_count()
        ({'ann@example.org': 'pending'}, 1)
    """

    def __init__(self, store: Store, campaign_id: int):
        self.store = store
        self.campaign_id = campaign_id

    def __repr__(self) -> str:
        return f"Ledger(campaign_id={self.campaign_id})"

    # -- reading

    def states(self) -> dict[str, str]:
        """Every row's state, by address."""
        return dict(self.store.conn.execute(
            "SELECT email, state FROM deliveries WHERE campaign_id = ?", (self.campaign_id,)).fetchall())

    def due_count(self) -> int:
        """Rows a run could send now (pending, or deferred whose time has come)."""
        return int(self.store.conn.execute(
            "SELECT count(*) FROM deliveries WHERE campaign_id = ? AND (state = 'pending' OR "
            "(state = 'deferred' AND next_attempt_at <= ?))", (self.campaign_id, now_iso())).fetchone()[0])

    def left_to_send(self) -> int:
        """Rows not settled yet: pending, deferred, or in flight."""
        return int(self.store.conn.execute(
            "SELECT count(*) FROM deliveries WHERE campaign_id = ? AND state IN ('pending', 'deferred', 'inflight')",
            (self.campaign_id,)).fetchone()[0])

    def next_retry_at(self) -> str | None:
        """When the earliest deferred row may be tried again (None: no deferred row)."""
        found = self.store.conn.execute(
            "SELECT min(next_attempt_at) FROM deliveries WHERE campaign_id = ? AND state = 'deferred'",
            (self.campaign_id,)).fetchone()[0]
        return str(found) if found else None

    def abandoned(self) -> list[tuple[int, str]]:
        """(id, address) of rows left in flight by runs that died (their owner is gone)."""
        rows = self.store.conn.execute(
            "SELECT id, email, owner, updated_at FROM deliveries WHERE campaign_id = ? AND state = 'inflight'",
            (self.campaign_id,)).fetchall()
        return [(rid, email) for rid, email, owner, since in rows
                if not owner or not quota.owner_alive(owner, since)]

    # -- writing

    def mark_abandoned(self) -> list[str]:
        """Rows left in flight by runs that died become ``unknown``; returns their addresses."""
        dead = self.abandoned()
        if dead:
            with self.store.transaction():
                self.store.conn.executemany(
                    "UPDATE deliveries SET state = 'unknown', owner = NULL, updated_at = ?, reason = "
                    "'in flight when a send run died: perhaps sent, not resent' "
                    "WHERE id = ? AND state = 'inflight'",
                    [(now_iso(), rid) for rid, _ in dead])
        return [email for _, email in dead]

    def add_recipients(self, to_add: Iterable[tuple[int | None, str]], back: Iterable[str],
                       excluded: Iterable[tuple[str, int | None, str]]) -> None:
        """The audience's changes: new rows ``pending`` ((contact id, address)), excluded rows
        ``back`` to pending, and (address, contact id, reason) rows ``excluded`` unless sent."""
        now, cid, conn = now_iso(), self.campaign_id, self.store.conn
        conn.executemany(
            "INSERT OR IGNORE INTO deliveries (campaign_id, contact_id, email, state, created_at, "
            "updated_at) VALUES (?, ?, ?, 'pending', ?, ?)",
            [(cid, contact, email, now, now) for contact, email in to_add])
        conn.executemany(
            "UPDATE deliveries SET state = 'pending', reason = NULL, updated_at = ? "
            "WHERE campaign_id = ? AND email = ? AND state = 'excluded'",
            [(now, cid, e) for e in back])
        conn.executemany(
            "INSERT INTO deliveries (campaign_id, contact_id, email, state, reason, created_at, "
            "updated_at) VALUES (?, ?, ?, 'excluded', ?, ?, ?) ON CONFLICT (campaign_id, email) "
            "DO UPDATE SET state = 'excluded', reason = excluded.reason, updated_at = excluded.updated_at "
            "WHERE deliveries.state IN ('pending', 'deferred')",
            [(cid, contact, e, reason, now, now) for e, contact, reason in excluded])

    def claim(self, want: int, *, owner: str, settings: SmtpSettings | None,
              new_message_id: Callable[[], str]) -> Claim:
        """Mark up to ``want`` due rows in flight for ``owner`` and reserve their quota.

        Deferred rows whose time has come go first (they have waited). A row keeps the
        Message-ID it was given the first time. Runs inside the caller's transaction.
        """
        conn, now = self.store.conn, now_iso()
        if want <= 0:
            return Claim.nothing()
        # Two index range scans (campaign_id, state), deferred first. One query with OR would
        # scan the whole campaign and sort it, for every batch.
        candidates = conn.execute(
            f"SELECT {_CLAIM_COLUMNS} WHERE campaign_id = ? AND state = 'deferred' "
            "AND next_attempt_at <= ? ORDER BY id LIMIT ?", (self.campaign_id, now, want)).fetchall()
        if len(candidates) < want:
            candidates += conn.execute(
                f"SELECT {_CLAIM_COLUMNS} WHERE campaign_id = ? AND state = 'pending' ORDER BY id LIMIT ?",
                (self.campaign_id, want - len(candidates))).fetchall()
        if not candidates:
            return Claim.nothing()
        day, granted = quota.reserve(self.store, len(candidates), owner=owner, settings=settings)
        rows = [Row(rid, email, contact, mid or new_message_id(), attempts)
                for rid, email, contact, mid, attempts in candidates[:granted]]
        conn.executemany(
            "UPDATE deliveries SET state = 'inflight', message_id = ?, owner = ?, updated_at = ? "
            "WHERE id = ?", [(r.message_id, owner, now, r.id) for r in rows])
        return Claim(rows, day, granted)

    def write_outcomes(self, rows: Sequence[Row], outcomes: Sequence[SendOutcome | None],
                       started: Sequence[bool]) -> Written:
        """Give each claimed row the state its outcome means; runs inside the caller's transaction.

        ``None`` (not attempted) puts a row back to pending untouched, or, when it was handed
        to the server (``started``) without an answer, marks it ``unknown``.
        """
        now = now_iso()
        updates: dict[str, list[tuple[Any, ...]]] = {
            "sent": [], "deferred": [], "failed": [], "pending": [], "unknown": [], "untouched": []}
        written = Written()
        for row, outcome, was_started in zip(rows, outcomes, started):
            state = outcome_state(row.attempts, outcome, was_started)
            if outcome is None or state == "unknown":
                updates[state].append((now, row.id))
                continue
            attempts = row.attempts + 1
            next_at = _next_attempt(attempts) if state == "deferred" else None
            updates[state].append((attempts, outcome.code, outcome.status, outcome.reply or None,
                                   _reason(state, outcome, attempts), next_at, now,
                                   now if state == "sent" else None, row.id))
            if state == "failed" and outcome.code and outcome.code >= 500:
                written.rejections.append((row, outcome))
        conn = self.store.conn
        for state in _WRITTEN:
            if updates[state]:
                conn.executemany(
                    f"UPDATE deliveries SET state = '{state}', owner = NULL, attempts = ?, smtp_code = ?, "
                    "smtp_status = ?, smtp_reply = ?, reason = ?, next_attempt_at = ?, updated_at = ?, "
                    "sent_at = coalesce(?, sent_at) WHERE id = ?",
                    updates[state])
        conn.executemany(
            "UPDATE deliveries SET state = 'pending', owner = NULL, updated_at = ? WHERE id = ?",
            updates["untouched"])
        conn.executemany(
            "UPDATE deliveries SET state = 'unknown', owner = NULL, updated_at = ?, reason = "
            "'interrupted while being sent: perhaps sent, not resent' WHERE id = ?", updates["unknown"])
        written.counts = {state: len(values) for state, values in updates.items()}
        return written


def outcome_state(attempts: int, outcome: SendOutcome | None, started: bool) -> str:
    """The ledger state for a row tried ``attempts`` times before, given what the send came to.

    ``"untouched"``: never attempted, back to pending as it was.

    Example::

        >>> from newsletter_kit.transport import SendOutcome
        >>> outcome_state(0, SendOutcome("deferred", 451), True), outcome_state(4, SendOutcome("deferred", 451), True)
        ('deferred', 'failed')
        >>> outcome_state(0, None, True), outcome_state(0, None, False)
        ('unknown', 'untouched')
    """
    if outcome is None:
        # Handed to the server but no answer (an interruption): perhaps sent.
        return "unknown" if started else "untouched"
    if outcome.kind == "paused":
        return "pending"
    if outcome.kind == "deferred" and attempts + 1 > len(DEFERRAL_BACKOFF):
        return "failed"
    return outcome.kind


def _next_attempt(attempts: int) -> str:
    delay = DEFERRAL_BACKOFF[min(attempts, len(DEFERRAL_BACKOFF)) - 1]
    return (clock.now().replace(microsecond=0) + delay).isoformat()


def _reason(state: str, outcome: SendOutcome, attempts: int) -> str | None:
    if state == "failed" and outcome.kind == "deferred":
        return f"gave up after {attempts} temporary failures"
    if state == "failed":
        return "rejected by the server" if outcome.code else outcome.reply
    if state == "pending":
        return f"not sent: {outcome.reply or outcome.code}"
    return None
