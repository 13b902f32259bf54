"""ipywidgets panels over the plain API, one file per widget family.

- :class:`SettingsPanel` (``settings.py``): the SMTP server and the bounce mailbox.
- :class:`CampaignPanel`, :class:`QuotaMeter` (``campaign.py``): pick or create, preview, send.
- :class:`BounceReviewPanel` (``bounces.py``): fetch bounces, review tables, threshold what-if.
- :class:`PeoplePanel` (``people.py``): lists and sizes; remove, withdraw an opt-out, erase.

Every panel has ``.widget`` (displayed when the panel is the value of a cell) and a visible
``.message`` area where library errors and results appear (``common.py``).

Example::

    from newsletter_kit.panels import SettingsPanel
    SettingsPanel(store)

In a notebook, ``%load_ext newsletter_kit`` then ``%newsletter settings`` (``magic.py``).
"""

from .bounces import BounceReviewPanel
from .campaign import CampaignPanel, QuotaMeter
from .common import Panel, catch_errors
from .people import PeoplePanel
from .settings import SettingsPanel

__all__ = ["BounceReviewPanel", "CampaignPanel", "QuotaMeter", "Panel", "PeoplePanel", "catch_errors",
           "SettingsPanel"]
