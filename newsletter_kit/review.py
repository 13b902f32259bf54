"""Bounce review for analysts: pandas tables and matplotlib plots over the store.

SQL does the aggregation (SQLite groups a million deliveries faster than pandas can load them);
pandas only shapes the small results: types, day boundaries in the configured time zone, rates.
Nothing here writes to the store or touches the network. Times in the store are UTC ISO text
(``now_iso()``; bounce dates are normalised to it), so they sort and compare as strings.

Example::

    >>> import newsletter_kit as nk
    >>> store = nk.open_store(":memory:")
    >>> list(bounces_by_address(store).columns)[:4]
    ['email', 'hard', 'soft', 'policy']
    >>> threshold_what_if(store, max_threshold=3)["would_suppress"].tolist()
    [0, 0, 0]
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import clock, reasons
from .errors import ValidationError
from .escaping import html_text, plot_text
from .settings import load_smtp_settings, validate_timezone
from .store import SUMMARY_KINDS, Store
from .suppressions import ThresholdPolicy, counting_query  # ThresholdPolicy: re-exported

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "RFC3463_CLASSES",
    "RFC3463_CODES",
    "ThresholdPolicy",
    "bounces_by_address",
    "bounce_source",
    "bounces_by_day",
    "bounces_by_domain",
    "bounces_by_reason",
    "bounces_by_source",
    "bounces_by_status",
    "bounce_list",
    "campaign_forecast",
    "campaign_summary",
    "display_formats",
    "newly_suppressed",
    "policy_counts",
    "policy_would_suppress",
    "plot_bounce_rate_by_day",
    "plot_top_domains",
    "quota_by_day",
    "sender_problems",
    "status_meaning",
    "styled",
    "suppression_table",
    "threshold_counts",
    "threshold_what_if",
    "unmatched_bounces",
]

#: The kinds that get their own column in the per-address/domain/day tables; the rest is "other".
KIND_COLUMNS = SUMMARY_KINDS
#: Kinds that are delivery failures (what a bounce rate counts).
FAILURE_KINDS = ("hard", "soft", "policy")


# --- RFC 3463 enhanced status codes ----------------------------------------------------------

#: The class digit (first number) of an enhanced status code.
RFC3463_CLASSES = {
    "2": "Success",
    "4": "Persistent Transient Failure",
    "5": "Permanent Failure",
}

#: ``subject.detail`` → meaning: the whole RFC 3463 list, then the codes later RFCs registered
#: (IANA "SMTP Enhanced Status Codes" registry), which real servers quote just as often.
RFC3463_CODES: dict[str, str] = {
    # X.0 Other or Undefined Status
    "0.0": "Other undefined Status",
    # X.1 Addressing Status
    "1.0": "Other address status",
    "1.1": "Bad destination mailbox address",
    "1.2": "Bad destination system address",
    "1.3": "Bad destination mailbox address syntax",
    "1.4": "Destination mailbox address ambiguous",
    "1.5": "Destination address valid",
    "1.6": "Destination mailbox has moved, No forwarding address",
    "1.7": "Bad sender's mailbox address syntax",
    "1.8": "Bad sender's system address",
    # X.2 Mailbox Status
    "2.0": "Other or undefined mailbox status",
    "2.1": "Mailbox disabled, not accepting messages",
    "2.2": "Mailbox full",
    "2.3": "Message length exceeds administrative limit",
    "2.4": "Mailing list expansion problem",
    # X.3 Mail System Status
    "3.0": "Other or undefined mail system status",
    "3.1": "Mail system full",
    "3.2": "System not accepting network messages",
    "3.3": "System not capable of selected features",
    "3.4": "Message too big for system",
    "3.5": "System incorrectly configured",
    # X.4 Network and Routing Status
    "4.0": "Other or undefined network or routing status",
    "4.1": "No answer from host",
    "4.2": "Bad connection",
    "4.3": "Directory server failure",
    "4.4": "Unable to route",
    "4.5": "Mail system congestion",
    "4.6": "Routing loop detected",
    "4.7": "Delivery time expired",
    # X.5 Mail Delivery Protocol Status
    "5.0": "Other or undefined protocol status",
    "5.1": "Invalid command",
    "5.2": "Syntax error",
    "5.3": "Too many recipients",
    "5.4": "Invalid command arguments",
    "5.5": "Wrong protocol version",
    # X.6 Message Content or Media Status
    "6.0": "Other or undefined media error",
    "6.1": "Media not supported",
    "6.2": "Conversion required and prohibited",
    "6.3": "Conversion required but not supported",
    "6.4": "Conversion with loss performed",
    "6.5": "Conversion Failed",
    # X.7 Security or Policy Status
    "7.0": "Other or undefined security status",
    "7.1": "Delivery not authorized, message refused",
    "7.2": "Mailing list expansion prohibited",
    "7.3": "Security conversion required but not possible",
    "7.4": "Security features not supported",
    "7.5": "Cryptographic failure",
    "7.6": "Cryptographic algorithm not supported",
    "7.7": "Message integrity failure",
    # Registered after RFC 3463 (RFC 3886, 4468, 4954, 5248, 6531, 6710, 7293, 7372, 7505).
    "1.9": "Message relayed to non-compliant mailer",
    "1.10": "Recipient address has null MX",
    "3.6": "Requested priority was changed",
    "5.6": "Authentication Exchange line is too long",
    "6.6": "Message content not available",
    "6.7": "Non-ASCII addresses not permitted for that sender/recipient",
    "6.8": "UTF-8 string reply is required, but not permitted by the SMTP client",
    "6.9": "UTF-8 header message cannot be transferred to one or more recipients",
    "7.8": "Authentication credentials invalid",
    "7.9": "Authentication mechanism is too weak",
    "7.10": "Encryption Needed",
    "7.11": "Encryption required for requested authentication mechanism",
    "7.12": "A password transition is needed",
    "7.13": "User Account Disabled",
    "7.14": "Trust relationship required",
    "7.15": "Priority Level is too low",
    "7.16": "Message is too big for the specified priority",
    "7.17": "Mailbox owner has changed",
    "7.18": "Domain owner has changed",
    "7.19": "RRVS test cannot be completed",
    "7.20": "No passing DKIM signature found",
    "7.21": "No acceptable DKIM signature found",
    "7.22": "No valid author-matched DKIM signature found",
    "7.23": "SPF validation failed",
    "7.24": "SPF validation error",
    "7.25": "Reverse DNS validation failed",
    "7.26": "Multiple authentication checks failed",
    "7.27": "Sender address has null MX",
}


def status_meaning(code: str | None) -> str | None:
    """The meaning of an enhanced status code (RFC 3463), or None when it is not one.

    An unlisted detail falls back to the subject's "other" meaning, as RFC 3463 asks receivers to.

    Example::

        >>> status_meaning("5.1.1")
        'Bad destination mailbox address'
        >>> status_meaning("4.2.2")
        'Mailbox full'
        >>> status_meaning("5.7.99")
        'Other or undefined security status'
    """
    if not isinstance(code, str) or not code:
        return None
    parts = code.strip().split(".")
    if len(parts) != 3 or parts[0] not in RFC3463_CLASSES or not all(p.isdigit() for p in parts[1:]):
        return None
    subject, detail = str(int(parts[1])), str(int(parts[2]))
    return RFC3463_CODES.get(f"{subject}.{detail}") or RFC3463_CODES.get(f"{subject}.0")


def _status_class(code: str | None) -> str | None:
    if not isinstance(code, str) or status_meaning(code) is None:
        return None
    return RFC3463_CLASSES[code.strip()[0]]


# --- helpers ---------------------------------------------------------------------------------


def _query(store: Store, sql: str, params: Any = ()) -> pd.DataFrame:
    return pd.read_sql_query(sql, store.conn, params=params)


def _kind_sums(alias: str = "") -> str:
    """``SUM(kind = 'hard') AS hard, ...`` for the kind columns, plus ``other`` and ``total``."""
    col = f"{alias}kind"
    sums = [f"SUM({col} = '{k}') AS {k}" for k in KIND_COLUMNS]
    listed = ", ".join(f"'{k}'" for k in KIND_COLUMNS)
    sums.append(f"SUM({col} NOT IN ({listed})) AS other")
    sums.append("COUNT(*) AS total")
    return ",\n               ".join(sums)


def _ints(df: pd.DataFrame, columns: list[str] | tuple[str, ...]) -> pd.DataFrame:
    for column in columns:
        df[column] = df[column].fillna(0).astype("int64")
    return df


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True, format="ISO8601")


def _zone(store: Store, tz: str | None) -> str:
    """The zone days are counted in: ``tz``, else the SMTP settings' zone (the quota's), else UTC."""
    if tz:
        return validate_timezone(tz)
    smtp = load_smtp_settings(store)
    return smtp.timezone if smtp and smtp.timezone else "UTC"


def _first_last(store: Store, table: str, column: str) -> tuple[str | None, str | None]:
    """The earliest and latest value of an indexed time column (two index probes)."""
    first = store.conn.execute(f"SELECT MIN({column}) FROM {table} WHERE {column} IS NOT NULL").fetchone()[0]
    last = store.conn.execute(f"SELECT MAX({column}) FROM {table}").fetchone()[0]
    return first, last


def _local_day_bounds(zone: str, *spans: tuple[str | None, str | None]) -> tuple[list[dt.date], list[str]]:
    """Every calendar day of ``zone`` the spans touch, and its local midnights as UTC text.

    ``bounds[i] <= t < bounds[i + 1]`` is day ``i``; the bounds are in the store's format, so
    SQLite compares them with the stored times as strings and answers from an index.
    """
    ends = [t for span in spans for t in span if t]
    if not ends:
        return [], []
    stamps = _utc(pd.Series(ends)).dt.tz_convert(zone)
    days = pd.date_range(stamps.min().date(), stamps.max().date(), freq="D")
    edges = days.append(days[-1:] + pd.Timedelta(days=1))
    edges = edges.tz_localize(zone, nonexistent="shift_forward", ambiguous=[True] * len(edges))
    return list(days.date), list(edges.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S+00:00"))


def _sent_per_day(store: Store, days: list[dt.date], bounds: list[str]) -> pd.DataFrame:
    """Ledger rows sent per day: one range count each on the (sent_at, state) index.

    A GROUP BY over a million rows would sort them all; these read each index entry once.
    """
    sql = "SELECT COUNT(*) FROM deliveries WHERE sent_at >= ? AND sent_at < ? AND state = 'sent'"
    counts = [store.conn.execute(sql, (lo, hi)).fetchone()[0] for lo, hi in zip(bounds[:-1], bounds[1:])]
    # Rows `store prune` deleted are counted per UTC hour sent (a zone off by half an hour
    # shifts them by that much).
    if store.conn.execute("SELECT 1 FROM pruned_deliveries WHERE state = 'sent' LIMIT 1").fetchone():
        pruned = ("SELECT coalesce(SUM(count), 0) FROM pruned_deliveries WHERE state = 'sent'"
                  " AND hour >= substr(?, 1, 13) AND hour < substr(?, 1, 13)")
        counts = [n + store.conn.execute(pruned, (lo, hi)).fetchone()[0]
                  for n, lo, hi in zip(counts, bounds[:-1], bounds[1:])]
    return pd.DataFrame({"day": pd.Series(days, dtype="object"), "sent": pd.Series(counts, dtype="int64")})


def _bounces_per_day(store: Store, days: list[dt.date], bounds: list[str]) -> pd.DataFrame:
    """Bounces per day and kind: one range query each on the (bounced_at, kind) index."""
    sql = "SELECT kind, COUNT(*) FROM bounces WHERE bounced_at >= ? AND bounced_at < ? GROUP BY kind"
    rows = [(day, kind, n) for day, lo, hi in zip(days, bounds[:-1], bounds[1:])
            for kind, n in store.conn.execute(sql, (lo, hi))]
    long = pd.DataFrame(rows, columns=["day", "kind", "n"])
    long["kind"] = long["kind"].where(long["kind"].isin(KIND_COLUMNS), "other")
    wide = long.pivot_table(index="day", columns="kind", values="n", aggfunc="sum", fill_value=0)
    wide = wide.reindex(index=pd.Index(days, dtype="object", name="day"), columns=[*KIND_COLUMNS, "other"],
                        fill_value=0)
    wide["total"] = wide.sum(axis=1)
    return wide.reset_index().rename_axis(columns=None)


def _domain_sql(column: str) -> str:
    return f"substr({column}, instr({column}, '@') + 1)"


# --- per address, domain, status, day ---------------------------------------------------------


def bounces_by_address(store: Store, *, top: int | None = None) -> pd.DataFrame:
    """One row per bouncing address: bounces per kind, first/last bounce, the last one's status.

    ``top=N``: only the N addresses with the most bounces, read from an index (the cost of N
    rows, whatever the history), with ``df.attrs["rows"]`` the number of bouncing addresses;
    without it, the whole frame.

    Columns: email, hard, soft, policy, delayed, complaint, other, total, first_bounce,
    last_bounce (UTC timestamps), last_kind, last_status, last_diagnostic, suppressed (bool).
    (Each bounce's reason: :func:`bounce_list`, :func:`bounces_by_reason`.)
    The last bounce is the one with the latest date (of two on the same second, the first
    recorded). Each row of ``bounces`` is one report for one address, so a report fetched twice
    counts once. Sorted by total, most bounces first, then by address.

    Example::

        >>> bounces_by_address(store).head()          # doctest: +SKIP
    """
    # bounce_addresses is this table pre-aggregated (store triggers keep it equal to a GROUP BY
    # over bounces), stored in email order: a stable sort on the total gives (total desc, email).
    columns = (f"email, {', '.join(KIND_COLUMNS)}, other, total, first_bounce, last_bounce, last_kind,"
               " last_status, last_diagnostic, email IN (SELECT email FROM suppressions) AS suppressed")
    if top is not None:
        df = _query(store, f"SELECT {columns} FROM bounce_addresses ORDER BY total DESC, email LIMIT ?",
                    (max(0, int(top)),))
    else:
        df = _query(store, f"SELECT {columns} FROM bounce_addresses ORDER BY email")
    df = _ints(df, [*KIND_COLUMNS, "other", "total"])
    df["first_bounce"] = _utc(df["first_bounce"])
    df["last_bounce"] = _utc(df["last_bounce"])
    df["suppressed"] = df["suppressed"].astype(bool)
    if top is None:
        order = (-df["total"].to_numpy()).argsort(kind="stable")
        df = df.take(order).reset_index(drop=True)
        df.attrs["rows"] = len(df)
    else:
        df.attrs["rows"] = store.conn.execute("SELECT count(*) FROM bounce_addresses").fetchone()[0]
    return df


def bounces_by_domain(store: Store, *, with_sent: bool = False) -> pd.DataFrame:
    """One row per recipient domain: bouncing addresses, bounces per kind, suppressed addresses.

    Columns: domain, addresses (distinct bouncing), hard, soft, policy, delayed, complaint,
    other, total, suppressed (addresses), and with ``with_sent`` also sent (addresses sent to)
    and bounce_rate (addresses with a failure / addresses sent to). ``with_sent`` reads an
    index of every sent delivery (a tenth of a second at a million), so it is off by default.
    Sorted by total, most bounces first.

    Example::

        >>> bounces_by_domain(store).head(10)          # doctest: +SKIP
    """
    domain = _domain_sql("email")
    # From the per-address summary (one row per bouncing address), no DISTINCT needed.
    kinds = [*KIND_COLUMNS, "other", "total"]
    df = _query(store, f"""
        SELECT {domain} AS domain, COUNT(*) AS addresses,
               SUM({" + ".join(FAILURE_KINDS)} > 0) AS failed_addresses,
               {", ".join(f"SUM({k}) AS {k}" for k in kinds)}
        FROM bounce_addresses GROUP BY domain
    """)
    suppressed = _query(store, f"SELECT {domain} AS domain, COUNT(*) AS suppressed FROM suppressions GROUP BY domain")
    df = df.merge(suppressed, on="domain", how="left")
    if with_sent:
        sent = _query(store, f"""
            SELECT {domain} AS domain, COUNT(DISTINCT email) AS sent
            FROM deliveries WHERE state = 'sent' GROUP BY domain
        """)
        df = df.merge(sent, on="domain", how="left")
        df = _ints(df, ["sent"])
        df["bounce_rate"] = df["failed_addresses"] / df["sent"].where(df["sent"] > 0)
    df = _ints(df, ["addresses", "failed_addresses", *KIND_COLUMNS, "other", "total", "suppressed"])
    return df.sort_values(["total", "domain"], ascending=[False, True], ignore_index=True)


def _reason_filter(reason: str | list[str] | None, side: str | None) -> tuple[str, list[Any]]:
    """``WHERE`` text and parameters keeping the bounces of ``reason`` (a name or names) and/or of
    ``side`` (recipient, sender, unclear, none); rows without a reason count as ``undefined``."""
    clauses, params = [], []
    if reason is not None:
        names = [reason] if isinstance(reason, str) else list(reason)
        unknown = [n for n in names if n not in reasons.REASONS]
        if unknown:
            raise ValidationError(f"unknown reason {unknown[0]!r}: one of {', '.join(reasons.REASONS)}", "reason")
        clauses.append("coalesce(reason, 'undefined') IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(names))
    if side is not None:
        if side not in reasons.SIDES:
            raise ValidationError(f"unknown side {side!r}: one of {', '.join(reasons.SIDES)}", "side")
        names = [r.name for r in reasons.REASONS.values() if r.side == side]
        clauses.append("coalesce(reason, 'undefined') IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(names))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def bounces_by_status(store: Store, *, reason: str | list[str] | None = None,
                      side: str | None = None) -> pd.DataFrame:
    """One row per RFC 3463 status code seen in bounces, with its meaning.

    Columns: status (None for reports that gave none), class (Permanent/Persistent Transient
    Failure), meaning, addresses, hard, soft, policy, delayed, complaint, other, total.
    ``reason`` (a name of :mod:`newsletter_kit.reasons`, or a list) and ``side`` (recipient,
    sender, unclear, none) keep only those bounces.  Sorted by total, most bounces first.

    Example::

        >>> bounces_by_status(store, side="sender")[["status", "meaning", "total"]]   # doctest: +SKIP
    """
    where, params = _reason_filter(reason, side)
    df = _query(store, f"""
        SELECT status, COUNT(DISTINCT email) AS addresses, {_kind_sums()}
        FROM bounces{where} GROUP BY status
    """, params)
    df = _ints(df, ["addresses", *KIND_COLUMNS, "other", "total"])
    df.insert(1, "class", df["status"].map(_status_class))
    df.insert(2, "meaning", df["status"].map(status_meaning))
    return df.sort_values(["total", "status"], ascending=[False, True], ignore_index=True, na_position="last")


#: Where a bounce came from, as the review names it: the mailbox (IMAP or saved files), a 5xx
#: seen while sending, or an ESP's events.
SOURCE_NAMES = {"imap": "mailbox", "file": "mailbox", "smtp": "smtp"}


def bounce_source(source: str | None) -> str:
    """The review's name of a bounce's source: mailbox, smtp, ses, sendgrid, mailgun, postmark.

    >>> bounce_source("imap"), bounce_source("ses")
    ('mailbox', 'ses')
    """
    return SOURCE_NAMES.get(source or "", source or "unknown")


def bounces_by_source(store: Store) -> pd.DataFrame:
    """One row per source of bounces (mailbox, smtp, ses, sendgrid, mailgun, postmark).

    Columns: source, addresses, unmatched, hard, soft, policy, delayed, complaint, other, total.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> bounces_by_source(open_store(":memory:")).empty
        True
    """
    named = " ".join(f"WHEN '{raw}' THEN '{name}'" for raw, name in SOURCE_NAMES.items())
    df = _query(store, f"""
        SELECT CASE source {named} ELSE source END AS source, COUNT(DISTINCT email) AS addresses,
               SUM(unmatched) AS unmatched, {_kind_sums()}
        FROM bounces GROUP BY 1
    """)
    df = _ints(df, ["addresses", "unmatched", *KIND_COLUMNS, "other", "total"])
    return df.sort_values(["total", "source"], ascending=[False, True], ignore_index=True)


def bounces_by_day(store: Store, *, tz: str | None = None) -> pd.DataFrame:
    """Bounces received and messages sent per calendar day, and the day's bounce rate.

    Days are in ``tz``, else the SMTP settings' time zone (the quota's days), else UTC.
    Columns: day (datetime.date), hard, soft, policy, delayed, complaint, other, total, failures
    (hard + soft + policy), sent (ledger rows sent that day), bounce_rate (failures / sent: a
    daily indicator; a bounce usually arrives minutes after its message, rarely days). Every
    day from the first send or bounce to the last is listed, quiet days with zeros.

    Example::

        >>> bounces_by_day(store).tail(7)              # doctest: +SKIP
    """
    zone = _zone(store, tz)
    kinds = [*KIND_COLUMNS, "other", "total"]
    pruned = store.conn.execute("SELECT MIN(hour) || ':00:00+00:00', MAX(hour) || ':00:00+00:00'"
                                " FROM pruned_deliveries WHERE state = 'sent'").fetchone()
    days, bounds = _local_day_bounds(zone, _first_last(store, "bounces", "bounced_at"),
                                     _first_last(store, "deliveries", "sent_at"), tuple(pruned))
    df = _bounces_per_day(store, days, bounds).merge(_sent_per_day(store, days, bounds), on="day")
    df = _ints(df, [*kinds, "sent"])
    df.insert(len(kinds) + 1, "failures", df[list(FAILURE_KINDS)].sum(axis=1).astype("int64"))
    df["bounce_rate"] = df["failures"] / df["sent"].where(df["sent"] > 0)
    return df.sort_values("day", ignore_index=True)


# --- campaigns, quota, forecast ------------------------------------------------------------------


def campaign_summary(store: Store) -> pd.DataFrame:
    """One row per campaign: ledger counts, bounced addresses, bounce rate, complaints, opt-outs.

    Columns: campaign, status, created_at, total (ledger rows), sent, failed (refused while
    sending), excluded, pending (pending, in flight or deferred), unknown, bounced (addresses with
    a hard/soft/policy bounce for this campaign, SMTP-time refusals included), hard, soft,
    policy, bounce_rate (bounced / (sent + failed)), complaints (addresses), unsubscribes (opt-outs
    that name this campaign; global opt-outs name none).
    A bounce belongs to the campaign of the delivery it matched; unmatched ones (the campaign
    stamp alone proves nothing) count for none: see :func:`unmatched_bounces`.

    Example::

        >>> campaign_summary(store)[["campaign", "sent", "bounce_rate"]]   # doctest: +SKIP
    """
    failures = ", ".join(f"'{k}'" for k in FAILURE_KINDS)
    # GROUP BY (campaign_id, state) follows the ledger's index: no sort of a million rows.
    # Rows `store prune` deleted are counted in pruned_deliveries.
    ledger = _query(store, "SELECT campaign_id, state, COUNT(*) AS n FROM deliveries GROUP BY campaign_id, state"
                           " UNION ALL SELECT campaign_id, state, SUM(count) FROM pruned_deliveries"
                           " GROUP BY campaign_id, state")
    ledger["state"] = ledger["state"].replace({"inflight": "pending", "claimed": "pending", "deferred": "pending"})
    ledger = ledger.pivot_table(index="campaign_id", columns="state", values="n", aggfunc="sum", fill_value=0)
    ledger = ledger.reindex(columns=["sent", "failed", "excluded", "pending", "unknown"], fill_value=0)
    ledger.insert(0, "total", ledger.sum(axis=1))
    # The recorder stamps each bounce with its delivery's campaign (an unmatched one with the
    # campaign its report claims, hence unmatched = 0). Both walk the (campaign, kind, email)
    # index, already in the order they group by.
    by_kind = _query(store, """
        SELECT campaign AS name, kind, COUNT(DISTINCT email) AS n FROM bounces
        WHERE campaign IN (SELECT name FROM campaigns) AND unmatched = 0 GROUP BY campaign, kind
    """)
    failed = _query(store, f"""
        SELECT campaign AS name, COUNT(DISTINCT email) AS bounced FROM bounces
        WHERE kind IN ({failures}) AND campaign IN (SELECT name FROM campaigns) AND unmatched = 0
        GROUP BY campaign
    """)
    by_kind = by_kind.pivot_table(index="name", columns="kind", values="n", aggfunc="sum", fill_value=0)
    by_kind = by_kind.reindex(columns=["hard", "soft", "policy", "complaint"], fill_value=0)
    bounced = failed.merge(by_kind.rename(columns={"complaint": "complaints"}).reset_index(), on="name", how="outer")
    optouts = _query(store, """
        SELECT campaign AS name, COUNT(*) AS unsubscribes FROM unsubscribes
        WHERE campaign IS NOT NULL GROUP BY campaign
    """)
    df = _query(store, "SELECT id AS campaign_id, name AS campaign, status, created_at FROM campaigns ORDER BY id")
    df = df.merge(ledger.reset_index(), on="campaign_id", how="left").drop(columns="campaign_id")
    df = df.merge(bounced.rename(columns={"name": "campaign"}), on="campaign", how="left")
    df = df.merge(optouts.rename(columns={"name": "campaign"}), on="campaign", how="left")
    counts = ["total", "sent", "failed", "excluded", "pending", "unknown", "bounced", "hard", "soft",
              "policy", "complaints", "unsubscribes"]
    df = _ints(df, counts)
    df["created_at"] = _utc(df["created_at"])
    attempted = df["sent"] + df["failed"]
    df.insert(df.columns.get_loc("policy") + 1, "bounce_rate", df["bounced"] / attempted.where(attempted > 0))
    return df


def quota_by_day(store: Store, *, tz: str | None = None) -> pd.DataFrame:
    """Per calendar day: what the quota counted, what the ledger says was sent, and the limit.

    Columns: day (datetime.date), used (accepted recipients the quota counted), reserved (held by
    running senders), sent (ledger rows sent that day, in the same zone), limit (today's daily
    limit from the SMTP settings; NA without settings), remaining, share_used (used / limit).

    Example::

        >>> quota_by_day(store).tail(7)                # doctest: +SKIP
    """
    zone = _zone(store, tz)
    quota = _query(store, "SELECT day, used, reserved FROM quota_days")
    quota["day"] = pd.to_datetime(quota["day"], format="%Y-%m-%d").dt.date
    days, bounds = _local_day_bounds(zone, _first_last(store, "deliveries", "sent_at"))
    df = quota.merge(_sent_per_day(store, days, bounds), on="day", how="outer")
    df = _ints(df, ["used", "reserved", "sent"])
    smtp = load_smtp_settings(store)
    limit = smtp.daily_limit if smtp else None
    df["limit"] = pd.array([limit] * len(df), dtype="Int64")
    df["remaining"] = (df["limit"] - df["used"] - df["reserved"]).clip(lower=0)
    df["share_used"] = df["used"] / df["limit"].astype("Float64")
    return df.sort_values("day", ignore_index=True)


def campaign_forecast(store: Store, *, now: dt.datetime | None = None) -> pd.DataFrame:
    """Each campaign's expected finish date at the current daily limit.

    The send path's own rule (what :func:`newsletter_kit.campaigns.forecast_finish` does:
    today's remaining quota, then the full limit per day, as if the campaign had the quota to
    itself), with each campaign's status computed once. Columns: campaign, status, pending
    (recipients still to send, audience evaluated now), finish (datetime.date; None when nothing
    is left). A ``done`` campaign is finished: pending 0, finish None, without recomputing it.

    Example::

        >>> campaign_forecast(store)                   # doctest: +SKIP
    """
    from . import progress, quota  # late: the review needs them only here

    df = _query(store, "SELECT name AS campaign, status FROM campaigns ORDER BY id")
    open_ = ~df["status"].isin(["done", "pruned"])
    pending = {name: progress.campaign_status(store, name)["pending"] for name in df.loc[open_, "campaign"]}
    df["pending"] = pd.Series([pending.get(name, 0) for name in df["campaign"]], index=df.index, dtype="int64")
    # Without SMTP settings there is no limit to forecast with: finish stays None.
    has_limit = any(pending.values()) and load_smtp_settings(store) is not None
    status = quota.quota_status(store, now=now) if has_limit else None
    df["finish"] = pd.Series(
        [quota.forecast_date(status, n) if status is not None and n else None for n in df["pending"]],
        index=df.index, dtype="object")
    return df


# --- reasons: whom a failure is about -------------------------------------------------------------


def bounces_by_reason(store: Store, *, side: str | None = None, reason: str | list[str] | None = None) -> pd.DataFrame:
    """One row per reason a delivery failed (:mod:`newsletter_kit.reasons`), with whom it is about.

    Columns: reason, side (recipient: counts toward the address; sender: about us, never
    counts; unclear; none: complaints and other non-failures), count (bounces), addresses,
    campaigns (their names, comma-separated), first_seen, last_seen (UTC), description,
    remedy (what to do about a sender-side reason).  ``side``/``reason`` keep only those.
    Sorted by count, most first.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> list(bounces_by_reason(open_store(":memory:")).columns)[:4]
        ['reason', 'side', 'count', 'addresses']
    """
    where, params = _reason_filter(reason, side)
    df = _query(store, f"""
        SELECT coalesce(reason, 'undefined') AS reason, COUNT(*) AS count, COUNT(DISTINCT email) AS addresses,
               json_group_array(DISTINCT campaign) AS campaigns, MIN(bounced_at) AS first_seen,
               MAX(bounced_at) AS last_seen
        FROM bounces{where} GROUP BY coalesce(reason, 'undefined')
    """, params)
    df = _ints(df, ["count", "addresses"])
    df.insert(1, "side", df["reason"].map(reasons.side).astype("object"))
    df["campaigns"] = [", ".join(sorted(str(c) for c in json.loads(names) if c is not None))
                       for names in df["campaigns"]]
    df["first_seen"] = _utc(df["first_seen"])
    df["last_seen"] = _utc(df["last_seen"])
    df["description"] = [reasons.REASONS[r].description if r in reasons.REASONS else "" for r in df["reason"]]
    df["remedy"] = df["reason"].map(reasons.remedy).astype("object")
    return df.sort_values(["count", "reason"], ascending=[False, True], ignore_index=True)


def sender_problems(store: Store) -> pd.DataFrame:
    """The failures about *us* (our IP, domain, authentication, content, rate...), with the
    remedy: recorded and shown here, never counted against the recipients they name.

    Columns: reason, count (bounces), campaigns, last_seen (UTC), remedy, addresses,
    description.  Sorted by count, most first.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> list(sender_problems(open_store(":memory:")).columns)[:5]
        ['reason', 'count', 'campaigns', 'last_seen', 'remedy']
    """
    df = bounces_by_reason(store, side=reasons.SENDER)
    return df[["reason", "count", "campaigns", "last_seen", "remedy", "addresses", "description"]]


def bounce_list(store: Store, *, reason: str | list[str] | None = None, side: str | None = None,
                limit: int | None = 1000) -> pd.DataFrame:
    """The recorded bounces, newest first, with their reason and side; ``reason``/``side`` keep
    only those, ``limit`` caps the rows (None: all).

    Columns: id, email, kind, reason, side, status, diagnostic, campaign, bounced_at (UTC),
    matched (bool).

    Example::

        >>> from newsletter_kit.store import open_store
        >>> bounce_list(open_store(":memory:"), side="sender").empty
        True
    """
    where, params = _reason_filter(reason, side)
    cap = ""
    if limit is not None:
        cap = " LIMIT ?"
        params.append(int(limit))
    df = _query(store, f"""
        SELECT id, email, kind, coalesce(reason, 'undefined') AS reason, status, diagnostic, campaign, bounced_at,
               unmatched = 0 AS matched
        FROM bounces{where} ORDER BY bounced_at DESC, id DESC{cap}
    """, params)
    df.insert(4, "side", df["reason"].map(reasons.side).astype("object"))
    df["bounced_at"] = _utc(df["bounced_at"])
    df["matched"] = df["matched"].astype(bool)
    return df


# --- suppressions -------------------------------------------------------------------------------


def suppression_table(store: Store) -> pd.DataFrame:
    """The suppressed addresses with their evidence, newest first.

    Columns: email, since (UTC timestamp), reason (threshold | complaint | manual | smtp), bounce_count,
    kinds (e.g. ``"hard×2, soft×1"``), statuses (distinct status codes), first_evidence,
    last_evidence (the bounce dates the evidence lists), evidence (the list of dicts as stored).

    Example::

        >>> suppression_table(store)[["email", "since", "kinds"]]   # doctest: +SKIP
    """
    df = _query(store, "SELECT email, since, reason, bounce_count, evidence FROM suppressions ORDER BY since DESC, email")
    evidence = [json.loads(text or "[]") for text in df["evidence"]]
    df["evidence"] = pd.Series(evidence, index=df.index, dtype="object")
    df["since"] = _utc(df["since"])
    df["bounce_count"] = df["bounce_count"].astype("int64")
    df.insert(4, "kinds", [_kinds_text(items) for items in evidence])
    df.insert(5, "statuses", [_statuses_text(items) for items in evidence])
    df.insert(6, "first_evidence", _evidence_dates(evidence, "min", df.index))
    df.insert(7, "last_evidence", _evidence_dates(evidence, "max", df.index))
    return df


def unmatched_bounces(store: Store) -> pd.DataFrame:
    """Bounce reports that match no delivery we made, newest first: forged or unrelated reports
    (an address never sent to, another sender's message), kept apart and counted toward the
    threshold only with ``settings bounce --count-unmatched``.

    Columns: id, address, kind, status, diagnostic, campaign, original_message_id, source,
    bounced_at (UTC), recorded_at (UTC), matched_by (None), matched (False); the rows of
    ``newsletter-kit bounces list --unmatched``.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> unmatched_bounces(open_store(":memory:")).empty
        True
    """
    from .bounces.record import _LIST_KEYS, list_unmatched

    df = pd.DataFrame(list_unmatched(store), columns=list(_LIST_KEYS))
    df["bounced_at"] = _utc(df["bounced_at"])
    df["recorded_at"] = _utc(df["recorded_at"])
    return df


def _kinds_text(items: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for item in items:
        kind = str(item.get("kind") or "?")
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{kind}×{n}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _statuses_text(items: list[dict[str, Any]]) -> str:
    return ", ".join(sorted({str(item["status"]) for item in items if item.get("status")}))


def _evidence_dates(evidence: list[list[dict[str, Any]]], pick: str, index: pd.Index) -> pd.Series:
    """The earliest (``pick="min"``) or latest bounce date each evidence list names, in UTC.

    All dates are parsed in one vectorised call: a store may hold tens of thousands of them.
    """
    rows = [(n, item.get("date") or item.get("bounced_at")) for n, items in enumerate(evidence) for item in items]
    flat = pd.DataFrame([r for r in rows if r[1]], columns=["row", "date"])
    result = pd.Series(pd.NaT, index=range(len(evidence)), dtype="datetime64[ns, UTC]")
    if not flat.empty:
        flat["date"] = _utc(flat["date"]).astype("datetime64[ns, UTC]")
        result.update(flat.groupby("row")["date"].agg(pick))
    return pd.Series(result.to_numpy(), index=index, dtype="datetime64[ns, UTC]")


# --- threshold what-if --------------------------------------------------------------------------


def _counts_sql(store: Store, *, count_policy: bool | None = None, stale_after_days: int | None = None,
                reset_on_success: bool | None = None, count_unmatched: bool | None = None,
                now: dt.datetime | None = None) -> tuple[str, list[Any]]:
    """Per address: counted bounces, first/last counted, suppressed (SQL and parameters)."""
    policy = ThresholdPolicy.from_store(store, count_policy=count_policy, stale_after_days=stale_after_days,
                                        reset_on_success=reset_on_success, count_unmatched=count_unmatched)
    moment = (now or clock.now()).astimezone(dt.timezone.utc).replace(microsecond=0)
    # The threshold's own rule, so what-if and apply agree (one count: hard and soft together).
    sql, params = counting_query(policy.single().replace(suppress_on_complaint=False), now=moment.isoformat())
    return f"""
        SELECT c.email, COUNT(*) AS counted, MIN(c.bounced_at) AS first_counted,
               MAX(c.bounced_at) AS last_counted, s.email IS NOT NULL AS suppressed
        FROM ({sql}) c LEFT JOIN suppressions s ON s.email = c.email
        GROUP BY c.email
    """, list(params)


def _count_histogram(store: Store, **policy: Any) -> pd.DataFrame:
    """How many addresses have each (counted, suppressed) pair: the what-if without the addresses."""
    sql, params = _counts_sql(store, **policy)
    df = _query(store, f"SELECT counted, suppressed, COUNT(*) AS n FROM ({sql}) GROUP BY counted, suppressed",
                params)
    df["suppressed"] = df["suppressed"].astype(bool)
    return df


def threshold_counts(store: Store, *, count_policy: bool | None = None,
                     stale_after_days: int | None = None, reset_on_success: bool | None = None,
                     count_unmatched: bool | None = None, now: dt.datetime | None = None) -> pd.DataFrame:
    """Per address, the bounces that count towards the threshold under the policy.

    Arguments left as None take the bounce settings' values (defaults without settings).
    Columns: email, counted, first_counted, last_counted (UTC), suppressed (already, bool).
    Sorted by counted, most first.

    Example::

        >>> threshold_counts(store, count_policy=True).head()   # doctest: +SKIP
    """
    df = _query(store, *_counts_sql(store, count_policy=count_policy, stale_after_days=stale_after_days,
                                    reset_on_success=reset_on_success, count_unmatched=count_unmatched, now=now))
    df["counted"] = df["counted"].astype("int64")
    df["first_counted"] = _utc(df["first_counted"])
    df["last_counted"] = _utc(df["last_counted"])
    df["suppressed"] = df["suppressed"].astype(bool)
    return df.sort_values(["counted", "email"], ascending=[False, True], ignore_index=True)


def threshold_what_if(store: Store, max_threshold: int = 10, *, counts: pd.DataFrame | None = None,
                      **policy: Any) -> pd.DataFrame:
    """For thresholds 1..max_threshold: how many addresses would be suppressed, how many are new.

    Columns: threshold, would_suppress (addresses whose counted bounces reach it), new (of those,
    the ones not suppressed today). :func:`newly_suppressed` lists the new ones for a threshold.
    ``counts`` (a :func:`threshold_counts` result) avoids querying again; ``policy`` are
    :func:`threshold_counts`'s keyword arguments.

    Example::

        >>> threshold_what_if(store, 5)                # doctest: +SKIP
           threshold  would_suppress  new
        0          1            1200  300
    """
    if max_threshold < 1:
        raise ValidationError("the largest threshold must be at least 1", "max_threshold")
    if counts is None:
        histogram = _count_histogram(store, **policy)
    else:
        histogram = counts.groupby(["counted", "suppressed"], as_index=False).size().rename(columns={"size": "n"})
    thresholds = pd.RangeIndex(1, max_threshold + 1)
    # How many addresses have exactly n counted bounces, then a reversed cumulative sum: >= n.
    every = histogram.groupby("counted")["n"].sum()
    fresh = histogram[~histogram["suppressed"]].groupby("counted")["n"].sum()
    top = max(max_threshold, int(histogram["counted"].max()) if len(histogram) else 0)
    full = pd.RangeIndex(1, top + 1)
    reach = every.reindex(full, fill_value=0)[::-1].cumsum()[::-1]
    reach_new = fresh.reindex(full, fill_value=0)[::-1].cumsum()[::-1]
    return pd.DataFrame({
        "threshold": thresholds.to_numpy(),
        "would_suppress": reach.reindex(thresholds).to_numpy(dtype="int64"),
        "new": reach_new.reindex(thresholds).to_numpy(dtype="int64"),
    })


def newly_suppressed(store: Store, threshold: int, *, counts: pd.DataFrame | None = None,
                     **policy: Any) -> list[str]:
    """The addresses a threshold would suppress that are not suppressed today, sorted.

    Example::

        >>> newly_suppressed(store, 3)                 # doctest: +SKIP
        ['anna@example.org', 'bruno@example.net']
    """
    if threshold < 1:
        raise ValidationError("the threshold must be at least 1", "threshold")
    if counts is None:
        counts = threshold_counts(store, **policy)
    chosen = counts[(counts["counted"] >= threshold) & ~counts["suppressed"]]
    return sorted(chosen["email"].tolist())


def policy_counts(store: Store, policy: ThresholdPolicy | None = None, *, now: dt.datetime | None = None,
                  **overrides: Any) -> pd.DataFrame:
    """Per address, what the per-kind policy counts and whether it would suppress: the what-if
    of the hard, soft (+window) and complaint thresholds.

    ``policy`` (default: the bounce settings' policy, or the defaults) with ``overrides`` of its
    fields (``hard_threshold=2``, ``soft_window_days=60``, ``suppress_on_complaint=False``...).
    Columns: email, hard, soft (within the soft window), soft_all, complaint, would_suppress
    (bool, under the policy, per kind or single), suppressed (already, bool).  Failures about the
    sender count nowhere.  Sorted by would_suppress, hard, soft, then email.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> list(policy_counts(open_store(":memory:")).columns)[:4]
        ['email', 'hard', 'soft', 'soft_all']
    """
    base = policy if policy is not None else ThresholdPolicy.from_store(store)
    rule = base.replace(**{k: v for k, v in overrides.items() if v is not None}) if overrides else base
    moment = (now or clock.now()).astimezone(dt.timezone.utc).replace(microsecond=0)
    sql, params = counting_query(rule.replace(suppress_on_complaint=True), now=moment.isoformat())
    df = _query(store, f"""
        SELECT c.email, SUM(c.counted_as = 'hard') AS hard, SUM(c.counted_as = 'soft' AND c.recent) AS soft,
               SUM(c.counted_as = 'soft') AS soft_all, SUM(c.counted_as = 'complaint') AS complaint,
               s.email IS NOT NULL AS suppressed
        FROM ({sql}) c LEFT JOIN suppressions s ON s.email = c.email
        GROUP BY c.email
    """, params)
    df = _ints(df, ["hard", "soft", "soft_all", "complaint"])
    df["suppressed"] = df["suppressed"].astype(bool)
    complaint = (df["complaint"] > 0) & rule.suppress_on_complaint
    if rule.per_kind:
        reach = (df["hard"] >= rule.hard) | (df["soft"] >= rule.soft)
    else:
        reach = (df["hard"] + df["soft_all"]) >= (rule.threshold or 1)
    df.insert(5, "would_suppress", (reach | complaint).astype(bool))
    return df.sort_values(["would_suppress", "hard", "soft", "email"], ascending=[False, False, False, True],
                          ignore_index=True)


def policy_would_suppress(store: Store, policy: ThresholdPolicy | None = None, *,
                          counts: pd.DataFrame | None = None, **overrides: Any) -> list[str]:
    """The addresses a policy (see :func:`policy_counts`) would suppress that are not
    suppressed today, sorted.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> policy_would_suppress(open_store(":memory:"), hard_threshold=2)
        []
    """
    if counts is None:
        counts = policy_counts(store, policy, **overrides)
    return sorted(counts.loc[counts["would_suppress"] & ~counts["suppressed"], "email"].tolist())


# --- plots --------------------------------------------------------------------------------------


def _axes(ax: Axes | None, size: tuple[float, float] = (8, 3.5)) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt  # late: importing pyplot picks a backend

    _, new_ax = plt.subplots(figsize=size)
    return new_ax


def _date_axis(ax: Axes, first: dt.date, last: dt.date) -> None:
    """Daily data on a readable x axis: limits around the data, ticks that fit, dates as dates.

    Matplotlib alone spreads one day over four years (a two-year margin each side) and writes
    every tick of a short span as a full timestamp. Here a span of up to two weeks gets one tick
    per day (or every other day), longer ones the automatic locator with concise labels (months,
    then the year once). Half a day of margin (at least 2% of the span) keeps end points visible.
    """
    import matplotlib.dates as mdates  # late: matplotlib is only needed when plotting

    start, end = pd.Timestamp(first), pd.Timestamp(last)
    span = end - start
    pad = max(pd.Timedelta(hours=12), span * 0.02)
    if span < pd.Timedelta(days=2):  # one or two days: show the neighbours for context
        pad = pd.Timedelta(days=1, hours=12)
    ax.set_xlim(mdates.date2num(start - pad), mdates.date2num(end + pad))
    if span <= pd.Timedelta(days=14):
        ax.xaxis.set_major_locator(mdates.DayLocator(interval=1 if span <= pd.Timedelta(days=7) else 2))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b"))
    else:
        locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    for label in ax.get_xticklabels():
        label.set_rotation(0)


def plot_bounce_rate_by_day(store: Store, *, ax: Axes | None = None, tz: str | None = None) -> Axes:
    """The daily bounce rate (failures / sent, :func:`bounces_by_day`) on the days with sends.

    Days without a send have no rate (a bounce arriving then belongs to an earlier send), so
    the line joins the days that have one. The x axis spans the days of the table, whether one
    or a year; the y axis is in percent from 0. Returns the matplotlib Axes (a notebook cell
    shows it; nothing calls ``plt.show``).

    Example::

        >>> plot_bounce_rate_by_day(store)             # doctest: +SKIP
    """
    from matplotlib.ticker import PercentFormatter  # late: matplotlib is only needed when plotting

    df = bounces_by_day(store, tz=tz)
    ax = _axes(ax)
    rated = df[df["bounce_rate"].notna()]
    ax.plot(pd.to_datetime(rated["day"]), rated["bounce_rate"] * 100,
            marker="o" if len(rated) <= 60 else None, markersize=4)
    ax.set_title("Bounce rate per day")
    ax.set_ylabel("failures / sent")
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=None))
    ax.set_ylim(bottom=0, top=max(1.0, float(rated["bounce_rate"].max() * 100 * 1.15) if len(rated) else 1.0))
    ax.grid(True, alpha=0.3)
    if not df.empty:
        _date_axis(ax, df["day"].iloc[0], df["day"].iloc[-1])
    return ax


def plot_top_domains(store: Store, n: int = 10, *, ax: Axes | None = None) -> Axes:
    """Horizontal bars of the ``n`` domains with the most bounces, stacked by kind.

    Example::

        >>> plot_top_domains(store, 15)                # doctest: +SKIP
    """
    df = bounces_by_domain(store, with_sent=False).head(n).iloc[::-1]
    ax = _axes(ax, (8, max(2.5, 0.35 * len(df) + 1)))
    left = pd.Series(0, index=df.index)
    labels = df["domain"].map(plot_text)  # a domain from a notice is text, not mathtext
    for kind in [*KIND_COLUMNS, "other"]:
        if df[kind].sum():
            ax.barh(labels, df[kind], left=left, label=kind)
            left = left + df[kind]
    ax.set_title(f"Top {n} bouncing domains")
    ax.set_xlabel("bounces")
    if len(df):
        ax.legend(loc="lower right")
    return ax


# --- display ------------------------------------------------------------------------------------

#: How dates and times read in a displayed table (the frames themselves keep their types).
DAY_FORMAT = "%a %d %b %Y"
TIME_FORMAT = "%d %b %Y %H:%M"
#: Columns shown in their own table elsewhere (the evidence list of each suppression).
HIDDEN_COLUMNS = ("evidence",)
#: What a missing value reads as in these columns (a blank cell would look like a lost label).
BLANK_WORDS = {"status": "(none given)", "meaning": "the report gave no status code (complaints, replies)",
               "class": "-", "campaign": "(no campaign)"}


def _is_share(column: str) -> bool:
    """A column holding a share between 0 and 1 (shown as a percentage)."""
    return column.endswith("_rate") or column.startswith("share_")


def display_formats(df: pd.DataFrame, *, tz: str = "UTC") -> dict[str, Any]:
    """How each column of a review table reads: one function per column, value → text.

    Timestamps in ``tz`` to the minute (``30 Nov 2026 10:47``), days as days (``Mon 30 Nov
    2026``), shares (``*_rate``, ``share_*``) as percentages (``16.7%``), counts with thousands
    separators, booleans as yes/no. Missing values are left to the caller (``na_rep``).

    Example::

        >>> frame = pd.DataFrame({"day": [dt.date(2026, 11, 30)], "bounce_rate": [1 / 6], "sent": [1200]})
        >>> [f(frame[c][0]) for c, f in display_formats(frame).items()]
        ['Mon 30 Nov 2026', '16.7%', '1,200']
    """
    formats: dict[str, Any] = {}
    for column in df.columns:
        series = df[column]
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            formats[column] = lambda v: v.tz_convert(tz).strftime(TIME_FORMAT)
        elif pd.api.types.is_datetime64_dtype(series.dtype):
            formats[column] = lambda v: v.strftime(TIME_FORMAT)
        elif pd.api.types.is_bool_dtype(series.dtype):
            formats[column] = lambda v: "yes" if v else "no"
        elif pd.api.types.is_float_dtype(series.dtype) and _is_share(str(column)):
            formats[column] = lambda v: f"{v:.1%}" if abs(v) >= 0.001 or v == 0 else f"{v:.2%}"
        elif pd.api.types.is_integer_dtype(series.dtype):
            formats[column] = lambda v: f"{v:,}"
        elif pd.api.types.is_float_dtype(series.dtype):
            formats[column] = lambda v: f"{v:,.3g}"
        elif series.dtype == object and any(isinstance(v, dt.date) for v in series.dropna().head(1)):
            formats[column] = lambda v: v.strftime(DAY_FORMAT) if isinstance(v, dt.date) else str(v)
    return formats


def styled(df: pd.DataFrame, *, store: Store | None = None, tz: str | None = None,
           max_rows: int | None = 200) -> Any:
    """A review table ready to read: a pandas ``Styler`` (a notebook cell renders it).

    The frame is left as it is (numbers stay numbers for sorting, filtering, export); only the
    display changes, with :func:`display_formats`: times in ``tz``, else the store's SMTP time
    zone (the days the quota counts), else UTC; rates as percentages; missing values blank;
    the evidence lists hidden. At most ``max_rows`` rows are rendered (a caption says how many
    there are); ``None`` renders all.

    Example::

        >>> styled(bounces_by_day(store), store=store)             # doctest: +SKIP
    """
    zone = _zone(store, tz) if store is not None else validate_timezone(tz) if tz else "UTC"
    shown = df if max_rows is None or len(df) <= max_rows else df.head(max_rows)
    styler = _escaped_style(shown, display_formats(shown, tz=zone))
    hidden = [c for c in HIDDEN_COLUMNS if c in shown.columns]
    styler = styler.hide(axis="index")
    if hidden:
        styler = styler.hide(subset=hidden, axis="columns")
    if len(shown) < len(df):
        styler = styler.set_caption(html_text(f"first {len(shown):,} of {len(df):,} rows"))
    for column, blank in BLANK_WORDS.items():  # a missing value that means something says what
        if column in shown.columns and shown[column].isna().any():
            styler = styler.format(html_text, na_rep=blank, subset=[column])
    long_text = [c for c in shown.columns if c not in hidden and shown[c].dtype == object
                 and shown[c].map(lambda v: isinstance(v, str) and len(v) > 40).any()]
    if long_text:  # one line each, cut with an ellipsis (the frame keeps the whole text)
        styler = styler.set_properties(subset=long_text, **{
            "max-width": "24em", "white-space": "nowrap", "overflow": "hidden", "text-overflow": "ellipsis"})
    return styler


def _escaped_style(df: pd.DataFrame, formats: dict[Any, Any]) -> Any:
    """``df.style`` whose every cell, column label and index label is HTML text.

    Each cell is formatted first (``formats``, else ``str``) and escaped after, so whatever a
    formatter makes of outside text (a notice's diagnostic, a contact field, an address) is
    shown as those characters, never run as markup nor typeset as math. Labels go through
    pandas' own escaping.
    """
    cells = {column: _then_escaped(formats.get(column)) for column in df.columns}
    styler = df.style.format(cells, na_rep="")
    styler = styler.format_index(escape="html", axis="index").format_index(escape="html", axis="columns")
    # "$...$" in a notice is not LaTeX: JupyterLab's MathJax skips elements of these classes.
    return styler.set_table_attributes('class="tex2jax_ignore mathjax_ignore"')


def _then_escaped(formatter: Any) -> Any:
    if formatter is None:
        return html_text
    return lambda value: html_text(formatter(value))


# --- the notebooks' small tables (a table where a dict or a list would print) --------------------


def settings_table(store: Store) -> pd.DataFrame:
    """The saved settings as a table: section, setting (the command line's flag), value;
    passwords masked.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> list(settings_table(open_store(":memory:")).columns)
        ['section', 'setting', 'value']
    """
    from .esp.config import show_all as show_settings

    rows = [(section, key, "" if value is None else str(value))
            for section, values in show_settings(store).items() if values
            for key, value in values.items()]
    return pd.DataFrame(rows, columns=["section", "setting", "value"])


def checks_table(results: list[tuple[bool, str]]) -> pd.DataFrame:
    """Connection checks (``check_smtp``, ``check_imap``) as a table: ok (bool), result.

    Example::

        >>> checks_table([(True, "SMTP server h:25: connected")])["ok"].tolist()
        [True]
    """
    return pd.DataFrame([(bool(ok), line) for ok, line in results], columns=["ok", "result"])


def status_table(store: Store, campaign: str) -> pd.DataFrame:
    """A campaign's progress as one row: campaign, total, sent, failed, excluded, pending,
    unknown, finish (the day it will be done at the current limit; None when done).

    Example::

        >>> status_table(store, "spring")                       # doctest: +SKIP
    """
    from . import progress

    counts = progress.campaign_status(store, campaign)
    finish = progress.forecast_finish(store, campaign) if counts["pending"] and load_smtp_settings(store) else None
    return pd.DataFrame([{"campaign": campaign, **counts, "finish": finish}])


def quota_table(store: Store) -> pd.DataFrame:
    """Today's quota as one row: day, limit, used, held (by running sends), remaining, resets
    (a time, shown in the settings' zone).

    Example::

        >>> quota_table(store)                                  # doctest: +SKIP
    """
    from .quota import quota_status

    status = quota_status(store)
    return pd.DataFrame([{"day": status.day, "limit": status.limit, "used": status.used, "held": status.reserved,
                          "remaining": status.remaining, "resets": pd.Timestamp(status.resets_at)}])


def reason_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Why contacts are left out, from an :func:`~newsletter_kit.audience.audience_frame`:
    reason, contacts (most first).

    Example::

        >>> reason_counts(pd.DataFrame({"reason": ["opted out", None, "opted out"]})).values.tolist()
        [['opted out', 2]]
    """
    counts = frame["reason"].dropna().value_counts()
    return pd.DataFrame({"reason": counts.index.astype(str), "contacts": counts.to_numpy(dtype="int64")})


def complaint_rates(store: Store) -> pd.DataFrame:
    """Spam complaints per campaign against the lines mailbox providers act on (0.1 %, 0.3 %).

    Columns: campaign, delivered (sent), complaints (addresses with an ARF complaint recorded
    for the campaign), rate (complaints / delivered), level (``ok``, ``warn`` from 0.1 %,
    ``stop`` over 0.3 %: ``campaign send`` does not send such a campaign further without
    ``--ignore-guards``).

    Example::

        >>> from newsletter_kit.store import open_store
        >>> list(complaint_rates(open_store(":memory:")).columns)
        ['campaign', 'delivered', 'complaints', 'rate', 'level']
    """
    from .complaints import complaint_counts, complaint_level, complaint_rate

    rows = [(name, delivered, complaints, complaint_rate(complaints, delivered))
            for name, (complaints, delivered) in complaint_counts(store).items()]
    df = pd.DataFrame(rows, columns=["campaign", "delivered", "complaints", "rate"])
    df["level"] = [complaint_level(rate) for rate in df["rate"]]
    return df
