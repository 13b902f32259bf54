"""Time the command line's start against the floor of importing click and sqlite3, in one run.

Usage: ``python -m benchmarks.cli_start [--rounds 9]`` (from the repository root).

The floor is ``python -c "import click, sqlite3"``: an interpreter that has loaded what every
command needs at least. Each command below runs for real (a store with settings, a list, a
campaign, a bounce report file; no network: ``send`` is a dry run, ``fetch`` reads an empty
folder) in a fresh process, alternating with the floor so that a loaded machine slows both
alike. It prints the median and best wall-clock time of each and the ratio of the medians to
the floor's (issue 8's target: at most 3x). Exits 1 when a command is over the target.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.dsn import postfix_dsn  # noqa: E402

TARGET = 3.0
FLOOR = [sys.executable, "-c", "import click, sqlite3"]
COMMANDS = [
    ["--help"],
    ["init"],
    ["settings", "show"],
    ["quota", "--json"],
    ["campaign", "list"],
    ["campaign", "status", "spring", "--json"],
    ["campaign", "send", "spring", "--dry-run", "--json"],
    ["bounces", "parse", "--json", "{report}"],
    ["bounces", "fetch", "--from", "{empty}", "--json"],
    ["suppressions", "list", "--json"],
]


def make_store(folder: Path) -> dict[str, str]:
    """A store ready for every command above; returns the placeholders' values."""
    import newsletter_kit as nk

    store = nk.open_store(folder / "bench.db")
    nk.update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=500,
                            from_addr="news@example.org", timezone="Europe/Rome")
    nk.update_bounce_settings(store, host="127.0.0.1", port=1143, user="bounces@example.org",
                              threshold=2, tls="none", allow_plain_auth=True,
                              password_ref="env:NK_UNUSED")
    nk.add_contacts(store, [{"email": f"reader{i}@example.org", "first_name": f"R{i}"}
                            for i in range(5)], list_name="news")
    nk.create_campaign(store, "spring", "news", "Hello {{ first_name }}", "<p>Dear {{ first_name }}</p>")
    store.close()
    report = folder / "report.eml"
    report.write_bytes(postfix_dsn("reader1@example.org", status="5.1.1"))
    empty = folder / "empty"
    empty.mkdir()
    return {"{report}": str(report), "{empty}": str(empty)}


def command_line() -> list[str]:
    script = Path(sys.executable).with_name("newsletter-kit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "newsletter_kit"]


def run(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nk-cli-start-") as tmp:
        folder = Path(tmp)
        values = make_store(folder)
        # As on a user's machine: the warm-up run may cache the package's bytecode (.pyc).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["NEWSLETTER_KIT_DB"] = str(folder / "bench.db")
        base = command_line()
        argvs = [base + [values.get(a, a) for a in cmd] for cmd in COMMANDS]
        for argv in [FLOOR] + argvs:  # warm the OS caches once
            run(argv, env)
        floor: list[float] = []
        times: list[list[float]] = [[] for _ in argvs]
        for _ in range(args.rounds):
            for i, argv in enumerate(argvs):
                floor.append(run(FLOOR, env))
                times[i].append(run(argv, env))
    floor_median = statistics.median(floor)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.rounds} rounds; "
          f"floor `python -c 'import click, sqlite3'`: median {floor_median * 1000:.0f} ms, "
          f"best {min(floor) * 1000:.0f} ms")
    print(f"{'command':<44} {'median':>8} {'best':>8} {'ratio':>6}")
    over = 0
    for cmd, samples in zip(COMMANDS, times):
        median = statistics.median(samples)
        ratio = median / floor_median
        over += ratio > TARGET
        label = "newsletter-kit " + " ".join(c if not c.startswith("{") else c.strip("{}") for c in cmd)
        print(f"{label:<44} {median * 1000:6.0f}ms {min(samples) * 1000:6.0f}ms {ratio:5.2f}x"
              + ("  over target" if ratio > TARGET else ""))
    print(f"target: every command <= {TARGET:.0f}x the floor: "
          + ("met" if not over else f"{over} over"))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
