"""Templates that recurse or run away at render time (issue 9, finding 9): each render of a
message is bounded in CPU time and size (newsletter_kit/sandbox.py), ``campaign create``
test-renders against real contacts of the list and refuses the campaign in one line, the dry
run does the same, and a send fails only the message concerned, on time.

No wall-clock time is asserted: the limit is CPU time per message, lowered here so the
runaway cases stop quickly.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import newsletter_kit as nk
from newsletter_kit import sandbox
from newsletter_kit.cli import cli
from newsletter_kit.errors import TemplateError
from newsletter_kit.messages import CampaignRenderer

#: Templates that never finish or would fill the memory, and the words the error uses.
RUNAWAY = {
    "a huge range": ("{% for i in range(10**9) %}x{% endfor %}", "Range too big"),
    "nested loops, no output": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                                "{% endfor %}", "took more than"),
    "nested loops with output": ("{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}"
                                 "{% endfor %}{% endfor %}", "longer than|took more than"),
    # Python's recursion limit, or the clock on a slow machine: whichever comes first.
    "a macro calling itself": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "calls itself|took more than"),
    "a macro calling itself twice": ("{% macro f(n) %}{% if n < 60 %}{{ f(n + 1) }}{{ f(n + 1) }}"
                                     "{% endif %}{% endmacro %}{{ f(0) }}", "took more than"),
    "a recursive loop": ("{% for x in [[1]] recursive %}{{ loop([[1]]) }}{% endfor %}",
                         "calls itself|took more than"),
    "string repetition": ('{{ "x" * 10**9 }}', "more than"),
    "a power": ("{{ 7 ** 1000000 }}", "bits"),
    "a wide filter": ('{{ "x"|center(10**9) }}', "more than"),
    "a wide method": ('{{ "x".ljust(10**9) }}', "more than"),
    "a wide format": ('{{ "%999999999s"|format(1) }}', "more than"),
    "a wide str.format": ('{{ "{:999999999}".format(1) }}', "more than"),
    "doubling by ~": ('{% set ns = namespace(s="x") %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}'
                      '{% endfor %}{{ ns.s|length }}', "more than"),
    "doubling by +": ('{% set ns = namespace(s=[1]) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}'
                      '{% endfor %}{{ ns.s|length }}', "more than"),
    "a field repeated": ("{{ first_name * 10**8 }}", "more than"),
}


@pytest.fixture(autouse=True)
def quick_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "MAX_RENDER_SECONDS", 0.2)


def renderer(html: str, subject: str = "Hi {{ first_name }}") -> CampaignRenderer:
    return CampaignRenderer(campaign="spring", subject=subject, html=html, from_addr="news@example.org",
                            bounce_address="bounces@example.org", signing_key=b"k" * 32)


@pytest.mark.parametrize("source,words", RUNAWAY.values(), ids=RUNAWAY.keys())
@pytest.mark.parametrize("part", ["subject", "html", "text"])
def test_a_runaway_template_is_a_template_error(source, words, part):
    kw = {"html": "<p>hi</p>", "subject": "Hi"}
    if part == "text":
        r = CampaignRenderer(campaign="spring", subject="Hi", html="<p>hi</p>", text=source,
                             from_addr="news@example.org", bounce_address="b@example.org", signing_key=b"k")
    else:
        kw[part] = source
        r = renderer(**kw)
    with pytest.raises(TemplateError, match=words) as caught:
        r.render("ann@example.org", {"first_name": "Ann"}, message_id=r.new_message_id())
    assert "\n" not in str(caught.value) and "ann@example.org" in str(caught.value)


def test_huge_contact_data_in_plain_merge_tags_is_refused():
    r = renderer("<p>{{ bio }}</p>")
    with pytest.raises(TemplateError, match="longer than"):
        r.render("ann@example.org", {"bio": "x" * (sandbox.MAX_OUTPUT + 1)}, message_id=r.new_message_id())


def test_ordinary_templates_render_as_before():
    html = ('{% macro item(n) %}<li>{{ n }}</li>{% endmacro %}<ul>{% for i in range(3) %}{{ item(i) }}'
            '{% endfor %}</ul><p>{{ "%05.1f"|format(3.14159) }} {{ "{}-{}".format(first_name, 2) }} '
            '{{ (first_name ~ "!") * 2 }} {{ 2 ** 10 }} {{ [1, 2] + [3] }}</p>'
            '{% for x in [[1, [2]]] recursive %}{{ x }}{% endfor %}')
    r = renderer(html)
    preview = r.render_preview("ann@example.org", {"first_name": "Ann"})
    assert "<li>0</li><li>1</li><li>2</li>" in preview["html"]
    assert "003.1 Ann-2 Ann!Ann! 1024 [1, 2, 3]" in preview["html"]


def test_limits_hold_in_every_thread():
    """The send path renders in sender threads: each gets its own budget."""
    import threading

    r = renderer(RUNAWAY["nested loops, no output"][0])
    errors: list[BaseException] = []

    def work() -> None:
        try:
            r.render("ann@example.org", {}, message_id=r.new_message_id())
        except TemplateError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 2


# --- campaign create, dry run, send ----------------------------------------------------------


@pytest.fixture
def store(nk_db: Path) -> Any:
    store = nk.open_store(nk_db)
    nk.add_contacts(store, [{"email": f"reader{i}@example.org", "first_name": f"R{i}", "n": "3"}
                            for i in range(5)], list_name="news")
    yield store
    store.close()


def _rows(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("campaigns", "deliveries", "bounces", "suppressions")}
    finally:
        conn.close()


@pytest.mark.parametrize("source,words", RUNAWAY.values(), ids=RUNAWAY.keys())
def test_campaign_create_refuses_a_runaway_template_in_one_line(source, words, store, nk_db, tmp_path):
    html = tmp_path / "t.html"
    html.write_text(f"<p>Hello</p>{source}")
    before = _rows(nk_db)
    result = CliRunner().invoke(cli, ["campaign", "create", "spring", "--list", "news", "--subject", "Hi",
                                      "--html", str(html)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the HTML template fails for reader"), result.stderr
    assert re.search(words, lines[0])
    assert _rows(nk_db) == before  # no campaign saved


def test_create_renders_real_contacts_of_the_list(store):
    """A template that fails only for some contacts' data is caught at create, naming one."""
    nk.add_contacts(store, [{"email": "huge@example.org", "first_name": "H", "n": "100000"}], list_name="news")
    html = "{% for i in range(n|int) %}{% for j in range(n|int) %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateError, match="huge@example.org.*took more than"):
        nk.create_campaign(store, "spring", "news", "Hi", html)
    assert nk.list_campaigns(store) == []
    nk.create_campaign(store, "spring", "all", "Hi", "<p>{{ first_name }}</p>")  # a sane one still works


def _data_bomb(store: Any) -> None:
    """A campaign that passed create, then a contact whose data makes it run away."""
    nk.create_campaign(store, "spring", "news", "Hi {{ first_name }}",
                       "{% for i in range(n|int) %}{% for j in range(n|int) %}{% endfor %}{% endfor %}"
                       "<p>{{ first_name }}</p>")
    nk.add_contacts(store, [{"email": "bomb@example.org", "first_name": "B", "n": "100000"}], list_name="news")


def test_the_dry_run_surfaces_it_in_one_line_and_writes_nothing(store, nk_db, smtp_server):
    srv = smtp_server(tls="none")
    nk.update_smtp_settings(store, host="127.0.0.1", port=srv.port, tls="none", daily_limit=100,
                            from_addr="news@example.org", timezone="Europe/Rome")
    _data_bomb(store)
    before = _rows(nk_db)
    result = CliRunner().invoke(cli, ["campaign", "send", "spring", "--dry-run"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bomb@example.org" in lines[0] and "took more than" in lines[0]
    assert _rows(nk_db) == before and srv.messages == []


def test_a_send_fails_only_the_runaway_message_and_goes_on(store, smtp_server):
    srv = smtp_server(tls="none")
    nk.update_smtp_settings(store, host="127.0.0.1", port=srv.port, tls="none", daily_limit=100,
                            from_addr="news@example.org", timezone="Europe/Rome")
    _data_bomb(store)
    result = CliRunner().invoke(cli, ["campaign", "send", "spring", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(m.rcpt_tos[0] for m in srv.messages) == [f"reader{i}@example.org" for i in range(5)]
    status = json.loads(CliRunner().invoke(cli, ["campaign", "status", "spring", "--json"]).stdout)
    assert (status["sent"], status["failed"], status["pending"]) == (5, 1, 0)
    reason = store.conn.execute("SELECT reason FROM deliveries WHERE email = 'bomb@example.org'").fetchone()[0]
    assert "took more than" in reason
