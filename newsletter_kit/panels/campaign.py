"""The campaign panel: pick or create a campaign, preview it, see its audience, dry run, send.

Sending runs in a background thread so the notebook stays responsive and the Stop button
works; a progress bar follows the run and today's quota meter is refreshed as it goes. Every
number comes from the package's API (audience, campaigns, quota, messages).

Example (in a notebook cell)::

    import newsletter_kit as nk
    panel = nk.CampaignPanel(nk.open_store(), campaign="spring-sale")
    panel
"""

from __future__ import annotations

import html
import json
import secrets
import threading
from typing import Any

import ipywidgets as widgets
import pandas as pd

from .. import audience, campaigns, overview, progress, quota
from ..errors import CampaignError, NewsletterKitError
from ..review import TIME_FORMAT  # the one way a time reads, in tables and panels alike
from ..settings import load_smtp_settings
from ..store import Store, open_store
from .common import (
    LABEL_WIDTH,
    Panel,
    button,
    catch_errors,
    field_layout,
    field_style,
    heading,
    hint,
    panel_style,
    text,
)

NEW_CAMPAIGN = "(new campaign…)"
#: How many campaigns the picker lists (newest first, those matching the search box).
PICKER_SIZE = 25


class QuotaMeter(Panel):
    """Today's send quota as a bar: used of the daily limit, what remains, when it resets.

    Example::

        QuotaMeter(store)          # displays "Today: 120 of 500 sent, 380 remaining..."
    """

    def __init__(self, store: Store | None = None):
        super().__init__(store)
        self.bar = widgets.IntProgress(value=0, min=0, max=1, description="Today's quota",
                                       style={"description_width": LABEL_WIDTH, "bar_color": "#2e7d32"},
                                       layout=widgets.Layout(width="520px"))
        self.label = widgets.HTML("")
        self.status: quota.QuotaStatus | None = None
        self.widget = widgets.VBox([widgets.HBox([self.bar, self.label]), self.message])
        self.refresh()

    @catch_errors
    def refresh(self) -> quota.QuotaStatus | None:
        """Read today's quota from the store again."""
        if load_smtp_settings(self.store) is None:
            self.status = None
            self.label.value = "no SMTP settings yet (no daily limit)"
            return None
        status = self.status = quota.quota_status(self.store)
        self.bar.max = max(status.limit, 1)
        self.bar.value = min(status.used + status.reserved, self.bar.max)
        self.bar.style.bar_color = "#c62828" if status.remaining == 0 else "#2e7d32"
        held = f" ({status.reserved} held by running sends)" if status.reserved else ""
        self.label.value = (
            f"&nbsp;{status.used} of {status.limit} sent today{held}, <b>{status.remaining} "
            f"remaining</b>; resets {status.resets_at.strftime(TIME_FORMAT)} {status.resets_at:%Z}")
        return status


class CampaignPanel(Panel):
    """Pick (or create) a campaign, preview it for a contact, check its audience, send it.

    Attributes for code and tests: ``list_name``, ``campaign`` (dropdowns; ``campaign`` lists
    the newest campaigns matching ``campaign_search``), ``new_name``, ``new_subject``,
    ``new_html``, ``create_button``, ``preview_contact`` (an address, typed or drawn with
    ``random_button``), ``preview`` (the rendered message, HTML), ``counts`` (the audience's
    counts, from SQL), ``excluded`` (a DataFrame of the excluded members and why),
    ``audience`` (a DataFrame of the whole list: read from the store on first use only),
    ``dry_run_button``, ``send_button``, ``stop_button``, ``progress``, ``quota``,
    ``last_report`` (the last :class:`~newsletter_kit.campaigns.SendReport`), ``message``.
    Call :meth:`wait` to block until a background send has finished.
    """

    def __init__(self, store: Store | None = None, campaign: str | None = None):
        super().__init__(store)
        self._audience: pd.DataFrame | None = None
        self.excluded: pd.DataFrame = pd.DataFrame(columns=list(audience.FRAME_COLUMNS))
        self.counts: dict[str, Any] = {"contacts": 0, "eligible": 0, "excluded": 0, "reasons": {}}
        self.last_report: campaigns.SendReport | None = None
        self.preview_message: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._refreshing = False
        self._quiet = False
        self._build()
        self.refresh_choices(select=campaign)
        progress.watch(self._on_changed)  # a notebook cell sent or changed a campaign: re-read

    # -- building -------------------------------------------------------------------------
    def _build(self) -> None:
        self.campaign_search = text("Find campaign", placeholder="part of its name")
        self.campaign = widgets.Dropdown(options=[NEW_CAMPAIGN], description="Campaign",
                                         style=field_style(), layout=field_layout("460px"))
        self.list_name = widgets.Dropdown(options=[], description="Contact list",
                                          style=field_style(), layout=field_layout("460px"))
        self.campaign_info = widgets.HTML("")
        self.new_name = text("Name", placeholder="spring-sale")
        self.new_subject = text("Subject", placeholder="Spring sale: {{ first_name }}, 20% off")
        self.new_html = widgets.Textarea(
            value="", description="HTML template", placeholder="<p>Hello {{ first_name }}</p>",
            style=field_style(), layout=widgets.Layout(width="720px", height="180px"))
        self.sample_button = button("Use the sample template", self.use_sample_template,
                                    icon="file-code")
        self.create_button = button("Create campaign", self.create, style="primary", icon="plus")
        self.create_box = widgets.VBox([
            heading("New campaign"), self.new_name, self.new_subject, self.new_html,
            hint("Jinja2 template: <code>{{ first_name }}</code> and the other CSV columns of the "
                 "contact are available; the unsubscribe headers are added for you."),
            widgets.HBox([self.create_button, self.sample_button]),
        ])
        # An address typed or drawn at random: never a dropdown of the whole list.
        self.preview_contact = widgets.Text(value="", description="Preview for", continuous_update=False,
                                            placeholder="an address of the list",
                                            style=field_style(), layout=field_layout("460px"))
        self.preview_button = button("Preview", self.show_preview, icon="eye")
        self.random_button = button("Random contact", self.random_contact, icon="random",
                                    tooltip="Preview for an eligible contact drawn at random")
        self.preview = widgets.HTML("")
        self.audience_summary = widgets.HTML("")
        self.audience_table = widgets.HTML("", layout=widgets.Layout(max_height="320px",
                                                                     overflow="auto"))
        self.show_all = widgets.Checkbox(value=False, indent=False,
                                         description="Show everyone (reads the whole list: panel.audience)")
        # The list check before a send: risky addresses, and whether the send leaves them out.
        self.check_button = button("Check the list", self.check_list, icon="stethoscope",
                                   tooltip="Syntax, the domain's MX, role addresses, disposable domains, typos")
        self.check_summary = widgets.HTML("")
        self.check_table = widgets.HTML("", layout=widgets.Layout(max_height="320px", overflow="auto"))
        self.skip_risky = widgets.Checkbox(value=False, indent=False,
                                           description="Leave out the addresses the list check flagged")
        self.list_check: Any = None
        self.limit = widgets.BoundedIntText(value=0, min=0, max=10_000_000, description="At most",
                                            style=field_style(), layout=field_layout("300px"))
        self.dry_run_button = button("Dry run", self.dry_run, icon="flask",
                                     tooltip="Render every pending message and count; send nothing")
        self.send_button = button("Send", self.send, style="success", icon="paper-plane",
                                  tooltip="Send what today's quota allows")
        self.stop_button = button("Stop", self.stop, style="danger", icon="stop",
                                  tooltip="Stop after the messages in flight")
        self.stop_button.disabled = True
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="Progress",
                                            style={"description_width": LABEL_WIDTH},
                                            layout=widgets.Layout(width="520px"))
        self.progress_label = widgets.HTML("")
        self.quota = QuotaMeter(self.store)
        # Unknown recipients (on the wire when a run died): settle them as sent or pending.
        self.unknown_label = widgets.HTML("")
        self.resolve_as = widgets.ToggleButtons(options=[("sent", "sent"), ("send again", "pending")],
                                                value="sent", description="Settle as",
                                                style=field_style())
        self.resolve_confirm = widgets.Checkbox(value=False, indent=False,
                                                description="I accept they may get it twice")
        self.resolve_button = button("Settle unknown", self.resolve_unknown, icon="check",
                                     tooltip="Mark every unknown recipient as sent, or as pending "
                                             "(sent again by the next run)")
        self.resolve_box = widgets.VBox([
            self.unknown_label,
            widgets.HBox([self.resolve_as, self.resolve_confirm, self.resolve_button])])
        self.resolve_box.layout.display = "none"
        # A proof before the send, and the campaign's lifecycle (edit, duplicate, archive, delete).
        self.test_to = text("Test address", placeholder="me@example.org")
        self.test_button = button("Send test to me", self.send_test, icon="envelope",
                                  tooltip="The message for the contact in 'Preview for', subject "
                                          "prefixed [TEST], to the test address only")
        self.test_box = widgets.VBox([
            heading("Test"), widgets.HBox([self.test_to, self.test_button]),
            hint("Not a delivery: the unsubscribe link is inert and a bounce counts for nobody; it "
                 "counts toward today's quota.")])
        self.edit_subject = text("Subject")
        self.edit_html = widgets.Textarea(value="", description="HTML template", style=field_style(),
                                          layout=widgets.Layout(width="720px", height="140px"))
        self.save_button = button("Save changes", self.save_changes, icon="save",
                                  tooltip="Only before the first send; after it, duplicate the campaign")
        self.duplicate_name = text("Copy as", placeholder="spring-sale-2")
        self.duplicate_button = button("Duplicate", self.duplicate, icon="copy")
        self.archive_button = button("Archive", self.archive, icon="archive",
                                     tooltip="Hide it from the lists and the sidebar; its history stays")
        self.delete_confirm = widgets.Checkbox(value=False, indent=False,
                                               description="Yes, delete (a sent one keeps its deliveries)")
        self.delete_button = button("Delete", self.delete, style="danger", icon="trash")
        self.manage_box = widgets.VBox([
            heading("Change"), self.edit_subject, self.edit_html, self.save_button,
            widgets.HBox([self.duplicate_name, self.duplicate_button]),
            widgets.HBox([self.archive_button, self.delete_button, self.delete_confirm])])
        self.campaign.observe(self._on_campaign, names="value")
        self.campaign_search.observe(lambda _change: self.refresh_choices(), names="value")
        self.list_name.observe(self._on_list, names="value")
        self.preview_contact.observe(self._on_preview_contact, names="value")
        self.show_all.observe(lambda _change: self._show_audience(), names="value")
        self.send_box = widgets.VBox([
            heading("Send"), self.quota.widget,
            widgets.HBox([self.limit, widgets.HTML("&nbsp;recipients in this run (0: as many as "
                                                   "today's quota allows)")]),
            widgets.HBox([self.dry_run_button, self.send_button, self.stop_button]),
            widgets.HBox([self.progress, self.progress_label]),
            self.resolve_box,
        ])
        self.widget = widgets.VBox([
            panel_style(), heading("Campaign"), self.campaign_search, self.campaign, self.list_name,
            self.campaign_info,
            self.create_box,
            heading("Preview"), widgets.HBox([self.preview_contact, self.preview_button, self.random_button]),
            self.preview,
            self.test_box,
            heading("Audience"), self.audience_summary, self.show_all, self.audience_table,
            heading("List check"), widgets.HBox([self.check_button, self.skip_risky]), self.check_summary,
            self.check_table,
            self.send_box, self._build_schedule(), self.manage_box, self.message,
        ], layout=widgets.Layout(max_width="900px"))
        self.widget.add_class("nk-campaign-panel")
        self.widget.add_class("nk-panel")

    def _build_schedule(self) -> widgets.VBox:
        """The schedule fields: when `newsletter-kit run` (cron) may send this campaign."""
        self.schedule_at = text("Not before", placeholder="2026-12-08 09:00, or now")
        self.schedule_window = text("Window", placeholder="08:00-18:00 (empty: any hour)")
        self.schedule_days = text("Days", placeholder="mon-fri (empty: daily)")
        self.schedule_tz = text("Time zone", placeholder="Europe/Paris (empty: the SMTP settings' zone)")
        self.schedule_priority = widgets.IntText(value=0, description="Priority", style=field_style(),
                                                 layout=field_layout("220px"))
        self.schedule_button = button("Schedule", self.schedule, icon="clock-o",
                                      tooltip="Save the schedule; `newsletter-kit run` sends when it is due")
        self.unschedule_button = button("Clear schedule", self.unschedule, icon="times")
        self.schedule_label = widgets.Label(value="")
        return widgets.VBox([
            heading("Schedule"), self.schedule_label, self.schedule_at, self.schedule_window,
            self.schedule_days, self.schedule_tz, self.schedule_priority,
            widgets.HBox([self.schedule_button, self.unschedule_button]),
        ])

    def _show_schedule(self) -> None:
        from .. import clock, schedules

        name = self.campaign_name
        current = schedules.get_schedule(self.store, name) if name else None
        if current is None:
            self.schedule_label.value = "Not scheduled: send it with the button above, or schedule it for `run`."
            return
        opening = current.next_opening(clock.now())
        zone = current.zone
        self.schedule_label.value = (f"Scheduled {current.describe()}; next opening "
                                     f"{opening.astimezone(zone):%Y-%m-%d %H:%M} {current.tz}")

    @catch_errors
    def schedule(self, _button: Any = None) -> Any:
        """Save the schedule typed in the fields for the selected campaign."""
        from .. import schedules

        self.clear_message()
        name = self._require_campaign()
        saved = schedules.schedule_campaign(
            self.store, name, self.schedule_at.value.strip() or "now",
            window=self.schedule_window.value.strip() or None, days=self.schedule_days.value.strip() or None,
            tz=self.schedule_tz.value.strip() or None, priority=int(self.schedule_priority.value or 0))
        self._show_schedule()
        self.show_ok(f"{name}: scheduled {saved.describe()}.")
        return saved

    @catch_errors
    def unschedule(self, _button: Any = None) -> bool:
        """Remove the selected campaign's schedule."""
        from .. import schedules

        self.clear_message()
        name = self._require_campaign()
        removed = schedules.unschedule_campaign(self.store, name)
        self._show_schedule()
        self.show_ok(f"{name}: schedule removed." if removed else f"{name} had no schedule.")
        return removed

    # -- choices --------------------------------------------------------------------------
    def refresh_choices(self, select: str | None = None) -> None:
        """Reload the lists and campaigns from the store; select ``select`` if given.

        The picker lists the newest :data:`PICKER_SIZE` campaigns whose name contains what
        ``campaign_search`` holds, and the selected one."""
        names = [c["name"] for c in campaigns.list_campaigns(
            self.store, search=self.campaign_search.value.strip() or None, limit=PICKER_SIZE)]
        for wanted in (select, self.campaign.value):
            if wanted and wanted not in (NEW_CAMPAIGN, *names) and _exists(self.store, wanted):
                names.append(wanted)
        lists = audience.list_names(self.store)
        keep_list = self.list_name.value
        # The observers would refresh at each step (each a count of the list): once, at the end.
        self._quiet = True
        try:
            self.list_name.options = lists
            if lists and keep_list not in lists:
                # A list of its own is a likelier target than "all", which holds every contact.
                own = [n for n in lists if n != audience.ALL_LIST]
                keep_list = own[0] if own else lists[0]
            self.list_name.value = keep_list if lists else None
            current = select or (self.campaign.value if self.campaign.value in names else None)
            self.campaign.options = [*names, NEW_CAMPAIGN]
            if select and select not in names:
                self.new_name.value = select
                current = None
            self.campaign.value = current or (names[0] if names else NEW_CAMPAIGN)
        finally:
            self._quiet = False
        self._on_campaign()

    @property
    def campaign_name(self) -> str | None:
        """The selected campaign's name (None while creating a new one)."""
        value = self.campaign.value
        return None if value in (None, NEW_CAMPAIGN) else str(value)

    def _on_campaign(self, _change: Any = None) -> None:
        if self._quiet:
            return
        name = self.campaign_name
        creating = name is None
        self.create_box.layout.display = "" if creating else "none"
        self.manage_box.layout.display = self.test_box.layout.display = "none" if creating else ""
        self.list_name.disabled = not creating
        for b in (self.dry_run_button, self.send_button, self.preview_button, self.test_button,
                  self.schedule_button, self.unschedule_button):
            b.disabled = creating or self.sending
        self._show_schedule()
        if not creating:
            camp = campaigns.get_campaign(self.store, name)  # type: ignore[arg-type]
            if camp.list_name in self.list_name.options:
                self._quiet = True
                try:
                    self.list_name.value = camp.list_name
                finally:
                    self._quiet = False
            self.edit_subject.value, self.edit_html.value = camp.subject, camp.html
            self.delete_confirm.value = False
        if not self.test_to.value:
            smtp = load_smtp_settings(self.store)
            self.test_to.value = smtp.from_addr if smtp else ""
        self.refresh()

    def _on_list(self, _change: Any = None) -> None:
        if self.campaign_name is None and not self._quiet:
            self.refresh()

    # -- reading the store ----------------------------------------------------------------
    @property
    def audience(self) -> pd.DataFrame:
        """Every contact of the list, excluded or not and why, with its fields: read from the
        store on first use after each refresh (on a big list that is seconds and memory)."""
        if self._audience is None:
            list_name = self.list_name.value
            self._audience = (audience.audience_frame(self.store, self._audience_name(), list_name) if list_name
                              else pd.DataFrame(columns=list(audience.FRAME_COLUMNS)))
        return self._audience

    def _audience_name(self) -> str:
        return self.campaign_name or self.new_name.value.strip() or "(new)"

    @catch_errors
    def refresh(self) -> None:
        """Recount the audience (in SQL), the status line and the quota meter."""
        name, list_name = self._audience_name(), self.list_name.value
        self._audience = None
        if list_name:
            # The excluded members come from the small side; the list itself is only counted.
            self.excluded = audience.audience_frame(self.store, name, list_name, excluded_only=True)
            size = audience.list_size(self.store, list_name)
            reasons = self.excluded["reason"].value_counts()
            self.counts = {"contacts": size, "eligible": size - len(self.excluded), "excluded": len(self.excluded),
                           "reasons": {str(k): int(v) for k, v in reasons.items()}}
        else:
            self.counts = {"contacts": 0, "eligible": 0, "excluded": 0, "reasons": {}}
            self.excluded = pd.DataFrame(columns=list(audience.FRAME_COLUMNS))
        if list_name and not _is_member(self.store, list_name, self.preview_contact.value.strip().lower()):
            first = audience.eligible_recipients(self.store, name, list_name, limit=1)
            self._refreshing = True
            try:
                self.preview_contact.value = first[0].email if first else ""
            finally:
                self._refreshing = False
        self._show_audience()
        self.quota.refresh()
        self.show_preview()

    @catch_errors
    def random_contact(self, _button: Any = None) -> str | None:
        """Draw an eligible contact of the list at random and preview the campaign for it."""
        list_name = self.list_name.value
        if not list_name:
            return None
        low, high = self.store.conn.execute(
            "SELECT min(contact_id), max(contact_id) FROM list_members WHERE list_id = "
            "(SELECT id FROM lists WHERE name = ?)", (list_name,)).fetchone()
        if low is None:
            return None
        start = secrets.randbelow(high - low + 1) + low - 1
        name = self._audience_name()
        drawn = (audience.eligible_recipients(self.store, name, list_name, limit=1, after_id=start)
                 or audience.eligible_recipients(self.store, name, list_name, limit=1))
        if drawn:
            self.preview_contact.value = drawn[0].email  # the observer previews it
            return drawn[0].email
        self.show("Nobody on this list is eligible for the campaign.", "warning")
        return None

    def _show_campaign(self, counts: dict[str, int] | None) -> None:
        """The status line and what may be pressed, read again: a notebook cell or another
        process may have sent the campaign since the panel was opened."""
        name = self.campaign_name
        if name is None or counts is None:
            self.campaign_info.value = ""
            return
        camp = campaigns.get_campaign(self.store, name)
        self.campaign_info.value = _campaign_info(camp, counts)
        finished = counts["pending"] == 0
        self.send_button.disabled = self.sending or finished
        self.send_button.tooltip = ("Nothing left to send" if finished else "Send what today's quota allows")
        self.save_button.disabled = self.sending or counts["total"] - counts["pending"] - counts["excluded"] > 0

    def _on_preview_contact(self, _change: Any = None) -> None:
        if not self._refreshing:
            self.show_preview()

    def _campaign_counts(self, name: str) -> dict[str, int]:
        """The status line's counts: a campaign with no ledger yet is its audience, counted above."""
        started = self.store.conn.execute(
            "SELECT 1 FROM deliveries WHERE campaign_id = (SELECT id FROM campaigns WHERE name = ?) LIMIT 1",
            (name,)).fetchone()
        if started:
            return overview.campaign_counts(self.store, name)
        return {"total": self.counts["contacts"], "sent": 0, "failed": 0, "excluded": self.counts["excluded"],
                "pending": self.counts["eligible"], "unknown": 0}

    def _show_audience(self) -> None:
        why = "; ".join(f"{reason}: {count}" for reason, count in self.counts["reasons"].items())
        status = ""
        unknown = 0
        counts = None
        if self.campaign_name:
            counts = self._campaign_counts(self.campaign_name)
            status = ("<br>Campaign status: " + " · ".join(f"{k} {v}" for k, v in counts.items()))
            unknown = counts["unknown"]
        self._show_campaign(counts)
        self.resolve_box.layout.display = "" if unknown else "none"
        self.unknown_label.value = (
            f"<b>{unknown}</b> recipient(s) <b>unknown</b>: their message was on the wire when a run "
            "died or the connection dropped, so it may have been delivered. Check the server's log, "
            "then settle them." if unknown else "")
        self.audience_summary.value = (
            f"<b>{self.counts['contacts']}</b> contacts in the list: <b>{self.counts['eligible']}</b> "
            f"eligible, <b>{self.counts['excluded']}</b> excluded" + (f" ({html.escape(why)})" if why else "")
            + status)
        shown = self.audience if self.show_all.value else self.excluded
        self.audience_table.value = _table_html(shown)

    # -- creating -------------------------------------------------------------------------
    @catch_errors
    def use_sample_template(self, _button: Any = None) -> None:
        """Fill the new campaign's fields with the demo's sample template."""
        from .. import demo

        self.new_html.value = demo.sample_template_path().read_text(encoding="utf-8")
        if not self.new_subject.value:
            self.new_subject.value = demo.DEMO_SUBJECT
        if not self.new_name.value:
            self.new_name.value = demo.DEMO_CAMPAIGN

    @catch_errors
    def create(self, _button: Any = None) -> campaigns.Campaign:
        """Create the campaign typed in the "New campaign" fields and select it."""
        self.clear_message()
        if not self.list_name.value:
            raise CampaignError("there is no contact list yet: import contacts first")
        created = campaigns.create_campaign(
            self.store, self.new_name.value.strip(), self.list_name.value,
            self.new_subject.value, self.new_html.value)
        self.refresh_choices(select=created.name)
        warnings = campaigns.campaign_warnings(self.store, created.name)
        if warnings:
            self.show(f"Campaign {created.name!r} created; warning: {'; '.join(warnings)}", "warning")
        else:
            self.show_ok(f"Campaign {created.name!r} created for the list {created.list_name!r}.")
        return created

    @catch_errors
    def resolve_unknown(self, _button: Any = None) -> list[str]:
        """Settle the campaign's unknown recipients as chosen in "Settle as" (pending needs the box)."""
        self.clear_message()
        name = self._require_campaign()
        if self.resolve_as.value == "pending" and not self.resolve_confirm.value:
            raise CampaignError("sending them again may deliver the campaign twice: tick the box to confirm")
        settled = campaigns.resolve_unknown(self.store, name, self.resolve_as.value)
        self.resolve_confirm.value = False
        self.show_ok(f"{len(settled)} unknown recipient(s) settled as {self.resolve_as.value}.")
        self.refresh()
        return settled

    # -- preview --------------------------------------------------------------------------
    @catch_errors
    def show_preview(self, _button: Any = None) -> dict[str, Any] | None:
        """Render the selected campaign for the contact picked in "Preview for"."""
        name, email = self.campaign_name, self.preview_contact.value.strip().lower()
        if not name or not email:
            self.preview.value = ""
            return None
        row = self.store.conn.execute("SELECT fields FROM contacts WHERE email = ?", (email,)).fetchone()
        if row is None:
            self.preview.value = ""
            raise CampaignError(f"{email!r} is not a contact: type an address of the list, or draw one at random")
        fields = json.loads(row[0] or "{}")
        self.preview_message = campaigns.preview_message(self.store, name, email, fields)
        self.preview.value = _preview_html(self.preview_message)
        return self.preview_message

    # -- sending --------------------------------------------------------------------------
    @property
    def sending(self) -> bool:
        """True while a background send runs."""
        return self._thread is not None and self._thread.is_alive()

    @catch_errors
    def dry_run(self, _button: Any = None) -> campaigns.SendReport:
        """Render every pending message and count what would be sent; write nothing."""
        self.clear_message()
        name = self._require_campaign()
        report = campaigns.send_campaign(self.store, name, limit=self._limit(), dry_run=True)
        self.last_report = report
        self.show(report.summary(), "info")
        self.refresh()
        return report

    @catch_errors
    def check_list(self, _button: Any = None) -> Any:
        """Check the chosen list's addresses (``contacts check``); the flagged ones in a table."""
        from ..listcheck import check_contacts

        self.clear_message()
        list_name = self.list_name.value or None
        self.show("Checking the list (one DNS lookup per domain)…", "info")
        report = check_contacts(self.store, list_name)
        self.list_check = report
        frame = pd.DataFrame([c.to_dict() for c in report.flagged], columns=["address", "risks", "detail"])
        if not frame.empty:
            frame["risks"] = frame["risks"].map(", ".join)
        counts = ", ".join(f"{risk} {n}" for risk, n in sorted(report.counts.items()))
        self.check_summary.value = html.escape(
            f"{report.checked} checked, {len(report.flagged)} flagged" + (f" ({counts})" if counts else "")
            + (f"; DNS could not tell for {len(report.unknown_domains)} domain(s)" if report.unknown_domains else ""))
        self.check_table.value = _table_html(frame) if not frame.empty else "<i>nobody flagged</i>"
        self.clear_message()
        return report

    @catch_errors
    def send(self, _button: Any = None, background: bool = True) -> None:
        """Send what today's quota allows, in a background thread (Stop works meanwhile)."""
        self.clear_message()
        name = self._require_campaign()
        if self.sending:
            raise CampaignError("a send is already running: wait for it, or press Stop")
        self._stop.clear()
        self._set_running(True)
        self.progress.value, self.progress.max = 0, 1
        self.progress_label.value = "starting…"
        self.show(f"Sending {name!r}…", "info")
        if background:
            self._thread = threading.Thread(target=self._send_worker, args=(name,),
                                            name=f"newsletter-send-{name}", daemon=True)
            self._thread.start()
        else:
            self._send_worker(name)

    def _send_worker(self, name: str) -> None:
        # Its own connection: the kernel's thread keeps using self.store meanwhile.
        store = self.store if self.store.path == ":memory:" else open_store(self.store.path)
        try:
            report = campaigns.send_campaign(store, name, limit=self._limit(),
                                             progress=self._on_progress, stop_event=self._stop,
                                             skip_risky=bool(self.skip_risky.value))
            self.last_report = report
            attempted = report.sent + report.failed + report.deferred
            self.progress.max = max(attempted, 1)
            self.progress.value = attempted
            self.progress_label.value = (f"&nbsp;done: {report.sent} sent, {report.failed} failed, "
                                         f"{report.deferred} deferred" if attempted else "&nbsp;nothing was sent")
            tone = "ok" if not report.paused and not report.failed else "warning"
            self.show(report.summary(), tone)
        except NewsletterKitError as exc:
            self.show_library_error(exc)
        except Exception as exc:  # a bug: shown, then logged by the thread's excepthook
            self.show_error(f"unexpected error ({type(exc).__name__}): {exc}")
            raise
        finally:
            if store is not self.store:
                store.close()
            self._set_running(False)
            self.refresh()

    def _on_progress(self, done: int, total: int, report: campaigns.SendReport) -> None:
        self.progress.max = max(total, 1)
        self.progress.value = min(done, self.progress.max)
        self.progress_label.value = (f"&nbsp;{done} of {total}: {report.sent} sent, "
                                     f"{report.failed} failed, {report.deferred} deferred")
        self.quota.refresh()

    @catch_errors
    def stop(self, _button: Any = None) -> None:
        """Ask the running send to stop after the messages in flight."""
        if not self.sending:
            self.show("Nothing is being sent.", "info")
            return
        self._stop.set()
        self.stop_button.disabled = True
        self.show("Stopping after the messages in flight…", "warning")

    def wait(self, timeout: float | None = None) -> campaigns.SendReport | None:
        """Block until the background send ends; returns :attr:`last_report`."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError("the send is still running")
        return self.last_report

    def _on_changed(self, name: str) -> None:
        """A campaign changed in this kernel (a cell sent it): show what the store says now."""
        if self.sending:
            return  # the panel's own run refreshes when it ends
        listed = [c["name"] for c in campaigns.list_campaigns(self.store)]
        if name == self.campaign_name and name in listed:
            self.refresh()
        elif name in listed or name in self.campaign.options:  # new, archived or deleted
            self.refresh_choices()

    # -- test and lifecycle ---------------------------------------------------------------
    @catch_errors
    def send_test(self, _button: Any = None) -> campaigns.ProofReport:
        """Send the proof to the test address, with the fields of the contact in "Preview for"."""
        self.clear_message()
        name = self._require_campaign()
        report = campaigns.send_test(self.store, name, [self.test_to.value],
                                     as_contact=self.preview_contact.value or None)
        tone = "ok" if report.sent == len(report.results) else "warning"
        self.show("Test: " + "; ".join(report.lines()), tone)
        self.quota.refresh()
        return report

    @catch_errors
    def save_changes(self, _button: Any = None) -> campaigns.Campaign:
        """Save the subject and HTML typed under "Change" (only before the first send)."""
        self.clear_message()
        name = self._require_campaign()
        edited = campaigns.edit_campaign(self.store, name, subject=self.edit_subject.value,
                                         html=self.edit_html.value)
        self.show_ok(f"Campaign {name!r} saved.")
        self.refresh()
        return edited

    @catch_errors
    def duplicate(self, _button: Any = None) -> campaigns.Campaign:
        """Copy the campaign into a new draft named under "Copy as", and select the copy."""
        self.clear_message()
        copy = campaigns.duplicate_campaign(self.store, self._require_campaign(), self.duplicate_name.value.strip())
        self.duplicate_name.value = ""
        self.refresh_choices(select=copy.name)
        self.show_ok(f"Campaign {copy.name!r} created as a copy: change it, test it, send it.")
        return copy

    @catch_errors
    def archive(self, _button: Any = None) -> None:
        """Hide the campaign from the lists and the sidebar (its history stays)."""
        self.clear_message()
        name = self._require_campaign()
        campaigns.archive_campaign(self.store, name)
        self.refresh_choices()
        self.show_ok(f"Campaign {name!r} archived (`campaign archive {name} --undo` brings it back).")

    @catch_errors
    def delete(self, _button: Any = None) -> None:
        """Delete the campaign (the box must be ticked; a sent one keeps its deliveries)."""
        self.clear_message()
        name = self._require_campaign()
        if not self.delete_confirm.value:
            raise CampaignError("tick the box to confirm the deletion")
        result = campaigns.delete_campaign(self.store, name, yes=True)
        self.refresh_choices()
        kept = result["deliveries_kept"]
        self.show_ok(f"Campaign {name!r} deleted" + (f"; {kept} deliveries kept for the statistics." if kept else "."))

    def _set_running(self, running: bool) -> None:
        self.send_button.disabled = running
        self.dry_run_button.disabled = running
        self.campaign.disabled = running
        self.stop_button.disabled = not running

    def _require_campaign(self) -> str:
        name = self.campaign_name
        if name is None:
            raise CampaignError("pick a campaign first (or create one)")
        return name

    def _limit(self) -> int | None:
        return int(self.limit.value) or None


# -- helpers --------------------------------------------------------------------------------


def _is_member(store: Store, list_name: str, email: str) -> bool:
    return bool(email) and store.conn.execute(
        "SELECT 1 FROM contacts c JOIN list_members m ON m.contact_id = c.id AND m.list_id = "
        "(SELECT id FROM lists WHERE name = ?) WHERE c.email = ?", (list_name, email)).fetchone() is not None


def _exists(store: Store, name: str) -> bool:
    """A campaign the picker may show: there, and neither archived nor deleted."""
    return store.conn.execute("SELECT 1 FROM campaigns WHERE name = ? AND archived_at IS NULL AND "
                              "deleted_at IS NULL", (name,)).fetchone() is not None


def _table_html(frame: pd.DataFrame, max_rows: int = 200) -> str:
    """The audience rows as an HTML table (the first ``max_rows``; the DataFrame has them all)."""
    if frame.empty:
        return "<i>nobody</i>"
    columns = [c for c in frame.columns if c not in ("contact_id", "excluded")]
    table = frame[columns].head(max_rows).to_html(index=False, na_rep="", classes="nk-audience",
                                                  border=0, escape=True)  # contact fields are text
    more = (f"<div><i>… and {len(frame) - max_rows} more (all of them are in "
            "<code>panel.audience</code>)</i></div>" if len(frame) > max_rows else "")
    return table + more


def _campaign_info(camp: campaigns.Campaign, counts: dict[str, int]) -> str:
    state = camp.status if counts["pending"] else "finished: nothing left to send"
    return (f'<div style="margin-left:{LABEL_WIDTH}">Subject: <b>{html.escape(camp.subject)}</b> · '
            f"list <b>{html.escape(camp.list_name)}</b> · status <b>{html.escape(state)}</b></div>")


def _preview_html(message: dict[str, Any]) -> str:
    headers = message.get("headers") or {}
    shown = "".join(
        f"<tr><td style='color:#666;padding-right:8px'>{html.escape(str(k))}</td>"
        f"<td>{html.escape(str(v))}</td></tr>" for k, v in headers.items())
    body = html.escape(str(message.get("html") or ""), quote=True)
    return (f"<div class='nk-preview'><table style='font-size:0.9em'>{shown}"
            f"<tr><td style='color:#666'>Subject</td><td><b>{html.escape(str(message.get('subject', '')))}</b>"
            "</td></tr></table>"
            f'<iframe sandbox="" srcdoc="{body}" style="width:100%;max-width:760px;height:420px;'
            'border:1px solid #ccc;border-radius:4px;background:#fff"></iframe></div>')


__all__ = ["CampaignPanel", "QuotaMeter"]
