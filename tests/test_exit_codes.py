"""The exit codes of the commands that send or fetch (README, "Exit codes"), on real servers:
1 when something must be fixed first (a certificate, a TLS mode, a folder), 75 when nothing needs
fixing and the command should run again later (the server cannot be reached, the store is
locked by another process). Always one line on stderr, and a later run does the work.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import newsletter_kit as nk
from newsletter_kit.cli import cli
from tests.dsn import postfix_dsn
from tests.test_store_errors import locked, one_line_error, snapshot


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


# --- bounces fetch -----------------------------------------------------------------------------


@pytest.fixture
def mailbox(dovecot: Any, mailbox_user: Any, nk_db: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    user, password = mailbox_user(prefix="bounces")
    dovecot.append_many(user, "Bounces", [postfix_dsn(f"gone{i}@example.org") for i in range(3)])
    monkeypatch.setenv("NK_EXIT_PW", password)
    store = nk.open_store(nk_db)
    nk.update_bounce_settings(store, host="localhost", port=dovecot.imap_port, user=user, threshold=1,
                              password_ref="env:NK_EXIT_PW", ca_file=dovecot.ca_file, folder="Bounces")
    store.close()
    return {"user": user, "dovecot": dovecot}


@pytest.mark.parametrize("change,code,words", [
    ({"port": "closed"}, 75, "connection refused"),
    ({"ca_file": ""}, 1, "certificate is not trusted"),
    ({"tls": "ssl"}, 1, "TLS handshake failed"),
    ({"folder": "Missing"}, 1, "folder 'Missing' not found"),
], ids=["unreachable", "untrusted", "tls-mismatch", "no-folder"])
def test_bounces_fetch_exit_codes(change, code, words, mailbox, nk_db):
    store = nk.open_store(nk_db)
    if change.get("port") == "closed":
        change = {"port": _closed_port(), "host": "127.0.0.1"}
    nk.update_bounce_settings(store, **change)
    store.close()
    before = snapshot(nk_db)
    result = _invoke("bounces", "fetch", "--json")
    assert result.exit_code == code, result.output
    assert words in one_line_error(result.stderr) and result.stdout == ""
    assert snapshot(nk_db) == before


def test_bounces_fetch_on_a_locked_store_exits_75_then_the_rerun_records_everything(
        mailbox, nk_db, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_KIT_BUSY_TIMEOUT", "0.3")
    before = snapshot(nk_db)
    with locked(nk_db):
        result = _invoke("bounces", "fetch", "--json")
    assert result.exit_code == 75 and "locked by another process" in one_line_error(result.stderr)
    assert snapshot(nk_db) == before
    result = _invoke("bounces", "fetch", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fetched"] == 3


# --- campaign send -----------------------------------------------------------------------------


@pytest.fixture
def campaign(nk_db: Path) -> None:
    store = nk.open_store(nk_db)
    nk.add_contacts(store, [{"email": f"reader{i}@example.org"} for i in range(3)], list_name="news")
    nk.create_campaign(store, "spring", "news", "Hello", "<p>news</p>")
    store.close()


@pytest.mark.parametrize("server,settings,code,words", [
    (None, {"tls": "none"}, 75, "connection refused"),
    ({"tls": "starttls"}, {"tls": "starttls"}, 1, "certificate is not trusted"),
    ({"tls": "starttls"}, {"tls": "ssl"}, 1, "TLS handshake failed"),
], ids=["unreachable", "untrusted", "tls-mismatch"])
def test_campaign_send_exit_codes(server, settings, code, words, campaign, smtp_server, nk_db):
    port = smtp_server(**server).port if server else _closed_port()
    store = nk.open_store(nk_db)
    nk.update_smtp_settings(store, host="127.0.0.1", port=port, daily_limit=100,
                            from_addr="news@example.org", timezone="Europe/Rome", **settings)
    store.close()
    result = _invoke("campaign", "send", "spring")
    assert result.exit_code == code, result.output
    assert words in result.stderr
    status = json.loads(_invoke("campaign", "status", "spring", "--json").stdout)
    assert (status["sent"], status["pending"], status["unknown"]) == (0, 3, 0)
