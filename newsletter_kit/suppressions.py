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
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .addresses import normalize_address
from .errors import ValidationError
from .policy import (_POLICY_KIND, COUNTED_KINDS, DEFAULT_HARD_THRESHOLD, DEFAULT_SOFT_THRESHOLD,  # re-exported
                     DEFAULT_SOFT_WINDOW_DAYS, DEFAULT_THRESHOLD, ThresholdPolicy)
from .store import Store, now_iso

if TYPE_CHECKING:
    from .settings import BounceSettings

__all__ = [
    "COUNTED_KINDS", "DEFAULT_HARD_THRESHOLD", "DEFAULT_SOFT_THRESHOLD", "DEFAULT_SOFT_WINDOW_DAYS",
    "DEFAULT_THRESHOLD", "ThresholdPolicy", "apply_threshold", "bounce_counts", "count_suppressions",
    "counted_as_sql", "counting_query", "iter_suppressions", "list_suppressions", "remove_suppression",
    "suppress", "suppression_history",
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
    for flag in ("count_policy", "reset_on_success", "count_unmatched", "suppress_on_complaint"):
        if flag in given:
            given[flag] = bool(given[flag])
    return base.replace(**given) if given else base


# --- counting -------------------------------------------------------------------------------------


def _names(*names: str) -> str:
    return ", ".join(f"'{n}'" for n in names) or "NULL"


def counted_as_sql(alias: str = "b", *, count_policy: bool = True, complaints: bool = True) -> str:
    """The SQL expression that says how one ``bounces`` row counts: ``'hard'``, ``'soft'``,
    ``'complaint'``, or NULL (never: about the sender, a delay, not a failure).

    By the side of the row's reason (:mod:`newsletter_kit.reasons`), never its code class: a
    ``550 5.1.1`` about a blocklisted IP is about us.  An unclear refusal of a policy kind (a
    recipient's filter) counts as soft with ``count_policy``, else not; complaints count with
    ``complaints``.  A row recorded without a reason counts by its kind, as before issue 15.
    Recipient-side reasons are tested first: they are most rows.

    >>> "'blocked'" in counted_as_sql()
    True
    """
    from . import reasons

    table = reasons.REASONS.values()
    sender_or_none = _names(*(r.name for r in table if r.side in (reasons.SENDER, reasons.NONE)))
    hard = _names(*(r.name for r in table if r.side == reasons.RECIPIENT and r.hard and r.name != "not_accept"))
    soft = _names(*(r.name for r in table if r.side == reasons.RECIPIENT and not r.hard))
    a = alias
    policy = "'soft'" if count_policy else "NULL"
    complaint = "'complaint'" if complaints else "NULL"
    return (
        f"(CASE WHEN {a}.kind NOT IN ('hard', 'soft', 'policy')"
        f" THEN CASE {a}.kind WHEN 'complaint' THEN {complaint} END"
        f" WHEN {a}.reason IN ({hard}) THEN 'hard'"
        f" WHEN {a}.reason IN ({soft}) THEN 'soft'"
        f" WHEN {a}.reason IS NULL THEN CASE {a}.kind WHEN 'policy' THEN {policy} ELSE {a}.kind END"
        f" WHEN {a}.reason IN ({sender_or_none}) THEN NULL"
        f" WHEN {a}.reason = 'not_accept' THEN CASE WHEN coalesce({a}.status, '5') LIKE '4%' THEN 'soft' ELSE 'hard' END"
        f" WHEN {a}.reason = 'filtered' OR {a}.kind = 'policy' THEN {policy}"
        " ELSE 'soft' END)"
    )


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

    Columns: ``id, email, kind, status, diagnostic, campaign, source, bounced_at, reason,
    counted_as, recent``.  ``counted_as`` is ``hard``, ``soft`` or ``complaint`` (see
    :func:`counted_as_sql`: by the side of the reason; about the sender never counts; unclear
    refusals of a policy kind only with ``count_policy``, as soft; complaints only with
    ``suppress_on_complaint``; one CASE, so the row is judged once); ``recent`` is 1 when the bounce is within the policy's soft
    window of ``now``.  Counted under ``policy`` (the keyword arguments override its fields):
    bounces that match a delivery we made (any, with ``count_unmatched``), recorded after the
    address's last lifted suppression, not older than ``stale_after_days`` and, with
    ``reset_on_success``, not followed by a successful delivery to the address (sent later, and
    not itself bounced).
    ``pandas.read_sql(sql, store.conn, params=params)`` gives an analyst the same rows.

    >>> sql, params = counting_query(count_policy=True, now="2026-12-01T00:00:00+00:00")
    >>> params
    ['2026-12-01T00:00:00+00:00', 30]
    """
    policy = _policy(policy, count_policy=count_policy, stale_after_days=stale_after_days,
                     reset_on_success=reset_on_success, count_unmatched=count_unmatched)
    moment = now or now_iso()
    as_sql = counted_as_sql("b", count_policy=policy.count_policy, complaints=policy.suppress_on_complaint)
    where = [f"{as_sql} IS NOT NULL"]
    params: list[object] = [moment, policy.window]
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
        params += [moment, int(policy.stale_after_days)]
    if policy.reset_on_success:
        # A later delivery is no success when it failed in a way that counts under this policy.
        failed = counted_as_sql("b2", count_policy=policy.count_policy, complaints=False)
        where.append(
            "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.email = b.email AND d.state = 'sent'"
            " AND julianday(d.sent_at) > julianday(b.bounced_at)"
            " AND NOT EXISTS (SELECT 1 FROM bounces b2 WHERE b2.delivery_id = d.id"
            f" AND b2.kind IN ('hard', 'soft', 'policy') AND {failed} IS NOT NULL))"
        )
    if addresses is not None:
        wanted = sorted({a.lower() for a in addresses})
        where.append("b.email IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(wanted))
    sql = (
        "SELECT b.id, b.email, b.kind, b.status, b.diagnostic, b.campaign, b.source, b.bounced_at, b.reason,"
        f" {as_sql} AS counted_as,"
        " julianday(b.bounced_at) >= julianday(?) - ? AS recent"
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
    """Counted bounce reports per address, hard and soft (see :func:`counting_query` for what
    counts; the soft window is not applied here, complaints are not included).

    >>> from newsletter_kit.store import open_store
    >>> bounce_counts(open_store(":memory:"))
    {}
    """
    sql, params = counting_query(policy, addresses, count_policy=count_policy, stale_after_days=stale_after_days,
                                 reset_on_success=reset_on_success, count_unmatched=count_unmatched)
    rows = store.conn.execute(
        f"SELECT email, count(*) FROM ({sql}) WHERE counted_as != 'complaint' GROUP BY email ORDER BY email", params)
    return {email: n for email, n in rows}


def _reached(rule: ThresholdPolicy) -> tuple[str, list[object], str]:
    """HAVING clause (and parameters) of the addresses ``rule`` suppresses, and the filter of
    the rows that are its evidence."""
    complaint = " OR sum(counted_as = 'complaint') > 0" if rule.suppress_on_complaint else ""
    if rule.per_kind:
        return (f"sum(counted_as = 'hard') >= ? OR sum(counted_as = 'soft' AND recent) >= ?{complaint}",
                [rule.hard, rule.soft], "counted_as != 'soft' OR recent")
    return f"sum(counted_as != 'complaint') >= ?{complaint}", [rule.threshold], "1"


def apply_threshold(
    store: Store, policy: ThresholdPolicy | BounceSettings | None = None, addresses: Iterable[str] | None = None
) -> list[str]:
    """Suppress every address (of ``addresses``, or all) that reached the policy's thresholds.

    ``policy``: a :class:`ThresholdPolicy`, or bounce settings (their ``.policy``); None reads
    the saved bounce settings.  One query finds the addresses with their evidence (the bounces
    that counted); returns the newly suppressed addresses, sorted.  Failures about the sender
    never count, whatever their code.

    >>> from newsletter_kit.store import open_store
    >>> apply_threshold(open_store(":memory:"), ThresholdPolicy(2))
    []
    """
    if policy is None:
        from .settings import require_bounce_settings

        policy = require_bounce_settings(store)
    rule = _policy(policy)
    sql, params = counting_query(rule, addresses)
    having, limits, evident = _reached(rule)
    evidence = (
        "json_group_array(json_object('bounce_id', id, 'date', bounced_at, 'kind', kind,"
        " 'status', status, 'diagnostic', diagnostic, 'campaign', campaign, 'source', source,"
        f" 'reason', reason, 'counted_as', counted_as)) FILTER (WHERE {evident})"
    )
    with store.transaction():
        rows = store.conn.execute(
            f"SELECT email, count(*) FILTER (WHERE {evident}), {evidence}, sum(counted_as = 'complaint') FROM ({sql})"
            " WHERE email NOT IN (SELECT email FROM suppressions)"
            f" GROUP BY email HAVING {having} ORDER BY email",
            [*params, *limits],
        ).fetchall()
        for email, count, found, complaints in rows:
            detail: dict[str, object] = (
                {"hard_threshold": rule.hard, "soft_threshold": rule.soft, "soft_window_days": rule.window}
                if rule.per_kind else {"threshold": rule.threshold})
            reason = "threshold"
            if complaints and rule.suppress_on_complaint:
                reason = "complaint" if not _reached_without_complaints(rule, json.loads(found)) else "threshold"
            _insert_suppression(store, email, reason, count, json.loads(found), detail)
    return [email for email, _, _, _ in rows]


def _reached_without_complaints(rule: ThresholdPolicy, evidence: list[dict[str, Any]]) -> bool:
    kinds = [e.get("counted_as") for e in evidence]
    if rule.per_kind:
        return kinds.count("hard") >= rule.hard or kinds.count("soft") >= rule.soft
    return sum(k != "complaint" for k in kinds) >= (rule.threshold or DEFAULT_THRESHOLD)


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
