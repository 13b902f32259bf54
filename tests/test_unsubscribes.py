"""Opt-out replies to the List-Unsubscribe mailto, read from the bounce mailbox: valid tokens
record an unsubscribe, forged ones and quoted footers change nothing; no servers needed."""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

import newsletter_kit as nkit
from newsletter_kit import unsubscribes
from newsletter_kit.store import Store, open_store
from tests.bouncing import configure as _configure
from tests.bouncing import fetch_raws as _fetch_raws


@pytest.fixture
def store(nk_db: Path) -> Store:
    return open_store(nk_db)


KEY_FOR_TESTS = b"k" * 32


def _fake_token(key: bytes, campaign: str, email_: str) -> str:
    payload = f"{campaign}|{email_}".encode().hex()
    return payload + "." + hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()[:32]


def _fake_verify(key: bytes, token: str) -> tuple[str, str] | None:
    payload, _, sig = token.partition(".")
    good = hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()[:32]
    if not sig or not hmac.compare_digest(sig, good):
        return None
    campaign, _, email_ = bytes.fromhex(payload).decode().partition("|")
    return campaign, email_


def _request(subject: str, body: str = "", sender: str = "reader@example.net") -> bytes:
    return (f"From: {sender}\r\nTo: bounces@example.org\r\nSubject: {subject}\r\n"
            f"Message-ID: <{hashlib.md5((subject + body).encode()).hexdigest()}@example.net>\r\n\r\n{body}\r\n").encode()


def test_mailto_unsubscribe_requests_with_valid_and_forged_tokens(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unsubscribes, "_token_verifier", lambda: _fake_verify)
    settings = _configure(store)
    key = store.signing_key()
    good = _fake_token(key, "nov", "reader@example.net")
    forged = _fake_token(b"x" * 32, "nov", "victim@example.net")
    footer_quote = _fake_token(key, "nov", "quoter@example.net")
    raws = [
        _request(f"unsubscribe {good}"),
        _request("unsubscribe", body=_fake_token(key, "dec", "body@example.net"), sender="body@example.net"),
        _request(f"unsubscribe {forged}", sender="victim@example.net"),
        _request("Re: our November news", body=f"> to stop: {footer_quote}", sender="quoter@example.net"),
    ]
    report = _fetch_raws(store, settings, tmp_path, raws)
    assert report.bounces == {"unsubscribe": 2, "other": 1, "human": 1}
    assert sorted(report.unsubscribed) == [("body@example.net", "dec"), ("reader@example.net", "nov")]
    rows = store.conn.execute("SELECT email, campaign, source FROM unsubscribes ORDER BY email").fetchall()
    assert rows == [("body@example.net", "dec", "mailto"), ("reader@example.net", "nov", "mailto")]
    assert nkit.list_suppressions(store) == []


def test_mailto_unsubscribe_with_the_real_token(store: Store, tmp_path: Path) -> None:
    from newsletter_kit import tokens
    settings = _configure(store)
    token = tokens.unsubscribe_token(store.signing_key(), "nov", "reader@example.net")
    forged = tokens.unsubscribe_token(b"t" * 32, "nov", "victim@example.net")
    # What a mail client sends for mailto:bounces@...?subject=unsubscribe%20TOKEN
    raws = [_request(f"unsubscribe {token}"), _request(f"Re: unsubscribe {forged}", sender="victim@example.net")]
    report = _fetch_raws(store, settings, tmp_path, raws)
    assert report.bounces == {"unsubscribe": 1, "other": 1}
    rows = store.conn.execute("SELECT email, campaign, source FROM unsubscribes").fetchall()
    assert rows == [("reader@example.net", "nov", "mailto")]
