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
from newsletter_kit.errors import CampaignError
from newsletter_kit.ledger import Ledger, SendLog, outcome_state
from newsletter_kit.store import open_store
from newsletter_kit.transport import SendOutcome
from tests.sending import addresses, configure, contacts, invoke, ledger, make_campaign, received, start_cli


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
    assert book.states() == {emails[0]: "claimed", emails[1]: "claimed", emails[2]: "pending",
                             emails[3]: "claimed", emails[4]: "deferred"}
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


def test_a_dead_run_leaves_unknown_only_what_was_on_the_wire_and_a_live_run_nothing(store):
    emails = addresses(7)
    book = _ledger_with(store, emails)
    dead = subprocess.run([sys.executable, "-c", "from newsletter_kit import quota; print(quota.new_owner())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    alive = quota.new_owner()
    gone = _claim(store, book, 4, dead)
    running = _claim(store, book, 2, alive)
    # The dead run: row 0 answered 250, row 1 refused at RCPT, row 2 on the wire; row 3 never.
    book.log_wire(dead, gone.rows[0])
    book.log_wire(dead, gone.rows[1], [(gone.rows[0], SendOutcome("sent", 250))])
    book.log_wire(dead, gone.rows[2], [(gone.rows[1], SendOutcome("failed", 550, "5.1.1", "no", "RCPT",
                                                                    "recipient"))])
    book.log_wire(alive, running.rows[0])  # the live run's message on the wire

    assert book.mark_abandoned() == [emails[2]]
    assert book.states() == dict(zip(emails, ["sent", "failed", "unknown", "pending", "claimed", "claimed",
                                              "pending"]))
    assert book.log.lines(dead) == [] and len(book.log.lines(alive)) == 1
    assert book.mark_abandoned() == []   # nothing twice
    quota.end_run(alive)


def test_rows_left_in_flight_by_an_older_version_are_unknown(store):
    emails = addresses(2)
    book = _ledger_with(store, emails)
    store.conn.execute("UPDATE deliveries SET state = 'inflight', owner = NULL WHERE email = ?",
                       (emails[0],))
    assert book.mark_abandoned() == [emails[0]]
    assert book.states() == {emails[0]: "unknown", emails[1]: "pending"}


def test_unknown_rows_are_settled_as_sent_or_pending_and_nothing_else(store):
    emails = addresses(4)
    book = _ledger_with(store, emails)
    store.conn.execute("UPDATE deliveries SET state = 'unknown' WHERE email IN (?, ?, ?)", tuple(emails[:3]))

    with pytest.raises(CampaignError, match="not an unknown recipient.*reader003"):
        book.resolve("sent", [emails[0], emails[3]])
    with pytest.raises(CampaignError, match="sent or pending"):
        book.resolve("failed")
    assert book.unknown() == emails[:3]                  # an error settles nothing

    assert book.resolve("sent", [emails[0].upper()]) == [emails[0]]
    assert book.resolve("pending") == emails[1:3]
    assert book.states() == dict(zip(emails, ["sent", "pending", "pending", "pending"]))
    assert book.resolve("sent") == []


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
    assert set(report.unknown) == unknown                   # reported
    assert len(unknown) <= 1                                # only the message on the wire
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
    assert (status.used, status.reserved) == (3, 0)  # the unknown one was handed over: it counts
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


def _states(store, name="spring"):
    return Counter(s for s, *_ in ledger(store, name).values())


def _kill_when(proc, srv, count):
    deadline = time.monotonic() + 60
    while len(srv.messages) < count and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_three_sigkills_leave_at_most_one_unknown_per_connection_and_the_rest_is_sent(store, smtp_server):
    """Issue 9 finding 5: before, each kill parked two batches of 20 per connection as unknown."""
    srv = smtp_server(tls="none", delay=0.02)
    configure(store, srv)
    emails = addresses(240)
    contacts(store, emails)
    make_campaign(store)
    connections = 2
    unknown: set[str] = set()

    for kill in range(3):
        proc = start_cli(["campaign", "send", "spring", "--connections", str(connections)])
        _kill_when(proc, srv, 30 + 50 * kill)
        # A run that sends nothing settles what the dead one left.
        found = campaigns.send_campaign(store, "spring", limit=0).unknown
        assert len(found) <= connections, found              # only what was on the wire
        unknown |= set(found)
        assert not {"claimed", "inflight"} & set(_states(store))
        assert SendLog.of(store).count() == 0

    final = campaigns.send_campaign(store, "spring", connections=connections)

    counts = received(srv)
    assert final.paused is None and max(counts.values()) == 1   # nobody twice
    rows = ledger(store)
    assert {e for e, (s, *_) in rows.items() if s == "unknown"} == unknown
    assert {e for e, (s, *_) in rows.items() if s == "sent"} == set(emails) - unknown
    assert set(counts) | unknown == set(emails)                  # nobody lost
    assert set(counts) - unknown == set(emails) - unknown
    assert campaigns.campaign_status(store, "spring")["unknown"] == len(unknown)


def test_sigterm_finishes_the_message_on_the_wire_releases_the_rest_and_exits_75(store, smtp_server):
    """Issue 9 finding 4: TERM (timeout, systemd, cron wrappers) is handled like Ctrl-C."""
    srv = smtp_server(tls="none", delay=0.05)
    configure(store, srv)
    emails = addresses(60)
    contacts(store, emails)
    make_campaign(store)

    proc = start_cli(["campaign", "send", "spring", "--json"])
    deadline = time.monotonic() + 60
    while len(srv.messages) < 9 and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 75, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    doc = json.loads(out)
    states = _states(store)
    assert states == Counter({"sent": len(srv.messages), "pending": 60 - len(srv.messages)})
    assert doc["sent"] == len(srv.messages) and doc["paused"] == "stopped"
    status = quota.quota_status(store)
    assert (status.used, status.reserved) == (len(srv.messages), 0)     # the quota is settled
    assert store.conn.execute("SELECT count(*) FROM quota_reservations").fetchone()[0] == 0

    again = campaigns.send_campaign(store, "spring")
    assert again.paused is None and again.unknown == []
    assert received(srv) == Counter({e: 1 for e in emails})


def test_unknown_rows_are_settled_from_the_command_line(store, smtp_server):
    """Issue 9 finding 6: `campaign resolve` (and status keeps saying unknown until then)."""
    srv = smtp_server(tls="none")
    configure(store, srv)
    order = ["drop.a@example.org", "ok1@example.org", "drop.b@example.org", "ok2@example.org"]
    contacts(store, order)
    make_campaign(store)
    for _ in range(3):
        campaigns.send_campaign(store, "spring")       # each drop pauses the run once
    status = json.loads(invoke(["campaign", "status", "spring", "--json"]).stdout)
    assert (status["unknown"], status["sent"], status["pending"]) == (2, 2, 0)

    refused = invoke(["campaign", "resolve", "spring", "--as", "pending"])   # not a terminal
    assert refused.returncode == 1 and "--yes" in refused.stderr and refused.stderr.count("\n") == 1
    stray = invoke(["campaign", "resolve", "spring", "--as", "sent", "--address", "ok1@example.org"])
    assert stray.returncode == 1 and "not an unknown recipient" in stray.stderr
    assert json.loads(invoke(["campaign", "status", "spring", "--json"]).stdout)["unknown"] == 2

    done = invoke(["campaign", "resolve", "spring", "--as", "sent", "--address", "drop.a@example.org"])
    assert done.returncode == 0 and "1 unknown recipient(s)" in done.stderr
    again = invoke(["campaign", "resolve", "spring", "--as", "pending", "--yes"])
    assert again.returncode == 0, again.stderr
    status = json.loads(invoke(["campaign", "status", "spring", "--json"]).stdout)
    assert (status["unknown"], status["sent"], status["pending"]) == (0, 3, 1)
    assert ledger(store)["drop.a@example.org"][0] == "sent"
    assert "settled as sent" in ledger(store)["drop.a@example.org"][4]


def test_resolve_is_part_of_the_python_api():
    import newsletter_kit as nk

    assert "resolve_unknown" in nk.__all__ and nk.resolve_unknown is campaigns.resolve_unknown



def _open_send_log(path: str) -> str | None:
    from newsletter_kit.ledger import SendLog

    try:
        SendLog(path)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return repr(exc)
    return None


def test_processes_opening_a_new_send_log_at_once_all_get_it(tmp_path):
    """A first run's connections (or two runs) open the new log file together; none may fail.

    SQLite answers a second switch to WAL at the same moment with "database is locked" at once,
    without a busy wait: that failed a CI run. Eight processes, thirty new files.
    """
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(8) as pool:
        failures = [result for n in range(30)
                    for result in pool.map(_open_send_log, [str(tmp_path / f"{n}.db-sendlog")] * 8)
                    if result]
    assert failures == []


# --- the quota a dead run held (issue 16 finding 9a, issue 17 item 6) -----------------------


def _counted_rows(store, name="spring"):
    """Rows the quota must count: accepted, or handed over unanswered (unknown)."""
    return sum(1 for s, *_ in ledger(store, name).values() if s in ("sent", "unknown"))


@pytest.mark.parametrize("kill_at", [0, 3, 27])
def test_a_killed_run_gives_back_from_the_ledger_what_it_did_not_hand_to_the_server(store, smtp_server, kill_at):
    """SIGKILL a real run at several points (before the first message, early, mid-batch); the
    next run settles its reservation: only what it handed to the server counts."""
    srv = smtp_server(tls="none", delay=0.03)
    configure(store, srv, limit=60)
    emails = addresses(80)
    contacts(store, emails)
    make_campaign(store)

    proc = start_cli(["campaign", "send", "spring"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:  # wait until it holds a reservation
        held = store.conn.execute("SELECT coalesce(sum(count), 0) FROM quota_reservations").fetchone()[0]
        if held and len(srv.messages) >= kill_at:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert quota.quota_status(store).reserved > 0            # the dead run's hold, not yet settled

    campaigns.send_campaign(store, "spring", limit=0)         # the next run settles it
    status = quota.quota_status(store)
    assert store.conn.execute("SELECT count(*) FROM quota_reservations").fetchone()[0] == 0
    assert status.reserved == 0
    assert status.used == _counted_rows(store) <= sum(received(srv).values()) + 1
    assert status.remaining == 60 - status.used

    final = campaigns.send_campaign(store, "spring")          # the rest of the day's limit goes
    assert quota.quota_status(store).used == 60 and final.paused == "quota"
    assert max(received(srv).values()) == 1


def test_another_campaigns_run_gives_back_what_a_killed_run_held(store, smtp_server):
    """The next run may be of another campaign: it settles the dead run of the first from the
    ledger, so the day's limit is not lost to it."""
    srv = smtp_server(tls="none", delay=0.03)
    configure(store, srv, limit=50)
    emails = addresses(60)
    contacts(store, emails)
    make_campaign(store)
    make_campaign(store, "autumn")

    proc = start_cli(["campaign", "send", "spring"])
    _kill_when(proc, srv, 10)
    report = campaigns.send_campaign(store, "autumn")
    handed = _counted_rows(store, "spring")
    assert 10 <= handed < 50
    assert report.sent == 50 - handed                         # all the rest of the day
    status = quota.quota_status(store)
    assert (status.used, status.reserved, status.remaining) == (50, 0, 0)
    assert not {"claimed", "inflight"} & {s for s, *_ in ledger(store, "spring").values()}


# --- settling unknown rows as sent (issue 16 finding 9b) ----------------------------------


def test_unknown_rows_settled_as_sent_count_toward_the_day_they_were_tried(store):
    """Rows left unknown before the quota counted them (as an older version left them) count
    when settled as sent, on the day they were tried, not on the day they are settled."""
    import datetime as dt

    emails = addresses(4)
    book = _ledger_with(store, emails)
    tried = "2026-03-01T22:30:00+00:00"                      # 23:30 in Rome: 1 March
    store.conn.execute("UPDATE deliveries SET state = 'unknown', updated_at = ?, quota_counted = 0 "
                       "WHERE email IN (?, ?, ?)", (tried, *emails[:3]))
    assert quota.quota_status(store, now=dt.datetime(2026, 3, 1, 22, 45, tzinfo=dt.timezone.utc)).used == 0

    campaigns.resolve_unknown(store, "spring", "sent", emails[:2])
    campaigns.resolve_unknown(store, "spring", "pending", emails[2:3])
    assert store.conn.execute("SELECT day, used FROM quota_days WHERE used > 0").fetchall() == [("2026-03-01", 2)]
    at = dt.datetime(2026, 3, 1, 22, 45, tzinfo=dt.timezone.utc)
    assert quota.quota_status(store, now=at).used == 2
    assert quota.quota_status(store, now=at + dt.timedelta(hours=1)).used == 0   # 2 March in Rome
    campaigns.resolve_unknown(store, "spring", "sent", []) == []
    assert quota.quota_status(store, now=at).used == 2       # settling again counts nothing twice


def test_an_unknown_row_of_a_dropped_connection_counts_once_also_when_settled_as_sent(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv)
    emails = addresses(6)
    contacts(store, emails)
    make_campaign(store)
    _InterruptedOnThird.calls = 0
    with pytest.raises(KeyboardInterrupt):
        campaigns.send_campaign(store, "spring", smtp_factory=_InterruptedOnThird)
    assert quota.quota_status(store).used == 3
    assert campaigns.resolve_unknown(store, "spring", "sent") == [emails[2]]
    assert quota.quota_status(store).used == 3
