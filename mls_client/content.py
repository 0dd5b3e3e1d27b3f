"""MIMI content in the client (draft-ietf-mimi-content): building the messages of each
action, reading what arrives, and the rules a receiver applies (docs/content.md "In the
client").

* Sender URI: the MLS credential identity of the sender (``xmpp:alice@example.org``,
  ``matrix:@alice:example.org``); an identity that is not a URI is written
  ``mls:user:<percent-encoded identity>``.
* Room URI: ``mls:group:<base64url(group_id), no padding>``: every member on every
  network derives it from the MLS group id, so all compute the same message ids.
* A received message whose ``senderUri`` (extension 1) is not its authenticated MLS
  sender, or whose ``roomUri`` (extension 2) is not its group, is refused (spoofing).
* Only the original sender may edit or delete a message, or withdraw a reaction
  ("Security Considerations": "Receiving clients MUST NOT allow parties other than the
  original sender of a message to edit or delete that message").
* Bytes that are not MIMI content are a plain UTF-8 message of an older version.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from dataclasses import dataclass
from typing import TypedDict

from mimi_content import (
    ContentError,
    Disposition,
    Expiration,
    ExternalPart,
    MimiContent,
    NestedPart,
    NullPart,
    SinglePart,
    decode,
    encode,
    message_id,
    new_salt,
)
from mimi_content.content import URI_RE

from .errors import ContentRefusedError
from .events import ClientEvent, MessageDeleted, MessageEdited, Reaction
from .store import InboxMessage, Store, Transaction

#: ``text/plain`` as the draft's examples write it
PLAIN = "text/plain;charset=utf-8"
#: the draft's Markdown variant ("Specifics of Github Flavored Markdown in MIMI")
MARKDOWN = "text/markdown;variant=GFM-MIMI"

MESSAGE, EDIT, DELETE, REACTION, UNREACTION = ("message", "edit", "delete", "reaction",
                                               "unreaction")
#: the kinds whose ``replaces`` must name a message of the same sender
REPLACING = (EDIT, DELETE, UNREACTION)
_MENTION = re.compile(r"\]\(([A-Za-z][A-Za-z0-9+.-]*:[^)\s]+)\)|<([A-Za-z][A-Za-z0-9+.-]*:"
                      r"[^>\s]+)>")


def sender_uri(identity: str) -> str:
    """The senderUri of a member: its credential identity if that is a URI."""
    if URI_RE.fullmatch(identity):
        return identity
    return "mls:user:" + urllib.parse.quote(identity, safe="@")


def room_uri(group_id: bytes) -> str:
    """The roomUri of an MLS group: ``mls:group:`` and the base64url group id."""
    return "mls:group:" + base64.urlsafe_b64encode(group_id).rstrip(b"=").decode()


def build(sender: str, group_id: bytes, body: NestedPart, *, replaces: bytes | None = None,
          in_reply_to: bytes | None = None, expires: Expiration | None = None
          ) -> tuple[bytes, bytes]:
    """Encode one message (salt fresh, senderUri and roomUri set) and its message id
    ("Message ID")."""
    content = MimiContent(new_salt(), replaces, b"", expires, in_reply_to,
                          {1: sender_uri(sender), 2: room_uri(group_id)}, body)
    data = encode(content)
    return data, message_id(data, sender_uri(sender), room_uri(group_id))


def text_body(text: str, *, markdown: bool = False) -> NestedPart:
    """A rendered text body (plain, or the draft's GFM-MIMI Markdown)."""
    return NestedPart(Disposition.RENDER, "", SinglePart(MARKDOWN if markdown else PLAIN,
                                                         text.encode()))


def reaction_body(reaction: str | None) -> NestedPart:
    """A reaction (``reaction.edn``) or, None, its withdrawal (``unlike.edn``)."""
    part = NullPart() if reaction is None else SinglePart(PLAIN, reaction.encode())
    return NestedPart(Disposition.REACTION, "", part)


def mention(uri: str, display: str | None = None) -> str:
    """A mention in Markdown ("Mentions", "Link and Mention handling"):
    ``[@display](uri)``, or ``<uri>`` without a display hint."""
    if not URI_RE.fullmatch(uri):
        raise ContentRefusedError(f"a mention needs a URI, not {uri!r}")
    return f"<{uri}>" if display is None else f"[@{display}]({uri})"


@dataclass(frozen=True)
class Interpreted:
    """What an application message is, for the inbox and the events."""

    content: MimiContent | None
    content_id: bytes | None
    kind: str = MESSAGE
    ref: bytes | None = None
    expires_at: int | None = None
    expires_after: int | None = None


def interpret(data: bytes, sender: str, group_id: bytes) -> Interpreted:
    """Read application data sent by the MLS-authenticated ``sender`` in ``group_id``.
    Not MIMI content: a plain message (content None). Raises
    :class:`ContentRefusedError` for spoofed sender or room URIs and for messages whose
    form the draft gives no meaning (a reaction to nothing)."""
    if not data.startswith(b"\x87\x50"):
        return Interpreted(None, None)
    try:
        content = decode(data)
    except ContentError:
        return Interpreted(None, None)  # an older version's text that happens to start so
    own_sender, own_room = sender_uri(sender), room_uri(group_id)
    if content.sender_uri is not None and content.sender_uri != own_sender:
        raise ContentRefusedError(f"senderUri {content.sender_uri!r} is not the MLS sender "
                                  f"{own_sender!r}", "spoofed_sender")
    if content.room_uri is not None and content.room_uri != own_room:
        raise ContentRefusedError(f"roomUri {content.room_uri!r} is not this group's "
                                  f"{own_room!r}", "spoofed_room")
    cid = message_id(data, own_sender, own_room)
    at, after = _expiry(content.expires)
    null = isinstance(content.body.part, NullPart)
    if content.body.disposition == Disposition.REACTION:
        if content.in_reply_to is None:
            raise ContentRefusedError("a reaction without inReplyTo", "malformed_content")
        if content.replaces is not None and null:
            return Interpreted(content, cid, UNREACTION, content.replaces, at, after)
        if null:
            raise ContentRefusedError("an empty reaction that replaces nothing",
                                      "malformed_content")
        return Interpreted(content, cid, REACTION, content.in_reply_to, at, after)
    if content.replaces is not None:
        return Interpreted(content, cid, DELETE if null else EDIT, content.replaces, at, after)
    return Interpreted(content, cid, MESSAGE, content.in_reply_to, at, after)


def _expiry(expires: Expiration | None) -> tuple[int | None, int | None]:
    if expires is None:
        return None, None
    return (None, expires.time) if expires.relative else (expires.time, None)


async def target_of(store: Store, group_id: bytes, sender: str,
                    meta: Interpreted) -> InboxMessage | None:
    """The message an edit, delete or unreaction replaces, checked: it exists here, it
    is of the right kind, and ``sender`` sent it. An edit of an edit resolves to the
    original message. None for other kinds. Raises :class:`ContentRefusedError`."""
    if meta.kind not in REPLACING or meta.ref is None:
        return None
    target = await store.by_content_id(group_id, meta.ref)
    if target is not None and target.kind == EDIT and target.ref is not None:
        target = await store.by_content_id(group_id, target.ref)
    what = "reaction" if meta.kind == UNREACTION else "message"
    if target is None:  # e.g. sent before we joined, expired, deleted
        raise ContentRefusedError(f"{meta.kind} of an unknown {what} {meta.ref.hex()[:16]}",
                                  "unknown_message", benign=True)
    if target.kind != (REACTION if meta.kind == UNREACTION else MESSAGE):
        raise ContentRefusedError(f"{meta.kind} of a {target.kind}, not a {what}",
                                  "malformed_content")
    if target.sender != sender:
        raise ContentRefusedError(f"{meta.kind} of a {what} of {target.sender}: only its "
                                  "original sender may", "not_original_sender")
    if meta.kind == EDIT and meta.content is not None:
        # "even the original sender ... MUST NOT be able to change the semantics of any
        # other portion of the message except for the contents of the NestedPart"
        before = decoded(target)
        if before is not None and (before.in_reply_to, before.topic_id) != (
                meta.content.in_reply_to, meta.content.topic_id):
            raise ContentRefusedError("an edit may change only the body, not inReplyTo or "
                                      "topicId", "edit_changes_semantics")
    return target


async def apply(tx: Transaction, group_id: bytes, meta: Interpreted, data: bytes,
                target: InboxMessage | None) -> None:
    """The effect of an authorized edit (the message's content is replaced), delete
    (the message and its edits are deleted) or unreaction (the reaction is deleted)."""
    if target is None or target.content_id is None:
        return
    if meta.kind == EDIT:
        await tx.replace_content(target.id, data)
    elif meta.kind == DELETE:
        await tx.delete_inbox(target.id)
        await tx.delete_referring(group_id, target.content_id, (EDIT,))
    elif meta.kind == UNREACTION:
        await tx.delete_inbox(target.id)


class ContentColumns(TypedDict):
    """The inbox columns of a message (``Transaction.deliver`` keywords)."""

    content_id: bytes | None
    kind: str
    ref: bytes | None
    expires_at: int | None
    expires_after: int | None


def content_columns(meta: Interpreted) -> ContentColumns:
    """The inbox columns of a message (``Transaction.deliver`` keywords)."""
    return {"content_id": meta.content_id, "kind": meta.kind, "ref": meta.ref,
            "expires_at": meta.expires_at, "expires_after": meta.expires_after}


def content_event(group_id: bytes, sender: str, meta: Interpreted,
                  target: InboxMessage | None) -> ClientEvent | None:
    """The event of an edit, delete, reaction or unreaction (None: a message, reported
    as :class:`MessageReceived`)."""
    content, cid = meta.content, meta.content_id
    if content is None or cid is None or meta.ref is None or meta.kind == MESSAGE:
        return None
    if meta.kind == EDIT:
        return MessageEdited(group_id, sender, cid, meta.ref, content)
    if meta.kind == DELETE:
        return MessageDeleted(group_id, sender, cid, meta.ref)
    if meta.kind == REACTION:
        return Reaction(group_id, sender, cid, meta.ref, text_of(content, b""))
    withdrawn = "" if target is None else text_of(decoded(target), b"")
    return Reaction(group_id, sender, cid, content.in_reply_to or meta.ref, withdrawn,
                    removed=True, replaces=meta.ref)


def text_of(content: MimiContent | None, data: bytes) -> str:
    """The text to show: the first ``text/*`` part of a MIMI message ("Message
    Bodies"), or the UTF-8 text of an older plain message."""
    if content is None:
        return data.decode("utf-8", errors="replace")
    for nested in content.body.walk():
        part = nested.part
        if isinstance(part, SinglePart) and part.content_type.startswith("text/"):
            return part.content.decode("utf-8", errors="replace")
    return ""


def attachments_of(content: MimiContent | None) -> tuple[ExternalPart, ...]:
    """The external parts of a message, in partIndex order."""
    if content is None:
        return ()
    return tuple(n.part for n in content.body.walk() if isinstance(n.part, ExternalPart))


def mentions_of(content: MimiContent | None) -> tuple[str, ...]:
    """The URIs linked from Markdown text parts: mentions when they name a member
    ("Link and Mention handling")."""
    if content is None:
        return ()
    out: list[str] = []
    for nested in content.body.walk():
        part = nested.part
        if isinstance(part, SinglePart) and part.content_type.startswith("text/markdown"):
            for m in _MENTION.finditer(part.content.decode("utf-8", errors="replace")):
                out.append(m.group(1) or m.group(2))
    return tuple(dict.fromkeys(out))


def decoded(message: InboxMessage) -> MimiContent | None:
    """The MIMI content of a stored message (None: a plain message)."""
    if message.content_id is None:
        return None
    try:
        return decode(message.data)
    except ContentError:
        return None

