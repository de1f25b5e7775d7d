/**
 * Webhook targets on a real bus (SQLite) against real HTTP receivers: Standard Webhooks signatures checked by the
 * `standardwebhooks` package, secrets rotated, the legacy x-sluice-signature, a 410 that disables the target, and
 * private addresses refused after DNS resolution unless allowed.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { randomBytes, randomUUID } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { createBroker, type Broker } from "../../src/bus/broker.ts";
import { addressRefusal } from "../../src/bus/targets/network-guard.ts";
import { DISABLED_TARGETS } from "../../src/bus/targets/webhook.ts";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import type { StorageBackend } from "../../src/store/contract.ts";
import { eventually } from "../helpers/sluice-process.ts";
import { tempDir } from "../runtime/helpers.ts";

interface Received {
  headers: IncomingMessage["headers"];
  body: string;
}

const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

async function receiver(status = 204): Promise<{ url: string; received: Received[]; port: number }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      received.push({ headers: req.headers, body });
      res.writeHead(status).end(status === 410 ? "gone" : "");
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  servers.push(server);
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/hook`, received, port };
}

async function bus(options: { allowPrivateNetworks?: boolean } = {}): Promise<{ broker: Broker; store: StorageBackend; close(): Promise<void> }> {
  const dir = tempDir("sluice-webhook-sec-");
  const store = await createSqliteStore({ path: join(dir, "s.db") });
  const broker = await createBroker({ store, retryPolicy: { baseBackoffMs: 5, maxBackoffMs: 10, maxAttempts: 2 }, ...options });
  return {
    broker,
    store,
    async close() {
      await broker.close();
      await store.close();
    },
  };
}

const ev = (type: string) => ({ specversion: "1.0", id: randomUUID(), source: "/t", type, data: { n: 1 } });

test("webhook - Standard Webhooks by default: the standardwebhooks package verifies it, with either secret while rotating", async () => {
  const r = await receiver();
  const oldSecret = `whsec_${randomBytes(24).toString("base64")}`;
  const newSecret = `whsec_${randomBytes(24).toString("base64")}`;
  const raw = `plain-${randomUUID()}`;
  const b = await bus();
  try {
    await b.broker.putRule({ name: "std", pattern: { type: ["s.x"] }, targets: [{ id: "hook", webhook: { url: r.url, secret: [newSecret, oldSecret] } }] });
    await b.broker.putRule({ name: "raw", pattern: { type: ["s.raw"] }, targets: [{ id: "hook", webhook: { url: r.url, secret: raw } }] });
    const sent = ev("s.x");
    await b.broker.publish("default", [sent, ev("s.raw")]);
    await eventually(async () => (r.received.length >= 2 ? true : undefined), "both deliveries");
    const std = r.received.find((x) => JSON.parse(x.body).type === "s.x")!;
    assert.equal(std.headers["webhook-id"], sent.id, "webhook-id is the event id");
    assert.match(String(std.headers["webhook-timestamp"]), /^\d{10}$/, "seconds");
    assert.match(String(std.headers["webhook-signature"]), /^v1,[A-Za-z0-9+/=]+ v1,[A-Za-z0-9+/=]+$/);
    assert.equal(std.headers["x-sluice-signature"], undefined);
    const hdrs = std.headers as Record<string, string>;
    for (const secret of [newSecret, oldSecret]) {
      const payload = new Webhook(secret).verify(std.body, hdrs) as { id: string };
      assert.equal(payload.id, sent.id);
    }
    assert.throws(() => new Webhook(`whsec_${randomBytes(24).toString("base64")}`).verify(std.body, hdrs), /signature/i);
    assert.throws(() => new Webhook(newSecret).verify(`${std.body} `, hdrs), /signature/i, "a changed body fails");
    const plain = r.received.find((x) => JSON.parse(x.body).type === "s.raw")!;
    new Webhook(raw, { format: "raw" }).verify(plain.body, plain.headers as Record<string, string>);
  } finally {
    await b.close();
  }
});

test("webhook - the old x-sluice-signature stays available with signature: \"sluice\"; a bad secret or scheme is refused at putRule", async () => {
  const r = await receiver();
  const b = await bus();
  try {
    await b.broker.putRule({ name: "old", pattern: { type: ["o.x"] }, targets: [{ id: "hook", webhook: { url: r.url, secret: "s3", signature: "sluice" } }] });
    await b.broker.publish("default", [ev("o.x")]);
    await eventually(async () => (r.received.length >= 1 ? true : undefined), "a delivery");
    assert.match(String(r.received[0]!.headers["x-sluice-signature"]), /^sha256=[0-9a-f]{64}$/);
    assert.equal(r.received[0]!.headers["webhook-signature"], undefined);
    await assert.rejects(b.broker.putRule({ name: "bad", pattern: { type: ["x"] }, targets: [{ id: "h", webhook: { url: r.url, signature: "md5" as "sluice" } }] }), { code: "E_BAD_REQUEST", path: "$.targets[0].webhook.signature" });
    await assert.rejects(b.broker.putRule({ name: "bad", pattern: { type: ["x"] }, targets: [{ id: "h", webhook: { url: r.url, secret: "whsec_***" } }] }), { code: "E_BAD_REQUEST" });
    await assert.rejects(b.broker.putRule({ name: "bad", pattern: { type: ["x"] }, targets: [{ id: "h", webhook: { url: r.url, secret: [] } }] }), { code: "E_BAD_REQUEST" });
  } finally {
    await b.close();
  }
});

test("webhook - a 410 Gone disables the target on every node: dead-lettered with E_TARGET_DISABLED, later events not sent", async () => {
  const r = await receiver(410);
  const b = await bus();
  try {
    await b.broker.putRule({ name: "gone", pattern: { type: ["g.x"] }, targets: [{ id: "hook", webhook: { url: r.url } }] });
    await b.broker.publish("default", [ev("g.x")]);
    const ref = { bus: "default", rule: "gone", target: "hook" };
    const first = await eventually(async () => (await b.broker.listDeadLetters(ref))[0], "the first dead letter");
    assert.match(first.lastError ?? "", /E_TARGET_DISABLED|410/);
    assert.equal(first.attempts, 1, "not retried");
    const stored = await b.store.state.get(DISABLED_TARGETS, "rule:default/gone/hook", { now: Date.now() });
    assert.match(stored ?? "", /410 Gone/);
    await b.broker.publish("default", [ev("g.x")]);
    await eventually(async () => ((await b.broker.listDeadLetters(ref)).length === 2 ? true : undefined), "the second dead letter");
    assert.equal(r.received.length, 1, "the disabled target is not called again");
  } finally {
    await b.close();
  }
});

test("webhook - with private networks not allowed, loopback (by IP and by name) is refused after DNS resolution", async () => {
  const r = await receiver();
  const b = await bus({ allowPrivateNetworks: false });
  try {
    await b.broker.putRule({
      name: "private",
      pattern: { type: ["p.x"] },
      targets: [
        { id: "ip", webhook: { url: r.url } },
        { id: "name", webhook: { url: `http://localhost:${r.port}/hook` } },
      ],
    });
    await b.broker.publish("default", [ev("p.x")]);
    for (const target of ["ip", "name"]) {
      const dl = await eventually(async () => (await b.broker.listDeadLetters({ bus: "default", rule: "private", target }))[0], `${target} dead-lettered`);
      assert.match(dl.lastError ?? "", /E_ADDRESS_REFUSED|allowPrivateNetworks/);
      assert.equal(dl.attempts, 1);
    }
    assert.equal(r.received.length, 0, "the receiver was never reached");
  } finally {
    await b.close();
  }
  for (const a of ["10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"]) {
    assert.ok(addressRefusal(a), `${a} refused`);
  }
  for (const a of ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]) assert.equal(addressRefusal(a), undefined, `${a} allowed`);
});

test("webhook - a target disabled by a 410 shows in /admin/status and /admin/targets/disabled, and enable turns it back on", async () => {
  const { startServer } = await import("../../src/server/server.ts");
  const { writeFileSync } = await import("node:fs");
  const r = await receiver(410);
  const dir = tempDir("sluice-webhook-gone-");
  writeFileSync(
    join(dir, "sluice.config.ts"),
    `export default { name: "gone", rules: [{ name: "out", pattern: { type: ["g.x"] }, targets: [{ id: "hook", webhook: ${JSON.stringify(r.url)} }] }] };\n`,
  );
  const s = await startServer({ appDir: dir, mode: "dev", flags: { port: 0, logLevel: "silent" }, env: {} });
  try {
    await fetch(`${s.url}/events`, { method: "POST", headers: { "content-type": "application/cloudevents+json" }, body: JSON.stringify(ev("g.x")) });
    const status = await eventually(async () => {
      const st = (await (await fetch(`${s.url}/admin/status`)).json()) as { disabledTargets: { target: string; reason: string }[] };
      return st.disabledTargets.length > 0 ? st : undefined;
    }, "the target shown as disabled");
    assert.deepEqual(status.disabledTargets.map((d) => [d.target, d.reason]), [["default/out/hook", "the receiver answered 410 Gone"]]);
    const listed = (await (await fetch(`${s.url}/admin/targets/disabled`)).json()) as unknown[];
    assert.equal(listed.length, 1);
    const res = await fetch(`${s.url}/admin/targets/default/out/hook/enable`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(res.status, 200);
    assert.deepEqual(await (await fetch(`${s.url}/admin/targets/disabled`)).json(), []);
    const audit = (await (await fetch(`${s.url}/admin/audit`)).json()) as { action: string; target: string }[];
    assert.ok(audit.some((a) => a.action === "target.enable" && a.target === "default/out/hook"));
  } finally {
    await s.close();
  }
});
