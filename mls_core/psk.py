"""Pre-shared keys (RFC 9420 §8.4): PreSharedKeyID and the psk_secret chain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Annotated

from .codec import U64, Select, Struct, Uint8, Uint16, VarBytes
from .errors import UsageError

if TYPE_CHECKING:
    from .ciphersuite import CipherSuite


class PSKType(IntEnum):
    RESERVED = 0
    EXTERNAL = 1
    RESUMPTION = 2


class ResumptionPSKUsage(IntEnum):
    RESERVED = 0
    APPLICATION = 1
    REINIT = 2
    BRANCH = 3


@dataclass(frozen=True)
class ExternalPSK(Struct):
    """case external: opaque psk_id<V>;"""

    psk_id: VarBytes


@dataclass(frozen=True)
class ResumptionPSK(Struct):
    """case resumption: ResumptionPSKUsage usage; opaque psk_group_id<V>; uint64 psk_epoch;"""

    usage: Uint8
    psk_group_id: VarBytes
    psk_epoch: Annotated[int, U64]


@dataclass(frozen=True)
class PreSharedKeyID(Struct):
    """struct {
      PSKType psktype;
      select (PreSharedKeyID.psktype) {
        case external:   opaque psk_id<V>;
        case resumption: ResumptionPSKUsage usage;
                         opaque psk_group_id<V>;
                         uint64 psk_epoch;
      };
      opaque psk_nonce<V>;
    } PreSharedKeyID;                                                    (§8.4)"""

    psktype: Uint8
    psk: Annotated[
        ExternalPSK | ResumptionPSK,
        Select("psktype", {PSKType.EXTERNAL: ExternalPSK, PSKType.RESUMPTION: ResumptionPSK}),
    ]
    psk_nonce: VarBytes


@dataclass(frozen=True)
class PSKLabel(Struct):
    """struct {
        PreSharedKeyID id;
        uint16 index;
        uint16 count;
    } PSKLabel;                                                          (§8.4)"""

    id: PreSharedKeyID
    index: Uint16
    count: Uint16


def psk_secret(suite: CipherSuite, psks: Sequence[tuple[PreSharedKeyID, bytes]]) -> bytes:
    """Chain the PSKs, in order, into psk_secret (§8.4)::

        psk_extracted_[i] = KDF.Extract(0, psk_[i])
        psk_input_[i]     = ExpandWithLabel(psk_extracted_[i], "derived psk", PSKLabel, KDF.Nh)
        psk_secret_[0]    = 0
        psk_secret_[i]    = KDF.Extract(psk_input_[i-1], psk_secret_[i-1])

    An empty list gives the all-zero vector of length KDF.Nh.
    """
    count = len(psks)
    if count > 0xFFFF:
        raise UsageError("at most 65535 PSKs fit in a PSKLabel")
    nh = suite.hash_length
    secret = bytes(nh)
    for index, (psk_id, psk) in enumerate(psks):
        extracted = suite.extract(bytes(nh), psk)
        label = PSKLabel(psk_id, index, count).encode()
        psk_input = suite.expand_with_label(extracted, b"derived psk", label, nh)
        secret = suite.extract(psk_input, secret)
    return secret
