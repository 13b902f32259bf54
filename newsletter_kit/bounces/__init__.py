"""Bounce messages: parse one message into a :class:`BounceReport`, and record it.

Modules: ``report`` (the kinds and the report), ``parse`` (:func:`parse_bounce`, the ordered
detector list), one module per detector family (``arf``, ``dsn``, ``ses``: Amazon SES JSON,
``autoreply``, ``notices``: failure notices + flufl.bounce, ``wording``), ``meaning`` (a
recipient's facts -> its reason from :mod:`newsletter_kit.reasons` and the kind that follows),
``classify`` (status codes, and the wording that tells a warning from a failure),
``message`` and ``original`` (what detectors share: the report's text, our quoted original), and
``record`` (matching a report to a delivery, the ``bounces`` rows).  The threshold and the
suppressions are :mod:`newsletter_kit.suppressions`.

>>> report = parse_bounce(open("bounce.eml", "rb").read())  # doctest: +SKIP
>>> report.kind.value, report.addresses, report.message_id   # doctest: +SKIP
('hard', ['mario.rossi@example.it'], '<20261120091500.c42.r7@news.example.org>')
"""

from __future__ import annotations

from ..addresses import is_valid_address
from .parse import parse_bounce, parse_bounce_file
from .record import (
    RECORDED_KINDS,
    find_delivery,
    list_bounces,
    list_unmatched,
    match_delivery,
    record_report,
    record_smtp_rejection,
)
from .report import (
    AUTOREPLY,
    BOUNCE_KINDS,
    COMPLAINT,
    DELAYED,
    HARD,
    HUMAN,
    OTHER,
    POLICY,
    SEVERITY,
    SOFT,
    BounceKind,
    BounceRecipient,
    BounceReport,
)

__all__ = [
    "AUTOREPLY", "BOUNCE_KINDS", "BounceKind", "BounceRecipient", "BounceReport", "COMPLAINT",
    "DELAYED", "HARD", "HUMAN", "OTHER", "POLICY", "SEVERITY", "SOFT", "is_valid_address",
    "parse_bounce", "parse_bounce_file",
    "RECORDED_KINDS", "find_delivery", "list_bounces", "list_unmatched", "match_delivery", "record_report",
    "record_smtp_rejection",
]
