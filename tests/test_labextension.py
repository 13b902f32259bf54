"""The JupyterLab extension: shipped bundle, server extension, launcher cards, sidebar, status bar.

- The bundle in newsletter_kit/labextension/ was built from the TypeScript sources in
  labextension/ as they are now (their hash, recorded by the build, is recomputed here).
- A wheel carries the bundle and the server's config; `.venv`'s jupyter lists both enabled.
- GET /newsletter-kit/status and POST /newsletter-kit/notebooks behind the server's token.
- In JupyterLab + headless Chromium: the launcher's Newsletter cards open their notebook in the
  file browser's folder without overwriting a file, and the sidebar and status bar show the
  quota and campaigns of a real store (sent to an aiosmtpd server by the CLI) and follow a send.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

import newsletter_kit as nk
from newsletter_kit.overview import overview_of_path
from tests.test_browser import ARTIFACTS, ROOT, Lab, jupyterlab, page  # noqa: F401 (fixtures)

BUNDLE = ROOT / "newsletter_kit" / "labextension"
SOURCES = ROOT / "labextension"
JUPYTER = Path(sys.executable).parent / "jupyter"


def _source_hash() -> tuple[str, list[str]]:
    """What labextension/scripts/source-hash.mjs computes: "path\\0sha256\\n" per file, sorted."""
    record = json.loads((BUNDLE / "build-source.json").read_text())
    names = ["install.json", "package.json", "package-lock.json", "tsconfig.json", "schema", "src", "style"]
    files = sorted(p.relative_to(SOURCES).as_posix() for name in names
                   for p in ([SOURCES / name] if (SOURCES / name).is_file() else (SOURCES / name).rglob("*"))
                   if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path}\0{hashlib.sha256((SOURCES / path).read_bytes()).hexdigest()}\n".encode())
    assert record["files"] == files, "labextension/ gained or lost a source file since the last build"
    return digest.hexdigest(), record["files"]


def test_shipped_bundle_was_built_from_the_current_sources():
    record = json.loads((BUNDLE / "build-source.json").read_text())
    current, _ = _source_hash()
    assert record["sources"] == current, (
        "newsletter_kit/labextension/ is stale: run `cd labextension && npm ci && npm run build` "
        "and commit the bundle")
    meta = json.loads((BUNDLE / "package.json").read_text())
    assert (BUNDLE / meta["jupyterlab"]["_build"]["load"]).is_file()
    assert json.loads((SOURCES / "package.json").read_text())["name"] == meta["name"] == "newsletter-kit"
    assert (SOURCES / "package-lock.json").is_file()


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _listing(args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run([str(JUPYTER), *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return _plain(proc.stdout + proc.stderr)


def test_venv_jupyter_lists_both_extensions_enabled(tmp_path: Path):
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}  # no user config counts
    labext = _listing(["labextension", "list"], env)
    assert re.search(r"newsletter-kit v0\.1\.0 enabled\s+OK \(python, newsletter_kit\)", labext), labext
    server = _listing(["server", "extension", "list"], env)
    assert re.search(r"newsletter_kit\.serverext enabled", server), server
    assert re.search(r"newsletter_kit\.serverext \S* ?OK", server), server


def test_wheel_carries_the_bundle_the_server_config_and_the_notebook_templates(tmp_path: Path):
    uv = Path(sys.executable).parent / "uv"
    proc = subprocess.run([str(uv), "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("newsletter_kit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        data = "newsletter_kit-0.1.0.data/data/"
        bundle = {f"{data}share/jupyter/labextensions/newsletter-kit/{p.relative_to(BUNDLE).as_posix()}"
                  for p in BUNDLE.rglob("*") if p.is_file()}
        assert bundle <= names
        assert f"{data}etc/jupyter/jupyter_server_config.d/newsletter_kit.json" in names
        assert f"{data}share/jupyter/lab/settings/overrides.d/newsletter-kit.json" in names
        for name in ("01_settings", "02_campaign", "03_bounce_review"):
            shipped = archive.read(f"newsletter_kit/notebook_templates/{name}.ipynb")
            assert shipped == (ROOT / "notebooks" / f"{name}.ipynb").read_bytes()


def test_the_status_does_not_import_pandas(nk_db: Path):
    code = ("import sys, json; import newsletter_kit.serverext; from newsletter_kit.overview import "
            "overview_of_path; overview_of_path(sys.argv[1]);"
            "print(json.dumps(sorted(m for m in ('pandas', 'numpy', 'matplotlib', 'ipywidgets') if m in sys.modules)))")
    _store_with_a_campaign(nk_db, port=2525)
    proc = subprocess.run([sys.executable, "-c", code, str(nk_db)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


# --- a real store: SMTP settings for an aiosmtpd server, contacts, a campaign ------------------


def _store_with_a_campaign(db: Path, port: int, contacts: int = 12) -> None:
    store = nk.open_store(db)
    nk.update_smtp_settings(store, host="127.0.0.1", port=port, tls="none", daily_limit=500,
                            from_addr="news@example.org", timezone="UTC")
    nk.add_contacts(store, [{"email": f"reader{i}@example.org"} for i in range(contacts)])
    nk.create_campaign(store, "autumn", "all", "Autumn news", "<p>Hello</p>")
    store.close()


def _send(db: Path, limit: int) -> None:
    proc = subprocess.run([sys.executable, "-m", "newsletter_kit", "--db", str(db), "campaign", "send", "autumn",
                           "--limit", str(limit)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def _get(lab: Lab, path: str, token: bool = True) -> tuple[int, dict]:
    url = lab.url(path) if token else f"http://127.0.0.1:{lab.port}/{path}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def _post(lab: Lab, path: str, body: dict, token: bool = True) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {lab.token}"
    request = urllib.request.Request(f"http://127.0.0.1:{lab.port}/{path}", data=json.dumps(body).encode(),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_status_endpoint_serves_the_store_behind_the_token(jupyterlab: Lab, smtp_server, nk_db: Path):
    server = smtp_server(tls="none")
    _store_with_a_campaign(nk_db, server.port)
    _send(nk_db, 5)
    assert _get(jupyterlab, "newsletter-kit/status", token=False)[0] == 403
    code, answer = _get(jupyterlab, "newsletter-kit/status")
    assert code == 200
    expected = overview_of_path(nk_db)
    from importlib import metadata

    assert answer.pop("server_version") == metadata.version("newsletter_kit")
    assert {k: v for k, v in answer.items() if k != "generated_at"} == {
        k: v for k, v in expected.items() if k != "generated_at"}
    assert answer["quota"]["used"] == 5 and answer["quota"]["limit"] == 500
    (campaign,) = answer["campaigns"]
    assert (campaign["name"], campaign["sent"], campaign["pending"]) == ("autumn", 5, 7)
    assert len(server.messages) == 5


def test_notebooks_endpoint_never_overwrites(jupyterlab: Lab):
    work = jupyterlab.root / "work"
    work.mkdir()
    (work / "01_settings.ipynb").write_text("mine", encoding="utf-8")
    assert _post(jupyterlab, "newsletter-kit/notebooks", {"template": "settings", "folder": "work"},
                 token=False)[0] == 403
    assert _post(jupyterlab, "newsletter-kit/notebooks", {"template": "settings", "folder": "work"}) == (
        200, {"path": "work/01_settings.ipynb", "created": False})
    assert (work / "01_settings.ipynb").read_text(encoding="utf-8") == "mine"
    assert _post(jupyterlab, "newsletter-kit/notebooks", {"template": "bounce_review", "folder": "work"}) == (
        200, {"path": "work/03_bounce_review.ipynb", "created": True})
    shipped = json.loads((ROOT / "notebooks" / "03_bounce_review.ipynb").read_text(encoding="utf-8"))
    written = json.loads((work / "03_bounce_review.ipynb").read_text(encoding="utf-8"))
    assert [c["source"] for c in written["cells"]] == [c["source"] for c in shipped["cells"]]
    paths = [_post(jupyterlab, "newsletter-kit/notebooks", {"template": "campaign", "folder": "work"})[1]["path"]
             for _ in range(3)]
    assert paths == ["work/02_campaign.ipynb", "work/02_campaign-2.ipynb", "work/02_campaign-3.ipynb"]
    code, error = _post(jupyterlab, "newsletter-kit/notebooks", {"template": "../../etc", "folder": "work"})
    assert code == 400 and "unknown notebook template" in error["message"]
    assert _post(jupyterlab, "newsletter-kit/notebooks", {"template": "settings", "folder": "nowhere"})[0] == 404


def test_notebooks_endpoint_never_writes_through_a_planted_link(jupyterlab: Lab, tmp_path: Path):
    """A link at a notebook's name (to nothing, or to a file outside) is never written through."""
    work, outside = jupyterlab.root / "shared", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "03_bounce_review.ipynb").symlink_to(outside / "created.ipynb")   # dangling
    (work / "02_campaign.ipynb").symlink_to(outside / "nothing.ipynb")        # dangling
    code, error = _post(jupyterlab, "newsletter-kit/notebooks", {"template": "bounce_review", "folder": "shared"})
    # refused: a link that leaves the server root (403), or one to nothing inside it (409)
    assert code in (403, 409) and ("symbolic link" in error["message"] or "link" in error["message"])
    assert _post(jupyterlab, "newsletter-kit/notebooks", {"template": "campaign", "folder": "shared"}) == (
        200, {"path": "shared/02_campaign-2.ipynb", "created": True})
    assert list(outside.iterdir()) == []
    assert not (work / "02_campaign-2.ipynb").is_symlink()
def _post_raw(lab: Lab, path: str, data: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{lab.port}/{path}", data=data, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"token {lab.token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.parametrize("body, words", [
    (b'["settings"]', "must be a JSON object"),
    (b'"settings"', "must be a JSON object"),
    (b'{"template": "settings"\xff}', "not UTF-8"),
    (b'{"template": ["settings"]}', "unknown notebook template"),
    (b'{"template": {"a": 1}}', "unknown notebook template"),
    (b'{"template": "settings", "folder": 7}', "folder must be a path"),
    (b'{"template": ', "not JSON"),
])
def test_notebooks_endpoint_answers_a_bad_body_with_a_clear_400(jupyterlab: Lab, body: bytes, words: str):
    code, error = _post_raw(jupyterlab, "newsletter-kit/notebooks", body)
    assert code == 400 and words in error["message"], error


def test_notebooks_endpoint_refuses_links_that_leave_the_server_root(jupyterlab: Lab, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    links = jupyterlab.root / "links"
    links.mkdir()
    (links / "01_settings.ipynb").symlink_to(outside / "planted.ipynb")  # dangling: nothing there yet
    (links / "02_campaign.ipynb").symlink_to(outside / "c.ipynb")
    (jupyterlab.root / "away").symlink_to(outside, target_is_directory=True)
    for template, folder in (("settings", "links"), ("bounce_review", "away")):
        code, error = _post(jupyterlab, "newsletter-kit/notebooks", {"template": template, "folder": folder})
        assert code in (403, 404) and "Traceback" not in json.dumps(error), (template, error)
    # A new campaign takes the next free name instead: nothing is written through the link.
    code, answer = _post(jupyterlab, "newsletter-kit/notebooks", {"template": "campaign", "folder": "links"})
    assert code == 200 and answer["path"] == "links/02_campaign-2.ipynb"
    assert not (links / "02_campaign-2.ipynb").is_symlink()
    assert list(outside.iterdir()) == []


# --- in the browser -----------------------------------------------------------------------


def _wait_for_lab(page, lab: Lab, path: str = "lab") -> None:
    page.set_default_timeout(60_000)
    page.goto(lab.url(path))
    page.wait_for_function("() => !!window.jupyterapp")
    page.evaluate("() => window.jupyterapp.restored")


def test_launcher_cards_open_their_notebook_in_the_current_folder(jupyterlab: Lab, page):
    work = jupyterlab.root / "work"
    work.mkdir()
    (work / "03_bounce_review.ipynb").write_text(
        (ROOT / "notebooks" / "01_settings.ipynb").read_text(encoding="utf-8"), encoding="utf-8")
    before = (work / "03_bounce_review.ipynb").read_bytes()
    _wait_for_lab(page, jupyterlab, "lab/tree/work")
    section = page.locator(".jp-Launcher-section", has=page.locator(".jp-Launcher-sectionTitle",
                                                                      has_text="Newsletter"))
    section.wait_for()
    cards = section.locator(".jp-LauncherCard")
    assert cards.all_inner_texts() == ["Settings", "New campaign", "Bounce review"]
    ARTIFACTS.mkdir(exist_ok=True)
    section.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "labextension-launcher.png"))

    expected = {"Settings": "01_settings.ipynb", "New campaign": "02_campaign.ipynb",
                "Bounce review": "03_bounce_review.ipynb"}
    for label, name in expected.items():
        page.evaluate("() => window.jupyterapp.commands.execute('launcher:create', {cwd: 'work'})")
        card = page.locator(".jp-Launcher-section", has=page.locator(
            ".jp-Launcher-sectionTitle", has_text="Newsletter")).locator(".jp-LauncherCard", has_text=label).last
        card.click()
        page.wait_for_function(
            "(path) => { const w = window.jupyterapp.shell.currentWidget;"
            " return !!(w && w.context && w.context.path === path); }", arg=f"work/{name}")
        assert (work / name).is_file()
    assert (work / "03_bounce_review.ipynb").read_bytes() == before  # opened, not overwritten
    shipped = json.loads((ROOT / "notebooks" / "02_campaign.ipynb").read_text(encoding="utf-8"))
    written = json.loads((work / "02_campaign.ipynb").read_text(encoding="utf-8"))
    assert [c["source"] for c in written["cells"]] == [c["source"] for c in shipped["cells"]]


def _sidebar_numbers(page) -> dict:
    return page.evaluate("""() => {
        const q = document.querySelector('.nk-lab-sidebar .nk-lab-quota');
        const c = document.querySelector('.nk-lab-sidebar .nk-lab-campaign[data-campaign="autumn"]');
        return {used: q && q.dataset.used, limit: q && q.dataset.limit,
                sent: c && c.dataset.sent, pending: c && c.dataset.pending, failed: c && c.dataset.failed,
                unknown: c && c.dataset.unknown, finish: c && c.dataset.finish,
                suppressed: document.querySelector('.nk-lab-sidebar .nk-lab-suppressed').dataset.suppressed,
                statusbar: document.querySelector('.nk-lab-statusbar').textContent};
    }""")


def test_sidebar_and_status_bar_follow_a_send(jupyterlab: Lab, page, smtp_server, nk_db: Path):
    server = smtp_server(tls="none")
    _store_with_a_campaign(nk_db, server.port, contacts=700)
    _send(nk_db, 45)
    _wait_for_lab(page, jupyterlab)
    page.locator(".jp-SideBar [data-id='newsletter-kit-sidebar']").click()
    sidebar = page.locator(".nk-lab-sidebar")
    sidebar.wait_for(state="visible")
    page.locator(".nk-lab-campaign[data-campaign='autumn']").wait_for()
    numbers = _sidebar_numbers(page)
    assert numbers == {"used": "45", "limit": "500", "sent": "45", "pending": "655", "failed": "0",
                       "unknown": "0", "finish": numbers["finish"], "suppressed": "0",
                       "statusbar": "Newsletter 45/500 today"}
    # 655 left at 455 today then 500 a day: the day after today.
    expected_finish = nk.forecast_finish(nk.open_store(nk_db), "autumn")
    assert numbers["finish"] == expected_finish.isoformat()
    assert "45 / 500" in sidebar.locator(".nk-lab-quota-text").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    sidebar.screenshot(path=str(ARTIFACTS / "labextension-sidebar.png"))

    _send(nk_db, 30)  # from outside JupyterLab: the sidebar polls on its own
    page.wait_for_function("() => document.querySelector('.nk-lab-statusbar').textContent"
                           " === 'Newsletter 75/500 today'")
    numbers = _sidebar_numbers(page)
    assert (numbers["used"], numbers["sent"], numbers["pending"]) == ("75", "75", "625")
    page.screenshot(path=str(ARTIFACTS / "labextension-sidebar-after-send.png"))

    # The sidebar's button opens the notebook in the file browser's folder (here the root).
    sidebar.locator("button[data-template='bounce_review']").click()
    page.wait_for_function("() => { const w = window.jupyterapp.shell.currentWidget;"
                           " return !!(w && w.context && w.context.path === '03_bounce_review.ipynb'); }")


def test_overview_never_creates_or_migrates_a_store(tmp_path: Path):
    import sqlite3

    from newsletter_kit.store import SCHEMA_VERSION

    missing = tmp_path / "missing" / "newsletter.db"
    assert overview_of_path(missing)["exists"] is False
    assert not missing.parent.exists()
    being_made = tmp_path / "new.db"
    sqlite3.connect(being_made).close()  # what another process's open_store starts with
    assert overview_of_path(being_made)["exists"] is False
    assert sqlite3.connect(being_made).execute("PRAGMA user_version").fetchone()[0] == 0
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    answer = overview_of_path(newer)
    assert answer["error"] == (f"the store {newer} has schema version {SCHEMA_VERSION + 1}, this newsletter_kit "
                               f"reads version {SCHEMA_VERSION}: open it once with `newsletter-kit init`")
    relative = overview_of_path(Path("data") / "newsletter.db", root=tmp_path)
    assert relative["store"] == str(tmp_path / "data" / "newsletter.db")


def test_overview_sees_every_commit_of_a_process_that_keeps_the_store_open(nk_db: Path):
    """The poll caches what only the data decides; each commit (WAL append, or a rewrite after a
    checkpoint) must still show at the next poll."""
    import sqlite3

    _store_with_a_campaign(nk_db, port=2525)
    first = overview_of_path(nk_db)
    writer = sqlite3.connect(nk_db)
    try:
        for n in range(1, 4):
            if n == 3:
                writer.execute("PRAGMA wal_checkpoint(RESTART)")
            writer.execute("INSERT INTO suppressions (email, since, reason) VALUES (?, ?, 'manual')",
                           (f"gone{n}@example.org", "2026-11-30T00:00:00+00:00"))
            writer.commit()
            assert overview_of_path(nk_db)["suppressed"] == first["suppressed"] + n
            assert overview_of_path(nk_db)["suppressed"] == first["suppressed"] + n  # the cached answer
    finally:
        writer.close()
    fresh = overview_of_path(nk_db)
    assert fresh["campaigns"] == first["campaigns"]


def test_the_frontend_and_the_server_extension_are_one_version():
    """The sidebar compares the server's version (in every status answer) with its own and says
    so when they differ (a page left open across an upgrade): both must come from one release."""
    from importlib import metadata

    from newsletter_kit import serverext

    frontend = re.search(r"FRONTEND_VERSION = '([^']+)'", (ROOT / "labextension" / "src" / "model.ts").read_text())
    package = json.loads((ROOT / "labextension" / "package.json").read_text())["version"]
    assert frontend is not None and frontend[1] == package == metadata.version("newsletter_kit") == serverext.__version__
    bundle = "".join(p.read_text(errors="replace") for p in (ROOT / "newsletter_kit" / "labextension" / "static").glob("*.js"))
    assert "server_version" in bundle and "nk-lab-unreadable" in bundle


def test_the_settings_schema_is_served_and_the_status_reads_the_store_it_names(jupyterlab: Lab, tmp_path: Path):
    """JupyterLab's Settings Editor shows "Newsletter" (schema/plugin.json): refresh interval,
    status bar item, store to show; the status endpoint reads a store named inside the root."""
    def get(path: str, query: str = "") -> tuple[int, dict]:
        url = f"http://127.0.0.1:{jupyterlab.port}/{path}?token={jupyterlab.token}{query}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    code, answer = get("lab/api/settings/newsletter-kit:plugin")
    assert code == 200, answer
    properties = answer["schema"]["properties"]
    assert {"refreshInterval", "showStatusBar", "store"} <= set(properties)
    assert properties["refreshInterval"]["default"] == 5 and properties["showStatusBar"]["default"] is True
    other = jupyterlab.root / "data" / "other.db"
    other.parent.mkdir(exist_ok=True)
    store = nk.open_store(other)
    nk.update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=77,
                            from_addr="news@example.org", timezone="UTC")
    store.close()
    code, answer = get("newsletter-kit/status", "&store=data/other.db")
    assert code == 200 and answer["store"] == str(other.resolve()) and answer["quota"]["limit"] == 77
    code, answer = get("newsletter-kit/status", "&store=../../etc/passwd")
    assert code == 403 and "outside the server's root" in answer.get("message", "")
