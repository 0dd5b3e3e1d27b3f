"""``mls-bridge``: the command line of the MLS client.

``mls-bridge demo`` runs a self-contained walk-through on a temporary local Delivery
Service. The other subcommands work on one client's state directory, so they can be
scripted: each prints its result on stdout (a group id, messages, member lists),
progress on stderr, and on failure one ``mls-bridge: error: ...`` line on stderr with a
non-zero exit status (1 for errors, 2 for bad usage).

Settings come from ``--config FILE`` (TOML), ``MLS_BRIDGE_*`` variables and the options
``--state-dir`` and ``--ds`` (the LocalDeliveryService database shared by the clients).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TextIO

from mls_core.ciphersuite import EXPERIMENTAL_PQ_SUITES, enable_experimental_pq
from mls_core.errors import MLSError, UsageError
from mls_core.room_policy import Action, Role, RoomPolicy
from transports.base import TransportError

from .client import MLSClient
from .errors import NotFoundError
from .events import (
    ClientEvent,
    ClientWarning,
    CommitProcessed,
    GroupJoined,
    KickedFromRoom,
    MessageRejected,
    RemovedFromGroup,
    SignatureKeyChanged,
)
from .keypackages import Progress
from .settings import Settings

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
    group_id = await client.create_group(name=args.name, policy=policy, suite_id=args.suite)
    print(group_id.hex(), file=out)


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
    for user in result.missing_users:
        _note(f"warning: no valid KeyPackage for {user}; not added")
    if not result.added_clients:
        raise _Failure("nobody was added")
    print(f"epoch {result.epoch}: added {', '.join(result.added_clients)}", file=out)


async def cmd_remove(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    group_id = await _group(client, args.group)
    event = await client.remove_members(group_id, args.users)
    print(f"epoch {event.epoch}: removed {len(event.removed)} member(s)", file=out)


async def cmd_send(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    group_id = await _group(client, args.group)
    text = sys.stdin.read() if args.text == "-" else args.text
    await client.send(group_id, text.encode())
    print(f"sent to {group_id.hex()[:16]} (epoch {await client.epoch(group_id)})", file=out)


async def cmd_read(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    group_id = None if args.group is None else await _group(client, args.group)
    await _sync(client)
    names = {g.group_id: g.name or g.group_id.hex()[:16] for g in await client.groups()}
    for msg in await client.inbox(group_id, unread_only=not args.all, mark_read=True):
        if msg.outgoing and not args.all:
            continue
        text = msg.data.decode("utf-8", errors="replace")
        print(f"[{names.get(msg.group_id, '?')}] epoch {msg.epoch} {msg.sender}: {text}",
              file=out)


async def cmd_sync(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    await _sync(client)


async def cmd_groups(client: MLSClient, args: argparse.Namespace, out: TextIO) -> None:
    await _sync(client)
    for g in await client.groups():
        if g.active or args.all:
            state = f"epoch {g.epoch}" if g.active else "left"
            print(f"{g.group_id.hex()}  {g.name or '-'}  {state}  {', '.join(g.members)}",
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
    group_id = bytes.fromhex(args.group_id)
    epoch = await client.recover_group(group_id)
    print(f"rejoined {args.group_id[:16]} at epoch {epoch}", file=out)


class _Failure(Exception):
    """A command finished without doing what was asked (reported as an error)."""


# ---------------------------------------------------------------------------- parser


def _group_id(value: str) -> str:
    try:
        bytes.fromhex(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a hex group id: {value!r}") from None
    return value


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
    parser.add_argument("--config", type=Path, help="TOML settings file "
                        "(default: $MLS_BRIDGE_CONFIG)")
    parser.add_argument("--state-dir", type=Path, help="this client's state directory")
    parser.add_argument("--ds", type=Path, help="LocalDeliveryService database file")
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
    bridge.add_argument("--config", dest="bridge_config", type=Path, required=True,
                        help="bridge.toml (see bridge/config.py)")
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
    gcreate.add_argument("--name", help="a local name for the group")
    gcreate.add_argument("--suite", type=int, metavar="ID",
                         help="cipher suite (default: the cipher_suite setting; 79-88: "
                         "experimental PQ, opted in to by naming it)")
    gcreate.add_argument("--policy", action="store_true",
                         help="with a room policy: we are admin, moderators add and remove")
    gcreate.set_defaults(func=cmd_group_create)
    gpolicy = group_sub.add_parser("policy", help="show the room policy, or change roles")
    gpolicy.add_argument("group", help="group name, id or unique id prefix")
    gpolicy.add_argument("--role", action="append", metavar="USER=ROLE",
                         help="give USER a role: banned, member, moderator or admin")
    gpolicy.set_defaults(func=cmd_group_policy)

    for name, func, help_text in (("invite", cmd_invite, "add users' clients to a group"),
                                  ("remove", cmd_remove, "remove users from a group")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("group", help="group name, id or unique id prefix")
        p.add_argument("users", nargs="+", metavar="USER")
        p.set_defaults(func=func)

    send = sub.add_parser("send", help="send a text message ('-' reads stdin)")
    send.add_argument("group")
    send.add_argument("text")
    send.set_defaults(func=cmd_send)

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
    recover.add_argument("group_id", type=_group_id)
    recover.set_defaults(func=cmd_recover)
    return parser


# ---------------------------------------------------------------------------- main


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {"state_dir": args.state_dir}
    if args.ds is not None:
        overrides["transport"] = {"db_path": args.ds}
    return Settings.load(args.config, overrides=overrides)


async def _run(args: argparse.Namespace) -> None:
    settings = _settings(args)
    client = await MLSClient.open(settings)
    try:
        await args.func(client, args, sys.stdout)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "bridge":
            from bridge.main import MetricsAddress
            from bridge.main import main as bridge_main

            metrics = (None if args.metrics_port is None
                       else MetricsAddress(args.metrics_host, args.metrics_port))
            if metrics is not None:
                import mls_client.metrics  # noqa: F401  (a clear error before logging in)
            return bridge_main(args.bridge_config, metrics)
        asyncio.run(_run(args))
    except (MLSError, TransportError, _Failure, OSError) as exc:
        print(f"mls-bridge: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
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

    from .demo import run_demo

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
