"""transports.group_info_chain: the network-neutral chain (its continuity rules are tested
in test_matrix_group_info_chain.py, through the Matrix name it keeps)."""

from __future__ import annotations

from transports import group_info_chain
from transports.group_info_chain import Chain, Link
from transports.matrix import group_info_chain as matrix_chain

A, M = "xmpp:a@x", "xmpp:m@x"


def test_the_matrix_name_is_the_same_chain() -> None:
    assert matrix_chain.Chain is group_info_chain.Chain
    assert matrix_chain.Link is group_info_chain.Link


def test_a_pending_link_given_up_is_reported_once() -> None:
    chain = Chain()
    assert chain.offer(Link("a0", A, 0, A, frozenset({A})), anchors={A}, relayers=()) != []
    chain.offer(Link("m1", M, 1, M, frozenset({M})), anchors={A}, relayers=())
    chain.offer(Link("m2", M, 2, M, frozenset({M})), anchors={A}, relayers=())
    chain.give_up("m1")
    assert [p.event_id for p in chain.pending] == ["m2"]
    assert [p.event_id for p in chain.unreported()] == ["m1", "m2"]
    chain.give_up("m2")  # already reported: not again
    assert chain.unreported() == [] and chain.pending == []
