"""Signed tokens: the one place that signs and checks what we hand out and read back.

A token is ``payload.signature`` in URL-safe base64, the signature a 128-bit prefix of
HMAC-SHA256 under the store's key (:meth:`Store.signing_key`) and a context string per token
kind, so a token of one kind never verifies as another. Pure: no I/O; the caller passes the key.

Today: the unsubscribe token (a short hash of the campaign name and the address, so its
length never depends on the name) carried by ``List-Unsubscribe`` (the ``mailto:`` subject and the
https URL) and read back from replies to the ``mailto:``; and the VERP token of the envelope
sender (``LOCAL+TOKEN@DOMAIN``), which a bounce comes back to and which names the delivery.

Example::

    >>> from newsletter_kit.store import open_store
    >>> key = open_store(":memory:").signing_key()
    >>> verify_unsubscribe_token(key, unsubscribe_token(key, "spring", "ann@example.org"), ["spring"])
    ('spring', 'ann@example.org')
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable

_UNSUBSCRIBE_CONTEXT = b"newsletter-kit unsubscribe v1\0"  # payload: the name (old tokens)
_UNSUBSCRIBE_CONTEXT_V2 = b"newsletter-kit unsubscribe v2\0"  # payload: campaign_ref(name)
_CAMPAIGN_REF = re.compile(r"#[0-9a-f]{16}")
_VERP_CONTEXT = b"newsletter-kit verp v1\0"
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


def campaign_ref(campaign: str) -> str:
    """The short stand-in for a campaign name that an unsubscribe token carries: ``#`` and 16
    hex digits of its SHA-256, whatever the name's length or script.

    Example::

        >>> campaign_ref("spring")
        '#622a494d3ea8c7ba'
        >>> len(campaign_ref("春の大セール" * 40)) == len(campaign_ref("x"))
        True
    """
    return "#" + hashlib.sha256(campaign.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def unsubscribe_token(key: bytes, campaign: str, email: str) -> str:
    """A URL-safe token naming the campaign (by :func:`campaign_ref`) and address, signed with
    HMAC-SHA256. Its length does not depend on the campaign name.

    Example::

        >>> token = unsubscribe_token(b"k" * 32, "spring", "ann@example.org")
        >>> verify_unsubscribe_token(b"k" * 32, token, campaigns=["autumn", "spring"])
        ('spring', 'ann@example.org')
    """
    return sign(key, f"{campaign_ref(campaign)}\n{email}".encode(), _UNSUBSCRIBE_CONTEXT_V2)


def verify_unsubscribe_token(key: bytes, token: str,
                             campaigns: Iterable[str] = ()) -> tuple[str, str] | None:
    """``(campaign, email)`` when the token is genuine; None when forged or garbled.

    A token carries the campaign's :func:`campaign_ref`: the name among ``campaigns`` it
    stands for is returned, or the ref itself when none matches. A token made before refs
    (the name itself in the payload) still verifies and returns that name.

    Example::

        >>> token = unsubscribe_token(b"k" * 32, "spring", "ann@example.org")
        >>> verify_unsubscribe_token(b"other key", token) is None
        True
        >>> verify_unsubscribe_token(b"k" * 32, token)
        ('#622a494d3ea8c7ba', 'ann@example.org')
    """
    payload = unsign(key, token, _UNSUBSCRIBE_CONTEXT_V2)
    if payload is None:
        payload = unsign(key, token, _UNSUBSCRIBE_CONTEXT)  # a token sent before refs
        if payload is None:
            return None
    campaign, sep, email = payload.decode("utf-8", "replace").rpartition("\n")
    if not (sep and email):
        return None
    if is_campaign_ref(campaign):
        campaign = next((name for name in campaigns if campaign_ref(name) == campaign), campaign)
    return campaign, email


def is_campaign_ref(text: str | None) -> bool:
    """Whether ``text`` is a :func:`campaign_ref` (a token whose campaign was not resolved).

    Example::

        >>> is_campaign_ref(campaign_ref("spring")), is_campaign_ref("spring")
        (True, False)
    """
    return bool(text) and _CAMPAIGN_REF.fullmatch(text or "") is not None


def find_unsubscribe_token(text: str) -> str | None:
    """The token in a reply to the ``mailto:`` (``Re: unsubscribe TOKEN``), if any.

    Example::

        >>> find_unsubscribe_token("Re: unsubscribe abc.def")
        'abc.def'
    """
    match = _TOKEN_IN_TEXT.search(text or "")
    return match.group(1) if match else None


# --- VERP: the envelope sender names the delivery -----------------------------------------------

# Lowercase hex and digits only: some mail systems lowercase the address a bounce comes back to.
# A 64-bit signature: guessing one takes 2**63 bounces on average.
_VERP_SIGNATURE_BYTES = 8
_VERP_TOKEN_RE = re.compile(r"([0-9]{1,15})\.([0-9a-f]{16})")
#: The longest token (delivery ids below 10**15), so that LOCAL+TOKEN fits in 64 octets.
VERP_TOKEN_MAX = 15 + 1 + 2 * _VERP_SIGNATURE_BYTES


def _verp_signature(key: bytes, delivery_id: int) -> str:
    return hmac.new(key, _VERP_CONTEXT + str(delivery_id).encode(), hashlib.sha256).hexdigest()[
        : 2 * _VERP_SIGNATURE_BYTES]


def verp_token(key: bytes, delivery_id: int) -> str:
    """The VERP token of a delivery: its ledger id and a signature, e.g. ``'42.5c8b0d...'``.

    Example::

        >>> token = verp_token(b"k" * 32, 42)
        >>> token.startswith("42."), verify_verp_token(b"k" * 32, token)
        (True, 42)
    """
    return f"{int(delivery_id)}.{_verp_signature(key, int(delivery_id))}"


def verify_verp_token(key: bytes, token: str | None) -> int | None:
    """The delivery id of a genuine VERP token (any letter case); None when forged or garbled.

    Example::

        >>> verify_verp_token(b"k" * 32, "42.0000000000000000") is None
        True
    """
    match = _VERP_TOKEN_RE.fullmatch((token or "").strip().lower())
    if match is None:
        return None
    delivery_id = int(match.group(1))
    if not hmac.compare_digest(match.group(2), _verp_signature(key, delivery_id)):
        return None
    return delivery_id


def envelope_sender(bounce_address: str, key: bytes | None, delivery_id: int) -> str:
    """MAIL FROM for one delivery: ``LOCAL+TOKEN@DOMAIN`` of the bounce address with VERP on
    (``key`` given), else the bounce address itself.

    Example::

        >>> envelope_sender("bounces@example.org", None, 7)
        'bounces@example.org'
        >>> envelope_sender("bounces@example.org", b"k" * 32, 7).startswith("bounces+7.")
        True
    """
    if key is None:
        return bounce_address
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{verp_token(key, delivery_id)}@{domain}"


def check_verp_address(bounce_address: str) -> str:
    """A bounce address VERP can extend: no ``+`` already, and room for the token in 64 octets.

    Example::

        >>> check_verp_address("bounces@example.org")
        'bounces@example.org'
    """
    from .errors import ValidationError

    local = bounce_address.rpartition("@")[0]
    if "+" in local:
        raise ValidationError(f"with VERP on, the bounce address {bounce_address!r} must not contain '+' "
                              "(VERP adds +TOKEN to it)", "bounce_address")
    if len(local) + 1 + VERP_TOKEN_MAX > 64:
        raise ValidationError(f"with VERP on, the local part of the bounce address {bounce_address!r} must be at "
                              f"most {64 - 1 - VERP_TOKEN_MAX} characters (VERP adds +TOKEN to it)", "bounce_address")
    return bounce_address
