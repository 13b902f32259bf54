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
