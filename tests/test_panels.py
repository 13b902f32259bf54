"""The ipywidgets panels driven in plain pytest: set values, click, check attributes and the store.

The browser test (test_browser.py) only proves the rendering; behaviour is tested here.
"""

from __future__ import annotations

import html
import uuid
from pathlib import Path

import pytest

import newsletter_kit as nk
from newsletter_kit import settings as settings_mod
from newsletter_kit.panels import SettingsPanel


def _store_bytes(path: Path) -> bytes:
    """Everything SQLite wrote for the store: the main file, the WAL and its index."""
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        part = Path(str(path) + suffix)
        if part.exists():
            data += part.read_bytes()
    return data


def _said(panel) -> str:
    """The panel's message area as text (its HTML unescaped)."""
    return html.unescape(panel.message.value)


def _fill_smtp(panel: SettingsPanel, port: int | str, **extra: object) -> None:
    panel.smtp_host.value = "127.0.0.1"
    panel.smtp_port.value = str(port)
    panel.smtp_from.value = "news@example.org"
    panel.smtp_daily_limit.value = 400
    panel.smtp_timezone.value = "Europe/Rome"
    for name, value in extra.items():
        getattr(panel, name).value = value


def _fill_bounce(panel: SettingsPanel, dovecot, user: str, password: str) -> None:
    panel.bounce_host.value = "127.0.0.1"
    panel.bounce_port.value = str(dovecot.imap_port)
    panel.bounce_user.value = user
    panel.bounce_password.value = password
    panel.bounce_tls.value = "starttls"
    panel.bounce_ca_file.value = dovecot.ca_file
    panel.bounce_threshold.value = 2


# -- settings: save and validation -----------------------------------------------------------


def test_settings_panel_saves_every_smtp_field(nk_db: Path) -> None:
    store = nk.open_store(nk_db)
    panel = SettingsPanel(store)
    _fill_smtp(panel, 2525, smtp_tls="none", smtp_exclusion="global",
               smtp_unsubscribe_url="https://example.org/u/{token}")
    panel.save_button.click()
    assert "Saved: SMTP" in _said(panel)
    smtp = settings_mod.load_smtp_settings(store)
    assert smtp is not None
    assert (smtp.host, smtp.port, smtp.tls, smtp.daily_limit) == ("127.0.0.1", 2525, "none", 400)
    assert (smtp.exclusion, smtp.timezone, smtp.from_addr) == ("global", "Europe/Rome", "news@example.org")
    assert smtp.unsubscribe_url == "https://example.org/u/{token}"
    # A new panel on the same store shows what was saved.
    again = SettingsPanel(store)
    assert again.smtp_port.value == "2525"
    assert again.smtp_exclusion.value == "global"
    assert again.smtp_daily_limit.value == 400


@pytest.mark.parametrize("port", ["abc", "70000", "0"])
def test_invalid_port_is_shown_and_nothing_is_saved(nk_db: Path, port: str) -> None:
    store = nk.open_store(nk_db)
    panel = SettingsPanel(store)
    _fill_smtp(panel, port)
    panel.save_button.click()
    assert "nk-error" in _said(panel)
    assert "Port" in _said(panel) and port in _said(panel)
    assert "nk-invalid" in panel.smtp_port._dom_classes
    assert settings_mod.load_smtp_settings(store) is None


def test_invalid_bounce_section_saves_neither_section(nk_db: Path) -> None:
    store = nk.open_store(nk_db)
    panel = SettingsPanel(store)
    _fill_smtp(panel, 2525, smtp_tls="none")
    panel.bounce_host.value = "imap.example.org"
    panel.bounce_port.value = "143"
    panel.bounce_user.value = "not an address"      # so a bounce address is required
    panel.bounce_password_env.value = "NK_TEST_BOUNCE_PW"
    panel.save_button.click()
    assert "nk-error" in _said(panel)
    assert "Bounce address" in _said(panel)
    assert panel.tabs.selected_index == 1            # the tab of the faulty field is shown
    assert settings_mod.load_smtp_settings(store) is None
    assert settings_mod.load_bounce_settings(store) is None


def test_the_send_rate_note_and_exclusion_explanations_are_shown(nk_db: Path) -> None:
    panel = SettingsPanel(nk.open_store(nk_db))
    texts = " ".join(getattr(w, "value", "") for w in panel.smtp_box.children if hasattr(w, "value")
                     and isinstance(getattr(w, "value"), str))
    assert "500/day" in texts
    assert "unsubscribed from that campaign" in texts
    assert "unsubscribed from any campaign" in texts
    labels = {w.description for w in panel.field_widgets.values()}
    assert {"Server name", "Port", "User name", "Password", "Send rate", "Address exclusion policy",
            "Username", "SSL/TLS", "Bounce address", "Folder to monitor", "Bounce threshold"} <= labels


def test_settings_panel_edits_the_per_kind_bounce_policy(nk_db: Path) -> None:
    store = nk.open_store(nk_db)
    panel = SettingsPanel(store)
    panel.bounce_host.value, panel.bounce_port.value = "imap.example.org", "993"
    panel.bounce_user.value, panel.bounce_tls.value = "bounces@example.org", "ssl"
    panel.bounce_password_env.value = "NK_UNUSED"
    assert panel.bounce_threshold.value == 0 and panel.bounce_suppress_on_complaint.value  # the defaults
    panel.save_button.click()
    saved = settings_mod.load_bounce_settings(store)
    assert saved is not None and saved.policy.describe() == "hard 1, soft 3 within 30 days, complaint at once"
    panel.bounce_hard_threshold.value, panel.bounce_soft_threshold.value = 2, 4
    panel.bounce_soft_window_days.value, panel.bounce_suppress_on_complaint.value = 14, False
    panel.save_button.click()
    saved = settings_mod.load_bounce_settings(store)
    assert (saved.hard_threshold, saved.soft_threshold, saved.soft_window_days, saved.suppress_on_complaint) == (
        2, 4, 14, False)
    again = SettingsPanel(store)
    assert (again.bounce_hard_threshold.value, again.bounce_soft_window_days.value) == (2, 14)
    # Back to the single threshold: per-kind fields at 0 are cleared.
    again.bounce_hard_threshold.value = again.bounce_soft_threshold.value = 0
    again.bounce_threshold.value = 3
    again.save_button.click()
    saved = settings_mod.load_bounce_settings(store)
    assert (saved.threshold, saved.hard_threshold, saved.soft_threshold) == (3, None, None)
    assert saved.policy.describe() == "threshold 3 (hard and soft together), complaints not counted"


# -- settings: passwords ----------------------------------------------------------------------


def test_typed_password_is_never_in_the_store_nor_left_in_the_widget(nk_db: Path) -> None:
    store = nk.open_store(nk_db)
    panel = SettingsPanel(store)
    secret = "pw-" + uuid.uuid4().hex
    _fill_smtp(panel, 2525, smtp_user="news@example.org", smtp_auth=True, smtp_tls="starttls",
               smtp_password=secret)
    panel.save_button.click()
    assert "Saved" in _said(panel), _said(panel)
    assert panel.smtp_password.value == ""
    # No keyring backend here: the password is held for this kernel, and the panel says so.
    assert "held for this kernel only" in _said(panel)
    smtp = settings_mod.load_smtp_settings(store)
    assert smtp is not None and smtp.password_ref and smtp.password_ref.startswith(("session:", "keyring:"))
    assert settings_mod.resolve_password(smtp.password_ref) == secret
    store.close()
    assert secret.encode() not in _store_bytes(nk_db)
    assert secret not in repr(panel.widget) and secret not in _said(panel)


def test_password_is_taken_out_of_the_widget_even_when_validation_fails(nk_db: Path) -> None:
    store = nk.open_store(nk_db)
    panel = SettingsPanel(store)
    secret = "pw-" + uuid.uuid4().hex
    _fill_smtp(panel, "not-a-port", smtp_password=secret, smtp_user="u", smtp_auth=True)
    panel.save_button.click()
    assert "nk-error" in _said(panel)
    assert panel.smtp_password.value == ""
    # Fixing the port and saving again uses the password typed before.
    panel.smtp_port.value = "587"
    panel.save_button.click()
    smtp = settings_mod.load_smtp_settings(store)
    assert smtp is not None and settings_mod.resolve_password(smtp.password_ref) == secret


def test_password_env_var_is_saved_as_a_reference(nk_db: Path) -> None:
    store = nk.open_store(nk_db)
    panel = SettingsPanel(store)
    _fill_smtp(panel, 587, smtp_user="u", smtp_auth=True, smtp_password_env="NK_PANEL_SMTP_PW")
    panel.save_button.click()
    smtp = settings_mod.load_smtp_settings(store)
    assert smtp is not None and smtp.password_ref == "env:NK_PANEL_SMTP_PW"
    assert "NK_PANEL_SMTP_PW" in SettingsPanel(store).smtp_password_note.value


def test_auth_without_any_password_asks_for_one(nk_db: Path) -> None:
    store = nk.open_store(nk_db)
    panel = SettingsPanel(store)
    _fill_smtp(panel, 587, smtp_user="u", smtp_auth=True)
    panel.save_button.click()
    assert "Type the SMTP server's password" in _said(panel)
    assert settings_mod.load_smtp_settings(store) is None


# -- settings: real servers --------------------------------------------------------------------


def test_test_button_against_aiosmtpd_with_auth(nk_db: Path, smtp_server, test_ca) -> None:
    srv = smtp_server(tls="starttls", auth={"news@example.org": "right-pw"})
    panel = SettingsPanel(nk.open_store(nk_db))
    _fill_smtp(panel, srv.port, smtp_user="news@example.org", smtp_auth=True,
               smtp_ca_file=test_ca.ca_file, smtp_password="right-pw")
    panel.test_button.click()
    assert panel.test_results.value.count("✔") == 2           # connected (STARTTLS), logged in
    assert "certificate verified" in panel.test_results.value
    assert "logged in as news@example.org" in panel.test_results.value
    assert "Bounce mailbox: not configured" in panel.test_results.value
    assert panel.smtp_password.value == ""
    # A wrong password is reported as such.
    panel.smtp_password.value = "wrong"
    panel.test_button.click()
    assert "refused the user name or password" in panel.test_results.value


def test_test_button_reports_an_untrusted_certificate(nk_db: Path, smtp_server) -> None:
    srv = smtp_server(tls="starttls")
    panel = SettingsPanel(nk.open_store(nk_db))
    _fill_smtp(panel, srv.port)                     # no CA file: the system store does not know it
    panel.test_button.click()
    assert "not trusted" in panel.test_results.value
    assert "nk-error" in _said(panel)


def test_folders_button_fills_the_dropdown_from_dovecot(nk_db: Path, dovecot, mailbox_user) -> None:
    user, password = mailbox_user(prefix="bounces")
    dovecot.create_folder(user, "Bounces")
    store = nk.open_store(nk_db)
    panel = SettingsPanel(store)
    _fill_bounce(panel, dovecot, user, password)
    panel.folders_button.click()
    assert "nk-ok" in _said(panel), _said(panel)
    assert panel.bounce_password.value == ""
    assert "INBOX" in panel.bounce_folder.options and "Bounces" in panel.bounce_folder.options
    panel.bounce_folder.value = "Bounces"
    panel.save_button.click()
    bounce = settings_mod.load_bounce_settings(store)
    assert bounce is not None
    assert (bounce.folder, bounce.user, bounce.bounce_address) == ("Bounces", user, user)
    # The saved reference works: the stored settings reach the mailbox without the panel.
    assert "Bounces" in nk.fetch_folder_names(bounce)
    store.close()
    assert password.encode() not in _store_bytes(nk_db)


def test_folders_button_with_a_wrong_password_says_so(nk_db: Path, dovecot, mailbox_user) -> None:
    user, _password = mailbox_user()
    panel = SettingsPanel(nk.open_store(nk_db))
    _fill_bounce(panel, dovecot, user, "wrong-password")
    panel.folders_button.click()
    assert "nk-error" in _said(panel)
    assert "refused the user name or password" in _said(panel)
    assert list(panel.bounce_folder.options) == ["INBOX"]


# -- campaign panel ----------------------------------------------------------------------------

from newsletter_kit import audience, campaigns  # noqa: E402
from newsletter_kit.panels import CampaignPanel  # noqa: E402


def _campaign_store(nk_db: Path, srv, contacts: int = 12) -> nk.Store:
    store = nk.open_store(nk_db)
    nk.update_smtp_settings(store, host="127.0.0.1", port=srv.port, tls="none", daily_limit=500,
                            from_addr="news@example.org", timezone="Europe/Rome")
    rows = [{"email": f"person{i:03d}@example.org", "first_name": f"P{i}"} for i in range(contacts)]
    rows.append({"email": "fail550.gone@example.net", "first_name": "Gone"})
    audience.add_contacts(store, rows, list_name="customers")
    audience.add_unsubscribe(store, "person001@example.org", campaign="spring")
    audience.add_unsubscribe(store, "person002@example.org")
    audience.add_unsubscribe(store, "person003@example.org", campaign="autumn")
    return store


def _new_campaign(panel: CampaignPanel, name: str = "spring") -> None:
    panel.campaign.value = "(new campaign…)"
    panel.list_name.value = "customers"
    panel.new_name.value = name
    panel.new_subject.value = "Hello {{ first_name }}"
    panel.new_html.value = "<p>Dear {{ first_name }}, spring is here.</p>"
    panel.create_button.click()


def test_campaign_panel_creates_previews_and_shows_the_audience(nk_db: Path, smtp_server) -> None:
    srv = smtp_server(tls="none")
    store = _campaign_store(nk_db, srv)
    panel = CampaignPanel(store)
    _new_campaign(panel)
    assert "created" in _said(panel), _said(panel)
    assert panel.campaign_name == "spring"
    assert campaigns.get_campaign(store, "spring").list_name == "customers"
    # The audience says who is excluded and why (campaign policy: "autumn" does not count).
    reasons = dict(zip(panel.audience["email"], panel.audience["reason"]))
    assert reasons["person001@example.org"] == "unsubscribed from this campaign"
    assert reasons["person002@example.org"] == "unsubscribed from all campaigns"
    assert reasons["person003@example.org"] is None
    assert int(panel.audience["excluded"].sum()) == 2
    assert "unsubscribed from this campaign" in panel.audience_table.value
    # The preview is the message of the contact picked.
    panel.preview_contact.value = "person005@example.org"
    assert panel.preview_message is not None
    assert panel.preview_message["subject"] == "Hello P5"
    assert "Dear P5" in html.unescape(panel.preview.value)
    # A second panel on the store finds the campaign.
    assert CampaignPanel(store, campaign="spring").campaign.value == "spring"


def test_campaign_panel_template_error_is_shown(nk_db: Path, smtp_server) -> None:
    store = _campaign_store(nk_db, smtp_server(tls="none"))
    panel = CampaignPanel(store)
    panel.list_name.value = "customers"
    panel.new_name.value = "broken"
    panel.new_subject.value = "Hello {{ first_name"
    panel.new_html.value = "<p>x</p>"
    panel.create_button.click()
    assert "nk-error" in _said(panel)
    assert store.conn.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0


def test_campaign_panel_dry_run_then_send_against_aiosmtpd(nk_db: Path, smtp_server) -> None:
    srv = smtp_server(tls="none")
    store = _campaign_store(nk_db, srv)
    panel = CampaignPanel(store)
    _new_campaign(panel)
    panel.dry_run_button.click()
    report = panel.last_report
    assert report is not None and report.dry_run and report.would_send == 11   # 13 - 2 opted out
    assert srv.messages == []
    assert store.conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0
    panel.send_button.click()
    report = panel.wait(timeout=120)
    assert report is not None and not report.dry_run
    assert (report.sent, report.failed) == (10, 1)                    # fail550.* is refused
    assert sorted(r for m in srv.messages for r in m.rcpt_tos) == sorted(
        f"person{i:03d}@example.org" for i in range(12) if i not in (1, 2))
    states = dict(store.conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall())
    assert states["sent"] == 10 and states["failed"] == 1
    assert panel.progress.value == panel.progress.max == 11
    assert panel.quota.status is not None and panel.quota.status.used == 10
    assert "10 of 500" in panel.quota.label.value
    # Finished (the refused one is failed, not pending): Send is off, the status says so.
    assert panel.send_button.disabled and panel.stop_button.disabled
    assert "nothing left to send" in panel.campaign_info.value
    # Sending again anyway (from code) sends nobody twice.
    panel.send()
    assert panel.wait(timeout=60).sent == 0  # type: ignore[union-attr]
    assert len(srv.messages) == 10


def test_campaign_panel_stop_button_stops_a_background_send(nk_db: Path, smtp_server) -> None:
    srv = smtp_server(tls="none", delay=0.05)
    store = _campaign_store(nk_db, srv, contacts=120)
    panel = CampaignPanel(store)
    _new_campaign(panel)
    panel.send_button.click()
    assert panel.sending
    panel.stop_button.click()
    report = panel.wait(timeout=120)
    assert report is not None and report.paused == "stopped"
    assert report.sent < 118
    status = campaigns.campaign_status(store, "spring")
    assert status["sent"] == report.sent == len(srv.messages)
    assert status["pending"] > 0
    # Send again: it continues with those still pending.
    panel.send_button.click()
    final = panel.wait(timeout=240)
    assert final is not None and final.paused is None
    assert campaigns.campaign_status(store, "spring")["pending"] == 0
    assert len({r for m in srv.messages for r in m.rcpt_tos}) == len(srv.messages) == 118


def test_campaign_panel_without_settings_says_what_is_missing(nk_db: Path) -> None:
    store = nk.open_store(nk_db)
    audience.add_contacts(store, [{"email": "ann@example.org"}], list_name="customers")
    campaigns.create_campaign(store, "spring", "customers", "Hi", "<p>Hi</p>")
    panel = CampaignPanel(store, campaign="spring")
    assert "no SMTP settings" in panel.quota.label.value
    panel.send_button.click()
    panel.wait(timeout=30)
    assert "nk-error" in _said(panel) and "SMTP settings" in _said(panel)


def test_campaign_panel_settles_unknown_recipients(nk_db: Path, smtp_server) -> None:
    srv = smtp_server(tls="none")
    store = nk.open_store(nk_db)
    nk.update_smtp_settings(store, host="127.0.0.1", port=srv.port, tls="none", daily_limit=500,
                            from_addr="news@example.org")
    audience.add_contacts(store, [{"email": e} for e in ("drop.a@example.org", "ok@example.org",
                                                         "drop.b@example.org")], list_name="customers")
    campaigns.create_campaign(store, "spring", "customers", "Hi", "<p>Hi</p>")
    for _ in range(3):
        campaigns.send_campaign(store, "spring")  # a hang-up after DATA: unknown, run paused
    panel = CampaignPanel(store, campaign="spring")
    assert panel.resolve_box.layout.display == "" and "<b>2</b>" in panel.unknown_label.value

    panel.resolve_as.value = "pending"
    panel.resolve_button.click()                  # not confirmed: nothing settled
    assert "nk-error" in _said(panel) and "twice" in _said(panel)
    assert campaigns.campaign_status(store, "spring")["unknown"] == 2
    panel.resolve_confirm.value = True
    panel.resolve_button.click()

    assert "2 unknown recipient(s) settled as pending" in _said(panel)
    status = campaigns.campaign_status(store, "spring")
    assert (status["unknown"], status["pending"]) == (0, 2)
    assert panel.resolve_box.layout.display == "none"


# -- the %newsletter magic ---------------------------------------------------------------------


def test_newsletter_magic_returns_the_panels(nk_db: Path) -> None:
    from IPython.core.error import UsageError

    from newsletter_kit.panels.magic import newsletter

    assert isinstance(newsletter("settings"), SettingsPanel)
    store = nk.open_store(nk_db)
    nk.update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=50,
                            from_addr="news@example.org")
    meter = newsletter("quota")
    assert "0 of 50" in meter.label.value
    with pytest.raises(UsageError, match="usage"):
        newsletter("frobnicate")
    # An unknown campaign opens the panel ready to create it.
    panel = newsletter("campaign nope")
    assert isinstance(panel, CampaignPanel)
    assert panel.campaign_name is None and panel.new_name.value == "nope"
    with pytest.raises(UsageError, match="usage"):
        newsletter("campaign a b")
    from newsletter_kit.panels import BounceReviewPanel

    assert isinstance(newsletter("bounces"), BounceReviewPanel)
    other = nk_db.parent / "other.db"
    assert newsletter(f"--db {other} settings").store.path == str(other)


def test_load_ext_registers_the_magic() -> None:
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    ip.run_line_magic("load_ext", "newsletter_kit")
    assert "newsletter" in ip.magics_manager.magics["line"]


# -- every setting in the panels (issue 19) --------------------------------------------------


def _flag_widget(panel: SettingsPanel, section: str, flag: str):
    name = flag.split("/")[0].lstrip("-").replace("-", "_")
    return getattr(panel, f"{section}_{name}", None) or getattr(panel, name, None)


def test_every_flag_of_settings_smtp_and_bounce_has_a_widget(nk_db: Path) -> None:
    from newsletter_kit.cli import cli

    panel = SettingsPanel(nk.open_store(nk_db))
    missing = []
    for section in ("smtp", "bounce"):
        command = cli.commands["settings"].commands[section]  # type: ignore[attr-defined]
        for param in command.params:
            flag = param.opts[0]
            if _flag_widget(panel, section, flag) is None:
                missing.append(f"settings {section} {flag}")
    assert missing == []


def test_the_new_fields_save_like_the_command_line_and_fail_like_it(nk_db: Path, dkim_keys) -> None:
    store = nk.open_store(nk_db)
    panel = SettingsPanel(store)
    _fill_smtp(panel, 2525, smtp_tls="none", smtp_reply_to="help@example.org",
               smtp_list_id="Shop News <news.example.org>", smtp_dkim_selector="sel")
    panel.save_button.click()  # a selector without its key file: refused as by the CLI
    assert "nk-error" in panel.message.value and nk.load_smtp_settings(store) is None
    panel.smtp_dkim_key_file.value = str(dkim_keys["rsa"])
    panel.bounce_host.value, panel.bounce_port.value, panel.bounce_user.value = "127.0.0.1", "1143", "b@example.org"
    panel.bounce_tls.value, panel.bounce_allow_plain_auth.value = "none", True
    panel.bounce_password_env.value = "NK_UNUSED"
    panel.bounce_count_unmatched.value = panel.bounce_verp.value = panel.bounce_reset_on_success.value = True
    panel.bounce_stale_after_days.value = 90
    panel.save_button.click()
    smtp, bounce = nk.load_smtp_settings(store), nk.load_bounce_settings(store)
    assert smtp is not None and bounce is not None, _said(panel)
    assert (smtp.reply_to, smtp.dkim_selector, smtp.dkim_key_file) == ("help@example.org", "sel", str(dkim_keys["rsa"]))
    assert smtp.list_id and "news.example.org" in smtp.list_id
    assert (bounce.count_unmatched, bounce.verp, bounce.reset_on_success, bounce.stale_after_days) == (True, True, True, 90)
    again = SettingsPanel(store)  # what is saved is shown
    assert again.smtp_dkim_selector.value == "sel" and again.bounce_count_unmatched.value
    panel.smtp_reply_to.value = ""
    panel.save_button.click()
    assert nk.load_smtp_settings(store).reply_to is None  # type: ignore[union-attr]


def test_the_pre_flight_advice_names_the_panels_fields() -> None:
    from newsletter_kit.panels.settings import panel_words

    advice = panel_words("no DKIM: set `--dkim-selector S --dkim-key-file PEM` (newsletter-kit settings smtp)")
    assert "--" not in advice and "'DKIM selector' field" in advice and "'DKIM key file' field" in advice


def test_in_demo_mode_test_folders_and_check_say_what_the_demo_is(tmp_path: Path) -> None:
    from newsletter_kit import demo

    store = nk.open_store(tmp_path / "demo.db")
    try:
        demo.ensure_demo_settings(store)
        panel = SettingsPanel(store)
        results = panel.test_button.click() or panel.test()
        assert results and all(ok for ok, _ in results), results
        assert "nk-error" not in panel.message.value and "demo" in panel.test_results.value
        panel.folders_button.click()
        assert "Demo mode" in _said(panel) and "nk-error" not in panel.message.value
        panel.check_button.click()
        assert "Demo mode" in _said(panel) and panel.check_results.value == ""
        assert panel.check_button.layout.width == "auto"
    finally:
        demo.stop_demo_servers()


def test_campaign_panel_follows_a_send_made_by_a_notebook_cell(nk_db: Path, smtp_server) -> None:
    """Issue 19: the panel said "draft" after a cell sent the campaign, until a click."""
    srv = smtp_server(tls="none")
    store = _campaign_store(nk_db, srv)
    panel = CampaignPanel(store)
    _new_campaign(panel)
    assert "draft" in panel.campaign_info.value and not panel.send_button.disabled
    campaigns.send_campaign(store, "spring")  # what a notebook cell does, no click on the panel
    assert "nothing left to send" in panel.campaign_info.value and panel.send_button.disabled
    campaigns.archive_campaign(store, "spring")
    assert "spring" not in panel.campaign.options
