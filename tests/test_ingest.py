"""Bounce ingestion from local sources (.eml directory, one .eml, mbox): recorded once,
de-duplicated across sources, parsed the same in worker processes; no servers needed.
(The IMAP source is tested against Dovecot in test_bounce_fetch.py.)"""
from __future__ import annotations

import hashlib
import mailbox
from pathlib import Path

import pytest

import newsletter_kit as nkit
from newsletter_kit import ingest
from newsletter_kit.errors import MailboxError, ValidationError
from newsletter_kit.ingest import fetch_bounces
from newsletter_kit.store import Store, open_store
from tests.dsn import postfix_dsn, sent_to
from tests.bouncing import configure as _configure
from tests.bouncing import write_eml as _write


@pytest.fixture
def store(nk_db: Path) -> Store:
    return open_store(nk_db)


# --- local sources ---------------------------------------------------------------------------


def test_a_directory_of_eml_files_is_recorded_once(store: Store, tmp_path: Path) -> None:
    settings = _configure(store, threshold=1)
    sent_to(store, "gone@example.org", "full@example.org", "spam@example.org", "slow@example.org")
    raws = [
        postfix_dsn("gone@example.org", status="5.1.1", campaign="nov"),
        postfix_dsn("full@example.org", status="5.2.2", campaign="nov"),
        postfix_dsn("spam@example.org", status="5.7.1", campaign="nov"),
        postfix_dsn("slow@example.org", status="4.4.1", delayed=True),
        b"From: Anna <anna@example.net>\r\nTo: bounces@example.org\r\nSubject: thanks\r\n"
        b"Message-ID: <human-1@example.net>\r\n\r\nLovely newsletter!\r\n",
    ]
    folder = _write(tmp_path / "eml", raws)

    report = fetch_bounces(store, settings, source_path=folder)

    assert report.to_dict() == {
        "fetched": 5, "bounces": {"delayed": 1, "hard": 1, "human": 1, "policy": 1, "soft": 1}, "unmatched": 0,
        "suppressed": ["full@example.org", "gone@example.org"],
    }
    assert report.source == f"file:{folder.resolve()}"
    kinds = dict(store.conn.execute("SELECT email, kind FROM bounces").fetchall())
    assert kinds == {"gone@example.org": "hard", "full@example.org": "soft", "spam@example.org": "policy",
                     "slow@example.org": "delayed"}
    assert {r[0] for r in store.conn.execute("SELECT campaign FROM bounces WHERE kind != 'delayed'")} == {"nov"}

    again = fetch_bounces(store, settings, source_path=folder)
    assert (again.fetched, again.duplicates, again.suppressed) == (0, 5, [])
    assert store.conn.execute("SELECT count(*) FROM bounces").fetchone()[0] == 4


def test_a_folder_read_every_day_adds_no_rows_for_files_it_has_read(store: Store, tmp_path: Path) -> None:
    """A re-read file is not a new copy: the messages table does not grow by the folder per run."""
    settings = _configure(store, threshold=5)
    sent_to(store, "a@example.org", "b@example.org")
    folder = _write(tmp_path / "eml", [postfix_dsn("a@example.org", status="5.1.1")])
    rows = "SELECT count(*) FROM mailbox_messages"
    fetch_bounces(store, settings, source_path=folder)
    for _ in range(3):
        assert fetch_bounces(store, settings, source_path=folder).duplicates == 1
    assert store.conn.execute(rows).fetchone()[0] == 1
    # A new file in the folder is recorded; the same report in another folder is kept as a copy.
    (folder / "new.eml").write_bytes(postfix_dsn("b@example.org", status="5.1.1"))
    assert fetch_bounces(store, settings, source_path=folder).fetched == 1
    copy = _write(tmp_path / "copy", [(folder / "000.eml").read_bytes()])
    assert fetch_bounces(store, settings, source_path=copy).duplicates == 1
    assert store.conn.execute(rows).fetchone()[0] == 3
    assert nkit.bounce_counts(store) == {"a@example.org": 1, "b@example.org": 1}


def test_an_mbox_file_and_the_same_reports_from_another_source_count_once(store: Store, tmp_path: Path) -> None:
    settings = _configure(store, threshold=2)
    sent_to(store, *(f"u{i}@example.org" for i in range(3)))
    raws = [postfix_dsn(f"u{i}@example.org", status="5.1.1") for i in range(3)]
    box = mailbox.mbox(str(tmp_path / "bounces.mbox"))
    for raw in raws:
        box.add(raw)
    box.close()

    report = fetch_bounces(store, settings, source_path=tmp_path / "bounces.mbox")
    assert report.fetched == 3 and report.bounces == {"hard": 3}

    # The same reports exported as .eml (CRLF, so other bytes): same Message-IDs, not counted.
    report = fetch_bounces(store, settings, source_path=_write(tmp_path / "eml", raws))
    assert (report.fetched, report.duplicates) == (0, 3)
    assert nkit.bounce_counts(store) == {f"u{i}@example.org": 1 for i in range(3)}


def test_a_success_notice_records_no_bounce(store: Store, tmp_path: Path) -> None:
    settings = _configure(store)
    relayed = postfix_dsn("fine@example.org", status="2.0.0").replace(b"Action: failed", b"Action: relayed")
    report = fetch_bounces(store, settings, source_path=_write(tmp_path / "ok", [relayed]))
    assert report.fetched == 1 and "hard" not in report.bounces and report.suppressed == []
    assert store.conn.execute("SELECT count(*) FROM bounces").fetchone()[0] == 0


def test_a_report_without_message_id_is_keyed_by_its_content(store: Store, tmp_path: Path) -> None:
    settings = _configure(store, threshold=3)
    raw = postfix_dsn("x@example.org").replace(b"Message-Id: ", b"X-Old-Id: ")
    first = fetch_bounces(store, settings, source_path=_write(tmp_path / "a", [raw]))
    second = fetch_bounces(store, settings, source_path=_write(tmp_path / "b", [raw]))
    assert (first.fetched, second.fetched, second.duplicates) == (1, 0, 1)
    key = store.conn.execute("SELECT report_key FROM bounces").fetchone()[0]
    assert key == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_a_single_eml_file_and_a_missing_path(store: Store, tmp_path: Path) -> None:
    settings = _configure(store)
    sent_to(store, "one@example.org")
    path = tmp_path / "one.eml"
    path.write_bytes(postfix_dsn("one@example.org"))
    assert fetch_bounces(store, settings, source_path=path).suppressed == ["one@example.org"]
    with pytest.raises(MailboxError, match="no such file"):
        fetch_bounces(store, settings, source_path=tmp_path / "missing")


def test_parsing_in_worker_processes_records_the_same(store: Store, tmp_path: Path) -> None:
    settings = _configure(store, threshold=2)
    raws = [postfix_dsn(f"w{i % 7}@example.org", status=("5.1.1", "5.2.2", "5.7.1")[i % 3]) for i in range(60)]
    folder = _write(tmp_path / "many", raws)
    serial = open_store(tmp_path / "serial.db")
    expected = fetch_bounces(serial, settings, source_path=folder, batch_size=7, workers=1)

    report = fetch_bounces(store, settings, source_path=folder, batch_size=7, workers=2)

    assert report.to_dict() == expected.to_dict()
    assert report.fetched == 60 and report.bounces == {"hard": 20, "soft": 20, "policy": 20}
    query = "SELECT email, kind, status, report_key FROM bounces ORDER BY report_key, email"
    assert store.conn.execute(query).fetchall() == serial.conn.execute(query).fetchall()
    assert fetch_bounces(store, settings, source_path=folder, workers=2).fetched == 0


def test_fetch_needs_bounce_settings(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="settings bounce"):
        fetch_bounces(store, source_path=tmp_path)


def test_parser_workers_never_fork_a_threaded_process():
    """A notebook kernel runs threads: its parser workers must come from a clean forkserver."""
    import threading

    if threading.active_count() == 1:
        assert ingest._pool_context().get_start_method() == "fork"
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)
    helper.start()
    try:
        assert ingest._pool_context().get_start_method() == "forkserver"
    finally:
        stop.set()
        helper.join()
