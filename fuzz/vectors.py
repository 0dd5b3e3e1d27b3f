"""Seed material from the official test vectors (``/work/shared/test-vectors``, format in
``shared/reference/test-vectors.md``).

The vectors live beside the repository (``../shared/test-vectors``, or
``$MLS_TEST_VECTORS``); without them the seeds come from the live world alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: how many entries of each vector file feed the seeds (they repeat per cipher suite)
PER_FILE = 60


def vectors_dir() -> Path:
    """``$MLS_TEST_VECTORS`` or ``<repo>/../shared/test-vectors``."""
    env = os.environ.get("MLS_TEST_VECTORS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "test-vectors"


def _load(name: str) -> list[dict[str, Any]]:
    p = vectors_dir() / name
    if not p.is_file():
        return []
    entries: list[dict[str, Any]] = json.loads(p.read_text())
    return entries[:PER_FILE]


def _hex(value: object) -> bytes | None:
    return bytes.fromhex(value) if isinstance(value, str) and value else None


def vector_blobs() -> Iterator[bytes]:
    """Every encoded struct of the vector files (hex strings that are wire data)."""
    for entry in _load("messages.json"):
        for value in entry.values():
            if (b := _hex(value)) is not None:
                yield b
    for name, fields in (
        ("welcome.json", ("welcome", "key_package")),
        ("tree-validation.json", ("tree",)),
        ("tree-operations.json", ("proposal", "tree_before", "tree_after")),
        ("treekem.json", ("ratchet_tree",)),
        ("transcript-hashes.json", ("authenticated_content",)),
        ("message-protection.json", ("proposal", "commit", "proposal_pub", "proposal_priv",
                                     "commit_pub", "commit_priv", "application_priv")),
    ):
        for entry in _load(name):
            for f in fields:
                if (b := _hex(entry.get(f))) is not None:
                    yield b
            for path in entry.get("update_paths", ()):
                if (b := _hex(path.get("update_path"))) is not None:
                    yield b
    for name in ("passive-client-welcome.json", "passive-client-handling-commit.json"):
        for entry in _load(name):
            for f in ("welcome", "key_package", "ratchet_tree"):
                if (b := _hex(entry.get(f))) is not None:
                    yield b
            for epoch in entry.get("epochs", ()):
                for p in epoch.get("proposals", ()):
                    if (b := _hex(p)) is not None:
                        yield b
                if (b := _hex(epoch.get("commit"))) is not None:
                    yield b


@dataclass(frozen=True)
class PassiveWelcome:
    """A Welcome vector with the recipient's KeyPackage and private keys (§12.4.3.1)."""

    key_package: bytes
    init_priv: bytes
    encryption_priv: bytes
    signature_priv: bytes
    welcome: bytes
    ratchet_tree: bytes | None
    external_psks: dict[bytes, bytes]


def welcome_vectors() -> list[PassiveWelcome]:
    """The Welcomes of ``passive-client-welcome.json`` that need no resumption PSK."""
    out = []
    for e in _load("passive-client-welcome.json"):
        psks = {bytes.fromhex(p["psk_id"]): bytes.fromhex(p["psk"])
                for p in e.get("external_psks", ())}
        out.append(PassiveWelcome(bytes.fromhex(e["key_package"]), bytes.fromhex(e["init_priv"]),
                                  bytes.fromhex(e["encryption_priv"]),
                                  bytes.fromhex(e["signature_priv"]), bytes.fromhex(e["welcome"]),
                                  _hex(e.get("ratchet_tree")), psks))
    return out
