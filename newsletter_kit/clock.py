"""The current time of everything newsletter_kit records, in one place.

Every timestamp the store gets (ledger rows, the quota's day, bounces recorded, suppressions)
and the Date header of each message come from :func:`now`: the system clock, unless a
simulation has moved it. :func:`shifted` runs a block as if it were another moment, time going
on from there at its normal pace. The demo uses it to record weeks of history through the real
send and fetch paths in seconds (:mod:`newsletter_kit.demo_history`); nothing else should.

The shift is process-wide on purpose: a send runs its ledger and connections on threads of
their own, which must see the time the sending thread sees (a context variable would not reach
them). So do not send real campaigns from another thread of the process meanwhile.

Example::

    >>> import datetime as dt
    >>> with shifted(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)):
    ...     now().date().isoformat()
    '2026-03-02'
    >>> now().year > 2025
    True
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

_offset = dt.timedelta(0)


def now() -> dt.datetime:
    """The current UTC time (aware), shifted while inside :func:`shifted`."""
    return dt.datetime.now(dt.timezone.utc) + _offset


def now_iso() -> str:
    """:func:`now` as ISO 8601 to the second, the format every table stores."""
    return now().replace(microsecond=0).isoformat()


def is_shifted() -> bool:
    """True inside :func:`shifted` (the time is not the system's)."""
    return _offset != dt.timedelta(0)


@contextlib.contextmanager
def shifted(to: dt.datetime) -> Iterator[None]:
    """Run the block as if it were ``to`` (aware, or taken as UTC); the shift ends with it.

    Nested blocks shift from the system clock again and restore the outer shift on exit.
    """
    global _offset
    moment = to if to.tzinfo else to.replace(tzinfo=dt.timezone.utc)
    previous = _offset
    _offset = moment - dt.datetime.now(dt.timezone.utc)
    try:
        yield
    finally:
        _offset = previous
