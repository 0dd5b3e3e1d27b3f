"""mls-rs (the Rust library, through the ``agentvault-mls-rs-uniffi`` Python bindings)
under the shared driver of :mod:`benchmarks.peers.common`.

``benchmarks/peers/.venv/bin/python -m benchmarks.peers.mls_rs_bench [--objects] OP N
ITERATIONS [--suite 1]`` from the repository root (the package lives only in the peers'
venv). Any other ``--suite`` gets "na" lines: the bindings have cipher suite 1 only.

Two ways to hand messages from one member to another, two columns of the table:

* **bytes** (default): every MLSMessage goes ``to_bytes()`` at the sender and
  ``Message.from_bytes()`` at the receiver, as a Python application sending it over a
  network does. UniFFI's generated Python code copies each byte string one byte at a time
  (``_UniffiRustBufferBuilder.write``, about 0.14 µs per byte), so at n = 1,000 this
  copying is most of mls-rs's process time.
* **objects** (``--objects``): the ``Message`` object the sender got from mls-rs is given
  to the receiver as is (the members share this process). UniFFI passes objects as
  handles, so no byte crosses the boundary: this is close to what Rust code calling
  mls-rs gets. The Welcome, the Commits and the application messages all travel so.

What the bindings expose (``mls_rs_uniffi``): ``Client(id, SignatureKeypair,
ClientConfig)`` with ``generate_key_package_message``, ``create_group``, ``join_group``;
``Group`` with ``add_members`` (one Commit for all), ``commit`` (empty, with an
UpdatePath), ``encrypt_application_message``, ``process_incoming_message`` (which also
merges the group's own pending Commit), ``export_secret``. Only cipher suite 1
(``CURVE25519_AES128``). Handshakes are PublicMessages (mls-rs's default) and
``client_config_default()`` puts the ratchet tree in the Welcome.
"""

from __future__ import annotations

import sys
from typing import Any

import mls_rs_uniffi as rs  # type: ignore[import-not-found, unused-ignore]

from benchmarks.peers.common import (
    GROUP_ID,
    KIB,
    MLS_MESSAGE_HEADER,
    Stack,
    main,
    require_suite_1,
)

SUITE = rs.CipherSuite.CURVE25519_AES128
NO_OTHER_SUITE = ("its Python bindings (agentvault-mls-rs-uniffi 0.1.1) expose only "
                  "CURVE25519_AES128 (suite 1), no post-quantum suite")


def new_client(name: bytes) -> Any:
    return rs.Client(name, rs.generate_signature_keypair(SUITE), rs.client_config_default())


class MlsRs(Stack[Any]):
    """mls-rs through UniFFI: every call crosses the FFI with serialized arguments."""

    name = "mls-rs"

    def __init__(self, suite: int = 1) -> None:
        require_suite_1(self.name, suite, NO_OTHER_SUITE)
        self.clients: list[Any] = []
        self.key_packages: list[Any] = []
        self.creator: Any = None
        self.group: Any = None
        self.welcome: Any = None

    def prepare(self, n: int) -> None:
        self.creator = new_client(b"creator")
        self.clients = [new_client(b"member-%d" % i) for i in range(1, n)]
        self.key_packages = [c.generate_key_package_message() for c in self.clients]

    def build(self) -> int | None:
        group = self.creator.create_group(GROUP_ID)
        out = group.add_members(self.key_packages)
        group.process_incoming_message(out.commit_message)  # merges the pending Commit
        self.group = group
        welcome = out.welcome_message.to_bytes()
        self.welcome = welcome
        return len(welcome)

    def key_package_size(self) -> int | None:
        if not self.key_packages:
            return None
        return len(self.key_packages[0].to_bytes()) - MLS_MESSAGE_HEADER

    def join(self, joiner: int) -> Any:
        welcome = rs.Message.from_bytes(self.welcome)
        return self.clients[joiner].join_group(None, welcome).group

    def commit(self) -> bytes:
        out = self.group.commit()
        self.group.process_incoming_message(out.commit_message)
        data: bytes = out.commit_message.to_bytes()
        return data

    def process(self, member: Any, commit: bytes) -> None:
        member.process_incoming_message(rs.Message.from_bytes(commit))

    def app_round(self, member: Any) -> None:
        wire = self.group.encrypt_application_message(KIB).to_bytes()
        received = member.process_incoming_message(rs.Message.from_bytes(wire))
        if received.data != KIB:
            raise AssertionError("application message not recovered")

    def agree(self, member: Any) -> bool:
        return bool(self.group.export_secret(b"benchmark", b"", 32)
                    == member.export_secret(b"benchmark", b"", 32))


class MlsRsObjects(MlsRs):
    """The same stack, with ``Message`` objects handed over in memory: no to_bytes /
    from_bytes, so no UniFFI byte copying on the way (sizes are taken untimed)."""

    name = "mls-rs-objects"

    def build(self) -> int | None:
        group = self.creator.create_group(GROUP_ID)
        out = group.add_members(self.key_packages)
        group.process_incoming_message(out.commit_message)
        self.group, self.welcome = group, out.welcome_message
        return None  # sized by welcome_size(), outside the timer

    def welcome_size(self) -> int | None:
        return len(self.welcome.to_bytes())

    def join(self, joiner: int) -> Any:
        return self.clients[joiner].join_group(None, self.welcome).group

    def commit(self) -> Any:
        out = self.group.commit()
        self.group.process_incoming_message(out.commit_message)
        return out.commit_message

    def process(self, member: Any, commit: Any) -> None:
        member.process_incoming_message(commit)

    def app_round(self, member: Any) -> None:
        received = member.process_incoming_message(
            self.group.encrypt_application_message(KIB))
        if received.data != KIB:
            raise AssertionError("application message not recovered")

    def wire_size(self, commit: Any) -> int:
        return len(commit.to_bytes())


if __name__ == "__main__":
    if "--objects" in sys.argv[1:]:
        sys.exit(main(MlsRsObjects, [a for a in sys.argv[1:] if a != "--objects"]))
    sys.exit(main(MlsRs))
