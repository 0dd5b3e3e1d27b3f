"""Real MLS objects for the XMPP transport's tests: the transport now checks Welcomes
(they must name a KeyPackageRef the device published) and GroupInfo (verified as a
joiner would, bound to the account that posted it), so fake bytes no longer pass."""

from __future__ import annotations

import time
from dataclasses import replace

from mls_core.ciphersuite import get_suite
from mls_core.credentials import Credential
from mls_core.framing import MLSMessage
from mls_core.group import Group
from mls_core.key_package import create_key_package
from mls_core.proposals import Add
from mls_core.welcome import sign_group_info
from transports.base import KeyPackageEntry


def mls_group(identity: str, group_id: bytes | None = None, *,
              epochs: int = 0) -> tuple[Group, bytes]:
    """A one-member group of ``identity`` (basic credential) at epoch ``epochs``, and its
    signature private key."""
    priv, _ = get_suite(1).generate_signature_key_pair()
    group = Group.create(1, Credential.basic(identity.encode()), priv, group_id=group_id,
                         now=int(time.time()))
    for _ in range(epochs):
        group.commit([])
        group.merge_pending_commit()
    return group, priv


def throwaway_welcome(identity: str) -> tuple[bytes, KeyPackageEntry]:
    """A real MLSMessage(Welcome) adding a fresh one-use KeyPackage of ``identity`` to a
    throwaway group, and that KeyPackage as an entry to publish."""
    suite = get_suite(1)
    priv, _ = suite.generate_signature_key_pair()
    kp, _ = create_key_package(suite, Credential.basic(identity.encode()), priv,
                               now=int(time.time()))
    group, _ = mls_group("xmpp:adder@localhost")
    result = group.commit([Add(kp)])
    assert result.welcome is not None
    return result.welcome, KeyPackageEntry(suite.make_key_package_ref(kp.encode()),
                                           MLSMessage.of(kp).encode())


def naming(welcome: bytes, ref: bytes) -> bytes:
    """``welcome`` with its (first) recipient's KeyPackageRef replaced by ``ref``: it
    names someone else's KeyPackage, which it cannot open (a forged-looking Welcome)."""
    decoded = MLSMessage.decode(welcome).welcome
    assert decoded is not None
    first, *rest = decoded.secrets
    forged = replace(decoded, secrets=(replace(first, new_member=ref), *rest))
    return MLSMessage.of(forged).encode()


def at_epoch(group_info: bytes, epoch: int, signature_priv: bytes) -> bytes:
    """A copy of an MLSMessage(GroupInfo) claiming ``epoch``, signed again with
    ``signature_priv``: with the signer leaf's own key it verifies as a joiner would
    (signature, tree hash, tree), so only its binding to the poster can reject it."""
    info = MLSMessage.decode(group_info).group_info
    assert info is not None
    tbs = replace(info, group_context=replace(info.group_context, epoch=epoch)).to_be_signed()
    return MLSMessage.of(sign_group_info(get_suite(1), signature_priv, tbs)).encode()
