/**
 * The `mqtt` source kind:
 * `{ kind: "mqtt", url: "mqtt://127.0.0.1:1883", topic: "sensors/+/temperature", qos: 1, type: "sensor.reading" }`.
 * Options: `bus`, `qos` (0, 1 or 2; default 1), `clientId` (stable, so the broker keeps the session while the
 * node is away: default `sluice-<source name>`; every node needs its own), `shared` (a shared-subscription
 * group: nodes subscribe to `$share/<shared>/<topic>` and split the messages), `protocolVersion` (5, default,
 * or 4 for MQTT 3.1.1), `maxEventBytes`.
 */
import type { SourceKind } from "../source.ts";
import { OptionReader, type BrokerSourceOptions } from "../broker/options.ts";

export interface MqttSourceOptions extends BrokerSourceOptions {
  topic: string;
  qos: 0 | 1 | 2;
  clientId: string;
  shared?: string;
  protocolVersion: 4 | 5;
}

export const mqttSource: SourceKind<MqttSourceOptions> = {
  kind: "mqtt",
  validate(name, options, key, problems) {
    const r = new OptionReader(options, key, problems);
    const common = r.common(["mqtt:", "mqtts:", "ws:", "wss:"], ["topic", "qos", "clientId", "shared", "protocolVersion"]);
    const topic = r.string("topic", true);
    const qos = r.int("qos", 0, 2) ?? 1;
    const clientId = r.string("clientId") ?? `sluice-${name}`;
    const shared = r.string("shared");
    if (shared !== undefined && /[/+#]/.test(shared)) r.problem("shared", "a share name has no /, + or #");
    const protocolVersion = options.protocolVersion ?? 5;
    if (protocolVersion !== 4 && protocolVersion !== 5) r.problem("protocolVersion", "must be 5 (MQTT 5) or 4 (MQTT 3.1.1)");
    if (!r.ok || common === undefined || topic === undefined) return undefined;
    return { ...common, topic, qos: qos as 0 | 1 | 2, clientId, ...(shared === undefined ? {} : { shared }), protocolVersion: protocolVersion as 4 | 5 };
  },
  async create(name, options) {
    const { MqttSource } = await import("./source.ts");
    return new MqttSource(name, options);
  },
};
