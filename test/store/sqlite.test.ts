import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import Database from "better-sqlite3";
import type { Lease } from "../../src/store/contract.ts";
import { runStoreConformance } from "../../src/store/conformance/index.ts";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import { migrations } from "../../src/store/sqlite/schema.ts";

function tempDir(): { dir: string; path: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "sluice-store-"));
  return { dir, path: join(dir, "data.db"), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

runStoreConformance({
  name: "sqlite",
  async open() {
    const { path, remove } = tempDir();
    return {
      store: await createSqliteStore({ path }),
      reopen: () => createSqliteStore({ path }),
      cleanup: async () => remove(),
    };
  },
});

test("sqlite store - opens in WAL mode, records the schema version, and migrates only once", async (t) => {
  const { path, remove } = tempDir();
  t.after(remove);
  const first = await createSqliteStore({ path: join(path, "..", "nested", "dir", "data.db") });
  await first.close();
  const store = await createSqliteStore({ path, synchronous: "full" });
  await store.close();
  const again = await createSqliteStore({ path });
  await again.close();
  const db = new Database(path, { readonly: true });
  try {
    assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
    const versions = db.prepare("SELECT version FROM schema_version ORDER BY version").pluck().all();
    assert.deepEqual(versions, migrations.map((_, i) => i + 1));
  } finally {
    db.close();
  }
});

test("sqlite store - refuses a database written by a newer schema", async (t) => {
  const { path, remove } = tempDir();
  t.after(remove);
  await (await createSqliteStore({ path })).close();
  const db = new Database(path);
  db.prepare("INSERT INTO schema_version (version) VALUES (?)").run(migrations.length + 1);
  db.close();
  await assert.rejects(createSqliteStore({ path }), (err: unknown) => {
    assert.equal((err as { code?: string }).code, "E_STORE_UNAVAILABLE");
    assert.match((err as Error).message, /newer/);
    return true;
  });
});

test("sqlite store - storedAt never decreases, so reads stay in seq order when a caller's clock steps back", async (t) => {
  const { path, remove } = tempDir();
  t.after(remove);
  const store = await createSqliteStore({ path });
  t.after(() => store.close());
  const bus = "b";
  const event = (id: string) => ({ bus, eventId: id, dedupeKey: id, encoded: `{"id":"${id}"}`, deliveries: [] });
  await store.events.append([event("late")], { now: 2000, dedupeWindowMs: 0 });
  await store.events.append([event("early")], { now: 1000, dedupeWindowMs: 0 });
  const read = await store.events.read(bus, { limit: 10 });
  assert.deepEqual(
    read.map((e) => [e.eventId, e.storedAt]),
    [
      ["late", 2000],
      ["early", 2000],
    ],
  );
  assert.ok((read[0]?.seq as number) < (read[1]?.seq as number));
  assert.deepEqual(
    (await store.events.read(bus, { afterSeq: read[0]?.seq as number, limit: 10 })).map((e) => e.eventId),
    ["early"],
  );
});

test("sqlite store - deliveries refer to their archived event, keep its body through a trim, and dead letters hold it", async (t) => {
  const { path, remove } = tempDir();
  t.after(remove);
  const store = await createSqliteStore({ path });
  t.after(() => store.close());
  const queue = `q-${randomUUID()}`;
  const bus = `b-${randomUUID()}`;
  const body = (id: string) => `{"id":"${id}","data":"${"x".repeat(50)}"}`;
  const append = (id: string, now: number, deliveries: { queue: string; payload?: string }[]) =>
    store.events.append([{ bus, eventId: id, dedupeKey: id, encoded: body(id), deliveries }], { now, dedupeWindowMs: 0 });
  await append("e1", 1000, [{ queue }, { queue, payload: "transformed" }, { queue, payload: body("e1") }]);
  await append("e2", 1000, [{ queue }]);
  await append("e3", 3000, [{ queue }]);

  const db = new Database(path, { readonly: true });
  const stored = db.prepare("SELECT event_seq, payload FROM deliveries ORDER BY id").all();
  db.close();
  assert.deepEqual(
    stored.map((r) => (r as { payload: string | null }).payload),
    [null, "transformed", null, null, null],
    "a delivery whose payload is the event's refers to the event instead of copying it",
  );

  const first = await store.queues.lease({ queues: [queue], max: 1, leaseMs: 60_000, now: 1000 });
  assert.deepEqual(first.map((l) => l.payload), [body("e1")]);
  assert.equal(await store.events.trim(bus, 2000), 2);
  assert.deepEqual(await store.events.read(bus, { limit: 10 }).then((r) => r.map((e) => e.eventId)), ["e3"]);
  const rest = await store.queues.lease({ queues: [queue], max: 10, leaseMs: 1000, now: 3000 });
  assert.deepEqual(rest.map((l) => l.payload), ["transformed", body("e1"), body("e2"), body("e3")]);

  // Dead letters keep the body, whether the event was trimmed (e1, e2) or is still archived (e3).
  await store.queues.deadLetter(first[0] as Lease, { reason: "max-attempts", now: 1500 });
  for (const lease of rest) await store.queues.deadLetter(lease, { reason: "max-attempts", now: 1500 });
  await store.events.trim(bus, 4000);
  const dead = await store.admin.listDead(queue, { limit: 10 });
  assert.deepEqual(dead.map((d) => d.payload), [body("e1"), "transformed", body("e1"), body("e2"), body("e3")]);
  assert.equal(await store.admin.redrive(queue, { now: 5000 }), 5);
  const redriven = await store.queues.lease({ queues: [queue], max: 10, leaseMs: 1000, now: 5000 });
  assert.deepEqual(redriven.map((l) => l.payload), [body("e1"), "transformed", body("e1"), body("e2"), body("e3")]);
});

test("sqlite store - a large append (several multi-row statements) keeps dedupe, order and per-key heads across chunks", async (t) => {
  const { path, remove } = tempDir();
  t.after(remove);
  const store = await createSqliteStore({ path });
  t.after(() => store.close());
  const bus = `b-${randomUUID()}`;
  const queue = `q-${randomUUID()}`;
  // 301 entries: entry i + 150 repeats entry i's dedupe key (so duplicates fall in later chunks than their
  // originals); deliveries alternate over three partition keys and keyless ones.
  const entries = Array.from({ length: 301 }, (_, i) => {
    const n = i % 150;
    const key = i % 4 === 3 ? undefined : `k${i % 4}`;
    return {
      bus,
      eventId: `e${i}`,
      dedupeKey: `src\ne${n}`,
      encoded: `{"i":${i}}`,
      deliveries: [{ queue, ...(key === undefined ? {} : { partitionKey: key }) }],
    };
  });
  const results = await store.events.append(entries, { now: 1000, dedupeWindowMs: 60_000 });
  const stored = results.slice(0, 150);
  assert.ok(stored.every((r) => r.status === "stored"));
  assert.ok(stored.every((r, i) => i === 0 || r.seq > (stored[i - 1]?.seq as number)), "seqs increase in entry order");
  assert.deepEqual(
    results.slice(150),
    [...stored, stored[0]].map((r) => ({ status: "duplicate", seq: r?.seq })),
  );
  assert.deepEqual((await store.events.read(bus, { limit: 1000 })).map((e) => e.eventId), entries.slice(0, 150).map((e) => e.eventId));
  // Leasable: the head of each key (entries 0, 1, 2) and every keyless delivery, oldest first.
  const leases = await store.queues.lease({ max: 1000, leaseMs: 60_000, now: 1000 });
  const expected = entries.slice(0, 150).filter((_, i) => i < 3 || i % 4 === 3).map((e) => e.encoded);
  assert.deepEqual(leases.map((l) => l.payload), expected);
  // Acking a key's head promotes the key's next delivery, in order.
  await store.queues.ack(leases.filter((l) => l.partitionKey === "k1"));
  const next = await store.queues.lease({ max: 1000, leaseMs: 60_000, now: 1000 });
  assert.deepEqual(next.map((l) => l.payload), ['{"i":5}']);
});

/** Waits for `condition` to hold, checking every few ms, failing after `timeoutMs`. */
async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function walSize(path: string): number {
  return existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0;
}

test("sqlite store - the checkpointer thread keeps the WAL bounded under sustained appends, truncates it when idle, and stops on close", async (t) => {
  const { path, remove } = tempDir();
  t.after(remove);
  const walMaxBytes = 1024 * 1024;
  const store = await createSqliteStore({ path, checkpoint: { intervalMs: 10, walMaxBytes } });
  const body = `{"data":"${"x".repeat(1000)}"}`;
  let maxWal = 0;
  // ~48 MB of events (each with a delivery; ~110 MB of WAL frames with the indexes), written back to back.
  const batches = 480;
  for (let batch = 0; batch < batches; batch++) {
    const entries = Array.from({ length: 100 }, (_, i) => ({
      bus: "b",
      eventId: `${batch}-${i}`,
      dedupeKey: `${batch}-${i}`,
      encoded: body,
      deliveries: [{ queue: "q" }],
    }));
    await store.events.append(entries, { now: 1000 + batch, dedupeWindowMs: 60_000 });
    maxWal = Math.max(maxWal, walSize(path));
  }
  const stats = await store.checkpointStats();
  t.diagnostic(`largest WAL ${(maxWal / 1048576).toFixed(1)} MiB; checkpoints ${JSON.stringify(stats)}`);
  assert.ok(stats !== undefined && stats.passive > 0, "passive checkpoints ran");
  assert.ok(stats.restart > 0, "the WAL was restarted when it passed walMaxBytes");
  // The checkpointer keeps it near walMaxBytes when it gets CPU; the writer holding its commits back past
  // 4 × walMaxBytes bounds it when not (one group commit of ~250 KB may land past the cap). Without checkpoints it
  // grows to ~110 MB.
  assert.ok(maxWal < 5 * walMaxBytes, `the WAL stayed bounded (largest ${maxWal} bytes)`);
  // Idle: the checkpointer truncates the WAL.
  await until(() => walSize(path) === 0, 10_000, "the idle WAL to be truncated");
  assert.equal((await store.events.read("b", { limit: 1, afterSeq: batches * 100 - 1 })).length, 1, "every event is readable");
  await store.close();
  // The checkpointer's connection was closed first, so the writer's close (the last connection) removed the WAL.
  assert.equal(existsSync(`${path}-wal`), false, "the WAL file is gone after close");
  assert.equal(await store.checkpointStats().then((s) => s?.lastError), "closed");
});

test("sqlite store - with checkpoint: false SQLite checkpoints automatically and no checkpointer runs", async (t) => {
  const { path, remove } = tempDir();
  t.after(remove);
  const store = await createSqliteStore({ path, checkpoint: false });
  t.after(() => store.close());
  assert.equal(await store.checkpointStats(), undefined);
  const db = new Database(path, { readonly: true });
  try {
    assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
  } finally {
    db.close();
  }
});
