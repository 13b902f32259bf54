"""`contacts import|list` and `unsubscribes import`: skipped rows on stderr, exit codes, help."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from newsletter_kit.cli import cli
from newsletter_kit.store import open_store


@pytest.fixture
def run(tmp_path):
    db = tmp_path / "nk.db"

    def invoke(*args: str, code: int = 0):
        result = CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False)
        assert result.exit_code == code, result.stdout + result.stderr
        return result

    invoke.db = db
    return invoke


def csv(tmp_path, text, name="c.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def test_import_lists_skipped_rows_on_stderr_and_exits_0(run, tmp_path):
    path = csv(tmp_path, "Email;First Name\nann@example.org;Ann\nnope;Bob\nAnn <a@example.org>;X\n")
    result = run("contacts", "import", path, "--list", "vip")
    assert result.stdout == ""
    assert "skipped line 3: 'nope': " in result.stderr
    assert "skipped line 4: 'Ann <a@example.org>': " in result.stderr
    assert "contacts (vip): 1 new, 0 updated, 2 skipped" in result.stderr
    listed = json.loads(run("contacts", "list", "--list", "vip", "--json").stdout)
    assert listed == [{"contact_id": 1, "email": "ann@example.org", "first_name": "Ann"}]
    assert run("contacts", "list").stdout == "ann@example.org\n"


def test_import_json_report(run, tmp_path):
    result = run("contacts", "import", csv(tmp_path, "email\nann@example.org\nbad\n"), "--json")
    assert json.loads(result.stdout) == {"imported": 1, "updated": 0, "duplicates": 0, "erased": 0, "problems": [
        {"line": 3, "value": "bad", "reason": "An email address must have an @-sign."}]}


@pytest.mark.parametrize("content, encoding, message", [
    ("email\nbad\n", "utf-8", "no valid row, nothing imported: line 2: 'bad'"),
    ("name\nAnn\n", "utf-8", "has no 'email' column (columns found: 'name')"),
    ("email\nzoë@example.org\n", "latin-1", "is not UTF-8 at byte 8 (line 2"),
    ("", "utf-8", "is empty"),
])
def test_import_fails_with_one_line_when_nothing_can_be_imported(run, tmp_path, content, encoding, message):
    result = run("contacts", "import", csv(tmp_path, content, encoding=encoding), code=1)
    lines = result.stderr.strip().splitlines()
    assert message in lines[-1] and "Traceback" not in result.stderr
    with open_store(run.db) as store:
        assert store.conn.execute("SELECT count(*) FROM contacts").fetchone()[0] == 0


def test_import_of_a_missing_file_fails_cleanly(run, tmp_path):
    result = run("contacts", "import", str(tmp_path / "nope.csv"), code=1)
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_unsubscribes_import_per_campaign_and_global(run, tmp_path):
    path = csv(tmp_path, "email\nann@example.org\nbad row\n")
    result = run("unsubscribes", "import", path, "--campaign", "not-yet-created")
    assert "unsubscribes (campaign 'not-yet-created'): 1 new, 0 updated, 1 skipped" in result.stderr
    assert "skipped line 3: 'bad row'" in result.stderr
    result = run("unsubscribes", "import", path)
    assert "unsubscribes: 1 new" in result.stderr
    result = run("unsubscribes", "import", path)
    assert "0 new, 1 updated" in result.stderr
    with open_store(run.db) as store:
        assert sorted(store.conn.execute("SELECT coalesce(campaign, '') FROM unsubscribes").fetchall()) == [
            ("",), ("not-yet-created",)]


def test_contacts_list_of_an_unknown_list_fails(run):
    run("init")
    result = run("contacts", "list", "--list", "nope", code=1)
    assert "no contact list named 'nope'" in result.stderr


@pytest.mark.parametrize("command", [("contacts",), ("contacts", "import"), ("contacts", "list"),
                                     ("unsubscribes",), ("unsubscribes", "import")])
def test_every_command_has_help(command):
    group = cli
    for name in command:
        group = group.commands[name]
    assert group.help and group.help.strip()
    for param in getattr(group, "params", []):
        if param.param_type_name == "option":
            assert param.help, f"{command} {param.name} has no help"
