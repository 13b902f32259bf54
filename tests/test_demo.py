"""`newsletter-kit demo`: the whole flow on the in-process demo server, numbers checked in the store."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import newsletter_kit as nk
from newsletter_kit import demo
from newsletter_kit.bounces import parse_bounce_file


def _run(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "newsletter_kit", "--db", str(db), *args],
                          capture_output=True, text=True, timeout=240)


def _numbers(stdout: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^([a-z ]+): (\d+)", stdout, re.M)}


def _contacts_by_prefix() -> dict[str, set[str]]:
    lines = demo.sample_contacts_path().read_text(encoding="utf-8").splitlines()[1:]
    emails = {line.split(",")[0] for line in lines}
    return {p: {e for e in emails if e.startswith(p)} for p in ("reject.", "unknown.", "full.")}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One `newsletter-kit demo` on a fresh store (the history is recorded once, then reused)."""
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    proc = _run("demo", db=db)
    assert proc.returncode == 0, proc.stderr
    return db, proc.stdout


def test_demo_command_prints_what_the_store_holds(demo_run: tuple[Path, str]) -> None:
    db, stdout = demo_run
    printed = _numbers(stdout)
    store = nk.open_store(db)
    cid = store.conn.execute("SELECT id FROM campaigns WHERE name = 'spring-sale'").fetchone()[0]
    states = dict(store.conn.execute(
        "SELECT state, count(*) FROM deliveries WHERE campaign_id = ? GROUP BY state", (cid,)).fetchall())
    bounced = store.conn.execute(
        "SELECT count(DISTINCT email) FROM bounces WHERE campaign = 'spring-sale' AND source != 'smtp'"
    ).fetchone()[0]
    suppressed = {r[0] for r in store.conn.execute("SELECT email FROM suppressions")}
    assert printed["sent"] == states["sent"]
    assert printed["rejected"] == states["failed"]
    assert printed["bounced"] == bounced
    assert printed["history"] == 12 and printed["history contacts"] == 2000
    assert printed["history suppressed"] == printed["suppressed in all"] == len(suppressed) > 0
    # What the demo data and server are made to do: refused at RCPT, bounced later, accepted.
    faults = _contacts_by_prefix()
    failed = {r[0] for r in store.conn.execute(
        "SELECT email FROM deliveries WHERE campaign_id = ? AND state = 'failed'", (cid,))}
    assert failed == faults["reject."]
    bounced_addresses = {r[0] for r in store.conn.execute(
        "SELECT email FROM bounces WHERE source != 'smtp' AND campaign = 'spring-sale'")}
    assert bounced_addresses == faults["unknown."] | faults["full."]
    # One counted bounce each, the threshold is 3: nobody of today's campaign is suppressed yet.
    assert printed["suppressed"] == 0 and not (suppressed & set().union(*faults.values()))
    # Two opt-outs from the sample file apply to this campaign (global, and this campaign's).
    assert states["excluded"] == 2
    assert printed["sent"] == 50 - 2 - len(faults["reject."])


def test_demo_bounces_are_dsns_that_quote_the_sent_message(demo_run: tuple[Path, str]) -> None:
    db, _ = demo_run
    store = nk.open_store(db)
    files = sorted((db.parent / "demo-bounces").glob("*.eml"))
    todays = [report for report in map(parse_bounce_file, files) if report.campaign == "spring-sale"]
    assert len(todays) == len(_contacts_by_prefix()["unknown."] | _contacts_by_prefix()["full."])
    for report in todays:
        assert report.is_bounce
        (recipient,) = report.recipients
        sent_id = store.conn.execute("SELECT message_id FROM deliveries WHERE email = ?",
                                     (recipient.address,)).fetchone()[0]
        assert report.message_id == sent_id  # traced back to the ledger row
        expected = "5.2.2" if recipient.address.startswith("full.") else "5.1.1"
        assert recipient.status == expected


def test_demo_runs_again_on_the_same_store_with_a_new_campaign(demo_run: tuple[Path, str]) -> None:
    db, _ = demo_run
    second = _run("demo", "--json", db=db)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["campaign"] == "spring-sale-2"
    assert result["history"]["built_now"] is False and result["history"]["campaigns"] == 12
    # Not suppressed after one bounce (threshold 3): refused and bounced again, counted twice now.
    faults = _contacts_by_prefix()
    assert result["rejected"] == len(faults["reject."])
    assert result["bounced"] == len(faults["unknown."] | faults["full."]) and result["suppressed"] == []


def test_demo_refuses_a_store_with_real_settings(tmp_path: Path) -> None:
    db = tmp_path / "real.db"
    store = nk.open_store(db)
    nk.update_smtp_settings(store, host="smtp.example.org", port=587, daily_limit=100,
                            from_addr="news@example.org")
    store.close()
    proc = _run("demo", db=db)
    assert proc.returncode == 1
    assert "real SMTP settings" in proc.stderr and "Traceback" not in proc.stderr
    store = nk.open_store(db)
    smtp = nk.load_smtp_settings(store)
    assert smtp is not None and smtp.host == "smtp.example.org"
    assert store.conn.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0


def test_ensure_demo_settings_follows_the_server_and_steps_aside_for_real_settings(tmp_path: Path) -> None:
    store = nk.open_store(tmp_path / "s.db")
    try:
        env = demo.ensure_demo_settings(store)
        assert env is not None and demo.is_demo_store(store)
        assert nk.load_smtp_settings(store).port == env.smtp_port  # type: ignore[union-attr]
        assert demo.demo_bounce_source(store) == env.bounce_dir
        assert [ok for ok, _ in nk.check_smtp(nk.load_smtp_settings(store))] == [True, True]
        # The user saves a real server: the demo no longer touches the settings.
        nk.update_smtp_settings(store, host="smtp.example.org", port=587)
        assert demo.ensure_demo_settings(store) is None
        assert nk.load_smtp_settings(store).host == "smtp.example.org"  # type: ignore[union-attr]
        assert demo.demo_bounce_source(store) is None
        assert "Your own settings" in demo.describe(store)
    finally:
        demo.stop_demo_servers()


@pytest.mark.parametrize("address, outcome", [
    ("reject.a@example.org", ("rcpt", "5.1.1")),
    ("unknown.a@example.net", ("dsn", "5.1.1")),
    ("full.a@shop.example", ("dsn", "5.2.2")),
    ("ann@example.org", None),
])
def test_demo_fault_addresses(address: str, outcome: tuple[str, str] | None) -> None:
    found = demo.failure_for(address)
    assert (found[0], found[1].status) == outcome if found else outcome is None


def test_kernels_share_the_demo_server_the_store_names(tmp_path: Path) -> None:
    """Issue 19: each notebook's kernel used to start its own server and rewrite the port, so the
    store ended with the port of whichever kernel ran last (dead once that kernel stopped)."""
    import subprocess
    import sys

    db = tmp_path / "demo.db"
    other_kernel = ("import newsletter_kit as nk; s = nk.open_store(%r); "
                    "print(nk.demo.ensure_demo_settings(s).smtp_port)" % str(db))
    store = nk.open_store(db)
    try:
        first = demo.ensure_demo_settings(store)
        assert first is not None and first.server is not None
        # Another kernel while this one's server runs: it sends there, the port stays.
        out = subprocess.run([sys.executable, "-c", other_kernel], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout) == first.smtp_port == nk.load_smtp_settings(store).port  # type: ignore[union-attr]
        assert [ok for ok, _ in nk.check_smtp(nk.load_smtp_settings(store))] == [True, True]
        # This kernel stops: the next one finds the port dead and starts its own.
        demo.stop_demo_servers()
        out = subprocess.run([sys.executable, "-c", other_kernel], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and int(out.stdout) != first.smtp_port, out.stderr
        again = demo.ensure_demo_settings(store)  # that kernel has exited: its port is dead too
        assert again is not None and again.server is not None
        assert nk.load_smtp_settings(store).port == again.smtp_port  # type: ignore[union-attr]
    finally:
        demo.stop_demo_servers()
        store.close()
