/**
 * One measurement of Sluice for bench/bus.bench.ts, in a fresh process:
 *
 *   node --expose-gc bench/bus-child.mjs <sqlite|postgres> <w1|w2|w3> <N>
 *
 * Plain JavaScript on the compiled code (`dist/`, built by the parent), as `sluice start` runs: a TypeScript
 * loader in the measured process would add its own memory (about 30 MB of RSS with tsx) and compile work to
 * every figure. Prints one `RESULT {json}` line.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { orderEvent } from "./order-event.mjs";

const [backend, workload, nArg] = process.argv.slice(2);
let n = Number(nArg);

const { createBroker } = await import("../dist/bus/broker.js");
let store;
let cleanup = async () => {};
if (backend === "sqlite") {
  const { createSqliteStore } = await import("../dist/store/sqlite/index.js");
  const dir = mkdtempSync(join(tmpdir(), "sluice-bus-bench-"));
  store = await createSqliteStore({ path: join(dir, "bench.db") });
  cleanup = async () => rmSync(dir, { recursive: true, force: true });
} else {
  const { createPostgresStore } = await import("../dist/store/postgres/index.js");
  const schema = `bench_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const url = process.env.SLUICE_BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  store = await createPostgresStore({ url, schema });
  cleanup = async () => {
    const { default: pg } = await import("pg");
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await c.end();
  };
}
// BUS_CONCURRENCY / BUS_LEASE_BATCH: the dispatcher's limits, for tuning runs (default: the broker's defaults).
const limits = {
  ...(process.env.BUS_CONCURRENCY ? { concurrency: Number(process.env.BUS_CONCURRENCY) } : {}),
  ...(process.env.BUS_LEASE_BATCH ? { leaseBatch: Number(process.env.BUS_LEASE_BATCH) } : {}),
};
const broker = await createBroker({ store, limits });
const targets = workload === "w3" ? 3 : 1;
await broker.putRule({
  name: "bench",
  pattern: { type: ["order.created"] },
  targets: Array.from({ length: targets }, (_, i) => ({ id: `t${i}`, function: "noop" })),
});
const latencies = [];
const recordLatency = workload === "w2";
broker.setFunctionHandler({
  async deliver(_fn, event) {
    if (recordLatency) latencies.push(performance.now() - event.data.ts);
  },
});
let acked = 0;
let target = 0;
let onDone;
broker.on("delivered", () => {
  acked++;
  if (acked >= target && onDone) {
    const f = onDone;
    onDone = undefined;
    f();
  }
});
const allAcked = () => new Promise((r) => (acked >= target ? r() : (onDone = r)));
let peak = process.memoryUsage.rss();
const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 200);
const tag = `${process.pid}${Date.now().toString(36)}`;
const makeEvent = (i) => orderEvent(`${tag}-${i.toString().padStart(9, "0")}`, i);
// Warm-up outside the clock (the code is compiled by V8 on first use, as the peers' is):
// 200 events through the whole path, then the counters start from zero.
target = 200 * targets;
const warm = allAcked();
for (let i = 0; i < 200; i += 100) {
  await broker.publish("default", Array.from({ length: 100 }, (_, j) => ({ ...makeEvent(i + j), id: `warm-${tag}-${i + j}` })));
}
await warm;
latencies.length = 0;
acked = 0;
await new Promise((r) => setTimeout(r, 200));
let out;
if (workload === "w1" || workload === "w3") {
  target = n * targets;
  const inflight = Number(process.env.BUS_INFLIGHT ?? 4);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const done = allAcked();
  let next = 0;
  const producer = async () => {
    while (next < n) {
      const start = next;
      next = Math.min(n, next + 100);
      const batch = [];
      for (let i = start; i < next; i++) batch.push(makeEvent(i));
      for (;;) {
        try {
          const res = await broker.publish("default", batch);
          if (res.failedEntryCount > 0) throw new Error(JSON.stringify(res.entries.find((e) => "errorCode" in e)));
          break;
        } catch (err) {
          if (err?.code !== "E_BACKPRESSURE") throw err;
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: inflight }, producer));
  const tPublished = performance.now();
  await done;
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  out = {
    cpuUsPerEvent: +((cpu.user + cpu.system) / n).toFixed(1),
    seconds: +secs.toFixed(3),
    publishSeconds: +((tPublished - t0) / 1000).toFixed(3),
    eventsPerSec: Math.round(n / secs),
    deliveriesPerSec: Math.round((n * targets) / secs),
  };
} else {
  const rate = 1000;
  const seconds = Number(process.env.BUS_W2_SECONDS ?? 10);
  const total = rate * seconds;
  target = total;
  const evs = Array.from({ length: total }, (_, i) => makeEvent(i));
  const t0 = performance.now();
  const done = allAcked();
  let i = 0;
  let pubErrors = 0;
  while (i < total) {
    const due = Math.min(total, Math.floor((performance.now() - t0) / (1000 / rate)) + 1);
    while (i < due) {
      const e = evs[i++];
      e.data.ts = performance.now();
      broker.publish("default", e).catch(() => pubErrors++);
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await done;
  const s = latencies.slice().sort((a, b) => a - b);
  const pct = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
  out = { p50: +pct(50).toFixed(2), p95: +pct(95).toFixed(2), p99: +pct(99).toFixed(2), max: +s[s.length - 1].toFixed(2), pubErrors };
  n = total;
}
clearInterval(sampler);
peak = Math.max(peak, process.memoryUsage.rss());
await broker.close();
await store.close();
await cleanup();
console.log(`RESULT ${JSON.stringify({ name: `sluice-${backend}`, workload, N: n, ...out, peakRssMb: +(peak / 1048576).toFixed(1) })}`);
