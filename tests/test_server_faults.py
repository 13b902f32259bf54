"""What the server answers, mapped to what happens to the recipient, the run and the bounces.

Real SMTP on 127.0.0.1: aiosmtpd answering on cue (the recipient's local part picks the reply,
a handler attribute refuses MAIL FROM) and Postfix refusing a message over its size limit.
Issue 9 findings 3 (a refusal of the message is not a bounce of the recipient) and 11 (one
message's conversation has a deadline). Nothing here asserts a wall-clock time.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from newsletter_kit import campaigns
from newsletter_kit.store import open_store
from newsletter_kit.transport import SmtpReply, classify_reply
from tests.mailservers import FaultHandler
from tests.sending import addresses, configure, contacts, invoke, ledger, make_campaign, received

# local part prefix -> (stage, reply): refusals a relay gives at DATA or RCPT.
REPLIES = {
    "syntax": ("DATA", "554 5.5.2 Syntax error in message header"),
    "toobig": ("DATA", "552 5.3.4 Message size exceeds fixed maximum message size"),
    "content": ("DATA", "554 5.6.0 Message content rejected"),
    "spam": ("DATA", "554 5.7.1 Message rejected as spam"),
    "bare500": ("DATA", "500 Error: bad message"),
    "longline": ("DATA", "500 Line too long (see RFC5321 4.5.3.1.6)"),
    "multi": ("DATA", "550-5.7.1 Our policy does not allow this content\r\n550 5.7.1 See section 4.5.3"),
    "section": ("DATA", "550 Rejected, see RFC 5321 section 4.5.3 and 5.1.1"),
    "gone": ("DATA", "550 5.1.1 Mailbox does not exist"),
    "unknown": ("RCPT", "550 5.1.1 <{addr}>: Recipient address rejected: User unknown"),
    "nocode": ("RCPT", "550 No such user here (see section 4.5.3)"),
    "blocked": ("RCPT", "554 5.7.1 <{addr}>: Recipient address rejected: Access denied"),
    "tempsender": ("RCPT", "450 4.1.8 <bounces@example.org>: Sender address rejected: Domain not found"),
}


class ReplyHandler(FaultHandler):
    """FaultHandler plus the REPLIES cues, a MAIL FROM refusal, and a trickling server.

    ``mail_reply``: the reply to every MAIL FROM. ``trickle``: "RCPT" or "DATA": at that stage
    the server sends one byte of its reply every ``trickle_every`` seconds, for at most
    ``trickle_for`` seconds, then the rest.
    """

    def __init__(self, mail_reply=None, trickle=None, trickle_every=0.2, trickle_for=30.0):
        super().__init__()
        self.mail_reply = mail_reply
        self.trickle = trickle
        self.trickle_every = trickle_every
        self.trickle_for = trickle_for
        self.mail_count = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mail_count += 1
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        cue = _cue(address)
        if cue and REPLIES[cue][0] == "RCPT":
            return REPLIES[cue][1].format(addr=address)
        if self.trickle == "RCPT" and address.startswith("slow"):
            return await self._trickle(server)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            cue = _cue(rcpt)
            if cue and REPLIES[cue][0] == "DATA":
                return REPLIES[cue][1]
            if self.trickle == "DATA" and rcpt.startswith("slow"):
                return await self._trickle(server)
        return await super().handle_DATA(server, session, envelope)

    async def _trickle(self, server):
        # A reply that never ends: a byte now and then (each read by the client finds one),
        # until the client gives up or trickle_for has passed; then the server hangs up.
        loop = asyncio.get_running_loop()
        start = loop.time()
        server.transport.write(b"250")
        while loop.time() - start < self.trickle_for and not server.transport.is_closing():
            await asyncio.sleep(self.trickle_every)
            server.transport.write(b" ")
        server.transport.close()
        return "421 4.4.2 too slow"  # pushed into a closed transport: nobody reads it


def _cue(address):
    local = address.split("@")[0]
    return next((cue for cue in REPLIES if local.startswith(cue)), None)


@pytest.fixture
def store(nk_db):
    store = open_store(nk_db)
    yield store
    store.close()


def _bounce_rows(store):
    return store.conn.execute("SELECT email, kind, status FROM bounces ORDER BY email").fetchall()


# --- reading a reply ----------------------------------------------------------------------


@pytest.mark.parametrize("code, text, stage, kind, status, concerns", [
    (250, "2.0.0 OK", "DATA", "sent", "2.0.0", None),
    (550, "5.1.1 <a@example.org>: User unknown", "RCPT", "failed", "5.1.1", "recipient"),
    (550, "No such user here (see section 4.5.3)", "RCPT", "failed", None, "recipient"),
    (553, "5.1.3 Bad recipient address syntax", "RCPT", "failed", "5.1.3", "recipient"),
    (554, "5.7.1 <a@example.org>: Relay access denied", "RCPT", "failed", "5.7.1", "sender"),
    (553, "5.1.8 <bounces@shop.example>: Sender address rejected: Domain not found", "RCPT", "failed", "5.1.8",
     "sender"),
    (550, "Sender verify failed", "RCPT", "failed", None, "sender"),
    (530, "5.7.0 Authentication required", "RCPT", "failed", "5.7.0", "sender"),
    (550, "5.1.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org", "RCPT", "failed",
     "5.1.1", "sender"),
    (550, "5.1.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org", "DATA", "failed",
     "5.1.1", "sender"),
    (554, "5.7.1 <spam@example.org>: Recipient address rejected: Access denied", "RCPT", "failed", "5.7.1",
     "recipient"),                                   # an address is not wording ("spam")
    (554, "5.7.1 Access denied", "RCPT", "failed", "5.7.1", "recipient"),  # a code alone: as before
    (503, "5.5.1 Error: need MAIL command", "RCPT", "failed", "5.5.1", "message"),
    (501, "Syntax: RCPT TO: <address>", "RCPT", "failed", None, "message"),
    (500, "Line too long (see RFC5321 4.5.3.1.6)", "DATA", "failed", None, "message"),
    (500, "Error: bad message", "DATA", "failed", None, "message"),
    (554, "5.5.2 Syntax error in header", "DATA", "failed", "5.5.2", "message"),
    (552, "5.3.4 Message size exceeds fixed limit", "DATA", "failed", "5.3.4", "message"),
    (552, "5.2.3 Message length exceeds administrative limit", "DATA", "failed", "5.2.3", "message"),
    (554, "5.6.0 Content rejected", "DATA", "failed", "5.6.0", "message"),
    (550, "5.7.1 Rejected as spam\n5.7.1 see section 4.5.3", "DATA", "failed", "5.7.1", "message"),
    (550, "Rejected, see section 4.5.3 and 5.1.1", "DATA", "failed", None, "message"),
    (550, "5.1.1 Mailbox does not exist", "DATA", "failed", "5.1.1", "recipient"),
    (552, "5.2.2 Mailbox full", "DATA", "failed", "5.2.2", "recipient"),
    (550, "4.5.3 a status of the wrong class is text", "DATA", "failed", None, "message"),
    (553, "5.1.7 Bad sender address syntax", "MAIL", "failed", "5.1.7", "sender"),
    (550, "5.7.1 Sender rejected", "MAIL", "failed", "5.7.1", "sender"),
    (552, "5.3.4 Message size exceeds fixed limit", "MAIL", "failed", "5.3.4", "message"),
    (552, "Message size exceeds fixed limit", "MAIL", "failed", None, "message"),
    (451, "4.3.0 Temporary lookup failure", "MAIL", "paused", "4.3.0", None),
    (451, "4.3.0 try again later", "RCPT", "deferred", "4.3.0", None),
    (450, "4.1.8 <b@shop.example>: Sender address rejected: Domain not found", "RCPT", "paused", "4.1.8", None),
    (450, "4.7.1 <a@example.org>: Recipient address rejected: Greylisted, try later", "RCPT", "deferred",
     "4.7.1", None),
    (452, "4.3.1 Insufficient system storage", "DATA", "deferred", "4.3.1", None),
    (421, "4.3.2 closing", "DATA", "paused", "4.3.2", None),
])
def test_replies_map_to_outcomes_by_stage_code_and_enhanced_code(code, text, stage, kind, status, concerns):
    outcome = classify_reply(code, text.encode(), stage)
    assert (outcome.kind, outcome.status, outcome.concerns, outcome.stage) == (kind, status, concerns, stage)


def test_an_enhanced_code_is_read_only_right_after_the_basic_code():
    assert SmtpReply.parse(550, "550 5.1.1 x").status == "5.1.1"      # a line still carrying its code
    assert SmtpReply.parse(550, "550-5.7.1 a\n550 5.7.1 b").status == "5.7.1"
    assert SmtpReply.parse(550, "User 5.1.1 unknown").status is None
    assert SmtpReply.parse(500, "4.5.3.1.6 is a section").status is None
    assert SmtpReply.parse(550, "5.1.10 long detail").status == "5.1.10"
    assert SmtpReply.parse(550, "5.1.1000 not a code").status is None


# --- refusals of the message against a real aiosmtpd ---------------------------------------


@pytest.mark.parametrize("cue", ["syntax", "toobig", "content", "spam", "bare500", "longline", "multi", "section"])
def test_a_refused_message_fails_its_delivery_stops_the_run_and_bounces_nobody(store, smtp_server, cue):
    srv = smtp_server(tls="none", handler=ReplyHandler())
    configure(store, srv)  # threshold 1: one bounce would suppress
    order = ["ok1@example.org", f"{cue}.ann@example.org", "ok2@example.org", "ok3@example.org"]
    contacts(store, order)
    make_campaign(store)

    result = invoke(["campaign", "send", "spring", "--json"])

    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert (doc["sent"], doc["failed"], doc["paused"], doc["suppressed"]) == (1, 1, "refused", [])
    assert "refused the message itself" in result.stderr
    rows = ledger(store)
    state, _, code, status, reason = rows[f"{cue}.ann@example.org"]
    assert (state, code) == ("failed", int(REPLIES[cue][1][:3]))
    assert status == {"syntax": "5.5.2", "toobig": "5.3.4", "content": "5.6.0", "spam": "5.7.1",
                      "multi": "5.7.1"}.get(cue)                   # never "4.5.3" from the text
    assert reason
    assert [rows[e][0] for e in ("ok2@example.org", "ok3@example.org")] == ["pending", "pending"]
    assert _bounce_rows(store) == []                                # nobody's threshold moved
    assert store.conn.execute("SELECT count(*) FROM suppressions").fetchone()[0] == 0
    assert set(received(srv)) == {"ok1@example.org"}


def test_a_refused_sender_at_mail_from_stops_the_run_and_leaves_everybody_pending(store, smtp_server):
    handler = ReplyHandler(mail_reply="553 5.1.7 <bounces@example.org>: Sender address rejected")
    srv = smtp_server(tls="none", handler=handler)
    configure(store, srv)
    contacts(store, addresses(5))
    make_campaign(store)

    report = campaigns.send_campaign(store, "spring")

    assert (report.paused, report.refused, report.failed, report.sent) == ("refused", "sender", 0, 0)
    assert "envelope sender bounces@example.org" in report.detail
    assert handler.mail_count == 1                                  # nobody else was tried
    states = [s for s, *_ in ledger(store).values()]
    assert states == ["pending"] * 5                                # the recipient was not at fault
    assert _bounce_rows(store) == []


def test_message_refusals_count_toward_max_failures(store, smtp_server):
    srv = smtp_server(tls="none", handler=ReplyHandler())
    configure(store, srv)
    contacts(store, ["unknown1@example.org", "unknown2@example.org", "spam.x@example.org", "ok@example.org"])
    make_campaign(store)

    report = campaigns.send_campaign(store, "spring", max_consecutive_failures=3)

    assert report.paused == "failures"                          # the third failure in a row
    assert report.failed == 3 and report.sent == 0


def test_recipient_refusals_at_rcpt_or_for_the_mailbox_are_hard_bounces_and_the_run_goes_on(
        store, smtp_server):
    srv = smtp_server(tls="none", handler=ReplyHandler())
    configure(store, srv)
    order = ["unknown.a@example.org", "nocode.b@example.org", "blocked.c@example.org", "gone.d@example.org",
             "ok@example.org"]
    contacts(store, order)
    make_campaign(store)

    report = campaigns.send_campaign(store, "spring")

    assert (report.paused, report.sent, report.failed) == (None, 1, 4)
    kinds = {email: (kind, status) for email, kind, status in _bounce_rows(store)}
    assert kinds["unknown.a@example.org"] == ("hard", "5.1.1")
    assert kinds["gone.d@example.org"] == ("hard", "5.1.1")
    assert kinds["nocode.b@example.org"][1] is None              # not "4.5.3" from the text
    assert kinds["blocked.c@example.org"][0] == "policy"         # counted only with --count-policy
    assert ledger(store)["nocode.b@example.org"][3] is None


def test_postfix_refuses_a_message_over_its_size_limit_without_bouncing_anyone(store, postfix):
    """Postfix's default message_size_limit is 10,240,000 bytes; smtplib announces SIZE at
    MAIL FROM, so Postfix refuses the message there (552 5.3.4) before any data is sent."""

    class _Srv:
        port = postfix.port

    configure(store, _Srv)
    contacts(store, ["ann@example.org", "bob@example.org"])
    # Under the 2,000,000-character render limit, but over 10 MB on the wire (quoted-printable).
    campaigns.create_campaign(store, "big", "news", "Big", "<p>" + "é" * 1_900_000 + "</p>", text="Big news")

    result = invoke(["campaign", "send", "big", "--json"])

    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["paused"], doc["failed"], doc["sent"]) == ("refused", 1, 0)
    rows = ledger(store, "big")
    assert rows["ann@example.org"][0] == "failed" and rows["ann@example.org"][2:4] == (552, "5.3.4")
    assert rows["bob@example.org"][0] == "pending"
    assert _bounce_rows(store) == []


# --- a server that trickles (finding 11) ----------------------------------------------------


def test_a_server_trickling_its_reply_after_the_data_hits_the_deadline_and_the_row_is_unknown(
        store, smtp_server):
    handler = ReplyHandler(trickle="DATA")
    srv = smtp_server(tls="none", handler=handler)
    configure(store, srv)
    contacts(store, ["ok1@example.org", "slow.ann@example.org", "ok2@example.org"])
    make_campaign(store)

    report = campaigns.send_campaign(store, "spring", message_deadline=1.0)

    assert report.paused == "connection"
    assert "deadline" in report.detail
    rows = ledger(store)
    assert [rows[e][0] for e in ("ok1@example.org", "slow.ann@example.org", "ok2@example.org")] == [
        "sent", "unknown", "pending"]                               # perhaps delivered: not resent
    assert campaigns.campaign_status(store, "spring")["unknown"] == 1


def test_a_server_trickling_before_the_data_is_retried_once_then_the_run_pauses(store, smtp_server):
    handler = ReplyHandler(trickle="RCPT")
    srv = smtp_server(tls="none", handler=handler)
    configure(store, srv)
    contacts(store, ["ok1@example.org", "slow.bob@example.org", "ok2@example.org"])
    make_campaign(store)

    report = campaigns.send_campaign(store, "spring", message_deadline=1.0)

    assert report.paused == "connection"
    assert handler.mail_count == 3                          # ok1, then slow twice (one retry)
    rows = ledger(store)
    assert [rows[e][0] for e in ("ok1@example.org", "slow.bob@example.org", "ok2@example.org")] == [
        "sent", "pending", "pending"]                       # nothing reached DATA: sent again later
    assert set(received(srv)) == {"ok1@example.org"}


# --- issue 16, finding 3: a refusal of our sender is charged to nobody -------------------------


def _sender_refusal_leaves_everybody_as_it_was(store, result, refused_rows, order):
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["paused"], doc["refused"], doc["failed"], doc["suppressed"]) == ("refused", "sender", 0, [])
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if "refused our sender" in line] and "Traceback" not in result.stderr
    rows = ledger(store)
    assert {e: rows[e][0] for e in refused_rows} == {e: "pending" for e in refused_rows}
    assert all(rows[e][0] in ("sent", "pending") for e in order)
    assert _bounce_rows(store) == []                                # nobody's counts moved
    assert store.conn.execute("SELECT count(*) FROM suppressions").fetchone()[0] == 0
    return doc


@pytest.mark.parametrize("cue", ["relay554", "auth530", "sendverify", "spamhaus", "dataspamhaus"])
def test_a_reply_about_our_sender_at_rcpt_or_data_stops_the_run_and_charges_nobody(store, smtp_server, cue):
    """Relay denied, authentication required, sender verify failed, blocklisted IP (with a
    5.1.1 code): the run stops with one line, the recipient stays pending, and running it again
    stops at the same place instead of walking through the list."""
    srv = smtp_server(tls="none", handler=ReplyHandler())
    configure(store, srv)  # threshold 1: one bounce would suppress
    order = ["ok1@example.org", f"{cue}.ann@example.org", "ok2@example.org", "ok3@example.org"]
    contacts(store, order)
    make_campaign(store)

    for _ in range(3):
        result = invoke(["campaign", "send", "spring", "--json"])
        doc = _sender_refusal_leaves_everybody_as_it_was(store, result, [f"{cue}.ann@example.org"], order)
    assert doc["sent"] == 0 and set(received(srv)) == {"ok1@example.org"}
    assert max(received(srv).values()) == 1
    assert [ledger(store)[e][0] for e in ("ok2@example.org", "ok3@example.org")] == ["pending", "pending"]


def test_postfix_refusing_our_sender_at_rcpt_charges_no_recipient(store, postfix):
    """Postfix answers sender restrictions at RCPT (smtpd_delay_reject = yes, its default):
    "553 5.1.8 <bounces@shop.example>: Sender address rejected: Domain not found"."""
    from newsletter_kit.settings import update_bounce_settings
    from tests.mailservers import SENDER_REJECT_DOMAIN

    class _Srv:
        port = postfix.sender_reject_port

    configure(store, _Srv)
    update_bounce_settings(store, host="127.0.0.1", port=1143, user=f"bounces@{SENDER_REJECT_DOMAIN}",
                           threshold=1, tls="none", allow_plain_auth=True, password_ref="env:NK_UNUSED")
    order = addresses(25)
    contacts(store, order)
    make_campaign(store)

    for connections in ("1", "1", "3"):
        result = invoke(["campaign", "send", "spring", "--json", "--connections", connections])
        doc = _sender_refusal_leaves_everybody_as_it_was(store, result, order, order)
        assert "5.1.8" in doc["detail"] and "Sender address rejected" in doc["detail"], doc["detail"]
        assert doc["sent"] == 0 and 1 <= doc["attempted"] <= int(connections)  # stopped at once
    assert campaigns.campaign_status(store, "spring")["pending"] == 25


def test_recipient_refusals_keep_their_reason_in_the_ledger(store, smtp_server):
    srv = smtp_server(tls="none", handler=ReplyHandler())
    configure(store, srv)
    contacts(store, ["unknown.a@example.org", "ok@example.org"])
    make_campaign(store)
    campaigns.send_campaign(store, "spring")
    reason = ledger(store)["unknown.a@example.org"][4]
    assert "user_unknown" in reason and "does not exist" in reason


def test_a_temporary_refusal_of_our_sender_pauses_the_run_and_defers_nobody(store, smtp_server):
    """450 4.1.8 Sender address rejected (Postfix when DNS fails for a moment): not a deferral of
    each recipient in turn, but a pause of the run (exit 75: run it again later)."""
    srv = smtp_server(tls="none", handler=ReplyHandler())
    configure(store, srv)
    order = ["ok1@example.org", "tempsender.ann@example.org", "ok2@example.org"]
    contacts(store, order)
    make_campaign(store)

    result = invoke(["campaign", "send", "spring", "--json"])

    assert result.returncode == 75, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["paused"], doc["deferred"], doc["failed"]) == ("connection", 0, 0)
    assert "Sender address rejected" in doc["detail"]
    rows = ledger(store)
    assert [rows[e][0] for e in order] == ["sent", "pending", "pending"]
    assert _bounce_rows(store) == []
