"""Postmark: bounce records (``GET /bounces`` pages, ``{"TotalCount", "Bounces": [...]}``) and
bounce or spam-complaint webhooks (``RecordType``).

Postmark's ``Type`` says what happened; ``Blocked``, ``SpamNotification``, ``DMARCPolicy`` are
about us.  Our delivery id comes back in ``Metadata`` (the ``X-PM-Metadata-nk_delivery`` header,
webhooks only); an API record without it is matched, last, by its address and a delivery to it
within the window.  Postmark signs nothing: a file or page is the user's own data.

>>> parse_postmark({"ID": 1, "Type": "Blocked", "Email": "a@example.org",
...                 "Details": "blocked by policy", "BouncedAt": "2024-01-01T00:00:00Z"}).kind.value
'policy'
"""

from __future__ import annotations

from typing import Any

from .events import ECHO_KEY, EspEvent, as_dict, complaint, delay, failure, ignored, iso_time

__all__ = ["is_postmark", "is_postmark_page", "parse_postmark"]

#: Type -> (reason or None for the text's, permanent); None: not a failure of a delivery.
_TYPES: dict[str, tuple[str | None, bool] | None] = {
    "HardBounce": (None, True), "SoftBounce": (None, False), "DnsError": ("network_error", False),
    "BadEmailAddress": ("user_unknown", True), "AddressChange": ("has_moved", True),
    "Blocked": ("blocked", False), "SpamNotification": ("spam_detected", False),
    "VirusNotification": ("virus_detected", False), "DMARCPolicy": ("auth_failure", False),
    "ManuallyDeactivated": None, "Unsubscribe": None, "Subscribe": None, "AutoResponder": None,
    "OpenRelayTest": None, "ChallengeVerification": None, "SMTPApiError": None, "InboundError": None,
    "TemplateRenderingFailed": None, "Unconfirmed": None, "Unknown": (None, False),
}


def is_postmark(item: Any) -> bool:
    """Whether ``item`` is one Postmark bounce record or webhook."""
    return isinstance(item, dict) and "Email" in item and ("Type" in item or "RecordType" in item)


def is_postmark_page(item: Any) -> bool:
    """Whether ``item`` is one page of ``GET /bounces``."""
    return isinstance(item, dict) and isinstance(item.get("Bounces"), list)


def parse_postmark(item: dict[str, Any]) -> EspEvent:
    """One Postmark bounce record or webhook."""
    metadata = as_dict(item.get("Metadata"))
    echo = metadata.get(ECHO_KEY)
    ids = {"echo": str(echo) if echo else None, "provider_message_id": str(item.get("MessageID") or "") or None,
           "at": iso_time(item.get("BouncedAt") or item.get("ReceivedAt"))}
    kind = str(item.get("Type") or "")
    record = str(item.get("RecordType") or "Bounce")
    key = f"{record}:{item.get('ID')}"
    address = item.get("Email")
    if record == "SpamComplaint" or kind == "SpamComplaint":
        return _fallback(complaint("postmark", key, address, text="SpamComplaint", **ids))
    if kind == "Transient":
        return _fallback(delay("postmark", key, address, text=item.get("Details") or item.get("Description"), **ids))
    meaning = _TYPES.get(kind, (None, False))
    if meaning is None:
        return ignored("postmark", key, address, f"Postmark {kind[:40]}", **ids)
    reason, permanent = meaning
    event = failure("postmark", key, address, permanent=permanent, reason=reason,
                    text=item.get("Details") or item.get("Description"), **ids)
    return _fallback(event)


def _fallback(event: EspEvent) -> EspEvent:
    """An API record carries no Metadata (only webhooks echo it): without our id it is matched,
    last, by its address and a delivery to it within the window."""
    event.address_only = event.echo is None
    return event
