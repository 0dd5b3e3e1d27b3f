"""Clients over a real Prosody: one MLSClient + XmppDeliveryTransport per device."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ParamSpec

from pydantic import SecretStr

from mls_client import MLSClient, Settings
from mls_client.events import ClientEvent, GroupJoined
from mls_client.settings import KeyPackageSettings
from tests.client.helpers import Clients, async_test_within
from tests.servers.prosody import ProsodyServer
from tests.transports.xmpp_mls import mls_group, throwaway_welcome
from transports.xmpp.settings import XmppSettings
from transports.xmpp.transport import XmppDeliveryTransport

_ids = itertools.count(1)
P = ParamSpec("P")
#: an XMPP scenario that takes longer has hung (a lost stanza, a wait without end)
TEST_TIMEOUT = 150.0


#: runs an async test, failing after TEST_TIMEOUT
xmpp_test = async_test_within(TEST_TIMEOUT)
__all__ = ["XNet", "mls_group", "throwaway_welcome", "welcome_to", "xmpp_settings",
           "xmpp_test"]
PASSWORD = "secret-pw"


def xmpp_settings(server: ProsodyServer, jid: str, **overrides: Any) -> XmppSettings:
    return XmppSettings(jid=jid, password=SecretStr(PASSWORD), host="127.0.0.1", port=server.port,
                        muc_service=server.muc_domain,
                        **{"allow_plaintext": True, "submit_timeout": 20.0, **overrides})


async def welcome_to(device: XmppDeliveryTransport) -> bytes:
    """A real Welcome to a KeyPackage ``device`` publishes now (so its transport takes
    it as one of its own)."""
    welcome, entry = throwaway_welcome(device.user_id)
    await device.publish_key_packages(device.client_id, device.user_id, [entry])
    return welcome


class XNet(Clients):
    """Devices (``name`` -> MLSClient) of accounts on one Prosody. Names are
    ``user`` or ``user.device``; each test gets fresh account names."""

    def __init__(self, server: ProsodyServer, root: Path, **xmpp: Any) -> None:
        self.server = server
        self.root = root
        self.tag = f"t{next(_ids)}x{int(time.time() * 1000) % 100000}"
        self.xmpp = xmpp
        self.clients: dict[str, MLSClient] = {}
        self.transports: dict[str, XmppDeliveryTransport] = {}
        self.events: dict[str, list[ClientEvent]] = {}
        self._accounts: set[str] = set()

    def jid(self, name: str) -> str:
        user, _, device = name.partition(".")
        return f"{user}{self.tag}@{self.server.domain}/{device or 'main'}"

    def user(self, name: str) -> str:
        return "xmpp:" + self.jid(name).split("/")[0]

    def settings(self, name: str) -> Settings:
        return Settings(state_dir=self.root / name,
                        key_packages=KeyPackageSettings(pool_size=4, threshold=2),
                        poll_interval=0.05)

    async def transport(self, name: str, **overrides: Any) -> XmppDeliveryTransport:
        user = self.jid(name).split("@")[0]
        if user not in self._accounts:
            await asyncio.to_thread(self.server.register, user, PASSWORD)
            self._accounts.add(user)
        opts = {**self.xmpp, **overrides}
        return await XmppDeliveryTransport.connect(
            xmpp_settings(self.server, self.jid(name), **opts))

    async def add(self, *names: str, publish: bool = True) -> list[MLSClient]:
        out = []
        for name in names:
            transport = await self.transport(name)
            client = await MLSClient.open(self.settings(name), transport)
            await client.create_identity(transport.user_id, transport.client_id)
            if publish:
                await client.publish_key_packages()
            self.clients[name] = client
            self.transports[name] = transport
            self.events.setdefault(name, [])
            out.append(client)
        return out

    async def reopen(self, name: str) -> MLSClient:
        """Close the device's client and transport, then open both again."""
        await self.clients[name].close()
        await self.transports[name].close()
        transport = await self.transport(name)
        client = await MLSClient.open(self.settings(name), transport)
        self.clients[name] = client
        self.transports[name] = transport
        return client

    async def add_existing(self, name: str) -> MLSClient:
        """Open a device again from its database with a new connection."""
        transport = await self.transport(name)
        client = await MLSClient.open(self.settings(name), transport)
        self.clients[name] = client
        self.transports[name] = transport
        return client

    async def close_one(self, name: str) -> None:
        await self.clients.pop(name).close()
        await self.transports.pop(name).close()

    def __getitem__(self, name: str) -> MLSClient:
        return self.clients[name]

    async def settle(self, *names: str, quiet_rounds: int = 2, max_rounds: int = 60) -> None:
        """Sync until ``quiet_rounds`` rounds in a row brought no event (items in flight
        between members land)."""
        quiet = 0
        for _ in range(max_rounds):
            events = await self.sync(*names)
            quiet = 0 if any(events.values()) else quiet + 1
            if quiet >= quiet_rounds:
                return
            await asyncio.sleep(0.05)

    async def wait_for(self, check: Callable[[], Awaitable[bool]], *names: str,
                       timeout: float = 15.0) -> None:
        """Until ``check()``, syncing the named devices meanwhile (none: they run)."""
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            if names:
                await self.sync(*names)
            await asyncio.sleep(0.05)

    async def joined(self, name: str, group_id: bytes, timeout: float = 15.0) -> None:
        """Wait until the device processed its Welcome to ``group_id`` (delivery over
        the network is asynchronous)."""

        async def check() -> bool:
            return any(isinstance(e, GroupJoined) and e.group_id == group_id
                       for e in self.events[name])

        await self.wait_for(check, name, timeout=timeout)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
        for transport in self.transports.values():
            await transport.close()
