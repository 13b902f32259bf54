"""Why a call failed, in one phrase a person can act on: the server's reply (SMTP code and text,
IMAP text), a socket failure in plain words, else the exception's own text.

Its own module, below the transport (:mod:`~newsletter_kit.net`) and the readers of bounces
(:mod:`~newsletter_kit.ingest`), so that reading bounces needs nothing of the send path.

>>> reason(ConnectionRefusedError(111, "Connection refused"))
'connection refused (is the server running, and is the port right?)'
"""

from __future__ import annotations

import socket
from typing import Any

__all__ = ["decode", "network_reason", "reason"]


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
