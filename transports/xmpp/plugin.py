"""``mls_bridge``: a slixmpp plugin for the MLS-over-XMPP wire mapping (``docs/xmpp.md``).

Register it on any slixmpp client (``xmpp.register_plugin("mls_bridge")`` after importing
this module, which registers it with slixmpp). It declares the ``<mls/>`` element and,
because slixmpp's ``message``/``groupchat_message`` events do not fire for body-less
stanzas, registers its own handler matching the element (servers.md). It raises these events:

* ``mls_payload`` (a :class:`~slixmpp.Message` carrying ``<mls/>``: a room reflection, a
  direct Welcome or claim notice), ``mls_error`` (an error reply to one we sent);
* ``mls_room_exit`` (:class:`RoomExit`): a room occupant was kicked (307), banned (301)
  or lost its membership (321), with its real JID (rooms are non-anonymous);
* ``mls_message`` / ``mls_event`` when an :class:`~mls_client.MLSClient` is attached
  with :meth:`MLSBridgePlugin.run_client` (decrypted application messages, and every
  other client event: joins, commits, membership changes, rejections). MUC access and
  MLS membership are kept consistent by the client layer, attached or not (kicks and
  bans: ``mls_client.room_access``; affiliations from the room policy and revoking
  removed users: ``mls_client.xmpp_rights``, also reachable as
  :meth:`MLSBridgePlugin.sync_affiliations`). This module imports nothing of
  ``mls_client``.

It also exposes the XMPP operations the transport is built from: MAM queries
(XEP-0313) with RSM paging (XEP-0059), PEP publish/fetch/retract (XEP-0060/XEP-0163)
with publish-options, persistent members-only non-anonymous MUC rooms (XEP-0045) and
sending ``<mls/>`` envelopes with origin ids (XEP-0359), a storage hint (XEP-0334), an
encryption hint (XEP-0380) and a fallback body.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from slixmpp import JID, Iq, Message
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.base import BasePlugin, register_plugin
from slixmpp.xmlstream import StanzaBase, register_stanza_plugin
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from transports.base import TransportError
from transports.defence import Drops

from .stanza import (
    EME_NS,
    FALLBACK_BODY,
    HINTS_NS,
    NS,
    SID_NS,
    TAG,
    Envelope,
    MLSElement,
)

log = logging.getLogger(__name__)

MAM_NS = "urn:xmpp:mam:2"
RSM_NS = "http://jabber.org/protocol/rsm"
FORWARD_NS = "urn:xmpp:forward:0"
DELAY_NS = "urn:xmpp:delay"
PUBSUB_NS = "http://jabber.org/protocol/pubsub"
DATA_NS = "jabber:x:data"
MUC_NS = "http://jabber.org/protocol/muc"
MUC_USER_NS = "http://jabber.org/protocol/muc#user"
MUC_OWNER_NS = "http://jabber.org/protocol/muc#owner"
CLIENT_NS = "jabber:client"
IQ_TIMEOUT = 30
Affiliation = Literal["outcast", "member", "admin", "owner", "none"]

#: room configuration the mapping needs (XEP-0045 §10.2): persistent (the archive must
#: survive empty rooms, servers.md), members-only, non-anonymous (members see real JIDs,
#: archived messages carry the sender's bare JID), archived, member invitations grant
#: membership (Prosody's ``allowmemberinvites``)
ROOM_CONFIG: dict[str, str] = {
    "muc#roomconfig_persistentroom": "1",
    "muc#roomconfig_membersonly": "1",
    "muc#roomconfig_whois": "anyone",
    "muc#roomconfig_publicroom": "0",
    "muc#roomconfig_enablearchiving": "1",
    "muc#roomconfig_changesubject": "0",
    "muc#roomconfig_historylength": "0",
    "muc#roomconfig_defaulthistorymessages": "0",
    "{http://prosody.im/protocol/muc}roomconfig_allowmemberinvites": "1",
}


_TRANSIENT_CONDITIONS = frozenset({None, "disconnected", "timeout", "remote-server-timeout",
                                   "service-unavailable", "internal-server-error",
                                   "resource-constraint", "remote-server-not-found"})


class XmppError(TransportError):
    """The server refused or did not answer an XMPP request."""

    def __init__(self, message: str, condition: str | None = None) -> None:
        super().__init__(message)
        self.condition = condition
        #: no answer, or a condition that says the server may answer later
        self.transient = condition in _TRANSIENT_CONDITIONS


@dataclass(frozen=True)
class ArchivedMessage:
    """One MAM result: its archive id (the durable cursor unit) and the message."""

    archive_id: str
    message: ET.Element


@dataclass(frozen=True)
class RoomExit:
    """An occupant left a room involuntarily (XEP-0045 §9.1, §9.4, §9.5 status codes)."""

    room: str  # bare room JID
    user: str  # bare real JID of the occupant
    codes: frozenset[str]
    nick: str = ""  # the occupant's nick (ours: our full JID; status 110 marks our own)


@dataclass(frozen=True)
class MamPage:
    messages: list[ArchivedMessage]
    complete: bool


def _form(form_type: str, fields: dict[str, str]) -> ET.Element:
    x = ET.Element(f"{{{DATA_NS}}}x", {"type": "submit"})
    ft = ET.SubElement(x, f"{{{DATA_NS}}}field", {"var": "FORM_TYPE", "type": "hidden"})
    ET.SubElement(ft, f"{{{DATA_NS}}}value").text = form_type
    for var, value in fields.items():
        f = ET.SubElement(x, f"{{{DATA_NS}}}field", {"var": var})
        ET.SubElement(f, f"{{{DATA_NS}}}value").text = value
    return x


def _condition(exc: IqError) -> str:
    return str(exc.iq["error"]["condition"] or "unknown")


class MLSBridgePlugin(BasePlugin):
    """The slixmpp plugin (see the module docstring)."""

    name = "mls_bridge"
    description = "MLS (RFC 9420) groups over MUC, PEP and MAM"
    dependencies: ClassVar[set[str]] = {"xep_0045", "xep_0030"}
    default_config: ClassVar[dict[str, Any]] = {"iq_timeout": IQ_TIMEOUT}

    def plugin_init(self) -> None:
        #: set when the stream drops: requests in flight fail at once instead of
        #: waiting for their timeout (their answers can never come)
        self._gone = asyncio.Event()
        self.xmpp.add_event_handler("disconnected", self._on_disconnected)
        self.xmpp.add_event_handler("session_start", self._on_session_start)
        #: query id -> (bare JID of the archive queried, "" for ours; its results)
        self._queries: dict[str, tuple[str, list[ArchivedMessage]]] = {}
        #: room bare JID -> occupant nick -> real bare JID (non-anonymous rooms)
        self.occupants: dict[str, dict[str, str]] = {}
        #: bare JID of the bridge account (never demoted by sync_affiliations)
        self.bridge: str | None = None
        #: the MUC service our rooms are on (set by the transport): only it may tell us
        #: about occupants; a MUC presence from anywhere else is forged
        self.muc_service: str | None = None
        #: where dropped hostile input is counted (the transport's ``drops``)
        self.drops = Drops("xmpp")
        self._query_ids = itertools.count(1)
        register_stanza_plugin(Message, MLSElement)
        self.xmpp.register_handler(Callback(
            "MLS payload", MatchXPath(f"{{{CLIENT_NS}}}message/{TAG}"), self._on_payload))
        self.xmpp.register_handler(Callback(
            "MLS room exit", MatchXPath(f"{{{CLIENT_NS}}}presence/{{{MUC_USER_NS}}}x"),
            self._on_room_presence))
        self.xmpp.register_handler(Callback(
            "MLS MAM result", MatchXPath(f"{{{CLIENT_NS}}}message/{{{MAM_NS}}}result"),
            self._on_mam_result))
        self.xmpp.plugin["xep_0030"].add_feature(NS)

    def _on_disconnected(self, _event: object) -> None:
        self._gone.set()
        self.occupants.clear()

    def _on_session_start(self, _event: object) -> None:
        self._gone = asyncio.Event()

    def plugin_end(self) -> None:
        self.xmpp.del_event_handler("disconnected", self._on_disconnected)
        self.xmpp.del_event_handler("session_start", self._on_session_start)
        self.xmpp.remove_handler("MLS payload")
        self.xmpp.remove_handler("MLS MAM result")
        self.xmpp.remove_handler("MLS room exit")
        self.xmpp.plugin["xep_0030"].del_feature(feature=NS)

    # ------------------------------------------------------------------ incoming

    def _on_payload(self, msg: StanzaBase) -> None:
        if msg["type"] == "error":
            self.xmpp.event("mls_error", msg)
        else:
            self.xmpp.event("mls_payload", msg)

    def _on_room_presence(self, pres: StanzaBase) -> None:
        """Occupant presence of a room (XEP-0045 §7.2.3): who is who (non-anonymous
        rooms), and involuntary exits. Only a room of our MUC service can send it; the
        same element from any other JID (e.g. an account named like a room) is forged
        and dropped."""
        x = pres.xml.find(f"{{{MUC_USER_NS}}}x")
        item = x.find(f"{{{MUC_USER_NS}}}item") if x is not None else None
        frm = JID(pres["from"])
        if self.muc_service is not None and (frm.domain != self.muc_service
                                             or not frm.user):
            if pres["type"] != "error":
                self.drops.drop(sender=f"xmpp:{frm.bare}" if frm.user else str(frm),
                                kind="presence", reason="muc-presence-forged",
                                detail=f"a MUC occupant presence not from {self.muc_service}")
            return
        room = self.occupants.setdefault(str(frm.bare), {})
        if pres["type"] == "unavailable":
            room.pop(frm.resource, None)
        elif item is not None and item.get("jid"):
            room[frm.resource] = str(JID(item.get("jid", "")).bare)
        if pres["type"] != "unavailable":
            return
        codes = frozenset(s.get("code", "") for s in pres.xml.iter(f"{{{MUC_USER_NS}}}status"))
        if item is None or not item.get("jid") or not codes & {"301", "307", "321"}:
            return
        self.xmpp.event("mls_room_exit", RoomExit(str(JID(pres["from"]).bare),
                                                  str(JID(item.get("jid", "")).bare), codes,
                                                  str(frm.resource)))

    def _on_mam_result(self, msg: StanzaBase) -> None:
        """A result of one of our MAM queries (XEP-0313 §4.2): only from the archive we
        queried (a room's bare JID; our own archive's results come from our bare JID or
        without ``from``). Anyone can send us a ``<result/>``: one from elsewhere would
        pass forged archive entries (any sender, e.g. the bridge) as real, so it is
        dropped; query ids are random, too."""
        result = msg.xml.find(f"{{{MAM_NS}}}result")
        if result is None:
            return
        frm = JID(msg["from"])
        query = self._queries.get(result.get("queryid", ""))
        if query is not None and self._from_archive(frm, query[0]):
            inner = result.find(f"{{{FORWARD_NS}}}forwarded/{{{CLIENT_NS}}}message")
            archive_id = result.get("id")
            if inner is not None and archive_id:
                query[1].append(ArchivedMessage(archive_id, inner))
            return
        if query is None and (self._from_archive(frm, "")
                              or self.muc_service in (None, frm.domain)):
            return  # a late result of a query that is over
        self.drops.drop(sender=f"xmpp:{frm.bare}", kind="mam-result",
                        reason="mam-result-forged",
                        detail="a MAM result not from the archive we queried")

    def _from_archive(self, frm: JID, archive: str) -> bool:
        """Whether ``frm`` is the archive ``archive`` (a bare JID; "" for ours, whose
        results come from our bare JID or without ``from``)."""
        if archive == "":
            return str(frm.bare) in ("", str(self.xmpp.boundjid.bare))
        return str(frm.bare) == archive

    # ------------------------------------------------------------------ requests

    async def _send_iq(self, iq: Iq, what: str) -> Iq:
        gone = self._gone
        if gone.is_set():
            raise XmppError(f"{what} failed: not connected", "disconnected")
        sent: asyncio.Future[Iq] = asyncio.ensure_future(
            iq.send(timeout=self.config["iq_timeout"]))  # type: ignore[no-untyped-call]
        lost: asyncio.Future[Any] = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait({sent, lost}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            sent.cancel()
            raise
        finally:
            lost.cancel()
            await asyncio.wait({lost})
        if not sent.done():
            sent.cancel()
            raise XmppError(f"{what} failed: the connection dropped", "disconnected")
        try:
            return sent.result()
        except IqError as exc:
            raise XmppError(f"{what} failed: {_condition(exc)} {exc.text}".rstrip(),
                            _condition(exc)) from None
        except IqTimeout:
            raise XmppError(f"{what} timed out", "timeout") from None

    async def mam_page(self, archive: JID | str | None, *, after: str | None = None,
                       before: str | None = None, last_page: bool = False,
                       max_items: int = 100) -> MamPage:
        """One page of an archive (``None``: our account's) after ``after`` (from the
        start if None), the page before ``before``, or the newest page (``last_page``)
        (XEP-0313 §4, XEP-0059 §2.5)."""
        qid = f"mls{secrets.token_hex(8)}"
        iq = self.xmpp.make_iq_set(ito=archive)
        query = ET.Element(f"{{{MAM_NS}}}query", {"queryid": qid})
        rsm = ET.SubElement(query, f"{{{RSM_NS}}}set")
        ET.SubElement(rsm, f"{{{RSM_NS}}}max").text = str(max_items)
        if after is not None:
            ET.SubElement(rsm, f"{{{RSM_NS}}}after").text = after
        elif before is not None:
            ET.SubElement(rsm, f"{{{RSM_NS}}}before").text = before
        elif last_page:
            ET.SubElement(rsm, f"{{{RSM_NS}}}before")
        iq.xml.append(query)
        sink: list[ArchivedMessage] = []
        self._queries[qid] = ("" if archive is None else str(JID(archive).bare), sink)
        try:
            result = await self._send_iq(iq, f"MAM query of {archive or 'our archive'}")
        finally:
            self._queries.pop(qid, None)
        fin = result.xml.find(f"{{{MAM_NS}}}fin")
        complete = fin is not None and fin.get("complete") in ("true", "1")
        return MamPage(sink, complete or len(sink) < max_items)

    async def pep_publish(self, node: str, item_id: str, payload: ET.Element,
                          options: dict[str, str]) -> None:
        """Publish one item on our PEP node with publish-options (XEP-0060 §7.1.5)."""
        iq = self.xmpp.make_iq_set()
        pubsub = ET.Element(f"{{{PUBSUB_NS}}}pubsub")
        publish = ET.SubElement(pubsub, f"{{{PUBSUB_NS}}}publish", {"node": node})
        ET.SubElement(publish, f"{{{PUBSUB_NS}}}item", {"id": item_id}).append(payload)
        po = ET.SubElement(pubsub, f"{{{PUBSUB_NS}}}publish-options")
        po.append(_form("http://jabber.org/protocol/pubsub#publish-options", options))
        iq.xml.append(pubsub)
        await self._send_iq(iq, f"publishing on {node}")

    async def pep_items(self, owner: JID | str | None, node: str) -> list[ET.Element]:
        """Every item of a PEP node (``item-not-found`` gives an empty list)."""
        iq = self.xmpp.make_iq_get(ito=owner)
        pubsub = ET.Element(f"{{{PUBSUB_NS}}}pubsub")
        ET.SubElement(pubsub, f"{{{PUBSUB_NS}}}items", {"node": node})
        iq.xml.append(pubsub)
        try:
            result = await self._send_iq(iq, f"fetching {node}")
        except XmppError as exc:
            if exc.condition == "item-not-found":
                return []
            raise
        return result.xml.findall(f"{{{PUBSUB_NS}}}pubsub/{{{PUBSUB_NS}}}items/"
                                  f"{{{PUBSUB_NS}}}item")

    async def pep_retract(self, node: str, item_ids: Sequence[str]) -> None:
        """Retract items from our PEP node; ones already gone are ignored."""
        for item_id in item_ids:
            iq = self.xmpp.make_iq_set()
            pubsub = ET.Element(f"{{{PUBSUB_NS}}}pubsub")
            retract = ET.SubElement(pubsub, f"{{{PUBSUB_NS}}}retract", {"node": node})
            ET.SubElement(retract, f"{{{PUBSUB_NS}}}item", {"id": item_id})
            iq.xml.append(pubsub)
            try:
                await self._send_iq(iq, f"retracting from {node}")
            except XmppError as exc:
                if exc.condition != "item-not-found":
                    raise

    # ------------------------------------------------------------------ rooms

    async def join_room(self, room: JID, nick: str) -> bool:
        """Join (creating it if needed, then configuring it as :data:`ROOM_CONFIG`) with
        no MUC history: catch-up uses MAM (XEP-0045 §7.2). Returns whether we created
        the room; XmppError with the room's condition (e.g. ``registration-required``
        for a non-member of a members-only room)."""
        loop = asyncio.get_running_loop()
        joined: asyncio.Future[set[str]] = loop.create_future()
        name = f"MLS join {room} {next(self._query_ids)}"

        def on_presence(stanza: StanzaBase) -> None:
            if joined.done() or JID(stanza["from"]).bare != JID(room).bare:
                return
            if stanza["type"] == "error":
                joined.set_exception(XmppError(
                    f"joining {room} failed: {stanza['error']['condition']}",
                    str(stanza["error"]["condition"])))
                return
            codes = {s.get("code", "") for s in stanza.xml.iter(f"{{{MUC_USER_NS}}}status")}
            if "110" in codes:  # our own presence: we are in
                joined.set_result(codes)

        self.xmpp.register_handler(Callback(
            name, MatchXPath(f"{{{CLIENT_NS}}}presence"), on_presence))
        try:
            pres = self.xmpp.make_presence(pto=JID(f"{JID(room).bare}/{nick}"))
            x = ET.SubElement(pres.xml, f"{{{MUC_NS}}}x")
            ET.SubElement(x, f"{{{MUC_NS}}}history", {"maxstanzas": "0"})
            pres.send()
            async with asyncio.timeout(self.config["iq_timeout"]):
                codes = await joined
        except TimeoutError:
            raise XmppError(f"joining {room} timed out", "timeout") from None
        finally:
            self.xmpp.remove_handler(name)
        created = "201" in codes
        if created:
            await self.configure_room(room)
        return created

    def leave_room(self, room: JID, nick: str) -> None:
        self.xmpp.make_presence(pto=JID(f"{JID(room).bare}/{nick}"),
                                ptype="unavailable").send()

    async def configure_room(self, room: JID, name: str | None = None) -> None:
        iq = self.xmpp.make_iq_set(ito=room)
        query = ET.Element(f"{{{MUC_OWNER_NS}}}query")
        fields = dict(ROOM_CONFIG)
        if name is not None:
            fields["muc#roomconfig_roomdesc"] = name
        query.append(_form("http://jabber.org/protocol/muc#roomconfig", fields))
        iq.xml.append(query)
        await self._send_iq(iq, f"configuring {room}")

    def invite(self, room: JID, jid: JID | str) -> None:
        """A mediated invitation (XEP-0045 §7.8.2): in a members-only room that allows
        member invitations it makes ``jid`` a member."""
        msg = self.xmpp.make_message(mto=room)
        x = ET.SubElement(msg.xml, f"{{{MUC_USER_NS}}}x")
        ET.SubElement(x, f"{{{MUC_USER_NS}}}invite", {"to": str(JID(jid).bare)})
        msg.send()

    async def set_affiliation(self, room: JID, jid: JID | str,
                              affiliation: Affiliation) -> None:
        try:
            await self.xmpp.plugin["xep_0045"].set_affiliation(
                room, affiliation, jid=JID(jid).bare, timeout=self.config["iq_timeout"])
        except IqError as exc:
            raise XmppError(f"setting {affiliation} on {room} failed: {_condition(exc)}",
                            _condition(exc)) from None
        except IqTimeout:
            raise XmppError("setting an affiliation timed out", "timeout") from None

    async def affiliations(self, room: JID, affiliation: Affiliation) -> list[str]:
        try:
            jids = await self.xmpp.plugin["xep_0045"].get_affiliation_list(
                room, affiliation, timeout=self.config["iq_timeout"])
        except IqError as exc:
            raise XmppError(f"listing {room} failed: {_condition(exc)}",
                            _condition(exc)) from None
        except IqTimeout:
            raise XmppError("listing affiliations timed out", "timeout") from None
        return [str(JID(j).bare) for j in jids]

    # ------------------------------------------------------------------ sending

    def send_envelope(self, to: JID | str, mtype: Literal["chat", "groupchat"],
                      envelope: Envelope, *,
                      chunk_size: int, max_payload: int) -> list[str]:
        """Send ``envelope`` (chunked as needed) to ``to``; returns the origin ids."""
        ids = []
        for element in envelope.chunks(chunk_size, max_payload):
            msg = self.xmpp.make_message(mto=to, mtype=mtype, mbody=FALLBACK_BODY)
            origin = f"{envelope.msg_id}-{element.get('part')}"
            msg["id"] = origin
            msg.xml.append(element)
            ET.SubElement(msg.xml, f"{{{SID_NS}}}origin-id", {"id": origin})
            ET.SubElement(msg.xml, f"{{{HINTS_NS}}}store")
            ET.SubElement(msg.xml, f"{{{EME_NS}}}encryption",
                          {"namespace": NS, "name": "MLS (RFC 9420)"})
            msg.send()
            ids.append(origin)
        return ids

    # ------------------------------------------------------------------ MLSClient

    async def run_client(self, client: RunnableClient, stop: asyncio.Event | None = None,
                         handler: Callable[[Any], Awaitable[None]] | None = None,
                         ) -> None:
        """Run ``client`` (an :class:`~mls_client.MLSClient` whose transport uses this
        connection) until ``stop``: fires ``mls_message`` for each decrypted application
        message (events with ``data``) and ``mls_event`` for every client event, then
        calls ``handler``. Room access and MLS membership are kept consistent by the
        client itself (``mls_client.room_access``, ``mls_client.xmpp_rights``)."""

        async def dispatch(event: Any) -> None:
            if hasattr(event, "data"):
                self.xmpp.event("mls_message", event)
            self.xmpp.event("mls_event", event)
            if handler is not None:
                try:
                    await handler(event)
                except Exception:
                    log.exception("the event handler failed")

        await client.run(dispatch, stop)

    async def sync_affiliations(self, client: RunnableClient,
                                group_id: bytes) -> dict[str, Affiliation]:
        """Set the room's affiliations from the group's room policy now (docs/xmpp.md,
        "Affiliations from the room policy"): delegated to the client's
        ``room_rights`` (``mls_client.xmpp_rights.AffiliationSync``); ``{}`` if it has
        none. Returns the changes made (bare JID -> new affiliation)."""
        rights = client.room_rights
        sync = getattr(rights, "sync_affiliations", None)
        if sync is None:
            return {}
        changes: dict[str, Affiliation] = await sync(group_id)
        return changes


class RunnableClient(Protocol):
    """What :meth:`MLSBridgePlugin.run_client` needs of an MLS client (the transports
    layer names no client class)."""

    @property
    def room_rights(self) -> object: ...

    async def run(self, handler: Callable[[Any], Awaitable[None]] | None = None,
                  stop: asyncio.Event | None = None) -> None: ...


# slixmpp's plugin layout: importing the module registers the plugin by its name
register_plugin(MLSBridgePlugin)
