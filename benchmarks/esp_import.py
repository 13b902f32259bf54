"""Time ``bounces import-events`` over saved ESP events against plain ``json.loads`` of the same
files, in one run; then the re-import of the same files.

Usage: ``python benchmarks/esp_import.py [--n 100000] [--matched 0.5] [--rounds 1]`` (from the
repository root).  It writes N events split across the four providers' saved formats (SES
notifications as NDJSON, SendGrid webhook arrays, Mailgun Events pages, Postmark API pages),
with ledger rows for a share of them (``--matched``: matched by the echoed delivery id, the
relay's id or our Message-ID; the rest are strangers, recorded unmatched), and prints:

- the floor: ``json.loads`` of every file, nothing else (events/s);
- ``import_events`` into a fresh store: read, parse, classify, match, record (events/s), and
  the ratio to the floor (target >= 0.3);
- the re-import of the same files: its time as a % of the first (target <= 5 %).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter_kit.esp import import_events  # noqa: E402
from newsletter_kit.store import Store, now_iso, open_store  # noqa: E402
from newsletter_kit.tokens import verp_token  # noqa: E402
from tests import esp_samples as S  # noqa: E402

PER_FILE = 1000
DIAGNOSTICS = ["smtp; 550 5.1.1 <{a}>: Recipient address rejected: User unknown",
               "smtp; 552 5.2.2 Mailbox full", "smtp; 550 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org",
               "smtp; 554 5.7.1 Message rejected as spam", "smtp; 550 5.1.1 The email account that you tried to reach does not exist"]


def ledger(store: Store, n: int) -> list[tuple[int, str, str]]:
    """n sent deliveries: (id, email, message id)."""
    now = now_iso()
    with store.transaction():
        cid = store.conn.execute("INSERT INTO campaigns (name, list_name, subject, html, status, created_at, updated_at)"
                                 " VALUES ('bench', 'all', 's', 'h', 'done', ?, ?)", (now, now)).lastrowid
        rows = [(cid, f"reader{i}@example.org", f"<nk.{uuid.uuid4().hex}@example.org>", f"relay-{i}", now, now, now)
                for i in range(n)]
        store.conn.executemany("INSERT INTO deliveries (campaign_id, email, state, message_id, provider_message_id,"
                               " created_at, updated_at, sent_at) VALUES (?, ?, 'sent', ?, ?, ?, ?, ?)", rows)
    return [(r[0], r[1], r[2]) for r in store.conn.execute("SELECT id, email, message_id FROM deliveries ORDER BY id")]


def write_events(folder: Path, n: int, sent: list[tuple[int, str, str]], key: bytes) -> int:
    """n events in files of PER_FILE, the four formats in turn; returns the bytes written."""
    total, written = 0, 0
    for f in range(0, n, PER_FILE):
        count = min(PER_FILE, n - f)
        provider = ("ses", "sendgrid", "mailgun", "postmark")[(f // PER_FILE) % 4]
        items = []
        for i in range(f, f + count):
            matched = i < len(sent)
            did, address, mid = sent[i] if matched else (0, f"stranger{i}@example.net", None)
            tag = verp_token(key, did) if matched and i % 3 == 0 else None
            diag = DIAGNOSTICS[i % len(DIAGNOSTICS)].format(a=address)
            if provider == "ses":
                item = S.ses_bounce(address, ses_id=f"relay-{i}" if matched else f"x-{i}", tag=tag, diag=diag,
                                    message_id=mid if matched and i % 3 == 2 else None) if i % 10 else S.ses_complaint(address)
                items.append(json.dumps(item))
            elif provider == "sendgrid":
                items.append(S.sendgrid_event(address, sg_id=f"relay-{i}" if matched else f"x-{i}", tag=tag, reason=diag))
            elif provider == "mailgun":
                items.append(S.mailgun_event(address, tag=tag, message_id=mid if matched else None, message=diag))
            else:
                items.append(S.postmark_bounce(address, tag=tag, details=diag))
        path = folder / f"{provider}-{f:07d}.{'ndjson' if provider == 'ses' else 'json'}"
        if provider == "ses":
            text = "\n".join(items) + "\n"
        elif provider == "sendgrid":
            text = json.dumps(items)
        elif provider == "mailgun":
            text = json.dumps({"items": items, "paging": {"next": "https://api.mailgun.net/v3/x/events/p"}})
        else:
            text = json.dumps({"TotalCount": len(items), "Bounces": items})
        path.write_text(text)
        total += len(text)
        written += count
    return total


def floor(folder: Path) -> int:
    """json.loads of every file (NDJSON line by line): the events read."""
    count = 0
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        if path.suffix == ".ndjson":
            count += sum(1 for line in data.splitlines() if line.strip() and json.loads(line))
        else:
            doc = json.loads(data)
            count += len(doc) if isinstance(doc, list) else len(doc.get("items") or doc.get("Bounces") or [])
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="events (default 100000)")
    parser.add_argument("--matched", type=float, default=0.5, help="share of events for our deliveries (0.5)")
    parser.add_argument("--rounds", type=int, default=1, help="floor and import alternate; best of each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "events"
        folder.mkdir()
        seed = open_store(Path(tmp) / "seed.db")
        sent = ledger(seed, int(args.n * args.matched))
        size = write_events(folder, args.n, sent, seed.signing_key())
        seed.close()
        print(f"{args.n} saved ESP events in {len(list(folder.iterdir()))} files ({size / 2**20:.0f} MB), "
              f"{args.matched:.0%} for our deliveries")
        floors, firsts, again = [], [], []
        for r in range(args.rounds):
            start = time.perf_counter()
            assert floor(folder) == args.n
            floors.append(time.perf_counter() - start)
            db = Path(tmp) / f"run{r}.db"
            (Path(tmp) / "seed.db").replace(db) if r == 0 else None
            store = open_store(db)
            if r:
                ledger(store, int(args.n * args.matched))
            start = time.perf_counter()
            report = import_events(store, [folder])
            firsts.append(time.perf_counter() - start)
            assert report.read == args.n and not report.errors, report.to_dict()
            start = time.perf_counter()
            second = import_events(store, [folder])
            again.append(time.perf_counter() - start)
            assert second.recorded == 0
            store.close()
        base, first, rerun = min(floors), min(firsts), min(again)
        print(f"  json.loads floor          {args.n / base:10.0f} events/s")
        print(f"  import_events             {args.n / first:10.0f} events/s   {base / first:5.2f} x floor "
              f"(target >= 0.3: {'met' if base / first >= 0.3 else 'NOT met'})")
        print(f"    recorded {report.recorded}: matched {report.matched}, unmatched {report.unmatched}, "
              f"ignored {report.ignored}")
        print(f"  re-import                 {rerun:10.2f} s      {rerun / first:6.1%} of the first "
              f"(target <= 5%: {'met' if rerun / first <= 0.05 else 'NOT met'})")


if __name__ == "__main__":
    main()
