"""Issue 15: separate policies for hard, soft and complaints, and failures about the sender that
never count against the recipient.  Notices are built in code (tests/dsn.py) and read from a
folder of files, from a real Dovecot over IMAP, and through the command line."""
from __future__ import annotations

import datetime as dt
import email.utils
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter_kit import review
from newsletter_kit import suppressions as nk
from newsletter_kit.bounces import record_smtp_rejection
from newsletter_kit.cli import cli
from newsletter_kit.ingest import fetch_bounces
from newsletter_kit.settings import BounceSettings, load_bounce_settings, update_bounce_settings
from newsletter_kit.store import Store, open_store
from tests import mailservers
from tests.bouncing import fetch_raws, write_eml
from tests.dsn import our_message_id, postfix_dsn, sent_to


@pytest.fixture
def store(nk_db: Path) -> Store:
    return open_store(nk_db)


def _days_ago(days: float) -> str:
    return email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days))


def per_kind(store: Store, **more: Any) -> BounceSettings:
    """Bounce settings with per-kind thresholds (a mailbox that is never contacted)."""
    settings, _ = update_bounce_settings(store, host="imap.example.org", port=993, tls="ssl",
                                         user="bounces@example.org", password_ref="env:NK_UNUSED",
                                         **{"hard_threshold": 1, "soft_threshold": 3, **more})
    return settings


def soft(address: str, **kw: Any) -> bytes:
    return postfix_dsn(address, status="5.2.2", **kw)


def complaint(address: str, campaign: str = "nov") -> bytes:
    """An ARF feedback report about our message to ``address``, as a mailbox provider sends it."""
    sample = (Path(__file__).parent / "bounce_samples" / "arf_complaint.eml").read_text()
    return (sample.replace("Sara.Blu@mailbox-example.com", address)
            .replace("autumn-2026", campaign)
            .replace("<fbl.8812.20261125@fbl.mailbox-example.com>", f"<{uuid.uuid4().hex}@fbl.example.com>")
            # our Message-ID of that very delivery: what makes it a report about it (issue 16)
            .replace("<20261125075759.c42.r70@news.example.org>", our_message_id(address, campaign))
            .replace("\n", "\r\n").encode())


#: Notices about *us*, each at a status code that would otherwise count: (status, diagnostic, reason).
ABOUT_US = [
    ("5.1.1", "550 5.1.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org", "blocked"),
    ("5.7.1", "554 5.7.1 <{rcpt}>: Message rejected as spam", "spam_detected"),
    ("5.1.8", "553 5.1.8 <bounces@example.org>: Sender address rejected: Domain not found", "sender_rejected"),
    ("5.7.26", "550 5.7.26 Unauthenticated email from example.org is not accepted due to domain's DMARC policy",
     "auth_failure"),
    ("5.2.2", "552 5.2.2 Message content rejected due to our content filter", "content_rejected"),
    ("4.7.1", "450 4.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.10]", "no_ptr"),
]


def about_us(address: str, status: str, diagnostic: str) -> bytes:
    return postfix_dsn(address, status=status, diagnostic=diagnostic.format(rcpt=address))


# --- hard, soft within the window, complaints -----------------------------------------------------


def test_one_hard_bounce_suppresses_soft_ones_at_the_third_within_the_window(store: Store, tmp_path: Path) -> None:
    settings = per_kind(store)
    assert settings.policy.per_kind and settings.policy.describe() == "hard 1, soft 3 within 30 days, complaint at once"
    sent_to(store, "gone@example.org", "full@example.org", "late@example.org")

    assert fetch_raws(store, settings, tmp_path, [postfix_dsn("gone@example.org")]).suppressed == ["gone@example.org"]
    # Two soft bounces do not suppress; a third within the window does.
    assert fetch_raws(store, settings, tmp_path, [soft("full@example.org"), soft("full@example.org")]).suppressed == []
    assert fetch_raws(store, settings, tmp_path, [soft("full@example.org")]).suppressed == ["full@example.org"]
    # Two soft bounces 40 days ago and one now: only one is within the 30 days.
    old = [soft("late@example.org", date=_days_ago(40)), soft("late@example.org", date=_days_ago(41))]
    assert fetch_raws(store, settings, tmp_path, old).suppressed == []
    assert fetch_raws(store, settings, tmp_path, [soft("late@example.org")]).suppressed == []
    counts = review.policy_counts(store).set_index("email")
    assert (counts.loc["late@example.org", "soft"], counts.loc["late@example.org", "soft_all"]) == (1, 3)
    # A wider window (saved) reaches three.
    settings = per_kind(store, soft_window_days=60)
    assert nk.apply_threshold(store) == ["late@example.org"]

    found = {row["address"]: row for row in nk.list_suppressions(store)}
    assert found["gone@example.org"]["bounces"] == 1
    assert [e["counted_as"] for e in found["full@example.org"]["evidence"]] == ["soft"] * 3
    assert {e["reason"] for e in found["full@example.org"]["evidence"]} == {"mailbox_full"}
    # Suppressed is never unsubscribed.
    assert store.conn.execute("SELECT count(*) FROM unsubscribes").fetchone()[0] == 0


def test_the_soft_threshold_and_window_are_settings(store: Store, tmp_path: Path) -> None:
    settings = per_kind(store, soft_threshold=2, soft_window_days=7)
    sent_to(store, "s@example.org", "t@example.org")
    assert fetch_raws(store, settings, tmp_path, [soft("s@example.org", date=_days_ago(10)),
                                                  soft("s@example.org")]).suppressed == []
    assert fetch_raws(store, settings, tmp_path, [soft("t@example.org", date=_days_ago(3)),
                                                  soft("t@example.org")]).suppressed == ["t@example.org"]


def test_a_complaint_suppresses_at_once_unless_switched_off(store: Store, tmp_path: Path) -> None:
    settings = per_kind(store)
    sent_to(store, "angry@example.org", "calm@example.org")
    report = fetch_raws(store, settings, tmp_path, [complaint("angry@example.org")])
    assert report.to_dict()["bounces"] == {"complaint": 1} and report.suppressed == ["angry@example.org"]
    [row] = nk.list_suppressions(store)
    assert row["reason"] == "complaint" and row["evidence"][0]["reason"] == "feedback"

    settings = per_kind(store, suppress_on_complaint=False)
    assert fetch_raws(store, settings, tmp_path, [complaint("calm@example.org")]).suppressed == []
    assert store.conn.execute("SELECT reason FROM bounces WHERE email = 'calm@example.org'").fetchone() == ("feedback",)


def test_the_single_threshold_keeps_its_meaning_when_no_per_kind_one_is_set(store: Store, tmp_path: Path) -> None:
    settings, _ = update_bounce_settings(store, host="imap.example.org", port=993, tls="ssl",
                                         user="bounces@example.org", password_ref="env:NK_UNUSED", threshold=2)
    assert not settings.policy.per_kind
    sent_to(store, "mixed@example.org", "hard@example.org")
    # One hard and one soft reach the single threshold 2 together; one hard alone does not.
    assert fetch_raws(store, settings, tmp_path, [postfix_dsn("hard@example.org")]).suppressed == []
    assert fetch_raws(store, settings, tmp_path, [postfix_dsn("mixed@example.org"),
                                                  soft("mixed@example.org")]).suppressed == ["mixed@example.org"]
    # Setting a per-kind threshold switches to per-kind counting: one hard bounce is enough.
    settings, _ = update_bounce_settings(store, hard_threshold=1)
    assert settings.policy.per_kind and nk.apply_threshold(store) == ["hard@example.org"]


# --- failures about us ------------------------------------------------------------------------------


@pytest.mark.parametrize("status, diagnostic, reason", ABOUT_US, ids=[r for _, _, r in ABOUT_US])
def test_a_failure_about_us_never_counts_at_any_code(store: Store, tmp_path: Path, status: str, diagnostic: str,
                                                     reason: str) -> None:
    settings = per_kind(store, soft_threshold=1, count_policy=True)  # as strict as it gets
    sent_to(store, "reader@example.org")
    raws = [about_us("reader@example.org", status, diagnostic) for _ in range(3)]
    assert fetch_raws(store, settings, tmp_path, raws).suppressed == []
    assert store.conn.execute("SELECT DISTINCT reason FROM bounces").fetchall() == [(reason,)]
    assert nk.bounce_counts(store, count_policy=True) == {}
    assert nk.apply_threshold(store, nk.ThresholdPolicy(1, count_policy=True)) == []
    assert review.policy_counts(store).empty and review.threshold_counts(store, count_policy=True).empty
    # The review shows it as the analyst's problem, with its remedy.
    problems = review.sender_problems(store)
    assert problems["reason"].tolist() == [reason]
    assert problems.loc[0, "count"] == 3 and problems.loc[0, "campaigns"] == "nov"
    assert problems.loc[0, "remedy"] and pd_timestamp(problems.loc[0, "last_seen"])
    listed = review.bounce_list(store, side="sender")
    assert set(listed["reason"]) == {reason} and set(listed["side"]) == {"sender"}
    assert review.bounce_list(store, side="recipient").empty
    assert review.bounces_by_status(store, reason=reason)["total"].sum() == 3


def pd_timestamp(value: Any) -> bool:
    return value is not None and str(value) != "NaT"


def test_about_us_among_real_failures_leaves_their_counts_unchanged(store: Store, tmp_path: Path) -> None:
    settings = per_kind(store)
    sent_to(store, "a@example.org", "b@example.org")
    blocked = ABOUT_US[0]
    fetch_raws(store, settings, tmp_path, [soft("a@example.org"), about_us("a@example.org", *blocked[:2]),
                                           about_us("b@example.org", *blocked[:2])])
    before = nk.bounce_counts(store)
    assert before == {"a@example.org": 1}
    fetch_raws(store, settings, tmp_path, [about_us("a@example.org", *blocked[:2]) for _ in range(5)])
    assert nk.bounce_counts(store) == before
    by_reason = review.bounces_by_reason(store).set_index("reason")
    assert by_reason.loc["blocked", "side"] == "sender" and by_reason.loc["blocked", "count"] == 7
    assert by_reason.loc["mailbox_full", "side"] == "recipient"
    latest = review.bounce_list(store, limit=None).drop_duplicates("email").set_index("email")
    assert latest.loc["b@example.org", "reason"] == "blocked" and latest.loc["b@example.org", "side"] == "sender"


def test_a_refusal_about_us_seen_while_sending_counts_for_nobody(store: Store) -> None:
    settings = per_kind(store)
    sent_to(store, "x@example.org")
    assert record_smtp_rejection(
        store, email="x@example.org", campaign="nov", delivery_id=None, code=550, status="5.1.1",
        reply="550 5.1.1 Service unavailable; client [192.0.2.10] blocked using Spamhaus", settings=settings) == []
    assert store.conn.execute("SELECT kind, reason FROM bounces").fetchone()[1] == "blocked"
    assert record_smtp_rejection(store, email="x@example.org", campaign="nov", delivery_id=None, code=550,
                                 status="5.1.1", reply="550 5.1.1 <x@example.org>: Recipient address rejected: "
                                 "User unknown in virtual mailbox table", settings=settings) == []  # same key: once
    assert record_smtp_rejection(store, email="x@example.org", campaign="dec", delivery_id=None, code=550,
                                 status="5.1.1", reply="550 5.1.1 <x@example.org>: Recipient address rejected: "
                                 "User unknown in virtual mailbox table", settings=settings) == ["x@example.org"]


# --- through a real Dovecot -------------------------------------------------------------------------


def test_end_to_end_through_dovecot(dovecot: mailservers.Dovecot, nk_db: Path) -> None:
    store = open_store(nk_db)
    tag = uuid.uuid4().hex[:8]
    user, password = f"policy-{tag}@example.org", f"pw-{tag}"
    dovecot.add_user(user, password)
    hard, full, listed, angry = (f"{p}-{tag}@example.org" for p in ("hard", "full", "listed", "angry"))
    sent_to(store, hard, full, listed, angry)
    blocked = ABOUT_US[0]
    dovecot.append_many(user, "INBOX", [
        postfix_dsn(hard), soft(full), soft(full), complaint(angry),
        *[about_us(listed, *blocked[:2]) for _ in range(3)],
    ])
    settings = BounceSettings(host="localhost", port=dovecot.imap_port, user=user, ca_file=dovecot.ca_file,
                              password_ref="env:NK_TEST_UNUSED", hard_threshold=1, soft_threshold=3)
    settings.validate()

    report = fetch_bounces(store, settings, password=password)
    assert report.fetched == 7 and sorted(report.suppressed) == sorted([hard, angry])
    dovecot.append_many(user, "INBOX", [soft(full)])  # the third soft bounce, within the window
    assert fetch_bounces(store, settings, password=password).suppressed == [full]
    assert listed not in nk.bounce_counts(store)
    problems = review.sender_problems(store)
    assert problems["reason"].tolist() == ["blocked"] and "blocklist" in problems.loc[0, "remedy"]


# --- the command line ---------------------------------------------------------------------------------


def test_cli_per_kind_flags_show_and_fetch(store: Store, tmp_path: Path, nk_db: Path) -> None:
    runner = CliRunner()
    base = ["settings", "bounce", "--host", "imap.example.org", "--port", "993", "--tls", "ssl",
            "--user", "bounces@example.org", "--password-env", "NK_UNUSED"]
    result = runner.invoke(cli, [*base, "--hard-threshold", "1", "--soft-threshold", "3"])
    assert result.exit_code == 0, result.output
    assert "hard 1, soft 3 within 30 days, complaint at once" in result.stderr
    shown = json.loads(runner.invoke(cli, ["settings", "show", "--json"]).stdout)["bounce"]
    assert (shown["hard-threshold"], shown["soft-threshold"], shown["soft-window-days"],
            shown["suppress-on-complaint"], shown["threshold"]) == (1, 3, None, True, None)
    text = runner.invoke(cli, ["settings", "show"]).stdout
    assert "soft-window-days" in text and "suppress-on-complaint" in text

    for flag, value, said in (("--soft-threshold", "0", "the soft-bounce threshold must be at least 1"),
                              ("--hard-threshold", "two", "must be a whole number"),
                              ("--soft-window-days", "-3", "window")):
        result = runner.invoke(cli, ["settings", "bounce", flag, value])
        assert result.exit_code != 0 and said in result.stderr and "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1
    assert load_bounce_settings(store).soft_threshold == 3  # a refused change loses nothing

    sent_to(store, "gone@example.org", "full@example.org", "spam@example.org", "angry@example.org")
    folder = write_eml(tmp_path / "eml", [postfix_dsn("gone@example.org"), soft("full@example.org"),
                                          soft("full@example.org"), complaint("angry@example.org"),
                                          about_us("spam@example.org", *ABOUT_US[1][:2])])
    result = runner.invoke(cli, ["bounces", "fetch", "--from", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["suppressed"] == ["angry@example.org", "gone@example.org"]

    result = runner.invoke(cli, ["settings", "bounce", "--soft-threshold", "2", "--no-suppress-on-complaint"])
    assert result.exit_code == 0 and "hard 1, soft 2 within 30 days, complaints not counted" in result.stderr
    saved = load_bounce_settings(store)
    assert (saved.soft_threshold, saved.suppress_on_complaint) == (2, False)
    # Clearing both per-kind thresholds with a single one set goes back to the old way.
    result = runner.invoke(cli, ["settings", "bounce", "--threshold", "4", "--hard-threshold", "",
                                 "--soft-threshold", ""])
    assert result.exit_code == 0 and "threshold 4 (hard and soft together)" in result.stderr


# --- the store ------------------------------------------------------------------------------------------


def test_the_migration_backfills_reasons_from_what_is_stored(tmp_path: Path) -> None:
    from newsletter_kit import store as store_mod

    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path)
    for version in range(3):
        store_mod._MIGRATIONS[version](conn)
    conn.execute("PRAGMA user_version = 3")
    rows = [("blocked@example.org", "hard", "5.1.1", "550 5.1.1 client host blocked using zen.spamhaus.org"),
            ("gone@example.org", "hard", "5.1.1", "550 5.1.1 <gone@example.org>: User unknown"),
            ("full@example.org", "soft", "5.2.2", "552 5.2.2 Quota exceeded (mailbox for user is full)"),
            ("angry@example.org", "complaint", None, None)]
    for n, (address, kind, status, diagnostic) in enumerate(rows):
        conn.execute("INSERT INTO bounces (email, kind, status, diagnostic, report_key, source, bounced_at,"
                     " recorded_at) VALUES (?, ?, ?, ?, ?, 'imap', '2026-11-01T00:00:00+00:00',"
                     " '2026-11-01T00:00:00+00:00')", (address, kind, status, diagnostic, f"r{n}"))
    conn.commit()
    conn.close()

    store = open_store(path)
    assert store.schema_version() == store_mod.SCHEMA_VERSION
    assert dict(store.conn.execute("SELECT email, reason FROM bounces")) == {
        "blocked@example.org": "blocked", "gone@example.org": "user_unknown",
        "full@example.org": "mailbox_full", "angry@example.org": "feedback"}
    assert nk.bounce_counts(store) == {"full@example.org": 1, "gone@example.org": 1}
    plan = " ".join(str(r) for r in store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT count(*) FROM bounces WHERE email = ? AND reason = ? AND bounced_at > ?",
        ("a@example.org", "mailbox_full", "2026-01-01")))
    assert "bounces_email_reason" in plan
