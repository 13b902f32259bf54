"""Bounce ingestion: read new messages from the bounce mailbox (IMAP, by UIDVALIDITY + UID) or
from local files, parse them, record bounces and opt-out replies, and apply the threshold, in
batches that commit one by one.

A run fetches only what is new: UIDs above mailbox_state.last_uid for the folder's current
UIDVALIDITY, in batches, with BODY.PEEK[] so \\Seen flags stay as they were.  Each batch is
one store transaction: the messages' idempotency keys (mailbox_messages), their bounces
rows, suppressions, unsubscribes and the new last_uid commit together, so a run cut off
anywhere and run again counts nothing twice and loses nothing.  Messages are also
de-duplicated by Message-ID and sha256, which covers a UIDVALIDITY change (a recreated
folder is scanned again) and the same report present twice.

The IMAP conversation is :mod:`~newsletter_kit.imap`'s, parsing :mod:`~newsletter_kit.bounces`',
opt-out replies :mod:`~newsletter_kit.unsubscribes`'.

Example::

    report = fetch_bounces(store)                  # the configured mailbox
    report = fetch_bounces(store, source_path="data/bounces")   # or a folder of .eml files
"""

from __future__ import annotations

import hashlib
import json
import mailbox as std_mailbox
import multiprocessing
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imapclient

from . import bounces as _bounces
from . import imap as _imap
from . import unsubscribes as _unsubscribes
from .errors import MailboxError, ValidationError
from .failures import reason
from .imap import ImapFactory
from .settings import BounceSettings, require_bounce_settings
from .store import Store, now_iso
from .suppressions import apply_threshold

#: ``bounces`` counts a mailto unsubscribe request under this kind.
UNSUBSCRIBE = "unsubscribe"
DUPLICATE = "duplicate"


@dataclass
class Fetched:
    """One message read from a source: its bytes and where it was found."""

    raw: bytes
    uid: int | None = None


@dataclass
class FetchReport:
    """What a fetch did. ``to_dict()`` is the ``bounces fetch --json`` document.

    ``fetched`` counts messages processed for the first time; ``bounces`` counts them by
    kind (``hard``, ``soft``..., ``unsubscribe`` for a valid mailto opt-out); ``duplicates``
    are messages already processed under another UID or file.
    """

    source: str
    fetched: int = 0
    bounces: Counter[str] = field(default_factory=Counter)
    suppressed: list[str] = field(default_factory=list)
    unsubscribed: list[tuple[str, str | None]] = field(default_factory=list)
    duplicates: int = 0
    moved: int = 0
    #: Messages not read (over the size cap): left in the folder, their UIDs passed.
    skipped: list[_imap.Skipped] = field(default_factory=list)
    unmatched: int = 0  # recipients recorded that match no delivery we made (counted only if set so)

    def to_dict(self) -> dict[str, object]:
        """``{"fetched", "bounces": {kind: count}, "unmatched", "suppressed": [address]}``, and
        ``"skipped": [{"uid", "size", "why"}]`` when messages were skipped.

        >>> FetchReport("file:/tmp/x").to_dict()
        {'fetched': 0, 'bounces': {}, 'unmatched': 0, 'suppressed': []}
        """
        doc: dict[str, object] = {"fetched": self.fetched, "bounces": dict(sorted(self.bounces.items())),
                                  "unmatched": self.unmatched, "suppressed": sorted(self.suppressed)}
        if self.skipped:
            doc["skipped"] = [s.to_dict() for s in self.skipped]
        return doc


def fetch_bounces(
    store: Store,
    settings: BounceSettings | None = None,
    *,
    source_path: str | Path | None = None,
    password: str | None = None,
    imap_factory: ImapFactory | None = None,
    batch_size: int = 500,
    workers: int | None = None,
    deadline: float = _imap.FETCH_DEADLINE,
    max_message_bytes: int = _imap.MAX_MESSAGE_BYTES,
) -> FetchReport:
    """Fetch new messages from the bounce mailbox (or ``source_path``), record, suppress.

    ``source_path`` is a directory of ``.eml`` files, one ``.eml`` or an mbox file; else the
    IMAP folder of the settings is read.  Re-running changes nothing.  ``workers`` processes
    parse in parallel with fetching and recording (default: one per CPU, up to 4, when at
    least PARALLEL_MIN messages are new; 1 parses in this process).

    The server decides neither how long nor how much: the whole conversation from the login
    on has ``deadline`` seconds (then what was read is recorded and MailboxError says to run
    it again, exit 75), and a message over ``max_message_bytes`` is never read whole, whatever
    size the server announced or sends: it is skipped (``report.skipped``, its UID passed, the
    message left in the folder) and the run goes on.

    >>> report = fetch_bounces(store)                # doctest: +SKIP
    >>> report.to_dict()                             # doctest: +SKIP
    {'fetched': 3, 'bounces': {'hard': 2, 'soft': 1}, 'suppressed': ['a@example.org']}
    """
    settings = settings if settings is not None else require_bounce_settings(store)
    if batch_size < 1:
        raise ValidationError("the batch size must be at least 1", "batch_size")
    if workers is not None and workers < 1:
        raise ValidationError("workers must be at least 1", "workers")
    if not deadline > 0:
        raise ValidationError("the fetch deadline must be a positive number of seconds", "deadline")
    if max_message_bytes < 1024:
        raise ValidationError("the message size cap must be at least 1024 bytes", "max_message_bytes")
    last_id = store.conn.execute("SELECT coalesce(max(id), 0) FROM bounces").fetchone()[0]
    if source_path is not None:
        report = _fetch_files(store, settings, Path(source_path), batch_size, workers)
    else:
        until = time.monotonic() + deadline
        imap = _imap.open_imap(settings, password=password, factory=imap_factory, deadline=until,
                               max_message=max_message_bytes)
        try:
            reader = _imap.reader_of(imap) or _imap.bound_reads(imap, deadline=until, max_message=max_message_bytes)
            report = _fetch_imap(store, settings, imap, batch_size, workers,
                                 _Limits(reader, max_message_bytes, deadline))
        finally:
            _imap.close_imap(imap)
    # The rows this fetch added (ids above the old maximum: a range read, not the history).
    report.unmatched = int(store.conn.execute(
        "SELECT count(*) FROM bounces WHERE id > ? AND unmatched = 1", (last_id,)).fetchone()[0])
    _fetched_now(store, report.source)
    return report


def _fetched_now(store: Store, source: str) -> None:
    """Note the time of this fetch, also when nothing was new (the sidebar's "last fetch")."""
    with store.transaction():
        if source.startswith("file:"):
            store.conn.execute(
                "INSERT INTO mailbox_state (source, uidvalidity, last_uid, updated_at) VALUES (?, 0, 0, ?)"
                " ON CONFLICT(source) DO UPDATE SET updated_at = excluded.updated_at", (source, now_iso()))
        else:
            store.conn.execute("UPDATE mailbox_state SET updated_at = ? WHERE source = ?", (now_iso(), source))


@dataclass(frozen=True)
class _Limits:
    reader: _imap.BoundedReader
    max_bytes: int
    deadline: float


# --- IMAP ---


def imap_source(settings: BounceSettings) -> str:
    """The ``source`` key of the settings' folder, e.g. ``imap:bounces@mail.example.org/INBOX``."""
    return f"imap:{settings.user}@{settings.host}/{settings.folder}"


def _fetch_imap(store: Store, settings: BounceSettings, imap: imapclient.IMAPClient, batch_size: int,
                workers: int | None, limits: _Limits) -> FetchReport:
    source = imap_source(settings)
    report = FetchReport(source)
    target = settings.processed_folder  # where processed messages go; None: they stay
    if target and target == settings.folder:
        raise ValidationError("the processed folder must differ from the monitored folder",
                              "processed_folder")
    try:
        info, uidvalidity = _imap.select_folder(imap, settings, readonly=not target)
        last_uid = _last_uid(store, source, uidvalidity)
        if target:
            report.moved += _imap.prepare_processed_folder(imap, target, last_uid)
        uids = _imap.new_uids(imap, info, last_uid)
        large = _imap.large_sizes(imap, last_uid) if uids else {}
    except _imap.FetchDeadline:
        raise _SourceFailed(_too_slow(settings, limits)) from None
    except _imap.IMAP_ERRORS as exc:
        raise MailboxError(f"{_imap.imap_where(settings)}: {reason(exc)}") from None

    def fetch(todo: list[int]) -> tuple[list[tuple[int, bytes]], list[_imap.Skipped], list[int]]:
        try:
            return _imap.fetch_messages(imap, todo, limits.max_bytes, limits.reader)
        except _imap.FetchDeadline:
            raise _SourceFailed(_too_slow(settings, limits)) from None
        except _imap.IMAP_ERRORS as exc:
            raise _SourceFailed(
                f"{_imap.imap_where(settings)}: the connection failed ({reason(exc)}); what was "
                "read before is recorded: run the fetch again to continue where it stopped"
            ) from None

    def batches() -> Iterator[_Batch]:
        for batch in _imap.uid_batches(uids, large, batch_size):
            todo = batch
            while todo:
                found, skipped, later = fetch(todo)
                # The byte budget of one FETCH was reached (the server's sizes were wrong):
                # record what came before the first UID left over, fetch the rest again.
                done = todo[:todo.index(later[0])] if later else todo
                if not done:
                    done = todo[:1]
                    found, skipped, _ = fetch(done)
                kept = set(done)
                report.skipped += [s for s in skipped if s.uid in kept]
                passed = {s.uid for s in skipped}
                messages = [Fetched(raw, uid) for uid, raw in found if uid in kept]
                yield _Batch(messages, (uidvalidity, done[-1]), [u for u in done if u not in passed])
                todo = todo[len(done):]

    def recorded(batch: _Batch) -> None:
        if target and batch.uids:
            _move(imap, settings, target, batch.uids, report)

    _ingest(store, settings, report, batches(), _workers(workers, len(uids)), recorded)
    return report


def _too_slow(settings: BounceSettings, limits: _Limits) -> str:
    return (f"{_imap.imap_where(settings)}: the server took longer than the {limits.deadline:g} s deadline "
            "for the whole fetch; what was read before is recorded: run the fetch again to continue "
            "where it stopped")


def _last_uid(store: Store, source: str, uidvalidity: int) -> int:
    """The last UID processed in ``source`` under ``uidvalidity`` (0: scan the folder from the start)."""
    row = store.conn.execute(
        "SELECT uidvalidity, last_uid FROM mailbox_state WHERE source = ?", (source,)
    ).fetchone()
    if row is None or row[0] != uidvalidity:
        # New folder, or it was recreated: its UIDs mean nothing any more, so scan it all
        # again; Message-ID and sha256 keep what was processed from counting twice.
        return 0
    return int(row[1])


def _move(imap: imapclient.IMAPClient, settings: BounceSettings, target: str, uids: list[int],
          report: FetchReport) -> None:
    """Move the recorded messages to the processed folder (a failure says what was recorded)."""
    try:
        _imap.move_messages(imap, uids, target)
    except _imap.IMAP_ERRORS as exc:
        raise MailboxError(
            f"{_imap.imap_where(settings)}: recorded {report.fetched} new messages but could not move "
            f"them to {target!r} ({reason(exc)})"
        ) from None
    report.moved += len(uids)


def _advance(store: Store, source: str, uidvalidity: int, last_uid: int) -> None:
    store.conn.execute(
        "INSERT INTO mailbox_state (source, uidvalidity, last_uid, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(source) DO UPDATE SET uidvalidity = excluded.uidvalidity,"
        # Never backwards: a run that overlapped this one may have gone further.
        " last_uid = CASE WHEN mailbox_state.uidvalidity = excluded.uidvalidity"
        "   THEN max(mailbox_state.last_uid, excluded.last_uid) ELSE excluded.last_uid END,"
        " updated_at = excluded.updated_at",
        (source, uidvalidity, last_uid, now_iso()),
    )


# --- local files ---


def _fetch_files(store: Store, settings: BounceSettings, path: Path, batch_size: int,
                 workers: int | None) -> FetchReport:
    path = path.expanduser().resolve()
    report = FetchReport(f"file:{path}")
    count, raws = _read_files(path)

    def batches() -> Iterator[_Batch]:
        batch: list[Fetched] = []
        for raw in raws:
            batch.append(Fetched(raw))
            if len(batch) >= batch_size:
                yield _Batch(batch)
                batch = []
        if batch:
            yield _Batch(batch)

    _ingest(store, settings, report, batches(), _workers(workers, count))
    return report


def _read_files(path: Path) -> tuple[int, Iterator[bytes]]:
    """How many messages, and their bytes: a directory of .eml files, one .eml, or an mbox."""
    try:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.eml") if p.is_file())
            return len(files), _read_each(path, files)
        if path.suffix.lower() == ".eml":
            return 1, _read_each(path, [path])
        if path.is_file():
            box = std_mailbox.mbox(str(path), create=False)
            return len(box), _read_mbox(path, box)
    except (OSError, std_mailbox.Error) as exc:
        raise MailboxError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    raise MailboxError(f"{path}: no such file or directory")


def _read_each(path: Path, files: list[Path]) -> Iterator[bytes]:
    for file in files:
        try:
            yield file.read_bytes()
        except OSError as exc:
            raise _SourceFailed(f"cannot read {file}: {exc.strerror or exc}") from None


def _read_mbox(path: Path, box: std_mailbox.mbox) -> Iterator[bytes]:
    try:
        for key in box.iterkeys():
            yield box.get_bytes(key)
    except (OSError, std_mailbox.Error) as exc:
        raise _SourceFailed(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        box.close()


# --- the pipeline: read batch k+1 while batch k is parsed; record batches in order ---

#: Fewer new messages than this are parsed in this process: not worth the workers.
PARALLEL_MIN = 1000
MAX_WORKERS = 4


class _SourceFailed(MailboxError):
    """Reading the source failed: what was already read is still recorded, then this is raised."""

    exit_code = 75  # run the fetch again: it continues where this one stopped


@dataclass
class _Batch:
    messages: list[Fetched]
    position: tuple[int, int] | None = None  # (UIDVALIDITY, last UID of the batch)
    uids: list[int] = field(default_factory=list)


def _workers(asked: int | None, count: int) -> int:
    if asked is not None:
        return asked
    if count < PARALLEL_MIN:
        return 1
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def _ingest(store: Store, settings: BounceSettings, report: FetchReport, batches: Iterator[_Batch],
            workers: int, recorded: Callable[[_Batch], None] | None = None) -> None:
    """Parse each batch (in worker processes when ``workers`` > 1) while the next one is read,
    then record it: batches commit in order, so last_uid never passes an unrecorded message."""
    key = store.signing_key()

    def commit(batch: _Batch, parsed: list[_Parsed]) -> None:
        _record_batch(store, settings, report, parsed, batch.position)
        if recorded is not None:
            recorded(batch)

    with _Parser(workers, key) as parser:
        pending: tuple[_Batch, Callable[[], list[_Parsed]]] | None = None
        try:
            for batch in batches:
                job = parser.submit(batch.messages)
                if pending is not None:
                    commit(pending[0], pending[1]())
                pending = (batch, job)
        except _SourceFailed:
            if pending is not None:  # read before the failure: keep it
                commit(pending[0], pending[1]())
            raise
        if pending is not None:
            commit(pending[0], pending[1]())


class _Parser:
    """Parses batches here (one worker) or in a pool of processes started on first use."""

    def __init__(self, workers: int, key: bytes):
        self.workers = workers
        self.key = key
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> _Parser:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, messages: list[Fetched]) -> Callable[[], list[_Parsed]]:
        """Start parsing ``messages``; the returned call waits for and returns the results."""
        if self.workers <= 1 or len(messages) < 2:
            return lambda: [_parse(m, self.key) for m in messages]
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=_pool_context())
        chunk = max(1, len(messages) // (self.workers * 4))
        futures = [self.pool.submit(_parse_many, [m.raw for m in messages[i:i + chunk]], self.key)
                   for i in range(0, len(messages), chunk)]

        def results() -> list[_Parsed]:
            try:
                parts = [part for future in futures for part in future.result()]
            except BrokenProcessPool:  # a worker died: parse here rather than lose the batch
                self.workers = 1
                return [_parse(m, self.key) for m in messages]
            return [_Parsed(m, *part) for m, part in zip(messages, parts)]

        return results


def _pool_context() -> Any:
    """How parser workers start.

    fork when this process runs a single thread (the CLI, cron): instant, and safe, since a
    forked child leaves through os._exit and never touches the inherited store or IMAP socket.
    forkserver when other threads run (a notebook kernel, a panel's background send): forking
    those could copy a lock some thread holds; the server is clean and imports this module once.
    spawn elsewhere.
    """
    if sys.platform != "linux":
        return multiprocessing.get_context("spawn")
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


_ParsedParts = tuple[str, _bounces.BounceReport, str, tuple[str, str | None] | None]


def _parse_many(raws: list[bytes], key: bytes) -> list[_ParsedParts]:
    """In a worker process: what _Parsed holds besides the message (the bytes are not sent back)."""
    out = []
    for raw in raws:
        item = _parse(Fetched(raw), key)
        out.append((item.digest, item.report, item.kind, item.unsubscribe))
    return out


# --- processing: one transaction per batch ---


@dataclass
class _Parsed:
    """A message with what was worked out before taking the write lock."""

    message: Fetched
    digest: str
    report: _bounces.BounceReport
    kind: str
    unsubscribe: tuple[str, str | None] | None = None

    @property
    def message_id(self) -> str | None:
        return self.report.report_message_id


def _record_batch(store: Store, settings: BounceSettings, report: FetchReport, parsed: list[_Parsed],
                  position: tuple[int, int] | None) -> None:
    """One transaction: the batch's messages, bounces, unsubscribes, suppressions and last_uid."""
    source = report.source
    kind_source = "imap" if source.startswith("imap:") else "file"
    uidvalidity = position[0] if position else None
    touched: set[str] = set()
    counts: Counter[str] = Counter()
    with store.transaction():
        seen_digests, seen_ids = _seen(store, parsed)
        reread = _seen_from(store, source, parsed) if kind_source == "file" else set()
        done_uids = _recorded_uids(store, source, uidvalidity, parsed)
        for item in parsed:
            if item.message.uid in done_uids:
                # Recorded by a run that overlapped this one (two fetches at once).
                item.kind, item.unsubscribe = DUPLICATE, None
            elif item.digest in seen_digests or (item.message_id and item.message_id in seen_ids):
                item.kind, item.unsubscribe = DUPLICATE, None
                # A copy seen elsewhere is kept as a row; a file read again (a folder or mbox
                # fetched every day) is not, or the table would grow by the folder each run.
                if kind_source == "imap" or item.digest not in reread:
                    _insert_message(store, source, uidvalidity, item)
            else:
                touched.update(_record(store, source, kind_source, uidvalidity, item))
            seen_digests.add(item.digest)
            if item.message_id:
                seen_ids.add(item.message_id)
            counts[item.kind] += 1
        suppressed = apply_threshold(store, settings, touched) if touched else []
        if position is not None:
            _advance(store, source, *position)
    # Only after the commit: a rolled-back batch reports nothing.
    report.duplicates += counts.pop(DUPLICATE, 0)
    report.fetched += sum(counts.values())
    report.bounces.update(counts)
    report.suppressed += suppressed
    report.unsubscribed += [item.unsubscribe for item in parsed if item.unsubscribe]


def _parse(message: Fetched, key: bytes) -> _Parsed:
    report = _bounces.parse_bounce(message.raw)
    item = _Parsed(message, hashlib.sha256(message.raw).hexdigest(), report, str(report.kind.value))
    if report.kind not in _bounces.BOUNCE_KINDS and report.kind not in (_bounces.DELAYED, _bounces.COMPLAINT):
        asked, item.unsubscribe = _unsubscribes.unsubscribe_request(message.raw, key)
        if asked:
            item.kind = UNSUBSCRIBE if item.unsubscribe else "other"  # a forged token is ignored
    return item


def _record(store: Store, source: str, kind_source: str, uidvalidity: int | None, item: _Parsed) -> list[str]:
    """Record one new message; returns the addresses it newly counts a bounce against."""
    row_id = _insert_message(store, source, uidvalidity, item)
    if item.unsubscribe:
        # A token names its campaign by a short hash: the report says the name, as the row does.
        email, campaign = item.unsubscribe
        item.unsubscribe = (email, _unsubscribes.campaign_named(store, campaign))
        _unsubscribes.record_unsubscribe(store, *item.unsubscribe)
        return []
    added = _bounces.record_report(store, item.report, report_key=item.message_id or f"sha256:{item.digest}",
                                   source=kind_source, mailbox_message_id=row_id)
    # Failures and complaints may move an address toward suppression (the policy decides by the
    # reason which do); only these addresses are counted again after the batch.
    counting = {r.address for r in item.report.recipients
                if r.kind in _bounces.BOUNCE_KINDS or r.kind == _bounces.COMPLAINT}
    return [a for a in added if a in counting]


def _recorded_uids(store: Store, source: str, uidvalidity: int | None, parsed: list[_Parsed]) -> set[int]:
    uids = [item.message.uid for item in parsed if item.message.uid is not None]
    if uidvalidity is None or not uids:
        return set()
    return {row[0] for row in store.conn.execute(
        "SELECT uid FROM mailbox_messages WHERE source = ? AND uidvalidity = ?"
        " AND uid IN (SELECT value FROM json_each(?))", (source, uidvalidity, json.dumps(uids)))}


def _seen(store: Store, parsed: list[_Parsed]) -> tuple[set[str], set[str]]:
    """The digests and Message-IDs of ``parsed`` processed before, from any source."""
    digests = json.dumps([item.digest for item in parsed])
    ids = json.dumps([item.message_id for item in parsed if item.message_id])
    found_digests = {row[0] for row in store.conn.execute(
        "SELECT sha256 FROM mailbox_messages WHERE sha256 IN (SELECT value FROM json_each(?))", (digests,))}
    found_ids = {row[0] for row in store.conn.execute(
        "SELECT message_id FROM mailbox_messages WHERE message_id IN (SELECT value FROM json_each(?))",
        (ids,))}
    return found_digests, found_ids


def _seen_from(store: Store, source: str, parsed: list[_Parsed]) -> set[str]:
    """The digests of ``parsed`` already recorded from this very source."""
    digests = json.dumps([item.digest for item in parsed])
    return {row[0] for row in store.conn.execute(
        "SELECT sha256 FROM mailbox_messages WHERE source = ? AND sha256 IN (SELECT value FROM json_each(?))",
        (source, digests))}


def _insert_message(store: Store, source: str, uidvalidity: int | None, item: _Parsed) -> int:
    message = item.message
    error = item.report.reason if item.kind == "other" else None
    cursor = store.conn.execute(
        "INSERT INTO mailbox_messages (source, uidvalidity, uid, message_id, sha256, kind, error,"
        " received_at, processed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (source, uidvalidity if message.uid is not None else None, message.uid, item.message_id,
         item.digest, item.kind, error, item.report.date, now_iso()),
    )
    return int(cursor.lastrowid or 0)
