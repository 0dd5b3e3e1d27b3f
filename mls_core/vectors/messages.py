"""messages vectors: every wire struct decodes and re-encodes byte for byte (RFC 9420 §6,
§7, §10, §12; test-vectors.md "Messages")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..codec import Struct, decode_value, encode_value
from ..commit import Commit
from ..framing import ContentType, MLSMessage, WireFormat
from ..messages import GroupSecrets
from ..nodes import RATCHET_TREE
from ..proposals import (
    Add,
    ExternalInit,
    GroupContextExtensions,
    PreSharedKey,
    ReInit,
    Remove,
    Update,
)
from ._check import VectorMismatch, expect, h

#: vector field -> struct it serializes (MLSMessage fields are checked separately)
STRUCTS: dict[str, type[Struct]] = {
    "group_secrets": GroupSecrets,
    "add_proposal": Add,
    "update_proposal": Update,
    "remove_proposal": Remove,
    "pre_shared_key_proposal": PreSharedKey,
    "re_init_proposal": ReInit,
    "external_init_proposal": ExternalInit,
    "group_context_extensions_proposal": GroupContextExtensions,
    "commit": Commit,
}

#: vector field -> (wire_format, content_type of a PublicMessage or None)
MLS_MESSAGES: dict[str, tuple[WireFormat, ContentType | None]] = {
    "mls_welcome": (WireFormat.MLS_WELCOME, None),
    "mls_group_info": (WireFormat.MLS_GROUP_INFO, None),
    "mls_key_package": (WireFormat.MLS_KEY_PACKAGE, None),
    "public_message_application": (WireFormat.MLS_PUBLIC_MESSAGE, ContentType.APPLICATION),
    "public_message_proposal": (WireFormat.MLS_PUBLIC_MESSAGE, ContentType.PROPOSAL),
    "public_message_commit": (WireFormat.MLS_PUBLIC_MESSAGE, ContentType.COMMIT),
    "private_message": (WireFormat.MLS_PRIVATE_MESSAGE, None),
}


def _round_trip(name: str, data: bytes, decode: Callable[[bytes], Any],
                encode: Callable[[Any], bytes]) -> Any:
    value = decode(data)
    expect(f"{name} re-encoded", encode(value), data)
    return value


def _check_mls_message(name: str, data: bytes, wire_format: WireFormat,
                       content_type: ContentType | None) -> None:
    msg: MLSMessage = _round_trip(name, data, MLSMessage.decode, MLSMessage.encode)
    expect(f"{name}.wire_format", msg.wire_format, wire_format)
    if content_type is not None:
        public = msg.public_message
        if public is None:
            raise VectorMismatch(f"{name}: not a PublicMessage")
        expect(f"{name}.content.content_type", public.content.content_type, content_type)


def check(v: dict[str, Any]) -> None:
    for name, (wire_format, content_type) in MLS_MESSAGES.items():
        _check_mls_message(name, h(v[name]), wire_format, content_type)
    for name, cls in STRUCTS.items():
        _round_trip(name, h(v[name]), cls.decode, cls.encode)
    _round_trip("ratchet_tree", h(v["ratchet_tree"]),
                lambda b: decode_value(RATCHET_TREE, b, "ratchet_tree"),
                lambda t: encode_value(RATCHET_TREE, t))
