/**
 * Crash test of the whole bus path: brokers in child processes publish and deliver, and are SIGKILLed at random
 * moments; every acknowledged publish must still reach its function target, and nothing may stay stuck.
 * SQLite: one process at a time on one file. PostgreSQL: three processes on one database, one killed mid-flight.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomUUID } from "node:crypto";
import { openStore } from "../../src/store/registry.ts";
import { createTestDatabase, skipUnless } from "../helpers/services.ts";

const childPath = fileURLToPath(new URL("./crash-child.ts", import.meta.url));

interface Child {
  proc: ChildProcess;
  ready: Promise<void>;
  exited: Promise<void>;
}

/** Starts a child broker; its A/D lines go into the shared sets as they arrive. */
function startChild(args: string[], acked: Set<string>, delivered: Set<string>, onLine: () => void): Child {
  const proc = spawn(process.execPath, ["--import", "tsx", childPath, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  let buffer = "";
  let markReady!: () => void;
  const ready = new Promise<void>((r) => (markReady = r));
  proc.stdout!.setEncoding("utf8");
  proc.stdout!.on("data", (chunk: string) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line === "ready") markReady();
      else if (line.startsWith("A ")) acked.add(line.slice(2));
      else if (line.startsWith("D ")) delivered.add(line.slice(2));
    }
    onLine();
  });
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  return { proc, ready, exited };
}

async function kill(child: Child): Promise<void> {
  child.proc.kill("SIGKILL");
  await child.exited;
}

const waitMs = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function crashScenario(options: { url: string; publishers: number }): Promise<void> {
  const acked = new Set<string>();
  const delivered = new Set<string>();
  let wake: (() => void) | undefined;
  const onLine = () => wake?.();
  const args = (role: string, prefix: string) => [options.url, role, prefix];
  for (let round = 0; round < 3; round++) {
    const children = Array.from({ length: options.publishers }, (_, i) => startChild(args("publish", `r${round}p${i}`), acked, delivered, onLine));
    await Promise.all(children.map((c) => c.ready));
    // Kill one mid-flight at a random moment; the others keep publishing and delivering (and take over its
    // deliveries once its leases expire), then die too.
    await waitMs(150 + Math.floor(Math.random() * 400));
    await kill(children[0]!);
    await waitMs(options.publishers > 1 ? 1500 : 0);
    for (const c of children.slice(1)) await kill(c);
  }
  assert.ok(acked.size > 0, "publishes were acknowledged before the kills");
  // A fresh consumer delivers what is left: every acknowledged event must arrive, none may stay pending.
  const consumer = startChild(args("consume", "c"), acked, delivered, onLine);
  try {
    await consumer.ready;
    const missing = () => [...acked].filter((id) => !delivered.has(id));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${missing().length} acknowledged events never delivered, e.g. ${missing().slice(0, 3)}`)), 60_000);
      wake = () => {
        if (missing().length === 0) {
          clearTimeout(timer);
          resolve();
        }
      };
      wake();
    });
    const store = await openStore(options.url);
    try {
      // Acks are batched after the handler ran: poll the stats (no event announces the last commit).
      const deadline = Date.now() + 20_000;
      for (;;) {
        const stats = await store.admin.stats(["rule:default/crash/sink"]);
        const pending = stats.reduce((n, s) => n + s.ready + s.delayed + s.leased, 0);
        if (pending === 0) break;
        if (Date.now() > deadline) assert.fail(`${pending} deliveries still pending after the consumer ran`);
        await waitMs(50);
      }
      assert.equal(stats0(await store.admin.stats(["rule:default/crash/sink"])).dead, 0, "nothing dead-lettered");
    } finally {
      await store.close();
    }
  } finally {
    await kill(consumer);
  }
}

function stats0(stats: { dead: number }[]): { dead: number } {
  return stats[0] ?? { dead: 0 };
}

test("bus (sqlite) - every acknowledged publish is delivered after SIGKILLs, nothing stays pending", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-bus-crash-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await crashScenario({ url: `sqlite:${join(dir, "data.db")}`, publishers: 1 });
});

const pgSkip = await skipUnless("postgres");
test("bus (postgres) - three processes on one database, one SIGKILLed mid-flight: every acknowledged publish delivered", { skip: pgSkip }, async (t) => {
  const db = await createTestDatabase();
  t.after(() => db.drop());
  const schema = `crash_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
  await crashScenario({ url: `${db.url}?schema=${schema}`, publishers: 3 });
});
