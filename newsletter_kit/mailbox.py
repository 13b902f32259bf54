"""The bounce mailbox over IMAP (imapclient), configured from
:class:`~newsletter_kit.settings.BounceSettings`.

Example::

    with open_imap(settings) as imap:
        print(list_folders(imap))
"""

from __future__ import annotations

import hashlib
import imaplib
import json
import mailbox as std_mailbox
import multiprocessing
import os
import re
import ssl
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from . import bounces as _bounces
from .errors import AuthenticationFailed, ConnectionFailed, MailboxError, ValidationError
from .settings import BounceSettings, require_bounce_settings, resolve_password
from .store import Store, now_iso
from .suppressions import apply_threshold
from .transport import network_reason, tls_context, tls_failure

#: ``factory(host, port, ssl=..., ssl_context=..., timeout=...)`` → an IMAPClient.
ImapFactory = Callable[..., imapclient.IMAPClient]
DEFAULT_TIMEOUT = 30.0


def _where(settings: BounceSettings) -> str:
    return f"IMAP server {settings.host}:{settings.port}"


def _tls_failure(settings: BounceSettings, exc: BaseException) -> ConnectionFailed:
    return tls_failure(_where(settings), exc)


def connect_imap(settings: BounceSettings, *, timeout: float = DEFAULT_TIMEOUT,
                 factory: ImapFactory | None = None) -> imapclient.IMAPClient:
    """Connect and bring TLS up as the settings say, without logging in."""
    make = factory or imapclient.IMAPClient
    context = tls_context(settings.ca_file)
    try:
        imap = make(settings.host, port=settings.port, ssl=settings.tls == "ssl",
                    ssl_context=context, timeout=timeout)
        if settings.tls == "starttls":
            imap.starttls(context)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise _tls_failure(settings, exc) from None
    except (OSError, IMAPClientError) as exc:
        raise ConnectionFailed(f"cannot connect to {_where(settings)}: {_reason(exc)}") from None
    return imap


def open_imap(settings: BounceSettings, *, password: str | None = None,
              timeout: float = DEFAULT_TIMEOUT, factory: ImapFactory | None = None) -> imapclient.IMAPClient:
    """Connect, bring TLS up and log in: a ready IMAPClient (usable as a context manager)."""
    if settings.tls == "none" and not settings.allow_plain_auth:
        raise ValidationError("refusing to log in over an unencrypted connection (see --allow-plain-auth)")
    secret = password if password is not None else resolve_password(settings.password_ref)
    imap = connect_imap(settings, timeout=timeout, factory=factory)
    try:
        imap.login(settings.user, secret)
    except LoginError as exc:
        _logout(imap)
        raise AuthenticationFailed(
            f"{_where(settings)} refused the user name or password for {settings.user!r} ({_reason(exc)})"
        ) from None
    except (OSError, IMAPClientError) as exc:
        _logout(imap)
        raise ConnectionFailed(f"{_where(settings)}: {_reason(exc)}") from None
    return imap


def list_folders(imap: imapclient.IMAPClient) -> list[str]:
    """The folder names the server lists, INBOX first, then alphabetical."""
    try:
        names = [name for _flags, _delim, name in imap.list_folders()]
    except (OSError, IMAPClientError) as exc:
        raise MailboxError(f"the IMAP server did not list its folders: {_reason(exc)}") from None
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return sorted(names, key=lambda n: (n.upper() != "INBOX", n.lower()))


def fetch_folder_names(settings: BounceSettings, *, password: str | None = None,
                       factory: ImapFactory | None = None) -> list[str]:
    """Log in and list the folders (what the "Folder to monitor" picker shows)."""
    imap = open_imap(settings, password=password, factory=factory)
    try:
        return list_folders(imap)
    finally:
        _logout(imap)


def check_imap(settings: BounceSettings, *, password: str | None = None,
               factory: ImapFactory | None = None) -> list[tuple[bool, str]]:
    """Try the mailbox step by step; a list of (ok, sentence) for ``settings test``."""
    try:
        imap = connect_imap(settings, factory=factory)
    except ConnectionFailed as exc:
        return [(False, str(exc))]
    tls = {"ssl": "implicit TLS", "starttls": "STARTTLS", "none": "no TLS"}[settings.tls]
    results = [(True, f"{_where(settings)}: connected ({tls}"
                      + (", certificate verified)" if settings.tls != "none" else ")"))]
    try:
        if settings.tls == "none" and not settings.allow_plain_auth:
            raise ValidationError("refusing to log in over an unencrypted connection (see --allow-plain-auth)")
        secret = password if password is not None else resolve_password(settings.password_ref)
        try:
            imap.login(settings.user, secret)
        except LoginError as exc:
            raise AuthenticationFailed(
                f"{_where(settings)} refused the user name or password for {settings.user!r} ({_reason(exc)})"
            ) from None
        results.append((True, f"{_where(settings)}: logged in as {settings.user}"))
        folders = list_folders(imap)
        if settings.folder in folders:
            results.append((True, f"{_where(settings)}: folder {settings.folder!r} found"))
        else:
            results.append((False, f"{_where(settings)}: folder {settings.folder!r} not found; "
                                   f"the server lists: {', '.join(folders)}"))
    except Exception as exc:  # reported, not raised: the point is to say what works
        results.append((False, str(exc)))
    finally:
        _logout(imap)
    return results


def _logout(imap: imapclient.IMAPClient) -> None:
    try:
        imap.logout()
    except (OSError, IMAPClientError):
        try:
            imap.shutdown()
        except OSError:
            pass


def _reason(exc: BaseException) -> str:
    if network_reason(exc):
        return network_reason(exc)
    text: Any = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text) or type(exc).__name__


# --- fetching bounces (incremental by UIDVALIDITY + UID) ---------------------------------

# A run fetches only what is new: UIDs above mailbox_state.last_uid for the folder's current
# UIDVALIDITY, in batches, with BODY.PEEK[] so \Seen flags stay as they were.  Each batch is
# one store transaction: the messages' idempotency keys (mailbox_messages), their bounces
# rows, suppressions, unsubscribes and the new last_uid commit together, so a run cut off
# anywhere and run again counts nothing twice and loses nothing.  Messages are also
# de-duplicated by Message-ID and sha256, which covers a UIDVALIDITY change (a recreated
# folder is scanned again) and the same report present twice.

#: The most bytes fetched in one batch, whatever the batch size says (bounces quote originals).
MAX_BATCH_BYTES = 64 * 1024 * 1024
#: Messages above this size are sized one by one when batching; smaller ones count as this.
LARGE_MESSAGE = 128 * 1024
#: ``bounces`` counts a mailto unsubscribe request under this kind.
UNSUBSCRIBE = "unsubscribe"
DUPLICATE = "duplicate"

_IMAP_ERRORS = (OSError, IMAPClientError, imaplib.IMAP4.error)


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

    def to_dict(self) -> dict[str, object]:
        """``{"fetched", "bounces": {kind: count}, "suppressed": [address]}``.

        >>> FetchReport("file:/tmp/x").to_dict()
        {'fetched': 0, 'bounces': {}, 'suppressed': []}
        """
        return {"fetched": self.fetched, "bounces": dict(sorted(self.bounces.items())),
                "suppressed": sorted(self.suppressed)}


def fetch_bounces(
    store: Store,
    settings: BounceSettings | None = None,
    *,
    source_path: str | Path | None = None,
    password: str | None = None,
    imap_factory: ImapFactory | None = None,
    batch_size: int = 500,
    workers: int | None = None,
) -> FetchReport:
    """Fetch new messages from the bounce mailbox (or ``source_path``), record, suppress.

    ``source_path`` is a directory of ``.eml`` files, one ``.eml`` or an mbox file; else the
    IMAP folder of the settings is read.  Re-running changes nothing.  ``workers`` processes
    parse in parallel with fetching and recording (default: one per CPU, up to 4, when at
    least PARALLEL_MIN messages are new; 1 parses in this process).

    >>> report = fetch_bounces(store)                # doctest: +SKIP
    >>> report.to_dict()                             # doctest: +SKIP
    {'fetched': 3, 'bounces': {'hard': 2, 'soft': 1}, 'suppressed': ['a@example.org']}
    """
    settings = settings if settings is not None else require_bounce_settings(store)
    if batch_size < 1:
        raise ValidationError("the batch size must be at least 1", "batch_size")
    if workers is not None and workers < 1:
        raise ValidationError("workers must be at least 1", "workers")
    if source_path is not None:
        return _fetch_files(store, settings, Path(source_path), batch_size, workers)
    imap = open_imap(settings, password=password, factory=imap_factory)
    try:
        return _fetch_imap(store, settings, imap, batch_size, workers)
    finally:
        _logout(imap)


# --- IMAP ---


def imap_source(settings: BounceSettings) -> str:
    """The ``source`` key of the settings' folder, e.g. ``imap:bounces@mail.example.org/INBOX``."""
    return f"imap:{settings.user}@{settings.host}/{settings.folder}"


def _fetch_imap(store: Store, settings: BounceSettings, imap: imapclient.IMAPClient, batch_size: int,
                workers: int | None) -> FetchReport:
    source = imap_source(settings)
    report = FetchReport(source)
    moving = bool(settings.processed_folder)
    if moving and settings.processed_folder == settings.folder:
        raise ValidationError("the processed folder must differ from the monitored folder",
                              "processed_folder")
    try:
        info, uidvalidity, last_uid = _select(store, imap, settings, source, readonly=not moving)
        if moving:
            _prepare_processed_folder(imap, settings, last_uid, report)
        uids = _new_uids(imap, info, last_uid)
        large = _large_sizes(imap, last_uid) if uids else {}
    except _IMAP_ERRORS as exc:
        raise MailboxError(f"{_where(settings)}: {_reason(exc)}") from None

    def batches() -> Iterator[_Batch]:
        for batch in _batches(uids, large, batch_size):
            try:
                data = imap.fetch(batch, ["BODY.PEEK[]"])
            except _IMAP_ERRORS as exc:
                raise _SourceFailed(
                    f"{_where(settings)}: the connection failed ({_reason(exc)}); what was read before "
                    "is recorded: run the fetch again to continue where it stopped"
                ) from None
            messages = [_fetched(uid, data[uid]) for uid in batch if uid in data]
            yield _Batch(messages, (uidvalidity, batch[-1]), batch)

    def recorded(batch: _Batch) -> None:
        if moving:
            _move(imap, settings, batch.uids, report)

    _ingest(store, settings, report, batches(), _workers(workers, len(uids)), recorded)
    return report


def _select(store: Store, imap: imapclient.IMAPClient, settings: BounceSettings, source: str,
            readonly: bool) -> tuple[dict[bytes, Any], int, int]:
    """Select the folder; (SELECT response, UIDVALIDITY, last UID processed under it)."""
    if not imap.folder_exists(settings.folder):
        raise MailboxError(
            f"{_where(settings)}: folder {settings.folder!r} not found; the server lists: "
            + ", ".join(list_folders(imap))
        )
    info = imap.select_folder(settings.folder, readonly=readonly)
    uidvalidity = int(info[b"UIDVALIDITY"])
    row = store.conn.execute(
        "SELECT uidvalidity, last_uid FROM mailbox_state WHERE source = ?", (source,)
    ).fetchone()
    if row is None or row[0] != uidvalidity:
        # New folder, or it was recreated: its UIDs mean nothing any more, so scan it all
        # again; Message-ID and sha256 keep what was processed from counting twice.
        return info, uidvalidity, 0
    return info, uidvalidity, int(row[1])


def _new_uids(imap: imapclient.IMAPClient, info: dict[bytes, Any], last_uid: int) -> list[int]:
    """The UIDs above ``last_uid``, ascending."""
    uidnext = info.get(b"UIDNEXT")
    if not info.get(b"EXISTS") or (uidnext is not None and int(uidnext) <= last_uid + 1):
        return []  # nothing new: a re-run costs one SELECT
    # "n:*" always matches the highest UID, even when it is below n: filter.
    return sorted(uid for uid in imap.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid)


def _large_sizes(imap: imapclient.IMAPClient, last_uid: int) -> dict[int, int]:
    """{uid: size} of the new messages over LARGE_MESSAGE bytes (one SEARCH, then their sizes)."""
    large = [uid for uid in imap.search(["UID", f"{last_uid + 1}:*", "LARGER", str(LARGE_MESSAGE)])
             if uid > last_uid]
    sizes: dict[int, int] = {}
    for start in range(0, len(large), 1000):
        found = imap.fetch(large[start:start + 1000], ["RFC822.SIZE"])
        sizes.update((uid, int(item.get(b"RFC822.SIZE", 0))) for uid, item in found.items())
    return sizes


def _batches(uids: list[int], large: dict[int, int], batch_size: int) -> Iterator[list[int]]:
    """Consecutive UIDs in batches of at most ``batch_size`` messages and about MAX_BATCH_BYTES.

    Bounces may quote big originals: a message not in ``large`` counts as LARGE_MESSAGE bytes
    (an upper bound), a large one as its size, so one FETCH never holds gigabytes.  Batches
    stay in UID order because last_uid advances batch by batch.
    """
    current: list[int] = []
    total = 0
    for uid in uids:
        size = large.get(uid, LARGE_MESSAGE)
        if current and (len(current) >= batch_size or total + size > MAX_BATCH_BYTES):
            yield current
            current, total = [], 0
        current.append(uid)
        total += size
    if current:
        yield current


def _fetched(uid: int, item: dict[bytes, object]) -> Fetched:
    raw = item.get(b"BODY[]")
    if not isinstance(raw, (bytes, bytearray)):
        raise MailboxError(f"the IMAP server sent no body for UID {uid}")
    return Fetched(bytes(raw), uid)


def _prepare_processed_folder(imap: imapclient.IMAPClient, settings: BounceSettings, last_uid: int,
                              report: FetchReport) -> None:
    """Create the processed folder if needed; move what a cut-off run recorded but did not move."""
    target = settings.processed_folder
    if not imap.folder_exists(target):
        imap.create_folder(target)
    if last_uid and imap.has_capability("MOVE"):
        left = [uid for uid in imap.search(["UID", f"1:{last_uid}"]) if uid <= last_uid]
        if left:
            imap.move(left, target)
            report.moved += len(left)


def _move(imap: imapclient.IMAPClient, settings: BounceSettings, uids: list[int],
          report: FetchReport) -> None:
    """MOVE processed messages when the server can; else COPY only (nothing is ever expunged)."""
    try:
        if imap.has_capability("MOVE"):
            imap.move(uids, settings.processed_folder)
        else:
            imap.copy(uids, settings.processed_folder)
    except _IMAP_ERRORS as exc:
        raise MailboxError(
            f"{_where(settings)}: recorded {report.fetched} new messages but could not move them to "
            f"{settings.processed_folder!r} ({_reason(exc)})"
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
        done_uids = _recorded_uids(store, source, uidvalidity, parsed)
        for item in parsed:
            if item.message.uid in done_uids:
                # Recorded by a run that overlapped this one (two fetches at once).
                item.kind, item.unsubscribe = DUPLICATE, None
            elif item.digest in seen_digests or (item.message_id and item.message_id in seen_ids):
                item.kind, item.unsubscribe = DUPLICATE, None
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
        asked, item.unsubscribe = _unsubscribe_request(message.raw, key)
        if asked:
            item.kind = UNSUBSCRIBE if item.unsubscribe else "other"  # a forged token is ignored
    return item


def _record(store: Store, source: str, kind_source: str, uidvalidity: int | None, item: _Parsed) -> list[str]:
    """Record one new message; returns the addresses it newly counts a bounce against."""
    row_id = _insert_message(store, source, uidvalidity, item)
    if item.unsubscribe:
        _record_unsubscribe(store, item.unsubscribe[1], item.unsubscribe[0])
        return []
    added = _bounces.record_report(store, item.report, report_key=item.message_id or f"sha256:{item.digest}",
                                   source=kind_source, mailbox_message_id=row_id)
    counting = {r.address for r in item.report.recipients if r.kind in _bounces.BOUNCE_KINDS}
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


# --- unsubscribe requests (replies to the List-Unsubscribe mailto) ---

_UNSUB_WORD_RE = re.compile(r"unsubscribe|disiscri|cancellami|cancellazione", re.IGNORECASE)
_TOKEN_RE = re.compile(r"[A-Za-z0-9_\-.~=:+/]{16,512}")


def _unsubscribe_request(raw: bytes, key: bytes) -> tuple[bool, tuple[str, str | None] | None]:
    """(is it an opt-out request, (email, campaign) when its token is valid).

    A request is a message whose *Subject* asks to unsubscribe (what a List-Unsubscribe mailto
    puts there); its token is looked for in the Subject, the To address, then the body's start.
    A reply quoting our footer keeps its own subject, so a token it quotes never counts.
    """
    verify = _token_verifier()
    if verify is None:
        return False, None
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw[:65536], headersonly=True)
    subject = str(headers.get("Subject", ""))
    if not _UNSUB_WORD_RE.search(subject):
        return False, None
    for token in _token_candidates(headers, raw):
        result = verify(key, token)
        if result:
            campaign, email = result
            return True, (email.strip().lower(), campaign)
    return True, None


def _token_candidates(headers: Message, raw: bytes) -> list[str]:
    """Token-like words of the Subject, the To address and the body's start, in that order."""
    texts = [str(headers.get("Subject", "")), str(headers.get("To", ""))]
    body = raw.split(b"\r\n\r\n", 1)[-1] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[-1]
    texts.append(body[:4096].decode("utf-8", "replace"))
    seen: dict[str, None] = {}
    for text in texts:
        for word in _TOKEN_RE.findall(text):
            seen.setdefault(word, None)
            seen.setdefault(word.strip(".:=+/-~"), None)
    return [w for w in seen if len(w) >= 16]


def _token_verifier() -> Callable[[bytes, str], tuple[str, str] | None] | None:
    try:
        from .tokens import verify_unsubscribe_token
    except ImportError:  # the tokens module is not there: no token can be checked
        return None
    return verify_unsubscribe_token


def _record_unsubscribe(store: Store, campaign: str | None, email: str) -> None:
    try:
        from .audience import add_unsubscribe
    except ImportError:
        store.conn.execute(
            "INSERT OR IGNORE INTO unsubscribes (email, campaign, source, created_at)"
            " VALUES (?, ?, 'mailto', ?)",
            (email, campaign, now_iso()),
        )
        return
    add_unsubscribe(store, email, campaign, source="mailto")
