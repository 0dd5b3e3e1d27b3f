"""A real Prosody and Synapse for the bridge's integration tests (one each per session).

Skipped with a reason when either server is not installed, unless
``MLS_REQUIRE_SERVERS=1`` (CI), which turns the skip into a failure."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devservers.prosody import ProsodyServer, prosody_available
from devservers.synapse import SynapseServer, SynapseUnavailable, synapse_python


def _missing(reason: str) -> None:
    if os.environ.get("MLS_REQUIRE_SERVERS") == "1":
        pytest.fail(f"MLS_REQUIRE_SERVERS=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def bridge_servers(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[ProsodyServer, SynapseServer]]:
    if not prosody_available():
        _missing("prosody is not installed (scripts/install_prosody.sh installs it)")
    try:
        python = synapse_python()
    except SynapseUnavailable as exc:
        _missing(f"Synapse is not installed: {exc}")
        raise
    prosody = ProsodyServer(Path(tmp_path_factory.mktemp("bridge-prosody")))
    synapse = SynapseServer(Path(tmp_path_factory.mktemp("bridge-synapse")), python=python)
    prosody.start()
    try:
        synapse.start()
        try:
            yield prosody, synapse
        finally:
            synapse.stop()
    finally:
        prosody.stop()
