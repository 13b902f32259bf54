"""Audience at scale: eligible_recipients and audience_frame on a million contacts.

Builds a store with N contacts (default 1,000,000) on the list ``all``, N/10 unsubscribes (half
for the measured campaign, a quarter for other campaigns, a quarter global) and N/250
suppressions, then times each function against a floor measured in the same run: reading the
same rows with one plain SELECT (no exclusion at all). Peak memory: the maximum resident set
of a fresh process that opens the store and runs only that call (the floor's process is the
baseline). Also times importing a CSV of N/10 rows against parsing it with csv.reader.

    .venv/bin/python benchmarks/audience.py [--contacts 1000000] [--db PATH]

Targets: each under 5 s and 1 GB for a million contacts.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from newsletter_kit import audience  # noqa: E402
from newsletter_kit.store import Store, now_iso, open_store  # noqa: E402

CAMPAIGN = "spring"


def build(store: Store, n: int) -> None:
    """Contacts, memberships, opt-outs and suppressions written with plain SQL (fast setup)."""
    rng = random.Random(42)
    now = now_iso()
    conn = store.conn
    with store.transaction():
        conn.execute("INSERT INTO lists (name, created_at) VALUES ('all', ?)", (now,))
        conn.executemany(
            "INSERT INTO contacts (id, email, fields, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            ((i, f"user{i}@example.org", json.dumps({"first_name": f"Name{i}", "city": "Rome"}), now, now)
             for i in range(1, n + 1)))
        conn.execute("INSERT INTO list_members (list_id, contact_id, added_at) "
                     "SELECT 1, id, ? FROM contacts", (now,))
        unsubscribed = rng.sample(range(1, n + 1), n // 10)
        scopes = [CAMPAIGN, CAMPAIGN, "autumn", None]
        conn.executemany(
            "INSERT INTO unsubscribes (email, campaign, source, created_at) VALUES (?, ?, 'csv', ?)",
            ((f"user{i}@example.org", scopes[k % 4], now) for k, i in enumerate(unsubscribed)))
        conn.executemany(
            "INSERT INTO suppressions (email, since, reason, bounce_count) VALUES (?, ?, 'threshold', 3)",
            ((f"user{i}@example.org", now) for i in rng.sample(range(1, n + 1), n // 250)))
    conn.execute("ANALYZE")


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, float, Any]:
    """Best wall-clock and best CPU seconds of ``repeat`` runs (CPU time is steadier on a busy
    machine), and the last result."""
    wall = cpu = float("inf")
    result = None
    for _ in range(repeat):
        result = None
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, result


CALLS = {
    "floor": "store.conn.execute(FLOOR).fetchall()",
    "campaign": "audience.eligible_recipients(store, 'spring', 'all', 'campaign')",
    "global": "audience.eligible_recipients(store, 'spring', 'all', 'global')",
    "frame": "audience.audience_frame(store, 'spring', 'all', 'global')",
}
FLOOR = ("SELECT c.id, c.email, c.fields FROM list_members m JOIN contacts c ON c.id = m.contact_id "
         "WHERE m.list_id = 1 ORDER BY m.contact_id")


# The child's own peak: Linux's VmHWM belongs to the new address space, while ru_maxrss keeps
# the parent's size from before the exec.
_PEAK = ("import re\ntry:\n    print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
         "except OSError:\n    import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def peak_rss_mib(db: Path, call: str) -> float:
    """Peak resident set of a fresh process that opens the store and makes one call."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
            "from newsletter_kit import audience\nfrom newsletter_kit.store import open_store\n"
            f"store = open_store({str(db)!r}); FLOOR = {FLOOR!r}\nresult = {CALLS[call]}\n{_PEAK}")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="store file (default: a temporary one)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nk-bench-"))
    db = args.db or tmp / "audience.db"
    if db.exists():
        db.unlink()
    n = args.contacts

    start = time.perf_counter()
    store = open_store(db)
    build(store, n)
    print(f"store: {n:,} contacts, {n // 10:,} unsubscribes, {n // 250:,} suppressions "
          f"(built in {time.perf_counter() - start:.1f} s)")

    runs: dict[str, tuple[str, Callable[[], Any]]] = {
        "floor: plain SELECT of the list's rows": ("floor", lambda: store.conn.execute(FLOOR).fetchall()),
        "eligible_recipients (campaign policy)": (
            "campaign", lambda: audience.eligible_recipients(store, CAMPAIGN, "all", "campaign")),
        "eligible_recipients (global policy)": (
            "global", lambda: audience.eligible_recipients(store, CAMPAIGN, "all", "global")),
        "audience_frame (global policy)": (
            "frame", lambda: audience.audience_frame(store, CAMPAIGN, "all", "global")),
    }
    base = base_cpu = 0.0
    print(f"{'best of 3':42} {'wall s':>7} {'x floor':>8} {'CPU s':>7} {'x floor':>8} {'rows':>10} "
          f"{'peak RSS MiB':>12}")
    for name, (call, fn) in runs.items():
        seconds, cpu, result = timed(fn)
        rows = len(result)
        del result
        base, base_cpu = base or seconds, base_cpu or cpu
        print(f"{name:42} {seconds:7.2f} {seconds / base:8.2f} {cpu:7.2f} {cpu / base_cpu:8.2f} "
              f"{rows:10,} {peak_rss_mib(db, call):12.0f}")

    # Importing: a CSV of n/10 new contacts, against merely parsing it.
    path = tmp / "contacts.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Email", "First Name", "City"])
        writer.writerows([f"New{i}@Example.net", f"Name {i}", "Milano"] for i in range(n // 10))
    parse, parse_cpu, _ = timed(lambda: sum(1 for _ in csv.reader(path.open(encoding="utf-8"))))
    print(f"{'floor: csv.reader over the file':42} {parse:7.2f} {1:8.2f} {parse_cpu:7.2f} {1:8.2f} {n // 10:10,}")
    for label in ("new rows", "same rows again"):
        seconds, cpu, report = timed(lambda: audience.import_contacts(store, path, "imported"), repeat=1)
        print(f"{'import_contacts (' + label + ')':42} {seconds:7.2f} {seconds / parse:8.2f} {cpu:7.2f} "
              f"{cpu / parse_cpu:8.2f} {report.total:10,}")
    store.close()
    if not args.db:
        for file in tmp.iterdir():
            file.unlink()
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
