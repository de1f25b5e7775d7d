/**
 * Consumes one RabbitMQ queue into a bus (see kind.ts). Several nodes consuming the same queue are competing
 * consumers. A delivery is acknowledged after its event is durable or it is dead-lettered; `prefetch` bounds
 * what is unacknowledged, so a bus under back-pressure stops the flow. On any connection or channel loss the
 * source reconnects with backoff and declares its topology again; what was unacknowledged is redelivered by
 * the broker, and an AMQP `message-id` keeps the event id the same so the bus dedupes it.
 */
import type { Channel, ChannelModel, ConsumeMessage } from "amqplib";
import { connectLoop, Link } from "../broker/backoff.ts";
import { Intake, IntakeStopped } from "../broker/intake.ts";
import { publicUrl } from "../broker/options.ts";
import type { EventSource, SourceContext } from "../source.ts";
import { readAmqpHeaders } from "./headers.ts";
import type { AmqpSourceOptions } from "./kind.ts";

const lagEveryMs = 5000;

export class AmqpSource implements EventSource {
  readonly kind = "amqp";
  readonly #stop = new AbortController();
  #connection: ChannelModel | undefined;
  #loop: Promise<void> | undefined;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #link = new Link();

  constructor(
    readonly name: string,
    readonly options: AmqpSourceOptions,
  ) {}

  async start(ctx: SourceContext): Promise<void> {
    const amqp = await import("amqplib");
    const o = this.options;
    const signal = AbortSignal.any([ctx.signal, this.#stop.signal]);
    const intake = new Intake({ ...ctx, signal }, { bus: o.bus, ...(o.maxEventBytes === undefined ? {} : { maxEventBytes: o.maxEventBytes }) });
    const source = `${publicUrl(o.url)}/${encodeURIComponent(o.queue)}`;
    ctx.health("degraded", "connecting");

    const handle = async (channel: Channel, msg: ConsumeMessage) => {
      const p = msg.properties;
      const headers = readAmqpHeaders(p.headers as Record<string, unknown> | undefined);
      const extensions: Record<string, unknown> = { ...headers };
      if (typeof p.correlationId === "string") extensions.correlationid = p.correlationId;
      const attributes = { queue: o.queue, exchange: msg.fields.exchange, routingKey: msg.fields.routingKey, messageId: p.messageId, redelivered: msg.fields.redelivered };
      try {
        await intake.accept(
          { headers, body: msg.content, contentType: typeof p.contentType === "string" ? p.contentType : undefined },
          { id: typeof p.messageId === "string" && p.messageId !== "" ? p.messageId : undefined, source, type: o.type, subject: msg.fields.routingKey, extensions },
          attributes,
        );
        channel.ack(msg);
        if (this.#link.connected) ctx.health("ok");
      } catch (err) {
        if (err instanceof IntakeStopped) return; // unacknowledged: redelivered to another consumer or after restart
        ctx.count("error");
        ctx.logger.error({ err, ...attributes }, "amqp message not taken; it stays unacknowledged");
      }
    };

    const connect = async (): Promise<{ ended: Promise<unknown> }> => {
      const connection = await amqp.connect(o.url, { clientProperties: { connection_name: `sluice source ${this.name}` } });
      this.#connection = connection;
      const ended = new Promise((resolve) => {
        connection.on("close", resolve);
        connection.on("error", () => undefined); // "close" follows
      });
      try {
        const channel = await connection.createChannel();
        channel.on("error", () => undefined);
        channel.on("close", () => void connection.close().catch(() => undefined));
        if (o.declare) await channel.assertQueue(o.queue, { durable: true });
        if (o.exchange !== undefined) {
          await channel.assertExchange(o.exchange, "topic", { durable: true });
          for (const k of o.bindingKeys) await channel.bindQueue(o.queue, o.exchange, k);
        }
        await channel.prefetch(o.prefetch);
        await channel.consume(o.queue, (msg) => {
          if (msg === null) return void connection.close().catch(() => undefined); // the queue was deleted: reconnect
          const p = handle(channel, msg);
          this.#inFlight.add(p);
          void p.finally(() => this.#inFlight.delete(p));
        });
        const lag = setInterval(() => {
          channel.checkQueue(o.queue).then((q) => ctx.lag(q.messageCount), () => undefined);
        }, lagEveryMs);
        lag.unref();
        void ended.finally(() => clearInterval(lag));
        channel.checkQueue(o.queue).then((q) => ctx.lag(q.messageCount), () => undefined);
      } catch (err) {
        await connection.close().catch(() => undefined);
        throw err;
      }
      return { ended };
    };

    this.#loop = connectLoop({
      signal,
      connect,
      link: this.#link,
      ctx,
    });
  }

  describe(): Record<string, unknown> {
    return { connected: this.#link.connected, queue: this.options.queue, url: publicUrl(this.options.url), inFlight: this.#inFlight.size, reconnects: this.#link.reconnects };
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled([...this.#inFlight]);
    await this.#connection?.close().catch(() => undefined);
    await this.#loop;
  }
}
