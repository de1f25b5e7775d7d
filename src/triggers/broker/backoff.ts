/**
 * Reconnecting with backoff. amqplib has no automatic recovery (amqp-node/amqplib#411) and a Redis consumer
 * group or a JetStream consumer may vanish with its server's state, so a broker source runs `connectLoop`: it
 * connects and declares its topology, runs until the connection ends, waits (exponential with jitter, reset
 * after a connection that lasted), and does it again until the source closes.
 */

import type { SourceContext } from "../source.ts";
import { sleep } from "../../util/sleep.ts";

/** A broker connection as `sluice status` shows it; `connectLoop` keeps it and the source's health. */
export class Link {
  connected = false;
  reconnects = 0;

  up(ctx: Pick<SourceContext, "health">): void {
    this.connected = true;
    ctx.health("ok");
  }

  down(ctx: Pick<SourceContext, "health" | "lag">, reason: string, retryInMs: number): void {
    this.connected = false;
    this.reconnects++;
    ctx.lag(undefined);
    ctx.health("degraded", `disconnected (${reason}); reconnecting in ${retryInMs} ms`);
  }
}

export interface ConnectLoopOptions {
  signal: AbortSignal;
  /** Connects and declares topology; resolves with `ended`, which settles when the connection ends. */
  connect(): Promise<{ ended: Promise<unknown> }>;
  link: Link;
  ctx: Pick<SourceContext, "health" | "lag">;
  minMs?: number;
  maxMs?: number;
  /** A connection that lasted this long resets the backoff. */
  stableMs?: number;
}

/** Runs until `signal` aborts; never rejects. */
export async function connectLoop(o: ConnectLoopOptions): Promise<void> {
  const min = o.minMs ?? 200;
  const max = o.maxMs ?? 10_000;
  let delay = min;
  while (!o.signal.aborted) {
    const started = Date.now();
    let reason: string;
    try {
      const { ended } = await o.connect();
      o.link.up(o.ctx);
      await ended;
      reason = "the connection closed";
    } catch (err) {
      reason = (err as Error)?.message ?? String(err);
    }
    if (o.signal.aborted) return;
    if (Date.now() - started > (o.stableMs ?? 5000)) delay = min;
    const wait = Math.round(delay * (0.5 + Math.random() / 2));
    o.link.down(o.ctx, reason, wait);
    await sleep(wait, o.signal);
    delay = Math.min(delay * 2, max);
  }
}
