"""What a parsed message says: the kinds, the recipients it names, the report.

>>> BounceReport(True, HARD, [BounceRecipient("a@example.com", HARD, "5.1.1")]).addresses
['a@example.com']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

class BounceKind(StrEnum):
    """What a message says about a delivery (a ``str``, so it compares and serialises as text)."""

    HARD = "hard"
    SOFT = "soft"
    POLICY = "policy"
    DELAYED = "delayed"
    COMPLAINT = "complaint"
    AUTOREPLY = "autoreply"
    HUMAN = "human"
    OTHER = "other"


HARD = BounceKind.HARD
SOFT = BounceKind.SOFT
POLICY = BounceKind.POLICY
DELAYED = BounceKind.DELAYED
COMPLAINT = BounceKind.COMPLAINT
AUTOREPLY = BounceKind.AUTOREPLY
HUMAN = BounceKind.HUMAN
OTHER = BounceKind.OTHER

#: The kinds that are delivery failures (``is_bounce``).
BOUNCE_KINDS = frozenset({HARD, SOFT, POLICY})
#: A report with several recipients takes the most severe kind of theirs.
SEVERITY = {HARD: 4, POLICY: 3, SOFT: 2, DELAYED: 1}


@dataclass
class BounceRecipient:
    """One recipient named by a report: the address we sent to and what happened to it."""

    address: str
    kind: BounceKind
    status: str | None = None
    action: str | None = None
    diagnostic: str | None = None
    remote_mta: str | None = None
    #: why it failed and whom that is about: a name of ``newsletter_kit.reasons.REASONS``
    reason: str | None = None
    reply_code: int | None = None

    def to_dict(self) -> dict[str, str | None]:
        """The recipient as in ``bounces parse --json``.

        >>> BounceRecipient("a@example.com", HARD, "5.1.1", "failed").to_dict()["kind"]
        'hard'
        """
        return {
            "address": self.address,
            "kind": str(self.kind.value),
            "status": self.status,
            "action": self.action,
            "diagnostic": self.diagnostic,
            "reason": self.reason,
        }


@dataclass
class BounceReport:
    """What one message says: its kind, the recipients it names, and our original's identity.

    ``message_id`` and ``campaign`` belong to *our* original message (quoted by the report);
    ``report_message_id`` and ``date`` belong to the report itself.
    """

    is_bounce: bool
    kind: BounceKind
    recipients: list[BounceRecipient] = field(default_factory=list)
    campaign: str | None = None
    message_id: str | None = None
    reason: str | None = None
    report_message_id: str | None = None
    date: str | None = None
    reporting_mta: str | None = None
    verp_token: str | None = None

    @property
    def addresses(self) -> list[str]:
        """The recipients' addresses, in report order."""
        return [r.address for r in self.recipients]

    def to_dict(self) -> dict[str, object]:
        """The report as one object of ``bounces parse --json`` (without ``file``).

        >>> BounceReport(False, HUMAN).to_dict()["kind"]
        'human'
        """
        return {
            "is_bounce": self.is_bounce,
            "kind": str(self.kind.value),
            "recipients": [r.to_dict() for r in self.recipients],
            "campaign": self.campaign,
            "message_id": self.message_id,
        }


def worst(kinds: list[BounceKind]) -> BounceKind:
    return max(kinds, key=lambda k: SEVERITY.get(k, 0)) if kinds else OTHER


def merge_recipients(recipients: list[BounceRecipient]) -> list[BounceRecipient]:
    """One entry per address, keeping the most severe; order of first appearance."""
    merged: dict[str, BounceRecipient] = {}
    for rcpt in recipients:
        seen = merged.get(rcpt.address)
        if seen is None or SEVERITY.get(rcpt.kind, 0) > SEVERITY.get(seen.kind, 0):
            merged[rcpt.address] = rcpt
    return list(merged.values())

