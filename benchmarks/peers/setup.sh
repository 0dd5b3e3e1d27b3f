#!/usr/bin/env bash
# Installs the peer MLS stacks that `python -m benchmarks.compare` measures, outside the
# project's own dependencies (idempotent: rerunning only checks what is there):
#   * ts-mls: `npm ci` from package-lock.json into benchmarks/peers/node_modules, with the
#     pinned packages its post-quantum suites 79-88 load (as interop/ts-mls/package.json);
#   * mls-rs (PyPI agentvault-mls-rs-uniffi) and rfc9420 (PyPI) in benchmarks/peers/.venv.
# A stack that cannot be installed is reported and skipped; compare.py then prints "n/a".
set -uo pipefail
cd "$(dirname "$0")"

MLS_RS_VERSION=0.1.1
RFC9420_VERSION=1.3.0
TS_MLS_VERSION=1.6.4  # as pinned in package.json / package-lock.json
status=0

if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$major" -lt 20 ]; then
        echo "setup.sh: ts-mls skipped: Node.js >= 20 required, found $(node --version)" >&2
    elif [ -f node_modules/ts-mls/package.json ] && [ "$(node -p \
            'require("./node_modules/ts-mls/package.json").version')" = "$TS_MLS_VERSION" ] &&
         npm ls --depth=0 >/dev/null 2>&1; then
        echo "setup.sh: ts-mls and its post-quantum packages already installed"
    else
        npm ci --no-audit --no-fund || { echo "setup.sh: npm ci failed" >&2; status=1; }
    fi
else
    echo "setup.sh: ts-mls skipped: node and npm are not installed" >&2
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv || { echo "setup.sh: cannot create .venv" >&2; exit 1; }
fi
installed=$(.venv/bin/python -m pip show agentvault-mls-rs-uniffi rfc9420 2>/dev/null |
            grep '^Version:' | tr '\n' ' ')
if [ "$installed" = "Version: $MLS_RS_VERSION Version: $RFC9420_VERSION " ] &&
   .venv/bin/python -c "import mls_rs_uniffi, rfc9420" 2>/dev/null; then
    echo "setup.sh: mls-rs and rfc9420 already installed"
else
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        "agentvault-mls-rs-uniffi==$MLS_RS_VERSION" "rfc9420==$RFC9420_VERSION" ||
        { echo "setup.sh: pip install of the PyPI peers failed" >&2; status=1; }
fi
exit $status
