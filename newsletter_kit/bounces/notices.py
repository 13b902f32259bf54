"""Non-DSN failure notices whose failed addresses a detector can name: flufl.bounce's detectors
(Mailman's, one per MTA family) and the ``X-Failed-Recipients`` header (Exim).

flufl.bounce's public ``all_failures()`` stops at the first detector that raises, and some do on
odd input (Yale on a message without From), so its detectors run here one at a time.  That needs
the private ordered list ``flufl.bounce._scan._DETECTORS``: it is read in this module only, and
``tests/test_bounce_detectors.py`` fails with a clear message when a flufl.bounce release changes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from email.message import Message
from email.utils import getaddresses
from typing import Any

from flufl.bounce import all_failures

from ..addresses import cut_at_line_break, lenient_address
from .message import Context, looks_like_failure
from .report import BOUNCE_KINDS, BounceRecipient, BounceReport, merge_recipients, worst
from .wording import explain_alone, named_as_failed, notice_part, notice_recipient, text_failures

try:  # the ordered detector list behind all_failures(), to run each one on its own
    from flufl.bounce._scan import _DETECTORS as _FLUFL_DETECTORS
except ImportError:  # pragma: no cover - a flufl.bounce without it: wrap all_failures() instead
    class _AllFailures:
        def process(self, msg: Message) -> tuple[frozenset[bytes], frozenset[bytes]]:
            return all_failures(msg)

    _FLUFL_DETECTORS = [_AllFailures]  # type: ignore[list-item]


def flufl_detectors() -> list[Any]:
    """The flufl.bounce detector classes, in flufl.bounce's order of authority."""
    return list(_FLUFL_DETECTORS)


def detect_failure_notice(ctx: Context) -> BounceReport | None:
    """A notice whose failed recipients flufl.bounce's detectors or X-Failed-Recipients name."""
    temporary, permanent, error = flufl_failures(ctx.heuristic_msg())
    if error:
        ctx.notes.append(error)
    if temporary or permanent:
        temporary, permanent = _mentioned(ctx, temporary), _mentioned(ctx, permanent)
    failed = [a for a in map(lenient_address, _failed_recipients_header(ctx.msg)) if a]
    if not (temporary or permanent or failed):
        return None  # the wording detector reads the notice's own text next
    notice = notice_part(ctx.text)
    recipients = [notice_recipient(a, notice, transient=True) for a in temporary]
    recipients += [notice_recipient(a, notice) for a in permanent + failed]
    if looks_like_failure(ctx):
        # flufl.bounce's heuristics may stop at the first pattern they know (or read a quoted To:
        # line): the notice's own lines may name more failed recipients, each opening its line.
        named = set(temporary) | set(permanent) | set(failed)
        extra = [(a, near) for a, near in text_failures(ctx, ctx.own_addresses()) if a not in named]
        recipients += [notice_recipient(a, near, worded=True) for a, near in extra if named_as_failed(notice, a)]
    recipients = explain_alone(merge_recipients(recipients), ctx.text)
    kind = worst([r.kind for r in recipients])
    return BounceReport(kind in BOUNCE_KINDS, kind, recipients)


def flufl_failures(msg: Message) -> tuple[list[str], list[str], str | None]:
    """flufl.bounce's verdict as (temporary, permanent) valid addresses, plus any detector error.

    Same order and stopping rule as ``all_failures``, but one detector at a time: there, one
    detector choking on odd input (Yale on a message without From) aborts the whole scan and logs a
    traceback; here it is noted and the next detector still gets its turn.
    """
    errors: list[str] = []
    for detector in _FLUFL_DETECTORS:
        try:
            temporary, permanent = detector().process(msg)
        except Exception as exc:  # noqa: BLE001 - reported in the reason, never fatal
            errors.append(f"{detector.__name__}: {type(exc).__name__}")
            continue
        if temporary or permanent:
            return _valid_sorted(temporary), _valid_sorted(permanent), None
    return [], [], ("flufl.bounce detectors failed: " + ", ".join(errors)) if errors else None


def _valid_sorted(values: Iterable[bytes | str]) -> list[str]:
    return sorted({a for a in map(lenient_address, values) if a})


def _mentioned(ctx: Context, addresses: list[str]) -> list[str]:
    # flufl.bounce's heuristics read raw lines: an address it found only after a line break
    # spelled as text ("a@x\\r\\nb@y") is not one the report names.
    # Nor is our own address (the notice's To, our original's sender), unless the notice names it
    # as a failed recipient (a message sent to oneself).
    ours = ctx.original_sender() | ctx.own_addresses()
    notice = notice_part(ctx.text) if ours & set(addresses) else ""
    return [a for a in addresses if not ctx.forged_only(a) and (a not in ours or named_as_failed(notice, a))]


def _failed_recipients_header(msg: Message) -> list[str]:
    values = [cut_at_line_break(v) for v in msg.get_all("X-Failed-Recipients", [])]
    return [addr for _, addr in getaddresses(values)]

