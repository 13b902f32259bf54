"""SendGrid: Event Webhook arrays and the suppression lists (``/v3/suppression/...``).

A webhook event carries ``sg_event_id`` (deduplication), ``sg_message_id`` (its prefix is the
id of SendGrid's ``250 Ok: queued as <id>`` reply) and our ``X-SMTPAPI`` unique args as
top-level keys (``nk_delivery``).  A suppression row has only an address and a time: it is
matched to a delivery to that address within the window.  A ``blocks`` row, and a bounce of
type ``blocked``, are about us (our IP or domain refused), not the recipient.

>>> [e.kind.value for e in parse_sendgrid_events([{"event": "bounce", "email": "a@example.org",
...     "sg_event_id": "e1", "status": "5.1.1", "reason": "550 5.1.1 User unknown", "type": "bounce"}])]
['hard']
>>> parse_suppressions("blocks", [{"email": "a@example.org", "created": 1700000000,
...     "reason": "550 5.7.1 rejected"}])[0].kind.value
'policy'
"""

from __future__ import annotations

from typing import Any

from .. import reasons as _reasons
from .events import ECHO_KEY, EspEvent, complaint, delay, failure, ignored, iso_time

__all__ = ["SUPPRESSION_LISTS", "is_sendgrid_event", "parse_sendgrid_events", "parse_suppressions"]

#: The suppression lists read, and their meaning.
SUPPRESSION_LISTS = ("bounces", "blocks", "spam_reports", "invalid_emails")
_DROPPED = {"bounced address": "user_unknown", "invalid": "user_unknown", "invalid smtpapi header": None,
            "spam content": "spam_detected", "spam reporting address": None, "unsubscribed address": None}


def is_sendgrid_event(item: Any) -> bool:
    """Whether ``item`` is one SendGrid webhook event."""
    return isinstance(item, dict) and "event" in item and ("sg_event_id" in item or "sg_message_id" in item)


def _ids(item: dict[str, Any]) -> dict[str, Any]:
    sg_id = str(item.get("sg_message_id") or "") or None
    echo = item.get(ECHO_KEY)
    args = item.get("unique_args")
    if echo is None and isinstance(args, dict):
        echo = args.get(ECHO_KEY)
    msgid = item.get("smtp-id")
    return {"echo": str(echo) if echo else None, "provider_message_id": sg_id.split(".")[0] if sg_id else None,
            "message_id": str(msgid) if msgid else None, "at": iso_time(item.get("timestamp"))}


def _blocked(text: Any) -> str:
    """A block's reason: the text's when it names one about us, else ``blocked``."""
    found = _reasons.classify(None, None, str(text or ""))
    return found if _reasons.side(found) == _reasons.SENDER else "blocked"


def _one(item: dict[str, Any]) -> EspEvent:
    event = str(item.get("event", ""))
    key = str(item.get("sg_event_id") or f"{item.get('sg_message_id')}:{event}:{item.get('timestamp')}")
    address, ids = item.get("email"), _ids(item)
    if event == "bounce":
        # SendGrid's own classification says when a bounce is about us, not the address.
        blocked = str(item.get("type", "")) == "blocked" or str(item.get("bounce_classification", "")) in (
            "Reputation", "Technical", "Content", "Frequency or Volume Too High")
        return failure("sendgrid", key, address, permanent=not blocked,
                       reason=_blocked(item.get("reason")) if blocked else None,
                       status=item.get("status"), text=item.get("reason"), **ids)
    if event == "dropped":
        why = str(item.get("reason", ""))
        reason = _DROPPED.get(why.lower())
        if reason is None:
            return ignored("sendgrid", key, address, f"dropped: {why[:80]}", **ids)
        return failure("sendgrid", key, address, permanent=True, reason=reason, text=f"dropped: {why}", **ids)
    if event == "deferred":
        return delay("sendgrid", key, address, text=item.get("response") or item.get("reason"), **ids)
    if event == "spamreport":
        return complaint("sendgrid", key, address, text="spamreport", **ids)
    return ignored("sendgrid", key, address, f"SendGrid {event[:40]}", **ids)


def parse_sendgrid_events(items: list[Any]) -> list[EspEvent]:
    """The events of one Event Webhook POST body (a JSON array)."""
    return [_one(item) for item in items if isinstance(item, dict)]


def parse_suppressions(list_name: str, rows: list[Any]) -> list[EspEvent]:
    """The rows of one suppression list page: address + time only, matched by the window."""
    out = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        address, at = row.get("email"), iso_time(row.get("created"))
        key = f"{list_name}:{str(address).lower()}:{row.get('created')}"
        if list_name == "spam_reports":
            event = complaint("sendgrid", key, address, text="spam report", at=at)
        elif list_name == "blocks":
            event = failure("sendgrid", key, address, permanent=False, reason=_blocked(row.get("reason")),
                            status=row.get("status"), text=row.get("reason"), at=at)
        elif list_name == "invalid_emails":
            event = failure("sendgrid", key, address, permanent=True, reason="user_unknown",
                            text=row.get("reason"), at=at)
        else:
            event = failure("sendgrid", key, address, permanent=True, status=row.get("status"),
                            text=row.get("reason"), at=at)
        event.address_only = True
        out.append(event)
    return out
