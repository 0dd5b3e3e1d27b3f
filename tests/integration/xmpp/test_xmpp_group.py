"""MLSClient flows over a real Prosody (XEP-0045 rooms, PEP KeyPackages, MAM catch-up):
the scenarios of tests/client/test_scenarios.py, over XMPP."""

from __future__ import annotations

import asyncio
from pathlib import Path

from slixmpp import JID

from mls_client.events import CommitProcessed, GroupJoined, RemovedFromGroup
from tests.servers.prosody import ProsodyServer
from transports.base import MessageKind
from transports.xmpp.plugin import MUC_OWNER_NS
from transports.xmpp.transport import room_localpart

from .helpers import XNet, xmpp_test


@xmpp_test
async def test_four_accounts_six_devices_full_flow(prosody: ProsodyServer,
                                                   tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice.phone", "alice.laptop", "bob.phone", "bob.laptop", "carol",
                      "dave")
        alice = net["alice.phone"]
        gid = await alice.create_group(name="team")
        added = await alice.add_members(gid, [net.user("alice"), net.user("bob"),
                                              net.user("carol")])
        assert added.missing_users == ()
        assert set(added.added_clients) == {net.jid(n) for n in (
            "alice.laptop", "bob.phone", "bob.laptop", "carol")}
        for name in ("alice.laptop", "bob.phone", "bob.laptop", "carol"):
            await net.joined(name, gid)
        await net.settle()
        for name in ("alice.laptop", "bob.phone", "bob.laptop", "carol"):
            assert any(isinstance(e, GroupJoined) for e in net.events[name]), name
        members = ["alice.phone", "alice.laptop", "bob.phone", "bob.laptop", "carol"]
        await net.agree(gid, members)

        # application messages both ways, seen by every other device exactly once
        await net["bob.laptop"].send(gid, b"from bob's laptop")
        await net["carol"].send(gid, b"from carol")
        await alice.send(gid, b"from alice's phone")
        await net.settle()
        for name in members:
            got = net.received(name, gid)
            assert len(got) == len(set(got)), name
            expected = {b"from bob's laptop", b"from carol", b"from alice's phone"}
            own = {"bob.laptop": b"from bob's laptop", "carol": b"from carol",
                   "alice.phone": b"from alice's phone"}.get(name)
            assert set(got) == expected - {own}, name

        # a later add, a self-update, a removal: everyone follows
        await net["carol"].add_members(gid, [net.user("dave")])
        await net.joined("dave", gid)
        await net.settle()
        members.append("dave")
        await net["bob.phone"].update(gid)
        await net.settle()
        await net.agree(gid, members)
        await net["dave"].remove_members(gid, [net.user("carol")])
        await net.settle()
        assert any(isinstance(e, RemovedFromGroup) for e in net.events["carol"])
        members.remove("carol")
        await net["dave"].send(gid, b"carol is gone")
        await net.settle()
        assert b"carol is gone" in net.received("alice.laptop", gid)
        assert b"carol is gone" not in net.received("carol", gid)
        await net.agree(gid, members)
        assert await alice.epoch(gid) == 4
        commits = [e for e in net.events["bob.laptop"] if isinstance(e, CommitProcessed)]
        assert len(commits) == 3
    finally:
        await net.close()


@xmpp_test
async def test_stream_items_name_the_authenticated_sender(prosody: ProsodyServer,
                                                          tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob.tablet")
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.user("bob")])
        await net.joined("bob.tablet", gid)
        await net["bob.tablet"].send(gid, b"hi")
        bob_t = net.transports["bob.tablet"]
        items = await net.transports["alice"].fetch(net.transports["alice"].client_id)
        group_items = [i for i in items if i.kind is MessageKind.GROUP]
        assert group_items[-1].sender == bob_t.client_id
        assert group_items[-1].sender_identity == bob_t.user_id
        assert group_items[0].sender == net.transports["alice"].client_id
        welcome = [i for i in await bob_t.fetch(bob_t.client_id)
                   if i.kind is MessageKind.WELCOME]
        assert len(welcome) == 1
        assert welcome[0].sender_identity == net.transports["alice"].user_id
        assert welcome[0].group_id == gid
    finally:
        await net.close()


@xmpp_test
async def test_room_is_persistent_members_only_non_anonymous(prosody: ProsodyServer,
                                                             tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob")
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.user("bob")])
        t = net.transports["alice"]
        room = t.room_jid(gid)
        assert room.startswith(room_localpart(gid) + "@")
        form = await t.xmpp.plugin["xep_0045"].get_room_config(room)
        values = {f["var"]: f["value"]
                  for f in form.get_fields().values()}  # type: ignore[no-untyped-call]
        assert values["muc#roomconfig_persistentroom"] is True
        assert values["muc#roomconfig_membersonly"] is True
        assert values["muc#roomconfig_whois"] == "anyone"
        assert MUC_OWNER_NS  # the config came from the owner namespace
        members = await t.plugin.affiliations(JID(room), "member")
        assert net.jid("bob").split("/")[0] in members
        # a stranger may not read the archive of the members-only room
        stranger = await net.transport("eve")
        try:
            from transports.xmpp.plugin import XmppError
            try:
                await stranger.plugin.mam_page(room)
            except XmppError as exc:
                assert exc.condition == "forbidden"
            else:
                raise AssertionError("a non-member read the room archive")
        finally:
            await stranger.close()
    finally:
        await net.close()


@xmpp_test
async def test_offline_member_catches_up_via_mam(prosody: ProsodyServer,
                                                 tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob", "carol", "dave")
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.user("bob"), net.user("carol")])
        await net.joined("bob", gid)
        await net.joined("carol", gid)
        await net.settle()
        await net.close_one("carol")  # carol's device goes offline
        await net["bob"].send(gid, b"while carol is away 1")
        await net["alice"].update(gid)
        await net["bob"].update(gid)
        await net["alice"].add_members(gid, [net.user("dave")])
        await net.joined("dave", gid)
        await net["dave"].send(gid, b"while carol is away 2")
        await net.settle("alice", "bob", "dave")
        carol = await net.add_existing("carol")
        await net.settle()
        assert await carol.epoch(gid) == 4
        assert net.received("carol", gid) == [b"while carol is away 1",
                                              b"while carol is away 2"]
        await net.agree(gid, ["alice", "bob", "carol", "dave"])
    finally:
        await net.close()


@xmpp_test
async def test_concurrent_commits_end_in_one_epoch(prosody: ProsodyServer,
                                                   tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob", "carol")
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.user("bob"), net.user("carol")])
        await net.joined("bob", gid)
        await net.joined("carol", gid)
        await net.settle()
        for _ in range(3):
            await asyncio.gather(net["alice"].update(gid), net["bob"].update(gid),
                                 net["carol"].update(gid))
            await net.settle()
        await net.agree(gid, ["alice", "bob", "carol"])
        assert await net["alice"].epoch(gid) == 1 + 9
        await net["carol"].send(gid, b"after the races")
        await net.settle()
        assert b"after the races" in net.received("alice", gid)
        assert b"after the races" in net.received("bob", gid)
    finally:
        await net.close()


@xmpp_test
async def test_server_restart_loses_nothing(prosody: ProsodyServer, tmp_path: Path) -> None:
    net = XNet(prosody, tmp_path)
    try:
        await net.add("alice", "bob", "carol")
        gid = await net["alice"].create_group()
        await net["alice"].add_members(gid, [net.user("bob"), net.user("carol")])
        await net.joined("bob", gid)
        await net.joined("carol", gid)
        await net.settle()
        await net["bob"].send(gid, b"before restart")
        await asyncio.to_thread(prosody.restart)
        await net["alice"].send(gid, b"after restart")  # waits until reconnected
        await net["carol"].update(gid)
        await net["bob"].send(gid, b"after restart 2")
        # a send while the server is down completes once it is back
        await asyncio.to_thread(prosody.stop)
        pending = asyncio.ensure_future(net["carol"].send(gid, b"sent during the outage"))
        await asyncio.sleep(0.5)
        assert not pending.done()
        await asyncio.to_thread(prosody.start)
        await asyncio.wait_for(pending, 30)
        await net.settle()
        assert net.received("carol", gid) == [b"before restart", b"after restart",
                                              b"after restart 2"]
        assert net.received("alice", gid) == [b"before restart", b"after restart 2",
                                              b"sent during the outage"]
        await net.agree(gid, ["alice", "bob", "carol"])
    finally:
        if not prosody.running:  # keep the session's server up for the other tests
            await asyncio.to_thread(prosody.start)
        await net.close()
