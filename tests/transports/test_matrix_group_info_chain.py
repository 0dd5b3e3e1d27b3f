"""transports.matrix.group_info_chain: which published GroupInfo continues the group."""

from __future__ import annotations

from transports.matrix.group_info_chain import MAX_PENDING, Chain, Link

A, B, C, M = "matrix:@a:hs", "matrix:@b:hs", "matrix:@c:hs", "matrix:@m:hs"
BRIDGE = "matrix:@bridge:hs"
ANCHORS = {A}


def link(event: str, writer: str, epoch: int, *members: str, signer: str | None = None
         ) -> Link:
    return Link(event, writer, epoch, signer or writer, frozenset(members or (writer,)))


def offer(chain: Chain, *links: Link, relayers: frozenset[str] = frozenset()) -> list[str]:
    out: list[str] = []
    for item in links:
        out += [t.event_id for t in chain.offer(item, anchors=ANCHORS, relayers=relayers)]
    return out


def test_the_chain_starts_at_an_anchor_and_follows_the_members() -> None:
    chain = Chain()
    # before any anchor: a stranger's self-signed group waits
    assert offer(chain, link("$m0", M, 0)) == []
    assert offer(chain, link("$a0", A, 0), link("$a1", A, 1, A, B), link("$b2", B, 2, A, B)
                 ) == ["$a0", "$a1", "$b2"]
    assert chain.head is not None and chain.head.event_id == "$b2"
    # a non-member's fake group at a huge epoch never links
    assert offer(chain, link("$m1", M, 1_000_000)) == []
    assert chain.head.event_id == "$b2"
    assert [p.event_id for p in chain.unreported()] == ["$m0", "$m1"]
    assert chain.unreported() == []  # reported once


def test_publications_may_arrive_out_of_order() -> None:
    chain = Chain()
    offer(chain, link("$a3", A, 3, A, B))
    # carol was added at epoch 4 and committed epoch 5 before alice's GroupInfo of 4 came
    assert offer(chain, link("$c5", C, 5, A, B, C)) == []
    assert offer(chain, link("$a4", A, 4, A, B, C)) == ["$a4", "$c5"]
    assert chain.head is not None and chain.head.event_id == "$c5" and chain.pending == []


def test_older_and_removed_are_ignored() -> None:
    chain = Chain()
    offer(chain, link("$a5", A, 5, A, B), link("$a6", A, 6, A))  # b removed at 6
    assert offer(chain, link("$b4", B, 4, A, B)) == []  # older than the head
    assert chain.pending == []
    assert offer(chain, link("$b7", B, 7, B)) == []  # b is no longer listed
    assert chain.head is not None and chain.head.event_id == "$a6"


def test_a_relayer_anchors_a_chain_but_relays_only_what_members_signed() -> None:
    chain = Chain()
    relayers = frozenset({BRIDGE})
    relayed = link("$r2", BRIDGE, 2, "xmpp:x@y", signer="xmpp:x@y")
    assert offer(chain, relayed, relayers=relayers) == ["$r2"]  # e.g. it created the room
    # the relayed tree lists the next signer
    assert offer(chain, link("$x3", "xmpp:x@y", 3)) == ["$x3"]
    # a stranger's fake group passed on by the bridge does not link
    fake = link("$r4", BRIDGE, 1_000, "xmpp:z@y", signer="xmpp:z@y")
    assert offer(chain, fake, relayers=relayers) == []
    assert [p.event_id for p in chain.unreported()] == ["$r4"]


def test_json_round_trip_and_bounds() -> None:
    chain = Chain(token="t1")
    offer(chain, link("$a0", A, 0, A, B))
    for i in range(MAX_PENDING + 5):
        offer(chain, link(f"$m{i}", M, 10 + i))
    assert len(chain.pending) == MAX_PENDING and chain.pending[0].event_id == "$m5"
    chain.offered_state = ["$a0"]
    again = Chain.from_json(chain.to_json())
    assert again == chain
    assert Chain.from_json(None) == Chain()
    assert Chain.from_json("{not json") == Chain()
    assert Chain.from_json('{"head": {"writer": 1}}') == Chain()
