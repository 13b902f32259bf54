"""A week's work (issue 19), from the panels alone and from the command line alone: set up,
test-send, fix the subject, send, review the bounces, erase a person, archive the campaign.

Real parts: an aiosmtpd server on 127.0.0.1 takes the mail; the bounce is a Postfix-shaped DSN
quoting the message the server received, read from a folder as the mailbox would be. The
panels are driven as ipywidgets objects (clicks call the same callbacks as in JupyterLab;
tests/test_browser.py proves the rendering).
"""

from __future__ import annotations

import email
import email.policy
import html
import json
from pathlib import Path

import newsletter_kit as nk
from newsletter_kit.demo_world import failure_for, make_dsn
from newsletter_kit.panels import BounceReviewPanel, CampaignPanel, PeoplePanel, SettingsPanel
from tests.sending import invoke

PERSON = "unknown.erin@example.org"  # the demo world's cue: its DSN says 5.1.1 user unknown
CONTACTS = "email,first_name\nann@example.org,Ann\nbob@example.org,Bob\n" + f"{PERSON},Erin\n"


def _said(panel) -> str:
    return html.unescape(panel.message.value)


def _subject(raw: bytes) -> str:
    return str(email.message_from_bytes(raw, policy=email.policy.default)["Subject"])


def _bounce_folder(tmp_path: Path, srv) -> Path:
    """The DSN the receiving side writes for PERSON, quoting the message it was sent."""
    folder = tmp_path / "bounces"
    folder.mkdir(exist_ok=True)
    [original] = [m.content for m in srv.messages if PERSON in m.rcpt_tos and b"[TEST]" not in m.content]
    (folder / "dsn.eml").write_bytes(make_dsn(original, "bounces@example.org", PERSON, failure_for(PERSON)[1]))
    return folder


def _store_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


def test_a_week_from_the_panels_alone(nk_db: Path, smtp_server, tmp_path: Path) -> None:
    srv = smtp_server(tls="none")
    store = nk.open_store(nk_db)
    # Monday: set up.
    settings = SettingsPanel(store)
    settings.smtp_host.value, settings.smtp_port.value = "127.0.0.1", str(srv.port)
    settings.smtp_tls.value = "none"
    settings.smtp_from.value, settings.smtp_daily_limit.value = "news@example.org", 100
    settings.bounce_host.value, settings.bounce_port.value = "127.0.0.1", "1143"
    settings.bounce_user.value = "bounces@example.org"
    settings.bounce_tls.value, settings.bounce_allow_plain_auth.value = "none", True
    settings.bounce_password_env.value = "NK_UNUSED"  # the folder stands in for the mailbox
    settings.bounce_threshold.value = 1
    settings.save_button.click()
    assert nk.load_smtp_settings(store) is not None, _said(settings)
    people = PeoplePanel(store)
    csv = tmp_path / "contacts.csv"
    csv.write_text(CONTACTS, encoding="utf-8")
    people.import_path.value, people.import_list.value = str(csv), "news"
    people.import_button.click()
    assert "3 new" in _said(people) and "news" in people.lists.value
    campaign = CampaignPanel(store)
    campaign.campaign.value = "(new campaign…)"
    campaign.list_name.value = "news"
    campaign.new_name.value, campaign.new_subject.value = "weekly", "Hello {{ frist_name }}"
    campaign.new_html.value = "<p>Dear {{ first_name }}</p>"
    campaign.create_button.click()
    assert "frist_name" in _said(campaign)  # the typo is caught at creation
    campaign.new_subject.value = "Helo {{ first_name }}"
    campaign.create_button.click()
    assert campaign.campaign_name == "weekly", _said(campaign)
    # Tuesday: a proof, a fix, another proof, then the send.
    assert campaign.test_to.value == "news@example.org"  # "to me": the From of the settings
    campaign.test_to.value = "me@example.org"
    campaign.preview_contact.value = "bob@example.org"
    campaign.test_button.click()
    assert "sent" in _said(campaign) and _subject(srv.messages[-1].content) == "[TEST] Helo Bob"
    campaign.edit_subject.value = "Hello {{ first_name }}"
    campaign.save_button.click()
    assert "saved" in _said(campaign)
    campaign.test_button.click()
    assert _subject(srv.messages[-1].content) == "[TEST] Hello Bob"
    campaign.send_button.click()
    report = campaign.wait(timeout=120)
    assert report is not None and report.sent == 3, _said(campaign)
    assert "finished" in campaign.campaign_info.value and campaign.send_button.disabled
    assert "starting" not in campaign.progress_label.value and "3 sent" in campaign.progress_label.value
    campaign.edit_subject.value = "Too late"
    campaign.save_button.click()
    assert "duplicate" in _said(campaign)
    # Thursday: the bounces.
    review = BounceReviewPanel(store, source_path=_bounce_folder(tmp_path, srv))
    review.fetch_button.click()
    assert nk.list_suppressions(store)[0]["address"] == PERSON, _said(review)
    # Friday: Erin asks to be forgotten; the campaign is archived.
    people.address.value = PERSON
    people.erase_button.click()
    assert "tick" in _said(people) and not nk.is_erased(store, PERSON)  # nothing without the box
    people.confirm.value = True
    people.erase_button.click()
    assert "erased" in _said(people) and nk.is_erased(store, PERSON)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert PERSON.encode() not in _store_bytes(nk_db)
    campaign.archive_button.click()
    assert "archived" in _said(campaign) and "weekly" not in campaign.campaign.options
    assert nk.campaign_status(store, "weekly")["sent"] == 3  # the history stays


def test_a_week_from_the_command_line_alone(nk_db: Path, smtp_server, tmp_path: Path) -> None:
    srv = smtp_server(tls="none")

    def ok(*args: str) -> str:
        result = invoke(list(args))
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    ok("settings", "smtp", "--host", "127.0.0.1", "--port", str(srv.port), "--tls", "none", "--no-auth",
       "--daily-limit", "100", "--from", "news@example.org")
    ok("settings", "bounce", "--host", "127.0.0.1", "--port", "1143", "--user", "bounces@example.org",
       "--tls", "none", "--threshold", "1", "--password-env", "NK_UNUSED", "--allow-plain-auth")
    csv, page = tmp_path / "contacts.csv", tmp_path / "weekly.html"
    csv.write_text(CONTACTS, encoding="utf-8")
    page.write_text("<p>Dear {{ first_name }}</p>", encoding="utf-8")
    ok("contacts", "import", str(csv), "--list", "news")
    assert "news\t3" in ok("contacts", "lists")
    ok("campaign", "create", "weekly", "--list", "news", "--subject", "Helo {{ first_name }}", "--html", str(page))
    ok("campaign", "test", "weekly", "--to", "me@example.org", "--as", "ann@example.org")
    assert _subject(srv.messages[-1].content) == "[TEST] Helo Ann"
    ok("campaign", "edit", "weekly", "--subject", "Hello {{ first_name }}")
    ok("campaign", "test", "weekly", "--to", "me@example.org", "--as", "ann@example.org")
    assert _subject(srv.messages[-1].content) == "[TEST] Hello Ann"
    ok("campaign", "send", "weekly")
    assert json.loads(ok("campaign", "status", "weekly", "--json"))["sent"] == 3
    fetched = json.loads(ok("bounces", "fetch", "--from", str(_bounce_folder(tmp_path, srv)), "--json"))
    assert fetched["suppressed"] == [PERSON] and fetched["unmatched"] == 0
    assert invoke(["contacts", "erase", PERSON]).exit_code == 1  # no --yes: nothing removed
    ok("contacts", "erase", PERSON, "--yes")
    assert PERSON.encode() not in _store_bytes(nk_db)
    ok("campaign", "archive", "weekly")
    assert "weekly" not in ok("campaign", "list") and "weekly" in ok("campaign", "list", "--archived")
