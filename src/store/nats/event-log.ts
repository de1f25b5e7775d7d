/**
 * The event log on JetStream: one stream per deployment, one subject per bus. The stream ack is the durability
 * promise (after a quorum of replicas on R3). Publisher dedupe is the stream's duplicate window over a message id
 * derived from the bus and dedupe key. Deliveries follow the event in the same call (`atomicFanOut` false): each
 * has a message id made of the event's sequence and its index, so a repeated append (a caller retrying after a
 * failure, reported `duplicate`) completes the deliveries a failure left out and never doubles one.
 */
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { AppendEntry, AppendResult, EventLog, ReadRange, StoredEvent } from "../contract.ts";
import { ErrorCode, SluiceError } from "../../errors.ts";
import { decoder, encoder, nanos, type NatsContext } from "./context.ts";
import type { Consumers } from "./consumers.ts";
import { publishDeliveries } from "./deliveries.ts";
import { digest } from "./names.ts";

export const eventIdHeader = "Sluice-Event-Id";

function checkEntry(e: AppendEntry, i: number): void {
  const bad = (what: string) => new SluiceError(ErrorCode.BadRequest, `append entry ${i}: ${what}`, { path: `$[${i}]` });
  if (typeof e.bus !== "string" || e.bus === "") throw bad("bus must be a non-empty string");
  if (typeof e.eventId !== "string") throw bad("eventId must be a string");
  if (typeof e.dedupeKey !== "string") throw bad("dedupeKey must be a string");
  if (typeof e.encoded !== "string") throw bad("encoded must be a string");
  if (!Array.isArray(e.deliveries)) throw bad("deliveries must be an array");
}

export class NatsEventLog implements EventLog {
  readonly #ctx: NatsContext;
  readonly #consumers: Consumers;
  /** The duplicate window the streams are configured with, ms. */
  #windowMs: number;

  constructor(ctx: NatsContext, consumers: Consumers, windowMs: number) {
    this.#ctx = ctx;
    this.#consumers = consumers;
    this.#windowMs = windowMs;
  }

  /** Widens both streams' duplicate window when an append asks for a longer one (never narrows it). */
  async widenWindow(windowMs: number): Promise<void> {
    if (windowMs <= this.#windowMs) return;
    const { jsm, names } = this.#ctx;
    for (const stream of [names.events, names.deliveries]) {
      const info = await jsm.streams.info(stream);
      await jsm.streams.update(stream, { ...info.config, duplicate_window: nanos(windowMs) });
    }
    this.#windowMs = windowMs;
  }

  append(entries: AppendEntry[], options: { now: number; dedupeWindowMs: number }): Promise<AppendResult[]> {
    return this.#ctx.gate.run("append", async () => {
      entries.forEach(checkEntry);
      if (entries.length === 0) return [];
      const dedupe = options.dedupeWindowMs > 0;
      if (dedupe) await this.widenWindow(options.dedupeWindowMs);
      const queues = new Set<string>();
      for (const e of entries) for (const d of e.deliveries) queues.add(d.queue);
      await Promise.all([...queues].map((q) => this.#consumers.ensure(q)));
      const { js, names } = this.#ctx;
      // Issued back to back on one connection, so the stream orders them as the entries are ordered.
      const acks = await Promise.all(
        entries.map((e) => {
          const h = natsHeaders();
          h.set(eventIdHeader, e.eventId.replace(/[\r\n]/g, " "));
          if (dedupe) h.set("Nats-Msg-Id", digest(`${e.bus}\n${e.dedupeKey}`));
          return js.publish(names.eventSubject(e.bus), encoder.encode(e.encoded), { headers: h });
        }),
      );
      const deliveries: Parameters<typeof publishDeliveries>[1] = [];
      entries.forEach((e, i) => {
        const seq = (acks[i] as { seq: number }).seq;
        e.deliveries.forEach((d, j) => {
          deliveries.push({
            queue: d.queue,
            payload: d.payload ?? e.encoded,
            msgId: `${seq}.${j}`,
            ...(d.partitionKey === undefined ? {} : { partitionKey: d.partitionKey }),
            ...(d.availableAt === undefined ? {} : { availableAt: d.availableAt }),
          });
        });
      });
      if (deliveries.length > 0) {
        await publishDeliveries(this.#ctx, deliveries);
        this.#ctx.nc.publish(names.work);
      }
      return acks.map((a) => ({ status: a.duplicate ? "duplicate" : "stored", seq: a.seq }));
    });
  }

  /**
   * The sequence from which reading `subject` yields its first event stored at or after `at`: a binary search over
   * server timestamps, which increase along the stream.
   */
  async #startAt(subject: string, at: number): Promise<number> {
    const { jsm, names } = this.#ctx;
    const info = await jsm.streams.info(names.events);
    let lo = Math.max(1, info.state.first_seq);
    let hi = info.state.last_seq + 1;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const m = await jsm.streams.getMessage(names.events, { next_by_subj: subject, seq: mid } as never).catch(() => null);
      if (m === null || m.time.getTime() >= at) hi = mid;
      else lo = m.seq + 1;
    }
    return lo;
  }

  read(bus: string, range: ReadRange): Promise<StoredEvent[]> {
    return this.#ctx.gate.run("read", async () => {
      const { jsm, names } = this.#ctx;
      const subject = names.eventSubject(bus);
      let seq = (range.afterSeq ?? 0) + 1;
      if (range.fromAt !== undefined) seq = Math.max(seq, await this.#startAt(subject, range.fromAt));
      const out: StoredEvent[] = [];
      while (out.length < range.limit) {
        const m = await jsm.streams.getMessage(names.events, { next_by_subj: subject, seq } as never).catch(() => null);
        if (m === null) break;
        const storedAt = m.time.getTime();
        if (range.toAt !== undefined && storedAt >= range.toAt) break;
        if (range.fromAt === undefined || storedAt >= range.fromAt) {
          out.push({ bus, seq: m.seq, eventId: m.header.get(eventIdHeader) ?? "", encoded: decoder.decode(m.data), storedAt });
        }
        seq = m.seq + 1;
      }
      return out;
    });
  }

  trim(bus: string, beforeAt: number): Promise<number> {
    return this.#ctx.gate.run("trim", async () => {
      const { jsm, names } = this.#ctx;
      const subject = names.eventSubject(bus);
      // Purges the subject's messages below the first one to keep.
      const purged = await jsm.streams.purge(names.events, { filter: subject, seq: await this.#startAt(subject, beforeAt) });
      return purged.purged;
    });
  }
}
