"""The daily quota: the day in the configured zone, atomic reservations, reclaiming dead runs."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from newsletter_kit import quota
from newsletter_kit.settings import update_smtp_settings
from newsletter_kit.store import open_store

UTC = dt.timezone.utc


@pytest.fixture
def store(nk_db):
    store = open_store(nk_db)
    update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=10,
                         from_addr="news@example.org", timezone="Europe/Rome")
    yield store
    store.close()


@pytest.mark.parametrize("moment, zone, day", [
    (dt.datetime(2026, 3, 1, 22, 59, tzinfo=UTC), "Europe/Rome", dt.date(2026, 3, 1)),
    (dt.datetime(2026, 3, 1, 23, 0, tzinfo=UTC), "Europe/Rome", dt.date(2026, 3, 2)),
    (dt.datetime(2026, 3, 2, 3, 0, tzinfo=UTC), "America/New_York", dt.date(2026, 3, 1)),
    (dt.datetime(2026, 3, 2, 5, 0, tzinfo=UTC), "America/New_York", dt.date(2026, 3, 2)),
    (dt.datetime(2026, 7, 1, 22, 0, tzinfo=UTC), "Europe/Rome", dt.date(2026, 7, 2)),  # summer: +02:00
])
def test_the_quota_day_is_the_calendar_day_of_the_configured_zone(moment, zone, day):
    assert quota.quota_day(moment, zone) == day


@pytest.mark.parametrize("moment, zone, reset", [
    (dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC), "Europe/Rome", "2026-03-02T00:00:00+01:00"),
    (dt.datetime(2026, 3, 1, 23, 30, tzinfo=UTC), "Europe/Rome", "2026-03-03T00:00:00+01:00"),
    # DST starts on 29 March in Rome: the day after starts at +02:00.
    (dt.datetime(2026, 3, 29, 12, 0, tzinfo=UTC), "Europe/Rome", "2026-03-30T00:00:00+02:00"),
    (dt.datetime(2026, 3, 2, 3, 0, tzinfo=UTC), "America/New_York", "2026-03-02T00:00:00-05:00"),
    (dt.datetime(2026, 3, 2, 3, 0, tzinfo=UTC), "UTC", "2026-03-03T00:00:00+00:00"),
])
def test_the_quota_resets_at_the_next_local_midnight(moment, zone, reset):
    assert quota.next_reset(moment, zone).isoformat() == reset


def test_reservations_never_exceed_the_limit_and_settle_into_used(store):
    owner = quota.new_owner()
    day, granted = quota.reserve(store, 7, owner=owner)
    assert granted == 7
    assert quota.reserve(store, 7, owner=owner) == (day, 3)
    assert quota.reserve(store, 1, owner=owner) == (day, 0)
    status = quota.quota_status(store)
    assert (status.used, status.reserved, status.remaining) == (0, 10, 0)
    quota.settle(store, owner=owner, day=day, released=10, accepted=4)
    status = quota.quota_status(store)
    assert (status.used, status.reserved, status.remaining) == (4, 0, 6)
    assert store.conn.execute("SELECT count(*) FROM quota_reservations").fetchone()[0] == 0
    quota.end_run(owner)


def test_days_are_counted_apart_in_the_configured_zone(store):
    owner = quota.new_owner()
    late = dt.datetime(2026, 3, 1, 22, 30, tzinfo=UTC)   # 23:30 in Rome, 1 March
    later = dt.datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # 00:30 in Rome, 2 March
    day1, granted1 = quota.reserve(store, 10, owner=owner, now=late)
    quota.settle(store, owner=owner, day=day1, released=10, accepted=10, now=late)
    day2, granted2 = quota.reserve(store, 10, owner=owner, now=later)
    assert (day1, granted1, day2, granted2) == ("2026-03-01", 10, "2026-03-02", 10)
    assert quota.quota_status(store, now=later).to_dict() == {
        "limit": 10, "used": 0, "remaining": 0, "resets_at": "2026-03-03T00:00:00+01:00"}
    quota.end_run(owner)


def test_what_a_running_sender_holds_counts_until_it_settles(store):
    """Held across midnight: it counts against the new day too (it is settled then)."""
    owner = quota.new_owner()
    late = dt.datetime(2026, 3, 1, 22, 30, tzinfo=UTC)
    day1, _ = quota.reserve(store, 6, owner=owner, now=late)
    later = dt.datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert quota.reserve(store, 10, owner=owner, now=later)[1] == 4
    quota.end_run(owner)


def _dead_owner() -> str:
    """The owner token a finished child process would have left behind."""
    code = "from newsletter_kit import quota; print(quota.new_owner())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_dead_process_keeps_its_reservation_until_the_ledger_settles_it(store):
    """Issue 16 finding 9a: not counted in full; the ledger says what was handed over."""
    dead = _dead_owner()
    day, granted = quota.reserve(store, 4, owner=dead)
    assert granted == 4
    status = quota.quota_status(store)
    assert (status.used, status.reserved, status.remaining) == (0, 4, 6)
    assert quota.dead_owners(store) == [dead]
    assert quota.release_run(store, dead, handed=1) == 3
    status = quota.quota_status(store)
    assert (status.used, status.reserved, status.remaining) == (1, 0, 9)
    assert store.conn.execute("SELECT count(*) FROM quota_reservations").fetchone()[0] == 0


def test_a_live_run_keeps_its_reservation_and_an_ended_one_can_be_released(store):
    owner = quota.new_owner()
    quota.reserve(store, 3, owner=owner)
    assert quota.quota_status(store).reserved == 3
    quota.end_run(owner)  # e.g. a notebook run interrupted without settling
    assert quota.dead_owners(store) == [owner]
    quota.release_run(store, owner, 0)
    assert quota.quota_status(store).reserved == 0


def test_another_hosts_reservation_is_kept_until_it_is_stale(store):
    foreign = "other-host|4242|123|abc"
    now = dt.datetime.now(UTC)
    assert quota.owner_alive(foreign, now.isoformat())
    assert not quota.owner_alive(foreign, (now - dt.timedelta(hours=2)).isoformat())


def test_forecast_counts_todays_remainder_then_whole_days():
    status = quota.QuotaStatus(limit=100, used=90, reserved=0, remaining=10,
                               day=dt.date(2026, 3, 1), resets_at=dt.datetime(2026, 3, 2, tzinfo=UTC))
    assert quota.forecast_date(status, 10) == dt.date(2026, 3, 1)
    assert quota.forecast_date(status, 11) == dt.date(2026, 3, 2)
    assert quota.forecast_date(status, 110) == dt.date(2026, 3, 2)
    assert quota.forecast_date(status, 111) == dt.date(2026, 3, 3)


# --- a change of time zone hands out no fresh limit (issue 16 finding 8) ------------------


def _zone(store, zone, limit=None):
    changes = {"timezone": zone, **({"daily_limit": limit} if limit else {})}
    smtp, _ = update_smtp_settings(store, **changes)
    return smtp


def _send(store, smtp, want, at):
    """Reserve ``want`` at ``at`` and settle all granted as accepted: how many went."""
    owner = quota.new_owner()
    day, granted = quota.reserve(store, want, owner=owner, settings=smtp, now=at)
    quota.settle(store, owner=owner, day=day, released=granted, accepted=granted, now=at)
    quota.end_run(owner)
    return granted


def test_switching_zones_after_the_day_is_used_sends_nothing_more(store):
    """The issue's case: 5 a day used up in UTC; Honolulu at 08:00 UTC, then other zones, sent
    15 within three hours. Now nothing more goes until a midnight counts for every zone."""
    smtp = _zone(store, "UTC", limit=5)
    morning = dt.datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
    assert _send(store, smtp, 5, morning) == 5
    sent = 0
    for hours, zone in enumerate(["Pacific/Honolulu", "Asia/Tokyo", "Pacific/Kiritimati", "UTC",
                                  "America/St_Johns", "Asia/Kathmandu"], start=1):
        smtp = _zone(store, zone)
        sent += _send(store, smtp, 5, morning + dt.timedelta(hours=hours, minutes=5))
    assert sent == 0
    status = quota.quota_status(store, smtp, now=morning + dt.timedelta(hours=7))
    assert (status.used, status.remaining) == (5, 0)


@pytest.mark.parametrize("old, new, at", [
    ("UTC", "Pacific/Honolulu", "2026-03-10T08:00"),            # west: the pair
    ("Asia/Tokyo", "America/Los_Angeles", "2026-03-10T16:00"),  # a day's jump west
    ("America/New_York", "Asia/Kolkata", "2026-03-10T20:00"),   # east to a half-hour zone
    ("Asia/Kathmandu", "America/St_Johns", "2026-03-10T01:00"), # :45 to -3:30
    ("Australia/Adelaide", "Europe/London", "2026-04-04T15:00"),  # Adelaide's DST ends that night
    ("Europe/Rome", "America/Havana", "2026-03-08T03:00"),      # Havana skips its midnight (DST)
])
def test_a_zone_change_never_raises_todays_remaining(store, old, new, at):
    moment = dt.datetime.fromisoformat(at).replace(tzinfo=UTC)
    smtp = _zone(store, old, limit=8)
    assert _send(store, smtp, 8, moment - dt.timedelta(minutes=30)) == 8
    before = quota.quota_status(store, smtp, now=moment)
    smtp = _zone(store, new)
    after = quota.quota_status(store, smtp, now=moment)
    assert after.remaining <= before.remaining == 0
    # Nothing goes until the old zone's and the new zone's day have both moved on.
    free_at = after.resets_at.astimezone(UTC)
    assert free_at > moment
    assert _send(store, smtp, 8, free_at - dt.timedelta(minutes=1)) == 0
    assert _send(store, smtp, 8, free_at + dt.timedelta(minutes=1)) == 8


ZONES = ["UTC", "Pacific/Honolulu", "Asia/Tokyo", "Pacific/Kiritimati", "Asia/Kolkata", "Asia/Kathmandu",
         "America/St_Johns", "Australia/Adelaide", "Australia/Lord_Howe", "Pacific/Chatham",
         "Europe/Rome", "America/New_York", "America/Havana", "Etc/GMT+12"]


def _zones_at(history, moment):
    """The zones in effect during the 24 h before ``moment``, from a (since, zone) history."""
    cutoff = moment - quota.ZONE_MEMORY
    before = [z for since, z in history if since <= cutoff]
    return set(before[-1:]) | {z for since, z in history if cutoff < since <= moment}


@pytest.mark.parametrize("seed", range(6))
def test_every_send_fits_the_day_of_every_zone_in_effect(store, seed):
    """Random zone changes (half-hour, 45-minute and DST zones, over the March and April DST
    changes) and a sender taking all it is granted: at every send, the day so far in the
    current zone and in every zone of the last 24 h holds at most the limit, and no 23 hours
    (shorter than any day) carry more than twice the limit, as without any change."""
    import random

    rng = random.Random(seed)
    limit = 7
    start = dt.datetime(2026, 3, 6, 0, 0, tzinfo=UTC) + dt.timedelta(days=23 * (seed % 2), minutes=rng.randrange(1440))
    zone = rng.choice(ZONES)
    smtp = _zone(store, zone, limit=limit)
    history = [(start, zone)]
    quota.note_zone(store, zone, now=start)
    sends: list[tuple[dt.datetime, int]] = []
    moment = start
    for _ in range(160):
        moment += dt.timedelta(minutes=rng.randrange(7, 130))
        if rng.random() < 0.3:
            zone = rng.choice(ZONES)
            smtp = _zone(store, zone)
            history.append((moment, zone))
        granted = _send(store, smtp, rng.randrange(1, limit + 1), moment)
        if granted:
            sends.append((moment, granted))
            for z in _zones_at(history, moment) | {zone}:
                since = quota.day_start(moment, z)
                assert sum(n for t, n in sends if since <= t <= moment) <= limit, (z, moment)
    assert sends
    for t, _n in sends:
        assert sum(n for u, n in sends if t <= u < t + dt.timedelta(hours=23)) <= 2 * limit


_RACE = """
import sys
from newsletter_kit import quota
from newsletter_kit.store import open_store
from newsletter_kit.settings import require_smtp_settings, update_smtp_settings
store, me = open_store(sys.argv[1]), int(sys.argv[2])
owner = quota.new_owner()
sent = 0
for i in range(300):
    if i % 20 == 10 + 5 * me:  # each process changes the zone now and then, between its sends
        zone = "Etc/GMT-14" if require_smtp_settings(store).timezone == "Etc/GMT+12" else "Etc/GMT+12"
        update_smtp_settings(store, timezone=zone)
    smtp = require_smtp_settings(store)  # the other's change is read each time
    day, granted = quota.reserve(store, 1, owner=owner, settings=smtp)
    quota.settle(store, owner=owner, day=day, released=granted, accepted=granted)
    sent += granted
print(sent)
"""


def test_two_processes_racing_on_the_quota_across_a_zone_change_never_exceed_it(nk_db):
    """Two real processes take the quota one send at a time and switch the zone between
    UTC-12 and UTC+14 (always another calendar date) every few sends: together they send
    the limit, never more."""
    store = open_store(nk_db)
    update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=120,
                         from_addr="news@example.org", timezone="Etc/GMT+12")
    quota.quota_status(store)  # the zone in effect from now on
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(nk_db), str(me)], stdout=subprocess.PIPE,
                              text=True) for me in range(2)]
    total = sum(int(p.communicate(timeout=120)[0]) for p in procs)
    assert total == 120
    zones = store.conn.execute("SELECT count(*) FROM quota_zones").fetchone()[0]
    assert zones >= 4  # the zone did change while they sent
    status = quota.quota_status(store)
    assert (status.used, status.remaining, status.reserved) == (120, 0, 0)
    store.close()
