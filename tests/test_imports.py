"""The import boundary (issue 8): the command line and ``import newsletter_kit`` load only what
they use. pandas, numpy, matplotlib and ipywidgets cost a second or more on every start; only the
review, the panels and the DataFrame-returning functions may load them.

Each command runs for real in a fresh interpreter (a store, an aiosmtpd server to send to, bounce
files to read) and reports which heavy modules it loaded. No time is asserted here:
``benchmarks/cli_start.py`` measures the start-up.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import newsletter_kit as nk

HEAVY = ("pandas", "numpy", "matplotlib", "ipywidgets", "IPython")
SAMPLES = Path(__file__).parent / "bounce_samples"

PROBE = """
import atexit, json, sys
out, args = sys.argv[1], sys.argv[2:]
heavy = {heavy!r}
def report():
    with open(out, "w") as f:
        json.dump(sorted(m for m in heavy if m in sys.modules), f)
atexit.register(report)
if args == ["--import"]:
    import newsletter_kit
elif args == ["--import-cli"]:
    import newsletter_kit.cli
else:
    from newsletter_kit.cli import main
    sys.argv = ["newsletter-kit", *args]
    main()
""".format(heavy=HEAVY)


def heavy_modules_loaded(args: list[str], tmp_path: Path) -> list[str]:
    """Run ``newsletter-kit ARGS`` in a new interpreter; the heavy modules it imported."""
    out = tmp_path / "loaded.json"
    proc = subprocess.run([sys.executable, "-c", PROBE, str(out), *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stderr}"
    return json.loads(out.read_text())


@pytest.fixture
def ready_store(nk_db, smtp_server, tmp_path):
    """A store with SMTP and bounce settings, a list, and a campaign ready to send."""
    srv = smtp_server(tls="none")
    store = nk.open_store(nk_db)
    nk.update_smtp_settings(store, host="127.0.0.1", port=srv.port, tls="none", daily_limit=100,
                            from_addr="news@example.org", timezone="Europe/Rome")
    nk.update_bounce_settings(store, host="127.0.0.1", port=1143, user="bounces@example.org",
                              threshold=1, tls="none", allow_plain_auth=True,
                              password_ref="env:NK_UNUSED")
    nk.add_contacts(store, [{"email": f"reader{i}@example.org"} for i in range(3)], list_name="news")
    nk.create_campaign(store, "spring", "news", "Hello", "<p>news</p>")
    store.close()
    folder = tmp_path / "reports"
    folder.mkdir()
    for name in ("postfix_hard_511.eml", "gmail_511.eml"):
        shutil.copy(SAMPLES / name, folder / name)
    return srv, folder


LIGHT_COMMANDS = [
    ["--import"],
    ["--import-cli"],
    ["--help"],
    ["init"],
    ["settings", "show"],
    ["settings", "show", "--json"],
    ["quota", "--json"],
    ["campaign", "list"],
    ["campaign", "status", "spring", "--json"],
    ["campaign", "send", "spring", "--json"],
    ["bounces", "fetch", "--from", "{reports}", "--json"],
    ["bounces", "parse", "--json", "{reports}/postfix_hard_511.eml"],
    ["suppressions", "list", "--json"],
]


@pytest.mark.parametrize("args", LIGHT_COMMANDS, ids=" ".join)
def test_light_commands_load_no_dataframe_or_widget_library(args, ready_store, tmp_path):
    srv, reports = ready_store
    args = [a.replace("{reports}", str(reports)) for a in args]
    assert heavy_modules_loaded(args, tmp_path) == []
    if args[:2] == ["campaign", "send"]:
        assert len(srv.messages) == 3  # the command really sent


def test_the_probe_sees_a_heavy_import(ready_store, tmp_path):
    """The check above can fail: a command that builds a DataFrame is reported."""
    loaded = heavy_modules_loaded(["--import"], tmp_path)
    assert loaded == []
    out = tmp_path / "loaded.json"
    subprocess.run([sys.executable, "-c", PROBE.replace("import newsletter_kit\n",
                    "import newsletter_kit as nk; nk.bounces_by_day\n"), str(out), "--import"],
                   check=True, timeout=120)
    assert "pandas" in json.loads(out.read_text())
