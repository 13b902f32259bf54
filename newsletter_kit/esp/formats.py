"""Saved ESP data -> events: what each JSON document is, and its signature checked where the
format carries one.

Read: an SNS envelope (its signature checked) or bare SES JSON, also as the mail message an
Email-JSON subscription sends (its text is the envelope); a SendGrid webhook array, bare
or saved with its raw body and the two signature headers (``{"headers": {...}, "body": "..."}``)
or a suppression list page (the list named by the file: ``blocks.json``...); a Mailgun webhook
body (HMAC checked, each token taken once) or Events page; a Postmark object or API page.  A
file may hold one document, a JSON array of them, or one per line (NDJSON).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import NewsletterKitError
from ..store import Store, now_iso
from . import mailgun, postmark, sendgrid, ses
from .config import EspSettings
from .events import EspEvent, ignored
from .signatures import check_mailgun, check_sendgrid, check_sns

__all__ = ["EventFormatError", "events_from_document", "read_documents", "read_file"]

#: A saved file larger than this is refused (a bounded read, whatever the file claims).
FILE_MAX = 512 * 1024 * 1024
_SENDGRID_SIGNATURE = "x-twilio-email-event-webhook-signature"
_SENDGRID_TIMESTAMP = "x-twilio-email-event-webhook-timestamp"


class EventFormatError(NewsletterKitError):
    """A saved file is not JSON, or not a format of any provider we read."""


def _refused(provider: str, document: Any, why: str) -> EspEvent:
    ident = document.get("MessageId") if isinstance(document, dict) else None
    key = str(ident or hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:32])
    event = ignored(provider, key, None, why)
    event.refused = why
    return event


def read_file(path: Path) -> bytes:
    """A saved file's bytes (bounded)."""
    try:
        if path.stat().st_size > FILE_MAX:
            raise EventFormatError(f"{path.name}: larger than {FILE_MAX // 2**20} MB")
        return path.read_bytes()
    except OSError as exc:
        raise EventFormatError(f"{path.name}: {exc.strerror or exc}") from None


def read_documents(path: Path, data: bytes | None = None) -> Iterator[Any]:
    """The JSON documents of one file: the whole file, else one per non-empty line."""
    data = read_file(path) if data is None else data
    try:
        yield json.loads(data)
        return
    except ValueError:
        pass
    body = _mailed_json(data)
    if body is not None:  # an SNS Email-JSON subscription's message, saved as .eml
        yield body
        return
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError:
            raise EventFormatError(f"{path.name}: line {number} is not JSON") from None


def _mailed_json(data: bytes) -> Any:
    """The JSON document a mail message carries as its text (SNS's Email-JSON subscription), or
    None when ``data`` is no such message."""
    head = data[:4096]
    if b"\n\n" not in head.replace(b"\r\n", b"\n") or b":" not in head.split(b"\n", 1)[0]:
        return None
    import email
    import email.policy

    message = email.message_from_bytes(data, policy=email.policy.default)
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return None
    try:
        return json.loads(part.get_content())  # type: ignore[attr-defined]
    except (ValueError, LookupError):
        return None


def _suppression_list(name: str) -> str:
    for list_name in sendgrid.SUPPRESSION_LISTS:
        if list_name.replace("_", "") in name.lower().replace("_", "").replace("-", ""):
            return list_name
    return "bounces"


def _sns(document: dict[str, Any], esp: EspSettings | None) -> list[EspEvent]:
    why = check_sns(document, esp.sns_cert if esp else None)
    if why:
        return [_refused("ses", document, why)]
    if document.get("Type") != "Notification":
        return [ignored("ses", str(document.get("MessageId")), None,
                        f"SNS {str(document.get('Type'))[:40]}: confirm it at its SubscribeURL")]
    try:
        inner = json.loads(str(document.get("Message", "")))
    except ValueError:
        return [ignored("ses", str(document.get("MessageId")), None, "SNS message that is not JSON")]
    return ses.parse_ses(inner) if ses.is_ses(inner) else [
        ignored("ses", str(document.get("MessageId")), None, "SNS message that is no SES notification")]


def _sendgrid_signed(document: dict[str, Any], esp: EspSettings | None) -> list[EspEvent]:
    headers = {str(k).lower(): str(v) for k, v in (document.get("headers") or {}).items()}
    body = document.get("body")
    raw = body.encode() if isinstance(body, str) else b""
    why = check_sendgrid(esp.public_key if esp else None, headers.get(_SENDGRID_SIGNATURE),
                         headers.get(_SENDGRID_TIMESTAMP), raw)
    if why:
        return [_refused("sendgrid", {"body": body}, why)]
    try:
        items = json.loads(raw)
    except ValueError:
        return [_refused("sendgrid", {"body": body}, "the signed SendGrid body is not JSON")]
    return sendgrid.parse_sendgrid_events(items if isinstance(items, list) else [items])


def _mailgun_webhook(store: Store, document: dict[str, Any], esp: EspSettings | None) -> list[EspEvent]:
    signature = document.get("signature")
    event = mailgun.parse_mailgun_event(document["event-data"])
    why = check_mailgun(signature, esp.signing_key() if esp else None)
    token = str(signature.get("token")) if isinstance(signature, dict) else ""
    if why is None:
        seen = store.conn.execute("SELECT seen_at FROM esp_tokens WHERE provider = 'mailgun' AND token = ?",
                                  (token,)).fetchone()
        known = store.conn.execute("SELECT 1 FROM esp_events WHERE provider = 'mailgun' AND event_id = ?",
                                   (event.event_id,)).fetchone()
        if seen and not known:
            why = "the Mailgun token was used before (a replayed webhook)"
        else:
            store.conn.execute("INSERT OR IGNORE INTO esp_tokens (provider, token, seen_at) VALUES ('mailgun', ?, ?)",
                               (token, now_iso()))
    if why:
        event.refused = why
    return [event]


def events_from_document(store: Store, document: Any, esp: EspSettings | None, name: str = "") -> list[EspEvent]:
    """The events of one saved JSON document (see the module's list of formats).

    >>> from newsletter_kit.store import open_store
    >>> [e.provider for e in events_from_document(open_store(":memory:"),
    ...     {"ID": 7, "Type": "HardBounce", "Email": "a@example.org", "Details": "user unknown"}, None)]
    ['postmark']
    """
    if isinstance(document, list):
        if document and all(sendgrid.is_sendgrid_event(i) for i in document if isinstance(i, dict)) and any(
                sendgrid.is_sendgrid_event(i) for i in document):
            return sendgrid.parse_sendgrid_events(document)
        if document and all(isinstance(i, dict) and "email" in i and "created" in i for i in document):
            return sendgrid.parse_suppressions(_suppression_list(name), document)
        out: list[EspEvent] = []
        for item in document:
            out += events_from_document(store, item, esp, name)
        return out
    if not isinstance(document, dict):
        raise EventFormatError(f"{name}: not an ESP event (a JSON {type(document).__name__})")
    if "Signature" in document and "SignatureVersion" in document and "Type" in document:
        return _sns(document, esp)
    if ses.is_ses(document):
        return ses.parse_ses(document)
    if isinstance(document.get("headers"), dict) and isinstance(document.get("body"), str):
        return _sendgrid_signed(document, esp)
    if sendgrid.is_sendgrid_event(document):
        return sendgrid.parse_sendgrid_events([document])
    if mailgun.is_mailgun_webhook(document):
        return _mailgun_webhook(store, document, esp)
    if mailgun.is_mailgun_page(document):
        return [mailgun.parse_mailgun_event(i) for i in document["items"] if isinstance(i, dict)]
    if mailgun.is_mailgun_event(document):
        return [mailgun.parse_mailgun_event(document)]
    if postmark.is_postmark_page(document):
        return [postmark.parse_postmark(i) for i in document["Bounces"] if isinstance(i, dict)]
    if postmark.is_postmark(document):
        return [postmark.parse_postmark(document)]
    raise EventFormatError(f"{name}: not a format of SES, SendGrid, Mailgun or Postmark")
