"""Interop on the experimental PQ suites (docs/pq.md): our interop service serves 79-88
only when asked, and a shared config passes ours x ts-mls on suites 83 (X-Wing, Ed25519)
and 86 (ML-KEM-1024, ML-DSA-87). The ts-mls half is skipped, with the reason, when Node
or the npm packages of its PQ suites are missing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from interop.generated import mls_client_pb2 as pb
from interop.run import main
from interop.service import InteropService
from mls_core import ciphersuite

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT.parent / "shared" / "reference" / "interop" / "configs"
MODULES = ROOT / "interop" / "ts-mls" / "node_modules"
PQ = list(range(79, 89))


@pytest.fixture
def pq_restored() -> Iterator[None]:
    before = ciphersuite.experimental_pq_enabled()
    yield
    ciphersuite.enable_experimental_pq(before)


def test_service_advertises_pq_suites_only_when_enabled(pq_restored: None) -> None:
    service = InteropService("ours")
    ciphersuite.enable_experimental_pq(False)
    plain = list(service.SupportedCiphersuites(pb.SupportedCiphersuitesRequest()).ciphersuites)
    assert plain == [1, 2, 3, 4, 5, 6, 7]
    ciphersuite.enable_experimental_pq()
    both = list(service.SupportedCiphersuites(pb.SupportedCiphersuitesRequest()).ciphersuites)
    assert both == plain + PQ


def _ts_mls_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    for package in ("ts-mls", "@hpke/ml-kem", "@hpke/hybridkem-x-wing", "@noble/post-quantum"):
        if not (MODULES / package).is_dir():
            return f"npm package {package} missing: run `bash interop/ts-mls/install.sh`"
    if not (CONFIGS / "welcome_join.json").is_file():
        return f"shared interop configs missing at {CONFIGS}"
    return None


def test_welcome_join_ours_x_ts_mls_on_pq_suites(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reason = _ts_mls_missing()
    if reason:
        pytest.skip(reason)
    # the runner sets MLS_EXPERIMENTAL_PQ for the clients it starts; undo it afterwards
    monkeypatch.setenv("MLS_EXPERIMENTAL_PQ", "0")
    status = main([str(CONFIGS / "welcome_join.json"), "--clients", "ours,ts-mls",
                   "--alternate", "--suites", "83,86", "--start-timeout", "60"])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert status == 0, captured.out + captured.err
    # 7 scripts x 2 modes x 2 suites, minus with_path_secret (ts-mls cannot force a path)
    assert lines[0] == "welcome_join: 28 passed, 0 failed", captured.out
    assert "ts-mls 1.6.4 (suites 1,2,3,4,5,6,7,77,78,79,80,81,82,83,84,85,86,87,88)" in (
        captured.err)
