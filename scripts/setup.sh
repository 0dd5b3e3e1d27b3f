#!/usr/bin/env bash
# One-shot, idempotent setup on a fresh machine: a virtualenv in .venv with the project
# and its development tools installed. Servers for the integration tests (Prosody,
# Synapse) are installed by scripts/servers.sh, which .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[dev,xmpp,matrix,interop]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
