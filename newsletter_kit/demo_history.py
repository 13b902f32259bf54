"""Twelve weeks of a weekly newsletter, recorded through the real send and fetch paths.

The review is only worth opening with a history: bounces spread over weeks, addresses that
bounce again and again, a domain that had a bad day. :func:`build_history` makes one in seconds
on a demo store (:mod:`newsletter_kit.demo`):

- 2,000 contacts in four editions of 500 (the lists ``weekly-a`` … ``weekly-d``, the demo's
  daily limit); each Tuesday one edition gets that week's campaign (``weekly-01`` …), so every
  contact hears from us every four weeks (a campaign to all 2,000 every week would take minutes
  on the in-process server, and the review would show the same shapes);
- **repeat soft bouncers**: mailboxes full for weeks (5.2.2); some are emptied before their last
  campaign, so that *reset on success* forgives them;
- **dead mailboxes**: addresses that stop existing between two campaigns and bounce hard
  (5.1.1) once, on the last campaign of the twelve weeks that reaches them; many at the old
  provider ``oldmail.example``;
- **a two-day outage**: ``posta.example`` is down from Tuesday to Thursday of week 7; the relay
  warns after 4 hours (delayed, 4.4.1) and gives up after a day (failed, 4.4.1: soft);
- **a policy block**: ``shop.example`` refuses our mail as spam (5.7.1) in weeks 10 and 11,
  which counts only with *count policy*;
- a few **complaints** (ARF reports) and **mailto unsubscribes** (replies with the token).

How the dates are made: the campaigns are sent, and the bounce folder fetched, inside
:func:`newsletter_kit.clock.shifted` blocks, so every timestamp the send and fetch paths write
(ledger, quota days, Date headers, bounces, suppressions) is the simulated one; nothing is
back-dated afterwards. The demo server's receiving side is a :class:`HistoryWorld`: it reads each
message's Date and writes the reports a real relay and mailbox provider would, dated after it.
The saved threshold (3) applies at each weekly fetch, as it would in production.

Example::

    store = nk.open_store("data/demo.db")
    nk.demo.ensure_demo_settings(store)
    build_history(store).campaigns          # 12
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import clock
from .demo_world import Failure, make_complaint, make_dsn, make_unsubscribe_reply
from .errors import ConfigError
from .store import Store

WEEKS = 12
CONTACTS = 2000
EDITIONS = ("weekly-a", "weekly-b", "weekly-c", "weekly-d")
HISTORY_SECTION = "demo_history"
SEND_HOUR = 9  # UTC, on Tuesdays
FETCH_AFTER = dt.timedelta(days=5)  # the weekly look at the bounce folder: Sunday

OUTAGE_DOMAIN = "posta.example"
OUTAGE_WEEK = 7
POLICY_DOMAIN = "shop.example"
POLICY_WEEKS = (10, 11)
OLD_DOMAIN = "oldmail.example"
#: Domains and their share of the contacts.
DOMAINS = {"example.org": 0.28, "example.net": 0.24, "mail.example": 0.16, OUTAGE_DOMAIN: 0.14,
           POLICY_DOMAIN: 0.1, OLD_DOMAIN: 0.08}
FIRST = ["giulia", "marco", "anna", "luca", "sara", "paolo", "elena", "davide", "chiara", "matteo",
         "laura", "andrea", "sofia", "franco", "marta", "pietro", "irene", "nicola", "alice", "tommaso"]
LAST = ["rossi", "bianchi", "verdi", "russo", "ferrari", "esposito", "romano", "colombo", "ricci",
        "marino", "greco", "bruno", "gallo", "conti", "costa", "giordano", "mancini", "lombardi"]
CITIES = ["Milano", "Roma", "Torino", "Napoli", "Bologna", "Firenze", "Genova", "Bari"]
SUBJECT = "{{ first_name }}, this week at the shop (week {{ week }})"


@dataclass
class HistoryWorld:
    """Who fails when: the receiving side of the demo's history (see the module doc)."""

    first_send: dt.datetime
    dead: dict[str, dt.datetime] = field(default_factory=dict)
    full: dict[str, tuple[dt.datetime, dt.datetime]] = field(default_factory=dict)
    complain: dict[str, int] = field(default_factory=dict)
    unsubscribe: dict[str, int] = field(default_factory=dict)
    #: Where the history's reports go: a folder of its own, so that its weekly fetches never
    #: take in (and date weeks back) the reports of today's campaigns in the demo's folder.
    bounce_dir: Path | None = None

    def send_time(self, week: int) -> dt.datetime:
        """When campaign ``week`` (1-based) goes out."""
        return self.first_send + dt.timedelta(weeks=week - 1)

    def week_of(self, moment: dt.datetime) -> int:
        return (moment - self.first_send) // dt.timedelta(weeks=1) + 1

    @property
    def outage(self) -> tuple[dt.datetime, dt.datetime]:
        start = self.send_time(OUTAGE_WEEK) - dt.timedelta(hours=3)
        return start, start + dt.timedelta(days=2)

    def reports(self, original: bytes, sender: str, recipient: str, sent: dt.datetime) -> list[bytes]:
        """The DSNs, complaints and replies the bounce mailbox gets about one message."""
        domain = recipient.rpartition("@")[2]
        week = self.week_of(sent)
        later = lambda minutes: sent + dt.timedelta(minutes=minutes)  # noqa: E731
        arrival = {"arrival": email.utils.format_datetime(sent)}
        if recipient in self.dead and sent >= self.dead[recipient]:
            return [make_dsn(original, sender, recipient, Failure(
                "5.1.1", f"550 5.1.1 <{recipient}>: Recipient address rejected: User unknown"),
                date=later(2), **arrival)]
        start, end = self.full.get(recipient, (sent, sent))
        if start <= sent < end:
            return [make_dsn(original, sender, recipient, Failure(
                "5.2.2", f"552 5.2.2 <{recipient}> Quota exceeded (mailbox for user is full)"),
                date=later(5), **arrival)]
        down_from, down_until = self.outage
        if domain == OUTAGE_DOMAIN and down_from <= sent < down_until:
            timeout = f"connect to mx.{domain}[192.0.2.53]:25: Connection timed out"
            return [make_dsn(original, sender, recipient, Failure("4.4.1", timeout, "delayed"),
                             date=later(4 * 60), **arrival),
                    make_dsn(original, sender, recipient, Failure("4.4.1", f"delivery temporarily "
                             f"suspended: {timeout}"), date=later(24 * 60 + 7), **arrival)]
        if domain == POLICY_DOMAIN and week in POLICY_WEEKS:
            return [make_dsn(original, sender, recipient, Failure(
                "5.7.1", "554 5.7.1 Message rejected as spam by Content Filtering"), date=later(1), **arrival)]
        found: list[bytes] = []
        if self.complain.get(recipient) == week:
            found.append(make_complaint(original, sender, recipient, later(3 * 60)))
        if self.unsubscribe.get(recipient) == week:
            reply = make_unsubscribe_reply(original, recipient, later(26 * 60))
            found += [reply] if reply else []
        return found


@dataclass
class HistoryReport:
    """What :func:`build_history` recorded (or found recorded before)."""

    campaigns: int
    contacts: int
    sent: int
    fetched: int
    suppressed: int
    first_send: str
    last_send: str
    built_now: bool

    def lines(self) -> list[str]:
        """The summary ``newsletter-kit demo`` prints."""
        how = "recorded now" if self.built_now else "already in the store"
        return [f"history: {self.campaigns} weekly campaigns, {self.first_send[:10]} to "
                f"{self.last_send[:10]} ({how})",
                f"history contacts: {self.contacts}",
                f"history sent: {self.sent}",
                f"history reports fetched: {self.fetched}",
                f"history suppressed: {self.suppressed}"]


def _tuesday_weeks_ago(weeks: int, today: dt.date) -> dt.datetime:
    monday = today - dt.timedelta(days=today.weekday())
    tuesday = monday - dt.timedelta(weeks=weeks) + dt.timedelta(days=1)
    return dt.datetime.combine(tuesday, dt.time(SEND_HOUR), tzinfo=dt.timezone.utc)


def make_world_and_contacts(seed: int = 2026, *, today: dt.date | None = None,
                            contacts: int = CONTACTS) -> tuple[HistoryWorld, list[dict[str, str]]]:
    """The contacts (with their edition) and who fails when; the same for the same seed and day.

    Example::

        >>> world, rows = make_world_and_contacts(today=dt.date(2026, 11, 30))
        >>> len(rows), rows[0]["edition"], world.first_send.isoformat()
        (2000, 'weekly-a', '2026-09-08T09:00:00+00:00')
    """
    rng = random.Random(seed)
    today = today or clock.now().date()
    world = HistoryWorld(_tuesday_weeks_ago(WEEKS, today))
    domains, weights = list(DOMAINS), list(DOMAINS.values())
    rows: list[dict[str, str]] = []
    for n in range(contacts):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        edition = n % len(EDITIONS)
        rows.append({"email": f"{first}.{last}{n}@{rng.choices(domains, weights)[0]}",
                     "first_name": first.title(), "last_name": last.title(), "city": rng.choice(CITIES),
                     "language": rng.choice(["it", "en"]), "signed_up": f"202{rng.randrange(3, 6)}",
                     "edition": EDITIONS[edition]})
    hour = dt.timedelta(hours=1)
    for row in rows:
        address, edition = row["email"], EDITIONS.index(row["edition"])
        sends = [world.send_time(week) for week in range(edition + 1, WEEKS + 1, len(EDITIONS))]
        dice = rng.random()
        dead_share = 0.3 if address.endswith("@" + OLD_DOMAIN) else 0.02
        if dice < dead_share:  # dies between its last two campaigns: one hard bounce
            world.dead[address] = sends[-2] + (sends[-1] - sends[-2]) * rng.uniform(0.1, 0.9)
        elif dice < dead_share + 0.025:  # full from before its first campaign...
            until = sends[-1] - hour if rng.random() < 0.4 else sends[-1] + dt.timedelta(weeks=2)
            world.full[address] = (sends[0] - hour, until)  # ...emptied before its last, or never
        elif dice < dead_share + 0.03:  # full for one campaign only
            one = rng.choice(sends)
            world.full[address] = (one - hour, one + hour)
        elif dice < dead_share + 0.034:
            world.complain[address] = world.week_of(rng.choice(sends))
        elif dice < dead_share + 0.04:
            world.unsubscribe[address] = world.week_of(rng.choice(sends))
    return world, rows


def history_built(store: Store) -> bool:
    """True when the store holds the demo's history already."""
    return store.conn.execute("SELECT 1 FROM settings WHERE section = ?", (HISTORY_SECTION,)).fetchone() is not None


def build_history(store: Store, *, seed: int = 2026, say: Callable[[str], None] = lambda _: None) -> HistoryReport:
    """Record the twelve weeks (see the module doc) on a demo store, once.

    Refuses a store whose SMTP settings are not the demo's (:class:`ConfigError`): the history
    is sent, through the real send path, to the demo server only. A second call records nothing
    and reports what is there.
    """
    from . import audience, campaigns, ingest
    from . import demo_world
    from .settings import update_bounce_settings

    env = demo_world.ensure_demo_settings(store, own_server=True)  # it plays the receiving side
    if env is None or env.server is None:
        raise ConfigError(f"the store {store.path} has real SMTP settings: the demo history is "
                          "only recorded on a demo store (newsletter-kit --db data/demo.db demo)")
    if history_built(store):
        return _report(store, built_now=False)
    world, rows = make_world_and_contacts(seed)
    template = demo_world.sample_template_path().read_text(encoding="utf-8")
    with clock.shifted(world.first_send - dt.timedelta(days=30)):
        for edition in EDITIONS:
            audience.add_contacts(store, [r for r in rows if r["edition"] == edition], list_name=edition)
        update_bounce_settings(store, threshold=demo_world.DEMO_THRESHOLD)
    say(f"history: {len(rows)} contacts in {len(EDITIONS)} editions; sending {WEEKS} weekly campaigns...")
    world.bounce_dir = env.bounce_dir.parent / "demo-history-bounces"
    env.server.handler.world = world
    try:
        for week in range(1, WEEKS + 1):
            name = f"weekly-{week:02d}"
            with clock.shifted(world.send_time(week)):
                campaigns.create_campaign(store, name, EDITIONS[(week - 1) % len(EDITIONS)],
                                          SUBJECT.replace("{{ week }}", str(week)), template)
                report = campaigns.send_campaign(store, name)
            if report.paused:
                raise ConfigError(f"the demo history's {name} stopped early ({report.paused}): {report.detail}")
            with clock.shifted(world.send_time(week) + FETCH_AFTER):
                ingest.fetch_bounces(store, source_path=world.bounce_dir)
    finally:
        env.server.handler.world = None
    with store.transaction():
        store.conn.execute("INSERT INTO settings (section, data, updated_at) VALUES (?, ?, ?)",
                           (HISTORY_SECTION, '{"seed": %d}' % seed, clock.now_iso()))
    return _report(store, built_now=True)


def _report(store: Store, *, built_now: bool) -> HistoryReport:
    names = [f"weekly-{week:02d}" for week in range(1, WEEKS + 1)]
    marks = ", ".join("?" * len(names))
    sent, first, last = store.conn.execute(
        f"SELECT count(*), min(d.sent_at), max(d.sent_at) FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id"
        f" WHERE c.name IN ({marks}) AND d.state = 'sent'", names).fetchone()
    contacts = store.conn.execute(
        f"SELECT count(DISTINCT contact_id) FROM list_members JOIN lists ON lists.id = list_id"
        f" WHERE lists.name IN ({', '.join('?' * len(EDITIONS))})", EDITIONS).fetchone()[0]
    # Distinct reports: a folder fetch records the files it had seen before again, as duplicates.
    fetched = store.conn.execute("SELECT count(DISTINCT sha256) FROM mailbox_messages").fetchone()[0]
    suppressed = store.conn.execute("SELECT count(*) FROM suppressions").fetchone()[0]
    campaigns = store.conn.execute(f"SELECT count(*) FROM campaigns WHERE name IN ({marks})", names).fetchone()[0]
    return HistoryReport(campaigns=campaigns, contacts=contacts, sent=sent, fetched=fetched,
                         suppressed=suppressed, first_send=first or "", last_send=last or "",
                         built_now=built_now)
