/**
 * The mqtt sink, `{ mqtt: { url, topic, qos? } }`: the event in the MQTT 5 CloudEvents binding's binary mode
 * (attributes as user properties, `datacontenttype` as Content Type, the data as payload). With QoS 1 or 2
 * (default 1) the delivery is done on the broker's PUBACK/PUBCOMP; QoS 0 once written to the socket.
 */
import type { MqttClient } from "mqtt";
import { ErrorCode, SluiceError } from "../../../errors.ts";
import { toHttpBinary } from "../../../event/http.ts";
import type { TargetHandler } from "../target.ts";
import { ConnectionCache, SpecReader } from "./spec.ts";

export interface MqttSinkSpec {
  url: string;
  topic: string;
  qos: 0 | 1 | 2;
}

export const mqttTarget: TargetHandler<MqttSinkSpec> = {
  kind: "mqtt",
  compile(value, path) {
    const r = SpecReader.of("mqtt", value, path, ["url", "topic", "qos"], "{ url, topic, qos? }");
    const url = r.url(["mqtt:", "mqtts:", "ws:", "wss:"]);
    const topic = r.string("topic", true);
    if (/[+#]/.test(topic)) r.fail("topic", "must be a topic to publish to (no + or #)");
    const qos = (r.int("qos", 0, 2) ?? 1) as 0 | 1 | 2;
    return { url, topic, qos };
  },
  defaultId: (value) => `mqtt-${String((value as { topic?: unknown })?.topic ?? "").replace(/[^A-Za-z0-9._-]/g, "_")}`,
  open() {
    const cache = new ConnectionCache<MqttClient>(
      async (url, drop) => {
        const mqtt = await import("mqtt");
        const client = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 10_000 });
        client.on("close", drop);
        client.on("error", () => undefined);
        return client;
      },
      async (c) => void (await c.endAsync()),
    );
    return {
      async deliver(spec, event) {
        const client = await cache.get(spec.url);
        const { headers, body } = toHttpBinary(event);
        const userProperties: Record<string, string> = {};
        let contentType: string | undefined;
        for (const [k, v] of Object.entries(headers)) {
          if (k === "content-type") contentType = v;
          else userProperties[k.slice(3)] = decodeURIComponent(v);
        }
        try {
          await client.publishAsync(spec.topic, body, { qos: spec.qos, properties: { userProperties, ...(contentType ? { contentType } : {}) } });
        } catch (err) {
          cache.drop(spec.url);
          throw new SluiceError(ErrorCode.SinkFailed, `mqtt publish to ${spec.topic} failed: ${(err as Error).message}`, { retryable: true, cause: err });
        }
      },
      close: () => cache.close(),
    };
  },
};
