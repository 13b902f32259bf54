"""The send path against real SMTP servers on 127.0.0.1: ledger, quota, replies, crashes.

aiosmtpd (tests/mailservers.py) records every envelope and fails on cue by the recipient's
local part; Postfix delivers to Dovecot mailboxes. Nothing here looks at wall-clock times.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import smtplib
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from newsletter_kit import campaigns, quota
from newsletter_kit.audience import add_contacts, add_unsubscribe
from newsletter_kit.errors import AuthenticationFailed, CampaignError, TemplateError
from newsletter_kit.settings import update_smtp_settings
from newsletter_kit.store import open_store
from newsletter_kit.suppressions import suppress
from tests.sending import (BOUNCE_ADDRESS, PASSWORD_ENV, addresses, configure, contacts, ledger,
                           make_campaign, received)
from tests.sending import invoke as _invoke


@pytest.fixture
def store(nk_db):
    store = open_store(nk_db)
    yield store
    store.close()


# --- the happy path -----------------------------------------------------------------------


def test_every_recipient_gets_one_stamped_message_over_starttls_with_auth(
        store, smtp_server, test_ca, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    srv = smtp_server(tls="starttls", auth={"news": "s3cret"})
    configure(store, srv, tls="starttls", user="news", ca_file=test_ca.ca_file)
    emails = addresses(45)
    contacts(store, emails)
    make_campaign(store)

    report = campaigns.send_campaign(store, "spring")

    assert (report.sent, report.failed, report.pending, report.paused) == (45, 0, 0, None)
    assert received(srv) == Counter({e: 1 for e in emails})
    rows = ledger(store)
    for env in srv.messages:
        assert env.mail_from == BOUNCE_ADDRESS
        msg = email.message_from_bytes(env.content, policy=email.policy.default)
        rcpt = env.rcpt_tos[0]
        assert msg["To"] == rcpt
        assert msg["X-Newsletter-Campaign"] == "spring"
        assert "mailto:" in msg["List-Unsubscribe"] and "https://example.org/unsubscribe/" in msg["List-Unsubscribe"]
        assert msg["Message-ID"] == rows[rcpt][1]
        assert msg["Subject"] == f"Hello {rcpt.split('@')[0].title()}"
    assert {state for state, *_ in rows.values()} == {"sent"}
    assert campaigns.campaign_status(store, "spring") == {
        "total": 45, "sent": 45, "failed": 0, "excluded": 0, "pending": 0, "unknown": 0}
    assert quota.quota_status(store).used == 45
    assert campaigns.get_campaign(store, "spring").status == "done"
    # A second run finds nothing to do and sends nothing.
    again = campaigns.send_campaign(store, "spring")
    assert (again.attempted, len(srv.messages)) == (0, 45)


def test_implicit_tls_and_parallel_connections_send_each_recipient_once(
        store, smtp_server, test_ca, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    srv = smtp_server(tls="ssl", auth={"news": "pw"}, delay=0.005)
    configure(store, srv, tls="ssl", user="news", ca_file=test_ca.ca_file)
    emails = addresses(120)
    contacts(store, emails)
    make_campaign(store)

    report = campaigns.send_campaign(store, "spring", connections=4)

    assert (report.sent, report.pending) == (120, 0)
    assert received(srv) == Counter({e: 1 for e in emails})


def test_an_untrusted_certificate_fails_clearly_before_anything_is_marked(store, smtp_server, test_ca):
    srv = smtp_server(tls="starttls", ca=test_ca.untrusted)
    configure(store, srv, tls="starttls", ca_file=test_ca.ca_file)
    contacts(store, addresses(3))
    make_campaign(store)
    with pytest.raises(Exception, match="certificate is not trusted"):
        campaigns.send_campaign(store, "spring")
    assert {s for s, *_ in ledger(store).values()} == {"pending"}


def test_wrong_password_is_a_clear_error_and_nothing_is_marked_sent(store, smtp_server, test_ca, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    srv = smtp_server(tls="starttls", auth={"news": "right"})
    configure(store, srv, tls="starttls", user="news", ca_file=test_ca.ca_file)
    contacts(store, addresses(5))
    make_campaign(store)

    with pytest.raises(AuthenticationFailed, match="refused the user name or password"):
        campaigns.send_campaign(store, "spring")

    assert srv.messages == []
    assert {s for s, *_ in ledger(store).values()} == {"pending"}
    assert quota.quota_status(store).to_dict()["used"] == 0
    assert store.conn.execute("SELECT count(*) FROM quota_reservations").fetchone()[0] == 0
    # The CLI says it in one line, no traceback.
    result = _invoke(["campaign", "send", "spring"])
    assert result.returncode == 1
    assert "refused the user name or password" in result.stderr
    assert "Traceback" not in result.stderr


# --- the audience -------------------------------------------------------------------------


@pytest.mark.parametrize("policy, expected", [
    ("campaign", {"ann@example.org", "bob@example.org"}),
    ("global", {"ann@example.org"}),
])
def test_exclusion_policy(store, smtp_server, policy, expected):
    srv = smtp_server(tls="none")
    configure(store, srv, exclusion=policy)
    contacts(store, ["ann@example.org", "bob@example.org", "cid@example.org", "dan@example.org"])
    add_unsubscribe(store, "bob@example.org", campaign="autumn")   # another campaign
    add_unsubscribe(store, "cid@example.org", campaign="spring")   # this one
    suppress(store, "dan@example.org", reason="manual")
    make_campaign(store)

    report = campaigns.send_campaign(store, "spring")

    assert set(received(srv)) == expected
    rows = ledger(store)
    assert rows["cid@example.org"][0] == "excluded"
    assert rows["cid@example.org"][4] == "unsubscribed from this campaign"
    assert rows["dan@example.org"][0] == "excluded"
    assert "suppressed" in rows["dan@example.org"][4]
    if policy == "global":
        assert rows["bob@example.org"][0] == "excluded"
        assert "autumn" in rows["bob@example.org"][4]
    assert report.excluded == 4 - len(expected)


def test_the_audience_is_recomputed_at_every_run(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv)
    emails = addresses(6)
    contacts(store, emails)
    make_campaign(store)
    first = campaigns.send_campaign(store, "spring", limit=2)
    assert (first.sent, first.pending) == (2, 4)

    add_unsubscribe(store, emails[3])                     # opted out since the first run
    contacts(store, ["late@example.org"])                 # joined the list since

    second = campaigns.send_campaign(store, "spring")
    assert emails[3] not in received(srv)
    assert received(srv)["late@example.org"] == 1
    assert ledger(store)[emails[3]][0] == "excluded"
    assert ledger(store)[emails[3]][4] == "unsubscribed from all campaigns"
    assert (second.sent, second.excluded) == (4, 1)
    assert max(received(srv).values()) == 1


# --- quota, limit, stop, dry run ----------------------------------------------------------


def test_a_run_pauses_at_the_quota_and_the_next_run_resumes(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv, limit=4)
    emails = addresses(7)
    contacts(store, emails)
    make_campaign(store)

    first = campaigns.send_campaign(store, "spring")
    assert (first.sent, first.paused, first.pending) == (4, "quota", 3)
    assert first.resume_at == quota.quota_status(store).resets_at.isoformat()
    assert campaigns.get_campaign(store, "spring").status == "paused"

    blocked = campaigns.send_campaign(store, "spring")
    assert (blocked.attempted, blocked.paused) == (0, "quota")
    assert campaigns.forecast_finish(store, "spring") == quota.quota_status(store).day + dt.timedelta(days=1)

    update_smtp_settings(store, daily_limit=10)  # as if a new day had come
    last = campaigns.send_campaign(store, "spring")
    assert (last.sent, last.paused, last.pending) == (3, None, 0)
    assert received(srv) == Counter({e: 1 for e in emails})
    assert campaigns.forecast_finish(store, "spring") is None


def test_limit_caps_the_recipients_attempted_in_one_run(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv)
    contacts(store, addresses(30))
    make_campaign(store)
    report = campaigns.send_campaign(store, "spring", limit=25)
    assert (report.attempted, report.sent, report.pending, report.paused) == (25, 25, 5, None)
    assert len(srv.messages) == 25


def test_the_stop_event_ends_the_run_cleanly(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv)
    contacts(store, addresses(100))
    make_campaign(store)
    stop = threading.Event()
    calls = []

    def progress(done, total, report):
        calls.append((done, total))
        if done >= 20:
            stop.set()

    report = campaigns.send_campaign(store, "spring", progress=progress, stop_event=stop)
    assert report.paused == "stopped"
    assert calls[0] == (0, 100)
    assert report.sent == len(srv.messages) < 100
    states = Counter(s for s, *_ in ledger(store).values())
    assert states == Counter({"sent": report.sent, "pending": 100 - report.sent})


def test_dry_run_renders_everything_and_writes_nothing(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv, limit=5)
    contacts(store, addresses(8))
    add_unsubscribe(store, "reader000@example.org")
    make_campaign(store)
    dead = subprocess.run([sys.executable, "-c", "from newsletter_kit import quota; print(quota.new_owner())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    quota.reserve(store, 1, owner=dead)  # a crashed run's reservation: a real run would reclaim it
    store.signing_key()  # made on first use: a setting, not the ledger
    before = store.conn.execute("SELECT total_changes()").fetchone()[0]

    report = campaigns.send_campaign(store, "spring", dry_run=True)

    assert (report.dry_run, report.would_send, report.pending, report.excluded) == (True, 4, 7, 1)
    assert report.paused == "quota"
    assert srv.messages == []
    assert store.conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0
    assert store.conn.execute("SELECT used, reserved FROM quota_days").fetchall() == [(0, 1)]
    assert store.conn.execute("SELECT total_changes()").fetchone()[0] == before


# --- server replies -----------------------------------------------------------------------


def test_each_reply_puts_the_recipient_in_the_right_state(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv)
    order = ["ok1@example.org", "fail550.a@example.org", "soft451.b@example.org", "busy450.c@example.org",
             "full452.d@example.org", "ok2@example.org",
             "rcpt421.f@example.org", "ok3@example.org"]
    contacts(store, order)
    make_campaign(store)

    report = campaigns.send_campaign(store, "spring")

    rows = ledger(store)
    state = {e: rows[e][0] for e in order}
    assert state == {
        "ok1@example.org": "sent", "fail550.a@example.org": "failed", "soft451.b@example.org": "deferred",
        "busy450.c@example.org": "deferred", "full452.d@example.org": "deferred",
        "ok2@example.org": "sent",
        "rcpt421.f@example.org": "pending", "ok3@example.org": "pending"}
    assert rows["fail550.a@example.org"][2:4] == (550, "5.1.1")
    assert rows["full452.d@example.org"][2:4] == (452, "4.2.2")
    assert report.paused == "connection" and "421" in report.detail
    assert campaigns.campaign_status(store, "spring") == {
        "total": 8, "sent": 2, "failed": 1, "excluded": 0, "pending": 5, "unknown": 0}
    # 5xx refusals of a recipient at RCPT are bounces the threshold counts (threshold 1:
    # suppressed at once). A refusal of the message (5xx after DATA) is not: test_refusals.py.
    bounces = {r[0]: r[1:] for r in store.conn.execute(
        "SELECT email, kind, status, source, report_key FROM bounces")}
    assert bounces["fail550.a@example.org"][:3] == ("hard", "5.1.1", "smtp")
    assert bounces["fail550.a@example.org"][3].startswith("smtp:")
    assert "fail550.a@example.org" in report.suppressed
    assert set(received(srv)) == {"ok1@example.org", "ok2@example.org"}

    # The deferred are retried by a later run once their time has come; the 421 one is retried.
    store.conn.execute("UPDATE deliveries SET next_attempt_at = '2000-01-01T00:00:00+00:00' "
                       "WHERE state = 'deferred'")
    add_unsubscribe(store, "rcpt421.f@example.org")  # stop it from pausing every run
    second = campaigns.send_campaign(store, "spring")
    assert second.sent == 1 and second.deferred == 3
    assert received(srv) == Counter({"ok1@example.org": 1, "ok2@example.org": 1, "ok3@example.org": 1})
    assert ledger(store)["rcpt421.f@example.org"][0] == "excluded"


@pytest.mark.parametrize("cue, state", [
    # 421 is an answer: the message was refused, so it is sent again later.
    ("data421", "pending"),
    # A hang-up after the end of DATA, before any reply: the server may have taken the message,
    # so it is never sent again; the row is reported as unknown.
    ("drop", "unknown"),
])
def test_a_dropped_connection_pauses_the_run_and_loses_nobody(store, smtp_server, cue, state):
    srv = smtp_server(tls="none")
    configure(store, srv)
    order = ["ok1@example.org", f"{cue}.x@example.org", "ok2@example.org"]
    contacts(store, order)
    make_campaign(store)

    report = campaigns.send_campaign(store, "spring")

    assert report.paused == "connection"
    assert {e: s for e, (s, *_) in ledger(store).items()} == {
        "ok1@example.org": "sent", f"{cue}.x@example.org": state, "ok2@example.org": "pending"}
    resumed = campaigns.send_campaign(store, "spring")
    if state == "pending":
        # Sent again, refused again: the run pauses again and nobody else is lost.
        assert resumed.paused == "connection"
        add_unsubscribe(store, f"{cue}.x@example.org", campaign="spring")
        resumed = campaigns.send_campaign(store, "spring")
    assert (resumed.sent, resumed.paused, resumed.pending) == (1, None, 0)
    assert campaigns.campaign_status(store, "spring")["unknown"] == (1 if state == "unknown" else 0)
    assert received(srv) == Counter({"ok1@example.org": 1, "ok2@example.org": 1})


def test_a_run_stops_after_consecutive_failures(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv)
    contacts(store, [f"fail550.{i:02d}@example.org" for i in range(15)] + addresses(5))
    make_campaign(store)

    report = campaigns.send_campaign(store, "spring", max_consecutive_failures=10)

    assert report.paused == "failures"
    assert report.failed == 10
    assert srv.messages == []
    states = Counter(s for s, *_ in ledger(store).values())
    assert states == Counter({"failed": 10, "pending": 10})


class _DropsIdleConnection(smtplib.SMTP):
    """An SMTP client whose first connection died while idle (a server timeout), which a real
    server cannot be made to do on cue: the first MAIL FROM finds the socket closed."""

    dropped = 0

    def sendmail(self, *args, **kwargs):
        if _DropsIdleConnection.dropped == 0:
            _DropsIdleConnection.dropped += 1
            self.close()
        return super().sendmail(*args, **kwargs)


def test_a_connection_dropped_while_idle_is_reopened_transparently(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv)
    emails = addresses(5)
    contacts(store, emails)
    make_campaign(store)
    _DropsIdleConnection.dropped = 0

    report = campaigns.send_campaign(store, "spring", smtp_factory=_DropsIdleConnection)

    assert _DropsIdleConnection.dropped == 1
    assert (report.sent, report.paused) == (5, None)
    assert received(srv) == Counter({e: 1 for e in emails})


# --- bad input ----------------------------------------------------------------------------


def test_a_template_error_fails_before_anything_is_written(store):
    contacts(store, addresses(2))
    with pytest.raises(TemplateError):
        campaigns.create_campaign(store, "broken", "news", "Hi {{ first_name", "<p>x</p>")
    with pytest.raises(TemplateError):
        campaigns.create_campaign(store, "broken", "news", "Hi", "<p>{% if x %}</p>")
    assert store.conn.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0
    assert store.conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0


def test_unknown_campaign_list_or_duplicate_name_is_a_clear_error(store):
    contacts(store, addresses(1))
    with pytest.raises(CampaignError, match="no contact list named 'nope'"):
        campaigns.create_campaign(store, "x", "nope", "Hi", "<p>x</p>")
    make_campaign(store)
    with pytest.raises(CampaignError, match="already exists"):
        make_campaign(store)
    with pytest.raises(CampaignError, match="no campaign named 'autumn'"):
        campaigns.campaign_status(store, "autumn")
    with pytest.raises(CampaignError, match="no campaign named 'autumn'"):
        campaigns.send_campaign(store, "autumn")


# --- the command line ---------------------------------------------------------------------


def test_cli_create_send_status_quota(store, smtp_server, tmp_path):
    srv = smtp_server(tls="none")
    configure(store, srv, limit=3)
    contacts(store, addresses(5))
    html = tmp_path / "body.html"
    html.write_text("<p>Hi {{ first_name }}</p>", encoding="utf-8")
    bad = tmp_path / "bad.html"
    bad.write_text("<p>Hi {{ first_name </p>", encoding="utf-8")

    broken = _invoke(["campaign", "create", "x", "--list", "news", "--subject", "S", "--html", str(bad)])
    assert broken.returncode == 1 and broken.stderr.count("\n") == 1 and "Traceback" not in broken.stderr
    missing = _invoke(["campaign", "create", "x", "--list", "nope", "--subject", "S", "--html", str(html)])
    assert missing.returncode == 1 and "no contact list named 'nope'" in missing.stderr

    created = _invoke(["campaign", "create", "spring", "--list", "news", "--subject", "Hi {{ first_name }}",
                    "--html", str(html)])
    assert created.returncode == 0, created.stderr
    dry = _invoke(["campaign", "send", "spring", "--dry-run", "--json"])
    assert json.loads(dry.stdout)["would_send"] == 3 and srv.messages == []

    sent = _invoke(["campaign", "send", "spring", "--json"])
    assert sent.returncode == 0, sent.stderr
    doc = json.loads(sent.stdout)
    assert (doc["sent"], doc["paused"]) == (3, "quota")
    assert doc["resume_at"] in sent.stderr  # says when it can continue

    status = json.loads(_invoke(["campaign", "status", "spring", "--json"]).stdout)
    assert status == {"total": 5, "sent": 3, "failed": 0, "excluded": 0, "pending": 2, "unknown": 0}
    human = _invoke(["campaign", "status", "spring"])
    assert "finishes" in human.stdout
    q = json.loads(_invoke(["quota", "--json"]).stdout)
    assert set(q) == {"limit", "used", "remaining", "resets_at"}
    assert (q["limit"], q["used"], q["remaining"]) == (3, 3, 0)
    assert q["resets_at"].endswith(("+01:00", "+02:00"))  # Europe/Rome
    # Today's quota is used and 2 remain at 3 a day: the campaign finishes tomorrow.
    forecast = json.loads(_invoke(["quota", "--campaign", "spring", "--json"]).stdout)
    assert (forecast["campaign"], forecast["pending"]) == ("spring", 2)
    assert forecast["forecast_finish"] == q["resets_at"][:10]
    listing = _invoke(["campaign", "list"])
    assert listing.stdout.startswith("spring\tnews\tpaused\t3 sent")
    assert _invoke(["campaign", "status", "nope"]).returncode == 1


# --- Postfix ------------------------------------------------------------------------------


def test_postfix_delivers_one_message_to_each_mailbox_and_rejects_unknown_users(
        store, postfix, dovecot, mailbox_user):
    users = [mailbox_user()[0] for _ in range(4)]
    unknown_user = "nobody-here@example.org"

    class _Srv:
        port = postfix.reject_port

    configure(store, _Srv)
    contacts(store, users + [unknown_user])
    make_campaign(store)

    report = campaigns.send_campaign(store, "spring")

    assert (report.sent, report.failed) == (4, 1)
    rows = ledger(store)
    assert rows[unknown_user][0] == "failed" and rows[unknown_user][2] == 550
    assert store.conn.execute("SELECT kind FROM bounces WHERE email = ?", (unknown_user,)).fetchone()[0] == "hard"
    for user in users:
        dovecot.wait_for_messages(user, 1)
        time.sleep(0.2)  # a duplicate would arrive right behind the first
        (raw,) = dovecot.read_messages(user)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["Message-ID"] == rows[user][1]
        assert msg["X-Newsletter-Campaign"] == "spring"
        assert msg["Return-Path"] == f"<{BOUNCE_ADDRESS}>"


def test_a_misspelt_field_is_caught_when_the_campaign_is_created(store):
    contacts(store, addresses(2))  # fields: first_name
    with pytest.raises(TemplateError, match="frist_name"):
        campaigns.create_campaign(store, "typo", "news", "Hi {{ frist_name }}", "<p>x</p>")
    assert store.conn.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0


def test_a_message_that_cannot_be_built_fails_alone(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv)
    add_contacts(store, [{"email": "ann@example.org", "vip": ""}, {"email": "cid@example.org", "vip": ""}],
                 list_name="news")
    campaigns.create_campaign(store, "spring", "news", "Hi",
                              "<p>{% if vip %}{{ vip.__class__.__mro__ }}{% endif %}</p>")
    # Added after create, whose test render would have refused the template for this contact.
    add_contacts(store, [{"email": "bob@example.org", "vip": "yes"}], list_name="news")

    report = campaigns.send_campaign(store, "spring")

    assert (report.sent, report.failed) == (2, 1)
    rows = ledger(store)
    assert rows["bob@example.org"][0] == "failed"
    assert "cannot build the message" in rows["bob@example.org"][4]
    assert set(received(srv)) == {"ann@example.org", "cid@example.org"}
    assert store.conn.execute("SELECT count(*) FROM bounces").fetchone()[0] == 0  # not a bounce
    assert quota.quota_status(store).used == 2


@pytest.mark.parametrize("code, reply, kind, status", [
    (250, b"2.0.0 OK", "sent", "2.0.0"),
    (421, b"4.3.2 shutting down", "paused", "4.3.2"),
    (450, b"4.2.1 busy", "deferred", "4.2.1"),
    (451, b"try later", "deferred", None),
    (452, b"4.2.2 Mailbox full", "deferred", "4.2.2"),
    (550, b"5.1.1 <x@example.org>: User unknown", "failed", "5.1.1"),
    (554, b"5.7.1 rejected as spam", "failed", "5.7.1"),
])
def test_smtp_replies_map_to_outcomes(code, reply, kind, status):
    from newsletter_kit.transport import classify_reply

    outcome = classify_reply(code, reply)
    assert (outcome.kind, outcome.code, outcome.status) == (kind, code, status)


def test_a_421_on_one_of_several_connections_pauses_them_all_and_loses_nobody(store, smtp_server):
    srv = smtp_server(tls="none", delay=0.002)
    configure(store, srv)
    emails = addresses(30) + ["rcpt421.x@example.org"] + addresses(30, prefix="later")
    contacts(store, emails)
    make_campaign(store)

    report = campaigns.send_campaign(store, "spring", connections=3)

    assert report.paused == "connection"
    states = {e: s for e, (s, *_) in ledger(store).items()}
    assert states["rcpt421.x@example.org"] == "pending"
    assert set(states.values()) <= {"sent", "pending"}          # nothing left in flight
    assert {e for e, s in states.items() if s == "sent"} == set(received(srv))
    assert max(received(srv).values()) == 1
    add_unsubscribe(store, "rcpt421.x@example.org")
    campaigns.send_campaign(store, "spring", connections=3)
    assert received(srv) == Counter({e: 1 for e in emails if not e.startswith("rcpt421")})


def test_cli_max_failures_stops_the_run_and_exits_1(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv)
    contacts(store, [f"fail550.{i}@example.org" for i in range(4)] + addresses(2))
    make_campaign(store)

    result = _invoke(["campaign", "send", "spring", "--max-failures", "3", "--json"])

    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert (doc["failed"], doc["sent"], doc["paused"]) == (3, 0, "failures")
    assert srv.messages == []
    # The next run goes on from where this one stopped.
    again = _invoke(["campaign", "send", "spring", "--max-failures", "3", "--json"])
    assert json.loads(again.stdout)["sent"] == 2 and again.returncode == 0
