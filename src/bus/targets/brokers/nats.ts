/**
 * The nats sink, `{ nats: { url, subject } }`: the event in the NATS CloudEvents binding's binary mode (`ce-*`
 * headers, `content-type`, the data as payload). When the subject belongs to a JetStream stream the publish
 * waits for the stream's ack (msgID = event id, so a retried delivery dedupes in the stream); otherwise it is a
 * core publish, done once the server has it (flush).
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { JetStreamClient } from "@nats-io/jetstream";
import { ErrorCode, SluiceError } from "../../../errors.ts";
import { toHttpBinary } from "../../../event/http.ts";
import type { TargetHandler } from "../target.ts";
import { ConnectionCache, SpecReader } from "./spec.ts";

export interface NatsSinkSpec {
  url: string;
  subject: string;
}

export const natsTarget: TargetHandler<NatsSinkSpec> = {
  kind: "nats",
  compile(value, path) {
    const r = SpecReader.of("nats", value, path, ["url", "subject"], "{ url, subject }");
    const url = r.url(["nats:", "tls:"]);
    const subject = r.string("subject", true);
    if (/[\s*>]/.test(subject)) r.fail("subject", "must be a subject to publish to (no spaces, * or >)");
    return { url, subject };
  },
  defaultId: (value) => `nats-${String((value as { subject?: unknown })?.subject ?? "")}`,
  open() {
    const cache = new ConnectionCache<{ nc: NatsConnection; js: JetStreamClient; headers: typeof import("@nats-io/transport-node").headers }>(
      async (url, drop) => {
        const { connect, headers } = await import("@nats-io/transport-node");
        const { jetstream } = await import("@nats-io/jetstream");
        const u = new URL(url);
        const nc = await connect({ servers: `${u.hostname}:${u.port || 4222}`, name: "sluice sink", maxReconnectAttempts: -1, ...(u.username ? { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } : {}) });
        void nc.closed().then(drop);
        return { nc, js: jetstream(nc), headers };
      },
      async ({ nc }) => nc.close(),
    );
    return {
      async deliver(spec, event) {
        const { nc, js, headers } = await cache.get(spec.url);
        const msg = toHttpBinary(event);
        const h = headers();
        for (const [k, v] of Object.entries(msg.headers)) h.set(k, v);
        try {
          await js.publish(spec.subject, msg.body, { headers: h, msgID: event.id, timeout: 5000 });
        } catch (err) {
          // No stream listens on this subject: a core publish, confirmed by a round trip to the server.
          if ((err as { name?: string }).name === "NoRespondersError" || /no responders/i.test((err as Error).message) || /503/.test((err as Error).message)) {
            nc.publish(spec.subject, msg.body, { headers: h });
            await nc.flush();
            return;
          }
          throw new SluiceError(ErrorCode.SinkFailed, `nats publish to ${spec.subject} failed: ${(err as Error).message}`, { retryable: true, cause: err });
        }
      },
      close: () => cache.close(),
    };
  },
};
