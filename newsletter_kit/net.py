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

import ssl
from typing import Protocol

from .errors import CertificateError, ConnectionFailed
from .failures import decode, network_reason, reason  # re-exported: the wording transport and imap share

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
