"""The ``%newsletter`` line magic: the panels, one word away.

Load it with ``%load_ext newsletter_kit``, then::

    %newsletter settings            # the SettingsPanel
    %newsletter campaign spring     # the CampaignPanel on campaign "spring"
    %newsletter bounces             # the BounceReviewPanel
    %newsletter quota               # today's send quota
    %newsletter people              # lists, remove, withdraw an opt-out, erase
    %newsletter --db data/demo.db settings   # another store than $NEWSLETTER_KIT_DB

The magic returns the panel, so it is displayed as the cell's result and can be kept:
``panel = %newsletter settings``.
"""

from __future__ import annotations

import shlex
from typing import Any

from ..errors import NewsletterKitError
from ..store import open_store

USAGE = ("usage: %newsletter [--db PATH] settings | campaign [NAME] | bounces | quota | people\n"
         "  settings   the SMTP server and the bounce mailbox\n"
         "  campaign   pick or create a campaign, preview, dry run, send\n"
         "  bounces    review bounces and suppressions\n"
         "  quota      today's send quota\n"
         "  people     contact lists; remove, withdraw an opt-out, erase a person")


def newsletter(line: str) -> Any:
    """Run ``%newsletter LINE``: the panel (or quota meter) the words name.

    Example::

        >>> newsletter("settings")          # doctest: +SKIP
        <newsletter_kit.panels.settings.SettingsPanel ...>
    """
    from IPython.core.error import UsageError

    words = shlex.split(line)
    db = None
    if words[:1] == ["--db"]:
        if len(words) < 2:
            raise UsageError(USAGE)
        db, words = words[1], words[2:]
    if not words or words[0] in ("help", "-h", "--help"):
        raise UsageError(USAGE)
    command, args = words[0], words[1:]
    try:
        return _panel(command, args, db)
    except NewsletterKitError as exc:
        raise UsageError(str(exc)) from None


def _panel(command: str, args: list[str], db: str | None) -> Any:
    from IPython.core.error import UsageError

    store = open_store(db)
    if command == "settings" and not args:
        from .settings import SettingsPanel

        return SettingsPanel(store)
    if command == "campaign" and len(args) <= 1:
        from .campaign import CampaignPanel

        return CampaignPanel(store, campaign=args[0] if args else None)
    if command == "bounces" and not args:
        from ..demo import demo_bounce_source
        from .bounces import BounceReviewPanel

        # In demo mode the bounces are in the demo's local folder, not an IMAP mailbox.
        return BounceReviewPanel(store, source_path=demo_bounce_source(store))
    if command == "people" and not args:
        from .people import PeoplePanel

        return PeoplePanel(store)
    if command == "quota" and not args:
        from .campaign import QuotaMeter

        return QuotaMeter(store)
    raise UsageError(USAGE)


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%newsletter`` in this IPython (called by ``%load_ext newsletter_kit``)."""
    ipython.register_magic_function(newsletter, magic_kind="line", magic_name="newsletter")
