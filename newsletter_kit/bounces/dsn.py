"""RFC 3464 delivery status notifications (also nested, base64-encoded, or with their MIME
structure lost), one recipient per per-recipient block."""

from __future__ import annotations

import re
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

from ..addresses import cut_at_line_break, lenient_address
from .classify import classify_failure, kind_from_wording, most_specific_status
from .meaning import VAGUE, judge
from .wording import around, notice_part
from .message import Context, clean, decode_part, part_payload
from .report import BOUNCE_KINDS, DELAYED, OTHER, SEVERITY, BounceKind, BounceRecipient, BounceReport, merge_recipients, worst

def detect_dsn(ctx: Context) -> BounceReport | None:
    """RFC 3464 delivery status notifications, also nested in multipart/mixed."""
    blocks: list[Message] = []
    for ctype, part in ctx.typed:
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            blocks += _status_blocks(part)
    if not blocks and _DSN_FIELD_RE.search(ctx.text):
        blocks = _text_status_blocks(ctx.text)
    if not blocks:
        return None
    reporting = next((_mta(b.get("Reporting-MTA")) for b in blocks if b.get("Reporting-MTA")), None)
    recipients = merge_recipients([r for r in map(_dsn_recipient, blocks) if r is not None])
    if any(r.reason in _VAGUE for r in recipients):
        # The block says too little ("5.0.0", no diagnostic): the notice's own words about the
        # recipient may say more (or that an "unknown user" came after DATA: a filter).
        notice = notice_part(ctx.text)
        for rcpt in recipients:
            if rcpt.reason in _VAGUE:
                words = around(notice, rcpt.address)
                if rcpt.status is None or rcpt.status.endswith(".0.0"):
                    rcpt.status = most_specific_status(rcpt.status, words)
                judge(rcpt, words)
    if not recipients:
        return None  # no usable address: let the other detectors try the wording
    failures = [r.kind for r in recipients if r.kind in SEVERITY]
    kind = worst(failures)
    reason = None if failures else "delivery status notification reports no failure"
    return BounceReport(kind in BOUNCE_KINDS, kind, recipients, reason=reason, reporting_mta=reporting)


_VAGUE = VAGUE | {"user_unknown"}


def _status_blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status part (compat32 parses them into a list)."""
    payload = part_payload(part)
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    # Encoded (base64) or global delivery-status: split the text into blocks ourselves.
    parser = HeaderParser(policy=compat32)
    text = decode_part(part).replace("\r\n", "\n")
    return [parser.parsestr(chunk.strip("\n"), headersonly=True) for chunk in re.split(r"\n[ \t]*\n", text) if chunk.strip()]


_DSN_FIELD_RE = re.compile(r"^(?:final|original)-recipient:", re.IGNORECASE | re.MULTILINE)
_DSN_BLOCK_RE = re.compile(r"^(?:final-recipient|original-recipient|reporting-mta):", re.IGNORECASE | re.MULTILINE)
_FIELD_LINE_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,60}:|[ \t]")


def _text_status_blocks(text: str) -> list[Message]:
    """DSN fields found in plain text: a delivery-status part whose MIME structure was lost
    (no boundary, or pasted into the notice), parsed block by block."""
    parser = HeaderParser(policy=compat32)
    blocks = []
    for chunk in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        if not _DSN_BLOCK_RE.search(chunk):
            continue
        fields = [line for line in chunk.split("\n") if _FIELD_LINE_RE.match(line)]
        while fields and fields[0][:1] in (" ", "\t"):
            fields.pop(0)  # a continuation line with nothing to continue
        blocks.append(parser.parsestr("\n".join(fields), headersonly=True))
    return blocks


def _mta(value: object) -> str | None:
    """``dns; mx.example.com`` → ``mx.example.com``."""
    if value is None:
        return None
    text = clean(value, 255)
    return text.partition(";")[2].strip() or None if ";" in text else (text or None)


def _typed_address(value: object) -> str | None:
    """``rfc822; a@b`` → ``a@b``; None when the value is not a valid plain address."""
    if value is None:
        return None
    # A line break spelled as text ends the value: "a@x\\r\\nb@y" names a@x, never b@y.
    text = clean(cut_at_line_break(value), 512)
    _addr_type, sep, rest = text.partition(";")
    if not sep:
        return lenient_address(text)
    # Any type whose value is a plain address will do (rfc822, utf-8, some MTAs' "local");
    # x400 and the like never pass validation.
    words = rest.split()
    return lenient_address(words[0]) if words else None


def _dsn_recipient(block: Message) -> BounceRecipient | None:
    """One per-recipient block → a recipient; None for the per-message block or no valid address."""
    original, final = block.get("Original-Recipient"), block.get("Final-Recipient")
    if original is None and final is None:
        return None
    address = _typed_address(original) or _typed_address(final) or _typed_address(block.get("X-Actual-Recipient"))
    if address is None:
        return None
    action_text = clean(block.get("Action", ""), 100).lower()
    action = action_text.split(" ")[0].rstrip(";,") or None
    status_text = clean(block.get("Status", ""), 200)
    diagnostic = _diagnostic(block.get("Diagnostic-Code"))
    status = most_specific_status(status_text, diagnostic)
    kind = _dsn_kind(action, status, f"{status_text} {diagnostic or ''}")
    return judge(BounceRecipient(address, kind, status, action, diagnostic, _mta(block.get("Remote-MTA"))))


def _diagnostic(value: object) -> str | None:
    """``smtp; 550 5.1.1 ...`` → ``550 5.1.1 ...`` on one line."""
    if value is None:
        return None
    text = clean(value, 1000)
    head, sep, rest = text.partition(";")
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,20}", head.strip()):
        text = rest.strip()
    return text or None


def _dsn_kind(action: str | None, status: str | None, text: str) -> BounceKind:
    if action and action.startswith("delayed"):
        return DELAYED
    if action in ("delivered", "relayed", "expanded"):
        return OTHER
    if action is None and status is None:
        return kind_from_wording(text) or OTHER
    return classify_failure(status, text)

