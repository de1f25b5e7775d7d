/**
 * Runs the app's event sources: gives each its context (durable publish, invoke, health, the shared state, an
 * abort signal, the HTTP port), keeps what each reported, and closes them in reverse order.
 */
import type { FastifyInstance } from "fastify";
import type { PublishResult } from "../bus/types.ts";
import type { NormalizedEvent } from "../event/normalize.ts";
import type { CloudEvent } from "../event/types.ts";
import type { Logger } from "../logger.ts";
import type { StateStore } from "../store/contract.ts";
import { ScheduleSource } from "../triggers/schedule/source.ts";
import type { ScheduleStatus } from "../triggers/schedules.ts";
import type { EventSource, RejectedMessage, SourceContext, SourceOutcome, SourceStatus } from "../triggers/source.ts";

/** One source as `GET /admin/sources` lists it. */
export interface SourceInfo {
  name: string;
  kind: string;
  status: SourceStatus;
  detail?: string;
  /** When the status last changed (epoch ms). */
  since: number;
  /** Events it published that the bus stored (duplicates not counted). */
  published: number;
  /** Messages taken from outside by outcome (stored, duplicate, dead-lettered, error). */
  messages: Record<SourceOutcome, number>;
  /** Messages waiting upstream, where the broker reports it. */
  lag?: number;
  details?: Record<string, unknown>;
}

export interface SourceRunnerOptions {
  publish(bus: string, events: unknown[]): Promise<PublishResult>;
  publishNormalized(bus: string, events: NormalizedEvent[]): Promise<PublishResult>;
  invoke(functionName: string, event: CloudEvent): Promise<unknown>;
  /** Called with how many events a publish stored (metrics). */
  onPublished(bus: string, stored: number): void;
  /** Called per counted message outcome (metrics). */
  onMessages?(source: string, outcome: SourceOutcome, n: number): void;
  /** Keeps a refused message in the dead-letter list of `source:<source>`. */
  deadLetter(source: string, message: RejectedMessage): Promise<void>;
  state: StateStore;
  logger: Logger;
  nodeId: string;
  /** The HTTP server sources mount routes on; set before the first source starts. */
  http(): FastifyInstance;
}

export interface SourceRunner {
  /** Starts one source; a source whose start throws is `failed` and the error is thrown (the server does not start). */
  start(source: EventSource): Promise<void>;
  list(): SourceInfo[];
  /** Every schedule of every schedule source. */
  schedules(): ScheduleStatus[];
  /** Tells sources to stop taking work (the server is shutting down). */
  abort(): void;
  /** Closes every source, last started first. Idempotent. */
  close(): Promise<void>;
}

export function createSourceRunner(options: SourceRunnerOptions): SourceRunner {
  const running: { source: EventSource; info: SourceInfo }[] = [];
  const stopping = new AbortController();
  let closed = false;

  const stored = (out: PublishResult) => out.entries.filter((e) => !("errorCode" in e) && !e.duplicate).length;

  return {
    async start(source) {
      const info: SourceInfo = {
        name: source.name,
        kind: source.kind,
        status: "starting",
        since: Date.now(),
        published: 0,
        messages: { stored: 0, duplicate: 0, "dead-lettered": 0, error: 0 },
      };
      const logger = options.logger.child({ source: source.name, kind: source.kind });
      running.push({ source, info });
      const counted = (bus: string, out: PublishResult) => {
        const n = stored(out);
        info.published += n;
        options.onPublished(bus, n);
        return out;
      };
      const ctx: SourceContext = {
        publish: async (bus, events) => counted(bus, await options.publish(bus, events)),
        publishNormalized: async (bus, events) => counted(bus, await options.publishNormalized(bus, events)),
        invoke: (fn, event) => options.invoke(fn, event),
        deadLetter: (message) => options.deadLetter(source.name, message),
        count(outcome, n = 1) {
          info.messages[outcome] += n;
          options.onMessages?.(source.name, outcome, n);
        },
        lag(messages) {
          if (messages === undefined) delete info.lag;
          else info.lag = messages;
        },
        health(status, detail) {
          if (status === info.status && detail === info.detail) return;
          if (status !== "ok") logger.warn({ status, detail }, "source health changed");
          else if (info.status !== "starting") logger.info({ status }, "source health changed");
          info.status = status;
          info.since = Date.now();
          if (detail === undefined) delete info.detail;
          else info.detail = detail;
        },
        state: options.state,
        logger,
        nodeId: options.nodeId,
        signal: stopping.signal,
        http: { register: (plugin) => void options.http().register(plugin) },
      };
      try {
        await source.start(ctx);
      } catch (err) {
        ctx.health("failed", (err as Error).message);
        throw err;
      }
    },
    list: () => running.map(({ source, info }) => ({ ...info, messages: { ...info.messages }, ...(source.describe ? { details: source.describe() } : {}) })),
    schedules: () => running.flatMap(({ source }) => (source instanceof ScheduleSource ? source.status() : [])),
    abort: () => stopping.abort(),
    async close() {
      if (closed) return;
      closed = true;
      stopping.abort();
      for (const { source, info } of [...running].reverse()) {
        await source.close().catch((err: unknown) => options.logger.error({ err, source: source.name }, "source close failed"));
        info.status = "stopped";
        info.since = Date.now();
      }
    },
  };
}
