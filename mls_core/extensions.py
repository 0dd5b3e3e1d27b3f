"""Extensions (RFC 9420 §13.4, §17.3): the generic Extension struct, extension types and
the group-name GroupContext extension."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from .codec import Struct, Uint16, VarBytes
from .errors import MLSError, ValidationError


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


#: private-use extension type (§17.3: 0xF000-0xFFFF) of :class:`GroupName`
GROUP_NAME_EXTENSION = 0xF0A2
#: bounds of :class:`GroupName` (UTF-8 bytes)
MAX_GROUP_NAME = 64
MAX_GROUP_TOPIC = 512
#: Unicode bidirectional embedding, override and isolate controls (they reorder text)
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True)
class GroupName(Struct):
    """The group's shared name and topic, a GroupContext extension (§13.4) that every
    member reads from the same GroupContext and that only a GroupContextExtensions
    Commit (§12.1.7) changes::

        struct {
            opaque name<V>;     // UTF-8, 1..64 bytes, no control characters
            opaque topic<V>;    // UTF-8, 0..512 bytes, no control characters
        } GroupName;

    It is not a required capability (§11.1): stacks that do not know it ignore it (§13),
    while ours list it in their LeafNode capabilities, as §12.1.7 needs of every member
    before a GroupContextExtensions proposal can add it."""

    name: VarBytes
    topic: VarBytes

    @classmethod
    def build(cls, name: str, topic: str = "") -> GroupName:
        """A validated GroupName from text."""
        value = cls(name.encode("utf-8"), topic.encode("utf-8"))
        value.validate()
        return value

    @classmethod
    def from_extensions(cls, extensions: Iterable[Extension]) -> GroupName | None:
        """The GroupName among GroupContext extensions (None: the group has none);
        ValidationError if it is malformed."""
        for ext in extensions:
            if ext.extension_type == GROUP_NAME_EXTENSION:
                try:
                    value = cls.decode(ext.extension_data)
                except MLSError as exc:
                    raise ValidationError(f"group name: undecodable ({exc})") from None
                value.validate()
                return value
        return None

    def validate(self) -> None:
        """Bounds, UTF-8, and no control or bidirectional-override characters: names
        and topics are printed on one line of a terminal, which they must not forge."""
        for field, data, low, high in (("name", self.name, 1, MAX_GROUP_NAME),
                                       ("topic", self.topic, 0, MAX_GROUP_TOPIC)):
            if not low <= len(data) <= high:
                raise ValidationError(f"group name: the {field} must be {low}-{high} "
                                      f"UTF-8 bytes, not {len(data)}")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError(f"group name: the {field} is not UTF-8") from None
            if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in _BIDI_CONTROLS
                   for c in text):
                raise ValidationError(f"group name: the {field} holds a control character")
        if self.name.decode("utf-8").strip() != self.name.decode("utf-8"):
            raise ValidationError("group name: the name has leading or trailing spaces")

    @property
    def name_text(self) -> str:
        return self.name.decode("utf-8")

    @property
    def topic_text(self) -> str:
        return self.topic.decode("utf-8")

    def extension(self) -> Extension:
        return Extension(GROUP_NAME_EXTENSION, self.encode())


def with_extension(extensions: Iterable[Extension], new: Extension) -> tuple[Extension, ...]:
    """``extensions`` with ``new`` in place of the one of its type (appended if none):
    a GroupContextExtensions proposal replaces the whole list (§12.1.7), so the others
    must be carried over."""
    out = [new if e.extension_type == new.extension_type else e for e in extensions]
    if all(e.extension_type != new.extension_type for e in out):
        out.append(new)
    return tuple(out)
