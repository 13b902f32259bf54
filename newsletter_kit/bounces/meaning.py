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


# The refusal answered the message itself (DATA), not the address (RCPT): Postfix's "(in reply to
# end of DATA command)".  (Not a Sendmail transcript's ">>> DATA": with pipelining the RCPT
# refusals arrive after it, and some servers refuse unknown users only there.)
_AFTER_DATA_RE = re.compile(
    r"in reply to end of data\s+command|after end of data",
    re.IGNORECASE,
)


_AT_MAIL_FROM_RE = re.compile(
    r"after mail from:|in reply to mail from\s+command|>>> mail from:[^\n]*\s+<<< [45]\d\d", re.IGNORECASE
)
#: Reasons that say little: other words about the same recipient may say more.
VAGUE = frozenset({"undefined", "system_error", "network_error", "syntax_error"})


def _specific(first: str | None, second: str | None) -> str | None:
    """The more telling of two reasons: a specific one over a vague one, else the first found."""
    if second is not None and (first is None or second not in VAGUE):
        return second
    return first


def _refine(reason: str, status: str | None, words: str) -> str:
    """Where the codes or the moment of the refusal change what the words mean."""
    if reasons.side(reason) != reasons.SENDER and _AT_MAIL_FROM_RE.search(words):
        return "sender_rejected"  # refused before any recipient was named: about our sender
    if reason == "user_unknown":
        # After DATA the address had been accepted: the recipient's side filtered this
        # message, which is no proof that the address is gone.
        if _AFTER_DATA_RE.search(words):
            return "filtered"
    elif reason == "host_unknown" and (status or "").startswith("4"):
        return "network_error"  # a temporary lookup failure proves nothing about the domain
    return reason


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
    worded = reasons.from_text(rcpt.diagnostic or "")
    if text and (worded is None or worded in VAGUE) and text != rcpt.diagnostic:
        worded = _specific(worded, reasons.from_text(text))
    rcpt.reason = worded or reasons.classify(rcpt.status, rcpt.reply_code, "")
    final = rcpt.kind is not DELAYED and (rcpt.action or "").startswith("failed")
    if final and rcpt.reason in VAGUE and (rcpt.status or "").startswith("4"):
        rcpt.reason = "expired"  # a final failure with a temporary code: the retries ran out
    rcpt.reason = _refine(rcpt.reason, rcpt.status, " ".join(t for t in (rcpt.diagnostic, text) if t))
    if rcpt.kind is DELAYED:
        return rcpt
    rcpt.kind = kind_of(rcpt.reason, rcpt.reply_code, rcpt.status)
    return rcpt
