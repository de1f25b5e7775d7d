/**
 * Fan-out rows. The deliveries of one appended event to several queues (a rule with several targets, or several
 * rules), when they are plain (no partition key, no payload of their own, available at once), are stored as ONE
 * row: `fanout` lists the queues, `pending` has bit i set while queue i's delivery is unsettled. The row is
 * leased as a whole (one token, one lease_until, one attempt count for its deliveries) and each pending queue gets
 * its own Lease; acks clear bits, and the row goes when none is left. A row of k queues with id G reserves the
 * ids G+1..G+k: queue i's delivery id is G+1+i. When one of its deliveries needs a life of its own (retry,
 * dead letter, a lease restricted to some queues, a lease batch smaller than the row), it is split out into a
 * row of its own with exactly that id, so a delivery keeps its id for all its attempts. For W3 of the bus
 * benchmark (3 targets) this is one insert, one lease mark and one delete per event instead of three each.
 */
import { bounds, type DeliveryRow } from "./rows.ts";
import type { Sql } from "./statements.ts";

/** Most queues in one fan-out row (bits of `pending`, kept within a 32-bit int for JavaScript's bit operators). */
export const MAX_FANOUT = 30;

/** Set bits of a fan-out row's `pending`: its unsettled deliveries. */
export function bitCount(pending: number): number {
  let n = 0;
  for (let bits = pending; bits !== 0; bits &= bits - 1) n++;
  return n;
}

/** Pending queue indexes of a fan-out row, in order. */
export function pendingIndexes(pending: number, width: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < width; i++) if ((pending >> i) & 1) out.push(i);
  return out;
}

/** The fan-out rows of one store: splitting, settling, and the decoded `fanout` columns. */
export class FanOuts {
  readonly #sql: Sql;
  /** Decoded `fanout` columns (see queuesOf). */
  readonly #queues = new Map<string, string[]>();

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** The queues of a fan-out row (its `fanout` column), decoded once per distinct list. */
  queuesOf(fanout: string): string[] {
    let queues = this.#queues.get(fanout);
    if (queues === undefined) {
      if (this.#queues.size >= 1000) this.#queues.clear();
      queues = JSON.parse(fanout) as string[];
      this.#queues.set(fanout, queues);
    }
    return queues;
  }

  /**
   * Moves every pending delivery of a fan-out row into a row of its own (id: the delivery's id), with the row's
   * state (lease included), and deletes the fan-out row.
   */
  split(row: DeliveryRow): void {
    if (row.fanout === null || row.pending === null) return;
    const queues = this.queuesOf(row.fanout);
    for (const i of pendingIndexes(row.pending, queues.length)) this.#insertSplit(row, i, queues[i] as string);
    this.#sql.deleteRow.run(row.id);
  }

  #insertSplit(row: DeliveryRow, i: number, queue: string): void {
    this.#sql.splitInsert.run(
      row.id + 1 + i,
      queue,
      row.event_seq,
      row.payload,
      row.enqueued_at,
      row.available_at,
      row.visible_at,
      row.token,
      row.lease_until,
      row.attempt,
      row.last_error,
    );
  }

  /**
   * Before a retry or dead letter of delivery `id`: when it is held in a fan-out row under `token`, it moves into
   * a row of its own (same id, same lease), and the fan-out row keeps the others.
   */
  splitOut(id: number, token: string): void {
    const held = this.heldBy(id);
    if (held === undefined || held.row.token !== token) return;
    const { row, i, queue } = held;
    this.#insertSplit(row, i, queue);
    const rest = (row.pending as number) & ~(1 << i);
    if (rest === 0) this.#sql.deleteRow.run(row.id);
    else this.#sql.setPending.run(rest, row.id, token);
  }

  /** The fan-out row holding delivery `id` unsettled, with the delivery's index and queue in it. */
  heldBy(id: number): { row: DeliveryRow; i: number; queue: string } | undefined {
    const row = this.#sql.fanOutBelow.get(id, id - MAX_FANOUT - 1);
    if (row === undefined || row.fanout === null || row.pending === null) return undefined;
    const queues = this.queuesOf(row.fanout);
    const i = id - row.id - 1;
    if (i >= queues.length || !((row.pending >> i) & 1)) return undefined;
    return { row, i, queue: queues[i] as string };
  }

  /**
   * Acks the deliveries among `ids` that fan-out rows of `token` hold: clears their bits. Returns the ids that are
   * rows of their own (or lost), and the fan-out rows left with no pending delivery (to delete with them). Ids that name a fan-out row
   * itself are added to `lost`.
   */
  settle(ids: number[], token: string, lost: string[]): { direct: number[]; emptied: number[] } {
    const { low, high } = bounds(ids);
    const rows = this.#sql.fanOutsOfToken.all(low - MAX_FANOUT - 1, high, token);
    if (rows.length === 0) return { direct: ids, emptied: [] };
    // Rows in id order, ids in order: each id is held by the last row below it, when within that row's width.
    const sorted = ids.length > 1 ? [...ids].sort((a, b) => a - b) : ids;
    const direct: number[] = [];
    const touched: { id: number; pending: number }[] = [];
    let r = -1;
    for (const id of sorted) {
      while (r + 1 < rows.length && (rows[r + 1] as { id: number }).id <= id) r++;
      const row = r >= 0 ? (rows[r] as { id: number; fanout: string; pending: number }) : undefined;
      if (row !== undefined && row.id === id) {
        // A fan-out row's own id is no delivery's: not acked (the direct delete would take the whole row).
        lost.push(String(id));
        continue;
      }
      const bit = row === undefined ? 0 : id - row.id - 1;
      // Not held, or its bit is clear (split out, or already acked): a row of its own, or lost.
      if (row === undefined || bit >= this.queuesOf(row.fanout).length || ((row.pending >> bit) & 1) === 0) {
        direct.push(id);
        continue;
      }
      // Ids are sorted and rows walked forward: a row's deliveries come in one stretch.
      if (touched[touched.length - 1] !== row) touched.push(row);
      row.pending &= ~(1 << bit);
    }
    const emptied: number[] = [];
    for (const row of touched) {
      if (row.pending === 0) emptied.push(row.id);
      else this.#sql.setPending.run(row.pending, row.id, token);
    }
    return { direct, emptied };
  }
}
