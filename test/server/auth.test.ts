/**
 * API keys, scopes, Host/Origin checks, admin content types, rate limits, redaction, stored headers and the audit
 * log, against servers started in-process and called over real HTTP.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateKey } from "../../src/auth/key-format.ts";
import { ConfigError } from "../../src/server/config.ts";
import { startServer, type RunningServer } from "../../src/server/server.ts";
import { eventually } from "../helpers/sluice-process.ts";
import { tempDir, writeFunction } from "../runtime/helpers.ts";

const bootstrap = `test-bootstrap-${"x".repeat(32)}`;
const admin = { authorization: `Bearer ${bootstrap}` };
const json = { "content-type": "application/json" };

function writeApp(dir: string, out: string): void {
  writeFunction(join(dir, "functions"), "echo", "", "return { statusCode: 200, body: { ok: true } };");
  writeFunction(
    join(dir, "functions"),
    "capture",
    "",
    `require("node:fs").writeFileSync(${JSON.stringify(join(out, "headers.json"))}, JSON.stringify(data.headers));`,
  );
  writeFunction(
    join(dir, "functions"),
    "audit-sink",
    `on: { source: ["sluice/admin"] },`,
    `require("node:fs").appendFileSync(${JSON.stringify(join(out, "audit.ndjson"))}, JSON.stringify({ type: event.type, data }) + "\\n");`,
  );
  writeFileSync(
    join(dir, "sluice.config.ts"),
    `export default {
      name: "auth-test",
      buses: ["orders"],
      routes: {
        "POST /public": "echo",
        "POST /private": { function: "echo", auth: "invoke:echo" },
        "POST /capture": { function: "capture", async: true },
        "POST /capture-some": { function: "capture", async: true, headers: ["x-kept"] },
      },
      rules: [{ name: "hook", pattern: { type: ["never.sent"] },
        targets: [{ webhook: { url: "https://user:pw123@example.com/h", secret: "s3cret-value", headers: { "x-token": "tok-value" } } }] }],
    };\n`,
  );
}

let dir: string;
let out: string;
let server: RunningServer;
const url = (p: string) => `${server.url}${p}`;

before(async () => {
  dir = tempDir("sluice-auth-");
  out = tempDir("sluice-auth-out-");
  writeApp(dir, out);
  server = await startServer({
    appDir: dir,
    mode: "start",
    flags: { port: 0, host: "127.0.0.1", logLevel: "silent", store: `sqlite:${join(dir, "s.db")}` },
    env: { SLUICE_ADMIN_KEY: bootstrap },
  });
});
after(async () => {
  await server?.close();
});

async function createKey(name: string, scopes: string[], extra: Record<string, unknown> = {}): Promise<string> {
  const res = await fetch(url("/admin/keys"), { method: "POST", headers: { ...admin, ...json }, body: JSON.stringify({ name, scopes, ...extra }) });
  assert.equal(res.status, 201, await res.clone().text());
  return ((await res.json()) as { key: string }).key;
}
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
async function code(res: Response): Promise<string | undefined> {
  return ((await res.json()) as { error?: { code?: string } }).error?.code;
}
const ce = (type: string) => JSON.stringify({ specversion: "1.0", id: crypto.randomUUID(), source: "/t", type });
const cejson = { "content-type": "application/cloudevents+json" };

test("auth - sluice start refuses to start with no key in the store and no SLUICE_ADMIN_KEY, and says how to make one", async () => {
  const d = tempDir("sluice-auth-none-");
  writeFileSync(join(d, "sluice.config.ts"), `export default { name: "none" };\n`);
  await assert.rejects(
    startServer({ appDir: d, mode: "start", flags: { port: 0, host: "127.0.0.1", logLevel: "silent" }, env: {} }),
    (err: unknown) => err instanceof ConfigError && /sluice keys create/.test(err.message) && /SLUICE_ADMIN_KEY/.test(err.message) && /--no-auth/.test(err.message),
  );
  await assert.rejects(
    startServer({ appDir: d, mode: "start", flags: { port: 0, host: "127.0.0.1", logLevel: "silent" }, env: { SLUICE_ADMIN_KEY: "short" } }),
    (err: unknown) => err instanceof ConfigError && /SLUICE_ADMIN_KEY/.test(err.message) && /32 characters/.test(err.message),
  );
  const open = await startServer({ appDir: d, mode: "start", flags: { port: 0, host: "127.0.0.1", logLevel: "silent" }, env: {}, noAuth: true });
  try {
    assert.equal((await fetch(`${open.url}/admin/status`)).status, 200, "--no-auth serves admin without a key");
  } finally {
    await open.close();
  }
});

test("auth - no, malformed, unknown keys are 401 with their codes; /healthz is public; the bootstrap key passes", async () => {
  assert.equal((await fetch(url("/healthz"))).status, 200);
  let res = await fetch(url("/admin/status"));
  assert.equal(res.status, 401);
  assert.equal(await code(res), "E_AUTH_REQUIRED");
  res = await fetch(url("/admin/status"), { headers: { authorization: "Bearer nonsense" } });
  assert.equal(res.status, 401);
  assert.equal(await code(res), "E_KEY_INVALID");
  res = await fetch(url("/admin/status"), { headers: { authorization: "Basic abc" } });
  assert.equal(await code(res), "E_KEY_INVALID");
  res = await fetch(url("/admin/status"), { headers: bearer(generateKey()) });
  assert.equal(res.status, 401, "a well-formed key the store does not know");
  assert.equal(await code(res), "E_KEY_INVALID");
  const tampered = generateKey().replace(/.$/, (c) => (c === "a" ? "b" : "a"));
  assert.equal(await code(await fetch(url("/admin/status"), { headers: bearer(tampered) })), "E_KEY_INVALID");
  res = await fetch(url("/admin/status"), { headers: admin });
  assert.equal(res.status, 200);
  res = await fetch(url("/events"), { method: "POST", headers: cejson, body: ce("t.x") });
  assert.equal(res.status, 401, "publishing needs a key");
  assert.equal((await fetch(url("/metrics"))).status, 401, "metrics needs a key");
});

test("auth - scopes: publish:<bus>, admin:read, metrics, route auth; a key missing its scope is 403 E_SCOPE_MISSING", async () => {
  const pub = await createKey("pub-orders", ["publish:orders"]);
  assert.match(pub, /^sk_sluice_[0-9A-Za-z]{32}_[0-9A-Za-z]{6}$/);
  let res = await fetch(url("/buses/orders/events"), { method: "POST", headers: { ...bearer(pub), ...cejson }, body: ce("o.x") });
  assert.equal(res.status, 202, await res.clone().text());
  res = await fetch(url("/events"), { method: "POST", headers: { ...bearer(pub), ...cejson }, body: ce("o.x") });
  assert.equal(res.status, 403);
  assert.equal(await code(res), "E_SCOPE_MISSING");
  assert.equal((await fetch(url("/admin/status"), { headers: bearer(pub) })).status, 403);

  const reader = await createKey("reader", ["admin:read"]);
  assert.equal((await fetch(url("/admin/status"), { headers: bearer(reader) })).status, 200);
  res = await fetch(url("/admin/dlq/default/hook/webhook-0/purge"), { method: "POST", headers: { ...bearer(reader), ...json }, body: "{}" });
  assert.equal(res.status, 403, "admin:read cannot write");
  assert.equal(await code(res), "E_SCOPE_MISSING");
  const writer = await createKey("writer", ["admin:write"]);
  assert.equal((await fetch(url("/admin/status"), { headers: bearer(writer) })).status, 200, "admin:write covers admin:read");
  assert.equal((await fetch(url("/metrics"), { headers: bearer(reader) })).status, 403);
  const metrics = await createKey("scraper", ["metrics"]);
  assert.equal((await fetch(url("/metrics"), { headers: bearer(metrics) })).status, 200);

  // app routes: public unless they name a scope
  assert.equal((await fetch(url("/public"), { method: "POST", headers: json, body: "{}" })).status, 200);
  assert.equal((await fetch(url("/private"), { method: "POST", headers: json, body: "{}" })).status, 401);
  assert.equal((await fetch(url("/private"), { method: "POST", headers: { ...bearer(pub), ...json }, body: "{}" })).status, 403);
  const invoker = await createKey("invoker", ["invoke:echo"]);
  assert.equal((await fetch(url("/private"), { method: "POST", headers: { ...bearer(invoker), ...json }, body: "{}" })).status, 200);
  res = await fetch(url("/admin/functions/echo/invoke"), { method: "POST", headers: { ...bearer(invoker), ...json }, body: "{}" });
  assert.equal(res.status, 200, "invoke:echo may invoke echo through the admin API");
  res = await fetch(url("/admin/functions/capture/invoke"), { method: "POST", headers: { ...bearer(invoker), ...json }, body: "{}" });
  assert.equal(res.status, 403, "but not another function");
});

test("auth - a bad create is a typed 400 naming the field; names of live keys are unique", async () => {
  let res = await fetch(url("/admin/keys"), { method: "POST", headers: { ...admin, ...json }, body: JSON.stringify({ name: "x1", scopes: ["publish", "root"] }) });
  assert.equal(res.status, 400);
  const body = (await res.json()) as { error: { code: string; path: string; message: string } };
  assert.equal(body.error.code, "E_CONFIG_INVALID");
  assert.equal(body.error.path, "$.scopes[1]");
  assert.match(body.error.message, /unknown scope "root"/);
  res = await fetch(url("/admin/keys"), { method: "POST", headers: { ...admin, ...json }, body: JSON.stringify({ name: "x1", scopes: ["publish:bad name"] }) });
  assert.equal(res.status, 400);
  res = await fetch(url("/admin/keys"), { method: "POST", headers: { ...admin, ...json }, body: JSON.stringify({ name: "x1", scopes: [] }) });
  assert.equal(res.status, 400);
  await createKey("dup", ["publish"]);
  res = await fetch(url("/admin/keys"), { method: "POST", headers: { ...admin, ...json }, body: JSON.stringify({ name: "dup", scopes: ["publish"] }) });
  assert.equal(res.status, 409);
});

test("auth - expired and revoked keys are 401 E_KEY_EXPIRED / E_KEY_REVOKED; only a hash is stored", async () => {
  const short = await createKey("short-lived", ["admin:read"], { expires: "50ms" });
  await new Promise((r) => setTimeout(r, 120));
  let res = await fetch(url("/admin/status"), { headers: bearer(short) });
  assert.equal(res.status, 401);
  assert.equal(await code(res), "E_KEY_EXPIRED");

  const doomed = await createKey("doomed", ["admin:read"]);
  assert.equal((await fetch(url("/admin/status"), { headers: bearer(doomed) })).status, 200);
  res = await fetch(url("/admin/keys/doomed/revoke"), { method: "POST", headers: { ...admin, ...json }, body: "{}" });
  assert.equal(res.status, 200);
  res = await fetch(url("/admin/status"), { headers: bearer(doomed) });
  assert.equal(res.status, 401);
  assert.equal(await code(res), "E_KEY_REVOKED");

  const list = (await (await fetch(url("/admin/keys"), { headers: admin })).json()) as Record<string, unknown>[];
  const row = list.find((k) => k.name === "doomed");
  assert.equal(row?.status, "revoked");
  assert.equal(list.find((k) => k.name === "short-lived")?.status, "expired");
  for (const k of list) {
    assert.equal("hash" in k || "key" in k, false, "listings carry neither the key nor its hash");
  }
  // The store's files never hold a key in clear.
  const files = readdirSync(dir).filter((f) => f.startsWith("s.db"));
  assert.ok(files.length > 0);
  for (const f of files) {
    const bytes = readFileSync(join(dir, f)).toString("latin1");
    assert.equal(bytes.includes(doomed), false, `${f} holds the key`);
    assert.equal(bytes.includes(short), false, `${f} holds the key`);
  }
});

test("auth - admin writes take application/json only (415); a foreign Origin on admin is 403 E_ORIGIN_REFUSED", async () => {
  let res = await fetch(url("/admin/replays/x/cancel"), { method: "POST", headers: { ...admin, "content-type": "text/plain" }, body: "{}" });
  assert.equal(res.status, 415);
  assert.equal(await code(res), "E_UNSUPPORTED_MEDIA_TYPE");
  res = await fetch(url("/admin/replays/x/cancel"), { method: "POST", headers: { ...admin, "content-type": "application/x-www-form-urlencoded" }, body: "a=1" });
  assert.equal(res.status, 415);
  res = await fetch(url("/admin/replays/x/cancel"), { method: "POST", headers: admin });
  assert.equal(res.status, 415, "no content type at all");
  res = await fetch(url("/admin/status"), { headers: { ...admin, origin: "https://evil.example" } });
  assert.equal(res.status, 403);
  assert.equal(await code(res), "E_ORIGIN_REFUSED");
  const host = new URL(server.url).host;
  res = await fetch(url("/admin/status"), { headers: { ...admin, origin: `http://${host}` } });
  assert.equal(res.status, 200, "the server's own origin");
});

test("secrets - admin reads redact webhook secrets, header values and URL passwords", async () => {
  const res = await fetch(url("/admin/rules"), { headers: admin });
  const text = await res.text();
  assert.equal(res.status, 200);
  for (const secret of ["s3cret-value", "tok-value", "pw123"]) assert.equal(text.includes(secret), false, `${secret} in ${text}`);
  const hook = (JSON.parse(text) as { name: string; targets: { webhook: { secret: string; headers: Record<string, string>; url: string } }[] }[]).find((r) => r.name === "hook");
  assert.equal(hook?.targets[0]?.webhook.secret, "[redacted]");
  assert.deepEqual(hook?.targets[0]?.webhook.headers, { "x-token": "[redacted]" });
  assert.match(hook?.targets[0]?.webhook.url ?? "", /^https:\/\/user:.*redacted.*@example\.com\/h$/);
});

test("secrets - async routes do not store Authorization or Cookie headers; a route's headers list keeps only those", async () => {
  const res = await fetch(url("/capture"), {
    method: "POST",
    headers: { ...json, authorization: "Bearer route-token-123", cookie: "session=cookie-456", "x-custom": "kept" },
    body: "{}",
  });
  assert.equal(res.status, 202);
  const headers = await eventually(async () => {
    try {
      return JSON.parse(readFileSync(join(out, "headers.json"), "utf8")) as Record<string, string>;
    } catch {
      return undefined;
    }
  }, "the async route's function ran");
  assert.equal(headers["x-custom"], "kept");
  assert.equal(headers.authorization, undefined);
  assert.equal(headers.cookie, undefined);
  for (const f of readdirSync(dir).filter((n) => n.startsWith("s.db"))) {
    const bytes = readFileSync(join(dir, f)).toString("latin1");
    assert.equal(bytes.includes("route-token-123") || bytes.includes("cookie-456"), false, `${f} archived a credential`);
  }
  writeFileSync(join(out, "headers.json"), "");
  await fetch(url("/capture-some"), { method: "POST", headers: { ...json, "x-kept": "yes", "x-other": "no" }, body: "{}" });
  const some = await eventually(async () => {
    try {
      return JSON.parse(readFileSync(join(out, "headers.json"), "utf8")) as Record<string, string>;
    } catch {
      return undefined;
    }
  }, "the second async route ran");
  assert.deepEqual(some, { "x-kept": "yes" });
});

test("audit - admin writes are recorded with key, action, target and count, read on /admin/audit, and published as sluice.audit.*", async () => {
  const ops = await createKey("ops", ["admin:write"]);
  let res = await fetch(url("/admin/dlq/default/hook/webhook-0/purge"), { method: "POST", headers: { ...bearer(ops), ...json }, body: "{}" });
  assert.equal(res.status, 200, await res.clone().text());
  res = await fetch(url("/admin/audit?limit=50"), { headers: admin });
  const entries = (await res.json()) as { key: string; action: string; target: string; count?: number; time: string }[];
  const purge = entries.find((e) => e.action === "dlq.purge");
  assert.deepEqual({ key: purge?.key, target: purge?.target, count: purge?.count }, { key: "ops", target: "default/hook/webhook-0", count: 0 });
  assert.ok(entries.some((e) => e.action === "key.create" && e.target === "ops" && e.key === "bootstrap"));
  assert.ok(entries.some((e) => e.action === "key.revoke" && e.target === "doomed"));
  assert.ok(!Number.isNaN(Date.parse(purge?.time ?? "")));
  assert.equal((await fetch(url("/admin/audit"), { headers: bearer(await createKey("nobody", ["publish"])) })).status, 403);
  const published = await eventually(async () => {
    try {
      const lines = readFileSync(join(out, "audit.ndjson"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { type: string; data: { key: string } });
      return lines.find((l) => l.type === "sluice.audit.dlq.purge");
    } catch {
      return undefined;
    }
  }, "a sluice.audit.dlq.purge event delivered");
  assert.equal(published.data.key, "ops");
});

test("rate limits - per key on admin and publish: 429 E_RATE_LIMITED with Retry-After; another key is not affected", async () => {
  const d = tempDir("sluice-auth-rl-");
  writeFileSync(join(d, "sluice.config.ts"), `export default { name: "rl", server: { rateLimit: { admin: 3, publish: 2, window: "1m" } } };\n`);
  const s = await startServer({ appDir: d, mode: "start", flags: { port: 0, host: "127.0.0.1", logLevel: "silent" }, env: { SLUICE_ADMIN_KEY: bootstrap } });
  try {
    const mk = async (name: string, scopes: string[]) => {
      const r = await fetch(`${s.url}/admin/keys`, { method: "POST", headers: { ...admin, ...json }, body: JSON.stringify({ name, scopes }) });
      return ((await r.json()) as { key: string }).key;
    };
    // The bootstrap key made two calls already.
    const a = await mk("a", ["admin:read", "publish"]);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${s.url}/admin/status`, { headers: bearer(a) })).status);
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    const limited = await fetch(`${s.url}/admin/status`, { headers: bearer(a) });
    assert.equal(limited.status, 429);
    assert.match(limited.headers.get("retry-after") ?? "", /^\d+$/);
    assert.ok(Number(limited.headers.get("retry-after")) > 1, "the window's real remaining time, not a fixed 1");
    assert.equal(await code(limited), "E_RATE_LIMITED");
    const pubs: number[] = [];
    for (let i = 0; i < 3; i++) pubs.push((await fetch(`${s.url}/events`, { method: "POST", headers: { ...bearer(a), ...cejson }, body: ce("r.x") })).status);
    assert.deepEqual(pubs, [202, 202, 429], "publish has its own budget");
    assert.equal((await fetch(`${s.url}/healthz`)).status, 200, "public routes are not limited");
    // a (bootstrap-created) second key still has its budget
    const b = await fetch(`${s.url}/admin/status`, { headers: admin });
    assert.equal(b.status, 200);
  } finally {
    await s.close();
  }
});

test("dev - no keys needed, but a foreign Host (DNS rebinding) or Origin (cross-site) is 403 on every route", async () => {
  const d = tempDir("sluice-auth-dev-");
  writeFunction(join(d, "functions"), "echo", "", "return { ok: true };");
  writeFileSync(join(d, "sluice.config.ts"), `export default { name: "dev-auth", routes: { "POST /echo": "echo" } };\n`);
  const s = await startServer({ appDir: d, mode: "dev", flags: { port: 0, logLevel: "silent" }, env: {} });
  try {
    assert.equal(s.settings.host, "127.0.0.1");
    assert.equal((await fetch(`${s.url}/admin/status`)).status, 200);
    const port = new URL(s.url).port;
    const { request } = await import("node:http");
    const status = (path: string, headers: Record<string, string>, method = "GET") =>
      new Promise<number>((resolve, reject) => {
        const req = request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end(method === "POST" ? "{}" : undefined);
      });
    assert.equal(await status("/admin/status", { host: "evil.example:80" }), 403, "rebinding: a foreign Host");
    assert.equal(await status("/admin/status", { host: `localhost:${port}` }), 200);
    assert.equal(await status("/echo", { host: `127.0.0.1:${port}`, origin: "https://evil.example", "content-type": "application/json" }, "POST"), 403);
    assert.equal(await status("/echo", { host: `127.0.0.1:${port}`, origin: "http://localhost:3000", "content-type": "application/json" }, "POST"), 200);
    assert.equal(await status("/admin/dlq/default/r/t/purge", { host: `127.0.0.1:${port}`, origin: "null", "content-type": "application/json" }, "POST"), 403);
    assert.equal(await status("/admin/dlq/default/r/t/purge", { host: `127.0.0.1:${port}`, "content-type": "text/plain" }, "POST"), 415, "a form-like body");
  } finally {
    await s.close();
  }
});
