"""A store that cannot be used (issue 9, finding 9; issue 10, the read-only commands): one line
on stderr, a documented exit code, nothing half-written, and no store made by a mistyped path.

- locked by another process past the busy timeout: exit 75 (run again later), whatever the
  command; the other process is a real one holding SQLite's lock;
- read-only (the file, or its folder where SQLite keeps -wal and -shm): exit 1. The tests run as
  root, which ignores permissions, so those commands run in a user namespace
  (``unshare --user``), where the permission bits apply again;
- a store path under a regular file, an empty file, a file that is not a store: exit 1;
- commands that only read (or need a configured store) never create a store or its folder.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import newsletter_kit as nk
from newsletter_kit.cli import cli

SAMPLES = Path(__file__).parent / "bounce_samples"

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "exclusive":      # nobody may even read
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("SELECT count(*) FROM settings").fetchall()
else:                               # a writer holding the write lock (a long transaction)
    conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
"""


@contextmanager
def locked(path: Path, mode: str = "write") -> Iterator[None]:
    """Another process holds the store's lock until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(path), mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)


def snapshot(path: Path) -> dict[str, list[Any]]:
    """Every row of every table (what 'nothing half-written' compares)."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(map(repr, conn.execute(f"SELECT * FROM {t}"))) for t in tables}
    finally:
        conn.close()


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
def ready(nk_db: Path, smtp_server: Any, tmp_path: Path) -> dict[str, Any]:
    """A configured store with a list, a campaign, and files for the commands to read."""
    srv = smtp_server(tls="none")
    store = nk.open_store(nk_db)
    nk.update_smtp_settings(store, host="127.0.0.1", port=srv.port, tls="none", daily_limit=100,
                            from_addr="news@example.org", timezone="Europe/Rome")
    nk.update_bounce_settings(store, host="127.0.0.1", port=1143, user="bounces@example.org",
                              threshold=1, tls="none", allow_plain_auth=True, password_ref="env:NK_UNUSED")
    nk.add_contacts(store, [{"email": f"reader{i}@example.org"} for i in range(3)], list_name="news")
    nk.create_campaign(store, "spring", "news", "Hello", "<p>news</p>")
    store.signing_key()
    store.close()
    files = {"reports": tmp_path / "reports", "csv": tmp_path / "c.csv", "unsub": tmp_path / "u.csv",
             "html": tmp_path / "t.html"}
    files["reports"].mkdir()
    shutil.copy(SAMPLES / "postfix_hard_511.eml", files["reports"] / "a.eml")
    files["csv"].write_text("email,first_name\nnew@example.org,Nina\n")
    files["unsub"].write_text("email\nreader0@example.org\n")
    files["html"].write_text("<p>autumn</p>")
    return {"server": srv, "files": files}


def _args(args: list[str], files: dict[str, Path]) -> list[str]:
    return [str(files[a[1:-1]]) if a.startswith("{") else a for a in args]


WRITERS = [
    ["settings", "smtp", "--daily-limit", "7"],
    ["contacts", "import", "{csv}", "--list", "news"],
    ["unsubscribes", "import", "{unsub}"],
    ["campaign", "create", "autumn", "--list", "news", "--subject", "Hi", "--html", "{html}"],
    ["campaign", "send", "spring"],
    ["bounces", "fetch", "--from", "{reports}"],
]
READERS = [
    ["quota", "--json"],
    ["campaign", "status", "spring", "--json"],
    ["campaign", "list"],
    ["settings", "show"],
    ["suppressions", "list", "--json"],
]


@pytest.mark.parametrize("args", WRITERS, ids=" ".join)
def test_a_store_locked_by_another_writer_exits_75_and_writes_nothing(args, ready, nk_db, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_KIT_BUSY_TIMEOUT", "0.3")
    before = snapshot(nk_db)
    with locked(nk_db):
        result = CliRunner().invoke(cli, _args(args, ready["files"]))
    line = one_line_error(result.stderr)
    assert result.exit_code == 75, result.output
    assert f"the store {nk_db} is locked by another process" in line and "run it again" in line
    assert snapshot(nk_db) == before
    assert ready["server"].messages == []  # nothing sent without its ledger row


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_a_store_nobody_may_read_exits_75(args, ready, nk_db, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_KIT_BUSY_TIMEOUT", "0.3")
    with locked(nk_db, "exclusive"):
        result = CliRunner().invoke(cli, _args(args, ready["files"]))
    assert result.exit_code == 75, result.output
    assert "is locked by another process" in one_line_error(result.stderr)


def test_after_the_lock_the_same_command_works(ready, nk_db, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_KIT_BUSY_TIMEOUT", "0.3")
    with locked(nk_db):
        assert CliRunner().invoke(cli, ["campaign", "send", "spring"]).exit_code == 75
    result = CliRunner().invoke(cli, ["campaign", "send", "spring", "--json"])
    assert result.exit_code == 0, result.output
    assert len(ready["server"].messages) == 3


def test_a_bad_busy_timeout_is_one_line(ready, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_KIT_BUSY_TIMEOUT", "soon")
    result = CliRunner().invoke(cli, ["quota"])
    assert result.exit_code == 1 and "NEWSLETTER_KIT_BUSY_TIMEOUT" in one_line_error(result.stderr)


# --- read-only stores (permissions, as an unprivileged user) -------------------------------------


def _unprivileged(args: list[str], db: Path) -> subprocess.CompletedProcess[str]:
    """``newsletter-kit --db DB ARGS`` in a new process to which file permissions apply."""
    cmd = [sys.executable, "-m", "newsletter_kit", "--db", str(db), *args]
    if os.geteuid() == 0:
        probe = subprocess.run(["unshare", "--user", "true"], capture_output=True) if shutil.which("unshare") else None
        if probe is None or probe.returncode != 0:
            pytest.skip("running as root without user namespaces (unshare --user): permissions "
                        "cannot be tested here")
        cmd = ["unshare", "--user", *cmd]
    env = {**os.environ, "NEWSLETTER_KIT_BUSY_TIMEOUT": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


@contextmanager
def mode(path: Path, bits: int) -> Iterator[None]:
    old = path.stat().st_mode & 0o777
    path.chmod(bits)
    try:
        yield
    finally:
        path.chmod(old)


def test_a_read_only_store_file_refuses_writes_in_one_line_and_still_reads(ready, nk_db):
    before = snapshot(nk_db)
    with mode(nk_db, 0o444):
        result = _unprivileged(["settings", "smtp", "--daily-limit", "7"], nk_db)
        line = one_line_error(result.stderr)
        assert result.returncode == 1
        assert f"the store {nk_db} cannot be written" in line and "permissions" in line
        result = _unprivileged(["contacts", "import", str(ready["files"]["csv"]), "--list", "news"], nk_db)
        assert result.returncode == 1 and "cannot be written" in one_line_error(result.stderr)
        reading = _unprivileged(["quota", "--json"], nk_db)
        assert reading.returncode == 0, reading.stderr
    assert snapshot(nk_db) == before


def test_a_store_in_a_read_only_folder_is_one_line_for_readers_and_writers(ready, nk_db):
    before = snapshot(nk_db)
    with mode(nk_db, 0o444), mode(nk_db.parent, 0o555):
        for args in (["quota"], ["campaign", "send", "spring"], ["bounces", "fetch", "--from",
                                                                  str(ready["files"]["reports"])]):
            result = _unprivileged(args, nk_db)
            assert result.returncode == 1, result.stderr
            assert f"{nk_db.name}-wal" in one_line_error(result.stderr)
        new = nk_db.parent / "new.db"
        result = _unprivileged(["init"], new)
        assert result.returncode == 1 and f"cannot open the store {new}" in one_line_error(result.stderr)
        result = _unprivileged(["init"], nk_db.parent / "sub" / "new.db")
        assert result.returncode == 1 and "cannot create the folder" in one_line_error(result.stderr)
        assert not new.exists() and not (nk_db.parent / "sub").exists()
    assert snapshot(nk_db) == before
    assert ready["server"].messages == []


# --- paths that cannot hold a store ----------------------------------------------------------------


@pytest.mark.parametrize("args", [["init"], ["settings", "smtp", "--daily-limit", "7"], ["quota"],
                                  ["contacts", "import", "{csv}"]], ids=" ".join)
@pytest.mark.parametrize("below", ["x.db", "sub/x.db"])
def test_a_store_path_under_a_regular_file_is_one_line(args, below, ready, tmp_path, monkeypatch):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NEWSLETTER_KIT_DB", str(blocker / below))
    result = CliRunner().invoke(cli, _args(args, ready["files"]))
    assert result.exit_code == 1, result.output
    assert f"{blocker} is a file, not a folder" in one_line_error(result.stderr)
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("content", [b"", b"plain text, not SQLite\n" * 50], ids=["empty", "text"])
def test_a_file_that_is_not_a_store_is_one_line_and_left_alone(content, tmp_path):
    path = tmp_path / "other.db"
    path.write_bytes(content)
    for args in (["quota"], ["campaign", "list"], ["settings", "show", "--json"]):
        result = CliRunner().invoke(cli, ["--db", str(path), *args])
        assert result.exit_code == 1, result.output
        assert str(path) in one_line_error(result.stderr)
    assert path.read_bytes() == content


# --- commands that only read never create a store ------------------------------------------------

NO_CREATE = [
    ["quota"], ["quota", "--json"], ["campaign", "status", "spring", "--json"], ["campaign", "list"],
    ["suppressions", "list"], ["suppressions", "list", "--json"], ["settings", "show"],
    ["settings", "show", "--json"], ["contacts", "list"], ["settings", "test"], ["settings", "folders"],
    ["campaign", "send", "spring"], ["bounces", "fetch"], ["suppressions", "remove", "a@example.org"],
]


@pytest.mark.parametrize("how", ["--db", "env"])
@pytest.mark.parametrize("args", NO_CREATE, ids=" ".join)
def test_a_mistyped_store_path_is_reported_and_nothing_is_created(args, how, tmp_path, monkeypatch):
    typo = tmp_path / "dta" / "newsleter.db"
    if how == "env":
        monkeypatch.setenv("NEWSLETTER_KIT_DB", str(typo))
        result = CliRunner().invoke(cli, args)
    else:
        result = CliRunner().invoke(cli, ["--db", str(typo), *args])
    assert result.exit_code == 1, result.output
    line = one_line_error(result.stderr)
    assert f"no store at {typo}" in line and "newsletter-kit init" in line
    assert not typo.parent.exists()


def test_init_then_the_readers_work(tmp_path):
    db = tmp_path / "new" / "nk.db"
    assert CliRunner().invoke(cli, ["--db", str(db), "init"]).exit_code == 0
    result = CliRunner().invoke(cli, ["--db", str(db), "settings", "show", "--json"])
    assert result.exit_code == 0 and result.stdout.strip().startswith("{")
