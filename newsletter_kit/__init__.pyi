"""What ``newsletter_kit`` exports: static checkers read this; at run time ``__init__.py``
hands it to lazy_loader, which imports each name's module on first use."""

from .errors import (
    AuthenticationFailed as AuthenticationFailed,
    CampaignError as CampaignError,
    CertificateError as CertificateError,
    ConfigError as ConfigError,
    ConnectionFailed as ConnectionFailed,
    ExportError as ExportError,
    ImportFailed as ImportFailed,
    MailboxError as MailboxError,
    NewsletterKitError as NewsletterKitError,
    QuotaExhausted as QuotaExhausted,
    SecretError as SecretError,
    StoreBusy as StoreBusy,
    StoreError as StoreError,
    StoreMissing as StoreMissing,
    TemplateError as TemplateError,
    ValidationError as ValidationError,
)
from .store import (
    Store as Store,
    open_store as open_store,
)
from .overview import (
    campaign_counts as campaign_counts,
    campaign_page as campaign_page,
)
from .maintenance import (
    BackupReport as BackupReport,
    PruneReport as PruneReport,
    backup_store as backup_store,
    prune_store as prune_store,
    store_info as store_info,
)
from .settings import (
    SmtpSettings as SmtpSettings,
    BounceSettings as BounceSettings,
    update_smtp_settings as update_smtp_settings,
    update_bounce_settings as update_bounce_settings,
    load_smtp_settings as load_smtp_settings,
    load_bounce_settings as load_bounce_settings,
    show_settings as show_settings,
    hold_password_for_session as hold_password_for_session,
    store_password_in_keyring as store_password_in_keyring,
)
from .transport import (
    open_smtp as open_smtp,
    check_smtp as check_smtp,
)
from .imap import (
    open_imap as open_imap,
    check_imap as check_imap,
    fetch_folder_names as fetch_folder_names,
)
from .ingest import (
    fetch_bounces as fetch_bounces,
    FetchReport as FetchReport,
)
from .audience import (
    ImportReport as ImportReport,
    Recipient as Recipient,
    RowProblem as RowProblem,
    add_contacts as add_contacts,
    add_unsubscribe as add_unsubscribe,
    audience_frame as audience_frame,
    audience_counts as audience_counts,
    eligible_recipients as eligible_recipients,
    exclusion_reasons as exclusion_reasons,
    import_contacts as import_contacts,
    import_unsubscribes as import_unsubscribes,
    list_contacts as list_contacts,
    iter_contacts as iter_contacts,
    count_contacts as count_contacts,
    list_size as list_size,
    list_names as list_names,
    list_sizes as list_sizes,
    remove_contact as remove_contact,
    list_unsubscribes as list_unsubscribes,
    remove_unsubscribe as remove_unsubscribe,
)
from .erasure import (
    erase_address as erase_address,
    is_erased as is_erased,
)
from .addresses import (
    normalize_address as normalize_address,
)
from .messages import (
    CampaignRenderer as CampaignRenderer,
)
from .tokens import (
    unsubscribe_token as unsubscribe_token,
    verify_unsubscribe_token as verify_unsubscribe_token,
)
from .campaigns import (
    Campaign as Campaign,
    SendReport as SendReport,
    create_campaign as create_campaign,
    send_campaign as send_campaign,
    campaign_status as campaign_status,
    count_campaigns as count_campaigns,
    get_campaign as get_campaign,
    list_campaigns as list_campaigns,
    forecast_finish as forecast_finish,
    preview_message as preview_message,
    resolve_unknown as resolve_unknown,
    campaign_warnings as campaign_warnings,
    edit_campaign as edit_campaign,
    duplicate_campaign as duplicate_campaign,
    archive_campaign as archive_campaign,
    delete_campaign as delete_campaign,
    sent_count as sent_count,
    send_test as send_test,
    ProofReport as ProofReport,
)
from .schedules import (
    Schedule as Schedule,
    schedule_campaign as schedule_campaign,
    unschedule_campaign as unschedule_campaign,
    get_schedule as get_schedule,
    list_schedules as list_schedules,
)
from .relays import (
    Relay as Relay,
    RelaySettings as RelaySettings,
    list_relays as list_relays,
    update_relay as update_relay,
    remove_relay as remove_relay,
    set_relay_enabled as set_relay_enabled,
)
from .relaying import (
    relay_quotas as relay_quotas,
)
from .runner import (
    RunReport as RunReport,
    run_due as run_due,
)
from .quota import (
    QuotaStatus as QuotaStatus,
    quota_status as quota_status,
)
from .deliverability import (
    Finding as Finding,
    preflight as preflight,
)
from .bounces import (
    parse_bounce as parse_bounce,
    parse_bounce_file as parse_bounce_file,
    BounceReport as BounceReport,
    BounceRecipient as BounceRecipient,
    BounceKind as BounceKind,
    list_unmatched as list_unmatched,
    record_smtp_rejection as record_smtp_rejection,
)
from .suppressions import (
    ThresholdPolicy as ThresholdPolicy,
    apply_threshold as apply_threshold,
    bounce_counts as bounce_counts,
    counting_query as counting_query,
    list_suppressions as list_suppressions,
    iter_suppressions as iter_suppressions,
    count_suppressions as count_suppressions,
    remove_suppression as remove_suppression,
    suppress as suppress,
    suppression_history as suppression_history,
)
from .review import (
    bounces_by_address as bounces_by_address,
    bounces_by_day as bounces_by_day,
    bounces_by_domain as bounces_by_domain,
    bounces_by_reason as bounces_by_reason,
    bounces_by_status as bounces_by_status,
    bounce_list as bounce_list,
    campaign_forecast as campaign_forecast,
    campaign_summary as campaign_summary,
    complaint_rates as complaint_rates,
    newly_suppressed as newly_suppressed,
    policy_counts as policy_counts,
    policy_would_suppress as policy_would_suppress,
    plot_bounce_rate_by_day as plot_bounce_rate_by_day,
    plot_top_domains as plot_top_domains,
    quota_by_day as quota_by_day,
    sender_problems as sender_problems,
    status_meaning as status_meaning,
    styled as styled,
    settings_table as settings_table,
    checks_table as checks_table,
    status_table as status_table,
    quota_table as quota_table,
    reason_counts as reason_counts,
    suppression_table as suppression_table,
    threshold_counts as threshold_counts,
    threshold_what_if as threshold_what_if,
    unmatched_bounces as unmatched_bounces,
)
from .export import (
    ExportReport as ExportReport,
    export_review as export_review,
)
from .panels.settings import (
    SettingsPanel as SettingsPanel,
)
from .panels.campaign import (
    CampaignPanel as CampaignPanel,
)
from .panels.bounces import (
    BounceReviewPanel as BounceReviewPanel,
)
from .panels.people import (
    PeoplePanel as PeoplePanel,
)

def load_ipython_extension(ipython: object) -> None: ...
from .esp import (
    EspSettings as EspSettings,
    EventsReport as EventsReport,
    import_events as import_events,
    load_esp_settings as load_esp_settings,
    sync_events as sync_events,
    update_esp_settings as update_esp_settings,
)
from .listcheck import (
    ListCheckReport as ListCheckReport,
    check_contacts as check_contacts,
    risky_addresses as risky_addresses,
)
