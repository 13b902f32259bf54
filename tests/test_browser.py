"""JupyterLab in headless Chromium: notebook 01's settings panel renders, works, and saves.

The panels' behaviour is tested without a browser (test_panels.py); this test proves that a
person can do it in JupyterLab: open ``01_settings.ipynb``, run all cells, fill the bounce
mailbox tab, fetch the folders from Dovecot, pick one, save. A screenshot is kept in
``test-artifacts/``.

JupyterLab serves a temp copy of ``notebooks/`` (its autosave must never write outputs into the
repository) with a token, its news and update checks off, on 127.0.0.1. Chromium is Debian's
``/usr/bin/chromium`` driven by Playwright (no browser download). Missing Chromium skips the
test, except on CI (``$CI`` set) where it fails.
"""

from __future__ import annotations

import json
import re
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import newsletter_kit as nk
from tests.mailservers import free_port

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: JupyterLab's announcements and update checks would reach the internet: both off.
NOTIFICATION_SETTINGS = {"fetchNews": "false", "checkForUpdates": False}


def _require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = f"{CHROMIUM} is not installed (Debian package: chromium; scripts/setup.sh --servers)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class Lab:
    """A running JupyterLab: ``url(path)`` gives a URL with the token."""

    def __init__(self, port: int, token: str, root: Path, process: subprocess.Popen[bytes], log: Path):
        self.port, self.token, self.root, self.process, self.log = port, token, root, process, log

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"


def _wait_until_up(lab: Lab, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited: {lab.log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(lab.url("api/status"), timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"JupyterLab did not answer: {lab.log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def jupyterlab(tmp_path: Path, nk_db: Path) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 serving a copy of notebooks/, store $NEWSLETTER_KIT_DB = nk_db."""
    _require_chromium()
    root = tmp_path / "lab-root"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    config = tmp_path / "jupyter-config"
    settings_dir = tmp_path / "lab-user-settings"
    notification = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps(NOTIFICATION_SETTINGS), encoding="utf-8")
    env = {**os.environ, "NEWSLETTER_KIT_DB": str(nk_db), "JUPYTER_CONFIG_DIR": str(config),
           "JUPYTERLAB_SETTINGS_DIR": str(settings_dir),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime")}
    port, token = free_port(), secrets.token_hex(16)
    args = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            "--port-retries=0", f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
            "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        args.append("--allow-root")
    log = tmp_path / "jupyterlab.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=root)
    lab = Lab(port, token, root, process, log)
    try:
        _wait_until_up(lab)
        yield lab
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def page(jupyterlab: Lab) -> Iterator[object]:
    """A Chromium page (1400x1000)."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


_KERNEL_IDLE = (
    "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
    " return !!(w && w.sessionContext && w.sessionContext.session &&"
    " w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'); }")


def _field(panel, label: str):
    """The input of the visible labelled widget ``label`` (the other tab's twin is hidden)."""
    return panel.locator(".widget-inline-hbox:visible", has=panel.page.locator(
        f"label.widget-label:text-is('{label}')")).locator("input, select").first


def test_settings_notebook_in_jupyterlab(jupyterlab: Lab, page, dovecot, mailbox_user, nk_db: Path) -> None:
    user, password = mailbox_user(prefix="bounces")
    dovecot.create_folder(user, "Bounces")
    page.set_default_timeout(60_000)
    page.goto(jupyterlab.url("lab/tree/01_settings.ipynb"))
    page.locator(".jp-Notebook").wait_for()
    # Wait until the kernel is ready, then run every cell (JupyterLab's own command).
    page.wait_for_function(_KERNEL_IDLE)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    panel = page.locator(".nk-settings-panel")
    panel.wait_for(state="visible")
    # Notebook 01 put the demo server in the settings: the SMTP tab shows it.
    assert _field(panel, "Server name").input_value() == "127.0.0.1"
    rate = _field(panel, "Send rate")
    rate.fill("321")
    rate.press("Tab")
    panel.locator(".widget-radio-box label", has_text="Global").click()
    assert panel.get_by_text("cap at about 500/day", exact=False).is_visible()

    panel.get_by_role("tab", name="Bounce settings (IMAP)").click()
    _field(panel, "Server name").fill("127.0.0.1")
    _field(panel, "Port").fill(str(dovecot.imap_port))
    _field(panel, "Username").fill(user)
    _field(panel, "Password").fill(password)
    _field(panel, "CA file").fill(dovecot.ca_file)
    _field(panel, "SSL/TLS").select_option(label="STARTTLS (usually port 587 / 143)")
    threshold = _field(panel, "Bounce threshold")
    threshold.fill("2")
    threshold.press("Tab")
    panel.locator("button.widget-button", has_text="Fetch folders").click()
    folder = _field(panel, "Folder to monitor")
    page.wait_for_function(
        "(el) => Array.from(el.options).some(o => o.textContent === 'Bounces')",
        arg=folder.element_handle())
    folder.select_option(label="Bounces")
    # Let the selection reach the kernel before Save reads it: the kernel turns busy, then idle.
    page.wait_for_timeout(300)
    page.wait_for_function(_KERNEL_IDLE)
    panel.locator("button.widget-button", has_text="Save").click()
    # Not any ok message: "Fetch folders" left one, which would let the test read the store early.
    panel.locator(".nk-message.nk-ok", has_text="Saved:").wait_for()
    assert _field(panel, "Password").input_value() == ""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "settings-panel-bounce.png"))
    panel.get_by_role("tab", name="Dedicated SMTP").click()
    _field(panel, "Server name").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "settings-panel-smtp.png"))

    store = nk.open_store(nk_db)
    bounce = nk.load_bounce_settings(store)
    smtp = nk.load_smtp_settings(store)
    assert bounce is not None and smtp is not None
    assert (bounce.host, bounce.port, bounce.user, bounce.folder) == ("127.0.0.1", dovecot.imap_port, user, "Bounces")
    assert (bounce.threshold, bounce.ca_file) == (2, str(Path(dovecot.ca_file).resolve()))
    assert (smtp.daily_limit, smtp.exclusion) == (321, "global")
    assert bounce.password_ref and bounce.password_ref.startswith("session:")  # no keyring here
    store.close()
    stored = b"".join(Path(str(nk_db) + s).read_bytes() for s in ("", "-wal") if Path(str(nk_db) + s).exists())
    assert password.encode() not in stored


def test_campaign_notebook_in_jupyterlab(jupyterlab: Lab, page, nk_db: Path) -> None:
    page.set_default_timeout(90_000)
    page.goto(jupyterlab.url("lab/tree/02_campaign.ipynb"))
    page.locator(".jp-Notebook").wait_for()
    page.wait_for_function(_KERNEL_IDLE)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    panel = page.locator(".nk-campaign-panel")
    panel.wait_for(state="visible")
    # The preview renders the demo template for the first eligible contact, in a sandboxed frame.
    frame = panel.locator(".nk-preview iframe")
    frame.wait_for()
    assert "Hello Giulia" in page.frame_locator(".nk-campaign-panel .nk-preview iframe").locator("body").inner_text()
    assert "unsubscribed from this campaign" in panel.locator(".nk-audience").inner_text()
    # The notebook's last cells sent the demo campaign; the panel's Dry run now has nothing to do.
    # (The status prints as a table: issue 19.)
    page.locator(".jp-Notebook .jp-OutputArea-output table", has_text="spring-sale").first.wait_for()
    panel.locator("button.widget-button", has_text="Dry run").click()
    panel.locator(".nk-message", has_text="dry run of 'spring-sale': 0 message(s)").wait_for()
    panel.locator(".nk-preview").scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "campaign-panel-preview.png"))
    send = panel.locator("button.widget-button", has_text=re.compile(r"^\s*Send\s*$"))
    send.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "campaign-panel-send.png"))
    store = nk.open_store(nk_db)
    assert nk.campaign_status(store, "spring-sale")["pending"] == 0
    # Issue 19: a finished campaign cannot be sent again, says so, and a proof still goes out.
    assert send.is_disabled()
    assert "nothing left to send" in panel.inner_text()
    used = nk.quota_status(store).used
    panel.locator("button.widget-button", has_text="Send test to me").click()
    panel.locator(".nk-message.nk-ok", has_text="Test: news@example.org: sent").wait_for()
    assert nk.quota_status(store).used == used + 1
