#!/usr/bin/env bash
# Create .venv and install the locked dependencies plus this package (editable).
# Usage: scripts/setup.sh [--test]   (--test installs the test lock instead of the runtime lock,
# and the Debian mail servers and Chromium that the tests talk to; those need root)
set -euo pipefail
cd "$(dirname "$0")/.."

want_servers=0
lock=requirements.lock
if [[ "${1:-}" == "--test" || "${1:-}" == "--servers" ]]; then
    want_servers=1
    lock=requirements-test.lock
fi

apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: not root, cannot apt-get install $*; install them yourself (sudo apt-get install $*)" >&2
        return 1
    fi
    if [[ ! -f /var/lib/apt/periodic/nk-updated ]] || ! apt-cache show "$1" >/dev/null 2>&1; then
        apt-get update -qq
        mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/nk-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3-venv
fi

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
if [[ ! -x .venv/bin/uv ]]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check uv
fi
# uv pip sync makes .venv exactly the lock file (fast, reproducible); then the package itself.
# --compile-bytecode writes the .pyc files pip would (uv does not by default): without them every
# command compiles Jinja2, click and the rest from source on each start wherever they cannot be
# cached (PYTHONDONTWRITEBYTECODE, a read-only .venv). Only what it installs is compiled.
.venv/bin/uv pip sync -q --compile-bytecode --python .venv/bin/python "$lock"
.venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .

if [[ $want_servers -eq 1 ]]; then
    need=()
    command -v dovecot >/dev/null || need+=(dovecot-imapd dovecot-lmtpd)
    [[ -x /usr/sbin/postfix ]] || need+=(postfix)
    command -v openssl >/dev/null || need+=(openssl)
    [[ -x /usr/bin/chromium ]] || need+=(chromium)
    if (( ${#need[@]} )); then
        echo "setup: installing Debian packages: ${need[*]}" >&2
        if [[ $(id -u) -eq 0 ]]; then
            # postfix asks debconf questions; answer them: local only.
            echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
            apt_install "${need[@]}"
        else
            # Not fatal: the tests that need them skip with the package's name (and fail on CI).
            echo "setup: not root, so these Debian packages are not installed: ${need[*]}" >&2
            echo "setup: run as root, or: sudo apt-get install ${need[*]}" >&2
        fi
    fi
fi

# An editable install skips pyproject's data-files (what a wheel puts under .venv/share and
# .venv/etc for JupyterLab): link the same files from the source tree instead.
link() { mkdir -p "$(dirname ".venv/$2")"; ln -sfn "$PWD/$1" ".venv/$2"; }
link newsletter_kit/jupyter_config/overrides.d/newsletter-kit.json share/jupyter/lab/settings/overrides.d/newsletter-kit.json
link newsletter_kit/labextension share/jupyter/labextensions/newsletter-kit
link newsletter_kit/jupyter_config/jupyter_server_config.d/newsletter_kit.json etc/jupyter/jupyter_server_config.d/newsletter_kit.json
