"""``mls-bridge demo``: a guided tour of MLS groups on a temporary local Delivery Service.

Several clients, each with its own database, form a group, exchange messages, add and
remove members, race two Commits for one epoch, run a second group, and recover one
member's lost state by external Commit. Each step prints the epoch, the members and who
could read what, including a removed member failing to decrypt.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from mls_core.ciphersuite import EXPERIMENTAL_PQ_SUITES
from mls_core.errors import MLSError
from mls_core.group import Group
from transports.base import (
    ClaimedKeyPackage,
    DeliveryTransport,
    IncomingMessage,
    KeyPackageEntry,
    SubmitResult,
)
from transports.local import LocalDeliveryService

from .client import MLSClient
from .events import GroupJoined, MessageReceived, RemovedFromGroup, member_name
from .settings import KeyPackageSettings, Settings
from .store import Store

NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
Out = Callable[[str], None]


class CrossingCommits:
    """A DeliveryTransport wrapper that, once armed with ``n`` (:meth:`arm`), holds the next
    ``n`` Commit submissions until all ``n`` were built and submitted, so they reach the
    service together, as Commits crossing on a network do (RFC 9750: the first wins)."""

    def __init__(self, inner: DeliveryTransport) -> None:
        self._inner = inner
        self._barrier: asyncio.Barrier | None = None
        self._held = 0

    @property
    def idempotent_submit(self) -> bool:
        """As the wrapped transport (transports.base.DeliveryTransport)."""
        return bool(getattr(self._inner, "idempotent_submit", False))

    def arm(self, n: int) -> None:
        self._barrier, self._held = asyncio.Barrier(n), n

    async def submit(self, group_id: bytes, epoch: int, payload: bytes, *,
                     is_commit: bool, sender: str,
                     message_id: str | None = None) -> SubmitResult:
        if is_commit and self._barrier is not None and self._held > 0:
            self._held -= 1
            barrier = self._barrier
            if self._held == 0:
                self._barrier = None
            await asyncio.wait_for(barrier.wait(), timeout=30)
        return await self._inner.submit(group_id, epoch, payload, is_commit=is_commit,
                                         sender=sender, message_id=message_id)

    async def publish_key_packages(self, client_id: str, user_id: str,
                                   entries: Sequence[KeyPackageEntry]) -> None:
        await self._inner.publish_key_packages(client_id, user_id, entries)

    async def key_package_count(self, client_id: str) -> int:
        return await self._inner.key_package_count(client_id)

    async def claim_key_package(self, client_id: str, *,
                                group_id: bytes | None = None) -> ClaimedKeyPackage:
        return await self._inner.claim_key_package(client_id, group_id=group_id)

    async def claim_user_key_packages(self, user_id: str, *, group_id: bytes | None = None
                                      ) -> list[ClaimedKeyPackage]:
        return await self._inner.claim_user_key_packages(user_id, group_id=group_id)

    async def send_welcome(self, client_ids: Sequence[str], welcome: bytes,
                           group_id: bytes, after_position: int | None = None) -> None:
        await self._inner.send_welcome(client_ids, welcome, group_id, after_position)

    async def subscribe(self, client_id: str, group_id: bytes) -> None:
        await self._inner.subscribe(client_id, group_id)

    async def unsubscribe(self, client_id: str, group_id: bytes) -> None:
        await self._inner.unsubscribe(client_id, group_id)

    async def publish_group_info(self, group_id: bytes, epoch: int, group_info: bytes,
                                 ratchet_tree: bytes | None = None) -> None:
        await self._inner.publish_group_info(group_id, epoch, group_info, ratchet_tree)

    async def fetch_group_info(self, group_id: bytes) -> tuple[bytes, bytes | None]:
        return await self._inner.fetch_group_info(group_id)

    def receive(self, client_id: str, after: str | None = None
                ) -> AsyncIterator[IncomingMessage]:
        return self._inner.receive(client_id, after)

    async def fetch(self, client_id: str, after: str | None = None,
                    limit: int = 1000) -> list[IncomingMessage]:
        return await self._inner.fetch(client_id, after, limit)

    async def close(self) -> None:
        await self._inner.close()


class Demo:
    """The clients of the tour and a few printing helpers."""

    def __init__(self, out: Out, root: Path, ds: LocalDeliveryService,
                 suite: int = 1) -> None:
        self.out = out
        self.suite = suite
        self.root = root
        self.ds = CrossingCommits(ds)
        self.clients: dict[str, MLSClient] = {}
        self._step = 0

    def step(self, text: str) -> None:
        self._step += 1
        self.out(f"\n[{self._step}] {text}")

    def say(self, text: str) -> None:
        self.out(f"    {text}")

    async def open(self, name: str) -> MLSClient:
        settings = Settings(state_dir=self.root / name, cipher_suite=self.suite,
                            experimental_pq=self.suite in EXPERIMENTAL_PQ_SUITES,
                            key_packages=KeyPackageSettings(pool_size=4, threshold=2))
        client = await MLSClient.open(settings, self.ds)
        self.clients[name] = client
        return client

    async def create(self, name: str) -> MLSClient:
        client = await self.open(name)
        await client.create_identity(name, f"{name}-phone")
        await client.publish_key_packages()
        return client

    async def show_group(self, who: str, group_id: bytes) -> None:
        group = await self.clients[who].group(group_id)
        names = ", ".join(member_name(m) for m in group.members)
        self.say(f"epoch {group.epoch}; members: {names}")

    async def deliver(self, names: Sequence[str]) -> None:
        """Let each client process its stream; print what it read."""
        for name in names:
            for event in await self.clients[name].sync():
                if isinstance(event, MessageReceived):
                    text = event.data.decode()
                    self.say(f"{name} reads {event.sender}'s message: {text!r}")
                elif isinstance(event, GroupJoined):
                    self.say(f"{name} joined by {event.via} at epoch {event.epoch}")
                elif isinstance(event, RemovedFromGroup):
                    self.say(f"{name} was removed by {event.by} (epoch {event.epoch}); "
                             "the group's secrets are deleted from his database")

    async def agree(self, group_id: bytes, names: Sequence[str]) -> bool:
        auths = {n: await self.clients[n].epoch_authenticator(group_id) for n in names}
        same = len(set(auths.values())) == 1
        first = next(iter(auths.values())).hex()[:16]
        verdict = "all equal" if same else "DIFFERENT"
        self.say(f"epoch authenticators of {', '.join(names)}: {verdict} ({first}...)")
        return same

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


async def run_demo(out: Out = print, *, clients: int = 5, suite: int = 1) -> int:
    """Run the tour on cipher suite ``suite`` (an experimental PQ suite is opted in to);
    0 if every check held."""
    with tempfile.TemporaryDirectory(prefix="mls-bridge-demo-") as tmp:
        root = Path(tmp)
        async with LocalDeliveryService(root / "delivery.sqlite") as ds:
            demo = Demo(out, root, ds, suite)
            try:
                return await _tour(demo, NAMES[:clients])
            finally:
                await demo.close()


async def _tour(demo: Demo, names: Sequence[str]) -> int:
    out = demo.out
    suite = "" if demo.suite == 1 else f", cipher suite {demo.suite}"
    out(f"mls-bridge demo: {len(names)} clients on a local Delivery Service ({demo.root})"
        + suite)
    for name in names:
        await demo.create(name)
    out(f"each of {', '.join(names)} has an identity, 4 KeyPackages and a last-resort one")
    alice, bob, carol, dave = (demo.clients[n] for n in names[:4])
    others = list(names[4:])

    demo.step("alice creates the group 'team'")
    team = await alice.create_group(name="team")
    await demo.show_group("alice", team)

    demo.step("alice adds bob, carol and dave (KeyPackages claimed, Welcome sent)")
    await alice.add_members(team, ["bob", "carol", "dave"])
    await demo.deliver(["bob", "carol", "dave"])
    await demo.show_group("alice", team)

    demo.step("bob says hello")
    await bob.send(team, b"hello team")
    await demo.deliver(["alice", "carol", "dave"])

    demo.step("alice removes dave")
    dave_before = await dave.group(team)  # dave's last state, to show what he can't read
    await alice.remove_members(team, ["dave"])
    await demo.deliver(["bob", "carol", "dave"])
    await demo.show_group("alice", team)

    demo.step("carol writes after dave's removal")
    ciphertext = await carol.send(team, b"dave cannot read this")
    await demo.deliver(["alice", "bob"])
    ok = _removed_cannot_read(demo, dave_before, ciphertext)

    demo.step("bob and carol both commit a self-update at the same epoch")
    demo.ds.arm(2)
    lost_before = bob.stats.commits_lost + carol.stats.commits_lost
    results = await asyncio.gather(bob.update(team), carol.update(team))
    epochs = sorted(r.epoch for r in results)
    lost = bob.stats.commits_lost + carol.stats.commits_lost - lost_before
    demo.say(f"Commits that lost their epoch and were rebuilt: {lost}; accepted Commits "
             f"moved the group to epochs {epochs[0]} and {epochs[1]}")
    await demo.deliver(["alice", "bob", "carol"])
    ok &= await demo.agree(team, ["alice", "bob", "carol"])

    if others:
        demo.step(f"{others[0]} starts a second group 'pair' with carol"
                  + (f" and {', '.join(others[1:])}" if others[1:] else ""))
        first = demo.clients[others[0]]
        pair = await first.create_group(name="pair")
        await first.add_members(pair, ["carol", *others[1:]])
        await demo.deliver(["carol", *others[1:]])
        await carol.send(pair, b"hi from carol, in both groups")
        await demo.deliver([others[0], *others[1:]])
        ok &= await demo.agree(pair, [others[0], "carol", *others[1:]])

    demo.step("carol loses her state of 'team' and rejoins by external Commit")
    carol = await _lose_state(demo, "carol", team)
    epoch = await carol.recover_group(team)
    demo.say(f"carol's stale leaf was removed and she rejoined at epoch {epoch}")
    await demo.deliver(["alice", "bob"])
    await bob.send(team, b"welcome back carol")
    await demo.deliver(["alice", "carol"])
    await demo.show_group("alice", team)
    ok &= await demo.agree(team, ["alice", "bob", "carol"])

    out("\n" + ("demo finished: every check held" if ok else "demo FAILED a check"))
    return 0 if ok else 1


def _removed_cannot_read(demo: Demo, old_state: Group, ciphertext: bytes) -> bool:
    try:
        old_state.process(ciphertext)
    except MLSError as exc:
        demo.say(f"dave (removed) tries with his last state: {type(exc).__name__}: {exc}")
        return True
    demo.say("dave could decrypt a message sent after his removal: FAILED")
    return False


async def _lose_state(demo: Demo, name: str, group_id: bytes) -> MLSClient:
    """Simulate state loss: the client stops, its group state is gone, it restarts."""
    await demo.clients[name].close()
    store = await Store.open(demo.root / name / "client.sqlite")
    async with store.transaction() as tx:
        await tx.delete_group(group_id)
    await store.close()
    return await demo.open(name)
