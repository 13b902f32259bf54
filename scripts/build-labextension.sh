#!/usr/bin/env bash
# Rebuild the JupyterLab extension's bundle (newsletter_kit/labextension/) from labextension/:
# the locked npm packages (npm ci), TypeScript, then jupyter-builder from .venv (run
# scripts/setup.sh first). Commit the bundle with the sources: users never need Node.js, and
# tests/test_labextension.py fails when the bundle was not built from the sources as they are.
set -euo pipefail
cd "$(dirname "$0")/../labextension"
npm ci --no-audit --no-fund
PATH="$PWD/../.venv/bin:$PATH" npm run build
