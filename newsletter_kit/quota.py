"""The daily send limit, shared by every process that uses the same store.

The quota counts recipients the server **accepted, or may have accepted** (an ``unknown``
row: handed to the server, no answer), across all campaigns, by the *instant* each was
counted (per UTC minute, table ``quota_sends``). "Used today" is what was counted since the
start of the current day in the configured time zone (``SmtpSettings.timezone``); after a
change of zone, for 24 hours, since the earliest start of today among the zones in effect
during the last 24 hours. So a zone change never hands out a fresh limit: every send fits
within the limit of the current calendar day of the current zone *and* of every zone set in
the last 24 hours (:func:`counting_since`).

A sender *reserves* before it sends and *settles* after: a reservation is a write
transaction (``BEGIN IMMEDIATE``), so two senders started at the same moment can never hold
more than the limit between them. A reservation belongs to one run of one process (its
*owner* token: host, pid, process start time and a run id). When that process dies without
settling, its reservation stays held until the ledger settles the run
(:func:`newsletter_kit.ledger.settle_dead_runs`, at the start of the next send run): then only
what that run handed to the server counts (:func:`release_run`), the rest is given back.

Example::

    >>> from newsletter_kit.store import open_store
    >>> from newsletter_kit.settings import update_smtp_settings
    >>> store = open_store(":memory:")
    >>> smtp, _ = update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none",
    ...     daily_limit=3, from_addr="news@example.org", timezone="Europe/Rome")
    >>> owner = new_owner()
    >>> day, granted = reserve(store, 5, owner=owner, settings=smtp)
    >>> granted
    3
    >>> settle(store, owner=owner, day=day, released=3, accepted=2)
    >>> quota_status(store, smtp).to_dict()["used"]
    2
"""

from __future__ import annotations

import datetime as dt
import math
import os
import socket
import uuid
import zoneinfo
from dataclasses import dataclass
from typing import Any

from . import clock
from .settings import SmtpSettings, load_smtp_settings, require_smtp_settings
from .store import Store, now_iso

# A reservation held by another host cannot be checked for liveness; after this long it is
# considered abandoned (a send run settles every few seconds).
FOREIGN_OWNER_STALE = dt.timedelta(hours=1)

#: After a change of time zone, the old zone's day keeps counting this long.
ZONE_MEMORY = dt.timedelta(hours=24)
# Counted sends older than this are dropped (no window reaches back so far).
_KEEP_SENDS = dt.timedelta(days=8)

# Runs of *this* process that are still going: an owner token of this process that is not in
# here belongs to a run that ended (or was interrupted) without settling.
_ACTIVE_RUNS: set[str] = set()


# --- the day ------------------------------------------------------------------------------


def quota_day(moment: dt.datetime, zone: str) -> dt.date:
    """The calendar day ``moment`` (aware) falls on in ``zone``: the day the quota counts.

    Example::

        >>> utc = dt.timezone.utc
        >>> quota_day(dt.datetime(2026, 3, 1, 23, 30, tzinfo=utc), "Europe/Rome")
        datetime.date(2026, 3, 2)
    """
    return _aware(moment).astimezone(zoneinfo.ZoneInfo(zone)).date()


def next_reset(moment: dt.datetime, zone: str) -> dt.datetime:
    """The next local midnight in ``zone`` after ``moment``: when the quota resets.

    Example::

        >>> utc = dt.timezone.utc
        >>> next_reset(dt.datetime(2026, 3, 1, 12, 0, tzinfo=utc), "Europe/Rome").isoformat()
        '2026-03-02T00:00:00+01:00'
    """
    tz = zoneinfo.ZoneInfo(zone)
    tomorrow = _aware(moment).astimezone(tz).date() + dt.timedelta(days=1)
    midnight = dt.datetime.combine(tomorrow, dt.time(0, 0), tzinfo=tz)
    # A zone that skips midnight on a DST day (e.g. America/Havana): the day starts at the
    # first existing instant, which a round trip through UTC finds.
    return midnight.astimezone(dt.timezone.utc).astimezone(tz)


def day_start(moment: dt.datetime, zone: str) -> dt.datetime:
    """The instant the calendar day of ``moment`` began in ``zone`` (aware, in UTC).

    Example::

        >>> utc = dt.timezone.utc
        >>> day_start(dt.datetime(2026, 3, 1, 23, 30, tzinfo=utc), "Asia/Kolkata").isoformat()
        '2026-03-01T18:30:00+00:00'
    """
    tz = zoneinfo.ZoneInfo(zone)
    midnight = dt.datetime.combine(_aware(moment).astimezone(tz).date(), dt.time(0, 0), tzinfo=tz)
    # A skipped midnight (DST) resolves, through UTC, to the day's first existing instant.
    return midnight.astimezone(dt.timezone.utc)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _now(now: dt.datetime | None) -> dt.datetime:
    return _aware(now) if now else clock.now()


# --- owners -------------------------------------------------------------------------------


def _process_start(pid: int) -> str:
    """The start time of process ``pid`` ('' when unknown): tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()  # field 22 of stat(5), counted after the command name
    except (OSError, IndexError):
        return ""


def new_owner() -> str:
    """A token naming one run of this process, for reservations and inflight ledger rows.

    The run counts as alive until :func:`end_run` (or until the process exits).
    """
    pid = os.getpid()
    token = f"{socket.gethostname()}|{pid}|{_process_start(pid)}|{uuid.uuid4().hex[:12]}"
    _ACTIVE_RUNS.add(token)
    return token


def end_run(owner: str) -> None:
    """Mark a run of this process as finished: whatever it still holds is now abandoned."""
    _ACTIVE_RUNS.discard(owner)


def owner_alive(owner: str, since: str | None = None, *, now: dt.datetime | None = None) -> bool:
    """Whether the run named by ``owner`` may still be going.

    On this host: the process exists with the same start time (and, for this very process,
    the run has not ended). On another host nothing can be checked, so an owner is alive
    until ``since`` (when it last wrote) is older than :data:`FOREIGN_OWNER_STALE`.
    """
    host, pid_text, start, _run = (owner.split("|") + ["", "", ""])[:4]
    if host != socket.gethostname():
        if not since:
            return False
        last = dt.datetime.fromisoformat(since)
        return _now(now) - _aware(last) < FOREIGN_OWNER_STALE
    pid = int(pid_text or 0)
    if pid == os.getpid():
        return owner in _ACTIVE_RUNS
    return _pid_running(pid) and _process_start(pid) == start


def _pid_running(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


# --- the window: which sends count today ----------------------------------------------------


def _epoch(moment: dt.datetime) -> int:
    return int(_aware(moment).timestamp())


def zones_in_effect(store: Store, zone: str, *, now: dt.datetime | None = None) -> list[str]:
    """``zone`` and every time zone in effect during the last :data:`ZONE_MEMORY` (as recorded
    by :func:`note_zone`), oldest first.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> zones_in_effect(open_store(":memory:"), "Europe/Rome")
        ['Europe/Rome']
    """
    moment = _now(now)
    cutoff, until = _epoch(moment - ZONE_MEMORY), _epoch(moment)
    rows = store.conn.execute(
        "SELECT zone, since FROM quota_zones WHERE since <= ? ORDER BY since, id", (until,)).fetchall()
    found: list[str] = []
    before = [z for z, since in rows if since <= cutoff]
    for z in ([before[-1]] if before else []) + [z for z, since in rows if since > cutoff] + [zone]:
        if z not in found:
            found.append(z)
    return found


def counting_since(store: Store, zone: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """The instant from which sends count toward today: the start of today in ``zone``, or,
    within 24 h of a change of zone, the earliest start of today among the zones in effect.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> now = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.timezone.utc)
        >>> counting_since(open_store(":memory:"), "Pacific/Honolulu", now=now).isoformat()
        '2026-02-28T10:00:00+00:00'
    """
    moment = _now(now)
    return min(day_start(moment, z) for z in zones_in_effect(store, zone, now=moment))


def note_zone(store: Store, zone: str, *, now: dt.datetime | None = None) -> bool:
    """Record that ``zone`` is the quota's time zone from ``now`` on (True when it changed).

    Called by every reservation and status, so a change of settings is noticed before the
    next send; ``settings smtp --timezone`` calls it at once.
    """
    moment = _now(now)
    last_zone = "SELECT zone FROM quota_zones ORDER BY since DESC, id DESC LIMIT 1"
    last = store.conn.execute(last_zone).fetchone()
    if last is not None and last[0] == zone:  # the usual case: no write, no savepoint
        return False
    with store.transaction():
        last = store.conn.execute(last_zone).fetchone()
        if last is not None and last[0] == zone:
            return False
        store.conn.execute("INSERT INTO quota_zones (zone, since) VALUES (?, ?)", (zone, _epoch(moment)))
    return True


def count_sends(store: Store, count: int, *, at: dt.datetime | None = None, zone: str | None = None,
                day: str | None = None) -> None:
    """Count ``count`` sends at the instant ``at`` (default now) toward the limit.

    ``day`` (default: the day of ``at`` in ``zone``, default the configured zone) is the row
    of the per-day history (``quota_days``) they are added to.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> store = open_store(":memory:")
        >>> count_sends(store, 2, at=dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.timezone.utc), zone="UTC")
        >>> store.conn.execute("SELECT day, used FROM quota_days").fetchall()
        [('2026-03-01', 2)]
    """
    if count <= 0:
        return
    moment = _now(at)
    if day is None:
        if zone is None:
            smtp = load_smtp_settings(store)
            zone = smtp.timezone if smtp else "UTC"
        day = quota_day(moment, zone).isoformat()
    minute = _epoch(moment) // 60
    with store.transaction():
        store.conn.execute(
            "INSERT INTO quota_sends (minute, count) VALUES (?, ?) "
            "ON CONFLICT(minute) DO UPDATE SET count = count + excluded.count", (minute, count))
        store.conn.execute(
            "INSERT INTO quota_days (day, used, reserved) VALUES (?, ?, 0) "
            "ON CONFLICT(day) DO UPDATE SET used = used + excluded.used", (day, count))
        store.conn.execute("DELETE FROM quota_sends WHERE minute < ?",
                           (_epoch(moment - _KEEP_SENDS) // 60,))


def _used_since(store: Store, since: dt.datetime, until: dt.datetime | None = None) -> int:
    """Sends counted from ``since`` up to ``until`` (default now): sends stamped after the
    clock's now (the demo's history runs the clock in the past) are not today's."""
    row = store.conn.execute(
        "SELECT coalesce(sum(count), 0) FROM quota_sends WHERE minute >= ? AND minute <= ?",
        (_epoch(since) // 60, _epoch(_now(until)) // 60)).fetchone()
    return int(row[0])


def _reserved(store: Store) -> int:
    row = store.conn.execute("SELECT coalesce(sum(count), 0) FROM quota_reservations WHERE count > 0").fetchone()
    return int(row[0])


# --- status -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaStatus:
    """Today's quota. ``remaining`` leaves out what running senders hold (``reserved``).

    ``counting_since``: the instant from which sends count toward today (the start of today
    in the configured zone, or earlier within 24 h of a change of zone).
    """

    limit: int
    used: int
    reserved: int
    remaining: int
    day: dt.date
    resets_at: dt.datetime
    counting_since: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``quota --json`` document: ``{"limit", "used", "remaining", "resets_at"}``."""
        return {
            "limit": self.limit, "used": self.used, "remaining": self.remaining,
            "resets_at": self.resets_at.isoformat(),
        }


def quota_status(store: Store, settings: SmtpSettings | None = None, *,
                 now: dt.datetime | None = None, reclaim: bool = True) -> QuotaStatus:
    """Today's limit, use and what remains.

    ``reclaim=False`` only reads (a dry run): the configured zone is not recorded as in effect.
    A dead run's reservation stays held until the ledger settles it (the next send run).

    Example::

        >>> quota_status(store).to_dict()      # doctest: +SKIP
        {'limit': 400, 'used': 120, 'remaining': 280, 'resets_at': '2026-03-02T00:00:00+01:00'}
    """
    settings = settings or require_smtp_settings(store)
    moment = _now(now)
    if reclaim:
        note_zone(store, settings.timezone, now=moment)
    since = counting_since(store, settings.timezone, now=moment)
    used, reserved = _used_since(store, since), _reserved(store)
    return QuotaStatus(
        limit=settings.daily_limit, used=used, reserved=reserved,
        remaining=max(0, settings.daily_limit - used - reserved),
        day=quota_day(moment, settings.timezone),
        resets_at=_next_window_move(store, settings.timezone, moment, since), counting_since=since,
    )


def _next_window_move(store: Store, zone: str, moment: dt.datetime, since: dt.datetime) -> dt.datetime:
    """When more can go: the first instant the counting window leaves sends behind (what
    "resets" means), in ``zone``.

    Candidates: the next two midnights of each zone in effect, and the moment an old zone
    stops counting (24 h after the change that replaced it). Without a recent change: the
    next midnight in ``zone``.
    """
    tz = zoneinfo.ZoneInfo(zone)
    zones = zones_in_effect(store, zone, now=moment)
    if len(zones) == 1:
        return next_reset(moment, zone)
    used = _used_since(store, since)
    changes = [since_ for (since_,) in store.conn.execute(
        "SELECT since FROM quota_zones WHERE since > ?", (_epoch(moment - ZONE_MEMORY),))]
    candidates = set()
    for z in zones:
        first = next_reset(moment, z)
        candidates |= {first.astimezone(dt.timezone.utc), next_reset(first, z).astimezone(dt.timezone.utc)}
    candidates |= {dt.datetime.fromtimestamp(c, dt.timezone.utc) + ZONE_MEMORY + dt.timedelta(seconds=1)
                   for c in changes}
    for candidate in sorted(c for c in candidates if c > moment):
        later = counting_since(store, zone, now=candidate)
        if later > since and (used == 0 or _used_since(store, later) < used):
            return candidate.astimezone(tz)
    return next_reset(moment, zone)


def describe_zone_change(old_zone: str, new_zone: str, before: QuotaStatus | None, after: QuotaStatus) -> str:
    """One sentence on what a change of time zone does to today's remaining (for the CLI).

    Example::

        >>> utc = dt.timezone.utc
        >>> st = QuotaStatus(5, 5, 0, 0, dt.date(2026, 3, 1), dt.datetime(2026, 3, 2, 10, tzinfo=utc),
        ...                  dt.datetime(2026, 2, 28, 10, tzinfo=utc))
        >>> print(describe_zone_change("UTC", "Pacific/Honolulu", st, st)[:65])
        time zone UTC -> Pacific/Honolulu: today's remaining stays 0 of 5
    """
    if before is None or before.remaining == after.remaining:
        change = f"stays {after.remaining} of {after.limit}"
    else:
        change = f"goes from {before.remaining} to {after.remaining} of {after.limit}"
    since = after.counting_since.isoformat() if after.counting_since else "today's start"
    return (f"time zone {old_zone} -> {new_zone}: today's remaining {change} (a change of zone never frees "
            f"sends: for 24 h the day counts from the earliest midnight of the zones in effect, now "
            f"{since}); more can go from {after.resets_at.isoformat()}")


# --- reserve and settle -------------------------------------------------------------------


def reserve(store: Store, count: int, *, owner: str, settings: SmtpSettings | None = None,
            now: dt.datetime | None = None) -> tuple[str, int]:
    """Reserve up to ``count`` sends of today's quota for ``owner``: ``(day, granted)``.

    ``granted`` may be smaller than ``count`` (0 when the day is used up). Atomic across
    processes; call it inside a larger :meth:`Store.transaction` to tie the reservation to
    other writes (the ledger marks those recipients in flight in the same transaction).
    """
    settings = settings or require_smtp_settings(store)
    moment = _now(now)
    day = quota_day(moment, settings.timezone).isoformat()
    with store.transaction():
        note_zone(store, settings.timezone, now=moment)
        used = _used_since(store, counting_since(store, settings.timezone, now=moment))
        granted = max(0, min(count, settings.daily_limit - used - _reserved(store)))
        if granted:
            _add_reserved(store, day, owner, granted)
    return day, granted


def _add_reserved(store: Store, day: str, owner: str, count: int) -> None:
    conn = store.conn
    conn.execute(
        "INSERT INTO quota_days (day, used, reserved) VALUES (?, 0, ?) "
        "ON CONFLICT(day) DO UPDATE SET reserved = reserved + excluded.reserved",
        (day, count),
    )
    host, pid = owner.split("|")[:2]
    conn.execute(
        "INSERT INTO quota_reservations (day, count, pid, host, owner, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(owner, day) DO UPDATE SET "
        "count = count + excluded.count, created_at = excluded.created_at",
        (day, count, int(pid), host, owner, now_iso()),
    )


def settle(store: Store, *, owner: str, day: str, released: int, accepted: int,
           now: dt.datetime | None = None) -> None:
    """Give back ``released`` reserved sends of ``day``; ``accepted`` of them count as used, at
    the instant ``now``.

    Call it in the same transaction that records the outcomes in the ledger.
    """
    if released <= 0 and accepted <= 0:
        return
    with store.transaction():
        store.conn.execute("UPDATE quota_days SET reserved = max(0, reserved - ?) WHERE day = ?",
                           (released, day))
        store.conn.execute(
            "UPDATE quota_reservations SET count = count - ?, created_at = ? WHERE owner = ? AND day = ?",
            (released, now_iso(), owner, day),
        )
        store.conn.execute("DELETE FROM quota_reservations WHERE owner = ? AND count <= 0", (owner,))
        count_sends(store, accepted, at=now, day=day)


def dead_owners(store: Store, *, now: dt.datetime | None = None) -> list[str]:
    """The owners of reservations whose run died (the ledger settles them: :func:`release_run`)."""
    rows = store.conn.execute(
        "SELECT owner, max(created_at) FROM quota_reservations GROUP BY owner ORDER BY owner").fetchall()
    return [owner for owner, since in rows if not owner_alive(owner, since, now=now)]


def release_run(store: Store, owner: str, handed: int) -> int:
    """Settle everything a dead run ``owner`` still holds: ``handed`` sends (what it handed to
    the server and may have been accepted, as the ledger tells) count as used, at the instant
    the run last settled or reserved; the rest is given back. Returns what was given back.
    """
    with store.transaction():
        rows = store.conn.execute(
            "SELECT id, day, count, created_at FROM quota_reservations WHERE owner = ? ORDER BY created_at",
            (owner,)).fetchall()
        if not rows:
            return 0
        for _rid, day, count, _at in rows:
            store.conn.execute("UPDATE quota_days SET reserved = max(0, reserved - ?) WHERE day = ?",
                               (count, day))
        store.conn.execute("DELETE FROM quota_reservations WHERE owner = ?", (owner,))
        held = sum(max(0, row[2]) for row in rows)
        last = rows[-1]
        count_sends(store, handed, at=dt.datetime.fromisoformat(last[3]), day=last[1])
    return max(0, held - handed)


# --- forecasts ----------------------------------------------------------------------------


def forecast_date(status: QuotaStatus, to_send: int) -> dt.date:
    """The day on which ``to_send`` more recipients will have been sent at the current limit.

    Assumes the campaign gets the whole quota from tomorrow on (other campaigns share it).

    Example::

        >>> st = QuotaStatus(limit=100, used=60, reserved=0, remaining=40,
        ...     day=dt.date(2026, 3, 1), resets_at=dt.datetime(2026, 3, 2))
        >>> forecast_date(st, 30), forecast_date(st, 41), forecast_date(st, 240)
        (datetime.date(2026, 3, 1), datetime.date(2026, 3, 2), datetime.date(2026, 3, 3))
    """
    if to_send <= status.remaining:
        return status.day
    return status.day + dt.timedelta(days=math.ceil((to_send - status.remaining) / status.limit))
