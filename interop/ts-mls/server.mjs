#!/usr/bin/env node
// MLS interop client (the IETF `mls_client.MLSClient` gRPC service) backed by ts-mls.
//
// Usage: node interop/ts-mls/server.mjs --port N [--host H] [--proto PATH] [--ignore-force-path]
//
// Conventions follow shared/reference/interop/RUNNER.md §4: every message-typed bytes field is a
// full MLSMessage, ratchet trees are the bare `optional<Node> ratchet_tree<V>` encoding, IDs come
// from one counter (never 0) and stay unique for the server's lifetime, state IDs name epoch
// snapshots, Commit/ReInitCommit leave a pending commit on the state they were called on.
// Operations ts-mls cannot perform return UNIMPLEMENTED naming what is missing.

import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  ciphersuites,
  createApplicationMessage,
  createCommit,
  createGroup,
  createGroupInfoWithExternalPub,
  createGroupInfoWithExternalPubAndRatchetTree,
  createProposal,
  decodeExternalSender,
  decodeMlsMessage,
  defaultCapabilities,
  defaultExtensionTypes,
  defaultLifetime,
  encodeExternalSender,
  encodeMlsMessage,
  generateKeyPackage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  joinGroupExternal,
  makePskIndex,
  mlsExporter,
  processPrivateMessage,
  processPublicMessage,
  proposeAddExternal,
  proposeExternal,
} from "ts-mls";
// Deep imports (allowed by ts-mls's `exports` map) for pieces the index does not re-export.
import { defaultClientConfig } from "ts-mls/clientConfig.js";
import { decodeRatchetTree, encodeRatchetTree } from "ts-mls/ratchetTree.js";
import { signLeafNodeCommit } from "ts-mls/leafNode.js";
import { makeResumptionPsk } from "ts-mls/resumption.js";
import { ratchetTreeFromExtension } from "ts-mls/groupInfo.js";
import { externalSenderEncoder } from "ts-mls/externalSender.js";
import { decodeVarLenType, varLenTypeEncoder } from "ts-mls/codec/variableLength.js";
import { encode } from "ts-mls/codec/tlsEncoder.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const TS_MLS_VERSION = JSON.parse(
  readFileSync(resolve(HERE, "node_modules/ts-mls/package.json"), "utf8"),
).version;

// ---------------------------------------------------------------------------------------------
// Errors and gRPC status mapping
// ---------------------------------------------------------------------------------------------

class RpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}
const invalid = (msg) => new RpcError(grpc.status.INVALID_ARGUMENT, msg);
const notFound = (msg) => new RpcError(grpc.status.NOT_FOUND, msg);
const precondition = (msg) => new RpcError(grpc.status.FAILED_PRECONDITION, msg);
const unimplemented = (msg) => new RpcError(grpc.status.UNIMPLEMENTED, `not supported by ts-mls: ${msg}`);

const TS_MLS_ERROR_CODES = {
  CodecError: grpc.status.INVALID_ARGUMENT,
  ValidationError: grpc.status.INVALID_ARGUMENT,
  CryptoVerificationError: grpc.status.INVALID_ARGUMENT,
  UsageError: grpc.status.FAILED_PRECONDITION,
  DependencyError: grpc.status.UNIMPLEMENTED,
  CryptoError: grpc.status.INTERNAL,
  InternalError: grpc.status.INTERNAL,
};

const EXTERNAL_SENDERS_HINT =
  " (ts-mls reads every external_senders extension as one ExternalSender, not as the" +
  " RFC 9420 §12.1.8.1 vector `ExternalSender external_senders<V>`)";

function toStatus(err) {
  if (err instanceof RpcError) return { code: err.code, details: err.message };
  const name = err?.constructor?.name ?? "Error";
  const code = TS_MLS_ERROR_CODES[name] ?? grpc.status.INTERNAL;
  const text = String(err?.message ?? err).replace(/\s+/g, " ").slice(0, 500);
  const hint = /external_sender/i.test(text) ? EXTERNAL_SENDERS_HINT : "";
  return { code, details: `ts-mls ${name}: ${text}${hint}` };
}

// ---------------------------------------------------------------------------------------------
// Byte helpers
// ---------------------------------------------------------------------------------------------

const u8 = (b) => (b ? new Uint8Array(b) : new Uint8Array());
const out = (b) => Buffer.from(b ?? new Uint8Array());
const b64 = (b) => Buffer.from(b).toString("base64");
const bytesEqual = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

function decodeStrict(decoder, bytes, what) {
  let r;
  try {
    r = decoder(bytes, 0);
  } catch {
    r = undefined;
  }
  if (r === undefined || r[1] !== bytes.length) throw invalid(`${what}: malformed encoding`);
  return r[0];
}

function decodeMessage(bytes, what, wireformats) {
  const data = u8(bytes);
  if (data.length === 0) throw invalid(`${what}: empty`);
  const msg = decodeStrict(decodeMlsMessage, data, what);
  if (wireformats && !wireformats.includes(msg.wireformat))
    throw invalid(`${what}: expected ${wireformats.join(" or ")}, got ${msg.wireformat}`);
  return msg;
}

function decodeTree(bytes) {
  const data = u8(bytes);
  if (data.length === 0) return undefined; // "no external tree"
  return decodeStrict(decodeRatchetTree, data, "ratchet_tree");
}

const encodeTree = (tree) => encodeRatchetTree(tree);

function encodeProposalMessage(message) {
  return out(encodeMlsMessage(message));
}

// Ed25519 signing keys come out of WebCrypto as PKCS#8; report the raw 32-byte seed instead.
const ED25519_PKCS8_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
]);
function rawSignaturePrivateKey(key) {
  if (key.length === 48 && bytesEqual(key.subarray(0, 16), ED25519_PKCS8_PREFIX)) return key.slice(16);
  return key;
}

// ---------------------------------------------------------------------------------------------
// Cipher suites
// ---------------------------------------------------------------------------------------------

const SUITE_NAMES = Object.fromEntries(Object.entries(ciphersuites).map(([n, id]) => [id, n]));
const suiteImpls = new Map();
let supportedSuites = [];

async function suiteImpl(id) {
  const name = SUITE_NAMES[id];
  if (name === undefined) throw invalid(`unknown cipher suite ${id}`);
  if (!suiteImpls.has(id)) {
    try {
      suiteImpls.set(id, await getCiphersuiteImpl(getCiphersuiteFromName(name)));
    } catch (e) {
      throw unimplemented(`cipher suite ${id} (${name}): ${e.message}`);
    }
  }
  return suiteImpls.get(id);
}

const suiteImplByName = (name) => suiteImpl(ciphersuites[name]);

async function probeSuites() {
  const ok = [];
  for (const id of Object.values(ciphersuites).sort((a, b) => a - b)) {
    try {
      const cs = await suiteImpl(id);
      const kp = await newKeyPackage(cs, new TextEncoder().encode("probe"));
      await createGroup(new Uint8Array([1]), kp.publicPackage, kp.privatePackage, [], cs);
      ok.push(id);
    } catch {
      suiteImpls.delete(id);
    }
  }
  return ok;
}

// ---------------------------------------------------------------------------------------------
// Server-side tables (all IDs from one counter; never 0)
// ---------------------------------------------------------------------------------------------

let nextId = 1;
const newId = () => nextId++;

/** state_id -> { state, cs, encrypt, identity, psks: Map<b64 psk_id, secret>, pending } */
const states = new Map();
/** transaction_id -> { kp, priv, cs, identity, psks } */
const transactions = new Map();
/** reinit_id -> { suspended, kp, priv, cs, encrypt, identity, psks } */
const reinits = new Map();
/** signer_id -> { cs, identity, signKey, publicKey } */
const signers = new Map();
/** b64(MLSMessage bytes) of a proposal this server sent -> { ref, updateLeafKey? } */
const ownProposals = new Map();
/** b64(MLSMessage bytes) of any proposal seen -> b64(proposal ref) */
const proposalRefs = new Map();

function getState(id) {
  const entry = states.get(id);
  if (entry === undefined) throw notFound(`unknown state_id ${id}`);
  return entry;
}

function storeState(state, from) {
  const id = newId();
  states.set(id, {
    state,
    cs: from.cs,
    encrypt: from.encrypt,
    identity: from.identity,
    psks: from.psks,
    pending: undefined,
  });
  return id;
}

const epochAuthenticator = (state) => out(state.keySchedule.epochAuthenticator);

function pskIndexFor(state, psks) {
  return makePskIndex(state, Object.fromEntries(psks ?? new Map()));
}

// ---------------------------------------------------------------------------------------------
// MLS helpers on top of ts-mls
// ---------------------------------------------------------------------------------------------

function basicCredential(identity) {
  return { credentialType: "basic", identity: u8(identity) };
}

function newKeyPackage(cs, identity) {
  return generateKeyPackage(basicCredential(identity), defaultCapabilities(), defaultLifetime, [], cs);
}

function findLeafByIdentity(tree, identity) {
  const want = u8(identity);
  for (let i = 0; i < tree.length; i += 2) {
    const node = tree[i];
    if (node?.nodeType !== "leaf") continue;
    const cred = node.leaf.credential;
    if (cred.credentialType === "basic" && bytesEqual(cred.identity, want)) return i / 2;
  }
  return undefined;
}

function extensionsFromProto(exts) {
  return (exts ?? []).map((e) => {
    const type = Number(e.extension_type);
    if (!Number.isInteger(type) || type < 0 || type > 0xffff)
      throw invalid(`extension_type ${e.extension_type} is not a uint16`);
    const named = Object.entries(defaultExtensionTypes).find(([, v]) => v === type);
    return { extensionType: named ? named[0] : type, extensionData: u8(e.extension_data) };
  });
}

function epochFromProto(v) {
  try {
    const n = BigInt(v ?? 0);
    if (n < 0n || n >= 1n << 64n) throw new Error();
    return n;
  } catch {
    throw invalid(`epoch_id ${v} is not a uint64`);
  }
}

function cipherSuiteName(id) {
  const name = SUITE_NAMES[id];
  if (name === undefined) throw invalid(`unknown cipher suite ${id}`);
  return name;
}

/**
 * ProposalDescription -> ts-mls Proposal. `ctx` = { cs, groupId, tree } of the group the
 * proposal is for (member state, or GroupInfo for an external signer).
 */
function proposalFromDescription(desc, ctx) {
  const type = Buffer.from(desc.proposal_type ?? []).toString("utf8");
  switch (type) {
    case "add": {
      const msg = decodeMessage(desc.key_package, "key_package", ["mls_key_package"]);
      return { proposalType: "add", add: { keyPackage: msg.keyPackage } };
    }
    case "remove": {
      if (ctx.tree === undefined) throw invalid("remove: no ratchet tree to resolve removed_id");
      const leaf = findLeafByIdentity(ctx.tree, desc.removed_id);
      if (leaf === undefined) throw invalid("remove: no member with that removed_id");
      return { proposalType: "remove", remove: { removed: leaf } };
    }
    case "externalPSK":
      return externalPskProposal(ctx.cs, desc.psk_id);
    case "resumptionPSK":
      return resumptionPskProposal(ctx.cs, ctx.groupId, desc.epoch_id);
    case "groupContextExtensions":
      return {
        proposalType: "group_context_extensions",
        groupContextExtensions: { extensions: extensionsFromProto(desc.extensions) },
      };
    case "reinit":
      return reinitProposal(desc.group_id, desc.cipher_suite, desc.extensions);
    default:
      throw invalid(`unknown proposal_type [${type}]`);
  }
}

function externalPskProposal(cs, pskId) {
  const id = u8(pskId);
  if (id.length === 0) throw invalid("empty psk_id");
  return {
    proposalType: "psk",
    psk: {
      preSharedKeyId: { psktype: "external", pskId: id, pskNonce: cs.rng.randomBytes(cs.kdf.size) },
    },
  };
}

function resumptionPskProposal(cs, groupId, epoch) {
  return {
    proposalType: "psk",
    psk: {
      preSharedKeyId: {
        psktype: "resumption",
        usage: "application",
        pskGroupId: groupId,
        pskEpoch: epochFromProto(epoch),
        pskNonce: cs.rng.randomBytes(cs.kdf.size),
      },
    },
  };
}

function reinitProposal(groupId, suite, extensions) {
  const gid = u8(groupId);
  if (gid.length === 0) throw invalid("reinit: empty group_id");
  return {
    proposalType: "reinit",
    reinit: {
      groupId: gid,
      version: "mls10",
      cipherSuite: cipherSuiteName(suite),
      extensions: extensionsFromProto(extensions),
    },
  };
}

const stateCtx = (entry) => ({
  cs: entry.cs,
  groupId: entry.state.groupContext.groupId,
  tree: entry.state.ratchetTree,
});

/** Create a proposal from a member, store the updated state, remember it as our own. */
async function sendProposal(entry, proposal, updateLeafKey) {
  const before = new Set(Object.keys(entry.state.unappliedProposals));
  const res = await createProposal(entry.state, !entry.encrypt, proposal, entry.cs);
  const ref = Object.keys(res.newState.unappliedProposals).find((r) => !before.has(r));
  entry.state = res.newState;
  const bytes = encodeProposalMessage(res.message);
  ownProposals.set(b64(bytes), { ref, updateLeafKey });
  if (ref !== undefined) proposalRefs.set(b64(bytes), ref);
  return { proposal: bytes };
}

async function processIncoming(state, msg, psks, cs) {
  const pskIndex = pskIndexFor(state, psks);
  if (msg.wireformat === "mls_public_message")
    return { kind: "newState", ...(await processPublicMessage(state, msg.publicMessage, pskIndex, cs)) };
  return processPrivateMessage(state, msg.privateMessage, pskIndex, cs);
}

function contentTypeOf(msg) {
  return msg.wireformat === "mls_public_message"
    ? msg.publicMessage.content.contentType
    : msg.privateMessage.contentType;
}

/**
 * Make sure each by-reference proposal is in `state.unappliedProposals`: our own proposals are
 * already there (a PrivateMessage cannot be decrypted by its sender); others are processed now.
 * Returns the updated state, the refs in order, and any own Update leaf keys referenced.
 */
async function absorbProposals(state, proposalMessages, entry) {
  const refs = [];
  const ownUpdateKeys = [];
  for (const [i, raw] of proposalMessages.entries()) {
    const key = b64(raw);
    const own = ownProposals.get(key);
    const pending = own?.ref === undefined ? undefined : state.unappliedProposals[own.ref];
    // Only ours if this state holds it as sent from our own leaf (members may share a server).
    if (pending !== undefined && pending.senderLeafIndex === state.privatePath.leafIndex) {
      refs.push(own.ref);
      if (own.updateLeafKey !== undefined) ownUpdateKeys.push(own.updateLeafKey);
      continue;
    }
    const known = proposalRefs.get(key);
    if (known !== undefined && state.unappliedProposals[known]) {
      refs.push(known);
      continue;
    }
    const msg = decodeMessage(raw, `proposal[${i}]`, ["mls_public_message", "mls_private_message"]);
    if (contentTypeOf(msg) !== "proposal") throw invalid(`proposal[${i}]: not a proposal message`);
    const before = new Set(Object.keys(state.unappliedProposals));
    const res = await processIncoming(state, msg, entry.psks, entry.cs);
    state = res.newState;
    const ref = Object.keys(state.unappliedProposals).find((r) => !before.has(r)) ?? known;
    if (ref === undefined) throw invalid(`proposal[${i}]: could not be applied`);
    proposalRefs.set(key, ref);
    refs.push(ref);
  }
  return { state, refs, ownUpdateKeys };
}

/** Whether ts-mls will put an UpdatePath in a commit covering these proposals. */
function tsMlsAddsPath(proposals) {
  if (proposals.some((p) => p.proposalType === "reinit")) return false;
  return (
    proposals.length === 0 ||
    proposals.some((p) => p.proposalType === "update" || p.proposalType === "remove")
  );
}

function checkForcePath(forcePath, proposals) {
  if (forcePath && !tsMlsAddsPath(proposals) && !OPTIONS.ignoreForcePath)
    throw unimplemented(
      "force_path: ts-mls createCommit has no option to force an UpdatePath; it only adds one " +
        "for empty commits or commits covering Update/Remove",
    );
}

async function buildCommit(entry, req, { reinitOnly = false } = {}) {
  const absorbed = await absorbProposals(entry.state, req.by_reference ?? [], entry);
  entry.state = absorbed.state; // processed proposals stay with the state
  const byValue = (req.by_value ?? []).map((d) => proposalFromDescription(d, stateCtx(entry)));
  const refs = [...new Set(absorbed.refs)];
  const committed = Object.fromEntries(refs.map((r) => [r, entry.state.unappliedProposals[r]]));
  const all = [...Object.values(committed).map((p) => p.proposal), ...byValue];
  if (reinitOnly && !all.some((p) => p.proposalType === "reinit"))
    throw invalid("ReInitCommit: no reinit proposal referenced");
  checkForcePath(Boolean(req.force_path), all);
  const res = await createCommit(
    {
      state: { ...entry.state, unappliedProposals: committed },
      cipherSuite: entry.cs,
      pskIndex: pskIndexFor(entry.state, entry.psks),
    },
    {
      wireAsPublicMessage: !entry.encrypt,
      extraProposals: byValue,
      ratchetTreeExtension: !req.external_tree,
    },
  );
  entry.pending = { kind: reinitOnly ? "reinit" : "commit", state: res.newState };
  return {
    commit: out(encodeMlsMessage(res.commit)),
    welcome: res.welcome
      ? out(encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome: res.welcome }))
      : out(),
    ratchet_tree: req.external_tree ? out(encodeTree(res.newState.ratchetTree)) : out(),
  };
}

/** HandleCommit / HandleReInitCommit: process proposals then the commit on a copy. */
async function applyCommit(entry, req) {
  const absorbed = await absorbProposals(entry.state, req.proposal ?? [], entry);
  let state = absorbed.state;
  const msg = decodeMessage(req.commit, "commit", ["mls_public_message", "mls_private_message"]);
  if (contentTypeOf(msg) !== "commit") throw invalid("commit: not a commit message");
  if (absorbed.ownUpdateKeys.length > 0) {
    // Our own Update is being committed: our leaf now carries the Update's HPKE key.
    const leafNode = 2 * state.privatePath.leafIndex;
    const key = absorbed.ownUpdateKeys.at(-1);
    state = {
      ...state,
      privatePath: {
        ...state.privatePath,
        privateKeys: { ...state.privatePath.privateKeys, [leafNode]: key },
      },
    };
  }
  const res = await processIncoming(state, msg, entry.psks, entry.cs);
  if (res.kind !== "newState") throw invalid("commit: not a handshake message");
  return res.newState;
}

function welcomeOf(bytes) {
  return decodeMessage(bytes, "welcome", ["mls_welcome"]).welcome;
}

function groupInfoOf(bytes) {
  return decodeMessage(bytes, "group_info", ["mls_group_info"]).groupInfo;
}

async function newResumedGroup(oldState, usage, ownKp, cs, groupId, extensions, keyPackages, req, encrypt) {
  const adds = keyPackages.map((raw, i) => ({
    proposalType: "add",
    add: { keyPackage: decodeMessage(raw, `key_package[${i}]`, ["mls_key_package"]).keyPackage },
  }));
  checkForcePath(Boolean(req.force_path), [...adds, { proposalType: "psk" }]);
  const group = await createGroup(groupId, ownKp.publicPackage, ownKp.privatePackage, extensions, cs);
  const psk = makeResumptionPsk(oldState, usage, cs);
  const res = await createCommit(
    { state: group, cipherSuite: cs, pskIndex: makePskIndex(oldState, {}) },
    {
      wireAsPublicMessage: !encrypt,
      extraProposals: [...adds, { proposalType: "psk", psk: { preSharedKeyId: psk.id } }],
      ratchetTreeExtension: !req.external_tree,
    },
  );
  return res;
}

function subgroupResponse(id, res, externalTree) {
  return {
    state_id: id,
    welcome: res.welcome
      ? out(encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome: res.welcome }))
      : out(),
    ratchet_tree: externalTree ? out(encodeTree(res.newState.ratchetTree)) : out(),
    epoch_authenticator: epochAuthenticator(res.newState),
  };
}

// external_senders (RFC 9420 §12.1.8.1) is `ExternalSender external_senders<V>`.
const encodeExternalSenders = encode(varLenTypeEncoder(externalSenderEncoder));
const decodeExternalSenders = decodeVarLenType(decodeExternalSender);

// ---------------------------------------------------------------------------------------------
// RPC handlers
// ---------------------------------------------------------------------------------------------

const handlers = {
  async Name() {
    return { name: `ts-mls ${TS_MLS_VERSION}` };
  },

  async SupportedCiphersuites() {
    return { ciphersuites: supportedSuites };
  },

  async CreateGroup(req) {
    const cs = await suiteImpl(req.cipher_suite);
    const groupId = u8(req.group_id);
    if (groupId.length === 0) throw invalid("empty group_id");
    const kp = await newKeyPackage(cs, req.identity);
    const state = await createGroup(groupId, kp.publicPackage, kp.privatePackage, [], cs);
    const id = storeState(state, {
      cs,
      encrypt: Boolean(req.encrypt_handshake),
      identity: u8(req.identity),
      psks: new Map(),
    });
    return { state_id: id };
  },

  async CreateKeyPackage(req) {
    const cs = await suiteImpl(req.cipher_suite);
    const kp = await newKeyPackage(cs, req.identity);
    const id = newId();
    transactions.set(id, {
      kp: kp.publicPackage,
      priv: kp.privatePackage,
      cs,
      identity: u8(req.identity),
      psks: new Map(),
    });
    return {
      transaction_id: id,
      key_package: out(
        encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage: kp.publicPackage }),
      ),
      init_priv: out(kp.privatePackage.initPrivateKey),
      encryption_priv: out(kp.privatePackage.hpkePrivateKey),
      signature_priv: out(rawSignaturePrivateKey(kp.privatePackage.signaturePrivateKey)),
    };
  },

  async JoinGroup(req) {
    const tx = transactions.get(req.transaction_id);
    if (tx === undefined) throw notFound(`unknown transaction_id ${req.transaction_id}`);
    const welcome = welcomeOf(req.welcome);
    const tree = decodeTree(req.ratchet_tree);
    const state = await joinGroup(welcome, tx.kp, tx.priv, pskIndexFor(undefined, tx.psks), tx.cs, tree);
    const id = storeState(state, { ...tx, encrypt: Boolean(req.encrypt_handshake) });
    return { state_id: id, epoch_authenticator: epochAuthenticator(state) };
  },

  async ExternalJoin(req) {
    if ((req.psks ?? []).length > 0)
      throw unimplemented(
        "ExternalJoin with PSKs: ts-mls joinGroupExternal cannot put PreSharedKey proposals in an external commit",
      );
    const gi = groupInfoOf(req.group_info);
    const cs = await suiteImplByName(gi.groupContext.cipherSuite);
    const tree = decodeTree(req.ratchet_tree);
    const kp = await newKeyPackage(cs, req.identity);
    const removePrior = Boolean(req.remove_prior);
    // ts-mls finds the prior leaf with keyPackageEqualityConfig; the interop convention is to
    // match the basic credential identity (RUNNER.md §4).
    const identity = u8(req.identity);
    const sameIdentity = (leaf) =>
      leaf.credential.credentialType === "basic" && bytesEqual(leaf.credential.identity, identity);
    const config = {
      ...defaultClientConfig,
      keyPackageEqualityConfig: {
        ...defaultClientConfig.keyPackageEqualityConfig,
        compareKeyPackageToLeafNode: (_kp, leaf) => sameIdentity(leaf),
      },
    };
    const groupTree = ratchetTreeFromExtension(gi) ?? tree;
    if (groupTree === undefined) throw invalid("no ratchet tree in group_info and none given");
    if (removePrior && findLeafByIdentity(groupTree, identity) === undefined)
      throw invalid("remove_prior: no member with this identity in the tree");
    const res = await joinGroupExternal(gi, kp.publicPackage, kp.privatePackage, removePrior, cs, tree, config);
    const state = { ...res.newState, clientConfig: defaultClientConfig };
    const id = storeState(state, {
      cs,
      encrypt: Boolean(req.encrypt_handshake),
      identity,
      psks: new Map(),
    });
    return {
      state_id: id,
      commit: out(
        encodeMlsMessage({ version: "mls10", wireformat: "mls_public_message", publicMessage: res.publicMessage }),
      ),
      epoch_authenticator: epochAuthenticator(state),
    };
  },

  async GroupInfo(req) {
    const entry = getState(req.state_id);
    const gi = req.external_tree
      ? await createGroupInfoWithExternalPub(entry.state, [], entry.cs)
      : await createGroupInfoWithExternalPubAndRatchetTree(entry.state, [], entry.cs);
    return {
      group_info: out(encodeMlsMessage({ version: "mls10", wireformat: "mls_group_info", groupInfo: gi })),
      ratchet_tree: req.external_tree ? out(encodeTree(entry.state.ratchetTree)) : out(),
    };
  },

  async StateAuth(req) {
    const entry = getState(req.state_id);
    return { state_auth_secret: epochAuthenticator(entry.state) };
  },

  async Export(req) {
    const entry = getState(req.state_id);
    const len = Number(req.key_length);
    if (!Number.isInteger(len) || len < 0 || len > 0xffff) throw invalid("bad key_length");
    const secret = await mlsExporter(
      entry.state.keySchedule.exporterSecret,
      req.label ?? "",
      u8(req.context),
      len,
      entry.cs,
    );
    return { exported_secret: out(secret) };
  },

  async Protect(req) {
    const entry = getState(req.state_id);
    const res = await createApplicationMessage(entry.state, u8(req.plaintext), entry.cs, u8(req.authenticated_data));
    entry.state = res.newState;
    return {
      ciphertext: out(
        encodeMlsMessage({ version: "mls10", wireformat: "mls_private_message", privateMessage: res.privateMessage }),
      ),
    };
  },

  async Unprotect(req) {
    const entry = getState(req.state_id);
    const msg = decodeMessage(req.ciphertext, "ciphertext", ["mls_private_message"]);
    if (msg.privateMessage.contentType !== "application")
      throw invalid("ciphertext: not an application message");
    const res = await processPrivateMessage(entry.state, msg.privateMessage, pskIndexFor(entry.state, entry.psks), entry.cs);
    if (res.kind !== "applicationMessage") throw invalid("ciphertext: not an application message");
    entry.state = res.newState;
    return { authenticated_data: out(msg.privateMessage.authenticatedData), plaintext: out(res.message) };
  },

  async StorePSK(req) {
    const id = req.state_or_transaction_id;
    const holder = states.get(id) ?? transactions.get(id) ?? reinits.get(id);
    if (holder === undefined) throw notFound(`unknown state or transaction id ${id}`);
    const pskId = u8(req.psk_id);
    if (pskId.length === 0) throw invalid("empty psk_id");
    holder.psks.set(b64(pskId), u8(req.psk_secret));
    return {};
  },

  async AddProposal(req) {
    const entry = getState(req.state_id);
    const msg = decodeMessage(req.key_package, "key_package", ["mls_key_package"]);
    return sendProposal(entry, { proposalType: "add", add: { keyPackage: msg.keyPackage } });
  },

  async UpdateProposal(req) {
    const entry = getState(req.state_id);
    const { state, cs } = entry;
    // ts-mls has no Update helper; build and sign the LeafNode with its own primitives.
    const own = state.ratchetTree[2 * state.privatePath.leafIndex].leaf;
    const hpke = await cs.hpke.generateKeyPair();
    const tbs = {
      leafNodeSource: "update",
      hpkePublicKey: await cs.hpke.exportPublicKey(hpke.publicKey),
      signaturePublicKey: own.signaturePublicKey,
      credential: own.credential,
      capabilities: own.capabilities,
      extensions: own.extensions,
      groupId: state.groupContext.groupId,
      leafIndex: state.privatePath.leafIndex,
    };
    const signed = await signLeafNodeCommit(tbs, state.signaturePrivateKey, cs.signature);
    const { groupId: _g, leafIndex: _l, ...leafNode } = signed;
    const leafKey = await cs.hpke.exportPrivateKey(hpke.privateKey);
    return sendProposal(entry, { proposalType: "update", update: { leafNode } }, leafKey);
  },

  async RemoveProposal(req) {
    const entry = getState(req.state_id);
    const leaf = findLeafByIdentity(entry.state.ratchetTree, req.removed_id);
    if (leaf === undefined) throw invalid("no member with that removed_id");
    return sendProposal(entry, { proposalType: "remove", remove: { removed: leaf } });
  },

  async ExternalPSKProposal(req) {
    const entry = getState(req.state_id);
    return sendProposal(entry, externalPskProposal(entry.cs, req.psk_id));
  },

  async ResumptionPSKProposal(req) {
    const entry = getState(req.state_id);
    return sendProposal(
      entry,
      resumptionPskProposal(entry.cs, entry.state.groupContext.groupId, req.epoch_id),
    );
  },

  async GroupContextExtensionsProposal(req) {
    const entry = getState(req.state_id);
    return sendProposal(entry, {
      proposalType: "group_context_extensions",
      groupContextExtensions: { extensions: extensionsFromProto(req.extensions) },
    });
  },

  async Commit(req) {
    return buildCommit(getState(req.state_id), req);
  },

  async HandleCommit(req) {
    const entry = getState(req.state_id);
    const state = await applyCommit(entry, req);
    return { state_id: storeState(state, entry), epoch_authenticator: epochAuthenticator(state) };
  },

  async HandlePendingCommit(req) {
    const entry = getState(req.state_id);
    if (entry.pending === undefined) throw precondition("no pending commit on this state");
    const state = entry.pending.state;
    entry.pending = undefined;
    return { state_id: storeState(state, entry), epoch_authenticator: epochAuthenticator(state) };
  },

  async ReInitProposal(req) {
    const entry = getState(req.state_id);
    return sendProposal(entry, reinitProposal(req.group_id, req.cipher_suite, req.extensions));
  },

  async ReInitCommit(req) {
    return buildCommit(getState(req.state_id), req, { reinitOnly: true });
  },

  async HandlePendingReInitCommit(req) {
    const entry = getState(req.state_id);
    if (entry.pending?.kind !== "reinit") throw precondition("no pending ReInit commit on this state");
    const suspended = entry.pending.state;
    entry.pending = undefined;
    return startReinit(entry, suspended);
  },

  async HandleReInitCommit(req) {
    const entry = getState(req.state_id);
    const suspended = await applyCommit(entry, req);
    return startReinit(entry, suspended);
  },

  async ReInitWelcome(req) {
    const ri = reinits.get(req.reinit_id);
    if (ri === undefined) throw notFound(`unknown reinit_id ${req.reinit_id}`);
    const { reinit } = ri.suspended.groupActiveState;
    const res = await newResumedGroup(
      ri.suspended,
      "reinit",
      { publicPackage: ri.kp, privatePackage: ri.priv },
      ri.cs,
      reinit.groupId,
      reinit.extensions,
      req.key_package ?? [],
      req,
      ri.encrypt,
    );
    const id = storeState(res.newState, ri);
    return subgroupResponse(id, res, req.external_tree);
  },

  async HandleReInitWelcome(req) {
    const ri = reinits.get(req.reinit_id);
    if (ri === undefined) throw notFound(`unknown reinit_id ${req.reinit_id}`);
    const welcome = welcomeOf(req.welcome);
    const tree = decodeTree(req.ratchet_tree);
    const state = await joinGroup(welcome, ri.kp, ri.priv, makePskIndex(ri.suspended, {}), ri.cs, tree, ri.suspended);
    const id = storeState(state, ri);
    return { state_id: id, epoch_authenticator: epochAuthenticator(state) };
  },

  async CreateBranch(req) {
    const entry = getState(req.state_id);
    const groupId = u8(req.group_id);
    if (groupId.length === 0) throw invalid("empty group_id");
    const kp = await newKeyPackage(entry.cs, entry.identity);
    const res = await newResumedGroup(
      entry.state,
      "branch",
      kp,
      entry.cs,
      groupId,
      extensionsFromProto(req.extensions),
      req.key_packages ?? [],
      req,
      entry.encrypt,
    );
    const id = storeState(res.newState, { ...entry, psks: new Map(entry.psks) });
    return subgroupResponse(id, res, req.external_tree);
  },

  async HandleBranch(req) {
    const entry = getState(req.state_id);
    const tx = transactions.get(req.transaction_id);
    if (tx === undefined) throw notFound(`unknown transaction_id ${req.transaction_id}`);
    const welcome = welcomeOf(req.welcome);
    const tree = decodeTree(req.ratchet_tree);
    const state = await joinGroup(welcome, tx.kp, tx.priv, makePskIndex(entry.state, {}), tx.cs, tree, entry.state);
    const id = storeState(state, { ...entry, cs: tx.cs, psks: new Map(entry.psks) });
    return { state_id: id, epoch_authenticator: epochAuthenticator(state) };
  },

  async NewMemberAddProposal(req) {
    const gi = groupInfoOf(req.group_info);
    const cs = await suiteImplByName(gi.groupContext.cipherSuite);
    const kp = await newKeyPackage(cs, req.identity);
    const msg = await proposeAddExternal(gi, kp.publicPackage, kp.privatePackage, cs);
    const id = newId();
    transactions.set(id, {
      kp: kp.publicPackage,
      priv: kp.privatePackage,
      cs,
      identity: u8(req.identity),
      psks: new Map(),
    });
    return {
      transaction_id: id,
      proposal: out(encodeMlsMessage(msg)),
      init_priv: out(kp.privatePackage.initPrivateKey),
      encryption_priv: out(kp.privatePackage.hpkePrivateKey),
      signature_priv: out(rawSignaturePrivateKey(kp.privatePackage.signaturePrivateKey)),
    };
  },

  async CreateExternalSigner(req) {
    const cs = await suiteImpl(req.cipher_suite);
    const keys = await cs.signature.keygen();
    const id = newId();
    signers.set(id, { cs, identity: u8(req.identity), signKey: keys.signKey, publicKey: keys.publicKey });
    const sender = { signaturePublicKey: keys.publicKey, credential: basicCredential(req.identity) };
    return { signer_id: id, external_sender: out(encodeExternalSender(sender)) };
  },

  async AddExternalSigner(req) {
    const entry = getState(req.state_id);
    const sender = decodeStrict(decodeExternalSender, u8(req.external_sender), "external_sender");
    // Append to the RFC 9420 external_senders list (one extension holding a vector).
    const exts = entry.state.groupContext.extensions;
    const existing = exts.find((e) => e.extensionType === "external_senders");
    const list = existing
      ? decodeStrict(decodeExternalSenders, existing.extensionData, "existing external_senders")
      : [];
    const updated = { extensionType: "external_senders", extensionData: encodeExternalSenders([...list, sender]) };
    const extensions = existing
      ? exts.map((e) => (e === existing ? updated : e))
      : [...exts, updated];
    return sendProposal(entry, {
      proposalType: "group_context_extensions",
      groupContextExtensions: { extensions },
    });
  },

  async ExternalSignerProposal(req) {
    const signer = signers.get(req.signer_id);
    if (signer === undefined) throw notFound(`unknown signer_id ${req.signer_id}`);
    const gi = groupInfoOf(req.group_info);
    const cs = await suiteImplByName(gi.groupContext.cipherSuite);
    const treeExt = gi.extensions.find((e) => e.extensionType === "ratchet_tree");
    const tree = decodeTree(req.ratchet_tree) ?? (treeExt ? decodeTree(treeExt.extensionData) : undefined);
    if (req.description === null || req.description === undefined) throw invalid("missing description");
    const proposal = proposalFromDescription(req.description, {
      cs,
      groupId: gi.groupContext.groupId,
      tree,
    });
    const msg = await proposeExternal(gi, proposal, signer.publicKey, signer.signKey, cs);
    return { proposal: out(encodeMlsMessage(msg)) };
  },

  async Free(req) {
    states.delete(req.state_id);
    return {};
  },
};

async function startReinit(entry, suspended) {
  if (suspended.groupActiveState.kind !== "suspendedPendingReinit")
    throw invalid("the commit did not contain a ReInit proposal");
  const { reinit } = suspended.groupActiveState;
  const cs = await suiteImplByName(reinit.cipherSuite);
  const kp = await newKeyPackage(cs, entry.identity);
  const id = newId();
  reinits.set(id, {
    suspended,
    kp: kp.publicPackage,
    priv: kp.privatePackage,
    cs,
    encrypt: entry.encrypt,
    identity: entry.identity,
    psks: new Map(entry.psks),
  });
  return {
    reinit_id: id,
    key_package: out(
      encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage: kp.publicPackage }),
    ),
    epoch_authenticator: epochAuthenticator(suspended),
  };
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

function parseOptions() {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: process.env.MLS_CLIENT_PORT ?? "50051" },
      host: { type: "string", default: "127.0.0.1" },
      proto: { type: "string" },
      "ignore-force-path": { type: "boolean", default: process.env.TS_MLS_IGNORE_FORCE_PATH === "1" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log("usage: node server.mjs --port N [--host H] [--proto PATH] [--ignore-force-path]");
    process.exit(0);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`bad --port ${values.port}`);
    process.exit(2);
  }
  return { port, host: values.host, proto: values.proto, ignoreForcePath: values["ignore-force-path"] };
}

function findProto(explicit) {
  if (explicit !== undefined && !existsSync(explicit)) {
    console.error(`--proto ${explicit}: no such file`);
    process.exit(2);
  }
  const candidates = [
    explicit,
    process.env.MLS_CLIENT_PROTO,
    resolve(HERE, "../mls_client.proto"),
    resolve(HERE, "../../../shared/reference/interop/mls_client.proto"),
    "/work/shared/reference/interop/mls_client.proto",
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    console.error(`mls_client.proto not found; tried: ${candidates.join(", ")}`);
    process.exit(2);
  }
  return found;
}

// The runner is sequential, but serialise RPCs anyway: handlers mutate shared state.
let queue = Promise.resolve();
function serialised(fn) {
  const run = queue.then(fn, fn);
  queue = run.catch(() => undefined);
  return run;
}

function wrap(name, fn) {
  return (call, callback) => {
    serialised(() => fn(call.request ?? {}))
      .then((res) => callback(null, res))
      .catch((err) => {
        const status = toStatus(err);
        if (process.env.TS_MLS_DEBUG) console.error(`${name}: ${status.details}`, err?.stack ?? "");
        callback(status);
      });
  };
}

const OPTIONS = parseOptions();

async function main() {
  const protoPath = findProto(OPTIONS.proto);
  const def = protoLoader.loadSync(protoPath, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def).mls_client;
  supportedSuites = await probeSuites();
  const impl = {};
  for (const method of Object.keys(pkg.MLSClient.service)) {
    const fn = handlers[method];
    impl[method] = fn
      ? wrap(method, fn)
      : wrap(method, async () => {
          throw unimplemented(`RPC ${method}`);
        });
  }
  const server = new grpc.Server();
  server.addService(pkg.MLSClient.service, impl);
  server.bindAsync(`${OPTIONS.host}:${OPTIONS.port}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) {
      console.error(`bind failed: ${err.message}`);
      process.exit(1);
    }
    console.log(
      `ts-mls ${TS_MLS_VERSION} MLSClient listening on ${OPTIONS.host}:${port} ` +
        `(suites ${supportedSuites.join(",")}; proto ${protoPath})`,
    );
  });
  const stop = () => server.tryShutdown(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

process.on("unhandledRejection", (err) => console.error("unhandled rejection:", err));
process.on("uncaughtException", (err) => console.error("uncaught exception:", err));

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
