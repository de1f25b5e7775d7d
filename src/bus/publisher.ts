/**
 * The publish path: normalize and validate each entry, match rules, and append event + deliveries in one store
 * call. Concurrent publishes are group-committed: entries that arrive while an append is in flight ride in the
 * next one (bounded by `maxAppendEntries`), so throughput grows with load without giving up "resolved = durable".
 *
 * Memory stays bounded: at most `maxQueuedEntries` entries wait for an append; beyond that, and when the
 * estimated number of pending deliveries passes `maxPendingDeliveries`, publish fails with a retryable
 * E_BACKPRESSURE.
 */
import { ErrorCode, SluiceError } from "../errors.ts";
import { MAX_BATCH_ENTRIES } from "../event/http.ts";
import { normalizeEvent, type NormalizedEvent } from "../event/normalize.ts";
import { EventRule, EventValidationError } from "../event/validate.ts";
import { SluiceExtension, type CloudEvent } from "../event/types.ts";
import type { AppendEntry, AppendResult, Lease, NewDelivery, StorageBackend } from "../store/contract.ts";
import { joinPath } from "../util/validate.ts";
import type { Definitions } from "./definitions.ts";
import type { PublishEntryResult, PublishResult } from "./types.ts";

export const maxPublishBatch = MAX_BATCH_ENTRIES;

export interface PublisherOptions {
  now: () => number;
  dedupeWindowMs: number;
  maxEventBytes: number;
  hopLimit: number;
  maxAppendEntries: number;
  maxQueuedEntries: number;
  maxPendingDeliveries: number;
  /** How often the pending-delivery estimate is corrected from the store's stats. */
  statsIntervalMs: number;
  /**
   * Called right after an append is handed to the store (before it commits). The dispatcher leases then: on a
   * store that group-commits in order (`capabilities.leaseJoinsAppend`) its lease joins the same commit and sees
   * the new deliveries, which saves a commit on the publish-to-handler path.
   */
  onAppendIssued?: () => void;
  /**
   * The local dispatcher, when the store can lease deliveries in the append's own commit (appendAndLease): the
   * deliveries it has room for are handed to it leased, without a lease call of their own.
   */
  leaseSink?: LeaseSink;
}

/** Takes deliveries leased by an append (the dispatcher). */
export interface LeaseSink {
  readonly leaseMs: number;
  /** Promises up to `wanted` slots; returns how many. */
  reserve(wanted: number): number;
  /** Hands over the leases taken for a promise of `reserved` slots (none when the append failed). */
  adopt(leases: Lease[], reserved: number): void;
}

interface Waiting {
  entries: AppendEntry[];
  resolve(results: AppendResult[]): void;
  reject(err: unknown): void;
}

/**
 * The publisher dedupe key: bus, source and id; a replay or a bus-to-bus hop makes a new key (the same event
 * may come back to a bus through a replay or a routing chain), while a retried forward of one hop dedupes.
 */
export function dedupeKey(bus: string, event: CloudEvent, replay?: string): string {
  const hops = hopsOf(event);
  let key = `${bus}\n${event.source}\n${event.id}`;
  if (hops > 0) key += `\nhops:${hops}`;
  if (replay !== undefined) key += `\nreplay:${replay}`;
  return key;
}

export function partitionKeyOf(event: CloudEvent): string | undefined {
  const key = event[SluiceExtension.PartitionKey];
  return typeof key === "string" ? key : typeof key === "number" ? String(key) : undefined;
}

export function hopsOf(event: CloudEvent): number {
  const hops = Number(event[SluiceExtension.Hops] ?? 0);
  return Number.isFinite(hops) && hops > 0 ? hops : 0;
}

function entryError(err: unknown, eventId?: string): PublishEntryResult {
  if (err instanceof SluiceError) {
    return {
      errorCode: err.code,
      errorMessage: err.message,
      ...(err.path === undefined ? {} : { path: err.path }),
      ...(eventId === undefined ? {} : { eventId }),
    };
  }
  throw err;
}

export class Publisher {
  readonly #store: StorageBackend;
  readonly #defs: Definitions;
  readonly #o: PublisherOptions;
  #queue: Waiting[] = [];
  #queuedEntries = 0;
  #appending = false;
  #scheduled = false;
  #closed = false;
  #idle: (() => void)[] = [];
  /** Pending deliveries per the last stats read, plus local appends minus local acks since. */
  #pendingEstimate = 0;
  #statsAt = Number.NEGATIVE_INFINITY;
  #statsInFlight: Promise<void> | undefined;

  constructor(store: StorageBackend, defs: Definitions, options: PublisherOptions) {
    this.#store = store;
    this.#defs = defs;
    this.#o = options;
  }

  /** The dispatcher reports acked and dead-lettered deliveries so the estimate stays close between stats reads. */
  settled(count: number): void {
    this.#pendingEstimate = Math.max(0, this.#pendingEstimate - count);
    this.#settledSinceStats += count;
  }

  get pendingEstimate(): number {
    return this.#pendingEstimate;
  }

  async publish(busName: string, input: unknown): Promise<PublishResult> {
    const inputs = this.#checkBatch(Array.isArray(input) ? input : [input]);
    await this.#busOrRefresh(busName);
    const confirming = this.#checkBackpressure();
    if (confirming !== undefined) await confirming;
    const now = this.#o.now();
    const items: (NormalizedEvent | PublishEntryResult)[] = new Array(inputs.length);
    for (let i = 0; i < inputs.length; i++) {
      try {
        items[i] = this.#checkLimits(normalizeEvent(inputs[i], { maxSizeBytes: this.#o.maxEventBytes, now: () => now }));
      } catch (err) {
        const r = entryError(err, typeof (inputs[i] as { id?: unknown })?.id === "string" ? (inputs[i] as { id: string }).id : undefined);
        if (Array.isArray(input)) {
          const path = (r as { path?: string }).path;
          (r as { path?: string }).path = joinPath(`$[${i}]`, path);
        }
        items[i] = r;
      }
    }
    return this.#publishItems(busName, items);
  }

  /**
   * Publishes events that `normalizeEvent` (or `parseHttpEvents`, which calls it) already validated and encoded,
   * so the HTTP ingest does that once per event. The hop and size limits are still checked here. Internal: the
   * broker exposes it through `publishNormalized` in broker.ts, which the public API does not export.
   */
  async publishNormalized(busName: string, normalized: NormalizedEvent[]): Promise<PublishResult> {
    this.#checkBatch(normalized);
    await this.#busOrRefresh(busName);
    const confirming = this.#checkBackpressure();
    if (confirming !== undefined) await confirming;
    const items = normalized.map((n, i): NormalizedEvent | PublishEntryResult => {
      try {
        return this.#checkLimits(n);
      } catch (err) {
        const r = entryError(err, n.event.id);
        const path = (r as { path?: string }).path;
        (r as { path?: string }).path = joinPath(`$[${i}]`, path);
        return r;
      }
    });
    return this.#publishItems(busName, items);
  }

  #checkBatch<T>(inputs: T[]): T[] {
    if (this.#closed) throw new SluiceError(ErrorCode.Closed, "the broker is closed");
    if (inputs.length === 0) throw new SluiceError(ErrorCode.BadRequest, "publish needs at least one event", { path: "$" });
    if (inputs.length > maxPublishBatch) {
      throw new SluiceError(ErrorCode.BadRequest, `a publish batch holds at most ${maxPublishBatch} events, got ${inputs.length}`, {
        path: "$",
      });
    }
    return inputs;
  }

  #checkLimits(n: NormalizedEvent): NormalizedEvent {
    if (n.sizeBytes > this.#o.maxEventBytes) {
      throw new EventValidationError("", EventRule.MaxSize, `the encoded event is ${n.sizeBytes} bytes, over the ${this.#o.maxEventBytes}-byte limit`, {
        code: ErrorCode.EventTooLarge,
      });
    }
    if (hopsOf(n.event) > this.#o.hopLimit) {
      throw new SluiceError(ErrorCode.RecursiveLoop, `event passed the hop limit of ${this.#o.hopLimit}`, {
        path: `$.${SluiceExtension.Hops}`,
      });
    }
    return n;
  }

  async #publishItems(busName: string, items: (NormalizedEvent | PublishEntryResult)[]): Promise<PublishResult> {
    const results: PublishEntryResult[] = new Array(items.length);
    const entries: AppendEntry[] = [];
    const slots: number[] = [];
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (!("encoded" in item)) {
        results[i] = item;
        continue;
      }
      entries.push(this.route(busName, item.event, item.encoded, dedupeKey(busName, item.event)));
      slots.push(i);
    }
    if (entries.length > 0) {
      const appended = await this.append(entries);
      for (let j = 0; j < appended.length; j++) {
        const entry = entries[j]!;
        results[slots[j]!] = appended[j]!.status === "duplicate" ? { eventId: entry.eventId, duplicate: true } : { eventId: entry.eventId };
      }
    }
    let failedEntryCount = 0;
    for (const r of results) if ("errorCode" in r) failedEntryCount++;
    return { failedEntryCount, entries: results };
  }

  /** Builds the append entry of one valid event: its deliveries are the targets of the rules it matches now. */
  route(busName: string, event: CloudEvent, encoded: string, key: string): AppendEntry {
    const bus = this.#defs.bus(busName);
    const deliveries: NewDelivery[] = [];
    if (bus !== undefined) {
      const matched = bus.index.match(event);
      if (matched.length > 0) {
        const partitionKey = partitionKeyOf(event);
        for (const ruleName of matched) {
          const rule = bus.rules.get(ruleName);
          if (rule === undefined) continue;
          for (const t of rule.targets) {
            deliveries.push(partitionKey === undefined ? { queue: t.queue } : { queue: t.queue, partitionKey });
          }
        }
      }
    }
    return { bus: busName, eventId: event.id, dedupeKey: key, encoded, deliveries };
  }

  async #busOrRefresh(name: string): Promise<void> {
    let bus = this.#defs.bus(name);
    if (bus === undefined) {
      await this.#defs.refreshIfChanged(); // another process may have created it
      bus = this.#defs.bus(name);
    }
    if (bus === undefined) throw new SluiceError(ErrorCode.BusNotFound, `bus "${name}" does not exist`, { path: "$.bus" });
  }

  /** Throws at once when a limit is passed; returns a promise only when an over-estimate is being confirmed. */
  #checkBackpressure(): Promise<void> | undefined {
    if (this.#queuedEntries >= this.#o.maxQueuedEntries) {
      throw new SluiceError(ErrorCode.Backpressure, `${this.#queuedEntries} events are waiting to be stored; publish again later`, {
        retryable: true,
      });
    }
    const now = this.#o.now();
    // Far from the limit the local estimate is enough (a stats read scans the pending deliveries): correct it
    // rarely; near the limit, often.
    const near = this.#pendingEstimate >= this.#o.maxPendingDeliveries / 2;
    const interval = near ? Math.min(this.#o.statsIntervalMs, 250) : this.#o.statsIntervalMs * 6;
    if (now - this.#statsAt >= interval && this.#statsInFlight === undefined) {
      this.#statsAt = now;
      this.#statsInFlight = this.#refreshStats().finally(() => {
        this.#statsInFlight = undefined;
      });
    }
    if (this.#pendingEstimate < this.#o.maxPendingDeliveries) return undefined;
    if (now - this.#confirmedAt < 250) throw this.#pendingError();
    // The estimate can count deliveries twice (appended while a slow stats read ran): before refusing, confirm
    // it with a read that started after them, at most every 250 ms so that refusals do not multiply reads.
    this.#confirmedAt = now;
    return (async () => {
      await this.#statsInFlight;
      await this.#refreshStats();
      if (this.#pendingEstimate >= this.#o.maxPendingDeliveries) throw this.#pendingError();
    })();
  }

  #pendingError(): SluiceError {
    return new SluiceError(
      ErrorCode.Backpressure,
      `about ${this.#pendingEstimate} deliveries are pending (limit ${this.#o.maxPendingDeliveries}); publish again later`,
      { retryable: true },
    );
  }

  async #refreshStats(): Promise<void> {
    try {
      const before = this.#appendedSinceStats;
      const settledBefore = this.#settledSinceStats;
      const stats = await this.#store.admin.stats(undefined, { now: this.#o.now() });
      let pending = 0;
      for (const s of stats) pending += s.ready + s.delayed + s.leased;
      // Deliveries appended while the stats were read may or may not be counted: keep them (over-estimate). Those
      // settled meanwhile are taken off, or a slow read (one request per queue on a log backend) would undo them.
      this.#pendingEstimate = Math.max(0, pending + (this.#appendedSinceStats - before) - (this.#settledSinceStats - settledBefore));
    } catch {
      // The estimate stays as it was; the next publish tries again.
    }
  }

  #appendedSinceStats = 0;
  #settledSinceStats = 0;
  #confirmedAt = 0;

  /** Group-committed append; resolves when the entries are durable. */
  append(entries: AppendEntry[]): Promise<AppendResult[]> {
    if (this.#closed) return Promise.reject(new SluiceError(ErrorCode.Closed, "the broker is closed"));
    return new Promise<AppendResult[]>((resolve, reject) => {
      this.#queue.push({ entries, resolve, reject });
      this.#queuedEntries += entries.length;
      if (!this.#appending && !this.#scheduled) {
        this.#scheduled = true;
        queueMicrotask(() => {
          this.#scheduled = false;
          void this.#flush();
        });
      }
    });
  }

  async #flush(): Promise<void> {
    if (this.#appending) return;
    this.#appending = true;
    try {
      while (this.#queue.length > 0) {
        const batch: Waiting[] = [];
        let count = 0;
        while (this.#queue.length > 0 && (batch.length === 0 || count + this.#queue[0]!.entries.length <= this.#o.maxAppendEntries)) {
          const w = this.#queue.shift()!;
          batch.push(w);
          count += w.entries.length;
        }
        const all = batch.length === 1 ? batch[0]!.entries : batch.flatMap((w) => w.entries);
        // With a store that leases in the append's commit, the local dispatcher gets the deliveries it has room for.
        const appendAndLease = this.#store.events.appendAndLease?.bind(this.#store.events);
        const sink = this.#o.leaseSink;
        const leasing = sink !== undefined && appendAndLease !== undefined ? { sink, appendAndLease } : undefined;
        let reserved = 0;
        try {
          const options = { now: this.#o.now(), dedupeWindowMs: this.#o.dedupeWindowMs };
          let wanted = 0;
          if (leasing !== undefined) for (const e of all) wanted += e.deliveries.length;
          reserved = leasing !== undefined && wanted > 0 ? leasing.sink.reserve(wanted) : 0;
          const pending =
            leasing !== undefined && reserved > 0
              ? leasing.appendAndLease(all, { ...options, lease: { max: reserved, leaseMs: leasing.sink.leaseMs } }).then(({ results, leases }) => {
                  const promised = reserved;
                  reserved = 0;
                  leasing.sink.adopt(leases, promised);
                  return results;
                })
              : this.#store.events.append(all, options);
          // Deliveries beyond the promised slots are left for a lease call, which joins this commit on SQLite.
          if (reserved === 0 || reserved < wanted) this.#o.onAppendIssued?.();
          const results = await pending;
          let offset = 0;
          let deliveries = 0;
          for (const w of batch) {
            const mine = results.slice(offset, offset + w.entries.length);
            w.entries.forEach((e, j) => {
              if (mine[j]?.status === "stored") deliveries += e.deliveries.length;
            });
            offset += w.entries.length;
            w.resolve(mine);
          }
          this.#pendingEstimate += deliveries;
          this.#appendedSinceStats += deliveries;
        } catch (err) {
          const wrapped =
            err instanceof SluiceError
              ? err
              : new SluiceError(ErrorCode.StoreUnavailable, `storing events failed: ${(err as Error).message}`, { retryable: true, cause: err });
          for (const w of batch) w.reject(wrapped);
          if (reserved > 0) leasing?.sink.adopt([], reserved);
        } finally {
          this.#queuedEntries -= count;
        }
      }
    } finally {
      this.#appending = false;
      if (this.#queue.length === 0) for (const f of this.#idle.splice(0)) f();
    }
  }

  /** Refuses new publishes and waits for queued appends to finish. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#appending || this.#queue.length > 0 || this.#scheduled) await new Promise<void>((r) => this.#idle.push(r));
    await this.#statsInFlight;
  }
}
