"""Take the review away: the store's tables and every review table as Parquet or CSV files.

One file per table, named after it (``deliveries.parquet``, ``bounces_by_domain.csv``...), so
DuckDB, Spark, pandas or a BI tool read the folder without newsletter_kit. The raw tables
(``deliveries`` with its campaign's name, ``bounces``, ``suppressions``) are streamed in
batches with types taken from the schema, times as UTC timestamps in Parquet; the review tables
are the DataFrames of :mod:`newsletter_kit.review`, exactly as a notebook sees them (lists such
as a suppression's evidence become JSON text). Everything is read in one read transaction, so
the files agree with each other even while a campaign is being sent.

Example::

    >>> import tempfile
    >>> from newsletter_kit.store import open_store
    >>> report = export_review(open_store(":memory:"), tempfile.mkdtemp(), format="csv")
    >>> report.tables["deliveries"], report.path("bounces").name
    (0, 'bounces.csv')
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import ExportError
from .escaping import csv_cell
from .files import atomic_write
from .store import Store

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["FORMATS", "RAW_TABLES", "REVIEW_TABLES", "ExportReport", "export_review"]

FORMATS = ("parquet", "csv")

#: The store's own tables a data team gets row by row. ``deliveries`` also carries its
#: campaign's name (the ledger only holds the campaign's id).
RAW_TABLES = ("deliveries", "bounces", "suppressions")

#: Every review table (a function of :mod:`newsletter_kit.review` returning a DataFrame) and the
#: arguments the export calls it with: the complete version, whatever it costs.
REVIEW_TABLES: dict[str, dict[str, Any]] = {
    "bounces_by_address": {},
    "bounces_by_domain": {"with_sent": True},
    "bounces_by_status": {},
    "bounces_by_reason": {},
    "bounce_list": {"limit": None},
    "sender_problems": {},
    "policy_counts": {},
    "bounces_by_source": {},
    "bounces_by_day": {},
    "campaign_summary": {},
    "campaign_forecast": {},
    "quota_by_day": {},
    "suppression_table": {},
    "threshold_counts": {},
    "threshold_what_if": {},
    "unmatched_bounces": {},
}

_BATCH_ROWS = 50_000


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_review` wrote: the folder, the format and the rows of each table."""

    folder: Path
    format: str
    tables: dict[str, int] = field(default_factory=dict)

    def path(self, table: str) -> Path:
        """The file of ``table``: ``folder / f"{table}.{format}"``."""
        return self.folder / f"{table}.{self.format}"

    def to_dict(self) -> dict[str, Any]:
        """``{"folder", "format", "tables": {name: {"file", "rows"}}}`` (the CLI's --json)."""
        return {"folder": str(self.folder), "format": self.format,
                "tables": {name: {"file": str(self.path(name)), "rows": rows} for name, rows in self.tables.items()}}


def export_review(store: Store, folder: str | os.PathLike[str], format: str = "parquet") -> ExportReport:
    """Write the raw tables and every review table to ``folder``, one file per table.

    ``format`` is ``"parquet"`` or ``"csv"``. The folder is created when missing; files of the
    same names are replaced (each one atomically), other files are left alone.

    Example::

        >>> import tempfile
        >>> from newsletter_kit.store import open_store
        >>> report = export_review(open_store(":memory:"), tempfile.mkdtemp())
        >>> sorted(report.tables)[1:4]
        ['bounces', 'bounces_by_address', 'bounces_by_day']
        >>> export_review(open_store(":memory:"), tempfile.mkdtemp(), format="xlsx")
        Traceback (most recent call last):
        ...
        newsletter_kit.errors.ExportError: unknown export format 'xlsx' (choose parquet or csv)
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r} (choose {' or '.join(FORMATS)})")
    target = Path(folder)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the export folder {target}: {exc.strerror or exc}") from None
    report = ExportReport(target, format)
    with _read_snapshot(store):
        for table in RAW_TABLES:
            report.tables[table] = _export_raw(store, table, report.path(table), format)
        for name, kwargs in REVIEW_TABLES.items():
            report.tables[name] = _export_frame(_review_frame(store, name, kwargs), report.path(name), format)
    return report


@contextlib.contextmanager
def _read_snapshot(store: Store) -> Iterator[None]:
    """One read transaction around the whole export (WAL: writers go on, we see one moment)."""
    if store.conn.in_transaction:  # the caller's transaction already fixes the moment
        yield
        return
    store.conn.execute("BEGIN")
    try:
        yield
    except BaseException:
        if store.conn.in_transaction:
            store.conn.execute("ROLLBACK")
        raise
    else:
        if store.conn.in_transaction:
            store.conn.execute("COMMIT")  # a review read may have reclaimed an abandoned quota hold


@contextlib.contextmanager
def _atomic_file(path: Path, *, text: bool = False) -> Iterator[IO[Any]]:
    """The open new file of ``path`` (:func:`newsletter_kit.files.atomic_write`: an unpredictable
    temporary name, never a planted link), renamed over ``path`` only when writing succeeded."""
    try:
        with atomic_write(path, text=text, newline="" if text else None) as out:
            yield out
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None


# --- raw tables -----------------------------------------------------------------------------


def _is_time(column: str) -> bool:
    return column.endswith("_at") or column == "since"


def _raw_columns(store: Store, table: str) -> list[tuple[str, str, str]]:
    """``(select expression, column name, declared type)`` for each exported column."""
    columns = [(f"t.{name}", name, (decl or "").upper())
               for _, name, decl, *_ in store.conn.execute(f"PRAGMA table_info({table})")]
    if table == "deliveries":
        at = next(i for i, c in enumerate(columns) if c[1] == "campaign_id") + 1
        columns.insert(at, ("c.name", "campaign", "TEXT"))
    return columns


def _raw_rows(store: Store, table: str, columns: list[tuple[str, str, str]]) -> Iterator[list[tuple[Any, ...]]]:
    select = ", ".join(f"{expr} AS {name}" for expr, name, _ in columns)
    join = " LEFT JOIN campaigns c ON c.id = t.campaign_id" if table == "deliveries" else ""
    cursor = store.conn.execute(f"SELECT {select} FROM {table} t{join} ORDER BY t.rowid")
    while batch := cursor.fetchmany(_BATCH_ROWS):
        yield batch


def _arrow_type(column: str, declared: str) -> pa.DataType:
    import pyarrow as pa

    if _is_time(column):
        return pa.timestamp("us", tz="UTC")
    if "INT" in declared:
        return pa.int64()
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return pa.float64()
    return pa.string()


def _export_raw(store: Store, table: str, path: Path, format: str) -> int:
    columns = _raw_columns(store, table)
    names = [name for _, name, _ in columns]
    rows = 0
    if format == "csv":
        with _atomic_file(path, text=True) as out:
            writer = csv.writer(out)
            writer.writerow(names)
            for batch in _raw_rows(store, table, columns):
                writer.writerows([csv_cell(v) for v in row] for row in batch)
                rows += len(batch)
        return rows
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, _arrow_type(name, decl)) for _, name, decl in columns])
    with _atomic_file(path) as out, pq.ParquetWriter(out, schema) as writer:
            for batch in _raw_rows(store, table, columns):
                writer.write_batch(_record_batch(table, schema, batch))
                rows += len(batch)
            if rows == 0:
                writer.write_table(schema.empty_table())
    return rows


def _record_batch(table: str, schema: pa.Schema, rows: list[tuple[Any, ...]]) -> pa.RecordBatch:
    import pyarrow as pa

    arrays = []
    for i, column in enumerate(schema):
        values = [row[i] for row in rows]
        if pa.types.is_timestamp(column.type):
            try:  # the store's times are ISO 8601 text with their offset (now_iso())
                arrays.append(pa.array(values, pa.string()).cast(column.type))
            except pa.ArrowInvalid:
                bad = next(v for v in values if v is not None and not _parses(v, column.type))
                raise ExportError(f"{table}.{column.name} holds {bad!r}, not an ISO 8601 time with "
                                  "an offset") from None
        else:
            arrays.append(pa.array(values, column.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _parses(value: Any, type_: pa.DataType) -> bool:
    import pyarrow as pa

    try:
        pa.array([value], pa.string()).cast(type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return True


# --- review tables ----------------------------------------------------------------------------


def _review_frame(store: Store, name: str, kwargs: dict[str, Any]) -> pd.DataFrame:
    from . import review

    frame: pd.DataFrame = getattr(review, name)(store, **kwargs)
    return frame


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Lists and dicts (a suppression's evidence) as JSON text: flat columns for every reader."""
    frame = frame.copy()
    for column in frame.columns[frame.dtypes == object]:
        nested = frame[column].map(lambda v: isinstance(v, (list, dict)))
        if nested.any():
            frame[column] = frame[column].map(
                lambda v: json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, (list, dict)) else v)
    return frame


def _neutralised(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as formulas made inert (:func:`newsletter_kit.escaping.csv_cell`);
    numbers, times and missing values are left alone."""
    import pandas as pd

    frame = frame.copy()
    for column in frame.columns:
        dtype = frame[column].dtype
        if dtype == object or pd.api.types.is_string_dtype(dtype):
            frame[column] = frame[column].map(csv_cell, na_action="ignore")
    return frame


def _export_frame(frame: pd.DataFrame, path: Path, format: str) -> int:
    frame = _plain(frame)
    if format == "csv":
        with _atomic_file(path, text=True) as out:
            _neutralised(frame).to_csv(out, index=False)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        with _atomic_file(path) as out:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out)
    return len(frame)
