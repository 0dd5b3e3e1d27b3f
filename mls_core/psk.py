"""Pre-shared keys (RFC 9420 §8.4): PreSharedKeyID and the psk_secret chain."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated

from .codec import U64, Select, Struct, Uint8, VarBytes


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
