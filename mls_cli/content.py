"""The CLI's rich messages (issue 18; draft-ietf-mimi-content through
:mod:`mls_client.content`): ``send`` with ``--reply-to``/``--markdown``/``--expires``,
``react``, ``unreact``, ``edit``, ``delete``, ``send-file`` and ``fetch``, and how a
stored or arriving message is shown (a short message id to refer to it, reply and
attachment markers, ``(edited)``).

A message is named by its MIMI message id in hex, or by a unique prefix of it (at least
:data:`MIN_PREFIX` digits) among the group's stored messages; ``read`` and ``listen``
print the first :data:`SHOWN` digits.
"""

from __future__ import annotations

import argparse
import mimetypes
import sys
from pathlib import Path
from typing import TextIO

from mimi_content import ExternalPart, MimiContent
from mls_client.client import MLSClient
from mls_client.content import attachments_of, decoded, text_of
from mls_client.errors import NotFoundError
from mls_client.store import InboxMessage
from mls_core.errors import UsageError

#: hex digits of a message id that ``read`` and ``listen`` show
SHOWN = 8
#: the shortest prefix a command accepts
MIN_PREFIX = 4


def short(message_id: bytes | None) -> str:
    return "" if message_id is None else message_id.hex()[:SHOWN]


def describe_parts(content: MimiContent | None, data: bytes, *, edited: bool = False,
                   in_reply_to: bytes | None = None) -> str:
    """One line of text for a message: its text, then markers for what it refers to and
    carries."""
    text = text_of(content, data)
    marks = []
    if in_reply_to is not None:
        marks.append(f"(reply to {short(in_reply_to)})")
    for part in attachments_of(content):
        marks.append(_attachment(part))
    if edited:
        marks.append("(edited)")
    return " ".join([text, *marks]) if text else " ".join(marks)


def _attachment(part: ExternalPart) -> str:
    name = part.filename or "file"
    return f"[file {name}, {part.size} bytes, {part.content_type}]"


def show_row(row: InboxMessage) -> str:
    """A stored message as ``read`` prints it (after its group and sender)."""
    content = decoded(row)
    reply = content.in_reply_to if content is not None else None
    text = describe_parts(content, row.data, edited=row.edited, in_reply_to=reply)
    return f"[{short(row.content_id)}] {text}" if row.content_id else text


async def message_ref(client: MLSClient, group_id: bytes, ref: str) -> bytes:
    """A stored message's id from its hex id or a unique prefix."""
    low = ref.lower()
    if len(low) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in low):
        raise UsageError(f"{ref!r} is not a message id: give at least {MIN_PREFIX} hex "
                         "digits of one ('read --all' shows them)")
    if len(low) == 64:
        return bytes.fromhex(low)
    rows = await client.inbox(group_id, kinds=None)
    found = {r.content_id for r in rows
             if r.content_id is not None and r.content_id.hex().startswith(low)}
    if not found:
        raise NotFoundError(f"no message {ref} in this group ('read --all' lists them)")
    if len(found) > 1:
        raise UsageError(f"{ref} fits {len(found)} messages; give more digits")
    return found.pop()


def _text(arg: str) -> str:
    return sys.stdin.read() if arg == "-" else arg


async def cmd_send(client: MLSClient, args: argparse.Namespace, group_id: bytes,
                   out: TextIO) -> bytes:
    reply = None if args.reply_to is None else await message_ref(client, group_id,
                                                                 args.reply_to)
    return await client.send_text(group_id, _text(args.text), markdown=args.markdown,
                                  in_reply_to=reply, visible_for=args.expires)


async def cmd_react(client: MLSClient, args: argparse.Namespace, group_id: bytes,
                    out: TextIO) -> bytes:
    target = await message_ref(client, group_id, args.message)
    return await client.react(group_id, target, args.reaction)


async def cmd_unreact(client: MLSClient, args: argparse.Namespace, group_id: bytes,
                      out: TextIO) -> bytes:
    return await client.unreact(group_id, await message_ref(client, group_id, args.reaction))


async def cmd_edit(client: MLSClient, args: argparse.Namespace, group_id: bytes,
                   out: TextIO) -> bytes:
    target = await message_ref(client, group_id, args.message)
    return await client.edit(group_id, target, _text(args.text), markdown=args.markdown)


async def cmd_delete(client: MLSClient, args: argparse.Namespace, group_id: bytes,
                     out: TextIO) -> bytes:
    return await client.delete_message(group_id,
                                       await message_ref(client, group_id, args.message))


async def cmd_send_file(client: MLSClient, args: argparse.Namespace, group_id: bytes,
                        out: TextIO) -> bytes:
    path = Path(args.path)
    if not path.is_file():
        raise UsageError(f"{path} is not a file")
    kind = args.type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return await client.send_file(group_id, path, content_type=kind, filename=path.name,
                                  description=args.description)


async def cmd_fetch(client: MLSClient, args: argparse.Namespace, group_id: bytes,
                    out: TextIO) -> bytes:
    """Download, check and decrypt a message's attachment into a file."""
    message_id = await message_ref(client, group_id, args.message)
    row = await client.message(group_id, message_id)
    parts = attachments_of(None if row is None else decoded(row))
    if not parts:
        raise NotFoundError(f"message {short(message_id)} has no attachment")
    data = await client.fetch_attachment(parts[0])
    target = Path(args.output or parts[0].filename or message_id.hex()[:16])
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists: choose another with -o, or --force")
    target.write_bytes(data)
    print(f"saved {len(data)} bytes to {target}", file=out)
    return message_id


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The rich-message subcommands; each sets ``content_func``."""
    send = sub.add_parser("send", help="send a text message ('-' reads stdin)")
    send.add_argument("group")
    send.add_argument("text")
    send.add_argument("--reply-to", metavar="MESSAGE", help="a message id (or prefix)")
    send.add_argument("--markdown", action="store_true", help="GFM-MIMI Markdown text")
    send.add_argument("--expires", type=int, metavar="SECONDS",
                      help="shown for this long after each member reads it, then purged")
    send.set_defaults(content_func=cmd_send)

    react = sub.add_parser("react", help="react to a message (an emoji, usually)")
    react.add_argument("group")
    react.add_argument("message")
    react.add_argument("reaction")
    react.set_defaults(content_func=cmd_react)

    unreact = sub.add_parser("unreact", help="withdraw one of our reactions")
    unreact.add_argument("group")
    unreact.add_argument("reaction", help="the reaction's message id (or prefix)")
    unreact.set_defaults(content_func=cmd_unreact)

    edit = sub.add_parser("edit", help="replace the text of one of our messages")
    edit.add_argument("group")
    edit.add_argument("message")
    edit.add_argument("text")
    edit.add_argument("--markdown", action="store_true")
    edit.set_defaults(content_func=cmd_edit)

    delete = sub.add_parser("delete", help="delete one of our messages for everyone")
    delete.add_argument("group")
    delete.add_argument("message")
    delete.set_defaults(content_func=cmd_delete)

    send_file = sub.add_parser("send-file", help="send a file, encrypted, through our "
                               "network's file service")
    send_file.add_argument("group")
    send_file.add_argument("path")
    send_file.add_argument("--type", help="its media type (default: from the name)")
    send_file.add_argument("--description", default="")
    send_file.set_defaults(content_func=cmd_send_file)

    fetch = sub.add_parser("fetch", help="download a message's attachment, check and "
                           "decrypt it")
    fetch.add_argument("group")
    fetch.add_argument("message")
    fetch.add_argument("-o", "--output", help="file to write (default: its file name)")
    fetch.add_argument("--force", action="store_true", help="overwrite the file")
    fetch.set_defaults(content_func=cmd_fetch)
