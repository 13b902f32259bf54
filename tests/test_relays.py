"""Several relays (issue 17, items 1, 2 and 5): shares by weight, failover when a relay dies or
throttles, limits per relay, warm-up; real aiosmtpd servers (one with AUTH and STARTTLS)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import Counter

import pytest

from newsletter_kit import relaying
from newsletter_kit.campaigns import campaign_status, send_campaign
from newsletter_kit.errors import ValidationError
from newsletter_kit.relays import RelaySettings, list_relays, remove_relay, set_relay_enabled, update_relay
from newsletter_kit.store import open_store
from tests.mailservers import FaultHandler
from tests.sending import addresses, configure, contacts, invoke, make_campaign, received

PASSWORD_ENV = "NK_TEST_RELAY_PASSWORD"


def _add(store, name, srv, **extra):
    update_relay(store, name, create=True, host="127.0.0.1", port=srv.port, tls="none",
                 daily_limit=extra.pop("daily_limit", 100000), **extra)


def _relay_of(store, name="spring"):
    rows = store.conn.execute(
        "SELECT d.email, d.relay, d.state FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id "
        "WHERE c.name = ?", (name,)).fetchall()
    return {email: (relay, state) for email, relay, state in rows}


def _once(servers, emails):
    counts = Counter()
    for srv in servers:
        counts.update(received(srv))
    return counts, set(emails) - set(counts), {e for e, n in counts.items() if n > 1}


def test_relays_are_managed_and_never_store_a_password(monkeypatch, smtp_server, nk_db) -> None:
    srv = smtp_server()
    store = open_store(nk_db)
    configure(store, srv)
    update_relay(store, "ses", create=True, host="127.0.0.1", port=srv.port, tls="none", daily_limit=500,
                 user="AKIA", password_ref=f"env:{PASSWORD_ENV}", allow_plain_auth=True,
                 max_per_second=14, warmup="50:30")
    with pytest.raises(ValidationError, match="exists"):
        update_relay(store, "ses", create=True, host="x.example.org", port=25, daily_limit=1)
    with pytest.raises(ValidationError, match="needs --host"):
        update_relay(store, "half", create=True, host="x.example.org")
    with pytest.raises(ValidationError, match="settings smtp"):
        update_relay(store, "default", host="elsewhere.example.org")
    update_relay(store, "default", weight=3)
    assert [r.name for r in list_relays(store)] == ["default", "ses"]
    assert list_relays(store)[0].settings.weight == 3
    raw = b"".join(bytes(str(row), "utf-8") for row in store.conn.execute("SELECT data FROM settings"))
    assert b"env:" + PASSWORD_ENV.encode() in raw and b"secret" not in raw
    set_relay_enabled(store, "ses", False)
    assert [r.name for r in list_relays(store, enabled_only=True)] == ["default"]
    result = invoke(["settings", "relay", "list", "--json"])
    listed = json.loads(result.stdout)
    assert [r["name"] for r in listed] == ["default", "ses"] and listed[1]["enabled"] is False
    assert listed[1]["password"] != f"env:{PASSWORD_ENV}" and listed[1]["warmup"] == "50:30"
    remove_relay(store, "ses")
    with pytest.raises(ValidationError):
        remove_relay(store, "default")
    bad = invoke(["settings", "relay", "add", "x", "--host", "h.example.org", "--port", "25",
                  "--daily-limit", "10", "--warmup", "fifty"])
    assert bad.returncode != 0 and "START:DAYS" in bad.stderr and "Traceback" not in bad.stderr


def test_the_warm_up_ramp_is_geometric_and_ends_at_the_limit() -> None:
    r = RelaySettings("b", "h.example.org", 25, 10000, warmup_start=50, warmup_days=30, warmup_since="2026-12-01")
    days = [r.limit_on(dt.date(2026, 12, 1) + dt.timedelta(days=d)) for d in range(0, 32)]
    assert days[0] == 50 and days[30] == days[31] == 10000
    assert all(a <= b for a, b in zip(days, days[1:]))
    ratios = [days[d + 1] / days[d] for d in range(5, 25)]
    assert max(ratios) - min(ratios) < 0.02  # the same factor every day


def test_recipients_are_spread_by_weight_and_each_goes_once(smtp_server, test_ca, nk_db, monkeypatch) -> None:
    a = smtp_server()
    b = smtp_server(tls="starttls", auth={"relay-b": "pw-b"})
    monkeypatch.setenv(PASSWORD_ENV, "pw-b")
    store = open_store(nk_db)
    configure(store, a)
    update_relay(store, "b", create=True, host="localhost", port=b.port, tls="starttls", daily_limit=100000,
                 user="relay-b", password_ref=f"env:{PASSWORD_ENV}", ca_file=test_ca.ca_file, weight=3)
    emails = addresses(400)
    contacts(store, emails)
    make_campaign(store)
    report = send_campaign(store, "spring", connections=2)
    counts, missing, twice = _once([a, b], emails)
    assert not missing and not twice and report.sent == 400 and report.paused is None
    by_relay = Counter(relay for relay, _ in _relay_of(store).values())
    assert by_relay == {"default": len(received(a)), "b": len(received(b))}
    assert by_relay["b"] == pytest.approx(300, abs=20)
    assert campaign_status(store, "spring")["sent"] == 400


def test_a_relay_dying_mid_campaign_fails_over_to_the_others(smtp_server, nk_db, monkeypatch) -> None:
    monkeypatch.setattr(relaying, "COOLDOWN_BASE", 0.2)
    a = smtp_server(delay=0.002)
    b = smtp_server(delay=0.002)
    c = smtp_server(delay=0.002)
    store = open_store(nk_db)
    configure(store, a)
    _add(store, "b", b)
    _add(store, "c", c)
    emails = addresses(2000)
    contacts(store, emails)
    make_campaign(store)

    def kill_b() -> None:
        while len(b.messages) < 150:
            time.sleep(0.01)
        b.stop()

    killer = threading.Thread(target=kill_b)
    killer.start()
    report = send_campaign(store, "spring")
    killer.join()
    counts, missing, twice = _once([a, b, c], emails)
    ledger = _relay_of(store)
    unknown = {e for e, (_, state) in ledger.items() if state == "unknown"}
    assert not twice
    assert missing <= unknown and len(unknown) <= 1  # at most the message on b's wire
    assert all(state in ("sent", "unknown") for _, state in ledger.values())
    assert len(received(b)) < 700 and report.paused is None


def test_a_relay_that_throttles_slows_the_run_and_nobody_bounces(smtp_server, nk_db, monkeypatch) -> None:
    monkeypatch.setattr(relaying, "COOLDOWN_BASE", 0.2)

    class Throttling(FaultHandler):
        until = time.monotonic() + 1.5
        refused = 0

        async def handle_MAIL(self, server, session, envelope, address, options):
            if time.monotonic() < self.until:
                type(self).refused += 1
                return "421 4.7.0 Try again later, closing connection"
            envelope.mail_from = address
            return "250 OK"

    slow = smtp_server(handler=Throttling())
    other = smtp_server(handler=Throttling())
    store = open_store(nk_db)
    configure(store, slow)
    _add(store, "other", other)
    emails = addresses(60)
    contacts(store, emails)
    make_campaign(store)
    report = send_campaign(store, "spring")
    counts, missing, twice = _once([slow, other], emails)
    assert not missing and not twice and report.sent == 60
    assert Throttling.refused >= 2  # both relays said "later" at least once: the run waited
    assert store.conn.execute("SELECT count(*) FROM bounces").fetchone()[0] == 0


def test_every_relay_set_aside_pauses_with_a_time_to_retry(smtp_server, nk_db, monkeypatch) -> None:
    monkeypatch.setattr(relaying, "COOLDOWN_BASE", 0.05)
    monkeypatch.setattr(relaying, "MAX_WAIT", 0.3)
    srv = smtp_server()
    store = open_store(nk_db)
    configure(store, srv)
    srv.stop()  # nobody listens on the default relay's port any more
    update_relay(store, "gone", create=True, host="127.0.0.1", port=srv.port, tls="none", daily_limit=10)
    contacts(store, addresses(5))
    make_campaign(store)
    result = invoke(["campaign", "send", "spring", "--json"])
    doc = json.loads(result.stdout)
    assert result.returncode == 75 and doc["paused"] == "connection" and doc["resume_at"]
    assert "every relay is set aside" in doc["detail"]
    assert all(state == "pending" for _, state in _relay_of(store).values())


def test_each_relay_keeps_its_own_daily_and_hourly_limit(smtp_server, nk_db) -> None:
    a = smtp_server()
    b = smtp_server()
    store = open_store(nk_db)
    configure(store, a, limit=7)
    _add(store, "b", b, daily_limit=100, hourly_limit=5)
    contacts(store, addresses(30))
    make_campaign(store)
    report = send_campaign(store, "spring")
    assert len(received(a)) == 7 and len(received(b)) == 5
    assert report.sent == 12 and report.paused == "quota"
    quota = json.loads(invoke(["quota", "--json"]).stdout)
    assert quota["used"] == 12 and {r["relay"]: r["used"] for r in quota["relays"]} == {"default": 7, "b": 5}


def test_two_processes_racing_keep_every_relays_limit(smtp_server, nk_db) -> None:
    from tests.sending import start_cli

    a = smtp_server(delay=0.005)
    b = smtp_server(delay=0.005)
    store = open_store(nk_db)
    configure(store, a, limit=40)
    _add(store, "b", b, daily_limit=25)
    contacts(store, addresses(200))
    make_campaign(store)
    make_campaign(store, "other")
    procs = [start_cli(["--db", str(nk_db), "campaign", "send", name]) for name in ("spring", "other")]
    for proc in procs:
        proc.communicate(timeout=120)
    # Both campaigns go to the same readers: count messages, not addresses.
    assert len(a.messages) == 40 and len(b.messages) == 25


def test_a_disabled_default_sends_only_through_the_others(smtp_server, nk_db) -> None:
    a = smtp_server()
    b = smtp_server()
    store = open_store(nk_db)
    configure(store, a)
    _add(store, "b", b)
    set_relay_enabled(store, "default", False)
    contacts(store, addresses(10))
    make_campaign(store)
    send_campaign(store, "spring")
    assert len(received(a)) == 0 and len(received(b)) == 10


def test_the_settings_panel_has_a_relay_table_that_adds_and_escapes(smtp_server, nk_db) -> None:
    from newsletter_kit.panels import SettingsPanel

    store = open_store(nk_db)
    configure(store, smtp_server())
    panel = SettingsPanel(store).relays
    assert "default" in panel.table.value
    panel.name.value = "b"
    panel.host.value = "127.0.0.1"
    panel.port.value = 2526
    panel.tls.value = "none"
    panel.daily_limit.value = 300
    panel.weight.value = 2
    panel.warmup.value = "50:30"
    panel.add_button.click()
    assert "nk-error" not in panel.message.value, panel.message.value
    assert [r.name for r in list_relays(store)] == ["default", "b"]
    assert "<td>b</td>" in panel.table.value and "warm-up 50:30" in panel.table.value
    panel.name.value = "<img src=x onerror=alert(1)>"
    panel.add_button.click()
    assert "nk-error" in panel.message.value and "<img" not in panel.message.value
    panel.name.value = "b"
    panel.disable_button.click()
    assert not list_relays(store)[1].enabled and "disabled" in panel.table.value
