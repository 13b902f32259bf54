"""smtplib, configured from :class:`~newsletter_kit.settings.SmtpSettings`.

TLS is always verified (:func:`~newsletter_kit.net.tls_context`); AUTH over a plain
connection is refused unless the settings allow it. Every failure becomes a
:class:`~newsletter_kit.errors.NewsletterKitError` with a sentence a person can act on.

Example::

    with open_smtp(settings) as smtp:      # connected, TLS up, logged in
        smtp.send_message(message)
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import queue
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import reasons
from .errors import (AuthenticationFailed, CertificateError, ConnectionFailed, NewsletterKitError,
                     ValidationError)
from .net import connected, decode, reason, tls_context, tls_failure, where
from .settings import SmtpSettings, resolve_password

#: ``factory(host, port, timeout=..., context=...)`` → an smtplib.SMTP; tests can inject one.
SmtpFactory = Callable[..., smtplib.SMTP]
DEFAULT_TIMEOUT = 30.0


def _where(settings: SmtpSettings) -> str:
    return where("SMTP", settings)


def connect_smtp(settings: SmtpSettings, *, timeout: float = DEFAULT_TIMEOUT,
                 factory: SmtpFactory | None = None,
                 context: ssl.SSLContext | None = None) -> smtplib.SMTP:
    """Connect and bring TLS up as the settings say, without logging in.

    ``context`` (default: :func:`tls_context` of the settings) lets many connections share one
    context: loading the trust store costs more than connecting to a local server.
    """
    if context is None and settings.tls != "none":
        context = tls_context(settings.ca_file)
    try:
        if settings.tls == "ssl":
            make = factory or smtplib.SMTP_SSL
            smtp = make(settings.host, settings.port, timeout=timeout, context=context)
        else:
            make = factory or smtplib.SMTP
            smtp = make(settings.host, settings.port, timeout=timeout)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise tls_failure(_where(settings), exc) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise ConnectionFailed(f"cannot connect to {_where(settings)}: {reason(exc)}") from None
    try:
        smtp.ehlo()
        if settings.tls == "starttls":
            if not smtp.has_extn("starttls"):
                raise ConnectionFailed(f"{_where(settings)} does not offer STARTTLS")
            smtp.starttls(context=context)
            smtp.ehlo()
    except (ssl.SSLError, ssl.CertificateError) as exc:
        _close(smtp)
        raise tls_failure(_where(settings), exc) from None
    except (OSError, smtplib.SMTPException) as exc:
        _close(smtp)
        raise ConnectionFailed(f"{_where(settings)}: {reason(exc)}") from None
    except ConnectionFailed:
        _close(smtp)
        raise
    return smtp


def login_smtp(smtp: smtplib.SMTP, settings: SmtpSettings, password: str | None = None) -> None:
    """AUTH with the settings' user and the password its reference resolves to."""
    if not settings.auth:
        return
    if settings.tls == "none" and not settings.allow_plain_auth:
        raise ValidationError("refusing AUTH over an unencrypted connection (see --allow-plain-auth)")
    secret = password if password is not None else resolve_password(settings.password_ref)
    try:
        smtp.login(settings.user or "", secret)
    except smtplib.SMTPAuthenticationError as exc:
        raise AuthenticationFailed(
            f"{_where(settings)} refused the user name or password for {settings.user!r} "
            f"({exc.smtp_code} {decode(exc.smtp_error)})"
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise AuthenticationFailed(
            f"{_where(settings)} does not offer AUTH here; turn off 'requires authentication' "
            "or use TLS"
        ) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise ConnectionFailed(f"{_where(settings)}: {reason(exc)}") from None


def open_smtp(settings: SmtpSettings, *, password: str | None = None,
              timeout: float = DEFAULT_TIMEOUT, factory: SmtpFactory | None = None,
              context: ssl.SSLContext | None = None) -> smtplib.SMTP:
    """Connect, bring TLS up and log in: a ready :class:`smtplib.SMTP` (a context manager)."""
    smtp = connect_smtp(settings, timeout=timeout, factory=factory, context=context)
    try:
        login_smtp(smtp, settings, password)
    except BaseException:
        _close(smtp)
        raise
    return smtp


def check_smtp(settings: SmtpSettings, *, password: str | None = None,
               factory: SmtpFactory | None = None) -> list[tuple[bool, str]]:
    """Try the server step by step; a list of (ok, sentence) for ``settings test``."""
    results: list[tuple[bool, str]] = []
    try:
        smtp = connect_smtp(settings, factory=factory)
    except CertificateError as exc:
        return [(False, str(exc))]
    except ConnectionFailed as exc:
        return [(False, str(exc))]
    results.append((True, connected(_where(settings), settings.tls)))
    try:
        if settings.auth:
            login_smtp(smtp, settings, password)
            results.append((True, f"{_where(settings)}: logged in as {settings.user}"))
        else:
            results.append((True, f"{_where(settings)}: no authentication configured"))
    except Exception as exc:  # reported, not raised: the point is to say what works
        results.append((False, str(exc)))
    finally:
        _close(smtp)
    return results


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


# --- sending (campaigns build on this) ---------------------------------------------------

#: What one SMTP transaction came to. ``paused``: the server (421) or the connection went away;
#: nothing was accepted, and the run should stop until later. ``unknown``: the connection went
#: away after the whole message was sent, before the server's reply: perhaps delivered, so it is
#: never tried again (and the run pauses as for ``paused``).
OUTCOME_KINDS = ("sent", "deferred", "failed", "paused", "unknown")
#: Whom a refusal (``failed``) is about: the recipient's mailbox (a bounce of that address),
#: the message itself (size, syntax, content, policy), or the sender (our envelope sender,
#: server, IP, relay permission, login or session: every recipient would be refused alike).
CONCERNS = ("recipient", "message", "sender")
#: Reasons of the shared table (:mod:`newsletter_kit.reasons`) on the sender's side that are
#: about the message rather than about who sends it.
_MESSAGE_REASONS = frozenset({"spam_detected", "content_rejected", "message_too_big", "virus_detected",
                              "not_rfc_compliant", "syntax_error", "policy_violation"})
# An address in a reply is the recipient's or ours, chosen by whoever owns it: never wording.
_ADDRESS = re.compile(r"<[^<>\s]*>|[^\s<>]+@[^\s<>]+")
#: The SMTP command a reply answers: ``MAIL`` (FROM), ``RCPT`` (TO), ``DATA`` (the command or
#: the end of the message).
STAGES = ("MAIL", "RCPT", "DATA")
#: The longest one message's whole conversation (MAIL FROM to the reply after DATA) may take
#: before the connection is treated as dropped; a per-read timeout alone lets a server that
#: trickles a byte now and then hold a run for ever.
MESSAGE_DEADLINE = 120.0

# RFC 3463: the enhanced code opens the reply text, right after the basic code; its class
# repeats the basic code's first digit. A number elsewhere ("see RFC 5321 4.5.3.1.6") is text.
_ENHANCED_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_BASIC_CODE = re.compile(r"[245]\d\d[ -]")


@dataclass(frozen=True)
class SmtpReply:
    """An SMTP reply: the basic code, the enhanced status code where the reply puts it, the text.

    Example::

        >>> SmtpReply.parse(500, b"Line too long (see RFC5321 4.5.3.1.6)").status is None
        True
        >>> SmtpReply.parse(550, "550-5.1.1 The email account does not exist\\n550 5.1.1 Try again").status
        '5.1.1'
    """

    code: int | None
    status: str | None
    text: str

    @classmethod
    def parse(cls, code: int | None, reply: Any = "") -> SmtpReply:
        """Read a reply as smtplib gives it (text after the code; lines joined by newlines).

        A line may still carry its basic code (``550-5.1.1 ...``): it is skipped. An enhanced
        code whose class differs from the basic code's is not one (RFC 3463 section 2).
        """
        text = decode(reply).strip()
        first = text.split("\n", 1)[0].lstrip()
        basic = _BASIC_CODE.match(first)
        if basic:
            first = first[basic.end():].lstrip()
        match = _ENHANCED_STATUS.match(first)
        status = None
        if match and (code is None or str(code)[0] == match.group(1)):
            status = ".".join(match.groups())
        return cls(code, status, text)

    @property
    def reason(self) -> str:
        """Why, as a name of the shared reason table (:func:`newsletter_kit.reasons.classify`):
        the reply's wording first (addresses left out: a mailbox called ``spam@`` is no
        wording), then its enhanced code.

        Example::

            >>> SmtpReply.parse(553, "5.1.8 <b@shop.example>: Sender address rejected: Domain not found").reason
            'sender_rejected'
        """
        return reasons.classify(self.status, self.code, _ADDRESS.sub(" ", self.text))

    def concerns(self, stage: str) -> str | None:
        """Whom a 5xx reply at ``stage`` is about (one of :data:`CONCERNS`); None for others.

        The reply's wording decides first, at any stage (:attr:`reason`): a reason on the
        sender's side (our sender address, relay permission, login, blocklisted IP...) is about
        the sender, or the message for content, size and syntax; a reason on the recipient's
        side is about the recipient (not at MAIL FROM, which names no recipient).  Without
        telling words: at MAIL FROM the sender, unless the reply is about the message's size
        (552, X.3.4, X.2.3). At RCPT the recipient, unless the reply is about the command or
        the transaction (500-504 without a mailbox code, X.5.x, X.3.x, X.6.x). After DATA the
        message, unless the reply names the mailbox (X.1.x, X.2.x other than X.2.3): one
        transaction carries one recipient, so such a reply can only be about that recipient.
        """
        if self.code is None or not 500 <= self.code < 600:
            return None
        worded = self._worded()
        side = reasons.side(worded) if worded else None
        if side == reasons.SENDER:
            return "message" if worded in _MESSAGE_REASONS else "sender"
        subject, detail = self._subject()
        if stage == "MAIL":
            size = self.code == 552 or (subject, detail) in (("3", "4"), ("2", "3"))
            return "message" if size else "sender"
        if side == reasons.RECIPIENT:
            return "recipient"
        mailbox = subject in ("1", "2") and (subject, detail) != ("2", "3")
        if stage == "RCPT":
            if mailbox or subject == "7":
                return "recipient"
            if subject in ("3", "5", "6") or (subject is None and self.code in (500, 501, 502, 503, 504)):
                return "message"
            return "recipient"
        return "recipient" if mailbox else "message"

    def _worded(self) -> str | None:
        """The reason the reply's wording names (addresses left out), or None."""
        return reasons.from_text(_ADDRESS.sub(" ", self.text))

    def refuses_us(self) -> bool:
        """Does the wording say the server refuses *us* (sender address, relay, login, IP,
        reputation, rate), whatever the code and the stage?

        Example::

            >>> SmtpReply.parse(450, "4.1.8 <b@shop.example>: Sender address rejected: Domain not found").refuses_us()
            True
        """
        worded = self._worded()
        return worded is not None and reasons.side(worded) == reasons.SENDER and worded not in _MESSAGE_REASONS

    def _subject(self) -> tuple[str | None, str | None]:
        if self.status is None:
            return None, None
        _, subject, detail = self.status.split(".")
        return subject, detail


@dataclass(frozen=True)
class SendOutcome:
    """The server's answer to one message, mapped to what the ledger should do with it.

    ``stage`` is the command the reply answered; ``concerns`` says whom a refusal is about
    (only a ``recipient`` refusal is a bounce of that address).

    Example::

        >>> classify_reply(550, "5.1.1 <x@example.org>: User unknown", "RCPT")
        SendOutcome(kind='failed', code=550, status='5.1.1', reply='5.1.1 <x@example.org>: User unknown', stage='RCPT', concerns='recipient')
    """

    kind: str
    code: int | None = None
    status: str | None = None
    reply: str = ""
    stage: str | None = None
    concerns: str | None = None
    #: the relay's id of the message from its final 250 reply (SES, SendGrid), when asked for
    provider_id: str | None = dataclasses.field(default=None, repr=False)

    @property
    def refuses_message(self) -> bool:
        """The server refused the message or its sender: every other recipient would be refused too."""
        return self.kind == "failed" and self.concerns in ("message", "sender")

    @property
    def refuses_sender(self) -> bool:
        """The server refused us (sender address, relay, login, IP, session), not this recipient
        nor this message: the recipient is not tried as such, so it stays pending.

        Example::

            >>> classify_reply(554, "5.7.1 <a@example.org>: Relay access denied", "RCPT").refuses_sender
            True
        """
        return self.kind == "failed" and self.concerns == "sender"

    @property
    def reason(self) -> str | None:
        """Why a refusal failed, as a name of :mod:`newsletter_kit.reasons`; None when not refused.

        Example::

            >>> classify_reply(550, "5.1.1 <x@example.org>: User unknown", "RCPT").reason
            'user_unknown'
        """
        if self.kind != "failed" or self.code is None:
            return None
        return SmtpReply(self.code, self.status, self.reply).reason


_RELAY_ID = re.compile(
    # SendGrid (and Postfix-like relays): "Ok: queued as <id>"; SES: "Ok <hex id-with-hyphens>".
    rb"^(?:[245]\.\d{1,3}\.\d{1,3} )?ok(?::? queued as <?([A-Za-z0-9._@-]{6,200})>?| <?([0-9a-f]{16}-[0-9a-f-]{20,120})>?)\s*$",
    re.IGNORECASE)


def relay_message_id(reply: bytes | str) -> str | None:
    """The relay's id of an accepted message from its final reply text: SES answers
    ``Ok <id>``, SendGrid ``Ok: queued as <id>``; None when the reply names none.

    >>> relay_message_id(b"Ok 0100018c5c7e3d9a-4b6f2c1e-8a7d-4c3b-9e1f-2a3b4c5d6e7f-000000")
    '0100018c5c7e3d9a-4b6f2c1e-8a7d-4c3b-9e1f-2a3b4c5d6e7f-000000'
    >>> relay_message_id("Ok: queued as AbCdEfGhIjKlMnOp"), relay_message_id("2.0.0 OK queued"), relay_message_id("")
    ('AbCdEfGhIjKlMnOp', None, None)
    """
    raw = reply.encode("ascii", "replace") if isinstance(reply, str) else reply
    match = _RELAY_ID.match(raw.strip()[:300])
    if match is None:
        return None
    return (match.group(1) or match.group(2)).decode("ascii")


def classify_reply(code: int | None, reply: Any = "", stage: str = "DATA") -> SendOutcome:
    """Map an SMTP reply at ``stage`` to an outcome: 2xx sent, 421 paused, 4xx deferred, 5xx failed.

    A 4xx at MAIL FROM, or one whose wording refuses us at any stage (a sender domain the
    server cannot resolve now, a rate limit: :meth:`SmtpReply.refuses_us`), pauses the run (the
    server takes no mail from us now: no recipient is deferred for it); a 5xx says whom it
    concerns (:meth:`SmtpReply.concerns`).

    Example::

        >>> classify_reply(451, b"4.3.0 try again later", "RCPT").kind
        'deferred'
        >>> outcome = classify_reply(500, b"Line too long (see RFC5321 4.5.3.1.6)", "DATA")
        >>> outcome.kind, outcome.status, outcome.concerns
        ('failed', None, 'message')
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")
    parsed = SmtpReply.parse(code, reply)
    if code is not None and 200 <= code < 300:
        kind = "sent"
    elif code == 421 or (code is not None and 400 <= code < 500 and (stage == "MAIL" or parsed.refuses_us())):
        kind = "paused"
    elif code is not None and 400 <= code < 500:
        # A relay saying "slow down" (454 Throttling failure, 4.7.x rate limits) is about us,
        # not the recipient: pause (the row goes back to pending) instead of deferring it.
        kind = "paused" if throttled(code, parsed.text) else "deferred"
    else:
        kind = "failed"
    return SendOutcome(kind, code, parsed.status, parsed.text, stage, parsed.concerns(stage))


def throttled(code: int | None, text: str) -> bool:
    """Whether a temporary reply asks us to send slower (rate limit, too many connections).

    >>> throttled(454, "Throttling failure: Maximum sending rate exceeded.")
    True
    >>> throttled(450, "4.2.1 Mailbox busy"), throttled(451, "4.7.1 Greylisted, try again later")
    (False, False)
    """
    from .reasons import from_text

    if code is None or not 400 <= code < 500:
        return False
    return bool(_THROTTLE_RE.search(text)) or from_text(text) in ("rate_limited", "too_many_connections")


_THROTTLE_RE = re.compile(r"throttl|rate.?limit|sending rate|too many (?:connections|messages|recipients)|"
                          r"slow down|rate exceeded", re.IGNORECASE)


class _DeadlineFile:
    """The reader smtplib takes replies from, with an overall deadline for a conversation.

    smtplib reads through ``sock.makefile()``, whose timeout is per ``recv``: a server sending
    a byte every few seconds never trips it. Reading here stops at :attr:`deadline`
    (``time.monotonic()``) with ``socket.timeout``, which smtplib turns into a dropped
    connection.
    """

    def __init__(self, sock: socket.socket, timeout: float):
        self.sock = sock
        self.timeout = timeout
        self.deadline: float | None = None
        self.shortened = False  # the socket's timeout is below self.timeout (near the deadline)
        self._buffer = b""

    def bound(self) -> None:
        """Give the socket the time left before the deadline when that is less than its timeout.

        The socket keeps its plain timeout otherwise (settimeout is a system call: not one per
        read on the hot path).
        """
        if self.deadline is None:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the server took longer than the deadline for one message")
        if left < self.timeout:
            self.sock.settimeout(left)
            self.shortened = True

    def reset(self) -> None:
        """No deadline any more (between messages): the socket's plain timeout again."""
        self.deadline = None
        if self.shortened:
            self.shortened = False
            try:
                self.sock.settimeout(self.timeout)
            except OSError:  # closed after a drop: nothing to reset
                pass

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 or 0 < limit <= len(self._buffer):
                cut = end + 1 if end >= 0 else limit
                if 0 < limit < cut:
                    cut = limit
                line, self._buffer = self._buffer[:cut], self._buffer[cut:]
                return line
            self.bound()
            try:
                chunk = self.sock.recv(8192)
            except socket.timeout:
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    raise socket.timeout("the server took longer than the deadline for one message") from None
                raise
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += chunk

    def close(self) -> None:
        self._buffer = b""


class SmtpSender:
    """One SMTP connection reused for many messages; it reconnects once after a drop.

    The password is resolved once (when :meth:`open` is called) and kept only in memory, for
    reconnects; it never appears in a repr.

    Example::

        with SmtpSender(settings).open() as sender:
            outcome = sender.send("bounces@example.org", "anna@example.org", raw_bytes)
            outcome.kind      # 'sent' | 'deferred' | 'failed' | 'paused'
    """

    def __init__(self, settings: SmtpSettings, *, password: str | None = None,
                 factory: SmtpFactory | None = None, timeout: float = DEFAULT_TIMEOUT,
                 context: ssl.SSLContext | None = None, deadline: float = MESSAGE_DEADLINE,
                 capture_ids: bool = False):
        self.settings = settings
        #: keep the relay's message id from the final 250 reply (an ESP's events carry it)
        self.capture_ids = capture_ids
        self._data_reply = b""
        self._password = password
        self._factory = factory
        self._timeout = timeout
        self._context = context
        self._deadline = deadline
        self._smtp: smtplib.SMTP | None = None
        self._file: _DeadlineFile | None = None
        self._while_waiting: Callable[[], None] | None = None
        self._data_sent = False  # this transaction's end of DATA is on the wire

    def __repr__(self) -> str:
        state = "open" if self._smtp is not None else "closed"
        return f"SmtpSender({self.settings.host}:{self.settings.port}, {state})"

    def open(self) -> SmtpSender:
        """Connect and log in now, so a wrong password or certificate fails before any send."""
        if self._password is None and self.settings.auth:
            self._password = resolve_password(self.settings.password_ref)
        if self._smtp is None:
            if self._context is None and self.settings.tls != "none":
                self._context = tls_context(self.settings.ca_file)  # kept for reconnects
            self._smtp = open_smtp(self.settings, password=self._password, timeout=self._timeout,
                                   factory=self._factory, context=self._context)
            self._hook_replies(self._smtp)
        return self

    def _hook_replies(self, smtp: smtplib.SMTP) -> None:
        """Bound each message's conversation by the deadline, and run the pending
        ``while_waiting`` work once the message is out, before the reply is read.

        The server needs a round trip (the longest of the transaction: it takes the message in)
        to answer the end of DATA; a message rendered meanwhile costs no time.
        """
        write, read_reply = smtp.send, smtp.getreply
        message_out = False
        assert smtp.sock is not None  # connected
        reader = self._file = _DeadlineFile(smtp.sock, self._timeout)
        smtp.file = reader  # type: ignore[assignment]

        def send(data: Any) -> None:
            nonlocal message_out
            reader.bound()  # sendall: the timeout is a total, not per chunk
            write(data)
            message_out = isinstance(data, bytes) and data.endswith(b"\r\n.\r\n")
            if message_out:
                self._data_sent = True

        def getreply() -> tuple[int, bytes]:
            nonlocal message_out
            if message_out:
                message_out = False
                work, self._while_waiting = self._while_waiting, None
                if work is not None:
                    work()
                code, text = read_reply()
                self._data_reply = text
                return code, text
            return read_reply()

        smtp.send = send  # type: ignore[method-assign, assignment]
        smtp.getreply = getreply  # type: ignore[method-assign]

    def close(self) -> None:
        """QUIT (or just close a dead connection)."""
        if self._smtp is not None:
            smtp, self._smtp = self._smtp, None
            _close(smtp)

    def __enter__(self) -> SmtpSender:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, mail_from: str, rcpt: str, message: bytes, *,
             while_waiting: Callable[[], None] | None = None) -> SendOutcome:
        """Send one message to one recipient; never raises for what the server answers.

        A connection found dead is reopened and the message tried once more (the server
        accepts responsibility only with its 250, so nothing can have been delivered); a
        second drop, a failed reconnect or a 421 comes back as ``paused``. ``while_waiting``
        (must not raise) runs while the server works on a reply, or at the latest before
        this returns.
        """
        self._while_waiting = while_waiting
        try:
            return self._send(mail_from, rcpt, message)
        finally:
            work, self._while_waiting = self._while_waiting, None
            if work is not None:
                work()

    def _send(self, mail_from: str, rcpt: str, message: bytes) -> SendOutcome:
        for attempt in (1, 2):
            self._data_sent = False
            try:
                if self._smtp is None:
                    self.open()
                assert self._file is not None
                self._file.deadline = time.monotonic() + self._deadline
                try:
                    return self._transaction(mail_from, rcpt, message)
                finally:
                    self._file.reset()  # QUIT, RSET: the plain timeout
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                self._discard()
                if self._data_sent:
                    # The server may have taken the message before the line dropped: sending
                    # it again could deliver it twice.
                    return SendOutcome("unknown", None, None,
                                       f"connection lost after the message was sent, before the "
                                       f"server's reply ({reason(exc)}): perhaps delivered, not resent")
                if attempt == 2:
                    return SendOutcome("paused", None, None, f"connection lost: {reason(exc)}")
            except (ConnectionFailed, AuthenticationFailed) as exc:
                self._discard()
                return SendOutcome("paused", None, None, f"cannot reconnect: {exc}")
        raise AssertionError("unreachable")

    def _transaction(self, mail_from: str, rcpt: str, message: bytes) -> SendOutcome:
        smtp = self._smtp
        assert smtp is not None
        options: list[str] = []
        if not (mail_from.isascii() and rcpt.isascii()):
            if not smtp.has_extn("smtputf8"):
                return SendOutcome("failed", None, None,
                                   "the server does not accept internationalised addresses (SMTPUTF8)")
            options.append("SMTPUTF8")
        try:
            refused = smtp.sendmail(mail_from, [rcpt], message, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = exc.recipients.get(rcpt, (None, b"recipient refused"))
            return self._after_reply(classify_reply(code, reply, "RCPT"))
        except smtplib.SMTPSenderRefused as exc:
            # MAIL FROM refused: about the sender (the bounce address) or the message's size,
            # never about a recipient.
            outcome = classify_reply(exc.smtp_code, exc.smtp_error, "MAIL")
            what = "the message" if outcome.concerns == "message" else f"the envelope sender {mail_from}"
            return self._after_reply(dataclasses.replace(
                outcome, reply=f"the server refused {what}: {outcome.reply}"))
        except smtplib.SMTPDataError as exc:
            return self._after_reply(classify_reply(exc.smtp_code, exc.smtp_error, "DATA"))
        except smtplib.SMTPResponseException as exc:  # HELO refused and the like
            return self._after_reply(SendOutcome("paused", exc.smtp_code, None, reason(exc)))
        if rcpt in refused:
            code, reply = refused[rcpt]
            return self._after_reply(classify_reply(code, reply, "RCPT"))
        if self.capture_ids:
            return SendOutcome("sent", 250, None, "", provider_id=relay_message_id(self._data_reply))
        return SendOutcome("sent", 250, None, "")

    def _after_reply(self, outcome: SendOutcome) -> SendOutcome:
        if outcome.code == 421:
            self._discard()  # the server closes after 421; smtplib already dropped the socket
        return outcome

    def _discard(self) -> None:
        if self._smtp is not None:
            smtp, self._smtp = self._smtp, None
            smtp.close()


#: (envelope sender, recipient, message): the wire-ready bytes, or a function that builds them
#: (called by the thread that sends it, so N connections also render in parallel).
SendJob = tuple[str, str, "bytes | Callable[[], bytes]"]


class SenderPool:
    """N connections used in parallel (one thread each) for slow servers.

    :meth:`send_batch` sends a list of jobs and returns one outcome per job, or ``None`` for a
    job that was not attempted because ``halt`` was set (a 421, the Stop button, a drop).

    Example::

        with SenderPool(settings, 4) as pool:
            outcomes = pool.send_batch([(bounce, rcpt, raw) for rcpt, raw in batch])
    """

    def __init__(self, settings: SmtpSettings, connections: int, *, password: str | None = None,
                 factory: SmtpFactory | None = None, timeout: float = DEFAULT_TIMEOUT,
                 deadline: float = MESSAGE_DEADLINE, capture_ids: bool = False):
        if connections < 1:
            raise ValidationError("the number of connections must be at least 1", "connections")
        if password is None and settings.auth:
            password = resolve_password(settings.password_ref)
        context = tls_context(settings.ca_file) if settings.tls != "none" else None
        self.senders = [SmtpSender(settings, password=password, factory=factory, timeout=timeout,
                                   context=context, deadline=deadline, capture_ids=capture_ids)
                        for _ in range(connections)]
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def open(self) -> SenderPool:
        """Open every connection (a wrong password fails here, before anything is sent)."""
        if len(self.senders) > 1:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                len(self.senders), thread_name_prefix="newsletter-smtp")
        try:
            self.senders[0].open()  # one first: a wrong password fails once, not N times
            if self._executor is not None:
                for future in [self._executor.submit(s.open) for s in self.senders[1:]]:
                    future.result()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Wait for sends in progress, then close every connection."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        for sender in self.senders:
            sender.close()

    def __enter__(self) -> SenderPool:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_batch(self, jobs: list[SendJob], halt: threading.Event,
                   started: list[bool] | None = None, *, stop: threading.Event | None = None,
                   after: Callable[[int, SendOutcome], None] | None = None,
                   before: Callable[[int], None] | None = None) -> list[SendOutcome | None]:
        """Send ``jobs``; take no new one once ``halt`` (or ``stop``) is set; a ``paused`` sets ``halt``.

        ``started[i]`` becomes True when job i is handed to the server, so a caller interrupted
        mid-batch knows which messages may have gone out. ``before(i)`` is called right before
        that (its message is built; e.g. to record durably that it is going on the wire);
        ``after(i, outcome)`` as each answer arrives (one call at a time). Both are called from
        the sending thread.
        """
        batch = _Batch(jobs, halt, stop, started, after, before)
        if self._executor is None:
            sender = self.senders[0]
            for i in range(len(jobs)):
                # One connection: build the next message while the server answers this one.
                batch.run(i, sender, prefetch=i + 1 if i + 1 < len(jobs) else None)
        else:
            todo: queue.SimpleQueue[int] = queue.SimpleQueue()
            for i in range(len(jobs)):
                todo.put(i)
            # One loop per connection taking the next job: no hand-off per message.
            futures = [self._executor.submit(self._work, batch, todo, sender) for sender in self.senders]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                halt.set()  # interrupted: let the sends in progress finish, start no more
                concurrent.futures.wait(futures)
                raise
        return batch.results

    @staticmethod
    def _work(batch: _Batch, todo: queue.SimpleQueue[int], sender: SmtpSender) -> None:
        while not batch.halted():
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            batch.run(i, sender)


class _Batch:
    """The jobs of one :meth:`SenderPool.send_batch` call and what became of them."""

    def __init__(self, jobs: list[SendJob], halt: threading.Event, stop: threading.Event | None,
                 started: list[bool] | None, after: Callable[[int, SendOutcome], None] | None,
                 before: Callable[[int], None] | None = None):
        self.jobs = jobs
        self.before = before
        self.halt = halt
        self.stop = stop
        self.started = started if started is not None else [False] * len(jobs)
        self.after = after
        self.results: list[SendOutcome | None] = [None] * len(jobs)
        self.built: dict[int, bytes | NewsletterKitError] = {}
        self.lock = threading.Lock()

    def halted(self) -> bool:
        return self.halt.is_set() or (self.stop is not None and self.stop.is_set())

    def build(self, i: int) -> None:
        """Make job i's message bytes (once); a message that cannot be built is kept as its error."""
        message = self.jobs[i][2]
        if i in self.built or not callable(message):
            return
        try:
            self.built[i] = message()
        except NewsletterKitError as exc:  # this recipient's message only
            self.built[i] = exc

    def run(self, i: int, sender: SmtpSender, prefetch: int | None = None) -> None:
        if self.halted():
            return
        mail_from, rcpt, job_message = self.jobs[i]
        message: bytes | NewsletterKitError
        if callable(job_message):
            self.build(i)
            message = self.built.pop(i)
        else:
            message = job_message
        if isinstance(message, NewsletterKitError):
            outcome = SendOutcome("failed", None, None, f"cannot build the message: {message}")
        else:
            if self.before is not None:
                self.before(i)
            self.started[i] = True
            work = (lambda: self.build(prefetch)) if prefetch is not None else None
            outcome = sender.send(mail_from, rcpt, message, while_waiting=work)
            if outcome.kind in ("paused", "unknown"):
                self.halt.set()
        self.results[i] = outcome
        if self.after is not None:
            with self.lock:
                self.after(i, outcome)
