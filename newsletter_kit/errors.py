"""The exceptions newsletter_kit raises.

Every error a user can cause or meet derives from :class:`NewsletterKitError`; the CLI prints it
as one line and the panels show it in their message area.
"""

from __future__ import annotations


class NewsletterKitError(Exception):
    """Root of every error newsletter_kit raises on purpose."""

    #: The command line's exit status when this error ends a command (README: "Exit codes"):
    #: 1 something to fix first; 75 (EX_TEMPFAIL) nothing to fix, run the command again later.
    exit_code = 1


class ConfigError(NewsletterKitError):
    """A setting is missing or invalid."""


class ValidationError(ConfigError):
    """A value given by the user does not pass validation (field name in ``field``)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class SecretError(NewsletterKitError):
    """A password reference cannot be resolved (unset variable, no keyring backend...)."""


class StoreError(NewsletterKitError):
    """The SQLite store cannot be opened or is from a newer version."""


class StoreMissing(StoreError):
    """There is no store at the path given (a command that only reads never creates one)."""


class StoreBusy(StoreError):
    """Another process held the store's lock for longer than the busy timeout: run again later."""

    exit_code = 75


class ConnectionFailed(NewsletterKitError):
    """A mail server cannot be reached, or its TLS handshake failed."""

    exit_code = 75  # the server may be back later; a TLS mismatch says 1 (net.tls_failure)


class AuthenticationFailed(NewsletterKitError):
    """The server refused the user name or password."""


class CertificateError(ConnectionFailed):
    """The server's TLS certificate is not trusted."""

    exit_code = 1


class ImportFailed(NewsletterKitError):
    """A CSV file cannot be read or has no usable row."""


class TemplateError(NewsletterKitError):
    """A subject/HTML/text template does not compile or render."""


class CampaignError(NewsletterKitError):
    """A campaign is unknown, duplicated, or cannot be sent as asked."""


class QuotaExhausted(NewsletterKitError):
    """Today's send rate is used up."""


class MailboxError(NewsletterKitError):
    """The bounce mailbox cannot be read (folder missing, IMAP error)."""


class ExportError(NewsletterKitError):
    """The review tables cannot be exported (folder not writable, unknown format, bad value)."""


class EspError(NewsletterKitError):
    """An ESP's API refused us or could not be read (credentials, a bad answer, too many retries)."""


class EspUnavailable(EspError):
    """The ESP's API is down or throttling us past our retries: nothing to fix, sync again later."""

    exit_code = 75
