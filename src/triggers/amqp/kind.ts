/**
 * The `amqp` source kind (RabbitMQ, AMQP 0-9-1):
 * `{ kind: "amqp", url: "amqp://guest:guest@127.0.0.1:5672", queue: "orders", type: "order.received" }`.
 * Options: `bus` (default `default`), `prefetch` (unacknowledged messages in flight, default 100), `exchange` and
 * `bindingKeys` (the queue is bound to that topic exchange, both declared durable), `declare` (default true:
 * declare the durable queue), `maxEventBytes`.
 */
import type { SourceKind } from "../source.ts";
import { OptionReader, type BrokerSourceOptions } from "../broker/options.ts";

export interface AmqpSourceOptions extends BrokerSourceOptions {
  queue: string;
  prefetch: number;
  exchange?: string;
  bindingKeys: string[];
  declare: boolean;
}

export const amqpSource: SourceKind<AmqpSourceOptions> = {
  kind: "amqp",
  validate(_name, options, key, problems) {
    const r = new OptionReader(options, key, problems);
    const common = r.common(["amqp:", "amqps:"], ["queue", "prefetch", "exchange", "bindingKeys", "declare"]);
    const queue = r.string("queue", true);
    const prefetch = r.int("prefetch", 1, 65_535) ?? 100;
    const exchange = r.string("exchange");
    const keys = options.bindingKeys ?? ["#"];
    if (!Array.isArray(keys) || keys.some((k) => typeof k !== "string")) r.problem("bindingKeys", "must be a list of routing key patterns");
    if (options.bindingKeys !== undefined && exchange === undefined) r.problem("bindingKeys", "needs exchange", "set exchange to the exchange to bind the queue to");
    const declare = r.bool("declare") ?? true;
    if (!r.ok || common === undefined || queue === undefined) return undefined;
    return { ...common, queue, prefetch, ...(exchange === undefined ? {} : { exchange }), bindingKeys: keys as string[], declare };
  },
  async create(name, options) {
    const { AmqpSource } = await import("./source.ts");
    return new AmqpSource(name, options);
  },
};
