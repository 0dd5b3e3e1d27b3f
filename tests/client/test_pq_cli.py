"""The CLI on an experimental post-quantum suite (docs/pq.md): ``mls-bridge demo
--suite 83`` and a scripted conversation in a group created on suite 83."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from mls_client.settings import Settings

from .test_cli import User, run

PQ_ENV = {"MLS_BRIDGE_CIPHER_SUITE": "83", "MLS_BRIDGE_EXPERIMENTAL_PQ": "true"}


def test_suite_83_needs_the_opt_in(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="experimental_pq"):
        Settings(state_dir=tmp_path, cipher_suite=83)
    assert Settings(state_dir=tmp_path, cipher_suite=83, experimental_pq=True).cipher_suite == 83
    with pytest.raises(ValidationError, match="unsupported cipher suite 77"):
        Settings(state_dir=tmp_path, cipher_suite=77, experimental_pq=True)


def test_demo_on_suite_83() -> None:
    result = run("demo", "--suite", "83")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith(", cipher suite 83")
    assert "demo finished: every check held" in result.stdout
    assert "DIFFERENT" not in result.stdout


class PqUser(User):
    def __call__(self, *args: str, ok: bool = True):  # type: ignore[no-untyped-def]
        result = run(*self.args, *args, home=self.home,
                     env={"MLS_BRIDGE_KEY_PACKAGES__POOL_SIZE": "3",
                          "MLS_BRIDGE_KEY_PACKAGES__THRESHOLD": "1", **PQ_ENV})
        if ok:
            assert result.returncode == 0, result.stderr
        return result


def test_group_on_suite_83_from_the_cli(tmp_path: Path) -> None:
    alice, bob = PqUser(tmp_path, "alice"), PqUser(tmp_path, "bob")
    alice("identity", "create", "alice")
    bob("identity", "create", "bob")
    gid = alice("group", "create", "--name", "pq", "--suite", "83").stdout.strip()
    assert len(gid) == 128  # suite 83's KDF.Nh is 64 bytes
    assert alice("invite", "pq", "bob").stdout.startswith("epoch 1: added ")
    assert f"joined group {gid[:16]} at epoch 1" in bob("read").stderr
    alice("send", "pq", "post-quantum hello")
    assert re.fullmatch(r"\[pq\] epoch 1 alice: \[\w{8}\] post-quantum hello",
                        bob("read").stdout.strip())
