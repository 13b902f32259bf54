"""Our original message, as the report quotes it: its Message-ID, campaign and VERP token."""

from __future__ import annotations

import re
from email.message import Message

from .message import Context, clean, first_message_id, header_text
from .report import BounceReport

_BODY_MSGID_RE = re.compile(r"^[ \t>]*message-id:[ \t]*(<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_BODY_CAMPAIGN_RE = re.compile(r"^[ \t>]*x-newsletter-campaign:[ \t]*([^\r\n]{1,200})", re.IGNORECASE | re.MULTILINE)
# VERP: the envelope sender is LOCAL+TOKEN@DOMAIN (tokens.envelope_sender); a bounce comes back
# to it.  The parser does not know LOCAL (no store here): any +TAG is a candidate, and one shaped
# like our signed tokens is preferred; the recorder checks the signature.
_VERP_RE = re.compile(r"^[A-Za-z0-9._=-]{1,64}\+([A-Za-z0-9._=-]{1,200})@", re.IGNORECASE)
_VERP_SCAN_RE = re.compile(r"(?<![A-Za-z0-9.+_=-])[A-Za-z0-9._=-]{1,64}\+[A-Za-z0-9._=-]{1,200}@", re.IGNORECASE)
_SIGNED_SHAPE_RE = re.compile(r"[0-9]{1,15}\.[0-9a-f]{16}", re.IGNORECASE)


def verp_token(address: str | None) -> str | None:
    """The token of a VERP envelope address ``LOCAL+TOKEN@domain``, or None.

    >>> verp_token("bounces+c12.r345@news.example.com")
    'c12.r345'
    """
    if not address:
        return None
    match = _VERP_RE.match(address.strip().strip("<>"))
    return match.group(1) if match else None


def _find_verp(ctx: Context, original: Message | None) -> str | None:
    """The VERP token of the envelope address the report came back to (or our original's)."""
    sources: list[tuple[Message, tuple[str, ...]]] = [
        (ctx.msg, ("Delivered-To", "X-Original-To", "Envelope-To", "To")),
    ]
    if original is not None:
        sources.append((original, ("Return-Path",)))
    first = None
    for msg, names in sources:
        for name in names:
            for value in msg.get_all(name, []):
                # A regex, not getaddresses(): several times faster, and this runs on every report.
                for found in _VERP_SCAN_RE.finditer(str(value)):
                    token = verp_token(found.group(0))
                    if token and _SIGNED_SHAPE_RE.fullmatch(token):
                        return token
                    first = first or token
    return first


def attach_original(ctx: Context, report: BounceReport) -> BounceReport:
    """Fill message_id/campaign (our original's) and the VERP token into ``report``."""
    original = ctx.original
    if original is not None:
        report.message_id = first_message_id(header_text(original, "Message-ID"))
        report.campaign = header_text(original, "X-Newsletter-Campaign")
    if report.message_id is None or report.campaign is None:
        text = ctx.text
        if report.message_id is None:
            found = _BODY_MSGID_RE.search(text)
            report.message_id = found.group(1) if found else None
        if report.campaign is None:
            camp = _BODY_CAMPAIGN_RE.search(text)
            report.campaign = (clean(camp.group(1), 200) or None) if camp else None
    if report.message_id is None:
        # Replies, and some MTAs' reports (Gmail, Exchange), name our message in In-Reply-To
        # rather than quoting it.
        report.message_id = first_message_id(header_text(ctx.msg, "In-Reply-To"))
    report.verp_token = _find_verp(ctx, original)
    return report

