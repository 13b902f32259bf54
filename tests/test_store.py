"""The SQLite store: schema, WAL, migrations, transactions across processes."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from newsletter_kit import store as store_mod
from newsletter_kit.errors import StoreError
from newsletter_kit.store import SCHEMA_VERSION, now_iso, open_store

TABLES = {
    "settings", "contacts", "lists", "list_members", "campaigns", "deliveries", "quota_days",
    "quota_reservations", "unsubscribes", "suppressions", "suppression_events",
    "mailbox_messages", "mailbox_state", "bounces",
}


def test_fresh_store_has_every_table_wal_and_foreign_keys(tmp_path):
    store = open_store(tmp_path / "nk.db")
    assert TABLES <= set(store.db.table_names())
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.schema_version() == SCHEMA_VERSION
    with pytest.raises(sqlite3.IntegrityError):
        with store.transaction():
            store.conn.execute(
                "INSERT INTO list_members (list_id, contact_id, added_at) VALUES (999, 999, ?)",
                (now_iso(),),
            )


def test_default_path_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NEWSLETTER_KIT_DB", str(tmp_path / "x" / "env.db"))
    store = open_store()
    assert store.path == str(tmp_path / "x" / "env.db")
    assert (tmp_path / "x" / "env.db").exists()
    monkeypatch.delenv("NEWSLETTER_KIT_DB")
    assert str(store_mod.default_path()) == "data/newsletter.db"


def test_reopening_does_not_migrate_again(tmp_path):
    path = tmp_path / "nk.db"
    with open_store(path) as store:
        store.db["lists"].insert({"name": "all", "created_at": now_iso()})
    with open_store(path) as store:
        assert store.db["lists"].count == 1


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "nk.db"
    open_store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        open_store(path)


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "nk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        open_store(path)


def test_transaction_rolls_back_everything_on_error(tmp_path):
    store = open_store(tmp_path / "nk.db")
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.db["lists"].insert({"name": "a", "created_at": now_iso()})
            with store.transaction():  # nested: joins the outer one
                store.db["lists"].insert({"name": "b", "created_at": now_iso()})
            raise RuntimeError("boom")
    assert store.db["lists"].count == 0


def _increment(path: str, times: int) -> None:
    store = open_store(path)
    for _ in range(times):
        with store.transaction():
            (used,) = store.conn.execute(
                "SELECT coalesce(max(used), 0) FROM quota_days WHERE day = 'd'").fetchone()
            store.conn.execute(
                "INSERT INTO quota_days (day, used) VALUES ('d', ?) "
                "ON CONFLICT(day) DO UPDATE SET used = excluded.used", (used + 1,))
    store.close()


def test_read_check_write_is_atomic_across_processes(tmp_path):
    path = str(tmp_path / "nk.db")
    open_store(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_increment, args=(path, 200)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = open_store(path)
    # Lost updates would leave fewer than 600.
    assert store.conn.execute("SELECT used FROM quota_days WHERE day = 'd'").fetchone()[0] == 600


def test_signing_key_is_stable(tmp_path):
    path = tmp_path / "nk.db"
    key = open_store(path).signing_key()
    assert len(key) == 32
    assert open_store(path).signing_key() == key


_RACE = """
import sys, time
from pathlib import Path
from newsletter_kit.store import open_store
go, paths = Path(sys.argv[1]), sys.argv[2:]
while not go.exists():
    time.sleep(0.001)
for path in paths:
    open_store(path).close()
"""


@pytest.mark.parametrize("variant", ["fresh", "half-migrated"])
def test_two_processes_opening_a_new_store_at_once_both_migrate_safely(tmp_path, variant):
    """Issue 16 finding 9c: the second process sees the version the first wrote and skips;
    real processes, many rounds over new files (or files one migration in)."""
    import subprocess
    import sys

    paths = [str(tmp_path / f"race{i}.db") for i in range(40)]
    if variant == "half-migrated":
        for path in paths:  # a store at version 1, as an old release left it
            conn = sqlite3.connect(path)
            conn.execute("BEGIN")
            store_mod._MIGRATIONS[0](conn)
            conn.execute("PRAGMA user_version = 1")
            conn.commit()
            conn.close()
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(go), *paths],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    go.touch()
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    for path in paths:
        store = open_store(path, create=False)
        assert store.schema_version() == SCHEMA_VERSION
        assert TABLES <= set(store.db.table_names())
        store.close()
