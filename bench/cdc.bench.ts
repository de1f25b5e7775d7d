/**
 * Events from databases, end to end through a server on a PostgreSQL store, each next to the plain publish path
 * measured in the same run (HTTP POST /events in batches of 100, 10 requests in flight):
 *   C1  CDC throughput: N rows inserted 100 per transaction, first commit → last function invocation (rows/s).
 *   C2  CDC latency at 1000 changes/s for C2_SECONDS (10-row transactions every 10 ms): function start − the
 *       transaction's commit time (PostgreSQL's clock, same machine), p50/p99. The peer: single-event publishes
 *       at 1000/s, function start − the time before the POST.
 *   O1  Outbox throughput: N events enqueued 100 per transaction into a PostgreSQL outbox, relayed, first commit
 *       → last function invocation (events/s).
 * Usage: npm run bench -- cdc   (knobs: N=10000 C2_SECONDS=5 SLUICE_TEST_PG_URL=…)
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer } from "../src/server/server.ts";
import { enqueue } from "../src/outbox/index.ts";
import { createTestDatabase } from "../test/helpers/services.ts";
import { createCdcDatabase } from "../test/triggers/pg-cdc-helpers.ts";

const N = Number(process.env.N ?? 10_000);
const C2_SECONDS = Number(process.env.C2_SECONDS ?? 5);

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const source = await createCdcDatabase();
const store = await createTestDatabase("cdc_bench_");
const dir = mkdtempSync(join(tmpdir(), "sluice-cdc-bench-"));
const out = join(dir, "sink.log");
const slot = source.unique();
const outboxTable = source.unique("cdc_outbox");
await source.query("CREATE TABLE cdc_rows (id int PRIMARY KEY, run text NOT NULL, payload text NOT NULL)");
mkdirSync(join(dir, "app", "functions"), { recursive: true });
writeFileSync(
  join(dir, "app", "sluice.config.ts"),
  `export default {
  name: "cdc-bench",
  sources: {
    rows: { kind: "postgres-changes", url: ${JSON.stringify(source.url)}, tables: ["cdc_rows"], slot: "${slot}", publication: "${slot}", statusInterval: "200ms" },
    ob: { kind: "postgres-outbox", url: ${JSON.stringify(source.url)}, table: "${outboxTable}" },
  },
  rules: [{ name: "sink", pattern: { type: [{ prefix: "pg.cdc_rows." }, { prefix: "bench." }] }, targets: [{ function: "sink" }] }],
};\n`,
);
// One line per invocation: when it started and when its change committed (or its publisher stamped it).
writeFileSync(
  join(dir, "app", "functions", "sink.ts"),
  `import { appendFileSync } from "node:fs";
import { defineFunction } from "sluice";
export default defineFunction({
  name: "sink",
  concurrency: 64,
  async handler(event) {
    const d = event.data as { run?: string; after?: { run: string }; commitTime?: string; at?: number };
    const run = d.run ?? d.after?.run;
    const at = d.commitTime ? Date.parse(d.commitTime) : (d.at ?? 0);
    appendFileSync(${JSON.stringify(out)}, run + " " + Date.now() + " " + at + "\\n");
  },
});\n`,
);
const server = await startServer({ appDir: join(dir, "app"), mode: "start", flags: { port: 0, host: "127.0.0.1", logLevel: "warn", store: store.url }, env: {} });
let peakRss = 0;
const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);

function lines(run: string): { doneAt: number; at: number }[] {
  if (!existsSync(out)) return [];
  return readFileSync(out, "utf8")
    .split("\n")
    .filter((l) => l.startsWith(`${run} `))
    .map((l) => {
      const [, doneAt, at] = l.split(" ");
      return { doneAt: Number(doneAt), at: Number(at) };
    });
}

async function until(run: string, count: number): Promise<{ doneAt: number; at: number }[]> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const l = lines(run);
    if (l.length >= count) return l;
    if (Date.now() > deadline) throw new Error(`bench: ${run} saw ${l.length} of ${count}`);
    await sleep(50);
  }
}

function percentile(values: number[], p: number): number {
  const s = values.toSorted((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
}

let resets = 0;
async function post(events: unknown[]): Promise<void> {
  const res = await fetch(`${server.url}/events`, {
    method: "POST",
    headers: { "content-type": "application/cloudevents-batch+json" },
    body: JSON.stringify(events),
  }).catch(async (err: Error) => {
    // A connection the client reused as the server closed it: sent again (the id dedupes), and counted.
    resets++;
    return fetch(`${server.url}/events`, { method: "POST", headers: { "content-type": "application/cloudevents-batch+json" }, body: JSON.stringify(events) }).catch(() => {
      throw err;
    });
  });
  if (!res.ok) throw new Error(`bench: publish ${res.status} ${await res.text()}`);
}

const benchEvent = (run: string, i: number, at = Date.now()) => ({ specversion: "1.0" as const, id: `${run}-${i}`, source: "/bench", type: "bench.event", data: { run, at, i, payload: "x".repeat(200) } });

try {
  await new Promise<void>((resolve) => {
    const t = setInterval(() => {
      if (server.sources.list().find((s) => s.name === "rows")?.detail?.startsWith("streaming")) {
        clearInterval(t);
        resolve();
      }
    }, 50);
  });

  // C1: CDC throughput.
  let start = Date.now();
  for (let b = 0; b < N / 100; b++) {
    await source.query("INSERT INTO cdc_rows SELECT x, 'c1', repeat('x', 200) FROM generate_series($1::int, $2::int) x", [b * 100, b * 100 + 99]);
  }
  const c1 = (await until("c1", N)).reduce((m, l) => Math.max(m, l.doneAt), 0);
  const c1Rate = N / ((c1 - start) / 1000);
  console.log(`C1 CDC: ${fmt(c1Rate)} rows/s`);

  // Plain publish throughput, the same N.
  start = Date.now();
  const batches = Array.from({ length: N / 100 }, (_, b) => Array.from({ length: 100 }, (_, i) => benchEvent("p1", b * 100 + i)));
  for (let i = 0; i < batches.length; i += 10) await Promise.all(batches.slice(i, i + 10).map(post));
  const p1 = (await until("p1", N)).reduce((m, l) => Math.max(m, l.doneAt), 0);
  const p1Rate = N / ((p1 - start) / 1000);
  console.log(`plain publish: ${fmt(p1Rate)} events/s`);

  // C2: CDC latency at 1000 changes/s.
  const ticks = C2_SECONDS * 100;
  const base = 1_000_000;
  const t0 = Date.now();
  for (let k = 0; k < ticks; k++) {
    void source.query("INSERT INTO cdc_rows SELECT x, 'c2', 'y' FROM generate_series($1::int, $2::int) x", [base + k * 10, base + k * 10 + 9]);
    const wait = t0 + (k + 1) * 10 - Date.now();
    if (wait > 0) await sleep(wait);
  }
  const c2 = (await until("c2", ticks * 10)).map((l) => l.doneAt - l.at);
  console.log(`C2 CDC latency: p50 ${fmt(percentile(c2, 50), 1)} ms, p99 ${fmt(percentile(c2, 99), 1)} ms`);

  // Peer: single-event publishes at 1000/s.
  // At most 50 publishes in flight: an overloaded server slows the load instead of piling up connections.
  const p0 = Date.now();
  let inFlight = 0;
  const bounded = async (events: unknown[]) => {
    while (inFlight >= 50) await sleep(1);
    inFlight++;
    await post(events).finally(() => inFlight--);
  };
  for (let k = 0; k < ticks; k++) {
    for (let i = 0; i < 10; i++) void bounded([benchEvent("p2", k * 10 + i)]);
    const wait = p0 + (k + 1) * 10 - Date.now();
    if (wait > 0) await sleep(wait);
  }
  const p2 = (await until("p2", ticks * 10)).map((l) => l.doneAt - l.at);

  // O1: outbox throughput.
  const { default: pg } = await import("pg");
  const client = new pg.Client({ connectionString: source.url });
  await client.connect();
  start = Date.now();
  for (let b = 0; b < N / 100; b++) {
    await client.query("BEGIN");
    for (let i = 0; i < 100; i++) await enqueue(client, { ...benchEvent("o1", b * 100 + i), id: `o1-${b * 100 + i}` }, { table: outboxTable });
    await client.query("COMMIT");
  }
  await client.end();
  const o1 = (await until("o1", N)).reduce((m, l) => Math.max(m, l.doneAt), 0);
  const o1Rate = N / ((o1 - start) / 1000);

  console.log(`Events from databases vs plain publish, same server and run (PostgreSQL store, N=${fmt(N)}, C2 ${C2_SECONDS} s at 1000 changes/s)\n`);
  console.log("| workload | from the database | plain publish (HTTP) | ratio |");
  console.log("|---|---|---|---|");
  console.log(`| C1 CDC rows/s, commit → function | ${fmt(c1Rate)} | ${fmt(p1Rate)} | ${fmt(c1Rate / p1Rate, 2)} |`);
  console.log(`| O1 outbox events/s, commit → function | ${fmt(o1Rate)} | ${fmt(p1Rate)} | ${fmt(o1Rate / p1Rate, 2)} |`);
  console.log(`| C2 latency p50 (ms), commit → function | ${fmt(percentile(c2, 50), 1)} | ${fmt(percentile(p2, 50), 1)} | ${fmt(percentile(c2, 50) / percentile(p2, 50), 2)} |`);
  console.log(`| C2 latency p99 (ms), commit → function | ${fmt(percentile(c2, 99), 1)} | ${fmt(percentile(p2, 99), 1)} | ${fmt(percentile(c2, 99) / percentile(p2, 99), 2)} |`);
  if (resets > 0) console.log(`\n${resets} plain publishes were sent again after a connection reset`);
  console.log(`\npeak RSS ${fmt(peakRss / 1024 / 1024)} MiB (server, functions and load generator in one process)`);
} finally {
  clearInterval(rssTimer);
  await server.close();
  await source.drop();
  await store.drop();
  rmSync(dir, { recursive: true, force: true });
}
