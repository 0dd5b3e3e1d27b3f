"""``Group.process`` on live state (RFC 9420 §6, §12.4.2), shared by the targets
``process_public`` and ``process_private``.

Input: ``mode || MLSMessage``. Mode bit 0 clear: the bytes go to Alice's
:meth:`~mls_core.group.Group.process` as they are. Bit 0 set: the MLSMessage must hold a
PublicMessage whose FramedContent and confirmation tag are kept, and the harness makes it
authentic before Alice sees it: re-signed (§6.1) with the private key of the sender the
content names (a member's leaf key, the external sender's key, the joiner's key in an Add
or an external Commit's path), given a valid membership tag (§6.2) or, for
``process_private``, encrypted under the real secret-tree key of the named leaf and the
epoch's sender-data key (§6.3). Mutations then reach the checks behind the signature.
Bit 1 set (with bit 0): first re-sign, with their owners' keys, the LeafNodes (§7.2) and
KeyPackages (§10) inside the content (an Add's KeyPackage, an Update's leaf, a Commit's
proposals by value and its UpdatePath leaf), so mutations of those reach the tree and
KeyPackage checks behind their own signatures. ``mode >> 2`` is the PrivateMessage
padding (§6.3.1).

Oracle: only MLSError may escape; a rejected message must leave ``Group.to_bytes()``
exactly as it was (errors.py: "never changes state"); an accepted one must leave a state
that stores and loads again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache

from mls_core.credentials import Credential
from mls_core.errors import MLSError
from mls_core.framing import (
    AuthenticatedContent,
    AuthenticatedContentTBM,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PublicMessage,
    Sender,
    SenderType,
    WireFormat,
)
from mls_core.group import Group
from mls_core.key_package import create_key_package, sign_leaf_node
from mls_core.messages import KeyPackage, KeyPackageTBS
from mls_core.nodes import LeafNode, LeafNodeSource
from mls_core.proposals import Add, GroupContextExtensions, Proposal, ProposalOrRef, Remove, Update
from mls_core.protection import (
    FRAMED_CONTENT_TBS_LABEL,
    from_private_message,
    to_private_message,
)
from mls_core.secret_tree import RatchetKey

from .harness import InvariantViolation, Outcome
from .world import NOW, PSK_ID, World, config, load_world

PUBLIC = WireFormat.MLS_PUBLIC_MESSAGE
PRIVATE = WireFormat.MLS_PRIVATE_MESSAGE
REUSE_GUARD = b"fuzz"


@dataclass
class Live:
    """Alice's group at the live epoch, its stored bytes, and what re-signing needs."""

    world: World
    state: bytes
    group: Group
    #: signature public key -> private key, for every key in the world
    keyring: dict[bytes, bytes]
    #: (leaf, content_type) -> generation-0 key of the live epoch's secret tree
    ratchet_keys: dict[tuple[int, int], RatchetKey]

    def reset(self) -> None:
        self.group = Group.from_bytes(self.state, config())


@cache
def live() -> Live:
    """Built once per process (the world is cached on disk, see fuzz/world.py)."""
    world = load_world()
    suite = world.suite
    keyring = {suite.signature_public_key(k): k for k in world.keys.values()}
    ratchet_keys = {}
    for ct in (ContentType.APPLICATION, ContentType.PROPOSAL, ContentType.COMMIT):
        st = world.group("alice")._state  # a fresh copy: proposals and commits share keys
        for leaf in range(st.tree.n_leaves):
            if st.tree.leaf(leaf) is not None:
                ratchet_keys[leaf, int(ct)] = st.secret_tree.get(leaf, ct, 0)
    return Live(world, world.states["alice"], world.group("alice"), keyring, ratchet_keys)


def _signing_key(lv: Live, content: FramedContent) -> bytes:
    """The private key whose public half Alice will verify ``content`` with (§6.1);
    Bob's if the content names a key nobody in the world holds."""
    st = lv.group._state
    sender = content.sender
    pub: bytes | None = None
    if sender.sender_type == SenderType.MEMBER:
        leaf = st.tree.leaf(sender.index or 0)
        pub = None if leaf is None else leaf.signature_key
    elif sender.sender_type == SenderType.EXTERNAL:
        try:
            pub = st.external_sender_key(sender.index or 0)
        except MLSError:
            pub = None
    elif sender.sender_type == SenderType.NEW_MEMBER_PROPOSAL:
        p = content.proposal
        if p is not None and isinstance(p.body, Add):
            pub = p.body.key_package.leaf_node.signature_key
    elif sender.sender_type == SenderType.NEW_MEMBER_COMMIT:
        c = content.commit
        if c is not None and c.path is not None:
            pub = c.path.leaf_node.signature_key
    return lv.keyring.get(pub or b"", lv.world.keys["bob"])


def _resign_leaf(lv: Live, leaf: LeafNode, group_id: bytes, index: int | None) -> LeafNode:
    """``leaf`` signed again by its owner (§7.2), if the world holds its key."""
    priv = lv.keyring.get(leaf.signature_key)
    if priv is None or (leaf.leaf_node_source != LeafNodeSource.KEY_PACKAGE and index is None):
        return leaf
    return sign_leaf_node(lv.world.suite, priv, leaf.to_be_signed(group_id, index))


def _resign_key_package(lv: Live, kp: KeyPackage) -> KeyPackage:
    """``kp`` with its leaf and itself signed again by its owner (§10)."""
    leaf = _resign_leaf(lv, kp.leaf_node, b"", None)
    priv = lv.keyring.get(leaf.signature_key)
    tbs = KeyPackageTBS(kp.version, kp.cipher_suite, kp.init_key, leaf, kp.extensions)
    if priv is None:
        return tbs.signed(kp.signature)
    return tbs.signed(lv.world.suite.sign_with_label(priv, b"KeyPackageTBS", tbs.encode()))


def _resign_proposal(lv: Live, p: Proposal, group_id: bytes, index: int | None) -> Proposal:
    body = p.body
    if isinstance(body, Add):
        return replace(p, body=Add(_resign_key_package(lv, body.key_package)))
    if isinstance(body, Update):
        return replace(p, body=Update(_resign_leaf(lv, body.leaf_node, group_id, index)))
    return p


def resign_inner(lv: Live, content: FramedContent) -> FramedContent:
    """``content`` with the LeafNodes and KeyPackages it carries signed again."""
    gid = content.group_id
    sender = content.sender
    index = sender.index if sender.sender_type == SenderType.MEMBER else None
    if content.proposal is not None:
        return replace(content, body=_resign_proposal(lv, content.proposal, gid, index))
    commit = content.commit
    if commit is None:
        return content
    proposals = tuple(
        ProposalOrRef.by_value(_resign_proposal(lv, por.proposal, gid, index))
        if por.proposal is not None else por for por in commit.proposals)
    path = commit.path
    if path is not None:
        if sender.sender_type == SenderType.NEW_MEMBER_COMMIT:  # the joiner's new leaf
            tree = lv.group._state.tree
            index = next((i for i in range(tree.n_leaves) if tree.leaf(i) is None),
                         tree.n_leaves)
        path = replace(path, leaf_node=_resign_leaf(lv, path.leaf_node, gid, index))
    return replace(content, body=replace(commit, proposals=proposals, path=path))


def authenticate(lv: Live, content: FramedContent, tag: bytes | None,
                 wire_format: int) -> AuthenticatedContent:
    """Sign ``content`` as its sender would (SignWithLabel "FramedContentTBS", §6.1),
    keeping the fuzzed confirmation tag (or a zero one where a commit needs one)."""
    if content.content_type == ContentType.COMMIT:
        tag = tag if tag is not None else bytes(lv.world.suite.hash_length)
    else:
        tag = None
    unsigned = AuthenticatedContent(wire_format, content, FramedContentAuthData(b"", tag))
    tbs = unsigned.to_be_signed(lv.group.context).encode()
    signature = lv.world.suite.sign_with_label(_signing_key(lv, content),
                                               FRAMED_CONTENT_TBS_LABEL, tbs)
    return AuthenticatedContent(wire_format, content, FramedContentAuthData(signature, tag))


def _public(lv: Live, signed: AuthenticatedContent) -> PublicMessage:
    tag = None
    if signed.content.sender.sender_type == SenderType.MEMBER:
        tbm = AuthenticatedContentTBM(signed.to_be_signed(lv.group.context), signed.auth)
        tag = lv.world.suite.mac(lv.group._state.secrets.membership_key, tbm.encode())
    return PublicMessage(signed.content, signed.auth, tag)


def rebuild(lv: Live, data: bytes, wire_format: int, inner: bool, padding: int,
            ) -> bytes | None:
    """The authentic message for fuzzed ``data`` (module docstring); None if ``data``
    does not hold a PublicMessage the harness can sign."""
    try:
        msg = MLSMessage.decode(data)
        pub = msg.public_message
        if pub is None:
            return None
        content = resign_inner(lv, pub.content) if inner else pub.content
        signed = authenticate(lv, content, pub.auth.confirmation_tag, wire_format)
        if wire_format == PUBLIC:
            return MLSMessage(msg.version, PUBLIC, _public(lv, signed)).encode()
        sender = signed.content.sender
        if sender.sender_type != SenderType.MEMBER or sender.index is None:
            return None
        key = lv.ratchet_keys.get((sender.index, signed.content.content_type))
        if key is None:  # a leaf without keys: encrypt under Bob's, decryption must fail
            key = lv.ratchet_keys.get((1, signed.content.content_type))
        if key is None:
            return None
        private = to_private_message(lv.world.suite, signed,
                                     lv.group._state.secrets.sender_data_secret, key,
                                     padding, REUSE_GUARD)
        return MLSMessage(msg.version, PRIVATE, private).encode()
    except MLSError:
        return None


def run_one(data: bytes, wire_format: int) -> Outcome:
    """Feed one input to Alice (module docstring) and check the oracle."""
    if not data:
        return Outcome.SKIPPED
    lv = live()
    message: bytes | None = data[1:]
    if data[0] & 1:
        message = rebuild(lv, data[1:], wire_format, bool(data[0] & 2), data[0] >> 2)
    if message is None:
        return Outcome.SKIPPED
    group = lv.group
    try:
        group.process(message, now=NOW)
    except MLSError:
        if group.to_bytes() != lv.state:
            lv.reset()
            raise InvariantViolation("a rejected message changed the group state") from None
        return Outcome.REJECTED
    try:
        try:
            Group.from_bytes(group.to_bytes(), config())
        except MLSError as e:
            raise InvariantViolation(f"an accepted message left a state that does not "
                                     f"load again: {e}") from None
    finally:
        lv.reset()
    return Outcome.ACCEPTED


# -------------------------------------------------------------------------------- seeds


def _messages(world: World, wire_format: int) -> Iterator[bytes]:
    """Real handshake and application messages for Alice's live epoch (each made on a
    fresh copy of the sender's state, so all are valid for the same Alice)."""
    suite = world.suite
    eve_kp, _ = create_key_package(suite, Credential.basic(b"eve"), world.keys["eve"], now=NOW)

    def bob() -> Group:
        return world.group("bob", wire_format)

    yield bob().propose_update(now=NOW)
    yield bob().propose_remove(2)
    yield bob().propose_add(eve_kp)
    yield bob().propose_external_psk(PSK_ID)
    yield bob().propose(GroupContextExtensions(bob().context.extensions))
    yield bob().commit([], now=NOW).commit
    yield bob().commit([Remove(2)], now=NOW).commit
    yield bob().commit([Add(eve_kp)], now=NOW).commit
    yield bob().commit([Add(eve_kp)], force_path=False, now=NOW).commit
    yield bob().commit([Remove(0)], now=NOW).commit
    g = bob()
    g.propose_external_psk(PSK_ID)
    yield g.commit(now=NOW).commit
    yield world.group("carol", wire_format).commit([], now=NOW).commit
    # Commits covering Carol's stored Update and PSK proposals by reference (§12.4)
    yield world.group("bob_refs", wire_format).commit([], now=NOW).commit
    yield world.group("bob_refs", wire_format).commit([Add(eve_kp)], force_path=False,
                                                      now=NOW).commit
    yield bob().encrypt(b"hello alice", b"aad")
    yield world.past_application
    if wire_format == PUBLIC:
        yield from _non_member_messages(world, eve_kp)


def _non_member_messages(world: World, eve_kp: KeyPackage) -> Iterator[bytes]:
    """An external sender's proposal, a new member's proposal and an external Commit."""
    suite = world.suite
    alice = world.group("alice")
    ctx = alice.context
    for sender, key in ((Sender.external(0), "ext"), (Sender.new_member_proposal(), "eve")):
        content = FramedContent(ctx.group_id, ctx.epoch, sender, b"", ContentType.PROPOSAL,
                                Proposal.of(Add(eve_kp)))
        unsigned = AuthenticatedContent(PUBLIC, content, FramedContentAuthData(b""))
        sig = suite.sign_with_label(world.keys[key], FRAMED_CONTENT_TBS_LABEL,
                                    unsigned.to_be_signed(None).encode())
        yield MLSMessage.of(PublicMessage(content, FramedContentAuthData(sig), None)).encode()
    _, commit = Group.join_external(alice.group_info(), Credential.basic(b"eve"),
                                    world.keys["eve"], config=config(), now=NOW)
    yield commit


def _as_plaintext(world: World, data: bytes) -> bytes | None:
    """A member's PrivateMessage decrypted (with a scratch copy of Alice) into the
    PublicMessage form that mode 1 re-signs and re-encrypts."""
    pm = MLSMessage.decode(data).private_message
    alice = world.group("alice")
    st = alice._state
    if pm is None or pm.epoch != st.context.epoch:
        return None
    content, _ = from_private_message(st.suite, pm, st.secrets.sender_data_secret,
                                      lambda leaf, ct, gen: st.secret_tree.get(leaf, ct, gen))
    body = content.content
    return MLSMessage.of(PublicMessage(body, content.auth, bytes(st.suite.hash_length))
                         ).encode()


def seeds(wire_format: int) -> Iterator[bytes]:
    """Each real message raw (mode 0) and in re-signed form (modes 1 and 3)."""
    world = load_world()
    for m in _messages(world, wire_format):
        yield b"\x00" + m
        plain: bytes | None = m
        if wire_format == PUBLIC:
            if MLSMessage.decode(m).public_message is None:
                plain = None
        else:
            plain = _as_plaintext(world, m)
        if plain is not None:
            yield b"\x01" + plain
            yield b"\x03" + plain
    # an application message as a PublicMessage: §6 forbids it, the signature is fine
    app = FramedContent(b"fuzz group", live().group.epoch, Sender.member(1), b"",
                        ContentType.APPLICATION, b"data")
    yield b"\x01" + MLSMessage.of(PublicMessage(app, FramedContentAuthData(b""),
                                                b"")).encode()
