"""Deliverability guards while sending: stop a run that is burning the sender's reputation.

Two signals the big mailbox providers act on:

- **hard refusals at RCPT**: a list whose addresses the server refuses that often is stale or
  bought. A run pauses (``paused == "guard"``, exit code 3) when more than
  ``rcpt_refusal_rate`` of the last ``window`` recipients (5 % of 200: more than 10) were refused
  at RCPT for the mailbox (``5.1.x``/``5.2.x``, or a 5xx without a code; ``5.7.x`` policy
  refusals are about the sender, not the list);
- **spam complaints** (ARF feedback reports recorded by ``bounces fetch`` and matched to a
  delivery of the campaign: forged or unmatched ones never count) per campaign, against
  the lines Gmail and Yahoo publish: warn at 0.1 % of the delivered messages, and over 0.3 % the
  campaign is not sent further unless the run ignores the guards.

Example::

    >>> guard = RefusalWindow(SendGuards(rcpt_refusal_rate=0.05, window=20))
    >>> from newsletter_kit.transport import classify_reply
    >>> [guard.add(classify_reply(550, "5.1.1 no such user", "RCPT")) for _ in range(2)]
    [False, True]
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .complaints import COMPLAINT_STOP, COMPLAINT_WARN, complaint_counts, complaint_level, complaint_rate  # noqa: F401 (re-exported)
from .store import Store

if TYPE_CHECKING:
    from .transport import SendOutcome

#: Gmail clips a message whose HTML is larger than this (bytes) behind "View entire message".
HTML_CLIP_BYTES = 102 * 1024


@dataclass(frozen=True)
class SendGuards:
    """The guards' settings for a send run.

    ``rcpt_refusal_rate`` of the last ``window`` recipients refused at RCPT pauses the run;
    ``complaint_stop``: a campaign whose complaint rate is above it is not sent further.

    Example::

        >>> SendGuards().rcpt_refusal_rate, SendGuards().window
        (0.05, 200)
    """

    rcpt_refusal_rate: float = 0.05
    window: int = 200
    complaint_stop: float = COMPLAINT_STOP

    def __post_init__(self) -> None:
        if not 0 < self.rcpt_refusal_rate <= 1:
            raise ValueError("rcpt_refusal_rate must be a fraction in (0, 1]")
        if self.window < 1:
            raise ValueError("window must be at least 1")


def is_hard_rcpt_refusal(outcome: SendOutcome) -> bool:
    """A mailbox refusal at RCPT: the address does not exist or cannot take mail.

    Example::

        >>> from newsletter_kit.transport import classify_reply
        >>> is_hard_rcpt_refusal(classify_reply(550, "5.1.1 unknown", "RCPT"))
        True
        >>> is_hard_rcpt_refusal(classify_reply(554, "5.7.1 blocked", "RCPT"))
        False
    """
    return (outcome.kind == "failed" and outcome.stage == "RCPT" and outcome.concerns == "recipient"
            and not (outcome.status or "").startswith("5.7."))


class RefusalWindow:
    """The hard RCPT refusals among the last ``guards.window`` recipients answered.

    :meth:`add` returns True once they pass the rate (more than ``rate * window`` of them).
    """

    def __init__(self, guards: SendGuards):
        self.guards = guards
        self._window: collections.deque[bool] = collections.deque(maxlen=guards.window)
        self.refused = 0
        self._limit = guards.rcpt_refusal_rate * guards.window

    def add(self, outcome: SendOutcome) -> bool:
        """Count one recipient's outcome (paused/unknown ones are not answers and are skipped)."""
        if outcome.kind in ("paused", "unknown"):
            return False
        if len(self._window) == self._window.maxlen and self._window[0]:
            self.refused -= 1
        hard = is_hard_rcpt_refusal(outcome)
        self._window.append(hard)
        self.refused += hard
        return self.refused > self._limit

    def describe(self) -> str:
        """One sentence for the run's report."""
        rate = self.guards.rcpt_refusal_rate
        return (f"{self.refused} of the last {len(self._window)} recipients were refused at RCPT "
                f"(more than {rate:.0%} of {self.guards.window}): the list looks stale; clean it, "
                "or run `send --ignore-guards`")


def complaint_block(store: Store, campaign: str, guards: SendGuards) -> str | None:
    """Why the campaign must not be sent further (its complaint rate), or None.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> complaint_block(open_store(":memory:"), "spring", SendGuards()) is None
        True
    """
    complaints, delivered = complaint_counts(store, campaign).get(campaign, (0, 0))
    rate = complaint_rate(complaints, delivered)
    if rate <= guards.complaint_stop:
        return None
    return (f"{complaints} spam complaint(s) for {delivered} delivered message(s): {rate:.2%}, over "
            f"the {guards.complaint_stop:.1%} line mailbox providers act on; find out why before "
            "sending more, or run `send --ignore-guards`")


def html_size_warning(html: str) -> str | None:
    """A warning when the HTML is larger than Gmail shows without clipping (102 KB), or None.

    Example::

        >>> html_size_warning("<p>short</p>") is None
        True
        >>> "102 KB" in html_size_warning("x" * 110_000)
        True
    """
    size = len(html.encode("utf-8"))
    if size <= HTML_CLIP_BYTES:
        return None
    return (f"the HTML is {size / 1024:.0f} KB: Gmail clips messages over 102 KB behind "
            "'View entire message' (and the unsubscribe link at the bottom with it)")
