"""Settings and `campaign create` refuse at save what sending would refuse (issue 9, finding 10).

Every value that reaches a header or an IMAP command is checked when it is saved, with one clear
line, and nothing is written; `settings show` never prints a stored control character raw.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections import Counter

import pytest
from click.testing import CliRunner

from newsletter_kit import campaigns
from newsletter_kit import settings as s
from newsletter_kit.audience import add_contacts
from newsletter_kit.cli import cli
from newsletter_kit.errors import NewsletterKitError, ValidationError
from newsletter_kit.store import open_store

SMTP = dict(host="smtp.example.org", port=587, daily_limit=400, from_addr="news@example.org",
            unsubscribe_url="https://news.example.org/u/{token}")
BOUNCE = dict(host="imap.example.org", port=993, user="bounces@example.org", threshold=2, tls="ssl",
              password_ref="env:NK_UNUSED")


@pytest.fixture
def store(nk_db):
    store = open_store(nk_db)
    yield store
    store.close()


@pytest.fixture
def run(tmp_path):
    db = tmp_path / "nk.db"

    def invoke(*args: str, ok: bool = True):
        result = CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output + result.stderr
        return result

    invoke.db = db
    return invoke


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "\r" not in text and len(text) < 400
    return text


@pytest.mark.parametrize("url", [
    "https://news.example.org/u/{token} ", "https://news.example.org/u /{token}", "https://news.example.org/u/{token}\t",
    "https://news.example.org/u/{token}\x00", "https://news.example.org/u/{token}\r\nBcc: x@example.org",
    "https://news.example.org/u/{token}\u2028", "https://news.example.org/u/{token}\x85",
    "https://news.example.org/u/{token}?a==?utf-8?q?=0D=0ABcc=3A_x?=", "https://news.example.org/u/{token}>",
    "https://news.exämple.org/u/{token}", "https://news.example.org/" + "u" * 400 + "/{token}",
    "http://news.example.org/u/{token}", "https://news.example.org/u/",
])
def test_an_unsubscribe_url_sending_would_refuse_is_refused_at_save(store, url):
    s.update_smtp_settings(store, **SMTP)
    with pytest.raises(ValidationError) as err:
        s.update_smtp_settings(store, unsubscribe_url=url)
    assert "unsubscribe URL" in one_line(err.value)
    assert s.load_smtp_settings(store).unsubscribe_url == SMTP["unsubscribe_url"]  # nothing written


def test_a_from_or_bounce_address_with_a_non_ascii_domain_is_saved_in_idna_form(store):
    smtp, _ = s.update_smtp_settings(store, **{**SMTP, "from_addr": "news@bücher.example"})
    bounce, _ = s.update_bounce_settings(store, **{**BOUNCE, "bounce_address": "bounces@bücher.example"})
    assert smtp.from_addr == "news@xn--bcher-kva.example" == s.load_smtp_settings(store).from_addr
    assert bounce.bounce_address == "bounces@xn--bcher-kva.example"


@pytest.mark.parametrize("address", ["nöws@example.org", "news@example.org\r\nBcc: x@example.org", "news@exa mple.org"])
def test_a_from_sending_cannot_use_is_refused(store, address):
    with pytest.raises(ValidationError) as err:
        s.update_smtp_settings(store, **{**SMTP, "from_addr": address})
    one_line(err.value)
    assert s.load_smtp_settings(store) is None


@pytest.mark.parametrize("changes, field", [
    ({"processed_folder": "INBOX"}, "processed_folder"), ({"processed_folder": "inbox"}, "processed_folder"),
    ({"folder": "Bounces", "processed_folder": "Bounces"}, "processed_folder"),
    ({"folder": "INBOX\r\nA1 DELETE INBOX"}, "folder"), ({"folder": "Bounces\x00"}, "folder"),
    ({"folder": "Bounces\x1b[2J"}, "folder"), ({"folder": "Bounces\u2028"}, "folder"), ({"folder": " "}, "folder"),
    ({"processed_folder": "Done\n"}, "processed_folder"), ({"processed_folder": "Done\x85"}, "processed_folder"),
])
def test_folder_names_sending_or_fetching_would_trip_on_are_refused(store, changes, field):
    with pytest.raises(ValidationError) as err:
        s.update_bounce_settings(store, **{**BOUNCE, **changes})
    assert err.value.field == field
    one_line(err.value)
    assert s.load_bounce_settings(store) is None


def test_a_distinct_processed_folder_is_fine(store):
    bounce, _ = s.update_bounce_settings(store, **{**BOUNCE, "folder": "INBOX", "processed_folder": "INBOX/Done"})
    assert bounce.processed_folder == "INBOX/Done"


@pytest.mark.parametrize("name, message", [
    ("x" * 201, "at most 200"), ("spring\u2028sale", "line separator"), ("spring\x00", "control character"),
    ("=?utf-8?q?spring=0D=0ABcc=3A_x?=", "line break"), ("=?UtF-8?B?c3ByaW5n?=", "encoded word"),
])
def test_campaign_names_sending_would_refuse_are_refused_at_create(store, name, message):
    s.update_smtp_settings(store, **SMTP)
    add_contacts(store, [{"email": "ann@example.org"}])
    with pytest.raises(NewsletterKitError, match=re.escape(message)) as err:
        campaigns.create_campaign(store, name, "all", "Hi", "<p>Hi</p>")
    one_line(err.value)
    assert campaigns.list_campaigns(store) == []


def test_a_200_character_campaign_name_is_fine(store):
    s.update_smtp_settings(store, **SMTP)
    add_contacts(store, [{"email": "ann@example.org"}])
    assert campaigns.create_campaign(store, "é" * 200, "all", "Hi", "<p>Hi</p>").name == "é" * 200
    assert campaigns.create_campaign(store, "🌸" * 199, "all", "Hi", "<p>Hi</p>").name == "🌸" * 199


def test_a_long_unsubscribe_url_fits_beside_any_campaign_name(store):
    # The token no longer carries the name (issue 16 finding 9d): no name and URL overflow together.
    s.update_smtp_settings(store, **SMTP)
    add_contacts(store, [{"email": "ann@example.org"}])
    campaigns.create_campaign(store, "ñ" * 150, "all", "Hi", "<p>Hi</p>")
    url = "https://news.example.org/" + "u" * 320 + "/{token}"
    assert s.update_smtp_settings(store, unsubscribe_url=url)[0].unsubscribe_url == url


def test_the_cli_refuses_with_one_line_and_writes_nothing(run):
    run("settings", "smtp", "--host", "smtp.example.org", "--port", "587", "--daily-limit", "10",
        "--from", "news@example.org")
    bad = run("settings", "smtp", "--unsubscribe-url", "https://x.example.org/{token} y", ok=False)
    assert bad.stderr.count("\n") == 1 and "space" in bad.stderr
    bad = run("settings", "bounce", "--host", "imap.example.org", "--port", "993", "--user", "b@example.org",
              "--threshold", "1", "--password-env", "X", "--tls", "ssl", "--processed-folder", "INBOX", ok=False)
    assert bad.stderr.count("\n") == 1 and "processed folder" in bad.stderr
    (tmp := run.db.parent / "c.csv").write_text("email\nann@example.org\n")
    run("contacts", "import", str(tmp))
    (html := run.db.parent / "t.html").write_text("<p>Hi</p>")
    bad = run("campaign", "create", "y" * 250, "--list", "all", "--subject", "Hi", "--html", str(html), ok=False)
    assert bad.stderr.count("\n") == 1 and "at most 200" in bad.stderr
    assert json.loads(run("settings", "show", "--json").stdout)["bounce"] is None


def test_settings_show_never_prints_a_control_character_raw(run):
    run("settings", "smtp", "--host", "smtp.example.org", "--port", "587", "--daily-limit", "10",
        "--from", "news@example.org", "--user", "u@example.org", "--password-env", "PW")
    # A store written by an older version, or by hand: values that are no longer accepted.
    store = open_store(run.db)
    row = json.loads(store.conn.execute("SELECT data FROM settings WHERE section = 'smtp'").fetchone()[0])
    row["user"] = "u\x1b[2J\x1b]0;pwned\x07@example.org\u202e\u2028\x85\r\nfake: line"
    with store.transaction():
        store.conn.execute("UPDATE settings SET data = ? WHERE section = 'smtp'", (json.dumps(row),))
    store.close()
    human = run("settings", "show").stdout
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", human)
    shown = json.loads(run("settings", "show", "--json").stdout)
    assert human.count("\n") == 1 + len(shown["smtp"]) + 2  # [smtp], its keys, [bounce], none: no extra line
    assert r"u\x1b[2J\x1b]0;pwned\x07@example.org\u202e\u2028\x85\r\nfake: line" in human
    raw_json = run("settings", "show", "--json").stdout
    assert raw_json.isascii() and json.loads(raw_json)["smtp"]["user"] == row["user"]


# --- the whole send path, on a real server ------------------------------------------------------

PAYLOADS = [
    "=?utf-8?b?QW5uDQpCY2M6IHZpY3RpbUBleGFtcGxlLmNvbQ==?=",
    "=?UtF-8?q?Ann=0D=0A=0D=0A<html>replaced</html>?=",
    "=?iso-8859-1?Q?Ann=0ABcc=3A_victim=40example.com?=",
    "=?utf-8?q?Ann=0D=0A?=\r\n =?utf-8?q?Bcc=3A_victim=40example.com?=",
    "Ann\u2028Bcc: victim@example.com", "Ann\x85Bcc: victim@example.com", "Ann\x00\x0b\x1c",
    "=?utf-8?q?=3D=3Futf-8=3Fq=3FAnn=3D0D=3D0ABcc=3D3A_x=3F=3D?=",
    "é" * 600, "x" * 2000,
]


def test_hostile_contact_fields_reach_the_server_with_exactly_the_intended_headers(store, smtp_server):
    srv = smtp_server(tls="none")
    s.update_smtp_settings(store, host="127.0.0.1", port=srv.port, tls="none", daily_limit=100,
                           from_addr="news@example.org", unsubscribe_url="https://news.example.org/u/{token}")
    s.update_bounce_settings(store, **{**BOUNCE, "tls": "none", "allow_plain_auth": True, "port": 1143})
    emails = [f"r{i}@example.org" for i in range(len(PAYLOADS))]
    add_contacts(store, [{"email": e, "first_name": p} for e, p in zip(emails, PAYLOADS)], list_name="news")
    campaigns.create_campaign(store, "spring", "news", "Hello {{ first_name }}!",
                              "<p>Dear {{ first_name }},</p><p>the body.</p>")
    report = campaigns.send_campaign(store, "spring")
    assert (report.sent, report.failed) == (len(PAYLOADS), 0)
    assert Counter(r for env in srv.messages for r in env.rcpt_tos) == Counter(emails)
    for env in srv.messages:
        head = env.content.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        names = [line.split(b":")[0] for line in head if line[:1] not in (b" ", b"\t")]
        assert names == [b"From", b"To", b"Subject", b"Date", b"Message-ID", b"List-Id", b"X-Newsletter-Campaign",
                         b"List-Unsubscribe", b"List-Unsubscribe-Post", b"MIME-Version", b"Content-Type"]
        assert max(map(len, head)) <= 998
        msg = email.message_from_bytes(env.content.replace(b"\r\n", b"\n"), policy=email.policy.default)
        assert msg["To"] == env.rcpt_tos[0] and "Bcc" not in msg
        assert msg["Subject"].startswith("Hello ") and msg["Subject"].endswith("!")
        assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", msg["Subject"])
        text, html = msg.iter_parts()
        assert "the body." in html.get_content() and "the body." in text.get_content()
        assert msg.get_content_type() == "multipart/alternative" and len(list(msg.iter_parts())) == 2
