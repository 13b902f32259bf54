"""The whole flow with nothing to configure: an in-process SMTP server that bounces like a real one.

:class:`DemoServer` is an aiosmtpd server on 127.0.0.1 (a free port) that accepts mail and
plays the part of the receiving servers, by the recipient's local part:

- ``reject.…``  refused at RCPT with ``550 5.1.1`` (a synchronous failure);
- ``unknown.…`` accepted, then a DSN bounce "5.1.1 user unknown" (hard);
- ``full.…``    accepted, then a DSN bounce "5.2.2 mailbox full" (soft);
- anyone else: accepted (and counted).

The DSNs are RFC 3464 ``multipart/report`` messages shaped like Postfix's, quoting the original
message (with its Message-ID and X-Newsletter-Campaign), written as ``.eml`` files into a local
bounce folder next to the store (``<store dir>/demo-bounces/``). Fetching bounces from that
folder (``fetch_bounces(store, source_path=...)``) stands in for the IMAP bounce mailbox.

:func:`ensure_demo_settings` configures a store for the demo *only* when it has no settings of
its own, and remembers that it did (a ``demo`` row in the settings table), so a user's real
settings are never overwritten. :func:`run_demo` runs configure → twelve weeks of history (once
per store, :mod:`newsletter_kit.demo_history`) → import → send → fetch bounces → suppress, which
is what ``newsletter-kit demo`` prints. That command uses the store of
``--db`` / ``$NEWSLETTER_KIT_DB``, else ``data/demo.db`` (never the default ``data/newsletter.db``),
and refuses a store with SMTP settings of its own; run again, it sends a new campaign
(``spring-sale-2``...) to whoever is not suppressed or unsubscribed.

Example::

    >>> import newsletter_kit as nk
    >>> store = nk.open_store(":memory:")
    >>> env = ensure_demo_settings(store)
    >>> env.smtp_port == nk.load_smtp_settings(store).port
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .demo_world import (  # re-exported: nk.demo is the demo's one public face
    HOST,
    DEMO_SECTION,
    DEMO_FROM,
    DEMO_BOUNCE_ADDRESS,
    DEMO_DAILY_LIMIT,
    DEMO_THRESHOLD,
    DEMO_LIST,
    DEMO_CAMPAIGN,
    DEMO_SUBJECT,
    REPORTING_MTA,
    DEFAULT_DEMO_DB,
    REJECT_PREFIX,
    UNKNOWN_PREFIX,
    FULL_PREFIX,
    demo_data_path,
    sample_contacts_path,
    sample_unsubscribes_path,
    sample_template_path,
    Failure,
    failure_for,
    make_dsn,
    message_date,
    make_complaint,
    make_unsubscribe_reply,
    write_bounce,
    World,
    DemoHandler,
    DemoServer,
    demo_server,
    stop_demo_servers,
    DemoEnvironment,
    demo_bounce_dir,
    is_demo_store,
    has_real_settings,
    demo_bounce_source,
    describe,
    ensure_demo_settings,
)
from .errors import ConfigError
from .store import Store


# --- the whole flow --------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What one demo run did; the numbers are read back from the store."""

    campaign: str
    contacts: int
    excluded: int
    sent: int
    rejected: int
    fetched: int
    bounces: dict[str, int]
    suppressed_now: list[str]
    suppressed_total: int
    bounce_dir: Path
    history: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The ``newsletter-kit demo --json`` document."""
        history = asdict(self.history) if self.history is not None else None
        return {"history": history, "campaign": self.campaign, "contacts": self.contacts, "excluded": self.excluded,
                "sent": self.sent, "rejected": self.rejected, "fetched": self.fetched,
                "bounced": sum(self.bounces.values()), "bounces": dict(sorted(self.bounces.items())),
                "suppressed": self.suppressed_now, "suppressed_total": self.suppressed_total,
                "bounce_dir": str(self.bounce_dir)}

    def lines(self) -> list[str]:
        """The summary ``newsletter-kit demo`` prints (one ``name: number`` per line)."""
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.bounces.items())) or "none"
        now = ", ".join(self.suppressed_now)
        return [
            *(self.history.lines() if self.history is not None else []),
            f"campaign: {self.campaign} ({self.contacts} contacts, {self.excluded} excluded)",
            f"sent: {self.sent}",
            f"rejected: {self.rejected} (refused at RCPT by the server)",
            f"bounced: {sum(self.bounces.values())} ({kinds}; {self.fetched} bounce message(s) "
            f"fetched from {self.bounce_dir})",
            f"suppressed: {len(self.suppressed_now)}" + (f" ({now})" if now else ""),
            f"suppressed in all: {self.suppressed_total}",
        ]


def ensure_demo_history(store: Store, say: Callable[[str], None] = lambda _: None) -> Any:
    """The twelve weeks of history (:mod:`newsletter_kit.demo_history`) on a demo store.

    Records them the first time (seconds), then only reports them; returns None and changes
    nothing when the store has real settings, so a notebook can always call it.

    Example::

        report = ensure_demo_history(store)     # None with your own servers
    """
    from .demo_history import build_history

    if has_real_settings(store):
        return None
    return build_history(store, say=say)


def ensure_demo_campaign(store: Store, name: str = DEMO_CAMPAIGN, list_name: str = DEMO_LIST) -> Any:
    """The demo campaign (``spring-sale`` on the list ``demo``), created from the sample template
    when it does not exist yet; returns the :class:`~newsletter_kit.campaigns.Campaign`.

    Example::

        campaign = ensure_demo_campaign(store)
        campaign.name, campaign.status
    """
    from . import campaigns

    existing = {row[0] for row in store.conn.execute("SELECT name FROM campaigns")}
    if name in existing:
        return campaigns.get_campaign(store, name)
    return campaigns.create_campaign(store, name, list_name=list_name, subject=DEMO_SUBJECT,
                                     html=sample_template_path().read_text(encoding="utf-8"))


def send_if_demo(store: Store, name: str) -> Any:
    """Send ``name`` only when the store is in demo mode (the SMTP server is the demo's).

    Returns the :class:`~newsletter_kit.campaigns.SendReport`, or None without sending when
    the store has real settings: a notebook's *Run All* must never send a real campaign;
    that is what the panel's Send button is for.
    """
    from . import campaigns

    if not is_demo_store(store):
        return None
    ensure_demo_settings(store)  # the server of this kernel (a new kernel has a new port)
    return campaigns.send_campaign(store, name)


def _campaign_name(store: Store) -> str:
    """``spring-sale``, or ``spring-sale-2``... when the demo already ran on this store."""
    names = {row[0] for row in store.conn.execute("SELECT name FROM campaigns")}
    if DEMO_CAMPAIGN not in names:
        return DEMO_CAMPAIGN
    n = 2
    while f"{DEMO_CAMPAIGN}-{n}" in names:
        n += 1
    return f"{DEMO_CAMPAIGN}-{n}"


def run_demo(store: Store, say: Callable[[str], None] = print) -> DemoResult:
    """Configure the demo servers, record the twelve weeks of history (once per store, see
    :mod:`newsletter_kit.demo_history`), then today's campaign: import the demo contacts, send,
    fetch bounces, suppress.

    Refuses (ConfigError) a store that has real settings. Example::

        result = run_demo(open_store("data/demo.db"))
        result.sent, result.suppressed
    """
    from . import audience, campaigns, ingest

    env = ensure_demo_settings(store)
    if env is None:
        raise ConfigError(
            f"the store {store.path} has real SMTP settings; the demo will not touch them: "
            "run it on another store (newsletter-kit --db data/demo.db demo)")
    say(f"demo SMTP server on {HOST}:{env.smtp_port}; bounces go to {env.bounce_dir}")
    from .demo_history import build_history

    history = build_history(store, say=say)
    imported = audience.import_contacts(store, sample_contacts_path(), list_name=DEMO_LIST)
    audience.import_unsubscribes(store, sample_unsubscribes_path())
    say(f"contacts: {imported.summary()}")
    name = _campaign_name(store)
    campaigns.create_campaign(store, name, list_name=DEMO_LIST, subject=DEMO_SUBJECT,
                              html=sample_template_path().read_text(encoding="utf-8"))
    say(f"sending campaign {name!r}...")
    sent = campaigns.send_campaign(store, name)
    say(sent.summary())
    fetched = ingest.fetch_bounces(store, source_path=env.bounce_dir)
    now = sorted(set(sent.suppressed) | set(fetched.suppressed))
    result = _result(store, name, env.bounce_dir, fetched.fetched, now)
    result.history = history
    return result


def _result(store: Store, name: str, bounce_dir: Path, fetched: int, suppressed_now: list[str]) -> DemoResult:
    """Read the run's numbers back from the store (what the test compares)."""
    cid = store.conn.execute("SELECT id FROM campaigns WHERE name = ?", (name,)).fetchone()[0]
    states = dict(store.conn.execute(
        "SELECT state, count(*) FROM deliveries WHERE campaign_id = ? GROUP BY state", (cid,)).fetchall())
    bounces = dict(store.conn.execute(
        "SELECT kind, count(DISTINCT email) FROM bounces WHERE campaign = ? AND source != 'smtp' "
        "GROUP BY kind", (name,)).fetchall())
    suppressed = store.conn.execute("SELECT count(*) FROM suppressions").fetchone()[0]
    contacts = store.conn.execute(
        "SELECT count(*) FROM list_members JOIN lists ON lists.id = list_id WHERE lists.name = ?",
        (DEMO_LIST,)).fetchone()[0]
    return DemoResult(
        campaign=name, contacts=contacts, excluded=states.get("excluded", 0),
        sent=states.get("sent", 0), rejected=states.get("failed", 0), fetched=fetched, bounces=bounces,
        suppressed_now=suppressed_now, suppressed_total=suppressed, bounce_dir=bounce_dir)
