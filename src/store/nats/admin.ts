/**
 * Counts and dead letters. Counts come from each queue's consumer (`num_pending` not yet delivered,
 * `num_ack_pending` delivered and unsettled) and from the dead stream's per-subject totals; JetStream does not
 * tell a delivery waiting for its delay or its key from a leased one (`capabilities.exactStats` is false).
 * Dead letters are JSON records on the dead stream, one subject per queue, indexed by delivery id in the meta
 * bucket so that `getDead` is one lookup.
 */
import type { DeadLetter, QueueAdmin, QueueStats } from "../contract.ts";
import type { Consumers } from "./consumers.ts";
import type { NatsContext } from "./context.ts";
import { deadKey, publishDeliveries } from "./deliveries.ts";

const zero = (queue: string): QueueStats => ({ queue, ready: 0, delayed: 0, leased: 0, dead: 0 });

export class NatsQueueAdmin implements QueueAdmin {
  readonly #ctx: NatsContext;
  readonly #consumers: Consumers;

  constructor(ctx: NatsContext, consumers: Consumers) {
    this.#ctx = ctx;
    this.#consumers = consumers;
  }

  stats(queues?: string[]): Promise<QueueStats[]> {
    return this.#ctx.gate.run("stats", async () => {
      const { jsm, names } = this.#ctx;
      await this.#consumers.discover();
      const deadInfo = await jsm.streams.info(names.dead, { subjects_filter: ">" });
      const deadBySubject = deadInfo.state.subjects ?? {};
      const wanted = queues ?? (await this.#consumers.all());
      const out = await Promise.all(
        wanted.map(async (queue) => {
          const s = zero(queue);
          s.dead = deadBySubject[names.deadSubject(queue)] ?? 0;
          if (!this.#consumers.known(queue)) return s;
          const info = await jsm.consumers.info(names.deliveries, names.consumer(queue)).catch(() => undefined);
          if (info === undefined) return s;
          s.ready = info.num_pending;
          s.leased = info.num_ack_pending;
          return s;
        }),
      );
      if (queues !== undefined) return out;
      return out.filter((s) => s.ready + s.leased + s.dead > 0).sort((a, b) => (a.queue < b.queue ? -1 : a.queue > b.queue ? 1 : 0));
    });
  }

  /** Dead letters of a queue with their sequences on the dead stream, oldest first. */
  async #scan(queue: string, fromSeq: number, limit: number): Promise<{ seq: number; letter: DeadLetter }[]> {
    const { jsm, names } = this.#ctx;
    const out: { seq: number; letter: DeadLetter }[] = [];
    let seq = fromSeq;
    while (out.length < limit) {
      const m = await jsm.streams.getMessage(names.dead, { next_by_subj: names.deadSubject(queue), seq } as never).catch(() => null);
      if (m === null) break;
      out.push({ seq: m.seq, letter: m.json<DeadLetter>() });
      seq = m.seq + 1;
    }
    return out;
  }

  async #deadSeq(deliveryId: string): Promise<number | undefined> {
    const e = await this.#ctx.meta.get(deadKey(deliveryId)).catch(() => null);
    if (e === null || e.operation !== "PUT") return undefined;
    return Number(e.string());
  }

  listDead(queue: string, options: { limit: number; afterId?: string }): Promise<DeadLetter[]> {
    return this.#ctx.gate.run("listDead", async () => {
      let from = 1;
      if (options.afterId !== undefined) from = ((await this.#deadSeq(options.afterId)) ?? 0) + 1;
      return (await this.#scan(queue, from, options.limit)).map((d) => d.letter);
    });
  }

  getDead(deliveryId: string): Promise<DeadLetter | undefined> {
    return this.#ctx.gate.run("getDead", async () => {
      const seq = await this.#deadSeq(deliveryId);
      if (seq === undefined) return undefined;
      const m = await this.#ctx.jsm.streams.getMessage(this.#ctx.names.dead, { seq }).catch(() => null);
      return m === null ? undefined : m.json<DeadLetter>();
    });
  }

  /** Every dead letter of `queue` (filtered by `ids`), removed from the dead stream after `each` succeeded. */
  async #take(queue: string, ids: string[] | undefined, each: (letter: DeadLetter) => Promise<void>): Promise<number> {
    const wanted = ids === undefined ? undefined : new Set(ids);
    let count = 0;
    let from = 1;
    for (;;) {
      const page = await this.#scan(queue, from, 500);
      if (page.length === 0) return count;
      for (const { seq, letter } of page) {
        if (wanted !== undefined && !wanted.has(letter.deliveryId)) continue;
        await each(letter);
        await this.#ctx.jsm.streams.deleteMessage(this.#ctx.names.dead, seq, false);
        await this.#ctx.meta.delete(deadKey(letter.deliveryId));
        count++;
      }
      from = (page[page.length - 1] as { seq: number }).seq + 1;
    }
  }

  redrive(queue: string, options: { ids?: string[] }): Promise<number> {
    return this.#ctx.gate.run("redrive", async () => {
      await this.#consumers.ensure(queue);
      const count = await this.#take(queue, options.ids, (letter) =>
        publishDeliveries(this.#ctx, [{ queue, payload: letter.payload, ...(letter.partitionKey === undefined ? {} : { partitionKey: letter.partitionKey }) }]),
      );
      if (count > 0) this.#ctx.nc.publish(this.#ctx.names.work);
      return count;
    });
  }

  purgeDead(queue: string, options?: { ids?: string[] }): Promise<number> {
    return this.#ctx.gate.run("purgeDead", () => this.#take(queue, options?.ids, async () => {}));
  }
}
