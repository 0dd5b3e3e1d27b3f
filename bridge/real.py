"""``mls-bridge demo --real``: the cross-network tour over a real Prosody and Synapse.

Both servers are started privately on 127.0.0.1 in the demo's temporary directory
(:mod:`devservers`; installed by ``bash scripts/setup.sh --with-servers``), the accounts
are registered, and every member and the bridge log in over the real protocols: XMPP
c2s with MUC, MAM and PEP; the Matrix client-server API.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic import SecretStr

from devservers.prosody import ProsodyServer
from devservers.synapse import SynapseServer
from transports.base import RelayTransport, TransportError
from transports.matrix.transport import MatrixDeliveryTransport
from transports.xmpp.settings import XmppSettings
from transports.xmpp.transport import XmppDeliveryTransport

from .demo import MEMBERS, Accounts


@contextlib.asynccontextmanager
async def real_servers(root: Path) -> AsyncIterator[tuple[ProsodyServer, SynapseServer]]:
    """A started Prosody and Synapse under ``root`` (stopped on exit)."""
    prosody = ProsodyServer(root / "prosody")
    synapse = SynapseServer(root / "synapse")
    try:
        await asyncio.to_thread(prosody.start)
        await asyncio.to_thread(synapse.start)
    except (OSError, RuntimeError) as exc:
        prosody.stop()
        synapse.stop()
        raise TransportError(f"cannot start the local servers (bash scripts/setup.sh "
                             f"--with-servers installs them): {exc}") from None
    try:
        yield prosody, synapse
    finally:
        await asyncio.to_thread(synapse.stop)
        await asyncio.to_thread(prosody.stop)


async def connect_xmpp(prosody: ProsodyServer, name: str, bridge: str
                       ) -> XmppDeliveryTransport:
    """Register ``name`` and log in; ``bridge``: the bridge's bare JID."""
    password = secrets.token_hex(8)
    jid = await asyncio.to_thread(prosody.register, name, password)
    settings = XmppSettings(jid=f"{jid}/demo", password=SecretStr(password), host="127.0.0.1",
                            port=prosody.port, allow_plaintext=True, bridge=bridge,
                            muc_service=prosody.muc_domain)
    return await XmppDeliveryTransport.connect(settings)


async def connect_matrix(synapse: SynapseServer, root: Path, name: str
                         ) -> MatrixDeliveryTransport:
    """Register ``name`` and log in (its journal under ``root``)."""
    password = secrets.token_hex(8)
    user = await asyncio.to_thread(synapse.register, name, password)
    return await MatrixDeliveryTransport.connect(synapse.url, user, password=password,
                                                 journal_path=root / f"{name}-journal.sqlite",
                                                 long_poll_ms=1000)


@contextlib.asynccontextmanager
async def real_accounts(root: Path) -> AsyncIterator[Accounts]:
    """Every account of the tour, logged in to private servers under ``root``."""
    async with real_servers(root) as (prosody, synapse), contextlib.AsyncExitStack() as stack:
        bridge_jid = f"bridge@{prosody.domain}"

        async def opened(transport: RelayTransport) -> RelayTransport:
            stack.push_async_callback(transport.close)
            return transport

        accounts = Accounts({}, {})
        accounts.bridge["xmpp"] = await opened(await connect_xmpp(prosody, "bridge",
                                                                  bridge_jid))
        accounts.bridge["matrix"] = await opened(await connect_matrix(synapse, root,
                                                                      "bridge"))
        for network, transport in accounts.bridge.items():
            accounts.bridge_identity[network] = transport.user_id
        for network, name in MEMBERS:
            transport = await opened(await connect_xmpp(prosody, name, bridge_jid)
                                     if network == "xmpp" else
                                     await connect_matrix(synapse, root, name))
            accounts.members[name] = transport
            accounts.identities[name] = transport.user_id
        yield accounts
