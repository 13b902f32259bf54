"""Lists that page (issue 21): `campaign list`, `contacts list`, `suppressions list` show a screenful
by default with a line saying how many more, filter by --status and --since, and --json streams
one JSON list of every row (or --limit of them)."""

from __future__ import annotations

import json

import newsletter_kit as nk
from newsletter_kit.suppressions import suppress
from tests.sending import invoke


def _store(nk_db):
    store = nk.open_store(nk_db)
    nk.add_contacts(store, [{"email": f"p{i:03d}@example.org", "city": "Rome"} for i in range(60)], list_name="news")
    for i in range(40):
        nk.create_campaign(store, f"c{i:02d}", "news", "Hi", "<p>Hi</p>")
    with store.transaction():
        store.conn.execute("UPDATE campaigns SET created_at = printf('2026-01-01T00:%02d:00+00:00', id)")
        store.conn.execute("UPDATE campaigns SET status = 'done' WHERE id % 10 = 0")
    nk.add_unsubscribe(store, "p001@example.org")
    for i in range(30):
        suppress(store, f"p{i + 10:03d}@example.org")
    store.close()


def test_lists_show_a_screenful_and_say_how_many_more(nk_db):
    _store(nk_db)
    result = invoke(["campaign", "list"])
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 25 and lines[0].startswith("c39\tnews\tdone")
    assert "40 campaign(s); 15 more not shown" in result.stderr
    assert len(invoke(["campaign", "list", "--limit", "0"]).stdout.splitlines()) == 40
    done = invoke(["campaign", "list", "--status", "done"]).stdout.splitlines()
    assert [line.split("\t")[0] for line in done] == ["c39", "c29", "c19", "c09"]
    since = invoke(["campaign", "list", "--since", "2026-01-01T00:35"]).stdout.splitlines()
    assert [line.split("\t")[0] for line in since] == ["c39", "c38", "c37", "c36", "c35", "c34"]

    contacts = invoke(["contacts", "list", "--list", "news", "--limit", "5"])
    assert contacts.stdout.splitlines() == [f"p{i:03d}@example.org" for i in range(5)]
    assert "60 contacts in 'news'; 55 more not shown" in contacts.stderr
    active = invoke(["contacts", "list", "--list", "news", "--status", "active", "--json"])
    rows = json.loads(active.stdout)
    assert len(rows) == 29 and rows[0] == {"contact_id": 1, "email": "p000@example.org", "city": "Rome"}
    assert [r["email"] for r in json.loads(invoke(
        ["contacts", "list", "--list", "news", "--status", "unsubscribed", "--json"]).stdout)] == ["p001@example.org"]

    sup = invoke(["suppressions", "list"])
    assert len(sup.stdout.splitlines()) == 25 and "30 suppressed address(es); 5 more" in sup.stderr
    streamed = json.loads(invoke(["suppressions", "list", "--json"]).stdout)
    assert len(streamed) == 30 and set(streamed[0]) == {"address", "since", "bounces", "evidence", "reason"}
    assert json.loads(invoke(["suppressions", "list", "--json", "--limit", "3"]).stdout)[2]["address"] == "p012@example.org"
    assert json.loads(invoke(["suppressions", "list", "--json", "--status", "threshold"]).stdout) == []
    assert invoke(["suppressions", "list", "--limit", "-1"]).returncode == 2
