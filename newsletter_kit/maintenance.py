"""Looking after the store over the years: a consistent backup, what the file holds, and pruning
the per-delivery detail of campaigns finished long ago.

- :func:`backup_store` copies the store with SQLite's online backup API while other processes
  (a send, a bounce fetch) keep writing: the copy is one consistent snapshot, never a torn
  ``-wal``. It writes a temporary file of an unpredictable name (``O_EXCL``) beside the
  destination, checks it, and renames it; an existing destination is kept unless ``force``.
  Restoring is copying the file back while nothing uses the store.
- :func:`store_info` says how big the file is, how many rows each table holds, the schema
  version, and when the last backup and prune were made.
- :func:`prune_store` deletes the ledger rows of campaigns finished before a date, keeping what
  the statistics, the exclusion policy, the thresholds, the suppression evidence and the opt-outs
  need: the counts (per campaign and state, by hour sent and by domain, in ``pruned_deliveries``
  and ``pruned_domains``), every bounce, suppression and opt-out, and the ledger rows of any
  address that ever bounced (its evidence and its later successful sends) or whose outcome is
  still ``unknown``. A pruned campaign becomes ``pruned``: it can no longer be sent (the
  ledger no longer says who had it). The space goes back to the file system (``VACUUM``).

Example::

    >>> from newsletter_kit.store import open_store
    >>> info = store_info(open_store(":memory:"))
    >>> info["tables"]["deliveries"], info["last_backup"]
    (0, None)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import StoreError, ValidationError
from .store import Store, now_iso, store_error

__all__ = ["BackupReport", "PruneReport", "backup_store", "prune_store", "store_info"]

#: The status a pruned campaign takes: its numbers stay, its ledger rows are gone.
ARCHIVED = PRUNED = "pruned"  # a pruned campaign: not to be confused with an archived one (hidden)


@dataclass
class BackupReport:
    """What :func:`backup_store` wrote: ``path``, ``bytes``, ``at`` (UTC), ``integrity``."""

    path: str
    bytes: int
    at: str
    integrity: str = "ok"

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return asdict(self)


@dataclass
class PruneReport:
    """What :func:`prune_store` did (or would do, ``dry_run``).

    ``campaigns`` names the campaigns pruned; ``deleted`` the ledger rows removed (kept in
    aggregate); ``kept`` the rows kept because an address bounced or an outcome is unknown;
    ``bytes_before`` / ``bytes_after`` the file's size (main file and ``-wal``).
    """

    before: str
    campaigns: list[str] = field(default_factory=list)
    deleted: int = 0
    kept: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return asdict(self)


def _file_bytes(path: str) -> int:
    """The main file and its ``-wal``: what the store takes on disk."""
    total = 0
    for name in (path, f"{path}-wal"):
        try:
            total += os.stat(name).st_size
        except FileNotFoundError:
            pass
    return total


def _meta(store: Store, key: str) -> Any:
    row = store.conn.execute("SELECT value FROM store_meta WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def _set_meta(store: Store, key: str, value: Any) -> None:
    with store.transaction():
        store.conn.execute(
            "INSERT INTO store_meta (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, json.dumps(value), now_iso()))


def _destination(store: Store, dest: str | os.PathLike[str]) -> Path:
    """The backup's file: ``dest``, or a dated file inside ``dest`` when it is a folder."""
    target = Path(dest).expanduser()
    if str(dest).endswith(("/", os.sep)) and not target.is_dir():
        raise StoreError(f"cannot write the backup into {dest}: there is no such folder")
    if target.is_dir():
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = target / f"{Path(store.path).stem}-{stamp}.db"
    if not target.parent.is_dir():
        raise StoreError(f"cannot write the backup {target}: the folder {target.parent} does not exist "
                         "(or is not a folder)")
    if store.path != ":memory:" and target.resolve() == Path(store.path).resolve():
        raise StoreError(f"the backup {target} would overwrite the store itself: name another file")
    return target


def backup_store(store: Store, dest: str | os.PathLike[str], *, force: bool = False) -> BackupReport:
    """Copy the store to ``dest`` (a file, or a folder to put a dated file in), consistently,
    even while a send or a fetch writes to it.

    An existing ``dest`` is refused unless ``force``. The copy is written to a temporary file
    (unpredictable name, created with ``O_EXCL``, readable by this user only) in the same folder,
    checked with ``PRAGMA quick_check``, then renamed: ``dest`` is either the old file or the
    whole new copy, never half of one. The store remembers the last backup (:func:`store_info`).
    To restore, stop whatever uses the store and copy the backup over the store's file (and
    delete the store's ``-wal`` and ``-shm`` files if any are left).

    Example::

        >>> import tempfile, pathlib
        >>> from newsletter_kit.store import open_store
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> report = backup_store(open_store(folder / "nk.db"), folder / "copy.db")
        >>> report.integrity, pathlib.Path(report.path).name
        ('ok', 'copy.db')
    """
    target = _destination(store, dest)
    if target.exists() and not force:
        raise StoreError(f"{target} already exists: choose another name, or --force to replace it")
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        _copy(store, temp)
        _publish(temp, target, force)
    except BaseException:
        for leftover in (temp, f"{temp}-wal", f"{temp}-shm", f"{temp}-journal"):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass
        raise
    report = BackupReport(path=str(target), bytes=target.stat().st_size, at=now_iso())
    _set_meta(store, "last_backup", report.to_dict())
    return report


def _copy(store: Store, temp: str) -> None:
    """The online backup, in one step: one read transaction, so one snapshot (in WAL mode the
    writers go on meanwhile), then an integrity check of the copy."""
    try:
        copy = sqlite3.connect(temp)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot write the backup beside {temp}: {exc}") from None
    try:
        store.conn.backup(copy, pages=-1)
        # One self-contained file: no -wal beside it to forget when it is copied somewhere.
        copy.execute("PRAGMA journal_mode = DELETE")
        check = copy.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StoreError(f"the backup failed its integrity check ({check}): nothing was replaced")
    except sqlite3.Error as exc:
        raise store_error(exc, store.path) or StoreError(f"the backup failed: {exc}") from None
    finally:
        copy.close()
    with open(temp, "rb") as written:
        os.fsync(written.fileno())


def _publish(temp: str, target: Path, force: bool) -> None:
    """Rename the checked copy into place; without ``force`` never over a file that appeared
    meanwhile (a hard link fails where a file exists)."""
    try:
        if force:
            os.replace(temp, target)
            return
        try:
            os.link(temp, target)
        except FileExistsError:
            raise StoreError(f"{target} already exists: choose another name, or --force to replace it") from None
        except OSError:  # a file system without hard links: check, then rename
            if target.exists():
                raise StoreError(f"{target} already exists: choose another name, or --force to replace it") from None
            os.replace(temp, target)
            return
        os.unlink(temp)
    except OSError as exc:
        raise StoreError(f"cannot write the backup {target}: {exc.strerror or exc}") from None


def store_info(store: Store) -> dict[str, Any]:
    """What the store holds: ``{"path", "bytes", "wal_bytes", "free_bytes", "schema_version",
    "tables": {name: rows}, "last_backup", "last_prune"}``.

    ``free_bytes`` is space inside the file that deleted rows left (``store prune`` gives it
    back); ``last_backup`` and ``last_prune`` are what those commands recorded, or None.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> info = store_info(open_store(":memory:"))
        >>> info["schema_version"] > 0, info["tables"]["campaigns"]
        (True, 0)
    """
    conn = store.conn
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    names = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    disk = store.path != ":memory:"
    return {
        "path": store.path,
        "bytes": os.stat(store.path).st_size if disk else page_size * conn.execute("PRAGMA page_count").fetchone()[0],
        "wal_bytes": _file_bytes(store.path) - os.stat(store.path).st_size if disk else 0,
        "free_bytes": page_size * conn.execute("PRAGMA freelist_count").fetchone()[0],
        "schema_version": store.schema_version(),
        "tables": {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names},
        "last_backup": _meta(store, "last_backup"),
        "last_prune": _meta(store, "last_prune"),
    }


def _cutoff(before: str | dt.date | dt.datetime) -> str:
    """``before`` as the ISO text the tables store (UTC); a date means its midnight UTC."""
    if isinstance(before, str):
        try:
            before = dt.datetime.fromisoformat(before.strip()) if "T" in before else dt.date.fromisoformat(before.strip())
        except ValueError:
            raise ValidationError(f"--before must be a date like 2025-01-31, not {before!r}", "before") from None
    if not isinstance(before, dt.datetime):
        before = dt.datetime.combine(before, dt.time(), dt.timezone.utc)
    if before.tzinfo is None:
        before = before.replace(tzinfo=dt.timezone.utc)
    return before.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat()


# Ledger rows a pruned campaign keeps: an outcome still unknown (to be resolved), and every row of
# an address that ever bounced: its evidence (bounces.delivery_id) and whether a later send
# succeeded (the threshold's reset on success) read them.
_DELETABLE = ("d.campaign_id = ? AND d.state != 'unknown'"
              " AND NOT EXISTS (SELECT 1 FROM bounces b WHERE b.email = d.email)")


def prune_store(store: Store, before: str | dt.date | dt.datetime, *, dry_run: bool = False,
                vacuum: bool = True) -> PruneReport:
    """Delete the per-delivery detail of campaigns finished (``done``) before ``before`` and give
    the space back; what the statistics, the thresholds and the evidence need stays.

    Each such campaign's ledger rows are counted into ``pruned_deliveries`` (per state and hour
    sent) and ``pruned_domains`` (per state and domain), then deleted, except the rows of
    addresses that ever bounced and rows whose outcome is ``unknown``. Bounces, suppressions
    with their evidence, opt-outs and processed-message keys are never touched. The campaign
    becomes ``pruned``: its status still adds up, it cannot be sent again. ``dry_run`` only
    counts. Each campaign is pruned in its own transaction, so a send may run meanwhile.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> report = prune_store(open_store(":memory:"), "2020-01-01")
        >>> report.campaigns, report.deleted
        ([], 0)
    """
    cutoff = _cutoff(before)
    report = PruneReport(before=cutoff, dry_run=dry_run)
    if store.path != ":memory:":
        report.bytes_before = _file_bytes(store.path)
    rows = store.conn.execute(
        "SELECT id, name FROM campaigns WHERE status IN ('done', ?) AND julianday(updated_at) < julianday(?)"
        " ORDER BY id", (ARCHIVED, cutoff)).fetchall()
    for campaign_id, name in rows:
        deleted = _prune_campaign(store, campaign_id, dry_run)
        if deleted:
            report.campaigns.append(name)
            report.deleted += deleted
    if rows:
        ids = ",".join(str(cid) for cid, _ in rows)
        report.kept = store.conn.execute(
            f"SELECT count(*) FROM deliveries WHERE campaign_id IN ({ids})").fetchone()[0] - (
            report.deleted if dry_run else 0)
    if not dry_run:
        if vacuum and report.deleted and store.path != ":memory:":
            _vacuum(store)
        _set_meta(store, "last_prune", {"before": cutoff, "at": now_iso(), "campaigns": len(report.campaigns),
                                        "deleted": report.deleted})
    report.bytes_after = _file_bytes(store.path) if store.path != ":memory:" else 0
    return report


def _prune_campaign(store: Store, campaign_id: int, dry_run: bool) -> int:
    """Count one campaign's deletable rows into the aggregates and delete them (one transaction)."""
    conn = store.conn
    if dry_run:
        return int(conn.execute(f"SELECT count(*) FROM deliveries d WHERE {_DELETABLE}", (campaign_id,)).fetchone()[0])
    with store.transaction():
        conn.execute(
            "INSERT INTO pruned_deliveries (campaign_id, state, hour, count)"
            " SELECT d.campaign_id, d.state, substr(coalesce(d.sent_at, d.updated_at), 1, 13), count(*)"
            f" FROM deliveries d WHERE {_DELETABLE} GROUP BY 1, 2, 3"
            " ON CONFLICT (campaign_id, state, hour) DO UPDATE SET count = count + excluded.count",
            (campaign_id,))
        conn.execute(
            "INSERT INTO pruned_domains (campaign_id, state, domain, count)"
            " SELECT d.campaign_id, d.state, substr(d.email, instr(d.email, '@') + 1), count(*)"
            f" FROM deliveries d WHERE {_DELETABLE} GROUP BY 1, 2, 3"
            " ON CONFLICT (campaign_id, state, domain) DO UPDATE SET count = count + excluded.count",
            (campaign_id,))
        deleted = conn.execute(f"DELETE FROM deliveries AS d WHERE {_DELETABLE}", (campaign_id,)).rowcount
        conn.execute("UPDATE campaigns SET status = ? WHERE id = ?", (ARCHIVED, campaign_id))
    return int(deleted)


def _vacuum(store: Store) -> None:
    """Rewrite the file without the freed pages, then truncate the ``-wal`` the rewrite went
    through, so the file system gets the space back."""
    store.conn.execute("VACUUM")
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def archived_counts(store: Store, campaign_id: int) -> dict[str, int]:
    """A campaign's ledger counts by state, the pruned rows included (for a ``pruned`` one).

    Example::

        >>> from newsletter_kit.store import open_store
        >>> archived_counts(open_store(":memory:"), 1)
        {'sent': 0, 'failed': 0, 'excluded': 0, 'pending': 0, 'unknown': 0}
    """
    counts = {"sent": 0, "failed": 0, "excluded": 0, "pending": 0, "unknown": 0}
    for state, n in store.conn.execute(
            "SELECT state, count(*) FROM deliveries WHERE campaign_id = ? GROUP BY state"
            " UNION ALL SELECT state, sum(count) FROM pruned_deliveries WHERE campaign_id = ? GROUP BY state",
            (campaign_id, campaign_id)):
        counts[state if state in counts else "pending"] += n
    return counts
