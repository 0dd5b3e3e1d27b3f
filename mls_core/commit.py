"""Commit and UpdatePath (RFC 9420 §12.4, §7.6).

:class:`HPKECiphertext` is declared in :mod:`mls_core.nodes` (it is shared with the
Welcome's EncryptedGroupSecrets) and re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from .codec import Opt, Struct, VarBytes, Vec
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
    encrypted_path_secret: Annotated[tuple[HPKECiphertext, ...], Vec(HPKECiphertext)]


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

    proposals: Annotated[tuple[ProposalOrRef, ...], Vec(ProposalOrRef)]
    path: Annotated[UpdatePath | None, Opt(UpdatePath)]
