"""The group-name GroupContext extension (mls_core.extensions.GroupName; RFC 9420 §12.1.7,
§13.4, §17.3)."""

from __future__ import annotations

import pytest

from mls_core.ciphersuite import get_suite
from mls_core.config import GroupConfig
from mls_core.credentials import Credential
from mls_core.errors import PolicyError, ValidationError
from mls_core.extensions import (
    GROUP_NAME_EXTENSION,
    MAX_GROUP_NAME,
    Extension,
    GroupName,
    with_extension,
)
from mls_core.group import Group
from mls_core.key_package import create_key_package, default_capabilities
from mls_core.proposals import Add, GroupContextExtensions
from mls_core.room_policy import ROOM_POLICY_EXTENSION, RoomPolicy, RoomPolicyEnforcer

NOW = 1_800_000_000
SUITE = get_suite(1)
CAPS = default_capabilities(extensions=[ROOM_POLICY_EXTENSION, GROUP_NAME_EXTENSION])


def test_codec_round_trip_and_wire_format() -> None:
    value = GroupName.build("team", "plans for Q3")
    # struct { opaque name<V>; opaque topic<V>; }: one-byte varint lengths here
    assert value.encode() == b"\x04team\x0cplans for Q3"
    assert GroupName.from_extensions([value.extension()]) == value
    assert value.extension().extension_type == GROUP_NAME_EXTENSION == 0xF0A2
    assert (value.name_text, value.topic_text) == ("team", "plans for Q3")
    assert GroupName.from_extensions([Extension(0xF0A1, b"")]) is None
    assert GroupName.build("équipe").encode()[1:] == "équipe".encode() + b"\x00"


@pytest.mark.parametrize(("name", "topic", "error"), [
    ("", "", "name must be 1-64"),
    ("x" * (MAX_GROUP_NAME + 1), "", "name must be 1-64"),
    ("é" * 33, "", "name must be 1-64"),  # 66 bytes
    ("ok", "y" * 513, "topic must be 0-512"),
    ("a\x1b[2Jb", "", "name holds a control character"),
    ("a\nb", "", "name holds a control character"),
    ("ok", "line\x00", "topic holds a control character"),
    ("ok", "two\nlines", "topic holds a control character"),
    ("admin\u202egnp.exe", "", "name holds a control character"),
    (" team", "", "leading or trailing spaces"),
])
def test_bounds_and_characters(name: str, topic: str, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        GroupName.build(name, topic)
    with pytest.raises(ValidationError, match=error):
        GroupName.from_extensions([GroupName(name.encode(), topic.encode()).extension()])


def test_malformed_extension_data() -> None:
    for data in (b"", b"\x04tea", b"\x04team\x00\x00", b"\x02\xff\xfe\x00"):
        with pytest.raises(ValidationError, match="group name"):
            GroupName.from_extensions([Extension(GROUP_NAME_EXTENSION, data)])


def test_with_extension_replaces_in_place_or_appends() -> None:
    a, b = Extension(0xF0A1, b"p"), Extension(5, b"s")
    named = with_extension((a, b), GroupName.build("x").extension())
    assert [e.extension_type for e in named] == [0xF0A1, 5, GROUP_NAME_EXTENSION]
    renamed = with_extension(named, GroupName.build("y").extension())
    assert [e.extension_type for e in renamed] == [0xF0A1, 5, GROUP_NAME_EXTENSION]
    assert GroupName.from_extensions(renamed) == GroupName.build("y")


def _pair(policy: RoomPolicy) -> tuple[Group, Group]:
    cfg = GroupConfig(commit_policy=RoomPolicyEnforcer())
    alice_sig, bob_sig = (SUITE.generate_signature_key_pair()[0] for _ in range(2))
    alice = Group.create(1, Credential.basic(b"alice"), alice_sig, now=NOW, capabilities=CAPS,
                         extensions=[policy.extension(), GroupName.build("team").extension()],
                         config=cfg)
    kp, priv = create_key_package(SUITE, Credential.basic(b"bob"), bob_sig, now=NOW,
                                  capabilities=CAPS)
    result = alice.commit([Add(kp)], now=NOW)
    alice.merge_pending_commit()
    assert result.welcome is not None
    bob = Group.join(result.welcome, kp, priv, config=cfg, now=NOW)
    return alice, bob


def test_rename_by_commit_reaches_every_member_and_keeps_the_policy() -> None:
    policy = RoomPolicy.standard([b"alice"])
    alice, bob = _pair(policy)
    assert GroupName.from_extensions(bob.context.extensions) == GroupName.build("team")
    exts = with_extension(alice.context.extensions, GroupName.build("ops", "on call").extension())
    result = alice.commit([GroupContextExtensions(exts)], now=NOW)
    alice.merge_pending_commit()
    bob.process(result.commit, now=NOW)
    for g in (alice, bob):
        assert GroupName.from_extensions(g.context.extensions) == GroupName.build("ops",
                                                                                  "on call")
        assert RoomPolicy.from_extensions(g.context.extensions) == policy
    # the room policy decides who may change the group context: bob is a member
    exts = with_extension(bob.context.extensions, GroupName.build("mine").extension())
    with pytest.raises(PolicyError, match="bob"):
        bob.commit([GroupContextExtensions(exts)], now=NOW)


def test_a_member_without_the_capability_blocks_the_extension() -> None:
    """§12.1.7: every member must support a GroupContext extension."""
    sig = SUITE.generate_signature_key_pair()[0]
    alice = Group.create(1, Credential.basic(b"alice"), sig, now=NOW, capabilities=CAPS)
    kp, _ = create_key_package(SUITE, Credential.basic(b"old"),
                               SUITE.generate_signature_key_pair()[0], now=NOW)
    alice.commit([Add(kp)], now=NOW)
    alice.merge_pending_commit()
    with pytest.raises(ValidationError):
        alice.commit([GroupContextExtensions((GroupName.build("x").extension(),))], now=NOW)
