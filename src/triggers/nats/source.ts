/**
 * Consumes a JetStream stream through one durable pull consumer (see kind.ts). Every node binds the same
 * durable, so they share the work; a message is acked after its event is durable or it is dead-lettered, and
 * `maxAckPending` bounds what is in flight (a bus under back-pressure stops the flow). Binary-mode CloudEvents
 * (`ce-*` headers) and structured ones (`content-type: application/cloudevents+json`) are read by the NATS
 * binding; other messages are wrapped with the stream sequence as id, so a redelivery dedupes in the bus.
 * The client reconnects by itself; when the connection closes or the consumer vanishes, the source connects
 * again with backoff and declares stream and consumer again.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { JsMsg } from "@nats-io/jetstream";
import { connectLoop, Link } from "../broker/backoff.ts";
import { Intake, IntakeStopped } from "../broker/intake.ts";
import { publicUrl } from "../broker/options.ts";
import type { EventSource, SourceContext } from "../source.ts";
import type { NatsSourceOptions } from "./kind.ts";

export class NatsSource implements EventSource {
  readonly kind = "nats";
  readonly #stop = new AbortController();
  #nc: NatsConnection | undefined;
  #loop: Promise<void> | undefined;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #link = new Link();

  constructor(
    readonly name: string,
    readonly options: NatsSourceOptions,
  ) {}

  async start(ctx: SourceContext): Promise<void> {
    const { connect, nanos } = await import("@nats-io/transport-node");
    const { jetstream, jetstreamManager, AckPolicy, DeliverPolicy } = await import("@nats-io/jetstream");
    const o = this.options;
    const signal = AbortSignal.any([ctx.signal, this.#stop.signal]);
    const intake = new Intake({ ...ctx, signal }, { bus: o.bus, ...(o.maxEventBytes === undefined ? {} : { maxEventBytes: o.maxEventBytes }) });
    const u = new URL(o.url);
    const source = `${publicUrl(o.url)}/${encodeURIComponent(o.stream)}`;
    ctx.health("degraded", "connecting");

    const handle = async (m: JsMsg) => {
      const headers: Record<string, string> = {};
      let contentType: string | undefined;
      if (m.headers) {
        for (const k of m.headers.keys()) {
          const v = m.headers.get(k);
          if (k.toLowerCase() === "content-type") contentType = v;
          else headers[k.toLowerCase().startsWith("ce-") ? k.toLowerCase() : k] = v;
        }
      }
      const attributes = { stream: o.stream, subject: m.subject, seq: m.seq, redelivered: m.redelivered };
      try {
        await intake.accept(
          { headers, body: Buffer.from(m.data), contentType },
          { id: `${o.stream}-${m.seq}`, source, type: o.type, subject: m.subject, extensions: headers },
          attributes,
        );
        m.ack();
        ctx.lag(m.info.pending);
        if (this.#link.connected) ctx.health("ok");
      } catch (err) {
        if (err instanceof IntakeStopped) return void m.nak();
        ctx.count("error");
        ctx.logger.error({ err, ...attributes }, "nats message not taken; it is redelivered after ackWait");
      }
    };

    const connectOnce = async () => {
      const nc = await connect({
        servers: `${u.hostname}:${u.port || 4222}`,
        ...(u.username ? { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } : {}),
        name: `sluice source ${this.name}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
      });
      this.#nc = nc;
      try {
        const jsm = await jetstreamManager(nc);
        try {
          await jsm.streams.info(o.stream);
        } catch (err) {
          if (!o.createStream || !/not found/i.test((err as Error).message)) throw err;
          await jsm.streams.add({ name: o.stream, subjects: [o.subject] });
        }
        const config = { ack_policy: AckPolicy.Explicit, filter_subject: o.subject, max_ack_pending: o.maxAckPending, ack_wait: nanos(o.ackWaitMs) };
        try {
          await jsm.consumers.info(o.stream, o.durable);
          await jsm.consumers.update(o.stream, o.durable, config);
        } catch (err) {
          if (!/not found/i.test((err as Error).message)) throw err;
          await jsm.consumers.add(o.stream, { ...config, durable_name: o.durable, deliver_policy: DeliverPolicy.All });
        }
        const consumer = await jetstream(nc).consumers.get(o.stream, o.durable);
        const messages = await consumer.consume({ max_messages: Math.min(o.maxAckPending, 1000) });
        void (async () => {
          for await (const s of nc.status()) {
            if (s.type === "disconnect") {
              this.#link.connected = false;
              ctx.health("degraded", "disconnected; the client reconnects");
            } else if (s.type === "reconnect") {
              this.#link.connected = true;
              this.#link.reconnects++;
              ctx.health("ok");
            }
          }
        })();
        const consuming = (async () => {
          for await (const m of messages) {
            const p = handle(m);
            this.#inFlight.add(p);
            void p.finally(() => this.#inFlight.delete(p));
            // JetStream keeps at most maxAckPending unacked; wait here too so the iterator's buffer stays small.
            if (this.#inFlight.size >= o.maxAckPending) await Promise.race(this.#inFlight);
          }
        })();
        // The consumer's end (deleted, stream gone) ends this connection so that the loop declares both again.
        void consuming.finally(() => void nc.close().catch(() => undefined));
        return { ended: nc.closed() };
      } catch (err) {
        await nc.close().catch(() => undefined);
        throw err;
      }
    };

    this.#loop = connectLoop({
      signal,
      connect: connectOnce,
      link: this.#link,
      ctx,
    });
  }

  describe(): Record<string, unknown> {
    const o = this.options;
    return { connected: this.#link.connected, url: publicUrl(o.url), stream: o.stream, durable: o.durable, inFlight: this.#inFlight.size, reconnects: this.#link.reconnects };
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled([...this.#inFlight]);
    await this.#nc?.close().catch(() => undefined);
    await this.#loop;
  }
}
