"""``bounces sync`` against the providers' APIs played on loopback (pytest-httpserver) and SES's
SQS queue in moto: paging, late-indexed events, errors (401, 429 with Retry-After, 5xx) retried
with back-off and reported in one line; a second sync records nothing new.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from newsletter_kit.cli import cli
from newsletter_kit.errors import EspError, EspUnavailable
from newsletter_kit.esp import sync_events, update_esp_settings
from newsletter_kit.store import Store, open_store
from tests import esp_samples as S
from tests.test_esp_import import bounces, ledger, tag


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("NK_ESP_KEY", "api-key-123")
    return open_store(tmp_path / "nk.db")


def no_sleep(waits: list[float]) -> Any:
    return waits.append


# --- SendGrid: four suppression lists, paged by limit/offset ---


def test_sendgrid_sync_pages_through_the_lists_and_records_nothing_twice(store: Store, httpserver: HTTPServer) -> None:
    ledger(store, "nov", [f"r{i}@example.org" for i in range(3)])
    with store.transaction():  # sent an hour ago; the provider listed the addresses a minute ago
        store.conn.execute("UPDATE deliveries SET sent_at = datetime('now', '-1 hour')")
    created = int(time.time()) - 60
    rows = [{"email": f"gone{i}@example.net", "created": created, "reason": "550 5.1.1 no such user",
             "status": "5.1.1"} for i in range(501)] + [
        {"email": "r0@example.org", "created": created, "reason": "550 5.1.1 user unknown", "status": "5.1.1"}]
    seen: list[dict[str, str]] = []

    def handler(request: Request) -> Response:
        assert request.headers["Authorization"] == "Bearer api-key-123"
        seen.append(dict(request.args))
        name = request.path.rsplit("/", 1)[1]
        data = rows if name == "bounces" else (
            [{"email": "r1@example.org", "created": created, "ip": "192.0.2.1"}] if name == "spam_reports" else [])
        offset, limit = int(request.args["offset"]), int(request.args["limit"])
        return Response(json.dumps(data[offset:offset + limit]), content_type="application/json")

    httpserver.expect_request(re.compile(r"/v3/suppression/\w+")).respond_with_handler(handler)
    update_esp_settings(store, provider="sendgrid", credential_ref="env:NK_ESP_KEY", api_url=httpserver.url_for(""))
    report = sync_events(store)
    assert (report.read, report.matched, report.unmatched) == (503, 2, 501)
    assert [b["kind"] for b in bounces(store, "r0@example.org")] == ["hard"]
    assert [b["kind"] for b in bounces(store, "r1@example.org")] == ["complaint"]
    assert {s["offset"] for s in seen if s.get("offset")} >= {"0", "500"}
    again = sync_events(store)
    assert again.recorded == 0
    # The second sync asked only for what is new since the first.
    assert int(seen[-1]["start_time"]) >= created


# --- Mailgun: events pages, paging.next, late indexing ---


def test_mailgun_sync_follows_paging_and_reads_late_events_from_a_margin(store: Store, httpserver: HTTPServer) -> None:
    sent = ledger(store, "nov", ["a@example.org", "b@example.org"])
    late: list[dict[str, Any]] = []
    first = [S.mailgun_event("a@example.org", tag=tag(store, sent["a@example.org"][0]))]
    begins: list[float] = []

    def events(request: Request) -> Response:
        assert request.authorization is not None and request.authorization.password == "api-key-123"
        if "page" in request.args:
            return Response(json.dumps({"items": [], "paging": {}}), content_type="application/json")
        begins.append(float(request.args["begin"]))
        items = [e for e in first + late if e["timestamp"] >= begins[-1]]
        return Response(json.dumps({"items": items, "paging": {
            "next": httpserver.url_for("/v3/mg.example.org/events") + "?page=2"}}), content_type="application/json")

    httpserver.expect_request("/v3/mg.example.org/events").respond_with_handler(events)
    update_esp_settings(store, provider="mailgun", credential_ref="env:NK_ESP_KEY", domain="mg.example.org",
                        api_url=httpserver.url_for(""), margin_minutes=30)
    assert sync_events(store).matched == 1
    # Indexed late: dated before the first sync's last event, seen only now.
    stamp = first[0]["timestamp"] - 120
    late.append(dict(S.mailgun_event("b@example.org", "complained", tag=tag(store, sent["b@example.org"][1 - 1])),
                     timestamp=stamp))
    report = sync_events(store)
    assert (report.recorded, report.duplicates) == (1, 1)
    assert [b["kind"] for b in bounces(store, "b@example.org")] == ["complaint"]
    assert begins[1] <= stamp


# --- Postmark ---


def test_postmark_sync_reads_bounces_and_complaints(store: Store, httpserver: HTTPServer) -> None:
    sent = ledger(store, "nov", ["a@example.org"])
    data = [S.postmark_bounce("a@example.org", tag=tag(store, sent["a@example.org"][0])),
            S.postmark_bounce("x@example.net", "SpamComplaint")]

    def handler(request: Request) -> Response:
        assert request.headers["X-Postmark-Server-Token"] == "api-key-123"
        offset, count = int(request.args["offset"]), int(request.args["count"])
        return Response(json.dumps({"TotalCount": len(data), "Bounces": data[offset:offset + count]}),
                        content_type="application/json")

    httpserver.expect_request("/bounces").respond_with_handler(handler)
    update_esp_settings(store, provider="postmark", credential_ref="env:NK_ESP_KEY", api_url=httpserver.url_for(""))
    report = sync_events(store)
    assert (report.matched, report.unmatched, dict(report.kinds)) == (1, 1, {"hard": 1, "complaint": 1})
    assert sync_events(store).recorded == 0


# --- errors: never a traceback ---


def test_429_and_5xx_are_retried_with_back_off_and_401_is_one_clear_line(
        store: Store, httpserver: HTTPServer, tmp_path: Path) -> None:
    calls: list[int] = []

    def flaky(request: Request) -> Response:
        calls.append(1)
        if len(calls) == 1:
            return Response("slow down", status=429, headers={"Retry-After": "7"})
        if len(calls) == 2:
            return Response("oops", status=503)
        return Response(json.dumps({"TotalCount": 0, "Bounces": []}), content_type="application/json")

    httpserver.expect_request("/bounces").respond_with_handler(flaky)
    update_esp_settings(store, provider="postmark", credential_ref="env:NK_ESP_KEY", api_url=httpserver.url_for(""))
    waits: list[float] = []
    assert sync_events(store, sleep=no_sleep(waits)).read == 0
    assert waits == [7.0, 2.0]  # Retry-After, then the back-off of the second attempt

    httpserver.clear()
    httpserver.expect_request("/bounces").respond_with_data("down", status=500)
    with pytest.raises(EspUnavailable, match="HTTP 500 after 4 retries"):
        sync_events(store, sleep=no_sleep([]))

    httpserver.clear()
    httpserver.expect_request("/bounces").respond_with_data("no", status=401)
    with pytest.raises(EspError, match="refused the credentials"):
        sync_events(store)
    store.close()
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "nk.db"), "bounces", "sync", "--json"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "refused the credentials" in result.stderr and "api-key-123" not in result.output


# --- SES through SQS (moto), with the SNS envelope signed by the tests' certificate ---


def test_ses_sync_pulls_sns_envelopes_from_sqs_and_deletes_them(store: Store, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "eu-west-1")):
        monkeypatch.setenv(name, value)
    sent = ledger(store, "nov", ["a@example.org", "b@example.org"], provider_ids={"b@example.org": "ses-b"})
    signer = S.SnsSigner(tmp_path)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        url = sqs.create_queue(QueueName="ses-events")["QueueUrl"]
        sns = boto3.client("sns", region_name="eu-west-1")
        topic = sns.create_topic(Name="ses-bounces")["TopicArn"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        # What SNS itself puts in the queue: moto's envelope, whose signature is no real one.
        sns.publish(TopicArn=topic, Message=json.dumps(S.ses_bounce("a@example.org")))
        # What AWS sends, signed by (our stand-in for) SNS's certificate.
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(signer.envelope(
            S.ses_bounce("a@example.org", tag=tag(store, sent["a@example.org"][0])))))
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(signer.envelope(
            S.ses_complaint("b@example.org", ses_id="ses-b"), version="2")))
        update_esp_settings(store, provider="ses", queue_url=url, region="eu-west-1", sns_cert=str(signer.cert_file))
        report = sync_events(store, wait_seconds=0)
        assert (report.matched, report.refused) == (2, 1), report.to_dict()
        assert [b["kind"] for b in bounces(store, "a@example.org")] == ["hard"]
        assert [b["kind"] for b in bounces(store, "b@example.org")] == ["complaint"]
        again = sync_events(store, wait_seconds=0)
        assert again.recorded == 0


def test_bounces_fetch_syncs_the_esp_when_one_is_set(tmp_path: Path, httpserver: HTTPServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NK_ESP_KEY", "api-key-123")
    db = tmp_path / "nk.db"
    store = open_store(db)
    sent = ledger(store, "nov", ["a@example.org"])
    data = [S.postmark_bounce("a@example.org", tag=tag(store, sent["a@example.org"][0]))]
    httpserver.expect_request("/bounces").respond_with_json({"TotalCount": 1, "Bounces": data})
    store.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", str(db), "settings", "esp", "--provider", "postmark", "--credential-env",
                                 "NK_ESP_KEY", "--api-url", httpserver.url_for("")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["--db", str(db), "bounces", "fetch", "--json"])  # no mailbox set: the ESP only
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["matched"] == 1
    result = runner.invoke(cli, ["--db", str(db), "bounces", "sync", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["recorded"] == 0


def test_settings_test_says_whether_the_esp_answers(store: Store, httpserver: HTTPServer) -> None:
    from newsletter_kit.esp.sync import check_esp

    httpserver.expect_request("/bounces").respond_with_json({"TotalCount": 0, "Bounces": []})
    esp = update_esp_settings(store, provider="postmark", credential_ref="env:NK_ESP_KEY", api_url=httpserver.url_for(""))
    [(ok, line)] = check_esp(esp)
    assert ok and "postmark" in line
    httpserver.clear()
    httpserver.expect_request("/bounces").respond_with_data("no", status=401)
    [(ok, line)] = check_esp(esp)
    assert not ok and "refused the credentials" in line and "api-key-123" not in line
