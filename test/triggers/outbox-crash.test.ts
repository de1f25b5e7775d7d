/**
 * The transactional outbox on both databases, through real `sluice start` processes: 1 000 transactions
 * enqueue events (some roll back) while the relaying node is SIGKILLed at random moments and started again.
 * Exactly the committed events reach the function, each once (no event repeats an attempt number: a republish
 * after a kill between publish and delete is deduped by the bus), in order per partition key.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { enqueue, enqueueSync } from "../../src/outbox/index.ts";
import { skipUnless } from "../helpers/services.ts";
import { ensureBuilt, eventually, startSluice, type SluiceProcess } from "../helpers/sluice-process.ts";
import { createCdcDatabase, recorderFunction } from "./pg-cdc-helpers.ts";

/** A loaded machine (CI on two shared cores) can take long to start a node: the kill loop waits for it. */
const startupMs = 120_000;
const transactions = 1000;

interface Seen {
  id: string;
  attempt: number;
  key: string;
  n: number;
}

/** A deterministic pseudo-random sequence, so a failure can be re-run as it was. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function readSeen(file: string): Seen[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.endsWith(";"))
    .map((l) => {
      const [id, attempt, key, n] = l.slice(0, -1).split(" ");
      return { id: id!, attempt: Number(attempt), key: key!, n: Number(n) };
    });
}

/** Committed events, for the checks: id -> [key, n]. */
type Committed = Map<string, [string, number]>;

async function runWithKills(sourceConfig: string, produce: (committed: Committed) => Promise<void>): Promise<void> {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), "sluice-outbox-"));
  const out = join(dir, "seen.log");
  const nodes: SluiceProcess[] = [];
  let producer: Promise<void> | undefined;
  try {
    const app = join(dir, "app");
    mkdirSync(join(app, "functions"), { recursive: true });
    writeFileSync(
      join(app, "sluice.config.ts"),
      `export default { name: "outbox-crash", sources: { ob: ${sourceConfig} }, rules: [{ name: "record", pattern: { source: ["/test/outbox"] }, targets: [{ function: "record" }] }] };\n`,
    );
    writeFileSync(
      join(app, "functions", "record.ts"),
      recorderFunction(out, ["event.partitionkey", "(event.data as { n: number }).n"]),
    );
    const args = ["start", app, "--port", "0", "--store", `sqlite:${join(dir, "store.db")}`, "--no-auth"];
    const committed: Committed = new Map();
    let producing = true;
    producer = produce(committed).finally(() => (producing = false));
    const rnd = random(7);
    let kills = 0;
    while (producing || kills < 3) {
      const node = await startSluice(args, {}, startupMs);
      nodes.push(node);
      await new Promise((r) => setTimeout(r, 200 + rnd() * 1200));
      if (!producing && kills >= 3) break;
      node.proc.kill("SIGKILL");
      await node.exited;
      kills++;
    }
    await producer;
    if (nodes.at(-1)?.proc.exitCode !== null || nodes.at(-1)?.proc.signalCode !== null) nodes.push(await startSluice(args, {}, startupMs));
    assert.ok(kills >= 3, `the relay was killed ${kills} times`);
    await eventually(async () => (new Set(readSeen(out).map((s) => s.id)).size >= committed.size ? true : undefined), `${committed.size} events at the function`, 120_000);
    await new Promise((r) => setTimeout(r, 1000));
    const seen = readSeen(out);
    const byId = new Map<string, Seen[]>();
    for (const s of seen) byId.set(s.id, [...(byId.get(s.id) ?? []), s]);
    assert.deepEqual([...byId.keys()].filter((id) => !committed.has(id)), [], "only committed events (none of a rolled-back transaction)");
    assert.equal(byId.size, committed.size, "every committed event");
    assert.deepEqual([...byId.entries()].filter(([, list]) => new Set(list.map((s) => s.attempt)).size !== list.length).slice(0, 3), [], "each event once");
    const order = new Map<string, number[]>();
    const first = new Set<string>();
    for (const s of seen) {
      if (first.has(s.id)) continue;
      first.add(s.id);
      order.set(s.key, [...(order.get(s.key) ?? []), s.n]);
    }
    for (const [key, ns] of order) assert.deepEqual(ns, ns.toSorted((a, b) => a - b), `events of ${key} in order`);
  } finally {
    for (const n of nodes) if (n.proc.exitCode === null && n.proc.signalCode === null) await n.stop("SIGTERM").catch(() => undefined);
    // A failure above leaves the producer running: let it finish before its database is dropped.
    await producer?.catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

test("outbox - SQLite: 1000 transactions, some rolled back, relay SIGKILLed at random: committed events once each, in order per key", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-outbox-app-"));
  const path = join(dir, "app.db");
  try {
    const db = new Database(path);
    db.pragma("journal_mode = WAL");
    db.pragma("busy_timeout = 5000");
    db.exec("CREATE TABLE cdc_orders (id INTEGER PRIMARY KEY, key TEXT, n INTEGER)");
    await runWithKills(`{ kind: "sqlite-outbox", path: ${JSON.stringify(path)}, table: "cdc_outbox", pollInterval: "20ms" }`, async (committed) => {
      const rnd = random(11);
      const next = new Map<string, number>();
      for (let t = 0; t < transactions; t++) {
        const key = `k${t % 13}`;
        const n = (next.get(key) ?? 0) + 1;
        const rollback = rnd() < 0.15;
        let id = "";
        try {
          db.transaction(() => {
            db.prepare("INSERT INTO cdc_orders (key, n) VALUES (?, ?)").run(key, n);
            id = enqueueSync(db, { type: "order.created", source: "/test/outbox", partitionkey: key, data: { n } }, { table: "cdc_outbox" });
            if (rollback) throw new Error("rolled back");
          })();
        } catch (err) {
          if ((err as Error).message !== "rolled back") throw err;
          continue;
        }
        next.set(key, n);
        committed.set(id, [key, n]);
        await new Promise((r) => setTimeout(r, 8));
      }
    });
    assert.equal((db.prepare("SELECT count(*) AS c FROM cdc_outbox").get() as { c: number }).c, 0, "the relay deleted what it published");
    db.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("outbox - PostgreSQL: 1000 transactions from 4 clients, some rolled back, relay SIGKILLed at random", { skip: await skipUnless("postgres") }, async () => {
  const db = await createCdcDatabase();
  const { default: pg } = await import("pg");
  const table = db.unique("cdc_outbox");
  try {
    await db.query("CREATE TABLE cdc_orders (id bigserial PRIMARY KEY, key text, n int)");
    await runWithKills(`{ kind: "postgres-outbox", url: ${JSON.stringify(db.url)}, table: "${table}", pollInterval: "500ms" }`, async (committed) => {
      await Promise.all(
        Array.from({ length: 4 }, async (_, c) => {
          const client = new pg.Client({ connectionString: db.url });
          await client.connect();
          const rnd = random(100 + c);
          const next = new Map<string, number>();
          try {
            for (let t = 0; t < transactions / 4; t++) {
              const key = `c${c}-k${t % 5}`;
              const n = (next.get(key) ?? 0) + 1;
              await client.query("BEGIN");
              await client.query("INSERT INTO cdc_orders (key, n) VALUES ($1, $2)", [key, n]);
              const id = await enqueue(client, { type: "order.created", source: "/test/outbox", partitionkey: key, data: { n } }, { table });
              if (rnd() < 0.15) {
                await client.query("ROLLBACK");
                continue;
              }
              await client.query("COMMIT");
              next.set(key, n);
              committed.set(id, [key, n]);
              await new Promise((r) => setTimeout(r, 25));
            }
          } finally {
            await client.end();
          }
        }),
      );
    });
    assert.equal(Number((await db.query<{ c: string }>(`SELECT count(*) AS c FROM ${table}`)).rows[0]!.c), 0, "the relay deleted what it published");
  } finally {
    await db.drop();
  }
});
