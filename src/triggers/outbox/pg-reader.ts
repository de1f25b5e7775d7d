/**
 * The PostgreSQL side of the outbox relay. One node relays a table at a time (a session advisory lock keyed by
 * the table; the others wait, and take over when the holder's connection goes). `enqueue` notifies the
 * `sluice_outbox` channel, which PostgreSQL delivers at commit, so the relay wakes when there is something to
 * read; it also reads every `pollInterval`.
 *
 * Commit order: the relay keeps no cursor. Each round reads the committed rows still in the table, oldest
 * sequence first, and deletes what it published, so a transaction that commits late (holding a lower sequence
 * number than rows already relayed, as concurrent transactions do) is relayed when it commits, never skipped.
 */
import type pg from "pg";
import { outboxChannel, pgOutboxDdl } from "../../outbox/tables.ts";
import { sleep } from "../../util/sleep.ts";
import type { OutboxReader, OutboxRow } from "./relay.ts";

export async function openPgOutbox(url: string, table: string): Promise<OutboxReader> {
  const { default: pgModule } = await import("pg");
  const db: pg.Client = new pgModule.Client({ connectionString: url });
  let wake: (() => void) | undefined;
  // A notification between an empty read and the next wait must not wait for the poll.
  let notified = false;
  let broken: Error | undefined;
  db.on("error", (err) => {
    broken = err;
    wake?.();
  });
  db.on("notification", (n) => {
    if (n.payload !== table && n.payload !== "") return;
    notified = true;
    wake?.();
  });
  await db.connect();
  return {
    async acquire(signal) {
      while (!signal.aborted) {
        if (broken) throw broken;
        const r = await db.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok", [`sluice.outbox:${table}`]);
        if (r.rows[0]!.ok) {
          await db.query(pgOutboxDdl(table)).catch(async (err: Error) => {
            // Two processes creating the table at once: one wins, and the table is there.
            if (!/already exists|duplicate key/.test(err.message)) throw err;
          });
          await db.query(`LISTEN ${outboxChannel}`);
          return true;
        }
        await sleep(1_000, signal);
      }
      return false;
    },
    async read(limit) {
      if (broken) throw broken;
      const r = await db.query<OutboxRow>(`SELECT seq::text AS seq, event FROM ${table} ORDER BY ${table}.seq LIMIT $1`, [limit]);
      return r.rows;
    },
    async delete(rows) {
      await db.query(`DELETE FROM ${table} WHERE seq = ANY($1::bigint[])`, [rows.map((r) => r.seq)]);
    },
    wait(ms, signal) {
      if (notified || broken) {
        notified = false;
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => {
        const t = setTimeout(done, ms);
        function done() {
          clearTimeout(t);
          wake = undefined;
          notified = false;
          signal.removeEventListener("abort", done);
          resolve();
        }
        wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
    },
    close: () => db.end(),
  };
}
