"""Fixtures shared by the real-server integration tests."""

from __future__ import annotations

import pytest

from devservers.tls import ServerPki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ServerPki:
    """A throwaway private CA and a certificate it signed for localhost/127.0.0.1 (the
    TLS test servers': test_xmpp_tls.py, test_matrix_tls.py)."""
    return make_pki(tmp_path_factory.mktemp("pki"))
