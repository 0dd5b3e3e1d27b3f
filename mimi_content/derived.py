"""The values a receiver derives for each message (draft-ietf-mimi-content, "Derived Data
Values"): ``MessageDerivedValues``, which the draft's examples also encode (e.g.
``implied-original.cbor``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from . import cbor
from .content import MESSAGE_ID, URI
from .errors import ContentValidationError
from .schema import Bstr, Struct, Uint, dump_fields, refuse, wire

#: ``ExtendedTime = #6.1001({* name => value})`` (RFC 9581 §3)
EXTENDED_TIME_TAG = 1001


class TimestampSpec:
    """``Timestamp = MsecsSinceEpoch / ExtendedTime``."""

    def load(self, value: Any, where: str) -> int | cbor2.CBORTag:
        if isinstance(value, cbor2.CBORTag):
            if value.tag != EXTENDED_TIME_TAG or not isinstance(value.value, dict):
                raise refuse(where, "a timestamp is milliseconds or tag 1001 with a map")
            cbor.check_value(value, where, depth=1, max_depth=4)
            return value
        return Uint(8).load(value, where)

    def dump(self, value: int | cbor2.CBORTag) -> int | cbor2.CBORTag:
        return self.load(value, "timestamp")


@dataclass(frozen=True)
class MessageDerivedValues:
    """What the MLS layer and the hub tell a receiver about a message ({12}-{16})."""

    message_id: bytes = wire(MESSAGE_ID)
    hub_accepted_timestamp: int | cbor2.CBORTag = wire(TimestampSpec())
    mls_group_id: bytes = wire(Bstr(max_len=255))
    sender_leaf_index: int = wire(Uint(4))
    sender_client_url: str = wire(URI)
    sender_user_url: str = wire(URI)
    room_url: str = wire(URI)


def decode_derived(data: bytes) -> MessageDerivedValues:
    value = cbor.loads(data)
    loaded: MessageDerivedValues = Struct(MessageDerivedValues).load(value,
                                                                     "MessageDerivedValues")
    return loaded


def encode_derived(values: MessageDerivedValues) -> bytes:
    data = cbor.dumps(dump_fields(values))
    if decode_derived(data) != values:
        raise ContentValidationError("derived values do not survive their own encoding")
    return data
