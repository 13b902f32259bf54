"""Schedules, windows and `newsletter-kit run` (issue 17, item 4), and recipient domains spread
out within a run (item 3), on a real aiosmtpd server."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from newsletter_kit import clock
from newsletter_kit.errors import CampaignError
from newsletter_kit.runner import run_due
from newsletter_kit.schedules import (Schedule, get_schedule, list_schedules, parse_at, parse_days,
                                      parse_window, schedule_campaign, unschedule_campaign)
from newsletter_kit.store import open_store
from tests.sending import addresses, configure, contacts, invoke, ledger, make_campaign, received

UTC = dt.timezone.utc


def _utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# --- the schedule itself ------------------------------------------------------------------------

def test_a_window_follows_its_zone_across_daylight_saving() -> None:
    s = Schedule("x", _utc(2026, 3, 1), "Europe/Paris", parse_window("08:00-18:00"))
    # Saturday 28 March: CET (UTC+1), opens 07:00 UTC; Monday 30 March: CEST (UTC+2), 06:00 UTC.
    assert s.next_opening(_utc(2026, 3, 28, 0)) == _utc(2026, 3, 28, 7)
    assert s.next_opening(_utc(2026, 3, 30, 0)) == _utc(2026, 3, 30, 6)
    assert s.closes_at(_utc(2026, 3, 30, 10)) == _utc(2026, 3, 30, 16)
    assert not s.is_open(_utc(2026, 3, 30, 16))


def test_an_overnight_window_on_week_days() -> None:
    s = Schedule("x", _utc(2026, 12, 1), "UTC", parse_window("22:00-06:00"), parse_days("mon-fri"))
    assert s.is_open(_utc(2026, 12, 8, 23))          # Tuesday night
    assert s.is_open(_utc(2026, 12, 9, 5, 59))       # the window that opened on Tuesday
    assert not s.is_open(_utc(2026, 12, 9, 6))
    assert s.is_open(_utc(2026, 12, 12, 3))          # Saturday 03:00: Friday's window still open
    assert not s.is_open(_utc(2026, 12, 12, 23))     # Saturday night: no window opens on Saturday
    assert s.next_opening(_utc(2026, 12, 12, 23)) == _utc(2026, 12, 14, 22)
    assert s.closes_at(_utc(2026, 12, 8, 23)) == _utc(2026, 12, 9, 6)


def test_nothing_before_the_start_and_no_window_means_any_hour() -> None:
    s = Schedule("x", _utc(2026, 12, 8, 9), "UTC")
    assert not s.is_open(_utc(2026, 12, 8, 8, 59))
    assert s.is_open(_utc(2026, 12, 8, 9)) and s.closes_at(_utc(2026, 12, 9)) is None
    assert s.next_opening(_utc(2026, 12, 1)) == _utc(2026, 12, 8, 9)


@pytest.mark.parametrize("window", ["8-18", "08:00", "25:00-26:00", "08:00-08:00", "08:60-09:00"])
def test_a_bad_window_is_one_clear_error(window: str) -> None:
    with pytest.raises(CampaignError):
        parse_window(window)


@pytest.mark.parametrize("days", ["weekdays", "mon-xyz", "monday"])
def test_bad_days_are_one_clear_error(days: str) -> None:
    with pytest.raises(CampaignError):
        parse_days(days)


def test_times_are_read_in_the_schedule_zone_unless_they_say_their_offset() -> None:
    assert parse_at("2026-07-01 09:00", "America/New_York") == _utc(2026, 7, 1, 13)
    assert parse_at("2026-07-01T09:00:00+02:00", "America/New_York") == _utc(2026, 7, 1, 7)
    with pytest.raises(CampaignError):
        parse_at("next tuesday", "UTC")


def test_schedules_are_stored_replaced_and_removed() -> None:
    store = open_store(":memory:")
    contacts(store, addresses(2))
    make_campaign(store, "a")
    make_campaign(store, "b")
    schedule_campaign(store, "a", "2026-12-08 09:00", tz="UTC")
    schedule_campaign(store, "b", "2026-12-09 09:00", tz="UTC", priority=5)
    schedule_campaign(store, "a", "2026-12-10 09:00", tz="UTC", window="08:00-18:00")
    assert [s.campaign for s in list_schedules(store)] == ["b", "a"]  # priority first
    assert get_schedule(store, "a").window == parse_window("08:00-18:00")
    assert unschedule_campaign(store, "a") and get_schedule(store, "a") is None
    with pytest.raises(CampaignError, match="no campaign"):
        schedule_campaign(store, "nope")
    with pytest.raises(CampaignError, match="time zone"):
        schedule_campaign(store, "b", tz="Mars/Olympus")


# --- run: real sends ------------------------------------------------------------------------------

def test_run_sends_only_what_is_due_and_is_idempotent(smtp_server, nk_db) -> None:
    srv = smtp_server()
    store = open_store(nk_db)
    configure(store, srv)
    contacts(store, addresses(12))
    make_campaign(store, "later")
    make_campaign(store, "now")
    schedule_campaign(store, "later", clock.now() + dt.timedelta(days=2), tz="UTC")
    schedule_campaign(store, "now", "now", tz="UTC")

    report = run_due(store, fetch=False)
    kinds = {a.campaign: a.kind for a in report.actions}
    assert kinds == {"later": "wait", "now": "send"} and report.exit_code == 0
    assert len(srv.messages) == 12
    assert ledger(store, "later") == {}  # not due: not even its audience was written

    again = run_due(store, fetch=False)  # "now" is done: nothing new goes out
    assert [a.kind for a in again.actions] == ["wait"] and len(srv.messages) == 12


def test_priority_decides_who_gets_a_short_quota(smtp_server, nk_db) -> None:
    srv = smtp_server()
    store = open_store(nk_db)
    configure(store, srv, limit=5)
    contacts(store, addresses(5))
    make_campaign(store, "low")
    make_campaign(store, "high")
    schedule_campaign(store, "low", "now", tz="UTC", priority=1)
    schedule_campaign(store, "high", "now", tz="UTC", priority=9)
    report = run_due(store, fetch=False)
    assert [(a.campaign, a.kind) for a in report.actions] == [("high", "send"), ("low", "wait")]
    assert all(s == "sent" for s, *_ in ledger(store, "high").values())
    assert not any(s == "sent" for s, *_ in ledger(store, "low").values())


def test_a_window_that_closes_mid_campaign_pauses_at_the_edge_and_run_resumes(smtp_server, nk_db) -> None:
    srv = smtp_server(delay=0.02)
    store = open_store(nk_db)
    configure(store, srv)
    emails = addresses(300)
    contacts(store, emails)
    make_campaign(store)
    schedule_campaign(store, "spring", "2026-12-07 08:00", window="08:00-18:00", tz="Europe/Paris")
    # Tuesday 17:59:58 in Paris: the window closes two seconds into the run.
    with clock.shifted(_utc(2026, 12, 8, 16, 59, 58)):
        first = run_due(store, fetch=False)
    action = first.actions[0]
    assert action.kind == "send" and action.report["paused"] == "window" and action.exit_code == 0
    assert action.report["resume_at"].startswith("2026-12-09T07:00")
    sent_first = len(srv.messages)
    assert 0 < sent_first < 300
    with clock.shifted(_utc(2026, 12, 8, 20)):  # closed: nothing goes
        assert run_due(store, fetch=False).actions[0].kind == "wait"
    assert len(srv.messages) == sent_first
    with clock.shifted(_utc(2026, 12, 9, 7, 0, 5)):
        second = run_due(store, fetch=False)
    assert second.actions[0].report["paused"] is None
    counts = received(srv)
    assert sorted(counts) == sorted(emails) and set(counts.values()) == {1}


def test_run_on_the_command_line_prints_one_line_per_action_and_the_send_exit_code(smtp_server, nk_db) -> None:
    srv = smtp_server()
    store = open_store(nk_db)
    configure(store, srv)
    contacts(store, addresses(3) + ["data554.x@example.org"])
    make_campaign(store)
    result = invoke(["campaign", "schedule", "spring", "--at", "now", "--tz", "UTC"])
    assert result.returncode == 0, result.stderr
    result = invoke(["run", "--no-fetch", "--json"])
    doc = json.loads(result.stdout)
    assert doc["actions"][0]["campaign"] == "spring"
    # data554 refuses the message itself: the run stops as `campaign send` would, exit 1
    assert result.returncode == doc["exit_code"] == doc["actions"][0]["exit_code"] == 1
    bad = invoke(["campaign", "schedule", "spring", "--window", "9-5"])
    assert bad.returncode != 0 and "window" in bad.stderr and "Traceback" not in bad.stderr


def test_run_with_nothing_scheduled_says_so() -> None:
    assert invoke(["run"]).returncode == 1  # no store yet: one clear line, nothing created
    invoke(["init"])
    result = invoke(["run"])
    assert result.returncode == 0 and "no scheduled campaign" in result.stdout


def test_a_list_sorted_by_domain_goes_out_interleaved(smtp_server, nk_db) -> None:
    srv = smtp_server()
    store = open_store(nk_db)
    configure(store, srv)
    emails = ([f"g{i:02d}@gmail.example" for i in range(30)] + [f"y{i:02d}@yahoo.example" for i in range(30)]
              + [f"w{i:02d}@web.example" for i in range(30)])
    contacts(store, emails)
    make_campaign(store)
    from newsletter_kit.campaigns import send_campaign

    send_campaign(store, "spring")
    order = [env.rcpt_tos[0].rpartition("@")[2] for env in srv.messages]
    longest_run = max(len(list(g)) for _, g in __import__("itertools").groupby(order))
    assert len(order) == 90 and longest_run == 1


# --- the campaign panel ---------------------------------------------------------------------------

def test_the_campaign_panel_schedules_and_clears(smtp_server, nk_db) -> None:
    from newsletter_kit.panels import CampaignPanel

    store = open_store(nk_db)
    configure(store, smtp_server())
    contacts(store, addresses(3))
    make_campaign(store)
    panel = CampaignPanel(store, campaign="spring")
    assert "Not scheduled" in panel.schedule_label.value
    panel.schedule_at.value = "2026-12-08 09:00"
    panel.schedule_window.value = "08:00-18:00"
    panel.schedule_days.value = "mon-fri"
    panel.schedule_tz.value = "Europe/Paris"
    panel.schedule_priority.value = 4
    panel.schedule_button.click()
    saved = get_schedule(store, "spring")
    assert saved is not None and saved.priority == 4 and saved.tz == "Europe/Paris"
    assert "08:00-18:00" in panel.schedule_label.value and "nk-error" not in panel.message.value
    panel.schedule_window.value = "late"
    panel.schedule_button.click()
    assert "nk-error" in panel.message.value and "window" in panel.message.value
    assert get_schedule(store, "spring").window == parse_window("08:00-18:00")  # unchanged
    panel.unschedule_button.click()
    assert get_schedule(store, "spring") is None and "Not scheduled" in panel.schedule_label.value


def test_a_domain_limit_holds_back_that_domain_and_sends_the_rest(smtp_server, nk_db) -> None:
    srv = smtp_server()
    store = open_store(nk_db)
    configure(store, srv)
    emails = [f"g{i:02d}@gmail.example" for i in range(30)] + [f"o{i:02d}@other.example" for i in range(30)]
    contacts(store, emails)
    make_campaign(store)
    result = invoke(["settings", "smtp", "--domain-limit", "gmail.example=12/h"])
    assert result.returncode == 0 and "gmail.example 12/h" in result.stderr
    bad = invoke(["settings", "smtp", "--domain-limit", "gmail.example=lots"])
    assert bad.returncode != 0 and "DOMAIN=N/h" in bad.stderr
    from newsletter_kit.campaigns import send_campaign

    report = send_campaign(store, "spring")
    got = received(srv)
    assert sum(1 for e in got if e.endswith("@gmail.example")) == 12
    assert sum(1 for e in got if e.endswith("@other.example")) == 30
    assert report.pending == 18 and "gmail.example" in report.detail
    with clock.shifted(clock.now() + dt.timedelta(hours=1)):
        send_campaign(store, "spring")
    assert sum(1 for e in received(srv) if e.endswith("@gmail.example")) == 24
    assert set(received(srv).values()) == {1}
