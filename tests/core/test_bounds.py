"""Bounds before work on join inputs (issue 16; docs/security.md, "Bounds") and the
protocol version of every MLSMessage (RFC 9420 §6).

A Welcome (§12.4.3.1), a GroupInfo (§12.4.3.2) or an out-of-band tree (§12.4.3.3) over
:class:`~mls_core.config.InputLimits` is refused with LimitError before its tree is
built: the leaf bound is checked while decoding, node by node; the GroupInfo signature
is checked with the tree decoded only up to the signer's leaf. Counts of decoded nodes
prove the order; no timing here (see ``benchmarks/hostile_inputs.py``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mls_core import join_flow, nodes
from mls_core.ciphersuite import get_suite
from mls_core.codec import Codec, Reader, decode_value
from mls_core.config import GroupConfig, InputLimits
from mls_core.credentials import Credential
from mls_core.errors import (
    DecodeError,
    LimitError,
    ProtocolError,
    UsageError,
    VerificationError,
    VersionError,
)
from mls_core.external import join_proposal
from mls_core.framing import MLSMessage
from mls_core.group import Group
from mls_core.key_package import KeyPackagePrivate, create_key_package
from mls_core.messages import KeyPackage
from mls_core.nodes import Node, RatchetTreeReader, encode_ratchet_tree
from mls_core.proposals import Add, Remove
from mls_core.ratchet_tree import RatchetTree

NOW = 1_800_000_000
SUITE = get_suite(1)
BAD_VERSIONS = (0x0000, 0x0002, 0xFF00)


@dataclasses.dataclass
class Setup:
    """A 4-member group (every member has committed) and a joiner J with a Welcome
    that does not carry the tree."""

    creator: Group
    others: list[Group]
    kp: KeyPackage
    priv: KeyPackagePrivate
    welcome: bytes
    tree: bytes  # the real tree of the Welcome's epoch

    def join(self, *, welcome: bytes | None = None, tree: bytes | None = None,
             limits: InputLimits | None = None) -> Group:
        return Group.join(self.welcome if welcome is None else welcome, self.kp, self.priv,
                          ratchet_tree=self.tree if tree is None else tree,
                          config=GroupConfig(limits=limits or InputLimits()), now=NOW)


def _key_package(name: bytes) -> tuple[KeyPackage, KeyPackagePrivate]:
    sig, _ = SUITE.generate_signature_key_pair()
    return create_key_package(SUITE, Credential.basic(name), sig, now=NOW)


@pytest.fixture(scope="module")
def setup() -> Setup:
    sig, _ = SUITE.generate_signature_key_pair()
    creator = Group.create(SUITE.id, Credential.basic(b"creator"), sig, now=NOW)
    others: list[Group] = []
    for i in range(3):
        kp, priv = _key_package(b"m%d" % i)
        result = creator.commit([Add(kp)], now=NOW)
        creator.merge_pending_commit()
        for g in others:
            g.process(result.commit, now=NOW)
        assert result.welcome is not None
        others.append(Group.join(result.welcome, kp, priv, now=NOW))
    kp, priv = _key_package(b"joiner")
    result = creator.commit([Add(kp)], ratchet_tree_in_welcome=False, now=NOW)
    creator.merge_pending_commit()
    for g in others:
        g.process(result.commit, now=NOW)
    assert result.welcome is not None
    return Setup(creator, others, kp, priv, result.welcome, creator.ratchet_tree_bytes())


@dataclasses.dataclass
class Counts:
    nodes: int = 0  # non-blank tree nodes decoded
    trees: int = 0  # RatchetTrees built from decoded nodes


class _CountingCodec(Codec[Any]):
    def __init__(self, inner: Codec[Any], counts: Counts) -> None:
        self.inner, self.counts, self.name = inner, counts, inner.name

    def decode(self, r: Reader) -> Any:
        self.counts.nodes += 1
        return self.inner.decode(r)


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counts:
    """Live counts of tree nodes decoded and trees built during the test."""
    c = Counts()
    monkeypatch.setattr(nodes, "_OPTIONAL_NODE", _CountingCodec(nodes._OPTIONAL_NODE, c))
    original = RatchetTree.from_decoded

    def from_decoded(*args: Any) -> RatchetTree:
        c.trees += 1
        return original(*args)

    monkeypatch.setattr(RatchetTree, "from_decoded", from_decoded)
    return c


def _tree_nodes(data: bytes) -> tuple[Node | None, ...]:
    """The nodes of a ``ratchet_tree`` (with the codec's own, uncounted element codec)."""
    return decode_value(nodes.RATCHET_TREE, data)


def _huge_tree(first: Node, last: Node, n_leaves: int) -> bytes:
    """``n_leaves`` leaves, all blank but the first and the last (one byte per blank)."""
    array: list[Node | None] = [None] * (2 * n_leaves - 1)
    array[0], array[-1] = first, last
    return encode_ratchet_tree(array)


def _with_version(message: bytes, version: int) -> bytes:
    return version.to_bytes(2, "big") + message[2:]


# ----------------------------------------------------------------------------- trees


def test_a_2_20_leaf_out_of_band_tree_is_refused_while_decoding(setup: Setup,
                                                               counts: Counts) -> None:
    """The issue's 2 MiB Welcome tree: refused at its 2^17-th node, the blank runs
    counted without building anything, no RatchetTree built; the KeyPackage still
    joins with the real tree afterwards (nothing was consumed)."""
    real = _tree_nodes(setup.tree)
    assert real[0] is not None and real[-1] is not None
    huge = _huge_tree(real[0], real[-1], 1 << 20)
    assert len(huge) < InputLimits().tree_bytes(SUITE)  # the byte bound alone would pass it
    with pytest.raises(LimitError, match="more than 65536 leaves"):
        setup.join(tree=huge)
    assert (counts.nodes, counts.trees) == (1, 0)  # the signer's leaf (leaf 0) only
    assert setup.join().epoch == setup.creator.epoch
    assert counts.trees == 1


def test_the_leaf_bound_stops_decoding_at_the_bound(setup: Setup, counts: Counts) -> None:
    """A tree of 8 leaf positions (5 members) against a bound of 2 leaves: at most
    3 nodes are decoded before LimitError."""
    with pytest.raises(LimitError, match=r"InputLimits\.max_tree_leaves"):
        setup.join(limits=InputLimits(max_tree_leaves=2))
    assert 1 <= counts.nodes <= 3 and counts.trees == 0
    assert setup.join(limits=InputLimits(max_tree_leaves=8)).epoch == setup.creator.epoch


@pytest.mark.parametrize("spare", [0, -1])
def test_reader_bound_is_exact(setup: Setup, spare: int) -> None:
    """Exactly ``max_leaves`` leaves pass; one fewer allowed is refused."""
    width = len([*nodes.decode_ratchet_tree(setup.tree)])
    leaves = (width + 1) // 2
    reader = RatchetTreeReader(setup.tree, max_leaves=leaves + spare)
    if spare < 0:
        with pytest.raises(LimitError):
            reader.finish()
    else:
        assert len(reader.finish()) == width


def test_the_reader_matches_the_plain_codec(setup: Setup) -> None:
    """Node by node decoding gives the tree the ``optional<Node> <V>`` codec gives, and
    :meth:`RatchetTreeReader.node_at` stops short of the end."""
    plain = decode_value(nodes.RATCHET_TREE, setup.tree)
    reader = RatchetTreeReader(setup.tree)
    assert reader.node_at(2) == plain[2]
    assert len(reader._nodes) == 3
    assert reader.finish() == plain
    assert reader.node_at(len(plain) + 10) is None


@pytest.mark.parametrize("junk", [b"\x05\x00\x00", b"\x01\x00\x00", b"\x01\x02"],
                         ids=["truncated", "trailing", "presence-byte"])
def test_the_reader_refuses_malformed_bytes(junk: bytes) -> None:
    with pytest.raises(DecodeError):
        RatchetTreeReader(junk).finish()


def test_out_of_band_tree_over_the_byte_bound(setup: Setup, counts: Counts) -> None:
    size = len(setup.tree)
    with pytest.raises(LimitError, match=r"InputLimits\.max_tree_bytes"):
        setup.join(limits=InputLimits(max_tree_bytes=size - 1))
    assert (counts.nodes, counts.trees) == (0, 0)
    assert setup.join(limits=InputLimits(max_tree_bytes=size)).epoch == setup.creator.epoch


def test_group_info_tree_over_the_byte_bound(setup: Setup) -> None:
    info = setup.creator.group_info()
    size = len(setup.tree)
    sig, _ = SUITE.generate_signature_key_pair()
    with pytest.raises(LimitError, match=r"InputLimits\.max_tree_bytes"):
        Group.join_external(info, Credential.basic(b"x"), sig, now=NOW, config=GroupConfig(
            limits=InputLimits(max_tree_bytes=size - 1)))
    join_flow.verified_group_info(info, None, GroupConfig(
        limits=InputLimits(max_tree_bytes=size)), NOW)


def test_welcome_and_group_info_over_the_message_bound(setup: Setup) -> None:
    with pytest.raises(LimitError, match=r"InputLimits\.max_message_bytes"):
        setup.join(limits=InputLimits(max_message_bytes=len(setup.welcome) - 1))
    info = setup.creator.group_info()
    sig, _ = SUITE.generate_signature_key_pair()
    with pytest.raises(LimitError, match=r"InputLimits\.max_message_bytes"):
        Group.join_external(info, Credential.basic(b"x"), sig, now=NOW, config=GroupConfig(
            limits=InputLimits(max_message_bytes=len(info) - 1)))


def test_group_info_signature_is_checked_before_the_rest_of_the_tree(
        setup: Setup, counts: Counts) -> None:
    """The creator (leaf 0) signed the GroupInfo: with its signature broken, only leaf 0
    is decoded and no tree is built or hashed (§12.4.3.1, issue 16)."""
    info = bytearray(setup.creator.group_info())
    info[-1] ^= 1  # the signature is the GroupInfo's last field
    sig, _ = SUITE.generate_signature_key_pair()
    with pytest.raises(VerificationError, match="GroupInfo"):
        Group.join_external(bytes(info), Credential.basic(b"x"), sig, now=NOW)
    assert (counts.nodes, counts.trees) == (1, 0)
    join_flow.verified_group_info(setup.creator.group_info(), None, GroupConfig(), NOW)
    assert counts.nodes == 1 + sum(n is not None for n in _tree_nodes(setup.tree))


def test_members_are_unaffected_by_a_refused_external_join(setup: Setup) -> None:
    """A refused join_external changes no member's state."""
    before = [(g.epoch, g.epoch_authenticator) for g in (setup.creator, *setup.others)]
    sig, _ = SUITE.generate_signature_key_pair()
    with pytest.raises(LimitError):
        Group.join_external(setup.creator.group_info(), Credential.basic(b"x"), sig,
                            now=NOW, config=GroupConfig(limits=InputLimits(max_tree_leaves=1)))
    assert [(g.epoch, g.epoch_authenticator)
            for g in (setup.creator, *setup.others)] == before


def test_defaults_hold_a_10000_member_group(setup: Setup) -> None:
    """The default bounds admit 10,000 members in a steady-state tree: 2^14 leaf
    positions, and a commit-sourced leaf plus a parent node per member within the byte
    bound (the leaves here have basic credentials, like the client's)."""
    limits = InputLimits()
    tree = RatchetTree.from_decoded(SUITE, _tree_nodes(setup.tree))
    leaf = tree.leaf(0)
    parent = next(p for _, p in tree.parents())
    assert leaf is not None and leaf.parent_hash is not None  # commit-sourced
    per_member = len(leaf.encode()) + 1 + len(parent.encode()) + 1 + 2  # ~ +identity
    assert limits.max_tree_leaves >= 1 << 14
    assert 10_000 * per_member <= limits.tree_bytes(SUITE)
    assert limits.message_bytes(SUITE) > limits.tree_bytes(SUITE)


def _all_suites() -> list[int]:
    from mls_core.ciphersuite import EXPERIMENTAL_PQ_SUITES, SUPPORTED_SUITES

    return [*SUPPORTED_SUITES, *EXPERIMENTAL_PQ_SUITES]


@pytest.mark.parametrize("suite_id", _all_suites())
def test_default_byte_bounds_scale_with_the_suite(suite_id: int) -> None:
    """In every suite, PQ ones included, the defaults admit 10,000 members whose leaves
    carry that suite's keys and signatures (an ML-DSA-87 leaf is ~9 KB: 10,000 of them
    are 45 times suite 1's 4 MiB), with a parent node (HPKE key, parent hash) each."""
    from mls_core.ciphersuite import enable_experimental_pq

    enable_experimental_pq()
    suite = get_suite(suite_id)
    sig, _ = suite.generate_signature_key_pair()
    kp, _ = create_key_package(suite, Credential.basic(b"@member-00000:example.org"), sig,
                               now=NOW)
    per_member = (len(kp.leaf_node.encode()) + 2  # + node type, optional
                  + suite.hpke.kem.n_pk + suite.hash_size + 8)  # a parent node
    limits = InputLimits()
    assert 10_000 * per_member <= limits.tree_bytes(suite)
    assert limits.tree_bytes(suite) <= 4 * 10_000 * per_member  # not needlessly loose
    assert limits.message_bytes(suite) > limits.tree_bytes(suite)
    explicit = InputLimits(max_tree_bytes=1000, max_message_bytes=2000)
    assert (explicit.tree_bytes(suite), explicit.message_bytes(suite)) == (1000, 2000)


def test_a_pq_welcome_over_suite_1s_bound_joins_within_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The byte bounds are read for the Welcome's suite (the KeyPackage's) and the
    GroupInfo's (its first bytes, before decoding): a suite-83 group whose tree is over
    the suite-1 default, but within 7 times it, is joined and externally joined with the
    defaults; the suite-1 bound refuses that tree."""
    from mls_core import config
    from mls_core.ciphersuite import enable_experimental_pq

    enable_experimental_pq()
    pq = get_suite(83)
    assert pq.leaf_scale == 7
    sig, _ = pq.generate_signature_key_pair()
    creator = Group.create(83, Credential.basic(b"creator"), sig, now=NOW)
    jsig, _ = pq.generate_signature_key_pair()
    kp, priv = create_key_package(pq, Credential.basic(b"joiner"), jsig, now=NOW)
    result = creator.commit([Add(kp)], now=NOW)
    creator.merge_pending_commit()
    assert result.welcome is not None
    tree, info = creator.ratchet_tree_bytes(), creator.group_info()
    assert join_flow._group_info_suite(info) is pq
    assert join_flow._group_info_suite(b"\x00\x01\x00\x04\x00\x01\xff\xff") is None
    monkeypatch.setattr(config, "DEFAULT_TREE_BYTES", len(tree) // 7 + 1)
    monkeypatch.setattr(config, "DEFAULT_MESSAGE_EXTRA", 1 << 14)  # the tree bound decides
    assert InputLimits().tree_bytes(SUITE) < len(tree) <= InputLimits().tree_bytes(pq)
    joined = Group.join(result.welcome, kp, priv, now=NOW)
    assert joined.epoch_authenticator == creator.epoch_authenticator
    info_tree = join_flow.verified_group_info(info, None, GroupConfig(), NOW)[1]
    assert info_tree.tree_hash() == creator.tree.tree_hash()
    with pytest.raises(LimitError, match=r"InputLimits\.max_tree_bytes"):
        join_flow.unverified_tree(MLSMessage.decode(info).group_info or _no(),
                                  None, InputLimits(max_tree_bytes=len(tree) // 7 + 1))


def _no() -> Any:
    raise AssertionError("not a GroupInfo")


def test_limits_reject_non_ints() -> None:
    for bad in (True, 1.5, "1"):
        with pytest.raises(UsageError):
            InputLimits(max_tree_bytes=bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="max_tree_leaves"):
        InputLimits(max_tree_leaves=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["max_tree_leaves", "max_tree_bytes", "max_message_bytes"])
@pytest.mark.parametrize("value", [0, -1])
def test_limits_must_be_positive(field: str, value: int) -> None:
    with pytest.raises(UsageError, match=field):
        InputLimits(**{field: value})


# ----------------------------------------------------------------------------- versions


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_welcome_of_another_version_is_refused(setup: Setup, version: int) -> None:
    bad = _with_version(setup.welcome, version)
    with pytest.raises(VersionError, match=f"{version:#06x} is not mls10") as info:
        setup.join(welcome=bad)
    assert isinstance(info.value, DecodeError) and isinstance(info.value, ProtocolError)


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_group_info_of_another_version_is_refused(setup: Setup, version: int) -> None:
    bad = _with_version(setup.creator.group_info(), version)
    sig, _ = SUITE.generate_signature_key_pair()
    with pytest.raises(VersionError):
        Group.join_external(bad, Credential.basic(b"x"), sig, now=NOW)
    with pytest.raises(VersionError):
        join_flow.verified_group_info(bad, None, GroupConfig(), NOW)
    with pytest.raises(VersionError):
        join_proposal(bad, setup.kp, sig)


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_key_package_of_another_version_is_refused(setup: Setup, version: int) -> None:
    bad = _with_version(MLSMessage.of(setup.kp).encode(), version)
    with pytest.raises(VersionError):
        MLSMessage.decode(bad)


def test_group_context_of_another_version_is_refused(setup: Setup) -> None:
    """The GroupContext inside a GroupInfo must be mls10 too (§8.1); refused before the
    tree is decoded or the signature checked."""
    msg = MLSMessage.decode(setup.creator.group_info())
    info = msg.group_info
    assert info is not None
    bad = dataclasses.replace(info, group_context=dataclasses.replace(
        info.group_context, version=2))
    data = MLSMessage.of(bad).encode()
    with pytest.raises(VersionError, match="GroupContext version 0x0002"):
        join_flow.verified_group_info(data, None, GroupConfig(), NOW)


def test_handshake_message_of_another_version_changes_nothing(setup: Setup) -> None:
    member = setup.others[0]
    commit = setup.others[1].commit([Remove(0)], now=NOW).commit
    setup.others[1].discard_pending_commit()
    before = (member.epoch, member.epoch_authenticator, member.members)
    for version in BAD_VERSIONS:
        with pytest.raises(VersionError):
            member.process(_with_version(commit, version), now=NOW)
    assert (member.epoch, member.epoch_authenticator, member.members) == before
    member.process(commit, now=NOW)
    assert member.epoch == before[0] + 1
