"""ESP event samples shaped as each provider documents them, and the keys to sign them with
(the tests' own: an RSA certificate standing in for SNS's, an ECDSA key for SendGrid, an HMAC
key for Mailgun).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# --- SES / SNS ---

def ses_bounce(address: str, *, btype: str = "Permanent", sub: str = "General", ses_id: str = "ses-1",
               status: str = "5.1.1", diag: str = "smtp; 550 5.1.1 user unknown", tag: str | None = None,
               message_id: str | None = None) -> dict[str, Any]:
    mail: dict[str, Any] = {"timestamp": now(), "messageId": ses_id, "source": "news@example.org",
                            "destination": [address]}
    if tag:
        mail["tags"] = {"nk_delivery": [tag], "ses:configuration-set": ["news"]}
    if message_id:
        mail["headersTruncated"] = False
        mail["headers"] = [{"name": "Message-ID", "value": message_id}]
    return {"notificationType": "Bounce", "mail": mail,
            "bounce": {"bounceType": btype, "bounceSubType": sub, "feedbackId": f"fb-{uuid.uuid4().hex}",
                       "timestamp": now(), "bouncedRecipients": [
                           {"emailAddress": address, "action": "failed", "status": status, "diagnosticCode": diag}]}}


def ses_complaint(address: str, *, ses_id: str = "ses-1", tag: str | None = None) -> dict[str, Any]:
    mail: dict[str, Any] = {"timestamp": now(), "messageId": ses_id, "destination": [address]}
    if tag:
        mail["tags"] = {"nk_delivery": [tag]}
    return {"notificationType": "Complaint", "mail": mail,
            "complaint": {"feedbackId": f"fb-{uuid.uuid4().hex}", "timestamp": now(),
                          "complaintFeedbackType": "abuse", "complainedRecipients": [{"emailAddress": address}]}}


class SnsSigner:
    """Signs SNS envelopes as AWS does, with a self-made certificate."""

    def __init__(self, folder: Path):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(start)
                .not_valid_after(start + dt.timedelta(days=30)).sign(self.key, hashes.SHA256()))
        self.cert_file = folder / "sns-cert.pem"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def envelope(self, message: dict[str, Any] | str, version: str = "1") -> dict[str, Any]:
        env = {"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": TOPIC,
               "Message": message if isinstance(message, str) else json.dumps(message),
               "Timestamp": now(), "SignatureVersion": version, "SigningCertURL": CERT_URL,
               "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe"}
        text = "".join(f"{k}\n{env[k]}\n" for k in ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
                       if k in env)
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        env["Signature"] = base64.b64encode(self.key.sign(text.encode(), padding.PKCS1v15(), digest)).decode()
        return env


# --- SendGrid ---

def sendgrid_event(address: str, event: str = "bounce", *, sg_id: str = "sg1", tag: str | None = None,
                   **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"email": address, "timestamp": int(dt.datetime.now().timestamp()), "event": event,
                            "sg_event_id": f"ev-{uuid.uuid4().hex}", "sg_message_id": f"{sg_id}.filterdrecv-1-2"}
    if event == "bounce":
        item.update({"type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 The email account does not exist"})
    if tag:
        item["nk_delivery"] = tag
    item.update(extra)
    return item


class SendGridSigner:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.public_key = base64.b64encode(self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()

    def signed(self, events: list[dict[str, Any]], tamper: bool = False) -> dict[str, Any]:
        body = json.dumps(events)
        stamp = str(int(dt.datetime.now().timestamp()))
        sig = base64.b64encode(self.key.sign(stamp.encode() + body.encode(), ec.ECDSA(hashes.SHA256()))).decode()
        if tamper:
            body = body.replace("bounce", "bounce ")
        return {"headers": {"X-Twilio-Email-Event-Webhook-Signature": sig,
                            "X-Twilio-Email-Event-Webhook-Timestamp": stamp}, "body": body}


# --- Mailgun ---

def mailgun_event(address: str, event: str = "failed", *, severity: str = "permanent", tag: str | None = None,
                  message_id: str | None = None, code: int = 550, message: str = "5.1.1 user unknown") -> dict[str, Any]:
    item: dict[str, Any] = {"id": uuid.uuid4().hex, "event": event, "recipient": address,
                            "timestamp": dt.datetime.now().timestamp(), "log-level": "error",
                            "message": {"headers": {"message-id": (message_id or "x@mg.example.org").strip("<>")}}}
    if event == "failed":
        item.update({"severity": severity, "reason": "bounce",
                     "delivery-status": {"code": code, "message": message, "description": ""}})
    if tag:
        item["user-variables"] = {"nk_delivery": tag}
    return item


def mailgun_webhook(event: dict[str, Any], key: str, token: str | None = None) -> dict[str, Any]:
    stamp, token = str(int(dt.datetime.now().timestamp())), token or uuid.uuid4().hex
    sig = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": stamp, "token": token, "signature": sig}, "event-data": event}


# --- Postmark ---

_IDS = iter(range(10_000_000, 99_999_999))


def postmark_bounce(address: str, btype: str = "HardBounce", *, tag: str | None = None,
                    details: str = "smtp;550 5.1.1 The email account that you tried to reach does not exist",
                    record: str = "Bounce") -> dict[str, Any]:
    item: dict[str, Any] = {"RecordType": record, "ID": next(_IDS), "Type": btype, "TypeCode": 1, "Name": btype,
                            "MessageID": str(uuid.uuid4()), "Description": "", "Details": details, "Email": address,
                            "From": "news@example.org", "BouncedAt": now(), "Inactive": True}
    if tag:
        item["Metadata"] = {"nk_delivery": tag}
    return item
