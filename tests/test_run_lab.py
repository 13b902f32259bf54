"""`scripts/run.sh` in headless Chromium: JupyterLab opens on the Launcher and asks no news question.

run.sh itself is started (with NEWSLETTER_KIT_SKIP_SETUP=1: its set-up would sync .venv to the
runtime lock and remove the test packages), with private Jupyter config, user-settings and
runtime folders so that nothing of the developer's own JupyterLab set-up counts.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mailservers import free_port
from tests.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, ROOT, Lab, _require_chromium, _wait_until_up

pytestmark = pytest.mark.browser


def _start_run_sh(tmp_path: Path, port: int, token: str) -> Lab:
    env = {**os.environ, "NEWSLETTER_KIT_SKIP_SETUP": "1", "NEWSLETTER_KIT_DB": str(tmp_path / "nk.db"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-user-settings"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime")}
    log = tmp_path / f"run-sh-{secrets.token_hex(3)}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "run.sh"), "--no-browser", f"--port={port}", "--port-retries=0",
             f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True"],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    lab = Lab(port, token, ROOT / "notebooks", process, log)
    try:
        _wait_until_up(lab)
    except BaseException:
        _stop(lab)
        raise
    return lab


def _stop(lab: Lab) -> None:
    lab.process.terminate()
    try:
        lab.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        lab.process.kill()
        lab.process.wait()


def _get_json(lab: Lab, path: str) -> dict:
    with urllib.request.urlopen(lab.url(path), timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def browser_page() -> Iterator[object]:
    _require_chromium()
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()
            browser.close()


def _open_lab(page, lab: Lab) -> None:
    page.goto(lab.url("lab"))
    page.wait_for_function("() => !!window.jupyterapp")
    page.evaluate("() => window.jupyterapp.restored")


def _current_is_launcher(page) -> bool:
    """The Launcher is the main area's current tab (waits for the layout to settle)."""
    page.wait_for_function("() => { const w = window.jupyterapp.shell.currentWidget;"
                           " return !!(w && w.node.querySelector('.jp-Launcher')); }", timeout=30_000)
    return True


def test_run_sh_opens_on_the_launcher_and_asks_no_news_question(tmp_path: Path, browser_page) -> None:
    page = browser_page
    port, token = free_port(), secrets.token_hex(16)
    lab = _start_run_sh(tmp_path, port, token)
    try:
        _open_lab(page, lab)
        # The package's settings override answers the news question: "false", not "none".
        notification = _get_json(lab, "lab/api/settings/@jupyterlab/apputils-extension:notification")
        defaults = notification["schema"]["properties"]
        assert defaults["fetchNews"]["default"] == "false"
        assert defaults["checkForUpdates"]["default"] is False
        assert _current_is_launcher(page)
        # Work in the lab: open a file in the editor until the workspace remembers it.
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:open',"
                      " {path: '01_settings.ipynb', factory: 'Editor'})")
        page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.node.querySelector('.jp-Launcher')")
        page.wait_for_function(
            """async () => { const r = await fetch('/lab/api/workspaces/default?token=' + %s);
                             return (await r.text()).includes('01_settings.ipynb'); }""" % json.dumps(token))
        ARTIFACTS.mkdir(exist_ok=True)
        assert page.get_by_text("Jupyter news").count() == 0
    finally:
        _stop(lab)

    # The next run.sh opens on the Launcher again, the editor tab is not restored over it.
    lab = _start_run_sh(tmp_path, free_port(), token)
    try:
        _open_lab(page, lab)
        assert _current_is_launcher(page)
        assert page.get_by_text("Jupyter news").count() == 0
        page.screenshot(path=str(ARTIFACTS / "run-sh-launcher.png"))
    finally:
        _stop(lab)
