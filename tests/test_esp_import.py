"""ESP events read from saved JSON (issue 18): for each provider, a hard bounce and a complaint
for a delivery we made end in the right kind and reason and move that address's counts; the
same for a stranger moves nothing and is listed unmatched; a second import records nothing.
Signed formats are checked with the tests' own keys: a bad signature refuses the event.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter_kit import tokens
from newsletter_kit.cli import cli
from newsletter_kit.esp import import_events, update_esp_settings
from newsletter_kit.esp.events import EspEvent
from newsletter_kit.esp.formats import events_from_document
from newsletter_kit.guards import complaint_counts
from newsletter_kit.settings import update_bounce_settings
from newsletter_kit.store import Store, now_iso, open_store
from newsletter_kit.suppressions import bounce_counts
from tests import esp_samples as S


def ledger(store: Store, campaign: str, emails: list[str], provider_ids: dict[str, str] | None = None
           ) -> dict[str, tuple[int, str]]:
    """A campaign sent to ``emails``: {email: (delivery id, message id)}."""
    now = now_iso()
    with store.transaction():
        cid = store.conn.execute(
            "INSERT INTO campaigns (name, list_name, subject, html, status, created_at, updated_at)"
            " VALUES (?, 'all', 's', '<p>h</p>', 'done', ?, ?)", (campaign, now, now)).lastrowid
        rows = {}
        for email in emails:
            mid = f"<nk.{uuid.uuid4().hex}@news.example.org>"
            did = store.conn.execute(
                "INSERT INTO deliveries (campaign_id, email, state, message_id, provider_message_id, created_at,"
                " updated_at, sent_at) VALUES (?, ?, 'sent', ?, ?, ?, ?, ?)",
                (cid, email, mid, (provider_ids or {}).get(email), now, now, now)).lastrowid
            rows[email] = (int(did), mid)
    return rows


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(tmp_path / "nk.db")
    update_bounce_settings(s, host="imap.example.org", port=993, user="bounces@example.org", threshold=1, tls="ssl",
                           password_ref="env:NK_TEST_IMAP_PW")
    return s


def bounces(store: Store, email: str) -> list[dict[str, Any]]:
    rows = store.conn.execute("SELECT kind, campaign, unmatched, matched_by, source, status FROM bounces"
                              " WHERE email = ? ORDER BY id", (email,)).fetchall()
    return [dict(zip(("kind", "campaign", "unmatched", "matched_by", "source", "status"), r)) for r in rows]


def write(folder: Path, name: str, data: Any) -> Path:
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def tag(store: Store, delivery_id: int) -> str:
    return tokens.verp_token(store.signing_key(), delivery_id)


# --- per provider: what a hard bounce and a complaint for our delivery, and for a stranger, become ---


def _samples(provider: str, store: Store, sent: dict[str, tuple[int, str]], folder: Path) -> dict[str, Any]:
    """(hard bounce of reader, complaint of reader2, hard bounce of a stranger) per provider."""
    reader, (rid, rmid) = "reader@example.org", sent["reader@example.org"]
    reader2, (r2id, _) = "reader2@example.org", sent["reader2@example.org"]
    stranger = "stranger@example.net"
    if provider == "ses":
        signer = S.SnsSigner(folder)
        update_esp_settings(store, provider="ses", sns_cert=str(signer.cert_file))
        return {"hard": signer.envelope(S.ses_bounce(reader, tag=tag(store, rid))),
                "complaint": S.ses_complaint(reader2, ses_id="ses-r2"),   # bare JSON, matched by SES's id
                "stranger": signer.envelope(S.ses_bounce(stranger, ses_id="ses-none"), version="2")}
    if provider == "sendgrid":
        signer2 = S.SendGridSigner()
        update_esp_settings(store, provider="sendgrid", public_key=signer2.public_key)
        return {"hard": signer2.signed([S.sendgrid_event(reader, tag=tag(store, rid))]),
                "complaint": [S.sendgrid_event(reader2, "spamreport", sg_id="sg-r2")],
                "stranger": [S.sendgrid_event(stranger, sg_id="sg-none")]}
    if provider == "mailgun":
        update_esp_settings(store, provider="mailgun", domain="mg.example.org", signing_key_ref="env:NK_MG_KEY")
        return {"hard": S.mailgun_webhook(S.mailgun_event(reader, message_id=rmid), "mg-signing-key"),
                "complaint": {"items": [S.mailgun_event(reader2, "complained", tag=tag(store, r2id))],
                              "paging": {"next": "https://api.mailgun.net/v3/mg.example.org/events/next"}},
                "stranger": S.mailgun_event(stranger)}
    update_esp_settings(store, provider="postmark")
    return {"hard": S.postmark_bounce(reader, tag=tag(store, rid)),
            "complaint": S.postmark_bounce(reader2, "SpamComplaint", record="SpamComplaint", tag=tag(store, r2id)),
            "stranger": {"TotalCount": 1, "Bounces": [S.postmark_bounce(stranger)]}}


@pytest.mark.parametrize("provider", ["ses", "sendgrid", "mailgun", "postmark"])
def test_a_hard_bounce_and_a_complaint_count_for_our_delivery_and_a_stranger_for_nobody(
        provider: str, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NK_MG_KEY", "mg-signing-key")
    sent = ledger(store, "nov", ["reader@example.org", "reader2@example.org"],
                  provider_ids={"reader2@example.org": {"ses": "ses-r2", "sendgrid": "sg-r2"}.get(provider, "")} )
    samples = _samples(provider, store, sent, tmp_path)
    files = [write(tmp_path, f"{name}.json", data) for name, data in samples.items()]

    report = import_events(store, files)

    assert (report.read, report.recorded, report.matched, report.unmatched, report.refused) == (3, 3, 2, 1, 0), \
        report.to_dict()
    hard = bounces(store, "reader@example.org")
    assert [(b["kind"], b["unmatched"], b["source"], b["campaign"]) for b in hard] == [("hard", 0, provider, "nov")]
    assert hard[0]["matched_by"] in ("esp_id", "message_id", "provider_id")
    assert bounce_counts(store, addresses=["reader@example.org"]) == {"reader@example.org": 1}
    assert "reader@example.org" in report.suppressed
    complaint = bounces(store, "reader2@example.org")
    assert [(b["kind"], b["unmatched"]) for b in complaint] == [("complaint", 0)]
    assert complaint_counts(store, "nov")["nov"][0] == 1
    stranger = bounces(store, "stranger@example.net")
    assert [(b["kind"], b["unmatched"], b["matched_by"]) for b in stranger] == [("hard", 1, None)]
    assert bounce_counts(store, addresses=["stranger@example.net"]) == {}
    assert "stranger@example.net" not in report.suppressed

    again = import_events(store, files)
    assert (again.recorded, again.duplicates) == (0, 3)
    assert store.conn.execute("SELECT count(*) FROM bounces").fetchone()[0] == 3


# --- meaning: each provider's words map onto the project's kinds and reasons ---


@pytest.mark.parametrize(("document", "kind", "reason"), [
    (S.ses_bounce("a@example.org", btype="Transient", sub="ContentRejected", status="5.3.0",
                  diag="smtp; 554 Message rejected"), "policy", "content_rejected"),
    (S.ses_bounce("a@example.org", btype="Transient", sub="MailboxFull", status="4.2.2", diag="mailbox full"),
     "soft", "mailbox_full"),
    (S.ses_bounce("a@example.org", sub="NoEmail", diag=""), "hard", "user_unknown"),
    (S.ses_bounce("a@example.org", diag="smtp; 550 5.7.1 Service unavailable; client host blocked using "
                                        "zen.spamhaus.org", status="5.7.1"), "policy", "blocked"),
    ([S.sendgrid_event("a@example.org", type="blocked", status="5.7.1",
                       reason="550 5.7.1 rejected due to IP reputation")], "policy", "bad_reputation"),
    ([S.sendgrid_event("a@example.org", "deferred", response="421 try again later")], "delayed", None),
    ([S.sendgrid_event("a@example.org", "dropped", reason="Bounced Address")], "hard", "user_unknown"),
    (S.mailgun_event("a@example.org", severity="temporary", code=452, message="4.2.2 mailbox full"),
     "delayed", None),
    (S.mailgun_event("a@example.org", code=552, message="5.2.2 mailbox full"), "soft", "mailbox_full"),
    (S.postmark_bounce("a@example.org", "Blocked", details="550 rejected"), "policy", "blocked"),
    (S.postmark_bounce("a@example.org", "SoftBounce", details="mailbox is full"), "soft", "mailbox_full"),
    (S.postmark_bounce("a@example.org", "DMARCPolicy", details="dmarc"), "policy", "auth_failure"),
])
def test_each_providers_words_map_to_kind_and_reason(document: Any, kind: str, reason: str | None) -> None:
    [event] = events_from_document(open_store(":memory:"), document, None, "x.json")
    assert event.kind.value == kind
    if reason:
        assert event.reason == reason


def test_sendgrid_suppression_rows_match_by_address_within_the_window(store: Store, tmp_path: Path) -> None:
    ledger(store, "nov", ["reader@example.org"])
    created = int(__import__("time").time())
    rows = [{"email": "reader@example.org", "created": created, "reason": "550 5.7.1 blocked by policy",
             "status": "5.7.1"},
            {"email": "never@example.org", "created": created, "reason": "550 blocked", "status": "5.7.1"}]
    report = import_events(store, [write(tmp_path, "blocks.json", rows)])
    assert (report.matched, report.unmatched) == (1, 1)
    assert [(b["kind"], b["matched_by"]) for b in bounces(store, "reader@example.org")] == [("policy", "address")]
    # A block is about us: it counts for nobody's threshold.
    assert bounce_counts(store, addresses=["reader@example.org"]) == {}


# --- signatures ---


def test_a_tampered_or_wrongly_signed_event_is_refused_and_listed(store: Store, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sent = ledger(store, "nov", ["reader@example.org"])
    signer = S.SnsSigner(tmp_path)
    (tmp_path / "other").mkdir()
    other = S.SnsSigner(tmp_path / "other")  # another key: a certificate that did not sign it
    envelope = other.envelope(S.ses_bounce("reader@example.org", tag=tag(store, sent["reader@example.org"][0])))
    update_esp_settings(store, provider="ses", sns_cert=str(signer.cert_file))
    evil_url = dict(envelope, SigningCertURL="https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem")
    report = import_events(store, [write(tmp_path, "sns.json", envelope), write(tmp_path, "url.json", evil_url)])
    assert report.refused == 2 and report.recorded == 0
    assert {r["why"] for r in report.refusals} == {"the SNS signature does not match",
                                                   "the SigningCertURL is not on an sns.<region>.amazonaws.com host"}

    sg = S.SendGridSigner()
    update_esp_settings(store, provider="sendgrid", public_key=sg.public_key)
    report = import_events(store, [write(tmp_path, "sg.json", sg.signed([S.sendgrid_event("reader@example.org")],
                                                                          tamper=True))])
    assert report.refused == 1 and report.refusals[0]["why"] == "the SendGrid signature does not match"

    monkeypatch.setenv("NK_MG_KEY", "right-key")
    update_esp_settings(store, provider="mailgun", signing_key_ref="env:NK_MG_KEY")
    wrong = S.mailgun_webhook(S.mailgun_event("reader@example.org"), "wrong-key")
    good = S.mailgun_webhook(S.mailgun_event("reader@example.org"), "right-key", token="t-1")
    replay = S.mailgun_webhook(S.mailgun_event("reader@example.org"), "right-key", token="t-1")
    report = import_events(store, [write(tmp_path, "mg1.json", wrong), write(tmp_path, "mg2.json", good),
                                   write(tmp_path, "mg3.json", replay)])
    assert (report.refused, report.recorded) == (2, 1)
    assert any("replayed" in r["why"] for r in report.refusals)
    assert store.conn.execute("SELECT count(*) FROM bounces").fetchone()[0] == 1


# --- the command ---


def test_import_events_json_says_what_was_read_recorded_matched_unmatched_and_refused(
        tmp_path: Path) -> None:
    db = tmp_path / "nk.db"
    store = open_store(db)
    sent = ledger(store, "nov", ["reader@example.org"])
    folder = tmp_path / "exports"
    folder.mkdir()
    lines = [json.dumps(S.postmark_bounce("reader@example.org", tag=tag(store, sent["reader@example.org"][0]))),
             json.dumps(S.postmark_bounce("who@example.net"))]
    (folder / "postmark.ndjson").write_text("\n".join(lines) + "\n")
    store.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", str(db), "bounces", "import-events", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {k: data[k] for k in ("read", "recorded", "matched", "unmatched", "refused")} == {
        "read": 2, "recorded": 2, "matched": 1, "unmatched": 1, "refused": 0}
    again = runner.invoke(cli, ["--db", str(db), "bounces", "import-events", str(folder), "--json"])
    assert json.loads(again.stdout)["recorded"] == 0 and json.loads(again.stdout)["duplicates"] == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(cli, ["--db", str(db), "bounces", "import-events", str(bad)])
    assert result.exit_code == 1 and "Traceback" not in result.output and "not JSON" in result.stderr


def test_settings_esp_keeps_references_only(tmp_path: Path) -> None:
    db = tmp_path / "nk.db"
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", str(db), "settings", "esp", "--provider", "sendgrid",
                                 "--credential-env", "SENDGRID_API_KEY"])
    assert result.exit_code == 0, result.output
    shown = json.loads(runner.invoke(cli, ["--db", str(db), "settings", "show", "--json"]).stdout)
    assert shown["esp"]["provider"] == "sendgrid" and "SENDGRID_API_KEY" not in json.dumps(shown["esp"]["credential"])
    bad = runner.invoke(cli, ["--db", str(db), "settings", "esp", "--api-url", "http://api.example.org"])
    assert bad.exit_code == 1 and "https" in bad.stderr


def test_an_email_json_subscription_message_saved_as_eml_is_read(store: Store, tmp_path: Path) -> None:
    sent = ledger(store, "nov", ["reader@example.org"])
    signer = S.SnsSigner(tmp_path)
    update_esp_settings(store, provider="ses", sns_cert=str(signer.cert_file))
    envelope = signer.envelope(S.ses_bounce("reader@example.org", tag=tag(store, sent["reader@example.org"][0])))
    eml = ("From: no-reply@sns.amazonaws.com\r\nTo: bounces@example.org\r\nSubject: AWS Notification Message\r\n"
           "Content-Type: text/plain; charset=UTF-8\r\n\r\n" + json.dumps(envelope) + "\r\n")
    (tmp_path / "sns.eml").write_text(eml)
    report = import_events(store, [tmp_path / "sns.eml"])
    assert (report.matched, report.refused, report.errors) == (1, 0, [])


def test_garbled_provider_json_is_refused_or_read_never_a_crash(store: Store) -> None:
    """Fields of the wrong type, missing or absurd (mutations of every sample): each document is
    either read or refused with EventFormatError; nothing else escapes."""
    import random

    from newsletter_kit.esp.formats import EventFormatError
    from newsletter_kit.esp.matching import record_events

    seeds: list[Any] = [S.ses_bounce("a@example.org"), S.ses_complaint("a@example.org"),
                        [S.sendgrid_event("a@example.org")], S.mailgun_event("a@example.org"),
                        S.postmark_bounce("a@example.org"), {"items": [S.mailgun_event("b@example.org")], "paging": {}},
                        {"TotalCount": 1, "Bounces": [S.postmark_bounce("c@example.org")]},
                        S.mailgun_webhook(S.mailgun_event("a@example.org"), "k"), [{"email": "a@b.org", "created": 1}]]
    junk: list[Any] = [None, 1, "x", [], {}, [1], {"a": 1}, 1.5, True, "a@b\r\nBcc: c@d", 10**30, -1, "2024-99-99"]
    rng = random.Random(18)

    def mutate(value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                roll = rng.random()
                if roll < 0.05:
                    continue
                out[key] = rng.choice(junk) if roll < 0.2 else mutate(item)
            return out
        if isinstance(value, list):
            return [mutate(i) for i in value] + ([rng.choice(junk)] if rng.random() < 0.1 else [])
        return rng.choice(junk) if rng.random() < 0.1 else value

    for _ in range(2000):
        document = mutate(rng.choice(seeds))
        try:
            events = events_from_document(store, document, None, "f.json")
        except EventFormatError:
            continue
        record_events(store, events)
    assert all("\n" not in (row[0] or "") for row in store.conn.execute("SELECT diagnostic FROM bounces"))


def test_postmark_api_records_without_metadata_match_by_address_within_the_window(store: Store, tmp_path: Path) -> None:
    ledger(store, "nov", ["reader@example.org", "old@example.org"])
    with store.transaction():  # sent an hour ago; "old" was sent long before the window
        store.conn.execute("UPDATE deliveries SET sent_at = datetime('now', '-1 hour')")
        store.conn.execute("UPDATE deliveries SET sent_at = datetime('now', '-30 days') WHERE email = 'old@example.org'")
    page = {"TotalCount": 2, "Bounces": [S.postmark_bounce("reader@example.org"), S.postmark_bounce("old@example.org")]}
    report = import_events(store, [write(tmp_path, "page.json", page)])
    assert (report.matched, report.unmatched) == (1, 1)
    assert [(b["kind"], b["matched_by"]) for b in bounces(store, "reader@example.org")] == [("hard", "address")]
    assert [b["unmatched"] for b in bounces(store, "old@example.org")] == [1]
