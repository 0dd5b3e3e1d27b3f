"""Message framing (RFC 9420 §6, §6.1-6.3, §8.2): the wire structs of PublicMessage,
PrivateMessage and MLSMessage, plus the authenticated and to-be-signed forms.

FramedContentAuthData has no tag of its own: whether it carries a ``confirmation_tag``
depends on ``FramedContent.content_type``, a field of a sibling struct (or, inside a
PrivateMessageContent, of the enclosing PrivateMessage). It is therefore not a
:class:`~mls_core.codec.Struct`; containing structs declare it with a
:class:`~mls_core.codec.Depends` field built by :func:`auth_data_codec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any

from .codec import (
    EMPTY,
    U16,
    U32,
    VAR_BYTES,
    Codec,
    Depends,
    Fixed,
    Reader,
    Select,
    Struct,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    VarBytes,
    as_codec,
    decode_varint,
    encode_varint,
)
from .commit import Commit
from .errors import DecodeError, UsageError, VersionError
from .key_schedule import GroupContext
from .messages import GroupInfo, KeyPackage, Welcome
from .proposals import Proposal


class ProtocolVersion(IntEnum):
    """§6: ``enum { reserved(0), mls10(1), (65535) } ProtocolVersion;``"""

    RESERVED = 0
    MLS10 = 1


class ContentType(IntEnum):
    """§6: ``enum { reserved(0), application(1), proposal(2), commit(3), (255) }``"""

    RESERVED = 0
    APPLICATION = 1
    PROPOSAL = 2
    COMMIT = 3


class SenderType(IntEnum):
    """§6: the kinds of Sender."""

    RESERVED = 0
    MEMBER = 1
    EXTERNAL = 2
    NEW_MEMBER_PROPOSAL = 3
    NEW_MEMBER_COMMIT = 4


class WireFormat(IntEnum):
    """MLS Wire Formats registry (§17.2); the wire field stays a plain ``uint16``."""

    RESERVED = 0x0000
    MLS_PUBLIC_MESSAGE = 0x0001
    MLS_PRIVATE_MESSAGE = 0x0002
    MLS_WELCOME = 0x0003
    MLS_GROUP_INFO = 0x0004
    MLS_KEY_PACKAGE = 0x0005


# ------------------------------------------------------------------------------ content


@dataclass(frozen=True)
class Sender(Struct):
    """struct {
        SenderType sender_type;
        select (Sender.sender_type) {
            case member:
                uint32 leaf_index;
            case external:
                uint32 sender_index;
            case new_member_commit:
            case new_member_proposal:
                struct{};
        };
    } Sender;                                                            (§6)

    ``index`` is the ``leaf_index`` (member), the ``sender_index`` (external) or ``None``.
    Build with :meth:`member`, :meth:`external`, :meth:`new_member_proposal` or
    :meth:`new_member_commit`."""

    sender_type: Uint8
    index: Annotated[
        int | None,
        Select("sender_type", {
            SenderType.MEMBER: U32,
            SenderType.EXTERNAL: U32,
            SenderType.NEW_MEMBER_PROPOSAL: EMPTY,
            SenderType.NEW_MEMBER_COMMIT: EMPTY,
        }),
    ]

    @classmethod
    def member(cls, leaf_index: int) -> Sender:
        return cls(SenderType.MEMBER, leaf_index)

    @classmethod
    def external(cls, sender_index: int) -> Sender:
        return cls(SenderType.EXTERNAL, sender_index)

    @classmethod
    def new_member_proposal(cls) -> Sender:
        return cls(SenderType.NEW_MEMBER_PROPOSAL, None)

    @classmethod
    def new_member_commit(cls) -> Sender:
        return cls(SenderType.NEW_MEMBER_COMMIT, None)

    @property
    def leaf_index(self) -> int | None:
        """The sender's leaf index if it is a member, else ``None``."""
        return self.index if self.sender_type == SenderType.MEMBER else None


@dataclass(frozen=True)
class FramedContent(Struct):
    """struct {
        opaque group_id<V>;
        uint64 epoch;
        Sender sender;
        opaque authenticated_data<V>;

        ContentType content_type;
        select (FramedContent.content_type) {
            case application:
              opaque application_data<V>;
            case proposal:
              Proposal proposal;
            case commit:
              Commit commit;
        };
    } FramedContent;                                                     (§6)

    ``body`` is the application data bytes, a :class:`Proposal` or a :class:`Commit`."""

    group_id: VarBytes
    epoch: Uint64
    sender: Sender
    authenticated_data: VarBytes
    content_type: Uint8
    body: Annotated[
        bytes | Proposal | Commit,
        Select("content_type", {
            ContentType.APPLICATION: VAR_BYTES,
            ContentType.PROPOSAL: Proposal,
            ContentType.COMMIT: Commit,
        }),
    ]

    @property
    def application_data(self) -> bytes | None:
        return self.body if isinstance(self.body, bytes) else None

    @property
    def proposal(self) -> Proposal | None:
        return self.body if isinstance(self.body, Proposal) else None

    @property
    def commit(self) -> Commit | None:
        return self.body if isinstance(self.body, Commit) else None


def content_type_of(body: bytes | Proposal | Commit) -> ContentType:
    """The ContentType that carries ``body`` (§6)."""
    if isinstance(body, Proposal):
        return ContentType.PROPOSAL
    if isinstance(body, Commit):
        return ContentType.COMMIT
    if isinstance(body, bytes | bytearray):
        return ContentType.APPLICATION
    raise UsageError(f"not a message body: {type(body).__name__}")


_BODY_CODECS: dict[int, Any] = {
    ContentType.APPLICATION: VAR_BYTES,
    ContentType.PROPOSAL: Proposal,
    ContentType.COMMIT: Commit,
}


# --------------------------------------------------------------------------------- auth


@dataclass(frozen=True)
class FramedContentAuthData:
    """opaque MAC<V>;

    struct {
        /* SignWithLabel(., "FramedContentTBS", FramedContentTBS) */
        opaque signature<V>;
        select (FramedContent.content_type) {
            case commit:
                /* MAC(confirmation_key, GroupContext.confirmed_transcript_hash) */
                MAC confirmation_tag;
            case application:
            case proposal:
                struct{};
        };
    } FramedContentAuthData;                                             (§6.1)

    ``confirmation_tag`` is present exactly when the content type is ``commit``. The
    layout depends on that content type, so decode with :meth:`decode` or
    :func:`auth_data_codec`."""

    signature: bytes
    confirmation_tag: bytes | None = None

    def encode(self) -> bytes:
        """Encode; the layout follows from whether ``confirmation_tag`` is present."""
        out = bytearray()
        codec = _AUTH_WITHOUT_TAG if self.confirmation_tag is None else _AUTH_WITH_TAG
        codec.encode(self, out)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes, content_type: int) -> FramedContentAuthData:
        """Decode exactly one FramedContentAuthData for ``content_type``."""
        r = Reader(bytes(data))
        value = auth_data_codec(content_type).decode(r)
        if r.pos != r.end:
            raise DecodeError(f"FramedContentAuthData: {r.end - r.pos} trailing bytes "
                              f"at offset {r.pos}")
        return value


class _AuthDataCodec(Codec[FramedContentAuthData]):
    """FramedContentAuthData for commit content (``with_tag``) or for the other types."""

    def __init__(self, with_tag: bool) -> None:
        self.with_tag = with_tag
        self.name = "FramedContentAuthData"

    def encode(self, value: FramedContentAuthData, out: bytearray) -> None:
        if (value.confirmation_tag is not None) != self.with_tag:
            raise UsageError("FramedContentAuthData: confirmation_tag must be present "
                             "exactly for commit content (§6.1)")
        encode_varint(len(value.signature), out)
        out += value.signature
        if value.confirmation_tag is not None:
            encode_varint(len(value.confirmation_tag), out)
            out += value.confirmation_tag

    def decode(self, r: Reader) -> FramedContentAuthData:
        signature = r.take(decode_varint(r, "FramedContentAuthData.signature"),
                           "FramedContentAuthData.signature")
        if not self.with_tag:
            return FramedContentAuthData(signature, None)
        tag = r.take(decode_varint(r, "FramedContentAuthData.confirmation_tag"),
                     "FramedContentAuthData.confirmation_tag")
        return FramedContentAuthData(signature, tag)


_AUTH_WITH_TAG = _AuthDataCodec(True)
_AUTH_WITHOUT_TAG = _AuthDataCodec(False)


def auth_data_codec(content_type: int) -> Codec[FramedContentAuthData]:
    """The FramedContentAuthData layout for ``content_type`` (§6.1)."""
    if content_type == ContentType.COMMIT:
        return _AUTH_WITH_TAG
    if content_type in (ContentType.APPLICATION, ContentType.PROPOSAL):
        return _AUTH_WITHOUT_TAG
    raise DecodeError(f"FramedContentAuthData: unknown content_type {content_type}")


def _auth_after_content(seen: Mapping[str, Any]) -> Codec[FramedContentAuthData]:
    return auth_data_codec(seen["content"].content_type)


_AUTH_AFTER_CONTENT = Depends(_auth_after_content, "FramedContentAuthData")


def _auth_after_tbs(seen: Mapping[str, Any]) -> Codec[FramedContentAuthData]:
    # A module-level function, not a lambda: annotations are evaluated with the class
    # namespace as globals, where a lambda could not see this module's names.
    return auth_data_codec(seen["content_tbs"].content.content_type)


def _has_group_context(sender: Sender) -> bool:
    return sender.sender_type in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT)


def _tbs_context(seen: Mapping[str, Any]) -> Any:
    return GroupContext if _has_group_context(seen["content"].sender) else EMPTY


@dataclass(frozen=True)
class FramedContentTBS(Struct):
    """struct {
        ProtocolVersion version = mls10;
        WireFormat wire_format;
        FramedContent content;
        select (FramedContentTBS.content.sender.sender_type) {
            case member:
            case new_member_commit:
                GroupContext context;
            case external:
            case new_member_proposal:
                struct{};
        };
    } FramedContentTBS;                                                  (§6.1)"""

    version: Uint16
    wire_format: Uint16
    content: FramedContent
    context: Annotated[GroupContext | None, Depends(_tbs_context, "FramedContentTBS.context")]

    def __post_init__(self) -> None:
        if (self.context is not None) != _has_group_context(self.content.sender):
            raise UsageError("FramedContentTBS: context must be present exactly for member "
                             "and new_member_commit senders (§6.1)")


@dataclass(frozen=True)
class AuthenticatedContent(Struct):
    """struct {
        WireFormat wire_format;
        FramedContent content;
        FramedContentAuthData auth;
    } AuthenticatedContent;                                              (§6)"""

    wire_format: Uint16
    content: FramedContent
    auth: Annotated[FramedContentAuthData, _AUTH_AFTER_CONTENT]

    def to_be_signed(self, context: GroupContext | None) -> FramedContentTBS:
        """The FramedContentTBS signed by the sender; ``context`` is the current
        GroupContext, used only for member and new_member_commit senders (§6.1)."""
        ctx = context if _has_group_context(self.content.sender) else None
        if _has_group_context(self.content.sender) and ctx is None:
            raise UsageError("FramedContentTBS: this sender type needs the GroupContext")
        return FramedContentTBS(ProtocolVersion.MLS10, self.wire_format, self.content, ctx)

    def confirmed_transcript_hash_input(self) -> ConfirmedTranscriptHashInput:
        """The ConfirmedTranscriptHashInput of this (commit) content (§8.2)."""
        return ConfirmedTranscriptHashInput(self.wire_format, self.content,
                                            self.auth.signature)


@dataclass(frozen=True)
class AuthenticatedContentTBM(Struct):
    """struct {
      FramedContentTBS content_tbs;
      FramedContentAuthData auth;
    } AuthenticatedContentTBM;                                           (§6.2)

    The input of ``membership_tag = MAC(membership_key, AuthenticatedContentTBM)``."""

    content_tbs: FramedContentTBS
    auth: Annotated[
        FramedContentAuthData,
        Depends(_auth_after_tbs, "FramedContentAuthData"),
    ]


@dataclass(frozen=True)
class ConfirmedTranscriptHashInput(Struct):
    """struct {
        WireFormat wire_format;
        FramedContent content; /* with content_type == commit */
        opaque signature<V>;
    } ConfirmedTranscriptHashInput;                                      (§8.2)"""

    wire_format: Uint16
    content: FramedContent
    signature: VarBytes


@dataclass(frozen=True)
class InterimTranscriptHashInput(Struct):
    """struct {
        MAC confirmation_tag;
    } InterimTranscriptHashInput;                                        (§8.2)"""

    confirmation_tag: VarBytes


# ---------------------------------------------------------------------- public message


def _membership_tag(seen: Mapping[str, Any]) -> Any:
    return VAR_BYTES if seen["content"].sender.sender_type == SenderType.MEMBER else EMPTY


@dataclass(frozen=True)
class PublicMessage(Struct):
    """struct {
        FramedContent content;
        FramedContentAuthData auth;
        select (PublicMessage.content.sender.sender_type) {
            case member:
                MAC membership_tag;
            case external:
            case new_member_commit:
            case new_member_proposal:
                struct{};
        };
    } PublicMessage;                                                     (§6.2)"""

    content: FramedContent
    auth: Annotated[FramedContentAuthData, _AUTH_AFTER_CONTENT]
    membership_tag: Annotated[bytes | None, Depends(_membership_tag, "membership_tag")]

    def __post_init__(self) -> None:
        is_member = self.content.sender.sender_type == SenderType.MEMBER
        if (self.membership_tag is not None) != is_member:
            raise UsageError("PublicMessage: membership_tag must be present exactly for "
                             "member senders (§6.2)")


# --------------------------------------------------------------------- private message


@dataclass(frozen=True)
class PrivateMessage(Struct):
    """struct {
        opaque group_id<V>;
        uint64 epoch;
        ContentType content_type;
        opaque authenticated_data<V>;
        opaque encrypted_sender_data<V>;
        opaque ciphertext<V>;
    } PrivateMessage;                                                    (§6.3)"""

    group_id: VarBytes
    epoch: Uint64
    content_type: Uint8
    authenticated_data: VarBytes
    encrypted_sender_data: VarBytes
    ciphertext: VarBytes


@dataclass(frozen=True)
class PrivateMessageContent:
    """struct {
        select (PrivateMessage.content_type) {
            case application:
              opaque application_data<V>;
            case proposal:
              Proposal proposal;
            case commit:
              Commit commit;
        };
        FramedContentAuthData auth;
        opaque padding[length_of_padding];
    } PrivateMessageContent;                                             (§6.3.1)

    ``content_type`` comes from the enclosing PrivateMessage and is not encoded here;
    ``padding`` is the number of zero bytes appended."""

    content_type: int
    body: bytes | Proposal | Commit
    auth: FramedContentAuthData
    padding: int = 0

    def encode(self) -> bytes:
        """The plaintext: the selected body, ``auth``, then ``padding`` zero bytes."""
        if self.padding < 0:
            raise UsageError("PrivateMessageContent: negative padding")
        try:
            body_codec = as_body_codec(self.content_type)
        except DecodeError as e:
            raise UsageError(str(e)) from None
        out = bytearray()
        body_codec.encode(self.body, out)
        auth_data_codec(self.content_type).encode(self.auth, out)
        out += bytes(self.padding)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes, content_type: int) -> PrivateMessageContent:
        """Decode a plaintext for ``content_type``; every padding byte must be zero."""
        data = bytes(data)
        r = Reader(data)
        try:
            body = as_body_codec(content_type).decode(r)
            auth = auth_data_codec(content_type).decode(r)
        except DecodeError as e:
            e.args = (f"PrivateMessageContent: {e.args[0]}",)
            raise
        padding = len(data) - r.pos
        if data.count(0, r.pos) != padding:
            raise DecodeError(f"PrivateMessageContent: non-zero padding byte after offset "
                              f"{r.pos} (§6.3.1)")
        return cls(content_type, body, auth, padding)


def as_body_codec(content_type: int) -> Codec[Any]:
    """The codec of the FramedContent/PrivateMessageContent body for ``content_type``."""
    spec = _BODY_CODECS.get(content_type)
    if spec is None:
        raise DecodeError(f"unknown content_type {content_type}")
    return as_codec(spec)


@dataclass(frozen=True)
class PrivateContentAAD(Struct):
    """struct {
        opaque group_id<V>;
        uint64 epoch;
        ContentType content_type;
        opaque authenticated_data<V>;
    } PrivateContentAAD;                                                 (§6.3.1)"""

    group_id: VarBytes
    epoch: Uint64
    content_type: Uint8
    authenticated_data: VarBytes


@dataclass(frozen=True)
class SenderData(Struct):
    """struct {
        uint32 leaf_index;
        uint32 generation;
        opaque reuse_guard[4];
    } SenderData;                                                        (§6.3.2)"""

    leaf_index: Uint32
    generation: Uint32
    reuse_guard: Annotated[bytes, Fixed(4)]


@dataclass(frozen=True)
class SenderDataAAD(Struct):
    """struct {
        opaque group_id<V>;
        uint64 epoch;
        ContentType content_type;
    } SenderDataAAD;                                                     (§6.3.2)"""

    group_id: VarBytes
    epoch: Uint64
    content_type: Uint8


# ----------------------------------------------------------------------------- MLSMessage

MessageBody = PublicMessage | PrivateMessage | Welcome | GroupInfo | KeyPackage

_WIRE_FORMATS: dict[type, WireFormat] = {
    PublicMessage: WireFormat.MLS_PUBLIC_MESSAGE,
    PrivateMessage: WireFormat.MLS_PRIVATE_MESSAGE,
    Welcome: WireFormat.MLS_WELCOME,
    GroupInfo: WireFormat.MLS_GROUP_INFO,
    KeyPackage: WireFormat.MLS_KEY_PACKAGE,
}


class _MLS10(Codec[int]):
    """``ProtocolVersion version = mls10`` of an MLSMessage (§6). Any other value is
    refused as soon as it is read, before the body whose layout it would define is
    decoded; encoding stays permissive (tests build such messages)."""

    name = "ProtocolVersion"

    def encode(self, value: int, out: bytearray) -> None:
        U16.encode(value, out)

    def decode(self, r: Reader) -> int:
        version = U16.decode(r)
        if version != ProtocolVersion.MLS10:
            raise VersionError(f"§6: protocol version {version:#06x} is not mls10 (0x0001)")
        return version


@dataclass(frozen=True)
class MLSMessage(Struct):
    """struct {
        ProtocolVersion version = mls10;
        WireFormat wire_format;
        select (MLSMessage.wire_format) {
            case mls_public_message:
                PublicMessage public_message;
            case mls_private_message:
                PrivateMessage private_message;
            case mls_welcome:
                Welcome welcome;
            case mls_group_info:
                GroupInfo group_info;
            case mls_key_package:
                KeyPackage key_package;
        };
    } MLSMessage;                                                        (§6)

    Build with :meth:`of`, which sets ``version = mls10`` and the wire format. Decoding
    raises VersionError for any other version, so every entry point that reads an
    MLSMessage (Welcome, GroupInfo, KeyPackage, handshake and application messages)
    checks it."""

    version: Annotated[int, _MLS10()]
    wire_format: Uint16
    message: Annotated[
        MessageBody,
        Select("wire_format", {wf: cls for cls, wf in _WIRE_FORMATS.items()}),
    ]

    @classmethod
    def of(cls, message: MessageBody) -> MLSMessage:
        """Wrap a message with ``version = mls10`` and its wire format."""
        try:
            wf = _WIRE_FORMATS[type(message)]
        except KeyError:
            raise UsageError(f"MLSMessage.of: not a message: {type(message).__name__}") from None
        return cls(ProtocolVersion.MLS10, wf, message)

    @property
    def public_message(self) -> PublicMessage | None:
        return self.message if isinstance(self.message, PublicMessage) else None

    @property
    def private_message(self) -> PrivateMessage | None:
        return self.message if isinstance(self.message, PrivateMessage) else None

    @property
    def welcome(self) -> Welcome | None:
        return self.message if isinstance(self.message, Welcome) else None

    @property
    def group_info(self) -> GroupInfo | None:
        return self.message if isinstance(self.message, GroupInfo) else None

    @property
    def key_package(self) -> KeyPackage | None:
        return self.message if isinstance(self.message, KeyPackage) else None
