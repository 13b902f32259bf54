"""A bounce counts only when it matches a delivery we made (issue 9, finding 7), on real servers:
Dovecot holds the reports, Postfix makes the real bounces, VERP goes through Postfix end to end.

Matching: our Message-ID of that very address, or a signed VERP token of that address's delivery
(the public campaign stamp alone matches nobody: issue 16); a 5xx at RCPT is ours by
construction.  Everything else is recorded as unmatched: listed, not counted (unless
``settings bounce --count-unmatched``).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter_kit import review, tokens
from newsletter_kit.bounces import list_unmatched, parse_bounce, record_report
from newsletter_kit.cli import cli
from newsletter_kit.ingest import fetch_bounces
from newsletter_kit.settings import update_bounce_settings, update_smtp_settings
from newsletter_kit.store import Store, now_iso, open_store
from newsletter_kit.suppressions import apply_threshold, bounce_counts, list_suppressions
from tests import mailservers
from tests.dsn import postfix_dsn


def _ledger(store: Store, campaign: str, emails: list[str]) -> dict[str, tuple[int, str]]:
    """A campaign sent to ``emails``: {email: (delivery id, message id)}."""
    now = now_iso()
    with store.transaction():
        cid = store.conn.execute(
            "INSERT INTO campaigns (name, list_name, subject, html, status, created_at, updated_at)"
            " VALUES (?, 'all', 's', '<p>h</p>', 'done', ?, ?)", (campaign, now, now)).lastrowid
        rows = {}
        for email in emails:
            mid = f"<nk.{uuid.uuid4().hex}@news.example.org>"
            did = store.conn.execute(
                "INSERT INTO deliveries (campaign_id, email, state, message_id, created_at, updated_at, sent_at)"
                " VALUES (?, ?, 'sent', ?, ?, ?, ?)", (cid, email, mid, now, now, now)).lastrowid
            rows[email] = (int(did), mid)
    return rows


def _to_verp(raw: bytes, bounce_address: str, token: str) -> bytes:
    """The report as if it came back to the VERP envelope sender LOCAL+TOKEN@DOMAIN."""
    local, _, domain = bounce_address.partition("@")
    return raw.replace(f"To: {bounce_address}".encode(), f"To: {local}+{token}@{domain}".encode()).replace(
        f"Delivered-To: {bounce_address}".encode(), f"Delivered-To: {local}+{token}@{domain}".encode())


def test_300_made_up_reports_for_addresses_never_sent_suppress_nobody(
    dovecot: mailservers.Dovecot, mailbox_user: Any, nk_db: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bounces, password = mailbox_user(prefix="bounces")
    monkeypatch.setenv("NK_TEST_MATCH_PW", password)
    store = open_store(nk_db)
    update_bounce_settings(store, host="localhost", port=dovecot.imap_port, user=bounces, threshold=1,
                           password_ref="env:NK_TEST_MATCH_PW", ca_file=dovecot.ca_file)
    real = _ledger(store, "nov", [f"reader{i}@example.org" for i in range(5)])
    key = store.signing_key()
    (first, (first_id, first_mid)), (second, _) = list(real.items())[:2]
    forged: list[bytes] = []
    for i in range(300):
        victim = f"made-up-{i}-{uuid.uuid4().hex[:6]}@example.net"
        variant = i % 6
        if variant == 0:    # a never-sent address, no stamp of ours at all
            raw = postfix_dsn(victim, campaign=None, sender=bounces)
        elif variant == 1:  # our campaign stamp, but the campaign was never sent to that address
            raw = postfix_dsn(victim, campaign="nov", sender=bounces)
        elif variant == 2:  # a campaign that does not exist
            raw = postfix_dsn(victim, campaign="black-friday", sender=bounces)
        elif variant == 3:  # a real Message-ID of ours, naming someone else
            raw = postfix_dsn(victim, original_message_id=first_mid, campaign="nov", sender=bounces)
        elif variant == 4:  # a forged VERP token
            raw = _to_verp(postfix_dsn(victim, campaign=None, sender=bounces), bounces, f"{first_id}.{'0' * 16}")
        else:               # a genuine VERP token of another address's delivery
            raw = _to_verp(postfix_dsn(victim, campaign=None, sender=bounces), bounces,
                           tokens.verp_token(key, first_id))
        forged.append(raw)
    dovecot.append_many(bounces, "INBOX", forged)

    report = fetch_bounces(store)

    assert report.fetched == 300 and report.bounces == {"hard": 300} and report.to_dict()["unmatched"] == 300
    assert report.suppressed == [] and list_suppressions(store) == []
    assert bounce_counts(store) == {}
    assert review.threshold_what_if(store, 3)["would_suppress"].tolist() == [0, 0, 0]
    # Kept and visible: the command line, the review.
    result = CliRunner().invoke(cli, ["--db", str(nk_db), "bounces", "list", "--unmatched", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert len(listed) == 300 and not any(row["matched"] for row in listed)
    assert first not in {row["address"] for row in listed} and second not in {row["address"] for row in listed}
    assert len(review.unmatched_bounces(store)) == 300
    # Counted only when the settings say so; the what-if follows the same rule.
    assert review.threshold_what_if(store, 1, count_unmatched=True)["would_suppress"].tolist() == [300]
    result = CliRunner().invoke(cli, ["--db", str(nk_db), "settings", "bounce", "--count-unmatched"])
    assert result.exit_code == 0, result.output
    store = open_store(nk_db)
    assert len(apply_threshold(store)) == 300


def test_reports_that_match_our_deliveries_count(nk_db: Path, tmp_path: Path) -> None:
    store = open_store(nk_db)
    update_bounce_settings(store, host="imap.example.org", port=993, tls="ssl", user="bounces@example.org",
                           password_ref="env:NK_UNUSED", threshold=1)
    sent = _ledger(store, "nov", ["by-id@example.org", "by-id-case@example.org", "by-verp@example.org"])
    key = store.signing_key()
    raws = {
        "by-id@example.org": postfix_dsn("by-id@example.org", campaign=None,
                                         original_message_id=sent["by-id@example.org"][1]),
        # Our Message-ID of that delivery, the address in another case: addresses are case-blind.
        "by-id-case@example.org": postfix_dsn("By-ID-Case@Example.ORG", campaign=None,
                                              original_message_id=sent["by-id-case@example.org"][1]),
        # VERP needs nothing quoted: a report that strips the original still names the delivery.
        "by-verp@example.org": _to_verp(postfix_dsn("by-verp@example.org", campaign=None).split(
            b"Content-Description: Undelivered Message")[0], "bounces@example.org",
            tokens.verp_token(key, sent["by-verp@example.org"][0]).upper()),
    }
    how = {}
    for address, raw in raws.items():
        report = parse_bounce(raw)
        with store.transaction():
            assert record_report(store, report, report_key=address, source="file") == [address]
        how[address] = store.conn.execute("SELECT matched_by, delivery_id, unmatched FROM bounces WHERE email = ?",
                                          (address,)).fetchone()
    assert how == {"by-id@example.org": ("message_id", sent["by-id@example.org"][0], 0),
                   "by-id-case@example.org": ("message_id", sent["by-id-case@example.org"][0], 0),
                   "by-verp@example.org": ("verp", sent["by-verp@example.org"][0], 0)}
    assert apply_threshold(store) == sorted(raws)
    assert list_unmatched(store) == []


def _configure_send(store: Store, postfix: mailservers.Postfix, dovecot: mailservers.Dovecot, sender: str,
                    port: int | None = None) -> None:
    update_smtp_settings(store, host="127.0.0.1", port=port or postfix.port, tls="none", auth=False,
                         daily_limit=100, from_addr=sender)
    update_bounce_settings(store, host="localhost", port=dovecot.imap_port, user=sender, threshold=1,
                           password_ref="env:NK_TEST_VERP_PW", ca_file=dovecot.ca_file)


def test_verp_end_to_end_through_postfix(
    dovecot: mailservers.Dovecot, postfix: mailservers.Postfix, mailbox_user: Any, nk_db: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from newsletter_kit.audience import add_contacts
    from newsletter_kit.campaigns import create_campaign, send_campaign

    sender, password = mailbox_user(prefix="bounces")
    ok, ok_password = mailbox_user(prefix="reader")
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.org"
    fault = f"gone-{uuid.uuid4().hex[:8]}@{mailservers.FAULT_HARD_DOMAIN}"
    monkeypatch.setenv("NK_TEST_VERP_PW", password)
    store = open_store(nk_db)
    _configure_send(store, postfix, dovecot, sender)
    result = CliRunner().invoke(cli, ["--db", str(nk_db), "settings", "bounce", "--verp"])
    assert result.exit_code == 0, result.output
    assert json.loads(CliRunner().invoke(cli, ["--db", str(nk_db), "settings", "show", "--json"]).stdout)[
        "bounce"]["verp"] is True
    add_contacts(store, [{"email": a} for a in (ok, unknown, fault)])
    create_campaign(store, "nov", "all", "November news", "<p>Hello</p>")

    assert send_campaign(store, "nov").sent == 3
    postfix.wait_for_messages(sender, 2, timeout=60)

    # The envelope sender was LOCAL+TOKEN@DOMAIN, signed, per delivery: the reader's copy says so.
    [delivered] = dovecot.read_messages(ok)
    ids = dict(store.conn.execute("SELECT email, id FROM deliveries").fetchall())
    local, _, domain = sender.partition("@")
    return_path = re.search(rb"^Return-Path: <([^>]+)>", delivered, re.MULTILINE).group(1).decode()
    assert return_path == f"{local}+{tokens.verp_token(store.signing_key(), ids[ok])}@{domain}"
    # The List-Unsubscribe mailto stays the plain bounce address.
    assert f"mailto:{sender}?".encode() in delivered

    report = fetch_bounces(store)
    assert report.suppressed == sorted([unknown, fault])
    rows = store.conn.execute("SELECT email, matched_by, delivery_id FROM bounces ORDER BY email").fetchall()
    assert rows == sorted([(unknown, "verp", ids[unknown]), (fault, "verp", ids[fault])])


def test_a_5xx_at_rcpt_is_ours_by_construction(
    dovecot: mailservers.Dovecot, postfix: mailservers.Postfix, mailbox_user: Any, nk_db: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from newsletter_kit.audience import add_contacts
    from newsletter_kit.campaigns import create_campaign, send_campaign

    sender, password = mailbox_user(prefix="bounces")
    monkeypatch.setenv("NK_TEST_VERP_PW", password)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.org"
    store = open_store(nk_db)
    _configure_send(store, postfix, dovecot, sender, port=postfix.reject_port)
    add_contacts(store, [{"email": unknown}])
    create_campaign(store, "nov", "all", "November news", "<p>Hello</p>")
    report = send_campaign(store, "nov")
    assert report.failed == 1
    assert store.conn.execute("SELECT email, matched_by, unmatched FROM bounces").fetchall() == [(unknown, "smtp", 0)]
    assert [s["address"] for s in list_suppressions(store)] == [unknown]


def test_a_store_from_before_the_rule_is_judged_by_it(tmp_path: Path) -> None:
    """The migration to the matching rule: rows recorded under the old rule are matched by what the ledger can tell."""
    path = tmp_path / "old.db"
    store = open_store(path)
    sent = _ledger(store, "nov", ["id@example.org", "stamp@example.org", "other@example.org"])
    rows = [  # email, campaign, delivery_id, source
        ("id@example.org", "nov", sent["id@example.org"][0], "imap"),
        ("stamp@example.org", "nov", None, "imap"),
        ("forged@example.org", "nov", None, "imap"),                           # never sent
        ("named@example.org", "nov", sent["other@example.org"][0], "imap"),    # someone else's delivery
        ("rcpt@example.org", "nov", None, "smtp"),
    ]
    with store.transaction():
        for n, (email, campaign, delivery, source) in enumerate(rows):
            store.conn.execute(
                "INSERT INTO bounces (email, kind, campaign, delivery_id, report_key, source, bounced_at, recorded_at)"
                " VALUES (?, 'hard', ?, ?, ?, ?, ?, ?)", (email, campaign, delivery, f"r{n}", source, now_iso(), now_iso()))
    store.conn.execute("ALTER TABLE bounces DROP COLUMN matched_by")
    store.conn.execute("ALTER TABLE bounces DROP COLUMN unmatched")
    from newsletter_kit import store as store_module

    before = store_module._MIGRATIONS.index(store_module._v3_bounces_matched)
    store.conn.execute(f"PRAGMA user_version = {before}")
    store.close()

    store = open_store(path)
    judged = dict(store.conn.execute("SELECT email, coalesce(matched_by, 'unmatched') FROM bounces").fetchall())
    # (the stamp matched under issue 9's rule; issue 16's migration then makes it unmatched)
    assert judged == {"id@example.org": "message_id", "stamp@example.org": "unmatched",
                      "forged@example.org": "unmatched", "named@example.org": "unmatched", "rcpt@example.org": "smtp"}
    assert sorted(bounce_counts(store)) == ["id@example.org", "rcpt@example.org"]


@pytest.mark.parametrize("address, problem", [
    ("bounces+list@example.org", "must not contain '+'"),
    ("b" * 40 + "@example.org", "at most 31 characters"),
])
def test_verp_needs_a_bounce_address_it_can_extend(nk_db: Path, address: str, problem: str) -> None:
    result = CliRunner().invoke(cli, ["--db", str(nk_db), "settings", "bounce", "--host", "imap.example.org",
                                      "--port", "993", "--tls", "ssl", "--user", address, "--password-env", "X",
                                      "--threshold", "1", "--verp"])
    assert result.exit_code != 0 and problem in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_verp_tokens_are_signed_per_delivery() -> None:
    key, other = b"k" * 32, b"o" * 32
    token = tokens.verp_token(key, 1234)
    assert tokens.verify_verp_token(key, token) == 1234
    assert tokens.verify_verp_token(key, token.upper()) == 1234  # a mail system may change the case
    assert tokens.verify_verp_token(other, token) is None
    assert tokens.verify_verp_token(key, token.replace("1234.", "1235.")) is None
    assert tokens.verify_verp_token(key, "1234") is None and tokens.verify_verp_token(key, None) is None
    sender = tokens.envelope_sender("bounces@example.org", key, 1234)
    assert sender == f"bounces+{token}@example.org" and len(sender.partition("@")[0]) <= 64


# --- issue 16, finding 2: a recipient cannot get other recipients suppressed ------------------


def _arf(rcpts: list[str], *, original_message_id: str | None, campaign: str | None) -> bytes:
    """An ARF complaint naming ``rcpts`` (Original-Rcpt-To), quoting an original with these headers."""
    quoted = "".join([f"Message-ID: {original_message_id}\r\n" if original_message_id else "",
                      f"X-Newsletter-Campaign: {campaign}\r\n" if campaign else ""])
    return (
        "From: Feedback Loop <fbl@fbl.example.net>\r\nTo: abuse@example.org\r\nSubject: complaint\r\n"
        f"Message-ID: <fbl.{uuid.uuid4().hex}@fbl.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        "--b1\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n"
        + "".join(f"Original-Rcpt-To: <{r}>\r\n" for r in rcpts)
        + "\r\n--b1\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: news@example.org\r\n"
        f"To: {rcpts[0]}\r\nSubject: Our news\r\n{quoted}\r\n--b1--\r\n"
    ).encode()


def _also_naming(raw: bytes, named: str, other: str) -> bytes:
    """The DSN with a second recipient block, for ``other``, after ``named``'s."""
    head, sep, rest = raw.partition(f"Final-Recipient: rfc822; {named}\r\n".encode())
    block, end, tail = rest.partition(b"\r\n\r\n")
    second = (sep + block).replace(named.encode(), other.encode())
    return head + sep + block + end + second + end + tail


def _without_quoted_id(raw: bytes, mid: str) -> bytes:
    return raw.replace(f"Message-ID: {mid}\r\n".encode(), b"")


def test_a_report_counts_only_for_the_address_of_the_delivery_it_proves(nk_db: Path) -> None:
    """A report quoting the reporter's own delivery (Message-ID, VERP token), or only the public
    campaign stamp, and naming other addresses matches nobody: recorded unmatched, counted by no
    threshold, rate or guard."""
    from newsletter_kit.guards import complaint_counts

    store = open_store(nk_db)
    update_bounce_settings(store, host="imap.example.org", port=993, tls="ssl", user="bounces@example.org",
                           password_ref="env:NK_UNUSED", threshold=1)
    attacker, victim, other = "mallory@example.org", "victim@example.org", "other@example.org"
    nov = _ledger(store, "nov", [attacker, victim, other])
    dec = _ledger(store, "dec", [attacker, victim])
    key = store.signing_key()
    mine, mine_dec = nov[attacker][1], dec[attacker][1]
    stray = f"<{uuid.uuid4().hex}@news.example.org>"
    verp_mine = tokens.verp_token(key, nov[attacker][0])
    in_reply_to = _without_quoted_id(postfix_dsn(victim, original_message_id=mine, campaign="nov"), mine).replace(
        b"Auto-Submitted:", f"In-Reply-To: {mine}\r\nAuto-Submitted:".encode())
    references = _without_quoted_id(postfix_dsn(victim, original_message_id=mine, campaign="nov"), mine).replace(
        b"Auto-Submitted:", f"References: {mine}\r\nAuto-Submitted:".encode())
    body_quote = postfix_dsn(victim, campaign=None).split(b"Content-Description: Undelivered Message")[0].replace(
        b"The mail system\r\n", f"The mail system\r\n\r\n> Message-ID: {mine}\r\n> X-Newsletter-Campaign: nov\r\n".encode())
    forged = {
        "stamp only": postfix_dsn(victim, original_message_id=stray, campaign="nov"),
        "stamp only, upper case": postfix_dsn(victim.upper(), original_message_id=stray, campaign="nov"),
        "my Message-ID": postfix_dsn(victim, original_message_id=mine, campaign="nov"),
        "my Message-ID, in In-Reply-To": in_reply_to,
        "my Message-ID, in References": references,
        "my Message-ID, quoted in the text": body_quote,
        "my Message-ID of another campaign": postfix_dsn(victim, original_message_id=mine_dec, campaign="nov"),
        "my VERP token": _to_verp(postfix_dsn(victim, original_message_id=stray, campaign="nov"),
                                  "bounces@example.org", verp_mine),
        "my VERP token, upper case": _to_verp(postfix_dsn(victim, original_message_id=stray, campaign=None),
                                              "bounces@example.org", verp_mine.upper()),
        "ARF, stamp only": _arf([victim], original_message_id=stray, campaign="nov"),
        "ARF, my Message-ID": _arf([victim, other], original_message_id=mine, campaign="nov"),
        "ARF, my Message-ID of another campaign": _arf([victim], original_message_id=mine_dec, campaign="dec"),
    }
    for n, (variant, raw) in enumerate(forged.items()):
        report = parse_bounce(raw)
        assert report.recipients, variant
        with store.transaction():
            record_report(store, report, report_key=f"forged-{n}", source="file")
        rows = store.conn.execute("SELECT email, matched_by, delivery_id, unmatched FROM bounces"
                                  " WHERE report_key = ?", (f"forged-{n}",)).fetchall()
        assert rows and all(r[1:] == (None, None, 1) for r in rows), (variant, rows)
    assert bounce_counts(store) == {} and apply_threshold(store) == [] and list_suppressions(store) == []
    assert complaint_counts(store) == {"nov": (0, 3), "dec": (0, 2)}
    summary = review.campaign_summary(store).set_index("campaign")
    assert summary.loc["nov", ["bounced", "complaints"]].tolist() == [0, 0]
    assert len(list_unmatched(store)) == sum(len(parse_bounce(r).recipients) for r in forged.values())

    # Several recipients in one report: only the one whose delivery it quotes matches.
    both = _also_naming(postfix_dsn(attacker, original_message_id=mine, campaign="nov"), attacker, victim)
    with store.transaction():
        assert sorted(record_report(store, parse_bounce(both), report_key="both", source="file")) == [attacker, victim]
    rows = dict(store.conn.execute("SELECT email, coalesce(matched_by, 'unmatched') FROM bounces WHERE report_key = 'both'"))
    assert rows == {attacker: "message_id", victim: "unmatched"}
    # A Message-ID of another campaign's delivery of that very address: that delivery, that campaign.
    with store.transaction():
        record_report(store, parse_bounce(postfix_dsn(victim, original_message_id=dec[victim][1], campaign="nov")),
                      report_key="own-dec", source="file")
        record_report(store, parse_bounce(_arf([victim.upper()], original_message_id=dec[victim][1], campaign="nov")),
                      report_key="own-dec-arf", source="file")
    assert store.conn.execute("SELECT campaign, delivery_id, matched_by FROM bounces WHERE report_key LIKE 'own-dec%'"
                              " ORDER BY report_key").fetchall() == [("dec", dec[victim][0], "message_id")] * 2
    assert complaint_counts(store) == {"nov": (0, 3), "dec": (1, 2)}
    assert apply_threshold(store) == [attacker, victim]


def test_a_store_whose_bounces_matched_by_the_campaign_stamp_is_rejudged(tmp_path: Path) -> None:
    """Issue 16's migration: rows that matched only by the stamp become unmatched."""
    from newsletter_kit import store as store_module

    path = tmp_path / "old.db"
    store = open_store(path)
    sent = _ledger(store, "nov", ["id@example.org", "stamp@example.org"])
    with store.transaction():
        for n, (email, how) in enumerate([("id@example.org", "message_id"), ("stamp@example.org", "campaign")]):
            store.conn.execute(
                "INSERT INTO bounces (email, kind, campaign, delivery_id, report_key, source, bounced_at, recorded_at,"
                " matched_by) VALUES (?, 'complaint', 'nov', ?, ?, 'imap', ?, ?, ?)",
                (email, sent[email][0], f"r{n}", now_iso(), now_iso(), how))
    before = store_module._MIGRATIONS.index(store_module._v4_campaign_stamp_matches_nobody)
    store.conn.execute(f"PRAGMA user_version = {before}")
    store.close()
    store = open_store(path)
    judged = store.conn.execute("SELECT email, coalesce(matched_by, 'unmatched'), delivery_id, unmatched FROM bounces"
                                " ORDER BY email").fetchall()
    assert judged == [("id@example.org", "message_id", sent["id@example.org"][0], 0),
                      ("stamp@example.org", "unmatched", None, 1)]
    from newsletter_kit.guards import complaint_counts

    assert complaint_counts(store)["nov"] == (1, 2)
