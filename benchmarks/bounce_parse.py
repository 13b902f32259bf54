"""``parse_bounce`` beside flufl.bounce on Sisimai's corpus (tests/sisimai): what each finds, and
the time per notice against a baseline measured in the same run.

Usage: ``python -m benchmarks.bounce_parse [--repeat N] [--corpus DIR]``

- recipient found: notices with at least one failure fact (Sisimai's expected.json) where the
  detector names at least one address;
- hard/soft agreement: per failure fact, "hard" against Sisimai's hardbounce flag, paired as
  multisets within a file (flufl.bounce's permanent set is its "hard", its temporary set "soft");
- time per notice: best of ``--repeat`` runs of each, interleaved; the baseline is
  ``email.message_from_bytes`` (compat32) of the same bytes, which both must pay at least.
"""

from __future__ import annotations

import argparse
import email
import json
import statistics
import sys
import time
from collections import Counter
from email.policy import compat32
from pathlib import Path

from flufl.bounce import all_failures

from newsletter_kit.bounces import HARD, SEVERITY, parse_bounce

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "sisimai"
NOT_A_BOUNCE = {"feedback", "vacation", "delivered"}


def _baseline(raw: bytes) -> object:
    return email.message_from_bytes(raw, policy=compat32)


def _flufl(raw: bytes) -> tuple[set[bytes], set[bytes]]:
    try:
        temporary, permanent = all_failures(email.message_from_bytes(raw, policy=compat32))
    except Exception:  # noqa: BLE001 - flufl.bounce gives up on some notices; counted as nothing found
        return set(), set()
    return set(temporary), set(permanent)


def _ours_flags(raw: bytes) -> list[bool]:
    report = parse_bounce(raw)
    return [r.kind is HARD for r in report.recipients if r.kind in SEVERITY]


def _flufl_flags(raw: bytes) -> list[bool]:
    temporary, permanent = _flufl(raw)
    return [False] * len(temporary - permanent) + [True] * len(permanent)


def _score(name: str, cases: dict, raws: dict[str, bytes], flags) -> None:
    found = files = agree = facts = 0
    for file, case in cases.items():
        expected = [bool(f["hardbounce"]) for f in case["expected"] if f["reason"] not in NOT_A_BOUNCE]
        if not expected:
            continue
        got = flags(raws[file])
        files += 1
        found += bool(got)
        facts += len(expected)
        agree += sum((Counter(expected) & Counter(got)).values())
    print(f"{name:<14} recipient found {found}/{files} ({100 * found / files:.1f} %)  "
          f"hard/soft agreement {agree}/{facts} ({100 * agree / facts:.1f} %)")


def _time(funcs: list, raws: list[bytes], repeat: int) -> list[list[float]]:
    best = [[float("inf")] * len(raws) for _ in funcs]
    for i, raw in enumerate(raws):
        for _ in range(repeat):
            for f, func in enumerate(funcs):
                start = time.perf_counter()
                func(raw)
                best[f][i] = min(best[f][i], time.perf_counter() - start)
    return [[t * 1000 for t in times] for times in best]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--repeat", type=int, default=5, help="timing runs per message (best is kept)")
    args = parser.parse_args(argv)
    cases = json.loads((args.corpus / "expected.json").read_text())["cases"]
    raws = {file: (args.corpus / "cases" / file).read_bytes() for file in cases}

    _score("parse_bounce", cases, raws, _ours_flags)
    _score("flufl.bounce", cases, raws, _flufl_flags)

    order = list(raws.values())
    base, ours, flufl = _time([_baseline, parse_bounce, _flufl], order, args.repeat)
    for name, times in (("message_from_bytes", base), ("parse_bounce", ours), ("flufl.bounce", flufl)):
        print(f"{name:<19} median {statistics.median(times):.3f} ms  mean {statistics.mean(times):.3f} ms  "
              f"p95 {statistics.quantiles(times, n=20)[-1]:.3f} ms")
    for name, times in (("parse_bounce", ours), ("flufl.bounce", flufl)):
        print(f"ratio {name}/message_from_bytes: median {statistics.median(times) / statistics.median(base):.1f}x  "
              f"mean {statistics.mean(times) / statistics.mean(base):.1f}x")
    slowest = max(range(len(order)), key=lambda i: ours[i])
    print(f"slowest: {list(raws)[slowest]} {ours[slowest]:.2f} ms ({len(order)} notices)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
