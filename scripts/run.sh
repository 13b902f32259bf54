#!/usr/bin/env bash
# Set everything up and open JupyterLab on notebooks/ with the embedded defaults
# (the store data/newsletter.db and in-process demo mail servers: no account needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NEWSLETTER_KIT_DB="${NEWSLETTER_KIT_DB:-$PWD/data/newsletter.db}"
args=(--notebook-dir=notebooks --ip=127.0.0.1)
[[ $(id -u) -eq 0 ]] && args+=(--allow-root)
exec .venv/bin/jupyter lab "${args[@]}" "$@"
