"""A bridged group on two embedded networks in one process (the shape of the real
XMPP + Matrix deployment, on LocalDeliveryService files in room ordering)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from bridge.hub import OrderingHub, Rule
from bridge.service import Bridge
from mls_client import MLSClient
from mls_core.ciphersuite import get_suite
from mls_core.config import InputLimits
from mls_core.credentials import Credential
from mls_core.framing import MLSMessage
from mls_core.group import Group
from mls_core.room_policy import RoomPolicy
from mls_core.welcome import sign_group_info
from tests.client.helpers import Clients, settings_for
from transports.base import IncomingMessage, MessageKind, RelayTransport
from transports.bridged import BridgedTransport, ControlBody, decode_control
from transports.local import LocalAccount, LocalDeliveryService

NETWORKS = ("xmpp", "matrix")


def identity(network: str, name: str) -> str:
    return f"xmpp:{name}@x.test" if network == "xmpp" else f"matrix:@{name}:m.test"


def device(network: str, name: str) -> str:
    return f"{name}@x.test/dev" if network == "xmpp" else f"@{name}:m.test/DEV"


class BridgedNet(Clients):
    """Clients on two embedded "networks", bridged by an in-process :class:`Bridge`."""

    def __init__(self, root: Path, rule: Rule = Rule.FIRST_VALID,
                 limits: InputLimits | None = None) -> None:
        self.root = root
        self.rule = rule
        self.limits = limits
        self.services = {n: LocalDeliveryService(root / f"{n}.sqlite", ordering="room",
                                                 poll_interval=0.01) for n in NETWORKS}
        self.clients: dict[str, MLSClient] = {}
        self.events: dict[str, list[Any]] = {}
        self.network: dict[str, str] = {}
        self.hub: OrderingHub | None = None
        self.bridge: Bridge | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start_bridge(self) -> Bridge:
        self.hub = await OrderingHub.open(self.root / "hub.sqlite", NETWORKS, rule=self.rule,
                                          limits=self.limits)
        accounts = {n: await self.services[n].account(device(n, "bridge"),
                                                      identity(n, "bridge"), network=n)
                    for n in NETWORKS}
        self.bridge = Bridge(self.hub, accounts)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.bridge.run(self._stop))
        return self.bridge

    async def stop_bridge(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self.hub is not None:
            await self.hub.close()
        self._task = self.hub = None

    async def add(self, network: str, *names: str, **settings: Any) -> list[MLSClient]:
        out = []
        for name in names:
            account = await self.services[network].account(
                device(network, name), identity(network, name), network=network)
            transport = BridgedTransport(account, identity(network, "bridge"),
                                         request_timeout=10)
            settings.setdefault("transport", {"db_path": self.root / "unused.sqlite"})
            client = await MLSClient.open(settings_for(self.root, name, **settings),
                                          transport)
            await client.create_identity(identity(network, name), device(network, name))
            await client.publish_key_packages()
            self.clients[name] = client
            self.events[name] = []
            self.network[name] = network
            out.append(client)
        return out

    async def group(self, creator: str, members: list[str],
                    policy: RoomPolicy | None = None) -> bytes:
        """A group created by ``creator`` with ``members`` added, everyone caught up."""
        group_id = await self.clients[creator].create_group(policy=policy)
        await self.clients[creator].add_members(
            group_id, [identity(self.network[m], m) for m in members])
        await self.settle()
        return group_id

    async def account(self, network: str, name: str) -> LocalAccount:
        """A bare network account (no MLS client): a stranger, or raw requests."""
        return await self.services[network].account(device(network, name),
                                                     identity(network, name), network=network)

    def transport(self, name: str) -> BridgedTransport:
        transport = self.clients[name]._ctx.transport
        assert isinstance(transport, BridgedTransport)
        return transport

    def dropped(self, reason: str) -> int:
        assert self.bridge is not None
        return self.bridge.stats["dropped"].get(reason, 0)

    async def until_dropped(self, reason: str, count: int = 1, timeout: float = 15.0) -> None:
        """Wait until the bridge has refused ``count`` items for ``reason``."""
        async def done() -> bool:
            return self.dropped(reason) >= count
        await until(done, f"{count} drop(s) for {reason}", timeout)

    async def settle(self, *names: str, quiet_rounds: int = 3,
                     pause: float = 0.05) -> dict[str, list[Any]]:
        """Sync the named clients (all by default) until nothing new arrives for
        ``quiet_rounds`` rounds: the bridge relays asynchronously."""
        out: dict[str, list[Any]] = {n: [] for n in names or tuple(self.clients)}
        quiet = 0
        while quiet < quiet_rounds:
            got = await self.sync(*out)
            for name, events in got.items():
                out[name] += events
            quiet = 0 if any(got.values()) else quiet + 1
            await asyncio.sleep(pause)
        return out

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
        await self.stop_bridge()
        for service in self.services.values():
            await service.close()


@contextlib.asynccontextmanager
async def bridged_net(root: Path, rule: Rule = Rule.FIRST_VALID,
                      limits: InputLimits | None = None) -> AsyncIterator[BridgedNet]:
    net = BridgedNet(root, rule, limits)
    try:
        await net.start_bridge()
        yield net
    finally:
        await net.close()


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0,
                pause: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(pause)


async def answers(account: RelayTransport, sender: str) -> list[ControlBody]:
    """Every control body ``sender`` sent to ``account`` so far."""
    items: list[IncomingMessage] = await account.fetch(account.client_id)
    return [decode_control(i.payload) for i in items
            if i.kind is MessageKind.CONTROL and i.sender_identity == sender]


NOW = 1_800_000_000


def own_group(name: str, group_id: bytes | None = None) -> tuple[Group, bytes]:
    """A group of one, ``name`` (an identity), optionally with a chosen group id; and the
    signature key."""
    priv, _ = get_suite(1).generate_signature_key_pair()
    return Group.create(1, Credential.basic(name.encode()), priv, group_id=group_id,
                        now=NOW), priv


def reepoched(group_info: bytes, signature_priv: bytes, epoch: int) -> bytes:
    """``group_info`` claiming ``epoch``, signed again (valid signature, tree hash and
    tree: what a signer can make of its own GroupInfo)."""
    info = MLSMessage.decode(group_info).group_info
    assert info is not None
    tbs = dataclasses.replace(info.to_be_signed(), group_context=dataclasses.replace(
        info.group_context, epoch=epoch))
    suite = get_suite(info.group_context.cipher_suite)
    return MLSMessage.of(sign_group_info(suite, signature_priv, tbs)).encode()
