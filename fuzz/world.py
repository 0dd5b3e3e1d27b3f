"""The live MLS world the stateful fuzz targets run against.

A three-member group (Alice at leaf 0, Bob at 1, Carol at 2, RFC 9420 §12) over cipher
suite 1 with an ``external_senders`` extension (§12.1.8.1) and an external PSK (§8.4),
advanced to epoch 2 by a Commit of Bob's so that Alice also holds a past epoch (§14),
where Carol proposed an Update and an external PSK that Alice and Bob stored (§12.1), so
Commits can cover proposals by reference. ``bob`` is Bob's state before he stored them
(he can then still send application data), ``bob_refs`` after.
Alice is the fuzzed receiver; the other keys let a target re-sign and re-encrypt mutated
content so that mutations reach the checks behind signatures and AEAD.

Dave holds a KeyPackage (§10) that a Commit of Bob's adds, so the ``join`` target has a
real Welcome to mutate; Eve joins by external Commit (§12.4.3.2).

The world is built once (random keys) and cached as JSON so that crash inputs and the
written seed corpus stay reproducible: see :func:`load_world`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mls_core.ciphersuite import CipherSuite, get_suite
from mls_core.config import GroupConfig
from mls_core.credentials import Credential
from mls_core.framing import WireFormat
from mls_core.group import Group
from mls_core.key_package import KeyPackagePrivate, create_key_package
from mls_core.messages import ExternalSender, KeyPackage, external_senders_extension
from mls_core.proposals import Add

SUITE_ID = 1
NOW = 1_800_000_000
PSK_ID = b"fuzz external psk"
PSK = b"\x42" * 32
WORLD_VERSION = 2
DEFAULT_PATH = Path(__file__).resolve().parent / ".work" / "world.json"


def config(wire_format: int = WireFormat.MLS_PUBLIC_MESSAGE) -> GroupConfig:
    """The GroupConfig every member of the world uses (the external PSK is known)."""
    return GroupConfig(handshake_wire_format=wire_format, padding_block=0,
                       external_psks={PSK_ID: PSK})


@dataclass
class World:
    """Serialized group states and the private keys of every participant."""

    #: signature private key of alice, bob, carol, dave, eve and the external sender "ext"
    keys: dict[str, bytes]
    #: Group.to_bytes() of alice, bob, bob_refs and carol at the live epoch
    states: dict[str, bytes]
    #: Dave's KeyPackage and its private keys
    dave_kp: bytes
    dave_init_priv: bytes
    dave_enc_priv: bytes
    #: Bob's application message of epoch 1 (Alice can still read it, §14)
    past_application: bytes
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def suite(self) -> CipherSuite:
        return get_suite(SUITE_ID)

    def group(self, name: str, wire_format: int = WireFormat.MLS_PUBLIC_MESSAGE) -> Group:
        """A fresh copy of ``name``'s group at the live epoch."""
        return Group.from_bytes(self.states[name], config(wire_format))

    def key_package(self) -> tuple[KeyPackage, KeyPackagePrivate]:
        """Dave's KeyPackage and private keys (the ``join`` target's fixed recipient)."""
        return (KeyPackage.decode(self.dave_kp),
                KeyPackagePrivate(self.dave_init_priv, self.dave_enc_priv, self.keys["dave"]))

    def to_json(self) -> str:
        return json.dumps({
            "version": WORLD_VERSION,
            "keys": {k: v.hex() for k, v in self.keys.items()},
            "states": {k: v.hex() for k, v in self.states.items()},
            "dave_kp": self.dave_kp.hex(), "dave_init_priv": self.dave_init_priv.hex(),
            "dave_enc_priv": self.dave_enc_priv.hex(),
            "past_application": self.past_application.hex(),
        }, indent=1)

    @classmethod
    def from_json(cls, text: str) -> World:
        d = json.loads(text)
        if d.get("version") != WORLD_VERSION:
            raise ValueError("fuzz world: unknown version")
        return cls({k: bytes.fromhex(v) for k, v in d["keys"].items()},
                   {k: bytes.fromhex(v) for k, v in d["states"].items()},
                   bytes.fromhex(d["dave_kp"]), bytes.fromhex(d["dave_init_priv"]),
                   bytes.fromhex(d["dave_enc_priv"]), bytes.fromhex(d["past_application"]))


def build_world() -> World:
    """Create the group from scratch (about 50 ms)."""
    suite = get_suite(SUITE_ID)
    keys = {name: suite.generate_signature_key_pair()[0]
            for name in ("alice", "bob", "carol", "dave", "eve", "ext")}
    ext = ExternalSender(suite.signature_public_key(keys["ext"]), Credential.basic(b"ext"))
    alice = Group.create(SUITE_ID, Credential.basic(b"alice"), keys["alice"],
                         group_id=b"fuzz group", extensions=[external_senders_extension([ext])],
                         now=NOW, config=config())
    kps = {n: create_key_package(suite, Credential.basic(n.encode()), keys[n], now=NOW)
           for n in ("bob", "carol")}
    res = alice.commit([Add(kps["bob"][0]), Add(kps["carol"][0])], now=NOW)
    alice.merge_pending_commit()
    assert res.welcome is not None
    bob = Group.join(res.welcome, *kps["bob"], config=config(), now=NOW)
    carol = Group.join(res.welcome, *kps["carol"], config=config(), now=NOW)
    past_application = bob.encrypt(b"epoch 1 hello")
    # epoch 2: Bob commits with a path, everyone follows
    res = bob.commit([], now=NOW)
    bob.merge_pending_commit()
    alice.process(res.commit, now=NOW)
    carol.process(res.commit, now=NOW)
    plain_bob = bob.to_bytes()
    # Carol's proposals, stored by Alice and Bob: Commits can cover them by reference
    for proposal in (carol.propose_update(now=NOW), carol.propose_external_psk(PSK_ID)):
        alice.process(proposal, now=NOW)
        bob.process(proposal, now=NOW)
    dave_kp, dave_priv = create_key_package(suite, Credential.basic(b"dave"), keys["dave"],
                                            now=NOW)
    return World(keys, {"alice": alice.to_bytes(), "bob": plain_bob,
                        "bob_refs": bob.to_bytes(), "carol": carol.to_bytes()},
                 dave_kp.encode(), dave_priv.init_priv, dave_priv.encryption_priv,
                 past_application)


def load_world(path: Path | None = None, *, create: bool = True) -> World:
    """The cached world at ``path`` (default ``fuzz/.work/world.json`` or
    ``$MLS_FUZZ_WORLD``), built and written there first if missing or unreadable."""
    p = path or Path(os.environ.get("MLS_FUZZ_WORLD") or DEFAULT_PATH)
    if p.is_file():
        try:
            return World.from_json(p.read_text())
        except (ValueError, KeyError):
            pass
    world = build_world()
    if create:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(world.to_json())
    return world
