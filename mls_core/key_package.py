"""KeyPackages (RFC 9420 §10) and the local LeafNode checks of §7.3.

Creating a KeyPackage yields the public object and a :class:`KeyPackagePrivate` with the
init and leaf HPKE private keys. Validation takes the current time as a parameter (the
core reads no clock) and a :class:`~mls_core.authentication.CredentialValidator`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .authentication import DEFAULT_VALIDATOR, CredentialValidator
from .ciphersuite import CipherSuite, supported_suites
from .credentials import Credential, CredentialType
from .errors import ValidationError, VerificationError
from .extensions import Extension, ExtensionType
from .key_schedule import PROTOCOL_VERSION_MLS10
from .messages import KeyPackage, KeyPackageTBS
from .nodes import Capabilities, LeafNode, LeafNodeSource, LeafNodeTBS, Lifetime
from .welcome import KEY_PACKAGE_TBS_LABEL, verify_key_package_signature

LEAF_NODE_TBS_LABEL = b"LeafNodeTBS"

#: Extension types every implementation understands without listing them (§7.2).
DEFAULT_EXTENSIONS = frozenset(int(e) for e in ExtensionType)
#: 90 days, a common KeyPackage lifetime (RFC 9750 recommends bounded lifetimes).
DEFAULT_LIFETIME = 90 * 24 * 3600


def default_capabilities(extensions: Iterable[int] = (), proposals: Iterable[int] = (),
                         credentials: Iterable[int] = (CredentialType.BASIC,
                                                       CredentialType.X509)) -> Capabilities:
    """Capabilities advertising MLS 1.0, every suite served now (the experimental PQ
    suites only when enabled, see ciphersuite.enable_experimental_pq) and the given
    non-default extension/proposal types (§7.2)."""
    return Capabilities((PROTOCOL_VERSION_MLS10,), supported_suites(),
                        tuple(extensions), tuple(proposals), tuple(int(c) for c in credentials))


@dataclass(frozen=True, repr=False)
class KeyPackagePrivate:
    """The private halves of a KeyPackage: init key (Welcome decryption) and leaf key."""

    init_priv: bytes
    encryption_priv: bytes
    signature_priv: bytes = field(default=b"")

    def __repr__(self) -> str:
        return "KeyPackagePrivate(<redacted>)"


def sign_leaf_node(suite: CipherSuite, signature_priv: bytes, tbs: LeafNodeTBS) -> LeafNode:
    """SignWithLabel(., "LeafNodeTBS", LeafNodeTBS) (§7.2)."""
    return tbs.signed(suite.sign_with_label(signature_priv, LEAF_NODE_TBS_LABEL, tbs.encode()))


def verify_leaf_signature(suite: CipherSuite, leaf: LeafNode, group_id: bytes | None = None,
                          leaf_index: int | None = None) -> None:
    """Check a LeafNode's signature (§7.3); update/commit leaves need group_id and index."""
    tbs = leaf.to_be_signed_bytes(group_id, leaf_index)
    suite.check_signature(leaf.signature_key, LEAF_NODE_TBS_LABEL, tbs, leaf.signature,
                          "LeafNode (§7.3)")


def verify_leaf_signatures(suite: CipherSuite, leaves: Sequence[tuple[int, LeafNode]],
                           group_id: bytes) -> None:
    """:func:`verify_leaf_signature` for each (leaf_index, leaf) of a tree, verified as
    one batch (:meth:`CipherSuite.verify_many_with_label`); VerificationError names the
    first leaf, in the given order, whose signature is invalid (§7.3, §12.4.3.1)."""
    items = [(leaf.signature_key, leaf.to_be_signed_bytes(group_id, i), leaf.signature)
             for i, leaf in leaves]
    results = suite.verify_many_with_label(LEAF_NODE_TBS_LABEL, items)
    for (i, _), ok in zip(leaves, results, strict=True):
        if not ok:
            raise VerificationError(f"invalid signature on LeafNode (§7.3) at leaf {i}")


def create_key_package(
    suite: CipherSuite,
    credential: Credential,
    signature_priv: bytes,
    *,
    now: int,
    lifetime: int = DEFAULT_LIFETIME,
    capabilities: Capabilities | None = None,
    leaf_extensions: tuple[Extension, ...] = (),
    extensions: tuple[Extension, ...] = (),
) -> tuple[KeyPackage, KeyPackagePrivate]:
    """A fresh KeyPackage valid from ``now`` (seconds since the epoch) for ``lifetime``
    seconds, with new init and leaf HPKE keys (§10)."""
    init_priv, init_pub = suite.generate_key_pair()
    enc_priv, enc_pub = suite.generate_key_pair()
    leaf_tbs = LeafNodeTBS(
        encryption_key=enc_pub,
        signature_key=suite.signature_public_key(signature_priv),
        credential=credential,
        capabilities=capabilities or default_capabilities(),
        leaf_node_source=LeafNodeSource.KEY_PACKAGE,
        source_data=Lifetime(max(0, now - 3600), now + lifetime),
        extensions=leaf_extensions,
        group_context=None,
    )
    leaf = sign_leaf_node(suite, signature_priv, leaf_tbs)
    tbs = KeyPackageTBS(PROTOCOL_VERSION_MLS10, suite.id, init_pub, leaf, extensions)
    kp = tbs.signed(suite.sign_with_label(signature_priv, b"KeyPackageTBS", tbs.encode()))
    return kp, KeyPackagePrivate(init_priv, enc_priv, signature_priv)


def check_lifetime(leaf: LeafNode, now: int | None) -> None:
    """§7.3: the current time must lie within the leaf's lifetime (when given)."""
    lt = leaf.lifetime
    if now is not None and lt is not None and not lt.not_before <= now <= lt.not_after:
        raise ValidationError("§7.3: LeafNode lifetime does not cover the current time")


def check_leaf_extensions_supported(leaf: LeafNode) -> None:
    """§7.3: each leaf extension type must be listed in the leaf's own capabilities."""
    if not leaf.extensions:
        return
    listed = set(leaf.capabilities.extensions) | DEFAULT_EXTENSIONS
    for ext in leaf.extensions:
        if ext.extension_type not in listed:
            raise ValidationError(f"§7.3: leaf extension {ext.extension_type} not in its "
                                  "capabilities")
    _check_unique_extensions(leaf.extensions, "LeafNode")


def _check_unique_extensions(extensions: tuple[Extension, ...], where: str) -> None:
    types = [e.extension_type for e in extensions]
    if len(types) != len(set(types)):
        raise ValidationError(f"§13.4: {where} lists an extension type twice")


def key_package_signatures_ok(suite: CipherSuite,
                              kps: Sequence[KeyPackage]) -> list[tuple[bool, bool]]:
    """(LeafNode signature valid, KeyPackage signature valid) for each KeyPackage
    (§7.3, §10.1), checked as two batches (:meth:`CipherSuite.verify_many_with_label`,
    several threads for a large Commit of Adds). Feed each pair to
    :func:`validate_key_package` so errors still surface in the usual order."""
    # A leaf of another source is rejected before its signature matters (§7.3); its
    # LeafNodeTBS would need a group context, so it is not verified here.
    ok = [kp for kp in kps if kp.leaf_node.leaf_node_source == LeafNodeSource.KEY_PACKAGE]
    leaves = suite.verify_many_with_label(LEAF_NODE_TBS_LABEL, [
        (kp.leaf_node.signature_key, kp.leaf_node.to_be_signed_bytes(None, None),
         kp.leaf_node.signature) for kp in ok])
    packages = suite.verify_many_with_label(KEY_PACKAGE_TBS_LABEL, [
        (kp.leaf_node.signature_key, kp.to_be_signed().encode(), kp.signature) for kp in ok])
    verdicts = iter(zip(leaves, packages, strict=True))
    return [next(verdicts) if kp.leaf_node.leaf_node_source == LeafNodeSource.KEY_PACKAGE
            else (False, False) for kp in kps]


def validate_key_package(
    suite: CipherSuite,
    kp: KeyPackage,
    *,
    now: int | None = None,
    validator: CredentialValidator = DEFAULT_VALIDATOR,
    signatures_ok: tuple[bool, bool] | None = None,
) -> None:
    """KeyPackage validation (§10.1) plus the group-independent LeafNode checks (§7.3).

    ``signatures_ok``, from :func:`key_package_signatures_ok`, replaces the two
    signature checks by their batch verdicts. Group-dependent checks (required
    capabilities, credential types in use, uniqueness of keys among members) are done by
    the group layer when the KeyPackage is added."""
    if kp.version != PROTOCOL_VERSION_MLS10:
        raise ValidationError(f"§10.1: KeyPackage version {kp.version} is not mls10")
    if kp.cipher_suite != suite.id:
        raise ValidationError("§10.1: KeyPackage cipher suite differs from the group's")
    leaf = kp.leaf_node
    if leaf.leaf_node_source != LeafNodeSource.KEY_PACKAGE:
        raise ValidationError("§7.3: KeyPackage leaf_node_source must be key_package")
    validator.validate(leaf.credential, leaf.signature_key)
    if signatures_ok is None:
        verify_leaf_signature(suite, leaf)
        verify_key_package_signature(suite, kp)
    elif not signatures_ok[0]:
        raise VerificationError("invalid signature on LeafNode (§7.3)")
    elif not signatures_ok[1]:
        raise VerificationError("invalid signature on KeyPackage (§10.1)")
    check_lifetime(leaf, now)
    check_leaf_extensions_supported(leaf)
    _check_unique_extensions(kp.extensions, "KeyPackage")
    # Capabilities need not list the KeyPackage's own suite or version (§7.2 lists what
    # else is supported; the official treekem vectors have such leaves), so no check here.
    if leaf.credential.credential_type not in leaf.capabilities.credentials:
        raise ValidationError("§7.2: leaf capabilities omit its own credential type")
    if leaf.encryption_key == kp.init_key:
        raise ValidationError("§10.1: init_key equals the leaf encryption_key")
