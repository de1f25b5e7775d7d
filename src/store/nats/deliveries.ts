/**
 * Delivery queues on JetStream. A delivery is a message on the deliveries stream (work-queue retention) under
 * `<queue>.<key>`; its id is its stream sequence, its lease token the ack subject of one delivery of it.
 *
 * - lease: a `no_wait` pull per queue (pull.ts). A delivery delayed to a later time, or one that is not the
 *   oldest pending message of its partition key's subject, is handed back with a delayed NAK and counted as a
 *   skip, so that `attempt` (the delivery count less the skips) counts real attempts only.
 * - ack: `+ACK` (acknowledged by the server); retry: NAK with the delay, after recording the error; extend:
 *   `+WPI`, which restarts the consumer's `ack_wait`; deadLetter: the record on the dead stream, then `+ACK`.
 * - A stale token is recognised within one backend object (a newer delivery of the same message was leased here,
 *   or it was settled); JetStream itself accepts an ack of any delivery of a pending message.
 */
import { headers as natsHeaders } from "@nats-io/transport-node";
import { ErrorCode, SluiceError } from "../../errors.ts";
import type { DeadLetter, DeliveryQueues, Lease, LeaseRequest, NewDelivery } from "../contract.ts";
import type { WorkSignal } from "../work-signal.ts";
import type { Consumers } from "./consumers.ts";
import { decoder, encoder, nanos, type NatsContext } from "./context.ts";
import { noKey, untoken } from "./names.ts";
import { pull, type PulledMessage } from "./pull.ts";

type Ref = Pick<Lease, "deliveryId" | "token">;

interface Meta {
  /** Deliveries of the message that were handed back unleased (delay not reached, not its key's turn). */
  skips: number;
  lastError?: string;
}

interface Live {
  token: string;
  deliveryCount: number;
  skips: number;
  lastError?: string;
  /** A meta entry may exist and is deleted when the delivery settles. */
  hasMeta: boolean;
  payload: string;
  enqueuedAt: number;
  partitionKey?: string;
}

export const header = {
  enqueuedAt: "Sluice-Enqueued-At",
  availableAt: "Sluice-Available-At",
  key: "Sluice-Partition-Key",
} as const;

const settledMemory = 10_000;

function lost(operation: string, deliveryId: string): SluiceError {
  return new SluiceError(ErrorCode.LeaseLost, `${operation}: the lease of delivery ${deliveryId} is no longer held`);
}

function deliveryCountOf(token: string): number {
  const t = token.split(".");
  return Number(t.length === 9 ? t[4] : t[6]);
}

export function metaKey(deliveryId: string): string {
  return `d.${deliveryId}`;
}

/** Where a dead letter's sequence on the dead stream is kept, by delivery id. */
export function deadKey(deliveryId: string): string {
  return `x.${deliveryId}`;
}

/** Publishes deliveries to their queues' subjects; resolves when every one is stored. */
export async function publishDeliveries(
  ctx: NatsContext,
  deliveries: { queue: string; partitionKey?: string; availableAt?: number; payload: string; msgId?: string }[],
): Promise<void> {
  const now = Date.now();
  await Promise.all(
    deliveries.map((d) => {
      const h = natsHeaders();
      h.set(header.enqueuedAt, String(now));
      if (d.availableAt !== undefined && d.availableAt > now) h.set(header.availableAt, String(d.availableAt));
      if (d.msgId !== undefined) h.set("Nats-Msg-Id", d.msgId);
      return ctx.js.publish(ctx.names.deliverySubject(d.queue, d.partitionKey), encoder.encode(d.payload), { headers: h });
    }),
  );
}

export class NatsDeliveryQueues implements DeliveryQueues {
  readonly #ctx: NatsContext;
  readonly #consumers: Consumers;
  readonly #signal: WorkSignal;
  readonly #live = new Map<string, Live>();
  readonly #settled = new Set<string>();
  #rotation = 0;

  constructor(ctx: NatsContext, consumers: Consumers, signal: WorkSignal) {
    this.#ctx = ctx;
    this.#consumers = consumers;
    this.#signal = signal;
  }

  enqueue(deliveries: (NewDelivery & { payload: string })[]): Promise<void> {
    return this.#ctx.gate.run("enqueue", async () => {
      if (deliveries.length === 0) return;
      await Promise.all([...new Set(deliveries.map((d) => d.queue))].map((q) => this.#consumers.ensure(q)));
      await publishDeliveries(this.#ctx, deliveries);
      this.#ctx.nc.publish(this.#ctx.names.work);
    });
  }

  lease(request: LeaseRequest): Promise<Lease[]> {
    return this.#ctx.gate.run("lease", async () => {
      const named = request.queues;
      const queues = named ?? (await this.#consumers.all());
      const out: Lease[] = [];
      if (queues.length === 0 || request.max <= 0) return out;
      const start = this.#rotation++ % queues.length;
      for (let i = 0; i < queues.length && out.length < request.max; i++) {
        const queue = queues[(start + i) % queues.length] as string;
        if (!this.#consumers.known(queue)) {
          if (named === undefined) continue;
          await this.#consumers.ensure(queue);
        }
        await this.#leaseFrom(queue, request.max - out.length, out);
      }
      return out;
    });
  }

  async #leaseFrom(queue: string, max: number, out: Lease[]): Promise<void> {
    const { nc, names } = this.#ctx;
    let outcome = await pull(nc, names.deliveries, names.consumer(queue), max);
    if (outcome.problem === "missing-consumer") {
      await this.#consumers.recreate(queue);
      outcome = await pull(nc, names.deliveries, names.consumer(queue), max);
    }
    if (outcome.problem === "max-ack-pending") this.#ctx.onAckPendingCap(queue);
    const admitted = await Promise.all(outcome.messages.map((m) => this.#admit(queue, m)));
    for (const lease of admitted) if (lease !== undefined) out.push(lease);
  }

  /** A pulled message becomes a lease, or goes back to the stream when it may not be leased yet. */
  async #admit(queue: string, m: PulledMessage): Promise<Lease | undefined> {
    const now = Date.now();
    const id = String(m.streamSeq);
    const meta = m.deliveryCount > 1 ? await this.#readMeta(id) : undefined;
    const skips = meta?.skips ?? 0;
    const availableAt = Number(m.headers.get(header.availableAt) ?? 0);
    if (availableAt > now) {
      await this.#handBack(m, id, { ...meta, skips: skips + 1 }, availableAt - now);
      return undefined;
    }
    const keyToken = m.subject.slice(m.subject.lastIndexOf(".") + 1);
    const partitionKey = keyToken === noKey ? undefined : untoken(keyToken.slice(1));
    if (partitionKey !== undefined) {
      // Only the oldest pending message of the key's subject may be leased (acked ones are gone from the stream).
      const head = await this.#ctx.jsm.streams.getMessage(this.#ctx.names.deliveries, { next_by_subj: m.subject, seq: 0 } as never);
      if (head !== null && head.seq !== m.streamSeq) {
        await this.#handBack(m, id, { ...meta, skips: skips + 1 }, Math.min(300, 50 * 2 ** Math.min(skips, 3)));
        return undefined;
      }
    }
    const payload = decoder.decode(m.data);
    const enqueuedAt = Number(m.headers.get(header.enqueuedAt) ?? m.storedAt);
    const live: Live = { token: m.reply, deliveryCount: m.deliveryCount, skips, hasMeta: meta !== undefined, payload, enqueuedAt };
    if (meta?.lastError !== undefined) live.lastError = meta.lastError;
    if (partitionKey !== undefined) live.partitionKey = partitionKey;
    this.#live.set(id, live);
    const lease: Lease = {
      deliveryId: id,
      queue,
      token: m.reply,
      payload,
      attempt: m.deliveryCount - skips,
      enqueuedAt,
      leaseUntil: now + this.#consumers.leaseMs(queue),
    };
    if (partitionKey !== undefined) lease.partitionKey = partitionKey;
    if (meta?.lastError !== undefined) lease.lastError = meta.lastError;
    return lease;
  }

  async #readMeta(id: string): Promise<Meta | undefined> {
    const e = await this.#ctx.meta.get(metaKey(id));
    if (e === null || e.operation !== "PUT" || e.value.length === 0) return undefined;
    return JSON.parse(e.string()) as Meta;
  }

  async #handBack(m: PulledMessage, id: string, meta: Meta, delayMs: number): Promise<void> {
    await this.#ctx.meta.put(metaKey(id), JSON.stringify(meta));
    await this.#ctx.nc.request(m.reply, `-NAK ${JSON.stringify({ delay: nanos(Math.max(1, delayMs)) })}`, { timeout: 5000 });
  }

  /** The live record of a lease held with `ref.token`, or undefined when that lease is known to be lost. */
  #held(ref: Ref): Live | undefined | "unknown" {
    if (this.#settled.has(ref.token)) return undefined;
    const live = this.#live.get(ref.deliveryId);
    if (live === undefined) return Number.isFinite(deliveryCountOf(ref.token)) && ref.token.startsWith("$JS.ACK.") ? "unknown" : undefined;
    if (live.token === ref.token) return live;
    return deliveryCountOf(ref.token) > live.deliveryCount ? "unknown" : undefined;
  }

  #settle(ref: Ref, live: Pick<Live, "hasMeta"> | "unknown"): Promise<unknown> {
    this.#live.delete(ref.deliveryId);
    this.#settled.add(ref.token);
    if (this.#settled.size > settledMemory) this.#settled.delete(this.#settled.values().next().value as string);
    return live !== "unknown" && live.hasMeta ? this.#ctx.meta.delete(metaKey(ref.deliveryId)) : Promise.resolve();
  }

  ack(refs: Ref[]): Promise<{ lost: string[] }> {
    return this.#ctx.gate.run("ack", async () => {
      const lostIds: string[] = [];
      await Promise.all(
        refs.map(async (ref) => {
          const live = this.#held(ref);
          if (live === undefined) {
            lostIds.push(ref.deliveryId);
            return;
          }
          await this.#ctx.nc.request(ref.token, "+ACK", { timeout: 5000 });
          await this.#settle(ref, live);
        }),
      );
      const order = new Map(refs.map((r, i) => [r.deliveryId, i]));
      return { lost: lostIds.sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0)) };
    });
  }

  retry(ref: Ref, options: { delayMs: number; error: string }): Promise<void> {
    return this.#ctx.gate.run("retry", async () => {
      const live = this.#held(ref);
      if (live === undefined) throw lost("retry", ref.deliveryId);
      const skips = live === "unknown" ? ((await this.#readMeta(ref.deliveryId))?.skips ?? 0) : live.skips;
      await this.#ctx.meta.put(metaKey(ref.deliveryId), JSON.stringify({ skips, lastError: options.error } satisfies Meta));
      const delay = Math.max(0, options.delayMs);
      await this.#ctx.nc.request(ref.token, delay > 0 ? `-NAK ${JSON.stringify({ delay: nanos(delay) })}` : "-NAK", { timeout: 5000 });
      this.#live.delete(ref.deliveryId);
      this.#settled.add(ref.token);
    });
  }

  deadLetter(ref: Ref & { queue: string }, options: { reason: string; error?: string; now: number }): Promise<void> {
    return this.#ctx.gate.run("deadLetter", async () => {
      const live = this.#held(ref);
      if (live === undefined) throw lost("deadLetter", ref.deliveryId);
      const { js, jsm, names, meta } = this.#ctx;
      let known: Live;
      if (live === "unknown") {
        // Leased by another backend object: the message and its bookkeeping tell what the letter holds.
        const m = await jsm.streams.getMessage(names.deliveries, { seq: Number(ref.deliveryId) });
        if (m === null) throw lost("deadLetter", ref.deliveryId);
        const recorded = await this.#readMeta(ref.deliveryId);
        const keyToken = m.subject.slice(m.subject.lastIndexOf(".") + 1);
        known = {
          token: ref.token,
          deliveryCount: deliveryCountOf(ref.token),
          skips: recorded?.skips ?? 0,
          hasMeta: recorded !== undefined,
          payload: m.string(),
          enqueuedAt: Number(m.header.get(header.enqueuedAt) || m.time.getTime()),
          ...(keyToken === noKey ? {} : { partitionKey: untoken(keyToken.slice(1)) }),
          ...(recorded?.lastError === undefined ? {} : { lastError: recorded.lastError }),
        };
      } else known = live;
      const letter: DeadLetter = {
        deliveryId: ref.deliveryId,
        queue: ref.queue,
        payload: known.payload,
        reason: options.reason,
        attempts: known.deliveryCount - known.skips,
        enqueuedAt: known.enqueuedAt,
        deadAt: options.now,
      };
      if (known.partitionKey !== undefined) letter.partitionKey = known.partitionKey;
      const lastError = options.error ?? known.lastError;
      if (lastError !== undefined) letter.lastError = lastError;
      const h = natsHeaders();
      h.set("Nats-Msg-Id", `dead.${ref.deliveryId}`);
      const stored = await js.publish(names.deadSubject(ref.queue), encoder.encode(JSON.stringify(letter)), { headers: h });
      await meta.put(deadKey(ref.deliveryId), String(stored.seq));
      await this.#ctx.nc.request(ref.token, "+ACK", { timeout: 5000 });
      await this.#settle(ref, known);
    });
  }

  extend(ref: Ref): Promise<void> {
    return this.#ctx.gate.run("extend", async () => {
      const live = this.#held(ref);
      if (live === undefined) throw lost("extend", ref.deliveryId);
      await this.#ctx.nc.request(ref.token, "+WPI", { timeout: 5000 });
    });
  }

  waitForWork(signal: AbortSignal): Promise<void> {
    return this.#signal.wait(signal);
  }
}
