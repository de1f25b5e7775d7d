/**
 * End to end: API keys through the CLI against `sluice start` child processes — the refusal to start without a
 * key, the first key made with `--store`, `--key` and `SLUICE_KEY`, keys created and revoked over the admin API,
 * and `sluice audit`.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBuilt, sluiceCli, startSluice, type SluiceProcess } from "../helpers/sluice-process.ts";

let dir: string;
let app: string;
let store: string;
let server: SluiceProcess | undefined;
const keyShape = /^sk_sluice_[0-9A-Za-z]{32}_[0-9A-Za-z]{6}$/;
const noKey = { SLUICE_KEY: "", SLUICE_ADMIN_KEY: "" };

before(() => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "sluice-keys-"));
  app = join(dir, "app");
  mkdirSync(join(app, "functions"), { recursive: true });
  writeFileSync(join(app, "sluice.config.ts"), `export default { name: "keys-e2e", buses: ["orders"] };\n`);
  store = `sqlite:${join(dir, "keys.db")}`;
});
after(async () => {
  await server?.stop("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

test("keys - sluice start without keys exits 2 and says how to create one; --no-auth starts", async () => {
  const r = sluiceCli(["start", app, "--port", "0", "--store", store], noKey);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /sluice keys create --name admin --scope admin:write --store sqlite:/);
  assert.match(r.stderr, /--no-auth/);
  const open = await startSluice(["start", app, "--port", "0", "--store", `sqlite:${join(dir, "open.db")}`, "--no-auth"], noKey);
  try {
    assert.match(open.output(), /API keys are not checked/);
    assert.equal(sluiceCli(["status", "--url", open.url], noKey).code, 0);
  } finally {
    await open.stop("SIGKILL");
  }
});

test("keys - the first key with --store, then --key / SLUICE_KEY, create and revoke over the server, and sluice audit", async () => {
  const bad = sluiceCli(["keys", "create", "--name", "x", "--scope", "superuser", "--store", store], noKey);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /E_CONFIG_INVALID: unknown scope "superuser"/);

  const made = sluiceCli(["keys", "create", "--name", "admin", "--scope", "admin:write", "--scope", "publish", "--store", store], noKey);
  assert.equal(made.code, 0, made.stderr);
  const adminKey = made.stdout.trim();
  assert.match(adminKey, keyShape);
  assert.match(made.stderr, /not shown again/);
  const listed = sluiceCli(["keys", "list", "--json", "--store", store], noKey);
  assert.equal(listed.code, 0, listed.stderr);
  assert.equal(listed.stdout.includes(adminKey), false, "a listing never shows the key");
  assert.deepEqual((JSON.parse(listed.stdout) as { name: string; scopes: string[] }[]).map((k) => [k.name, k.scopes]), [["admin", ["admin:write", "publish"]]]);

  server = await startSluice(["start", app, "--port", "0", "--store", store], noKey);
  const url = server.url;
  const withoutKey = sluiceCli(["status", "--url", url], noKey);
  assert.equal(withoutKey.code, 2);
  assert.match(withoutKey.stderr, /E_AUTH_REQUIRED/);
  assert.equal(sluiceCli(["status", "--url", url, "--key", adminKey], noKey).code, 0);
  assert.equal(sluiceCli(["status", "--url", url], { SLUICE_KEY: adminKey }).code, 0, "SLUICE_KEY");

  const pubMade = sluiceCli(["keys", "create", "--name", "orders-pub", "--scope", "publish:orders", "--expires", "90d", "--json", "--url", url], { SLUICE_KEY: adminKey });
  assert.equal(pubMade.code, 0, pubMade.stderr);
  const pub = JSON.parse(pubMade.stdout) as { key: string; expiresAt: number; createdBy: string };
  assert.match(pub.key, keyShape);
  assert.equal(pub.createdBy, "admin");
  assert.ok(Math.abs(pub.expiresAt - Date.now() - 90 * 86_400_000) < 60_000);

  const publish = (bus: string) => sluiceCli(["publish", "--bus", bus, "--type", "o.made", "--source", "/e2e", "--url", url, "--key", pub.key], noKey);
  assert.equal(publish("orders").code, 0, publish("orders").stderr);
  const wrongBus = publish("default");
  assert.equal(wrongBus.code, 2);
  assert.match(wrongBus.stderr, /E_SCOPE_MISSING/);

  const revoked = sluiceCli(["keys", "revoke", "orders-pub", "--url", url], { SLUICE_KEY: adminKey });
  assert.equal(revoked.code, 0, revoked.stderr);
  const after = publish("orders");
  assert.equal(after.code, 2);
  assert.match(after.stderr, /E_KEY_REVOKED/);

  const audit = sluiceCli(["audit", "--json", "--url", url], { SLUICE_KEY: adminKey });
  assert.equal(audit.code, 0, audit.stderr);
  const entries = (JSON.parse(audit.stdout) as { key: string; action: string; target: string }[]).map((e) => `${e.key} ${e.action} ${e.target}`);
  assert.deepEqual(entries.slice(0, 3), ["admin key.revoke orders-pub", "admin key.create orders-pub", "cli key.create admin"]);
  const table = sluiceCli(["audit", "--url", url, "--action", "key.revoke"], { SLUICE_KEY: adminKey });
  assert.match(table.stdout, /admin\s+key\.revoke\s+orders-pub/);

  const generated = sluiceCli(["keys", "generate"], noKey);
  assert.match(generated.stdout.trim(), keyShape);
});
