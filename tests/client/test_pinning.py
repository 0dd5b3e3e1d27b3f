"""Trust on first use of signature keys (mls_client.pinning)."""

from __future__ import annotations

from pathlib import Path

from mls_client import MLSClient
from mls_client.events import SignatureKeyChanged

from .helpers import Net, async_test, settings_for


async def _device(net: Net, user: str, device: str, **settings: object) -> MLSClient:
    client = await MLSClient.open(settings_for(net.root, device, **settings), net.transport)
    await client.create_identity(user, f"{user}-{device}")
    await client.publish_key_packages()
    net.clients[device] = client
    net.events[device] = []
    return client


def _key_warnings(net: Net, name: str) -> list[SignatureKeyChanged]:
    return [e for e in net.events[name] if isinstance(e, SignatureKeyChanged)]


@async_test
async def test_a_new_key_for_a_known_identity_is_reported_once(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, _bob, _carol = await net.add("alice", "bob", "carol")
        gid = await alice.create_group()
        await alice.add_members(gid, ["bob", "carol"])
        await net.sync()
        assert not any(_key_warnings(net, n) for n in net.clients)
        # bob's second device: a key nobody has seen for "bob"
        await _device(net, "bob", "bob-laptop")
        await alice.add_members(gid, ["bob"])
        await net.sync()
        for name in ("alice", "carol"):
            warnings = _key_warnings(net, name)
            assert [(w.identity, w.known_keys) for w in warnings] == [("bob", 1)], name
        # the next commit does not repeat it
        await alice.update(gid)
        await net.sync()
        assert len(_key_warnings(net, "carol")) == 1
        await net.agree(gid, ["alice", "bob", "carol", "bob-laptop"])
    finally:
        await net.close()


@async_test
async def test_a_substituted_key_package_is_refused_in_strict_mode(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        (alice,) = await net.add("alice", trust={"new_signature_key": "reject"})
        await net.add("bob")
        gid = await alice.create_group()
        first = await alice.add_members(gid, ["bob"])
        assert first.added_clients == ("bob-dev",)
        # someone publishes KeyPackages claiming to be bob, under another key
        await _device(net, "bob", "impostor")
        result = await alice.add_members(gid, ["bob"])
        assert result.added_clients == ()  # the impostor is refused, the real bob is in
        events = await alice.sync()
        warnings = [e for e in events if isinstance(e, SignatureKeyChanged)]
        assert [(w.identity, w.known_keys) for w in warnings] == [("bob", 1)]
        assert len(await alice.members(gid)) == 2
        # refused keys are not pinned: the warning repeats on the next attempt
        await alice.add_members(gid, ["bob"])
        again = [e for e in await alice.sync() if isinstance(e, SignatureKeyChanged)]
        assert len(again) == 1 and len(await alice.members(gid)) == 2
    finally:
        await net.close()
