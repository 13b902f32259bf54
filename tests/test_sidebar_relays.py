"""The sidebar shows relays and schedules (issue 17): in the status answer, and in JupyterLab in
headless Chromium, with names from outside shown as text."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import newsletter_kit as nk
from newsletter_kit import clock
from newsletter_kit.overview import overview_of_path
from tests.test_browser import ARTIFACTS, Lab, jupyterlab, page  # noqa: F401 (fixtures)
from tests.test_sidebar_scale import _request

ODD = "<img src=x onerror=\"window.__pwned=1\">"


def _store(db: Path) -> None:
    store = nk.open_store(db)
    nk.update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=500,
                            from_addr="news@example.org", timezone="UTC")
    nk.update_relay(store, "ses-eu", create=True, host="127.0.0.1", port=2526, tls="none", daily_limit=1000,
                    warmup="50:30", weight=2)
    nk.add_contacts(store, [{"email": f"reader{i}@example.org"} for i in range(5)])
    nk.create_campaign(store, "later", "all", "Hi", "<p>Hi</p>")
    nk.create_campaign(store, ODD, "all", "Hi", "<p>Hi</p>")
    nk.schedule_campaign(store, "later", clock.now() + dt.timedelta(days=3), window="08:00-18:00",
                         days="mon-fri", tz="Europe/Paris", priority=2)
    nk.schedule_campaign(store, ODD, "now", tz="UTC")
    with store.transaction():  # what a run through the second relay left in the ledger today
        store.conn.execute("INSERT INTO deliveries (campaign_id, email, state, relay, created_at, updated_at, sent_at)"
                           " SELECT id, 'x@example.org', 'sent', 'ses-eu', ?, ?, ? FROM campaigns WHERE name = 'later'",
                           (clock.now_iso(),) * 3)
    store.close()


def test_the_status_carries_each_relay_and_the_schedules(nk_db: Path) -> None:
    _store(nk_db)
    answer = overview_of_path(nk_db)
    relays = {r["relay"]: r for r in answer["relays"]}
    assert relays["default"]["limit"] == 500 and relays["ses-eu"]["used"] == 1
    assert relays["ses-eu"]["limit"] == 50 and relays["ses-eu"]["weight"] == 2  # day one of the warm-up
    schedules = {s["campaign"]: s for s in answer["schedules"]}
    assert [s["campaign"] for s in answer["schedules"]] == ["later", ODD]  # priority first
    assert schedules[ODD]["open"] is True and schedules["later"]["open"] is False
    assert schedules["later"]["window"] == "08:00-18:00" and schedules["later"]["next_opening"]


def test_without_relays_or_schedules_the_status_says_so_with_empty_lists(nk_db: Path) -> None:
    store = nk.open_store(nk_db)
    nk.update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=500,
                            from_addr="news@example.org", timezone="UTC")
    store.close()
    answer = overview_of_path(nk_db)
    assert answer["relays"] == [] and answer["schedules"] == []


def test_the_sidebar_shows_relays_and_schedules_as_text(jupyterlab: Lab, page, nk_db: Path):
    from tests.test_labextension import _wait_for_lab

    _store(nk_db)
    code, _, answer = _request(jupyterlab, "newsletter-kit/status")
    assert code == 200 and len(answer["relays"]) == 2
    _wait_for_lab(page, jupyterlab)
    page.locator(".jp-SideBar [data-id='newsletter-kit-sidebar']").click()
    sidebar = page.locator(".nk-lab-sidebar")
    sidebar.wait_for(state="visible")
    page.locator(".nk-lab-relay[data-relay='ses-eu']").wait_for()
    assert sidebar.locator(".nk-lab-relay").count() == 2
    assert "1 / 50 today" in sidebar.locator(".nk-lab-relay[data-relay='ses-eu']").inner_text()
    assert sidebar.locator(".nk-lab-schedule").count() == 2
    later = sidebar.locator(".nk-lab-schedule[data-campaign='later']")
    assert later.get_attribute("data-open") == "false" and "08:00-18:00" in later.inner_text()
    odd = sidebar.locator(".nk-lab-schedule[data-open='true']")
    assert ODD in odd.inner_text()  # the name as typed, shown as text
    assert page.evaluate("() => window.__pwned") is None
    page.screenshot(path=str(ARTIFACTS / "sidebar-relays-schedules.png"))
