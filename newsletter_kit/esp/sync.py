"""``bounces sync``: pull what is new from the configured ESP since the last sync (a cursor per
provider in ``esp_state``), record it, and move the cursor only with what was recorded.

- SES: SQS ``receive_message`` (long polling) until the queue is empty, each message deleted
  after its events are committed (a refused one is left for the queue's redrive policy);
- SendGrid: the four suppression lists, by ``start_time``/``end_time``, ``limit``/``offset``;
- Mailgun: the Events API from the cursor minus a margin (events are indexed late), following
  ``paging.next`` until an empty page;
- Postmark: ``GET /bounces`` by ``fromdate``, ``count``/``offset``.

Events are deduplicated by the provider's event id, so the overlaps (margins, inclusive bounds)
record nothing twice.

Example::

    report = sync_events(store)          # the ESP of `settings esp`
    report.to_dict()["recorded"]
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable
from typing import Any

from ..errors import EspError, NewsletterKitError
from ..store import Store, now_iso
from . import mailgun, postmark, sendgrid
from .config import EspSettings, require_esp_settings
from .formats import EventFormatError, events_from_document
from .http import ApiClient
from .matching import EventsReport, record_events

__all__ = ["check_esp", "sync_events"]

PAGE = 500
#: At most this many pages per list and sync: a runaway paging loop stops.
PAGES_MAX = 2000
#: The first sync reads this far back.
FIRST_DAYS = 30


def _cursor(store: Store, provider: str) -> dict[str, Any]:
    row = store.conn.execute("SELECT cursor FROM esp_state WHERE provider = ?", (provider,)).fetchone()
    return json.loads(row[0]) if row else {}


def _save_cursor(store: Store, provider: str, cursor: dict[str, Any]) -> None:
    with store.transaction():
        store.conn.execute(
            "INSERT INTO esp_state (provider, cursor, updated_at) VALUES (?, ?, ?) ON CONFLICT (provider)"
            " DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            (provider, json.dumps(cursor, sort_keys=True), now_iso()))


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def _sendgrid(store: Store, esp: EspSettings, client: ApiClient) -> EventsReport:
    report = EventsReport()
    cursor = _cursor(store, "sendgrid")
    end = int(_now().timestamp())
    first = end - FIRST_DAYS * 86400
    for list_name in sendgrid.SUPPRESSION_LISTS:
        start = int(cursor.get(list_name, first))
        for page in range(PAGES_MAX):
            rows = client.get(f"/v3/suppression/{list_name}", {"start_time": start, "end_time": end,
                                                               "limit": PAGE, "offset": page * PAGE})
            if not isinstance(rows, list):
                raise EspError(f"SendGrid's {list_name} list is not a JSON array")
            report.merge(record_events(store, sendgrid.parse_suppressions(list_name, rows),
                                       origin=f"sendgrid:{list_name}", window_days=esp.window_days))
            if len(rows) < PAGE:
                break
        cursor[list_name] = end
        _save_cursor(store, "sendgrid", cursor)
    return report


def _mailgun(store: Store, esp: EspSettings, client: ApiClient) -> EventsReport:
    if not esp.domain:
        raise EspError("Mailgun needs the sending domain: `settings esp --domain mg.example.org`")
    report = EventsReport()
    cursor = _cursor(store, "mailgun")
    begin = float(cursor.get("begin", _now().timestamp() - FIRST_DAYS * 86400)) - esp.margin_minutes * 60
    latest = float(cursor.get("begin", begin))
    page: Any = client.get(f"/v3/{esp.domain}/events", {"begin": f"{begin:.3f}", "ascending": "yes",
                                                        "limit": 300, "event": "failed OR complained"})
    for _ in range(PAGES_MAX):
        if not mailgun.is_mailgun_page(page):
            raise EspError("Mailgun's events page has no items and paging")
        items = [i for i in page["items"] if isinstance(i, dict)]
        if not items:
            break
        report.merge(record_events(store, [mailgun.parse_mailgun_event(i) for i in items],
                                   origin="mailgun:events", window_days=esp.window_days))
        stamps = [float(i["timestamp"]) for i in items if isinstance(i.get("timestamp"), (int, float))]
        latest = max([latest, *stamps])
        nxt = page["paging"].get("next") if isinstance(page.get("paging"), dict) else None
        if not nxt:
            break
        page = client.get(str(nxt))
    # Never past now minus the margin: what Mailgun indexes late is read by the next sync.
    _save_cursor(store, "mailgun", {"begin": min(latest, _now().timestamp())})
    return report


def _postmark(store: Store, esp: EspSettings, client: ApiClient) -> EventsReport:
    report = EventsReport()
    cursor = _cursor(store, "postmark")
    first = (_now() - _dt.timedelta(days=FIRST_DAYS)).strftime("%Y-%m-%dT%H:%M:%S")
    latest = cursor.get("fromdate") or first
    # Postmark reads fromdate in its own time zone: a day earlier covers any offset (the overlap
    # is recorded once, by the bounce's ID).
    since = (_dt.datetime.fromisoformat(latest) - _dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    for page in range(PAGES_MAX):
        answer = client.get("/bounces", {"count": PAGE, "offset": page * PAGE, "fromdate": since})
        if not postmark.is_postmark_page(answer):
            raise EspError("Postmark's bounces page has no Bounces list")
        items = [i for i in answer["Bounces"] if isinstance(i, dict)]
        events = [postmark.parse_postmark(i) for i in items]
        report.merge(record_events(store, events, origin="postmark:bounces", window_days=esp.window_days))
        for event in events:
            if event.at and event.at[:19] > latest:
                latest = event.at[:19]
        if len(items) < PAGE or (page + 1) * PAGE >= 10_000:  # Postmark pages at most 10,000 deep
            break
    _save_cursor(store, "postmark", {"fromdate": latest})
    return report


def _sqs_client(esp: EspSettings) -> Any:
    import boto3

    kwargs: dict[str, Any] = {"region_name": esp.region or "us-east-1"}
    if esp.api_url:
        kwargs["endpoint_url"] = esp.api_url
    if esp.key_id:
        kwargs["aws_access_key_id"] = esp.key_id
        kwargs["aws_secret_access_key"] = esp.credential()
    from botocore.config import Config

    kwargs["config"] = Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client("sqs", **kwargs)


def _ses(store: Store, esp: EspSettings, wait_seconds: int, sqs: Any = None) -> EventsReport:
    if not esp.queue_url:
        raise EspError("SES events are pulled from SQS: `settings esp --queue-url URL` first")
    from botocore.exceptions import BotoCoreError, ClientError

    sqs = sqs if sqs is not None else _sqs_client(esp)
    report = EventsReport()
    try:
        for _ in range(PAGES_MAX):
            answer = sqs.receive_message(QueueUrl=esp.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds)
            messages = answer.get("Messages") or []
            if not messages:
                break
            done = []
            for message in messages:
                try:
                    events = events_from_document(store, json.loads(message.get("Body") or ""), esp, "sqs")
                except (ValueError, EventFormatError) as exc:
                    report.errors.append(f"SQS message {str(message.get('MessageId'))[:40]}: {str(exc)[:120]}")
                    continue
                part = record_events(store, events, origin="ses:sqs", window_days=esp.window_days)
                report.merge(part)
                if not part.refused:
                    done.append(message)
            for start in range(0, len(done), 10):
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start:start + 10])]
                sqs.delete_message_batch(QueueUrl=esp.queue_url, Entries=entries)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise EspError(f"SQS refused the request ({code}): check the queue URL, region and credentials") from None
    except BotoCoreError as exc:
        from ..errors import EspUnavailable

        raise EspUnavailable(f"SQS cannot be reached: {str(exc)[:120]}") from None
    return report


def sync_events(store: Store, esp: EspSettings | None = None, *, wait_seconds: int = 5,
                sleep: Callable[[float], None] = time.sleep, sqs: Any = None) -> EventsReport:
    """Pull the new events of the configured ESP, record them, advance the cursor; running it
    again records nothing twice.  ``wait_seconds``: SQS long polling; ``sleep``: the wait
    between retries (tests); ``sqs``: a boto3 SQS client to use instead of one made here.

    >>> sync_events(store).to_dict()["recorded"]   # doctest: +SKIP
    3
    """
    esp = esp if esp is not None else require_esp_settings(store)
    if esp.provider == "ses":
        return _ses(store, esp, wait_seconds, sqs)
    if esp.provider == "sendgrid":
        client = ApiClient(esp.base_url(), headers={"Authorization": f"Bearer {esp.credential()}"}, sleep=sleep,
                           name="SendGrid's API")
        return _sendgrid(store, esp, client)
    if esp.provider == "mailgun":
        client = ApiClient(esp.base_url(), basic=("api", esp.credential()), sleep=sleep, name="Mailgun's API")
        return _mailgun(store, esp, client)
    client = ApiClient(esp.base_url(), headers={"X-Postmark-Server-Token": esp.credential()}, sleep=sleep,
                       name="Postmark's API")
    return _postmark(store, esp, client)


def check_esp(esp: EspSettings, *, sleep: Callable[[float], None] = time.sleep) -> list[tuple[bool, str]]:
    """``settings test``'s lines for the ESP: one cheap authenticated read of its API (or SQS
    queue), as (ok, line).

    >>> check_esp(load_esp_settings(store))   # doctest: +SKIP
    [(True, 'ESP postmark: the API answered (https://api.postmarkapp.com)')]
    """
    where = esp.queue_url if esp.provider == "ses" else esp.base_url()
    try:
        if esp.provider == "ses":
            if not esp.queue_url:
                raise EspError("no --queue-url set")
            _sqs_client(esp).get_queue_attributes(QueueUrl=esp.queue_url, AttributeNames=["QueueArn"])
        elif esp.provider == "sendgrid":
            ApiClient(esp.base_url(), headers={"Authorization": f"Bearer {esp.credential()}"}, sleep=sleep, retries=1,
                      name="SendGrid's API").get("/v3/suppression/bounces", {"limit": 1})
        elif esp.provider == "mailgun":
            if not esp.domain:
                raise EspError("no --domain set")
            ApiClient(esp.base_url(), basic=("api", esp.credential()), sleep=sleep, retries=1,
                      name="Mailgun's API").get(f"/v3/{esp.domain}/events", {"limit": 1})
        else:
            ApiClient(esp.base_url(), headers={"X-Postmark-Server-Token": esp.credential()}, sleep=sleep, retries=1,
                      name="Postmark's API").get("/bounces", {"count": 1, "offset": 0})
    except NewsletterKitError as exc:
        return [(False, f"ESP {esp.provider}: {exc}")]
    except Exception as exc:  # boto3's own errors: said in one line, never a traceback
        return [(False, f"ESP {esp.provider}: {type(exc).__name__}: {str(exc)[:160]}")]
    return [(True, f"ESP {esp.provider}: the API answered ({where})")]
