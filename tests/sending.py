"""What the send tests share: settings pointing at a test server, contacts, a campaign, the ledger.

Used by tests/test_send.py (the run) and tests/test_ledger.py (the ledger's guarantees).
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from newsletter_kit import campaigns
from newsletter_kit.audience import add_contacts
from newsletter_kit.settings import update_bounce_settings, update_smtp_settings

BOUNCE_ADDRESS = "bounces@example.org"
FROM = "news@example.org"
PASSWORD_ENV = "NK_TEST_SMTP_PASSWORD"


def configure(store, srv, *, limit=1000, tls="none", user=None, ca_file=None, exclusion="campaign",
              timezone="Europe/Rome"):
    """SMTP settings pointing at ``srv``, and a bounce address for the envelope sender."""
    update_smtp_settings(
        store, host="localhost" if tls != "none" else "127.0.0.1", port=srv.port, tls=tls,
        daily_limit=limit, from_addr=FROM, timezone=timezone, exclusion=exclusion,
        user=user, auth=bool(user), password_ref=f"env:{PASSWORD_ENV}" if user else None,
        ca_file=ca_file, unsubscribe_url="https://example.org/unsubscribe/{token}")
    update_bounce_settings(store, host="127.0.0.1", port=1143, user=BOUNCE_ADDRESS, threshold=1,
                           tls="none", allow_plain_auth=True, password_ref="env:NK_UNUSED")


def contacts(store, emails, list_name="news"):
    """Import ``emails`` onto a list, each with a first_name field."""
    add_contacts(store, [{"email": e, "first_name": e.split("@")[0].title()} for e in emails],
                 list_name=list_name)


def make_campaign(store, name="spring", list_name="news"):
    """A campaign whose subject and body use the first_name field."""
    return campaigns.create_campaign(store, name, list_name, "Hello {{ first_name }}",
                                     "<p>Dear {{ first_name }},</p><p>news.</p>")


def ledger(store, name="spring"):
    """The campaign's ledger rows: address -> (state, message_id, code, status, reason)."""
    rows = store.conn.execute(
        "SELECT d.email, d.state, d.message_id, d.smtp_code, d.smtp_status, d.reason FROM deliveries d "
        "JOIN campaigns c ON c.id = d.campaign_id WHERE c.name = ? ORDER BY d.id", (name,))
    return {r[0]: r[1:] for r in rows}


def received(srv):
    """How many messages the server took per recipient."""
    return Counter(rcpt for env in srv.messages for rcpt in env.rcpt_tos)


def addresses(n, prefix="reader"):
    """n valid, distinct addresses."""
    return [f"{prefix}{i:03d}@example.org" for i in range(n)]


def invoke(args):
    """The CLI in this process (fast); ``returncode``, ``stdout`` and ``stderr`` like a subprocess."""
    from click.testing import CliRunner

    from newsletter_kit.cli import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    result.returncode = result.exit_code
    return result


def start_cli(args, **popen):
    """``python -m newsletter_kit ARGS`` in its own process (pipes for stdout and stderr)."""
    return subprocess.Popen([sys.executable, "-m", "newsletter_kit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)
