/**
 * Package hygiene: importing "sluice" (what function and config files do) loads no driver and no bundler, and
 * tsx is not a runtime dependency.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBuilt, root } from "./helpers/sluice-process.ts";

const heavy = /\/node_modules\/(better-sqlite3|esbuild|pg|pg-pool|tsx|amqplib|mqtt|ioredis|pg-logical-replication|@nats-io\/[^/]+|@opentelemetry\/[^/]+)\//;

/** The packages under node_modules that importing `specifier` from a fresh process resolves. */
function packagesLoadedBy(specifier: string): string[] {
  const dir = mkdtempSync(join(tmpdir(), "sluice-imports-"));
  try {
    const hooks = join(dir, "hooks.mjs");
    writeFileSync(hooks, `export async function resolve(s, c, next) { const r = await next(s, c); if (r.url.includes("/node_modules/")) process.stdout.write(r.url + "\\n"); return r; }\n`);
    const register = `import { register } from "node:module"; register(${JSON.stringify(new URL(`file://${hooks}`).href)});`;
    const r = spawnSync(process.execPath, ["--import", `data:text/javascript,${encodeURIComponent(register)}`, "-e", `await import(${JSON.stringify(specifier)})`], {
      cwd: root,
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split("\n").filter(Boolean);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("package - import \"sluice\" loads no driver, no esbuild and no tsx", () => {
  ensureBuilt();
  const loaded = packagesLoadedBy("sluice");
  assert.ok(loaded.some((u) => u.includes("/node_modules/uuid/")), "the probe sees what the import loads");
  assert.deepEqual(loaded.filter((u) => heavy.test(u)), []);
});

test("package - the heavy factories still work from the root: createSqliteStore loads better-sqlite3 when called", async () => {
  ensureBuilt();
  const { createSqliteStore } = (await import(join(root, "dist/index.js"))) as typeof import("../src/index.ts");
  const dir = mkdtempSync(join(tmpdir(), "sluice-root-"));
  try {
    const store = await createSqliteStore({ path: join(dir, "s.db") });
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("package - tsx and nats are not runtime dependencies; pg is optional", () => {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as Record<string, Record<string, string> | undefined>;
  assert.equal(pkg.dependencies?.tsx, undefined);
  assert.equal(pkg.dependencies?.nats, undefined);
  assert.equal(pkg.dependencies?.pg, undefined);
  assert.ok(pkg.optionalDependencies?.pg);
});

test("package - import \"sluice/outbox\" loads no driver (the app passes its own pg client or better-sqlite3 database)", () => {
  ensureBuilt();
  assert.deepEqual(packagesLoadedBy("sluice/outbox").filter((u) => heavy.test(u) || u.includes("pg-logical-replication")), []);
});
