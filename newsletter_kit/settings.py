"""SMTP and bounce-mailbox settings: every field of the CRM page, validated, stored without secrets.

A password is never stored. A setting holds a *reference* that is resolved when connecting:

- ``env:VAR``        the environment variable VAR (what cron jobs and CI use);
- ``keyring:NAME``   the system keyring, service ``newsletter_kit``, user NAME;
- ``session:NAME``   held in this Python process only (a notebook kernel), gone when it stops.

Example::

    >>> from newsletter_kit.store import open_store
    >>> store = open_store(":memory:")
    >>> smtp, warnings = update_smtp_settings(store, host="smtp.example.org", port=587,
    ...     user="news@example.org", password_ref="env:SMTP_PASSWORD", daily_limit=400,
    ...     from_addr="news@example.org")
    >>> smtp.tls, smtp.auth
    ('starttls', True)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import warnings as _warnings
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .addresses import ascii_address, validate_address
from .errors import ConfigError, SecretError, ValidationError
from .policy import ThresholdPolicy
from .store import Store, now_iso

TlsMode = Literal["ssl", "starttls", "none"]
TLS_MODES: tuple[str, ...] = ("ssl", "starttls", "none")
EXCLUSION_POLICIES: tuple[str, ...] = ("campaign", "global")
MASK = "********"
KEYRING_SERVICE = "newsletter_kit"

#: Hosts of free mail providers and the daily limit they enforce on a normal account.
FREE_PROVIDER_LIMIT = 500
FREE_PROVIDER_HOSTS = (
    "gmail.com", "googlemail.com", "smtp.gmail.com", "outlook.com", "office365.com",
    "hotmail.com", "live.com", "smtp-mail.outlook.com", "smtp.office365.com",
    "yahoo.com", "mail.yahoo.com", "libero.it", "gmx.com", "gmx.net",
)

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


# --- secrets ------------------------------------------------------------------------------

_SESSION_SECRETS: dict[str, str] = {}


def hold_password_for_session(name: str, password: str) -> str:
    """Keep ``password`` in this process only; returns the reference ``session:NAME``.

    Example::

        >>> ref = hold_password_for_session("smtp", "s3cret")
        >>> resolve_password(ref)
        's3cret'
    """
    _SESSION_SECRETS[name] = password
    return f"session:{name}"


def store_password_in_keyring(name: str, password: str) -> str:
    """Put ``password`` in the system keyring; returns the reference ``keyring:NAME``.

    Raises :class:`SecretError` when no keyring backend exists (a headless server): then use
    an environment variable or :func:`hold_password_for_session`, never a plaintext file.
    """
    import keyring
    from keyring.errors import KeyringError, NoKeyringError

    try:
        keyring.set_password(KEYRING_SERVICE, name, password)
    except NoKeyringError as exc:
        raise SecretError(
            "no system keyring on this machine (common on a headless server): use an "
            "environment variable (--password-env VAR) or keep the password for this kernel only"
        ) from exc
    except KeyringError as exc:
        raise SecretError(f"the system keyring refused the password: {exc}") from exc
    return f"keyring:{name}"


def check_password_ref(ref: str) -> str:
    """Validate the *form* of a password reference (not whether it resolves)."""
    scheme, sep, name = ref.partition(":")
    if not sep or scheme not in ("env", "keyring", "session") or not name:
        raise ValidationError(
            f"password reference {ref!r} must be env:VAR, keyring:NAME or session:NAME "
            "(passwords themselves are never stored)",
            "password",
        )
    if scheme == "env" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValidationError(f"{name!r} is not an environment variable name", "password")
    return ref


def resolve_password(ref: str | None) -> str:
    """Read the password a reference points to, at connect time.

    Example::

        >>> os.environ["NK_DOC_PW"] = "pw"
        >>> resolve_password("env:NK_DOC_PW")
        'pw'
    """
    if not ref:
        raise SecretError("no password is configured")
    scheme, _, name = check_password_ref(ref).partition(":")
    if scheme == "env":
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"the environment variable {name} (the password) is not set")
        return value
    if scheme == "session":
        if name not in _SESSION_SECRETS:
            raise SecretError(
                "the password was held for a notebook kernel that has stopped: enter it again, "
                "or use an environment variable"
            )
        return _SESSION_SECRETS[name]
    import keyring
    from keyring.errors import KeyringError, NoKeyringError

    try:
        value = keyring.get_password(KEYRING_SERVICE, name)
    except NoKeyringError as exc:
        raise SecretError(
            "the password is in the system keyring, but this machine has no keyring backend: "
            "use an environment variable (--password-env VAR)"
        ) from exc
    except KeyringError as exc:
        raise SecretError(f"the system keyring failed: {exc}") from exc
    if value is None:
        raise SecretError(f"the system keyring has no password for {name!r}")
    return value


# --- validation helpers -------------------------------------------------------------------


def validate_host(host: str, field_name: str = "host") -> str:
    """A DNS host name or an IP address, as typed in "Server name"."""
    host = (host or "").strip()
    if not host:
        raise ValidationError("the server name is required", field_name)
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValidationError(f"{host!r} is not a valid server name", field_name)
    return host


def validate_port(port: Any, field_name: str = "port") -> int:
    """A TCP port, 1–65535."""
    try:
        value = int(port)
    except (TypeError, ValueError):
        raise ValidationError(f"port {port!r} is not a number", field_name) from None
    if not 1 <= value <= 65535:
        raise ValidationError(f"port {value} is out of range (1-65535)", field_name)
    return value


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# Shown escaped too: bidirectional overrides and isolates reorder what a terminal displays.
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def validate_folder(name: Any, field_name: str = "folder") -> str:
    """An IMAP folder name: not empty, no control character or line separator.

    Example::

        >>> validate_folder("Bounces/Processed")
        'Bounces/Processed'
    """
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"the {field_name.replace('_', ' ')} name is required", field_name)
    bad = _CONTROL.search(name)
    if bad:
        from .headers import describe_char, shown

        raise ValidationError(f"the {field_name.replace('_', ' ')} name {shown(name)} contains "
                              f"{describe_char(bad.group(0))}", field_name)
    return name


def _same_folder(a: str, b: str) -> bool:
    # RFC 3501: INBOX is case-insensitive, other names are not.
    return a == b or a.upper() == b.upper() == "INBOX"


def printable(value: Any) -> str:
    """``value`` as text for a terminal: control characters, line separators and bidirectional
    overrides escaped (``\\x1b``, ``\\u2028``), so a stored value can never move the cursor,
    fake a line or reorder what is shown.

    Example::

        >>> printable("INBOX\x1b[2J\u202e")
        'INBOX\\\\x1b[2J\\\\u202e'
    """
    text = "" if value is None else str(value)
    return _HIDDEN.sub(lambda m: m.group(0).encode("unicode_escape", "backslashreplace").decode("ascii"), text)


def validate_positive(value: Any, what: str, field_name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{what} must be a whole number, not {value!r}", field_name) from None
    if number < 1:
        raise ValidationError(f"{what} must be at least 1, not {number}", field_name)
    return number


def validate_tls(mode: str, field_name: str = "tls") -> str:
    if mode not in TLS_MODES:
        raise ValidationError(f"TLS mode {mode!r} must be one of ssl, starttls, none", field_name)
    return mode


def validate_ca_file(path: str | None) -> str | None:
    if not path:
        return None
    if not Path(path).is_file():
        raise ValidationError(f"CA file {path} does not exist", "ca_file")
    return str(Path(path).resolve())


def validate_timezone(zone: str) -> str:
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{zone!r} is not a known time zone (e.g. Europe/Rome)", "timezone") from None
    return zone


def local_timezone() -> str:
    """The machine's IANA time zone name (``UTC`` when it cannot be told)."""
    import tzlocal

    try:
        return str(tzlocal.get_localzone_name() or "UTC")
    except Exception:  # tzlocal raises a variety of errors on odd setups; UTC is safe
        return "UTC"


def is_free_provider(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == h or host.endswith("." + h) for h in FREE_PROVIDER_HOSTS)


def _tls_warnings(tls: str, port: int) -> list[str]:
    if tls == "ssl" and port == 587:
        return ["port 587 normally expects STARTTLS, not implicit TLS (ssl is usually on 465)"]
    if tls == "starttls" and port == 465:
        return ["port 465 normally expects implicit TLS (ssl), not STARTTLS (usually on 587)"]
    return []


def _auth_checks(auth: bool, tls: str, allow_plain: bool, user: str | None, ref: str | None) -> None:
    if not auth:
        return
    if not user:
        raise ValidationError("authentication is on, so a user name is required", "user")
    if not ref:
        raise ValidationError(
            "authentication is on, so a password reference is required (--password-env VAR)",
            "password",
        )
    if tls == "none" and not allow_plain:
        raise ValidationError(
            "refusing to send the password over an unencrypted connection: use TLS "
            "(ssl or starttls), or pass --allow-plain-auth if you really mean it",
            "tls",
        )


# --- the two sections ---------------------------------------------------------------------


@dataclass
class SmtpSettings:
    """The dedicated SMTP server ("Dedicated SMTP" on the CRM page)."""

    host: str
    port: int
    from_addr: str
    daily_limit: int
    user: str | None = None
    password_ref: str | None = None
    auth: bool = False
    tls: str = "starttls"
    allow_plain_auth: bool = False
    ca_file: str | None = None
    exclusion: str = "campaign"
    unsubscribe_url: str | None = None
    timezone: str = field(default_factory=local_timezone)
    dkim_selector: str | None = None
    dkim_key_file: str | None = None  # the path only: the key is read when a run starts
    dkim_domain: str | None = None
    from_name: str | None = None  # the From display name ("Shop News"); from_addr stays bare
    reply_to: str | None = None  # a Reply-To header value: addr or "Name <addr>"
    list_id: str | None = None  # "Name <label.domain>"; None: derived from each campaign's list

    def validate(self) -> list[str]:
        """Raise :class:`ValidationError` on an invalid field; return warnings (strings)."""
        from .addresses import check_from, parse_from
        from .headers import check_unsubscribe_url, parse_list_id  # email.*: imported when saving

        self.host = validate_host(self.host)
        self.port = validate_port(self.port)
        name, self.from_addr = parse_from(self.from_addr, "From address")
        self.from_name = name or self.from_name or None
        if self.from_name:  # checked as it will be written: quoted or encoded, read back the same
            check_from(f"{_quoted(self.from_name)} <{self.from_addr}>")
        if self.reply_to:
            self.reply_to = check_from(self.reply_to, "Reply-To address")
        if self.list_id:
            description, list_id = parse_list_id(self.list_id)
            phrase = _quoted(description) if set('<>"\\') & set(description) else description
            self.list_id = f"{phrase} <{list_id}>" if description else f"<{list_id}>"
        self.daily_limit = validate_positive(self.daily_limit, "the send rate (emails per day)", "daily_limit")
        self.tls = validate_tls(self.tls)
        if self.password_ref:
            check_password_ref(self.password_ref)
        _auth_checks(self.auth, self.tls, self.allow_plain_auth, self.user, self.password_ref)
        self.ca_file = validate_ca_file(self.ca_file)
        if self.exclusion not in EXCLUSION_POLICIES:
            raise ValidationError(f"exclusion policy {self.exclusion!r} must be campaign or global", "exclusion")
        if self.unsubscribe_url:
            self.unsubscribe_url = check_unsubscribe_url(self.unsubscribe_url)
        self.timezone = validate_timezone(self.timezone)
        self._validate_dkim()
        warnings = _tls_warnings(self.tls, self.port)
        if is_free_provider(self.host) and self.daily_limit > FREE_PROVIDER_LIMIT:
            warnings.append(
                f"{self.host} is a free provider, which caps sending at about "
                f"{FREE_PROVIDER_LIMIT} emails a day; a send rate of {self.daily_limit} will hit "
                "its limit and may get the account blocked"
            )
        return warnings

    def _validate_dkim(self) -> None:
        """DKIM is on when a selector and a key file are set; the key must load (RSA/Ed25519)."""
        if not (self.dkim_selector or self.dkim_key_file or self.dkim_domain):
            return
        if not (self.dkim_selector and self.dkim_key_file):
            missing = "--dkim-key-file" if self.dkim_selector else "--dkim-selector"
            raise ValidationError(f"DKIM signing needs both --dkim-selector and --dkim-key-file "
                                  f"({missing} is missing)", "dkim_selector")
        from .signing import load_key, validate_selector

        self.dkim_selector = validate_selector(self.dkim_selector)
        load_key(self.dkim_key_file)
        self.dkim_key_file = str(Path(self.dkim_key_file).resolve())
        if self.dkim_domain:
            self.dkim_domain = validate_host(self.dkim_domain, "dkim_domain").rstrip(".").lower()

    @property
    def signing_domain(self) -> str | None:
        """The DKIM ``d=`` domain: ``dkim_domain``, else the From domain; None when not signing."""
        if not (self.dkim_selector and self.dkim_key_file):
            return None
        return self.dkim_domain or self.from_addr.rpartition("@")[2].rstrip(">").lower()

    @property
    def from_header(self) -> str:
        """The From as written in messages and typed in ``--from``: ``Name <addr>`` or ``addr``.

        Example::

            >>> SmtpSettings("smtp.example.org", 587, "news@example.org", 10, from_name="Shop, News").from_header
            '"Shop, News" <news@example.org>'
        """
        if not self.from_name:
            return self.from_addr
        from .headers import format_address

        return format_address(self.from_name, self.from_addr)

    def __repr__(self) -> str:
        return _masked_repr(self)

    def public_dict(self) -> dict[str, Any]:
        """The settings as ``settings show --json`` prints them: CLI long names, password masked."""
        return {
            "host": self.host, "port": self.port, "user": self.user,
            "password": _mask(self.password_ref), "password-env": _env_name(self.password_ref),
            "auth": self.auth, "tls": self.tls, "allow-plain-auth": self.allow_plain_auth,
            "ca-file": self.ca_file, "daily-limit": self.daily_limit, "exclusion": self.exclusion,
            "from": self.from_header, "reply-to": self.reply_to, "list-id": self.list_id,
            "unsubscribe-url": self.unsubscribe_url,
            "timezone": self.timezone, "dkim-selector": self.dkim_selector,
            "dkim-key-file": self.dkim_key_file, "dkim-domain": self.dkim_domain,
        }


@dataclass
class BounceSettings:
    """The bounce mailbox ("Bounce settings (IMAP)" on the CRM page)."""

    host: str
    port: int
    user: str
    #: The single threshold (hard and soft together), used when neither per-kind one is set.
    threshold: int | None = None
    password_ref: str | None = None
    tls: str = "starttls"
    allow_plain_auth: bool = False
    ca_file: str | None = None
    bounce_address: str | None = None
    folder: str = "INBOX"
    count_policy: bool = False
    processed_folder: str | None = None
    stale_after_days: int | None = None
    reset_on_success: bool = False
    #: Envelope sender LOCAL+TOKEN@DOMAIN per delivery (VERP), the token signed with the store's key.
    verp: bool = False
    #: Count reports that match no delivery we made (forged or unrelated ones) too.
    count_unmatched: bool = False
    #: Per-kind thresholds (issue 15); unset: the defaults, or the single threshold when set.
    hard_threshold: int | None = None
    soft_threshold: int | None = None
    soft_window_days: int | None = None
    #: A complaint (ARF feedback report) suppresses the address at once.
    suppress_on_complaint: bool = True

    def validate(self) -> list[str]:
        """Raise :class:`ValidationError` on an invalid field; return warnings (strings)."""
        self.host = validate_host(self.host)
        self.port = validate_port(self.port)
        if not self.user:
            raise ValidationError("the user name of the bounce mailbox is required", "user")
        if self.threshold is not None:
            self.threshold = validate_positive(self.threshold, "the bounce threshold", "threshold")
        for name, what in (("hard_threshold", "the hard-bounce threshold"),
                           ("soft_threshold", "the soft-bounce threshold"),
                           ("soft_window_days", "the soft-bounce window (days)")):
            if getattr(self, name) is not None:
                setattr(self, name, validate_positive(getattr(self, name), what, name))
        self.suppress_on_complaint = bool(self.suppress_on_complaint)
        self.tls = validate_tls(self.tls)
        if self.password_ref:
            check_password_ref(self.password_ref)
        _auth_checks(True, self.tls, self.allow_plain_auth, self.user, self.password_ref)
        self.ca_file = validate_ca_file(self.ca_file)
        if not self.bounce_address and "@" in self.user:
            self.bounce_address = self.user
        if not self.bounce_address:
            raise ValidationError(
                "the bounce address is required when the user name is not an email address",
                "bounce_address",
            )
        self.bounce_address = ascii_address(validate_address(self.bounce_address, "bounce_address"),
                                            "bounce_address")
        if self.verp:
            from .tokens import check_verp_address

            check_verp_address(self.bounce_address)
        self.folder = validate_folder(self.folder, "folder")
        if self.processed_folder:
            self.processed_folder = validate_folder(self.processed_folder, "processed_folder")
            if _same_folder(self.processed_folder, self.folder):
                raise ValidationError(
                    f"the processed folder {self.processed_folder!r} is the monitored folder: "
                    "processed messages must go elsewhere (or clear --processed-folder)",
                    "processed_folder")
        if self.stale_after_days is not None:
            self.stale_after_days = validate_positive(self.stale_after_days, "stale-after days", "stale_after_days")
        warnings: list[str] = []
        if self.tls == "ssl" and self.port == 143:
            warnings.append("port 143 normally expects STARTTLS, not implicit TLS (usually on 993)")
        if self.tls == "starttls" and self.port == 993:
            warnings.append("port 993 normally expects implicit TLS (ssl), not STARTTLS (usually on 143)")
        return warnings

    @property
    def policy(self) -> ThresholdPolicy:
        """The threshold policy these settings hold (threshold and counting rules).

        >>> BounceSettings("imap.example.org", 993, "b@example.org", 2, count_policy=True).policy.threshold
        2
        """
        return ThresholdPolicy(self.threshold, self.count_policy, self.stale_after_days, self.reset_on_success,
                               self.count_unmatched, self.hard_threshold, self.soft_threshold,
                               self.soft_window_days, self.suppress_on_complaint)

    def __repr__(self) -> str:
        return _masked_repr(self)

    def public_dict(self) -> dict[str, Any]:
        """The settings as ``settings show --json`` prints them: CLI long names, password masked."""
        return {
            "host": self.host, "port": self.port, "user": self.user,
            "password": _mask(self.password_ref), "password-env": _env_name(self.password_ref),
            "tls": self.tls, "allow-plain-auth": self.allow_plain_auth, "ca-file": self.ca_file,
            "bounce-address": self.bounce_address, "folder": self.folder,
            "threshold": self.threshold, "count-policy": self.count_policy,
            "processed-folder": self.processed_folder, "stale-after-days": self.stale_after_days,
            "reset-on-success": self.reset_on_success, "verp": self.verp,
            "count-unmatched": self.count_unmatched,
            "hard-threshold": self.hard_threshold, "soft-threshold": self.soft_threshold,
            "soft-window-days": self.soft_window_days, "suppress-on-complaint": self.suppress_on_complaint,
            "policy": self.policy.describe(),
        }


def _mask(ref: str | None) -> str | None:
    return f"{MASK} ({ref.partition(':')[0]})" if ref else None


def _env_name(ref: str | None) -> str | None:
    return ref[4:] if ref and ref.startswith("env:") else None


def _masked_repr(obj: Any) -> str:
    parts = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        parts.append(f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


_SMTP_REQUIRED = ("host", "port", "from_addr", "daily_limit")
_BOUNCE_REQUIRED = ("host", "port", "user")
_CLEARABLE_SMTP = {"user", "password_ref", "ca_file", "unsubscribe_url", "dkim_selector",
                   "dkim_key_file", "dkim_domain", "from_name", "reply_to", "list_id"}
_CLEARABLE_BOUNCE = {"password_ref", "ca_file", "bounce_address", "processed_folder", "stale_after_days",
                     "threshold", "hard_threshold", "soft_threshold", "soft_window_days"}


def _merge(cls: type, current: Mapping[str, Any] | None, changes: Mapping[str, Any],
           required: tuple[str, ...], clearable: set[str]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(changes) - names
    if unknown:
        raise ValidationError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    data: dict[str, Any] = dict(current or {})
    for key, value in changes.items():
        if value is None:
            continue  # not given: keep what is stored
        if value == "":
            if key not in clearable:
                raise ValidationError(f"{key.replace('_', ' ')} cannot be cleared", key)
            data[key] = None
        else:
            data[key] = value
    missing = [k for k in required if data.get(k) in (None, "")]
    if missing:
        flags = ", ".join("--" + _flag_name(k) for k in missing)
        raise ValidationError(f"missing required setting(s): {flags}", missing[0])
    return cls(**data)


def _quoted(text: str) -> str:
    """``text`` as a quoted-string (for parsing back a name or description we already checked)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flag_name(key: str) -> str:
    return {"from_addr": "from", "password_ref": "password-env"}.get(key, key.replace("_", "-"))


def _load_section(store: Store, section: str, *, replacing: bool = False) -> dict[str, Any] | None:
    """The saved section; one that cannot be read is a ConfigError, or None when ``replacing``
    (saving it again with every required flag is the way out)."""
    row = store.conn.execute("SELECT data FROM settings WHERE section = ?", (section,)).fetchone()
    if not row:
        return None
    try:
        data = json.loads(row[0])
    except ValueError as exc:
        data = exc
    if not isinstance(data, dict):  # written by hand or by another tool: say so, lose nothing
        if replacing:
            return None
        why = data if isinstance(data, Exception) else "not a JSON object"
        raise ConfigError(f"the {section} settings saved in the store cannot be read ({why}): "
                          f"set them again with `newsletter-kit settings {section}` and every required flag")
    return data


def _save_section(store: Store, section: str, obj: Any) -> None:
    data = dataclasses.asdict(obj)
    with store.transaction():
        store.conn.execute(
            "INSERT INTO settings (section, data, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (section) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
            (section, json.dumps(data, sort_keys=True), now_iso()))


def update_smtp_settings(store: Store, **changes: Any) -> tuple[SmtpSettings, list[str]]:
    """Change the SMTP settings: given fields replace stored ones, ``""`` clears an optional one.

    The first call must give host, port, from_addr and daily_limit. ``auth`` defaults to on
    when a user name is given. Returns the saved settings and the warnings to show.
    """
    current = _load_section(store, "smtp", replacing=True)
    if current is None and changes.get("auth") is None and changes.get("user"):
        changes = {**changes, "auth": True}
    if changes.get("dkim_selector") == "":
        # An empty selector switches signing off: the key file and domain go with it.
        changes = {"dkim_key_file": "", "dkim_domain": "", **{k: v for k, v in changes.items()
                                                              if v is not None}}
    if changes.get("from_addr") and changes.get("from_name") is None:
        changes = {**changes, "from_name": ""}  # --from says the whole From: a bare address has no name
    settings = _merge(SmtpSettings, current, changes, _SMTP_REQUIRED, _CLEARABLE_SMTP)
    warnings = settings.validate()
    _check_campaign_headers(store, settings, load_bounce_settings(store))
    _save_section(store, "smtp", settings)
    return settings, warnings


def update_bounce_settings(store: Store, **changes: Any) -> tuple[BounceSettings, list[str]]:
    """Change the bounce-mailbox settings, as :func:`update_smtp_settings` does for SMTP.

    The first call must give host, port and user; the bounce address defaults to the user name
    when that is an address.  The thresholds: ``hard_threshold``, ``soft_threshold`` and
    ``soft_window_days`` (defaults 1, 3 within 30 days), or the single ``threshold`` when
    neither per-kind one is set; ``""`` clears one.
    """
    current = _load_section(store, "bounce", replacing=True)
    if current and changes.get("user") and current.get("bounce_address") == current.get("user"):
        # The address was defaulted from the old user name: follow the new one.
        if changes.get("bounce_address") is None:
            changes = {**changes, "bounce_address": ""}
    settings = _merge(BounceSettings, current, changes, _BOUNCE_REQUIRED, _CLEARABLE_BOUNCE)
    warnings = settings.validate()
    _check_campaign_headers(store, load_smtp_settings(store), settings)
    _save_section(store, "bounce", settings)
    return settings, warnings


def _check_campaign_headers(store: Store, smtp: SmtpSettings | None, bounce: BounceSettings | None) -> None:
    """Refuse settings that would give a campaign not yet done a header line over 998 octets
    (the unsubscribe URL and the bounce address go into every message's List-Unsubscribe)."""
    if smtp is None:
        return
    from .messages import check_list_unsubscribe

    envelope = bounce.bounce_address if bounce and bounce.bounce_address else smtp.from_addr
    for (name,) in store.conn.execute("SELECT name FROM campaigns WHERE status NOT IN ('done', 'pruned')"):
        try:
            check_list_unsubscribe(name, envelope, smtp.unsubscribe_url)
        except ValidationError as exc:
            raise ValidationError(f"with these settings, campaign {name[:60]!r}: {exc}",
                                  "unsubscribe_url") from None


def load_smtp_settings(store: Store) -> SmtpSettings | None:
    """The saved SMTP settings, or None when none were saved."""
    data = _load_section(store, "smtp")
    return SmtpSettings(**data) if data else None


def load_bounce_settings(store: Store) -> BounceSettings | None:
    """The saved bounce-mailbox settings, or None when none were saved."""
    data = _load_section(store, "bounce")
    return BounceSettings(**data) if data else None


def require_smtp_settings(store: Store) -> SmtpSettings:
    """The SMTP settings, or a clear error telling the user how to set them."""
    settings = load_smtp_settings(store)
    if settings is None:
        raise ValidationError("no SMTP settings yet: run `newsletter-kit settings smtp ...` first")
    return settings


def require_bounce_settings(store: Store) -> BounceSettings:
    """The bounce-mailbox settings, or a clear error telling the user how to set them."""
    settings = load_bounce_settings(store)
    if settings is None:
        raise ValidationError("no bounce settings yet: run `newsletter-kit settings bounce ...` first")
    return settings


def show_settings(store: Store) -> dict[str, Any]:
    """``{"smtp": {...}, "bounce": {...}}`` with passwords masked (None for an unset section).

    (``settings show`` adds the ESP's section when one is set: :func:`newsletter_kit.esp.config.show_all`.)
    """
    smtp, bounce = load_smtp_settings(store), load_bounce_settings(store)
    return {
        "smtp": smtp.public_dict() if smtp else None,
        "bounce": bounce.public_dict() if bounce else None,
    }


def warn(messages: list[str]) -> None:
    """Emit settings warnings through :mod:`warnings` (for notebook users of the plain API)."""
    for message in messages:
        _warnings.warn(message, UserWarning, stacklevel=3)
