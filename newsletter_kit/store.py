"""The one SQLite file every part of newsletter_kit shares (sqlite-utils, WAL, foreign keys on).

The store holds contacts, lists, campaigns, the delivery ledger, unsubscribes, suppressions,
bounces, processed mailbox messages and settings (never a password). Several processes (a
notebook kernel, a cron job) may use the same file at once: WAL lets readers run beside one
writer, and :meth:`Store.transaction` takes the write lock up front (``BEGIN IMMEDIATE``) so a
read-check-write such as a quota reservation is atomic across processes.

Example::

    >>> from newsletter_kit.store import open_store
    >>> store = open_store(":memory:")
    >>> store.schema_version() == SCHEMA_VERSION
    True
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import clock
from .errors import StoreBusy, StoreError, StoreMissing


def _import_sqlite_utils() -> Any:
    """Import sqlite_utils without letting it import pandas and numpy.

    sqlite_utils imports pandas and numpy at import time whenever they are installed, only to
    map their scalar types to column types; that costs about a second. The store never inserts
    pandas or numpy values, so hide them while sqlite_utils loads (when nothing has imported
    them yet) and let pandas users import them as usual.
    """
    import sys

    hidden = [name for name in ("pandas", "numpy") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import sqlite_utils
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return sqlite_utils

DEFAULT_DB = Path("data") / "newsletter.db"
ENV_DB = "NEWSLETTER_KIT_DB"
#: How long a command waits for another process's write lock before giving up (StoreBusy).
BUSY_TIMEOUT = 30.0
ENV_BUSY_TIMEOUT = "NEWSLETTER_KIT_BUSY_TIMEOUT"

# Each migration takes the store from version i to i+1. Append, never edit a released one.
_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []


def _migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    _MIGRATIONS.append(fn)
    return fn


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    # Not conn.executescript(): it commits first, which would end the migration's transaction.
    for statement in script.split(";\n"):
        if statement.strip():
            conn.execute(statement)


@_migration
def _v1_initial(conn: sqlite3.Connection) -> None:
    _execute_script(conn, 
        """
        CREATE TABLE settings (
            section TEXT PRIMARY KEY,          -- 'smtp' | 'bounce'
            data TEXT NOT NULL,                -- JSON; password *references* only
            updated_at TEXT NOT NULL
        );

        CREATE TABLE contacts (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,        -- normalised: lowercased
            fields TEXT NOT NULL DEFAULT '{}', -- JSON: the CSV's other columns, for templates
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        CREATE TABLE lists (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        );

        CREATE TABLE list_members (
            list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
            contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
            added_at TEXT NOT NULL,
            PRIMARY KEY (list_id, contact_id)
        );
        CREATE INDEX list_members_contact ON list_members(contact_id);

        CREATE TABLE campaigns (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            list_name TEXT NOT NULL,
            subject TEXT NOT NULL,
            html TEXT NOT NULL,
            text TEXT,                          -- NULL: made from the HTML
            from_addr TEXT,                     -- NULL: the SMTP settings' from address
            status TEXT NOT NULL DEFAULT 'draft', -- draft | sending | paused | done
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        -- The delivery ledger: the truth about who was sent what. Written before the SMTP
        -- transaction ('inflight') and updated after it.
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            contact_id INTEGER REFERENCES contacts(id) ON DELETE SET NULL,
            email TEXT NOT NULL,
            state TEXT NOT NULL,                -- pending|inflight|sent|failed|deferred|unknown|excluded
            message_id TEXT UNIQUE,
            attempts INTEGER NOT NULL DEFAULT 0,
            smtp_code INTEGER,
            smtp_status TEXT,                   -- RFC 3463 code from the reply, when given
            smtp_reply TEXT,
            reason TEXT,                        -- why excluded / failed, in words
            next_attempt_at TEXT,               -- deferred rows: not before this time
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sent_at TEXT,
            owner TEXT,                         -- inflight rows: the run sending it (host|pid|start|run)
            UNIQUE (campaign_id, email)
        );
        CREATE INDEX deliveries_state ON deliveries(campaign_id, state);
        CREATE INDEX deliveries_email ON deliveries(email);
        -- (sent_at, state): review counts sent rows per day by range, from the index alone.
        CREATE INDEX deliveries_sent_at ON deliveries(sent_at, state);

        -- The daily quota: recipients accepted by the server per calendar day (configured zone).
        CREATE TABLE quota_days (
            day TEXT PRIMARY KEY,               -- YYYY-MM-DD in the configured time zone
            used INTEGER NOT NULL DEFAULT 0,    -- accepted by the server
            reserved INTEGER NOT NULL DEFAULT 0 -- held by running senders, not yet settled
        );
        CREATE TABLE quota_reservations (
            id INTEGER PRIMARY KEY,
            day TEXT NOT NULL,
            count INTEGER NOT NULL,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            owner TEXT NOT NULL,                -- host|pid|process start|run: tells a dead holder
            created_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX quota_reservations_owner ON quota_reservations(owner, day);

        -- Opt-outs. campaign NULL = unsubscribed from everything.
        CREATE TABLE unsubscribes (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL,
            campaign TEXT,
            source TEXT NOT NULL,               -- csv | mailto | one-click | manual
            created_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX unsubscribes_unique ON unsubscribes(email, coalesce(campaign, ''));

        -- Unreachable addresses: never mixed with opt-outs.
        CREATE TABLE suppressions (
            email TEXT PRIMARY KEY,
            since TEXT NOT NULL,
            reason TEXT NOT NULL,               -- threshold | manual | smtp
            bounce_count INTEGER NOT NULL DEFAULT 0,
            evidence TEXT NOT NULL DEFAULT '[]' -- JSON list of {bounce_id, date, kind, status, ...}
        );
        CREATE TABLE suppression_events (       -- audit trail: suppressed, lifted
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL,
            action TEXT NOT NULL,
            at TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX suppression_events_email ON suppression_events(email);

        -- Processed mailbox messages (bounce reports and anything else fetched), idempotency keys.
        CREATE TABLE mailbox_messages (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,               -- 'imap:user@host/folder' or 'file:/path'
            uidvalidity INTEGER,
            uid INTEGER,
            message_id TEXT,
            sha256 TEXT NOT NULL,
            kind TEXT,                          -- the report's kind
            error TEXT,                         -- why it could not be parsed, if so
            received_at TEXT,
            processed_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX mailbox_messages_uid ON mailbox_messages(source, uidvalidity, uid)
            WHERE uid IS NOT NULL;
        CREATE INDEX mailbox_messages_msgid ON mailbox_messages(message_id);
        CREATE INDEX mailbox_messages_sha ON mailbox_messages(sha256);

        CREATE TABLE mailbox_state (
            source TEXT PRIMARY KEY,
            uidvalidity INTEGER NOT NULL,
            last_uid INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL
        );

        -- One row per recipient per bounce report (also 5xx rejections seen while sending).
        CREATE TABLE bounces (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL,
            kind TEXT NOT NULL,                 -- hard|soft|policy|delayed|complaint|...
            status TEXT,
            action TEXT,
            diagnostic TEXT,
            remote_mta TEXT,
            campaign TEXT,
            delivery_id INTEGER REFERENCES deliveries(id) ON DELETE SET NULL,
            original_message_id TEXT,
            mailbox_message_id INTEGER REFERENCES mailbox_messages(id) ON DELETE SET NULL,
            report_key TEXT NOT NULL,           -- identifies the report: 'smtp:<delivery>' or msg key
            source TEXT NOT NULL,               -- imap | file | smtp
            bounced_at TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            UNIQUE (report_key, email)
        );
        -- (email, bounced_at): per-address first/last bounce straight from the index.
        CREATE INDEX bounces_email ON bounces(email, bounced_at);
        -- (campaign, kind, email): per-campaign distinct addresses by kind from the index alone.
        CREATE INDEX bounces_campaign ON bounces(campaign, kind, email);
        -- (bounced_at, kind): review counts each day's bounces by kind with a range read.
        CREATE INDEX bounces_bounced_at ON bounces(bounced_at, kind);
        -- reset_on_success asks, per sent delivery, whether a failure names it.
        CREATE INDEX bounces_delivery ON bounces(delivery_id);
        """
    )


#: Kinds with a column of their own in ``bounce_addresses``; any other kind counts as ``other``.
SUMMARY_KINDS = ("hard", "soft", "policy", "delayed", "complaint")
_SUMMARY_COLUMNS = ("email, hard, soft, policy, delayed, complaint, other, total, first_bounce, last_bounce,"
                    " last_id, last_kind, last_status, last_diagnostic")


def _summary_rows(where: str) -> str:
    """SELECT the ``bounce_addresses`` rows of the addresses ``where`` (on ``bounces``) picks.

    The latest bounce: the latest ``bounced_at``, ties going to the first recorded (lowest id),
    the rule the insert trigger applies one bounce at a time.
    """
    listed = ", ".join(f"'{k}'" for k in SUMMARY_KINDS)
    sums = "".join(f"SUM(kind = '{k}') AS {k}, " for k in SUMMARY_KINDS)
    return f"""
        SELECT g.email, {", ".join(f"g.{k}" for k in SUMMARY_KINDS)}, g.other, g.total, g.first_bounce,
               g.last_bounce, l.id, l.kind, l.status, l.diagnostic
        FROM (SELECT email, {sums}SUM(kind NOT IN ({listed})) AS other, COUNT(*) AS total,
                     MIN(bounced_at) AS first_bounce, MAX(bounced_at) AS last_bounce
              FROM bounces WHERE {where} GROUP BY email) g
        JOIN bounces l ON l.id = (SELECT id FROM bounces x WHERE x.email = g.email
                                  ORDER BY x.bounced_at DESC, x.id LIMIT 1)"""


def _summary_triggers() -> list[str]:
    """Triggers that keep ``bounce_addresses`` equal to :func:`_summary_rows` over all addresses.

    An insert adds to its address's row (the common case: one upsert); a delete, or an update
    of a column the summary shows, recomputes the addresses it touched from ``bounces``.
    """
    listed = ", ".join(f"'{k}'" for k in SUMMARY_KINDS)
    new_kinds = ", ".join(f"NEW.kind = '{k}'" for k in SUMMARY_KINDS)
    adds = ", ".join(f"{k} = {k} + excluded.{k}" for k in (*SUMMARY_KINDS, "other", "total"))
    later = ("(excluded.last_bounce > last_bounce OR"
             " (excluded.last_bounce = last_bounce AND excluded.last_id < last_id))")
    lasts = ", ".join(f"{c} = CASE WHEN {later} THEN excluded.{c} ELSE {c} END"
                      for c in ("last_bounce", "last_id", "last_kind", "last_status", "last_diagnostic"))

    def recompute(email: str) -> str:
        return (f"DELETE FROM bounce_addresses WHERE email = {email}; "
                f"INSERT INTO bounce_addresses ({_SUMMARY_COLUMNS}) {_summary_rows(f'email = {email}')};")

    return [
        f"""CREATE TRIGGER bounce_addresses_insert AFTER INSERT ON bounces BEGIN
            INSERT INTO bounce_addresses ({_SUMMARY_COLUMNS})
            VALUES (NEW.email, {new_kinds}, NEW.kind NOT IN ({listed}), 1, NEW.bounced_at, NEW.bounced_at,
                    NEW.id, NEW.kind, NEW.status, NEW.diagnostic)
            ON CONFLICT (email) DO UPDATE SET {adds},
                first_bounce = min(first_bounce, excluded.first_bounce), {lasts};
        END""",
        f"""CREATE TRIGGER bounce_addresses_delete AFTER DELETE ON bounces BEGIN
            {recompute("OLD.email")}
        END""",
        f"""CREATE TRIGGER bounce_addresses_update
            AFTER UPDATE OF id, email, kind, status, diagnostic, bounced_at ON bounces BEGIN
            {recompute("OLD.email")}
            {recompute("NEW.email")}
        END""",
    ]


@_migration
def _v2_review_at_scale(conn: sqlite3.Connection) -> None:
    # The review's tables at a million deliveries (benchmarks/review.py). Indexes let a query
    # read an index in the order it groups by, without sorting or visiting table rows; the
    # partial ones hold sent rows only, so the send path adds one entry when a row becomes
    # 'sent' and nothing before.
    _execute_script(conn,
        """
        -- Per address in time order with kind and status: the threshold counts group by email
        -- from this index alone. Replaces (email, bounced_at).
        DROP INDEX bounces_email;
        CREATE INDEX bounces_email ON bounces(email, bounced_at, kind, status);
        -- reset_on_success asks, per sent delivery, whether a failure names it: the kind too.
        DROP INDEX bounces_delivery;
        CREATE INDEX bounces_delivery ON bounces(delivery_id, kind);
        -- reset_on_success: an address's sent deliveries and their times.
        CREATE INDEX deliveries_sent_email ON deliveries(email, sent_at) WHERE state = 'sent';
        -- bounces_by_domain(with_sent=True): distinct addresses sent to, per domain, in order.
        -- The expression must stay the one review._domain_sql("email") writes.
        CREATE INDEX deliveries_sent_domain ON deliveries(substr(email, instr(email, '@') + 1), email)
            WHERE state = 'sent';
        -- bounces_by_address, pre-aggregated: one row per bouncing address, kept equal to an
        -- aggregate of bounces by the triggers below (a GROUP BY over 100,000 bounces and the
        -- latest one's row per address took a second). In email order (WITHOUT ROWID).
        CREATE TABLE bounce_addresses (
            email TEXT PRIMARY KEY,
            hard INTEGER NOT NULL, soft INTEGER NOT NULL, policy INTEGER NOT NULL,
            delayed INTEGER NOT NULL, complaint INTEGER NOT NULL, other INTEGER NOT NULL,
            total INTEGER NOT NULL,
            first_bounce TEXT NOT NULL,
            last_bounce TEXT NOT NULL,
            last_id INTEGER NOT NULL,           -- the latest bounce (ties: the first recorded)
            last_kind TEXT NOT NULL,
            last_status TEXT,
            last_diagnostic TEXT
        ) WITHOUT ROWID
        """
    )
    conn.execute(f"INSERT INTO bounce_addresses ({_SUMMARY_COLUMNS}) {_summary_rows('1')}")
    for trigger in _summary_triggers():
        conn.execute(trigger)


@_migration
def _v3_bounces_matched(conn: sqlite3.Connection) -> None:
    """A bounce counts only when it matches a delivery we made (issue 9): how it matched, or
    ``unmatched = 1``.  Rows recorded before are judged by the same rule, as far as the ledger
    can tell: a 5xx seen while sending, our Message-ID for that very address, or the campaign
    stamp plus an address that was sent that campaign."""
    _execute_script(
        conn,
        """
        -- matched_by: message_id | campaign | verp | smtp (NULL: unmatched); campaign: see _v4
        ALTER TABLE bounces ADD COLUMN matched_by TEXT;
        ALTER TABLE bounces ADD COLUMN unmatched INTEGER NOT NULL DEFAULT 0;
        UPDATE bounces SET matched_by = 'smtp' WHERE source = 'smtp';
        UPDATE bounces SET matched_by = 'message_id' WHERE matched_by IS NULL AND delivery_id IN
            (SELECT d.id FROM deliveries d WHERE d.id = bounces.delivery_id AND d.email = bounces.email);
        UPDATE bounces SET matched_by = 'campaign' WHERE matched_by IS NULL AND EXISTS
            (SELECT 1 FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id
             WHERE c.name = bounces.campaign AND d.email = bounces.email AND d.state IN ('sent', 'unknown'));
        UPDATE bounces SET unmatched = 1 WHERE matched_by IS NULL
        """,
    )


@_migration
def _v4_quota_by_instant(conn: sqlite3.Connection) -> None:
    """The daily limit counts sends by instant, not by a day re-keyed in the current zone (issue
    16 finding 8): ``quota_sends`` holds the sends counted per UTC minute, ``quota_zones`` when
    each time zone took effect (a zone change keeps the old zone's day counting for 24 h), and
    ``deliveries.quota_counted`` whether a row's send is in the quota (an ``unknown`` row is
    counted when it becomes unknown; one settled as sent later counts then). Each day's count
    so far is carried over at the start of that day in the configured zone. Safe to re-run."""
    import datetime as dt
    import json
    import zoneinfo

    conn.execute("CREATE TABLE IF NOT EXISTS quota_sends ("
                 "minute INTEGER PRIMARY KEY, "      # UTC minutes since the epoch
                 "count INTEGER NOT NULL)")          # sends counted in that minute
    conn.execute("CREATE TABLE IF NOT EXISTS quota_zones ("
                 "id INTEGER PRIMARY KEY, zone TEXT NOT NULL, "
                 "since INTEGER NOT NULL)")          # UTC seconds since the epoch
    columns = {row[1] for row in conn.execute("PRAGMA table_info(deliveries)")}
    if "quota_counted" not in columns:
        conn.execute("ALTER TABLE deliveries ADD COLUMN quota_counted INTEGER NOT NULL DEFAULT 0")
    row = conn.execute("SELECT data FROM settings WHERE section = 'smtp'").fetchone()
    zone_name = (json.loads(row[0]).get("timezone") if row else None) or "UTC"
    try:
        zone: dt.tzinfo = zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone, zone_name = dt.timezone.utc, "UTC"
    if conn.execute("SELECT count(*) FROM quota_sends").fetchone()[0] == 0:
        for day, used in conn.execute("SELECT day, used FROM quota_days WHERE used > 0").fetchall():
            try:
                start = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(0), tzinfo=zone)
            except ValueError:
                continue
            conn.execute("INSERT INTO quota_sends (minute, count) VALUES (?, ?) ON CONFLICT(minute) "
                         "DO UPDATE SET count = count + excluded.count", (int(start.timestamp()) // 60, used))
    if row and conn.execute("SELECT count(*) FROM quota_zones").fetchone()[0] == 0:
        conn.execute("INSERT INTO quota_zones (zone, since) VALUES (?, 0)", (zone_name,))


@_migration
def _v5_schedules(conn: sqlite3.Connection) -> None:
    """Campaign schedules, which relay took each message, and hourly counts per capped
    recipient domain (issue 17). Safe to run again."""
    _execute_script(
        conn,
        """
        CREATE TABLE IF NOT EXISTS schedules (
            campaign_id INTEGER PRIMARY KEY REFERENCES campaigns(id) ON DELETE CASCADE,
            start_at TEXT NOT NULL,          -- UTC ISO 8601
            tz TEXT NOT NULL,                -- the zone the window and days are read in
            send_window TEXT,                -- 'HH:MM-HH:MM' local, NULL: any hour
            days TEXT NOT NULL DEFAULT 'daily',
            priority INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        -- Messages claimed per capped recipient domain and clock hour (--domain-limit).
        CREATE TABLE IF NOT EXISTS domain_sends (
            domain TEXT NOT NULL, hour TEXT NOT NULL, count INTEGER NOT NULL,
            PRIMARY KEY (domain, hour)
        ) WITHOUT ROWID
        """,
    )
    # Which relay took each message (NULL: sent before relays, or without several).
    if "relay" not in {row[1] for row in conn.execute("PRAGMA table_info(deliveries)")}:
        conn.execute("ALTER TABLE deliveries ADD COLUMN relay TEXT")
    # A relay's limits count its messages since a moment, across campaigns.
    conn.execute("CREATE INDEX IF NOT EXISTS deliveries_relay ON deliveries(relay, updated_at) "
                 "WHERE relay IS NOT NULL")


@_migration
def _v4_campaign_stamp_matches_nobody(conn: sqlite3.Connection) -> None:
    """The public campaign stamp proves nothing (issue 16): bounces that matched only by it
    become unmatched (listed, counted only with ``--count-unmatched``, never in a rate or a
    guard) and lose the delivery they were pinned to.  Running it twice changes nothing."""
    conn.execute("UPDATE bounces SET matched_by = NULL, unmatched = 1, delivery_id = NULL"
                 " WHERE matched_by = 'campaign'")


@_migration
def _v4_bounce_reasons(conn: sqlite3.Connection) -> None:
    """Each bounce keeps its reason (issue 15: a name of :mod:`newsletter_kit.reasons`), which
    decides whom it counts against.  Rows recorded before get the reason their status and
    diagnostic give (complaints: ``feedback``).  The index serves an address's bounces by
    reason in time order (the soft window of the per-kind policy)."""
    from . import reasons  # the vocabulary: a leaf module, no dependency of its own

    columns = {row[1] for row in conn.execute("PRAGMA table_info(bounces)")}
    if "reason" not in columns:
        conn.execute("ALTER TABLE bounces ADD COLUMN reason TEXT")
    conn.create_function("nk_bounce_reason", 2, lambda status, text: reasons.classify(status, None, text),
                         deterministic=True)
    conn.execute("UPDATE bounces SET reason = CASE WHEN kind = 'complaint' THEN 'feedback'"
                 " ELSE nk_bounce_reason(status, diagnostic) END WHERE reason IS NULL")
    conn.execute("CREATE INDEX IF NOT EXISTS bounces_email_reason ON bounces(email, reason, bounced_at)")


@_migration
def _v4_esp_events(conn: sqlite3.Connection) -> None:
    """ESP event sources (issue 18): the id the relay's final 250 reply gives a delivery
    (``deliveries.provider_message_id``, SES and SendGrid), one row per provider event seen
    (``esp_events``: deduplication by the provider's event id, and the refused ones listed),
    a cursor per provider (``esp_state``) and the webhook tokens already used (``esp_tokens``,
    Mailgun replay), the saved files imported whole (``esp_files``); and the list check's findings per address (``contact_checks``).  Adds only
    new tables and a nullable column: nothing existing changes."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(deliveries)")}
    if "provider_message_id" not in columns:
        conn.execute("ALTER TABLE deliveries ADD COLUMN provider_message_id TEXT")
    _execute_script(
        conn,
        """
        CREATE INDEX IF NOT EXISTS deliveries_provider_message_id ON deliveries(provider_message_id)
            WHERE provider_message_id IS NOT NULL;
        CREATE TABLE IF NOT EXISTS esp_events (
            id INTEGER PRIMARY KEY,
            provider TEXT NOT NULL,             -- ses | sendgrid | mailgun | postmark
            event_id TEXT NOT NULL,             -- the provider's id (or a digest of the event)
            kind TEXT,                          -- hard | soft | policy | delayed | complaint | other
            email TEXT,
            outcome TEXT NOT NULL,              -- recorded | unmatched | ignored | refused
            matched_by TEXT,                    -- esp_id | provider_id | message_id | address
            detail TEXT,                        -- why refused or ignored
            origin TEXT,                        -- the file or API it came from
            at TEXT,
            seen_at TEXT NOT NULL,
            UNIQUE (provider, event_id)
        );
        CREATE TABLE IF NOT EXISTS esp_state (
            provider TEXT PRIMARY KEY,
            cursor TEXT NOT NULL,               -- provider-specific: a time, an offset, a page
            updated_at TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS esp_tokens (
            provider TEXT NOT NULL,
            token TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            PRIMARY KEY (provider, token)
        );
        -- Saved event files imported whole (no refusal, no error): a re-import skips them by digest.
        CREATE TABLE IF NOT EXISTS esp_files (
            sha256 TEXT PRIMARY KEY,
            name TEXT,
            events INTEGER NOT NULL,
            imported_at TEXT NOT NULL
        );
        -- The list check before a send (contacts check): the risks found per address, the latest
        -- check only; `campaign send --skip-risky` leaves out the addresses with any.
        CREATE TABLE IF NOT EXISTS contact_checks (
            email TEXT PRIMARY KEY,
            risks TEXT NOT NULL,                -- JSON list: syntax | no_mail_domain | role | disposable | typo
            detail TEXT,
            checked_at TEXT NOT NULL
        )
        """,
    )


@_migration
def _v4_store_maintenance(conn: sqlite3.Connection) -> None:
    """Backup and retention (issue 21): ``store_meta`` remembers the last backup and prune;
    ``pruned_deliveries`` and ``pruned_domains`` keep, per campaign and state, by hour of
    sending and by domain, how many ledger rows ``store prune`` deleted, so the statistics still
    add up once the detail is gone; an index gives the review's top bouncing addresses without
    a sort. Only new tables and an index (IF NOT EXISTS): safe on any store of version 3."""
    _execute_script(
        conn,
        """
        CREATE TABLE IF NOT EXISTS store_meta (
            key TEXT PRIMARY KEY,               -- last_backup | last_prune
            value TEXT NOT NULL,                -- JSON
            updated_at TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS pruned_deliveries (
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            state TEXT NOT NULL,
            hour TEXT NOT NULL,                 -- 'YYYY-MM-DDTHH' (UTC) of sent_at, else updated_at
            count INTEGER NOT NULL,
            PRIMARY KEY (campaign_id, state, hour)
        ) WITHOUT ROWID;
        -- The same rows by the recipient's domain (bounce rates per domain keep their base).
        CREATE TABLE IF NOT EXISTS pruned_domains (
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            state TEXT NOT NULL,
            domain TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (campaign_id, state, domain)
        ) WITHOUT ROWID;
        -- The review's "by address" table, top rows first (review.bounces_by_address(top=N)):
        -- read N index entries instead of sorting one row per bouncing address.
        CREATE INDEX IF NOT EXISTS bounce_addresses_total ON bounce_addresses(total DESC, email)
        """,
    )


@_migration
def _v4_everyday_lifecycle(conn: sqlite3.Connection) -> None:
    """Issue 19: archived and deleted campaigns (hidden, their deliveries kept for the
    statistics); erased addresses (a keyed hash only, so a later import cannot bring one back);
    the audit trail of opt-outs withdrawn. Safe to run on a store that has any of them."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(campaigns)")}
    for column in ("archived_at", "deleted_at"):
        if column not in columns:
            conn.execute(f"ALTER TABLE campaigns ADD COLUMN {column} TEXT")
    _execute_script(
        conn,
        """
        -- HMAC-SHA256 of the address under the store's signing key: no address is kept.
        CREATE TABLE IF NOT EXISTS erasures (
            address_hash TEXT PRIMARY KEY,
            erased_at TEXT NOT NULL
        );
        -- Opt-outs withdrawn (`unsubscribes remove`): who, which campaign, when, by whom.
        CREATE TABLE IF NOT EXISTS unsubscribe_events (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL,
            action TEXT NOT NULL,
            at TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX IF NOT EXISTS unsubscribe_events_email ON unsubscribe_events(email)
        """,
    )


SCHEMA_VERSION = len(_MIGRATIONS)


def now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds, the format every table uses.

    From :mod:`newsletter_kit.clock`, which the demo's history shifts into the past.
    """
    return clock.now_iso()


def busy_timeout() -> float:
    """Seconds to wait for another process's lock: ``$NEWSLETTER_KIT_BUSY_TIMEOUT``, else 30.

    Example::

        >>> busy_timeout() > 0
        True
    """
    raw = os.environ.get(ENV_BUSY_TIMEOUT, "").strip()
    if not raw:
        return BUSY_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86400:
        raise StoreError(f"${ENV_BUSY_TIMEOUT} must be a number of seconds (0 to 86400), not {raw!r}")
    return seconds


# SQLite's primary result codes for what is wrong with the file rather than with the SQL.
_BUSY, _LOCKED, _READONLY, _PERM, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 3, 10, 11, 13, 14, 26


def store_error(exc: sqlite3.Error, path: str, timeout: float | None = None) -> StoreError | None:
    """The :class:`StoreError` for a storage failure of the store at ``path`` (locked, read-only,
    unreadable, full, not a store); None for errors of the SQL itself.

    Example::

        >>> locked = sqlite3.OperationalError("database is locked")
        >>> locked.sqlite_errorcode = 5
        >>> print(store_error(locked, "data/newsletter.db", 30))
        the store data/newsletter.db is locked by another process (waited 30 s): what this command had not yet saved was rolled back; run it again when the other one is done
    """
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    code &= 0xFF
    name = Path(path).name
    if code in (_BUSY, _LOCKED):
        waited = f" (waited {timeout:g} s)" if timeout is not None else ""
        return StoreBusy(f"the store {path} is locked by another process{waited}: what this command "
                         "had not yet saved was rolled back; run it again when the other one is done")
    if code in (_READONLY, _PERM):
        return StoreError(f"the store {path} cannot be written ({exc}): check the permissions of the "
                          f"file and of its folder, where SQLite also writes {name}-wal and {name}-shm")
    if code == _CANTOPEN:
        return StoreError(f"cannot open the store {path} ({exc}): check that its folder exists and "
                          "that this user may read and write it")
    if code in (_NOTADB, _CORRUPT):
        return StoreError(f"cannot open the store {path}: it is not a newsletter-kit store, or it "
                          f"is damaged ({exc})")
    if code == _FULL:
        return StoreError(f"the disk holding the store {path} is full: nothing more was saved")
    if code == _IOERR:
        return StoreError(f"the store {path} cannot be read or written ({exc})")
    return None


class _Connection(sqlite3.Connection):
    """A connection whose storage failures are :class:`StoreError` (one line, an exit code)
    instead of sqlite3 exceptions; errors in the SQL itself stay as they are."""

    store_path = ""
    timeout_seconds: float | None = None

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            raise store_error(exc, self.store_path, self.timeout_seconds) or exc

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as exc:
            raise store_error(exc, self.store_path, self.timeout_seconds) or exc


def _prepare_path(path: Path, create: bool) -> None:
    """Check the store's path before SQLite sees it; make its folder when ``create``."""
    try:
        if path.is_dir():
            raise StoreError(f"the store path {path} is a folder: name the store's file, "
                             f"e.g. {path / DEFAULT_DB.name}")
        if path.exists():
            if not create and path.stat().st_size == 0:
                raise StoreMissing(f"{path} is an empty file, not a store: create one with "
                                   "`newsletter-kit init`")
            return
        ancestor = path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
    except OSError as exc:
        raise StoreError(f"cannot reach the store {path}: {exc.strerror or exc}") from None
    if not ancestor.is_dir():
        raise StoreError(f"cannot create the store {path}: {ancestor} is a file, not a folder")
    if not create:
        raise StoreMissing(f"no store at {path}: check the path (--db or ${ENV_DB}), or create "
                           "a store there with `newsletter-kit init`")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder {path.parent} for the store: "
                         f"{exc.strerror or exc}") from None


def use_wal(conn: sqlite3.Connection) -> None:
    """Switch a connection's file to WAL. Two processes opening a new file at once race for the
    switch, which SQLite answers with "database is locked" at once (no busy wait): retry briefly."""
    import time

    # The store's connection turns "locked" into StoreBusy: both mean "try again". While
    # another process runs the first migrations the switch can wait for seconds.
    deadline = time.monotonic() + busy_timeout()
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except (sqlite3.OperationalError, StoreBusy) as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def default_path() -> Path:
    """The store path: ``$NEWSLETTER_KIT_DB``, else ``data/newsletter.db``."""
    env = os.environ.get(ENV_DB)
    return Path(env) if env else DEFAULT_DB


class Store:
    """An open store. ``store.db`` is the sqlite-utils :class:`~sqlite_utils.Database`.

    Example::

        >>> store = Store(":memory:")
        >>> with store.transaction():
        ...     _ = store.db["lists"].insert({"name": "all", "created_at": now_iso()})
        >>> store.db["lists"].count
        1
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True):
        self.path = str(path)
        if self.path != ":memory:":
            _prepare_path(Path(self.path), create)
        timeout = busy_timeout()
        try:
            conn = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False,
                                   factory=_Connection)
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) or StoreError(
                f"cannot open the store {self.path}: {exc}") from None
        conn.store_path, conn.timeout_seconds = self.path, timeout
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if self.path != ":memory:":
                use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA recursive_triggers = ON")  # as sqlite-utils' Database sets it
            self._conn: sqlite3.Connection = conn
            self._db: Any = None
            if not create and self.path != ":memory:" and self.schema_version() == 0:
                raise StoreMissing(f"{self.path} is not a newsletter-kit store (no schema): create "
                                   "one with `newsletter-kit init`")
            self._migrate()
        except BaseException:
            conn.close()
            raise

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    @property
    def conn(self) -> sqlite3.Connection:
        """The sqlite3 connection every module's SQL runs on."""
        return self._conn

    @property
    def db(self) -> Any:
        """The sqlite-utils ``Database`` on the same connection, made on first use.

        The package itself runs plain SQL on :attr:`conn`; sqlite-utils' import is left to
        those who want its table API, so that a command-line start does not pay for it.
        """
        if self._db is None:
            self._db = _import_sqlite_utils().Database(self._conn)
        return self._db

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """A write transaction that holds the write lock from its start (``BEGIN IMMEDIATE``).

        Nested calls join the outer transaction (a savepoint), so a helper can always wrap
        its own writes. Everything inside commits together or not at all.
        """
        if self.conn.in_transaction:
            savepoint = f"nk_{secrets.token_hex(4)}"
            self.conn.execute(f"SAVEPOINT {savepoint}")
            try:
                yield self
            except BaseException:
                if self.conn.in_transaction:  # an error may have ended the whole transaction
                    self.conn.execute(f"ROLLBACK TO {savepoint}")
                    self.conn.execute(f"RELEASE {savepoint}")
                raise
            self.conn.execute(f"RELEASE {savepoint}")
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def signing_key(self) -> bytes:
        """The key that signs unsubscribe tokens, made on first use and kept in the store.

        Not a password: it only lets the holder forge opt-outs, and it must survive moves of
        the store, so it lives with the data it protects.
        """
        row = self.conn.execute("SELECT data FROM settings WHERE section = 'signing_key'").fetchone()
        if row:
            return bytes.fromhex(row[0])
        key = secrets.token_hex(32)
        with self.transaction():
            self.conn.execute(
                "INSERT OR IGNORE INTO settings (section, data, updated_at) VALUES ('signing_key', ?, ?)",
                (key, now_iso()),
            )
        row = self.conn.execute("SELECT data FROM settings WHERE section = 'signing_key'").fetchone()
        return bytes.fromhex(row[0])

    def schema_version(self) -> int:
        """The version of the schema in this file."""
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.path} has schema version {current}, newer than this "
                f"newsletter_kit understands ({SCHEMA_VERSION}): upgrade newsletter_kit"
            )
        for version in range(current, SCHEMA_VERSION):
            with self.transaction():
                # Read again under the write lock: another process opening the same new file
                # may have run this step since we looked (it would fail on its second run).
                if self.schema_version() > version:
                    continue
                _MIGRATIONS[version](self.conn)
                self.conn.execute(f"PRAGMA user_version = {version + 1}")


def open_store(path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
    """Open (creating and migrating as needed) the store at ``path`` or the default path.

    ``create=False`` opens only a store that exists (:class:`StoreMissing` otherwise): what
    commands that only read use, so that a mistyped path creates nothing.

    Example::

        >>> store = open_store(":memory:")
        >>> "deliveries" in store.db.table_names()
        True
    """
    return Store(path if path is not None else default_path(), create=create)
