#!/usr/bin/env bash
# Installs the ts-mls interop client's pinned npm dependencies (package-lock.json) into
# interop/ts-mls/node_modules (git-ignored). Needs Node.js >= 20 and npm on PATH.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install.sh: node and npm are required (Node.js >= 20)" >&2
    exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
    echo "install.sh: Node.js >= 20 required, found $(node --version)" >&2
    exit 1
fi
npm ci --no-audit --no-fund
