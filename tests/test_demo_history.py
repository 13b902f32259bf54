"""The demo's twelve weeks: recorded through the real send and fetch paths, with the shapes the
review is meant to show (issue 11 item 2). One history is built for the module (it takes seconds)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

import newsletter_kit as nk
from newsletter_kit import clock, demo, demo_history
from newsletter_kit.errors import ConfigError


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> nk.Store:
    store = nk.open_store(tmp_path_factory.mktemp("history") / "demo.db")
    report = demo_history.build_history(store)
    assert report.built_now and report.campaigns == 12 and report.contacts == 2000
    yield store
    demo.stop_demo_servers()


def test_the_clock_is_back_to_the_system_time(history: nk.Store) -> None:
    assert not clock.is_shifted()
    assert abs(clock.now() - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(seconds=5)


def test_weekly_campaigns_went_out_on_their_weeks(history: nk.Store) -> None:
    rows = history.conn.execute(
        "SELECT c.name, min(d.sent_at), max(d.sent_at), count(*) FROM deliveries d "
        "JOIN campaigns c ON c.id = d.campaign_id WHERE d.state = 'sent' GROUP BY c.name ORDER BY c.name").fetchall()
    assert [name for name, *_ in rows] == [f"weekly-{k:02d}" for k in range(1, 13)]
    firsts = [dt.datetime.fromisoformat(first) for _, first, _, _ in rows]
    assert all(first.weekday() == 1 and first.hour == demo_history.SEND_HOUR for first in firsts)  # Tuesdays
    assert {b - a for a, b in zip(firsts, firsts[1:])} <= {dt.timedelta(weeks=1), dt.timedelta(weeks=1, seconds=1)}
    assert firsts[-1] < dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=5)  # all in the past
    assert all(400 <= n <= 500 for *_, n in rows)  # an edition each, within the daily limit
    # The quota counted each send day, in the past.
    days = {day for (day,) in history.conn.execute("SELECT day FROM quota_days WHERE used > 0")}
    assert len(days) == 12


def test_per_day_has_twelve_weeks_and_the_outage_stands_out(history: nk.Store) -> None:
    by_day = nk.bounces_by_day(history, tz="UTC")
    sent_days = pd.to_datetime(by_day.loc[by_day["sent"] > 0, "day"])
    assert sent_days.dt.isocalendar().week.nunique() >= 12
    outage_day = (demo_history.make_world_and_contacts()[0].send_time(demo_history.OUTAGE_WEEK)).date()
    delayed = by_day.set_index("day")["delayed"]
    assert delayed[outage_day] > 20 and delayed.drop(outage_day).sum() == 0
    # The relay gave up a day later: those soft bounces are dated the next day.
    soft = by_day.set_index("day")["soft"]
    assert soft[outage_day + dt.timedelta(days=1)] >= delayed[outage_day]


def test_per_domain_shows_the_outage_the_block_and_the_old_provider(history: nk.Store) -> None:
    by_domain = nk.bounces_by_domain(history, with_sent=True).set_index("domain")
    assert set(by_domain.index[:3]) >= {demo_history.OUTAGE_DOMAIN, demo_history.POLICY_DOMAIN}
    assert by_domain.loc[demo_history.POLICY_DOMAIN, "policy"] > 50
    assert by_domain["policy"].drop(demo_history.POLICY_DOMAIN).sum() == 0  # only there, only then
    old = by_domain.loc[demo_history.OLD_DOMAIN]
    assert old["hard"] / old["sent"] > 3 * by_domain.loc["example.org", "hard"] / by_domain.loc["example.org", "sent"]


def test_dead_mailboxes_bounce_hard_once_and_soft_bouncers_repeat(history: nk.Store) -> None:
    by_address = nk.bounces_by_address(history)
    hard = by_address[by_address["hard"] > 0]
    assert len(hard) > 30 and (hard["hard"] == 1).all()
    assert (by_address["soft"] >= 2).sum() > 10
    # The saved threshold (3) suppressed those full for all three of their campaigns; a
    # complaint suppressed its address at once (issue 15's default).
    suppressed = by_address[by_address["suppressed"]]
    by_threshold = suppressed[suppressed["complaint"] == 0]
    assert len(by_threshold) and by_threshold["soft"].min() == 3
    assert ((suppressed["soft"] >= 3) | (suppressed["complaint"] > 0)).all()


def test_the_what_if_has_a_shape_and_each_option_changes_it(history: nk.Store) -> None:
    def reach(**policy: object) -> list[int]:
        return nk.threshold_what_if(history, 4, **policy)["would_suppress"].tolist()

    default = reach()
    assert default[0] > default[1] > 0 and default[1] >= default[2] > 0 and default[3] == 0
    assert reach(count_policy=True)[0] == default[0]               # a spam block is about us: never counts
    blocked = nk.sender_problems(history).set_index("reason")
    assert blocked["count"].sum() > 50 and blocked["remedy"].all()  # shown, with its remedy
    assert reach(reset_on_success=True)[1] < default[1]             # emptied mailboxes forgiven
    assert reach(stale_after_days=30)[0] < default[0]               # the early weeks age out


def test_complaints_and_mailto_unsubscribes_were_fetched(history: nk.Store) -> None:
    summary = nk.campaign_summary(history)
    assert summary["complaints"].sum() >= 3
    mailto = history.conn.execute("SELECT count(*), count(DISTINCT campaign) FROM unsubscribes "
                                  "WHERE source = 'mailto'").fetchone()
    assert mailto[0] >= 5 and mailto[1] >= 3


def test_every_report_went_through_the_fetch_and_matches_a_delivery(history: nk.Store) -> None:
    unmatched, files = history.conn.execute(
        "SELECT sum(delivery_id IS NULL), count(*) FROM bounces WHERE source = 'file'").fetchone()
    assert files > 300 and unmatched == 0
    later = history.conn.execute(
        "SELECT count(*) FROM bounces b JOIN deliveries d ON d.id = b.delivery_id "
        "WHERE julianday(b.bounced_at) <= julianday(d.sent_at)").fetchone()[0]
    assert later == 0  # every report is dated after the message it is about


def test_building_again_records_nothing(history: nk.Store) -> None:
    before = history.conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    again = demo_history.build_history(history)
    assert not again.built_now and again.campaigns == 12
    assert history.conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == before


def test_a_store_with_real_settings_gets_no_history(tmp_path: Path) -> None:
    store = nk.open_store(tmp_path / "real.db")
    nk.update_smtp_settings(store, host="smtp.example.org", port=587, daily_limit=100,
                            from_addr="news@example.org")
    with pytest.raises(ConfigError, match="real SMTP settings"):
        demo_history.build_history(store)
    assert store.conn.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0


def test_the_history_leaves_todays_reports_to_the_reviews_fetch(tmp_path: Path) -> None:
    """Notebooks 01 -> 02 -> 03 (issue 19): today's campaign is sent before the history is built;
    the history's weekly fetches must not take in (and date weeks back) today's reports, so the
    review's fetch finds them, dated today, and "last fetch" moves to now."""
    store = nk.open_store(tmp_path / "demo.db")
    try:
        env = demo.ensure_demo_settings(store)
        assert env is not None
        nk.import_contacts(store, demo.sample_contacts_path(), list_name=demo.DEMO_LIST)
        demo.ensure_demo_campaign(store)
        sent = demo.send_if_demo(store, demo.DEMO_CAMPAIGN)
        assert sent is not None and sent.sent > 0
        demo.ensure_demo_history(store)
        report = nk.fetch_bounces(store, source_path=demo.demo_bounce_source(store))
        assert report.fetched > 0 and sum(report.bounces.values()) > 0
        today = clock.now().date().isoformat()
        dates = {r[0][:10] for r in store.conn.execute(
            "SELECT bounced_at FROM bounces WHERE campaign = ?", (demo.DEMO_CAMPAIGN,))}
        assert dates == {today}
        again = nk.fetch_bounces(store, source_path=demo.demo_bounce_source(store))
        assert again.fetched == 0
        from newsletter_kit.overview import store_overview
        assert store_overview(store)["last_bounce_fetch"][:10] == today
    finally:
        demo.stop_demo_servers()
        store.close()
