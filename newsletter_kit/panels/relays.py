"""The relays tab of the settings panel: the relay table, and a form to add or change one.

The dedicated SMTP server is the relay ``default`` (its connection is edited on the "Dedicated
SMTP" tab; here only its weight and limits). Every value shown comes from the store and is
escaped: host names and user names are text typed by someone.

Example (in a notebook cell)::

    import newsletter_kit as nk
    nk.panels.relays.RelayPanel(nk.open_store())
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from .. import relaying, relays
from ..store import Store
from .common import Panel, button, catch_errors, field_layout, field_style, heading, hint, text

_TLS = [("STARTTLS", "starttls"), ("SSL/TLS", "ssl"), ("None", "none")]


class RelayPanel(Panel):
    """The relays of a store: a table with today's use, and add / save / enable / disable / remove."""

    def __init__(self, store: Store | None = None):
        super().__init__(store)
        self.table = widgets.HTML(value="")
        self.name = text("Relay name", placeholder="ses-eu (default: the dedicated server)")
        self.host = text("Server name")
        self.port = widgets.IntText(value=587, description="Port", style=field_style(), layout=field_layout("220px"))
        self.user = text("User name")
        self.password_env = text("Password variable", placeholder="environment variable holding the password")
        self.tls = widgets.Dropdown(options=_TLS, value="starttls", description="TLS", style=field_style(),
                                    layout=field_layout("320px"))
        self.daily_limit = widgets.IntText(value=500, description="Send rate (per day)", style=field_style(),
                                           layout=field_layout("320px"))
        self.weight = widgets.IntText(value=1, description="Weight", style=field_style(), layout=field_layout("220px"))
        self.hourly_limit = text("Hourly limit", placeholder="empty: none", width="320px")
        self.max_per_second = text("Max per second", placeholder="e.g. 14; empty: none", width="320px")
        self.warmup = text("Warm-up", placeholder="START:DAYS, e.g. 50:30", width="320px")
        self.add_button = button("Add relay", self.add, style="primary", icon="plus")
        self.save_button = button("Change limits", self.save, icon="sliders",
                                  tooltip="Change the weight and limits of the relay named above")
        self.enable_button = button("Enable", lambda _b: self.set_enabled(True), icon="play")
        self.disable_button = button("Disable", lambda _b: self.set_enabled(False), icon="pause")
        self.remove_button = button("Remove", self.remove, icon="trash")
        self.widget = widgets.VBox([
            heading("Relays"),
            hint("Several SMTP servers share a campaign by weight, each within its own limits; one "
                 "that fails or throttles is set aside and the others take its recipients."),
            self.table, self.name, self.host, self.port, self.user, self.password_env, self.tls,
            self.daily_limit, self.weight, self.hourly_limit, self.max_per_second, self.warmup,
            widgets.HBox([self.add_button, self.save_button, self.enable_button, self.disable_button,
                          self.remove_button]),
            self.message,
        ])
        self.refresh()

    @catch_errors
    def refresh(self) -> None:
        """Reload the relay table from the store."""
        rows = relaying.relay_quotas(self.store)
        found = {r.name: r for r in relays.list_relays(self.store)}
        if not rows:
            self.table.value = "<i>Save the dedicated SMTP server first: it is the first relay.</i>"
            return
        cells = []
        for row in rows:
            relay = found[row["relay"]]
            s = relay.settings
            limits = [f"{row['used']} / {row['limit']} today"]
            if s.hourly_limit:
                limits.append(f"{s.hourly_limit}/h")
            if s.max_per_second:
                limits.append(f"{s.max_per_second:g}/s")
            if s.warmup_start is not None:
                limits.append(f"warm-up {s.warmup_start}:{s.warmup_days}")
            values = [relay.name, f"{relay.smtp.host}:{relay.smtp.port}", relay.smtp.tls, str(s.weight),
                      ", ".join(limits), "enabled" if relay.enabled else "disabled"]
            cells.append("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in values) + "</tr>")
        head = "".join(f"<th>{h}</th>" for h in ("Relay", "Server", "TLS", "Weight", "Limits", "State"))
        self.table.value = f"<table class='nk-table'><tr>{head}</tr>{''.join(cells)}</table>"

    def _changes(self) -> dict[str, Any]:
        return {"weight": self.weight.value, "hourly_limit": self.hourly_limit.value.strip() or "",
                "max_per_second": self.max_per_second.value.strip() or "",
                "warmup": self.warmup.value.strip() or None}

    def _name(self) -> str:
        return self.name.value.strip() or relays.DEFAULT

    @catch_errors
    def add(self, _button: Any = None) -> relays.RelaySettings:
        """Add the relay typed in the form."""
        self.clear_message()
        env = self.password_env.value.strip()
        saved = relays.update_relay(
            self.store, self._name(), create=True, host=self.host.value.strip(), port=self.port.value,
            user=self.user.value.strip() or None, password_ref=f"env:{env}" if env else None,
            tls=self.tls.value, daily_limit=self.daily_limit.value, **self._changes())
        self.show_ok(f"Relay {saved.name} added.")
        self.refresh()
        return saved

    @catch_errors
    def save(self, _button: Any = None) -> relays.RelaySettings:
        """Save the weight and limits of the relay named in the form."""
        self.clear_message()
        saved = relays.update_relay(self.store, self._name(), **self._changes())
        self.show_ok(f"Relay {saved.name} saved.")
        self.refresh()
        return saved

    @catch_errors
    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable the relay named in the form."""
        self.clear_message()
        relays.set_relay_enabled(self.store, self._name(), enabled)
        self.show_ok(f"Relay {self._name()} {'enabled' if enabled else 'disabled'}.")
        self.refresh()

    @catch_errors
    def remove(self, _button: Any = None) -> None:
        """Remove the relay named in the form."""
        self.clear_message()
        relays.remove_relay(self.store, self._name())
        self.show_ok(f"Relay {self._name()} removed.")
        self.refresh()
