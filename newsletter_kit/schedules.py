"""Schedules: when a campaign may go out (a start time, a daily window, week days, a time zone).

A schedule is a promise about *when*, never about *who*: the delivery ledger still decides who
is due, the quota how many. A run inside a window stops at the window's edge (``paused ==
"window"``, exit 0) and :func:`newsletter_kit.runner.run_due` picks the campaign up again at the
next opening. Times are stored in UTC; the window and week days are read in the schedule's zone,
so "08:00-18:00 Europe/Paris" follows Paris across a daylight-saving change.

Example::

    >>> import datetime as dt
    >>> s = Schedule("spring", dt.datetime(2026, 12, 7, 8, tzinfo=dt.timezone.utc), "Europe/Paris",
    ...              parse_window("08:00-18:00"), parse_days("mon-fri"))
    >>> s.is_open(dt.datetime(2026, 12, 8, 10, tzinfo=dt.timezone.utc))   # Tuesday 11:00 in Paris
    True
    >>> s.is_open(dt.datetime(2026, 12, 12, 10, tzinfo=dt.timezone.utc))  # Saturday
    False
    >>> s.next_opening(dt.datetime(2026, 12, 12, 10, tzinfo=dt.timezone.utc)).isoformat()
    '2026-12-14T07:00:00+00:00'
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

from . import clock
from .errors import CampaignError
from .store import Store, now_iso

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = frozenset(range(7))
UTC = dt.timezone.utc

Window = tuple[dt.time, dt.time]


@dataclass(frozen=True)
class Schedule:
    """When one campaign may be sent: not before ``start_at`` (UTC), inside ``window`` (local
    start, end; an end before the start crosses midnight), on ``days`` (0 = Monday), in ``tz``."""

    campaign: str
    start_at: dt.datetime
    tz: str
    window: Window | None = None
    days: frozenset[int] = ALL_DAYS
    priority: int = 0

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.tz)

    def is_open(self, now: dt.datetime) -> bool:
        """Whether a send may run at ``now``."""
        return now >= self.start_at and self._opening_containing(now) is not None

    def closes_at(self, now: dt.datetime) -> dt.datetime | None:
        """When the opening that contains ``now`` ends (UTC); None when it never ends."""
        opening = self._opening_containing(now)
        if opening is None:
            return None
        return opening[1]

    def next_opening(self, now: dt.datetime) -> dt.datetime:
        """The first moment at or after ``now`` (and the start) at which a send may run (UTC)."""
        moment = max(now, self.start_at)
        if self._opening_containing(moment) is not None:
            return moment
        local_day = moment.astimezone(self.zone).date()
        for offset in range(0, 9):
            day = local_day + dt.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            start, _ = self._opening_on(day)
            if start >= moment:
                return start
        raise CampaignError(f"the schedule of {self.campaign!r} never opens")  # days is never empty

    def _opening_on(self, day: dt.date) -> tuple[dt.datetime, dt.datetime | None]:
        """The opening that starts on local ``day``: (start, end) in UTC; end None = open-ended."""
        zone = self.zone
        if self.window is None:
            start = dt.datetime.combine(day, dt.time(0), zone)
            end = None if self.days == ALL_DAYS else dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), zone)
        else:
            begin, finish = self.window
            start = dt.datetime.combine(day, begin, zone)
            end_day = day + dt.timedelta(days=1) if finish <= begin else day
            end = dt.datetime.combine(end_day, finish, zone)
        return start.astimezone(UTC), end.astimezone(UTC) if end is not None else None

    def _opening_containing(self, moment: dt.datetime) -> tuple[dt.datetime, dt.datetime | None] | None:
        local_day = moment.astimezone(self.zone).date()
        # An overnight window that opened yesterday may still be open now.
        for day in (local_day, local_day - dt.timedelta(days=1)):
            if day.weekday() not in self.days:
                continue
            start, end = self._opening_on(day)
            if start <= moment and (end is None or moment < end):
                return start, end
        return None

    def describe(self) -> str:
        """One line: 'from 2026-12-08 09:00 Europe/Paris, 08:00-18:00, mon-fri'."""
        local = self.start_at.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")
        parts = [f"from {local} {self.tz}"]
        if self.window:
            parts.append(format_window(self.window))
        if self.days != ALL_DAYS:
            parts.append(format_days(self.days))
        if self.priority:
            parts.append(f"priority {self.priority}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, object]:
        """The schedule as JSON-ready values (times in UTC ISO 8601)."""
        return {"campaign": self.campaign, "start_at": self.start_at.isoformat(), "tz": self.tz,
                "window": format_window(self.window) if self.window else None,
                "days": format_days(self.days), "priority": self.priority}


# --- parsing what users type ----------------------------------------------------------------

_TIME_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _parse_time(text: str) -> dt.time:
    match = _TIME_RE.match(text.strip())
    if not match:
        raise CampaignError(f"not a time of day (HH:MM): {text!r}")
    return dt.time(int(match.group(1)), int(match.group(2)))


def parse_window(text: str | None) -> Window | None:
    """'08:00-18:00' -> (08:00, 18:00); '22:00-06:00' crosses midnight; '' or None: no window.

    >>> parse_window("8:30-17:00")
    (datetime.time(8, 30), datetime.time(17, 0))
    """
    if not text:
        return None
    begin, sep, finish = text.partition("-")
    if not sep:
        raise CampaignError(f"a window is START-END, e.g. 08:00-18:00, not {text!r}")
    try:
        window = (_parse_time(begin), _parse_time(finish))
    except CampaignError as exc:
        raise CampaignError(f"window {text!r}: {exc} (e.g. 08:00-18:00)") from None
    if window[0] == window[1]:
        raise CampaignError(f"an empty window: {text!r} (leave --window out to send at any hour)")
    return window


def format_window(window: Window) -> str:
    return f"{window[0]:%H:%M}-{window[1]:%H:%M}"


def parse_days(text: str | None) -> frozenset[int]:
    """'mon-fri', 'sat,sun', 'fri-mon' (wraps), 'daily' or None: the week days, 0 = Monday.

    >>> sorted(parse_days("fri-mon"))
    [0, 4, 5, 6]
    """
    if not text or text.strip().lower() in ("daily", "all", "*"):
        return ALL_DAYS
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        first, sep, last = part.partition("-")
        if first not in DAY_NAMES or (sep and last not in DAY_NAMES):
            raise CampaignError(f"week days are {', '.join(DAY_NAMES)} as 'mon-fri' or 'sat,sun', not {text!r}")
        a = DAY_NAMES.index(first)
        b = DAY_NAMES.index(last) if sep else a
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


def format_days(days: frozenset[int]) -> str:
    if days == ALL_DAYS:
        return "daily"
    return ",".join(DAY_NAMES[d] for d in sorted(days))


def check_zone(name: str) -> str:
    """An IANA zone name, or :class:`CampaignError`."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CampaignError(f"unknown time zone {name!r} (an IANA name such as Europe/Paris)") from None
    return name


def parse_at(text: str | dt.datetime | None, tz: str) -> dt.datetime:
    """'2026-12-08 09:00' (read in ``tz``), an ISO time with an offset, or 'now' -> UTC.

    >>> parse_at("2026-12-08 09:00", "Europe/Paris").isoformat()
    '2026-12-08T08:00:00+00:00'
    """
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "now")):
        return clock.now().astimezone(UTC).replace(microsecond=0)
    if isinstance(text, dt.datetime):
        moment = text
    else:
        try:
            moment = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            raise CampaignError(f"not a date and time: {text!r} (e.g. '2026-12-08 09:00')") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(tz))
    return moment.astimezone(UTC)


# --- the store --------------------------------------------------------------------------------


def _campaign_id(store: Store, name: str) -> int:
    row = store.conn.execute("SELECT id, status FROM campaigns WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise CampaignError(f"no campaign named {name!r}")
    return int(row[0])


def schedule_campaign(store: Store, name: str, at: str | dt.datetime | None = None, *,
                      window: str | None = None, days: str | None = None, tz: str | None = None,
                      priority: int = 0) -> Schedule:
    """Schedule (or re-schedule) campaign ``name``; ``newsletter-kit run`` sends it when due.

    ``tz`` defaults to the SMTP settings' zone (else UTC).

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> from newsletter_kit.campaigns import create_campaign
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org"}])
        >>> _ = create_campaign(store, "spring", "all", "Hi", "<p>Hello</p>")
        >>> schedule_campaign(store, "spring", "2026-12-08 09:00", window="08:00-18:00",
        ...                   days="mon-fri", tz="Europe/Paris").describe()
        'from 2026-12-08 09:00 Europe/Paris, 08:00-18:00, mon,tue,wed,thu,fri'
    """
    campaign_id = _campaign_id(store, name)
    zone = check_zone(tz or _default_zone(store))
    schedule = Schedule(name, parse_at(at, zone), zone, parse_window(window), parse_days(days), int(priority))
    now = now_iso()
    with store.transaction():
        store.conn.execute(
            "INSERT INTO schedules (campaign_id, start_at, tz, send_window, days, priority, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (campaign_id) DO UPDATE SET start_at = excluded.start_at, "
            "tz = excluded.tz, send_window = excluded.send_window, days = excluded.days, priority = excluded.priority, "
            "updated_at = excluded.updated_at",
            (campaign_id, schedule.start_at.isoformat(), zone,
             format_window(schedule.window) if schedule.window else None, format_days(schedule.days),
             schedule.priority, now, now))
    return schedule


def unschedule_campaign(store: Store, name: str) -> bool:
    """Remove the schedule of ``name``; False when it had none. The campaign itself stays."""
    campaign_id = _campaign_id(store, name)
    with store.transaction():
        cursor = store.conn.execute("DELETE FROM schedules WHERE campaign_id = ?", (campaign_id,))
    return cursor.rowcount > 0


def get_schedule(store: Store, name: str) -> Schedule | None:
    """The schedule of campaign ``name``, or None."""
    for schedule in list_schedules(store, name=name):
        return schedule
    return None


def list_schedules(store: Store, *, name: str | None = None, pending_only: bool = False) -> list[Schedule]:
    """Schedules in the order ``run`` serves them: highest priority first, then earliest start.

    ``pending_only``: only campaigns not done (nor pruned, archived or deleted).
    """
    sql = ("SELECT c.name, s.start_at, s.tz, s.send_window, s.days, s.priority FROM schedules s "
           "JOIN campaigns c ON c.id = s.campaign_id")
    where, params = [], []
    if name is not None:
        where.append("c.name = ?")
        params.append(name)
    if pending_only:
        where.append("c.status NOT IN ('done', 'pruned') AND c.archived_at IS NULL AND c.deleted_at IS NULL")
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY s.priority DESC, s.start_at, c.id"
    return [Schedule(n, dt.datetime.fromisoformat(at), tz, parse_window(w), parse_days(d), p)
            for n, at, tz, w, d, p in store.conn.execute(sql, params)]


def _default_zone(store: Store) -> str:
    from .settings import load_smtp_settings

    smtp = load_smtp_settings(store)
    return smtp.timezone if smtp is not None and smtp.timezone else "UTC"
