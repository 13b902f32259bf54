"""parse_bounce on hand-written samples of every kind and MTA, plus fuzzing: it never raises and
never lets an invalid or CR/LF-carrying address out."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter_kit.bounces import (
    AUTOREPLY,
    COMPLAINT,
    DELAYED,
    HARD,
    HUMAN,
    OTHER,
    POLICY,
    SOFT,
    BounceKind,
    BounceReport,
    is_valid_address,
    parse_bounce,
    parse_bounce_file,
)
from newsletter_kit.bounces.original import verp_token as _verp_token
from newsletter_kit.cli import cli
from newsletter_kit.reasons import REASONS

SAMPLES = Path(__file__).parent / "bounce_samples"
CAMP, CAMP_IT = "autumn-2026", "autunno-2026"

# file, kind, {address: status} (status None when the notice states none), campaign, message_id
CASES = [
    ("postfix_hard_511.eml", HARD, {"mario.rossi@example.it": "5.1.1"}, CAMP_IT, "<20261120091500.c42.r7@news.example.org>"),
    ("postfix_full_522.eml", SOFT, {"laura.conti@example.net": "5.2.2"}, CAMP, "<20261120092009.c42.r9@news.example.org>"),
    ("postfix_full_422.eml", SOFT, {"franco.ferri@example.com": "4.2.2"}, CAMP, "<20261120092009.c42.r11@news.example.org>"),
    ("postfix_delayed.eml", DELAYED, {"elena.galli@example.org": "4.4.1"}, CAMP, "<20261120091501.c42.r12@news.example.org>"),
    ("postfix_relayed.eml", OTHER, {"piero.russo@example.com": "2.0.0"}, CAMP, "<20261120091502.c42.r13@news.example.org>"),
    ("exim_dsn_500.eml", HARD, {"tom.baker@example.co.uk": "5.1.1"}, CAMP, "<20261121080200.c42.r20@news.example.org>"),
    ("exim_plain_xfailed.eml", HARD, {"luca.bianchi@example.org": None}, CAMP, "<20261121093010.c42.r21@news.example.org>"),
    ("exchange_ndr.eml", HARD, {"g.romano@contoso-example.com": "5.1.10"}, CAMP, "<20261122110240.c42.r30@news.example.org>"),
    ("gmail_511.eml", HARD, {"chiara.marino@gmail.com": "5.1.1"}, CAMP, "<20261122121031.c42.r31@news.example.org>"),
    ("qmail.eml", HARD, {"anna.verdi@example.net": "5.1.1"}, CAMP, "<20261123074508.c42.r40@news.example.org>"),
    ("libero_it.eml", HARD, {"giulia.neri@libero.it": None}, CAMP_IT, "<20261124091238.c42.r50@news.example.org>"),
    ("aruba_quota_it.eml", SOFT, {"paolo.gialli@pec-example.it": None}, CAMP_IT, "<20261124100000.c42.r51@news.example.org>"),
    ("italian_temporary.eml", SOFT, {"sofia.costa@provider-example.it": None}, CAMP_IT, "<20261123110000.c42.r52@news.example.org>"),
    ("spam_block_571.eml", POLICY, {"marco.riva@example.com": "5.7.1"}, CAMP, "<20261124110100.c42.r60@news.example.org>"),
    ("arf_complaint.eml", COMPLAINT, {"sara.blu@mailbox-example.com": None}, CAMP, "<20261125075759.c42.r70@news.example.org>"),
    ("ooo_en.eml", AUTOREPLY, {}, None, "<20261120091500.c42.r80@news.example.org>"),
    ("ooo_it.eml", AUTOREPLY, {}, None, None),
    ("human_reply.eml", HUMAN, {}, None, "<20261120091500.c42.r81@news.example.org>"),
    ("broken_no_boundary.eml", HARD, {"bruno.leone@example.net": "5.1.1"}, CAMP, "<20261126085959.c42.r90@news.example.org>"),
    ("truncated_dsn.eml", HARD, {"irene.vitale@example.com": "5.1.1"}, None, None),
    ("unknown_charset_8bit.eml", SOFT, {"matteo.fabbri@provider-example.it": None}, "autunno-2026 \u00e8", "<20261126095959.c42.r91@news.example.org>"),
    (
        "multi_recipient.eml",
        HARD,
        {
            "delay.me@example.com": "4.4.1",
            "full.box@example.com": "5.2.2",
            "gone.away@example.com": "5.1.1",
            "blocked.here@example.com": "5.7.1",
            "fine.one@example.com": "2.0.0",
        },
        CAMP,
        "<20261127065959.c42.b1@news.example.org>",
    ),
    ("nested_mixed_dsn.eml", HARD, {"nadia.parisi@example.com": "5.1.1"}, CAMP, "<20261127085959.c42.r92@news.example.org>"),
    ("notice_no_address.eml", OTHER, {}, None, None),
    ("list_mail.eml", OTHER, {}, None, None),
    ("injection.eml", HARD, {"ok.one@example.com": "5.1.1"}, "camp X-Evil: 1", None),
]


@pytest.mark.parametrize("name, kind, statuses, campaign, message_id", CASES, ids=[c[0] for c in CASES])
def test_sample(name: str, kind: BounceKind, statuses: dict[str, str | None], campaign: str | None, message_id: str | None) -> None:
    report = parse_bounce_file(SAMPLES / name)
    assert report.kind is kind
    assert report.is_bounce == (kind in (HARD, SOFT, POLICY))
    assert {r.address: r.status for r in report.recipients} == statuses
    assert report.campaign == campaign
    assert report.message_id == message_id
    _assert_safe(report)


def test_every_sample_is_in_the_table() -> None:
    assert sorted(p.name for p in SAMPLES.glob("*.eml")) == sorted(c[0] for c in CASES)


def test_every_kind_is_covered() -> None:
    assert {c[1] for c in CASES} == set(BounceKind)


def test_recipients_of_several_severities_keep_their_own_kinds() -> None:
    report = parse_bounce_file(SAMPLES / "multi_recipient.eml")
    kinds = {r.address: r.kind for r in report.recipients}
    assert kinds == {
        "delay.me@example.com": DELAYED,
        "full.box@example.com": SOFT,
        "gone.away@example.com": HARD,
        "blocked.here@example.com": POLICY,
        "fine.one@example.com": OTHER,
    }
    assert report.reporting_mta == "mx.news.example.org"


def test_dsn_details_original_recipient_diagnostic_and_report_identity() -> None:
    report = parse_bounce_file(SAMPLES / "postfix_hard_511.eml")
    (rcpt,) = report.recipients
    # Original-Recipient is the address we sent to; Final-Recipient is the expanded alias.
    assert rcpt.address == "mario.rossi@example.it"
    assert rcpt.action == "failed"
    assert rcpt.remote_mta == "mx1.mail.example.it"
    assert rcpt.diagnostic == (
        "550 5.1.1 <mrossi@mail.example.it>: Recipient address rejected: User unknown in virtual mailbox table"
    )
    assert report.report_message_id == "<20261120091502.4F2A81C0A3B@mx.news.example.org>"
    assert report.date == "2026-11-20T10:15:02+01:00"
    assert report.verp_token == "c42.r7"


def test_generic_status_yields_to_the_specific_code_in_the_diagnostic() -> None:
    report = parse_bounce_file(SAMPLES / "exim_dsn_500.eml")
    assert report.recipients[0].status == "5.1.1"
    assert "5.0.0" not in (report.recipients[0].status or "")


@pytest.mark.parametrize(
    "wording, kind",
    [
        ("550 Requested action not taken: user unknown", HARD),
        ("Recipient address rejected: no such user", HARD),
        ("this email address is wrong or no longer valid", HARD),
        ("utente sconosciuto", HARD),
        ("indirizzo inesistente", HARD),
        ("552 Mailbox full", SOFT),
        ("quota exceeded", SOFT),
        ("la casella di posta è piena", SOFT),
        ("il destinatario ha superato la quota", SOFT),
        ("server temporaneamente non disponibile", SOFT),
        ("554 Message rejected as spam", POLICY),
        ("Client host blocked using zen.spamhaus.org", POLICY),
        ("not yet been delivered; the server will keep trying", DELAYED),
        ("il messaggio non è ancora stato recapitato, il server continuerà a tentare", DELAYED),
    ],
)
def test_plain_notice_wording_english_and_italian(wording: str, kind: BounceKind) -> None:
    raw = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\nTo: bounces@news.example.org\n"
        "Subject: Undelivered Mail\nContent-Type: text/plain; charset=utf-8\n\n"
        f"Your message could not be delivered to:\n\n<gianni.ricci@example.net>:\n    {wording}\n"
    ).encode()
    report = parse_bounce(raw)
    assert [(r.address, r.kind) for r in report.recipients] == [("gianni.ricci@example.net", kind)]
    assert report.kind is kind


def test_dsn_fields_survive_a_lost_mime_boundary() -> None:
    # Without its boundary the report is one text body; its DSN fields are still read as a DSN.
    report = parse_bounce_file(SAMPLES / "broken_no_boundary.eml")
    assert report.reporting_mta == "relay.example.net"
    assert [(r.address, r.action, r.status) for r in report.recipients] == [("bruno.leone@example.net", "failed", "5.1.1")]


def test_message_id_from_in_reply_to_when_the_original_is_not_quoted() -> None:
    raw = (SAMPLES / "exim_dsn_500.eml").read_bytes()
    raw = raw[: raw.index(b"--1763712131-eximdsn-1804289383\nContent-type: message/rfc822")]
    assert parse_bounce(raw).message_id is None
    report = parse_bounce(b"In-Reply-To: <20261121080200.c42.r20@news.example.org>\n" + raw)
    assert report.kind is HARD
    assert report.message_id == "<20261121080200.c42.r20@news.example.org>"
    assert report.campaign is None


def test_to_dict_has_exactly_the_documented_shape() -> None:
    data = parse_bounce_file(SAMPLES / "spam_block_571.eml").to_dict()
    assert list(data) == ["is_bounce", "kind", "recipients", "campaign", "message_id"]
    # issue 15: each recipient says why it failed, a name of newsletter_kit.reasons.REASONS
    assert list(data["recipients"][0]) == ["address", "kind", "status", "action", "diagnostic", "reason"]  # type: ignore[index]
    assert data["recipients"][0]["reason"] in REASONS  # type: ignore[index]
    assert data["kind"] == "policy" and data["is_bounce"] is True
    json.dumps(data)


def test_verp_token_hook() -> None:
    assert _verp_token("bounces+c42.r7@news.example.org") == "c42.r7"
    assert _verp_token("<Bounces+abc=def@x.example>") == "abc=def"
    assert _verp_token("news@news.example.org") is None
    assert _verp_token(None) is None


def test_huge_dsn_with_5mb_attachment() -> None:
    raw = _with_attachment((SAMPLES / "postfix_hard_511.eml").read_bytes(), 5 * 1024 * 1024)
    report = parse_bounce(raw)
    assert report.kind is HARD
    assert report.addresses == ["mario.rossi@example.it"]
    assert report.message_id == "<20261120091500.c42.r7@news.example.org>"


def test_huge_plain_notice_with_5mb_copy_of_the_message() -> None:
    raw = (SAMPLES / "qmail.eml").read_bytes() + _base64_lines(5 * 1024 * 1024)
    report = parse_bounce(raw)
    assert report.kind is HARD
    assert report.addresses == ["anna.verdi@example.net"]


def test_pathological_notices_stay_cheap() -> None:
    # Before lines were capped these took minutes (regexes over a multi-megabyte line, per address).
    head = b"From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\n\n"
    one_line = parse_bounce(head + b"x@y.example.com " * 200_000 + b"\n")
    assert one_line.kind is OTHER and one_line.recipients == []
    long_line = parse_bounce(head + b"a" * 5_000_000 + b"@example.com user unknown\n")
    assert long_line.recipients == []
    many_lines = parse_bounce(head + b"u@y.example.com user unknown\n" * 200_000)
    assert many_lines.addresses == ["u@y.example.com"] and many_lines.kind is HARD


def test_empty_and_garbage_input_is_other_with_a_reason() -> None:
    for raw in (b"", b"\x00\xff\xfe", b"\r\n\r\n", b"Content-Type: multipart/report; boundary=\"x\"\n\n--x\n"):
        report = parse_bounce(raw)
        assert report.kind in (OTHER, HUMAN)
        assert report.recipients == []
        assert report.kind is HUMAN or report.reason


def test_cli_parse_json_one_object_per_line() -> None:
    files = [str(SAMPLES / "gmail_511.eml"), str(SAMPLES / "ooo_it.eml")]
    result = CliRunner().invoke(cli, ["bounces", "parse", "--json", *files])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["file"] == files[0] and first["kind"] == "hard"
    assert first["recipients"][0]["address"] == "chiara.marino@gmail.com"
    assert second == {"file": files[1], "is_bounce": False, "kind": "autoreply", "recipients": [], "campaign": None, "message_id": None}


def test_cli_parse_human_output_and_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bounces", "parse", str(SAMPLES / "postfix_full_522.eml"), str(tmp_path / "nope.eml")])
    assert result.exit_code == 1
    assert "postfix_full_522.eml: soft laura.conti@example.net (5.2.2)" in result.stdout
    assert "nope.eml" in result.stderr


# --- fuzzing ---------------------------------------------------------------------------------

_SAMPLE_BYTES = [p.read_bytes() for p in sorted(SAMPLES.glob("*.eml"))]
_LINE_BREAK = re.compile(r"[\r\n\x00]")


def _assert_safe(report: BounceReport) -> None:
    """Invariants of every report: known kind, valid addresses, one-line strings, JSON-ready."""
    assert isinstance(report.kind, BounceKind)
    assert report.is_bounce == (report.kind in (HARD, SOFT, POLICY))
    assert not report.reason or not report.reason.startswith("unparseable message"), report.reason
    for rcpt in report.recipients:
        assert is_valid_address(rcpt.address), rcpt.address
        assert rcpt.address == rcpt.address.lower()
        assert isinstance(rcpt.kind, BounceKind)
    texts = [report.campaign, report.message_id, report.report_message_id, report.reason, report.reporting_mta]
    texts += [v for r in report.recipients for v in (r.status, r.action, r.diagnostic, r.remote_mta)]
    for text in texts:
        assert text is None or not _LINE_BREAK.search(text), text
    json.dumps(report.to_dict())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    _assert_safe(parse_bounce(raw))


@st.composite
def _mutated_sample(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(_SAMPLE_BYTES)))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(raw)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        chunk = draw(st.one_of(st.binary(min_size=1, max_size=40), st.sampled_from([b"\r\n", b"\n\n", b"--", b";", b"\\", b'"', b"@", b"=?utf-8?q?=0D=0A?=", b"\x00", b"\xff"])))
        if op == "insert":
            raw[pos:pos] = chunk
        elif op == "delete":
            del raw[pos : pos + len(chunk)]
        elif op == "replace":
            raw[pos : pos + len(chunk)] = chunk
        else:
            del raw[pos:]
    return bytes(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_sample())
def test_fuzz_mutated_samples(raw: bytes) -> None:
    _assert_safe(parse_bounce(raw))


_ADDRESS_PIECES = st.text(alphabet=st.sampled_from(list("ab.+\"\\\r\n <>@;:,'\x00\u00e8")), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(local=_ADDRESS_PIECES, field=st.sampled_from(["Final-Recipient", "Original-Recipient", "X-Actual-Recipient"]))
def test_fuzz_hostile_recipient_fields(local: str, field: str) -> None:
    raw = (
        "From: MAILER-DAEMON@example.net\nSubject: Undelivered Mail Returned to Sender\n"
        "X-Failed-Recipients: " + local + "@example.com\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\n<" + local + "@example.com>: 550 5.1.1 user unknown\n"
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; example.net\n\n"
        + field + ": rfc822; " + local + "@example.com\nAction: failed\nStatus: 5.1.1\n--b--\n"
    ).encode("utf-8", "surrogateescape")
    _assert_safe(parse_bounce(raw))


_HEADER_NAMES = [
    b"From", b"Subject", b"Return-Path", b"Auto-Submitted", b"Precedence", b"X-Failed-Recipients",
    b"Delivered-To", b"Message-ID", b"In-Reply-To", b"Date",
]
_BLOCK_NAMES = [b"Final-Recipient", b"Original-Recipient", b"X-Actual-Recipient", b"Action", b"Status", b"Diagnostic-Code", b"Remote-MTA"]


@settings(max_examples=200, deadline=None)
@given(
    top=st.dictionaries(st.sampled_from(_HEADER_NAMES), st.binary(max_size=30), max_size=6),
    block=st.dictionaries(st.sampled_from(_BLOCK_NAMES), st.binary(max_size=30), max_size=7),
    charset=st.binary(max_size=12),
)
def test_fuzz_8bit_header_values(top: dict[bytes, bytes], block: dict[bytes, bytes], charset: bytes) -> None:
    """8-bit and control bytes in any header: compat32 hands back Header objects and surrogates."""
    head = b"".join(name + b": " + value + b"\n" for name, value in top.items())
    fields = b"".join(name + b": " + value + b"\n" for name, value in block.items())
    raw = (
        head + b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain; charset=\"" + charset + b"\"\n\nnot delivered \xe8\n"
        b"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; example.net\n\n" + fields + b"--b--\n"
    )
    _assert_safe(parse_bounce(raw))


def _base64_lines(size: int) -> bytes:
    data = base64.encodebytes(bytes(range(256)) * (size // 256))
    return b"\n" + data


def _with_attachment(raw: bytes, size: int) -> bytes:
    """The sample with its quoted original turned into a multipart message with a big attachment."""
    original_body = b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nCiao Mario, ecco le novit\xc3\xa0 di novembre.\n"
    big = (
        b'Content-Type: multipart/mixed; boundary="att"\n\n--att\nContent-Type: text/plain\n\nSee attached.\n'
        b'--att\nContent-Type: application/pdf; name="listino.pdf"\nContent-Transfer-Encoding: base64\n'
        + _base64_lines(size)
        + b"--att--\n"
    )
    assert original_body in raw
    return raw.replace(original_body, big)


# --- a line break spelled as text never yields a second address (issue 9, finding 8) ----------

# Literal text, not control characters: what a forger (or a confused MTA) writes into a field.
ESCAPED_BREAKS = [
    "\\r\\n", "\\n", "\\r", "\\\\r\\\\n", "\\x0d\\x0a", "\\u000d\\u000a", "\\015\\012", "%0d%0a", "%0A",
    "%250A", "%5cn", "=0D=0A", "=0A", "&#13;&#10;", "&#x0a;", "^M^J", "<br>", "<BR/>",
    "=?utf-8?q?=0D=0A?=", "=?UTF-8?B?DQo=?=", "\\r\\n ", "\\n\t", "\\u2028",
]


def _forged_dsn(field: str, escape: str, *, text: bool = True) -> bytes:
    """A Postfix DSN for ann@example.org whose ``field`` holds the address, an escape spelling
    of a line break, then bob@example.net (also in the notice text when ``text``)."""
    from tests.dsn import postfix_dsn

    value = f"ann@example.org{escape}bob@example.net"
    raw = postfix_dsn("ann@example.org").decode()
    raw = raw.replace("Original-Recipient: rfc822;ann@example.org\r\n", "")
    if field == "X-Failed-Recipients":
        raw = raw.replace("Auto-Submitted:", f"X-Failed-Recipients: {value}\r\nAuto-Submitted:")
    elif field == "X-Actual-Recipient":
        raw = raw.replace("Final-Recipient: rfc822; ann@example.org", f"Final-Recipient: x400; ann\r\n{field}: rfc822; {value}")
    else:
        raw = raw.replace("Final-Recipient: rfc822; ann@example.org",
                          f"Final-Recipient: rfc822; {value}" if field == "Final-Recipient"
                          else f"Final-Recipient: x400; ann\r\n{field}: rfc822; {value}")
    if text:
        raw = raw.replace("<ann@example.org>: 550", f"<{value}>: 550")
    return raw.encode()


@pytest.mark.parametrize("escape", ESCAPED_BREAKS)
@pytest.mark.parametrize("field", ["Final-Recipient", "Original-Recipient", "X-Actual-Recipient", "X-Failed-Recipients"])
@pytest.mark.parametrize("text", [True, False], ids=["with-text", "fields-only"])
def test_escaped_line_break_in_a_recipient_field_never_yields_the_second_address(field: str, escape: str, text: bool) -> None:
    report = parse_bounce(_forged_dsn(field, escape, text=text))
    assert report.addresses in (["ann@example.org"], []), report.addresses
    _assert_safe(report)


@pytest.mark.parametrize("escape", ESCAPED_BREAKS)
@pytest.mark.parametrize("name", [c[0] for c in CASES if c[2]])
def test_escaped_line_break_after_every_mention_of_the_recipient(name: str, escape: str) -> None:
    """Every sample format (DSNs, Exim, qmail, Exchange, Italian notices, ARF...): each mention of
    the real recipient, in headers, fields and notice text, gets an escape and a second address."""
    statuses = next(c[2] for c in CASES if c[0] == name)
    raw = (SAMPLES / name).read_bytes()
    for address in statuses:
        raw = re.sub(re.escape(address).encode(), lambda m: m.group(0) + escape.encode() + b"victim@example.net",
                     raw, flags=re.IGNORECASE)
    report = parse_bounce(raw)
    assert set(report.addresses) <= set(statuses), report.addresses
    _assert_safe(report)


@settings(max_examples=150, deadline=None)
@given(escape=st.sampled_from(ESCAPED_BREAKS), before=st.sampled_from(["", " ", "<", '"']),
       second=st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.(com|net|org)", fullmatch=True),
       field=st.sampled_from(["Final-Recipient", "Original-Recipient", "X-Failed-Recipients"]))
def test_fuzz_escaped_line_breaks(escape: str, before: str, second: str, field: str) -> None:
    raw = _forged_dsn(field, escape, text=True).replace(b"bob@example.net", (before + second).encode())
    report = parse_bounce(raw)
    assert all(second not in a and a == "ann@example.org" for a in report.addresses), report.addresses
