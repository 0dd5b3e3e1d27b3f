"""Commit and UpdatePath (RFC 9420 §12.4, §7.6).

:class:`HPKECiphertext` is declared in :mod:`mls_core.nodes` (it is shared with the
Welcome's EncryptedGroupSecrets) and re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar

from .codec import LazyVec, Opt, Struct, VarBytes, Vec
from .nodes import HPKECiphertext, LeafNode
from .proposals import ProposalOrRef

__all__ = ["Commit", "HPKECiphertext", "UpdatePath", "UpdatePathNode"]


@dataclass(frozen=True)
class UpdatePathNode(Struct):
    """struct {
        HPKEPublicKey encryption_key;
        HPKECiphertext encrypted_path_secret<V>;
    } UpdatePathNode;                                                    (§7.6)"""

    encryption_key: VarBytes
    # One ciphertext per member below the copath node: after a mass Add, n-1 in all, of
    # which a receiver decrypts one (§7.6). Validated whole, decoded on access.
    encrypted_path_secret: Annotated[Sequence[HPKECiphertext], LazyVec(HPKECiphertext)]


@dataclass(frozen=True)
class UpdatePath(Struct):
    """struct {
        LeafNode leaf_node;
        UpdatePathNode nodes<V>;
    } UpdatePath;                                                        (§7.6)"""

    leaf_node: LeafNode
    nodes: Annotated[tuple[UpdatePathNode, ...], Vec(UpdatePathNode)]


@dataclass(frozen=True)
class Commit(Struct):
    """struct {
        ProposalOrRef proposals<V>;
        optional<UpdatePath> path;
    } Commit;                                                            (§12.4)"""

    # Encoded for the signature (§6.1), the membership tag (§6.2), the transcript hash
    # (§8.2) and the MLSMessage itself: O(n) HPKECiphertexts each time after a mass Add.
    # The wire form (for a received Commit: the bytes received, which the strict decoder
    # guarantees are the canonical encoding) is kept with the immutable value.
    _memoize_wire: ClassVar[bool] = True

    proposals: Annotated[tuple[ProposalOrRef, ...], Vec(ProposalOrRef)]
    path: Annotated[UpdatePath | None, Opt(UpdatePath)]
