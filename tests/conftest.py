"""Suite-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mls_core import ciphersuite


@pytest.fixture(autouse=True)
def _experimental_pq_stays_as_it_was() -> Iterator[None]:
    """The experimental PQ opt-in is process-wide (mls_core's suite registry): a test
    that turns it on (directly, or through Settings(experimental_pq=True)) must not
    change the suites every later test sees."""
    before = ciphersuite.experimental_pq_enabled()
    yield
    ciphersuite.enable_experimental_pq(before)
