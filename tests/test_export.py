"""export.py / `review export`: the files are read back by a second engine (DuckDB), not by us.

The store is the demo's: a campaign really sent to the in-process SMTP server, its bounces
really fetched and suppressed. Every count DuckDB finds is compared with SQLite's and pandas'.
"""

from __future__ import annotations

import inspect
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import newsletter_kit as nk
from newsletter_kit import demo, export, review
from newsletter_kit.store import Store, open_store


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    db = tmp_path_factory.mktemp("export") / "demo.db"
    store = open_store(db)
    try:
        demo.run_demo(store, say=lambda line: None)
    finally:
        demo.stop_demo_servers()
        store.close()
    yield db


def _sqlite(store: Store, sql: str) -> list[tuple]:
    return [tuple(row) for row in store.conn.execute(sql)]


def _duck(sql: str) -> list[tuple]:
    con = duckdb.connect()
    try:
        return [tuple(row) for row in con.execute(sql).fetchall()]
    finally:
        con.close()


def _expected_rows(store: Store) -> dict[str, int]:
    rows = {t: store.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in export.RAW_TABLES}
    for name, kwargs in export.REVIEW_TABLES.items():
        rows[name] = len(getattr(review, name)(store, **kwargs))
    return rows


def test_parquet_export_from_the_cli_is_read_back_by_duckdb_with_the_same_counts(demo_db: Path, tmp_path: Path):
    out = tmp_path / "take-away"
    proc = subprocess.run([sys.executable, "-m", "newsletter_kit", "--db", str(demo_db), "review", "export", str(out)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    store = open_store(demo_db)
    expected = _expected_rows(store)
    assert expected["deliveries"] > 0 and expected["bounces"] > 0 and expected["suppressions"] > 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.parquet" for name in expected)
    found = {name: _duck(f"SELECT COUNT(*) FROM '{out / name}.parquet'")[0][0] for name in expected}
    assert found == expected

    # Beyond counts: the ledger's states, bounce kinds, the campaign name joined in, and times.
    assert sorted(_duck(f"SELECT campaign, state, COUNT(*) FROM '{out}/deliveries.parquet' GROUP BY ALL")) == sorted(
        _sqlite(store, "SELECT c.name, d.state, COUNT(*) FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id"
                       " GROUP BY 1, 2"))
    assert sorted(_duck(f"SELECT kind, COUNT(*) FROM '{out}/bounces.parquet' GROUP BY kind")) == sorted(
        _sqlite(store, "SELECT kind, COUNT(*) FROM bounces GROUP BY kind"))
    last_sent = store.conn.execute("SELECT MAX(sent_at) FROM deliveries").fetchone()[0]
    duck_last = _duck(f"SELECT MAX(sent_at) FROM '{out}/deliveries.parquet'")[0][0]
    assert pd.Timestamp(duck_last) == pd.Timestamp(last_sent)
    assert _duck(f"SELECT SUM(sent) FROM '{out}/campaign_summary.parquet'")[0][0] == store.conn.execute(
        "SELECT COUNT(*) FROM deliveries WHERE state = 'sent'").fetchone()[0]
    assert sorted(r[0] for r in _duck(f"SELECT email FROM '{out}/suppression_table.parquet'")) == sorted(
        r[0] for r in _sqlite(store, "SELECT email FROM suppressions"))


def test_csv_export_is_read_back_by_duckdb_with_the_same_counts(demo_db: Path, tmp_path: Path):
    store = open_store(demo_db)
    report = nk.export_review(store, tmp_path / "csv", format="csv")
    expected = _expected_rows(store)
    assert report.tables == expected
    for name, rows in expected.items():
        path = report.path(name)
        assert path.name == f"{name}.csv"
        assert _duck(f"SELECT COUNT(*) FROM read_csv('{path}', header=true)")[0][0] == rows, name
    # The evidence list is JSON text a reader can parse, not a Python repr.
    evidence = pd.read_csv(report.path("suppression_table"))["evidence"]
    assert all(text.startswith('[{"bounce_id"') for text in evidence)


def test_every_review_table_is_exported():
    """A DataFrame added to review.py later must land in the export too (or this fails)."""
    tables = [name for name in review.__all__
              if inspect.isfunction(getattr(review, name))
              and "DataFrame" in str(inspect.signature(getattr(review, name)).return_annotation)]
    assert tables and sorted(tables) == sorted(export.REVIEW_TABLES)


def test_empty_store_gives_typed_empty_files(tmp_path: Path):
    report = nk.export_review(open_store(":memory:"), tmp_path)
    assert set(report.tables.values()) == {0} | {report.tables["threshold_what_if"]}
    columns = dict(_duck(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM "
                         f"'{report.path('deliveries')}')"))
    assert columns["campaign"] == "VARCHAR"
    assert columns["sent_at"] == "TIMESTAMP WITH TIME ZONE"
    assert columns["attempts"] == "BIGINT"


def test_export_replaces_its_files_and_leaves_others_alone(tmp_path: Path):
    store = open_store(":memory:")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "bounces.csv").write_text("stale")
    nk.export_review(store, tmp_path, format="csv")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "bounces.csv").read_text().startswith("id,email,kind")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_time_that_is_not_iso_is_a_clear_error_and_leaves_no_file(tmp_path: Path):
    store = open_store(":memory:")
    store.conn.execute("INSERT INTO bounces (email, kind, report_key, source, bounced_at, recorded_at)"
                       " VALUES ('a@example.org', 'hard', 'r1', 'file', 'yesterday', '2026-03-01T00:00:00+00:00')")
    with pytest.raises(nk.ExportError, match=r"bounces\.bounced_at holds 'yesterday'"):
        nk.export_review(store, tmp_path)
    assert not (tmp_path / "bounces.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_folder_that_cannot_be_made_is_one_line(tmp_path: Path, nk_db: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    open_store(nk_db).close()  # export reads an existing store only (a mistyped --db creates none)
    proc = subprocess.run([sys.executable, "-m", "newsletter_kit", "review", "export", str(blocker / "sub"),
                           "--format", "csv"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"Error: cannot create the export folder {blocker / 'sub'}: "
                                                "Not a directory"]


def test_campaign_without_smtp_settings_exports_with_no_forecast(tmp_path: Path):
    store = open_store(":memory:")
    nk.add_contacts(store, [{"email": "ann@example.org"}])
    nk.create_campaign(store, "draft", "all", "Hi", "<p>Hello</p>")
    report = nk.export_review(store, tmp_path)
    assert _duck(f"SELECT campaign, pending, finish FROM '{report.path('campaign_forecast')}'") == [("draft", 1, None)]


# --- planted symbolic links (issue 16, finding 6) -------------------------------------------------


def _plant(folder: Path, outside: Path) -> dict[str, Path]:
    """Links an attacker with write access to a shared export folder could leave there: at the
    old fixed temporary names, at final names (to a file, to nothing, to a folder)."""
    folder.mkdir()
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious")
    (outside / "a-dir").mkdir()
    links = {
        ".bounces.csv.tmp": victim,                        # the old fixed temporary name
        ".deliveries.csv.tmp": outside / "created-by-tmp",  # dangling: would create a file outside
        "bounces_by_domain.csv": victim,                    # the final name, to a file
        "suppressions.csv": outside / "created-by-final",   # the final name, dangling
        "campaign_summary.csv": outside / "a-dir",          # the final name, to a folder
    }
    for name, target in links.items():
        (folder / name).symlink_to(target)
    return links


@pytest.mark.parametrize("format", ["csv", "parquet"])
def test_export_never_writes_through_a_planted_link(tmp_path: Path, format: str):
    store = open_store(":memory:")
    nk.add_contacts(store, [{"email": "ann@example.org"}])
    folder, outside = tmp_path / "shared", tmp_path / "home"
    _plant(folder, outside)
    if format == "parquet":  # the same plants at the parquet names
        for link in list(folder.iterdir()):
            link.rename(folder / link.name.replace(".csv", ".parquet"))
    report = nk.export_review(store, folder, format=format)
    assert (outside / "victim.txt").read_text() == "precious"
    assert sorted(p.name for p in outside.iterdir()) == ["a-dir", "victim.txt"]
    assert list((outside / "a-dir").iterdir()) == []
    for name in report.tables:  # each final name is now a file of ours, not a link
        path = report.path(name)
        assert path.is_file() and not path.is_symlink(), path
    assert _duck(f"SELECT COUNT(*) FROM '{report.path('bounces_by_domain')}'")[0][0] == 0
    # The planted temporary names are left alone (not ours), and no temporary file of ours remains.
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [
        f".bounces.{format}.tmp", f".deliveries.{format}.tmp"]


def test_export_into_a_folder_that_is_a_link_follows_the_folder_the_user_named(tmp_path: Path):
    real = tmp_path / "real-exports"
    real.mkdir()
    (tmp_path / "exports").symlink_to(real)
    report = nk.export_review(open_store(":memory:"), tmp_path / "exports", format="csv")
    assert (real / "bounces.csv").is_file() and report.path("bounces").resolve() == real / "bounces.csv"


def test_export_files_get_the_usual_permissions(tmp_path: Path):
    old = os.umask(0o022)
    try:
        report = nk.export_review(open_store(":memory:"), tmp_path, format="csv")
    finally:
        os.umask(old)
    assert stat.S_IMODE(report.path("bounces").stat().st_mode) == 0o644


def test_a_final_name_that_is_a_real_folder_is_a_clear_error_and_leaves_nothing(tmp_path: Path):
    (tmp_path / "bounces.csv").mkdir()
    with pytest.raises(nk.ExportError, match=r"cannot write .*bounces\.csv: Is a directory"):
        nk.export_review(open_store(":memory:"), tmp_path, format="csv")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_demo_bounce_files_never_follow_a_planted_link(tmp_path: Path):
    folder, outside = tmp_path / "bounces", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    written = demo.write_bounce(folder, b"Subject: x\r\n\r\nhi\r\n")
    assert written.read_bytes() == b"Subject: x\r\n\r\nhi\r\n" and not written.is_symlink()
    assert [p.name for p in folder.iterdir()] == [written.name]
