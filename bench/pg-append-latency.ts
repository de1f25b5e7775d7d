/**
 * How long one append takes on PostgreSQL with nothing else running: B events (default 400) per
 * `store.events.append`, 60 appends in a row, p50/p90 in ms. Appends are serialised by the append lock, so B / p50
 * bounds the bus's W1 on PostgreSQL. Not part of `npm run bench`.
 *
 *   B=400 node --import tsx bench/pg-append-latency.ts      (SLUICE_BENCH_PG_URL, default the local `test` database)
 */
import { createPostgresStore } from "../src/store/postgres/index.ts";
import { orderEvent } from "./order-event.mjs";
import pg from "pg";
const url = process.env.SLUICE_BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const schema = `bench_append_${process.pid}_${Date.now()}`;
const store = await createPostgresStore({ url, schema });
const B = Number(process.env.B ?? 400);
const times: number[] = [];
let n = 0;
for (let r = 0; r < 60; r++) {
  const entries = Array.from({ length: B }, () => {
    const id = `e-${n++}`;
    return { bus: "default", eventId: id, dedupeKey: `/shop\n${id}`, encoded: JSON.stringify(orderEvent(id, n)), deliveries: [{ queue: "rule:default/bench/t0" }] };
  });
  const t = performance.now();
  await store.events.append(entries, { now: Date.now(), dedupeWindowMs: 300000 });
  times.push(performance.now() - t);
}
times.sort((a, b) => a - b);
console.log(`B=${B} append ms p50 ${times[30]!.toFixed(1)} p90 ${times[54]!.toFixed(1)} => ${(B / times[30]! * 1000).toFixed(0)} events/s serial`);
await store.close();
const c = new pg.Client({ connectionString: url }); await c.connect(); await c.query(`DROP SCHEMA ${schema} CASCADE`); await c.end();
