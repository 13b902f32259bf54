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

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .addresses import normalize_address
from .errors import ValidationError
from .policy import _POLICY_KIND, COUNTED_KINDS, DEFAULT_THRESHOLD, ThresholdPolicy  # re-exported
from .store import Store, now_iso

if TYPE_CHECKING:
    from .settings import BounceSettings

__all__ = [
    "COUNTED_KINDS", "DEFAULT_THRESHOLD", "ThresholdPolicy", "apply_threshold", "bounce_counts",
    "counting_query", "list_suppressions", "remove_suppression", "suppress", "suppression_history",
]


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
    rows = store.conn.execute(
        "SELECT email, since, bounce_count, evidence, reason FROM suppressions ORDER BY since, email"
    )
    return [
        {"address": email, "since": since, "bounces": count, "evidence": json.loads(evidence),
         "reason": reason}
        for email, since, count, evidence, reason in rows
    ]


def suppression_history(store: Store, address: str) -> list[dict[str, object]]:
    """The audit trail of ``address``: every suppressed/lifted event, oldest first."""
    rows = store.conn.execute(
        "SELECT action, at, detail FROM suppression_events WHERE email = ? ORDER BY id",
        (normalize_address(address),),
    )
    return [{"action": action, "at": at, **json.loads(detail)} for action, at, detail in rows]
