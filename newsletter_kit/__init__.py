"""newsletter_kit: newsletter campaigns from JupyterLab through a dedicated SMTP server.

The plain Python API a notebook cell calls; the CLI (``newsletter-kit``) and the ipywidgets
panels are thin layers over these names.

Example::

    >>> import newsletter_kit as nk
    >>> store = nk.open_store(":memory:")
    >>> smtp, warnings = nk.update_smtp_settings(store, host="127.0.0.1", port=2525,
    ...     tls="none", daily_limit=500, from_addr="news@example.org")
"""

from .errors import (
    AuthenticationFailed,
    CampaignError,
    CertificateError,
    ConfigError,
    ConnectionFailed,
    ImportFailed,
    MailboxError,
    NewsletterKitError,
    QuotaExhausted,
    SecretError,
    StoreError,
    TemplateError,
    ValidationError,
)
from .mailbox import check_imap, fetch_folder_names, open_imap
from .settings import (
    BounceSettings,
    SmtpSettings,
    hold_password_for_session,
    load_bounce_settings,
    load_smtp_settings,
    show_settings,
    store_password_in_keyring,
    update_bounce_settings,
    update_smtp_settings,
)
from .store import Store, open_store
from .transport import check_smtp, open_smtp

# --- audience ---
from .audience import (
    ImportReport,
    Recipient,
    RowProblem,
    add_contacts,
    add_unsubscribe,
    audience_frame,
    eligible_recipients,
    exclusion_reasons,
    import_contacts,
    import_unsubscribes,
    list_contacts,
    list_names,
    normalize_address,
)
# --- messages / quota / campaigns ---
from .messages import CampaignRenderer, unsubscribe_token, verify_unsubscribe_token
from .campaigns import (
    Campaign,
    SendReport,
    campaign_status,
    create_campaign,
    forecast_finish,
    get_campaign,
    list_campaigns,
    preview_message,
    send_campaign,
)
from .quota import QuotaStatus, quota_status
# --- bounces / mailbox fetch / suppressions ---
from .bounces import (
    BounceKind,
    BounceRecipient,
    BounceReport,
    parse_bounce,
    parse_bounce_file,
    apply_threshold,
    bounce_counts,
    counting_query,
    list_suppressions,
    record_smtp_rejection,
    remove_suppression,
    suppress,
    suppression_history,
)
from .mailbox import FetchReport, fetch_bounces
# --- review / panels ---
from .review import (
    bounces_by_address,
    bounces_by_day,
    bounces_by_domain,
    bounces_by_status,
    campaign_forecast,
    campaign_summary,
    newly_suppressed,
    plot_bounce_rate_by_day,
    plot_top_domains,
    quota_by_day,
    status_meaning,
    suppression_table,
    threshold_counts,
    threshold_what_if,
)

__all__ = [
    # errors
    "AuthenticationFailed", "CampaignError", "CertificateError", "ConfigError", "ConnectionFailed",
    "ImportFailed", "MailboxError", "NewsletterKitError", "QuotaExhausted", "SecretError",
    "StoreError", "TemplateError", "ValidationError",
    # store and settings
    "Store", "open_store", "SmtpSettings", "BounceSettings", "update_smtp_settings",
    "update_bounce_settings", "load_smtp_settings", "load_bounce_settings", "show_settings",
    "hold_password_for_session", "store_password_in_keyring",
    # connections
    "open_smtp", "check_smtp", "open_imap", "check_imap", "fetch_folder_names",
    # --- audience (exports) ---
    "ImportReport", "Recipient", "RowProblem", "add_contacts", "add_unsubscribe", "audience_frame",
    "eligible_recipients", "exclusion_reasons", "import_contacts", "import_unsubscribes",
    "list_contacts", "list_names", "normalize_address",
    # --- messages / quota / campaigns (exports) ---
    "CampaignRenderer", "unsubscribe_token", "verify_unsubscribe_token",
    "Campaign", "SendReport", "create_campaign", "send_campaign", "campaign_status", "get_campaign",
    "list_campaigns", "forecast_finish", "preview_message", "QuotaStatus", "quota_status",
    # --- bounces / mailbox fetch / suppressions (exports) ---
    "parse_bounce", "parse_bounce_file", "BounceReport", "BounceRecipient", "BounceKind",
    "fetch_bounces", "FetchReport", "apply_threshold", "bounce_counts", "counting_query",
    "list_suppressions", "record_smtp_rejection", "remove_suppression", "suppress",
    "suppression_history",
    # --- review / panels (exports) ---
    "bounces_by_address", "bounces_by_day", "bounces_by_domain", "bounces_by_status",
    "campaign_forecast", "campaign_summary", "newly_suppressed", "plot_bounce_rate_by_day",
    "plot_top_domains", "quota_by_day", "status_meaning", "suppression_table", "threshold_counts",
    "threshold_what_if", "BounceReviewPanel",
]

# --- panels, demo and the IPython extension: imported on first use, so that importing the
# package needs neither ipywidgets nor IPython (nor aiosmtpd) ---
_LAZY = {
    "SettingsPanel": "panels.settings",
    "CampaignPanel": "panels.campaign",
    "BounceReviewPanel": "panels.bounces",
    "demo": None,  # the module itself: nk.demo.ensure_demo_settings(store)
}
__all__ += ["SettingsPanel", "CampaignPanel"]


def __getattr__(name: str) -> object:
    """Import the panels (ipywidgets) and the demo module only when first used."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
    return module if _LAZY[name] is None else getattr(module, name)


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext newsletter_kit``: registers the ``%newsletter`` line magic.

    Example (in a notebook)::

        %load_ext newsletter_kit
        %newsletter settings
    """
    from .panels.magic import load_ipython_extension as load

    load(ipython)
