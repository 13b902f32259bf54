"""The delivery ledger (newsletter_kit/ledger.py): rows claimed, settled, left by dead runs.

The ledger's promise is that a crash, a kill or an interruption never sends anyone the same
campaign twice and loses nobody. The end-to-end tests run real sends against aiosmtpd on
127.0.0.1 (tests/mailservers.py) and kill real processes; the unit tests use a store on disk.
"""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import time
from collections import Counter

import pytest

from newsletter_kit import campaigns, quota
from newsletter_kit.ledger import Ledger, outcome_state
from newsletter_kit.store import open_store
from newsletter_kit.transport import SendOutcome
from tests.sending import addresses, configure, contacts, ledger, make_campaign, received, start_cli


@pytest.fixture
def store(nk_db):
    store = open_store(nk_db)
    yield store
    store.close()


class _NoServer:
    port = 2525  # never contacted: these tests only claim and settle rows


def _ledger_with(store, emails):
    configure(store, _NoServer)  # the daily limit the claims reserve against
    contacts(store, emails)
    campaign = make_campaign(store)
    book = Ledger(store, campaign.id)
    with store.transaction():
        book.add_recipients([(None, e) for e in emails], [], [])
    return book


def _claim(store, book, want, owner):
    ids = iter(range(10**6))
    with store.transaction():
        return book.claim(want, owner=owner, settings=None,
                          new_message_id=lambda: f"<m{next(ids)}.{owner[-6:]}@example.org>")


# --- the ledger on its own ----------------------------------------------------------------


def test_a_claim_takes_due_deferred_rows_first_and_keeps_message_ids(store):
    emails = addresses(5)
    book = _ledger_with(store, emails)
    owner = quota.new_owner()
    store.conn.execute("UPDATE deliveries SET state = 'deferred', message_id = '<old@example.org>', "
                       "attempts = 1, next_attempt_at = '2000-01-01T00:00:00+00:00' WHERE email = ?",
                       (emails[3],))
    store.conn.execute("UPDATE deliveries SET state = 'deferred', next_attempt_at = '2999-01-01T00:00:00+00:00' "
                       "WHERE email = ?", (emails[4],))

    claim = _claim(store, book, 3, owner)

    assert [r.email for r in claim.rows] == [emails[3], emails[0], emails[1]]
    assert claim.rows[0].message_id == "<old@example.org>" and claim.granted == 3
    assert book.states() == {emails[0]: "inflight", emails[1]: "inflight", emails[2]: "pending",
                             emails[3]: "inflight", emails[4]: "deferred"}
    assert book.due_count() == 1 and book.left_to_send() == 5
    assert book.next_retry_at() == "2999-01-01T00:00:00+00:00"
    quota.end_run(owner)


def test_outcomes_give_each_row_its_state_and_count_what_was_accepted(store):
    emails = addresses(6)
    book = _ledger_with(store, emails)
    owner = quota.new_owner()
    claim = _claim(store, book, 6, owner)
    outcomes = [SendOutcome("sent", 250), SendOutcome("deferred", 451, None, "later"),
                SendOutcome("failed", 550, "5.1.1", "no such user"), SendOutcome("paused", 421, None, "bye"),
                None, None]
    with store.transaction():
        written = book.write_outcomes(claim.rows, outcomes, [True, True, True, True, True, False])

    assert (written.accepted, written.attempted) == (1, 5)
    assert [r for r, _ in written.rejections] == [claim.rows[2]]
    assert book.states() == dict(zip(emails, ["sent", "deferred", "failed", "pending", "unknown", "pending"]))
    assert book.abandoned() == []
    quota.end_run(owner)


def test_rows_of_a_run_that_died_are_abandoned_and_those_of_a_live_run_are_not(store):
    emails = addresses(4)
    book = _ledger_with(store, emails)
    dead = subprocess.run([sys.executable, "-c", "from newsletter_kit import quota; print(quota.new_owner())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    alive = quota.new_owner()
    _claim(store, book, 2, dead)
    _claim(store, book, 1, alive)

    assert {email for _, email in book.abandoned()} == set(emails[:2])
    assert sorted(book.mark_abandoned()) == emails[:2]
    assert book.states() == dict(zip(emails, ["unknown", "unknown", "inflight", "pending"]))
    assert book.abandoned() == []
    quota.end_run(alive)


@pytest.mark.parametrize("attempts, outcome, started, state", [
    (0, SendOutcome("sent", 250), True, "sent"),
    (0, SendOutcome("paused", 421), True, "pending"),
    (0, SendOutcome("unknown"), True, "unknown"),
    (3, SendOutcome("deferred", 450), True, "deferred"),
    (4, SendOutcome("deferred", 450), True, "failed"),
    (0, None, True, "unknown"),
    (0, None, False, "untouched"),
])
def test_outcome_state(attempts, outcome, started, state):
    assert outcome_state(attempts, outcome, started) == state


# --- the ledger through real runs ---------------------------------------------------------


def test_two_senders_started_together_share_the_quota_and_send_nobody_twice(store, smtp_server):
    srv = smtp_server(tls="none", delay=0.01)
    configure(store, srv, limit=25)
    emails = addresses(60)
    contacts(store, emails)
    make_campaign(store)

    procs = [start_cli(["campaign", "send", "spring", "--json"]) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], results
    reports = [json.loads(out) for out, _ in results]
    assert sum(r["sent"] for r in reports) == 25
    assert {r["paused"] for r in reports} == {"quota"}
    counts = received(srv)
    assert sum(counts.values()) == 25 and max(counts.values()) == 1
    assert quota.quota_status(store).used == 25


def test_sigkill_mid_campaign_then_send_again_sends_nobody_twice(store, smtp_server):
    srv = smtp_server(tls="none", delay=0.03)
    configure(store, srv)
    emails = addresses(80)
    contacts(store, emails)
    make_campaign(store)

    proc = start_cli(["campaign", "send", "spring"])
    deadline = time.monotonic() + 60
    while len(srv.messages) < 25 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    got_before = received(srv)
    assert 25 <= sum(got_before.values()) < 80

    report = campaigns.send_campaign(store, "spring")

    counts = received(srv)
    assert max(counts.values()) == 1                       # nobody twice
    rows = ledger(store)
    unknown = {e for e, (s, *_) in rows.items() if s == "unknown"}
    assert unknown and set(report.unknown) == unknown       # reported
    assert len(unknown) <= 2 * campaigns.BATCH_PER_CONNECTION  # at most two batches
    assert not unknown & (set(counts) - set(got_before))    # never resent
    assert {s for e, (s, *_) in rows.items() if e not in unknown} == {"sent"}
    assert set(counts) | unknown == set(emails)             # nobody lost
    status = campaigns.campaign_status(store, "spring")
    assert (status["unknown"], status["pending"]) == (len(unknown), 0)
    # The dead run's reservation was reclaimed (counted as used: it may have been accepted).
    assert store.conn.execute("SELECT count(*) FROM quota_reservations").fetchone()[0] == 0
    assert quota.quota_status(store).used >= len(counts)


class _InterruptedOnThird(smtplib.SMTP):
    """Ctrl-C in a notebook while the third message is on the wire."""

    calls = 0

    def sendmail(self, *args, **kwargs):
        _InterruptedOnThird.calls += 1
        if _InterruptedOnThird.calls == 3:
            raise KeyboardInterrupt
        return super().sendmail(*args, **kwargs)


def test_an_interrupted_run_records_what_it_knows(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv)
    emails = addresses(6)
    contacts(store, emails)
    make_campaign(store)
    _InterruptedOnThird.calls = 0

    with pytest.raises(KeyboardInterrupt):
        campaigns.send_campaign(store, "spring", smtp_factory=_InterruptedOnThird)

    states = {e: s for e, (s, *_) in ledger(store).items()}
    assert [states[e] for e in emails] == ["sent", "sent", "unknown", "pending", "pending", "pending"]
    status = quota.quota_status(store)
    assert (status.used, status.reserved) == (2, 0)
    # The next run sends the pending ones and never the unknown one.
    report = campaigns.send_campaign(store, "spring")
    assert report.sent == 3
    assert set(received(srv)) == set(emails) - {emails[2]}


def test_a_failing_progress_callback_leaves_nothing_in_flight(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv)
    contacts(store, addresses(60))
    make_campaign(store)

    def progress(done, total, report):
        if done:
            raise RuntimeError("the notebook's widget is gone")

    with pytest.raises(RuntimeError):
        campaigns.send_campaign(store, "spring", progress=progress)

    states = Counter(s for s, *_ in ledger(store).values())
    assert set(states) == {"sent", "pending"} and states["sent"] == len(srv.messages)
    assert quota.quota_status(store).reserved == 0
