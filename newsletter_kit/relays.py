"""Relays: the SMTP servers a campaign may go out through, each with its own limits.

The dedicated SMTP server of ``settings smtp`` is always the first relay, ``default``; more are
added with ``settings relay add NAME``. A relay has its own connection (host, port, TLS,
credentials by reference) and its own *send rate*: a daily limit, optionally an hourly limit,
a maximum rate per second, and a warm-up that lets a new IP's daily limit grow geometrically
from ``START`` to the limit over ``DAYS`` days. The campaign's identity (From, List-Id, DKIM,
the unsubscribe URL, the quota's time zone) stays in ``settings smtp``: every relay sends the
same messages.

Example::

    >>> import datetime as dt
    >>> r = RelaySettings("b", "smtp-b.example.org", 587, 1000, warmup_start=50, warmup_days=30,
    ...                   warmup_since="2026-12-01")
    >>> [r.limit_on(dt.date(2026, 12, d)) for d in (1, 2, 16)]
    [50, 55, 223]
    >>> r.limit_on(dt.date(2027, 1, 31))
    1000
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

from .errors import ValidationError
from .settings import (TLS_MODES, SmtpSettings, _auth_checks, _env_name, _mask, _masked_repr,
                       check_password_ref, load_smtp_settings, validate_ca_file, validate_host,
                       validate_port, validate_positive, validate_tls)
from .store import Store, now_iso

DEFAULT = "default"
_SECTION = "relay:"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
#: Fields of ``settings smtp`` that belong to the connection: each relay has its own.
CONNECTION_FIELDS = ("host", "port", "user", "password_ref", "auth", "tls", "allow_plain_auth",
                     "ca_file", "daily_limit")


@dataclass
class RelaySettings:
    """One relay's connection and limits (the ``default`` relay keeps its connection in
    ``settings smtp``; its entry here holds only the limits)."""

    name: str
    host: str | None = None
    port: int | None = None
    daily_limit: int | None = None
    user: str | None = None
    password_ref: str | None = None
    auth: bool = False
    tls: str = "starttls"
    allow_plain_auth: bool = False
    ca_file: str | None = None
    weight: int = 1
    hourly_limit: int | None = None
    max_per_second: float | None = None
    warmup_start: int | None = None
    warmup_days: int | None = None
    warmup_since: str | None = None  # ISO date the ramp starts on (the day the warm-up was set)
    enabled: bool = True

    def validate(self) -> None:
        """Raise :class:`ValidationError` on an invalid field."""
        if not _NAME_RE.match(self.name or ""):
            raise ValidationError(f"a relay name is 1-40 letters, digits, '.', '_' or '-', not {self.name!r}", "name")
        if self.name != DEFAULT:
            if not self.host or not self.port or not self.daily_limit:
                raise ValidationError("a relay needs --host, --port and --daily-limit", "host")
            self.host = validate_host(self.host)
            self.port = validate_port(self.port)
            self.daily_limit = validate_positive(self.daily_limit, "the send rate (emails per day)", "daily_limit")
            self.tls = validate_tls(self.tls)
            if self.password_ref:
                check_password_ref(self.password_ref)
            _auth_checks(self.auth, self.tls, self.allow_plain_auth, self.user, self.password_ref)
            self.ca_file = validate_ca_file(self.ca_file)
        self.weight = validate_positive(self.weight, "the weight", "weight")
        if self.hourly_limit is not None:
            self.hourly_limit = validate_positive(self.hourly_limit, "the hourly limit", "hourly_limit")
        if self.max_per_second is not None:
            try:
                rate = float(self.max_per_second)
            except (TypeError, ValueError):
                rate = -1.0
            if not rate > 0:
                raise ValidationError("--max-per-second must be a number above 0", "max_per_second")
            self.max_per_second = rate
        if (self.warmup_start is None) != (self.warmup_days is None):
            raise ValidationError("--warmup is START:DAYS, e.g. 50:30", "warmup")
        if self.warmup_start is not None:
            self.warmup_start = validate_positive(self.warmup_start, "the warm-up start", "warmup")
            self.warmup_days = validate_positive(self.warmup_days, "the warm-up days", "warmup")
            self.warmup_since = self.warmup_since or dt.date.today().isoformat()

    def limit_on(self, day: dt.date, daily_limit: int | None = None) -> int:
        """The daily limit on ``day``: the warm-up's ramp while it lasts, else the limit.

        The ramp is geometric (the usual IP warm-up: the volume grows by the same factor
        each day), from ``warmup_start`` on the first day to the limit after ``warmup_days``.
        """
        limit = int(daily_limit or self.daily_limit or 0)
        if self.warmup_start is None or self.warmup_days is None or not self.warmup_since:
            return limit
        elapsed = (day - dt.date.fromisoformat(self.warmup_since)).days
        if elapsed >= self.warmup_days:
            return limit
        start = min(self.warmup_start, limit)
        if elapsed <= 0:
            return start
        return min(limit, int(start * (limit / start) ** (elapsed / self.warmup_days)))

    def __repr__(self) -> str:
        return _masked_repr(self)

    def public_dict(self) -> dict[str, Any]:
        """As ``settings relay list --json`` prints it (password masked)."""
        warmup = f"{self.warmup_start}:{self.warmup_days}" if self.warmup_start is not None else None
        return {"name": self.name, "host": self.host, "port": self.port, "user": self.user,
                "password": _mask(self.password_ref), "password-env": _env_name(self.password_ref),
                "auth": self.auth, "tls": self.tls, "ca-file": self.ca_file,
                "daily-limit": self.daily_limit, "hourly-limit": self.hourly_limit,
                "max-per-second": self.max_per_second, "weight": self.weight, "warmup": warmup,
                "warmup-since": self.warmup_since, "enabled": self.enabled}


@dataclass(frozen=True)
class Relay:
    """A relay ready to send: its name, its limits, and the SMTP settings to connect with
    (``settings smtp`` with this relay's connection fields)."""

    name: str
    smtp: SmtpSettings
    settings: RelaySettings

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def daily_limit_on(self, day: dt.date) -> int:
        return self.settings.limit_on(day, self.smtp.daily_limit)


def day_start(zone: str, moment: dt.datetime | None = None) -> dt.datetime:
    """The instant the day of ``moment`` (default now) began in ``zone`` (UTC): a relay's daily
    limit counts from there.

    >>> day_start("Europe/Paris", dt.datetime(2026, 12, 8, 10, tzinfo=dt.timezone.utc)).isoformat()
    '2026-12-07T23:00:00+00:00'
    """
    from . import clock

    tz = zoneinfo.ZoneInfo(zone)
    today = (moment or clock.now()).astimezone(tz).date()
    return dt.datetime.combine(today, dt.time(0), tzinfo=tz).astimezone(dt.timezone.utc)


def relay_count(store: Store, relay: str, since: dt.datetime) -> int:
    """Messages relay ``relay`` took since ``since`` (any campaign), with those it holds in
    flight: what counts toward its own limits (one range read of ``deliveries_relay``)."""
    row = store.conn.execute(
        "SELECT count(*) FROM deliveries WHERE relay = ? AND updated_at >= ? "
        "AND state IN ('sent', 'unknown', 'claimed', 'inflight')",
        (relay, since.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat())).fetchone()
    return int(row[0])


def parse_warmup(text: str | None) -> tuple[int | None, int | None]:
    """'50:30' -> (50, 30); '' or None -> (None, None).

    >>> parse_warmup("50:30")
    (50, 30)
    """
    if not text:
        return None, None
    start, sep, days = text.partition(":")
    if not sep or not start.strip().isdigit() or not days.strip().isdigit():
        raise ValidationError(f"--warmup is START:DAYS, e.g. 50:30, not {text!r}", "warmup")
    return int(start), int(days)


def _load(store: Store, name: str) -> RelaySettings | None:
    row = store.conn.execute("SELECT data FROM settings WHERE section = ?", (_SECTION + name,)).fetchone()
    return RelaySettings(**json.loads(row[0])) if row else None


def _save(store: Store, relay: RelaySettings) -> None:
    with store.transaction():
        store.conn.execute(
            "INSERT INTO settings (section, data, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (section) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
            (_SECTION + relay.name, json.dumps(dataclasses.asdict(relay), sort_keys=True), now_iso()))


_CLEARABLE = {"user", "password_ref", "ca_file", "hourly_limit", "max_per_second", "warmup_start",
              "warmup_days", "warmup_since"}


def update_relay(store: Store, name: str, *, create: bool = False, **changes: Any) -> RelaySettings:
    """Add (``create=True``) or change relay ``name``; ``""`` clears an optional field.

    ``warmup="START:DAYS"`` is accepted for ``warmup_start``/``warmup_days`` (and restarts the
    ramp today). The ``default`` relay is ``settings smtp``: only its limits are set here.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> store = open_store(":memory:")
        >>> update_relay(store, "ses", create=True, host="email-smtp.eu-west-1.amazonaws.com", port=587,
        ...              daily_limit=50000, max_per_second=14, weight=3).max_per_second
        14.0
    """
    if "warmup" in changes:
        warmup = changes.pop("warmup")
        if warmup is not None:
            start, days = parse_warmup(warmup)
            changes.update(warmup_start=start if start is not None else "",
                           warmup_days=days if days is not None else "",
                           warmup_since=dt.date.today().isoformat() if start is not None else "")
    current = _load(store, name)
    if create and current is not None and name != DEFAULT:
        raise ValidationError(f"a relay named {name!r} exists already (`settings relay set` changes it)", "name")
    if not create and current is None and name != DEFAULT:
        raise ValidationError(f"no relay named {name!r} (relays: {', '.join(relay_names(store))})", "name")
    if name == DEFAULT:
        given = [k for k in CONNECTION_FIELDS if changes.get(k) is not None]
        if given:
            raise ValidationError("the default relay is the dedicated SMTP server: change its "
                                  "connection with `settings smtp`", given[0])
    data: dict[str, Any] = dataclasses.asdict(current) if current else {"name": name}
    fields = {f.name for f in dataclasses.fields(RelaySettings)}
    unknown = set(changes) - fields
    if unknown:
        raise ValidationError(f"unknown relay setting(s): {', '.join(sorted(unknown))}")
    for key, value in changes.items():
        if value is None:
            continue
        if value == "":
            if key not in _CLEARABLE:
                raise ValidationError(f"{key.replace('_', ' ')} cannot be cleared", key)
            data[key] = None
        else:
            data[key] = value
    if create and data.get("auth") is None:
        data["auth"] = bool(data.get("user"))
    relay = RelaySettings(**data)
    relay.validate()
    _save(store, relay)
    return relay


def remove_relay(store: Store, name: str) -> None:
    """Forget relay ``name`` (its past sends stay in the ledger). ``default`` cannot go."""
    if name == DEFAULT:
        raise ValidationError("the default relay is the dedicated SMTP server; disable it instead", "name")
    with store.transaction():
        gone = store.conn.execute("DELETE FROM settings WHERE section = ?", (_SECTION + name,)).rowcount
    if not gone:
        raise ValidationError(f"no relay named {name!r}", "name")


def set_relay_enabled(store: Store, name: str, enabled: bool) -> RelaySettings:
    """Enable or disable relay ``name`` (a disabled relay sends nothing; its settings stay)."""
    if name != DEFAULT and _load(store, name) is None:
        raise ValidationError(f"no relay named {name!r}", "name")
    return update_relay(store, name, enabled=enabled)


def relay_names(store: Store) -> list[str]:
    rows = store.conn.execute("SELECT section FROM settings WHERE section LIKE 'relay:%' ORDER BY section")
    names = [r[0][len(_SECTION):] for r in rows]
    return [DEFAULT] + [n for n in names if n != DEFAULT]


def list_relays(store: Store, *, enabled_only: bool = False) -> list[Relay]:
    """Every relay, ``default`` first, each with the SMTP settings it connects with.

    Empty when ``settings smtp`` was never saved.
    """
    smtp = load_smtp_settings(store)
    if smtp is None:
        return []
    relays = []
    for name in relay_names(store):
        settings = _load(store, name) or RelaySettings(DEFAULT)
        if enabled_only and not settings.enabled:
            continue
        if name == DEFAULT:
            conn = smtp
        else:
            conn = dataclasses.replace(smtp, **{k: getattr(settings, k) for k in CONNECTION_FIELDS})
        relays.append(Relay(name, conn, settings))
    return relays


__all__ = ["DEFAULT", "TLS_MODES", "Relay", "RelaySettings", "day_start", "list_relays", "parse_warmup", "relay_count",
           "relay_names", "remove_relay", "set_relay_enabled", "update_relay"]
