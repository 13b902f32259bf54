"""The demo's world: its data files, the reports its receiving servers write (DSN, ARF,
unsubscribe replies), the in-process SMTP server, and the demo settings.

The layer below both :mod:`newsletter_kit.demo` (the whole flow) and
:mod:`newsletter_kit.demo_history` (twelve weeks of it), so that neither imports the other's
caller; :mod:`newsletter_kit.demo` re-exports every name here.

>>> failure_for("reject.ann@example.org")[0]
'rcpt'
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import re
import socket
import tempfile
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigError
from .files import atomic_write
from .settings import (
    hold_password_for_session,
    load_bounce_settings,
    load_smtp_settings,
    update_bounce_settings,
    update_smtp_settings,
)
from .store import Store, now_iso

HOST = "127.0.0.1"
DEMO_SECTION = "demo"
DEMO_FROM = "news@example.org"
DEMO_BOUNCE_ADDRESS = "bounces@example.org"
DEMO_DAILY_LIMIT = 500
DEMO_THRESHOLD = 3  # the product's default; the history shows what 1 or 2 would do
DEMO_LIST = "demo"
DEMO_CAMPAIGN = "spring-sale"
DEMO_SUBJECT = "Spring sale: {{ first_name }}, 20% off until Sunday"
REPORTING_MTA = "demo-mta.example.net"
DEFAULT_DEMO_DB = Path("data") / "demo.db"

#: What the demo's receiving servers do, by the recipient's local part (see the module doc).
REJECT_PREFIX, UNKNOWN_PREFIX, FULL_PREFIX = "reject.", "unknown.", "full."


# --- the demo data (shipped inside the package) --------------------------------------------


def demo_data_path(name: str) -> Path:
    """The path of a file shipped in ``newsletter_kit/demo_data`` (contacts, template...).

    Example::

        >>> demo_data_path("sample_contacts.csv").name
        'sample_contacts.csv'
    """
    return Path(str(resources.files("newsletter_kit") / "demo_data" / name))


def sample_contacts_path() -> Path:
    """The demo contacts: 50 rows with first_name, last_name, city, language, signed_up."""
    return demo_data_path("sample_contacts.csv")


def sample_unsubscribes_path() -> Path:
    """Three opt-outs: one from everything, one from the demo campaign, one from another."""
    return demo_data_path("sample_unsubscribes.csv")


def sample_template_path() -> Path:
    """The demo campaign's HTML template (Jinja2, ``{{ first_name }}``...)."""
    return demo_data_path("sample_template.html")


# --- DSN bounces ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """How a demo recipient fails: the status, and the remote server's reply."""

    status: str
    reply: str
    action: str = "failed"


def failure_for(address: str) -> tuple[str, Failure] | None:
    """``("rcpt" | "dsn", Failure)`` for a demo fault address, None for a deliverable one.

    Example::

        >>> failure_for("full.ann@example.org")[1].status
        '5.2.2'
    """
    local = address.partition("@")[0].lower()
    if local.startswith(REJECT_PREFIX):
        return "rcpt", Failure("5.1.1", f"550 5.1.1 <{address}>: Recipient address rejected: "
                                        "User unknown in virtual mailbox table")
    if local.startswith(UNKNOWN_PREFIX):
        return "dsn", Failure("5.1.1", f"550 5.1.1 <{address}>: Recipient address rejected: "
                                       "User unknown in local recipient table")
    if local.startswith(FULL_PREFIX):
        return "dsn", Failure("5.2.2", f"552 5.2.2 <{address}> Quota exceeded (mailbox for user "
                                       "is full)")
    return None


def make_dsn(original: bytes, sender: str, recipient: str, failure: Failure, *,
             remote_mta: str | None = None, arrival: str | None = None,
             date: dt.datetime | None = None) -> bytes:
    """A Postfix-style RFC 3464 bounce for ``recipient``, quoting ``original`` whole.

    ``date`` (default: now) is the report's Date, which the fetch records as the bounce's
    time; ``failure.action`` ``"delayed"`` makes a warning ("still being retried") instead.

    Example::

        >>> raw = make_dsn(b"Message-ID: <1@example.org>\\r\\n\\r\\nhi\\r\\n", "b@example.org",
        ...                "unknown.x@example.net", failure_for("unknown.x@example.net")[1])
        >>> b"Status: 5.1.1" in raw and b"<1@example.org>" in raw
        True
    """
    domain = recipient.rpartition("@")[2]
    mx = remote_mta or f"mx.{domain}"
    boundary = f"{uuid.uuid4().hex[:12]}.{REPORTING_MTA}"
    queue_id = uuid.uuid4().hex[:10].upper()
    arrival = arrival or email.utils.formatdate(localtime=False)
    stamp = email.utils.format_datetime(date) if date else email.utils.formatdate(localtime=False)
    delayed = failure.action == "delayed"
    lines = [
        "Return-Path: <>",
        f"Date: {stamp}",
        f"From: MAILER-DAEMON@{REPORTING_MTA} (Mail Delivery System)",
        "Subject: " + ("Delayed Mail (still being retried)" if delayed else "Undelivered Mail Returned to Sender"),
        f"To: {sender}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"',
        "Content-Transfer-Encoding: 7bit",
        f"Message-Id: <{uuid.uuid4().hex}@{REPORTING_MTA}>",
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"This is the mail system at host {REPORTING_MTA}.",
        "",
        *(["THIS IS A WARNING ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE.",
           "Your message could not be delivered for more than 4 hour(s)."] if delayed else
          ["I'm sorry to have to inform you that your message could not",
           "be delivered to one or more recipients. It's attached below."]),
        "",
        "                   The mail system",
        "",
        f"<{recipient}>: host {mx}[192.0.2.25] said: {failure.reply} (in reply to RCPT TO command)",
        "",
        f"--{boundary}",
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {REPORTING_MTA}",
        f"X-Postfix-Queue-ID: {queue_id}",
        f"X-Postfix-Sender: rfc822; {sender}",
        f"Arrival-Date: {arrival}",
        "",
        f"Final-Recipient: rfc822; {recipient}",
        f"Original-Recipient: rfc822;{recipient}",
        f"Action: {failure.action}",
        f"Status: {failure.status}",
        f"Remote-MTA: dns; {mx}",
        f"Diagnostic-Code: smtp; {failure.reply}",
        "",
        f"--{boundary}",
        "Content-Description: Undelivered Message",
        "Content-Type: message/rfc822",
        "",
    ]
    head = "\r\n".join(lines).encode("ascii") + b"\r\n"
    body = original.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return head + body + f"\r\n--{boundary}--\r\n".encode("ascii")


def message_date(raw: bytes) -> dt.datetime:
    """The Date header of a message (aware), or now when it has none that parses."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("ascii", "replace")
    found = re.search(r"^Date:[ \t]*(.+(?:\r?\n[ \t].*)*)", head, re.M | re.I)
    try:
        moment = email.utils.parsedate_to_datetime(found[1].strip()) if found else None
    except (TypeError, ValueError):
        moment = None
    if moment is None:
        return dt.datetime.now(dt.timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _header(raw: bytes, name: str) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    found = re.search(rf"^{name}:[ \t]*(.*(?:\r?\n[ \t].*)*)", head, re.M | re.I)
    return re.sub(r"\r?\n[ \t]+", " ", found[1]).strip() if found else ""


def make_complaint(original: bytes, sender: str, recipient: str, date: dt.datetime) -> bytes:
    """An ARF (RFC 5965) abuse report: ``recipient`` marked ``original`` as spam.

    Example::

        >>> raw = make_complaint(b"Message-ID: <1@example.org>\\r\\n\\r\\nhi\\r\\n", "b@example.org",
        ...                      "ann@example.net", dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc))
        >>> b"Feedback-Type: abuse" in raw and b"<1@example.org>" in raw
        True
    """
    boundary = f"{uuid.uuid4().hex[:12]}.fbl"
    body = original.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = "\r\n".join([
        "Return-Path: <>",
        f"From: Feedback Loop <fbl@{REPORTING_MTA}>",
        f"To: {sender}",
        f"Date: {email.utils.format_datetime(date)}",
        "Subject: Abuse report",
        f"Message-ID: <{uuid.uuid4().hex}@{REPORTING_MTA}>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=feedback-report;\r\n\tboundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is an email abuse report: a recipient marked the attached message as spam.",
        "",
        f"--{boundary}",
        "Content-Type: message/feedback-report",
        "",
        "Feedback-Type: abuse",
        "User-Agent: newsletter-kit-demo/1.0",
        "Version: 1",
        f"Original-Mail-From: <{sender}>",
        f"Original-Rcpt-To: <{recipient}>",
        f"Arrival-Date: {email.utils.format_datetime(date)}",
        "",
        f"--{boundary}",
        "Content-Type: message/rfc822",
        "Content-Disposition: inline",
        "",
    ]).encode("ascii") + b"\r\n"
    return head + body + f"\r\n--{boundary}--\r\n".encode("ascii")


def make_unsubscribe_reply(original: bytes, recipient: str, date: dt.datetime) -> bytes | None:
    """What a mail client sends when ``recipient`` clicks the ``List-Unsubscribe`` mailto link.

    None when the message has no mailto link. Example::

        >>> original = (b"List-Unsubscribe: <mailto:b@example.org?subject=unsubscribe%20T0KEN>\\r\\n"
        ...             b"\\r\\nhi\\r\\n")
        >>> b"Subject: unsubscribe T0KEN" in make_unsubscribe_reply(
        ...     original, "ann@example.net", dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc))
        True
    """
    link = re.search(r"<mailto:([^?>]+)\?subject=([^>]+)>", _header(original, "List-Unsubscribe"))
    if link is None:
        return None
    subject = urllib.parse.unquote(link[2])
    return "\r\n".join([
        f"From: <{recipient}>",
        f"To: <{link[1]}>",
        f"Date: {email.utils.format_datetime(date)}",
        f"Subject: {subject}",
        f"Message-ID: <{uuid.uuid4().hex}@{recipient.rpartition('@')[2]}>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "Please remove me from this list.",
        "",
    ]).encode("ascii")


def write_bounce(folder: Path, raw: bytes) -> Path:
    """Write one bounce as ``<folder>/<unique>.eml``, atomically (a reader never sees half)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{now_iso().replace(':', '')}-{uuid.uuid4().hex[:12]}.eml"
    with atomic_write(folder / name) as out:  # never through a link planted in the folder
        out.write(raw)
    return folder / name


# --- the demo SMTP server ------------------------------------------------------------------------


class World(Protocol):
    """What happens to a message after the demo server accepted it (the demo's history).

    ``reports`` returns the messages the bounce mailbox gets about it (DSNs, complaints,
    replies), already dated; an empty list means it was delivered and nobody answered.
    """

    def reports(self, original: bytes, sender: str, recipient: str, sent: dt.datetime) -> list[bytes]: ...

    #: Where its reports go (None: the server's bounce folder).
    bounce_dir: Path | None


@dataclass
class DemoHandler:
    """aiosmtpd handler: refuses ``reject.*`` at RCPT, bounces ``unknown.*``/``full.*`` later.

    With a ``world`` (the demo's history), what becomes of each accepted message is the
    world's: it sees the message's Date, so the same address can bounce one week and not the next.
    """

    bounce_dir: Path
    accepted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    bounced: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    world: World | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        fault = failure_for(address)
        if fault and fault[0] == "rcpt":
            with self.lock:
                self.rejected.append(address)
            return fault[1].reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        original = envelope.original_content or envelope.content or b""
        sender = envelope.mail_from or ""
        world = self.world
        for rcpt in envelope.rcpt_tos:
            if world is not None and sender:
                reports = world.reports(original, sender, rcpt, message_date(original))
                for raw in reports:
                    write_bounce(getattr(world, "bounce_dir", None) or self.bounce_dir, raw)
                with self.lock:
                    (self.bounced if reports else self.accepted).append(rcpt)
                continue
            fault = failure_for(rcpt)
            if fault and fault[0] == "dsn" and sender:
                # Written before the 250 so that a fetch right after the send finds it.
                write_bounce(self.bounce_dir, make_dsn(original, sender, rcpt, fault[1]))
                with self.lock:
                    self.bounced.append(rcpt)
            else:
                with self.lock:
                    self.accepted.append(rcpt)
        return f"250 2.0.0 Ok: queued as {uuid.uuid4().hex[:10].upper()}"


def _free_port() -> int:
    # aiosmtpd 1.4.6 cannot listen on port 0, so pick a port the kernel says is free now.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class DemoServer:
    """The demo SMTP server: aiosmtpd in a thread of this process, on 127.0.0.1.

    Example::

        server = DemoServer(Path("/tmp/demo-bounces")).start()
        ...  # send to 127.0.0.1:server.port, no TLS, no AUTH
        server.stop()
    """

    def __init__(self, bounce_dir: Path):
        self.bounce_dir = Path(bounce_dir)
        self.handler = DemoHandler(self.bounce_dir)
        self.host = HOST
        self.port = 0
        self._controller: Any = None

    def start(self) -> DemoServer:
        """Listen on a free port; returns self."""
        from aiosmtpd.controller import Controller

        self.bounce_dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self._controller = Controller(self.handler, hostname=HOST, port=self.port,
                                      server_hostname="demo-smtp.example.net", ready_timeout=10)
        self._controller.start()
        return self

    @property
    def running(self) -> bool:
        return self._controller is not None

    def stop(self) -> None:
        """Stop listening (the bounce files stay)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> DemoServer:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DemoServer({self.host}:{self.port}, bounces in {self.bounce_dir})"


# One server per bounce folder per process: re-running a notebook cell reuses it.
_SERVERS: dict[str, DemoServer] = {}
_SERVERS_LOCK = threading.Lock()


def demo_server(bounce_dir: Path) -> DemoServer:
    """The running demo server for ``bounce_dir``, started on first use."""
    key = str(Path(bounce_dir).resolve())
    with _SERVERS_LOCK:
        server = _SERVERS.get(key)
        if server is None or not server.running:
            server = _SERVERS[key] = DemoServer(Path(key)).start()
        return server


def stop_demo_servers() -> None:
    """Stop every demo server this process started."""
    with _SERVERS_LOCK:
        for server in _SERVERS.values():
            server.stop()
        _SERVERS.clear()


# --- demo settings ------------------------------------------------------------------------------


@dataclass
class DemoEnvironment:
    """What :func:`ensure_demo_settings` set up: the server and where its bounces land.

    ``server`` is None when the demo server the store points at runs in another process (the
    kernel of another notebook): this one sends to it rather than start its own.
    """

    server: DemoServer | None
    bounce_dir: Path
    port: int = 0

    @property
    def smtp_port(self) -> int:
        """The port the store's SMTP settings name."""
        return self.port or (self.server.port if self.server else 0)


def demo_bounce_dir(store: Store) -> Path:
    """Where the demo writes its bounces: ``demo-bounces/`` next to the store file."""
    if store.path == ":memory:":
        return Path(tempfile.gettempdir()) / f"newsletter-kit-demo-bounces-{os.getpid()}"
    return Path(store.path).resolve().parent / "demo-bounces"


def _demo_marker(store: Store) -> dict[str, Any] | None:
    row = store.conn.execute("SELECT data FROM settings WHERE section = ?", (DEMO_SECTION,)).fetchone()
    return json.loads(row[0]) if row else None


def is_demo_store(store: Store) -> bool:
    """True when the store's SMTP settings are the demo's (set by :func:`ensure_demo_settings`).

    Once the user saves a real server, the settings no longer match and this is False.
    """
    marker = _demo_marker(store)
    smtp = load_smtp_settings(store)
    if marker is None or smtp is None:
        return False
    return smtp.host == HOST and smtp.port == marker.get("smtp_port")


def has_real_settings(store: Store) -> bool:
    """True when the store has SMTP settings that the demo did not make."""
    return load_smtp_settings(store) is not None and not is_demo_store(store)


def demo_bounce_source(store: Store) -> Path | None:
    """The demo's bounce folder when the store is set up for the demo, else None.

    A notebook fetches bounces from it instead of the IMAP mailbox::

        source = nk.demo.demo_bounce_source(store)
        nk.fetch_bounces(store, source_path=source) if source else nk.fetch_bounces(store)
    """
    marker = _demo_marker(store)
    if marker is None or not is_demo_store(store):
        return None
    return Path(marker["bounce_dir"])


def describe(store: Store) -> str:
    """One sentence: is the store in demo mode, and where do campaigns and bounces go?

    Example::

        >>> describe(open_store(":memory:"))      # doctest: +SKIP
        'No SMTP settings yet: ...'
    """
    smtp = load_smtp_settings(store)
    if smtp is None:
        return "No SMTP settings yet: fill in the settings panel, or call ensure_demo_settings(store)."
    source = demo_bounce_source(store)
    if source is None:
        return (f"Your own settings: campaigns go to {smtp.host}:{smtp.port}; the demo servers "
                "are not used.")
    running = any(s.running and s.port == smtp.port for s in _SERVERS.values())
    where = "running in this kernel" if running else "NOT running: call ensure_demo_settings(store)"
    return (f"Demo mode: campaigns go to the demo SMTP server on {smtp.host}:{smtp.port} ({where}); "
            f"bounce reports are written to {source}.")


def ensure_demo_settings(store: Store, *, own_server: bool = False) -> DemoEnvironment | None:
    """Point the store at a running demo SMTP server, unless real settings exist.

    Returns None (and changes nothing) when the store has SMTP settings the demo did not
    make; else the :class:`DemoEnvironment`. The server the store names is kept while it
    answers, whichever process runs it (each notebook's kernel calls this: they share one
    server, and the store keeps its port); only when it is gone does this process start one
    and the settings follow it. ``own_server``: always this process's server (the history
    needs to play the receiving side itself).
    """
    if has_real_settings(store):
        return None
    bounce_dir = demo_bounce_dir(store)
    marker = _demo_marker(store) or {}
    stored = int(marker.get("smtp_port") or 0)
    local = _SERVERS.get(str(bounce_dir.resolve()))
    server: DemoServer | None
    if own_server or not stored or (local is not None and local.running and local.port == stored):
        server = demo_server(bounce_dir)
    elif _demo_server_answers(stored):
        server = None  # another kernel's server: send there
    else:
        server = demo_server(bounce_dir)
    port = server.port if server is not None else stored
    if server is None and load_smtp_settings(store) is not None and is_demo_store(store):
        return DemoEnvironment(None, bounce_dir, port)  # nothing to change
    bounce = load_bounce_settings(store)
    with store.transaction():
        update_smtp_settings(
            store, host=HOST, port=port, tls="none", auth=False, user="",
            password_ref="", daily_limit=DEMO_DAILY_LIMIT, from_addr=DEMO_FROM,
            exclusion="campaign")
        if bounce is None or bounce.user == DEMO_BOUNCE_ADDRESS:
            # No IMAP server in the demo: the bounce folder stands in for the mailbox. The
            # settings still need a password reference; this one lives only in this process.
            ref = hold_password_for_session("demo-bounce", "demo")
            update_bounce_settings(
                store, host=HOST, port=993, tls="ssl", user=DEMO_BOUNCE_ADDRESS,
                password_ref=ref, threshold=DEMO_THRESHOLD, folder="INBOX")
        store.db.table("settings").upsert(
            {"section": DEMO_SECTION, "updated_at": now_iso(),
             "data": json.dumps({"smtp_port": port, "bounce_dir": str(bounce_dir)})},
            pk="section")
    return DemoEnvironment(server, bounce_dir, port)


def _demo_server_answers(port: int) -> bool:
    """Whether a demo server (its greeting names ``demo-smtp.example.net``) listens on ``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.settimeout(1.0)
            greeting = sock.recv(512)
            sock.sendall(b"QUIT\r\n")
    except OSError:
        return False
    return greeting.startswith(b"220 demo-smtp.example.net")
