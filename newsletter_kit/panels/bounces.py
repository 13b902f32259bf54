"""The bounce review panel: fetch bounces, read the review tables, try thresholds, suppress.

- **Fetch bounces** reads the bounce mailbox (or a local folder of ``.eml``/mbox files given as
  ``source_path``) through :func:`newsletter_kit.ingest.fetch_bounces`, which also applies the
  saved threshold, then refreshes everything below.
- **Tabs** show the review tables (:mod:`newsletter_kit.review`): by address, by domain, by
  campaign, by status, suppressions, and the unmatched reports (they match no delivery we made,
  so they do not count unless the bounce settings say so). The DataFrames are in ``panel.tables``.
- **Thresholds** per kind (hard, soft within a window, a complaint at once: the default) or a
  single threshold for hard and soft together, and the **counting options** (count filter refusals, stale after days,
  reset on success; they start at the bounce settings' values): how many addresses that
  threshold would suppress under those options and which of them are not suppressed yet (the
  what-if, recomputed live on every change; the whole table is ``panel.what_if``).
- **Suppress** applies the slider's threshold to exactly the addresses listed (bounces that
  arrive in between wait for the next review), counted with the options shown. It is
  **one-off** unless "Save as the bounce threshold" is ticked: then the threshold and the
  counting options are saved in the bounce settings first, and every later fetch applies them.
  Suppressed addresses are never written to the unsubscribes.

Example (in a notebook cell)::

    from newsletter_kit.panels import BounceReviewPanel
    panel = BounceReviewPanel(store)                       # or source_path="data/bounces"
    panel                                                  # displays it
    panel.threshold_slider.value = 2; panel.reset_on_success.value = True
    panel.what_if                                          # every threshold, with that option
    panel.apply_button.click()
    panel.last_applied                                     # ['anna@example.org', ...]
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd

from .. import review
from ..settings import load_bounce_settings, update_bounce_settings
from ..suppressions import DEFAULT_THRESHOLD, ThresholdPolicy
from ..store import Store
from .common import Panel, button, catch_errors, heading

#: Tab title → the review function that fills it (``panel.tables`` uses the keys).
TABLES = {
    "by address": review.bounces_by_address,
    "by domain": review.bounces_by_domain,
    "by campaign": review.campaign_summary,
    "by status": review.bounces_by_status,
    "by reason": review.bounces_by_reason,
    "about the sender": review.sender_problems,  # failures about us, with the remedy: never counted
    "by source": review.bounces_by_source,  # mailbox, smtp, or an ESP's events (ses, sendgrid...)
    "suppressions": review.suppression_table,
    "unmatched": review.unmatched_bounces,  # reports of no delivery of ours: not counted
}
#: The what-if's two ways to set thresholds (``panel.policy_mode.value``).
PER_KIND, SINGLE = "per_kind", "single"
#: Rows shown per tab (the DataFrame in ``panel.tables`` has them all).
SHOWN_ROWS = 200
#: Addresses listed under the slider before "... and N more".
SHOWN_ADDRESSES = 50


class BounceReviewPanel(Panel):
    """Review bounces and suppress addresses by threshold, with a live what-if.

    Attributes for code and tests: ``fetch_button``, ``policy_mode`` (``"per_kind"``: the
    ``hard_slider``, ``soft_slider``, ``soft_window_days`` and ``suppress_on_complaint`` decide,
    ``policy_counts`` is :func:`newsletter_kit.review.policy_counts`; ``"single"``: the
    ``threshold_slider``), ``count_policy``,
    ``reset_on_success`` (checkboxes), ``stale_after_days`` (0: never), ``save_threshold``
    (checkbox), ``apply_button``, ``message``, ``tables`` (dict of DataFrames), ``what_if``
    (threshold, would_suppress, new), ``would_suppress`` (addresses the slider's threshold would
    newly suppress), ``last_applied`` (addresses the last Suppress click suppressed),
    ``last_fetch`` (the last :class:`~newsletter_kit.ingest.FetchReport`).

    Example::

        panel = BounceReviewPanel(store)
        panel.threshold_slider.value = 2
        panel.would_suppress          # ['anna@example.org']
        panel.apply_button.click()
    """

    def __init__(self, store: Store | None = None, *, source_path: str | Path | None = None,
                 max_threshold: int = 10):
        super().__init__(store)
        self.source_path = source_path
        self.tables: dict[str, pd.DataFrame] = {}
        self.what_if = pd.DataFrame(columns=["threshold", "would_suppress", "new"])
        self.would_suppress: list[str] = []
        self.last_applied: list[str] = []
        self.last_fetch: Any = None
        self.last_sync: Any = None
        self._counts: pd.DataFrame | None = None
        self.policy_counts: pd.DataFrame | None = None

        where = f"the folder {source_path}" if source_path else "the bounce mailbox"
        self.fetch_button = button("Fetch bounces", self.fetch, "primary", f"Read new messages from {where}",
                                   "download")
        self.refresh_button = button("Refresh", self.refresh, tooltip="Read the tables again from the store",
                                     icon="refresh")
        self.tabs = widgets.Tab()
        self._tab_html = {name: widgets.HTML() for name in TABLES}
        self.tabs.children = list(self._tab_html.values())
        for i, name in enumerate(TABLES):
            self.tabs.set_title(i, name)

        saved = load_bounce_settings(self.store)
        start = (saved.threshold if saved else None) or DEFAULT_THRESHOLD
        self.threshold_slider = widgets.IntSlider(
            value=min(max(start, 1), max_threshold), min=1, max=max_threshold, description="Threshold",
            continuous_update=False, style={"description_width": "90px"})
        policy = saved.policy if saved else ThresholdPolicy()
        self.policy_mode = widgets.ToggleButtons(
            options=[("Per kind", PER_KIND), ("Single threshold", SINGLE)],
            value=PER_KIND if policy.per_kind else SINGLE, description="Thresholds",
            tooltip="Hard, soft and complaints each with their own threshold, or one count for hard and soft")
        slider = {"continuous_update": False, "style": {"description_width": "90px"}, "min": 1, "max": max_threshold}
        self.hard_slider = widgets.IntSlider(value=min(policy.hard, max_threshold), description="Hard", **slider)
        self.soft_slider = widgets.IntSlider(value=min(policy.soft, max_threshold), description="Soft", **slider)
        self.soft_window_days = widgets.BoundedIntText(
            value=policy.window, min=1, max=max(36500, policy.window), description="Soft window (days)",
            tooltip="Soft bounces count only within this many days", style={"description_width": "120px"},
            layout=widgets.Layout(width="200px"))
        self.suppress_on_complaint = widgets.Checkbox(
            value=policy.suppress_on_complaint, description="A complaint suppresses at once", indent=False)
        self.count_policy = widgets.Checkbox(
            value=policy.count_policy, description="Count filter refusals", indent=False,
            tooltip="Refusals by the recipient's own filter count as soft bounces; failures about us never count")
        self.stale_after_days = widgets.BoundedIntText(
            value=policy.stale_after_days or 0, min=0, max=max(36500, policy.stale_after_days or 0),
            description="Stale after (days)",
            tooltip="Bounces older than this no longer count (0: they always count)",
            style={"description_width": "120px"}, layout=widgets.Layout(width="200px"))
        self.reset_on_success = widgets.Checkbox(
            value=policy.reset_on_success, description="Reset on success", indent=False,
            tooltip="A bounce followed by a delivery that did not bounce no longer counts")
        self.count_unmatched = widgets.Checkbox(
            value=policy.count_unmatched, description="Count unmatched reports", indent=False,
            tooltip="Reports that match no delivery of ours count too")
        self.save_options_button = button("Save these options", self.save_options, icon="save",
                                          tooltip="Make the threshold and the counting options shown the bounce settings")
        for option in (self.count_policy, self.stale_after_days, self.reset_on_success, self.count_unmatched,
                       self.policy_mode, self.hard_slider, self.soft_slider, self.soft_window_days,
                       self.suppress_on_complaint):
            option.observe(self._on_options, names="value")
        self.what_if_label = widgets.HTML()
        self.what_if_addresses = widgets.HTML()
        self.what_if_table = widgets.HTML()
        self.save_threshold = widgets.Checkbox(value=False, description="Save as the bounce threshold",
                                               indent=False)
        self.apply_button = button("Suppress", self.apply, "danger",
                                   "Suppress the addresses listed above (never an unsubscribe)", "ban")
        self.threshold_slider.observe(self._on_threshold, names="value")

        self.widget = widgets.VBox([
            heading("Bounce review"),
            widgets.HBox([self.fetch_button, self.refresh_button]),
            self.message,
            self.tabs,
            heading("Threshold what-if"),
            widgets.HTML(_POLICY_NOTE),
            widgets.HBox([self.count_policy, self.stale_after_days, self.reset_on_success, self.count_unmatched]),
            self.policy_mode,
            widgets.HBox([self.hard_slider, self.soft_slider, self.soft_window_days, self.suppress_on_complaint]),
            widgets.HBox([self.threshold_slider, self.save_options_button]),
            self.what_if_label,
            self.what_if_addresses,
            widgets.HBox([self.apply_button, self.save_threshold]),
            self.what_if_table,
        ])
        self.refresh()

    # -- actions

    @catch_errors
    def fetch(self, _button: Any = None) -> None:
        """Fetch new bounces (mailbox, or ``source_path``), then refresh the tables."""
        from ..esp import load_esp_settings, sync_events
        from ..ingest import fetch_bounces  # late: the panel also works on a store alone

        self.show("Fetching…")
        esp = load_esp_settings(self.store) if self.source_path is None else None
        mailbox = self.source_path is not None or esp is None or load_bounce_settings(self.store) is not None
        report = fetch_bounces(self.store, source_path=self.source_path) if mailbox else None
        # An ESP set (settings esp) is the second bounce source: its new events too.
        events = sync_events(self.store) if esp is not None else None
        self.last_fetch = report
        self.last_sync = events
        self.refresh()
        parts = ([_fetch_summary(report.to_dict())] if report is not None else []) + (
            [f"{esp.provider if esp else 'ESP'}: {events.summary()}"] if events is not None else [])
        self.show_ok("; ".join(parts))

    @catch_errors
    def refresh(self, _button: Any = None) -> None:
        """Read every table and the what-if again from the store."""
        self.tables = {name: fn(self.store) for name, fn in TABLES.items()}
        for name, df in self.tables.items():
            self._tab_html[name].value = _table_html(df, self.store)
        self._recount()

    def options(self) -> dict[str, Any]:
        """The counting options as shown: ``count_policy``, ``stale_after_days`` (0: off),
        ``reset_on_success`` (keyword arguments of :func:`newsletter_kit.review.threshold_counts`)."""
        return {"count_policy": bool(self.count_policy.value),
                "stale_after_days": int(self.stale_after_days.value or 0),
                "reset_on_success": bool(self.reset_on_success.value),
                "count_unmatched": bool(self.count_unmatched.value)}

    @catch_errors
    def save_options(self, _button: Any = None) -> Any:
        """Save the slider's threshold and the counting options shown as the bounce settings
        (validated as ``settings bounce`` does); nobody is suppressed by this."""
        self.clear_message()
        options = self.options()
        policy = self.policy()
        thresholds: dict[str, Any] = (
            {"hard_threshold": policy.hard, "soft_threshold": policy.soft, "soft_window_days": policy.window}
            if policy.per_kind else
            {"threshold": self.threshold_slider.value, "hard_threshold": "", "soft_threshold": ""})
        settings, _ = update_bounce_settings(
            self.store, count_policy=options["count_policy"],
            stale_after_days=options["stale_after_days"] or "", reset_on_success=options["reset_on_success"],
            count_unmatched=options["count_unmatched"], suppress_on_complaint=policy.suppress_on_complaint,
            **thresholds)
        self.show_ok(f"Saved: {settings.policy.describe()}, and these counting options, are the bounce settings.")
        return settings

    def policy(self) -> ThresholdPolicy:
        """The policy the what-if shows: the saved one with the options, mode and thresholds shown."""
        options = self.options()
        base = ThresholdPolicy.from_store(self.store, **options).replace(
            suppress_on_complaint=bool(self.suppress_on_complaint.value))
        if self.policy_mode.value == SINGLE:
            return base.single(int(self.threshold_slider.value))
        return base.replace(hard_threshold=int(self.hard_slider.value), soft_threshold=int(self.soft_slider.value),
                            soft_window_days=int(self.soft_window_days.value or 1))

    def _recount(self) -> None:
        self._counts = review.threshold_counts(self.store, **self.options())
        self.what_if = review.threshold_what_if(self.store, self.threshold_slider.max, counts=self._counts)
        self.what_if_table.value = _table_html(self.what_if, self.store, caption="Every threshold at a glance")
        per_kind = self.policy_mode.value == PER_KIND
        self.policy_counts = review.policy_counts(self.store, self.policy()) if per_kind else None
        self.threshold_slider.disabled = per_kind
        for widget in (self.hard_slider, self.soft_slider, self.soft_window_days):
            widget.disabled = not per_kind
        self._show_what_if()

    @catch_errors
    def apply(self, _button: Any = None) -> None:
        """Suppress the addresses the slider's threshold would newly suppress.

        With "Save as the bounce threshold" ticked the threshold is saved to the bounce
        settings first (so later fetches apply it too); otherwise it is used this once.
        """
        from ..suppressions import apply_threshold

        threshold = self.threshold_slider.value
        options = self.options()
        policy = self.policy()
        words = policy.describe() if policy.per_kind else f"threshold {threshold}"
        if not self.would_suppress:
            self.last_applied = []
            self.show(f"Nobody to suppress at {words}.")
            return
        if self.save_threshold.value:
            thresholds: dict[str, Any] = (
                {"hard_threshold": policy.hard, "soft_threshold": policy.soft, "soft_window_days": policy.window}
                if policy.per_kind else {"threshold": threshold, "hard_threshold": "", "soft_threshold": ""})
            settings, _ = update_bounce_settings(
                self.store, count_policy=options["count_policy"],
                stale_after_days=options["stale_after_days"] or "", reset_on_success=options["reset_on_success"],
                count_unmatched=options["count_unmatched"],
                suppress_on_complaint=policy.suppress_on_complaint, **thresholds)
            policy = settings.policy
            how = f"{words} saved as the bounce threshold, with the counting options shown"
        else:
            how = f"{words}, this time only (the bounce settings are unchanged)"
        self.last_applied = apply_threshold(self.store, policy, self.would_suppress)
        self.refresh()
        self.show_ok(f"Suppressed {len(self.last_applied)} address(es): {how}.")

    # -- the what-if

    def _on_threshold(self, _change: Any) -> None:
        self._show_what_if()

    @catch_errors
    def _on_options(self, _change: Any) -> None:
        self._recount()

    def _show_what_if(self) -> None:
        if self.policy_mode.value == PER_KIND and self.policy_counts is not None:
            self._show_per_kind(self.policy_counts)
            return
        threshold = self.threshold_slider.value
        counts = self._counts if self._counts is not None else review.threshold_counts(self.store)
        self.would_suppress = review.newly_suppressed(self.store, threshold, counts=counts)
        total = int((counts["counted"] >= threshold).sum())
        already = total - len(self.would_suppress)
        self.what_if_label.value = (
            f"<b>{total}</b> address(es) reach {threshold} counted bounce(s): "
            f"<b>{len(self.would_suppress)}</b> would be newly suppressed, {already} already are.")
        self.what_if_addresses.value = _address_list(self.would_suppress)
        self.apply_button.description = f"Suppress {len(self.would_suppress)}"
        self.apply_button.disabled = not self.would_suppress

    def _show_per_kind(self, counts: pd.DataFrame) -> None:
        self.would_suppress = review.policy_would_suppress(self.store, counts=counts)
        total = int(counts["would_suppress"].sum())
        already = total - len(self.would_suppress)
        self.what_if_label.value = (
            f"<b>{total}</b> address(es) reach {html.escape(self.policy().describe())}: "
            f"<b>{len(self.would_suppress)}</b> would be newly suppressed, {already} already are.")
        self.what_if_addresses.value = _address_list(self.would_suppress)
        self.apply_button.description = f"Suppress {len(self.would_suppress)}"
        self.apply_button.disabled = not self.would_suppress


_POLICY_NOTE = (
    "<span style='color:var(--jp-ui-font-color2,#666)'>Counts as the threshold does: one per "
    "bounce report, by whom the failure is about: hard (unknown address or domain) and soft "
    "(mailbox full, disabled) bounces count, failures about us (blocked IP, SPF/DKIM, spam, "
    "content: the \"about the sender\" tab, with remedies) never do, refusals by the recipient's "
    "filter only when ticked below; a complaint suppresses at once. The options start at the "
    "bounce settings' values and change only this what-if (and a Suppress) unless saved. "
    "Suppressed is not unsubscribed: a suppression can be reviewed and lifted.</span>"
)


def _fetch_summary(result: dict[str, Any]) -> str:
    kinds = ", ".join(f"{kind} {n}" for kind, n in result["bounces"].items()) or "none"
    suppressed = result["suppressed"]
    lines = [f"Fetched {result['fetched']} new message(s); by kind: {kinds}."]
    if suppressed:
        lines.append(f"The saved threshold suppressed {len(suppressed)}: {', '.join(suppressed[:10])}"
                     + (" …" if len(suppressed) > 10 else ""))
    return "\n".join(lines)


def _address_list(addresses: list[str]) -> str:
    if not addresses:
        return ""
    shown = ", ".join(html.escape(a) for a in addresses[:SHOWN_ADDRESSES])
    more = f" … and {len(addresses) - SHOWN_ADDRESSES} more" if len(addresses) > SHOWN_ADDRESSES else ""
    return f"<div style='max-width:760px'>Newly suppressed: {shown}{more}</div>"


def _table_html(df: pd.DataFrame, store: Store, caption: str | None = None) -> str:
    """The first rows of a review table as it reads best (:func:`newsletter_kit.review.styled`)."""
    if df.empty:
        return "<i>Nothing yet.</i>"
    note = caption or (f"{len(df):,} row(s)" if len(df) <= SHOWN_ROWS else f"first {SHOWN_ROWS} of {len(df):,} rows")
    table = review.styled(df.head(SHOWN_ROWS), store=store, max_rows=None).to_html()
    return (f"<div style='max-height:360px;overflow:auto'><div style='color:#666'>{html.escape(note)}</div>"
            f"{table}</div>")
