"""The Jupyter server extension behind JupyterLab's Newsletter sidebar, status bar and launcher.

Enabled by ``etc/jupyter/jupyter_server_config.d/newsletter_kit.json`` (installed with the
package), it adds two routes under the server's base URL, both behind the server's own
authentication (token or password, like every Jupyter API):

- ``GET /newsletter-kit/status[?recent=N]``: :func:`newsletter_kit.overview.overview_of_path`
  as JSON, so the sidebar needs no kernel, with ``server_version``; ``?store=data/demo.db``
  reads that store (a path inside the server root: the Settings Editor's "Store to show");
  ``GET /newsletter-kit/campaigns?status=&limit=&offset=``: a page of
  :func:`newsletter_kit.overview.campaign_page`. Both carry an ETag (an unchanged answer is a
  304) and answer a store or a setting that cannot be read with a 200 whose ``error`` says why;
- ``POST /newsletter-kit/notebooks`` with ``{"template": "settings" | "campaign" |
  "bounce_review", "folder": "a/b"}``: puts the package's notebook of that kind into the folder
  (through the server's contents manager) and answers ``{"path", "created"}``. An existing
  file is never overwritten: the settings and bounce review notebooks are opened as they are,
  "New campaign" takes the next free name (``02_campaign-2.ipynb``...).

The store is ``$NEWSLETTER_KIT_DB``; when it is not set, the extension sets it to
``<server root>/data/newsletter.db`` for the server's process, so every kernel the server
starts (they inherit its environment), whatever its notebook's folder, uses the store the
sidebar shows. Importing this module imports neither pandas nor the send path.

Example::

    >>> sorted(TEMPLATES)
    ['bounce_review', 'campaign', 'settings']
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from .store import DEFAULT_DB, ENV_DB

__version__ = metadata.version("newsletter_kit")

#: template → (file name in the package's notebook_templates, a new file each time?)
TEMPLATES: dict[str, tuple[str, bool]] = {
    "settings": ("01_settings.ipynb", False),
    "campaign": ("02_campaign.ipynb", True),
    "bounce_review": ("03_bounce_review.ipynb", False),
}


def template_notebook(template: str) -> dict[str, Any]:
    """The package's notebook for ``template`` as nbformat JSON (a KeyError names none).

    Example::

        >>> template_notebook("settings")["nbformat"]
        4
    """
    name, _ = TEMPLATES[template]
    text = resources.files("newsletter_kit").joinpath("notebook_templates", name).read_text(encoding="utf-8")
    notebook: dict[str, Any] = json.loads(text)
    return notebook


def _bounded_int(handler: APIHandler, name: str, default: int, low: int, high: int) -> int:
    raw = handler.get_query_argument(name, "") or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise tornado.web.HTTPError(400, f"{name} must be a whole number, not {raw[:40]!r}") from None
    return max(low, min(value, high))


class _PollHandler(APIHandler):
    """Answers JSON with an ETag of its content: an unchanged answer is a 304 with no body."""

    def reply(self, answer: dict[str, Any]) -> None:
        body = json.dumps(answer, sort_keys=True)
        # generated_at changes with every answer: the tag is of what the answer says.
        tagged = json.dumps({k: v for k, v in answer.items() if k != "generated_at"}, sort_keys=True)
        self._tag = f'"{hashlib.sha256(tagged.encode()).hexdigest()[:32]}"'
        self.set_header("Cache-Control", "no-cache")  # revalidate each time, with If-None-Match
        self.finish(body)  # tornado sets the tag below and answers 304 when If-None-Match names it

    def compute_etag(self) -> str | None:
        """The tag of the answer's content (tornado's default hashes the body, generated_at too)."""
        return getattr(self, "_tag", None)


class StatusHandler(_PollHandler):
    """``GET /newsletter-kit/status[?recent=N]``: the store at a glance, as JSON."""

    @tornado.web.authenticated
    async def get(self) -> None:
        from .overview import RECENT, overview_of_path

        root = self.settings.get("server_root_dir") or os.getcwd()
        recent = _bounded_int(self, "recent", RECENT, 0, 100)
        path = _chosen_store(root, self.get_argument("store", "")) or os.environ.get(ENV_DB) or None
        try:
            # SQLite blocks: read in a thread, the server keeps serving meanwhile.
            answer = await asyncio.to_thread(overview_of_path, path, root=root, recent=recent)
        except Exception as exc:  # never a 500 the sidebar cannot show: say what went wrong
            self.log.exception("newsletter_kit: the status failed")
            answer = {"store": os.environ.get(ENV_DB) or "", "exists": True, "quota": None, "campaigns": [],
                      "campaign_counts": {"total": 0}, "last_bounce_fetch": None, "suppressed": 0,
                      "error": f"cannot read the status: {type(exc).__name__}: {' '.join(str(exc).splitlines())}"}
        answer["server_version"] = __version__  # the sidebar compares it with its own
        self.reply(answer)


class CampaignsHandler(_PollHandler):
    """``GET /newsletter-kit/campaigns?status=&limit=&offset=``: one page of campaigns, newest first."""

    @tornado.web.authenticated
    async def get(self) -> None:
        from .overview import MAX_PAGE, campaign_page
        from .store import open_store

        status = self.get_query_argument("status", "") or None
        limit = _bounded_int(self, "limit", 50, 0, MAX_PAGE)
        offset = _bounded_int(self, "offset", 0, 0, 10**9)
        path = Path(os.environ.get(ENV_DB) or DEFAULT_DB)
        if not path.is_absolute():
            path = Path(self.settings.get("server_root_dir") or os.getcwd()) / path

        def page() -> dict[str, Any]:
            if not path.exists():
                return {"total": 0, "offset": offset, "limit": limit, "campaigns": [], "error": None}
            store = open_store(path, create=False)
            try:
                return {**campaign_page(store, status=status, limit=limit, offset=offset), "error": None}
            finally:
                store.close()

        try:
            answer = await asyncio.to_thread(page)
        except Exception as exc:  # as the status: a 200 that says what went wrong
            answer = {"total": 0, "offset": offset, "limit": limit, "campaigns": [],
                      "error": f"cannot read the campaigns: {' '.join(str(exc).splitlines())}"}
        self.reply(answer)


def _chosen_store(root: str, store: str) -> str | None:
    """The store the sidebar's settings name (``?store=data/demo.db``), inside the server root;
    None when none is named. A path that leaves the root is refused (403), links included.

    Example::

        >>> _chosen_store("/srv/lab", "data/demo.db")
        '/srv/lab/data/demo.db'
    """
    store = store.strip()
    if not store:
        return None
    base = os.path.realpath(root)
    target = os.path.realpath(os.path.join(base, store))
    if os.path.commonpath([target, base]) != base:
        raise tornado.web.HTTPError(403, f"the store {store!r} is outside the server's root folder: refused")
    return target


class NotebookHandler(APIHandler):
    """``POST /newsletter-kit/notebooks``: a ready notebook in a folder, never overwriting one."""

    @tornado.web.authenticated
    async def post(self) -> None:
        template, folder = _notebook_request(self.request.body)
        manager = self.contents_manager
        if not await ensure_async(manager.dir_exists(folder)):
            raise tornado.web.HTTPError(404, f"no folder {folder!r}")
        # JupyterLab's own contents API refuses hidden files and folders (unless allow_hidden):
        # a notebook written there would answer 404 when opened. Refuse the same way it does.
        if not getattr(manager, "allow_hidden", False) and (
                any(part.startswith(".") for part in folder.split("/"))
                or await ensure_async(manager.is_hidden(folder))):
            raise tornado.web.HTTPError(400, f"the folder {folder!r} is hidden: JupyterLab would not open a "
                                             "notebook there; choose a visible folder")
        name, fresh = TEMPLATES[template]
        path = _join(folder, name)
        _inside_root(manager, folder or ".")  # a linked folder that leaves the root: refused
        exists = await _taken(manager, path)
        if not (exists and fresh):
            _inside_root(manager, path)  # a link at the name that leaves the root: refused
        if exists and fresh:  # a new campaign takes the next free name (a link there is taken too)
            stem, number = name.removesuffix(".ipynb"), 2
            while await _taken(manager, path := _join(folder, f"{stem}-{number}.ipynb")):
                number += 1
            _inside_root(manager, path)
            exists = False
        if exists and _is_link(manager, path) and not await ensure_async(manager.file_exists(path)):
            raise tornado.web.HTTPError(409, f"{path} is a symbolic link to nothing: not written through")
        if not exists:
            model = {"type": "notebook", "format": "json", "content": template_notebook(template)}
            await ensure_async(manager.save(model, path))
        self.finish(json.dumps({"path": path, "created": not exists}))


async def _taken(manager: Any, path: str) -> bool:
    """A file is there, or a symbolic link (even a dangling one: saving would write through it)."""
    return bool(await ensure_async(manager.file_exists(path))) or _is_link(manager, path)


def _is_link(manager: Any, path: str) -> bool:
    """Whether ``path`` is a symbolic link on disk (contents managers without files: never)."""
    to_os = getattr(manager, "_get_os_path", None)
    if to_os is None:
        return False
    try:
        return os.path.islink(to_os(path))
    except tornado.web.HTTPError:  # a path outside the root: the manager refuses it later anyway
        return False


def _notebook_request(body: bytes) -> tuple[str, str]:
    """``(template, folder)`` from the request body, or a 400 that says what is wrong with it.

    Example::

        >>> _notebook_request(b'{"template": "settings", "folder": "/work/"}')
        ('settings', 'work')
        >>> _notebook_request(b'["settings"]')
        Traceback (most recent call last):
        ...
        tornado.web.HTTPError: HTTP 400: Bad Request (the body must be a JSON object like {"template": "settings", "folder": "a/b"})
    """
    usage = 'like {"template": "settings", "folder": "a/b"}'
    try:
        data = json.loads(body.decode("utf-8")) if body.strip() else {}
    except UnicodeDecodeError:
        raise tornado.web.HTTPError(400, f"the body is not UTF-8 text: send a JSON object {usage}") from None
    except ValueError:
        raise tornado.web.HTTPError(400, f"the body is not JSON: send an object {usage}") from None
    if not isinstance(data, dict):
        raise tornado.web.HTTPError(400, f"the body must be a JSON object {usage}")
    template, folder = data.get("template"), data.get("folder") or ""
    if not isinstance(template, str) or template not in TEMPLATES:
        raise tornado.web.HTTPError(400, f"unknown notebook template {template!r} "
                                         f"(one of {', '.join(sorted(TEMPLATES))})")
    if not isinstance(folder, str):
        raise tornado.web.HTTPError(400, f"the folder must be a path as text, not {folder!r}")
    return template, folder.strip("/")


def _inside_root(manager: Any, path: str) -> None:
    """Refuse a path that resolves outside the server root: a symbolic link (even a dangling
    one, which the contents manager would write through) or a linked folder that leaves it."""
    get_os_path = getattr(manager, "_get_os_path", None)
    root = getattr(manager, "root_dir", None)
    if get_os_path is None or root is None:  # not a file-system contents manager: nothing to follow
        return
    target = os.path.realpath(get_os_path(path))
    base = os.path.realpath(root)
    if os.path.commonpath([target, base]) != base:
        raise tornado.web.HTTPError(403, f"{path!r} is a link that leaves the server root: refused")


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Tells the server which module to load (this one)."""
    return [{"module": "newsletter_kit.serverext"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Adds the routes; makes the kernels' default store the one the sidebar shows."""
    root = serverapp.root_dir or os.getcwd()
    if not os.environ.get(ENV_DB):
        os.environ[ENV_DB] = str(Path(root) / DEFAULT_DB)
    web_app = serverapp.web_app
    base = url_path_join(web_app.settings["base_url"], "newsletter-kit")
    web_app.add_handlers(".*$", [
        (url_path_join(base, "status"), StatusHandler),
        (url_path_join(base, "campaigns"), CampaignsHandler),
        (url_path_join(base, "notebooks"), NotebookHandler),
    ])
    serverapp.log.info("newsletter_kit: /newsletter-kit/status serves the store %s", os.environ[ENV_DB])
