/**
 * Crash harness for any storage backend: child processes (child.ts) publish or consume against a real store and
 * are SIGKILLed at random moments; the checks then reopen the store and prove that nothing acknowledged was lost
 * and nothing is stuck. Exported as `sluice/testing`.
 *
 * A backend's crash test is a few lines (see test/store/sqlite-crash.test.ts):
 * ```ts
 * const target = { url, open: () => createPostgresStore({ url }) };
 * test("postgres store - acknowledged appends survive SIGKILL", () => publisherCrash(target, { iterations: 5 }));
 * test("postgres store - SIGKILLed consumers leave nothing stuck", () => consumerCrash(target, { iterations: 3 }));
 * ```
 * The child opens `url` through the store registry (src/store/registry.ts); a backend registered outside this
 * package lists the module that registers its scheme in `childImports`.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Lease, StorageBackend } from "../contract.ts";

export const crashBus = "crash";
export const crashQueues = ["crash-a", "crash-b"] as const;
/** The crash queues with a 1 s lease, so that a killed consumer's leases come back soon on any clock. */
export const crashDeclaration = { dedupeWindowMs: 300_000, queues: crashQueues.map((queue) => ({ queue, leaseMs: 1000 })) };

export interface CrashTarget {
  /** The store URL the child opens (`sqlite:/tmp/x.db`, `postgres://…`, or a scheme of `childImports`). */
  url: string;
  /** Opens the same data in the test process, for seeding and checking. */
  open(): Promise<StorageBackend>;
  /** Modules the child imports before opening `url`, e.g. one that calls `registerStoreScheme`. */
  childImports?: string[];
  /** Node flags of the child (for example a TypeScript loader for `childImports`). */
  execArgv?: string[];
}

/** The child script, and the flags it needs: from source (tests), tsx's loader; from dist/, none. */
const fromSource = import.meta.url.endsWith(".ts");
export const crashChildPath = fileURLToPath(new URL(fromSource ? "./child.ts" : "./child.js", import.meta.url));

/** The command line (after the Node executable) of a crash child for `target`; `extra` is its runId or workMs. */
export function crashChildArgs(
  target: Pick<CrashTarget, "url" | "childImports" | "execArgv">,
  mode: "publish" | "consume",
  extra?: string,
): string[] {
  const flags = target.execArgv ?? (fromSource ? ["--import", "tsx"] : []);
  const imports = (target.childImports ?? []).flatMap((m) => ["--child-import", m]);
  return [...flags, crashChildPath, mode, target.url, ...(extra === undefined ? [] : [extra]), ...imports];
}

function randomBetween(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min));
}

/**
 * Runs the child (`args` from crashChildArgs) until `killAfterMs` after it printed `ready`, then SIGKILLs it. Resolves with the complete
 * lines it printed (those are in the pipe before the kill: stdout to a pipe is synchronous on Linux).
 */
export function runChildUntilKilled(args: string[], killAfterMs: number, timeoutMs = 60_000): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NODE_NO_WARNINGS: "1" },
    });
    let stdout = "";
    let stderr = "";
    let killTimer: NodeJS.Timeout | undefined;
    const guard = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      if (killTimer === undefined && stdout.startsWith("ready\n")) {
        killTimer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
      }
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(guard);
      clearTimeout(killTimer);
      if (signal !== "SIGKILL" || killTimer === undefined) {
        reject(new Error(`crash child ended with code ${code} signal ${signal} before its kill:\n${stderr}`));
        return;
      }
      const lines = stdout.split("\n");
      lines.pop(); // an incomplete last line (or the empty string after the final newline)
      resolve(lines.filter((line) => line !== "ready"));
    });
  });
}

/**
 * Leases and acks everything, as if after every lease expired; returns `queue eventId` per delivery. On a
 * caller-clock backend the lease runs an hour ahead; on server time it waits for expiring leases (and for keyed
 * deliveries handed back until their turn) until nothing came for `quietMs`.
 */
export async function drain(store: StorageBackend, now = Date.now() + 3_600_000, quietMs = 4000): Promise<string[]> {
  const seen: string[] = [];
  const callerClock = store.capabilities.callerClock;
  let quietSince = Date.now();
  for (;;) {
    const leases: Lease[] = await store.queues.lease({ queues: [...crashQueues], max: 1000, leaseMs: 60_000, now: callerClock ? now : Date.now() });
    if (leases.length === 0) {
      if (callerClock || Date.now() - quietSince > quietMs) return seen;
      await new Promise((resolve) => setTimeout(resolve, 100));
      continue;
    }
    quietSince = Date.now();
    for (const l of leases) seen.push(`${l.queue} ${(JSON.parse(l.payload) as { id: string }).id}`);
    assert.deepEqual((await store.queues.ack(leases)).lost, []);
  }
}

async function readAll(store: StorageBackend): Promise<Map<string, number>> {
  const events = new Map<string, number>();
  let afterSeq = 0;
  for (;;) {
    const page = await store.events.read(crashBus, { afterSeq, limit: 1000 });
    if (page.length === 0) return events;
    for (const e of page) events.set(e.eventId, e.seq);
    afterSeq = page[page.length - 1]?.seq as number;
  }
}

/**
 * Publishers killed at random moments: every acknowledged event is in the log with the acknowledged seq,
 * and every event in the log has exactly its deliveries (event and deliveries commit together).
 */
export async function publisherCrash(
  target: CrashTarget,
  options: { iterations?: number; killAfterMs?: [number, number] } = {},
): Promise<{ acked: number; stored: number }> {
  const [minMs, maxMs] = options.killAfterMs ?? [30, 400];
  const acked = new Map<string, number>();
  for (let i = 0; i < (options.iterations ?? 5); i++) {
    const lines = await runChildUntilKilled(crashChildArgs(target, "publish", `run${i}`), randomBetween(minMs, maxMs));
    for (const line of lines) {
      const [word, seq, eventId] = line.split(" ");
      assert.equal(word, "ack", `unexpected child output: ${line}`);
      acked.set(eventId as string, Number(seq));
    }
  }
  assert.ok(acked.size > 0, "the publishers acknowledged nothing before their kill");

  const store = await target.open();
  try {
    const events = await readAll(store);
    for (const [eventId, seq] of acked) assert.equal(events.get(eventId), seq, `acknowledged event ${eventId} is missing`);
    const deliveries = await drain(store);
    assert.equal(new Set(deliveries).size, deliveries.length, "a delivery exists twice");
    const expected = [...events.keys()].flatMap((id) => crashQueues.map((q) => `${q} ${id}`));
    if (store.capabilities.atomicFanOut) assert.deepEqual(new Set(deliveries), new Set(expected), "events and their deliveries differ");
    else {
      // Deliveries follow the log: an event whose publisher died before its ack may lack some; acknowledged ones may not.
      const delivered = new Set(deliveries);
      const logged = new Set(expected);
      for (const d of deliveries) assert.ok(logged.has(d), `delivery ${d} has no event in the log`);
      for (const id of acked.keys()) for (const q of crashQueues) assert.ok(delivered.has(`${q} ${id}`), `acknowledged event ${id} lacks its ${q} delivery`);
    }
    return { acked: acked.size, stored: events.size };
  } finally {
    await store.close();
  }
}

/**
 * Consumers killed at random moments (between lease and ack, during ack): after restart and lease expiry,
 * every delivery is either acked (and never comes back) or leasable again; none is stuck or lost.
 */
export async function consumerCrash(
  target: CrashTarget,
  options: { iterations?: number; events?: number; killAfterMs?: [number, number] } = {},
): Promise<{ acked: number; inFlightAtKill: number; drained: number }> {
  const total = options.events ?? 3000;
  const [minMs, maxMs] = options.killAfterMs ?? [100, 700];
  const seed = await target.open();
  try {
    await seed.declare(crashDeclaration);
    for (let start = 0; start < total; start += 100) {
      const entries = Array.from({ length: Math.min(100, total - start) }, (_, i) => {
        const eventId = `c${start + i}`;
        return {
          bus: crashBus,
          eventId,
          dedupeKey: `crash\n${eventId}`,
          encoded: JSON.stringify({ specversion: "1.0", id: eventId, source: "crash", type: "crash.test" }),
          deliveries: [{ queue: crashQueues[0] }, { queue: crashQueues[1], partitionKey: `k${(start + i) % 5}` }],
        };
      });
      await seed.events.append(entries, { now: Date.now(), dedupeWindowMs: 0 });
    }
  } finally {
    await seed.close();
  }

  const acked = new Set<string>();
  let inFlightAtKill = 0;
  /** Leased and not printed as acked when the child died: its ack may have committed just before the kill. */
  const unconfirmed = new Set<string>();
  for (let i = 0; i < (options.iterations ?? 3); i++) {
    const lines = await runChildUntilKilled(crashChildArgs(target, "consume"), randomBetween(minMs, maxMs));
    const leased = new Set<string>();
    for (const line of lines) {
      const space = line.indexOf(" ");
      const [word, key] = [line.slice(0, space), line.slice(space + 1)];
      if (word === "lease") leased.add(key);
      else if (word === "ack") acked.add(key);
      else assert.equal(word, "lost", `unexpected child output: ${line}`);
    }
    const inFlight = [...leased].filter((key) => !acked.has(key));
    inFlightAtKill += inFlight.length;
    for (const key of inFlight) unconfirmed.add(key);
  }
  assert.ok(acked.size > 0, "the consumers acked nothing before their kill");

  const store = await target.open();
  try {
    const drained = await drain(store);
    const comeBack = drained.filter((key) => acked.has(key));
    assert.deepEqual(comeBack, [], "acknowledged deliveries came back after the restart");
    assert.equal(new Set(drained).size, drained.length, "a delivery exists twice");
    // Every delivery was either acked (printed), or is leasable again, or was in the hands of a killed child
    // whose ack may have committed before the kill cut its output (a real store cannot tell the two apart).
    const all = new Set([...drained, ...acked]);
    const missing = Array.from({ length: total }, (_, i) => crashQueues.map((q) => `${q} c${i}`))
      .flat()
      .filter((key) => !all.has(key));
    assert.deepEqual(missing.filter((key) => !unconfirmed.has(key)), [], "deliveries were lost");
    const stats = await store.admin.stats([...crashQueues], { now: Date.now() + 3_600_000 });
    for (const s of stats) assert.deepEqual([s.ready, s.delayed, s.leased, s.dead], [0, 0, 0, 0], `queue ${s.queue}`);
    return { acked: acked.size, inFlightAtKill, drained: drained.length };
  } finally {
    await store.close();
  }
}
