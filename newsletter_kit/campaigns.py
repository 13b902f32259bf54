"""Campaigns: create, send within today's quota, pause and resume; the delivery ledger.

The ledger (table ``deliveries``) holds one row per (campaign, recipient) and is the truth
about who was sent what. A row is marked ``inflight`` (with its Message-ID) in a committed
transaction *before* its SMTP transaction and gets its outcome *after* it, so a crash or a kill
never sends anyone the same campaign twice: a row found ``inflight`` when a run starts, left by
a run that died, is marked ``unknown``, reported, and never resent.

Rows move through these states:

- ``pending``: to send (also a message the server answered 421 to, or a dropped connection);
- ``inflight``: handed to the server right now;
- ``sent``: the server accepted it (2xx); it counts against the day's quota;
- ``deferred``: a 4xx at RCPT/DATA; retried by a later run after ``next_attempt_at``;
- ``failed``: a 5xx (also recorded as a bounce, so the threshold counts it), or gave up;
- ``excluded``: unsubscribed or suppressed before it was sent (``reason`` says which);
- ``unknown``: a run died while it was in flight: perhaps sent, never resent.

Sending goes in small batches: one transaction marks a batch in flight and reserves its quota,
the messages go out over one reused connection (or N in parallel), and one transaction records
their outcomes and the quota used, together with marking the batch after next in flight. A
ledger thread runs those transactions while the next batch is being sent, so the commits cost
no time on the wire. A crash leaves at most two batches ``unknown``.

Example::

    >>> import newsletter_kit as nk                                   # doctest: +SKIP
    >>> store = nk.open_store()                                       # doctest: +SKIP
    >>> nk.create_campaign(store, "spring", "all", "Hello {{ first_name }}",
    ...                    "<p>Hi {{ first_name }}</p>")              # doctest: +SKIP
    >>> report = nk.send_campaign(store, "spring")                    # doctest: +SKIP
    >>> report.sent, report.paused, nk.campaign_status(store, "spring")  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import audience, quota
from .errors import CampaignError
from .settings import (BounceSettings, SmtpSettings, load_bounce_settings, load_smtp_settings,
                       require_smtp_settings,
                       validate_address)
from .store import Store, now_iso
from .transport import SendJob, SenderPool, SendOutcome, SmtpFactory

#: A run stops after this many failed or deferred messages in a row (rather than burn the list).
MAX_CONSECUTIVE_FAILURES = 10
#: Recipients per ledger transaction and connection (a crash can leave two batches ``unknown``).
BATCH_PER_CONNECTION = 20
#: A deferred recipient is tried again after these delays (by attempt), then given up.
DEFERRAL_BACKOFF = (dt.timedelta(minutes=15), dt.timedelta(hours=1), dt.timedelta(hours=4),
                    dt.timedelta(hours=12))

#: ``progress(done, total, report)``: called as a run proceeds (a notebook's progress bar).
Progress = Callable[[int, int, "SendReport"], None]

_RETRYABLE = ("pending", "deferred")
_CLAIM_COLUMNS = "id, email, contact_id, message_id, attempts FROM deliveries"


# --- campaigns ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Campaign:
    """A campaign as stored: templates (Jinja) for subject, HTML and text."""

    id: int
    name: str
    list_name: str
    subject: str
    html: str
    text: str | None
    from_addr: str | None
    status: str
    created_at: str


_CAMPAIGN_COLUMNS = "id, name, list_name, subject, html, text, from_addr, status, created_at"


def get_campaign(store: Store, name: str) -> Campaign:
    """The campaign called ``name``, or :class:`CampaignError` naming the ones that exist."""
    row = store.conn.execute(
        f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE name = ?", (name,)).fetchone()
    if row is None:
        names = [r[0] for r in store.conn.execute("SELECT name FROM campaigns ORDER BY name")]
        known = f" (campaigns: {', '.join(names)})" if names else " (there is no campaign yet)"
        raise CampaignError(f"no campaign named {name!r}{known}")
    return Campaign(*row)


def create_campaign(store: Store, name: str, list_name: str, subject: str, html: str,
                    text: str | None = None, from_addr: str | None = None) -> Campaign:
    """Create a campaign for ``list_name``; the templates are compiled now.

    A template error (:class:`TemplateError`), an unknown list or a taken name fails before
    anything is written.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org", "first_name": "Ann"}])
        >>> create_campaign(store, "spring", "all", "Hi {{ first_name }}", "<p>Hello</p>").status
        'draft'
    """
    name = (name or "").strip()
    if not name:
        raise CampaignError("a campaign needs a name")
    if from_addr:
        from_addr = validate_address(from_addr, "from_addr")
    lists = audience.list_names(store)
    if list_name not in lists:
        known = ", ".join(lists) if lists else "none yet: import contacts first"
        raise CampaignError(f"no contact list named {list_name!r} (lists: {known})")
    renderer = _compile(name, subject, html, text, from_addr or "compile-check@example.org")
    renderer.check_fields(_field_names(store, list_name))
    now = now_iso()
    try:
        with store.transaction():
            store.conn.execute(
                "INSERT INTO campaigns (name, list_name, subject, html, text, from_addr, status, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'draft', ?, ?)",
                (name, list_name, subject, html, text, from_addr, now, now),
            )
    except sqlite3.IntegrityError:
        raise CampaignError(f"a campaign named {name!r} already exists") from None
    return get_campaign(store, name)


def list_campaigns(store: Store) -> list[dict[str, Any]]:
    """Every campaign, newest first: name, list, subject, status, created_at, sent.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> list_campaigns(open_store(":memory:"))
        []
    """
    rows = store.conn.execute(
        "SELECT c.name, c.list_name, c.subject, c.status, c.created_at, "
        "(SELECT count(*) FROM deliveries d WHERE d.campaign_id = c.id AND d.state = 'sent') "
        "FROM campaigns c ORDER BY c.created_at DESC, c.id DESC").fetchall()
    keys = ("name", "list", "subject", "status", "created_at", "sent")
    return [dict(zip(keys, row)) for row in rows]


def _compile(name: str, subject: str, html: str, text: str | None, from_addr: str) -> Any:
    """Compile the templates (no store, no network): TemplateError when they are broken."""
    from .messages import CampaignRenderer

    return CampaignRenderer(
        campaign=name, subject=subject, html=html, text=text, from_addr=from_addr,
        bounce_address=from_addr, signing_key=b"\0" * 32, unsubscribe_url=None,
        message_id_domain=from_addr.rpartition("@")[2],
    )


def _field_names(store: Store, list_name: str) -> set[str]:
    """The template fields the contacts of a list have (to catch a misspelt variable)."""
    rows = store.conn.execute(
        "SELECT DISTINCT j.key FROM list_members m JOIN lists l ON l.id = m.list_id "
        "JOIN contacts c ON c.id = m.contact_id, json_each(c.fields) j WHERE l.name = ?", (list_name,))
    return {row[0] for row in rows}


def _excluded_members(store: Store, campaign: Campaign, policy: str | None) -> dict[str, tuple[int, str]]:
    """The list's members the campaign excludes: address → (contact id, reason in words)."""
    reasons = audience.exclusion_reasons(store, campaign.name, policy)
    if not reasons:
        return {}
    rows = store.conn.execute(
        "SELECT c.id, c.email FROM list_members m JOIN contacts c ON c.id = m.contact_id "
        "WHERE m.list_id = (SELECT id FROM lists WHERE name = ?) AND c.email IN "
        "(SELECT email FROM unsubscribes UNION SELECT email FROM suppressions)", (campaign.list_name,))
    return {email: (cid, reasons[email]) for cid, email in rows if email in reasons}


def _envelope_sender(smtp: SmtpSettings, bounce: BounceSettings | None) -> str:
    """MAIL FROM: the bounce address, so bounces reach the mailbox we read."""
    return bounce.bounce_address if bounce and bounce.bounce_address else smtp.from_addr


def _renderer(store: Store, campaign: Campaign, smtp: SmtpSettings, envelope_from: str) -> Any:
    from .messages import CampaignRenderer

    from_addr = campaign.from_addr or smtp.from_addr
    return CampaignRenderer(
        campaign=campaign.name, subject=campaign.subject, html=campaign.html, text=campaign.text,
        from_addr=from_addr, bounce_address=envelope_from, signing_key=store.signing_key(),
        unsubscribe_url=smtp.unsubscribe_url, message_id_domain=from_addr.rpartition("@")[2],
    )


def preview_message(store: Store, name: str, email: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The campaign's message for one contact, as sending would build it.

    ``{"subject", "html", "text", "headers": {"From", "To"}}``; nothing is written or sent.

    Example::

        preview_message(store, "spring-sale", "ann@example.org", {"first_name": "Ann"})["subject"]
    """
    campaign = get_campaign(store, name)
    smtp = load_smtp_settings(store)
    if smtp is None:
        raise CampaignError("no SMTP settings yet: the preview needs the From address")
    renderer = _renderer(store, campaign, smtp, _envelope_sender(smtp, load_bounce_settings(store)))
    preview: dict[str, Any] = dict(renderer.render_preview(email, fields))
    preview["headers"] = {"From": campaign.from_addr or smtp.from_addr, "To": email}
    return preview


# --- status -------------------------------------------------------------------------------


def campaign_status(store: Store, name: str) -> dict[str, int]:
    """``{"total", "sent", "failed", "excluded", "pending", "unknown"}`` for a campaign.

    In flight and deferred count as pending; the audience is evaluated now, so list members
    not yet sent to count as pending, and those who opted out since as excluded.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org"}])
        >>> _ = create_campaign(store, "spring", "all", "Hi", "<p>Hello</p>")
        >>> campaign_status(store, "spring")
        {'total': 1, 'sent': 0, 'failed': 0, 'excluded': 0, 'pending': 1, 'unknown': 0}
    """
    campaign = get_campaign(store, name)
    eligible = {r.email for r in audience.eligible_recipients(store, campaign.name, campaign.list_name)}
    excluded = _excluded_members(store, campaign, None)
    counts = {"sent": 0, "failed": 0, "excluded": 0, "pending": 0, "unknown": 0}
    seen: set[str] = set()
    for email, state in store.conn.execute(
            "SELECT email, state FROM deliveries WHERE campaign_id = ?", (campaign.id,)):
        seen.add(email)
        if state in _RETRYABLE:
            counts["pending" if email in eligible else "excluded"] += 1
        elif state == "inflight":
            counts["pending"] += 1
        else:
            counts[state] += 1
    counts["pending"] += len(eligible - seen)
    counts["excluded"] += len(excluded.keys() - seen)
    return {"total": sum(counts.values()), **counts}


def forecast_finish(store: Store, campaign: str, *, now: dt.datetime | None = None) -> dt.date | None:
    """The day the campaign will have been sent to everyone at the current limit (None: done).

    Counts today's remaining quota first, then the full limit per day; assumes no other
    campaign shares the quota.

    Example::

        >>> forecast_finish(store, "spring")       # doctest: +SKIP
        datetime.date(2026, 3, 4)
    """
    pending = campaign_status(store, campaign)["pending"]
    if not pending:
        return None
    return quota.forecast_date(quota.quota_status(store, now=now), pending)


# --- the report of a run ------------------------------------------------------------------


@dataclass
class SendReport:
    """What one send run did.

    ``paused`` says why the run stopped before the campaign was done: ``"quota"`` (today's
    limit is used; ``resume_at`` says when it resets), ``"connection"`` (a 421 or a dropped
    connection; ``detail`` has the reply), ``"failures"`` (too many failures in a row),
    ``"stopped"`` (the Stop button). ``None``: finished, or ``--limit`` reached.
    ``unknown`` lists recipients found in flight from a run that died: never resent.
    """

    campaign: str
    dry_run: bool = False
    attempted: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    excluded: int = 0
    unknown: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    would_send: int = 0
    pending: int = 0
    paused: str | None = None
    resume_at: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``campaign send --json`` document."""
        return asdict(self)

    def summary(self) -> str:
        """A few human lines: what was done, and what comes next."""
        if self.dry_run:
            lines = [f"dry run of {self.campaign!r}: {self.would_send} message(s) would be sent now, "
                     f"{self.pending} pending in all, {self.excluded} newly excluded; nothing was sent "
                     "or written"]
        else:
            lines = [f"{self.campaign}: {self.sent} sent, {self.deferred} deferred, {self.failed} "
                     f"failed, {self.excluded} newly excluded; {self.pending} still pending"]
        if self.unknown:
            lines.append(f"{len(self.unknown)} recipient(s) were in flight when an earlier run "
                         f"died and are marked unknown (not resent): {', '.join(self.unknown[:10])}"
                         + (" ..." if len(self.unknown) > 10 else ""))
        if self.suppressed:
            lines.append(f"suppressed after SMTP rejections: {', '.join(self.suppressed)}")
        lines.append(self._next_step())
        return "\n".join(line for line in lines if line)

    def _next_step(self) -> str:
        if self.dry_run and self.paused == "quota":
            return f"today's send limit allows {self.would_send}; the rest would follow after {self.resume_at}"
        if self.paused == "quota":
            return (f"paused: today's send limit is used; run `send` again after {self.resume_at} "
                    "to continue")
        if self.paused == "connection":
            return f"paused: the server or the connection went away ({self.detail}); run `send` again later"
        if self.paused == "failures":
            return f"stopped after too many failures in a row (last: {self.detail}); check the settings and the list"
        if self.paused == "stopped":
            return "stopped on request; run `send` again to continue"
        if self.pending and not self.dry_run:
            return "run `send` again to continue" + (f" ({self.detail})" if self.detail else "")
        return ""


# --- sending ------------------------------------------------------------------------------


@dataclass
class _Claim:
    """Rows marked in flight together, with the quota reserved for them (``granted``)."""

    rows: list[_Row]
    day: str
    granted: int


@dataclass
class _Row:
    id: int
    email: str
    contact_id: int | None
    message_id: str
    attempts: int


class _Run:
    """One send run of one campaign: the state shared by its steps."""

    def __init__(self, store: Store, campaign: Campaign, smtp: SmtpSettings,
                 bounce: BounceSettings | None, renderer: Any, report: SendReport):
        self.store = store
        self.campaign = campaign
        self.smtp = smtp
        self.bounce = bounce
        self.renderer = renderer
        self.report = report
        self.envelope_from = _envelope_sender(smtp, bounce)
        self.owner = quota.new_owner()
        self.recipients: dict[str, audience.Recipient] = {}
        self.consecutive_failures = 0
        self.last_reply: str | None = None
        self.lock = threading.Lock()

    # -- at the start of a run

    def mark_abandoned(self) -> list[str]:
        """Rows left in flight by runs that died become ``unknown``; returns their addresses."""
        rows = self.store.conn.execute(
            "SELECT id, email, owner, updated_at FROM deliveries WHERE campaign_id = ? AND state = 'inflight'",
            (self.campaign.id,)).fetchall()
        dead = [(rid, email) for rid, email, owner, since in rows
                if not owner or not quota.owner_alive(owner, since)]
        if dead:
            with self.store.transaction():
                self.store.conn.executemany(
                    "UPDATE deliveries SET state = 'unknown', owner = NULL, updated_at = ?, reason = "
                    "'in flight when a send run died: perhaps sent, not resent' "
                    "WHERE id = ? AND state = 'inflight'",
                    [(now_iso(), rid) for rid, _ in dead])
        return [email for _, email in dead]

    def refresh_audience(self, write: bool = True) -> tuple[int, int]:
        """Compute the audience now: new rows ``pending``, opted-out rows ``excluded``.

        Returns (newly excluded, pending). With ``write=False`` (dry run) only counts.
        """
        campaign, conn = self.campaign, self.store.conn
        recipients = audience.eligible_recipients(self.store, campaign.name, campaign.list_name,
                                                  self.smtp.exclusion)
        self.recipients = {r.email: r for r in recipients}
        members = _excluded_members(self.store, campaign, self.smtp.exclusion)
        rows = dict(conn.execute("SELECT email, state FROM deliveries WHERE campaign_id = ?",
                                 (campaign.id,)).fetchall())
        to_add = [r for r in recipients if r.email not in rows]
        back = [e for e, s in rows.items() if s == "excluded" and e in self.recipients]
        gone = f"no longer on the list {campaign.list_name!r}"
        excluded = [(e, *members.get(e, (None, gone)))
                    for e, s in rows.items() if s in _RETRYABLE and e not in self.recipients]
        excluded += [(e, cid, reason) for e, (cid, reason) in members.items() if e not in rows]
        pending = len(to_add) + len(back) + sum(
            1 for e, s in rows.items() if s in _RETRYABLE and e in self.recipients)
        if write and (to_add or back or excluded):
            self._write_audience(to_add, back, excluded)
        return len(excluded), pending

    def _write_audience(self, to_add: list[audience.Recipient], back: list[str],
                        excluded: list[tuple[str, int | None, str]]) -> None:
        now, cid, conn = now_iso(), self.campaign.id, self.store.conn
        with self.store.transaction():
            conn.executemany(
                "INSERT OR IGNORE INTO deliveries (campaign_id, contact_id, email, state, created_at, "
                "updated_at) VALUES (?, ?, ?, 'pending', ?, ?)",
                [(cid, r.contact_id, r.email, now, now) for r in to_add])
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

    # -- batches

    def due_count(self) -> int:
        """Rows a run could send now (pending, or deferred whose time has come)."""
        return int(self.store.conn.execute(
            "SELECT count(*) FROM deliveries WHERE campaign_id = ? AND (state = 'pending' OR "
            "(state = 'deferred' AND next_attempt_at <= ?))", (self.campaign.id, now_iso())).fetchone()[0])

    def claim(self, want: int) -> _Claim:
        """Mark up to ``want`` due rows in flight and reserve their quota, in one transaction.

        No rows with ``granted == 0`` means today's quota is used; ``granted == -1``: nothing due.
        """
        with self.store.transaction():
            return self._claim(want)

    def _claim(self, want: int) -> _Claim:
        conn, now = self.store.conn, now_iso()
        if want <= 0:
            return _Claim([], "", -1)
        # Two index range scans (campaign_id, state), deferred first: they have waited. One
        # query with OR would scan the whole campaign and sort it, for every batch.
        candidates = conn.execute(
            f"SELECT {_CLAIM_COLUMNS} WHERE campaign_id = ? AND state = 'deferred' "
            "AND next_attempt_at <= ? ORDER BY id LIMIT ?", (self.campaign.id, now, want)).fetchall()
        if len(candidates) < want:
            candidates += conn.execute(
                f"SELECT {_CLAIM_COLUMNS} WHERE campaign_id = ? AND state = 'pending' ORDER BY id LIMIT ?",
                (self.campaign.id, want - len(candidates))).fetchall()
        if not candidates:
            return _Claim([], "", -1)
        day, granted = quota.reserve(self.store, len(candidates), owner=self.owner, settings=self.smtp)
        rows = [_Row(rid, email, contact, mid or self.renderer.new_message_id(), attempts)
                for rid, email, contact, mid, attempts in candidates[:granted]]
        conn.executemany(
            "UPDATE deliveries SET state = 'inflight', message_id = ?, owner = ?, updated_at = ? "
            "WHERE id = ?", [(r.message_id, self.owner, now, r.id) for r in rows])
        return _Claim(rows, day, granted)

    def jobs(self, rows: list[_Row]) -> list[SendJob]:
        """One job per row; its message is built by the thread that sends it."""
        renderer, envelope_from = self.renderer, self.envelope_from

        def build(row: _Row) -> Callable[[], bytes]:
            recipient = self.recipients.get(row.email)
            fields = recipient.fields if recipient is not None else self._fields_of(row)
            return lambda: renderer.render(row.email, fields, message_id=row.message_id)

        return [(envelope_from, row.email, build(row)) for row in rows]

    def _fields_of(self, row: _Row) -> dict[str, Any]:
        # A row another process added for a contact this run's audience did not include.
        found = self.store.conn.execute("SELECT fields FROM contacts WHERE email = ?", (row.email,)).fetchone()
        return json.loads(found[0]) if found else {}

    def after_outcome(self, outcome: SendOutcome, halt: threading.Event, limit: int) -> None:
        """Count failures in a row (called from sender threads); halt at the limit."""
        with self.lock:
            if outcome.kind != "sent":
                self.last_reply = f"{outcome.code or ''} {outcome.reply}".strip()
            if outcome.kind in ("failed", "deferred"):
                self.consecutive_failures += 1
                if self.consecutive_failures >= limit:
                    halt.set()
            elif outcome.kind == "sent":
                self.consecutive_failures = 0

    def settle(self, batch: _Claim, outcomes: list[SendOutcome | None], started: list[bool],
               claim_next: int = 0) -> _Claim:
        """Record every outcome and the quota used, and claim the next batch, in one transaction.

        One commit per batch instead of two: the next batch's rows are in flight (committed)
        before any of them is sent, as the ledger requires.
        """
        rows, now = batch.rows, now_iso()
        updates: dict[str, list[tuple[Any, ...]]] = {"sent": [], "deferred": [], "failed": [],
                                                     "pending": [], "unknown": [], "untouched": []}
        rejections: list[tuple[_Row, SendOutcome]] = []
        for row, outcome, was_started in zip(rows, outcomes, started):
            kind = self._ledger_state(row, outcome, was_started)
            if outcome is None or kind == "unknown":
                updates[kind].append((now, row.id))
                continue
            attempts = row.attempts + 1
            next_at = _next_attempt(attempts) if kind == "deferred" else None
            reason = _reason(kind, outcome, attempts)
            updates[kind].append((attempts, outcome.code, outcome.status, outcome.reply or None,
                                  reason, next_at, now, now if kind == "sent" else None, row.id))
            if kind == "failed" and outcome.code and outcome.code >= 500:
                rejections.append((row, outcome))
        accepted = len(updates["sent"])
        with self.store.transaction():
            self._write_outcomes(updates)
            quota.settle(self.store, owner=self.owner, day=batch.day, released=batch.granted,
                         accepted=accepted)
            for row, outcome in rejections:
                self.report.suppressed += self._record_rejection(row, outcome)
            following = self._claim(claim_next)
        self._count(updates)
        return following

    @staticmethod
    def _ledger_state(row: _Row, outcome: SendOutcome | None, started: bool) -> str:
        if outcome is None:
            # Not attempted: back to the queue. Handed to the server but no answer (an
            # interruption): perhaps sent.
            return "unknown" if started else "untouched"
        if outcome.kind == "paused":
            return "pending"
        if outcome.kind == "deferred" and row.attempts + 1 > len(DEFERRAL_BACKOFF):
            return "failed"
        return outcome.kind

    def _write_outcomes(self, updates: dict[str, list[tuple[Any, ...]]]) -> None:
        conn = self.store.conn
        for state in ("sent", "deferred", "failed", "pending"):
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

    def _record_rejection(self, row: _Row, outcome: SendOutcome) -> list[str]:
        from .bounces import record_smtp_rejection

        return record_smtp_rejection(
            self.store, email=row.email, campaign=self.campaign.name, delivery_id=row.id,
            code=int(outcome.code or 0), status=outcome.status, reply=f"{outcome.code} {outcome.reply}",
            settings=self.bounce)

    def _count(self, updates: dict[str, list[tuple[Any, ...]]]) -> None:
        report = self.report
        report.sent += len(updates["sent"])
        report.deferred += len(updates["deferred"])
        report.failed += len(updates["failed"])
        report.attempted += sum(len(updates[k]) for k in ("sent", "deferred", "failed", "pending", "unknown"))


def _next_attempt(attempts: int) -> str:
    delay = DEFERRAL_BACKOFF[min(attempts, len(DEFERRAL_BACKOFF)) - 1]
    return (dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + delay).isoformat()


def _reason(state: str, outcome: SendOutcome, attempts: int) -> str | None:
    if state == "failed" and outcome.kind == "deferred":
        return f"gave up after {attempts} temporary failures"
    if state == "failed":
        return "rejected by the server" if outcome.code else outcome.reply
    if state == "pending":
        return f"not sent: {outcome.reply or outcome.code}"
    return None


def send_campaign(store: Store, name: str, limit: int | None = None, dry_run: bool = False,
                  progress: Progress | None = None, connections: int = 1,
                  smtp_factory: SmtpFactory | None = None, password: str | None = None,
                  stop_event: threading.Event | None = None, *,
                  max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES) -> SendReport:
    """Send the campaign to whoever is still pending, as far as today's quota allows.

    Run it again to resume: after a quota pause (``report.paused == "quota"``), a dropped
    connection, a Stop, or a crash. ``limit`` caps the recipients attempted in this run;
    ``dry_run`` renders every pending message and reports what would be sent, writing nothing.
    ``connections`` > 1 sends over that many parallel connections (for a slow server).
    ``smtp_factory`` replaces ``smtplib.SMTP`` (tests); ``password`` overrides the reference.

    Example::

        >>> report = send_campaign(store, "spring", progress=lambda done, total, r: print(done, total))  # doctest: +SKIP
        >>> report.paused, report.resume_at                                # doctest: +SKIP
        ('quota', '2026-03-02T00:00:00+01:00')
    """
    if limit is not None and limit < 0:
        raise CampaignError("--limit must be zero or more")
    if connections < 1:
        raise CampaignError("--connections must be at least 1")
    campaign = get_campaign(store, name)
    smtp = require_smtp_settings(store)
    bounce = load_bounce_settings(store)
    renderer = _renderer(store, campaign, smtp, _envelope_sender(smtp, bounce))
    report = SendReport(campaign=campaign.name, dry_run=dry_run)
    run = _Run(store, campaign, smtp, bounce, renderer, report)
    try:
        if dry_run:
            return _dry_run(run, limit)
        report.unknown = run.mark_abandoned()
        report.excluded, _ = run.refresh_audience()
        _send_batches(run, limit, progress, connections, smtp_factory, password, stop_event,
                      max_consecutive_failures)
    finally:
        quota.end_run(run.owner)
    _finish(run)
    return report


def _dry_run(run: _Run, limit: int | None) -> SendReport:
    """Render every message a run would send; write nothing (no ledger, no quota)."""
    report, store = run.report, run.store
    report.unknown = [email for email, owner, since in store.conn.execute(
        "SELECT email, owner, updated_at FROM deliveries WHERE campaign_id = ? AND state = 'inflight'",
        (run.campaign.id,)) if not owner or not quota.owner_alive(owner, since)]
    report.excluded, report.pending = run.refresh_audience(write=False)
    states = dict(store.conn.execute(
        "SELECT email, state FROM deliveries WHERE campaign_id = ?", (run.campaign.id,)).fetchall())
    due = [r for email, r in run.recipients.items() if states.get(email, "pending") in _RETRYABLE]
    for recipient in due:
        run.renderer.render(recipient.email, recipient.fields, message_id=run.renderer.new_message_id())
    status = quota.quota_status(store, run.smtp, reclaim=False)
    report.would_send = min(len(due), status.remaining, limit if limit is not None else len(due))
    if report.would_send < len(due) and report.would_send == status.remaining:
        report.paused, report.resume_at = "quota", status.resets_at.isoformat()
    return report


def _send_batches(run: _Run, limit: int | None, progress: Progress | None, connections: int,
                  factory: SmtpFactory | None, password: str | None,
                  stop_event: threading.Event | None, max_failures: int) -> None:
    report = run.report
    due = run.due_count()
    total = min(due, limit) if limit is not None else due
    status = quota.quota_status(run.store, run.smtp)
    if due and status.remaining == 0:
        report.paused, report.resume_at = "quota", status.resets_at.isoformat()
        return
    if total == 0:
        return
    total = min(total, status.remaining)
    halt = threading.Event()
    with SenderPool(run.smtp, connections, password=password, factory=factory) as pool:
        _set_status(run, "sending")
        if progress:
            progress(0, total, report)
        size = BATCH_PER_CONNECTION * connections

        def next_size(not_counted: int) -> int:
            if halt.is_set() or (stop_event is not None and stop_event.is_set()):
                return 0
            # ``not_counted``: rows claimed or being settled, not yet in report.attempted.
            return size if limit is None else max(0, min(size, limit - report.attempted - not_counted))

        last = _pipeline(run, pool, run.claim(next_size(0)), next_size, halt, stop_event,
                         max_failures, lambda: progress and progress(
                             report.attempted, max(total, report.attempted), report))
        if last.granted == 0:
            report.paused = "quota"
            report.resume_at = quota.quota_status(run.store, run.smtp).resets_at.isoformat()
        elif stop_event is not None and stop_event.is_set() and not halt.is_set():
            report.paused = "stopped"
    if halt.is_set() and report.paused is None:
        report.paused = _halt_reason(run, stop_event, max_failures)
        report.detail = run.last_reply


def _pipeline(run: _Run, pool: SenderPool, claimed: _Claim, next_size: Callable[[int], int],
              halt: threading.Event, stop_event: threading.Event | None, max_failures: int,
              tick: Callable[[], Any]) -> _Claim:
    """Send batch after batch while a ledger thread settles the previous one and claims the next.

    The ledger's commits (the previous batch's outcomes and quota, the next batch marked in
    flight) overlap the SMTP conversation instead of sitting between batches. The store's
    connection is used by one thread at a time: the ledger thread only while this one sends.
    At most two batches are in flight (a crash leaves them ``unknown``). Returns the last claim
    (``granted == 0``: the quota ran out).
    """
    ledger = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="newsletter-ledger")
    previous: tuple[_Claim, list[SendOutcome | None], list[bool]] | None = None
    try:
        while claimed.rows:
            jobs = run.jobs(claimed.rows)
            in_flight = len(claimed.rows) + (len(previous[0].rows) if previous else 0)
            if previous is None:
                ahead = ledger.submit(run.claim, next_size(in_flight))
            else:
                ahead = ledger.submit(run.settle, *previous, claim_next=next_size(in_flight))
            outcomes: list[SendOutcome | None] = [None] * len(claimed.rows)
            started = [False] * len(claimed.rows)
            try:
                _send_one_batch(run, pool, jobs, outcomes, started, halt, stop_event, max_failures)
                following = ahead.result()
            except BaseException:
                # Interrupted (Ctrl-C in a notebook) or the ledger failed: record what was
                # answered; what was not tried goes back to pending, what was handed to the
                # server unanswered becomes unknown.
                concurrent.futures.wait([ahead])
                if not ahead.exception():
                    _release(run, ahead.result())
                run.settle(claimed, outcomes, started)
                raise
            previous = (claimed, outcomes, started)
            if halt.is_set() or (stop_event is not None and stop_event.is_set()):
                _release(run, following)
                following = _Claim([], "", -1)
            claimed = following
            try:
                tick()
            except BaseException:  # the caller's progress callback failed: leave nothing in flight
                run.settle(*previous)
                _release(run, claimed)
                raise
        if previous is not None:
            run.settle(*previous)
            tick()
        return claimed
    finally:
        ledger.shutdown(wait=True)


def _release(run: _Run, batch: _Claim) -> None:
    """A batch claimed ahead but not to be sent: back to pending, its quota given back."""
    if batch.rows:
        run.settle(batch, [None] * len(batch.rows), [False] * len(batch.rows))


def _send_one_batch(run: _Run, pool: SenderPool, jobs: list[SendJob], outcomes: list[SendOutcome | None],
                    started: list[bool], halt: threading.Event, stop_event: threading.Event | None,
                    max_failures: int) -> None:
    """Send a claimed batch, filling ``outcomes`` and ``started`` as answers come."""

    def after(index: int, outcome: SendOutcome) -> None:
        outcomes[index] = outcome
        run.after_outcome(outcome, halt, max_failures)

    pool.send_batch(jobs, halt, started, stop=stop_event, after=after)


def _halt_reason(run: _Run, stop_event: threading.Event | None, max_failures: int) -> str:
    if run.consecutive_failures >= max_failures:
        return "failures"
    if stop_event is not None and stop_event.is_set():
        return "stopped"
    return "connection"


def _set_status(run: _Run, status: str) -> None:
    with run.store.transaction():
        run.store.conn.execute("UPDATE campaigns SET status = ?, updated_at = ? WHERE id = ?",
                               (status, now_iso(), run.campaign.id))


def _finish(run: _Run) -> None:
    """Count what is left and set the campaign's status (done, paused or sending)."""
    report = run.report
    report.pending = int(run.store.conn.execute(
        "SELECT count(*) FROM deliveries WHERE campaign_id = ? AND state IN ('pending', 'deferred', 'inflight')",
        (run.campaign.id,)).fetchone()[0])
    if report.pending and report.paused is None:
        nxt = run.store.conn.execute(
            "SELECT min(next_attempt_at) FROM deliveries WHERE campaign_id = ? AND state = 'deferred'",
            (run.campaign.id,)).fetchone()[0]
        if nxt and not run.due_count():
            report.detail = f"deferred recipients are retried after {nxt}"
    _set_status(run, "done" if not report.pending else ("paused" if report.paused else "sending"))
