"""The ``newsletter-kit`` command: a thin layer over the Python API.

Each command opens the store, calls one or two API functions and prints the result. A
:class:`~newsletter_kit.errors.NewsletterKitError` becomes one line on stderr and its exit code:
1 when something must be fixed first, 75 when nothing needs fixing and the command should
simply run again later (the store was locked by another process, the server went away, the
run was interrupted); click's own usage errors exit 2. No traceback reaches the user.
Commands that only read (or need what ``init`` and the settings create) open an existing store
only: a mistyped ``--db`` creates nothing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from . import settings as settings_mod
from .errors import NewsletterKitError
from .store import Store, default_path, open_store, store_error

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """A group whose commands turn library errors into one clear line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterKitError as exc:
            raise _one_line(exc) from None
        except sqlite3.Error as exc:  # a storage failure met outside Store.conn.execute
            obj = ctx.find_root().ensure_object(dict)
            path = obj["store"].path if "store" in obj else str(obj.get("db") or default_path())
            translated = store_error(exc, path)
            if translated is None:
                raise
            raise _one_line(translated) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


def _one_line(exc: NewsletterKitError) -> click.ClickException:
    """The error as click prints it ("Error: ..."), on one line, with the error's exit code."""
    # printable: an error may quote a server's reply, and a terminal runs the escapes in it.
    error = click.ClickException(settings_mod.printable(" ".join(str(exc).splitlines())))
    setattr(error, "exit_code", exc.exit_code)  # a ClassVar in click; per error here
    return error


click.Group.group_class = _Group  # subgroups made with @group.group() get it too


def get_store(ctx: click.Context, create: bool = True) -> Store:
    """The store named by --db / $NEWSLETTER_KIT_DB / the default, opened once per command.

    ``create=False``: only an existing store (StoreMissing, which says how to make one, else).
    """
    obj = ctx.ensure_object(dict)
    if "store" not in obj:
        obj["store"] = open_store(obj.get("db"), create=create)
        ctx.call_on_close(obj["store"].close)
    return obj["store"]


def pass_store(fn: F) -> F:
    """Decorator: call the command with the store (created if needed) as first argument."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(get_store(click.get_current_context()), *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def pass_existing_store(fn: F) -> F:
    """Decorator: as :func:`pass_store`, for commands that only read or need a configured
    store: a store that does not exist is reported (with how to make one), never created."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(get_store(click.get_current_context(), create=False), *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    """One JSON document on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def say(message: str) -> None:
    """Human text on stderr (stdout stays clean for --json and pipes)."""
    click.echo(message, err=True)


#: What a list command prints without --limit (a screenful); --json prints everything.
SCREENFUL = 25


def _page_options(fn: F) -> F:
    """--limit, --since, --json of the list commands."""
    fn = click.option("--json", "as_json", is_flag=True,
                      help="Stream every row (or --limit of them) as one JSON list on stdout.")(fn)
    fn = click.option("--since", metavar="DATE", help="Only rows from this date on (YYYY-MM-DD).")(fn)
    return click.option("--limit", type=click.IntRange(min=0), metavar="N",
                        help=f"Show at most N rows (default {SCREENFUL}, all with --json; 0: all).")(fn)


def _limit(limit: int | None, as_json: bool) -> int | None:
    """The rows to show: --limit (0: all), else a screenful, else all for --json."""
    if limit is None:
        return None if as_json else SCREENFUL
    return limit or None


def stream_rows(rows: Iterator[dict[str, Any]], total: int, shown: int | None, as_json: bool,
                line: Callable[[dict[str, Any]], str], what: str) -> None:
    """Print ``rows`` as lines, or as one JSON list written a row at a time (never all in
    memory); then, on stderr, how many there are and how many more --limit would show."""
    count = 0
    if as_json:
        click.echo("[", nl=False)
        for row in rows:
            click.echo(("," if count else "") + "\n" + json.dumps(row, default=str, ensure_ascii=False), nl=False)
            count += 1
        click.echo("\n]" if count else "]")
    else:
        for row in rows:
            click.echo(line(row))
            count += 1
    more = total - count
    say(f"{total} {what}" + (f"; {more} more not shown (--limit N, or --limit 0 for all)" if more > 0 else ""))


def warn_all(warnings: list[str]) -> None:
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


@click.group(cls=_Group)
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), envvar="NEWSLETTER_KIT_DB",
              help="The SQLite store (default: $NEWSLETTER_KIT_DB, else data/newsletter.db).")
@click.version_option(package_name="newsletter_kit")
@click.pass_context
def cli(ctx: click.Context, db: Path | None) -> None:
    """Run newsletter campaigns within your SMTP server's daily limit, and act on bounces."""
    ctx.ensure_object(dict)["db"] = db


@cli.command()
@pass_store
def init(store: Store) -> None:
    """Create (or upgrade) the store."""
    say(f"store ready: {store.path} (schema version {store.schema_version()})")


# --- settings -----------------------------------------------------------------------------


@cli.group()
def settings() -> None:
    """Configure the dedicated SMTP server and the bounce mailbox (passwords by reference)."""


def _password_ref(password_env: str | None) -> str | None:
    if password_env is None:
        return None
    return f"env:{password_env}" if password_env else ""


@settings.command("smtp")
@click.option("--host", help="Server name of the dedicated SMTP server.")
@click.option("--port", type=int, help="Port (465 implicit TLS, 587 STARTTLS).")
@click.option("--user", help="User name (an empty string clears it).")
@click.option("--password-env", metavar="VAR", help="Environment variable that holds the password.")
@click.option("--auth/--no-auth", default=None, help="Requires authentication (default: on when --user is given).")
@click.option("--tls", type=click.Choice(settings_mod.TLS_MODES), help="TLS mode (default starttls).")
@click.option("--allow-plain-auth/--no-allow-plain-auth", default=None, help="Allow AUTH without TLS.")
@click.option("--ca-file", metavar="PEM", help="CA certificate(s) to trust instead of the system store.")
@click.option("--daily-limit", type=int, help="Send rate: the maximum number of emails sent per day.")
@click.option("--exclusion", type=click.Choice(settings_mod.EXCLUSION_POLICIES),
              help="campaign: exclude who unsubscribed from this campaign; global: from any.")
@click.option("--from", "from_addr", metavar="ADDR",
              help="The From of campaigns: ADDR or 'Display Name <ADDR>' (any language; encoded as needed).")
@click.option("--reply-to", metavar="ADDR", help="Reply-To of campaigns: ADDR or 'Name <ADDR>' ('' clears).")
@click.option("--list-id", metavar="'NAME <ID.DOMAIN>'",
              help="List-Id header (RFC 2919); default: made from each campaign's list and the From domain.")
@click.option("--unsubscribe-url", metavar="TEMPLATE", help="https URL with {token} for one-click unsubscribe.")
@click.option("--timezone", help="Time zone of the daily limit's day (default: this machine's).")
@click.option("--dkim-selector", metavar="S", help="Sign with DKIM under this selector ('' switches signing off).")
@click.option("--dkim-key-file", metavar="PEM", help="The DKIM private key (RSA or Ed25519); its path is stored, not the key.")
@click.option("--dkim-domain", metavar="D", help="The DKIM d= domain (default: the From domain).")
@click.option("--domain-limit", "domain_limits", multiple=True, metavar="DOMAIN=N/h",
              help="At most N messages an hour to recipients at DOMAIN, any relay (repeatable; DOMAIN=0 removes).")
@pass_store
def settings_smtp(store: Store, password_env: str | None, domain_limits: tuple[str, ...], **changes: Any) -> None:
    """Set the dedicated SMTP server; later calls change only the flags given.

    A new --timezone never frees sends: it prints what it does to today's remaining."""
    if domain_limits and not any(v is not None for v in changes.values()) and settings_mod.load_smtp_settings(store):
        from .ledger import set_domain_limits

        limits = set_domain_limits(store, domain_limits)
        say("hourly limits per recipient domain: " + (", ".join(f"{d} {n}/h" for d, n in limits.items()) or "none"))
        return
    before = _zone_change_before(store, changes.get("timezone"))
    smtp, warnings = settings_mod.update_smtp_settings(
        store, password_ref=_password_ref(password_env), **changes)
    if domain_limits:
        from .ledger import set_domain_limits

        limits = set_domain_limits(store, domain_limits)
        say("hourly limits per recipient domain: " + (", ".join(f"{d} {n}/h" for d, n in limits.items()) or "none"))
    warn_all(warnings)
    say(f"SMTP settings saved: {smtp.host}:{smtp.port} ({smtp.tls}), {smtp.daily_limit} emails/day")
    if before is not None:
        from . import quota

        old_zone, status = before
        say(quota.describe_zone_change(old_zone, smtp.timezone, status, quota.quota_status(store, smtp)))
    if smtp.signing_domain and (changes.get("dkim_key_file") or changes.get("dkim_selector")
                                or changes.get("dkim_domain")):
        from .signing import load_key

        say(f"DKIM: publish this TXT record at {smtp.dkim_selector}._domainkey."
            f"{smtp.signing_domain}, then run `newsletter-kit check`:\n"
            f"{load_key(smtp.dkim_key_file or '').dns_record()}")


def _zone_change_before(store: Store, zone: str | None) -> tuple[str, Any] | None:
    """(old zone, today's quota before) when ``zone`` changes the configured one, else None."""
    current = settings_mod.load_smtp_settings(store)
    if zone is None or current is None or settings_mod.validate_timezone(zone) == current.timezone:
        return None
    from . import quota

    return current.timezone, quota.quota_status(store, current)


@settings.command("bounce")
@click.option("--host", help="Server name of the IMAP bounce mailbox.")
@click.option("--port", type=int, help="Port (993 implicit TLS, 143 STARTTLS).")
@click.option("--user", help="User name of the mailbox.")
@click.option("--password-env", metavar="VAR", help="Environment variable that holds the password.")
@click.option("--tls", type=click.Choice(settings_mod.TLS_MODES), help="SSL/TLS mode (default starttls).")
@click.option("--allow-plain-auth/--no-allow-plain-auth", default=None, help="Allow login without TLS.")
@click.option("--ca-file", metavar="PEM", help="CA certificate(s) to trust instead of the system store.")
@click.option("--bounce-address", metavar="A", help="Envelope sender of campaigns (default: the user name).")
@click.option("--folder", metavar="F", help="Folder to monitor (default INBOX).")
@click.option("--threshold", metavar="N",
              help="One threshold for hard and soft bounces together, used when neither "
                   "--hard-threshold nor --soft-threshold is set ('' clears).")
@click.option("--hard-threshold", metavar="N", help="Hard bounces that suppress an address (default 1; '' clears).")
@click.option("--soft-threshold", metavar="N",
              help="Soft bounces within the window that suppress an address (default 3; '' clears).")
@click.option("--soft-window-days", metavar="D", help="The soft bounces' window in days (default 30; '' clears).")
@click.option("--suppress-on-complaint/--no-suppress-on-complaint", default=None,
              help="A complaint suppresses the address at once (default on).")
@click.option("--count-policy/--no-count-policy", default=None,
              help="Count unclear refusals of a policy kind (a recipient's filter) as soft bounces; "
                   "failures about the sender never count.")
@click.option("--processed-folder", metavar="F", help="Move processed messages to this folder.")
@click.option("--stale-after-days", metavar="N", help="Ignore bounces older than N days ('' clears).")
@click.option("--reset-on-success/--no-reset-on-success", default=None,
              help="A later successful delivery resets an address's count.")
@click.option("--verp/--no-verp", default=None,
              help="Envelope sender LOCAL+TOKEN@DOMAIN per recipient, signed (default off).")
@click.option("--count-unmatched/--no-count-unmatched", default=None,
              help="Count bounce reports that match no delivery we made (default off).")
@pass_store
def settings_bounce(store: Store, password_env: str | None, **changes: Any) -> None:
    """Set the bounce mailbox (IMAP) and the suppression policy; later calls change only the flags given."""
    bounce, warnings = settings_mod.update_bounce_settings(
        store, password_ref=_password_ref(password_env), **changes)
    warn_all(warnings)
    say(f"bounce settings saved: {bounce.user} at {bounce.host}:{bounce.port}, folder "
        f"{bounce.folder!r}, {bounce.policy.describe()}")


@settings.group("relay")
def settings_relay() -> None:
    """More SMTP relays beside the dedicated server (`default`): shares, limits, failover."""


def _relay_options(fn: Any) -> Any:
    options = [
        click.option("--host", help="Server name of the relay."),
        click.option("--port", type=int, help="Port (465 implicit TLS, 587 STARTTLS)."),
        click.option("--user", help="User name ('' clears it)."),
        click.option("--password-env", metavar="VAR", help="Environment variable that holds the password."),
        click.option("--auth/--no-auth", default=None, help="Requires authentication (default: on with --user)."),
        click.option("--tls", type=click.Choice(settings_mod.TLS_MODES), help="TLS mode (default starttls)."),
        click.option("--allow-plain-auth/--no-allow-plain-auth", default=None, help="Allow AUTH without TLS."),
        click.option("--ca-file", metavar="PEM", help="CA certificate(s) to trust instead of the system store."),
        click.option("--daily-limit", type=int, help="This relay's send rate: emails per day."),
        click.option("--weight", type=int, help="Share of the recipients, relative to the other relays (default 1)."),
        click.option("--hourly-limit", type=int, help="At most N emails per hour through this relay ('' clears)."),
        click.option("--max-per-second", type=float, help="At most R emails per second (e.g. 14 for a new SES account)."),
        click.option("--warmup", metavar="START:DAYS",
                     help="Grow the daily limit geometrically from START to --daily-limit over DAYS days ('' stops it)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _relay_changes(password_env: str | None, changes: dict[str, Any]) -> dict[str, Any]:
    return {**changes, "password_ref": _password_ref(password_env)}


@settings_relay.command("add")
@click.argument("name")
@_relay_options
@pass_store
def settings_relay_add(store: Store, name: str, password_env: str | None, **changes: Any) -> None:
    """Add relay NAME: --host, --port and --daily-limit are required."""
    from .relays import update_relay

    relay = update_relay(store, name, create=True, **_relay_changes(password_env, changes))
    say(f"relay {relay.name} added: {relay.host}:{relay.port} ({relay.tls}), {relay.daily_limit} emails/day, "
        f"weight {relay.weight}")


@settings_relay.command("set")
@click.argument("name")
@_relay_options
@pass_store
def settings_relay_set(store: Store, name: str, password_env: str | None, **changes: Any) -> None:
    """Change relay NAME (`default`: the dedicated server's weight and limits only)."""
    from .relays import update_relay

    relay = update_relay(store, name, **_relay_changes(password_env, changes))
    say(f"relay {relay.name} saved")


@settings_relay.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the relays as a JSON list (passwords masked).")
@pass_store
def settings_relay_list(store: Store, as_json: bool) -> None:
    """Every relay with its connection, weight, limits and today's use."""
    from .relaying import relay_quotas
    from .relays import list_relays

    relays = list_relays(store)
    use = {row["relay"]: row for row in relay_quotas(store)}
    rows = []
    for relay in relays:
        data = relay.settings.public_dict()
        data.update(host=relay.smtp.host, port=relay.smtp.port, tls=relay.smtp.tls,
                    **{"daily-limit": relay.smtp.daily_limit, "today-limit": use[relay.name]["limit"],
                       "used-today": use[relay.name]["used"]})
        rows.append(data)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        say("no relay: set the dedicated SMTP server first (`settings smtp`)")
    for r in rows:
        state = "enabled" if r["enabled"] else "disabled"
        extra = "".join([f", {r['hourly-limit']}/h" if r["hourly-limit"] else "",
                         f", {r['max-per-second']}/s" if r["max-per-second"] else "",
                         f", warm-up {r['warmup']} since {r['warmup-since']}" if r["warmup"] else ""])
        click.echo(f"{r['name']}\t{state}\t{r['host']}:{r['port']} ({r['tls']})\tweight {r['weight']}\t"
                   f"{r['used-today']}/{r['today-limit']} today{extra}")


@settings_relay.command("disable")
@click.argument("name")
@pass_existing_store
def settings_relay_disable(store: Store, name: str) -> None:
    """Send nothing through relay NAME (its settings stay)."""
    from .relays import set_relay_enabled

    set_relay_enabled(store, name, False)
    say(f"relay {name} disabled")


@settings_relay.command("enable")
@click.argument("name")
@pass_existing_store
def settings_relay_enable(store: Store, name: str) -> None:
    """Send through relay NAME again."""
    from .relays import set_relay_enabled

    set_relay_enabled(store, name, True)
    say(f"relay {name} enabled")


@settings_relay.command("remove")
@click.argument("name")
@pass_existing_store
def settings_relay_remove(store: Store, name: str) -> None:
    """Forget relay NAME (the messages it sent stay in the ledger)."""
    from .relays import remove_relay

    remove_relay(store, name)
    say(f"relay {name} removed")


@settings.command("esp")
@click.option("--provider", type=click.Choice(("ses", "sendgrid", "mailgun", "postmark")),
              help="The ESP whose bounce and complaint events to read (a second bounce source).")
@click.option("--credential-env", metavar="VAR",
              help="Environment variable holding the API key (SendGrid, Mailgun), server token (Postmark) "
                   "or AWS secret key (SES).")
@click.option("--credential-keyring", metavar="NAME", help="Or: the keyring entry holding it.")
@click.option("--key-id", metavar="ID", help="SES: the AWS access key id (else boto3's own credentials).")
@click.option("--region", help="SES: the AWS region (e.g. eu-west-1).")
@click.option("--queue-url", metavar="URL", help="SES: the SQS queue subscribed to the SNS topic.")
@click.option("--configuration-set", metavar="NAME",
              help="SES: the configuration set whose event destination carries our message tags.")
@click.option("--domain", help="Mailgun: the sending domain.")
@click.option("--api-url", metavar="URL", help="The provider's API base (e.g. Mailgun's EU region).")
@click.option("--public-key", metavar="KEY", help="SendGrid: the Event Webhook verification key.")
@click.option("--signing-key-env", metavar="VAR", help="Mailgun: environment variable holding the webhook signing key.")
@click.option("--sns-cert", metavar="PEM", help="SES: an SNS signing certificate file (instead of fetching it).")
@click.option("--window-days", type=click.IntRange(min=0), help="Address-only events match a delivery this recent (7).")
@click.option("--margin-minutes", type=click.IntRange(min=0),
              help="Mailgun: each sync reads again from this far back (late-indexed events, 30).")
@pass_store
def settings_esp(store: Store, credential_env: str | None, credential_keyring: str | None,
                 signing_key_env: str | None, **changes: Any) -> None:
    """Set the ESP whose API bounces `bounces sync` reads; later calls change only the flags given."""
    from .esp import update_esp_settings

    ref = None
    if credential_env is not None:
        ref = f"env:{credential_env}" if credential_env else ""
    elif credential_keyring is not None:
        ref = f"keyring:{credential_keyring}" if credential_keyring else ""
    signing = (f"env:{signing_key_env}" if signing_key_env else "") if signing_key_env is not None else None
    esp = update_esp_settings(store, credential_ref=ref, signing_key_ref=signing, **changes)
    warn_all(esp.validate())
    say(f"ESP settings saved: {esp.provider}")


@settings.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@pass_existing_store
def settings_show(store: Store, as_json: bool) -> None:
    """Show both sections, passwords masked."""
    from .esp.config import show_all

    data = show_all(store)
    if as_json:
        emit_json(data)
        return
    for section, values in data.items():
        click.echo(f"[{section}]")
        if values is None:
            click.echo("  (not configured)")
            continue
        for key, value in values.items():  # escaped: a stored value never drives the terminal
            click.echo(f"  {key:21} {settings_mod.printable(value)}")


@settings.command("folders")
@pass_existing_store
def settings_folders(store: Store) -> None:
    """The folders the bounce server lists, one per line."""
    from .imap import fetch_folder_names

    for name in fetch_folder_names(settings_mod.require_bounce_settings(store)):
        click.echo(settings_mod.printable(name))  # names come from the server


@settings.command("test")
@pass_existing_store
def settings_test(store: Store) -> None:
    """Connect to both servers (and the ESP's API, when set) and say what works."""
    from .imap import check_imap
    from .transport import check_smtp

    smtp = settings_mod.load_smtp_settings(store)
    bounce = settings_mod.load_bounce_settings(store)
    results: list[tuple[bool, str]] = []
    results += check_smtp(smtp) if smtp else [(False, "SMTP: not configured")]
    results += check_imap(bounce) if bounce else [(False, "bounce mailbox: not configured")]
    from .esp import load_esp_settings

    esp = load_esp_settings(store)
    if esp is not None:  # the second bounce source, when set
        from .esp.sync import check_esp

        results += check_esp(esp)
    for ok, line in results:
        click.echo(f"{'ok  ' if ok else 'FAIL'} {settings_mod.printable(line)}")  # quotes server replies
    if not all(ok for ok, _ in results):
        sys.exit(1)


# --- deliverability pre-flight -------------------------------------------------------------


@cli.command("check")
@click.option("--json", "as_json", is_flag=True, help='A JSON list of {"check", "status", "detail"}.')
@click.option("--nameserver", metavar="HOST[:PORT]",
              help="Ask this DNS server (an IP address) instead of the system resolver.")
@click.option("--campaign", metavar="NAME", help="Check the From this campaign sends with (default: the settings').")
@pass_existing_store
def check_cmd(store: Store, as_json: bool, nameserver: str | None, campaign: str | None) -> None:
    """Pre-flight: SPF, DKIM, DMARC, alignment, MX, unsubscribe, volume; exit 1 when one fails."""
    from .deliverability import preflight

    findings = preflight(store, nameserver=nameserver, campaign=campaign)
    if as_json:
        emit_json([finding.to_dict() for finding in findings])
    else:
        for finding in findings:
            click.echo(f"{finding.status.upper():4} {finding.check:11} {settings_mod.printable(finding.detail)}")
    if any(finding.status == "fail" for finding in findings):
        sys.exit(1)


# --- contacts, unsubscribes, campaigns, quota (audience / campaigns) ---------------------


def _report_import(report: Any, what: str, as_json: bool) -> None:
    """Skipped rows on stderr (line: value: reason), then a one-line summary (or JSON)."""
    for problem in report.problems:
        say(f"skipped {problem}")
    if as_json:
        emit_json(report.to_dict())
    else:
        say(f"{what}: {report.summary()}")


@cli.group()
def contacts() -> None:
    """Import, list, remove and erase contacts (column `email`; other columns become template fields)."""


@contacts.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_name", default="all", show_default=True, metavar="NAME",
              help="The list to add the contacts to (every contact is also in 'all').")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON document on stdout.")
@pass_store
def contacts_import(store: Store, file: Path, list_name: str, as_json: bool) -> None:
    """Import contacts from a UTF-8 CSV file (`,` or `;`); invalid rows are listed and skipped."""
    from .audience import import_contacts

    _report_import(import_contacts(store, file, list_name), f"contacts ({list_name})", as_json)


@contacts.command("list")
@click.option("--list", "list_name", default="all", show_default=True, metavar="NAME",
              help="The list to show.")
@click.option("--status", type=click.Choice(["active", "unsubscribed", "suppressed"]),
              help="Only active contacts, or those opted out of everything, or suppressed.")
@_page_options
@pass_existing_store
def contacts_list(store: Store, list_name: str, status: str | None, limit: int | None, since: str | None,
                  as_json: bool) -> None:
    """The contacts of a list, one per line, oldest first (JSON: {contact_id, email, fields...})."""
    from .audience import count_contacts, iter_contacts, list_names

    if list_name not in list_names(store):
        raise click.ClickException(f"no contact list named {list_name!r} "
                                   f"(lists: {', '.join(list_names(store)) or 'none'})")
    total = count_contacts(store, list_name, status=status, since=since)
    rows = iter_contacts(store, list_name, status=status, since=since, limit=_limit(limit, as_json))
    stream_rows(rows, total, _limit(limit, as_json), as_json, lambda row: str(row["email"]),
                f"contacts in {list_name!r}")


@contacts.command("check")
@click.option("--list", "list_name", metavar="NAME", help="Only this list's contacts (default: every contact).")
@click.option("--nameserver", metavar="HOST[:PORT]",
              help="Ask this DNS server (an IP address) instead of the system resolver.")
@click.option("--json", "as_json", is_flag=True, help='Print {"checked", "flagged", "risks", "addresses"} as JSON.')
@pass_existing_store
def contacts_check(store: Store, list_name: str | None, nameserver: str | None, as_json: bool) -> None:
    """Check addresses before a send: syntax, the domain's MX, role, disposable, typo of a big provider.

    The findings are kept: `campaign send --skip-risky` leaves the flagged addresses out.
    """
    from .listcheck import check_contacts
    from .settings import printable

    report = check_contacts(store, list_name, nameserver=nameserver)
    if as_json:
        emit_json(report.to_dict())
        return
    for check in report.flagged:
        click.echo(f"{printable(check.address)}\t{','.join(check.risks)}\t{printable('; '.join(check.details))}")
    counts = ", ".join(f"{risk} {n}" for risk, n in sorted(report.counts.items()))
    say(f"checked {report.checked} address(es): {len(report.flagged)} flagged" + (f" ({counts})" if counts else ""))
    if report.unknown_domains:
        say(f"DNS could not tell for {len(report.unknown_domains)} domain(s): {', '.join(report.unknown_domains[:10])}")


def _require_yes(yes: bool, what: str) -> None:
    """Nothing is removed without --yes: say what would go, and stop (exit 1)."""
    if not yes:
        raise click.ClickException(f"{what}: add --yes to confirm (nothing was removed)")


@contacts.command("lists")
@click.option("--json", "as_json", is_flag=True, help='A JSON list of {"list", "contacts"}.')
@pass_existing_store
def contacts_lists(store: Store, as_json: bool) -> None:
    """Every contact list with its size."""
    from .audience import list_sizes

    sizes = list_sizes(store)
    if as_json:
        emit_json(sizes)
        return
    for item in sizes:
        click.echo(f"{item['list']}\t{item['contacts']}")


@contacts.command("remove")
@click.argument("address")
@click.option("--list", "list_name", metavar="L", help="Only take it off this list (default: every list).")
@click.option("--yes", is_flag=True, help="Confirm the removal.")
@pass_existing_store
def contacts_remove(store: Store, address: str, list_name: str | None, yes: bool) -> None:
    """Remove a contact (from one list with --list); its deliveries stay for the statistics."""
    from .audience import remove_contact

    _require_yes(yes, f"remove {address.strip()} from " + (repr(list_name) if list_name else "the contacts"))
    say(remove_contact(store, address, list_name))


@contacts.command("erase")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Confirm the erasure (it cannot be undone).")
@click.option("--json", "as_json", is_flag=True, help="What was erased or anonymised, as JSON.")
@pass_existing_store
def contacts_erase(store: Store, address: str, yes: bool, as_json: bool) -> None:
    """Right to erasure (GDPR art. 17): every trace of ADDRESS leaves the store file.

    Contacts, opt-outs, suppression and audit rows go; deliveries and bounces keep their
    counts under a placeholder; a keyed hash keeps the address from being imported again.
    """
    from .erasure import erase_address

    _require_yes(yes, f"erase every trace of {address.strip()} (this cannot be undone)")
    done = erase_address(store, address)
    if as_json:
        emit_json(done)
        return
    say(f"erased: {done['contacts']} contact, {done['deliveries']} deliveries and {done['bounces']} bounces "
        f"anonymised as {done['placeholder']}, {done['unsubscribes']} opt-outs, {done['suppressions']} "
        f"suppression, {done['audit_rows']} audit rows; a later import of it is refused")


@cli.group()
def unsubscribes() -> None:
    """Import, list and withdraw opt-outs (per campaign, or from everything)."""


@unsubscribes.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--campaign", metavar="NAME",
              help="The campaign they opted out of (may not exist yet); none: from everything.")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON document on stdout.")
@pass_store
def unsubscribes_import(store: Store, file: Path, campaign: str | None, as_json: bool) -> None:
    """Import opt-outs from a CSV file with an `email` column; invalid rows are listed and skipped."""
    from .audience import import_unsubscribes

    # Without --campaign a row opts out of its `campaign` column's campaign, else of everything.
    what = f"unsubscribes (campaign {campaign!r})" if campaign else "unsubscribes"
    _report_import(import_unsubscribes(store, file, campaign), what, as_json)


@unsubscribes.command("list")
@click.option("--address", metavar="ADDR", help="Only this address's opt-outs.")
@click.option("--json", "as_json", is_flag=True, help='A JSON list of {"address", "campaign", "source", "since"}.')
@pass_existing_store
def unsubscribes_list(store: Store, address: str | None, as_json: bool) -> None:
    """The opt-outs, newest first (campaign '*': from everything)."""
    from .audience import list_unsubscribes

    rows = list_unsubscribes(store, address)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['address']}\t{row['campaign'] or '*'}\t{row['source']}\t{row['since']}")
    say(f"{len(rows)} opt-out(s)")


@unsubscribes.command("remove")
@click.argument("address")
@click.option("--campaign", metavar="NAME", help="Withdraw the opt-out from this campaign (default: from everything).")
@click.option("--all", "every", is_flag=True, help="Withdraw every opt-out of the address.")
@click.option("--by", help="Who asked (kept in the audit trail).")
@click.option("--yes", is_flag=True, help="Confirm: the address gets campaigns again.")
@pass_existing_store
def unsubscribes_remove(store: Store, address: str, campaign: str | None, every: bool, by: str | None,
                        yes: bool) -> None:
    """A new opt-in: withdraw an opt-out of ADDRESS (written to the audit trail)."""
    from .audience import remove_unsubscribe

    _require_yes(yes, f"let {address.strip()} receive campaigns again")
    count = remove_unsubscribe(store, address, campaign, every=every, by=by)
    say(f"{count} opt-out(s) of {address.strip().lower()} withdrawn (kept in the audit trail)")


# campaigns and quota (campaigns helper)


@cli.group()
def campaign() -> None:
    """Create campaigns, send them within today's quota, follow their progress."""


def _read_template(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise click.ClickException(f"{path} is not UTF-8 text") from None


@campaign.command("create")
@click.argument("name")
@click.option("--list", "list_name", required=True, metavar="L", help="The contact list to send to.")
@click.option("--subject", required=True, metavar="S", help="Subject template (Jinja, contact fields as variables).")
@click.option("--html", "html_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="HTML body template file (Jinja).")
@click.option("--text", "text_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Plain-text body template file (default: made from the HTML).")
@click.option("--from", "from_addr", metavar="ADDR",
              help="ADDR or 'Display Name <ADDR>' (default: the SMTP settings' From).")
@pass_existing_store
def campaign_create(store: Store, name: str, list_name: str, subject: str, html_file: Path,
                    text_file: Path | None, from_addr: str | None) -> None:
    """Create a campaign; its templates are checked now, before anything is saved."""
    from .campaigns import campaign_status, campaign_warnings, create_campaign

    html = _read_template(html_file)
    created = create_campaign(store, name, list_name, subject, html or "", _read_template(text_file), from_addr)
    status = campaign_status(store, created.name)
    say(f"campaign {created.name!r} created for list {list_name!r}: {status['pending']} recipient(s) "
        f"to send, {status['excluded']} excluded")
    for warning in campaign_warnings(store, created.name):
        say(f"warning: {warning}")


@campaign.command("send")
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=0), metavar="N", help="Attempt at most N recipients in this run.")
@click.option("--dry-run", is_flag=True, help="Render every message and say what would be sent; send and write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's report as one JSON document.")
@click.option("--connections", type=click.IntRange(min=1), default=1, show_default=True,
              help="Parallel SMTP connections (for a slow server).")
@click.option("--max-failures", type=click.IntRange(min=1), default=10, show_default=True, metavar="N",
              help="Stop the run after N failed or deferred recipients in a row.")
@click.option("--ignore-guards", is_flag=True,
              help="Send even when the deliverability guards would pause the run (refusals at "
                   "RCPT over 5% of the last 200 recipients, spam complaints over 0.3%).")
@click.option("--skip-risky", is_flag=True,
              help="Leave out the addresses the last `contacts check` flagged, and say how many.")
@pass_existing_store
def campaign_send(store: Store, name: str, limit: int | None, dry_run: bool, as_json: bool,
                  connections: int, max_failures: int, ignore_guards: bool, skip_risky: bool) -> None:
    """Send what today's quota allows; run it again (e.g. from cron) to continue.

    Exit status 0 when the run finished or paused on the quota (it says when it resumes);
    1 after too many failures in a row or when the server refused the message itself;
    3 when a deliverability guard paused it; 75 when the server or the connection went away,
    or the run was interrupted (Ctrl-C, SIGTERM): run it again later. A first Ctrl-C or
    SIGTERM lets the message on the wire finish; a second one stops at once.
    """
    from .campaigns import send_campaign

    bar: Any = None
    stop = threading.Event()

    def progress(done: int, total: int, report: Any) -> None:
        nonlocal bar
        if not sys.stderr.isatty():  # cron and pipes get no bar, and do not pay tqdm's import
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="msg", desc=name, file=sys.stderr)
        bar.total = total
        bar.update(done - bar.n)

    try:
        with _stop_on_signals(stop) as signalled:
            report = send_campaign(store, name, limit=limit, dry_run=dry_run, progress=progress,
                                   connections=connections, max_consecutive_failures=max_failures,
                                   stop_event=stop, ignore_guards=ignore_guards, skip_risky=skip_risky)
    except KeyboardInterrupt:
        say("interrupted: what was answered is recorded, the message on the wire is marked "
            "unknown; run `campaign send` again to continue")
        sys.exit(75)
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        emit_json(report.to_dict())
    say(report.summary() if not signalled else report.summary().replace(
        "stopped on request", f"interrupted by {signalled[0]}"))
    if report.paused == "connection" or (signalled and report.paused == "stopped"):
        sys.exit(75)  # EX_TEMPFAIL: a scheduler should simply try again later
    if report.paused in ("failures", "refused"):
        sys.exit(1)
    if report.paused == "guard":
        sys.exit(3)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[list[str]]:
    """SIGTERM and SIGINT stop the run after the message on the wire (a second one at once).

    Yields the names of the signals received. Only the main thread can take signals; else
    (a test runner's thread) nothing is installed.
    """
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, _frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@campaign.command("resolve")
@click.argument("name")
@click.option("--as", "as_state", type=click.Choice(["sent", "pending"]), required=True,
              help="sent: count them as delivered; pending: send them again on the next run.")
@click.option("--address", "addresses", multiple=True, metavar="A",
              help="Settle only this unknown recipient (repeatable; default: every unknown one).")
@click.option("--yes", is_flag=True, help="Confirm --as pending (those recipients may get the campaign twice).")
@pass_existing_store
def campaign_resolve(store: Store, name: str, as_state: str, addresses: tuple[str, ...], yes: bool) -> None:
    """Settle the recipients marked unknown (perhaps delivered) as sent or pending."""
    from .campaigns import get_campaign, resolve_unknown
    from .ledger import Ledger

    if as_state == "pending" and not yes:
        count = len(addresses) or len(Ledger(store, get_campaign(store, name).id).unknown())
        question = (f"send the campaign again to {count} recipient(s) who may already have it?")
        if not sys.stdin.isatty():
            raise click.ClickException(f"--as pending {question[:-1]}: add --yes to confirm")
        if not click.confirm(question.capitalize(), err=True):
            raise click.ClickException("nothing settled")
    settled = resolve_unknown(store, name, as_state, list(addresses) or None)
    say(f"{len(settled)} unknown recipient(s) of {name!r} settled as {as_state}"
        + ("; the next `campaign send` sends them" if as_state == "pending" and settled else ""))


@campaign.command("schedule")
@click.argument("name")
@click.option("--at", "at", metavar="WHEN", default="now", show_default=True,
              help="Not before this time: '2026-12-08 09:00' (read in --tz), an ISO time with an offset, or 'now'.")
@click.option("--window", metavar="HH:MM-HH:MM",
              help="Send only inside this daily window (local to --tz; 22:00-06:00 crosses midnight).")
@click.option("--days", metavar="DAYS", help="Send only on these week days: mon-fri, sat,sun, daily.")
@click.option("--tz", metavar="ZONE", help="The zone of --at, --window and --days (default: the SMTP settings' zone).")
@click.option("--priority", type=int, default=0, show_default=True,
              help="When campaigns compete for the same quota, the higher goes first.")
@click.option("--clear", is_flag=True, help="Remove the campaign's schedule instead.")
@pass_existing_store
def campaign_schedule(store: Store, name: str, at: str, window: str | None, days: str | None,
                      tz: str | None, priority: int, clear: bool) -> None:
    """Schedule a campaign for `newsletter-kit run` (cron), inside a window and on week days."""
    from .schedules import schedule_campaign, unschedule_campaign

    if clear:
        removed = unschedule_campaign(store, name)
        say(f"{name}: schedule removed" if removed else f"{name}: had no schedule")
        return
    schedule = schedule_campaign(store, name, at, window=window, days=days, tz=tz, priority=priority)
    say(f"{name}: scheduled {schedule.describe()}; `newsletter-kit run` sends it when due")


@cli.command("run")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as one JSON document.")
@click.option("--no-fetch", is_flag=True, help="Do not fetch the bounce mailbox.")
@pass_existing_store
def run_cmd(store: Store, as_json: bool, no_fetch: bool) -> None:
    """Do what is due (for cron): send scheduled campaigns inside their windows, fetch bounces.

    One line per action. Exit status as `campaign send`: 0 done or waiting (quota, window),
    1 a refused message or too many failures, 3 a deliverability guard, 75 the server went away
    or the run was interrupted (Ctrl-C, SIGTERM): run again later.
    """
    from .runner import run_due

    stop = threading.Event()
    try:
        with _stop_on_signals(stop) as signalled:
            report = run_due(store, fetch=not no_fetch, stop_event=stop)
    except KeyboardInterrupt:
        say("interrupted: what was answered is recorded; run `newsletter-kit run` again")
        sys.exit(75)
    if as_json:
        emit_json(report.to_dict())
    else:
        for action in report.actions:  # campaign names and server replies: escaped for the terminal
            click.echo(settings_mod.printable(action.line()))
    code = 75 if signalled and report.exit_code == 0 else report.exit_code
    if code:
        sys.exit(code)


@campaign.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"total", "sent", "failed", "excluded", "pending", "unknown"} as JSON.')
@pass_existing_store
def campaign_status_cmd(store: Store, name: str, as_json: bool) -> None:
    """How far a campaign is: sent, failed, excluded, pending, unknown; and when it will finish."""
    from .progress import campaign_status, forecast_finish  # the read side: no send path to import

    status = campaign_status(store, name)
    if as_json:
        emit_json(status)
        return
    for key, value in status.items():
        click.echo(f"{key:9} {value}")
    if status["pending"] and settings_mod.load_smtp_settings(store):
        click.echo(f"finishes {forecast_finish(store, name)} at the current send limit")


@campaign.command("list")
@click.option("--status", help="Only campaigns with this status (draft, sending, paused, done, pruned...).")
@click.option("--search", metavar="TEXT", help="Only campaigns whose name contains TEXT.")
@click.option("--archived", is_flag=True, help="List the archived campaigns instead.")
@_page_options
@pass_existing_store
def campaign_list(store: Store, status: str | None, search: str | None, archived: bool, limit: int | None,
                  since: str | None, as_json: bool) -> None:
    """Campaigns, newest first: name, list, status, sent, subject (archived ones: --archived)."""
    from .progress import count_campaigns, list_campaigns

    total = count_campaigns(store, archived=archived, search=search, status=status, since=since)
    rows = iter(list_campaigns(store, archived=archived, search=search, status=status, since=since,
                               limit=_limit(limit, as_json)))
    stream_rows(rows, total, _limit(limit, as_json), as_json,
                lambda item: f"{item['name']}\t{item['list']}\t{item['status']}\t{item['sent']} sent\t{item['subject']}",
                "campaign(s)")


@campaign.command("test")
@click.argument("name")
@click.option("--to", "to", multiple=True, required=True, metavar="ADDR",
              help="A test address (repeatable).")
@click.option("--as", "as_contact", metavar="CONTACT",
              help="Fill the templates with this contact's fields (default: a sample of the list).")
@click.option("--json", "as_json", is_flag=True, help='Print {"campaign", "as", "sent", "results"} as JSON.')
@pass_existing_store
def campaign_test(store: Store, name: str, to: tuple[str, ...], as_contact: str | None, as_json: bool) -> None:
    """Send a proof: the rendered message to test addresses, subject prefixed [TEST].

    Not a delivery of the campaign: the unsubscribe link is inert, nothing enters the ledger,
    and a bounce of it counts toward nobody; it counts toward today's quota. Exit status 0 when
    the server accepted every test message, 1 when it refused one, 75 when it could not be
    reached or the quota has no room (run it again later).
    """
    from .campaigns import send_test

    report = send_test(store, name, to, as_contact=as_contact)
    if as_json:
        emit_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)
    outcomes = {r["outcome"] for r in report.results}
    if outcomes & {"paused", "deferred"}:
        sys.exit(75)
    if outcomes - {"sent"}:
        sys.exit(1)


@campaign.command("edit")
@click.argument("name")
@click.option("--subject", metavar="S", help="New subject template.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), help="New HTML template file.")
@click.option("--text", "text_file", type=click.Path(dir_okay=False, path_type=Path),
              help="New plain-text template file.")
@click.option("--list", "list_name", metavar="L", help="Send to this list instead.")
@click.option("--from", "from_addr", metavar="ADDR", help="New From ('' : the settings' From).")
@pass_existing_store
def campaign_edit(store: Store, name: str, subject: str | None, html_file: Path | None,
                  text_file: Path | None, list_name: str | None, from_addr: str | None) -> None:
    """Change a campaign not sent to anyone yet (after the first send: duplicate it)."""
    from .campaigns import campaign_warnings, edit_campaign

    edited = edit_campaign(store, name, subject=subject, html=_read_template(html_file), text=_read_template(text_file),
                           list_name=list_name, from_addr=from_addr)
    say(f"campaign {edited.name!r} changed (list {edited.list_name!r}, subject {edited.subject!r})")
    warn_all(campaign_warnings(store, edited.name))


@campaign.command("duplicate")
@click.argument("name")
@click.argument("new_name", metavar="NEW")
@pass_existing_store
def campaign_duplicate(store: Store, name: str, new_name: str) -> None:
    """Copy a campaign (sent or not) into a new draft called NEW."""
    from .campaigns import duplicate_campaign

    copy = duplicate_campaign(store, name, new_name)
    say(f"campaign {copy.name!r} created from {name!r} (list {copy.list_name!r}): edit it, test it, send it")


@campaign.command("archive")
@click.argument("name")
@click.option("--undo", is_flag=True, help="Bring an archived campaign back.")
@pass_existing_store
def campaign_archive(store: Store, name: str, undo: bool) -> None:
    """Hide a campaign from the lists and the sidebar; its history stays in the statistics."""
    from .campaigns import archive_campaign

    archive_campaign(store, name, undo=undo)
    say(f"campaign {name!r} " + ("is back in the lists" if undo else
                                 "archived (`campaign list --archived` shows it; --undo brings it back)"))


@campaign.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Confirm deleting a campaign that was sent (its deliveries stay).")
@pass_existing_store
def campaign_delete(store: Store, name: str, yes: bool) -> None:
    """Delete a campaign never sent; one that was sent only with --yes, its deliveries kept for
    the statistics."""
    from .campaigns import delete_campaign

    result = delete_campaign(store, name, yes=yes)
    say(f"campaign {name!r} deleted" + ("" if result["deleted"] == "entirely" else
                                        f"; {result['deliveries_kept']} deliveries kept for the statistics"))


@cli.command("quota")
@click.option("--campaign", metavar="NAME",
              help="Also forecast the day this campaign finishes at the current limit.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"limit", "used", "remaining", "resets_at"} as JSON (with --campaign '
                   'also "campaign", "pending" and "forecast_finish").')
@pass_existing_store
def quota_cmd(store: Store, campaign: str | None, as_json: bool) -> None:
    """Today's send limit: used, remaining, and when it resets (the configured time zone)."""
    from .progress import campaign_status, forecast_finish
    from .quota import quota_status
    from .relays import relay_names

    if len(relay_names(store)) > 1:  # several relays: their sum, and each
        from .relaying import combined_status, relay_quotas

        status = combined_status(store)
        data: dict[str, Any] = {**status.to_dict(), "relays": relay_quotas(store)}
    else:
        status = quota_status(store, reclaim=False)  # reading: a read-only store still answers
        data = status.to_dict()
    if campaign is not None:
        finish = forecast_finish(store, campaign)
        data.update(campaign=campaign, pending=campaign_status(store, campaign)["pending"],
                    forecast_finish=finish.isoformat() if finish else None)
    if as_json:
        emit_json(data)
        return
    click.echo(f"{status.used} of {status.limit} sent today ({status.day}), {status.remaining} remaining"
               + (f", {status.reserved} held by running senders" if status.reserved else "")
               + f"; resets at {status.resets_at.isoformat()}")
    for row in data.get("relays", []):
        click.echo(f"  relay {row['relay']}: {row['used']} of {row['limit']} today, {row['remaining']} remaining"
                   + ("" if row["enabled"] else " (disabled)"))
    if campaign is not None:
        click.echo(f"{campaign}: {data['pending']} still to send; "
                   + (f"finishes on {data['forecast_finish']} at this limit" if data["forecast_finish"]
                      else "nothing left to send"))


# --- bounces and suppressions -------------------------------------------------------------


@cli.group()
def bounces() -> None:
    """Read bounce reports: from the bounce mailbox, or from local files."""


@bounces.command("parse")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file, one per line.")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def bounces_parse(as_json: bool, files: tuple[Path, ...]) -> None:
    """Parse bounce messages in local files (.eml): no store, no network."""
    from .bounces import parse_bounce_file

    failed = 0
    for path in files:
        try:
            report = parse_bounce_file(path)
        except OSError as exc:
            failed += 1
            click.echo(f"error: {path}: {exc.strerror or exc}", err=True)
            continue
        if as_json:
            click.echo(json.dumps({"file": str(path), **report.to_dict()}, ensure_ascii=False))
        else:
            rcpts = ", ".join(f"{r.address} ({r.status or r.kind.value})" for r in report.recipients)
            click.echo(f"{path}: {report.kind.value}" + (f" {rcpts}" if rcpts else ""))
    if failed:
        sys.exit(1)


@bounces.command("fetch")
@click.option("--from", "source", type=click.Path(exists=True, path_type=Path),
              help="Read a folder of .eml files (or one .eml, or an mbox file) instead of the mailbox.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"fetched", "bounces", "unmatched", "suppressed"} (and "skipped" when any) as JSON.')
@click.option("--deadline", type=click.FloatRange(min=1), default=600, show_default=True, metavar="SECONDS",
              help="The longest the whole fetch may talk to the server; then it stops (exit 75).")
@click.option("--max-message-size", "max_mb", type=click.FloatRange(min=0.01), default=12, show_default=True,
              metavar="MB", help="Skip (and report) messages larger than this, whatever the server says.")
@pass_existing_store
def bounces_fetch(store: Store, source: Path | None, as_json: bool, deadline: float, max_mb: float) -> None:
    """Fetch new messages from the bounce mailbox, record bounces, suppress at the threshold.

    Only messages not seen before are read (\\Seen flags are left alone); running it again
    changes nothing.
    """
    from .esp import load_esp_settings
    from .ingest import fetch_bounces

    esp = load_esp_settings(store) if source is None else None
    if esp is not None and settings_mod.load_bounce_settings(store) is None:
        events = _sync(store)  # an ESP and no mailbox: the ESP is the bounce source
        _report_events(events, as_json)
        return
    report = fetch_bounces(store, source_path=source, deadline=deadline,
                           max_message_bytes=int(max_mb * 1024 * 1024))
    for skipped in report.skipped:
        say(f"skipped UID {skipped.uid}" + (f" ({skipped.size} bytes)" if skipped.size is not None else "")
            + f": {skipped.why}; left in the folder")
    events = _sync(store) if esp is not None else None
    if as_json:
        emit_json({**report.to_dict(), **({"esp": events.to_dict()} if events is not None else {})})
        return
    if events is not None:
        _report_events(events, False)
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(report.bounces.items()))
    say(f"fetched {report.fetched} new message(s)" + (f": {kinds}" if kinds else "")
        + (f" ({report.duplicates} already seen)" if report.duplicates else "")
        + (f"; {report.unmatched} match no delivery of ours (`bounces list --unmatched`)" if report.unmatched else ""))
    for email, campaign in report.unsubscribed:
        say(f"unsubscribed: {email}" + (f" from {campaign}" if campaign else ""))
    for email in report.suppressed:
        say(f"suppressed: {email}")


def _report_events(report: Any, as_json: bool) -> None:
    shown = settings_mod.printable  # ids and file names come from outside: escaped
    for refusal in report.refusals:
        say(f"refused: {refusal['provider']} {shown(refusal['event_id'])}: {refusal['why']}")
    for error in report.errors:
        say(f"error: {shown(error)}")
    if as_json:
        emit_json(report.to_dict())
    else:
        say(report.summary())
    for email in report.suppressed:
        say(f"suppressed: {email}")


@bounces.command("import-events")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help='Print {"read", "recorded", "matched", "unmatched", "refused", ...} as JSON.')
@pass_store
def bounces_import_events(store: Store, paths: tuple[Path, ...], as_json: bool) -> None:
    """Record ESP events saved as JSON (SES/SNS, SendGrid, Mailgun, Postmark; files, NDJSON, folders).

    Signed events are checked; importing the same files again records nothing new. Exit 1 when
    a file could not be read or an event was refused.
    """
    from .esp import import_events

    report = import_events(store, paths)
    _report_events(report, as_json)
    if report.errors or report.refused:
        sys.exit(1)


def _sync(store: Store) -> Any:
    from .esp import sync_events

    return sync_events(store)


@bounces.command("sync")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"read", "recorded", "matched", "unmatched", "refused", ...} as JSON.')
@pass_existing_store
def bounces_sync(store: Store, as_json: bool) -> None:
    """Pull new bounce and complaint events from the ESP of `settings esp` (for cron; no listener).

    Only what is new since the last sync is read; running it again records nothing twice.
    Exit 75 when the provider's API is down or throttling: run it again later.
    """
    report = _sync(store)
    _report_events(report, as_json)
    if report.errors:
        sys.exit(1)


@bounces.command("list")
@click.option("--unmatched", is_flag=True,
              help="Only reports that match no delivery we made (not counted unless --count-unmatched).")
@click.option("--limit", type=int, default=None, metavar="N", help="At most N, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON list on stdout.")
@pass_existing_store
def bounces_list(store: Store, unmatched: bool, limit: int | None, as_json: bool) -> None:
    """List recorded bounces, newest first; --unmatched: those that match no delivery we made."""
    from .bounces.record import list_bounces

    rows = list_bounces(store, unmatched=unmatched, limit=limit)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        how = row["matched_by"] or "unmatched"
        click.echo(f"{row['bounced_at']}\t{row['address']}\t{row['kind']}\t{row['status'] or '-'}\t"
                   f"{row['campaign'] or '-'}\t{how}")
    say(f"{len(rows)} {'unmatched ' if unmatched else ''}bounce(s)")


@cli.group()
def suppressions() -> None:
    """Addresses suppressed after too many bounces (never mixed with unsubscribes)."""


@suppressions.command("list")
@click.option("--status", type=click.Choice(["threshold", "manual", "smtp"]),
              help="Only those suppressed after bounces (threshold), by hand, or on an SMTP refusal.")
@_page_options
@pass_existing_store
def suppressions_list(store: Store, status: str | None, limit: int | None, since: str | None, as_json: bool) -> None:
    """List suppressed addresses, oldest first, since when, and how many bounces put them there
    (JSON: with the evidence)."""
    from .suppressions import count_suppressions, iter_suppressions

    total = count_suppressions(store, reason=status, since=since)
    rows = iter_suppressions(store, reason=status, since=since, limit=_limit(limit, as_json))
    stream_rows(rows, total, _limit(limit, as_json), as_json,
                lambda row: f"{row['address']}\t{row['since']}\t{row['bounces']} bounce(s)\t{row['reason']}",
                "suppressed address(es)")


@suppressions.command("remove")
@click.argument("address")
@click.option("--by", help="Who lifts it (kept in the audit trail).")
@pass_existing_store
def suppressions_remove(store: Store, address: str, by: str | None) -> None:
    """Lift the suppression of ADDRESS (kept in the audit trail); new bounces count again."""
    from .suppressions import remove_suppression

    remove_suppression(store, address, by=by)
    say(f"{address.strip().lower()} is no longer suppressed")


# --- review ---------------------------------------------------------------------------------


@cli.group()
def review() -> None:
    """Take the review tables away for a data team (DuckDB, Spark, a BI tool)."""


@review.command("export")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True,
              help="File format of every table.")
@click.option("--json", "as_json", is_flag=True, help='Print {"folder", "format", "tables": {name: {"file", "rows"}}}.')
@pass_existing_store
def review_export(store: Store, folder: Path, fmt: str, as_json: bool) -> None:
    """Write deliveries, bounces, suppressions and every review table to DIR, one file per table."""
    from .export import export_review

    report = export_review(store, folder, format=fmt)
    if as_json:
        emit_json(report.to_dict())
        return
    for name, rows in report.tables.items():
        click.echo(f"{report.path(name)}\t{rows} rows")
    say(f"{len(report.tables)} tables written to {report.folder} ({fmt})")


# --- store: backup, info, prune -------------------------------------------------------------


@cli.group("store")
def store_group() -> None:
    """Back up the store, see what it holds, prune old campaigns' per-delivery detail."""


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


@store_group.command("backup")
@click.argument("dest", metavar="DEST", type=click.Path())  # a str: "DIR/" must keep its slash
@click.option("--force", is_flag=True, help="Replace DEST when it exists.")
@click.option("--json", "as_json", is_flag=True, help='Print {"path", "bytes", "at", "integrity"} as JSON.')
@pass_existing_store
def store_backup(store: Store, dest: str, force: bool, as_json: bool) -> None:
    """Copy the store to DEST (a file, or a folder for a dated file), consistently, even while a
    send runs. Restore by copying the file back while nothing uses the store."""
    from .maintenance import backup_store

    report = backup_store(store, dest, force=force)
    if as_json:
        emit_json(report.to_dict())
        return
    say(f"backup written: {report.path} ({_size(report.bytes)}, integrity {report.integrity})")


@store_group.command("info")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"path", "bytes", "wal_bytes", "free_bytes", "schema_version", "tables", '
                   '"last_backup", "last_prune"} as JSON.')
@pass_existing_store
def store_info_cmd(store: Store, as_json: bool) -> None:
    """File size, rows per table, schema version, last backup and prune."""
    from .maintenance import store_info

    info = store_info(store)
    if as_json:
        emit_json(info)
        return
    click.echo(f"store\t{info['path']}")
    click.echo(f"size\t{_size(info['bytes'])} (+ {_size(info['wal_bytes'])} wal, {_size(info['free_bytes'])} free inside)")
    click.echo(f"schema\tversion {info['schema_version']}")
    backup = info["last_backup"]
    click.echo(f"last backup\t{backup['at'] + ' to ' + backup['path'] if backup else 'never'}")
    prune = info["last_prune"]
    click.echo(f"last prune\t{prune['at'] + ' (before ' + prune['before'] + ')' if prune else 'never'}")
    for name, rows in info["tables"].items():
        click.echo(f"{name}\t{rows} rows")


@store_group.command("prune")
@click.option("--before", required=True, metavar="DATE",
              help="Prune campaigns finished before this date (YYYY-MM-DD, UTC midnight).")
@click.option("--yes", is_flag=True, help="Do it; without --yes, only say what would go.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"before", "campaigns", "deleted", "kept", "bytes_before", "bytes_after", "dry_run"}.')
@pass_existing_store
def store_prune(store: Store, before: str, yes: bool, as_json: bool) -> None:
    """Delete the per-delivery detail of campaigns finished before DATE (their counts, bounces,
    suppressions and opt-outs stay) and give the space back. Back up first."""
    from .maintenance import prune_store

    report = prune_store(store, before, dry_run=not yes)
    if as_json:
        emit_json(report.to_dict())
        return
    names = ", ".join(report.campaigns[:10]) + (f" and {len(report.campaigns) - 10} more" if len(report.campaigns) > 10 else "")
    if not yes:
        say(f"would prune {len(report.campaigns)} campaign(s) finished before {report.before}"
            f"{': ' + names if names else ''}: {report.deleted} delivery rows deleted (kept in aggregate), "
            f"{report.kept} kept (addresses that bounced, unknown outcomes); run again with --yes")
        return
    say(f"pruned {len(report.campaigns)} campaign(s){': ' + names if names else ''}: {report.deleted} delivery "
        f"rows deleted, {report.kept} kept; {_size(report.bytes_before)} -> {_size(report.bytes_after)}")


# --- demo ---------------------------------------------------------------------------------


@cli.command("demo")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def demo_command(ctx: click.Context, as_json: bool) -> None:
    """The whole flow on local servers, nothing to configure: send, bounce, suppress.

    Starts a demo SMTP server on 127.0.0.1 that refuses some demo addresses and bounces
    others, sends a campaign to 50 demo contacts, fetches the bounces and suppresses.
    The store is --db / $NEWSLETTER_KIT_DB, else data/demo.db (never your default store);
    a store with your own SMTP settings is refused. Run it again to send a new campaign.
    """
    from . import demo

    obj = ctx.ensure_object(dict)
    if obj.get("db") is None:
        obj["db"] = demo.DEFAULT_DEMO_DB
    store = get_store(ctx)
    try:
        result = demo.run_demo(store, say=say)
    finally:
        demo.stop_demo_servers()
    if as_json:
        emit_json(result.to_dict())
        return
    for line in result.lines():
        click.echo(line)


def main() -> None:
    """Entry point of the console script."""
    cli(prog_name="newsletter-kit")
