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


def _graph() -> dict[str, set[str]]:
    """Each package module (``.name``; a package as its ``__init__``) → the package modules it imports."""
    mods = modules("*.py", "*/*.py")
    names = {("." + m.removesuffix(".py").replace("/", ".")).removesuffix(".__init__"): m for m in mods}
    graph: dict[str, set[str]] = {}
    for key, rel in names.items():
        deps = set()
        for name in imports(rel):
            # `from .x import y` reads as `.x.y`: y may be a module of x or a name in x.
            target = name if name in names else name.rsplit(".", 1)[0]
            if target in names and target != key:
                deps.add(target)
        graph[key] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_sees_a_cycle() -> None:
    assert _cycles({".a": {".b"}, ".b": {".c"}, ".c": {".a"}, ".d": {".a"}}) == [[".a", ".b", ".c"]]


def test_no_two_modules_import_each_other() -> None:
    """A concept two modules share lives below both (``policy``, ``demo_world``), never in one of
    them with the other importing back (lazy and type-only imports count too)."""
    assert _cycles(_graph()) == []


def test_the_review_reads_the_store_not_the_sender() -> None:
    """The review, the sidebar's overview: campaign progress from ``progress``, complaints from
    ``complaints``; nothing of the sender's modules."""
    sender = {"smtplib", ".transport", ".campaigns", ".ledger", ".guards", ".net", ".signing"}
    assert offenders(["review.py", "overview.py", "export.py"], sender) == []


def test_reading_bounces_needs_no_transport() -> None:
    """``ingest`` words a failure with ``failures``; only ``imap`` opens the connection."""
    assert offenders(["ingest.py", "bounces/record.py", "unsubscribes.py"],
                     {".net", ".transport", "smtplib"}) == []
