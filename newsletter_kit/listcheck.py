"""The list check before a send (``contacts check``): which addresses are risky to mail.

Per address: its syntax; whether its domain takes mail (MX, else A/AAAA; a null MX takes none)
on real DNS, one lookup per domain, cached, in parallel; role addresses (postmaster@, info@...);
disposable domains (the maintained ``disposable-email-domains`` list); and likely typos of big
providers (``gmial.com`` for ``gmail.com``).  The findings are kept per address
(``contact_checks``), and ``campaign send --skip-risky`` leaves the flagged ones out.

>>> local_risks("info@yahooo.com")
[('role', 'a role address (info@), read by a team or nobody'), ('typo', 'looks like a typo of yahoo.com')]
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .addresses import is_valid_address
from .errors import ConnectionFailed
from .store import Store, now_iso

__all__ = ["RISKS", "AddressCheck", "ListCheckReport", "check_contacts", "domain_takes_mail", "local_risks",
           "risky_addresses"]

RISKS = ("syntax", "no_mail_domain", "disposable", "typo", "role")
ROLE_LOCALS = frozenset({
    "abuse", "admin", "administrator", "billing", "contact", "help", "hostmaster", "info", "list",
    "list-request", "mailer-daemon", "marketing", "no-reply", "noreply", "do-not-reply", "donotreply", "office",
    "postmaster", "root", "sales", "security", "support", "webmaster", "www", "enquiries", "hello", "team",
    "jobs", "careers", "press", "privacy", "info.it", "amministrazione", "segreteria", "ufficio",
})
#: Big mailbox providers whose near-misses are typos, not other domains.
BIG_PROVIDERS = ("gmail.com", "googlemail.com", "yahoo.com", "yahoo.it", "hotmail.com", "hotmail.it", "outlook.com",
                 "outlook.it", "live.com", "live.it", "icloud.com", "me.com", "aol.com", "msn.com", "libero.it",
                 "virgilio.it", "tiscali.it", "alice.it", "tim.it", "fastwebnet.it", "gmx.com", "gmx.de", "gmx.net",
                 "web.de", "proton.me", "protonmail.com", "yandex.ru", "mail.ru", "orange.fr", "free.fr",
                 "comcast.net", "att.net", "verizon.net")
#: Parallel DNS lookups.
WORKERS = 16


def _distance(a: str, b: str) -> int:
    """Damerau-Levenshtein (optimal string alignment) distance, bounded use: short domains."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def typo_of(domain: str) -> str | None:
    """The big provider ``domain`` is likely a typo of, or None.

    >>> typo_of("gmial.com"), typo_of("gmail.con"), typo_of("gmail.com"), typo_of("example.com")
    ('gmail.com', 'gmail.com', None, None)
    """
    if domain in BIG_PROVIDERS:
        return None
    best = None
    for provider in BIG_PROVIDERS:
        if abs(len(provider) - len(domain)) > 2:
            continue
        d = _distance(domain, provider)
        if d == 1 or (d == 2 and len(provider) >= 9 and domain.split(".")[0] != provider.split(".")[0]):
            if best is None or d < best[0]:
                best = (d, provider)
    return best[1] if best else None


def _disposable() -> frozenset[str]:
    import disposable_email_domains

    return frozenset(disposable_email_domains.blocklist)


_DISPOSABLE: frozenset[str] | None = None


def is_disposable(domain: str) -> bool:
    """Whether ``domain`` (or a parent of it) is on the maintained disposable-domain list.

    >>> is_disposable("mailinator.com"), is_disposable("example.org")
    (True, False)
    """
    global _DISPOSABLE
    if _DISPOSABLE is None:
        _DISPOSABLE = _disposable()
    parts = domain.split(".")
    return any(".".join(parts[i:]) in _DISPOSABLE for i in range(len(parts) - 1))


def local_risks(address: str) -> list[tuple[str, str]]:
    """The risks seen without DNS: syntax, role, disposable, typo (risk, detail)."""
    if not is_valid_address(address):
        return [("syntax", "not a valid address")]
    local, _, domain = address.rpartition("@")
    found = []
    if local.lower() in ROLE_LOCALS:
        found.append(("role", f"a role address ({local.lower()}@), read by a team or nobody"))
    if is_disposable(domain.lower()):
        found.append(("disposable", f"{domain} is a disposable (throw-away) mail domain"))
    guess = typo_of(domain.lower())
    if guess:
        found.append(("typo", f"looks like a typo of {guess}"))
    return found


def domain_takes_mail(dns: Any, domain: str) -> str | None:
    """None when ``domain`` has an MX (or, without one, an A/AAAA record); else why not.
    ``dns``: a :class:`newsletter_kit.deliverability.Dns`."""
    mx = dns.query(domain, "MX")
    if mx:
        if all(str(r.exchange) in (".", "") for r in mx):
            return f"{domain} accepts no mail (null MX)"
        return None
    if dns.query(domain, "A") or dns.query(domain, "AAAA"):
        return None
    return f"{domain} has no mail server (no MX, no A record) or does not exist"


@dataclass
class AddressCheck:
    """The risks found for one address."""

    address: str
    risks: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """As ``contacts check --json`` lists it."""
        return {"address": self.address, "risks": self.risks, "detail": "; ".join(self.details)}


@dataclass
class ListCheckReport:
    """What ``contacts check`` found: ``checked`` addresses, the ``flagged`` ones, DNS ``unknown`` domains."""

    checked: int = 0
    flagged: list[AddressCheck] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    unknown_domains: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """As ``contacts check --json`` prints it."""
        return {"checked": self.checked, "flagged": len(self.flagged), "risks": self.counts,
                "addresses": [c.to_dict() for c in self.flagged], "dns_unknown": self.unknown_domains}


def _domains(dns: Any, domains: Iterable[str]) -> tuple[dict[str, str | None], list[str]]:
    """domain -> why it takes no mail (None: it does); and the domains DNS could not tell."""
    from .deliverability import _DnsFailure

    found: dict[str, str | None] = {}
    unknown: list[str] = []

    def one(domain: str) -> tuple[str, str | None, bool]:
        try:
            return domain, domain_takes_mail(dns, domain), True
        except (_DnsFailure, ConnectionFailed):  # unknown, not risky: DNS could not tell
            return domain, None, False

    todo = sorted(set(domains))
    with ThreadPoolExecutor(max_workers=min(WORKERS, max(1, len(todo)))) as pool:
        for domain, why, known in pool.map(one, todo):
            found[domain] = why
            if not known:
                unknown.append(domain)
    return found, unknown


def check_contacts(store: Store, list_name: str | None = None, *, nameserver: str | None = None,
                   timeout: float | None = None) -> ListCheckReport:
    """Check every contact (of ``list_name``, or all), keep the findings, return them.

    >>> check_contacts(store, "news", nameserver="127.0.0.1:5353").to_dict()["flagged"]  # doctest: +SKIP
    3
    """
    from .deliverability import DNS_TIMEOUT, Dns, make_resolver

    if list_name:
        rows = store.conn.execute("SELECT c.email FROM contacts c JOIN list_members m ON m.contact_id = c.id"
                                  " JOIN lists l ON l.id = m.list_id WHERE l.name = ?", (list_name,)).fetchall()
    else:
        rows = store.conn.execute("SELECT email FROM contacts").fetchall()
    addresses = [r[0] for r in rows]
    checks = {a: AddressCheck(a) for a in addresses}
    for address, check in checks.items():
        for risk, detail in local_risks(address):
            check.risks.append(risk)
            check.details.append(detail)
    valid = [a for a, c in checks.items() if "syntax" not in c.risks]
    dns = Dns(make_resolver(nameserver, timeout or DNS_TIMEOUT))
    verdicts, unknown = _domains(dns, (a.rpartition("@")[2].lower() for a in valid))
    for address in valid:
        why = verdicts.get(address.rpartition("@")[2].lower())
        if why:
            checks[address].risks.insert(0, "no_mail_domain")
            checks[address].details.insert(0, why)
    report = ListCheckReport(checked=len(addresses), unknown_domains=unknown)
    now = now_iso()
    with store.transaction():
        store.conn.executemany("DELETE FROM contact_checks WHERE email = ?", [(a,) for a in addresses])
        store.conn.executemany(
            "INSERT INTO contact_checks (email, risks, detail, checked_at) VALUES (?, ?, ?, ?)",
            [(c.address, json.dumps(c.risks), "; ".join(c.details), now) for c in checks.values() if c.risks])
    for check in checks.values():
        if check.risks:
            report.flagged.append(check)
            for risk in check.risks:
                report.counts[risk] = report.counts.get(risk, 0) + 1
    return report


def risky_addresses(store: Store) -> dict[str, str]:
    """The addresses the last list check flagged: address -> what it found.

    >>> from newsletter_kit.store import open_store
    >>> risky_addresses(open_store(":memory:"))
    {}
    """
    return {email: detail or ", ".join(json.loads(risks))
            for email, risks, detail in store.conn.execute("SELECT email, risks, detail FROM contact_checks")}
