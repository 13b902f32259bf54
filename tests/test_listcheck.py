"""The list check before a send (issue 18): syntax, the domain's MX (or A) on a real DNS server
on loopback (one lookup per domain), role addresses, disposable domains (the maintained list),
typos of big providers; `campaign send --skip-risky` leaves the flagged ones out and says how many.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from newsletter_kit import campaigns
from newsletter_kit.audience import add_contacts
from newsletter_kit.cli import cli
from newsletter_kit.listcheck import check_contacts, local_risks, typo_of
from newsletter_kit.store import open_store
from tests import sending
from tests.dnsserver import DnsServer

ZONE = {
    "shop.example": [("MX", "10 mx.shop.example")],
    "mx.shop.example": [("A", "192.0.2.10")],
    "a-only.example": [("A", "192.0.2.11")],
    "nullmx.example": [("MX", "0 .")],
    "gmail.com": [("MX", "5 gmail-smtp-in.l.google.com")],
}
GOOD = [f"reader{i}@shop.example" for i in range(20)] + ["ann@a-only.example", "bob@gmail.com"]
BAD = {
    "info@shop.example": "role",
    "postmaster@shop.example": "role",
    "x@mailinator.com": "disposable",
    "carla@gmial.com": "typo",
    "dan@hotmial.com": "typo",
    "eve@nowhere.example": "no_mail_domain",
    "fred@nullmx.example": "no_mail_domain",
}


def test_typos_and_roles_without_dns() -> None:
    assert typo_of("yahooo.com") == "yahoo.com" and typo_of("outlok.com") == "outlook.com"
    assert typo_of("shop.example") is None and typo_of("gmx.de") is None
    assert [r for r, _ in local_risks("Webmaster@shop.example")] == ["role"]
    assert [r for r, _ in local_risks("not an address")] == ["syntax"]


def test_contacts_check_flags_each_risk_with_one_lookup_per_domain(tmp_path: Path) -> None:
    store = open_store(tmp_path / "nk.db")
    add_contacts(store, [{"email": e} for e in GOOD + list(BAD)], list_name="news")
    with DnsServer(ZONE) as dns:
        report = check_contacts(store, "news", nameserver=dns.nameserver)
        queries = Counter(dns.queries)
    flagged = {c.address: c.risks for c in report.flagged}
    assert set(flagged) == set(BAD)
    for address, risk in BAD.items():
        assert risk in flagged[address], (address, flagged[address])
    assert report.checked == len(GOOD) + len(BAD)
    assert queries[("shop.example", "MX")] == 1  # 22 addresses, one lookup


def test_send_with_skip_risky_leaves_the_flagged_out_and_says_how_many(smtp_server: Any, tmp_path: Path) -> None:
    srv = smtp_server()
    db = tmp_path / "nk.db"
    store = open_store(db)
    sending.configure(store, srv)
    emails = ["ann@shop.example", "info@shop.example", "x@mailinator.com", "carla@gmial.com"]
    sending.contacts(store, emails)
    sending.make_campaign(store)
    store.close()
    runner = CliRunner()
    with DnsServer(ZONE) as dns:
        result = runner.invoke(cli, ["--db", str(db), "contacts", "check", "--list", "news", "--nameserver",
                                     dns.nameserver, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["flagged"] == 3
    result = runner.invoke(cli, ["--db", str(db), "campaign", "send", "spring", "--skip-risky", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["skipped_risky"] == 3 and "3 address(es) flagged" in result.stderr
    assert sending.received(srv) == Counter({"ann@shop.example": 1})
    states = sending.ledger(open_store(db))
    assert states["info@shop.example"][0] == "excluded" and "list check" in states["info@shop.example"][4]
    # Without the flag, the next run sends them (nothing is lost).
    result = runner.invoke(cli, ["--db", str(db), "campaign", "send", "spring"])
    assert result.exit_code == 0 and sum(sending.received(srv).values()) == 4


def test_the_campaign_panel_checks_the_list_and_shows_the_flagged(tmp_path: Path, monkeypatch: Any) -> None:
    import dns.resolver

    from newsletter_kit.panels.campaign import CampaignPanel

    store = open_store(tmp_path / "nk.db")
    add_contacts(store, [{"email": e} for e in ["ann@shop.example", "x@mailinator.com", "sales@shop.example"]],
                 list_name="news")
    real_resolver = dns.resolver.Resolver
    with DnsServer(ZONE) as server:
        host, port = server.nameserver.split(":")

        def loopback(*_args: Any, **_kwargs: Any) -> Any:  # the panel asks the system resolver
            resolver = real_resolver(configure=False)
            resolver.nameservers, resolver.port = [host], int(port)
            return resolver

        monkeypatch.setattr(dns.resolver, "Resolver", loopback)
        panel = CampaignPanel(store)
        panel.list_name.value = "news"
        panel.check_button.click()
    report = panel.list_check
    assert {c.address for c in report.flagged} == {"x@mailinator.com", "sales@shop.example"}
    assert "2 flagged" in panel.check_summary.value and "mailinator.com" in panel.check_table.value
