"""Deliverability guards while sending (issue 10, item 5), against a real aiosmtpd.

A run pauses (exit 3) when the server refuses too many recipients at RCPT; a campaign whose
spam-complaint rate (ARF reports fetched like any bounce) is over 0.3 % is not sent further
without --ignore-guards; an HTML body Gmail would clip is warned about at `campaign create`.
"""

from __future__ import annotations

import json
from email import message_from_bytes
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from newsletter_kit import campaigns
from newsletter_kit.guards import SendGuards
from newsletter_kit.store import open_store
from tests.dsn import postfix_dsn
from tests.sending import addresses, configure, contacts, invoke, make_campaign, received


@pytest.fixture
def store(nk_db):
    store = open_store(nk_db)
    yield store
    store.close()


def _interleaved(n, every):
    """n addresses; every ``every``-th one is refused at RCPT (550 5.1.1), never two in a row."""
    return [f"fail550.{i:03d}@example.org" if i % every == every - 1 else f"ok{i:03d}@example.org"
            for i in range(n)]


def test_too_many_refusals_at_rcpt_pause_the_run_with_exit_3(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv)
    emails = _interleaved(120, 5)           # 20 % refused; never 10 failures in a row
    contacts(store, emails)
    make_campaign(store)

    result = invoke(["campaign", "send", "spring", "--json"])

    assert result.returncode == 3, result.stderr
    doc = json.loads(result.stdout)
    assert doc["paused"] == "guard" and doc["failed"] == 11   # the 11th of the last 200 trips it
    assert "refused at RCPT" in result.stderr and "--ignore-guards" in result.stderr
    assert "Traceback" not in result.stderr
    assert doc["pending"] == 120 - doc["attempted"] > 0

    resumed = invoke(["campaign", "send", "spring", "--json", "--ignore-guards"])
    assert resumed.returncode == 0, resumed.stderr
    assert set(received(srv)) == {e for e in emails if e.startswith("ok")}
    assert max(received(srv).values()) == 1


def test_the_refusal_guard_is_configurable_and_counts_only_the_last_window(store, smtp_server):
    srv = smtp_server(tls="none")
    configure(store, srv)
    contacts(store, _interleaved(100, 10))  # 10 % refused
    make_campaign(store)

    loose = campaigns.send_campaign(store, "spring", guards=SendGuards(rcpt_refusal_rate=0.2, window=50))
    assert loose.paused is None and loose.failed == 10   # at most 5 of any 50: under 20 %

    store.conn.execute("DELETE FROM suppressions")  # (threshold 1 suppressed the refused ones)
    store.conn.execute("UPDATE deliveries SET state = 'pending', attempts = 0")
    srv.handler.clear()
    strict = campaigns.send_campaign(store, "spring", guards=SendGuards(rcpt_refusal_rate=0.05, window=40))
    assert strict.paused == "guard" and strict.failed == 3   # 3 of 30 > 5 % of 40


def _arf(original: bytes, rcpt: str) -> bytes:
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "Feedback Loop <fbl@fbl.example.net>"
    report["To"] = "abuse@example.org"
    report["Subject"] = "FW: complaint"
    report["Message-ID"] = f"<fbl.{rcpt}@fbl.example.net>"
    report.attach(MIMEText("This is an email abuse report.\n"))
    feedback = MIMEBase("message", "feedback-report")
    feedback.set_payload(f"Feedback-Type: abuse\nUser-Agent: FBL/1.0\nVersion: 1\n"
                         f"Original-Rcpt-To: <{rcpt}>\n")
    report.attach(feedback)
    quoted = MIMEBase("message", "rfc822")
    quoted.set_payload([message_from_bytes(original)])
    report.attach(quoted)
    return report.as_bytes()


def test_a_campaign_over_the_complaint_line_is_not_sent_further_without_ignore_guards(
        store, smtp_server, tmp_path):
    srv = smtp_server(tls="none")
    configure(store, srv)
    emails = addresses(310)
    contacts(store, emails)
    make_campaign(store)
    assert invoke(["campaign", "send", "spring", "--limit", "300"]).returncode == 0
    # One recipient reports it as spam: 1 / 300 = 0.33 %, over the 0.3 % line.
    first = srv.messages[0]
    reports = tmp_path / "fbl"
    reports.mkdir()
    (reports / "complaint.eml").write_bytes(_arf(first.content, first.rcpt_tos[0]))
    fetched = invoke(["bounces", "fetch", "--from", str(reports), "--json"])
    assert json.loads(fetched.stdout)["bounces"] == {"complaint": 1}, fetched.stdout

    from newsletter_kit.review import complaint_rates

    table = complaint_rates(store).set_index("campaign")
    assert (table.loc["spring", "complaints"], table.loc["spring", "delivered"]) == (1, 300)
    assert table.loc["spring", "level"] == "stop"

    blocked = invoke(["campaign", "send", "spring", "--json"])
    assert blocked.returncode == 3
    doc = json.loads(blocked.stdout)
    assert (doc["paused"], doc["attempted"]) == ("guard", 0)
    assert "0.33%" in blocked.stderr and "--ignore-guards" in blocked.stderr
    assert json.loads(invoke(["campaign", "send", "spring", "--dry-run", "--json"]).stdout)["paused"] == "guard"
    assert len(srv.messages) == 300

    sent = invoke(["campaign", "send", "spring", "--ignore-guards", "--json"])
    assert sent.returncode == 0 and json.loads(sent.stdout)["sent"] == 10
    assert set(received(srv)) == set(emails) and max(received(srv).values()) == 1


def test_complaint_levels_in_the_review(store):
    from newsletter_kit.review import complaint_rates

    contacts(store, addresses(1))
    make_campaign(store)
    campaign_id = campaigns.get_campaign(store, "spring").id
    store.conn.executemany(
        "INSERT INTO deliveries (campaign_id, email, state, created_at, updated_at) VALUES (?, ?, 'sent', '', '')",
        [(campaign_id, e) for e in addresses(2000)])
    ids = dict(store.conn.execute("SELECT email, id FROM deliveries WHERE campaign_id = ?", (campaign_id,)))
    for count, level in ((1, "ok"), (2, "warn"), (6, "warn"), (7, "stop")):
        store.conn.execute("DELETE FROM bounces")
        store.conn.executemany(  # complaints matched to this campaign's deliveries
            "INSERT INTO bounces (email, kind, campaign, delivery_id, matched_by, report_key, source, bounced_at,"
            " recorded_at) VALUES (?, 'complaint', 'spring', ?, 'message_id', ?, 'file', '', '')",
            [(f"reader{i:03d}@example.org", ids[f"reader{i:03d}@example.org"], f"k{i}") for i in range(count)])
        row = complaint_rates(store).set_index("campaign").loc["spring"]
        assert (row["complaints"], row["delivered"], row["level"]) == (count, 2000, level)


def test_html_over_102_kb_is_warned_about_at_create(store, tmp_path):
    contacts(store, addresses(2))
    big = tmp_path / "big.html"
    big.write_text("<p>{{ first_name }}</p>" + "<p>" + "y" * 110_000 + "</p>", encoding="utf-8")
    small = tmp_path / "small.html"
    small.write_text("<p>{{ first_name }}</p>", encoding="utf-8")

    warned = invoke(["campaign", "create", "big", "--list", "news", "--subject", "S", "--html", str(big)])
    quiet = invoke(["campaign", "create", "small", "--list", "news", "--subject", "S", "--html", str(small)])

    assert warned.returncode == 0 and "warning: the HTML is 107 KB" in warned.stderr
    assert "Gmail clips" in warned.stderr
    assert quiet.returncode == 0 and "warning" not in quiet.stderr
    assert campaigns.campaign_warnings(store, "small") == []
    from newsletter_kit.guards import html_size_warning

    assert html_size_warning("é" * (102 * 512)) is None            # 102 KB in UTF-8 bytes
    assert html_size_warning("é" * (102 * 512) + "x") is not None


def test_forged_complaints_and_bounces_halt_nothing(store, smtp_server, tmp_path):
    """Issue 16, finding 4: ARF reports from a stranger naming the public campaign stamp and
    made-up addresses, or quoting one reader's message and naming others, or a complaint about
    another campaign's delivery, count for no guard or rate of this campaign."""
    srv = smtp_server(tls="none")
    configure(store, srv, limit=5000)
    emails = addresses(1010)
    contacts(store, emails)
    make_campaign(store)
    make_campaign(store, "autumn")
    assert invoke(["campaign", "send", "autumn", "--limit", "5"]).returncode == 0
    assert invoke(["campaign", "send", "spring", "--limit", "1000"]).returncode == 0
    spring = next(m for m in srv.messages if b"X-Newsletter-Campaign: spring" in m.content)
    autumn = next(m for m in srv.messages if b"X-Newsletter-Campaign: autumn" in m.content)
    reports = tmp_path / "fbl"
    reports.mkdir()
    stamp_only = spring.content.split(b"\r\n\r\n", 1)[0]
    stamp_only = b"\r\n".join(line for line in stamp_only.split(b"\r\n") if not line.lower().startswith(b"message-id"))
    for i in range(10):   # 10 / 1000 = 1 %: over the 0.3 % line if they counted
        (reports / f"forged{i}.eml").write_bytes(_arf(stamp_only + b"\r\n\r\nhi\r\n", f"made-up-{i}@example.net"))
    for i in range(5):    # a real reader's message, other (real) readers named
        (reports / f"named{i}.eml").write_bytes(_arf(spring.content, emails[500 + i]))
    for i in range(5):    # hard bounces naming made-up addresses with the stamp
        (reports / f"dsn{i}.eml").write_bytes(postfix_dsn(f"made-up-dsn-{i}@example.net", campaign="spring"))
    # A genuine complaint about the *other* campaign's delivery: it counts there, not here.
    (reports / "autumn.eml").write_bytes(_arf(autumn.content, autumn.rcpt_tos[0]))
    fetched = invoke(["bounces", "fetch", "--from", str(reports), "--json"])
    assert json.loads(fetched.stdout)["bounces"] == {"complaint": 16, "hard": 5}, fetched.stdout

    from newsletter_kit.review import campaign_summary, complaint_rates

    table = complaint_rates(store).set_index("campaign")
    assert table.loc["spring", ["complaints", "level"]].tolist() == [0, "ok"]
    assert table.loc["autumn", ["complaints", "level"]].tolist() == [1, "stop"]
    assert campaign_summary(store).set_index("campaign").loc["spring", ["bounced", "complaints"]].tolist() == [0, 0]
    listed = json.loads(invoke(["bounces", "list", "--unmatched", "--json"]).stdout)
    assert len(listed) == 20 and {r["kind"] for r in listed} == {"complaint", "hard"}

    sent = invoke(["campaign", "send", "spring", "--json"])
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == 10 and "complaint" not in sent.stderr
    blocked = invoke(["campaign", "send", "autumn", "--json"])
    assert blocked.returncode == 3 and json.loads(blocked.stdout)["paused"] == "guard"
