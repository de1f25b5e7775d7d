import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { resolveStoreUrl, openStore, registerStoreScheme, storeSchemes, storeUrlProblem, UnknownStoreSchemeError } from "../../src/store/registry.ts";
import { resolveSettings } from "../../src/server/settings.ts";
import { ConfigError } from "../../src/server/config.ts";
import { createTestDatabase, skipUnless } from "../helpers/services.ts";

const childPath = fileURLToPath(new URL("./registry-child.ts", import.meta.url));

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "sluice-registry-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Opens `url` in a fresh process and reports the drivers it loaded. */
async function openInChild(url: string): Promise<{ kind: string; pg: boolean; betterSqlite3: boolean }> {
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", childPath, url], {
    env: { ...process.env, NODE_NO_WARNINGS: "1" },
  });
  return JSON.parse(stdout) as { kind: string; pg: boolean; betterSqlite3: boolean };
}

test("store registry - an unknown scheme is a typed error naming it and the accepted schemes", async () => {
  await assert.rejects(openStore("mysql://db/sluice"), (err: unknown) => {
    assert.ok(err instanceof UnknownStoreSchemeError);
    assert.equal(err.code, "E_CONFIG_INVALID");
    assert.equal(err.scheme, "mysql");
    assert.deepEqual(err.accepted, storeSchemes());
    assert.match(err.message, /"mysql:".*accepted: sqlite:, postgres:, postgresql:/);
    return true;
  });
  assert.match(storeUrlProblem("MySQL://db") ?? "", /"mysql:"/);
  assert.equal(storeUrlProblem("postgres://db"), undefined);
  assert.match(storeUrlProblem("postgres:db") ?? "", /postgres:\/\//);
  assert.match(storeUrlProblem("sqlite:") ?? "", /path is missing/);
});

test("store registry - sqlite: URLs and plain file paths open SQLite, relative paths resolved against the app", async (t) => {
  const dir = tempDir(t);
  assert.equal(resolveStoreUrl("sqlite:data/a.db", dir), `sqlite:${join(dir, "data/a.db")}`);
  assert.equal(resolveStoreUrl("./b.db", dir), `sqlite:${join(dir, "b.db")}`);
  assert.equal(resolveStoreUrl("/abs/c.db", dir), "sqlite:/abs/c.db");
  assert.equal(resolveStoreUrl("postgres://db/x", dir), "postgres://db/x");
  for (const url of [`sqlite:${join(dir, "a.db")}`, join(dir, "b.db")]) {
    const store = await openStore(url);
    try {
      const [result] = await store.events.append([{ bus: "b", eventId: "e", dedupeKey: "e", encoded: "{}", deliveries: [] }], {
        now: 1000,
        dedupeWindowMs: 0,
      });
      assert.equal(result?.status, "stored");
      assert.equal(store.capabilities.leaseJoinsAppend, true);
    } finally {
      await store.close();
    }
  }
});

test("store registry - a registered scheme is one line, and config accepts it", async (t) => {
  const dir = tempDir(t);
  registerStoreScheme("memtest", { example: "memtest:NAME", open: () => openStore(`sqlite:${join(dir, "m.db")}`) });
  const store = await openStore("memtest:x");
  await store.close();
  assert.equal(resolveSettings({ appDir: dir, mode: "dev", file: { store: "memtest:x" } }).store, "memtest:x");
  assert.throws(
    () => resolveSettings({ appDir: dir, mode: "dev", env: { SLUICE_STORE: "redis://x" } }),
    (err: unknown) => err instanceof ConfigError && /"redis:".*accepted: .*memtest:/.test(err.message),
  );
});

test("store registry - a SQLite store never loads pg", async (t) => {
  const dir = tempDir(t);
  assert.deepEqual(await openInChild(`sqlite:${join(dir, "x.db")}`), { kind: "sqlite", pg: false, betterSqlite3: true });
});

test("store registry - a PostgreSQL store never loads better-sqlite3", { skip: await skipUnless("postgres") }, async (t) => {
  const db = await createTestDatabase();
  t.after(() => db.drop());
  assert.deepEqual(await openInChild(db.url), { kind: "postgres", pg: true, betterSqlite3: false });
});
