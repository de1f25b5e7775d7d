import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { runStoreConformance } from "../../src/store/conformance.ts";
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
