"""Fuzz target ``decoders``: every wire and storage decoder of mls_core (RFC 9420 §2.1).

Input: ``selector || bytes``. ``selector`` (first byte, modulo the table size) picks a
decoder from :data:`DECODERS`; the rest is decoded. Oracle: only MLSError may escape, and
for a wire struct a successful decode re-encodes to exactly the input (the TLS
presentation language of §2.1 has one encoding per value, so anything else would let two
byte strings carry one signed value).

A new struct is one line in :data:`DECODERS`; keep the order stable (append at the end)
so that saved corpora keep pointing at the same decoder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from mls_core.ciphersuite import get_suite
from mls_core.codec import Struct, decode_value, encode_value
from mls_core.commit import Commit, UpdatePath, UpdatePathNode
from mls_core.credentials import Certificate, Credential
from mls_core.errors import MLSError
from mls_core.extensions import Extension
from mls_core.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentTBS,
    MLSMessage,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    SenderData,
    auth_data_codec,
)
from mls_core.group import Group
from mls_core.key_schedule import EpochSecrets, GroupContext
from mls_core.messages import (
    EncryptedGroupSecrets,
    ExternalPub,
    ExternalSender,
    GroupInfo,
    GroupInfoTBS,
    GroupSecrets,
    KeyPackage,
    KeyPackageTBS,
    PathSecret,
    RequiredCapabilities,
    Welcome,
    parse_external_senders,
)
from mls_core.nodes import (
    RATCHET_TREE,
    Capabilities,
    HPKECiphertext,
    LeafNode,
    LeafNodeTBS,
    Lifetime,
    Node,
    ParentNode,
    decode_ratchet_tree,
)
from mls_core.proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    Proposal,
    ProposalOrRef,
    ReInit,
    Remove,
    Update,
)
from mls_core.psk import ExternalPSK, PreSharedKeyID, ResumptionPSK
from mls_core.ratchet_tree import RatchetTree
from mls_core.room_policy import RoomPolicy
from mls_core.secret_tree import SecretTree
from mls_core.treekem import TreeKEMPrivate

from .harness import InvariantViolation, Outcome, guarded


@dataclass(frozen=True)
class Decoder:
    """One entry of the table: its name, how to decode, and how to re-encode (None where
    the value has no canonical encoding of its own to compare, e.g. stored state)."""

    name: str
    decode: Callable[[bytes], Any]
    encode: Callable[[Any], bytes] | None


def _struct(cls: type[Struct]) -> Decoder:
    return Decoder(cls.__name__, cls.decode, lambda v: v.encode())


def _pmc(content_type: int) -> Decoder:
    return Decoder(f"PrivateMessageContent[{content_type}]",
                   partial(PrivateMessageContent.decode, content_type=content_type),
                   lambda v: v.encode())


def _auth(content_type: int) -> Decoder:
    codec = auth_data_codec(content_type)
    return Decoder(f"FramedContentAuthData[{content_type}]",
                   partial(decode_value, codec), partial(encode_value, codec))


def _tree(suite_id: int) -> Decoder:
    return Decoder(f"RatchetTree[suite {suite_id}]",
                   partial(RatchetTree.decode, get_suite(suite_id)), lambda t: t.encode())


#: Append only: the selector byte of saved inputs indexes this table.
DECODERS: tuple[Decoder, ...] = (
    _struct(MLSMessage), _struct(KeyPackage), _struct(Welcome), _struct(GroupInfo),
    Decoder("ratchet_tree", decode_ratchet_tree, partial(encode_value, RATCHET_TREE)),
    _struct(LeafNode), _struct(Proposal), _struct(Commit), _struct(GroupSecrets),
    _struct(PublicMessage), _struct(PrivateMessage), _struct(AuthenticatedContent),
    _struct(FramedContent), _struct(Node), _struct(ParentNode), _struct(ProposalOrRef),
    _struct(UpdatePath), _struct(UpdatePathNode), _struct(Add), _struct(Update),
    _struct(Remove), _struct(PreSharedKey), _struct(ReInit), _struct(ExternalInit),
    _struct(GroupContextExtensions), _struct(GroupContext), _struct(Credential),
    _struct(Certificate), _struct(Capabilities), _struct(Lifetime), _struct(Extension),
    _struct(RequiredCapabilities), _struct(ExternalSender), _struct(ExternalPub),
    _struct(EncryptedGroupSecrets), _struct(PathSecret), _struct(HPKECiphertext),
    _struct(Sender), _struct(SenderData), _struct(PreSharedKeyID), _struct(ExternalPSK),
    _struct(ResumptionPSK), _struct(KeyPackageTBS), _struct(GroupInfoTBS),
    _struct(LeafNodeTBS), _struct(FramedContentTBS), _struct(RoomPolicy),
    Decoder("external_senders", parse_external_senders, None),
    _pmc(1), _pmc(2), _pmc(3), _auth(1), _auth(2), _auth(3),
    _tree(1), _tree(2), _tree(3),
    # stored state (mls_core.storage): must reject garbage with DecodeError too
    Decoder("Group.from_bytes", Group.from_bytes, None),
    Decoder("SecretTree.from_bytes", SecretTree.from_bytes, None),
    Decoder("TreeKEMPrivate.from_bytes", TreeKEMPrivate.from_bytes, None),
    Decoder("EpochSecrets.from_bytes", EpochSecrets.from_bytes, None),
)


def selector(name: str) -> int:
    """The selector byte of the decoder called ``name``."""
    for i, d in enumerate(DECODERS):
        if d.name == name:
            return i
    raise KeyError(name)


def _decode_and_check(decoder: Decoder, data: bytes) -> None:
    value = decoder.decode(data)
    if decoder.encode is not None:
        again = decoder.encode(value)
        if again != data:
            raise InvariantViolation(f"{decoder.name}: decode then encode changed the bytes "
                                     f"({len(data)} -> {len(again)} bytes)")


def run_one(data: bytes) -> Outcome:
    """Decode ``data[1:]`` with the decoder ``data[0]`` selects."""
    if not data:
        return Outcome.SKIPPED
    decoder = DECODERS[data[0] % len(DECODERS)]
    return guarded(lambda: _decode_and_check(decoder, data[1:]))


def TestOneInput(data: bytes) -> None:
    run_one(data)


#: at most this many seeds per decoder
SEEDS_PER_DECODER = 25


def _substructs(value: object) -> Iterator[Struct]:
    """``value`` and every Struct nested in it (fields, tuples, lazy vectors)."""
    if isinstance(value, Struct):
        yield value
        for f in dataclasses.fields(cast(Any, value)):
            yield from _substructs(getattr(value, f.name))
    elif isinstance(value, tuple | list) or type(value).__name__ == "LazyVector":
        for item in value:  # type: ignore[attr-defined]
            yield from _substructs(item)


def seeds() -> Iterator[bytes]:
    """Official vectors (:mod:`fuzz.vectors`) and the live world's messages and stored
    state: each blob under every decoder that accepts it, and every struct nested in it
    under its own decoder, at most :data:`SEEDS_PER_DECODER` per decoder."""
    from .vectors import vector_blobs
    from .world import load_world

    world = load_world()
    alice = world.group("alice")
    st = alice._state
    blobs = [*vector_blobs(), world.dave_kp, world.past_application, *world.states.values(),
             st.secret_tree.to_bytes(), st.private.to_bytes(), st.secrets.to_bytes(),
             alice.group_info(), alice.ratchet_tree_bytes()]
    by_class = {d.name: i for i, d in enumerate(DECODERS)}
    count = [0] * len(DECODERS)
    seen: set[bytes] = set()

    def emit(i: int, blob: bytes) -> Iterator[bytes]:
        seed = bytes([i]) + blob
        if count[i] < SEEDS_PER_DECODER and seed not in seen:
            count[i] += 1
            seen.add(seed)
            yield seed

    for blob in blobs:
        for i, decoder in enumerate(DECODERS):
            try:
                value = decoder.decode(blob)
            except MLSError:
                continue
            yield from emit(i, blob)
            for sub in _substructs(value):
                j = by_class.get(type(sub).__name__)
                if j is not None:
                    yield from emit(j, sub.encode())
