"""The sidebar on a store that lived for years (issue 21): a bounded status with an ETag, pages of
campaigns behind a "more" link, errors in place of stale figures, no notebook in a hidden folder;
in JupyterLab and headless Chromium with 3,000 campaigns."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import newsletter_kit as nk
from tests.test_browser import ARTIFACTS, Lab, jupyterlab, page  # noqa: F401 (fixtures)


def _store_with_campaigns(db: Path, n: int) -> None:
    """A list of 50 contacts and ``n`` draft campaigns (made in bulk SQL), one of them sending."""
    store = nk.open_store(db)
    nk.update_smtp_settings(store, host="127.0.0.1", port=2525, tls="none", daily_limit=500,
                            from_addr="news@example.org", timezone="UTC")
    nk.add_contacts(store, [{"email": f"reader{i}@example.org"} for i in range(50)])
    with store.transaction():
        store.conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO campaigns (name, list_name, subject, html, status, created_at, updated_at)"
            " SELECT printf('campaign-%04d', i), 'all', 'Hi', '<p>Hi</p>', 'draft',"
            " datetime('2024-01-01', printf('+%d hours', i)), datetime('2024-01-01', printf('+%d hours', i))"
            " FROM n", (n,))
        store.conn.execute("UPDATE campaigns SET status = 'sending' WHERE name = 'campaign-0007'")
    store.close()


def _request(lab: Lab, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(lab.url(path).replace("?token=", "&token=") if "?" in path else lab.url(path),
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
            return response.status, dict(response.headers), json.loads(body) if body else {}
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, dict(exc.headers), json.loads(body) if body and exc.code != 304 else {}


def test_status_is_bounded_tagged_and_pages_the_rest(jupyterlab: Lab, nk_db: Path):
    _store_with_campaigns(nk_db, 3000)
    code, headers, answer = _request(jupyterlab, "newsletter-kit/status")
    assert code == 200 and answer["error"] is None
    names = [c["name"] for c in answer["campaigns"]]
    assert names == [f"campaign-{i:04d}" for i in range(3000, 2990, -1)] + ["campaign-0007"]
    assert answer["campaign_counts"] == {"total": 3000, "draft": 2999, "sending": 1}
    assert answer["campaigns"][0]["pending"] == 50
    # Unchanged: a 304 with no body; after a write: a new answer with a new tag.
    again = _request(jupyterlab, "newsletter-kit/status", {"If-None-Match": headers["Etag"]})
    assert again[0] == 304
    nk.add_contacts(nk.open_store(nk_db), [{"email": "late@example.org"}])
    code, changed, answer = _request(jupyterlab, "newsletter-kit/status", {"If-None-Match": headers["Etag"]})
    assert code == 200 and changed["Etag"] != headers["Etag"] and answer["campaigns"][0]["pending"] == 51
    code, _, page = _request(jupyterlab, "newsletter-kit/campaigns?status=draft&limit=5&offset=10")
    assert code == 200 and page["total"] == 2999
    assert [c["name"] for c in page["campaigns"]] == [f"campaign-{i:04d}" for i in range(2990, 2985, -1)]
    assert _request(jupyterlab, "newsletter-kit/campaigns?limit=many")[0] == 400


def test_a_setting_that_cannot_be_parsed_answers_200_with_the_error(jupyterlab: Lab, nk_db: Path):
    _store_with_campaigns(nk_db, 3)
    store = nk.open_store(nk_db)
    with store.transaction():
        store.conn.execute("UPDATE settings SET data = 'garbage' WHERE section = 'smtp'")
    code, _, answer = _request(jupyterlab, "newsletter-kit/status")
    assert code == 200 and "smtp settings saved in the store cannot be read" in answer["error"]
    assert answer["campaigns"] == [] and answer["quota"] is None


def test_a_store_that_cannot_be_read_answers_200_with_the_error(jupyterlab: Lab, nk_db: Path):
    nk_db.write_bytes(b"this is not a database, just bytes " * 200)
    code, _, answer = _request(jupyterlab, "newsletter-kit/status")
    assert code == 200 and answer["error"] and answer["campaigns"] == []
    code, _, page = _request(jupyterlab, "newsletter-kit/campaigns")
    assert code == 200 and page["error"] and page["campaigns"] == []


def test_no_notebook_is_written_into_a_hidden_folder(jupyterlab: Lab):
    from tests.test_labextension import _post

    for folder in (".secret", "work/.hidden", ".secret/inner"):
        (jupyterlab.root / folder).mkdir(parents=True, exist_ok=True)
        code, error = _post(jupyterlab, "newsletter-kit/notebooks", {"template": "campaign", "folder": folder})
        assert code == 400 and "hidden" in error["message"]
        assert list((jupyterlab.root / folder).glob("*.ipynb")) == []
    # A visible folder still works, and what it writes JupyterLab's contents API serves.
    code, made = _post(jupyterlab, "newsletter-kit/notebooks", {"template": "campaign", "folder": "work"})
    assert code == 200
    with urllib.request.urlopen(jupyterlab.url(f"api/contents/{made['path']}"), timeout=30) as response:
        assert response.status == 200


def test_the_sidebar_shows_3000_campaigns_a_page_at_a_time(jupyterlab: Lab, page, nk_db: Path):
    from tests.test_labextension import _wait_for_lab

    _store_with_campaigns(nk_db, 3000)
    _wait_for_lab(page, jupyterlab)
    page.locator(".jp-SideBar [data-id='newsletter-kit-sidebar']").click()
    sidebar = page.locator(".nk-lab-sidebar")
    sidebar.wait_for(state="visible")
    page.locator(".nk-lab-campaign[data-campaign='campaign-3000']").wait_for()
    assert sidebar.locator(".nk-lab-campaign").count() == 11
    more = sidebar.locator(".nk-lab-more")
    assert more.get_attribute("data-left") == "2989"
    more.click()
    page.wait_for_function("() => document.querySelectorAll('.nk-lab-sidebar .nk-lab-campaign').length > 11")
    assert sidebar.locator(".nk-lab-campaign").count() == 11 + 20  # the next page of 20, newest first
    names = sidebar.locator(".nk-lab-campaign").evaluate_all("(nodes) => nodes.map(n => n.dataset.campaign)")
    assert names[11:] == [f"campaign-{i:04d}" for i in range(2990, 2970, -1)]
    assert sidebar.locator(".nk-lab-more").get_attribute("data-left") == "2969"
    ARTIFACTS.mkdir(exist_ok=True)
    sidebar.screenshot(path=str(ARTIFACTS / "labextension-sidebar-3000.png"))
    # A setting that cannot be read: the error replaces the figures, no stale campaign stays.
    store = nk.open_store(nk_db)
    with store.transaction():
        store.conn.execute("UPDATE settings SET data = '[1, 2]' WHERE section = 'smtp'")
    store.close()
    sidebar.locator(".nk-lab-refresh").click()
    page.locator(".nk-lab-sidebar .nk-lab-error").wait_for()
    assert "cannot be read" in sidebar.locator(".nk-lab-error").inner_text()
    assert sidebar.locator(".nk-lab-campaign").count() == 0
    assert page.locator(".nk-lab-statusbar").text_content() == "Newsletter: error"
