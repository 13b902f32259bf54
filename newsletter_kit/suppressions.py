"""Suppressions: the threshold policy (one value object), counting, apply, and suppress / lift
with evidence and an audit trail.

One bounces row per recipient per report, keyed by (report_key, email), so the same report seen
twice counts once.  The count is one query over that table (as listmonk does) that the threshold,
the review's what-if and an analyst's ``pandas.read_sql`` all run; a suppression keeps the rows it
was based on as evidence, and is never an unsubscribe.

>>> from newsletter_kit.store import open_store
>>> store = open_store(":memory:")
>>> suppress(store, "Anna@Example.org"), [s["address"] for s in list_suppressions(store)]
(True, ['anna@example.org'])
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .addresses import normalize_address
from .errors import ValidationError
from .store import Store, now_iso

if TYPE_CHECKING:
    from .settings import BounceSettings

__all__ = [
    "COUNTED_KINDS", "DEFAULT_THRESHOLD", "ThresholdPolicy", "apply_threshold", "bounce_counts",
    "count_suppressions", "counting_query", "iter_suppressions", "list_suppressions", "remove_suppression",
    "suppress", "suppression_history",
]

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

        >>> ThresholdPolicy(2, count_policy=True)
        ThresholdPolicy(threshold=2, count_policy=True, stale_after_days=None, reset_on_success=False,
                        count_unmatched=False)
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
        from .settings import load_bounce_settings

        saved = load_bounce_settings(store)
        base = saved.policy if saved is not None else cls()
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


def _policy(policy: ThresholdPolicy | BounceSettings | None, **overrides: Any) -> ThresholdPolicy:
    """A policy from a policy, bounce settings or the defaults, with the non-None overrides."""
    if policy is None:
        base = ThresholdPolicy()
    elif isinstance(policy, ThresholdPolicy):
        base = policy
    else:
        base = policy.policy
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("stale_after_days") == 0:
        given["stale_after_days"] = None  # 0 switches staleness off, as in ThresholdPolicy.from_store
    return base.replace(**given) if given else base


# --- counting -------------------------------------------------------------------------------------


def counting_query(
    policy: ThresholdPolicy | None = None,
    addresses: Iterable[str] | None = None,
    *,
    now: str | None = None,
    count_policy: bool | None = None,
    stale_after_days: int | None = None,
    reset_on_success: bool | None = None,
    count_unmatched: bool | None = None,
) -> tuple[str, list[object]]:
    """The SQL (and parameters) of the bounces that count: one row per counted bounce.

    Columns: ``id, email, kind, status, diagnostic, campaign, source, bounced_at``.  Counted
    under ``policy`` (the keyword arguments override its fields): hard and soft bounces (policy
    with ``count_policy``) that match a delivery we made (any, with ``count_unmatched``),
    recorded after the address's last lifted suppression, not older than ``stale_after_days``
    and, with ``reset_on_success``, not followed by a successful delivery to the address (sent
    later, and not itself bounced).
    ``pandas.read_sql(sql, store.conn, params=params)`` gives an analyst the same rows.

    >>> sql, params = counting_query(count_policy=True)
    >>> params[:3]
    ['hard', 'soft', 'policy']
    """
    policy = _policy(policy, count_policy=count_policy, stale_after_days=stale_after_days,
                     reset_on_success=reset_on_success, count_unmatched=count_unmatched)
    kinds = policy.counted_kinds
    where = [f"b.kind IN ({', '.join('?' * len(kinds))})"]
    params: list[object] = list(kinds)
    if not policy.count_unmatched:
        # Only reports that match a delivery we made (forged or unrelated ones are kept apart).
        where.append("b.unmatched = 0")
    # A lifted suppression starts the count again: only bounces recorded after the lift, and
    # not dated before it (an old report fetched late is not news about the address).
    where.append(
        "(le.id IS NULL OR (b.id > coalesce(json_extract(le.detail, '$.after_bounce_id'), 0)"
        " AND julianday(b.bounced_at) >= julianday(le.at)))"
    )
    if policy.stale_after_days:
        where.append("julianday(b.bounced_at) >= julianday(?) - ?")
        params += [now or now_iso(), int(policy.stale_after_days)]
    if policy.reset_on_success:
        bad = ", ".join("?" * len(kinds))
        where.append(
            "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.email = b.email AND d.state = 'sent'"
            " AND julianday(d.sent_at) > julianday(b.bounced_at)"
            f" AND NOT EXISTS (SELECT 1 FROM bounces b2 WHERE b2.delivery_id = d.id AND b2.kind IN ({bad})))"
        )
        params += list(kinds)
    if addresses is not None:
        wanted = sorted({a.lower() for a in addresses})
        where.append(f"b.email IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(wanted))
    sql = (
        "SELECT b.id, b.email, b.kind, b.status, b.diagnostic, b.campaign, b.source, b.bounced_at"
        " FROM bounces b"
        " LEFT JOIN (SELECT email, max(id) AS event_id FROM suppression_events"
        "            WHERE action = 'lifted' GROUP BY email) lifted ON lifted.email = b.email"
        " LEFT JOIN suppression_events le ON le.id = lifted.event_id"
        f" WHERE {' AND '.join(where)}"
        " ORDER BY b.id"  # evidence lists the reports in the order they were recorded
    )
    return sql, params


def bounce_counts(
    store: Store,
    policy: ThresholdPolicy | None = None,
    addresses: Iterable[str] | None = None,
    *,
    count_policy: bool | None = None,
    stale_after_days: int | None = None,
    reset_on_success: bool | None = None,
    count_unmatched: bool | None = None,
) -> dict[str, int]:
    """Counted bounce reports per address (see :func:`counting_query` for what counts).

    >>> from newsletter_kit.store import open_store
    >>> bounce_counts(open_store(":memory:"))
    {}
    """
    sql, params = counting_query(policy, addresses, count_policy=count_policy, stale_after_days=stale_after_days,
                                 reset_on_success=reset_on_success, count_unmatched=count_unmatched)
    rows = store.conn.execute(f"SELECT email, count(*) FROM ({sql}) GROUP BY email ORDER BY email", params)
    return {email: n for email, n in rows}


def apply_threshold(
    store: Store, policy: ThresholdPolicy | BounceSettings | None = None, addresses: Iterable[str] | None = None
) -> list[str]:
    """Suppress every address (of ``addresses``, or all) whose count reached the threshold.

    ``policy``: a :class:`ThresholdPolicy`, or bounce settings (their ``.policy``); None reads
    the saved bounce settings.  One query finds the addresses with their evidence; returns the
    newly suppressed addresses, sorted.

    >>> from newsletter_kit.store import open_store
    >>> apply_threshold(open_store(":memory:"), ThresholdPolicy(2))
    []
    """
    if policy is None:
        from .settings import require_bounce_settings

        policy = require_bounce_settings(store)
    rule = _policy(policy)
    sql, params = counting_query(rule, addresses)
    evidence = (
        "json_group_array(json_object('bounce_id', id, 'date', bounced_at, 'kind', kind,"
        " 'status', status, 'diagnostic', diagnostic, 'campaign', campaign, 'source', source))"
    )
    with store.transaction():
        rows = store.conn.execute(
            f"SELECT email, count(*), {evidence} FROM ({sql})"
            " WHERE email NOT IN (SELECT email FROM suppressions)"
            " GROUP BY email HAVING count(*) >= ? ORDER BY email",
            [*params, rule.threshold],
        ).fetchall()
        for email, count, found in rows:
            _insert_suppression(store, email, "threshold", count, json.loads(found),
                                {"threshold": rule.threshold})
    return [email for email, _, _ in rows]


# --- suppressions and their audit trail -------------------------------------------------------------

def _insert_suppression(store: Store, email: str, reason: str, count: int,
                        evidence: list[dict[str, object]], detail: dict[str, object]) -> bool:
    at = now_iso()
    cursor = store.conn.execute(
        "INSERT OR IGNORE INTO suppressions (email, since, reason, bounce_count, evidence)"
        " VALUES (?, ?, ?, ?, ?)",
        (email, at, reason, count, json.dumps(evidence, ensure_ascii=False)),
    )
    if cursor.rowcount == 0:
        return False
    store.conn.execute(
        "INSERT INTO suppression_events (email, action, at, detail) VALUES (?, 'suppressed', ?, ?)",
        (email, at, json.dumps({"reason": reason, "bounces": count, **detail}, ensure_ascii=False)),
    )
    return True


def suppress(store: Store, address: str, reason: str = "manual") -> bool:
    """Suppress ``address`` by hand; False when it already was.

    >>> from newsletter_kit.store import open_store
    >>> s = open_store(":memory:")
    >>> suppress(s, "Anna@Example.org"), suppress(s, "anna@example.org")
    (True, False)
    """
    email = normalize_address(address)
    with store.transaction():
        return _insert_suppression(store, email, reason, 0, [], {})


def remove_suppression(store: Store, address: str, by: str | None = None) -> None:
    """Lift the suppression of ``address``; an audit event keeps who and what was lifted.

    Only bounces recorded after this call count towards suppressing it again.

    >>> remove_suppression(store, "anna@example.org", by="analyst")  # doctest: +SKIP
    """
    email = normalize_address(address)
    with store.transaction():
        row = store.conn.execute(
            "SELECT since, reason, bounce_count, evidence FROM suppressions WHERE email = ?", (email,)
        ).fetchone()
        if row is None:
            raise ValidationError(f"{email} is not suppressed", "address")
        last_bounce = store.conn.execute("SELECT coalesce(max(id), 0) FROM bounces").fetchone()[0]
        store.conn.execute("DELETE FROM suppressions WHERE email = ?", (email,))
        detail = {"by": by, "after_bounce_id": last_bounce, "since": row[0], "reason": row[1],
                  "bounces": row[2], "evidence": json.loads(row[3])}
        store.conn.execute(
            "INSERT INTO suppression_events (email, action, at, detail) VALUES (?, 'lifted', ?, ?)",
            (email, now_iso(), json.dumps(detail, ensure_ascii=False)),
        )


def list_suppressions(store: Store) -> list[dict[str, object]]:
    """Suppressed addresses as ``suppressions list --json`` prints them, oldest first.

    >>> from newsletter_kit.store import open_store
    >>> list_suppressions(open_store(":memory:"))
    []
    """
    return list(iter_suppressions(store))


def _suppression_filter(reason: str | None, since: str | None) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if reason:
        clauses.append("reason = ?")
        params.append(reason)
    if since:
        clauses.append("since >= ?")
        params.append(since)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def iter_suppressions(store: Store, *, reason: str | None = None, since: str | None = None,
                      limit: int | None = None, offset: int = 0) -> Iterator[dict[str, object]]:
    """:func:`list_suppressions` one row at a time, filtered (``reason``: threshold, manual or
    smtp; ``since``: suppressed on or after that ISO date) and paged (``limit``, ``offset``).

    >>> from newsletter_kit.store import open_store
    >>> list(iter_suppressions(open_store(":memory:"), reason="manual", limit=10))
    []
    """
    where, params = _suppression_filter(reason, since)
    page = " LIMIT ? OFFSET ?" if limit is not None else ""
    rows = store.conn.execute(
        f"SELECT email, since, bounce_count, evidence, reason FROM suppressions {where} ORDER BY since, email{page}",
        [*params, *([limit, max(0, offset)] if limit is not None else [])])
    for email, since_, count, evidence, why in rows:
        yield {"address": email, "since": since_, "bounces": count, "evidence": json.loads(evidence), "reason": why}


def count_suppressions(store: Store, *, reason: str | None = None, since: str | None = None) -> int:
    """How many rows :func:`iter_suppressions` gives with the same filters, unpaged.

    >>> from newsletter_kit.store import open_store
    >>> count_suppressions(open_store(":memory:"))
    0
    """
    where, params = _suppression_filter(reason, since)
    return int(store.conn.execute(f"SELECT count(*) FROM suppressions {where}", params).fetchone()[0])


def suppression_history(store: Store, address: str) -> list[dict[str, object]]:
    """The audit trail of ``address``: every suppressed/lifted event, oldest first."""
    rows = store.conn.execute(
        "SELECT action, at, detail FROM suppression_events WHERE email = ? ORDER BY id",
        (normalize_address(address),),
    )
    return [{"action": action, "at": at, **json.loads(detail)} for action, at, detail in rows]
