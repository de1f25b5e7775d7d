/**
 * Consumes a Redis stream through a consumer group (see kind.ts). Nodes sharing the group are competing
 * consumers; entries are acknowledged (XACK) after their events are durable or they are dead-lettered. A node
 * first re-reads its own pending entries, and every `claimIdleMs / 2` claims entries another consumer left
 * pending that long (XAUTOCLAIM): a node that died no longer holds them. The entry id is the event id, so a
 * re-read entry dedupes in the bus. On a lost connection the source reconnects with backoff and creates the
 * group again if it is gone.
 */
import type { Redis } from "ioredis";
import { connectLoop, Link } from "../broker/backoff.ts";
import { Intake, IntakeStopped } from "../broker/intake.ts";
import { publicUrl } from "../broker/options.ts";
import type { EventSource, SourceContext } from "../source.ts";
import { entryFields, entryMessage } from "./entry.ts";
import type { RedisStreamSourceOptions } from "./kind.ts";

type Entry = [Buffer, Buffer[] | null];
const lagEveryMs = 5000;

export class RedisStreamSource implements EventSource {
  readonly kind = "redis-stream";
  readonly #stop = new AbortController();
  #client: Redis | undefined;
  #loop: Promise<void> | undefined;
  readonly #link = new Link();
  #claimed = 0;
  #consumer = "";

  constructor(
    readonly name: string,
    readonly options: RedisStreamSourceOptions,
  ) {}

  async start(ctx: SourceContext): Promise<void> {
    const { Redis } = await import("ioredis");
    const o = this.options;
    const signal = AbortSignal.any([ctx.signal, this.#stop.signal]);
    const intake = new Intake({ ...ctx, signal }, { bus: o.bus, ...(o.maxEventBytes === undefined ? {} : { maxEventBytes: o.maxEventBytes }) });
    const source = `${publicUrl(o.url)}/${encodeURIComponent(o.stream)}`;
    const consumer = (this.#consumer = o.consumer ?? ctx.nodeId);
    ctx.health("degraded", "connecting");

    /** Takes entries into the bus and acknowledges the ones that are durable; false once the source stops. */
    const take = async (client: Redis, entries: Entry[]): Promise<boolean> => {
      const done: Buffer[] = [];
      let stopped = false;
      await Promise.all(
        entries.map(async ([idBuf, flat]) => {
          const id = idBuf.toString();
          if (flat === null) return void done.push(idBuf); // deleted from the stream while pending
          const { message, extensions } = entryMessage(entryFields(flat));
          try {
            await intake.accept(message, { id, source, type: o.type, extensions }, { stream: o.stream, group: o.group, entryId: id });
            done.push(idBuf);
          } catch (err) {
            if (err instanceof IntakeStopped) stopped = true;
            else ctx.logger.error({ err, entryId: id }, "stream entry not taken; it stays pending");
          }
        }),
      );
      if (done.length > 0) await client.xack(o.stream, o.group, ...done);
      if (!stopped && signal.aborted === false) ctx.health("ok");
      return !stopped;
    };

    const run = async (client: Redis): Promise<void> => {
      // Own pending entries first (a restart with the same consumer name).
      for (let after = "0"; !signal.aborted; ) {
        const res = (await client.callBuffer("XREADGROUP", "GROUP", o.group, consumer, "COUNT", o.count, "STREAMS", o.stream, after)) as [Buffer, Entry[]][] | null;
        const entries = res?.[0]?.[1] ?? [];
        if (entries.length === 0) break;
        if (!(await take(client, entries))) return;
        after = (entries[entries.length - 1] as Entry)[0].toString();
      }
      let nextClaim = 0;
      let nextLag = 0;
      while (!signal.aborted) {
        const now = Date.now();
        if (now >= nextLag) {
          nextLag = now + lagEveryMs;
          void this.#readLag(client, ctx);
        }
        if (now >= nextClaim) {
          nextClaim = now + o.claimIdleMs / 2;
          for (let cursor = "0-0"; ; ) {
            const [next, claimed, deleted] = (await client.callBuffer("XAUTOCLAIM", o.stream, o.group, consumer, o.claimIdleMs, cursor, "COUNT", o.count)) as [Buffer, Entry[], Buffer[]?];
            if (deleted && deleted.length > 0) await client.xack(o.stream, o.group, ...deleted);
            if (claimed.length > 0) {
              this.#claimed += claimed.length;
              ctx.logger.info({ claimed: claimed.length }, "claimed entries another consumer left pending");
              if (!(await take(client, claimed))) return;
            }
            cursor = next.toString();
            if (cursor === "0-0") break;
          }
        }
        const res = (await client.callBuffer("XREADGROUP", "GROUP", o.group, consumer, "COUNT", o.count, "BLOCK", 1000, "STREAMS", o.stream, ">")) as [Buffer, Entry[]][] | null;
        const entries = res?.[0]?.[1] ?? [];
        if (entries.length > 0 && !(await take(client, entries))) return;
      }
    };

    this.#loop = connectLoop({
      signal,
      connect: async () => {
        const client = new Redis(o.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, connectionName: `sluice:${this.name}:${consumer}`.replace(/[^!-~]/g, "_") });
        client.on("error", () => undefined); // surfaced by the failing command
        this.#client = client;
        try {
          await client.connect();
          await client.xgroup("CREATE", o.stream, o.group, o.start, "MKSTREAM").catch((err: Error) => {
            if (!/BUSYGROUP/.test(err.message)) throw err;
          });
        } catch (err) {
          client.disconnect();
          throw err;
        }
        const ended = run(client).finally(() => client.disconnect());
        return { ended };
      },
      link: this.#link,
      ctx,
    });
  }

  async #readLag(client: Redis, ctx: SourceContext): Promise<void> {
    try {
      const groups = (await client.xinfo("GROUPS", this.options.stream)) as unknown[][];
      for (const g of groups) {
        const info = new Map<string, unknown>();
        for (let i = 0; i + 1 < g.length; i += 2) info.set(String(g[i]), g[i + 1]);
        if (info.get("name") === this.options.group) {
          const lag = info.get("lag");
          ctx.lag(typeof lag === "number" ? lag : undefined);
        }
      }
    } catch {
      // lag is best effort; the read loop reports real failures
    }
  }

  describe(): Record<string, unknown> {
    const o = this.options;
    return { connected: this.#link.connected, url: publicUrl(o.url), stream: o.stream, group: o.group, consumer: this.#consumer, claimed: this.#claimed, reconnects: this.#link.reconnects };
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    this.#client?.disconnect();
  }
}
