"""The 23 actions and the per-run state they share (RUNNER.md §2.4–§2.6).

A :class:`RunState` holds one run's tables: actor to client, actor to state ID, actor to
transaction ID, actor to signer ID, one message-cache slot per step, the current cipher
suite and the transcript. Each action reads its parameters first (a Go struct is decoded
before any RPC), then issues RPCs strictly in order; the first failing RPC or check raises
:class:`StepError` and the rest of the step is not sent.

Deviation from main.go (RUNNER.md §5 item 12): a step index outside the script or a name
with no assigned client is an ordinary step error here, not a crash.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]

from interop.runner.clients import Client
from interop.runner.config import Script, Step
from interop.runner.errors import StepError
from interop.runner.params import Extension, Params
from interop.runner.proto import field_bytes, field_int, rpc_table


@dataclass(frozen=True)
class TranscriptEntry:
    """One successful RPC (Name, SupportedCiphersuites and Free are never recorded)."""

    actor: str
    rpc: str
    request: Message
    response: Message


@dataclass
class RunState:
    """Runner-side state of one run (RUNNER.md §2.4)."""

    script: Script
    clients: Mapping[str, Client]
    suite: int
    encrypt: bool
    common_suites: tuple[int, ...]
    rpc_timeout: float = 120.0
    record: bool = False
    states: dict[str, int] = field(default_factory=dict)
    transactions: dict[str, int] = field(default_factory=dict)
    signers: dict[str, int] = field(default_factory=dict)
    cache: list[dict[str, bytes]] = field(default_factory=list)
    transcript: list[TranscriptEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cache = [{} for _ in self.script.steps]

    def client(self, actor: str) -> Client:
        try:
            return self.clients[actor]
        except KeyError:
            raise StepError(f"Malformed step: unknown actor [{actor}]") from None

    def call(self, actor: str, rpc: str, **fields: object) -> Message:
        """Call ``rpc`` on ``actor``'s client and record it in the transcript."""
        client = self.client(actor)
        try:
            request = rpc_table()[rpc].request(**fields)
        except (TypeError, ValueError) as exc:
            raise StepError(f"cannot build {rpc} request: {exc}") from exc
        response = client.call(rpc, request, self.rpc_timeout)
        if self.record:
            self.transcript.append(TranscriptEntry(actor, rpc, request, response))
        return response

    def sid(self, actor: str) -> int:
        return self.states.get(actor, 0)

    def read(self, index: int, key: str) -> bytes:
        """``C[index].key`` (RUNNER.md §2.4)."""
        if not 0 <= index < len(self.cache):
            raise StepError(f"Malformed step: step index {index} out of range")
        try:
            return self.cache[index][key]
        except KeyError:
            raise StepError(f"No message for key {key} at step {index}") from None

    def transaction(self, actor: str) -> int:
        try:
            return self.transactions[actor]
        except KeyError:
            raise StepError(f"Malformed step: No transaction for {actor}") from None

    def new_group_id(self, change: bool) -> bytes:
        """Reinit's group ID: step 0's ``group_id``, plus ``++`` if asked (§2.5.3)."""
        group_id = self.read(0, "group_id")
        return group_id + b"++" if change else group_id

    def change_suite(self) -> None:
        """Move to the lowest other suite every assigned client supports (§2.5.5)."""
        remaining = [suite for suite in self.common_suites if suite != self.suite]
        if not remaining:
            raise StepError(
                "no remaining supported ciphersuite",
                unsupported="no second cipher suite common to all assigned clients",
            )
        self.suite = min(remaining)


def check_ea(got: Message, want: bytes, who: str) -> None:
    if field_bytes(got, "epoch_authenticator") != want:
        raise StepError(f"{who} failed to agree on epoch authenticator")


def execute_step(run: RunState, step: Step) -> None:
    """Run one step; raises :class:`StepError` on the first failure."""
    handler = ACTIONS.get(step.action)
    if handler is None:
        raise StepError(f"Unknown action: {step.action}")
    handler(run, step, Params(step.action, step.fields))


# --- group creation and joining ------------------------------------------------------


def _create_group(run: RunState, step: Step, p: Params) -> None:
    members = p.strings("members")
    actor = step.actor
    group_id = str(uuid.uuid4()).encode()
    created = run.call(
        actor, "CreateGroup", group_id=group_id, cipher_suite=run.suite,
        encrypt_handshake=run.encrypt, identity=actor.encode(),
    )
    run.states[actor] = field_int(created, "state_id")
    run.cache[step.index]["group_id"] = group_id
    if not members:
        return
    packages = [_key_package(run, member) for member in members]
    commit = run.call(
        actor, "Commit", state_id=run.sid(actor),
        by_value=[{"proposal_type": b"add", "key_package": kp} for _tx, kp in packages],
    )
    welcome = field_bytes(commit, "welcome")
    pending = run.call(actor, "HandlePendingCommit", state_id=run.sid(actor))
    run.states[actor] = field_int(pending, "state_id")
    want = field_bytes(pending, "epoch_authenticator")
    for member, (tx, _kp) in zip(members, packages, strict=True):
        joined = run.call(
            member, "JoinGroup", transaction_id=tx, welcome=welcome,
            encrypt_handshake=run.encrypt, identity=member.encode(),
        )
        check_ea(joined, want, f"Joiner [{member}]")
        run.states[member] = field_int(joined, "state_id")


def _key_package(run: RunState, actor: str) -> tuple[int, bytes]:
    made = run.call(actor, "CreateKeyPackage", cipher_suite=run.suite, identity=actor.encode())
    return field_int(made, "transaction_id"), field_bytes(made, "key_package")


def _create_key_package(run: RunState, step: Step, p: Params) -> None:
    tx, key_package = _key_package(run, step.actor)
    run.transactions[step.actor] = tx
    run.cache[step.index]["key_package"] = key_package


def _join_group(run: RunState, step: Step, p: Params) -> None:
    welcome = run.read(p.integer("welcome"), "welcome")
    tx = run.transaction(step.actor)
    joined = run.call(
        step.actor, "JoinGroup", transaction_id=tx, welcome=welcome,
        encrypt_handshake=run.encrypt, identity=step.actor.encode(),
    )
    run.states[step.actor] = field_int(joined, "state_id")


def _external_join(run: RunState, step: Step, p: Params) -> None:
    joiner, members = p.string("joiner"), p.strings("members")
    external_tree, remove_prior = p.boolean("externalTree"), p.boolean("removePrior")
    psk_steps = p.integers("psks")
    actor, slot = step.actor, run.cache[step.index]
    info = run.call(actor, "GroupInfo", state_id=run.sid(actor), external_tree=external_tree)
    slot["group_info"] = group_info = field_bytes(info, "group_info")
    slot["ratchet_tree"] = tree = field_bytes(info, "ratchet_tree")
    psks = [
        {"psk_id": run.read(i, "psk_id"), "psk_secret": run.read(i, "psk_secret")}
        for i in psk_steps
    ]
    joined = run.call(
        joiner, "ExternalJoin", group_info=group_info, ratchet_tree=tree,
        encrypt_handshake=run.encrypt, identity=joiner.encode(), remove_prior=remove_prior,
        psks=psks,
    )
    run.states[joiner] = field_int(joined, "state_id")
    slot["commit"] = commit = field_bytes(joined, "commit")
    slot["epoch_authenticator"] = want = field_bytes(joined, "epoch_authenticator")
    _distribute(run, [*members, actor], commit, [], want)


def _install_external_psk(run: RunState, step: Step, p: Params) -> None:
    clients = p.strings("clients")
    psk_id, psk_secret = os.urandom(32), os.urandom(32)
    run.cache[step.index].update(psk_id=psk_id, psk_secret=psk_secret)
    for name in clients:
        if name in run.states:
            target = run.states[name]
        else:
            target = run.transactions.get(name, 0)
        run.call(
            name, "StorePSK", state_or_transaction_id=target, psk_id=psk_id,
            psk_secret=psk_secret,
        )


def _group_info(run: RunState, step: Step, p: Params) -> None:
    external_tree = p.boolean("externalTree")
    info = run.call(
        step.actor, "GroupInfo", state_id=run.sid(step.actor), external_tree=external_tree
    )
    run.cache[step.index]["group_info"] = field_bytes(info, "group_info")
    run.cache[step.index]["ratchet_tree"] = field_bytes(info, "ratchet_tree")


# --- proposals --------------------------------------------------------------------------


def _propose(run: RunState, step: Step, rpc: str, **fields: object) -> None:
    made = run.call(step.actor, rpc, state_id=run.sid(step.actor), **fields)
    run.cache[step.index]["proposal"] = field_bytes(made, "proposal")


def _add_proposal(run: RunState, step: Step, p: Params) -> None:
    key_package = run.read(p.integer("keyPackage"), "key_package")
    _propose(run, step, "AddProposal", key_package=key_package)


def _update_proposal(run: RunState, step: Step, p: Params) -> None:
    _propose(run, step, "UpdateProposal")


def _remove_proposal(run: RunState, step: Step, p: Params) -> None:
    _propose(run, step, "RemoveProposal", removed_id=p.string("removed").encode())


def _external_psk_proposal(run: RunState, step: Step, p: Params) -> None:
    psk_id = run.read(p.integer("pskID"), "psk_id")
    _propose(run, step, "ExternalPSKProposal", psk_id=psk_id)


def _resumption_psk_proposal(run: RunState, step: Step, p: Params) -> None:
    _propose(run, step, "ResumptionPSKProposal", epoch_id=p.uint64("epochID"))


def _gce_proposal(run: RunState, step: Step, p: Params) -> None:
    extensions = _extensions(p.extensions("extensions"))
    _propose(run, step, "GroupContextExtensionsProposal", extensions=extensions)


def _extensions(extensions: Iterable[Extension]) -> list[dict[str, object]]:
    return [
        {"extension_type": e.extension_type, "extension_data": e.extension_data}
        for e in extensions
    ]


def describe(run: RunState, p: Params) -> dict[str, object]:
    """A proposal description as a ``ProposalDescription`` (RUNNER.md §2.5.6)."""
    kind = p.string("proposalType")
    out: dict[str, object] = {"proposal_type": kind.encode()}
    if kind == "add":
        out["key_package"] = run.read(p.integer("keyPackage"), "key_package")
    elif kind == "remove":
        out["removed_id"] = p.string("removed").encode()
    elif kind == "externalPSK":
        out["psk_id"] = run.read(p.integer("pskID"), "psk_id")
    elif kind == "resumptionPSK":
        out["epoch_id"] = p.uint64("epochID")
    elif kind == "groupContextExtensions":
        out["extensions"] = _extensions(p.extensions("extensions"))
    elif kind == "reinit":
        out["extensions"] = _extensions(p.extensions("extensions"))
        change_group_id = p.boolean("changeGroupID")
        if p.boolean("changeCipherSuite"):
            run.change_suite()
        out["cipher_suite"] = run.suite
        out["group_id"] = run.new_group_id(change_group_id)
    else:
        raise StepError(f"unknown proposal type [{kind}]")
    return out


# --- commits ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _CommitInputs:
    by_reference: list[bytes]
    by_value: list[dict[str, object]]
    force_path: bool
    external_tree: bool


def _commit_inputs(run: RunState, p: Params) -> _CommitInputs:
    """fullCommit/commit step 1: everything is resolved before the first RPC."""
    force_path, external_tree = p.boolean("force_path"), p.boolean("external_tree")
    by_reference = [run.read(i, "proposal") for i in p.integers("byReference")]
    by_value = [describe(run, item) for item in p.children("byValue")]
    return _CommitInputs(by_reference, by_value, force_path, external_tree)


def _send_commit(run: RunState, step: Step, inputs: _CommitInputs) -> Message:
    """fullCommit/commit step 2: the Commit RPC and the cache writes."""
    made = run.call(
        step.actor, "Commit", state_id=run.sid(step.actor), by_reference=inputs.by_reference,
        by_value=inputs.by_value, force_path=inputs.force_path,
        external_tree=inputs.external_tree,
    )
    slot = run.cache[step.index]
    slot["welcome"] = field_bytes(made, "welcome")
    slot["commit"] = field_bytes(made, "commit")
    if inputs.external_tree:
        slot["ratchet_tree"] = field_bytes(made, "ratchet_tree")
    return made


def _distribute(
    run: RunState, members: Sequence[str], commit: bytes, proposals: list[bytes], want: bytes
) -> None:
    for member in members:
        handled = run.call(
            member, "HandleCommit", state_id=run.sid(member), proposal=proposals, commit=commit
        )
        check_ea(handled, want, f"Member [{member}]")
        run.states[member] = field_int(handled, "state_id")


def _full_commit(run: RunState, step: Step, p: Params) -> None:
    members, joiners = p.strings("members"), p.strings("joiners")
    inputs = _commit_inputs(run, p)
    made = _send_commit(run, step, inputs)
    pending = run.call(step.actor, "HandlePendingCommit", state_id=run.sid(step.actor))
    run.states[step.actor] = field_int(pending, "state_id")
    want = field_bytes(pending, "epoch_authenticator")
    run.cache[step.index]["epoch_authenticator"] = want
    commit = field_bytes(made, "commit")
    _distribute(run, members, commit, inputs.by_reference, want)
    welcome = field_bytes(made, "welcome")
    tree = field_bytes(made, "ratchet_tree") if inputs.external_tree else b""
    for joiner in joiners:
        tx = run.transaction(joiner)
        joined = run.call(
            joiner, "JoinGroup", transaction_id=tx, welcome=welcome,
            encrypt_handshake=run.encrypt, identity=joiner.encode(), ratchet_tree=tree,
        )
        check_ea(joined, want, f"Joiner [{joiner}]")
        run.states[joiner] = field_int(joined, "state_id")


def _commit(run: RunState, step: Step, p: Params) -> None:
    _send_commit(run, step, _commit_inputs(run, p))


def _handle_commit(run: RunState, step: Step, p: Params) -> None:
    commit = run.read(p.integer("commit"), "commit")
    proposals = [run.read(i, "proposal") for i in p.integers("byReference")]
    handled = run.call(
        step.actor, "HandleCommit", state_id=run.sid(step.actor), proposal=proposals,
        commit=commit,
    )
    run.states[step.actor] = field_int(handled, "state_id")


def _handle_pending_commit(run: RunState, step: Step, p: Params) -> None:
    handled = run.call(step.actor, "HandlePendingCommit", state_id=run.sid(step.actor))
    run.states[step.actor] = field_int(handled, "state_id")


# --- application messages ---------------------------------------------------------------


def _protect(run: RunState, step: Step, p: Params) -> None:
    aad = p.string("authenticatedData").encode()
    plaintext = p.string("plaintext").encode()
    made = run.call(
        step.actor, "Protect", state_id=run.sid(step.actor), authenticated_data=aad,
        plaintext=plaintext,
    )
    run.cache[step.index].update(
        authenticatedData=aad, plaintext=plaintext, ciphertext=field_bytes(made, "ciphertext")
    )


def _unprotect(run: RunState, step: Step, p: Params) -> None:
    index = p.integer("ciphertext")
    ciphertext = run.read(index, "ciphertext")
    opened = run.call(
        step.actor, "Unprotect", state_id=run.sid(step.actor), ciphertext=ciphertext
    )
    aad, plaintext = field_bytes(opened, "authenticated_data"), field_bytes(opened, "plaintext")
    if aad != run.read(index, "authenticatedData"):
        raise StepError("Incorrect authenticated data")
    if plaintext != run.read(index, "plaintext"):
        raise StepError("Incorrect plaintext")
    run.cache[step.index].update(authenticatedData=aad, plaintext=plaintext)


# --- reinit and branch ------------------------------------------------------------------


def _ordered_set(names: Iterable[str], without: str) -> list[str]:
    return [name for name in dict.fromkeys(names) if name != without]


def _reinit(run: RunState, step: Step, p: Params) -> None:
    proposer, committer, welcomer = p.string("proposer"), p.string("committer"), p.string(
        "welcomer"
    )
    members, extensions = p.strings("members"), _extensions(p.extensions("extensions"))
    change_suite, change_group_id = p.boolean("changeCipherSuite"), p.boolean("changeGroupID")
    force_path, external_tree = p.boolean("forcePath"), p.boolean("externalTree")
    external_proposal = p.integer("externalReinitProposal")
    extra = [proposer] if proposer else []
    not_committer = _ordered_set([welcomer, *members, *extra], committer)
    not_welcomer = _ordered_set([committer, *members, *extra], welcomer)

    group_id = run.new_group_id(change_group_id)
    if change_suite:
        run.change_suite()
    if proposer:
        proposed = run.call(
            proposer, "ReInitProposal", state_id=run.sid(proposer), cipher_suite=run.suite,
            group_id=group_id, extensions=extensions,
        )
        proposal = field_bytes(proposed, "proposal")
    else:
        proposal = run.read(external_proposal, "proposal")

    made = run.call(
        committer, "ReInitCommit", state_id=run.sid(committer), by_reference=[proposal]
    )
    commit = field_bytes(made, "commit")
    pending = run.call(committer, "HandlePendingReInitCommit", state_id=run.sid(committer))
    want = field_bytes(pending, "epoch_authenticator")
    reinit_ids = {committer: field_int(pending, "reinit_id")}
    key_packages = {committer: field_bytes(pending, "key_package")}
    for member in not_committer:
        handled = run.call(
            member, "HandleReInitCommit", state_id=run.sid(member), proposal=[proposal],
            commit=commit,
        )
        check_ea(handled, want, f"Member [{member}]")
        reinit_ids[member] = field_int(handled, "reinit_id")
        key_packages[member] = field_bytes(handled, "key_package")

    welcomed = run.call(
        welcomer, "ReInitWelcome", reinit_id=reinit_ids.get(welcomer, 0),
        key_package=[key_packages.get(m, b"") for m in not_welcomer], force_path=force_path,
        external_tree=external_tree,
    )
    run.states[welcomer] = field_int(welcomed, "state_id")
    welcome, want = field_bytes(welcomed, "welcome"), field_bytes(welcomed, "epoch_authenticator")
    tree = field_bytes(welcomed, "ratchet_tree") if external_tree else b""
    for member in not_welcomer:
        joined = run.call(
            member, "HandleReInitWelcome", reinit_id=reinit_ids.get(member, 0),
            welcome=welcome, ratchet_tree=tree,
        )
        if field_bytes(joined, "epoch_authenticator") != want:
            raise StepError(f"Member [{member}] failed to agree on reinit epoch authenticator")
        run.states[member] = field_int(joined, "state_id")


def _branch(run: RunState, step: Step, p: Params) -> None:
    members, extensions = p.strings("members"), _extensions(p.extensions("extensions"))
    force_path, external_tree = p.boolean("force_path"), p.boolean("external_tree")
    packages = [_key_package(run, member) for member in members]
    made = run.call(
        step.actor, "CreateBranch", state_id=run.sid(step.actor),
        group_id=str(uuid.uuid4()).encode(), extensions=extensions,
        key_packages=[kp for _tx, kp in packages], force_path=force_path,
        external_tree=external_tree,
    )
    welcome, want = field_bytes(made, "welcome"), field_bytes(made, "epoch_authenticator")
    tree = field_bytes(made, "ratchet_tree") if external_tree else b""
    run.states[step.actor] = field_int(made, "state_id")
    old_states: dict[str, int] = {}
    for member, (tx, _kp) in zip(members, packages, strict=True):
        handled = run.call(
            member, "HandleBranch", state_id=run.sid(member), transaction_id=tx,
            welcome=welcome, ratchet_tree=tree,
        )
        check_ea(handled, want, f"Member [{member}]")
        old_states[member] = run.sid(member)
        run.states[member] = field_int(handled, "state_id")
    free = rpc_table()["Free"].request
    for member, state_id in old_states.items():
        run.client(member).call("Free", free(state_id=state_id), run.rpc_timeout)


# --- external proposals -----------------------------------------------------------------


def _new_member_add_proposal(run: RunState, step: Step, p: Params) -> None:
    joiner = p.string("joiner")
    info = run.call(step.actor, "GroupInfo", state_id=run.sid(step.actor), external_tree=False)
    made = run.call(
        joiner, "NewMemberAddProposal", group_info=field_bytes(info, "group_info"),
        identity=joiner.encode(),
    )
    run.transactions[joiner] = field_int(made, "transaction_id")
    slot = run.cache[step.index]
    for key in ("proposal", "init_priv", "encryption_priv", "signature_priv"):
        slot[key] = field_bytes(made, key)


def _add_external_signer(run: RunState, step: Step, p: Params) -> None:
    signer = p.string("signer")
    made = run.call(
        signer, "CreateExternalSigner", cipher_suite=run.suite, identity=signer.encode()
    )
    run.signers[signer] = field_int(made, "signer_id")
    _propose(
        run, step, "AddExternalSigner", external_sender=field_bytes(made, "external_sender")
    )


def _external_signer_proposal(run: RunState, step: Step, p: Params) -> None:
    member, description = p.string("member"), p.child("description")
    info = run.call(member, "GroupInfo", state_id=run.sid(member), external_tree=True)
    proposal = describe(run, description)
    made = run.call(
        step.actor, "ExternalSignerProposal", signer_id=run.signers.get(step.actor, 0),
        group_info=field_bytes(info, "group_info"),
        ratchet_tree=field_bytes(info, "ratchet_tree"), description=proposal,
    )
    run.cache[step.index]["proposal"] = field_bytes(made, "proposal")


Action = Callable[[RunState, Step, Params], None]

#: Action name to handler (RUNNER.md §2.6); the keys equal ``config.ACTION_NAMES``.
ACTIONS: Mapping[str, Action] = {
    "createGroup": _create_group,
    "createKeyPackage": _create_key_package,
    "joinGroup": _join_group,
    "externalJoin": _external_join,
    "installExternalPSK": _install_external_psk,
    "groupInfo": _group_info,
    "addProposal": _add_proposal,
    "updateProposal": _update_proposal,
    "removeProposal": _remove_proposal,
    "externalPSKProposal": _external_psk_proposal,
    "resumptionPSKProposal": _resumption_psk_proposal,
    "groupContextExtensionsProposal": _gce_proposal,
    "fullCommit": _full_commit,
    "commit": _commit,
    "handleCommit": _handle_commit,
    "handlePendingCommit": _handle_pending_commit,
    "protect": _protect,
    "unprotect": _unprotect,
    "reinit": _reinit,
    "branch": _branch,
    "newMemberAddProposal": _new_member_add_proposal,
    "addExternalSigner": _add_external_signer,
    "externalSignerProposal": _external_signer_proposal,
}
