#!/usr/bin/env bash
# Install Debian's Prosody for the XMPP integration tests (idempotent: apt-get runs only
# when the prosody binary is missing). The package's post-install starts no service here;
# tests/servers/prosody.py starts a private instance per test session.
set -euo pipefail
if command -v prosody >/dev/null 2>&1 && command -v prosodyctl >/dev/null 2>&1; then
    echo "prosody already installed: $(command -v prosody)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prosody
command -v prosody
