"""The room policy through MLSClient: one policy in the group, enforced by every client."""

from __future__ import annotations

from pathlib import Path

import pytest

from mls_client.events import MessageRejected
from mls_core.errors import PolicyError
from mls_core.room_policy import Role, RoomPolicy

from .helpers import Net, async_test


@async_test
async def test_policy_is_enforced_by_every_client(tmp_path: Path) -> None:
    net = Net(tmp_path)
    # a room: the first *valid* Commit wins, so a rejected one cannot block the group
    # (an ordering server that accepts the first Commit would be stuck on it)
    net.ds.ordering = "room"
    try:
        alice, bob, carol, _dave, erin = await net.add("alice", "bob", "carol", "dave", "erin")
        gid = await alice.create_group(policy=RoomPolicy.standard([b"alice"]))
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        assert await bob.policy(gid) == RoomPolicy.standard([b"alice"])
        epoch = await bob.epoch(gid)
        with pytest.raises(PolicyError, match=r"bob \(member\) may not add"):
            await bob.add_members(gid, ["dave"])
        assert await bob.epoch(gid) == epoch
        # a client that skips the check: its Commit is rejected by everyone else
        bob._ctx.config.commit_policy = None
        await bob.remove_members(gid, ["carol"])
        events = await net.sync("alice", "carol")
        for name in ("alice", "carol"):
            rejected = [e for e in events[name] if isinstance(e, MessageRejected)]
            assert len(rejected) == 1 and "PolicyError" in rejected[0].reason
        assert await alice.epoch(gid) == await carol.epoch(gid) == epoch
        assert await alice.epoch_authenticator(gid) == await carol.epoch_authenticator(gid)
        # the admin promotes carol; her add is then accepted everywhere
        await alice.set_policy(gid, RoomPolicy.build({b"alice": Role.ADMIN,
                                                      b"carol": Role.MODERATOR}))
        await net.sync("carol")
        await carol.add_members(gid, ["erin"])
        await net.sync("alice", "carol", "erin")
        await net.agree(gid, ["alice", "carol", "erin"])
        assert (await erin.policy(gid)) == (await alice.policy(gid))
    finally:
        await net.close()
