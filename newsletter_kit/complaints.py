"""Spam complaints per campaign (ARF reports recorded by ``bounces fetch``) against the lines
Gmail and Yahoo publish: what the send guards stop on and the review shows.

Below both users: the review reads complaints without importing the send path's guards.

>>> complaint_level(complaint_rate(1, 200))
'stop'
"""

from __future__ import annotations

from .store import Store

__all__ = ["COMPLAINT_STOP", "COMPLAINT_WARN", "complaint_counts", "complaint_level", "complaint_rate"]

#: Complaint rates (complaints / delivered) at which a campaign is watched, and stopped.
COMPLAINT_WARN = 0.001
COMPLAINT_STOP = 0.003

def complaint_counts(store: Store, campaign: str | None = None) -> dict[str, tuple[int, int]]:
    """Per campaign: (addresses that complained, messages delivered).

    Complaints are ARF reports (kind ``complaint``) matched to a delivery of that campaign, each
    address once: an unmatched one (a forged report naming the public campaign stamp and
    made-up addresses) or one matched to another campaign's delivery counts for no campaign;
    it is listed for review (``bounces list --unmatched``).  Delivered is the ledger's ``sent``
    rows.

    Example::

        >>> from newsletter_kit.store import open_store
        >>> complaint_counts(open_store(":memory:"))
        {}
    """
    where, params = ("WHERE c.name = ?", (campaign,)) if campaign is not None else ("", ())
    rows = store.conn.execute(
        "SELECT c.name, "
        "(SELECT count(DISTINCT b.email) FROM bounces b JOIN deliveries d ON d.id = b.delivery_id"
        " WHERE b.campaign = c.name AND b.kind = 'complaint' AND b.unmatched = 0 AND d.campaign_id = c.id), "
        "(SELECT count(*) FROM deliveries d WHERE d.campaign_id = c.id AND d.state = 'sent') + "
        "(SELECT coalesce(sum(count), 0) FROM pruned_deliveries p WHERE p.campaign_id = c.id AND p.state = 'sent') "
        f"FROM campaigns c {where}", params).fetchall()
    return {name: (int(complaints), int(sent)) for name, complaints, sent in rows}


def complaint_rate(complaints: int, delivered: int) -> float:
    """Complaints over delivered messages (0 when nothing was delivered).

    Example::

        >>> complaint_rate(3, 1000)
        0.003
    """
    return complaints / delivered if delivered else 0.0


def complaint_level(rate: float) -> str:
    """``"ok"``, ``"warn"`` (at or over 0.1 %) or ``"stop"`` (over 0.3 %).

    Example::

        >>> complaint_level(0.0005), complaint_level(0.002), complaint_level(0.004)
        ('ok', 'warn', 'stop')
    """
    if rate > COMPLAINT_STOP:
        return "stop"
    return "warn" if rate >= COMPLAINT_WARN else "ok"
