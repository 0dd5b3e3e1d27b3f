"""The receiving half (mls_client/inbound.py): stale messages from before our join are
skipped silently; real rejections are still reported."""

from __future__ import annotations

from pathlib import Path

from mls_client.events import MessageReceived, MessageRejected
from mls_client.settings import WindowSettings

from .helpers import Net, async_test


def _rejections(net: Net, name: str) -> list[MessageRejected]:
    return [e for e in net.events[name] if isinstance(e, MessageRejected)]


@async_test
async def test_messages_from_before_our_join_are_skipped_without_alarm(tmp_path: Path) -> None:
    """RFC 9420 §12.4.3.1: a Welcome gives the joiner the new epoch's secrets only, so an
    application message of an earlier epoch that reaches the joiner later in the stream
    was never its to read: counted, logged as stale, no MessageRejected. A member of
    that epoch who no longer holds its keys still gets the alarm."""
    net = Net(tmp_path)
    try:
        alice, bob = await net.add("alice", "bob")
        (dave,) = await net.add("dave", windows=WindowSettings(max_past_epochs=0))
        (carol,) = await net.add("carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "dave"])
        await net.sync()
        lagging_bob = await bob.group(gid)  # bob's view at epoch 1, as if he were lagging
        await alice.add_members(gid, ["carol"])  # epoch 2: carol joins here
        await net.sync()
        late = lagging_bob.encrypt(b"late from epoch 1")
        assert (await net.ds.submit(gid, 1, late, is_commit=False, sender="bob-dev")).accepted
        await net.sync()

        assert net.received("alice") == [b"late from epoch 1"]  # past-epoch keys kept
        assert net.received("carol") == []
        assert _rejections(net, "carol") == []
        assert carol.stats.messages_before_join == 1
        assert carol.stats.messages_rejected == 0
        assert await carol.store.processed_count("stale") == 1
        assert (await carol.store.group(gid)) is not None

        rejected = _rejections(net, "dave")  # dave was in epoch 1 but dropped its keys
        assert len(rejected) == 1 and "EpochError" in rejected[0].reason
        assert dave.stats.messages_before_join == 0 and dave.stats.messages_rejected == 1
    finally:
        await net.close()


@async_test
async def test_a_forged_message_still_raises_the_alarm_for_a_joiner(tmp_path: Path) -> None:
    """A tampered PrivateMessage of the joiner's own epoch fails AEAD decryption
    (§6.3): that is a real rejection, reported, not a pre-join message."""
    net = Net(tmp_path)
    try:
        alice, bob, carol = await net.add("alice", "bob", "carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob"])
        await net.sync()
        await alice.add_members(gid, ["carol"])
        await net.sync()
        good = (await bob.group(gid)).encrypt(b"genuine")
        forged = good[:-1] + bytes([good[-1] ^ 1])
        assert (await net.ds.submit(gid, 2, forged, is_commit=False,
                                    sender="bob-dev")).accepted
        await net.sync("carol")
        assert net.received("carol") == []
        assert len(_rejections(net, "carol")) == 1
        assert carol.stats.messages_before_join == 0 and carol.stats.messages_rejected == 1
    finally:
        await net.close()


@async_test
async def test_the_creator_and_joiners_record_their_join_epoch(tmp_path: Path) -> None:
    """The group record holds the epoch each client created or joined the group at; a
    later Commit does not move it."""
    net = Net(tmp_path)
    try:
        alice, bob, _carol = await net.add("alice", "bob", "carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob"])
        await net.sync()
        await alice.add_members(gid, ["carol"])
        await net.sync()
        await bob.send(gid, b"hi")
        await net.sync()
        assert [e.data for e in net.events["carol"] if isinstance(e, MessageReceived)] == [b"hi"]
        joined = {n: (await net[n].store.group(gid)) for n in ("alice", "bob", "carol")}
        assert {n: r.joined_epoch for n, r in joined.items() if r is not None} == {
            "alice": 0, "bob": 1, "carol": 2}
        assert all(r is not None and r.epoch == 2 for r in joined.values())
    finally:
        await net.close()


@async_test
async def test_an_external_rejoin_is_a_join(tmp_path: Path) -> None:
    """After recovery by external Commit (§12.4.3.2) the joined epoch is the rejoin's:
    a late message of an epoch before it is skipped silently, like a joiner's."""
    net = Net(tmp_path)
    try:
        alice, bob, carol = await net.add("alice", "bob", "carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        async with carol.store.transaction() as tx:  # carol loses the group's state
            await tx.delete_group(gid)
        carol = await net.reopen("carol")
        await bob.update(gid)  # epoch 2
        lagging_bob = await bob.group(gid)
        assert await carol.recover_group(gid) == 3
        rec = await carol.store.group(gid)
        assert rec is not None and rec.joined_epoch == 3
        await net.sync()
        late = lagging_bob.encrypt(b"late from epoch 2")
        assert (await net.ds.submit(gid, 2, late, is_commit=False, sender="bob-dev")).accepted
        await net.sync()
        assert net.received("alice") == [b"late from epoch 2"]
        assert net.received("carol") == [] and _rejections(net, "carol") == []
        assert carol.stats.messages_before_join == 1
    finally:
        await net.close()


@async_test
async def test_a_removed_members_late_message_is_rejected_like_any_other(
        tmp_path: Path) -> None:
    """Issue 16: bob, removed at epoch 1 -> 2, writes with the epoch-1 keys he kept.
    Carol refuses it (RemovedSenderError) and reports it like every rejection: a
    MessageRejected, a counted drop, the stored state untouched. A late message of
    carol, who is still a member, reaches everyone without an alarm; dave, whose
    application prefers delivery (``windows.accept_removed_senders``), reads both."""
    net = Net(tmp_path)
    try:
        alice, bob, carol = await net.add("alice", "bob", "carol")
        (dave,) = await net.add("dave", windows=WindowSettings(accept_removed_senders=True))
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "carol", "dave"])
        await net.sync()
        saved_bob = await bob.group(gid)  # copies of the epoch-1 state
        lagging_carol = await carol.group(gid)
        await alice.remove_members(gid, ["bob"])  # epoch 2
        await net.sync()
        stored = await carol.store.group(gid)
        assert stored is not None and stored.epoch == 2
        injected = saved_bob.encrypt(b"after my removal")
        late = lagging_carol.encrypt(b"late from carol")
        for payload, sender in ((injected, "bob-dev"), (late, "carol-dev")):
            assert (await net.ds.submit(gid, 1, payload, is_commit=False,
                                        sender=sender)).accepted
        await net.sync()

        rejected = _rejections(net, "carol")
        assert len(rejected) == 1 and rejected[0].reason.startswith("RemovedSenderError")
        assert carol.stats.dropped.get("mls-removed-sender-error") == 1, carol.stats.dropped
        assert carol.stats.messages_rejected == 1 and carol.stats.messages_before_join == 0
        after = await carol.store.group(gid)
        assert after is not None and after.state == stored.state
        assert net.received("alice") == [b"late from carol"]
        assert [r.reason.split(":")[0] for r in _rejections(net, "alice")] == [
            "RemovedSenderError"]
        assert net.received("dave") == [b"after my removal", b"late from carol"]
        assert _rejections(net, "dave") == [] and dave.stats.messages_rejected == 0
    finally:
        await net.close()
