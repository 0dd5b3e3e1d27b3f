"""MLS clients over real Matrix devices for the integration tests."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from mls_client import MLSClient, Settings
from mls_client.events import ClientEvent
from mls_client.settings import KeyPackageSettings
from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.framing import MLSMessage
from mls_core.group import Group
from mls_core.welcome import sign_group_info
from tests.client.helpers import Clients
from transports.matrix.transport import MatrixDeliveryTransport

from .conftest import PASSWORD, Homeserver


def device_settings(root: Path, name: str, **overrides: Any) -> Settings:
    return Settings(state_dir=root / name,
                    key_packages=KeyPackageSettings(pool_size=4, threshold=2),
                    poll_interval=0.05, **overrides)


class MatrixNet(Clients):
    """Named devices (``alice``, ``alice2``...), each an MLSClient on its own transport."""

    def __init__(self, root: Path, hs: Homeserver) -> None:
        self.root = root
        self.hs = hs
        self.users: dict[str, str] = {}
        self.clients: dict[str, MLSClient] = {}
        self.transports: dict[str, MatrixDeliveryTransport] = {}
        self.user_of: dict[str, str] = {}
        self.events: dict[str, list[ClientEvent]] = {}
        #: transport options per device name (e.g. a small ``timeline_limit``)
        self.options: dict[str, dict[str, Any]] = {}

    def identity(self, user: str) -> str:
        return f"matrix:{self.users[user]}"

    async def connect(self, name: str, user: str) -> MatrixDeliveryTransport:
        return await MatrixDeliveryTransport.connect(
            self.hs.url, self.users[user], password=PASSWORD, device_id=name.upper(),
            journal_path=self.root / f"{name}.journal",
            **{"long_poll_ms": 500, **self.options.get(name, {})})

    async def add(self, name: str, user: str | None = None, *, publish: bool = True,
                  **options: Any) -> MLSClient:
        """A device ``name`` of ``user`` (default: a new user named ``name``)."""
        user = user or name
        self.options[name] = options
        if user not in self.users:
            self.users[user] = self.hs.user(user)
        transport = await self.connect(name, user)
        client = await MLSClient.open(device_settings(self.root, name), transport)
        await client.create_identity(self.identity(user), transport.client_id)
        if publish:
            await client.publish_key_packages()
        self.clients[name], self.transports[name] = client, transport
        self.user_of[name] = user
        self.events[name] = []
        return client

    def __getitem__(self, name: str) -> MLSClient:
        return self.clients[name]

    async def reopen(self, name: str) -> MLSClient:
        """Close a device's client and transport and open both again (a restart)."""
        await self.clients[name].close()
        await self.transports[name].close()
        transport = await self.connect(name, self.user_of[name])
        client = await MLSClient.open(device_settings(self.root, name), transport)
        self.clients[name], self.transports[name] = client, transport
        return client

    async def close(self) -> None:
        for name, client in self.clients.items():
            await client.close()
            await self.transports[name].close()


def fake_group_info(identity: str, group_id: bytes, epoch: int) -> bytes:
    """What a room occupant who is not a member can publish: a self-consistent,
    self-signed MLSMessage(GroupInfo) of a group of its own with the real group's id, at
    any epoch it likes (it signs the GroupContext itself, §12.4.3)."""
    suite = get_suite(1)
    priv, _ = suite.generate_signature_key_pair()
    group = Group.create(1, Credential.basic(identity.encode()), priv, group_id=group_id,
                         now=int(time.time()))
    info = MLSMessage.decode(group.group_info()).group_info
    assert info is not None
    tbs = info.to_be_signed()
    tbs = dataclasses.replace(tbs, group_context=dataclasses.replace(tbs.group_context,
                                                                     epoch=epoch))
    return MLSMessage.of(sign_group_info(suite, priv, tbs)).encode()


def epoch_of(group_info: bytes) -> int:
    """The epoch of an MLSMessage(GroupInfo)."""
    info = MLSMessage.decode(group_info).group_info
    assert info is not None
    return info.group_context.epoch
