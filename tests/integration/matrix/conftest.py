"""A real Synapse for the Matrix integration tests (one per test session).

Skipped with a reason when Synapse is not installed, unless ``MLS_REQUIRE_SERVERS=1``
(CI), which turns the skip into a failure.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.synapse import SynapseServer, SynapseUnavailable, synapse_python

PASSWORD = "correct horse battery staple"


class Homeserver:
    """The running server and a factory of fresh users (unique per test)."""

    def __init__(self, server: SynapseServer) -> None:
        self.server = server
        self._counter = itertools.count()

    @property
    def url(self) -> str:
        return self.server.url

    def user(self, name: str) -> str:
        """Register ``<name><n>`` and return its user id."""
        return self.server.register(f"{name}{next(self._counter)}", PASSWORD)


def require_synapse() -> Path:
    """The Synapse interpreter; skips the test without one (fails under
    ``MLS_REQUIRE_SERVERS=1``)."""
    try:
        return synapse_python()
    except SynapseUnavailable as exc:
        if os.environ.get("MLS_REQUIRE_SERVERS") == "1":
            pytest.fail(f"MLS_REQUIRE_SERVERS=1 but {exc}")
        pytest.skip(f"Synapse is not installed: {exc}")


@pytest.fixture(scope="session")
def homeserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Homeserver]:
    server = SynapseServer(Path(tmp_path_factory.mktemp("synapse")), python=require_synapse())
    server.start()
    try:
        yield Homeserver(server)
    finally:
        server.stop()
