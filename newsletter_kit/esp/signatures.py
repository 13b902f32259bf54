"""Checking what providers sign: SNS messages (v1 SHA1withRSA, v2 SHA256withRSA, against the
certificate at a validated AWS URL or a file), SendGrid's Event Webhook (ECDSA P-256 over
timestamp + raw body) and Mailgun's webhooks (HMAC-SHA256 of timestamp + token, each token
taken once).  Each check returns None when the signature holds, else why it does not.

>>> check_mailgun({"timestamp": "1", "token": "t", "signature": "00"}, "key")
'the Mailgun signature does not match (is the webhook signing key right?)'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import urllib.parse
from pathlib import Path
from typing import Any

__all__ = ["SNS_CERT_HOST", "check_mailgun", "check_sendgrid", "check_sns", "sns_cert_url_problem"]

#: Where SNS signing certificates may come from (and nowhere else).
SNS_CERT_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?$")
_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_CERT_MAX = 64 * 1024
_CERTS: dict[str, bytes] = {}


def sns_cert_url_problem(url: Any) -> str | None:
    """Why ``url`` is not an SNS signing certificate URL we may fetch, or None.

    >>> sns_cert_url_problem("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem") is None
    True
    >>> sns_cert_url_problem("https://sns.eu-west-1.amazonaws.com.evil.example/x.pem")
    'the SigningCertURL is not on an sns.<region>.amazonaws.com host'
    """
    if not isinstance(url, str):
        return "the SNS message has no SigningCertURL"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https":
        return "the SigningCertURL is not https"
    if parts.username or parts.password or parts.port not in (None, 443) or not SNS_CERT_HOST.match(parts.hostname or ""):
        return "the SigningCertURL is not on an sns.<region>.amazonaws.com host"
    if not parts.path.endswith(".pem"):
        return "the SigningCertURL does not name a .pem certificate"
    return None


def _sns_string(message: dict[str, Any]) -> bytes:
    keys = _NOTIFICATION_KEYS if message.get("Type") == "Notification" else _SUBSCRIPTION_KEYS
    return "".join(f"{k}\n{message[k]}\n" for k in keys if message.get(k) is not None).encode()


def _fetch_cert(url: str, timeout: float) -> bytes:
    if url in _CERTS:
        return _CERTS[url]
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (validated AWS host)
        pem = response.read(_CERT_MAX + 1)
    if len(pem) > _CERT_MAX:
        raise ValueError("the certificate is larger than a certificate can be")
    _CERTS[url] = pem
    return pem


def check_sns(message: dict[str, Any], cert_file: str | None = None, *, timeout: float = 10.0) -> str | None:
    """None when the SNS message's signature holds, else why not.  The certificate is the file
    ``cert_file`` when given (set with ``settings esp --sns-cert``), else fetched once from the
    message's validated AWS URL and cached."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    version = str(message.get("SignatureVersion", ""))
    if version not in ("1", "2"):
        return f"unknown SNS SignatureVersion {version[:10]!r}"
    problem = sns_cert_url_problem(message.get("SigningCertURL"))
    if problem:
        return problem
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except ValueError:
        return "the SNS Signature is not base64"
    try:
        pem = Path(cert_file).read_bytes()[: _CERT_MAX] if cert_file else _fetch_cert(str(message["SigningCertURL"]),
                                                                                      timeout)
        key = x509.load_pem_x509_certificate(pem).public_key()
    except (OSError, ValueError) as exc:
        return f"the SNS signing certificate could not be read: {str(exc)[:120]}"
    if not isinstance(key, rsa.RSAPublicKey):
        return "the SNS signing certificate has no RSA key"
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 (SNS v1 is SHA1withRSA)
    try:
        key.verify(signature, _sns_string(message), padding.PKCS1v15(), digest)
    except InvalidSignature:
        return "the SNS signature does not match"
    return None


def check_sendgrid(public_key: str | None, signature: str | None, timestamp: str | None, body: bytes) -> str | None:
    """None when SendGrid's ECDSA signature over ``timestamp + body`` holds, else why not.
    ``public_key`` is the verification key SendGrid shows (base64 DER, or PEM)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not public_key:
        return "signed by SendGrid, but no verification key is set (settings esp --public-key)"
    if not signature or not timestamp:
        return "the SendGrid signature or timestamp header is missing"
    try:
        text = public_key.strip()
        key = (serialization.load_pem_public_key(text.encode()) if text.startswith("-----")
               else serialization.load_der_public_key(base64.b64decode(text)))
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return "the SendGrid verification key or signature cannot be read"
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return "the SendGrid verification key is not an ECDSA key"
    try:
        key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "the SendGrid signature does not match"
    return None


def check_mailgun(signature: Any, signing_key: str | None) -> str | None:
    """None when Mailgun's HMAC-SHA256 of timestamp + token matches, else why not (the token's
    reuse is checked by the caller, against the store)."""
    if not signing_key:
        return "signed by Mailgun, but no webhook signing key is set (settings esp --signing-key-env)"
    if not isinstance(signature, dict):
        return "the Mailgun signature is missing"
    timestamp, token, given = (str(signature.get(k, "")) for k in ("timestamp", "token", "signature"))
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not token or not hmac.compare_digest(expected, given.lower()):
        return "the Mailgun signature does not match (is the webhook signing key right?)"
    return None
