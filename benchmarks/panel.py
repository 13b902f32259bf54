"""Benchmark: the campaign panel on a big store (issue 21).

A store built with bulk SQL (recursive CTEs), cached under /tmp: 1,000,000 contacts on one list
("big"), 50 on another ("small"), 10,000 opt-outs and 4,000 suppressions, and 3,000 campaigns:
the newest on the small list, one ("big-news", the oldest) on the big list. Times opening
``CampaignPanel(store)`` (it selects the newest campaign) and ``CampaignPanel(store,
campaign="big-news")`` (wall and CPU, median of 3), and reports the largest widget state (what
goes to the browser) of each. Baseline in the same run: ``SELECT count(*)`` of the big list's
members, and reading the big list into a DataFrame (``audience.list_contacts``: what the panel
used to do on opening). The goal: each opening within 1 s, no widget state over 100 KB.

Usage::

    .venv/bin/python benchmarks/panel.py [--contacts 1000000] [--campaigns 3000] [--dir /tmp/nk-bench-panel]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from newsletter_kit import audience
from newsletter_kit.panels import CampaignPanel
from newsletter_kit.settings import update_smtp_settings
from newsletter_kit.store import open_store

NOW = "2026-09-01T06:00:00+00:00"


def build(path: Path, contacts: int, n_campaigns: int) -> None:
    """Fill a fresh store at ``path`` (see the module docstring)."""
    store = open_store(path)
    update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=50_000,
                         from_addr="news@example.org", timezone="UTC")
    conn = store.conn
    with store.transaction():
        conn.execute("INSERT INTO lists (id, name, created_at) VALUES (1, 'all', ?), (2, 'big', ?), (3, 'small', ?)",
                     (NOW, NOW, NOW))
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO contacts (id, email, fields, created_at, updated_at)"
            " SELECT i, printf('u%d@d%d.example', i, i % 500), printf('{\"first_name\":\"U%d\"}', i), ?, ? FROM n",
            (contacts, NOW, NOW))
        conn.execute("INSERT INTO list_members (list_id, contact_id, added_at) SELECT 1, id, ? FROM contacts", (NOW,))
        conn.execute("INSERT INTO list_members (list_id, contact_id, added_at) SELECT 2, id, ? FROM contacts", (NOW,))
        conn.execute("INSERT INTO list_members (list_id, contact_id, added_at) SELECT 3, id, ? FROM contacts"
                     " WHERE id <= 50", (NOW,))
        conn.execute("INSERT INTO unsubscribes (email, campaign, source, created_at)"
                     " SELECT email, NULL, 'csv', ? FROM contacts WHERE id % 100 = 0", (NOW,))
        conn.execute("INSERT INTO suppressions (email, since, reason) SELECT email, ?, 'threshold'"
                     " FROM contacts WHERE id % 250 = 7", (NOW,))
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO campaigns (name, list_name, subject, html, status, created_at, updated_at)"
            " SELECT CASE WHEN i = 1 THEN 'big-news' ELSE printf('small-%04d', i) END,"
            " CASE WHEN i = 1 THEN 'big' ELSE 'small' END, 'Hello {{ first_name }}',"
            " '<p>Dear {{ first_name }}, news.</p>', 'draft',"
            " datetime('2025-01-01', printf('+%d hours', i)), ? FROM n", (n_campaigns, NOW))
    conn.execute("ANALYZE")
    store.close()


def largest_state(panel: CampaignPanel) -> tuple[int, str]:
    """(bytes, description) of the biggest widget state the panel sends to the browser."""
    import warnings

    best = (0, "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Widget.widgets: every open widget
        alive = list(widgets.Widget.widgets.values())
    for widget in alive:
        try:
            size = len(json.dumps(widget.get_state(), default=str))
        except Exception:
            continue
        if size > best[0]:
            best = (size, f"{type(widget).__name__} {getattr(widget, 'description', '')!r}")
    return best


def timed(fn: Any, runs: int = 3) -> tuple[float, float, Any]:
    walls, cpus, result = [], [], None
    for _ in range(runs):
        widgets.Widget.close_all()
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--campaigns", type=int, default=3_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/nk-bench-panel"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"panel-{args.contacts}-{args.campaigns}.db"
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    if not path.exists():
        started = time.perf_counter()
        build(path, args.contacts, args.campaigns)
        print(f"built {path} in {time.perf_counter() - started:.1f} s")
    store = open_store(path)
    count = timed(lambda: store.conn.execute(
        "SELECT count(*) FROM list_members WHERE list_id = 2").fetchone()[0])
    frame = timed(lambda: len(audience.list_contacts(store, "big")), runs=1)
    print(f"baseline: count of the big list {count[0] * 1000:.1f} ms; list_contacts('big') "
          f"{frame[0]:.2f} s wall {frame[1]:.2f} s CPU ({frame[2]} rows)")
    ok = True
    for label, make in (("open (newest campaign)", lambda: CampaignPanel(store)),
                        ("open on big-news (1M list)", lambda: CampaignPanel(store, campaign="big-news"))):
        wall, cpu, panel = timed(make)
        size, what = largest_state(panel)
        said = panel.message.value
        assert "nk-error" not in said, said
        print(f"{label:>28}: {wall:6.2f} s wall {cpu:6.2f} s CPU; largest widget state {size / 1024:6.1f} KB"
              f" ({what}); picker {len(panel.campaign.options)} options; audience {panel.counts['contacts']}")
        ok = ok and wall <= 1.0 and size <= 100 * 1024
    print(f"goal (each <= 1 s, no state > 100 KB): {'met' if ok else 'NOT met'}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
