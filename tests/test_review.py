"""review.py: every table on a small handcrafted store, with exact expected numbers.

The store is filled with plain INSERTs (no send or fetch), so each number below can be
checked by hand against the rows in ``handmade``. The what-if is also checked against a
brute-force count in Python on random stores.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random

import matplotlib
import pandas as pd
import pytest

from newsletter_kit import review
from newsletter_kit.settings import update_bounce_settings, update_smtp_settings
from newsletter_kit.store import Store, open_store

matplotlib.use("Agg")

T0 = "2026-03-01T00:00:00+00:00"


def add_campaign(store: Store, cid: int, name: str) -> None:
    store.conn.execute(
        "INSERT INTO campaigns (id, name, list_name, subject, html, status, created_at, updated_at)"
        " VALUES (?, ?, 'all', 's', '<p>x</p>', 'sending', ?, ?)", (cid, name, T0, T0))


def add_delivery(store: Store, did: int, cid: int, email: str, state: str, sent_at: str | None = None) -> None:
    store.conn.execute(
        "INSERT INTO deliveries (id, campaign_id, email, state, message_id, sent_at, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (did, cid, email, state, f"<{did}@test>", sent_at, T0, T0))


def add_bounce(store: Store, bid: int, email: str, kind: str, status: str | None, at: str,
               campaign: str | None = None, delivery: int | None = None, source: str = "imap") -> None:
    store.conn.execute(
        "INSERT INTO bounces (id, email, kind, status, diagnostic, campaign, delivery_id, report_key, source,"
        " bounced_at, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (bid, email, kind, status, f"diag {bid}", campaign, delivery, f"r{bid}", source, at, at))


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC") if pd.Timestamp(text).tzinfo else pd.Timestamp(text, tz="UTC")


@pytest.fixture
def handmade() -> Store:
    """Two campaigns, four bouncing addresses, one suppression, three opt-outs."""
    store = open_store(":memory:")
    with store.transaction():
        add_campaign(store, 1, "spring")
        add_campaign(store, 2, "summer")
        add_delivery(store, 1, 1, "anna@a.example", "sent", "2026-03-01T09:00:00+00:00")
        add_delivery(store, 2, 1, "bruno@b.example", "sent", "2026-03-01T09:01:00+00:00")
        add_delivery(store, 3, 1, "carla@a.example", "sent", "2026-03-01T23:30:00+00:00")
        add_delivery(store, 4, 1, "dario@c.example", "failed")
        add_delivery(store, 5, 1, "elena@b.example", "excluded")
        add_delivery(store, 6, 2, "anna@a.example", "sent", "2026-03-05T10:00:00+00:00")
        add_delivery(store, 7, 2, "bruno@b.example", "sent", "2026-03-05T10:00:00+00:00")
        add_delivery(store, 8, 2, "carla@a.example", "pending")
        add_bounce(store, 1, "anna@a.example", "hard", "5.1.1", "2026-03-01T09:05:00+00:00", "spring", 1)
        add_bounce(store, 2, "anna@a.example", "soft", "4.2.2", "2026-03-05T10:05:00+00:00", "summer", 6)
        add_bounce(store, 3, "anna@a.example", "hard", "5.1.1", "2026-03-06T08:00:00+00:00", "summer")
        add_bounce(store, 4, "bruno@b.example", "soft", "4.2.2", "2026-03-01T09:10:00+00:00", "spring", 2)
        add_bounce(store, 5, "bruno@b.example", "policy", "5.7.1", "2026-03-05T10:02:00+00:00", "summer", 7)
        add_bounce(store, 6, "carla@a.example", "delayed", "4.4.7", "2026-03-01T23:40:00+00:00", "spring", 3)
        add_bounce(store, 7, "carla@a.example", "complaint", None, "2026-03-02T12:00:00+00:00", "spring", 3)
        add_bounce(store, 8, "dario@c.example", "hard", "5.1.1", "2026-03-01T09:02:00+00:00", "spring", 4, "smtp")
        store.conn.execute(
            "INSERT INTO suppressions (email, since, reason, bounce_count, evidence) VALUES (?, ?, 'smtp', 1, ?)",
            ("dario@c.example", "2026-03-01T09:02:00+00:00",
             json.dumps([{"bounce_id": 8, "date": "2026-03-01T09:02:00+00:00", "kind": "hard", "status": "5.1.1"}])))
        for email, campaign in [("elena@b.example", "spring"), ("bruno@b.example", None), ("carla@a.example", "spring")]:
            store.conn.execute("INSERT INTO unsubscribes (email, campaign, source, created_at) VALUES (?, ?, 'csv', ?)",
                               (email, campaign, T0))
        store.conn.execute("INSERT INTO quota_days (day, used, reserved) VALUES ('2026-03-01', 3, 0), ('2026-03-05', 2, 1)")
    return store


def records(df: pd.DataFrame, columns: list[str]) -> list[tuple]:
    return [tuple(None if (isinstance(v, float) and math.isnan(v)) or v is pd.NA else v for v in row)
            for row in df[columns].itertuples(index=False)]


# --- RFC 3463 ---


def test_status_meanings_cover_rfc3463() -> None:
    assert review.status_meaning("5.1.1") == "Bad destination mailbox address"
    assert review.status_meaning("4.2.2") == "Mailbox full"
    assert review.status_meaning("5.7.1") == "Delivery not authorized, message refused"
    assert review.status_meaning("5.3.5") == "System incorrectly configured"
    assert review.status_meaning("4.4.7") == "Delivery time expired"
    assert review.status_meaning("5.7.26") == "Multiple authentication checks failed"
    assert review.status_meaning("5.4.99") == "Other or undefined network or routing status"
    assert review.status_meaning("5.01.001") == "Bad destination mailbox address"
    for bad in (None, "", "550", "6.1.1", "5.1", "x.1.1", float("nan")):
        assert review.status_meaning(bad) is None  # type: ignore[arg-type]
    # RFC 3463 section 3: subjects 0-7, each with its "other" code X.n.0 (X.0.0 for subject 0).
    assert all(f"{subject}.0" in review.RFC3463_CODES for subject in range(8))
    rfc3463_details = {"0": 0, "1": 8, "2": 4, "3": 5, "4": 7, "5": 5, "6": 5, "7": 7}
    for subject, last in rfc3463_details.items():
        assert all(f"{subject}.{d}" in review.RFC3463_CODES for d in range(last + 1))


# --- tables ---


def test_bounces_by_address(handmade: Store) -> None:
    df = review.bounces_by_address(handmade)
    assert list(df["email"]) == ["anna@a.example", "bruno@b.example", "carla@a.example", "dario@c.example"]
    assert records(df, ["hard", "soft", "policy", "delayed", "complaint", "other", "total"]) == [
        (2, 1, 0, 0, 0, 0, 3), (0, 1, 1, 0, 0, 0, 2), (0, 0, 0, 1, 1, 0, 2), (1, 0, 0, 0, 0, 0, 1)]
    anna = df.iloc[0]
    assert anna["first_bounce"] == utc("2026-03-01T09:05:00Z")
    assert anna["last_bounce"] == utc("2026-03-06T08:00:00Z")
    assert (anna["last_kind"], anna["last_status"], anna["last_diagnostic"]) == ("hard", "5.1.1", "diag 3")
    assert records(df, ["last_kind", "last_status"])[1:3] == [("policy", "5.7.1"), ("complaint", None)]
    assert list(df["suppressed"]) == [False, False, False, True]


def test_bounces_by_domain(handmade: Store) -> None:
    df = review.bounces_by_domain(handmade, with_sent=True)
    assert records(df, ["domain", "addresses", "failed_addresses", "hard", "soft", "policy", "delayed",
                        "complaint", "total", "suppressed", "sent", "bounce_rate"]) == [
        ("a.example", 2, 1, 2, 1, 0, 1, 1, 5, 0, 2, 0.5),
        ("b.example", 1, 1, 0, 1, 1, 0, 0, 2, 0, 1, 1.0),
        ("c.example", 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, None),
    ]
    assert "sent" not in review.bounces_by_domain(handmade)


def test_campaign_summary(handmade: Store) -> None:
    df = review.campaign_summary(handmade)
    assert records(df, ["campaign", "total", "sent", "failed", "excluded", "pending", "unknown", "bounced",
                        "hard", "soft", "policy", "bounce_rate", "complaints", "unsubscribes"]) == [
        ("spring", 5, 3, 1, 1, 0, 0, 3, 2, 1, 0, 0.75, 1, 2),
        ("summer", 3, 2, 0, 0, 1, 0, 2, 1, 1, 1, 1.0, 0, 0),
    ]


def test_bounces_by_status(handmade: Store) -> None:
    df = review.bounces_by_status(handmade)
    assert records(df, ["status", "class", "meaning", "addresses", "total"]) == [
        ("5.1.1", "Permanent Failure", "Bad destination mailbox address", 2, 3),
        ("4.2.2", "Persistent Transient Failure", "Mailbox full", 2, 2),
        ("4.4.7", "Persistent Transient Failure", "Delivery time expired", 1, 1),
        ("5.7.1", "Permanent Failure", "Delivery not authorized, message refused", 1, 1),
        (None, None, None, 1, 1),
    ]
    assert list(df["hard"]) == [3, 0, 0, 0, 0] and list(df["complaint"]) == [0, 0, 0, 0, 1]


def test_bounces_by_day_utc_and_local(handmade: Store) -> None:
    df = review.bounces_by_day(handmade, tz="UTC")
    assert records(df, ["day", "hard", "soft", "policy", "delayed", "complaint", "total", "failures", "sent",
                        "bounce_rate"]) == [
        (dt.date(2026, 3, 1), 2, 1, 0, 1, 0, 4, 3, 3, 1.0),
        (dt.date(2026, 3, 2), 0, 0, 0, 0, 1, 1, 0, 0, None),
        (dt.date(2026, 3, 3), 0, 0, 0, 0, 0, 0, 0, 0, None),  # every day between sends is listed
        (dt.date(2026, 3, 4), 0, 0, 0, 0, 0, 0, 0, 0, None),
        (dt.date(2026, 3, 5), 0, 1, 1, 0, 0, 2, 2, 2, 1.0),
        (dt.date(2026, 3, 6), 1, 0, 0, 0, 0, 1, 1, 0, None),
    ]
    # In Rome (UTC+1 in March) the 23:30 send and the 23:40 delay notice fall on 2 March.
    rome = review.bounces_by_day(handmade, tz="Europe/Rome")
    assert records(rome, ["day", "total", "failures", "sent"])[:2] == [
        (dt.date(2026, 3, 1), 3, 3, 2), (dt.date(2026, 3, 2), 2, 0, 1)]


def test_days_follow_the_smtp_settings_zone(handmade: Store) -> None:
    update_smtp_settings(handmade, host="127.0.0.1", port=2525, tls="none", daily_limit=10,
                         from_addr="news@example.org", timezone="Europe/Rome")
    assert review.bounces_by_day(handmade)["sent"].tolist() == [2, 1, 0, 0, 2, 0]


def test_unknown_zone_is_a_validation_error(handmade: Store) -> None:
    from newsletter_kit.errors import ValidationError

    with pytest.raises(ValidationError, match="not a known time zone"):
        review.bounces_by_day(handmade, tz="Mars/Olympus")


def test_quota_by_day(handmade: Store) -> None:
    no_settings = review.quota_by_day(handmade, tz="UTC")
    assert no_settings["limit"].isna().all()
    update_smtp_settings(handmade, host="127.0.0.1", port=2525, tls="none", daily_limit=10,
                         from_addr="news@example.org", timezone="UTC")
    df = review.quota_by_day(handmade)
    assert records(df, ["day", "used", "reserved", "sent", "limit", "remaining", "share_used"]) == [
        (dt.date(2026, 3, 1), 3, 0, 3, 10, 7, 0.3),
        (dt.date(2026, 3, 2), 0, 0, 0, 10, 10, 0.0),
        (dt.date(2026, 3, 3), 0, 0, 0, 10, 10, 0.0),
        (dt.date(2026, 3, 4), 0, 0, 0, 10, 10, 0.0),
        (dt.date(2026, 3, 5), 2, 1, 2, 10, 7, 0.2),
    ]


def test_suppression_table(handmade: Store) -> None:
    df = review.suppression_table(handmade)
    assert records(df, ["email", "reason", "bounce_count", "kinds", "statuses"]) == [
        ("dario@c.example", "smtp", 1, "hard×1", "5.1.1")]
    row = df.iloc[0]
    assert row["since"] == row["first_evidence"] == row["last_evidence"] == utc("2026-03-01T09:02:00Z")
    assert row["evidence"][0]["bounce_id"] == 8


def test_campaign_forecast() -> None:
    from newsletter_kit.audience import add_contacts
    from newsletter_kit.campaigns import create_campaign

    store = open_store(":memory:")
    update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=10,
                         from_addr="news@example.org", timezone="UTC")
    add_contacts(store, [{"email": f"c{i}@example.org"} for i in range(25)])
    create_campaign(store, "big", "all", "Hi", "<p>Hello</p>")
    create_campaign(store, "old", "all", "Hi", "<p>Hello</p>")
    store.conn.execute("UPDATE campaigns SET status = 'done' WHERE name = 'old'")
    # 25 to send, 10 a day, nothing used today: 10 on 1 March, 10 on the 2nd, 5 on the 3rd.
    df = review.campaign_forecast(store, now=dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc))
    assert records(df, ["campaign", "pending", "finish"]) == [("big", 25, dt.date(2026, 3, 3)), ("old", 0, None)]


def test_empty_store_gives_empty_tables() -> None:
    store = open_store(":memory:")
    for fn in (review.bounces_by_address, review.bounces_by_domain, review.bounces_by_status,
               review.bounces_by_day, review.campaign_summary, review.quota_by_day, review.suppression_table,
               review.threshold_counts, review.campaign_forecast):
        assert fn(store).empty, fn.__name__
    assert review.threshold_what_if(store, 2).to_dict("list") == {
        "threshold": [1, 2], "would_suppress": [0, 0], "new": [0, 0]}


# --- threshold what-if ---


def test_what_if_default_policy(handmade: Store) -> None:
    # hard + soft: anna 3, bruno 1 (his policy block does not count), dario 1 (already suppressed).
    counts = review.threshold_counts(handmade)
    assert dict(zip(counts["email"], counts["counted"])) == {"anna@a.example": 3, "bruno@b.example": 1,
                                                             "dario@c.example": 1}
    assert review.threshold_what_if(handmade, 4).values.tolist() == [[1, 3, 2], [2, 1, 1], [3, 1, 1], [4, 0, 0]]
    assert review.newly_suppressed(handmade, 1) == ["anna@a.example", "bruno@b.example"]
    assert review.newly_suppressed(handmade, 3) == ["anna@a.example"]


def test_what_if_count_policy_and_settings(handmade: Store) -> None:
    assert review.threshold_what_if(handmade, 2, count_policy=True).values.tolist() == [[1, 3, 2], [2, 2, 2]]
    update_bounce_settings(handmade, host="127.0.0.1", port=143, user="bounces@example.org", threshold=2,
                           password_ref="env:NK_TEST_UNUSED", count_policy=True)
    assert review.newly_suppressed(handmade, 2) == ["anna@a.example", "bruno@b.example"]
    assert review.newly_suppressed(handmade, 2, count_policy=False) == ["anna@a.example"]


def test_what_if_stale_and_reset(handmade: Store) -> None:
    now = dt.datetime(2026, 3, 6, 12, tzinfo=dt.timezone.utc)
    stale = review.threshold_counts(handmade, stale_after_days=2, now=now)
    assert dict(zip(stale["email"], stale["counted"])) == {"anna@a.example": 2}
    # Bruno's summer delivery was followed only by a policy block, which does not count: it
    # was a success, so his earlier soft bounce is forgiven. Counting policy, it was a failure.
    reset = review.threshold_counts(handmade, reset_on_success=True)
    assert dict(zip(reset["email"], reset["counted"])) == {"anna@a.example": 3, "dario@c.example": 1}
    both = review.threshold_counts(handmade, reset_on_success=True, count_policy=True)
    assert dict(zip(both["email"], both["counted"]))["bruno@b.example"] == 2


def brute_force(bounces: list[dict], deliveries: list[dict], suppressed: set[str], kinds: set[str],
                since: str | None, reset: bool, max_threshold: int) -> list[list[int]]:
    def counts(b: dict) -> bool:
        if b["kind"] not in kinds or (since and b["at"] < since):
            return False
        if reset:
            failed = {x["delivery"] for x in bounces if x["kind"] in kinds}
            return not any(d["email"] == b["email"] and d["state"] == "sent" and d["sent_at"] > b["at"]
                           and d["id"] not in failed for d in deliveries)
        return True

    per: dict[str, int] = {}
    for b in bounces:
        if counts(b):
            per[b["email"]] = per.get(b["email"], 0) + 1
    return [[t, sum(n >= t for n in per.values()), sum(n >= t and e not in suppressed for e, n in per.items())]
            for t in range(1, max_threshold + 1)]


@pytest.mark.parametrize("seed", range(6))
def test_what_if_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    store = open_store(":memory:")
    emails = [f"u{i}@d{i % 3}.example" for i in range(25)]
    start = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    stamp = lambda: (start + dt.timedelta(minutes=rng.randrange(0, 30 * 1440))).isoformat()  # noqa: E731
    deliveries, bounces = [], []
    with store.transaction():
        add_campaign(store, 1, "c")
        for i, email in enumerate(emails):
            d = {"id": i + 1, "email": email, "state": rng.choice(["sent", "sent", "failed"]), "sent_at": stamp()}
            deliveries.append(d)
            add_delivery(store, d["id"], 1, email, d["state"], d["sent_at"])
        for n in range(150):
            email = rng.choice(emails)
            b = {"email": email, "kind": rng.choice(["hard", "soft", "policy", "delayed", "complaint"]),
                 "at": stamp(), "delivery": rng.choice([None, emails.index(email) + 1])}
            bounces.append(b)
            add_bounce(store, n + 1, email, b["kind"], None, b["at"], "c", b["delivery"])
        suppressed = set(rng.sample(emails, 5))
        for email in suppressed:
            store.conn.execute("INSERT INTO suppressions (email, since, reason) VALUES (?, ?, 'manual')", (email, T0))
    now = start + dt.timedelta(days=30)
    for count_policy in (False, True):
        for stale in (0, 10):
            for reset in (False, True):
                kinds = {"hard", "soft"} | ({"policy"} if count_policy else set())
                since = (now - dt.timedelta(days=stale)).isoformat() if stale else None
                expected = brute_force(bounces, deliveries, suppressed, kinds, since, reset, 8)
                got = review.threshold_what_if(store, 8, count_policy=count_policy, stale_after_days=stale,
                                               reset_on_success=reset, now=now)
                assert got.values.tolist() == expected, (count_policy, stale, reset)


# --- plots ---


def test_plots_return_axes(handmade: Store) -> None:
    ax = review.plot_bounce_rate_by_day(handmade, tz="UTC")
    # The days with sends only (1 and 5 March), joined; the quiet days have no rate.
    assert list(ax.lines[0].get_ydata()) == pytest.approx([100.0, 100.0])
    assert [d.day for d in pd.to_datetime(ax.lines[0].get_xdata())] == [1, 5]
    bars = review.plot_top_domains(handmade, 2)
    labels = [t.get_text() for t in bars.get_yticklabels()]
    assert labels == ["b.example", "a.example"]  # the top one drawn last, at the top
    assert sum(p.get_width() for p in bars.patches) == 7
    import matplotlib.pyplot as plt

    plt.close("all")


# --- the per-address summary the store keeps -----------------------------------------------------


def summary_by_hand(store: Store) -> list[tuple]:
    """bounce_addresses computed in Python from the bounces table: the definition it must keep."""
    rows = store.conn.execute("SELECT id, email, kind, status, diagnostic, bounced_at FROM bounces").fetchall()
    per: dict[str, list[tuple]] = {}
    for row in rows:
        per.setdefault(row[1], []).append(row)
    expected = []
    for email, items in sorted(per.items()):
        kinds = [item[2] for item in items]
        counts = [kinds.count(k) for k in review.KIND_COLUMNS]
        last = min(items, key=lambda item: (_desc(item[5]), item[0]))  # latest time, then lowest id
        expected.append((email, *counts, len(kinds) - sum(counts), len(kinds), min(item[5] for item in items),
                         last[5], last[0], last[2], last[3], last[4]))
    return expected


def _desc(text: str) -> tuple[int, ...]:
    return tuple(-ord(ch) for ch in text)


def stored_summary(store: Store) -> list[tuple]:
    return store.conn.execute(
        "SELECT email, hard, soft, policy, delayed, complaint, other, total, first_bounce, last_bounce, last_id,"
        " last_kind, last_status, last_diagnostic FROM bounce_addresses ORDER BY email").fetchall()


def random_bounces(store: Store, rng: random.Random, n: int, first_id: int = 1) -> None:
    emails = [f"u{i}@d{i % 4}.example" for i in range(12)]
    times = [f"2026-03-0{d}T0{h}:00:00+00:00" for d in range(1, 4) for h in range(3)]  # few: ties happen
    for bid in range(first_id, first_id + n):
        kind = rng.choice(["hard", "soft", "policy", "delayed", "complaint", "autoreply", "other"])
        # Ids out of order too: the tie rule is the lowest id, not the last inserted.
        add_bounce(store, bid if rng.random() < 0.8 else bid + 10_000, rng.choice(emails), kind,
                   rng.choice([None, "5.1.1", "4.2.2"]), rng.choice(times))


@pytest.mark.parametrize("seed", range(4))
def test_bounce_summary_follows_inserts_updates_and_deletes(seed: int) -> None:
    rng = random.Random(seed)
    store = open_store(":memory:")
    with store.transaction():
        random_bounces(store, rng, 60)
    assert stored_summary(store) == summary_by_hand(store)
    ids = [row[0] for row in store.conn.execute("SELECT id FROM bounces")]
    with store.transaction():
        for bid in rng.sample(ids, 15):
            column, value = rng.choice([("kind", rng.choice(["hard", "complaint", "autoreply"])),
                                        ("bounced_at", "2026-03-02T01:00:00+00:00"),
                                        ("email", "moved@d9.example"), ("status", "5.7.1"),
                                        ("diagnostic", "changed"), ("campaign", "not shown")])
            store.conn.execute(f"UPDATE bounces SET {column} = ? WHERE id = ?", (value, bid))
    assert stored_summary(store) == summary_by_hand(store)
    with store.transaction():
        for bid in rng.sample(ids, 20):
            store.conn.execute("DELETE FROM bounces WHERE id = ?", (bid,))
        store.conn.execute("DELETE FROM bounces WHERE email = 'moved@d9.example'")
    assert stored_summary(store) == summary_by_hand(store)
    assert "moved@d9.example" not in {row[0] for row in stored_summary(store)}


def test_migration_fills_the_summary_from_existing_bounces(tmp_path) -> None:
    import sqlite3

    from newsletter_kit import store as store_mod

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    store_mod._MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    old = Store.__new__(Store)  # a v1 file filled through plain SQL, as an older version would
    old._conn = sqlite3.connect(path)
    random_bounces(old, random.Random(9), 80)
    old._conn.commit()
    old._conn.close()
    store = open_store(path)
    assert store.schema_version() == store_mod.SCHEMA_VERSION
    assert len(stored_summary(store)) > 5
    assert stored_summary(store) == summary_by_hand(store)


@pytest.mark.parametrize("seed", range(3))
def test_by_address_and_domain_match_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    store = open_store(":memory:")
    with store.transaction():
        random_bounces(store, rng, 80)
        add_campaign(store, 1, "c")
        for n, email in enumerate(sorted({f"u{i}@d{i % 4}.example" for i in range(0, 16, 2)})):
            add_delivery(store, n + 1, 1, email, rng.choice(["sent", "failed"]), "2026-03-01T00:00:00+00:00")
        store.conn.execute("INSERT INTO suppressions (email, since, reason) VALUES ('u3@d3.example', ?, 'manual')", (T0,))
    expected = sorted(summary_by_hand(store), key=lambda row: (-row[7], row[0]))
    df = review.bounces_by_address(store)
    assert records(df, ["email", *review.KIND_COLUMNS, "other", "total"]) == [row[:8] for row in expected]
    assert records(df, ["last_kind", "last_status", "last_diagnostic"]) == [row[11:14] for row in expected]
    assert list(df["last_bounce"]) == [utc(row[9]) for row in expected]
    assert list(df["first_bounce"]) == [utc(row[8]) for row in expected]
    assert list(df.loc[df["suppressed"], "email"]) == (["u3@d3.example"] if "u3@d3.example" in set(df["email"]) else [])
    bounces = store.conn.execute("SELECT email, kind FROM bounces").fetchall()
    sent = {e for (e,) in store.conn.execute("SELECT email FROM deliveries WHERE state = 'sent'")}
    by_domain = review.bounces_by_domain(store, with_sent=True).set_index("domain")
    for domain in {email.split("@")[1] for email, _ in bounces}:
        mine = [(e, k) for e, k in bounces if e.endswith("@" + domain)]
        row = by_domain.loc[domain]
        assert row["addresses"] == len({e for e, _ in mine})
        assert row["failed_addresses"] == len({e for e, k in mine if k in review.FAILURE_KINDS})
        assert row["total"] == len(mine) and row["other"] == sum(k not in review.KIND_COLUMNS for _, k in mine)
        assert row["sent"] == len({e for e in sent if e.endswith("@" + domain)})


def test_review_queries_never_read_the_ledger_or_bounces_row_by_row() -> None:
    """Every query of every table reads deliveries and bounces through an index (the plans that
    keep them under a second at a million deliveries), on a store without statistics, as users'
    stores are. A query that scans either table itself fails here, whatever the data."""
    import re

    store = open_store(":memory:")
    update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=10,
                         from_addr="news@example.org", timezone="Europe/Rome")
    with store.transaction():
        add_campaign(store, 1, "c")
        add_delivery(store, 1, 1, "a@x.example", "sent", T0)
        add_bounce(store, 1, "a@x.example", "hard", "5.1.1", T0, "c", 1)
    statements: list[str] = []
    tables = [
        lambda: review.bounces_by_address(store), lambda: review.bounces_by_domain(store, with_sent=True),
        lambda: review.bounces_by_status(store), lambda: review.bounces_by_day(store),
        lambda: review.campaign_summary(store), lambda: review.quota_by_day(store),
        lambda: review.suppression_table(store), lambda: review.threshold_what_if(store, 3),
        lambda: review.threshold_counts(store, count_policy=True, stale_after_days=3, reset_on_success=True),
    ]
    store.conn.set_trace_callback(statements.append)
    for table in tables:
        table()
    store.conn.set_trace_callback(None)
    selects = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
    assert len(selects) > 15
    row_by_row = re.compile(r"SCAN (deliveries|bounces|d|b|b2)$")
    for sql in selects:
        plan = [row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql)]
        assert not [step for step in plan if row_by_row.match(step)], (sql, plan)


def sends_on(days: list[dt.date], bounce_every: int = 3) -> Store:
    """A store with one delivery sent at noon on each day, and a hard bounce for every third."""
    store = open_store(":memory:")
    with store.transaction():
        add_campaign(store, 1, "c")
        for n, day in enumerate(days):
            at = f"{day.isoformat()}T12:00:00+00:00"
            add_delivery(store, n + 1, 1, f"u{n}@x.example", "sent", at)
            if n % bounce_every == 0:
                add_bounce(store, n + 1, f"u{n}@x.example", "hard", "5.1.1", at, "c", n + 1)
    return store


@pytest.mark.parametrize("days, widest, fewest_ticks, most_ticks", [
    ([dt.date(2026, 11, 30)], 4, 2, 5),                                             # one day
    ([dt.date(2026, 11, 30) + dt.timedelta(days=d) for d in range(0, 84, 7)], 90, 4, 12),  # twelve weeks
    ([dt.date(2025, 12, 1) + dt.timedelta(days=d) for d in range(365)], 390, 4, 13),  # a year
])
def test_the_daily_plot_reads_with_one_day_or_a_year(days: list[dt.date], widest: int, fewest_ticks: int,
                                                     most_ticks: int) -> None:
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    ax = review.plot_bounce_rate_by_day(sends_on(days), tz="UTC")
    ax.figure.canvas.draw()
    low, high = (mdates.num2date(x).date() for x in ax.get_xlim())
    assert low < days[0] and high > days[-1]            # every point inside, with a margin
    assert (high - low).days <= widest                   # not four years around one day
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert fewest_ticks <= len(ticks) <= most_ticks
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and not any(":" in label for label in labels)  # dates, no clock times
    assert ax.get_ylim()[0] == 0 and ax.yaxis.get_major_formatter()(50, 0).endswith("%")
    plt.close("all")


# --- display ---


def test_styled_shows_dates_as_dates_and_rates_as_percentages(handmade: Store) -> None:
    update_smtp_settings(handmade, host="127.0.0.1", port=2525, tls="none", daily_limit=10,
                         from_addr="news@example.org", timezone="Europe/Rome")
    by_day = review.bounces_by_day(handmade)
    html = review.styled(by_day, store=handmade).to_html()
    assert "Sun 01 Mar 2026" in html and "100.0%" in html
    assert "2026-03-01" not in html and "+00:00" not in html and "nan" not in html.lower()
    assert by_day["bounce_rate"].dtype == "float64"     # the frame itself stays numeric
    by_address = review.styled(review.bounces_by_address(handmade), store=handmade).to_html()
    # anna's last bounce, 08:00 UTC, in the SMTP settings' zone (Rome, UTC+1 in March)
    assert "06 Mar 2026 09:00" in by_address and "+00:00" not in by_address
    assert ">yes<" in by_address and ">no<" in by_address
    in_utc = review.styled(review.bounces_by_address(handmade), tz="UTC").to_html()
    assert "06 Mar 2026 08:00" in in_utc
    suppressions = review.styled(review.suppression_table(handmade)).to_html()
    assert "bounce_id" not in suppressions             # the evidence list is hidden
    quota = review.styled(review.quota_by_day(handmade)).to_html()
    assert "30.0%" in quota and "0.3" not in quota.replace("30.0%", "")


def test_styled_renders_at_most_max_rows() -> None:
    store = sends_on([dt.date(2026, 1, 1) + dt.timedelta(days=d) for d in range(30)], bounce_every=1)
    table = review.bounces_by_address(store)
    html = review.styled(table, max_rows=10).to_html()
    assert "first 10 of 30 rows" in html and html.count("x.example") == 10
    assert review.styled(table, max_rows=None).to_html().count("x.example") == 30
