"""Unit tests of the room policy → MUC affiliation mapping and of the choice of the
member that commits the removal of a kicked/banned user (transports/xmpp/plugin.py)."""

from __future__ import annotations

from mls_client.room_access import may_remove
from mls_client.xmpp_rights import desired_affiliations, remover_index
from mls_core.credentials import Credential
from mls_core.events import Member
from mls_core.room_policy import Action, Role, RoomPolicy

ALICE = b"xmpp:alice@example.org"
BOB = b"xmpp:Bob@Example.org"
CAROL = b"xmpp:carol@example.org"
EVE = b"xmpp:eve@example.org"
MATRIX = b"matrix:@root:example.org"


def _member(index: int, identity: bytes) -> Member:
    return Member(index, Credential.basic(identity), b"k%d" % index)


def _policy(**rules: Role) -> RoomPolicy:
    return RoomPolicy.build({ALICE: Role.MODERATOR, BOB: Role.ADMIN, EVE: Role.BANNED,
                             MATRIX: Role.ADMIN},
                            rules={Action[k.upper()]: v for k, v in rules.items()})


def test_roles_map_to_affiliations_and_other_networks_are_ignored() -> None:
    wanted = desired_affiliations(_policy(), [ALICE, BOB, CAROL, MATRIX])
    assert wanted == {"alice@example.org": "admin", "bob@example.org": "owner",
                      "carol@example.org": "member", "eve@example.org": "outcast"}


def test_a_banned_member_becomes_an_outcast() -> None:
    policy = RoomPolicy.build({BOB: Role.ADMIN, CAROL: Role.BANNED})
    assert desired_affiliations(policy, [BOB, CAROL])["carol@example.org"] == "outcast"


def test_the_lowest_index_member_with_the_remove_right_commits() -> None:
    staying = [_member(0, ALICE), _member(1, CAROL), _member(2, BOB)]
    assert remover_index(staying, _policy(remove=Role.ADMIN)) == 2
    assert remover_index(staying, _policy(remove=Role.MODERATOR)) == 0
    assert remover_index(staying, None) == 0  # no policy: anyone may


def test_only_a_member_on_xmpp_commits_the_removal() -> None:
    staying = [_member(0, MATRIX), _member(1, CAROL), _member(2, BOB)]
    assert remover_index(staying, _policy(remove=Role.MEMBER)) == 1
    assert remover_index([_member(0, MATRIX)], None) is None


def test_nobody_commits_when_nobody_may_remove() -> None:
    staying = [_member(0, ALICE), _member(1, CAROL)]
    assert remover_index(staying, _policy(remove=Role.NOBODY)) is None
    assert remover_index(staying, _policy(remove=Role.ADMIN)) is None
    assert not may_remove(_policy(remove=Role.MEMBER), EVE)  # banned never may


def test_the_bridge_account_is_never_given_a_policy_affiliation() -> None:
    bridge = b"xmpp:Bridge@example.org"
    banned = RoomPolicy.build({BOB: Role.ADMIN, bridge: Role.BANNED})
    for policy in (banned, _policy()):
        wanted = desired_affiliations(policy, [BOB, bridge, CAROL],
                                      bridge="bridge@Example.org")
        assert "bridge@example.org" not in wanted
        assert wanted["bob@example.org"] == "owner"
    # without the setting the same policy would outcast it
    assert desired_affiliations(banned, [BOB])["bridge@example.org"] == "outcast"
