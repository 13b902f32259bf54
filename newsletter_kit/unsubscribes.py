"""Replies to the ``List-Unsubscribe`` mailto: recognise an opt-out request in a message read
from the bounce mailbox, check its signed token, and record the opt-out.

A request is a message whose *Subject* asks to unsubscribe (what a ``mailto:...?subject=
unsubscribe%20TOKEN`` link puts there); its token (:mod:`~newsletter_kit.tokens`) is looked for
in the Subject, the To address, then the body's start. A reply quoting our footer keeps its own
subject, so a token it quotes never counts; a forged token is a request that changes nothing.

Example::

    >>> from newsletter_kit.tokens import unsubscribe_token
    >>> key = b"k" * 32
    >>> raw = (b"From: ann@example.org\\r\\nSubject: unsubscribe "
    ...        + unsubscribe_token(key, "spring", "Ann@example.org").encode() + b"\\r\\n\\r\\n")
    >>> unsubscribe_request(raw, key, campaigns=["spring"])
    (True, ('ann@example.org', 'spring'))
    >>> unsubscribe_request(b"Subject: unsubscribe me\\r\\n\\r\\n", key)
    (True, None)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from .store import Store
from .tokens import campaign_ref, is_campaign_ref

_UNSUB_WORD_RE = re.compile(r"unsubscribe|disiscri|cancellami|cancellazione", re.IGNORECASE)
_TOKEN_RE = re.compile(r"[A-Za-z0-9_\-.~=:+/]{16,512}")


def unsubscribe_request(raw: bytes, key: bytes,
                        campaigns: Iterable[str] = ()) -> tuple[bool, tuple[str, str | None] | None]:
    """(is it an opt-out request, (email, campaign) when its token is valid under ``key``).

    A token names its campaign by a short hash: resolved against ``campaigns`` when given, else
    left as that ref for :func:`record_unsubscribe` to resolve against the store.
    """
    verify = _token_verifier()
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw[:65536], headersonly=True)
    subject = _decoded(headers.get("Subject", ""))
    if not _UNSUB_WORD_RE.search(subject):
        return False, None
    for token in _token_candidates(headers, raw):
        result = verify(key, token)
        if result:
            campaign, email = result
            if is_campaign_ref(campaign):
                campaign = next((n for n in campaigns if campaign_ref(n) == campaign), campaign)
            return True, (email.strip().lower(), campaign)
    return True, None


def record_unsubscribe(store: Store, email: str, campaign: str | None) -> None:
    """Record the opt-out a valid request asked for (source ``mailto``), idempotently.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> store = open_store(":memory:")
        >>> record_unsubscribe(store, "ann@example.org", "spring")
        >>> store.conn.execute("SELECT email, campaign, source FROM unsubscribes").fetchall()
        [('ann@example.org', 'spring', 'mailto')]
    """
    from .audience import add_unsubscribe  # late: audience is heavier than reading a mailbox needs

    add_unsubscribe(store, email, campaign_named(store, campaign), source="mailto")


def campaign_named(store: Store, campaign: str | None) -> str | None:
    """The campaign a token's campaign stands for: a name as is; a ref (a token carries a short
    hash of the name) resolved against the store's campaigns, or None (everything) when no
    campaign has it any more: the reader asked to hear no more, and that wish wins.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.tokens import campaign_ref
        >>> campaign_named(open_store(":memory:"), campaign_ref("gone")) is None
        True
    """
    if not is_campaign_ref(campaign):
        return campaign
    for (name,) in store.conn.execute("SELECT name FROM campaigns"):
        if campaign_ref(name) == campaign:
            return str(name)
    return None


def _token_candidates(headers: Message, raw: bytes) -> list[str]:
    """Token-like words of the Subject, the To address and the body's start, in that order."""
    # Decoded: a mail client (and Python's own folding of a long word) may send the subject as
    # RFC 2047 encoded words, which hide the token from a plain scan.
    texts = [_decoded(headers.get("Subject", "")), _decoded(headers.get("To", ""))]
    body = raw.split(b"\r\n\r\n", 1)[-1] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[-1]
    texts.append(body[:4096].decode("utf-8", "replace"))
    seen: dict[str, None] = {}
    for text in texts:
        for word in _TOKEN_RE.findall(text):
            seen.setdefault(word, None)
            seen.setdefault(word.strip(".:=+/-~"), None)
    return [w for w in seen if len(w) >= 16]


def _decoded(value: object) -> str:
    """A header's text with RFC 2047 encoded words decoded and folding undone (as is on failure).

    >>> _decoded("=?utf-8?q?unsubscribe_abc?=\\r\\n =?utf-8?q?def?=")
    'unsubscribe abcdef'
    """
    from email.header import decode_header, make_header

    text = str(value or "")
    try:
        return str(make_header(decode_header(text))).replace("\r\n", "").replace("\n", "")
    except (ValueError, LookupError, UnicodeError):
        return text


def _token_verifier() -> Callable[[bytes, str], tuple[str, str] | None]:
    """The token check (a seam: tests swap in their own token scheme)."""
    from .tokens import verify_unsubscribe_token

    return verify_unsubscribe_token
