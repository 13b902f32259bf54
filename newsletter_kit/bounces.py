"""Bounce messages: parse one message into a :class:`BounceReport`; threshold policy below.

Parsing tries detectors in order of authority, as flufl.bounce does: an ARF complaint, an RFC 3464
DSN, auto-reply headers, then non-DSN failure notices (flufl.bounce's detectors,
``X-Failed-Recipients`` and our own English/Italian wording), auto-reply subjects, and finally a
plain human mail.  The first detector that recognises the message decides its kind.

Parsing never raises: a message that cannot be understood comes back as kind ``other`` with a
``reason``, so one bad message never stops an ingestion run of thousands.

>>> report = parse_bounce(open("bounce.eml", "rb").read())  # doctest: +SKIP
>>> report.kind.value, report.addresses, report.message_id   # doctest: +SKIP
('hard', ['mario.rossi@example.it'], '<20261120091500.c42.r7@news.example.org>')
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from enum import StrEnum
from os import PathLike
from typing import Callable, Iterable

from flufl.bounce import all_failures

try:  # the ordered detector list behind all_failures(), to run each one on its own
    from flufl.bounce._scan import _DETECTORS as _FLUFL_DETECTORS
except ImportError:  # pragma: no cover - a flufl.bounce without it: wrap all_failures() instead
    class _AllFailures:
        def process(self, msg: Message) -> tuple[frozenset[bytes], frozenset[bytes]]:
            return all_failures(msg)

    _FLUFL_DETECTORS = [_AllFailures]  # type: ignore[list-item]

__all__ = [
    "AUTOREPLY",
    "BOUNCE_KINDS",
    "BounceKind",
    "BounceRecipient",
    "BounceReport",
    "COMPLAINT",
    "DELAYED",
    "HARD",
    "HUMAN",
    "OTHER",
    "POLICY",
    "SEVERITY",
    "SOFT",
    "is_valid_address",
    "parse_bounce",
    "parse_bounce_file",
]


# --- parsing ---------------------------------------------------------------------------------


class BounceKind(StrEnum):
    """What a message says about a delivery (a ``str``, so it compares and serialises as text)."""

    HARD = "hard"
    SOFT = "soft"
    POLICY = "policy"
    DELAYED = "delayed"
    COMPLAINT = "complaint"
    AUTOREPLY = "autoreply"
    HUMAN = "human"
    OTHER = "other"


HARD = BounceKind.HARD
SOFT = BounceKind.SOFT
POLICY = BounceKind.POLICY
DELAYED = BounceKind.DELAYED
COMPLAINT = BounceKind.COMPLAINT
AUTOREPLY = BounceKind.AUTOREPLY
HUMAN = BounceKind.HUMAN
OTHER = BounceKind.OTHER

#: The kinds that are delivery failures (``is_bounce``).
BOUNCE_KINDS = frozenset({HARD, SOFT, POLICY})
#: A report with several recipients takes the most severe kind of theirs.
SEVERITY = {HARD: 4, POLICY: 3, SOFT: 2, DELAYED: 1}


@dataclass
class BounceRecipient:
    """One recipient named by a report: the address we sent to and what happened to it."""

    address: str
    kind: BounceKind
    status: str | None = None
    action: str | None = None
    diagnostic: str | None = None
    remote_mta: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """The recipient as in ``bounces parse --json``.

        >>> BounceRecipient("a@example.com", HARD, "5.1.1", "failed").to_dict()["kind"]
        'hard'
        """
        return {
            "address": self.address,
            "kind": str(self.kind.value),
            "status": self.status,
            "action": self.action,
            "diagnostic": self.diagnostic,
        }


@dataclass
class BounceReport:
    """What one message says: its kind, the recipients it names, and our original's identity.

    ``message_id`` and ``campaign`` belong to *our* original message (quoted by the report);
    ``report_message_id`` and ``date`` belong to the report itself.
    """

    is_bounce: bool
    kind: BounceKind
    recipients: list[BounceRecipient] = field(default_factory=list)
    campaign: str | None = None
    message_id: str | None = None
    reason: str | None = None
    report_message_id: str | None = None
    date: str | None = None
    reporting_mta: str | None = None
    verp_token: str | None = None

    @property
    def addresses(self) -> list[str]:
        """The recipients' addresses, in report order."""
        return [r.address for r in self.recipients]

    def to_dict(self) -> dict[str, object]:
        """The report as one object of ``bounces parse --json`` (without ``file``).

        >>> BounceReport(False, HUMAN).to_dict()["kind"]
        'human'
        """
        return {
            "is_bounce": self.is_bounce,
            "kind": str(self.kind.value),
            "recipients": [r.to_dict() for r in self.recipients],
            "campaign": self.campaign,
            "message_id": self.message_id,
        }


def parse_bounce(raw: bytes) -> BounceReport:
    """Parse one raw message (bytes as fetched) into a report; never raises.

    >>> parse_bounce(b"From: a@example.com\\r\\nSubject: hi\\r\\n\\r\\nthanks!").kind
    <BounceKind.HUMAN: 'human'>
    """
    try:
        return _parse(bytes(raw))
    except Exception as exc:  # noqa: BLE001 - recorded in the report: one bad message never stops a run
        return BounceReport(False, OTHER, reason=f"unparseable message: {type(exc).__name__}: {_clean(str(exc), 200)}")


def parse_bounce_file(path: str | PathLike[str]) -> BounceReport:
    """Parse a message stored in a file (an .eml); an unreadable file raises ``OSError``.

    >>> parse_bounce_file("tests/bounce_samples/postfix_hard_511.eml").kind  # doctest: +SKIP
    <BounceKind.HARD: 'hard'>
    """
    with open(path, "rb") as fh:
        return parse_bounce(fh.read())


# Addresses: RFC 5321 dot-atom local part, LDH domain with at least one dot, ASCII only.  Strict
# on purpose: whatever comes out goes into SQL, logs and SMTP commands, so no quotes, backslashes,
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


def _normalise_address(candidate: object) -> str | None:
    """The lowercased address in ``candidate`` (``<a@b>``, ``mailto:a@b``...), or None if invalid.

    ``candidate`` may be bytes (flufl.bounce) or a compat32 ``Header`` (8-bit header values).
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


# Header values.  compat32 hands back surrogate-escaped 8-bit bytes and folded lines; nothing of
# that kind (nor any control character) may leak into a report.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]+")
_SPACE_RE = re.compile(r"\s+")


def _clean(value: object, limit: int = 1000) -> str:
    """A one-line, printable, length-limited version of ``value``."""
    text = _CONTROL_RE.sub(" ", str(value))
    return _SPACE_RE.sub(" ", text).strip()[:limit]


def _header(msg: Message, name: str) -> str | None:
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
    text = _clean(text)
    return text or None


_MSGID_RE = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>")


def _message_id(value: str | None) -> str | None:
    """The first ``<...>`` message id in a header value, or None."""
    if not value:
        return None
    match = _MSGID_RE.search(value)
    return match.group(0) if match else None


def _iso_date(value: str | None) -> str | None:
    try:
        return parsedate_to_datetime(value).isoformat() if value else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# RFC 3463 status codes and SMTP reply codes.
# The lookbehind comes after the first digit so that re's fast scan for [245] still applies.
_STATUS_RE = re.compile(r"([245])(?<![\d.].)\.(\d{1,3})\.(\d{1,3})(?!\d)")
# An SMTP reply code (RFC 5321: second digit 0-5), not a phone number like 480-624-2500.
_SMTP_CODE_RE = re.compile(r"([45])(?<![\d.-].)[0-5]\d(?: |-(?!\d{3}-)|$)", re.MULTILINE)


def _status_codes(text: str | None) -> list[str]:
    return [".".join(m.groups()) for m in _STATUS_RE.finditer(text or "")]


def _most_specific_status(status_field: str | None, diagnostic: str | None) -> str | None:
    """The Status code, unless it is a generic X.0.0 and the diagnostic names a specific one."""
    stated = _status_codes(status_field)
    status = stated[0] if stated else None
    if status is None or status.endswith(".0.0"):
        for code in _status_codes(diagnostic):
            if not code.endswith(".0.0"):
                return code
        if status is None:
            found = _status_codes(diagnostic)
            status = found[0] if found else None
    return status


def _wording(pattern: str) -> re.Pattern[str]:
    """A wording regex, searched in *lowercased* text: anchored at a word start and compiled
    without IGNORECASE, which makes these long alternations about ten times faster."""
    return re.compile(rf"\b(?:{pattern})")


# Wording, English and Italian, in lowercase.  Order matters: a full mailbox is soft even when
# it says "5xx".
_FULL_RE = _wording(
    r"mailbox (?:is )?full|over ?quota|quota (?:exceeded|exceed)|exceed\w* (?:the |his |her |its |their )?"
    r"(?:storage |mailbox |disk )?(?:quota|allocation)|disk quota|insufficient (?:system )?(?:storage|space)|"
    r"(?:mail ?folder|inbox|mailbox|account) (?:is )?(?:full|over ?quota)|mailbox size limit|storage (?:limit|quota)|mailbox exceeded|reached (?:\w+ )?quota|"
    r"casella (?:di posta )?(?:\w+ )?piena|superat[oa] (?:la |il )?(?:quota|limite|spazio)|spazio (?:esaurito|insufficiente)|"
    r"quota superata|casella (?:di posta )?(?:\w+ )?esaurita",
)
_HARD_RE = _wording(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient|address|account)|unknown (?:recipient|address|mailbox|local)|"
    r"(?:does not|doesn't|did not|not) exist|invalid (?:recipient|address|mailbox|user)|recipient (?:address )?rejected|"
    r"address rejected|mailbox (?:unavailable|not found|disabled|inactive)|user not found|recipientnotfound|"
    r"account (?:has been |is )?(?:disabled|closed|suspended|deactivated|inactive)|not a valid (?:mailbox|address|user)|"
    r"bad (?:destination|recipient|address)|no longer (?:valid|active|exists?|in use|available)|no mailbox|unrouteable|unroutable|not our customer|"
    r"utente (?:sconosciuto|inesistente|non (?:esistente|valido|trovato))|indirizzo (?:inesistente|non (?:valido|esistente)|errato|sconosciuto)|"
    r"destinatario (?:inesistente|sconosciuto|non (?:valido|esistente))|casella (?:di posta )?(?:inesistente|non (?:esistente|attiva))|"
    r"non esiste|account (?:disattivato|disabilitato|sospeso)",
)
_POLICY_RE = _wording(
    # Not a bare "listed" or "policy": notices say "the recipients listed below", "privacy policy".
    r"\bspam\b|\bblocked\b|block ?listed|black ?listed|block ?list|black ?list|\bdnsbl|\brbl\b|"
    r"listed (?:on|in|at|by) (?:the )?\S*(?:bl\b|list|spamhaus|spamcop|barracuda|sorbs)|spamhaus|spamcop|"
    r"(?:local|security|content|anti-?spam|sender|our|dmarc|spf) policy|policy (?:reasons?|violation|rejection|restriction)|"
    r"rejected (?:by|due to|for) (?:\w+ ){0,2}policy|reputation|"
    r"content rejected|\bvirus\b|bloccat[oa]|considerat[oa] (?:come )?spam|rifiutat[oa] per (?:spam|policy|motivi)",
)
_DELAY_RE = _wording(
    r"not yet been delivered|(?:has|have) not been delivered yet|will (?:continue|keep) (?:to )?(?:try|retry)|still (?:trying|being retried)|delayed|"
    r"will retry|will be retried|warning: could not|non (?:è )?(?:ancora )?stato (?:ancora )?recapitato|ancora in coda|"
    r"continuer[àa] (?:a )?(?:tentare|provare)|ritardat[oa]",
)
_TEMP_RE = _wording(
    r"temporar|try (?:again )?later|deferred|timed? ?out|temporaneamente|riprova|temporane[oa]",
)


def _kind_from_status(status: str) -> BounceKind:
    """RFC 3463: mailbox full is soft in any class, 5.7.x is policy, 4.x.x soft, other 5.x.x hard."""
    klass, subject, detail = status.split(".")
    if subject == "2" and detail == "2":
        return SOFT
    if klass == "4":
        return SOFT
    if klass == "5" and subject == "7":
        return POLICY
    return HARD if klass == "5" else OTHER


def _kind_from_wording(text: str) -> BounceKind | None:
    low = text.lower()
    if _FULL_RE.search(low):
        return SOFT
    if _HARD_RE.search(low):
        return HARD
    if _POLICY_RE.search(low):
        return POLICY
    if _TEMP_RE.search(low):
        return SOFT
    return None


def _classify_failure(status: str | None, text: str, transient: bool = False) -> BounceKind:
    """The kind of a failure from its status code first, then its wording, then its SMTP code.

    A generic X.0.0 code says only the class, so wording ("disk quota") may refine it.
    """
    if status and not status.endswith(".0.0"):
        return _kind_from_status(status)
    worded = _kind_from_wording(text)
    if worded is not None:
        return worded
    if status:
        return _kind_from_status(status)
    smtp = _SMTP_CODE_RE.search(text)
    if smtp:
        return SOFT if smtp.group(1) == "4" else HARD
    return SOFT if transient else HARD


def _worst(kinds: list[BounceKind]) -> BounceKind:
    return max(kinds, key=lambda k: SEVERITY.get(k, 0)) if kinds else OTHER


def _merge(recipients: list[BounceRecipient]) -> list[BounceRecipient]:
    """One entry per address, keeping the most severe; order of first appearance."""
    merged: dict[str, BounceRecipient] = {}
    for rcpt in recipients:
        seen = merged.get(rcpt.address)
        if seen is None or SEVERITY.get(rcpt.kind, 0) > SEVERITY.get(seen.kind, 0):
            merged[rcpt.address] = rcpt
    return list(merged.values())


# --- the message being parsed ---


class _Context:
    """One parsed message plus what detectors share, computed once on first use."""

    def __init__(self, msg: Message, raw: bytes = b""):
        self.msg = msg
        self.raw = raw
        self._typed: list[tuple[str, Message]] | None = None
        self._text: str | None = None
        self._original: tuple[Message | None] | None = None

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
            self._original = (_quoted_original(self),)
        return self._original[0]

    @property
    def text(self) -> str:
        """The report's own text (text parts, not attachments or quoted messages)."""
        if self._text is None:
            self._text = _body_text(self.msg)
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
        return _header(self.msg, "Subject") or ""

    def own_addresses(self) -> set[str]:
        """Addresses of the report's own sender and receiver: never a bounced recipient."""
        found: set[str] = set()
        for name in ("From", "To", "Cc", "Sender", "Reply-To", "Delivered-To", "X-Original-To", "Return-Path", "Errors-To"):
            for value in self.msg.get_all(name, []):
                for _, addr in getaddresses([str(value)]):
                    norm = _normalise_address(addr)
                    if norm:
                        found.add(norm)
        return found


_TEXT_LIMIT = 256 * 1024
_HEURISTIC_LIMIT = 256 * 1024


def _payload(part: Message) -> list[Message] | str:
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


def _decode_part(part: Message) -> str:
    """A text part's body as text: declared charset, else UTF-8, else Latin-1; never raises."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - broken transfer encoding: fall back to the raw text
        payload = None
    if not isinstance(payload, bytes):
        raw = _payload(part)
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


def _body_text(msg: Message) -> str:
    """Text of the report's own parts; HTML only when there is no plain text."""
    plain: list[str] = []
    html: list[str] = []
    stack = [msg]
    while stack and len(plain) + len(html) < 50:
        part = stack.pop(0)
        payload = _payload(part)
        maintype = part.get_content_maintype()
        if isinstance(payload, list):
            # A quoted message (message/rfc822) is our original, not the report's wording.
            if maintype != "message":
                stack.extend(p for p in payload if isinstance(p, Message))
            continue
        if part.get_content_type() == "text/html":
            html.append(_TAG_RE.sub(" ", _decode_part(part)))
        elif maintype in ("text", "multipart"):  # a multipart without its boundary is still text
            plain.append(_decode_part(part))
    return "\n".join(plain or html)


# --- the quoted original: our Message-ID, campaign and VERP token ---

_ORIGINAL_TYPES = (
    "message/rfc822",
    "text/rfc822-headers",
    "message/rfc822-headers",
    "message/global",
    "message/global-headers",
)


def _quoted_original(ctx: _Context) -> Message | None:
    """The first quoted message (or its headers) inside the report, as a Message."""
    for ctype, part in ctx.typed[1:]:
        if ctype not in _ORIGINAL_TYPES:
            continue
        payload = _payload(part)
        if isinstance(payload, list):
            if payload and isinstance(payload[0], Message):
                return payload[0]
            continue
        text = _decode_part(part)
        if text.strip():
            return HeaderParser(policy=compat32).parsestr(text.lstrip(), headersonly=True)
    return None


_BODY_MSGID_RE = re.compile(r"^[ \t>]*message-id:[ \t]*(<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_BODY_CAMPAIGN_RE = re.compile(r"^[ \t>]*x-newsletter-campaign:[ \t]*([^\r\n]{1,200})", re.IGNORECASE | re.MULTILINE)
_VERP_RE = re.compile(r"^bounces\+([A-Za-z0-9._=-]{1,200})@", re.IGNORECASE)


def _verp_token(address: str | None) -> str | None:
    """The token of a VERP envelope address ``bounces+TOKEN@domain``, or None.

    >>> _verp_token("bounces+c12.r345@news.example.com")
    'c12.r345'
    """
    if not address:
        return None
    match = _VERP_RE.match(address.strip().strip("<>"))
    return match.group(1) if match else None


_VERP_SCAN_RE = re.compile(r"(?<![A-Za-z0-9.+_=-])bounces\+[A-Za-z0-9._=-]{1,200}@", re.IGNORECASE)


def _find_verp(ctx: _Context, original: Message | None) -> str | None:
    """The VERP token of the envelope address the report came back to (or our original's)."""
    sources: list[tuple[Message, tuple[str, ...]]] = [
        (ctx.msg, ("Delivered-To", "X-Original-To", "Envelope-To", "To")),
    ]
    if original is not None:
        sources.append((original, ("Return-Path",)))
    for msg, names in sources:
        for name in names:
            for value in msg.get_all(name, []):
                # A regex, not getaddresses(): several times faster, and this runs on every report.
                found = _VERP_SCAN_RE.search(str(value))
                if found:
                    return _verp_token(found.group(0))
    return None


def _attach_original(ctx: _Context, report: BounceReport) -> BounceReport:
    """Fill message_id/campaign (our original's) and the VERP token into ``report``."""
    original = ctx.original
    if original is not None:
        report.message_id = _message_id(_header(original, "Message-ID"))
        report.campaign = _header(original, "X-Newsletter-Campaign")
    if report.message_id is None or report.campaign is None:
        text = ctx.text
        if report.message_id is None:
            found = _BODY_MSGID_RE.search(text)
            report.message_id = found.group(1) if found else None
        if report.campaign is None:
            camp = _BODY_CAMPAIGN_RE.search(text)
            report.campaign = (_clean(camp.group(1), 200) or None) if camp else None
    if report.message_id is None:
        # Replies, and some MTAs' reports (Gmail, Exchange), name our message in In-Reply-To
        # rather than quoting it.
        report.message_id = _message_id(_header(ctx.msg, "In-Reply-To"))
    report.verp_token = _find_verp(ctx, original)
    return report


# --- detectors, most authoritative first ---

Detector = Callable[[_Context], "BounceReport | None"]


def _detect_arf(ctx: _Context) -> BounceReport | None:
    """An ARF (RFC 5965) feedback report: a spam complaint about our message."""
    msg = ctx.msg
    is_arf = ctx.typed[0][0] == "multipart/report" and "feedback-report" in str(msg.get("Content-Type", "")).lower()
    feedback = next((p for t, p in ctx.typed if t == "message/feedback-report"), None)
    if not is_arf and feedback is None:
        return None
    candidates: list[str] = []
    fields = _feedback_fields(feedback) if feedback is not None else None
    if fields is not None:
        candidates += [str(v) for v in fields.get_all("Original-Rcpt-To", []) + fields.get_all("Removal-Recipient", [])]
    original = ctx.original
    if not candidates and original is not None:
        candidates += [addr for _, addr in getaddresses([str(v) for v in original.get_all("To", [])])]
    addresses = dict.fromkeys(a for a in map(_normalise_address, candidates) if a)
    recipients = [BounceRecipient(a, COMPLAINT) for a in addresses]
    feedback_type = _header(fields, "Feedback-Type") if fields is not None else None
    return BounceReport(False, COMPLAINT, recipients, reason=f"feedback report: {feedback_type or 'abuse'}")


def _feedback_fields(part: Message) -> Message | None:
    payload = _payload(part)
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else None
    return HeaderParser(policy=compat32).parsestr(_decode_part(part).lstrip(), headersonly=True)


def _detect_dsn(ctx: _Context) -> BounceReport | None:
    """RFC 3464 delivery status notifications, also nested in multipart/mixed."""
    blocks: list[Message] = []
    for ctype, part in ctx.typed:
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            blocks += _status_blocks(part)
    if not blocks and _DSN_FIELD_RE.search(ctx.text):
        blocks = _text_status_blocks(ctx.text)
    if not blocks:
        return None
    reporting = next((_mta(b.get("Reporting-MTA")) for b in blocks if b.get("Reporting-MTA")), None)
    recipients = _merge([r for r in map(_dsn_recipient, blocks) if r is not None])
    if not recipients:
        return None  # no usable address: let the other detectors try the wording
    failures = [r.kind for r in recipients if r.kind in SEVERITY]
    kind = _worst(failures)
    reason = None if failures else "delivery status notification reports no failure"
    return BounceReport(kind in BOUNCE_KINDS, kind, recipients, reason=reason, reporting_mta=reporting)


def _status_blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status part (compat32 parses them into a list)."""
    payload = _payload(part)
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    # Encoded (base64) or global delivery-status: split the text into blocks ourselves.
    parser = HeaderParser(policy=compat32)
    text = _decode_part(part).replace("\r\n", "\n")
    return [parser.parsestr(chunk.strip("\n"), headersonly=True) for chunk in re.split(r"\n[ \t]*\n", text) if chunk.strip()]


_DSN_FIELD_RE = re.compile(r"^(?:final|original)-recipient:", re.IGNORECASE | re.MULTILINE)
_DSN_BLOCK_RE = re.compile(r"^(?:final-recipient|original-recipient|reporting-mta):", re.IGNORECASE | re.MULTILINE)
_FIELD_LINE_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,60}:|[ \t]")


def _text_status_blocks(text: str) -> list[Message]:
    """DSN fields found in plain text: a delivery-status part whose MIME structure was lost
    (no boundary, or pasted into the notice), parsed block by block."""
    parser = HeaderParser(policy=compat32)
    blocks = []
    for chunk in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        if not _DSN_BLOCK_RE.search(chunk):
            continue
        fields = [line for line in chunk.split("\n") if _FIELD_LINE_RE.match(line)]
        while fields and fields[0][:1] in (" ", "\t"):
            fields.pop(0)  # a continuation line with nothing to continue
        blocks.append(parser.parsestr("\n".join(fields), headersonly=True))
    return blocks


def _mta(value: object) -> str | None:
    """``dns; mx.example.com`` → ``mx.example.com``."""
    if value is None:
        return None
    text = _clean(value, 255)
    return text.partition(";")[2].strip() or None if ";" in text else (text or None)


def _typed_address(value: object) -> str | None:
    """``rfc822; a@b`` → ``a@b``; None when the value is not a valid plain address."""
    if value is None:
        return None
    text = _clean(value, 512)
    _addr_type, sep, rest = text.partition(";")
    if not sep:
        return _normalise_address(text)
    # Any type whose value is a plain address will do (rfc822, utf-8, some MTAs' "local");
    # x400 and the like never pass validation.
    words = rest.split()
    return _normalise_address(words[0]) if words else None


def _dsn_recipient(block: Message) -> BounceRecipient | None:
    """One per-recipient block → a recipient; None for the per-message block or no valid address."""
    original, final = block.get("Original-Recipient"), block.get("Final-Recipient")
    if original is None and final is None:
        return None
    address = _typed_address(original) or _typed_address(final) or _normalise_address(block.get("X-Actual-Recipient"))
    if address is None:
        return None
    action_text = _clean(block.get("Action", ""), 100).lower()
    action = action_text.split(" ")[0].rstrip(";,") or None
    status_text = _clean(block.get("Status", ""), 200)
    diagnostic = _diagnostic(block.get("Diagnostic-Code"))
    status = _most_specific_status(status_text, diagnostic)
    kind = _dsn_kind(action, status, f"{status_text} {diagnostic or ''}")
    return BounceRecipient(address, kind, status, action, diagnostic, _mta(block.get("Remote-MTA")))


def _diagnostic(value: object) -> str | None:
    """``smtp; 550 5.1.1 ...`` → ``550 5.1.1 ...`` on one line."""
    if value is None:
        return None
    text = _clean(value, 1000)
    head, sep, rest = text.partition(";")
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,20}", head.strip()):
        text = rest.strip()
    return text or None


def _dsn_kind(action: str | None, status: str | None, text: str) -> BounceKind:
    if action and action.startswith("delayed"):
        return DELAYED
    if action in ("delivered", "relayed", "expanded"):
        return OTHER
    if action is None and status is None:
        return _kind_from_wording(text) or OTHER
    return _classify_failure(status, text)


# Auto-replies: RFC 3834 headers, vendor headers, subjects in English, Italian and a few others.
_AUTOREPLY_SUBJECT_RE = re.compile(
    r"auto(?:matic|matische)?[ -]?(?:reply|response|respond|antwort)|out of (?:the )?office|\bOOO\b|away from (?:the |my )?office|"
    r"\bon vacation\b|vacation (?:reply|notice|message)|risposta automatica|fuori (?:ufficio|sede)|\bassente\b|\bassenza\b|\bin ferie\b|"
    r"r[ée]ponse automatique|\babsent\b|abwesenheit|respuesta autom[áa]tica|fuera de la oficina",
    re.IGNORECASE,
)
_FAILURE_SUBJECT_RE = re.compile(
    r"undeliver|not (?:be )?delivered|delivery (?:status|fail|has failed|problem|notification|report|delayed|error)|"
    r"mail delivery|returned mail|failure notice|non[- ]?deliver|could not (?:be )?(?:delivered|send)|mail system error|"
    r"returned to sender|\bbounced?\b|delayed mail|warning: could not|delivery delay|"
    r"non recapitat|mancat[oa] (?:consegna|recapito)|impossibile (?:recapitare|consegnare)|errore (?:di|nella) (?:consegna|recapito)|"
    r"notifica (?:di|dello) stato|rapporto di (?:mancato )?recapito|non consegnat|consegna (?:fallita|ritardata)",
    re.IGNORECASE,
)
_DAEMON_NAME_RE = re.compile(r"mail delivery (?:system|subsystem)|mailer[- ]daemon|postmaster|sistema di (?:recapito|posta)", re.IGNORECASE)
_DAEMON_RE = re.compile(r"^(?:mailer[-_]?daemon|postmaster|mail[-_]?daemon|mail[-_]?delivery[-_]?(?:system|subsystem)?|double-bounce|nobody)(?:[+@]|$)", re.IGNORECASE)


def _autoreply_headers(msg: Message) -> bool:
    auto = _clean(msg.get("Auto-Submitted", ""), 50).lower()
    if auto.startswith("auto-replied"):
        return True
    if msg.get("X-Autoreply") is not None or msg.get("X-Autorespond") is not None or msg.get("X-Autoresponse") is not None:
        return True
    precedence = _clean(msg.get("Precedence", ""), 50).lower()
    return precedence in ("auto_reply", "auto-reply")


def _from_daemon(msg: Message) -> bool:
    """Sent by a mail system (MAILER-DAEMON, postmaster, "Mail Delivery System")?"""
    for name in ("From", "Sender"):
        for display, addr in getaddresses([str(v) for v in msg.get_all(name, [])]):
            if _DAEMON_RE.match(addr.strip()) or _DAEMON_NAME_RE.search(display):
                return True
    return "mailer-daemon" in str(msg.get("Return-Path", "")).lower()


def _looks_like_failure(ctx: _Context) -> bool:
    return bool(_FAILURE_SUBJECT_RE.search(ctx.subject())) or _from_daemon(ctx.msg) or ctx.msg.get("X-Failed-Recipients") is not None


def _detect_autoreply_headers(ctx: _Context) -> BounceReport | None:
    """RFC 3834 ``Auto-Submitted: auto-replied`` and vendor auto-reply markers."""
    if not _autoreply_headers(ctx.msg) or _looks_like_failure(ctx):
        return None
    return BounceReport(False, AUTOREPLY, reason="auto-reply headers")


def _detect_autoreply_subject(ctx: _Context) -> BounceReport | None:
    """Out-of-office and vacation replies that carry no header marker."""
    if not _AUTOREPLY_SUBJECT_RE.search(ctx.subject()) or _looks_like_failure(ctx):
        return None
    return BounceReport(False, AUTOREPLY, reason="auto-reply subject")


def _detect_failure_notice(ctx: _Context) -> BounceReport | None:
    """Non-DSN notices: flufl.bounce's detectors, X-Failed-Recipients, then our own wording."""
    temporary, permanent, flufl_error = _flufl_failures(ctx.heuristic_msg())
    failed = [a for a in map(_normalise_address, _failed_recipients_header(ctx.msg)) if a]
    text_found = []
    if not (temporary or permanent or failed) and _looks_like_failure(ctx):
        text_found = _text_failures(ctx, ctx.own_addresses())
    recipients = _notice_recipients(ctx, temporary, permanent + failed, text_found)
    if not recipients:
        if _looks_like_failure(ctx):
            reason = "failure notice names no valid recipient address"
            if flufl_error:
                reason += f" ({flufl_error})"
            return BounceReport(False, OTHER, reason=reason)
        return None
    kind = _worst([r.kind for r in recipients])
    return BounceReport(kind in BOUNCE_KINDS, kind, recipients)


def _flufl_failures(msg: Message) -> tuple[list[str], list[str], str | None]:
    """flufl.bounce's verdict as (temporary, permanent) valid addresses, plus any detector error.

    Same order and stopping rule as ``all_failures``, but one detector at a time: there, one
    detector choking on odd input (Yale on a message without From) aborts the whole scan and logs a
    traceback; here it is noted and the next detector still gets its turn.
    """
    errors: list[str] = []
    for detector in _FLUFL_DETECTORS:
        try:
            temporary, permanent = detector().process(msg)
        except Exception as exc:  # noqa: BLE001 - reported in the reason, never fatal
            errors.append(f"{detector.__name__}: {type(exc).__name__}")
            continue
        if temporary or permanent:
            return _valid_sorted(temporary), _valid_sorted(permanent), None
    return [], [], ("flufl.bounce detectors failed: " + ", ".join(errors)) if errors else None


def _valid_sorted(values: Iterable[bytes | str]) -> list[str]:
    return sorted({a for a in map(_normalise_address, values) if a})


def _failed_recipients_header(msg: Message) -> list[str]:
    values = [str(v) for v in msg.get_all("X-Failed-Recipients", [])]
    return [addr for _, addr in getaddresses(values)]


_QUOTE_START_RE = re.compile(
    r"^[ \t-]*(?:this is a copy of|below this line is a copy|[-=]+ ?original message|original message follows|"
    r"[-=]+ ?messaggio originale|messaggio originale|copia del messaggio|the original message|"
    r"\S*received: |return-path: |message-id: )",
    re.IGNORECASE | re.MULTILINE,
)
_LABEL_RE = re.compile(
    r"recipient|destinatar|indirizzo|address|addressee|mailbox|casella|utente|user\b|to:", re.IGNORECASE
)


def _notice_part(text: str) -> str:
    """The notice's own words: the text before the quoted original begins."""
    cut = _QUOTE_START_RE.search(text)
    return text[: cut.start()] if cut else text


_MAX_TEXT_RECIPIENTS = 100  # a "notice" naming more is not one; stop before it costs seconds


def _text_failures(ctx: _Context, own: set[str]) -> list[tuple[str, str]]:
    """(address, context) pairs named as failed in a notice's own text, English or Italian."""
    lines = [line[:1000] for line in _notice_part(ctx.text).splitlines()[:400]]
    found: list[tuple[str, str]] = []
    for i, line in enumerate(lines):
        if "@" not in line:
            continue
        context = " ".join(lines[i : i + 4])
        states_failure = _states_failure(line, context)
        for match in _SCAN_ADDRESS_RE.finditer(line):
            address = _normalise_address(match.group(0))
            if address is None or address in own or _DAEMON_RE.match(address):
                continue
            if states_failure or _names_alone_or_labelled(line, match):
                found.append((address, context))
                if len(found) >= _MAX_TEXT_RECIPIENTS:
                    return found
    return found


def _states_failure(line: str, context: str) -> bool:
    """Does this line (or the next few) state a failure: a code, or failure wording?"""
    low = context.lower()
    return bool(_STATUS_RE.search(line) or _SMTP_CODE_RE.search(line) or _HARD_RE.search(low) or _FULL_RE.search(low))


def _names_alone_or_labelled(line: str, match: re.Match[str]) -> bool:
    """Is the address alone on its line, or after a label ("Destinatario:", "Recipient:")?"""
    rest = (line[: match.start()] + line[match.end() :]).strip(" \t<>:;,.\"'()[]")
    return not rest or _LABEL_RE.search(line[: match.start()]) is not None


def _notice_recipients(
    ctx: _Context, temporary: list[str], permanent: list[str], text_found: list[tuple[str, str]]
) -> list[BounceRecipient]:
    notice = _notice_part(ctx.text)
    recipients = [_notice_recipient(a, notice, transient=True) for a in temporary]
    recipients += [_notice_recipient(a, notice) for a in permanent]
    recipients += [_notice_recipient(a, ctx_text, worded=True) for a, ctx_text in text_found]
    return _merge(recipients)


def _notice_recipient(address: str, notice: str, transient: bool = False, worded: bool = False) -> BounceRecipient:
    """Classify one address of a non-DSN notice from the text around it, else the whole notice."""
    near = _around(notice, address) if not worded else notice
    low = near.lower()
    if transient:
        kind = DELAYED if (_DELAY_RE.search(low) or not _FULL_RE.search(low)) else SOFT
        status = next(iter(_status_codes(near)), None)
        return BounceRecipient(address, kind, status, "delayed" if kind is DELAYED else "failed", _diagnostic_line(near))
    status = next((c for c in _status_codes(near) if not c.startswith("2")), None)
    # A warning ("not yet delivered, will keep trying") stays a warning whoever found the address.
    if _DELAY_RE.search(low) and not (status or "").startswith("5") and not _HARD_RE.search(low):
        return BounceRecipient(address, DELAYED, status, "delayed", _diagnostic_line(near))
    kind = _classify_failure(status, near)
    if kind is OTHER:
        kind = HARD
    return BounceRecipient(address, kind, status, "failed", _diagnostic_line(near))


def _around(notice: str, address: str) -> str:
    """The lines around the first mention of ``address``; else the notice's first 8 KB (its
    wording is at the top, and scanning megabytes of an unhelpful notice costs too much)."""
    pos = notice.lower().find(address)
    if pos < 0:
        return notice[:8192]
    start = notice.rfind("\n", 0, max(pos - 200, 0)) + 1 if pos > 200 else 0
    return notice[start : pos + len(address) + 400]


def _diagnostic_line(text: str) -> str | None:
    """The first line of ``text`` stating a status or SMTP code, else failure wording."""
    low = text.lower()
    if len(low) != len(text):  # a few Unicode letters change length when lowercased
        text = low
    found = _STATUS_RE.search(low) or _SMTP_CODE_RE.search(low)
    if found is None:
        matches = [m for m in (r.search(low) for r in (_FULL_RE, _HARD_RE, _POLICY_RE, _TEMP_RE)) if m]
        if not matches:
            return None
        found = min(matches, key=lambda m: m.start())
    start = text.rfind("\n", 0, found.start()) + 1
    end = text.find("\n", found.end())
    return _clean(text[start : end if end >= 0 else len(text)], 500) or None


def _detect_human(ctx: _Context) -> BounceReport | None:
    """An ordinary mail from a person: not automated, not a list or bulk message."""
    msg = ctx.msg
    if _from_daemon(msg) or msg.get("List-Id") is not None or msg.get("List-Unsubscribe") is not None:
        return None
    if _clean(msg.get("Return-Path", ""), 10) == "<>":  # a null sender is a machine
        return None
    if _clean(msg.get("Precedence", ""), 50).lower() in ("bulk", "list", "junk"):
        return None
    auto = _clean(msg.get("Auto-Submitted", "no"), 50).lower()
    if not auto.startswith("no"):
        return None
    senders = [a for a in (_normalise_address(addr) for _, addr in getaddresses([str(v) for v in msg.get_all("From", [])])) if a]
    if not senders:
        return None
    return BounceReport(False, HUMAN, reason="ordinary mail")


_DETECTORS: list[Detector] = [
    _detect_arf,
    _detect_dsn,
    _detect_autoreply_headers,
    _detect_failure_notice,
    _detect_autoreply_subject,
    _detect_human,
]


_MAX_LINE = 16384


def _trim_long_lines(raw: bytes) -> bytes:
    """Cut lines longer than 16 KB (RFC 5322 allows 998 octets): a multi-megabyte line costs the
    heuristic detectors seconds of regex work and carries nothing a real report needs."""
    if len(raw) <= _MAX_LINE:
        return raw
    lines = raw.split(b"\n")
    if max(map(len, lines)) <= _MAX_LINE:
        return raw
    return b"\n".join(line[:_MAX_LINE] for line in lines)


def _parse(raw: bytes) -> BounceReport:
    # compat32 on purpose: policy.default is about 5x slower and this is the ingestion hot path.
    raw = _trim_long_lines(raw)
    msg = email.message_from_bytes(raw, policy=compat32)
    ctx = _Context(msg, raw)
    report = None
    for detector in _DETECTORS:
        report = detector(ctx)
        if report is not None:
            break
    if report is None:
        report = BounceReport(False, OTHER, reason="not a recognised bounce, reply or mail")
    report.report_message_id = _message_id(_header(msg, "Message-ID"))
    report.date = _iso_date(_header(msg, "Date"))
    return _attach_original(ctx, report)


# --- threshold policy ---

import datetime as _dt
import json
from collections.abc import Iterable

from .errors import ValidationError
from .settings import BounceSettings, load_bounce_settings, require_bounce_settings
from .store import Store, now_iso

# Recording reports and deciding who is suppressed.  One bounces row per recipient per report,
# keyed by (report_key, email), so the same report seen twice counts once.  The count is one
# query over that table (as listmonk does); a suppression keeps the rows it was based on as
# evidence, and is never an unsubscribe.

#: Kinds that count towards the threshold; policy (5.7.x) only with ``count_policy``.
COUNTED_KINDS = (HARD, SOFT)
#: Recipients of these kinds get a bounces row; a success notice ("relayed") does not.
RECORDED_KINDS = frozenset({HARD, SOFT, POLICY, DELAYED, COMPLAINT})


def _utc_iso(value: str | None) -> str | None:
    """An ISO date (any offset, or naive = UTC) as UTC ISO with seconds, the store's format."""
    if not value:
        return None
    try:
        when = _dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _counted_kinds(count_policy: bool) -> tuple[str, ...]:
    kinds = [k.value for k in COUNTED_KINDS]
    return tuple(kinds + [POLICY.value]) if count_policy else tuple(kinds)


def counting_query(
    count_policy: bool = False,
    stale_after_days: int | None = None,
    reset_on_success: bool = False,
    addresses: Iterable[str] | None = None,
    *,
    now: str | None = None,
) -> tuple[str, list[object]]:
    """The SQL (and parameters) of the bounces that count: one row per counted bounce.

    Columns: ``id, email, kind, status, diagnostic, campaign, source, bounced_at``.  Counted:
    hard and soft bounces (policy with ``count_policy``), recorded after the address's last
    lifted suppression, not older than ``stale_after_days`` and, with ``reset_on_success``,
    not followed by a successful delivery to the address (sent later, and not itself bounced).
    ``pandas.read_sql(sql, store.conn, params=params)`` gives an analyst the same rows.

    >>> sql, params = counting_query(count_policy=True)
    >>> params[:3]
    ['hard', 'soft', 'policy']
    """
    kinds = _counted_kinds(count_policy)
    where = [f"b.kind IN ({', '.join('?' * len(kinds))})"]
    params: list[object] = list(kinds)
    # A lifted suppression starts the count again: only bounces recorded after the lift, and
    # not dated before it (an old report fetched late is not news about the address).
    where.append(
        "(le.id IS NULL OR (b.id > coalesce(json_extract(le.detail, '$.after_bounce_id'), 0)"
        " AND julianday(b.bounced_at) >= julianday(le.at)))"
    )
    if stale_after_days:
        where.append("julianday(b.bounced_at) >= julianday(?) - ?")
        params += [now or now_iso(), int(stale_after_days)]
    if reset_on_success:
        bad = ", ".join("?" * len(kinds))
        where.append(
            "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.email = b.email AND d.state = 'sent'"
            " AND julianday(d.sent_at) > julianday(b.bounced_at)"
            f" AND NOT EXISTS (SELECT 1 FROM bounces b2 WHERE b2.delivery_id = d.id AND b2.kind IN ({bad})))"
        )
        params += list(kinds)
    if addresses is not None:
        wanted = sorted({a.lower() for a in addresses})
        where.append(f"b.email IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(wanted))
    sql = (
        "SELECT b.id, b.email, b.kind, b.status, b.diagnostic, b.campaign, b.source, b.bounced_at"
        " FROM bounces b"
        " LEFT JOIN (SELECT email, max(id) AS event_id FROM suppression_events"
        "            WHERE action = 'lifted' GROUP BY email) lifted ON lifted.email = b.email"
        " LEFT JOIN suppression_events le ON le.id = lifted.event_id"
        f" WHERE {' AND '.join(where)}"
        " ORDER BY b.id"  # evidence lists the reports in the order they were recorded
    )
    return sql, params


def bounce_counts(
    store: Store,
    count_policy: bool = False,
    stale_after_days: int | None = None,
    reset_on_success: bool = False,
    addresses: Iterable[str] | None = None,
) -> dict[str, int]:
    """Counted bounce reports per address (see :func:`counting_query` for what counts).

    >>> from newsletter_kit.store import open_store
    >>> bounce_counts(open_store(":memory:"))
    {}
    """
    sql, params = counting_query(count_policy, stale_after_days, reset_on_success, addresses)
    rows = store.conn.execute(f"SELECT email, count(*) FROM ({sql}) GROUP BY email ORDER BY email", params)
    return {email: n for email, n in rows}


def _threshold_settings(store: Store, settings: BounceSettings | None) -> BounceSettings:
    return settings if settings is not None else require_bounce_settings(store)


def apply_threshold(
    store: Store, settings: BounceSettings | None = None, addresses: Iterable[str] | None = None
) -> list[str]:
    """Suppress every address (of ``addresses``, or all) whose count reached the threshold.

    One query finds them with their evidence; returns the newly suppressed addresses, sorted.

    >>> apply_threshold(store, settings)  # doctest: +SKIP
    ['mario.rossi@example.it']
    """
    settings = _threshold_settings(store, settings)
    sql, params = counting_query(settings.count_policy, settings.stale_after_days,
                                 settings.reset_on_success, addresses)
    evidence = (
        "json_group_array(json_object('bounce_id', id, 'date', bounced_at, 'kind', kind,"
        " 'status', status, 'diagnostic', diagnostic, 'campaign', campaign, 'source', source))"
    )
    with store.transaction():
        rows = store.conn.execute(
            f"SELECT email, count(*), {evidence} FROM ({sql})"
            " WHERE email NOT IN (SELECT email FROM suppressions)"
            " GROUP BY email HAVING count(*) >= ? ORDER BY email",
            [*params, settings.threshold],
        ).fetchall()
        for email, count, found in rows:
            _insert_suppression(store, email, "threshold", count, json.loads(found),
                                {"threshold": settings.threshold})
    return [email for email, _, _ in rows]


def _insert_suppression(store: Store, email: str, reason: str, count: int,
                        evidence: list[dict[str, object]], detail: dict[str, object]) -> bool:
    at = now_iso()
    cursor = store.conn.execute(
        "INSERT OR IGNORE INTO suppressions (email, since, reason, bounce_count, evidence)"
        " VALUES (?, ?, ?, ?, ?)",
        (email, at, reason, count, json.dumps(evidence, ensure_ascii=False)),
    )
    if cursor.rowcount == 0:
        return False
    store.conn.execute(
        "INSERT INTO suppression_events (email, action, at, detail) VALUES (?, 'suppressed', ?, ?)",
        (email, at, json.dumps({"reason": reason, "bounces": count, **detail}, ensure_ascii=False)),
    )
    return True


def suppress(store: Store, address: str, reason: str = "manual") -> bool:
    """Suppress ``address`` by hand; False when it already was.

    >>> from newsletter_kit.store import open_store
    >>> s = open_store(":memory:")
    >>> suppress(s, "Anna@Example.org"), suppress(s, "anna@example.org")
    (True, False)
    """
    email = _checked_address(address)
    with store.transaction():
        return _insert_suppression(store, email, reason, 0, [], {})


def remove_suppression(store: Store, address: str, by: str | None = None) -> None:
    """Lift the suppression of ``address``; an audit event keeps who and what was lifted.

    Only bounces recorded after this call count towards suppressing it again.

    >>> remove_suppression(store, "anna@example.org", by="analyst")  # doctest: +SKIP
    """
    email = _checked_address(address)
    with store.transaction():
        row = store.conn.execute(
            "SELECT since, reason, bounce_count, evidence FROM suppressions WHERE email = ?", (email,)
        ).fetchone()
        if row is None:
            raise ValidationError(f"{email} is not suppressed", "address")
        last_bounce = store.conn.execute("SELECT coalesce(max(id), 0) FROM bounces").fetchone()[0]
        store.conn.execute("DELETE FROM suppressions WHERE email = ?", (email,))
        detail = {"by": by, "after_bounce_id": last_bounce, "since": row[0], "reason": row[1],
                  "bounces": row[2], "evidence": json.loads(row[3])}
        store.conn.execute(
            "INSERT INTO suppression_events (email, action, at, detail) VALUES (?, 'lifted', ?, ?)",
            (email, now_iso(), json.dumps(detail, ensure_ascii=False)),
        )


def list_suppressions(store: Store) -> list[dict[str, object]]:
    """Suppressed addresses as ``suppressions list --json`` prints them, oldest first.

    >>> from newsletter_kit.store import open_store
    >>> list_suppressions(open_store(":memory:"))
    []
    """
    rows = store.conn.execute(
        "SELECT email, since, bounce_count, evidence, reason FROM suppressions ORDER BY since, email"
    )
    return [
        {"address": email, "since": since, "bounces": count, "evidence": json.loads(evidence),
         "reason": reason}
        for email, since, count, evidence, reason in rows
    ]


def suppression_history(store: Store, address: str) -> list[dict[str, object]]:
    """The audit trail of ``address``: every suppressed/lifted event, oldest first."""
    rows = store.conn.execute(
        "SELECT action, at, detail FROM suppression_events WHERE email = ? ORDER BY id",
        (_checked_address(address),),
    )
    return [{"action": action, "at": at, **json.loads(detail)} for action, at, detail in rows]


def _checked_address(address: str) -> str:
    # The contacts' own normaliser: a suppression must name the address exactly as stored.
    from .audience import normalize_address

    return normalize_address(address)


# --- recording reports ---


def find_delivery(store: Store, message_id: str | None) -> tuple[int, str, str] | None:
    """The ledger row of our message ``message_id``: (delivery id, campaign name, email)."""
    if not message_id:
        return None
    bare = message_id.strip().strip("<>")
    return store.conn.execute(
        "SELECT d.id, c.name, d.email FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id"
        " WHERE d.message_id IN (?, ?) LIMIT 1",
        (f"<{bare}>", bare),
    ).fetchone()


def record_report(
    store: Store,
    report: BounceReport,
    *,
    report_key: str,
    source: str,
    mailbox_message_id: int | None = None,
    received_at: str | None = None,
) -> list[str]:
    """Insert one ``bounces`` row per failed, delayed or complaining recipient of ``report``;
    returns the addresses newly recorded.

    The campaign and delivery come from the ledger (by our original's Message-ID), else from
    the report's ``X-Newsletter-Campaign``.  A (report_key, address) already recorded is skipped.

    >>> record_report(store, parse_bounce(raw), report_key="<r1@mx>", source="file")  # doctest: +SKIP
    ['mario.rossi@example.it']
    """
    recipients = [r for r in report.recipients if r.kind in RECORDED_KINDS]
    if not recipients:
        return []
    delivery = find_delivery(store, report.message_id)
    campaign = delivery[1] if delivery else report.campaign
    bounced_at = _utc_iso(report.date) or _utc_iso(received_at) or now_iso()
    recorded_at = now_iso()
    single = len(recipients) == 1
    added: list[str] = []
    for rcpt in recipients:
        delivery_id = delivery[0] if delivery and (single or delivery[2] == rcpt.address) else None
        cursor = store.conn.execute(
            "INSERT OR IGNORE INTO bounces (email, kind, status, action, diagnostic, remote_mta, campaign,"
            " delivery_id, original_message_id, mailbox_message_id, report_key, source, bounced_at, recorded_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rcpt.address, str(rcpt.kind.value), rcpt.status, rcpt.action, rcpt.diagnostic, rcpt.remote_mta,
             campaign, delivery_id, report.message_id, mailbox_message_id, report_key, source,
             bounced_at, recorded_at),
        )
        if cursor.rowcount:
            added.append(rcpt.address)
    return added


def record_smtp_rejection(
    store: Store,
    *,
    email: str,
    campaign: str | None,
    delivery_id: int | None,
    code: int,
    status: str | None,
    reply: str | None,
    settings: BounceSettings | None = None,
) -> list[str]:
    """Record a 5xx rejection seen while sending as a bounce; returns newly suppressed addresses.

    Kind: policy for 5.7.x, soft for a full mailbox (5.2.2), else hard.  A 4xx reply is a
    deferral the send path retries: nothing is recorded.  With no bounce settings saved
    there is no threshold, so the rejection is recorded and nobody is suppressed.

    >>> record_smtp_rejection(store, email="x@example.org", campaign="nov", delivery_id=7,
    ...                       code=550, status="5.1.1", reply="550 5.1.1 User unknown")  # doctest: +SKIP
    ['x@example.org']
    """
    if code < 500:
        return []
    address = email.strip().lower()
    stated = status or next(iter(_status_codes(reply)), None)
    kind = _classify_failure(stated if stated and stated.startswith("5") else None, reply or "")
    key = f"smtp:{delivery_id}" if delivery_id is not None else f"smtp:{campaign or ''}:{address}"
    rcpt = BounceRecipient(address, kind, stated, "failed", _clean(reply or "", 1000) or None)
    report = BounceReport(True, kind, [rcpt], campaign=campaign, date=now_iso())
    with store.transaction():
        added = _record_rows(store, report, key, delivery_id)
        settings = settings if settings is not None else load_bounce_settings(store)
        if not added or settings is None:
            return []
        return apply_threshold(store, settings, added)


def _record_rows(store: Store, report: BounceReport, key: str, delivery_id: int | None) -> list[str]:
    rcpt = report.recipients[0]
    cursor = store.conn.execute(
        "INSERT OR IGNORE INTO bounces (email, kind, status, action, diagnostic, campaign, delivery_id,"
        " report_key, source, bounced_at, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'smtp', ?, ?)",
        (rcpt.address, str(rcpt.kind.value), rcpt.status, rcpt.action, rcpt.diagnostic, report.campaign,
         delivery_id, key, report.date, report.date),
    )
    return [rcpt.address] if cursor.rowcount else []


__all__ += [
    "COUNTED_KINDS", "RECORDED_KINDS", "apply_threshold", "bounce_counts", "counting_query",
    "find_delivery",
    "list_suppressions", "record_report", "record_smtp_rejection", "remove_suppression",
    "suppress", "suppression_history",
]
