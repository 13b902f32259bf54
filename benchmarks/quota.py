"""The quota's cost per batch: reserve 20 + settle them, against two bare commits on the same store.

A send run reserves and settles once per batch (in the ledger thread, beside the SMTP
conversation). Since issue 16 finding 8 the quota counts sends per UTC minute and looks at the
zones in effect; this measures that on a store with 8 days of per-minute history and three zone
changes in the last 24 hours (the most the window ever reads). The floor is what any durable
reserve-and-settle costs: two ``BEGIN IMMEDIATE`` write transactions of one upsert each.

Run: ``.venv/bin/python -m benchmarks.quota [--batches 300] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from newsletter_kit import quota  # noqa: E402
from newsletter_kit.settings import update_smtp_settings  # noqa: E402
from newsletter_kit.store import open_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    store = open_store(Path(tempfile.mkdtemp()) / "quota.db")
    smtp, _ = update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=10**9,
                                   from_addr="news@example.org", timezone="Europe/Rome")
    now = dt.datetime.now(dt.timezone.utc)
    with store.transaction():
        store.conn.executemany("INSERT OR IGNORE INTO quota_sends (minute, count) VALUES (?, 5)",
                               [((int(now.timestamp()) // 60) - m,) for m in range(8 * 1440)])
    for i, zone in enumerate(["Asia/Kolkata", "America/St_Johns", "Europe/Rome"]):
        quota.note_zone(store, zone, now=now - dt.timedelta(hours=10 - 3 * i))
    owner = quota.new_owner()

    def batch() -> None:
        day, granted = quota.reserve(store, 20, owner=owner, settings=smtp)
        quota.settle(store, owner=owner, day=day, released=granted, accepted=granted)

    def floor() -> None:
        for _ in range(2):
            with store.transaction():
                store.conn.execute("INSERT INTO quota_days (day, used) VALUES ('floor', 1) "
                                   "ON CONFLICT(day) DO UPDATE SET used = used + 1")

    best = {"quota": float("inf"), "floor": float("inf")}
    for _ in range(args.rounds):
        for name, step in (("floor", floor), ("quota", batch)):
            start = time.perf_counter()
            for _ in range(args.batches):
                step()
            best[name] = min(best[name], (time.perf_counter() - start) / args.batches * 1e6)
    print(f"per batch of 20: reserve+settle {best['quota']:.0f} us, two bare commits {best['floor']:.0f} us, "
          f"ratio {best['quota'] / best['floor']:.2f}x (best of {args.rounds} rounds x {args.batches})")


if __name__ == "__main__":
    main()
