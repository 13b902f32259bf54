"""``newsletter-kit run``: the one idempotent step for cron or a systemd timer.

It sends the scheduled campaigns whose time has come, inside their windows and today's quota,
highest priority first (so when several compete for the same quota the most important goes
first); then fetches the bounce mailbox when one is set up, which also applies the bounce
policy. Running it again when nothing is due does nothing but say so. Each step is one
:class:`Action`; the run's exit status is the one ``campaign send`` would give for the most
serious of them (1 > 3 > 75 > 0).

Example::

    >>> import newsletter_kit as nk                             # doctest: +SKIP
    >>> report = nk.run_due(nk.open_store())                    # doctest: +SKIP
    >>> [a.line() for a in report.actions], report.exit_code    # doctest: +SKIP
    (['spring: 120 sent, 0 deferred, 0 failed ...', 'bounces: fetched 3 new message(s)'], 0)
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from . import clock
from .errors import NewsletterKitError
from .schedules import UTC, list_schedules
from .store import Store

#: campaign send's exit codes, most serious first.
_SEVERITY = (1, 3, 75)


def exit_code_for(paused: str | None, interrupted: bool = False) -> int:
    """The exit status ``campaign send`` gives for a report's ``paused`` value.

    >>> exit_code_for("quota"), exit_code_for("guard"), exit_code_for("connection"), exit_code_for("refused")
    (0, 3, 75, 1)
    """
    if paused == "connection" or (interrupted and paused == "stopped"):
        return 75
    if paused in ("failures", "refused"):
        return 1
    if paused == "guard":
        return 3
    return 0


@dataclass
class Action:
    """One thing ``run`` did or decided: ``kind`` is send, wait, skip, fetch or error."""

    kind: str
    campaign: str | None
    detail: str
    exit_code: int = 0
    report: dict[str, Any] | None = None

    def line(self) -> str:
        """The one line ``run`` prints for it."""
        who = f"{self.campaign}: " if self.campaign else ""
        return f"{self.kind} {who}{self.detail}"


@dataclass
class RunReport:
    """What one ``run`` did, in order."""

    started_at: str
    actions: list[Action] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        codes = {a.exit_code for a in self.actions}
        for code in _SEVERITY:
            if code in codes:
                return code
        return 0

    def to_dict(self) -> dict[str, Any]:
        """The ``run --json`` document."""
        return {"started_at": self.started_at, "exit_code": self.exit_code,
                "actions": [asdict(a) for a in self.actions]}


def run_due(store: Store, *, now: dt.datetime | None = None, fetch: bool = True,
            stop_event: threading.Event | None = None, send_options: dict[str, Any] | None = None,
            fetch_options: dict[str, Any] | None = None) -> RunReport:
    """Send what is due, then fetch bounces; never raises for one campaign's trouble.

    ``send_options`` go to :func:`~newsletter_kit.campaigns.send_campaign` (tests pass
    ``smtp_factory``, ``password``), ``fetch_options`` to
    :func:`~newsletter_kit.ingest.fetch_bounces`. ``fetch=False`` skips the mailbox.
    """
    from .campaigns import send_campaign

    now = (now or clock.now()).astimezone(UTC)
    report = RunReport(started_at=now.isoformat())
    quota_used_up = False
    for schedule in list_schedules(store, pending_only=True):
        if stop_event is not None and stop_event.is_set():
            report.actions.append(Action("skip", schedule.campaign, "interrupted before its turn", 75))
            continue
        if not schedule.is_open(now):
            opening = schedule.next_opening(now)
            report.actions.append(Action("wait", schedule.campaign,
                                         f"not due: next opening {opening.isoformat()} ({schedule.describe()})"))
            continue
        resets_at = _quota_used_up(store)
        if quota_used_up or resets_at:
            report.actions.append(Action("wait", schedule.campaign,
                                         f"today's send limit is used; it resets at {resets_at}"))
            continue
        closes = schedule.closes_at(now)
        try:
            sent = send_campaign(store, schedule.campaign, stop_event=stop_event, until=closes,
                                 **(send_options or {}))
        except NewsletterKitError as exc:
            report.actions.append(Action("error", schedule.campaign, str(exc), 1))
            continue
        if sent.paused == "window":
            sent.resume_at = schedule.next_opening(clock.now().astimezone(UTC) + dt.timedelta(seconds=1)).isoformat()
        interrupted = stop_event is not None and stop_event.is_set()
        report.actions.append(Action("send", schedule.campaign, sent.summary().replace("\n", "; "),
                                     exit_code_for(sent.paused, interrupted), sent.to_dict()))
        if sent.paused == "quota":
            quota_used_up = True
    if not report.actions:
        report.actions.append(Action("skip", None, "no scheduled campaign is waiting"))
    if fetch:
        report.actions.append(_fetch(store, fetch_options or {}))
    return report


def _quota_used_up(store: Store) -> str | None:
    """When today's quota resets, if none is left now; None while some is left."""
    from .quota import quota_status
    from .settings import load_smtp_settings

    smtp = load_smtp_settings(store)
    if smtp is None:
        return None  # send_campaign says what is missing
    status = quota_status(store, smtp)
    return status.resets_at.isoformat() if status.remaining <= 0 else None


def _fetch(store: Store, options: dict[str, Any]) -> Action:
    from .errors import ConnectionFailed
    from .ingest import fetch_bounces
    from .settings import load_bounce_settings

    if load_bounce_settings(store) is None and "source_path" not in options:
        return Action("skip", None, "bounces: no bounce mailbox is set up")
    try:
        fetched = fetch_bounces(store, **options)
    except ConnectionFailed as exc:
        return Action("error", None, f"bounces: {exc}", 75)
    except NewsletterKitError as exc:
        return Action("error", None, f"bounces: {exc}", 1)
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(fetched.bounces.items()))
    detail = f"bounces: fetched {fetched.fetched} new message(s)" + (f": {kinds}" if kinds else "")
    if fetched.suppressed:
        detail += f"; suppressed {len(fetched.suppressed)}"
    return Action("fetch", None, detail, 0, fetched.to_dict())
