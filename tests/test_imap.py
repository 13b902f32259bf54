"""The IMAP client's pure parts (the conversation with Dovecot is in test_connections.py and
test_bounce_fetch.py)."""
from __future__ import annotations

from newsletter_kit import imap


def test_batches_stay_in_uid_order_and_bounded_in_bytes() -> None:
    big = imap.MAX_BATCH_BYTES // 2 + 1
    batches = list(imap.uid_batches([1, 2, 3, 4, 5, 6, 7], {3: big, 4: big}, 3))
    assert batches == [[1, 2, 3], [4, 5, 6], [7]]
    assert list(imap.uid_batches([1, 2, 3], {2: big, 3: big}, 10)) == [[1, 2], [3]]
    assert [len(b) for b in imap.uid_batches(list(range(1, 1201)), {}, 500)] == [500, 500, 200]


# --- issue 16, finding 7: the server decides neither how long nor how much -------------------
# A fake IMAP server in a thread (tests/fake_imap.py): Dovecot cannot trickle or lie on cue.

import json  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from newsletter_kit.cli import cli  # noqa: E402
from newsletter_kit.errors import MailboxError, NewsletterKitError  # noqa: E402
from newsletter_kit.ingest import fetch_bounces  # noqa: E402
from newsletter_kit.settings import update_bounce_settings  # noqa: E402
from newsletter_kit.store import open_store  # noqa: E402
from tests.dsn import postfix_dsn, sent_to  # noqa: E402
from tests.fake_imap import FakeImap  # noqa: E402

MB = 1024 * 1024


def _store_for(nk_db: Path, srv: FakeImap, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NK_FAKE_IMAP_PW", "secret")
    store = open_store(nk_db)
    update_bounce_settings(store, host="127.0.0.1", port=srv.port, tls="none", allow_plain_auth=True,
                           user="bounces@example.org", password_ref="env:NK_FAKE_IMAP_PW", threshold=1)
    return store


def _dsns(*rcpts: str, pad_to: int = 0) -> dict[int, bytes]:
    return {uid: postfix_dsn(rcpt, pad_to=pad_to) for uid, rcpt in enumerate(rcpts, start=1)}


def test_a_server_trickling_a_literal_meets_the_fetch_deadline(nk_db, monkeypatch) -> None:
    """One byte every 0.2 s never trips the 30 s read timeout; the deadline for the whole fetch
    stops it (exit 75: run it again), with nothing half recorded."""
    with FakeImap(_dsns("a@example.org"), trickle_every=0.2) as srv:
        store = _store_for(nk_db, srv, monkeypatch)
        with pytest.raises(MailboxError, match="deadline for the whole fetch") as caught:
            fetch_bounces(store, deadline=1.5)
        assert caught.value.exit_code == 75
        assert "UID FETCH" in srv.commands
        result = CliRunner().invoke(cli, ["--db", str(nk_db), "bounces", "fetch", "--deadline", "1.5"])
    assert result.exit_code == 75 and "deadline" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert store.conn.execute("SELECT count(*) FROM mailbox_messages").fetchone()[0] == 0


def test_a_server_trickling_its_login_reply_meets_the_deadline_too(nk_db, monkeypatch) -> None:
    with FakeImap(_dsns("a@example.org"), trickle_login=0.2) as srv:
        store = _store_for(nk_db, srv, monkeypatch)
        with pytest.raises(NewsletterKitError, match="deadline to log in") as caught:
            fetch_bounces(store, deadline=1.5)
    assert caught.value.exit_code == 75 and "UID FETCH" not in srv.commands


def test_a_message_over_the_cap_is_skipped_whatever_the_server_announced(nk_db, monkeypatch) -> None:
    """UID 2 announces RFC822.SIZE 2000 and sends a 64 MB literal anyway; UID 3 is honest
    about its 3 MB.  Both are skipped with their UID, never held whole in memory; the others are
    recorded, and the run says what it skipped (JSON too)."""
    sent_to(open_store(nk_db), "a@example.org", "c@example.org", "d@example.org")
    messages = _dsns("a@example.org", "b@example.org", "c@example.org", "d@example.org")
    messages[3] = postfix_dsn("c@example.org", pad_to=3 * MB)
    with FakeImap(messages, sizes={2: 2000}, liar={2: 64 * MB}) as srv:
        store = _store_for(nk_db, srv, monkeypatch)
        tracemalloc.start()
        try:
            report = fetch_bounces(store, max_message_bytes=1 * MB)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 16 * MB                                      # not the 64 MB literal
    assert [(s.uid, s.size) for s in report.skipped] == [(2, 64 * MB), (3, len(messages[3]))]
    assert report.fetched == 2 and report.suppressed == ["a@example.org", "d@example.org"]
    assert report.to_dict()["skipped"][0] == {"uid": 2, "size": 64 * MB,
                                              "why": f"larger than the {MB} bytes a message may have"}
    # The UIDs are passed: the next run does not read them again.
    with FakeImap(messages, sizes={2: 2000}, liar={2: 64 * MB}) as srv:
        monkeypatch.setenv("NK_FAKE_IMAP_PW", "secret")
        update_bounce_settings(store, port=srv.port)
        again = fetch_bounces(store, max_message_bytes=1 * MB)
    assert (again.fetched, again.skipped) == (0, [])


def test_the_command_line_reports_what_it_skipped(nk_db, monkeypatch) -> None:
    messages = _dsns("a@example.org", "b@example.org")
    with FakeImap(messages, sizes={1: 1500}, liar={1: 5 * MB}) as srv:
        _store_for(nk_db, srv, monkeypatch)
        result = CliRunner().invoke(cli, ["--db", str(nk_db), "bounces", "fetch", "--json",
                                          "--max-message-size", "1"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["fetched"] == 1 and doc["skipped"] == [
        {"uid": 1, "size": 5 * MB, "why": f"larger than the {MB} bytes a message may have"}]
    assert "skipped UID 1 (5242880 bytes)" in result.stderr


def test_sizes_that_lie_low_cannot_grow_one_fetch_past_its_byte_budget(nk_db, monkeypatch) -> None:
    """Five 900 KB messages announced as 2 KB each: batched as small, yet one FETCH keeps at most
    the byte budget; the rest is fetched again, and every message is recorded once."""
    monkeypatch.setattr(imap, "MAX_BATCH_BYTES", 2 * MB)
    sent_to(open_store(nk_db), *(f"r{i}@example.org" for i in range(5)))
    messages = _dsns(*(f"r{i}@example.org" for i in range(5)), pad_to=900 * 1024)
    with FakeImap(messages, sizes={uid: 2000 for uid in messages}) as srv:
        store = _store_for(nk_db, srv, monkeypatch)
        report = fetch_bounces(store, max_message_bytes=1 * MB)
    assert report.fetched == 5 and report.skipped == []
    assert srv.commands.count("UID FETCH") >= 3                 # 2 + 2 + 1 at most per FETCH
    assert sorted(report.suppressed) == [f"r{i}@example.org" for i in range(5)]
