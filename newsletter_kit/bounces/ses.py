"""Amazon SES notifications delivered by mail (SNS to e-mail): the body is the JSON notification,
``notificationType`` Bounce, Complaint or Delivery, with one object per recipient."""

from __future__ import annotations

import json
import re

from ..addresses import lenient_address
from .meaning import judge
from .message import Context, clean
from .report import BOUNCE_KINDS, COMPLAINT, DELAYED, HARD, OTHER, BounceRecipient, BounceReport, merge_recipients, worst

_MAX_JSON = 256 * 1024


def detect_ses_json(ctx: Context) -> BounceReport | None:
    """An SES notification whose body is JSON: the recipients and facts it lists.

    >>> from email import message_from_bytes
    >>> raw = b'Subject: n\\n\\n{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"a@example.com"}]}}'
    >>> detect_ses_json(Context(message_from_bytes(raw), raw)).kind.value
    'complaint'
    """
    text = ctx.text.strip()
    if not text.startswith("{") or '"notificationType"' not in text[:2000] or len(text) > _MAX_JSON:
        return None
    data = _loads(text)
    if data is None:  # sendmail splits lines over 990 octets with "!" + newline + space
        data = _loads(_WRAP_RE.sub("", text))
    if not isinstance(data, dict):
        return None
    kind = str(data.get("notificationType") or data.get("eventType") or "")
    if kind == "Complaint":
        body = data.get("complaint") or {}
        addresses = [lenient_address(r.get("emailAddress")) for r in _list(body.get("complainedRecipients"))]
        recipients = [BounceRecipient(a, COMPLAINT) for a in dict.fromkeys(a for a in addresses if a)]
        return BounceReport(False, COMPLAINT, recipients, reason=f"feedback report: {clean(body.get('complaintFeedbackType') or 'abuse', 50)}")
    if kind == "Delivery":
        return BounceReport(False, OTHER, reason="delivery notification (success)")
    if kind != "Bounce":
        return None
    body = data.get("bounce") or {}
    transient = str(body.get("bounceType") or "") == "Transient"
    recipients = []
    for item in _list(body.get("bouncedRecipients")):
        address = lenient_address(item.get("emailAddress"))
        if not address:
            continue
        diagnostic = clean(item.get("diagnosticCode") or "", 1000)
        if diagnostic.lower().startswith("smtp;"):
            diagnostic = diagnostic[5:].strip()
        status = clean(item.get("status") or "", 20) or None
        rcpt = BounceRecipient(address, DELAYED if transient and not status else HARD, status,
                               clean(item.get("action") or "failed", 20), diagnostic or None)
        recipients.append(judge(rcpt, str(body.get("bounceSubType") or "")))
    recipients = merge_recipients(recipients)
    if not recipients:
        return BounceReport(False, OTHER, reason="SES bounce notification names no valid recipient")
    kind_ = worst([r.kind for r in recipients])
    return BounceReport(kind_ in BOUNCE_KINDS, kind_, recipients)


_WRAP_RE = re.compile(r"!?\r?\n[ \t]")


def _loads(text: str) -> object:
    try:  # raw_decode: SNS appends an unsubscribe footer after the JSON
        return json.JSONDecoder(strict=False).raw_decode(text)[0]
    except ValueError:
        return None


def _list(value: object) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
