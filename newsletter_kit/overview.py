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

__all__ = ["overview_of_path", "store_overview"]


def store_overview(store: Store, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """``{"quota", "campaigns", "last_bounce_fetch", "suppressed"}`` for an open store.

    ``quota`` is None without SMTP settings, else ``{"limit", "used", "reserved",
    "remaining", "day", "resets_at"}``. ``campaigns`` lists each campaign, newest first:
    ``{"name", "list", "status", "total", "sent", "pending", "unknown", "failed", "excluded",
    "forecast_finish"}`` (the day the rest is sent at today's limit, None when nothing is left
    or there is no limit). ``last_bounce_fetch`` is the UTC time the bounce mailbox (or a folder
    of files) was last read, None when never.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> store_overview(open_store(":memory:"))["last_bounce_fetch"] is None
        True
    """
    return _with_quota(store, _store_counts(store), now)


def _store_counts(store: Store) -> dict[str, Any]:
    """What depends on the store's data alone (not on the time): what the poll may cache."""
    from . import progress

    rows = store.conn.execute(
        "SELECT id, name, list_name, status FROM campaigns WHERE archived_at IS NULL AND deleted_at IS NULL "
        "ORDER BY created_at DESC, id DESC").fetchall()
    items = [{"name": name, "list": list_name, "status": status,
              **(_ledger_counts(store, cid) if status == "done" else progress.campaign_status(store, name))}
             for cid, name, list_name, status in rows]
    return {
        "campaigns": items,
        "last_bounce_fetch": store.conn.execute(
            "SELECT max(t) FROM (SELECT max(updated_at) AS t FROM mailbox_state"
            " UNION ALL SELECT max(processed_at) FROM mailbox_messages)").fetchone()[0],
        "suppressed": store.conn.execute("SELECT count(*) FROM suppressions").fetchone()[0],
    }


def _with_quota(store: Store, counts: dict[str, Any], now: dt.datetime | None) -> dict[str, Any]:
    """Today's quota (it changes at midnight with no write) and each campaign's finish day."""
    from . import quota  # the send path's own forecast rule

    smtp = load_smtp_settings(store)
    today = quota.quota_status(store, smtp, now=now, reclaim=False) if smtp else None
    items = []
    for item in counts["campaigns"]:
        finish = quota.forecast_date(today, item["pending"]) if today and item["pending"] else None
        items.append({**item, "forecast_finish": finish.isoformat() if finish else None})
    return {
        "quota": None if today is None else {**today.to_dict(), "reserved": today.reserved,
                                            "day": today.day.isoformat()},
        **counts,
        "campaigns": items,
    }


def _ledger_counts(store: Store, campaign_id: int) -> dict[str, int]:
    """A finished campaign's counts straight from the ledger (its audience no longer matters)."""
    counts = {"sent": 0, "failed": 0, "excluded": 0, "pending": 0, "unknown": 0}
    for state, n in store.conn.execute(
            "SELECT state, count(*) FROM deliveries WHERE campaign_id = ? GROUP BY state", (campaign_id,)):
        key = state if state in counts else "pending"  # inflight, deferred
        counts[key] += n
    return {"total": sum(counts.values()), **counts}


def overview_of_path(path: str | os.PathLike[str] | None = None, *, root: str | os.PathLike[str] | None = None,
                     now: dt.datetime | None = None) -> dict[str, Any]:
    """:func:`store_overview` of the store at ``path`` (default: ``$NEWSLETTER_KIT_DB``, else
    ``data/newsletter.db``), plus ``{"store", "exists", "error", "generated_at"}``.

    A relative path is taken from ``root`` (the Jupyter server's root folder, where a notebook's
    kernel starts) else the current folder. A store that does not exist is not created: the
    answer says ``"exists": false`` with empty values. A store that cannot be read gives its
    one-line reason in ``error``.

    Example::

        >>> overview_of_path("/nonexistent/newsletter.db")["exists"]
        False
    """
    target = Path(path) if path is not None else default_path()
    if not target.is_absolute() and root is not None:
        target = Path(root) / target
    answer: dict[str, Any] = {
        "store": str(target.resolve()), "exists": target.exists(), "error": None,
        "quota": None, "campaigns": [], "last_bounce_fetch": None, "suppressed": 0,
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
        return {**answer, "error": str(exc)}
    try:
        cached = _CACHE.get(answer["store"])
        counts = cached[1] if cached and cached[0] == signature else _store_counts(store)
        _CACHE[answer["store"]] = (signature, counts)
        answer.update(_with_quota(store, counts, now))
    except (NewsletterKitError, sqlite3.Error) as exc:  # e.g. locked past the busy timeout
        answer["error"] = f"cannot read the store {target}: {exc}"
    finally:
        store.close()
    return answer


#: store path → (file signature, _store_counts): a poll of an unchanged store reads only the quota.
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
