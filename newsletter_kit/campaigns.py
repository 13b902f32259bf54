"""Campaigns: create, send within today's quota, pause and resume.

A send run claims rows of the delivery ledger (:mod:`newsletter_kit.ledger`, which documents
the states a row goes through) in small batches: one transaction marks a batch in flight and
reserves its quota, the messages go out over one reused connection (or N in parallel), and one
transaction records their outcomes and the quota used, together with claiming the batch after
next. A ledger thread runs those transactions while the next batch is being sent, so the
commits cost no time on the wire. A crash leaves at most two batches ``unknown``. When a run
stops early is decided by one :class:`StopPolicy`.

Example::

    >>> import newsletter_kit as nk                                   # doctest: +SKIP
    >>> store = nk.open_store()                                       # doctest: +SKIP
    >>> nk.create_campaign(store, "spring", "all", "Hello {{ first_name }}",
    ...                    "<p>Hi {{ first_name }}</p>")              # doctest: +SKIP
    >>> report = nk.send_campaign(store, "spring")                    # doctest: +SKIP
    >>> report.sent, report.paused, nk.campaign_status(store, "spring")  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import audience, clock, quota, reasons, signing
from .errors import CampaignError
from .addresses import check_from, normalize_address
from .guards import RefusalWindow, SendGuards, complaint_block, html_size_warning
from .maintenance import ARCHIVED
from .ledger import DEFERRAL_BACKOFF, HELD, RETRYABLE, Claim, Ledger, Row, settle_dead_runs  # noqa: F401 (DEFERRAL_BACKOFF: kept importable here)
from .progress import (Campaign, campaign_status, count_campaigns,  # re-exported
                       excluded_members as _excluded_members, get_campaign, list_campaigns)
from .progress import changed as progress_changed
from .progress import forecast_finish as _forecast_one_server
from .settings import (BounceSettings, SmtpSettings, load_bounce_settings, load_smtp_settings,
                       require_smtp_settings)
from .store import Store, now_iso
from .tokens import envelope_sender, verp_token
from .transport import MESSAGE_DEADLINE, SendJob, SenderPool, SendOutcome, SmtpFactory

#: A run stops after this many failed or deferred messages in a row (rather than burn the list).
MAX_CONSECUTIVE_FAILURES = 10
#: Recipients claimed per batch and connection (one transaction; the send log tells which of
#: them were on the wire when a run died).
BATCH_PER_CONNECTION = 20

#: ``progress(done, total, report)``: called as a run proceeds (a notebook's progress bar).
Progress = Callable[[int, int, "SendReport"], None]



# --- campaigns ----------------------------------------------------------------------------


def create_campaign(store: Store, name: str, list_name: str, subject: str, html: str,
                    text: str | None = None, from_addr: str | None = None) -> Campaign:
    """Create a campaign for ``list_name``; the templates are compiled now.

    A template error (:class:`TemplateError`), an unknown list or a taken name fails before
    anything is written.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org", "first_name": "Ann"}])
        >>> create_campaign(store, "spring", "all", "Hi {{ first_name }}", "<p>Hello</p>").status
        'draft'
    """
    name = (name or "").strip()
    if not name:
        raise CampaignError("a campaign needs a name")
    if from_addr:
        from_addr = check_from(from_addr)  # addr or "Display Name <addr>", as messages write it
    lists = audience.list_names(store)
    if list_name not in lists:
        known = ", ".join(lists) if lists else "none yet: import contacts first"
        raise CampaignError(f"no contact list named {list_name!r} (lists: {known})")
    renderer = _compile(store, name, list_name, subject, html, text, from_addr)
    renderer.check_fields(_field_names(store, list_name))
    _test_render(store, renderer, list_name)
    now = now_iso()
    try:
        with store.transaction():
            store.conn.execute(
                "INSERT INTO campaigns (name, list_name, subject, html, text, from_addr, status, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'draft', ?, ?)",
                (name, list_name, subject, html, text, from_addr, now, now),
            )
    except sqlite3.IntegrityError:
        raise CampaignError(f"a campaign named {name!r} already exists") from None
    return get_campaign(store, name)


def _compile(store: Store, name: str, list_name: str, subject: str, html: str, text: str | None,
             from_addr: str | None) -> Any:
    """Compile the templates and build the headers as sending will, with the saved settings
    when there are some (no network): TemplateError or ValidationError when broken."""
    from .messages import CampaignRenderer

    smtp = load_smtp_settings(store)
    identity = _identity(smtp, load_bounce_settings(store), from_addr, list_name)
    return CampaignRenderer(campaign=name, subject=subject, html=html, text=text,
                            signing_key=b"\0" * 32, **identity)


def _identity(smtp: SmtpSettings | None, bounce: BounceSettings | None, from_addr: str | None,
              list_name: str) -> dict[str, Any]:
    """Who a campaign's messages come from: From (the campaign's, else the settings'), Reply-To,
    List-Id (set in the settings, else made from the list and the From domain), the envelope
    sender and the Message-ID domain, as :class:`~newsletter_kit.messages.CampaignRenderer` takes them."""
    from .addresses import parse_from
    from .headers import default_list_id, parse_list_id

    sender = from_addr or (smtp.from_header if smtp else "compile-check@example.org")
    domain = parse_from(sender)[1].rpartition("@")[2]
    return {
        "from_addr": sender, "message_id_domain": domain,
        "bounce_address": _envelope_sender(smtp, bounce) if smtp else parse_from(sender)[1],
        "reply_to": smtp.reply_to if smtp else None,
        "list_id": parse_list_id(smtp.list_id) if smtp and smtp.list_id else default_list_id(list_name, domain),
        "unsubscribe_url": smtp.unsubscribe_url if smtp else None,
    }


#: ``campaign create`` renders the messages of up to this many contacts of the list: those with
#: the most field data first, then the first imported; it stops early after TEST_RENDER_SECONDS
#: of CPU time (each message is also bounded on its own: newsletter_kit.sandbox).
TEST_RENDER_CONTACTS = 200
TEST_RENDER_SECONDS = 5.0


def _test_render(store: Store, renderer: Any, list_name: str) -> None:
    """Render the campaign for real contacts of the list, so that a template that fails, runs
    away or grows too big at render time (TemplateError) is refused before anything is saved."""
    half = TEST_RENDER_CONTACTS // 2
    members = ("SELECT c.id, c.email, c.fields FROM list_members m JOIN lists l ON l.id = m.list_id "
               "JOIN contacts c ON c.id = m.contact_id WHERE l.name = ?")
    sample: dict[str, str] = {}
    for order in ("length(c.fields) DESC, c.id", "c.id"):
        for _id, email, fields in store.conn.execute(f"{members} ORDER BY {order} LIMIT ?", (list_name, half)):
            sample.setdefault(email, fields)
    contacts = [(email, json.loads(fields)) for email, fields in sample.items()] or [("test@example.org", {})]
    stop = time.thread_time() + TEST_RENDER_SECONDS
    for email, fields in contacts:
        renderer.render(email, fields, message_id=renderer.new_message_id())
        if time.thread_time() > stop:
            break


def _field_names(store: Store, list_name: str) -> set[str]:
    """The template fields the contacts of a list have (to catch a misspelt variable)."""
    rows = store.conn.execute(
        "SELECT DISTINCT j.key FROM list_members m JOIN lists l ON l.id = m.list_id "
        "JOIN contacts c ON c.id = m.contact_id, json_each(c.fields) j WHERE l.name = ?", (list_name,))
    return {row[0] for row in rows}


def _envelope_sender(smtp: SmtpSettings, bounce: BounceSettings | None) -> str:
    """MAIL FROM: the bounce address, so bounces reach the mailbox we read."""
    return bounce.bounce_address if bounce and bounce.bounce_address else smtp.from_addr


def _renderer(store: Store, campaign: Campaign, smtp: SmtpSettings, envelope_from: str) -> Any:
    from .esp.config import load_esp_settings
    from .messages import CampaignRenderer

    identity = {**_identity(smtp, None, campaign.from_addr, campaign.list_name), "bounce_address": envelope_from}
    esp = load_esp_settings(store)
    return CampaignRenderer(
        campaign=campaign.name, subject=campaign.subject, html=campaign.html, text=campaign.text,
        signing_key=store.signing_key(), echo=(esp.provider, esp.configuration_set) if esp else None, **identity)


def preview_message(store: Store, name: str, email: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The campaign's message for one contact, as sending would build it.

    ``{"subject", "html", "text", "headers": {"From", "To"}}``; nothing is written or sent.

    Example::

        preview_message(store, "spring-sale", "ann@example.org", {"first_name": "Ann"})["subject"]
    """
    campaign = get_campaign(store, name)
    smtp = load_smtp_settings(store)
    if smtp is None:
        raise CampaignError("no SMTP settings yet: the preview needs the From address")
    renderer = _renderer(store, campaign, smtp, _envelope_sender(smtp, load_bounce_settings(store)))
    preview: dict[str, Any] = dict(renderer.render_preview(email, fields))
    preview["headers"] = {"From": renderer.from_addr, "To": email}
    if renderer.reply_to:
        preview["headers"]["Reply-To"] = renderer.reply_to
    if renderer.list_id:
        from .headers import decode_words

        preview["headers"]["List-Id"] = decode_words(renderer.list_id.replace("\r\n", ""))
    return preview


# --- lifecycle: edit, duplicate, archive, delete ------------------------------------------------

#: Ledger states of a recipient the campaign has reached, or may have (an edit would change
#: what they were sent): everything but rows still waiting (pending) or never meant (excluded).
_TOUCHED_STATES = ("sent", "failed", "unknown", "inflight", "claimed", "deferred")


def sent_count(store: Store, name: str) -> int:
    """How many recipients the campaign has reached or may have reached (0: never sent).

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org"}])
        >>> _ = create_campaign(store, "spring", "all", "Hi", "<p>Hello</p>")
        >>> sent_count(store, "spring")
        0
    """
    campaign = get_campaign(store, name)
    marks = ", ".join("?" * len(_TOUCHED_STATES))
    return int(store.conn.execute(
        f"SELECT count(*) FROM deliveries WHERE campaign_id = ? AND state IN ({marks})",
        (campaign.id, *_TOUCHED_STATES)).fetchone()[0])


def edit_campaign(store: Store, name: str, *, subject: str | None = None, html: str | None = None,
                  text: str | None = None, list_name: str | None = None,
                  from_addr: str | None = None) -> Campaign:
    """Change a campaign that has not been sent to anyone yet; the given fields replace the
    stored ones (``text=""`` or ``from_addr=""``: back to the default). Checked as at creation.

    After the first message went out its recipients have that version: :class:`CampaignError`,
    saying to duplicate the campaign and edit the copy.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org"}])
        >>> _ = create_campaign(store, "spring", "all", "Hi", "<p>Hello</p>")
        >>> edit_campaign(store, "spring", subject="Spring is here").subject
        'Spring is here'
    """
    campaign = get_campaign(store, name)
    _refuse_if_deleted(campaign)
    reached = sent_count(store, name)
    if reached:
        raise CampaignError(
            f"campaign {name!r} has been sent to {reached} recipient(s), who have this version: "
            f"it cannot change now; duplicate it (`campaign duplicate {name} NEW`) and edit the copy")
    new_list = campaign.list_name if list_name is None else list_name
    new_subject = campaign.subject if subject is None else subject
    new_html = campaign.html if html is None else html
    new_text = campaign.text if text is None else (text or None)
    new_from = campaign.from_addr if from_addr is None else (from_addr.strip() or None)
    _check_campaign(store, campaign.name, list_name=new_list, subject=new_subject, html=new_html,
                    text=new_text, from_addr=new_from)
    if new_from:
        new_from = check_from(new_from)
    with store.transaction():
        store.conn.execute(
            "UPDATE campaigns SET list_name = ?, subject = ?, html = ?, text = ?, from_addr = ?, "
            "updated_at = ? WHERE id = ?",
            (new_list, new_subject, new_html, new_text, new_from, now_iso(), campaign.id))
        if new_list != campaign.list_name:  # waiting rows were the old list's members
            store.conn.execute("DELETE FROM deliveries WHERE campaign_id = ?", (campaign.id,))
    progress_changed(name)
    return get_campaign(store, name)


def _check_campaign(store: Store, name: str, *, list_name: str, subject: str, html: str,
                    text: str | None, from_addr: str | None) -> None:
    """What ``create_campaign`` checks before writing: the list, the From, the templates."""
    lists = audience.list_names(store)
    if list_name not in lists:
        known = ", ".join(lists) if lists else "none yet: import contacts first"
        raise CampaignError(f"no contact list named {list_name!r} (lists: {known})")
    if from_addr:
        from_addr = check_from(from_addr)
    renderer = _compile(store, name, list_name, subject, html, text, from_addr)
    renderer.check_fields(_field_names(store, list_name))
    _test_render(store, renderer, list_name)


def duplicate_campaign(store: Store, name: str, new_name: str) -> Campaign:
    """A new draft with the campaign's list, subject, templates and From (sent or not).

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org"}])
        >>> _ = create_campaign(store, "spring", "all", "Hi", "<p>Hello</p>")
        >>> duplicate_campaign(store, "spring", "spring-2").status
        'draft'
    """
    campaign = get_campaign(store, name)
    _refuse_if_deleted(campaign)
    return create_campaign(store, new_name, campaign.list_name, campaign.subject, campaign.html,
                           campaign.text, campaign.from_addr)


def archive_campaign(store: Store, name: str, *, undo: bool = False) -> Campaign:
    """Hide a campaign from the lists and the sidebar; its history stays in the statistics.
    ``undo=True`` brings it back. An archived campaign is not sent.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org"}])
        >>> _ = create_campaign(store, "spring", "all", "Hi", "<p>Hello</p>")
        >>> archive_campaign(store, "spring").archived_at is not None, list_campaigns(store)
        (True, [])
    """
    campaign = get_campaign(store, name)
    _refuse_if_deleted(campaign)
    with store.transaction():
        store.conn.execute("UPDATE campaigns SET archived_at = ?, updated_at = ? WHERE id = ?",
                           (None if undo else now_iso(), now_iso(), campaign.id))
    progress_changed(name)
    return get_campaign(store, name)


def delete_campaign(store: Store, name: str, *, yes: bool = False) -> dict[str, Any]:
    """Delete a campaign. One never sent goes entirely; one that was sent needs ``yes=True``:
    its templates go, its name and deliveries stay for the statistics (the review still counts
    them), and it is hidden everywhere else. ``{"campaign", "deleted": "entirely" | "kept for
    statistics", "deliveries_kept"}``.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org"}])
        >>> _ = create_campaign(store, "spring", "all", "Hi", "<p>Hello</p>")
        >>> delete_campaign(store, "spring")["deleted"]
        'entirely'
    """
    campaign = get_campaign(store, name)
    _refuse_if_deleted(campaign)
    reached = sent_count(store, name)
    if not reached:
        with store.transaction():
            store.conn.execute("DELETE FROM campaigns WHERE id = ?", (campaign.id,))
        return {"campaign": campaign.name, "deleted": "entirely", "deliveries_kept": 0}
    if not yes:
        raise CampaignError(
            f"campaign {name!r} was sent to {reached} recipient(s): deleting it keeps its deliveries "
            "for the statistics and drops its templates; add --yes to confirm (or archive it)")
    with store.transaction():
        store.conn.execute(
            "UPDATE campaigns SET subject = '(deleted)', html = '', text = NULL, deleted_at = ?, "
            "updated_at = ? WHERE id = ?", (now_iso(), now_iso(), campaign.id))
        store.conn.execute("DELETE FROM deliveries WHERE campaign_id = ? AND state IN ('pending', 'excluded')",
                           (campaign.id,))
        kept = store.conn.execute("SELECT count(*) FROM deliveries WHERE campaign_id = ?",
                                  (campaign.id,)).fetchone()[0]
    return {"campaign": campaign.name, "deleted": "kept for statistics", "deliveries_kept": int(kept)}


def _refuse_if_deleted(campaign: Campaign) -> None:
    if campaign.deleted_at:
        raise CampaignError(f"campaign {campaign.name!r} was deleted on {campaign.deleted_at[:10]}: "
                            "only its statistics are kept")


# --- a proof before the send --------------------------------------------------------------------

#: The subject of a test message starts with this.
TEST_PREFIX = "[TEST] "


@dataclass
class ProofReport:
    """What ``campaign test`` did: per test address, the server's answer."""

    campaign: str
    contact: str | None  # whose fields filled the templates (None: a sample)
    results: list[dict[str, Any]] = field(default_factory=list)  # {"to", "outcome", "reply"}

    @property
    def sent(self) -> int:
        """Test messages the server accepted."""
        return sum(1 for r in self.results if r["outcome"] == "sent")

    def to_dict(self) -> dict[str, Any]:
        """The ``campaign test --json`` document."""
        return {"campaign": self.campaign, "as": self.contact, "sent": self.sent, "results": self.results}

    def lines(self) -> list[str]:
        """One line per test address, as ``campaign test`` prints them."""
        who = f"with the fields of {self.contact}" if self.contact else "with sample fields"
        return [f"{r['to']}: {r['outcome']}" + (f" ({r['reply']})" if r["reply"] else "") + f" [{who}]"
                for r in self.results]


def send_test(store: Store, name: str, to: Iterable[str], *, as_contact: str | None = None,
              smtp_factory: SmtpFactory | None = None, password: str | None = None) -> ProofReport:
    """Send the campaign's message to ``to`` (test addresses) as a proof before the send.

    The message is rendered (and DKIM-signed) as sending would, with the fields of ``as_contact`` (a contact's
    address) or of a sample contact of the list; the subject starts with ``[TEST]`` and the
    unsubscribe link is inert (signed with a throwaway key: it unsubscribes nobody). The envelope
    sender is the From address, not the bounce mailbox, so a bounce of a test never reaches the
    bounce fetch nor counts toward anyone; nothing goes into the ledger. Each test message counts
    toward today's quota (:class:`QuotaExhausted` when the quota has no room for them).

    Example::

        report = send_test(store, "spring", ["me@example.org"], as_contact="ann@example.org")
        report.sent                                                   # 1
    """
    from .addresses import parse_from
    from .errors import QuotaExhausted
    from .messages import CampaignRenderer
    from .transport import SmtpSender

    campaign = get_campaign(store, name)
    _refuse_if_deleted(campaign)
    addresses = [normalize_address(a) for a in to]
    if not addresses:
        raise CampaignError("name at least one test address (--to ADDR)")
    smtp = require_smtp_settings(store)
    contact, fields = _test_fields(store, campaign, as_contact)
    identity = _identity(smtp, None, campaign.from_addr, campaign.list_name)
    mail_from = parse_from(identity["from_addr"])[1]
    identity["bounce_address"] = mail_from
    renderer = CampaignRenderer(campaign=campaign.name, subject=TEST_PREFIX + campaign.subject,
                                html=campaign.html, text=campaign.text,
                                signing_key=secrets.token_bytes(32), **identity)
    dkim = signing.signer_for(smtp, campaign.from_addr)  # signed as the campaign's messages will be
    messages = [(a, renderer.render(a, fields, message_id=renderer.new_message_id())) for a in addresses]
    if dkim is not None:
        messages = [(a, dkim.sign(raw)) for a, raw in messages]
    owner = quota.new_owner()
    try:
        day, granted = quota.reserve(store, len(messages), owner=owner, settings=smtp)
        if granted < len(messages):
            quota.settle(store, owner=owner, day=day, released=granted, accepted=0)
            full = QuotaExhausted(f"today's quota has room for {granted} more message(s), the test needs "
                                  f"{len(messages)}: try again after the reset (`newsletter-kit quota`)")
            full.exit_code = 75  # nothing to fix: run it again later
            raise full
        report = ProofReport(campaign=campaign.name, contact=contact)
        try:
            with SmtpSender(smtp, password=password, factory=smtp_factory) as sender:
                for address, raw in messages:
                    outcome = sender.send(mail_from, address, raw)
                    report.results.append({"to": address, "outcome": outcome.kind,
                                           "reply": "" if outcome.kind == "sent" else outcome.reply})
        finally:
            quota.settle(store, owner=owner, day=day, released=granted, accepted=report.sent)
    finally:
        quota.end_run(owner)
    return report


def _test_fields(store: Store, campaign: Campaign, as_contact: str | None) -> tuple[str | None, dict[str, Any]]:
    """Whose fields fill a test message: the contact named, else the list's member with the
    most fields, else none (an empty list: the templates' defaults)."""
    if as_contact:
        row = store.conn.execute("SELECT email, fields FROM contacts WHERE email = ?",
                                 (normalize_address(as_contact),)).fetchone()
        if row is None:
            raise CampaignError(f"no contact {as_contact.strip()!r}: name one of the list {campaign.list_name!r}, "
                                "or leave --as out for a sample")
        return row[0], json.loads(row[1] or "{}")
    row = store.conn.execute(
        "SELECT c.email, c.fields FROM list_members m JOIN lists l ON l.id = m.list_id "
        "JOIN contacts c ON c.id = m.contact_id WHERE l.name = ? ORDER BY length(c.fields) DESC, c.id LIMIT 1",
        (campaign.list_name,)).fetchone()
    return (row[0], json.loads(row[1] or "{}")) if row else (None, {})


# --- status -------------------------------------------------------------------------------


def resolve_unknown(store: Store, name: str, as_state: str,
                    addresses: Iterable[str] | None = None) -> list[str]:
    """Settle a campaign's ``unknown`` recipients as ``"sent"`` or ``"pending"``.

    ``unknown`` rows are messages that were on the wire when a run died or the connection
    dropped after the end of DATA: perhaps delivered. Check the server's log (or ask the
    recipients), then settle them: ``"sent"`` closes them; ``"pending"`` sends them again on
    the next run (so a recipient may get the campaign twice). ``addresses`` None settles every
    unknown row. Returns the addresses settled.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org"}])
        >>> _ = create_campaign(store, "spring", "all", "Hi", "<p>Hello</p>")
        >>> resolve_unknown(store, "spring", "sent")
        []
    """
    return Ledger(store, get_campaign(store, name).id).resolve(as_state, addresses)


def campaign_warnings(store: Store, name: str) -> list[str]:
    """What may keep the campaign from reading well, in sentences (e.g. HTML Gmail clips).

    Example::

        >>> from newsletter_kit.store import open_store
        >>> from newsletter_kit.audience import add_contacts
        >>> store = open_store(":memory:")
        >>> _ = add_contacts(store, [{"email": "ann@example.org"}])
        >>> _ = create_campaign(store, "big", "all", "Hi", "<p>" + "x" * 110_000 + "</p>")
        >>> campaign_warnings(store, "big")[0][:20]
        'the HTML is 107 KB: '
    """
    warning = html_size_warning(get_campaign(store, name).html)
    return [warning] if warning else []


def forecast_finish(store: Store, campaign: str, *, now: dt.datetime | None = None) -> dt.date | None:
    """The day the campaign will have been sent to everyone at the current limit (None: done).

    With several relays each counts at its own limit day by day (warm-ups included); else as
    :func:`newsletter_kit.progress.forecast_finish`.

    Example::

        >>> forecast_finish(store, "spring")       # doctest: +SKIP
        datetime.date(2026, 3, 4)
    """
    from .relays import relay_names

    if len(relay_names(store)) > 1:
        pending = campaign_status(store, campaign)["pending"]
        if not pending:
            return None
        from .relaying import forecast

        return forecast(store, pending)
    return _forecast_one_server(store, campaign, now=now)


# --- the report of a run ------------------------------------------------------------------


@dataclass
class SendReport:
    """What one send run did.

    ``paused`` says why the run stopped before the campaign was done: ``"quota"`` (today's
    limit is used; ``resume_at`` says when it resets), ``"connection"`` (a 421 or a dropped
    connection; ``detail`` has the reply), ``"failures"`` (too many failures in a row),
    ``"refused"`` (the server refused the message itself or its sender: sending it to anyone
    else would be refused too), ``"guard"`` (a deliverability guard: too many refusals at
    RCPT, or the campaign's complaint rate), ``"stopped"`` (the Stop button, or a signal),
    ``"window"`` (a schedule's send window closed).
    ``None``: finished, or ``--limit`` reached. ``unknown`` lists recipients found on the wire
    when a run died: never resent unless settled with :func:`resolve_unknown`.
    """

    campaign: str
    dry_run: bool = False
    attempted: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    excluded: int = 0
    unknown: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    would_send: int = 0
    pending: int = 0
    paused: str | None = None
    resume_at: str | None = None
    detail: str | None = None
    #: With ``paused == "refused"``: what the server refused, ``"message"`` (that delivery
    #: fails) or ``"sender"`` (our sender address, relay, login, IP or session, at any SMTP
    #: stage: the recipient stays pending and nobody is charged).
    refused: str | None = None
    #: addresses the list check flagged, left out by ``--skip-risky`` (this run's audience)
    skipped_risky: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The ``campaign send --json`` document."""
        return asdict(self)

    def summary(self) -> str:
        """A few human lines: what was done, and what comes next."""
        if self.dry_run:
            lines = [f"dry run of {self.campaign!r}: {self.would_send} message(s) would be sent now, "
                     f"{self.pending} pending in all, {self.excluded} newly excluded; nothing was sent "
                     "or written"]
        else:
            lines = [f"{self.campaign}: {self.sent} sent, {self.deferred} deferred, {self.failed} "
                     f"failed, {self.excluded} newly excluded; {self.pending} still pending"]
        if self.skipped_risky:
            lines.append(f"{self.skipped_risky} address(es) flagged by the list check left out (--skip-risky)")
        if self.unknown:
            lines.append(f"{len(self.unknown)} recipient(s) were in flight when an earlier run "
                         f"died and are marked unknown (not resent): {', '.join(self.unknown[:10])}"
                         + (" ..." if len(self.unknown) > 10 else ""))
        if self.suppressed:
            lines.append(f"suppressed after SMTP rejections: {', '.join(self.suppressed)}")
        lines.append(self._next_step())
        return "\n".join(line for line in lines if line)

    def _next_step(self) -> str:
        if self.dry_run and self.paused == "quota":
            return f"today's send limit allows {self.would_send}; the rest would follow after {self.resume_at}"
        if self.paused == "quota":
            return (f"paused: today's send limit is used; run `send` again after {self.resume_at} "
                    "to continue")
        if self.paused == "connection":
            return f"paused: the server or the connection went away ({self.detail}); run `send` again later"
        if self.paused == "failures":
            return f"stopped after too many failures in a row (last: {self.detail}); check the settings and the list"
        if self.paused == "refused" and self.refused == "sender":
            return (f"stopped: the server refused our sender or session, not the recipient "
                    f"({self.detail}); nobody was charged and the recipient stays pending; fix the "
                    "settings or the server, then run `send` again")
        if self.paused == "refused":
            return (f"stopped: the server refused the message itself ({self.detail}); nobody was "
                    "marked as bounced; fix the campaign or the settings, then run `send` again")
        if self.paused == "guard":
            return f"paused by a deliverability guard: {self.detail}"
        if self.paused == "stopped":
            return "stopped on request; run `send` again to continue"
        if self.paused == "window":
            return (f"paused: {self.detail}; `newsletter-kit run` continues at the next opening"
                    + (f" ({self.resume_at})" if self.resume_at else ""))
        if self.pending and not self.dry_run:
            return "run `send` again to continue" + (f" ({self.detail})" if self.detail else "")
        return ""


# --- sending ------------------------------------------------------------------------------


class StopPolicy:
    """When a run stops before it is done, in one place (called from the sending threads).

    It stops on the Stop button (``stop_event``), after ``max_failures`` failed or deferred
    messages in a row, at the first refusal of the message itself or of its sender, when the
    refusals at RCPT pass the guard (``guards``, unless None), and when the server or the
    connection goes away (a ``paused`` or ``unknown`` outcome, which the sender pool reports
    by setting :attr:`halt`).

    Example::

        >>> from newsletter_kit.transport import SendOutcome
        >>> policy = StopPolicy(max_failures=2)
        >>> for code in (550, 550):
        ...     policy.after_outcome(SendOutcome("failed", code, "5.1.1", "no such user"))
        >>> policy.stopping(), policy.reason(), policy.last_reply
        (True, 'failures', '550 no such user')
    """

    def __init__(self, max_failures: int = MAX_CONSECUTIVE_FAILURES,
                 stop_event: threading.Event | None = None, guards: SendGuards | None = None,
                 until: dt.datetime | None = None):
        self.max_failures = max_failures
        self.stop_event = stop_event
        #: A schedule's window closes at this moment: no message is started after it.
        self.until = until
        #: Set to stop the sending now: read by the sender pool between messages.
        self.halt = threading.Event()
        self.consecutive_failures = 0
        self.last_reply: str | None = None
        #: Why :attr:`halt` was set by this policy ("failures", "refused", "guard"), if it was.
        self.cause: str | None = None
        self.detail: str | None = None
        self.refusals = RefusalWindow(guards) if guards is not None else None
        #: With cause "refused": "message" or "sender" (:attr:`SendReport.refused`).
        self.refused: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"StopPolicy(max_failures={self.max_failures}, "
                f"consecutive_failures={self.consecutive_failures}, stopping={self.stopping()})")

    def after_outcome(self, outcome: SendOutcome) -> None:
        """Count failures in a row and refusals at RCPT; halt at a limit or a refused message."""
        with self._lock:
            if outcome.kind != "sent":
                self.last_reply = f"{outcome.code or ''} {outcome.reply}".strip()
            if outcome.kind in ("failed", "deferred"):
                self.consecutive_failures += 1
                if self.consecutive_failures >= self.max_failures:
                    self._halt("failures", self.last_reply)
            elif outcome.kind == "sent":
                self.consecutive_failures = 0
            if outcome.refuses_message:
                if self.cause is None:
                    self.refused = "sender" if outcome.refuses_sender else "message"
                remedy = reasons.remedy(outcome.reason) if outcome.refuses_sender else ""
                self._halt("refused", f"{self.last_reply}; {remedy}" if remedy else self.last_reply)
            if self.refusals is not None and self.refusals.add(outcome):
                self._halt("guard", self.refusals.describe())

    def _halt(self, cause: str, detail: str | None) -> None:
        if self.cause is None:
            self.cause, self.detail = cause, detail
        self.halt.set()

    def stop_requested(self) -> bool:
        """The Stop button was pressed."""
        return self.stop_event is not None and self.stop_event.is_set()

    def stopping(self) -> bool:
        """No new message should be started."""
        if self.until is not None and not self.halt.is_set() and clock.now() >= self.until:
            with self._lock:
                self._halt("window", f"the send window closed at {self.until.isoformat()}")
        return self.halt.is_set() or self.stop_requested()

    def reason(self) -> str | None:
        """Why the run stopped (a :attr:`SendReport.paused` value), or None while it goes on."""
        if self.halt.is_set():
            if self.cause is not None:
                return self.cause
            return "stopped" if self.stop_requested() else "connection"
        return "stopped" if self.stop_requested() else None


class _Run:
    """One send run of one campaign: the state shared by its steps, and job building.

    The ledger's SQL is :class:`~newsletter_kit.ledger.Ledger`'s; when to stop is the
    :class:`StopPolicy`'s.
    """

    def __init__(self, store: Store, campaign: Campaign, smtp: SmtpSettings,
                 bounce: BounceSettings | None, renderer: Any, report: SendReport,
                 policy: StopPolicy, relay: str | None = None):
        self.store = store
        self.campaign = campaign
        self.smtp = smtp
        self.relay = relay  # the relay this run sends through (None: the dedicated SMTP server)
        self.hourly_limit: int | None = None  # the relay's, counted in the claim's transaction
        self.relay_limit: tuple[int, dt.datetime] | None = None  # the relay's own daily limit, since
        self.pace: Callable[[], None] | None = None  # waits for the relay's rate per second
        self.bounce = bounce
        self.renderer = renderer
        self.report = report
        self.policy = policy
        self.ledger = Ledger(store, campaign.id)
        self.envelope_from = _envelope_sender(smtp, bounce)
        # VERP: each delivery's own signed envelope sender (tokens.envelope_sender).
        self.verp_key = store.signing_key() if bounce is not None and bounce.verp else None
        self.dkim = signing.signer_for(smtp, campaign.from_addr)  # reads the key: before any send
        self.owner = quota.new_owner()
        self.recipients: dict[str, audience.Recipient] = {}
        self.skip_risky = False
        # The store's connection: the ledger thread's batch transactions and the main thread's
        # (an interrupted batch) never overlap. The sending threads write to the send log only.
        self._write_lock = threading.Lock()
        self._answers_lock = threading.Lock()
        self._answered: list[tuple[Row, SendOutcome]] = []  # answers not in the send log yet

    # -- at the start of a run

    def refresh_audience(self, write: bool = True) -> tuple[int, int]:
        """Compute the audience now: new rows ``pending``, opted-out rows ``excluded``.

        Returns (newly excluded, pending). With ``write=False`` (dry run) only counts.
        """
        campaign = self.campaign
        recipients = audience.eligible_recipients(self.store, campaign.name, campaign.list_name,
                                                  self.smtp.exclusion)
        members = _excluded_members(self.store, campaign, self.smtp.exclusion)
        if self.skip_risky:  # the list check's flagged addresses are left out of this run
            from .listcheck import risky_addresses

            risky = risky_addresses(self.store)
            flagged = [r for r in recipients if r.email in risky]
            members.update({r.email: (r.contact_id, f"left out by the list check: {risky[r.email]}"[:500])
                            for r in flagged})
            recipients = [r for r in recipients if r.email not in risky]
            self.report.skipped_risky = len(flagged)
        self.recipients = {r.email: r for r in recipients}
        rows = self.ledger.states()
        to_add = [(r.contact_id, r.email) for r in recipients if r.email not in rows]
        back = [e for e, s in rows.items() if s == "excluded" and e in self.recipients]
        gone = f"no longer on the list {campaign.list_name!r}"
        excluded = [(e, *members.get(e, (None, gone)))
                    for e, s in rows.items() if s in RETRYABLE and e not in self.recipients]
        excluded += [(e, cid, reason) for e, (cid, reason) in members.items() if e not in rows]
        pending = len(to_add) + len(back) + sum(
            1 for e, s in rows.items() if s in RETRYABLE and e in self.recipients)
        if write and (to_add or back or excluded):
            with self.store.transaction():
                self.ledger.add_recipients(to_add, back, excluded)
        return len(excluded), pending

    # -- batches

    def claim(self, want: int) -> Claim:
        """Claim up to ``want`` due rows and reserve their quota, in one transaction."""
        with self._write_lock, self.store.transaction():
            return self._claim(want)

    def on_wire(self, row: Row) -> None:
        """Commit to the send log that ``row`` goes on the wire now, with the answers received
        since the last line: after a kill, only a message on the wire can be ``unknown``."""
        if self.pace is not None:
            self.pace()
        with self._answers_lock:
            answered, self._answered = self._answered, []
        self.ledger.log_wire(self.owner, row, answered)

    def answered(self, row: Row, outcome: SendOutcome) -> None:
        """Keep an outcome for the next commit (called from the sending threads)."""
        with self._answers_lock:
            self._answered.append((row, outcome))

    def _claim(self, want: int) -> Claim:
        return self.ledger.claim(want, owner=self.owner, settings=self.smtp,
                                 new_message_id=self.renderer.new_message_id, relay=self.relay,
                                 hourly_limit=self.hourly_limit, relay_limit=self.relay_limit)

    def jobs(self, rows: list[Row]) -> list[SendJob]:
        """One job per row; its message is built by the thread that sends it."""
        renderer, envelope_from, dkim = self.renderer, self.envelope_from, self.dkim
        echo_key = self.store.signing_key() if getattr(renderer, "echo", None) is not None else None

        def build(row: Row) -> Callable[[], bytes]:
            recipient = self.recipients.get(row.email)
            fields = recipient.fields if recipient is not None else self._fields_of(row)
            # The ESP's events echo the delivery's signed id back (settings esp).
            token = verp_token(echo_key, row.id) if echo_key is not None else None
            if dkim is not None:  # signs the bytes just rendered: one build per message
                return lambda: dkim.sign(renderer.render(row.email, fields, message_id=row.message_id,
                                                         delivery_token=token))
            return lambda: renderer.render(row.email, fields, message_id=row.message_id, delivery_token=token)

        return [(envelope_sender(envelope_from, self.verp_key, row.id), row.email, build(row)) for row in rows]

    def _fields_of(self, row: Row) -> dict[str, Any]:
        # A row another process added for a contact this run's audience did not include.
        found = self.store.conn.execute("SELECT fields FROM contacts WHERE email = ?", (row.email,)).fetchone()
        return json.loads(found[0]) if found else {}

    def record(self, batch: Claim, outcomes: list[SendOutcome | None], started: list[bool]) -> None:
        """Record a batch's outcomes and settle its quota, in one transaction."""
        self.record_and_claim_next(batch, outcomes, started, 0)

    def record_and_claim_next(self, batch: Claim, outcomes: list[SendOutcome | None],
                              started: list[bool], want: int) -> Claim:
        """Record a batch's outcomes, settle its quota and claim up to ``want`` next rows.

        One transaction (the ledger thread runs it while the next batch is on the wire; the
        sending threads write only to the send log meanwhile). The next batch is claimed
        (committed) before any of it is sent, as the ledger requires.
        """
        ids = {row.id for row in batch.rows}
        with self._answers_lock:  # answers of this batch not logged yet: the ledger has them now
            self._answered = [(r, o) for r, o in self._answered if r.id not in ids]
        with self._write_lock, self.store.transaction():
            written = self.ledger.write_outcomes(batch.rows, outcomes, started)
            quota.settle(self.store, owner=self.owner, day=batch.day, released=batch.granted,
                         accepted=written.counted)
            for row, outcome in written.rejections:
                # Only a refusal of the recipient is a bounce of that address.
                if outcome.concerns == "recipient":
                    self.report.suppressed += self._record_rejection(row, outcome)
            following = self._claim(want)
        if batch.rows:  # the ledger has them now (committed): their log lines can go
            self.ledger.forget_log([self.owner], batch.rows)
        report = self.report
        report.sent += written.counts["sent"]
        report.deferred += written.counts["deferred"]
        report.failed += written.counts["failed"]
        report.attempted += written.attempted
        return following

    def release(self, batch: Claim) -> None:
        """A batch claimed ahead but not to be sent: back to pending, its quota given back."""
        if batch.rows:
            self.record(batch, [None] * len(batch.rows), [False] * len(batch.rows))

    def _record_rejection(self, row: Row, outcome: SendOutcome) -> list[str]:
        from .bounces import record_smtp_rejection

        return record_smtp_rejection(
            self.store, email=row.email, campaign=self.campaign.name, delivery_id=row.id,
            code=int(outcome.code or 0), status=outcome.status, reply=f"{outcome.code} {outcome.reply}",
            settings=self.bounce)


def send_campaign(store: Store, name: str, limit: int | None = None, dry_run: bool = False,
                  progress: Progress | None = None, connections: int = 1,
                  smtp_factory: SmtpFactory | None = None, password: str | None = None,
                  stop_event: threading.Event | None = None, *,
                  max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES,
                  guards: SendGuards | None = None, ignore_guards: bool = False,
                  message_deadline: float = MESSAGE_DEADLINE,
                  until: dt.datetime | None = None, relay: str | None = None,
                  skip_risky: bool = False) -> SendReport:
    """Send the campaign to whoever is still pending, as far as today's quota allows.

    Run it again to resume: after a quota pause (``report.paused == "quota"``), a dropped
    connection, a Stop, or a crash. ``limit`` caps the recipients attempted in this run;
    ``dry_run`` renders every pending message and reports what would be sent, writing nothing.
    ``connections`` > 1 sends over that many parallel connections (for a slow server).
    ``smtp_factory`` replaces ``smtplib.SMTP`` (tests); ``password`` overrides the reference.
    ``guards`` (default :class:`~newsletter_kit.guards.SendGuards`) pause the run when the
    server refuses too many recipients, and keep a campaign with too many spam complaints
    from being sent; ``ignore_guards`` turns both off. ``message_deadline`` bounds one
    message's whole SMTP conversation (seconds); past it the connection counts as dropped.
    ``until`` (an aware time: a schedule's window closing) starts no message after it; the run
    then pauses with ``paused == "window"``.

    With several enabled relays (``settings relay add``) the run spreads the recipients over
    them by weight within what each may still send, concurrently, and fails over: a relay that
    cannot be reached, refuses the login or throttles is set aside for a cool-down and the
    others take its share (:mod:`newsletter_kit.relaying`). ``relay`` sends through that
    relay only.
    ``skip_risky`` leaves out the addresses the last list check flagged (``contacts check``).

    Example::

        >>> report = send_campaign(store, "spring", progress=lambda done, total, r: print(done, total))  # doctest: +SKIP
        >>> report.paused, report.resume_at                                # doctest: +SKIP
        ('quota', '2026-03-02T00:00:00+01:00')
    """
    if limit is not None and limit < 0:
        raise CampaignError("--limit must be zero or more")
    if connections < 1:
        raise CampaignError("--connections must be at least 1")
    campaign = get_campaign(store, name)
    if campaign.status == ARCHIVED:
        raise CampaignError(f"campaign {name!r} was pruned (`store prune`): its ledger no longer says who "
                            "had it, so it cannot be sent again; create a new campaign")
    _refuse_if_deleted(campaign)
    if campaign.archived_at:
        raise CampaignError(f"campaign {name!r} is archived: bring it back first "
                            f"(`campaign archive {name} --undo`)")
    smtp = require_smtp_settings(store)
    if relay is None and not dry_run:
        from .relaying import send_over_relays, several_relays

        relays = several_relays(store)
        if relays:
            return send_over_relays(
                store, name, relays, send=send_campaign, report=SendReport, limit=limit, progress=progress, connections=connections,
                smtp_factory=smtp_factory, password=password, stop_event=stop_event,
                max_consecutive_failures=max_consecutive_failures, guards=guards,
                ignore_guards=ignore_guards, message_deadline=message_deadline, until=until,
                skip_risky=skip_risky)
    relay_conf = None
    if relay is not None:
        from .relaying import relay_smtp

        smtp, relay_conf, relay_limit = relay_smtp(store, relay, smtp)
    bounce = load_bounce_settings(store)
    renderer = _renderer(store, campaign, smtp, _envelope_sender(smtp, bounce))
    report = SendReport(campaign=campaign.name, dry_run=dry_run)
    guards = None if ignore_guards else (guards or SendGuards())
    policy = StopPolicy(max_consecutive_failures, stop_event, guards, until)
    run = _Run(store, campaign, smtp, bounce, renderer, report, policy, relay)
    run.skip_risky = skip_risky
    if relay_conf is not None:
        from .relaying import Pacer

        run.hourly_limit = relay_conf.hourly_limit
        run.relay_limit = relay_limit
        run.pace = Pacer(relay_conf.max_per_second) if relay_conf.max_per_second else None
    blocked = complaint_block(store, campaign.name, guards) if guards is not None else None
    try:
        if dry_run:
            _dry_run(run, limit)
            if blocked:
                report.would_send, report.paused, report.detail = 0, "guard", blocked
            return report
        report.unknown = run.ledger.mark_abandoned()
        settle_dead_runs(store)  # other campaigns' dead runs: their quota is given back too
        report.excluded, _ = run.refresh_audience()
        if blocked:
            report.paused, report.detail = "guard", blocked
        else:
            # An ESP's relay may name its id of the message in the final 250 (SES, SendGrid do).
            capture = getattr(run.renderer, "echo", None) is not None
            _send_batches(run, limit, progress, lambda: SenderPool(
                smtp, connections, password=password, factory=smtp_factory, deadline=message_deadline,
                capture_ids=capture))
    finally:
        quota.end_run(run.owner)
        run.ledger.close_log(run.owner)
    _finish(run)
    progress_changed(campaign.name)
    return report


def _dry_run(run: _Run, limit: int | None) -> SendReport:
    """Render every message a run would send; write nothing (no ledger, no quota)."""
    report, store = run.report, run.store
    report.unknown = [email for _, email in run.ledger.abandoned()]  # claimed rows: pending again
    report.excluded, report.pending = run.refresh_audience(write=False)
    states = run.ledger.states()
    due = [r for email, r in run.recipients.items() if states.get(email, "pending") in RETRYABLE]
    for recipient in due:
        run.renderer.render(recipient.email, recipient.fields, message_id=run.renderer.new_message_id())
    status = quota.quota_status(store, run.smtp, reclaim=False)
    report.would_send = min(len(due), status.remaining, limit if limit is not None else len(due))
    if report.would_send < len(due) and report.would_send == status.remaining:
        report.paused, report.resume_at = "quota", status.resets_at.isoformat()
    return report


def _send_batches(run: _Run, limit: int | None, progress: Progress | None,
                  make_pool: Callable[[], SenderPool]) -> None:
    report, policy = run.report, run.policy
    due = run.ledger.due_count()
    total = min(due, limit) if limit is not None else due
    status = quota.quota_status(run.store, run.smtp)
    if due and status.remaining == 0:
        report.paused, report.resume_at = "quota", status.resets_at.isoformat()
        return
    if total == 0:
        return
    total = min(total, status.remaining)
    with make_pool() as pool:  # connected and logged in before anything is claimed
        _set_status(run, "sending")
        if progress:
            progress(0, total, report)
        size = BATCH_PER_CONNECTION * len(pool.senders)

        def next_size(not_counted: int) -> int:
            if policy.stopping():
                return 0
            # ``not_counted``: rows claimed or being settled, not yet in report.attempted.
            return size if limit is None else max(0, min(size, limit - report.attempted - not_counted))

        last = _pipeline(run, pool, run.claim(next_size(0)), next_size, lambda: progress and progress(
            report.attempted, max(total, report.attempted), report))
    if last.granted == 0:
        report.paused = "quota"
        report.resume_at = quota.quota_status(run.store, run.smtp).resets_at.isoformat()
    else:
        report.paused = policy.reason()
        if policy.halt.is_set():
            report.detail = policy.detail if policy.cause else policy.last_reply
        if report.paused == "refused":
            report.refused = policy.refused


def _pipeline(run: _Run, pool: SenderPool, claimed: Claim, next_size: Callable[[int], int],
              tick: Callable[[], Any]) -> Claim:
    """Send batch after batch while a ledger thread records the previous one and claims the next.

    The ledger's commits (the previous batch's outcomes and quota, the next batch marked in
    flight) overlap the SMTP conversation instead of sitting between batches. The store's
    connection is used by one thread at a time: the ledger thread only while this one sends.
    At most two batches are in flight (a crash leaves them ``unknown``). Returns the last claim
    (``granted == 0``: the quota ran out).
    """
    policy = run.policy
    ledger = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="newsletter-ledger")
    previous: tuple[Claim, list[SendOutcome | None], list[bool]] | None = None
    try:
        while claimed.rows:
            in_flight = len(claimed.rows) + (len(previous[0].rows) if previous else 0)
            if previous is None:
                ahead = ledger.submit(run.claim, next_size(in_flight))
            else:
                ahead = ledger.submit(run.record_and_claim_next, *previous, next_size(in_flight))
            outcomes: list[SendOutcome | None] = [None] * len(claimed.rows)
            started = [False] * len(claimed.rows)
            try:
                _send_one_batch(run, pool, claimed.rows, outcomes, started)
                following = ahead.result()
            except BaseException:
                # Interrupted (Ctrl-C in a notebook) or the ledger failed: record what was
                # answered; what was not tried goes back to pending, what was handed to the
                # server unanswered becomes unknown.
                concurrent.futures.wait([ahead])
                if not ahead.exception():
                    run.release(ahead.result())
                run.record(claimed, outcomes, started)
                raise
            previous = (claimed, outcomes, started)
            if policy.stopping():
                run.release(following)
                following = Claim.nothing()
            claimed = following
            try:
                tick()
            except BaseException:  # the caller's progress callback failed: leave nothing in flight
                run.record(*previous)
                run.release(claimed)
                raise
        if previous is not None:
            run.record(*previous)
            tick()
        return claimed
    finally:
        ledger.shutdown(wait=True)


def _send_one_batch(run: _Run, pool: SenderPool, rows: list[Row], outcomes: list[SendOutcome | None],
                    started: list[bool]) -> None:
    """Send a claimed batch, filling ``outcomes`` and ``started`` as answers come."""
    policy = run.policy
    jobs = run.jobs(rows)

    def before(index: int) -> None:
        run.on_wire(rows[index])

    def after(index: int, outcome: SendOutcome) -> None:
        outcomes[index] = outcome
        run.answered(rows[index], outcome)
        policy.after_outcome(outcome)

    pool.send_batch(jobs, policy.halt, started, stop=policy.stop_event, after=after, before=before)


def _set_status(run: _Run, status: str) -> None:
    with run.store.transaction():
        run.store.conn.execute("UPDATE campaigns SET status = ?, updated_at = ? WHERE id = ?",
                               (status, now_iso(), run.campaign.id))


def _finish(run: _Run) -> None:
    """Count what is left and set the campaign's status (done, paused or sending)."""
    report = run.report
    report.pending = run.ledger.left_to_send()
    if report.pending and report.paused is None and run.ledger.domains_full:
        report.detail = (f"the hourly limit of {', '.join(run.ledger.domains_full)} is reached; "
                         "their recipients go in the next hour")
    elif report.pending and report.paused is None:
        nxt = run.ledger.next_retry_at()
        if nxt and not run.ledger.due_count():
            report.detail = f"deferred recipients are retried after {nxt}"
    _set_status(run, "done" if not report.pending else ("paused" if report.paused else "sending"))
