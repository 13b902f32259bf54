"""Replies: auto-replies (RFC 3834 headers, vendor markers, out-of-office subjects) and ordinary
mail from a person."""

from __future__ import annotations

import re
from email.message import Message
from email.utils import getaddresses

from ..addresses import lenient_address
from .message import Context, clean, from_daemon, looks_like_failure
from .report import AUTOREPLY, HUMAN, BounceReport

# Auto-replies: RFC 3834 headers, vendor headers, subjects in English, Italian and a few others.
_AUTOREPLY_SUBJECT_RE = re.compile(
    r"auto(?:matic|matische)?[ -]?(?:reply|response|respond|antwort)|out of (?:the )?office|\bOOO\b|away from (?:the |my )?office|"
    r"\bon vacation\b|vacation (?:reply|notice|message)|risposta automatica|fuori (?:ufficio|sede)|\bassente\b|\bassenza\b|\bin ferie\b|"
    r"r[ée]ponse automatique|\babsent\b|abwesenheit|respuesta autom[áa]tica|fuera de la oficina",
    re.IGNORECASE,
)


def _autoreply_headers(msg: Message) -> bool:
    auto = clean(msg.get("Auto-Submitted", ""), 50).lower()
    if auto.startswith("auto-replied"):
        return True
    if msg.get("X-Autoreply") is not None or msg.get("X-Autorespond") is not None or msg.get("X-Autoresponse") is not None:
        return True
    precedence = clean(msg.get("Precedence", ""), 50).lower()
    return precedence in ("auto_reply", "auto-reply")



def detect_autoreply_headers(ctx: Context) -> BounceReport | None:
    """RFC 3834 ``Auto-Submitted: auto-replied`` and vendor auto-reply markers."""
    if not _autoreply_headers(ctx.msg) or looks_like_failure(ctx):
        return None
    return BounceReport(False, AUTOREPLY, reason="auto-reply headers")


def detect_autoreply_subject(ctx: Context) -> BounceReport | None:
    """Out-of-office and vacation replies that carry no header marker."""
    if not _AUTOREPLY_SUBJECT_RE.search(ctx.subject()) or looks_like_failure(ctx):
        return None
    return BounceReport(False, AUTOREPLY, reason="auto-reply subject")



def detect_human(ctx: Context) -> BounceReport | None:
    """An ordinary mail from a person: not automated, not a list or bulk message."""
    msg = ctx.msg
    if from_daemon(msg) or msg.get("List-Id") is not None or msg.get("List-Unsubscribe") is not None:
        return None
    if clean(msg.get("Return-Path", ""), 10) == "<>":  # a null sender is a machine
        return None
    if clean(msg.get("Precedence", ""), 50).lower() in ("bulk", "list", "junk"):
        return None
    auto = clean(msg.get("Auto-Submitted", "no"), 50).lower()
    if not auto.startswith("no"):
        return None
    senders = [a for a in (lenient_address(addr) for _, addr in getaddresses([str(v) for v in msg.get_all("From", [])])) if a]
    if not senders:
        return None
    return BounceReport(False, HUMAN, reason="ordinary mail")

