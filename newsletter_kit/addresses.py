"""Email addresses: the one place that normalises, validates and scans them.

Four jobs, four strictness levels, each for its own kind of input:

- :func:`normalize_address`: a contact or a suppression typed or imported by a person: stripped,
  lowercased, a plain ``local@domain`` (no display name), an internationalised domain kept in
  its ASCII (punycode) form, the one bounce reports quote.
- :func:`validate_address`: an address in the settings (the From, the bounce address), as
  email-validator normalises it.
- :func:`check_plain_address`, :func:`check_recipient`, :func:`check_from`: what the renderer
  puts on the wire (the envelope, To, From); nothing that could start a new header line.
- :func:`is_valid_address`, :func:`lenient_address`, :func:`scan_addresses`: untrusted text of
  bounce reports (any MTA, any forger): strict ASCII dot-atom@domain, so whatever comes out can
  go into SQL, logs and SMTP commands.  :func:`cut_at_line_break` and :func:`untrusted_lines`
  treat a line break spelled as text (``\\r\\n``, ``%0d%0a``, ``=0D=0A``, ``&#10;``, an
  encoded word...) as the end of the value: what follows it is never an address of the report.

email-validator is imported on first use: importing this module stays cheap for the CLI.

>>> normalize_address("  Ann.Lee@Example.ORG ")
'ann.lee@example.org'
>>> lenient_address("<Mario.Rossi@Example.IT>"), is_valid_address("david...@gmail.com")
('mario.rossi@example.it', False)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

from .errors import ValidationError

__all__ = [
    "ascii_address",
    "check_from",
    "check_plain_address",
    "check_recipient",
    "cut_at_line_break",
    "is_valid_address",
    "lenient_address",
    "normalize_address",
    "parse_from",
    "scan_addresses",
    "untrusted_lines",
    "validate_address",
]


# --- contacts and suppressions ---------------------------------------------------------------

# Characters that would let an address smuggle a header or a second address into a message.
_FORBIDDEN = {"\r": "a line break", "\n": "a line break", "\0": "a NUL character",
              '"': "a quote", "<": "'<' (give the bare address, without a name)",
              ">": "'>' (give the bare address, without a name)", ",": "a comma (one address per row)",
              ";": "a semicolon (one address per row)"}
# The everyday address (lowercase ASCII dot-atom @ plain labels, alphabetic top-level domain),
# which email-validator is sure to accept as is: checked by a regex, 100 times faster.
_LOWER_ATEXT = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EVERYDAY = re.compile(r"(?=[^@]{1,64}@)" + _LOWER_ATEXT + r"(?:\." + _LOWER_ATEXT + r")*"
                       r"@(?:(?=[a-z0-9-]{1,63}\.)[a-z0-9]+(?:-[a-z0-9]+)*\.)+[a-z]{2,24}")


@functools.cache
def _special_use() -> frozenset[str]:
    import email_validator

    return frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)  # all single labels


def normalize_address(raw: Any) -> str:
    """A plain address (``local@domain``), stripped and lowercased; else :class:`ValidationError`.

    Display-name forms (``Ann <ann@example.org>``), quoted local parts, line breaks and
    internationalised local parts (which would need SMTPUTF8) are refused; an internationalised
    domain is kept in its ASCII (punycode) form, the one bounce reports quote.

    Example::

        >>> normalize_address("  Ann.Lee@Example.ORG ")
        'ann.lee@example.org'
        >>> normalize_address("Ann <ann@example.org>")
        Traceback (most recent call last):
        ...
        newsletter_kit.errors.ValidationError: 'Ann <ann@example.org>' is not a valid address: not a plain address: it contains '<' (give the bare address, without a name)
    """
    if not isinstance(raw, str):
        raise _invalid(raw, "not text")
    value = raw.strip().lower()
    if _everyday(value):
        return value
    if not value:
        raise _invalid(raw, "the address is empty")
    for char, what in _FORBIDDEN.items():
        if char in value:
            raise _invalid(raw, f"not a plain address: it contains {what}")
    if any(c.isspace() for c in value):
        raise _invalid(raw, "not a plain address: it contains a space")
    import email_validator

    try:
        info = email_validator.validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except email_validator.EmailNotValidError as exc:
        raise _invalid(raw, str(exc)) from None
    return str(info.ascii_email).lower()


def _everyday(value: str) -> bool:
    return (len(value) <= 254 and _EVERYDAY.fullmatch(value) is not None
            and value.rpartition(".")[2] not in _special_use())


def _invalid(raw: Any, reason: str) -> ValidationError:
    """A ValidationError naming the value; ``.reason`` is the why alone (for row reports)."""
    exc = ValidationError(f"{raw!r} is not a valid address: {reason}", "email")
    exc.reason = reason  # type: ignore[attr-defined]
    return exc


# --- settings --------------------------------------------------------------------------------


def validate_address(address: str, field_name: str = "address") -> str:
    """A single email address from the settings, normalised (domain lowercased); no DNS lookups.

    Example::

        >>> validate_address("News@Example.ORG")
        'news@example.org'
    """
    if not isinstance(address, str) or any(c in address for c in "\r\n\0"):
        raise ValidationError(f"{address!r} is not a valid email address", field_name)
    import email_validator

    try:
        info = email_validator.validate_email(address.strip(), check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValidationError(f"{address!r} is not a valid email address: {exc}", field_name) from None
    return str(info.normalized)


# --- what the renderer puts on the wire ---------------------------------------------------------

_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def check_recipient(email: str) -> str:
    """A recipient for the envelope and the To header (fast: called once per message).

    >>> check_recipient("ann@example.org")
    'ann@example.org'
    """
    if (not isinstance(email, str) or not _PLAIN_ADDRESS.fullmatch(email) or ".." in email
            or len(email) > 254):  # RFC 5321's longest path: no header line can outgrow 998 octets
        raise ValidationError(f"{email!r} is not a plain recipient address", "email")
    return email


def check_plain_address(value: str, what: str) -> str:
    """A bare ASCII address (no display name) that email-validator accepts; ``what`` names it.

    >>> check_plain_address("bounces@example.org", "bounce address")
    'bounces@example.org'
    """
    if not isinstance(value, str) or any(c in value for c in "\r\n\0<>\" ,;"):
        raise ValidationError(f"the {what} {value!r} must be a plain address", what)
    import email_validator

    try:
        email_validator.validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except email_validator.EmailNotValidError as exc:
        raise ValidationError(f"the {what} {value!r} is not valid: {exc}", what) from None
    return value


def parse_from(value: str, what: str = "From address") -> tuple[str, str]:
    """``(display name or "", address)`` of ``addr`` or ``Display Name <addr>``, both checked.

    The name is read as a mail client will read it (encoded words decoded) and must be plain
    text of at most 200 characters (see :func:`newsletter_kit.headers.address_header`); the
    address must be ASCII before the @, its domain is given in IDNA form and lowercased.

    >>> parse_from("Città News <News@Bücher.example>")
    ('Città News', 'news@xn--bcher-kva.example')
    >>> parse_from("news@example.org")
    ('', 'news@example.org')
    """
    from .headers import address_header

    name, addr = address_header(value, what)
    return name, check_plain_address(ascii_address(validate_address(addr, "from_addr"), "from_addr"), what)


def check_from(from_addr: str, what: str = "From address") -> str:
    """A From (or Reply-To) header value: ``addr`` or ``"Display Name" <addr>``, as
    :func:`parse_from` reads it, the name quoted or encoded as the header needs and verified to
    read back the same.

    >>> check_from("News <news@example.org>")
    'News <news@example.org>'
    >>> check_from('"Città, News" <news@bücher.example>')
    '"Città, News" <news@xn--bcher-kva.example>'
    """
    from .headers import format_address

    name, addr = parse_from(from_addr, what)
    return format_address(name, addr) if name else addr


def ascii_address(addr: str, field: str = "address") -> str:
    """``addr`` with an internationalised domain in its ASCII (IDNA) form, for headers and SMTP.

    A non-ASCII local part (before the @) is refused: it would need SMTPUTF8, which messages
    built here do not use.

    Example::

        >>> ascii_address("news@bücher.example")
        'news@xn--bcher-kva.example'
    """
    if addr.isascii():
        return addr
    import email_validator

    try:
        info = email_validator.validate_email(addr, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValidationError(f"the address {addr[:80]!r} is not valid: {exc}", field) from None
    if not info.ascii_email:
        raise ValidationError(f"the address {addr[:80]!r} has a non-ASCII local part (before the @), "
                              "which needs SMTPUTF8: use an ASCII one", field)
    return str(info.ascii_email)


# --- untrusted report text (bounce parsing) -----------------------------------------------------

# RFC 5321 dot-atom local part, LDH domain with at least one dot, ASCII only.  Strict on purpose:
# whatever comes out goes into SQL, logs and SMTP commands, so no quotes, backslashes,
# whitespace or control characters, and nothing redacted like ``david...@gmail.com``.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS_RE = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@{_LABEL}(?:\.{_LABEL})*\.(?:[A-Za-z]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}})", re.ASCII)
# Scanning free text: no quote or backtick in the local part, so "'a@b.com'" yields a@b.com.
_SCAN_ADDRESS_RE = re.compile(
    r"(?<![A-Za-z0-9.!#$%&*+/=?^_{|}~-])[A-Za-z0-9!#$%&*+/=?^_{|}~-]+(?:\.[A-Za-z0-9!#$%&*+/=?^_{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+",
    re.ASCII,
)


def is_valid_address(address: str) -> bool:
    """True when ``address`` is a plain, safe mailbox address (ASCII dot-atom@domain).

    >>> is_valid_address("mario.rossi@example.it"), is_valid_address("david...@gmail.com")
    (True, False)
    """
    if len(address) > 254 or "@" not in address:
        return False
    return _ADDRESS_RE.fullmatch(address) is not None and len(address.partition("@")[0]) <= 64


def lenient_address(candidate: object) -> str | None:
    """The lowercased address in ``candidate`` (``<a@b>``, ``mailto:a@b``...), or None if invalid.

    Lenient in what it unwraps, strict in what it returns (:func:`is_valid_address`).
    ``candidate`` may be bytes (flufl.bounce) or a compat32 ``Header`` (8-bit header values).

    >>> lenient_address(b"<Ann@Example.org>"), lenient_address("a b@example.org")
    ('ann@example.org', None)
    """
    if candidate is None:
        return None
    if isinstance(candidate, bytes):
        candidate = candidate.decode("ascii", "replace")
    text = str(candidate).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    text = text.rstrip(".").lower()
    return text if is_valid_address(text) else None


def scan_addresses(text: str) -> Iterator[re.Match[str]]:
    """Candidate addresses in free text, as regex matches (positions matter to the caller);
    pass each ``match.group(0)`` through :func:`lenient_address`.

    >>> [m.group(0) for m in scan_addresses("to 'Ann@example.org', bob@x.example")]
    ['Ann@example.org', 'bob@x.example']
    """
    return _SCAN_ADDRESS_RE.finditer(text)


# A line break spelled as text: C/JSON/Python escapes (\r, \n, \x0a, \u000a, octal \012, also with
# doubled backslashes), URL encoding (%0a, %250a, %5cn), quoted-printable (=0A), HTML character
# references (&#10; &#x0a;), caret notation (^J) and <br>.  In an address field or a notice
# line, such text is a forged line break: what follows it must not be read as another address.
_ESCAPED_BREAK_RE = re.compile(
    r"\\+(?:[rn]|x0*[ad](?![0-9a-f])|u0*[ad](?![0-9a-f])|0*1[25](?![0-7])|u202[89])"
    r"|%(?:25)*(?:0[ad]|5c[rn])|=0[ad]|&#(?:0*1[03]|x0*[ad]|8232|8233|x202[89])(?![0-9a-f]);?"
    r"|\^[mj]|<\s*br\s*/?\s*>|\u2028|\u2029",
    re.IGNORECASE,
)
_FOLD_RE = re.compile(r"\r?\n(?=[ \t])")
_REAL_BREAK_RE = re.compile(r"[\r\n\x0b\x0c\x85]")


def cut_at_line_break(value: object) -> str:
    r"""The part of an untrusted header value before its first line break, real or spelled as text.

    Header folding is undone first; RFC 2047 encoded words are decoded (one may hide a CR/LF).

    >>> cut_at_line_break(r"rfc822; ann@example.org\r\nbob@example.net")
    'rfc822; ann@example.org'
    >>> cut_at_line_break("ann@example.org=?utf-8?q?=0D=0A?=bob@example.net")
    'ann@example.org'
    """
    text = _FOLD_RE.sub("", str(value))
    if "=?" in text:
        try:
            from email.header import decode_header, make_header

            text = str(make_header(decode_header(text)))
        except Exception:  # noqa: BLE001 - a broken encoded word stays as it is
            pass
    cut = _ESCAPED_BREAK_RE.search(text)
    if cut:
        text = text[: cut.start()]
    real = _REAL_BREAK_RE.search(text)
    return (text[: real.start()] if real else text).rstrip()


def untrusted_lines(text: str, max_lines: int | None = None) -> list[str]:
    r"""The (first ``max_lines``) lines of untrusted text, each cut at its first line break
    spelled as text.

    >>> untrusted_lines("550 <ann@example.org%0d%0abob@example.net>: user unknown\nok")
    ['550 <ann@example.org', 'ok']
    """
    lines = text.splitlines()[:max_lines]
    for i, line in enumerate(lines):
        cut = _ESCAPED_BREAK_RE.search(line)
        if cut:
            lines[i] = line[: cut.start()]
    return lines
