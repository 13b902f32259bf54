"""The test servers themselves work for real (aiosmtpd, Dovecot, Postfix on loopback)."""
from __future__ import annotations

import email
import email.message
import email.utils
import smtplib
import ssl
from email import policy
from email.message import EmailMessage
from typing import Any, Callable

import pytest

from tests import mailservers

SENDER = "news@example.org"


def _message(to: str, sender: str = SENDER, subject: str = "hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = email.utils.make_msgid(domain="example.org")
    msg.set_content("A test message body.\n")
    return msg


# ---------------------------------------------------------------------- aiosmtpd


def test_starttls_auth_delivers_and_records(smtp_server: Callable[..., Any], test_ca: Any) -> None:
    srv = smtp_server(tls="starttls", auth={"news": "s3cret"})
    with smtplib.SMTP(srv.host, srv.port) as client:
        client.starttls(context=test_ca.client_context())
        client.login("news", "s3cret")
        client.send_message(_message("anna@example.net"))
    [received] = srv.messages
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ["anna@example.net"]
    assert b"Subject: hello" in received.content


def test_wrong_password_is_535(smtp_server: Callable[..., Any], test_ca: Any) -> None:
    srv = smtp_server(tls="starttls", auth={"news": "s3cret"})
    with smtplib.SMTP(srv.host, srv.port) as client:
        client.starttls(context=test_ca.client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            client.login("news", "wrong")
    assert caught.value.smtp_code == 535


def test_auth_is_not_offered_before_starttls(smtp_server: Callable[..., Any]) -> None:
    srv = smtp_server(tls="starttls", auth={"news": "s3cret"})
    with smtplib.SMTP(srv.host, srv.port) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")


def test_implicit_tls(smtp_server: Callable[..., Any], test_ca: Any) -> None:
    srv = smtp_server(tls="ssl", auth={"news": "s3cret"})
    with smtplib.SMTP_SSL("localhost", srv.port, context=test_ca.client_context()) as client:
        client.login("news", "s3cret")
        client.send_message(_message("anna@example.net"))
    assert len(srv.messages) == 1


def test_untrusted_certificate_fails_verification(smtp_server: Callable[..., Any], test_ca: Any) -> None:
    srv = smtp_server(tls="ssl", ca=test_ca.untrusted)
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL("localhost", srv.port, context=test_ca.client_context(), timeout=10)


@pytest.mark.parametrize(
    "local, code",
    [("fail550", 550), ("soft451", 451), ("busy450", 450), ("full452", 452), ("rcpt421", 421)],
)
def test_rcpt_fault_cues(smtp_server: Callable[..., Any], local: str, code: int) -> None:
    srv = smtp_server(tls="none")
    rcpt = f"{local}.x@example.net"
    with smtplib.SMTP(srv.host, srv.port) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            client.send_message(_message(rcpt))
    assert caught.value.recipients[rcpt][0] == code
    assert srv.messages == []


@pytest.mark.parametrize("local, code", [("data554", 554), ("data421", 421)])
def test_data_fault_cues(smtp_server: Callable[..., Any], local: str, code: int) -> None:
    srv = smtp_server(tls="none")
    client = smtplib.SMTP(srv.host, srv.port)
    with pytest.raises(smtplib.SMTPDataError) as caught:
        client.send_message(_message(f"{local}@example.net"))
    assert caught.value.smtp_code == code
    if code == 421:  # the server hung up
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    client.close()


def test_drop_hangs_up_without_reply(smtp_server: Callable[..., Any]) -> None:
    srv = smtp_server(tls="none")
    with smtplib.SMTP(srv.host, srv.port) as client:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.send_message(_message("drop@example.net"))
    assert srv.messages == []


def test_sink_process_counts_messages() -> None:
    with mailservers.start_sink_process() as sink:
        with smtplib.SMTP(sink.host, sink.port) as client:
            for n in range(3):
                client.send_message(_message(f"r{n}@example.net"))
        assert sink.stop() == 3


# ------------------------------------------------------------------------ Dovecot


def test_imap_starttls_login_lists_folders(dovecot: Any, mailbox_user: Callable[..., Any]) -> None:
    user, password = mailbox_user()
    dovecot.create_folder(user, "Bounces")
    client = dovecot.imap_client(user, password)
    try:
        names = {name for _flags, _sep, name in client.list_folders()}
    finally:
        client.logout()
    assert {"INBOX", "Bounces"} <= names


def test_imap_implicit_tls_with_ca_file(dovecot: Any, mailbox_user: Callable[..., Any]) -> None:
    from imapclient import IMAPClient

    user, password = mailbox_user()
    context = ssl.create_default_context(cafile=dovecot.ca_file)
    with IMAPClient("localhost", port=dovecot.imaps_port, ssl_context=context, timeout=10) as client:
        client.login(user, password)
        assert client.select_folder("INBOX")[b"EXISTS"] == 0


def test_imap_wrong_password_is_refused(dovecot: Any, mailbox_user: Callable[..., Any]) -> None:
    from imapclient.exceptions import LoginError

    user, _password = mailbox_user()
    with pytest.raises(LoginError):
        dovecot.imap_client(user, "wrong")


def test_append_many_is_visible_over_imap(dovecot: Any, mailbox_user: Callable[..., Any]) -> None:
    user, _password = mailbox_user()
    raws = [_message("x@example.net", subject=f"n{n}").as_bytes(policy=policy.SMTP) for n in range(50)]
    assert dovecot.append_many(user, "Bounces", raws) == 50
    client = dovecot.imap_client(user)
    try:
        assert client.select_folder("Bounces")[b"EXISTS"] == 50
        assert len(client.search(["TEXT", "n17"])) == 1
    finally:
        client.logout()


def test_lmtp_over_quota_user_is_refused(dovecot: Any, mailbox_user: Callable[..., Any]) -> None:
    full, _ = mailbox_user(quota=True)
    ok, _ = mailbox_user()
    with smtplib.LMTP(dovecot.host, dovecot.lmtp_port) as lmtp:
        refused = lmtp.sendmail(SENDER, [ok], _message(ok).as_bytes())
        assert refused == {}
        with pytest.raises(smtplib.SMTPDataError) as caught:
            lmtp.sendmail(SENDER, [full], _message(full).as_bytes())
    assert caught.value.smtp_code == 552
    assert dovecot.wait_for_messages(ok, 1) == 1


# ------------------------------------------------------------------------ Postfix


def _dsn_recipients(raw: bytes) -> list[dict[str, str]]:
    """The per-recipient fields of a multipart/report DSN (lower-case names)."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    [status] = [part for part in msg.walk() if part.get_content_type() == "message/delivery-status"]
    blocks = status.get_payload()
    assert isinstance(blocks, list)  # message/delivery-status parses into header blocks
    return [
        {k.lower(): str(v) for k, v in block.items()}
        for block in blocks[1:]
        if isinstance(block, email.message.Message)
    ]


def _send(port: int, sender: str, rcpts: list[str]) -> dict[str, Any]:
    with smtplib.SMTP(mailservers.HOST, port) as client:
        return client.send_message(_message(rcpts[0], sender=sender), sender, rcpts)


def test_unknown_local_user_bounces_as_dsn(postfix: Any, mailbox_user: Callable[..., Any]) -> None:
    sender, _ = mailbox_user(prefix="news")
    assert _send(postfix.port, sender, ["nobody-here@example.org"]) == {}
    postfix.wait_for_messages(sender, 1)
    [dsn] = postfix.dovecot.read_messages(sender)
    [rcpt] = _dsn_recipients(dsn)
    assert rcpt["final-recipient"] == "rfc822; nobody-here@example.org"
    assert rcpt["action"] == "failed"
    assert rcpt["status"] == "5.1.1"
    assert rcpt["remote-mta"] == "dns; 127.0.0.1"


def test_fault_domains_and_quota_in_one_dsn(postfix: Any, mailbox_user: Callable[..., Any]) -> None:
    sender, _ = mailbox_user(prefix="news")
    full, _ = mailbox_user(quota=True)
    rcpts = [f"x@{mailservers.FAULT_HARD_DOMAIN}", full, f"y@{mailservers.FAULT_DISCARD_DOMAIN}"]
    assert _send(postfix.port, sender, rcpts) == {}
    postfix.wait_for_messages(sender, 1)
    [dsn] = postfix.dovecot.read_messages(sender)
    by_rcpt = {r["final-recipient"].split("; ")[1]: r for r in _dsn_recipients(dsn)}
    assert set(by_rcpt) == {rcpts[0], full}  # the discarded one is silently gone
    assert by_rcpt[rcpts[0]]["status"] == "5.1.1"
    assert by_rcpt[rcpts[0]]["diagnostic-code"].startswith("X-Postfix;")
    assert "remote-mta" not in by_rcpt[rcpts[0]]
    assert by_rcpt[full]["status"] == "5.2.2"  # mailbox full
    assert "552 5.2.2" in by_rcpt[full]["diagnostic-code"]


def test_reject_port_refuses_unknown_users_at_rcpt(postfix: Any, mailbox_user: Callable[..., Any]) -> None:
    sender, _ = mailbox_user(prefix="news")
    known, _ = mailbox_user()  # added while Postfix runs: still accepted
    refused = _send(postfix.reject_port, sender, [known, "nobody-there@example.org"])
    assert refused["nobody-there@example.org"][0] == 550
    assert known not in refused
    assert postfix.wait_for_messages(known, 1) == 1


def test_tempfail_quota_gives_delay_warning_then_bounce(
    postfix: Any, mailbox_user: Callable[..., Any]
) -> None:
    sender, _ = mailbox_user(prefix="news")
    full, _ = mailbox_user(quota=True, quota_tempfail=True)
    assert _send(postfix.port, sender, [full]) == {}
    # fast_queue: a delay warning after ~2 s, the final bounce after ~8 s.
    postfix.wait_for_messages(sender, 2, timeout=40)
    warning, final = (_dsn_recipients(raw)[0] for raw in postfix.dovecot.read_messages(sender))
    assert (warning["action"], warning["status"]) == ("delayed", "4.2.2")
    assert (final["action"], final["status"]) == ("failed", "4.2.2")
