"""Fetching bounces end to end: real Postfix bounces in a real Dovecot, read by fetch_bounces.

The module fixture sends two campaigns through the test Postfix from a Dovecot user (the
envelope sender, so the bounces land in its INBOX): to a mailbox that exists, a local user that
does not (5.1.1), the transport-map fault domain (error:5.1.1) and an over-quota mailbox
(552 5.2.2).  Tests read that INBOX directly, or copy its bounces into folders of their own.
"""
from __future__ import annotations

import email.utils
import json
import smtplib
import socket
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Iterator

import imapclient
import pytest

from newsletter_kit import bounces as nk_bounces
from newsletter_kit.errors import MailboxError
from newsletter_kit.ingest import fetch_bounces, imap_source
from newsletter_kit.settings import BounceSettings
from newsletter_kit.store import Store, now_iso, open_store
from newsletter_kit.suppressions import list_suppressions
from tests import mailservers

CAMPAIGNS = ("nov", "dec")


@dataclass
class Sent:
    """What the module fixture sent and got back."""

    sender: str
    password: str
    ok: str
    unknown: str
    fault: str
    full: str
    # campaign -> [(email, message_id)]
    deliveries: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    bounces: list[bytes] = field(default_factory=list)

    @property
    def bounced(self) -> list[str]:
        return sorted([self.unknown, self.fault, self.full])

    def bounces_of(self, campaign: str) -> list[bytes]:
        ids = {mid for _, mid in self.deliveries[campaign]}
        return [raw for raw in self.bounces if any(mid.encode() in raw for mid in ids)]


def _stamped(sender: str, rcpt: str, campaign: str) -> tuple[str, bytes]:
    msg = EmailMessage()
    message_id = email.utils.make_msgid(domain="news.example.org")
    msg["From"] = f"News <{sender}>"
    msg["To"] = rcpt
    msg["Subject"] = f"News for {campaign}"
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = message_id
    msg["X-Newsletter-Campaign"] = campaign
    msg["List-Unsubscribe"] = f"<mailto:{sender}?subject=unsubscribe>"
    msg.set_content("Hello!\n")
    return message_id, msg.as_bytes()


@pytest.fixture(scope="module")
def sent(dovecot: mailservers.Dovecot, postfix: mailservers.Postfix) -> Sent:
    tag = uuid.uuid4().hex[:8]
    sender, ok, full = (f"{p}-{tag}@example.org" for p in ("bounces", "ok", "full"))
    dovecot.add_user(sender, "pw-" + tag)
    dovecot.add_user(ok, "pw-" + tag)
    dovecot.add_user(full, "pw-" + tag, quota=True)
    result = Sent(sender, "pw-" + tag, ok, f"nobody-{tag}@example.org",
                  f"gone-{tag}@{mailservers.FAULT_HARD_DOMAIN}", full)
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as smtp:
        for campaign in CAMPAIGNS:
            result.deliveries[campaign] = []
            for rcpt in (ok, result.unknown, result.fault, full):
                message_id, raw = _stamped(sender, rcpt, campaign)
                smtp.sendmail(sender, [rcpt], raw)
                result.deliveries[campaign].append((rcpt, message_id))
    postfix.wait_for_messages(sender, 6, timeout=60)
    result.bounces = dovecot.read_messages(sender)
    assert len(result.bounces) == 6
    return result


def _ledger(store: Store, sent: Sent, campaigns: tuple[str, ...] = CAMPAIGNS) -> None:
    """The ledger rows the send path would have written."""
    now = now_iso()
    with store.transaction():
        for campaign in campaigns:
            cid = store.conn.execute(
                "INSERT INTO campaigns (name, list_name, subject, html, status, created_at, updated_at)"
                " VALUES (?, 'all', 's', '<p>h</p>', 'done', ?, ?)", (campaign, now, now)).lastrowid
            for rcpt, message_id in sent.deliveries[campaign]:
                store.conn.execute(
                    "INSERT INTO deliveries (campaign_id, email, state, message_id, created_at, updated_at,"
                    " sent_at) VALUES (?, ?, 'sent', ?, ?, ?, ?)", (cid, rcpt, message_id, now, now, now))


def _settings(dovecot: mailservers.Dovecot, user: str, threshold: int = 1, **more: Any) -> BounceSettings:
    settings = BounceSettings(host="localhost", port=dovecot.imap_port, user=user, threshold=threshold,
                              ca_file=dovecot.ca_file, password_ref="env:NK_TEST_UNUSED", **more)
    settings.validate()
    return settings


def _fetch(store: Store, settings: BounceSettings, password: str, **kw: Any) -> Any:
    return fetch_bounces(store, settings, password=password, **kw)


def _bounce_rows(store: Store) -> list[tuple[Any, ...]]:
    return store.conn.execute(
        "SELECT email, kind, status, campaign, delivery_id IS NOT NULL FROM bounces ORDER BY campaign, email"
    ).fetchall()


def _flags(dovecot: mailservers.Dovecot, user: str, password: str, folder: str) -> list[tuple[bytes, ...]]:
    client = dovecot.imap_client(user, password)
    try:
        client.select_folder(folder, readonly=True)
        return list(client.get_flags(client.search()).values())
    finally:
        client.logout()


def _copy_user(dovecot: mailservers.Dovecot, raws: list[bytes], folder: str = "Bounces") -> tuple[str, str]:
    user, password = f"copy-{uuid.uuid4().hex[:10]}@example.org", uuid.uuid4().hex
    dovecot.add_user(user, password)
    dovecot.append_many(user, folder, raws)
    return user, password


# --- the real thing: Postfix bounces in the sender's INBOX -------------------------------------


def test_postfix_bounces_are_recorded_with_kinds_campaigns_and_suppressed_at_threshold_2(
    sent: Sent, dovecot: mailservers.Dovecot, nk_db: Any
) -> None:
    store = open_store(nk_db)
    _ledger(store, sent)
    settings = _settings(dovecot, sent.sender, threshold=2)

    report = _fetch(store, settings, sent.password)

    assert report.to_dict() == {"fetched": 6, "bounces": {"hard": 4, "soft": 2}, "unmatched": 0, "suppressed": sent.bounced}
    rows = _bounce_rows(store)
    expected = []
    for campaign in CAMPAIGNS:
        expected += [(sent.fault, "hard", "5.1.1", campaign, 1), (sent.full, "soft", "5.2.2", campaign, 1),
                     (sent.unknown, "hard", "5.1.1", campaign, 1)]
    assert rows == sorted(expected, key=lambda r: (r[3], r[0]))
    # Each bounce points at the ledger row of the message it is about.
    linked = store.conn.execute(
        "SELECT count(*) FROM bounces b JOIN deliveries d ON d.id = b.delivery_id"
        " AND d.email = b.email AND d.message_id = b.original_message_id").fetchone()[0]
    assert linked == 6
    assert sent.ok not in {r[0] for r in rows}
    # Suppressed is not unsubscribed.
    assert store.conn.execute("SELECT count(*) FROM unsubscribes").fetchone()[0] == 0
    # Read-only, BODY.PEEK[]: nothing marked \Seen.
    assert all(b"\\Seen" not in flags for flags in _flags(dovecot, sent.sender, sent.password, "INBOX"))

    again = _fetch(store, settings, sent.password)
    assert again.to_dict() == {"fetched": 0, "bounces": {}, "unmatched": 0, "suppressed": []}
    assert len(_bounce_rows(store)) == 6


def test_threshold_1_suppresses_after_the_first_campaign_and_threshold_2_after_the_second(
    sent: Sent, dovecot: mailservers.Dovecot, nk_db: Any, tmp_path: Any
) -> None:
    user, password = _copy_user(dovecot, sent.bounces_of("nov"))
    one = open_store(nk_db)
    two = open_store(tmp_path / "two.db")
    for store in (one, two):
        _ledger(store, sent)
    s1 = _settings(dovecot, user, threshold=1, folder="Bounces")
    s2 = _settings(dovecot, user, threshold=2, folder="Bounces")

    assert _fetch(one, s1, password).suppressed == sent.bounced
    assert _fetch(two, s2, password).suppressed == []

    dovecot.append_many(user, "Bounces", sent.bounces_of("dec"))
    assert _fetch(one, s1, password).suppressed == []  # already suppressed
    report = _fetch(two, s2, password)
    assert report.fetched == 3 and sorted(report.suppressed) == sent.bounced
    evidence = {row["address"]: row for row in list_suppressions(two)}
    assert evidence[sent.full]["bounces"] == 2
    assert [e["campaign"] for e in evidence[sent.full]["evidence"]] == ["nov", "dec"]
    assert {e["status"] for e in evidence[sent.unknown]["evidence"]} == {"5.1.1"}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_connection_killed_mid_fetch_then_a_rerun_counts_nothing_twice_and_loses_nothing(
    sent: Sent, dovecot: mailservers.Dovecot, nk_db: Any, workers: int
) -> None:
    user, password = _copy_user(dovecot, sent.bounces)
    store = open_store(nk_db)
    _ledger(store, sent)
    settings = _settings(dovecot, user, threshold=2, folder="Bounces")

    class Killing(imapclient.IMAPClient):
        body_fetches = 0

        def fetch(self, messages: Any, data: Any, modifiers: Any = None) -> Any:
            if any(str(d).startswith("BODY.PEEK[]") for d in data):  # also BODY.PEEK[]<0.N>
                Killing.body_fetches += 1
                if Killing.body_fetches == 2:
                    self.socket().shutdown(socket.SHUT_RDWR)  # the network goes away
            return super().fetch(messages, data, modifiers)

    with pytest.raises(MailboxError, match="run the fetch again"):
        _fetch(store, settings, password, imap_factory=Killing, batch_size=2, workers=workers)
    assert store.conn.execute("SELECT count(*) FROM mailbox_messages").fetchone()[0] == 2
    state = store.conn.execute("SELECT last_uid FROM mailbox_state").fetchone()
    assert state == (2,)

    report = _fetch(store, settings, password, batch_size=2, workers=workers)
    assert report.fetched == 4
    assert store.conn.execute("SELECT count(*) FROM mailbox_messages").fetchone()[0] == 6
    assert len(_bounce_rows(store)) == 6
    assert sorted(s["address"] for s in list_suppressions(store)) == sent.bounced


def test_a_failure_inside_a_batch_rolls_the_whole_batch_back(
    sent: Sent, dovecot: mailservers.Dovecot, nk_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = _copy_user(dovecot, sent.bounces)
    store = open_store(nk_db)
    settings = _settings(dovecot, user, threshold=1, folder="Bounces")
    real = nk_bounces.record_report
    calls = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 4:  # second message of the second batch
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(nk_bounces, "record_report", failing)
    with pytest.raises(RuntimeError):
        _fetch(store, settings, password, batch_size=2)
    assert store.conn.execute("SELECT count(*) FROM mailbox_messages").fetchone()[0] == 2
    assert store.conn.execute("SELECT count(*) FROM bounces").fetchone()[0] == 2
    assert store.conn.execute("SELECT last_uid FROM mailbox_state").fetchone() == (2,)

    monkeypatch.setattr(nk_bounces, "record_report", real)
    assert _fetch(store, settings, password, batch_size=2).fetched == 4
    assert store.conn.execute("SELECT count(*) FROM bounces").fetchone()[0] == 6


def test_a_recreated_folder_new_uidvalidity_is_rescanned_without_double_counting(
    sent: Sent, dovecot: mailservers.Dovecot, nk_db: Any
) -> None:
    user, password = _copy_user(dovecot, sent.bounces_of("nov"))
    store = open_store(nk_db)
    _ledger(store, sent)  # only bounces of our deliveries count
    settings = _settings(dovecot, user, threshold=2, folder="Bounces")
    assert _fetch(store, settings, password).fetched == 3
    before = store.conn.execute("SELECT uidvalidity FROM mailbox_state").fetchone()[0]

    client = dovecot.imap_client(user, password)
    client.delete_folder("Bounces")
    client.create_folder("Bounces")
    for raw in sent.bounces_of("nov"):
        client.append("Bounces", raw)
    client.logout()

    report = _fetch(store, settings, password)
    assert (report.fetched, report.duplicates) == (0, 3)
    after = store.conn.execute("SELECT uidvalidity, last_uid FROM mailbox_state").fetchone()
    assert after[0] != before and after[1] == 3
    assert store.conn.execute("SELECT count(*) FROM bounces").fetchone()[0] == 3
    assert list_suppressions(store) == []

    dovecot.append_many(user, "Bounces", sent.bounces_of("dec"))
    report = _fetch(store, settings, password)
    assert report.fetched == 3 and sorted(report.suppressed) == sent.bounced


def test_a_run_that_overlaps_another_records_nothing_twice(
    sent: Sent, dovecot: mailservers.Dovecot, nk_db: Any
) -> None:
    user, password = _copy_user(dovecot, sent.bounces_of("nov"))
    store = open_store(nk_db)
    settings = _settings(dovecot, user, threshold=2, folder="Bounces")
    assert _fetch(store, settings, password).fetched == 3
    # A second run that read mailbox_state before the first one committed starts from 0.
    with store.transaction():
        store.conn.execute("UPDATE mailbox_state SET last_uid = 0")

    report = _fetch(store, settings, password)
    assert (report.fetched, report.duplicates) == (0, 3)
    assert store.conn.execute("SELECT count(*) FROM mailbox_messages").fetchone()[0] == 3
    assert store.conn.execute("SELECT last_uid FROM mailbox_state").fetchone() == (3,)


def test_the_same_report_twice_in_the_folder_counts_once(
    sent: Sent, dovecot: mailservers.Dovecot, nk_db: Any
) -> None:
    raw = sent.bounces_of("nov")[0]
    user, password = _copy_user(dovecot, [raw, raw])
    store = open_store(nk_db)
    report = _fetch(store, _settings(dovecot, user, threshold=2, folder="Bounces"), password)
    assert (report.fetched, report.duplicates) == (1, 1)
    assert store.conn.execute("SELECT count(*) FROM bounces").fetchone()[0] == 1


def test_processed_messages_are_moved_and_nothing_else_is_touched(
    sent: Sent, dovecot: mailservers.Dovecot, nk_db: Any
) -> None:
    user, password = _copy_user(dovecot, sent.bounces_of("nov"))
    store = open_store(nk_db)
    settings = _settings(dovecot, user, threshold=1, folder="Bounces", processed_folder="Bounces/Done")

    report = _fetch(store, settings, password)
    assert (report.fetched, report.moved) == (3, 3)
    assert dovecot.message_count(user, "Bounces") == 0
    assert dovecot.message_count(user, "Bounces/Done") == 3
    assert all(b"\\Seen" not in f for f in _flags(dovecot, user, password, "Bounces/Done"))

    dovecot.append_many(user, "Bounces", sent.bounces_of("dec"))
    report = _fetch(store, settings, password)
    assert (report.fetched, report.moved) == (3, 3)
    assert dovecot.message_count(user, "Bounces/Done") == 6
    assert _fetch(store, settings, password).fetched == 0


def test_a_message_over_the_size_cap_is_skipped_left_in_place_and_the_run_goes_on(
    sent: Sent, dovecot: mailservers.Dovecot, nk_db: Any
) -> None:
    """Issue 16, finding 7, on a real Dovecot: a 2 MB report (its first bytes only are fetched)
    is skipped with its UID and stays in the folder; the others are recorded and moved."""
    big = sent.bounces_of("nov")[0].replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"y" * 900 + b"\r\n\r\n", 1)
    big += b"\r\n" + (b"z" * 998 + b"\r\n") * 2100
    user, password = _copy_user(dovecot, [*sent.bounces_of("nov")[1:], big, *sent.bounces_of("dec")])
    store = open_store(nk_db)
    settings = _settings(dovecot, user, threshold=1, folder="Bounces", processed_folder="Bounces/Done")

    report = _fetch(store, settings, password, max_message_bytes=1024 * 1024)

    [skipped] = report.skipped
    assert skipped.uid == 3 and skipped.size >= len(big)       # RFC822.SIZE as Dovecot stores it
    assert (report.fetched, report.moved) == (5, 5)
    assert dovecot.message_count(user, "Bounces") == 1           # the skipped one, untouched
    assert _fetch(store, settings, password, max_message_bytes=1024 * 1024).skipped == []


def test_without_move_processed_messages_are_only_copied(
    sent: Sent, dovecot: mailservers.Dovecot, nk_db: Any
) -> None:
    user, password = _copy_user(dovecot, sent.bounces_of("nov"))
    store = open_store(nk_db)
    settings = _settings(dovecot, user, threshold=1, folder="Bounces", processed_folder="Seen-Bounces")

    class NoMove(imapclient.IMAPClient):
        def has_capability(self, capability: str) -> bool:
            return capability.upper() != "MOVE" and super().has_capability(capability)

    assert _fetch(store, settings, password, imap_factory=NoMove).moved == 3
    assert _fetch(store, settings, password, imap_factory=NoMove).moved == 0
    # Nothing is expunged without MOVE: the originals stay, one copy each.
    assert dovecot.message_count(user, "Bounces") == 3
    assert dovecot.message_count(user, "Seen-Bounces") == 3


def test_a_missing_folder_is_a_clear_error(sent: Sent, dovecot: mailservers.Dovecot, nk_db: Any) -> None:
    store = open_store(nk_db)
    with pytest.raises(MailboxError, match="'Nope' not found.*INBOX"):
        _fetch(store, _settings(dovecot, sent.sender, folder="Nope"), sent.password)


def test_imap_source_names_user_host_and_folder() -> None:
    settings = BounceSettings(host="mail.example.org", port=993, user="b@example.org", threshold=3,
                              folder="Bounces")
    assert imap_source(settings) == "imap:b@example.org@mail.example.org/Bounces"


# --- the whole loop: send_campaign through Postfix, bounces and a mailto opt-out come back -----


def _mailto_subject(raw: bytes) -> str:
    """The subject a mail client puts in a reply to the List-Unsubscribe mailto."""
    import email as std_email
    from urllib.parse import parse_qs, unquote, urlsplit

    header = str(std_email.message_from_bytes(raw)["List-Unsubscribe"])
    mailto = next(part.strip(" <>\r\n\t") for part in header.split(",") if "mailto:" in part)
    return unquote(parse_qs(urlsplit(mailto).query)["subject"][0])


def test_send_campaign_through_postfix_then_fetch_suppresses_and_honours_mailto_unsubscribes(
    dovecot: mailservers.Dovecot, postfix: mailservers.Postfix, mailbox_user: Any, nk_db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    campaigns = pytest.importorskip("newsletter_kit.campaigns")
    from newsletter_kit.audience import add_contacts, eligible_recipients
    from newsletter_kit.settings import update_bounce_settings, update_smtp_settings

    sender, password = mailbox_user(prefix="bounces")
    ok, ok_password = mailbox_user(prefix="reader")
    full, _ = mailbox_user(prefix="full", quota=True)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.org"
    fault = f"gone-{uuid.uuid4().hex[:8]}@{mailservers.FAULT_HARD_DOMAIN}"
    monkeypatch.setenv("NK_TEST_BOUNCE_PW", password)
    store = open_store(nk_db)
    update_smtp_settings(store, host="127.0.0.1", port=postfix.port, tls="none", auth=False,
                         daily_limit=100, from_addr=sender)
    update_bounce_settings(store, host="localhost", port=dovecot.imap_port, user=sender, threshold=1,
                           password_ref="env:NK_TEST_BOUNCE_PW", ca_file=dovecot.ca_file)
    add_contacts(store, [{"email": a} for a in (ok, unknown, fault, full)])
    campaigns.create_campaign(store, "nov", "all", "November news", "<p>Hello</p>")

    sent_report = campaigns.send_campaign(store, "nov")
    assert sent_report.sent == 4  # Postfix accepts all; failures come back as DSNs
    postfix.wait_for_messages(sender, 3, timeout=60)

    report = fetch_bounces(store)
    assert report.to_dict() == {"fetched": 3, "bounces": {"hard": 2, "soft": 1}, "unmatched": 0,
                                "suppressed": sorted([unknown, fault, full])}
    rows = store.conn.execute(
        "SELECT b.email, b.campaign, d.email FROM bounces b JOIN deliveries d ON d.id = b.delivery_id"
        " ORDER BY b.email").fetchall()
    assert rows == [(a, "nov", a) for a in sorted([unknown, fault, full])]
    # Suppressed addresses drop out of every later audience.
    campaigns.create_campaign(store, "dec", "all", "December news", "<p>Hello again</p>")
    assert [r.email for r in eligible_recipients(store, "dec")] == [ok]

    # The reader answers the List-Unsubscribe mailto; someone else forges a token.
    [newsletter] = dovecot.read_messages(ok)
    subject = _mailto_subject(newsletter)
    forged = subject[:-4] + ("AAAA" if not subject.endswith("AAAA") else "BBBB")
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as smtp:
        for text in (subject, forged):
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = ok, sender, text
            msg["Message-ID"] = email.utils.make_msgid(domain="example.org")
            msg.set_content("Please unsubscribe me.\n")
            smtp.send_message(msg)
    postfix.wait_for_messages(sender, 5, timeout=60)

    report = fetch_bounces(store)
    assert report.bounces == {"unsubscribe": 1, "other": 1}
    assert report.unsubscribed == [(ok, "nov")]
    assert store.conn.execute("SELECT email, campaign, source FROM unsubscribes").fetchall() == [(ok, "nov", "mailto")]
    assert fetch_bounces(store).fetched == 0


def test_cli_bounces_fetch_reads_the_configured_mailbox(
    sent: Sent, dovecot: mailservers.Dovecot, nk_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from newsletter_kit.cli import cli
    from newsletter_kit.settings import update_bounce_settings

    user, password = _copy_user(dovecot, sent.bounces_of("nov"))
    store = open_store(nk_db)
    update_bounce_settings(store, host="localhost", port=dovecot.imap_port, user=user, threshold=1,
                           password_ref="env:NK_TEST_CLI_PW", ca_file=dovecot.ca_file, folder="Bounces")
    _ledger(store, sent, ("nov",))  # only bounces of our deliveries count
    store.close()
    runner = CliRunner()

    monkeypatch.setenv("NK_TEST_CLI_PW", "wrong")
    result = runner.invoke(cli, ["bounces", "fetch", "--json"])
    assert result.exit_code == 1 and "refused the user name or password" in result.stderr
    assert result.stdout == "" and "wrong" not in result.stderr

    monkeypatch.setenv("NK_TEST_CLI_PW", password)
    result = runner.invoke(cli, ["bounces", "fetch", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"fetched": 3, "bounces": {"hard": 2, "soft": 1}, "unmatched": 0,
                                         "suppressed": sent.bounced}
    result = runner.invoke(cli, ["bounces", "fetch"])
    assert result.exit_code == 0 and "fetched 0 new message(s)" in result.stderr
