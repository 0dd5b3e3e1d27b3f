"""MLS over a real Synapse: message latency and throughput in a 10-member room, and the
time to add 50 members at once (issue "Matrix transport", Performance).

``python3 -m benchmarks.matrix [--members 10] [--messages 30] [--add 50]``

Starts a private Synapse (``scripts/install_synapse.sh`` must have run) on 127.0.0.1 with
a temp data dir, registers the users, and drives real MLSClients over
MatrixDeliveryTransport. Measured with time.perf_counter:

* **latency** — one member sends an application message; time until another member's
  client has decrypted it (its loop syncs as fast as it can), median/p90 over messages;
* **throughput** — one member sends messages back to back (each ``send`` returns once the
  event is in the room timeline); messages/s at the sender, and until a receiver
  has decrypted them all;
* **add** — one ``add_members`` call for N new users (claim N KeyPackages, one Commit,
  invites, the Welcome to N devices), then the time until one of them has joined.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from mls_client import MLSClient, Settings
from mls_client.events import MessageReceived
from mls_client.settings import KeyPackageSettings
from tests.servers.synapse import SynapseServer
from transports.matrix.transport import MatrixDeliveryTransport

PASSWORD = "benchmark-password"


async def _device(root: Path, server: SynapseServer, name: str) -> MLSClient:
    user = server.register(name, PASSWORD)
    transport = await MatrixDeliveryTransport.connect(
        server.url, user, password=PASSWORD, device_id="DEV", long_poll_ms=200,
        journal_path=root / f"{name}.journal")
    client = await MLSClient.open(Settings(
        state_dir=root / name, poll_interval=0.05,
        key_packages=KeyPackageSettings(pool_size=2, threshold=1)), transport)
    await client.create_identity(transport.identity, transport.client_id)
    await client.publish_key_packages()
    return client


async def _wait_for(client: MLSClient, count: int) -> None:
    got = 0
    while got < count:
        got += sum(isinstance(e, MessageReceived) for e in await client.sync())


async def bench(root: Path, server: SynapseServer, members: int, messages: int,
                add: int) -> list[tuple[str, str]]:
    clients = [await _device(root, server, f"m{i}") for i in range(members)]
    sender, receiver = clients[0], clients[1]
    gid = await sender.create_group()
    await sender.add_members(gid, [c.user_id for c in clients[1:]])
    for c in clients[1:]:
        await c.sync()
    rows = []

    lat = []
    for i in range(messages):
        t0 = time.perf_counter()
        await sender.send(gid, f"ping {i}".encode() * 8)
        await _wait_for(receiver, 1)
        lat.append(time.perf_counter() - t0)
    rows.append((f"latency, {members}-member room (median)",
                 f"{statistics.median(lat) * 1000:.1f} ms"))
    rows.append(("latency p90", f"{sorted(lat)[int(0.9 * len(lat))] * 1000:.1f} ms"))

    t0 = time.perf_counter()
    for i in range(messages):
        await sender.send(gid, f"burst {i}".encode() * 8)
    sent = time.perf_counter() - t0
    await _wait_for(receiver, messages)
    total = time.perf_counter() - t0
    rows.append(("throughput at the sender", f"{messages / sent:.1f} msg/s"))
    rows.append(("throughput until received", f"{messages / total:.1f} msg/s"))

    newcomers = [await _device(root, server, f"n{i}") for i in range(add)]
    await sender.sync()
    t0 = time.perf_counter()
    result = await sender.add_members(gid, [c.user_id for c in newcomers])
    added = time.perf_counter() - t0
    assert len(result.added_clients) == add, result
    await newcomers[-1].sync()
    joined = time.perf_counter() - t0
    assert await newcomers[-1].epoch(gid) == await sender.epoch(gid)
    rows.append((f"add {add} members at once (one Commit)", f"{added:.2f} s"))
    rows.append(("... until the last of them has joined", f"{joined:.2f} s"))
    for c in clients + newcomers:
        await c.close()
        await c.transport.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="MLS over a real Synapse")
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--add", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with SynapseServer(root / "synapse") as server:
            rows = asyncio.run(bench(root, server, args.members, args.messages, args.add))
    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
