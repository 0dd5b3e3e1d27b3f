"""Extensions (RFC 9420 §13.4, §17.3): the generic Extension struct and extension types."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .codec import Struct, Uint16, VarBytes


class ExtensionType(IntEnum):
    """IANA MLS extension types (§17.3)."""

    APPLICATION_ID = 0x0001
    RATCHET_TREE = 0x0002
    REQUIRED_CAPABILITIES = 0x0003
    EXTERNAL_PUB = 0x0004
    EXTERNAL_SENDERS = 0x0005


@dataclass(frozen=True)
class Extension(Struct):
    """struct {
        ExtensionType extension_type;
        opaque extension_data<V>;
    } Extension;                                                         (§7.2)"""

    extension_type: Uint16
    extension_data: VarBytes
