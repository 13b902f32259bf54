"""Benchmark: the sidebar's poll (``GET /newsletter-kit/status``) on a store that lived for years.

Two stores built with bulk SQL (recursive CTEs), cached under /tmp: both hold 200,000 contacts on
one list, 20 campaigns with 10,000 deliveries each (200,000 in all; the last one still sending,
half of its rows pending) and opt-outs and suppressions; the big one also holds 3,000 draft
campaigns on the whole list. For each store the script writes one row (an opt-out: every poll
cache is void), then times the first :func:`~newsletter_kit.overview.overview_of_path` after it
(wall and CPU, median of 5) and the size of the JSON answer, and the same for an unchanged store.
The goal (issue 21): the big store's first answer after a write within 0.5 s, or 2x the
20-campaign store's, and within 50 KB.

Usage::

    .venv/bin/python benchmarks/status.py [--contacts 200000] [--drafts 3000] [--dir /tmp/nk-bench-status]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from newsletter_kit.overview import overview_of_path
from newsletter_kit.settings import update_smtp_settings
from newsletter_kit.store import open_store

NOW = "2026-09-01T06:00:00+00:00"


def build(path: Path, contacts: int, drafts: int) -> None:
    """Fill a fresh store at ``path`` (see the module docstring)."""
    store = open_store(path)
    update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=50_000,
                         from_addr="news@example.org", timezone="UTC")
    conn = store.conn
    per_campaign = contacts // 20
    with store.transaction():
        conn.execute("INSERT INTO lists (id, name, created_at) VALUES (1, 'all', ?)", (NOW,))
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO contacts (id, email, fields, created_at, updated_at)"
            " SELECT i, printf('u%d@d%d.example', i, i % 500), '{}', ?, ? FROM n", (contacts, NOW, NOW))
        conn.execute("INSERT INTO list_members (list_id, contact_id, added_at) SELECT 1, id, ? FROM contacts", (NOW,))
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)"
            " INSERT INTO campaigns (id, name, list_name, subject, html, status, created_at, updated_at)"
            " SELECT i, printf('sent-%02d', i), 'all', 's', '<p>x</p>', CASE WHEN i = 20 THEN 'sending' ELSE 'done' END,"
            " datetime('2025-01-01', printf('+%d days', i * 3)), ? FROM n", (NOW,))
        # Campaign c goes to a slice of the list: contacts (c-1)*per+1 .. c*per.
        conn.execute(
            "INSERT INTO deliveries (campaign_id, contact_id, email, state, message_id, created_at, updated_at, sent_at)"
            " SELECT c.id, k.id, k.email,"
            "  CASE WHEN c.id = 20 AND k.id % 2 = 0 THEN 'pending' WHEN k.id % 50 = 0 THEN 'failed' ELSE 'sent' END,"
            "  printf('<%d.%d@bench.example>', c.id, k.id), ?, ?, ?"
            " FROM campaigns c JOIN contacts k ON k.id > (c.id - 1) * ? AND k.id <= c.id * ?",
            (NOW, NOW, NOW, per_campaign, per_campaign))
        conn.execute("INSERT INTO unsubscribes (email, campaign, source, created_at)"
                     " SELECT email, NULL, 'csv', ? FROM contacts WHERE id % 97 = 0", (NOW,))
        conn.execute("INSERT INTO suppressions (email, since, reason) SELECT email, ?, 'threshold'"
                     " FROM contacts WHERE id % 89 = 0", (NOW,))
        if drafts:
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                " INSERT INTO campaigns (name, list_name, subject, html, status, created_at, updated_at)"
                " SELECT printf('draft-%04d', i), 'all', 's', '<p>x</p>', 'draft',"
                " datetime('2025-03-01', printf('+%d hours', i)), ? FROM n", (drafts, NOW))
    conn.execute("ANALYZE")
    store.close()


def poll(path: Path, write: bool) -> tuple[float, float, int]:
    """(wall s, CPU s, bytes) of one poll, after one write when ``write``."""
    if write:
        store = open_store(path)
        with store.transaction():
            store.conn.execute("INSERT INTO unsubscribes (email, campaign, source, created_at)"
                               " VALUES (printf('w%d@bench.example', abs(random())), NULL, 'csv', ?)", (NOW,))
        store.close()
    wall, cpu = time.perf_counter(), time.process_time()
    answer = overview_of_path(path)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert answer["error"] is None, answer["error"]
    return wall, cpu, len(json.dumps(answer).encode())


def measure(path: Path, write: bool, runs: int = 5) -> dict[str, float]:
    results = [poll(path, write) for _ in range(runs)]
    return {"wall": statistics.median(r[0] for r in results), "cpu": statistics.median(r[1] for r in results),
            "bytes": results[-1][2]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--drafts", type=int, default=3_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/nk-bench-status"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    stores = {}
    for label, drafts in (("20 campaigns", 0), (f"{20 + args.drafts} campaigns", args.drafts)):
        path = args.dir / f"status-{args.contacts}-{drafts}.db"
        if not path.exists():
            started = time.perf_counter()
            build(path, args.contacts, drafts)
            print(f"built {path} in {time.perf_counter() - started:.1f} s")
        stores[label] = path
    rows = {}
    for label, path in stores.items():
        rows[label] = {"after a write": measure(path, True), "unchanged": measure(path, False)}
    small, big = (rows[label]["after a write"] for label in stores)
    for label, row in rows.items():
        for case, m in row.items():
            print(f"{label:>16} {case:>14}: {m['wall'] * 1000:7.1f} ms wall {m['cpu'] * 1000:7.1f} ms CPU"
                  f" {m['bytes'] / 1024:6.1f} KB")
    ratio = big["wall"] / small["wall"]
    ok = (big["wall"] <= 0.5 or ratio <= 2) and big["bytes"] <= 50 * 1024
    print(f"big / small after a write: {ratio:.2f}x wall, {big['cpu'] / small['cpu']:.2f}x CPU;"
          f" goal (<= 0.5 s or 2x, <= 50 KB): {'met' if ok else 'NOT met'}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
