"""Connecting with the saved settings, against real servers on 127.0.0.1 (aiosmtpd, Dovecot)."""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner

from newsletter_kit import settings as s
from newsletter_kit.cli import cli
from newsletter_kit.errors import AuthenticationFailed, CertificateError, ConnectionFailed, ValidationError
from newsletter_kit.imap import check_imap, fetch_folder_names, open_imap
from newsletter_kit.store import open_store
from newsletter_kit.transport import check_smtp, open_smtp
from tests.mailservers import free_port


def smtp_settings(srv, ca_file, **over):
    values = dict(host=srv.host, port=srv.port, from_addr="news@example.org", daily_limit=100,
                  user="news", password_ref="env:NK_SMTP_PW", auth=True, tls=srv.tls,
                  ca_file=ca_file)
    values.update(over)
    settings = s.SmtpSettings(**values)
    settings.validate()
    return settings


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_smtp_right_password_sends(smtp_server, test_ca, monkeypatch, tls):
    monkeypatch.setenv("NK_SMTP_PW", "right")
    srv = smtp_server(tls=tls, auth={"news": "right"})
    with open_smtp(smtp_settings(srv, test_ca.ca_file)) as smtp:
        smtp.sendmail("b@example.org", ["x@example.org"], b"Subject: hi\r\n\r\nhello\r\n")
    assert [m.rcpt_tos for m in srv.messages] == [["x@example.org"]]


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_smtp_wrong_password_is_a_clear_error(smtp_server, test_ca, monkeypatch, tls):
    monkeypatch.setenv("NK_SMTP_PW", "wrong")
    srv = smtp_server(tls=tls, auth={"news": "right"})
    with pytest.raises(AuthenticationFailed, match="refused the user name or password.*535"):
        open_smtp(smtp_settings(srv, test_ca.ca_file))


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_untrusted_certificate_fails_without_fallback(smtp_server, test_ca, monkeypatch, tls):
    monkeypatch.setenv("NK_SMTP_PW", "right")
    srv = smtp_server(tls=tls, auth={"news": "right"}, ca=test_ca.untrusted)
    with pytest.raises(CertificateError, match="not trusted"):
        open_smtp(smtp_settings(srv, test_ca.ca_file))
    # Nor with the system trust store: no silent fallback to an unverified connection.
    with pytest.raises(CertificateError):
        open_smtp(smtp_settings(srv, None))
    assert srv.messages == []


def test_auth_over_plain_connection_is_refused(smtp_server, test_ca, monkeypatch):
    monkeypatch.setenv("NK_SMTP_PW", "right")
    srv = smtp_server(tls="none", auth={"news": "right"})
    with pytest.raises(ValidationError, match="unencrypted"):
        smtp_settings(srv, None)
    settings = smtp_settings(srv, None, allow_plain_auth=True)
    settings.allow_plain_auth = False  # e.g. edited by hand: still refused at connect time
    with pytest.raises(ValidationError, match="unencrypted"):
        open_smtp(settings)


def test_starttls_missing_on_server_is_reported(smtp_server, monkeypatch):
    srv = smtp_server(tls="none")
    settings = smtp_settings(srv, None, tls="starttls", auth=False, user=None, password_ref=None)
    with pytest.raises(ConnectionFailed, match="does not offer STARTTLS"):
        open_smtp(settings)


def test_unreachable_server_is_a_clear_error():
    settings = s.SmtpSettings(host="127.0.0.1", port=free_port(), from_addr="a@example.org",
                              daily_limit=1, tls="ssl")
    with pytest.raises(ConnectionFailed, match="connection refused"):
        open_smtp(settings)
    assert check_smtp(settings)[0][0] is False


def imap_settings(dovecot, user, **over):
    values = dict(host=dovecot.host, port=dovecot.imap_port, user=user, threshold=2,
                  password_ref="env:NK_IMAP_PW", tls="starttls", ca_file=dovecot.ca_file)
    values.update(over)
    settings = s.BounceSettings(**values)
    settings.validate()
    return settings


def test_folders_are_listed_over_starttls_and_implicit_tls(dovecot, mailbox_user, monkeypatch):
    user, password = mailbox_user(prefix="bounces")
    dovecot.create_folder(user, "Bounces")
    dovecot.create_folder(user, "Archive")
    monkeypatch.setenv("NK_IMAP_PW", password)
    assert fetch_folder_names(imap_settings(dovecot, user)) == ["INBOX", "Archive", "Bounces"]
    implicit = imap_settings(dovecot, user, port=dovecot.imaps_port, tls="ssl")
    assert "Bounces" in fetch_folder_names(implicit)


def test_imap_wrong_password_and_untrusted_ca(dovecot, mailbox_user, monkeypatch, test_ca):
    user, _ = mailbox_user()
    monkeypatch.setenv("NK_IMAP_PW", "wrong")
    with pytest.raises(AuthenticationFailed, match="refused"):
        open_imap(imap_settings(dovecot, user))
    with pytest.raises(CertificateError, match="not trusted"):
        open_imap(imap_settings(dovecot, user, ca_file=test_ca.untrusted.ca_file))


def test_check_imap_reports_missing_folder(dovecot, mailbox_user, monkeypatch):
    user, password = mailbox_user()
    monkeypatch.setenv("NK_IMAP_PW", password)
    results = check_imap(imap_settings(dovecot, user, folder="Bounces"))
    assert [ok for ok, _ in results] == [True, True, False]
    assert "'Bounces' not found" in results[-1][1] and "INBOX" in results[-1][1]


def test_cli_settings_test_and_folders(dovecot, mailbox_user, smtp_server, test_ca, monkeypatch, nk_db, caplog):
    caplog.set_level(logging.DEBUG)
    user, password = mailbox_user(prefix="bounces")
    dovecot.create_folder(user, "Bounces")
    smtp_pw = "smtp-Secret-123"
    srv = smtp_server(tls="starttls", auth={"news": smtp_pw})
    monkeypatch.setenv("NK_SMTP_PW", smtp_pw)
    monkeypatch.setenv("NK_IMAP_PW", password)
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    assert run("settings", "smtp", "--host", "127.0.0.1", "--port", str(srv.port), "--user", "news",
               "--password-env", "NK_SMTP_PW", "--ca-file", test_ca.ca_file, "--daily-limit", "50",
               "--from", "news@example.org").exit_code == 0
    assert run("settings", "bounce", "--host", "127.0.0.1", "--port", str(dovecot.imap_port),
               "--user", user, "--password-env", "NK_IMAP_PW", "--ca-file", dovecot.ca_file,
               "--folder", "Missing", "--threshold", "3").exit_code == 0
    result = run("settings", "folders")
    assert result.exit_code == 0 and result.stdout.split() == ["INBOX", "Bounces"]
    result = run("settings", "test")
    assert result.exit_code == 1
    assert "ok   SMTP server 127.0.0.1" in result.stdout and "logged in as news" in result.stdout
    assert "FAIL" in result.stdout and "'Missing' not found" in result.stdout
    run("settings", "bounce", "--folder", "Bounces")
    result = run("settings", "test")
    assert result.exit_code == 0, result.stdout
    # The passwords appear nowhere: not in the SQLite file (WAL included), output or logs.
    shown = run("settings", "show", "--json").stdout
    json.loads(shown)
    store = open_store(nk_db)
    store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    store.close()
    files = [p for p in nk_db.parent.iterdir() if p.name.startswith(nk_db.name)]
    assert files
    for secret in (smtp_pw, password):
        assert secret not in shown + result.stdout + result.stderr + caplog.text
        for f in files:
            assert secret.encode() not in f.read_bytes()
