"""``mls-bridge demo``'s cross-network part: one MLS group over two networks.

Two members sit on an "XMPP" network and two on a "Matrix" network; the bridge relays
and orders between them without being a member. On the embedded default both networks
are :class:`~transports.local.LocalDeliveryService` files in room ordering (a chat room
with no ordering server, like a MUC or a Matrix room); ``mls-bridge demo --real`` runs
the same scenario over a local Prosody and Synapse (:mod:`bridge.real`).

The tour: a group created on XMPP with a room policy; members added across networks;
messages both ways; every member agreeing on the epoch authenticator; Commits crossing
from both networks for one epoch (exactly one wins, the other is rebuilt); a member
without the right trying to remove someone (refused); and a look at what the bridge
stored, which never contains a message's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from mls_client.client import MLSClient
from mls_client.events import MessageReceived
from mls_client.settings import KeyPackageSettings, Settings
from mls_core.errors import MLSError, PolicyError
from mls_core.room_policy import Action, Role, RoomPolicy
from transports.base import RelayTransport
from transports.bridged import BridgedTransport
from transports.local import LocalDeliveryService

from .hub import OrderingHub
from .service import Bridge

Out = Callable[[str], None]
#: (network, name) of the tour's members; the first creates the group and is its admin
MEMBERS = (("xmpp", "alice"), ("matrix", "carol"), ("xmpp", "bob"), ("matrix", "dave"))
#: a string the members send; it must never appear in anything the bridge stores
CANARY = "canary-7f3c9e: meet at the north gate"


@dataclass
class Accounts:
    """Logged-in network accounts: the bridge's per network, and each member's."""

    bridge: dict[str, RelayTransport]
    members: dict[str, RelayTransport]
    identities: dict[str, str] = field(default_factory=dict)
    bridge_identity: dict[str, str] = field(default_factory=dict)


Connect = Callable[[Path], contextlib.AbstractAsyncContextManager[Accounts]]


@contextlib.asynccontextmanager
async def embedded_accounts(root: Path) -> AsyncIterator[Accounts]:
    """Both networks as embedded services in room ordering."""
    services = {n: LocalDeliveryService(root / f"{n}-network.sqlite", ordering="room",
                                        poll_interval=0.01) for n in ("xmpp", "matrix")}
    try:
        accounts = Accounts({}, {})
        for network, service in services.items():
            ident = _identity(network, "bridge")
            accounts.bridge[network] = await service.account(
                _device(network, "bridge"), ident, network=network)
            accounts.bridge_identity[network] = ident
        for network, name in MEMBERS:
            accounts.identities[name] = _identity(network, name)
            accounts.members[name] = await services[network].account(
                _device(network, name), _identity(network, name), network=network)
        yield accounts
    finally:
        for service in services.values():
            await service.close()


def _identity(network: str, name: str) -> str:
    return f"xmpp:{name}@xmpp.demo" if network == "xmpp" else f"matrix:@{name}:matrix.demo"


def _device(network: str, name: str) -> str:
    return f"{name}@xmpp.demo/laptop" if network == "xmpp" else f"@{name}:matrix.demo/PHONE"


class Tour:
    """The members' clients, the in-process bridge, and printing helpers."""

    def __init__(self, out: Out, root: Path, accounts: Accounts) -> None:
        self.out = out
        self.root = root
        self.accounts = accounts
        self.clients: dict[str, MLSClient] = {}
        self.ok = True
        self._step = 0

    def step(self, text: str) -> None:
        self._step += 1
        self.out(f"\n[B{self._step}] {text}")

    def check(self, condition: bool, text: str) -> None:
        self.ok = self.ok and condition
        self.out(f"    {'ok' if condition else 'FAILED'}: {text}")

    async def open(self) -> None:
        for network, name in MEMBERS:
            bridge = self.accounts.bridge_identity[network]
            transport = BridgedTransport(self.accounts.members[name], bridge)
            settings = Settings(state_dir=self.root / name,
                                key_packages=KeyPackageSettings(pool_size=3, threshold=1))
            client = await MLSClient.open(settings, transport)
            await client.create_identity(self.accounts.identities[name],
                                         self.accounts.members[name].client_id)
            await client.publish_key_packages()
            self.clients[name] = client

    async def sync(self, quiet_rounds: int = 3, pause: float = 0.1) -> dict[str, list[bytes]]:
        """Every member processes its stream until nothing new arrived for
        ``quiet_rounds`` rounds (the bridge relays asynchronously); what each one read."""
        read: dict[str, list[bytes]] = {name: [] for name in self.clients}
        quiet = 0
        while quiet < quiet_rounds:
            got = 0
            for name, client in self.clients.items():
                events = await client.sync()
                got += len(events)
                read[name] += [e.data for e in events if isinstance(e, MessageReceived)]
            quiet = quiet + 1 if got == 0 else 0
            await asyncio.sleep(pause)
        return read

    async def agree(self, group_id: bytes) -> bool:
        auths = set()
        for client in self.clients.values():
            if any(g.group_id == group_id and g.active for g in await client.groups()):
                auths.add(await client.epoch_authenticator(group_id))
        return len(auths) == 1

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


async def run_bridge_tour(out: Out, root: Path, connect: Connect) -> bool:
    """The cross-network tour on the accounts ``connect`` opens; True if every check
    held."""
    async with connect(root) as accounts:
        hub = await OrderingHub.open(root / "bridge-hub.sqlite", tuple(accounts.bridge))
        bridge = Bridge(hub, accounts.bridge)
        stop = asyncio.Event()
        task = asyncio.create_task(bridge.run(stop))
        tour = Tour(out, root, accounts)
        try:
            await tour.open()
            await _scenario(tour, bridge)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await task
            await tour.close()
            await hub.close()
        _canary_check(tour, root)
        return tour.ok


async def _scenario(tour: Tour, bridge: Bridge) -> None:
    c, ids = tour.clients, tour.accounts.identities
    tour.step("alice (XMPP) creates a group with a room policy: alice admin, carol "
              "(Matrix) moderator, adding and removing need a moderator")
    policy = RoomPolicy.build({ids["alice"].encode(): Role.ADMIN,
                               ids["carol"].encode(): Role.MODERATOR},
                              rules={Action.ADD: Role.MODERATOR, Action.REMOVE: Role.MODERATOR})
    gid = await c["alice"].create_group(policy=policy)
    rooms = await bridge.hub.rooms(gid)
    tour.check(set(rooms) == {"xmpp", "matrix"}, "the bridge joined the group's XMPP room "
               "and opened its Matrix room")
    tour.step("alice adds carol (Matrix) and bob (XMPP); carol adds dave (Matrix)")
    await c["alice"].add_members(gid, [ids["carol"], ids["bob"]])
    await tour.sync()
    await c["carol"].add_members(gid, [ids["dave"]])
    await tour.sync()
    tour.check(await tour.agree(gid), "all four members, on both networks, have the same "
               f"epoch authenticator at epoch {await c['alice'].epoch(gid)}")
    tour.step("messages both ways (one carries a canary string)")
    await c["dave"].send(gid, CANARY.encode())
    await c["bob"].send(gid, b"hello from XMPP")
    read = await tour.sync()
    tour.check(CANARY.encode() in read["alice"] and CANARY.encode() in read["bob"],
               "XMPP members read dave's (Matrix) message")
    tour.check(b"hello from XMPP" in read["carol"], "Matrix members read bob's (XMPP) one")
    tour.step("bob (XMPP) and dave (Matrix) both commit for the same epoch at once")
    epoch = await c["alice"].epoch(gid)
    await asyncio.gather(c["bob"].update(gid), c["dave"].update(gid))
    await tour.sync()
    now = await c["alice"].epoch(gid)
    tour.check(now == epoch + 2 and await tour.agree(gid),
               f"one Commit won epoch {epoch}, the other was rebuilt for epoch {epoch + 1}; "
               "every member agrees")
    tour.step("dave (member) tries to remove bob: the policy says moderators only")
    try:
        await c["dave"].remove_members(gid, [ids["bob"]])
        tour.check(False, "dave's removal was refused")
    except PolicyError as exc:
        tour.check(True, f"refused by dave's own client ({exc}); every other client "
                   "would refuse such a Commit the same way")
    tour.step("carol (moderator, Matrix) removes bob (XMPP)")
    await c["carol"].remove_members(gid, [ids["bob"]])
    await tour.sync()
    await c["alice"].send(gid, b"after bob left")
    read = await tour.sync()
    tour.check(b"after bob left" in read["dave"] and b"after bob left" not in read["bob"],
               "bob no longer reads the group")
    tour.out(f"    the bridge: {bridge.stats['offers']} offers sequenced, "
             f"{bridge.stats['relayed']} hub items published, "
             f"{bridge.stats['requests']} control requests")


def _canary_check(tour: Tour, root: Path) -> None:
    """Every file the bridge wrote (its hub, and with ``--real`` its Matrix journal)."""
    files = [p for p in root.glob("bridge*") if p.is_file()]
    data = b"".join(p.read_bytes() for p in files)
    tour.check(bool(data) and CANARY.encode() not in data,
               f"the canary is in none of the bridge's {len(files)} files ({len(data)} "
               "bytes of ciphertext, hashes and cursors)")


async def run(out: Out = print, *, connect: Connect | None = None,
              root: Path | None = None) -> int:
    """The tour in a temporary directory (or ``root``); 0 if every check held."""
    if root is None:
        with tempfile.TemporaryDirectory(prefix="mls-bridge-demo-") as tmp:
            return await run(out, connect=connect, root=Path(tmp))
    out("\nmls-bridge demo, cross-network: 2 XMPP and 2 Matrix members, one MLS group, "
        "one bridge that cannot read it")
    try:
        ok = await run_bridge_tour(out, root, connect or embedded_accounts)
    except (MLSError, sqlite3.Error) as exc:
        out(f"    FAILED: {exc}")
        ok = False
    out("\n" + ("cross-network demo finished: every check held" if ok
                else "cross-network demo FAILED a check"))
    return 0 if ok else 1
