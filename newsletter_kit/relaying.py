"""Sending one campaign through several relays: shares by weight, failover, cool-downs.

Each relay is a *lane*: a send run of its own (its own store connection, quota reservation,
connections and ledger thread) limited to its share, exactly as if another process were
sending the same campaign through another server. The ledger already makes concurrent runs
safe: a row is claimed by one run in one transaction, so nobody gets the campaign twice,
whichever relay takes it, and a lane that stops hands its unclaimed rows back to pending.

The coordinator here splits what is due over the relays that are ready, by weight and within
what each may still send today (its daily limit or warm-up ramp, its hourly limit), runs the
lanes concurrently, and reads how each ended:

- ``connection`` (cannot connect, a 421, a drop) or a refused login, or a throttling reply
  (``454 Throttling failure``, ``4.7.x`` rate limits: the transport pauses on them instead of
  deferring the recipient): the relay is set aside for a cool-down that doubles each time
  (with jitter), and the next round gives its share to the others;
- ``quota``: the relay has nothing left today;
- ``failures``, ``refused``, ``guard``, ``stopped``, ``window``: the whole run stops, as a
  single-relay run would.

When every relay is cooling down the run waits for the first to come back, up to
:data:`MAX_WAIT` seconds in all; past that it pauses (``paused == "connection"``, exit 75) and
says when to retry.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from . import clock, quota
from .errors import AuthenticationFailed, ConnectionFailed, ValidationError
from .relays import DEFAULT, Relay, RelaySettings, day_start, list_relays, relay_count
from .settings import SmtpSettings
from .store import Store, now_iso, open_store

#: The first cool-down of a relay that failed (seconds); it doubles at each new failure.
COOLDOWN_BASE = 2.0
#: The longest cool-down.
COOLDOWN_CAP = 120.0
#: How long a run waits in all for relays to come back before it pauses (exit 75).
MAX_WAIT = 300.0

_FINAL = ("failures", "refused", "guard", "stopped", "window")


def several_relays(store: Store) -> list[Relay] | None:
    """The enabled relays when sending goes through relays; None for the plain single server
    (only the default relay enabled, as before relays existed)."""
    enabled = list_relays(store, enabled_only=True)
    if [r.name for r in enabled] == [DEFAULT]:
        return None
    if not enabled:
        raise ValidationError("every relay is disabled: `settings relay enable NAME` one of them", "relay")
    return enabled


def total_limit(store: Store, smtp: SmtpSettings) -> int:
    """Today's limit of all enabled relays together (each at its warm-up's ramp): the quota's."""
    day = quota.quota_day(clock.now(), smtp.timezone)
    return max(1, sum(max(0, r.daily_limit_on(day)) for r in list_relays(store, enabled_only=True)))


def relay_smtp(store: Store, name: str, smtp: SmtpSettings) -> tuple[SmtpSettings, RelaySettings, tuple[int, dt.datetime]]:
    """What a run through relay ``name`` needs: the SMTP settings to connect with (the relay's
    connection; as daily limit the quota of all enabled relays together), the relay's own
    settings, and its own limit today with the instant it counts from."""
    for relay in list_relays(store):
        if relay.name == name:
            day = quota.quota_day(clock.now(), smtp.timezone)
            conn = dataclasses.replace(relay.smtp, daily_limit=total_limit(store, smtp))
            return conn, relay.settings, (max(0, relay.daily_limit_on(day)), day_start(smtp.timezone))
    raise ValidationError(f"no relay named {name!r}", "relay")


class Pacer:
    """At most ``rate`` messages per second over all the threads that call it."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


@dataclass
class _Lane:
    relay: Relay
    failures: int = 0
    cool_until: float = 0.0
    exhausted: bool = False
    last: str | None = None

    def set_aside(self, why: str) -> None:
        self.failures += 1
        delay = min(COOLDOWN_CAP, COOLDOWN_BASE * 2 ** (self.failures - 1))
        self.cool_until = time.monotonic() + delay * random.uniform(0.5, 1.5)
        self.last = why


def relay_used(store: Store, relay: Relay, smtp: SmtpSettings) -> int:
    """What relay ``relay`` sent (or holds in flight) since today began in the quota's zone."""
    return relay_count(store, relay.name, day_start(smtp.timezone))


def room(store: Store, relay: Relay, smtp: SmtpSettings) -> int:
    """What relay ``relay`` may still send now: its own limit today less what it used and holds,
    its hourly limit less its last hour, and no more than the quota of all relays leaves."""
    day = quota.quota_day(clock.now(), smtp.timezone)
    left = max(0, relay.daily_limit_on(day) - relay_used(store, relay, smtp))
    if relay.settings.hourly_limit is not None:
        hour_ago = clock.now() - dt.timedelta(hours=1)
        left = min(left, max(0, relay.settings.hourly_limit - relay_count(store, relay.name, hour_ago)))
    overall = quota.quota_status(store, dataclasses.replace(smtp, daily_limit=total_limit(store, smtp)),
                                 reclaim=False)
    return min(left, overall.remaining)


def shares(ready: list[tuple[Relay, int]], due: int) -> dict[str, int]:
    """Split ``due`` recipients over relays by weight, none above its room; what a full relay
    cannot take goes to the others.

    >>> r = lambda n, w: Relay(n, None, RelaySettings(n, weight=w))  # type: ignore[arg-type]
    >>> shares([(r("a", 3), 1000), (r("b", 1), 1000)], 100)
    {'a': 75, 'b': 25}
    >>> shares([(r("a", 3), 10), (r("b", 1), 1000)], 100)
    {'a': 10, 'b': 90}
    """
    result = {relay.name: 0 for relay, _ in ready}
    open_ = [(relay, cap) for relay, cap in ready if cap > 0]
    left = due
    while left > 0 and open_:
        weight = sum(relay.settings.weight for relay, _ in open_)
        given = 0
        for relay, cap in open_:
            want = max(1, round(left * relay.settings.weight / weight))
            take = min(want, cap - result[relay.name], left - given)
            result[relay.name] += take
            given += take
            if given >= left:
                break
        left -= given
        open_ = [(relay, cap) for relay, cap in open_ if result[relay.name] < cap]
        if given == 0:
            break
    return result


def send_over_relays(store: Store, name: str, relays: list[Relay], *, send: Any, report: Any,
                     limit: int | None, progress: Any, stop_event: threading.Event | None,
                     password: str | None, **options: Any) -> Any:
    """Send campaign ``name`` through ``relays`` (see the module's text): each lane is
    ``send(store, name, relay=..., limit=...)`` (``campaigns.send_campaign``, which calls this:
    passed in, so that this module needs nothing of the sender's); returns a ``report`` (its
    ``SendReport``) of the whole run."""
    from .ledger import Ledger
    from .progress import get_campaign

    send_campaign, SendReport = send, report

    campaign = get_campaign(store, name)
    smtp = relays[0].smtp if relays[0].name == DEFAULT else _base_smtp(store)
    total = SendReport(campaign=campaign.name)
    lanes = {r.name: _Lane(r) for r in relays}
    stop = stop_event or threading.Event()
    ledger = Ledger(store, campaign.id)
    waited = 0.0
    counts = _ProgressSum(progress, total)

    # A first run that sends nothing: the audience is refreshed, abandoned rows are reported
    # and the complaint guard is asked, once, before any lane starts.
    first = send_campaign(store, name, limit=0, relay=relays[0].name, stop_event=stop,
                          password=password if relays[0].name == DEFAULT else None, **options)
    total.excluded, total.unknown = first.excluded, list(first.unknown)
    if first.paused == "guard":
        total.paused, total.detail = first.paused, first.detail
    while total.paused is None:
        if stop.is_set():
            total.paused = "stopped"
            break
        left = None if limit is None else limit - total.attempted
        due = ledger.due_count()
        if due == 0 or left == 0:
            break
        want = due if left is None else min(due, left)
        now = time.monotonic()
        ready = [lane for lane in lanes.values() if not lane.exhausted and lane.cool_until <= now]
        rooms = [(lane.relay, room(store, lane.relay, smtp)) for lane in ready]
        for relay, free in rooms:
            if free <= 0:
                lanes[relay.name].exhausted = True
        rooms = [(relay, free) for relay, free in rooms if free > 0]
        if not rooms:
            cooling = [lane for lane in lanes.values() if not lane.exhausted]
            if not cooling:
                total.paused = "quota"
                total.resume_at = quota.next_reset(clock.now(), smtp.timezone).isoformat()
                break
            wait = max(0.0, min(lane.cool_until for lane in cooling) - time.monotonic())
            if waited + wait > MAX_WAIT:
                retry = clock.now() + dt.timedelta(seconds=wait)
                total.paused = "connection"
                total.resume_at = retry.replace(microsecond=0).isoformat()
                total.detail = ("every relay is set aside (" + "; ".join(
                    f"{lane.relay.name}: {lane.last}" for lane in cooling) + f"); retry after {total.resume_at}")
                break
            stop.wait(wait)
            waited += wait
            continue
        plan = {n: s for n, s in shares(rooms, want).items() if s > 0}
        results = _run_lanes(store, name, plan, stop, password, counts, options, send_campaign)
        for relay_name, outcome in results.items():
            lane = lanes[relay_name]
            if isinstance(outcome, BaseException):
                lane.set_aside(str(outcome))
                continue
            _add(total, outcome)
            if outcome.paused in ("connection", "throttled"):
                lane.set_aside(outcome.detail or outcome.paused)
            elif outcome.paused == "quota":
                lane.exhausted = True
            elif outcome.paused in _FINAL and total.paused is None:
                total.paused, total.detail, total.resume_at = outcome.paused, outcome.detail, outcome.resume_at
            elif outcome.paused is None:
                lane.failures = 0
    total.pending = ledger.left_to_send()
    status = "done" if not total.pending else ("paused" if total.paused else "sending")
    with store.transaction():
        store.conn.execute("UPDATE campaigns SET status = ?, updated_at = ? WHERE id = ?",
                           (status, now_iso(), campaign.id))
    return total


def relay_quotas(store: Store) -> list[dict[str, Any]]:
    """Today's use of every relay: name, enabled, limit (the warm-up's ramp while it lasts),
    used, remaining, hourly limit. Empty before ``settings smtp``.

    Example::

        >>> relay_quotas(store)    # doctest: +SKIP
        [{'relay': 'default', 'enabled': True, 'limit': 500, 'used': 120, 'remaining': 380, 'hourly_limit': None}]
    """
    relays = list_relays(store)
    if not relays:
        return []
    smtp = _base_smtp(store)
    day = quota.quota_day(clock.now(), smtp.timezone)
    several = len(relays) > 1
    rows = []
    for relay in relays:
        limit = max(0, relay.daily_limit_on(day))
        if several:
            used = relay_used(store, relay, smtp)
            remaining = room(store, relay, smtp) if relay.enabled else 0
        else:  # the dedicated server alone: the quota itself
            status = quota.quota_status(store, smtp, reclaim=False)
            used, remaining = status.used, status.remaining
        rows.append({"relay": relay.name, "enabled": relay.enabled, "limit": limit, "used": used,
                     "remaining": remaining, "hourly_limit": relay.settings.hourly_limit})
    return rows


def combined_status(store: Store) -> quota.QuotaStatus:
    """Today's quota over every enabled relay (the sum of their limits); the plain quota
    without relays."""
    smtp = _base_smtp(store)
    if len(list_relays(store)) <= 1:
        return quota.quota_status(store, smtp, reclaim=False)
    return quota.quota_status(store, dataclasses.replace(smtp, daily_limit=total_limit(store, smtp)),
                              reclaim=False)


def forecast(store: Store, pending: int) -> dt.date:
    """The day ``pending`` more recipients will have been sent through the enabled relays,
    each at its own limit day by day (a warm-up's ramp included)."""
    status = combined_status(store)
    relays = [r for r in list_relays(store) if r.enabled]
    left = pending - status.remaining
    day = status.day
    while left > 0 and relays:
        day += dt.timedelta(days=1)
        left -= sum(max(0, r.daily_limit_on(day)) for r in relays)
        if day > status.day + dt.timedelta(days=36500):
            break
    return day


def _base_smtp(store: Store) -> SmtpSettings:
    from .settings import require_smtp_settings

    return require_smtp_settings(store)


class _ProgressSum:
    """Lanes report progress each for itself; the caller sees one sum (one call at a time)."""

    def __init__(self, progress: Any, total: Any):
        self.progress = progress
        self.total = total
        self.done: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        self.base = 0
        self._lock = threading.Lock()

    def lane(self, name: str) -> Any:
        if self.progress is None:
            return None

        def report(done: int, size: int, _report: Any) -> None:
            with self._lock:
                self.done[name], self.sizes[name] = done, size
                self.progress(self.base + sum(self.done.values()), self.base + sum(self.sizes.values()), self.total)

        return report

    def next_round(self) -> None:
        with self._lock:
            self.base += sum(self.done.values())
            self.done, self.sizes = {}, {}


def _run_lanes(store: Store, name: str, plan: dict[str, int], stop: threading.Event,
               password: str | None, counts: _ProgressSum, options: dict[str, Any],
               send_campaign: Any) -> dict[str, Any]:
    """Run one lane per relay of ``plan`` (relay -> share) concurrently; each lane's report, or
    the exception that set it aside (a connection or login failure)."""

    def lane(relay_name: str, share: int) -> Any:
        own = store if store.path == ":memory:" else open_store(store.path, create=False)
        try:
            return send_campaign(own, name, limit=share, relay=relay_name, stop_event=stop,
                                 progress=counts.lane(relay_name),
                                 password=password if relay_name == DEFAULT else None, **options)
        except (ConnectionFailed, AuthenticationFailed) as exc:
            return exc
        finally:
            if own is not store:
                own.close()

    counts.next_round()
    if store.path == ":memory:" or len(plan) == 1:  # one connection to the store: one lane at a time
        return {n: lane(n, s) for n, s in plan.items()}
    with concurrent.futures.ThreadPoolExecutor(len(plan), thread_name_prefix="newsletter-relay") as pool:
        futures = {n: pool.submit(lane, n, s) for n, s in plan.items()}
        try:
            return {n: f.result() for n, f in futures.items()}
        except BaseException:
            stop.set()  # Ctrl-C: every lane stops after the message on the wire
            raise


def _add(total: Any, part: Any) -> None:
    for key in ("attempted", "sent", "deferred", "failed"):
        setattr(total, key, getattr(total, key) + getattr(part, key))
    total.suppressed += part.suppressed
    total.unknown += [u for u in part.unknown if u not in total.unknown]
