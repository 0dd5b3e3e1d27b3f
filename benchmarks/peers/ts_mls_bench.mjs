#!/usr/bin/env node
// ts-mls (npm, pinned in benchmarks/peers/package-lock.json) under the same driver as the
// Python benches (benchmarks/peers/common.py: read its docstring for what each operation times).
//
// Usage: node benchmarks/peers/ts_mls_bench.mjs OP N ITERATIONS [--app-seconds S]
//   OP: build | join | app | commit | process | all. One JSON line per finished operation:
//   {"op","n","samples":[wall seconds...],"cpu":[CPU seconds...],"bytes"} | {"op","n","rate","cpu_rate","messages"} | {"op","n","na"}.
//
// Suite 1 (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519), handshakes as PublicMessage
// (wireAsPublicMessage), the ratchet tree in the Welcome (ratchetTreeExtension). Timing is
// performance.now(); every operation includes encoding to / decoding from MLSMessage bytes.

import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";

import {
  createApplicationMessage,
  createCommit,
  createGroup,
  decodeMlsMessage,
  defaultCapabilities,
  defaultLifetime,
  encodeMlsMessage,
  generateKeyPackage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  makePskIndex,
  mlsExporter,
  processPrivateMessage,
  processPublicMessage,
} from "ts-mls";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const OPS = ["build", "join", "app", "commit", "process"];
const KIB = Uint8Array.from({ length: 1024 }, (_, i) => i % 256);
const GROUP_ID = new Uint8Array(32).fill(7);
const enc = new TextEncoder();

const emit = (record) => process.stdout.write(JSON.stringify(record) + "\n");
const reason = (e) => `${e?.constructor?.name ?? "Error"}: ${e?.message ?? e}`.slice(0, 300);

/** Wall seconds (performance.now) and the process's CPU seconds (process.cpuUsage, all
 * threads) of each timed call, as common.py's Samples. */
class Samples {
  constructor() {
    this.wall = [];
    this.cpu = [];
  }

  async time(fn) {
    const cpu = process.cpuUsage();
    const start = performance.now();
    const out = await fn();
    this.wall.push((performance.now() - start) / 1000);
    const used = process.cpuUsage(cpu);
    this.cpu.push((used.user + used.system) / 1e6);
    return out;
  }

  record(op, n, size, extra = {}) {
    return { op, n, samples: this.wall, cpu: this.cpu, bytes: size, ...extra };
  }
}

function decode(bytes) {
  const r = decodeMlsMessage(bytes, 0);
  if (r === undefined || r[1] !== bytes.length) throw new Error("malformed MLSMessage");
  return r[0];
}

const newKeyPackage = (cs, name) =>
  generateKeyPackage({ credentialType: "basic", identity: enc.encode(name) },
    defaultCapabilities(), defaultLifetime, [], cs);

/** The ts-mls stack: ClientState values are immutable, each call returns the next one. */
class TsMls {
  constructor(cs) {
    this.cs = cs;
  }

  async prepare(n) {
    this.creatorKp = await newKeyPackage(this.cs, "creator");
    this.joiners = [];
    for (let i = 1; i < n; i++) this.joiners.push(await newKeyPackage(this.cs, `member-${i}`));
  }

  async build() {
    const state = await createGroup(GROUP_ID, this.creatorKp.publicPackage,
      this.creatorKp.privatePackage, [], this.cs);
    const adds = this.joiners.map((kp) => ({ proposalType: "add", add: { keyPackage: kp.publicPackage } }));
    const res = await createCommit({ state, cipherSuite: this.cs },
      { wireAsPublicMessage: true, extraProposals: adds, ratchetTreeExtension: true });
    this.state = res.newState;
    this.welcome = encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome: res.welcome });
    return this.welcome.length;
  }

  async join(joiner) {
    const kp = this.joiners[joiner];
    return { state: await joinGroup(decode(this.welcome).welcome, kp.publicPackage,
      kp.privatePackage, makePskIndex(undefined, {}), this.cs) };
  }

  async commit() {
    const res = await createCommit({ state: this.state, cipherSuite: this.cs },
      { wireAsPublicMessage: true, ratchetTreeExtension: true });
    this.state = res.newState;
    return encodeMlsMessage(res.commit);
  }

  async process(member, commit) {
    const msg = decode(commit);
    const res = await processPublicMessage(member.state, msg.publicMessage,
      makePskIndex(member.state, {}), this.cs);
    member.state = res.newState;
  }

  async appRound(member) {
    const sent = await createApplicationMessage(this.state, KIB, this.cs);
    this.state = sent.newState;
    const wire = encodeMlsMessage({ version: "mls10", wireformat: "mls_private_message",
      privateMessage: sent.privateMessage });
    const res = await processPrivateMessage(member.state, decode(wire).privateMessage,
      makePskIndex(member.state, {}), this.cs);
    member.state = res.newState;
    if (res.kind !== "applicationMessage" || Buffer.compare(res.message, KIB) !== 0)
      throw new Error("application message not recovered");
  }

  async agree(member) {
    const ex = (s) => mlsExporter(s.keySchedule.exporterSecret, "benchmark", new Uint8Array(), 32, this.cs);
    return Buffer.compare(await ex(this.state), await ex(member.state)) === 0;
  }
}

async function runBuildOnly(stack, n, iterations) {
  const samples = new Samples();
  let size = 0;
  for (let i = 0; i < iterations; i++) {
    await stack.prepare(n);
    size = await samples.time(() => stack.build());
  }
  emit(samples.record("build", n, size));
}

async function runApp(stack, member, n, seconds, out) {
  try {
    let count = 0;
    let spent = 0;
    const cpuStart = process.cpuUsage();
    while (spent < seconds || count < 20) {
      const start = performance.now();
      for (let i = 0; i < 10; i++) await stack.appRound(member);
      spent += (performance.now() - start) / 1000;
      count += 10;
    }
    const used = process.cpuUsage(cpuStart);
    const cpu = Math.max((used.user + used.system) / 1e6, 1e-9);
    out({ op: "app", n, rate: count / spent, cpu_rate: count / cpu, messages: count });
  } catch (e) {
    out({ op: "app", n, na: reason(e) });
  }
}

async function runCommits(stack, member, n, iterations, out) {
  const creates = new Samples();
  const processes = new Samples();
  let size = 0;
  for (let i = 0; i < iterations; i++) {
    let commit;
    try {
      commit = await creates.time(() => stack.commit());
      size = commit.length;
    } catch (e) {
      out({ op: "commit", n, na: reason(e) });
      out({ op: "process", n, na: "no commit to process" });
      return;
    }
    try {
      await processes.time(() => stack.process(member, commit));
    } catch (e) {
      out(creates.record("commit", n, size, { note: `rejected by the stack's own receiver: ${reason(e)}` }));
      out({ op: "process", n, na: `receiver rejects the commit: ${reason(e)}` });
      return;
    }
  }
  if (!(await stack.agree(member))) {
    for (const op of ["commit", "process"]) out({ op, n, na: "creator and member disagree after the commits" });
    return;
  }
  out(creates.record("commit", n, size));
  out(processes.record("process", n, size));
}

async function runAll(stack, n, iterations, wanted, appSeconds) {
  const out = (record) => { if (wanted.has(record.op)) emit(record); };
  await stack.prepare(n);
  const builds = new Samples();
  const joins = new Samples();
  const welcomeBytes = await builds.time(() => stack.build());
  out(builds.record("build", n, welcomeBytes));
  let member;
  for (let j = 0; j < Math.min(iterations, n - 1); j++) {
    const m = await joins.time(() => stack.join(n - 2 - j));
    if (j === 0) member = m;
  }
  out(joins.record("join", n, welcomeBytes));
  if (wanted.has("app")) await runApp(stack, member, n, appSeconds, out);
  if (wanted.has("commit") || wanted.has("process")) await runCommits(stack, member, n, iterations, out);
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { "app-seconds": { type: "string", default: "1.0" } },
  });
  const [op, nText, itText] = positionals;
  const n = Number(nText);
  const iterations = Number(itText);
  if (![...OPS, "all"].includes(op) || !(n >= 2) || !(iterations >= 1)) {
    process.stderr.write("usage: ts_mls_bench.mjs OP N ITERATIONS [--app-seconds S]\n");
    process.exit(2);
  }
  const stack = new TsMls(await getCiphersuiteImpl(getCiphersuiteFromName(SUITE)));
  if (op === "build") await runBuildOnly(stack, n, iterations);
  else await runAll(stack, n, iterations, new Set(op === "all" ? OPS : [op]), Number(values["app-seconds"]));
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exit(1);
});
