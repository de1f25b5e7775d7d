/**
 * Change data capture through real `sluice start` processes on one PostgreSQL store: two nodes run the source,
 * one streams. During a stream of 3 000 row changes the streaming node is SIGKILLed (the other takes over the
 * slot), then that one too, and the first is restarted. Every change reaches the function, none twice (no event
 * id repeats an attempt number: the bus deduped what the slot streamed again), one row's changes in
 * commit order, and the slot's confirmed position reaches the end of the WAL written.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, skipUnless } from "../helpers/services.ts";
import { ensureBuilt, eventually, startSluice, type SluiceProcess } from "../helpers/sluice-process.ts";
import { createCdcDatabase, recorderFunction } from "./pg-cdc-helpers.ts";

/** A loaded machine (CI on two shared cores) can take long to start a node: the kill loop waits for it. */
const startupMs = 120_000;
const batches = 300;
const rowsPerBatch = 5;
const expected = batches * rowsPerBatch * 2; // an insert and an update per row

interface Line {
  id: string;
  attempt: number;
  subject: string;
  op: string;
}

function readLines(file: string): Line[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.endsWith(";"))
    .map((l) => {
      const [id, attempt, subject, op] = l.slice(0, -1).split(" ");
      return { id: id!, attempt: Number(attempt), subject: subject!, op: op! };
    });
}

async function role(node: SluiceProcess): Promise<string | undefined> {
  const res = await fetch(`${node.url}/admin/sources`).catch(() => undefined);
  if (!res?.ok) return undefined;
  const list = (await res.json()) as { name: string; details?: { role?: string } }[];
  return list.find((s) => s.name === "rows")?.details?.role;
}

test("postgres-changes - SIGKILL during 3000 changes: another node takes over, none lost, none twice, slot advanced", { skip: await skipUnless("postgres") }, async () => {
  ensureBuilt();
  const source = await createCdcDatabase();
  const store = await createTestDatabase("cdc_store_");
  const dir = mkdtempSync(join(tmpdir(), "sluice-cdc-crash-"));
  const nodes: SluiceProcess[] = [];
  const table = source.unique();
  const slot = source.unique();
  const out = join(dir, "seen.log");
  try {
    await source.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v int NOT NULL)`);
    const app = join(dir, "app");
    mkdirSync(join(app, "functions"), { recursive: true });
    writeFileSync(
      join(app, "sluice.config.ts"),
      `import { defineApp } from "sluice";
export default defineApp({
  name: "cdc-crash",
  sources: { rows: { kind: "postgres-changes", url: ${JSON.stringify(source.url)}, tables: ["${table}"], slot: "${slot}", publication: "${slot}", statusInterval: "100ms", heartbeat: "1s" } },
  rules: [{ name: "record", pattern: { source: ["/sluice/sources/rows"] }, targets: [{ function: "record" }] }],
});\n`,
    );
    writeFileSync(
      join(app, "functions", "record.ts"),
      recorderFunction(out, ["event.subject", "(event.data as { op: string }).op"]),
    );
    const args = ["start", app, "--port", "0", "--store", store.url, "--no-auth"];
    nodes.push(await startSluice(args, {}, startupMs), await startSluice(args, {}, startupMs));
    const leaderOf = async (candidates: SluiceProcess[]) =>
      eventually(async () => {
        for (const n of candidates) if ((await role(n)) === "leader") return n;
        return undefined;
      }, "a node streaming the slot", 30_000);
    const first = await leaderOf(nodes);

    let produced = 0;
    const producer = (async () => {
      for (let b = 0; b < batches; b++) {
        const ids = Array.from({ length: rowsPerBatch }, (_, i) => b * rowsPerBatch + i);
        await source.query(`BEGIN; INSERT INTO ${table} (id, v) SELECT x, 0 FROM unnest($1::int[]) x; COMMIT`.replace("$1::int[]", `ARRAY[${ids.join(",")}]`));
        await source.query(`UPDATE ${table} SET v = 1 WHERE id = ANY($1::int[])`, [ids]);
        produced += ids.length * 2;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();

    await eventually(async () => (readLines(out).length >= expected / 5 ? true : undefined), "a fifth of the changes", 180_000);
    first.proc.kill("SIGKILL");
    await first.exited;
    const survivors = nodes.filter((n) => n !== first);
    const second = await leaderOf(survivors);
    const seenAtTakeover = readLines(out).length;
    await eventually(async () => (readLines(out).length >= Math.max(seenAtTakeover + 300, expected / 2) ? true : undefined), "changes through the second node", 180_000);
    second.proc.kill("SIGKILL");
    await second.exited;
    const restarted = await startSluice(args, {}, startupMs);
    nodes.push(restarted);
    assert.equal(await leaderOf([restarted]), restarted);
    await producer;
    assert.equal(produced, expected);

    const lines = await eventually(async () => {
      const l = readLines(out);
      return new Set(l.map((x) => x.id)).size >= expected ? l : undefined;
    }, `all ${expected} changes at the function`, 120_000);
    await new Promise((r) => setTimeout(r, 500));
    const ids = new Map<string, Line[]>();
    for (const l of readLines(out)) ids.set(l.id, [...(ids.get(l.id) ?? []), l]);
    assert.equal(ids.size, expected, "every change once by id, no extra ones");
    // A retry after a kill is the same delivery with the next attempt number; a second delivery of one event
    // (a duplicate the bus let through) would repeat an attempt number.
    const twice = [...ids.entries()].filter(([, ls]) => new Set(ls.map((l) => l.attempt)).size !== ls.length);
    assert.deepEqual(twice.slice(0, 5), [], "no change delivered twice");
    const ops = new Map<string, string[]>();
    for (const l of lines) if (!ops.get(l.subject)?.includes(l.op)) ops.set(l.subject, [...(ops.get(l.subject) ?? []), l.op]);
    assert.equal(ops.size, batches * rowsPerBatch);
    assert.ok([...ops.values()].every((o) => o.join() === "insert,update"), "each row: insert, then update");

    const end = (await source.query<{ lsn: string }>("SELECT pg_current_wal_lsn()::text AS lsn")).rows[0]!.lsn;
    await eventually(
      async () => ((await source.query<{ ok: boolean }>("SELECT confirmed_flush_lsn >= $2::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $1", [slot, end])).rows[0]?.ok ? true : undefined),
      "the slot confirmed to the end of the written WAL",
      30_000,
    );
  } finally {
    for (const n of nodes) if (n.proc.exitCode === null && n.proc.signalCode === null) await n.stop("SIGTERM").catch(() => undefined);
    await source.drop();
    await store.drop();
    rmSync(dir, { recursive: true, force: true });
  }
});
