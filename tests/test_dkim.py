"""DKIM signing: campaigns sent to a real aiosmtpd server arrive signed, and dkimpy verifies the
signatures against the keys published in a real DNS server on loopback (tests/dnsserver.py)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import dkim
import pytest

import newsletter_kit as nk
from newsletter_kit import signing
from newsletter_kit.deliverability import Dns, make_resolver
from newsletter_kit.messages import CampaignRenderer
from tests.dnsserver import DnsServer

HTML = ('<p>Hello {{ first_name }}, spring news.</p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>')
REQUIRED = {"from", "to", "subject", "date", "message-id", "list-unsubscribe",
            "list-unsubscribe-post", "mime-version", "content-type"}


@pytest.fixture(scope="module")
def keys(dkim_keys: dict[str, Path]) -> dict[str, Path]:
    return dkim_keys


@pytest.fixture(scope="module")
def dns(keys):
    zone = {f"{name}._domainkey.shop.example": [("TXT", signing.load_key(path).dns_record())]
            for name, path in keys.items()}
    with DnsServer(zone) as server:
        yield server


def txt_lookup(server: DnsServer):
    """TXT records read from the loopback server, as a receiver's verifier reads them."""
    return Dns(make_resolver(server.nameserver)).txt


def tags(message: bytes) -> dict[str, str]:
    header = re.search(rb"^DKIM-Signature:(.*?)\r\n(?![ \t])", message, re.S | re.M)
    assert header, message[:300]
    value = re.sub(r"\s+", "", header.group(1).decode())
    return dict(part.split("=", 1) for part in value.split(";") if part)


# --- signing unit: keys, headers, identical bytes ------------------------------------------------


def test_openssl_rsa_signatures_are_the_bytes_dkimpy_computes_itself(keys):
    key = signing.load_key(keys["rsa"])
    h = dkim.HashThrough(hashlib.sha256())
    h.update(b"any canonicalised headers")
    parsed = dkim.parse_pem_private_key(key._private)
    fast = dkim.RSASSA_PKCS1_v1_5_sign(h, parsed)
    assert fast == bytes(dkim.RSASSA_PKCS1_v1_5_sign.pure_python(h, parsed))  # type: ignore[attr-defined]
    assert len(fast) == 256


@pytest.mark.parametrize("kind, algorithm", [("rsa", "rsa-sha256"), ("ed25519", "ed25519-sha256")])
def test_a_rendered_message_is_signed_over_the_required_headers(dns, keys, kind, algorithm):
    renderer = CampaignRenderer(campaign="spring", subject="Hi {{ first_name }}", html=HTML,
                                from_addr="news@shop.example", bounce_address="bounces@shop.example",
                                signing_key=b"k" * 32, unsubscribe_url="https://shop.example/u/{token}")
    raw = renderer.render("ann@example.org", {"first_name": "Ann"}, message_id=renderer.new_message_id())
    signer = signing.DkimSigner(signing.load_key(keys[kind]), kind, "shop.example")
    signed = signer.sign(raw)
    assert signed.endswith(raw)  # the rendered bytes, untouched, after the signature
    found = tags(signed)
    assert (found["a"], found["d"], found["s"], found["c"]) == (algorithm, "shop.example", kind, "relaxed/relaxed")
    signed_headers = found["h"].split(":")
    assert REQUIRED <= set(signed_headers) and signed_headers.count("from") == 2
    assert signing.verify(signed, txt_lookup(dns))
    # A changed one-click header, subject or body breaks it; so does a second From.
    for old, new in ((b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                      b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click"),
                     (b"Subject: Hi Ann", b"Subject: Hi Bob"), (b"Hello Ann", b"Hello Bob")):
        assert old in signed
        assert not signing.verify(signed.replace(old, new, 1), txt_lookup(dns))
    assert not signing.verify(signed.replace(b"\r\nTo:", b"\r\nFrom: evil@evil.example\r\nTo:", 1),
                              txt_lookup(dns))


def test_list_id_and_reply_to_are_signed_when_present(keys):
    raw = (b"From: news@shop.example\r\nTo: ann@example.org\r\nSubject: s\r\nList-Id: News <news.shop.example>\r\n"
           b"Reply-To: desk@shop.example\r\nList-Unsubscribe: <mailto:u@shop.example>\r\n\r\nbody\r\n")
    signer = signing.DkimSigner(signing.load_key(keys["ed25519"]), "ed25519", "shop.example")
    signed_headers = tags(signer.sign(raw))["h"].split(":")
    assert {"list-id", "reply-to", "list-unsubscribe"} <= set(signed_headers)
    assert "list-unsubscribe-post" not in signed_headers  # only headers the message has


def test_key_material_never_shows_in_reprs(keys):
    key = signing.load_key(keys["rsa"])
    signer = signing.DkimSigner(key, "rsa", "Shop.Example")
    body = keys["rsa"].read_text().splitlines()[1]
    assert body not in repr(key) + repr(signer)
    assert repr(signer) == "DkimSigner(rsa._domainkey.shop.example, DkimKey(rsa, 2048 bits))"


# --- end to end: campaigns sent to aiosmtpd arrive signed ---------------------------------------


def _campaign_store(nk_db: Path, srv, key_file: Path, selector: str, **smtp: object) -> nk.Store:
    store = nk.open_store(nk_db)
    nk.update_smtp_settings(store, host="127.0.0.1", port=srv.port, tls="none", daily_limit=100,
                            from_addr="news@shop.example", unsubscribe_url="https://shop.example/u/{token}",
                            dkim_selector=selector, dkim_key_file=str(key_file), timezone="UTC", **smtp)
    nk.add_contacts(store, [{"email": f"reader{i}@example.org", "first_name": f"R{i}"} for i in range(4)],
                    list_name="news")
    return store


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_every_message_sent_is_signed_once_and_verifies_against_the_published_key(
        nk_db, smtp_server, dns, keys, kind, monkeypatch):
    srv = smtp_server(tls="none")
    store = _campaign_store(nk_db, srv, keys[kind], kind)
    nk.create_campaign(store, "spring", "news", "Hi {{ first_name }}", HTML)
    renders = []
    original = CampaignRenderer.render

    def counting_render(self, *args, **kwargs):
        renders.append(args[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CampaignRenderer, "render", counting_render)
    report = nk.send_campaign(store, "spring")
    assert report.sent == 4
    assert sorted(renders) == [f"reader{i}@example.org" for i in range(4)]  # one build each
    lookup = txt_lookup(dns)
    for envelope in srv.messages:
        message = envelope.content
        assert message.startswith(b"DKIM-Signature:") and message.count(b"DKIM-Signature:") == 1
        found = tags(message)
        assert (found["d"], found["s"]) == ("shop.example", kind)
        assert REQUIRED <= set(found["h"].split(":"))
        assert dkim.verify(message, dnsfunc=lambda name, timeout=5: lookup(name.decode().rstrip("."))[0].encode())
        assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in message


def test_a_wrong_key_sends_signatures_that_fail_and_the_check_says_so(nk_db, smtp_server, dns, keys):
    srv = smtp_server(tls="none")
    store = _campaign_store(nk_db, srv, keys["other"], "rsa")  # rsa._domainkey publishes keys["rsa"]
    nk.create_campaign(store, "spring", "news", "Hi", HTML)
    assert nk.send_campaign(store, "spring").sent == 4
    assert not any(signing.verify(e.content, txt_lookup(dns)) for e in srv.messages)
    findings = {f.check: f for f in nk.preflight(store, nameserver=dns.nameserver)}
    assert findings["dkim"].status == "fail" and "not the public half" in findings["dkim"].detail


def test_a_campaign_from_another_domain_is_signed_for_that_domain(nk_db, smtp_server, dns, keys):
    srv = smtp_server(tls="none")
    dns.set("ed25519._domainkey.brand.example", [("TXT", signing.load_key(keys["ed25519"]).dns_record())])
    store = _campaign_store(nk_db, srv, keys["ed25519"], "ed25519")
    nk.create_campaign(store, "brand", "news", "Hi", HTML, from_addr="hello@brand.example")
    nk.send_campaign(store, "brand")
    assert {tags(e.content)["d"] for e in srv.messages} == {"brand.example"}
    assert all(signing.verify(e.content, txt_lookup(dns)) for e in srv.messages)
    # --dkim-domain wins over the campaign's From.
    nk.update_smtp_settings(store, dkim_domain="shop.example")
    nk.create_campaign(store, "brand2", "news", "Hi", HTML, from_addr="hello@brand.example")
    srv.handler.clear()
    nk.send_campaign(store, "brand2")
    assert {tags(e.content)["d"] for e in srv.messages} == {"shop.example"}


def test_a_key_file_gone_at_send_time_stops_the_run_before_anything_is_sent(nk_db, smtp_server, keys, tmp_path):
    srv = smtp_server(tls="none")
    key_file = tmp_path / "moved.pem"
    key_file.write_bytes(keys["rsa"].read_bytes())
    store = _campaign_store(nk_db, srv, key_file, "rsa")
    nk.create_campaign(store, "spring", "news", "Hi", HTML)
    key_file.unlink()
    with pytest.raises(nk.ValidationError, match="cannot be read"):
        nk.send_campaign(store, "spring")
    assert srv.messages == [] and nk.campaign_status(store, "spring")["pending"] == 4
    # Switching DKIM off lets it go out unsigned.
    nk.update_smtp_settings(store, dkim_selector="")
    assert nk.send_campaign(store, "spring").sent == 4
    assert not any(e.content.startswith(b"DKIM-Signature:") for e in srv.messages)


def test_a_proof_is_signed_as_the_campaign_will_be(nk_db, smtp_server, dns, keys):
    """Issue 19: `campaign test` sends the message the recipients will get, DKIM signature included."""
    srv = smtp_server(tls="none")
    store = _campaign_store(nk_db, srv, keys["rsa"], "rsa")
    nk.create_campaign(store, "spring", "news", "Hi {{ first_name }}", HTML)
    assert nk.send_test(store, "spring", ["me@example.org"]).sent == 1
    [envelope] = srv.messages
    lookup = txt_lookup(dns)
    assert envelope.content.startswith(b"DKIM-Signature:") and b"Subject: [TEST] Hi" in envelope.content
    assert dkim.verify(envelope.content, dnsfunc=lambda name, timeout=5: lookup(name.decode().rstrip("."))[0].encode())
