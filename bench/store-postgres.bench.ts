/**
 * The PostgreSQL store at the storage level, on the peer workloads' shapes (../shared/bench/peers):
 *   W1  N events of ~300 bytes appended in batches of 100 (up to 10 appends in flight, so group commit
 *       combines them), one queue, a consumer leasing up to 1000 and acking concurrently; first append → last ack.
 *   W2  1000 events/s, one append per event (not awaited before the next); latency = lease in the consumer −
 *       stamp before the append (LISTEN/NOTIFY wake-ups, no polling).
 *   W3  as W1 with 3 deliveries (queues) per event, each leased and acked on its own: deliveries/s.
 * Baseline, measured in the same run on the same server: a bare SKIP LOCKED queue (one table, INSERT … unnest
 * per batch, `DELETE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING` to consume, NOTIFY per batch),
 * i.e. what the store costs over the least a durable PostgreSQL queue can do (no dedupe, event log, leases, acks).
 *
 * Usage: npm run bench -- store-postgres   (knobs: N=20000 W2_SECONDS=5 SLUICE_TEST_PG_URL=…)
 */
import { createPostgresStore } from "../src/store/postgres/index.ts";
import type { StorageBackend } from "../src/store/contract.ts";
import { createTestDatabase } from "../test/helpers/services.ts";
import { orderEvent } from "./order-event.mjs";

const N = Number(process.env.N ?? 20_000);
const W2_SECONDS = Number(process.env.W2_SECONDS ?? 5);
const BATCH = 100;
const IN_FLIGHT = 10;

function makeEvent(i: number): { id: string; encoded: string } {
  const id = `bench-${i.toString().padStart(9, "0")}`;
  return { id, encoded: JSON.stringify(orderEvent(id, i)) };
}

/** What a workload needs from a queue implementation. */
interface Subject {
  publish(events: { id: string; encoded: string }[], queues: string[]): Promise<void>;
  /** Takes up to `max` deliveries and acknowledges them after `handle` ran on each payload. */
  consume(max: number, handle: (payload: string) => void): Promise<number>;
  wait(signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

function storeSubject(store: StorageBackend): Subject {
  return {
    async publish(events, queues) {
      await store.events.append(
        events.map((e) => ({
          bus: "default",
          eventId: e.id,
          dedupeKey: `/shop/checkout\n${e.id}`,
          encoded: e.encoded,
          deliveries: queues.map((queue) => ({ queue })),
        })),
        { now: Date.now(), dedupeWindowMs: 300_000 },
      );
    },
    async consume(max, handle) {
      const leases = await store.queues.lease({ max, leaseMs: 60_000, now: Date.now() });
      if (leases.length === 0) return 0;
      for (const l of leases) handle(l.payload);
      const { lost } = await store.queues.ack(leases);
      if (lost.length > 0) throw new Error(`bench: ${lost.length} leases lost`);
      return leases.length;
    },
    wait: (signal) => store.queues.waitForWork(signal),
    close: () => store.close(),
  };
}

async function bareSubject(url: string): Promise<Subject> {
  const { default: pg } = await import("pg");
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on("error", () => undefined); // an idle connection killed from outside is dropped by the pool
  await pool.query("CREATE TABLE bare_queue (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, queue text NOT NULL, payload text NOT NULL)");
  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  await listener.query("LISTEN bare_queue");
  let waiters: (() => void)[] = [];
  listener.on("notification", () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  return {
    async publish(events, queues) {
      const q: string[] = [];
      const p: string[] = [];
      for (const e of events) for (const queue of queues) {
        q.push(queue);
        p.push(e.encoded);
      }
      await pool.query(
        "WITH i AS (INSERT INTO bare_queue (queue, payload) SELECT * FROM unnest($1::text[], $2::text[]) RETURNING 1) SELECT pg_notify('bare_queue', '') FROM i LIMIT 1",
        [q, p],
      );
    },
    async consume(max, handle) {
      const { rows } = await pool.query<{ payload: string }>(
        "DELETE FROM bare_queue WHERE id IN (SELECT id FROM bare_queue ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING payload",
        [max],
      );
      for (const r of rows) handle(r.payload);
      return rows.length;
    },
    wait(signal) {
      return new Promise((resolve) => {
        waiters.push(resolve);
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
    },
    async close() {
      await listener.end();
      await pool.end();
    },
  };
}

/** Consumes until `total` deliveries were handled; resolves with the time of the last ack. */
async function consumeAll(subject: Subject, total: number, onPayload: (payload: string) => void = () => undefined): Promise<number> {
  let done = 0;
  while (done < total) {
    const n = await subject.consume(1000, (payload) => {
      JSON.parse(payload);
      onPayload(payload);
    });
    done += n;
    if (n === 0) await subject.wait(AbortSignal.timeout(100));
  }
  return performance.now();
}

async function throughput(subject: Subject, fanout: number): Promise<number> {
  const events = Array.from({ length: N }, (_, i) => makeEvent(i));
  const queues = Array.from({ length: fanout }, (_, i) => `q${i}`);
  const started = performance.now();
  const consumer = consumeAll(subject, N * fanout);
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < N; i += BATCH) {
    const p = subject.publish(events.slice(i, i + BATCH), queues);
    inFlight.add(p);
    p.then(() => inFlight.delete(p), () => inFlight.delete(p));
    if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  const ended = await consumer;
  return (N * fanout) / ((ended - started) / 1000);
}

async function latency(subject: Subject): Promise<{ p50: number; p99: number; max: number }> {
  const total = 1000 * W2_SECONDS;
  const stamps = new Map<string, number>();
  const latencies: number[] = [];
  const consumer = consumeAll(subject, total, (payload) => {
    const id = (JSON.parse(payload) as { id: string }).id;
    const at = stamps.get(id);
    if (at !== undefined) latencies.push(performance.now() - at);
  });
  const started = performance.now();
  const publishes: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = started + i;
    const ahead = due - performance.now();
    if (ahead > 1) await new Promise((r) => setTimeout(r, ahead));
    const e = makeEvent(i);
    stamps.set(e.id, performance.now());
    publishes.push(subject.publish([e], ["q0"]));
  }
  await Promise.all(publishes);
  await consumer;
  latencies.sort((a, b) => a - b);
  const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] ?? NaN;
  return { p50: at(50), p99: at(99), max: latencies[latencies.length - 1] ?? NaN };
}

async function fresh<T>(kind: "sluice" | "bare", run: (s: Subject) => Promise<T>): Promise<T> {
  const db = await createTestDatabase();
  try {
    const subject = kind === "sluice" ? storeSubject(await createPostgresStore({ url: db.url, poolSize: 8 })) : await bareSubject(db.url);
    try {
      return await run(subject);
    } finally {
      await subject.close();
    }
  } finally {
    await db.drop();
  }
}

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

const w1 = { sluice: await fresh("sluice", (s) => throughput(s, 1)), bare: await fresh("bare", (s) => throughput(s, 1)) };
const w3 = { sluice: await fresh("sluice", (s) => throughput(s, 3)), bare: await fresh("bare", (s) => throughput(s, 3)) };
const w2 = { sluice: await fresh("sluice", latency), bare: await fresh("bare", latency) };

console.log(`PostgreSQL store vs a bare SKIP LOCKED queue, same server, same run (N=${fmt(N)}, W2 ${W2_SECONDS} s at 1000/s)\n`);
console.log("| workload | sluice postgres store | bare SKIP LOCKED queue | ratio |");
console.log("|---|---|---|---|");
console.log(`| W1 throughput (events/s) | ${fmt(w1.sluice)} | ${fmt(w1.bare)} | ${fmt(w1.sluice / w1.bare, 2)} |`);
console.log(`| W3 fan-out ×3 (deliveries/s) | ${fmt(w3.sluice)} | ${fmt(w3.bare)} | ${fmt(w3.sluice / w3.bare, 2)} |`);
console.log(`| W2 latency p50 (ms) | ${fmt(w2.sluice.p50, 2)} | ${fmt(w2.bare.p50, 2)} | ${fmt(w2.sluice.p50 / w2.bare.p50, 2)} |`);
console.log(`| W2 latency p99 (ms) | ${fmt(w2.sluice.p99, 2)} | ${fmt(w2.bare.p99, 2)} | ${fmt(w2.sluice.p99 / w2.bare.p99, 2)} |`);
console.log(`| W2 latency max (ms) | ${fmt(w2.sluice.max, 2)} | ${fmt(w2.bare.max, 2)} | |`);
