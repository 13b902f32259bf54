"""ARF (RFC 5965) feedback reports: spam complaints about our message."""

from __future__ import annotations

from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses

from ..addresses import cut_at_line_break, lenient_address
from .message import Context, decode_part, header_text, part_payload
from .report import COMPLAINT, BounceRecipient, BounceReport

def detect_arf(ctx: Context) -> BounceReport | None:
    """An ARF (RFC 5965) feedback report: a spam complaint about our message."""
    msg = ctx.msg
    is_arf = ctx.typed[0][0] == "multipart/report" and "feedback-report" in str(msg.get("Content-Type", "")).lower()
    feedback = next((p for t, p in ctx.typed if t == "message/feedback-report"), None)
    if not is_arf and feedback is None:
        return _unsubscribe_request(ctx)
    candidates: list[str] = []
    fields = _feedback_fields(feedback) if feedback is not None else None
    if fields is not None:
        candidates += [cut_at_line_break(v) for v in fields.get_all("Original-Rcpt-To", []) + fields.get_all("Removal-Recipient", [])]
    original = ctx.original
    if not candidates and original is not None:
        candidates += [addr for _, addr in getaddresses([cut_at_line_break(v) for v in original.get_all("To", [])])]
    addresses = dict.fromkeys(a for a in map(lenient_address, candidates) if a)
    recipients = [BounceRecipient(a, COMPLAINT) for a in addresses]
    feedback_type = header_text(fields, "Feedback-Type") if fields is not None else None
    return BounceReport(False, COMPLAINT, recipients, reason=f"feedback report: {feedback_type or 'abuse'}")


def _feedback_fields(part: Message) -> Message | None:
    payload = part_payload(part)
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else None
    return HeaderParser(policy=compat32).parsestr(decode_part(part).lstrip(), headersonly=True)



def _unsubscribe_request(ctx: Context) -> BounceReport | None:
    """A mail client's one-click unsubscribe sent as mail (Apple Mail's ``X-Apple-Unsubscribe``):
    an opt-out from its sender, read as feedback like an ARF ``opt-out`` report."""
    if ctx.msg.get("X-Apple-Unsubscribe") is None or header_text(ctx.msg, "X-Apple-Unsubscribe") != "true":
        return None
    senders = dict.fromkeys(a for a in (lenient_address(addr) for _, addr in getaddresses([str(v) for v in ctx.msg.get_all("From", [])])) if a)
    return BounceReport(False, COMPLAINT, [BounceRecipient(a, COMPLAINT) for a in senders], reason="feedback report: opt-out")
