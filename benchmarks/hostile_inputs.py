"""What refusing (or accepting) hostile join inputs costs (issue 16; docs/security.md,
"Bounds").

``python -m benchmarks.hostile_inputs [--no-memory] [--unbounded]``

Inputs, as a Delivery Service or anyone publishing a GroupInfo could supply them:

* **2^20 leaves, Welcome** — a real Welcome without the tree, and an out-of-band tree of
  2^20 leaves (2 MiB: the real committer's leaf, 2^21 - 3 blank nodes, one more leaf).
* **2^20 leaves, GroupInfo** — a GroupInfo carrying that tree, validly signed by its
  leaf 0 (the attacker's own key): ``Group.join_external``'s first step.
* **2^16 leaves, Welcome** — the same shape at the leaf bound (128 KiB): accepted for
  decoding, refused on its tree hash (every node hashed).
* **4 MiB, Welcome** — the real Welcome with a ~4 MiB out-of-band tree of real-looking
  leaves (distinct keys, basic credentials, leaf 0 the real committer's so that the
  GroupInfo signature verifies) that is not the group's: refused on its tree hash.
* **4 MiB, GroupInfo, bad signature** — a GroupInfo carrying such a tree, signed by
  its last leaf with a wrong signature.
* **4 MiB, GroupInfo, valid** — a consistent GroupInfo of a ~20,000-member group made
  by the attacker (every leaf validly signed, blank parents): accepted after full
  validation (``join_flow.verified_group_info``, what ``join_external`` runs first).
* **over the byte bound** — a 5 MiB out-of-band tree; **not mls10** — the Welcome and
  the GroupInfo with version 0x0002.

For each: the error (or "accepted"), CPU seconds (``time.process_time``, best of 3) and,
in a second pass under tracemalloc, the peak of memory allocated during the call and
what is still held after it. ``--unbounded`` runs the two 2^20 inputs again with the
bounds lifted (what the bounds save: slow, ~15 s). Building the inputs takes ~10 s.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from mls_core import join_flow
from mls_core.ciphersuite import CipherSuite, get_suite
from mls_core.config import GroupConfig, InputLimits
from mls_core.credentials import Credential
from mls_core.errors import MLSError
from mls_core.extensions import Extension, ExtensionType
from mls_core.framing import MLSMessage
from mls_core.group import Group
from mls_core.key_package import create_key_package, sign_leaf_node
from mls_core.key_schedule import GroupContext
from mls_core.messages import GroupInfoTBS
from mls_core.nodes import LeafNode, LeafNodeTBS, Node, ParentNode, encode_ratchet_tree
from mls_core.proposals import Add
from mls_core.ratchet_tree import RatchetTree
from mls_core.welcome import sign_group_info

NOW = 1_800_000_000
MIB = 1 << 20
TARGET_CPU_S = 1.0
TARGET_MEM_MIB = 64


@dataclass
class Case:
    name: str
    run: Callable[[], object]
    expect: str  #: the MLSError class name that refuses the input, or "accepted"
    bounded: bool = True


# --------------------------------------------------------------------------- inputs


def real_looking_leaf(suite: CipherSuite, template: LeafNode, i: int,
                      sign: bool) -> LeafNode:
    """A leaf like a member's KeyPackage leaf: its own keys and identity; validly signed
    if ``sign`` (a real signature key pair), else with random key and signature bytes."""
    if sign:
        sig_priv, sig_pub = suite.generate_signature_key_pair()
    else:
        sig_priv, sig_pub = b"", os.urandom(len(template.signature_key))
    tbs = LeafNodeTBS(os.urandom(len(template.encryption_key)), sig_pub,
                      Credential.basic(b"@user%06d:example.org" % i), template.capabilities,
                      template.leaf_node_source, template.source_data, template.extensions,
                      None)
    if sign:
        return sign_leaf_node(suite, sig_priv, tbs)
    return tbs.signed(os.urandom(len(template.signature)))


def big_blank_tree(first: LeafNode, last: LeafNode, n_leaves: int) -> bytes:
    """``n_leaves`` leaves, all blank but the first and the last: 1 byte per blank."""
    nodes: list[Node | None] = [None] * (2 * n_leaves - 1)
    nodes[0], nodes[-1] = Node.of(first), Node.of(last)
    return encode_ratchet_tree(nodes)


def full_tree(suite: CipherSuite, first: LeafNode, template: LeafNode, budget: int,
              sign: bool, parents: bool) -> tuple[bytes, list[LeafNode]]:
    """A tree of real-looking leaves like ``template`` (``first`` at leaf 0), with
    non-blank parents if ``parents`` (random keys and parent hashes), as many as fit in
    ``budget`` bytes."""
    leaf_size = len(real_looking_leaf(suite, template, 999_999, sign=False).encode()) + 2
    parent = ParentNode(os.urandom(32), os.urandom(32), ())
    per_leaf = leaf_size + (len(parent.encode()) + 2 if parents else 1)
    n = budget // per_leaf
    leaves = [first, *(real_looking_leaf(suite, template, i, sign) for i in range(1, n))]
    nodes: list[Node | None] = []
    for i, leaf in enumerate(leaves):
        if i:
            nodes.append(Node.of(ParentNode(os.urandom(32), os.urandom(32), ()))
                         if parents else None)
        nodes.append(Node.of(leaf))
    return encode_ratchet_tree(nodes), leaves


def signed_group_info(suite: CipherSuite, signer_priv: bytes | None, signer: int, tree: bytes,
                      tree_hash: bytes, version: int = 1) -> bytes:
    """MLSMessage(GroupInfo) carrying ``tree``, signed by ``signer_priv`` (random bytes
    as the signature if None)."""
    context = GroupContext(version, suite.id, b"hostile-group", 7, tree_hash,
                           os.urandom(suite.hash_length), ())
    tbs = GroupInfoTBS(context, (Extension(ExtensionType.RATCHET_TREE, tree),),
                       os.urandom(suite.hash_length), signer)
    if signer_priv is None:
        info = tbs.signed(os.urandom(64))
    else:
        info = sign_group_info(suite, signer_priv, tbs)
    return MLSMessage.of(info).encode()


def with_version(message: bytes, version: int) -> bytes:
    return version.to_bytes(2, "big") + message[2:]


def limits_for(budget: int, max_leaves: int) -> InputLimits:
    """The default bounds at the default arguments (``--quick`` scales them down with
    its inputs)."""
    return InputLimits(max_tree_leaves=max_leaves, max_tree_bytes=budget,
                       max_message_bytes=budget + MIB)


def build_cases(suite: CipherSuite, budget: int = 4 * MIB, max_leaves: int = 1 << 16,
                huge_leaves: int = 1 << 20, unbounded: bool = False) -> list[Case]:
    """The inputs of the module docstring, with trees of ``budget`` bytes and
    ``huge_leaves`` leaves, against bounds of ``budget`` bytes and ``max_leaves``."""
    bounded = GroupConfig(limits=limits_for(budget, max_leaves))
    lifted = GroupConfig(limits=InputLimits(max_tree_leaves=1 << 32, max_tree_bytes=1 << 30,
                                            max_message_bytes=1 << 30))
    creator_sig, _ = suite.generate_signature_key_pair()
    creator = Group.create(suite.id, Credential.basic(b"@creator:example.org"), creator_sig,
                           now=NOW)
    joiner_sig, _ = suite.generate_signature_key_pair()
    kp, priv = create_key_package(suite, Credential.basic(b"@joiner:example.org"), joiner_sig,
                                  now=NOW)
    welcome = creator.commit([Add(kp)], ratchet_tree_in_welcome=False, now=NOW).welcome
    assert welcome is not None
    creator.merge_pending_commit()
    creator_leaf = creator.tree.leaf(0)
    assert creator_leaf is not None

    def join(tree: bytes, data: bytes = welcome,
             config: GroupConfig = bounded) -> Callable[[], object]:
        return lambda: Group.join(data, kp, priv, ratchet_tree=tree, config=config, now=NOW)

    def verify(info: bytes, config: GroupConfig = bounded) -> Callable[[], object]:
        return lambda: join_flow.verified_group_info(info, None, config, None)

    template = kp.leaf_node  # a key_package leaf
    other = real_looking_leaf(suite, template, 1, sign=False)
    huge = big_blank_tree(creator_leaf, other, huge_leaves)
    huge_info = signed_group_info(suite, creator_sig, 0, huge, os.urandom(32))
    widest = big_blank_tree(creator_leaf, other, max_leaves)  # as wide as the bound allows
    fake, fake_leaves = full_tree(suite, creator_leaf, template, budget - 4096, sign=False,
                                  parents=True)
    bad_sig_info = signed_group_info(suite, None, len(fake_leaves) - 1, fake, os.urandom(32))
    leaf_sig, _ = suite.generate_signature_key_pair()
    first = sign_leaf_node(suite, leaf_sig, LeafNodeTBS(
        other.encryption_key, suite.signature_public_key(leaf_sig),
        Credential.basic(b"@user000000:example.org"), other.capabilities,
        other.leaf_node_source, other.source_data, other.extensions, None))
    valid, valid_leaves = full_tree(suite, first, template, budget - 65536, sign=True,
                                    parents=False)
    valid_info = signed_group_info(suite, leaf_sig, 0, valid,
                                   RatchetTree.decode(suite, valid).tree_hash())
    over, _ = full_tree(suite, creator_leaf, template, budget + budget // 4, sign=False,
                        parents=True)
    size, n = f"{budget / MIB:g} MiB", f"2^{huge_leaves.bit_length() - 1} leaves"
    cases = [
        Case(f"{n}, Welcome ({len(huge) / MIB:.1f} MiB tree)", join(huge), "LimitError"),
        Case(f"{n}, GroupInfo ({len(huge_info) / MIB:.1f} MiB)", verify(huge_info),
             "LimitError"),
        Case(f"2^{max_leaves.bit_length() - 1} leaves (the bound), 2 members, Welcome",
             join(widest), "ValidationError"),
        Case(f"{size} tree, {len(fake_leaves)} leaves, Welcome", join(fake),
             "ValidationError"),
        Case(f"{size} GroupInfo, {len(fake_leaves)} leaves, bad signature",
             verify(bad_sig_info), "VerificationError"),
        Case(f"{size} GroupInfo, {len(valid_leaves)} members, valid", verify(valid_info),
             "accepted"),
        Case(f"{len(over) / MIB:.1f} MiB tree (over the byte bound), Welcome", join(over),
             "LimitError"),
        Case("not mls10, Welcome", join(creator.ratchet_tree_bytes(), with_version(welcome, 2)),
             "VersionError"),
        Case("not mls10, GroupInfo", verify(with_version(creator.group_info(), 2)),
             "VersionError"),
    ]
    if unbounded:
        cases += [
            Case(f"{n}, Welcome, unbounded", join(huge, config=lifted), "ValidationError",
                 bounded=False),
            Case(f"{n}, GroupInfo, unbounded", verify(huge_info, lifted), "ValidationError",
                 bounded=False),
        ]
    return cases


# --------------------------------------------------------------------------- measuring


def outcome_of(run: Callable[[], object]) -> tuple[str, str]:
    """(the MLSError class name or "accepted", its message)."""
    try:
        run()
    except MLSError as exc:
        return type(exc).__name__, str(exc)
    return "accepted", ""


def cpu_seconds(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        outcome_of(run)
        best = min(best, time.process_time() - start)
    return best


def memory_mib(run: Callable[[], object]) -> tuple[float, float]:
    """(peak MiB allocated during ``run``, MiB still held after it)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        holder: list[object] = []

        def keep() -> None:
            holder.append(run())

        outcome_of(keep)
        gc.collect()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - base) / MIB, (held - base) / MIB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument("--unbounded", action="store_true",
                        help="also run the 2^20 inputs with the bounds lifted (slow)")
    parser.add_argument("--quick", action="store_true",
                        help="256 KiB trees and 2^14 leaves against bounds of 256 KiB and "
                             "2^12 leaves: a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="CPU time: best of this many")
    args = parser.parse_args(argv)
    budget, max_leaves, huge = ((MIB // 4, 1 << 12, 1 << 14) if args.quick
                                else (4 * MIB, 1 << 16, 1 << 20))
    start = time.perf_counter()
    cases = build_cases(get_suite(1), budget, max_leaves, huge, args.unbounded)
    print(f"inputs built in {time.perf_counter() - start:.1f} s; "
          f"bounds: {limits_for(budget, max_leaves)}")
    print(f"{'input':<50} {'CPU s':>6} {'peak MiB':>8} {'held MiB':>8}  outcome")
    wrong = 0
    for case in cases:
        kind, message = outcome_of(case.run)
        cpu = cpu_seconds(case.run, args.repeat if case.bounded else 1)
        mem = ""
        if not args.no_memory:
            peak, held = memory_mib(case.run)
            mem = f"{peak:8.1f} {held:8.1f}"
        over = case.bounded and (cpu > TARGET_CPU_S or (mem and peak > TARGET_MEM_MIB))
        mark = " (over target)" if over else ""
        if kind != case.expect:
            wrong += 1
            mark += f" (expected {case.expect})"
        text = f"{kind}: {message[:60]}{'…' if len(message) > 60 else ''}" if message else kind
        print(f"{case.name:<50} {cpu:6.3f} {mem:>17}  {text}{mark}")
    print(f"target: {TARGET_CPU_S:g} s CPU and {TARGET_MEM_MIB} MiB peak per input; "
          f"{wrong} unexpected outcome(s)")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
