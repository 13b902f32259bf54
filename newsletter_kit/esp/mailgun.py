"""Mailgun: the Events API (``GET /v3/{domain}/events``, pages with ``paging.next``) and webhook
bodies (``{"signature": {...}, "event-data": {...}}``).

``failed`` events have a ``severity``: ``permanent`` is final; ``temporary`` means Mailgun is
still retrying (a delay).  Our delivery id comes back in ``user-variables`` (the
``X-Mailgun-Variables`` header), our Message-ID in ``message.headers.message-id``.

>>> e = parse_mailgun_event({"id": "x1", "event": "failed", "severity": "permanent",
...     "recipient": "a@example.org", "timestamp": 1700000000,
...     "delivery-status": {"code": 550, "message": "5.1.1 user unknown"}})
>>> e.kind.value, e.reason
('hard', 'user_unknown')
"""

from __future__ import annotations

import json
from typing import Any

from .events import ECHO_KEY, EspEvent, as_dict, complaint, delay, failure, ignored, iso_time

__all__ = ["is_mailgun_event", "is_mailgun_page", "is_mailgun_webhook", "parse_mailgun_event"]

_SUPPRESSED = {"suppress-bounce": "user_unknown", "suppress-complaint": None, "suppress-unsubscribe": None}


def is_mailgun_event(item: Any) -> bool:
    """Whether ``item`` is one Mailgun event (as in an Events page or a webhook's event-data)."""
    return isinstance(item, dict) and "event" in item and "recipient" in item and "id" in item


def is_mailgun_webhook(item: Any) -> bool:
    """Whether ``item`` is a webhook body: a signature and the event."""
    return isinstance(item, dict) and isinstance(item.get("event-data"), dict)


def is_mailgun_page(item: Any) -> bool:
    """Whether ``item`` is one page of the Events API."""
    return isinstance(item, dict) and isinstance(item.get("items"), list) and "paging" in item


def _ids(item: dict[str, Any]) -> dict[str, Any]:
    variables = item.get("user-variables")
    if isinstance(variables, str):
        try:
            variables = json.loads(variables)
        except ValueError:
            variables = None
    echo = variables.get(ECHO_KEY) if isinstance(variables, dict) else None
    message = as_dict(item.get("message"))
    headers = as_dict(message.get("headers"))
    msgid = headers.get("message-id")
    return {"echo": str(echo) if echo else None, "message_id": f"<{str(msgid).strip('<>')}>" if msgid else None,
            "provider_message_id": f"<{str(msgid).strip('<>')}>" if msgid else None,
            "at": iso_time(item.get("timestamp"))}


def parse_mailgun_event(item: dict[str, Any]) -> EspEvent:
    """One Mailgun event."""
    event, key, address, ids = str(item.get("event", "")), str(item.get("id")), item.get("recipient"), _ids(item)
    status = as_dict(item.get("delivery-status"))
    text = " ".join(str(status.get(k)) for k in ("message", "description") if status.get(k)) or item.get("reason")
    if event == "failed":
        why = str(item.get("reason", ""))
        if why in _SUPPRESSED:
            reason = _SUPPRESSED[why]
            if reason is None:
                return ignored("mailgun", key, address, f"Mailgun {why}", **ids)
            return failure("mailgun", key, address, permanent=True, reason=reason, text=why, **ids)
        if str(item.get("severity", "")) == "temporary":
            return delay("mailgun", key, address, status=status.get("enhanced-code"), text=text, **ids)
        return failure("mailgun", key, address, permanent=True, status=status.get("enhanced-code"), text=text,
                       code=status.get("code"), **ids)
    if event == "complained":
        return complaint("mailgun", key, address, text="complained", **ids)
    return ignored("mailgun", key, address, f"Mailgun {event[:40]}", **ids)
