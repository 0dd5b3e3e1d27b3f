#!/usr/bin/env bash
# One-shot, idempotent setup on a fresh machine: a virtualenv in .venv with the project
# and its development tools installed. With --with-servers it also installs the real
# servers the integration tests start: Prosody (Debian package) and Synapse (PyPI, in its
# own virtualenv under .servers/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[dev,xmpp,matrix,interop,metrics]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
if [ "${1:-}" = "--with-servers" ]; then
    bash scripts/install_prosody.sh
    bash scripts/install_synapse.sh
fi
