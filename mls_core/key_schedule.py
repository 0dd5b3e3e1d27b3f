"""Key schedule (RFC 9420 §8): GroupContext, epoch secrets, exporter, welcome secret."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from .codec import Struct, Uint16, Uint64, VarBytes, Vec
from .extensions import Extension

PROTOCOL_VERSION_MLS10 = 1


@dataclass(frozen=True)
class GroupContext(Struct):
    """struct {
        ProtocolVersion version = mls10;
        CipherSuite cipher_suite;
        opaque group_id<V>;
        uint64 epoch;
        opaque tree_hash<V>;
        opaque confirmed_transcript_hash<V>;
        Extension extensions<V>;
    } GroupContext;                                                      (§8.1)"""

    version: Uint16
    cipher_suite: Uint16
    group_id: VarBytes
    epoch: Uint64
    tree_hash: VarBytes
    confirmed_transcript_hash: VarBytes
    extensions: Annotated[tuple[Extension, ...], Vec(Extension)]
