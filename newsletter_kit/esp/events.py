"""One ESP event, whatever the provider: the facts it states, and what they mean.

Each provider module (``ses``, ``sendgrid``, ``mailgun``, ``postmark``) only pulls the facts
out of its JSON (address, the provider's words for the failure, status, text, ids); the kind
and the reason come from :mod:`newsletter_kit.reasons` here, once, so that an ESP's bounce
means what the same bounce read from the mailbox means.

>>> failure("ses", "e1", "a@example.org", permanent=True, text="smtp; 550 5.1.1 user unknown").kind.value
'hard'
>>> failure("ses", "e2", "a@example.org", permanent=False, reason="content_rejected").kind.value
'policy'
"""

from __future__ import annotations

import datetime as _dt
import functools
from dataclasses import dataclass, field
from typing import Any

from .. import reasons as _reasons
from ..bounces.classify import most_specific_status
from ..bounces.message import clean
from ..bounces.report import COMPLAINT, DELAYED, HARD, OTHER, POLICY, SOFT, BounceKind

__all__ = ["EspEvent", "PROVIDERS", "as_dict", "as_list", "as_str", "complaint", "delay", "failure", "ignored", "iso_time"]

PROVIDERS = ("ses", "sendgrid", "mailgun", "postmark")
#: The key our delivery id travels under in what the provider echoes (tags, unique args,
#: variables, metadata).
ECHO_KEY = "nk_delivery"
#: Text from outside is kept at most this long.
_TEXT_MAX = 1000


@dataclass
class EspEvent:
    """One recipient's outcome as a provider reports it."""

    provider: str
    event_id: str
    address: str | None
    kind: BounceKind
    reason: str
    status: str | None = None
    diagnostic: str | None = None
    reply_code: int | None = None
    at: str | None = None
    #: our delivery token echoed back (tag, unique arg, variable, metadata)
    echo: str | None = None
    #: the provider's id of the message (SES messageId, SendGrid sg_message_id, ...)
    provider_message_id: str | None = None
    #: our Message-ID, when the event quotes the message's headers
    message_id: str | None = None
    #: only an address and a time: matched to a delivery to it within the window
    address_only: bool = False
    #: why the event is not recorded (refused signature, not a failure), None to record it
    refused: str | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def recordable(self) -> bool:
        """Whether the event becomes a bounces row (a failure, a delay or a complaint)."""
        return self.refused is None and self.kind in (HARD, SOFT, POLICY, DELAYED, COMPLAINT) and bool(self.address)


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (provider JSON is untrusted).

    >>> as_dict([1]), as_dict({"a": 1})
    ({}, {'a': 1})
    """
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else an empty one.

    >>> as_list(3), as_list([1])
    ([], [1])
    """
    return value if isinstance(value, list) else []


def as_str(value: Any, limit: int = 500) -> str | None:
    """A JSON string or number as text (at most ``limit`` characters); None for anything else.

    >>> as_str("a"), as_str(5), as_str(True), as_str({})
    ('a', '5', None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return str(value)[:limit]


def _ids(ids: dict[str, Any]) -> dict[str, Any]:
    """The identifying fields of an event, each text or None (provider JSON is untrusted)."""
    return {k: (as_str(v) if k != "at" else v) for k, v in ids.items()}


def iso_time(value: Any) -> str | None:
    """A provider's time (unix seconds, or ISO 8601 with Z or an offset) as the store's UTC ISO.

    >>> iso_time(1700000000), iso_time("2023-11-14T22:13:20.000Z")
    ('2023-11-14T22:13:20+00:00', '2023-11-14T22:13:20+00:00')
    """
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.replace(".", "", 1).isdigit()):
            when = _dt.datetime.fromtimestamp(float(value), _dt.timezone.utc)
        else:
            text = str(value).strip().replace("Z", "+00:00")
            when = _dt.datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError, TypeError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _address(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    from ..addresses import lenient_address

    return lenient_address(value.strip().strip("<>"))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return clean(str(value), _TEXT_MAX) or None


@functools.lru_cache(maxsize=4096)
def _classify(status: str | None, reply_code: int | None, diagnostic: str | None) -> str:
    # Providers repeat the same few diagnostics thousands of times: classify each text once.
    return _reasons.classify(status, reply_code, diagnostic)


def _kind(reason: str, permanent: bool | None) -> BounceKind:
    """A failure's kind from its reason: about us -> policy; the address's own permanent
    failure -> hard; else soft.  A permanent failure the text does not explain is hard (the
    provider says the address will not take mail)."""
    where = _reasons.side(reason)
    if where == _reasons.SENDER:
        return POLICY
    if _reasons.is_hard(reason):
        return HARD
    if permanent and reason == "undefined":
        return HARD
    return SOFT


def failure(provider: str, event_id: str, address: Any, *, permanent: bool | None, reason: str | None = None,
            status: str | None = None, text: Any = None, code: Any = None, **ids: Any) -> EspEvent:
    """A failed delivery: ``reason`` when the provider's vocabulary says it, else the reason
    the status, code and text give (:func:`newsletter_kit.reasons.classify`)."""
    diagnostic = _text(text)
    status = most_specific_status(as_str(status, 40), diagnostic)
    try:
        reply_code = int(code) if isinstance(code, (int, str)) and code != "" and int(code) < 1000 else None
    except (TypeError, ValueError):
        reply_code = None
    found = reason or _classify(status, reply_code, diagnostic)
    return EspEvent(provider, _event_id(event_id), _address(address), _kind(found, permanent), found, status,
                    diagnostic, reply_code, **_ids(ids))


def delay(provider: str, event_id: str, address: Any, *, status: str | None = None, text: Any = None,
          **ids: Any) -> EspEvent:
    """A delivery the provider is still retrying (a warning, not a failure)."""
    diagnostic = _text(text)
    status = most_specific_status(as_str(status, 40), diagnostic)
    found = _classify(status, None, diagnostic)
    return EspEvent(provider, _event_id(event_id), _address(address), DELAYED, found, status, diagnostic,
                    **_ids(ids))


def complaint(provider: str, event_id: str, address: Any, *, text: Any = None, **ids: Any) -> EspEvent:
    """A spam complaint from the recipient."""
    return EspEvent(provider, _event_id(event_id), _address(address), COMPLAINT, "feedback", None, _text(text),
                    **_ids(ids))


def ignored(provider: str, event_id: str, address: Any, note: str, **ids: Any) -> EspEvent:
    """An event that is no failure (delivered, opened, unsubscribed...): read, not recorded."""
    return EspEvent(provider, _event_id(event_id), _address(address), OTHER, "delivered", note=note, **_ids(ids))


def _event_id(value: Any) -> str:
    """The provider's event id as text; an id that is no string or number becomes its digest."""
    text = as_str(value, 300)
    if text is None:
        import hashlib
        import json

        text = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return text
