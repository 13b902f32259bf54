"""Helpers the bounce tests share: a bounce mailbox in the settings, reports as a folder of
``.eml`` files, and a fetch of such a folder (the local source; no server needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from newsletter_kit.ingest import fetch_bounces
from newsletter_kit.settings import update_bounce_settings
from newsletter_kit.store import Store


def configure(store: Store, threshold: int = 1, **more: Any) -> Any:
    """Bounce settings with ``threshold`` (a mailbox that is never contacted); the settings."""
    settings, _ = update_bounce_settings(store, host="imap.example.org", port=993, tls="ssl",
                                         user="bounces@example.org", password_ref="env:NK_UNUSED",
                                         threshold=threshold, **more)
    return settings


def write_eml(directory: Path, raws: list[bytes]) -> Path:
    """Each message as ``NNN.eml`` in ``directory``; the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(raws):
        (directory / f"{i:03}.eml").write_bytes(raw)
    return directory


def fetch_raws(store: Store, settings: Any, tmp_path: Path, raws: list[bytes]) -> Any:
    """Fetch ``raws`` as a new folder of files under ``tmp_path``: the FetchReport."""
    folder = tmp_path / f"batch{len(list(tmp_path.iterdir()))}"
    return fetch_bounces(store, settings, source_path=write_eml(folder, raws))
