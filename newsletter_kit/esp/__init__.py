"""ESPs as a second bounce source: Amazon SES, SendGrid, Mailgun and Postmark events, pulled
from their APIs (``bounces sync``) or read from saved JSON (``bounces import-events``), matched
to our deliveries and recorded with the same kinds, reasons and policies as the mailbox.

One module per provider (facts out of its JSON), ``signatures`` (what providers sign),
``matching`` (which delivery, then the shared recording helper), ``saved`` and ``sync`` (the two
ways in), ``config`` (``settings esp``), ``echo`` (what the sender adds for the provider).
"""

from __future__ import annotations

from .config import EspSettings, load_esp_settings, require_esp_settings, update_esp_settings
from .events import PROVIDERS, EspEvent
from .matching import EventsReport, match_event, record_events
from .saved import import_events
from .sync import sync_events

__all__ = ["PROVIDERS", "EspEvent", "EspSettings", "EventsReport", "import_events", "load_esp_settings",
           "match_event", "record_events", "require_esp_settings", "sync_events", "update_esp_settings"]
