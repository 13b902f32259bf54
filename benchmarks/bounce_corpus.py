"""Score ``parse_bounce`` on a bounce corpus and time it beside flufl.bounce alone, in one run.

Usage: ``python benchmarks/bounce_corpus.py PATH_TO_CORPUS [--repeat N] [--verbose]``

The corpus is a directory with ``manifest.json`` (a list of ``{"file", "expected", "kind"}``)
and ``messages/``.  A file counts as an exact match when the set of failing recipients
(kinds hard, soft, policy, delayed) equals the expected set.  Timing covers the whole of
``parse_bounce(raw)`` (parsing included) against ``message_from_bytes`` + ``all_failures``.
"""

from __future__ import annotations

import argparse
import email
import json
import statistics
import sys
import time
from email.policy import compat32
from pathlib import Path

from flufl.bounce import all_failures

from newsletter_kit.bounces import SEVERITY, parse_bounce

TEMPORARY_KINDS = {"delayed", "soft"}


def _ours(raw: bytes) -> tuple[set[str], set[str]]:
    """(all failing addresses, those of kind delayed/soft)."""
    report = parse_bounce(raw)
    failing = [r for r in report.recipients if r.kind in SEVERITY]
    return {r.address for r in failing}, {r.address for r in failing if r.kind in TEMPORARY_KINDS}


def _flufl(raw: bytes) -> set[str]:
    temporary, permanent = all_failures(email.message_from_bytes(raw, policy=compat32))
    return {a.decode("ascii", "replace").lower() for a in temporary | permanent}


def _time(funcs: list, raws: list[bytes], repeat: int) -> list[list[float]]:
    """Per-message time in ms of each function: best of ``repeat`` runs, the functions
    interleaved run by run so that a busy machine slows them alike."""
    best = [[float("inf")] * len(raws) for _ in funcs]
    for i, raw in enumerate(raws):
        for _ in range(repeat):
            for f, func in enumerate(funcs):
                start = time.perf_counter()
                func(raw)
                best[f][i] = min(best[f][i], time.perf_counter() - start)
    return [[t * 1000 for t in times] for times in best]


def _summary(times: list[float]) -> str:
    p95 = statistics.quantiles(times, n=20)[-1]
    return f"median {statistics.median(times):.3f} ms  mean {statistics.mean(times):.3f} ms  p95 {p95:.3f} ms"


def _score(name: str, entries: list[dict], results: list[set[str]], verbose: bool) -> None:
    exact = tp = fp = fn = 0
    for entry, got in zip(entries, results):
        expected = set(entry["expected"])
        exact += got == expected
        tp += len(got & expected)
        fp += len(got - expected)
        fn += len(expected - got)
        if verbose and got != expected:
            print(f"  {name} miss {entry['file']}: got {sorted(got)} expected {sorted(expected)}")
    print(f"{name:<14} exact {exact}/{len(entries)} ({100 * exact / len(entries):.1f}%)  TP {tp}  FP {fp}  FN {fn}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--repeat", type=int, default=5, help="timing runs per message (best is kept)")
    parser.add_argument("--verbose", action="store_true", help="list every mismatch")
    args = parser.parse_args(argv)
    entries = json.loads((args.corpus / "manifest.json").read_text())
    raws = [(args.corpus / "messages" / e["file"]).read_bytes() for e in entries]

    ours = [_ours(raw) for raw in raws]
    _score("parse_bounce", entries, [o[0] for o in ours], args.verbose)
    _score("flufl alone", entries, [_flufl(raw) for raw in raws], args.verbose)
    temporary = [e for e in entries if e["kind"] == "temporary"]
    temp_ok = sum(set(e["expected"]) <= o[1] for e, o in zip(entries, ours) if e["kind"] == "temporary")
    perm_ok = sum(not (set(e["expected"]) & o[1]) for e, o in zip(entries, ours) if e["kind"] == "permanent")
    permanent = sum(e["kind"] == "permanent" for e in entries)
    print(
        f"temporary files reported delayed/soft: {temp_ok}/{len(temporary)}; permanent files reported hard/policy: "
        f"{perm_ok}/{permanent} (the rest state a full mailbox or a 4.x.x code: soft by DESIGN.md)"
    )

    ours_t, flufl_t = _time([parse_bounce, _flufl], raws, args.repeat)
    print(f"parse_bounce   {_summary(ours_t)}")
    print(f"flufl alone    {_summary(flufl_t)}")
    print(
        "ratio parse_bounce/flufl: "
        f"median {statistics.median(ours_t) / statistics.median(flufl_t):.2f}x  "
        f"mean {statistics.mean(ours_t) / statistics.mean(flufl_t):.2f}x"
    )
    dsn = [i for i, raw in enumerate(raws) if b"delivery-status" in raw.lower()]
    other = [i for i in range(len(raws)) if i not in set(dsn)]
    for label, idx in (("with a delivery-status part", dsn), ("without (non-DSN notices)", other)):
        ours_g, flufl_g = [ours_t[i] for i in idx], [flufl_t[i] for i in idx]
        print(
            f"{label} ({len(idx)} files): parse_bounce median {statistics.median(ours_g):.3f} ms, "
            f"flufl median {statistics.median(flufl_g):.3f} ms, "
            f"ratio {statistics.median(ours_g) / statistics.median(flufl_g):.2f}x"
        )
    slowest = max(range(len(raws)), key=lambda i: ours_t[i])
    print(f"slowest: {entries[slowest]['file']} {ours_t[slowest]:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
