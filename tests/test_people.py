"""People and their rights (issue 19): lists with their sizes, removing a contact, withdrawing
an opt-out (audit trail), and the right to erasure down to the bytes of the store file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from newsletter_kit import campaigns
from newsletter_kit.audience import add_unsubscribe, import_contacts, list_contacts
from newsletter_kit.erasure import is_erased
from newsletter_kit.errors import ImportFailed
from newsletter_kit.review import bounces_by_day
from newsletter_kit.store import open_store
from newsletter_kit.suppressions import suppress
from tests.sending import configure, contacts, invoke, make_campaign

PERSON = "fail550.Erin.Quist@Example.org"  # refused at RCPT: its address is quoted in the reply


@pytest.fixture
def store(nk_db):
    store = open_store(nk_db)
    yield store
    store.close()


def _files(db: Path) -> dict[str, bytes]:
    """The store file and every file SQLite keeps beside it (-wal, -shm, the send log)."""
    return {p.name: p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name)}


def test_erase_leaves_no_byte_of_the_address_in_the_store_files_and_keeps_the_counts(store, smtp_server, nk_db):
    srv = smtp_server(tls="none")
    configure(store, srv, limit=50)
    contacts(store, ["ann@example.org", PERSON.lower(), "bob@example.org"])
    make_campaign(store)
    campaigns.send_campaign(store, "spring")
    add_unsubscribe(store, PERSON, campaign="autumn")
    suppress(store, PERSON)
    sent_before = dict(store.conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall())
    by_day_before = bounces_by_day(store).to_dict("records")
    needle = PERSON.lower().encode()
    assert any(needle in data.lower() for data in _files(nk_db).values())

    refused = invoke(["contacts", "erase", PERSON])
    assert refused.exit_code == 1 and "--yes" in refused.stderr and not is_erased(store, PERSON)
    result = invoke(["contacts", "erase", PERSON, "--yes", "--json"])
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    assert done["contacts"] == 1 and done["deliveries"] == 1 and done["unsubscribes"] == 1

    for name, data in _files(nk_db).items():
        assert needle not in data.lower(), f"the address is still in {name}"
        assert b"erin.quist" not in data.lower(), f"its local part is still in {name}"
    # The statistics keep their counts: same states, same bounces per day.
    assert dict(store.conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall()) == sent_before
    assert bounces_by_day(store).to_dict("records") == by_day_before
    assert list(list_contacts(store)["email"]) == ["ann@example.org", "bob@example.org"]

    # A later import cannot bring it back; the others import as usual.
    csv = nk_db.parent / "again.csv"
    csv.write_text(f"email\n{PERSON}\n", encoding="utf-8")
    with pytest.raises(ImportFailed, match="erased"):
        import_contacts(store, csv)
    csv.write_text(f"email\n{PERSON.upper()}\ncy@example.org\n", encoding="utf-8")
    report = import_contacts(store, csv)
    assert (report.imported, report.erased) == (1, 1)
    assert add_unsubscribe(store, PERSON) is False
    assert PERSON.lower() not in set(list_contacts(store)["email"])


def test_lists_remove_and_opt_outs_withdrawn_on_the_command_line(store):
    contacts(store, ["ann@example.org", "bob@example.org"], list_name="news")
    contacts(store, ["ann@example.org"], list_name="vip")
    result = invoke(["contacts", "lists", "--json"])
    assert json.loads(result.stdout) == [{"list": "all", "contacts": 2}, {"list": "news", "contacts": 2},
                                         {"list": "vip", "contacts": 1}]
    assert invoke(["contacts", "remove", "ann@example.org", "--list", "vip"]).exit_code == 1  # no --yes
    assert invoke(["contacts", "remove", "ann@example.org", "--list", "vip", "--yes"]).exit_code == 0
    assert "vip\t0" in invoke(["contacts", "lists"]).stdout
    missing = invoke(["contacts", "remove", "zed@example.org", "--yes"])
    assert missing.exit_code == 1 and "not a contact" in missing.stderr
    assert invoke(["contacts", "remove", "bob@example.org", "--yes"]).exit_code == 0
    assert "news\t1" in invoke(["contacts", "lists"]).stdout

    add_unsubscribe(store, "ann@example.org")
    add_unsubscribe(store, "ann@example.org", campaign="spring")
    listed = json.loads(invoke(["unsubscribes", "list", "--json"]).stdout)
    assert {(u["address"], u["campaign"]) for u in listed} == {("ann@example.org", None),
                                                               ("ann@example.org", "spring")}
    assert invoke(["unsubscribes", "remove", "ann@example.org"]).exit_code == 1  # no --yes
    ok = invoke(["unsubscribes", "remove", "ann@example.org", "--by", "ticket 42", "--yes"])
    assert ok.exit_code == 0, ok.output
    assert [u["campaign"] for u in json.loads(invoke(["unsubscribes", "list", "--json"]).stdout)] == ["spring"]
    [(action, detail)] = store.conn.execute("SELECT action, detail FROM unsubscribe_events").fetchall()
    assert action == "withdrawn" and json.loads(detail)["by"] == "ticket 42"
    none_left = invoke(["unsubscribes", "remove", "ann@example.org", "--yes"])
    assert none_left.exit_code == 1 and "has no opt-out from everything" in none_left.stderr


def test_an_erase_while_another_process_reads_says_so_and_a_rerun_compacts(store, nk_db, monkeypatch):
    import sqlite3

    monkeypatch.setenv("NEWSLETTER_KIT_BUSY_TIMEOUT", "1")

    contacts(store, ["ann@example.org", "zoe.reader@example.org"])
    reader = sqlite3.connect(nk_db)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM contacts").fetchone()  # holds a read snapshot
    result = invoke(["contacts", "erase", "zoe.reader@example.org", "--yes"])
    assert result.exit_code == 75 and "run the same erase again" in result.stderr
    assert is_erased(store, "zoe.reader@example.org")  # the data is gone already
    reader.close()
    assert invoke(["contacts", "erase", "zoe.reader@example.org", "--yes"]).exit_code == 0
    assert all(b"zoe.reader" not in data for data in _files(nk_db).values())
