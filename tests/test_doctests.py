"""Every docstring example in the package runs (issue 8): an example that rots fails here.

Examples that need a live server or a notebook display say ``# doctest: +SKIP``; the rest run
against ``:memory:`` stores or the fresh store path that ``nk_db`` puts in $NEWSLETTER_KIT_DB.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import newsletter_kit

MODULES = ["newsletter_kit"] + sorted(
    info.name
    for info in pkgutil.walk_packages(newsletter_kit.__path__, prefix="newsletter_kit.")
    if not info.name.endswith("__main__")
)


def test_every_module_is_collected() -> None:
    """The walk finds the package, its modules and its subpackages."""
    assert {"newsletter_kit.store", "newsletter_kit.cli", "newsletter_kit.panels.settings"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, report=True, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
