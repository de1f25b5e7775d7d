/**
 * Records lineage off the delivery path: records are buffered and written in batches in the background (one
 * StateStore put each, which SQLite group-commits), so a publish or a delivery never waits for its lineage.
 * The buffer is bounded; past it records are dropped, counted and logged (lineage is diagnostics, not data).
 */
import type { StoredNotice } from "../bus/publisher.ts";
import type { DeliveryEvents } from "../bus/types.ts";
import { SluiceExtension } from "../event/types.ts";
import type { Logger } from "../logger.ts";
import type { InvocationRecord } from "../runtime/metering.ts";
import type { EmitOrigin } from "../runtime/runtime-types.ts";
import type { StateStore } from "../store/contract.ts";
import { lineageNamespace, recordKey, type LineageRecord } from "./lineage-records.ts";

export interface LineageRecorderOptions {
  state: StateStore;
  now(): number;
  logger: Logger;
  /** How long an event's records are kept: its bus's archive retention (0 or less: not recorded). */
  retentionMs(bus: string | undefined): number;
  /** The function a queue's target runs, if it is a function target. */
  functionOf(queue: string): string | undefined;
  /** Records kept in memory waiting for a write; past it new ones are dropped. Default 50 000. */
  maxBuffered?: number;
  /** How long a record may wait for its batch. Default 100 ms. */
  flushMs?: number;
  /** Called with how many records were dropped (metrics). */
  onDropped?(count: number): void;
}

interface Pending {
  eventId: string;
  ttlMs: number;
  record: LineageRecord;
}

/** `rule:<bus>/<rule>/<target>` -> its parts. */
export function parseQueue(queue: string): { bus: string; rule: string; target: string } | undefined {
  if (!queue.startsWith("rule:")) return undefined;
  const [bus, rule, target] = queue.slice(5).split("/");
  return bus === undefined || rule === undefined || target === undefined ? undefined : { bus, rule, target };
}

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

export class LineageRecorder {
  readonly #o: LineageRecorderOptions;
  readonly #max: number;
  #buffer: Pending[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #writing: Promise<void> | undefined;
  #dropped = 0;
  #closed = false;

  constructor(options: LineageRecorderOptions) {
    this.#o = options;
    this.#max = options.maxBuffered ?? 50_000;
  }

  /** Events newly stored on a bus (the broker's onStored). */
  stored(notices: StoredNotice[]): void {
    for (const n of notices) {
      const e = n.event;
      const parentId = str(e[SluiceExtension.CausationId]);
      const record: LineageRecord = {
        kind: "stored",
        bus: n.bus,
        eventId: e.id,
        type: e.type,
        source: e.source,
        ...(e.subject === undefined ? {} : { subject: e.subject }),
        ...(e.time === undefined ? {} : { time: e.time }),
        ...(str(e[SluiceExtension.CorrelationId]) === undefined ? {} : { correlationId: str(e[SluiceExtension.CorrelationId])! }),
        ...(parentId === undefined ? {} : { parentId }),
        ...(str(e[SluiceExtension.Replay]) === undefined ? {} : { replay: str(e[SluiceExtension.Replay])! }),
        storedAt: n.storedAt,
        rules: n.rules,
        queues: n.queues,
      };
      this.#add(e.id, n.bus, record);
    }
  }

  /** A delivery attempt ended (the broker's delivered / retry / dead events). */
  attempt<K extends keyof DeliveryEvents>(kind: K, e: DeliveryEvents[K]): void {
    if (e.eventId === "") return;
    const fn = this.#o.functionOf(e.queue);
    const base = { kind: "attempt" as const, queue: e.queue, deliveryId: e.deliveryId, attempt: e.attempt, startedAt: e.startedAt, durationMs: e.durationMs };
    let record: LineageRecord;
    if (kind === "retry") {
      const r = e as DeliveryEvents["retry"];
      record = { ...base, outcome: "retry", error: r.error, nextAttemptAt: r.availableAt };
    } else if (kind === "dead") {
      const d = e as DeliveryEvents["dead"];
      record = { ...base, outcome: "dead", reason: d.reason, ...(d.error === undefined ? {} : { error: d.error }) };
    } else record = { ...base, outcome: "delivered" };
    if (fn !== undefined) record.function = fn;
    this.#add(e.eventId, parseQueue(e.queue)?.bus, record);
  }

  /** A function invocation settled (the runtime's invocation records). */
  run(r: InvocationRecord): void {
    this.#add(r.eventId, undefined, {
      kind: "run",
      functionName: r.functionName,
      invocationId: r.invocationId,
      attempt: r.attempt,
      arrivedAt: r.arrivedAt,
      durationMs: r.durationMs,
      outcome: r.outcome,
      ...(r.reason === undefined ? {} : { reason: r.reason }),
      cold: r.cold,
      gbSeconds: r.gbSeconds,
    });
  }

  /** A handler of `parentId` emitted `children` (ctx.emit), accepted by the bus. */
  emitted(parentId: string, children: { id: string; type: string }[], origin: EmitOrigin | undefined): void {
    const at = this.#o.now();
    for (const c of children) {
      this.#add(parentId, undefined, {
        kind: "child",
        eventId: c.id,
        type: c.type,
        at,
        ...(origin === undefined ? {} : { functionName: origin.functionName, invocationId: origin.invocationId }),
      });
    }
  }

  get dropped(): number {
    return this.#dropped;
  }

  #add(eventId: string, bus: string | undefined, record: LineageRecord): void {
    if (this.#closed) return;
    const ttlMs = this.#o.retentionMs(bus);
    if (ttlMs <= 0) return;
    if (this.#buffer.length >= this.#max) {
      if (this.#dropped++ === 0) this.#o.logger.warn({ maxBuffered: this.#max }, "lineage records dropped: the store is not keeping up");
      this.#o.onDropped?.(1);
      return;
    }
    this.#buffer.push({ eventId, ttlMs, record });
    if (this.#timer === undefined && this.#writing === undefined) this.#schedule();
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#writing = this.#write().finally(() => {
        this.#writing = undefined;
        if (this.#buffer.length > 0 && !this.#closed) this.#schedule();
      });
    }, this.#o.flushMs ?? 100);
    this.#timer.unref?.();
  }

  async #write(): Promise<void> {
    while (this.#buffer.length > 0) {
      const batch = this.#buffer.splice(0, 1000);
      const now = this.#o.now();
      const results = await Promise.allSettled(
        batch.map((p) => this.#o.state.put(lineageNamespace(p.eventId), recordKey(p.record), JSON.stringify(p.record), { now, ttlMs: p.ttlMs })),
      );
      const failed = results.filter((r) => r.status === "rejected");
      if (failed.length > 0) {
        this.#o.logger.warn({ count: failed.length, err: String((failed[0] as PromiseRejectedResult).reason) }, "lineage records not written");
        this.#o.onDropped?.(failed.length);
      }
    }
  }

  /** Writes what is buffered now and waits for it (tests, the CLI reading right after a run). */
  async flush(): Promise<void> {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    while (this.#writing !== undefined) await this.#writing;
    if (this.#buffer.length > 0) {
      this.#writing = this.#write().finally(() => (this.#writing = undefined));
      await this.#writing;
    }
  }

  /** Writes the rest, then takes no more. Call before the store closes. Idempotent. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
  }
}
