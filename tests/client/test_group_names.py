"""Shared group names (issue 17 item 3): the name travels in the GroupContext
(mls_core.extensions.GroupName), so every member resolves it; ambiguous references are
errors that list the candidates."""

from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import pytest

from mls_cli.main import cmd_groups
from mls_client import AmbiguousGroupError, MLSClient, NotFoundError
from mls_core.errors import PolicyError, UsageError, ValidationError
from mls_core.room_policy import RoomPolicy

from .helpers import Net, async_test, settings_for
from .test_cli import User


@async_test
async def test_invitees_see_and_use_the_shared_name(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob, carol = await net.add("alice", "bob", "carol")
        team = await alice.create_group(name="team", topic="launch")
        await alice.add_members(team, ["bob", "carol"])
        await net.sync()
        assert await bob.resolve_group("team") == team
        named = await bob.group_name(team)
        assert named is not None and (named.name_text, named.topic_text) == ("team", "launch")
        (summary,) = await bob.groups()
        assert (summary.name, summary.topic, summary.local_name) == ("team", "launch", None)
        assert summary.users == ("alice", "bob", "carol") and summary.devices == 3
        await bob.send(await bob.resolve_group("team"), b"hi from bob")
        await net.sync()
        assert net.received("carol", team) == [b"hi from bob"]

        # a rename by Commit reaches everyone; the topic is kept unless given
        event = await carol.rename_group(team, "launch-team")
        assert event.epoch == 2
        await net.sync()
        assert await alice.resolve_group("launch-team") == team
        renamed = await alice.group_name(team)
        assert renamed is not None and renamed.topic_text == "launch"
        with pytest.raises(NotFoundError, match="no group named 'team'"):
            await alice.resolve_group("team")
        with pytest.raises(UsageError, match="already named"):
            await alice.rename_group(team, "launch-team")
        with pytest.raises(ValidationError, match="1-64"):
            await alice.rename_group(team, "x" * 65)
    finally:
        await net.close()


@async_test
async def test_an_ambiguous_name_lists_the_candidates(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob, carol = await net.add("alice", "bob", "carol")
        first = await alice.create_group(name="team")
        await alice.add_members(first, ["carol"])
        second = await bob.create_group(name="team")
        await bob.add_members(second, ["carol"])
        await net.sync()
        with pytest.raises(AmbiguousGroupError) as info:
            await carol.resolve_group("team")
        message = str(info.value)
        assert "the group name 'team' fits 2 groups" in message
        assert first.hex()[:16] in message and second.hex()[:16] in message
        assert "[alice, carol]" in message and "[bob, carol]" in message
        assert set(info.value.candidates) == {first, second}
        # a unique id prefix still works, and so does the full id
        assert await carol.resolve_group(second.hex()[:8]) == second
        assert await carol.resolve_group(first.hex().upper()) == first
        # an ambiguous prefix is an error listing the groups too
        common = next(n for n in range(64) if first.hex()[n] != second.hex()[n])
        if common:
            with pytest.raises(AmbiguousGroupError, match="id prefix"):
                await carol.resolve_group(first.hex()[:common])
        with pytest.raises(NotFoundError, match="empty"):
            await carol.resolve_group("")
        # our own groups may not share a name
        with pytest.raises(UsageError, match="already exists"):
            await alice.create_group(name="team")
        # local names are a fallback
        solo = await alice.create_group(local_name="mine")
        assert await alice.resolve_group("mine") == solo
        assert (await alice.group_name(solo)) is None
    finally:
        await net.close()


@async_test
async def test_the_room_policy_decides_who_renames(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, bob = await net.add("alice", "bob")
        gid = await alice.create_group(name="ops", policy=RoomPolicy.standard([b"alice"]))
        await alice.add_members(gid, ["bob"])
        await net.sync()
        with pytest.raises(PolicyError, match="bob"):
            await bob.rename_group(gid, "bobs")
        await alice.rename_group(gid, "ops2", "pager duty")
        await net.sync()
        assert await bob.resolve_group("ops2") == gid
        assert await bob.policy(gid) == RoomPolicy.standard([b"alice"])
    finally:
        await net.close()


@async_test
async def test_groups_lists_names_users_and_devices(tmp_path: Path) -> None:
    net = Net(tmp_path)
    try:
        alice, _ = await net.add("alice", "bob")
        phone = await MLSClient.open(settings_for(net.root, "bob-phone"), net.transport)
        net.clients["bob-phone"], net.events["bob-phone"] = phone, []
        await phone.create_identity("bob", "bob-phone")
        await phone.publish_key_packages()
        gid = await alice.create_group(name="team", topic="launch")
        await alice.add_members(gid, ["bob"])
        out = io.StringIO()
        await cmd_groups(alice, argparse.Namespace(all=False), out)
        assert out.getvalue() == (f"{gid.hex()}  team  epoch 1  2 users/3 devices  "
                                  "alice, bob (2 devices)  topic: launch\n")
    finally:
        await net.close()


def test_cli_names_groups_and_recover(tmp_path: Path) -> None:
    alice, bob = User(tmp_path, "alice"), User(tmp_path, "bob")
    alice("identity", "create", "alice")
    bob("identity", "create", "bob")
    gid = alice("group", "create", "--name", "team", "--topic", "plans").stdout.strip()
    alice("invite", "team", "bob")
    assert bob("send", "team", "hello").stdout.startswith(f"sent to team ({gid[:16]})")
    assert re.fullmatch(r"\[team\] epoch 1 bob: \[\w{8}\] hello", alice("read").stdout.strip())
    listed = bob("groups").stdout.strip()
    assert listed == f"{gid}  team  epoch 1  2 users/2 devices  alice, bob  topic: plans"
    renamed = bob("group", "rename", gid[:8], "crew")
    assert renamed.stdout.strip() == f"epoch 2: group {gid[:16]} is named 'crew'"
    assert alice("groups").stdout.split()[1] == "crew"
    bad = alice("group", "rename", "crew", "a\x1bb", ok=False)
    assert bad.returncode == 1 and "control character" in bad.stderr
    recovered = bob("recover", "crew")
    assert recovered.stdout.strip().startswith(f"rejoined {gid[:16]} at epoch 3")
    unknown = bob("recover", "nosuch", ok=False)
    assert "give the full group id" in unknown.stderr
