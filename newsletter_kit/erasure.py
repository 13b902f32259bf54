"""The right to erasure (GDPR art. 17): every trace of one address leaves the store, the
statistics keep their counts, and a keyed hash keeps the address from coming back.

:func:`erase_address` deletes the contact (and its list memberships), its opt-outs, its
suppression and their audit trails; deliveries, bounces and the bounce summary keep their rows
for the counts, with the address replaced by a placeholder (``erased-<n>@erased.invalid``) and
scrubbed from the server replies and diagnostics quoted there. What stays is an HMAC-SHA256 of
the address under the store's signing key (:func:`address_hash`): an import or an opt-out of that
address later is refused (:func:`is_erased`), and no one can read the address back from it.

Deleting rows is not enough: SQLite leaves deleted rows in free pages and in the WAL file. The
erasure runs with ``secure_delete`` on (freed content is overwritten with zeros), then
checkpoints the WAL with ``TRUNCATE`` and ``VACUUM``\\ s the file, so the address's bytes are gone
from ``newsletter.db`` and ``newsletter.db-wal`` themselves.

Example::

    >>> from newsletter_kit.store import open_store
    >>> from newsletter_kit.audience import add_contacts
    >>> store = open_store(":memory:")
    >>> _ = add_contacts(store, [{"email": "ann@example.org"}])
    >>> erase_address(store, "Ann@Example.org")["contacts"], is_erased(store, "ann@example.org")
    (1, True)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sqlite3
from typing import Any

from .addresses import normalize_address
from .errors import StoreBusy, ValidationError
from .store import Store, now_iso

__all__ = ["address_hash", "erase_address", "erased_addresses", "is_erased"]

_PLACEHOLDER_DOMAIN = "erased.invalid"


def address_hash(store: Store, email: str) -> str:
    """The keyed hash an erasure keeps of ``email`` (hex HMAC-SHA256 under the store's key).

    Example::

        >>> from newsletter_kit.store import open_store
        >>> store = open_store(":memory:")
        >>> address_hash(store, "Ann@example.org") == address_hash(store, "ann@example.org")
        True
    """
    address = normalize_address(email)
    return hmac.new(store.signing_key(), b"erasure\0" + address.encode("utf-8"), hashlib.sha256).hexdigest()


def is_erased(store: Store, email: str) -> bool:
    """Whether ``email`` was erased (it may not be imported or opted out again).

    Example::

        >>> from newsletter_kit.store import open_store
        >>> is_erased(open_store(":memory:"), "ann@example.org")
        False
    """
    return erased_addresses(store, [email]) != set()


def erased_addresses(store: Store, emails: Any) -> set[str]:
    """Those of ``emails`` (normalised addresses) that were erased; cheap when none ever was.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> erased_addresses(open_store(":memory:"), ["ann@example.org"])
        set()
    """
    if store.conn.execute("SELECT 1 FROM erasures LIMIT 1").fetchone() is None:
        return set()
    key = store.signing_key()
    found = set()
    for email in emails:
        digest = hmac.new(key, b"erasure\0" + email.encode("utf-8"), hashlib.sha256).hexdigest()
        if store.conn.execute("SELECT 1 FROM erasures WHERE address_hash = ?", (digest,)).fetchone():
            found.add(email)
    return found


def erase_address(store: Store, email: str) -> dict[str, Any]:
    """Erase every trace of ``email`` from the store (see the module doc); idempotent.

    Returns what was done: ``{"address_hash", "contacts", "deliveries", "bounces",
    "unsubscribes", "suppressions", "audit_rows", "messages", "placeholder"}`` (row counts;
    the placeholder stands where the address was kept for the statistics).
    """
    address = normalize_address(email)
    if address.endswith("@" + _PLACEHOLDER_DOMAIN):
        raise ValidationError(f"{address} is already an erased placeholder", "email")
    digest = address_hash(store, address)
    pattern = re.compile(re.escape(address), re.IGNORECASE)
    conn = store.conn
    conn.execute("PRAGMA secure_delete = ON")
    try:
        with store.transaction():
            conn.execute("INSERT OR IGNORE INTO erasures (address_hash, erased_at) VALUES (?, ?)",
                         (digest, now_iso()[:10]))
            number = conn.execute("SELECT rowid FROM erasures WHERE address_hash = ?", (digest,)).fetchone()[0]
            placeholder = f"erased-{number}@{_PLACEHOLDER_DOMAIN}"
            done = {
                "address_hash": digest, "placeholder": placeholder,
                "contacts": conn.execute("DELETE FROM contacts WHERE email = ?", (address,)).rowcount,
                "unsubscribes": conn.execute("DELETE FROM unsubscribes WHERE email = ?", (address,)).rowcount,
                "suppressions": conn.execute("DELETE FROM suppressions WHERE email = ?", (address,)).rowcount,
                "audit_rows": conn.execute("DELETE FROM suppression_events WHERE email = ?", (address,)).rowcount
                + conn.execute("DELETE FROM unsubscribe_events WHERE email = ?", (address,)).rowcount,
            }
            done["deliveries"] = _scrub(conn, "deliveries", ("smtp_reply", "reason"), address, placeholder, pattern)
            done["bounces"] = _scrub(conn, "bounces", ("diagnostic",), address, placeholder, pattern)
            done["messages"] = _scrub_text(conn, "mailbox_messages", "error", pattern, placeholder)
            # Other people's evidence and audit rows may quote the address (a shared report).
            _scrub_text(conn, "suppressions", "evidence", pattern, placeholder)
            _scrub_text(conn, "suppression_events", "detail", pattern, placeholder)
            _scrub_text(conn, "bounce_addresses", "last_diagnostic", pattern, placeholder)
    finally:
        conn.execute("PRAGMA secure_delete = OFF")
    _compact(store)
    return done


def _scrub(conn: Any, table: str, texts: tuple[str, ...], address: str, placeholder: str,
           pattern: re.Pattern[str]) -> int:
    """Rows of ``table`` for ``address``: the address becomes the placeholder; ``texts`` columns
    of every row lose it too. Returns the rows that were the address's."""
    count = conn.execute(f"UPDATE {table} SET email = ? WHERE email = ?", (placeholder, address)).rowcount
    for column in texts:
        _scrub_text(conn, table, column, pattern, placeholder)
    return int(count)


def _scrub_text(conn: Any, table: str, column: str, pattern: re.Pattern[str], placeholder: str) -> int:
    """Replace the address (any letter case) in one text column, wherever it is quoted."""
    key = "rowid" if table != "bounce_addresses" else "email"
    # instr() on lower(): a plain substring test (LIKE would read _ and % in addresses as wildcards).
    needle = pattern.pattern.replace("\\", "").lower()
    rows = conn.execute(f"SELECT {key}, {column} FROM {table} WHERE instr(lower({column}), ?) > 0",
                        (needle,)).fetchall()
    for row_key, text in rows:
        conn.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (pattern.sub(placeholder, text), row_key))
    return len(rows)


def _compact(store: Store) -> None:
    """Leave no copy of deleted content in the file: free pages zeroed (secure_delete), the WAL
    emptied, the file rebuilt."""
    if store.path == ":memory:":
        return
    conn = store.conn
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        conn.execute("VACUUM")
        busy = busy or conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    except sqlite3.OperationalError:
        busy = 1
    if busy:
        # The rows are gone already; old copies stay in the file until no one else reads it.
        raise StoreBusy(f"erased from the data, but another process holds the store {store.path} open, "
                        "so its file still has old copies: close it (notebook kernels, JupyterLab's "
                        "sidebar polls are brief) and run the same erase again to compact the file")
