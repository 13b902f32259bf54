#!/usr/bin/env bash
# Set everything up and open JupyterLab on notebooks/ with the embedded defaults
# (the store data/newsletter.db and in-process demo mail servers: no account needed).
# JupyterLab starts on the Launcher (a fresh layout each run: the notebooks are files, only which
# tabs were open is forgotten) and asks no news question (the package's settings override).
# NEWSLETTER_KIT_SKIP_SETUP=1 skips the set-up when .venv is ready (the tests use it: set-up
# would sync .venv to the runtime lock and remove the test packages).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n "${NEWSLETTER_KIT_SKIP_SETUP:-}" ]] || bash scripts/setup.sh
export NEWSLETTER_KIT_DB="${NEWSLETTER_KIT_DB:-$PWD/data/newsletter.db}"
# A folder of run.sh's own (never $JUPYTERLAB_WORKSPACES_DIR, which may hold a user's workspaces).
workspaces="$PWD/.venv/run-workspaces"
rm -rf "$workspaces"
export JUPYTERLAB_WORKSPACES_DIR="$workspaces"
args=(--notebook-dir=notebooks --ip=127.0.0.1)
[[ $(id -u) -eq 0 ]] && args+=(--allow-root)
exec .venv/bin/jupyter lab "${args[@]}" "$@"
