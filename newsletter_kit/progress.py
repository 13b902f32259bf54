"""A campaign as stored, and how far it has got: the read side that the sender
(:mod:`~newsletter_kit.campaigns`), the review and the sidebar share.

Below the send path: the review and the overview read the store through this module and import
nothing of the sender (transport, ledger, guards).

>>> from newsletter_kit.store import open_store
>>> campaign_status(open_store(":memory:"), "spring")
Traceback (most recent call last):
...
newsletter_kit.errors.CampaignError: no campaign named 'spring' (there is no campaign yet)
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import audience, quota
from .errors import CampaignError
from .store import Store

__all__ = ["HELD", "RETRYABLE", "Campaign", "campaign_status", "changed", "excluded_members", "forecast_finish",
           "get_campaign", "list_campaigns", "watch"]

#: States of rows a run may (re)send: ``pending``, and ``deferred`` once their time has come.
RETRYABLE = ("pending", "deferred")
#: States of rows a running send holds (``campaign status`` counts them as pending).
HELD = ("claimed", "inflight")


@dataclass(frozen=True)
class Campaign:
    """A campaign as stored: templates (Jinja) for subject, HTML and text."""

    id: int
    name: str
    list_name: str
    subject: str
    html: str
    text: str | None
    from_addr: str | None
    status: str
    created_at: str
    archived_at: str | None = None  # hidden from the lists and the sidebar, history kept
    deleted_at: str | None = None  # sent, then deleted: name and deliveries kept for the statistics


_CAMPAIGN_COLUMNS = "id, name, list_name, subject, html, text, from_addr, status, created_at, archived_at, deleted_at"


def get_campaign(store: Store, name: str) -> Campaign:
    """The campaign called ``name``, or :class:`CampaignError` naming the ones that exist."""
    row = store.conn.execute(
        f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE name = ?", (name,)).fetchone()
    if row is None:
        names = [r[0] for r in store.conn.execute("SELECT name FROM campaigns ORDER BY name")]
        known = f" (campaigns: {', '.join(names)})" if names else " (there is no campaign yet)"
        raise CampaignError(f"no campaign named {name!r}{known}")
    return Campaign(*row)


def excluded_members(store: Store, campaign: Campaign, policy: str | None) -> dict[str, tuple[int, str]]:
    """The list's members the campaign excludes: address → (contact id, reason in words)."""
    reasons = audience.exclusion_reasons(store, campaign.name, policy)
    if not reasons:
        return {}
    rows = store.conn.execute(
        "SELECT c.id, c.email FROM list_members m JOIN contacts c ON c.id = m.contact_id "
        "WHERE m.list_id = (SELECT id FROM lists WHERE name = ?) AND c.email IN "
        "(SELECT email FROM unsubscribes UNION SELECT email FROM suppressions)", (campaign.list_name,))
    return {email: (cid, reasons[email]) for cid, email in rows if email in reasons}


def campaign_status(store: Store, name: str) -> dict[str, int]:
    """``{"total", "sent", "failed", "excluded", "pending", "unknown"}`` for a campaign.

    In flight and deferred count as pending; the audience is evaluated now, so list members
    not yet sent to count as pending, and those who opted out since as excluded.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org"}])
        >>> from newsletter_kit.campaigns import create_campaign
        >>> _ = create_campaign(store, "spring", "all", "Hi", "<p>Hello</p>")
        >>> campaign_status(store, "spring")
        {'total': 1, 'sent': 0, 'failed': 0, 'excluded': 0, 'pending': 1, 'unknown': 0}
    """
    campaign = get_campaign(store, name)
    if campaign.status == "pruned":  # `store prune`: its numbers are kept in aggregate
        from .maintenance import archived_counts

        counts = archived_counts(store, campaign.id)
        return {"total": sum(counts.values()), **counts}
    eligible = {r.email for r in audience.eligible_recipients(store, campaign.name, campaign.list_name)}
    excluded = excluded_members(store, campaign, None)
    counts = {"sent": 0, "failed": 0, "excluded": 0, "pending": 0, "unknown": 0}
    seen: set[str] = set()
    for email, state in store.conn.execute(
            "SELECT email, state FROM deliveries WHERE campaign_id = ?", (campaign.id,)).fetchall():
        seen.add(email)
        if state in RETRYABLE:
            counts["pending" if email in eligible else "excluded"] += 1
        elif state in HELD:
            counts["pending"] += 1
        else:
            counts[state] += 1
    counts["pending"] += len(eligible - seen)
    counts["excluded"] += len(excluded.keys() - seen)
    return {"total": sum(counts.values()), **counts}


def list_campaigns(store: Store, *, archived: bool = False, search: str | None = None,
                   status: str | None = None, since: str | None = None, limit: int | None = None,
                   offset: int = 0) -> list[dict[str, Any]]:
    """Campaigns, newest first: name, list, subject, status, created_at, sent.

    Archived and deleted campaigns are left out; ``archived=True`` lists the archived ones
    (only) instead. ``search`` keeps names containing it (any case), ``status`` one status,
    ``since`` those created on or after that ISO date; ``limit`` and ``offset`` page through them
    (the sent count is read for the rows returned only; a pruned campaign's from its aggregate).

    Example::

        >>> from newsletter_kit.store import open_store
        >>> list_campaigns(open_store(":memory:"), search="spring", limit=10)
        []
    """
    where, params = _campaign_filter(archived, search, status, since)
    page = " LIMIT ? OFFSET ?" if limit is not None else ""
    rows = store.conn.execute(
        "SELECT c.name, c.list_name, c.subject, c.status, c.created_at, "
        "(SELECT count(*) FROM deliveries d WHERE d.campaign_id = c.id AND d.state = 'sent') + "
        "(SELECT coalesce(sum(count), 0) FROM pruned_deliveries p WHERE p.campaign_id = c.id AND p.state = 'sent') "
        f"FROM campaigns c {where} ORDER BY c.created_at DESC, c.id DESC{page}",
        [*params, *([limit, max(0, offset)] if limit is not None else [])]).fetchall()
    keys = ("name", "list", "subject", "status", "created_at", "sent")
    return [dict(zip(keys, row)) for row in rows]


def count_campaigns(store: Store, *, archived: bool = False, search: str | None = None,
                    status: str | None = None, since: str | None = None) -> int:
    """How many campaigns :func:`list_campaigns` would list with the same filters, unpaged.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> count_campaigns(open_store(":memory:"), status="draft")
        0
    """
    where, params = _campaign_filter(archived, search, status, since)
    return int(store.conn.execute(f"SELECT count(*) FROM campaigns c {where}", params).fetchone()[0])


def _campaign_filter(archived: bool, search: str | None, status: str | None,
                     since: str | None) -> tuple[str, list[Any]]:
    clauses: list[str] = ["c.deleted_at IS NULL", "(c.archived_at IS NOT NULL) = ?"]
    params: list[Any] = [archived]
    if search:
        clauses.append("instr(lower(c.name), lower(?)) > 0")
        params.append(search.strip())
    if status:
        clauses.append("c.status = ?")
        params.append(status)
    if since:
        clauses.append("c.created_at >= ?")
        params.append(since)
    return "WHERE " + " AND ".join(clauses), params


def forecast_finish(store: Store, campaign: str, *, now: dt.datetime | None = None) -> dt.date | None:
    """The day the campaign will have been sent to everyone at the current limit (None: done).

    Counts today's remaining quota first, then the full limit per day; assumes no other
    campaign shares the quota.

    Example::

        >>> forecast_finish(store, "spring")       # doctest: +SKIP
        datetime.date(2026, 3, 4)
    """
    pending = campaign_status(store, campaign)["pending"]
    if not pending:
        return None
    return quota.forecast_date(quota.quota_status(store, now=now), pending)


# --- who is told when a campaign changes in this process -----------------------------------------

_WATCHERS: list[weakref.WeakMethod[Callable[[str], None]]] = []


def watch(callback: Callable[[str], None]) -> None:
    """Call ``callback(campaign_name)`` after a send run or a change of a campaign in this
    process (a notebook cell sent it: the panel showing it re-reads). Held weakly: a panel that
    is gone is forgotten. ``callback`` must be a bound method.

    Example::

        >>> class Shown:
        ...     def refresh(self, name): print("re-read", name)
        >>> shown = Shown(); watch(shown.refresh); changed("spring")
        re-read spring
    """
    _WATCHERS.append(weakref.WeakMethod(callback))  # type: ignore[arg-type]


def changed(name: str) -> None:
    """Tell the watchers that ``name`` changed (its errors are theirs to show, never the sender's)."""
    for ref in list(_WATCHERS):
        callback = ref()
        if callback is None:
            _WATCHERS.remove(ref)
            continue
        try:
            callback(name)
        except Exception:  # a display that failed must not fail the send that just happened
            pass
