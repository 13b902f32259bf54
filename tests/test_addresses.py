"""addresses.py, the one place that normalises and validates addresses: contacts and
suppressions, settings, what the renderer puts on the wire, and the lenient scanner for untrusted
bounce-report text."""

from __future__ import annotations

import ast
from pathlib import Path

import email_validator
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter_kit import addresses
from newsletter_kit.addresses import is_valid_address, lenient_address, normalize_address, scan_addresses
from newsletter_kit.errors import ValidationError

PACKAGE = Path(addresses.__file__).parent


# --- contacts and suppressions: normalize_address ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("  Ann.Lee@Example.ORG ", "ann.lee@example.org"),
    ("bob+news@shop.example", "bob+news@shop.example"),
    ("x@bücher.example", "x@xn--bcher-kva.example"),
    ("o'neil@example.net", "o'neil@example.net"),
])
def test_normalize_address_lowercases_and_keeps_plain_addresses(raw, expected):
    assert normalize_address(raw) == expected


@pytest.mark.parametrize("raw, reason", [
    ("ann@example.org\r\nBcc: all@example.org", "line break"),
    ("ann@example.org\n", None),  # stripped: a trailing newline from a file is harmless
    ("ann\0@example.org", "NUL"),
    ('"ann lee"@example.org', "quote"),
    ("Ann <ann@example.org>", "without a name"),
    ("<ann@example.org>", "without a name"),
    ("ann@example.org, bob@example.org", "comma"),
    ("ann @example.org", "space"),
    ("ann.example.org", "@-sign"),
    ("ann@example.test", "special"),
    ("ann@localhost", ""),
    ("ü@example.org", "before the @-sign"),
    ("", "empty"),
    (None, "not text"),
])
def test_normalize_address_rejects_what_is_not_a_plain_address(raw, reason):
    if reason is None:
        assert normalize_address(raw) == "ann@example.org"
        return
    with pytest.raises(ValidationError) as info:
        normalize_address(raw)
    assert reason.lower() in str(info.value).lower()
    assert info.value.field == "email"


def _validator(value):
    try:
        info = email_validator.validate_email(value.strip(), check_deliverability=False,
                                              allow_smtputf8=False)
    except email_validator.EmailNotValidError:
        return None
    return str(info.ascii_email).lower()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.emails(), st.from_regex(r"[A-Za-z0-9._%+'-]{1,70}@[A-Za-z0-9.-]{1,30}", fullmatch=True)))
def test_the_regex_fast_path_agrees_with_email_validator(value):
    expected = _validator(value)
    if expected is None or any(c in value for c in "\"<>,; "):
        with pytest.raises(ValidationError):
            normalize_address(value)
    else:
        assert normalize_address(value) == expected


# --- untrusted report text: is_valid_address, lenient_address, scan_addresses ---------------


@pytest.mark.parametrize(
    "address, valid",
    [
        ("a.b+tag@example.com", True),
        ("o'brien@example.ie", True),
        ("david...@gmail.com", False),
        ('"quoted"@example.com', False),
        ("a\r\nb@example.com", False),
        ("a b@example.com", False),
        ("back\\slash@example.com", False),
        ("user@localhost", False),
        ("user@example..com", False),
        ("us\u00e9r@example.com", False),
        ("x" * 65 + "@example.com", False),
    ],
)
def test_address_validation(address: str, valid: bool) -> None:
    assert is_valid_address(address) is valid



@pytest.mark.parametrize("candidate, expected", [
    ("<Ann@Example.org>", "ann@example.org"),
    ("mailto:ann@example.org", "ann@example.org"),
    (b"ann@example.org.", "ann@example.org"),
    ("ann@example.org\r\nbcc@example.org", None),
    ("'ann@example.org'", None),
    (None, None),
])
def test_lenient_address_unwraps_but_returns_only_valid_addresses(candidate, expected):
    assert lenient_address(candidate) == expected


def test_scan_addresses_finds_addresses_in_free_text():
    text = "550 <Ann@example.org>: user unknown; also 'bob@x.example' and x@y"
    assert [lenient_address(m.group(0)) for m in scan_addresses(text)] == ["ann@example.org", "bob@x.example"]


# --- one place ---------------------------------------------------------------------------------


def test_every_module_validates_addresses_through_addresses_py():
    from newsletter_kit import audience, bounces, messages
    from newsletter_kit import settings as nk_settings

    assert audience.normalize_address is addresses.normalize_address
    assert nk_settings.validate_address is addresses.validate_address
    assert bounces.is_valid_address is addresses.is_valid_address
    assert messages._check_recipient is addresses.check_recipient
    assert messages._check_from is addresses.check_from
    importers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "email_validator" for n in names):
                importers.append(path.relative_to(PACKAGE).as_posix())
    assert sorted(set(importers)) == ["addresses.py"], "email_validator used outside addresses.py"


def test_error_messages_name_the_field_as_before():
    with pytest.raises(ValidationError, match="is not a valid email address") as info:
        addresses.validate_address("not an address", "from_addr")
    assert info.value.field == "from_addr"
    with pytest.raises(ValidationError, match="must be a plain address"):
        addresses.check_plain_address("Bounces <b@example.org>", "bounce address")
    with pytest.raises(ValidationError, match="contains a line break"):
        addresses.check_from("News <n@example.org>\r\nBcc: x@example.org")
    with pytest.raises(ValidationError, match="is not a plain recipient address"):
        addresses.check_recipient("a..b@example.org")
