/**
 * The `postgres-changes` source. Every node runs one; the node that holds a session advisory lock on the source
 * database (keyed by the slot name) streams, the others wait and try again every second, so when the holder
 * dies (its connection, and so its lock, goes with it) another takes over from the slot's confirmed position.
 *
 * While streaming, a timer writes a `pg_logical_emit_message` heartbeat and reads the slot's lag; a lag above
 * `lagWarnBytes` makes the source `degraded`, and a slot PostgreSQL invalidated (`wal_status = lost`) makes it
 * `failed` with what to do, since its changes can no longer be read.
 */
import type pg from "pg";
import { publishError } from "../../bus/publish-error.ts";
import type { EventSource, SourceContext } from "../source.ts";
import type { ChangeEvent } from "./events.ts";
import type { PgChangesOptions } from "./options.ts";
import { createSlot, dropSlot, ensurePublication, readSlot } from "./setup.ts";
import { ChangeStream } from "./stream.ts";
import { sleep } from "../../util/sleep.ts";

const stateNamespace = "pg-changes";
const standbyRetryMs = 1_000;

interface SlotState {
  consistentPoint: string;
  snapshot: "pending" | "done" | "none";
}

export class PgChangesSource implements EventSource {
  readonly kind = "postgres-changes";
  readonly #o: PgChangesOptions;
  readonly #sourceId: string;
  #loop: Promise<void> | undefined;
  #stream: ChangeStream | undefined;
  #role: "starting" | "standby" | "leader" = "starting";
  #lagBytes: number | undefined;
  #confirmedLsn: string | undefined;
  #snapshotRows = 0;
  #published = 0;
  #closing = new AbortController();

  constructor(
    readonly name: string,
    options: PgChangesOptions,
  ) {
    this.#o = options;
    this.#sourceId = `/sluice/sources/${name}`;
  }

  async start(ctx: SourceContext): Promise<void> {
    ctx.signal.addEventListener("abort", () => this.#closing.abort(), { once: true });
    await import("pg-logical-replication").catch((err: unknown) => {
      throw new Error(`postgres-changes needs the pg and pg-logical-replication packages: npm install pg pg-logical-replication (${(err as Error).message})`);
    });
    this.#loop = this.#run(ctx);
  }

  describe(): Record<string, unknown> {
    return {
      role: this.#role,
      slot: this.#o.slot,
      publication: this.#o.publication,
      ...(this.#confirmedLsn === undefined ? {} : { confirmedLsn: this.#stream?.confirmedLsn ?? this.#confirmedLsn }),
      ...(this.#lagBytes === undefined ? {} : { lagBytes: this.#lagBytes }),
      published: this.#published + (this.#stream?.published ?? 0),
      snapshotRows: this.#snapshotRows,
    };
  }

  /** The slot's lag in bytes while this node streams (the `sluice_source_lag_bytes` gauge). */
  lagBytes(): number | undefined {
    return this.#role === "leader" ? this.#lagBytes : undefined;
  }

  async close(): Promise<void> {
    this.#closing.abort();
    await this.#stream?.stop();
    await this.#loop;
  }

  async #run(ctx: SourceContext): Promise<void> {
    const signal = this.#closing.signal;
    while (!signal.aborted) {
      try {
        await this.#leadOnce(ctx);
      } catch (err) {
        if (signal.aborted) break;
        const message = (err as Error).message;
        ctx.health(/invalidated/.test(message) ? "failed" : "degraded", message);
        ctx.logger.warn({ err: message, slot: this.#o.slot }, "change stream stopped; retrying");
      }
      this.#role = "standby";
      this.#lagBytes = undefined;
      await sleep(standbyRetryMs, signal);
    }
  }

  /** One attempt: take the lock or return; set up; stream until the connection or the lock is lost. */
  async #leadOnce(ctx: SourceContext): Promise<void> {
    const { default: pgModule } = await import("pg");
    const control = new pgModule.Client({ connectionString: this.#o.url });
    let lost: Error | undefined;
    control.on("error", (err) => {
      lost = err;
      void this.#stream?.stop();
    });
    await control.connect();
    try {
      const locked = await control.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok", [`sluice.pg-changes:${this.#o.slot}`]);
      if (!locked.rows[0]!.ok) {
        if (this.#role !== "standby") ctx.health("ok", `standby: another node streams slot ${this.#o.slot}`);
        this.#role = "standby";
        return;
      }
      this.#role = "leader";
      await ensurePublication(control, this.#o);
      const startLsn = await this.#ensureSlot(ctx, pgModule, control);
      this.#confirmedLsn = startLsn;
      await this.#streamFrom(ctx, control, startLsn, () => lost);
    } finally {
      await control.end().catch(() => undefined);
    }
  }

  async #ensureSlot(ctx: SourceContext, pgModule: typeof pg, control: pg.Client): Promise<string> {
    const now = () => ({ now: Date.now() });
    const recorded = await ctx.state.get(stateNamespace, this.#o.slot, now());
    const state = recorded === undefined ? undefined : (JSON.parse(recorded) as SlotState);
    let slot = await readSlot(control, this.#o.slot);
    if (slot?.walStatus === "lost") throw invalidated(this.#o.slot);
    if (slot && this.#o.snapshot && state?.snapshot !== "done") {
      // A snapshot that did not finish (the node died while reading it) starts over from a new slot.
      ctx.logger.warn({ slot: this.#o.slot }, "initial snapshot did not finish; recreating the slot and reading it again");
      await dropSlot(control, this.#o.slot);
      slot = undefined;
    }
    if (slot) return slot.confirmedLsn;
    ctx.health("degraded", this.#o.snapshot ? "reading the initial snapshot" : "creating the replication slot");
    await ctx.state.put(stateNamespace, this.#o.slot, JSON.stringify({ consistentPoint: "", snapshot: this.#o.snapshot ? "pending" : "none" }), now());
    const point = await createSlot(
      pgModule,
      this.#o,
      this.#sourceId,
      this.#o.snapshot
        ? async (events) => {
            await this.#publish(ctx, events);
            this.#snapshotRows += events.length;
          }
        : undefined,
    );
    await ctx.state.put(stateNamespace, this.#o.slot, JSON.stringify({ consistentPoint: point, snapshot: this.#o.snapshot ? "done" : "none" }), now());
    ctx.logger.info({ slot: this.#o.slot, consistentPoint: point, snapshotRows: this.#snapshotRows }, "replication slot created");
    return point;
  }

  async #streamFrom(ctx: SourceContext, control: pg.Client, startLsn: string, lost: () => Error | undefined): Promise<void> {
    const stream = new ChangeStream({
      url: this.#o.url,
      slot: this.#o.slot,
      publication: this.#o.publication,
      sourceId: this.#sourceId,
      statusIntervalMs: this.#o.statusIntervalMs,
      startLsn,
      publish: (events) => this.#publish(ctx, events),
      onPublishError: (err) => ctx.health("degraded", `publishing changes: ${(err as Error).message}`),
      onPublished: () => this.#healthy(ctx),
      signal: this.#closing.signal,
    });
    this.#stream = stream;
    const watch = this.#watch(ctx, control, stream);
    try {
      this.#healthy(ctx);
      ctx.logger.info({ slot: this.#o.slot, from: startLsn }, "streaming changes");
      await stream.run();
      const err = lost();
      if (err) throw err;
    } finally {
      await stream.stop();
      watch.stop();
      this.#published += stream.published;
      this.#confirmedLsn = stream.confirmedLsn;
      this.#stream = undefined;
    }
  }

  /** Heartbeats and slot checks while streaming. */
  #watch(ctx: SourceContext, control: pg.Client, stream: ChangeStream): { stop(): void } {
    let lastHeartbeat = Date.now();
    let heartbeatWarned = false;
    let ticking = false;
    const tick = async () => {
      // One check at a time on the control connection, however slow the server answers.
      if (ticking) return;
      ticking = true;
      try {
        if (Date.now() - lastHeartbeat >= this.#o.heartbeatMs) {
          lastHeartbeat = Date.now();
          await control.query("SELECT pg_logical_emit_message(false, 'sluice.heartbeat', '')").catch((err: Error) => {
            if (!heartbeatWarned) ctx.logger.warn({ err: err.message }, "heartbeat message failed (the role needs REPLICATION); an idle slot may lag");
            heartbeatWarned = true;
          });
        }
        const slot = await readSlot(control, this.#o.slot);
        if (!slot) throw new Error(`replication slot ${this.#o.slot} was dropped while streaming`);
        if (slot.walStatus === "lost") throw invalidated(this.#o.slot);
        this.#lagBytes = slot.lagBytes;
        this.#healthy(ctx);
      } catch (err) {
        ctx.health(/invalidated/.test((err as Error).message) ? "failed" : "degraded", (err as Error).message);
        void stream.stop();
      } finally {
        ticking = false;
      }
    };
    const timer = setInterval(() => void tick(), Math.max(this.#o.statusIntervalMs, 200));
    timer.unref();
    return { stop: () => clearInterval(timer) };
  }

  #healthy(ctx: SourceContext): void {
    if (this.#lagBytes !== undefined && this.#lagBytes > this.#o.lagWarnBytes) {
      ctx.health("degraded", `slot ${this.#o.slot} lags ${this.#lagBytes} bytes (over lagWarnBytes ${this.#o.lagWarnBytes}): WAL is retained until it catches up`);
    } else {
      ctx.health("ok", `streaming slot ${this.#o.slot}`);
    }
  }

  /**
   * Publishes in chunks of 100 (one publish call each), all in flight at once: a store commits the calls of one
   * process in the order they were made, so the events keep their order, and the round trips overlap.
   */
  async #publish(ctx: SourceContext, events: ChangeEvent[]): Promise<void> {
    const chunks: ChangeEvent[][] = [];
    for (let i = 0; i < events.length; i += 100) chunks.push(events.slice(i, i + 100));
    const results = await Promise.all(chunks.map((chunk) => ctx.publish(this.#o.bus, chunk)));
    for (const out of results) {
      const err = publishError(out);
      if (err) throw err;
    }
  }
}

function invalidated(slot: string): Error {
  return new Error(
    `replication slot ${slot} was invalidated by PostgreSQL (WAL it needed was removed, see max_slot_wal_keep_size): ` +
      `changes since its last confirmed position are lost; drop it (SELECT pg_drop_replication_slot('${slot}')) and restart with snapshot: true to read the tables again`,
  );
}
