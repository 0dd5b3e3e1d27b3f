"""Our stack (``mls_core``) under the shared driver of :mod:`benchmarks.peers.common`.

``.venv/bin/python -m benchmarks.peers.ours_bench OP N ITERATIONS [--suite S]`` (from the
repository root). Suite 1 unless ``--suite`` says otherwise; naming an experimental
post-quantum suite (79-88, docs/pq.md) opts in to them (``enable_experimental_pq``).
Handshakes as PublicMessage (§6.2) as in every peer, the ratchet tree in the Welcome
(§12.4.3.3), the joiner's input bounds raised (:data:`LIMITS`).
"""

from __future__ import annotations

import sys

from benchmarks.peers.common import GROUP_ID, KIB, Stack, UnsupportedSuite, main
from mls_core.ciphersuite import (
    EXPERIMENTAL_PQ_SUITES,
    CipherSuite,
    enable_experimental_pq,
    get_suite,
)
from mls_core.config import GroupConfig
from mls_core.credentials import Credential
from mls_core.errors import UnsupportedError
from mls_core.events import ApplicationMessage
from mls_core.framing import WireFormat
from mls_core.group import Group
from mls_core.key_package import KeyPackagePrivate, create_key_package
from mls_core.messages import KeyPackage
from mls_core.proposals import Add

NOW = 1_700_000_000
def config() -> GroupConfig:
    """The joiner's bounds stay the defaults (docs/security.md, "Bounds"): they scale
    with the suite, so the 10.6 MB Welcome of 1,000 members on suite 85 is within them."""
    return GroupConfig(handshake_wire_format=WireFormat.MLS_PUBLIC_MESSAGE)


class Ours(Stack[Group]):
    """``mls_core.Group``: commit() + merge_pending_commit(), process(bytes)."""

    name = "ours"

    def __init__(self, suite: CipherSuite) -> None:
        self.suite = suite
        self.joiners: list[tuple[KeyPackage, KeyPackagePrivate]] = []
        self.creator: Group | None = None
        self.creator_sig = b""
        self.welcome = b""

    def prepare(self, n: int) -> None:
        self.creator_sig, _ = self.suite.generate_signature_key_pair()
        self.joiners = []
        for i in range(1, n):
            sig, _ = self.suite.generate_signature_key_pair()
            self.joiners.append(create_key_package(
                self.suite, Credential.basic(b"member-%d" % i), sig, now=NOW))

    def build(self) -> int:
        creator = Group.create(self.suite.id, Credential.basic(b"creator"), self.creator_sig,
                               group_id=GROUP_ID, now=NOW, config=config())
        result = creator.commit([Add(kp) for kp, _ in self.joiners], force_path=False,
                                now=NOW)
        creator.merge_pending_commit()
        assert result.welcome is not None
        self.creator, self.welcome = creator, result.welcome
        return len(self.welcome)

    def key_package_size(self) -> int | None:
        return len(self.joiners[0][0].encode()) if self.joiners else None

    def join(self, joiner: int) -> Group:
        kp, private = self.joiners[joiner]
        return Group.join(self.welcome, kp, private, config=config(), now=NOW)

    def _creator(self) -> Group:
        assert self.creator is not None, "build() first"
        return self.creator

    def commit(self) -> bytes:
        creator = self._creator()
        result = creator.commit(now=NOW)  # empty: full UpdatePath (force_path default)
        creator.merge_pending_commit()
        return result.commit

    def process(self, member: Group, commit: bytes) -> None:
        member.process(commit, now=NOW)

    def app_round(self, member: Group) -> None:
        event = member.process(self._creator().encrypt(KIB), now=NOW)
        if not isinstance(event, ApplicationMessage) or event.data != KIB:
            raise AssertionError("application message not recovered")

    def agree(self, member: Group) -> bool:
        label, ctx = b"benchmark", b""
        return (self._creator().export_secret(label, ctx, 32)
                == member.export_secret(label, ctx, 32))


def make(suite_id: int) -> Ours:
    """Our stack on ``suite_id``; a post-quantum suite is enabled first (opt-in)."""
    if suite_id in EXPERIMENTAL_PQ_SUITES:
        enable_experimental_pq()
    try:
        return Ours(get_suite(suite_id))
    except UnsupportedError as exc:
        raise UnsupportedSuite(f"ours cannot run cipher suite {suite_id}: {exc}") from exc


if __name__ == "__main__":
    sys.exit(main(make))
