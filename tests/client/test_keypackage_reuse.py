"""A KeyPackage claimed twice (a transport without atomic claims, like XMPP PEP): the
joiner joins both groups and replaces its shared leaf keys at once."""

from __future__ import annotations

from pathlib import Path

from mls_client.events import GroupJoined
from mls_client.keypackages import NON_ATOMIC_GRACE
from transports.base import ClaimedKeyPackage
from transports.local import LocalDeliveryService

from .helpers import Net, async_test


class _DoubleClaim:
    """Hands the first KeyPackage claimed for a user out once more, as two adders
    fetching one PEP item before its owner retracts it would get."""

    atomic_claims = False

    def __init__(self, inner: LocalDeliveryService) -> None:
        self._inner = inner
        self._last: dict[str, list[ClaimedKeyPackage]] = {}

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def claim_user_key_packages(self, user_id: str, *, group_id: bytes | None = None
                                      ) -> list[ClaimedKeyPackage]:
        if user_id in self._last:
            return self._last.pop(user_id)
        claimed = await self._inner.claim_user_key_packages(user_id, group_id=group_id)
        self._last[user_id] = claimed
        return claimed


@async_test
async def test_a_key_package_claimed_twice_joins_both_groups(tmp_path: Path) -> None:
    net = Net(tmp_path)
    net.transport = _DoubleClaim(net.ds)  # type: ignore[assignment]
    try:
        alice, bob, carol = await net.add("alice", "bob", "carol")
        g1 = await alice.create_group()
        g2 = await carol.create_group()
        first = await alice.add_members(g1, ["bob"])
        second = await carol.add_members(g2, ["bob"])
        assert first.added_clients == second.added_clients == ("bob-dev",)
        await net.sync()  # bob joins both, then self-updates in both (housekeeping)
        joined = [e for e in net.events["bob"] if isinstance(e, GroupJoined)]
        assert {e.group_id for e in joined} == {g1, g2}
        await net.sync()
        for gid, other in ((g1, "alice"), (g2, "carol")):
            assert await bob.epoch(gid) == await net[other].epoch(gid) == 2
            leaf = [m for m in await bob.members(gid) if m.credential.identity == b"bob"]
            assert len(leaf) == 1
        keys = {(await bob.group(g)).tree.leaf((await bob.group(g)).own_leaf_index)
                .encryption_key for g in (g1, g2)}  # type: ignore[union-attr]
        assert len(keys) == 2  # the shared leaf keys were replaced
        await alice.send(g1, b"one")
        await carol.send(g2, b"two")
        await net.sync()
        assert net.received("bob") == [b"one", b"two"]
        # the used KeyPackage is kept only for the grace period
        stored = [kp for kp in await bob.store.key_packages() if kp.used and not kp.last_resort]
        assert len(stored) == 1 and stored[0].used_at is not None
        await bob._pool().maintain(stored[0].used_at + NON_ATOMIC_GRACE - 1)
        assert stored[0].ref in {kp.ref for kp in await bob.store.key_packages()}
        await bob._pool().maintain(stored[0].used_at + NON_ATOMIC_GRACE)
        assert stored[0].ref not in {kp.ref for kp in await bob.store.key_packages()}
    finally:
        await net.close()


@async_test
async def test_atomic_transports_delete_a_used_key_package_at_once(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob = await net.add("alice", "bob")
        g1 = await alice.create_group()
        await alice.add_members(g1, ["bob"])
        await net.sync()
        assert not [kp for kp in await bob.store.key_packages() if kp.used]
        assert await bob.epoch(g1) == 1  # no self-update after an ordinary join
    finally:
        await net.close()
