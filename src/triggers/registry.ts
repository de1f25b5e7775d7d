/** The source kinds a config may name. A new kind is one line here (and its folder next to this file). */
import { kindRegistry } from "../util/registry.ts";
import { pgOutboxSource, sqliteOutboxSource } from "./outbox/kind.ts";
import { pgChangesSource } from "./pg-changes/kind.ts";
import { amqpSource } from "./amqp/kind.ts";
import { mqttSource } from "./mqtt/kind.ts";
import { natsSource } from "./nats/kind.ts";
import { redisStreamSource } from "./redis-stream/kind.ts";
import { scheduleSource } from "./schedule/kind.ts";
import { webhookSource } from "./webhook/kind.ts";
import type { SourceKind } from "./source.ts";

export const builtinSources: readonly SourceKind[] = [
  scheduleSource,
  amqpSource,
  mqttSource,
  natsSource,
  redisStreamSource,
  webhookSource,
  pgChangesSource,
  pgOutboxSource,
  sqliteOutboxSource,
];

/** The built-in kinds plus `extra` ones; a duplicate kind is E_CONFIG_INVALID. */
export function sourceRegistry(extra: readonly SourceKind[] = []): ReadonlyMap<string, SourceKind> {
  return kindRegistry("source", [...builtinSources, ...extra]);
}
