#!/usr/bin/env bash
# Re-pin the dependencies after editing pyproject.toml: the runtime lock and the test lock.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-$(command -v uv || echo .venv/bin/uv)}
"$uv" pip compile -q pyproject.toml --python-version 3.11 -o requirements.lock
"$uv" pip compile -q pyproject.toml --extra test --python-version 3.11 -o requirements-test.lock
