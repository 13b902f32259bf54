"""The settings panel: the dedicated SMTP server and the bounce mailbox, as on the CRM page.

Two tabs, "Dedicated SMTP" and "Bounce settings (IMAP)", labelled with the CRM page's words.
Save validates both sections and stores them together (or neither); Test connects to both
servers with what is typed; "Fetch folders" lists the bounce server's folders.

A password typed here goes to the system keyring or, when the machine has none (a headless
server), is held for this kernel only. It never reaches the store, and the Password field is
emptied as soon as the password has been taken, because widget state is saved in notebooks.

Example (in a notebook cell)::

    import newsletter_kit as nk
    panel = nk.SettingsPanel(nk.open_store())
    panel            # displays the panel
"""

from __future__ import annotations

import dataclasses
import html
import re
import zoneinfo
from typing import Any

import ipywidgets as widgets

from .. import settings as settings_mod
from ..errors import SecretError, ValidationError
from ..imap import check_imap, fetch_folder_names
from ..settings import BounceSettings, SmtpSettings
from ..store import Store
from ..transport import check_smtp
from .common import (
    Panel,
    button,
    catch_errors,
    field_layout,
    field_style,
    heading,
    hint,
    panel_style,
    password,
    text,
)

TLS_CHOICES = [("STARTTLS (usually port 587 / 143)", "starttls"),
               ("SSL/TLS (usually port 465 / 993)", "ssl"),
               ("None (no encryption)", "none")]
EXCLUSION_CHOICES = [("Campaign", "campaign"), ("Global", "global")]
EXCLUSION_HELP = (
    "<b>Campaign</b>: excludes from a campaign only the addresses that unsubscribed from that "
    "campaign.<br><b>Global</b>: excludes every address that unsubscribed from any campaign."
)
SEND_RATE_HELP = (
    "Emails per day: the most the server lets you send in a calendar day. Free providers "
    f"(Gmail, Outlook, Libero…) cap at about {settings_mod.FREE_PROVIDER_LIMIT}/day."
)
BOUNCE_ADDRESS_HELP = (
    "The envelope sender of your campaigns, where bounces arrive. Simply repeat the address "
    "entered in the Username field (left empty, it is the Username)."
)
PASSWORD_ENV_HELP = (
    "Instead of typing the password: the name of an environment variable that holds it "
    "(what scheduled jobs use)."
)
UNSUBSCRIBE_HELP = "Optional: an https URL containing {token}, for one-click unsubscribe."


class SettingsPanel(Panel):
    """Edit, save and test the SMTP and bounce-mailbox settings of a store.

    Every field is an attribute (``smtp_host``, ``smtp_password``, ``bounce_folder``...), as
    are ``save_button``, ``test_button``, ``folders_button``, ``message`` and ``test_results``,
    so the panel can be driven from code and tests::

        panel = SettingsPanel(store)
        panel.smtp_host.value = "smtp.example.org"
        panel.save_button.click()
    """

    def __init__(self, store: Store | None = None):
        super().__init__(store)
        # Passwords typed into the panel, moved out of the widgets as soon as they are used.
        self._typed: dict[str, str] = {}
        self._build_smtp()
        self._build_bounce()
        self.save_button = button("Save", self.save, style="primary", icon="save",
                                  tooltip="Validate and save both sections")
        self.test_button = button("Test", self.test, icon="plug",
                                  tooltip="Connect to both servers with the values above")
        self.test_results = widgets.HTML(value="")
        # Deliverability pre-flight (SPF, DKIM, DMARC...) of the saved settings.
        self.check_button = button("Check deliverability", self.check, icon="check-circle",
                                   tooltip="Check the saved settings against DNS (SPF, DKIM, DMARC...)")
        self.check_button.layout = widgets.Layout(width="auto", min_width="200px")  # the label in full
        self.check_nameserver = text("DNS server", placeholder="(the system resolver)", width="420px")
        self.check_results = widgets.HTML(value="")
        from .relays import RelayPanel

        self.relays = RelayPanel(self.store)
        self.tabs = widgets.Tab(children=[self.smtp_box, self.bounce_box, self.relays.widget])
        self.tabs.set_title(0, "Dedicated SMTP")
        self.tabs.set_title(1, "Bounce settings (IMAP)")
        self.tabs.set_title(2, "Relays")
        self.widget = widgets.VBox(
            [panel_style(), self.tabs, widgets.HBox([self.save_button, self.test_button]),
             self.message, self.test_results,
             widgets.HBox([self.check_button, self.check_nameserver]), self.check_results],
            layout=widgets.Layout(max_width="820px"),
        )
        self.widget.add_class("nk-settings-panel")
        self.widget.add_class("nk-panel")
        self.reload()

    # -- building -------------------------------------------------------------------------
    def _build_smtp(self) -> None:
        self.smtp_host = text("Server name", placeholder="smtp.example.org")
        self.smtp_port = text("Port", "587", width="300px")
        self.smtp_user = text("User name", placeholder="news@example.org")
        self.smtp_password = password("Password")
        self.smtp_password_env = text("Password env var", placeholder="SMTP_PASSWORD")
        self.smtp_password_note = widgets.HTML("")
        self.smtp_auth = widgets.Checkbox(value=False, description="Requires authentication",
                                          style=field_style(), layout=field_layout())
        self.smtp_tls = widgets.Dropdown(options=TLS_CHOICES, value="starttls", description="TLS mode",
                                         style=field_style(), layout=field_layout())
        self.smtp_allow_plain_auth = widgets.Checkbox(
            value=False, description="Allow authentication without TLS", style=field_style(),
            layout=field_layout())
        self.smtp_daily_limit = widgets.BoundedIntText(
            value=settings_mod.FREE_PROVIDER_LIMIT, min=0, max=10_000_000, description="Send rate",
            style=field_style(), layout=field_layout("300px"))
        self.smtp_exclusion = widgets.RadioButtons(
            options=EXCLUSION_CHOICES, value="campaign", description="Address exclusion policy",
            style=field_style(), layout=field_layout())
        self.smtp_from = text("From address", placeholder="Shop News <news@example.org>")
        self.smtp_timezone = widgets.Combobox(
            value=settings_mod.local_timezone(), options=sorted(zoneinfo.available_timezones()),
            description="Time zone", ensure_option=False, style=field_style(),
            layout=field_layout())
        self.smtp_ca_file = text("CA file", placeholder="(the system trust store)")
        self.smtp_unsubscribe_url = text("Unsubscribe URL",
                                         placeholder="https://example.org/unsubscribe/{token}")
        self.smtp_reply_to = text("Reply-To", placeholder="(none: replies go to the From)")
        self.smtp_list_id = text("List-Id", placeholder="Shop News <news.example.org> (default: from the list)")
        self.smtp_dkim_selector = text("DKIM selector", placeholder="news2026", width="420px")
        self.smtp_dkim_key_file = text("DKIM key file", placeholder="/path/to/dkim-private.pem")
        self.smtp_dkim_domain = text("DKIM domain", placeholder="(the From domain)", width="420px")
        self.smtp_domain_limit = text("Hourly limit per domain", placeholder="gmail.com=2000/h, yahoo.com=500/h")
        self.smtp_box = widgets.VBox([
            heading("Dedicated SMTP"),
            self.smtp_host, self.smtp_port, self.smtp_user, self.smtp_password,
            self.smtp_password_note, self.smtp_password_env, hint(PASSWORD_ENV_HELP),
            self.smtp_auth, self.smtp_tls, self.smtp_allow_plain_auth,
            self.smtp_daily_limit, hint(SEND_RATE_HELP),
            self.smtp_exclusion, hint(EXCLUSION_HELP),
            self.smtp_from, self.smtp_timezone, hint("The day of the send rate starts at midnight here."),
            self.smtp_ca_file, self.smtp_unsubscribe_url, hint(UNSUBSCRIBE_HELP),
            self.smtp_reply_to, self.smtp_list_id,
            self.smtp_domain_limit, hint("At most N messages an hour to the recipients of a domain, any relay."),
            heading("DKIM signing"), self.smtp_dkim_selector, self.smtp_dkim_key_file, self.smtp_dkim_domain,
            hint("The key file stays where it is (only its path is saved); the selector's TXT record "
                 "must publish its public key. <b>Check deliverability</b> below verifies it."),
        ])
        self.field_widgets.update({
            "smtp.host": self.smtp_host, "smtp.port": self.smtp_port, "smtp.user": self.smtp_user,
            "smtp.password": self.smtp_password, "smtp.tls": self.smtp_tls,
            "smtp.daily_limit": self.smtp_daily_limit, "smtp.exclusion": self.smtp_exclusion,
            "smtp.from_addr": self.smtp_from, "smtp.timezone": self.smtp_timezone,
            "smtp.ca_file": self.smtp_ca_file, "smtp.unsubscribe_url": self.smtp_unsubscribe_url,
            "smtp.reply_to": self.smtp_reply_to, "smtp.list_id": self.smtp_list_id,
            "smtp.dkim_selector": self.smtp_dkim_selector, "smtp.dkim_key_file": self.smtp_dkim_key_file,
            "smtp.dkim_domain": self.smtp_dkim_domain,
        })

    def _build_bounce(self) -> None:
        # Saved settings that have no field here (set with `newsletter-kit settings ...`).
        self.cli_only = widgets.HTML("")
        self.bounce_host = text("Server name", placeholder="imap.example.org")
        self.bounce_port = text("Port", "143", width="300px")
        self.bounce_user = text("Username", placeholder="bounces@example.org")
        self.bounce_password = password("Password")
        self.bounce_password_env = text("Password env var", placeholder="BOUNCE_PASSWORD")
        self.bounce_password_note = widgets.HTML("")
        self.bounce_tls = widgets.Dropdown(options=TLS_CHOICES, value="starttls", description="SSL/TLS",
                                           style=field_style(), layout=field_layout())
        self.bounce_allow_plain_auth = widgets.Checkbox(
            value=False, description="Allow login without TLS", style=field_style(),
            layout=field_layout())
        self.bounce_ca_file = text("CA file", placeholder="(the system trust store)")
        self.bounce_address = text("Bounce address", placeholder="(the Username)")
        self.bounce_folder = widgets.Dropdown(options=["INBOX"], value="INBOX",
                                              description="Folder to monitor", style=field_style(),
                                              layout=field_layout("400px"))
        self.folders_button = button("Fetch folders", self.fetch_folders, icon="folder-open",
                                     tooltip="Log in and list the server's folders")
        self.bounce_threshold = widgets.BoundedIntText(
            value=0, min=0, max=1000, description="Bounce threshold", style=field_style(),
            layout=field_layout("300px"))
        self.bounce_hard_threshold = widgets.BoundedIntText(
            value=0, min=0, max=1000, description="Hard bounces", style=field_style(),
            layout=field_layout("300px"))
        self.bounce_soft_threshold = widgets.BoundedIntText(
            value=0, min=0, max=1000, description="Soft bounces", style=field_style(),
            layout=field_layout("300px"))
        self.bounce_soft_window_days = widgets.BoundedIntText(
            value=0, min=0, max=36500, description="Soft window (days)", style=field_style(),
            layout=field_layout("300px"))
        self.bounce_suppress_on_complaint = widgets.Checkbox(
            value=True, description="A complaint suppresses at once", style=field_style(),
            layout=field_layout())
        self.bounce_count_policy = widgets.Checkbox(
            value=False, description="Count filter refusals too", style=field_style(),
            layout=field_layout())
        self.bounce_count_unmatched = widgets.Checkbox(
            value=False, description="Count unmatched reports too", style=field_style(), layout=field_layout())
        self.bounce_stale_after_days = widgets.BoundedIntText(
            value=0, min=0, max=3650, description="Forget bounces after (days)", style=field_style(),
            layout=field_layout("300px"))
        self.bounce_reset_on_success = widgets.Checkbox(
            value=False, description="A delivery after a bounce forgives it", style=field_style(),
            layout=field_layout())
        self.bounce_verp = widgets.Checkbox(
            value=False, description="VERP envelope sender (bounces+token@...)", style=field_style(),
            layout=field_layout())
        self.bounce_processed_folder = text("Move processed to", placeholder="(leave them where they are)")
        self.bounce_box = widgets.VBox([
            heading("Bounce settings (IMAP)"),
            self.bounce_host, self.bounce_port, self.bounce_user, self.bounce_password,
            self.bounce_password_note, self.bounce_password_env, hint(PASSWORD_ENV_HELP),
            self.bounce_tls, self.bounce_allow_plain_auth, self.bounce_ca_file,
            self.bounce_address, hint(BOUNCE_ADDRESS_HELP),
            widgets.HBox([self.bounce_folder, self.folders_button]),
            hint("Fetch folders logs in with the values above (and the password typed) and "
                 "lists the server's folders here."),
            self.bounce_hard_threshold, self.bounce_soft_threshold, self.bounce_soft_window_days,
            hint("Hard bounces (unknown address or domain) and soft ones (mailbox full, account "
                 "disabled) within the window after which an address is suppressed: 0 keeps the "
                 "default (1 hard; 3 soft within 30 days). A suppression can be reviewed and lifted."),
            self.bounce_suppress_on_complaint,
            self.bounce_threshold,
            hint("One threshold for hard and soft bounces together (the old way): used only when "
                 "both per-kind fields above are 0; 0 here switches it off."),
            self.bounce_count_policy,
            hint("Failures about us (IP or domain blocked, SPF/DKIM/DMARC, spam, content, rate) never "
                 "count against an address; ticked, refusals by the recipient's own filter count as soft."),
            self.bounce_count_unmatched,
            hint("Unmatched reports name no delivery of ours (forged, or for an address never sent to)."),
            self.bounce_stale_after_days, hint("0: bounces never expire."),
            self.bounce_reset_on_success, self.bounce_verp,
            hint("With VERP every message's envelope sender carries a signed token, so a bounce names "
                 "its delivery even when it quotes nothing (the mailbox must accept +detail addresses)."),
            self.bounce_processed_folder,
            self.cli_only,
        ])
        self.field_widgets.update({
            "bounce.host": self.bounce_host, "bounce.port": self.bounce_port,
            "bounce.user": self.bounce_user, "bounce.password": self.bounce_password,
            "bounce.tls": self.bounce_tls, "bounce.ca_file": self.bounce_ca_file,
            "bounce.bounce_address": self.bounce_address, "bounce.folder": self.bounce_folder,
            "bounce.threshold": self.bounce_threshold, "bounce.hard_threshold": self.bounce_hard_threshold,
            "bounce.soft_threshold": self.bounce_soft_threshold,
            "bounce.soft_window_days": self.bounce_soft_window_days,
            "bounce.count_unmatched": self.bounce_count_unmatched,
            "bounce.stale_after_days": self.bounce_stale_after_days,
            "bounce.processed_folder": self.bounce_processed_folder,
        })

    def show_library_error(self, exc: Exception) -> None:  # type: ignore[override]
        """Show the error, and bring forward the tab of the field it is about."""
        section = getattr(exc, "panel_section", None)
        if section:
            self.tabs.selected_index = 0 if section == "smtp" else 1
        super().show_library_error(exc)  # type: ignore[arg-type]

    # -- loading --------------------------------------------------------------------------
    def _save_domain_limits(self) -> None:
        """The field's ``domain=N/h`` list replaces the saved one (an empty field clears them)."""
        from ..ledger import domain_limits, set_domain_limits

        typed = [part.strip() for part in self.smtp_domain_limit.value.split(",") if part.strip()]
        given = {part.partition("=")[0].strip().lower() for part in typed}
        removed = [f"{d}=0" for d in domain_limits(self.store) if d not in given]
        set_domain_limits(self.store, removed + typed)

    def reload(self) -> None:
        """Show the saved settings in the fields (password fields stay empty)."""
        smtp = settings_mod.load_smtp_settings(self.store)
        from ..ledger import domain_limits

        self.smtp_domain_limit.value = ", ".join(f"{d}={n}/h" for d, n in domain_limits(self.store).items())
        if smtp is not None:
            self.smtp_host.value = smtp.host
            self.smtp_port.value = str(smtp.port)
            self.smtp_user.value = smtp.user or ""
            self.smtp_auth.value = bool(smtp.auth)
            self.smtp_tls.value = smtp.tls
            self.smtp_allow_plain_auth.value = bool(smtp.allow_plain_auth)
            self.smtp_daily_limit.value = int(smtp.daily_limit)
            self.smtp_exclusion.value = smtp.exclusion
            self.smtp_from.value = smtp.from_header
            self.smtp_timezone.value = smtp.timezone
            self.smtp_ca_file.value = smtp.ca_file or ""
            self.smtp_unsubscribe_url.value = smtp.unsubscribe_url or ""
            self.smtp_reply_to.value = smtp.reply_to or ""
            self.smtp_list_id.value = smtp.list_id or ""
            self.smtp_dkim_selector.value = smtp.dkim_selector or ""
            self.smtp_dkim_key_file.value = smtp.dkim_key_file or ""
            self.smtp_dkim_domain.value = smtp.dkim_domain or ""
            self.smtp_password_env.value = _env_name(smtp.password_ref)
        self.smtp_password_note.value = _password_note(smtp.password_ref if smtp else None)
        bounce = settings_mod.load_bounce_settings(self.store)
        if bounce is not None:
            self.bounce_host.value = bounce.host
            self.bounce_port.value = str(bounce.port)
            self.bounce_user.value = bounce.user
            self.bounce_tls.value = bounce.tls
            self.bounce_allow_plain_auth.value = bool(bounce.allow_plain_auth)
            self.bounce_ca_file.value = bounce.ca_file or ""
            # Shown empty when it is just the Username: the field then follows the Username.
            self.bounce_address.value = "" if bounce.bounce_address == bounce.user else (bounce.bounce_address or "")
            self._set_folders([bounce.folder], bounce.folder)
            self.bounce_threshold.value = int(bounce.threshold or 0)
            self.bounce_hard_threshold.value = int(bounce.hard_threshold or 0)
            self.bounce_soft_threshold.value = int(bounce.soft_threshold or 0)
            self.bounce_soft_window_days.value = int(bounce.soft_window_days or 0)
            self.bounce_suppress_on_complaint.value = bool(bounce.suppress_on_complaint)
            self.bounce_count_policy.value = bool(bounce.count_policy)
            self.bounce_count_unmatched.value = bool(bounce.count_unmatched)
            self.bounce_stale_after_days.value = int(bounce.stale_after_days or 0)
            self.bounce_reset_on_success.value = bool(bounce.reset_on_success)
            self.bounce_verp.value = bool(bounce.verp)
            self.bounce_processed_folder.value = bounce.processed_folder or ""
            self.bounce_password_env.value = _env_name(bounce.password_ref)
        self.bounce_password_note.value = _password_note(bounce.password_ref if bounce else None)
        self.cli_only.value = _cli_only_html(smtp, bounce, self)

    def _set_folders(self, names: list[str], keep: str | None) -> None:
        names = list(dict.fromkeys(names)) or ["INBOX"]
        if keep and keep not in names:
            keep = "INBOX" if "INBOX" in names else names[0]
        self.bounce_folder.options = names
        self.bounce_folder.value = keep or names[0]

    # -- reading the fields ---------------------------------------------------------------
    def _take_passwords(self) -> None:
        """Move typed passwords out of the widgets (widget state is saved in notebooks)."""
        for section, widget in (("smtp", self.smtp_password), ("bounce", self.bounce_password)):
            if widget.value:
                self._typed[section] = widget.value
                widget.value = ""
                widget.placeholder = "(typed: kept in this kernel until saved)"

    def _smtp_fields(self) -> dict[str, Any] | None:
        """The SMTP fields as settings values; None when the section is left empty."""
        if not self.smtp_host.value.strip() and settings_mod.load_smtp_settings(self.store) is None:
            return None
        _require(self.smtp_host.value, "Server name is required", "smtp", "host")
        _require(self.smtp_port.value, "Port is required", "smtp", "port")
        _require(self.smtp_from.value, "From address is required", "smtp", "from_addr")
        return {
            "host": self.smtp_host.value.strip(),
            "port": _port(self.smtp_port.value, "smtp"),
            "user": self.smtp_user.value.strip() or None,
            "auth": self.smtp_auth.value,
            "tls": self.smtp_tls.value,
            "allow_plain_auth": self.smtp_allow_plain_auth.value,
            "daily_limit": self.smtp_daily_limit.value,
            "exclusion": self.smtp_exclusion.value,
            "from_addr": self.smtp_from.value.strip(),
            "timezone": self.smtp_timezone.value.strip() or settings_mod.local_timezone(),
            "ca_file": self.smtp_ca_file.value.strip() or None,
            "unsubscribe_url": self.smtp_unsubscribe_url.value.strip() or None,
            "reply_to": self.smtp_reply_to.value.strip() or None,
            "list_id": self.smtp_list_id.value.strip() or None,
            "dkim_selector": self.smtp_dkim_selector.value.strip() or None,
            "dkim_key_file": self.smtp_dkim_key_file.value.strip() or None,
            "dkim_domain": self.smtp_dkim_domain.value.strip() or None,
        }

    def _bounce_fields(self) -> dict[str, Any] | None:
        """The bounce-mailbox fields as settings values; None when the section is left empty."""
        if not self.bounce_host.value.strip() and settings_mod.load_bounce_settings(self.store) is None:
            return None
        _require(self.bounce_host.value, "Server name is required", "bounce", "host")
        _require(self.bounce_port.value, "Port is required", "bounce", "port")
        _require(self.bounce_user.value, "Username is required", "bounce", "user")
        return {
            "host": self.bounce_host.value.strip(),
            "port": _port(self.bounce_port.value, "bounce"),
            "user": self.bounce_user.value.strip(),
            "tls": self.bounce_tls.value,
            "allow_plain_auth": self.bounce_allow_plain_auth.value,
            "ca_file": self.bounce_ca_file.value.strip() or None,
            "bounce_address": self.bounce_address.value.strip() or None,
            "folder": self.bounce_folder.value or "INBOX",
            # 0: not set (the per-kind defaults; the single threshold off)
            "threshold": self.bounce_threshold.value or None,
            "hard_threshold": self.bounce_hard_threshold.value or None,
            "soft_threshold": self.bounce_soft_threshold.value or None,
            "soft_window_days": self.bounce_soft_window_days.value or None,
            "suppress_on_complaint": self.bounce_suppress_on_complaint.value,
            "count_policy": self.bounce_count_policy.value,
            "count_unmatched": self.bounce_count_unmatched.value,
            "stale_after_days": int(self.bounce_stale_after_days.value) or None,
            "reset_on_success": self.bounce_reset_on_success.value,
            "verp": self.bounce_verp.value,
            "processed_folder": self.bounce_processed_folder.value.strip() or None,
        }

    def _env_ref(self, section: str) -> str | None:
        widget = self.smtp_password_env if section == "smtp" else self.bounce_password_env
        name = widget.value.strip()
        return f"env:{name}" if name else None

    def _stored_ref(self, section: str) -> str | None:
        loaded = (settings_mod.load_smtp_settings(self.store) if section == "smtp"
                  else settings_mod.load_bounce_settings(self.store))
        return loaded.password_ref if loaded else None

    def _draft(self, section: str) -> SmtpSettings | BounceSettings | None:
        """Settings built from the fields, validated but not saved (for Test / Fetch folders)."""
        fields = self._smtp_fields() if section == "smtp" else self._bounce_fields()
        if fields is None:
            return None
        # A typed password is passed to the connection directly; the reference only has to
        # have the right form for validation.
        ref = ("session:panel-draft" if section in self._typed
               else self._env_ref(section) or self._stored_ref(section))
        cls = SmtpSettings if section == "smtp" else BounceSettings
        draft = cls(password_ref=ref, **fields)
        try:
            draft.validate()
        except ValidationError as exc:
            exc.panel_section = section  # type: ignore[attr-defined]
            if exc.field == "password":
                raise _missing_password(section) from None
            raise
        return draft

    def _demo_folder(self, bounce: Any) -> Any:
        """The demo's bounce folder when these bounce settings are the demo's, else None."""
        from ..demo_world import DEMO_BOUNCE_ADDRESS, demo_bounce_source

        if bounce is None or bounce.user != DEMO_BOUNCE_ADDRESS:
            return None
        return demo_bounce_source(self.store)

    # -- actions --------------------------------------------------------------------------
    @catch_errors
    def save(self, _button: Any = None) -> None:
        """Validate both sections and save them together; passwords go to keyring or kernel."""
        self.clear_message()
        self._take_passwords()
        smtp_fields, bounce_fields = self._smtp_fields(), self._bounce_fields()
        if smtp_fields is None and bounce_fields is None:
            raise _invalid("Fill in the SMTP server (or the bounce mailbox) first", "smtp", "host")
        notes: list[str] = []
        warnings: list[str] = []
        with self.store.transaction():  # both sections, or neither
            if smtp_fields is not None:
                ref = self._password_ref("smtp", smtp_fields, notes)
                _, found = self._update("smtp", smtp_fields, ref)
                warnings += found
                self._save_domain_limits()
            if bounce_fields is not None:
                ref = self._password_ref("bounce", bounce_fields, notes)
                _, found = self._update("bounce", bounce_fields, ref)
                warnings += found
        self._typed.clear()
        for widget in (self.smtp_password, self.bounce_password):
            widget.value = ""
            widget.placeholder = ""
        self.reload()
        saved = [name for name, fields in (("SMTP", smtp_fields), ("bounce mailbox", bounce_fields))
                 if fields is not None]
        lines = [("ok", f"Saved: {' and '.join(saved)} settings.")]
        lines += [("warning", w) for w in warnings]
        lines += [("info", n) for n in notes]
        if bounce_fields is None:
            lines.append(("info", "The bounce mailbox is not configured yet (second tab)."))
        self.show_lines(lines)

    def _update(self, section: str, fields: dict[str, Any], ref: str | None) -> tuple[Any, list[str]]:
        # What the panel shows is what is saved: an empty optional field clears the setting.
        clearable = {"user", "ca_file", "unsubscribe_url", "bounce_address", "reply_to", "list_id",
                     "dkim_selector", "dkim_key_file", "dkim_domain", "processed_folder", "stale_after_days",
                     "threshold", "hard_threshold", "soft_threshold", "soft_window_days"}
        changes = {k: ("" if v is None and k in clearable else v) for k, v in fields.items()}
        if ref is not None:
            changes["password_ref"] = ref
        update = (settings_mod.update_smtp_settings if section == "smtp"
                  else settings_mod.update_bounce_settings)
        try:
            return update(self.store, **changes)
        except ValidationError as exc:
            exc.panel_section = section  # type: ignore[attr-defined]
            if exc.field == "password":
                raise _missing_password(section) from None
            raise

    def _password_ref(self, section: str, fields: dict[str, Any], notes: list[str]) -> str | None:
        """The reference to save: keyring (or this kernel) for a typed password, else env."""
        typed = self._typed.get(section)
        if typed is None:
            return self._env_ref(section)
        name = f"{section}/{fields.get('user') or ''}@{fields['host']}"
        label = "SMTP" if section == "smtp" else "bounce mailbox"
        try:
            ref = settings_mod.store_password_in_keyring(name, typed)
            notes.append(f"The {label} password is in the system keyring.")
        except SecretError:
            ref = settings_mod.hold_password_for_session(name, typed)
            notes.append(
                f"This machine has no system keyring, so the {label} password is held for this "
                "kernel only: after a restart type it again, or name an environment variable "
                "in 'Password env var'.")
        return ref

    @catch_errors
    def test(self, _button: Any = None) -> list[tuple[bool, str]]:
        """Connect to both servers with the values in the fields; results in ``test_results``."""
        self.clear_message()
        self.test_results.value = ""
        self._take_passwords()
        results: list[tuple[bool, str]] = []
        smtp = self._draft("smtp")
        if smtp is None:
            results.append((False, "SMTP: not configured"))
        else:
            results += check_smtp(smtp, password=self._typed.get("smtp"))  # type: ignore[arg-type]
        bounce = self._draft("bounce")
        folder = self._demo_folder(bounce)
        if bounce is None:
            results.append((False, "Bounce mailbox: not configured"))
        elif folder is not None:
            results.append((True, f"Bounce mailbox: the demo's, a folder on this machine ({folder}); "
                                  "there is no IMAP server to connect to"))
        else:
            results += check_imap(bounce, password=self._typed.get("bounce"))  # type: ignore[arg-type]
        self.test_results.value = _results_html(results)
        failed = sum(1 for ok, _ in results if not ok)
        if failed:
            self.show_error(f"{failed} of {len(results)} checks failed (details below).")
        else:
            self.show_ok("Both servers work with these settings.")
        return results

    @catch_errors
    def check(self, _button: Any = None) -> list[Any]:
        """Run :func:`newsletter_kit.preflight` on the saved settings; findings in ``check_results``."""
        from ..deliverability import preflight

        self.clear_message()
        self.check_results.value = ""
        if self._demo_folder(settings_mod.load_bounce_settings(self.store)) is not None:
            self.show("Demo mode: the demo sends as news@example.org to a server on this machine, so "
                      "there is no domain of yours to check. Save your own SMTP server, then check it.", "info")
            return []
        findings = preflight(self.store, nameserver=self.check_nameserver.value.strip() or None)
        self.check_results.value = _findings_html(findings)
        failed = [f.check for f in findings if f.status == "fail"]
        if failed:
            self.show_error(f"Mail from these settings may not arrive: {', '.join(failed)} failed "
                            "(what to do is below).")
        else:
            self.show_ok("Nothing fails: read the warnings below, if any.")
        return findings

    @catch_errors
    def fetch_folders(self, _button: Any = None) -> list[str]:
        """Log in to the bounce mailbox and fill the "Folder to monitor" dropdown."""
        self.clear_message()
        self._take_passwords()
        self.tabs.selected_index = 1
        bounce = self._draft("bounce")
        if bounce is None:
            raise _invalid("Fill in the bounce mailbox's Server name first", "bounce", "host")
        folder = self._demo_folder(bounce)
        if folder is not None:
            self._set_folders(["INBOX"], "INBOX")
            self.show(f"Demo mode: the bounces are read from the folder {folder}, not an IMAP mailbox; "
                      "there are no folders to list.", "info")
            return ["INBOX"]
        names = fetch_folder_names(bounce, password=self._typed.get("bounce"))  # type: ignore[arg-type]
        self._set_folders(names, self.bounce_folder.value)
        self.show_ok(f"The server lists {len(names)} folder(s): pick the one to monitor, then Save.")
        return names


# -- helpers --------------------------------------------------------------------------------


def _invalid(message: str, section: str, field: str) -> ValidationError:
    exc = ValidationError(message, field)
    exc.panel_section = section  # type: ignore[attr-defined]
    return exc


def _require(value: str, message: str, section: str, field: str) -> None:
    if not str(value).strip():
        raise _invalid(message, section, field)


def _port(value: str, section: str) -> int:
    try:
        return settings_mod.validate_port(value.strip())
    except ValidationError as exc:
        raise _invalid(str(exc), section, "port") from None


def _missing_password(section: str) -> ValidationError:
    label = "SMTP server" if section == "smtp" else "bounce mailbox"
    return _invalid(
        f"Type the {label}'s password (or name an environment variable in 'Password env var')",
        section, "password")


def _env_name(ref: str | None) -> str:
    return ref[4:] if ref and ref.startswith("env:") else ""


def _password_note(ref: str | None) -> str:
    """Where the saved password is, in words (never the password)."""
    if not ref:
        return ""
    scheme = ref.partition(":")[0]
    if scheme == "env":
        text_ = f"Password read from the environment variable {html.escape(ref[4:])}."
    elif scheme == "keyring":
        text_ = "Password saved in the system keyring. Type a new one to replace it."
    else:
        try:
            settings_mod.resolve_password(ref)
            text_ = ("Password held for this kernel only (no system keyring here). "
                     "Type a new one to replace it.")
        except SecretError:
            text_ = ("<b>The password was held for a kernel that has stopped: type it again "
                     "and Save.</b>")
    return (f'<div style="margin-left:190px;font-size:0.9em;color:var(--jp-ui-font-color2,#666)">'
            f"{text_}</div>")


def _results_html(results: list[tuple[bool, str]]) -> str:
    rows = "".join(
        f'<li style="color:{"#0a6b2d" if ok else "#a50e0e"}">{"✔" if ok else "✖"} '
        f"{html.escape(line)}</li>"
        for ok, line in results
    )
    return f'<ul class="nk-test-results" style="list-style:none;padding-left:4px">{rows}</ul>'


#: Command-line flags named in the pre-flight's advice, and the panel's field for each.
FLAG_FIELDS = {
    "--dkim-selector": "the 'DKIM selector' field", "--dkim-key-file": "the 'DKIM key file' field",
    "--dkim-domain": "the 'DKIM domain' field", "--unsubscribe-url": "the 'Unsubscribe URL' field",
    "--from": "the 'From address' field", "--reply-to": "the 'Reply-To' field",
    "--list-id": "the 'List-Id' field", "--bounce-address": "the 'Bounce address' field",
    "--daily-limit": "the 'Send rate' field", "--nameserver": "the 'DNS server' field",
    "--verp": "the 'VERP' box", "--ca-file": "the 'CA file' field",
}


def panel_words(detail: str) -> str:
    """The pre-flight's advice in the panel's words: its fields instead of command-line flags.

    Example::

        >>> panel_words("set --dkim-selector S --dkim-key-file PEM")
        "set the 'DKIM selector' field S the 'DKIM key file' field PEM"
    """
    for flag in sorted(FLAG_FIELDS, key=len, reverse=True):
        detail = re.sub(rf"`?{re.escape(flag)}(?![a-z-])`?", FLAG_FIELDS[flag], detail)
    return re.sub(r"`?newsletter-kit settings (smtp|bounce)`?\s*", "", detail)


def _cli_only_html(smtp: Any, bounce: Any, panel: SettingsPanel) -> str:
    """The saved settings that have no field in this panel: set from the command line."""
    shown = {key.split(".", 1)[1] for key in panel.field_widgets} | {
        "password_ref", "auth", "allow_plain_auth", "from_name", "count_policy", "reset_on_success", "verp"}
    rows = []
    for section, saved in (("smtp", smtp), ("bounce", bounce)):
        if saved is None:
            continue
        defaults = type(saved).__dataclass_fields__
        for name, spec in defaults.items():
            value = getattr(saved, name)
            default = spec.default if spec.default is not dataclasses.MISSING else None
            if name not in shown and value not in (None, "", default):
                rows.append(f"{section}: {name.replace('_', '-')} = {value}")
    if not rows:
        return ""
    return hint("Also saved, set from the command line (no field here): " + html.escape("; ".join(rows))).value


def _findings_html(findings: list[Any]) -> str:
    marks = {"pass": ("✔", "#0a6b2d"), "warn": ("!", "#8a5a00"), "fail": ("✖", "#a50e0e")}
    rows = "".join(
        f'<li style="color:{marks[f.status][1]}">{marks[f.status][0]} <b>{html.escape(f.check)}</b>: '
        f"{html.escape(panel_words(f.detail))}</li>"
        for f in findings
    )
    return f'<ul class="nk-check-results" style="list-style:none;padding-left:4px">{rows}</ul>'


__all__ = ["SettingsPanel"]
