"""MUC affiliations derived from the MLS group's room policy (docs/xmpp.md, "Affiliations
from the room policy"; XEP-0045 §9.2-§9.8, §10.3-§10.7).

The XMPP transport and its slixmpp plugin only move bytes and report room events; this
client-layer module decides the room's rights. Every :class:`~mls_client.MLSClient` on
XMPP applies it after the Commits and joins it processes (:meth:`MLSClient.sync`):

* :meth:`AffiliationSync.reconcile`: a room *owner* sets every member's affiliation from
  its policy role (admin → owner, moderator → admin, member → member, banned →
  outcast), never demoting the bridge account and never giving up the room's last owner;
* :meth:`AffiliationSync.revoke`: users our own Commit removed (no leaf left) lose room
  membership (outcasts stay outcasts; users the policy bans become outcasts).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

from slixmpp import JID

from mls_core.events import Member
from mls_core.room_policy import Role, RoomPolicy
from transports.xmpp.plugin import XmppError
from transports.xmpp.stanza import room_localpart

from .room_access import may_remove

if TYPE_CHECKING:
    from transports.xmpp.transport import XmppDeliveryTransport

    from .client import MLSClient
    from .events import CommitProcessed

log = logging.getLogger(__name__)

Affiliation = Literal["outcast", "member", "admin", "owner", "none"]
#: the room policy's roles as MUC affiliations (docs/bridge.md)
AFFILIATION_OF: dict[Role, Affiliation] = {
    Role.ADMIN: "owner", Role.MODERATOR: "admin", Role.MEMBER: "member",
    Role.BANNED: "outcast",
}


def desired_affiliations(policy: RoomPolicy, members: Iterable[bytes], *,
                         bridge: str | None = None) -> dict[str, Affiliation]:
    """Bare JID -> the affiliation its policy role maps to (docs/bridge.md) for MLS
    members and for every identity the policy bans; non-XMPP identities and the bridge
    account (bare JID ``bridge``, which keeps its ``admin`` affiliation) are left out."""
    out: dict[str, Affiliation] = {}
    bridge = str(JID(bridge).bare) if bridge else None
    banned = [r.identity for r in policy.roles if r.role == Role.BANNED]
    for identity in [*members, *banned]:
        name = identity.decode("utf-8", "replace")
        if name.startswith("xmpp:") and len(name) > 5:
            bare = str(JID(name[5:]).bare)
            if bare != bridge:
                out[bare] = AFFILIATION_OF[policy.role_of(identity)]
    return out


def remover_index(staying: Sequence[Member], policy: RoomPolicy | None) -> int | None:
    """The leaf that commits the removal of a kicked/banned user: the lowest-index
    staying *XMPP* member whose policy role may remove others (RoomPolicyEnforcer's
    rule); None if nobody may (mls_client.room_access.designated_remover)."""
    allowed = [m.index for m in staying
               if (m.credential.identity or b"").startswith(b"xmpp:")
               and may_remove(policy, m.credential.identity)]
    return min(allowed, default=None)


class AffiliationSync:
    """Keeps one device's rooms' affiliations in step with its groups' policies."""

    def __init__(self, client: MLSClient, transport: XmppDeliveryTransport) -> None:
        self.client = client
        self.transport = transport
        #: group -> (encoded policy, members) affiliations were last derived from
        self._synced: dict[bytes, tuple[bytes, frozenset[bytes]]] = {}

    def _room(self, group_id: bytes) -> JID:
        return JID(f"{room_localpart(group_id)}@{self.transport.muc_service}")

    def _bridge(self) -> str | None:
        bridge = self.transport.settings.bridge
        return str(JID(bridge).bare) if bridge else None

    async def reconcile(self, group_id: bytes) -> bool:
        """Derive the room's affiliations again if the policy in force or the member set
        changed since the last time. True if there was nothing to do or it was done."""
        policy = await self.client.policy(group_id)
        if policy is None:
            return True
        members = frozenset(m.credential.identity or b""
                            for m in await self.client.members(group_id))
        if self._synced.get(group_id) == (policy.encode(), members):
            return True
        await self.sync_affiliations(group_id)
        self._synced[group_id] = (policy.encode(), members)
        return True

    async def sync_affiliations(self, group_id: bytes) -> dict[str, Affiliation]:
        """Set the room's affiliations from the group's room policy (module docstring).
        Only a room owner does it (others return ``{}`` at once); our own affiliation
        changes last, and we never give up ownership unless another owner remains.
        Returns the changes made (bare JID -> new affiliation)."""
        policy = await self.client.policy(group_id)
        room = self._room(group_id)
        me = self.transport.bare
        if policy is None:
            return {}
        current = await self._current(room)
        if current.get(me) != "owner":
            return {}
        members = [m.credential.identity or b"" for m in await self.client.members(group_id)]
        wanted = desired_affiliations(policy, members, bridge=self._bridge())
        if wanted.get(me, "owner") != "owner" and not any(
                a == "owner" for j, a in wanted.items() if j != me):
            wanted[me] = "owner"  # the room must keep an owner (XEP-0045 §10.6)
        changes = {j: a for j, a in wanted.items() if current.get(j, "none") != a}
        done: dict[str, Affiliation] = {}
        for jid in sorted(changes, key=lambda j: j == me):
            after = {**current, **done}
            if jid == me and not any(a == "owner" for j, a in after.items() if j != me):
                break  # an owner change above failed: stay the room's owner
            try:
                await self.transport.plugin.set_affiliation(room, jid, changes[jid])
                done[jid] = changes[jid]
            except XmppError as exc:
                log.warning("setting %s of %s in %s failed: %s", changes[jid], jid, room,
                            exc)
        return done

    async def _current(self, room: JID) -> dict[str, Affiliation]:
        """Bare JID -> affiliation, from the room's lists (members of a members-only
        non-anonymous room may read them all)."""
        out: dict[str, Affiliation] = {}
        for affiliation in ("outcast", "member", "admin", "owner"):
            for jid in await self.transport.plugin.affiliations(room, affiliation):
                out[jid] = affiliation
        return out

    async def revoke(self, event: CommitProcessed) -> None:
        """Users our Commit removed (no leaf left) lose their room membership; only the
        room's owners and admins may do that, others are refused and skip it. Outcasts
        stay outcasts, users the policy bans become outcasts, the bridge is kept."""
        if not event.own or not event.removed:
            return
        room = self._room(event.group_id)
        present = {m.credential.identity for m in await self.client.members(event.group_id)}
        policy = await self.client.policy(event.group_id)
        try:
            outcasts = set(await self.transport.plugin.affiliations(room, "outcast"))
        except XmppError:
            outcasts = set()
        for user in set(event.removed):
            if not user.startswith("xmpp:") or user.encode() in present \
                    or user[5:] in outcasts or str(JID(user[5:]).bare) == self._bridge():
                continue
            banned = policy is not None and policy.role_of(user.encode()) == Role.BANNED
            try:
                await self.transport.plugin.set_affiliation(
                    room, user[5:], "outcast" if banned else "none")
            except XmppError as exc:
                log.info("cannot revoke %s in %s: %s", user, room, exc)
