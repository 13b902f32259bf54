"""Time bounce ingestion end to end against the floor of just reading the mailbox, in one run.

Usage: ``python benchmarks/ingest.py [--n 10000] [--size 4096] [--batch 500] [--workers W]
[--floor-runs N]`` (from the repository root; needs Dovecot installed, as the tests do).

It starts a private Dovecot on 127.0.0.1, writes N Postfix-style DSNs of about SIZE bytes into
a folder (the Dovecot fixture's bulk append), with matching rows in the delivery ledger, and
times:

- the floor: imapclient batched ``UID FETCH BODY.PEEK[]`` of every message, plus
  ``email.message_from_bytes(raw, policy=compat32)`` of each, nothing else;
- ``fetch_bounces``: fetch, parse, classify, record, threshold, into a fresh store;
- a re-run of ``fetch_bounces`` over the already-processed folder.

It prints msg/s for both, the ratio (target >= 0.6 x floor) and the re-run as a % of the
first run (target < 5%).  ``fetch_bounces`` parses in worker processes (one per CPU, up to 4)
for this many messages; ``--workers 1`` shows the serial figure.  A warm-up (an untimed SELECT
and sizes) lets Dovecot index the new Maildir first; ``--floor-runs N`` alternates N floor and
``fetch_bounces`` runs (each on a fresh store) and keeps the best of each, for a noisy machine.
``--cli`` times ``newsletter-kit bounces fetch --json`` in a new process instead of the function
call, process start included (what cron pays; targets >= 0.6 x floor, re-run <= 5% + 1 s).
"""
from __future__ import annotations

import argparse
import email
import json
import os
import subprocess
import sys
import tempfile
import time
from email.policy import compat32
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter_kit.ingest import _workers, fetch_bounces  # noqa: E402
from newsletter_kit.settings import BounceSettings, update_bounce_settings  # noqa: E402
from newsletter_kit.store import Store, now_iso, open_store  # noqa: E402
from tests import mailservers  # noqa: E402
from tests.dsn import postfix_dsn  # noqa: E402

USER = "bounces@example.org"
PASSWORD = "bench-pw"
FOLDER = "Bounces"
STATUSES = ("5.1.1", "5.1.1", "5.2.2", "4.2.2", "5.7.1")


def make_reports(n: int, size: int) -> tuple[list[bytes], list[tuple[str, str]]]:
    """N DSNs about N/2 addresses (two reports each), and the (email, message_id) they quote."""
    raws, deliveries = [], []
    for i in range(n):
        address = f"reader{i // 2:06}@example.net"
        message_id = f"<bench.{i:07}@news.example.org>"
        raws.append(postfix_dsn(address, status=STATUSES[i % len(STATUSES)], campaign=f"c{i % 2}",
                                original_message_id=message_id, sender=USER, pad_to=size))
        deliveries.append((address, message_id))
    return raws, deliveries


def write_ledger(store: Store, deliveries: list[tuple[str, str]]) -> None:
    """Ledger rows for the quoted originals, as the send path would have left them."""
    now = now_iso()
    with store.transaction():
        ids = {}
        for name in ("c0", "c1"):
            ids[name] = store.conn.execute(
                "INSERT INTO campaigns (name, list_name, subject, html, status, created_at, updated_at)"
                " VALUES (?, 'all', 's', '<p>h</p>', 'done', ?, ?)", (name, now, now)).lastrowid
        store.conn.executemany(
            "INSERT INTO deliveries (campaign_id, email, state, message_id, created_at, updated_at, sent_at)"
            " VALUES (?, ?, 'sent', ?, ?, ?, ?)",
            [(ids[f"c{i % 2}"], email_, mid, now, now, now) for i, (email_, mid) in enumerate(deliveries)])


def floor(dv: mailservers.Dovecot, batch: int) -> tuple[float, int]:
    """Seconds to fetch every message in batches and parse each with compat32; and the count."""
    start = time.perf_counter()
    client = dv.imap_client(USER, PASSWORD)
    client.select_folder(FOLDER, readonly=True)
    uids = sorted(client.search(["ALL"]))
    count = 0
    for i in range(0, len(uids), batch):
        data = client.fetch(uids[i:i + batch], ["BODY.PEEK[]"])
        for item in data.values():
            email.message_from_bytes(item[b"BODY[]"], policy=compat32)
            count += 1
    client.logout()
    return time.perf_counter() - start, count


def fetch_with_cli(store: Store, settings: BounceSettings, batch: int) -> dict[str, object]:
    """``newsletter-kit bounces fetch --json`` on ``store`` in a new process; its JSON report."""
    update_bounce_settings(store, host=settings.host, port=settings.port, user=settings.user,
                           threshold=settings.threshold, folder=settings.folder,
                           ca_file=settings.ca_file, password_ref="env:NK_BENCH")
    script = Path(sys.executable).with_name("newsletter-kit")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "newsletter_kit"]
    env = {**os.environ, "NK_BENCH": PASSWORD, "NEWSLETTER_KIT_DB": str(store.path)}
    proc = subprocess.run([*argv, "bounces", "fetch", "--json"], env=env, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bounces fetch exited {proc.returncode}: {proc.stderr[-500:]}")
    return json.loads(proc.stdout)


def warm_up(dv: mailservers.Dovecot) -> None:
    """Let Dovecot index the new Maildir (new/ -> cur/, sizes) before anything is timed."""
    client = dv.imap_client(USER, PASSWORD)
    client.select_folder(FOLDER, readonly=True)
    uids = sorted(client.search(["ALL"]))
    for i in range(0, len(uids), 5000):
        client.fetch(uids[i:i + 5000], ["RFC822.SIZE"])
    client.logout()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of DSNs (default 10000)")
    parser.add_argument("--size", type=int, default=4096, help="bytes per DSN (default 4096)")
    parser.add_argument("--batch", type=int, default=500, help="UIDs per FETCH (default 500)")
    parser.add_argument("--workers", type=int, default=None,
                        help="parser processes for fetch_bounces (default: its own choice; 1 = serial)")
    parser.add_argument("--cli", action="store_true",
                        help="time the command line (a new process per run) instead of the call")
    parser.add_argument("--floor-runs", type=int, default=1,
                        help="measure the floor this many times, alternating with fetch_bounces "
                             "runs on fresh stores, and keep the best of each (default 1)")
    args = parser.parse_args(argv)
    began = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="nk-ingest-") as tmp:
        tmpdir = Path(tmp)
        ca = mailservers.TestCA(tmpdir / "ca", with_untrusted=False)
        with mailservers.Dovecot(tmpdir / "dovecot", ca) as dv:
            dv.add_user(USER, PASSWORD)
            raws, deliveries = make_reports(args.n, args.size)
            started = time.perf_counter()
            dv.append_many(USER, FOLDER, raws)
            print(f"appended {len(raws)} DSNs of ~{args.size} B in {time.perf_counter() - started:.1f} s")
            warm_up(dv)
            settings = BounceSettings(host="localhost", port=dv.imap_port, user=USER, threshold=2,
                                      folder=FOLDER, ca_file=ca.ca_file, password_ref="env:NK_BENCH")
            settings.validate()

            floors, ours = [], []
            for run in range(max(1, args.floor_runs)):
                floor_time, count = floor(dv, args.batch)
                floors.append(floor_time)
                store = open_store(tmpdir / f"bench{run}.db")
                write_ledger(store, deliveries)
                started = time.perf_counter()
                if args.cli:
                    fetched = fetch_with_cli(store, settings, args.batch)["fetched"]
                else:
                    report = fetch_bounces(store, settings, password=PASSWORD, batch_size=args.batch,
                                           workers=args.workers)
                    fetched = report.fetched
                ours.append(time.perf_counter() - started)
                assert fetched == count == args.n, (fetched, count)
            started = time.perf_counter()
            if args.cli:
                refetched = fetch_with_cli(store, settings, args.batch)["fetched"]
            else:
                refetched = fetch_bounces(store, settings, password=PASSWORD, batch_size=args.batch).fetched
            rerun = time.perf_counter() - started
            rows = store.conn.execute("SELECT count(*) FROM bounces").fetchone()[0]
            assert refetched == 0 and rows == args.n
            store.close()

    best_floor, best = min(floors), min(ours)
    workers = _workers(args.workers, args.n)
    print(f"floor (FETCH BODY.PEEK[] + compat32 parse): {args.n / best_floor:8.0f} msg/s"
          f"  ({', '.join(f'{t:.2f}' for t in floors)} s)")
    what = "newsletter-kit bounces fetch, process start included" if args.cli else "fetch_bounces"
    print(f"{what} (fetch, parse, record, threshold; {workers} parser process(es)): "
          f"{args.n / best:8.0f} msg/s  ({', '.join(f'{t:.2f}' for t in ours)} s)")
    print(f"ratio: {best_floor / best:.2f} x floor (target >= 0.60)")
    print(f"re-run over the unchanged folder: {rerun * 1000:.0f} ms = {100 * rerun / best:.2f}% "
          f"of the first run (target < 5%" + (" + 1 s)" if args.cli else ")"))
    print(f"recorded {rows} bounce rows; whole benchmark {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
