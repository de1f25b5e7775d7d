/**
 * The postgres-changes source on the machine's PostgreSQL (wal_level = logical): the initial snapshot, then
 * inserts, updates, deletes and truncates of a fresh table arrive at a webhook with the documented shape, in
 * commit order per row, and the slot's confirmed position moves past them. Option problems name their key.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { ConfigError, validateApp } from "../../src/server/config.ts";
import { startServer } from "../../src/server/server.ts";
import { skipUnless } from "../helpers/services.ts";
import { eventually } from "../helpers/sluice-process.ts";
import { tempDir } from "../runtime/helpers.ts";
import { createCdcDatabase } from "./pg-cdc-helpers.ts";

interface Change {
  id: string;
  type: string;
  source: string;
  subject: string;
  partitionkey: string;
  data: { op: string; schema: string; table: string; before: Record<string, unknown> | null; after: Record<string, unknown> | null; lsn: string; txid: number | null; commitTime: string | null };
}

test("postgres-changes - option problems name sources.<name>.<key>", () => {
  try {
    validateApp({ name: "a", sources: { db: { kind: "postgres-changes", url: "mysql://x", tables: ["public.orders", "a.b.c"], slot: "Bad-Slot", heartbeat: "10" } } }, { file: "c.ts" });
    assert.fail("expected a ConfigError");
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    const keys = new Map(err.problems.map((p) => [p.key, p.message]));
    assert.match(keys.get("sources.db.url") ?? "", /postgres:\/\//);
    assert.match(keys.get("sources.db.tables[1]") ?? "", /schema\.table/);
    assert.match(keys.get("sources.db.slot") ?? "", /lower-case/);
    assert.match(keys.get("sources.db.heartbeat") ?? "", /no unit/);
  }
  const ok = validateApp({ name: "a", sources: { "shop-db": { kind: "postgres-changes", url: "postgres://h/db", tables: ["orders"] } } }, { file: "c.ts" });
  assert.deepEqual(ok.sources[0]?.options, {
    url: "postgres://h/db",
    tables: [{ schema: "public", table: "orders" }],
    bus: "default",
    snapshot: false,
    slot: "sluice_shop_db",
    publication: "sluice_shop_db",
    heartbeatMs: 10_000,
    statusIntervalMs: 1_000,
    lagWarnBytes: 1024 ** 3,
  });
});

test("postgres-changes - snapshot, then insert/update/delete/truncate in order per row, slot confirmed", { skip: await skipUnless("postgres") }, async () => {
  const db = await createCdcDatabase();
  const received: Change[] = [];
  const hook = createServer((req: IncomingMessage, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      received.push(JSON.parse(body) as Change);
      res.writeHead(204).end();
    });
  });
  hook.listen(0, "127.0.0.1");
  await once(hook, "listening");
  const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
  const table = db.unique();
  const slot = db.unique();
  const dir = tempDir("sluice-cdc-");
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, name text NOT NULL, note text, qty bigint, at timestamptz)`);
    await db.query(`INSERT INTO ${table} VALUES (0, 'before', 'snap', 5, '2026-01-02T03:04:05Z')`);
    mkdirSync(join(dir, "functions"));
    writeFileSync(
      join(dir, "sluice.config.ts"),
      `export default {
        name: "cdc",
        sources: { rows: { kind: "postgres-changes", url: ${JSON.stringify(db.url)}, tables: ["public.${table}"], snapshot: true, slot: "${slot}", publication: "${slot}", statusInterval: "100ms", heartbeat: "300ms" } },
        rules: [{ name: "out", pattern: { source: ["/sluice/sources/rows"] }, targets: [{ webhook: ${JSON.stringify(hookUrl)} }] }],
      };\n`,
    );
    server = await startServer({ appDir: dir, mode: "start", flags: { port: 0, host: "127.0.0.1", logLevel: "silent", allowPrivateNetworks: true, store: `sqlite:${join(dir, "store.db")}` }, env: {}, noAuth: true });
    const s = server;
    await eventually(async () => (s.sources.list().find((x) => x.name === "rows")?.detail?.startsWith("streaming") ? true : undefined), "the source streams", 20_000);
    // The snapshot row reaches the webhook through the bus, a moment after the source says it streams.
    await eventually(async () => (received.length > 0 ? true : undefined), "the snapshot row delivered", 20_000);
    assert.equal(received.length, 1);
    assert.deepEqual(
      { type: received[0]!.type, subject: received[0]!.subject, op: received[0]!.data.op, after: received[0]!.data.after },
      { type: `pg.${table}.snapshot`, subject: `public.${table}/0`, op: "snapshot", after: { id: 0, name: "before", note: "snap", qty: "5", at: "2026-01-02T03:04:05.000Z" } },
    );
    const before = (await db.query<{ lsn: string }>("SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1", [slot])).rows[0]!.lsn;

    await db.query(`INSERT INTO ${table} (id, name, qty) VALUES (1, 'one', 1), (2, 'two', 2)`);
    await db.query(`UPDATE ${table} SET name = 'uno' WHERE id = 1`);
    await db.query(`BEGIN; INSERT INTO ${table} (id, name) VALUES (3, 'rolled back'); ROLLBACK`).catch(() => undefined);
    await db.query(`DELETE FROM ${table} WHERE id = 2`);
    await db.query(`UPDATE ${table} SET name = 'one again' WHERE id = 1`);
    await db.query(`TRUNCATE ${table}`);
    await eventually(async () => (received.length >= 7 ? true : undefined), "seven changes at the webhook", 20_000);
    await new Promise((r) => setTimeout(r, 300));
    const changes = received.slice(1);
    assert.equal(changes.length, 6, JSON.stringify(changes.map((c) => c.type)));
    assert.ok(changes.every((c) => !JSON.stringify(c).includes("rolled back")), "a rolled-back insert never appears");
    const byRow = (subject: string) => changes.filter((c) => c.subject === subject).map((c) => `${c.data.op}:${String(c.data.after?.name ?? "")}`);
    assert.deepEqual(byRow(`public.${table}/1`), ["insert:one", "update:uno", "update:one again"]);
    assert.deepEqual(byRow(`public.${table}/2`), ["insert:two", "delete:"]);

    const del = changes.find((c) => c.data.op === "delete")!;
    assert.equal(del.type, `pg.${table}.delete`);
    assert.equal(del.partitionkey, del.subject);
    assert.deepEqual(del.data.before, { id: 2 }, "REPLICA IDENTITY DEFAULT: the key columns of the old row");
    assert.equal(del.data.after, null);
    const ins = changes.find((c) => c.data.op === "insert")!;
    assert.deepEqual(
      { schema: ins.data.schema, table: ins.data.table, before: ins.data.before, after: ins.data.after },
      { schema: "public", table, before: null, after: { id: 1, name: "one", note: null, qty: "1", at: null } },
    );
    assert.match(ins.data.lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.ok(typeof ins.data.txid === "number" && ins.data.txid > 0);
    assert.ok(Math.abs(Date.parse(ins.data.commitTime!) - Date.now()) < 60_000);
    assert.match(ins.id, /^[0-9A-F]+\/[0-9A-F]+:\d+$/);
    const trunc = changes.find((c) => c.data.op === "truncate")!;
    assert.deepEqual({ type: trunc.type, subject: trunc.subject, before: trunc.data.before, after: trunc.data.after }, { type: `pg.${table}.truncate`, subject: `public.${table}`, before: null, after: null });
    assert.equal(new Set(received.map((c) => c.id)).size, received.length, "ids are unique");

    await eventually(
      async () => {
        const now = (await db.query<{ lsn: string; moved: boolean }>("SELECT confirmed_flush_lsn::text AS lsn, confirmed_flush_lsn > $2::pg_lsn AS moved FROM pg_replication_slots WHERE slot_name = $1", [slot, trunc.data.lsn])).rows[0]!;
        return now.moved ? now.lsn : undefined;
      },
      `the slot confirmed past the truncate (was ${before})`,
      10_000,
    );
    const info = s.sources.list().find((x) => x.name === "rows")!;
    assert.equal(info.status, "ok");
    assert.equal(info.details?.role, "leader");
    assert.equal(typeof info.details?.lagBytes, "number");
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert.match(metrics, /sluice_source_lag_bytes\{source="rows"\} \d+/);
  } finally {
    await server?.close();
    hook.close();
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  }
});
