#!/usr/bin/env bash
# Install Synapse (matrix-synapse from PyPI) in its own virtualenv for the Matrix
# integration tests: .servers/synapse-venv inside the repository. Idempotent: an
# existing, working install is left alone. Usage: bash scripts/install_synapse.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SYNAPSE_VENV:-$ROOT/.servers/synapse-venv}"
PYTHON="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import synapse" 2>/dev/null; then
    echo "synapse already installed in $VENV ($("$VENV/bin/python" -c 'import synapse; print(synapse.__version__)'))"
    exit 0
fi

mkdir -p "$(dirname "$VENV")"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "matrix-synapse"
echo "synapse $("$VENV/bin/python" -c 'import synapse; print(synapse.__version__)') installed in $VENV"
