"""A campaign's everyday life (issue 19): a proof before the send, edit while nothing went out,
duplicate, archive and delete; through the API and the command line, against a real aiosmtpd
server on 127.0.0.1.
"""

from __future__ import annotations

import email
import email.policy
import json

import pytest

from newsletter_kit import campaigns, quota
from newsletter_kit.errors import CampaignError, TemplateError
from newsletter_kit.store import open_store
from newsletter_kit.tokens import verify_unsubscribe_token
from tests.sending import FROM, configure, contacts, invoke, ledger, make_campaign


@pytest.fixture
def store(nk_db):
    store = open_store(nk_db)
    yield store
    store.close()


def _parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


# --- campaign test ------------------------------------------------------------------------------


def test_a_proof_goes_to_the_test_address_only_with_a_contacts_fields_and_an_inert_link(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv, limit=10)
    contacts(store, ["ann@example.org", "bob@example.org"])
    make_campaign(store)
    report = campaigns.send_test(store, "spring", ["Me@Example.org"], as_contact="bob@example.org")
    assert report.sent == 1 and report.contact == "bob@example.org"
    [env] = srv.messages
    assert env.rcpt_tos == ["me@example.org"] and env.mail_from == FROM  # not the bounce mailbox
    msg = _parsed(env.content)
    assert msg["Subject"] == "[TEST] Hello Bob" and msg["To"] == "me@example.org"
    token = msg["List-Unsubscribe"].split("unsubscribe%20", 1)[1].split(">", 1)[0]
    assert verify_unsubscribe_token(store.signing_key(), token) is None  # unsubscribes nobody
    assert ledger(store) == {}  # not a delivery of the campaign
    assert campaigns.campaign_status(store, "spring")["pending"] == 2
    assert quota.quota_status(store).used == 1  # but it counts toward the day's quota


def test_a_proof_without_as_takes_a_sample_member_and_a_refused_one_is_reported(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv, limit=10)
    contacts(store, ["ann@example.org"])
    make_campaign(store)
    report = campaigns.send_test(store, "spring", ["me@example.org", "fail550.me@example.org"])
    assert report.contact == "ann@example.org"
    assert [r["outcome"] for r in report.results] == ["sent", "failed"]
    assert "550" in report.results[1]["reply"] or "5.1.1" in report.results[1]["reply"]
    assert quota.quota_status(store).used == 1
    assert store.conn.execute("SELECT count(*) FROM bounces").fetchone()[0] == 0  # charged to nobody


def test_a_proof_needs_room_in_the_quota_and_names_an_existing_contact(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv, limit=1)
    contacts(store, ["ann@example.org"])
    make_campaign(store)
    with pytest.raises(CampaignError, match="no contact 'zed@example.org'"):
        campaigns.send_test(store, "spring", ["me@example.org"], as_contact="zed@example.org")
    result = invoke(["campaign", "test", "spring", "--to", "a@example.org", "--to", "b@example.org"])
    assert result.exit_code == 75 and "quota has room for 1" in result.stderr and "Traceback" not in result.output
    assert srv.messages == [] and quota.quota_status(store).used == 0
    bad = invoke(["campaign", "test", "spring", "--to", "not an address"])
    assert bad.exit_code == 1 and len(bad.stderr.strip().splitlines()) == 1


def test_campaign_test_on_the_command_line(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv, limit=10)
    contacts(store, ["ann@example.org"])
    make_campaign(store)
    result = invoke(["campaign", "test", "spring", "--to", "me@example.org", "--as", "ann@example.org", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"campaign": "spring", "as": "ann@example.org", "sent": 1,
                                         "results": [{"to": "me@example.org", "outcome": "sent", "reply": ""}]}
    refused = invoke(["campaign", "test", "spring", "--to", "fail550.me@example.org"])
    assert refused.exit_code == 1 and "failed" in refused.stdout
    assert len(srv.messages) == 1


# --- edit, duplicate, archive, delete -------------------------------------------------------------


def test_edit_before_the_first_send_then_a_refusal_that_says_to_duplicate(store, smtp_server, tmp_path):
    srv = smtp_server(tls="none")
    configure(store, srv, limit=10)
    contacts(store, ["ann@example.org", "bob@example.org"])
    contacts(store, ["cy@example.org"], list_name="vip")
    make_campaign(store)
    html = tmp_path / "new.html"
    html.write_text("<p>Fixed, {{ first_name }}</p>", encoding="utf-8")
    result = invoke(["campaign", "edit", "spring", "--subject", "Fixed {{ first_name }}", "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert campaigns.get_campaign(store, "spring").subject == "Fixed {{ first_name }}"
    with pytest.raises(TemplateError):
        campaigns.edit_campaign(store, "spring", subject="Hi {{ frist_name }}")
    assert campaigns.get_campaign(store, "spring").subject == "Fixed {{ first_name }}"  # nothing lost
    campaigns.edit_campaign(store, "spring", list_name="vip")
    assert campaigns.campaign_status(store, "spring")["pending"] == 1
    campaigns.send_campaign(store, "spring")
    assert _parsed(srv.messages[0].content)["Subject"] == "Fixed Cy"
    refused = invoke(["campaign", "edit", "spring", "--subject", "Again"])
    assert refused.exit_code == 1 and "duplicate" in refused.stderr and "Traceback" not in refused.output
    copy = invoke(["campaign", "duplicate", "spring", "spring-2"])
    assert copy.exit_code == 0, copy.output
    assert campaigns.edit_campaign(store, "spring-2", subject="Again").subject == "Again"


def test_archive_hides_and_keeps_history_and_delete_needs_yes_after_a_send(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv, limit=10)
    contacts(store, ["ann@example.org", "fail550.bob@example.org"])
    make_campaign(store)
    make_campaign(store, "draft-only")
    campaigns.send_campaign(store, "spring")
    assert invoke(["campaign", "archive", "spring"]).exit_code == 0
    listed = invoke(["campaign", "list"]).stdout
    assert "spring\t" not in listed and "draft-only" in listed
    assert "spring\t" in invoke(["campaign", "list", "--archived"]).stdout
    from newsletter_kit.overview import store_overview
    assert [c["name"] for c in store_overview(store)["campaigns"]] == ["draft-only"]
    with pytest.raises(CampaignError, match="archived"):
        campaigns.send_campaign(store, "spring")
    assert invoke(["campaign", "archive", "spring", "--undo"]).exit_code == 0
    refused = invoke(["campaign", "delete", "spring"])
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    sent_before = store.conn.execute("SELECT count(*) FROM deliveries WHERE state IN ('sent', 'failed')").fetchone()[0]
    assert invoke(["campaign", "delete", "spring", "--yes"]).exit_code == 0
    assert store.conn.execute("SELECT count(*) FROM deliveries WHERE state IN ('sent', 'failed')").fetchone()[0] \
        == sent_before == 2  # kept for the statistics
    assert "spring" not in invoke(["campaign", "list"]).stdout
    with pytest.raises(CampaignError, match="deleted"):
        campaigns.duplicate_campaign(store, "spring", "x")
    assert invoke(["campaign", "delete", "draft-only"]).exit_code == 0  # never sent: no --yes needed
    assert store.conn.execute("SELECT count(*) FROM campaigns WHERE name = 'draft-only'").fetchone()[0] == 0
