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

__all__ = ["COUNTED_KINDS", "DEFAULT_THRESHOLD", "ThresholdPolicy"]

#: Kinds that count towards the threshold; policy (5.7.x) only with ``count_policy``.
#: (The values of :class:`newsletter_kit.bounces.BounceKind`; plain text, so that counting
#: needs no parser.)
COUNTED_KINDS = ("hard", "soft")
_POLICY_KIND = "policy"
#: The threshold of a policy when none is saved (the review panel's starting point).
DEFAULT_THRESHOLD = 3


# --- the policy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdPolicy:
    """How bounces count towards the threshold, and the threshold itself.

    ``hard`` and ``soft`` bounces count, ``policy`` ones only with ``count_policy``; with
    ``stale_after_days`` older bounces no longer count; with ``reset_on_success`` a bounce
    followed by a successful delivery no longer counts; a bounce report that matches no delivery
    we made (our Message-ID, the campaign stamp plus an address sent that campaign, a signed VERP
    token; a 5xx seen while sending always matches) counts only with ``count_unmatched``.  An
    address whose count reaches ``threshold`` is suppressed.  The bounce settings give theirs (``BounceSettings.policy``);
    the SQL is :func:`counting_query`, which :func:`apply_threshold` and the review's what-if run.

    Example::

        >>> ThresholdPolicy(2, count_policy=True).counted_kinds
        ('hard', 'soft', 'policy')
        >>> ThresholdPolicy(2).replace(threshold=5).threshold
        5
    """

    threshold: int = DEFAULT_THRESHOLD
    count_policy: bool = False
    stale_after_days: int | None = None
    reset_on_success: bool = False
    count_unmatched: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int) or self.threshold < 1:
            raise ValidationError(f"the threshold must be at least 1, not {self.threshold!r}", "threshold")
        if self.stale_after_days is not None and self.stale_after_days < 1:
            raise ValidationError("stale-after days must be positive", "stale_after_days")

    @classmethod
    def _saved(cls, store: Store) -> ThresholdPolicy:
        """The policy fields of the saved bounce settings (the defaults when none are saved).

        Read from the settings row itself, so that the policy needs nothing of ``settings.py``
        (which builds its ``BounceSettings.policy`` from this class)."""
        row = store.conn.execute("SELECT data FROM settings WHERE section = 'bounce'").fetchone()
        data = json.loads(row[0]) if row else {}
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def replace(self, **changes: Any) -> ThresholdPolicy:
        """A copy with ``changes`` (the policy itself is immutable)."""
        return dataclasses.replace(self, **changes)

    @property
    def counted_kinds(self) -> tuple[str, ...]:
        """The bounce kinds that count under this policy."""
        return (*COUNTED_KINDS, _POLICY_KIND) if self.count_policy else COUNTED_KINDS

    @classmethod
    def from_store(cls, store: Store, *, threshold: int | None = None, count_policy: bool | None = None,
                   stale_after_days: int | None = None, reset_on_success: bool | None = None,
                   count_unmatched: bool | None = None) -> ThresholdPolicy:
        """The bounce settings' policy (defaults when none are saved), with any argument given
        replacing the saved value.

        ``stale_after_days=0`` switches staleness off (the settings cannot hold 0).

        >>> from newsletter_kit.store import open_store
        >>> ThresholdPolicy.from_store(open_store(":memory:"), count_policy=True).count_policy
        True
        """
        base = cls._saved(store)
        stale = base.stale_after_days if stale_after_days is None else (stale_after_days or None)
        if stale is not None and stale < 0:
            raise ValidationError("stale-after days must be positive", "stale_after_days")
        return cls(
            base.threshold if threshold is None else threshold,
            base.count_policy if count_policy is None else bool(count_policy),
            stale,
            base.reset_on_success if reset_on_success is None else bool(reset_on_success),
            base.count_unmatched if count_unmatched is None else bool(count_unmatched),
        )
