"""Pre-flight deliverability check: will mail sent with these settings be accepted?

Since 2024 Gmail and Yahoo refuse or spam-folder bulk mail without SPF and DKIM, a DMARC record,
a From domain aligned with the SPF or DKIM domain, and one-click unsubscribe. :func:`preflight`
reads the saved settings, asks DNS (the system resolver, or the server given), and returns one
:class:`Finding` per check, in this order:

- ``spf``: the SPF record of the envelope domain (the bounce address's) authorises every
  address the SMTP server name resolves to (evaluated by pyspf, RFC 7208);
- ``dkim``: with signing configured, a test signature made with the private key verifies
  (dkimpy) against the key published at ``SELECTOR._domainkey.DOMAIN``; without, a warning
  that the relay must sign;
- ``dmarc``: a DMARC record for the From domain, or its organisational domain, and its policy;
- ``alignment``: the From domain aligned, as DMARC evaluates it (relaxed: same organisational
  domain; strict with ``aspf=s``/``adkim=s``), with a passing SPF or DKIM domain;
- ``mx``: the envelope domain receives mail (MX, or an address record as fallback), so
  bounces reach the bounce mailbox;
- ``unsubscribe``: one-click unsubscribe (RFC 8058) is possible: an https URL is set;
- ``volume``: the daily limit against the 5,000-a-day bulk-sender line and free providers'
  500 a day.

DNS goes through dnspython; the organisational domain comes from the Public Suffix List that
``publicsuffixlist`` bundles (no download at run time; a name under an unlisted top-level
domain such as ``.example`` has the last label as its public suffix). Those libraries are
imported only when a check runs, so other commands do not pay for them.

Example::

    >>> from newsletter_kit.store import open_store
    >>> from newsletter_kit.settings import update_smtp_settings
    >>> store = open_store(":memory:")
    >>> _ = update_smtp_settings(store, host="smtp.shop.example", port=587, tls="none",
    ...     daily_limit=400, from_addr="news@shop.example")
    >>> findings = preflight(store, nameserver="127.0.0.1:5353")  # doctest: +SKIP
    >>> [(f.check, f.status) for f in findings]  # doctest: +SKIP
    [('spf', 'pass'), ('dkim', 'warn'), ('dmarc', 'pass'), ('alignment', 'pass'), ...]
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

from .errors import ConnectionFailed, NewsletterKitError, ValidationError
from .settings import (
    FREE_PROVIDER_LIMIT,
    SmtpSettings,
    is_free_provider,
    load_bounce_settings,
    require_smtp_settings,
)
from .store import Store

#: Gmail's and Yahoo's bulk-sender line: messages a day to their users.
BULK_SENDER_LINE = 5000
DNS_TIMEOUT = 4.0
STATUSES = ("pass", "warn", "fail")


@dataclass(frozen=True)
class Finding:
    """One check's verdict: ``status`` is pass, warn or fail; ``detail`` says what to do.

    Example::

        >>> Finding("mx", "pass", "shop.example receives mail at mx.shop.example.").to_dict()
        {'check': 'mx', 'status': 'pass', 'detail': 'shop.example receives mail at mx.shop.example.'}
    """

    check: str
    status: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        """``{"check", "status", "detail"}``, as ``check --json`` prints each finding."""
        return {"check": self.check, "status": self.status, "detail": self.detail}


class _DnsFailure(NewsletterKitError):
    """A lookup got an error answer (SERVFAIL, refused): that check fails, the others go on."""


# --- DNS ----------------------------------------------------------------------------------


def parse_nameserver(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (an IP address; IPv6 as ``[::1]:5353``) → (address, port).

    Example::

        >>> parse_nameserver("127.0.0.1:5353"), parse_nameserver("[::1]"), parse_nameserver("::1")
        (('127.0.0.1', 5353), ('::1', 53), ('::1', 53))
    """
    text = (text or "").strip()
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (rest or "53")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValidationError(f"--nameserver {text!r} must be an IP address, optionally with "
                              ":PORT (e.g. 127.0.0.1:5353)", "nameserver") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValidationError(f"--nameserver {text!r} has an invalid port", "nameserver")
    return address, int(port)


def make_resolver(nameserver: str | None = None, timeout: float = DNS_TIMEOUT) -> Any:
    """A dnspython resolver: the system's, or one that asks only ``nameserver`` (HOST[:PORT])."""
    import dns.resolver

    if nameserver:
        address, port = parse_nameserver(nameserver)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [address]
        resolver.port = port
    else:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            raise ConnectionFailed("this machine has no DNS resolver configured: pass "
                                   "--nameserver HOST[:PORT]") from None
    resolver.timeout = resolver.lifetime = timeout
    return resolver


class Dns:
    """The few lookups the checks make, through one resolver; names are IDNA-encoded.

    A server that does not answer raises :class:`ConnectionFailed` (the whole check stops:
    every finding would say the same); an error answer fails only the check that asked.
    """

    def __init__(self, resolver: Any):
        self.resolver = resolver
        port = getattr(resolver, "port", 53)
        self.where = ", ".join(f"{ns}:{port}" if port != 53 else str(ns)
                               for ns in resolver.nameservers) or "the system resolver"

    def query(self, name: str, rdtype: str) -> list[Any]:
        """The records of one type at ``name``; [] when the name or the type does not exist."""
        import dns.exception
        import dns.name
        import dns.resolver

        try:
            return list(self.resolver.resolve(ascii_domain(name), rdtype, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            raise ConnectionFailed(f"the DNS server {self.where} did not answer (asked for "
                                   f"{rdtype} {name}): check --nameserver") from None
        except dns.resolver.NoNameservers:
            raise _DnsFailure(f"the DNS server {self.where} answered {rdtype} {name} with an "
                              "error (SERVFAIL or refused)") from None
        except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel):
            raise _DnsFailure(f"{name!r} is not a valid DNS name") from None

    def txt(self, name: str) -> list[str]:
        """Each TXT record at ``name``, its strings joined (a DKIM key is split into several)."""
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self.query(name, "TXT")]

    def addresses(self, name: str) -> list[str]:
        """The IPv4 then IPv6 addresses of ``name`` (an IP literal is its own address)."""
        try:
            return [str(ipaddress.ip_address(name.strip("[]")))]
        except ValueError:
            pass
        return [r.address for r in self.query(name, "A")] + [r.address for r in self.query(name, "AAAA")]

    def mx(self, name: str) -> list[tuple[int, str]]:
        """``(preference, exchange)`` pairs, lowest preference first; ``"."`` is a null MX."""
        found = [(r.preference, r.exchange.to_text(omit_final_dot=True) or ".")
                 for r in self.query(name, "MX")]
        return sorted(found)

    def spf_lookup(self, name: str, qtype: str) -> list[tuple[tuple[str, str], Any]]:
        """pyspf's DNS interface: ``[((name, qtype), value), ...]``, via this resolver."""
        import spf

        if qtype not in ("A", "AAAA", "MX", "PTR", "TXT"):
            return []
        try:
            records = self.query(name, qtype)
        except _DnsFailure as exc:
            raise spf.TempError(str(exc)) from None
        values: list[Any]
        if qtype in ("A", "AAAA"):
            values = [r.address for r in records]
        elif qtype == "MX":
            values = [(r.preference, r.exchange) for r in records]
        elif qtype == "PTR":
            values = [r.target.to_text(True) for r in records]
        else:
            values = [r.strings for r in records]
        return [((name, qtype), value) for value in values]


def ascii_domain(domain: str) -> str:
    """A domain as DNS carries it: IDNA (punycode) labels, lowercase, no final dot.

    Example::

        >>> ascii_domain("Bücher.example.")
        'xn--bcher-kva.example'
    """
    domain = domain.strip().rstrip(".").lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(f"{domain!r} is not a valid domain name") from None


@functools.lru_cache(maxsize=1)
def _public_suffix_list() -> Any:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def organisational_domain(domain: str) -> str:
    """The registered domain DMARC aligns on: one label below the public suffix.

    Example::

        >>> organisational_domain("mail.news.shop.example"), organisational_domain("a.b.co.uk")
        ('shop.example', 'b.co.uk')
    """
    domain = ascii_domain(domain)
    return _public_suffix_list().privatesuffix(domain) or domain


def _domain_of(address: str) -> str:
    """The domain of ``addr`` or ``Display Name <addr>``."""
    return ascii_domain(parseaddr(address)[1].rpartition("@")[2] or address.rpartition("@")[2])


# --- the checks ---------------------------------------------------------------------------


@dataclass
class _Context:
    smtp: SmtpSettings
    dns: Dns
    envelope: str
    from_domain: str
    envelope_domain: str
    spf_pass: bool = False
    dkim_pass: bool = False
    dmarc_tags: dict[str, str] = field(default_factory=dict)


def preflight(store: Store, nameserver: str | None = None, *,
              timeout: float = DNS_TIMEOUT, campaign: str | None = None) -> list[Finding]:
    """Check the saved settings against DNS; one :class:`Finding` per check (see the module).

    ``campaign``: check the From that campaign sends with (its own, else the settings').

    ``nameserver`` (``HOST[:PORT]``, an IP address) replaces the system resolver. Raises
    :class:`ConnectionFailed` when the DNS server does not answer, :class:`ValidationError`
    when the SMTP settings are missing.

    Example::

        >>> import newsletter_kit as nk
        >>> store = nk.open_store(":memory:")
        >>> nk.preflight(store)
        Traceback (most recent call last):
        ...
        newsletter_kit.errors.ValidationError: no SMTP settings yet: run `newsletter-kit settings smtp ...` first
    """
    smtp = require_smtp_settings(store)
    bounce = load_bounce_settings(store)
    from_addr = smtp.from_addr
    if campaign is not None:
        from .progress import get_campaign

        from_addr = get_campaign(store, campaign).from_addr or from_addr
    envelope = bounce.bounce_address if bounce and bounce.bounce_address else smtp.from_addr
    envelope = parseaddr(envelope)[1] or envelope
    ctx = _Context(smtp=smtp, dns=Dns(make_resolver(nameserver, timeout)), envelope=envelope,
                   from_domain=_domain_of(from_addr), envelope_domain=_domain_of(envelope))
    findings = []
    for name, check in (("spf", _check_spf), ("dkim", _check_dkim), ("dmarc", _check_dmarc),
                        ("alignment", _check_alignment), ("mx", _check_mx),
                        ("unsubscribe", _check_unsubscribe), ("volume", _check_volume)):
        try:
            status, detail = check(ctx)
        except _DnsFailure as exc:
            status, detail = "fail", f"{exc}; try again, or ask your DNS host."
        findings.append(Finding(name, status, detail))
    return findings


Verdict = tuple[str, str]


def _check_spf(ctx: _Context) -> Verdict:
    domain, host = ctx.envelope_domain, ctx.smtp.host
    records = [t for t in ctx.dns.txt(domain) if re.match(r"(?i)v=spf1(\s|$)", t)]
    ips = ctx.dns.addresses(host)
    mechanisms = " ".join(("ip6:" if ":" in ip else "ip4:") + ip for ip in ips) or "ip4:ADDRESS"
    if not records:
        return "fail", (f"{domain} (the bounce address's domain) has no SPF record: publish a TXT "
                        f'record such as "v=spf1 {mechanisms} -all" (or your relay\'s include:).')
    if len(records) > 1:
        return "fail", (f"{domain} publishes {len(records)} SPF records, which receivers treat "
                        "as an error (permerror): merge them into one.")
    if not ips:
        return "fail", (f"the SMTP server name {host} does not resolve, so no address can be "
                        "checked against SPF: fix the server name or its DNS.")
    import spf

    lookup = ctx.dns.spf_lookup

    class _Query(spf.query):  # type: ignore[misc,name-defined]
        """pyspf's evaluation, its lookups through our resolver instead of the system's."""

        def dns(self, name: str, qtype: str, cnames: Any = None, ignore_void: bool = False) -> Any:
            name = str(name).rstrip(".").lower()
            if (name, qtype) not in self.cache:
                self.cache[(name, qtype)] = [value for _, value in lookup(name, qtype)]
            result = self.cache[(name, qtype)]
            if not result and not ignore_void:
                self.void_lookups += 1
                if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                    raise spf.PermError(f"more than {spf.MAX_VOID_LOOKUPS} lookups found nothing")
            return result

    results = {ip: _Query(i=ip, s=ctx.envelope, h=host, timeout=DNS_TIMEOUT).check() for ip in ips}
    bad = {ip: r for ip, r in results.items() if r[0] != "pass"}
    if not bad:
        ctx.spf_pass = True
        return "pass", (f"the SPF record of {domain} authorises {', '.join(ips)} (the address"
                        f"{'es' if len(ips) > 1 else ''} of {host}).")
    ip, (result, _code, explanation) = next(iter(bad.items()))
    if result == "permerror":
        return "fail", (f"the SPF record of {domain} is broken ({explanation}): fix it (at most "
                        "10 DNS-querying terms, valid syntax).")
    if result == "temperror":
        return "fail", (f"looking up the SPF record of {domain} failed ({explanation}): try again.")
    missing = " ".join(("ip6:" if ":" in a else "ip4:") + a for a in bad)
    return "fail", (f"the SPF record of {domain} does not authorise {', '.join(bad)}, the address "
                    f"of {host} (result: {result}): add {missing} (or your relay's include:) "
                    "before its all term.")


def _check_dkim(ctx: _Context) -> Verdict:
    smtp = ctx.smtp
    domain = smtp.signing_domain
    if not domain or not smtp.dkim_selector or not smtp.dkim_key_file:
        return "warn", (f"DKIM signing is not configured here, so your relay must sign with "
                        f"d={ctx.from_domain} (Gmail and Yahoo require DKIM): ask it, or set "
                        "--dkim-selector and --dkim-key-file.")
    from . import signing

    try:
        key = signing.load_key(smtp.dkim_key_file)
    except ValidationError as exc:
        return "fail", (f"{exc}: point --dkim-key-file at the private key (nothing can be "
                        'signed until then), or switch DKIM off with --dkim-selector "".')
    domain = ascii_domain(domain)
    name = f"{smtp.dkim_selector}._domainkey.{domain}"
    records = ctx.dns.txt(name)
    wanted = key.dns_record()
    if not records:
        return "fail", f'no DKIM key is published at {name}: publish the TXT record "{wanted}".'
    probe = (b"From: <preflight@" + domain.encode() + b">\r\nTo: <check@" + domain.encode()
             + b">\r\nSubject: newsletter_kit pre-flight\r\nMessage-ID: <preflight@"
             + domain.encode() + b">\r\n\r\nA test signature, never sent.\r\n")
    signer = signing.DkimSigner(key, smtp.dkim_selector, domain)
    if not signing.verify(signer.sign(probe), ctx.dns.txt):
        published = signing.published_key(records[0])
        if not published:
            what = "is revoked (its p= is empty)" if published == "" else "has no p= key"
        elif published != key.public_b64:
            what = f"is not the public half of {smtp.dkim_key_file}"
        else:
            what = "does not verify a test signature (check its k= and h= tags)"
        return "fail", (f'the DKIM key published at {name} {what}: publish "{wanted}" there, or '
                        "point --dkim-key-file at the matching private key.")
    ctx.dkim_pass = True
    if key.algorithm == "ed25519":
        return "warn", (f"a test signature verifies against {name} (Ed25519), but Gmail and many "
                        "receivers do not check Ed25519 signatures yet: sign with an RSA-2048 key.")
    if key.bits < 2048:
        return "warn", (f"a test signature verifies against {name}, but the RSA key has "
                        f"{key.bits} bits: receivers expect 2048, generate a longer one.")
    return "pass", f"a test signature made with {smtp.dkim_key_file} verifies against {name} (RSA {key.bits} bits)."


def _dmarc_record(ctx: _Context) -> tuple[str, dict[str, str]] | None:
    candidates = dict.fromkeys([ctx.from_domain, organisational_domain(ctx.from_domain)])
    for domain in candidates:
        records = [t for t in ctx.dns.txt(f"_dmarc.{domain}") if re.match(r"(?i)v\s*=\s*DMARC1\s*(;|$)", t)]
        if len(records) > 1:
            raise _DnsFailure(f"_dmarc.{domain} publishes {len(records)} DMARC records, so "
                              "receivers ignore them all: keep one")
        if records:
            tags = {}
            for part in records[0].split(";"):
                name, sep, value = part.partition("=")
                if sep:
                    tags[name.strip().lower()] = value.strip()
            return domain, tags
    return None


def _check_dmarc(ctx: _Context) -> Verdict:
    org = organisational_domain(ctx.from_domain)
    found = _dmarc_record(ctx)
    if found is None:
        also = f" (nor at _dmarc.{org})" if org != ctx.from_domain else ""
        return "fail", (f"no DMARC record at _dmarc.{ctx.from_domain}{also}, which Gmail and Yahoo "
                        f'require: publish the TXT record "v=DMARC1; p=none; rua=mailto:dmarc@{org}" '
                        f"at _dmarc.{org}.")
    domain, tags = found
    ctx.dmarc_tags = tags
    policy = tags.get("p", "").lower()
    if domain != ctx.from_domain and tags.get("sp"):
        policy = tags["sp"].lower()  # a subdomain From follows the organisation's sp=
    if policy not in ("none", "quarantine", "reject"):
        return "fail", (f"the DMARC record at _dmarc.{domain} has no valid policy (p={policy or '?'}): "
                        "set p=none, quarantine or reject.")
    reports = "" if tags.get("rua") else "; add rua=mailto:... to receive the aggregate reports"
    meaning = {
        "none": "receivers only report failures; once the reports show your mail passing, "
                "move to p=quarantine",
        "quarantine": "mail that fails DMARC goes to spam",
        "reject": "mail that fails DMARC is refused",
    }[policy]
    return "pass", f"_dmarc.{domain} publishes policy {policy}: {meaning}{reports}."


def _aligned(a: str, b: str, mode: str) -> bool:
    return a == b if mode == "s" else organisational_domain(a) == organisational_domain(b)


def _check_alignment(ctx: _Context) -> Verdict:
    frm, env = ctx.from_domain, ctx.envelope_domain
    aspf = ctx.dmarc_tags.get("aspf", "r").lower()[:1]
    adkim = ctx.dmarc_tags.get("adkim", "r").lower()[:1]
    dkim_domain = ascii_domain(ctx.smtp.signing_domain) if ctx.smtp.signing_domain else None
    spf_aligned = _aligned(frm, env, aspf)
    dkim_aligned = dkim_domain is not None and _aligned(frm, dkim_domain, adkim)
    mode = {"s": "strict", "r": "relaxed"}
    passing = []
    if spf_aligned and ctx.spf_pass:
        passing.append(f"the SPF domain {env} ({mode.get(aspf, 'relaxed')})")
    if dkim_aligned and ctx.dkim_pass:
        passing.append(f"the DKIM domain {dkim_domain} ({mode.get(adkim, 'relaxed')})")
    if passing:
        return "pass", f"the From domain {frm} is aligned with {' and '.join(passing)}, so DMARC passes."
    problems, fixes = [], []
    if spf_aligned:
        problems.append(f"SPF for {env} is aligned but does not pass (see spf)")
    else:
        problems.append(f"the bounce address's domain {env} (SPF) is not aligned with it")
        fixes.append(f"use a bounce address under {organisational_domain(frm)}")
    if dkim_domain is None:
        problems.append(f"nothing is signed here (unless your relay signs with d={frm})")
    elif dkim_aligned:
        problems.append(f"DKIM for {dkim_domain} is aligned but does not verify (see dkim)")
    else:
        problems.append(f"the DKIM domain {dkim_domain} is not aligned with it")
    if not dkim_aligned:
        fixes.append(f"sign with --dkim-domain {frm}")
    todo = " or ".join(fixes) if fixes else "fix the spf and dkim findings"
    return "fail", f"DMARC would fail for From {frm}: {'; '.join(problems)}: {todo}."


def _check_mx(ctx: _Context) -> Verdict:
    domain = ctx.envelope_domain
    exchanges = ctx.dns.mx(domain)
    if any(host == "." for _, host in exchanges):
        return "fail", (f"{domain} publishes a null MX (it accepts no mail), so bounces to "
                        f"{ctx.envelope} are lost: use a bounce address at a domain that receives mail.")
    if exchanges:
        reachable = [host for _, host in exchanges if ctx.dns.addresses(host)]
        if not reachable:
            return "fail", (f"the MX hosts of {domain} ({', '.join(h for _, h in exchanges)}) do not "
                            f"resolve, so bounces to {ctx.envelope} cannot arrive: fix their A/AAAA records.")
        return "pass", f"{domain} receives mail at {', '.join(reachable)} (MX), so bounces can reach {ctx.envelope}."
    if ctx.dns.addresses(domain):
        return "pass", (f"{domain} has no MX record, so mail goes to its address record (the "
                        f"fallback): bounces can reach {ctx.envelope}, though an MX record is clearer.")
    return "fail", (f"{domain} has neither an MX nor an address record, so bounces to "
                    f"{ctx.envelope} cannot be delivered: publish an MX record, or change the bounce address.")


def _check_unsubscribe(ctx: _Context) -> Verdict:
    url = ctx.smtp.unsubscribe_url
    if url:
        who = ("the DKIM signature made here covers both headers" if ctx.smtp.signing_domain
               else "make sure your relay's DKIM signature covers both headers")
        return "pass", (f"one-click unsubscribe is on (List-Unsubscribe with {url.split('/')[2]} and "
                        f"List-Unsubscribe-Post, RFC 8058); {who}, and honour opt-outs within 48 hours.")
    bulk = ctx.smtp.daily_limit >= BULK_SENDER_LINE
    return ("fail" if bulk else "warn"), (
        "no https unsubscribe URL is set, so List-Unsubscribe offers only a mailto: Gmail and Yahoo "
        "require one-click unsubscribe (RFC 8058) from bulk senders: set --unsubscribe-url "
        "https://.../{token}.")


def _check_volume(ctx: _Context) -> Verdict:
    limit, host = ctx.smtp.daily_limit, ctx.smtp.host
    if is_free_provider(host):
        if limit > FREE_PROVIDER_LIMIT:
            return "warn", (f"{host} is a free provider that caps sending at about "
                            f"{FREE_PROVIDER_LIMIT} emails a day: a daily limit of {limit:,} will hit "
                            "it and can get the account blocked, lower it or use a dedicated server.")
        return "pass", (f"a daily limit of {limit:,} stays within the free provider's "
                        f"{FREE_PROVIDER_LIMIT} a day.")
    if limit >= BULK_SENDER_LINE:
        return "warn", (f"a daily limit of {limit:,} reaches the {BULK_SENDER_LINE:,}-a-day line "
                        "at which Gmail and Yahoo treat you as a bulk sender: SPF, DKIM, DMARC, "
                        "alignment and one-click unsubscribe are all required, and complaints "
                        "must stay under 0.3%.")
    return "pass", (f"a daily limit of {limit:,} is under the {BULK_SENDER_LINE:,}-a-day "
                    "bulk-sender line (receivers still expect SPF or DKIM, and complaints under 0.3%).")
