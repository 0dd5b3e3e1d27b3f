"""Which published GroupInfo continues the real group (docs/matrix.md "GroupInfo: what a
reader takes", docs/xmpp.md "GroupInfo").

:func:`transports.group_info.check_group_info` proves that a GroupInfo (RFC 9420 §12.4.3)
is self-consistent (signature by the signer's leaf, tree hash, valid tree, §12.4.3.1), is
for the room's group, and is signed by the account that wrote it. It cannot tell the real
group from a *fake* one: any room occupant can create a group with the same group id,
sign a GroupInfo of it at any epoch and publish it under its own account. A joiner that
takes the highest epoch would then join the fake group by external Commit
(§12.4.3.2), whose secrets the faker knows.

This module adds *continuity*, over a room's GroupInfo items in the room's order (sans
I/O, network-neutral; a transport feeds it: Matrix state events in timeline order, XMPP
``group-info`` items in archive order):

* while no GroupInfo of the room is trusted yet, one written by an **anchor** is trusted.
  The transport names its anchors: always the reader's own account and the **trusted
  relayers** (the configured bridge, which mirrors members' GroupInfo from other networks
  and creates the rooms of groups it opens); on Matrix the room's creator (who bound the
  room to the group in its initial state and publishes epoch 0), on XMPP the room's
  owners and the writer of the archive's first GroupInfo if it is at epoch 0;
* afterwards a GroupInfo is trusted when its epoch is at least the *head*'s (the newest
  trusted one) and its signer is a member in the head's tree: the group itself listed
  the signer. This holds for what a relayer writes too (every member of a bridged group
  is in the one tree), so a relayer cannot pass on a stranger's fake group either.
  Valid GroupInfo that does not link yet waits (*pending*) and is linked as soon as a
  new head lists its signer, so publications may arrive in any order.

Older GroupInfo than the head is ignored (it cannot be the newest). A non-member can
therefore never become head; a current member can (see the transports' docs).
Pending links that never link are reported once (:meth:`Chain.unreported`).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

#: most valid-but-unlinked GroupInfo events remembered per room (the oldest go first)
MAX_PENDING = 32


@dataclass(frozen=True)
class Link:
    """One valid GroupInfo item: who wrote it and what its tree says."""

    #: the network's id of the item (Matrix event id, XMPP archive id)
    event_id: str
    #: the account the network says wrote it (``matrix:<user id>``, ``xmpp:<bare JID>``)
    writer: str
    epoch: int
    #: the signer's credential identity (equal to ``writer`` unless a relayer wrote it)
    signer: str | None
    #: credential identities of the GroupInfo's tree
    members: frozenset[str]
    #: whether a pending link was already reported as unlinked
    reported: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "writer": self.writer, "epoch": self.epoch,
                "signer": self.signer, "members": sorted(self.members),
                "reported": self.reported}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Link:
        return cls(str(value["event_id"]), str(value["writer"]), int(value["epoch"]),
                   None if value.get("signer") is None else str(value["signer"]),
                   frozenset(str(m) for m in value.get("members", [])),
                   bool(value.get("reported", False)))


@dataclass
class Chain:
    """The continuity state of one room, kept by the transport between reads."""

    #: where the last read stopped (Matrix: the ``/messages`` token after the last
    #: GroupInfo event read; XMPP: the last archive id read); None: the room's start
    token: str | None = None
    head: Link | None = None
    pending: list[Link] = field(default_factory=list)
    #: Matrix: event ids of current-state GroupInfo events already offered
    offered_state: list[str] = field(default_factory=list)
    #: pending links given up (overtaken by the head, or over :data:`MAX_PENDING`)
    #: before they were reported; not persisted
    given_up: list[Link] = field(default_factory=list, compare=False)

    def offer(self, link: Link, *, anchors: Collection[str],
              relayers: Collection[str]) -> list[Link]:
        """Take one valid GroupInfo event (timeline order); returns the links that became
        trusted because of it (it and any pending ones it linked), oldest first."""
        if self.head is not None and link.epoch < self.head.epoch:
            return []  # older than what we trust: never the newest
        if not self._trusted(link, anchors, relayers):
            self._keep([*self.pending, link][-MAX_PENDING:])
            return []
        self.head = link
        return [link, *self._link_pending()]

    def _trusted(self, link: Link, anchors: Collection[str],
                 relayers: Collection[str]) -> bool:
        if self.head is None:
            return link.writer in anchors or link.writer in relayers
        return link.signer is not None and link.signer in self.head.members

    def _link_pending(self) -> list[Link]:
        linked: list[Link] = []
        while self.head is not None:
            head = self.head
            self._keep([p for p in self.pending if p.epoch >= head.epoch])
            nxt = next((p for p in sorted(self.pending, key=lambda p: p.epoch)
                        if self._trusted(p, (), ())), None)
            if nxt is None:
                return linked
            self.pending.remove(nxt)
            self.head = nxt
            linked.append(nxt)
        return linked

    def give_up(self, event_id: str) -> None:
        """Stop waiting for the pending link ``event_id`` (e.g. the transport cannot keep
        its bytes); it is reported by :meth:`unreported` if it was not yet."""
        self._keep([p for p in self.pending if p.event_id != event_id])

    def _keep(self, pending: list[Link]) -> None:
        """Keep only ``pending``; the other pending links are given up."""
        kept = {id(p) for p in pending}
        self.given_up += [p for p in self.pending if id(p) not in kept and not p.reported]
        self.pending = pending

    def unreported(self) -> list[Link]:
        """Links that never linked and were not reported yet: given up ones, then the
        still pending ones (which are marked reported)."""
        out = [*self.given_up, *(p for p in self.pending if not p.reported)]
        self.given_up = []
        self.pending = [replace(p, reported=True) for p in self.pending]
        return out

    def to_json(self) -> str:
        return json.dumps({"token": self.token,
                           "head": None if self.head is None else self.head.to_json(),
                           "pending": [p.to_json() for p in self.pending],
                           "offered_state": self.offered_state}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> Chain:
        """The stored chain (a new one if there is none or it cannot be read)."""
        if text is None:
            return cls()
        try:
            value = json.loads(text)
            head = value.get("head")
            return cls(None if value.get("token") is None else str(value["token"]),
                       None if head is None else Link.from_json(head),
                       [Link.from_json(p) for p in value.get("pending", [])],
                       [str(e) for e in value.get("offered_state", [])])
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls()  # start over from the room's beginning


__all__ = ["MAX_PENDING", "Chain", "Link"]
