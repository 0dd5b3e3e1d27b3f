"""MLS over XMPP on a real Prosody (loopback): latency, throughput, mass add.

``python3 -m benchmarks.xmpp [--members 10] [--messages 100] [--adds 50]``

Starts a private Prosody (``tests/servers/prosody.py``: loopback, free port, temp data
dir; ``scripts/install_prosody.sh`` installs it), then, with one
:class:`~mls_client.MLSClient` + :class:`~transports.xmpp.transport.XmppDeliveryTransport`
per account, all in this process:

* **latency** — a ``--members`` group; the creator sends ``--messages`` 1 KiB messages
  one at a time, each when the previous one was decrypted by a receiving member that
  runs its event loop; reported: send → decrypt at the receiver (median, p95, max);
* **throughput** — the creator sends ``--messages`` more back to back; reported:
  messages per second until the receiver decrypted the last one, and the sender alone;
* **mass add** — ``--adds`` new accounts (KeyPackages already published) added by one
  ``add_members`` call: claiming their KeyPackages (PEP), the Commit and its room
  reflection, the Welcomes; then the time until every new member processed its Welcome.

Timing is time.perf_counter; the machine is shared, so expect variance of a third.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mls_client import MLSClient, Settings
from mls_client.events import ClientEvent, MessageReceived
from mls_client.settings import KeyPackageSettings
from tests.servers.prosody import ProsodyServer, prosody_available
from transports.xmpp.settings import XmppSettings
from transports.xmpp.transport import XmppDeliveryTransport

PASSWORD = "bench-pw"


class Bench:
    def __init__(self, server: ProsodyServer, root: Path) -> None:
        self.server = server
        self.root = root
        self.clients: list[MLSClient] = []
        self.transports: list[XmppDeliveryTransport] = []

    async def account(self, name: str, *, publish: bool = True) -> MLSClient:
        await asyncio.to_thread(self.server.register, name, PASSWORD)
        transport = await XmppDeliveryTransport.connect(XmppSettings(
            jid=f"{name}@{self.server.domain}/bench", password=PASSWORD,  # type: ignore[arg-type]
            host="127.0.0.1", port=self.server.port, muc_service=self.server.muc_domain,
            allow_plaintext=True))
        settings = Settings(state_dir=self.root / name, poll_interval=0.02,
                            key_packages=KeyPackageSettings(pool_size=2, threshold=1))
        client = await MLSClient.open(settings, transport)
        await client.create_identity(transport.user_id, transport.client_id)
        if publish:
            await client.publish_key_packages()
        self.clients.append(client)
        self.transports.append(transport)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for transport in self.transports:
            await transport.close()


async def _until_joined(clients: list[MLSClient], group_id: bytes) -> None:
    pending = list(clients)
    while pending:
        for client in list(pending):
            await client.sync(housekeeping=False)
            if any(g.group_id == group_id and g.active for g in await client.groups()):
                pending.remove(client)
        await asyncio.sleep(0.01)


async def run(args: argparse.Namespace) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    server = ProsodyServer(Path(tempfile.mkdtemp(prefix="bench-prosody-")))
    server.start()
    bench = Bench(server, Path(tempfile.mkdtemp(prefix="bench-xmpp-")))
    try:
        t0 = time.perf_counter()
        members = [await bench.account(f"m{i}") for i in range(args.members)]
        creator, receiver = members[0], members[1]
        gid = await creator.create_group()
        await creator.add_members(gid, [m.user_id for m in members[1:]])
        await _until_joined(members[1:], gid)
        rows.append((f"set up {args.members} accounts and the group",
                     f"{time.perf_counter() - t0:.2f} s"))

        arrived: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()

        async def on_event(event: ClientEvent) -> None:
            if isinstance(event, MessageReceived):
                arrived.put_nowait((event.data, time.perf_counter()))

        stop = asyncio.Event()
        loop_task = asyncio.ensure_future(receiver.run(on_event, stop))
        body = b"x" * 1024
        latencies = []
        for i in range(args.messages):
            start = time.perf_counter()
            await creator.send(gid, body + str(i).encode())
            data, at = await asyncio.wait_for(arrived.get(), 30)
            assert data == body + str(i).encode()
            latencies.append((at - start) * 1000)
        latencies.sort()
        rows.append((f"latency send->decrypt, {args.members}-member room (ms)",
                     f"median {statistics.median(latencies):.1f}, "
                     f"p95 {latencies[int(0.95 * (len(latencies) - 1))]:.1f}, "
                     f"max {latencies[-1]:.1f}"))

        start = time.perf_counter()
        for i in range(args.messages):
            await creator.send(gid, body + b"t" + str(i).encode())
        sent = time.perf_counter()
        for _ in range(args.messages):
            await asyncio.wait_for(arrived.get(), 60)
        done = time.perf_counter()
        rows.append((f"throughput, {args.messages} x 1 KiB back to back",
                     f"{args.messages / (done - start):.0f} msg/s decrypted "
                     f"(sender alone {args.messages / (sent - start):.0f} msg/s)"))
        stop.set()
        await loop_task

        joiners = [await bench.account(f"j{i}") for i in range(args.adds)]
        start = time.perf_counter()
        result = await creator.add_members(gid, [j.user_id for j in joiners])
        committed = time.perf_counter()
        assert not result.missing_users, result.missing_users
        await _until_joined(joiners, gid)
        joined = time.perf_counter()
        rows.append((f"add {args.adds} members in one Commit (add_members)",
                     f"{committed - start:.2f} s"))
        rows.append((f"... until all {args.adds} processed their Welcome",
                     f"{joined - start:.2f} s"))
        epoch = await creator.epoch(gid)
        auth = {await c.epoch_authenticator(gid) for c in [creator, *joiners[:3]]}
        assert len(auth) == 1, "members disagree"
        rows.append(("group size / epoch after the mass add",
                     f"{len(await creator.members(gid))} / {epoch}"))
    finally:
        await bench.close()
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
        shutil.rmtree(bench.root, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--adds", type=int, default=50)
    args = parser.parse_args()
    if args.members < 2:
        parser.error("--members must be at least 2")
    if not prosody_available():
        sys.exit("prosody is not installed (scripts/install_prosody.sh)")
    rows = asyncio.run(run(args))
    width = max(len(r[0]) for r in rows)
    print(f"MLS over XMPP, Prosody on 127.0.0.1 ({args.members} members, "
          f"{args.messages} messages, {args.adds} adds)")
    print("-" * (width + 40))
    for what, value in rows:
        print(f"{what:<{width}}  {value}")


if __name__ == "__main__":
    main()
