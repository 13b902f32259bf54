"""Shared pytest fixtures. Sections are owned by different people: edit only your own.

Mail-server fixtures (wrap tests/mailservers.py; read its docstring for the servers):

- ``test_ca`` (session): a ``TestCA``; ``test_ca.ca_file`` to trust, ``test_ca.untrusted``.
- ``smtp_server`` (function): a factory; ``srv = smtp_server(tls="starttls", auth={"u": "pw"})``
  starts an aiosmtpd ``SMTPServer`` (cert from ``test_ca``) that is stopped after the test.
- ``dovecot`` (session): one running ``Dovecot``; create your own users so tests stay independent.
- ``mailbox_user`` (function): a factory; ``user, password = mailbox_user()`` adds a unique
  Dovecot user (``quota=True`` for an over-quota one, ``prefix="bounces"``, ``domain=...``).
- ``postfix`` (session): one running ``Postfix`` delivering example.org/example.net to ``dovecot``.
- ``nk_db`` (autouse): a fresh SQLite path in ``$NEWSLETTER_KIT_DB`` for every test.

Tests using ``dovecot``/``postfix`` get the ``servers`` marker automatically. When a server
is not installed they are skipped, except on CI (``$CI`` set) where they fail.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import hypothesis
import pytest

from tests import mailservers

# On a loaded 2-core CI machine a slow example is not a failure: no per-example deadline.
hypothesis.settings.register_profile("newsletter_kit", deadline=None)
hypothesis.settings.load_profile("newsletter_kit")

# ----------------------------------------------------------------- mail servers


def _require_binary(binary: str, package: str) -> None:
    """Skip (or on CI fail) when a server binary is missing."""
    found = shutil.which(binary) or os.path.exists(f"/usr/sbin/{binary}")
    if found:
        return
    message = f"{binary} is not installed (Debian package: {package}; scripts/setup.sh --servers)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if {"dovecot", "postfix", "mailbox_user"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


@contextlib.contextmanager
def _server_dir(name: str) -> Iterator[Path]:
    """A private temp dir for a server, removed afterwards.

    Not under pytest's basetemp: every pytest session that starts resets
    /tmp/pytest-of-<user> to mode 0700, which would lock Dovecot's and Postfix's
    unprivileged processes out of the files of a session already running.
    """
    path = Path(tempfile.mkdtemp(prefix=f"nk-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def test_ca() -> Iterator[mailservers.TestCA]:
    """A trustme CA with a localhost/127.0.0.1 server cert, and an untrusted twin."""
    with _server_dir("ca") as path:
        yield mailservers.TestCA(path)


@pytest.fixture
def smtp_server(test_ca: mailservers.TestCA) -> Iterator[Callable[..., mailservers.SMTPServer]]:
    """Factory for started aiosmtpd servers, all stopped after the test.

    Example: ``srv = smtp_server(tls="ssl", auth={"news": "pw"}); srv.port; srv.messages``
    """
    servers: list[mailservers.SMTPServer] = []

    def make(**kwargs: Any) -> mailservers.SMTPServer:
        kwargs.setdefault("ca", test_ca)
        server = mailservers.SMTPServer(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def dovecot(test_ca: mailservers.TestCA) -> Iterator[mailservers.Dovecot]:
    """One Dovecot (IMAP STARTTLS + IMAPS + LMTP) for the whole session."""
    _require_binary("dovecot", "dovecot-imapd dovecot-lmtpd")
    with _server_dir("dovecot") as path:
        server = mailservers.Dovecot(path, test_ca)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def mailbox_user(dovecot: mailservers.Dovecot) -> Callable[..., tuple[str, str]]:
    """Factory adding a fresh Dovecot user; returns (address, password).

    Example: ``user, pw = mailbox_user(prefix="bounces")``; ``mailbox_user(quota=True)``
    """

    def make(
        prefix: str = "user", domain: str = "example.org", quota: bool = False,
        quota_tempfail: bool = False,
    ) -> tuple[str, str]:
        address = f"{prefix}-{uuid.uuid4().hex[:10]}@{domain}"
        password = uuid.uuid4().hex
        dovecot.add_user(address, password, quota=quota, quota_tempfail=quota_tempfail)
        return address, password

    return make


@pytest.fixture(scope="session")
def postfix(dovecot: mailservers.Dovecot) -> Iterator[mailservers.Postfix]:
    """One Postfix for the session, delivering example.org/example.net to ``dovecot``."""
    _require_binary("postfix", "postfix")
    with _server_dir("postfix") as path:
        server = mailservers.Postfix(path, dovecot, fast_queue=True)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(autouse=True)
def nk_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SQLite store path for each test, also set as $NEWSLETTER_KIT_DB."""
    path = tmp_path / "newsletter.db"
    monkeypatch.setenv("NEWSLETTER_KIT_DB", str(path))
    return path


@pytest.fixture(scope="session")
def dkim_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """DKIM private keys as PEM files: ``rsa``, ``other`` (a second RSA), ``ed25519``, ``rsa1024``."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    folder = tmp_path_factory.mktemp("dkim-keys")
    made = {"rsa": rsa.generate_private_key(65537, 2048), "other": rsa.generate_private_key(65537, 2048),
            "ed25519": ed25519.Ed25519PrivateKey.generate(), "rsa1024": rsa.generate_private_key(65537, 1024)}
    paths = {}
    for name, key in made.items():
        paths[name] = folder / f"{name}.pem"
        paths[name].write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                                  ser.NoEncryption()))
    return paths
