"""The delivery ledger: the SQL of table ``deliveries``, one row per (campaign, recipient).

The ledger is the truth about who was sent what. A run *claims* rows in batches (``claimed``,
with their Message-IDs and the quota reserved for them). Right *before* a row's SMTP
transaction starts, a committed line in the send log (:class:`SendLog`) says it goes on the
wire, together with the answers received since the previous line, so every answer is durable
before the next message on that connection starts; the ledger rows themselves are updated per
batch. So a crash or a kill never sends anyone the same campaign twice and parks nobody who was
not on the wire: when a run starts, the rows a dead run left ``claimed`` get the answer its log
recorded, or become ``unknown`` when the log says they were on the wire unanswered (at most one
per connection it had open), or go back to pending when they never reached the wire.

Rows move through these states:

- ``pending``: to send (also a message the server answered 421 to, or a dropped connection);
- ``claimed``: taken by a running send (the send log says whether it is on the wire);
- ``inflight``: left by versions before the send log: handed to the server;
- ``sent``: the server accepted it (2xx); it counts against the day's quota;
- ``deferred``: a 4xx at RCPT/DATA; retried by a later run after ``next_attempt_at``;
- ``failed``: a 5xx (a refusal of the recipient is also recorded as a bounce; a refusal of the
  message or of the sender is not), or gave up;
- ``excluded``: unsubscribed or suppressed before it was sent (``reason`` says which);
- ``unknown``: a run died while it was on the wire: perhaps sent, never resent unless the
  analyst settles it (:meth:`Ledger.resolve`). It counts against the quota as a send (it may
  have been accepted) from the moment it becomes unknown (``quota_counted``).

The send log is a small SQLite file beside the store (``newsletter.db-sendlog``; WAL with
``synchronous = NORMAL``, so each commit survives a killed process): an append costs a few tens
of microseconds, and the sending threads never wait for the ledger thread's batch transactions
on the store. Only rows of runs in progress (or dead) are in it.

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
import functools
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import clock, quota, reasons
from .errors import CampaignError, StoreError
from .progress import HELD, RETRYABLE  # re-exported: the states the read side counts too
from .store import Store, now_iso, use_wal

if TYPE_CHECKING:
    from .settings import SmtpSettings
    from .transport import SendOutcome

#: A deferred recipient is tried again after these delays (by attempt), then given up.
DEFERRAL_BACKOFF = (dt.timedelta(minutes=15), dt.timedelta(hours=1), dt.timedelta(hours=4),
                    dt.timedelta(hours=12))
#: What the analyst may settle an ``unknown`` row as.
RESOLUTIONS = ("sent", "pending")

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
    def counted(self) -> int:
        """Rows the quota counts: accepted, and ``unknown`` (handed over unanswered: perhaps
        accepted; a daily limit errs on the safe side)."""
        return self.counts.get("sent", 0) + self.counts.get("unknown", 0)

    @property
    def attempted(self) -> int:
        """Rows handed to the server or answered (not those put back untouched)."""
        return sum(self.counts.get(k, 0) for k in ("sent", "deferred", "failed", "pending", "unknown"))


def _domain(email: str) -> str:
    return email.rpartition("@")[2]


def _hour() -> str:
    """The clock hour (UTC) the per-domain limits count in: '2026-12-08T09'."""
    return clock.now().strftime("%Y-%m-%dT%H")


def domain_limits(store: Store) -> dict[str, int]:
    """The hourly limits per recipient domain (``settings smtp --domain-limit``), any relay."""
    row = store.conn.execute("SELECT data FROM settings WHERE section = 'domain_limits'").fetchone()
    return {str(k): int(v) for k, v in json.loads(row[0]).items()} if row else {}


def set_domain_limits(store: Store, specs: Iterable[str]) -> dict[str, int]:
    """Set hourly limits per recipient domain from ``gmail.com=2000/h`` specs (``domain=0`` or
    ``domain=`` removes one; an empty spec list changes nothing); returns all the limits.

    >>> from newsletter_kit.store import open_store
    >>> set_domain_limits(open_store(":memory:"), ["gmail.com=2000/h", "Yahoo.com=500"])
    {'gmail.com': 2000, 'yahoo.com': 500}
    """
    from .errors import ValidationError

    limits = domain_limits(store)
    for spec in specs:
        domain, sep, amount = spec.partition("=")
        domain = domain.strip().lower().rstrip(".")
        amount = amount.strip().lower().removesuffix("/h").strip()
        if not sep or not domain or "@" in domain or " " in domain or (amount and not amount.isdigit()):
            raise ValidationError(f"--domain-limit is DOMAIN=N/h, e.g. gmail.com=2000/h, not {spec!r}",
                                  "domain_limit")
        if not amount or int(amount) == 0:
            limits.pop(domain, None)
        else:
            limits[domain] = int(amount)
    with store.transaction():
        store.conn.execute(
            "INSERT INTO settings (section, data, updated_at) VALUES ('domain_limits', ?, ?) "
            "ON CONFLICT (section) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
            (json.dumps(limits, sort_keys=True), now_iso()))
    return limits


def interleave_domains(recipients: Iterable[tuple[int | None, str]]) -> list[tuple[int | None, str]]:
    """The recipients in turns across their domains, each domain's own order kept: rows are
    claimed in insertion order, so a list sorted by domain does not send thousands of messages
    to one provider back to back.

    >>> [e for _, e in interleave_domains([(1, "a@gmail.com"), (2, "b@gmail.com"), (3, "c@gmail.com"),
    ...                                     (4, "d@yahoo.com"), (5, "e@web.de")])]
    ['a@gmail.com', 'd@yahoo.com', 'e@web.de', 'b@gmail.com', 'c@gmail.com']
    """
    queues: dict[str, list[tuple[int | None, str]]] = {}
    for item in recipients:
        queues.setdefault(item[1].rpartition("@")[2], []).append(item)
    if len(queues) <= 1:
        return next(iter(queues.values()), [])
    # Round k takes each domain's k-th recipient; big domains fill the tail, spread evenly
    # among the other domains' recipients while those last.
    ranked = [(rank, order, item) for order, queue in enumerate(queues.values())
              for rank, item in enumerate(queue)]
    ranked.sort(key=lambda t: (t[0], t[1]))
    return [item for _, _, item in ranked]


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
        self._log: SendLog | None = None
        #: Recipient domains whose hourly limit held rows back at the last claim.
        self.domains_full: list[str] = []

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
        """Rows not settled yet: pending, deferred, claimed or in flight."""
        return int(self.store.conn.execute(
            "SELECT count(*) FROM deliveries WHERE campaign_id = ? "
            "AND state IN ('pending', 'deferred', 'claimed', 'inflight')",
            (self.campaign_id,)).fetchone()[0])

    def next_retry_at(self) -> str | None:
        """When the earliest deferred row may be tried again (None: no deferred row)."""
        found = self.store.conn.execute(
            "SELECT min(next_attempt_at) FROM deliveries WHERE campaign_id = ? AND state = 'deferred'",
            (self.campaign_id,)).fetchone()[0]
        return str(found) if found else None

    def abandoned(self, state: str = "inflight") -> list[tuple[int, str]]:
        """(id, address) of rows runs that died (their owner is gone) left in ``state``."""
        rows = self.store.conn.execute(
            "SELECT id, email, owner, updated_at FROM deliveries WHERE campaign_id = ? AND state = ?",
            (self.campaign_id, state)).fetchall()
        return [(rid, email) for rid, email, owner, since in rows
                if not owner or not quota.owner_alive(owner, since)]

    def _abandoned_inflight(self) -> list[tuple[int, str, str | None]]:
        rows = self.store.conn.execute(
            "SELECT id, email, owner, updated_at FROM deliveries WHERE campaign_id = ? AND state = 'inflight'",
            (self.campaign_id,)).fetchall()
        return [(rid, email, owner) for rid, email, owner, since in rows
                if not owner or not quota.owner_alive(owner, since)]

    def unknown(self) -> list[str]:
        """Addresses whose message may or may not have been delivered (``unknown`` rows)."""
        return [row[0] for row in self.store.conn.execute(
            "SELECT email FROM deliveries WHERE campaign_id = ? AND state = 'unknown' ORDER BY id",
            (self.campaign_id,))]

    # -- writing

    def abandoned_claims(self) -> tuple[list[tuple[Row, SendOutcome | None, bool]], list[str]]:
        """What runs that died left ``claimed``, as their send logs tell it.

        Returns ([(row, answer or None, on the wire)], owners): an answered row gets its answer;
        a row on the wire without one may have been delivered; the others never reached it.
        """
        from .transport import SendOutcome

        claimed = self.store.conn.execute(
            "SELECT id, email, contact_id, message_id, attempts, owner, updated_at FROM deliveries "
            "WHERE campaign_id = ? AND state = 'claimed'", (self.campaign_id,)).fetchall()
        dead = [row for row in claimed if not row[5] or not quota.owner_alive(row[5], row[6])]
        owners = sorted({row[5] for row in dead if row[5]})
        events: dict[int, tuple[Any, ...]] = {}
        for owner in owners:
            for delivery_id, *line in self.log.lines(owner):
                events[delivery_id] = tuple(line)  # the last line about a row tells
        found: list[tuple[Row, SendOutcome | None, bool]] = []
        for rid, email, contact, mid, attempts, _owner, _since in dead:
            row = Row(rid, email, contact, mid or "", attempts)
            event = events.get(rid)
            if event is None:
                found.append((row, None, False))
            elif event[0] == "wire":
                found.append((row, None, True))
            else:
                kind, code, status, reply, stage, concerns = event
                found.append((row, SendOutcome(kind, code, status, reply or "", stage, concerns), True))
        return found, owners

    def mark_abandoned(self) -> list[str]:
        """Settle the rows runs that died left: returns the addresses now ``unknown``.

        ``inflight`` rows (left by versions before the send log) and ``claimed`` rows the log
        says were on the wire unanswered become ``unknown``; answered ones get their answer;
        the others go back to pending. In the same transaction each dead run's quota
        reservation is settled: what it handed to the server and may have been accepted
        (sent or unknown) counts, the rest is given back (:func:`quota.release_run`).
        """
        dead = self._abandoned_inflight()
        claims, owners = self.abandoned_claims()
        if not (dead or claims):
            return []
        handed: dict[str, int] = {}
        for _rid, _email, owner in dead:
            handed[owner or ""] = handed.get(owner or "", 0) + 1
        with self.store.transaction():
            self.store.conn.executemany(
                "UPDATE deliveries SET state = 'unknown', owner = NULL, updated_at = ?, quota_counted = 1, "
                "reason = 'on the wire when a send run died: perhaps sent, not resent' "
                "WHERE id = ? AND state = 'inflight'",
                [(now_iso(), rid) for rid, _, _ in dead])
            if claims:
                owner_of = dict(self.store.conn.execute(
                    "SELECT id, owner FROM deliveries WHERE campaign_id = ? AND state = 'claimed'",
                    (self.campaign_id,)).fetchall())
                for row, outcome, wire in claims:
                    if outcome_state(row.attempts, outcome, wire) in ("sent", "unknown"):
                        key = owner_of.get(row.id) or ""
                        handed[key] = handed.get(key, 0) + 1
                self.write_outcomes([c[0] for c in claims], [c[1] for c in claims], [c[2] for c in claims])
            for owner in sorted(set(owners) | {o for _, _, o in dead if o}):
                quota.release_run(self.store, owner, handed.get(owner, 0))
        if owners:  # after the ledger has their answers: a kill in between loses nothing
            self.forget_log(owners)
        rows = {row.email for row, outcome, wire in claims if outcome is None and wire}
        return [email for _, email, _ in dead] + sorted(rows)

    @property
    def log(self) -> SendLog:
        """The store's send log (opened on first use)."""
        if self._log is None:
            self._log = SendLog.of(self.store)
        return self._log

    def log_wire(self, owner: str, row: Row, answered: Sequence[tuple[Row, SendOutcome]] = ()) -> None:
        """Commit to the send log that ``row`` goes on the wire now, after the answers since the
        last line (committed before the row's SMTP transaction starts)."""
        self.log.wire(owner, row, answered)

    def forget_log(self, owners: Iterable[str], rows: Iterable[Row] | None = None) -> None:
        """Drop send-log lines of ``owners`` (only about ``rows`` when given): the ledger has them."""
        self.log.forget(owners, rows)

    def close_log(self, owner: str) -> None:
        """The run ``owner`` is over: drop its send-log lines and close the log (if it was opened)."""
        if self._log is not None:
            log, self._log = self._log, None
            log.forget([owner])
            log.close()

    def resolve(self, state: str, emails: Iterable[str] | None = None) -> list[str]:
        """Settle ``unknown`` rows as ``sent`` or ``pending`` (sent again by the next run).

        ``emails`` None: every unknown row. Returns the addresses settled; an address given
        that is not an unknown row of this campaign is a :class:`CampaignError`.
        """
        if state not in RESOLUTIONS:
            raise CampaignError(f"an unknown row can be settled as sent or pending, not {state!r}")
        unknown = self.unknown()
        if emails is None:
            chosen = unknown
        else:
            chosen = list(dict.fromkeys(e.strip().lower() for e in emails))
            stray = [e for e in chosen if e not in set(unknown)]
            if stray:
                raise CampaignError(f"not an unknown recipient of this campaign: {', '.join(stray[:5])}"
                                    + (" ..." if len(stray) > 5 else ""))
        now = now_iso()
        reason = f"unknown, settled as {state} by the analyst on {now[:10]}"
        with self.store.transaction():
            if state == "sent":
                self._count_settled_sends(chosen)
            self.store.conn.executemany(
                "UPDATE deliveries SET state = ?, reason = ?, updated_at = ?, "
                "sent_at = CASE WHEN ? = 'sent' THEN coalesce(sent_at, updated_at) ELSE sent_at END "
                "WHERE campaign_id = ? AND email = ? AND state = 'unknown'",
                [(state, reason, now, state, self.campaign_id, e) for e in chosen])
        return chosen


    def _count_settled_sends(self, emails: Sequence[str]) -> None:
        """Unknown rows settled as sent that the quota does not count yet (made before it
        counted unknown rows) count toward the instant they were attempted."""
        found = self.store.conn.execute(
            "SELECT id, coalesce(sent_at, updated_at) FROM deliveries WHERE campaign_id = ? AND state = 'unknown' "
            "AND quota_counted = 0 AND email IN (SELECT value FROM json_each(?))",
            (self.campaign_id, json.dumps(list(emails)))).fetchall()
        per_instant: dict[str, int] = {}
        for _rid, at in found:
            per_instant[at] = per_instant.get(at, 0) + 1
        for at, count in sorted(per_instant.items()):
            quota.count_sends(self.store, count, at=dt.datetime.fromisoformat(at))
        self.store.conn.executemany("UPDATE deliveries SET quota_counted = 1 WHERE id = ?",
                                    [(rid,) for rid, _ in found])

    def add_recipients(self, to_add: Iterable[tuple[int | None, str]], back: Iterable[str],
                       excluded: Iterable[tuple[str, int | None, str]]) -> None:
        """The audience's changes: new rows ``pending`` ((contact id, address)), excluded rows
        ``back`` to pending, and (address, contact id, reason) rows ``excluded`` unless sent."""
        now, cid, conn = now_iso(), self.campaign_id, self.store.conn
        conn.executemany(
            "INSERT OR IGNORE INTO deliveries (campaign_id, contact_id, email, state, created_at, "
            "updated_at) VALUES (?, ?, ?, 'pending', ?, ?)",
            [(cid, contact, email, now, now) for contact, email in interleave_domains(to_add)])
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
              new_message_id: Callable[[], str], relay: str | None = None,
              hourly_limit: int | None = None, relay_limit: tuple[int, dt.datetime] | None = None) -> Claim:
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
        limits = domain_limits(self.store)
        if limits:
            candidates = self._within_domain_limits(candidates, limits, want)
        if not candidates:
            return Claim.nothing()
        if relay is not None and (hourly_limit is not None or relay_limit is not None):
            from .relays import relay_count

            # A relay's own daily (limit, since) and hourly limits, counted from the ledger inside
            # the claim's write transaction: two processes cannot both take the last room.
            room = len(candidates)
            if hourly_limit is not None:
                room = min(room, hourly_limit - relay_count(self.store, relay, clock.now() - dt.timedelta(hours=1)))
            if relay_limit is not None:
                room = min(room, relay_limit[0] - relay_count(self.store, relay, relay_limit[1]))
            if room < len(candidates):
                if room <= 0:
                    return Claim([], "", 0)
                candidates = candidates[:room]
        day, granted = quota.reserve(self.store, len(candidates), owner=owner, settings=settings)
        rows = [Row(rid, email, contact, mid or new_message_id(), attempts)
                for rid, email, contact, mid, attempts in candidates[:granted]]
        if limits:
            taken = Counter(d for d in (_domain(r.email) for r in rows) if d in limits)
            conn.executemany(
                "INSERT INTO domain_sends (domain, hour, count) VALUES (?, ?, ?) "
                "ON CONFLICT (domain, hour) DO UPDATE SET count = count + excluded.count",
                [(d, _hour(), n) for d, n in taken.items()])
        # Which relay takes each message (NULL: a run without several relays).
        conn.executemany(
            "UPDATE deliveries SET state = 'claimed', message_id = ?, owner = ?, updated_at = ?, "
            "relay = ? WHERE id = ?",
            [(r.message_id, owner, now, relay, r.id) for r in rows])
        return Claim(rows, day, granted)

    def _within_domain_limits(self, candidates: list[Any], limits: dict[str, int], want: int) -> list[Any]:
        """The candidates whose recipient domain has room this hour (capped domains counted in
        ``domain_sends``, inside the claim's write transaction); rows of a full domain wait."""
        used = dict(self.store.conn.execute("SELECT domain, count FROM domain_sends WHERE hour = ?", (_hour(),)))
        full = sorted(d for d, cap in limits.items() if used.get(d, 0) >= cap)
        self.domains_full = full
        if full and any(_domain(c[1]) in full for c in candidates):
            # Look past the full domains' rows (pending ones; deferred rows keep their turn).
            marks = ", ".join("?" * len(full))
            candidates = [c for c in candidates if _domain(c[1]) not in full]
            candidates += self.store.conn.execute(
                f"SELECT {_CLAIM_COLUMNS} WHERE campaign_id = ? AND state = 'pending' "
                f"AND substr(email, instr(email, '@') + 1) NOT IN ({marks}) AND id > ? ORDER BY id LIMIT ?",
                (self.campaign_id, *full, max((c[0] for c in candidates), default=0),
                 max(0, want - len(candidates)))).fetchall()
        kept, taken = [], Counter[str]()
        for candidate in candidates:
            domain = _domain(candidate[1])
            if domain in limits:
                if used.get(domain, 0) + taken[domain] >= limits[domain]:
                    if domain not in full:
                        full.append(domain)
                    continue
                taken[domain] += 1
            kept.append(candidate)
        return kept

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
            if outcome is not None and state == "failed" and outcome.code and outcome.code >= 500:
                written.rejections.append((row, outcome))
            if outcome is None or state == "unknown":
                updates[state].append((now, row.id))
                continue
            attempts = row.attempts + 1
            next_at = _next_attempt(attempts) if state == "deferred" else None
            updates[state].append((attempts, outcome.code, outcome.status, outcome.reply or None,
                                   _reason(state, outcome, attempts), next_at, now,
                                   now if state == "sent" else None, row.id))
        conn = self.store.conn
        for state in _WRITTEN:
            if updates[state]:
                conn.executemany(
                    f"UPDATE deliveries SET state = '{state}', owner = NULL, attempts = ?, smtp_code = ?, "
                    "smtp_status = ?, smtp_reply = ?, reason = ?, next_attempt_at = ?, updated_at = ?, "
                    "sent_at = coalesce(?, sent_at) WHERE id = ?",
                    updates[state])
        relay_ids = [(o.provider_id, r.id) for r, o in zip(rows, outcomes) if o is not None and o.provider_id]
        if relay_ids:  # only when the sender was asked to capture them (an ESP that echoes them)
            conn.executemany("UPDATE deliveries SET provider_message_id = ? WHERE id = ?", relay_ids)
        if updates["untouched"]:
            conn.executemany(
                "UPDATE deliveries SET state = 'pending', owner = NULL, updated_at = ? WHERE id = ?",
                updates["untouched"])
        if updates["unknown"]:
            conn.executemany(
                "UPDATE deliveries SET state = 'unknown', owner = NULL, updated_at = ?, quota_counted = 1, "
                "reason = 'interrupted while being sent: perhaps sent, not resent' WHERE id = ?", updates["unknown"])
        written.counts = {state: len(values) for state, values in updates.items()}
        return written


def settle_dead_runs(store: Store) -> dict[int, list[str]]:
    """Settle every run that died, in every campaign: its rows get what its send log says and
    its quota reservation gives back what it did not hand to the server. Returns the addresses
    now ``unknown``, by campaign id. The start of every send run calls it.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> settle_dead_runs(open_store(":memory:"))
        {}
    """
    found: dict[int, list[str]] = {}
    rows = store.conn.execute(
        "SELECT DISTINCT campaign_id FROM deliveries WHERE state IN ('claimed', 'inflight')").fetchall()
    for (campaign_id,) in rows:
        unknown = Ledger(store, campaign_id).mark_abandoned()
        if unknown:
            found[campaign_id] = unknown
    for owner in quota.dead_owners(store):
        # Nothing of it is left in the ledger (claims and reservations commit together): it
        # handed nothing that is not counted already.
        quota.release_run(store, owner, 0)
    return found


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
    if outcome.kind == "paused" or outcome.refuses_sender:
        # A refusal of our sender, relay or session says nothing of this recipient.
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
        if not outcome.code:
            return outcome.reply
        why = outcome.reason
        found = reasons.REASONS.get(why or "")
        return f"rejected by the server: {found.description} ({why})" if found else "rejected by the server"
    if state == "pending":
        return f"not sent: {outcome.reply or outcome.code}"
    return None


class SendLog:
    """What the connections of running sends are doing, one committed line per event.

    A line says a row goes on the wire (``wire``) or carries its answer (an outcome kind with
    the reply). It lives in its own small SQLite file beside the store (``PATH-sendlog``), so
    a sending thread's commit never waits for the store's writer; a ``:memory:`` store gets an
    in-memory log. Thread-safe: one lock around each use of its connection.

    Example::

        >>> log = SendLog(":memory:")
        >>> log.wire("run-1", Row(7, "ann@example.org", None, "<m@example.org>", 0))
        >>> log.lines("run-1")
        [(7, 'wire', None, None, None, None, None)]
        >>> log.forget(["run-1"]); log.lines("run-1")
        []
    """

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        try:
            conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
            if path != ":memory:":
                use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS send_log (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, "
                "delivery_id INTEGER NOT NULL, event TEXT NOT NULL, code INTEGER, status TEXT, "
                "reply TEXT, stage TEXT, concerns TEXT)")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the send log {path}: {exc}") from exc
        self._conn = conn

    def __repr__(self) -> str:
        return f"SendLog({self.path!r})"

    @classmethod
    def of(cls, store: Store) -> SendLog:
        """The send log of ``store`` (beside its file)."""
        return cls(":memory:" if store.path == ":memory:" else store.path + "-sendlog")

    def wire(self, owner: str, row: Row, answered: Sequence[tuple[Row, SendOutcome]] = ()) -> None:
        """Commit the answers received since the last line, then that ``row`` goes on the wire."""
        values: list[Any] = []
        for r, o in answered:
            values += (owner, r.id, o.kind, o.code, o.status, o.reply or None, o.stage, o.concerns)
        values += (owner, row.id, "wire", None, None, None, None, None)
        # One statement in autocommit mode: one commit, the lines together or not at all.
        with self._lock:
            self._conn.execute(_insert_lines(len(answered) + 1), values)

    def lines(self, owner: str) -> list[tuple[Any, ...]]:
        """(delivery id, event, code, status, reply, stage, concerns) of ``owner``, oldest first."""
        with self._lock:
            return self._conn.execute(
                "SELECT delivery_id, event, code, status, reply, stage, concerns FROM send_log "
                "WHERE owner = ? ORDER BY id", (owner,)).fetchall()

    def forget(self, owners: Iterable[str], rows: Iterable[Row] | None = None) -> None:
        """Drop the lines of ``owners`` (only those about ``rows`` when given)."""
        ids = None if rows is None else json.dumps([r.id for r in rows])
        with self._lock:
            for owner in owners:
                if ids is None:
                    self._conn.execute("DELETE FROM send_log WHERE owner = ?", (owner,))
                else:
                    self._conn.execute("DELETE FROM send_log WHERE owner = ? AND delivery_id IN "
                                       "(SELECT value FROM json_each(?))", (owner, ids))

    def count(self) -> int:
        """Lines in the log (0 when no run is sending and none died)."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM send_log").fetchone()[0])

    def close(self) -> None:
        """Close its connection."""
        with self._lock:
            self._conn.close()


@functools.lru_cache(maxsize=16)
def _insert_lines(count: int) -> str:
    return ("INSERT INTO send_log (owner, delivery_id, event, code, status, reply, stage, concerns) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * count))
