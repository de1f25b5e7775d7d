/**
 * Subscribes to an MQTT topic filter (see kind.ts) with a persistent session (`clean: false`, a stable client
 * id), so QoS 1/2 messages published while the node was away are delivered when it comes back. A message is
 * acknowledged (PUBACK/PUBCOMP) only after its event is durable or it is dead-lettered: the client takes the
 * next message only then, which bounds what is in flight and lets a bus under back-pressure stop the flow.
 * MQTT 5 messages in binary mode carry the CloudEvents attributes as user properties, and structured ones have
 * content type `application/cloudevents+json` (MQTT binding); MQTT 3.1.1 messages are structured when the
 * payload is a JSON object with `specversion`. Others are wrapped with the topic as subject. MQTT has no
 * message id that survives a redelivery, so wrapped messages get fresh ids (at least once, not deduped).
 */
import type { IPublishPacket, MqttClient } from "mqtt";
import { Intake, IntakeStopped } from "../broker/intake.ts";
import type { BrokerMessage } from "../broker/message.ts";
import { publicUrl } from "../broker/options.ts";
import type { EventSource, SourceContext } from "../source.ts";
import type { MqttSourceOptions } from "./kind.ts";

const attributeNames = new Set(["specversion", "id", "source", "type", "subject", "time", "dataschema"]);

function toMessage(packet: IPublishPacket, v4: boolean): { message: BrokerMessage; extensions: Record<string, string> } {
  const body = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
  const props = packet.properties ?? {};
  const user: Record<string, string> = {};
  for (const [k, v] of Object.entries(props.userProperties ?? {})) user[k] = Array.isArray(v) ? v.join(",") : String(v);
  let contentType = props.contentType;
  const headers: Record<string, string> = {};
  if (user.specversion !== undefined) {
    for (const [k, v] of Object.entries(user)) headers[`ce-${k.toLowerCase()}`] = v;
    return { message: { headers, body, contentType }, extensions: {} };
  }
  if (v4 && contentType === undefined && body[0] === 0x7b) {
    try {
      const parsed = JSON.parse(body.toString("utf8")) as { specversion?: unknown };
      if (typeof parsed.specversion === "string") contentType = "application/cloudevents+json";
    } catch {
      // not JSON: wrapped below
    }
  }
  const extensions: Record<string, string> = {};
  for (const [k, v] of Object.entries(user)) if (!attributeNames.has(k)) extensions[k] = v;
  return { message: { headers, body, contentType }, extensions };
}

export class MqttSource implements EventSource {
  readonly kind = "mqtt";
  readonly #stop = new AbortController();
  #client: MqttClient | undefined;
  #inFlight: Promise<void> | undefined;
  #connected = false;
  #reconnects = 0;

  constructor(
    readonly name: string,
    readonly options: MqttSourceOptions,
  ) {}

  async start(ctx: SourceContext): Promise<void> {
    const mqtt = await import("mqtt");
    const o = this.options;
    const signal = AbortSignal.any([ctx.signal, this.#stop.signal]);
    const intake = new Intake({ ...ctx, signal }, { bus: o.bus, ...(o.maxEventBytes === undefined ? {} : { maxEventBytes: o.maxEventBytes }) });
    const source = `${publicUrl(o.url)}/${o.topic}`;
    const filter = o.shared === undefined ? o.topic : `$share/${o.shared}/${o.topic}`;
    ctx.health("degraded", "connecting");
    const client = mqtt.connect(o.url, {
      clientId: o.clientId,
      clean: false,
      protocolVersion: o.protocolVersion,
      ...(o.protocolVersion === 5 ? { properties: { sessionExpiryInterval: 7 * 24 * 3600 } } : {}),
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      resubscribe: true,
    });
    this.#client = client;
    // The client acknowledges a message when this callback is called, and reads the next one only then.
    client.handleMessage = (packet, done) => {
      const { message, extensions } = toMessage(packet, o.protocolVersion === 4);
      const attributes = { topic: packet.topic, qos: packet.qos, retain: packet.retain, dup: packet.dup };
      const p = intake.accept(message, { source, type: o.type, subject: packet.topic, extensions }, attributes).then(
        () => {
          if (this.#connected) ctx.health("ok");
          done();
        },
        (err: unknown) => {
          // Stopping: no acknowledgement; the broker resends it to this session. Otherwise keep the session going.
          if (err instanceof IntakeStopped) return;
          ctx.count("error");
          ctx.logger.error({ err, ...attributes }, "mqtt message not taken");
          client.end(true); // unacknowledged: the session redelivers it after the reconnect below
          setTimeout(() => !signal.aborted && client.reconnect(), 1000).unref();
        },
      );
      this.#inFlight = p;
    };
    client.on("connect", (ack) => {
      // A broker that lost the session (or a first connect) needs the subscription again.
      if (!ack.sessionPresent || this.#reconnects === 0) {
        client.subscribe(filter, { qos: o.qos }, (err) => {
          if (err) ctx.health("degraded", `subscribe ${filter} failed: ${err.message}`);
        });
      }
      this.#connected = true;
      ctx.health("ok");
    });
    client.on("reconnect", () => void this.#reconnects++);
    client.on("close", () => {
      if (signal.aborted) return;
      this.#connected = false;
      ctx.health("degraded", "disconnected; reconnecting");
    });
    client.on("error", (err) => ctx.health("degraded", err.message));
  }

  describe(): Record<string, unknown> {
    const o = this.options;
    return { connected: this.#connected, url: publicUrl(o.url), topic: o.topic, clientId: o.clientId, ...(o.shared ? { shared: o.shared } : {}), reconnects: this.#reconnects };
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#inFlight?.catch(() => undefined);
    await this.#client?.endAsync(false).catch(() => undefined);
  }
}
