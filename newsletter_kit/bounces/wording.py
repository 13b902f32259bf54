"""Failure notices read by their wording (English and Italian): the addresses the notice's own
text names as failed, and the words around each address that classify it."""

from __future__ import annotations

import re

from ..addresses import lenient_address, scan_addresses, untrusted_lines
from .classify import DELAY_RE, FULL_RE, HARD_RE, POLICY_RE, SMTP_CODE_RE, STATUS_RE, TEMP_RE, classify_failure, status_codes
from .meaning import VAGUE, judge, kind_of
from .message import DAEMON_RE, Context, clean
from .message import looks_like_failure
from .report import BOUNCE_KINDS, DELAYED, HARD, OTHER, SOFT, BounceRecipient, BounceReport, merge_recipients, worst

_QUOTE_START_RE = re.compile(
    r"^[ \t-]*(?:this is a copy of|below this line is a copy|below is a copy|[-=]+ ?original message|original message follows|"
    r"[-=]+ ?messaggio originale|messaggio originale|copia del messaggio|"
    r"the original message (?:follows|is (?:attached|below|included)|headers? (?:follow|are)|:)|original mail as follows|"
    r"message headers follow|\S*received:[ \t]*(?:from|by)\b|return-path:|message-id:)",
    re.IGNORECASE | re.MULTILINE,
)
_LABEL_RE = re.compile(
    r"recipient|destinatar|indirizzo|address|addressee|mailbox|casella|utente|user\b|to:", re.IGNORECASE
)


def notice_part(text: str) -> str:
    """The notice's own words: the text before the quoted original begins."""
    cut = _QUOTE_START_RE.search(text)
    return text[: cut.start()] if cut else text


_MAX_TEXT_RECIPIENTS = 100  # a "notice" naming more is not one; stop before it costs seconds


def text_failures(ctx: Context, own: set[str]) -> list[tuple[str, str]]:
    """(address, context) pairs named as failed in a notice's own text, English or Italian."""
    # Each line ends at a line break spelled as text: what follows one is never an address.
    lines = [line[:1000] for line in untrusted_lines(notice_part(ctx.text), 400)]
    found: list[tuple[str, str]] = []
    for i, line in enumerate(lines):
        if "@" not in line:
            continue
        context = " ".join(_own_lines(lines, i))
        states_failure = _states_failure(line, context)
        for match in scan_addresses(line):
            address = lenient_address(match.group(0))
            if address is None or address in own or ctx.forged_only(address):
                continue
            # A daemon's address (postmaster@, mailer-daemon@) is the notice's sender unless the
            # line says delivery *to* it failed.
            if DAEMON_RE.match(address) and not _FAILED_TO_RE.search(line.lower()):
                continue
            if states_failure or _names_alone_or_labelled(line, match):
                found.append((address, context))
                if len(found) >= _MAX_TEXT_RECIPIENTS:
                    return found
    return found


def _own_lines(lines: list[str], i: int) -> list[str]:
    """Line ``i`` and the next three, up to a line that opens with another address (a notice
    listing several recipients gives each its own reply)."""
    own = [lines[i]]
    for line in lines[i + 1 : i + 4]:
        if "@" in line and _OTHER_ADDRESS_RE.match(line.lower()):
            break
        own.append(line)
    return own


def _states_failure(line: str, context: str) -> bool:
    """Does this line (or the next few) state a failure: a code, or failure wording?"""
    low = context.lower()
    return bool(STATUS_RE.search(line) or SMTP_CODE_RE.search(line) or HARD_RE.search(low) or FULL_RE.search(low)
                or _FAILED_TO_RE.search(line.lower()))


# "There was an error delivering your mail to <a@b>", "could not be delivered to: <a@b>"
_FAILED_TO_RE = re.compile(
    r"(?:error|fail\w*|unable|could ?n[o']t|cannot|can't|not (?:be )?)\s(?:\w+\s){0,4}?"
    r"(?:deliver\w*|sen[dt]\w*|reach\w*|transmit\w*)\b[^@]{0,40}\bto\b"
)
# The address opens the line (after indentation or a transcript marker) and what follows reads
# like its fate: "a@b: Network error", "a@b [User unknown]", "a@b on 4/29/01", ">>> a@b <a@b>".
_LEADS_RE = re.compile(r"^[ \t>*-]*<?$")
_FOLLOWS_RE = re.compile(r"^>?(?:\s*(?::|\[|\(|\.\.\.|on \d|<\S+@\S+>\s*$|\s*$|\s+-+\s))")


def _names_alone_or_labelled(line: str, match: re.Match[str]) -> bool:
    """Is the address alone on its line, after a label ("Destinatario:", "Recipient:"), or
    opening the line with its fate after it?"""
    before, after = line[: match.start()], line[match.end() :]
    rest = (before + after).strip(" \t<>:;,.\"'()[]")
    if not rest or _LABEL_RE.search(before) is not None:
        return True
    return bool(_LEADS_RE.match(before) and _FOLLOWS_RE.match(after))


def notice_recipient(address: str, notice: str, transient: bool = False, worded: bool = False) -> BounceRecipient:
    """Classify one address of a non-DSN notice from the text around it, else the whole notice."""
    near = around(notice, address) if not worded else notice
    low = near.lower()
    if transient:
        kind = DELAYED if (DELAY_RE.search(low) or not FULL_RE.search(low)) else SOFT
        status = next(iter(status_codes(near)), None)
        return judge(BounceRecipient(address, kind, status, "delayed" if kind is DELAYED else "failed", diagnostic_line(near)), near)
    status = next((c for c in status_codes(near) if not c.startswith("2")), None)
    # A warning ("not yet delivered, will keep trying") stays a warning whoever found the address.
    if DELAY_RE.search(low) and not (status or "").startswith("5") and not HARD_RE.search(low):
        return judge(BounceRecipient(address, DELAYED, status, "delayed", diagnostic_line(near)), near)
    kind = classify_failure(status, near)
    if kind is OTHER:
        kind = HARD
    return judge(BounceRecipient(address, kind, status, "failed", diagnostic_line(near)), near)


_OTHER_ADDRESS_RE = re.compile(r"^[ \t>*-]*<?[^\s@<>]+@[^\s@<>]+")


_GROUP_DOMAINS = ("googlegroups.com",)


def explain_alone(recipients: list[BounceRecipient], text: str) -> list[BounceRecipient]:
    """When a notice names one recipient and its own lines say little, the whole notice speaks
    about it (the wording may be above the address: "Invalid user address ... RCPT TO: a@b").
    A mailing-list service refusing our post (Google Groups answers in the poster's language)
    is about our permission to post, not about the group's address."""
    if len(recipients) == 1 and recipients[0].reason in VAGUE and recipients[0].kind is not DELAYED:
        judge(recipients[0], notice_part(text)[:8192])
    for rcpt in recipients:
        if rcpt.reason in VAGUE | {"user_unknown"} and rcpt.address.endswith(_GROUP_DOMAINS):
            rcpt.reason = "sender_rejected"
            rcpt.kind = kind_of(rcpt.reason)
    return recipients


def around(notice: str, address: str) -> str:
    """The lines around the first mention of ``address``; else the notice's first 8 KB (its
    wording is at the top, and scanning megabytes of an unhelpful notice costs too much)."""
    low = notice.lower()
    pos = low.find(address)
    if pos < 0:
        return notice[:8192]
    start = notice.rfind("\n", 0, pos) + 1
    end = min(len(notice), pos + len(address) + 400)
    # A notice listing several recipients, each with its own reply: the words about this one end
    # where a line names another address.
    line_end = notice.find("\n", pos)
    while 0 <= line_end < end:
        next_end = notice.find("\n", line_end + 1)
        line = low[line_end + 1 : next_end if next_end >= 0 else end]
        if "@" in line and address not in line and _OTHER_ADDRESS_RE.search(line):
            end = line_end
            break
        line_end = next_end
    return notice[start:end]


def diagnostic_line(text: str) -> str | None:
    """The first line of ``text`` stating a status or SMTP code, else failure wording."""
    low = text.lower()
    if len(low) != len(text):  # a few Unicode letters change length when lowercased
        text = low
    found = STATUS_RE.search(low) or SMTP_CODE_RE.search(low)
    if found is None:
        matches = [m for m in (r.search(low) for r in (FULL_RE, HARD_RE, POLICY_RE, TEMP_RE)) if m]
        if not matches:
            return None
        found = min(matches, key=lambda m: m.start())
    start = text.rfind("\n", 0, found.start()) + 1
    end = text.find("\n", found.end())
    return clean(text[start : end if end >= 0 else len(text)], 500) or None



_WARNING_RE = re.compile(
    r"\bdelayed\b|\bdelay\)|warning message only|only a (?:temporary failure report|warning)|will (?:be )?retr(?:y|ied) for|"
    r"will (?:continue|keep) (?:to )?(?:try|retry)|not yet been delivered|you do not need to re-?send"
)


def named_as_failed(notice: str, address: str) -> bool:
    """Does a line of the notice lead with ``address`` (``<a@b>:``, ``a@b [reason]``, ``a@b ...
    550 5.1.1``) or give it alone: the notice names it as a failed recipient, not in passing
    (``MAIL FROM:<a@b>``)?"""
    for line in notice.lower().splitlines():
        start = line.find(address)
        while start >= 0:
            before, after = line[:start], line[start + len(address):]
            if _LEADS_RE.match(before) and (_FOLLOWS_RE.match(after) or STATUS_RE.search(after) or SMTP_CODE_RE.search(after)):
                return True
            start = line.find(address, start + 1)
    return False


def detect_wording(ctx: Context) -> BounceReport | None:
    """A failure notice (by its subject or sender) whose own text names the failed addresses.

    A notice naming no valid address is still a notice: kind ``other``, with a reason.
    """
    if not looks_like_failure(ctx):
        return None
    found = text_failures(ctx, ctx.own_addresses())
    # A warning says so once, in its subject or opening, not next to each address.
    warning = bool(_WARNING_RE.search(ctx.subject().lower()) or _WARNING_RE.search(notice_part(ctx.text)[:1500].lower()))
    recipients = [notice_recipient(a, near, transient=warning, worded=True) for a, near in found]
    recipients = explain_alone(merge_recipients(recipients), ctx.text)
    if not recipients:
        reason = "failure notice names no valid recipient address"
        if ctx.notes:  # e.g. flufl.bounce detectors that failed on this message
            reason += f" ({'; '.join(ctx.notes)})"
        return BounceReport(False, OTHER, reason=reason)
    kind = worst([r.kind for r in recipients])
    return BounceReport(kind in BOUNCE_KINDS, kind, recipients)
