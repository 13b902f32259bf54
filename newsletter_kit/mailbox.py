"""The bounce mailbox over IMAP (imapclient), configured from
:class:`~newsletter_kit.settings.BounceSettings`.

Example::

    with open_imap(settings) as imap:
        print(list_folders(imap))
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from .errors import AuthenticationFailed, CertificateError, ConnectionFailed, MailboxError, ValidationError
from .settings import BounceSettings, resolve_password
from .transport import tls_context

#: ``factory(host, port, ssl=..., ssl_context=..., timeout=...)`` → an IMAPClient.
ImapFactory = Callable[..., imapclient.IMAPClient]
DEFAULT_TIMEOUT = 30.0


def _where(settings: BounceSettings) -> str:
    return f"IMAP server {settings.host}:{settings.port}"


def _tls_failure(settings: BounceSettings, exc: BaseException) -> ConnectionFailed:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateError(
            f"{_where(settings)}: its TLS certificate is not trusted ({exc.verify_message}); "
            "give the CA that signed it with --ca-file"
        )
    return ConnectionFailed(f"{_where(settings)}: TLS handshake failed ({exc})")


def connect_imap(settings: BounceSettings, *, timeout: float = DEFAULT_TIMEOUT,
                 factory: ImapFactory | None = None) -> imapclient.IMAPClient:
    """Connect and bring TLS up as the settings say, without logging in."""
    make = factory or imapclient.IMAPClient
    context = tls_context(settings.ca_file)
    try:
        imap = make(settings.host, port=settings.port, ssl=settings.tls == "ssl",
                    ssl_context=context, timeout=timeout)
        if settings.tls == "starttls":
            imap.starttls(context)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise _tls_failure(settings, exc) from None
    except (OSError, IMAPClientError) as exc:
        raise ConnectionFailed(f"cannot connect to {_where(settings)}: {_reason(exc)}") from None
    return imap


def open_imap(settings: BounceSettings, *, password: str | None = None,
              timeout: float = DEFAULT_TIMEOUT, factory: ImapFactory | None = None) -> imapclient.IMAPClient:
    """Connect, bring TLS up and log in: a ready IMAPClient (usable as a context manager)."""
    if settings.tls == "none" and not settings.allow_plain_auth:
        raise ValidationError("refusing to log in over an unencrypted connection (see --allow-plain-auth)")
    secret = password if password is not None else resolve_password(settings.password_ref)
    imap = connect_imap(settings, timeout=timeout, factory=factory)
    try:
        imap.login(settings.user, secret)
    except LoginError as exc:
        _logout(imap)
        raise AuthenticationFailed(
            f"{_where(settings)} refused the user name or password for {settings.user!r} ({_reason(exc)})"
        ) from None
    except (OSError, IMAPClientError) as exc:
        _logout(imap)
        raise ConnectionFailed(f"{_where(settings)}: {_reason(exc)}") from None
    return imap


def list_folders(imap: imapclient.IMAPClient) -> list[str]:
    """The folder names the server lists, INBOX first, then alphabetical."""
    try:
        names = [name for _flags, _delim, name in imap.list_folders()]
    except (OSError, IMAPClientError) as exc:
        raise MailboxError(f"the IMAP server did not list its folders: {_reason(exc)}") from None
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return sorted(names, key=lambda n: (n.upper() != "INBOX", n.lower()))


def fetch_folder_names(settings: BounceSettings, *, password: str | None = None,
                       factory: ImapFactory | None = None) -> list[str]:
    """Log in and list the folders (what the "Folder to monitor" picker shows)."""
    imap = open_imap(settings, password=password, factory=factory)
    try:
        return list_folders(imap)
    finally:
        _logout(imap)


def check_imap(settings: BounceSettings, *, password: str | None = None,
               factory: ImapFactory | None = None) -> list[tuple[bool, str]]:
    """Try the mailbox step by step; a list of (ok, sentence) for ``settings test``."""
    try:
        imap = connect_imap(settings, factory=factory)
    except ConnectionFailed as exc:
        return [(False, str(exc))]
    tls = {"ssl": "implicit TLS", "starttls": "STARTTLS", "none": "no TLS"}[settings.tls]
    results = [(True, f"{_where(settings)}: connected ({tls}"
                      + (", certificate verified)" if settings.tls != "none" else ")"))]
    try:
        if settings.tls == "none" and not settings.allow_plain_auth:
            raise ValidationError("refusing to log in over an unencrypted connection (see --allow-plain-auth)")
        secret = password if password is not None else resolve_password(settings.password_ref)
        try:
            imap.login(settings.user, secret)
        except LoginError as exc:
            raise AuthenticationFailed(
                f"{_where(settings)} refused the user name or password for {settings.user!r} ({_reason(exc)})"
            ) from None
        results.append((True, f"{_where(settings)}: logged in as {settings.user}"))
        folders = list_folders(imap)
        if settings.folder in folders:
            results.append((True, f"{_where(settings)}: folder {settings.folder!r} found"))
        else:
            results.append((False, f"{_where(settings)}: folder {settings.folder!r} not found; "
                                   f"the server lists: {', '.join(folders)}"))
    except Exception as exc:  # reported, not raised: the point is to say what works
        results.append((False, str(exc)))
    finally:
        _logout(imap)
    return results


def _logout(imap: imapclient.IMAPClient) -> None:
    try:
        imap.logout()
    except (OSError, IMAPClientError):
        try:
            imap.shutdown()
        except OSError:
            pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running, and is the port right?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    text: Any = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text) or type(exc).__name__


# --- fetching bounces (incremental by UIDVALIDITY + UID) ---------------------------------
