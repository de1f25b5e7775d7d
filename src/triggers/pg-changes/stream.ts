/**
 * One streaming session from a replication slot (pg-logical-replication's pgoutput decoder over the streaming
 * replication protocol). Committed transactions queue in stream order; a flush loop publishes them and only
 * then moves the confirmed position, which a timer sends to PostgreSQL (the slot may then drop that WAL).
 *
 * Keepalives carry the server's sent position; one that arrives when every earlier transaction is published is
 * confirmed too, so a slot whose tables are idle still advances (the heartbeat messages make sure there is WAL
 * in this database to move past).
 */
import type { ChangeEvent } from "./events.ts";
import { ChangeDecoder, type PgoutputMessage } from "./decoder.ts";
import { formatLsn, parseLsn } from "./lsn.ts";
import { sleep } from "../../util/sleep.ts";

type QueueItem = { events: ChangeEvent[]; lsn: bigint };

export interface StreamOptions {
  url: string;
  slot: string;
  publication: string;
  sourceId: string;
  statusIntervalMs: number;
  /** The slot's confirmed_flush_lsn when the session starts. */
  startLsn: string;
  /** Publishes durably; throws when any event was refused (the batch is retried). */
  publish(events: ChangeEvent[]): Promise<void>;
  onPublishError(err: unknown): void;
  onPublished(): void;
  signal: AbortSignal;
}

/** Events queued above this pause reading from the socket (PostgreSQL then waits); resumed below a fifth of it. */
const highWater = 20_000;
const maxBatchEvents = 1_000;

export class ChangeStream {
  readonly #o: StreamOptions;
  readonly #decoder: ChangeDecoder;
  #queue: QueueItem[] = [];
  #queuedEvents = 0;
  #confirmed: bigint;
  #sentConfirmed = -1n;
  #flushing = false;
  #paused = false;
  #stopped = false;
  #service: import("pg-logical-replication").LogicalReplicationService | undefined;
  #timer: NodeJS.Timeout | undefined;
  received = 0;
  published = 0;

  constructor(options: StreamOptions) {
    this.#o = options;
    this.#decoder = new ChangeDecoder(options.sourceId);
    this.#confirmed = parseLsn(options.startLsn);
  }

  get confirmedLsn(): string {
    return formatLsn(this.#confirmed);
  }

  /** Streams until the connection ends or `stop()`; rejects with the replication error. */
  async run(): Promise<void> {
    const { LogicalReplicationService, PgoutputPlugin } = await import("pg-logical-replication");
    const service = new LogicalReplicationService(
      { connectionString: this.#o.url },
      // Confirmation is ours: only after a durable publish (auto acknowledge would confirm on receipt).
      { acknowledge: { auto: false, timeoutSeconds: 0 } },
    );
    this.#service = service;
    const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [this.#o.publication], messages: false });
    let failure: Error | undefined;
    service.on("data", (lsn: string, msg: PgoutputMessage) => {
      try {
        const tx = this.#decoder.push(lsn, msg);
        if (tx) this.#enqueue(tx.events, parseLsn(tx.endLsn));
      } catch (err) {
        failure = err as Error;
        void this.stop();
      }
    });
    service.on("heartbeat", (lsn: string, _at: number, shouldRespond: boolean) => {
      this.#enqueue([], parseLsn(lsn));
      if (shouldRespond) this.#sendStatus(true);
    });
    service.on("error", (err: Error) => {
      failure ??= err;
    });
    this.#timer = setInterval(() => this.#sendStatus(false), this.#o.statusIntervalMs);
    this.#timer.unref();
    try {
      await service.subscribe(plugin, this.#o.slot, this.#o.startLsn);
    } finally {
      clearInterval(this.#timer);
      this.#stopped = true;
    }
    if (failure && !this.#o.signal.aborted) throw failure;
  }

  /** Confirms what is published, then ends the session. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#sendStatus(false);
    this.#stopped = true;
    await this.#service?.stop().catch(() => undefined);
  }

  #enqueue(events: ChangeEvent[], lsn: bigint): void {
    this.received += events.length;
    const last = this.#queue.at(-1);
    // Keepalives in a row collapse into the newest.
    if (events.length === 0 && last && last.events.length === 0) last.lsn = lsn;
    else this.#queue.push({ events, lsn });
    this.#queuedEvents += events.length;
    if (this.#queuedEvents > highWater && !this.#paused) this.#pause(true);
    void this.#flush();
  }

  async #flush(): Promise<void> {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      while (this.#queue.length > 0 && !this.#stopped) {
        let take = 0;
        let count = 0;
        while (take < this.#queue.length && (count === 0 || count + this.#queue[take]!.events.length <= maxBatchEvents)) {
          count += this.#queue[take]!.events.length;
          take++;
        }
        const batch = this.#queue.slice(0, take);
        const events = batch.flatMap((item) => item.events);
        if (events.length > 0) {
          try {
            await this.#o.publish(events);
          } catch (err) {
            this.#o.onPublishError(err);
            await sleep(1_000, this.#o.signal);
            continue;
          }
          this.published += events.length;
          this.#o.onPublished();
        }
        this.#queue.splice(0, take);
        this.#queuedEvents -= events.length;
        const lsn = batch.at(-1)!.lsn;
        if (lsn > this.#confirmed) this.#confirmed = lsn;
        if (this.#paused && this.#queuedEvents < highWater / 5) this.#pause(false);
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** The library pauses this same socket for its own flow control; ours must also see keepalives in order. */
  #pause(on: boolean): void {
    const stream = (this.#service as unknown as { _connection?: { stream?: { pause(): void; resume(): void } } })?._connection?.stream;
    if (!stream) return;
    this.#paused = on;
    if (on) stream.pause();
    else stream.resume();
  }

  /**
   * Sends a standby status update with the confirmed position. The library reports `lsn + 1` as flushed, so
   * one less is passed: confirming past the exact position could skip a transaction whose commit record starts
   * right there when the slot is next read.
   */
  #sendStatus(force: boolean): void {
    if (this.#stopped || !this.#service) return;
    if (!force && this.#confirmed === this.#sentConfirmed) return;
    if (this.#confirmed === 0n) return;
    this.#sentConfirmed = this.#confirmed;
    void this.#service.acknowledge(formatLsn(this.#confirmed - 1n)).catch(() => undefined);
  }
}
