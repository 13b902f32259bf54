"""smtplib, configured from :class:`~newsletter_kit.settings.SmtpSettings`.

TLS is always verified (system trust store, or the settings' ``ca_file``); AUTH over a plain
connection is refused unless the settings allow it. Every failure becomes a
:class:`~newsletter_kit.errors.NewsletterKitError` with a sentence a person can act on.

Example::

    with open_smtp(settings) as smtp:      # connected, TLS up, logged in
        smtp.send_message(message)
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable
from typing import Any

from .errors import AuthenticationFailed, CertificateError, ConnectionFailed, ValidationError
from .settings import SmtpSettings, resolve_password

#: ``factory(host, port, timeout=..., context=...)`` → an smtplib.SMTP; tests can inject one.
SmtpFactory = Callable[..., smtplib.SMTP]
DEFAULT_TIMEOUT = 30.0


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context: the system trust store, or only ``ca_file`` when given."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


def _where(settings: SmtpSettings) -> str:
    return f"SMTP server {settings.host}:{settings.port}"


def _tls_failure(settings: SmtpSettings, exc: BaseException) -> ConnectionFailed:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateError(
            f"{_where(settings)}: its TLS certificate is not trusted ({exc.verify_message}); "
            "give the CA that signed it with --ca-file"
        )
    return ConnectionFailed(f"{_where(settings)}: TLS handshake failed ({exc})")


def connect_smtp(settings: SmtpSettings, *, timeout: float = DEFAULT_TIMEOUT,
                 factory: SmtpFactory | None = None) -> smtplib.SMTP:
    """Connect and bring TLS up as the settings say, without logging in."""
    context = tls_context(settings.ca_file)
    try:
        if settings.tls == "ssl":
            make = factory or smtplib.SMTP_SSL
            smtp = make(settings.host, settings.port, timeout=timeout, context=context)
        else:
            make = factory or smtplib.SMTP
            smtp = make(settings.host, settings.port, timeout=timeout)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise _tls_failure(settings, exc) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise ConnectionFailed(f"cannot connect to {_where(settings)}: {_reason(exc)}") from None
    try:
        smtp.ehlo()
        if settings.tls == "starttls":
            if not smtp.has_extn("starttls"):
                raise ConnectionFailed(f"{_where(settings)} does not offer STARTTLS")
            smtp.starttls(context=context)
            smtp.ehlo()
    except (ssl.SSLError, ssl.CertificateError) as exc:
        _close(smtp)
        raise _tls_failure(settings, exc) from None
    except (OSError, smtplib.SMTPException) as exc:
        _close(smtp)
        raise ConnectionFailed(f"{_where(settings)}: {_reason(exc)}") from None
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
            f"({exc.smtp_code} {_decode(exc.smtp_error)})"
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise AuthenticationFailed(
            f"{_where(settings)} does not offer AUTH here; turn off 'requires authentication' "
            "or use TLS"
        ) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise ConnectionFailed(f"{_where(settings)}: {_reason(exc)}") from None


def open_smtp(settings: SmtpSettings, *, password: str | None = None,
              timeout: float = DEFAULT_TIMEOUT, factory: SmtpFactory | None = None) -> smtplib.SMTP:
    """Connect, bring TLS up and log in: a ready :class:`smtplib.SMTP` (a context manager)."""
    smtp = connect_smtp(settings, timeout=timeout, factory=factory)
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
    tls = {"ssl": "implicit TLS", "starttls": "STARTTLS", "none": "no TLS"}[settings.tls]
    results.append((True, f"{_where(settings)}: connected ({tls}"
                          + (", certificate verified)" if settings.tls != "none" else ")")))
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


def _decode(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running, and is the port right?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_decode(exc.smtp_error)}"
    return str(exc) or type(exc).__name__


# --- sending (campaigns build on this) ---------------------------------------------------
