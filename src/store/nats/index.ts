/**
 * The NATS JetStream backend, for deployments that scale out on an existing NATS cluster. Per deployment:
 * three streams (events, deliveries as a work queue, dead letters), two KV buckets (state, per-delivery
 * bookkeeping) and one durable pull consumer per queue, i.e. per (rule, target). See docs/nats.md.
 *
 * `@nats-io/*` is loaded with `await import()` when a store opens, so importing the package never loads it.
 */
import { readFile } from "node:fs/promises";
import type { StorageBackend, StoreCapabilities } from "../contract.ts";
import { WorkSignal } from "../work-signal.ts";
import { NatsQueueAdmin } from "./admin.ts";
import { Consumers } from "./consumers.ts";
import { nanos, type NatsContext } from "./context.ts";
import { NatsDeliveryQueues } from "./deliveries.ts";
import { NatsEventLog } from "./event-log.ts";
import { Gate, natsError } from "./gate.ts";
import { namesFor } from "./names.ts";
import { checkNatsOptions, type NatsStoreOptions } from "./options.ts";
import { NatsStateStore } from "./state.ts";

export type { NatsStoreOptions } from "./options.ts";
export { parseNatsUrl } from "./options.ts";

const capabilities: StoreCapabilities = {
  appendAndLease: false,
  callerClock: false,
  leaseJoinsAppend: false,
  atomicFanOut: false,
  nativeKeyOrder: false,
  exactStats: false,
};

/** The duplicate window streams start with, before a declaration or an append asks for a longer one. */
const initialWindowMs = 120_000;
/** Per-delivery bookkeeping left by a node that died mid-settle expires after this. */
const metaMaxAgeMs = 14 * 24 * 3600_000;

export interface NatsStore extends StorageBackend {
  readonly kind: "nats";
  readonly deployment: string;
  /** How often a queue's consumer was found at `max_ack_pending` (deliveries stall until acks catch up). */
  readonly ackPendingCapHits: ReadonlyMap<string, number>;
  /** Deletes every stream and bucket of the deployment (tests, decommissioning). */
  destroy(): Promise<void>;
}

export async function createNatsStore(options: NatsStoreOptions & { onWarning?: (fields: Record<string, unknown>, msg: string) => void }): Promise<NatsStore> {
  const checked = checkNatsOptions(options);
  const { connect, credsAuthenticator } = await import("@nats-io/transport-node");
  const { jetstream, jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy } = await import("@nats-io/jetstream");
  const { Kvm } = await import("@nats-io/kv");
  const names = namesFor(checked.deployment);
  let nc;
  try {
    nc = await connect({
      servers: options.servers,
      timeout: checked.connectTimeoutMs,
      maxReconnectAttempts: -1,
      name: `sluice-${checked.deployment}`,
      ...(options.token === undefined ? {} : { token: options.token }),
      ...(options.user === undefined ? {} : { user: options.user, pass: options.pass ?? "" }),
      ...(options.credsFile === undefined ? {} : { authenticator: credsAuthenticator(await readFile(options.credsFile)) }),
    });
  } catch (err) {
    throw natsError(err, `connect to ${options.servers.join(",")}`);
  }
  try {
    const jsm = await jetstreamManager(nc, { timeout: 10_000 });
    const js = jetstream(nc, { timeout: 10_000 });
    const common = { storage: StorageType.File, num_replicas: checked.replicas, duplicate_window: nanos(initialWindowMs) };
    const ensureStream = async (config: Parameters<typeof jsm.streams.add>[0] & { name: string }) => {
      try {
        await jsm.streams.info(config.name);
      } catch {
        await jsm.streams.add(config);
      }
    };
    await ensureStream({ ...common, name: names.events, subjects: [`sluice.${checked.deployment}.ev.>`], retention: RetentionPolicy.Limits });
    await ensureStream({
      ...common,
      name: names.deliveries,
      subjects: [`sluice.${checked.deployment}.dl.>`],
      retention: RetentionPolicy.Workqueue,
      discard: DiscardPolicy.Old,
    });
    await ensureStream({ ...common, name: names.dead, subjects: [`sluice.${checked.deployment}.dead.>`], retention: RetentionPolicy.Limits });
    const kvm = new Kvm(js);
    const stateBucket = `${names.state}`;
    const state = await kvm.create(stateBucket, { history: 1, replicas: checked.replicas });
    const meta = await kvm.create(names.meta, { history: 1, replicas: checked.replicas, ttl: metaMaxAgeMs });
    const eventsInfo = await jsm.streams.info(names.events);
    const gate = new Gate();
    const capHits = new Map<string, number>();
    const ctx: NatsContext = {
      nc,
      js,
      jsm,
      names,
      gate,
      replicas: checked.replicas,
      maxAckPending: checked.maxAckPending,
      meta,
      onAckPendingCap(queue) {
        const hits = (capHits.get(queue) ?? 0) + 1;
        capHits.set(queue, hits);
        // Once per 100 hits: a consumer at its cap hands out nothing until acks free room.
        if (hits % 100 === 1) options.onWarning?.({ queue, maxAckPending: checked.maxAckPending, hits }, "NATS consumer at max_ack_pending");
      },
    };
    const consumers = new Consumers(ctx);
    await consumers.discover();
    const signal = new WorkSignal();
    const workSub = nc.subscribe(names.work, { callback: () => signal.notify() });
    const events = new NatsEventLog(ctx, consumers, Math.round(eventsInfo.config.duplicate_window / 1e6));
    const queues = new NatsDeliveryQueues(ctx, consumers, signal);
    const admin = new NatsQueueAdmin(ctx, consumers);
    const connection = nc;
    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= (async () => {
        await gate.close();
        workSub.unsubscribe();
        signal.notify();
        await connection.drain().catch(() => undefined);
      })();
      return closing;
    };
    return {
      kind: "nats",
      deployment: checked.deployment,
      capabilities,
      events,
      queues,
      admin,
      state: new NatsStateStore(state, gate),
      ackPendingCapHits: capHits,
      declare: (declaration) =>
        gate.run("declare", async () => {
          if (declaration.dedupeWindowMs > 0) await events.widenWindow(declaration.dedupeWindowMs);
          for (const q of declaration.queues) await consumers.ensure(q.queue, q.leaseMs);
        }),
      close,
      async destroy() {
        await gate.close();
        for (const stream of [names.events, names.deliveries, names.dead, `KV_${names.state}`, `KV_${names.meta}`]) {
          await jsm.streams.delete(stream).catch(() => undefined);
        }
        await close();
      },
    };
  } catch (err) {
    await nc.close().catch(() => undefined);
    throw natsError(err, "open");
  }
}
