"""The sidebar's poll (issue 21): counts from SQL that agree with campaign_status, a bounded answer
(the campaigns a run moves, the most recent few, counts by status), pages for the rest, and an
error in place of figures when a setting cannot be read."""

from __future__ import annotations

import pytest

import newsletter_kit as nk
from newsletter_kit import campaigns
from newsletter_kit.overview import campaign_page, overview_of_path, store_overview
from newsletter_kit.store import open_store
from newsletter_kit.suppressions import suppress
from tests.sending import addresses, configure, contacts, make_campaign


@pytest.mark.parametrize("exclusion", ["campaign", "global"])
def test_sql_counts_agree_with_campaign_status_in_every_state(smtp_server, nk_db, exclusion):
    srv = smtp_server(tls="none")
    store = open_store(nk_db)
    configure(store, srv, exclusion=exclusion)
    contacts(store, addresses(30))
    contacts(store, addresses(5, prefix="vip"), list_name="vip")
    make_campaign(store, "half")
    assert campaigns.send_campaign(store, "half", limit=10).sent == 10
    make_campaign(store, "draft")
    make_campaign(store, "draft-vip", list_name="vip")
    make_campaign(store, "done")
    campaigns.send_campaign(store, "done")
    # After the runs: opt-outs (this campaign, another one, everything), suppressions, a member
    # who left the list, addresses with a ledger row still to send that are now excluded.
    nk.add_unsubscribe(store, "reader012@example.org", campaign="half")
    nk.add_unsubscribe(store, "reader013@example.org", campaign="elsewhere")
    nk.add_unsubscribe(store, "reader014@example.org")
    nk.add_unsubscribe(store, "vip001@example.org", campaign="other")
    suppress(store, "reader001@example.org")  # already sent: stays sent
    suppress(store, "reader020@example.org")
    suppress(store, "nobody@example.org")  # not a contact at all
    with store.transaction():
        store.conn.execute("DELETE FROM list_members WHERE contact_id = "
                           "(SELECT id FROM contacts WHERE email = 'reader025@example.org')"
                           " AND list_id = (SELECT id FROM lists WHERE name = 'news')")
        store.conn.execute("UPDATE deliveries SET state = 'pending', sent_at = NULL WHERE email IN "
                           "('reader002@example.org', 'reader003@example.org') AND campaign_id = "
                           "(SELECT id FROM campaigns WHERE name = 'half')")
        store.conn.execute("INSERT INTO unsubscribes (email, campaign, source, created_at) VALUES "
                           "('reader003@example.org', NULL, 'csv', '2026-01-01T00:00:00+00:00')")
    answer = store_overview(store)
    got = {c["name"]: {k: c[k] for k in ("total", "sent", "failed", "excluded", "pending", "unknown")}
           for c in answer["campaigns"]}
    assert got == {name: campaigns.campaign_status(store, name) for name in ("half", "draft", "draft-vip", "done")}
    by_status = answer["campaign_counts"]
    assert by_status["total"] == 4 == sum(v for k, v in by_status.items() if k != "total")
    assert (by_status["draft"], by_status["done"]) == (2, 1)


def test_the_answer_holds_active_and_recent_campaigns_and_pages_the_rest(nk_db):
    store = open_store(nk_db)
    nk.add_contacts(store, [{"email": f"r{i}@example.org"} for i in range(20)])
    for i in range(30):
        nk.create_campaign(store, f"c{i:02d}", "all", "Hi", "<p>Hi</p>")
    with store.transaction():
        store.conn.execute("UPDATE campaigns SET created_at = printf('2026-01-%02dT00:00:00+00:00', id)")
        store.conn.execute("UPDATE campaigns SET status = 'paused' WHERE name = 'c02'")
    answer = store_overview(store, recent=5)
    assert [c["name"] for c in answer["campaigns"]] == ["c29", "c28", "c27", "c26", "c25", "c02"]
    assert answer["campaign_counts"] == {"total": 30, "draft": 29, "paused": 1}
    page = campaign_page(store, status="draft", limit=10, offset=25)
    assert page["total"] == 29 and [c["name"] for c in page["campaigns"]] == ["c04", "c03", "c01", "c00"]
    assert page["campaigns"][0]["pending"] == 20
    assert campaign_page(store, limit=10_000)["limit"] == 200  # a page is bounded


def test_a_setting_that_cannot_be_parsed_is_an_error_not_stale_figures(nk_db):
    store = open_store(nk_db)
    nk.add_contacts(store, [{"email": "r@example.org"}])
    nk.create_campaign(store, "c", "all", "Hi", "<p>Hi</p>")
    nk.update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=10,
                            from_addr="news@example.org", timezone="UTC")
    assert overview_of_path(nk_db)["error"] is None
    with store.transaction():
        store.conn.execute("UPDATE settings SET data = '{not json' WHERE section = 'smtp'")
    answer = overview_of_path(nk_db)
    assert "smtp settings saved in the store cannot be read" in answer["error"]
    assert answer["campaigns"] == [] and answer["quota"] is None
    with pytest.raises(nk.ConfigError, match="settings smtp"):
        nk.load_smtp_settings(store)
    # Saving them again with every required flag repairs them.
    nk.update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=10,
                            from_addr="news@example.org", timezone="UTC")
    assert overview_of_path(nk_db)["error"] is None
