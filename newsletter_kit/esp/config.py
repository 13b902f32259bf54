"""The ESP settings (``settings esp``): which provider, where its API is, and how to find its
credentials (a reference, as for passwords: ``env:VAR`` or ``keyring:NAME``; never the secret).

>>> from newsletter_kit.store import open_store
>>> store = open_store(":memory:")
>>> esp = update_esp_settings(store, provider="mailgun", credential_ref="env:MAILGUN_API_KEY",
...                           domain="mg.example.org")
>>> esp.provider, esp.public_dict()["credential"]
('mailgun', '******** (env)')
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError
from ..settings import _load_section, _mask, _merge, _save_section, check_password_ref, resolve_password, validate_host
from ..store import Store
from .events import PROVIDERS

__all__ = ["EspSettings", "load_esp_settings", "require_esp_settings", "update_esp_settings"]

#: The providers' API bases (``--api-url`` overrides them, e.g. for an EU region or a test server).
API_BASES = {"sendgrid": "https://api.sendgrid.com", "mailgun": "https://api.mailgun.net",
             "postmark": "https://api.postmarkapp.com"}
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.@-]{1,256}$")


@dataclass
class EspSettings:
    """An ESP as a second bounce source, and what the sender adds for it."""

    provider: str
    #: the API key (SendGrid, Mailgun), server token (Postmark) or AWS secret key (SES), by reference
    credential_ref: str | None = None
    #: AWS access key id (SES; not a secret); without it boto3's own chain (env, profile, role) is used
    key_id: str | None = None
    region: str | None = None
    queue_url: str | None = None
    #: SES configuration set: the message tags (our delivery id) travel with it
    configuration_set: str | None = None
    domain: str | None = None
    api_url: str | None = None
    #: SendGrid's Event Webhook verification key (public: base64 DER or PEM)
    public_key: str | None = None
    #: Mailgun's webhook signing key, by reference
    signing_key_ref: str | None = None
    #: an SNS signing certificate file used instead of fetching it from AWS
    sns_cert: str | None = None
    window_days: int = 7
    #: Mailgun indexes events late: each sync reads again from this many minutes before its cursor
    margin_minutes: int = 30

    def validate(self) -> list[str]:
        """Raise :class:`ValidationError` on an invalid field; return warnings."""
        if self.provider not in PROVIDERS:
            raise ValidationError(f"unknown provider {self.provider!r}: one of {', '.join(PROVIDERS)}", "provider")
        for name in ("credential_ref", "signing_key_ref"):
            if getattr(self, name):
                check_password_ref(getattr(self, name))
        if self.region and not _REGION.match(self.region):
            raise ValidationError(f"{self.region!r} is not an AWS region name (like eu-west-1)", "region")
        if self.queue_url:
            _check_url(self.queue_url, "queue_url")
        if self.api_url:
            _check_url(self.api_url, "api_url")
        if self.domain:
            self.domain = validate_host(self.domain, "domain")
        if self.configuration_set and not _TAG_VALUE.match(self.configuration_set):
            raise ValidationError("the configuration set name has characters SES does not allow", "configuration_set")
        if self.sns_cert:
            from ..settings import validate_ca_file

            self.sns_cert = validate_ca_file(self.sns_cert)
        if self.public_key:
            self.public_key = self.public_key.strip()
        for name in ("window_days", "margin_minutes"):
            value = int(getattr(self, name))
            if value < 0 or value > 3650 * 24 * 60:
                raise ValidationError(f"{name.replace('_', ' ')} is out of range", name)
            setattr(self, name, value)
        warnings = []
        if self.provider == "mailgun" and not self.domain:
            warnings.append("Mailgun needs --domain (the sending domain) for `bounces sync`")
        if self.provider == "ses" and not self.queue_url:
            warnings.append("SES events are pulled from an SQS queue: set --queue-url for `bounces sync`"
                            " (or import saved notifications with `bounces import-events`)")
        if self.provider == "ses" and not self.configuration_set:
            warnings.append("without --configuration-set, SES carries no message tag: bounces match by SES's"
                            " message id and our Message-ID only")
        return warnings

    def credential(self) -> str:
        """The API key / token the reference points to, read now."""
        return resolve_password(self.credential_ref)

    def signing_key(self) -> str | None:
        """Mailgun's webhook signing key, read now (None when not set)."""
        return resolve_password(self.signing_key_ref) if self.signing_key_ref else None

    def base_url(self) -> str:
        """The API base URL."""
        return (self.api_url or API_BASES.get(self.provider, "")).rstrip("/")

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"EspSettings({fields})"

    def public_dict(self) -> dict[str, Any]:
        """As ``settings show --json`` prints it (references masked)."""
        return {"provider": self.provider, "credential": _mask(self.credential_ref), "key-id": self.key_id,
                "region": self.region, "queue-url": self.queue_url, "configuration-set": self.configuration_set,
                "domain": self.domain, "api-url": self.api_url, "public-key": self.public_key,
                "signing-key": _mask(self.signing_key_ref), "sns-cert": self.sns_cert,
                "window-days": self.window_days, "margin-minutes": self.margin_minutes}


def _check_url(url: str, name: str) -> None:
    """https, or http only to this machine (a test or a local proxy)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    local = host == "localhost"
    try:
        local = local or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if parts.scheme not in ("https", "http") or not host or (parts.scheme == "http" and not local):
        raise ValidationError(f"{name.replace('_', ' ')} must be an https URL (http only to localhost)", name)
    if parts.username or parts.password:
        raise ValidationError(f"{name.replace('_', ' ')} must not carry a user or password", name)


_CLEARABLE = {"credential_ref", "key_id", "region", "queue_url", "configuration_set", "domain", "api_url",
              "public_key", "signing_key_ref", "sns_cert"}


def update_esp_settings(store: Store, **changes: Any) -> EspSettings:
    """Change the ESP settings (the first call needs ``provider``); ``""`` clears a field.
    Warnings are in ``.warnings`` of the CLI; here :func:`EspSettings.validate` returns them."""
    current = _load_section(store, "esp")
    settings: EspSettings = _merge(EspSettings, current, changes, ("provider",), _CLEARABLE)
    settings.validate()
    _save_section(store, "esp", settings)
    return settings


def load_esp_settings(store: Store) -> EspSettings | None:
    """The saved ESP settings, or None."""
    data = _load_section(store, "esp")
    return EspSettings(**data) if data else None


def require_esp_settings(store: Store) -> EspSettings:
    """The ESP settings, or a clear error telling how to set them."""
    settings = load_esp_settings(store)
    if settings is None:
        raise ValidationError("no ESP settings yet: run `newsletter-kit settings esp --provider ...` first")
    return settings


def show_all(store: Store) -> dict[str, Any]:
    """:func:`newsletter_kit.settings.show_settings`, with ``"esp"`` once an ESP is set (stores
    without one show what they always showed); credentials masked.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> show_all(open_store(":memory:"))
        {'smtp': None, 'bounce': None}
    """
    from ..settings import show_settings

    shown = show_settings(store)
    esp = load_esp_settings(store)
    if esp is not None:
        shown["esp"] = esp.public_dict()
    return shown
