"""Which module may import which (issue 8, README "Architecture"): the rules that keep one concept
per module. Every import counts, also those inside functions (lazy ones are still dependencies).
"""

from __future__ import annotations

import ast
from pathlib import Path

import newsletter_kit

PACKAGE = Path(newsletter_kit.__file__).parent
NETWORK = {"smtplib", "imaplib", "imapclient", "socket", "ssl", "http", "urllib.request", "dns"}
SENDING = {"smtplib", ".transport", ".campaigns", ".ledger", ".quota"}
UI = {"click", "ipywidgets", "IPython", ".cli", ".panels"}


def imports(rel: str) -> set[str]:
    """What the module at ``rel`` (e.g. ``bounces/parse.py``) imports: absolute names as written,
    package modules as ``.name`` relative to the package root."""
    path = PACKAGE / rel
    depth = len(Path(rel).parts) - 1  # a module inside a subpackage: `..x` is the root's x
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module or "")
                continue
            base = list(Path(rel).parent.parts)[: len(Path(rel).parent.parts) - (node.level - 1)]
            names = [node.module] if node.module else [alias.name for alias in node.names]
            for name in names:
                found.add("." + ".".join([*base, *(name or "").split(".")]).strip("."))
    return found


def modules(*globs: str) -> list[str]:
    return sorted({p.relative_to(PACKAGE).as_posix() for g in globs for p in PACKAGE.glob(g)})


def offenders(rels: list[str], forbidden: set[str]) -> list[str]:
    """``module: import`` for each import of ``rels`` that is or lies under a forbidden name."""
    bad = []
    for rel in rels:
        for name in sorted(imports(rel)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{rel}: {name}")
    return bad


def test_the_import_reader_sees_absolute_relative_and_nested_imports() -> None:
    found = imports("cli.py")
    assert "click" in found and ".errors" in found and ".store" in found


def test_the_store_knows_no_domain_logic() -> None:
    package = {"." + p.removesuffix(".py").replace("/", ".") for p in modules("*.py", "*/*.py")}
    # The clock is no domain: the time every timestamp comes from (the demo's history shifts it).
    # The reasons are a vocabulary without dependencies: the migration that backfills them reads it.
    assert offenders(["store.py"], package - {".errors", ".clock", ".reasons"}) == []


def test_rendering_does_no_io() -> None:
    assert offenders(["messages.py", "sandbox.py", "tokens.py"],
                     NETWORK | {"sqlite3", ".store", ".settings", ".transport", ".mailbox"}) == []


def test_reading_bounces_never_sends() -> None:
    readers = modules("bounces.py", "bounces/*.py", "mailbox.py", "imap.py", "ingest.py",
                      "suppressions.py", "unsubscribes.py")
    assert readers and offenders(readers, SENDING) == []


def test_the_core_never_imports_the_ui() -> None:
    """Only the command line, the panels and the package's facade (``%load_ext``) may."""
    core = [m for m in modules("*.py", "*/*.py")
            if m not in ("cli.py", "__main__.py", "__init__.py") and not m.startswith("panels/")]
    assert offenders(core, UI) == []
