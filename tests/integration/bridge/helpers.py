"""Members on a real Prosody and a real Synapse, and the bridge service as a separate
process (``mls-bridge bridge --config bridge.toml``), as it is deployed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import ParamSpec

from pydantic import SecretStr

from devservers.bridge import PASSWORD, BridgeProcess
from devservers.prosody import ProsodyServer
from devservers.synapse import SynapseServer
from mls_client import MLSClient, Settings
from mls_client.errors import NotFoundError
from mls_client.events import ClientEvent
from mls_client.settings import KeyPackageSettings
from mls_core.room_policy import RoomPolicy
from tests.client.helpers import Clients, async_test_within
from transports.base import RelayTransport
from transports.bridged import BridgedTransport
from transports.matrix.transport import MatrixDeliveryTransport
from transports.xmpp.settings import XmppSettings
from transports.xmpp.transport import XmppDeliveryTransport

P = ParamSpec("P")
TEST_TIMEOUT = 240.0
_ids = itertools.count(1)


#: runs an async test, failing after TEST_TIMEOUT
bridge_test = async_test_within(TEST_TIMEOUT)


class RealNet(Clients):
    """Members (name -> MLSClient) on XMPP or Matrix, all bridged by one process."""

    def __init__(self, prosody: ProsodyServer, synapse: SynapseServer, root: Path) -> None:
        self.prosody = prosody
        self.synapse = synapse
        self.root = root
        self.tag = f"b{next(_ids)}x{int(time.time() * 1000) % 100000}"
        self.bridge = BridgeProcess(root, prosody, synapse, self.tag)
        self.clients: dict[str, MLSClient] = {}
        self.events: dict[str, list[ClientEvent]] = {}
        self.inner: dict[str, RelayTransport] = {}
        self.network: dict[str, str] = {}

    def identity(self, name: str) -> str:
        return self.inner[name].user_id

    async def transport(self, network: str, name: str) -> RelayTransport:
        user = f"{name}{self.tag}"
        if network == "xmpp":
            jid = await asyncio.to_thread(self.prosody.register, user, PASSWORD)
            return await XmppDeliveryTransport.connect(XmppSettings(
                jid=f"{jid}/dev", password=SecretStr(PASSWORD), host="127.0.0.1",
                port=self.prosody.port, muc_service=self.prosody.muc_domain,
                allow_plaintext=True, submit_timeout=20.0, bridge=self.bridge.jid))
        user_id = await asyncio.to_thread(self.synapse.register, user, PASSWORD)
        (self.root / name).mkdir(parents=True, exist_ok=True)
        return await MatrixDeliveryTransport.connect(
            self.synapse.url, user_id, password=PASSWORD,
            journal_path=self.root / name / "journal.sqlite", long_poll_ms=500,
            bridge=self.bridge.matrix_user)

    async def add(self, network: str, *names: str) -> list[MLSClient]:
        out = []
        for name in names:
            inner = await self.transport(network, name)
            wrapped = BridgedTransport(inner, self.bridge.identity(network))
            settings = Settings(state_dir=self.root / name,
                                key_packages=KeyPackageSettings(pool_size=3, threshold=1),
                                poll_interval=0.05)
            client = await MLSClient.open(settings, wrapped)
            await client.create_identity(inner.user_id, inner.client_id)
            await client.publish_key_packages()
            self.clients[name] = client
            self.inner[name] = inner
            self.events[name] = []
            self.network[name] = network
            out.append(client)
        return out

    async def group(self, creator: str, members: list[str],
                    policy: RoomPolicy | None = None) -> bytes:
        """A group created by ``creator`` with ``members`` added; all at epoch 1."""
        group_id = await self.clients[creator].create_group(policy=policy)
        await self.clients[creator].add_members(group_id,
                                                [self.identity(m) for m in members])
        await self.at_epoch(group_id, 1, [creator, *members])
        return group_id

    async def until(self, check: Callable[[], Awaitable[bool]], what: str,
                    timeout: float = 60.0, *names: str) -> None:
        """Sync (the named clients, default all) until ``check`` holds."""
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {what}\n{self.bridge.output()}")
            await self.sync(*names)
            await asyncio.sleep(0.1)

    async def at_epoch(self, group_id: bytes, epoch: int, names: list[str]) -> bytes:
        """Wait until every named member is at ``epoch``; they agree on it."""
        async def reached() -> bool:
            for name in names:
                try:
                    if await self.clients[name].epoch(group_id) < epoch:
                        return False
                except NotFoundError:  # its Welcome has not been processed yet
                    return False
            return True
        await self.until(reached, f"{names} at epoch {epoch}", 60.0, *names)
        return await self.agree(group_id, names)

    async def got(self, name: str, group_id: bytes, data: bytes) -> None:
        async def arrived() -> bool:
            return data in self.received(name, group_id)
        await self.until(arrived, f"{name} receiving {data!r}", 60.0, name)

    async def quiet(self, seconds: float = 2.0, *names: str) -> None:
        """Keep syncing for ``seconds`` (to show that something does *not* arrive)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.sync(*names)
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        for name, client in self.clients.items():
            await client.close()
            await self.inner[name].close()  # a client does not own a transport given to it
        await asyncio.to_thread(self.bridge.stop)


@contextlib.asynccontextmanager
async def running(servers: tuple[ProsodyServer, SynapseServer], root: Path
                  ) -> AsyncIterator[RealNet]:
    """A RealNet with its bridge process up; everything closed on exit."""
    net = RealNet(*servers, root)
    try:
        await asyncio.to_thread(net.bridge.start)
        yield net
    finally:
        await net.close()


async def enforce_bans(net: RealNet, name: str, group_id: bytes, banned: str) -> None:
    """Run ``name``'s Matrix bot (room kicks and bans → MLS removals) until ``banned``
    is no longer a member."""
    from mls_client.matrix_bot import MatrixBot

    bot = MatrixBot(net.clients[name], net.inner[name])  # type: ignore[arg-type]

    async def removed() -> bool:
        await bot.step()
        members = await net.clients[name].members(group_id)
        return banned.encode() not in [m.credential.identity for m in members]
    await net.until(removed, f"{banned} removed after the room ban", 60.0, name)
