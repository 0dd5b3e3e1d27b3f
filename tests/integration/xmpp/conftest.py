"""A real Prosody for the XMPP integration tests (one per session, loopback, temp dir).

Skipped when Prosody is not installed, unless ``MLS_REQUIRE_SERVERS=1`` (CI), where a
missing server fails the tests instead."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.prosody import ProsodyServer, prosody_available


def require_prosody() -> None:
    if prosody_available():
        return
    if os.environ.get("MLS_REQUIRE_SERVERS") == "1":
        pytest.fail("MLS_REQUIRE_SERVERS=1 but prosody is not installed "
                    "(run scripts/install_prosody.sh)")
    pytest.skip("prosody is not installed (scripts/install_prosody.sh installs it)")


@pytest.fixture(scope="session")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProsodyServer]:
    """Prosody with its default 256 KiB stanza limit."""
    require_prosody()
    server = ProsodyServer(Path(tmp_path_factory.mktemp("prosody")))
    server.start()
    try:
        yield server
    finally:
        server.stop()
