/** The built-in target kinds. A new kind is one line here (and its file or folder next to this one). */
import { ErrorCode, SluiceError } from "../../errors.ts";
import { kindRegistry } from "../../util/registry.ts";
import { amqpTarget } from "./brokers/amqp.ts";
import { mqttTarget } from "./brokers/mqtt.ts";
import { natsTarget } from "./brokers/nats.ts";
import { redisStreamTarget } from "./brokers/redis-stream.ts";
import { remoteBusTarget } from "./brokers/remote-bus.ts";
import { busTarget } from "./bus.ts";
import { functionTarget } from "./function.ts";
import type { TargetHandler } from "./target.ts";
import { webhookTarget } from "./webhook.ts";

export const builtinTargets: readonly TargetHandler[] = [functionTarget, busTarget, webhookTarget, amqpTarget, natsTarget, mqttTarget, redisStreamTarget, remoteBusTarget];

/** The built-in kinds plus `extra` ones; a duplicate kind, or one named like a target field, is E_CONFIG_INVALID. */
export function targetRegistry(extra: readonly TargetHandler[] = []): ReadonlyMap<string, TargetHandler> {
  const kinds = kindRegistry("target", [...builtinTargets, ...extra]);
  if (kinds.has("id")) throw new SluiceError(ErrorCode.ConfigInvalid, 'target kind "id" would clash with the target field "id"');
  return kinds;
}
