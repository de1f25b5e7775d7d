/**
 * Leasing on SQLite: the oldest leasable rows, marked with one token per lease call, their deliveries handed out
 * with the archived event bodies read once per event. Runs inside a write of the group commit.
 */
import type { Lease, LeaseRequest } from "../contract.ts";
import { bitCount, pendingIndexes, type FanOuts } from "./fanout.ts";
import { bounds, newToken, progression, R, toLease, type DeliveryRow, type ReadyRow } from "./rows.ts";
import type { Sql } from "./statements.ts";

export class Leaser {
  readonly #sql: Sql;
  readonly #fanOuts: FanOuts;
  /** Deliveries per row in the last lease batch: sizes the next lease read. */
  #deliveriesPerRow = 1;

  constructor(sql: Sql, fanOuts: FanOuts) {
    this.#sql = sql;
    this.#fanOuts = fanOuts;
  }

  /** `DeliveryQueues.lease`, inside a write. */
  lease(request: LeaseRequest & { leaseMs: number }): Lease[] {
    const { max, leaseMs, now } = request;
    if (!(max > 0)) return [];
    let rows: ReadyRow[];
    if (request.queues === undefined) {
      // Fan-out rows hold several deliveries: read about as many rows as `max` needs (from the last batch's
      // deliveries per row), and a second page only when they fall short.
      const limit = Math.max(1, Math.ceil(max / this.#deliveriesPerRow));
      rows = this.#sql.readyAll.all(now, now, limit);
      let deliveries = 0;
      for (const row of rows) deliveries += row[R.fanout] === null ? 1 : bitCount(row[R.pending] as number);
      if (rows.length === limit && deliveries < max) {
        const last = rows[rows.length - 1] as ReadyRow;
        rows = rows.concat(this.#sql.readyAfter.all(now, now, last[R.visibleAt], last[R.visibleAt], last[R.id], max - deliveries));
      }
    } else {
      if (request.queues.length === 0) return [];
      // Fan-out rows are leased whole: a lease for some queues splits those holding any of them first.
      const wanted = new Set(request.queues);
      for (const row of this.#sql.readyFanOuts.all(now, now)) {
        const queues = this.#fanOuts.queuesOf(row.fanout as string);
        if (pendingIndexes(row.pending as number, queues.length).some((i) => wanted.has(queues[i] as string))) this.#fanOuts.split(row);
      }
      rows = this.#sql.readyInQueues.all(now, now, JSON.stringify(request.queues), max);
    }
    if (rows.length === 0) return [];
    // Take rows, oldest first, while their deliveries fit in `max`.
    let count = 0;
    let take = 0;
    for (; take < rows.length; take++) {
      const row = rows[take] as ReadyRow;
      const n = row[R.fanout] === null ? 1 : bitCount(row[R.pending] as number);
      if (count + n > max) break;
      count += n;
    }
    if (take > 0) this.#deliveriesPerRow = count / take;
    if (take === 0) {
      // The oldest row alone holds more deliveries than `max`: split it, then lease its deliveries one by one.
      this.#fanOuts.split(this.#sql.rowById.get((rows[0] as ReadyRow)[R.id]) as DeliveryRow);
      return this.lease(request);
    }
    if (take < rows.length) rows = rows.slice(0, take);
    const leaseUntil = now + leaseMs;
    // One token per lease call: (deliveryId, token) is still unique per lease, and one UPDATE marks the batch.
    const token = newToken();
    const ids = rows.map((row) => row[R.id]);
    const range = progression(ids);
    if (range !== undefined) this.#sql.markLeasedRange.run(token, leaseUntil, range.first, range.last, range.first, range.step);
    else this.#sql.markLeased.run(token, leaseUntil, JSON.stringify(ids));
    const bodies = this.#bodiesOf(rows);
    const leases: Lease[] = [];
    for (const row of rows) {
      const payload = row[R.payload] ?? (bodies.get(row[R.eventSeq] as number) as string);
      const fanout = row[R.fanout];
      if (fanout === null) {
        leases.push(toLease(row, row[R.id], row[R.queue], payload, token, leaseUntil));
        continue;
      }
      const queues = this.#fanOuts.queuesOf(fanout);
      for (const i of pendingIndexes(row[R.pending] as number, queues.length)) {
        leases.push(toLease(row, row[R.id] + 1 + i, queues[i] as string, payload, token, leaseUntil));
      }
    }
    return leases;
  }

  /**
   * The archived bodies of rows without a payload of their own, read once per event: the deliveries of one event
   * to several targets share one string (cheaper than a join that copies the body into every row, and the
   * dispatcher then decodes it once). A pending delivery's event is never trimmed away (trim copies its body first).
   */
  #bodiesOf(rows: ReadyRow[]): Map<number, string> {
    const bodies = new Map<number, string>();
    const seqs = new Set<number>();
    for (const row of rows) {
      const seq = row[R.eventSeq];
      if (row[R.payload] === null && seq !== null) seqs.add(seq);
    }
    if (seqs.size === 0) return bodies;
    const { low: first, high: last } = bounds(seqs);
    // A range read walks the events between; worth it while most of them are wanted.
    const found =
      last - first + 1 <= 2 * seqs.size ? this.#sql.bodiesInRange.all(first, last) : this.#sql.bodiesOf.all(JSON.stringify([...seqs]));
    for (const [seq, encoded] of found) if (seqs.has(seq)) bodies.set(seq, encoded);
    return bodies;
  }
}
