"""The public Python API: what __all__ names exists, is documented, and the package type-checks."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import newsletter_kit as nk


def test_all_names_exist_and_public_callables_have_docstrings():
    undocumented = []
    for name in nk.__all__:
        obj = getattr(nk, name)  # AttributeError here = a name in __all__ that is not exported
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and not (obj.__doc__ or "").strip():
            undocumented.append(name)
    assert undocumented == []
    assert len(set(nk.__all__)) == len(nk.__all__)


def test_package_type_checks_with_mypy():
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "mypy", "newsletter_kit"], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
