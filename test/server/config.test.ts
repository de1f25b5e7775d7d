import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, defineApp, validateApp } from "../../src/server/config.ts";
import { loadAppModule } from "../../src/server/load-app.ts";
import { resolveSettings, DEFAULT_PORT } from "../../src/server/settings.ts";

const fns = [
  { name: "create-order", file: "functions/create-order.ts" },
  { name: "billing", file: "functions/billing.ts", on: { type: ["order.created"] } },
];

function problemsOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected a ConfigError");
}

test("config - a valid app validates into a read-only object", () => {
  const app = validateApp(
    defineApp({
      name: "shop",
      routes: { "POST /orders": "create-order", "GET /orders/:id": { function: "create-order", async: false } },
      schedules: {
        nightly: { cron: "0 2 * * *", timezone: "Europe/Berlin", emit: { type: "report.requested", source: "shop" } },
        tick: { rate: "5 minutes", invoke: "billing", catchUp: true },
      },
      rules: [{ name: "audit", pattern: { source: ["shop"] }, targets: [{ webhook: "http://127.0.0.1:9000/audit" }, { function: "billing" }] }],
    }),
    { file: "sluice.config.ts", functions: fns },
  );
  assert.equal(app.name, "shop");
  assert.deepEqual(app.routes.map((r) => [r.method, r.path, r.function]), [
    ["POST", "/orders", "create-order"],
    ["GET", "/orders/:id", "create-order"],
  ]);
  assert.equal(app.schedules.length, 2);
  assert.equal(app.schedules[1]?.catchUp, true);
  assert.deepEqual(app.rules[0]?.targets.map((t) => t.id), ["webhook-0", "fn-billing"]);
  assert.ok(Object.isFrozen(app) && Object.isFrozen(app.routes) && Object.isFrozen(app.routes[0]));
});

test("config - every problem is reported at once, naming the file, the key and the fix", () => {
  const err = problemsOf(() =>
    validateApp(
      {
        name: "shop",
        rotues: {},
        routes: { "POST /orders": "create-ordr", "FETCH /x": "billing", "GET /events": "billing" },
        schedules: {
          a: { cron: "0 2 * *", emit: { type: "t", source: "s" } },
          b: { rate: "5 fortnights", invoke: "billing" },
          c: { at: "tomorrow", emit: { type: "t", source: "s" } },
          d: { cron: "* * * * *", timezone: "Mars/Olympus", emit: { type: "t", source: "s" } },
          e: { rate: "1 minute" },
        },
        rules: [
          { name: "audit", pattern: { source: ["shop"] }, targets: [{ function: "nope" }] },
          { name: "audit", pattern: { source: ["shop"] }, targets: [{ bus: "orders" }] },
        ],
        server: { port: 99999 },
      },
      { file: "/apps/shop/sluice.config.ts", functions: fns },
    ),
  );
  const byKey = new Map(err.problems.map((p) => [p.key, p]));
  assert.match(err.message, /^\/apps\/shop\/sluice\.config\.ts has \d+ problems/);
  assert.equal(byKey.get("rotues")?.fix, 'did you mean "routes"?');
  assert.match(byKey.get('routes["POST /orders"]')?.message ?? "", /unknown function "create-ordr"/);
  assert.equal(byKey.get('routes["POST /orders"]')?.fix, 'did you mean "create-order"?');
  assert.ok(byKey.has('routes["FETCH /x"]'));
  assert.match(byKey.get('routes["GET /events"]')?.message ?? "", /reserved/);
  assert.match(byKey.get('schedules["a"].cron')?.message ?? "", /4 fields/);
  assert.match(byKey.get('schedules["b"].rate')?.message ?? "", /invalid/);
  assert.match(byKey.get('schedules["c"].at')?.message ?? "", /ISO 8601/);
  assert.match(byKey.get('schedules["d"].timezone')?.message ?? "", /IANA/);
  assert.match(byKey.get('schedules["e"]')?.message ?? "", /emit or invoke/);
  assert.match(byKey.get('rules[0] ("audit").targets[0].function')?.message ?? "", /unknown function "nope"/);
  assert.match(byKey.get('rules[1] ("audit").name')?.message ?? "", /declared twice/);
  assert.match(byKey.get('rules[1] ("audit").targets[0].bus')?.fix ?? "", /buses: \["orders"\]/);
  assert.match(byKey.get("server.port")?.message ?? "", /not a port/);
  assert.ok(err.problems.length >= 13, `got ${err.problems.length}`);
});

test("config - a bad pattern is reported with its JSON path from the pattern compiler", () => {
  const err = problemsOf(() =>
    validateApp(
      { name: "x", rules: [{ name: "r", pattern: { type: [{ prefx: "a" }] }, targets: [{ function: "billing" }] }] },
      { file: "c.ts", functions: fns },
    ),
  );
  assert.equal(err.problems[0]?.key, 'rules[0] ("r").pattern.type[0].prefx');
  assert.match(err.problems[0]?.message ?? "", /unknown operator/);
});

test("config - duplicate function names are reported with both files", () => {
  const err = problemsOf(() =>
    validateApp({ name: "x" }, { file: "c.ts", functions: [...fns, { name: "billing", file: "functions/other.ts" }] }),
  );
  assert.match(err.message, /functions \(functions\/other\.ts\): function name "billing" is also used by functions\/billing\.ts/);
});

test("settings - defaults < config file < SLUICE_* environment < flags, with every bad layer reported", () => {
  const base = { appDir: "/apps/shop", mode: "dev" as const };
  const d = resolveSettings(base);
  assert.equal(d.port, DEFAULT_PORT);
  assert.equal(d.host, "127.0.0.1");
  assert.equal(d.store, "sqlite:/apps/shop/.sluice/sluice.db");
  assert.ok(Object.isFrozen(d));
  const s = resolveSettings({
    ...base,
    file: { port: 9000, logLevel: "debug", store: "sqlite:./data/x.db" },
    env: { SLUICE_PORT: "9100", SLUICE_SHUTDOWN_GRACE: "3s" },
    flags: { port: 9200 },
  });
  assert.equal(s.port, 9200);
  assert.equal(s.logLevel, "debug");
  assert.equal(s.shutdownGraceMs, 3000);
  assert.equal(s.store, "sqlite:/apps/shop/data/x.db");
  assert.equal(resolveSettings({ ...base, file: { port: 9000 }, env: { SLUICE_PORT: "9100" } }).port, 9100);
  assert.equal(d.maxPendingDeliveries, undefined, "the broker's default applies");
  const limits = resolveSettings({ ...base, file: { maxPendingDeliveries: 50, maxQueuedEntries: 10 }, env: { SLUICE_MAX_QUEUED_ENTRIES: "20" } });
  assert.deepEqual([limits.maxPendingDeliveries, limits.maxQueuedEntries], [50, 20]);
  const runtime = resolveSettings({ ...base, file: { maxInstances: 8, idleTimeout: "5m" }, env: { SLUICE_IDLE_TIMEOUT: "90s" } });
  assert.deepEqual([runtime.maxInstances, runtime.idleTimeoutMs, d.maxInstances, d.idleTimeoutMs], [8, 90_000, undefined, undefined]);
  const bad = problemsOf(() => resolveSettings({ ...base, env: { SLUICE_MAX_INSTANCES: "0", SLUICE_IDLE_TIMEOUT: "soon" } }));
  assert.deepEqual(bad.problems.map((p) => p.key), ["environment SLUICE_IDLE_TIMEOUT", "environment SLUICE_MAX_INSTANCES"]);
  const err = problemsOf(() =>
    resolveSettings({
      ...base,
      env: { SLUICE_PORT: "http", SLUICE_STORE: "mysql://x", SLUICE_MAX_PENDING_DELIVERIES: "lots" },
      flags: { logLevel: "loud" as never, maxQueuedEntries: 0 },
    }),
  );
  assert.deepEqual(
    err.problems.map((p) => p.key),
    ["environment SLUICE_PORT", "environment SLUICE_STORE", "environment SLUICE_MAX_PENDING_DELIVERIES", "flag --log-level", "flag --max-queued-entries"],
  );
});

test("config - loadAppModule reads sluice.config.ts through tsx and lists the function files", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-config-"));
  try {
    mkdirSync(join(dir, "functions", "nested"), { recursive: true });
    writeFileSync(join(dir, "sluice.config.ts"), `const name: string = "demo";\nexport default { name, routes: { "POST /hello": "hello" } };\n`);
    for (const f of ["hello.ts", "nested/other.mjs", "hello.test.ts", "_shared.ts", "types.d.ts"]) writeFileSync(join(dir, "functions", f), "export {};\n");
    const mod = await loadAppModule(dir);
    assert.deepEqual((mod.exported as { name: string }).name, "demo");
    assert.ok(mod.configFile.endsWith("sluice.config.ts"));
    assert.deepEqual(mod.functionFiles.map((f) => f.slice(dir.length + 1)), ["functions/hello.ts", "functions/nested/other.mjs"]);

    writeFileSync(join(dir, "sluice.config.ts"), `export default { name: "demo", functions: ["./functions/hello.ts", "./gone.ts"] };\n`);
    await assert.rejects(loadAppModule(dir), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.problems.map((p) => p.key), ["functions[1]"]);
      return true;
    });
    writeFileSync(join(dir, "sluice.config.ts"), `export default { name: "demo", oops };\n`);
    await assert.rejects(loadAppModule(dir), /could not be loaded: .*oops/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("config - loadAppModule names a missing config file and how to create one", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-config-"));
  try {
    await assert.rejects(loadAppModule(dir), /sluice init/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
