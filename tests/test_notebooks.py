"""The notebooks run top to bottom on a fresh store (demo servers, no account), and are committed clean.

Executed with nbclient in a real ipykernel: the ``python3`` kernel spec of the virtualenv, whose
``python`` jupyter_client resolves to this interpreter, so the kernel imports this checkout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

import newsletter_kit as nk

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_settings.ipynb", "02_campaign.ipynb", "03_bounce_review.ipynb"]


def execute(name: str) -> nbformat.NotebookNode:
    """Run a notebook in a fresh kernel (cwd: notebooks/); a cell error raises CellExecutionError."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=240, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return nb


def outputs_text(nb: nbformat.NotebookNode) -> str:
    return json.dumps([cell.get("outputs", []) for cell in nb.cells])


def test_the_python3_kernel_is_this_virtualenv() -> None:
    spec = KernelSpecManager().get_kernel_spec("python3")
    # "python" is replaced by sys.executable when the kernel starts; an absolute path must be ours.
    assert spec.argv[0] in ("python", "python3", sys.executable), spec.argv
    assert spec.language == "python"


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_clean(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "a notebook without code cells"
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert "widgets" not in nb.metadata  # no saved widget state (it would hold field values)


def test_notebooks_run_in_order_on_a_fresh_store(nk_db: Path) -> None:
    first = execute(NAMES[0])
    assert "Demo mode" in outputs_text(first)
    store = nk.open_store(nk_db)
    smtp = nk.load_smtp_settings(store)
    assert smtp is not None and smtp.host == "127.0.0.1"
    execute(NAMES[1])
    sent = store.conn.execute("SELECT count(*) FROM deliveries WHERE state = 'sent'").fetchone()[0]
    assert sent > 0
    review = execute(NAMES[2])
    # The demo's bounce reports were fetched and recorded by the review notebook.
    assert store.conn.execute("SELECT count(*) FROM bounces WHERE source != 'smtp'").fetchone()[0] > 0
    # Demo mode recorded the twelve weeks of history, and the tables read as dates and percentages.
    weekly = store.conn.execute("SELECT count(*) FROM campaigns WHERE name LIKE 'weekly-%'").fetchone()[0]
    assert weekly == 12
    shown = outputs_text(review)
    assert "history: 12 weekly campaigns" in shown
    assert "%</td>" in shown and "+00:00</td>" not in shown
    # Issue 19: today's reports are the review's to fetch (the history took them before), and
    # tables read as tables, not as dicts, tuples or Series footers.
    assert "'fetched': 0" not in shown, shown[:2000]
    everything = outputs_text(first) + outputs_text(execute(NAMES[1])) + shown
    for raw in ("{'smtp':", "[(True,", "dtype: int64", "'resets_at':", "Name: count"):
        assert raw not in everything, raw


@pytest.mark.parametrize("name", NAMES[1:])
def test_each_notebook_runs_alone_on_a_fresh_store(nk_db: Path, name: str) -> None:
    execute(name)
    assert nk.load_smtp_settings(nk.open_store(nk_db)) is not None
