"""``rfc9420`` (PyPI, pure Python) under the shared driver of
:mod:`benchmarks.peers.common`.

``benchmarks/peers/.venv/bin/python -m benchmarks.peers.rfc9420_bench OP N ITERATIONS
[--suite 1]`` from the repository root (the package lives only in the peers' venv). Any
other ``--suite`` gets "na" lines: this bench makes X25519/Ed25519 KeyPackages (suite 1),
and the package has no post-quantum suite.

API used (``rfc9420.api.session.MLSGroupSession``): ``create_with_config``,
``add_member`` + ``process_proposal`` (a proposal only enters the committer's cache when
it processes it), ``commit`` (covers every cached proposal; with none, an UpdatePath),
``join_from_welcome_with_config``, ``apply_commit`` (PublicMessage only),
``protect_application`` / ``unprotect_application``, ``export_secret``. The package has no
KeyPackage generator, so :func:`make_member` signs one as RFC 9420 §10 says.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from rfc9420 import (  # type: ignore[import-not-found, unused-ignore]
    DefaultCryptoProvider,
    GroupConfig,
    MemoryStorageProvider,
)
from rfc9420.api.session import MLSGroupSession  # type: ignore[import-not-found, unused-ignore]
from rfc9420.extensions.extensions import (  # type: ignore[import-not-found, unused-ignore]
    build_capabilities_data,
)
from rfc9420.messages.data_structures import (  # type: ignore[import-not-found, unused-ignore]
    Credential,
    Signature,
)
from rfc9420.messages.key_packages import (  # type: ignore[import-not-found, unused-ignore]
    KeyPackage,
    LeafNode,
)

from benchmarks.peers.common import GROUP_ID, KIB, Stack, main, require_suite_1

SUITE = 0x0001
NO_OTHER_SUITE = ("rfc9420 1.3.0 has RFC 9420's suites 1-7 only, no post-quantum suite, "
                  "and this bench makes suite 1 KeyPackages")


def new_config() -> Any:
    return GroupConfig(crypto_provider=DefaultCryptoProvider(suite_id=SUITE),
                       storage_provider=MemoryStorageProvider())


def raw(key: Any) -> bytes:
    data: bytes = key.public_key().public_bytes_raw()
    return data


def make_member(crypto: Any, identity: bytes) -> tuple[Any, bytes, bytes]:
    """(KeyPackage, init private key, signature private key), signed per §7.2 / §10."""
    enc, init, sig = (X25519PrivateKey.generate(), X25519PrivateKey.generate(),
                      Ed25519PrivateKey.generate())
    sig_priv = sig.private_bytes_raw()
    leaf = LeafNode(encryption_key=raw(enc), signature_key=raw(sig),
                    credential=Credential(identity=identity, public_key=raw(sig)),
                    capabilities=build_capabilities_data([SUITE], [], include_grease=False),
                    lifetime_not_before=0, lifetime_not_after=2**63)
    leaf = dataclasses.replace(leaf, signature=Signature(
        crypto.sign_with_label(sig_priv, b"LeafNodeTBS", leaf.tbs_serialize())))
    kp = KeyPackage(init_key=raw(init), leaf_node=leaf)
    kp = dataclasses.replace(kp, signature=Signature(
        crypto.sign_with_label(sig_priv, b"KeyPackageTBS", kp.tbs_serialize())))
    return kp, init.private_bytes_raw(), sig_priv


class Rfc9420(Stack[Any]):
    """``MLSGroupSession``: commit() stages, merges and applies in one call."""

    name = "rfc9420"

    def __init__(self, suite: int = 1) -> None:
        require_suite_1(self.name, suite, NO_OTHER_SUITE)
        self.crypto = DefaultCryptoProvider(suite_id=SUITE)
        self.joiners: list[tuple[Any, bytes, bytes]] = []
        self.creator_kp: Any = None
        self.creator_sig = b""
        self.session: Any = None
        self.welcome: Any = None

    def prepare(self, n: int) -> None:
        self.creator_kp, _, self.creator_sig = make_member(self.crypto, b"creator")
        self.joiners = [make_member(self.crypto, b"member-%d" % i) for i in range(1, n)]

    def build(self) -> int:
        session = MLSGroupSession.create_with_config(new_config(), GROUP_ID, self.creator_kp)
        for kp, _, _ in self.joiners:
            session.process_proposal(session.add_member(kp, self.creator_sig), 0)
        _, welcomes = session.commit(self.creator_sig)
        self.session, self.welcome = session, welcomes[0]
        return len(self.welcome.serialize())

    def key_package_size(self) -> int | None:
        return len(self.joiners[0][0].serialize()) if self.joiners else None

    def join(self, joiner: int) -> Any:
        kp, init_priv, _ = self.joiners[joiner]
        return MLSGroupSession.join_from_welcome_with_config(new_config(), self.welcome,
                                                             init_priv, key_package=kp)

    def commit(self) -> bytes:
        data, _ = self.session.commit(self.creator_sig)
        out: bytes = data
        return out

    def process(self, member: Any, commit: bytes) -> None:
        member.apply_commit(commit, 0)

    def app_round(self, member: Any) -> None:
        # signed as §6.1 requires: without signing_key, rfc9420 omits the signature
        wire = self.session.protect_application(KIB, signing_key=self.creator_sig)
        _, plaintext = member.unprotect_application(wire)
        if plaintext != KIB:
            raise AssertionError("application message not recovered")

    def agree(self, member: Any) -> bool:
        return bool(self.session.export_secret(b"benchmark", b"", 32)
                    == member.export_secret(b"benchmark", b"", 32))


if __name__ == "__main__":
    sys.exit(main(Rfc9420))
