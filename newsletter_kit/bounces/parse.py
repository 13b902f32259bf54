"""Parse one message into a :class:`BounceReport`: detectors tried in order of authority.

Parsing never raises: a message that cannot be understood comes back as kind ``other`` with a
``reason``, so one bad message never stops an ingestion run of thousands.

>>> parse_bounce(b"From: a@example.com\\r\\nSubject: hi\\r\\n\\r\\nthanks!").kind
<BounceKind.HUMAN: 'human'>
"""

from __future__ import annotations

import email
import re
from collections.abc import Callable
from email.policy import compat32
from os import PathLike

from .arf import detect_arf
from .autoreply import detect_autoreply_headers, detect_autoreply_subject, detect_human
from .dsn import detect_dsn
from .message import Context, clean, first_message_id, header_text, iso_date
from .notices import detect_failure_notice
from .original import attach_original
from .ses import detect_ses_json
from .report import BOUNCE_KINDS, OTHER, SEVERITY, BounceReport, worst
from .wording import detect_wording


def parse_bounce(raw: bytes) -> BounceReport:
    """Parse one raw message (bytes as fetched) into a report; never raises.

    >>> parse_bounce(b"From: a@example.com\\r\\nSubject: hi\\r\\n\\r\\nthanks!").kind
    <BounceKind.HUMAN: 'human'>
    """
    try:
        return _parse(bytes(raw))
    except Exception as exc:  # noqa: BLE001 - recorded in the report: one bad message never stops a run
        return BounceReport(False, OTHER, reason=f"unparseable message: {type(exc).__name__}: {clean(str(exc), 200)}")


def parse_bounce_file(path: str | PathLike[str]) -> BounceReport:
    """Parse a message stored in a file (an .eml); an unreadable file raises ``OSError``.

    >>> parse_bounce_file("tests/bounce_samples/postfix_hard_511.eml").kind  # doctest: +SKIP
    <BounceKind.HARD: 'hard'>
    """
    with open(path, "rb") as fh:
        return parse_bounce(fh.read())


Detector = Callable[[Context], "BounceReport | None"]

#: Tried in turn, most authoritative first (as flufl.bounce does); the first that recognises the
#: message decides its kind.  A new format comes with a sample in tests/bounce_samples.
DETECTORS: list[Detector] = [
    detect_arf,                # ARF feedback report: a complaint
    detect_dsn,                # RFC 3464 delivery status notification
    detect_ses_json,           # Amazon SES notification (JSON body) sent by mail
    detect_autoreply_headers,  # RFC 3834 Auto-Submitted and vendor auto-reply headers
    detect_failure_notice,     # flufl.bounce's detectors, X-Failed-Recipients
    detect_wording,            # a failure notice's own English/Italian wording
    detect_autoreply_subject,  # out-of-office subjects without header markers
    detect_human,              # an ordinary mail from a person
]


_MAX_LINE = 16384


def _trim_long_lines(raw: bytes) -> bytes:
    """Cut lines longer than 16 KB (RFC 5322 allows 998 octets): a multi-megabyte line costs the
    heuristic detectors seconds of regex work and carries nothing a real report needs."""
    if len(raw) <= _MAX_LINE:
        return raw
    lines = raw.split(b"\n")
    if max(map(len, lines)) <= _MAX_LINE:
        return raw
    return b"\n".join(line[:_MAX_LINE] for line in lines)


def _without_message_ids(ctx: Context, report: BounceReport) -> BounceReport:
    """Drop "recipients" that are Message-IDs (``<id@host>`` looks like an address to a heuristic)."""
    low = ctx.raw[:_ID_SCAN_LIMIT].lower()  # bytes: no decoding of a whole message for this
    kept = [r for r in report.recipients if not _is_message_id(low, r.address)]
    if len(kept) == len(report.recipients):
        return report
    report.recipients = kept
    failures = [r.kind for r in kept if r.kind in SEVERITY]
    report.kind = worst(failures) if failures else OTHER
    report.is_bounce = report.kind in BOUNCE_KINDS
    return report


_ID_SCAN_LIMIT = 512 * 1024


_ID_FIELD_RE = re.compile(rb"(?:message-id|in-reply-to|references|content-id):")


def _is_message_id(low: bytes, address: str) -> bool:
    """Is ``<address>`` written on a Message-ID (or In-Reply-To, References) line?"""
    needle = f"<{address}>".encode("utf-8", "replace")
    pos = low.find(needle)
    while pos >= 0:
        line_start = low.rfind(b"\n", 0, pos) + 1
        if _ID_FIELD_RE.search(low, line_start, pos):
            return True
        pos = low.find(needle, pos + 1)
    return False


def _parse(raw: bytes) -> BounceReport:
    # compat32 on purpose: policy.default is about 5x slower and this is the ingestion hot path.
    raw = _trim_long_lines(raw)
    msg = email.message_from_bytes(raw, policy=compat32)
    ctx = Context(msg, raw)
    report = None
    for detector in DETECTORS:
        report = detector(ctx)
        if report is not None:
            break
    if report is None:
        report = BounceReport(False, OTHER, reason="not a recognised bounce, reply or mail")
    if report.recipients:
        report = _without_message_ids(ctx, report)
    report.report_message_id = first_message_id(header_text(msg, "Message-ID"))
    report.date = iso_date(header_text(msg, "Date"))
    return attach_original(ctx, report)
