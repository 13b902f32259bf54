"""Real mail servers on 127.0.0.1 for tests and benchmarks (no pytest in here).

Everything listens on 127.0.0.1 only, on free ports, keeps its files under a temp
dir, touches nothing in /etc and is stopped (pid waited for) on ``stop()`` /
leaving the ``with`` block. Tests get these through the fixtures in
``tests/conftest.py``; benchmarks import this module (``from tests.mailservers import ...``).
Give Dovecot/Postfix a directory from ``tempfile.mkdtemp()``, not pytest's ``tmp_path``:
each new pytest session resets /tmp/pytest-of-<user> to 0700, locking the servers'
unprivileged processes out of a session that is still running.

free_port()
    ``port = free_port()`` -- a port nobody listens on right now.

TestCA  (trustme, EC keys)
    ``ca = TestCA(tmpdir)``; ``ca.ca_file`` (PEM to trust), ``ca.cert_file`` /
    ``ca.key_file`` (server cert for ``localhost`` and ``127.0.0.1``),
    ``ca.server_context()`` / ``ca.client_context()`` (ssl.SSLContext).
    ``ca.untrusted`` is a second, unrelated TestCA: a server using
    ``ca.untrusted`` fails verification for a client trusting ``ca.ca_file``.

SMTPServer  (aiosmtpd in a thread of this process)
    ``with SMTPServer(tls="starttls", auth={"u": "pw"}, ca=ca) as srv:``
    ``    smtp = smtplib.SMTP(srv.host, srv.port); smtp.starttls(context=ca.client_context())``
    ``    smtp.login("u", "pw"); smtp.sendmail(...)``; ``srv.messages`` -> [Envelope]
    tls: "starttls" | "ssl" (client: ``smtplib.SMTP_SSL``) | "none".
    auth: None (no AUTH) or {user: password}; AUTH PLAIN + LOGIN, wrong password -> 535,
    MAIL before AUTH -> 530. Over "starttls" AUTH is offered only after STARTTLS.
    handler: default ``FaultHandler()`` (records every accepted message, and fails on
    cue by the recipient's local part, see below). ``delay=0.05`` sleeps per message.
    ``Envelope`` = (mail_from, rcpt_tos, content: bytes).

    FaultHandler cues (recipient local part STARTS WITH the cue, e.g. ``fail550.x@example.org``):
        fail550  -> RCPT "550 5.1.1 ... User unknown"
        soft451  -> RCPT "451 4.3.0 ... try again later"
        busy450  -> RCPT "450 4.2.1 ... Mailbox busy"
        full452  -> RCPT "452 4.2.2 ... Mailbox full"
        rcpt421  -> RCPT "421 4.3.2 ..." and the server hangs up
        data421  -> DATA "421 4.3.2 ..." and the server hangs up
        data554  -> DATA "554 5.7.1 ... Message rejected"
        relay554 -> RCPT "554 5.7.1 <addr>: Relay access denied"        (about us)
        auth530  -> RCPT "530 5.7.0 Authentication required"            (about us)
        sendverify -> RCPT "550 Sender verify failed" (Exim)            (about us)
        spamhaus -> RCPT "550 5.1.1 ... blocked using zen.spamhaus.org" (about us)
        dataspamhaus -> the same at DATA
        drop     -> at DATA the server hangs up without replying
    Anything else is accepted and recorded in ``srv.messages``.

start_sink_process(port=None, delay_ms=0) -> SinkProcess
    An aiosmtpd sink in a SEPARATE process (for benchmarks; no TLS, no AUTH) that
    counts and discards messages: ``sink = start_sink_process(); ... n = sink.stop()``
    (stop returns the number of messages received). Same as
    ``python -m tests.mailservers sink --port P [--delay-ms N]`` (prints "READY <port>").

Dovecot  (IMAP + LMTP; fixture ``dovecot``, users via ``mailbox_user``)
    ``dv = Dovecot(tmpdir, ca); dv.add_user("bob@example.org", "pw"); dv.start()``
    Ports: ``dv.imap_port`` (plain, use STARTTLS), ``dv.imaps_port`` (implicit TLS),
    ``dv.lmtp_port`` (LMTP over TCP, for Postfix). ``dv.host``, ``dv.ca_file``,
    ``dv.log_path``. Users log in with the full address; ``add_user`` also works
    while Dovecot runs (the user can log in at once).
    ``add_user(name, pw, quota=True)``: an over-quota mailbox (LMTP 552 5.2.2 at
    DATA: a "mailbox full" hard DSN from Postfix); with ``quota_tempfail=True`` it is
    452 4.2.2 (Postfix defers, sends a delay warning, then bounces).
    A wrong password is refused quickly (no auth failure delay / IP penalty).
    ``dv.create_folder(user, "Bounces")`` (subscribed; "A/B" nests).
    ``dv.append(user, folder, raw)`` / ``dv.append_many(user, folder, [raw, ...])``
    write straight into the Maildir (10,000 small messages in under 2 s; Dovecot
    assigns UIDs at the next SELECT).
    ``dv.imap_client(user[, password][, ssl=True])``: a logged-in
    ``imapclient.IMAPClient`` ("localhost", verified with the CA; STARTTLS on
    ``imap_port`` by default, implicit TLS with ``ssl=True``). Log out when done.
    Without IMAP: ``dv.message_count(user, folder="INBOX")``,
    ``dv.read_messages(user, folder)`` -> [raw bytes] oldest first,
    ``dv.wait_for_messages(user, n, folder="INBOX", timeout=15)`` (polls; raises
    TimeoutError with the log tail).
    Note: Dovecot's SEARCH ``BODY`` does not match text inside an attached original;
    ``TEXT`` does.

Postfix  (an MTA that makes real DSN bounces; fixture ``postfix``, session scope)
    ``pf = Postfix(tmpdir, dv); pf.start()`` -- ``LOCAL_DOMAINS`` (example.org,
    example.net) are delivered by LMTP to ``dv`` (``pf.dovecot``); every other domain
    bounces (5.4.4). Nothing leaves the machine.
    ``pf.host``/``pf.port``: no AUTH, no TLS; accepts every recipient; failures come
    back as DSNs (multipart/report) to the envelope sender -- make the sender a
    Dovecot user, then ``pf.wait_for_messages(sender, 1)`` and
    ``pf.dovecot.read_messages(sender)`` (bounces arrive in well under a second).
    ``pf.reject_port``: rejects unknown users of LOCAL_DOMAINS at RCPT with a
    synchronous "550 5.1.1 ... User unknown in virtual mailbox table" (users added
    at runtime are known at once).
    ``pf.sender_reject_port``: refuses an envelope sender @shop.example (SENDER_REJECT_DOMAIN,
    check_sender_access) at RCPT, smtpd_delay_reject = yes: "553 5.1.8 <news@shop.example>:
    Sender address rejected: Domain not found" for every recipient.
    Fault domains (any local part; transport_maps):
        ``x@hard.example.net``    (FAULT_HARD_DOMAIN)    -> DSN 5.1.1, Diagnostic-Code X-Postfix
        ``x@soft.example.net``    (FAULT_SOFT_DOMAIN)    -> deferred 4.4.1: delay warning
                                  (Action: delayed) after ~2 s, bounce after ~8 s
        ``x@discard.example.net`` (FAULT_DISCARD_DOMAIN) -> accepted and silently dropped
    ``fast_queue=True`` (default): delay_warning_time 2s, maximal_queue_lifetime 8s,
    backoff 1s. ``pf.flush()`` retries deferred mail now; ``pf.queue()`` lists the
    queue (postqueue -j dicts); ``pf.log_path`` is the mail log.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import grp
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, NamedTuple

HOST = "127.0.0.1"

# aiosmtpd warns about its own legacy attribute on every AUTH, and about implicit TLS
# (it only counts STARTTLS as TLS). Neither is something a test can act on.
warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    Example: ``port = free_port()``
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, host: str = HOST) -> None:
    """Block until something accepts TCP connections on host:port.

    Example: ``wait_for_port(dovecot.imap_port)``
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
            time.sleep(0.02)


def wait_for_smtp_greeting(port: int, timeout: float = 15.0, host: str = HOST) -> None:
    """Block until an SMTP/LMTP server on host:port sends its 220 greeting."""
    deadline = time.monotonic() + timeout
    wait_for_port(port, timeout, host)
    while True:
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                if sock.recv(512).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no SMTP greeting on {host}:{port} after {timeout}s")
        time.sleep(0.05)


def wait_for_pid_exit(pid: int, timeout: float = 15.0) -> None:
    """Block until process ``pid`` is gone (reaped or not ours)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # Reap it if it is our child, otherwise it stays a zombie forever.
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise TimeoutError(f"process {pid} still running after {timeout}s")


# --------------------------------------------------------------------------- TLS


class TestCA:
    """A throw-away CA (trustme, EC keys) and a server certificate for localhost.

    Example::

        ca = TestCA(tmp_path)
        ctx = ca.client_context()          # trusts ca.ca_file
        server_ctx = ca.server_context()   # presents the localhost cert
        bad = ca.untrusted.server_context()  # a cert ctx does NOT trust
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, directory: str | Path, *, with_untrusted: bool = True) -> None:
        import trustme

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA(organization_name="newsletter_kit test CA")
        self.server_cert = self.ca.issue_cert("localhost", HOST)
        self.ca_file = str(self.directory / "ca.pem")
        self.cert_file = str(self.directory / "server-chain.pem")
        self.key_file = str(self.directory / "server-key.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        with open(self.cert_file, "wb") as out:
            for blob in self.server_cert.cert_chain_pems:
                out.write(blob.bytes())
        self.server_cert.private_key_pem.write_to_path(self.key_file)
        # Dovecot's config process and Postfix read these as other users.
        for path in (self.directory, self.ca_file, self.cert_file, self.key_file):
            os.chmod(path, 0o755 if os.path.isdir(path) else 0o644)
        self.untrusted: TestCA | None = (
            TestCA(self.directory / "untrusted", with_untrusted=False) if with_untrusted else None
        )

    def server_context(self) -> ssl.SSLContext:
        """An SSLContext for a server presenting the localhost certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """An SSLContext for a client that trusts this CA only (hostname checked)."""
        return ssl.create_default_context(cafile=self.ca_file)


# ---------------------------------------------------------------------- aiosmtpd


class Envelope(NamedTuple):
    """One message an SMTPServer accepted."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes


class RecordingHandler:
    """aiosmtpd handler storing every accepted message in ``.messages`` (thread-safe).

    ``delay`` (seconds) is slept before answering DATA, to mimic a slow server.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self._lock = threading.Lock()
        self._messages: list[Envelope] = []

    @property
    def messages(self) -> list[Envelope]:
        """A copy of the messages received so far."""
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        """Forget the messages received so far."""
        with self._lock:
            self._messages.clear()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        content = envelope.original_content or envelope.content
        with self._lock:
            self._messages.append(
                Envelope(envelope.mail_from, list(envelope.rcpt_tos), bytes(content))
            )
        return "250 2.0.0 OK queued"


# cue -> (stage, reply or None for "hang up without reply", hang up afterwards)
FAULT_CUES: dict[str, tuple[str, str | None, bool]] = {
    "fail550": ("RCPT", "550 5.1.1 <{addr}>: Recipient address rejected: User unknown", False),
    "soft451": ("RCPT", "451 4.3.0 <{addr}>: Temporary failure, try again later", False),
    "busy450": ("RCPT", "450 4.2.1 <{addr}>: Mailbox busy, try again later", False),
    "full452": ("RCPT", "452 4.2.2 <{addr}>: Mailbox full", False),
    "rcpt421": ("RCPT", "421 4.3.2 Service shutting down, closing connection", True),
    "data421": ("DATA", "421 4.3.2 Service shutting down, closing connection", True),
    "data554": ("DATA", "554 5.7.1 Message rejected as spam", False),
    # About us, not the recipient (issue 16, finding 3), whatever the code says:
    "relay554": ("RCPT", "554 5.7.1 <{addr}>: Relay access denied", False),
    "auth530": ("RCPT", "530 5.7.0 Authentication required", False),
    "sendverify": ("RCPT", "550 Sender verify failed", False),
    "spamhaus": ("RCPT", "550 5.1.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org", False),
    "dataspamhaus": ("DATA", "550 5.1.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org",
                     False),
    "drop": ("DATA", None, True),
}


def fault_cue(address: str) -> str | None:
    """The FAULT_CUES key an address's local part starts with, if any.

    Example: ``fault_cue("fail550.anna@example.org") == "fail550"``
    """
    local = address.rsplit("@", 1)[0].lower()
    for cue in FAULT_CUES:
        if local.startswith(cue):
            return cue
    return None


def _hang_up(server: Any) -> None:
    # aiosmtpd never closes by itself after a 421: close once the reply is flushed.
    server.loop.call_soon(server.transport.close)


class FaultHandler(RecordingHandler):
    """RecordingHandler that fails on cue by recipient local part (see FAULT_CUES)."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        cue = fault_cue(address)
        if cue and FAULT_CUES[cue][0] == "RCPT":
            _, reply, hang_up = FAULT_CUES[cue]
            if hang_up:
                _hang_up(server)
            return str(reply).format(addr=address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            cue = fault_cue(rcpt)
            if cue and FAULT_CUES[cue][0] == "DATA":
                _, reply, hang_up = FAULT_CUES[cue]
                if reply is None:
                    server.transport.abort()
                    # aiosmtpd pushes this into the aborted transport: nobody reads it.
                    return "421 connection dropped"
                if hang_up:
                    _hang_up(server)
                return reply
        return await super().handle_DATA(server, session, envelope)


class _Authenticator:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = dict(users)

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        return AuthResult(success=self.users.get(user) == password, handled=False)


class SMTPServer:
    """aiosmtpd on 127.0.0.1 in a background thread, with optional TLS and AUTH.

    Example::

        with SMTPServer(tls="ssl", auth={"news": "pw"}, ca=ca) as srv:
            with smtplib.SMTP_SSL(srv.host, srv.port, context=ca.client_context()) as c:
                c.login("news", "pw")
                c.sendmail("a@example.org", ["b@example.org"], b"Subject: x\\r\\n\\r\\nhi")
            assert srv.messages[0].rcpt_tos == ["b@example.org"]
    """

    def __init__(
        self,
        *,
        tls: str = "starttls",
        auth: dict[str, str] | None = None,
        ca: TestCA | None = None,
        handler: Any = None,
        delay: float = 0.0,
        port: int | None = None,
        auth_required: bool | None = None,
        hostname: str = "localhost",
    ) -> None:
        if tls not in ("starttls", "ssl", "none"):
            raise ValueError(f"tls must be starttls, ssl or none, not {tls!r}")
        if tls != "none" and ca is None:
            raise ValueError("tls needs ca= (a TestCA)")
        self.tls = tls
        self.auth = auth
        self.ca = ca
        self.handler = handler if handler is not None else FaultHandler(delay=delay)
        self.host = HOST
        self.port = port or free_port()
        self._auth_required = bool(auth) if auth_required is None else auth_required
        self._hostname = hostname
        self._controller: Any = None

    @property
    def messages(self) -> list[Envelope]:
        """Messages the handler recorded (empty for handlers that do not record)."""
        return list(getattr(self.handler, "messages", []))

    def start(self) -> "SMTPServer":
        """Start listening; returns self."""
        from aiosmtpd.controller import Controller

        kwargs: dict[str, Any] = {"server_hostname": self._hostname}
        if self.tls == "starttls":
            assert self.ca is not None
            kwargs["tls_context"] = self.ca.server_context()
        elif self.tls == "ssl":
            assert self.ca is not None
            kwargs["ssl_context"] = self.ca.server_context()
        if self.auth is not None:
            kwargs["authenticator"] = _Authenticator(self.auth)
            kwargs["auth_required"] = self._auth_required
            # aiosmtpd only counts STARTTLS as TLS: implicit TLS must lift the check.
            kwargs["auth_require_tls"] = self.tls == "starttls"
        self._controller = Controller(self.handler, hostname=HOST, port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> "SMTPServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------- sink in another process


class _CountingSink:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.count += 1
        return "250 2.0.0 OK discarded"


def run_sink(port: int, delay_ms: int = 0) -> None:
    """Serve a counting, discarding SMTP sink until SIGTERM/SIGINT; print the count.

    Prints ``READY <port>`` once listening and ``COUNT <n>`` on exit.
    """
    from aiosmtpd.smtp import SMTP

    handler = _CountingSink(delay_ms / 1000.0)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(handler, hostname="localhost", loop=loop), host=HOST, port=port
        )
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {port}", flush=True)
    loop.run_until_complete(stop.wait())
    server.close()
    loop.run_until_complete(server.wait_closed())
    print(f"COUNT {handler.count}", flush=True)


class SinkProcess:
    """Handle on a sink started by start_sink_process()."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.host = HOST
        self.port = port

    def stop(self) -> int:
        """Stop the sink and return how many messages it received."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=15)
        for line in out.splitlines():
            if line.startswith("COUNT "):
                return int(line.split()[1])
        raise RuntimeError(f"sink exited with {self.proc.returncode} and no count: {out!r}")

    def __enter__(self) -> "SinkProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


def start_sink_process(port: int | None = None, delay_ms: int = 0) -> SinkProcess:
    """Start a counting SMTP sink in a separate Python process.

    Example::

        with start_sink_process(delay_ms=5) as sink:
            smtplib.SMTP(sink.host, sink.port).sendmail(...)
            received = sink.stop()
    """
    port = port or free_port()
    here = Path(__file__).resolve()
    cmd = [sys.executable, str(here), "sink", "--port", str(port), "--delay-ms", str(delay_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"sink did not start: {line!r}")
    return SinkProcess(proc, port)


# ------------------------------------------------------------------------ Dovecot

DOVECOT_CONF = """\
# Private test instance written by tests/mailservers.py; nothing here is read from /etc.
protocols = imap lmtp
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
debug_log_path = {root}/dovecot.log
instance_name = nk-test-{port_imap}
ssl = yes
ssl_cert = <{cert_file}
ssl_key = <{key_file}
ssl_dh = </usr/share/dovecot/dh.pem
auth_mechanisms = plain login
auth_verbose = yes
# Tests try wrong passwords on purpose: no 2 s failure delay, and no per-IP penalty
# (the anvil socket disabled below), which would slow every later login from 127.0.0.1.
auth_failure_delay = 0
first_valid_uid = {mail_uid}
mail_location = maildir:~/Maildir
mail_plugins = $mail_plugins quota
lmtp_rcpt_check_quota = yes
# The Maildir is written directly by Dovecot.append_many: do not trust cached state.
maildir_very_dirty_syncs = no
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users_dir}/%Lu
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users_dir}/%Lu
  default_fields = uid=mail gid=mail home={root}/mail/%d/%n
}}
plugin {{
  quota = maildir:User quota
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port_imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port_imaps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port_lmtp}
  }}
}}
"""


@dataclass
class MailboxUser:
    """A Dovecot user (an address) with its password and quota flags."""

    name: str
    password: str
    quota: bool = False
    quota_tempfail: bool = False

    def passwd_line(self) -> str:
        extra = []
        if self.quota:
            # 1B, not 1: a bare number is KB. Any message is over one byte.
            extra.append("userdb_quota_rule=*:storage=1B")
            if self.quota_tempfail:
                extra.append("userdb_quota_full_tempfail=yes")
        return f"{self.name}:{{PLAIN}}{self.password}::::::{' '.join(extra)}\n"


class Dovecot:
    """A private Dovecot (IMAP STARTTLS + implicit TLS, LMTP over TCP) on 127.0.0.1.

    Example::

        with Dovecot(tmp_path / "dovecot", ca) as dv:
            dv.add_user("bounces@example.org", "pw")
            dv.create_folder("bounces@example.org", "Bounces")
            dv.append("bounces@example.org", "Bounces", raw_bytes)
            client = dv.imap_client("bounces@example.org")
            client.select_folder("Bounces")
    """

    def __init__(self, directory: str | Path, ca: TestCA) -> None:
        if shutil.which("dovecot") is None:
            raise FileNotFoundError("dovecot is not installed (Debian: dovecot-imapd dovecot-lmtpd)")
        self.root = Path(directory)
        self.ca = ca
        self.ca_file = ca.ca_file
        self.host = HOST
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.lmtp_port = free_port()
        self.config_file = self.root / "dovecot.conf"
        # One passwd-file per user: Dovecot re-reads a changed passwd-file at most once a
        # second, but opens a file it has not seen before at once, so users added while
        # it runs can log in immediately.
        self.users_dir = self.root / "users"
        # "address OK" lines, for Postfix's virtual_mailbox_maps (texthash).
        self.mailbox_map = self.root / "virtual_mailboxes"
        self.log_path = self.root / "dovecot.log"
        self.users: dict[str, MailboxUser] = {}
        self._mail = pwd.getpwnam("mail")
        self._lock = threading.Lock()
        self._counter = 0
        self._pid: int | None = None
        self._write_files()

    # -- users and folders

    def add_user(
        self, name: str, password: str, quota: bool = False, quota_tempfail: bool = False
    ) -> MailboxUser:
        """Add a user (log in with ``name``, e.g. an address); works while running.

        ``quota=True``: the mailbox is over quota (LMTP 552 5.2.2 -> "mailbox full" bounce);
        with ``quota_tempfail=True`` it answers 452 4.2.2 instead.
        Example: ``dv.add_user("anna@example.org", "pw", quota=True)``
        """
        if ":" in name or ":" in password or "\n" in name + password:
            raise ValueError("user names and passwords cannot contain ':' or newlines")
        user = MailboxUser(name, password, quota, quota_tempfail)
        with self._lock:
            self.users[name] = user
            self._write_users()
        self._maildir(name, "INBOX")
        return user

    def password(self, user: str) -> str:
        """The password add_user() was given for ``user``."""
        return self.users[user].password

    def home(self, user: str) -> Path:
        """The user's home directory (the Maildir is ``home / "Maildir"``)."""
        local, _, domain = user.rpartition("@")
        return self.root / "mail" / domain / local if local else self.root / "mail" / user

    def create_folder(self, user: str, folder: str) -> Path:
        """Create a mail folder (``"Bounces"``, ``"Archive/2024"``) and subscribe to it.

        Example: ``dv.create_folder("anna@example.org", "Bounces")``
        """
        path = self._maildir(user, folder)
        subs = self.home(user) / "Maildir" / "subscriptions"
        existing = subs.read_text().splitlines() if subs.exists() else []
        if folder not in existing and folder != "INBOX":
            with open(subs, "a") as out:
                out.write(folder + "\n")
            os.chown(subs, self._mail.pw_uid, self._mail.pw_gid)
        return path

    def append(self, user: str, folder: str, raw: bytes) -> None:
        """Put one message into ``folder`` (created if missing), as if just delivered.

        Example: ``dv.append("anna@example.org", "INBOX", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")``
        """
        self.append_many(user, folder, [raw])

    def append_many(self, user: str, folder: str, messages: Iterable[bytes]) -> int:
        """Write many messages straight into the Maildir's ``new/``; returns how many.

        Dovecot picks them up on the next SELECT/STATUS. Fast: 10,000 small messages
        take under 2 s. Example: ``dv.append_many(user, "Bounces", raws)``
        """
        maildir = self.create_folder(user, folder)
        uid, gid = self._mail.pw_uid, self._mail.pw_gid
        count = 0
        for raw in messages:
            with self._lock:
                self._counter += 1
                n = self._counter
            # Maildir name: unique per message; ",S=" lets Dovecot skip a stat for quota.
            base = f"{int(time.time())}.M{n}P{os.getpid()}.nk-test,S={len(raw)}"
            tmp = maildir / "tmp" / base
            with open(tmp, "wb") as out:
                out.write(raw)
            os.chown(tmp, uid, gid)
            os.rename(tmp, maildir / "new" / base)
            count += 1
        return count

    def message_count(self, user: str, folder: str = "INBOX") -> int:
        """How many messages sit in the folder's Maildir (new + cur), without IMAP."""
        maildir = self._folder_path(user, folder)
        return sum(
            len(os.listdir(maildir / sub)) for sub in ("new", "cur") if (maildir / sub).is_dir()
        )

    def wait_for_messages(
        self, user: str, count: int, folder: str = "INBOX", timeout: float = 15.0
    ) -> int:
        """Poll until the folder holds at least ``count`` messages; returns the number.

        Raises TimeoutError (with the last Dovecot log lines) when they do not arrive.
        Example: ``dv.wait_for_messages("sender@example.org", 1)``
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.message_count(user, folder)
            if found >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{user}/{folder}: {found} of {count} messages after {timeout}s; "
                    f"dovecot log tail:\n{tail(self.log_path)}"
                )
            time.sleep(0.05)

    def read_messages(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """The raw messages in a folder's Maildir, oldest first (no IMAP involved)."""
        maildir = self._folder_path(user, folder)
        files = [p for sub in ("cur", "new") if (maildir / sub).is_dir() for p in (maildir / sub).iterdir()]
        files.sort(key=lambda p: (p.stat().st_mtime, p.name))
        return [p.read_bytes() for p in files]

    def imap_client(self, user: str, password: str | None = None, *, ssl: bool = False) -> Any:
        """A logged-in imapclient.IMAPClient; STARTTLS (or implicit TLS) verified with the CA.

        Example: ``c = dv.imap_client("anna@example.org"); c.list_folders()``
        """
        from imapclient import IMAPClient

        context = self.ca.client_context()
        if ssl:
            client = IMAPClient("localhost", port=self.imaps_port, ssl=True, ssl_context=context, timeout=15)
        else:
            client = IMAPClient("localhost", port=self.imap_port, ssl=False, timeout=15)
            client.starttls(context)
        client.login(user, password if password is not None else self.password(user))
        return client

    # -- process

    def start(self) -> "Dovecot":
        """Start the daemon and wait until IMAP and LMTP accept connections."""
        self._write_files()
        subprocess.run(
            ["dovecot", "-c", str(self.config_file)],
            # dovecot keeps inherited fds open: never hand it our pipes.
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=True, timeout=30,
        )
        pid_file = self.root / "run" / "master.pid"
        deadline = time.monotonic() + 10
        while not pid_file.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not start:\n{tail(self.log_path)}")
            time.sleep(0.02)
        self._pid = int(pid_file.read_text().split()[0])
        for port in (self.imap_port, self.imaps_port, self.lmtp_port):
            wait_for_port(port)
        return self

    def stop(self) -> None:
        """Stop the daemon and wait for its master process to exit (idempotent)."""
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        wait_for_pid_exit(pid)

    def __enter__(self) -> "Dovecot":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals

    def _write_files(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # The mail user must traverse the tree down to the Maildirs.
        _allow_traverse(self.root)
        mail_root = self.root / "mail"
        mail_root.mkdir(exist_ok=True)
        os.chown(mail_root, self._mail.pw_uid, self._mail.pw_gid)
        self.config_file.write_text(
            DOVECOT_CONF.format(
                root=self.root, cert_file=self.ca.cert_file, key_file=self.ca.key_file,
                mail_uid=self._mail.pw_uid, users_dir=self.users_dir,
                port_imap=self.imap_port, port_imaps=self.imaps_port, port_lmtp=self.lmtp_port,
            )
        )
        with self._lock:
            self._write_users()

    def _write_users(self) -> None:
        self.users_dir.mkdir(exist_ok=True)
        dovecot_gid = grp.getgrnam("dovecot").gr_gid
        os.chown(self.users_dir, 0, dovecot_gid)
        os.chmod(self.users_dir, 0o750)
        for user in self.users.values():
            path = self.users_dir / user.name.lower()
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(user.passwd_line())
            # Plain-text passwords: readable by Dovecot's auth process (group dovecot) only.
            os.chown(tmp, 0, dovecot_gid)
            os.chmod(tmp, 0o640)
            os.replace(tmp, path)
        tmp = self.mailbox_map.with_suffix(".tmp")
        tmp.write_text("".join(f"{name} OK\n" for name in self.users))
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.mailbox_map)

    def _folder_path(self, user: str, folder: str) -> Path:
        base = self.home(user) / "Maildir"
        if folder.upper() == "INBOX":
            return base
        # Maildir++ on disk: "Archive/2024" is the directory ".Archive.2024".
        return base / ("." + folder.replace("/", "."))

    def _maildir(self, user: str, folder: str) -> Path:
        uid, gid = self._mail.pw_uid, self._mail.pw_gid
        path = self._folder_path(user, folder)
        to_make = [*reversed([p for p in [path, *path.parents] if not p.exists()])]
        for directory in to_make:
            directory.mkdir()
            os.chown(directory, uid, gid)
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(exist_ok=True)
            os.chown(path / sub, uid, gid)
        if folder.upper() != "INBOX" and not (path / "maildirfolder").exists():
            (path / "maildirfolder").touch()
            os.chown(path / "maildirfolder", uid, gid)
        return path


# ------------------------------------------------------------------------ Postfix

LOCAL_DOMAINS = ("example.org", "example.net")
FAULT_HARD_DOMAIN = "hard.example.net"
FAULT_SOFT_DOMAIN = "soft.example.net"
FAULT_DISCARD_DOMAIN = "discard.example.net"

POSTFIX_TRANSPORT = f"""\
{FAULT_HARD_DOMAIN}     error:5.1.1 Recipient address rejected: User unknown (test fault)
{FAULT_SOFT_DOMAIN}     retry:4.4.1 Connection timed out (test fault)
{FAULT_DISCARD_DOMAIN}  discard:test fault
"""

#: Envelope senders the ``sender_reject_port`` refuses, as reject_unknown_sender_domain would
#: (without asking DNS): at RCPT, since smtpd_delay_reject = yes (Postfix's default).
SENDER_REJECT_DOMAIN = "shop.example"
POSTFIX_SENDER_ACCESS = f"""\
{SENDER_REJECT_DOMAIN}    553 5.1.8 Domain not found
"""

POSTFIX_MAIN_CF = """\
# Private test instance written by tests/mailservers.py; nothing here is read from /etc.
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = {root}
maillog_file = {root}/maillog
myhostname = mx.nk-test.example.com
mydomain = nk-test.example.com
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
local_transport = error:5.1.1 no local delivery in the test Postfix
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_reject_unlisted_recipient = no
virtual_mailbox_domains = {domains}
virtual_mailbox_maps = texthash:{mailbox_map}
# LOCAL+DETAIL@ is LOCAL's mailbox (VERP bounce addresses); Dovecot's LMTP strips +DETAIL too.
recipient_delimiter = +
virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}
# Nothing ever leaves this machine: every other domain bounces.
default_transport = error:5.4.4 Host or domain name not found (test Postfix delivers nowhere)
relay_transport = $default_transport
transport_maps = texthash:{root}/conf/transport
smtp_dns_support_level = disabled
lmtp_host_lookup = native
biff = no
append_dot_mydomain = no
# Tests send rejected commands on purpose: no tarpit, no flow-control sleeps.
smtpd_error_sleep_time = 0s
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
in_flow_delay = 0s
smtpd_banner = $myhostname ESMTP test Postfix
"""

POSTFIX_FAST_QUEUE = """\
# Soft bounces in seconds: warn after 2 s, give up (bounce) after 8 s.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 2s
maximal_queue_lifetime = 8s
bounce_queue_lifetime = 8s
"""

POSTFIX_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{port}   inet  n       -       n       -       -       smtpd
{reject_port} inet n     -       n       -       -       smtpd
  -o smtpd_reject_unlisted_recipient=yes
  -o max_use=1
{sender_reject_port} inet n -     n       -       -       smtpd
  -o smtpd_sender_restrictions=check_sender_access,texthash:{root}/conf/sender_access
  -o smtpd_delay_reject=yes
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """A private Postfix on 127.0.0.1 that delivers LOCAL_DOMAINS to a Dovecot by LMTP.

    ``port`` accepts every recipient and reports failures as DSN bounces to the
    envelope sender; ``reject_port`` rejects unknown local users at RCPT (550 5.1.1);
    ``sender_reject_port`` refuses an envelope sender @SENDER_REJECT_DOMAIN at RCPT ("553 5.1.8
    <x@shop.example>: Sender address rejected: Domain not found").
    Example::

        with Postfix(tmp_path / "postfix", dovecot) as pf:
            smtplib.SMTP(pf.host, pf.port).sendmail(sender, ["nobody@example.org"], raw)
            pf.wait_for_messages(sender, 1)   # the DSN, in the sender's INBOX
    """

    def __init__(self, directory: str | Path, dovecot: Dovecot, *, fast_queue: bool = True) -> None:
        if not os.path.exists("/usr/sbin/postfix"):
            raise FileNotFoundError("postfix is not installed (Debian: postfix)")
        self.root = Path(directory)
        self.dovecot = dovecot
        self.fast_queue = fast_queue
        self.host = HOST
        self.port = free_port()
        self.reject_port = free_port()
        self.sender_reject_port = free_port()
        self.log_path = self.root / "maillog"
        # main.cf/master.cf in their own dir: "postfix check" wants everything below
        # the config dir owned by root, and the queue is not.
        self.config_dir = self.root / "conf"
        self.transport_file = self.config_dir / "transport"
        self._pid: int | None = None

    def start(self) -> "Postfix":
        """Write the configuration, start the master and wait for both SMTP ports."""
        self._write_config()
        result = self._postfix("start")
        if result.returncode != 0:
            # Before the master runs, "postfix" only reports errors on a terminal: ask "check".
            raise RuntimeError(
                f"postfix start failed: {result.stdout}\n{tail(self.log_path)}\n"
                f"{self._postfix_check()}"
            )
        pid_file = self.root / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + 15
        while not (pid_file.exists() and pid_file.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix did not start:\n{tail(self.log_path)}")
            time.sleep(0.02)
        self._pid = int(pid_file.read_text().split()[0])
        # The kernel accepts connections before the master has spawned smtpd (up to ~2 s
        # on a busy machine): ready means a 220 greeting.
        wait_for_smtp_greeting(self.port)
        wait_for_smtp_greeting(self.reject_port)
        wait_for_smtp_greeting(self.sender_reject_port)
        return self

    def stop(self) -> None:
        """Stop Postfix and wait for its master process to exit (idempotent)."""
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        self._postfix("stop")
        wait_for_pid_exit(pid)

    def flush(self) -> None:
        """Retry every deferred message now (``postqueue -f``)."""
        subprocess.run(
            ["postqueue", "-c", str(self.config_dir), "-f"], check=True, timeout=30,
            stdin=subprocess.DEVNULL, capture_output=True,
        )

    def queue(self) -> list[dict[str, Any]]:
        """The messages still queued (``postqueue -j``): dicts with queue_id, recipients..."""
        import json

        result = subprocess.run(
            ["postqueue", "-c", str(self.config_dir), "-j"], check=True, timeout=30,
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def wait_for_messages(
        self, user: str, count: int, folder: str = "INBOX", timeout: float = 15.0
    ) -> int:
        """Poll the Dovecot mailbox until ``count`` messages arrived (bounded by ``timeout``).

        Example: ``pf.wait_for_messages("news@example.org", 1)``
        """
        try:
            return self.dovecot.wait_for_messages(user, count, folder, timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\npostfix log tail:\n{tail(self.log_path)}") from None

    def __enter__(self) -> "Postfix":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _postfix(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/usr/sbin/postfix", "-c", str(self.config_dir), command],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=60,
        )

    def _postfix_check(self) -> str:
        # "postfix check" prints its fatal errors to stderr only when that is a tty.
        result = subprocess.run(
            ["script", "-qc", f"/usr/sbin/postfix -c {self.config_dir} check", "/dev/null"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )
        return result.stdout.strip()

    def _write_config(self) -> None:
        postfix_user = pwd.getpwnam("postfix")
        self.root.mkdir(parents=True, exist_ok=True)
        _allow_traverse(self.root)
        (self.root / "queue").mkdir(exist_ok=True)
        self.config_dir.mkdir(exist_ok=True)
        data = self.root / "data"
        data.mkdir(exist_ok=True)
        os.chown(data, postfix_user.pw_uid, postfix_user.pw_gid)
        main_cf = POSTFIX_MAIN_CF.format(
            root=self.root, domains=", ".join(LOCAL_DOMAINS), mailbox_map=self.dovecot.mailbox_map,
            lmtp_port=self.dovecot.lmtp_port,
        )
        if self.fast_queue:
            main_cf += POSTFIX_FAST_QUEUE
        (self.config_dir / "main.cf").write_text(main_cf)
        (self.config_dir / "master.cf").write_text(
            POSTFIX_MASTER_CF.format(port=self.port, reject_port=self.reject_port,
                                     sender_reject_port=self.sender_reject_port, root=self.root)
        )
        self.transport_file.write_text(POSTFIX_TRANSPORT)
        (self.config_dir / "sender_access").write_text(POSTFIX_SENDER_ACCESS)
        # Postfix waits until main.cf is over a second old; back-dating saves ~2 s.
        past = time.time() - 10
        for name in ("main.cf", "master.cf", "transport", "sender_access"):
            os.utime(self.config_dir / name, (past, past))


def _allow_traverse(path: Path) -> None:
    """Let other users (mail, dovecot, postfix) walk down to ``path`` (mkdtemp makes 0700)."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if mode & 0o011 != 0o011:
            os.chmod(directory, mode | 0o011)


def tail(path: str | Path, lines: int = 20) -> str:
    """The last lines of a log file ('' when it does not exist), for error messages."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


# ---------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.mailservers sink --port P [--delay-ms N]``."""
    parser = argparse.ArgumentParser(prog="tests.mailservers")
    sub = parser.add_subparsers(dest="command", required=True)
    sink = sub.add_parser("sink", help="count and discard SMTP messages until SIGTERM")
    sink.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick one)")
    sink.add_argument("--delay-ms", type=int, default=0, help="sleep per message")
    args = parser.parse_args(argv)
    run_sink(args.port or free_port(), args.delay_ms)


if __name__ == "__main__":
    main()
