"""Amazon SES: Bounce, Complaint and DeliveryDelay notifications (``notificationType``) and
event-publishing records (``eventType``), bare or inside an SNS envelope.

SES's own words decide where they are specific (``Transient/ContentRejected`` is about our
message, ``Permanent/NoEmail`` about the address); else the diagnostic code's text does, as for
a bounce read from the mailbox.  Our delivery id comes back as the ``nk_delivery`` message tag
(``X-SES-MESSAGE-TAGS`` with a configuration set), SES's message id (``mail.messageId``) is the
one its ``250 Ok <id>`` reply gave, and our Message-ID is in ``mail.headers`` when the identity
includes the original headers.

>>> events = parse_ses({"notificationType": "Bounce", "mail": {"messageId": "m1"},
...     "bounce": {"bounceType": "Permanent", "bounceSubType": "NoEmail", "feedbackId": "f1",
...                "bouncedRecipients": [{"emailAddress": "a@example.org"}]}})
>>> events[0].kind.value, events[0].reason, events[0].provider_message_id
('hard', 'user_unknown', 'm1')
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .events import ECHO_KEY, EspEvent, as_dict, as_list, as_str, complaint, delay, failure, ignored, iso_time

__all__ = ["is_ses", "parse_ses"]

#: (bounceType, bounceSubType) -> reason, where SES's words are specific.
_SUBTYPES = {
    ("Permanent", "NoEmail"): "user_unknown",
    ("Permanent", "Suppressed"): "user_unknown",
    ("Permanent", "OnAccountSuppressionList"): "user_unknown",
    ("Transient", "MailboxFull"): "mailbox_full",
    ("Transient", "MessageTooLarge"): "message_too_big",
    ("Transient", "ContentRejected"): "content_rejected",
    ("Transient", "AttachmentRejected"): "content_rejected",
}


def is_ses(data: Any) -> bool:
    """Whether ``data`` is an SES notification or event record (bare JSON)."""
    return isinstance(data, dict) and isinstance(data.get("mail"), dict) and (
        "notificationType" in data or "eventType" in data)


def _tags(mail: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    tags = mail.get("tags")
    if isinstance(tags, dict):
        for name, values in tags.items():
            if isinstance(values, list) and values:
                found[str(name)] = str(values[0])
    for header in as_list(mail.get("headers")):
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "x-ses-message-tags":
            for part in str(header.get("value", "")).split(","):
                name, _, value = part.partition("=")
                found.setdefault(name.strip(), value.strip())
    return found


def _header(mail: dict[str, Any], wanted: str) -> str | None:
    for header in as_list(mail.get("headers")):
        if isinstance(header, dict) and str(header.get("name", "")).lower() == wanted:
            return str(header.get("value", ""))
    common = mail.get("commonHeaders")
    if wanted == "message-id" and isinstance(common, dict) and common.get("messageId"):
        return str(common["messageId"])
    return None


def _ids(mail: dict[str, Any]) -> dict[str, Any]:
    return {"echo": _tags(mail).get(ECHO_KEY), "provider_message_id": mail.get("messageId") or None,
            "message_id": _header(mail, "message-id")}


def _key(section: dict[str, Any], data: dict[str, Any], address: Any) -> str:
    base = as_str(section.get("feedbackId"), 200) or hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]
    return f"{base}:{str(address).lower()}"


def parse_ses(data: dict[str, Any]) -> list[EspEvent]:
    """The events of one SES notification (one per recipient named)."""
    kind = as_str(data.get("notificationType")) or as_str(data.get("eventType")) or ""
    mail = as_dict(data.get("mail"))
    ids = _ids(mail)
    if kind == "Bounce":
        bounce = as_dict(data.get("bounce"))
        btype, sub = as_str(bounce.get("bounceType")) or "", as_str(bounce.get("bounceSubType")) or ""
        at = iso_time(bounce.get("timestamp") or mail.get("timestamp"))
        out = []
        for rcpt in as_list(bounce.get("bouncedRecipients")):
            if not isinstance(rcpt, dict):
                continue
            address = rcpt.get("emailAddress")
            out.append(failure("ses", _key(bounce, data, address), address, permanent=btype == "Permanent",
                               reason=_SUBTYPES.get((btype, sub)), status=rcpt.get("status"),
                               text=rcpt.get("diagnosticCode") or f"{btype}/{sub}", at=at, **ids))
        return out
    if kind == "Complaint":
        section = as_dict(data.get("complaint"))
        at = iso_time(section.get("timestamp") or mail.get("timestamp"))
        if section.get("complaintSubType") == "OnAccountSuppressionList":
            return [ignored("ses", _key(section, data, r.get("emailAddress")), r.get("emailAddress"),
                            "on the account's suppression list", at=at, **ids)
                    for r in as_list(section.get("complainedRecipients")) if isinstance(r, dict)]
        return [complaint("ses", _key(section, data, r.get("emailAddress")), r.get("emailAddress"),
                          text=section.get("complaintFeedbackType"), at=at, **ids)
                for r in as_list(section.get("complainedRecipients")) if isinstance(r, dict)]
    if kind == "DeliveryDelay":
        section = as_dict(data.get("deliveryDelay"))
        at = iso_time(section.get("timestamp") or mail.get("timestamp"))
        key = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]
        return [delay("ses", f"{key}:{str(r.get('emailAddress')).lower()}", r.get("emailAddress"),
                      status=r.get("status"), text=r.get("diagnosticCode") or section.get("delayType"), at=at, **ids)
                for r in as_list(section.get("delayedRecipients")) if isinstance(r, dict)]
    key = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]
    return [ignored("ses", key, (as_list(mail.get("destination")) or [None])[0], f"SES {kind or 'notification'}", **ids)]
