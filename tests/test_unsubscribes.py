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
    _campaign(store, "nov")
    token = tokens.unsubscribe_token(store.signing_key(), "nov", "reader@example.net")
    forged = tokens.unsubscribe_token(b"t" * 32, "nov", "victim@example.net")
    # What a mail client sends for mailto:bounces@...?subject=unsubscribe%20TOKEN
    raws = [_request(f"unsubscribe {token}"), _request(f"Re: unsubscribe {forged}", sender="victim@example.net")]
    report = _fetch_raws(store, settings, tmp_path, raws)
    assert report.bounces == {"unsubscribe": 1, "other": 1}
    rows = store.conn.execute("SELECT email, campaign, source FROM unsubscribes").fetchall()
    assert rows == [("reader@example.net", "nov", "mailto")]


@pytest.mark.parametrize("encode", ["q-folded", "b", "q-reply"])
def test_a_subject_sent_as_encoded_words_still_unsubscribes(store: Store, tmp_path: Path, encode: str) -> None:
    """Python's own folding of a long word, and mail clients, send the subject as RFC 2047
    encoded words: the token inside them still counts, and the report names the campaign."""
    import base64

    from newsletter_kit import tokens
    settings = _configure(store)
    _campaign(store, "nov")
    token = tokens.unsubscribe_token(store.signing_key(), "nov", "reader@example.net")
    half = len(token) // 2

    def q(text: str) -> str:  # RFC 2047 Q: "_" means a space, so it and "." are written as hex
        return text.replace(".", "=2E").replace("_", "=5F")

    subject = {
        "q-folded": f"unsubscribe =?utf-8?q?{q(token[:half])}?=\r\n =?utf-8?q?{q(token[half:])}?=",
        "b": "=?UTF-8?B?" + base64.b64encode(f"unsubscribe {token}".encode()).decode() + "?=",
        "q-reply": f"=?iso-8859-1?q?R=E9p=2E:_unsubscribe_{q(token)}?=",
    }[encode]
    report = _fetch_raws(store, settings, tmp_path, [_request(subject)])
    assert report.bounces == {"unsubscribe": 1} and report.unsubscribed == [("reader@example.net", "nov")]


LONG_NAMES = [("春の大セール・限定コレクションのお知らせ" * 12)[:200], ("تخفيضات الربيع الكبرى على جميع المنتجات " * 8)[:199],
              ("Весенняя распродажа 🌸 " * 15)[:199], ("विशेष बिक्री की सूचना " * 14)[:199]]


@pytest.mark.parametrize("name", LONG_NAMES)
def test_a_long_non_latin_campaign_name_gets_a_short_token_that_unsubscribes(
    store: Store, tmp_path: Path, name: str
) -> None:
    """Issue 16 finding 9d: the token carries a short hash of the name, so no name is too long;
    a reply to the List-Unsubscribe mailto (and the https link's token) names the campaign."""
    import email
    import re
    from email import policy

    from newsletter_kit import messages, tokens

    settings = _configure(store)
    _campaign(store, name)
    _campaign(store, "other")
    renderer = messages.CampaignRenderer(
        campaign=name, subject="News", html="<p>x</p>", from_addr="News <news@example.org>",
        bounce_address="bounces@example.org", signing_key=store.signing_key(),
        unsubscribe_url="https://news.example.org/u/{token}", message_id_domain="example.org")
    msg = email.message_from_bytes(renderer.render("reader@example.net", {}, message_id="<m1@example.org>"), policy=policy.default)
    mailto, https = re.findall(r"<([^>]+)>", msg["List-Unsubscribe"])
    token = mailto.split("unsubscribe%20", 1)[1]
    assert https == f"https://news.example.org/u/{token}"
    short = tokens.unsubscribe_token(store.signing_key(), "x", "reader@example.net")
    assert len(token) == len(short)  # does not grow with the name
    report = _fetch_raws(store, settings, tmp_path, [_request(f"Re: unsubscribe {token}")])
    assert report.bounces == {"unsubscribe": 1}
    rows = store.conn.execute("SELECT email, campaign, source FROM unsubscribes").fetchall()
    assert rows == [("reader@example.net", name, "mailto")]


def test_an_old_token_carrying_the_name_still_unsubscribes(store: Store, tmp_path: Path) -> None:
    from newsletter_kit import tokens

    settings = _configure(store)
    key = store.signing_key()
    old = tokens.sign(key, "Saldi d'estate — ñ\nreader@example.net".encode(), tokens._UNSUBSCRIBE_CONTEXT)
    assert tokens.verify_unsubscribe_token(key, old) == ("Saldi d'estate — ñ", "reader@example.net")
    _fetch_raws(store, settings, tmp_path, [_request(f"unsubscribe {old}")])
    rows = store.conn.execute("SELECT email, campaign FROM unsubscribes").fetchall()
    assert rows == [("reader@example.net", "Saldi d'estate — ñ")]


def test_a_token_of_a_campaign_no_longer_in_the_store_unsubscribes_from_everything(
    store: Store, tmp_path: Path
) -> None:
    from newsletter_kit import tokens

    settings = _configure(store)
    token = tokens.unsubscribe_token(store.signing_key(), "deleted long ago", "reader@example.net")
    _fetch_raws(store, settings, tmp_path, [_request(f"unsubscribe {token}")])
    rows = store.conn.execute("SELECT email, campaign FROM unsubscribes").fetchall()
    assert rows == [("reader@example.net", None)]


def _campaign(store: Store, name: str) -> None:
    nkit.add_contacts(store, [{"email": "reader@example.net"}])
    nkit.create_campaign(store, name, "all", "News", "<p>x</p>")
