"""What SMTP (:mod:`~newsletter_kit.transport`) and IMAP (:mod:`~newsletter_kit.imap`) share:
the verifying TLS context and the wording of network failures.

TLS is always verified: with the system trust store, or only the ``ca_file`` the settings name;
there is no switch to turn verification off. Every failure is worded as
``"<PROTOCOL> server host:port: what happened"``, a sentence a person can act on.

Example::

    >>> context = tls_context(None)
    >>> context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    True
    >>> reason(ConnectionRefusedError(111, "Connection refused"))
    'connection refused (is the server running, and is the port right?)'
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, Protocol

from .errors import CertificateError, ConnectionFailed

#: How each ``tls`` setting reads in ``settings test``.
TLS_WORDS = {"ssl": "implicit TLS", "starttls": "STARTTLS", "none": "no TLS"}


class Endpoint(Protocol):
    """What :func:`where` needs of the settings: the server's host and port."""

    host: str
    port: int


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context: the system trust store, or only ``ca_file`` when given.

    Example::

        >>> tls_context(None).verify_mode == ssl.CERT_REQUIRED
        True
    """
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


def where(protocol: str, server: Endpoint) -> str:
    """The server as error messages name it.

    Example::

        >>> from types import SimpleNamespace
        >>> where("IMAP", SimpleNamespace(host="mail.example.org", port=993))
        'IMAP server mail.example.org:993'
    """
    return f"{protocol} server {server.host}:{server.port}"


def tls_failure(where: str, exc: BaseException) -> ConnectionFailed:
    """The error for a failed TLS handshake with ``where`` (e.g. "SMTP server h:587").

    Example::

        >>> str(tls_failure("SMTP server h:587", ssl.SSLEOFError(8, "EOF occurred")))
        'SMTP server h:587: TLS handshake failed (EOF occurred)'
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateError(
            f"{where}: its TLS certificate is not trusted ({exc.verify_message}); "
            "give the CA that signed it with --ca-file"
        )
    failure = ConnectionFailed(f"{where}: TLS handshake failed ({exc})")
    failure.exit_code = 1  # a TLS mode that does not match the port: fixed in the settings, not by waiting
    return failure


def connected(where: str, tls: str) -> str:
    """The ``settings test`` line for a connection that came up (TLS verified unless ``none``).

    Example::

        >>> connected("IMAP server h:993", "ssl")
        'IMAP server h:993: connected (implicit TLS, certificate verified)'
    """
    return f"{where}: connected ({TLS_WORDS[tls]}" + (", certificate verified)" if tls != "none" else ")")


def network_reason(exc: BaseException) -> str:
    """A socket-level failure in words a person can act on; empty for other failures.

    Example::

        >>> network_reason(socket.timeout())
        'timed out'
    """
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running, and is the port right?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return ""


def decode(value: Any) -> str:
    """Server text as str (replies come as bytes).

    Example::

        >>> decode(b"5.1.1 unknown")
        '5.1.1 unknown'
    """
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def reason(exc: BaseException) -> str:
    """Why a network call failed, in one phrase: the server's reply (SMTP code and text, IMAP
    text), a socket failure in plain words, else the exception's own text.

    Example::

        >>> import smtplib
        >>> reason(smtplib.SMTPResponseException(421, b"4.3.2 shutting down"))
        '421 4.3.2 shutting down'
        >>> reason(Exception(b"[AUTHENTICATIONFAILED] Authentication failed."))
        '[AUTHENTICATIONFAILED] Authentication failed.'
    """
    code, text = getattr(exc, "smtp_code", None), getattr(exc, "smtp_error", None)
    if isinstance(code, int) and text is not None:
        return f"{code} {decode(text)}"
    network = network_reason(exc)
    if network:
        return network
    if len(exc.args) == 1 and isinstance(exc.args[0], bytes):
        return decode(exc.args[0]) or type(exc).__name__
    return str(exc) or type(exc).__name__
