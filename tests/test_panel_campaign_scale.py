"""The campaign panel on a big store (issue 21): a searchable picker of the newest campaigns, a
preview contact typed or drawn at random (never a dropdown of the list), audience counts from SQL
and the whole frame only when asked for; every widget's state stays small."""

from __future__ import annotations

import json

import ipywidgets as widgets
import pytest

import newsletter_kit as nk
from newsletter_kit.panels.campaign import PICKER_SIZE, CampaignPanel


@pytest.fixture
def big_store(nk_db):
    store = nk.open_store(nk_db)
    nk.update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=500,
                            from_addr="news@example.org", timezone="UTC")
    nk.add_contacts(store, [{"email": f"p{i:04d}@example.org", "first_name": f"P{i}"} for i in range(3000)],
                    list_name="big")
    nk.add_unsubscribe(store, "p0001@example.org")
    nk.add_unsubscribe(store, "p0002@example.org", campaign="c-0000")
    with store.transaction():
        store.conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 299)"
            " INSERT INTO campaigns (name, list_name, subject, html, status, created_at, updated_at)"
            " SELECT printf('c-%04d', i), 'big', 'Hello {{ first_name }}', '<p>Dear {{ first_name }}</p>', 'draft',"
            " datetime('2025-01-01', printf('+%d hours', i)), '2025-01-01' FROM n")
    return store


def _states(panel: CampaignPanel) -> int:
    biggest = 0
    for child in _walk(panel.widget):
        biggest = max(biggest, len(json.dumps(child.get_state(), default=str)))
    return biggest


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_picker_lists_the_newest_and_finds_the_rest(big_store):
    panel = CampaignPanel(big_store)
    names = [o for o in panel.campaign.options if o != "(new campaign…)"]
    assert names == [f"c-{i:04d}" for i in range(299, 299 - PICKER_SIZE, -1)]
    assert panel.campaign.value == "c-0299"
    panel.campaign_search.value = "c-000"
    found = [o for o in panel.campaign.options if o != "(new campaign…)"]
    # The matches, newest first, and the campaign still selected.
    assert found == [f"c-{i:04d}" for i in range(9, -1, -1)] + ["c-0299"]
    panel.campaign.value = "c-0000"
    assert panel.campaign_name == "c-0000"
    # An old campaign asked for by name is selected though the picker shows the newest only.
    assert CampaignPanel(big_store, campaign="c-0003").campaign.value == "c-0003"


def test_counts_from_sql_preview_typed_or_random_and_the_frame_on_request(big_store):
    panel = CampaignPanel(big_store, campaign="c-0000")
    assert panel.counts == {"contacts": 3000, "eligible": 2998, "excluded": 2,
                            "reasons": {"unsubscribed from all campaigns": 1, "unsubscribed from this campaign": 1}}
    assert sorted(panel.excluded["email"]) == ["p0001@example.org", "p0002@example.org"]
    assert "2998</b> eligible" in panel.audience_summary.value and "pending 2998" in panel.audience_summary.value
    assert panel._audience is None  # the whole list is not read until asked for
    assert panel.preview_contact.value == "p0000@example.org" and "Dear P0" in panel.preview.value
    panel.preview_contact.value = "p2500@example.org"
    assert panel.preview_message["subject"] == "Hello P2500"
    panel.preview_contact.value = "stranger@example.org"
    assert "is not a contact" in panel.message.value
    drawn = {panel.random_contact() for _ in range(5)}
    assert drawn and all(e.startswith("p") and e not in ("p0001@example.org", "p0002@example.org") for e in drawn)
    assert _states(panel) < 100 * 1024
    panel.show_all.value = True
    assert len(panel.audience) == 3000 and "… and 2800 more" in panel.audience_table.value
    assert _states(panel) < 100 * 1024
