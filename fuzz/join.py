"""Fuzz target ``join``: ``Group.join`` from a Welcome (§12.4.3.1) to a fixed KeyPackage.

Input: ``mode || chunks`` (:func:`fuzz.harness.split_chunks`). Mode bits:

* bit 0 clear, raw: chunks are the MLSMessage(Welcome) and an out-of-band ratchet tree
  (used if non-empty). ``mode >> 2`` picks the recipient: 0 is Dave of the fuzz world,
  ``k`` the ``k-1``-th Welcome of ``passive-client-welcome.json`` (if present);
* bit 0 set, structured: chunks are a GroupInfo, a GroupSecrets and an out-of-band tree.
  The harness re-signs the GroupInfo with its signer's key, encrypts it under the welcome
  key that the GroupSecrets' ``joiner_secret`` (and PSKs) give, and seals the GroupSecrets
  bytes to Dave's init key (§12.4.3.1), so mutations reach everything behind the
  envelope: GroupSecrets decoding, tree validation, the confirmation tag;
* bit 1 (structured): first set the GroupInfo's tree hash to that of its tree, so a
  mutated tree reaches tree validation (§7.9) instead of the tree-hash check.

Oracle: only MLSError may escape; a joined group must store and load again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from mls_core.config import GroupConfig
from mls_core.errors import MLSError
from mls_core.framing import MLSMessage
from mls_core.group import Group
from mls_core.join_flow import _welcome_psks
from mls_core.key_package import KeyPackagePrivate
from mls_core.key_schedule import welcome_key_nonce, welcome_secret
from mls_core.messages import (
    EncryptedGroupSecrets,
    GroupInfo,
    GroupSecrets,
    KeyPackage,
    Welcome,
)
from mls_core.nodes import HPKECiphertext
from mls_core.proposals import Add, PreSharedKey
from mls_core.psk import ExternalPSK, PreSharedKeyID, PSKType
from mls_core.welcome import WELCOME_LABEL, decrypt_group_info, decrypt_group_secrets

from .harness import InvariantViolation, Outcome, guarded, join_chunks, split_chunks
from .join_external import resign_group_info, tree_bytes_of
from .vectors import welcome_vectors
from .world import NOW, PSK_ID, World, config, load_world


@dataclass(frozen=True)
class Recipient:
    key_package: KeyPackage
    private: KeyPackagePrivate
    config: GroupConfig
    now: int | None


@cache
def _setup() -> tuple[World, dict[bytes, bytes], tuple[Recipient, ...]]:
    world = load_world()
    suite = world.suite
    keyring = {suite.signature_public_key(k): k for k in world.keys.values()}
    recipients = [Recipient(*world.key_package(), config(), NOW)]
    for v in welcome_vectors():
        try:
            kp = MLSMessage.decode(v.key_package).key_package
        except MLSError:
            continue
        if kp is not None:
            cfg = GroupConfig(external_psks=dict(v.external_psks))
            recipients.append(Recipient(kp, KeyPackagePrivate(v.init_priv, v.encryption_priv,
                                                              v.signature_priv), cfg, None))
    return world, keyring, tuple(recipients)


def _envelope(world: World, keyring: dict[bytes, bytes], data: bytes, fix_hash: bool,
              ) -> tuple[bytes, bytes | None] | None:
    """The Welcome for structured input (module docstring), and the out-of-band tree."""
    gi_bytes, gs_bytes, tree_chunk = split_chunks(data, 3)
    tree = tree_chunk or None
    suite = world.suite
    kp, _ = world.key_package()
    try:
        info = GroupInfo.decode(gi_bytes)
        secrets = GroupSecrets.decode(gs_bytes)
        psk_secret = _welcome_psks(suite, tuple(secrets.psks), config(), {})
        signed = resign_group_info(suite, keyring, world.keys["bob"], info,
                                   tree_bytes_of(info, tree), fix_hash)
        key, nonce = welcome_key_nonce(suite, welcome_secret(suite, secrets.joiner_secret,
                                                             psk_secret))
    except MLSError:
        return None
    encrypted_group_info = suite.seal(key, nonce, b"", signed.encode())
    kem_output, ciphertext = suite.encrypt_with_label(kp.init_key, WELCOME_LABEL,
                                                      encrypted_group_info, gs_bytes)
    entry = EncryptedGroupSecrets(suite.make_key_package_ref(kp.encode()),
                                  HPKECiphertext(kem_output, ciphertext))
    welcome = Welcome(suite.id, (entry,), encrypted_group_info)
    return MLSMessage.of(welcome).encode(), tree


def _join(welcome: bytes, tree: bytes | None, r: Recipient) -> None:
    group = Group.join(welcome, r.key_package, r.private, ratchet_tree=tree, config=r.config,
                       now=r.now)
    try:
        Group.from_bytes(group.to_bytes(), r.config)
    except MLSError as e:
        raise InvariantViolation(f"a joined group does not load again: {e}") from None


def run_one(data: bytes) -> Outcome:
    if not data:
        return Outcome.SKIPPED
    world, keyring, recipients = _setup()
    mode = data[0]
    if mode & 1:
        built = _envelope(world, keyring, data[1:], bool(mode & 2))
        if built is None:
            return Outcome.SKIPPED
        welcome, tree = built
        recipient = recipients[0]
    else:
        welcome, tree_chunk = split_chunks(data[1:], 2)
        tree = tree_chunk or None
        recipient = recipients[(mode >> 2) % len(recipients)]
    return guarded(lambda: _join(welcome, tree, recipient))


def TestOneInput(data: bytes) -> None:
    run_one(data)


def _structured(world: World, welcome: bytes, tree: bytes | None) -> bytes:
    """Structured form of a Welcome to Dave: its GroupInfo and GroupSecrets in clear."""
    suite = world.suite
    kp, private = world.key_package()
    w = MLSMessage.decode(welcome).welcome
    assert w is not None
    secrets = decrypt_group_secrets(suite, w, kp, private.init_priv)
    psk_secret = _welcome_psks(suite, tuple(secrets.psks), config(), {})
    info = decrypt_group_info(suite, w, secrets.joiner_secret, psk_secret)
    return join_chunks(info.encode(), secrets.encode(), tree or b"")


def seeds() -> Iterator[bytes]:
    """Bob's Welcomes of Dave (tree inside or out of band, with a PSK), raw and
    structured, and the passive-client Welcomes to their own KeyPackages."""
    world, _, recipients = _setup()
    kp, _ = world.key_package()
    psk = PreSharedKey(PreSharedKeyID(PSKType.EXTERNAL, ExternalPSK(PSK_ID), bytes(32)))
    plans: list[tuple[list[Add | PreSharedKey], bool]] = [
        ([Add(kp)], True), ([Add(kp)], False), ([Add(kp), psk], True)]
    for proposals, in_welcome in plans:
        bob = world.group("bob")
        result = bob.commit(proposals, ratchet_tree_in_welcome=in_welcome, now=NOW)
        bob.merge_pending_commit()
        assert result.welcome is not None
        tree = None if in_welcome else bob.ratchet_tree_bytes()
        yield b"\x00" + join_chunks(result.welcome, tree or b"")
        structured = _structured(world, result.welcome, tree)
        yield b"\x01" + structured
        yield b"\x03" + structured
    for k, v in enumerate(welcome_vectors()[:len(recipients) - 1], start=1):
        if k < 64:
            yield bytes([k << 2]) + join_chunks(v.welcome, v.ratchet_tree or b"")
