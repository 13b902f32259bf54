"""Header text that cannot break a header: checked after RFC 2047 decoding, folded within 998 octets.

Python 3.11 and 3.12 decode an encoded word found in a header value (``=?utf-8?b?...?=``) and,
when the decoded text is ASCII, write it back raw as they fold the header: line breaks
included (CVE-2024-6923, fixed upstream in 3.13 only). A contact field such as
``=?utf-8?b?QW5uDQpCY2M6IHg=?=`` rendered into a subject would become a real ``Bcc:`` header.
So every text that reaches a header goes through :func:`header_text`, which reads it the way
the stdlib and every mail client will (encoded words decoded, again until nothing changes) and
checks *that*; every header is then folded by :func:`fold_header`, which verifies the result
line by line (no line break inside a line, continuation lines start with a space, at most 998
octets a line as RFC 5322 requires).

Two strictnesses:

- ``strict=True`` (names and addresses chosen in the settings or at ``campaign create``): a
  control character, a line separator or an encoded word is refused with a clear
  :class:`ValidationError`, before anything is saved.
- ``strict=False`` (text rendered from contact data, such as the subject): the decoded text is
  kept and every run of control characters and line separators becomes one space, so data can
  never add a header nor refuse a recipient.

Example::

    >>> header_text("Hello =?utf-8?b?QW5uDQpCY2M6IHhAZXhhbXBsZS5vcmc=?=", "subject", strict=False)
    'Hello Ann Bcc: x@example.org'
    >>> header_text("spring =?UtF-8?q?sale=0D=0A?=", "campaign name")
    Traceback (most recent call last):
    ...
    newsletter_kit.errors.ValidationError: the campaign name 'spring =?UtF-8?q?sale=0D=0A?=' contains a line break (U+000D) once its RFC 2047 encoded words are decoded
    >>> fold_header("Subject", "Caffè for Ann")
    b'Subject: =?utf-8?q?Caff=C3=A8?= for Ann\\r\\n'
"""

from __future__ import annotations

import re
import unicodedata
from email import policy as email_policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Any

from .errors import ValidationError

#: The stdlib policy messages are built with: policy.SMTP (CRLF), except lines of at most 76
#: characters, the limit RFC 2045 sets for quoted-printable (the stdlib's 78 trips spam
#: filters' MIME_QP_LONG_LINE), and headers we fold ourselves (List-Unsubscribe) kept as given.
REFERENCE_POLICY = email_policy.SMTP.clone(max_line_length=76, refold_source="none")
MAX_HEADER_LINE = 76
#: RFC 5322 2.1.1: a line is at most 998 octets, CRLF excluded.
MAX_LINE_OCTETS = 998
#: For headers a program reads back (X-Newsletter-Campaign): one line whenever it fits, so the
#: value never starts on a continuation line (which readers see as a leading space).
ONE_LINE_POLICY = REFERENCE_POLICY.clone(max_line_length=MAX_LINE_OCTETS)
#: The longest campaign name, display name or list name accepted (characters).
MAX_NAME_CHARS = 200
#: The longest address RFC 5321 lets through (a path is at most 256 octets with its brackets).
MAX_ADDRESS_OCTETS = 254

# Never in a header once decoded: C0 and C1 controls (NUL, CR, LF, TAB, NEL...), DEL, the
# Unicode line and paragraph separators (str.splitlines breaks on several of these), and lone
# surrogates (undecodable bytes of an encoded word).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_UNSAFE_RUNS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+")
# What a folded header line may hold: printable ASCII and tab (non-ASCII is encoded words).
_FOLDED_LINE = re.compile(rb"[\t\x20-\x7e]*")
_SIMPLE_FORM = re.compile(r"\s*([^<>\"]*|\"[^\"\\]*\")\s*<([^<>\s]+@[^<>\s]+)>\s*")
_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bBqQ]\?[^?\s]*\?=")


def describe_char(char: str) -> str:
    """How an unsafe character is named in an error message.

    Example::

        >>> describe_char("\\n"), describe_char("\\u2028")
        ('a line break (U+000A)', 'a line separator (U+2028)')
    """
    code = f"U+{ord(char):04X}"
    if char in "\r\n\x0b\x0c\x1c\x1d\x1e\x85":
        return f"a line break ({code})"
    if char in "\u2028\u2029":
        return f"a line separator ({code})"
    if "\ud800" <= char <= "\udfff":
        return f"undecodable bytes ({code})"
    name = unicodedata.name(char, "")
    return f"a control character ({code}{', ' + name if name else ''})"


def shown(value: str, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def decode_words(text: str) -> str:
    """``text`` as the stdlib (and a mail client) reads a header: RFC 2047 encoded words decoded.

    Example::

        >>> decode_words("=?iso-8859-1?q?Caf=E9?= =?UtF-8?B?8J+MuA==?=")
        'Café🌸'
    """
    if "=?" not in text:
        return text
    return str(REFERENCE_POLICY.header_factory("X-Newsletter-Text", text))


def header_text(value: Any, what: str = "header", *, strict: bool = True,
                max_chars: int | None = None) -> str:
    """The text as it will reach a header, checked after decoding (see the module docstring).

    ``strict``: refuse (:class:`ValidationError`) a control character, a line separator or an
    encoded word; else decode, turn each run of them into one space, and strip. ``max_chars``
    bounds the result (strict or not: a clear error either way).

    Example::

        >>> header_text("Ann\\u2028Bcc: x@example.org", strict=False)
        'Ann Bcc: x@example.org'
    """
    if not isinstance(value, str):
        raise ValidationError(f"the {what} must be text, not {type(value).__name__}", what)
    text = value
    # Each round either decodes an encoded word (the text gets shorter) or replaces unsafe
    # characters by spaces (which never need replacing again): the loop ends.
    for _ in range(len(value) + 2):
        decoded = decode_words(text)
        if strict:
            bad = _UNSAFE.search(decoded)
            if bad:
                after = " once its RFC 2047 encoded words are decoded" if decoded != text else ""
                raise ValidationError(f"the {what} {shown(value)} contains "
                                      f"{describe_char(bad.group(0))}{after}", what)
            if decoded != text:
                raise ValidationError(f"the {what} {shown(value)} contains an RFC 2047 encoded word "
                                      "(=?charset?q?...?=): give the text itself, it is encoded "
                                      "when sent", what)
            break
        cleaned = _UNSAFE_RUNS.sub(" ", decoded).strip()
        if cleaned == text:
            break
        text = cleaned
    if max_chars is not None and len(text) > max_chars:
        raise ValidationError(f"the {what} has {len(text)} characters: at most {max_chars}", what)
    return text


def check_folded(folded: bytes, name: str) -> bytes:
    """``folded`` (one header, CRLF line ends) when it is exactly one well-formed header.

    Every line printable ASCII (or tab), at most :data:`MAX_LINE_OCTETS`, each continuation
    line starting with a space or tab and holding more than whitespace; the last ends in CRLF.

    Example::

        >>> check_folded(b"Subject: Hi\\r\\nBcc: x@example.org\\r\\n", "Subject")
        Traceback (most recent call last):
        ...
        newsletter_kit.errors.ValidationError: the Subject header would start a new header line: b'Bcc: x@example.org'
    """
    lines = folded.split(b"\r\n")
    if lines[-1] != b"" or len(lines) < 2 or not lines[0].startswith(name.encode("ascii") + b":"):
        raise ValidationError(f"the {name} header is not one header line ending in CRLF", name)
    for number, line in enumerate(lines[:-1]):
        if len(line) > MAX_LINE_OCTETS:
            raise ValidationError(f"the {name} header would have a line of {len(line)} octets "
                                  f"(at most {MAX_LINE_OCTETS})", name)
        if not _FOLDED_LINE.fullmatch(line):
            raise ValidationError(f"the {name} header would hold a raw control or 8-bit character: "
                                  f"{line[:60]!r}", name)
        if number and (line[:1] not in (b" ", b"\t") or not line.strip()):
            raise ValidationError(f"the {name} header would start a new header line: {line[:60]!r}", name)
    return folded


def fold_header(name: str, value: Any, *, one_line: bool = False) -> bytes:
    """One header (name, value) folded exactly as the reference build does, then verified.

    ``value`` is text that went through :func:`header_text` (or an address header value made
    by :func:`format_address`); the result is checked by :func:`check_folded`. ``one_line``
    folds with :data:`ONE_LINE_POLICY` (the reference build sets that header raw, as folded).

    Example::

        >>> fold_header("X-Newsletter-Campaign", "spring")
        b'X-Newsletter-Campaign: spring\\r\\n'
    """
    policy = ONE_LINE_POLICY if one_line else REFERENCE_POLICY
    header = policy.header_factory(name, value)
    try:
        folded = policy.fold(name, header).encode("ascii")
    except UnicodeEncodeError:
        raise ValidationError(f"the {name} header cannot be written in ASCII", name) from None
    return check_folded(folded, name)


def raw_value(folded: bytes) -> str:
    """The value of a folded header, as ``EmailMessage.set_raw`` takes it (LF line ends).

    Example::

        >>> raw_value(b"X-A: one\\r\\n two\\r\\n")
        'one\\n two'
    """
    return folded.decode("ascii").split(": ", 1)[1][:-2].replace("\r\n", "\n")


def check_message_headers(items: Any) -> None:
    """Verify every header of a built message (``msg.items()`` of an ``EmailMessage``).

    Example::

        >>> from email.message import EmailMessage
        >>> msg = EmailMessage(policy=REFERENCE_POLICY); msg["Subject"] = "Hi"
        >>> check_message_headers(msg.items())
    """
    for name, value in items:
        check_folded(REFERENCE_POLICY.fold(name, value).encode("ascii", "surrogateescape"), name)


def address_header(value: Any, what: str = "From address") -> tuple[str, str]:
    """``(display_name, addr_spec)`` of a ``Name <addr>`` or ``addr`` value, checked after decoding.

    The value is parsed as the stdlib parses a From header (encoded words in the name decoded);
    the decoded display name must pass :func:`header_text` strictly (no control character, no
    line separator, no encoded word inside, at most :data:`MAX_NAME_CHARS`). The address itself
    is for the caller to validate. A display name that would not read back the same once the
    header is written is refused (see :func:`format_address`).

    Example::

        >>> address_header("Città News <news@example.org>")
        ('Città News', 'news@example.org')
        >>> address_header("=?utf-8?q?Ann=0ABcc=3A_x=40example.org?= <news@example.org>")
        Traceback (most recent call last):
        ...
        newsletter_kit.errors.ValidationError: the From address '=?utf-8?q?Ann=0ABcc=3A_x=40example.org?= <news@example.org>' is not valid: its display name contains a line break (U+000A) once its RFC 2047 encoded words are decoded
    """
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"the {what} is empty", what)
    bad = _UNSAFE.search(value)
    if bad:
        raise ValidationError(f"the {what} {shown(value)} contains {describe_char(bad.group(0))}", what)
    if len(value) > 2 * MAX_NAME_CHARS + MAX_ADDRESS_OCTETS + 8:  # before the (slow) stdlib parser
        raise ValidationError(f"the {what} has {len(value)} characters: a display name may have at "
                              f"most {MAX_NAME_CHARS}", what)
    for word in _ENCODED_WORD.findall(value):
        # The stdlib would decode it (even inside quotes): judge what it decodes to.
        bad = _UNSAFE.search(decode_words(word))
        if bad:
            raise ValidationError(f"the {what} {shown(value)} is not valid: its display name contains "
                                  f"{describe_char(bad.group(0))} once its RFC 2047 encoded words "
                                  "are decoded", what)
        raise ValidationError(f"the {what} {shown(value)} contains an RFC 2047 encoded word "
                              "(=?charset?q?...?=): give the name itself, it is encoded when sent", what)
    try:
        header = REFERENCE_POLICY.header_factory("From", value.strip())
        addresses, ok = header.addresses, not header.defects and len(header.groups) == 1
    except (ValueError, HeaderParseError, IndexError, AttributeError, TypeError):  # stdlib parser bugs
        addresses, ok = (), False
    if len(addresses) == 1 and ok:
        name, addr = addresses[0].display_name, addresses[0].addr_spec
    else:
        # What a person types: `Shop, News <news@shop.example>` (a comma or dot in the name,
        # unquoted). Taken as name and address; both are checked below and written quoted.
        simple = _SIMPLE_FORM.fullmatch(value)
        if not simple:
            raise ValidationError(f"the {what} {shown(value)} must be one address, like "
                                  "'news@example.org' or 'News <news@example.org>'", what)
        name, addr = simple.group(1).strip(), simple.group(2).strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1]
    bad = _UNSAFE.search(name)
    if bad:
        raise ValidationError(f"the {what} {shown(value)} is not valid: its display name contains "
                              f"{describe_char(bad.group(0))} once its RFC 2047 encoded words are "
                              "decoded", what)
    header_text(name, f"display name of the {what}", max_chars=MAX_NAME_CHARS)
    return name, addr


def format_address(display_name: str, addr_spec: str, name: str = "From") -> str:
    """The header value for ``display_name <addr_spec>``, verified to read back the same.

    The display name is quoted or encoded as needed; the value is folded the way the message
    will be and parsed back: one address, the same address, the same name (whitespace aside:
    a folded encoded name may gain or lose a space between words, never a character).

    Example::

        >>> format_address('Shop "News", Rome', "news@example.org")
        '"Shop \\\\"News\\\\", Rome" <news@example.org>'
    """
    value = str(Address(display_name=display_name, addr_spec=addr_spec))
    folded = fold_header(name, value)
    unfolded = folded.decode("ascii").split(":", 1)[1].replace("\r\n", "").strip()
    try:
        back = REFERENCE_POLICY.header_factory(name, unfolded).addresses
    except (ValueError, HeaderParseError, IndexError, AttributeError, TypeError):  # stdlib parser bugs
        back = ()
    if (len(back) != 1 or back[0].addr_spec != addr_spec
            or "".join(back[0].display_name.split()) != "".join(display_name.split())):
        raise ValidationError(f"the {name} display name {shown(display_name)} would not read back "
                              "as written: choose another", name)
    return value


#: The longest unsubscribe URL template accepted: with the token of a 200-character campaign
#: name and the longest address it still fits on its own List-Unsubscribe line.
MAX_URL_CHARS = 360
_URL_UNSAFE = re.compile(r"[^\x21-\x7e]|[<>\"\\^`{|}]")


def check_unsubscribe_url(url: Any) -> str:
    """An https unsubscribe URL template holding ``{token}``: printable ASCII, no space, no
    control character, no encoded word, at most :data:`MAX_URL_CHARS` characters.

    Example::

        >>> check_unsubscribe_url("https://news.example.org/u/{token}")
        'https://news.example.org/u/{token}'
        >>> check_unsubscribe_url("https://news.example.org/u/{token} x")
        Traceback (most recent call last):
        ...
        newsletter_kit.errors.ValidationError: the unsubscribe URL 'https://news.example.org/u/{token} x' must not contain a space
    """
    what = "unsubscribe_url"
    if not isinstance(url, str) or not url.startswith("https://") or "{token}" not in url:
        raise ValidationError(f"the unsubscribe URL {shown(str(url))} must be an https URL "
                              "containing {token}", what)
    for char in _URL_UNSAFE.findall(url.replace("{token}", "")):
        reason = ("a space" if char == " " else describe_char(char) if _UNSAFE.match(char)
                  else f"the character {char!r} (percent-encode it)" if char.isascii()
                  else f"the non-ASCII character {char!r} (percent-encode it, or IDNA for a domain)")
        raise ValidationError(f"the unsubscribe URL {shown(url)} must not contain {reason}", what)
    if decode_words(url) != url:
        raise ValidationError(f"the unsubscribe URL {shown(url)} contains an RFC 2047 encoded word", what)
    if len(url) > MAX_URL_CHARS:
        raise ValidationError(f"the unsubscribe URL has {len(url)} characters: at most {MAX_URL_CHARS}, "
                              "so that the List-Unsubscribe header stays within 998 octets a line", what)
    return url



# --- List-Id (RFC 2919) ---------------------------------------------------------------------------

_LIST_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+")
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LIST_ID_FORM = re.compile(r"\s*(?:(.*?)\s*)?<([^<>]*)>\s*", re.DOTALL)


def parse_list_id(value: Any) -> tuple[str, str]:
    """``(description, list-id)`` of ``Name <id.domain>``, ``<id.domain>`` or ``id.domain``.

    The list-id is an ASCII dot-atom with at least one dot (RFC 2919: a label under a domain
    you control), at most 255 characters; the description is checked as a display name is.

    Example::

        >>> parse_list_id("Shop News <news.shop.example>")
        ('Shop News', 'news.shop.example')
        >>> parse_list_id("news")
        Traceback (most recent call last):
        ...
        newsletter_kit.errors.ValidationError: the List-Id 'news' must look like 'Name <label.your-domain>' (an ASCII label, a dot, your domain)
    """
    what = "list_id"
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("the List-Id is empty", what)
    bad = _UNSAFE.search(value)
    if bad:
        raise ValidationError(f"the List-Id {shown(value)} contains {describe_char(bad.group(0))}", what)
    match = _LIST_ID_FORM.fullmatch(value)
    description, list_id = (match.group(1) or "", match.group(2).strip()) if match else ("", value.strip())
    if len(description) >= 2 and description[0] == description[-1] == '"':
        description = description[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not _LIST_ID.fullmatch(list_id) or len(list_id) > 255:
        raise ValidationError(f"the List-Id {shown(value)} must look like 'Name <label.your-domain>' "
                              "(an ASCII label, a dot, your domain)", what)
    return header_text(description, "List-Id description", max_chars=MAX_NAME_CHARS), list_id


def default_list_id(list_name: str, domain: str) -> tuple[str, str]:
    """The List-Id a contact list gets unless one is set: ``(list name, label.domain)``.

    The label is the list name in lowercase ASCII letters, digits and hyphens (accents dropped);
    a name with none of those gets ``list-`` and a short hash of it.

    Example::

        >>> default_list_id("Clienti Città 2026", "shop.example")
        ('Clienti Città 2026', 'clienti-citta-2026.shop.example')
    """
    import hashlib

    ascii_name = unicodedata.normalize("NFKD", list_name).encode("ascii", "ignore").decode("ascii")
    label = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40].strip("-")
    if not label:
        label = "list-" + hashlib.sha256(list_name.encode()).hexdigest()[:10]
    description = header_text(list_name, strict=False)[:MAX_NAME_CHARS].strip()
    return description, f"{label}.{domain.lower().rstrip('.')}"


def list_id_value(description: str, list_id: str) -> str:
    """The folded List-Id value (CRLF between lines), as the skeleton writes it after ``List-Id: ``.

    A description of plain words stays as it is; any other (non-ASCII, quotes, commas...) is
    written as RFC 2047 encoded words, which a phrase may hold; the ``<list-id>`` is never
    encoded (mail clients match it as is), on its own line when the first one is full.

    Example::

        >>> list_id_value("Novità", "news.shop.example")
        '=?utf-8?q?Novit=C3=A0?= <news.shop.example>'
    """
    from email.header import Header

    if not _LIST_ID.fullmatch(list_id):
        raise ValidationError(f"{shown(list_id)} is not a list-id like label.domain", "list_id")
    description = header_text(description, "List-Id description", max_chars=MAX_NAME_CHARS)
    if not description:
        phrase = ""
    elif _PLAIN_PHRASE.fullmatch(description) and "=?" not in description:
        phrase = description
    else:
        phrase = Header(description, "utf-8", maxlinelen=MAX_HEADER_LINE,
                        header_name="List-Id").encode(linesep="\r\n")
        if "".join(decode_words(phrase.replace("\r\n", "")).split()) != "".join(description.split()):
            raise ValidationError(f"the List-Id description {shown(description)} would not read back "
                                  "as written", "list_id")
    last = ("List-Id: " + phrase).rpartition("\r\n")[2]
    tail = f"<{list_id}>"
    if not phrase:
        value = tail
    elif len(last) + 1 + len(tail) <= MAX_HEADER_LINE:
        value = f"{phrase} {tail}"
    else:
        value = f"{phrase}\r\n {tail}"
    check_folded(f"List-Id: {value}\r\n".encode("ascii"), "List-Id")
    return value
