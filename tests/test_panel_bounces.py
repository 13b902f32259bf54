"""BounceReviewPanel driven from plain pytest: set the slider, click, read the store.

No browser: the panel's results are DataFrame/list attributes and its message area is an HTML
widget, so a test fills, clicks and asserts like a user would look.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter_kit.panels import BounceReviewPanel
from newsletter_kit.settings import load_bounce_settings, update_bounce_settings
from newsletter_kit.store import Store, open_store
from tests.dsn import postfix_dsn
from tests.test_review import add_bounce, add_campaign, add_delivery


@pytest.fixture
def store() -> Store:
    """anna: 3 counted bounces; bruno: 2 (one of them policy, counted only with count_policy);
    carla: 1; dario: 2, already suppressed by hand."""
    store = open_store(":memory:")
    with store.transaction():
        add_campaign(store, 1, "spring")
        for i, email in enumerate(["anna@a.example", "bruno@b.example", "carla@a.example"], start=1):
            add_delivery(store, i, 1, email, "sent", "2026-03-01T09:00:00+00:00")
        rows = [("anna@a.example", "hard", "5.1.1"), ("anna@a.example", "soft", "4.2.2"),
                ("anna@a.example", "hard", "5.1.1"), ("bruno@b.example", "soft", "4.2.2"),
                ("bruno@b.example", "policy", "5.7.1"), ("carla@a.example", "soft", "4.2.2"),
                ("dario@c.example", "hard", "5.1.1"), ("dario@c.example", "hard", "5.1.1")]
        for n, (email, kind, status) in enumerate(rows, start=1):
            add_bounce(store, n, email, kind, status, f"2026-03-0{1 + n % 5}T10:00:00+00:00", "spring")
        store.conn.execute("INSERT INTO suppressions (email, since, reason) VALUES ('dario@c.example', ?, 'manual')",
                           ("2026-03-02T00:00:00+00:00",))
    return store


def configure(store: Store, threshold: int = 5, count_policy: bool = False) -> None:
    update_bounce_settings(store, host="127.0.0.1", port=143, user="bounces@example.org", threshold=threshold,
                           password_ref="env:NK_TEST_UNUSED", count_policy=count_policy)


def suppressed(store: Store) -> dict[str, str]:
    return dict(store.conn.execute("SELECT email, reason FROM suppressions"))


def unsubscribes(store: Store) -> int:
    return store.conn.execute("SELECT count(*) FROM unsubscribes").fetchone()[0]


def test_tables_and_what_if_are_exposed(store: Store) -> None:
    configure(store, threshold=3)
    panel = BounceReviewPanel(store)
    assert set(panel.tables) == {"by address", "by domain", "by campaign", "by status", "by reason",
                                 "about the sender", "by source", "suppressions", "unmatched"}
    assert panel.policy_mode.value == "single"  # the saved settings use the single threshold
    assert panel.tables["by address"]["email"].tolist()[:1] == ["anna@a.example"]
    assert panel.tables["suppressions"]["email"].tolist() == ["dario@c.example"]
    assert "anna@a.example" in panel.tabs.children[0].value  # the tab shows the table
    assert panel.threshold_slider.value == 3  # starts at the saved threshold
    assert panel.what_if.values.tolist()[:4] == [[1, 4, 3], [2, 2, 1], [3, 1, 1], [4, 0, 0]]
    assert panel.would_suppress == ["anna@a.example"]
    panel.threshold_slider.value = 1
    assert panel.would_suppress == ["anna@a.example", "bruno@b.example", "carla@a.example"]
    assert "3</b> would be newly suppressed" in panel.what_if_label.value
    assert "carla@a.example" in panel.what_if_addresses.value
    assert panel.apply_button.description == "Suppress 3"
    panel.threshold_slider.value = 4
    assert panel.would_suppress == [] and panel.apply_button.disabled


def test_apply_one_off_suppresses_the_listed_addresses_only(store: Store) -> None:
    configure(store, threshold=5)
    panel = BounceReviewPanel(store)
    panel.threshold_slider.value = 2
    assert panel.would_suppress == ["anna@a.example"]
    before = unsubscribes(store)
    panel.apply_button.click()
    assert panel.last_applied == ["anna@a.example"]
    assert suppressed(store) == {"dario@c.example": "manual", "anna@a.example": "threshold"}
    assert unsubscribes(store) == before == 0  # suppressed is not unsubscribed
    assert load_bounce_settings(store).threshold == 5  # one-off: settings unchanged
    assert "Suppressed 1 address" in panel.message.value and "this time only" in panel.message.value
    # The panel refreshed: anna is now in the suppressions tab and no longer "new".
    assert "anna@a.example" in panel.tables["suppressions"]["email"].tolist()
    assert panel.would_suppress == [] and panel.what_if.loc[1, "new"] == 0
    evidence = store.conn.execute("SELECT bounce_count, evidence FROM suppressions WHERE email = 'anna@a.example'").fetchone()
    assert evidence[0] == 3 and '"status": "5.1.1"' in evidence[1]


def test_apply_and_save_the_threshold(store: Store) -> None:
    configure(store, threshold=5, count_policy=True)
    panel = BounceReviewPanel(store)
    panel.threshold_slider.value = 2
    # With count_policy bruno's policy block counts: he reaches 2 as well.
    assert panel.would_suppress == ["anna@a.example", "bruno@b.example"]
    panel.save_threshold.value = True
    panel.apply_button.click()
    assert panel.last_applied == ["anna@a.example", "bruno@b.example"]
    assert load_bounce_settings(store).threshold == 2
    assert "saved as the bounce threshold" in panel.message.value
    assert set(suppressed(store)) == {"anna@a.example", "bruno@b.example", "dario@c.example"}
    assert unsubscribes(store) == 0


def test_counting_options_start_saved_and_change_the_what_if_live(store: Store) -> None:
    with store.transaction():  # carla was sent a message after her soft bounce, which went through
        add_campaign(store, 2, "summer")
        add_delivery(store, 9, 2, "carla@a.example", "sent", "2026-03-20T09:00:00+00:00")
    update_bounce_settings(store, host="127.0.0.1", port=143, user="bounces@example.org", threshold=1,
                           password_ref="env:NK_TEST_UNUSED", count_policy=True, stale_after_days=4000)
    panel = BounceReviewPanel(store)
    assert panel.options() == {"count_policy": True, "stale_after_days": 4000, "reset_on_success": False,
                               "count_unmatched": False}
    assert panel.what_if["would_suppress"].tolist()[:3] == [4, 3, 1]  # bruno's policy block counts
    panel.count_policy.value = False
    assert panel.what_if["would_suppress"].tolist()[:3] == [4, 2, 1]
    panel.reset_on_success.value = True  # carla's soft bounce is forgiven by the later delivery
    assert panel.would_suppress == ["anna@a.example", "bruno@b.example"]
    panel.stale_after_days.value = 30  # every bounce is from March: none counts any more
    assert panel.what_if["would_suppress"].sum() == 0 and panel.apply_button.disabled
    panel.stale_after_days.value = 0  # 0: never stale
    assert panel.would_suppress == ["anna@a.example", "bruno@b.example"]
    panel.apply_button.click()  # one-off, with the options shown
    assert panel.last_applied == ["anna@a.example", "bruno@b.example"]
    saved = load_bounce_settings(store)
    assert (saved.count_policy, saved.stale_after_days, saved.reset_on_success) == (True, 4000, False)


def test_saving_keeps_the_counting_options(store: Store) -> None:
    configure(store, threshold=5, count_policy=True)
    panel = BounceReviewPanel(store)
    panel.count_policy.value = False
    panel.reset_on_success.value = True
    panel.stale_after_days.value = 400  # the March bounces are younger than that
    panel.threshold_slider.value = 1
    panel.save_threshold.value = True
    panel.apply_button.click()
    saved = load_bounce_settings(store)
    assert (saved.threshold, saved.count_policy, saved.stale_after_days, saved.reset_on_success) == (1, False, 400, True)
    panel.stale_after_days.value = 0
    panel.apply_button.click()  # nobody new to suppress: nothing saved, nothing changed
    assert load_bounce_settings(store).stale_after_days == 400


def test_apply_without_bounce_settings(store: Store) -> None:
    panel = BounceReviewPanel(store)
    assert panel.policy_mode.value == "per_kind"  # the default policy: hard 1, soft 3 within 30 days
    panel.policy_mode.value = "single"
    assert panel.threshold_slider.value == 3  # the default
    panel.threshold_slider.value = 1
    panel.save_threshold.value = True
    panel.apply_button.click()  # nothing to save into: a visible error, nothing suppressed
    assert "nk-error" in panel.message.value and "--host" in panel.message.value
    assert set(suppressed(store)) == {"dario@c.example"}
    panel.save_threshold.value = False
    panel.apply_button.click()  # one-off works with the default counting rule
    assert panel.last_applied == ["anna@a.example", "bruno@b.example", "carla@a.example"]
    assert load_bounce_settings(store) is None


def test_fetch_from_a_local_folder(tmp_path: Path) -> None:
    store = open_store(tmp_path / "nk.db")
    configure(store, threshold=2)
    add_campaign(store, 1, "nov")  # the send these bounces are about (unmatched ones do not count)
    add_delivery(store, 1, 1, "gone@example.org", "sent", "2026-11-01T09:00:00+00:00")
    add_delivery(store, 2, 1, "full@example.org", "sent", "2026-11-01T09:00:00+00:00")
    store.conn.commit()
    folder = tmp_path / "bounces"
    folder.mkdir()
    for n, (rcpt, status) in enumerate([("gone@example.org", "5.1.1"), ("full@example.org", "4.2.2"),
                                        ("gone@example.org", "5.1.1")]):
        # Each quotes our Message-ID of that delivery (add_delivery's "<id@test>").
        did = {"gone@example.org": 1, "full@example.org": 2}[rcpt]
        (folder / f"{n}.eml").write_bytes(postfix_dsn(rcpt, status=status, campaign="nov",
                                                      original_message_id=f"<{did}@test>"))
    # Never sent: kept in the "unmatched" tab, counted by nobody.
    (folder / "forged.eml").write_bytes(postfix_dsn("never@example.org", campaign="nov"))
    panel = BounceReviewPanel(store, source_path=folder)
    assert panel.tables["by address"].empty
    panel.fetch_button.click()
    assert panel.last_fetch.fetched == 4
    assert "Fetched 4 new message(s)" in panel.message.value
    assert panel.tables["unmatched"]["address"].tolist() == ["never@example.org"]
    # The saved threshold (2) was applied by the fetch itself.
    assert "gone@example.org" in panel.message.value and set(suppressed(store)) == {"gone@example.org"}
    by_address = panel.tables["by address"].set_index("email")
    assert by_address.loc["gone@example.org", "hard"] == 2 and by_address.loc["full@example.org", "soft"] == 1
    panel.fetch_button.click()  # idempotent: nothing new
    assert panel.last_fetch.fetched == 0
    assert int(panel.tables["by address"]["total"].sum()) == 4


def test_fetch_error_is_shown(store: Store) -> None:
    panel = BounceReviewPanel(store)  # no bounce settings: fetch_bounces cannot know the mailbox
    panel.fetch_button.click()
    assert "nk-error" in panel.message.value and "bounce settings" in panel.message.value


def test_panel_displays_its_widget(store: Store) -> None:
    panel = BounceReviewPanel(store)
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id


def test_the_per_kind_what_if_has_a_control_per_kind_and_saves_them(store: Store) -> None:
    with store.transaction():
        add_bounce(store, 20, "elio@e.example", "complaint", None, "2026-03-04T10:00:00+00:00", "spring")
    panel = BounceReviewPanel(store)  # no settings: the default policy, per kind
    assert (panel.hard_slider.value, panel.soft_slider.value, panel.soft_window_days.value) == (1, 3, 30)
    assert panel.threshold_slider.disabled and not panel.hard_slider.disabled
    # One hard bounce suppresses anna; the complaint elio; the March soft bounces are out of the window.
    assert panel.would_suppress == ["anna@a.example", "elio@e.example"]
    assert "hard 1, soft 3 within 30 days, complaint at once" in panel.what_if_label.value
    panel.suppress_on_complaint.value = False
    assert panel.would_suppress == ["anna@a.example"]
    panel.hard_slider.value = 3
    assert panel.would_suppress == []
    panel.soft_window_days.value = 3650
    panel.soft_slider.value = 1  # every soft bounce now counts: bruno's policy block does not
    assert panel.would_suppress == ["anna@a.example", "bruno@b.example", "carla@a.example"]
    counts = panel.policy_counts.set_index("email")
    assert (counts.loc["bruno@b.example", "soft"], counts.loc["anna@a.example", "hard"]) == (1, 2)

    configure(store, threshold=5)
    panel.save_threshold.value = True
    panel.apply_button.click()
    assert panel.last_applied == ["anna@a.example", "bruno@b.example", "carla@a.example"]
    saved = load_bounce_settings(store)
    assert (saved.hard_threshold, saved.soft_threshold, saved.soft_window_days, saved.suppress_on_complaint) == (
        3, 1, 3650, False)
    assert saved.policy.per_kind and "saved as the bounce threshold" in panel.message.value
    assert BounceReviewPanel(store).policy_mode.value == "per_kind"


def test_the_sender_side_tab_lists_failures_about_us_with_their_remedy(store: Store) -> None:
    with store.transaction():
        add_bounce(store, 30, "anna@a.example", "hard", "5.1.1", "2026-03-04T10:00:00+00:00", "spring")
        store.conn.execute("UPDATE bounces SET reason = 'blocked', diagnostic = ? WHERE id = 30",
                           ("550 5.1.1 <b>blocked</b> using zen.spamhaus.org",))
    panel = BounceReviewPanel(store)
    sender = panel.tables["about the sender"]
    assert sender["reason"].tolist() == ["blocked"] and "blocklist" in sender.loc[0, "remedy"]
    assert "blocked" in panel.tabs.children[list(panel.tables).index("about the sender")].value
    assert "blocked" in panel.tables["by reason"]["reason"].tolist()
def test_the_counting_options_are_saved_from_the_bounce_panel(nk_db) -> None:
    """Issue 19: the bounce panel saves its threshold and counting options without suppressing."""
    import newsletter_kit as nk
    from newsletter_kit.panels import BounceReviewPanel

    store = nk.open_store(nk_db)
    nk.update_bounce_settings(store, host="127.0.0.1", port=1143, user="b@example.org", threshold=3,
                              tls="none", allow_plain_auth=True, password_ref="env:NK_UNUSED")
    panel = BounceReviewPanel(store)
    panel.threshold_slider.value = 2
    panel.count_policy.value = panel.count_unmatched.value = panel.reset_on_success.value = True
    panel.stale_after_days.value = 60
    panel.save_options_button.click()
    saved = nk.load_bounce_settings(store)
    assert saved is not None and "Saved" in panel.message.value
    assert (saved.threshold, saved.count_policy, saved.count_unmatched, saved.reset_on_success,
            saved.stale_after_days) == (2, True, True, True, 60)
    assert nk.list_suppressions(store) == []
