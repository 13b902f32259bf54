"""Benchmark: every review table at 1,000,000 deliveries and 100,000 bounces.

Fills a fresh store with bulk inserts (executemany in one transaction), then times each table
of :mod:`newsletter_kit.review` against two baselines measured in the same run: a full scan of the
ledger (``SELECT COUNT(*) ... WHERE sent_at IS NOT NULL``) and loading the raw bounces into pandas
(``pd.read_sql("SELECT * FROM bounces")``). The goal: every table under 1 s.

Usage::

    .venv/bin/python benchmarks/review.py [--deliveries 1000000] [--bounces 100000] [--db PATH]

``--db`` keeps the filled store; given again, the filled store is reused (filling takes minutes
on a loaded machine). The load average is printed before and after: the wall clock of a shared
machine counts the other processes' time, the CPU seconds much less so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from newsletter_kit import review
from newsletter_kit.settings import update_bounce_settings, update_smtp_settings
from newsletter_kit.store import Store, open_store

START = pd.Timestamp("2026-09-01T06:00:00Z")
KINDS = np.array(["hard", "soft", "policy", "delayed", "complaint"], dtype=object)
KIND_P = [0.4, 0.35, 0.1, 0.1, 0.05]
STATUS = {"hard": ["5.1.1", "5.1.2", "5.2.1"], "soft": ["4.2.2", "4.4.1", "4.2.0"],
          "policy": ["5.7.1", "5.7.26"], "delayed": ["4.4.7"], "complaint": [None]}


def iso(seconds: np.ndarray) -> np.ndarray:
    """Seconds after START as the store's UTC ISO text."""
    stamps = np.datetime64(START.tz_localize(None)) + seconds.astype("timedelta64[s]")
    return np.char.add(np.datetime_as_string(stamps, unit="s"), "+00:00")


def fill(store: Store, n_deliveries: int, n_bounces: int, seed: int = 7) -> None:
    """Insert campaigns, the ledger, bounces, suppressions, opt-outs and quota days.

    20 campaigns, three days apart, each sent to a random quarter of the addresses over three
    days; the last one is still sending (1% of its rows pending). Bounces pick random sent or
    failed deliveries and arrive 1 minute to 6 hours after them.
    """
    rng = np.random.default_rng(seed)
    n_campaigns = 20
    per_campaign = n_deliveries // n_campaigns
    n_addresses = max(per_campaign * 4, 1000)
    addresses = np.array([f"u{i}@d{i % 500}.example" for i in range(n_addresses)], dtype=object)
    now = START.isoformat()
    conn = store.conn
    with store.transaction():
        conn.executemany(
            "INSERT INTO campaigns (id, name, list_name, subject, html, status, created_at, updated_at) "
            "VALUES (?, ?, 'all', 's', '<p>x</p>', ?, ?, ?)",
            [(c + 1, f"campaign-{c + 1}", "sending" if c == n_campaigns - 1 else "done", now, now)
             for c in range(n_campaigns)],
        )
        ids = np.arange(1, n_campaigns * per_campaign + 1)
        campaign = np.repeat(np.arange(1, n_campaigns + 1), per_campaign)
        who = np.concatenate([rng.choice(n_addresses, per_campaign, replace=False) for _ in range(n_campaigns)])
        email = addresses[who]
        state = rng.choice(np.array(["sent", "failed", "excluded", "pending"], dtype=object), ids.size,
                           p=[0.96, 0.02, 0.01, 0.01])
        seconds = (campaign - 1) * 3 * 86400 + rng.integers(0, 3 * 86400, ids.size)
        attempted = (state == "sent") | (state == "failed")
        sent_at = np.where(attempted, iso(seconds).astype(object), None)
        message_id = np.char.add(np.char.add("<", ids.astype(str)), "@bench.example>").astype(object)
        conn.executemany(
            "INSERT INTO deliveries (id, campaign_id, email, state, message_id, sent_at, created_at, updated_at) "
            f"VALUES (?, ?, ?, ?, ?, ?, '{now}', '{now}')",
            zip(ids.tolist(), campaign.tolist(), email, state, message_id, sent_at))
        picks = rng.choice(np.flatnonzero(attempted), size=n_bounces, replace=False)
        kinds = rng.choice(KINDS, size=n_bounces, p=KIND_P).astype(object)
        statuses = np.array([STATUS[k][n % len(STATUS[k])] for n, k in enumerate(kinds)], dtype=object)
        bounced_at = iso(seconds[picks] + rng.integers(60, 6 * 3600, n_bounces)).astype(object)
        conn.executemany(
            "INSERT INTO bounces (email, kind, status, action, diagnostic, campaign, delivery_id, "
            "original_message_id, report_key, source, bounced_at, recorded_at) "
            f"VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, ?, 'imap', ?, '{now}')",
            zip(email[picks], kinds, statuses, np.char.add(statuses.astype(str), " diagnostic").astype(object),
                np.char.add("campaign-", campaign[picks].astype(str)).astype(object), ids[picks].tolist(),
                message_id[picks], [f"msg:{n}" for n in range(n_bounces)], bounced_at))
        if any(row[1] == "reason" for row in conn.execute("PRAGMA table_info(bounces)")):
            # What the recorder writes since issue 15; a policy block is about us half the time.
            conn.execute("UPDATE bounces SET reason = CASE kind WHEN 'hard' THEN 'user_unknown'"
                         " WHEN 'soft' THEN 'mailbox_full' WHEN 'complaint' THEN 'feedback'"
                         " WHEN 'policy' THEN CASE WHEN id % 2 THEN 'blocked' ELSE 'filtered' END"
                         " ELSE 'undefined' END")
        hard = sorted(set(email[picks][kinds == "hard"]))[: n_bounces // 10]
        conn.executemany(
            "INSERT INTO suppressions (email, since, reason, bounce_count, evidence) VALUES (?, ?, 'threshold', 1, ?)",
            [(e, now, json.dumps([{"bounce_id": 1, "date": now, "kind": "hard", "status": "5.1.1"}])) for e in hard])
        conn.executemany(
            "INSERT OR IGNORE INTO unsubscribes (email, campaign, source, created_at) VALUES (?, ?, 'one-click', ?)",
            [(addresses[i], f"campaign-{1 + i % n_campaigns}", now) for i in rng.choice(n_addresses, min(5000, n_addresses), replace=False)])
        days = pd.date_range(START, periods=n_campaigns * 3 + 2, freq="D")
        conn.executemany("INSERT INTO quota_days (day, used, reserved) VALUES (?, ?, 0)",
                         [(d.strftime("%Y-%m-%d"), int(per_campaign / 3)) for d in days])
    conn.execute("ANALYZE")


class _Rollback(Exception):
    pass


def threshold_step(store: Store, addresses: list[str]) -> None:
    """What a fetch runs after recording a batch (apply_threshold on the touched addresses),
    rolled back so that every repetition does the same work."""
    from newsletter_kit.suppressions import apply_threshold

    try:
        with store.transaction():
            apply_threshold(store, None, addresses)
            raise _Rollback
    except _Rollback:
        pass


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of ``repeat`` runs.

    CPU time (this process) is printed too because on a shared machine the wall clock also
    counts the time other processes held the CPU; the ratios use the wall clock.
    """
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--bounces", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", help="store path (default: a temporary file)")
    args = parser.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    path = Path(args.db) if args.db else Path(tmp.name) / "bench.db"
    store = open_store(path)
    update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=20000,
                         from_addr="news@example.org", timezone="Europe/Rome")
    update_bounce_settings(store, host="127.0.0.1", port=143, user="bounces@example.org", threshold=3,
                           tls="starttls", password_ref="env:NK_BENCH_UNUSED")
    start = time.perf_counter()
    if store.conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]:
        print(f"reusing the filled store {path}", file=sys.stderr)
    else:
        fill(store, args.deliveries, args.bounces)
        print(f"filled {args.deliveries:,} deliveries, {args.bounces:,} bounces in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    print("load average (1, 5, 15 min): {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))

    scan, scan_cpu = timed(
        lambda: store.conn.execute("SELECT COUNT(*) FROM deliveries WHERE sent_at IS NOT NULL").fetchone(), args.repeat)
    load, load_cpu = timed(lambda: pd.read_sql("SELECT * FROM bounces", store.conn), args.repeat)
    print(f"{'baseline':34} {'seconds':>8} {'cpu s':>8}")
    print(f"{'ledger COUNT(*) scan':34} {scan:8.3f} {scan_cpu:8.3f}")
    print(f"{'read_sql(SELECT * FROM bounces)':34} {load:8.3f} {load_cpu:8.3f}")
    # The threshold step after a fetch: only the addresses the new reports touched.
    touched = [row[0] for row in store.conn.execute(
        "SELECT DISTINCT email FROM bounces ORDER BY id DESC LIMIT 100")]
    tables: dict[str, Callable[[], Any]] = {
        "bounces_by_address": lambda: review.bounces_by_address(store),
        "bounces_by_address (top 100)": lambda: review.bounces_by_address(store, top=100),
        "bounces_by_domain": lambda: review.bounces_by_domain(store),
        "bounces_by_domain (with_sent)": lambda: review.bounces_by_domain(store, with_sent=True),
        "bounces_by_status": lambda: review.bounces_by_status(store),
        "bounces_by_day": lambda: review.bounces_by_day(store),
        "campaign_summary": lambda: review.campaign_summary(store),
        "quota_by_day": lambda: review.quota_by_day(store),
        "suppression_table": lambda: review.suppression_table(store),
        "threshold_counts": lambda: review.threshold_counts(store),
        "threshold_counts (all options)": lambda: review.threshold_counts(
            store, count_policy=True, stale_after_days=30, reset_on_success=True,
            now=START.to_pydatetime() + pd.Timedelta(days=60)),
        "threshold_what_if": lambda: review.threshold_what_if(store, 10),
        "campaign_forecast": lambda: review.campaign_forecast(store),
        "threshold step (100 addresses)": lambda: threshold_step(store, touched),
    }
    for name in ("bounces_by_reason", "sender_problems", "policy_counts"):  # issue 15's tables
        if hasattr(review, name):
            tables[name] = (lambda fn: lambda: fn(store))(getattr(review, name))
    print(f"\n{'table':34} {'seconds':>8} {'cpu s':>8} {'/scan':>8} {'/load':>8}  under 1 s")
    slow = []
    for name, fn in tables.items():
        seconds, cpu = timed(fn, args.repeat)
        ok = seconds < 1.0
        if not ok:
            slow.append(name)
        print(f"{name:34} {seconds:8.3f} {cpu:8.3f} {seconds / scan:8.1f} {seconds / load:8.2f}  {'yes' if ok else 'NO'}")
    print("load average (1, 5, 15 min): {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    store.close()
    tmp.cleanup()
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
