"""The settings commands: every flag round-trips, user errors are one line, every command has help."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from newsletter_kit import settings as s
from newsletter_kit.cli import cli
from newsletter_kit.store import open_store


@pytest.fixture
def run(tmp_path):
    db = tmp_path / "nk.db"

    def invoke(*args: str, ok: bool = True):
        result = CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output + result.stderr
        return result

    invoke.db = db
    return invoke


def test_every_smtp_flag_round_trips_through_cli_and_api(run, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    run("settings", "smtp", "--host", "mail.example.org", "--port", "465", "--user", "u@example.org",
        "--password-env", "SMTP_PW", "--auth", "--tls", "ssl", "--ca-file", str(ca),
        "--daily-limit", "450", "--exclusion", "global", "--from", "Città, News <News@Example.org>",
        "--reply-to", "Help <help@example.org>", "--list-id", "Shop News <news.example.org>",
        "--unsubscribe-url", "https://news.example.org/u/{token}", "--timezone", "Europe/Rome")
    shown = json.loads(run("settings", "show", "--json").stdout)["smtp"]
    assert shown == {
        "host": "mail.example.org", "port": 465, "user": "u@example.org",
        "password": "******** (env)", "password-env": "SMTP_PW", "auth": True, "tls": "ssl",
        "allow-plain-auth": False, "ca-file": str(ca.resolve()), "daily-limit": 450,
        "exclusion": "global", "from": '"Città, News" <news@example.org>',
        "reply-to": "Help <help@example.org>", "list-id": "Shop News <news.example.org>",
        "unsubscribe-url": "https://news.example.org/u/{token}", "timezone": "Europe/Rome",
        "dkim-selector": None, "dkim-key-file": None, "dkim-domain": None,
    }
    api = s.load_smtp_settings(open_store(run.db))
    assert api.public_dict() == shown
    # Only the flags given change; an empty string clears an optional field.
    run("settings", "smtp", "--daily-limit", "300", "--unsubscribe-url", "", "--ca-file", "",
        "--reply-to", "", "--list-id", "")
    shown = json.loads(run("settings", "show", "--json").stdout)["smtp"]
    assert (shown["daily-limit"], shown["unsubscribe-url"], shown["ca-file"]) == (300, None, None)
    assert (shown["reply-to"], shown["list-id"], shown["from"]) == (None, None, '"Città, News" <news@example.org>')
    run("settings", "smtp", "--from", "news@example.org")  # --from is the whole From: no name left
    assert json.loads(run("settings", "show", "--json").stdout)["smtp"]["from"] == "news@example.org"
    assert shown["host"] == "mail.example.org"


def test_every_bounce_flag_round_trips(run):
    run("settings", "bounce", "--host", "imap.example.org", "--port", "993", "--user",
        "bounces@example.org", "--password-env", "IMAP_PW", "--tls", "ssl", "--folder", "Bounces",
        "--threshold", "2", "--count-policy", "--processed-folder", "Done",
        "--stale-after-days", "30", "--reset-on-success")
    shown = json.loads(run("settings", "show", "--json").stdout)["bounce"]
    assert shown["bounce-address"] == "bounces@example.org"
    assert (shown["folder"], shown["threshold"], shown["count-policy"]) == ("Bounces", 2, True)
    assert (shown["processed-folder"], shown["stale-after-days"], shown["reset-on-success"]) == ("Done", 30, True)
    run("settings", "bounce", "--no-count-policy", "--bounce-address", "rp@example.org")
    shown = json.loads(run("settings", "show", "--json").stdout)["bounce"]
    assert shown["count-policy"] is False and shown["bounce-address"] == "rp@example.org"
    api = s.load_bounce_settings(open_store(run.db))
    assert api.public_dict() == shown


def test_user_error_is_one_line_without_traceback(tmp_path):
    env = {**os.environ, "NEWSLETTER_KIT_DB": str(tmp_path / "nk.db")}
    proc = subprocess.run(
        [sys.executable, "-m", "newsletter_kit", "settings", "smtp", "--host", "x.example.org",
         "--port", "70000", "--daily-limit", "10", "--from", "a@example.org"],
        capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "Error: port 70000 is out of range (1-65535)"
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_auth_over_plain_connection_refused_unless_allowed(run):
    result = run("settings", "smtp", "--host", "127.0.0.1", "--port", "25", "--user", "u",
                 "--password-env", "PW", "--tls", "none", "--daily-limit", "5", "--from",
                 "a@example.org", ok=False)
    assert result.exit_code == 1 and "unencrypted" in result.stderr
    run("settings", "smtp", "--host", "127.0.0.1", "--port", "25", "--user", "u",
        "--password-env", "PW", "--tls", "none", "--allow-plain-auth", "--daily-limit", "5",
        "--from", "a@example.org")


def test_free_provider_warning_is_printed(run):
    result = run("settings", "smtp", "--host", "smtp.gmail.com", "--port", "465", "--tls", "ssl",
                 "--user", "me@example.org", "--password-env", "PW", "--daily-limit", "2000",
                 "--from", "me@example.org")
    assert "about 500 emails a day" in result.stderr


def test_show_on_empty_store_and_settings_needed(run):
    run("init")  # readers open only an existing store (test_store_errors.py)
    assert json.loads(run("settings", "show", "--json").stdout) == {"smtp": None, "bounce": None}
    result = run("settings", "folders", ok=False)
    assert result.exit_code == 1 and "settings bounce" in result.stderr


def _commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def test_every_command_and_option_has_help_text():
    missing = []
    for path, command in _commands(cli):
        if not (command.help or "").strip():
            missing.append(" ".join(path))
        for param in command.params:
            if isinstance(param, click.Option) and not param.help and param.name not in ("help", "version"):
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert missing == []
