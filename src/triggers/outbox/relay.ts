/**
 * The relay loop both outbox kinds share: read the oldest committed rows, publish them (durably), then delete
 * them. A relay killed between the publish and the delete publishes those rows again on restart; their events
 * keep the ids written at enqueue, so the bus dedupes them and consumers see each event once.
 */
import { publishError } from "../../bus/publish-error.ts";
import type { EventSource, SourceContext } from "../source.ts";
import type { OutboxOptions } from "./options.ts";
import { sleep } from "../../util/sleep.ts";

export interface OutboxRow {
  seq: string;
  event: string;
}

/** One database's side of the relay. */
export interface OutboxReader {
  /** Resolves once this relay may run (the PostgreSQL one waits for its lock); false when closing. */
  acquire(signal: AbortSignal): Promise<boolean>;
  /** The oldest committed rows, in commit order. */
  read(limit: number): Promise<OutboxRow[]>;
  delete(rows: OutboxRow[]): Promise<void>;
  /** Resolves at the next wakeup or after `ms`. */
  wait(ms: number, signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

export class OutboxRelay implements EventSource {
  #loop: Promise<void> | undefined;
  #closing = new AbortController();
  #published = 0;
  #role = "starting";

  constructor(
    readonly name: string,
    readonly kind: string,
    readonly options: OutboxOptions,
    readonly reader: () => Promise<OutboxReader>,
  ) {}

  async start(ctx: SourceContext): Promise<void> {
    ctx.signal.addEventListener("abort", () => this.#closing.abort(), { once: true });
    this.#loop = this.#run(ctx);
  }

  describe(): Record<string, unknown> {
    return { role: this.#role, table: this.options.table, published: this.#published };
  }

  async close(): Promise<void> {
    this.#closing.abort();
    await this.#loop;
  }

  async #run(ctx: SourceContext): Promise<void> {
    const signal = this.#closing.signal;
    while (!signal.aborted) {
      let reader: OutboxReader | undefined;
      try {
        reader = await this.reader();
        this.#role = "standby";
        if (!(await reader.acquire(signal))) continue;
        this.#role = "leader";
        ctx.health("ok", `relaying ${this.options.table}`);
        while (!signal.aborted) {
          const rows = await reader.read(this.options.batchSize);
          if (rows.length === 0) {
            await reader.wait(this.options.pollMs, signal);
            continue;
          }
          const err = publishError(await ctx.publish(this.options.bus, rows.map((r) => JSON.parse(r.event) as unknown)));
          if (err) throw err;
          await reader.delete(rows);
          this.#published += rows.length;
          ctx.health("ok", `relaying ${this.options.table}`);
        }
      } catch (err) {
        if (signal.aborted) break;
        ctx.health("degraded", `outbox ${this.options.table}: ${(err as Error).message}`);
        ctx.logger.warn({ err: (err as Error).message }, "outbox relay failed; retrying");
        await sleep(1_000, signal);
      } finally {
        await reader?.close().catch(() => undefined);
      }
    }
  }
}
