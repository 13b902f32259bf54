"""The message being parsed: headers as clean text, the report's own words, the quoted original,
and who sent it (a mail system or not).  Shared by every detector; computed once per message."""

from __future__ import annotations

import email
import re
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

from ..addresses import lenient_address, scan_addresses, untrusted_lines

# Header values.  compat32 hands back surrogate-escaped 8-bit bytes and folded lines; nothing of
# that kind (nor any control character) may leak into a report.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]+")
_SPACE_RE = re.compile(r"\s+")


def clean(value: object, limit: int = 1000) -> str:
    """A one-line, printable, length-limited version of ``value``."""
    text = _CONTROL_RE.sub(" ", str(value))
    return _SPACE_RE.sub(" ", text).strip()[:limit]


def header_text(msg: Message, name: str) -> str | None:
    """A header as one clean line of text (RFC 2047 decoded when it can be), or None."""
    value = msg.get(name)
    if value is None:
        return None
    text = str(value)
    if "=?" in text:
        try:
            text = str(make_header(decode_header(text)))
        except Exception:  # noqa: BLE001 - a broken encoded-word is shown raw instead
            pass
    text = clean(text)
    return text or None


_MSGID_RE = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>")


def first_message_id(value: str | None) -> str | None:
    """The first ``<...>`` message id in a header value, or None."""
    if not value:
        return None
    match = _MSGID_RE.search(value)
    return match.group(0) if match else None


def iso_date(value: str | None) -> str | None:
    try:
        return parsedate_to_datetime(value).isoformat() if value else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# --- the message being parsed ---


class Context:
    """One parsed message plus what detectors share, computed once on first use."""

    def __init__(self, msg: Message, raw: bytes = b""):
        self.msg = msg
        self.raw = raw
        self._typed: list[tuple[str, Message]] | None = None
        self._text: str | None = None
        self._original: tuple[Message | None] | None = None
        #: What earlier detectors noticed without deciding (e.g. a flufl.bounce detector that
        #: failed), for the reason of a later verdict.
        self.notes: list[str] = []
        self._haystacks: tuple[str, str] | None = None
        self._original_sender: set[str] | None = None
        self._own: set[str] | None = None

    @property
    def typed(self) -> list[tuple[str, Message]]:
        """(content type, part) of every MIME part; compat32's walk enters message/* parts too."""
        if self._typed is None:
            self._typed = [(part.get_content_type(), part) for part in self.msg.walk()]
        return self._typed

    @property
    def original(self) -> Message | None:
        """Our quoted original message (or its headers), if the report includes it."""
        if self._original is None:
            self._original = (quoted_original(self),)
        return self._original[0]

    @property
    def text(self) -> str:
        """The report's own text (text parts, not attachments or quoted messages)."""
        if self._text is None:
            self._text = body_text(self.msg)
        return self._text

    def heuristic_msg(self) -> Message:
        """The message for flufl.bounce's line-by-line heuristics: its first 256 KB when larger.

        They scan every line of every part (attachments included), so a big message costs them
        seconds; a notice's wording and addresses come first, before any quoted attachment.
        """
        if len(self.raw) <= _HEURISTIC_LIMIT:
            return self.msg
        return email.message_from_bytes(self.raw[:_HEURISTIC_LIMIT], policy=compat32)

    def subject(self) -> str:
        return header_text(self.msg, "Subject") or ""

    def forged_only(self, address: str) -> bool:
        """Is ``address`` written in the message only after a line break spelled as text
        (``\\r\\n``, ``%0a``, ``=0A``, ``&#10;``...)?  Then heuristics (flufl.bounce's, our wording
        scanner) must not report it: "a@x\\r\\nb@y" names a@x, never b@y.  An address the
        heuristics put together from parts (a user name and the reporting domain) is not forged."""
        if self._haystacks is None:
            self._haystacks = _haystacks(self)
        trusted, everything = self._haystacks
        return address not in trusted and address in everything

    def own_addresses(self) -> set[str]:
        """Addresses of the report's own sender and receiver: never a bounced recipient."""
        if self._own is None:
            self._own = self._find_own()
        return self._own

    def _find_own(self) -> set[str]:
        found: set[str] = set()
        # Not X-Original-To: some agents (DragonFly) put the failed recipient there.
        for name in ("From", "To", "Cc", "Sender", "Reply-To", "Delivered-To", "Return-Path", "Errors-To"):
            for value in self.msg.get_all(name, []):
                for match in scan_addresses(str(value)):  # not getaddresses(): several times faster
                    norm = lenient_address(match.group(0))
                    if norm:
                        found.add(norm)
        return found


    def original_sender(self) -> set[str]:
        """Who sent our original (its From, Sender, Return-Path, as quoted, attached or inline),
        less anyone it was also sent to: never a failed recipient."""
        if self._original_sender is None:
            self._original_sender = self._find_original_sender()
        return self._original_sender

    def _find_original_sender(self) -> set[str]:
        original = self.original
        senders: set[str] = set()
        receivers: set[str] = set()
        if original is not None:
            pairs = [(name, str(v)) for name in ("From", "Sender", "Return-Path", "To", "Cc") for v in original.get_all(name, [])]
        else:
            pairs = [(m.group(1), m.group(2)) for m in _INLINE_HEADER_RE.finditer(self.text)]
        for name, value in pairs:
            target = receivers if name.lower() in ("to", "cc") else senders
            # scan_addresses, not getaddresses(): several times faster, and exact enough here
            for match in scan_addresses(value):
                norm = lenient_address(match.group(0))
                if norm:
                    target.add(norm)
        return senders - receivers


_INLINE_HEADER_RE = re.compile(r"^[ \t>]*(from|sender|return-path|to|cc):[ \t]*([^\r\n]{1,500})", re.IGNORECASE | re.MULTILINE)
_TEXT_LIMIT = 256 * 1024
_HEURISTIC_LIMIT = 256 * 1024
_QP_SOFT_BREAK_RE = re.compile(r"=\r?\n")


def _haystacks(ctx: Context) -> tuple[str, str]:
    """(every header value and text line of the message with each cut at its first line break
    spelled as text, the same uncut), lowercased.  Quoted-printable text is read before decoding
    (an ``=0A`` there is such a spelling), without its soft line breaks."""
    texts: list[str] = []
    for _ctype, part in ctx.typed:
        texts += [str(value) for value in part.values()]
        payload = part_payload(part)
        if not isinstance(payload, str):
            continue
        if str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "quoted-printable":
            texts.append(_QP_SOFT_BREAK_RE.sub("", payload[:_TEXT_LIMIT]))
        else:
            texts.append(decode_part(part))
    everything = "\n".join(texts).lower()
    return "\n".join(untrusted_lines(everything)), everything


def part_payload(part: Message) -> list[Message] | str:
    """``get_payload()`` that survives a garbage charset parameter on 8-bit text."""
    try:
        payload = part.get_payload()
    except (ValueError, LookupError):
        # compat32 decodes 8-bit text with the declared charset and only expects LookupError.
        data = part.get_payload(decode=True)
        return data.decode("latin-1") if isinstance(data, bytes) else ""
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    return payload if isinstance(payload, str) else ""


def decode_part(part: Message) -> str:
    """A text part's body as text: declared charset, else UTF-8, else Latin-1; never raises."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - broken transfer encoding: fall back to the raw text
        payload = None
    if not isinstance(payload, bytes):
        raw = part_payload(part)
        return raw[:_TEXT_LIMIT] if isinstance(raw, str) else ""
    data = payload[:_TEXT_LIMIT]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    charset = part.get_content_charset() or "latin-1"
    try:
        return data.decode(charset, "replace")
    except (LookupError, ValueError):
        return data.decode("latin-1")


_TAG_RE = re.compile(r"<[^>]{0,2000}>")


def body_text(msg: Message) -> str:
    """Text of the report's own parts; HTML only when there is no plain text."""
    plain: list[str] = []
    html: list[str] = []
    stack = [msg]
    while stack and len(plain) + len(html) < 50:
        part = stack.pop(0)
        payload = part_payload(part)
        maintype = part.get_content_maintype()
        if isinstance(payload, list):
            # A quoted message (message/rfc822) is our original, not the report's wording.
            if maintype != "message":
                stack.extend(p for p in payload if isinstance(p, Message))
            continue
        if part.get_content_type() == "text/html":
            html.append(_TAG_RE.sub(" ", decode_part(part)))
        elif maintype in ("text", "multipart"):  # a multipart without its boundary is still text
            plain.append(decode_part(part))
    return "\n".join(plain or html)


# --- the quoted original (our message) ---

_ORIGINAL_TYPES = (
    "message/rfc822",
    "text/rfc822-headers",
    "message/rfc822-headers",
    "message/global",
    "message/global-headers",
)


def quoted_original(ctx: Context) -> Message | None:
    """The first quoted message (or its headers) inside the report, as a Message."""
    for ctype, part in ctx.typed[1:]:
        if ctype not in _ORIGINAL_TYPES:
            continue
        payload = part_payload(part)
        if isinstance(payload, list):
            if payload and isinstance(payload[0], Message):
                return payload[0]
            continue
        text = decode_part(part)
        if text.strip():
            return HeaderParser(policy=compat32).parsestr(text.lstrip(), headersonly=True)
    return None


# --- who sent it: a mail system reporting a failure? ---

_FAILURE_SUBJECT_RE = re.compile(
    r"undeliver|not (?:be )?delivered|delivery (?:status|fail|has failed|problem|notification|report|delayed|error)|"
    r"mail delivery|returned mail|failure notice|non[- ]?deliver|could not (?:be )?(?:delivered|send)|mail system error|"
    r"returned to sender|\bbounced?\b|delayed mail|warning: could not|delivery delay|"
    r"non recapitat|mancat[oa] (?:consegna|recapito)|impossibile (?:recapitare|consegnare)|errore (?:di|nella) (?:consegna|recapito)|"
    r"notifica (?:di|dello) stato|rapporto di (?:mancato )?recapito|non consegnat|consegna (?:fallita|ritardata)",
    re.IGNORECASE,
)
_DAEMON_NAME_RE = re.compile(r"mail delivery (?:system|subsystem)|mailer[- ]daemon|postmaster|sistema di (?:recapito|posta)", re.IGNORECASE)
DAEMON_RE = re.compile(r"^(?:mailer[-_]?daemon|post_?master|mail[-_]?daemon|mail[-_]?delivery[-_]?(?:system|subsystem)?|double-bounce|nobody)(?:[+@]|$)", re.IGNORECASE)


def from_daemon(msg: Message) -> bool:
    """Sent by a mail system (MAILER-DAEMON, postmaster, "Mail Delivery System")?"""
    for name in ("From", "Sender"):
        for display, addr in getaddresses([str(v) for v in msg.get_all(name, [])]):
            if DAEMON_RE.match(addr.strip()) or _DAEMON_NAME_RE.search(display):
                return True
    return "mailer-daemon" in str(msg.get("Return-Path", "")).lower()


# A notice's own opening words, for notices with a bland subject from a no-reply sender.
_FAILURE_OPENING_RE = re.compile(
    r"could not be delivered to|(?:was|were) not delivered to|error delivering your (?:mail|message)|"
    r"(?:message|mail) (?:could not|did not|cannot) (?:be delivered|reach)|delivery to the following recipients? failed|"
    r"unable to deliver (?:the |your )?(?:message|mail) to|following addresses had (?:permanent )?(?:fatal |delivery )?errors",
    re.IGNORECASE,
)


_NO_REPLY_RE = re.compile(r"no-?reply|do-?not-?reply|daemon|post_?master|mailer", re.IGNORECASE)


def looks_like_failure(ctx: Context) -> bool:
    """A failure notice by its subject, its sender, an Exim header, or its opening words."""
    if _FAILURE_SUBJECT_RE.search(ctx.subject()) or from_daemon(ctx.msg) or ctx.msg.get("X-Failed-Recipients") is not None:
        return True
    if clean(ctx.msg.get("Auto-Submitted", "no"), 50).lower().startswith("auto-replied"):
        return False
    # Only from a machine (null envelope sender or a no-reply address): a person may well write
    # "could not be delivered to" in an ordinary mail.
    machine = clean(ctx.msg.get("Return-Path", ""), 10) == "<>" or bool(_NO_REPLY_RE.search(str(ctx.msg.get("From", ""))))
    return machine and bool(_FAILURE_OPENING_RE.search(ctx.text[:1500]))

