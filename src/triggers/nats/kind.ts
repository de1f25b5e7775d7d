/**
 * The `nats` source kind (JetStream):
 * `{ kind: "nats", url: "nats://127.0.0.1:4222", stream: "JOBS", subject: "jobs.>", type: "job.requested" }`.
 * Options: `bus`, `durable` (the durable pull consumer's name, default `sluice-<source name>`; nodes sharing it
 * are competing consumers), `maxAckPending` (in flight, default 1000), `ackWaitMs` (redelivery after, default
 * 30000), `createStream` (default true: a missing stream is created with `subject`), `maxEventBytes`.
 */
import type { SourceKind } from "../source.ts";
import { OptionReader, type BrokerSourceOptions } from "../broker/options.ts";

export interface NatsSourceOptions extends BrokerSourceOptions {
  stream: string;
  subject: string;
  durable: string;
  maxAckPending: number;
  ackWaitMs: number;
  createStream: boolean;
}

export const natsSource: SourceKind<NatsSourceOptions> = {
  kind: "nats",
  validate(name, options, key, problems) {
    const r = new OptionReader(options, key, problems);
    const common = r.common(["nats:", "tls:"], ["stream", "subject", "durable", "maxAckPending", "ackWaitMs", "createStream"]);
    const stream = r.string("stream", true);
    if (stream !== undefined && !/^[^\s.*>/\\]+$/.test(stream)) r.problem("stream", "a stream name has no spaces, dots, *, >, / or \\");
    const subject = r.string("subject", true);
    const durable = r.string("durable") ?? `sluice-${name}`.replace(/[^A-Za-z0-9_-]/g, "_");
    if (!/^[A-Za-z0-9_-]+$/.test(durable)) r.problem("durable", "a consumer name is letters, digits, _ and -");
    const maxAckPending = r.int("maxAckPending", 1, 100_000) ?? 1000;
    const ackWaitMs = r.int("ackWaitMs", 1000, 3_600_000) ?? 30_000;
    const createStream = r.bool("createStream") ?? true;
    if (!r.ok || common === undefined || stream === undefined || subject === undefined) return undefined;
    return { ...common, stream, subject, durable, maxAckPending, ackWaitMs, createStream };
  },
  async create(name, options) {
    const { NatsSource } = await import("./source.ts");
    return new NatsSource(name, options);
  },
};
