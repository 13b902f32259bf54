"""Signed tokens: the one place that signs and checks what we hand out and read back.

A token is ``payload.signature`` in URL-safe base64, the signature a 128-bit prefix of
HMAC-SHA256 under the store's key (:meth:`Store.signing_key`) and a context string per token
kind, so a token of one kind never verifies as another. Pure: no I/O; the caller passes the key.

Today: the unsubscribe token carried by ``List-Unsubscribe`` (the ``mailto:`` subject and the
https URL) and read back from replies to the ``mailto:``.

Example::

    >>> from newsletter_kit.store import open_store
    >>> key = open_store(":memory:").signing_key()
    >>> verify_unsubscribe_token(key, unsubscribe_token(key, "spring", "ann@example.org"))
    ('spring', 'ann@example.org')
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

_UNSUBSCRIBE_CONTEXT = b"newsletter-kit unsubscribe v1\0"
_SIGNATURE_BYTES = 16  # 128-bit HMAC-SHA256 prefix: unforgeable, and keeps the header short
_MAX_TOKEN = 2000
_TOKEN_IN_TEXT = re.compile(r"unsubscribe(?:%20|\s)+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", re.IGNORECASE)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, payload: bytes, context: bytes = _UNSUBSCRIBE_CONTEXT) -> bytes:
    return hmac.new(key, context + payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def sign(key: bytes, payload: bytes, context: bytes) -> str:
    """``payload.signature`` in URL-safe base64, signed for ``context`` (one per token kind).

    Example::

        >>> sign(b"k" * 32, b"x", b"doc v1\\0").startswith("eA.")
        True
    """
    return f"{_b64(payload)}.{_b64(_signature(key, payload, context))}"


def unsign(key: bytes, token: str, context: bytes) -> bytes | None:
    """The payload of a genuine token of ``context``; None when forged, garbled or another kind.

    Example::

        >>> unsign(b"k" * 32, sign(b"k" * 32, b"x", b"doc v1\\0"), b"doc v1\\0")
        b'x'
        >>> unsign(b"k" * 32, sign(b"k" * 32, b"x", b"doc v1\\0"), b"other v1\\0") is None
        True
    """
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > _MAX_TOKEN:
        return None
    body, _, sig = token.strip().partition(".")
    try:
        payload, signature = _unb64(body), _unb64(sig)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(signature, _signature(key, payload, context)):
        return None
    return payload


def unsubscribe_token(key: bytes, campaign: str, email: str) -> str:
    """A URL-safe token naming the campaign and address, signed with HMAC-SHA256.

    Example::

        >>> token = unsubscribe_token(b"k" * 32, "spring", "ann@example.org")
        >>> verify_unsubscribe_token(b"k" * 32, token)
        ('spring', 'ann@example.org')
    """
    return sign(key, f"{campaign}\n{email}".encode(), _UNSUBSCRIBE_CONTEXT)


def verify_unsubscribe_token(key: bytes, token: str) -> tuple[str, str] | None:
    """``(campaign, email)`` when the token is genuine; None when forged or garbled.

    Example::

        >>> token = unsubscribe_token(b"k" * 32, "spring", "ann@example.org")
        >>> verify_unsubscribe_token(b"other key", token) is None
        True
    """
    payload = unsign(key, token, _UNSUBSCRIBE_CONTEXT)
    if payload is None:
        return None
    campaign, sep, email = payload.decode("utf-8", "replace").rpartition("\n")
    return (campaign, email) if sep and email else None


def find_unsubscribe_token(text: str) -> str | None:
    """The token in a reply to the ``mailto:`` (``Re: unsubscribe TOKEN``), if any.

    Example::

        >>> find_unsubscribe_token("Re: unsubscribe abc.def")
        'abc.def'
    """
    match = _TOKEN_IN_TEXT.search(text or "")
    return match.group(1) if match else None
