"""Recording bounces against the ledger, the threshold policy, suppressions and their command
line: no servers needed. (Reading the sources: test_ingest.py; opt-out replies: test_unsubscribes.py.)"""
from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter_kit import suppressions as nk
from newsletter_kit.bounces import record_smtp_rejection
from newsletter_kit.cli import cli
from newsletter_kit.errors import ValidationError
from newsletter_kit.ingest import fetch_bounces
from newsletter_kit.settings import update_bounce_settings
from newsletter_kit.store import Store, now_iso, open_store
from tests.dsn import postfix_dsn
from tests.dsn import sent_to as _sent
from tests.bouncing import configure as _configure
from tests.bouncing import write_eml as _write
from tests.bouncing import fetch_raws as _fetch_raws


@pytest.fixture
def store(nk_db: Path) -> Store:
    return open_store(nk_db)


def _days_ago(days: float) -> str:
    return email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days))


def _ledger(store: Store, campaign: str, rows: list[tuple[str, str, str | None]]) -> dict[str, int]:
    """Ledger rows (email, message_id, sent_at); returns {email: delivery id}."""
    now = now_iso()
    with store.transaction():
        cid = store.conn.execute(
            "INSERT INTO campaigns (name, list_name, subject, html, status, created_at, updated_at)"
            " VALUES (?, 'all', 's', '<p>h</p>', 'done', ?, ?)", (campaign, now, now)).lastrowid
        ids = {}
        for email_, message_id, sent_at in rows:
            ids[email_] = store.conn.execute(
                "INSERT INTO deliveries (campaign_id, email, state, message_id, created_at, updated_at, sent_at)"
                " VALUES (?, ?, 'sent', ?, ?, ?, ?)", (cid, email_, message_id, now, now, sent_at)).lastrowid
    return ids


# --- recording --------------------------------------------------------------------------------


def test_the_campaign_comes_from_the_ledger_by_message_id(store: Store, tmp_path: Path) -> None:
    settings = _configure(store, threshold=5)
    ids = _ledger(store, "real-name", [("gone@example.org", "<m1@news.example.org>", now_iso())])
    raw = postfix_dsn("gone@example.org", original_message_id="<m1@news.example.org>", campaign="stamped")
    fetch_bounces(store, settings, source_path=_write(tmp_path / "e", [raw]))
    row = store.conn.execute("SELECT campaign, delivery_id, original_message_id FROM bounces").fetchone()
    assert row == ("real-name", ids["gone@example.org"], "<m1@news.example.org>")


# --- the threshold ---------------------------------------------------------------------------


#: A refusal by the recipient's own filter: unclear whom it is about, of a policy kind (5.7.1).
FILTERED = "550 5.7.1 <{rcpt}>: Message refused by recipient's filter rules"


def test_policy_bounces_count_only_with_count_policy(store: Store, tmp_path: Path) -> None:
    settings = _configure(store, threshold=2)
    _sent(store, "p@example.org", "spam@example.org")
    raws = [postfix_dsn("p@example.org", status="5.7.1", diagnostic=FILTERED.format(rcpt="p@example.org"))
            for _ in range(2)]
    # Judged spam: about our message, never the recipient's fault, --count-policy or not.
    raws += [postfix_dsn("spam@example.org", status="5.7.1") for _ in range(2)]
    assert _fetch_raws(store, settings, tmp_path, raws).suppressed == []
    settings, _ = update_bounce_settings(store, count_policy=True)
    assert nk.apply_threshold(store) == ["p@example.org"]
    reasons = dict(store.conn.execute("SELECT email, reason FROM bounces"))
    assert reasons == {"p@example.org": "filtered", "spam@example.org": "spam_detected"}


def test_stale_bounces_are_ignored(store: Store, tmp_path: Path) -> None:
    settings = _configure(store, threshold=2, stale_after_days=7)
    _sent(store, "s@example.org")
    old = postfix_dsn("s@example.org", date=_days_ago(30))
    assert _fetch_raws(store, settings, tmp_path, [old]).suppressed == []
    assert _fetch_raws(store, settings, tmp_path, [postfix_dsn("s@example.org")]).suppressed == []
    assert nk.bounce_counts(store, stale_after_days=7) == {"s@example.org": 1}
    assert nk.bounce_counts(store) == {"s@example.org": 2}
    assert _fetch_raws(store, settings, tmp_path, [postfix_dsn("s@example.org")]).suppressed == ["s@example.org"]


def test_a_later_successful_delivery_resets_the_count(store: Store, tmp_path: Path) -> None:
    settings = _configure(store, threshold=2, reset_on_success=True)
    _sent(store, "r@example.org")
    _fetch_raws(store, settings, tmp_path, [postfix_dsn("r@example.org", date=_days_ago(3))])
    _ledger(store, "later", [("r@example.org", "<later@news>", now_iso())])  # accepted since
    assert nk.bounce_counts(store, reset_on_success=True) == {}
    assert nk.bounce_counts(store) == {"r@example.org": 1}
    # The next bounce starts a new count: one is below the threshold.
    assert _fetch_raws(store, settings, tmp_path, [postfix_dsn("r@example.org")]).suppressed == []
    assert _fetch_raws(store, settings, tmp_path, [postfix_dsn("r@example.org")]).suppressed == ["r@example.org"]


def test_a_delivery_that_bounced_is_not_a_success(store: Store, tmp_path: Path) -> None:
    settings = _configure(store, threshold=2, reset_on_success=True)
    _sent(store, "q@example.org")
    _fetch_raws(store, settings, tmp_path, [postfix_dsn("q@example.org", date=_days_ago(3))])
    _ledger(store, "later", [("q@example.org", "<q-later@news>", _days_ago_iso(2))])
    report = _fetch_raws(store, settings, tmp_path, [postfix_dsn("q@example.org", original_message_id="<q-later@news>")])
    assert report.suppressed == ["q@example.org"]


def _days_ago_iso(days: float) -> str:
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)).replace(microsecond=0).isoformat()


def test_suppressions_list_remove_and_the_audit_trail(store: Store, tmp_path: Path) -> None:
    settings = _configure(store, threshold=2)
    _sent(store, "a@example.org")
    _fetch_raws(store, settings, tmp_path, [postfix_dsn("a@example.org", status="5.2.2") for _ in range(2)])
    [row] = nk.list_suppressions(store)
    assert row["address"] == "a@example.org" and row["bounces"] == 2 and row["reason"] == "threshold"
    assert [(e["kind"], e["status"]) for e in row["evidence"]] == [("soft", "5.2.2")] * 2
    assert all(e["bounce_id"] and e["date"] and "Quota exceeded" in e["diagnostic"] for e in row["evidence"])

    nk.remove_suppression(store, "A@example.org", by="analyst")
    assert nk.list_suppressions(store) == []
    history = nk.suppression_history(store, "a@example.org")
    assert [h["action"] for h in history] == ["suppressed", "lifted"]
    assert history[1]["by"] == "analyst" and len(history[1]["evidence"]) == 2
    # The old bounces no longer count; only new ones can suppress it again.
    assert nk.apply_threshold(store, settings) == []
    assert _fetch_raws(store, settings, tmp_path, [postfix_dsn("a@example.org")]).suppressed == []
    assert _fetch_raws(store, settings, tmp_path, [postfix_dsn("a@example.org")]).suppressed == ["a@example.org"]
    assert [h["action"] for h in nk.suppression_history(store, "a@example.org")] == ["suppressed", "lifted", "suppressed"]
    with pytest.raises(ValidationError, match="not suppressed"):
        nk.remove_suppression(store, "nobody@example.org")


def test_suppressed_is_never_unsubscribed(store: Store, tmp_path: Path) -> None:
    settings = _configure(store)
    _sent(store, "b@example.org")
    _fetch_raws(store, settings, tmp_path, [postfix_dsn("b@example.org")])
    assert nk.suppress(store, "manual@example.org") is True
    assert {r["address"] for r in nk.list_suppressions(store)} == {"b@example.org", "manual@example.org"}
    assert store.conn.execute("SELECT count(*) FROM unsubscribes").fetchone()[0] == 0


def test_smtp_rejections_count_as_bounces(store: Store) -> None:
    settings = _configure(store, threshold=2)
    ids = _ledger(store, "nov", [("x@example.org", "<x1@news>", None), ("y@example.org", "<y1@news>", None)])
    args = dict(campaign="nov", code=550, status="5.1.1", reply="550 5.1.1 User unknown")
    assert record_smtp_rejection(store, email="x@example.org", delivery_id=ids["x@example.org"], **args) == []
    # The same rejection recorded twice is one bounce.
    assert record_smtp_rejection(store, email="x@example.org", delivery_id=ids["x@example.org"], **args) == []
    assert record_smtp_rejection(store, email="x@example.org", delivery_id=None, settings=settings,
                                    **{**args, "campaign": "dec"}) == ["x@example.org"]
    # 5.7.x is policy (not counted by default); 4xx is a deferral, not recorded.
    assert record_smtp_rejection(store, email="y@example.org", delivery_id=ids["y@example.org"],
                                    campaign="nov", code=554, status="5.7.1", reply="554 5.7.1 spam") == []
    assert record_smtp_rejection(store, email="y@example.org", delivery_id=None, campaign="dec",
                                    code=451, status="4.3.0", reply="451 try later") == []
    rows = store.conn.execute("SELECT email, kind, source, report_key FROM bounces ORDER BY id").fetchall()
    assert rows == [("x@example.org", "hard", "smtp", f"smtp:{ids['x@example.org']}"),
                    ("x@example.org", "hard", "smtp", "smtp:dec:x@example.org"),
                    ("y@example.org", "policy", "smtp", f"smtp:{ids['y@example.org']}")]


def test_counting_query_is_usable_from_pandas(store: Store, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    settings = _configure(store, threshold=9)
    _sent(store, "a@example.org", "b@example.org")
    _fetch_raws(store, settings, tmp_path, [
        postfix_dsn("a@example.org"),
        postfix_dsn("b@example.org", status="5.7.1", diagnostic=FILTERED.format(rcpt="b@example.org"))])
    sql, params = nk.counting_query(count_policy=True)
    frame = pd.read_sql(sql, store.conn, params=params)
    assert sorted(frame["email"]) == ["a@example.org", "b@example.org"]
    assert frame.set_index("email")["counted_as"].to_dict() == {"a@example.org": "hard", "b@example.org": "soft"}


# --- command line ---------------------------------------------------------------------------


def test_cli_fetch_from_files_and_suppressions(store: Store, tmp_path: Path, nk_db: Path) -> None:
    _configure(store, threshold=1)
    _sent(store, "c@example.org", "d@example.org")
    folder = _write(tmp_path / "eml", [postfix_dsn("c@example.org"), postfix_dsn("d@example.org", delayed=True, status="4.4.1")])
    runner = CliRunner()

    result = runner.invoke(cli, ["bounces", "fetch", "--from", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"fetched": 2, "bounces": {"delayed": 1, "hard": 1}, "unmatched": 0, "suppressed": ["c@example.org"]}

    result = runner.invoke(cli, ["bounces", "fetch", "--from", str(folder)])
    assert result.exit_code == 0 and "fetched 0 new message(s) (2 already seen)" in result.stderr

    result = runner.invoke(cli, ["suppressions", "list", "--json"])
    [row] = json.loads(result.stdout)
    assert row["address"] == "c@example.org" and row["bounces"] == 1 and row["evidence"][0]["status"] == "5.1.1"

    result = runner.invoke(cli, ["suppressions", "remove", "c@example.org", "--by", "me"])
    assert result.exit_code == 0 and "no longer suppressed" in result.stderr
    result = runner.invoke(cli, ["suppressions", "remove", "c@example.org"])
    assert result.exit_code == 1 and result.stderr.strip() == "Error: c@example.org is not suppressed"
    assert json.loads(runner.invoke(cli, ["suppressions", "list", "--json"]).stdout) == []


# --- the threshold policy: one value object ---------------------------------------------------


def test_one_threshold_policy_for_settings_counting_review_and_panel(store: Store, tmp_path: Path) -> None:
    from newsletter_kit import review

    assert review.ThresholdPolicy is nk.ThresholdPolicy
    settings = _configure(store, threshold=2, count_policy=True, stale_after_days=30, reset_on_success=True)
    policy = settings.policy
    assert policy == nk.ThresholdPolicy(2, count_policy=True, stale_after_days=30, reset_on_success=True,
                                        count_unmatched=False)
    assert nk.ThresholdPolicy.from_store(store) == policy
    assert nk.ThresholdPolicy.from_store(store, threshold=5, stale_after_days=0) == policy.replace(
        threshold=5, stale_after_days=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.threshold = 9  # type: ignore[misc]
    # The keyword form and the policy form are one query.
    assert nk.counting_query(policy, now="2026-11-30T00:00:00+00:00") == nk.counting_query(
        count_policy=True, stale_after_days=30, reset_on_success=True, now="2026-11-30T00:00:00+00:00")
    _sent(store, "p@example.org")
    _fetch_raws(store, settings, tmp_path,
                [postfix_dsn("p@example.org", status="5.7.1", diagnostic=FILTERED.format(rcpt="p@example.org"))] * 2)
    # A policy alone (no mailbox settings needed) decides like the settings that hold it.
    other = open_store(tmp_path / "other.db")
    assert nk.apply_threshold(store, nk.ThresholdPolicy(1)) == []  # policy blocks don't count here
    assert nk.apply_threshold(store, policy.replace(threshold=1)) == ["p@example.org"]
    assert nk.apply_threshold(other, nk.ThresholdPolicy(1)) == []


@pytest.mark.parametrize("bad", [{"threshold": 0}, {"threshold": True}, {"stale_after_days": -1}])
def test_a_policy_refuses_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        nk.ThresholdPolicy(**bad)


def test_the_panel_applies_a_policy_not_fake_settings() -> None:
    source = (Path(nk.__file__).parent / "panels" / "bounces.py").read_text()
    assert "BounceSettings(" not in source and "ThresholdPolicy" in source
