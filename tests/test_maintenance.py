"""Backup, info and prune (issue 21): a consistent copy while a real send runs, pruning that keeps
the counts, the evidence and the opt-outs and gives the space back, and the CLI's one-line errors."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

import newsletter_kit as nk
from newsletter_kit import campaigns
from newsletter_kit.errors import CampaignError, StoreError, ValidationError
from newsletter_kit.store import open_store
from tests.sending import addresses, configure, contacts, invoke, make_campaign, start_cli


def _sent(path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM deliveries WHERE state = 'sent'").fetchone()[0]
    finally:
        conn.close()


def test_backup_taken_mid_send_is_consistent_and_holds_part_of_the_send(smtp_server, nk_db, tmp_path):
    srv = smtp_server(tls="none", delay=0.05)
    store = open_store(nk_db)
    configure(store, srv)
    contacts(store, addresses(80))
    make_campaign(store)
    store.close()
    proc = start_cli(["campaign", "send", "spring"])
    try:
        deadline = time.monotonic() + 60
        while _sent(nk_db) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the send finished before the backup could start"
        result = invoke(["store", "backup", str(tmp_path / "copy.db"), "--json"])
        assert result.returncode == 0, result.stderr
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(result.stdout)
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    in_copy = copy.execute("SELECT count(*) FROM deliveries WHERE state = 'sent'").fetchone()[0]
    copy.close()
    assert 5 <= in_copy < 80 == _sent(nk_db)
    assert report["integrity"] == "ok" and report["bytes"] == (tmp_path / "copy.db").stat().st_size
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # The copy is a store: restoring is copying it back; it opens and reads as the store did then.
    restored = open_store(tmp_path / "copy.db", create=False)
    assert campaigns.campaign_status(restored, "spring")["sent"] == in_copy
    assert nk.store_info(open_store(nk_db))["last_backup"]["path"] == str(tmp_path / "copy.db")


def test_backup_refuses_an_existing_destination_without_force(nk_db, tmp_path):
    store = open_store(nk_db)
    dest = tmp_path / "copy.db"
    dest.write_bytes(b"precious")
    result = invoke(["store", "backup", str(dest)])
    assert result.returncode == 1 and "already exists" in result.stderr and "Traceback" not in result.stderr
    assert dest.read_bytes() == b"precious"
    with pytest.raises(StoreError, match="the store itself"):
        nk.backup_store(store, nk_db)
    with pytest.raises(StoreError, match="no such folder"):
        nk.backup_store(store, f"{tmp_path}/missing/")
    with pytest.raises(StoreError, match="does not exist"):
        nk.backup_store(store, tmp_path / "nowhere" / "copy.db")
    assert nk.backup_store(store, dest, force=True).integrity == "ok"
    assert open_store(dest, create=False).schema_version() == store.schema_version()
    # A folder gets a dated file; nothing is left behind but the backups.
    folder = tmp_path / "backups"
    folder.mkdir()
    report = nk.backup_store(store, folder)
    assert [p.name for p in folder.iterdir()] == [report.path.rsplit("/", 1)[1]]


def _history(store, srv):
    """Two finished campaigns to one list; one bounce and one opt-out; a third campaign open."""
    configure(store, srv)
    contacts(store, addresses(40))
    make_campaign(store, "old")
    assert campaigns.send_campaign(store, "old").sent == 40
    make_campaign(store, "older-too")
    assert campaigns.send_campaign(store, "older-too").sent == 40
    make_campaign(store, "open")
    with store.transaction():
        store.conn.execute("UPDATE campaigns SET updated_at = '2020-01-01T00:00:00+00:00' WHERE name != 'open'")
        # A bounce for reader001 (evidence, threshold) and an opt-out for reader002.
        did = store.conn.execute("SELECT d.id FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id "
                                 "WHERE c.name = 'old' AND d.email = 'reader001@example.org'").fetchone()[0]
        store.conn.execute(
            "INSERT INTO bounces (email, kind, status, campaign, delivery_id, report_key, source, bounced_at,"
            " recorded_at, matched_by) VALUES ('reader001@example.org', 'hard', '5.1.1', 'old', ?, 'k1', 'file',"
            " '2020-01-02T00:00:00+00:00', '2020-01-02T00:00:00+00:00', 'message_id')", (did,))
        store.conn.execute("INSERT INTO unsubscribes (email, campaign, source, created_at) VALUES "
                           "('reader002@example.org', NULL, 'csv', '2020-01-03T00:00:00+00:00')")


def test_prune_keeps_counts_evidence_and_opt_outs_and_gives_space_back(smtp_server, nk_db):
    srv = smtp_server(tls="none")
    store = open_store(nk_db)
    _history(store, srv)
    # A bulkier ledger, so that the space given back is plain to see.
    with store.transaction():
        store.conn.execute("UPDATE deliveries SET smtp_reply = printf('%.2000c', 'x')")
    before_status = {n: campaigns.campaign_status(store, n) for n in ("old", "older-too")}
    summary_before = nk.campaign_summary(store).set_index("campaign")[["total", "sent"]]
    sent_by_day = nk.bounces_by_day(store)[["day", "sent"]]
    evidence = store.conn.execute("SELECT email, delivery_id FROM bounces").fetchall()

    dry = invoke(["store", "prune", "--before", "2021-01-01", "--json"])
    assert dry.returncode == 0 and json.loads(dry.stdout)["dry_run"] is True
    assert store.conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 80

    store.close()
    result = invoke(["store", "prune", "--before", "2021-01-01", "--yes", "--json"])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    store = open_store(nk_db)
    assert sorted(report["campaigns"]) == ["old", "older-too"]
    assert report["deleted"] == 78 and report["kept"] == 2  # reader001's rows stay, one per campaign
    assert report["bytes_after"] < report["bytes_before"] * 0.75  # the empty schema alone is ~300 KB
    # The counts add up as before, in the status, the review and the sidebar's overview.
    for name, status in before_status.items():
        assert campaigns.campaign_status(store, name) == status
    summary_after = nk.campaign_summary(store).set_index("campaign")[["total", "sent"]]
    assert summary_after.loc[["old", "older-too"]].equals(summary_before.loc[["old", "older-too"]])
    assert nk.bounces_by_day(store)[["day", "sent"]].equals(sent_by_day)
    # The evidence still points at its delivery; the opt-out and the bounce are there.
    assert store.conn.execute("SELECT email, delivery_id FROM bounces").fetchall() == evidence
    assert store.conn.execute("SELECT count(*) FROM unsubscribes").fetchone()[0] == 1
    # A pruned campaign is archived: it cannot be sent again (it would reach everyone twice).
    assert store.conn.execute("SELECT status FROM campaigns WHERE name = 'old'").fetchone()[0] == "pruned"
    with pytest.raises(CampaignError, match="pruned"):
        campaigns.send_campaign(store, "old")
    # The open campaign was not touched; store info says what happened.
    open_status = campaigns.campaign_status(store, "open")
    assert (open_status["pending"], open_status["excluded"]) == (39, 1)  # the opt-out still excludes
    listed = {c["name"]: c for c in nk.list_campaigns(store)}
    assert (listed["old"]["status"], listed["old"]["sent"]) == ("pruned", 40)
    info = nk.store_info(store)
    assert info["tables"]["deliveries"] == 2 and info["last_prune"]["deleted"] == 78
    # Pruning again changes nothing.
    assert nk.prune_store(store, "2021-01-01").deleted == 0


def test_prune_and_info_errors_are_one_line(nk_db):
    open_store(nk_db).close()
    result = invoke(["store", "prune", "--before", "last tuesday", "--yes"])
    assert result.returncode == 1 and "--before must be a date" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(ValidationError):
        nk.prune_store(open_store(nk_db), "2021-13-01")
    info = invoke(["store", "info", "--json"])
    assert info.returncode == 0 and json.loads(info.stdout)["tables"]["campaigns"] == 0
    assert invoke(["--db", str(nk_db.parent / "none.db"), "store", "info"]).returncode == 1


def test_review_top_addresses_equal_the_head_of_the_whole_frame(nk_db):
    store = open_store(nk_db)
    with store.transaction():
        store.conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)"
            " INSERT INTO bounces (email, kind, status, report_key, source, bounced_at, recorded_at)"
            " SELECT printf('a%d@example.org', i % 97), CASE WHEN i % 3 THEN 'hard' ELSE 'soft' END, '5.1.1',"
            " printf('k%d', i), 'file', printf('2026-01-01T00:%02d:00+00:00', i % 60), '2026-01-01T00:00:00+00:00' FROM n")
    whole = nk.bounces_by_address(store)
    top = nk.bounces_by_address(store, top=10)
    assert top.attrs["rows"] == whole.attrs["rows"] == 97
    assert top.equals(whole.head(10))
    plan = " ".join(str(r) for r in store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT email FROM bounce_addresses ORDER BY total DESC, email LIMIT 10"))
    assert "bounce_addresses_total" in plan and "TEMP B-TREE" not in plan
