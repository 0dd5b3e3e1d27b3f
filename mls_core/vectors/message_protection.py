"""message-protection vectors: PublicMessage / PrivateMessage protect and unprotect (§6)."""

from __future__ import annotations

from typing import Any

from ..ciphersuite import CipherSuite, get_suite
from ..commit import Commit
from ..errors import UsageError
from ..framing import ContentType, FramedContent, MLSMessage, Sender, WireFormat
from ..key_schedule import PROTOCOL_VERSION_MLS10, GroupContext
from ..proposals import Proposal
from ..protection import (
    from_private_message,
    from_public_message,
    sign_content,
    to_private_message,
    to_public_message,
    verify_content,
)
from ..secret_tree import SecretTree
from ._check import VectorMismatch, expect, expect_true, h

SENDER_LEAF = 1


class _Ctx:
    def __init__(self, v: dict[str, Any]) -> None:
        self.suite: CipherSuite = get_suite(v["cipher_suite"])
        self.group_context = GroupContext(
            PROTOCOL_VERSION_MLS10, v["cipher_suite"], h(v["group_id"]), v["epoch"],
            h(v["tree_hash"]), h(v["confirmed_transcript_hash"]), (),
        )
        self.sig_priv, self.sig_pub = h(v["signature_priv"]), h(v["signature_pub"])
        self.encryption_secret = h(v["encryption_secret"])
        self.sender_data_secret = h(v["sender_data_secret"])
        self.membership_key = h(v["membership_key"])

    def secret_tree(self) -> SecretTree:
        return SecretTree(self.suite, self.encryption_secret, 2)

    def framed(self, content_type: int, body: bytes | Proposal | Commit) -> FramedContent:
        gc = self.group_context
        return FramedContent(gc.group_id, gc.epoch, Sender.member(SENDER_LEAF), b"",
                             content_type, body)


def _check_public(ctx: _Ctx, wire: bytes, want_body: object) -> bytes | None:
    """Unprotect a vector PublicMessage; return its confirmation tag."""
    msg = MLSMessage.decode(wire).public_message
    expect_true("wire format is PublicMessage", msg is not None)
    assert msg is not None
    content = from_public_message(ctx.suite, msg, ctx.group_context, ctx.membership_key)
    verify_content(ctx.suite, ctx.sig_pub, content, ctx.group_context)
    expect("public body", content.content.body, want_body)
    return content.auth.confirmation_tag


def _check_private(ctx: _Ctx, wire: bytes, want_body: object) -> None:
    msg = MLSMessage.decode(wire).private_message
    expect_true("wire format is PrivateMessage", msg is not None)
    assert msg is not None
    tree = ctx.secret_tree()
    content, sd = from_private_message(ctx.suite, msg, ctx.sender_data_secret, tree.get)
    expect("sender leaf", sd.leaf_index, SENDER_LEAF)
    verify_content(ctx.suite, ctx.sig_pub, content, ctx.group_context)
    expect("private body", content.content.body, want_body)


def _roundtrip_public(ctx: _Ctx, ct: int, body: Any, tag: bytes | None) -> None:
    signed = sign_content(ctx.suite, ctx.sig_priv, WireFormat.MLS_PUBLIC_MESSAGE,
                          ctx.framed(ct, body), ctx.group_context, tag)
    pub = to_public_message(ctx.suite, signed, ctx.group_context, ctx.membership_key)
    wire = MLSMessage.of(pub).encode()
    _check_public(ctx, wire, body)


def _roundtrip_private(ctx: _Ctx, ct: int, body: Any, tag: bytes | None) -> None:
    signed = sign_content(ctx.suite, ctx.sig_priv, WireFormat.MLS_PRIVATE_MESSAGE,
                          ctx.framed(ct, body), ctx.group_context, tag)
    key = ctx.secret_tree().next(SENDER_LEAF, ct)
    priv = to_private_message(ctx.suite, signed, ctx.sender_data_secret, key, padding=7)
    _check_private(ctx, MLSMessage.of(priv).encode(), body)


def check(v: dict[str, Any]) -> None:
    ctx = _Ctx(v)
    proposal = Proposal.decode(h(v["proposal"]))
    commit = Commit.decode(h(v["commit"]))
    app = h(v["application"])

    _check_public(ctx, h(v["proposal_pub"]), proposal)
    _roundtrip_public(ctx, ContentType.PROPOSAL, proposal, None)
    _check_private(ctx, h(v["proposal_priv"]), proposal)
    _roundtrip_private(ctx, ContentType.PROPOSAL, proposal, None)

    tag = _check_public(ctx, h(v["commit_pub"]), commit)
    tag = tag or bytes(ctx.suite.hash_length)
    _roundtrip_public(ctx, ContentType.COMMIT, commit, tag)
    _check_private(ctx, h(v["commit_priv"]), commit)
    _roundtrip_private(ctx, ContentType.COMMIT, commit, tag)

    try:
        _roundtrip_public(ctx, ContentType.APPLICATION, app, None)
    except UsageError:
        pass
    else:
        raise VectorMismatch("protecting application data as a PublicMessage must fail")
    _check_private(ctx, h(v["application_priv"]), app)
    _roundtrip_private(ctx, ContentType.APPLICATION, app, None)
