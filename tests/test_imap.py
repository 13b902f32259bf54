"""The IMAP client's pure parts (the conversation with Dovecot is in test_connections.py and
test_bounce_fetch.py)."""
from __future__ import annotations

from newsletter_kit import imap


def test_batches_stay_in_uid_order_and_bounded_in_bytes() -> None:
    big = imap.MAX_BATCH_BYTES // 2 + 1
    batches = list(imap.uid_batches([1, 2, 3, 4, 5, 6, 7], {3: big, 4: big}, 3))
    assert batches == [[1, 2, 3], [4, 5, 6], [7]]
    assert list(imap.uid_batches([1, 2, 3], {2: big, 3: big}, 10)) == [[1, 2], [3]]
    assert [len(b) for b in imap.uid_batches(list(range(1, 1201)), {}, 500)] == [500, 500, 200]
