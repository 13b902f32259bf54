"""The detector list and the one private name of flufl.bounce it relies on."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import compat32
from pathlib import Path

import pytest

from newsletter_kit.bounces import OTHER, parse_bounce, parse_bounce_file
from newsletter_kit.bounces import notices, parse

SAMPLES = Path(__file__).parent / "bounce_samples"

# flufl.bounce 6.0's detectors, in its order of authority (flufl/bounce/_scan.py).
FLUFL_DETECTORS = [
    "DSN", "Exim", "Sina", "Yahoo", "Yale", "SMTP32", "Postfix", "Qmail", "GroupWise", "Microsoft",
    "Caiwireless", "Exchange", "Netscape", "AOL", "SimpleMatch", "SimpleWarning", "LLNL",
]


def test_flufl_bounce_private_detector_list_is_what_notices_py_expects() -> None:
    """notices.py runs flufl.bounce's detectors one at a time (its public all_failures() stops at
    the first that raises), through the private ``flufl.bounce._scan._DETECTORS``. If this fails,
    a flufl.bounce release changed it: check notices.flufl_failures against the new _scan.py, then
    update FLUFL_DETECTORS here."""
    try:
        from flufl.bounce._scan import _DETECTORS
    except ImportError:  # pragma: no cover - what this test is for
        pytest.fail("flufl.bounce._scan._DETECTORS is gone: notices.py falls back to all_failures(), "
                    "which stops at the first detector that raises; see notices.flufl_failures")
    names = [d.__name__ for d in _DETECTORS]
    assert names == FLUFL_DETECTORS, (
        f"flufl.bounce's detector list changed to {names}: review notices.flufl_failures, then "
        "update FLUFL_DETECTORS in this test")
    assert all(callable(getattr(d(), "process", None)) for d in _DETECTORS)
    assert [d.__name__ for d in notices.flufl_detectors()] == FLUFL_DETECTORS


def test_one_by_one_gives_all_failures_verdict_and_survives_a_crashing_detector() -> None:
    from flufl.bounce import all_failures

    for path in sorted(SAMPLES.glob("*.eml")):
        msg = message_from_bytes(path.read_bytes(), policy=compat32)
        try:
            temporary, permanent = all_failures(msg)
        except Exception:  # noqa: BLE001 - the public API gives up; ours must not
            notices.flufl_failures(msg)
            continue
        ours = notices.flufl_failures(msg)
        assert ours[:2] == (notices._valid_sorted(temporary), notices._valid_sorted(permanent)), path.name
    # Yale raises on a notice without From: all_failures() would give up, ours notes it and goes on.
    raw = b"Subject: Undelivered Mail\n\nThe following addresses had permanent fatal errors\n"
    with pytest.raises(Exception):
        all_failures(message_from_bytes(raw, policy=compat32))
    report = parse_bounce(raw)
    assert report.kind is OTHER and "Yale" in (report.reason or "")


def test_detectors_are_tried_in_order_of_authority() -> None:
    assert [d.__name__ for d in parse.DETECTORS] == [
        "detect_arf", "detect_dsn", "detect_ses_json", "detect_autoreply_headers", "detect_failure_notice",
        "detect_wording", "detect_autoreply_subject", "detect_human",
    ]
    # A DSN that also carries auto-reply headers is a DSN: the first detector decides.
    raw = (SAMPLES / "postfix_hard_511.eml").read_bytes()
    assert parse_bounce(b"Auto-Submitted: auto-replied\n" + raw).kind == parse_bounce_file(SAMPLES / "postfix_hard_511.eml").kind
