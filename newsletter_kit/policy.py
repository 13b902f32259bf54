"""The threshold policy: how bounces count towards suppression, as one immutable value.

Its own module, below both the settings (which hold a policy) and the suppressions (which apply
one), so that neither imports the other.

>>> ThresholdPolicy(2).threshold
2
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .errors import ValidationError
from .store import Store

__all__ = ["COUNTED_KINDS", "DEFAULT_HARD_THRESHOLD", "DEFAULT_SOFT_THRESHOLD", "DEFAULT_SOFT_WINDOW_DAYS",
           "DEFAULT_THRESHOLD", "ThresholdPolicy"]

#: Kinds that count towards the threshold; policy (5.7.x) only with ``count_policy``.
#: (The values of :class:`newsletter_kit.bounces.BounceKind`; plain text, so that counting
#: needs no parser.)  Since issue 15 the *reason* of a bounce decides, not its kind: see
#: :func:`counted_as_sql`; the kinds only decide for rows recorded without a reason.
COUNTED_KINDS = ("hard", "soft")
_POLICY_KIND = "policy"
#: The single threshold of the review's what-if when none is saved (its starting point).
DEFAULT_THRESHOLD = 3
#: Per-kind defaults (listmonk counts hard, soft and complaints apart): one hard bounce
#: suppresses, three soft ones within 30 days do, a complaint at once.
DEFAULT_HARD_THRESHOLD = 1
DEFAULT_SOFT_THRESHOLD = 3
DEFAULT_SOFT_WINDOW_DAYS = 30


# --- the policy -----------------------------------------------------------------------------------


def _positive(value: int | None, what: str, field: str, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{what} must be at least 1, not {value!r}", field)


@dataclass(frozen=True)
class ThresholdPolicy:
    """How bounces count towards suppression: one frozen value object.

    What a bounce is *about* decides (its reason, :mod:`newsletter_kit.reasons`), never its code
    class: a failure about us (IP or domain blocked, SPF/DKIM/DMARC, content, rate...) counts
    for nobody.  Recipient-side reasons count as **hard** (unknown user or host, moved) or
    **soft** (mailbox full, suspended, expired); unclear ones as soft, the unclear refusals of a
    policy kind (a recipient's filter) only with ``count_policy``.  A **complaint** suppresses
    at once unless ``suppress_on_complaint`` is False.

    Two ways to set the thresholds:

    - **per kind** (the default): ``hard_threshold`` hard bounces suppress (default 1), or
      ``soft_threshold`` soft ones within the last ``soft_window_days`` (default 3 within 30);
    - **single** (the old ``--threshold``): when ``threshold`` is given and neither per-kind
      threshold is, hard and soft bounces add up to one count that suppresses at ``threshold``.

    For every kind: with ``stale_after_days`` older bounces no longer count; with
    ``reset_on_success`` a bounce followed by a successful delivery no longer counts; a report
    that matches no delivery we made counts only with ``count_unmatched``.  The bounce settings
    give theirs (``BounceSettings.policy``); the SQL is :func:`counting_query`, which
    :func:`apply_threshold` and the review's what-if run.

    Example::

        >>> ThresholdPolicy(2, count_policy=True).per_kind
        False
        >>> ThresholdPolicy().per_kind, ThresholdPolicy().hard, ThresholdPolicy().soft, ThresholdPolicy().window
        (True, 1, 3, 30)
        >>> ThresholdPolicy(2).replace(threshold=5).threshold
        5
        >>> ThresholdPolicy(hard_threshold=2).describe()
        'hard 2, soft 3 within 30 days, complaint at once'
    """

    threshold: int | None = None
    count_policy: bool = False
    stale_after_days: int | None = None
    reset_on_success: bool = False
    count_unmatched: bool = False
    hard_threshold: int | None = None
    soft_threshold: int | None = None
    soft_window_days: int | None = None
    suppress_on_complaint: bool = True

    def __post_init__(self) -> None:
        _positive(self.threshold, "the threshold", "threshold")
        _positive(self.hard_threshold, "the hard-bounce threshold", "hard_threshold")
        _positive(self.soft_threshold, "the soft-bounce threshold", "soft_threshold")
        _positive(self.soft_window_days, "the soft-bounce window (days)", "soft_window_days")
        if self.stale_after_days is not None and self.stale_after_days < 1:
            raise ValidationError("stale-after days must be positive", "stale_after_days")

    def replace(self, **changes: Any) -> ThresholdPolicy:
        """A copy with ``changes`` (the policy itself is immutable)."""
        return dataclasses.replace(self, **changes)

    @property
    def per_kind(self) -> bool:
        """Hard and soft bounces have thresholds of their own (else one ``threshold`` for both)."""
        return self.threshold is None or self.hard_threshold is not None or self.soft_threshold is not None

    @property
    def hard(self) -> int:
        """Hard bounces that suppress (per-kind mode)."""
        return self.hard_threshold or DEFAULT_HARD_THRESHOLD

    @property
    def soft(self) -> int:
        """Soft bounces within :attr:`window` days that suppress (per-kind mode)."""
        return self.soft_threshold or DEFAULT_SOFT_THRESHOLD

    @property
    def window(self) -> int:
        """The soft bounces' window in days (per-kind mode)."""
        return self.soft_window_days or DEFAULT_SOFT_WINDOW_DAYS

    def single(self, threshold: int | None = None) -> ThresholdPolicy:
        """This policy in single-threshold mode (the review's one-slider what-if).

        >>> ThresholdPolicy().single().threshold, ThresholdPolicy().single(5).per_kind
        (3, False)
        """
        return self.replace(threshold=threshold or self.threshold or DEFAULT_THRESHOLD,
                            hard_threshold=None, soft_threshold=None)

    def describe(self) -> str:
        """The thresholds in words (``settings bounce`` and the panels say it)."""
        if self.per_kind:
            text = f"hard {self.hard}, soft {self.soft} within {self.window} days"
        else:
            text = f"threshold {self.threshold} (hard and soft together)"
        return text + (", complaint at once" if self.suppress_on_complaint else ", complaints not counted")

    @property
    def counted_kinds(self) -> tuple[str, ...]:
        """The bounce kinds that count under this policy (for rows without a reason)."""
        return (*COUNTED_KINDS, _POLICY_KIND) if self.count_policy else COUNTED_KINDS

    @classmethod
    def _saved(cls, store: Store) -> ThresholdPolicy:
        """The policy fields of the saved bounce settings (the defaults when none are saved).

        Read from the settings row itself, so that the policy needs nothing of ``settings.py``
        (which builds its ``BounceSettings.policy`` from this class)."""
        row = store.conn.execute("SELECT data FROM settings WHERE section = 'bounce'").fetchone()
        try:
            data = json.loads(row[0]) if row else {}
        except ValueError:
            data = {}
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    @classmethod
    def from_store(cls, store: Store, *, threshold: int | None = None, count_policy: bool | None = None,
                   stale_after_days: int | None = None, reset_on_success: bool | None = None,
                   count_unmatched: bool | None = None, **more: Any) -> ThresholdPolicy:
        """The bounce settings' policy (defaults when none are saved), with any argument given
        replacing the saved value (``more``: the per-kind fields, e.g. ``hard_threshold=2``).

        ``stale_after_days=0`` switches staleness off (the settings cannot hold 0).

        >>> from newsletter_kit.store import open_store
        >>> ThresholdPolicy.from_store(open_store(":memory:"), count_policy=True).count_policy
        True
        """
        if stale_after_days is not None and stale_after_days < 0:
            raise ValidationError("stale-after days must be positive", "stale_after_days")
        given = {k: v for k, v in dict(threshold=threshold, count_policy=count_policy,
                                       stale_after_days=stale_after_days, reset_on_success=reset_on_success,
                                       count_unmatched=count_unmatched, **more).items() if v is not None}
        if given.get("stale_after_days") == 0:
            given["stale_after_days"] = None  # 0 switches staleness off
        for flag in ("count_policy", "reset_on_success", "count_unmatched", "suppress_on_complaint"):
            if flag in given:
                given[flag] = bool(given[flag])
        base = cls._saved(store)
        return base.replace(**given) if given else base
