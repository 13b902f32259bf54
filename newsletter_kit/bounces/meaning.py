"""What one recipient's facts mean: its reason (from :mod:`newsletter_kit.reasons`) and the kind
that follows from it.  Detectors pull out the facts (status, reply code, diagnostic); this module
is the one place that turns them into a verdict.

>>> r = judge(BounceRecipient("a@example.com", HARD, "5.1.1", "failed", "550 5.1.1 blocked using zen.spamhaus.org"))
>>> r.reason, r.kind.value, r.reply_code
('blocked', 'policy', 550)
"""

from __future__ import annotations

import re

from .. import reasons
from .report import DELAYED, HARD, OTHER, POLICY, SOFT, BounceKind, BounceRecipient

# An SMTP reply code at the start of a diagnostic or after a marker ("said: 550", "<<< 550").
_REPLY_RE = re.compile(r"(?<![\d.\-/:])([245][0-5]\d)(?:[ \-]|$)(?![\d]{3}-)")


def reply_code(text: str | None) -> int | None:
    """The first SMTP reply code in ``text`` (not a status code, not a phone number), or None.

    >>> reply_code("smtp; 550 5.1.1 <a@example.com>: user unknown"), reply_code("5.1.1 unknown")
    (550, None)
    """
    if not text:
        return None
    for match in _REPLY_RE.finditer(text[:2000]):
        start = match.start()
        if start and text[start - 1].isalnum():
            continue
        return int(match.group(1))
    return None


_AFTER_DATA_RE = re.compile(r"in reply to end of data command|after end of data", re.IGNORECASE)


def kind_of(reason: str, reply: int | None = None, status: str | None = None) -> BounceKind:
    """The kind a failure's reason gives: hard only for a permanent failure of the address,
    policy for anything about the sender (and the recipient's own filter), soft otherwise.

    >>> kind_of("user_unknown").value, kind_of("mailbox_full").value, kind_of("no_ptr").value
    ('hard', 'soft', 'policy')
    """
    side = reasons.side(reason)
    if side == reasons.RECIPIENT:
        return HARD if reasons.is_hard(reason, reply, status) else SOFT
    if side == reasons.SENDER or reason == "filtered":
        return POLICY
    return SOFT


def judge(rcpt: BounceRecipient, text: str | None = None) -> BounceRecipient:
    """Fill ``reason``, ``reply_code`` and the ``kind`` that follows, from the recipient's status,
    its diagnostic and ``text`` (the notice's words about it, when richer than the diagnostic).
    A delay stays ``delayed`` and a success notice is ``delivered``, whatever the words say."""
    if rcpt.reply_code is None:
        rcpt.reply_code = reply_code(rcpt.diagnostic) or reply_code(text)
    if rcpt.kind is OTHER:  # not a failure: a success notice, or a block that states nothing
        rcpt.reason = "delivered" if (rcpt.action or "") in ("delivered", "relayed", "expanded") else None
        return rcpt
    # The diagnostic's words first, then the notice's words about this recipient, then the codes.
    worded = reasons.from_text(rcpt.diagnostic or "") or (reasons.from_text(text) if text else None)
    rcpt.reason = worded or reasons.classify(rcpt.status, rcpt.reply_code, "")
    if rcpt.reason == "user_unknown" and _AFTER_DATA_RE.search(" ".join(t for t in (rcpt.diagnostic, text) if t)):
        # Refused after the message itself was sent, though the address was accepted: the
        # recipient's filter said no to this message, the address exists.
        rcpt.reason = "filtered"
    if rcpt.kind is DELAYED:
        return rcpt
    rcpt.kind = kind_of(rcpt.reason, rcpt.reply_code, rcpt.status)
    return rcpt
