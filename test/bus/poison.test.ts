/**
 * A poison event: its handler kills the whole process (SIGKILL) every time. Each restarted broker leases it
 * again once the dead one's lease expires; past its target's maxAttempts (3) it must be dead-lettered at lease
 * time with reason `crashed`, so it takes the process down exactly 3 times and the rest of the queue is
 * delivered. On SQLite and PostgreSQL.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createBroker } from "../../src/bus/broker.ts";
import { openStore } from "../../src/store/registry.ts";
import { createTestDatabase, skipUnless } from "../helpers/services.ts";
import { poisonRule } from "./poison-rule.ts";

const childPath = fileURLToPath(new URL("./poison-child.ts", import.meta.url));
const queue = "rule:default/poison/sink";

interface Run {
  /** The exit signal (SIGKILL when the poison killed it), or null when it was still up and got stopped. */
  signal: NodeJS.Signals | null;
}

/** Runs one child until it dies or `done()` holds (then kills it); records its K and D lines. */
function runChild(args: string[], kills: number[], delivered: Set<string>, done: () => Promise<boolean>): Promise<Run> {
  const proc = spawn(process.execPath, ["--import", "tsx", childPath, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  let buffer = "";
  let selfKilled = false;
  proc.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line.startsWith("K ")) {
        kills.push(Number(line.slice(2)));
        selfKilled = true;
      } else if (line.startsWith("D ")) delivered.add(line.slice(2));
    }
  });
  return new Promise<Run>((resolve, reject) => {
    const deadline = Date.now() + 30_000;
    const timer = setInterval(() => {
      void done().then((ok) => {
        if (ok) proc.kill("SIGKILL");
        else if (Date.now() > deadline) {
          proc.kill("SIGKILL");
          reject(new Error(`a broker ran 30 s without dying or finishing; kills so far ${kills}`));
        }
      });
    }, 100);
    proc.once("exit", (_code, signal) => {
      clearInterval(timer);
      resolve({ signal: selfKilled ? signal : null });
    });
  });
}

const event = (id: string, data: unknown) => ({ specversion: "1.0", id, source: "/poison", type: "t", data });

async function poisonScenario(url: string): Promise<void> {
  const args = [url];
  const store = await openStore(url);
  // Publishes only: the children deliver.
  const broker = await createBroker({ store, startDispatcher: false });
  try {
    await broker.putRule(poisonRule);
    const kills: number[] = [];
    const delivered = new Set<string>();
    const has = (prefix: string) => [0, 1, 2, 3, 4].every((i) => delivered.has(`${prefix}-${i}`));
    await broker.publish("default", [0, 1, 2, 3, 4].map((i) => event(`before-${i}`, { i })));
    let poisoned = false;
    let after = false;
    const step = async () => {
      if (!poisoned && has("before")) {
        poisoned = true;
        await broker.publish("default", [event("poison-1", { poison: true })]);
      }
      if (poisoned && !after && (await store.admin.listDead(queue, { limit: 10 })).length > 0) {
        after = true;
        await broker.publish("default", [0, 1, 2, 3, 4].map((i) => event(`after-${i}`, { i })));
      }
      return after && has("after");
    };
    let selfKills = 0;
    for (let i = 0; i < 8; i++) {
      const run = await runChild(args, kills, delivered, step);
      if (run.signal === null) break;
      assert.equal(run.signal, "SIGKILL");
      selfKills++;
    }
    assert.deepEqual(kills, [1, 2, 3], "the poison ran on attempts 1, 2 and 3 only");
    assert.equal(selfKills, 3, "it took the process down 3 times, not more");
    const dead = await store.admin.listDead(queue, { limit: 10 });
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.reason, "crashed");
    assert.match(dead[0]!.lastError ?? "", /attempt 4 of at most 3: earlier attempts never reported back/);
    assert.equal((JSON.parse(dead[0]!.payload) as { id: string }).id, "poison-1");
    assert.ok(has("before") && has("after"), "the events before and after the poison were delivered");
  } finally {
    await broker.close();
    await store.close();
  }
}

test("bus (sqlite) - an event that kills its process is dead-lettered as crashed after maxAttempts deaths", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-poison-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await poisonScenario(`sqlite:${join(dir, "data.db")}`);
});

const pgSkip = await skipUnless("postgres");
test("bus (postgres) - an event that kills its process is dead-lettered as crashed after maxAttempts deaths", { skip: pgSkip }, async (t) => {
  const db = await createTestDatabase();
  t.after(() => db.drop());
  const schema = `poison_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
  await poisonScenario(`${db.url}?schema=${schema}`);
});
