"""Render each recipient's message: templates, text + HTML, headers; bytes ready for the wire.

Pure: no I/O. A :class:`CampaignRenderer` is built once per campaign (templates compiled, static
headers folded, the text part's template derived from the HTML) and renders one message per
recipient. :meth:`CampaignRenderer.reference` builds the same message with the stdlib
(``EmailMessage``, :data:`REFERENCE_POLICY`); :meth:`CampaignRenderer.render` produces the same
bytes from a per-campaign skeleton, several times faster, because the send loop calls it for
every recipient. The tests compare the two byte for byte.

Templates are Jinja2 in a sandbox. Every contact field is a variable (``{{ first_name }}``), plus
``email`` and ``unsubscribe_url``. A field a contact does not have renders empty (what a merge tag
does in every mailing tool; use ``{{ first_name | default("friend") }}`` for a fallback); a
field that *no* contact has is most likely a typo, which :meth:`CampaignRenderer.check_fields`
reports before a campaign is created. HTML is autoescaped; subject and text are not. Line breaks
in a rendered subject become spaces, so data can never add a header.

Every message carries ``X-Newsletter-Campaign`` and ``List-Unsubscribe`` (a ``mailto:`` to the
bounce address whose subject carries a signed token, plus the https URL when configured, then
also ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``, RFC 8058).

Example::

    >>> r = CampaignRenderer(campaign="spring", subject="Hi {{ first_name }}",
    ...     html="<p>Hello {{ first_name }}</p>", from_addr="News <news@example.org>",
    ...     bounce_address="bounces@example.org", signing_key=b"k" * 32)
    >>> mid = r.new_message_id()
    >>> raw = r.render("ann@example.org", {"first_name": "Ann"}, message_id=mid)
    >>> raw == r.reference("ann@example.org", {"first_name": "Ann"}, message_id=mid,
    ...                    date=r.last_date).as_bytes()
    True
"""

from __future__ import annotations

import datetime as dt
import email.quoprimime
import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from email import _encoded_words  # type: ignore[attr-defined]  # the stdlib's RFC 2047 encoder
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import jinja2
import jinja2.meta
import markupsafe

from . import clock, sandbox
from .addresses import ascii_address
from .addresses import check_from as _check_from
from .addresses import check_plain_address as _check_address
from .addresses import check_recipient as _check_recipient
from .errors import TemplateError, ValidationError
from .headers import (MAX_ADDRESS_OCTETS, MAX_LINE_OCTETS, MAX_NAME_CHARS, REFERENCE_POLICY,
                      check_folded, check_message_headers, check_unsubscribe_url, fold_header,
                      header_text, list_id_value, raw_value)
from .plaintext import wrap_text
from .tokens import unsubscribe_token

MAX_LINE = 76
CRLF = b"\r\n"
#: Variables every template gets besides the contact's fields.
BUILTIN_VARIABLES = frozenset({"email", "unsubscribe_url"})

_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[A-Za-z0-9.-]+>")
_WORDS = re.compile(r"( +)")
_OTHER_SPACE = re.compile(r"[^\S ]")
_NOT_7BIT = re.compile(r"[^\t\n\r\x20-\x7e]")
_QP_UNSAFE = re.compile(r"[^\t\n\r\x20-\x3c\x3e-\x7e]")
_QP_QUOTE = {chr(c): f"={c:02X}" for c in range(256)}
_QP_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")


# --- bodies -------------------------------------------------------------------------------


def _normal_lines(text: str) -> list[bytes]:
    """The body's lines as the stdlib's content manager splits them (bytes.splitlines)."""
    return text.encode("utf-8").splitlines()


def choose_cte(text: str) -> str:
    """``7bit`` for plain ASCII with short lines, else ``quoted-printable``.

    Both the reference and the skeleton use this rule, so their bytes can match.

    Example::

        >>> choose_cte("Hello"), choose_cte("Caffè")
        ('7bit', 'quoted-printable')
    """
    if not text.isascii() or _NOT_7BIT.search(text):
        return "quoted-printable"
    if max(map(len, text.splitlines()), default=0) > MAX_LINE:
        return "quoted-printable"
    return "7bit"


def _qp_escape(text: str) -> str:
    """Quote what quoted-printable must quote (``=``, controls, every UTF-8 byte of non-ASCII).

    The common cases run at C speed: ``=`` by str.replace, and one regex callback per run of
    non-ASCII characters rather than one per byte.
    """
    if _QP_CONTROL.search(text):  # rare: quote byte by byte
        return _QP_UNSAFE.sub(lambda m: _QP_QUOTE[m[0]], text.encode("utf-8").decode("latin-1"))
    if "=" in text:
        text = text.replace("=", "=3D")
    if text.isascii():
        return text
    return _NON_ASCII_RUN.sub(_quote_run, text)


def _quote_run(match: re.Match[str]) -> str:
    return "=" + match[0].encode("utf-8").hex("=").upper()


def _qp_wrap_line(line: str) -> str:
    """One quoted line, soft-broken exactly where :func:`email.quoprimime.body_encode` breaks it."""
    n = len(line)
    if n <= MAX_LINE and not (line and line[-1] in " \t"):
        return line
    pieces: list[str] = []
    append = pieces.append
    width = MAX_LINE - 1
    start, laststart = 0, n - 1 - MAX_LINE
    while start <= laststart:
        stop = start + width
        if line[stop - 2] == "=":  # never split an =XX escape: its "=" doubles as the soft break
            append(line[start:stop - 1])
            start = stop - 2
        elif line[stop - 1] == "=":
            append(line[start:stop])
            start = stop - 1
        else:
            append(line[start:stop] + "=")
            start = stop
    if line and line[-1] in " \t":  # trailing whitespace must be protected
        room = start - laststart
        quoted = _QP_QUOTE[line[-1]]
        if room >= 3:
            tail = quoted
        elif room == 2:
            tail = line[-1] + "=\r\n"
        else:
            tail = "=\r\n" + quoted
        append(line[start:-1] + tail)
    else:
        append(line[start:])
    return "\r\n".join(pieces)


_LINE_CACHE_SIZE = 5000


def _encode_body(text: str, cache: dict[str, str]) -> tuple[str, bytes]:
    """The body's transfer encoding and its encoded bytes (CRLF), exactly as the stdlib encodes.

    ``cache`` maps lines already seen to their encoded form: most lines of a newsletter are the
    same in every message, so only the lines holding a recipient's values are encoded anew.
    """
    if choose_cte(text) == "7bit":
        return "7bit", b"\r\n".join(_normal_lines(text)) + CRLF
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    get = cache.get
    out = []
    for line in lines:
        encoded = get(line)
        if encoded is None:
            encoded = _qp_wrap_line(_qp_escape(line))
            if len(cache) < _LINE_CACHE_SIZE:
                cache[line] = encoded
        out.append(encoded)
    out.append("")
    return "quoted-printable", "\r\n".join(out).encode("ascii")


# --- templates ----------------------------------------------------------------------------


_HTML_ENV = sandbox.environment(autoescape=True)  # limits on render time and size: sandbox.py
_TEXT_ENV = sandbox.environment(autoescape=False)
_PLACEHOLDER = "NKTPL{}X"
_JINJA_SYNTAX = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


class _Template:
    """A compiled template and the variables it reads.

    A template made only of text and ``{{ name }}`` tags (the usual merge tags) is rendered
    by joining strings, which gives Jinja's output (the tests check) at a fraction of its cost.
    """

    def __init__(self, env: jinja2.Environment, source: str, what: str, memoise: bool = False):
        try:
            ast = env.parse(source)
            self.plan = _simple_plan(ast)
            self.variables = frozenset(jinja2.meta.find_undeclared_variables(ast))
            self.template = sandbox.compile_template(env, ast)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"the {what} template has a syntax error on line {exc.lineno}: "
                                f"{exc.message}") from None
        self.what = what
        self.source = source
        self.autoescape = bool(env.autoescape)
        self.globals = env.globals
        # Memoising by the values read is safe only when nothing else can change the output.
        self.cacheable = memoise and not _IMPURE.search(source)
        self._cache: dict[tuple[Any, ...], str] = {}

    def render(self, context: Mapping[str, Any], email: str) -> str:
        """The template's output for one recipient; errors become :class:`TemplateError`."""
        if self.cacheable:
            try:
                key = tuple(context.get(name, _MISSING) for name in self.variables)
                hit = self._cache.get(key)
            except TypeError:  # an unhashable value: render, don't memoise
                key, hit = None, None
            if hit is not None:
                return hit
        if self.plan is not None:
            out = self._render_plan(context)
        else:
            out = self._render_jinja(context, email)
        if len(out) > sandbox.MAX_OUTPUT:  # merge tags filled with huge contact fields
            raise TemplateError(f"the {self.what} template fails for {email}: its output is longer "
                                f"than {sandbox.MAX_OUTPUT} characters")
        if self.cacheable and key is not None and len(self._cache) < 10_000:
            self._cache[key] = out
        return out

    def _render_plan(self, context: Mapping[str, Any]) -> str:
        convert = markupsafe.escape if self.autoescape else str
        parts = []
        for data, name in self.plan:  # type: ignore[union-attr]
            parts.append(data)
            if name is not None:
                value = context[name] if name in context else self.globals.get(name, _MISSING)
                parts.append("" if value is _MISSING else convert(value))
        return "".join(parts)

    def _render_jinja(self, context: Mapping[str, Any], email: str) -> str:
        try:
            return sandbox.render(self.template, context)
        except sandbox.RENDER_ERRORS as exc:
            raise TemplateError(f"the {self.what} template fails for {email}: "
                                f"{sandbox.describe(exc)}") from None


_MISSING = object()
_IMPURE = re.compile(r"random|lipsum|cycler|joiner|namespace|now")


def _simple_plan(ast: jinja2.nodes.Template) -> list[tuple[str, str | None]] | None:
    """``[(text, variable or None), ...]`` when the template is only text and ``{{ name }}``."""
    plan: list[tuple[str, str | None]] = []
    data = ""
    for node in ast.body:
        if not isinstance(node, jinja2.nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, jinja2.nodes.TemplateData):
                data += child.data
            elif isinstance(child, jinja2.nodes.Name) and child.ctx == "load":
                plan.append((data, child.name))
                data = ""
            else:
                return None
    plan.append((data, None))
    return plan


def _html_to_text(html: str, wrap: bool = True) -> str:
    from .plaintext import html_to_text

    return html_to_text(html, wrap=wrap)


_UNSUBSCRIBE_LINE = "\nUnsubscribe: {{ unsubscribe_url }}\n"


def text_template_from_html(html: str) -> str | None:
    """A text template made once from the HTML template (Jinja tags kept), or None.

    html2text is far too slow to run per recipient, so the tags are swapped for placeholders,
    the HTML converted once, and the tags put back. A ``{{ value }}`` where html2text drops
    text (a ``<title>``, a ``class`` attribute) is dropped too, as it would be from each
    message. None when a ``{% statement %}`` is lost or doubled: then each message is converted.
    The text is what :func:`newsletter_kit.plaintext.html_to_text` makes (no Markdown), and
    ends with the unsubscribe link when the HTML has none.

    Example::

        >>> print(text_template_from_html('<p>Hi <b>{{ name }}</b></p><a href="{{ unsubscribe_url }}">stop</a>'))
        Hi {{ name }}
        <BLANKLINE>
        stop ({{ unsubscribe_url }})
        <BLANKLINE>
    """
    tags: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        tags.append(match.group(0))
        return _PLACEHOLDER.format(len(tags) - 1)

    # Lines without a tag are wrapped now, once; those with one when each message has its values.
    text = wrap_text(_html_to_text(_JINJA_SYNTAX.sub(placeholder, html), wrap=False), skip="NKTPL")
    for i, tag in enumerate(tags):
        marker = _PLACEHOLDER.format(i)
        count = text.count(marker)
        if count > 1 or (count == 0 and tag.startswith("{%")):
            return None
        text = text.replace(marker, tag)
    if "unsubscribe_url" not in text:
        text += _UNSUBSCRIBE_LINE
    return text


# --- headers ------------------------------------------------------------------------------


def _fold(name: str, value: Any) -> bytes:
    """One header exactly as the reference build folds and encodes it (verified line by line)."""
    return fold_header(name, value)


def clean_subject(subject: str) -> str:
    """The rendered subject as it will be read: encoded words decoded, then control characters,
    line breaks and line separators made spaces (:func:`newsletter_kit.headers.header_text`).

    Example::

        >>> clean_subject("Hi Ann\\r\\nBcc: all@example.org")
        'Hi Ann Bcc: all@example.org'
        >>> clean_subject("Hi =?utf-8?q?Ann=0D=0ABcc=3A_all=40example.org?=")
        'Hi Ann Bcc: all@example.org'
    """
    return header_text(subject, "subject", strict=False)


def _check_message_id(message_id: str) -> str:
    if not isinstance(message_id, str) or not _MESSAGE_ID.fullmatch(message_id):
        raise ValidationError(f"{message_id!r} is not a Message-ID like <id@domain>", "message_id")
    return message_id


def _check_unsubscribe_url(url: str | None) -> str | None:
    return check_unsubscribe_url(url) if url else None


def _unsubscribe_links(token: str, bounce_address: str, url: str | None) -> tuple[str, str]:
    """The List-Unsubscribe value (folded between its URLs) and the link for the body."""
    mailto = f"mailto:{bounce_address}?subject=unsubscribe%20{token}"
    if url is None:
        return f"<{mailto}>", mailto
    https = url.replace("{token}", token)
    return f"<{mailto}>,\r\n <{https}>", https


def check_list_unsubscribe(campaign: str, bounce_address: str, unsubscribe_url: str | None) -> None:
    """Refuse (:class:`ValidationError`) what would make a List-Unsubscribe line over 998 octets.

    Every other header is folded; List-Unsubscribe holds URLs, which cannot be broken, and its
    token grows with the address (not with the campaign name: the token carries a short hash
    of it): checked with the longest address (254 octets), so no recipient can ever get a line
    the server refuses.

    Example::

        >>> check_list_unsubscribe("spring", "bounces@example.org", "https://example.org/u/{token}")
        >>> check_list_unsubscribe("🌸" * 199, "bounces@example.org", None)  # any name fits
    """
    longest = "x" * 64 + "@" + "y" * (MAX_ADDRESS_OCTETS - 65)
    token = unsubscribe_token(b"\0" * 32, campaign, longest)
    folded = f"List-Unsubscribe: {_unsubscribe_links(token, bounce_address, unsubscribe_url)[0]}\r\n"
    lines = folded.encode("ascii").split(b"\r\n")
    if max(map(len, lines)) > MAX_LINE_OCTETS:
        culprit = (f"the campaign name ({len(campaign.encode())} octets in UTF-8) is too long"
                   if len(lines[0]) > MAX_LINE_OCTETS else
                   f"the campaign name ({len(campaign.encode())} octets in UTF-8) and the unsubscribe URL "
                   f"({len(unsubscribe_url or '')} characters) are too long together")
        raise ValidationError(
            f"the List-Unsubscribe header would have a line of {max(map(len, lines))} octets "
            f"(at most {MAX_LINE_OCTETS}) for the longest addresses: {culprit}; shorten it", "campaign")
    check_folded(folded.encode("ascii"), "List-Unsubscribe")


def _boundary(message_id: str, bodies: Iterable[tuple[str, bytes]]) -> str:
    """A boundary derived from the Message-ID (so both builds agree), absent from the bodies.

    ``bodies`` are (transfer encoding, encoded body) pairs. "=_" never occurs in quoted-printable
    (an "=" is always followed by hex digits or a line break), so only 7bit bodies are searched.
    """
    seed = message_id.encode()
    plain = [body for cte, body in bodies if cte == "7bit"]
    for attempt in range(100):
        boundary = "=_" + hashlib.sha256(seed + bytes([attempt])).hexdigest()[:24]
        if all(boundary.encode() not in body for body in plain):
            return boundary
    raise TemplateError("cannot find a MIME boundary absent from the message")  # pragma: no cover


def _utc_now() -> dt.datetime:
    return clock.now().replace(microsecond=0)


#: The providers whose events echo back a header we set, and the key our delivery id travels under.
ECHO_PROVIDERS = ("ses", "sendgrid", "mailgun", "postmark")
ECHO_KEY = "nk_delivery"
_ECHO_TOKEN = re.compile(r"[0-9A-Za-z._-]{1,64}")


def echo_headers(provider: str, token: str, configuration_set: str | None = None) -> list[tuple[str, str]]:
    """The header(s) an ESP echoes back into its events, carrying our delivery ``token``:
    SES message tags (with a configuration set), SendGrid unique args, Mailgun variables,
    Postmark metadata.

    >>> echo_headers("sendgrid", "42.ab")
    [('X-SMTPAPI', '{"unique_args": {"nk_delivery": "42.ab"}}')]
    >>> echo_headers("ses", "42.ab", "news")
    [('X-SES-CONFIGURATION-SET', 'news'), ('X-SES-MESSAGE-TAGS', 'nk_delivery=42.ab')]
    """
    if not _ECHO_TOKEN.fullmatch(token):
        raise ValidationError(f"{token!r} is not a delivery token", "token")
    if provider == "ses":
        tags = [("X-SES-MESSAGE-TAGS", f"{ECHO_KEY}={token}")]
        return ([("X-SES-CONFIGURATION-SET", configuration_set)] if configuration_set else []) + tags
    if provider == "sendgrid":
        return [("X-SMTPAPI", '{"unique_args": {"%s": "%s"}}' % (ECHO_KEY, token))]
    if provider == "mailgun":
        return [("X-Mailgun-Variables", '{"%s": "%s"}' % (ECHO_KEY, token))]
    if provider == "postmark":
        return [(f"X-PM-Metadata-{ECHO_KEY}", token)]
    raise ValidationError(f"unknown provider {provider!r}", "provider")


# --- the renderer -------------------------------------------------------------------------


class CampaignRenderer:
    """Built once per campaign; renders each recipient's message (see the module docstring).

    Template syntax errors raise :class:`TemplateError` here, before anything is written.
    ``last_date`` is the Date of the last :meth:`render` (to rebuild it with :meth:`reference`).
    """

    def __init__(self, *, campaign: str, subject: str, html: str, text: str | None = None,
                 from_addr: str, bounce_address: str, signing_key: bytes,
                 unsubscribe_url: str | None = None, message_id_domain: str | None = None,
                 reply_to: str | None = None, list_id: tuple[str, str] | None = None,
                 echo: tuple[str, str | None] | None = None):
        if echo is not None:
            if echo[0] not in ECHO_PROVIDERS:
                raise ValidationError(f"unknown provider {echo[0]!r}", "provider")
            if echo[1] is not None:
                header_text(echo[1], "configuration set")
        #: (provider, SES configuration set): the ESP that echoes our delivery id back; None: none
        self.echo = echo
        self._echo_template: tuple[bytes, ...] | None = None
        if not isinstance(campaign, str) or not campaign.strip():
            raise ValidationError(f"the campaign name {campaign!r} must be one line of text", "campaign")
        self.campaign = header_text(campaign, "campaign name", max_chars=MAX_NAME_CHARS)
        if not subject or not subject.strip():
            raise TemplateError("the subject is empty")
        self.from_addr = _check_from(from_addr)
        self.reply_to = _check_from(reply_to, "Reply-To address") if reply_to else None
        #: The List-Id header value (RFC 2919), from ``(description, label.domain)``; None: none.
        self.list_id = list_id_value(*list_id) if list_id else None
        self.bounce_address = _check_address(ascii_address(bounce_address, "bounce_address"), "bounce address")
        self.signing_key = bytes(signing_key)
        self.unsubscribe_url = _check_unsubscribe_url(unsubscribe_url)
        domain = message_id_domain or self.bounce_address.rpartition("@")[2]
        if not re.fullmatch(r"[A-Za-z0-9.-]+", domain):
            raise ValidationError(f"{domain!r} is not a domain for Message-IDs", "message_id_domain")
        self.message_id_domain = domain
        self.subject_template = _Template(_TEXT_ENV, subject, "subject", memoise=True)
        self.html_template = _Template(_HTML_ENV, html, "HTML")
        self.warnings: list[str] = []
        text_source = text if text is not None else text_template_from_html(html)
        if text_source is None:
            self.warnings.append("the text part is converted from each message's HTML (slow): "
                                 "a Jinja tag sits where html2text drops it; give a text template")
        self.text_template = _Template(_TEXT_ENV, text_source, "text") if text_source is not None else None
        self._wrap_text = text is None  # a text template given is sent as written
        self._wrapped_lines: dict[str, str] = {}
        self.last_date: dt.datetime | None = None
        self._check_longest_lines()
        self._build_skeleton()

    def __repr__(self) -> str:
        return f"CampaignRenderer(campaign={self.campaign!r}, from_addr={self.from_addr!r})"

    # -- per campaign

    def _check_longest_lines(self) -> None:
        """Refuse now what would make a header line over 998 octets for some recipient."""
        check_list_unsubscribe(self.campaign, self.bounce_address, self.unsubscribe_url)

    def _build_skeleton(self) -> None:
        post = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" if self.unsubscribe_url else b""
        self._head_from = _fold("From", self.from_addr)
        if self.reply_to:
            self._head_from += _fold("Reply-To", self.reply_to)
        list_id = f"List-Id: {self.list_id}\r\n".encode("ascii") if self.list_id else b""
        self._head_campaign = list_id + fold_header("X-Newsletter-Campaign", self.campaign, one_line=True) \
            + b"List-Unsubscribe: "
        self._head_post = post + b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="'
        self._subject_cache: dict[str, bytes] = {}
        self._html_lines: dict[str, str] = {}
        self._text_lines: dict[str, str] = {}

    def check_fields(self, available: Iterable[str]) -> None:
        """Raise :class:`TemplateError` when a template reads a field no contact has.

        Example::

            >>> r = CampaignRenderer(campaign="c", subject="Hi {{ frist_name }}", html="<p></p>",
            ...     from_addr="news@example.org", bounce_address="b@example.org", signing_key=b"k")
            >>> r.check_fields(["first_name"])
            Traceback (most recent call last):
            ...
            newsletter_kit.errors.TemplateError: the subject template uses {{ frist_name }}, but no contact has that field (fields: first_name)
        """
        known = set(available) | BUILTIN_VARIABLES
        for template in (self.subject_template, self.html_template, self.text_template):
            if template is None:
                continue
            unknown = sorted(template.variables - known)
            if unknown:
                names = ", ".join("{{ %s }}" % name for name in unknown)
                fields = ", ".join(sorted(set(available))) or "none"
                raise TemplateError(f"the {template.what} template uses {names}, but no contact "
                                    f"has {'that field' if len(unknown) == 1 else 'those fields'} "
                                    f"(fields: {fields})")

    @property
    def fields_used(self) -> frozenset[str]:
        """The variables the templates read (contact fields and the built-in ones)."""
        used = self.subject_template.variables | self.html_template.variables
        return used | (self.text_template.variables if self.text_template else frozenset())

    # -- per recipient

    def new_message_id(self) -> str:
        """A fresh, unique Message-ID such as ``<nk.3f2a...@example.org>``."""
        return f"<nk.{secrets.token_hex(16)}@{self.message_id_domain}>"

    def token(self, email: str) -> str:
        """The signed unsubscribe token of this campaign for ``email``."""
        return unsubscribe_token(self.signing_key, self.campaign, email)

    def _links(self, email: str) -> tuple[str, str]:
        """The List-Unsubscribe value (folded between its URLs) and the link for the body."""
        return _unsubscribe_links(self.token(email), self.bounce_address, self.unsubscribe_url)

    def _context(self, email: str, fields: Mapping[str, Any], link: str) -> dict[str, Any]:
        context = dict(fields)
        context["email"] = email
        context["unsubscribe_url"] = link
        return context

    def _subject(self, context: dict[str, Any], email: str) -> str:
        return clean_subject(self.subject_template.render(context, email))

    def _text(self, context: dict[str, Any], email: str, html: str) -> str:
        if self.text_template is None:
            text = _html_to_text(html)
            link = context["unsubscribe_url"]
            return text if link in text else text + _UNSUBSCRIBE_LINE.replace("{{ unsubscribe_url }}", link)
        text = self.text_template.render(context, email)
        return wrap_text(text, self._wrapped_lines) if self._wrap_text else text

    def render_preview(self, email: str, fields: Mapping[str, Any]) -> dict[str, str]:
        """Subject, HTML and text of one recipient's message, for a notebook preview.

        Example::

            >>> r = CampaignRenderer(campaign="c", subject="Hi {{ name }}", html="<p>{{ name }}</p>",
            ...     from_addr="news@example.org", bounce_address="b@example.org", signing_key=b"k")
            >>> r.render_preview("ann@example.org", {"name": "Ann & Bob"})["html"]
            '<p>Ann &amp; Bob</p>'
        """
        _check_recipient(email)
        context = self._context(email, fields, self._links(email)[1])
        html = self.html_template.render(context, email)
        return {"subject": self._subject(context, email), "html": html,
                "text": self._text(context, email, html)}

    def reference(self, email: str, fields: Mapping[str, Any], *, message_id: str,
                  date: dt.datetime | None = None, delivery_token: str | None = None) -> EmailMessage:
        """The message built with the stdlib (:data:`REFERENCE_POLICY`): what a correct one is."""
        _check_recipient(email)
        _check_message_id(message_id)
        header_value, link = self._links(email)
        context = self._context(email, fields, link)
        html = self.html_template.render(context, email)
        text = self._text(context, email, html)
        msg = EmailMessage(policy=REFERENCE_POLICY)
        msg["From"] = self.from_addr
        if self.reply_to:
            msg["Reply-To"] = self.reply_to
        msg["To"] = email
        msg["Subject"] = self._subject(context, email)
        msg["Date"] = date or _utc_now()
        msg["Message-ID"] = message_id
        for name, value in self._echo(delivery_token):
            # Set raw, on one line (far below 998 octets): a folded X-SMTPAPI or tag list is
            # one more thing for the provider's parser to get wrong.
            msg.set_raw(name, value)
        if self.list_id:  # set raw: the stdlib would encode a long <list-id>, which must stay as is
            msg.set_raw("List-Id", self.list_id.replace("\r\n", "\n"))
        # Folded to one line when it fits: bounce processing reads it back from quoted originals.
        msg.set_raw("X-Newsletter-Campaign",
                    raw_value(fold_header("X-Newsletter-Campaign", self.campaign, one_line=True)))
        # Set raw: the stdlib turns a long unbreakable URL into encoded words, which no mail
        # client reads as a List-Unsubscribe URL. Lines stay far below RFC 5322's 998.
        msg.set_raw("List-Unsubscribe", header_value.replace("\r\n", "\n"))
        if self.unsubscribe_url:
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(text, subtype="plain", charset="utf-8", cte=choose_cte(text))
        msg.add_alternative(html, subtype="html", charset="utf-8", cte=choose_cte(html))
        for part in msg.iter_parts():
            del part["MIME-Version"]  # add_alternative leaves one in the part: pointless there
        msg.set_boundary(_boundary(message_id, [(p["Content-Transfer-Encoding"],
                                                 str(p.get_payload()).encode("ascii", "surrogateescape"))
                                                for p in msg.iter_parts()]))
        check_message_headers(msg.items())
        return msg

    def _echo(self, delivery_token: str | None) -> list[tuple[str, str]]:
        if self.echo is None or delivery_token is None:
            return []
        return echo_headers(self.echo[0], delivery_token, self.echo[1])

    def _echo_bytes(self, delivery_token: str | None) -> bytes:
        """The echo header lines on the wire: the campaign's template around the token."""
        if delivery_token is None:
            return b""
        if not _ECHO_TOKEN.fullmatch(delivery_token):
            raise ValidationError(f"{delivery_token!r} is not a delivery token", "token")
        template = self._echo_template
        if template is None:
            marker = "0.MARKER"
            text = "".join(f"{name}: {value}\r\n" for name, value in self._echo(marker))
            template = self._echo_template = tuple(part.encode("ascii") for part in text.split(marker))
        return delivery_token.encode("ascii").join(template)

    def render(self, email: str, fields: Mapping[str, Any], *, message_id: str,
               date: dt.datetime | None = None, delivery_token: str | None = None) -> bytes:
        """The message as bytes for the wire (CRLF), equal to ``reference(...).as_bytes()``."""
        _check_recipient(email)
        _check_message_id(message_id)
        date = date or _utc_now()
        self.last_date = date
        header_value, link = self._links(email)
        context = self._context(email, fields, link)
        html = self.html_template.render(context, email)
        html_cte, html_body = _encode_body(html, self._html_lines)
        text_cte, text_body = _encode_body(self._text(context, email, html), self._text_lines)
        boundary = _boundary(message_id, ((text_cte, text_body), (html_cte, html_body))).encode("ascii")
        return b"".join((
            self._head_from,
            self._header_line("To", email),
            self._subject_line(self._subject(context, email)),
            self._header_line("Date", format_datetime(date)),
            self._header_line("Message-ID", message_id),
            self._echo_bytes(delivery_token) if self.echo is not None else b"",
            self._head_campaign, header_value.encode("ascii"), CRLF,
            self._head_post, boundary, b'"\r\n\r\n--', boundary, CRLF,
            _PART_HEAD[("plain", text_cte)], text_body, b"\r\n--", boundary, CRLF,
            _PART_HEAD[("html", html_cte)], html_body, b"\r\n--", boundary, b"--\r\n",
        ))

    def _header_line(self, name: str, value: str) -> bytes:
        """To, Date, Message-ID: values checked by their own format, written as the stdlib does."""
        line = f"{name}: {value}\r\n"
        if len(line) <= MAX_LINE + 2 and _PRINTABLE_ASCII.fullmatch(value):
            return line.encode("ascii")
        return _fold(name, header_text(value, name))

    def _subject_line(self, subject: str) -> bytes:
        line = self._subject_cache.get(subject)
        if line is None:
            fast = _one_line_subject(subject)
            line = check_folded(fast, "Subject") if fast else _fold("Subject", subject)
            if len(self._subject_cache) < 10_000:
                self._subject_cache[subject] = line
        return line


def _one_line_subject(subject: str) -> bytes | None:
    """The Subject line as the stdlib folds it, when it fits on one line; else None.

    A replay of ``email._header_value_parser._refold_parse_tree`` for an unstructured value
    (words and spaces) that stays on one line: ASCII words as they are, and everything from
    the first to the last non-ASCII word as one encoded word made by the stdlib's own encoder.
    Any step where the stdlib would fold instead returns None, and the caller asks the stdlib.
    The tests compare it with the stdlib on random subjects.
    """
    line = "Subject: "
    if not subject or "=?" in subject or subject[0] == " " or subject[-1] == " ":
        return None
    if _OTHER_SPACE.search(subject):  # the stdlib's encoder strips these (str.strip) at word edges
        return None
    if subject.isascii():
        return f"{line}{subject}\r\n".encode("ascii") if len(line) + len(subject) <= MAX_LINE else None
    ew_start: int | None = None
    ew_text = ""  # the decoded text from the encoded word to the end of the line
    for token in _WORDS.split(subject):
        if token.isascii():
            if len(token) > MAX_LINE - len(line):
                return None
            line += token
            ew_text += token
            continue
        if ew_start is not None:  # the stdlib merges it with the encoded word before it
            token, line = ew_text + token, line[:ew_start]
        start, room = len(line), MAX_LINE - len(line)
        if len(token) > room - 12:  # 12: the chrome of =?utf-8?q??=
            return None
        word = _encoded_words.encode(token, charset="utf-8")
        if len(word) > room:
            return None
        line += word
        ew_start, ew_text = start, token
    return f"{line}\r\n".encode("ascii")


_PART_HEAD = {
    (subtype, cte): (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
                     f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode("ascii")
    for subtype in ("plain", "html") for cte in ("7bit", "quoted-printable")
}
