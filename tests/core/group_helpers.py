"""Shared fixtures for the group-layer tests: clients, an in-memory ordering Delivery
Service and a :class:`World` that drives several :class:`~mls_core.group.Group` objects
through it (RFC 9420 §3, RFC 9750 "Delivery Service").

The Delivery Service keeps one total order per group. Handshake messages must be for the
DS's current epoch; the first Commit of an epoch wins and every later Commit for that
epoch is rejected, so its sender discards its pending Commit, processes the winner and
retries. Application messages are always accepted (they may arrive late, §14).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from mls_core.ciphersuite import get_suite
from mls_core.commit_flow import CommitResult
from mls_core.config import GroupConfig
from mls_core.credentials import Credential
from mls_core.errors import MLSError
from mls_core.events import ApplicationMessage, CommitApplied, Event
from mls_core.framing import ContentType, MLSMessage, PublicMessage
from mls_core.group import Group
from mls_core.key_package import KeyPackagePrivate, create_key_package
from mls_core.messages import KeyPackage
from mls_core.proposals import Add, PreSharedKey, Proposal, Remove, Update

NOW = 1_800_000_000
SUITES = (1, 2, 3, 4, 5, 6, 7)
EXPORT_LABEL = b"group-test exporter"

AnyProposal = Proposal | Add | Update | Remove | PreSharedKey


@dataclass
class Client:
    """One MLS client: a name (its basic credential), a signature key and, once it is
    a member, its view of the group."""

    name: bytes
    suite_id: int
    signature_priv: bytes
    config: GroupConfig
    group: Group | None = None

    @property
    def credential(self) -> Credential:
        return Credential.basic(self.name)

    @property
    def g(self) -> Group:
        assert self.group is not None, f"{self.name!r} is not a member"
        return self.group

    def key_package(self) -> tuple[KeyPackage, KeyPackagePrivate]:
        return create_key_package(get_suite(self.suite_id), self.credential,
                                  self.signature_priv, now=NOW)


def new_client(suite_id: int, name: bytes, config: GroupConfig | None = None) -> Client:
    suite = get_suite(suite_id)
    priv, _ = suite.generate_signature_key_pair()
    return Client(name, suite_id, priv, config or GroupConfig())


@dataclass(frozen=True)
class Header:
    """The unencrypted routing fields a Delivery Service can read (§6)."""

    group_id: bytes
    epoch: int
    content_type: int


def header_of(data: bytes) -> Header:
    msg = MLSMessage.decode(data)
    body = msg.public_message or msg.private_message
    assert body is not None
    if isinstance(body, PublicMessage):
        c = body.content
        return Header(c.group_id, c.epoch, c.content_type)
    return Header(body.group_id, body.epoch, body.content_type)


@dataclass
class DeliveryService:
    """One total order of the messages of one group; the first Commit per epoch wins."""

    epoch: int = 0
    log: list[tuple[bytes, bytes]] = field(default_factory=list)
    cursors: dict[bytes, int] = field(default_factory=dict)
    rejected: int = 0

    def subscribe(self, name: bytes) -> None:
        """``name`` receives every message accepted from now on."""
        self.cursors[name] = len(self.log)

    def unsubscribe(self, name: bytes) -> None:
        self.cursors.pop(name, None)

    def submit(self, sender: bytes, data: bytes) -> bool:
        """Accept ``data`` into the order, or reject a handshake message that is not for
        the current epoch (e.g. a Commit that lost the race)."""
        h = header_of(data)
        if h.content_type != ContentType.APPLICATION and h.epoch != self.epoch:
            self.rejected += 1
            return False
        if h.content_type == ContentType.COMMIT:
            self.epoch += 1
        self.log.append((sender, data))
        return True

    def fetch(self, name: bytes) -> list[bytes]:
        """Messages for ``name`` not yet delivered, in order, without its own."""
        start = self.cursors[name]
        self.cursors[name] = len(self.log)
        return [data for sender, data in self.log[start:] if sender != name]


@dataclass
class SentApplication:
    epoch: int
    data: bytes
    plaintext: bytes


class World:
    """Clients of one group, connected through a :class:`DeliveryService`."""

    def __init__(self, suite_id: int, *, wire_format: int | None = None,
                 creator: bytes = b"m0", **config: object) -> None:
        self.suite_id = suite_id
        self.suite = get_suite(suite_id)
        self._config = dict(config)
        if wire_format is not None:
            self._config["handshake_wire_format"] = wire_format
        self.psks: dict[bytes, bytes] = {}
        self.members: dict[bytes, Client] = {}
        self.former: dict[bytes, Client] = {}
        self.sent: list[SentApplication] = []
        self.ds = DeliveryService()
        self._counter = 0
        first = self.client(creator)
        first.group = Group.create(suite_id, first.credential, first.signature_priv, now=NOW,
                                   config=first.config)
        self._join(first)

    # ------------------------------------------------------------------ clients

    def new_config(self) -> GroupConfig:
        cfg = GroupConfig(**self._config)  # type: ignore[arg-type]
        cfg.external_psks = self.psks  # shared: a PSK registered later is known to all
        return cfg

    def client(self, name: bytes | None = None) -> Client:
        """A fresh non-member client with a unique name."""
        if name is None:
            self._counter += 1
            name = b"c%d" % self._counter
            while name in self.members or name in self.former:
                self._counter += 1
                name = b"c%d" % self._counter
        return new_client(self.suite_id, name, self.new_config())

    def _join(self, c: Client) -> None:
        self.members[c.name] = c
        self.ds.subscribe(c.name)

    def _leave(self, name: bytes) -> None:
        c = self.members.pop(name)
        self.ds.unsubscribe(name)
        self.former[name] = c

    def by_index(self, index: int) -> Client:
        for c in self.members.values():
            if c.g.own_leaf_index == index:
                return c
        raise KeyError(index)

    @property
    def any(self) -> Client:
        return next(iter(self.members.values()))

    # ------------------------------------------------------------------ delivery

    def sync(self, name: bytes) -> list[Event]:
        """Deliver every pending message to ``name``, in order."""
        c = self.members[name]
        events = []
        for data in self.ds.fetch(name):
            event = c.g.process(data, now=NOW)
            events.append(event)
            if isinstance(event, CommitApplied) and event.removed_self:
                assert not c.g.active
                self._leave(name)
                break
        return events

    def sync_all(self) -> dict[bytes, list[Event]]:
        return {name: self.sync(name) for name in list(self.members)}

    # ------------------------------------------------------------------ sending

    def send(self, name: bytes, plaintext: bytes, *, deliver: bool = True) -> bytes:
        """``name`` sends application data; every other member reads it."""
        c = self.members[name]
        data = c.g.encrypt(plaintext)
        self.sent.append(SentApplication(c.g.epoch, data, plaintext))
        assert self.ds.submit(name, data)
        if deliver:
            self.deliver_application(name, plaintext)
        return data

    def deliver_application(self, sender: bytes, plaintext: bytes) -> None:
        for name, events in self.sync_all().items():
            if name == sender:
                continue
            apps = [e for e in events if isinstance(e, ApplicationMessage)]
            assert apps and apps[-1].data == plaintext

    def propose(self, name: bytes, proposal: AnyProposal) -> bytes:
        data = self.members[name].g.propose(proposal)
        assert self.ds.submit(name, data)
        self.sync_all()
        return data

    def try_commit(self, name: bytes, proposals: Sequence[AnyProposal] = (),
                   joiners: Sequence[tuple[Client, KeyPackage, KeyPackagePrivate]] = (),
                   *, tree_in_welcome: bool = True, **kw: object) -> CommitResult | None:
        """Create and submit a Commit from ``name``. If the DS accepts it, merge it,
        deliver it and welcome ``joiners``; else discard it and return None."""
        c = self.members[name]
        result = c.g.commit(proposals, ratchet_tree_in_welcome=tree_in_welcome,
                            now=NOW, **kw)  # type: ignore[arg-type]
        if not self.ds.submit(name, result.commit):
            c.g.discard_pending_commit()
            return None
        self.accepted(name, result, joiners, tree_in_welcome=tree_in_welcome)
        return result

    def accepted(self, name: bytes, result: CommitResult,
                 joiners: Sequence[tuple[Client, KeyPackage, KeyPackagePrivate]] = (),
                 *, tree_in_welcome: bool = True) -> None:
        """The DS accepted ``name``'s pending Commit: merge it, deliver it to everyone
        and let ``joiners`` join from its Welcome."""
        c = self.members[name]
        event = c.g.merge_pending_commit()
        assert event.epoch == c.g.epoch
        self.sync_all()
        if joiners:
            assert result.welcome is not None
            tree = None if tree_in_welcome else c.g.ratchet_tree_bytes()
            for j, kp, priv in joiners:
                j.group = Group.join(result.welcome, kp, priv, ratchet_tree=tree,
                                     config=j.config, now=NOW)
                self._join(j)
                self.check_cannot_read_earlier(j)

    def commit(self, name: bytes, proposals: Sequence[AnyProposal] = (),
               joiners: Sequence[tuple[Client, KeyPackage, KeyPackagePrivate]] = (),
               **kw: object) -> CommitResult:
        result = self.try_commit(name, proposals, joiners, **kw)  # type: ignore[arg-type]
        assert result is not None, "the DS rejected the Commit"
        return result

    def add(self, committer: bytes, count: int = 1, **kw: object) -> list[Client]:
        """``committer`` adds ``count`` fresh clients by Welcome."""
        joiners = []
        for _ in range(count):
            j = self.client()
            kp, priv = j.key_package()
            joiners.append((j, kp, priv))
        self.commit(committer, [Add(kp) for _, kp, _ in joiners], joiners, **kw)
        return [j for j, _, _ in joiners]

    def remove(self, committer: bytes, victim: bytes) -> CommitResult:
        index = self.members[victim].g.own_leaf_index
        result = self.commit(committer, [Remove(index)])
        assert victim in self.former and not self.former[victim].g.active
        return result

    def try_external_join(self, via: bytes, joiner: Client | None = None,
                          *, resync: bool = False) -> Client | None:
        """A client joins by external Commit from ``via``'s GroupInfo (§12.4.3.2); with
        ``resync`` the member ``joiner`` rejoins, removing its old leaf."""
        if joiner is None:
            joiner = self.client()
        group, commit = self.external_commit(via, joiner, resync=resync)
        if not self.ds.submit(joiner.name, commit):
            return None
        self.external_accepted(joiner, group, resync=resync)
        return joiner

    def external_commit(self, via: bytes, joiner: Client,
                        *, resync: bool = False) -> tuple[Group, bytes]:
        """``joiner``'s external Commit from ``via``'s current GroupInfo (not sent)."""
        info = self.members[via].g.group_info()
        remove = joiner.g.own_leaf_index if resync else None
        return Group.join_external(info, joiner.credential, joiner.signature_priv,
                                   remove_leaf=remove, config=joiner.config, now=NOW)

    def external_accepted(self, joiner: Client, group: Group,
                          *, resync: bool) -> dict[bytes, list[Event]]:
        """The DS accepted ``joiner``'s external Commit: deliver it; the joiner (already
        in the new epoch) becomes a member. Returns what the others processed."""
        if resync:
            self.ds.fetch(joiner.name)  # the rest of the old epoch is of no use now
        joiner.group = group
        events = self.sync_all()
        if not resync:
            self._join(joiner)
            self.check_cannot_read_earlier(joiner)
        return events

    def external_join(self, via: bytes, joiner: Client | None = None,
                      *, resync: bool = False) -> Client:
        joined = self.try_external_join(via, joiner, resync=resync)
        assert joined is not None
        return joined

    # ------------------------------------------------------------------ invariants

    def check(self) -> None:
        """Every member agrees on epoch, epoch_authenticator, exporter, GroupContext and
        member list, and the member list is exactly the set of member clients."""
        groups = [c.g for c in self.members.values()]
        ref = groups[0]
        want_members = ref.members
        secret = ref.export_secret(EXPORT_LABEL, b"ctx", 32)
        for g in groups:
            assert g.active
            assert g.epoch == ref.epoch == self.ds.epoch
            assert g.epoch_authenticator == ref.epoch_authenticator
            assert g.export_secret(EXPORT_LABEL, b"ctx", 32) == secret
            assert g.context == ref.context
            assert g.members == want_members
            assert not g.has_pending_commit
        names = sorted(m.credential.identity or b"" for m in want_members)
        assert names == sorted(self.members)
        indexes = {c.g.own_leaf_index for c in self.members.values()}
        assert indexes == {m.index for m in want_members}

    def check_former_cannot_read(self, data: bytes) -> None:
        """Removed members get an MLSError for a message sent after their removal."""
        for c in self.former.values():
            if c.group is None:
                continue
            before = c.g.epoch_authenticator
            try:
                c.g.process(data, now=NOW)
            except MLSError:
                pass
            else:
                raise AssertionError(f"former member {c.name!r} read a later message")
            assert c.g.epoch_authenticator == before

    def check_cannot_read_earlier(self, c: Client, limit: int = 3) -> None:
        """A new member gets an MLSError for application messages of earlier epochs."""
        earlier = [s for s in self.sent if s.epoch < c.g.epoch][-limit:]
        for s in earlier:
            try:
                c.g.process(s.data, now=NOW)
            except MLSError:
                continue
            raise AssertionError(f"new member {c.name!r} read a message of epoch {s.epoch}")


def replace_config(cfg: GroupConfig, **changes: object) -> GroupConfig:
    return dataclasses.replace(cfg, **changes)  # type: ignore[arg-type]
