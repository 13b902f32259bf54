"""DKIM: the private key the settings name, the DNS record that publishes it, and signing.

The settings store the *path* of a PEM private key (RSA or Ed25519), never the key; it is read
when a run starts. :class:`DkimSigner` signs the bytes :mod:`newsletter_kit.messages` rendered,
with dkimpy (relaxed/relaxed canonicalisation, SHA-256), covering the headers receivers and
RFC 8058 ask for: From (signed twice, so no second From can be added), To, Subject, Date,
Message-ID, Reply-To and List-Id when present, List-Unsubscribe, List-Unsubscribe-Post and the
MIME headers.

dkimpy parses the key and computes RSA signatures in pure Python (about 15 ms a message here).
PKCS#1 v1.5 signatures are deterministic, so for the keys loaded here the parse is cached and
the private-key operation handed to OpenSSL (``cryptography``): the same bytes, about ten times
faster (see :func:`_register_rsa`; a test compares both).

Example::

    >>> from cryptography.hazmat.primitives.asymmetric import ed25519
    >>> key = DkimKey.from_private_key(ed25519.Ed25519PrivateKey.generate())
    >>> key
    DkimKey(ed25519)
    >>> key.dns_record().startswith("v=DKIM1; k=ed25519; p=")
    True
    >>> signer = DkimSigner(key, selector="nk", domain="example.org")
    >>> signed = signer.sign(b"From: a@example.org\\r\\nTo: b@example.org\\r\\n"
    ...                      b"Subject: hi\\r\\n\\r\\nHello\\r\\n")
    >>> signed.startswith(b"DKIM-Signature: v=1; a=ed25519-sha256;")
    True
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ValidationError

#: The headers signed when the message has them, in this order; ``from`` is listed twice
#: (over-signed) so that a From added in transit breaks the signature.
SIGNED_HEADERS: tuple[str, ...] = (
    "from", "to", "subject", "date", "message-id", "reply-to", "list-id", "list-unsubscribe",
    "list-unsubscribe-post", "mime-version", "content-type", "content-transfer-encoding",
    "x-newsletter-campaign",
)
_DKIMPY_LOG = logging.getLogger("dkimpy")  # given to dkimpy, which otherwise looks it up per message
_SELECTOR = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*$")
_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


def validate_selector(selector: str) -> str:
    """A DKIM selector: one or more DNS labels (``s2026``, ``news.eu``).

    Example::

        >>> validate_selector("s2026")
        's2026'
    """
    selector = (selector or "").strip()
    if not _SELECTOR.match(selector) or len(selector) > 200:
        raise ValidationError(f"{selector!r} is not a valid DKIM selector (letters, digits, - and .)",
                              "dkim_selector")
    return selector


class DkimKey:
    """A DKIM private key in the forms dkimpy and DNS need; its repr never shows the key."""

    def __init__(self, algorithm: str, bits: int, private: bytes, public_b64: str,
                 native: Any = None):
        self.algorithm = algorithm  # "rsa" or "ed25519"
        self.bits = bits
        self._private = private  # what dkimpy takes: PKCS#1 PEM, or the base64 Ed25519 seed
        self.public_b64 = public_b64
        self._native = native  # the cryptography key object (RSA: the fast signature)

    def __repr__(self) -> str:
        return f"DkimKey(rsa, {self.bits} bits)" if self.algorithm == "rsa" else "DkimKey(ed25519)"

    @property
    def signature_algorithm(self) -> bytes:
        """The DKIM ``a=`` tag value."""
        return b"rsa-sha256" if self.algorithm == "rsa" else b"ed25519-sha256"

    def dns_record(self) -> str:
        """The TXT record to publish at ``SELECTOR._domainkey.DOMAIN``."""
        return f"v=DKIM1; k={self.algorithm}; p={self.public_b64}"

    @classmethod
    def from_private_key(cls, key: Any) -> DkimKey:
        """From a ``cryptography`` RSA or Ed25519 private key object."""
        from cryptography.hazmat.primitives import serialization as ser
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

        if isinstance(key, rsa.RSAPrivateKey):
            private = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL,
                                        ser.NoEncryption())
            public = key.public_key().public_bytes(ser.Encoding.DER,
                                                   ser.PublicFormat.SubjectPublicKeyInfo)
            dkim_key = cls("rsa", key.key_size, private, base64.b64encode(public).decode(), key)
            _register_rsa(key)
            return dkim_key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            seed = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
            public = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
            return cls("ed25519", 256, base64.b64encode(seed), base64.b64encode(public).decode(), key)
        raise ValidationError("a DKIM key must be an RSA or Ed25519 private key", "dkim_key_file")


def load_key(path: str | Path) -> DkimKey:
    """Read a PEM private key file (RSA or Ed25519, unencrypted) for DKIM.

    Raises :class:`ValidationError` (field ``dkim_key_file``) with one line saying what is wrong.

    Example::

        >>> load_key("/nonexistent.pem")
        Traceback (most recent call last):
        ...
        newsletter_kit.errors.ValidationError: DKIM key file /nonexistent.pem cannot be read: No such file or directory
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization as ser

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValidationError(f"DKIM key file {path} cannot be read: {exc.strerror or exc}",
                              "dkim_key_file") from None
    try:
        key = ser.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValidationError(f"DKIM key file {path} is encrypted: newsletter_kit needs an "
                              "unencrypted PEM key (keep the file readable only by you)",
                              "dkim_key_file") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValidationError(f"DKIM key file {path} is not a PEM private key "
                              f"({type(exc).__name__})", "dkim_key_file") from None
    try:
        return DkimKey.from_private_key(key)
    except ValidationError:
        raise ValidationError(f"DKIM key file {path} holds a {type(key).__name__}: use an RSA "
                              "(2048 bits) or Ed25519 key", "dkim_key_file") from None


class DkimSigner:
    """Signs rendered messages for one selector and domain; thread-safe (one per run).

    Example::

        >>> from cryptography.hazmat.primitives.asymmetric import ed25519
        >>> signer = DkimSigner(DkimKey.from_private_key(ed25519.Ed25519PrivateKey.generate()),
        ...                     selector="nk", domain="example.org")
        >>> signer
        DkimSigner(nk._domainkey.example.org, DkimKey(ed25519))
    """

    def __init__(self, key: DkimKey, selector: str, domain: str,
                 headers: tuple[str, ...] = SIGNED_HEADERS):
        self.key = key
        self.selector = validate_selector(selector)
        self.domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
        self._wanted = tuple(h.encode() for h in headers)
        self._include: dict[frozenset[bytes], list[bytes]] = {}

    def __repr__(self) -> str:
        return f"DkimSigner({self.selector}._domainkey.{self.domain}, {self.key!r})"

    def _include_headers(self, message: bytes) -> list[bytes]:
        """The wanted headers present in the message (a campaign's messages share one list)."""
        end = message.find(b"\r\n\r\n")
        present = frozenset(m.lower() for m in _HEADER_NAME.findall(message, 0, max(end, 0)))
        include = self._include.get(present)
        if include is None:
            include = [h for h in self._wanted if h in present] + [b"from"]
            self._include[present] = include
        return include

    def signature(self, message: bytes) -> bytes:
        """The ``DKIM-Signature:`` header line(s) for ``message``, ending in CRLF."""
        import dkim

        signer = dkim.DKIM(message, logger=_DKIMPY_LOG, signature_algorithm=self.key.signature_algorithm,
                           linesep=b"\r\n")
        try:
            return signer.sign(self.selector.encode(), self.domain.encode(),
                               self.key._private, canonicalize=(b"relaxed", b"relaxed"),
                               include_headers=self._include_headers(message))
        except dkim.DKIMException as exc:
            raise ValidationError(f"DKIM signing failed: {exc}", "dkim_key_file") from None

    def sign(self, message: bytes) -> bytes:
        """``message`` with its DKIM-Signature prepended: the bytes to hand to the server."""
        return self.signature(message) + message


def signer_for(smtp: Any, from_addr: str | None = None) -> DkimSigner | None:
    """The signer a send run uses, per the SMTP settings; None when DKIM is off.

    The key file is read now (once per run), so a missing or changed key stops the run before
    anything is sent. The domain is ``dkim_domain``, else the domain of ``from_addr`` (the
    campaign's From), else the settings' From domain.

    Example::

        >>> from newsletter_kit.settings import SmtpSettings
        >>> signer_for(SmtpSettings(host="h", port=25, from_addr="a@example.org", daily_limit=1)) is None
        True
    """
    if not (smtp.dkim_selector and smtp.dkim_key_file):
        return None
    from email.utils import parseaddr

    domain = smtp.dkim_domain or parseaddr(from_addr or smtp.from_addr)[1].rpartition("@")[2]
    return DkimSigner(load_key(smtp.dkim_key_file), smtp.dkim_selector, domain or smtp.signing_domain)


# --- verification (the pre-flight check and the tests) ----------------------------------------

DnsTxt = Callable[[str], list[str]]


def verify(message: bytes, txt_lookup: DnsTxt) -> bool:
    """Whether the message's first DKIM-Signature verifies, with keys read by ``txt_lookup``.

    ``txt_lookup(name)`` returns the TXT strings published at ``name`` (each record's strings
    joined), e.g. from a dnspython resolver pointed at a given server.
    """
    import dkim

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        records = txt_lookup(name.decode("ascii").rstrip("."))
        return records[0].encode() if records else b""

    try:
        return bool(dkim.verify(message, dnsfunc=dnsfunc))
    except dkim.DKIMException:
        return False


def published_key(record: str) -> str | None:
    """The ``p=`` value of a DKIM key record, or None when it has none.

    Example::

        >>> published_key("v=DKIM1; k=rsa; p=MIIB AQAB")
        'MIIBAQAB'
    """
    for tag in record.split(";"):
        name, sep, value = tag.partition("=")
        if sep and name.strip() == "p":
            return re.sub(r"\s+", "", value)
    return None


# --- the RSA private-key operation through OpenSSL -------------------------------------------

_RSA_KEYS: dict[int, Any] = {}  # modulus -> the cryptography key object
_PARSED: dict[bytes, dict[str, int]] = {}  # PKCS#1 PEM -> dkimpy's parsed form
_install_lock = threading.Lock()


def _register_rsa(key: Any) -> None:
    """Let dkimpy sign with this RSA key through OpenSSL: the same bytes, ten times faster.

    dkimpy parses the PEM key (in pure Python) and computes the signature with Python integers
    for every message; for the keys registered here both steps are replaced, in dkimpy's module,
    by a cached parse and OpenSSL's operation. PKCS#1 v1.5 is deterministic, so the signature
    bytes are the same (tests/test_dkim.py compares them); other keys take dkimpy's own path.
    """
    import dkim

    with _install_lock:
        _RSA_KEYS[key.private_numbers().public_numbers.n] = key
        if getattr(dkim.RSASSA_PKCS1_v1_5_sign, "_newsletter_kit", False):
            return
        pure_sign, pure_parse = dkim.RSASSA_PKCS1_v1_5_sign, dkim.parse_pem_private_key

        def parse_pem_private_key(data: bytes) -> dict[str, int]:
            parsed = _PARSED.get(data)
            if parsed is None:
                parsed = pure_parse(data)
                if parsed["modulus"] in _RSA_KEYS:
                    _PARSED[data] = parsed
            return parsed

        def rsassa_pkcs1_v1_5_sign(hash: Any, private_key: dict[str, int]) -> bytes:
            native = _RSA_KEYS.get(private_key["modulus"])
            if native is None or hash.name not in ("sha256", "sha1"):
                return bytes(pure_sign(hash, private_key))
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding, utils

            algorithm = hashes.SHA256() if hash.name == "sha256" else hashes.SHA1()
            return bytes(native.sign(hash.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm)))

        rsassa_pkcs1_v1_5_sign._newsletter_kit = True  # type: ignore[attr-defined]
        rsassa_pkcs1_v1_5_sign.pure_python = pure_sign  # type: ignore[attr-defined]
        dkim.parse_pem_private_key = parse_pem_private_key
        dkim.RSASSA_PKCS1_v1_5_sign = rsassa_pkcs1_v1_5_sign
