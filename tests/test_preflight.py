"""The deliverability pre-flight (`check`, nk.preflight) against a real DNS server on loopback.

Every name (the SMTP server's too) resolves through the dnslib server of tests/dnsserver.py;
nothing asks the machine's resolver. Zones under .example:

- good.example        passes everything (bounce address under mail.good.example: relaxed
                      alignment; SPF by an a: mechanism; RSA-2048 DKIM key, split TXT strings)
- nodmarc.example     the same without a DMARC record
- nospf.example       SPF that does not include the server (DKIM still aligns DMARC)
- unaligned.example   From here, bounces and DKIM at esp-bounces.example: not aligned
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519

import newsletter_kit as nk
from newsletter_kit import settings as settings_mod
from newsletter_kit.cli import cli
from newsletter_kit.signing import load_key
from tests.dnsserver import DnsServer

SERVER_IP = "127.0.0.1"


@pytest.fixture(scope="module")
def keys(dkim_keys: dict[str, Path]) -> dict[str, Path]:
    return dkim_keys


def _domain(name: str, key: Path, *, spf: str | None = None, dmarc: str | None = "v=DMARC1; p=reject; rua=mailto:d@{d}") -> dict:
    """A sender domain: From news@NAME, bounces@mail.NAME, SMTP server smtp.NAME, DKIM sel."""
    return {
        f"smtp.{name}": [("A", SERVER_IP)],
        f"mail.{name}": [("TXT", spf or f"v=spf1 a:smtp.{name} -all"), ("MX", f"10 mx.{name}"),
                         ("TXT", "google-site-verification=unrelated")],
        f"mx.{name}": [("A", SERVER_IP)],
        f"sel._domainkey.{name}": [("TXT", load_key(key).dns_record())],
        name: [("A", SERVER_IP)],
        **({f"_dmarc.{name}": [("TXT", dmarc.format(d=name))]} if dmarc else {}),
    }


@pytest.fixture(scope="module")
def dns(keys: dict[str, Path]):
    zone = {
        **_domain("good.example", keys["rsa"]),
        **_domain("nodmarc.example", keys["rsa"], dmarc=None),
        **_domain("nospf.example", keys["rsa"], spf="v=spf1 ip4:192.0.2.10 mx:elsewhere.example -all"),
        **_domain("unaligned.example", keys["rsa"], dmarc="v=DMARC1; p=quarantine"),
        "esp-bounces.example": [("TXT", "v=spf1 ip4:127.0.0.0/8 ~all"), ("MX", "5 mx.esp-bounces.example")],
        "mx.esp-bounces.example": [("AAAA", "::1")],
        "sel._domainkey.esp-bounces.example": [("TXT", load_key(keys["rsa"]).dns_record())],
    }
    with DnsServer(zone) as server:
        yield server


def configure(store: nk.Store, domain: str, key: Path | None = None, *, bounce: str | None = None,
              **smtp: object) -> None:
    """SMTP settings for From news@DOMAIN via smtp.DOMAIN, bounces at bounces@mail.DOMAIN."""
    fields: dict[str, object] = dict(
        host=f"smtp.{domain}", port=2525, tls="none", daily_limit=400,
        from_addr=f"news@{domain}", unsubscribe_url=f"https://{domain}/u/{{token}}", timezone="UTC")
    if key is not None:
        fields.update(dkim_selector="sel", dkim_key_file=str(key))
    fields.update(smtp)
    nk.update_smtp_settings(store, **fields)
    nk.update_bounce_settings(store, host="127.0.0.1", port=1143, user=bounce or f"bounces@mail.{domain}",
                              password_ref="env:NK_TEST_PW", tls="none", allow_plain_auth=True,
                              threshold=3)


def statuses(findings: list[nk.Finding]) -> dict[str, str]:
    return {f.check: f.status for f in findings}


def detail(findings: list[nk.Finding], check: str) -> str:
    return next(f.detail for f in findings if f.check == check)


ALL_PASS = {c: "pass" for c in ("spf", "dkim", "dmarc", "alignment", "mx", "unsubscribe", "volume")}


# --- the four domains -------------------------------------------------------------------------


def test_a_domain_that_passes_everything(dns, keys):
    store = nk.open_store(":memory:")
    configure(store, "good.example", keys["rsa"])
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings) == ALL_PASS, [f.detail for f in findings]
    assert list(statuses(findings)) == list(ALL_PASS)  # the documented order
    assert "127.0.0.1" in detail(findings, "spf") and "smtp.good.example" in detail(findings, "spf")
    assert "mail.good.example" in detail(findings, "alignment")  # relaxed: mail.good.example ~ good.example
    assert "policy reject" in detail(findings, "dmarc")
    # The SMTP server name was resolved by the loopback server, not the machine's resolver.
    assert ("smtp.good.example", "A") in dns.queries


def test_a_domain_without_dmarc_fails_only_dmarc(dns, keys):
    store = nk.open_store(":memory:")
    configure(store, "nodmarc.example", keys["rsa"])
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings) == {**ALL_PASS, "dmarc": "fail"}
    assert "_dmarc.nodmarc.example" in detail(findings, "dmarc")
    assert "v=DMARC1; p=none" in detail(findings, "dmarc")


def test_spf_that_does_not_include_the_server_fails_spf_and_dkim_still_aligns(dns, keys):
    store = nk.open_store(":memory:")
    configure(store, "nospf.example", keys["rsa"])
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings) == {**ALL_PASS, "spf": "fail"}
    assert "does not authorise 127.0.0.1" in detail(findings, "spf")
    assert "ip4:127.0.0.1" in detail(findings, "spf")
    assert "DKIM domain nospf.example" in detail(findings, "alignment")

    # Without DKIM here, nothing aligned passes: alignment fails too.
    configure(store, "nospf.example", dkim_selector="")
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert (statuses(findings)["alignment"], statuses(findings)["dkim"]) == ("fail", "warn")
    assert "does not pass" in detail(findings, "alignment")


def test_a_bounce_domain_not_aligned_with_from_fails_alignment(dns, keys):
    store = nk.open_store(":memory:")
    configure(store, "unaligned.example", keys["rsa"], bounce="bounces@esp-bounces.example",
              dkim_domain="esp-bounces.example")
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings) == {**ALL_PASS, "alignment": "fail"}, [f.detail for f in findings]
    text = detail(findings, "alignment")
    assert "esp-bounces.example" in text and "--dkim-domain unaligned.example" in text
    assert "policy quarantine" in detail(findings, "dmarc")
    assert "mx.esp-bounces.example" in detail(findings, "mx")  # MX host with only an AAAA

    # Signing for the From domain instead fixes it (the key is published there too).
    configure(store, "unaligned.example", bounce="bounces@esp-bounces.example", dkim_domain="")
    assert statuses(nk.preflight(store, nameserver=dns.nameserver))["alignment"] == "pass"


# --- DKIM ------------------------------------------------------------------------------------


def test_a_wrong_or_missing_dkim_key_fails_the_dkim_check(dns, keys):
    store = nk.open_store(":memory:")
    configure(store, "good.example", keys["other"])
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["dkim"] == "fail"
    assert "is not the public half of" in detail(findings, "dkim")
    assert load_key(keys["other"]).dns_record() in detail(findings, "dkim")
    assert statuses(findings)["alignment"] == "pass"  # SPF still aligns

    configure(store, "good.example", keys["rsa"], dkim_selector="missing")
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["dkim"] == "fail"
    assert "no DKIM key is published at missing._domainkey.good.example" in detail(findings, "dkim")


def test_a_key_file_gone_since_it_was_saved_fails_the_dkim_check(dns, keys, tmp_path):
    store = nk.open_store(":memory:")
    moved = tmp_path / "moved.pem"
    moved.write_bytes(keys["rsa"].read_bytes())
    configure(store, "good.example", moved)
    moved.unlink()
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings) == {**ALL_PASS, "dkim": "fail"}
    assert "cannot be read" in detail(findings, "dkim") and "--dkim-key-file" in detail(findings, "dkim")


def test_a_revoked_key_and_ed25519_and_short_rsa_keys(dns, keys):
    store = nk.open_store(":memory:")
    dns.set("rev._domainkey.good.example", [("TXT", "v=DKIM1; k=rsa; p=")])
    dns.set("ed._domainkey.good.example", [("TXT", load_key(keys["ed25519"]).dns_record())])
    dns.set("short._domainkey.good.example", [("TXT", load_key(keys["rsa1024"]).dns_record())])
    configure(store, "good.example", keys["rsa"], dkim_selector="rev")
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["dkim"] == "fail" and "revoked" in detail(findings, "dkim")

    configure(store, "good.example", keys["ed25519"], dkim_selector="ed")
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["dkim"] == "warn" and "Ed25519" in detail(findings, "dkim")
    assert statuses(findings)["alignment"] == "pass"

    configure(store, "good.example", keys["rsa1024"], dkim_selector="short")
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["dkim"] == "warn" and "1024 bits" in detail(findings, "dkim")


def test_without_dkim_settings_the_relay_must_sign(dns):
    store = nk.open_store(":memory:")
    configure(store, "good.example")
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings) == {**ALL_PASS, "dkim": "warn"}
    assert "d=good.example" in detail(findings, "dkim")
    assert "relay" in detail(findings, "unsubscribe")


# --- DMARC and alignment variants ----------------------------------------------------------


def test_dmarc_of_the_organisational_domain_and_strict_alignment(dns, keys):
    store = nk.open_store(":memory:")
    dns.set("_dmarc.strict.example", [("TXT", "v=DMARC1; p=none; sp=quarantine; aspf=s; adkim=s")])
    dns.set("letters.strict.example", [("TXT", "v=spf1 ip4:127.0.0.1 -all"), ("MX", "10 mx.good.example")])
    dns.set("mail.strict.example", [("TXT", "v=spf1 ip4:127.0.0.1 -all"), ("MX", "10 mx.good.example")])
    dns.set("smtp.letters.strict.example", [("A", SERVER_IP)])
    # From a subdomain: the DMARC record of strict.example applies, with its sp= policy.
    configure(store, "letters.strict.example", bounce="bounces@mail.strict.example")
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert (statuses(findings)["dmarc"], statuses(findings)["spf"]) == ("pass", "pass")
    assert "_dmarc.strict.example publishes policy quarantine" in detail(findings, "dmarc")
    # aspf=s: mail.strict.example is not letters.strict.example, so relaxed would pass, strict fails.
    assert statuses(findings)["alignment"] == "fail"
    # A bounce address exactly at the From domain aligns strictly.
    configure(store, "letters.strict.example", bounce="bounces@letters.strict.example")
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["alignment"] == "pass", detail(findings, "alignment")
    assert "(strict)" in detail(findings, "alignment")


def test_two_dmarc_records_or_no_policy_fail(dns):
    store = nk.open_store(":memory:")
    dns.set("_dmarc.twice.example", [("TXT", "v=DMARC1; p=none"), ("TXT", "v=DMARC1; p=reject")])
    dns.set("_dmarc.nopolicy.example", [("TXT", "v=DMARC1; rua=mailto:x@nopolicy.example")])
    configure(store, "twice.example")
    assert "keep one" in detail(nk.preflight(store, nameserver=dns.nameserver), "dmarc")
    configure(store, "nopolicy.example")
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["dmarc"] == "fail" and "no valid policy" in detail(findings, "dmarc")


# --- SPF, MX, unsubscribe, volume variants -----------------------------------------------------


def test_spf_missing_duplicated_broken_or_unresolvable_server(dns):
    store = nk.open_store(":memory:")
    dns.set("mail.spf.example", [("MX", "10 mx.good.example")])
    dns.set("smtp.spf.example", [("A", "192.0.2.44"), ("AAAA", "2001:db8::44")])
    configure(store, "spf.example")
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["spf"] == "fail"
    assert "has no SPF record" in detail(findings, "spf")
    assert "ip4:192.0.2.44 ip6:2001:db8::44" in detail(findings, "spf")

    dns.set("mail.spf.example", [("TXT", "v=spf1 -all"), ("TXT", "v=spf1 +all")])
    assert "2 SPF records" in detail(nk.preflight(store, nameserver=dns.nameserver), "spf")

    dns.set("mail.spf.example", [("TXT", "v=spf1 include:nowhere.example -all")])
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["spf"] == "fail" and "broken" in detail(findings, "spf")

    dns.set("mail.spf.example", [("TXT", "v=spf1 ip4:192.0.2.44 ip6:2001:db8::/64 -all")])
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["spf"] == "pass", detail(findings, "spf")
    assert "192.0.2.44, 2001:db8::44" in detail(findings, "spf")

    configure(store, "spf.example", host="unknown-host.spf.example")
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["spf"] == "fail" and "does not resolve" in detail(findings, "spf")


def test_mx_null_fallback_and_nothing(dns):
    store = nk.open_store(":memory:")
    dns.set("smtp.mx.example", [("A", SERVER_IP)])
    dns.set("mail.mx.example", [("TXT", "v=spf1 a:smtp.mx.example -all"), ("MX", "0 .")])
    configure(store, "mx.example")
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["mx"] == "fail" and "null MX" in detail(findings, "mx")

    dns.set("mail.mx.example", [("TXT", "v=spf1 a:smtp.mx.example -all"), ("A", SERVER_IP)])
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["mx"] == "pass" and "no MX record" in detail(findings, "mx")

    dns.set("mail.mx.example", [("TXT", "v=spf1 a:smtp.mx.example -all")])
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["mx"] == "fail" and "neither an MX" in detail(findings, "mx")

    dns.set("mail.mx.example", [("TXT", "v=spf1 a:smtp.mx.example -all"), ("MX", "10 gone.mx.example")])
    findings = nk.preflight(store, nameserver=dns.nameserver)
    assert statuses(findings)["mx"] == "fail" and "do not resolve" in detail(findings, "mx")


@pytest.mark.parametrize("limit, host, url, expected", [
    (400, "smtp.good.example", None, {"unsubscribe": "warn", "volume": "pass"}),
    (5000, "smtp.good.example", None, {"unsubscribe": "fail", "volume": "warn"}),
    (4999, "smtp.good.example", "https://good.example/u/{token}", {"unsubscribe": "pass", "volume": "pass"}),
    (501, "smtp.gmail.com", "https://good.example/u/{token}", {"unsubscribe": "pass", "volume": "warn"}),
    (500, "smtp.gmail.com", "https://good.example/u/{token}", {"unsubscribe": "pass", "volume": "pass"}),
])
def test_unsubscribe_and_volume(dns, limit, host, url, expected):
    store = nk.open_store(":memory:")
    configure(store, "good.example", daily_limit=limit, host=host, unsubscribe_url=url or "")
    found = statuses(nk.preflight(store, nameserver=dns.nameserver))
    assert {k: found[k] for k in expected} == expected


# --- the DNS server itself, the CLI, errors ----------------------------------------------------


def test_a_silent_nameserver_is_one_clear_error(dns):
    store = nk.open_store(":memory:")
    configure(store, "good.example")
    with DnsServer({}) as silent:
        port = silent.port
    with pytest.raises(nk.ConnectionFailed, match=f"127.0.0.1:{port} did not answer"):
        nk.preflight(store, nameserver=f"127.0.0.1:{port}", timeout=0.5)
    with pytest.raises(nk.ValidationError, match="must be an IP address"):
        nk.preflight(store, nameserver="dns.good.example")


def test_check_command_json_and_exit_codes(dns, keys, tmp_path):
    db = str(tmp_path / "nk.db")
    store = nk.open_store(db)
    configure(store, "good.example", keys["rsa"])
    store.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", db, "check", "--json", "--nameserver", dns.nameserver])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [set(f) for f in data] == [{"check", "status", "detail"}] * 7
    assert {f["check"]: f["status"] for f in data} == ALL_PASS

    result = runner.invoke(cli, ["--db", db, "settings", "smtp", "--from", "news@nodmarc.example",
                                 "--dkim-domain", "good.example"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["--db", db, "check", "--nameserver", dns.nameserver])
    assert result.exit_code == 1
    assert any(line.startswith("FAIL dmarc") for line in result.stdout.splitlines())

    result = runner.invoke(cli, ["--db", db, "check", "--nameserver", "nowhere:99999"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and "must be an IP address" in result.stderr


def test_the_check_command_has_help_and_its_libraries_load_only_when_it_runs():
    import subprocess
    import sys

    code = ("import sys, newsletter_kit, newsletter_kit.cli, newsletter_kit.deliverability; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'dns', 'spf', 'dkim', 'publicsuffixlist', 'nacl'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "--nameserver" in CliRunner().invoke(cli, ["check", "--help"]).output


# --- DKIM settings ------------------------------------------------------------------------------


def test_dkim_settings_store_the_path_never_the_key(keys, tmp_path):
    db = tmp_path / "nk.db"
    store = nk.open_store(db)
    configure(store, "good.example", keys["rsa"])
    smtp = nk.load_smtp_settings(store)
    assert (smtp.dkim_selector, smtp.dkim_key_file, smtp.signing_domain) == \
        ("sel", str(keys["rsa"].resolve()), "good.example")
    secret = load_key(keys["rsa"])
    material = [line for line in keys["rsa"].read_text().splitlines() if "-----" not in line]
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("nk.db"))
    assert not any(line.encode() in raw for line in material)
    assert "PRIVATE" not in repr(smtp) and secret.public_b64 not in repr(secret)
    assert repr(secret) == "DkimKey(rsa, 2048 bits)"
    # --dkim-domain overrides the From domain; an empty selector switches signing off.
    store = nk.open_store(db)
    smtp, _ = nk.update_smtp_settings(store, dkim_domain="Mail.Good.Example")
    assert smtp.signing_domain == "mail.good.example"
    smtp, _ = nk.update_smtp_settings(store, dkim_selector="")
    assert (smtp.dkim_selector, smtp.dkim_key_file, smtp.dkim_domain, smtp.signing_domain) == (None,) * 4


@pytest.mark.parametrize("changes, message", [
    ({"dkim_selector": "sel"}, "--dkim-key-file is missing"),
    ({"dkim_key_file": "KEY"}, "--dkim-selector is missing"),
    ({"dkim_selector": "bad selector", "dkim_key_file": "KEY"}, "not a valid DKIM selector"),
    ({"dkim_selector": "sel", "dkim_key_file": "/nonexistent/key.pem"}, "cannot be read"),
    ({"dkim_selector": "sel", "dkim_key_file": "NOTAKEY"}, "is not a PEM private key"),
    ({"dkim_selector": "sel", "dkim_key_file": "ENCRYPTED"}, "is encrypted"),
    ({"dkim_selector": "sel", "dkim_key_file": "EC"}, "use an RSA"),
    ({"dkim_selector": "sel", "dkim_key_file": "KEY", "dkim_domain": "not a domain"}, "not a valid server name"),
])
def test_bad_dkim_settings_are_one_line_and_save_nothing(keys, tmp_path, changes, message):
    from cryptography.hazmat.primitives.asymmetric import ec

    files = {
        "KEY": str(keys["rsa"]),
        "NOTAKEY": str(tmp_path / "cert.pem"),
        "ENCRYPTED": str(tmp_path / "enc.pem"),
        "EC": str(tmp_path / "ec.pem"),
    }
    (tmp_path / "ec.pem").write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (tmp_path / "enc.pem").write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(b"pw")))
    changes = {k: files.get(v, v) for k, v in changes.items()}
    store = nk.open_store(":memory:")
    with pytest.raises(nk.ValidationError, match=message) as info:
        nk.update_smtp_settings(store, host="smtp.good.example", port=587, daily_limit=10,
                                from_addr="news@good.example", **changes)
    assert "\n" not in str(info.value)
    assert settings_mod.load_smtp_settings(store) is None


# --- the settings panel's section ----------------------------------------------------------------


def test_settings_panel_check_button_shows_the_findings(dns, keys, tmp_path):
    import html

    from newsletter_kit.panels import SettingsPanel

    store = nk.open_store(tmp_path / "nk.db")
    configure(store, "nodmarc.example", keys["rsa"])
    panel = SettingsPanel(store)
    panel.check_nameserver.value = dns.nameserver
    panel.check_button.click()
    shown = html.unescape(panel.check_results.value)
    assert shown.count("<li") == 7 and "_dmarc.nodmarc.example" in shown
    assert "dmarc failed" in html.unescape(panel.message.value)

    configure(store, "good.example", keys["rsa"])
    findings = panel.check()
    assert statuses(findings) == ALL_PASS
    assert "Nothing fails" in html.unescape(panel.message.value)

    panel.check_nameserver.value = "not-an-ip"
    panel.check_button.click()
    assert "must be an IP address" in html.unescape(panel.message.value)
    assert panel.check_results.value == ""


def test_check_of_a_campaign_reads_the_campaigns_from_not_the_settings(dns, keys, tmp_path):
    """Issue 19: a campaign sending as news@nodmarc.example is checked for that domain."""
    db = tmp_path / "nk.db"
    store = nk.open_store(db)
    configure(store, "good.example", keys["rsa"])
    nk.add_contacts(store, [{"email": "ann@example.org"}])
    nk.create_campaign(store, "other", "all", "Hi", "<p>Hi</p>", from_addr="News <news@nodmarc.example>")
    nk.create_campaign(store, "plain", "all", "Hi", "<p>Hi</p>")
    assert statuses(nk.preflight(store, nameserver=dns.nameserver, campaign="other"))["dmarc"] == "fail"
    assert statuses(nk.preflight(store, nameserver=dns.nameserver, campaign="plain"))["dmarc"] == "pass"
    result = CliRunner().invoke(cli, ["--db", str(db), "check", "--campaign", "other", "--json",
                                      "--nameserver", dns.nameserver])
    assert result.exit_code == 1 and "_dmarc.nodmarc.example" in result.stdout
