"""The daily send limit, shared by every process that uses the same store.

The quota counts recipients **accepted by the server** per calendar day in the configured time
zone (``SmtpSettings.timezone``), across all campaigns. A sender *reserves* before it sends and
*settles* after: a reservation is a write transaction (``BEGIN IMMEDIATE``), so two senders
started at the same moment can never hold more than the limit between them.

A reservation belongs to one run of one process (its *owner* token: host, pid, process start
time and a run id). When that process dies without settling, the next reservation or status
call reclaims it: its count is added to ``used``, because the server may have accepted those
messages before the crash (their ledger rows become ``unknown``), and a daily limit errs on the
safe side.

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
from .settings import SmtpSettings, require_smtp_settings
from .store import Store, now_iso

# A reservation held by another host cannot be checked for liveness; after this long it is
# considered abandoned (a send run settles every few seconds).
FOREIGN_OWNER_STALE = dt.timedelta(hours=1)

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


# --- status -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaStatus:
    """Today's quota. ``remaining`` leaves out what running senders hold (``reserved``)."""

    limit: int
    used: int
    reserved: int
    remaining: int
    day: dt.date
    resets_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        """The ``quota --json`` document: ``{"limit", "used", "remaining", "resets_at"}``."""
        return {
            "limit": self.limit, "used": self.used, "remaining": self.remaining,
            "resets_at": self.resets_at.isoformat(),
        }


def quota_status(store: Store, settings: SmtpSettings | None = None, *,
                 now: dt.datetime | None = None, reclaim: bool = True) -> QuotaStatus:
    """Today's limit, use and what remains; abandoned reservations are reclaimed first.

    ``reclaim=False`` only reads (a dry run): abandoned reservations then still count as held.

    Example::

        >>> quota_status(store).to_dict()      # doctest: +SKIP
        {'limit': 400, 'used': 120, 'remaining': 280, 'resets_at': '2026-03-02T00:00:00+01:00'}
    """
    settings = settings or require_smtp_settings(store)
    moment = _now(now)
    if reclaim:
        reclaim_abandoned(store, now=moment)
    day = quota_day(moment, settings.timezone)
    used, reserved = _day_row(store, day.isoformat())
    return QuotaStatus(
        limit=settings.daily_limit, used=used, reserved=reserved,
        remaining=max(0, settings.daily_limit - used - reserved), day=day,
        resets_at=next_reset(moment, settings.timezone),
    )


def _day_row(store: Store, day: str) -> tuple[int, int]:
    row = store.conn.execute("SELECT used, reserved FROM quota_days WHERE day = ?", (day,)).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


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
        used, reserved = _day_row(store, day)
        if used + reserved + count > settings.daily_limit and reclaim_abandoned(store, now=moment):
            used, reserved = _day_row(store, day)  # a dead run's share was holding some back
        granted = max(0, min(count, settings.daily_limit - used - reserved))
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


def settle(store: Store, *, owner: str, day: str, released: int, accepted: int) -> None:
    """Give back ``released`` reserved sends of ``day``; ``accepted`` of them count as used.

    Call it in the same transaction that records the outcomes in the ledger.
    """
    if released <= 0 and accepted <= 0:
        return
    with store.transaction():
        store.conn.execute(
            "UPDATE quota_days SET reserved = max(0, reserved - ?), used = used + ? WHERE day = ?",
            (released, accepted, day),
        )
        store.conn.execute(
            "UPDATE quota_reservations SET count = count - ?, created_at = ? WHERE owner = ? AND day = ?",
            (released, now_iso(), owner, day),
        )
        store.conn.execute("DELETE FROM quota_reservations WHERE owner = ? AND count <= 0", (owner,))


def reclaim_abandoned(store: Store, *, now: dt.datetime | None = None) -> int:
    """Turn the reservations of runs that died into ``used``; returns how many sends that was.

    They count as used, not as free: the server may have accepted those messages before the
    crash, and going over a provider's limit can get the account blocked.
    """
    rows = store.conn.execute(
        "SELECT id, day, count, owner, created_at FROM quota_reservations"
    ).fetchall()
    dead = [row for row in rows if not owner_alive(row[3], row[4], now=now)]
    if not dead:
        return 0
    with store.transaction():
        for rid, day, count, _owner, _since in dead:
            # Re-read inside the write lock: another process may have reclaimed it meanwhile.
            if store.conn.execute("DELETE FROM quota_reservations WHERE id = ?", (rid,)).rowcount:
                store.conn.execute(
                    "UPDATE quota_days SET reserved = max(0, reserved - ?), used = used + ? "
                    "WHERE day = ?", (count, count, day),
                )
    return sum(row[2] for row in dead)


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
