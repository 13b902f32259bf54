"""``bounces import-events``: ESP events saved as JSON files (or folders of them), recorded as
a sync would record them.  An unsigned file is the user's own data; a signed one is checked.

Example::

    report = import_events(store, ["exports/ses-bounce.json", "exports/sendgrid/"])
    report.to_dict()   # {"read", "recorded", "matched", "unmatched", "duplicates", "refused", ...}
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..store import Store, now_iso
from .config import EspSettings, load_esp_settings
from .events import EspEvent
from .formats import EventFormatError, events_from_document, read_documents, read_file
from .matching import EventsReport, record_events

__all__ = ["import_events"]

#: Events recorded per transaction.
BATCH = 2000


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if not name.startswith("."):
                    yield Path(root) / name
    else:
        yield path


def import_events(store: Store, paths: Iterable[str | os.PathLike[str]], *, esp: EspSettings | None = None) -> EventsReport:
    """Read every file (folders: every file under them), record their events, apply the
    threshold; a file that cannot be read or is no ESP format is listed in ``errors`` and the
    others are still read.  Importing the same files again records nothing new.

    >>> from newsletter_kit.store import open_store
    >>> import_events(open_store(":memory:"), []).read
    0
    """
    esp = esp if esp is not None else load_esp_settings(store)
    window = esp.window_days if esp else 7
    report = EventsReport()
    for given in paths:
        path = Path(given)
        if not path.exists():
            report.errors.append(f"{path}: no such file or folder")
            continue
        for file in _files(path):
            report.merge(_import_file(store, file, esp, window))
    return report


def _import_file(store: Store, file: Path, esp: EspSettings | None, window: int) -> EventsReport:
    """One file: skipped when the same bytes were imported whole before (by digest)."""
    report = EventsReport()
    try:
        data = read_file(file)
    except EventFormatError as exc:
        report.errors.append(f"{file}: {str(exc).removeprefix(file.name + ': ')}")
        return report
    digest = hashlib.sha256(data).hexdigest()
    known = store.conn.execute("SELECT events FROM esp_files WHERE sha256 = ?", (digest,)).fetchone()
    if known is not None:
        report.read = report.duplicates = int(known[0])
        return report
    pending: list[EspEvent] = []
    try:
        for document in read_documents(file, data):
            pending += events_from_document(store, document, esp, file.name)
            if len(pending) >= BATCH:
                report.merge(record_events(store, pending, origin=str(file), window_days=window))
                pending = []
    except EventFormatError as exc:
        report.errors.append(f"{file}: {str(exc).removeprefix(file.name + ': ')}")
    if pending:
        report.merge(record_events(store, pending, origin=str(file), window_days=window))
    if not report.errors and not report.refused:
        with store.transaction():
            store.conn.execute("INSERT OR IGNORE INTO esp_files (sha256, name, events, imported_at) VALUES (?, ?, ?, ?)",
                               (digest, file.name[:200], report.read, now_iso()))
    return report
