"""The store at a glance: today's quota, each campaign's progress, the last bounce fetch, the
number of suppressed addresses, as one plain JSON-ready dict.

This is what JupyterLab's Newsletter sidebar and status bar show (served by
:mod:`newsletter_kit.serverext` as ``GET /newsletter-kit/status``), so it is polled every few
seconds: no pandas, nothing written (the quota is read without reclaiming abandoned holds), and
each campaign's audience is evaluated only while the campaign is not done.

Example::

    >>> from newsletter_kit.store import open_store
    >>> overview = store_overview(open_store(":memory:"))
    >>> overview["quota"], overview["campaigns"], overview["suppressed"]
    (None, [], 0)
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path
from typing import Any

from .errors import NewsletterKitError
from .settings import load_smtp_settings
from .store import SCHEMA_VERSION, Store, default_path, open_store

__all__ = ["campaign_counts", "campaign_page", "overview_of_path", "store_overview"]


#: Campaigns the poll always shows (besides the most recent few): those a run is moving.
ACTIVE = ("sending", "paused", "scheduled")
#: How many of the most recent campaigns the poll shows (the rest: :func:`campaign_page`).
RECENT = 10
#: The most a page of :func:`campaign_page` holds.
MAX_PAGE = 200
#: Campaigns the sidebar shows: not archived nor deleted (issue 19: their history stays in the review).
_SHOWN = "archived_at IS NULL AND deleted_at IS NULL"


def store_overview(store: Store, *, now: dt.datetime | None = None, recent: int = RECENT) -> dict[str, Any]:
    """``{"quota", "campaigns", "campaign_counts", "last_bounce_fetch", "suppressed"}`` for an open store.

    ``quota`` is None without SMTP settings, else ``{"limit", "used", "reserved",
    "remaining", "day", "resets_at"}``. ``campaigns`` lists the campaigns a run is moving
    (sending, paused, scheduled) and the ``recent`` newest, newest first: ``{"name", "list",
    "status", "created_at", "total", "sent", "pending", "unknown", "failed", "excluded",
    "forecast_finish"}`` (the day the rest is sent at today's limit, None when nothing is left
    or there is no limit). ``campaign_counts`` is ``{"total": n, status: n...}``: the rest is
    paged with :func:`campaign_page`. ``last_bounce_fetch`` is the UTC time the bounce mailbox
    (or a folder of files) was last read, None when never. Every count comes from SQL: the
    cost follows the campaigns shown, not the campaigns stored.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> store_overview(open_store(":memory:"))["last_bounce_fetch"] is None
        True
    """
    return _with_quota(store, _store_counts(store, recent), now)


def campaign_page(store: Store, *, status: str | None = None, limit: int = 50, offset: int = 0,
                  now: dt.datetime | None = None) -> dict[str, Any]:
    """One page of campaigns, newest first (``status`` picks one status): ``{"total", "offset",
    "limit", "campaigns"}``, each campaign counted as in :func:`store_overview`.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> campaign_page(open_store(":memory:"), status="draft")
        {'total': 0, 'offset': 0, 'limit': 50, 'campaigns': []}
    """
    limit, offset = max(0, min(int(limit), MAX_PAGE)), max(0, int(offset))
    where, params = (f"WHERE {_SHOWN} AND status = ?", [status]) if status else (f"WHERE {_SHOWN}", [])
    total = store.conn.execute(f"SELECT count(*) FROM campaigns {where}", params).fetchone()[0]
    rows = store.conn.execute(
        f"SELECT id, name, list_name, status, created_at FROM campaigns {where}"
        " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()
    counted = _with_quota(store, {"campaigns": _count_campaigns(store, rows)}, now)["campaigns"]
    return {"total": total, "offset": offset, "limit": limit, "campaigns": counted}


def campaign_counts(store: Store, name: str) -> dict[str, int]:
    """``{"total", "sent", "failed", "excluded", "pending", "unknown"}`` for one campaign, as
    :func:`~newsletter_kit.campaigns.campaign_status` counts them, in SQL: the cost follows its
    ledger and the opt-outs, not its list (what a panel on a million contacts shows).

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> from newsletter_kit.campaigns import create_campaign
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org"}])
        >>> _ = create_campaign(store, "spring", "all", "Hi", "<p>Hello</p>")
        >>> campaign_counts(store, "spring")
        {'total': 1, 'sent': 0, 'failed': 0, 'excluded': 0, 'pending': 1, 'unknown': 0}
    """
    rows = store.conn.execute(
        "SELECT id, name, list_name, status, created_at FROM campaigns WHERE name = ?", (name,)).fetchall()
    if not rows:
        from .errors import CampaignError

        raise CampaignError(f"no campaign named {name!r}")
    item = _count_campaigns(store, rows)[0]
    return {k: item[k] for k in ("total", "sent", "failed", "excluded", "pending", "unknown")}


def _store_counts(store: Store, recent: int = RECENT) -> dict[str, Any]:
    """What depends on the store's data alone (not on the time): what the poll may cache."""
    active = ", ".join(f"'{s}'" for s in ACTIVE)
    rows = store.conn.execute(
        "SELECT id, name, list_name, status, created_at FROM ("
        f" SELECT * FROM (SELECT * FROM campaigns WHERE {_SHOWN} ORDER BY created_at DESC, id DESC LIMIT ?)"
        f" UNION SELECT * FROM campaigns WHERE {_SHOWN} AND status IN ({active}))"
        " ORDER BY created_at DESC, id DESC", (max(0, recent),)).fetchall()
    by_status = dict(store.conn.execute(
        f"SELECT status, count(*) FROM campaigns WHERE {_SHOWN} GROUP BY status").fetchall())
    return {
        "campaigns": _count_campaigns(store, rows),
        "campaign_counts": {"total": sum(by_status.values()), **by_status},
        "last_bounce_fetch": store.conn.execute(
            "SELECT max(t) FROM (SELECT max(updated_at) AS t FROM mailbox_state"
            " UNION ALL SELECT max(processed_at) FROM mailbox_messages)").fetchone()[0],
        "suppressed": store.conn.execute("SELECT count(*) FROM suppressions").fetchone()[0],
        # An ESP as a second bounce source (bounces sync): when its events were last pulled.
        "last_esp_sync": store.conn.execute("SELECT max(updated_at) FROM esp_state").fetchone()[0],
        "schedules": _schedules(store),
    }


def _schedules(store: Store) -> list[dict[str, Any]]:
    """The schedules of campaigns not done yet (at most :data:`RECENT`), as ``run`` serves them."""
    from .schedules import list_schedules

    return [s.to_dict() for s in list_schedules(store, pending_only=True)[:RECENT]]


def _relays(store: Store, smtp: Any, now: dt.datetime | None) -> list[dict[str, Any]]:
    """With several relays: each one's limit today (its warm-up's ramp), what it sent since
    today began and whether it is enabled; [] with the dedicated server alone. Read with one
    indexed count per relay (``deliveries.relay``), nothing written."""
    from . import clock, quota
    from .relays import day_start, list_relays, relay_count

    relays = list_relays(store)
    if len(relays) <= 1:
        return []
    moment = now or clock.now()
    day = quota.quota_day(moment, smtp.timezone)
    since = day_start(smtp.timezone, moment)
    rows = []
    for relay in relays:
        rows.append({"relay": relay.name, "enabled": relay.enabled, "limit": max(0, relay.daily_limit_on(day)),
                     "used": relay_count(store, relay.name, since), "weight": relay.settings.weight})
    return rows


def _with_quota(store: Store, counts: dict[str, Any], now: dt.datetime | None) -> dict[str, Any]:
    """Today's quota (it changes at midnight with no write) and each campaign's finish day."""
    from . import quota  # the send path's own forecast rule

    smtp = load_smtp_settings(store)
    today = quota.quota_status(store, smtp, now=now, reclaim=False) if smtp else None
    items = []
    for item in counts["campaigns"]:
        finish = quota.forecast_date(today, item["pending"]) if today and item["pending"] else None
        items.append({**item, "forecast_finish": finish.isoformat() if finish else None})
    schedules = []
    if "schedules" in counts:
        from . import clock
        from .schedules import Schedule, parse_days, parse_window

        moment = (now or clock.now()).astimezone(dt.timezone.utc)
        for raw in counts["schedules"]:
            one = Schedule(raw["campaign"], dt.datetime.fromisoformat(raw["start_at"]), raw["tz"],
                           parse_window(raw["window"]), parse_days(raw["days"]), raw["priority"])
            schedules.append({**raw, "open": one.is_open(moment), "next_opening": one.next_opening(moment).isoformat()})
    return {
        "quota": None if today is None else {**today.to_dict(), "reserved": today.reserved,
                                             "day": today.day.isoformat()},
        **counts,
        "campaigns": items,
        **({"schedules": schedules} if "schedules" in counts else {}),
        "relays": _relays(store, smtp, now) if smtp else [],
    }


def _count_campaigns(store: Store, rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Each campaign's counts, as :func:`~newsletter_kit.campaigns.campaign_status` gives them,
    in SQL: a finished campaign from its ledger; one still open also counts the list members
    not yet in its ledger (pending, or excluded by an opt-out or a suppression) without
    listing them. A list's size is counted once for all the campaigns shown on it."""
    from .audience import _check_policy

    policy = _check_policy(None, store) if rows else "campaign"
    sizes: dict[str, int] = {}
    shared: dict[str, int] = {}
    items = []
    for cid, name, list_name, status, created_at in rows:
        counts = {"sent": 0, "failed": 0, "excluded": 0, "pending": 0, "unknown": 0}
        for state, n in store.conn.execute(
                "SELECT state, count(*) FROM deliveries WHERE campaign_id = ? GROUP BY state"
                " UNION ALL SELECT state, sum(count) FROM pruned_deliveries WHERE campaign_id = ? GROUP BY state",
                (cid, cid)):
            counts[state if state in counts else "pending"] += n
        if status not in ("done", "archived"):
            if list_name not in sizes:
                sizes[list_name] = _list_size(store, list_name)
            _count_open(store, cid, name, list_name, sizes[list_name], policy, counts, shared)
        items.append({"name": name, "list": list_name, "status": status, "created_at": created_at,
                      "total": sum(counts.values()), **counts})
    return items


def _excluded_sql(policy: str) -> str:
    """The addresses ``policy`` excludes (``:campaign`` is the campaign's name): the small side."""
    unsubscribed = ("SELECT email FROM unsubscribes" if policy == "global" else
                    "SELECT email FROM unsubscribes WHERE coalesce(campaign, '') IN ('', :campaign)")
    return f"{unsubscribed} UNION SELECT email FROM suppressions"


def _list_size(store: Store, list_name: str) -> int:
    return int(store.conn.execute(
        "SELECT count(*) FROM list_members WHERE list_id = (SELECT id FROM lists WHERE name = ?)",
        (list_name,)).fetchone()[0])


def _count_open(store: Store, cid: int, name: str, list_name: str, size: int, policy: str,
                counts: dict[str, int], shared: dict[str, int]) -> None:
    """Add an open campaign's audience to its ledger counts: ledger rows still to send whose
    address is no longer eligible move to excluded; members with no ledger row yet are pending,
    or excluded when opted out or suppressed. Reads the ledger and the small tables, never the
    whole list; a campaign with no ledger yet (a draft) reads only what is its own (its opt-outs),
    the rest being counted once per list (``shared``)."""
    params = {"cid": cid, "campaign": name, "list": list_name}
    list_id = "(SELECT id FROM lists WHERE name = :list)"
    member = ("EXISTS (SELECT 1 FROM contacts c JOIN list_members m ON m.contact_id = c.id"
              f" AND m.list_id = {list_id} WHERE c.email = d.email)")
    if sum(counts.values()):
        ineligible, in_list = store.conn.execute(
            f"SELECT sum(d.state IN ('pending', 'deferred') AND (d.email IN ({_excluded_sql(policy)}) OR NOT {member})),"
            f" sum({member}) FROM deliveries d WHERE d.campaign_id = :cid", params).fetchone()
        ineligible, in_list = ineligible or 0, in_list or 0
        counts["pending"] -= ineligible
        counts["excluded"] += ineligible
        unseen_excluded = store.conn.execute(
            f"SELECT count(*) FROM ({_excluded_sql(policy)}) x JOIN contacts c ON c.email = x.email"
            f" JOIN list_members m ON m.contact_id = c.id AND m.list_id = {list_id}"
            " WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.campaign_id = :cid AND d.email = c.email)",
            params).fetchone()[0]
    else:
        in_list = 0
        always = ("SELECT email FROM unsubscribes" if policy == "global" else
                  "SELECT email FROM unsubscribes WHERE campaign IS NULL") + " UNION SELECT email FROM suppressions"
        members_of = (f"JOIN contacts c ON c.email = x.email JOIN list_members m ON m.contact_id = c.id"
                      f" AND m.list_id = {list_id}")
        if list_name not in shared:
            shared[list_name] = store.conn.execute(
                f"SELECT count(*) FROM ({always}) x {members_of}", params).fetchone()[0]
        own = 0 if policy == "global" else store.conn.execute(
            "SELECT count(*) FROM (SELECT u.email FROM unsubscribes u WHERE u.campaign = :campaign"
            " AND NOT EXISTS (SELECT 1 FROM unsubscribes g WHERE g.email = u.email AND g.campaign IS NULL)"
            " AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.email = u.email))"
            f" x {members_of}", params).fetchone()[0]
        unseen_excluded = shared[list_name] + own
    unseen = size - in_list
    counts["pending"] += unseen - unseen_excluded
    counts["excluded"] += unseen_excluded


def overview_of_path(path: str | os.PathLike[str] | None = None, *, root: str | os.PathLike[str] | None = None,
                     now: dt.datetime | None = None, recent: int = RECENT) -> dict[str, Any]:
    """:func:`store_overview` of the store at ``path`` (default: ``$NEWSLETTER_KIT_DB``, else
    ``data/newsletter.db``), plus ``{"store", "exists", "error", "generated_at"}``.

    A relative path is taken from ``root`` (the Jupyter server's root folder, where a notebook's
    kernel starts) else the current folder. A store that does not exist is not created: the
    answer says ``"exists": false`` with empty values. A store that cannot be read gives its
    one-line reason in ``error``, and no figures (never the last ones it could read).

    Example::

        >>> overview_of_path("/nonexistent/newsletter.db")["exists"]
        False
    """
    target = Path(path) if path is not None else default_path()
    if not target.is_absolute() and root is not None:
        target = Path(root) / target
    answer: dict[str, Any] = {
        "store": str(target.resolve()), "exists": target.exists(), "error": None,
        "quota": None, "campaigns": [], "campaign_counts": {"total": 0}, "last_bounce_fetch": None,
        "suppressed": 0, "last_esp_sync": None, "schedules": [], "relays": [],
        "generated_at": (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0).isoformat(),
    }
    if not answer["exists"]:
        return answer
    # Never create or migrate from here (a poll every few seconds): a store another process is
    # creating right now (version 0) reads as not there yet, an old or newer one as an error.
    try:
        version = _schema_version(target)
    except sqlite3.Error as exc:
        return {**answer, "error": f"cannot read the store {target}: {exc}"}
    if version == 0:
        return {**answer, "exists": False}
    if version != SCHEMA_VERSION:
        return {**answer, "error": f"the store {target} has schema version {version}, this newsletter_kit "
                                   f"reads version {SCHEMA_VERSION}: open it once with `newsletter-kit init`"}
    signature = _signature(target)
    try:
        store = open_store(target)
    except (NewsletterKitError, sqlite3.Error) as exc:
        return {**answer, "error": " ".join(str(exc).splitlines())}
    try:
        key = f"{answer['store']}|{recent}"
        cached = _CACHE.get(key)
        counts = cached[1] if cached and cached[0] == signature else _store_counts(store, recent)
        _CACHE[key] = (signature, counts)
        answer.update(_with_quota(store, counts, now))
    except (NewsletterKitError, sqlite3.Error, ValueError, TypeError) as exc:  # locked, a bad setting
        answer["error"] = f"cannot read the store {target}: {' '.join(str(exc).splitlines())}"
    finally:
        store.close()
    return answer


#: "store path|recent" → (file signature, _store_counts): a poll of an unchanged store reads only the quota.
_CACHE: dict[str, tuple[tuple[int, ...], dict[str, Any]]] = {}


def _signature(path: Path) -> tuple[int, ...]:
    """Changes with every commit: SQLite writes the -wal file (or, after a checkpoint, the file
    itself). An empty -wal holds nothing: opening and closing a store makes and removes one."""
    parts: list[int] = []
    for name in (str(path), f"{path}-wal"):
        try:
            st = os.stat(name)
        except FileNotFoundError:
            parts += [0, 0, 0]
        else:
            parts += [st.st_ino, st.st_mtime_ns, st.st_size] if st.st_size else [0, 0, 0]
    return tuple(parts)


def _schema_version(path: Path) -> int:
    """The store's schema version, read over a read-only connection (0: not created yet)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()
