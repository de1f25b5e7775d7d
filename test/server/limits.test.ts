/**
 * Limits and health over real HTTP: request and connection timeouts, the connection cap, `/admin/logs?follow`
 * readers that stop reading, `server.*` from the config file checked before use, `/healthz` on a failing store,
 * and a publisher's own `sluicehops` not changing the dedupe key.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { Writable } from "node:stream";
import { ConfigError } from "../../src/server/config.ts";
import { startServer } from "../../src/server/server.ts";
import { openStore, registerStoreScheme } from "../../src/store/registry.ts";
import type { StorageBackend } from "../../src/store/contract.ts";
import { eventually } from "../helpers/sluice-process.ts";
import { tempDir, writeFunction } from "../runtime/helpers.ts";

const quiet = { logLevel: "silent" as const, port: 0 };

function app(config: string): string {
  const dir = tempDir("sluice-limits-");
  writeFileSync(join(dir, "sluice.config.ts"), config);
  return dir;
}

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    socket.once("close", () => resolve());
  });
}

test("limits - a bad server.store (or port) in the config file is a config error naming the key, before anything opens", async () => {
  const dir = app(`export default { name: "bad-store", server: { store: "bogus://nowhere", port: "eighty" } };\n`);
  await assert.rejects(startServer({ appDir: dir, mode: "dev", flags: { logLevel: "silent" }, env: {} }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /server\.store/);
    assert.match(err.message, /bogus/);
    assert.match(err.message, /server\.port/);
    return true;
  });
});

test("limits - a connection that trickles its request is closed after requestTimeout; past maxConnections sockets are refused", async () => {
  const dir = app(`export default { name: "slow", server: { requestTimeout: "1s", maxConnections: 5 } };\n`);
  const s = await startServer({ appDir: dir, mode: "dev", flags: quiet, env: {} });
  const { port } = new URL(s.url);
  try {
    const slow = connect(Number(port), "127.0.0.1");
    slow.on("error", () => undefined);
    slow.resume();
    slow.write(`POST /events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`);
    const trickle = setInterval(() => slow.writable && slow.write("x"), 200);
    const gone = closed(slow);
    await eventually(async () => (slow.destroyed ? true : undefined), "the trickling socket closed", 15_000);
    clearInterval(trickle);
    await gone;
  } finally {
    await s.close();
  }

  // Sockets that send nothing are closed by the cap at once, long before a 30 s request timeout would.
  const capped = await startServer({ appDir: app(`export default { name: "cap", server: { maxConnections: 5 } };\n`), mode: "dev", flags: quiet, env: {} });
  try {
    const capPort = new URL(capped.url).port;
    const sockets: Socket[] = [];
    for (let i = 0; i < 12; i++) {
      const c = connect(Number(capPort), "127.0.0.1");
      c.on("error", () => undefined);
      c.resume();
      sockets.push(c);
    }
    await eventually(async () => (sockets.filter((c) => c.destroyed).length >= 7 ? true : undefined), "the sockets past the cap closed", 15_000);
    for (const c of sockets) c.destroy();
    await eventually(async () => ((await fetch(`${capped.url}/healthz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined))?.status === 200 ? true : undefined), "served again");
  } finally {
    await capped.close();
  }
});

test("limits - /admin/logs?follow disconnects a reader that stopped reading; the server keeps serving", async () => {
  const dir = app(`export default { name: "chatty", routes: { "POST /chatter": "chatter" } };\n`);
  writeFunction(join(dir, "functions"), "chatter", "", `for (let i = 0; i < 400; i++) ctx.log.info({ pad: "y".repeat(8000), i }, "chatter"); return { ok: true };`);
  const s = await startServer({ appDir: dir, mode: "dev", flags: { ...quiet, logLevel: "info" }, env: {}, logDestination: new Writable({ write: (_c, _e, cb) => cb() }) });
  const { port } = new URL(s.url);
  try {
    const reader = connect(Number(port), "127.0.0.1");
    reader.on("error", () => undefined);
    reader.write(`GET /admin/logs?follow=1&limit=0 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    await new Promise((r) => reader.once("data", r));
    reader.pause();
    let bytes = 0;
    reader.on("data", (c: Buffer) => (bytes += c.length));
    // 20 × 400 lines of 8 KB: 64 MB, far past the reader's allowance and the kernel's buffers.
    for (let i = 0; i < 20; i++) assert.equal((await fetch(`${s.url}/chatter`, { method: "POST" })).status, 200);
    reader.resume();
    await eventually(async () => (reader.destroyed || reader.readableEnded ? true : undefined), "the stalled reader disconnected", 20_000);
    assert.ok(bytes < 40 * 1024 * 1024, `the reader got ${bytes} bytes, not everything`);
    assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
  } finally {
    await s.close();
  }
});

test("health - /healthz is 503 while the store fails, and 200 once it answers again", async () => {
  let failing = false;
  registerStoreScheme("flaky-test", {
    example: "flaky-test:/path/to.db",
    async open(url) {
      const inner: StorageBackend = await openStore(`sqlite:${url.slice("flaky-test:".length)}`);
      const state = new Proxy(inner.state, {
        get(target, prop, recv) {
          const v = Reflect.get(target, prop, recv);
          if (prop !== "get" || typeof v !== "function") return typeof v === "function" ? v.bind(target) : v;
          return (...args: unknown[]) => (failing ? Promise.reject(new Error("disk on fire")) : (v as (...a: unknown[]) => unknown).apply(target, args));
        },
      });
      return { ...inner, kind: inner.kind, capabilities: inner.capabilities, events: inner.events, queues: inner.queues, state, close: () => inner.close() };
    },
  });
  const dir = app(`export default { name: "health" };\n`);
  const s = await startServer({ appDir: dir, mode: "dev", flags: { ...quiet, store: `flaky-test:${join(dir, "h.db")}` }, env: {} });
  try {
    assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
    failing = true;
    const res = await fetch(`${s.url}/healthz`);
    assert.equal(res.status, 503);
    const body = (await res.json()) as { status: string; error: string };
    assert.equal(body.status, "unhealthy");
    assert.match(body.error, /disk on fire/);
    failing = false;
    assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
  } finally {
    failing = false;
    await s.close();
  }
});

test("dedupe - a publisher's own sluicehops does not make one event a new one", async () => {
  const dir = app(`export default { name: "dedupe" };\n`);
  const s = await startServer({ appDir: dir, mode: "dev", flags: quiet, env: {} });
  try {
    const post = async (extra: Record<string, unknown>) => {
      const res = await fetch(`${s.url}/events`, {
        method: "POST",
        headers: { "content-type": "application/cloudevents+json" },
        body: JSON.stringify({ specversion: "1.0", id: "same-id", source: "/dedupe", type: "d.x", ...extra }),
      });
      assert.equal(res.status, 202);
      return (await res.json()) as { ids: string[]; duplicates?: string[] };
    };
    assert.equal((await post({})).duplicates, undefined);
    for (const hops of [1, 2, 3, 7]) assert.deepEqual((await post({ sluicehops: hops })).duplicates, ["same-id"], `hops ${hops}`);
    assert.deepEqual((await post({ replay: "mine" })).duplicates, ["same-id"]);
  } finally {
    await s.close();
  }
});
