/**
 * The amqp sink, `{ amqp: { url, exchange, routingKey? } }`: publishes the event to a RabbitMQ exchange in the
 * CloudEvents AMQP binding's binary mode (attributes as `cloudEvents_<attr>` headers, `datacontenttype` as
 * content type, the data as the body; persistent, message-id = event id) on a confirm channel. The delivery
 * is done when the broker confirms; a nack, a closed channel or a refused connection is retried. The routing
 * key defaults to the event's subject, else its type. The exchange must exist (`""` is the default exchange).
 */
import type { ChannelModel, ConfirmChannel } from "amqplib";
import { ErrorCode, SluiceError } from "../../../errors.ts";
import { toHttpBinary } from "../../../event/http.ts";
import type { TargetHandler } from "../target.ts";
import { ConnectionCache, SpecReader } from "./spec.ts";

export interface AmqpSinkSpec {
  url: string;
  exchange: string;
  routingKey?: string;
}

interface Open {
  connection: ChannelModel;
  channel: ConfirmChannel;
}

export const amqpTarget: TargetHandler<AmqpSinkSpec> = {
  kind: "amqp",
  compile(value, path) {
    const r = SpecReader.of("amqp", value, path, ["url", "exchange", "routingKey"], "{ url, exchange, routingKey? }");
    const url = r.url(["amqp:", "amqps:"]);
    const exchange = typeof r.value.exchange === "string" ? r.value.exchange : r.fail("exchange", 'must be a string ("" for the default exchange)');
    const routingKey = r.string("routingKey");
    return { url, exchange, ...(routingKey === undefined ? {} : { routingKey }) };
  },
  defaultId: (value) => `amqp-${String((value as { exchange?: unknown })?.exchange || "default")}`,
  open() {
    const cache = new ConnectionCache<Open>(
      async (url, drop) => {
        const amqp = await import("amqplib");
        const connection = await amqp.connect(url, { clientProperties: { connection_name: "sluice sink" } });
        connection.on("error", () => undefined);
        connection.on("close", drop);
        const channel = await connection.createConfirmChannel();
        channel.on("error", () => undefined);
        channel.on("close", () => {
          drop();
          void connection.close().catch(() => undefined);
        });
        return { connection, channel };
      },
      async ({ connection }) => connection.close(),
    );
    return {
      async deliver(spec, event) {
        const { channel } = await cache.get(spec.url);
        const { headers, body } = toHttpBinary(event);
        const amqpHeaders: Record<string, string> = {};
        let contentType: string | undefined;
        for (const [k, v] of Object.entries(headers)) {
          if (k === "content-type") contentType = v;
          else amqpHeaders[`cloudEvents_${k.slice(3)}`] = v;
        }
        const routingKey = spec.routingKey ?? (typeof event.subject === "string" ? event.subject : event.type);
        await new Promise<void>((resolve, reject) => {
          channel.publish(spec.exchange, routingKey, body, { persistent: true, messageId: event.id, headers: amqpHeaders, ...(contentType ? { contentType } : {}) }, (err) =>
            err ? reject(new SluiceError(ErrorCode.SinkFailed, `amqp broker did not confirm: ${String(err)}`, { retryable: true })) : resolve(),
          );
        });
      },
      close: () => cache.close(),
    };
  },
};
