"""Settings: validation a person understands, update semantics, secrets by reference."""

from __future__ import annotations

import pytest

from newsletter_kit import settings as s
from newsletter_kit.errors import SecretError, ValidationError
from newsletter_kit.store import open_store

SMTP = dict(host="smtp.example.org", port=587, user="news@example.org",
            password_ref="env:NK_TEST_SMTP_PW", daily_limit=400, from_addr="news@example.org")
BOUNCE = dict(host="imap.example.org", port=143, user="bounces@example.org",
              password_ref="env:NK_TEST_IMAP_PW", threshold=3)


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "nk.db") as st:
        yield st


def test_smtp_defaults(store):
    smtp, warnings = s.update_smtp_settings(store, **SMTP)
    assert (smtp.tls, smtp.auth, smtp.exclusion) == ("starttls", True, "campaign")
    assert smtp.timezone  # the machine's zone
    assert warnings == []
    assert s.load_smtp_settings(store) == smtp


def test_bounce_address_defaults_to_user_and_follows_it(store):
    bounce, _ = s.update_bounce_settings(store, **BOUNCE)
    assert bounce.bounce_address == "bounces@example.org"
    assert bounce.folder == "INBOX" and bounce.count_policy is False
    bounce, _ = s.update_bounce_settings(store, user="returns@example.org")
    assert bounce.bounce_address == "returns@example.org"
    bounce, _ = s.update_bounce_settings(store, bounce_address="other@example.org")
    bounce, _ = s.update_bounce_settings(store, user="third@example.org")
    assert bounce.bounce_address == "other@example.org"  # set explicitly: kept


def test_later_calls_change_only_given_fields_and_empty_clears(store):
    s.update_smtp_settings(store, **SMTP, unsubscribe_url="https://x.example.org/u/{token}")
    smtp, _ = s.update_smtp_settings(store, daily_limit=1000)
    assert smtp.daily_limit == 1000 and smtp.host == "smtp.example.org"
    smtp, _ = s.update_smtp_settings(store, unsubscribe_url="")
    assert smtp.unsubscribe_url is None
    with pytest.raises(ValidationError, match="cannot be cleared"):
        s.update_smtp_settings(store, host="")


def test_first_call_names_missing_flags(store):
    with pytest.raises(ValidationError, match="--daily-limit") as info:
        s.update_smtp_settings(store, host="smtp.example.org", port=587, from_addr="a@example.org")
    assert "--from" not in str(info.value)


@pytest.mark.parametrize("changes, message", [
    ({"port": 0}, "out of range"),
    ({"port": 70000}, "out of range"),
    ({"port": "abc"}, "not a number"),
    ({"host": "bad host!"}, "not a valid server name"),
    ({"host": "-x.example.org"}, "not a valid server name"),
    ({"from_addr": "not-an-address"}, "must be one address"),
    ({"from_addr": "a@example.org\r\nBcc: x@example.org"}, "contains a line break"),
    ({"daily_limit": 0}, "at least 1"),
    ({"tls": "tls1.3"}, "must be one of"),
    ({"exclusion": "everyone"}, "campaign or global"),
    ({"timezone": "Mars/Olympus"}, "not a known time zone"),
    ({"unsubscribe_url": "http://x.example.org/{token}"}, "https"),
    ({"unsubscribe_url": "https://x.example.org/u"}, "{token}"),
    ({"ca_file": "/nonexistent/ca.pem"}, "does not exist"),
    ({"password_ref": "hunter2"}, "env:VAR"),
    ({"password_ref": ""}, "password reference is required"),
    ({"tls": "none"}, "unencrypted"),
])
def test_smtp_validation_messages(store, changes, message):
    with pytest.raises(ValidationError, match=message):
        s.update_smtp_settings(store, **{**SMTP, **changes})
    assert s.load_smtp_settings(store) is None  # nothing half-saved


def test_plain_auth_only_when_asked(store):
    smtp, _ = s.update_smtp_settings(store, **{**SMTP, "tls": "none"}, allow_plain_auth=True)
    assert smtp.tls == "none"
    smtp, _ = s.update_smtp_settings(store, user="", password_ref="", auth=False, allow_plain_auth=False)
    assert smtp.auth is False and smtp.user is None


@pytest.mark.parametrize("changes, message", [
    ({"threshold": 0}, "at least 1"),
    ({"user": "bounces", "bounce_address": None}, "bounce address is required"),
    ({"bounce_address": "x@@example.org"}, "not a valid email address"),
    ({"folder": "IN\r\nBOX"}, "folder"),
    ({"tls": "none"}, "unencrypted"),
])
def test_bounce_validation_messages(store, changes, message):
    with pytest.raises(ValidationError, match=message):
        s.update_bounce_settings(store, **{**BOUNCE, **changes})


def test_warnings_for_swapped_tls_ports_and_free_providers(store):
    _, warnings = s.update_smtp_settings(store, **{**SMTP, "tls": "ssl", "port": 587})
    assert any("587" in w for w in warnings)
    _, warnings = s.update_smtp_settings(store, tls="starttls", port=465)
    assert any("465" in w for w in warnings)
    _, warnings = s.update_smtp_settings(store, host="smtp.gmail.com", tls="ssl", daily_limit=2000)
    assert any("500" in w and "free provider" in w for w in warnings)
    _, warnings = s.update_smtp_settings(store, daily_limit=450)
    assert warnings == []


def test_env_reference_resolves_at_connect_time(monkeypatch):
    monkeypatch.setenv("NK_TEST_SMTP_PW", "correct horse")
    assert s.resolve_password("env:NK_TEST_SMTP_PW") == "correct horse"
    monkeypatch.delenv("NK_TEST_SMTP_PW")
    with pytest.raises(SecretError, match="NK_TEST_SMTP_PW.*not set"):
        s.resolve_password("env:NK_TEST_SMTP_PW")


def test_session_password_lives_in_this_process_only():
    ref = s.hold_password_for_session("test-smtp", "p@ss")
    assert ref == "session:test-smtp" and s.resolve_password(ref) == "p@ss"
    with pytest.raises(SecretError, match="kernel that has stopped"):
        s.resolve_password("session:never-held")


@pytest.fixture
def failing_keyring():
    import keyring
    from keyring.backends import fail

    old = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())  # what a headless server has
    yield
    keyring.set_keyring(old)


def test_no_keyring_backend_says_so_plainly(failing_keyring):
    with pytest.raises(SecretError, match="no system keyring"):
        s.store_password_in_keyring("smtp", "p")
    with pytest.raises(SecretError, match="no keyring backend"):
        s.resolve_password("keyring:smtp")


def test_password_never_stored_nor_shown(store, tmp_path, monkeypatch):
    secret = "Sup3r-S3cret-Value"
    monkeypatch.setenv("NK_TEST_SMTP_PW", secret)
    ref = s.hold_password_for_session("imap", secret)
    smtp, _ = s.update_smtp_settings(store, **SMTP)
    bounce, _ = s.update_bounce_settings(store, **{**BOUNCE, "password_ref": ref})
    shown = repr(smtp) + repr(bounce) + str(s.show_settings(store))
    assert secret not in shown
    store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    for f in tmp_path.iterdir():
        assert secret.encode() not in f.read_bytes(), f


def test_show_settings_uses_cli_long_names(store):
    s.update_smtp_settings(store, **SMTP)
    s.update_bounce_settings(store, **BOUNCE)
    shown = s.show_settings(store)
    assert {"host", "port", "user", "password-env", "auth", "tls", "allow-plain-auth", "ca-file",
            "daily-limit", "exclusion", "from", "unsubscribe-url", "timezone"} <= set(shown["smtp"])
    assert {"bounce-address", "folder", "threshold", "count-policy"} <= set(shown["bounce"])
    assert shown["smtp"]["password-env"] == "NK_TEST_SMTP_PW"
    assert shown["smtp"]["password"].startswith("********")
