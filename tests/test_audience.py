"""Contacts, unsubscribes and the exclusion policy, on a real SQLite store."""

from __future__ import annotations

import json
import math

import pytest

from newsletter_kit import audience as au
from newsletter_kit.errors import ImportFailed, ValidationError
from newsletter_kit.store import now_iso, open_store


@pytest.fixture
def store(nk_db):
    with open_store(nk_db) as s:
        yield s


def write(tmp_path, content, name="c.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(content.encode(encoding) if isinstance(content, str) else content)
    return path


def contacts(store):
    rows = store.conn.execute("SELECT email, fields FROM contacts ORDER BY id").fetchall()
    return {email: json.loads(fields) for email, fields in rows}


def suppress(store, email, reason="threshold"):
    store.conn.execute("INSERT INTO suppressions (email, since, reason, bounce_count) VALUES (?, ?, ?, 3)",
                       (email, now_iso(), reason))
    store.conn.commit()


# --- importing contacts -------------------------------------------------------------------


def test_semicolon_bom_crlf_and_quoted_commas(store, tmp_path):
    path = write(tmp_path, "\ufeffEmail;First Name;City\r\nann@example.org;Ann;\"Rome, Italy\"\r\n"
                           "BOB@example.net;Bob;\"Milan; north\"\r\n")
    report = au.import_contacts(store, path)
    assert (report.imported, report.updated, report.problems) == (2, 0, [])
    assert contacts(store) == {"ann@example.org": {"first_name": "Ann", "city": "Rome, Italy"},
                               "bob@example.net": {"first_name": "Bob", "city": "Milan; north"}}


def test_comma_file_with_quoted_commas(store, tmp_path):
    path = write(tmp_path, 'email,name\nann@example.org,"Lee, Ann"\n')
    au.import_contacts(store, path)
    assert contacts(store)["ann@example.org"] == {"name": "Lee, Ann"}


def test_invalid_rows_are_reported_with_physical_line_numbers_and_valid_rows_kept(store, tmp_path):
    path = write(tmp_path, 'email,note\nann@example.org,"two\nlines"\nnot-an-address,x\n\n'
                           'Bob <bob@example.org>,y\ncarl@example.org,z\n')
    report = au.import_contacts(store, path)
    assert report.imported == 2
    assert [(p.line, p.value) for p in report.problems] == [
        (4, "not-an-address"), (6, "Bob <bob@example.org>")]
    assert "@-sign" in report.problems[0].reason
    assert "not-an-address" not in report.problems[0].reason  # the value is reported once
    assert str(report.problems[1]).startswith("line 6: 'Bob <bob@example.org>': ")
    assert set(contacts(store)) == {"ann@example.org", "carl@example.org"}


def test_duplicates_differing_in_case_merge_and_the_later_row_wins(store, tmp_path):
    path = write(tmp_path, "email,name\nAnn@Example.org,First\nann@example.org,Second\n")
    report = au.import_contacts(store, path)
    assert (report.imported, report.duplicates) == (1, 1)
    assert "duplicate" in report.summary()
    assert contacts(store) == {"ann@example.org": {"name": "Second"}}


def test_reimport_updates_and_merges_fields(store, tmp_path):
    au.import_contacts(store, write(tmp_path, "email,name,city\nann@example.org,Ann,Rome\n", "a.csv"))
    report = au.import_contacts(store, write(tmp_path, "email,city,plan\nANN@example.org,Milan,gold\n"
                                                       "bob@example.org,Turin,free\n", "b.csv"))
    assert (report.imported, report.updated) == (1, 1)
    assert contacts(store)["ann@example.org"] == {"name": "Ann", "city": "Milan", "plan": "gold"}


def test_latin1_file_fails_clearly_and_writes_nothing(store, tmp_path):
    path = write(tmp_path, "email,name\nann@example.org,Zoë\n", encoding="latin-1")
    with pytest.raises(ImportFailed, match=r"not UTF-8 at byte 29 \(line 2: .*save it as UTF-8"):
        au.import_contacts(store, path)
    assert contacts(store) == {}


def test_missing_email_column_names_the_columns_found(store, tmp_path):
    with pytest.raises(ImportFailed, match=r"no 'email' column \(columns found: 'mail', 'name'\)"):
        au.import_contacts(store, write(tmp_path, "mail,name\nann@example.org,Ann\n"))


@pytest.mark.parametrize("content, message", [
    ("", "is empty"), ("  \n\n", "is empty"), ("email\n", "no contact to import"),
    ("email\nnope\n@x\n", "no valid row, nothing imported: line 2"),
])
def test_files_without_a_valid_row_fail_and_write_nothing(store, tmp_path, content, message):
    with pytest.raises(ImportFailed, match=message):
        au.import_contacts(store, write(tmp_path, content))
    assert contacts(store) == {} and au.list_names(store) == []


def test_unreadable_file_fails_clearly(store, tmp_path):
    with pytest.raises(ImportFailed, match="cannot read"):
        au.import_contacts(store, tmp_path / "missing.csv")


def test_a_row_with_more_cells_than_columns_is_reported(store, tmp_path):
    report = au.import_contacts(store, write(tmp_path, "email,name\nann@example.org,Ann\n"
                                                       "bob@example.org,Bob,extra\n"))
    assert report.imported == 1
    assert report.problems[0].line == 3 and "3 cells" in report.problems[0].reason


def test_duplicated_column_names_fail(store, tmp_path):
    with pytest.raises(ImportFailed, match="first_name more than once"):
        au.import_contacts(store, write(tmp_path, "email,First Name,first_name\na@example.org,A,B\n"))


def test_contacts_join_the_named_list_and_all(store, tmp_path):
    au.import_contacts(store, write(tmp_path, "email\nann@example.org\n", "a.csv"), list_name="vip")
    au.import_contacts(store, write(tmp_path, "email\nbob@example.org\n", "b.csv"))
    assert au.list_names(store) == ["all", "vip"]
    assert au.list_contacts(store, "vip")["email"].tolist() == ["ann@example.org"]
    assert au.list_contacts(store)["email"].tolist() == ["ann@example.org", "bob@example.org"]


def test_add_contacts_takes_dataframe_records_with_gaps(store):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"email": ["ann@example.org", "bob@example.org"], "age": [31, None],
                          "city": ["Rome", float("nan")]})
    report = au.add_contacts(store, frame.to_dict("records"))
    assert report.imported == 2
    stored = contacts(store)
    assert stored["ann@example.org"] == {"age": 31.0, "city": "Rome"}
    assert stored["bob@example.org"] == {}  # gaps are "no value", not NaN
    assert not any(isinstance(v, float) and math.isnan(v) for f in stored.values() for v in f.values())


def test_add_contacts_reports_rows_by_position(store):
    report = au.add_contacts(store, [{"email": "x"}, {"email": "ann@example.org"}, {}])
    assert [p.line for p in report.problems] == [1, 3]


def test_a_big_import_is_one_transaction(store, tmp_path):
    rows = "".join(f"user{i}@example.org,Name {i}\n" for i in range(20_000))
    report = au.import_contacts(store, write(tmp_path, "email,name\n" + rows + "bad,row\n"))
    assert report.imported == 20_000 and len(report.problems) == 1
    assert au.list_contacts(store)["contact_id"].is_monotonic_increasing


# --- unsubscribes -------------------------------------------------------------------------


def test_add_unsubscribe_is_idempotent_per_campaign(store):
    assert au.add_unsubscribe(store, "Ann@example.org", campaign="spring") is True
    assert au.add_unsubscribe(store, "ann@example.org", campaign="spring") is False
    assert au.add_unsubscribe(store, "ann@example.org") is True
    assert au.add_unsubscribe(store, "ann@example.org", campaign=None) is False
    assert store.conn.execute("SELECT count(*) FROM unsubscribes").fetchone()[0] == 2


def test_import_unsubscribes_for_a_campaign_that_does_not_exist_yet(store, tmp_path):
    path = write(tmp_path, "Email\nann@example.org\nANN@example.org\nbroken\n")
    report = au.import_unsubscribes(store, path, campaign="summer")
    assert (report.imported, report.duplicates, [p.line for p in report.problems]) == (1, 1, [4])
    again = au.import_unsubscribes(store, path, campaign="summer")
    assert (again.imported, again.updated) == (0, 1)
    assert store.conn.execute("SELECT email, campaign, source FROM unsubscribes").fetchall() == [
        ("ann@example.org", "summer", "csv")]


def test_import_unsubscribes_without_campaign_is_global_or_follows_a_campaign_column(store, tmp_path):
    au.import_unsubscribes(store, write(tmp_path, "email,campaign\nann@example.org,spring\n"
                                                  "bob@example.org,\n"))
    assert sorted(store.conn.execute("SELECT email, campaign FROM unsubscribes").fetchall(),
                  key=str) == [("ann@example.org", "spring"), ("bob@example.org", None)]


# --- the audience -------------------------------------------------------------------------


@pytest.fixture
def crowd(store):
    """ann: opted out of spring; bob: of autumn; cat: of everything; dan: suppressed; eve: none."""
    au.add_contacts(store, [{"email": f"{n}@example.org", "name": n.title()}
                            for n in ("ann", "bob", "cat", "dan", "eve")])
    au.add_contacts(store, [{"email": "fay@example.org"}], list_name="other")
    au.add_unsubscribe(store, "ann@example.org", campaign="spring")
    au.add_unsubscribe(store, "bob@example.org", campaign="autumn")
    au.add_unsubscribe(store, "cat@example.org")
    suppress(store, "dan@example.org")
    return store


def emails(recipients):
    return [r.email for r in recipients]


def test_campaign_policy_excludes_only_this_campaigns_opt_outs(crowd):
    assert emails(au.eligible_recipients(crowd, "spring", "all", "campaign")) == [
        "bob@example.org", "eve@example.org", "fay@example.org"]
    assert emails(au.eligible_recipients(crowd, "autumn", "all", "campaign")) == [
        "ann@example.org", "eve@example.org", "fay@example.org"]


def test_global_policy_excludes_every_opt_out(crowd):
    assert emails(au.eligible_recipients(crowd, "spring", "all", "global")) == [
        "eve@example.org", "fay@example.org"]


def test_recipients_carry_id_and_fields_and_follow_the_list(crowd):
    eve, = au.eligible_recipients(crowd, "spring", "all", "global", limit=1)
    assert eve == au.Recipient(eve.contact_id, "eve@example.org", {"name": "Eve"})
    assert emails(au.eligible_recipients(crowd, "spring", "other", "global")) == ["fay@example.org"]
    assert au.eligible_recipients(crowd, "spring", "no such list", "global") == []
    after = au.eligible_recipients(crowd, "spring", "all", "global", after_id=eve.contact_id)
    assert emails(after) == ["fay@example.org"]


def test_the_audience_is_recomputed_at_every_call(crowd):
    before = emails(au.eligible_recipients(crowd, "spring", "all", "campaign"))
    au.add_unsubscribe(crowd, "eve@example.org", campaign="spring", source="mailto")
    suppress(crowd, "bob@example.org")
    after = emails(au.eligible_recipients(crowd, "spring", "all", "campaign"))
    assert set(before) - set(after) == {"eve@example.org", "bob@example.org"}


def test_the_policy_defaults_to_the_smtp_settings(crowd):
    from newsletter_kit.settings import update_smtp_settings

    assert "bob@example.org" in emails(au.eligible_recipients(crowd, "spring"))
    update_smtp_settings(crowd, host="127.0.0.1", port=2525, tls="none", daily_limit=10,
                         from_addr="news@example.org", exclusion="global")
    assert "bob@example.org" not in emails(au.eligible_recipients(crowd, "spring"))
    with pytest.raises(ValidationError):
        au.eligible_recipients(crowd, "spring", "all", "everyone")


def test_audience_frame_says_why(crowd):
    frame = au.audience_frame(crowd, "spring", "all", "global").set_index("email")
    assert list(frame.columns[:3]) == ["contact_id", "excluded", "reason"]
    assert frame["reason"].to_dict() == {
        "ann@example.org": "unsubscribed from this campaign",
        "bob@example.org": "unsubscribed from campaign autumn (global policy)",
        "cat@example.org": "unsubscribed from all campaigns",
        "dan@example.org": "suppressed after bounces",
        "eve@example.org": None,
        "fay@example.org": None,
    }
    assert frame["excluded"].dtype == bool
    assert frame.loc["ann@example.org", "name"] == "Ann"
    campaign = au.audience_frame(crowd, "spring", "all", "campaign").set_index("email")
    assert campaign.loc["bob@example.org", "reason"] is None
    assert campaign.loc["dan@example.org", "reason"] == "suppressed after bounces"


def test_audience_frame_and_eligible_recipients_agree(crowd):
    for policy in ("campaign", "global"):
        frame = au.audience_frame(crowd, "spring", "all", policy)
        assert frame.loc[~frame["excluded"], "email"].tolist() == emails(
            au.eligible_recipients(crowd, "spring", "all", policy))


def test_manual_suppressions_say_so_and_field_names_never_clash(store):
    au.add_contacts(store, [{"email": "ann@example.org", "reason": "vip", "excluded": "no"}])
    suppress(store, "ann@example.org", reason="manual")
    frame = au.audience_frame(store, "spring", "all", "campaign")
    assert frame.loc[0, "reason"] == "suppressed by hand"
    assert frame.loc[0, "field_reason"] == "vip" and frame.loc[0, "field_excluded"] == "no"


def test_empty_list_gives_an_empty_frame_with_the_columns(store):
    frame = au.audience_frame(store, "spring", "all", "campaign")
    assert list(frame.columns) == ["contact_id", "email", "excluded", "reason"] and frame.empty


def test_the_docstring_examples_run():
    import doctest

    assert doctest.testmod(au, optionflags=doctest.ELLIPSIS).failed == 0
