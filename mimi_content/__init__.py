"""MIMI content (draft-ietf-mimi-content): the ``application/mimi-content`` format for
instant messages inside MLS, in deterministic CBOR, with message ids bound to sender,
room, content and salt. Neither MLS core nor transport: the client layer builds and reads
it. ``python -m mimi_content check FILE...`` checks encoded messages."""

from .content import (
    AES_128_GCM,
    MEDIA_TYPE,
    SHA256,
    Cardinality,
    Disposition,
    Expiration,
    ExternalPart,
    MimiContent,
    MultiPart,
    NestedPart,
    NullPart,
    Part,
    PartSemantics,
    SinglePart,
    decode,
    encode,
)
from .derived import MessageDerivedValues, decode_derived, encode_derived
from .errors import AttachmentError, ContentDecodeError, ContentError, ContentValidationError
from .message_id import message_id, new_salt

__all__ = [
    "AES_128_GCM", "MEDIA_TYPE", "SHA256", "AttachmentError", "Cardinality", "ContentDecodeError",
    "ContentError", "ContentValidationError", "Disposition", "Expiration", "ExternalPart",
    "MessageDerivedValues", "MimiContent", "MultiPart", "NestedPart", "NullPart", "Part",
    "PartSemantics", "SinglePart", "decode", "decode_derived", "encode", "encode_derived",
    "message_id", "new_salt",
]
