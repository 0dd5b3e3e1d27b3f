"""One MLS group over XMPP and Matrix through the bridge (real Prosody and Synapse).

``python -m benchmarks.bridge [--members 20] [--messages 30] [--burst 100]``

Starts a private Prosody and Synapse on loopback (:mod:`devservers`; ``bash
scripts/setup.sh --with-servers`` installs them), the bridge (:class:`bridge.service.
Bridge` with its SQLite hub) and ``--members`` members, half on each network, each an
:class:`~mls_client.MLSClient` over its network transport wrapped in
:class:`~transports.bridged.BridgedTransport`, all in this process. Then:

* **latency** XMPP→Matrix and Matrix→XMPP: one member sends ``--messages`` 1 KiB
  messages one at a time, each when the previous one was decrypted by a member on the
  other network that runs its event loop: offer in the sender's room → the bridge reads
  it → hub → hub item in both rooms → the receiver decrypts it; median, p90, max;
* **sustained throughput**: a member on each network sends ``--burst`` messages back to
  back at the same time; messages per second until a receiver on each network decrypted
  all ``2 x --burst``.

Timing is time.perf_counter; members, the bridge and both servers share this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from bridge.hub import OrderingHub
from bridge.real import connect_matrix, connect_xmpp, real_servers
from bridge.service import Bridge
from devservers.prosody import ProsodyServer
from devservers.synapse import SynapseServer
from mls_client import MLSClient, Settings
from mls_client.events import ClientEvent, MessageReceived
from mls_client.settings import KeyPackageSettings
from transports.base import RelayTransport
from transports.bridged import BridgedTransport

Rows = list[tuple[str, str]]


class Receiver:
    """A member running its event loop; when each message was decrypted."""

    def __init__(self, client: MLSClient) -> None:
        self.client = client
        self.arrived: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        async def on_event(event: ClientEvent) -> None:
            if isinstance(event, MessageReceived):
                self.arrived.put_nowait((event.data, time.perf_counter()))
        self._task = asyncio.create_task(self.client.run(on_event, self._stop))

    def drain(self) -> None:
        """Forget what arrived so far (messages of an earlier measurement)."""
        while not self.arrived.empty():
            self.arrived.get_nowait()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


@contextlib.asynccontextmanager
async def bridged_group(root: Path, prosody: ProsodyServer, synapse: SynapseServer,
                        members: int) -> AsyncIterator[tuple[list[MLSClient], bytes]]:
    """The bridge running, and a group of ``members`` (even: XMPP, odd: Matrix)."""
    async with contextlib.AsyncExitStack() as stack:
        bridge_jid = f"bridge@{prosody.domain}"
        accounts: dict[str, RelayTransport] = {
            "xmpp": await connect_xmpp(prosody, "bridge", bridge_jid),
            "matrix": await connect_matrix(synapse, root, "bridge")}
        for transport in accounts.values():
            stack.push_async_callback(transport.close)
        hub = await OrderingHub.open(root / "hub.sqlite", tuple(accounts))
        stack.push_async_callback(hub.close)
        stop = asyncio.Event()
        task = asyncio.create_task(Bridge(hub, accounts).run(stop))

        async def halt() -> None:
            stop.set()
            await task
        stack.push_async_callback(halt)
        clients = []
        for i in range(members):
            network = "xmpp" if i % 2 == 0 else "matrix"
            inner: RelayTransport = (await connect_xmpp(prosody, f"x{i}", bridge_jid)
                                     if network == "xmpp" else
                                     await connect_matrix(synapse, root, f"m{i}"))
            stack.push_async_callback(inner.close)
            wrapped = BridgedTransport(inner, accounts[network].user_id)
            client = await MLSClient.open(Settings(
                state_dir=root / f"member{i}", poll_interval=0.02,
                key_packages=KeyPackageSettings(pool_size=2, threshold=1)), wrapped)
            stack.push_async_callback(client.close)
            await client.create_identity(inner.user_id, inner.client_id)
            await client.publish_key_packages()
            clients.append(client)
        gid = await clients[0].create_group()
        await clients[0].add_members(gid, [c.user_id for c in clients[1:]])
        for client in clients[1:]:
            while not any(g.group_id == gid and g.active for g in await client.groups()):
                await client.sync(housekeeping=False)
                await asyncio.sleep(0.05)
        yield clients, gid


async def latency(sender: MLSClient, receiver: Receiver, gid: bytes, n: int,
                  tag: str) -> list[float]:
    receiver.drain()
    out = []
    for i in range(n):
        data = b"x" * 1024 + f"latency {tag} {i}".encode()
        start = time.perf_counter()
        await sender.send(gid, data)
        while True:
            got, at = await asyncio.wait_for(receiver.arrived.get(), 60)
            if got == data:
                break
        out.append((at - start) * 1000)
    return sorted(out)


def _describe(ms: list[float]) -> str:
    return (f"median {statistics.median(ms):.0f}, p90 {ms[int(0.9 * (len(ms) - 1))]:.0f}, "
            f"max {ms[-1]:.0f}")


async def throughput(senders: list[MLSClient], receivers: list[Receiver], gid: bytes,
                     burst: int) -> tuple[float, float]:
    """Messages per second decrypted at every receiver, and offered by the senders."""
    async def send_all(sender: MLSClient, tag: str) -> None:
        for i in range(burst):
            await sender.send(gid, b"y" * 1024 + f"{tag} {i}".encode())

    async def drain(receiver: Receiver, expected: int) -> None:
        for _ in range(expected):
            await asyncio.wait_for(receiver.arrived.get(), 120)
    start = time.perf_counter()
    await asyncio.gather(*(send_all(s, f"s{k}") for k, s in enumerate(senders)))
    sent = time.perf_counter()
    # the receivers are not senders: each one decrypts both bursts
    await asyncio.gather(*(drain(r, burst * len(senders)) for r in receivers))
    total = burst * len(senders)
    return total / (time.perf_counter() - start), total / (sent - start)


async def run(args: argparse.Namespace) -> Rows:
    rows: Rows = []
    root = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    async with real_servers(root) as (prosody, synapse):
        t0 = time.perf_counter()
        async with bridged_group(root, prosody, synapse, args.members) as (clients, gid):
            rows.append((f"set up the bridge and a {args.members}-member group "
                         f"({args.members // 2} XMPP + {args.members - args.members // 2} "
                         "Matrix)", f"{time.perf_counter() - t0:.1f} s"))
            x_sender, m_sender = clients[0], clients[1]
            x_recv, m_recv = Receiver(clients[2]), Receiver(clients[3])
            x_recv.start()
            m_recv.start()
            try:
                ms = await latency(x_sender, m_recv, gid, args.messages, "x->m")
                rows.append(("latency XMPP -> Matrix via the bridge (ms)", _describe(ms)))
                ms = await latency(m_sender, x_recv, gid, args.messages, "m->x")
                rows.append(("latency Matrix -> XMPP via the bridge (ms)", _describe(ms)))
                await asyncio.sleep(1.0)  # the last latency messages reach everyone
                for r in (x_recv, m_recv):
                    r.drain()
                rate, offered = await throughput([x_sender, m_sender], [m_recv, x_recv],
                                                 gid, args.burst)
                rows.append((f"sustained, {args.members}-member group, 2 x {args.burst} "
                             "x 1 KiB from both networks at once",
                             f"{rate:.1f} msg/s decrypted on both networks (offered by "
                             f"the two senders: {offered:.1f} msg/s)"))
            finally:
                await x_recv.stop()
                await m_recv.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bridge")
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--burst", type=int, default=100)
    args = parser.parse_args(argv)
    if args.members < 4:
        parser.error("--members must be at least 4")
    for name, value in asyncio.run(run(args)):
        print(f"{name:<78} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
