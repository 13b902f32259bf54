"""The IMAP client of the bounce mailbox (imapclient), configured from
:class:`~newsletter_kit.settings.BounceSettings`: connect and log in, list folders, select one,
find and fetch new messages by UID, move or copy them. No store, no parsing: the ingestion
pipeline (:mod:`~newsletter_kit.ingest`) drives it.

Example::

    with open_imap(settings) as imap:      # doctest: +SKIP
        print(list_folders(imap))
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from .errors import AuthenticationFailed, ConnectionFailed, MailboxError, ValidationError
from .net import connected, reason, tls_context, tls_failure, where
from .settings import BounceSettings, resolve_password

#: ``factory(host, port, ssl=..., ssl_context=..., timeout=...)`` → an IMAPClient.
ImapFactory = Callable[..., imapclient.IMAPClient]
DEFAULT_TIMEOUT = 30.0
#: What a failing IMAP call raises (socket, protocol, or imaplib's own error).
IMAP_ERRORS = (OSError, IMAPClientError, imaplib.IMAP4.error)
#: The most bytes fetched in one batch, whatever the batch size says (bounces quote originals).
MAX_BATCH_BYTES = 64 * 1024 * 1024
#: Messages above this size are sized one by one when batching; smaller ones count as this.
LARGE_MESSAGE = 128 * 1024
#: The largest message a fetch reads (bytes), whatever the server announced: a larger one is
#: skipped (its UID reported) and the run goes on.  A bounce quotes at most our message,
#: which Postfix's default limit keeps under 10,240,000 bytes.
MAX_MESSAGE_BYTES = 12 * 1024 * 1024
#: The longest a whole ``bounces fetch`` may talk to the server (seconds): a server that
#: trickles a byte now and then never trips the per-read timeout, so cron runs would pile up.
FETCH_DEADLINE = 600.0
#: What :class:`BoundedReader` hands imaplib instead of a literal it did not keep.
_OVERSIZED = b"\x00nk-oversized-literal:"
_OVER_BUDGET = b"\x00nk-over-budget-literal:"
_LITERAL = re.compile(rb"\{(\d{1,20})\}\r?\n\Z")


class FetchDeadline(socket.timeout):
    """The server took longer than the fetch's overall deadline."""


class BoundedReader:
    """The reader imaplib takes lines and literals from, with an overall deadline and a cap.

    imaplib reads through ``sock.makefile()``: its timeout is per ``recv`` (a server sending a
    byte every few seconds never trips it), and it reads a literal whole, of whatever size the
    server announces.  Here every read stops at :attr:`deadline` (``time.monotonic()``) with
    :class:`FetchDeadline`; a literal over ``max_literal`` bytes, or one that would take the
    literals kept since :meth:`new_budget` over ``budget`` bytes, is read and thrown away in
    small chunks, and a short marker stands for it (:func:`fetch_messages` reads it): memory
    stays bounded whatever the server sends.
    """

    _CHUNK = 256 * 1024

    def __init__(self, sock: socket.socket, timeout: float, deadline: float, max_literal: int,
                 budget: int = MAX_BATCH_BYTES):
        self.sock = sock
        self.timeout = timeout
        self.deadline = deadline
        self.max_literal = max_literal
        self.budget = budget
        self._kept = 0
        self._buffer = bytearray()
        self._pending: tuple[int, bytes] | None = None  # (literal size announced, its marker)

    def new_budget(self) -> None:
        """A new FETCH: nothing of the byte budget is used."""
        self._kept = 0

    def _recv(self) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise FetchDeadline("the IMAP server took longer than the deadline for the whole fetch")
        self.sock.settimeout(min(self.timeout, left))
        try:
            chunk = self.sock.recv(self._CHUNK)
        except socket.timeout:
            if time.monotonic() >= self.deadline:
                raise FetchDeadline("the IMAP server took longer than the deadline for the whole fetch") from None
            raise
        if not chunk:
            raise ConnectionResetError("the IMAP server closed the connection")
        return chunk

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 or 0 < limit <= len(self._buffer):
                cut = end + 1 if end >= 0 else limit
                if 0 < limit < cut:
                    cut = limit
                line = bytes(self._buffer[:cut])
                del self._buffer[:cut]
                return self._announce(line)
            self._buffer += self._recv()

    def _announce(self, line: bytes) -> bytes:
        """A line announcing a literal not to be kept announces the marker instead (imaplib
        and imapclient check that a literal has the announced size)."""
        found = _LITERAL.search(line)
        if found is None:
            return line
        size = int(found.group(1))
        if size > self.max_literal:
            marker = _OVERSIZED
        elif self._kept and self._kept + size > self.budget:
            marker = _OVER_BUDGET
        else:
            return line
        self._pending = (size, marker + str(size).encode())
        return line[:found.start()] + b"{%d}\r\n" % len(self._pending[1])

    def read(self, size: int) -> bytes:
        if self._pending is not None:
            (announced, marker), self._pending = self._pending, None
            self._discard(announced)
            return marker
        while len(self._buffer) < size:
            self._buffer += self._recv()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._kept += size
        return data

    def _discard(self, size: int) -> None:
        left = size
        while left > 0:
            if not self._buffer:
                self._buffer += self._recv()
            take = min(left, len(self._buffer))
            del self._buffer[:take]
            left -= take

    def close(self) -> None:
        self._buffer.clear()


def bound_reads(imap: imapclient.IMAPClient, *, deadline: float, max_message: int = MAX_MESSAGE_BYTES,
                timeout: float = DEFAULT_TIMEOUT) -> BoundedReader:
    """Read the connection's replies through a :class:`BoundedReader`: ``deadline`` is a
    ``time.monotonic()`` value for the whole conversation, ``max_message`` the largest literal
    kept (one byte more is fetched, to tell a message at the cap from one above it)."""
    raw = imap._imap
    reader = BoundedReader(raw.sock, timeout, deadline, max_message + 1, MAX_BATCH_BYTES)
    raw.file = reader
    return reader


def reader_of(imap: imapclient.IMAPClient) -> BoundedReader | None:
    """The :class:`BoundedReader` the connection reads through, if :func:`bound_reads` set one."""
    file = getattr(imap._imap, "file", None)
    return file if isinstance(file, BoundedReader) else None


@dataclass(frozen=True)
class Skipped:
    """A message a fetch did not read: its UID, its size as far as known, and why."""

    uid: int
    size: int | None
    why: str

    def to_dict(self) -> dict[str, object]:
        """As in ``bounces fetch --json``'s ``skipped`` list.

        >>> Skipped(7, 900_000_000, "too large").to_dict()
        {'uid': 7, 'size': 900000000, 'why': 'too large'}
        """
        return {"uid": self.uid, "size": self.size, "why": self.why}


def imap_where(settings: BounceSettings) -> str:
    """The server as error messages name it: ``IMAP server host:port``."""
    return where("IMAP", settings)


def connect_imap(settings: BounceSettings, *, timeout: float = DEFAULT_TIMEOUT,
                 factory: ImapFactory | None = None, deadline: float | None = None,
                 max_message: int = MAX_MESSAGE_BYTES) -> imapclient.IMAPClient:
    """Connect and bring TLS up as the settings say, without logging in.

    With ``deadline`` (a ``time.monotonic()`` value) every reply from then on, the login's
    included, is read through a :class:`BoundedReader` (:func:`bound_reads`).
    """
    make = factory or imapclient.IMAPClient
    context = tls_context(settings.ca_file)
    try:
        imap = make(settings.host, port=settings.port, ssl=settings.tls == "ssl",
                    ssl_context=context, timeout=timeout)
        if settings.tls == "starttls":
            imap.starttls(context)
        if deadline is not None:
            bound_reads(imap, deadline=deadline, max_message=max_message, timeout=timeout)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise tls_failure(imap_where(settings), exc) from None
    except (OSError, IMAPClientError) as exc:
        raise ConnectionFailed(f"cannot connect to {imap_where(settings)}: {reason(exc)}") from None
    return imap


def open_imap(settings: BounceSettings, *, password: str | None = None,
              timeout: float = DEFAULT_TIMEOUT, factory: ImapFactory | None = None,
              deadline: float | None = None, max_message: int = MAX_MESSAGE_BYTES) -> imapclient.IMAPClient:
    """Connect, bring TLS up and log in: a ready IMAPClient (usable as a context manager);
    ``deadline``, ``max_message``: see :func:`connect_imap`."""
    if settings.tls == "none" and not settings.allow_plain_auth:
        raise ValidationError("refusing to log in over an unencrypted connection (see --allow-plain-auth)")
    secret = password if password is not None else resolve_password(settings.password_ref)
    imap = connect_imap(settings, timeout=timeout, factory=factory, deadline=deadline, max_message=max_message)
    try:
        imap.login(settings.user, secret)
    except LoginError as exc:
        close_imap(imap)
        raise AuthenticationFailed(
            f"{imap_where(settings)} refused the user name or password for {settings.user!r} ({reason(exc)})"
        ) from None
    except FetchDeadline:
        close_imap(imap)
        raise ConnectionFailed(f"{imap_where(settings)}: the server took longer than the deadline to log "
                               "in; nothing was read: run it again later") from None
    except (OSError, IMAPClientError) as exc:
        close_imap(imap)
        raise ConnectionFailed(f"{imap_where(settings)}: {reason(exc)}") from None
    return imap


def close_imap(imap: imapclient.IMAPClient) -> None:
    """Log out; when the connection is already gone, just drop it."""
    try:
        imap.logout()
    except (OSError, IMAPClientError):
        try:
            imap.shutdown()
        except OSError:
            pass


def list_folders(imap: imapclient.IMAPClient) -> list[str]:
    """The folder names the server lists, INBOX first, then alphabetical."""
    try:
        names = [name for _flags, _delim, name in imap.list_folders()]
    except (OSError, IMAPClientError) as exc:
        raise MailboxError(f"the IMAP server did not list its folders: {reason(exc)}") from None
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return sorted(names, key=lambda n: (n.upper() != "INBOX", n.lower()))


def fetch_folder_names(settings: BounceSettings, *, password: str | None = None,
                       factory: ImapFactory | None = None) -> list[str]:
    """Log in and list the folders (what the "Folder to monitor" picker shows)."""
    imap = open_imap(settings, password=password, factory=factory)
    try:
        return list_folders(imap)
    finally:
        close_imap(imap)


def check_imap(settings: BounceSettings, *, password: str | None = None,
               factory: ImapFactory | None = None) -> list[tuple[bool, str]]:
    """Try the mailbox step by step; a list of (ok, sentence) for ``settings test``."""
    try:
        imap = connect_imap(settings, factory=factory)
    except ConnectionFailed as exc:
        return [(False, str(exc))]
    name = imap_where(settings)
    results = [(True, connected(name, settings.tls))]
    try:
        if settings.tls == "none" and not settings.allow_plain_auth:
            raise ValidationError("refusing to log in over an unencrypted connection (see --allow-plain-auth)")
        secret = password if password is not None else resolve_password(settings.password_ref)
        try:
            imap.login(settings.user, secret)
        except LoginError as exc:
            raise AuthenticationFailed(
                f"{name} refused the user name or password for {settings.user!r} ({reason(exc)})"
            ) from None
        results.append((True, f"{name}: logged in as {settings.user}"))
        folders = list_folders(imap)
        if settings.folder in folders:
            results.append((True, f"{name}: folder {settings.folder!r} found"))
        else:
            results.append((False, f"{name}: folder {settings.folder!r} not found; "
                                   f"the server lists: {', '.join(folders)}"))
    except Exception as exc:  # reported, not raised: the point is to say what works
        results.append((False, str(exc)))
    finally:
        close_imap(imap)
    return results


# --- reading a folder by UID (what the ingestion pipeline calls; IMAP_ERRORS pass through) ---


def select_folder(imap: imapclient.IMAPClient, settings: BounceSettings, *,
                  readonly: bool) -> tuple[dict[bytes, Any], int]:
    """Select the settings' folder: (the SELECT response, its UIDVALIDITY).

    MailboxError, naming the folders the server has, when the folder does not exist.
    """
    if not imap.folder_exists(settings.folder):
        raise MailboxError(
            f"{imap_where(settings)}: folder {settings.folder!r} not found; the server lists: "
            + ", ".join(list_folders(imap))
        )
    info = imap.select_folder(settings.folder, readonly=readonly)
    return info, int(info[b"UIDVALIDITY"])


def new_uids(imap: imapclient.IMAPClient, info: dict[bytes, Any], last_uid: int) -> list[int]:
    """The UIDs above ``last_uid`` in the selected folder, ascending."""
    uidnext = info.get(b"UIDNEXT")
    if not info.get(b"EXISTS") or (uidnext is not None and int(uidnext) <= last_uid + 1):
        return []  # nothing new: a re-run costs one SELECT
    # "n:*" always matches the highest UID, even when it is below n: filter.
    return sorted(uid for uid in imap.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid)


def large_sizes(imap: imapclient.IMAPClient, last_uid: int) -> dict[int, int]:
    """{uid: size} of the new messages over LARGE_MESSAGE bytes (one SEARCH, then their sizes)."""
    large = [uid for uid in imap.search(["UID", f"{last_uid + 1}:*", "LARGER", str(LARGE_MESSAGE)])
             if uid > last_uid]
    sizes: dict[int, int] = {}
    for start in range(0, len(large), 1000):
        found = imap.fetch(large[start:start + 1000], ["RFC822.SIZE"])
        sizes.update((uid, int(item.get(b"RFC822.SIZE", 0))) for uid, item in found.items())
    return sizes


def uid_batches(uids: list[int], large: dict[int, int], batch_size: int) -> Iterator[list[int]]:
    """Consecutive UIDs in batches of at most ``batch_size`` messages and about MAX_BATCH_BYTES.

    Bounces may quote big originals: a message not in ``large`` counts as LARGE_MESSAGE bytes
    (an upper bound), a large one as its size, so one FETCH never holds gigabytes.  Batches
    stay in UID order because last_uid advances batch by batch.

    Example::

        >>> list(uid_batches([1, 2, 3, 4, 5], {}, 2))
        [[1, 2], [3, 4], [5]]
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


def fetch_messages(imap: imapclient.IMAPClient, uids: list[int], max_bytes: int | None = None,
                   reader: BoundedReader | None = None) -> tuple[list[tuple[int, bytes]], list[Skipped], list[int]]:
    """Fetch ``uids``: ((uid, raw bytes) of those that still exist, in the order given; the
    messages skipped as over ``max_bytes``; the UIDs left for another FETCH because this one
    reached the byte budget of ``reader``).

    ``BODY.PEEK[]`` keeps the \\Seen flags as they were; with ``max_bytes`` only the first
    ``max_bytes + 1`` bytes are asked for (``BODY.PEEK[]<0.N>``), so an honest server never
    sends more, and a larger message (by that count, or by the literal a lying server sends
    anyway, which :class:`BoundedReader` never keeps) is skipped.
    """
    if reader is not None:
        reader.new_budget()
    if max_bytes is None:
        part, key = "BODY.PEEK[]", b"BODY[]"
    else:
        part, key = f"BODY.PEEK[]<0.{max_bytes + 1}>", b"BODY[]<0>"
    data = imap.fetch(uids, [part, "RFC822.SIZE"])
    found: list[tuple[int, bytes]] = []
    skipped: list[Skipped] = []
    later: list[int] = []
    for uid in uids:
        if uid not in data:
            continue
        item = data[uid]
        raw = item.get(key, item.get(b"BODY[]"))
        if not isinstance(raw, (bytes, bytearray)):
            raise MailboxError(f"the IMAP server sent no body for UID {uid}")
        announced = item.get(b"RFC822.SIZE")
        if raw.startswith(_OVER_BUDGET):
            later.append(uid)
        elif raw.startswith(_OVERSIZED) or (max_bytes is not None and len(raw) > max_bytes):
            size = int(raw[len(_OVERSIZED):]) if raw.startswith(_OVERSIZED) else None
            sizes = [n for n in (size, int(announced) if announced is not None else None) if n is not None]
            skipped.append(Skipped(uid, max(sizes) if sizes else None,
                                   f"larger than the {max_bytes} bytes a message may have"))
        else:
            found.append((uid, bytes(raw)))
    return found, skipped, later


def prepare_processed_folder(imap: imapclient.IMAPClient, target: str, last_uid: int) -> int:
    """Create ``target`` if needed; move what a cut-off run recorded (UIDs up to ``last_uid``)
    but did not move. Returns how many were moved."""
    if not imap.folder_exists(target):
        imap.create_folder(target)
    if last_uid and imap.has_capability("MOVE"):
        left = [uid for uid in imap.search(["UID", f"1:{last_uid}"]) if uid <= last_uid]
        if left:
            imap.move(left, target)
            return len(left)
    return 0


def move_messages(imap: imapclient.IMAPClient, uids: list[int], target: str) -> None:
    """MOVE ``uids`` to ``target`` when the server can; else COPY only (nothing is ever expunged)."""
    if imap.has_capability("MOVE"):
        imap.move(uids, target)
    else:
        imap.copy(uids, target)
