"""``mls-bridge listen`` and ``mls-bridge chat``: stay connected and show what arrives.

Both run :meth:`MLSClient.events`, which reconnects with backoff by itself and reports
outages as :class:`ConnectionLost` / :class:`ConnectionRestored`. Each event worth
showing becomes one :class:`Line` (time, group, sender, text, epoch, kind), printed as
text or, with ``--json``, as one JSON object per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import TextIO

from mls_client.client import MLSClient
from mls_client.events import (
    ClientEvent,
    ClientWarning,
    CommitProcessed,
    ConnectionLost,
    ConnectionRestored,
    GroupJoined,
    KickedFromRoom,
    MessageDeleted,
    MessageEdited,
    MessageReceived,
    MessageRejected,
    Reaction,
    RemovedFromGroup,
    SignatureKeyChanged,
)

from .content import SHOWN, describe_parts, short


@dataclass(frozen=True)
class Line:
    """One thing that happened, as ``listen`` prints it."""

    #: message, edit, delete, reaction, unreaction, joined, members, removed, kicked,
    #: warning, connection_lost, connection_restored
    kind: str
    time: float
    group: str | None = None
    group_id: str | None = None
    sender: str | None = None
    text: str = ""
    epoch: int | None = None
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: the MIMI message id (hex) of a message, edit, delete or reaction
    message_id: str | None = None
    #: the message it refers to (hex): replied to, edited, deleted or reacted to
    ref: str | None = None

    def as_json(self) -> str:
        record = asdict(self)
        record["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.time))
        record["added"], record["removed"] = list(self.added), list(self.removed)
        return json.dumps(record, ensure_ascii=False)

    def as_text(self) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(self.time))
        where = f"[{self.group}] " if self.group is not None else ""
        if self.kind == "message":
            mid = f"[{self.message_id[:SHOWN]}] " if self.message_id else ""
            return f"{clock} {where}{self.sender}: {mid}{self.text}"
        return f"{clock} {where}* {self.text}"


async def group_label(client: MLSClient, group_id: bytes) -> str:
    """The name a group is shown under: its shared name (inside the group), else its
    local name, else a 16-digit id prefix."""
    for summary in await client.groups():
        if summary.group_id == group_id and summary.name:
            return summary.name
    return group_id.hex()[:16]


async def to_line(client: MLSClient, event: ClientEvent) -> Line | None:
    """The line for an event, or None for those not worth showing (queued proposals,
    Commits that change no membership)."""
    now = time.time()
    gid = getattr(event, "group_id", None)
    group = None if gid is None else await group_label(client, gid)
    hexid = None if gid is None else gid.hex()

    def line(kind: str, text: str, *, sender: str | None = None, epoch: int | None = None,
             added: tuple[str, ...] = (), removed: tuple[str, ...] = (),
             message_id: bytes | None = None, ref: bytes | None = None) -> Line:
        return Line(kind, now, group, hexid, sender, text, epoch, added, removed,
                    _hex(message_id), _hex(ref))

    if isinstance(event, MessageReceived):
        text = describe_parts(event.content, event.data, in_reply_to=event.in_reply_to)
        return line("message", text, sender=event.sender, epoch=event.epoch,
                    message_id=event.message_id, ref=event.in_reply_to)
    if isinstance(event, MessageEdited):
        return line("edit", f"{event.sender} edited {short(event.replaces)}: {event.text}",
                    sender=event.sender, message_id=event.message_id, ref=event.replaces)
    if isinstance(event, MessageDeleted):
        return line("delete", f"{event.sender} deleted {short(event.replaces)}",
                    sender=event.sender, message_id=event.message_id, ref=event.replaces)
    if isinstance(event, Reaction):
        if event.removed:
            return line("unreaction", f"{event.sender} withdrew {event.reaction or 'a'} "
                        f"reaction to {short(event.target)}", sender=event.sender,
                        message_id=event.message_id, ref=event.target)
        return line("reaction", f"{event.sender} reacted {event.reaction} to "
                    f"{short(event.target)}", sender=event.sender,
                    message_id=event.message_id, ref=event.target)
    if isinstance(event, GroupJoined):
        return line("joined", f"joined at epoch {event.epoch} ({event.via})",
                    epoch=event.epoch)
    if isinstance(event, CommitProcessed) and (event.added or event.removed):
        change = ", ".join([*(f"added {a}" for a in event.added),
                            *(f"removed {r}" for r in event.removed)])
        return line("members", f"{event.committer}: {change}", sender=event.committer,
                    epoch=event.epoch, added=event.added, removed=event.removed)
    if isinstance(event, RemovedFromGroup):
        return line("removed", f"we were removed by {event.by}", sender=event.by,
                    epoch=event.epoch)
    if isinstance(event, KickedFromRoom):
        how = "banned" if event.banned else "kicked"
        return line("kicked", f"we were {how} from the group's room: group left",
                    epoch=event.epoch)
    if isinstance(event, ConnectionLost):
        return line("connection_lost", f"connection lost ({event.cause}); reconnecting")
    if isinstance(event, ConnectionRestored):
        return line("connection_restored", f"connected again after {event.outage:.0f} s")
    if isinstance(event, MessageRejected):
        return line("warning", f"skipped a message: {event.reason}")
    if isinstance(event, ClientWarning):
        return line("warning", event.message)
    if isinstance(event, SignatureKeyChanged):
        return line("warning", f"{event.identity} has a new signature key "
                    f"{event.fingerprint}: a new device, or a substituted key; confirm "
                    "out of band", sender=event.identity)
    return None


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def printer(out: TextIO, as_json: bool) -> Callable[[Line], None]:
    def show(line: Line) -> None:
        print(line.as_json() if as_json else line.as_text(), file=out, flush=True)

    return show


@contextlib.asynccontextmanager
async def interruptible() -> AsyncIterator[asyncio.Event]:
    """An event set by the first Ctrl-C (or SIGTERM), so the caller can stop cleanly;
    a second one cancels the task outright."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
    try:
        yield stop
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def follow(client: MLSClient, group_id: bytes | None, show: Callable[[Line], None],
                 stop: asyncio.Event) -> None:
    """Print the lines of incoming events (of ``group_id`` only, if given; connection
    events always) until ``stop`` is set."""
    async for event in client.events(stop):
        await _show(client, group_id, event, show)


async def _show(client: MLSClient, group_id: bytes | None, event: ClientEvent,
                show: Callable[[Line], None]) -> None:
    gid = getattr(event, "group_id", None)
    if group_id is not None and gid is not None and gid != group_id:
        return
    line = await to_line(client, event)
    if line is not None:
        show(line)


async def listen(client: MLSClient, group_id: bytes | None, out: TextIO,
                 as_json: bool) -> None:
    """``mls-bridge listen``: until Ctrl-C."""
    which = "all groups" if group_id is None else await group_label(client, group_id)
    print(f"listening to {which} as {client.user_id} (Ctrl-C to stop)", file=sys.stderr,
          flush=True)
    async with interruptible() as stop:
        await follow(client, group_id, printer(out, as_json), stop)


async def chat(client: MLSClient, group_id: bytes, out: TextIO) -> None:
    """``mls-bridge chat``: each line read is sent to the group while incoming lines
    are printed; interactive on a terminal (the line being typed stays intact), else
    reads stdin to its end, sends each line, and stops."""
    label = await group_label(client, group_id)
    async with interruptible() as stop:
        if sys.stdin.isatty() and out.isatty():
            await _chat_terminal(client, group_id, label, stop)
        else:
            await _chat_piped(client, group_id, out, stop)


async def _send_lines(client: MLSClient, group_id: bytes,
                      lines: AsyncIterator[str]) -> None:
    async for text in lines:
        if text.strip():
            await client.send_text(group_id, text)


async def _chat_piped(client: MLSClient, group_id: bytes, out: TextIO,
                      stop: asyncio.Event) -> None:
    show = printer(out, False)
    follower = asyncio.create_task(follow(client, group_id, show, stop))

    try:
        await _send_lines(client, group_id, _stdin_lines(stop))
    finally:
        stop.set()
        await follower
    for event in await client.sync():  # what arrived meanwhile is shown before leaving
        await _show(client, group_id, event, show)


async def _stdin_lines(stop: asyncio.Event) -> AsyncIterator[str]:
    """The lines of stdin until its end or ``stop``. Read by a daemon thread: a read
    blocked on a pipe (or a file) cannot be cancelled, and must not keep the process
    alive after Ctrl-C."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def put(line: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: we are leaving
            loop.call_soon_threadsafe(lines.put_nowait, line)

    def read() -> None:
        for line in sys.stdin:
            put(line.rstrip("\n"))
        put(None)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while True:
            line = asyncio.ensure_future(lines.get())
            await asyncio.wait({line, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not line.done():
                line.cancel()
                return
            text = line.result()
            if text is None:
                return
            yield text
    finally:
        stopped.cancel()


async def _chat_terminal(client: MLSClient, group_id: bytes, label: str,
                         stop: asyncio.Event) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    session: PromptSession[str] = PromptSession()
    print(f"chat in {label} as {client.user_id}: Enter sends a line; Ctrl-D or Ctrl-C "
          "leaves", flush=True)
    with patch_stdout(raw=True):
        follower = asyncio.create_task(
            follow(client, group_id, printer(sys.stdout, False), stop))

        # lines are sent by their own task, in order, so the prompt is back at once:
        # between prompts the terminal is in cooked mode, where a Ctrl-D typed during
        # a slow send would be lost
        outgoing: asyncio.Queue[str | None] = asyncio.Queue()

        async def queued() -> AsyncIterator[str]:
            while (text := await outgoing.get()) is not None:
                yield text

        sending = asyncio.create_task(_send_lines(client, group_id, queued()))
        try:
            while not stop.is_set() and not sending.done():
                try:
                    outgoing.put_nowait(await session.prompt_async(f"{label}> "))
                except (EOFError, KeyboardInterrupt):
                    break
            outgoing.put_nowait(None)
            await sending
        finally:
            sending.cancel()
            stop.set()
            await follower
