/**
 * One copy of each validation: durations and names mean the same in the broker, the config, the settings
 * layers and function definitions. These cases drifted apart before they shared util/duration.ts and util/validate.ts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { createBroker } from "../../src/bus/broker.ts";
import { normalizeFunctionConfig } from "../../src/runtime/define.ts";
import { ConfigError, validateApp } from "../../src/server/config.ts";
import { resolveSettings } from "../../src/server/settings.ts";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import { parseDuration } from "../../src/util/duration.ts";
import { tempDir } from "../runtime/helpers.ts";

function configProblems(input: unknown): Map<string, string> {
  try {
    validateApp(input, { file: "sluice.config.ts" });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return new Map(err.problems.map((p) => [p.key, `${p.message} ${p.fix ?? ""}`]));
  }
  return new Map();
}

test("validation - a bare number string is no duration anywhere, and the error says to write the unit", () => {
  assert.throws(() => parseDuration("500", "$.timeout"), { code: "E_CONFIG_INVALID", path: "$.timeout", message: /"500" has no unit; write "500ms"/ });
  assert.throws(() => normalizeFunctionConfig({ name: "f", timeout: "500" }), { code: "E_CONFIG_INVALID", path: "$.timeout", message: /write "500ms"/ });
  assert.match(configProblems({ name: "shop", server: { shutdownGrace: "500" } }).get("server.shutdownGrace") ?? "", /write "500ms"/);
  assert.match(configProblems({ name: "shop", buses: [{ name: "orders", retention: "7" }] }).get("buses[0].retention") ?? "", /write "7ms"/);
  assert.throws(() => resolveSettings({ appDir: "/a", mode: "dev", env: { SLUICE_SHUTDOWN_GRACE: "500" } }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.problems[0]?.key, "environment SLUICE_SHUTDOWN_GRACE");
    assert.match(err.problems[0]?.message ?? "", /write "500ms"/);
    return true;
  });
});

test("validation - durations with a unit, milliseconds as numbers and a bare zero mean the same everywhere", () => {
  for (const [text, ms] of [["500ms", 500], ["1.5s", 1500], ["5m", 300_000], ["12h", 43_200_000], ["7d", 604_800_000], ["0", 0]] as const) {
    assert.equal(parseDuration(text, "$.x"), ms, text);
  }
  assert.equal(parseDuration(250, "$.x"), 250);
  assert.equal(normalizeFunctionConfig({ name: "f", timeout: "1.5s" }).timeoutMs, 1500);
  assert.equal(resolveSettings({ appDir: "/a", mode: "dev", file: { shutdownGrace: "1.5s" } }).shutdownGraceMs, 1500);
  const app = validateApp({ name: "shop", buses: [{ name: "off", retention: "0" }, { name: "week", retention: "7d" }] }, { file: "c.ts" });
  assert.deepEqual(app.buses.map((b) => b.retentionMs), [0, 604_800_000]);
  for (const bad of ["5 s", "1w", "-1s", "", null]) assert.throws(() => parseDuration(bad, "$.x"), { code: "E_CONFIG_INVALID", path: "$.x" }, String(bad));
});

test("validation - bus and rule names follow one rule in the broker and in the config", async () => {
  const dir = tempDir("sluice-names-");
  const store = await createSqliteStore({ path: join(dir, "sluice.db") });
  const broker = await createBroker({ store, dispatch: false });
  try {
    for (const name of ["-orders", ".orders", "a".repeat(65), "or ders"]) {
      await assert.rejects(broker.putBus({ name }), { code: "E_BAD_REQUEST", path: "$.name" }, name);
      assert.ok(configProblems({ name: "shop", buses: [name] }).has("buses[0]"), name);
      await assert.rejects(broker.putRule({ name, pattern: { type: ["x"] }, targets: [] }), { code: "E_BAD_REQUEST", path: "$.name" }, name);
      const rule = configProblems({ name: "shop", rules: [{ name, pattern: { type: ["x"] }, targets: [{ bus: "default" }] }] });
      assert.ok([...rule.keys()].some((k) => k.startsWith("rules[0]") && k.endsWith(".name")), `${name}: ${[...rule.keys()]}`);
    }
    for (const name of ["orders", "o.r_d-1", "9lives", "a".repeat(64)]) {
      await broker.putBus({ name });
      assert.equal(configProblems({ name: "shop", buses: [name] }).size, 0, name);
      await broker.putRule({ name, pattern: { type: ["x"] }, targets: [] });
    }
  } finally {
    await broker.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
