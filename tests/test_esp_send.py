"""The sender's side of ESP matching (issue 18): with `settings esp`, every message carries the
header the provider echoes back with our delivery id, and the ledger keeps the id the relay's
final ``250`` gives (SES ``250 Ok <id>``, SendGrid ``250 Ok: queued as <id>``); a bounce event
then finds the delivery by either.  An aiosmtpd relay plays the ESP.
"""

from __future__ import annotations

import email
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from newsletter_kit import campaigns
from newsletter_kit.esp import import_events, update_esp_settings
from newsletter_kit.store import open_store
from tests import esp_samples as S
from tests import mailservers, sending


class EspRelay(mailservers.RecordingHandler):
    """Answers DATA as an ESP's relay does, with its own id of the message."""

    def __init__(self, style: str) -> None:
        super().__init__()
        self.style = style
        self.ids: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await super().handle_DATA(server, session, envelope)
        if self.style == "ses":
            relay_id = f"0100018c{uuid.uuid4().hex[:8]}-{uuid.uuid4()}-000000"
            self.ids.append(relay_id)
            return f"250 Ok {relay_id}"
        relay_id = uuid.uuid4().hex[:22]
        self.ids.append(relay_id)
        return f"250 Ok: queued as {relay_id}"


@pytest.mark.parametrize("provider", ["ses", "sendgrid"])
def test_the_relay_id_is_kept_and_the_echo_header_sent(provider: str, smtp_server: Any, tmp_path: Path) -> None:
    relay = EspRelay(provider)
    srv = smtp_server(handler=relay)
    store = open_store(tmp_path / "nk.db")
    sending.configure(store, srv)
    update_esp_settings(store, provider=provider, configuration_set="news" if provider == "ses" else None)
    emails = sending.addresses(3)
    sending.contacts(store, emails)
    sending.make_campaign(store)
    report = campaigns.send_campaign(store, "spring")
    assert report.sent == 3
    rows = dict(store.conn.execute("SELECT email, provider_message_id FROM deliveries"))
    assert sorted(rows.values()) == sorted(relay.ids)
    message = email.message_from_bytes(srv.messages[0].content)
    if provider == "ses":
        assert message["X-SES-CONFIGURATION-SET"] == "news"
        assert message["X-SES-MESSAGE-TAGS"].startswith("nk_delivery=")
    else:
        assert json.loads(message["X-SMTPAPI"])["unique_args"]["nk_delivery"]
    # A bounce for the first recipient, carrying only the relay's id, finds its delivery.
    first = emails[0]
    if provider == "ses":
        event: Any = S.ses_bounce(first, ses_id=rows[first])
    else:
        event = [S.sendgrid_event(first, sg_id=rows[first])]
    (tmp_path / "e.json").write_text(json.dumps(event))
    result = import_events(store, [tmp_path / "e.json"])
    assert result.matched == 1
    assert store.conn.execute("SELECT matched_by FROM bounces WHERE email = ?", (first,)).fetchone()[0] == "provider_id"


@pytest.mark.parametrize("provider", ["mailgun", "postmark"])
def test_the_echo_header_carries_a_signed_delivery_id(provider: str, smtp_server: Any, tmp_path: Path) -> None:
    srv = smtp_server()
    store = open_store(tmp_path / "nk.db")
    sending.configure(store, srv)
    update_esp_settings(store, provider=provider, domain="mg.example.org" if provider == "mailgun" else None)
    sending.contacts(store, sending.addresses(2))
    sending.make_campaign(store)
    assert campaigns.send_campaign(store, "spring").sent == 2
    message = email.message_from_bytes(srv.messages[0].content)
    to = message["To"]
    if provider == "mailgun":
        token = json.loads(message["X-Mailgun-Variables"])["nk_delivery"]
        event: Any = S.mailgun_event(to)
        event["user-variables"] = {"nk_delivery": token}
    else:
        token = message["X-PM-Metadata-nk_delivery"]
        event = S.postmark_bounce(to)
        event["Metadata"] = {"nk_delivery": token}
    assert store.conn.execute("SELECT count(*) FROM deliveries WHERE provider_message_id IS NOT NULL").fetchone() == (0,)
    (tmp_path / "e.json").write_text(json.dumps(event))
    assert import_events(store, [tmp_path / "e.json"]).matched == 1
    assert store.conn.execute("SELECT matched_by FROM bounces WHERE email = ?", (to,)).fetchone()[0] == "esp_id"


@pytest.mark.parametrize("provider", ["ses", "sendgrid", "mailgun", "postmark"])
def test_the_fast_render_with_the_echo_header_equals_the_stdlib_build(provider: str) -> None:
    import datetime as dt

    from newsletter_kit.messages import CampaignRenderer

    renderer = CampaignRenderer(campaign="spring", subject="Hi {{ name }}", html="<p>{{ name }}</p>",
                                from_addr="news@example.org", bounce_address="b@example.org", signing_key=b"k" * 32,
                                echo=(provider, "news" if provider == "ses" else None))
    date = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    for token in ("1.0123456789abcdef", "123456789012345.fedcba9876543210"):
        mid = renderer.new_message_id()
        fast = renderer.render("ann@example.org", {"name": "Ann"}, message_id=mid, date=date, delivery_token=token)
        assert fast == renderer.reference("ann@example.org", {"name": "Ann"}, message_id=mid, date=date,
                                          delivery_token=token).as_bytes()
        assert token.encode() in fast
    with pytest.raises(Exception, match="not a delivery token"):
        renderer.render("ann@example.org", {}, message_id=renderer.new_message_id(), delivery_token="x\r\nBcc: y")
