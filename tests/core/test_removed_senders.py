"""Late application messages from removed members (RFC 9420 §12.4.2, §15.3; issue 16): a member
removed at epoch e may keep epoch e's keys; what it encrypts with them after its removal
must not be read by the others while they still hold epoch e. Members that are still in
the group keep being read late (docs/security.md, "Removed members")."""

from __future__ import annotations

import pytest

from mls_core.errors import RemovedSenderError
from mls_core.events import ApplicationMessage
from mls_core.group import Group
from mls_core.proposals import Add, Remove

from .group_helpers import NOW, SUITES, Client, World, replace_config

suites = pytest.mark.parametrize("suite_id", SUITES)


def _saved(c: Client) -> Group:
    """A copy of ``c``'s state that ignores whatever happens next (a client that kept
    its keys after being removed)."""
    return Group.from_bytes(c.g.to_bytes(), c.config)


def _refused(g: Group, data: bytes, epoch: int, leaf: int) -> None:
    """``g`` refuses ``data`` with RemovedSenderError and keeps its state byte for byte."""
    before = g.to_bytes()
    with pytest.raises(RemovedSenderError) as err:
        g.process(data, now=NOW)
    assert f"epoch {epoch}" in str(err.value) and f"leaf {leaf}" in str(err.value)
    assert g.to_bytes() == before


def _world(**config: object) -> tuple[World, Client]:
    """m0, c1, c2 at epoch 1; c2 is the member to be removed."""
    w = World(1, **config)
    w.add(b"m0", 2)
    return w, w.members[b"c2"]


@suites
def test_a_removed_members_late_message_is_refused(suite_id: int) -> None:
    """The issue's attack: after its removal at epoch 1 -> 2, the victim's saved epoch-1
    state encrypts a new message. The committer (own Commit merged) and the other member
    (Commit processed) refuse it, and their state is unchanged: reloaded with the knob
    on, the same message is still readable (its ratchet key was not consumed)."""
    w = World(suite_id)
    w.add(b"m0", 2)
    victim = w.members[b"c2"]
    leaf = victim.g.own_leaf_index
    saved = _saved(victim)
    w.remove(b"m0", b"c2")
    injected = saved.encrypt(b"written after my removal")
    for name in (b"m0", b"c1"):
        _refused(w.members[name].g, injected, 1, leaf)
    m0 = w.members[b"m0"]
    lenient = Group.from_bytes(m0.g.to_bytes(),
                               replace_config(m0.config, accept_removed_senders=True))
    assert lenient.process(injected, now=NOW) == ApplicationMessage(
        leaf, 1, b"written after my removal")


def test_applications_preferring_delivery_read_it() -> None:
    w, victim = _world(accept_removed_senders=True)
    leaf = victim.g.own_leaf_index
    saved = _saved(victim)
    w.remove(b"m0", b"c2")
    injected = saved.encrypt(b"late")
    for name in (b"m0", b"c1"):
        assert w.members[name].g.process(injected, now=NOW) == ApplicationMessage(
            leaf, 1, b"late")


def test_members_still_in_the_group_are_read_late() -> None:
    """Neither another member's removal nor an Update or a Commit path that replaces a
    member's keys makes that member's late messages suspect."""
    w, _ = _world()
    c1 = w.members[b"c1"]
    leaf = c1.g.own_leaf_index
    m0 = w.members[b"m0"].g
    late1 = c1.g.encrypt(b"epoch 1")
    w.remove(b"m0", b"c2")  # epoch 2
    assert m0.process(late1, now=NOW) == ApplicationMessage(leaf, 1, b"epoch 1")
    late2 = c1.g.encrypt(b"epoch 2")
    old_leaf_node = m0.tree.leaf(leaf)
    assert w.ds.submit(b"c1", c1.g.propose_update())
    w.sync_all()
    w.commit(b"m0")  # epoch 3: applies c1's Update
    w.commit(b"c1")  # epoch 4: c1's own path replaces its leaf again
    assert m0.tree.leaf(leaf) != old_leaf_node
    assert m0.process(late2, now=NOW) == ApplicationMessage(leaf, 2, b"epoch 2")


def test_a_leaf_reused_in_the_same_commit() -> None:
    """Remove and Add in one Commit: the newcomer takes the freed leaf (§12.3). The old
    occupant's epoch-1 messages are refused; the newcomer's own late messages (epoch 2,
    same leaf index) are read."""
    w, victim = _world()
    leaf = victim.g.own_leaf_index
    saved = _saved(victim)
    newcomer = w.client()
    kp, priv = newcomer.key_package()
    w.commit(b"m0", [Remove(leaf), Add(kp)], [(newcomer, kp, priv)])
    assert b"c2" in w.former and newcomer.g.own_leaf_index == leaf
    injected = saved.encrypt(b"old occupant")
    _refused(w.members[b"m0"].g, injected, 1, leaf)
    _refused(w.members[b"c1"].g, injected, 1, leaf)
    late = newcomer.g.encrypt(b"new occupant")
    w.commit(b"c1")  # epoch 3
    assert w.members[b"m0"].g.process(late, now=NOW) == ApplicationMessage(
        leaf, 2, b"new occupant")


def test_a_leaf_reused_by_a_later_commit() -> None:
    """Removed at 1 -> 2, leaf taken by an Add at 2 -> 3: the removal is what counts,
    from every kept epoch since."""
    w, victim = _world()
    leaf = victim.g.own_leaf_index
    saved = _saved(victim)
    w.remove(b"m0", b"c2")
    (newcomer,) = w.add(b"c1", 1)
    assert newcomer.g.own_leaf_index == leaf
    _refused(w.members[b"m0"].g, saved.encrypt(b"still me?"), 1, leaf)


def test_a_message_sent_before_a_later_removal_is_refused_too() -> None:
    """The trade-off: the victim wrote at epoch 1 while still a member, was removed at
    2 -> 3, and the message arrives afterwards. It cannot be told from one written
    after the removal with saved keys, so it is refused; the knob reads it."""
    w, victim = _world()
    leaf = victim.g.own_leaf_index
    honest = victim.g.encrypt(b"goodbye")
    w.commit(b"m0")  # epoch 2
    w.remove(b"c1", b"c2")  # epoch 3
    m0 = w.members[b"m0"]
    _refused(m0.g, honest, 1, leaf)
    lenient = Group.from_bytes(m0.g.to_bytes(),
                               replace_config(m0.config, accept_removed_senders=True))
    assert lenient.process(honest, now=NOW) == ApplicationMessage(leaf, 1, b"goodbye")


def test_a_resync_is_not_a_removal() -> None:
    """A resync external Commit (§12.4.3.2) removes the member's old leaf, but the same
    identity takes a new one: its late messages from the old leaf are still read."""
    w, _ = _world()
    c1 = w.members[b"c1"]
    old_leaf = c1.g.own_leaf_index
    late = c1.g.encrypt(b"before I lost my state")
    w.external_join(b"m0", c1, resync=True)
    assert w.members[b"m0"].g.process(late, now=NOW) == ApplicationMessage(
        old_leaf, 1, b"before I lost my state")


def test_the_record_survives_storage() -> None:
    """Stored and loaded, the group still knows whom the Commit removed, for the epoch
    just left and for the one before."""
    w, victim = _world()
    leaf = victim.g.own_leaf_index
    saved1 = _saved(victim)
    w.commit(b"c1")  # epoch 2
    saved2 = _saved(victim)
    w.remove(b"m0", b"c2")  # epoch 3
    m0 = w.members[b"m0"]
    reloaded = Group.from_bytes(m0.g.to_bytes(), m0.config)
    assert reloaded.to_bytes() == m0.g.to_bytes()
    _refused(reloaded, saved1.encrypt(b"from epoch 1"), 1, leaf)
    _refused(reloaded, saved2.encrypt(b"from epoch 2"), 2, leaf)
