"""``mls-bridge``: the command line of the MLS client.

``mls-bridge demo`` runs a self-contained walk-through on a temporary local Delivery
Service. The other subcommands work on one client's state directory, so they can be
scripted: each prints its result on stdout (a group id, messages, member lists),
progress on stderr (a line whenever a wait passes two seconds), and on failure one
``mls-bridge: error: ...`` line on stderr that says what to check, with a non-zero exit
status (1 for errors, 2 for bad usage). ``listen`` and ``chat`` stay connected
(:mod:`mls_cli.live`). Library log lines are hidden unless ``-v``.

Settings come from ``--config FILE`` (TOML), ``MLS_BRIDGE_*`` variables and the options
``--state-dir`` and ``--ds`` (the LocalDeliveryService database shared by the clients);
these options go before or after the subcommand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TextIO

from mls_client.client import MLSClient
from mls_client.errors import AmbiguousGroupError, NotFoundError
from mls_client.events import (
    ClientEvent,
    ClientWarning,
    CommitProcessed,
    GroupJoined,
    KickedFromRoom,
    MessageRejected,
    RemovedFromGroup,
    SignatureKeyChanged,
    member_name,
)
from mls_client.keypackages import Progress
from mls_client.settings import Settings
from mls_core.ciphersuite import EXPERIMENTAL_PQ_SUITES, enable_experimental_pq
from mls_core.errors import MLSError, UsageError
from mls_core.room_policy import Action, Role, RoomPolicy
from transports.base import TransportError

from . import content
from .live import chat, listen

#: the rich-message commands of :mod:`mls_cli.content`
CONTENT_COMMANDS = ("send", "react", "unreact", "edit", "delete", "send-file", "fetch")

#: seconds a wait lasts before a progress line says what it is waiting for
PROGRESS_DELAY = 2.0

Command = Callable[[MLSClient, argparse.Namespace, TextIO], Awaitable[None]]


def progress_printer(what: str, stream: TextIO) -> Progress:
    """A progress callback printing ``what: done/total`` about four times."""

    def report(done: int, total: int) -> None:
        step = max(1, total // 4)
        if done == total or done % step == 0:
            print(f"{what}: {done}/{total}", file=stream, flush=True)

    return report


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def describe(event: ClientEvent) -> str | None:
    """One line for the events worth telling a CLI user about."""
    if isinstance(event, GroupJoined):
        return f"joined group {event.group_id.hex()[:16]} at epoch {event.epoch} ({event.via})"
    if isinstance(event, RemovedFromGroup):
        return f"removed from group {event.group_id.hex()[:16]} by {event.by}"
    if isinstance(event, KickedFromRoom):
        how = "banned" if event.banned else "kicked"
        return f"{how} from the room of group {event.group_id.hex()[:16]}: group left"
    if isinstance(event, CommitProcessed) and (event.added or event.removed):
        change = ", ".join([*(f"+{a}" for a in event.added), *(f"-{r}" for r in event.removed)])
        return f"group {event.group_id.hex()[:16]} epoch {event.epoch}: {change}"
    if isinstance(event, MessageRejected):
        return f"warning: skipped a message: {event.reason}"
    if isinstance(event, ClientWarning):
        return f"warning: {event.message}"
    if isinstance(event, SignatureKeyChanged):
        return (f"warning: {event.identity} has a new signature key {event.fingerprint} "
                f"({event.known_keys} known before): a new device, or a substituted key; "
                "confirm out of band")
    return None


async def _sync(client: MLSClient) -> None:
    for event in await client.sync():
        line = describe(event)
        if line is not None:
            _note(line)


async def _group(client: MLSClient, ref: str) -> bytes:
    """Resolve a group reference, processing the stream first if it is not known yet
    (e.g. the Welcome into it has not been read)."""
    try:
        return await client.resolve_group(ref)
    except NotFoundError:
        await _sync(client)
        return await client.resolve_group(ref)


# ---------------------------------------------------------------------------- commands


async def cmd_identity_create(client: MLSClient, args: argparse.Namespace,
                              out: TextIO) -> None:
    identity = await client.create_identity(args.user, args.client_id)
    report = await client.publish_key_packages(
        progress=progress_printer("generating KeyPackages", sys.stderr))
    print(f"{identity.user_id} {identity.client_id}", file=out)
    if report.replaced:
        _note(f"replaced {report.replaced} stale KeyPackage(s) that an earlier install of "
              f"{identity.client_id} had published (its keys are lost): adders now get "
              "the new ones")
    _note(f"published {report.published} KeyPackages and a last-resort KeyPackage")


async def cmd_identity_show(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    identity = client.identity
    print(f"{identity.user_id} {identity.client_id}", file=out)


async def cmd_keypackages_publish(client: MLSClient, args: argparse.Namespace,
                                  out: TextIO) -> None:
    report = await client.publish_key_packages(
        args.count, progress=progress_printer("generating KeyPackages", sys.stderr))
    print(f"published {report.published}; {report.remaining} available", file=out)


async def cmd_group_create(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    policy = RoomPolicy.standard([client.user_id.encode()]) if args.policy else None
    if args.suite is not None and args.suite in EXPERIMENTAL_PQ_SUITES:
        enable_experimental_pq()
    group_id = await client.create_group(name=args.name, topic=args.topic, policy=policy,
                                         suite_id=args.suite)
    print(group_id.hex(), file=out)


async def cmd_group_rename(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    """Change the shared name (and topic) of a group, for every member."""
    gid = await _group(client, args.group)
    event = await client.rename_group(gid, args.name, args.topic)
    print(f"epoch {event.epoch}: group {gid.hex()[:16]} is named {args.name!r}", file=out)


async def cmd_group_policy(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    """Print the room policy, or change roles (``--role USER=ROLE``, admins only)."""
    gid = await _group(client, args.group)
    policy = await client.policy(gid)
    if args.role:
        if policy is None:
            raise UsageError("this group has no room policy (create it with --policy)")
        roles = {r.identity: Role(r.role) for r in policy.roles}
        for assignment in args.role:
            user, _, role = assignment.partition("=")
            try:
                roles[user.encode()] = Role[role.upper()]
            except KeyError:
                raise UsageError(f"--role {assignment}: ROLE is one of "
                                 f"{', '.join(r.name.lower() for r in Role if r != Role.NOBODY)}"
                                 ) from None
        rules = {Action(r.action): Role(r.min_role) for r in policy.rules}
        rights = {e.index: e.allowed for e in policy.external_senders}
        policy = RoomPolicy.build(roles, default_role=Role(policy.default_role), rules=rules,
                                  external_senders=rights)
        await client.set_policy(gid, policy)
    if policy is None:
        print("no room policy: every member may add, remove and change the group", file=out)
        return
    for r in policy.roles:
        print(f"{r.identity.decode('utf-8', 'replace')}: {Role(r.role).name.lower()}", file=out)
    print(f"everyone else: {Role(policy.default_role).name.lower()}", file=out)
    for rule in policy.rules:
        print(f"{Action(rule.action).name.lower()}: {Role(rule.min_role).name.lower()} "
              "or above", file=out)


async def cmd_invite(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    group_id = await _group(client, args.group)
    _note(f"claiming KeyPackages of {', '.join(args.users)} ...")
    result = await client.add_members(group_id, args.users)
    members = {member_name(m) for m in await client.members(group_id)}
    reasons = [_not_added(user, user in members, args.group) for user in args.users
               if user in result.missing_users or not result.added_clients]
    if not result.added_clients:
        raise _Failure("; ".join(reasons) or "nobody was added")
    for why in reasons:
        _note(f"warning: {why}")
    for user in result.replaced:
        _note(f"removed a stale leaf of {user}: that device lost its state and was "
              "added again with new keys")
    # add_members returns once the Commit was accepted and the Welcome sent
    print(f"epoch {result.epoch}: added {', '.join(result.added_clients)}; Welcome sent",
          file=out)


def _not_added(user: str, member: bool, group: str) -> str:
    """Why ``user`` was not added, and what to do about it."""
    if member:
        return (f"{user} is already a member of {group} (no device of theirs is missing "
                "from it)")
    return (f"{user} has no MLS identity to add (no KeyPackage published): check the "
            "address, and ask them to run 'mls-bridge identity create' first")


async def cmd_remove(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    group_id = await _group(client, args.group)
    event = await client.remove_members(group_id, args.users)
    print(f"epoch {event.epoch}: removed {len(event.removed)} member(s)", file=out)


async def cmd_content(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    """``send``, ``react``, ``edit``, ... (:mod:`mls_cli.content`): the message they
    sent is named by its id, to refer to it later."""
    group_id = await _group(client, args.group)
    message_id = await args.content_func(client, args, group_id, out)
    if args.command == "fetch":
        return
    shared = await client.group_name(group_id)
    where = group_id.hex()[:16] if shared is None else f"{shared.name_text} ({group_id.hex()[:16]})"
    print(f"sent to {where} (epoch {await client.epoch(group_id)}): message "
          f"{message_id.hex()[:content.SHOWN]}", file=out)


async def cmd_read(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    group_id = None if args.group is None else await _group(client, args.group)
    await _sync(client)
    names = {g.group_id: g.name or g.group_id.hex()[:16] for g in await client.groups()}
    for msg in await client.inbox(group_id, unread_only=not args.all, mark_read=True):
        if msg.outgoing and not args.all:
            continue
        print(f"[{names.get(msg.group_id, '?')}] epoch {msg.epoch} {msg.sender}: "
              f"{content.show_row(msg)}", file=out)


async def cmd_sync(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    await _sync(client)


async def cmd_groups(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    await _sync(client)
    for g in await client.groups():
        if g.active or args.all:
            state = f"epoch {g.epoch}" if g.active else "left"
            size = (f"{len(g.users)} user{'s' * (len(g.users) != 1)}/{g.devices} "
                    f"device{'s' * (g.devices != 1)}")
            counts = {user: g.members.count(user) for user in g.users}
            devices = ", ".join(user if n == 1 else f"{user} ({n} devices)"
                                for user, n in counts.items())
            topic = f"  topic: {g.topic}" if g.topic else ""
            print(f"{g.group_id.hex()}  {g.name or '-'}  {state}  {size}  {devices}{topic}",
                  file=out)


async def cmd_members(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    group_id = await _group(client, args.group)
    await _sync(client)
    for member in await client.members(group_id):
        identity = member.credential.identity
        name = identity.decode("utf-8", errors="replace") if identity else "<x509>"
        print(f"{member.index}  {name}", file=out)


async def cmd_leave(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    group_id = await _group(client, args.group)
    await client.leave(group_id)
    print("leave proposed; a member will commit it", file=out)


async def cmd_recover(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    """Rejoin by name, id prefix or (after the whole state directory was lost, when
    nothing here knows the group) full group id."""
    try:
        group_id = await client.resolve_group(args.group)
    except AmbiguousGroupError:
        raise
    except NotFoundError:
        try:
            group_id = bytes.fromhex(args.group)
        except ValueError:
            raise NotFoundError(f"no group named {args.group!r} is known here; after "
                                "losing the state directory, give the full group id") from None
    epoch = await client.recover_group(group_id)
    print(f"rejoined {group_id.hex()[:16]} at epoch {epoch}", file=out)


async def cmd_listen(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    group_id = None if args.group is None else await _group(client, args.group)
    await listen(client, group_id, out, args.json)


async def cmd_chat(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    await chat(client, await _group(client, args.group), out)


class _Failure(Exception):
    """A command finished without doing what was asked (reported as an error)."""


# ---------------------------------------------------------------------------- parser


def port_number(value: str) -> int:
    """A TCP port, 1-65535 (argparse type)."""
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value!r}")
    return port


def add_metrics_arguments(parser: argparse.ArgumentParser, what: str = "/metrics") -> None:
    """``--metrics-port`` and ``--metrics-host``: opt-in Prometheus metrics (they need
    the ``metrics`` extra, prometheus-client; docs/operations.md)."""
    parser.add_argument("--metrics-port", type=port_number, metavar="PORT",
                        help=f"serve Prometheus {what} on this port (needs the "
                             "'metrics' extra: prometheus-client)")
    parser.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                        help="address to serve metrics on (default 127.0.0.1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mls-bridge", description="An MLS (RFC 9420) client over a Delivery Service.")
    _add_common_options(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="walk through a group of clients on a temp service")
    demo.add_argument("--clients", type=int, default=5, choices=range(4, 9), metavar="N",
                      help="number of clients, 4-8 (default 5)")
    demo.add_argument("--suite", type=int, default=1, metavar="ID",
                      help="cipher suite of the single-service tour (default 1; 79-88: "
                      "the experimental PQ suites, docs/pq.md)")
    demo.add_argument("--real", action="store_true",
                      help="run the cross-network part over a local Prosody and Synapse "
                           "(started in a temporary directory) instead of the embedded "
                           "simulation")
    demo.add_argument("--only-bridge", action="store_true",
                      help="run only the cross-network part")

    bridge = sub.add_parser("bridge", help="run the bridge service (one MLS group over "
                            "XMPP and Matrix rooms; docs/bridge.md)")
    add_metrics_arguments(bridge, "/metrics and /healthz")

    ident = sub.add_parser("identity", help="this client's identity")
    ident_sub = ident.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = ident_sub.add_parser("create", help="create the identity, publish KeyPackages")
    create.add_argument("user", nargs="?", help="user id, e.g. alice@example.org (default: "
                        "the XMPP/Matrix account's, e.g. xmpp:alice@example.org)")
    create.add_argument("--client-id", help="device id (default: the account's device, "
                        "or USER/random)")
    create.set_defaults(func=cmd_identity_create)
    ident_sub.add_parser("show", help="print user and client id").set_defaults(
        func=cmd_identity_show)

    kp = sub.add_parser("keypackages", help="KeyPackage pool")
    kp_sub = kp.add_subparsers(dest="action", required=True, metavar="ACTION")
    publish = kp_sub.add_parser("publish", help="top up the pool (or publish --count more)")
    publish.add_argument("--count", type=int)
    publish.set_defaults(func=cmd_keypackages_publish)

    group = sub.add_parser("group", help="groups")
    group_sub = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    gcreate = group_sub.add_parser("create", help="create a group; prints its id")
    gcreate.add_argument("--name", help="the group's name, shared with every member "
                         "(at most 64 bytes of UTF-8)")
    gcreate.add_argument("--topic", help="the group's topic, shared with every member")
    gcreate.add_argument("--suite", type=int, metavar="ID",
                         help="cipher suite (default: the cipher_suite setting; 79-88: "
                         "experimental PQ, opted in to by naming it)")
    gcreate.add_argument("--policy", action="store_true",
                         help="with a room policy: we are admin, moderators add and remove")
    gcreate.set_defaults(func=cmd_group_create)
    grename = group_sub.add_parser("rename", help="change the group's shared name "
                                   "(and topic) for every member")
    grename.add_argument("group", help="group name, id or unique id prefix")
    grename.add_argument("name")
    grename.add_argument("--topic", help="the new topic (default: keep it)")
    grename.set_defaults(func=cmd_group_rename)
    gpolicy = group_sub.add_parser("policy", help="show the room policy, or change roles")
    gpolicy.add_argument("group", help="group name, id or unique id prefix")
    gpolicy.add_argument("--role", action="append", metavar="USER=ROLE",
                         help="give USER a role: banned, member, moderator or admin")
    gpolicy.set_defaults(func=cmd_group_policy)

    for name, func, help_text in (("invite", cmd_invite, "add users' clients to a group"),
                                  ("remove", cmd_remove, "remove users from a group")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("group", help="group name, id or unique id prefix")
        p.add_argument("users", nargs="+", metavar="USER",
                       help="user ids, e.g. xmpp:bob@example.org or matrix:@bob:example.org")
        p.set_defaults(func=func)

    content.add_parsers(sub)
    for name in CONTENT_COMMANDS:
        sub.choices[name].set_defaults(func=cmd_content)

    read = sub.add_parser("read", help="fetch and print new messages")
    read.add_argument("group", nargs="?")
    read.add_argument("--all", action="store_true", help="also already read and own ones")
    read.set_defaults(func=cmd_read)

    groups = sub.add_parser("groups", help="list groups")
    groups.add_argument("--all", action="store_true", help="include groups we left")
    groups.set_defaults(func=cmd_groups)

    members = sub.add_parser("members", help="list a group's members (leaf index, user)")
    members.add_argument("group")
    members.set_defaults(func=cmd_members)

    sub.add_parser("sync", help="process incoming messages").set_defaults(func=cmd_sync)

    leave = sub.add_parser("leave", help="propose our removal from a group")
    leave.add_argument("group")
    leave.set_defaults(func=cmd_leave)

    recover = sub.add_parser("recover", help="rejoin a group after losing its state")
    recover.add_argument("group", help="group name, id or unique id prefix (after losing "
                         "the whole state directory: the full group id)")
    recover.set_defaults(func=cmd_recover)

    listen_p = sub.add_parser("listen", help="stay connected and print what arrives, "
                              "one line each, until Ctrl-C")
    listen_p.add_argument("group", nargs="?", help="only this group (default: all)")
    listen_p.add_argument("--json", action="store_true", help="one JSON object per line "
                          "(time, kind, group, group_id, sender, text, epoch, added, "
                          "removed)")
    listen_p.set_defaults(func=cmd_listen)
    chat_p = sub.add_parser("chat", help="send the lines typed (or piped) to a group, "
                            "and print what arrives")
    chat_p.add_argument("group", help="group name, id or unique id prefix")
    chat_p.set_defaults(func=cmd_chat)

    _everywhere(parser)
    return parser


def _add_common_options(parser: argparse.ArgumentParser, default: object) -> None:
    """The options every command takes, before or after its name (``default``:
    None at the top level; SUPPRESS in a subcommand, so an option given before the
    subcommand is not overwritten by its absence after it)."""
    parser.add_argument("--config", type=Path, default=default, help="TOML settings "
                        "file (default: $MLS_BRIDGE_CONFIG; for 'bridge': bridge.toml)")
    parser.add_argument("--state-dir", type=Path, default=default,
                        help="this client's state directory")
    parser.add_argument("--ds", type=Path, default=default,
                        help="LocalDeliveryService database file")
    parser.add_argument("-v", "--verbose", action="count",
                        default=0 if default is None else default,
                        help="show the libraries' log lines (-vv: debug)")


def _everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand, at any depth, the common options."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_common_options(child, argparse.SUPPRESS)
                _everywhere(child)


# ---------------------------------------------------------------------------- main


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {"state_dir": args.state_dir}
    if args.ds is not None:
        overrides["transport"] = {"db_path": args.ds}
    return Settings.load(args.config, overrides=overrides)


#: commands that wait for input by design: no "still waiting" line once connected
LIVE_COMMANDS = ("listen", "chat")


def server_of(settings: Settings) -> str:
    """The server the settings connect to, as a progress line names it."""
    if settings.transport.kind == "xmpp" and settings.xmpp is not None:
        x = settings.xmpp
        server = f"the XMPP server {x.host or x.bare_jid.partition('@')[2]}:{x.port}"
        return server + (f" and the bridge {x.bridge}" if x.bridge else "")
    if settings.transport.kind == "matrix" and settings.matrix is not None:
        m = settings.matrix
        server = f"the Matrix homeserver {m.homeserver}"
        return server + (f" and the bridge {m.bridge}" if m.bridge else "")
    return f"the local delivery service {settings.delivery_db_path}"


@contextlib.asynccontextmanager
async def progress_after(what: str, delay: float = PROGRESS_DELAY) -> AsyncIterator[None]:
    """Print ``what ...`` on stderr if the block is still running after ``delay``
    seconds, so no wait is silent."""

    async def later() -> None:
        await asyncio.sleep(delay)
        _note(f"{what} ... (Ctrl-C to give up)")

    task = asyncio.create_task(later())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _run(args: argparse.Namespace) -> None:
    settings = _settings(args)
    server = server_of(settings)
    async with progress_after(f"connecting to {server}"):
        client = await MLSClient.open(settings)
    try:
        if args.command in LIVE_COMMANDS:
            await args.func(client, args, sys.stdout)
        else:
            command = " ".join([args.command, *([args.action] if "action" in args else [])])
            async with progress_after(f"{command}: waiting for {server}"):
                await args.func(client, args, sys.stdout)
    finally:
        await client.close()


def quiet_libraries(verbosity: int) -> None:
    """Library log lines (slixmpp, matrix-nio, asyncio, ours) are hidden unless ``-v``:
    the CLI says what matters itself, in one line. Without a handler, Python would
    print every WARNING on stderr (logging.lastResort)."""
    root = logging.getLogger()
    if verbosity == 0:
        root.addHandler(logging.NullHandler())
        return
    logging.basicConfig(level=logging.INFO if verbosity == 1 else logging.DEBUG,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "bridge":
            if args.config is None:
                parser.error("bridge needs --config BRIDGE_TOML (see docs/bridge.md)")
            from bridge.main import MetricsAddress
            from bridge.main import main as bridge_main

            metrics = (None if args.metrics_port is None
                       else MetricsAddress(args.metrics_host, args.metrics_port))
            if metrics is not None:
                import mls_client.metrics  # noqa: F401  (a clear error before logging in)
            return bridge_main(args.config, metrics)
        quiet_libraries(args.verbose)
        asyncio.run(_run(args))
    except (MLSError, TransportError, _Failure, OSError) as exc:
        print(f"mls-bridge: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        if args.command in LIVE_COMMANDS:  # the way to stop them: a clean exit (a
            return 0                       # second Ctrl-C cancels what still runs)
        print("mls-bridge: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line unless MLS_BRIDGE_DEBUG asks for more
        if os.environ.get("MLS_BRIDGE_DEBUG"):
            raise
        print(f"mls-bridge: internal error: {type(exc).__name__}: {_one_line(exc)} "
              "(set MLS_BRIDGE_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    """The single-service tour, then the cross-network one (bridge/demo.py)."""
    from bridge import demo as bridge_demo
    from mls_client.demo import run_demo

    status = 0 if args.only_bridge else asyncio.run(
        run_demo(print, clients=args.clients, suite=args.suite))
    if args.real:
        from bridge.real import real_accounts

        return status or asyncio.run(bridge_demo.run(print, connect=real_accounts))
    return status or asyncio.run(bridge_demo.run(print))


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {'; '.join(lines[1:])}"
    return "; ".join(lines)


if __name__ == "__main__":
    sys.exit(main())
