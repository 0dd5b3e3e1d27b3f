#!/usr/bin/env node
// ts-mls (npm, pinned in benchmarks/peers/package-lock.json) under the same driver as the
// Python benches (benchmarks/peers/common.py: read its docstring for what each operation times).
//
// Usage: node benchmarks/peers/ts_mls_bench.mjs OP N [ITERATIONS] [--app-seconds S] [--suite ID]
//   OP: build | join | first_process | app | commit | process | all | serve. Setup once,
//   then rounds of one sample per operation; "all" prints one JSON line per operation:
//   {"op","n","samples":[wall seconds...],"cpu":[CPU seconds...],"bytes"} | {"op","n","rate":[...],"cpu_rate":[...],"messages"} | {"op","n","na"};
//   "serve" prints the build line and {"ready":true}, then runs one round per "round" line
//   on stdin (its lines, then {"done":R}) until EOF.
//
// Suite 1 (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519) unless --suite names another of
// ts-mls's `ciphersuites`, built as interop/ts-mls/server.mjs builds them: getCiphersuiteImpl
// loads the post-quantum suites 79-88 from the pinned @hpke/ml-kem, @hpke/hybridkem-x-wing,
// @noble/post-quantum (and @hpke/chacha20poly1305) of package.json. A suite it cannot build
// gets {"op","n","na"} lines, exit status 0. Handshakes as PublicMessage (wireAsPublicMessage),
// the ratchet tree in the Welcome (ratchetTreeExtension). The build line also has
// key_package_bytes: one joiner's KeyPackage (the §10 struct, no MLSMessage header). Timing is
// performance.now(); every operation includes encoding to / decoding from MLSMessage bytes.

import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";

import {
  ciphersuites,
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

const SUITE_NAMES = Object.fromEntries(Object.entries(ciphersuites).map(([n, id]) => [id, n]));
const MLS_MESSAGE_HEADER = 4; // version and wire_format (uint16 each) before a KeyPackage
const OPS = ["build", "join", "first_process", "app", "commit", "process"];
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
    const out = { op, n, samples: this.wall, cpu: this.cpu, ...extra };
    if (size !== undefined) out.bytes = size;
    return out;
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

  keyPackageSize() {
    const keyPackage = this.joiners[0]?.publicPackage;
    if (keyPackage === undefined) return undefined;
    const wire = encodeMlsMessage({ version: "mls10", wireformat: "mls_key_package", keyPackage });
    return wire.length - MLS_MESSAGE_HEADER;
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

/** The build line: its samples, the Welcome's and a KeyPackage's bytes (common.py's). */
function buildRecord(stack, samples, n, welcomeBytes) {
  const kpBytes = stack.keyPackageSize();
  return samples.record("build", n, welcomeBytes,
    kpBytes === undefined ? {} : { key_package_bytes: kpBytes });
}

async function runBuildOnly(stack, n, iterations) {
  const samples = new Samples();
  let size;
  for (let i = 0; i < iterations; i++) {
    await stack.prepare(n);
    size = await samples.time(() => stack.build());
  }
  emit(buildRecord(stack, samples, n, size));
}

async function appRate(stack, member, n, seconds) {
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
    return { op: "app", n, rate: [count / spent], cpu_rate: [count / cpu], messages: count };
  } catch (e) {
    return { op: "app", n, na: reason(e) };
  }
}

/** Setup once, then one sample of every operation per round (common.py's Bench). */
class Bench {
  constructor(stack, n, appSeconds) {
    Object.assign(this, { stack, n, appSeconds, rounds: 0, member: undefined,
      forked: undefined, firstBroken: undefined, size: undefined, firstSize: undefined });
  }

  async setup() {
    await this.stack.prepare(this.n);
    const builds = new Samples();
    const welcomeBytes = await builds.time(() => this.stack.build());
    try {
      this.firstCommit = await this.stack.commit();
      this.firstSize = this.firstCommit.length;
    } catch (e) {
      this.firstBroken = `no Commit to process: ${reason(e)}`;
    }
    return [buildRecord(this.stack, builds, this.n, welcomeBytes)];
  }

  async round() {
    const r = this.rounds++;
    const n = this.n;
    let out = [];
    if (r >= n - 1) {
      const why = `no fresh joiner left (n - 1 = ${n - 1} joiners, round ${r + 1})`;
      out.push({ op: "join", n, na: why }, { op: "first_process", n, na: why });
    } else {
      out = out.concat(await this.join(r));
    }
    if (this.forked === undefined && this.member !== undefined)
      out.push(await appRate(this.stack, this.member, n, this.appSeconds));
    else
      out.push({ op: "app", n, na: `no member is in the creator's epoch: ${this.forked ?? "no member B"}` });
    return out.concat(await this.commitAndProcess());
  }

  async join(r) {
    const n = this.n;
    const joins = new Samples();
    const firsts = new Samples();
    let member;
    try {
      member = await joins.time(() => this.stack.join(n - 2 - r));
    } catch (e) {
      if (r === 0) this.forked = `no member B: ${reason(e)}`;
      return [{ op: "join", n, na: reason(e) }, { op: "first_process", n, na: "no joined member" }];
    }
    const out = [joins.record("join", n, undefined)];
    if (r === 0) this.member = member;
    if (this.firstBroken === undefined) {
      try {
        await firsts.time(() => this.stack.process(member, this.firstCommit));
        out.push(firsts.record("first_process", n, this.firstSize));
      } catch (e) {
        this.firstBroken = `receiver rejects the commit: ${reason(e)}`;
      }
    }
    if (this.firstBroken !== undefined) {
      out.push({ op: "first_process", n, na: this.firstBroken });
      if (r === 0) this.forked = this.firstBroken;
    }
    return out;
  }

  async commitAndProcess() {
    const n = this.n;
    const creates = new Samples();
    const processes = new Samples();
    let commit;
    try {
      commit = await creates.time(() => this.stack.commit());
    } catch (e) {
      return [{ op: "commit", n, na: reason(e) }, { op: "process", n, na: "no commit to process" }];
    }
    this.size ??= commit.length;
    if (this.forked !== undefined || this.member === undefined) {
      const why = this.forked ?? "no member B";
      return [creates.record("commit", n, this.size, { note: why }),
        { op: "process", n, na: why }];
    }
    try {
      await processes.time(() => this.stack.process(this.member, commit));
    } catch (e) {
      this.forked = `receiver rejects the commit: ${reason(e)}`;
      return [creates.record("commit", n, this.size, { note: `rejected by the stack's own receiver: ${reason(e)}` }),
        { op: "process", n, na: this.forked }];
    }
    if (!(await this.stack.agree(this.member))) {
      this.forked = "creator and member disagree after the commits";
      return ["commit", "process"].map((op) => ({ op, n, na: this.forked }));
    }
    return [creates.record("commit", n, this.size), processes.record("process", n, this.size)];
  }
}

/** Per-round records as one record per operation (common.py's merge). */
function merge(records) {
  const merged = new Map();
  for (const rec of records) {
    if (!merged.has(rec.op)) merged.set(rec.op, { op: rec.op, n: rec.n });
    const cur = merged.get(rec.op);
    for (const key of ["samples", "cpu", "rate", "cpu_rate"])
      if (key in rec) cur[key] = (cur[key] ?? []).concat(rec[key]);
    if ("messages" in rec) cur.messages = (cur.messages ?? 0) + rec.messages;
    for (const key of ["bytes", "key_package_bytes", "note", "na"]) if (key in rec && !(key in cur)) cur[key] = rec[key];
  }
  for (const cur of merged.values()) if ("na" in cur && ("samples" in cur || "rate" in cur)) delete cur.na;
  return OPS.filter((op) => merged.has(op)).map((op) => merged.get(op));
}

async function runAll(stack, n, iterations, wanted, appSeconds) {
  const bench = new Bench(stack, n, appSeconds);
  let records = await bench.setup();
  for (let i = 0; i < iterations; i++) records = records.concat(await bench.round());
  for (const record of merge(records)) if (wanted.has(record.op)) emit(record);
}

async function serve(stack, n, appSeconds) {
  const bench = new Bench(stack, n, appSeconds);
  for (const record of await bench.setup()) emit(record);
  emit({ ready: true });
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() !== "round") continue;
    for (const record of await bench.round()) emit(record);
    emit({ done: bench.rounds });
  }
}

/** ts-mls's implementation of cipher suite `id`, or the reason it has none. */
async function suiteImpl(id) {
  const name = SUITE_NAMES[id];
  if (name === undefined) return { why: `ts-mls has no cipher suite ${id}` };
  try {
    return { cs: await getCiphersuiteImpl(getCiphersuiteFromName(name)) };
  } catch (e) {
    return { why: `ts-mls cannot run cipher suite ${id} (${name}): ${reason(e)}` };
  }
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { "app-seconds": { type: "string", default: "1.0" },
      suite: { type: "string", default: "1" } },
  });
  const [op, nText, itText] = positionals;
  const n = Number(nText);
  const iterations = Number(itText ?? "1");
  if (![...OPS, "all", "serve"].includes(op) || !(n >= 2) || !(iterations >= 1)) {
    process.stderr.write("usage: ts_mls_bench.mjs OP N [ITERATIONS] [--app-seconds S] [--suite ID]\n");
    process.exit(2);
  }
  const { cs, why } = await suiteImpl(Number(values.suite));
  if (cs === undefined) {
    for (const asked of ["all", "serve"].includes(op) ? OPS : [op]) emit({ op: asked, n, na: why });
    return;
  }
  const stack = new TsMls(cs);
  if (op === "build") await runBuildOnly(stack, n, iterations);
  else if (op === "serve") await serve(stack, n, Number(values["app-seconds"]));
  else await runAll(stack, n, iterations, new Set(op === "all" ? OPS : [op]), Number(values["app-seconds"]));
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exit(1);
});
