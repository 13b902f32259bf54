"""Sender identity (issue 10, item 1): a From with a display name, Reply-To, List-Id, IDNA domains.

Checked on what a real aiosmtpd server receives through `campaign send`, and through the CLI.
"""

from __future__ import annotations

import email
import email.policy
import json
import re

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter_kit import campaigns
from newsletter_kit import headers as h
from newsletter_kit import messages as m
from newsletter_kit import settings as s
from newsletter_kit.addresses import check_from, parse_from
from newsletter_kit.audience import add_contacts
from newsletter_kit.cli import cli
from newsletter_kit.errors import ValidationError
from newsletter_kit.store import open_store
from tests.test_header_safety import BASE, UNSAFE, check_received, hostile, sink  # noqa: F401 (fixture)

BOUNCE = dict(host="127.0.0.1", port=1143, user="bounces@shop.example", threshold=2, tls="none",
              allow_plain_auth=True, password_ref="env:NK_UNUSED")


@pytest.fixture
def store(nk_db):
    store = open_store(nk_db)
    yield store
    store.close()


def send(store, srv, list_name="news", **smtp):
    s.update_smtp_settings(store, **{"host": "127.0.0.1", "port": srv.port, "tls": "none", "daily_limit": 50,
                                     "from_addr": "news@shop.example", **smtp})
    s.update_bounce_settings(store, **BOUNCE)
    add_contacts(store, [{"email": "ann@example.org", "first_name": "Ann"}], list_name=list_name)
    return srv


def received(srv) -> email.message.EmailMessage:
    (env,) = srv.messages
    return email.message_from_bytes(env.content.replace(b"\r\n", b"\n"), policy=email.policy.default)


def test_a_display_name_in_any_language_reaches_the_server_encoded_and_reads_back(store, smtp_server):
    srv = send(store, smtp_server(tls="none"), from_addr="Città Ñews — 日本 <News@Bücher.example>")
    campaigns.create_campaign(store, "spring", "news", "Hi {{ first_name }}", "<p>Hi</p>")
    assert campaigns.send_campaign(store, "spring").sent == 1
    (env,) = srv.messages
    head = env.content.split(b"\r\n\r\n")[0]
    assert head.isascii() and re.search(rb"From:\s+=\?utf-8\?", head)
    (sender,) = received(srv)["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Città Ñews — 日本", "news@xn--bcher-kva.example")
    assert env.mail_from == "bounces@shop.example"  # the envelope stays the bounce address


def test_reply_to_and_a_set_list_id_are_stamped(store, smtp_server):
    srv = send(store, smtp_server(tls="none"), from_addr="Shop News <news@shop.example>",
               reply_to="Help Desk <help@shop.example>", list_id="Shop News, weekly <weekly.shop.example>")
    campaigns.create_campaign(store, "spring", "news", "Hi", "<p>Hi</p>")
    campaigns.send_campaign(store, "spring")
    msg = received(srv)
    assert [k for k in msg.keys()][:2] == ["From", "Reply-To"]
    assert str(msg["Reply-To"]) == "Help Desk <help@shop.example>"
    assert msg["List-Id"].endswith("<weekly.shop.example>") and "Shop News, weekly" in msg["List-Id"]


def test_the_default_list_id_comes_from_the_list_and_the_from_domain(store, smtp_server):
    srv = send(store, smtp_server(tls="none"), list_name="Clienti Città")
    campaigns.create_campaign(store, "spring", "Clienti Città", "Hi", "<p>Hi</p>")
    campaigns.send_campaign(store, "spring")
    msg = received(srv)
    assert "Reply-To" not in msg
    assert msg["List-Id"] == "Clienti Città <clienti-citta.shop.example>"
    (env,) = srv.messages
    assert b"<clienti-citta.shop.example>" in env.content  # the list-id itself never encoded


def test_a_campaign_from_overrides_the_settings_and_moves_the_default_list_id(store, smtp_server):
    srv = send(store, smtp_server(tls="none"), from_addr="Shop <news@shop.example>")
    campaigns.create_campaign(store, "spring", "news", "Hi", "<p>Hi</p>", from_addr="Outlet, Rome <deals@outlet.example>")
    campaigns.send_campaign(store, "spring")
    msg = received(srv)
    (sender,) = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Outlet, Rome", "deals@outlet.example")
    assert msg["List-Id"] == "news <news.outlet.example>"
    assert msg["Message-ID"].endswith("@outlet.example>")


def test_the_cli_takes_a_display_name_reply_to_and_list_id(tmp_path):
    db = str(tmp_path / "nk.db")

    def run(*args, ok=True):
        result = CliRunner().invoke(cli, ["--db", db, *args], catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output + result.stderr
        return result

    run("settings", "smtp", "--host", "smtp.example.org", "--port", "587", "--daily-limit", "10",
        "--from", "Shop News <news@shop.example>", "--reply-to", "help@shop.example",
        "--list-id", "Shop News <news.shop.example>")
    shown = json.loads(run("settings", "show", "--json").stdout)["smtp"]
    assert (shown["from"], shown["reply-to"], shown["list-id"]) == (
        "Shop News <news@shop.example>", "help@shop.example", "Shop News <news.shop.example>")
    for flag, value in [("--from", "Shop <news@shop.example>, x@example.org"), ("--reply-to", "a\r\nBcc: x@example.org"),
                        ("--list-id", "news"), ("--list-id", "Shop <news shop.example>"),
                        ("--from", "=?utf-8?q?Shop=0D=0ABcc=3A_x=40example.org?= <news@shop.example>"),
                        ("--from", "Shop <nöws@shop.example>")]:
        bad = run("settings", "smtp", flag, value, ok=False)
        assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    (csv := tmp_path / "c.csv").write_text("email\nann@example.org\n")
    run("contacts", "import", str(csv))
    (html := tmp_path / "t.html").write_text("<p>Hi</p>")
    run("campaign", "create", "spring", "--list", "all", "--subject", "Hi", "--html", str(html),
        "--from", "Spring Sale <sale@shop.example>")
    from_addr = open_store(db).conn.execute("SELECT from_addr FROM campaigns").fetchone()[0]
    assert from_addr == "Spring Sale <sale@shop.example>"


@pytest.mark.parametrize("value, expected", [
    ("news@example.org", ("", "news@example.org")),
    ("Shop News <news@example.org>", ("Shop News", "news@example.org")),
    ('"Shop, News" <news@example.org>', ("Shop, News", "news@example.org")),
    ("Shop, News <news@example.org>", ("Shop, News", "news@example.org")),
    ("Zoë <news@bücher.example>", ("Zoë", "news@xn--bcher-kva.example")),
    (". <news@example.org>", (".", "news@example.org")),  # the stdlib parser raises AttributeError
])
def test_parse_from(value, expected):
    assert parse_from(value) == expected
    assert parse_from(check_from(value)) == expected  # what we write reads back the same


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(reply=hostile, description=hostile)
def test_hostile_reply_to_names_and_list_id_descriptions_are_refused_or_sent_exactly(sink, reply, description):
    kw = {}
    try:
        kw["reply_to"] = check_from(f"{reply} <help@example.org>", "Reply-To address")
    except ValidationError:
        pass
    try:
        kw["list_id"] = h.parse_list_id(f"{description} <news.example.org>")
    except ValidationError:
        pass
    try:
        r = m.CampaignRenderer(**BASE, **kw)
    except ValidationError:
        return
    expected = ["From", "Reply-To", "To", "Subject", "Date", "Message-ID", "List-Id", "X-Newsletter-Campaign",
                "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version", "Content-Type"]
    expected = [e for e in expected if (e != "Reply-To" or r.reply_to) and (e != "List-Id" or r.list_id)]
    msg = check_received(sink, r, {"first_name": "Ann"}, expected)
    if r.reply_to:
        (addr,) = msg["Reply-To"].addresses
        assert addr.addr_spec == "help@example.org" and not UNSAFE.search(addr.display_name)
    if r.list_id:
        assert msg["List-Id"].endswith(" <news.example.org>") or msg["List-Id"] == "<news.example.org>"
        decoded_description = msg["List-Id"].rpartition("<")[0].strip()
        assert "".join(decoded_description.split()) == "".join(kw["list_id"][0].split())


def test_the_settings_panel_takes_and_shows_a_display_name(store):
    from newsletter_kit.panels.settings import SettingsPanel

    panel = SettingsPanel(store)
    panel.smtp_host.value, panel.smtp_port.value = "127.0.0.1", "2525"
    panel.smtp_from.value, panel.smtp_daily_limit.value = "Città News <news@bücher.example>", 10
    panel.smtp_timezone.value, panel.smtp_tls.value = "Europe/Rome", "none"
    panel.save_button.click()
    smtp = s.load_smtp_settings(store)
    assert (smtp.from_name, smtp.from_addr) == ("Città News", "news@xn--bcher-kva.example")
    assert SettingsPanel(store).smtp_from.value == "Città News <news@xn--bcher-kva.example>"


def test_the_preview_shows_the_identity_as_it_will_read(store):
    s.update_smtp_settings(store, host="smtp.example.org", port=587, daily_limit=10,
                           from_addr="Città News <news@shop.example>", reply_to="help@shop.example")
    add_contacts(store, [{"email": "ann@example.org"}], list_name="Novità")
    campaigns.create_campaign(store, "spring", "Novità", "Hi", "<p>Hi</p>")
    headers = campaigns.preview_message(store, "spring", "ann@example.org", {})["headers"]
    assert headers == {"From": "Città News <news@shop.example>", "To": "ann@example.org",
                       "Reply-To": "help@shop.example", "List-Id": "Novità <novita.shop.example>"}
